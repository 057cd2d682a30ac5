//! Issue 17, target "0 lost" on the single-host traces with injected faults
//! (`docs/traces/cycle-faults.toml`): mechanisms that left jobs unstarted that a scheduler
//! could have started, each replayed on a small trace with the shipped defaults.
//!
//! - A boot whose guest never answers while a Jenkins request waits for the host: the
//!   request took over the failed-readiness stop, its probe found the guest silent
//!   (unknown counts as busy), it gave up, and nothing stopped the silent VM again — it held
//!   the host for the rest of the trace, under `demand` and `cycle` alike.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use marble_sim::{RunOptions, simulate};
use marbled::config::Policy;

use common::{demand, jenkins_build, parse_workload};

/// One host: a ROOT VM whose every boot fails readiness, one SPI VM; a ROOT job at 1 min
/// makes the scheduler boot the broken VM, and a Jenkins build for the SPI VM at 2 min waits
/// for the host while the readiness check runs.
fn silent_boot_and_a_waiting_build() -> String {
    let mut text = String::from(
        "[sim]\nduration = \"1h\"\nseed = 3\n\n[host]\nroot_vms = 1\nspi_vms = 1\n\n\
         [boot]\nmin = \"30s\"\nmax = \"40s\"\n\n\
         [[root_jobs]]\nat = \"1m\"\nduration = \"5m\"\n\n",
    );
    text += &jenkins_build("2m", "sim-SPI-VM-1", "10m");
    text += "\n[[faults]]\nkind = \"boot\"\nvm = \"sim-ROOT-VM-1\"\n";
    text
}

#[test]
fn a_silent_boot_does_not_keep_the_host_from_a_waiting_build() {
    let trace = parse_workload(&silent_boot_and_a_waiting_build(), "silent-boot");
    for (policy, report) in [
        ("demand", demand(&trace)),
        (
            "cycle",
            simulate(&trace, RunOptions::with_policy(Policy::Cycle)),
        ),
    ] {
        assert!(report.violations.is_empty(), "{}", report.to_table());
        let spi = &report.teams["spi"];
        assert_eq!(
            spi.started,
            1,
            "{policy}: the build never started: the silent VM held the host\n{}",
            report.to_table()
        );
        // The failed boot costs one readiness timeout (5 min) and a stop; the build then
        // gets the host at its next request.
        let latency = report.spi_grant_latency.max_ms.expect("a grant");
        assert!(
            latency <= 10 * 60_000,
            "{policy}: grant after {latency} ms\n{}",
            report.to_table()
        );
    }
}
