//! Cases 5, 6 and 9 of issue 15: the exit codes of `request-slot` and `vm start` for a
//! running VM that is locked or on a draining host (77 first, as docs/SCHEDULER.md orders
//! the checks), a drain that ends with the host empty once the job finishes, slot requests
//! made before the daemon's first inventory, and `marbled check-config` on secret files and
//! TOML type errors.

use std::time::Duration;

use crate::e2e_support::{Out, Running, SPI1, SPI2, SimEnv, T, ctl, ctl_command, wait_power};
use marble_tests::harness::{DaemonProcess, wait_until_blocking};
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

/// The daemon's busy verdict for `vm` (`Busy`, `Idle`, `Unknown`…).
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
    assert!(out.stdout.is_empty(), "{what} writes nothing to stdout: {out}");
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
        seen == "Busy"
    });
    assert!(busy, "the build was never seen: {seen}\n{}", daemon.log_text());

    let drain = ctl(&daemon.socket, &["drain", "--reason", "disk swap"]);
    assert_eq!(drain.code, 0, "{drain}");
    // Jenkins keeps asking for its node while the build runs: every answer is 77 (and none
    // renews the grace, which would keep the VM up after the build).
    for _ in 0..3 {
        let slot = ctl(&daemon.socket, &["request-slot", SPI1]);
        assert_code(&slot, 77, "request-slot of the running VM of a draining host");
        assert!(slot.stderr.contains("disk swap"), "says why: {slot}");
    }
    let start = ctl(&daemon.socket, &["vm", "start", SPI1]);
    assert_code(&start, 77, "vm start of the running VM of a draining host");
    let other = ctl(&daemon.socket, &["request-slot", SPI2, "--wait", "5s"]);
    assert_code(&other, 77, "request-slot of another VM of a draining host");
    assert_eq!(env.sim_state(SPI1), VmState::Running, "a busy VM is never stopped");

    // The build ends; the drain stops the VM once its probe says idle.
    assert_eq!(env.host.remove_processes(SPI1, "jenkins1234.sh").unwrap(), 1);
    let done = ctl(&daemon.socket, &["drain", "--wait", "25s", "--reason", "disk swap"]);
    assert_eq!(done.code, 0, "the host empties once the build ends: {done}");
    assert_eq!(env.sim_state(SPI1), VmState::Stopped);
    assert_eq!(env.sim_state(SPI2), VmState::Stopped);
    wait_power(&daemon, SPI1, "Stopped");
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
    let start = ctl(&daemon.socket, &["vm", "start", SPI2]);
    let listed = ctl(&daemon.socket, &["vm", "list", "--json"]);
    assert!(
        listed.stdout.trim() == "[]",
        "the first inventory came before the requests; the test cannot judge: {listed}"
    );
    // Not "unknown VM" (2): the VMs are not listed yet, try again (75).
    assert_code(&no_wait, 75, "request-slot without a wait before the first inventory");
    assert!(no_wait.stderr.contains("first inventory"), "{no_wait}");
    assert_code(&start, 75, "vm start before the first inventory");

    // The waiting request is served once the VMs are listed.
    let out = waiting.wait(T * 2);
    assert_code(&out, 0, "request-slot --wait across the first inventory");
    assert_eq!(env.sim_state(SPI1), VmState::Running);
    // A name that is still unknown after the inventory is 2, listing the known VMs.
    let unknown = ctl(&daemon.socket, &["request-slot", "no-such-VM", "--wait", "5s"]);
    assert_code(&unknown, 2, "request-slot of an unknown VM");
    assert!(unknown.stderr.contains(SPI1), "lists the known VMs: {unknown}");
}
