//! The scheduler end to end (issue 3, "Must show"): the real daemon binary on a simulated
//! host, driven by the real `marblectl`. Policy `cycle` cycles ROOT VMs with the seed's
//! sequence on shortened timings and never runs two VMs; `request-slot` grants (stopping an
//! idle ROOT VM first), refuses a busy host with 75 naming the VM and its job, refuses a
//! locked VM with 77, and of 50 simultaneous requests grants exactly one; the cycler does
//! not stop a VM whose busy probe fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::time::Duration;

use e2e_support::{
    LISTENER, ROOT1, ROOT2, Running, SPI1, SPI2, SimEnv, T, WORKER, ctl, ctl_command, wait_power,
};
use marble_tests::harness::{DaemonProcess, short_tempdir, test_config, wait_until_blocking};
use marble_tests::prlsim::{FaultKind, SimHost, VmState};

/// Short cycle timings: on 1–1.5 s once ready, 1 s off window, re-check every second.
fn cycle_config(env: &mut SimEnv) {
    let s = &mut env.config.scheduler;
    s.policy = "cycle".into();
    s.cycle_on_min = Duration::from_secs(1);
    s.cycle_on_jitter = Duration::from_millis(500);
    s.cycle_off_window = Duration::from_secs(1);
    s.busy_recheck = Duration::from_secs(1);
    s.inventory_interval = Duration::from_secs(1);
}

/// Replays the simulator's log of successful power calls: the most VMs running at once.
fn max_running(host: &SimHost) -> (usize, Vec<String>) {
    let mut running = std::collections::BTreeSet::new();
    let mut max = 0;
    let mut seq = Vec::new();
    for inv in host.invocations().unwrap() {
        if inv.exit != Some(0) {
            continue;
        }
        match inv.argv.first().map(String::as_str) {
            Some("start" | "resume") => {
                running.insert(inv.argv[1].clone());
                seq.push(format!("start {}", inv.argv[1]));
            }
            Some("stop") => {
                running.remove(&inv.argv[1]);
                seq.push(format!("{} {}", inv.argv.join(" "), ""));
            }
            _ => {}
        }
        max = max.max(running.len());
    }
    (max, seq)
}

/// The daemon's `status --json`, parsed.
fn status(daemon: &DaemonProcess) -> serde_json::Value {
    let out = ctl(&daemon.socket, &["status", "--json"]);
    assert_eq!(out.code, 0, "status --json: {out}");
    serde_json::from_str(&out.stdout).unwrap()
}

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
fn wait_busy(daemon: &DaemonProcess, vm: &str, want: &str) {
    let mut seen = String::new();
    let ok = wait_until_blocking(T, || {
        seen = busy_kind(daemon, vm);
        seen == want
    });
    assert!(
        ok,
        "{vm} busy state stayed {seen}, expected {want}\n{}",
        daemon.log_text()
    );
}

#[test]
fn cycle_alternates_root_vms_and_never_runs_two() {
    let mut env = SimEnv::new();
    cycle_config(&mut env);
    let daemon = env.spawn();
    let mut starts = Vec::new();
    let cycled = wait_until_blocking(Duration::from_secs(90), || {
        starts = env
            .power_calls()
            .into_iter()
            .filter(|a| a[0] == "start")
            .map(|a| a[1].clone())
            .collect();
        starts.len() >= 3
    });
    assert!(
        cycled,
        "the cycle did not start 3 VMs: {starts:?}\n{}",
        daemon.log_text()
    );
    assert_eq!(
        &starts[..3],
        [ROOT1, ROOT2, ROOT1],
        "round robin over ROOT VMs"
    );
    let (max, seq) = max_running(&env.host);
    assert_eq!(max, 1, "two VMs ran at once: {seq:?}");
    // Idle VMs are stopped gracefully: never `--kill` when the guest shuts down.
    assert!(
        env.power_calls()
            .iter()
            .all(|a| !a.contains(&"--kill".to_owned())),
        "{:?}",
        env.power_calls()
    );
    let st = status(&daemon);
    assert_eq!(st["policy"], "cycle");
    let decisions = st["decisions"].to_string();
    assert!(decisions.contains("cycle: starting"), "{decisions}");
}

#[test]
fn the_cycler_does_not_stop_a_vm_whose_busy_probe_fails() {
    let mut env = SimEnv::new();
    cycle_config(&mut env);
    // Long enough that the fault below is in place before the on-time ends, even on a
    // loaded machine (the guest must have answered once: a VM whose guest never answered
    // since MARBLE booted it is stopped after failed readiness by design).
    env.config.scheduler.cycle_on_min = Duration::from_secs(8);
    let daemon = env.spawn();
    wait_busy(&daemon, ROOT1, "idle");
    env.host
        .set_fault(Some(ROOT1), FaultKind::ExecSessionError, None)
        .unwrap();
    assert!(
        !env.power_calls().iter().any(|a| a[0] == "stop"),
        "the on-time ended before the fault was injected; the test cannot judge: {:?}",
        env.power_calls()
    );
    // Its on-time ends within 8.5 s; the daemon must keep it because the probe fails.
    let mut decisions = String::new();
    let held = wait_until_blocking(T, || {
        decisions = status(&daemon)["decisions"].to_string();
        decisions.matches("unknown counts as busy").count() >= 2
    });
    assert!(
        held,
        "no 'unknown counts as busy' decision: {decisions}\n{}",
        daemon.log_text()
    );
    assert_eq!(env.sim_state(ROOT1), VmState::Running);
    assert!(
        !env.power_calls().iter().any(|a| a[0] == "stop"),
        "a VM of unknown busy state was stopped: {:?}",
        env.power_calls()
    );
    // `vm stop` refuses it too.
    let out = ctl(&daemon.socket, &["vm", "stop", ROOT1]);
    assert_eq!(out.code, 75, "{out}");
    assert_eq!(env.sim_state(ROOT1), VmState::Running);
}

#[test]
fn request_slot_stops_an_idle_root_vm_first_and_grants() {
    let mut env = SimEnv::new();
    cycle_config(&mut env);
    // A long on-time, so the ROOT VM is still up when Jenkins asks.
    env.config.scheduler.cycle_on_min = Duration::from_secs(600);
    let daemon = env.spawn();
    wait_busy(&daemon, ROOT1, "idle");
    let out = ctl(&daemon.socket, &["request-slot", SPI1]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.is_empty(),
        "request-slot must not write stdout: {out}"
    );
    assert!(out.stderr.contains(ROOT1), "names the preempted VM: {out}");
    assert_eq!(env.sim_state(SPI1), VmState::Running);
    assert_eq!(env.sim_state(ROOT1), VmState::Stopped);
    let calls = env.power_calls();
    let stop_root = calls.iter().position(|a| a[0] == "stop" && a[1] == ROOT1);
    let start_spi = calls.iter().position(|a| a[0] == "start" && a[1] == SPI1);
    assert!(stop_root.is_some() && stop_root < start_spi, "{calls:?}");
    // Idempotent: the running VM is granted again at once.
    let again = ctl(&daemon.socket, &["request-slot", SPI1]);
    assert_eq!(again.code, 0, "{again}");
    assert!(again.stderr.contains("already running"), "{again}");
    // The granted VM is protected: the cycle leaves it alone during the grace.
    assert_eq!(max_running(&env.host).0, 1);
}

#[test]
fn request_slot_refuses_a_busy_host_with_75_and_a_locked_vm_with_77() {
    let env = SimEnv::new();
    env.power_on(ROOT1);
    env.host.add_process(ROOT1, LISTENER).unwrap();
    env.host.add_process(ROOT1, WORKER).unwrap();
    let daemon = env.spawn();
    wait_busy(&daemon, ROOT1, "busy");
    let out = ctl(&daemon.socket, &["request-slot", SPI1]);
    assert_eq!(out.code, 75, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    for needle in [ROOT1, "root", "Runner.Worker", "since"] {
        assert!(
            out.stderr.contains(needle),
            "refusal must mention {needle:?}: {out}"
        );
    }
    assert_eq!(env.sim_state(ROOT1), VmState::Running);
    assert_eq!(env.sim_state(SPI1), VmState::Stopped);

    let lock = ctl(&daemon.socket, &["lock", SPI2, "--reason", "disk check"]);
    assert_eq!(lock.code, 0, "{lock}");
    let out = ctl(&daemon.socket, &["request-slot", SPI2]);
    assert_eq!(out.code, 77, "{out}");
    assert!(out.stderr.contains("disk check"), "says why: {out}");
    let unknown = ctl(&daemon.socket, &["request-slot", "no-such-VM"]);
    assert_eq!(unknown.code, 2, "{unknown}");
    assert!(unknown.stderr.contains(SPI1), "lists known VMs: {unknown}");
}

#[test]
fn fifty_simultaneous_requests_grant_exactly_one() {
    let dir = short_tempdir();
    let host = SimHost::create(dir.path().join("sim")).unwrap();
    let names: Vec<String> = (0..50)
        .map(|i| format!("macphsft01-SPI-VM-{i:02}"))
        .collect();
    for name in &names {
        host.add_vm(name).unwrap();
    }
    let config = test_config(dir.path(), host.dir());
    let daemon = DaemonProcess::spawn(dir.path(), &config);
    let listed = wait_until_blocking(T, || {
        ctl(&daemon.socket, &["vm", "show", &names[49]]).code == 0
    });
    assert!(listed, "{}", daemon.log_text());
    let running: Vec<Running> = names
        .iter()
        .map(|n| Running::spawn(ctl_command(&daemon.socket, &["request-slot", n])))
        .collect();
    let outs: Vec<_> = running.into_iter().map(|r| r.wait(T * 2)).collect();
    let granted = outs.iter().filter(|o| o.code == 0).count();
    let busy = outs.iter().filter(|o| o.code == 75).count();
    assert_eq!(
        (granted, busy),
        (1, 49),
        "exit codes: {:?}",
        outs.iter().map(|o| o.code).collect::<Vec<_>>()
    );
    assert!(outs.iter().all(|o| o.stdout.is_empty()));
    let running_now: Vec<&String> = names
        .iter()
        .filter(|n| host.vm_state(n).unwrap() == VmState::Running)
        .collect();
    assert_eq!(running_now.len(), 1, "{running_now:?}");
    assert_eq!(max_running(&host).0, 1);
    wait_power(&daemon, running_now[0], "running");
}

#[test]
fn events_follow_json_streams_typed_lifecycle_events() {
    let env = SimEnv::new();
    let daemon = env.spawn();
    let follower = Running::spawn(ctl_command(
        &daemon.socket,
        &["events", "--follow", "--json"],
    ));
    // The subscription is in place once a decision made after it shows up.
    let mut n = 0;
    let subscribed = wait_until_blocking(T, || {
        n += 1;
        let reason = format!("probe {n}");
        assert_eq!(ctl(&daemon.socket, &["pause", "--reason", &reason]).code, 0);
        follower.stdout_so_far().contains("probe ")
    });
    assert!(subscribed, "no event reached the follower");
    assert_eq!(ctl(&daemon.socket, &["vm", "start", SPI1]).code, 0);
    let mut lines = Vec::new();
    let seen = wait_until_blocking(T, || {
        lines = follower
            .stdout_so_far()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("one JSON event per line"))
            .collect();
        let has = |kind: &str| lines.iter().any(|e| e.get(kind).is_some());
        has("operation_started") && has("operation_finished") && has("vm_power") && has("decision")
    });
    assert!(seen, "events so far: {lines:?}");
    assert!(
        lines
            .iter()
            .any(|e| e["vm_power"]["vm"] == SPI1 && e["vm_power"]["to"] == "running")
    );
}
