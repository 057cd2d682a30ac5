//! Counters for metrics: boot times, resumes, and job waits counted once.

use super::support::*;

#[test]
fn boot_times_are_measured_from_the_start_to_the_guest_answering() {
    let mut host = four(Policy::Manual);
    host.command("admin", Command::StartVm { vm: R1.into() });
    assert!(host.complete_one(), "the start runs");
    // The guest answers 70 s after the start was issued.
    host.now += 70_000;
    assert!(host.complete_one(), "the readiness wait ends");
    assert_eq!(host.running(), vec![R1.to_owned()]);
    let boots = &host.world.counters().boot_times;
    assert_eq!((boots.count, boots.sum_ms), (1, 70_000));
    let le = |secs: u64| {
        let i = BOOT_BUCKETS_SECS
            .iter()
            .position(|b| *b == secs)
            .expect("a bucket bound");
        boots.at_or_under(i)
    };
    assert_eq!((le(60), le(90), le(300)), (0, 1, 1));

    // A boot whose guest never answers has no boot time; it is a failure.
    host.never_ready.insert(R2.into(), "guest silent".into());
    host.command(
        "admin",
        Command::StopVm {
            vm: R1.into(),
            force: false,
        },
    );
    host.settle();
    host.command("admin", Command::StartVm { vm: R2.into() });
    host.settle();
    let counters = host.world.counters();
    assert_eq!(counters.boot_times.count, 1, "{:?}", counters.boot_times);
    assert!(counters.boot_failures >= 1);
}

#[test]
fn a_resume_is_not_a_boot_time() {
    let mut host = Host::new(Policy::Manual, &[(R1, Team::Root, PowerState::Suspended)]);
    host.command("admin", Command::StartVm { vm: R1.into() });
    host.settle();
    assert_eq!(host.running(), vec![R1.to_owned()]);
    assert!(host.log.iter().any(|(_, a)| *a == Action::Resume));
    assert_eq!(host.world.counters().boot_times, Histogram::default());
}

#[test]
fn each_job_a_runner_here_took_counts_its_wait_once() {
    let mut host = demand_host();
    let started = |id: u64, queued_ms: Millis, started_ms: Millis| StartedJob {
        id,
        queued_ms,
        started_ms,
        runner: format!("runner-{id}"),
    };
    let snapshot = DemandSnapshot {
        started_here: vec![
            started(7, 1_000_000, 1_070_000),
            started(8, 1_000_000, 1_005_000),
        ],
        ..Default::default()
    };
    // Seen running by several polls: counted once each.
    host.feed(Input::Demand(Box::new(snapshot.clone())));
    host.feed(Input::Demand(Box::new(snapshot)));
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        started_here: vec![started(9, 1_000_000, 1_000_000 + 3_600_000 + 1)],
        ..Default::default()
    })));
    let waits = &host.world.counters().root_job_waits;
    assert_eq!(waits.count, 3, "{waits:?}");
    assert_eq!(waits.sum_ms, 70_000 + 5_000 + 3_600_001);
    let le = |secs: u64| {
        let i = JOB_WAIT_BUCKETS_SECS
            .iter()
            .position(|b| *b == secs)
            .expect("a bucket bound");
        waits.at_or_under(i)
    };
    assert_eq!((le(5), le(60), le(90), le(3600)), (1, 1, 2, 2));
}
