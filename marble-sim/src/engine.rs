//! The discrete-event engine: a virtual clock, an ordered event queue, and the loop that
//! drives one `sched::World` per simulated host exactly as each host's daemon actor does.
//!
//! Several hosts share one GitHub queue, one runner list and one Jenkins; their events and
//! deadlines interleave in virtual time deterministically (at equal times: events in the
//! order they were scheduled, then the lowest host index's deadline). Under policy `demand`
//! each host's demand source polls the shared queue and runner list (`sim.demand_poll`, out
//! of phase between hosts) and feeds `Input::Demand`.
//!
//! Like `actor::Supervisor`, the engine lists the VMs first, refreshes the inventory every
//! `inventory_interval` (ticking the world at the same time) and whenever the world asks,
//! coalescing a refresh requested while one is in flight; it calls `handle(now, Tick)` at
//! `next_deadline()`; at equal times, completions and arrivals go before the tick (the
//! actor's `select!` is biased the same way). Every `Effect::Run` is answered by exactly one
//! `Input::Finished` after a simulated duration (`super::ops`); the simulated CI clients
//! live in `super::workload`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use marble_proto::Team;
use marbled::sched::{
    DemandSnapshot, Effect, FleetRunner, Input, Millis, ObservedVm, OpId, QueuedJob, ReqId,
    SchedConfig, World,
};

use super::generate::{JenkinsArrival, RootArrival, arrivals};
use super::host::{Faults, JobRef, RunningJob, SimVm};
use super::invariants::{ViolationKind, Violations};
use super::metrics::{HostReport, Latency, Report, TeamReport, TeamStats, ratio};
use super::ops::OpState;
use super::rng::SimRng;
use super::trace::{BootSection, SimSection, Trace};
use super::workload::{Build, BuildState, PendingReq, RootJob, RootState};
use marbled::config::Policy;

/// Virtual time zero, as unix ms (the scheduler sees realistic timestamps).
pub const EPOCH_MS: Millis = 1_700_000_000_000;
/// How long an early demand poll takes to answer (a few GitHub requests).
const POLL_ROUND_TRIP_MS: Millis = 1_000;
/// Scheduler inputs per run before the engine gives up (a livelock guard).
pub const MAX_STEPS: u64 = 5_000_000;
/// Ticks at one instant before `next_deadline()` counts as stuck in the past.
pub const MAX_TICKS_AT_ONE_INSTANT: u32 = 1000;

/// Overrides from the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Replace the trace's `scheduler.policy`.
    pub policy: Option<Policy>,
    /// Replace the trace's `sim.seed`.
    pub seed: Option<u64>,
    /// Write every scheduler input and effect, with its virtual time, to stderr.
    pub log: bool,
}

impl RunOptions {
    /// Run the trace under `policy`, with its own seed and no log.
    pub fn with_policy(policy: Policy) -> Self {
        Self {
            policy: Some(policy),
            ..Self::default()
        }
    }
}

/// Things that happen at a virtual time.
#[derive(Debug)]
pub(super) enum Ev {
    /// A GitHub job arrives.
    RootArrival(usize),
    /// A Jenkins build arrives.
    JenkinsArrival(usize),
    /// Jenkins retries a build after a refusal.
    JenkinsRetry(usize),
    /// An operation of a host's scheduler is done (or a readiness wait checks again).
    OpDue(usize, OpId),
    /// A hung operation finally reports.
    OpReport(usize, OpId),
    /// A guest finished booting.
    GuestReady,
    /// A job reaches its end.
    JobEnd { vm: usize, id: u64 },
    /// A host's `prlctl list` returned.
    InventoryDone(usize, Vec<ObservedVm>),
    /// A host actor's periodic refresh timer (generation-tagged: re-arming supersedes it).
    InventoryTimer(usize, u64),
    /// A slot request's answer is overdue.
    ReplyDeadline(ReqId),
    /// A host's demand source polls GitHub (policy `demand`).
    DemandPoll(usize),
    /// An early poll the host's scheduler asked for (`Effect::RefreshDemand`) or its queued-run
    /// watch triggered; the regular polls keep their rhythm.
    DemandNudge(usize),
}

/// One simulated host: its scheduler and what its actor keeps.
pub(super) struct SimHost {
    /// Host name (the prefix of its VMs).
    pub(super) name: String,
    pub(super) world: World,
    capacity: u32,
    refresh_in_flight: bool,
    refresh_again: bool,
    refresh_gen: u64,
    ticks_here: u32,
    deadline_ignored: bool,
    stuck_reported: bool,
    over_capacity: bool,
    /// The demand snapshot last fed (instant feed: only changes are sent).
    demand_seen: Option<DemandSnapshot>,
    /// When its demand source last polled (early polls keep the daemon's minimum gap).
    demand_polled_at: Millis,
    /// An early poll is already scheduled.
    demand_nudged: bool,
    /// Starts that powered a stopped VM of this host on.
    pub(super) boots: u64,
}

/// Where a host's demand snapshot comes from when not the engine's ground truth:
/// `marble-sim requests` puts the daemon's own GitHub poller here (issue 18).
pub trait DemandSource {
    /// Host `h` polls at `now`; `truth` is what GitHub shows at that instant. Returns the
    /// snapshot the host's daemon gets and the wait until its next poll (the daemon's
    /// pacing), or `None` when the host does not poll now.
    fn poll(
        &mut self,
        h: usize,
        now: Millis,
        truth: &DemandSnapshot,
    ) -> Option<(DemandSnapshot, Duration)>;
}

/// One simulation run.
pub struct Engine {
    /// Replaces the ground-truth demand feed (`None`: every poll sees GitHub as it is).
    demand_source: Option<Box<dyn DemandSource>>,
    pub(super) hosts: Vec<SimHost>,
    pub(super) now: Millis,
    end: Millis,
    seq: u64,
    queue: BTreeMap<(Millis, u64), Ev>,
    pub(super) cfg: SimSection,
    pub(super) boot_dist: BootSection,
    pub(super) vms: Vec<SimVm>,
    pub(super) by_name: HashMap<String, usize>,
    /// Operations in flight, by host and op id (each host's scheduler numbers its own).
    pub(super) ops: BTreeMap<(usize, OpId), OpState>,
    pub(super) ops_per_vm: Vec<u32>,
    pub(super) faults: Faults,
    /// One boot-time stream per VM (common random numbers): the k-th boot of a VM takes the
    /// same time whichever policy runs and whatever other VMs did, so two runs differ by
    /// their decisions rather than by a reshuffled sequence of draws.
    pub(super) boot_rngs: Vec<SimRng>,
    pub(super) root_jobs: Vec<RootJob>,
    pub(super) root_queue: Vec<usize>,
    pub(super) builds: Vec<Build>,
    pub(super) requests: BTreeMap<ReqId, PendingReq>,
    pub(super) request_for_vm: Vec<Option<ReqId>>,
    pub(super) next_req: u64,
    pub(super) next_job_id: u64,
    idle_ms: u64,
    starved_since: [Option<Millis>; 2],
    longest_starved: [u64; 2],
    pub(super) steps: u64,
    pub(super) log: bool,
    policy: Policy,
    seed: u64,
    // Counters for the report.
    pub(super) stats_root: TeamStats,
    pub(super) stats_spi: TeamStats,
    pub(super) boots: u64,
    pub(super) root_boots: u64,
    /// ROOT boots whose runner had taken no job when the VM went off.
    pub(super) root_boots_unused: u64,
    pub(super) boot_failures: u64,
    pub(super) resumes: u64,
    pub(super) op_counts: BTreeMap<&'static str, u64>,
    pub(super) slot_requests: u64,
    /// `Effect::LaunchJenkinsNode`s the hosts emitted.
    pub(super) jenkins_launches: u64,
    pub(super) grants: u64,
    /// Per granted build: its first slot request until the grant, ms.
    pub(super) grant_latencies: Vec<u64>,
    pub(super) refusals: BTreeMap<String, u64>,
    pub(super) unanswered: u64,
    pub(super) unanswered_under_hang: u64,
    pub(super) late_replies: u64,
    pub(super) race_interruptions: u64,
    pub(super) violations: Violations,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("hosts", &self.hosts.len())
            .field("now", &self.now)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

/// One simulated host per `[host]`/`[[hosts]]` section, each with its own `World`.
fn sim_hosts(trace: &Trace, sched: &SchedConfig, seed: u64, now: Millis) -> Vec<SimHost> {
    trace
        .host_sections()
        .into_iter()
        .enumerate()
        .map(|(h, section)| {
            // Host 0 keeps the trace's seed (single-host runs replay as before); the
            // others get their own cycle jitter.
            let mut config = sched.clone();
            config.seed = seed ^ (h as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            SimHost {
                name: section.prefix.clone(),
                world: World::new(config, now),
                capacity: section.capacity,
                refresh_in_flight: false,
                refresh_again: false,
                refresh_gen: 0,
                ticks_here: 0,
                deadline_ignored: false,
                stuck_reported: false,
                over_capacity: false,
                demand_seen: None,
                demand_polled_at: 0,
                demand_nudged: false,
                boots: 0,
            }
        })
        .collect()
}

/// The run's GitHub jobs and Jenkins builds, from the trace's arrivals; each build starts its
/// round-robin over the SPI VMs at a seeded position.
fn workload(trace: &Trace, seed: u64, vms: &[SimVm]) -> (Vec<RootJob>, Vec<Build>) {
    let (root, spi) = arrivals(trace, seed);
    let mut pick_rng = SimRng::stream(seed, "jenkins");
    let spi_count = vms.iter().filter(|v| v.team == Team::Spi).count();
    let builds = spi
        .into_iter()
        .map(|arrival: JenkinsArrival| Build {
            cursor: pick_rng.below(spi_count),
            arrival,
            state: BuildState::NotArrived,
            first_request: None,
            granted: false,
        })
        .collect();
    let root_jobs = root
        .into_iter()
        .map(|arrival: RootArrival| RootJob {
            arrival,
            state: RootState::NotArrived,
        })
        .collect();
    (root_jobs, builds)
}

/// Run `trace` with `opts` and return what it measured.
pub fn simulate(trace: &Trace, opts: RunOptions) -> Report {
    Engine::new(trace, opts).run()
}

impl Engine {
    /// Set up a run: the world, the host, the arrivals.
    pub fn new(trace: &Trace, opts: RunOptions) -> Self {
        let seed = opts.seed.unwrap_or(trace.sim.seed);
        let sched = trace.sched_config(opts.policy, seed);
        let policy = sched.policy;
        let now = EPOCH_MS;
        let hosts = sim_hosts(trace, &sched, seed, now);
        let vms: Vec<SimVm> = trace
            .host_vms()
            .iter()
            .enumerate()
            .map(|(i, spec)| SimVm::new(i, spec, now))
            .collect();
        let by_name = vms
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name.clone(), i))
            .collect();
        let (root_jobs, builds) = workload(trace, seed, &vms);
        let n = vms.len();
        Self {
            demand_source: None,
            hosts,
            now,
            end: now.saturating_add(ms(trace.sim.duration)),
            seq: 0,
            queue: BTreeMap::new(),
            cfg: trace.sim.clone(),
            boot_dist: trace.boot.clone(),
            vms,
            by_name,
            ops: BTreeMap::new(),
            ops_per_vm: vec![0; n],
            faults: Faults::new(trace.faults.clone(), SimRng::stream(seed, "faults")),
            boot_rngs: (0..n)
                .map(|vi| SimRng::stream(seed, &format!("boot/{vi}")))
                .collect(),
            root_jobs,
            root_queue: Vec::new(),
            builds,
            requests: BTreeMap::new(),
            request_for_vm: vec![None; n],
            next_req: 1,
            next_job_id: 1,
            idle_ms: 0,
            starved_since: [None; 2],
            longest_starved: [0; 2],
            steps: 0,
            log: opts.log,
            policy,
            seed,
            stats_root: TeamStats::default(),
            stats_spi: TeamStats::default(),
            boots: 0,
            root_boots: 0,
            root_boots_unused: 0,
            boot_failures: 0,
            resumes: 0,
            op_counts: BTreeMap::new(),
            slot_requests: 0,
            jenkins_launches: 0,
            grants: 0,
            grant_latencies: Vec::new(),
            refusals: BTreeMap::new(),
            unanswered: 0,
            unanswered_under_hang: 0,
            late_replies: 0,
            race_interruptions: 0,
            violations: Violations::default(),
        }
    }

    /// Feed every host's demand polls from `source` instead of the ground truth.
    pub fn with_demand_source(mut self, source: Box<dyn DemandSource>) -> Self {
        self.demand_source = Some(source);
        self
    }

    /// Run to the end of the trace.
    pub fn run(mut self) -> Report {
        for i in 0..self.root_jobs.len() {
            let at = self.root_jobs[i].arrival.at_ms;
            self.schedule_at(EPOCH_MS.saturating_add(at), Ev::RootArrival(i));
        }
        for i in 0..self.builds.len() {
            let at = self.builds[i].arrival.at_ms;
            self.schedule_at(EPOCH_MS.saturating_add(at), Ev::JenkinsArrival(i));
        }
        // Each actor's first act: list the VMs.
        for h in 0..self.hosts.len() {
            self.refresh_inventory(h);
        }
        if self.policy == Policy::Demand {
            let poll = ms(self.cfg.demand_poll);
            if poll > 0 {
                // Hosts poll out of phase, as independent daemons do.
                let n = self.hosts.len() as u64;
                for h in 0..self.hosts.len() {
                    let phase = poll.saturating_mul(h as u64) / n.max(1);
                    self.schedule_at(EPOCH_MS.saturating_add(phase), Ev::DemandPoll(h));
                }
            }
        }
        self.check_capacity();
        loop {
            if self.steps >= MAX_STEPS {
                self.violation(
                    ViolationKind::StepBudget,
                    format!("gave up after {MAX_STEPS} scheduler steps"),
                );
                break;
            }
            let event_at = self.queue.first_key_value().map(|(k, _)| k.0);
            // The earliest deadline of any host; at equal times the lowest host index.
            let deadline = self
                .hosts
                .iter()
                .enumerate()
                .filter(|(_, host)| !host.deadline_ignored)
                .filter_map(|(h, host)| host.world.next_deadline().map(|d| (d.max(self.now), h)))
                .min();
            let (at, tick) = match (event_at, deadline) {
                (Some(e), Some((d, h))) if d < e => (d, Some(h)),
                (Some(e), _) => (e, None),
                (None, Some((d, h))) => (d, Some(h)),
                (None, None) => break,
            };
            if at > self.end {
                break;
            }
            self.advance(at);
            if let Some(h) = tick {
                self.hosts[h].ticks_here += 1;
                if self.hosts[h].ticks_here > MAX_TICKS_AT_ONE_INSTANT {
                    // A deadline that stays in the past would spin the actor at 100% CPU.
                    self.hosts[h].deadline_ignored = true;
                    if !self.hosts[h].stuck_reported {
                        self.hosts[h].stuck_reported = true;
                        let name = self.hosts[h].name.clone();
                        self.violation(
                            ViolationKind::StuckDeadline,
                            format!(
                                "host {name}: next_deadline() still at or before now after \
                                 {MAX_TICKS_AT_ONE_INSTANT} ticks at one instant"
                            ),
                        );
                    }
                    continue;
                }
                self.feed(h, Input::Tick);
            } else if let Some((_, ev)) = self.queue.pop_first() {
                self.on_event(ev);
            }
            self.pump();
            self.push_demand();
            self.check_capacity();
        }
        self.advance(self.end);
        self.report()
    }

    /// What GitHub shows now: queued ROOT jobs and the fleet's runners without a job.
    pub(super) fn demand_snapshot(&self) -> DemandSnapshot {
        let root_jobs = self
            .root_queue
            .iter()
            .map(|&j| {
                let a = &self.root_jobs[j].arrival;
                QueuedJob {
                    id: j as u64 + 1,
                    since_ms: EPOCH_MS.saturating_add(a.at_ms),
                    labels: a.labels.iter().cloned().collect(),
                }
            })
            .collect();
        let free_runners = self
            .vms
            .iter()
            .filter(|v| v.free_runner())
            .map(|v| FleetRunner {
                name: v.name.clone(),
                labels: v.labels.iter().cloned().collect(),
            })
            .collect();
        // GitHub lists in-progress jobs too (the warm-runner prediction learns from them).
        let running_jobs = self
            .vms
            .iter()
            .filter_map(|v| match v.job {
                Some(RunningJob {
                    job: JobRef::Root(j),
                    ..
                }) => {
                    let a = &self.root_jobs[j].arrival;
                    Some(QueuedJob {
                        id: j as u64 + 1,
                        since_ms: EPOCH_MS.saturating_add(a.at_ms),
                        labels: a.labels.iter().cloned().collect(),
                    })
                }
                _ => None,
            })
            .collect();
        // GitHub shows a runner that took its job: the job in progress (or completed) with
        // its `runner_name`, the runner busy, then deleted once its ephemeral job ends (its
        // job is done: `done_runners`). The
        // simulated runner is named after its VM; one snapshot feeds every host, and each
        // host's scheduler ignores the names of VMs it does not have.
        let taken_runners: Vec<String> = self
            .vms
            .iter()
            .filter(|v| v.team == Team::Root && v.occupies_host() && v.runner_used)
            .map(|v| v.name.clone())
            .collect();
        let done_runners: Vec<String> = self
            .vms
            .iter()
            .filter(|v| v.team == Team::Root && v.occupies_host() && v.runner_used)
            .filter(|v| v.job.is_none())
            .map(|v| v.name.clone())
            .collect();
        let jenkins_queue = self.jenkins_queue();
        // The simulated Jenkins is always read and never fails: known idle when no build
        // waits for a node, until a later snapshot says otherwise (no answer goes stale; a
        // time taken from the clock would also make every instant-feed snapshot new).
        let jenkins_idle_until_ms = if jenkins_queue.is_empty() {
            Millis::MAX
        } else {
            0
        };
        DemandSnapshot {
            root_jobs,
            free_runners,
            running_jobs,
            // One snapshot feeds every host; the job waits are the report's, not metrics'.
            started_here: Vec::new(),
            used_here: taken_runners.clone(),
            taken_runners,
            done_here: done_runners.clone(),
            // A simulated runner is named after its VM (the scheduler's default).
            runners_here: Default::default(),
            done_runners,
            jenkins_queue,
            jenkins_idle_until_ms,
            jenkins_idle_agents: self.jenkins_idle_agents(),
            jenkins_offline_nodes: self.jenkins_offline_nodes(),
            // What GitHub shows, not yet a poll's: `feed_demand` stamps its poll.
            taken_at_ms: 0,
        }
    }

    /// A host's demand source polls: feed what GitHub shows now, poll again later.
    fn demand_poll(&mut self, h: usize) {
        let next = self.feed_demand(h).unwrap_or(self.cfg.demand_poll);
        self.schedule_in(ms(next).max(1), Ev::DemandPoll(h));
    }

    /// Feed host `h` a fresh snapshot; the wait until its next poll when its demand source
    /// paces it (`None`: `sim.demand_poll`).
    fn feed_demand(&mut self, h: usize) -> Option<Duration> {
        // The simulated poll is instantaneous: taken when it arrives.
        let truth = DemandSnapshot {
            taken_at_ms: self.now,
            ..self.demand_snapshot()
        };
        let (snapshot, next) = match self.demand_source.as_mut() {
            None => (truth, None),
            Some(source) => match source.poll(h, self.now, &truth) {
                Some((snapshot, next)) => (snapshot, Some(next)),
                // Not polling (a follower without a published snapshot, a dead daemon).
                None => return None,
            },
        };
        self.hosts[h].demand_seen = Some(snapshot.clone());
        self.hosts[h].demand_polled_at = self.now;
        self.feed(h, Input::Demand(Box::new(snapshot)));
        next
    }

    /// The scheduler asked for a fresh snapshot: poll early, as `demand::poll` does.
    fn nudge_demand(&mut self, h: usize) {
        if self.policy == Policy::Demand && ms(self.cfg.demand_poll) > 0 {
            self.early_poll(h, self.now);
        }
    }

    /// A new workflow run was queued: every host whose scheduler watches (`World::
    /// watches_demand`) sees the queued-runs listing change at its next watch tick (hosts
    /// tick out of phase) and polls then.
    pub(super) fn watch_sees_new_run(&mut self) {
        let watch = ms(self.cfg.demand_watch);
        if self.policy != Policy::Demand || watch == 0 || ms(self.cfg.demand_poll) == 0 {
            return;
        }
        let n = self.hosts.len() as u64;
        for h in 0..self.hosts.len() {
            if !self.hosts[h].world.watches_demand() {
                continue;
            }
            let phase = watch.saturating_mul(h as u64) / n.max(1);
            let into = (self.now.saturating_sub(EPOCH_MS) + watch - phase) % watch;
            self.early_poll(h, self.now.saturating_add(watch - into));
        }
    }

    /// Host `h` polls early, as `demand::poll` does when asked at `from`: a poll's round trip
    /// later, no sooner than `MIN_NUDGE_GAP` after its last poll, once however often asked.
    fn early_poll(&mut self, h: usize, from: Millis) {
        if self.hosts[h].demand_nudged {
            return;
        }
        let gap = ms(marbled::demand::MIN_NUDGE_GAP);
        let at = from
            .saturating_add(POLL_ROUND_TRIP_MS)
            .max(self.hosts[h].demand_polled_at.saturating_add(gap));
        self.hosts[h].demand_nudged = true;
        self.schedule_at(at, Ev::DemandNudge(h));
    }

    /// Instant feed (`sim.demand_poll = 0`): every host whose view is out of date gets a fresh
    /// snapshot, one host at a time, so a boot by one host is seen by the next.
    fn push_demand(&mut self) {
        if self.policy != Policy::Demand || ms(self.cfg.demand_poll) > 0 {
            return;
        }
        loop {
            let mut fed = false;
            for h in 0..self.hosts.len() {
                if self.steps >= MAX_STEPS {
                    return;
                }
                let snapshot = self.demand_snapshot();
                if self.hosts[h].demand_seen.as_ref() != Some(&snapshot) {
                    self.hosts[h].demand_seen = Some(snapshot.clone());
                    self.feed(h, Input::Demand(Box::new(snapshot)));
                    self.pump();
                    fed = true;
                }
            }
            if !fed {
                return;
            }
        }
    }

    /// Move the clock forward, accounting idle VM time.
    fn advance(&mut self, at: Millis) {
        if at > self.now {
            for (k, team) in [Team::Root, Team::Spi].into_iter().enumerate() {
                // Starved: the team has waiting jobs and none of its VMs is on the host.
                let waiting = match team {
                    Team::Root => !self.root_queue.is_empty(),
                    _ => self.builds.iter().any(|b| b.state.is_waiting()),
                };
                let on_host = self.vms.iter().any(|v| v.team == team && v.occupies_host());
                if waiting && !on_host {
                    let since = *self.starved_since[k].get_or_insert(self.now);
                    self.longest_starved[k] = self.longest_starved[k].max(at - since);
                } else {
                    self.starved_since[k] = None;
                }
            }
            let idle = self.vms.iter().filter(|v| v.idle_running()).count() as u64;
            self.idle_ms += (at - self.now) * idle;
            self.now = at;
            for host in &mut self.hosts {
                host.ticks_here = 0;
                host.deadline_ignored = false;
            }
        }
    }

    /// Time since the start, ms.
    pub(super) fn offset(&self) -> u64 {
        self.now - EPOCH_MS
    }

    /// Time since the start.
    pub(super) fn offset_duration(&self) -> Duration {
        Duration::from_millis(self.offset())
    }

    pub(super) fn schedule_at(&mut self, at: Millis, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), ev);
    }

    pub(super) fn schedule_in(&mut self, after: u64, ev: Ev) {
        self.schedule_at(self.now.saturating_add(after), ev);
    }

    pub(super) fn violation(&mut self, kind: ViolationKind, description: String) {
        let offset = self.offset();
        self.violations.record(offset, kind, description);
    }

    /// Hand one input to host `h`'s world and carry out its effects.
    pub(super) fn feed(&mut self, h: usize, input: Input) {
        self.steps += 1;
        let who = if self.hosts.len() > 1 {
            format!("{} ", self.hosts[h].name)
        } else {
            String::new()
        };
        if self.log {
            eprintln!(
                "+{:<10} {who}<- {input:?}",
                super::metrics::fmt_ms(self.offset())
            );
        }
        let effects = self.hosts[h].world.handle(self.now, input);
        for effect in effects {
            if self.log && !matches!(effect, Effect::Persist) {
                eprintln!(
                    "+{:<10} {who}-> {effect:?}",
                    super::metrics::fmt_ms(self.offset())
                );
            }
            match effect {
                Effect::Run { op, vm, action } => self.start_op(h, op, &vm, &action),
                Effect::Reply { req, result } => self.on_reply(req, result),
                Effect::Progress { .. } | Effect::Emit(_) => {}
                Effect::Persist => {
                    // The actor snapshots the state at once; do the same so the cost and any
                    // panic in `persisted()` show up here too.
                    let _ = self.hosts[h].world.persisted();
                }
                Effect::RefreshInventory => self.refresh_inventory(h),
                Effect::RefreshDemand => self.nudge_demand(h),
                Effect::LaunchJenkinsNode { vm, .. } => {
                    // The simulated nodes are named after their VMs.
                    if let Some(&vi) = self.by_name.get(&vm) {
                        self.launch_node(vi);
                    }
                }
            }
        }
    }

    fn on_event(&mut self, ev: Ev) {
        match ev {
            Ev::RootArrival(i) => self.root_arrived(i),
            Ev::JenkinsArrival(i) => self.build_arrived(i),
            Ev::JenkinsRetry(i) => self.build_retry(i),
            Ev::OpDue(h, op) => self.op_due(h, op),
            Ev::OpReport(h, op) => self.op_report(h, op),
            Ev::GuestReady => {}
            Ev::JobEnd { vm, id } => self.job_end(vm, id),
            Ev::InventoryDone(h, list) => {
                self.hosts[h].refresh_in_flight = false;
                if std::mem::take(&mut self.hosts[h].refresh_again) {
                    self.refresh_inventory(h);
                }
                self.feed(h, Input::Inventory(list));
            }
            Ev::InventoryTimer(h, generation) => {
                if generation == self.hosts[h].refresh_gen {
                    self.refresh_inventory(h);
                    self.feed(h, Input::Tick);
                }
            }
            Ev::ReplyDeadline(req) => self.reply_overdue(req),
            Ev::DemandPoll(h) => self.demand_poll(h),
            Ev::DemandNudge(h) => {
                self.hosts[h].demand_nudged = false;
                let _ = self.feed_demand(h);
            }
        }
    }

    /// Host `h`'s actor `refresh_inventory`: re-arm the periodic timer; list unless a listing
    /// is in flight, in which case list again when it returns.
    pub(super) fn refresh_inventory(&mut self, h: usize) {
        self.hosts[h].refresh_gen += 1;
        let interval = self.hosts[h].world.config().inventory_interval_ms.max(1000);
        let generation = self.hosts[h].refresh_gen;
        self.schedule_in(interval, Ev::InventoryTimer(h, generation));
        if self.hosts[h].refresh_in_flight {
            self.hosts[h].refresh_again = true;
            return;
        }
        self.hosts[h].refresh_in_flight = true;
        let listing: Vec<ObservedVm> = self
            .vms
            .iter()
            .filter(|v| v.host == h)
            .map(SimVm::observed)
            .collect();
        self.schedule_in(
            ms(self.cfg.inventory_latency),
            Ev::InventoryDone(h, listing),
        );
    }

    pub(super) fn check_capacity(&mut self) {
        for h in 0..self.hosts.len() {
            let occupying: Vec<String> = self
                .vms
                .iter()
                .filter(|v| v.host == h && v.occupies_host())
                .map(|v| format!("{} ({:?})", v.name, v.power))
                .collect();
            let capacity = self.hosts[h].capacity;
            if occupying.len() > capacity as usize {
                if !self.hosts[h].over_capacity {
                    self.hosts[h].over_capacity = true;
                    self.violation(
                        ViolationKind::OverCapacity,
                        format!(
                            "{} VMs occupy host {} of capacity {capacity}: {}",
                            occupying.len(),
                            self.hosts[h].name,
                            occupying.join(", ")
                        ),
                    );
                }
            } else {
                self.hosts[h].over_capacity = false;
            }
        }
    }

    fn report(&self) -> Report {
        let end_wait = |at: u64| self.offset().saturating_sub(at);
        let root_unstarted: Vec<u64> = self
            .root_jobs
            .iter()
            .filter(|j| j.state == RootState::Queued)
            .map(|j| end_wait(j.arrival.at_ms))
            .collect();
        let root_running = self
            .root_jobs
            .iter()
            .filter(|j| j.state == RootState::Running)
            .count() as u64;
        let spi_unstarted: Vec<u64> = self
            .builds
            .iter()
            .filter(|b| b.state.is_waiting())
            .map(|b| end_wait(b.arrival.at_ms))
            .collect();
        let spi_running = self
            .builds
            .iter()
            .filter(|b| b.state == BuildState::Running)
            .count() as u64;
        let mut teams = BTreeMap::new();
        teams.insert(
            "root",
            TeamReport::new(
                &self.stats_root,
                root_running,
                &root_unstarted,
                self.longest_starved[0],
            ),
        );
        teams.insert(
            "spi",
            TeamReport::new(
                &self.stats_spi,
                spi_running,
                &spi_unstarted,
                self.longest_starved[1],
            ),
        );
        Report {
            policy: match self.policy {
                Policy::Cycle => "cycle".into(),
                Policy::Manual => "manual".into(),
                Policy::Demand => "demand".into(),
            },
            seed: self.seed,
            simulated_ms: self.offset(),
            vms: self.vms.len(),
            capacity: self.hosts.iter().map(|h| h.capacity).sum(),
            hosts: self
                .hosts
                .iter()
                .enumerate()
                .map(|(h, host)| HostReport {
                    name: host.name.clone(),
                    vms: self.vms.iter().filter(|v| v.host == h).count(),
                    capacity: host.capacity,
                    vm_boots: host.boots,
                })
                .collect(),
            root_boots_per_job: ratio(self.root_boots, self.stats_root.arrived),
            boots_per_job: ratio(self.boots, self.stats_root.arrived + self.stats_spi.arrived),
            spi_grant_latency: Latency::of(&self.grant_latencies),
            teams,
            vm_boots: self.boots,
            root_boots: self.root_boots,
            // Still up without a job at the end count too: their boot served nothing yet.
            root_boots_unused: self.root_boots_unused
                + self
                    .vms
                    .iter()
                    .filter(|v| v.team == Team::Root && v.power.occupies_host() && !v.runner_used)
                    .count() as u64,
            boot_failures: self.boot_failures,
            resumes: self.resumes,
            // Whole ms / 60 000, so the JSON is identical between runs.
            idle_vm_minutes: (self.idle_ms / 600) as f64 / 100.0,
            ops: self.op_counts.clone(),
            slot_requests: self.slot_requests,
            jenkins_launches: self.jenkins_launches,
            grants: self.grants,
            refusals: self.refusals.clone(),
            unanswered_requests: self.unanswered,
            unanswered_under_hang: self.unanswered_under_hang,
            pending_requests_at_end: self
                .requests
                .values()
                .filter(|r| !r.answered && !r.cancelled)
                .count() as u64,
            late_replies: self.late_replies,
            probe_stop_race_interruptions: self.race_interruptions,
            violations: self.violations.clone(),
            steps: self.steps,
        }
    }
}

/// A duration in whole ms.
pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
