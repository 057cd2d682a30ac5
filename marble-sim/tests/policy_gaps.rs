//! Issue 17, ROOT p95 policy gaps on the bursts shapes (`bursts-short`, `bursts@1003`): a
//! host freed between two runs of a burst stayed empty, so the next run's job it could
//! have served warm waited for a boot there, and the hand-overs that followed started that
//! much later. The boot-bound reference gives such a host the next job a stop and a
//! shortest boot after its last one ended, so it counts it warm.
//!
//! Idle-host warmth waits until its host has been free for 10 minutes
//! (`sched/warm.rs`, `IDLE_WARM_AFTER_MS`): a host freed by a short job mid-burst never
//! reaches it before the next run comes. With no delay (a fresh snapshot after the host is
//! free) this test passes, but replay-all on seeds 1001–1003 then loses SPI p95 on
//! `small-fleet` and `nightly@1001` and ROOT p95 on `labels@1003` (measured twice: task
//! daytime on `2cae3c6`, task gaps8 on `dc0f9be`), and the gap rows keep their p95 (their
//! p95 jobs are hand-overs whose boots outlast `boot.min`): the test is kept, ignored, as
//! the mechanism's record until a rule closes it without that trade.
//!
//! Traces set only workload, fleet and boot model (no `[scheduler]` keys).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use marble_sim::Trace;

use common::{demand, root_fleet_trace, root_job as job};

/// `hosts` hosts, a fixed 60 s boot, `jobs` as TOML.
fn trace(duration: &str, hosts: u32, jobs: &str) -> Trace {
    root_fleet_trace("policy_gaps.toml", duration, hosts, jobs)
}

#[test]
#[ignore = "fails with the shipped 10 min idle-warmth delay; delay 0 passes it but costs SPI \
            (small-fleet, nightly@1001) and ROOT labels@1003: docs/benchmarks.md, task gaps8"]
fn a_host_freed_mid_burst_keeps_a_runner_for_the_next_run() {
    // Five hosts; idle-host warmth has one runner per platform up (four hosts) when run A
    // comes at 20 min and takes them; the fifth host then boots a runner for one of the
    // platforms now missing. Run A's mac14 job ends after 20 s and frees its host. Run B
    // comes 3 min later: one job finds the fifth host's runner, one the freed host's (if it
    // booted one), the other two wait for run A's 10-minute jobs to end.
    let mut jobs = String::new();
    for (label, secs) in [
        ("mac13", 600),
        ("mac14", 20),
        ("mac15", 600),
        ("macbeta", 600),
    ] {
        jobs += &job(1200, secs, label);
    }
    for label in ["mac13", "mac14", "mac15", "macbeta"] {
        jobs += &job(1380, 600, label);
    }
    let trace = trace("2h", 5, &jobs);
    let report = demand(&trace);
    assert!(report.violations.is_empty(), "{}", report.to_table());
    let root = &report.teams["root"];
    assert_eq!(root.started, 8, "{}", report.to_table());
    // Run A starts warm; of run B, two start warm (the fifth host's runner and the freed
    // host's) and two cold after run A's hand-overs. Before: the freed host stayed empty
    // (free for 3 min, not 10) and its job started cold too: 3 cold starts.
    assert_eq!(
        root.cold_starts,
        2,
        "the host freed mid-burst kept no runner\n{}",
        report.to_table()
    );
    // No boot more: the freed host's runner is the boot its job made it do anyway.
    assert_eq!(report.root_boots, 12, "{}", report.to_table());
}
