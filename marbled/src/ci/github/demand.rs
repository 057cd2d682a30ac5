//! GitHub demand: queued jobs of the polled repositories and the runners without a job.
//!
//! Per poll: for each repository, `GET …/actions/runs?status=queued` and `?status=in_progress`
//! (a running workflow can still hold queued matrix legs), then `GET
//! …/actions/runs/{id}/jobs?filter=latest` for each run (at most `max_runs`), keeping jobs
//! with `status == "queued"` and labels (`waiting` jobs need an approval no runner can give)
//! — `in_progress` ones go to `running_jobs`, the warm-runner prediction's history —
//! and the runner list, keeping as free the idle online runners and the offline ones MARBLE
//! registered for a VM booting now ([`super::offline`]: a registered JIT runner is offline
//! until its VM is up). Other offline runners are reported for `status`, and this host's
//! stale registrations (offline, their VM stopped) are deleted. Runners that took their job
//! — named by a job in progress or completed, busy in the list, or (this host's current
//! registrations, read before the list) gone from it — are `taken_runners`: the scheduler
//! stops their VMs rather than keep them for a matching job.
//! Every request goes through [`GitHubClient::get_cached`] or `list_runners`: ETags make an
//! unchanged answer a free 304.
//!
//! Between polls, [`GithubDemand::new_queued_run`] (the `[demand] watch`) lists only the
//! queued runs: a 304 costs nothing, and a run id not seen by the last poll or watch means a
//! new push is waiting.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;

use marble_proto::{OfflineRunner, VmInfo};

use super::client::GitHubClient;
use super::lifecycle::RunnerLifecycle;
use super::offline::Standing;
use super::records::RunnerRecord;
use super::types::{GitHubError, Runner};
// The generic demand types stay in `demand/` (layer 7): a back-import the lead resolves by
// moving `QuotaSeen` down (to `sched` or here).
use crate::config::Config;
use crate::demand::QuotaSeen;
use crate::sched::{DemandSnapshot, FleetRunner, QueuedJob, StartedJob};

/// The runner-name prefix when no `[github]` lifecycle is in view (its default).
const DEFAULT_PREFIX: &str = "marble";

#[derive(Deserialize)]
struct RunList {
    #[serde(default)]
    workflow_runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    id: u64,
}

#[derive(Deserialize)]
struct JobList {
    #[serde(default)]
    jobs: Vec<Job>,
}

#[derive(Deserialize)]
struct Job {
    id: u64,
    #[serde(default)]
    status: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    started_at: Option<String>,
    #[serde(default)]
    runner_name: Option<String>,
}

/// This host's side of judging offline runners ([`super::offline`]).
#[derive(Debug, Clone)]
pub struct FleetView {
    /// Names, records and deletes of this host's registrations.
    pub lifecycle: Arc<RunnerLifecycle>,
    /// [`super::offline::boot_window`].
    pub boot_window: Duration,
}

/// The GitHub demand source.
#[derive(Debug, Clone)]
pub struct GithubDemand {
    client: Arc<GitHubClient>,
    /// None (tests): runner names judged with the default prefix, nothing deleted.
    fleet: Option<FleetView>,
    repos: Vec<String>,
    max_runs: usize,
    /// Per repository, the queued run ids last listed (by a poll or the watch).
    queued_seen: Arc<Mutex<BTreeMap<String, BTreeSet<u64>>>>,
    /// The rate limit after the previous poll: (remaining, reset epoch seconds).
    last_quota: Arc<Mutex<Option<(u64, u64)>>>,
}

fn queued_runs_path(repo: &str) -> String {
    format!("/repos/{repo}/actions/runs?status=queued&per_page=100")
}

fn run_ids(body: &[u8]) -> Result<BTreeSet<u64>, GitHubError> {
    let list: RunList = serde_json::from_slice(body).map_err(|source| GitHubError::Decode {
        op: "list-workflow-runs",
        source,
    })?;
    Ok(list.workflow_runs.into_iter().map(|r| r.id).collect())
}

/// Add to `snapshot.taken_runners` the runners the list shows busy, and those of `own` (this
/// host's delivered registrations, read before the list) that are gone from it — to
/// `done_runners` too: GitHub deletes an ephemeral runner once its job ends, so a job that
/// started and ended between two polls leaves only that trace. Sorted, without duplicates.
fn note_taken_runners(runners: &[Runner], own: &[String], snapshot: &mut DemandSnapshot) {
    let listed: BTreeSet<&str> = runners.iter().map(|r| r.name.as_str()).collect();
    let gone: Vec<String> = own
        .iter()
        .filter(|n| !listed.contains(n.as_str()))
        .cloned()
        .collect();
    snapshot.taken_runners.extend(
        runners
            .iter()
            .filter(|r| r.busy)
            .map(|r| r.name.clone())
            .chain(gone.iter().cloned()),
    );
    snapshot.done_runners.extend(gone);
    for names in [&mut snapshot.taken_runners, &mut snapshot.done_runners] {
        names.sort();
        names.dedup();
    }
}

/// What one poll found beyond the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Workflow runs seen (queued + in progress, deduplicated).
    pub runs: usize,
    /// Runs whose jobs were not listed because of `max_runs`.
    pub runs_skipped: usize,
    /// Rate-limit requests this poll spent (its answers that were not 304; a runner
    /// registered meanwhile on the same client counts too), what was left then and the
    /// seconds until GitHub's reset; `None` when GitHub's headers did not tell.
    pub quota: Option<QuotaSeen>,
    /// Offline runners not counted as free capacity (for `status`).
    pub offline: Vec<OfflineRunner>,
}

/// Requests polling never spends: kept for registering and deleting runners (a boot costs
/// about three), which share the token's budget.
pub const QUOTA_RESERVE: u64 = 200;

/// What the token lost between the previous poll (`previous`: remaining and reset epoch
/// then) and this one: everyone's spending, not only this poll's `spent`. A new window (or a
/// first poll) knows only its own.
pub fn drained_since(previous: Option<(u64, u64)>, remaining: u64, reset: u64, spent: u64) -> u64 {
    match previous {
        Some((before, window)) if window == reset => before.saturating_sub(remaining).max(spent),
        _ => spent,
    }
}

/// The interval that spreads what is left of the rate-limit window over the time until its
/// reset: at least `interval`; until the reset once only the reserve is left. The pace is
/// set by what the token lost over the last interval (`drained`), not by this host's own
/// spending: with N hosts on one token each one's interval grows N-fold, so together they
/// spend the budget evenly until the reset (alone, `drained` is what it spent). Before, each
/// host paced as if alone and the fleet spent N times faster, slowing down only as the
/// budget shrank. A poll that spent nothing (all 304) never slows down: pacing it saves
/// nothing.
pub fn paced_interval(interval: Duration, quota: QuotaSeen) -> Duration {
    if quota.spent == 0 {
        return interval;
    }
    let lost = quota.drained.max(quota.spent);
    let spendable = quota.remaining.saturating_sub(QUOTA_RESERVE);
    let paced = if spendable < lost {
        Duration::from_secs(quota.reset_in_secs)
    } else {
        Duration::from_secs(quota.reset_in_secs.saturating_mul(lost) / spendable)
    };
    interval.max(paced)
}

fn parse_ms(ts: Option<&str>) -> Option<u64> {
    let at = humantime::parse_rfc3339_weak(ts?.trim_end_matches('Z')).ok()?;
    let d = at.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(d.as_millis()).ok()
}

impl GithubDemand {
    /// The source for `config` when `[demand] github` asks for it: GitHub through the runner
    /// lifecycle's client (its token may still be loading: polls fail and are retried
    /// meanwhile). Without a lifecycle the source is left out and logged, so the daemon
    /// still runs its VMs.
    pub fn for_config(config: &Config, runners: Option<Arc<RunnerLifecycle>>) -> Option<Self> {
        let demand = config.demand.as_ref().filter(|d| d.github)?;
        let section = config.github.as_ref()?;
        let Some(lifecycle) = runners else {
            tracing::error!("github demand source disabled: no [github] runner lifecycle");
            return None;
        };
        let repos = if demand.repos.is_empty() {
            section.repo.iter().cloned().collect()
        } else {
            demand.repos.clone()
        };
        let boot_window = super::offline::boot_window(
            section.request_timeout,
            config.prlctl.start_timeout,
            config.scheduler.ready_timeout,
        );
        Some(
            Self::new(lifecycle.client(), repos, demand.max_runs).with_fleet(FleetView {
                lifecycle,
                boot_window,
            }),
        )
    }

    /// A source polling `repos` with `client`.
    pub fn new(client: Arc<GitHubClient>, repos: Vec<String>, max_runs: u32) -> Self {
        Self {
            client,
            fleet: None,
            repos,
            max_runs: usize::try_from(max_runs).unwrap_or(usize::MAX),
            queued_seen: Arc::default(),
            last_quota: Arc::default(),
        }
    }

    /// Judge offline runners with this host's registrations and VMs in view, deleting its
    /// stale ones.
    pub fn with_fleet(mut self, fleet: FleetView) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// Sort the runner list ([`super::offline::classify`]): idle online runners and those
    /// of VMs booting now are the snapshot's free runners; this host's stale registrations
    /// are deleted; the other offline ones go to `stats.offline` for `status`.
    async fn judge_runners(
        &self,
        runners: Vec<Runner>,
        vms: Option<&[VmInfo]>,
        now_s: u64,
        snapshot: &mut DemandSnapshot,
        stats: &mut PollStats,
    ) {
        let prefix = self
            .fleet
            .as_ref()
            .map_or(DEFAULT_PREFIX, |f| f.lifecycle.prefix());
        let window = self.fleet.as_ref().map_or(
            super::offline::boot_window(
                Duration::from_secs(30),
                Duration::from_secs(180),
                Duration::from_secs(300),
            ),
            |f| f.boot_window,
        );
        let mut stale = Vec::new();
        for runner in runners {
            let own = match (&self.fleet, vms) {
                (Some(fleet), Some(vms)) => vms
                    .iter()
                    .find(|vm| fleet.lifecycle.is_ours(&vm.name, &runner.name))
                    .map(|vm| super::offline::Own {
                        vm,
                        current: fleet.lifecycle.records().current(&vm.name),
                    }),
                _ => None,
            };
            match super::offline::classify(&runner, own, prefix, now_s, window) {
                Standing::Free | Standing::Booting => snapshot.free_runners.push(FleetRunner {
                    name: runner.name,
                    labels: runner.labels.into_iter().map(|l| l.name).collect(),
                }),
                Standing::Busy => {}
                Standing::Stale { vm } => stale.push((
                    vm,
                    RunnerRecord {
                        id: runner.id,
                        name: runner.name,
                    },
                )),
                Standing::Offline { kind } => {
                    stats
                        .offline
                        .push(super::offline::offline_entry(&runner, kind));
                }
            }
        }
        if let Some(fleet) = &self.fleet {
            for (vm, record) in stale {
                fleet.lifecycle.remove_stale(&vm, &record).await;
            }
        }
    }

    /// The runner names of this host's VMs' current registrations whose config was delivered
    /// (empty without the fleet view or before the VMs are known). Only those: one minted a
    /// moment ago may not be in GitHub's list yet, and is not gone; delivery comes a whole
    /// boot later.
    fn own_registrations(&self, vms: Option<&[VmInfo]>) -> Vec<String> {
        let (Some(fleet), Some(vms)) = (&self.fleet, vms) else {
            return Vec::new();
        };
        vms.iter()
            .filter_map(|vm| fleet.lifecycle.records().delivered(&vm.name))
            .map(|record| record.name)
            .collect()
    }

    /// Remember `ids` as the queued runs of `repo`; whether one of them is new.
    fn note_queued(&self, repo: &str, ids: BTreeSet<u64>) -> bool {
        let mut seen = self
            .queued_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let known = seen.entry(repo.to_owned()).or_default();
        let new = !ids.is_subset(known);
        *known = ids;
        new
    }

    /// The watch: whether a run was queued since the last poll or watch. One conditional
    /// request per repository; an unchanged listing is a 304 (no quota), and a listing that
    /// only lost runs (they started) is not news.
    pub async fn new_queued_run(&self) -> Result<bool, GitHubError> {
        let mut new = false;
        for repo in &self.repos {
            let page = self
                .client
                .get_cached_page("list-workflow-runs", &queued_runs_path(repo))
                .await?;
            if page.changed {
                new |= self.note_queued(repo, run_ids(&page.body)?);
            }
        }
        Ok(new)
    }

    /// List run `run`'s latest jobs into `snapshot`: queued ones as demand, running ones as
    /// history and (with their runner) as jobs started somewhere.
    async fn add_run_jobs(
        &self,
        repo: &str,
        run: u64,
        now_ms: u64,
        snapshot: &mut DemandSnapshot,
    ) -> Result<(), GitHubError> {
        let body = self
            .client
            .get_cached(
                "list-run-jobs",
                &format!("/repos/{repo}/actions/runs/{run}/jobs?filter=latest&per_page=100"),
            )
            .await?;
        let list: JobList =
            serde_json::from_slice(&body).map_err(|source| GitHubError::Decode {
                op: "list-run-jobs",
                source,
            })?;
        for job in list.jobs.into_iter().filter(|j| !j.labels.is_empty()) {
            let queued_ms = parse_ms(job.created_at.as_deref()).unwrap_or(now_ms);
            // A runner named by a job in progress or done has taken its one job (ephemeral):
            // the scheduler stops its VM rather than keep it for a matching queued job.
            if matches!(job.status.as_str(), "in_progress" | "completed")
                && let Some(runner) = &job.runner_name
            {
                snapshot.taken_runners.push(runner.clone());
                if job.status == "completed" {
                    snapshot.done_runners.push(runner.clone());
                }
            }
            if job.status == "in_progress"
                && let (Some(runner), Some(started_ms)) =
                    (&job.runner_name, parse_ms(job.started_at.as_deref()))
            {
                // Every running job; the actor keeps this host's.
                snapshot.started_here.push(StartedJob {
                    id: job.id,
                    queued_ms,
                    started_ms,
                    runner: runner.clone(),
                });
            }
            let into = match job.status.as_str() {
                "queued" => &mut snapshot.root_jobs,
                // Seen running: history for the warm-runner prediction.
                "in_progress" => &mut snapshot.running_jobs,
                _ => continue,
            };
            into.push(QueuedJob {
                id: job.id,
                since_ms: queued_ms,
                labels: job.labels,
            });
        }
        Ok(())
    }

    /// One poll. `now_ms` stands in for a job's queue time when GitHub gives none; `vms`:
    /// this host's VMs as the scheduler last saw them (None: not known yet), to judge its
    /// own offline registrations.
    pub async fn poll(
        &self,
        now_ms: u64,
        vms: Option<&[VmInfo]>,
    ) -> Result<(DemandSnapshot, PollStats), GitHubError> {
        let before = self.client.rate_limit();
        // Taken when the poll begins: the scheduler judges its freshness by it.
        let mut snapshot = DemandSnapshot {
            taken_at_ms: now_ms,
            ..DemandSnapshot::default()
        };
        let mut stats = PollStats::default();
        let mut budget = self.max_runs;
        for repo in &self.repos {
            let queued = self
                .client
                .get_cached("list-workflow-runs", &queued_runs_path(repo))
                .await?;
            let queued = run_ids(&queued)?;
            self.note_queued(repo, queued.clone());
            let in_progress = self
                .client
                .get_cached(
                    "list-workflow-runs",
                    &format!("/repos/{repo}/actions/runs?status=in_progress&per_page=100"),
                )
                .await?;
            let mut runs = queued;
            runs.extend(run_ids(&in_progress)?);
            stats.runs += runs.len();
            // Newest runs last in id order; the oldest queued jobs matter most, so take the
            // lowest ids first.
            for run in runs {
                if budget == 0 {
                    stats.runs_skipped += 1;
                    continue;
                }
                budget -= 1;
                self.add_run_jobs(repo, run, now_ms, &mut snapshot).await?;
            }
        }
        for jobs in [&mut snapshot.root_jobs, &mut snapshot.running_jobs] {
            jobs.sort_by_key(|j| j.id);
            jobs.dedup_by_key(|j| j.id);
        }
        snapshot.started_here.sort_by_key(|j| j.id);
        snapshot.started_here.dedup_by_key(|j| j.id);
        // Read before the runner list, so a registration minted while it is read is not
        // taken for one that is gone.
        let own_before = self.own_registrations(vms);
        let runners = self.client.list_runners().await?;
        note_taken_runners(&runners, &own_before, &mut snapshot);
        self.judge_runners(runners, vms, now_ms / 1000, &mut snapshot, &mut stats)
            .await;
        let after = self.client.rate_limit();
        stats.quota = match (after.remaining, after.reset_epoch) {
            (Some(remaining), Some(reset)) => {
                let spent = after.counted.saturating_sub(before.counted);
                let previous = self
                    .last_quota
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .replace((remaining, reset));
                Some(QuotaSeen {
                    spent,
                    drained: drained_since(previous, remaining, reset, spent),
                    remaining,
                    reset_in_secs: reset.saturating_sub(now_ms / 1000),
                })
            }
            _ => None,
        };
        Ok((snapshot, stats))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn polling_spreads_the_rate_limit_left_until_the_reset() {
        let every = Duration::from_secs(30);
        let seen = |spent, remaining, reset_in_secs| QuotaSeen {
            spent,
            drained: spent,
            remaining,
            reset_in_secs,
        };
        // Plenty left: the configured interval.
        assert_eq!(paced_interval(every, seen(5, 4_000, 3_600)), every);
        // 3 800 spendable at 20 a poll over an hour: one poll every 18.9 s -> still 30 s.
        assert_eq!(paced_interval(every, seen(20, 4_000, 3_600)), every);
        // 1 000 spendable at 20 a poll over 50 min: 50 polls, one a minute.
        assert_eq!(
            paced_interval(every, seen(20, 1_200, 3_000)),
            Duration::from_secs(60)
        );
        // Only the reserve left: wait for the reset.
        assert_eq!(
            paced_interval(every, seen(20, QUOTA_RESERVE + 5, 1_800)),
            Duration::from_secs(1_800)
        );
        // A free poll (all 304) never slows down.
        assert_eq!(paced_interval(every, seen(0, 10, 1_800)), every);
        // Four hosts on the token: it lost 80 over the last interval, four times this poll's
        // 20, so this host waits four times as long and the four together spread the 1 000
        // spendable over the 50 minutes left.
        let shared = QuotaSeen {
            drained: 80,
            ..seen(20, 1_200, 3_000)
        };
        assert_eq!(paced_interval(every, shared), Duration::from_secs(240));
    }

    #[test]
    fn the_drain_counts_every_spender_of_the_window() {
        // Same window: 5 000 -> 4 900 while this poll spent 20: others spent 80.
        assert_eq!(drained_since(Some((5_000, 99)), 4_900, 99, 20), 100);
        // A new window (the reset moved): only this poll's spending is known.
        assert_eq!(drained_since(Some((300, 99)), 4_980, 3_699, 20), 20);
        // First poll.
        assert_eq!(drained_since(None, 4_980, 99, 20), 20);
        // Never less than what this poll spent (headers of parallel requests can arrive out
        // of order).
        assert_eq!(drained_since(Some((4_990, 99)), 4_985, 99, 20), 20);
    }

    #[test]
    fn the_watch_reports_new_queued_runs_not_runs_that_left_the_queue() {
        let client = GitHubClient::new(
            "http://127.0.0.1:9",
            crate::ci::RunnerScope::Repo("o/r".into()),
            crate::ci::Secret::new(String::from("t")),
            std::time::Duration::from_secs(1),
        );
        let gh = GithubDemand::new(Arc::new(client), vec!["o/r".into()], 10);
        assert!(gh.note_queued("o/r", [1, 2].into()), "first sight");
        assert!(!gh.note_queued("o/r", [1, 2].into()), "unchanged");
        assert!(!gh.note_queued("o/r", [2].into()), "run 1 started");
        assert!(gh.note_queued("o/r", [2, 3].into()), "run 3 queued");
        assert!(gh.note_queued("o/s", [2].into()), "repositories apart");
    }

    #[test]
    fn runners_busy_or_gone_are_taken() {
        let runner = |name: &str, busy: bool| -> Runner {
            serde_json::from_value(serde_json::json!({
                "id": 1, "name": name, "status": "online", "busy": busy, "labels": []
            }))
            .unwrap()
        };
        let listed = [
            runner("marble-h-vm1-1", false),
            runner("marble-h-vm2-1", true),
            runner("elsewhere-7", true),
        ];
        // vm3's registration was read before the list and is gone from it: its ephemeral
        // runner did its job and GitHub deleted it.
        let own = ["marble-h-vm1-1".to_owned(), "marble-h-vm3-1".to_owned()];
        let mut snapshot = DemandSnapshot {
            taken_runners: vec!["marble-h-vm2-1".into()],
            ..Default::default()
        };
        note_taken_runners(&listed, &own, &mut snapshot);
        assert_eq!(
            snapshot.taken_runners,
            ["elsewhere-7", "marble-h-vm2-1", "marble-h-vm3-1"]
        );
        assert_eq!(snapshot.done_runners, ["marble-h-vm3-1"]);
    }

    #[test]
    fn github_timestamps_parse_to_unix_ms() {
        assert_eq!(parse_ms(Some("1970-01-01T00:00:01Z")), Some(1000));
        assert_eq!(
            parse_ms(Some("2026-09-01T10:00:00Z")),
            Some(1_788_256_800_000)
        );
        assert_eq!(parse_ms(Some("yesterday")), None);
        assert_eq!(parse_ms(None), None);
    }

    #[test]
    fn job_fixture_from_the_reference_parses() {
        let body = br#"{"total_count": 2, "jobs": [
 {"id": 111, "run_id": 9001, "run_attempt": 1, "status": "queued", "conclusion": null,
  "labels": ["self-hosted", "macOS", "ARM64", "mac15"], "runner_id": null,
  "created_at": "2026-09-01T10:00:00Z", "started_at": "2026-09-01T10:00:00Z", "completed_at": null},
 {"id": 112, "run_id": 9001, "run_attempt": 1, "status": "in_progress", "conclusion": null,
  "labels": ["self-hosted", "macOS", "X64", "mac14"], "runner_id": 39,
  "runner_name": "marble-mac-01-ROOT-VM-macOS-14-0007",
  "created_at": "2026-09-01T10:00:00Z", "started_at": "2026-09-01T10:01:10Z", "completed_at": null}]}"#;
        let list: JobList = serde_json::from_slice(body).unwrap();
        assert_eq!(list.jobs.len(), 2);
        assert_eq!(list.jobs[0].status, "queued");
        assert_eq!(list.jobs[0].runner_name, None);
        let running = &list.jobs[1];
        assert_eq!(running.labels[3], "mac14");
        assert_eq!(
            running.runner_name.as_deref(),
            Some("marble-mac-01-ROOT-VM-macOS-14-0007")
        );
        // Queued 10:00:00, started 10:01:10: a 70 s wait.
        let wait = parse_ms(running.started_at.as_deref()).unwrap()
            - parse_ms(running.created_at.as_deref()).unwrap();
        assert_eq!(wait, 70_000);
    }
}
