//! End to end through the real binaries: `marblectl runner install|upgrade` and runner
//! versions (issue 14 §1). `marbled-under-test` runs on a simulated Parallels host (prlsim,
//! whose guest has macOS's `tar` and `cmp`), talks real HTTP to the fake GitHub, which
//! lists `actions/runner` releases in the REST API's shape (checksums in the release notes,
//! as actions/runner publishes them) and serves a package built here
//! (`marble_tests::runner_release`: a real `.tar.gz` whose `bin/Runner.Listener --version`
//! prints its version in the simulated guest) behind a redirect, as github.com does.
//!
//! Shown: install puts the package and the JIT start hook into the guest, downloading the
//! package once per host into the cache; a second install changes nothing and exits 0; a
//! package that does not match its published SHA-256 is refused with exit 65, the VM not
//! even started, nothing installed or cached; `runner upgrade --all` brings a VM to a newer
//! release and skips (exit 75) one it cannot take now; a VM whose runner runs is never
//! touched (75); the version read in a guest at boot, days behind (from the first newer
//! release) and the deadline show in `status`, `vm list --json` and the metrics, and a VM 31
//! days behind is flagged overdue.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e_support::{ROOT1, ROOT2, SimEnv, T, ctl};
use marble_tests::fake_github::FakeGitHub;
use marble_tests::harness::wait_until_blocking;
use marble_tests::runner_release::{self, RunnerPackage};

const TOKEN: &str = "ghp_e2eRunnerInstallToken0123456789abcdef";
const DIR: &str = "/Users/sftnight/actions-runner";
const DAY: u64 = 86_400;

/// `days` days (plus an hour) ago, RFC 3339 as GitHub prints it.
fn days_ago(days: u64) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - days * DAY
        - 3600;
    let (y, m, d) = marbled::calendar::civil_from_days((secs / DAY) as i64);
    let t = secs % DAY;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

struct Env {
    gh: FakeGitHub,
    env: SimEnv,
    cache: PathBuf,
    _rt: tokio::runtime::Runtime,
}

impl Env {
    /// A host whose ROOT VMs have no runner yet (so nothing listens when one boots for an
    /// install, as in a guest whose hook waits for a JIT config that an install never sends).
    fn new() -> Env {
        let (rt, gh) = FakeGitHub::start_on_own_runtime(TOKEN);
        let mut env = SimEnv::new();
        for vm in [ROOT1, ROOT2] {
            env.host
                .remove_boot_processes(vm, "Runner.Listener")
                .unwrap();
        }
        env.use_github(gh.url(), TOKEN);
        let cache = env.dir.path().join("runner-cache");
        env.config.github.as_mut().unwrap().runner_cache = cache.clone();
        Env {
            gh,
            env,
            cache,
            _rt: rt,
        }
    }

    fn publish(&self, pkg: &RunnerPackage, days: u64) {
        self.gh.add_runner_release(
            &pkg.version,
            &days_ago(days),
            &pkg.sha256,
            Some(pkg.tarball.clone()),
        );
    }

    fn guest_version(&self, vm: &str) -> Option<Vec<u8>> {
        self.env
            .host
            .read_guest_file(vm, &format!("{DIR}/bin/Runner.Listener"))
            .unwrap()
    }

    fn mtime(&self, vm: &str, guest: &str) -> SystemTime {
        let p = self.env.host.guest_path(vm, guest).unwrap();
        std::fs::metadata(p).unwrap().modified().unwrap()
    }
}

/// Wait until the scheduler has no operation on `vm` (the readiness of a VM found running).
fn settle(daemon: &marble_tests::harness::DaemonProcess, vm: &str) {
    let ok = wait_until_blocking(T, || {
        let show = ctl(&daemon.socket, &["vm", "show", "--json", vm]);
        let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap_or_default();
        show.code == 0 && v["operation"].is_null()
    });
    assert!(
        ok,
        "{vm} kept an operation in flight:\n{}",
        daemon.log_text()
    );
}

fn runner_of<'a>(list: &'a [serde_json::Value], vm: &str) -> &'a serde_json::Value {
    &list.iter().find(|v| v["name"] == vm).expect("vm listed")["runner"]
}

#[test]
fn install_downloads_once_verifies_and_a_second_run_changes_nothing() {
    let e = Env::new();
    let v329 = runner_release::build("2.329.0");
    e.publish(&v329, 60);
    let daemon = e.env.spawn();

    let first = ctl(&daemon.socket, &["runner", "install", ROOT1]);
    assert_eq!(first.code, 0, "{first}\nlog:\n{}", daemon.log_text());
    assert!(first.stdout.contains("runner 2.329.0 in"), "{first}");
    assert!(
        first.stdout.contains("installed (package: downloaded)"),
        "{first}"
    );
    let listener = e.guest_version(ROOT1).expect("runner unpacked");
    assert!(String::from_utf8_lossy(&listener).contains("echo 2.329.0"));
    let h = &e.env.host;
    assert_eq!(
        h.guest_file_mode(ROOT1, &format!("{DIR}/bin/Runner.Listener"))
            .unwrap(),
        Some(0o755)
    );
    let script = marbled::ci::GUEST_SCRIPT_PATH;
    assert_eq!(
        h.read_guest_file(ROOT1, script).unwrap().as_deref(),
        Some(marbled::ci::GUEST_SCRIPT.as_bytes())
    );
    assert!(
        h.read_guest_file(ROOT1, marbled::ci::GUEST_PLIST_PATH)
            .unwrap()
            .is_some()
    );
    assert_eq!(e.gh.runner_downloads(), 1);
    // The install started the VM under its hold: no JIT runner was minted for that boot (a
    // runner must not start while its files are replaced; the VM gets one at its next boot).
    assert!(e.gh.issued_jit().is_empty(), "{:?}", e.gh.issued_jit());
    let cached = e.cache.join("actions-runner-osx-arm64-2.329.0.tar.gz");
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        v329.tarball,
        "cached once per host"
    );
    assert_eq!(
        std::fs::read_to_string(
            e.cache
                .join("actions-runner-osx-arm64-2.329.0.tar.gz.sha256")
        )
        .unwrap()
        .trim(),
        v329.sha256
    );
    // No credentials to the download host (github.com in real life).
    for r in
        e.gh.requests()
            .iter()
            .filter(|r| r.path.contains("/download/") || r.path.starts_with("/cdn/"))
    {
        assert!(
            r.header("authorization").is_none(),
            "token sent with {}",
            r.path
        );
    }

    let before = (
        e.mtime(ROOT1, script),
        e.mtime(ROOT1, &format!("{DIR}/bin/Runner.Listener")),
    );
    let second = ctl(&daemon.socket, &["runner", "install", ROOT1]);
    assert_eq!(second.code, 0, "{second}");
    assert!(
        second
            .stdout
            .contains("already in place, nothing changed (package: host cache)"),
        "{second}"
    );
    assert_eq!(e.gh.runner_downloads(), 1, "no second download");
    let after = (
        e.mtime(ROOT1, script),
        e.mtime(ROOT1, &format!("{DIR}/bin/Runner.Listener")),
    );
    assert_eq!(before, after, "nothing in the guest was rewritten");
    let json = ctl(&daemon.socket, &["--json", "runner", "install", ROOT1]);
    let r: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(r["changed"], false);
    let steps = r["run"]["steps"].as_array().unwrap();
    let step = |n: &str| steps.iter().find(|s| s["name"] == n).unwrap()["outcome"].clone();
    assert_eq!(step("runner-package"), "skipped");
    assert_eq!(step("runner-bootstrap"), "skipped");

    // A newer release: `upgrade --all` brings ROOT1 to it; ROOT2 is stopped and cannot be
    // started while ROOT1 holds the host: skipped, exit 75.
    let v330 = runner_release::build("2.330.0");
    e.publish(&v330, 1);
    let up = ctl(&daemon.socket, &["runner", "upgrade", "--all"]);
    assert_eq!(up.code, 75, "{up}");
    assert!(up.stderr.contains(ROOT2), "{up}");
    assert!(String::from_utf8_lossy(&e.guest_version(ROOT1).unwrap()).contains("echo 2.330.0"));
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&ctl(&daemon.socket, &["vm", "list", "--json"]).stdout).unwrap();
    assert_eq!(runner_of(&list, ROOT1)["version"], "2.330.0");
    assert_eq!(runner_of(&list, ROOT1)["level"], "current");
    let again = ctl(&daemon.socket, &["runner", "upgrade", ROOT1]);
    assert_eq!(again.code, 0, "{again}");
    assert!(again.stdout.contains("nothing changed"), "{again}");
}

#[test]
fn a_package_that_fails_its_published_checksum_is_refused_with_65_and_nothing_installed() {
    let e = Env::new();
    let pkg = runner_release::build("2.330.0");
    // The release notes publish another package's checksum.
    let other = runner_release::build("2.330.1");
    e.gh.add_runner_release(
        "2.330.0",
        &days_ago(3),
        &other.sha256,
        Some(pkg.tarball.clone()),
    );
    let daemon = e.env.spawn();
    let out = ctl(&daemon.socket, &["runner", "install", ROOT1]);
    assert_eq!(out.code, 65, "{out}");
    assert!(out.stderr.contains("does not match the published"), "{out}");
    assert!(e.guest_version(ROOT1).is_none(), "nothing installed");
    assert!(
        e.env
            .host
            .read_guest_file(ROOT1, marbled::ci::GUEST_PLIST_PATH)
            .unwrap()
            .is_none()
    );
    assert_eq!(
        e.env.sim_state(ROOT1),
        marble_tests::prlsim::VmState::Stopped,
        "not even started"
    );
    let cached: Vec<_> = std::fs::read_dir(&e.cache)
        .map(|d| d.flatten().map(|f| f.file_name()).collect())
        .unwrap_or_default();
    assert!(cached.is_empty(), "nothing cached: {cached:?}");
}

#[test]
fn a_vm_whose_runner_runs_is_never_touched() {
    let e = Env::new();
    let pkg = runner_release::build("2.330.0");
    e.publish(&pkg, 2);
    e.env.power_on(ROOT1);
    e.env
        .host
        .add_process(ROOT1, e2e_support::LISTENER)
        .unwrap();
    let daemon = e.env.spawn();
    settle(&daemon, ROOT1);
    for args in [["runner", "upgrade", ROOT1], ["runner", "install", ROOT1]] {
        let out = ctl(&daemon.socket, &args);
        assert_eq!(out.code, 75, "{out}");
        assert!(
            out.stderr.contains("a runner is running in the guest"),
            "{out}"
        );
    }
    assert!(e.guest_version(ROOT1).is_none());
}

#[test]
fn the_version_read_at_boot_shows_days_behind_and_a_vm_31_days_behind_is_flagged() {
    let mut e = Env::new();
    e.env.runner_listens_after_jit(ROOT2);
    // 2.330.0 came out 31 days ago, 2.331.0 yesterday: a 2.329.0 runner has been due for
    // 31 days (counted from 2.330.0, not from the latest).
    for (v, days) in [("2.329.0", 90), ("2.330.0", 31), ("2.331.0", 1)] {
        e.publish(&runner_release::build(v), days);
    }
    let old = runner_release::build("2.329.0");
    let listener = format!(
        "#!/bin/sh\n[ \"$1\" = --version ] && echo {}\n",
        old.version
    );
    e.env
        .host
        .write_guest_file(
            ROOT2,
            &format!("{DIR}/bin/Runner.Listener"),
            listener.as_bytes(),
            0o755,
        )
        .unwrap();
    e.env.config.github.as_mut().unwrap().release_check_interval = Duration::from_secs(600);
    let daemon = e.env.spawn();
    let start = ctl(&daemon.socket, &["vm", "start", ROOT2]);
    assert_eq!(start.code, 0, "{start}\n{}", daemon.log_text());
    let mut list: Vec<serde_json::Value> = Vec::new();
    let seen = wait_until_blocking(T, || {
        let out = ctl(&daemon.socket, &["vm", "list", "--json"]);
        list = serde_json::from_str(&out.stdout).unwrap_or_default();
        list.iter()
            .any(|v| v["name"] == ROOT2 && v["runner"]["version"] == "2.329.0")
            && runner_of(&list, ROOT2)["latest"] == "2.331.0"
    });
    assert!(
        seen,
        "runner version never read: {list:#?}\n{}",
        daemon.log_text()
    );
    let r = runner_of(&list, ROOT2);
    assert_eq!(r["days_behind"], 31);
    assert_eq!(r["level"], "overdue");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        r["deadline_ms"].as_u64().unwrap() < now_ms,
        "the deadline has passed"
    );

    let status = ctl(&daemon.socket, &["status"]);
    assert_eq!(status.code, 0, "{status}");
    assert!(
        status
            .stdout
            .contains("runners: latest actions/runner 2.331.0"),
        "{status}"
    );
    let line = status
        .stdout
        .lines()
        .find(|l| l.contains(ROOT2) && l.contains("2.329.0"))
        .unwrap_or_default();
    assert!(
        line.contains("overdue") && line.contains("31 days behind") && line.contains("passed"),
        "{status}"
    );
    assert!(line.contains("marblectl runner upgrade"), "{line}");

    let metrics = ctl(&daemon.socket, &["metrics"]).stdout;
    assert!(
        metrics.contains(&format!(
            "marble_runner_info{{vm=\"{ROOT2}\",version=\"2.329.0\",latest=\"2.331.0\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("marble_runner_days_behind{{vm=\"{ROOT2}\"}} 31")),
        "{metrics}"
    );
    let deadline = metrics
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "marble_runner_update_deadline_seconds{{vm=\"{ROOT2}\"}}"
            ))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .expect("deadline metric");
    // 30 days after a release published 31 days and an hour ago: a day and an hour past.
    assert!(
        (-90_000 - 120..=-90_000 + 120).contains(&deadline),
        "a day and an hour past: {deadline}"
    );
    drop(daemon);
}
