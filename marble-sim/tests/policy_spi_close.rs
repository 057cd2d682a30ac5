//! Issue 17, SPI grant p95 on the traces where `demand` misses the cycler's by seconds
//! (`labels@1002`, `labels@1003`, `bursts@2003`): a Jenkins request on a host that keeps an
//! idle warm ROOT runner waits for that runner's probe, its graceful stop and the SPI VM's
//! boot — and, before the fix, for the next scheduler input before the probe was even
//! issued (the request set the pre-emption's stop plan up after the pass had driven the
//! stops: up to an inventory interval, 22 s on a `labels@1002` grant). One host, one ROOT job
//! early (so idle-host warmth keeps a mac14 runner there afterwards), then one build for the
//! host's node, asked for right after a tick, with a fixed 60 s boot; the trace sets no
//! `[scheduler]` key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use marble_sim::metrics::fmt_ms;
use marble_sim::{RunOptions, Trace, simulate};
use marbled::config::Policy;

const TRACE: &str = r#"
[sim]
duration = "3h"
seed = 7

[boot]
min = "60s"
max = "60s"

[[hosts]]
prefix = "mac01"
root_vms = 0
spi_vms = 0

[[hosts.vms]]
name = "mac01-ROOT-VM-macOS-14"

[[hosts.vms]]
name = "mac01-SPI-VM-1"

[[root_jobs]]
at = "5m"
duration = "5m"
labels = ["self-hosted", "macOS", "ARM64", "mac14"]

[[jenkins]]
at = "1h 0m 6s"
vm = "mac01-SPI-VM-1"
duration = "20m"
"#;

#[test]
fn a_slot_request_probes_the_idle_warm_runner_it_preempts_at_once() {
    let trace = Trace::parse(TRACE, Path::new("spi-close.toml")).unwrap();
    assert_eq!(
        trace.scheduler,
        marbled::config::SchedulerSection::default(),
        "a trace sets only workload, fleet, boots and faults"
    );
    let report = simulate(&trace, RunOptions::with_policy(Policy::Demand));
    let table = report.to_table();
    assert!(report.violations.is_empty(), "{table}");
    assert_eq!(report.teams["spi"].started, 1, "{table}");
    assert_eq!(report.grants, 1, "the build needs a grant: {table}");
    // Probe (2 s) + graceful stop (10 s) + start and boot (60 s) + the simulator's
    // inventory slack; before the fix the probe waited ~24 s for the next tick (1m 36s).
    let grant = report.spi_grant_latency.max_ms.expect("one grant");
    assert!(
        grant <= 80_000,
        "grant latency {} > probe + stop + boot: the pre-emption's probe waited for a later \
         input\n{table}",
        fmt_ms(grant)
    );
}
