//! Readiness and failures: quarantine instead of loops, silent guests, and operations the actor
//! did not run.

use super::support::*;

#[test]
fn readiness_failures_quarantine_instead_of_looping() {
    let mut host = Host::new(Policy::Cycle, &[(R1, Team::Root, PowerState::Stopped)]);
    host.never_ready
        .insert(R1.into(), "Runner.Listener not running".into());
    host.advance(3_600_000);
    let starts = host.log.iter().filter(|(_, a)| *a == Action::Start).count();
    // Two failures → 5 min, then 10, 20, 40 min back-off: a handful of starts in an hour.
    assert!((2..=5).contains(&starts), "starts in an hour: {starts}");
    let status = host.world.status(host.now);
    assert!(
        status.vms[0].note.contains("quarantined"),
        "{}",
        status.vms[0].note
    );
}

#[test]
fn a_vm_whose_guest_never_answers_is_stopped_and_quarantined() {
    let mut host = Host::new(
        Policy::Cycle,
        &[
            (R1, Team::Root, PowerState::Stopped),
            (R2, Team::Root, PowerState::Stopped),
        ],
    );
    host.never_ready
        .insert(R1.into(), "Unable to open new session".into());
    host.probe_fails
        .insert(R1.into(), "Unable to open new session".into());
    host.advance(3_600_000);
    // R1 never holds the host for long: it is stopped after each failed boot and
    // quarantined, and R2 gets cycled meanwhile.
    let r2_starts = host
        .log
        .iter()
        .filter(|(v, a)| v == R2 && *a == Action::Start)
        .count();
    assert!(r2_starts >= 5, "R2 started {r2_starts} times in an hour");
    let status = host.world.status(host.now);
    let r1 = status.vms.iter().find(|v| v.name == R1).unwrap();
    assert!(
        r1.note.contains("quarantined") || r1.power == PowerState::Stopped,
        "{r1:?}"
    );
}

#[test]
fn a_vm_found_running_with_a_silent_guest_is_never_stopped_on_a_guess() {
    let mut host = Host::new(Policy::Cycle, &[(R1, Team::Root, PowerState::Running)]);
    host.never_ready
        .insert(R1.into(), "Unable to open new session".into());
    host.probe_fails
        .insert(R1.into(), "Unable to open new session".into());
    host.advance(3_600_000);
    assert_eq!(host.running(), vec![R1.to_owned()]);
    assert!(!host.log.iter().any(|(_, a)| matches!(a, Action::Stop(_))));
}

#[test]
fn operations_the_actor_did_not_run_are_not_failures_and_do_not_spin() {
    let mut host = four(Policy::Cycle);
    // The actor refuses every start (an image transfer holds the host).
    let mut refused = 0;
    for _ in 0..50 {
        let Some(pos) = host.ops.iter().position(|(_, _, a)| *a == Action::Start) else {
            host.now += 1_000;
            host.feed(Input::Tick);
            continue;
        };
        let (op, _, _) = host.ops.remove(pos);
        host.feed(Input::Finished {
            op,
            outcome: Outcome::NotRun("not run: host held by an image push".into()),
        });
        refused += 1;
        host.now += 1_000;
        host.feed(Input::Tick);
    }
    // One attempt per re-check interval (60 s), not one per tick.
    assert!(
        (1..=2).contains(&refused),
        "start attempts in 50 s: {refused}"
    );
    assert!(
        host.world.persisted().quarantine.is_empty(),
        "not counted as failures"
    );
}

#[test]
fn a_slot_request_waiting_on_a_boot_that_fails_readiness_does_not_keep_the_silent_vm() {
    // `marble-sim` on docs/traces/cycle-faults.toml: a Jenkins request waits while the demand
    // policy boots a VM whose guest never answers. When readiness fails, the waiting request
    // used to take over the failed-readiness stop; its probe found the guest silent
    // (unknown), the request gave up, and nothing planned the stop again: the silent VM
    // held the host for the rest of the trace.
    let mut host = demand_host();
    host.never_ready
        .insert(M15.into(), "guest does not answer".into());
    host.probe_fails
        .insert(M15.into(), "guest does not answer".into());
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(7, host.now, "mac15")],
        ..Default::default()
    })));
    // The start finishes; the readiness wait is in flight when Jenkins asks.
    assert!(host.complete_one());
    assert!(
        host.ops
            .iter()
            .any(|(_, v, a)| v == M15 && matches!(a, Action::WaitReady { .. })),
        "{:?}",
        host.ops
    );
    let req = host.command("jenkins", slot(S1, 3_600_000));
    host.advance(600_000);
    assert!(
        host.log
            .iter()
            .any(|(v, a)| v == M15 && matches!(a, Action::Stop(_))),
        "the silent VM was never stopped: {:?}",
        host.log
    );
    assert!(
        matches!(host.replies.get(&req), Some(Ok(Response::SlotGranted(_)))),
        "{:?}",
        host.replies.get(&req)
    );
}

#[test]
fn demand_boots_a_vm_whose_last_boot_did_not_fail_first() {
    // `marble-sim` on docs/traces/cycle-faults.toml: the round robin came back to a VM whose
    // guest had never answered, and the next job waited another readiness timeout while an
    // equally able VM stood stopped.
    let mut host = demand_host_with(
        |_| {},
        &[
            (R1, Team::Root, PowerState::Stopped),
            (R2, Team::Root, PowerState::Stopped),
        ],
    );
    host.never_ready
        .insert(R1.into(), "guest does not answer".into());
    host.probe_fails
        .insert(R1.into(), "guest does not answer".into());
    let labels = runner_labels(R1);
    let queued = |id: u64, since_ms: u64| QueuedJob {
        id,
        since_ms,
        labels: labels.clone(),
    };
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![queued(1, host.now)],
        ..Default::default()
    })));
    host.settle();
    // R1 (first in the round robin) failed readiness and was stopped; R2 served job 1.
    let starts = |host: &Host, vm: &str| {
        host.log
            .iter()
            .filter(|(v, a)| v == vm && *a == Action::Start)
            .count()
    };
    assert_eq!(starts(&host, R1), 1, "{:?}", host.log);
    host.advance(120_000);
    assert_eq!(starts(&host, R2), 1, "{:?}", host.log);
    // Job 1 went elsewhere; the operator stops R2. Job 2 arrives: R2, not R1 again.
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: Vec::new(),
        ..Default::default()
    })));
    let stop = host.command(
        "admin",
        Command::StopVm {
            vm: R2.into(),
            force: false,
        },
    );
    host.settle();
    assert!(host.reply(stop).is_ok(), "{:?}", host.reply(stop));
    assert!(host.running().is_empty(), "{:?}", host.running());
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![queued(2, host.now)],
        ..Default::default()
    })));
    host.settle();
    assert_eq!(
        starts(&host, R1),
        1,
        "booted the failing VM again: {:?}",
        host.log
    );
    assert_eq!(starts(&host, R2), 2, "{:?}", host.log);
}
