//! The simulated Jenkins gives a build for `any` node to an agent that goes idle while the
//! build's start script waits on another host, as Jenkins' queue does (it assigns a buildable
//! item to any idle executor it accepts, whatever launches run meanwhile). Without this, the
//! build sat out a whole `request-slot` wait on a busy host while another host's agent went
//! idle — and that agent could be stopped for ROOT in the meantime (issue 17: with idle-host
//! warmth on, `docs/traces/spi-nightly-wave.toml`'s SPI grant p95 went from 1h 43m to 3h 0m
//! through exactly that on its second night).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use marble_sim::{RunOptions, Trace, simulate};

/// mac01 has only an SPI node, granted at once for a 10-minute named build from 1m; mac02's
/// one ROOT VM runs a 3-hour job from the start, so a request for its SPI node waits its
/// whole 5 minutes and is refused. The `any` build arrives at 5m: mac01's agent is busy, so
/// Jenkins runs the start script for mac02's node.
fn trace_text() -> String {
    format!(
        r#"
[sim]
duration = "4h"
seed = 1
demand_poll = "30s"
demand_watch = "5s"

[[hosts]]
prefix = "mac01"
root_vms = 0
spi_vms = 1

[[hosts]]
prefix = "mac02"
root_vms = 0
spi_vms = 1
[[hosts.vms]]
name = "mac02-ROOT-VM-macOS-15"
labels = ["self-hosted", "macOS", "ARM64", "mac15"]

[boot]
min = "1m"
max = "1m"

[[root_jobs]]
at = "0m"
duration = "3h"
labels = ["self-hosted", "macOS", "ARM64", "mac15"]

{}
{}"#,
        common::jenkins_build("1m", "mac01-SPI-VM-1", "10m"),
        common::jenkins_build("5m", "any", "10m"),
    )
}

#[test]
fn an_any_build_runs_on_an_agent_that_goes_idle_while_it_asks_another_host() {
    let trace = Trace::parse(&trace_text(), std::path::Path::new("any.toml")).unwrap();
    let report = simulate(&trace, RunOptions::default());
    let table = report.to_table();
    assert!(report.violations.is_empty(), "{table}");
    let spi = &report.teams["spi"];
    assert_eq!(spi.started, 2, "{table}");
    // The named build runs from about 2m 30s (a poll, a boot) to 12m 30s; the `any` build
    // (arrived 5m) takes mac01's agent as it goes idle: about 7.5 min, not the ~11 min of
    // waiting out mac02's refusal and Jenkins' retry.
    let any_wait = spi.waits_ms.iter().copied().max().unwrap();
    assert!(
        any_wait <= 9 * 60_000,
        "the any build waited {} s\n{table}",
        any_wait / 1000
    );
}
