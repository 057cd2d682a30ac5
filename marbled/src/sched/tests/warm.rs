//! Warm runners: the prediction from recent jobs, fleet-wide targets, and giving way to unmet jobs
//! and slot requests.

use super::support::*;

#[test]
fn prediction_keeps_a_warm_runner_for_a_label_set_with_recent_jobs_and_only_then() {
    let mut host = warm_host(|c| {
        c.warm_window_ms = 3_600_000;
        c.warm_min_jobs = 2;
    });
    // One mac15 job seen in the window: below `warm_min_jobs`, nothing boots.
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        running_jobs: vec![job(1, host.now - 600_000, "mac15")],
        ..Default::default()
    })));
    host.advance(60_000);
    assert!(host.running().is_empty(), "{:?}", host.log);
    // A second one (seen running: a warm runner elsewhere took it between polls).
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        running_jobs: vec![job(2, host.now - 1_000, "mac15")],
        ..Default::default()
    })));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.text.contains("warm runner") && d.text.contains("predicted: 2 job(s)")),
        "{decisions:?}"
    );
    // No job comes: it stays warm past the on-time (a job-booted VM would be stopped).
    host.advance(30 * 60_000);
    assert_eq!(host.running(), vec![M15.to_owned()], "kept warm");
    // Its runner is now in the fleet list: the target is filled, nothing else boots.
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        free_runners: vec![FleetRunner {
            name: M15.into(),
            labels: mac_labels("mac15"),
        }],
        ..Default::default()
    })));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    let boots = host.log.iter().filter(|(_, a)| *a == Action::Start).count();
    assert_eq!(boots, 1);
}

#[test]
fn a_free_runner_elsewhere_fills_the_warm_target_so_this_host_boots_nothing() {
    let mut host = warm_host(|c| {
        c.warm = vec![WarmTarget {
            labels: mac_labels("mac14"),
            count: 1,
        }];
    });
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        free_runners: vec![FleetRunner {
            name: "other-ROOT-VM-macOS-14".into(),
            labels: runner_labels("x-macOS-14"),
        }],
        ..Default::default()
    })));
    host.advance(60_000);
    assert!(host.running().is_empty(), "{:?}", host.log);
    // That runner takes a queued job: the fleet is one short, this host boots one.
    host.feed(Input::Demand(Box::default()));
    host.settle();
    assert_eq!(host.running(), vec![M14.to_owned()]);
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.text.contains("configured: 1 warm") && d.text.contains("0 of 1 idle")),
        "{decisions:?}"
    );
}

#[test]
fn a_warm_runner_gives_way_to_an_unmet_job_it_cannot_take_after_the_yield_time() {
    let mut host = warm_host(|c| {
        c.warm = vec![WarmTarget {
            labels: mac_labels("mac15"),
            count: 1,
        }];
        c.warm_yield_ms = 60_000;
    });
    host.feed(Input::Demand(Box::default()));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    // A mac14 job: a free host elsewhere may take it first, so the warm runner waits.
    let since = host.now;
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(9, since, "mac14")],
        ..Default::default()
    })));
    host.advance(30_000);
    assert_eq!(
        host.running(),
        vec![M15.to_owned()],
        "not before the yield time"
    );
    host.advance(60_000);
    assert!(
        host.running().is_empty(),
        "warm runner gave way: {:?}",
        host.running()
    );
    // Probe first, as every stop.
    let probed = host
        .log
        .iter()
        .rposition(|(v, a)| v == M15 && matches!(a, Action::Probe(_)));
    let stopped = host
        .log
        .iter()
        .rposition(|(v, a)| v == M15 && matches!(a, Action::Stop(_)));
    assert!(probed < stopped, "{:?}", host.log);
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(9, since, "mac14")],
        ..Default::default()
    })));
    host.settle();
    assert_eq!(host.running(), vec![M14.to_owned()]);
}

#[test]
fn a_slot_request_takes_the_host_from_an_idle_warm_runner() {
    let mut host = warm_host(|c| {
        c.warm = vec![WarmTarget {
            labels: mac_labels("mac15"),
            count: 1,
        }];
    });
    host.feed(Input::Demand(Box::default()));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    let req = host.command("jenkins", slot(S1, 0));
    host.settle();
    assert!(
        matches!(host.reply(req), Ok(Response::SlotGranted(_))),
        "{:?}",
        host.reply(req)
    );
    assert_eq!(host.running(), vec![S1.to_owned()]);
}

#[test]
fn the_prediction_remembers_only_jobs_a_vm_here_could_run() {
    let mut host = warm_host(|c| c.warm_window_ms = 3_600_000);
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        running_jobs: vec![
            job(1, host.now, "mac15"),
            QueuedJob {
                id: 2,
                since_ms: host.now,
                labels: vec!["ubuntu-latest".into()],
            },
        ],
        ..Default::default()
    })));
    let seen = host.world.persisted().seen_jobs;
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), vec![1]);
}

/// An idle-warmth host (prediction and configured targets off).
fn idle_warm_host() -> Host {
    warm_host(|c| c.warm_idle_hosts = true)
}

/// Feed `snapshot` to a free host, then again once it has been free for the idle-warmth
/// delay (idle warmth boots only on a snapshot taken after it).
fn quiet_for_the_delay(host: &mut Host, snapshot: DemandSnapshot) {
    host.feed(Input::Demand(Box::new(snapshot.clone())));
    host.advance(super::super::warm::IDLE_WARM_AFTER_MS);
    host.feed(Input::Demand(Box::new(snapshot)));
    host.settle();
}

/// A job for an Intel Mac (`[self-hosted, macOS, X64, mac12]`): no VM of the ARM64 test host
/// can run it.
fn intel_job(id: u64, since_ms: Millis) -> QueuedJob {
    QueuedJob {
        id,
        since_ms,
        labels: ["self-hosted", "macOS", "X64", "mac12"]
            .map(String::from)
            .to_vec(),
    }
}

fn free_runner(vm: &str) -> FleetRunner {
    FleetRunner {
        name: vm.into(),
        labels: runner_labels(vm),
    }
}

#[test]
fn an_idle_host_keeps_a_runner_of_a_platform_no_idle_runner_in_the_fleet_covers() {
    let mut host = idle_warm_host();
    // Another host already keeps a mac14 runner: this one keeps mac15, not a second mac14,
    // once it has been free for the delay (a host freed between two jobs of a busy hour
    // boots nothing).
    let elsewhere = DemandSnapshot {
        free_runners: vec![free_runner("other-ROOT-VM-macOS-14")],
        ..Default::default()
    };
    host.feed(Input::Demand(Box::new(elsewhere.clone())));
    host.advance(super::super::warm::IDLE_WARM_AFTER_MS - 60_000);
    host.feed(Input::Demand(Box::new(elsewhere.clone())));
    host.settle();
    assert!(host.running().is_empty(), "not before the delay");
    host.advance(60_000);
    host.feed(Input::Demand(Box::new(elsewhere)));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()], "{:?}", host.log);
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.text.contains("idle host: no idle runner in the fleet")),
        "{decisions:?}"
    );
    // Nothing comes for a day: it stays (the next job, whatever its platform, finds runners).
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        free_runners: vec![free_runner("other-ROOT-VM-macOS-14"), free_runner(M15)],
        ..Default::default()
    })));
    host.advance(12 * 3_600_000);
    assert_eq!(host.running(), vec![M15.to_owned()]);
}

#[test]
fn a_job_nobody_can_serve_neither_holds_idle_warmth_off_nor_marks_the_fleet_full() {
    // Task robust9: a job asking for labels no VM here and no runner anywhere offers waits
    // for ever (reported as unservable). It is not unmet: warmth goes on, and it is never
    // the job the fleet is "full" for (that mark held warm boots for 30 min, again and
    // again).
    let mut host = idle_warm_host();
    let mislabelled = DemandSnapshot {
        // An Intel job: the fleet's one idle runner (ARM64) could not yield to it.
        root_jobs: vec![intel_job(5, host.now)],
        free_runners: vec![free_runner("other-ROOT-VM-macOS-14")],
        ..Default::default()
    };
    quiet_for_the_delay(&mut host, mislabelled);
    assert_eq!(host.running(), vec![M15.to_owned()], "{:?}", host.log);
    assert_eq!(host.world.congested_at, None);
    let unservable = host.world.unservable_jobs();
    assert_eq!(unservable.len(), 1, "{unservable:?}");
}

#[test]
fn a_job_only_another_host_can_serve_neither_holds_idle_warmth_off_nor_marks_this_host_full() {
    // Two Intel jobs queued, one Intel runner free on another host: the second job is unmet
    // fleet-wide (it waits for the Intel host), but no VM here could run it. It held this
    // ARM64 host's idle warmth off and marked the fleet full from here for as long as it
    // waited, though nothing this host does can serve it.
    let mut host = idle_warm_host();
    let intel_runner = FleetRunner {
        name: "intel-ROOT-VM-macOS-12".into(),
        labels: intel_job(0, 0).labels,
    };
    let two_for_one_runner = DemandSnapshot {
        root_jobs: vec![intel_job(5, host.now), intel_job(6, host.now)],
        free_runners: vec![intel_runner],
        ..Default::default()
    };
    quiet_for_the_delay(&mut host, two_for_one_runner);
    // With no job history, the first platform by name.
    assert_eq!(host.running(), vec![M14.to_owned()], "{:?}", host.log);
    assert_eq!(host.world.congested_at, None);
    // It is not "unservable" either: the Intel host serves it.
    assert!(host.world.unservable_jobs().is_empty());
}

#[test]
fn an_idle_host_boots_nothing_when_the_fleet_already_keeps_every_platform_it_has() {
    let mut host = idle_warm_host();
    let covered = DemandSnapshot {
        free_runners: vec![
            free_runner("other-ROOT-VM-macOS-15"),
            free_runner("third-ROOT-VM-macOS-14"),
        ],
        ..Default::default()
    };
    quiet_for_the_delay(&mut host, covered);
    host.advance(60_000);
    assert!(host.running().is_empty(), "{:?}", host.log);
}

#[test]
fn idle_warmth_keeps_the_likeliest_platform_first() {
    let mut host = warm_host(|c| {
        c.warm_idle_hosts = true;
        // Remember jobs, but never predict a target from them.
        c.warm_window_ms = 3_600_000;
        c.warm_min_jobs = 100;
    });
    // mac15 jobs ran lately (elsewhere); mac14 sorts first but none came.
    let seen = DemandSnapshot {
        running_jobs: vec![
            job(1, host.now - 600_000, "mac15"),
            job(2, host.now - 300_000, "mac15"),
        ],
        ..Default::default()
    };
    quiet_for_the_delay(&mut host, seen);
    assert_eq!(host.running(), vec![M15.to_owned()], "{:?}", host.log);
}

#[test]
fn idle_warmth_ranks_platforms_by_the_last_day_not_the_prediction_window() {
    let mut host = warm_host(|c| {
        c.warm_idle_hosts = true;
        c.warm_window_ms = 2 * 3_600_000;
        c.warm_min_jobs = 100;
    });
    // Yesterday's mac15 jobs, seen before a quiet night: outside `warm_window`, within the
    // ranking's day. mac14 sorts first by name but none came.
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        running_jobs: vec![job(1, host.now, "mac15"), job(2, host.now, "mac15")],
        ..Default::default()
    })));
    host.advance(10 * 3_600_000);
    quiet_for_the_delay(&mut host, DemandSnapshot::default());
    assert_eq!(host.running(), vec![M15.to_owned()], "{:?}", host.log);
}

#[test]
fn an_idle_hosts_warm_runner_gives_way_to_a_slot_request_at_once() {
    let mut host = idle_warm_host();
    quiet_for_the_delay(&mut host, DemandSnapshot::default());
    assert_eq!(host.running().len(), 1, "{:?}", host.log);
    let req = host.command("jenkins", slot(S1, 0));
    host.settle();
    assert!(
        matches!(host.reply(req), Ok(Response::SlotGranted(_))),
        "{:?}",
        host.reply(req)
    );
    assert_eq!(host.running(), vec![S1.to_owned()]);
}

#[test]
fn an_idle_hosts_warm_runner_gives_way_to_an_unmet_job_it_cannot_take() {
    let mut host = idle_warm_host();
    // The fleet keeps a mac15 runner elsewhere: this host keeps mac14.
    let elsewhere = DemandSnapshot {
        free_runners: vec![free_runner("other-ROOT-VM-macOS-15")],
        ..Default::default()
    };
    quiet_for_the_delay(&mut host, elsewhere);
    assert_eq!(host.running(), vec![M14.to_owned()]);
    // Two mac15 jobs: one takes the runner elsewhere, the other waits for a host.
    let since = host.now;
    let snapshot = DemandSnapshot {
        root_jobs: vec![job(8, since, "mac15"), job(9, since, "mac15")],
        free_runners: vec![free_runner("other-ROOT-VM-macOS-15"), free_runner(M14)],
        ..Default::default()
    };
    host.feed(Input::Demand(Box::new(snapshot.clone())));
    host.advance(30_000);
    assert_eq!(
        host.running(),
        vec![M14.to_owned()],
        "not before warm_yield"
    );
    host.feed(Input::Demand(Box::new(snapshot)));
    host.advance(60_000);
    let queued = DemandSnapshot {
        root_jobs: vec![job(9, since, "mac15")],
        ..Default::default()
    };
    host.feed(Input::Demand(Box::new(queued)));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()], "{:?}", host.log);
}

/// A `jobs_per_boot = 2` host whose mac15 VM ran job 7 and is probed idle after it, with
/// mac15 job 8 queued and unmet when job 7 ends.
fn rearm_host(rearm_fails: Option<&str>) -> Host {
    let mut host = demand_host_with(
        |c| c.jobs_per_boot = 2,
        &[
            (M14, Team::Root, PowerState::Stopped),
            (M15, Team::Root, PowerState::Stopped),
            (S1, Team::Spi, PowerState::Stopped),
        ],
    );
    host.rearm_fails = rearm_fails.map(str::to_owned);
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(7, host.now, "mac15")],
        ..Default::default()
    })));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    host.jobs.insert(M15.into(), "Runner.Worker".into());
    host.feed(Input::Demand(Box::default()));
    host.advance(120_000);
    host.jobs.remove(M15);
    // Job 8 queues while job 7 ends; no runner in the fleet takes it.
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(8, host.now, "mac15")],
        ..Default::default()
    })));
    host.advance(120_000);
    host
}

#[test]
fn with_two_jobs_per_boot_a_used_runner_is_re_armed_for_a_queued_job_instead_of_a_reboot() {
    let mut host = rearm_host(None);
    assert_eq!(host.running(), vec![M15.to_owned()], "{:?}", host.log);
    let rearms = host.log.iter().filter(|(_, a)| *a == Action::Rearm).count();
    assert_eq!(rearms, 1, "{:?}", host.log);
    assert!(
        !host.log.iter().any(|(_, a)| matches!(a, Action::Stop(_))),
        "{:?}",
        host.log
    );
    // The fresh runner takes job 8 and ends it: no third job this boot, so it stops.
    host.jobs.insert(M15.into(), "Runner.Worker".into());
    host.feed(Input::Demand(Box::default()));
    host.advance(120_000);
    host.jobs.remove(M15);
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(9, host.now, "mac15")],
        ..Default::default()
    })));
    host.advance(120_000);
    let rearms = host.log.iter().filter(|(_, a)| *a == Action::Rearm).count();
    assert_eq!(rearms, 1, "jobs_per_boot = 2: one re-arm per boot");
    assert!(host.log.iter().any(|(_, a)| matches!(a, Action::Stop(_))));
}

#[test]
fn a_failed_re_arm_stops_the_vm_as_with_one_job_per_boot() {
    let mut host = rearm_host(Some("runner re-arm is not supported"));
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.text.contains("runner re-arm failed")),
        "{decisions:?}"
    );
    host.advance(60_000);
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(8, host.now - 240_000, "mac15")],
        ..Default::default()
    })));
    host.settle();
    // Stopped, then booted afresh for job 8.
    let starts = host.log.iter().filter(|(_, a)| *a == Action::Start).count();
    assert_eq!(starts, 2, "{:?}", host.log);
}

#[test]
fn one_job_per_boot_never_re_arms() {
    let mut host = demand_host();
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(7, host.now, "mac15")],
        ..Default::default()
    })));
    host.settle();
    host.jobs.insert(M15.into(), "Runner.Worker".into());
    host.feed(Input::Demand(Box::default()));
    host.advance(120_000);
    host.jobs.remove(M15);
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(8, host.now, "mac15")],
        ..Default::default()
    })));
    host.advance(120_000);
    assert!(!host.log.iter().any(|(_, a)| *a == Action::Rearm));
}
