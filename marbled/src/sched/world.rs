//! The scheduler state and its entry point: `World::handle(now, input) -> effects`.
//!
//! Every input is applied, then [`World::step`] re-evaluates all rules against the new state
//! (expire requests, drive stops, serve slot requests, drain, cycle, readiness, background
//! probes). Each rule only acts when the VM it touches has no operation in flight, so a step
//! is idempotent and the order of inputs cannot produce two operations on one VM. The
//! capacity rule is checked at the one place that starts VMs ([`World::start_vm`]).

use std::collections::{BTreeMap, VecDeque};

use marble_proto::{
    Attribution, BusyState, Decision, ErrorKind, Event, LockTarget, PowerState, Response, Team,
    UnlockTarget, WireError,
};

use super::persist::{InFlightOp, Lease, Persisted, Quarantine, RunnerStanding, SeenJob, Streak};
use super::report::Counters;
use super::rng::SplitMix;
use super::vm::{Starter, StopPhase, StopPlan, StopWhy, VmState};
use super::{
    Action, Command, DemandSnapshot, Effect, Input, Millis, ObservedVm, OpId, Outcome, Policy,
    ProbeResult, ReqId, SchedConfig, action_kind, format_ms,
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
    pending_reconcile: BTreeMap<String, InFlightOp>,
    pub(super) decisions: VecDeque<Decision>,
    pub(super) rng: SplitMix,
    /// The latest `now` seen; deadlines at or before it are acted on by `step`.
    pub(super) last_now: Millis,
    /// The last demand snapshot (policy `demand`).
    pub(super) demand: DemandSnapshot,
    /// When it arrived.
    pub(super) demand_at: Millis,
    /// Since when no VM holds the host (policy `demand` boots only on a snapshot newer than
    /// this, so a host never boots on a picture taken before another host reacted to it).
    pub(super) host_free_since: Option<Millis>,
    /// The free moment a fresh demand snapshot was already asked for (one ask per free
    /// episode).
    pub(super) demand_asked_for: Option<Millis>,
    /// Jobs seen queued or running within `warm_window`, by job id: what the warm-runner
    /// prediction learns from (kept in the state file).
    pub(super) recent_jobs: BTreeMap<u64, SeenJob>,
    /// Running runners' standing from the state file, applied at the first inventory.
    pub(super) restored_runners: BTreeMap<String, RunnerStanding>,
    /// Last time a queued job had waited `warm_yield` without a host: the fleet is full,
    /// and a warm runner booted now would soon give its host up unused.
    pub(super) congested_at: Option<Millis>,
    /// Jobs whose wait is already in `counters.root_job_waits` (newest last, bounded): a job
    /// runs for many polls and is counted once.
    pub(super) waits_counted: VecDeque<u64>,
    /// Fair share: turns one team took in a row while the other waited.
    pub(super) streak: Option<Streak>,
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
            host_free_since: None,
            demand_asked_for: None,
            recent_jobs: BTreeMap::new(),
            restored_runners: BTreeMap::new(),
            waits_counted: VecDeque::new(),
            congested_at: None,
            streak: None,
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

    /// A world restored from the state file; in-flight operations become "needs reconcile".
    /// Nothing is started before the first inventory says what actually runs.
    pub fn restore(config: SchedConfig, persisted: Persisted, now: Millis) -> Self {
        let mut world = Self::new(config, now);
        world.locks = persisted.locks;
        world.paused = persisted.paused;
        world.draining = persisted.draining;
        world.leases = persisted.leases;
        world.quarantine = persisted.quarantine;
        world.last_cycled = persisted.last_cycled;
        world.cycle_off_until = persisted.cycle_off_until_ms;
        world.pending_reconcile = persisted.in_flight;
        // Jobs that left the window while the daemon was down no longer count.
        let horizon = now.saturating_sub(world.config.warm_window_ms);
        world.recent_jobs = persisted.seen_jobs;
        world
            .recent_jobs
            .retain(|_, seen| world.config.warm_window_ms > 0 && seen.since_ms >= horizon);
        world.streak = persisted.streak;
        world.restored_runners = persisted.runners;
        world
    }

    /// What to write to the state file.
    pub fn persisted(&self) -> Persisted {
        let mut in_flight: BTreeMap<String, InFlightOp> = self
            .ops
            .values()
            .filter(|(_, action, _)| !matches!(action, Action::Probe(_)))
            .map(|(vm, action, since)| {
                (
                    vm.clone(),
                    InFlightOp {
                        operation: action_kind(action).to_owned(),
                        since_ms: *since,
                    },
                )
            })
            .collect();
        // Not yet reconciled notes stay until an inventory has been seen.
        for (vm, op) in &self.pending_reconcile {
            in_flight.entry(vm.clone()).or_insert_with(|| op.clone());
        }
        let mut runners: BTreeMap<String, RunnerStanding> = self
            .vms
            .values()
            .filter(|vm| vm.team == Team::Root && vm.power.occupies_host())
            .filter(|vm| vm.on_until.is_some() || vm.running_because.is_some() || vm.was_busy)
            .map(|vm| {
                (
                    vm.name.clone(),
                    RunnerStanding {
                        on_until_ms: vm.on_until,
                        because: vm.running_because.clone(),
                        used: vm.was_busy,
                    },
                )
            })
            .collect();
        // Not yet applied (no inventory since the restart): kept for the next one.
        for (vm, standing) in &self.restored_runners {
            runners
                .entry(vm.clone())
                .or_insert_with(|| standing.clone());
        }
        Persisted {
            locks: self.locks.clone(),
            paused: self.paused.clone(),
            draining: self.draining.clone(),
            leases: self.leases.clone(),
            quarantine: self.quarantine.clone(),
            last_cycled: self.last_cycled.clone(),
            cycle_off_until_ms: self.cycle_off_until,
            in_flight,
            seen_jobs: self.recent_jobs.clone(),
            streak: self.streak,
            runners,
        }
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
                self.demand = snapshot;
                self.demand_at = now;
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

    /// Known VM names, sorted.
    pub fn vm_names(&self) -> Vec<String> {
        self.vms.keys().cloned().collect()
    }

    // ---- inputs -------------------------------------------------------------------------

    fn on_inventory(&mut self, now: Millis, observed: Vec<ObservedVm>, fx: &mut Vec<Effect>) {
        self.inventory_seen = true;
        self.inventory_ms = now;
        let mut seen = std::collections::BTreeSet::new();
        for obs in observed {
            seen.insert(obs.name.clone());
            let vm = self.vms.entry(obs.name.clone()).or_insert_with(|| {
                VmState::new(
                    obs.name.clone(),
                    obs.uuid.clone(),
                    obs.team,
                    PowerState::Invalid,
                )
            });
            vm.uuid = obs.uuid;
            vm.team = obs.team;
            vm.labels = obs.labels;
            vm.power_stale = false;
            // A listing that started before our own start finished may still say
            // "stopped": while a start is in flight only an occupying state is believed.
            let starting = matches!(
                vm.op,
                Some((_, Action::Start | Action::Resume | Action::WaitReady { .. }))
            );
            if starting && !obs.power.occupies_host() {
                continue;
            }
            if vm.power != obs.power {
                let from = std::mem::replace(&mut vm.power, obs.power.clone());
                if !obs.power.occupies_host() {
                    vm.reset_running_state();
                }
                fx.push(Effect::Emit(Event::VmPower {
                    at_ms: now,
                    vm: obs.name.clone(),
                    from,
                    to: obs.power,
                }));
            }
        }
        // The first inventory after a restart: a runner still running keeps its standing.
        for (name, standing) in std::mem::take(&mut self.restored_runners) {
            if let Some(vm) = self.vms.get_mut(&name)
                && vm.team == Team::Root
                && vm.power.occupies_host()
            {
                vm.on_until = standing.on_until_ms;
                vm.running_because = standing.because;
                vm.was_busy = standing.used;
            }
        }
        // VMs gone from the hypervisor (unregistered): forget them unless an op still runs.
        let gone: Vec<String> = self
            .vms
            .keys()
            .filter(|name| !seen.contains(*name))
            .cloned()
            .collect();
        for name in gone {
            if self.vms.get(&name).is_some_and(|vm| vm.op.is_none()) {
                self.vms.remove(&name);
                self.decide(
                    now,
                    Some(&name),
                    "VM no longer listed by prlctl; forgotten".into(),
                    fx,
                );
                let reqs: Vec<ReqId> = self
                    .slots
                    .iter()
                    .filter(|s| s.vm == name)
                    .map(|s| s.req)
                    .collect();
                for req in reqs {
                    self.finish_slot(
                        req,
                        Err(WireError::new(
                            ErrorKind::NotFound,
                            format!("VM {name} was unregistered while waiting"),
                        )),
                        fx,
                    );
                }
            }
        }
        for (name, op) in std::mem::take(&mut self.pending_reconcile) {
            let power = self.vms.get(&name).map_or_else(
                || "not listed".to_owned(),
                |vm| vm.power.as_word().to_owned(),
            );
            if let Some(vm) = self.vms.get_mut(&name) {
                vm.reconcile = None;
            }
            self.decide(
                now,
                Some(&name),
                format!(
                    "reconciled: `{}` was in flight since {} when the daemon stopped; prlctl now \
                     reports {power}",
                    op.operation,
                    format_ms(op.since_ms)
                ),
                fx,
            );
        }
        let occupying: Vec<&str> = self
            .vms
            .values()
            .filter(|vm| vm.power.occupies_host())
            .map(|vm| vm.name.as_str())
            .collect();
        if occupying.len() > self.config.capacity as usize {
            let text = format!(
                "over capacity: {} VMs hold the host ({}), capacity {}; starting nothing until \
                 they stop",
                occupying.len(),
                occupying.join(", "),
                self.config.capacity
            );
            self.decide(now, None, text, fx);
        }
    }

    fn on_finished(&mut self, now: Millis, op: OpId, outcome: Outcome, fx: &mut Vec<Effect>) {
        let Some((name, action, _)) = self.ops.remove(&op) else {
            return;
        };
        let error = match &outcome {
            Outcome::Failed(err) => Some(err.clone()),
            _ => None,
        };
        fx.push(Effect::Emit(Event::OperationFinished {
            at_ms: now,
            vm: name.clone(),
            operation: action_kind(&action).to_owned(),
            error,
        }));
        let Some(vm) = self.vms.get_mut(&name) else {
            return;
        };
        if vm.op.as_ref().is_some_and(|(id, _)| *id == op) {
            vm.op = None;
        }
        match (action, outcome) {
            (Action::Probe(_), Outcome::Probe(result)) => self.on_probe(now, &name, &result, fx),
            (Action::Probe(_), other) => {
                let why = match other {
                    Outcome::Failed(err) => err,
                    _ => "probe gave no answer".to_owned(),
                };
                self.on_probe(now, &name, &ProbeResult::Unknown(why), fx);
            }
            (Action::Start | Action::Resume, Outcome::Done) => self.on_started(now, &name, fx),
            (Action::Start | Action::Resume, failed) => {
                let err = outcome_text(&failed);
                let counts = !matches!(failed, Outcome::NotRun(_));
                self.on_start_failed(now, &name, &err, counts, fx);
            }
            (Action::WaitReady { .. }, Outcome::Done) => self.on_ready(now, &name, fx),
            (Action::WaitReady { .. }, failed) => {
                let err = outcome_text(&failed);
                let counts = !matches!(failed, Outcome::NotRun(_));
                self.on_not_ready(now, &name, &err, counts, fx);
            }
            (Action::Stop(kind), outcome) => self.on_stop_finished(now, &name, kind, outcome, fx),
        }
    }

    fn on_command(
        &mut self,
        now: Millis,
        req: ReqId,
        caller: String,
        cmd: Command,
        fx: &mut Vec<Effect>,
    ) {
        match cmd {
            Command::StartVm { vm } => self.admin_start(now, req, &caller, &vm, fx),
            Command::StopVm { vm, force } => self.admin_stop(now, req, &vm, force, fx),
            Command::RequestSlot { vm, wait_ms } => {
                self.request_slot(now, req, caller, vm, wait_ms, fx);
            }
            Command::Pause { reason } => {
                let text = format!("cycling paused by {caller}: {reason}");
                self.paused = Some(attribution(&caller, reason, now));
                self.decide(now, None, text.clone(), fx);
                reply_done(req, text, fx);
            }
            Command::Resume => {
                let was_draining = self.draining.take().is_some();
                let was_paused = self.paused.take().is_some();
                for (waiter, _) in std::mem::take(&mut self.drain_waiters) {
                    reply_err(
                        waiter,
                        ErrorKind::InvalidState,
                        format!("drain ended by {caller} (resume)"),
                        fx,
                    );
                }
                let text = match (was_paused, was_draining) {
                    (false, false) => "nothing to resume: not paused, not draining".to_owned(),
                    _ => format!("cycling resumed by {caller}"),
                };
                self.decide(now, None, text.clone(), fx);
                reply_done(req, text, fx);
            }
            Command::Lock { target, reason } => {
                let names: Vec<String> = match &target {
                    LockTarget::Vm(vm) => vec![vm.clone()],
                    LockTarget::AllExcept(keep) => self
                        .vms
                        .keys()
                        .filter(|name| *name != keep)
                        .cloned()
                        .collect(),
                };
                for name in &names {
                    self.locks
                        .insert(name.clone(), attribution(&caller, reason.clone(), now));
                }
                let text = format!("locked {} by {caller}: {reason}", names.join(", "));
                self.decide(now, None, text.clone(), fx);
                reply_done(req, text, fx);
            }
            Command::Unlock { target } => {
                let names: Vec<String> = match target {
                    UnlockTarget::Vm(vm) => {
                        self.locks.remove(&vm).map(|_| vm).into_iter().collect()
                    }
                    UnlockTarget::All => std::mem::take(&mut self.locks).into_keys().collect(),
                };
                let text = if names.is_empty() {
                    "nothing was locked".to_owned()
                } else {
                    format!("unlocked {} by {caller}", names.join(", "))
                };
                self.decide(now, None, text.clone(), fx);
                reply_done(req, text, fx);
            }
            Command::Drain { reason, wait_ms } => {
                if self.draining.is_none() {
                    self.draining = Some(attribution(&caller, reason.clone(), now));
                }
                self.decide(now, None, format!("drain by {caller}: {reason}"), fx);
                // Queued slot requests cannot be served any more.
                let queued: Vec<ReqId> = self
                    .slots
                    .iter()
                    .filter(|s| s.phase == SlotPhase::Queued)
                    .map(|s| s.req)
                    .collect();
                for waiting in queued {
                    let err = self.host_locked_error();
                    self.finish_slot(waiting, Err(err), fx);
                }
                if wait_ms == 0 {
                    let running = self.occupying_names();
                    let text = if running.is_empty() {
                        "host drained: no VM runs".to_owned()
                    } else {
                        format!("draining; still running: {}", running.join(", "))
                    };
                    reply_done(req, text, fx);
                } else {
                    self.drain_waiters.push((req, now.saturating_add(wait_ms)));
                }
            }
        }
    }

    fn on_cancelled(&mut self, req: ReqId) {
        // The start or stop already under way goes on (stopping it half-way helps nobody);
        // only the answer is dropped.
        self.slots.retain(|s| s.req != req);
        self.drain_waiters.retain(|(r, _)| *r != req);
        for vm in self.vms.values_mut() {
            if let Some(Starter::Admin { req: waiting }) = &mut vm.start
                && *waiting == Some(req)
            {
                *waiting = None;
            }
            if vm
                .stop
                .as_ref()
                .is_some_and(|plan| plan.why == StopWhy::Admin { req })
                && matches!(
                    vm.stop.as_ref().map(|p| &p.phase),
                    Some(StopPhase::Probe { .. })
                )
            {
                vm.stop = None;
            }
        }
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

    // ---- operation outcomes -------------------------------------------------------------

    pub(super) fn on_probe(
        &mut self,
        now: Millis,
        name: &str,
        result: &ProbeResult,
        fx: &mut Vec<Effect>,
    ) {
        let recheck = self.config.busy_recheck_ms;
        let Some(vm) = self.vms.get_mut(name) else {
            return;
        };
        let busy = match &result {
            ProbeResult::Idle => BusyState::Idle { checked_ms: now },
            ProbeResult::Busy(reason) => BusyState::Busy {
                reason: reason.clone(),
                since_ms: match &vm.busy {
                    BusyState::Busy { since_ms, .. } => *since_ms,
                    _ => now,
                },
            },
            ProbeResult::Unknown(reason) => BusyState::Unknown {
                reason: reason.clone(),
                checked_ms: now,
            },
        };
        if !matches!(result, ProbeResult::Unknown(_)) {
            vm.answered = true;
        }
        if matches!(result, ProbeResult::Busy(_)) {
            vm.was_busy = true;
        }
        match result {
            ProbeResult::Idle => self.counters.probes_idle += 1,
            ProbeResult::Busy(_) => self.counters.probes_busy += 1,
            ProbeResult::Unknown(_) => self.counters.probes_unknown += 1,
        }
        let changed = std::mem::discriminant(&vm.busy) != std::mem::discriminant(&busy);
        vm.busy = busy.clone();
        vm.probe_ms = Some(now);
        vm.next_probe_ms = now.saturating_add(recheck.max(1));
        if changed {
            fx.push(Effect::Emit(Event::VmBusy {
                at_ms: now,
                vm: name.to_owned(),
                busy,
            }));
        }
        self.stop_after_probe(now, name, result, fx);
    }

    fn on_started(&mut self, now: Millis, name: &str, fx: &mut Vec<Effect>) {
        let timeout_ms = self.config.ready_timeout_ms;
        let Some(vm) = self.vms.get_mut(name) else {
            return;
        };
        if vm.power != PowerState::Running {
            let from = std::mem::replace(&mut vm.power, PowerState::Running);
            fx.push(Effect::Emit(Event::VmPower {
                at_ms: now,
                vm: name.to_owned(),
                from,
                to: PowerState::Running,
            }));
        }
        vm.ready = false;
        vm.ready_checked = true;
        if let Some(Starter::Admin { req }) = &mut vm.start
            && let Some(req) = req.take()
        {
            reply_done(
                req,
                format!("started {name}; waiting for the guest to answer"),
                fx,
            );
        }
        self.run(now, name, Action::WaitReady { timeout_ms }, fx);
        fx.push(Effect::RefreshInventory);
    }

    fn on_start_failed(
        &mut self,
        now: Millis,
        name: &str,
        err: &str,
        counts: bool,
        fx: &mut Vec<Effect>,
    ) {
        let starter = self.vms.get_mut(name).and_then(|vm| vm.start.take());
        if let Some(Starter::Admin { req: Some(req) }) = starter {
            reply_err(
                req,
                ErrorKind::InvalidState,
                format!("could not start {name}: {err}"),
                fx,
            );
        }
        self.fail_slots_for(name, &format!("could not start {name}: {err}"), fx);
        if counts {
            self.count_failure(now, name, &format!("start failed: {err}"), fx);
        } else {
            // Held by another subsystem: the cycle waits a re-check interval instead of
            // asking again at once.
            let retry = now.saturating_add(self.config.busy_recheck_ms.max(1));
            self.cycle_off_until = self.cycle_off_until.max(retry);
            self.decide(now, Some(name), format!("start not run: {err}"), fx);
        }
        fx.push(Effect::RefreshInventory);
    }

    fn on_ready(&mut self, now: Millis, name: &str, fx: &mut Vec<Effect>) {
        let on_min = self.config.cycle_on_min_ms;
        let jitter = self.rng.below(self.config.cycle_on_jitter_ms);
        let grace = self.config.slot_grace_ms;
        let recheck = self.config.busy_recheck_ms;
        self.quarantine.remove(name);
        let issued = self
            .vms
            .get_mut(name)
            .and_then(|vm| vm.boot_issued_ms.take());
        if let Some(issued) = issued {
            self.counters.boot_times.record(
                &super::report::BOOT_BUCKETS_SECS,
                now.saturating_sub(issued),
            );
        }
        let Some(vm) = self.vms.get_mut(name) else {
            return;
        };
        vm.ready = true;
        vm.ready_checked = true;
        vm.answered = true;
        vm.ready_at = Some(now);
        if vm.power != PowerState::Running && !vm.power.occupies_host() {
            vm.power = PowerState::Running;
        }
        vm.next_probe_ms = now.saturating_add(recheck.max(1));
        let starter = vm.start.take();
        let text = match starter {
            Some(Starter::Cycle) => {
                let until = now.saturating_add(on_min).saturating_add(jitter);
                vm.on_until = Some(until);
                vm.running_because = Some(format!("started by the cycle at {}", format_ms(now)));
                format!("ready; cycle on-time until {}", format_ms(until))
            }
            Some(Starter::Admin { .. }) => {
                vm.running_because = Some(format!("started by an operator at {}", format_ms(now)));
                self.leases.insert(
                    name.to_owned(),
                    Lease {
                        by: "operator".into(),
                        since_ms: now,
                        until_ms: now.saturating_add(grace),
                    },
                );
                "ready (operator start; protected for the grace period)".to_owned()
            }
            Some(Starter::Demand { job }) => {
                // Its job may go to another runner first (a warm one, or one that booted
                // faster): the runner is then a spare for the same labels, kept like a warm
                // one rather than thrown away after `cycle_on_min` (marble-sim, standard
                // week over six seeds: unused ROOT boots fewer on every seed, 110 -> 86 in
                // all; ROOT p95 ratio mean 0.287 -> 0.276).
                let until = now.saturating_add(on_min.max(self.config.warm_linger_ms));
                vm.on_until = Some(until);
                vm.running_because = Some(format!(
                    "booted at {} for queued job #{job}",
                    format_ms(now)
                ));
                format!(
                    "ready; its runner waits for a job until {}",
                    format_ms(until)
                )
            }
            Some(Starter::Warm { why }) => {
                // Kept this long even once no longer wanted, unless its host is.
                let until = now.saturating_add(on_min.max(self.config.warm_linger_ms));
                vm.on_until = Some(until);
                vm.running_because = Some(format!("booted warm at {}: {why}", format_ms(now)));
                format!("ready; warm runner ({why})")
            }
            Some(Starter::Slot) => "ready for the slot request".to_owned(),
            None => {
                // Found running (daemon restart, manual start): learn at once whether it
                // runs a job, so `status` and slot refusals can say so.
                vm.next_probe_ms = now;
                match &vm.running_because {
                    Some(why) => format!("guest answers (found running; {why})"),
                    None => "guest answers (found running)".to_owned(),
                }
            }
        };
        self.decide(now, Some(name), text, fx);
    }

    fn on_not_ready(
        &mut self,
        now: Millis,
        name: &str,
        err: &str,
        counts: bool,
        fx: &mut Vec<Effect>,
    ) {
        if let Some(vm) = self.vms.get_mut(name) {
            vm.start = None;
            vm.ready = false;
            // A boot that never answered has no boot time (it counts as a failure).
            vm.boot_issued_ms = None;
        }
        self.fail_slots_for(name, &format!("{name} did not become ready: {err}"), fx);
        if !counts {
            // Held by another subsystem: not checked, not counted, not retried in a loop.
            return;
        }
        self.count_failure(now, name, &format!("not ready: {err}"), fx);
        // A VM whose guest does not answer is stopped only if a probe says idle; an
        // unanswered probe keeps it running (unknown counts as busy) and is retried.
        if let Some(vm) = self.vms.get_mut(name)
            && vm.stop.is_none()
            && vm.power.occupies_host()
        {
            vm.stop = Some(StopPlan {
                why: StopWhy::NotReady,
                phase: StopPhase::Probe { not_before: now },
                force: false,
            });
        }
    }

    /// Count a start or readiness failure; quarantine after too many in a row.
    fn count_failure(&mut self, now: Millis, name: &str, err: &str, fx: &mut Vec<Effect>) {
        let after = self.config.quarantine_after_failures.max(1);
        let entry = self
            .quarantine
            .entry(name.to_owned())
            .or_insert(Quarantine {
                failures: 0,
                until_ms: 0,
                last_error: String::new(),
            });
        entry.failures = entry.failures.saturating_add(1);
        self.counters.boot_failures += 1;
        entry.last_error = err.to_owned();
        let text = if entry.failures >= after {
            let doublings = (entry.failures - after).min(20);
            let backoff = self
                .config
                .quarantine_base_ms
                .saturating_mul(1u64 << doublings)
                .min(self.config.quarantine_max_ms);
            entry.until_ms = now.saturating_add(backoff);
            format!(
                "quarantined until {} after {} failures in a row: {err}",
                format_ms(entry.until_ms),
                entry.failures
            )
        } else {
            format!(
                "failure {} of {after} before quarantine: {err}",
                entry.failures
            )
        };
        self.decide(now, Some(name), text, fx);
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

    /// Count the wait of each job this host's runners took that is not counted yet.
    fn count_job_waits(&mut self, snapshot: &DemandSnapshot) {
        // Far more than the jobs one host runs at once, or starts between two polls.
        const REMEMBERED: usize = 256;
        for job in &snapshot.started_here {
            if self.waits_counted.contains(&job.id) {
                continue;
            }
            self.counters.root_job_waits.record(
                &super::report::JOB_WAIT_BUCKETS_SECS,
                job.started_ms.saturating_sub(job.queued_ms),
            );
            self.waits_counted.push_back(job.id);
            if self.waits_counted.len() > REMEMBERED {
                self.waits_counted.pop_front();
            }
        }
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

fn attribution(by: &str, reason: String, now: Millis) -> Attribution {
    Attribution {
        by: by.to_owned(),
        reason,
        since_ms: now,
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

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed(err) | Outcome::NotRun(err) => err.clone(),
        Outcome::Done => "no error".to_owned(),
        Outcome::Probe(result) => format!("unexpected probe answer {result:?}"),
    }
}
