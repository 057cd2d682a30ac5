//! The staggered yield (`sched/stagger.rs`): which of several hosts holding spare warm runners
//! gives its host up to an unmet job, and when; and when the fleet counts as full.

use super::support::*;

/// A `demand` host `h` with a mac15 and a mac14 VM, keeping two mac15 runners warm
/// fleet-wide, whose mac15 runner is up and idle.
fn host_with_a_warm_mac15(h: &str) -> Host {
    let m15 = format!("{h}-ROOT-VM-macOS-15");
    let m14 = format!("{h}-ROOT-VM-macOS-14");
    let mut host = demand_host_with(
        |c| {
            c.warm = vec![WarmTarget {
                labels: mac_labels("mac15"),
                count: 2,
            }];
            c.warm_yield_ms = 60_000;
        },
        &[
            (&m15, Team::Root, PowerState::Stopped),
            (&m14, Team::Root, PowerState::Stopped),
        ],
    );
    host.feed(Input::Demand(Box::default()));
    host.settle();
    assert_eq!(host.running(), vec![m15], "{:?}", host.log);
    host
}

/// Whether `host` stopped its mac15 runner at or after `log_from` (its background probes
/// go on meanwhile, so a probe alone says nothing).
fn yielded(host: &Host, log_from: usize) -> bool {
    host.log[log_from..]
        .iter()
        .any(|(vm, a)| vm.ends_with("macOS-15") && matches!(a, Action::Stop(_)))
}

#[test]
fn of_two_hosts_with_identical_warm_runners_exactly_one_yields_to_an_unmet_job() {
    // Runner names as the daemon registers them: their order differs from the VMs' (host
    // `b`'s runner sorts first), and it is the one name every host sees in the runner list.
    let mut a = host_with_a_warm_mac15("a");
    let mut b = host_with_a_warm_mac15("b");
    let runner = |name: &str| FleetRunner {
        name: name.into(),
        labels: mac_labels("mac15")
            .into_iter()
            .chain(["ARM64".to_owned()])
            .collect(),
    };
    let since = a.now;
    let shared = DemandSnapshot {
        root_jobs: vec![job(9, since, "mac14")],
        free_runners: vec![runner("ci-zz-0001"), runner("ci-aa-0001")],
        ..Default::default()
    };
    let here = |vm: &str, name: &str| BTreeMap::from([(vm.to_owned(), name.to_owned())]);
    let for_a = DemandSnapshot {
        runners_here: here("a-ROOT-VM-macOS-15", "ci-zz-0001"),
        ..shared.clone()
    };
    let for_b = DemandSnapshot {
        runners_here: here("b-ROOT-VM-macOS-15", "ci-aa-0001"),
        ..shared
    };
    let (from_a, from_b) = (a.log.len(), b.log.len());
    // Fresh snapshots every 5 s, the same on both hosts, until 25 s after `warm_yield`
    // (before the second rank's turn): the job is still unmet on them.
    for _ in 0..(85_000 / 5_000) {
        a.feed(Input::Demand(Box::new(for_a.clone())));
        b.feed(Input::Demand(Box::new(for_b.clone())));
        a.advance(5_000);
        b.advance(5_000);
    }
    assert!(
        yielded(&b, from_b),
        "the first-ranked runner (ci-aa) yields: {:?}",
        b.log
    );
    assert!(
        !yielded(&a, from_a),
        "one yield per unmet job, not two: {:?}",
        a.log
    );
}

/// A free `demand` host (mac14, mac15 and mac-beta VMs, ARM64) keeping one mac15 runner
/// warm fleet-wide, shown an ARM64 `mac-beta` job its mac-beta VM would serve but for a
/// maintenance lock (so the job is unmet here, not unservable: a job no VM here offers and no
/// runner covers is not unmet at all, task robust9), queued 61 s ago (past `warm_yield`) with
/// an idle runner labelled `idle` the only one in the fleet; then the job starts elsewhere.
/// Returns whether the host booted its warm runner within 10 min after.
fn warm_boot_after_a_job_waited_beside(idle: &[&str]) -> bool {
    const BETA: &str = "h-ROOT-VM-macOS-beta";
    let mut host = demand_host_with(
        |c| {
            c.warm = vec![WarmTarget {
                labels: mac_labels("mac15"),
                count: 1,
            }];
        },
        &[
            (M14, Team::Root, PowerState::Stopped),
            (M15, Team::Root, PowerState::Stopped),
            (BETA, Team::Root, PowerState::Stopped),
            (S1, Team::Spi, PowerState::Stopped),
        ],
    );
    host.command(
        "admin",
        Command::Lock {
            target: LockTarget::Vm(BETA.into()),
            reason: "disk check".into(),
        },
    );
    let beta = QueuedJob {
        id: 5,
        since_ms: host.now - 61_000,
        labels: vec![
            "self-hosted".into(),
            "macOS".into(),
            "ARM64".into(),
            "mac-beta".into(),
        ],
    };
    let idle = FleetRunner {
        name: "b-ROOT-VM-macOS-14".into(),
        labels: idle.iter().map(|l| (*l).to_owned()).collect(),
    };
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![beta],
        free_runners: vec![idle],
        ..Default::default()
    })));
    host.settle();
    // A job is unmet: no warm boot meanwhile.
    assert!(host.running().is_empty(), "{:?}", host.log);
    // The job starts elsewhere: the fleet is a mac15 runner short, and this host is free.
    for _ in 0..10 {
        host.feed(Input::Demand(Box::default()));
        host.advance(60_000);
    }
    !host.running().is_empty()
}

#[test]
fn an_idle_runner_of_another_architecture_does_not_keep_the_fleet_from_counting_as_full() {
    // An idle ARM64 runner elsewhere could yield to the job: a wait for a yield, not a
    // full fleet; the warm runner boots.
    assert!(warm_boot_after_a_job_waited_beside(&[
        "self-hosted",
        "macOS",
        "ARM64",
        "mac14"
    ]));
    // Only an Intel host's runner is idle: no host that could run the ARM64 job is free,
    // the fleet is full, and warm boots wait `WARM_AFTER_CONGESTION_MS` (30 min).
    assert!(!warm_boot_after_a_job_waited_beside(&[
        "self-hosted",
        "macOS",
        "X64",
        "mac14"
    ]));
}
