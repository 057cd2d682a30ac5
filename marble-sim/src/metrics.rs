//! What a simulation measured: per-team job waits, boots, idle VM time, grants and refusals,
//! violations; collected during the run and rendered as an aligned table or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::invariants::Violations;

/// Counters for one team while the simulation runs.
#[derive(Debug, Clone, Default)]
pub struct TeamStats {
    /// Jobs that arrived.
    pub arrived: u64,
    /// Jobs that started.
    pub started: u64,
    /// Jobs that ran to their end.
    pub completed: u64,
    /// Jobs killed by a stop.
    pub interrupted: u64,
    /// Wait (arrival to start) of every started job, ms.
    pub waits: Vec<u64>,
    /// Started jobs whose VM began booting only after they arrived (the whole boot is in
    /// their wait).
    pub cold_starts: u64,
}

/// Per-team results.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TeamReport {
    /// Jobs that arrived.
    pub arrived: u64,
    /// Jobs that started.
    pub started: u64,
    /// Jobs that ran to their end.
    pub completed: u64,
    /// Jobs killed by a stop.
    pub interrupted: u64,
    /// Jobs still running when the simulation ended.
    pub running_at_end: u64,
    /// Jobs that never started.
    pub never_started: u64,
    /// Median wait of started jobs, ms.
    pub wait_p50_ms: Option<u64>,
    /// 95th percentile wait of started jobs, ms.
    pub wait_p95_ms: Option<u64>,
    /// Longest wait of a started job, ms.
    pub wait_max_ms: Option<u64>,
    /// Longest wait of a job that never started (until the end), ms.
    pub longest_unstarted_ms: Option<u64>,
    /// Longest time the team had waiting jobs while none of its VMs was on the host, ms
    /// (compare with `scheduler.fairness_bound`).
    pub longest_starved_ms: u64,
    /// Started jobs whose VM began booting only after they arrived.
    pub cold_starts: u64,
    /// Every started job's wait, ascending, ms (for `compare`'s budget; not in the JSON).
    #[serde(skip)]
    pub waits_ms: Vec<u64>,
}

impl TeamReport {
    /// Summarise `stats`; `unstarted` holds the waits so far of jobs that never started.
    pub fn new(
        stats: &TeamStats,
        running_at_end: u64,
        unstarted: &[u64],
        longest_starved_ms: u64,
    ) -> Self {
        let mut waits = stats.waits.clone();
        waits.sort_unstable();
        Self {
            arrived: stats.arrived,
            started: stats.started,
            completed: stats.completed,
            interrupted: stats.interrupted,
            running_at_end,
            never_started: unstarted.len() as u64,
            wait_p50_ms: percentile(&waits, 50),
            wait_p95_ms: percentile(&waits, 95),
            wait_max_ms: waits.last().copied(),
            longest_unstarted_ms: unstarted.iter().copied().max(),
            longest_starved_ms,
            cold_starts: stats.cold_starts,
            waits_ms: waits,
        }
    }
}

/// How many of the ascending `waits` exceed `bar_ms`.
pub fn count_above(waits: &[u64], bar_ms: u64) -> u64 {
    (waits.len() - waits.partition_point(|w| *w <= bar_ms)) as u64
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: u32) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (n * p as usize).div_ceil(100).clamp(1, n);
    sorted.get(rank - 1).copied()
}

/// A ratio rounded to three decimals (so the JSON is identical between runs); `None` when
/// the denominator is zero.
pub fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| ((num as f64 / den as f64) * 1000.0).round() / 1000.0)
}

/// Percentiles of a latency sample.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Latency {
    /// Sample size.
    pub count: u64,
    /// Median, ms.
    pub p50_ms: Option<u64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<u64>,
    /// Largest, ms.
    pub max_ms: Option<u64>,
}

impl Latency {
    /// Summarise a sample.
    pub fn of(sample: &[u64]) -> Self {
        let mut v = sample.to_vec();
        v.sort_unstable();
        Self {
            count: v.len() as u64,
            p50_ms: percentile(&v, 50),
            p95_ms: percentile(&v, 95),
            max_ms: v.last().copied(),
        }
    }
}

/// One host of the run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HostReport {
    /// Host name (its VMs' prefix).
    pub name: String,
    /// Its VMs.
    pub vms: usize,
    /// Its capacity.
    pub capacity: u32,
    /// Starts that powered one of its stopped VMs on.
    pub vm_boots: u64,
}

/// Everything a run measured. Serialised as the `--json` output.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Scheduler policy.
    pub policy: String,
    /// Seed in force.
    pub seed: u64,
    /// Virtual time simulated, ms.
    pub simulated_ms: u64,
    /// VMs on all hosts.
    pub vms: usize,
    /// Capacity of all hosts together.
    pub capacity: u32,
    /// Per host.
    pub hosts: Vec<HostReport>,
    /// ROOT VM boots per ROOT job that arrived.
    pub root_boots_per_job: Option<f64>,
    /// VM boots (both teams) per job (both teams) that arrived.
    pub boots_per_job: Option<f64>,
    /// SPI grant latency: per build that was granted a slot, from its first `request-slot`
    /// (or the granted request's build's, if earlier: the node was asked for since then) to
    /// the grant (refusals and retries in between count).
    pub spi_grant_latency: Latency,
    /// Per team: `root`, `spi`.
    pub teams: BTreeMap<&'static str, TeamReport>,
    /// Starts that powered a stopped VM on.
    pub vm_boots: u64,
    /// Of those, ROOT VMs.
    pub root_boots: u64,
    /// ROOT boots whose runner took no job (stopped unused, or still waiting at the end):
    /// the cost of warm runners and of boots another host's runner beat to the job.
    pub root_boots_unused: u64,
    /// Boots whose guest never became ready (injected).
    pub boot_failures: u64,
    /// Resumes of suspended VMs.
    pub resumes: u64,
    /// Time VMs were running without a job, in VM-minutes.
    pub idle_vm_minutes: f64,
    /// Operations the scheduler ran, by action.
    pub ops: BTreeMap<&'static str, u64>,
    /// `request-slot` calls sent.
    pub slot_requests: u64,
    /// Launches of a node the hosts asked Jenkins for (`launch_any_node_after`), whether
    /// or not Jenkins ran the start script (it does not for a node connected or connecting).
    pub jenkins_launches: u64,
    /// Slots granted.
    pub grants: u64,
    /// Refusals by error kind.
    pub refusals: BTreeMap<String, u64>,
    /// Requests not answered within their bound (the client gave up).
    pub unanswered_requests: u64,
    /// Of those, requests that waited while an operation with an injected hang was in
    /// flight (not violations: the daemon bounds operations with the prlctl timeouts).
    pub unanswered_under_hang: u64,
    /// Requests still waiting when the simulation ended (within their bound).
    pub pending_requests_at_end: u64,
    /// Replies that came after the client gave up.
    pub late_replies: u64,
    /// Jobs killed because they started after the idle probe that preceded a stop.
    pub probe_stop_race_interruptions: u64,
    /// Invariant violations.
    pub violations: Violations,
    /// Scheduler inputs handled.
    pub steps: u64,
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
    }

    /// The report as an aligned, human-readable table.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "marble-sim: policy {}, seed {}, {} simulated, {} host(s), {} VMs, capacity {}",
            self.policy,
            self.seed,
            fmt_ms(self.simulated_ms),
            self.hosts.len(),
            self.vms,
            self.capacity
        );
        let _ = writeln!(out);
        self.team_table(&mut out);
        self.boot_lines(&mut out);
        self.request_lines(&mut out);
        out
    }

    /// The per-team table: arrivals, starts, waits, starvation.
    fn team_table(&self, out: &mut String) {
        let teams: Vec<(&str, &TeamReport)> = self.teams.iter().map(|(k, v)| (*k, v)).collect();
        let _ = write!(out, "{:<22}", "");
        for (name, _) in &teams {
            let _ = write!(out, "{:>14}", name.to_uppercase());
        }
        let _ = writeln!(out);
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), fmt_ms);
        let rows: [(&str, Cell<'_>); 11] = [
            ("jobs arrived", &|t| t.arrived.to_string()),
            ("jobs started", &|t| t.started.to_string()),
            ("jobs completed", &|t| t.completed.to_string()),
            ("jobs interrupted", &|t| t.interrupted.to_string()),
            ("running at end", &|t| t.running_at_end.to_string()),
            ("never started", &|t| t.never_started.to_string()),
            ("wait p50", &|t| opt(t.wait_p50_ms)),
            ("wait p95", &|t| opt(t.wait_p95_ms)),
            ("wait max", &|t| opt(t.wait_max_ms)),
            ("longest unstarted", &|t| opt(t.longest_unstarted_ms)),
            ("longest starved", &|t| fmt_ms(t.longest_starved_ms)),
        ];
        for (label, cell) in rows {
            let _ = write!(out, "{label:<22}");
            for (_, t) in &teams {
                let _ = write!(out, "{:>14}", cell(t));
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out);
    }

    /// Boots, resumes, idle time and operations.
    fn boot_lines(&self, out: &mut String) {
        let kv = |map: &mut String, label: &str, value: String| {
            let _ = writeln!(map, "{label:<22}{value}");
        };
        let per_job = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.3}"));
        kv(
            out,
            "VM boots",
            format!(
                "{} ({} ROOT, {} of them served no job)",
                self.vm_boots, self.root_boots, self.root_boots_unused
            ),
        );
        kv(
            out,
            "boots per job",
            format!(
                "ROOT {}, all {}",
                per_job(self.root_boots_per_job),
                per_job(self.boots_per_job)
            ),
        );
        if self.hosts.len() > 1 {
            let per_host: Vec<String> = self
                .hosts
                .iter()
                .map(|h| format!("{} {}", h.name, h.vm_boots))
                .collect();
            kv(out, "boots per host", per_host.join(", "));
        }
        kv(out, "boot failures", self.boot_failures.to_string());
        kv(out, "resumes", self.resumes.to_string());
        kv(
            out,
            "idle VM-minutes",
            format!("{:.1}", self.idle_vm_minutes),
        );
        kv(out, "operations", join_counts(&self.ops));
    }

    /// Slot requests and their answers, races, invariant violations and steps.
    fn request_lines(&self, out: &mut String) {
        let kv = |map: &mut String, label: &str, value: String| {
            let _ = writeln!(map, "{label:<22}{value}");
        };
        kv(out, "slot requests", self.slot_requests.to_string());
        kv(
            out,
            "node launches asked",
            self.jenkins_launches.to_string(),
        );
        kv(out, "grants", self.grants.to_string());
        let l = &self.spi_grant_latency;
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), fmt_ms);
        kv(
            out,
            "SPI grant latency",
            format!(
                "p50 {}, p95 {}, max {} ({} builds)",
                opt(l.p50_ms),
                opt(l.p95_ms),
                opt(l.max_ms),
                l.count
            ),
        );
        kv(out, "refusals", join_counts(&self.refusals));
        kv(
            out,
            "unanswered requests",
            format!(
                "{} ({} behind a hung operation)",
                self.unanswered_requests, self.unanswered_under_hang
            ),
        );
        kv(
            out,
            "pending at end",
            self.pending_requests_at_end.to_string(),
        );
        kv(out, "late replies", self.late_replies.to_string());
        kv(
            out,
            "probe→stop race",
            format!("{} job(s) interrupted", self.probe_stop_race_interruptions),
        );
        kv(
            out,
            "invariant violations",
            if self.violations.is_empty() {
                "0".to_owned()
            } else {
                format!(
                    "{} ({})",
                    self.violations.count,
                    join_counts(&self.violations.by_kind)
                )
            },
        );
        for line in &self.violations.first {
            let _ = writeln!(out, "  - {line}");
        }
        kv(out, "scheduler steps", self.steps.to_string());
    }
}

/// One cell of the per-team table.
type Cell<'a> = &'a dyn Fn(&TeamReport) -> String;

fn join_counts<K: AsRef<str>>(map: &BTreeMap<K, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{} {v}", k.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A duration in ms for people: `1h 2m 3s`, sub-second values as `250ms`.
pub fn fmt_ms(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 95), Some(95));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[1, 2], 50), Some(1));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(fmt_ms(250), "250ms");
        assert_eq!(fmt_ms(3_723_400), "1h 2m 3s");
    }
}
