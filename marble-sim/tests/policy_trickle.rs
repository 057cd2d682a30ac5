//! Issue 17, fault 3: every ROOT job started cold when the fleet is quiet. The quiet-trickle
//! trace (`docs/traces/quiet-trickle.toml`: 18 jobs in two days, 2–3 h apart, mixed label
//! sets, six hosts) replayed under policy `demand` with the shipped defaults — idle-host
//! warmth (`warm_idle_hosts`) on — must start its jobs about as early as the overhead-free
//! reference, which starts every one at once. Before issue 17 there was no such setting and
//! all 18 jobs started cold; while warmth was opt-in, the defaults still did.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use marble_sim::ideal::ideal;
use marble_sim::{Report, RunOptions, Trace, simulate};
use marbled::config::Policy;

fn trickle() -> Trace {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/traces/quiet-trickle.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let trace = Trace::parse(&text, &path).unwrap();
    // Shipped defaults, as replay-all replays it: the trace sets no scheduler key.
    assert_eq!(
        trace.scheduler,
        marbled::config::SchedulerSection::default(),
        "a trace sets only workload, fleet, boots and faults"
    );
    trace
}

fn run(trace: &Trace, policy: Policy) -> Report {
    simulate(trace, RunOptions::with_policy(policy))
}

#[test]
fn a_quiet_trickle_starts_root_jobs_warm_with_the_shipped_defaults() {
    let trace = trickle();
    let demand = run(&trace, Policy::Demand);
    assert!(demand.violations.is_empty(), "{}", demand.to_table());
    let root = &demand.teams["root"];
    assert_eq!(root.arrived, 18, "{}", demand.to_table());
    assert_eq!(
        root.started,
        root.arrived,
        "0 lost jobs\n{}",
        demand.to_table()
    );

    // The reference starts every job at once (p50 and p95 0). Issue 17 asks for ROOT p95 <=
    // ideal.both p95 + 60 s or, as here, the stretch p50 <= 10 s; with 18 jobs the
    // nearest-rank p95 is the longest wait, and one job (#14: every host held by an idle
    // Jenkins agent or a warm runner of another platform) waits for a stop and a boot
    // (64.5 s), so the p95 half is reported, not asserted (docs/SCHEDULER.md, "Idle-host
    // warmth").
    let reference = ideal(&trace, demand.seed);
    assert_eq!(reference.both.root.wait_p50_ms, Some(0));
    let ideal_p95 = reference.both.root.wait_p95_ms.unwrap();
    let p50 = root.wait_p50_ms.unwrap();
    let p95 = root.wait_p95_ms.unwrap();
    eprintln!(
        "ROOT wait p50 {p50} ms, p95 {p95} ms (ideal.both p95 {ideal_p95} ms); {} of {} cold",
        root.cold_starts, root.started
    );
    assert!(
        p50 <= 10_000,
        "ROOT wait p50 {p50} ms > 10 s; {} of {} started cold\n{}",
        root.cold_starts,
        root.started,
        demand.to_table()
    );
    // Nearly every job finds a runner up: today's code started all 18 cold.
    assert!(root.cold_starts <= 2, "{}", demand.to_table());
}

#[test]
fn idle_host_warmth_does_not_make_jenkins_wait_longer_than_the_cycler() {
    let trace = trickle();
    let demand = run(&trace, Policy::Demand);
    let cycle = run(&trace, Policy::Cycle);
    let d = demand.spi_grant_latency.p95_ms.unwrap();
    let c = cycle.spi_grant_latency.p95_ms.unwrap();
    assert!(
        d <= c,
        "SPI grant p95: demand {d} ms, cycle {c} ms\n{}",
        demand.to_table()
    );
}
