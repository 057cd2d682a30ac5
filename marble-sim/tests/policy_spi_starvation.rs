//! Issue 17, fault 2: Jenkins starves under sustained ROOT load. On a fleet that long ROOT
//! matrix jobs keep busy for days (docs/traces/spi-starvation.toml), policy `demand` must
//! grant Jenkins' slot requests no later than the old cycler does (SPI grant latency p95 ≤
//! `cycle`'s), with the shipped scheduler settings: the trace sets none. The same for a
//! nightly wave of ROOT matrix runs (docs/traces/spi-nightly-wave.toml).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use marble_sim::compare::compare;
use marble_sim::metrics::fmt_ms;
use marble_sim::trace::JenkinsLaunch;
use marble_sim::{RunOptions, Trace, simulate};
use marbled::config::Policy;

fn trace(name: &str) -> Trace {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/traces")
        .join(name);
    let trace = Trace::load(&path).unwrap();
    assert_eq!(
        trace.scheduler,
        marbled::config::SchedulerSection::default(),
        "{name}: a trace sets only workload, fleet, boots and faults"
    );
    trace
}

/// Both runs clean, every job started, and demand's SPI grant p95 no worse than cycle's.
fn assert_spi_not_starved(name: &str) {
    let cmp = compare(&trace(name), None);
    let table = cmp.to_table(name);
    assert!(cmp.clean(), "{table}");
    for team in ["root", "spi"] {
        let t = &cmp.demand.teams[team];
        assert_eq!(t.started, t.arrived, "{team}: {table}");
    }
    common::assert_spi_grants_no_slower_than_cycle(&cmp, &table);
}

#[test]
fn jenkins_is_not_starved_by_days_of_long_root_jobs() {
    assert_spi_not_starved("spi-starvation.toml");
}

#[test]
fn jenkins_is_not_starved_by_a_nightly_wave_of_root_jobs() {
    assert_spi_not_starved("spi-nightly-wave.toml");
}

/// Under Jenkins' real launch order (`sim.jenkins_launch = "first-offline"`) a build for
/// any node is launched on the first offline SPI node by name again and again while that
/// node's host runs a long ROOT job. Counted as a waiter on every host with an SPI VM, it
/// held every free host for a start script that never came there: 3 of the 236 ROOT jobs of
/// `spi-starvation` never started (eleventh session). Only the host whose node Jenkins
/// launches may be held for it.
#[test]
fn root_jobs_all_start_while_jenkins_relaunches_one_busy_hosts_node_for_any_node_builds() {
    let mut trace = trace("spi-starvation.toml");
    trace.sim.jenkins_launch = JenkinsLaunch::FirstOffline;
    let report = simulate(&trace, RunOptions::with_policy(Policy::Demand));
    let table = report.to_table();
    assert!(report.violations.is_empty(), "{table}");
    let root = &report.teams["root"];
    assert_eq!(
        root.started, root.arrived,
        "ROOT jobs never started\n{table}"
    );
    let spi = &report.teams["spi"];
    assert_eq!(spi.started, spi.arrived, "{table}");
}

/// Simulator fidelity (issue 17, `cycler` task): a Jenkins build whose start script is
/// running for one node (or waiting to be retried after a refusal) is still a buildable
/// item of Jenkins' queue, not bound to that node, and Jenkins hands a free executor the
/// longest-waiting item it can take. One host, two SPI nodes, builds for any node: A holds
/// the host from ~2m to ~32m on node 1; B (at 5m) launches node 2, which is refused while A
/// runs; C arrives at 20m. When A ends, node 1's agent must take B, the older — before the
/// fix the simulator gave it C (B was "requesting"), so B waited for A *and* C (≥ 37 min,
/// its slot requests refused all along) and its wait showed up as SPI grant latency that
/// the real Jenkins would not have. This made the demand/cycle comparison on the
/// single-host traces (spi-pressure, cycle-mixed) measure the model, not the policy.
#[test]
fn a_free_jenkins_agent_takes_the_oldest_build_even_one_launching_another_node() {
    let text = format!(
        r#"
[sim]
duration = "2h"
seed = 3

[host]
capacity = 1
root_vms = 0
spi_vms = 2

[boot]
min = "60s"
max = "60s"

{}
{}
{}"#,
        common::jenkins_build("1m", "any", "30m"),
        common::jenkins_build("5m", "any", "10m"),
        common::jenkins_build("20m", "any", "10m"),
    );
    let trace = Trace::parse(&text, Path::new("inline.toml")).unwrap();
    for policy in [Policy::Cycle, Policy::Demand] {
        let report = simulate(&trace, RunOptions::with_policy(policy));
        let table = report.to_table();
        assert!(report.violations.is_empty(), "{table}");
        let spi = &report.teams["spi"];
        assert_eq!(spi.started, 3, "{table}");
        // B waits only for A: ~27 min (A's boot and run), never for C as well.
        let max = spi.wait_max_ms.unwrap();
        assert!(
            max <= 29 * 60_000,
            "{policy:?}: longest SPI wait {} > A's remaining run: a younger build overtook \
             an older one\n{table}",
            fmt_ms(max)
        );
    }
}
