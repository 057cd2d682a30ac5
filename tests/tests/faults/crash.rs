//! Case 1 of issue 15: two VMs after a crash. `kill -9` of `marbled` while its `prlctl start`
//! runs leaves that `prlctl` orphaned and still starting the VM; the restarted daemon must
//! not start another VM until that operation is resolved (intent log, wait for the child,
//! re-list until settled), and the wait must be visible (a WARN line, `status`).

use std::time::Duration;

use crate::e2e_support::{ROOT1, Running, SPI1, SimEnv, T, ctl, ctl_command};
use marble_tests::harness::{DaemonProcess, wait_until_blocking};
use marble_tests::prlsim::{FaultKind, VmState};

/// Pids of live `fake-prlctl VERB …` processes naming `vm` (read from `/proc`: the test
/// machine is Linux). Zombies are not alive.
pub(super) fn live_prlctl(verb: &str, vm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_prlctl = args.first().is_some_and(|a| a.ends_with("fake-prlctl"));
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
                .unwrap_or(true);
            is_prlctl
                && !zombie
                && args.get(1).is_some_and(|a| a == verb)
                && args.iter().any(|a| a == vm)
        })
        .collect()
}

/// VMs the simulator has running (what Parallels would say).
pub(super) fn running_in_sim(env: &SimEnv) -> Vec<String> {
    env.host
        .state()
        .expect("sim state")
        .vms
        .iter()
        .filter(|v| v.state == VmState::Running)
        .map(|v| v.name.clone())
        .collect()
}

#[test]
fn case_01_kill_9_during_a_slow_start_then_a_start_of_another_vm_leaves_one_vm_running() {
    let env = SimEnv::new();
    // The reproduction: a start that takes 5 s, during which Parallels still lists
    // the VM as stopped (the simulator sleeps before it touches the VM).
    env.host
        .set_fault(
            Some(ROOT1),
            FaultKind::Slow {
                verb: "start".into(),
                ms: 5000,
            },
            Some(1),
        )
        .unwrap();
    let mut daemon = env.spawn();
    let first = Running::spawn(ctl_command(&daemon.socket, &["vm", "start", ROOT1]));
    assert!(
        wait_until_blocking(T, || !live_prlctl("start", ROOT1).is_empty()),
        "prlctl start never ran:\n{}",
        daemon.log_text()
    );
    daemon.kill9();
    drop(first);
    // The orphan keeps starting the VM, as real prlctl does.
    assert_eq!(
        live_prlctl("start", ROOT1).len(),
        1,
        "the orphan died with the daemon"
    );
    assert_eq!(env.sim_state(ROOT1), VmState::Stopped);

    let daemon = DaemonProcess::spawn(env.dir.path(), &env.config);
    // Loud while it waits: `status` says what the daemon waits for.
    // (Asserted after the host check, which is the point of the case.)
    let status = ctl(&daemon.socket, &["status"]);
    let orphan_alive = !live_prlctl("start", ROOT1).is_empty();
    // What an operator (or Jenkins) does next: start another VM once the daemon lists it.
    env.wait_inventory(&daemon);
    let second = ctl(&daemon.socket, &["vm", "start", SPI1]);

    // Let the orphan finish, then look at the host.
    assert!(
        wait_until_blocking(T, || live_prlctl("start", ROOT1).is_empty()),
        "the orphaned start never finished"
    );
    assert_eq!(env.sim_state(ROOT1), VmState::Running, "the orphan's start");
    let running = running_in_sim(&env);
    assert_eq!(
        running,
        vec![ROOT1.to_owned()],
        "two VMs share the build disk after the restart; `vm start {SPI1}`: {second}\n{}",
        daemon.log_text()
    );
    assert_eq!(second.code, 75, "the second start is refused: {second}");
    assert_eq!(status.code, 0, "{status}");
    if orphan_alive {
        assert!(
            status.stdout.contains("unresolved") && status.stdout.contains(ROOT1),
            "status does not show the unresolved start: {status}"
        );
    }
    let log = daemon.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("unresolved") && l.contains(ROOT1)),
        "no WARN line about the unresolved start:\n{log}"
    );
    // Settled: the daemon believes what Parallels says.
    assert!(
        wait_until_blocking(Duration::from_secs(10), || {
            crate::e2e_support::power(&crate::e2e_support::vm_list(&daemon.socket), ROOT1)
                == "Running"
        }),
        "{}",
        daemon.log_text()
    );
}
