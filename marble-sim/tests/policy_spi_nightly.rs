//! Issue 17, task `nightly8`: SPI grant latency on nightly waves. First the simulator's
//! Jenkins model must compare like with like: two builds for the same single-executor node
//! that a ROOT job holds take turns running the node's start script (one launch per node at
//! a time); when a launch is granted, Jenkins hands the new agent's executor to the
//! longest-waiting build it can take — not to whichever build's turn the launch happened to
//! be — and the younger one waits for that executor (not a grant latency).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use marble_sim::metrics::fmt_ms;
use marble_sim::{RunOptions, simulate};
use marbled::config::Policy;

/// One host: a ROOT VM running a 20-min job from the start, and SPI node `mac01-SPI-VM-1`. Build A
/// (30 min) arrives at 1m, build B (10 min) at 2m, both for that node. Their start scripts
/// alternate while the ROOT job holds the host; B's request is the one pending when it ends.
fn two_builds_for_one_node() -> String {
    format!(
        r#"
[sim]
duration = "3h"
seed = 5

[[hosts]]
capacity = 1
prefix = "mac01"
root_vms = 0
spi_vms = 0

[[hosts.vms]]
name = "mac01-ROOT-VM-macOS-14"
power = "running"

[[hosts.vms]]
name = "mac01-SPI-VM-1"

[boot]
min = "60s"
max = "60s"

[[root_jobs]]
at = "0s"
duration = "{root}"
labels = ["self-hosted", "macOS", "ARM64", "mac14"]

{a}
{b}"#,
        root = "20m",
        a = common::jenkins_build("1m", "mac01-SPI-VM-1", "30m"),
        b = common::jenkins_build("2m", "mac01-SPI-VM-1", "10m"),
    )
}

/// The oldest build takes the node's granted executor: A starts first (its wait: until the
/// grant, ~20 min) and B waits for A's 30-min run; the one grant's latency is A's, counted
/// from A's first request (1m), so it covers the whole time the node was asked for. Before
/// the fix the build whose request was pending (B, first asked at 6m when A's first request
/// was refused) ran first and the grant's latency started at B's first request: 5 min of the
/// node's wait were lost, and which build was charged depended on the parity of refusals.
#[test]
fn a_granted_node_runs_the_oldest_build_waiting_for_it() {
    let text = two_builds_for_one_node();
    let trace = common::parse_workload(&text, "two-builds-one-node.toml");
    for policy in [Policy::Cycle, Policy::Demand] {
        let report = simulate(&trace, RunOptions::with_policy(policy));
        let table = report.to_table();
        assert!(report.violations.is_empty(), "{policy:?}\n{table}");
        let spi = &report.teams["spi"];
        assert_eq!(spi.started, 2, "{policy:?}\n{table}");
        let grants = &report.spi_grant_latency;
        assert_eq!(
            grants.count, 1,
            "{policy:?}: one launch, one grant\n{table}"
        );
        let latency = grants.max_ms.unwrap();
        assert!(
            latency >= 19 * 60_000,
            "{policy:?}: grant latency {} does not cover the node's wait since A's first \
             request (1m) until the ROOT job ended (~20m): charged to the younger build\n{table}",
            fmt_ms(latency)
        );
        // B waits for A's 30-min run on the node's single executor: > 45 min in all.
        let longest = spi.wait_max_ms.unwrap();
        assert!(
            longest >= 45 * 60_000,
            "{policy:?}: longest SPI wait {}: the younger build ran first\n{table}",
            fmt_ms(longest)
        );
    }
}
