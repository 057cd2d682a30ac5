//! `marble-sim compare`: policies `cycle` and `demand` on the same trace and seed, side by
//! side — per-team job wait p50/p95/max, boots per job, idle VM-minutes, SPI grant latency —
//! with the ratios and the policy targets of the demand issue checked.

use std::fmt::Write as _;

use serde::Serialize;

use super::engine::{RunOptions, simulate};
use super::metrics::{Report, fmt_ms};
use super::trace::Trace;
use crate::sched::Policy;

/// `demand`'s ROOT wait p95 must be at most this share of `cycle`'s.
pub const TARGET_ROOT_P95_RATIO: f64 = 0.2;
/// `demand` must boot at most this many ROOT VMs per ROOT job.
pub const TARGET_BOOTS_PER_JOB: f64 = 1.1;

/// Both runs and the targets.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Policy `cycle`.
    pub cycle: Report,
    /// Policy `demand`.
    pub demand: Report,
    /// `demand` ROOT wait p95 / `cycle`'s.
    pub root_p95_ratio: Option<f64>,
    /// Target: that ratio ≤ [`TARGET_ROOT_P95_RATIO`].
    pub root_p95_met: bool,
    /// Target: `demand` SPI grant latency p95 ≤ `cycle`'s.
    pub spi_grant_met: bool,
    /// Target: `demand` ROOT boots per job ≤ [`TARGET_BOOTS_PER_JOB`].
    pub boots_per_job_met: bool,
}

/// Run `trace` under both policies.
pub fn compare(trace: &Trace, seed: Option<u64>) -> Comparison {
    let run = |policy| {
        simulate(
            trace,
            RunOptions {
                policy: Some(policy),
                seed,
                log: false,
            },
        )
    };
    let cycle = run(Policy::Cycle);
    let demand = run(Policy::Demand);
    let p95 = |r: &Report| r.teams.get("root").and_then(|t| t.wait_p95_ms);
    let root_p95_ratio = match (p95(&demand), p95(&cycle)) {
        (Some(d), Some(c)) if c > 0 => Some(d as f64 / c as f64),
        _ => None,
    };
    let root_p95_met = root_p95_ratio.is_some_and(|r| r <= TARGET_ROOT_P95_RATIO);
    let spi_grant_met = match (
        demand.spi_grant_latency.p95_ms,
        cycle.spi_grant_latency.p95_ms,
    ) {
        (Some(d), Some(c)) => d <= c,
        (None, _) => true,
        (Some(_), None) => false,
    };
    let boots_per_job_met = demand
        .root_boots_per_job
        .is_some_and(|b| b <= TARGET_BOOTS_PER_JOB);
    Comparison {
        cycle,
        demand,
        root_p95_ratio,
        root_p95_met,
        spi_grant_met,
        boots_per_job_met,
    }
}

impl Comparison {
    /// Neither run violated an invariant.
    pub fn clean(&self) -> bool {
        self.cycle.violations.is_empty() && self.demand.violations.is_empty()
    }

    /// As JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
    }

    /// Side by side.
    pub fn to_table(&self, name: &str) -> String {
        let (c, d) = (&self.cycle, &self.demand);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "marble-sim compare {name}: seed {}, {} simulated, {} host(s), {} VMs",
            c.seed,
            fmt_ms(c.simulated_ms),
            c.hosts.len(),
            c.vms
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<28}{:>14}{:>14}{:>16}",
            "", "cycle", "demand", "demand/cycle"
        );
        let dur = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), fmt_ms);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
            _ => "-".to_owned(),
        };
        let as_f = |v: Option<u64>| v.map(|x| x as f64);
        let mut row = |label: &str, a: String, b: String, r: String| {
            let _ = writeln!(out, "{label:<28}{a:>14}{b:>14}{r:>16}");
        };
        for team in ["root", "spi"] {
            let (Some(tc), Some(td)) = (c.teams.get(team), d.teams.get(team)) else {
                continue;
            };
            let up = team.to_uppercase();
            row(
                &format!("{up} jobs started/arrived"),
                format!("{}/{}", tc.started, tc.arrived),
                format!("{}/{}", td.started, td.arrived),
                String::new(),
            );
            for (what, a, b) in [
                ("p50", tc.wait_p50_ms, td.wait_p50_ms),
                ("p95", tc.wait_p95_ms, td.wait_p95_ms),
                ("max", tc.wait_max_ms, td.wait_max_ms),
            ] {
                row(
                    &format!("{up} job wait {what}"),
                    dur(a),
                    dur(b),
                    ratio(as_f(b), as_f(a)),
                );
            }
        }
        let (gc, gd) = (&c.spi_grant_latency, &d.spi_grant_latency);
        for (what, a, b) in [
            ("p50", gc.p50_ms, gd.p50_ms),
            ("p95", gc.p95_ms, gd.p95_ms),
            ("max", gc.max_ms, gd.max_ms),
        ] {
            row(
                &format!("SPI grant latency {what}"),
                dur(a),
                dur(b),
                ratio(as_f(b), as_f(a)),
            );
        }
        let f3 = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
        row(
            "ROOT boots per ROOT job",
            f3(c.root_boots_per_job),
            f3(d.root_boots_per_job),
            ratio(d.root_boots_per_job, c.root_boots_per_job),
        );
        row(
            "boots per job (all)",
            f3(c.boots_per_job),
            f3(d.boots_per_job),
            ratio(d.boots_per_job, c.boots_per_job),
        );
        row(
            "VM boots",
            c.vm_boots.to_string(),
            d.vm_boots.to_string(),
            ratio(Some(d.vm_boots as f64), Some(c.vm_boots as f64)),
        );
        row(
            "idle VM-minutes",
            format!("{:.1}", c.idle_vm_minutes),
            format!("{:.1}", d.idle_vm_minutes),
            ratio(Some(d.idle_vm_minutes), Some(c.idle_vm_minutes)),
        );
        row(
            "ROOT jobs interrupted",
            c.teams.get("root").map_or(0, |t| t.interrupted).to_string(),
            d.teams.get("root").map_or(0, |t| t.interrupted).to_string(),
            String::new(),
        );
        row(
            "invariant violations",
            c.violations.count.to_string(),
            d.violations.count.to_string(),
            String::new(),
        );
        let _ = writeln!(out);
        let verdict = |met: bool| if met { "met" } else { "NOT met" };
        let _ = writeln!(
            out,
            "target ROOT wait p95 <= {TARGET_ROOT_P95_RATIO} x cycle: {} (ratio {})",
            verdict(self.root_p95_met),
            f3(self.root_p95_ratio)
        );
        let _ = writeln!(
            out,
            "target SPI grant latency p95 no worse than cycle: {}",
            verdict(self.spi_grant_met)
        );
        let _ = writeln!(
            out,
            "target ROOT boots per job <= {TARGET_BOOTS_PER_JOB}: {}",
            verdict(self.boots_per_job_met)
        );
        out
    }
}
