//! Issue 17, SPI grant p95 where `demand` still missed the cycler's (task `spifaults`).
//!
//! The `faults` rows' misses (`faults@1001`, `@1002`, holdout `@2002`) trace to single
//! grants among five or six — a 5 % boot fault on the grant's own boot (the 5-min readiness
//! timeout alone is above the cycler's p95 there), or a build whose host runs a ROOT job —
//! which the cycler's run happened not to draw; on 24 fresh `faults` seeds `demand` met the
//! target 18 times (docs/benchmarks.md, "SPI grant p95 on the faults shape"). What was a
//! policy fault is `overload@1002`'s slowest grant (5 h 7 min), tested here:
//!
//! ROOT held the host through a runner it did not boot as a *turn* — an idle-host warm
//! runner that took a job — so the fair-share streak still said "Jenkins had the host last",
//! and ROOT's time "passed over here" ran from Jenkins' last turn while ROOT's own job ran.
//! Past `fairness_bound` rule 1 then gave ROOT the next turn too, over an older Jenkins
//! waiter, which waited a second ROOT job (docs/SCHEDULER.md, "Fair share": ROOT is passed
//! over "not while ROOT itself had it").
//!
//! The trace: one host, ROOT VMs mac13 and mac14 and one SPI node. A Jenkins build at 2 min
//! takes the host (Jenkins' turn); its agent, idle, gives the host up after
//! `agent_idle_handover` (8 h) and idle-host warmth boots a mac13 runner. At 9 h a 90-min
//! mac13 job takes that warm runner; at 9 h 2 min a build asks for the SPI node; at 9 h 3 min a
//! 60-min mac14 job queues. When the mac13 job ends (10 h 30 min) it is Jenkins' turn: ROOT
//! has had the host since 9 h.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use marble_sim::Trace;
use marble_sim::metrics::fmt_ms;

use common::{assert_clean, demand, jenkins_build, parse_workload};

fn trace_text() -> String {
    let mut t = String::from(
        "[sim]\nduration = \"14h\"\nseed = 1\n\n[boot]\nmin = \"45s\"\nmax = \"1m 30s\"\n\n\
         [[hosts]]\nprefix = \"mac01\"\nroot_vms = 0\nspi_vms = 0\n\n\
         [[hosts.vms]]\nname = \"mac01-ROOT-VM-macOS-13\"\n\n\
         [[hosts.vms]]\nname = \"mac01-ROOT-VM-macOS-14\"\n\n\
         [[hosts.vms]]\nname = \"mac01-SPI-VM-1\"\n\n",
    );
    t.push_str(&jenkins_build("2m", "mac01-SPI-VM-1", "10m"));
    t.push_str(&jenkins_build("9h 2m", "mac01-SPI-VM-1", "30m"));
    for (at, duration, platform) in [("9h", "90m", "mac13"), ("9h 3m", "60m", "mac14")] {
        t.push_str(&format!(
            "\n[[root_jobs]]\nat = \"{at}\"\nduration = \"{duration}\"\n\
             labels = [\"self-hosted\", \"macOS\", \"ARM64\", \"{platform}\"]\n"
        ));
    }
    t
}

fn trace() -> Trace {
    parse_workload(&trace_text(), "spi-faults.toml")
}

#[test]
fn a_warm_runner_that_takes_a_job_is_roots_turn_so_jenkins_goes_next() {
    let trace = trace();
    assert!(
        trace.scheduler.warm_idle_hosts,
        "idle-host warmth is on by default"
    );
    let report = demand(&trace);
    assert_clean(&report);
    assert_eq!(report.teams["spi"].arrived, 2);
    // The second build waits the mac13 job's remaining 88 min, its VM's probe and stop and
    // the SPI boot (≤ 1 m 30 s). Before, it waited the mac14 job as well (~2 h 30 min).
    let max = report.spi_grant_latency.max_ms.expect("grants");
    assert!(
        max <= 95 * 60_000,
        "SPI grant max {} > 1h 35m: the build waited a second ROOT job\n{}",
        fmt_ms(max),
        report.to_table()
    );
}

#[test]
fn the_mac14_job_still_starts_once_the_build_is_done() {
    // ROOT's job is passed over for one build (30 min), not lost.
    let report = demand(&trace());
    assert_clean(&report);
    let root = &report.teams["root"];
    assert_eq!(root.arrived, 2);
    let max = root.wait_max_ms.expect("ROOT waits");
    assert!(
        max <= 2 * 60 * 60_000 + 5 * 60_000,
        "ROOT wait max {}\n{}",
        fmt_ms(max),
        report.to_table()
    );
}
