//! Shared setup of the end-to-end tests (`e2e_cli`, `e2e_resilience`): a simulated host with
//! the README's four VMs, the real daemon binary as a child process on it, and a runner for
//! the real `marblectl` with a timeout on every call (a wedged daemon fails the test instead
//! of hanging it).
//!
//! Nothing here sleeps for a fixed time: everything asynchronous is waited on as a condition
//! with a deadline.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    unreachable_pub,
    missing_docs
)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod demand;
pub mod fleet;

use marble_tests::harness::{
    DaemonProcess, bin_path, short_tempdir, test_config, wait_until_blocking,
};
use marble_tests::prlsim::{ExecRule, SimHost, VmState};
use marbled::Config;

/// ROOT VMs (GitHub runners): ready once `Runner.Listener` runs in the guest.
pub const ROOT1: &str = "macphsft01-ROOT-VM-macOS-14";
pub const ROOT2: &str = "macphsft01-ROOT-VM-macOS-15";
/// SPI VMs (Jenkins nodes).
pub const SPI1: &str = "macphsft01-SPI-VM-macOS-14";
pub const SPI2: &str = "macphsft01-SPI-VM-macOS-15";
pub const ALL_VMS: [&str; 4] = [ROOT1, ROOT2, SPI1, SPI2];

/// How long any single CLI call or wait may take before the test fails.
pub const T: Duration = Duration::from_secs(30);

/// The command line the simulated guest runs as the GitHub runner's listener.
pub const LISTENER: &str = "/Users/runner/actions-runner/bin/Runner.Listener run";
/// A CI job running in a ROOT guest.
pub const WORKER: &str = "/Users/runner/actions-runner/bin/Runner.Worker spawnclient";
/// Where the daemon delivers a ROOT VM's JIT runner config in the guest.
pub const JIT_PATH: &str = "/var/run/marble/jitconfig";

/// A short temp dir with a simulated host (`dir/sim`) holding the four VMs, all stopped,
/// and a manual-policy test config pointing at it.
pub struct SimEnv {
    pub dir: tempfile::TempDir,
    pub host: SimHost,
    pub config: Config,
}

impl SimEnv {
    pub fn new() -> SimEnv {
        let dir = short_tempdir();
        let host = SimHost::create(dir.path().join("sim")).expect("simulated host");
        for vm in ALL_VMS {
            host.add_vm(vm).expect("add vm");
        }
        for vm in [ROOT1, ROOT2] {
            host.add_boot_process(vm, LISTENER).expect("boot process");
        }
        let config = test_config(dir.path(), host.dir());
        SimEnv { dir, host, config }
    }

    /// Power a VM on behind the daemon's back (as if started before the daemon ran).
    pub fn power_on(&self, vm: &str) {
        self.host
            .set_vm_state(vm, VmState::Running)
            .expect("set running");
    }

    /// `vm`'s runner listens only once its JIT config has arrived (the daemon's check of the
    /// delivered file, which creates the ready marker the guest's LaunchDaemon waits for,
    /// starts it), not at boot as the shared setup has it for daemons without `[github]`: so
    /// the registration the daemon minted is the one the runner uses.
    pub fn runner_listens_after_jit(&self, vm: &str) {
        self.host
            .remove_boot_processes(vm, "Runner.Listener")
            .unwrap();
        self.host
            .add_exec_rule(
                vm,
                // The check itself runs in the guest shell against the delivered file.
                ExecRule::contains("-perm 600 -user root")
                    .then_run()
                    .spawns(LISTENER),
            )
            .unwrap();
    }

    /// Point `[github]` at `api_url` (repository runners of `root-project/root`) with `token`
    /// in a 0600 file, short request timeout.
    pub fn use_github(&mut self, api_url: String, token: &str) {
        let token_file = token_file(self.dir.path(), "github-token", token);
        self.config.github = Some(marbled::config::GithubSection {
            api_url,
            repo: Some("root-project/root".into()),
            token_file: Some(token_file),
            request_timeout: Duration::from_secs(5),
            ..marbled::config::GithubSection::default()
        });
    }

    /// Point `[jenkins]` at `url` as `marble-bot` with a token in a 0600 file, its SPI nodes
    /// carrying the label `mac-spi` (a build for that label may run on any of them).
    pub fn use_jenkins_mac_spi(&mut self, url: &str) {
        let token = token_file(self.dir.path(), "jenkins-token", "11jenkinsapitoken");
        self.config.jenkins = Some(marbled::config::JenkinsSection {
            url: url.to_owned(),
            user: "marble-bot".into(),
            token_file: Some(token),
            labels: vec!["mac-spi".into()],
            ..marbled::config::JenkinsSection::default()
        });
    }

    /// Start the daemon on this host and wait until its inventory shows every VM.
    pub fn spawn(&self) -> DaemonProcess {
        let daemon = DaemonProcess::spawn(self.dir.path(), &self.config);
        self.wait_inventory(&daemon);
        daemon
    }

    /// Wait until `vm list --json` lists all four VMs.
    #[track_caller]
    pub fn wait_inventory(&self, daemon: &DaemonProcess) {
        let mut last = None;
        let ok = wait_until_blocking(T, || {
            let out = ctl(&daemon.socket, &["vm", "list", "--json"]);
            let ok = out.code == 0
                && serde_json::from_str::<Vec<serde_json::Value>>(&out.stdout)
                    .map(|vms| ALL_VMS.iter().all(|n| vms.iter().any(|v| v["name"] == *n)))
                    .unwrap_or(false);
            last = Some(out);
            ok
        });
        assert!(
            ok,
            "the daemon never listed the simulated VMs; last `vm list --json`: {}\ndaemon log:\n{}",
            last.map(|o| o.to_string()).unwrap_or_default(),
            daemon.log_text()
        );
    }

    /// Power verbs the daemon sent to prlctl, in order (`list` and `exec` left out).
    pub fn power_calls(&self) -> Vec<Vec<String>> {
        self.host
            .argvs()
            .expect("invocation log")
            .into_iter()
            .filter(|a| {
                matches!(
                    a.first().map(String::as_str),
                    Some("start" | "stop" | "resume" | "suspend" | "pause" | "reset" | "restart")
                )
            })
            .collect()
    }

    pub fn sim_state(&self, vm: &str) -> VmState {
        self.host.vm_state(vm).expect("vm state")
    }
}

/// A token file the daemon accepts (`dir/name`, mode 0600, `token` plus a newline).
pub fn token_file(dir: &Path, name: &str, token: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).expect("write token file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .expect("chmod 600 token file");
    path
}

/// What one `marblectl` run produced.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit {} after {:?}\n--- stdout\n{}--- stderr\n{}---",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// A `marblectl-under-test` command against `socket` (not yet run).
pub fn ctl_command(socket: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin_path("marblectl-under-test"));
    cmd.env("MARBLE_SOCKET", socket).args(args);
    cmd
}

/// A running `marblectl` whose output goes to files (so it can run in the background).
pub struct Running {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
    _files: tempfile::TempDir,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        let files = tempfile::tempdir().expect("output dir");
        let out = files.path().join("stdout");
        let err = files.path().join("stderr");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("spawn marblectl");
        Running {
            child,
            out,
            err,
            started: Instant::now(),
            _files: files,
        }
    }

    /// What it has written to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Whether it has exited.
    pub fn finished(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// Wait up to `timeout` for the exit; panics (after killing it) if it does not come.
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> Out {
        let mut status = None;
        wait_until_blocking(timeout, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        let elapsed = self.started.elapsed();
        let Some(status) = status else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "marblectl did not finish within {timeout:?}; stderr so far:\n{}",
                std::fs::read_to_string(&self.err).unwrap_or_default()
            );
        };
        Out {
            code: status.code().unwrap_or(-1),
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
            elapsed,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run `marblectl ARGS` against `socket` and wait (at most [`T`]) for it.
#[track_caller]
pub fn ctl(socket: &Path, args: &[&str]) -> Out {
    Running::spawn(ctl_command(socket, args)).wait(T)
}

/// `vm list --json`, parsed.
#[track_caller]
pub fn vm_list(socket: &Path) -> Vec<serde_json::Value> {
    let out = ctl(socket, &["vm", "list", "--json"]);
    assert_eq!(out.code, 0, "vm list --json failed: {out}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("vm list --json: {e}: {out}"))
}

/// The `power` field of `vm` in a `vm list --json` answer (`"running"`, `"stopped"`…).
#[track_caller]
pub fn power(list: &[serde_json::Value], vm: &str) -> String {
    let entry = list
        .iter()
        .find(|v| v["name"] == vm)
        .unwrap_or_else(|| panic!("{vm} missing from {list:?}"));
    entry["power"].to_string().trim_matches('"').to_owned()
}

/// Wait until the daemon reports `vm`'s power as `want` (`"running"`…).
#[track_caller]
pub fn wait_power(daemon: &DaemonProcess, vm: &str, want: &str) {
    let mut seen = String::new();
    let ok = wait_until_blocking(T, || {
        seen = power(&vm_list(&daemon.socket), vm);
        seen == want
    });
    assert!(
        ok,
        "daemon still reports {vm} as {seen}, expected {want}\ndaemon log:\n{}",
        daemon.log_text()
    );
}

/// Wait until `vm`'s start has finished: powered on and no longer starting or waiting for
/// its guest to answer. `vm start` answers once `prlctl start` returns and the power shows
/// `running` from then on, but the readiness wait goes on in the background and the daemon
/// refuses to stop a VM until it ends ("is starting"): a test that stops a VM it started
/// waits for this, not for the power.
#[track_caller]
pub fn wait_started(daemon: &DaemonProcess, vm: &str) {
    let mut seen = serde_json::Value::Null;
    let ok = wait_until_blocking(T, || {
        let list = vm_list(&daemon.socket);
        seen = list
            .iter()
            .find(|v| v["name"] == vm)
            .cloned()
            .unwrap_or_default();
        let starting = ["start", "resume", "ready"]
            .iter()
            .any(|op| seen["operation"] == *op);
        seen["power"] == "running" && !starting
    });
    assert!(
        ok,
        "{vm} never finished starting: {seen}\ndaemon log:\n{}",
        daemon.log_text()
    );
}

/// Run 9001 queued, with mac14 job 111 (the VM `ROOT1` covers it).
pub fn queue_mac14_job(gh: &marble_tests::fake_github::FakeGitHub) {
    gh.set_run(9001, "queued");
    gh.set_job(
        9001,
        111,
        "queued",
        &["self-hosted", "macOS", "ARM64", "mac14"],
        "2026-01-01T10:00:00Z",
    );
}

/// Wait until `marblectl metrics` of `daemon` shows every line of `wanted`; returns the text.
#[track_caller]
pub fn wait_metrics(daemon: &DaemonProcess, wanted: &[&str]) -> String {
    let mut text = String::new();
    let seen = wait_until_blocking(T, || {
        text = ctl(&daemon.socket, &["metrics"]).stdout;
        wanted.iter().all(|line| text.contains(line))
    });
    assert!(
        seen,
        "{}{text}\ndaemon log:\n{}",
        wanted.concat(),
        daemon.log_text()
    );
    text
}
