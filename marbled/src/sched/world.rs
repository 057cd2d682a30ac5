//! The scheduler state and its entry point: `World::handle(now, input) -> effects`.
//!
//! Every input is applied, then [`World::step`] re-evaluates all rules against the new state
//! (expire requests, drive stops, serve slot requests, drain, cycle, readiness, background
//! probes). Each rule only acts when the VM it touches has no operation in flight, so a step
//! is idempotent and the order of inputs cannot produce two operations on one VM. The
//! capacity rule is checked at the one place that starts VMs ([`World::start_vm`]).
//!
//! The inputs are applied in sibling modules: inventories in `observe`, finished operations
//! in `outcome`, operator commands in `commands`; the state file's round trip is in
//! `persist`. The helpers every rule shares (issuing an operation, recording a decision,
//! starting a VM) stay here.

use std::collections::{BTreeMap, VecDeque};

use marble_proto::{
    Attribution, Decision, ErrorKind, Event, PowerState, Response, Team, WireError,
};

use super::persist::{InFlightOp, Lease, Quarantine, RunnerStanding, SeenJob, SpiWaiter, Streak};
use super::report::Counters;
use super::rng::SplitMix;
use super::vm::{Starter, StopPhase, StopPlan, VmState};
use super::{
    Action, DemandSnapshot, Effect, FleetRunner, Input, Millis, OpId, Policy, ReqId, SchedConfig,
    action_kind, format_ms,
};

/// A Jenkins slot request waiting for its answer.
#[derive(Debug, Clone)]
pub(super) struct SlotRequest {
    pub req: ReqId,
    pub vm: String,
    pub by: String,
    pub since: Millis,
    /// The caller waits for the host until then (`since` when it does not wait).
    pub deadline: Millis,
    pub phase: SlotPhase,
    /// The last progress message sent (so each is sent once).
    pub last_progress: String,
}

/// Where a slot request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SlotPhase {
    /// Waiting for the host.
    Queued,
    /// The host's VM is being probed and stopped for it.
    Preempting { victim: String },
    /// Its VM is starting; granted when ready. `preempted`: the VM stopped to make room.
    Starting { preempted: Option<String> },
}

/// Demand from the team that is refused: since when, and when last seen.
#[derive(Debug, Clone, Copy)]
pub(super) struct Demand {
    pub since: Millis,
    pub last_seen: Millis,
}

/// The scheduler state.
#[derive(Debug)]
pub struct World {
    pub(super) config: SchedConfig,
    pub(super) vms: BTreeMap<String, VmState>,
    pub(super) inventory_seen: bool,
    pub(super) inventory_ms: Millis,
    pub(super) ops: BTreeMap<OpId, (String, Action, Millis)>,
    next_op: u64,
    pub(super) locks: BTreeMap<String, Attribution>,
    pub(super) paused: Option<Attribution>,
    pub(super) draining: Option<Attribution>,
    pub(super) drain_waiters: Vec<(ReqId, Millis)>,
    pub(super) leases: BTreeMap<String, Lease>,
    pub(super) quarantine: BTreeMap<String, Quarantine>,
    pub(super) slots: Vec<SlotRequest>,
    pub(super) last_cycled: Option<String>,
    pub(super) cycle_off_until: Millis,
    /// Slot requests refused or queued since then (the fairness rule's input).
    pub(super) slot_demand: Option<Demand>,
    /// `Reconcile` notes restored from the state file, applied by the first inventory.
    pub(super) pending_reconcile: BTreeMap<String, InFlightOp>,
    pub(super) decisions: VecDeque<Decision>,
    pub(super) rng: SplitMix,
    /// The latest `now` seen; deadlines at or before it are acted on by `step`.
    pub(super) last_now: Millis,
    /// The last demand snapshot (policy `demand`).
    pub(super) demand: DemandSnapshot,
    /// When it was taken (its poll began; its arrival when the source does not say).
    pub(super) demand_at: Millis,
    /// When it arrived (a warm boot acts only on the snapshot that just arrived).
    pub(super) demand_arrived_at: Millis,
    /// Since when no VM holds the host (policy `demand` boots only on a snapshot newer than
    /// this, so a host never boots on a picture taken before another host reacted to it).
    pub(super) host_free_since: Option<Millis>,
    /// The Jenkins agent was stopped to free the host for idle-host warmth
    /// (`agent_warm_handover`): its warm runner boots without the idle-warmth delay. Cleared
    /// once a ROOT VM holds the host.
    pub(super) freed_for_warmth: bool,
    /// The free moment a fresh demand snapshot was already asked for (one ask per free
    /// episode).
    pub(super) demand_asked_for: Option<Millis>,
    /// Jobs seen queued or running within `warm_window`, by job id: what the warm-runner
    /// prediction learns from (kept in the state file).
    pub(super) recent_jobs: BTreeMap<u64, SeenJob>,
    /// Running runners' standing from the state file, applied at the first inventory.
    pub(super) restored_runners: BTreeMap<String, RunnerStanding>,
    /// Last time a queued job had waited `warm_yield` without a host while no idle runner
    /// was left in the fleet to yield: the fleet is full, and a warm runner booted now would
    /// soon give its host up unused.
    pub(super) congested_at: Option<Millis>,
    /// Policy `demand`: the highest rank this host's spare runner (by VM name) had among the
    /// hosts that could yield to a queued job, by job id (`stagger`).
    pub(super) yield_ranks: BTreeMap<(u64, String), usize>,
    /// Policy `demand`: the highest rank this host's idle-host runner (by VM name) had among
    /// the runners that could swap for a missing target (its labels, and since when it is
    /// missing), and the snapshot time the swap first became possible here (`swap`; not
    /// persisted).
    pub(super) swap_ranks: BTreeMap<(Vec<String>, Millis, String), (usize, Millis)>,
    /// Free runners that left GitHub's list in the last [`super::swap::LEFT_MEMORY_MS`], with
    /// the time of the first snapshot that lacked them: a runner another host stopped to swap leaves
    /// the list before this host may have ranked against it (`swap`).
    pub(super) left_recently: Vec<(FleetRunner, Millis)>,
    /// Jenkins agents listed idle in the node list (and those that left it lately), by node
    /// name: since when without a break (`agents`; not persisted: after a restart every agent
    /// counts as listed from then on).
    pub(super) agents_idle_seen: BTreeMap<String, super::agents::IdleSeen>,
    /// This host's agents waiting for another agent's turn to give its host up, by VM name,
    /// since when (`agents`; not persisted).
    /// When this host last asked Jenkins to launch its node for a build that accepts any
    /// node (`sched/launch.rs`); not persisted (after a restart a launch may come sooner).
    pub(super) launched_at: Option<Millis>,
    pub(super) agent_turn_waits: BTreeMap<String, Millis>,
    /// Jobs whose wait is already in `counters.root_job_waits` (newest last, bounded): a job
    /// runs for many polls and is counted once.
    pub(super) waits_counted: VecDeque<u64>,
    /// Fair share: turns one team took in a row while the other waited.
    pub(super) streak: Option<Streak>,
    /// Fair share: Jenkins nodes waiting for this host, by VM name (`share::note_waiter`).
    pub(super) spi_waiters: BTreeMap<String, SpiWaiter>,
    /// Counters for metrics.
    pub(super) counters: Counters,
}

impl World {
    /// A fresh world (no state file).
    pub fn new(config: SchedConfig, now: Millis) -> Self {
        let rng = SplitMix::new(config.seed);
        Self {
            config,
            vms: BTreeMap::new(),
            inventory_seen: false,
            inventory_ms: 0,
            ops: BTreeMap::new(),
            next_op: 1,
            locks: BTreeMap::new(),
            paused: None,
            draining: None,
            drain_waiters: Vec::new(),
            leases: BTreeMap::new(),
            quarantine: BTreeMap::new(),
            slots: Vec::new(),
            last_cycled: None,
            cycle_off_until: 0,
            slot_demand: None,
            pending_reconcile: BTreeMap::new(),
            decisions: VecDeque::new(),
            rng,
            last_now: now,
            demand: DemandSnapshot::default(),
            demand_at: 0,
            demand_arrived_at: 0,
            host_free_since: None,
            freed_for_warmth: false,
            demand_asked_for: None,
            recent_jobs: BTreeMap::new(),
            restored_runners: BTreeMap::new(),
            waits_counted: VecDeque::new(),
            congested_at: None,
            yield_ranks: BTreeMap::new(),
            swap_ranks: BTreeMap::new(),
            left_recently: Vec::new(),
            agents_idle_seen: BTreeMap::new(),
            agent_turn_waits: BTreeMap::new(),
            launched_at: None,
            streak: None,
            spi_waiters: BTreeMap::new(),
            counters: Counters::default(),
        }
    }

    /// Counters since start (metrics).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The last demand snapshot.
    pub fn demand(&self) -> &DemandSnapshot {
        &self.demand
    }

    /// The configuration in force.
    pub fn config(&self) -> &SchedConfig {
        &self.config
    }

    /// Replace reloadable configuration (SIGHUP). The jitter sequence keeps its position.
    pub fn reconfigure(&mut self, config: SchedConfig) {
        self.config = config;
    }

    /// Advance the state machine.
    pub fn handle(&mut self, now: Millis, input: Input) -> Vec<Effect> {
        // Time never runs backwards inside the world (a wall clock step back would otherwise
        // make deadlines replay).
        let now = now.max(self.last_now);
        self.last_now = now;
        let before = self.persisted();
        let mut fx = Vec::new();
        match input {
            Input::Inventory(vms) => self.on_inventory(now, vms, &mut fx),
            Input::Finished { op, outcome } => self.on_finished(now, op, outcome, &mut fx),
            Input::Command { req, caller, cmd } => self.on_command(now, req, caller, cmd, &mut fx),
            Input::Cancelled { req } => self.on_cancelled(req),
            Input::Tick => {}
            Input::Demand(snapshot) => {
                self.remember_jobs(now, &snapshot);
                self.count_job_waits(&snapshot);
                self.note_used_runners(now, &snapshot, &mut fx);
                // Never later than its arrival (a fleet poller's clock may run ahead).
                self.demand_at = match snapshot.taken_at_ms {
                    0 => now,
                    taken => taken.min(now),
                };
                self.demand_arrived_at = now;
                let before = std::mem::replace(&mut self.demand, *snapshot).free_runners;
                self.note_runners_left(before);
                self.note_idle_agents(self.demand_at);
                self.prune_yield_ranks();
            }
        }
        self.step(now, &mut fx);
        if self.persisted() != before {
            fx.push(Effect::Persist);
        }
        fx
    }

    /// The earliest future time at which something is due. Deadlines that are already due
    /// but blocked (waiting for an operation) are not returned: the operation's completion
    /// is an input that re-runs the rules.
    pub fn next_deadline(&self) -> Option<Millis> {
        let now = self.last_now;
        let mut times: Vec<Millis> = Vec::new();
        for slot in &self.slots {
            if slot.phase == SlotPhase::Queued {
                times.push(slot.deadline);
            }
        }
        for (_, deadline) in &self.drain_waiters {
            times.push(*deadline);
        }
        for vm in self.vms.values().filter(|vm| vm.op.is_none()) {
            match &vm.stop {
                Some(StopPlan {
                    phase: StopPhase::Probe { not_before },
                    ..
                }) => times.push(*not_before),
                Some(StopPlan {
                    phase: StopPhase::Graceful { kill_at },
                    ..
                }) => times.push(*kill_at),
                _ => {}
            }
            if vm.power == PowerState::Running && vm.stop.is_none() {
                times.push(vm.next_probe_ms);
                if let Some(at) = vm.on_until {
                    times.push(at);
                }
            }
        }
        for lease in self.leases.values() {
            times.push(lease.until_ms);
        }
        for since in self.agent_turn_waits.values() {
            times.push(since.saturating_add(super::agents::AGENT_TURN_MS));
        }
        for q in self.quarantine.values() {
            times.push(q.until_ms);
        }
        if self.config.policy == Policy::Cycle {
            times.push(self.cycle_off_until);
            if let Some(demand) = self.slot_demand {
                times.push(demand.since.saturating_add(self.config.fairness_bound_ms));
                times.push(demand.last_seen.saturating_add(self.demand_expiry_ms()));
            }
        }
        times.into_iter().filter(|t| *t > now).min()
    }

    /// Resolve a VM name or UUID (with or without braces, any case) to its name.
    pub fn resolve(&self, name_or_uuid: &str) -> Option<String> {
        if self.vms.contains_key(name_or_uuid) {
            return Some(name_or_uuid.to_owned());
        }
        let wanted = name_or_uuid
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .to_ascii_lowercase();
        if wanted.is_empty() {
            return None;
        }
        self.vms
            .values()
            .find(|vm| vm.uuid.eq_ignore_ascii_case(&wanted))
            .map(|vm| vm.name.clone())
    }

    /// Whether the first inventory since start has arrived: before it no VM is known, so a
    /// name that does not resolve yet is not known to be wrong.
    pub fn has_inventory(&self) -> bool {
        self.inventory_seen
    }

    /// Known VM names, sorted.
    pub fn vm_names(&self) -> Vec<String> {
        self.vms.keys().cloned().collect()
    }

    /// The answer for a VM name that the inventory does not know: exit 2, listing the
    /// known ones.
    pub fn unknown_vm(&self, vm: &str) -> WireError {
        let known = self.vm_names();
        let list = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        WireError::new(
            ErrorKind::NotFound,
            format!("unknown VM {vm:?}; known VMs: {list}"),
        )
    }

    // ---- the rules ----------------------------------------------------------------------

    /// Re-evaluate every rule against the current state.
    fn step(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        self.expire_leases(now, fx);
        self.drive_stops(now, fx);
        self.serve_slots(now, fx);
        self.drive_drain(now, fx);
        self.drive_cycle(now, fx);
        self.drive_demand(now, fx);
        self.runner_watchdog(now, fx);
        self.check_readiness(now, fx);
        self.background_probes(now, fx);
    }

    fn expire_leases(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let expired: Vec<String> = self
            .leases
            .iter()
            .filter(|(name, lease)| {
                lease.until_ms <= now
                    || !self
                        .vms
                        .get(*name)
                        .is_some_and(|vm| vm.power.occupies_host())
                        && self.inventory_seen
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            if let Some(lease) = self.leases.remove(&name) {
                let running = self
                    .vms
                    .get(&name)
                    .is_some_and(|vm| vm.power.occupies_host());
                if running {
                    self.decide(
                        now,
                        Some(&name),
                        format!(
                            "grace for {} ended; protected only while busy from now on",
                            lease.by
                        ),
                        fx,
                    );
                }
            }
        }
    }

    fn check_readiness(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        // A VM found running that we did not start (daemon restart, manual start) gets one
        // readiness check so the scheduler knows whether its guest answers.
        let unchecked: Vec<String> = self
            .vms
            .values()
            .filter(|vm| {
                vm.power == PowerState::Running
                    && !vm.ready_checked
                    && !vm.power_stale
                    && vm.op.is_none()
                    && vm.stop.is_none()
                    && vm.start.is_none()
            })
            .map(|vm| vm.name.clone())
            .collect();
        for name in unchecked {
            if let Some(vm) = self.vms.get_mut(&name) {
                vm.ready_checked = true;
            }
            let timeout_ms = self.config.ready_timeout_ms;
            self.run(now, &name, Action::WaitReady { timeout_ms }, fx);
        }
    }

    fn background_probes(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let due: Vec<(String, Team)> = self
            .vms
            .values()
            .filter(|vm| {
                vm.power == PowerState::Running
                    && vm.ready
                    && vm.op.is_none()
                    && vm.stop.is_none()
                    && vm.next_probe_ms <= now
            })
            .map(|vm| (vm.name.clone(), vm.team))
            .collect();
        for (name, team) in due {
            self.run(now, &name, Action::Probe(team), fx);
        }
    }

    // ---- shared helpers -----------------------------------------------------------------

    /// Issue an operation on a VM (the caller made sure it has none in flight).
    pub(super) fn run(&mut self, now: Millis, name: &str, action: Action, fx: &mut Vec<Effect>) {
        let op = OpId(self.next_op);
        self.next_op += 1;
        if let Some(vm) = self.vms.get_mut(name) {
            vm.op = Some((op, action.clone()));
        }
        self.ops.insert(op, (name.to_owned(), action.clone(), now));
        fx.push(Effect::Emit(Event::OperationStarted {
            at_ms: now,
            vm: name.to_owned(),
            operation: action_kind(&action).to_owned(),
        }));
        fx.push(Effect::Run {
            op,
            vm: name.to_owned(),
            action,
        });
    }

    /// Record a decision (deduplicated against the previous one for the same VM).
    pub(super) fn decide(
        &mut self,
        now: Millis,
        vm: Option<&str>,
        text: String,
        fx: &mut Vec<Effect>,
    ) {
        let repeated = self
            .decisions
            .iter()
            .rev()
            .find(|d| d.vm.as_deref() == vm)
            .is_some_and(|d| d.text == text);
        if repeated {
            return;
        }
        let decision = Decision {
            at_ms: now,
            vm: vm.map(str::to_owned),
            text,
        };
        self.decisions.push_back(decision.clone());
        while self.decisions.len() > self.config.decision_log_len.max(1) as usize {
            self.decisions.pop_front();
        }
        fx.push(Effect::Emit(Event::Decision(decision)));
    }

    /// Running VMs a policy may act on now: readiness known, no operation, start or stop
    /// under way, power state not in doubt, no slot grace protecting them.
    pub(super) fn settled_running(&self, now: Millis) -> Vec<String> {
        self.vms
            .values()
            .filter(|vm| {
                vm.power == PowerState::Running
                    && vm.op.is_none()
                    && vm.stop.is_none()
                    && vm.start.is_none()
                    && vm.ready_checked
                    && !vm.power_stale
                    && self.leases.get(&vm.name).is_none_or(|l| l.until_ms <= now)
            })
            .map(|vm| vm.name.clone())
            .collect()
    }

    /// Names of the VMs that hold the host.
    pub(super) fn occupying_names(&self) -> Vec<String> {
        self.vms
            .values()
            .filter(|vm| vm.occupies())
            .map(|vm| vm.name.clone())
            .collect()
    }

    /// The error for "the host does not take new work" (drain).
    pub(super) fn host_locked_error(&self) -> WireError {
        let text = match &self.draining {
            Some(a) => format!(
                "host is draining (by {} since {}): {}",
                a.by,
                format_ms(a.since_ms),
                a.reason
            ),
            None => "host is draining".to_owned(),
        };
        WireError::new(ErrorKind::Locked, text)
    }

    /// Why `name` may not be started, if it may not (lock, drain, quarantine).
    pub(super) fn start_blocker(&self, now: Millis, name: &str) -> Option<WireError> {
        self.refusal(name)
            .or_else(|| self.quarantine_blocker(now, name))
    }

    /// Why nobody may have `name` now, running or not: its lock or the host's drain. Checked
    /// before anything else (docs/SCHEDULER.md: 77 first), so a running VM that is locked,
    /// or one on a draining host, is refused rather than granted (a grant would renew its
    /// grace and keep a drain from ever emptying the host).
    pub(super) fn refusal(&self, name: &str) -> Option<WireError> {
        if let Some(lock) = self.locks.get(name) {
            return Some(WireError::new(
                ErrorKind::Locked,
                format!(
                    "VM {name} is locked by {} since {}: {}",
                    lock.by,
                    format_ms(lock.since_ms),
                    lock.reason
                ),
            ));
        }
        if self.draining.is_some() {
            return Some(self.host_locked_error());
        }
        None
    }

    /// Why `name` may not be started because of its quarantine (an operator may override
    /// it: `vm start` clears it).
    pub(super) fn quarantine_blocker(&self, now: Millis, name: &str) -> Option<WireError> {
        if let Some(q) = self.quarantine.get(name)
            && q.until_ms > now
        {
            return Some(WireError::new(
                ErrorKind::Locked,
                format!(
                    "VM {name} is quarantined until {} after {} failed starts: {}",
                    format_ms(q.until_ms),
                    q.failures,
                    q.last_error
                ),
            ));
        }
        None
    }

    /// Start (or resume) `name` if the capacity allows. The one place VMs are started.
    pub(super) fn start_vm(
        &mut self,
        now: Millis,
        name: &str,
        starter: Starter,
        fx: &mut Vec<Effect>,
    ) -> Result<(), String> {
        let occupying = self.occupying_names();
        if occupying.len() >= self.config.capacity as usize {
            return Err(format!("host full: {}", occupying.join(", ")));
        }
        let Some(vm) = self.vms.get_mut(name) else {
            return Err(format!("unknown VM {name}"));
        };
        if vm.op.is_some() {
            return Err(format!("{name} has an operation in flight"));
        }
        let action = match vm.power {
            PowerState::Suspended | PowerState::Paused => Action::Resume,
            _ => Action::Start,
        };
        vm.start = Some(starter);
        vm.reset_running_state();
        vm.ready_checked = true;
        vm.started_here = true;
        if action == Action::Start {
            vm.boot_issued_ms = Some(now);
        }
        self.counters.boots += 1;
        self.run(now, name, action, fx);
        Ok(())
    }

    fn demand_expiry_ms(&self) -> u64 {
        self.config
            .cycle_off_window_ms
            .max(self.config.busy_recheck_ms)
            .max(1)
    }

    /// Slot demand that is still live at `now`.
    pub(super) fn live_demand(&self, now: Millis) -> Option<Demand> {
        self.slot_demand
            .filter(|d| now.saturating_sub(d.last_seen) <= self.demand_expiry_ms())
    }

    pub(super) fn note_demand(&mut self, now: Millis) {
        let since = self.live_demand(now).map_or(now, |d| d.since);
        self.slot_demand = Some(Demand {
            since,
            last_seen: now,
        });
    }
}

pub(super) fn reply_done(req: ReqId, message: String, fx: &mut Vec<Effect>) {
    fx.push(Effect::Reply {
        req,
        result: Ok(Response::Done { message }),
    });
}

/// Answer a waiting client with an error.
pub(super) fn reply_err(
    req: ReqId,
    kind: ErrorKind,
    message: impl Into<String>,
    fx: &mut Vec<Effect>,
) {
    fx.push(Effect::Reply {
        req,
        result: Err(WireError::new(kind, message)),
    });
}
