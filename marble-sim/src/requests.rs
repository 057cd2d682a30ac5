//! `marble-sim requests`: GitHub (and Jenkins, and bucket) requests per token and per hour
//! for a fleet of N hosts on one token, with the daemon's own poller and pacing
//! (`GithubDemand::poll`, `new_queued_run`, `paced_interval`, `GitHubClient`'s ETags) talking
//! to [`crate::github::SimGitHub`], and what the pacing does to ROOT waits and SPI grants.
//!
//! The fleet model is deliberately small and separate from the scheduler engine (which
//! replays one host's `World`): one VM at a time per host; an idle host boots for the oldest
//! queued ROOT job it has seen (its own poll, or in `elected` mode the leader's published
//! snapshot) that no other host took, minting a JIT runner with its client; GitHub hands the
//! job to that runner once the VM is up; at the end the host deletes the registration (a
//! 404 when GitHub already removed the ephemeral runner: still charged). Otherwise it takes
//! the oldest SPI build its last Jenkins poll saw. Modes: `each` (every host polls, as
//! today) and `elected` (the holder of a bucket lease, `marbled::lease::decide` on the sim
//! clock, polls and publishes; the others read the snapshot from the bucket, counted apart).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use marbled::ci::github::GithubDemand;
use marbled::ci::github::demand::paced_interval;
use marbled::ci::github::releases::RELEASES_PATH;
use marbled::ci::{GitHubClient, RunnerScope, Secret};
use marbled::lease::{Condition, Decision, Lease, Seen, Timing, decide};
use marbled::sched::QueuedJob;
use serde::Serialize;

use crate::generate::arrivals;
use crate::github::{API_URL, EPOCH_S, SimGitHub};
use crate::rng::SimRng;
use crate::trace::Trace;

const REPO: &str = "root-project/root";
const TOKEN: &str = "sim-token";
const TICK_MS: u64 = 1_000;
const HOUR_MS: u64 = 3_600_000;

/// Who polls GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every host polls (today's daemon).
    Each,
    /// The lease holder polls and publishes; the others read its snapshot.
    Elected,
}

/// One run of the request model.
#[derive(Debug, Clone)]
pub struct RequestOptions {
    /// Hosts in the fleet; the trace's generator rate is scaled to this many.
    pub hosts: u32,
    /// Who polls.
    pub mode: Mode,
    /// The lease holder's daemon stops at this time (`elected` only): the failover fault.
    pub leader_dies_at: Option<Duration>,
    /// `[demand] interval` (the daemon's default: 30 s).
    pub interval: Duration,
    /// `[demand] watch` (default 5 s).
    pub watch: Duration,
    /// The lease timing (docs/SCHEDULER.md: 45 s, margin 5 s for a 30 s interval).
    pub lease: Timing,
    /// Time after the last arrival for the queue to drain.
    pub drain: Duration,
    /// The repository's other workflow runs (GitHub-hosted, not MARBLE's) started an hour,
    /// each one job of `hosted_run`: a busy repository's runs in progress, whose job
    /// listings change as steps run.
    pub hosted_runs_per_hour: f64,
    /// How long such a run lasts.
    pub hosted_run: Duration,
    /// Simulate only this much of the trace (default: its `sim.duration`).
    pub duration: Option<Duration>,
}

impl RequestOptions {
    /// The daemon's defaults for `hosts` hosts in `mode`.
    pub fn new(hosts: u32, mode: Mode) -> Self {
        Self {
            hosts,
            mode,
            leader_dies_at: None,
            interval: Duration::from_secs(30),
            watch: Duration::from_secs(5),
            lease: Timing {
                duration_ms: 45_000,
                margin_ms: 5_000,
            },
            drain: Duration::from_secs(3_600),
            hosted_runs_per_hour: 0.0,
            hosted_run: Duration::from_secs(1_800),
            duration: None,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestReport {
    /// Hosts.
    pub hosts: u32,
    /// GitHub requests charged to the token per hour (not 304): median over the hours.
    pub github_per_hour_p50: u64,
    /// … and the busiest hour.
    pub github_per_hour_max: u64,
    /// All GitHub requests (304s too) in the busiest hour.
    pub github_total_per_hour_max: u64,
    /// Of the charged ones over the run: runner mints and deletes.
    pub runner_calls: u64,
    /// Of the charged ones: release checks.
    pub release_checks: u64,
    /// Jenkins requests per hour (busiest hour; own server, no shared budget).
    pub jenkins_per_hour_max: u64,
    /// Bucket reads (lease and snapshot) per hour, busiest hour.
    pub s3_reads_per_hour_max: u64,
    /// Bucket writes (lease and snapshot) per hour, busiest hour.
    pub s3_writes_per_hour_max: u64,
    /// GitHub demand polls (all hosts).
    pub polls: u64,
    /// Polls stretched by pacing.
    pub paced_polls: u64,
    /// ROOT jobs queued / started.
    pub root_jobs: usize,
    /// … started before the end.
    pub root_started: usize,
    /// ROOT wait (queued → started), seconds.
    pub root_wait_p50_s: f64,
    /// ROOT wait p95, seconds.
    pub root_wait_p95_s: f64,
    /// SPI builds granted a VM / asked.
    pub spi_builds: usize,
    /// SPI grant (asked → VM given) p95, seconds.
    pub spi_grant_p95_s: f64,
    /// Leader failover: ms from the leader's death to the next leader's first poll.
    pub takeover_ms: Option<u64>,
}

#[derive(Debug)]
enum Busy {
    Idle,
    Booting {
        until: u64,
        job: u64,
        runner: (u64, String),
    },
    Root {
        until: u64,
        job: u64,
        runner_id: u64,
    },
    Spi {
        until: u64,
    },
}

struct Host {
    name: String,
    client: Arc<GitHubClient>,
    demand: GithubDemand,
    alive: bool,
    busy: Busy,
    next_poll: u64,
    next_watch: u64,
    paced: bool,
    view: Vec<QueuedJob>,
    boots: u32,
    next_release: u64,
    jenkins_seen_at: Option<u64>,
    next_jenkins: u64,
    lease_at: u64,
    valid_until: u64,
}

#[derive(Default)]
struct Counters {
    jenkins: BTreeMap<u64, u64>,
    s3_reads: BTreeMap<u64, u64>,
    s3_writes: BTreeMap<u64, u64>,
}

fn bump(map: &mut BTreeMap<u64, u64>, t: u64, by: u64) {
    *map.entry(t / HOUR_MS).or_default() += by;
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The q-quantile (nearest rank) of `v`.
fn quantile<T: Copy + Ord + Default>(v: &mut [T], q: f64) -> T {
    v.sort_unstable();
    if v.is_empty() {
        return T::default();
    }
    let rank = ((v.len() as f64) * q).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// `trace` with its generated workload scaled from its own host count to `hosts` (same load
/// per host).
pub fn scaled(trace: &Trace, hosts: u32) -> Trace {
    let mut t = trace.clone();
    let factor = f64::from(hosts.max(1)) / (trace.hosts.len().max(1) as f64);
    if let Some(g) = t.generate.as_mut() {
        if let Some(d) = g.daily.as_mut() {
            d.root_peak_pushes_per_hour *= factor;
            d.spi_day_per_hour *= factor;
            d.spi_nightly_builds = (f64::from(d.spi_nightly_builds) * factor).round() as u32;
        }
        if let Some(r) = g.root.as_mut() {
            r.per_hour *= factor;
        }
        if let Some(s) = g.spi.as_mut() {
            s.per_hour *= factor;
        }
    }
    t
}

struct Fleet<'a> {
    opts: &'a RequestOptions,
    rt: tokio::runtime::Runtime,
    gh: Arc<SimGitHub>,
    hosts: Vec<Host>,
    counters: Counters,
    claimed: BTreeSet<u64>,
    arrival_of: BTreeMap<u64, (u64, u64)>,
    waits: Vec<u64>,
    spi_queue: VecDeque<(u64, u64)>,
    grants: Vec<u64>,
    published: Vec<QueuedJob>,
    lease: Option<(Lease, String)>,
    report: RequestReport,
    died_at: Option<u64>,
    boot: crate::trace::BootSection,
    rng: SimRng,
}

/// Run `trace`'s workload (scaled to `opts.hosts`) through the request model.
pub fn requests(trace: &Trace, opts: &RequestOptions) -> std::io::Result<RequestReport> {
    let mut trace = scaled(trace, opts.hosts);
    if let Some(d) = opts.duration {
        trace.sim.duration = d;
        if let Some(g) = trace.generate.as_mut() {
            g.until = Some(g.until.map_or(d, |u| u.min(d)));
        }
    }
    let (mut root, mut spi) = arrivals(&trace, trace.sim.seed);
    root.retain(|a| a.at_ms < ms(trace.sim.duration));
    spi.retain(|a| a.at_ms < ms(trace.sim.duration));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let gh = SimGitHub::new(REPO);
    let hosts = (0..opts.hosts.max(1))
        .map(|n| new_host(n, opts, &gh))
        .collect();
    let mut fleet = Fleet {
        opts,
        rt,
        gh,
        hosts,
        counters: Counters::default(),
        claimed: BTreeSet::new(),
        arrival_of: BTreeMap::new(),
        waits: Vec::new(),
        spi_queue: VecDeque::new(),
        grants: Vec::new(),
        published: Vec::new(),
        lease: None,
        report: RequestReport {
            hosts: opts.hosts,
            root_jobs: root.len(),
            ..RequestReport::default()
        },
        died_at: None,
        boot: trace.boot.clone(),
        rng: SimRng::stream(trace.sim.seed, "requests.boot"),
    };
    let end = ms(trace.sim.duration) + ms(opts.drain);
    let hosted_every = (opts.hosted_runs_per_hour > 0.0)
        .then(|| (HOUR_MS as f64 / opts.hosted_runs_per_hour) as u64)
        .filter(|e| *e > 0);
    let mut next_hosted = 0;
    let mut root = root.into_iter().peekable();
    let mut spi = spi.into_iter().peekable();
    let mut t = 0;
    while t <= end {
        fleet.gh.set_now(t);
        if let Some(every) = hosted_every
            && t >= next_hosted
            && t < ms(trace.sim.duration)
        {
            fleet.gh.start_hosted_run(ms(opts.hosted_run));
            next_hosted = t + every;
        }
        let mut pushes: BTreeMap<u64, Vec<(Vec<String>, u64)>> = BTreeMap::new();
        while let Some(a) = root.next_if(|a| a.at_ms <= t) {
            pushes
                .entry(a.at_ms)
                .or_default()
                .push((a.labels.into_iter().collect(), a.duration_ms));
        }
        for (at, jobs) in pushes {
            let sets: Vec<Vec<String>> = jobs.iter().map(|j| j.0.clone()).collect();
            for (id, (_, duration)) in fleet.gh.queue_run(&sets).into_iter().zip(jobs) {
                fleet.arrival_of.insert(id, (at, duration));
            }
        }
        while let Some(b) = spi.next_if(|b| b.at_ms <= t) {
            fleet.spi_queue.push_back((b.at_ms, b.duration_ms));
        }
        fleet.step(t);
        t += TICK_MS;
    }
    Ok(fleet.finish())
}

/// Host `n` of the fleet: its own GitHub client (ETag cache) on the shared token.
fn new_host(n: u32, opts: &RequestOptions, gh: &Arc<SimGitHub>) -> Host {
    let client = Arc::new(GitHubClient::with_transport(
        API_URL,
        RunnerScope::Repo(REPO.into()),
        Secret::new(TOKEN.to_owned()),
        gh.clone(),
    ));
    let demand = GithubDemand::new(client.clone(), vec![REPO.into()], 50);
    // Hosts do not start in step: spread their first polls over one interval.
    let phase = ms(opts.interval) * u64::from(n) / u64::from(opts.hosts.max(1));
    Host {
        name: format!("macphsft{:02}", n + 1),
        client,
        demand,
        alive: true,
        busy: Busy::Idle,
        next_poll: phase,
        next_watch: phase,
        paced: false,
        view: Vec::new(),
        boots: 0,
        next_release: phase,
        jenkins_seen_at: None,
        next_jenkins: phase,
        lease_at: phase,
        valid_until: 0,
    }
}

impl Fleet<'_> {
    fn step(&mut self, t: u64) {
        if let Some(at) = self.opts.leader_dies_at.map(ms)
            && self.died_at.is_none()
            && t >= at
            && let Some(h) = self.hosts.iter_mut().find(|h| h.alive && h.valid_until > t)
        {
            h.alive = false;
            self.died_at = Some(t);
        }
        let n = self.hosts.len();
        for k in 0..n {
            self.progress(k, t);
            if !self.hosts[k].alive {
                continue;
            }
            if self.opts.mode == Mode::Elected {
                self.lease_step(k, t);
            }
            self.demand_step(k, t);
            self.periodic_calls(k, t);
        }
        // Rotate who looks first, so no host is always first to the queue.
        let first = usize::try_from(t / TICK_MS).unwrap_or(0) % n.max(1);
        for i in 0..n {
            self.assign((first + i) % n, t);
        }
    }

    /// Boots end, jobs end (a dead daemon's VM still finishes its job).
    fn progress(&mut self, k: usize, t: u64) {
        let host = &mut self.hosts[k];
        match &host.busy {
            Busy::Booting { until, job, runner } if *until <= t => {
                let (job, runner) = (*job, runner.clone());
                self.gh.runner_online(&runner.1);
                self.gh.start_job(job, &runner.1);
                let (at, duration) = self.arrival_of.get(&job).copied().unwrap_or((t, 0));
                self.waits.push(t.saturating_sub(at));
                host.busy = Busy::Root {
                    until: t + duration,
                    job,
                    runner_id: runner.0,
                };
            }
            Busy::Root {
                until,
                job,
                runner_id,
            } if *until <= t => {
                let (job, id) = (*job, *runner_id);
                self.gh.complete_job(job);
                if host.alive {
                    // The daemon deletes the registration when the VM stops (usually a
                    // 404: GitHub removed the ephemeral runner; charged all the same).
                    let _ = self.rt.block_on(host.client.delete_runner(id));
                    self.report.runner_calls += 1;
                }
                host.busy = Busy::Idle;
            }
            Busy::Spi { until } if *until <= t => host.busy = Busy::Idle,
            _ => {}
        }
    }

    /// Read the lease and act on `decide` (a conditional write that fails is a 412).
    fn lease_step(&mut self, k: usize, t: u64) {
        let host = &mut self.hosts[k];
        if t < host.lease_at {
            return;
        }
        bump(&mut self.counters.s3_reads, t, 1);
        let seen = match &self.lease {
            Some((lease, etag)) => Seen::Present {
                lease: lease.clone(),
                etag: etag.clone(),
            },
            None => Seen::Absent,
        };
        match decide(&host.name, t, &seen, self.opts.lease) {
            Decision::Write {
                lease, condition, ..
            } => {
                bump(&mut self.counters.s3_writes, t, 1);
                let holds = match (&condition, &self.lease) {
                    (Condition::Absent, None) => true,
                    (Condition::Matches(e), Some((_, cur))) => e == cur,
                    _ => false,
                };
                if holds {
                    host.valid_until = lease.valid_until_ms(self.opts.lease);
                    let etag = format!("{}-{}", lease.term, lease.seq);
                    self.lease = Some((lease, etag));
                    host.lease_at = t + self.opts.lease.renew_after_ms();
                } else {
                    host.lease_at = t + self.opts.lease.margin_ms;
                }
            }
            Decision::Follow { retry_at_ms, .. } => {
                host.valid_until = 0;
                host.lease_at = retry_at_ms.min(t + self.opts.lease.renew_after_ms());
            }
        }
    }

    /// The daemon's demand loop: a poll when due (or when the watch sees a new run), paced by
    /// `paced_interval`; in `elected` mode only the lease holder polls and the others read.
    fn demand_step(&mut self, k: usize, t: u64) {
        let interval = ms(self.opts.interval);
        let watch = ms(self.opts.watch);
        let polls = match self.opts.mode {
            Mode::Each => true,
            Mode::Elected => self.hosts[k].valid_until > t,
        };
        if !polls {
            let host = &mut self.hosts[k];
            if t >= host.next_watch {
                // The published snapshot, read with If-None-Match (cheap either way).
                bump(&mut self.counters.s3_reads, t, 1);
                host.view = self.published.clone();
                host.next_watch = t + watch;
            }
            return;
        }
        let mut due = t >= self.hosts[k].next_poll;
        let host = &mut self.hosts[k];
        if !due && !host.paced && t >= host.next_watch && t + watch < host.next_poll {
            host.next_watch = t + watch;
            due = matches!(self.rt.block_on(host.demand.new_queued_run()), Ok(true));
        }
        if !due {
            return;
        }
        if let (Some(died), None) = (self.died_at, self.report.takeover_ms) {
            self.report.takeover_ms = Some(t - died);
        }
        self.report.polls += 1;
        match self.rt.block_on(host.demand.poll(EPOCH_S * 1000 + t, None)) {
            Ok((snapshot, stats)) => {
                let wait = stats.quota.map_or(self.opts.interval, |q| {
                    paced_interval(self.opts.interval, q)
                });
                host.paced = wait > self.opts.interval;
                self.report.paced_polls += u64::from(host.paced);
                host.next_poll = t + ms(wait);
                host.view = snapshot.root_jobs;
                if self.opts.mode == Mode::Elected {
                    bump(&mut self.counters.s3_writes, t, 1);
                    self.published = host.view.clone();
                }
            }
            Err(_) => host.next_poll = t + interval,
        }
        host.next_watch = t + watch;
    }

    /// Per host whatever the mode: the runner-release check (6 h) and the Jenkins queue.
    fn periodic_calls(&mut self, k: usize, t: u64) {
        let host = &mut self.hosts[k];
        if t >= host.next_release {
            let _ = self.rt.block_on(
                host.client
                    .get_cached("list runner releases", RELEASES_PATH),
            );
            self.report.release_checks += 1;
            host.next_release = t + 6 * HOUR_MS;
        }
        if t >= host.next_jenkins {
            bump(&mut self.counters.jenkins, t, 1);
            host.jenkins_seen_at = Some(t);
            host.next_jenkins = t + ms(self.opts.interval);
        }
    }

    fn boot_ms(&mut self) -> u64 {
        let b = &self.boot;
        match b.slow_max {
            Some(max) if self.rng.chance(b.slow_rate) => self.rng.range(ms(b.max), ms(max)),
            _ => self.rng.range(ms(b.min), ms(b.max)),
        }
    }

    /// An idle host boots for the oldest ROOT job it saw that nobody took, else an SPI build.
    fn assign(&mut self, k: usize, t: u64) {
        if !self.hosts[k].alive || !matches!(self.hosts[k].busy, Busy::Idle) {
            return;
        }
        let pick = self.hosts[k]
            .view
            .iter()
            .filter(|j| !self.claimed.contains(&j.id) && self.gh.queued(j.id))
            .min_by_key(|j| j.id)
            .cloned();
        if let Some(job) = pick {
            let host = &mut self.hosts[k];
            host.boots += 1;
            let name = format!("marble-{}-vm-{}", host.name, host.boots);
            let minted =
                self.rt
                    .block_on(host.client.generate_jitconfig(&name, &job.labels, 1, None));
            self.report.runner_calls += 1;
            if let Ok(jit) = minted {
                self.claimed.insert(job.id);
                let until = t + self.boot_ms();
                self.hosts[k].busy = Busy::Booting {
                    until,
                    job: job.id,
                    runner: (jit.runner_id, name),
                };
                return;
            }
        }
        let seen = self.hosts[k].jenkins_seen_at;
        if let Some(&(at, duration)) = self.spi_queue.front()
            && seen.is_some_and(|s| s >= at)
        {
            self.spi_queue.pop_front();
            // Two node toggles (online, then offline at the end) on Jenkins.
            bump(&mut self.counters.jenkins, t, 2);
            self.grants.push(t - at);
            let until = t + self.boot_ms() + duration;
            self.hosts[k].busy = Busy::Spi { until };
        }
    }

    fn finish(mut self) -> RequestReport {
        let mut r = self.report;
        let mut hourly: Vec<(u64, u64)> = self
            .gh
            .counts()
            .get(TOKEN)
            .map(|h| h.values().map(|c| (c.counted, c.total)).collect())
            .unwrap_or_default();
        let mut counted: Vec<u64> = hourly.iter().map(|c| c.0).collect();
        r.github_per_hour_p50 = quantile(&mut counted, 0.5);
        r.github_per_hour_max = counted.iter().copied().max().unwrap_or(0);
        hourly.sort_unstable_by_key(|c| c.1);
        r.github_total_per_hour_max = hourly.last().map_or(0, |c| c.1);
        let max = |m: &BTreeMap<u64, u64>| m.values().copied().max().unwrap_or(0);
        r.jenkins_per_hour_max = max(&self.counters.jenkins);
        r.s3_reads_per_hour_max = max(&self.counters.s3_reads);
        r.s3_writes_per_hour_max = max(&self.counters.s3_writes);
        r.root_started = self.waits.len();
        r.root_wait_p50_s = quantile(&mut self.waits, 0.5) as f64 / 1000.0;
        r.root_wait_p95_s = quantile(&mut self.waits, 0.95) as f64 / 1000.0;
        r.spi_builds = self.grants.len();
        r.spi_grant_p95_s = quantile(&mut self.grants, 0.95) as f64 / 1000.0;
        r
    }
}
