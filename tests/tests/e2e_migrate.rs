//! Issue 14 §3: `marblectl migrate check` on a host that `scripts/seed-host.sh` prepared the
//! way the seed scripts leave one (a running cycler and its nohup log, `chflags uchg`
//! bundles, a VM the cycler started, the PAT and AUTO_RUNNER launch daemon in ROOT guests,
//! the shared private key in SPI guests, a 0644 `~/MARBLE/.s3cfg`) plus the AUTO_RUNNER's
//! offline registrations on the fake GitHub: every leftover is reported and the command
//! exits 1. Then the runbook's steps (docs/MIGRATION.md) are applied one by one and the
//! clean host reports no leftover and exits 0.
//!
//! One test, not several: the cycler check looks at every process on the machine (as it
//! must on a real host), so a seed-shaped host in a parallel test would show up in a clean
//! one.

mod e2e_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e_support::{Out, ROOT1, ROOT2, SPI1, SPI2, SimEnv, T, ctl, wait_power};
use marble_tests::fake_github::FakeGitHub;
use marble_tests::harness::{
    DaemonProcess, bin_path, short_tempdir, test_config, wait_until_blocking,
};
use marble_tests::prlsim::SimHost;

const TOKEN: &str = "ghp_e2eMigrateTokenNeverLogged0123456789abc";
/// What the seed's AUTO_RUNNER names a runner: `<ComputerName>-<date | tr ' :' '-'>`.
const SEED_RUNNER: &str = "macphsft01-ROOT-VM-macOS-15-Thu-Oct--2-14-28-06-CEST-2025";

/// The stand-in cycler `seed-host.sh` started; killed on drop so a failing test leaves no
/// process behind.
struct Cycler(Option<i32>);

impl Cycler {
    fn stop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Cycler {
    fn drop(&mut self) {
        self.stop();
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Run `scripts/seed-host.sh` on `dir`; returns the cycler's pid.
fn seed_host(dir: &Path) -> Cycler {
    let out = Command::new(repo_root().join("scripts/seed-host.sh"))
        .arg(dir)
        .env("PRLSIM", bin_path("prlsim"))
        .output()
        .expect("run seed-host.sh");
    assert!(
        out.status.success(),
        "seed-host.sh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = std::fs::read_to_string(dir.join("cycler.pid")).expect("cycler.pid");
    Cycler(Some(pid.trim().parse().expect("pid")))
}

fn check(daemon: &DaemonProcess) -> Out {
    ctl(&daemon.socket, &["migrate", "check"])
}

/// The report line of check `name` (`STATUS  name  detail`), with its fix line if any.
fn line<'a>(report: &'a str, name: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = report.lines().collect();
    let Some(i) = lines
        .iter()
        .position(|l| l.split_whitespace().nth(1) == Some(name))
    else {
        return Vec::new();
    };
    let mut out = vec![lines[i]];
    if let Some(next) = lines.get(i + 1)
        && next.trim_start().starts_with("fix:")
    {
        out.push(next);
    }
    out
}

#[track_caller]
fn assert_line(report: &str, name: &str, status: &str, needles: &[&str]) {
    let found = line(report, name).join("\n");
    assert!(
        found.starts_with(status),
        "{name}: expected {status}, got {found:?}\n{report}"
    );
    for n in needles {
        assert!(
            found.contains(n),
            "{name}: {n:?} missing from {found:?}\n{report}"
        );
    }
}

#[test]
fn migrate_check_lists_each_seed_leftover_and_passes_once_the_runbook_ran() {
    let dir = short_tempdir();
    let mut cycler = seed_host(dir.path());
    let home = dir.path().join("home");
    let (_rt, gh) = FakeGitHub::start_on_own_runtime(TOKEN);
    let seed_runner = gh.add_runner(SEED_RUNNER, "offline", false);
    let host = SimHost::create(dir.path().join("sim")).expect("seeded host");
    let config = test_config(dir.path(), host.dir());
    let mut env = SimEnv { dir, host, config };
    env.use_github(gh.url(), TOKEN);
    env.config.demand = Some(marbled::config::DemandSection {
        interval: Duration::from_secs(5),
        ..marbled::config::DemandSection::default()
    });
    let daemon =
        DaemonProcess::spawn_with_env(env.dir.path(), &env.config, "debug", &[("HOME", &home)]);
    env.wait_inventory(&daemon);

    // Wait for the first GitHub poll, then read the whole report.
    let mut out = check(&daemon);
    assert!(
        wait_until_blocking(T, || {
            out = check(&daemon);
            !line(&out.stdout, "runners")
                .join("")
                .contains("not polled yet")
        }),
        "GitHub never polled: {out}\n{}",
        daemon.log_text()
    );
    let report = out.stdout.clone();
    eprintln!("seed-shaped host:\n{report}");
    assert_eq!(out.code, 1, "leftovers exit 1: {out}");
    let pid = cycler.0.expect("pid").to_string();
    assert_line(
        &report,
        "cycler",
        "FAIL",
        &["vm_cycler.sh runs", &pid, "stop_vm_cycler.sh"],
    );
    assert_line(&report, "cycler-log", "FAIL", &["MARBLE/vm_cycler.log"]);
    let locked = line(&report, "locks").join("\n");
    for vm in [ROOT1, SPI1, SPI2] {
        assert!(
            locked.contains(&format!("{vm}.macvm")),
            "{vm} lock: {report}"
        );
    }
    assert!(!locked.contains(&format!("{ROOT2}.macvm")), "{report}");
    assert_line(&report, "locks", "FAIL", &["chflags nouchg"]);
    assert_line(&report, "outside-vms", "FAIL", &[ROOT2]);
    assert_line(&report, "runners", "FAIL", &[SEED_RUNNER]);
    assert_line(
        &report,
        &format!("guest:{ROOT2}"),
        "FAIL",
        &[
            "/Users/sftnight/.PAT",
            "/Library/LaunchDaemons/start.actions.runner.plist",
            "/Users/sftnight/VM_ROOT_download_and_config_runner.sh",
        ],
    );
    assert_line(&report, "guests-stopped", "WARN", &[ROOT1, SPI1, SPI2]);
    let s3cfg = home.join("MARBLE/.s3cfg");
    assert_line(
        &report,
        "secrets",
        "FAIL",
        &["mode 0644", &format!("chmod 600 {}", s3cfg.display())],
    );
    assert!(
        !report.contains("ghp_seedFAKEpat") && !report.contains("seedFakeSecretKey"),
        "no secret in the report: {report}"
    );

    // The runbook, step by step (docs/MIGRATION.md).
    cycler.stop();
    std::fs::remove_file(home.join("MARBLE/vm_cycler.log")).expect("rm log");
    for vm in [ROOT1, SPI1, SPI2] {
        env.host.set_locked(vm, false).expect("chflags nouchg");
    }
    // Step 3 on the running guest: the shipped cleanup profile, through the daemon.
    let profile = repo_root().join("docs/profiles/seed-cleanup.toml");
    let clean = ctl(
        &daemon.socket,
        &[
            "vm",
            "provision",
            ROOT2,
            "--profile",
            profile.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(
        clean.code, 0,
        "seed-cleanup.toml runs in the guest: {clean}"
    );
    for f in [
        "/Users/sftnight/.PAT",
        "/Library/LaunchDaemons/start.actions.runner.plist",
    ] {
        assert!(
            !env.host.guest_path(ROOT2, f).expect("guest path").exists(),
            "{f} still in {ROOT2}"
        );
    }
    // The stopped guests get the same profile one by one on a real host; here their files
    // are removed directly to keep the test short.
    for vm in [ROOT1] {
        for f in [
            "/Users/sftnight/.PAT",
            "/Library/LaunchDaemons/start.actions.runner.plist",
            "/Users/sftnight/VM_ROOT_download_and_config_runner.sh",
        ] {
            std::fs::remove_file(env.host.guest_path(vm, f).expect("guest path"))
                .expect("rm guest file");
        }
    }
    for vm in [SPI1, SPI2] {
        let key = env
            .host
            .guest_path(vm, "/Users/sftnight/.ssh/parallels_vm_key")
            .expect("guest path");
        std::fs::remove_file(key).expect("rm key");
    }
    gh.remove_runner(seed_runner);
    std::fs::set_permissions(&s3cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod 600");
    let stop = ctl(&daemon.socket, &["vm", "stop", ROOT2]);
    assert_eq!(stop.code, 0, "the idle VM the cycler left stops: {stop}");
    wait_power(&daemon, ROOT2, "stopped");
    let start = ctl(&daemon.socket, &["vm", "start", ROOT2]);
    assert_eq!(start.code, 0, "marbled starts it: {start}");

    let mut out = check(&daemon);
    assert!(
        wait_until_blocking(T, || {
            out = check(&daemon);
            out.code == 0
        }),
        "the clean host still reports a leftover: {out}\n{}",
        daemon.log_text()
    );
    let report = out.stdout;
    eprintln!("after the runbook:\n{report}");
    for name in [
        "cycler",
        "cycler-log",
        "locks",
        "outside-vms",
        "runners",
        "secrets",
    ] {
        assert_line(&report, name, "PASS", &[]);
    }
    assert_line(&report, &format!("guest:{ROOT2}"), "PASS", &[]);
    assert!(!report.contains("FAIL"), "{report}");
}
