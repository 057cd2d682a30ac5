//! `marble-sim requests --engine`: the fleet on the real scheduler. Every host is the
//! engine's `World` (same ops, boot model and Jenkins as `marble-sim run`), and each host's
//! `Input::Demand` comes from the daemon's own poller (`GithubDemand::poll`) against a
//! [`SimGitHub`] kept in step with the engine's ground truth, at the interval the daemon's
//! pacing (`paced_interval`) gives. Mode `each` only (issue 18, first step).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use marbled::ci::github::GithubDemand;
use marbled::ci::github::demand::paced_interval;
use marbled::ci::{GitHubClient, RunnerScope, Secret};
use marbled::config::Policy;
use marbled::sched::{DemandSnapshot, Millis};

use crate::engine::{DemandSource, EPOCH_MS, Engine, RunOptions};
use crate::github::{API_URL, EPOCH_S, SimGitHub};
use crate::metrics::Report;
use crate::requests::scaled;
use crate::trace::Trace;

const REPO: &str = "root-project/root";
const TOKEN: &str = "sim-token";

/// The daemon's poller per host, on one token, against a GitHub that follows the engine.
pub struct PollerSource {
    rt: tokio::runtime::Runtime,
    gh: Arc<SimGitHub>,
    demands: Vec<GithubDemand>,
    interval: Duration,
    /// Engine job id → simulated GitHub job id, for jobs not yet completed on the simulated side.
    live: BTreeMap<u64, u64>,
    /// Simulated GitHub job id → engine job id.
    back: BTreeMap<u64, u64>,
    /// Engine jobs already pushed.
    seen: BTreeSet<u64>,
    /// Polls and paced polls, shared with the caller.
    pub counts: Arc<std::sync::Mutex<(u64, u64)>>,
}

impl PollerSource {
    /// `hosts` pollers on one token, polling every `interval` unless paced.
    pub fn new(hosts: usize, interval: Duration) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let gh = SimGitHub::new(REPO);
        let demands = (0..hosts.max(1))
            .map(|_| {
                let client = Arc::new(GitHubClient::with_transport(
                    API_URL,
                    RunnerScope::Repo(REPO.into()),
                    Secret::new(TOKEN.to_owned()),
                    gh.clone(),
                ));
                GithubDemand::new(client, vec![REPO.into()], 50)
            })
            .collect();
        Ok(Self {
            rt,
            gh,
            demands,
            interval,
            live: BTreeMap::new(),
            back: BTreeMap::new(),
            seen: BTreeSet::new(),
            counts: Arc::default(),
        })
    }

    /// The simulated GitHub (its per-token request counts).
    pub fn github(&self) -> Arc<SimGitHub> {
        self.gh.clone()
    }

    /// Bring the simulated GitHub to the engine's ground truth: new queued jobs are pushed,
    /// jobs no longer queued end (their listings change, so the next poll pays for them).
    fn sync(&mut self, since_start: u64, truth: &DemandSnapshot) {
        self.gh.set_now(since_start);
        let running: BTreeSet<u64> = truth.running_jobs.iter().map(|j| j.id).collect();
        let queued: BTreeSet<u64> = truth.root_jobs.iter().map(|j| j.id).collect();
        // A job a warm runner took at once was never queued at a poll: GitHub still shows
        // its run (queued, then in progress), so it is pushed all the same.
        for job in truth.root_jobs.iter().chain(&truth.running_jobs) {
            if self.seen.insert(job.id)
                && let Some(&id) = self.gh.queue_run(&[job.labels.clone()]).first()
            {
                self.live.insert(job.id, id);
                self.back.insert(id, job.id);
            }
        }
        let mut gone = Vec::new();
        for (&id, &sim) in &self.live {
            if running.contains(&id) {
                self.gh.job_in_progress(sim, "marble-vm");
            } else if !queued.contains(&id) {
                gone.push(id);
            }
        }
        for id in gone {
            if let Some(sim) = self.live.remove(&id) {
                self.gh.complete_job(sim);
            }
        }
    }
}

impl DemandSource for PollerSource {
    fn poll(
        &mut self,
        h: usize,
        now: Millis,
        truth: &DemandSnapshot,
    ) -> Option<(DemandSnapshot, Duration)> {
        let since_start = now.saturating_sub(EPOCH_MS);
        self.sync(since_start, truth);
        let demand = self.demands.get(h)?;
        let polled = self
            .rt
            .block_on(demand.poll(EPOCH_S * 1000 + since_start, None));
        let Ok((seen, stats)) = polled else {
            // A failed poll: the host keeps its last snapshot and tries again next interval.
            return None;
        };
        let wait = stats
            .quota
            .map_or(self.interval, |q| paced_interval(self.interval, q));
        if let Ok(mut c) = self.counts.lock() {
            c.0 += 1;
            c.1 += u64::from(wait > self.interval);
        }
        // The queued jobs are what the daemon's poller saw; the rest (runners, jobs in
        // progress, the Jenkins queue) is the engine's ground truth at this instant.
        let since: BTreeMap<u64, u64> = truth.root_jobs.iter().map(|j| (j.id, j.since_ms)).collect();
        let mut snapshot = truth.clone();
        snapshot.root_jobs = seen
            .root_jobs
            .into_iter()
            .filter_map(|mut j| {
                let id = *self.back.get(&j.id)?;
                j.since_ms = *since.get(&id)?;
                j.id = id;
                Some(j)
            })
            .collect();
        Some((snapshot, wait))
    }
}

/// What one engine run of the fleet measured.
#[derive(Debug, Clone)]
pub struct EngineRequests {
    /// The engine's report (ROOT waits, SPI grants: the scheduler's own figures).
    pub report: Report,
    /// GitHub requests charged per hour on the token (hour index → count).
    pub charged_per_hour: BTreeMap<u64, u64>,
    /// Demand polls, and of them paced ones.
    pub polls: (u64, u64),
}

/// Run `trace` scaled to `hosts` hosts (copies of its first host, same load per host) on the
/// engine with policy `demand`, each host fed by the daemon's poller.
pub fn requests_on_engine(trace: &Trace, hosts: u32) -> std::io::Result<EngineRequests> {
    let mut t = scaled(trace, hosts);
    let first = t.host_sections()[0].clone();
    t.hosts = (0..hosts.max(1))
        .map(|n| {
            let mut h = first.clone();
            h.prefix = format!("macphsft{:02}", n + 1);
            h
        })
        .collect();
    t.host = crate::trace::HostSection::default();
    let source = PollerSource::new(t.hosts.len(), t.sim.demand_poll)?;
    let gh = source.github();
    let counts = source.counts.clone();
    let opts = RunOptions {
        policy: Some(Policy::Demand),
        ..RunOptions::default()
    };
    let report = Engine::new(&t, opts)
        .with_demand_source(Box::new(source))
        .run();
    let charged_per_hour = gh
        .counts()
        .get(TOKEN)
        .map(|h| h.iter().map(|(k, c)| (*k, c.counted)).collect())
        .unwrap_or_default();
    let polls = counts.lock().map(|c| *c).unwrap_or_default();
    Ok(EngineRequests {
        report,
        charged_per_hour,
        polls,
    })
}
