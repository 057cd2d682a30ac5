//! The cycle policy: round robin of ROOT VMs, keeping busy ones, and starting nothing before the
//! first inventory.

use super::support::*;

#[test]
fn cycle_round_robins_root_vms_one_at_a_time() {
    let mut host = four(Policy::Cycle);
    let mut started = Vec::new();
    for _ in 0..40 {
        host.advance(10_000);
        assert!(
            host.running().len() <= 1,
            "two VMs running: {:?}",
            host.running()
        );
    }
    for (vm, action) in &host.log {
        if *action == Action::Start {
            started.push(vm.clone());
        }
    }
    assert!(started.len() >= 2, "cycled: {started:?}");
    assert_eq!(started[0], R1);
    assert_eq!(started[1], R2);
    assert!(started.iter().all(|vm| vm.contains("ROOT")), "{started:?}");
    // Graceful stops only (the VMs were idle and stopped at once).
    assert!(
        host.log
            .iter()
            .all(|(_, a)| *a != Action::Stop(StopKind::Kill))
    );
}

#[test]
fn cycle_keeps_busy_and_unknown_vms_running() {
    let mut host = four(Policy::Cycle);
    host.advance(1_000);
    assert_eq!(host.running(), vec![R1.to_owned()]);
    host.jobs.insert(R1.into(), "Runner.Worker pid 812".into());
    host.advance(600_000);
    assert_eq!(host.running(), vec![R1.to_owned()], "busy VM kept");
    host.jobs.remove(R1);
    host.probe_fails.insert(R1.into(), "exec failed".into());
    host.advance(600_000);
    assert_eq!(host.running(), vec![R1.to_owned()], "unknown VM kept");
    host.probe_fails.remove(R1);
    host.advance(130_000);
    assert!(!host.running().contains(&R1.to_owned()), "idle VM stopped");
}

#[test]
fn unknown_state_before_first_inventory_starts_nothing() {
    let mut world = World::new(config(Policy::Cycle), 0);
    let fx = world.handle(1, Input::Tick);
    assert!(
        fx.iter().all(|e| !matches!(e, Effect::Run { .. })),
        "{fx:?}"
    );
}
