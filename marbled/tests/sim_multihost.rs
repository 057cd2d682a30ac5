//! Several hosts sharing one GitHub queue under policy `demand` boot about one VM per queued
//! job, not one per host (fleet de-duplication through the shared runner list: a ROOT VM's
//! runner is registered from the moment its boot starts). Policy `cycle` on the same trace
//! boots many times more, for contrast.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use marbled::sched::Policy;
use marbled::sim::standard::standard_trace;
use marbled::sim::{RunOptions, simulate};

#[test]
fn a_multi_host_demand_run_boots_about_one_vm_per_queued_job() {
    // Two days (a Monday and a Tuesday) of the standard workload on four hosts.
    let trace = standard_trace(2, 1, 4);
    let run = |policy| {
        simulate(
            &trace,
            RunOptions {
                policy: Some(policy),
                ..RunOptions::default()
            },
        )
    };
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

#[test]
fn an_instant_feed_boots_once_per_job_on_every_host_count() {
    // No polling latency: every host sees the others' boots at once, so a job never gets
    // two VMs (the only extra boots left come from jobs a running VM took first).
    for hosts in [1, 3, 6] {
        let mut trace = standard_trace(1, 7, hosts);
        trace.sim.demand_poll = std::time::Duration::ZERO;
        let r = simulate(
            &trace,
            RunOptions {
                policy: Some(Policy::Demand),
                ..RunOptions::default()
            },
        );
        assert!(r.violations.is_empty(), "{}", r.to_table());
        let per_job = r.root_boots_per_job.expect("jobs arrived");
        assert!(per_job <= 1.2, "{hosts} hosts: {}", r.to_table());
    }
}
