//! Stopping VMs without ever interrupting a job: probe first (only an idle answer lets a
//! stop proceed; busy and unknown both hold it), then a graceful stop, then `--kill` only
//! if the VM still runs when the graceful timeout ends. Operator `vm stop` goes through
//! the same path; `--force` skips the probe but still tries the graceful stop first.

use marble_proto::{BusyState, ErrorKind, PowerState, Team};

use super::vm::{StopPhase, StopPlan, StopWhy};
use super::world::{World, reply_done, reply_err};
use super::{Action, Effect, Millis, Outcome, ProbeResult, ReqId, StopKind, format_ms};

/// The longest a spent ROOT runner's stop waits between busy probes while a queued job
/// could use its host ([`World::stop_recheck_ms`]). A probe is one `prlctl exec` of ~2 s.
pub(super) const HANDOVER_RECHECK_MS: Millis = 10_000;

impl World {
    /// `vm stop VM [--force]`.
    pub(super) fn admin_stop(
        &mut self,
        now: Millis,
        req: ReqId,
        name: &str,
        force: bool,
        fx: &mut Vec<Effect>,
    ) {
        let Some(vm) = self.vms.get_mut(name) else {
            reply_err(req, ErrorKind::NotFound, format!("unknown VM {name}"), fx);
            return;
        };
        if !vm.occupies() {
            reply_done(req, format!("{name} is already {}", vm.power.as_word()), fx);
            return;
        }
        if vm.start.is_some() {
            reply_err(
                req,
                ErrorKind::InvalidState,
                format!("{name} is starting; stop it once the start has finished"),
                fx,
            );
            return;
        }
        if let Some(plan) = &vm.stop
            && !matches!(plan.phase, StopPhase::Probe { .. })
        {
            reply_err(
                req,
                ErrorKind::InvalidState,
                format!("{name} is already being stopped ({})", plan.why.describe()),
                fx,
            );
            return;
        }
        // An operator's stop replaces a stop the scheduler had only planned.
        let displaced = vm.stop.take();
        vm.stop = Some(StopPlan {
            why: StopWhy::Admin { req },
            phase: StopPhase::Probe { not_before: now },
            force,
        });
        if let Some(StopPlan {
            why: StopWhy::Preempt { req: slot },
            ..
        }) = displaced
        {
            self.preempt_failed(
                now,
                slot,
                &format!("{name} is being stopped by an operator"),
                fx,
            );
        }
        self.leases.remove(name);
        let text = if force {
            format!("operator stop of {name} with --force: busy check skipped")
        } else {
            format!("operator stop of {name}: probing for a running job first")
        };
        self.decide(now, Some(name), text, fx);
    }

    /// Plan a stop of `name` for `why`: probe first (at once), then graceful, then kill.
    /// Policy rules use this; `drive_stops` issues the probe in the same pass.
    pub(super) fn plan_stop(
        &mut self,
        now: Millis,
        name: &str,
        why: StopWhy,
        fx: &mut Vec<Effect>,
    ) {
        if let Some(vm) = self.vms.get_mut(name) {
            vm.stop = Some(StopPlan {
                why,
                phase: StopPhase::Probe { not_before: now },
                force: false,
            });
            vm.on_until = None;
        }
        self.drive_stops(now, fx);
    }

    /// Advance every stop plan whose VM has no operation in flight.
    pub(super) fn drive_stops(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let names: Vec<String> = self
            .vms
            .values()
            .filter(|vm| vm.stop.is_some() && vm.op.is_none())
            .map(|vm| vm.name.clone())
            .collect();
        for name in names {
            let Some(vm) = self.vms.get(&name) else {
                continue;
            };
            let Some(plan) = vm.stop.clone() else {
                continue;
            };
            if !vm.power.occupies_host() {
                self.complete_stop(now, &name, fx);
                continue;
            }
            match plan.phase {
                StopPhase::Probe { not_before } if now >= not_before => {
                    if plan.force {
                        self.graceful(now, &name, fx);
                    } else {
                        let team = vm.team;
                        self.run(now, &name, Action::Probe(team), fx);
                    }
                }
                StopPhase::Graceful { kill_at } if now >= kill_at => {
                    if let Some(vm) = self.vms.get_mut(&name)
                        && let Some(plan) = vm.stop.as_mut()
                    {
                        plan.phase = StopPhase::Kill;
                    }
                    self.decide(
                        now,
                        Some(&name),
                        "still running after the graceful stop timeout; killing it".into(),
                        fx,
                    );
                    self.counters.kills += 1;
                    self.run(now, &name, Action::Stop(StopKind::Kill), fx);
                }
                _ => {}
            }
        }
    }

    fn graceful(&mut self, now: Millis, name: &str, fx: &mut Vec<Effect>) {
        let kill_at = now.saturating_add(self.config.graceful_stop_timeout_ms);
        if let Some(vm) = self.vms.get_mut(name)
            && let Some(plan) = vm.stop.as_mut()
        {
            plan.phase = StopPhase::Graceful { kill_at };
        }
        self.run(now, name, Action::Stop(StopKind::Graceful), fx);
    }

    /// A probe answered: let a planned stop proceed only on idle.
    pub(super) fn stop_after_probe(
        &mut self,
        now: Millis,
        name: &str,
        result: &ProbeResult,
        fx: &mut Vec<Effect>,
    ) {
        let Some(vm) = self.vms.get(name) else {
            return;
        };
        let Some(plan) = vm.stop.clone() else {
            return;
        };
        if !matches!(plan.phase, StopPhase::Probe { .. }) {
            return;
        }
        // A lease granted after the stop was planned (a slot request won the race) wins.
        let leased = self.leases.get(name).is_some_and(|l| l.until_ms > now);
        // A VM MARBLE booted whose guest has not answered a single exec since cannot have
        // been given work: its slot was never granted and no runner config was delivered.
        // Stopping it after failed readiness is what keeps one broken VM from holding the
        // host forever (quarantine then keeps it from being booted again at once).
        let never_answered = plan.why == StopWhy::NotReady && vm.started_here && !vm.answered;
        if never_answered && matches!(result, ProbeResult::Unknown(_)) {
            self.decide(
                now,
                Some(name),
                "guest never answered since MARBLE booted it (no job can have been handed to \
                 it); stopping it"
                    .into(),
                fx,
            );
            self.graceful(now, name, fx);
            return;
        }
        if matches!(result, ProbeResult::Idle)
            && (!leased || matches!(plan.why, StopWhy::Admin { .. }))
        {
            self.decide(
                now,
                Some(name),
                format!("idle; stopping ({})", plan.why.describe()),
                fx,
            );
            self.graceful(now, name, fx);
            return;
        }
        let why_not = match result {
            ProbeResult::Idle => "protected by a slot grant".to_owned(),
            ProbeResult::Busy(reason) => format!("busy: {reason}"),
            ProbeResult::Unknown(reason) => {
                format!("busy state unknown ({reason}); unknown counts as busy")
            }
        };
        if plan.why.gives_up_when_busy() {
            self.give_up_stop(now, name, &plan, &why_not, fx);
        } else {
            self.recheck_stop_later(now, name, &plan, &why_not, fx);
        }
    }

    /// A stop that gives up on a busy (or unknown) VM: drop the plan and tell whoever
    /// asked for it.
    fn give_up_stop(
        &mut self,
        now: Millis,
        name: &str,
        plan: &StopPlan,
        why_not: &str,
        fx: &mut Vec<Effect>,
    ) {
        if let Some(vm) = self.vms.get_mut(name) {
            vm.stop = None;
        }
        self.decide(now, Some(name), format!("not stopped: {why_not}"), fx);
        match plan.why {
            StopWhy::Admin { req } => reply_err(
                req,
                ErrorKind::Busy,
                if plan.force {
                    // Even a forced stop was refused by the stop job's last-moment
                    // gate (GitHub would not delete the runner): --force cannot help.
                    format!("refusing to stop {name} even with --force: {why_not}")
                } else {
                    format!(
                        "refusing to stop {name}: {why_not}; use --force to skip the \
                             busy probe"
                    )
                },
                fx,
            ),
            StopWhy::Preempt { req } => {
                let msg = self.busy_message(name);
                self.preempt_failed(now, req, &msg, fx);
            }
            _ => {}
        }
    }

    /// A stop that waits out a busy VM: probe again after `busy_recheck`.
    fn recheck_stop_later(
        &mut self,
        now: Millis,
        name: &str,
        plan: &StopPlan,
        why_not: &str,
        fx: &mut Vec<Effect>,
    ) {
        let recheck = self.stop_recheck_ms(now, name, plan);
        if let Some(vm) = self.vms.get_mut(name)
            && let Some(plan) = vm.stop.as_mut()
        {
            plan.phase = StopPhase::Probe {
                not_before: now.saturating_add(recheck),
            };
        }
        self.decide(
            now,
            Some(name),
            format!(
                "not stopping yet ({}): {why_not}; re-checking at {}",
                plan.why.describe(),
                format_ms(now.saturating_add(recheck))
            ),
            fx,
        );
    }

    /// How long a stop that found its VM busy waits before probing again: `busy_recheck`,
    /// but at most [`HANDOVER_RECHECK_MS`] for a spent ROOT runner (policy `demand`) while
    /// either team waits for this host (a queued job no runner covers, or Jenkins) — its
    /// job ends at an unknown moment, and every second the host sits on a finished job is a
    /// second the waiter waits (marble-sim, bursts of short jobs: the 60 s re-check and the
    /// 30 s demand poll left a host a further ~30 s on a finished job per hand-over, the
    /// ROOT p95 gap).
    fn stop_recheck_ms(&self, now: Millis, name: &str, plan: &StopPlan) -> u64 {
        let recheck = self.config.busy_recheck_ms.max(1);
        let spent = self
            .vms
            .get(name)
            .is_some_and(|vm| vm.team == Team::Root && vm.was_busy);
        // Only while ROOT alone waits: with Jenkins waiting too, a host handed over sooner
        // went to ROOT before Jenkins' retry (60 s after a refusal) came back (marble-sim,
        // spi-nightly-wave: SPI grant p95 1h43m -> 2h36m), so the hand-over keeps its pace.
        let waited_for = self.unmet_here() && self.spi_waiting_since(now).is_none();
        if plan.why == StopWhy::Demand && spent && waited_for {
            recheck.min(HANDOVER_RECHECK_MS)
        } else {
            recheck
        }
    }

    pub(super) fn on_stop_finished(
        &mut self,
        now: Millis,
        name: &str,
        kind: StopKind,
        outcome: Outcome,
        fx: &mut Vec<Effect>,
    ) {
        fx.push(Effect::RefreshInventory);
        match (kind, outcome) {
            (StopKind::Kill | StopKind::DropState, Outcome::Done) => {
                self.set_power(now, name, PowerState::Stopped, fx);
                self.complete_stop(now, name, fx);
            }
            (StopKind::Graceful, Outcome::Done) => {
                // prlctl returned; the VM may still be shutting down (or may ignore the
                // request). The next inventory decides; `drive_stops` kills at the timeout.
            }
            (_, Outcome::Probe(result)) => {
                // The stop job's last-moment gate (e.g. deleting the GitHub runner
                // registration, refused with 422 because a job was just assigned) found the
                // VM busy and did not stop it: exactly as if the probe had said so.
                if let Some(plan) = self.vms.get_mut(name).and_then(|vm| vm.stop.as_mut()) {
                    plan.phase = StopPhase::Probe { not_before: now };
                }
                self.on_probe(now, name, &result, fx);
            }
            (_, failed) => {
                let not_run = matches!(failed, Outcome::NotRun(_));
                let err = match failed {
                    Outcome::Failed(err) | Outcome::NotRun(err) => err,
                    other => format!("{other:?}"),
                };
                // prlctl refused or failed: whether the VM still runs is unknown until the
                // next inventory (a kill of an already stopped VM fails too), so it is
                // neither granted nor cycled on the strength of the old state.
                let plan = self.vms.get_mut(name).and_then(|vm| {
                    if !not_run {
                        vm.power_stale = true;
                        vm.ready = false;
                    }
                    vm.stop.take()
                });
                self.decide(now, Some(name), format!("stop failed: {err}"), fx);
                if let Some(plan) = plan {
                    match plan.why {
                        StopWhy::Admin { req } => reply_err(
                            req,
                            ErrorKind::InvalidState,
                            format!("could not stop {name}: {err}"),
                            fx,
                        ),
                        StopWhy::Preempt { req } => self.preempt_failed(
                            now,
                            req,
                            &format!("could not stop {name} to make room: {err}"),
                            fx,
                        ),
                        // Retried by the rule that planned it, after the recheck interval.
                        StopWhy::Cycle
                        | StopWhy::Drain
                        | StopWhy::NotReady
                        | StopWhy::Demand
                        | StopWhy::Watchdog => {
                            if let Some(vm) = self.vms.get_mut(name) {
                                vm.on_until = Some(now.saturating_add(self.config.busy_recheck_ms));
                            }
                        }
                    }
                }
            }
        }
    }

    /// The VM no longer holds the host: answer whoever waited for the stop.
    fn complete_stop(&mut self, now: Millis, name: &str, fx: &mut Vec<Effect>) {
        let Some(plan) = self.vms.get_mut(name).and_then(|vm| vm.stop.take()) else {
            return;
        };
        self.leases.remove(name);
        self.counters.stops += 1;
        self.decide(
            now,
            Some(name),
            format!("stopped ({})", plan.why.describe()),
            fx,
        );
        match plan.why {
            StopWhy::Admin { req } => reply_done(req, format!("stopped {name}"), fx),
            StopWhy::Cycle => {
                self.cycle_off_until = now.saturating_add(self.config.cycle_off_window_ms);
            }
            // Under `demand` the window for Jenkins is left only while Jenkins asks.
            StopWhy::Demand => {
                if self.live_demand(now).is_some() {
                    self.cycle_off_until = now.saturating_add(self.config.cycle_off_window_ms);
                }
            }
            StopWhy::Preempt { .. } | StopWhy::Drain | StopWhy::NotReady | StopWhy::Watchdog => {}
        }
    }

    pub(super) fn set_power(
        &mut self,
        now: Millis,
        name: &str,
        power: PowerState,
        fx: &mut Vec<Effect>,
    ) {
        if let Some(vm) = self.vms.get_mut(name)
            && vm.power != power
        {
            let from = std::mem::replace(&mut vm.power, power.clone());
            if !power.occupies_host() {
                vm.reset_running_state();
            }
            fx.push(Effect::Emit(marble_proto::Event::VmPower {
                at_ms: now,
                vm: name.to_owned(),
                from,
                to: power,
            }));
        }
    }

    /// "VM X (team) is busy: …" for refusals.
    pub(super) fn busy_message(&self, name: &str) -> String {
        let Some(vm) = self.vms.get(name) else {
            return format!("{name} holds the host");
        };
        let team = vm.team.as_str();
        match &vm.busy {
            BusyState::Busy { reason, since_ms } => format!(
                "host busy: {name} (team {team}) is running a job: {reason} (busy since {})",
                format_ms(*since_ms)
            ),
            BusyState::Unknown { reason, checked_ms } => format!(
                "host busy: {name} (team {team}) may be running a job: its busy probe failed at \
                 {} ({reason}); unknown counts as busy",
                format_ms(*checked_ms)
            ),
            BusyState::Idle { .. } | BusyState::NotProbed => {
                format!("host busy: {name} (team {team}) holds the host")
            }
        }
    }
}
