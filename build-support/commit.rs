// Shared by `marbled/build.rs` and `marblectl/build.rs` through `include!` (a build script
// cannot depend on a workspace crate without building it first): records the git commit
// as `MARBLE_COMMIT`. No inner doc here: `include!` does not allow one.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn watch(path: &Path) {
    // A missing file would make cargo rerun this script on every build.
    if path.exists() {
        println!("cargo::rerun-if-changed={}", path.display());
    }
}

fn main() {
    println!("cargo::rerun-if-env-changed=MARBLE_COMMIT");
    if let Ok(commit) = std::env::var("MARBLE_COMMIT") {
        println!("cargo::rustc-env=MARBLE_COMMIT={commit}");
        return;
    }
    let commit = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
            if dirty { format!("{head}-dirty") } else { head }
        }
        None => "unknown".to_owned(),
    };
    if let (Some(git_dir), Some(common)) = (
        git(&["rev-parse", "--absolute-git-dir"]),
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
    ) {
        let git_dir = PathBuf::from(git_dir);
        let common = PathBuf::from(common);
        watch(&git_dir.join("HEAD"));
        watch(&common.join("packed-refs"));
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch(&common.join(branch));
        }
    }
    println!("cargo::rustc-env=MARBLE_COMMIT={commit}");
}
