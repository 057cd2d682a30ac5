//! Issue 17, ROOT p95 policy gaps on bursts (`bursts-short`, `bursts@1003`): two mechanisms
//! that kept `demand` above the boot-bound reference, each on a small trace written here.
//!
//! - *Duplicate warm runners*: hosts whose congestion window ended together each booted the
//!   likeliest platform on a tick, on a demand snapshot older than the other hosts' boots:
//!   three mac13 runners and none for mac-beta, so the next run's mac-beta job waited for a
//!   wrong-platform runner to yield. A warm boot now happens only on a snapshot that just
//!   arrived.
//! - *Slow hand-over*: a spent runner's host was freed only at the next 60 s busy re-check or
//!   the next 30 s demand poll after its job ended, while the next job waited for the host.
//!   Such a stop now re-checks every 10 s while a job no runner covers could use the host.
//!
//! Traces set only workload, fleet and boot model (no `[scheduler]` keys).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use marble_sim::Trace;
use marble_sim::ideal::ideal;

use common::{demand, root_fleet_trace, root_job as job};

/// `hosts` hosts, a fixed 60 s boot, `jobs` as TOML.
fn trace(duration: &str, hosts: u32, jobs: &str) -> Trace {
    root_fleet_trace("policy_bursts.toml", duration, hosts, jobs)
}

const PLATFORMS: [&str; 4] = ["mac13", "mac14", "mac15", "macbeta"];

#[test]
fn hosts_leaving_congestion_together_boot_one_warm_runner_per_platform() {
    // Two 4-job runs 5 s apart on six hosts: the second run waits (the fleet is congested),
    // and the prediction learns all four platforms. 30 min after the congestion the idle
    // hosts boot warm runners; a third run comes at 3 h and takes them. Idle-host warmth
    // (on by default since this test was written) is turned off here to isolate the
    // predicted targets: it boots every idle host's runners 10 min after the start and
    // refills after the third run, unused boots of its own (its dedup across hosts is the
    // same fresh-snapshot rule, see `sched/warm.rs`).
    let mut jobs = String::new();
    for run in 0..2 {
        for label in PLATFORMS {
            jobs += &job(600 + run * 5, 300, label);
        }
    }
    for label in PLATFORMS {
        jobs += &job(3 * 3600, 300, label);
    }
    let mut trace = trace("6h", 6, &jobs);
    trace.scheduler.warm_idle_hosts = false;
    let report = demand(&trace);
    assert!(report.violations.is_empty(), "{}", report.to_table());
    let root = &report.teams["root"];
    assert_eq!(root.started, 12, "{}", report.to_table());
    // Eight cold starts for the first two runs; the third run starts on warm runners.
    assert_eq!(root.cold_starts, 8, "{}", report.to_table());
    // One warm runner per platform: before, three hosts booted mac13 on ticks within 7 s,
    // each on a snapshot that predated the others' runners (2 boots served no job).
    assert_eq!(
        report.root_boots_unused,
        0,
        "warm runners booted twice for one platform\n{}",
        report.to_table()
    );
}

#[test]
fn a_spent_runner_hands_its_host_over_soon_after_its_job_ends() {
    // One host: a 91 s mac13 job, then a mac14 job queued 10 s later that needs the host.
    // The job ends 1 s after a demand poll; the host used to sit on it until the next poll
    // (29 s) since the 60 s busy re-check came later still.
    let jobs = job(600, 91, "mac13") + &job(610, 91, "mac14");
    let trace = trace("2h", 1, &jobs);
    let report = demand(&trace);
    assert!(report.violations.is_empty(), "{}", report.to_table());
    let root = &report.teams["root"];
    assert_eq!(root.started, 2, "{}", report.to_table());
    let first = root.wait_p50_ms.unwrap();
    let second = root.wait_max_ms.unwrap();
    // The boot-bound reference runs the first job at once (a runner booted ahead) and the
    // second a stop and a shortest boot after its end; `demand` boots for the first job
    // (its wait, not charged by the bound) and then hands over: a probe, the stop, a fresh
    // snapshot, the boot. Allowed: the bound, the first job's boot, 15 s of hand-over
    // overhead. Before the fix: 243.5 s against 226 s allowed; now 219.5 s.
    let bound = ideal(&trace, report.seed)
        .boot_bound
        .root
        .wait_max_ms
        .unwrap();
    let allowed = bound + first + 15_000;
    assert!(
        second <= allowed,
        "second job waited {second} ms; boot bound {bound} ms + first job's boot {first} ms \
         + 15 s = {allowed} ms\n{}",
        report.to_table()
    );
}

#[test]
fn a_runner_a_probe_saw_busy_first_hands_its_host_over_as_fast() {
    // One host; idle-host warmth keeps a mac13 runner up. A 300 s mac13 job takes it 3 s
    // before the runner's background probe, which sees it busy before the demand feed
    // reports it; a mac14 job queued 10 s later needs the host. A runner the feed reported
    // first got its stop planned at once and re-probed every 10 s while the mac14 job
    // waited; one a probe saw first got no plan and was re-checked only by the next 60 s
    // background probe (or the next poll's `done_here`), so the host sat on the finished
    // job for up to half a minute (bursts-short +17h 19m: 23 s).
    let jobs = job(1861, 300, "mac13") + &job(1871, 60, "mac14");
    let trace = trace("2h", 1, &jobs);
    let report = demand(&trace);
    assert!(report.violations.is_empty(), "{}", report.to_table());
    let root = &report.teams["root"];
    assert_eq!(root.started, 2, "{}", report.to_table());
    assert_eq!(
        root.wait_p50_ms,
        Some(0),
        "the mac13 job starts warm\n{}",
        report.to_table()
    );
    let second = root.wait_max_ms.unwrap();
    // The boot-bound reference hands over a stop and a shortest boot after the end (360 s
    // here); allowed: 15 s of hand-over overhead (a probe within 10 s, a fresh snapshot).
    // Before the fix: 384 s; now 372 s.
    let bound = ideal(&trace, report.seed)
        .boot_bound
        .root
        .wait_max_ms
        .unwrap();
    assert!(
        second <= bound + 15_000,
        "mac14 job waited {second} ms; boot bound {bound} ms + 15 s\n{}",
        report.to_table()
    );
}
