//! The trace shapes of issue 17 (`marble-sim generate --shape NAME --seed N`): bursts of
//! short jobs, sustained overload, nightly waves, a quiet trickle, faults on a bursty day and
//! ROOT's real label sets. Each is a whole trace — fleet, boot model, explicit arrivals and
//! faults, never `[scheduler]` keys — deterministic from its seed, so `replay-all` can check
//! the targets on fresh instances as well as on the committed ones (`docs/traces/<shape>.toml`).
//! The shapes are documented in `docs/SIMULATOR.md` ("Trace shapes").

use std::time::Duration;

use clap::ValueEnum;

use super::daily::WEEKDAY_CURVE;
use super::rng::SimRng;
use super::trace::{
    BootSection, FaultKind, FaultSpec, HangAction, HostSection, JenkinsSpec, RootJobSpec, Trace,
    VmSpec,
};

const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;

/// One of the issue's load shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Shape {
    /// Bursts of 4-job runs on 6 hosts over a day, a quarter of the jobs ending in 15–50 s.
    Bursts,
    /// A week of 60–160 min matrix jobs keeping every host busy; SPI builds to named nodes
    /// and `any`.
    Overload,
    /// Nightly waves: ROOT nightly runs and the SPI nightly batch at the same hour.
    Nightly,
    /// A quiet trickle: 18 jobs in two days, 2–3 h apart, mixed labels.
    Trickle,
    /// The bursty day with probe, boot, hang and stop-ignored faults.
    Faults,
    /// ROOT's real label sets: mac13/14/15/`mac-beta`, and mac14 `X64` on an Intel host.
    Labels,
}

impl Shape {
    /// Every shape, in the order of the table.
    pub const ALL: [Shape; 6] = [
        Shape::Bursts,
        Shape::Overload,
        Shape::Nightly,
        Shape::Trickle,
        Shape::Faults,
        Shape::Labels,
    ];

    /// The shape's name (`--shape`, the committed file's stem).
    pub fn name(self) -> &'static str {
        match self {
            Shape::Bursts => "bursts",
            Shape::Overload => "overload",
            Shape::Nightly => "nightly",
            Shape::Trickle => "trickle",
            Shape::Faults => "faults",
            Shape::Labels => "labels",
        }
    }

    /// An instance of the shape from `seed` (arrivals and the run's draws).
    pub fn trace(self, seed: u64) -> Trace {
        // Seeds above i64::MAX do not fit a TOML integer.
        let seed = seed & (i64::MAX as u64);
        let mut rng = SimRng::stream(seed, &format!("shape.{}", self.name()));
        let mut t = match self {
            Shape::Bursts => bursts(&mut rng),
            Shape::Overload => overload(&mut rng),
            Shape::Nightly => nightly(&mut rng),
            Shape::Trickle => trickle(&mut rng),
            Shape::Faults => faulty(&mut rng),
            Shape::Labels => labels(&mut rng),
        };
        t.sim.seed = seed;
        t.root_jobs.sort_by_key(|j| j.at);
        t.jenkins.sort_by_key(|b| b.at);
        t
    }
}

/// `[self-hosted, macOS, <arch>, <version>]`, the labels ROOT's workflows ask for.
fn labels_of(arch: &str, version: &str) -> Vec<String> {
    ["self-hosted", "macOS", arch, version]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// ROOT's matrix: one job per macOS version, `mac-beta` being the beta's real label.
const MATRIX: [&str; 4] = ["mac13", "mac14", "mac15", "mac-beta"];

/// `n` standard hosts `macphsft01…`, each with a ROOT VM per entry of [`MATRIX`] (labels
/// written out, so the trace does not depend on how a VM name maps to labels) and one SPI VM.
fn fleet(n: u32) -> Vec<HostSection> {
    (1..=n)
        .map(|i| {
            let prefix = format!("macphsft{i:02}");
            let mut vms: Vec<VmSpec> = ["13", "14", "15", "beta"]
                .iter()
                .zip(MATRIX)
                .map(|(suffix, label)| VmSpec {
                    name: format!("{prefix}-ROOT-VM-macOS-{suffix}"),
                    labels: Some(labels_of("ARM64", label)),
                    ..VmSpec::default()
                })
                .collect();
            vms.push(VmSpec {
                name: format!("{prefix}-SPI-VM-1"),
                ..VmSpec::default()
            });
            HostSection {
                capacity: 1,
                root_vms: 0,
                spi_vms: 0,
                vms,
                prefix,
                ..HostSection::default()
            }
        })
        .collect()
}

/// A trace of `hosts` standard hosts over `days`, with the standard boot model (45–90 s,
/// 10 % slow boots up to 4 min).
fn base(hosts: u32, days: u64) -> Trace {
    let mut t = Trace::default();
    t.sim.duration = Duration::from_millis(days * DAY);
    t.boot = BootSection {
        min: Duration::from_secs(45),
        max: Duration::from_secs(90),
        slow_rate: 0.1,
        slow_max: Some(Duration::from_secs(240)),
    };
    t.hosts = fleet(hosts);
    t
}

fn job(at: u64, duration: u64, labels: Vec<String>) -> RootJobSpec {
    RootJobSpec {
        at: Duration::from_millis(at),
        duration: Duration::from_millis(duration),
        labels,
    }
}

/// One workflow run: a job per [`MATRIX`] entry, all queued at `at`; `duration` draws each.
fn run(t: &mut Trace, rng: &mut SimRng, at: u64, duration: impl Fn(&mut SimRng) -> u64) {
    for version in MATRIX {
        let d = duration(rng);
        t.root_jobs.push(job(at, d, labels_of("ARM64", version)));
    }
}

/// A Jenkins build at `at`: to a named SPI node of one of `hosts` hosts with probability
/// `named`, else to `any`.
fn build(rng: &mut SimRng, at: u64, duration: u64, hosts: u32, named: f64) -> JenkinsSpec {
    let vm = if rng.chance(named) {
        format!("macphsft{:02}-SPI-VM-1", 1 + rng.below(hosts as usize))
    } else {
        "any".into()
    };
    JenkinsSpec {
        at: Duration::from_millis(at),
        vm,
        duration: Duration::from_millis(duration),
        wait: Duration::from_secs(300),
        retry: Duration::from_secs(60),
    }
}

/// Poisson arrival times up to `until` whose rate (per hour) is constant within each hour.
fn poisson(rng: &mut SimRng, until: u64, rate: impl Fn(u64) -> f64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut hour = 0;
    while hour < until {
        let per_hour = rate(hour);
        let end = (hour + HOUR).min(until);
        if per_hour > 0.0 {
            let mut at = hour as f64;
            loop {
                // Exponential gap: -ln(1 - u) / rate, in ms.
                at += -(1.0 - rng.unit()).ln() / per_hour * HOUR as f64;
                if at >= end as f64 {
                    break;
                }
                out.push(at as u64);
            }
        }
        hour += HOUR;
    }
    out
}

/// The weekday curve (`daily::WEEKDAY_CURVE`) × `peak` pushes per hour, × `weekend` on
/// days 5 and 6.
fn curve(peak: f64, weekend: f64) -> impl Fn(u64) -> f64 {
    move |at| {
        let hour = ((at % DAY) / HOUR) as usize;
        let base = peak * WEEKDAY_CURVE[hour.min(23)];
        if (at / DAY) % 7 >= 5 {
            base * weekend
        } else {
            base
        }
    }
}

/// Bursts of short jobs: 15 runs of 4 jobs in bursts of 2–4 runs (within 8 minutes) during
/// 08:00–20:00 on 6 hosts; a quarter of the jobs end within 15–50 s (a cancelled push, a
/// fast failure), the rest run 3–30 min; six SPI builds of 15–45 min, half to a named node.
fn bursts(rng: &mut SimRng) -> Trace {
    let mut t = base(6, 1);
    let short = |rng: &mut SimRng| {
        if rng.chance(0.25) {
            rng.range(15_000, 50_000)
        } else {
            rng.range(3 * MIN, 30 * MIN)
        }
    };
    let mut runs = 15_usize;
    while runs > 0 {
        let size = (2 + rng.below(3)).min(runs);
        let at = rng.range(HOUR, 23 * HOUR + 30 * MIN);
        for _ in 0..size {
            let offset = rng.range(0, 8 * MIN);
            run(&mut t, rng, at + offset, short);
        }
        runs -= size;
    }
    for _ in 0..6 {
        let at = rng.range(8 * HOUR, 18 * HOUR);
        let d = rng.range(15 * MIN, 45 * MIN);
        t.jenkins.push(build(rng, at, d, 6, 0.5));
    }
    t
}

/// Sustained overload: a week on 4 hosts, pushes following the weekday curve at 1 per hour
/// at the peak (half on weekends), each a 4-job run of 60–160 min jobs — about as much work
/// as the fleet can do, so every host is busy for hours; SPI: a nightly batch of 4 builds at
/// 01:00 and 0.5 builds per hour on weekdays 08:00–18:00, 30–90 min, half to a named node.
fn overload(rng: &mut SimRng) -> Trace {
    let days = 7;
    let mut t = base(4, days);
    let until = days * DAY;
    for at in poisson(rng, until, curve(1.0, 0.5)) {
        run(&mut t, rng, at, |r| r.range(60 * MIN, 160 * MIN));
    }
    spi_nightly(&mut t, rng, days, 4, 4);
    let day = |at: u64| {
        let hour = (at % DAY) / HOUR;
        if (at / DAY) % 7 < 5 && (8..18).contains(&hour) {
            0.5
        } else {
            0.0
        }
    };
    for at in poisson(rng, until, day) {
        let d = rng.range(30 * MIN, 90 * MIN);
        t.jenkins.push(build(rng, at, d, 4, 0.5));
    }
    t
}

/// The SPI nightly batch: `builds` builds from 01:00 over 15 minutes, every day, 30–90 min,
/// half to a named node of `hosts` hosts.
fn spi_nightly(t: &mut Trace, rng: &mut SimRng, days: u64, builds: u32, hosts: u32) {
    for day in 0..days {
        for _ in 0..builds {
            let at = day * DAY + HOUR + rng.range(0, 15 * MIN);
            let d = rng.range(30 * MIN, 90 * MIN);
            t.jenkins.push(build(rng, at, d, hosts, 0.5));
        }
    }
}

/// Nightly waves: three days on 4 hosts; every night at 00:30 five scheduled ROOT runs
/// (within 10 minutes, 30–90 min jobs) meet the SPI nightly batch of 6 builds at 01:00;
/// light daytime pushes (0.4 per hour at the peak, 20–60 min jobs).
fn nightly(rng: &mut SimRng) -> Trace {
    let days = 3;
    let mut t = base(4, days);
    for day in 0..days {
        for _ in 0..5 {
            let at = day * DAY + 30 * MIN + rng.range(0, 10 * MIN);
            run(&mut t, rng, at, |r| r.range(30 * MIN, 90 * MIN));
        }
    }
    spi_nightly(&mut t, rng, days, 6, 4);
    for at in poisson(rng, days * DAY, curve(0.4, 0.25)) {
        // Skip the night: the nightly wave is the night's load.
        if (at % DAY) >= 6 * HOUR {
            run(&mut t, rng, at, |r| r.range(20 * MIN, 60 * MIN));
        }
    }
    t
}

/// A quiet trickle: two days on 4 hosts, 18 single jobs 2–3 h apart (the first after 30–90
/// min), each on one macOS version, 5–30 min; no SPI.
fn trickle(rng: &mut SimRng) -> Trace {
    let mut t = base(4, 2);
    let mut at = rng.range(30 * MIN, 90 * MIN);
    for _ in 0..18 {
        let version = MATRIX[rng.below(MATRIX.len())];
        let d = rng.range(5 * MIN, 30 * MIN);
        t.root_jobs.push(job(at, d, labels_of("ARM64", version)));
        at += rng.range(2 * HOUR, 3 * HOUR);
    }
    t
}

/// The bursty day with prlctl faults: 10 % of busy probes fail, 5 % of boots never get
/// ready, 10 % of graceful stops are ignored, 5 % of starts report 5 minutes late.
fn faulty(rng: &mut SimRng) -> Trace {
    let mut t = bursts(rng);
    t.faults = vec![
        FaultSpec::everywhere(FaultKind::Probe, 0.1),
        FaultSpec::everywhere(FaultKind::Boot, 0.05),
        FaultSpec::everywhere(FaultKind::StopIgnored, 0.1),
        FaultSpec::hang(HangAction::Start, 0.05, Duration::from_secs(300)),
    ];
    t
}

/// ROOT's real label sets: two days on 4 Apple-silicon hosts plus an Intel host
/// `macintel01` whose ROOT VM offers `[self-hosted, macOS, X64, mac14]`; pushes follow the
/// weekday curve (1.2 at the peak), each queueing mac13 / mac14 / mac15 / `mac-beta` (ARM64)
/// with the standard mix's shares and mac14 `X64` with 0.3; 20–60 min jobs; the SPI nightly
/// batch of 4 builds.
fn labels(rng: &mut SimRng) -> Trace {
    let days = 2;
    let mut t = base(4, days);
    t.hosts.push(HostSection {
        capacity: 1,
        root_vms: 0,
        spi_vms: 0,
        vms: vec![
            VmSpec {
                name: "macintel01-ROOT-VM-macOS-14".into(),
                labels: Some(labels_of("X64", "mac14")),
                ..VmSpec::default()
            },
            VmSpec {
                name: "macintel01-SPI-VM-1".into(),
                ..VmSpec::default()
            },
        ],
        prefix: "macintel01".into(),
        ..HostSection::default()
    });
    let mix = [
        ("ARM64", "mac15", 0.9),
        ("ARM64", "mac14", 0.7),
        ("ARM64", "mac13", 0.4),
        ("ARM64", "mac-beta", 0.25),
        ("X64", "mac14", 0.3),
    ];
    for at in poisson(rng, days * DAY, curve(1.2, 0.25)) {
        let mut any = false;
        for (arch, version, share) in mix {
            if rng.chance(share) {
                any = true;
                let d = rng.range(20 * MIN, 60 * MIN);
                t.root_jobs.push(job(at, d, labels_of(arch, version)));
            }
        }
        if !any {
            let d = rng.range(20 * MIN, 60 * MIN);
            t.root_jobs.push(job(at, d, labels_of("ARM64", "mac15")));
        }
    }
    spi_nightly(&mut t, rng, days, 4, 4);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{RunOptions, simulate};

    #[test]
    fn every_shape_is_valid_deterministic_and_round_trips() {
        for shape in Shape::ALL {
            let t = shape.trace(3);
            assert!(t.problems().is_empty(), "{shape:?}: {:?}", t.problems());
            assert_eq!(t, shape.trace(3), "{shape:?} is deterministic");
            assert_ne!(
                t.root_jobs,
                shape.trace(4).root_jobs,
                "{shape:?} depends on the seed"
            );
            assert_eq!(
                t.scheduler,
                Trace::default().scheduler,
                "{shape:?} sets no scheduler key"
            );
            let text = t.to_toml().expect("serialises");
            let back = Trace::parse(&text, std::path::Path::new("s.toml")).expect("parses");
            assert_eq!(back, t, "{shape:?}");
        }
    }

    #[test]
    fn the_shapes_have_the_issues_sizes() {
        let bursts = Shape::Bursts.trace(1);
        assert_eq!(bursts.root_jobs.len(), 60);
        assert_eq!(bursts.hosts.len(), 6);
        let short = bursts
            .root_jobs
            .iter()
            .filter(|j| j.duration <= Duration::from_secs(50))
            .count();
        assert!((8..=25).contains(&short), "about a quarter short: {short}");
        let trickle = Shape::Trickle.trace(1);
        assert_eq!(trickle.root_jobs.len(), 18);
        assert!(trickle.jenkins.is_empty());
        let labels = Shape::Labels.trace(1);
        assert!(
            labels
                .root_jobs
                .iter()
                .any(|j| j.labels.contains(&"X64".to_owned()))
        );
        assert!(!Shape::Faults.trace(1).faults.is_empty());
    }

    #[test]
    fn a_trickle_runs_every_job_without_violations() {
        let t = Shape::Trickle.trace(2);
        let report = simulate(&t, RunOptions::default());
        assert!(report.violations.is_empty());
        assert_eq!(report.teams["root"].started, 18);
    }
}
