//! Jenkins slot requests (`marblectl request-slot VM [--wait]`) and operator starts.
//!
//! A request is answered in one of four ways: granted once the guest answers (an idle,
//! unprotected VM holding the host is stopped first); refused as busy (75) naming what holds
//! the host; refused as locked (77: VM lock, drain, quarantine); or a start failure. Only one
//! request at a time takes the host (probe → stop → start → ready); concurrent ones are
//! refused at once or, with `--wait`, queued in arrival order until their deadline.
//!
//! The order of the checks is docs/SCHEDULER.md's: the lock / drain / quarantine refusal
//! comes first, also for a VM that already runs (granting it would renew its grace, and a
//! draining host would never empty); requests made before the first inventory wait for it
//! and have their VM's name resolved then.

use marble_proto::{ErrorKind, Response, SlotGrant, Team, WireError};

use super::persist::Lease;
use super::vm::{Starter, StopPhase, StopPlan, StopWhy};
use super::world::{SlotPhase, SlotRequest, World, reply_done, reply_err};
use super::{Action, Effect, Millis, ReqId, format_ms};

impl World {
    /// `vm start VM`: start if the host has room, else refuse naming what holds it.
    pub(super) fn admin_start(
        &mut self,
        now: Millis,
        req: ReqId,
        caller: &str,
        name: &str,
        fx: &mut Vec<Effect>,
    ) {
        let Some(vm) = self.vms.get(name) else {
            reply_err(req, ErrorKind::NotFound, format!("unknown VM {name}"), fx);
            return;
        };
        // 77 first (docs/SCHEDULER.md), also for a VM that already runs or starts.
        if let Some(err) = self.refusal(name) {
            fx.push(Effect::Reply {
                req,
                result: Err(err),
            });
            return;
        }
        if vm.start.is_some() {
            reply_done(req, format!("{name} is already starting"), fx);
            return;
        }
        if vm.power.occupies_host() {
            reply_done(req, format!("{name} is already {}", vm.power.as_word()), fx);
            return;
        }
        // An operator may start a quarantined VM to test it (locks and drain still hold).
        if self.quarantine_blocker(now, name).is_some() {
            self.quarantine.remove(name);
        }
        if let Some(holder) = self.occupying_names().first() {
            let msg = format!(
                "{}; stop it first (`{}`)",
                self.busy_message(holder),
                marble_proto::names::shell_command(&["marblectl", "vm", "stop", holder])
            );
            reply_err(req, ErrorKind::Busy, msg, fx);
            return;
        }
        match self.start_vm(now, name, Starter::Admin { req: Some(req) }, fx) {
            Ok(()) => self.decide(
                now,
                Some(name),
                format!("starting for {caller} (vm start)"),
                fx,
            ),
            Err(why) => reply_err(req, ErrorKind::Busy, why, fx),
        }
    }

    /// `request-slot VM --wait`: queue the request; `serve_slots` answers it.
    pub(super) fn request_slot(
        &mut self,
        now: Millis,
        req: ReqId,
        caller: String,
        vm: String,
        wait_ms: u64,
        fx: &mut Vec<Effect>,
    ) {
        // Before the first inventory no VM is known: the request waits for it (`serve_one`
        // resolves the name then), within its wait.
        if self.inventory_seen && !self.vms.contains_key(&vm) {
            fx.push(Effect::Reply {
                req,
                result: Err(self.unknown_vm(&vm)),
            });
            return;
        }
        self.note_waiter(now, &vm);
        self.slots.push(SlotRequest {
            req,
            vm,
            by: caller,
            since: now,
            deadline: now.saturating_add(wait_ms),
            phase: SlotPhase::Queued,
            last_progress: String::new(),
        });
        // `step` runs right after and serves it.
        let _ = fx;
    }

    /// Serve slot requests in arrival order.
    pub(super) fn serve_slots(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        // Every request still waiting keeps its node's age, whatever path it is on (queued,
        // probing a VM to pre-empt, starting).
        self.refresh_waiters(now);
        let reqs: Vec<ReqId> = self.slots.iter().map(|s| s.req).collect();
        for req in reqs {
            self.serve_one(now, req, fx);
        }
    }

    fn serve_one(&mut self, now: Millis, req: ReqId, fx: &mut Vec<Effect>) {
        let Some(slot) = self.resolved_slot(now, req, fx) else {
            return;
        };
        let name = slot.vm.clone();
        // 77 first (docs/SCHEDULER.md): a lock, a drain or a quarantine refuses a request
        // that has not taken the host yet, even when its VM already runs.
        if slot.phase == SlotPhase::Queued
            && let Some(err) = self.start_blocker(now, &name)
        {
            self.counters.refusals_locked += 1;
            self.finish_slot(req, Err(err), fx);
            return;
        }
        let Some(vm) = self.vms.get(&name) else {
            return;
        };
        // Its VM answers: grant (also when it was already running: idempotent).
        if vm.ready
            && !vm.power_stale
            && vm.power.occupies_host()
            && vm.stop.is_none()
            && vm.start.is_none()
        {
            self.grant(now, &slot, fx);
            return;
        }
        match slot.phase {
            SlotPhase::Starting { .. } => {
                // Waiting for its VM's readiness; a failure answers it (`fail_slots_for`).
                return;
            }
            SlotPhase::Preempting { ref victim } => {
                let victim_gone = !self.vms.get(victim).is_some_and(|v| v.occupies());
                if victim_gone {
                    self.claim_start(now, &slot, Some(victim.clone()), fx);
                }
                return;
            }
            SlotPhase::Queued => {}
        }
        // Another request is already taking the host: wait behind it or give up now.
        if let Some(active) = self
            .slots
            .iter()
            .find(|s| s.req != req && s.phase != SlotPhase::Queued)
        {
            let msg = format!(
                "host is being handed to {} (slot request by {} at {})",
                active.vm,
                active.by,
                format_ms(active.since)
            );
            self.refuse_or_wait(now, &slot, &msg, fx);
            return;
        }
        let vm_busy_with_op = vm.start.is_some() || vm.stop.is_some() || vm.op.is_some();
        if vm.power.occupies_host() || vm_busy_with_op {
            self.wait_on_own_vm(now, &slot, fx);
            return;
        }
        if let Some(turn) = self.share_turn(now)
            && turn.team == Team::Root
        {
            self.decide(now, Some(&name), turn.why.clone(), fx);
            self.refuse_or_wait(now, &slot, &turn.why, fx);
            return;
        }
        let holders: Vec<String> = self
            .occupying_names()
            .into_iter()
            .filter(|holder| *holder != name)
            .collect();
        if holders.len() < self.config.capacity as usize {
            self.claim_start(now, &slot, None, fx);
            return;
        }
        self.preempt_for(now, &slot, &holders, fx);
    }

    /// The request `req` with its VM's name as the inventory spells it; `None` when it was
    /// answered (unknown VM) or still waits for the first inventory.
    fn resolved_slot(
        &mut self,
        now: Millis,
        req: ReqId,
        fx: &mut Vec<Effect>,
    ) -> Option<SlotRequest> {
        let mut slot = self.slots.iter().find(|s| s.req == req).cloned()?;
        if !self.inventory_seen {
            let msg = "the first inventory has not arrived: marbled has not listed its VMs since \
                       it started (`prlctl list` still runs)";
            self.refuse_or_wait(now, &slot, msg, fx);
            return None;
        }
        if self.vms.contains_key(&slot.vm) {
            return Some(slot);
        }
        // Asked for before the first inventory: a name or UUID as the caller gave it.
        let Some(name) = self.resolve(&slot.vm) else {
            let err = self.unknown_vm(&slot.vm);
            self.finish_slot(req, Err(err), fx);
            return None;
        };
        if let Some(queued) = self.slots.iter_mut().find(|s| s.req == req) {
            queued.vm.clone_from(&name);
        }
        slot.vm = name;
        Some(slot)
    }

    /// The slot's own VM occupies the host or has something under way: take it once ready,
    /// or wait (or refuse) while it stops or its guest does not answer yet.
    fn wait_on_own_vm(&mut self, now: Millis, slot: &SlotRequest, fx: &mut Vec<Effect>) {
        let name = &slot.vm;
        let Some(vm) = self.vms.get(name) else {
            return;
        };
        if vm.start.is_some() || matches!(vm.op, Some((_, Action::WaitReady { .. }))) {
            // Someone else is starting it (the cycle, an operator): take it when ready.
            self.set_phase_and_tell(slot.req, SlotPhase::Starting { preempted: None }, fx);
            return;
        }
        if vm.stop.is_some() {
            let msg = format!(
                "{name} is being stopped ({})",
                vm.stop.as_ref().map_or("", |p| p.why.describe())
            );
            self.refuse_or_wait(now, slot, &msg, fx);
            return;
        }
        if vm.op.is_some() && !vm.power.occupies_host() {
            // A probe or stop of a stopped VM: wait for it.
            return;
        }
        if vm.power.occupies_host() && !vm.ready {
            let msg = format!(
                "{name} is {} but its guest does not answer yet",
                vm.power.as_word()
            );
            self.refuse_or_wait(now, slot, &msg, fx);
        }
    }

    /// The host is full: take it from a holder that is idle and unprotected, if any; else
    /// refuse (or wait) with the first holder's reason.
    fn preempt_for(
        &mut self,
        now: Millis,
        slot: &SlotRequest,
        holders: &[String],
        fx: &mut Vec<Effect>,
    ) {
        let (req, name) = (slot.req, &slot.vm);
        let mut refusal = None;
        for holder in holders {
            match self.preemptible(now, holder) {
                Ok(()) => {
                    if let Some(vm) = self.vms.get_mut(holder) {
                        vm.stop = Some(StopPlan {
                            why: StopWhy::Preempt { req },
                            phase: StopPhase::Probe { not_before: now },
                            force: false,
                        });
                    }
                    self.set_phase_and_tell(
                        req,
                        SlotPhase::Preempting {
                            victim: holder.clone(),
                        },
                        fx,
                    );
                    self.decide(
                        now,
                        Some(holder),
                        format!(
                            "slot request by {} for {name}: probing {holder} to stop it if idle",
                            slot.by
                        ),
                        fx,
                    );
                    return;
                }
                Err(why) => {
                    refusal.get_or_insert(why);
                }
            }
        }
        let msg = refusal.unwrap_or_else(|| "host full".to_owned());
        self.refuse_or_wait(now, slot, &msg, fx);
    }

    /// Whether `holder` may be stopped for a slot request; if not, the refusal message.
    fn preemptible(&self, now: Millis, holder: &str) -> Result<(), String> {
        let Some(vm) = self.vms.get(holder) else {
            return Err(format!("{holder} holds the host"));
        };
        let team = vm.team.as_str();
        if let Some(lease) = self.leases.get(holder)
            && lease.until_ms > now
        {
            return Err(format!(
                "host busy: {holder} (team {team}) was granted to {} at {}, protected until {}",
                lease.by,
                format_ms(lease.since_ms),
                format_ms(lease.until_ms)
            ));
        }
        if let Some(starter) = &vm.start {
            let who = match starter {
                Starter::Cycle => "the cycle",
                Starter::Slot => "a slot request",
                Starter::Admin { .. } => "an operator",
                Starter::Demand { .. } | Starter::Warm { .. } => "the demand policy",
            };
            return Err(format!(
                "host busy: {holder} (team {team}) is being started by {who}"
            ));
        }
        if let Some(plan) = &vm.stop
            && !matches!(plan.phase, StopPhase::Probe { .. })
        {
            return Err(format!("host busy: {holder} (team {team}) is stopping"));
        }
        if vm.op.is_some() && !matches!(vm.op, Some((_, Action::Probe(_)))) {
            return Err(format!(
                "host busy: {holder} (team {team}) has an operation in flight"
            ));
        }
        if let Some(job) = self.runner_about_to_work(now, vm) {
            return Err(format!(
                "host busy: {holder} (team {team}) became ready at {} for job #{job}, which its \
                 runner is about to take",
                format_ms(vm.ready_at.unwrap_or(now))
            ));
        }
        // A recent busy or unknown answer is enough to refuse without waiting for a probe;
        // an idle answer is never trusted for a stop (the stop probes again).
        if vm.fresh_not_idle(now, self.config.busy_recheck_ms) {
            return Err(self.busy_message(holder));
        }
        if let Some(plan) = &vm.stop
            && matches!(plan.why, StopWhy::Admin { .. } | StopWhy::Preempt { .. })
        {
            return Err(format!(
                "host busy: {holder} (team {team}) is being stopped by an operator"
            ));
        }
        // A failed-readiness stop is not taken over: only it may stop a guest that never
        // answered since MARBLE booted it (its probe is unknown, and a slot request's stop
        // gives up on unknown, leaving nothing to stop the silent VM). It stops the VM
        // whatever the request does, and the request gets the host once it is down.
        if let Some(plan) = &vm.stop
            && plan.why == StopWhy::NotReady
        {
            return Err(format!(
                "host busy: {holder} (team {team}) is being stopped (failed readiness)"
            ));
        }
        // A stop planned by the cycle or drain that waits for its probe is taken over: the
        // request rides on it if the VM turns out idle.
        Ok(())
    }

    /// A ROOT VM that became ready less than `busy_recheck` ago, whose runner has not yet
    /// taken a job while one it could take is queued: GitHub hands it the job within
    /// seconds, so stopping it for a slot request would throw away the boot ROOT's turn just
    /// paid for (fair share would hand the host back and forth). The job's id if so.
    fn runner_about_to_work(&self, now: Millis, vm: &super::vm::VmState) -> Option<u64> {
        let ready_at = vm.ready_at?;
        if vm.team != Team::Root
            || vm.was_busy
            || now.saturating_sub(ready_at) >= self.config.busy_recheck_ms
        {
            return None;
        }
        self.demand
            .root_jobs
            .iter()
            .find(|job| super::labels_cover(&vm.labels, &job.labels))
            .map(|job| job.id)
    }

    fn claim_start(
        &mut self,
        now: Millis,
        slot: &SlotRequest,
        preempted: Option<String>,
        fx: &mut Vec<Effect>,
    ) {
        match self.start_vm(now, &slot.vm, Starter::Slot, fx) {
            Ok(()) => {
                self.note_turn(now, Team::Spi);
                self.set_phase_and_tell(slot.req, SlotPhase::Starting { preempted }, fx);
                self.decide(
                    now,
                    Some(&slot.vm),
                    format!("starting for {}'s slot request", slot.by),
                    fx,
                );
            }
            Err(why) => {
                // Someone else took the host between the stop and now.
                self.set_phase(slot.req, SlotPhase::Queued);
                self.refuse_or_wait(now, slot, &format!("host busy: {why}"), fx);
            }
        }
    }

    fn refuse_or_wait(&mut self, now: Millis, slot: &SlotRequest, msg: &str, fx: &mut Vec<Effect>) {
        self.note_demand(now);
        if now >= slot.deadline {
            let waited = if slot.deadline > slot.since {
                format!(" (waited {} s)", (now - slot.since) / 1000)
            } else {
                String::new()
            };
            self.decide(
                now,
                Some(&slot.vm),
                format!("slot refused for {}: {msg}", slot.by),
                fx,
            );
            self.counters.refusals_busy += 1;
            self.finish_slot(
                slot.req,
                Err(WireError::new(ErrorKind::Busy, format!("{msg}{waited}"))),
                fx,
            );
        } else {
            self.progress(slot.req, format!("waiting for the host: {msg}"), fx);
        }
    }

    /// Tell the waiting client what is happening (once per distinct message).
    fn progress(&mut self, req: ReqId, message: String, fx: &mut Vec<Effect>) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.req == req)
            && slot.last_progress != message
        {
            slot.last_progress.clone_from(&message);
            fx.push(Effect::Progress { req, message });
        }
    }

    fn grant(&mut self, now: Millis, slot: &SlotRequest, fx: &mut Vec<Effect>) {
        let until = now.saturating_add(self.config.slot_grace_ms);
        let already_running = slot.phase == SlotPhase::Queued;
        let preempted = match &slot.phase {
            SlotPhase::Starting { preempted } => preempted.clone(),
            _ => None,
        };
        self.leases.insert(
            slot.vm.clone(),
            Lease {
                by: slot.by.clone(),
                since_ms: now,
                until_ms: until,
            },
        );
        if let Some(vm) = self.vms.get_mut(&slot.vm) {
            vm.on_until = None;
            vm.running_because = Some(format!("granted to {} at {}", slot.by, format_ms(now)));
        }
        self.slot_demand = None;
        self.forget_waiter(&slot.vm);
        self.counters.grants += 1;
        self.counters.grant_latency_ms_sum += now.saturating_sub(slot.since);
        self.decide(
            now,
            Some(&slot.vm),
            format!(
                "slot granted to {}{}; protected until {}",
                slot.by,
                if already_running {
                    " (already running)"
                } else {
                    ""
                },
                format_ms(until)
            ),
            fx,
        );
        self.finish_slot(
            slot.req,
            Ok(Response::SlotGranted(SlotGrant {
                vm: slot.vm.clone(),
                already_running,
                preempted,
                protected_until_ms: until,
            })),
            fx,
        );
    }

    /// A preemption for `req` did not happen (victim busy, stop failed, operator took over).
    pub(super) fn preempt_failed(
        &mut self,
        now: Millis,
        req: ReqId,
        msg: &str,
        fx: &mut Vec<Effect>,
    ) {
        let Some(slot) = self.slots.iter().find(|s| s.req == req).cloned() else {
            return;
        };
        self.set_phase(req, SlotPhase::Queued);
        self.refuse_or_wait(now, &slot, msg, fx);
    }

    /// Answer every slot request waiting for `name` with an error.
    pub(super) fn fail_slots_for(&mut self, name: &str, msg: &str, fx: &mut Vec<Effect>) {
        let reqs: Vec<ReqId> = self
            .slots
            .iter()
            .filter(|s| s.vm == name && matches!(s.phase, SlotPhase::Starting { .. }))
            .map(|s| s.req)
            .collect();
        for req in reqs {
            self.finish_slot(
                req,
                Err(WireError::new(ErrorKind::InvalidState, msg.to_owned())),
                fx,
            );
        }
    }

    /// Send the terminal answer and forget the request.
    pub(super) fn finish_slot(
        &mut self,
        req: ReqId,
        result: Result<Response, WireError>,
        fx: &mut Vec<Effect>,
    ) {
        self.slots.retain(|s| s.req != req);
        fx.push(Effect::Reply { req, result });
    }

    fn set_phase(&mut self, req: ReqId, phase: SlotPhase) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.req == req) {
            slot.phase = phase;
        }
    }

    fn set_phase_and_tell(&mut self, req: ReqId, phase: SlotPhase, fx: &mut Vec<Effect>) {
        let message = match &phase {
            SlotPhase::Queued => return self.set_phase(req, phase),
            SlotPhase::Preempting { victim } => {
                format!("probing {victim}: it is stopped first if no job runs in it")
            }
            SlotPhase::Starting { .. } => {
                "starting the VM; waiting for its guest to answer".to_owned()
            }
        };
        self.set_phase(req, phase);
        self.progress(req, message, fx);
    }
}
