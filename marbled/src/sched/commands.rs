//! Operator commands (start, stop, slot request, pause, resume, lock, unlock, drain) and a
//! client hanging up on one.

use marble_proto::{Attribution, ErrorKind, LockTarget, UnlockTarget};

use super::vm::{Starter, StopPhase, StopWhy};
use super::world::{SlotPhase, World, reply_done, reply_err};
use super::{Command, Effect, Millis, ReqId};

impl World {
    pub(super) fn on_command(
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
                // `marblectl pause` without `--reason` sends an empty one: no dangling colon.
                let text = if reason.is_empty() {
                    format!("cycling paused by {caller}")
                } else {
                    format!("cycling paused by {caller}: {reason}")
                };
                self.paused = Some(attribution(&caller, reason, now));
                self.decide(now, None, text.clone(), fx);
                reply_done(req, text, fx);
            }
            Command::Resume => self.resume(now, req, &caller, fx),
            Command::Lock { target, reason } => self.lock(now, req, &caller, &target, &reason, fx),
            Command::Unlock { target } => self.unlock(now, req, &caller, target, fx),
            Command::Drain { reason, wait_ms } => {
                self.drain(now, req, &caller, &reason, wait_ms, fx);
            }
        }
    }

    /// End a pause or drain; drain waiters learn it ended.
    fn resume(&mut self, now: Millis, req: ReqId, caller: &str, fx: &mut Vec<Effect>) {
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

    /// Lock VMs against starts (the given one, or all but one).
    fn lock(
        &mut self,
        now: Millis,
        req: ReqId,
        caller: &str,
        target: &LockTarget,
        reason: &str,
        fx: &mut Vec<Effect>,
    ) {
        let names: Vec<String> = match target {
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
                .insert(name.clone(), attribution(caller, reason.to_owned(), now));
        }
        let text = format!("locked {} by {caller}: {reason}", names.join(", "));
        self.decide(now, None, text.clone(), fx);
        reply_done(req, text, fx);
    }

    /// Lift locks (one VM's or all).
    fn unlock(
        &mut self,
        now: Millis,
        req: ReqId,
        caller: &str,
        target: UnlockTarget,
        fx: &mut Vec<Effect>,
    ) {
        let names: Vec<String> = match target {
            UnlockTarget::Vm(vm) => self.locks.remove(&vm).map(|_| vm).into_iter().collect(),
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

    /// Stop taking new work: queued slot requests are refused, and the caller is answered
    /// at once or once no VM runs (`drive_drain`).
    fn drain(
        &mut self,
        now: Millis,
        req: ReqId,
        caller: &str,
        reason: &str,
        wait_ms: u64,
        fx: &mut Vec<Effect>,
    ) {
        if self.draining.is_none() {
            self.draining = Some(attribution(caller, reason.to_owned(), now));
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

    pub(super) fn on_cancelled(&mut self, req: ReqId) {
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
}

fn attribution(by: &str, reason: String, now: Millis) -> Attribution {
    Attribution {
        by: by.to_owned(),
        reason,
        since_ms: now,
    }
}
