//! The host check `install` runs first, and refuses on any FAIL. Before the daemon exists
//! only this side can check: macOS, root, the service user, Parallels' `prlctl`. When a
//! daemon already answers (a reinstall), its own checks (`marblectl host check`: edition,
//! build disk, free disk, S3, GitHub) are added. `--destdir` skips all of it (and says so).

use std::path::Path;
use std::process::Command;

use marble_proto::{CheckResult, CheckStatus, Request, Response};

use super::Layout;
use crate::cmd::Context;
use crate::cmd::host::report;
use crate::exit::Exit;

/// Where Parallels Desktop installs its CLI.
pub const PRLCTL: &str = "/usr/local/bin/prlctl";

/// Every check, in report order.
pub async fn checks(ctx: &Context, layout: &Layout) -> Vec<CheckResult> {
    let mut lines = vec![platform(), root(), user(layout), prlctl(Path::new(PRLCTL))];
    match ctx.call_with_progress(Request::HostCheck, false).await {
        Ok(Response::HostReport(report)) => lines.extend(report),
        _ => lines.push(CheckResult::new(
            "daemon",
            CheckStatus::Skip,
            format!(
                "marbled does not answer on {} (not installed yet)",
                ctx.socket.display()
            ),
            "",
        )),
    }
    lines
}

/// Print the checks; `Some(exit)` when the install must not go on.
pub async fn refuse(ctx: &Context, layout: &Layout) -> Option<Exit> {
    let lines = checks(ctx, layout).await;
    eprint!("{}", report(&lines));
    let failed = lines
        .iter()
        .filter(|l| l.status == CheckStatus::Fail)
        .count();
    if failed == 0 {
        return None;
    }
    eprintln!(
        "marblectl: refusing to install: this host fails {failed} check(s) above; nothing was \
         changed (fix them, or stage the files for another host with --destdir DIR)"
    );
    Some(Exit::Unavailable)
}

fn platform() -> CheckResult {
    if cfg!(target_os = "macos") {
        CheckResult::new("platform", CheckStatus::Pass, "macOS".into(), "")
    } else {
        CheckResult::new(
            "platform",
            CheckStatus::Fail,
            format!(
                "this is {}: MARBLE hosts are Macs with Parallels Desktop",
                std::env::consts::OS
            ),
            "install on the Mac host, or stage the files with --destdir DIR",
        )
    }
}

fn root() -> CheckResult {
    if nix::unistd::geteuid().is_root() {
        CheckResult::new("root", CheckStatus::Pass, "running as root".into(), "")
    } else {
        CheckResult::new(
            "root",
            CheckStatus::Fail,
            "not root: the plist, binaries and owners need it".into(),
            "sudo marblectl install …",
        )
    }
}

fn user(layout: &Layout) -> CheckResult {
    match nix::unistd::User::from_name(&layout.user) {
        Ok(Some(u)) => CheckResult::new(
            "user",
            CheckStatus::Pass,
            format!("{} (uid {}, home {})", layout.user, u.uid, u.dir.display()),
            "",
        ),
        _ => CheckResult::new(
            "user",
            CheckStatus::Fail,
            format!("no user {:?} on this host", layout.user),
            "pass --user: the macOS user that owns the Parallels VMs",
        ),
    }
}

fn prlctl(path: &Path) -> CheckResult {
    match Command::new(path).arg("--version").output() {
        Ok(out) if out.status.success() => CheckResult::new(
            "prlctl",
            CheckStatus::Pass,
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            "",
        ),
        Ok(out) => CheckResult::new(
            "prlctl",
            CheckStatus::Fail,
            format!("{} --version: {}", path.display(), out.status),
            "install Parallels Desktop Pro or Business (the CLI needs it)",
        ),
        Err(e) => CheckResult::new(
            "prlctl",
            CheckStatus::Fail,
            format!("{}: {e}", path.display()),
            "install Parallels Desktop Pro or Business (the CLI needs it)",
        ),
    }
}
