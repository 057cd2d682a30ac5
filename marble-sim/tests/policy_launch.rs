//! Issue 17 (c), fourteenth session: a build that accepts any node, under Jenkins' real
//! launch order (`sim.jenkins_launch = "first-offline"`), while the first offline node's host
//! runs a long ROOT job.
//!
//! Jenkins launches the first offline node by name for the build, the start script's
//! `request-slot` waits its 5 min and is refused (the host is busy), and a minute later
//! Jenkins launches the same node again — for as long as the job runs. The other host stands
//! free. With `launch_any_node_after` (opt-in; 4 min here) the free host asks Jenkins to launch its
//! own node (`Effect::LaunchJenkinsNode`: the daemon's `launchSlaveAgent`), whose start
//! script it grants, and the build runs there (docs/SCHEDULER.md, "A free host launches its
//! own node").
//!
//! The trace: `mac01` (a mac14 ROOT VM and `mac01-SPI-VM-1`) and `mac02`
//! (`mac02-SPI-VM-1` only). A 2-hour mac14 job takes mac01 at 0; a build for any node
//! arrives at 5 min.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use marble_sim::Trace;
use marble_sim::metrics::fmt_ms;
use marble_sim::trace::JenkinsLaunch;

use common::{assert_clean, demand, jenkins_build, parse_workload};

fn trace() -> Trace {
    let mut text = String::from(
        "[sim]\nduration = \"4h\"\nseed = 1\n\n[boot]\nmin = \"45s\"\nmax = \"1m 30s\"\n\n\
         [[hosts]]\nprefix = \"mac01\"\nroot_vms = 0\nspi_vms = 0\n\n\
         [[hosts.vms]]\nname = \"mac01-ROOT-VM-macOS-14\"\n\n\
         [[hosts.vms]]\nname = \"mac01-SPI-VM-1\"\n\n\
         [[hosts]]\nprefix = \"mac02\"\nroot_vms = 0\nspi_vms = 0\n\n\
         [[hosts.vms]]\nname = \"mac02-SPI-VM-1\"\n\n\
         [[root_jobs]]\nat = \"0s\"\nduration = \"2h\"\n\
         labels = [\"self-hosted\", \"macOS\", \"ARM64\", \"mac14\"]\n\n",
    );
    text.push_str(&jenkins_build("5m", "any", "20m"));
    let mut trace = parse_workload(&text, "launch.toml");
    trace.sim.jenkins_launch = JenkinsLaunch::FirstOffline;
    // Opt-in (the operator grants Agent/Connect): the value docs/benchmarks.md measured.
    trace.scheduler.launch_any_node_after = std::time::Duration::from_secs(4 * 60);
    trace
}

#[test]
fn a_free_host_launches_its_node_for_a_build_jenkins_keeps_launching_on_a_busy_host() {
    let trace = trace();
    let report = demand(&trace);
    assert_clean(&report);
    assert!(report.jenkins_launches >= 1, "{}", report.to_table());
    // Asked at 5 min; mac02 launches its node at 9 min (4 min, first turn) and boots it:
    // about 5 min. Without the launch the build waits for mac01's job (~2 h).
    let max = report.spi_grant_latency.max_ms.expect("a grant");
    assert!(
        max <= 8 * 60_000,
        "SPI grant {} > 8 min: the build waited for the busy host\n{}",
        fmt_ms(max),
        report.to_table()
    );
}

#[test]
fn with_the_launch_off_the_build_waits_for_the_busy_hosts_job() {
    // The same trace with `launch_any_node_after = "0s"`: what the rule removes, and proof
    // that the trace is the case it is about.
    let mut trace = trace();
    trace.scheduler.launch_any_node_after = std::time::Duration::ZERO;
    let report = demand(&trace);
    assert_clean(&report);
    assert_eq!(report.jenkins_launches, 0);
    let max = report.spi_grant_latency.max_ms.expect("a grant");
    assert!(
        max >= 100 * 60_000,
        "SPI grant {}: expected to wait for the 2-hour job\n{}",
        fmt_ms(max),
        report.to_table()
    );
}
