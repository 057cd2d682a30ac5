//! Policy `demand`: booting for unmet jobs only, single-use runners, spares, watching for new
//! runs, giving the host up to ROOT, and the registration watchdog.

use super::support::*;

#[test]
fn demand_boots_nothing_when_nothing_waits() {
    let mut host = demand_host();
    host.feed(Input::Demand(Box::default()));
    host.advance(600_000);
    assert!(host.log.is_empty(), "{:?}", host.log);
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions.iter().any(|d| d.text.contains("no queued job")),
        "{decisions:?}"
    );
}

#[test]
fn demand_boots_the_vm_whose_labels_cover_the_job_and_stops_it_after_its_job() {
    let mut host = demand_host();
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(7, host.now - 5_000, "mac15")],
        free_runners: vec![],
        ..Default::default()
    })));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    // Its runner takes the job: busy; the job leaves the queue.
    host.jobs.insert(M15.into(), "Runner.Worker".into());
    host.feed(Input::Demand(Box::default()));
    host.advance(120_000);
    assert_eq!(host.running(), vec![M15.to_owned()], "kept while busy");
    host.jobs.remove(M15);
    host.advance(120_000);
    assert!(host.running().is_empty(), "stopped after its one job");
    let boots = host.log.iter().filter(|(_, a)| *a == Action::Start).count();
    assert_eq!(boots, 1, "nothing boots when nothing waits");
}

#[test]
fn a_runner_whose_job_went_elsewhere_stays_a_spare_for_the_warm_linger() {
    // Test config: no prediction, warm_linger 1 h, cycle_on_min 1 min.
    let mut host = booted_for_job_7();
    // Another runner took job 7 while this one booted.
    host.feed(Input::Demand(Box::default()));
    host.advance(30 * 60_000);
    assert_eq!(
        host.running(),
        vec![M15.to_owned()],
        "kept past cycle_on_min: its boot is not thrown away"
    );
    host.advance(31 * 60_000);
    assert!(host.running().is_empty(), "stopped once the linger ended");
    let boots = host.log.iter().filter(|(_, a)| *a == Action::Start).count();
    assert_eq!(boots, 1);
}

#[test]
fn only_a_free_host_under_demand_watches_for_new_runs() {
    let mut host = demand_host();
    assert!(host.world.watches_demand(), "free host");
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(7, host.now, "mac15")],
        ..Default::default()
    })));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    assert!(
        !host.world.watches_demand(),
        "a VM runs: a new job would cost a stop"
    );

    let cycle = four(Policy::Cycle);
    assert!(
        !cycle.world.watches_demand(),
        "policy cycle does not read demand"
    );

    let mut draining = demand_host();
    draining.command(
        "admin",
        Command::Drain {
            reason: "maintenance".into(),
            wait_ms: 0,
        },
    );
    assert!(
        !draining.world.watches_demand(),
        "a draining host boots nothing"
    );

    let mut asked = demand_host();
    asked.command("jenkins", slot(S1, 60_000));
    assert!(!asked.world.watches_demand(), "a slot request has the host");
}

#[test]
fn demand_does_not_boot_for_a_job_a_free_fleet_runner_will_take() {
    let mut host = demand_host();
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(1, host.now, "mac14"), job(2, host.now + 1, "mac14")],
        free_runners: vec![FleetRunner {
            name: "other-host-ROOT-VM-macOS-14".into(),
            labels: runner_labels("x-macOS-14"),
        }],
        ..Default::default()
    })));
    host.settle();
    // One of the two jobs is covered by the other host's runner: boot exactly one VM.
    assert_eq!(host.running(), vec![M14.to_owned()]);
    assert_eq!(host.world.unmet_jobs().len(), 1);
}

#[test]
fn demand_lets_an_idle_spi_vm_go_for_an_unmet_root_job_after_its_grace() {
    let mut host = demand_host();
    let req = host.command("jenkins", slot(S1, 0));
    host.settle();
    assert!(matches!(host.reply(req), Ok(Response::SlotGranted(_))));
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(3, host.now, "mac14")],
        free_runners: vec![],
        ..Default::default()
    })));
    host.advance(60_000);
    assert_eq!(
        host.running(),
        vec![S1.to_owned()],
        "protected during the grace"
    );
    let asks_before = host.demand_asks;
    host.advance(200_000);
    assert!(
        host.running().is_empty(),
        "idle SPI VM gave way: {:?}",
        host.running()
    );
    assert_eq!(
        host.demand_asks,
        asks_before + 1,
        "the freed host asks once for a fresh snapshot instead of waiting for the next poll"
    );
    // The host boots only on a snapshot taken after it became free.
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.text.contains("fresh demand snapshot")),
        "{decisions:?}"
    );
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(3, host.now - 260_000, "mac14")],
        free_runners: vec![],
        ..Default::default()
    })));
    host.settle();
    assert_eq!(
        host.running(),
        vec![M14.to_owned()],
        "idle SPI VM gave way to ROOT"
    );
}

#[test]
fn registration_watchdog_recycles_a_runner_that_takes_no_waiting_job() {
    let mut cfg = config(Policy::Manual);
    cfg.runner_watchdog_ms = 600_000;
    let world = World::new(cfg, 1_000_000);
    let mut host = Host::with_world(world, &[(M15, Team::Root, PowerState::Stopped)]);
    let start = host.command("admin", Command::StartVm { vm: M15.into() });
    host.settle();
    assert!(host.reply(start).is_ok());
    // A mac15 job waits, but the runner never gets it.
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(9, host.now - 1_000, "mac15")],
        free_runners: vec![],
        ..Default::default()
    })));
    host.advance(500_000);
    assert_eq!(
        host.running(),
        vec![M15.to_owned()],
        "not before the timeout"
    );
    host.advance(200_000);
    assert!(host.running().is_empty(), "recycled after the timeout");
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions.iter().any(|d| d.text.starts_with("watchdog:")),
        "{decisions:?}"
    );

    // A runner that takes the job is left alone.
    let start = host.command("admin", Command::StartVm { vm: M15.into() });
    host.settle();
    assert!(host.reply(start).is_ok());
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(10, host.now - 1_000, "mac15")],
        free_runners: vec![],
        ..Default::default()
    })));
    host.jobs.insert(M15.into(), "Runner.Worker".into());
    host.advance(900_000);
    assert_eq!(host.running(), vec![M15.to_owned()], "busy runner kept");
}

#[test]
fn a_runner_the_feed_shows_used_is_stopped_not_kept_for_a_matching_job() {
    // Issue 17: job 7 starts on the fresh runner and ends before the first busy probe; no
    // probe ever sees the VM busy. Another mac15 job is queued: GitHub will never give it
    // to this single-use runner, so keeping the VM for it loses the job.
    let mut host = booted_for_job_7();
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(8, host.now, "mac15")],
        taken_runners: vec!["runner-of-m15".into()],
        used_here: vec![M15.into()],
        ..Default::default()
    })));
    host.settle();
    let decisions = host.world.status(host.now).decisions;
    let texts: Vec<&str> = decisions.iter().map(|d| d.text.as_str()).collect();
    let noted = texts
        .iter()
        .position(|t| t.contains("demand feed shows its runner took its job"))
        .unwrap_or_else(|| panic!("{texts:#?}"));
    let stopped = texts
        .iter()
        .position(|t| t.starts_with("stopped"))
        .unwrap_or_else(|| panic!("a spent runner is stopped once idle: {texts:#?}"));
    let rebooted = texts
        .iter()
        .position(|t| t.starts_with("demand: booting for job #8"))
        .unwrap_or_else(|| panic!("a fresh runner boots for job 8: {texts:#?}"));
    assert!(noted < stopped && stopped < rebooted, "{texts:#?}");
    let boots = host.log.iter().filter(|(_, a)| *a == Action::Start).count();
    assert_eq!(boots, 2, "job 7's VM, then a fresh boot for job 8");
}

#[test]
fn a_runner_the_feed_shows_used_while_its_job_runs_is_kept_until_idle() {
    let mut host = booted_for_job_7();
    host.jobs.insert(M15.into(), "Runner.Worker".into());
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        used_here: vec![M15.into()],
        ..Default::default()
    })));
    host.advance(5 * 60_000);
    assert_eq!(host.running(), vec![M15.to_owned()], "never stopped busy");
    host.jobs.remove(M15);
    host.advance(3 * 60_000);
    assert!(host.running().is_empty(), "stopped once its job ended");
}

#[test]
fn registration_watchdog_covers_a_job_queued_after_the_runner_was_ready() {
    let mut cfg = config(Policy::Manual);
    cfg.runner_watchdog_ms = 600_000;
    let world = World::new(cfg, 1_000_000);
    let mut host = Host::with_world(world, &[(M15, Team::Root, PowerState::Stopped)]);
    let start = host.command("admin", Command::StartVm { vm: M15.into() });
    host.settle();
    assert!(host.reply(start).is_ok());
    host.advance(20 * 60_000);
    // Queued long after readiness; the runner never gets it.
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(9, host.now, "mac15")],
        ..Default::default()
    })));
    host.advance(500_000);
    assert_eq!(
        host.running(),
        vec![M15.to_owned()],
        "not before the job waited the timeout"
    );
    host.advance(200_000);
    assert!(host.running().is_empty(), "recycled after the timeout");
}

#[test]
fn a_runner_the_feed_shows_done_is_probed_at_once_not_at_the_next_recheck() {
    let mut host = booted_for_job_7();
    host.jobs.insert(M15.into(), "Runner.Worker".into());
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        used_here: vec![M15.into()],
        ..Default::default()
    })));
    host.advance(90_000);
    assert_eq!(host.running(), vec![M15.to_owned()], "busy: kept");
    // The job ends; the next poll shows it completed (or the runner deleted).
    host.jobs.remove(M15);
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        used_here: vec![M15.into()],
        done_here: vec![M15.into()],
        ..Default::default()
    })));
    host.advance(1_000);
    assert!(
        host.running().is_empty(),
        "stopped at once, not after the busy re-check"
    );
}

/// A demand host whose Jenkins agent (S1) ran a 30-min build from a granted slot, then sat
/// idle; `agent_idle_handover` 2 h.
fn agent_after_a_build() -> Host {
    agent_after_a_build_with(|c| c.agent_idle_handover_ms = 2 * 3_600_000)
}

/// [`agent_after_a_build`] on a host configured by `configure`.
fn agent_after_a_build_with(configure: impl FnOnce(&mut SchedConfig)) -> Host {
    let mut host = demand_host_with(
        configure,
        &[
            (M14, Team::Root, PowerState::Stopped),
            (M15, Team::Root, PowerState::Stopped),
            (S1, Team::Spi, PowerState::Stopped),
        ],
    );
    host.feed(Input::Demand(Box::default()));
    let req = host.command("jenkins", slot(S1, 0));
    host.settle();
    assert!(matches!(host.reply(req), Ok(Response::SlotGranted(_))));
    host.jobs.insert(S1.into(), "Jenkins build running".into());
    host.advance(30 * 60_000);
    host.jobs.remove(S1);
    host
}

#[test]
fn a_jenkins_agent_idle_for_agent_idle_handover_gives_its_host_to_root() {
    let mut host = agent_after_a_build();
    // The day's gaps between builds (< 2 h): the agent stays up for the next one. The night:
    // idle past the age, with no ROOT job waiting, it gives the host up.
    assert_agent_goes_between(&mut host, 110 * 60_000, 15 * 60_000, "agent_idle_handover");
}

/// The agent S1 is still up after `kept_for` more, and gone `then` later, with a decision
/// naming `key`.
fn assert_agent_goes_between(host: &mut Host, kept_for: Millis, then: Millis, key: &str) {
    host.advance(kept_for);
    assert_eq!(
        host.running(),
        vec![S1.to_owned()],
        "still within {key}: kept"
    );
    host.advance(then);
    assert!(host.running().is_empty(), "{:?}", host.running());
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions.iter().any(|d| d.text.contains(key)),
        "{decisions:?}"
    );
}

#[test]
fn a_jenkins_agent_whose_probe_fails_is_never_taken_for_idle() {
    let mut host = agent_after_a_build();
    host.probe_fails.insert(S1.into(), "exec timed out".into());
    host.advance(6 * 3_600_000);
    assert_eq!(
        host.running(),
        vec![S1.to_owned()],
        "unknown counts as busy"
    );
}

/// A demand host whose mac15 VM ran job 7 and was stopped after it; returns it with a
/// moment when the VM still held the host (a poll begun then predates the host's freedom).
fn freed_after_job_7() -> (Host, Millis) {
    let mut host = booted_for_job_7();
    host.jobs.insert(M15.into(), "Runner.Worker".into());
    host.feed(Input::Demand(Box::default()));
    host.advance(120_000);
    host.jobs.remove(M15);
    let held = host.now;
    host.advance(120_000);
    assert!(host.running().is_empty(), "stopped after its one job");
    (host, held)
}

/// Job 8 (mac14) queued, as a poll begun at `taken_at_ms` saw it (0: not said).
fn job_8_queued(taken_at_ms: Millis) -> Input {
    Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(8, 1_000, "mac14")],
        taken_at_ms,
        ..Default::default()
    }))
}

#[test]
fn a_freed_host_does_not_boot_on_a_poll_begun_before_it_was_freed() {
    // A poll begins while the VM still holds the host, and its answer arrives once the host
    // is free: job 8 queued. Another host may have booted for it since the poll began.
    let (mut host, poll_began) = freed_after_job_7();
    host.feed(job_8_queued(poll_began));
    host.settle();
    assert!(
        host.running().is_empty(),
        "booted on a picture taken before the host was free"
    );
    let said = host.world.status(host.now).decisions;
    let waits = said
        .iter()
        .any(|d| d.text.contains("fresh demand snapshot"));
    assert!(waits, "{said:?}");
    // A poll begun after the host was freed still shows job 8: boot for it.
    host.feed(job_8_queued(host.now));
    host.settle();
    assert_eq!(host.running(), vec![M14.to_owned()]);
}

#[test]
fn a_snapshot_without_its_poll_time_counts_from_its_arrival() {
    let (mut host, _) = freed_after_job_7();
    host.feed(job_8_queued(0));
    host.settle();
    assert_eq!(host.running(), vec![M14.to_owned()]);
}

/// An agent idle after a build on a host with warmth on (`warm_idle_hosts`, hand-over for
/// warmth after 1 h, `agent_idle_handover` as given), and a snapshot listing one idle mac14
/// runner on another host: mac14 is warm in the fleet, mac15 (a VM here) is not.
fn agent_where_mac15_is_missing(idle_handover_ms: Millis, root_jobs: Vec<QueuedJob>) -> Host {
    let mut host = agent_after_a_build_with(|c| {
        c.agent_idle_handover_ms = idle_handover_ms;
        c.agent_warm_handover_ms = 3_600_000;
        c.warm_idle_hosts = true;
        c.warm_window_ms = 2 * 3_600_000;
    });
    host.feed(Input::Demand(Box::new(mac14_elsewhere(
        &host,
        root_jobs,
        Vec::new(),
    ))));
    host
}

/// A snapshot taken now: `root_jobs` queued, another host's idle mac14 runner and `more` free.
fn mac14_elsewhere(
    host: &Host,
    root_jobs: Vec<QueuedJob>,
    more: Vec<FleetRunner>,
) -> DemandSnapshot {
    let mac14 = FleetRunner {
        name: "other-host-mac14".into(),
        labels: host.world.vms[M14].labels.clone(),
    };
    DemandSnapshot {
        root_jobs,
        free_runners: [vec![mac14], more].concat(),
        taken_at_ms: host.now,
        ..Default::default()
    }
}

/// A second after the agent went, the next such snapshot: the freed host boots mac15's warm
/// runner at once, not after the idle-warmth delay (until it is listed, every other idle
/// agent would see mac15 missing too).
fn assert_freed_host_boots_mac15(
    host: &mut Host,
    root_jobs: Vec<QueuedJob>,
    more: Vec<FleetRunner>,
) {
    host.advance(1_000);
    let snapshot = mac14_elsewhere(host, root_jobs, more);
    host.feed(Input::Demand(Box::new(snapshot)));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
}

#[test]
fn an_agent_idle_for_agent_warm_handover_frees_its_host_for_a_missing_platform_at_once() {
    let mut host = agent_where_mac15_is_missing(8 * 3_600_000, Vec::new());
    assert_agent_goes_between(&mut host, 50 * 60_000, 15 * 60_000, "agent_warm_handover");
    assert_freed_host_boots_mac15(&mut host, Vec::new(), Vec::new());
}

#[test]
fn agent_idle_handover_off_keeps_the_agent_for_warmth_too() {
    let mut host = agent_where_mac15_is_missing(0, Vec::new());
    host.advance(5 * 3_600_000);
    assert_eq!(
        host.running(),
        vec![S1.to_owned()],
        "agent_idle_handover \"0s\" means never"
    );
}

/// A queued job asking for `[self-hosted, Linux]`: no VM of the test hosts offers it.
fn linux_job(id: u64) -> QueuedJob {
    QueuedJob {
        labels: vec!["self-hosted".into(), "Linux".into()],
        ..job(id, 1_000_000 + id, "mac13")
    }
}

#[test]
fn an_agent_goes_for_warmth_while_a_job_only_another_host_can_serve_is_unmet() {
    // A job no VM here can run waits for a runner of another host (job 8 took the one idle
    // Linux runner there). Nothing here can serve it: it once kept the agent up ("a freed
    // host would not boot a warm runner while a job is unmet") for as long as it waited;
    // the freed host now boots mac15's warm runner.
    let jobs = || vec![linux_job(8), linux_job(9)];
    let linux = || {
        vec![FleetRunner {
            name: "other-host-linux".into(),
            labels: linux_job(0).labels,
        }]
    };
    let mut host = agent_where_mac15_is_missing(8 * 3_600_000, Vec::new());
    host.feed(Input::Demand(Box::new(mac14_elsewhere(
        &host,
        jobs(),
        linux(),
    ))));
    assert_agent_goes_between(&mut host, 50 * 60_000, 15 * 60_000, "agent_warm_handover");
    assert!(
        host.world.unservable_jobs().is_empty(),
        "the Linux host serves it"
    );
    assert_freed_host_boots_mac15(&mut host, jobs(), linux());
}

#[test]
fn a_job_nobody_can_serve_does_not_keep_an_agent_from_going_for_warmth() {
    // Task robust9: a mislabelled job no VM here and no runner anywhere offers (reported as
    // unservable) is not unmet. Counted, it kept the agent (and every host's warmth) held
    // for as long as it stayed queued.
    let mut host = agent_where_mac15_is_missing(8 * 3_600_000, vec![linux_job(9)]);
    assert_agent_goes_between(&mut host, 50 * 60_000, 15 * 60_000, "agent_warm_handover");
    assert_eq!(host.world.unservable_jobs().len(), 1, "still reported");
    assert_freed_host_boots_mac15(&mut host, vec![linux_job(9)], Vec::new());
}

/// An agent idle after a build (`agent_idle_handover` 8 h, `agent_predicted_handover` 1 h)
/// on a host whose mac15 VM could be the fleet's configured mac15 warm runner, which is
/// missing while the configured mac14 one is up on another host; Jenkins' queue known empty
/// for `idle_for` from now (0: not empty, or unknown).
fn agent_where_a_warm_mac15_is_wanted(idle_for: Millis) -> Host {
    let mut host = agent_after_a_build_with(|c| {
        c.agent_idle_handover_ms = 8 * 3_600_000;
        c.agent_predicted_handover_ms = 3_600_000;
    });
    // Set after the build: a host with no demand would have booted a warm runner first.
    host.world.config.warm = ["mac14", "mac15"]
        .into_iter()
        .map(|platform| WarmTarget {
            labels: mac_labels(platform),
            count: 1,
        })
        .collect();
    let mac14 = host.world.vms[M14].labels.clone();
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        free_runners: vec![FleetRunner {
            name: "other-host-mac14".into(),
            labels: mac14,
        }],
        jenkins_idle_until_ms: host.now.saturating_add(idle_for),
        taken_at_ms: host.now,
        ..Default::default()
    })));
    host
}

#[test]
fn an_agent_idle_for_agent_predicted_handover_frees_its_host_for_a_missing_warm_runner() {
    let mut host = agent_where_a_warm_mac15_is_wanted(Millis::MAX);
    assert_agent_goes_between(
        &mut host,
        50 * 60_000,
        15 * 60_000,
        "agent_predicted_handover",
    );
}

#[test]
fn an_agent_is_not_given_up_for_a_warm_runner_while_jenkins_queue_is_unknown_or_busy() {
    // `jenkins_idle_until_ms` 0: a build queued, or no `[jenkins]` feed to tell — the agent
    // may be wanted, so only `agent_idle_handover` (8 h) gives its host up.
    let mut host = agent_where_a_warm_mac15_is_wanted(0);
    host.advance(5 * 3_600_000);
    assert_eq!(host.running(), vec![S1.to_owned()]);
}

#[test]
fn an_agent_is_not_given_up_for_a_warm_runner_on_a_jenkins_answer_gone_stale() {
    // Task robust9: Jenkins' queue was read empty once (the answer stands 90 s: three 30 s
    // polls), then its polls failed. An hour later the queue is unknown, not empty: a build
    // may wait for this very agent. (Before, the last answer counted however old it was,
    // and the agent went at 1 h.)
    let mut host = agent_where_a_warm_mac15_is_wanted(90_000);
    host.advance(5 * 3_600_000);
    assert_eq!(host.running(), vec![S1.to_owned()]);
    // A fresh answer (the polls work again) lets it go, and the freed host boots the warm
    // runner at once.
    let mut snapshot = host.world.demand.clone();
    snapshot.jenkins_idle_until_ms = host.now + 90_000;
    snapshot.taken_at_ms = host.now;
    host.feed(Input::Demand(Box::new(snapshot)));
    host.advance(60_000);
    assert_eq!(host.running(), vec![M15.to_owned()]);
}

#[test]
fn agent_idle_handover_off_keeps_the_agent_for_a_warm_runner_too() {
    let mut host = agent_where_a_warm_mac15_is_wanted(Millis::MAX);
    host.world.config.agent_idle_handover_ms = 0;
    host.advance(5 * 3_600_000);
    assert_eq!(host.running(), vec![S1.to_owned()], "\"0s\" means never");
}

/// [`agent_where_a_warm_mac15_is_wanted`] (Jenkins' queue known empty) with
/// `agent_spare_handover` 15 min, and Jenkins' node list showing `idle_agents` idle.
fn agent_among_idle_agents(idle_agents: &[&str]) -> Host {
    let mut host = agent_where_a_warm_mac15_is_wanted(Millis::MAX);
    host.world.config.agent_spare_handover_ms = 15 * 60_000;
    let mut snapshot = host.world.demand.clone();
    snapshot.jenkins_idle_agents = idle_agents.iter().map(|a| (*a).to_owned()).collect();
    snapshot.taken_at_ms = host.now;
    host.feed(Input::Demand(Box::new(snapshot)));
    host
}

#[test]
fn an_idle_agent_another_idle_agent_makes_a_spare_frees_its_host_within_agent_spare_handover() {
    // Another host's agent ("a-…" sorts first) stays up for Jenkins' next build; this one,
    // the first spare, goes for the missing warm mac15 after 15 min — not after the hour of
    // `agent_predicted_handover`.
    let mut host = agent_among_idle_agents(&["a-SPI-VM-1", S1, "z-SPI-VM-1"]);
    assert_agent_goes_between(&mut host, 10 * 60_000, 10 * 60_000, "agent_spare_handover");
    assert_freed_host_boots_mac15(&mut host, Vec::new(), Vec::new());
}

#[test]
fn the_first_idle_agent_stays_and_a_later_spare_waits_its_turn() {
    // First by name: the agent the fleet keeps for the next build.
    let mut first = agent_among_idle_agents(&[S1, "z-SPI-VM-1"]);
    first.advance(50 * 60_000);
    assert_eq!(
        first.running(),
        vec![S1.to_owned()],
        "the fleet's idle agent stays"
    );
    // Third: the second one goes first (its host's runner then fills the platform), so two
    // agents never go for one missing runner.
    let mut third = agent_among_idle_agents(&["a-SPI-VM-1", "b-SPI-VM-1", S1]);
    third.advance(50 * 60_000);
    assert_eq!(third.running(), vec![S1.to_owned()], "not the first spare");
    // Alone (or the list unknown): no spare; only `agent_predicted_handover`'s hour applies.
    let mut alone = agent_among_idle_agents(&[S1]);
    alone.advance(50 * 60_000);
    assert_eq!(alone.running(), vec![S1.to_owned()]);
}

#[test]
fn a_spare_agent_stays_while_jenkins_queue_holds_a_build() {
    let mut host = agent_among_idle_agents(&["a-SPI-VM-1", S1]);
    let mut snapshot = host.world.demand.clone();
    snapshot.jenkins_idle_until_ms = 0;
    snapshot.taken_at_ms = host.now;
    host.feed(Input::Demand(Box::new(snapshot)));
    host.advance(50 * 60_000);
    assert_eq!(host.running(), vec![S1.to_owned()]);
}

/// [`agent_where_mac15_is_missing`] (`agent_warm_handover` 1 h) with Jenkins' node list
/// showing `idle_agents` idle from the end of S1's build on.
fn agent_with_idle_agents_where_mac15_is_missing(idle_agents: &[&str]) -> Host {
    let mut host = agent_where_mac15_is_missing(8 * 3_600_000, Vec::new());
    feed_agents(&mut host, idle_agents, false);
    host
}

/// Feeds a snapshot taken now listing `idle_agents` idle and, when `mac15_filled`, another
/// host's idle mac15 runner.
fn feed_agents(host: &mut Host, idle_agents: &[&str], mac15_filled: bool) {
    let mac15 = FleetRunner {
        name: "z-host-mac15".into(),
        labels: host.world.vms[M15].labels.clone(),
    };
    let more = if mac15_filled {
        vec![mac15]
    } else {
        Vec::new()
    };
    let mut snapshot = mac14_elsewhere(host, Vec::new(), more);
    snapshot.jenkins_idle_agents = idle_agents.iter().map(|a| (*a).to_owned()).collect();
    host.feed(Input::Demand(Box::new(snapshot)));
}

#[test]
fn agents_idle_as_long_take_turns_for_one_missing_platform() {
    // Two agents idle since the night, both old enough for the warmth hand-over: the one
    // last by name ("z-…", on another host) goes first; this one keeps its agent, and once
    // the other's runner fills mac15 it has nothing to go for. (Before, both went on the
    // same snapshot, and one host stood empty while its node's next build waited for a boot.)
    let mut host = agent_with_idle_agents_where_mac15_is_missing(&[S1, "z-SPI-VM-1"]);
    host.advance(61 * 60_000);
    assert_eq!(host.running(), vec![S1.to_owned()], "z-… goes first");
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.text.contains("z-SPI-VM-1") && d.text.contains("first")),
        "{decisions:?}"
    );
    feed_agents(&mut host, &[S1], true);
    host.advance(30 * 60_000);
    assert_eq!(host.running(), vec![S1.to_owned()], "mac15 is filled");
}

#[test]
fn an_agent_goes_after_its_turn_when_the_one_ahead_does_not() {
    // The agent ahead stays in the list (its host paused, its probe failing): this one waits
    // three minutes at most, then goes as before.
    let mut host = agent_with_idle_agents_where_mac15_is_missing(&[S1, "z-SPI-VM-1"]);
    host.advance(61 * 60_000);
    assert_eq!(host.running(), vec![S1.to_owned()], "waits its turn");
    host.advance(4 * 60_000);
    assert!(host.running().is_empty(), "{:?}", host.running());
    assert_freed_host_boots_mac15(&mut host, Vec::new(), Vec::new());
}

#[test]
fn the_agent_last_by_name_goes_at_once_and_one_just_gone_still_counts() {
    // Last by name among the idle agents: nobody's turn comes first.
    let mut last = agent_with_idle_agents_where_mac15_is_missing(&["a-SPI-VM-1", S1]);
    assert_agent_goes_between(&mut last, 50 * 60_000, 15 * 60_000, "agent_warm_handover");
    // The one ahead has just left the list (its host is stopping it) and its runner is not
    // listed yet: it still goes first for two minutes, then mac15 still missing, this one
    // goes.
    let mut host = agent_with_idle_agents_where_mac15_is_missing(&[S1, "z-SPI-VM-1"]);
    host.advance(59 * 60_000);
    feed_agents(&mut host, &[S1], false);
    host.advance(90_000);
    assert_eq!(host.running(), vec![S1.to_owned()], "z-… left just now");
    host.advance(60_000);
    feed_agents(&mut host, &[S1], false);
    host.advance(30_000);
    assert_eq!(host.running(), vec![M15.to_owned()], "gone, its host warm");
}
