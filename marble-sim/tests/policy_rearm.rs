//! Runner re-arm (`jobs_per_boot`, opt-in): when a ROOT job ends and a queued job fits the
//! same VM, the simulated daemon registers a fresh runner in the running guest and GitHub
//! hands it the job, without a reboot. With the default (one job per boot) every job boots.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use marble_sim::{Report, RunOptions, Trace, simulate};

/// One host, one mac15 VM, two mac15 jobs queued together, and `jobs_per_boot`; no warm
/// runners (prediction and idle-host warmth off), so every boot is for a job.
fn two_jobs_one_vm(jobs_per_boot: u32) -> Report {
    let text = format!(
        r#"
[sim]
duration = "2h"

[host]
root_vms = 0
spi_vms = 0

[[host.vms]]
name = "sim-ROOT-VM-macOS-15"

[scheduler]
policy = "demand"
jobs_per_boot = {jobs_per_boot}
warm_idle_hosts = false
warm_window = "0s"

[[root_jobs]]
at = "10m"
duration = "10m"
labels = ["self-hosted", "macOS", "ARM64", "mac15"]

[[root_jobs]]
at = "10m"
duration = "10m"
labels = ["self-hosted", "macOS", "ARM64", "mac15"]
"#
    );
    let trace = Trace::parse(&text, std::path::Path::new("rearm.toml")).unwrap();
    let report = simulate(&trace, RunOptions::default());
    assert!(report.violations.is_empty(), "{}", report.to_table());
    assert_eq!(report.teams["root"].started, 2, "{}", report.to_table());
    report
}

#[test]
fn a_re_armed_vm_takes_the_next_queued_job_without_a_reboot() {
    let one = two_jobs_one_vm(1);
    assert_eq!(one.root_boots, 2, "{}", one.to_table());
    assert_eq!(one.ops.get("rearm"), None);

    let two = two_jobs_one_vm(2);
    assert_eq!(two.root_boots, 1, "{}", two.to_table());
    assert_eq!(two.ops.get("rearm"), Some(&1), "{}", two.to_table());
    // The second job waits for the first and a re-arm, not for a stop and a boot.
    let waited = |r: &Report| r.teams["root"].wait_max_ms.unwrap();
    assert!(
        waited(&two) < waited(&one),
        "{} vs {}",
        waited(&two),
        waited(&one)
    );
}
