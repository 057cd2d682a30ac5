//! Issue 17, the standard trace's ROOT p95 gap: after a quiet night the warm-runner history
//! (`warm_window`, 2 h) was empty, so idle-host warmth ranked the platforms by name —
//! `mac-beta` first, `mac15` last — and the hosts the nightly's Jenkins agents left free kept
//! idle mac-beta and mac13 runners while the morning push asked for mac15 and mac14, which
//! waited a whole boot. A small trace of that shape, replayed with the shipped settings (the
//! trace sets none): four hosts, a day of pushes on mac15 and mac14, a nightly build on
//! nodes 1 and 2 (their agents stay up, idle for less than `agent_idle_handover`), and the
//! next morning's push on mac15 and mac14. The platforms are ranked by the jobs of the last
//! day, so the morning push starts on warm runners.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fmt::Write as _;
use std::path::Path;

use marble_sim::metrics::{count_above, fmt_ms};
use marble_sim::{Report, RunOptions, Trace, simulate};
use marbled::config::Policy;

fn trace_text() -> String {
    let mut t = String::from(
        "[sim]\nduration = \"36h\"\nseed = 7\n\n[boot]\nmin = \"45s\"\nmax = \"1m 30s\"\n\n",
    );
    t.push_str(&common::platform_hosts(3));
    // The nightly on every node: the agents stay up until `agent_idle_handover` (8 h).
    for h in 1..=3 {
        write!(
            t,
            "[[jenkins]]\nat = \"25h\"\nvm = \"mac0{h}-SPI-VM-1\"\nduration = \"40m\"\n\n"
        )
        .unwrap();
    }
    // A working day of pushes (10:00–17:00) and the next morning's push (09:00).
    let pushes: Vec<String> = (10..=17)
        .map(|h| format!("{h}h"))
        .chain(["35h".to_owned()])
        .collect();
    for at in pushes {
        for p in ["15", "14"] {
            write!(
                t,
                "[[root_jobs]]\nat = \"{at}\"\nduration = \"20m\"\n\
                 labels = [\"self-hosted\", \"macOS\", \"ARM64\", \"mac{p}\"]\n\n"
            )
            .unwrap();
        }
    }
    t
}

fn trace() -> Trace {
    let trace = Trace::parse(&trace_text(), Path::new("standard-gap.toml")).unwrap();
    assert_eq!(
        trace.scheduler,
        marbled::config::SchedulerSection::default(),
        "a trace sets only workload, fleet, boots and faults"
    );
    trace
}

fn demand(trace: &Trace) -> Report {
    simulate(trace, RunOptions::with_policy(Policy::Demand))
}

#[test]
fn the_morning_push_finds_its_likeliest_platforms_warm() {
    let report = demand(&trace());
    assert!(report.violations.is_empty(), "{}", report.to_table());
    let root = &report.teams["root"];
    assert_eq!(root.arrived, 18);
    assert_eq!(root.started, root.arrived, "{}", report.to_table());
    assert_eq!(report.teams["spi"].started, 3, "{}", report.to_table());
    // The day's first job boots cold (nothing is remembered yet; its run's mac14 job takes
    // a runner another host booted meanwhile); every later job, the morning's mac15
    // included, finds a warm runner of its platform.
    let cold = count_above(&root.waits_ms, 30_000);
    assert!(
        cold <= 1,
        "{cold} ROOT job(s) waited over 30 s (max {})\n{}",
        fmt_ms(root.wait_max_ms.unwrap_or(0)),
        report.to_table()
    );
}
