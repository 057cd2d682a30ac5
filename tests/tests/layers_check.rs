//! `scripts/check-layers.py` enforces docs/ARCHITECTURE.md "Layers" (issue 16): the real tree
//! passes, and each rule, broken on a copy of the tree, makes the check fail and name the
//! offence. A check that cannot fail would be no check.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the check on `src` with the layer table of `doc`: (exit code, stdout + stderr).
fn check(src: &Path, doc: &Path) -> (i32, String) {
    let out = Command::new("python3")
        .arg(repo().join("scripts/check-layers.py"))
        .arg("--src")
        .arg(src)
        .arg("--doc")
        .arg(doc)
        .output()
        .expect("python3 runs scripts/check-layers.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

/// A copy of marbled/src and docs/ARCHITECTURE.md to plant violations in.
struct Copy {
    _dir: tempfile::TempDir,
    src: PathBuf,
    doc: PathBuf,
}

impl Copy {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        copy_tree(&repo().join("marbled/src"), &src);
        let doc = dir.path().join("ARCHITECTURE.md");
        std::fs::copy(repo().join("docs/ARCHITECTURE.md"), &doc).expect("copy doc");
        Copy {
            _dir: dir,
            src,
            doc,
        }
    }

    fn append(&self, file: &str, text: &str) {
        let path = self.src.join(file);
        let mut body = std::fs::read_to_string(&path).expect("read");
        body.push_str(text);
        std::fs::write(&path, body).expect("write");
    }

    /// The check fails (exit 1) and its report contains every one of `expect`.
    #[track_caller]
    fn fails_with(&self, expect: &[&str]) {
        let (code, text) = check(&self.src, &self.doc);
        assert_eq!(
            code, 1,
            "the planted violation must fail the check:\n{text}"
        );
        for e in expect {
            assert!(text.contains(e), "report names {e:?}:\n{text}");
        }
    }
}

#[test]
fn the_tree_follows_every_layer_rule() {
    let (code, text) = check(
        &repo().join("marbled/src"),
        &repo().join("docs/ARCHITECTURE.md"),
    );
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_planted_back_import_fails_the_check() {
    let c = Copy::new();
    // The scheduler core (layer 2) reaching up to the actor (layer 8).
    c.append(
        "sched/mod.rs",
        "\n#[allow(unused_imports)]\nuse crate::actor::DaemonHandle;\n",
    );
    c.fails_with(&["`sched` (layer 2) refers to `actor` (layer 8)"]);
}

#[test]
fn a_back_import_through_super_or_a_doc_link_fails_the_check() {
    let c = Copy::new();
    c.append(
        "config/mod.rs",
        "\n/// See [`crate::daemon::run`].\npub fn planted() {}\n",
    );
    c.fails_with(&["`config` (layer 1) refers to `daemon`"]);
    let c = Copy::new();
    c.append(
        "clock.rs",
        "\n#[allow(unused_imports)]\nuse super::sched::World;\n",
    );
    c.fails_with(&["`clock` (layer 0) refers to `sched` (layer 2)"]);
}

#[test]
fn a_cycle_a_path_attribute_a_long_function_a_long_file_and_an_unlisted_module_fail() {
    let c = Copy::new();
    c.append(
        "clock.rs",
        "\npub fn planted() { let _ = crate::cli::run; }\n",
    );
    c.fails_with(&["module cycle:", "`clock` (layer 0) refers to `cli`"]);

    let c = Copy::new();
    c.append("clock.rs", "\n#[path = \"elsewhere.rs\"]\nmod planted;\n");
    c.fails_with(&["#[path] attribute"]);

    let c = Copy::new();
    let body: String = (0..101)
        .map(|i| format!("    let _x{i} = {i};\n"))
        .collect();
    c.append(
        "clock.rs",
        &format!("\npub fn planted_long() {{\n{body}}}\n"),
    );
    c.fails_with(&["fn planted_long is 103 lines"]);
    // The same function inside #[cfg(test)] code is allowed.
    let c = Copy::new();
    c.append(
        "clock.rs",
        &format!("\n#[cfg(test)]\nmod planted {{\n    fn long() {{\n{body}    }}\n}}\n"),
    );
    let (code, text) = check(&c.src, &c.doc);
    assert_eq!(code, 0, "long test functions are allowed:\n{text}");

    let c = Copy::new();
    c.append("clock.rs", &"// padding\n".repeat(800));
    c.fails_with(&["src/clock.rs:", "lines (at most 800)"]);

    // The size rule covers the crate's integration tests too.
    let c = Copy::new();
    let tests_dir = c.src.parent().expect("crate dir").join("tests");
    std::fs::create_dir_all(&tests_dir).expect("mkdir");
    std::fs::write(tests_dir.join("planted.rs"), "// padding\n".repeat(801)).expect("write");
    c.fails_with(&["tests/planted.rs: 801 lines (at most 800)"]);

    let c = Copy::new();
    std::fs::write(c.src.join("planted.rs"), "//! Planted.\n").expect("write");
    c.fails_with(&["module `planted` has no layer"]);
}
