//! The daemon under stress, end to end (real `marbled-under-test` child, real `marblectl`,
//! simulated Parallels host): a hanging `prlctl` times out with a clear error while other
//! clients keep getting answers; `kill -9` mid-operation and a restart rebind the socket,
//! keep the locks and reconcile with the simulator; SIGTERM exits 0 within the budget and
//! removes the socket; a peer that is only in the socket group may read but not mutate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::{ALL_VMS, Running, SPI1, SPI2, SimEnv, T, ctl, ctl_command, vm_list, wait_power};
use marble_tests::harness::{DaemonProcess, bin_path, wait_until_blocking};
use marble_tests::prlsim::{FaultKind, VmState};

/// Whether process `pid` is gone (reaped or never existed).
fn process_gone(pid: u32) -> bool {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits"));
    matches!(
        nix::sys::signal::kill(pid, None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Pid of the first fake-prlctl that logged a hang for `argv`.
fn hung_pid(env: &SimEnv, argv: &[&str]) -> Option<u32> {
    env.host
        .invocations()
        .expect("invocations")
        .into_iter()
        .find(|i| i.exit.is_none() && i.argv == argv)
        .map(|i| i.pid)
}

#[test]
fn hanging_prlctl_times_out_naming_the_call_while_status_answers_promptly() {
    let mut env = SimEnv::new();
    // Long enough for two CLI calls on a loaded machine to be answered while it hangs.
    env.config.prlctl.start_timeout = Duration::from_secs(5);
    let daemon = env.spawn();
    env.host
        .set_fault(
            Some(SPI1),
            FaultKind::Hang {
                verb: Some("start".into()),
                ignore_sigterm: false,
            },
            Some(1),
        )
        .unwrap();

    let mut start = Running::spawn(ctl_command(&daemon.socket, &["vm", "start", SPI1]));
    let hanging = wait_until_blocking(T, || hung_pid(&env, &["start", SPI1]).is_some());
    assert!(hanging, "prlctl start never hung:\n{}", daemon.log_text());
    let pid = hung_pid(&env, &["start", SPI1]).unwrap();

    // While the call hangs, other clients are answered: both answers come before the start
    // timeout kills the hung call (an order of events, not a speed: a status queued behind
    // the call could only answer after it).
    let status = ctl(&daemon.socket, &["status"]);
    assert_eq!(status.code, 0, "{status}");
    let list = ctl(&daemon.socket, &["vm", "list"]);
    assert_eq!(list.code, 0, "{list}");
    assert!(
        !process_gone(pid) && !start.finished(),
        "status ({:?}) and vm list ({:?}) were answered only after the hanging start ended",
        status.elapsed,
        list.elapsed
    );

    let start = start.wait(T);
    assert_ne!(start.code, 0, "a timed-out start must fail: {start}");
    assert!(
        start.stderr.contains("timed out"),
        "the error says it timed out: {start}"
    );
    assert!(
        start.stderr.contains(&format!("start {SPI1}")),
        "the error names the prlctl call: {start}"
    );
    assert!(
        start.elapsed < Duration::from_secs(15),
        "answered only after {:?} with a 5 s start timeout: {start}",
        start.elapsed
    );
    // The hung prlctl was killed, not left behind.
    assert!(
        wait_until_blocking(T, || process_gone(pid)),
        "the hung prlctl (pid {pid}) is still alive"
    );
    assert_eq!(env.sim_state(SPI1), VmState::Stopped);

    // The daemon is not wedged: the VM has no operation stuck on it and starts now.
    let again = ctl(&daemon.socket, &["vm", "start", SPI1]);
    assert_eq!(again.code, 0, "second start after the fault: {again}");
    assert_eq!(env.sim_state(SPI1), VmState::Running);
}

#[test]
fn kill_9_mid_operation_then_restart_rebinds_keeps_the_lock_and_reconciles() {
    let env = SimEnv::new();
    // The guest takes a minute to boot, so the daemon is still waiting for it when killed.
    env.host
        .set_boot_delay(SPI1, Duration::from_secs(60))
        .unwrap();
    let mut daemon = env.spawn();

    let reason = "replacing the build disk";
    let lock = ctl(&daemon.socket, &["lock", SPI2, "--reason", reason]);
    assert_eq!(lock.code, 0, "lock: {lock}");

    // Jenkins asks for SPI1; the answer comes only once the guest answers, so the client and
    // the daemon's readiness operation are both in flight when the daemon dies.
    let slot = Running::spawn(ctl_command(&daemon.socket, &["request-slot", SPI1]));
    let mut seen = serde_json::Value::Null;
    let in_flight = wait_until_blocking(T, || {
        let show = ctl(&daemon.socket, &["vm", "show", "--json", SPI1]);
        seen = serde_json::from_str(&show.stdout).unwrap_or_default();
        seen["operation"] == "ready"
    });
    assert!(
        in_flight,
        "never saw the readiness wait in flight: {seen}\n{}",
        daemon.log_text()
    );
    assert_eq!(env.sim_state(SPI1), VmState::Running);
    daemon.kill9();

    // The waiting client is told, not left hanging.
    let slot = slot.wait(T);
    assert_eq!(slot.code, 69, "client of a killed daemon: {slot}");
    assert!(
        slot.stdout.is_empty(),
        "request-slot never writes stdout: {slot}"
    );
    assert!(
        daemon.socket.exists(),
        "kill -9 leaves the socket file behind"
    );

    let daemon = DaemonProcess::spawn(env.dir.path(), &env.config);
    env.wait_inventory(&daemon);
    let status = ctl(&daemon.socket, &["status"]);
    assert_eq!(status.code, 0, "status after restart: {status}");

    // Reconciled with what Parallels says: the VM the killed daemon was starting runs.
    wait_power(&daemon, SPI1, "running");
    let list = vm_list(&daemon.socket);
    for vm in ALL_VMS {
        let sim = match env.sim_state(vm) {
            VmState::Running => "running",
            VmState::Stopped => "stopped",
            other => panic!("unexpected prlsim state {other:?}"),
        };
        assert_eq!(e2e_support::power(&list, vm), sim, "{vm} after restart");
    }

    // The lock survived, with who, why and since when.
    let show = ctl(&daemon.socket, &["vm", "show", "--json", SPI2]);
    assert_eq!(show.code, 0, "{show}");
    let vm: serde_json::Value = serde_json::from_str(&show.stdout).expect("json");
    assert_eq!(vm["lock"]["reason"], reason, "{vm}");
    assert_eq!(vm["lock"]["by"], "root", "{vm}");
    assert!(vm["lock"]["since_ms"].as_u64().unwrap_or(0) > 0, "{vm}");
    let status = ctl(&daemon.socket, &["status"]);
    assert!(
        status.stdout.contains("locks:") && status.stdout.contains(reason),
        "status shows the lock: {status}"
    );
    // ...and still holds: the locked VM does not start.
    let refused = ctl(&daemon.socket, &["vm", "start", SPI2]);
    assert_ne!(
        refused.code, 0,
        "a locked VM started after the restart: {refused}"
    );
    assert_eq!(env.sim_state(SPI2), VmState::Stopped);

    // A VM whose guest does not answer yet counts as busy: the restart did not stop it.
    assert_eq!(env.sim_state(SPI1), VmState::Running);
    assert!(
        env.power_calls().iter().all(|a| a[0] != "stop"),
        "nothing may be stopped across the restart: {:?}",
        env.power_calls()
    );
}

#[test]
fn sigterm_exits_0_within_the_budget_and_removes_the_socket() {
    let env = SimEnv::new();
    let mut daemon = env.spawn();
    let budget = env.config.daemon.shutdown_budget;

    let t0 = Instant::now();
    let status = daemon.terminate(budget + Duration::from_secs(10));
    let took = t0.elapsed();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status {status:?}\n{}",
        daemon.log_text()
    );
    assert!(took < budget, "took {took:?}, budget {budget:?}");
    assert!(
        !daemon.socket.exists(),
        "socket {} left behind",
        daemon.socket.display()
    );
}

#[test]
fn sigterm_during_a_hanging_prlctl_still_exits_0_within_the_budget() {
    let mut env = SimEnv::new();
    // Longer than the shutdown budget: the daemon must not wait for it.
    env.config.prlctl.start_timeout = Duration::from_secs(60);
    let mut daemon = env.spawn();
    let budget = env.config.daemon.shutdown_budget;
    env.host
        .set_fault(
            Some(SPI1),
            FaultKind::Hang {
                verb: Some("start".into()),
                ignore_sigterm: false,
            },
            None,
        )
        .unwrap();
    let start = Running::spawn(ctl_command(&daemon.socket, &["vm", "start", SPI1]));
    assert!(wait_until_blocking(T, || hung_pid(&env, &["start", SPI1]).is_some()));
    let pid = hung_pid(&env, &["start", SPI1]).unwrap();

    let t0 = Instant::now();
    let status = daemon.terminate(budget + Duration::from_secs(10));
    let took = t0.elapsed();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status {status:?}\n{}",
        daemon.log_text()
    );
    // One second of slack for process teardown after the drain.
    assert!(
        took < budget + Duration::from_secs(1),
        "took {took:?}, budget {budget:?}"
    );
    assert!(!daemon.socket.exists(), "socket left behind");
    let start = start.wait(T);
    assert_eq!(
        start.code, 69,
        "the waiting client hears of the shutdown: {start}"
    );
    assert!(start.stderr.contains("shutting down"), "{start}");
    assert!(
        wait_until_blocking(T, || process_gone(pid)),
        "the hung prlctl (pid {pid}) outlived the daemon"
    );
}

#[test]
fn a_socket_group_member_who_is_not_admin_may_read_but_not_mutate() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root to run marblectl as a second uid (nobody, 65534)");
        return;
    }
    const NOBODY: u32 = 65534;
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(NOBODY))
        .ok()
        .flatten()
        .expect("a group with gid 65534 (nogroup/nobody)");

    let mut env = SimEnv::new();
    // The socket in its own directory, which marbled creates 0750 with the socket group;
    // the temp dir above it only needs to be traversable.
    env.config.daemon.socket = env.dir.path().join("run/m.sock");
    env.config.daemon.socket_group = group.name.clone();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    // A copy of the CLI that uid 65534 can certainly execute.
    let exe = env.dir.path().join("marblectl");
    if std::fs::hard_link(bin_path("marblectl-under-test"), &exe).is_err() {
        std::fs::copy(bin_path("marblectl-under-test"), &exe).unwrap();
    }
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = env.spawn();

    let as_user = |uid: u32, gid: u32, args: &[&str]| {
        let mut cmd = std::process::Command::new(&exe);
        cmd.env_clear()
            .env("MARBLE_SOCKET", &daemon.socket)
            .args(args)
            .uid(uid)
            .gid(gid);
        Running::spawn(cmd).wait(T)
    };

    let status = as_user(NOBODY, NOBODY, &["status"]);
    assert_eq!(status.code, 0, "group member reads status: {status}");
    assert!(status.stdout.contains(SPI1), "{status}");

    let start = as_user(NOBODY, NOBODY, &["vm", "start", SPI1]);
    assert_eq!(start.code, 77, "non-admin start: {start}");
    let msg = start.stderr.to_lowercase();
    assert!(msg.contains("permission denied"), "{start}");
    assert!(msg.contains("nobody"), "names the user: {start}");
    let lock = as_user(NOBODY, NOBODY, &["lock", SPI1, "--reason", "x"]);
    assert_eq!(lock.code, 77, "non-admin lock: {lock}");
    assert_eq!(env.sim_state(SPI1), VmState::Stopped);
    assert!(env.power_calls().is_empty(), "{:?}", env.power_calls());
    let show = ctl(&daemon.socket, &["vm", "show", "--json", SPI1]);
    let vm: serde_json::Value = serde_json::from_str(&show.stdout).expect("json");
    assert_eq!(vm["lock"], serde_json::Value::Null, "{show}");

    // Not even in the group: the 0750 socket directory keeps it out.
    let outsider = as_user(NOBODY, NOBODY - 1, &["status"]);
    assert_eq!(outsider.code, 77, "outsider: {outsider}");
    assert!(
        outsider.stderr.to_lowercase().contains("permission denied"),
        "{outsider}"
    );
}
