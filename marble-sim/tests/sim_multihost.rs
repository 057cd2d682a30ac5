//! Several hosts sharing one GitHub queue under policy `demand` boot about one VM per queued
//! job, not one per host (fleet de-duplication through the shared runner list: a ROOT VM's
//! runner is registered from the moment its boot starts). Policy `cycle` on the same trace
//! boots many times more, for contrast.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use marble_sim::standard::standard_trace;
use marble_sim::{RunOptions, Trace, simulate};
use marbled::config::Policy;

#[test]
fn a_multi_host_demand_run_boots_about_one_vm_per_queued_job() {
    // Two days (a Monday and a Tuesday) of the standard workload on four hosts. Measured
    // without idle-host warmth, whose boots are for no job by design (one runner per
    // platform the fleet's idle hosts do not keep; its cost is in docs/SCHEDULER.md).
    let mut trace = standard_trace(2, 1, 4);
    trace.scheduler.warm_idle_hosts = false;
    let run = |policy| simulate(&trace, RunOptions::with_policy(policy));
    let demand = run(Policy::Demand);
    assert!(demand.violations.is_empty(), "{}", demand.to_table());
    assert_eq!(demand.hosts.len(), 4);
    let root = &demand.teams["root"];
    assert!(root.arrived > 40, "{}", demand.to_table());
    assert_eq!(root.started, root.arrived, "{}", demand.to_table());
    // Every host took part, so de-duplication was exercised across hosts.
    assert!(
        demand.hosts.iter().all(|h| h.vm_boots > 0),
        "{:?}",
        demand.hosts
    );
    let per_job = demand.root_boots_per_job.expect("jobs arrived");
    assert!(
        per_job >= 1.0,
        "each ephemeral runner takes one job: {per_job}"
    );
    assert!(per_job <= 1.2, "{}", demand.to_table());

    let cycle = run(Policy::Cycle);
    let cycle_per_job = cycle.root_boots_per_job.expect("jobs arrived");
    eprintln!("ROOT boots per job: demand {per_job}, cycle {cycle_per_job}");
    assert!(cycle_per_job > 5.0 * per_job, "{}", cycle.to_table());
}

/// ROOT wait of the single job of a one-host trace polling every 5 minutes, with the
/// `[demand] watch` of a free host set to `watch`.
fn single_job_wait_ms(watch: &str) -> u64 {
    let text = format!(
        r#"
[sim]
duration = "1h"
demand_poll = "5m"
demand_watch = "{watch}"

[host]
root_vms = 1
spi_vms = 0

[boot]
min = "1m"
max = "1m"

[scheduler]
policy = "demand"

[[root_jobs]]
at = "10m 10s"
duration = "10m"
"#
    );
    let trace = Trace::parse(&text, std::path::Path::new("watch.toml")).unwrap();
    let report = simulate(&trace, RunOptions::default());
    assert!(report.violations.is_empty(), "{}", report.to_table());
    assert_eq!(report.teams["root"].started, 1, "{}", report.to_table());
    report.teams["root"].wait_max_ms.unwrap()
}

#[test]
fn a_free_host_watching_the_queue_boots_for_a_new_run_in_seconds() {
    // Polls at 0, 5m, 10m, 15m: the job queued at 10m 10s waits for the 15m poll, then a
    // one-minute boot. Watching every 5 s, the host polls within 5 s (+1 s round trip).
    let polled = single_job_wait_ms("0s");
    let watched = single_job_wait_ms("5s");
    assert!(polled >= 5 * 60_000, "without the watch: {polled} ms");
    assert!(watched <= 67_000, "with the watch: {watched} ms");
}

#[test]
fn an_instant_feed_boots_once_per_job_on_every_host_count() {
    // No polling latency: every host sees the others' boots at once, so a job never gets
    // two VMs (the only extra boots left come from jobs a running VM took first).
    for hosts in [1, 3, 6] {
        let mut trace = standard_trace(1, 7, hosts);
        trace.sim.demand_poll = std::time::Duration::ZERO;
        // De-duplication, without idle-host warmth's boots for no job (as above).
        trace.scheduler.warm_idle_hosts = false;
        let r = simulate(&trace, RunOptions::with_policy(Policy::Demand));
        assert!(r.violations.is_empty(), "{}", r.to_table());
        let per_job = r.root_boots_per_job.expect("jobs arrived");
        assert!(per_job <= 1.2, "{hosts} hosts: {}", r.to_table());
    }
}
