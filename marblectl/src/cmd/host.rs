//! `host check` and `host setup`.
//!
//! Who checks what: marbled runs the checks that must be made as the VM owner or need its
//! config (Parallels and its edition, `prlctl list`, host name pattern, build disk, free
//! disk, S3, GitHub: `Request::HostCheck`); this command adds what only the client side can
//! see — whether the daemon answers at all, the socket's permissions, the launchd job, and
//! Spotlight (a host property that needs no config). `host setup` runs here because it needs
//! root (scutil, mdutil) and the daemon runs as the unprivileged VM owner. macOS-only
//! commands sit in the `platform` module behind `cfg`; elsewhere their checks are SKIP.

use std::fmt::Write as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use marble_proto::{CheckResult, CheckStatus, Request, Response};

use crate::cli::{HostCommand, HostSetupArgs};
use crate::client::ClientError;
use crate::cmd::{Context, out};
use crate::exit::Exit;
use crate::render;

/// Run a `host` subcommand.
pub async fn run(ctx: &Context, cmd: HostCommand) -> Result<Exit, ClientError> {
    match cmd {
        HostCommand::Check => Ok(check(ctx).await),
        HostCommand::Setup(args) => {
            if let Some(taken) = name_taken_in_fleet(ctx, &args.name).await {
                eprintln!("marblectl: {taken}");
                return Ok(Exit::Usage);
            }
            Ok(platform::setup(&args))
        }
    }
}

/// Whether another live host of the fleet already reports `wanted` (the spreadsheet of host
/// names this replaces). Asks the local daemon for the fleet's heartbeats; when it cannot
/// (daemon down, no `[fleet]` configured) it says so and lets the setup go on.
async fn name_taken_in_fleet(ctx: &Context, wanted: &str) -> Option<String> {
    let ours = match ctx.call(Request::Status).await {
        Ok(Response::Status(report)) => report.host,
        _ => String::new(),
    };
    match ctx.call(Request::FleetList).await {
        Ok(Response::Fleet(report)) => name_conflict(&report, &ours, wanted).map(|h| {
            format!(
                "host name {wanted:?} is already used by a live host of the fleet ({},                  heartbeat {} s old); pick another name",
                h.host,
                report.read_ms.saturating_sub(h.written_ms) / 1000
            )
        }),
        Ok(_) => None,
        Err(err) => {
            eprintln!("marblectl: warning: could not check the fleet for {wanted:?}: {err}");
            None
        }
    }
}

/// A live heartbeat (not stale) from a host other than `ours` that reports `wanted`.
pub fn name_conflict<'a>(
    report: &'a marble_proto::FleetReport,
    ours: &str,
    wanted: &str,
) -> Option<&'a marble_proto::FleetHost> {
    report.hosts.iter().find(|h| {
        h.host.eq_ignore_ascii_case(wanted)
            && !h.host.eq_ignore_ascii_case(ours)
            && !crate::cmd::fleet::is_stale(h, report.read_ms)
    })
}

/// A SKIP line for a check that only exists on macOS.
pub fn macos_only(name: &str, what: &str) -> CheckResult {
    CheckResult::new(name, CheckStatus::Skip, format!("macOS only ({what})"), "")
}

async fn check(ctx: &Context) -> Exit {
    let mut lines = Vec::new();
    match ctx.call_with_progress(Request::HostCheck, false).await {
        Ok(Response::HostReport(report)) => {
            lines.push(CheckResult::new(
                "daemon",
                CheckStatus::Pass,
                format!("marbled answers on {}", ctx.socket.display()),
                "",
            ));
            lines.extend(report);
        }
        Ok(other) => lines.push(CheckResult::new(
            "daemon",
            CheckStatus::Fail,
            format!("unexpected answer {other:?}"),
            "upgrade marblectl and marbled together",
        )),
        Err(err) => lines.push(CheckResult::new(
            "daemon",
            CheckStatus::Fail,
            crate::render_error(&err).replace('\n', " "),
            "see docs/OPERATIONS.md (launchd install, log file); the checks marbled runs were skipped",
        )),
    }
    lines.push(socket(&ctx.socket));
    lines.push(platform::launchd());
    lines.push(platform::spotlight());
    let failed = lines.iter().any(|l| l.status == CheckStatus::Fail);
    out(&if ctx.json {
        render::json(&lines)
    } else {
        report(&lines)
    });
    if failed { Exit::Failure } else { Exit::Ok }
}

/// The text report: one line per check, the fix indented below anything not passing.
pub fn report(lines: &[CheckResult]) -> String {
    let width = lines.iter().map(|l| l.name.len()).max().unwrap_or(0);
    let mut s = String::new();
    for l in lines {
        let status = match l.status {
            CheckStatus::Pass => "PASS",
            CheckStatus::Warn => "WARN",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skip => "SKIP",
        };
        let _ = writeln!(s, "{status}  {:<width$}  {}", l.name, l.detail);
        if !l.fix.is_empty() && l.status != CheckStatus::Pass {
            let _ = writeln!(s, "      {:<width$}  fix: {}", "", l.fix);
        }
    }
    let count = |st| lines.iter().filter(|l| l.status == st).count();
    let _ = writeln!(
        s,
        "{} passed, {} warnings, {} failed, {} skipped",
        count(CheckStatus::Pass),
        count(CheckStatus::Warn),
        count(CheckStatus::Fail),
        count(CheckStatus::Skip)
    );
    s
}

/// The socket as this client sees it: present, a socket, not world-accessible.
fn socket(path: &Path) -> CheckResult {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return CheckResult::new(
                "socket",
                CheckStatus::Fail,
                format!("{}: {e}", path.display()),
                "start marbled (sudo launchctl bootstrap system /Library/LaunchDaemons/ch.cern.sft.marbled.plist) or pass --socket",
            );
        }
    };
    if !meta.file_type().is_socket() {
        return CheckResult::new(
            "socket",
            CheckStatus::Fail,
            format!("{} is not a socket", path.display()),
            "remove it and restart marbled",
        );
    }
    let mode = meta.mode() & 0o777;
    let detail = format!(
        "{} mode {mode:04o}, owner uid {}, group gid {}",
        path.display(),
        meta.uid(),
        meta.gid()
    );
    if mode & 0o007 != 0 {
        CheckResult::new(
            "socket",
            CheckStatus::Fail,
            detail,
            "anyone on the host can talk to marbled: restart marbled (it creates the socket 0660)",
        )
    } else if mode != 0o660 {
        CheckResult::new(
            "socket",
            CheckStatus::Warn,
            detail,
            "expected 0660 (owner and daemon.socket_group); restart marbled",
        )
    } else {
        CheckResult::new("socket", CheckStatus::Pass, detail, "")
    }
}

/// Whether `name` can be a macOS host name (scutil LocalHostName: letters, digits, '-').
pub fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(target_os = "macos")]
mod platform {
    //! macOS: launchctl, mdutil, scutil.

    use std::io::{BufRead, Write};
    use std::process::Command;

    use marble_proto::{CheckResult, CheckStatus};

    use super::{HostSetupArgs, valid_host_name};
    use crate::client::{LAUNCHD_LABEL, LAUNCHD_PLIST};
    use crate::exit::Exit;

    fn run(cmd: &str, args: &[&str]) -> Result<(bool, String), String> {
        let out = Command::new(cmd)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {cmd}: {e}"))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), text))
    }

    pub fn launchd() -> CheckResult {
        let target = format!("system/{LAUNCHD_LABEL}");
        match run("/bin/launchctl", &["print", &target]) {
            Ok((true, text)) => {
                let state = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("state = "))
                    .unwrap_or("loaded")
                    .to_owned();
                CheckResult::new(
                    "launchd",
                    CheckStatus::Pass,
                    format!("{target}: {state}"),
                    "",
                )
            }
            Ok((false, _)) => CheckResult::new(
                "launchd",
                CheckStatus::Fail,
                format!("{target} is not loaded"),
                &format!("sudo launchctl bootstrap system {LAUNCHD_PLIST}"),
            ),
            Err(e) => CheckResult::new("launchd", CheckStatus::Warn, e, ""),
        }
    }

    pub fn spotlight() -> CheckResult {
        match run("/usr/bin/mdutil", &["-s", "/"]) {
            Ok((_, text)) if text.contains("disabled") => CheckResult::new(
                "spotlight",
                CheckStatus::Pass,
                "indexing disabled on /".into(),
                "",
            ),
            Ok((_, text)) => CheckResult::new(
                "spotlight",
                CheckStatus::Warn,
                format!(
                    "indexing not disabled on /: {}",
                    text.trim().replace('\n', " ")
                ),
                "sudo mdutil -i off / (or sudo marblectl host setup --name <host>)",
            ),
            Err(e) => CheckResult::new("spotlight", CheckStatus::Warn, e, ""),
        }
    }

    pub fn setup(args: &HostSetupArgs) -> Exit {
        if !valid_host_name(&args.name) {
            eprintln!(
                "marblectl: {:?} is not a valid host name (letters, digits, '-')",
                args.name
            );
            return Exit::Usage;
        }
        let n = args.name.as_str();
        let plan: Vec<(&str, Vec<&str>)> = vec![
            ("/usr/sbin/scutil", vec!["--set", "ComputerName", n]),
            ("/usr/sbin/scutil", vec!["--set", "HostName", n]),
            ("/usr/sbin/scutil", vec!["--set", "LocalHostName", n]),
            ("/usr/bin/mdutil", vec!["-i", "off", "/"]),
        ];
        eprintln!("host setup will run:");
        for (cmd, a) in &plan {
            eprintln!("  {cmd} {}", a.join(" "));
        }
        if !args.yes {
            eprint!("apply? [y/N] ");
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            let _ = std::io::stdin().lock().read_line(&mut answer);
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                eprintln!("nothing changed");
                return Exit::Failure;
            }
        }
        for (cmd, a) in &plan {
            match run(cmd, a) {
                Ok((true, _)) => eprintln!("ok: {cmd} {}", a.join(" ")),
                Ok((false, text)) => {
                    eprintln!(
                        "marblectl: {cmd} {} failed: {} (run as root: sudo marblectl host setup …)",
                        a.join(" "),
                        text.trim()
                    );
                    return Exit::NoPerm;
                }
                Err(e) => {
                    eprintln!("marblectl: {e}");
                    return Exit::Unavailable;
                }
            }
        }
        eprintln!("done; set daemon.host_name or restart marbled so it reports {n}");
        Exit::Ok
    }
}

#[cfg(not(target_os = "macos"))]
mod platform {
    //! Not macOS: the launchd and Spotlight checks are SKIP; `host setup` explains itself.

    use marble_proto::CheckResult;

    use super::{HostSetupArgs, macos_only};
    use crate::exit::Exit;

    pub fn launchd() -> CheckResult {
        macos_only("launchd", "launchctl print system/ch.cern.sft.marbled")
    }

    pub fn spotlight() -> CheckResult {
        macos_only("spotlight", "mdutil -s /")
    }

    pub fn setup(args: &HostSetupArgs) -> Exit {
        eprintln!(
            "marblectl: host setup is macOS-only (it runs scutil --set ComputerName/HostName/LocalHostName {} and mdutil -i off /); nothing was changed on this system",
            args.name
        );
        Exit::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_shows_fixes_for_non_passing_lines_and_counts() {
        let text = report(&[
            CheckResult::new("parallels", CheckStatus::Pass, "26.3.2".into(), "ignored"),
            CheckResult::new("build-disk", CheckStatus::Fail, "missing".into(), "pull it"),
            macos_only("spotlight", "mdutil -s /"),
        ]);
        assert!(text.contains("PASS  parallels   26.3.2\n"), "{text}");
        assert!(text.contains("FAIL  build-disk  missing\n"), "{text}");
        assert!(text.contains("fix: pull it"), "{text}");
        assert!(!text.contains("ignored"), "{text}");
        assert!(
            text.contains("SKIP  spotlight   macOS only (mdutil -s /)"),
            "{text}"
        );
        assert!(
            text.contains("1 passed, 0 warnings, 1 failed, 1 skipped"),
            "{text}"
        );
    }

    #[test]
    fn host_names() {
        assert!(valid_host_name("macphsft32"));
        for bad in ["", "-a", "a b", "a;b", "a.b"] {
            assert!(!valid_host_name(bad), "{bad:?}");
        }
    }
}
