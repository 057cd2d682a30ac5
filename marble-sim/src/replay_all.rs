//! `marble-sim replay-all`: every committed trace of a directory and fresh seeds of every
//! load shape ([`super::shapes`]) and of the standard trace ([`super::standard`]) replayed under `cycle` and `demand` with the shipped
//! scheduler defaults (or [`Settings`] over them, for an opt-in row), next to the ideal reference ([`super::compare`], [`super::ideal`]),
//! summarised as one table with a ✔/✘ per target of issue 17. Documented in
//! `docs/SIMULATOR.md` ("Replay all"); figures in `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use marbled::config::SchedulerSection;
use serde::Serialize;

use super::compare::{Comparison, TARGET_BOOTS_PER_JOB, compare};
use super::metrics::Report;
use super::settings::Settings;
use super::shapes::Shape;
use super::standard::standard_trace;
use super::trace::{Trace, TraceError};

pub use super::miss_why::{LostWhy, RootP95Miss};

/// ROOT wait p95 may exceed the ROOT + SPI ideal reference's p95 by this much, ms.
pub const ROOT_P95_SLACK_MS: u64 = 60_000;
/// Stretch target: ROOT wait p50 at most this where the ideal p50 is 0, ms.
pub const STRETCH_P50_MS: u64 = 10_000;
/// Hosts idle more than this share of the time under ideal.both: the issue lets idle-host
/// warmth take ROOT boots per job above 1.1 there.
pub const IDLE_HOSTS_SHARE: f64 = 0.8;

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
    /// The settings applied over the shipped defaults (`scheduler.jobs_per_boot = 2`);
    /// empty: the shipped defaults.
    pub settings: Vec<String>,
    /// `[scheduler]` or `[sim]` demand keys the trace set, reset to the shipped defaults
    /// (with the settings).
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
    /// The boot-bound reference's ROOT p95, ms.
    pub boot_bound_p95_ms: Option<u64>,
    /// Why the ROOT p95 target was missed (`None`: met).
    pub root_p95_miss: Option<RootP95Miss>,
    /// Jobs (ROOT + SPI) the boot-bound reference starts within the trace that `demand`
    /// never started: the loss no start overhead explains.
    pub lost_boot_bound: u64,
    /// Jobs (ROOT + SPI) the fault-bound reference starts within the trace that `demand`
    /// never started; `None`: the trace has no charged fault.
    pub lost_fault_bound: Option<u64>,
    /// What explains `lost` (`None`: nothing lost).
    pub lost_why: Option<LostWhy>,
    /// The fault-bound reference's ROOT p95, ms (`None`: no charged fault, or no start).
    pub fault_bound_p95_ms: Option<u64>,
    /// Share of slot time ideal.both leaves idle, 0–1.
    pub host_idle_share: Option<f64>,
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
    with_settings(trace, &Settings::default())
}

/// `trace` with `settings` over the shipped scheduler and demand defaults, and the keys the
/// trace tuned (set away from the shipped default) that the replay does not use.
pub fn with_settings(trace: &Trace, settings: &Settings) -> (Trace, Vec<String>) {
    let base = settings.base();
    let mut out = trace.clone();
    let mut reset = Vec::new();
    // `compare` sets the policy of each run; the trace's is not a tuning.
    let policy = trace.scheduler.policy.clone();
    let used = SchedulerSection {
        policy: policy.clone(),
        ..base.scheduler.clone()
    };
    let shipped = SchedulerSection {
        policy,
        ..SchedulerSection::default()
    };
    if let (
        Ok(toml::Value::Table(mine)),
        Ok(toml::Value::Table(def)),
        Ok(toml::Value::Table(new)),
    ) = (
        toml::Value::try_from(&trace.scheduler),
        toml::Value::try_from(&shipped),
        toml::Value::try_from(&used),
    ) {
        for (key, value) in &mine {
            if def.get(key) != Some(value) && new.get(key) != Some(value) {
                reset.push(format!("scheduler.{key}"));
            }
        }
    }
    out.scheduler = used;
    let def = Trace::default().sim;
    let new = &base.sim;
    let sim = &mut out.sim;
    take_sim_key(
        "sim.demand_poll",
        &mut sim.demand_poll,
        def.demand_poll,
        new.demand_poll,
        &mut reset,
    );
    take_sim_key(
        "sim.demand_watch",
        &mut sim.demand_watch,
        def.demand_watch,
        new.demand_watch,
        &mut reset,
    );
    take_sim_key(
        "sim.jenkins_launch",
        &mut sim.jenkins_launch,
        def.jenkins_launch,
        new.jenkins_launch,
        &mut reset,
    );
    (out, reset)
}

/// A `[sim]` key a replay sets (`new`: the default or the `--set` value), noted in `reset`
/// when the trace had tuned it to something else.
fn take_sim_key<T: PartialEq + Copy>(
    key: &str,
    mine: &mut T,
    def: T,
    new: T,
    reset: &mut Vec<String>,
) {
    if *mine != def && *mine != new {
        reset.push(key.into());
    }
    *mine = new;
}

fn unstarted(started_ideal: u64, report: &Report, team: &str) -> u64 {
    let started = report.teams.get(team).map_or(0, |t| t.started);
    started_ideal.saturating_sub(started)
}

/// Replay one trace (with `settings` over the shipped defaults) and check the targets.
pub fn row(entry: &Entry, settings: &Settings) -> Row {
    let (trace, reset_keys) = with_settings(&entry.trace, settings);
    let c: Comparison = compare(&trace, None);
    let root = c.demand.teams.get("root");
    let ideal = &c.ideal.both;
    let lost = unstarted(ideal.root.started, &c.demand, "root")
        + unstarted(ideal.spi.started, &c.demand, "spi");
    let root_p50_ms = root.and_then(|t| t.wait_p50_ms);
    let root_p95_ms = root.and_then(|t| t.wait_p95_ms);
    let root_p95 = match (root_p95_ms, ideal.root.wait_p95_ms) {
        (Some(d), Some(i)) => d <= i + ROOT_P95_SLACK_MS,
        (None, _) => true,
        (Some(_), None) => false,
    };
    let bound = &c.ideal.boot_bound;
    let fault = c.ideal.fault_bound.as_ref();
    let root_p95_miss = root_p95_ms.filter(|_| !root_p95).map(|d| {
        RootP95Miss::classify(
            d,
            ideal.root.wait_p95_ms,
            bound.root.wait_p95_ms,
            fault.map(|f| f.root.wait_p95_ms),
        )
    });
    let lost_boot_bound = unstarted(bound.root.started, &c.demand, "root")
        + unstarted(bound.spi.started, &c.demand, "spi");
    let lost_fault_bound = fault.map(|f| {
        unstarted(f.root.started, &c.demand, "root") + unstarted(f.spi.started, &c.demand, "spi")
    });
    let tight = fault.unwrap_or(bound);
    let started: u64 = c.demand.teams.values().map(|t| t.started).sum();
    let lost_why = (lost > 0).then(|| {
        LostWhy::classify(
            lost_boot_bound,
            lost_fault_bound,
            started,
            tight.root.started + tight.spi.started,
        )
    });
    let stretch_p50 = (ideal.root.wait_p50_ms == Some(0))
        .then(|| root_p50_ms.is_some_and(|p| p <= STRETCH_P50_MS));
    let boots = c
        .demand
        .root_boots_per_job
        .is_none_or(|b| b <= TARGET_BOOTS_PER_JOB);
    Row {
        name: entry.name.clone(),
        settings: settings.describe(),
        reset_keys,
        root_jobs: root.map_or(0, |t| t.arrived),
        lost,
        root_p50_ms,
        root_p95_ms,
        ideal_p50_ms: ideal.root.wait_p50_ms,
        ideal_p95_ms: ideal.root.wait_p95_ms,
        boot_bound_p95_ms: bound.root.wait_p95_ms,
        root_p95_miss,
        lost_boot_bound,
        lost_fault_bound,
        lost_why,
        fault_bound_p95_ms: fault.and_then(|f| f.root.wait_p95_ms),
        host_idle_share: c.ideal.host_idle_share,
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

/// Days and hosts of a fresh standard trace (`standard@<seed>`): those of the committed
/// `docs/traces/standard.toml` (`marble-sim generate --days 7 --seed 1 --hosts 8`).
const STANDARD_DAYS: u32 = 7;
const STANDARD_HOSTS: u32 = 8;

/// The `*.toml` traces of `dir`, by name, then `seeds` fresh instances of every shape and of
/// the standard trace (seeds `first_seed..first_seed + seeds`). The committed standard trace
/// is one seed of the daily curve; its targets are the first, so fresh weeks of it
/// are replayed too (before, only the shapes were).
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
    for seed in first_seed..first_seed.saturating_add(seeds) {
        out.push(Entry {
            name: format!("standard@{seed}"),
            trace: standard_trace(STANDARD_DAYS, seed, STANDARD_HOSTS),
        });
    }
    Ok(out)
}

/// Replay every entry with `settings` on `threads` threads; rows in the entries' order.
pub fn replay(entries: &[Entry], settings: &Settings, threads: usize) -> Vec<Row> {
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
                    let r = row(entry, settings);
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
pub(crate) fn short(ms: Option<u64>) -> String {
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

impl Row {
    /// Hosts sit idle more than [`IDLE_HOSTS_SHARE`] of the time under ideal.both.
    pub fn idle_hosts(&self) -> bool {
        self.host_idle_share.is_some_and(|i| i > IDLE_HOSTS_SHARE)
    }

    /// The ROOT p95 target's cell: ✔, or ✘ with the short reason.
    fn root_p95_cell(&self) -> String {
        match self.root_p95_miss {
            None if self.targets.root_p95 => mark(true).into(),
            None => mark(false).into(),
            Some(RootP95Miss::Infeasible) => "✘ infeasible".into(),
            Some(RootP95Miss::InfeasibleFaults) => "✘ infeasible (faults)".into(),
            Some(
                RootP95Miss::PolicyGap { over_bound_ms } | RootP95Miss::FaultGap { over_bound_ms },
            ) => {
                format!("✘ gap {}", short(Some(over_bound_ms)))
            }
        }
    }

    /// What explains each missed target, in words (empty: nothing missed that has a reason).
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(miss) = self.root_p95_miss {
            // Infeasible says the target is out of reach, not that the policy is at the
            // bound: say how far above it `demand` still is.
            let over = match (miss, self.root_p95_ms, self.boot_bound_p95_ms) {
                (RootP95Miss::Infeasible, Some(d), Some(b)) => {
                    format!(" (demand {} over it)", short(Some(d.saturating_sub(b))))
                }
                (RootP95Miss::InfeasibleFaults, Some(d), _) => {
                    let f = self.fault_bound_p95_ms.unwrap_or(0);
                    format!(" (demand {} over it)", short(Some(d.saturating_sub(f))))
                }
                _ => String::new(),
            };
            notes.push(format!("ROOT p95: {}{over}", miss.reason()));
        }
        if !self.targets.no_lost {
            let faults = self
                .lost_fault_bound
                .map_or_else(String::new, |f| format!(", {f} against the fault bound"));
            let why = match self.lost_why {
                Some(LostWhy::Faults) => " (the injected faults: the fault bound loses as many)",
                Some(LostWhy::Boots) => " (one job per boot: the boot bound loses as many)",
                Some(LostWhy::Order) => {
                    " (the mix, not a stall: demand started as many jobs in all as the bound, \
                     but served one team's later jobs before the other's older ones)"
                }
                Some(LostWhy::Policy) | None => "",
            };
            notes.push(format!(
                "lost: {} against ideal.both, {} against the boot bound{faults}{why}",
                self.lost, self.lost_boot_bound
            ));
        }
        if !self.targets.boots && self.idle_hosts() {
            notes.push(format!(
                "boots/job: hosts idle {} of the time (idle-host warmth may exceed 1.1)",
                percent(self.host_idle_share)
            ));
        }
        notes
    }
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".into(), |s| format!("{:.0} %", s * 100.0))
}

/// The table (Markdown), under a line naming the settings (when there are any), with a line
/// per trace whose keys were reset, a line per trace saying what explains its misses, and a
/// summary.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    // Every row of one replay has the same settings.
    if let Some(settings) = rows.first().map(|r| &r.settings).filter(|s| !s.is_empty()) {
        let _ = writeln!(
            out,
            "Settings over the shipped defaults: {}\n",
            settings.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "| trace | ROOT jobs | lost | lost (boot-bound) | lost (fault-bound) | ROOT p50 \
         | ROOT p95 | ideal.both p95 | boot-bound p95 | SPI grant p95 demand / cycle \
         | ROOT boots/job | host idle | violations | 0 lost | SPI p95 | ROOT p95 | boots \
         | p50 (stretch) |"
    );
    let _ = writeln!(out, "|{}", "---|".repeat(18));
    for r in rows {
        let name = if r.reset_keys.is_empty() {
            r.name.clone()
        } else {
            format!("{} †", r.name)
        };
        let boots = if !r.targets.boots && r.idle_hosts() {
            "✘ idle"
        } else {
            mark(r.targets.boots)
        };
        let no_lost = match r.lost_why {
            Some(why) if !r.targets.no_lost => why.cell(),
            _ => mark(r.targets.no_lost),
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} \
             | {no_lost} | {} | {} | {boots} | {} |",
            r.root_jobs,
            r.lost,
            r.lost_boot_bound,
            r.lost_fault_bound
                .map_or_else(|| "-".into(), |f| f.to_string()),
            short(r.root_p50_ms),
            short(r.root_p95_ms),
            short(r.ideal_p95_ms),
            short(r.boot_bound_p95_ms),
            short(r.spi_p95_ms),
            short(r.cycle_spi_p95_ms),
            r.boots_per_job
                .map_or_else(|| "-".into(), |b| format!("{b:.3}")),
            percent(r.host_idle_share),
            r.violations,
            mark(r.targets.spi_p95),
            r.root_p95_cell(),
            r.targets.stretch_p50.map_or("-", mark),
        );
    }
    out.push('\n');
    for r in rows.iter().filter(|r| !r.reset_keys.is_empty()) {
        let with = if r.settings.is_empty() {
            "the shipped defaults"
        } else {
            "the shipped defaults and the settings"
        };
        let _ = writeln!(
            out,
            "† {}: replayed with {with} instead of its {}",
            r.name,
            r.reset_keys.join(", ")
        );
    }
    for r in rows {
        let notes = r.notes();
        if !notes.is_empty() {
            let _ = writeln!(out, "- {}: {}", r.name, notes.join("; "));
        }
    }
    let met = rows.iter().filter(|r| r.targets.all_met()).count();
    let violations: u64 = rows.iter().map(|r| r.violations).sum();
    let infeasible = rows
        .iter()
        .filter(|r| r.root_p95_miss == Some(RootP95Miss::Infeasible))
        .count();
    let infeasible_faults = rows
        .iter()
        .filter(|r| r.root_p95_miss == Some(RootP95Miss::InfeasibleFaults))
        .count();
    let gaps = rows
        .iter()
        .filter(|r| {
            matches!(
                r.root_p95_miss,
                Some(RootP95Miss::PolicyGap { .. } | RootP95Miss::FaultGap { .. })
            )
        })
        .count();
    let _ = writeln!(
        out,
        "{} traces: every target met on {met}, missed on {}; {violations} invariant violations; \
         ROOT p95 missed on {}: {infeasible} infeasible at one job per boot, \
         {infeasible_faults} infeasible under injected faults, {gaps} policy gap",
        rows.len(),
        rows.len() - met,
        infeasible + infeasible_faults + gaps
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_rows_are_every_shape_and_the_standard_week_at_each_seed() {
        let empty = std::env::temp_dir().join(format!("replay-all-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty).expect("temp dir");
        let entries = entries(&empty, 2, 7).expect("no traces to read");
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names.len(), 2 * (Shape::ALL.len() + 1), "{names:?}");
        assert_eq!(names[names.len() - 2..], ["standard@7", "standard@8"]);
        let standard = &entries[entries.len() - 2].trace;
        assert_eq!(standard.hosts.len(), 8);
        assert_eq!(standard.sim.seed, 7);
        // As replayed: nothing of its scheduler section differs from the shipped defaults.
        assert!(with_shipped_defaults(standard).1.is_empty());
        std::fs::remove_dir_all(&empty).expect("cleanup");
    }

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
    fn settings_apply_over_every_trace_and_the_table_names_them() {
        let settings = Settings::parse(&["scheduler.jobs_per_boot=2"]).expect("valid");
        let mut t = Shape::Trickle.trace(1);
        t.scheduler.warm_linger = std::time::Duration::from_secs(1);
        let (out, reset) = with_settings(&t, &settings);
        assert_eq!(out.scheduler.jobs_per_boot, 2);
        assert_eq!(
            out.scheduler.warm_linger,
            SchedulerSection::default().warm_linger
        );
        assert_eq!(reset, ["scheduler.warm_linger"]);
        // A trace that sets the setting's own value is not reset.
        t.scheduler.jobs_per_boot = 2;
        assert_eq!(with_settings(&t, &settings).1, ["scheduler.warm_linger"]);
        // Without settings, the same key is reset to the shipped default.
        assert_eq!(
            with_shipped_defaults(&t).1,
            ["scheduler.jobs_per_boot", "scheduler.warm_linger"]
        );
        t.scheduler.jobs_per_boot = 3;
        assert_eq!(
            with_settings(&t, &settings).1,
            ["scheduler.jobs_per_boot", "scheduler.warm_linger"]
        );
        t.scheduler.jobs_per_boot = 2;

        let mut r = row_missing(None, 0.5);
        let plain = table(std::slice::from_ref(&r));
        assert!(!plain.contains("Settings over"), "{plain}");
        r.settings = settings.describe();
        r.reset_keys = reset;
        let text = table(&[r]);
        assert!(
            text.starts_with(
                "Settings over the shipped defaults: scheduler.jobs_per_boot = 2\n\n|"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "† t: replayed with the shipped defaults and the settings instead of its \
                 scheduler.warm_linger"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_setting_reaches_the_replay() {
        // Issue 17's quiet trickle: idle-host warmth (on by default) keeps a ready runner on
        // the idle hosts; turned off, every job waits a whole boot.
        let entry = Entry {
            name: "trickle@1".into(),
            trace: Shape::Trickle.trace(1),
        };
        let cold = Settings::parse(&["scheduler.warm_idle_hosts=false"]).expect("valid");
        let shipped = row(&entry, &Settings::default());
        let opted = row(&entry, &cold);
        assert_eq!(opted.settings, ["scheduler.warm_idle_hosts = false"]);
        assert!(shipped.settings.is_empty());
        assert!(
            opted.root_p50_ms > shipped.root_p50_ms,
            "{:?} vs {:?}",
            opted.root_p50_ms,
            shipped.root_p50_ms
        );
    }

    #[test]
    fn a_row_checks_the_targets_and_the_table_marks_them() {
        let entry = Entry {
            name: "trickle@1".into(),
            trace: Shape::Trickle.trace(1),
        };
        let r = row(&entry, &Settings::default());
        assert_eq!((r.root_jobs, r.lost, r.violations), (18, 0, 0));
        assert_eq!(r.ideal_p50_ms, Some(0));
        assert!(r.targets.stretch_p50.is_some());
        // Quiet: the boot bound starts every job the ideal starts, and hosts sit idle.
        assert_eq!(r.lost_boot_bound, 0);
        assert!(r.idle_hosts(), "{:?}", r.host_idle_share);
        assert!(r.boot_bound_p95_ms >= r.ideal_p95_ms);
        let text = table(&[r]);
        assert!(text.contains("| trickle@1 | 18 | 0 | 0 |"), "{text}");
        assert!(text.contains("| boot-bound p95 |"), "{text}");
        assert!(text.contains("1 traces: every target met on"), "{text}");
    }

    #[test]
    fn short_durations() {
        assert_eq!(short(None), "-");
        assert_eq!(short(Some(999)), "0s");
        assert_eq!(short(Some(185_000)), "3m05s");
        assert_eq!(short(Some(5_100_000)), "1h25m");
    }

    fn row_missing(miss: Option<RootP95Miss>, idle: f64) -> Row {
        Row {
            name: "t".into(),
            settings: Vec::new(),
            reset_keys: Vec::new(),
            root_jobs: 10,
            lost: 2,
            root_p50_ms: Some(0),
            root_p95_ms: Some(600_000),
            ideal_p50_ms: Some(0),
            ideal_p95_ms: Some(0),
            boot_bound_p95_ms: Some(120_000),
            root_p95_miss: miss,
            lost_boot_bound: 0,
            lost_fault_bound: None,
            lost_why: None,
            fault_bound_p95_ms: None,
            host_idle_share: Some(idle),
            spi_p95_ms: None,
            cycle_spi_p95_ms: None,
            boots_per_job: Some(1.5),
            violations: 0,
            targets: Targets {
                no_lost: false,
                spi_p95: true,
                root_p95: miss.is_none(),
                boots: false,
                stretch_p50: Some(true),
            },
        }
    }

    #[test]
    fn the_table_explains_each_miss() {
        let text = table(&[row_missing(Some(RootP95Miss::Infeasible), 0.9)]);
        assert!(text.contains("| ✘ infeasible |"), "{text}");
        assert!(text.contains("| ✘ idle |"), "{text}");
        assert!(text.contains("| 90 % |"), "{text}");
        assert!(
            text.contains(
                "- t: ROOT p95: infeasible: boot-bound p95 already exceeds ideal.both p95 + 60 s \
                 (demand 8m00s over it); lost: 2 against ideal.both, 0 against the boot bound; boots/job: hosts idle 90 %"
            ),
            "{text}"
        );
        assert!(
            text.contains("ROOT p95 missed on 1: 1 infeasible"),
            "{text}"
        );
        let gap = RootP95Miss::PolicyGap {
            over_bound_ms: 480_000,
        };
        let text = table(&[row_missing(Some(gap), 0.5)]);
        assert!(text.contains("| ✘ gap 8m00s |"), "{text}");
        assert!(
            !text.contains("✘ idle"),
            "busy hosts: no excuse for boots\n{text}"
        );
        assert!(
            text.contains("ROOT p95 missed on 1: 0 infeasible"),
            "{text}"
        );
    }

    #[test]
    fn a_loss_is_told_apart_by_faults_boots_order_or_policy() {
        // The tightest bound loses as many: faults where faults are charged, else boots.
        assert_eq!(LostWhy::classify(3, Some(0), 5, 9), LostWhy::Faults);
        assert_eq!(LostWhy::classify(0, None, 5, 9), LostWhy::Boots);
        // The boot bound alone loses as many: boots, though faults are charged too.
        assert_eq!(LostWhy::classify(0, Some(0), 5, 9), LostWhy::Boots);
        // demand started as many in all as the bound, fewer of one team: the mix.
        assert_eq!(LostWhy::classify(7, None, 12, 12), LostWhy::Order);
        assert_eq!(LostWhy::classify(9, Some(7), 12, 11), LostWhy::Order);
        // Fewer in all: nothing excuses it.
        assert_eq!(LostWhy::classify(4, Some(2), 10, 12), LostWhy::Policy);

        let mut r = row_missing(Some(RootP95Miss::InfeasibleFaults), 0.5);
        r.lost_fault_bound = Some(0);
        r.lost_why = Some(LostWhy::Faults);
        r.fault_bound_p95_ms = Some(300_000);
        let text = table(&[r]);
        assert!(
            text.contains("| 2 | 0 | 0 |"),
            "lost, boot-bound, fault-bound\n{text}"
        );
        assert!(text.contains("| ✘ faults |"), "{text}");
        assert!(text.contains("| ✘ infeasible (faults) |"), "{text}");
        assert!(
            text.contains("(demand 5m00s over it)")
                && text.contains("0 against the fault bound (the injected faults"),
            "{text}"
        );
        assert!(
            text.contains("0 infeasible at one job per boot, 1 infeasible under injected faults"),
            "{text}"
        );
        let mut r = row_missing(
            Some(RootP95Miss::FaultGap {
                over_bound_ms: 60_000,
            }),
            0.5,
        );
        r.lost_why = Some(LostWhy::Order);
        let text = table(&[r]);
        assert!(text.contains("| ✘ order |"), "{text}");
        assert!(text.contains("| ✘ gap 1m00s |"), "{text}");
        assert!(
            text.contains("policy gap: 1m00s over the fault bound"),
            "{text}"
        );
        assert!(text.contains("1 policy gap"), "{text}");
    }
}
