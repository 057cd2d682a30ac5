//! Cases 5, 6 and 9 of issue 15: the exit codes of `request-slot` and `vm start` for a
//! running VM that is locked or on a draining host (77 first, as docs/SCHEDULER.md orders
//! the checks), a drain that ends with the host empty once the job finishes, slot requests
//! made before the daemon's first inventory, and `marbled check-config` on secret files and
//! TOML type errors.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::e2e_support::{
    Out, Running, SPI1, SPI2, SimEnv, T, ctl, ctl_command, token_file, wait_power,
};
use marble_tests::harness::{DaemonProcess, bin_path, wait_until_blocking};
use marble_tests::prlsim::{FaultKind, GuestProc, SimHost, VmState};

/// The Jenkins agent in an SPI guest (idle while it has no child process).
const AGENT: &str = "/usr/bin/java -jar /Users/jenkins/agent/remoting.jar -workDir /Users/jenkins";
/// A build step: a child of the agent, what the SPI busy probe looks for.
const BUILD: &str = "/bin/sh -xe /Users/jenkins/workspace/root-build@tmp/jenkins1234.sh";

/// Start a Jenkins build in `vm`'s guest: the agent with a build step under it.
fn start_build(host: &SimHost, vm: &str) {
    let agent = host.add_process(vm, AGENT).unwrap();
    host.update(|st| {
        let guest = st.vms.iter_mut().find(|v| v.name == vm).expect("vm");
        let pid = guest.next_pid;
        guest.next_pid += 1;
        guest.procs.push(GuestProc {
            pid,
            ppid: agent,
            command: BUILD.into(),
            started_ms: 0,
            ends_ms: None,
        });
    })
    .unwrap();
}

/// The daemon's busy verdict for `vm` (`busy`, `idle`, `unknown`…).
fn busy_kind(daemon: &DaemonProcess, vm: &str) -> String {
    let out = ctl(&daemon.socket, &["vm", "show", vm, "--json"]);
    assert_eq!(out.code, 0, "vm show: {out}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    match &v["busy"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) => map.keys().next().cloned().unwrap_or_default(),
        other => other.to_string(),
    }
}

#[track_caller]
fn assert_code(out: &Out, code: i32, what: &str) {
    assert_eq!(out.code, code, "{what}: {out}");
    assert!(
        out.stdout.is_empty(),
        "{what} writes nothing to stdout: {out}"
    );
}

/// Jenkins asks for `vm` and gets it (waiting for its guest to answer).
#[track_caller]
fn granted(daemon: &DaemonProcess, vm: &str) {
    let out = ctl(&daemon.socket, &["request-slot", vm, "--wait", "20s"]);
    assert_code(&out, 0, "request-slot of a free host");
}

#[test]
fn case_05_a_running_locked_vm_is_refused_77_by_request_slot_and_vm_start() {
    let env = SimEnv::new();
    let daemon = env.spawn();
    granted(&daemon, SPI1);
    let lock = ctl(&daemon.socket, &["lock", SPI1, "--reason", "disk check"]);
    assert_eq!(lock.code, 0, "{lock}");

    let slot = ctl(&daemon.socket, &["request-slot", SPI1]);
    assert_code(&slot, 77, "request-slot of a running, locked VM");
    assert!(slot.stderr.contains("disk check"), "says why: {slot}");
    let start = ctl(&daemon.socket, &["vm", "start", SPI1]);
    assert_code(&start, 77, "vm start of a running, locked VM");
    assert!(start.stderr.contains("disk check"), "says why: {start}");
    // A lock never stops a running VM.
    assert_eq!(env.sim_state(SPI1), VmState::Running);
}

#[test]
fn case_05_a_draining_host_refuses_77_and_ends_empty_once_the_job_finishes() {
    let mut env = SimEnv::new();
    // A short grace and re-check, so the drain can end within the test's deadline once
    // the build is over (and only then).
    env.config.scheduler.slot_grace = Duration::from_secs(2);
    env.config.scheduler.busy_recheck = Duration::from_secs(1);
    let daemon = env.spawn();
    granted(&daemon, SPI1);
    start_build(&env.host, SPI1);
    let mut seen = String::new();
    let busy = wait_until_blocking(T, || {
        seen = busy_kind(&daemon, SPI1);
        seen == "busy"
    });
    assert!(
        busy,
        "the build was never seen: {seen}\n{}",
        daemon.log_text()
    );

    let drain = ctl(&daemon.socket, &["drain", "--reason", "disk swap"]);
    assert_eq!(drain.code, 0, "{drain}");
    // Jenkins keeps asking for its node while the build runs: every answer is 77 (and none
    // renews the grace, which would keep the VM up after the build).
    for _ in 0..3 {
        let slot = ctl(&daemon.socket, &["request-slot", SPI1]);
        assert_code(
            &slot,
            77,
            "request-slot of the running VM of a draining host",
        );
        assert!(slot.stderr.contains("disk swap"), "says why: {slot}");
    }
    let start = ctl(&daemon.socket, &["vm", "start", SPI1]);
    assert_code(&start, 77, "vm start of the running VM of a draining host");
    let other = ctl(&daemon.socket, &["request-slot", SPI2, "--wait", "5s"]);
    assert_code(&other, 77, "request-slot of another VM of a draining host");
    assert_eq!(
        env.sim_state(SPI1),
        VmState::Running,
        "a busy VM is never stopped"
    );

    // The build ends; the drain stops the VM once its probe says idle.
    assert_eq!(
        env.host.remove_processes(SPI1, "jenkins1234.sh").unwrap(),
        1
    );
    let done = ctl(
        &daemon.socket,
        &["drain", "--wait", "25s", "--reason", "disk swap"],
    );
    assert_eq!(done.code, 0, "the host empties once the build ends: {done}");
    assert_eq!(env.sim_state(SPI1), VmState::Stopped);
    assert_eq!(env.sim_state(SPI2), VmState::Stopped);
    wait_power(&daemon, SPI1, "stopped");
}

#[test]
fn case_06_request_slot_waits_for_the_first_inventory() {
    let env = SimEnv::new();
    // Every `prlctl list` takes 6 s: the first inventory arrives about 6 s after start.
    env.host
        .set_fault(
            None,
            FaultKind::Slow {
                verb: "list".into(),
                ms: 6_000,
            },
            None,
        )
        .unwrap();
    let daemon = DaemonProcess::spawn(env.dir.path(), &env.config);
    let waiting = Running::spawn(ctl_command(
        &daemon.socket,
        &["request-slot", SPI1, "--wait", "60s"],
    ));
    let no_wait = ctl(&daemon.socket, &["request-slot", SPI2]);
    // An operator command is held until the VMs are listed (faults/crash.rs: no action
    // before the first inventory), then answered: the VM the waiting request also asks for.
    let start = Running::spawn(ctl_command(&daemon.socket, &["vm", "start", SPI1]));
    let listed = ctl(&daemon.socket, &["vm", "list", "--json"]);
    assert!(
        listed.stdout.trim() == "[]",
        "the first inventory came before the requests; the test cannot judge: {listed}"
    );
    // Not "unknown VM" (2): the VMs are not listed yet, try again (75).
    assert_code(
        &no_wait,
        75,
        "request-slot without a wait before the first inventory",
    );
    assert!(no_wait.stderr.contains("first inventory"), "{no_wait}");

    // The waiting request is served once the VMs are listed.
    let out = waiting.wait(T * 2);
    assert_code(&out, 0, "request-slot --wait across the first inventory");
    assert_eq!(env.sim_state(SPI1), VmState::Running);
    let start = start.wait(T * 2);
    assert_code(&start, 0, "vm start held across the first inventory");
    assert_eq!(env.sim_state(SPI2), VmState::Stopped);
    // A name that is still unknown after the inventory is 2, listing the known VMs.
    let unknown = ctl(
        &daemon.socket,
        &["request-slot", "no-such-VM", "--wait", "5s"],
    );
    assert_code(&unknown, 2, "request-slot of an unknown VM");
    assert!(
        unknown.stderr.contains(SPI1),
        "lists the known VMs: {unknown}"
    );
}

/// `marbled --config PATH check-config` (the real binary), with its output.
fn check_config(path: &Path) -> Out {
    let started = std::time::Instant::now();
    let out = Command::new(bin_path("marbled-under-test"))
        .arg("--config")
        .arg(path)
        .arg("check-config")
        .output()
        .expect("run marbled check-config");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// A secret file in `dir` with `mode`.
fn secret(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let path = token_file(dir, name, "s3cr3t-value");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// The line of `out`'s stderr that names `key`, which must also contain every `needle`.
#[track_caller]
fn names(out: &Out, key: &str, needles: &[&str]) {
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains(&format!("- {key}: ")))
        .unwrap_or_else(|| panic!("no problem names {key}: {out}"));
    for needle in needles {
        assert!(
            line.contains(needle),
            "{key}'s problem lacks {needle:?}: {line}"
        );
    }
}

#[test]
fn case_09_check_config_checks_every_secret_file() {
    let mut env = SimEnv::new();
    let dir = env.dir.path().to_owned();
    let config_path = dir.join("marbled.toml");
    let write = |config: &marbled::Config| {
        std::fs::write(&config_path, toml::to_string(config).unwrap()).unwrap();
    };
    // Everything in order: ok.
    env.config.images.secret_file = Some(secret(&dir, "s3.secret", 0o600));
    write(&env.config);
    let ok = check_config(&config_path);
    assert_eq!(ok.code, 0, "{ok}");

    // A world-readable S3 secret, a missing S3 secret, a GitHub token owned by someone else,
    // a group-readable Jenkins token: each named with its key and the fix.
    let open = secret(&dir, "s3-open.secret", 0o644);
    env.config.images.secret_file = Some(open.clone());
    let missing = dir.join("no-such.s3cfg");
    env.config.images.s3cfg = Some(missing.clone());
    env.use_github("https://api.github.com".into(), "ghp_test");
    let github = env
        .config
        .github
        .as_ref()
        .unwrap()
        .token_file
        .clone()
        .unwrap();
    let someone_else = nix::unistd::geteuid().is_root();
    if someone_else {
        std::os::unix::fs::chown(&github, Some(65534), Some(65534)).unwrap();
    }
    let jenkins = secret(&dir, "jenkins-token", 0o640);
    env.config.jenkins = Some(marbled::config::JenkinsSection {
        url: "https://jenkins.example".into(),
        user: "marble-bot".into(),
        token_file: Some(jenkins.clone()),
        ..marbled::config::JenkinsSection::default()
    });
    write(&env.config);
    let out = check_config(&config_path);
    assert_eq!(out.code, 78, "{out}");
    names(
        &out,
        "images.secret_file",
        &[&format!("chmod 600 {}", open.display())],
    );
    names(
        &out,
        "images.s3cfg",
        &[
            "does not exist",
            &format!("install -m 0600 -o root /dev/null {}", missing.display()),
        ],
    );
    names(
        &out,
        "jenkins.token_file",
        &[&format!("chmod 600 {}", jenkins.display())],
    );
    if someone_else {
        names(
            &out,
            "github.token_file",
            &["owned by", &format!("chown root {}", github.display())],
        );
    } else {
        eprintln!("owner check skipped: needs root to give a file to another user");
    }
    assert!(
        !out.stderr.contains("s3cr3t-value"),
        "never the secret: {out}"
    );
}

#[test]
fn case_09_check_config_reports_every_type_error_with_its_key_and_line() {
    let dir = marble_tests::harness::short_tempdir();
    let config_path = dir.path().join("marbled.toml");
    std::fs::write(
        &config_path,
        "[daemon]\nlog_keep = \"fourteen\"\n\n[scheduler]\ncapacity = \"one\"\ncapcity = 1\n\
         \n[prlctl]\ntimeout = 10\n",
    )
    .unwrap();
    let out = check_config(&config_path);
    assert_eq!(out.code, 78, "{out}");
    names(&out, "daemon.log_keep", &["line 2", "invalid type"]);
    names(&out, "scheduler.capacity", &["line 5", "invalid type"]);
    names(&out, "scheduler.capcity", &["line 6", "unknown key"]);
    names(&out, "prlctl.timeout", &["line 9"]);
    assert!(out.stderr.contains("4 problem(s)"), "{out}");
}
