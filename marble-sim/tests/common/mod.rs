//! Builders and checks shared by the `marble-sim` test binaries: ROOT's mac14 labels and a
//! steady stream of short pushes on the standard fleet (`sim_requests.rs`,
//! `sim_requests_engine.rs`), a Jenkins build in a trace's text (`sim_jenkins_any.rs`,
//! `policy_spi_starvation.rs`), and the "Jenkins waits no longer than under the cycler"
//! check (`policy_spi_starvation.rs`, `policy_idle_agents.rs`).

// Each test binary compiles this module and uses only its part of it.
#![allow(dead_code)]

use std::time::Duration;

use marble_sim::Trace;
use marble_sim::compare::Comparison;
use marble_sim::metrics::fmt_ms;
use marble_sim::standard::standard_trace;
use marble_sim::trace::RootJobSpec;

/// `[self-hosted, macOS, ARM64, mac14]`.
pub fn mac14() -> Vec<String> {
    ["self-hosted", "macOS", "ARM64", "mac14"]
        .map(String::from)
        .to_vec()
}

/// The standard fleet of `hosts` hosts without its generated load: `jobs` one-minute mac14
/// jobs, the first at 1 min and one every `every` after it, `duration` simulated.
pub fn pushes(hosts: u32, jobs: u32, every: Duration, duration: Duration) -> Trace {
    let mut trace = standard_trace(1, 1, hosts);
    trace.generate = None;
    trace.sim.duration = duration;
    trace.root_jobs = (0..jobs)
        .map(|n| RootJobSpec {
            at: Duration::from_secs(60) + every * n,
            duration: Duration::from_secs(60),
            labels: mac14(),
        })
        .collect();
    trace
}

/// A `[[jenkins]]` build of a trace's text: for node `vm` (or `"any"`), arriving `at` and
/// running `duration`; its start script asks for a slot for 5 minutes and retries 60 s
/// after a refusal.
pub fn jenkins_build(at: &str, vm: &str, duration: &str) -> String {
    format!(
        "[[jenkins]]\nat = \"{at}\"\nvm = \"{vm}\"\nduration = \"{duration}\"\nwait = \"5m\"\nretry = \"60s\"\n"
    )
}

/// Policy `demand`'s SPI grant latency p95 is no worse than the cycler's in `cmp` (`table`:
/// the comparison's table, shown on failure).
#[track_caller]
pub fn assert_spi_grants_no_slower_than_cycle(cmp: &Comparison, table: &str) {
    let demand = cmp.demand.spi_grant_latency.p95_ms.expect("grants");
    let cycle = cmp.cycle.spi_grant_latency.p95_ms.expect("grants");
    assert!(
        demand <= cycle,
        "SPI grant p95: demand {} > cycle {}\n{table}",
        fmt_ms(demand),
        fmt_ms(cycle)
    );
}
