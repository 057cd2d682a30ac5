//! `marble-sim import`: a trace from a repository's real GitHub Actions history and a
//! Jenkins build history, so an operator can replay their own last month. This module owns
//! the API shapes it reads (GitHub's workflow-run and job objects, Jenkins' `builds[…]`
//! tree), the rules that turn them into `[[root_jobs]]` and `[[jenkins]]`, and the fleet
//! taken from the standard trace or another trace; [`fetch`] (feature `import`) pages them
//! from the APIs with the daemon's HTTP clients. Documented in `docs/SIMULATOR.md`
//! ("Replaying real history").

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::metrics::percentile;
use super::standard::standard_trace;
use super::trace::{JenkinsSpec, RootJobSpec, Trace};

#[cfg(feature = "import")]
pub mod fetch;

/// One page of `GET /repos/{o}/{r}/actions/runs` (only what the import reads).
#[derive(Debug, Clone, Deserialize)]
pub struct RunsPage {
    /// Runs matching the query (all pages).
    pub total_count: u64,
    /// This page's runs.
    pub workflow_runs: Vec<RunRef>,
}

/// A workflow run: its id.
#[derive(Debug, Clone, Deserialize)]
pub struct RunRef {
    /// Run id.
    pub id: u64,
}

/// One page of `GET /repos/{o}/{r}/actions/runs/{id}/jobs`.
#[derive(Debug, Clone, Deserialize)]
pub struct JobsPage {
    /// Jobs of the run (all pages).
    pub total_count: u64,
    /// This page's jobs.
    pub jobs: Vec<GhJob>,
}

/// A workflow job as GitHub returns it (the fields the import reads).
#[derive(Debug, Clone, Deserialize)]
pub struct GhJob {
    /// Job id.
    pub id: u64,
    /// `queued`, `in_progress`, `completed`, …
    pub status: String,
    /// `success`, `failure`, `cancelled`, `skipped`, … (`null` until completed).
    #[serde(default)]
    pub conclusion: Option<String>,
    /// `runs-on` labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// When the job was queued.
    #[serde(default)]
    pub created_at: Option<String>,
    /// When a runner took it.
    #[serde(default)]
    pub started_at: Option<String>,
    /// When it ended.
    #[serde(default)]
    pub completed_at: Option<String>,
    /// The runner that ran it; `null` when none ever did.
    #[serde(default)]
    pub runner_name: Option<String>,
}

/// `GET /job/X/api/json?tree=builds[…]`.
#[derive(Debug, Clone, Deserialize)]
pub struct JenkinsJob {
    /// The job's builds, newest first.
    #[serde(default)]
    pub builds: Vec<JenkinsBuild>,
}

/// One Jenkins build.
#[derive(Debug, Clone, Deserialize)]
pub struct JenkinsBuild {
    /// Build number.
    pub number: u64,
    /// Start, unix ms.
    pub timestamp: u64,
    /// Run time, ms (0 while building).
    pub duration: u64,
    /// `SUCCESS`, `FAILURE`, `ABORTED`, …; `null` while building.
    #[serde(default)]
    pub result: Option<String>,
    /// The node it ran on (`""`: the built-in node).
    #[serde(default, rename = "builtOn")]
    pub built_on: Option<String>,
    /// Build actions; the Metrics plugin's carries `queuingDurationMillis`.
    #[serde(default)]
    pub actions: Vec<serde_json::Value>,
}

impl JenkinsBuild {
    /// Time in the queue, when the Metrics plugin reports it.
    pub fn queued_ms(&self) -> u64 {
        self.actions
            .iter()
            .find_map(|a| {
                a.get("queuingDurationMillis")
                    .and_then(serde_json::Value::as_u64)
            })
            .unwrap_or(0)
    }
}

/// The imported period, unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start (offset 0 of the trace).
    pub since_ms: u64,
    /// End (the trace's duration).
    pub until_ms: u64,
}

/// A bad date or timestamp.
#[derive(Debug, thiserror::Error)]
#[error("invalid time {value:?}: expected YYYY-MM-DD or RFC 3339 (2026-11-01T00:00:00Z)")]
pub struct BadTime {
    /// What was given.
    pub value: String,
}

/// Unix ms of `YYYY-MM-DD` (00:00 UTC) or an RFC 3339 time.
pub fn parse_time(value: &str) -> Result<u64, BadTime> {
    let full = if value.len() == 10 {
        format!("{value}T00:00:00Z")
    } else {
        value.to_owned()
    };
    let bad = || BadTime {
        value: value.to_owned(),
    };
    let t = humantime::parse_rfc3339_weak(full.trim_end_matches('Z')).map_err(|_| bad())?;
    let ms = t.duration_since(UNIX_EPOCH).map_err(|_| bad())?.as_millis();
    u64::try_from(ms).map_err(|_| bad())
}

/// RFC 3339 (seconds, UTC) of unix ms.
pub fn format_time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// What the import kept and left out.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// ROOT jobs written.
    pub root_jobs: u64,
    /// Jobs without every required label (GitHub-hosted runners, other pools).
    pub other_labels: u64,
    /// Jobs skipped by their workflow (never needed a runner).
    pub skipped: u64,
    /// Jobs cancelled before a runner took them (no runner ever ran them).
    pub never_ran: u64,
    /// Jobs not completed when imported.
    pub unfinished: u64,
    /// Jobs or builds queued outside the window.
    pub outside: u64,
    /// Of the written jobs, those that ended `cancelled` after starting.
    pub cancelled_after_start: u64,
    /// Real ROOT waits (queued → started) of the written jobs: p50, p95, ms.
    pub real_wait_p50_ms: Option<u64>,
    /// See `real_wait_p50_ms`.
    pub real_wait_p95_ms: Option<u64>,
    /// Jenkins builds written.
    pub jenkins_builds: u64,
    /// Of them, builds whose node is not an SPI VM of the fleet (written as `any`).
    pub jenkins_any: u64,
    /// Builds still running when imported.
    pub jenkins_building: u64,
}

fn iso_ms(v: Option<&str>) -> Option<u64> {
    v.and_then(|s| parse_time(s).ok())
}

/// The `[[root_jobs]]` of `jobs`: queued at `created_at` (from the window's start), running
/// `completed_at − started_at`; only jobs carrying every `require`d label (case-insensitive)
/// that a runner ran (cancelled ones included, with the time they ran) and that completed.
pub fn root_jobs(
    jobs: &[GhJob],
    window: Window,
    require: &[String],
    summary: &mut Summary,
) -> Vec<RootJobSpec> {
    let mut out = Vec::new();
    let mut waits = Vec::new();
    for job in jobs {
        let has = |want: &String| job.labels.iter().any(|l| l.eq_ignore_ascii_case(want));
        if !require.iter().all(has) {
            summary.other_labels += 1;
            continue;
        }
        if job.conclusion.as_deref() == Some("skipped") {
            summary.skipped += 1;
            continue;
        }
        if job.status != "completed" {
            summary.unfinished += 1;
            continue;
        }
        let created = iso_ms(job.created_at.as_deref());
        let started = iso_ms(job.started_at.as_deref());
        let completed = iso_ms(job.completed_at.as_deref());
        let (Some(created), Some(started), Some(completed), Some(_)) =
            (created, started, completed, job.runner_name.as_deref())
        else {
            summary.never_ran += 1;
            continue;
        };
        if created < window.since_ms || created >= window.until_ms {
            summary.outside += 1;
            continue;
        }
        if job.conclusion.as_deref() == Some("cancelled") {
            summary.cancelled_after_start += 1;
        }
        waits.push(started.saturating_sub(created));
        out.push(RootJobSpec {
            at: Duration::from_millis(created - window.since_ms),
            // A job that ended in the second it started still took its runner.
            duration: Duration::from_millis(completed.saturating_sub(started).max(1000)),
            labels: job.labels.clone(),
        });
    }
    waits.sort_unstable();
    summary.root_jobs = out.len() as u64;
    summary.real_wait_p50_ms = percentile(&waits, 50);
    summary.real_wait_p95_ms = percentile(&waits, 95);
    out.sort_by_key(|j| j.at);
    out
}

/// The `[[jenkins]]` of `builds`: queued at `timestamp` minus the Metrics plugin's queue
/// time when present, running `duration`; to the node they ran on when it is one of
/// `spi_vms`, else to `any`; builds still running are left out.
pub fn jenkins_builds(
    builds: &[JenkinsBuild],
    window: Window,
    spi_vms: &BTreeSet<String>,
    summary: &mut Summary,
) -> Vec<JenkinsSpec> {
    let mut out = Vec::new();
    for b in builds {
        if b.result.is_none() {
            summary.jenkins_building += 1;
            continue;
        }
        let at = b.timestamp.saturating_sub(b.queued_ms());
        if at < window.since_ms || at >= window.until_ms {
            summary.outside += 1;
            continue;
        }
        let vm = match b.built_on.as_deref() {
            Some(node) if spi_vms.contains(node) => node.to_owned(),
            _ => {
                summary.jenkins_any += 1;
                "any".to_owned()
            }
        };
        out.push(JenkinsSpec {
            at: Duration::from_millis(at - window.since_ms),
            vm,
            duration: Duration::from_millis(b.duration.max(1000)),
            wait: Duration::from_secs(300),
            retry: Duration::from_secs(60),
        });
    }
    summary.jenkins_builds = out.len() as u64;
    out.sort_by_key(|b| b.at);
    out
}

/// Where the fleet comes from.
#[derive(Debug, Clone)]
pub enum FleetSource {
    /// The standard fleet (`marble-sim generate`) of this many hosts.
    Standard(u32),
    /// The hosts, boot model and simulator latencies of another trace.
    Trace(Box<Trace>),
}

/// The fleet's trace: hosts, boot model and `[sim]` latencies, no arrivals, no faults, the
/// shipped scheduler defaults.
pub fn fleet_trace(source: &FleetSource) -> Trace {
    let from = match source {
        FleetSource::Standard(hosts) => standard_trace(1, 0, *hosts),
        FleetSource::Trace(t) => (**t).clone(),
    };
    Trace {
        sim: from.sim,
        host: from.host,
        hosts: from.hosts,
        boot: from.boot,
        ..Trace::default()
    }
}

/// The SPI VM names of a fleet trace.
pub fn spi_vms(fleet: &Trace) -> BTreeSet<String> {
    fleet
        .host_vms()
        .into_iter()
        .filter(|v| v.team == marble_proto::Team::Spi)
        .map(|v| v.name)
        .collect()
}

/// The whole trace: the fleet, the window's length, the arrivals.
pub fn assemble(
    fleet: &Trace,
    window: Window,
    root: Vec<RootJobSpec>,
    jenkins: Vec<JenkinsSpec>,
) -> Trace {
    let mut t = fleet.clone();
    t.sim.duration = Duration::from_millis(window.until_ms.saturating_sub(window.since_ms));
    t.root_jobs = root;
    t.jenkins = jenkins;
    t
}

/// Unix ms now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(v: serde_json::Value) -> GhJob {
        serde_json::from_value(v).expect("a job")
    }

    #[test]
    fn times_parse_as_dates_and_rfc3339() {
        assert_eq!(parse_time("1970-01-02").ok(), Some(86_400_000));
        assert_eq!(parse_time("1970-01-01T00:01:00Z").ok(), Some(60_000));
        assert!(parse_time("yesterday").is_err());
        assert_eq!(format_time(60_000), "1970-01-01T00:01:00Z");
    }

    #[test]
    fn jobs_become_root_jobs_by_the_rules() {
        let w = Window {
            since_ms: parse_time("2026-11-02").unwrap_or(0),
            until_ms: parse_time("2026-11-03").unwrap_or(0),
        };
        let mac = ["self-hosted", "macOS", "ARM64", "mac15"];
        let jobs = [
            // Ran 20 s after a 3 min wait, then cancelled: kept, 20 s.
            job(
                serde_json::json!({"id": 1, "status": "completed", "conclusion": "cancelled",
                "labels": mac, "created_at": "2026-11-02T10:00:00Z",
                "started_at": "2026-11-02T10:03:00Z", "completed_at": "2026-11-02T10:03:20Z",
                "runner_name": "r1"}),
            ),
            // Cancelled while queued: no runner.
            job(
                serde_json::json!({"id": 2, "status": "completed", "conclusion": "cancelled",
                "labels": mac, "created_at": "2026-11-02T10:00:00Z",
                "started_at": "2026-11-02T10:05:00Z", "completed_at": "2026-11-02T10:05:00Z",
                "runner_name": null}),
            ),
            job(
                serde_json::json!({"id": 3, "status": "completed", "conclusion": "skipped",
                "labels": mac, "created_at": "2026-11-02T10:00:00Z"}),
            ),
            job(
                serde_json::json!({"id": 4, "status": "completed", "conclusion": "success",
                "labels": ["ubuntu-latest"], "created_at": "2026-11-02T10:00:00Z"}),
            ),
            job(
                serde_json::json!({"id": 5, "status": "in_progress", "labels": mac,
                "created_at": "2026-11-02T11:00:00Z", "runner_name": "r2"}),
            ),
        ];
        let mut s = Summary::default();
        let out = root_jobs(&jobs, w, &["self-hosted".into()], &mut s);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].at, Duration::from_secs(10 * 3600));
        assert_eq!(out[0].duration, Duration::from_secs(20));
        assert_eq!(out[0].labels, mac);
        assert_eq!(
            (s.never_ran, s.skipped, s.other_labels, s.unfinished),
            (1, 1, 1, 1)
        );
        assert_eq!(
            (s.cancelled_after_start, s.real_wait_p95_ms),
            (1, Some(180_000))
        );
    }

    #[test]
    fn builds_go_to_their_node_or_any() {
        let w = Window {
            since_ms: 1_000_000,
            until_ms: 100_000_000,
        };
        let builds: Vec<JenkinsBuild> = serde_json::from_value(serde_json::json!([
            {"number": 3, "timestamp": 5_000_000, "duration": 0, "result": null,
             "builtOn": "h-SPI-VM-1"},
            {"number": 2, "timestamp": 4_000_000, "duration": 600_000, "result": "SUCCESS",
             "builtOn": "h-SPI-VM-1",
             "actions": [{"_class": "x"}, {"queuingDurationMillis": 60_000}]},
            {"number": 1, "timestamp": 2_000_000, "duration": 300_000, "result": "FAILURE",
             "builtOn": "some-linux-agent"},
        ]))
        .expect("builds");
        let spi: BTreeSet<String> = ["h-SPI-VM-1".to_owned()].into();
        let mut s = Summary::default();
        let out = jenkins_builds(&builds, w, &spi, &mut s);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].vm.as_str(), out[0].at),
            ("any", Duration::from_secs(1000))
        );
        assert_eq!(out[1].vm, "h-SPI-VM-1");
        assert_eq!(out[1].at, Duration::from_secs(2940));
        assert_eq!((s.jenkins_building, s.jenkins_any), (1, 1));
    }

    #[test]
    fn the_standard_fleet_has_its_spi_vms_and_no_arrivals() {
        let fleet = fleet_trace(&FleetSource::Standard(2));
        assert_eq!(fleet.hosts.len(), 2);
        assert!(fleet.generate.is_none() && fleet.root_jobs.is_empty());
        assert_eq!(spi_vms(&fleet).len(), 2);
    }
}
