//! Issue 17, fault 1: under bursts of short ROOT jobs policy `demand` lost jobs — a runner
//! whose job started and ended before the first busy probe looked unused, its VM was kept
//! for a matching queued job GitHub would never give it, and every host ended up holding
//! such a VM while jobs sat queued. Replays `docs/traces/bursts-short.toml` (6 hosts, a day,
//! 15 four-job runs in bursts, a quarter of the jobs ending within 50 s) with the shipped
//! defaults, with and without injected prlctl faults, and asserts that `demand` starts
//! every job the ideal reference starts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use marble_sim::ideal::ideal;
use marble_sim::trace::{FaultKind, FaultSpec, HangAction};
use marble_sim::{Report, RunOptions, Trace, simulate};
use marbled::config::Policy;

fn bursts() -> Trace {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/traces/bursts-short.toml");
    Trace::load(&path).expect("the committed trace loads")
}

fn demand(trace: &Trace) -> Report {
    simulate(trace, RunOptions::with_policy(Policy::Demand))
}

/// `demand` started every ROOT job the overhead-free reference starts, broke no invariant,
/// and left nothing queued behind hosts held by spent runners.
fn assert_none_lost(trace: &Trace) {
    let report = demand(trace);
    let reference = ideal(trace, report.seed);
    let root = &report.teams["root"];
    assert!(report.violations.is_empty(), "{}", report.to_table());
    assert_eq!(
        reference.both.root.started, root.arrived,
        "the reference starts all"
    );
    assert_eq!(
        root.started,
        reference.both.root.started,
        "demand lost {} job(s) the ideal reference starts\n{}",
        reference.both.root.started.saturating_sub(root.started),
        report.to_table()
    );
}

#[test]
fn bursts_of_short_jobs_lose_no_job() {
    let trace = bursts();
    assert_eq!(trace.root_jobs.len(), 60);
    let short = trace
        .root_jobs
        .iter()
        .filter(|j| j.duration <= Duration::from_secs(50))
        .count();
    assert!(short * 4 >= trace.root_jobs.len(), "{short} short jobs");
    assert_none_lost(&trace);
}

#[test]
fn bursts_of_short_jobs_lose_no_job_under_prlctl_faults() {
    let mut trace = bursts();
    trace.faults = vec![
        // Failing probes (unknown counts as busy), boots that never get ready, probes that
        // hang: the feed must still tell a spent runner from a spare one.
        FaultSpec::everywhere(FaultKind::Probe, 0.2),
        FaultSpec::everywhere(FaultKind::Boot, 0.05),
        FaultSpec::hang(HangAction::Probe, 0.05, Duration::from_secs(5 * 60)),
    ];
    assert_none_lost(&trace);
}
