//! Issue 17, the standard trace's ROOT p95 gap: after a quiet night the warm-runner history
//! (`warm_window`, 2 h) was empty, so idle-host warmth ranked the platforms by name —
//! `mac-beta` first, `mac15` last — and the hosts the nightly's Jenkins agents left free kept
//! idle mac-beta and mac13 runners while the morning push asked for mac15 and mac14, which
//! waited a whole boot. A small trace of that shape, replayed with the shipped settings (the
//! trace sets none): four hosts, a day of pushes on mac15 and mac14, a nightly build on
//! nodes 1 and 2 (their agents stay up, idle for less than `agent_idle_handover`), and the
//! next morning's push on mac15 and mac14. The platforms are ranked by the jobs of the last
//! day, so the morning push starts on warm runners.
//!
//! The daytime gap (task `daytime`): a second push soon after the first found its platforms'
//! idle-host warm runners not yet booted — the hosts its first push freed waited 10 minutes
//! (`IDLE_WARM_AFTER_MS`) before booting one (standard trace, root#36: host 01 free for 9 min,
//! no mac14 runner warm, the run came). With a 5 min delay the second push starts warm, but
//! that delay is not shipped: it put holdout `faults@2001`'s SPI grant p95 over the cycler's
//! (docs/benchmarks.md, "Task daytime"), so the test is ignored until a rule passes both.
//!
//! The second push of a working hour (task `std8`): the hour's first pushes took the
//! predicted warm runners (mac15 and mac14, two jobs each within `warm_window`), every ROOT
//! host was busy or kept another platform warm, and the next push's jobs waited for an idle
//! Jenkins agent's stop and a boot (standard trace, +1d 18h 54m: root#65/#66, the agent on
//! host 07 idle 4.4 h). An agent idle for `agent_predicted_handover` (1 h) now gives its host
//! up for the missing predicted platform while no Jenkins build is queued.
//!
//! The swap (task `std9`, `warm_swap`, opt-in): the hour's second push took the predicted
//! runners while other hosts kept idle-host runners of platforms nobody had asked for in
//! hours, and the third push booted cold (standard trace, +15h 31m: root#17/#18, 1m 53s and
//! 2m 23s). With `warm_swap` such a runner gives its host to the missing predicted platform.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fmt::Write as _;

use marble_sim::Trace;
use marble_sim::metrics::{count_above, fmt_ms};

use common::{demand, parse_workload};

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
    parse_workload(&trace_text(), "standard-gap.toml")
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

/// Two hosts; a morning push on mac15 and mac14 (cold: nothing is remembered yet), a push at
/// 10:30 on the warm runners the idle hosts then kept, and a push at 10:58, seven minutes
/// after the 10:30 jobs freed their hosts. One job per platform in `warm_window` predicts
/// nothing, so only idle-host warmth can have the 10:58 push start warm.
fn daytime_text() -> String {
    let mut t = String::from(
        "[sim]\nduration = \"12h\"\nseed = 7\n\n[boot]\nmin = \"45s\"\nmax = \"1m 30s\"\n\n",
    );
    t.push_str(&common::platform_hosts(2));
    for at in ["8h", "10h 30m", "10h 58m"] {
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

#[test]
#[ignore = "fails with the shipped 10 min idle-warmth delay; passes at 5 min, which costs SPI on faults@2001 (docs/benchmarks.md, Task daytime)"]
fn a_push_soon_after_another_finds_its_platforms_warm() {
    let trace = parse_workload(&daytime_text(), "daytime-gap.toml");
    let report = demand(&trace);
    assert!(report.violations.is_empty(), "{}", report.to_table());
    let root = &report.teams["root"];
    assert_eq!(root.arrived, 6);
    assert_eq!(root.started, root.arrived, "{}", report.to_table());
    // Only the morning push (nothing remembered, every host on another platform) boots cold.
    let cold = count_above(&root.waits_ms, 30_000);
    assert!(
        cold <= 2,
        "{cold} ROOT job(s) waited over 30 s (max {})\n{}",
        fmt_ms(root.wait_max_ms.unwrap_or(0)),
        report.to_table()
    );
}

/// Nine hosts: ROOT on 1–7 (each with a VM per platform), Jenkins builds on nodes 8 and 9 at
/// 15:00 (their agents stay up, idle 3 h by the evening — under `agent_warm_handover`) and
/// 20:00. The day's pushes at 9:00 and 11:00 on mac15/mac14 make those the likeliest
/// platforms; at 18:30 a run on every platform, at 18:33 one on mac15/mac14 (both on warm
/// runners: the hosts free since the morning kept them), and at 18:54 one on mac15/mac14
/// again, with hosts 1–6 running the 18:30/18:33 jobs and host 7 keeping an idle runner.
fn second_push_text() -> String {
    let mut t = String::from(
        "[sim]\nduration = \"22h\"\nseed = 7\n\n[boot]\nmin = \"45s\"\nmax = \"1m 30s\"\n\n",
    );
    t.push_str(&common::platform_hosts(9));
    for node in [8, 9] {
        for at in ["15h", "20h"] {
            write!(
                t,
                "[[jenkins]]\nat = \"{at}\"\nvm = \"mac0{node}-SPI-VM-1\"\nduration = \"30m\"\n\n"
            )
            .unwrap();
        }
    }
    let mut jobs: Vec<(&str, &str, &str)> = Vec::new();
    for at in ["9h", "11h"] {
        jobs.extend([(at, "mac15", "20m"), (at, "mac14", "20m")]);
    }
    for p in ["mac15", "mac14", "mac13", "mac-beta"] {
        jobs.push(("18h 30m", p, "1h"));
    }
    jobs.extend([("18h 33m", "mac15", "1h"), ("18h 33m", "mac14", "1h")]);
    jobs.extend([("18h 54m", "mac15", "20m"), ("18h 54m", "mac14", "20m")]);
    for (at, label, duration) in jobs {
        write!(
            t,
            "[[root_jobs]]\nat = \"{at}\"\nduration = \"{duration}\"\n\
             labels = [\"self-hosted\", \"macOS\", \"ARM64\", \"{label}\"]\n\n"
        )
        .unwrap();
    }
    t
}

#[test]
fn the_second_push_of_an_hour_finds_its_predicted_platforms_warm() {
    let trace = parse_workload(&second_push_text(), "second-push.toml");
    let report = demand(&trace);
    assert!(report.violations.is_empty(), "{}", report.to_table());
    let root = &report.teams["root"];
    assert_eq!(root.arrived, 12);
    assert_eq!(root.started, root.arrived, "{}", report.to_table());
    assert_eq!(report.teams["spi"].started, 4, "{}", report.to_table());
    // Before: the 18:54 jobs waited for the agents' stops and boots (1m 22s, 1m 38s).
    let cold = count_above(&root.waits_ms, 30_000);
    assert!(
        cold == 0,
        "{cold} ROOT job(s) waited over 30 s (max {})\n{}",
        fmt_ms(root.wait_max_ms.unwrap_or(0)),
        report.to_table()
    );
}

/// Six hosts (a VM per platform each): a run on every platform at 8:30, pushes on
/// mac15/mac14 at 10:00 and 10:03 (3 h jobs: the first takes the idle-host runners, the
/// second the predicted ones the free hosts then boot), leaving two hosts with idle-host
/// mac13 and mac-beta runners, and a push on mac15/mac14 at 10:15.
fn swap_text() -> String {
    let mut t = String::from(
        "[sim]\nduration = \"14h\"\nseed = 7\n\n[boot]\nmin = \"45s\"\nmax = \"1m 30s\"\n\n",
    );
    t.push_str(&common::platform_hosts(6));
    let mut jobs: Vec<(&str, &str, &str)> = ["mac15", "mac14", "mac13", "mac-beta"]
        .into_iter()
        .map(|p| ("8h 30m", p, "20m"))
        .collect();
    for at in ["10h", "10h 3m", "10h 15m"] {
        jobs.extend([(at, "mac15", "3h"), (at, "mac14", "3h")]);
    }
    for (at, label, duration) in jobs {
        write!(
            t,
            "[[root_jobs]]\nat = \"{at}\"\nduration = \"{duration}\"\n\
             labels = [\"self-hosted\", \"macOS\", \"ARM64\", \"{label}\"]\n\n"
        )
        .unwrap();
    }
    t
}

/// How many ROOT jobs waited over 60 s and over 30 s, with `warm_swap` as given (idle-host
/// warmth has every platform warm for the 8:30 run, the 10:00 and 10:03 pushes start warm).
fn slow_with(warm_swap: bool) -> (u64, u64, String) {
    let mut trace = parse_workload(&swap_text(), "swap.toml");
    trace.scheduler.warm_swap = warm_swap;
    let report = demand(&trace);
    assert!(report.violations.is_empty(), "{}", report.to_table());
    let root = &report.teams["root"];
    assert_eq!(root.arrived, 10);
    assert_eq!(root.started, root.arrived, "{}", report.to_table());
    (
        count_above(&root.waits_ms, 60_000),
        count_above(&root.waits_ms, 30_000),
        report.to_table(),
    )
}

#[test]
fn with_warm_swap_the_third_push_of_an_hour_finds_its_predicted_platforms_warm() {
    // Without the swap (the default) the 10:15 push waits for an idle-host runner to
    // yield (`warm_yield`) and a boot.
    let (over_60, _, table) = slow_with(false);
    assert!(over_60 >= 1, "without the swap\n{table}");
    let (_, over_30, table) = slow_with(true);
    assert_eq!(over_30, 0, "with the swap\n{table}");
}
