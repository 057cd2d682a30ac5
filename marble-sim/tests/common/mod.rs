//! Builders and checks shared by the `marble-sim` test binaries: ROOT's mac14 labels and a
//! steady stream of short pushes on the standard fleet (`sim_requests.rs`,
//! `sim_requests_engine.rs`), a Jenkins build in a trace's text (`sim_jenkins_any.rs`,
//! `policy_spi_starvation.rs`), hosts with a ROOT VM per platform and one SPI VM
//! (`policy_idle_agents.rs`, `policy_standard_gap.rs`), and the "Jenkins waits no longer than
//! under the cycler" check (`policy_spi_starvation.rs`, `policy_idle_agents.rs`); hosts with
//! only ROOT's four VMs (`policy_bursts.rs`, `policy_yield.rs`), a fleet of them with a fixed
//! 60 s boot and its jobs (`policy_bursts.rs`, `policy_gaps.rs`), parsing a policy test's
//! trace that sets no `[scheduler]` key, replayed under policy `demand` (the `policy_*` tests),
//! and the "no violation, every job started" check (`policy_idle_agents.rs`,
//! `policy_spi_faults.rs`).

// Each test binary compiles this module and uses only its part of it.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use marble_sim::compare::Comparison;
use marble_sim::metrics::fmt_ms;
use marble_sim::standard::standard_trace;
use marble_sim::trace::RootJobSpec;
use marble_sim::{Report, RunOptions, Trace, simulate};
use marbled::config::Policy;

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

/// ROOT's macOS platforms, as the VM names end (`mac0H-ROOT-VM-macOS-<platform>`).
pub const PLATFORMS: [&str; 4] = ["13", "14", "15", "beta"];

/// `[[hosts]]` blocks of a trace's text for hosts `mac01`…`mac0<count>`, each with a ROOT VM
/// per platform of [`PLATFORMS`] and one SPI VM (`mac0H-SPI-VM-1`).
pub fn platform_hosts(count: u32) -> String {
    let mut text = String::new();
    for h in 1..=count {
        text.push_str(&format!(
            "[[hosts]]\nprefix = \"mac0{h}\"\nroot_vms = 0\nspi_vms = 0\n\n"
        ));
        for p in PLATFORMS {
            text.push_str(&format!(
                "[[hosts.vms]]\nname = \"mac0{h}-ROOT-VM-macOS-{p}\"\n\n"
            ));
        }
        text.push_str(&format!("[[hosts.vms]]\nname = \"mac0{h}-SPI-VM-1\"\n\n"));
    }
    text
}

/// A `[[hosts]]` block of a trace's text for host `mac<i>` (two digits) with ROOT's four
/// macOS VMs (mac13, mac14, mac15, mac-beta labelled `macbeta`) and no SPI VM.
pub fn root_host(i: u32) -> String {
    let mut s =
        format!("\n[[hosts]]\ncapacity = 1\nprefix = \"mac{i:02}\"\nroot_vms = 0\nspi_vms = 0\n");
    for v in ["13", "14", "15"] {
        s += &format!("\n[[hosts.vms]]\nname = \"mac{i:02}-ROOT-VM-macOS-{v}\"\n");
    }
    s += &format!(
        "\n[[hosts.vms]]\nname = \"mac{i:02}-ROOT-VM-macOS-beta\"\n\
         labels = [\"self-hosted\", \"macOS\", \"ARM64\", \"macbeta\"]\n"
    );
    s
}

/// A policy test's trace (`name` for messages): it sets only workload, fleet, boot model and
/// faults — every trace is replayed with the shipped scheduler defaults.
pub fn parse_workload(text: &str, name: &str) -> Trace {
    let trace = Trace::parse(text, Path::new(name)).unwrap();
    assert_eq!(
        trace.scheduler,
        marbled::config::SchedulerSection::default(),
        "a trace sets only workload, fleet, boots and faults"
    );
    trace
}

/// `trace` replayed under policy `demand`.
pub fn demand(trace: &Trace) -> Report {
    simulate(trace, RunOptions::with_policy(Policy::Demand))
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

/// A ROOT job of `label`'s platform at `at_s`, running `duration_s`, as TOML.
pub fn root_job(at_s: u64, duration_s: u64, label: &str) -> String {
    format!(
        "\n[[root_jobs]]\nat = \"{at_s}s\"\nduration = \"{duration_s}s\"\n\
         labels = [\"self-hosted\", \"macOS\", \"ARM64\", \"{label}\"]\n"
    )
}

/// `hosts` hosts of ROOT's four VMs ([`root_host`]), a fixed 60 s boot and `jobs` (TOML),
/// for `duration`; `name` names the trace in errors.
pub fn root_fleet_trace(name: &str, duration: &str, hosts: u32, jobs: &str) -> Trace {
    let mut text =
        format!("faults = []\njenkins = []\n\n[sim]\nduration = \"{duration}\"\nseed = 17\n");
    for i in 1..=hosts {
        text += &root_host(i);
    }
    text += "\n[boot]\nmin = \"60s\"\nmax = \"60s\"\nslow_rate = 0.0\n";
    text += jobs;
    parse_workload(&text, name)
}

/// No invariant violation, and every ROOT job and Jenkins build that arrived started.
pub fn assert_clean(report: &Report) {
    assert!(report.violations.is_empty(), "{}", report.to_table());
    for team in ["root", "spi"] {
        let t = &report.teams[team];
        assert_eq!(t.started, t.arrived, "{team}\n{}", report.to_table());
    }
}
