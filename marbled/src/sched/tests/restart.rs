//! Daemon restarts: what the state file keeps (locks, in-flight operations, the prediction, spare
//! runners, the fair-share streak, the job waits counted).

use super::support::*;

#[test]
fn restore_keeps_locks_and_marks_in_flight_ops_for_reconcile() {
    let mut host = four(Policy::Cycle);
    host.command(
        "ops",
        Command::Lock {
            target: LockTarget::Vm(R2.into()),
            reason: "replacing".into(),
        },
    );
    host.advance(1_000);
    // A start is in flight when the daemon dies.
    assert!(host.world.persisted().locks.contains_key(R2));
    let mut persisted = host.world.persisted();
    persisted.in_flight.insert(
        S2.into(),
        persist::InFlightOp {
            operation: "start".into(),
            since_ms: host.now,
        },
    );
    let restored = World::restore(config(Policy::Cycle), persisted, host.now + 5_000);
    let mut after = Host::with_world(
        restored,
        &[
            (R1, Team::Root, PowerState::Running),
            (R2, Team::Root, PowerState::Stopped),
            (S1, Team::Spi, PowerState::Stopped),
            (S2, Team::Spi, PowerState::Running),
        ],
    );
    after.now = host.now + 5_000;
    let status = after.world.status(after.now);
    assert!(
        status.vms.iter().any(|v| v.name == R2 && v.lock.is_some()),
        "lock kept"
    );
    assert!(
        status
            .decisions
            .iter()
            .any(|d| d.vm.as_deref() == Some(S2) && d.text.contains("reconciled")),
        "{:?}",
        status.decisions
    );
    // Over capacity after the crash: nothing else starts, idle VMs are cycled down.
    after.advance(400_000);
    assert!(after.running().len() <= 1, "{:?}", after.running());
    assert!(after.world.persisted().in_flight.is_empty());
}

/// The daemon restarts after `down_ms`: a new world from `host`'s state file (after `edit`),
/// the same VMs in the same power states, the same jobs running.
fn restart(host: &Host, down_ms: u64, edit: impl FnOnce(&mut Persisted)) -> Host {
    let mut persisted = host.world.persisted();
    edit(&mut persisted);
    let later = host.now + down_ms;
    let restored = World::restore(host.world.config().clone(), persisted, later);
    let vms: Vec<(&str, Team, PowerState)> = host
        .power
        .iter()
        .map(|(name, power)| (name.as_str(), host.teams[name], power.clone()))
        .collect();
    let mut after = Host::with_world(restored, &vms);
    after.now = later;
    after.jobs = host.jobs.clone();
    after
}

fn starts_and_stops(host: &Host) -> Vec<(String, Action)> {
    host.log
        .iter()
        .filter(|(_, a)| matches!(a, Action::Start | Action::Stop(_)))
        .cloned()
        .collect()
}

#[test]
fn a_restart_keeps_the_warm_runner_prediction() {
    let warm = |c: &mut SchedConfig| {
        c.warm_window_ms = 3_600_000;
        c.warm_min_jobs = 2;
    };
    let mut host = warm_host(warm);
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        running_jobs: vec![
            job(1, host.now - 600_000, "mac15"),
            job(2, host.now - 1_000, "mac15"),
        ],
        ..Default::default()
    })));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    // The Mac rebooted: the daemon starts again with every VM stopped, and GitHub shows no
    // job any more (both finished).
    host.power.insert(M15.into(), PowerState::Stopped);
    let mut after = restart(&host, 5_000, |_| {});
    after.feed(Input::Demand(Box::default()));
    after.settle();
    assert_eq!(after.running(), vec![M15.to_owned()], "{:?}", after.log);
    let decisions = after.world.status(after.now).decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.text.contains("warm runner") && d.text.contains("predicted: 2 job(s)")),
        "{decisions:?}"
    );
    // A daemon that forgot the history boots nothing.
    let mut forgetful = restart(&host, 5_000, |state| state.seen_jobs.clear());
    forgetful.feed(Input::Demand(Box::default()));
    forgetful.advance(60_000);
    assert!(forgetful.running().is_empty(), "{:?}", forgetful.log);
    // History that left the ranking memory (`RANK_MEMORY_MS`, a day) while the daemon was
    // down is dropped at once, not kept (and written back) until the first demand snapshot.
    let window = host.world.config().warm_window_ms;
    assert_eq!(
        restart(&host, 5_000, |_| {})
            .world
            .persisted()
            .seen_jobs
            .len(),
        2
    );
    let stale = restart(&host, super::super::warm::RANK_MEMORY_MS, |_| {});
    assert!(stale.world.persisted().seen_jobs.is_empty());
    // History that left only the window is kept to rank platforms (a day), but predicts
    // nothing: no warm runner boots for it.
    let mut late = restart(&host, window, |_| {});
    assert_eq!(late.world.persisted().seen_jobs.len(), 2);
    late.feed(Input::Demand(Box::default()));
    late.advance(60_000);
    assert!(late.running().is_empty(), "{:?}", late.log);
}

#[test]
fn a_restart_keeps_a_spare_runner_for_the_rest_of_its_linger() {
    // Test config: no prediction, warm_linger 1 h.
    let mut host = booted_for_job_7();
    // Another runner took job 7; ten minutes later the daemon restarts.
    host.feed(Input::Demand(Box::default()));
    host.advance(10 * 60_000);
    let mut after = restart(&host, 5_000, |_| {});
    after.feed(Input::Demand(Box::default()));
    after.advance(30 * 60_000);
    assert_eq!(
        after.running(),
        vec![M15.to_owned()],
        "its boot is not thrown away: {:?}",
        after.log
    );
    let decisions = after.world.status(after.now).decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.text.contains("found running; booted at")
                && d.text.contains("for queued job #7")),
        "{decisions:?}"
    );
    after.advance(25 * 60_000);
    assert!(after.running().is_empty(), "stopped once the linger ended");
    // A daemon that forgot why it runs stops it at once.
    let mut forgetful = restart(&host, 5_000, |state| state.runners.clear());
    forgetful.feed(Input::Demand(Box::default()));
    forgetful.advance(5 * 60_000);
    assert!(forgetful.running().is_empty(), "{:?}", forgetful.log);
}

#[test]
fn a_restart_does_not_keep_a_used_runner_for_another_job() {
    let mut host = booted_for_job_7();
    // Its runner takes job 7; a probe sees it busy; then the daemon restarts.
    host.jobs.insert(M15.into(), "Runner.Worker".into());
    host.feed(Input::Demand(Box::default()));
    host.advance(2 * 60_000);
    let queued = DemandSnapshot {
        root_jobs: vec![job(8, host.now, "mac15")],
        ..Default::default()
    };
    let mut after = restart(&host, 5_000, |_| {});
    after.feed(Input::Demand(Box::new(queued.clone())));
    after.advance(2 * 60_000);
    assert!(starts_and_stops(&after).is_empty(), "busy: kept");
    // Job 7 ends. Job 8 is queued for the same labels, but GitHub will not give it to a used
    // single-use runner: stopped, then booted afresh for job 8.
    after.jobs.remove(M15);
    after.advance(3 * 60_000);
    after.feed(Input::Demand(Box::new(queued.clone())));
    after.settle();
    let ops = starts_and_stops(&after);
    assert!(
        matches!(ops.as_slice(), [(stop, Action::Stop(_)), (start, Action::Start)] if stop == M15 && start == M15),
        "{ops:?}"
    );
    // A daemon that forgot the runner was used keeps it for job 8, which never comes to it.
    let mut forgetful = restart(&host, 5_000, |state| state.runners.clear());
    forgetful.feed(Input::Demand(Box::new(queued)));
    forgetful.jobs.remove(M15);
    forgetful.advance(5 * 60_000);
    assert!(
        starts_and_stops(&forgetful).is_empty(),
        "{:?}",
        forgetful.log
    );
}

#[test]
fn a_restart_keeps_the_fair_share_streak() {
    // Jenkins took the host (S1's build) before ROOT's job was queued at `asked`: ROOT has
    // been passed over here since.
    let (host, asked) = contended(|c| c.fairness_bound_ms = 60_000, 0);
    let mut after = restart(&host, 5_000, |_| {});
    // Jenkins' start script asks again; the ROOT job still waits.
    after.command("jenkins", slot(S2, 3_600_000));
    after.settle();
    after.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(5, asked, "mac14")],
        ..Default::default()
    })));
    let now = after.now + 60_000;
    let turn = after.world.share_turn(now).expect("both wait");
    assert_eq!(turn.team, Team::Root, "{}", turn.why);
    assert!(turn.why.contains("turns in a row: 1"), "{}", turn.why);
    // Without the streak, Jenkins' longer weighted wait would go first.
    let mut forgetful = restart(&host, 5_000, |state| state.streak = None);
    forgetful.command("jenkins", slot(S2, 3_600_000));
    forgetful.settle();
    forgetful.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(5, asked, "mac14")],
        ..Default::default()
    })));
    assert_eq!(
        forgetful.world.share_turn(now).map(|t| t.team),
        Some(Team::Spi)
    );
}

#[test]
fn a_restart_keeps_a_spare_runners_rank_in_the_staggered_yield() {
    // This host keeps a mac15 runner warm; so does host `a`, whose runner ranks first (same
    // labels, name `a-…` before `h-…`). A mac14 job is queued: `a` yields at `warm_yield`,
    // this host 30 s later if the job is still unmet then.
    let mut host = warm_host(|c| {
        c.warm = vec![WarmTarget {
            labels: mac_labels("mac15"),
            count: 2,
        }];
    });
    host.feed(Input::Demand(Box::default()));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    let other = FleetRunner {
        name: "a-ROOT-VM-macOS-15".into(),
        labels: runner_labels("a-ROOT-VM-macOS-15"),
    };
    let mine = FleetRunner {
        name: M15.into(),
        labels: runner_labels(M15),
    };
    let since = host.now;
    let both = DemandSnapshot {
        root_jobs: vec![job(9, since, "mac14")],
        free_runners: vec![other, mine.clone()],
        ..Default::default()
    };
    host.feed(Input::Demand(Box::new(both)));
    host.advance(50_000);
    // The daemon restarts; meanwhile `a` yielded: its runner left the list, and the runner
    // it boots for the job is not listed yet.
    let mut after = restart(&host, 5_000, |_| {});
    let only_mine = DemandSnapshot {
        root_jobs: vec![job(9, since, "mac14")],
        free_runners: vec![mine],
        ..Default::default()
    };
    let from = after.log.len();
    let stopped = |h: &Host| {
        h.log[from..]
            .iter()
            .any(|(vm, a)| vm == M15 && matches!(a, Action::Stop(_)))
    };
    // Fresh snapshots every 5 s up to 25 s past `warm_yield`: not this host's turn yet.
    while after.now < since + 85_000 {
        after.feed(Input::Demand(Box::new(only_mine.clone())));
        after.advance(5_000);
    }
    assert!(
        !stopped(&after),
        "rank kept across the restart: no second yield for job 9: {:?}",
        after.log
    );
    // Still unmet once its turn came (a's boot failed): this host yields, nothing orphaned.
    while after.now < since + 100_000 {
        after.feed(Input::Demand(Box::new(only_mine.clone())));
        after.advance(5_000);
    }
    assert!(stopped(&after), "its turn: {:?}", after.log);
}

/// A job of a runner kept across a restart is still in the feed's `started_here` after it:
/// its wait was counted before, and the histogram (which restarts from zero) must not count
/// it again — a rate over the restart would add both lives.
#[test]
fn a_restart_does_not_count_a_running_jobs_wait_again() {
    let mut host = four(Policy::Demand);
    let running = DemandSnapshot {
        started_here: vec![StartedJob {
            id: 7,
            queued_ms: host.now - 90_000,
            started_ms: host.now - 20_000,
            runner: "runner-7".into(),
        }],
        ..Default::default()
    };
    host.feed(Input::Demand(Box::new(running.clone())));
    assert_eq!(host.world.counters().root_job_waits.count, 1);
    let mut after = restart(&host, 5_000, |_| {});
    after.feed(Input::Demand(Box::new(running.clone())));
    assert_eq!(
        after.world.counters().root_job_waits.count,
        0,
        "job 7's wait was counted before the restart"
    );
    // A job first seen after the restart is counted.
    let mut next = running.clone();
    next.started_here[0].id = 8;
    after.feed(Input::Demand(Box::new(next)));
    assert_eq!(after.world.counters().root_job_waits.count, 1);

    let mut forgetful = restart(&host, 5_000, |state| state.waits_counted.clear());
    forgetful.feed(Input::Demand(Box::new(running)));
    assert_eq!(forgetful.world.counters().root_job_waits.count, 1);
}
