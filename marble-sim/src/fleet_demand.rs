//! `marble-sim requests --engine`: the fleet on the real scheduler. Every host is the
//! engine's `World` (same ops, boot model and Jenkins as `marble-sim run`), and each host's
//! `Input::Demand` comes from the daemon's own poller (`GithubDemand::poll`) against a
//! [`SimGitHub`] kept in step with the engine's ground truth, at the interval the daemon's
//! pacing (`paced_interval`) gives. Modes as `requests`: `each` (every host polls) and
//! `elected` (the lease holder polls and publishes; the others read its snapshot).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use marbled::ci::github::GithubDemand;
use marbled::ci::github::demand::paced_interval;
use marbled::ci::github::releases::RELEASES_PATH;
use marbled::ci::{GitHubClient, RunnerScope, Secret};
use marbled::config::Policy;
use marbled::lease::{Condition, Decision, Lease, Seen, Timing, decide};
use marbled::sched::{DemandSnapshot, Millis};

use crate::engine::{DemandSource, EPOCH_MS, Engine, RunOptions};
use crate::github::{API_URL, EPOCH_S, SimGitHub};
use crate::metrics::Report;
use crate::requests::{Mode, scaled};
use crate::trace::Trace;

const REPO: &str = "root-project/root";
const TOKEN: &str = "sim-token";
const HOUR_MS: u64 = 3_600_000;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The daemon's poller per host, on one token, against a GitHub that follows the engine.
pub struct PollerSource {
    rt: tokio::runtime::Runtime,
    gh: Arc<SimGitHub>,
    clients: Vec<Arc<GitHubClient>>,
    demands: Vec<GithubDemand>,
    opts: EngineRequestOptions,
    /// Host name (its VMs' prefix) → index.
    host_of: BTreeMap<String, usize>,
    /// VMs whose runner this fleet minted and has not deleted: VM name → (host, runner id).
    minted: BTreeMap<String, (usize, u64)>,
    /// When each host checks the runner releases next (every 6 h, from its first poll).
    next_release: Vec<Option<u64>>,
    next_hosted: u64,
    /// `elected`: the lease and its ETag, and the snapshot the holder published with when
    /// its poll ran.
    lease: Option<(Lease, String)>,
    published: Option<(Vec<marbled::sched::QueuedJob>, Millis)>,
    /// The host whose poller died, and when.
    dead: Option<(usize, u64)>,
    /// Engine job id → simulated GitHub job id, for jobs not yet completed on the simulated side.
    live: BTreeMap<u64, u64>,
    /// Simulated GitHub job id → engine job id.
    back: BTreeMap<u64, u64>,
    /// Engine jobs already pushed.
    seen: BTreeSet<u64>,
    /// What the run counted, shared with the caller.
    pub counts: Arc<std::sync::Mutex<Counted>>,
}

/// Counted outside the token's per-hour figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counted {
    /// GitHub demand polls (all hosts).
    pub polls: u64,
    /// Of them, stretched by pacing.
    pub paced: u64,
    /// Runner mints and deletes.
    pub runner_calls: u64,
    /// Runner-release checks.
    pub release_checks: u64,
    /// Bucket reads and writes (`elected`: lease and snapshot).
    pub s3_reads: u64,
    /// Bucket writes.
    pub s3_writes: u64,
    /// Leader failover: ms from the holder's death to the next holder's first poll.
    pub takeover_ms: Option<u64>,
}

/// How the fleet's GitHub demand is polled.
#[derive(Debug, Clone, Copy)]
pub struct EngineRequestOptions {
    /// Who polls.
    pub mode: Mode,
    /// `[demand] interval`: the engine trace's `sim.demand_poll` unless set.
    pub interval: Option<Duration>,
    /// The repository's other (GitHub-hosted) workflow runs started an hour.
    pub hosted_runs_per_hour: f64,
    /// How long such a run lasts.
    pub hosted_run: Duration,
    /// The lease timing (`elected`).
    pub lease: Timing,
    /// `[demand] watch`: how often a follower reads the published snapshot.
    pub watch: Duration,
    /// The lease holder's poller stops at this time (`elected`): the failover fault. Its
    /// host's scheduler keeps running on the last snapshot it got (the demand feed is what
    /// is lost, not the VMs).
    pub leader_dies_at: Option<Duration>,
}

impl EngineRequestOptions {
    /// The daemon's defaults in `mode`, no GitHub-hosted runs.
    pub fn new(mode: Mode) -> Self {
        let base = crate::requests::RequestOptions::new(1, mode);
        Self {
            mode,
            interval: None,
            hosted_runs_per_hour: 0.0,
            hosted_run: base.hosted_run,
            lease: base.lease,
            watch: base.watch,
            leader_dies_at: None,
        }
    }
}

impl PollerSource {
    /// `hosts` pollers on one token, polling every `interval` unless paced.
    pub fn new(names: &[String], opts: EngineRequestOptions) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let gh = SimGitHub::new(REPO);
        let clients: Vec<Arc<GitHubClient>> = names
            .iter()
            .map(|_| {
                Arc::new(GitHubClient::with_transport(
                    API_URL,
                    RunnerScope::Repo(REPO.into()),
                    Secret::new(TOKEN.to_owned()),
                    gh.clone(),
                ))
            })
            .collect();
        let demands = clients
            .iter()
            .map(|c| GithubDemand::new(c.clone(), vec![REPO.into()], 50))
            .collect();
        Ok(Self {
            rt,
            gh,
            clients,
            demands,
            opts,
            host_of: names.iter().cloned().zip(0..).collect(),
            minted: BTreeMap::new(),
            next_release: vec![None; names.len()],
            next_hosted: 0,
            lease: None,
            published: None,
            dead: None,
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
        if self.opts.hosted_runs_per_hour > 0.0 {
            let every = (HOUR_MS as f64 / self.opts.hosted_runs_per_hour).max(1.0) as u64;
            while self.next_hosted <= since_start {
                self.gh.start_hosted_run(ms(self.opts.hosted_run));
                self.next_hosted += every;
            }
        }
        self.sync_runners(truth);
        let running: BTreeSet<u64> = truth.running_jobs.iter().map(|j| j.id).collect();
        let queued: BTreeSet<u64> = truth.root_jobs.iter().map(|j| j.id).collect();
        // A job a warm runner took at once was never queued at a poll: GitHub still shows
        // its run (queued, then in progress), so it is pushed all the same.
        for job in truth.root_jobs.iter().chain(&truth.running_jobs) {
            if self.seen.insert(job.id)
                && let Some(&id) = self.gh.queue_run(std::slice::from_ref(&job.labels)).first()
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

impl PollerSource {
    /// One mint per boot (the daemon mints the JIT config before starting a ROOT VM) and one
    /// delete when the VM is gone (a 404 once GitHub removed the ephemeral runner: charged
    /// all the same), each on the VM's host's client. Seen at poll instants: a runner minted
    /// and gone between two polls of the fleet is not counted.
    fn sync_runners(&mut self, truth: &DemandSnapshot) {
        let up: BTreeMap<&str, &[String]> = truth
            .free_runners
            .iter()
            .map(|r| (r.name.as_str(), r.labels.as_slice()))
            .chain(truth.taken_runners.iter().map(|n| (n.as_str(), &[][..])))
            .collect();
        let gone: Vec<String> = self
            .minted
            .keys()
            .filter(|n| !up.contains_key(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some((h, id)) = self.minted.remove(&name) {
                let _ = self.rt.block_on(self.clients[h].delete_runner(id));
                self.bump(|c| c.runner_calls += 1);
            }
        }
        for (name, labels) in up {
            if self.minted.contains_key(name) {
                continue;
            }
            let Some(h) = name
                .split_once("-ROOT-VM-")
                .and_then(|(prefix, _)| self.host_of.get(prefix).copied())
            else {
                continue;
            };
            let minted = self
                .rt
                .block_on(self.clients[h].generate_jitconfig(name, labels, 1, None));
            self.bump(|c| c.runner_calls += 1);
            if let Ok(jit) = minted {
                self.minted.insert(name.to_owned(), (h, jit.runner_id));
            }
        }
    }

    fn bump(&self, f: impl FnOnce(&mut Counted)) {
        if let Ok(mut c) = self.counts.lock() {
            f(&mut c);
        }
    }

    /// The runner-release check, every 6 h per host whatever the mode.
    fn release_check(&mut self, h: usize, since_start: u64) {
        let due = self.next_release[h].is_none_or(|at| since_start >= at);
        if due {
            let _ = self
                .rt
                .block_on(self.clients[h].get_cached("list runner releases", RELEASES_PATH));
            self.bump(|c| c.release_checks += 1);
            self.next_release[h] = Some(since_start + 6 * HOUR_MS);
        }
    }

    /// Whether host `h` holds a lease still valid at `since_start` (no request).
    fn holds_now(&self, h: usize, since_start: u64) -> bool {
        self.lease.as_ref().is_some_and(|(lease, _)| {
            self.host_of.get(&lease.holder) == Some(&h)
                && lease.valid_until_ms(self.opts.lease) > since_start
        })
    }

    /// `elected`: read the lease and act on `decide` (a conditional write that fails is a
    /// 412); whether host `h` holds it now.
    fn holds_lease(&mut self, h: usize, since_start: u64) -> bool {
        let me = self
            .host_of
            .iter()
            .find(|(_, i)| **i == h)
            .map(|(n, _)| n.clone());
        let Some(me) = me else { return false };
        self.bump(|c| c.s3_reads += 1);
        let seen = match &self.lease {
            Some((lease, etag)) => Seen::Present {
                lease: lease.clone(),
                etag: etag.clone(),
            },
            None => Seen::Absent,
        };
        match decide(&me, since_start, &seen, self.opts.lease) {
            Decision::Write {
                lease, condition, ..
            } => {
                self.bump(|c| c.s3_writes += 1);
                let holds = match (&condition, &self.lease) {
                    (Condition::Absent, None) => true,
                    (Condition::Matches(e), Some((_, cur))) => e == cur,
                    _ => false,
                };
                if holds {
                    let etag = format!("{}-{}", lease.term, lease.seq);
                    self.lease = Some((lease, etag));
                }
                holds
            }
            Decision::Follow { .. } => false,
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
        if let Some(at) = self.opts.leader_dies_at.map(ms)
            && self.dead.is_none()
            && since_start >= at
            && self.holds_now(h, since_start)
        {
            self.dead = Some((h, since_start));
        }
        if self.dead.is_some_and(|(d, _)| d == h) {
            return None;
        }
        self.release_check(h, since_start);
        let interval = self.opts.interval.unwrap_or(Duration::from_secs(30));
        if self.opts.mode == Mode::Elected && !self.holds_lease(h, since_start) {
            // A follower reads the holder's published snapshot (bucket read) every watch.
            self.bump(|c| c.s3_reads += 1);
            let mut snapshot = truth.clone();
            // Stamped with the holder's poll, as `demand::shared` feeds it.
            (snapshot.root_jobs, snapshot.taken_at_ms) = self.published.clone()?;
            return Some((snapshot, self.opts.watch));
        }
        if let (Some((_, died)), true) = (self.dead, self.opts.mode == Mode::Elected) {
            self.bump(|c| {
                c.takeover_ms.get_or_insert(since_start - died);
            });
        }
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
            .map_or(interval, |q| paced_interval(interval, q));
        self.bump(|c| {
            c.polls += 1;
            c.paced += u64::from(wait > interval);
        });
        // The queued jobs are what the daemon's poller saw; the rest (runners, jobs in
        // progress, the Jenkins queue) is the engine's ground truth at this instant.
        let since: BTreeMap<u64, u64> =
            truth.root_jobs.iter().map(|j| (j.id, j.since_ms)).collect();
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
        if self.opts.mode == Mode::Elected {
            // The holder publishes its snapshot (one bucket write per poll), and renews the
            // lease before it lapses however long pacing stretches the poll (the renewal
            // rides on the poll here: a paced holder polls every 40 s, not at its pace).
            self.bump(|c| c.s3_writes += 1);
            self.published = Some((snapshot.root_jobs.clone(), snapshot.taken_at_ms));
            let lease = &self.opts.lease;
            let renew = Duration::from_millis(lease.duration_ms.saturating_sub(lease.margin_ms));
            return Some((snapshot, wait.min(renew)));
        }
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
    /// Polls, runner calls, release checks, bucket requests.
    pub counted: Counted,
}

/// Run `trace` scaled to `hosts` hosts (its hosts in turn, same load per host) on the
/// engine with policy `demand`, each host fed by the daemon's poller.
pub fn requests_on_engine(
    trace: &Trace,
    hosts: u32,
    opts: EngineRequestOptions,
) -> std::io::Result<EngineRequests> {
    let mut t = scaled(trace, hosts);
    // Host n is a copy of the trace's host n modulo its count (their VMs, labels and SPI
    // nodes cycle), renamed `macphsftNN` (its listed VMs
    // too).
    let base: Vec<_> = t.host_sections().into_iter().cloned().collect();
    t.hosts = (0..hosts.max(1) as usize)
        .map(|n| {
            let mut h = base[n % base.len()].clone();
            let name = format!("macphsft{:02}", n + 1);
            // Listed VMs are named after their host: each copy gets its own names.
            for vm in &mut h.vms {
                if let Some(rest) = vm.name.strip_prefix(h.prefix.as_str()) {
                    vm.name = format!("{name}{rest}");
                }
            }
            h.prefix = name;
            h
        })
        .collect();
    t.host = crate::trace::HostSection::default();
    let names: Vec<String> = t.hosts.iter().map(|h| h.prefix.clone()).collect();
    let opts = EngineRequestOptions {
        interval: Some(opts.interval.unwrap_or(t.sim.demand_poll)),
        ..opts
    };
    let source = PollerSource::new(&names, opts)?;
    let gh = source.github();
    let counts = source.counts.clone();
    let opts = RunOptions::with_policy(Policy::Demand);
    let report = Engine::new(&t, opts)
        .with_demand_source(Box::new(source))
        .run();
    let charged_per_hour = gh
        .counts()
        .get(TOKEN)
        .map(|h| h.iter().map(|(k, c)| (*k, c.counted)).collect())
        .unwrap_or_default();
    let counted = counts.lock().map(|c| *c).unwrap_or_default();
    Ok(EngineRequests {
        report,
        charged_per_hour,
        counted,
    })
}
