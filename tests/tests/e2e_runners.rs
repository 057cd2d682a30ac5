//! End to end through the real binaries: GitHub JIT runners per ROOT boot (issue 5, first
//! two "Must show" bullets). `marbled-under-test` runs as a child process on a simulated
//! Parallels host (prlsim), talks real HTTP to the fake GitHub (`FakeGitHub`, which records
//! every request with a wall-clock timestamp) with a token read from a 0600 file, and is
//! driven by the real `marblectl`.
//!
//! Shown: starting a ROOT VM mints a JIT config with the VM's labels and delivers it into a
//! root-only guest file, and neither the token nor the config appears in a daemon log line
//! (debug level), a prlctl command line or any other file of the simulated host; the
//! registration is made before `prlctl start` (so other hosts' demand sees the booting
//! runner) and its config delivered once, at readiness; a start that fails, or a boot slower
//! than readiness, leaves no registration behind; stopping the idle VM deletes the runner
//! registration before prlctl stops it; a 422 (job running) keeps the VM up with exit 75
//! naming GitHub, and so does a GitHub error; after a daemon restart the registration is
//! found by name and still deleted first.
//!
//! The simulated guest plays the in-guest LaunchDaemon with one exec rule: the daemon's
//! check of the delivered file (which creates the ready marker) answers for the file and
//! starts `Runner.Listener`, as the LaunchDaemon does once the marker is there. The file's
//! real mode is asserted separately on the simulated guest filesystem. Nothing sleeps for a
//! fixed time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::path::PathBuf;
use std::time::Duration;

use e2e_support::{JIT_PATH, ROOT1, SimEnv, T, ctl, wait_power};
use marble_tests::fake_github::{Deny, FakeGitHub, RecordedRequest};
use marble_tests::harness::{DaemonProcess, wait_until_blocking};
use marble_tests::prlsim::{FaultKind, VmState};

const TOKEN: &str = "ghp_e2eRunnersTokenNeverInTheVm0123456789";
const RUNNERS: &str = "/repos/root-project/root/actions/runners";
/// How long the simulated `prlctl stop` takes before it answers: a DELETE that arrived this
/// much before the stop's log line was sent before prlctl was even started.
const STOP_DELAY_MS: u64 = 400;
/// The same for `prlctl start` and the registration's POST.
const START_DELAY_MS: u64 = 400;

/// A simulated host plus a fake GitHub, with `[github]` pointing at it.
struct GhEnv {
    // Dropped before the runtime it serves on.
    gh: FakeGitHub,
    env: SimEnv,
    _rt: tokio::runtime::Runtime,
}

impl GhEnv {
    fn new() -> GhEnv {
        let (rt, gh) = FakeGitHub::start_on_own_runtime(TOKEN);
        let mut env = SimEnv::new();
        env.runner_listens_after_jit(ROOT1);
        env.use_github(gh.url(), TOKEN);
        GhEnv { gh, env, _rt: rt }
    }

    fn jit_posts(&self) -> Vec<RecordedRequest> {
        self.gh
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == format!("{RUNNERS}/generate-jitconfig"))
            .collect()
    }

    /// Every `DELETE …/runners/{id}`, of any runner.
    fn all_deletes(&self) -> Vec<RecordedRequest> {
        let prefix = format!("{RUNNERS}/");
        self.gh
            .requests()
            .into_iter()
            .filter(|r| r.method == "DELETE" && r.path.starts_with(&prefix))
            .collect()
    }

    /// `prlctl exec` calls that wrote the config into the guest.
    fn deliveries(&self) -> Vec<marble_tests::prlsim::Invocation> {
        self.calls("exec")
            .into_iter()
            .filter(|i| i.argv.join(" ").contains(&format!("cat > {JIT_PATH}")))
            .collect()
    }

    fn deletes(&self, id: u64) -> Vec<RecordedRequest> {
        self.gh
            .requests()
            .into_iter()
            .filter(|r| r.method == "DELETE" && r.path == format!("{RUNNERS}/{id}"))
            .collect()
    }

    /// `vm start ROOT1`, then wait until readiness (mint, delivery, listener) is over;
    /// returns the registered runner's id.
    #[track_caller]
    fn start_root1(&self, daemon: &DaemonProcess) -> u64 {
        let start = ctl(&daemon.socket, &["vm", "start", ROOT1]);
        assert_eq!(start.code, 0, "vm start: {start}");
        let mut op = serde_json::Value::Null;
        let ready = wait_until_blocking(T, || {
            let show = ctl(&daemon.socket, &["vm", "show", "--json", ROOT1]);
            let vm: serde_json::Value = serde_json::from_str(&show.stdout).unwrap_or_default();
            op = vm["operation"].clone();
            op.is_null()
                && self
                    .env
                    .host
                    .processes(ROOT1)
                    .unwrap()
                    .iter()
                    .any(|p| p.command.contains("Runner.Listener"))
        });
        assert!(
            ready,
            "ROOT1 never became ready (operation {op}); github requests: {:#?}\nlog:\n{}",
            self.gh.requests(),
            daemon.log_text()
        );
        let ids = self.gh.runner_ids();
        assert_eq!(ids.len(), 1, "one registration: {ids:?}");
        ids[0]
    }

    /// prlctl invocations of `verb` on `vm`.
    fn calls(&self, verb: &str) -> Vec<marble_tests::prlsim::Invocation> {
        self.env
            .host
            .invocations()
            .unwrap()
            .into_iter()
            .filter(|i| {
                i.argv.first().map(String::as_str) == Some(verb)
                    && i.argv.get(1).map(String::as_str) == Some(ROOT1)
            })
            .collect()
    }
}

#[test]
fn starting_a_root_vm_delivers_a_jit_config_and_no_secret_leaks() {
    let g = GhEnv::new();
    let daemon = g.env.spawn();
    let id = g.start_root1(&daemon);

    // Minted once, with the labels of the VM's macOS version and a name of this host/VM.
    let posts = g.jit_posts();
    assert_eq!(posts.len(), 1, "{posts:#?}");
    let body: serde_json::Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(
        body["labels"],
        serde_json::json!(["self-hosted", "macOS", "ARM64", "mac14"])
    );
    let name = body["name"].as_str().unwrap();
    assert!(
        name.starts_with(&format!("marble-macphsft-test-{ROOT1}-")),
        "runner name {name}"
    );
    assert!(posts[0].authorized && posts[0].header("x-github-api-version").is_some());

    // The guest file holds exactly the config, root-only.
    let issued = g.gh.issued_jit();
    assert_eq!(issued.len(), 1);
    let jit = &issued[0];
    let file = g.env.host.read_guest_file(ROOT1, JIT_PATH).unwrap();
    assert_eq!(
        file.as_deref(),
        Some(jit.as_bytes()),
        "guest {JIT_PATH} must hold the encoded_jit_config of runner {id}"
    );
    let mode = g
        .env
        .host
        .guest_file_mode(ROOT1, JIT_PATH)
        .unwrap()
        .unwrap();
    assert_eq!(
        mode & 0o077,
        0,
        "jit config mode {mode:04o} is readable by others"
    );
    let dir_mode = g
        .env
        .host
        .guest_file_mode(ROOT1, "/var/run/marble")
        .unwrap()
        .unwrap();
    assert_eq!(dir_mode & 0o077, 0, "directory mode {dir_mode:04o}");
    // The ready marker is made by the daemon's check of the written file, which ran after
    // the write (here the exec rule plays that check and the LaunchDaemon it wakes; the
    // marker itself is checked in `ci::runner`'s unit tests in a real shell).
    let execs = g.calls("exec");
    let wrote = execs
        .iter()
        .position(|i| i.argv.join(" ").contains(&format!("cat > {JIT_PATH}")))
        .expect("the delivery exec");
    let checked = execs
        .iter()
        .position(|i| {
            i.argv.join(" ").contains(&format!("{JIT_PATH}.ready"))
                && !i.argv.join(" ").contains("cat >")
        })
        .expect("the check-and-mark exec");
    assert!(
        wrote < checked,
        "the marker must follow the complete file: {execs:#?}"
    );

    // No secret on any prlctl command line (what `ps` shows other users) …
    let invocations = g.env.host.invocations().unwrap();
    assert!(!invocations.is_empty());
    for inv in &invocations {
        let line = inv.argv.join(" ");
        assert!(!line.contains(TOKEN), "token in argv: {line}");
        assert!(!line.contains(jit.as_str()), "jit config in argv: {line}");
    }
    // … the delivery went through exec stdin …
    assert!(
        invocations
            .iter()
            .any(|i| i.argv.first().map(String::as_str) == Some("exec")
                && i.argv.join(" ").contains(&format!("cat > {JIT_PATH}"))),
        "no delivery exec in {invocations:#?}"
    );
    // … no secret in any file of the simulated host but the guest's config file (the token
    // nowhere: not in the VM, not in the invocation log) …
    assert_eq!(
        g.env.host.files_containing(TOKEN.as_bytes()).unwrap(),
        Vec::<PathBuf>::new()
    );
    let holders = g.env.host.files_containing(jit.as_bytes()).unwrap();
    assert_eq!(
        holders,
        vec![g.env.host.guest_path(ROOT1, JIT_PATH).unwrap()],
        "the jit config is only in the guest file"
    );
    // … and in no daemon log line, at debug level.
    let log = daemon.log_text();
    assert!(log.contains("DEBUG"), "the daemon logs at debug level");
    assert!(log.contains("registered jit runner"), "{log}");
    assert!(!log.contains(TOKEN), "token in the daemon log");
    assert!(!log.contains(jit.as_str()), "jit config in the daemon log");
}

#[test]
fn the_runner_is_registered_before_prlctl_start_and_its_config_delivered_once() {
    let g = GhEnv::new();
    let daemon = g.env.spawn();
    g.env
        .host
        .set_fault(
            Some(ROOT1),
            FaultKind::Slow {
                verb: "start".into(),
                ms: START_DELAY_MS,
            },
            None,
        )
        .unwrap();
    let id = g.start_root1(&daemon);

    let posts = g.jit_posts();
    assert_eq!(posts.len(), 1, "one registration per boot: {posts:#?}");
    let starts = g.calls("start");
    assert_eq!(starts.len(), 1, "{starts:#?}");
    // The start's log line is written when prlctl answers, at least START_DELAY_MS after it
    // began; the POST came before that beginning, so the runner was in GitHub's list (where
    // other hosts' demand counts it) for the whole boot.
    assert!(
        posts[0].ts_ms + START_DELAY_MS <= starts[0].ts_ms,
        "POST generate-jitconfig at {} ms, prlctl start answered at {} ms (began no earlier \
         than {} ms)",
        posts[0].ts_ms,
        starts[0].ts_ms,
        starts[0].ts_ms - START_DELAY_MS
    );
    // Delivered once, at readiness (the guest cannot take it before it answers), and it is
    // the config minted before the boot.
    let deliveries = g.deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");
    assert!(deliveries[0].ts_ms >= starts[0].ts_ms);
    let issued = g.gh.issued_jit();
    assert_eq!(issued.len(), 1);
    assert_eq!(
        g.env
            .host
            .read_guest_file(ROOT1, JIT_PATH)
            .unwrap()
            .as_deref(),
        Some(issued[0].as_bytes())
    );
    assert!(g.gh.runner(id).is_some());
    assert!(g.all_deletes().is_empty(), "{:#?}", g.all_deletes());
    // Held in the daemon's memory for the boot: never in a file, log line or command line.
    let log = daemon.log_text();
    assert!(
        !log.contains(issued[0].as_str()),
        "jit config in the daemon log"
    );
    assert_eq!(
        g.env.host.files_containing(issued[0].as_bytes()).unwrap(),
        vec![g.env.host.guest_path(ROOT1, JIT_PATH).unwrap()]
    );
    for inv in g.env.host.invocations().unwrap() {
        assert!(!inv.argv.join(" ").contains(issued[0].as_str()));
    }
}

#[test]
fn a_failed_start_leaves_no_registration_behind() {
    let g = GhEnv::new();
    let daemon = g.env.spawn();
    // The bundle is immutable (`chflags uchg`): prlctl start fails, the VM stays off.
    g.env.host.set_locked(ROOT1, true).unwrap();

    let start = ctl(&daemon.socket, &["vm", "start", ROOT1]);
    assert_ne!(
        start.code, 0,
        "vm start of a VM prlctl cannot start: {start}"
    );
    assert_eq!(g.env.sim_state(ROOT1), VmState::Stopped);
    let starts = g.calls("start");
    assert_eq!(starts.len(), 1, "{starts:#?}");
    assert_ne!(starts[0].exit, Some(0));

    // Registered before the start, deleted once it failed: nothing is left on GitHub that
    // the fleet would count as a free runner.
    let posts = g.jit_posts();
    assert_eq!(posts.len(), 1, "{posts:#?}");
    let gone = wait_until_blocking(T, || g.gh.runner_ids().is_empty());
    assert!(
        gone,
        "registrations left: {:?}\nrequests: {:#?}\nlog:\n{}",
        g.gh.runner_ids(),
        g.gh.requests(),
        daemon.log_text()
    );
    let deletes = g.all_deletes();
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert!(posts[0].ts_ms <= starts[0].ts_ms && starts[0].ts_ms <= deletes[0].ts_ms);
    assert!(g.deliveries().is_empty(), "nothing delivered");
    assert!(g.gh.issued_jit().len() == 1 && !daemon.log_text().contains(&g.gh.issued_jit()[0]));
}

#[test]
fn a_boot_slower_than_readiness_is_stopped_without_github_and_its_runner_deleted() {
    let mut g = GhEnv::new();
    g.env.config.scheduler.ready_timeout = Duration::from_secs(1);
    // The guest answers only after readiness has given up: the config minted before the
    // boot never goes out, and the stop after failed readiness (the scheduler stops a VM
    // whose guest never answered since it booted it) deletes the registration on the way,
    // not as a gate.
    g.env
        .host
        .set_boot_delay(ROOT1, Duration::from_secs(3))
        .unwrap();
    let daemon = g.env.spawn();

    let start = ctl(&daemon.socket, &["vm", "start", ROOT1]);
    assert_eq!(start.code, 0, "vm start: {start}");
    let posts = g.jit_posts();
    assert_eq!(posts.len(), 1, "registered before the start: {posts:#?}");
    // The simulator logs a `stop` once it has answered, after the VM is already off.
    let stopped = wait_until_blocking(T, || {
        g.env.sim_state(ROOT1) == VmState::Stopped
            && g.gh.runner_ids().is_empty()
            && !g.calls("stop").is_empty()
    });
    assert!(
        stopped,
        "sim {:?}, registrations {:?}\nlog:\n{}",
        g.env.sim_state(ROOT1),
        g.gh.runner_ids(),
        daemon.log_text()
    );
    assert!(g.deliveries().is_empty(), "the config never went out");
    assert_eq!(g.env.host.read_guest_file(ROOT1, JIT_PATH).unwrap(), None);
    let deletes = g.all_deletes();
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    let stops = g.calls("stop");
    assert_eq!(stops.len(), 1, "{stops:#?}");
    assert!(deletes[0].ts_ms <= stops[0].ts_ms);
    assert_eq!(g.jit_posts().len(), 1, "no second registration");
}

#[test]
fn stopping_an_idle_root_vm_deletes_its_runner_before_prlctl_stops_it() {
    let g = GhEnv::new();
    let daemon = g.env.spawn();
    let id = g.start_root1(&daemon);
    g.env
        .host
        .set_fault(
            Some(ROOT1),
            FaultKind::Slow {
                verb: "stop".into(),
                ms: STOP_DELAY_MS,
            },
            None,
        )
        .unwrap();

    let stop = ctl(&daemon.socket, &["vm", "stop", ROOT1]);
    assert_eq!(stop.code, 0, "vm stop: {stop}\nlog:\n{}", daemon.log_text());
    assert_eq!(g.env.sim_state(ROOT1), VmState::Stopped);
    assert!(g.gh.runner(id).is_none(), "registration {id} deleted");

    let deletes = g.deletes(id);
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    let stops = g.calls("stop");
    assert_eq!(stops.len(), 1, "{stops:#?}");
    // The stop's log line is written when prlctl answers, at least STOP_DELAY_MS after it
    // started; the DELETE came before that start.
    assert!(
        deletes[0].ts_ms + STOP_DELAY_MS <= stops[0].ts_ms,
        "DELETE at {} ms, prlctl stop answered at {} ms (started no earlier than {} ms)",
        deletes[0].ts_ms,
        stops[0].ts_ms,
        stops[0].ts_ms - STOP_DELAY_MS
    );
    // The busy probe ran before the delete: the scheduler's check, then the gate, then stop.
    let probe = g
        .calls("exec")
        .into_iter()
        .rfind(|i| i.argv.join(" ").contains("Runner\\.Worker"))
        .expect("a busy probe");
    assert!(probe.ts_ms <= deletes[0].ts_ms);
}

#[test]
fn a_422_keeps_the_vm_running_and_vm_stop_exits_75_naming_github() {
    let g = GhEnv::new();
    let daemon = g.env.spawn();
    let id = g.start_root1(&daemon);
    // GitHub just handed the runner a job; the guest's worker has not started yet, so the
    // guest probe still says idle and only GitHub's refusal stands between it and a stop.
    g.gh.set_busy(id, true);

    let refused = ctl(&daemon.socket, &["vm", "stop", ROOT1]);
    assert_eq!(refused.code, 75, "a VM whose runner has a job: {refused}");
    assert!(
        refused.stderr.contains("GitHub") && refused.stderr.contains("running a job"),
        "the refusal names GitHub: {refused}"
    );
    let runner = g.gh.runner(id).unwrap();
    let name = runner["name"].as_str().unwrap();
    assert!(
        refused.stderr.contains(name),
        "names runner {name}: {refused}"
    );
    assert_eq!(g.env.sim_state(ROOT1), VmState::Running, "VM kept running");
    assert!(g.calls("stop").is_empty(), "no stop reached prlctl");
    assert_eq!(g.deletes(id).len(), 1, "the delete was tried (and refused)");
    wait_power(&daemon, ROOT1, "running");

    // The job is over: the next stop deletes the registration and stops.
    g.gh.set_busy(id, false);
    let stop = ctl(&daemon.socket, &["vm", "stop", ROOT1]);
    assert_eq!(stop.code, 0, "vm stop after the job: {stop}");
    assert_eq!(g.env.sim_state(ROOT1), VmState::Stopped);
    assert!(g.gh.runner(id).is_none());
}

#[test]
fn a_github_error_is_no_licence_to_stop() {
    let g = GhEnv::new();
    let daemon = g.env.spawn();
    let id = g.start_root1(&daemon);
    g.gh.set_deny(Some(Deny::Forbidden));

    for args in [
        &["vm", "stop", ROOT1][..],
        &["vm", "stop", "--force", ROOT1],
    ] {
        let refused = ctl(&daemon.socket, args);
        assert_eq!(refused.code, 75, "{args:?} with GitHub failing: {refused}");
        assert!(
            refused.stderr.contains("GitHub") && refused.stderr.contains("Administration: write"),
            "the refusal says GitHub failed and what the token lacks: {refused}"
        );
        assert_eq!(g.env.sim_state(ROOT1), VmState::Running);
    }
    assert!(g.calls("stop").is_empty(), "no stop reached prlctl");

    g.gh.set_deny(None);
    let stop = ctl(&daemon.socket, &["vm", "stop", ROOT1]);
    assert_eq!(stop.code, 0, "vm stop once GitHub answers: {stop}");
    assert!(g.gh.runner(id).is_none());
}

#[test]
fn after_a_daemon_restart_the_registration_is_found_by_name_and_deleted_first() {
    let g = GhEnv::new();
    let mut daemon = g.env.spawn();
    let id = g.start_root1(&daemon);
    let status = daemon.terminate(T);
    assert!(
        status.is_some_and(|s| s.success()),
        "daemon exit: {status:?}"
    );
    assert_eq!(g.env.sim_state(ROOT1), VmState::Running);

    let daemon = g.env.spawn();
    wait_power(&daemon, ROOT1, "running");
    let stop = ctl(&daemon.socket, &["vm", "stop", ROOT1]);
    assert_eq!(
        stop.code,
        0,
        "vm stop after restart: {stop}\nlog:\n{}",
        daemon.log_text()
    );
    assert_eq!(g.env.sim_state(ROOT1), VmState::Stopped);
    let deletes = g.deletes(id);
    assert_eq!(deletes.len(), 1, "{:#?}", g.gh.requests());
    assert!(g.gh.runner(id).is_none());
    let stops = g.calls("stop");
    assert_eq!(stops.len(), 1);
    assert!(deletes[0].ts_ms <= stops[0].ts_ms);
}

#[test]
fn a_failed_mint_fails_readiness_naming_github_and_the_vm_is_stopped_without_its_word() {
    let g = GhEnv::new();
    g.gh.set_deny(Some(Deny::Forbidden));
    let daemon = g.env.spawn();

    let start = ctl(&daemon.socket, &["vm", "start", ROOT1]);
    assert_eq!(start.code, 0, "vm start powers the VM on: {start}");
    // Readiness fails with GitHub's cause; nothing was delivered, so no job can run in the
    // VM and the scheduler's stop after failed readiness goes through although GitHub still
    // refuses every call.
    let mut status = String::new();
    let done = wait_until_blocking(T, || {
        status = ctl(&daemon.socket, &["status"]).stdout;
        // The fake prlctl logs an invocation when it exits, after the state change it made:
        // wait for the stop's log line too, or the count below can race it (seen once in CI).
        status.contains("generate-jitconfig")
            && g.env.sim_state(ROOT1) == VmState::Stopped
            && !g.calls("stop").is_empty()
    });
    assert!(
        done,
        "status:\n{status}\nsim: {:?}\nlog:\n{}",
        g.env.sim_state(ROOT1),
        daemon.log_text()
    );
    assert!(
        status.contains("not ready") && status.contains("Administration: write"),
        "the readiness failure names the missing permission:\n{status}"
    );
    assert!(g.gh.issued_jit().is_empty());
    assert_eq!(g.env.host.read_guest_file(ROOT1, JIT_PATH).unwrap(), None);
    assert_eq!(g.calls("stop").len(), 1);
}

#[test]
fn host_check_validates_the_github_token_and_names_a_missing_permission() {
    let g = GhEnv::new();
    let daemon = g.env.spawn();
    let line_of = |daemon: &DaemonProcess| {
        let out = ctl(&daemon.socket, &["host", "check", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("host check --json: {e}: {out}"));
        let lines = v
            .as_array()
            .cloned()
            .or_else(|| v["checks"].as_array().cloned());
        lines
            .unwrap_or_default()
            .into_iter()
            .find(|l| l["name"] == "github")
            .unwrap_or_else(|| panic!("no github line: {out}"))
    };
    let ok = line_of(&daemon);
    assert_eq!(ok["status"], "pass", "{ok}");
    assert!(
        ok["detail"].as_str().unwrap().contains("root-project/root"),
        "{ok}"
    );
    g.gh.set_deny(Some(Deny::Forbidden));
    let bad = line_of(&daemon);
    assert_eq!(bad["status"], "fail", "{bad}");
    assert!(
        bad["detail"].as_str().unwrap().contains("Administration"),
        "{bad}"
    );
    assert!(!daemon.log_text().contains(TOKEN));
}
