//! The daemon's half of `marblectl migrate check`: what on this host is still in the state
//! the seed scripts left it in (docs/MIGRATION.md, reference `seed-scripts.md`), checked as
//! the VM owner — the seed's user, whose home held the scripts, the keys and the bundles.
//!
//! One line per concern: PASS (nothing of the seed left), FAIL (a leftover, with the fix),
//! WARN (could not be checked: a stopped guest, a failed exec), SKIP (not applicable: no
//! `[github]`). Nothing is changed: the runbook does the changes; this command proves them.
//! File contents are never read, so no secret can reach the report; only paths and modes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use marble_proto::{CheckResult, CheckStatus, OfflineRunner, PowerState, VmInfo};

use crate::hypervisor::{Hypervisor, guest_cmd};

/// Timeout of each guest exec and `prlctl list -i`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// The seed's process name (`start_vm_cycler.sh` runs it under nohup).
const CYCLER: &str = "vm_cycler.sh";

/// The cycler's logs, relative to the home: `--log` of `start_vm_cycler.sh` (fbf3feb, then
/// 0e787fa's hidden name) and nohup's default.
const CYCLER_LOGS: [&str; 3] = ["MARBLE/vm_cycler.log", "MARBLE/.vm_cycler.log", "nohup.out"];

/// Secrets the seed left in the home (relative). The daemon's own secret files are checked
/// where it reads them (0600 or refused).
const HOME_SECRETS: [&str; 5] = [
    "MARBLE/.s3cfg",
    ".s3cfg",
    ".ssh/parallels_vm_key",
    "BARMAN/.s3cfg",
    ".PAT",
];

/// What the seed put into guests, checked in every running guest: the PAT, the AUTO_RUNNER
/// LaunchDaemon and its script, the runner's own credentials it left behind, the shared
/// private ssh key SPI guests link. Globs are expanded by the guest shell; a pattern without
/// a match stays as written and fails the test, so only existing paths are printed.
pub const GUEST_LEFTOVERS: [&str; 7] = [
    "/Users/*/.PAT",
    "/var/root/.PAT",
    "/Library/LaunchDaemons/start.actions.runner.plist",
    "/Users/*/VM_ROOT_download_and_config_runner.sh",
    "/Users/*/actions-runner/.credentials",
    "/Users/*/.ssh/parallels_vm_key",
    "/Library/LaunchDaemons/timeout.plist",
];

/// What the check looks at, gathered by the actor (nothing here awaits it).
pub struct MigrateEnv {
    /// The hypervisor (guest execs, bundle paths).
    pub hv: Arc<dyn Hypervisor>,
    /// Every VM as the scheduler sees it.
    pub vms: Vec<VmInfo>,
    /// Running VMs the daemon did not start ([`crate::sched::World::found_running`]).
    pub found_running: Vec<String>,
    /// `None`: no `[github]`; else the last poll's offline runners (`polled_ms` 0: none yet).
    pub runners: Option<(Vec<OfflineRunner>, u64)>,
    /// The service user's home (`$HOME` of the daemon).
    pub home: Option<PathBuf>,
    /// Where VM bundles live (`images.bundles_dir`, default `~/Parallels`).
    pub bundles_dir: PathBuf,
}

/// Run every check, in report order.
pub async fn run(env: MigrateEnv) -> Vec<CheckResult> {
    let mut out = vec![cycler(), cycler_logs(env.home.as_deref())];
    out.push(locks(&env).await);
    out.push(found_running(&env.found_running));
    out.push(runners(env.runners.as_ref()));
    out.extend(guests(env.hv.as_ref(), &env.vms).await);
    out.push(secrets(env.home.as_deref()));
    out
}

fn pass(name: &str, detail: impl Into<String>) -> CheckResult {
    CheckResult::new(name, CheckStatus::Pass, detail.into(), "")
}

fn leftover(name: &str, detail: String, fix: &str) -> CheckResult {
    CheckResult::new(name, CheckStatus::Fail, detail, fix)
}

/// `vm_cycler.sh` processes on this host (any user: the seed ran it as the VM owner, but
/// an operator may have started it from another account).
fn cycler() -> CheckResult {
    let mut sys = sysinfo::System::new();
    sys.refresh_processes_specifics(
        sysinfo::ProcessesToUpdate::All,
        true,
        sysinfo::ProcessRefreshKind::nothing().with_cmd(sysinfo::UpdateKind::Always),
    );
    let me = std::process::id();
    let mut pids: Vec<u32> = sys
        .processes()
        .values()
        .filter(|p| p.pid().as_u32() != me)
        .filter(|p| p.cmd().iter().any(|a| a.to_string_lossy().contains(CYCLER)))
        .map(|p| p.pid().as_u32())
        .collect();
    pids.sort_unstable();
    if pids.is_empty() {
        return pass("cycler", format!("no {CYCLER} process"));
    }
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    leftover(
        "cycler",
        format!("{CYCLER} runs (pid {})", list.join(", ")),
        &format!(
            "~/MARBLE/stop_vm_cycler.sh (or kill {}): it starts, stops and locks VMs behind marbled's back",
            list.join(" ")
        ),
    )
}

fn cycler_logs(home: Option<&Path>) -> CheckResult {
    let Some(home) = home else {
        return CheckResult::new(
            "cycler-log",
            CheckStatus::Warn,
            "no HOME for the daemon's user".into(),
            "",
        );
    };
    let found: Vec<String> = CYCLER_LOGS
        .iter()
        .map(|rel| home.join(rel))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if found.is_empty() {
        return pass("cycler-log", "no cycler log in the home");
    }
    leftover(
        "cycler-log",
        format!(
            "the cycler's nohup log is still there: {}",
            found.join(", ")
        ),
        "once the cycler is stopped: keep a copy for the record and remove it (marbled logs to its own file)",
    )
}

/// Bundles carrying the seed's lock (`chflags uchg`): every VM's bundle as Parallels
/// reports it, and every `.macvm`/`.hdd` entry of the bundles directory (the seed locked and
/// unlocked every entry of `~/Parallels`).
async fn locks(env: &MigrateEnv) -> CheckResult {
    let mut paths: Vec<PathBuf> = Vec::new();
    for vm in &env.vms {
        if let Ok(Ok(info)) = tokio::time::timeout(CHECK_TIMEOUT, env.hv.info(&vm.name)).await
            && let Some(home) = info.home
        {
            paths.push(PathBuf::from(home.trim_end_matches('/')));
        }
    }
    if let Ok(entries) = std::fs::read_dir(&env.bundles_dir) {
        for entry in entries.flatten() {
            let p = entry.path();
            if p.extension()
                .is_some_and(|e| e == "macvm" || e == "pvm" || e == "hdd")
            {
                paths.push(p);
            }
        }
    }
    paths.sort();
    paths.dedup();
    let locked: Vec<String> = paths
        .iter()
        .filter(|p| flags::user_immutable(p))
        .map(|p| p.display().to_string())
        .collect();
    if locked.is_empty() {
        return pass(
            "locks",
            format!("no bundle has the uchg flag ({} checked)", paths.len()),
        );
    }
    leftover(
        "locks",
        format!("locked with chflags uchg: {}", locked.join(", ")),
        "chflags nouchg on each (~/MARBLE/.unlock_all_vms.sh does all); marblectl lock/unlock replace these locks",
    )
}

fn found_running(names: &[String]) -> CheckResult {
    if names.is_empty() {
        return pass("outside-vms", "every running VM was started by marbled");
    }
    leftover(
        "outside-vms",
        format!("running, not started by marbled: {}", names.join(", ")),
        "stop the cycler first; then let the job finish and `marblectl vm stop VM` (refused while busy)",
    )
}

fn runners(seen: Option<&(Vec<OfflineRunner>, u64)>) -> CheckResult {
    let Some((runners, polled_ms)) = seen else {
        return CheckResult::new(
            "runners",
            CheckStatus::Skip,
            "no [github] section: registrations not checked".into(),
            "",
        );
    };
    if *polled_ms == 0 {
        return CheckResult::new(
            "runners",
            CheckStatus::Warn,
            "GitHub not polled yet (the poll needs a [demand] section)".into(),
            "configure [demand], then run again after its first poll (marblectl status shows it)",
        );
    }
    let foreign: Vec<String> = runners
        .iter()
        .filter(|r| r.kind == "foreign")
        .map(|r| format!("{} (id {})", r.name, r.id))
        .collect();
    if foreign.is_empty() {
        return pass(
            "runners",
            "no offline registration that marbled does not own",
        );
    }
    leftover(
        "runners",
        format!(
            "offline registrations marbled does not own: {}",
            foreign.join(", ")
        ),
        "delete each: gh api -X DELETE repos/OWNER/REPO/actions/runners/ID (or Settings → Actions → Runners)",
    )
}

/// The seed's files in each running guest; a stopped guest cannot be looked into.
async fn guests(hv: &dyn Hypervisor, vms: &[VmInfo]) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let mut stopped = Vec::new();
    let script = guest_script();
    for vm in vms {
        if vm.power != PowerState::Running {
            stopped.push(vm.name.clone());
            continue;
        }
        let name = format!("guest:{}", vm.name);
        let argv = guest_cmd::sh_c(&script);
        match hv.exec(&vm.name, &argv, None, CHECK_TIMEOUT).await {
            Ok(o) if o.status == 0 => {
                let found: Vec<&str> = o.stdout.lines().filter(|l| !l.is_empty()).collect();
                out.push(if found.is_empty() {
                    pass(&name, "no PAT file, seed launch daemon or shared key")
                } else {
                    leftover(
                        &name,
                        format!("seed files in the guest: {}", found.join(", ")),
                        "marblectl vm provision VM --profile docs/profiles/seed-cleanup.toml (docs/MIGRATION.md step 4), then rotate the PAT",
                    )
                });
            }
            Ok(o) => out.push(CheckResult::new(
                &name,
                CheckStatus::Warn,
                format!("guest check exited {}: {}", o.status, o.stderr.trim()),
                "",
            )),
            Err(e) => out.push(CheckResult::new(
                &name,
                CheckStatus::Warn,
                format!("guest not checked: {e}"),
                "",
            )),
        }
    }
    if !stopped.is_empty() {
        out.push(CheckResult::new(
            "guests-stopped",
            CheckStatus::Warn,
            format!("not running, guests not checked: {}", stopped.join(", ")),
            "check each once it runs (marblectl vm start VM), or clean it with docs/profiles/seed-cleanup.toml",
        ));
    }
    out
}

/// The guest script: print each seed leftover that exists, exit 0.
pub fn guest_script() -> String {
    format!(
        "for f in {}; do if [ -e \"$f\" ]; then echo \"$f\"; fi; done; exit 0",
        GUEST_LEFTOVERS.join(" ")
    )
}

/// Secret files readable by group or others (the seed scp'd `.s3cfg` with the default
/// umask), or not owned by the service user.
fn secrets(home: Option<&Path>) -> CheckResult {
    let paths: Vec<PathBuf> = home
        .map(|h| HOME_SECRETS.iter().map(|rel| h.join(rel)).collect())
        .unwrap_or_default();
    let me = nix::unistd::geteuid().as_raw();
    let mut bad = Vec::new();
    let mut fixes = Vec::new();
    let mut seen = 0;
    for p in &paths {
        let Ok(meta) = std::fs::metadata(p) else {
            continue;
        };
        seen += 1;
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            bad.push(format!("{} mode {mode:04o}", p.display()));
            fixes.push(format!("chmod 600 {}", p.display()));
        } else if meta.uid() != me {
            bad.push(format!("{} owned by uid {}", p.display(), meta.uid()));
            fixes.push(format!("chown {me} {}", p.display()));
        }
    }
    if bad.is_empty() {
        return pass(
            "secrets",
            format!("{seen} secret file(s) found, each 0600 and ours"),
        );
    }
    leftover(
        "secrets",
        format!("readable by others or not ours: {}", bad.join(", ")),
        &format!("{}; then rotate what others could read", fixes.join("; ")),
    )
}

#[cfg(target_os = "macos")]
mod flags {
    //! macOS: the user-immutable flag of `chflags uchg`, from `stat(2)`'s `st_flags`.

    use std::os::macos::fs::MetadataExt;
    use std::path::Path;

    /// `UF_IMMUTABLE` from `<sys/stat.h>`.
    const UF_IMMUTABLE: u32 = 0x0000_0002;

    /// Whether `path` itself (not what a symlink points to) has `uchg`.
    pub fn user_immutable(path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|m| m.st_flags() & UF_IMMUTABLE != 0)
    }
}

#[cfg(not(target_os = "macos"))]
mod flags {
    //! Elsewhere (the simulator on Linux): no file flags exist, so the prlctl simulator
    //! models `chflags uchg` on a bundle as a sibling marker `<bundle>.uchg` next to it,
    //! written and removed with its lock (`SimHost::set_locked`). What this can prove on
    //! Linux: that every bundle the simulator reports locked is found and reported; not that
    //! `st_flags` is read right (the macOS module above, checked on a Mac).

    use std::path::Path;

    /// Whether the simulator marks `path` as locked.
    pub fn user_immutable(path: &Path) -> bool {
        let Some(name) = path.file_name() else {
            return false;
        };
        let mut marker = name.to_os_string();
        marker.push(".uchg");
        path.with_file_name(marker).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_names_the_chmod_for_a_0644_file_and_passes_a_0600_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("MARBLE")).unwrap();
        let cfg = dir.path().join("MARBLE/.s3cfg");
        std::fs::write(&cfg, "[default]\n").unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
        let line = secrets(Some(dir.path()));
        assert_eq!(line.status, CheckStatus::Fail, "{line:?}");
        assert!(line.detail.contains("mode 0644"), "{line:?}");
        assert!(
            line.fix.contains(&format!("chmod 600 {}", cfg.display())),
            "{line:?}"
        );
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(secrets(Some(dir.path())).status, CheckStatus::Pass);
    }

    #[test]
    fn guest_script_lists_every_leftover() {
        let s = guest_script();
        for f in GUEST_LEFTOVERS {
            assert!(s.contains(f), "{s}");
        }
    }
}
