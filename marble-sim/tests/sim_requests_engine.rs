//! `marble-sim requests` on the real scheduler (issue 18): every host is the engine's
//! `World`, fed by the daemon's own GitHub poller against the simulated GitHub.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use marble_sim::fleet_demand::{EngineRequestOptions, requests_on_engine};
use marble_sim::requests::Mode;

mod common;

/// `hosts` hosts, a push every 4 minutes for 2 hours, 3 hours simulated.
fn pushes(hosts: u32) -> marble_sim::Trace {
    common::pushes(
        hosts,
        30,
        Duration::from_secs(240),
        Duration::from_secs(3 * 3600),
    )
}

/// Two hosts, a push every 4 minutes for 2 hours: the schedulers boot for every job the
/// daemon's poller lists, and the poller's requests land on the token.
#[test]
fn the_engine_fleet_runs_every_job_the_daemons_poller_lists() {
    let trace = pushes(2);
    let run = requests_on_engine(&trace, 2, EngineRequestOptions::new(Mode::Each)).unwrap();
    let root = &run.report.teams["root"];
    assert_eq!(root.arrived, 30, "{:?}", run.report.teams);
    assert_eq!(root.started, 30, "{:?}", run.report.teams);
    let (polls, paced) = (run.counted.polls, run.counted.paced);
    // Two hosts, every 30 s for 3 hours, plus early polls; nothing near the limit.
    assert!(polls >= 2 * 360, "{polls} polls");
    assert_eq!(paced, 0);
    let charged: u64 = run.charged_per_hour.values().sum();
    // Unchanged listings are free 304s; every job changes the listings each host reads
    // (queued, in progress, completed), so each host pays for it at least once.
    assert!(charged >= 2 * 30, "{charged} charged for {polls} polls");
    // A poll's snapshot is at most an interval stale, plus a boot (60-120 s standard).
    let p95 = root.wait_p95_ms.unwrap();
    assert!(p95 <= 240_000, "ROOT wait p95 {p95} ms");

    // One mint and one delete per ROOT boot (seen at poll instants), one release check per
    // host in the first 6 h.
    let boots = run.report.root_boots;
    assert!(run.counted.runner_calls > 0, "{:?}", run.counted);
    assert!(
        run.counted.runner_calls <= 2 * boots,
        "{:?} {boots} boots",
        run.counted
    );
    assert_eq!(run.counted.release_checks, 2);
}

/// Three hosts, an elected poller: only the holder polls GitHub, the others run the jobs
/// from its published snapshot.
#[test]
fn with_an_elected_poller_one_host_polls_and_every_job_runs() {
    let trace = pushes(3);
    let each = requests_on_engine(&trace, 3, EngineRequestOptions::new(Mode::Each)).unwrap();
    let elected = requests_on_engine(&trace, 3, EngineRequestOptions::new(Mode::Elected)).unwrap();
    assert_eq!(elected.report.teams["root"].started, 30);
    assert!(
        elected.counted.polls * 2 < each.counted.polls,
        "{:?} vs {:?}",
        elected.counted,
        each.counted
    );
    assert!(elected.counted.s3_writes > 0 && elected.counted.s3_reads > 0);
}

/// The elected poller's daemon dies 30 minutes in: another host takes the lease and polls
/// within two poll intervals, and no job is lost.
#[test]
fn losing_the_elected_poller_on_the_engine_loses_no_job() {
    let trace = pushes(3);
    let opts = EngineRequestOptions {
        leader_dies_at: Some(Duration::from_secs(1800)),
        ..EngineRequestOptions::new(Mode::Elected)
    };
    let run = requests_on_engine(&trace, 3, opts).unwrap();
    assert_eq!(run.report.teams["root"].started, 30, "{:?}", run.counted);
    let takeover = run.counted.takeover_ms.expect("another host took over");
    assert!(takeover <= 60_000, "took {takeover} ms");
}
