//! Builders shared by the `marble-sim requests` test binaries (`sim_requests.rs`,
//! `sim_requests_engine.rs`): ROOT's mac14 labels and a steady stream of short pushes on the
//! standard fleet.

use std::time::Duration;

use marble_sim::Trace;
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
