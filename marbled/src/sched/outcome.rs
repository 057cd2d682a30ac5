//! Outcomes of the operations the actor ran: probes, starts, readiness waits and stops; start
//! and readiness failures counting towards quarantine.

use marble_proto::{BusyState, ErrorKind, Event, PowerState, Team};

use super::persist::{Lease, Quarantine};
use super::report::BOOT_BUCKETS_SECS;
use super::vm::{Starter, StopPhase, StopPlan, StopWhy};
use super::world::{World, reply_done, reply_err};
use super::{Action, Effect, Millis, OpId, Outcome, ProbeResult, action_kind, format_ms};

impl World {
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
        let first_job = matches!(result, ProbeResult::Busy(_)) && !vm.was_busy;
        let root_job = first_job && vm.team == Team::Root;
        if first_job {
            vm.was_busy = true;
        }
        if !matches!(result, ProbeResult::Idle) {
            // Unknown counts as busy here too: an agent whose probe fails is never taken
            // for one idle long enough to give its host away.
            vm.busy_seen_ms = Some(now);
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
        if root_job {
            self.note_root_holds(now);
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
                format!(
                    "started {name}; its guest is still booting (this command does not wait: \
                     `marblectl vm list` shows it ready)"
                ),
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
            self.counters
                .boot_times
                .record(&BOOT_BUCKETS_SECS, now.saturating_sub(issued));
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
    pub(super) fn on_finished(
        &mut self,
        now: Millis,
        op: OpId,
        outcome: Outcome,
        fx: &mut Vec<Effect>,
    ) {
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
            (Action::Rearm, Outcome::Done) => self.on_rearmed(now, &name, fx),
            (Action::Rearm, failed) => {
                let err = outcome_text(&failed);
                self.on_rearm_failed(now, &name, &err, fx);
            }
        }
    }
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed(err) | Outcome::NotRun(err) => err.clone(),
        Outcome::Done => "no error".to_owned(),
        Outcome::Probe(result) => format!("unexpected probe answer {result:?}"),
    }
}
