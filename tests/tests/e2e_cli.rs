//! End to end through the real binaries: `marbled-under-test` as a child process on a
//! simulated Parallels host (prlsim), driven by the real `marblectl`. Checks what a new user
//! sees (issue 2, "Must show"): `status` and `vm list --json` show the simulated VMs, `vm
//! start`/`vm stop` change them and the simulator agrees (down to the exact prlctl argv), a VM
//! whose busy state cannot be determined is not stopped without `--force`, and unknown VMs get
//! exit 2 with the list of known ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use e2e_support::{
    ALL_VMS, ROOT1, ROOT2, SPI1, SPI2, SimEnv, T, WORKER, ctl, power, vm_list, wait_power,
    wait_started,
};
use marble_tests::harness::wait_until_blocking;
use marble_tests::prlsim::{FaultKind, VmState};

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn status_and_vm_list_show_the_simulated_vms_with_teams_and_power() {
    let env = SimEnv::new();
    env.power_on(SPI2);
    let daemon = env.spawn();
    wait_power(&daemon, SPI2, "running");

    let list = vm_list(&daemon.socket);
    let mut names: Vec<&str> = list.iter().map(|v| v["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    let mut want = ALL_VMS.to_vec();
    want.sort_unstable();
    assert_eq!(names, want, "vm list --json: {list:?}");
    for vm in &list {
        let name = vm["name"].as_str().unwrap();
        let team = if name.contains("-ROOT-VM-") {
            "root"
        } else {
            "spi"
        };
        assert_eq!(vm["team"], team, "{vm}");
        let sim = env.host.vm(name).unwrap();
        assert_eq!(vm["uuid"], sim.uuid, "uuid of {name} as prlsim has it");
        let want_power = if name == SPI2 { "running" } else { "stopped" };
        assert_eq!(power(&list, name), want_power, "{vm}");
    }

    let status = ctl(&daemon.socket, &["status"]);
    assert_eq!(status.code, 0, "{status}");
    assert!(status.stdout.contains("policy:     manual"), "{status}");
    assert!(
        status
            .stdout
            .contains(&format!("running:    {SPI2} (spi, running")),
        "{status}"
    );
    for vm in ALL_VMS {
        assert!(status.stdout.contains(vm), "status misses {vm}: {status}");
    }

    let json = ctl(&daemon.socket, &["status", "--json"]);
    assert_eq!(json.code, 0, "{json}");
    let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("status json");
    assert_eq!(report["host"], "macphsft-test");
    assert_eq!(report["vms"].as_array().map(Vec::len), Some(4), "{report}");
}

#[test]
fn vm_start_and_stop_change_the_simulated_host_with_the_exact_prlctl_calls() {
    let env = SimEnv::new();
    let daemon = env.spawn();

    let start = ctl(&daemon.socket, &["vm", "start", SPI1]);
    assert_eq!(start.code, 0, "vm start: {start}");
    assert_eq!(
        env.sim_state(SPI1),
        VmState::Running,
        "prlsim after vm start"
    );
    // Not the power alone: the stop below is refused while the readiness wait runs.
    wait_started(&daemon, SPI1);

    let stop = ctl(&daemon.socket, &["vm", "stop", SPI1]);
    assert_eq!(stop.code, 0, "vm stop: {stop}");
    assert_eq!(
        env.sim_state(SPI1),
        VmState::Stopped,
        "prlsim after vm stop"
    );
    wait_power(&daemon, SPI1, "stopped");

    // A graceful stop (no --kill) of an idle VM, and nothing else was powered.
    assert_eq!(
        env.power_calls(),
        vec![argv(&["start", SPI1]), argv(&["stop", SPI1])],
        "power verbs in the prlctl invocation log"
    );
}

#[test]
fn a_root_vm_starts_once_its_runner_listens_and_stops_when_idle() {
    let env = SimEnv::new();
    let daemon = env.spawn();

    let start = ctl(&daemon.socket, &["vm", "start", ROOT1]);
    assert_eq!(start.code, 0, "vm start: {start}");
    assert_eq!(env.sim_state(ROOT1), VmState::Running);
    // The answer comes once the VM is powered on; the daemon then checks that the runner
    // listener is up in the guest.
    let ready_check = |a: &Vec<String>| {
        a.first().map(String::as_str) == Some("exec")
            && a.get(1).map(String::as_str) == Some(ROOT1)
            && a.iter().any(|w| w.contains("Runner\\.Listener"))
    };
    let checked = wait_until_blocking(T, || env.host.argvs().unwrap().iter().any(ready_check));
    assert!(
        checked,
        "no readiness check for the runner listener: {:?}",
        env.host.argvs().unwrap()
    );
    let mut op = serde_json::Value::Null;
    let settled = wait_until_blocking(T, || {
        let show = ctl(&daemon.socket, &["vm", "show", "--json", ROOT1]);
        op = serde_json::from_str::<serde_json::Value>(&show.stdout).unwrap_or_default()
            ["operation"]
            .clone();
        op.is_null()
    });
    assert!(settled, "operation still in flight: {op}");

    let stop = ctl(&daemon.socket, &["vm", "stop", ROOT1]);
    assert_eq!(stop.code, 0, "vm stop: {stop}");
    assert_eq!(env.sim_state(ROOT1), VmState::Stopped);
    assert_eq!(
        env.power_calls(),
        vec![argv(&["start", ROOT1]), argv(&["stop", ROOT1])]
    );
}

#[test]
fn vm_stop_refuses_a_vm_whose_busy_probe_fails_and_force_stops_it() {
    let env = SimEnv::new();
    env.power_on(ROOT1);
    let daemon = env.spawn();
    wait_power(&daemon, ROOT1, "running");
    // Every exec into the guest now fails: the daemon cannot tell whether a job runs.
    env.host
        .set_fault(Some(ROOT1), FaultKind::ExecSessionError, None)
        .unwrap();

    let refused = ctl(&daemon.socket, &["vm", "stop", ROOT1]);
    assert_eq!(
        refused.code, 75,
        "a VM of unknown busy state must be refused with EX_TEMPFAIL: {refused}"
    );
    let msg = refused.stderr.to_lowercase();
    assert!(
        msg.contains("unknown") || msg.contains("busy"),
        "the refusal must say the busy state is unknown/busy: {refused}"
    );
    assert_eq!(env.sim_state(ROOT1), VmState::Running, "VM kept running");
    assert!(
        env.power_calls().is_empty(),
        "no stop may reach prlctl: {:?}",
        env.power_calls()
    );

    let forced = ctl(&daemon.socket, &["vm", "stop", "--force", ROOT1]);
    assert_eq!(forced.code, 0, "vm stop --force: {forced}");
    assert_eq!(env.sim_state(ROOT1), VmState::Stopped);
    wait_power(&daemon, ROOT1, "stopped");
    let stops: Vec<Vec<String>> = env.power_calls();
    assert!(
        !stops.is_empty() && stops.iter().all(|a| a[0] == "stop" && a[1] == ROOT1),
        "only stops of {ROOT1}: {stops:?}"
    );
}

#[test]
fn vm_stop_refuses_a_vm_running_a_job() {
    let env = SimEnv::new();
    env.power_on(ROOT2);
    let daemon = env.spawn();
    wait_power(&daemon, ROOT2, "running");
    env.host.add_process(ROOT2, WORKER).unwrap();

    let refused = ctl(&daemon.socket, &["vm", "stop", ROOT2]);
    assert_eq!(refused.code, 75, "busy VM: {refused}");
    assert!(
        refused.stderr.contains("Runner.Worker"),
        "the refusal names what makes it busy: {refused}"
    );
    assert_eq!(env.sim_state(ROOT2), VmState::Running);
    assert!(env.power_calls().is_empty(), "{:?}", env.power_calls());

    // The job ends: now it stops.
    env.host.remove_processes(ROOT2, "Runner.Worker").unwrap();
    let stop = ctl(&daemon.socket, &["vm", "stop", ROOT2]);
    assert_eq!(stop.code, 0, "idle VM: {stop}");
    assert_eq!(env.sim_state(ROOT2), VmState::Stopped);
}

#[test]
fn unknown_vm_exits_2_listing_the_known_vms() {
    let env = SimEnv::new();
    let daemon = env.spawn();
    for args in [
        &["vm", "start", "macphsft01-SPI-VM-macOS-99"][..],
        &["vm", "stop", "macphsft01-SPI-VM-macOS-99"],
        &["vm", "show", "macphsft01-SPI-VM-macOS-99"],
    ] {
        let out = ctl(&daemon.socket, args);
        assert_eq!(out.code, 2, "{args:?}: {out}");
        assert!(out.stderr.contains("macphsft01-SPI-VM-macOS-99"), "{out}");
        for vm in ALL_VMS {
            assert!(out.stderr.contains(vm), "{args:?} must list {vm}: {out}");
        }
        assert!(out.stdout.is_empty(), "{out}");
    }
    assert!(env.power_calls().is_empty());
}

#[test]
fn vm_show_by_name_and_by_uuid() {
    let env = SimEnv::new();
    let daemon = env.spawn();
    let uuid = env.host.vm(ROOT2).unwrap().uuid;

    let show = ctl(&daemon.socket, &["vm", "show", ROOT2]);
    assert_eq!(show.code, 0, "{show}");
    assert!(
        show.stdout.contains(&format!("name:       {ROOT2}")),
        "{show}"
    );
    assert!(
        show.stdout.contains(&format!("uuid:       {uuid}")),
        "{show}"
    );
    assert!(show.stdout.contains("team:       root"), "{show}");
    assert!(show.stdout.contains("state:      stopped"), "{show}");

    // prlctl accepts `{UUID}` in any case; so does marblectl.
    let braced = format!("{{{}}}", uuid.to_uppercase());
    let json = ctl(&daemon.socket, &["vm", "show", "--json", &braced]);
    assert_eq!(json.code, 0, "{json}");
    let vm: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(vm["name"], ROOT2);
    assert_eq!(vm["uuid"], uuid);
    assert_eq!(vm["team"], "root");
    assert_eq!(vm["power"], "stopped");
    assert_eq!(vm["lock"], serde_json::Value::Null);
}
