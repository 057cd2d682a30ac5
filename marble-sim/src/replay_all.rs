//! `marble-sim replay-all`: every committed trace of a directory and fresh seeds of every
//! load shape ([`super::shapes`]) replayed under `cycle` and `demand` with the shipped
//! scheduler defaults, next to the ideal reference ([`super::compare`], [`super::ideal`]),
//! summarised as one table with a ✔/✘ per target of issue 17. Documented in
//! `docs/SIMULATOR.md` ("Replay all"); figures in `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use marbled::config::SchedulerSection;
use serde::Serialize;

use super::compare::{Comparison, TARGET_BOOTS_PER_JOB, compare};
use super::metrics::Report;
use super::shapes::Shape;
use super::trace::{Trace, TraceError};

/// ROOT wait p95 may exceed the ROOT + SPI ideal reference's p95 by this much, ms.
pub const ROOT_P95_SLACK_MS: u64 = 60_000;
/// Stretch target: ROOT wait p50 at most this where the ideal p50 is 0, ms.
pub const STRETCH_P50_MS: u64 = 10_000;

/// One trace to replay.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Row name: the file stem, or `<shape>@<seed>` for a fresh instance.
    pub name: String,
    /// The trace as written.
    pub trace: Trace,
}

/// The targets on one trace (`None`: does not apply).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Targets {
    /// No job the ideal reference starts is left unstarted.
    pub no_lost: bool,
    /// `demand`'s SPI grant latency p95 ≤ `cycle`'s.
    pub spi_p95: bool,
    /// `demand`'s ROOT wait p95 ≤ ideal.both ROOT p95 + 60 s.
    pub root_p95: bool,
    /// `demand`'s ROOT boots per job ≤ 1.1.
    pub boots: bool,
    /// Stretch: ROOT wait p50 ≤ 10 s, where the ideal's p50 is 0.
    pub stretch_p50: Option<bool>,
}

impl Targets {
    /// Every target (not the stretch one) met.
    pub fn all_met(&self) -> bool {
        self.no_lost && self.spi_p95 && self.root_p95 && self.boots
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Trace name.
    pub name: String,
    /// `[scheduler]` or `[sim]` demand keys the trace set, reset to the shipped defaults.
    pub reset_keys: Vec<String>,
    /// ROOT jobs arrived.
    pub root_jobs: u64,
    /// Jobs (ROOT + SPI) the ideal reference (ROOT + SPI) starts within the trace that
    /// `demand` never started, by count.
    pub lost: u64,
    /// `demand`'s ROOT wait p50, ms.
    pub root_p50_ms: Option<u64>,
    /// `demand`'s ROOT wait p95, ms.
    pub root_p95_ms: Option<u64>,
    /// The ROOT + SPI ideal reference's ROOT p50, ms.
    pub ideal_p50_ms: Option<u64>,
    /// The ROOT + SPI ideal reference's ROOT p95, ms.
    pub ideal_p95_ms: Option<u64>,
    /// `demand`'s SPI grant latency p95, ms.
    pub spi_p95_ms: Option<u64>,
    /// `cycle`'s SPI grant latency p95, ms.
    pub cycle_spi_p95_ms: Option<u64>,
    /// `demand`'s ROOT boots per ROOT job.
    pub boots_per_job: Option<f64>,
    /// Invariant violations of both runs.
    pub violations: u64,
    /// The targets.
    pub targets: Targets,
}

/// `trace` with the shipped scheduler and demand defaults, and the keys that were reset.
pub fn with_shipped_defaults(trace: &Trace) -> (Trace, Vec<String>) {
    let mut out = trace.clone();
    let mut reset = Vec::new();
    let shipped = SchedulerSection {
        // `compare` sets the policy of each run; the trace's is not a tuning.
        policy: trace.scheduler.policy.clone(),
        ..SchedulerSection::default()
    };
    if let (Ok(toml::Value::Table(mine)), Ok(toml::Value::Table(def))) = (
        toml::Value::try_from(&trace.scheduler),
        toml::Value::try_from(&shipped),
    ) {
        for (key, value) in &mine {
            if def.get(key) != Some(value) {
                reset.push(format!("scheduler.{key}"));
            }
        }
    }
    out.scheduler = shipped;
    let sim = Trace::default().sim;
    if out.sim.demand_poll != sim.demand_poll {
        reset.push("sim.demand_poll".into());
        out.sim.demand_poll = sim.demand_poll;
    }
    if out.sim.demand_watch != sim.demand_watch {
        reset.push("sim.demand_watch".into());
        out.sim.demand_watch = sim.demand_watch;
    }
    (out, reset)
}

fn lost(started_ideal: u64, report: &Report, team: &str) -> u64 {
    let started = report.teams.get(team).map_or(0, |t| t.started);
    started_ideal.saturating_sub(started)
}

/// Replay one trace (with the shipped defaults) and check the targets.
pub fn row(entry: &Entry) -> Row {
    let (trace, reset_keys) = with_shipped_defaults(&entry.trace);
    let c: Comparison = compare(&trace, None);
    let root = c.demand.teams.get("root");
    let ideal = &c.ideal.both;
    let lost =
        lost(ideal.root.started, &c.demand, "root") + lost(ideal.spi.started, &c.demand, "spi");
    let root_p50_ms = root.and_then(|t| t.wait_p50_ms);
    let root_p95_ms = root.and_then(|t| t.wait_p95_ms);
    let root_p95 = match (root_p95_ms, ideal.root.wait_p95_ms) {
        (Some(d), Some(i)) => d <= i + ROOT_P95_SLACK_MS,
        (None, _) => true,
        (Some(_), None) => false,
    };
    let stretch_p50 = (ideal.root.wait_p50_ms == Some(0))
        .then(|| root_p50_ms.is_some_and(|p| p <= STRETCH_P50_MS));
    let boots = c
        .demand
        .root_boots_per_job
        .is_none_or(|b| b <= TARGET_BOOTS_PER_JOB);
    Row {
        name: entry.name.clone(),
        reset_keys,
        root_jobs: root.map_or(0, |t| t.arrived),
        lost,
        root_p50_ms,
        root_p95_ms,
        ideal_p50_ms: ideal.root.wait_p50_ms,
        ideal_p95_ms: ideal.root.wait_p95_ms,
        spi_p95_ms: c.demand.spi_grant_latency.p95_ms,
        cycle_spi_p95_ms: c.cycle.spi_grant_latency.p95_ms,
        boots_per_job: c.demand.root_boots_per_job,
        violations: c.cycle.violations.count + c.demand.violations.count,
        targets: Targets {
            no_lost: lost == 0,
            spi_p95: c.spi_grant_met,
            root_p95,
            boots,
            stretch_p50,
        },
    }
}

/// The `*.toml` traces of `dir`, by name, then `seeds` fresh instances of every shape
/// (seeds `first_seed..first_seed + seeds`).
pub fn entries(dir: &Path, seeds: u64, first_seed: u64) -> Result<Vec<Entry>, TraceError> {
    let listing = std::fs::read_dir(dir).map_err(|source| TraceError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = listing
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let trace = Trace::load(&path)?;
        let name = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into(),
        );
        out.push(Entry { name, trace });
    }
    for shape in Shape::ALL {
        for seed in first_seed..first_seed.saturating_add(seeds) {
            out.push(Entry {
                name: format!("{}@{seed}", shape.name()),
                trace: shape.trace(seed),
            });
        }
    }
    Ok(out)
}

/// Replay every entry on `threads` threads; rows in the entries' order.
pub fn replay(entries: &[Entry], threads: usize) -> Vec<Row> {
    let next = Mutex::new(0_usize);
    let rows: Mutex<Vec<Option<Row>>> = Mutex::new(vec![None; entries.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(entry) = entries.get(i) else { break };
                    let r = row(entry);
                    let mut rows = rows
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(slot) = rows.get_mut(i) {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    rows.into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .flatten()
        .collect()
}

/// A short duration: `0s`, `42s`, `3m05s`, `1h25m`; `-` for none.
fn short(ms: Option<u64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "✔" } else { "✘" }
}

/// The table (Markdown), with a line per trace whose keys were reset and a summary.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| trace | ROOT jobs | lost | ROOT p50 | ROOT p95 | ideal.both p95 | SPI grant p95 \
         demand / cycle | ROOT boots/job | violations | 0 lost | SPI p95 | ROOT p95 | boots \
         | p50 (stretch) |"
    );
    let _ = writeln!(out, "|{}", "---|".repeat(15));
    for r in rows {
        let name = if r.reset_keys.is_empty() {
            r.name.clone()
        } else {
            format!("{} †", r.name)
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} |",
            r.root_jobs,
            r.lost,
            short(r.root_p50_ms),
            short(r.root_p95_ms),
            short(r.ideal_p95_ms),
            short(r.spi_p95_ms),
            short(r.cycle_spi_p95_ms),
            r.boots_per_job
                .map_or_else(|| "-".into(), |b| format!("{b:.3}")),
            r.violations,
            mark(r.targets.no_lost),
            mark(r.targets.spi_p95),
            mark(r.targets.root_p95),
            mark(r.targets.boots),
            r.targets.stretch_p50.map_or("-", mark),
        );
    }
    out.push('\n');
    for r in rows.iter().filter(|r| !r.reset_keys.is_empty()) {
        let _ = writeln!(
            out,
            "† {}: replayed with the shipped defaults instead of its {}",
            r.name,
            r.reset_keys.join(", ")
        );
    }
    let met = rows.iter().filter(|r| r.targets.all_met()).count();
    let violations: u64 = rows.iter().map(|r| r.violations).sum();
    let _ = writeln!(
        out,
        "{} traces: every target met on {met}, missed on {}; {violations} invariant violations",
        rows.len(),
        rows.len() - met
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tuned_trace_is_replayed_with_the_shipped_defaults() {
        let mut t = Shape::Trickle.trace(1);
        assert!(with_shipped_defaults(&t).1.is_empty());
        t.scheduler.policy = "demand".into();
        assert!(
            with_shipped_defaults(&t).1.is_empty(),
            "the policy is not a tuning"
        );
        t.scheduler.busy_recheck = std::time::Duration::from_secs(5);
        t.sim.demand_poll = std::time::Duration::ZERO;
        let (shipped, reset) = with_shipped_defaults(&t);
        assert_eq!(reset, ["scheduler.busy_recheck", "sim.demand_poll"]);
        assert_eq!(
            shipped.scheduler.busy_recheck,
            SchedulerSection::default().busy_recheck
        );
    }

    #[test]
    fn a_row_checks_the_targets_and_the_table_marks_them() {
        let entry = Entry {
            name: "trickle@1".into(),
            trace: Shape::Trickle.trace(1),
        };
        let r = row(&entry);
        assert_eq!((r.root_jobs, r.lost, r.violations), (18, 0, 0));
        assert_eq!(r.ideal_p50_ms, Some(0));
        assert!(r.targets.stretch_p50.is_some());
        let text = table(&[r]);
        assert!(text.contains("| trickle@1 | 18 | 0 |"), "{text}");
        assert!(text.contains("1 traces: every target met on"), "{text}");
    }

    #[test]
    fn short_durations() {
        assert_eq!(short(None), "-");
        assert_eq!(short(Some(999)), "0s");
        assert_eq!(short(Some(185_000)), "3m05s");
        assert_eq!(short(Some(5_100_000)), "1h25m");
    }
}
