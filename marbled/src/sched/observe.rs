//! Observations the world is fed: hypervisor inventories (power states, VMs that came and
//! went, reconcile notes from the state file) and the job waits a demand snapshot reports.

use std::collections::BTreeSet;

use marble_proto::{ErrorKind, Event, PowerState, Team, WireError};

use super::report::JOB_WAIT_BUCKETS_SECS;
use super::vm::{StopPhase, StopPlan, VmState};
use super::world::World;
use super::{Action, DemandSnapshot, Effect, Millis, ObservedVm, ReqId, format_ms};

impl World {
    pub(super) fn on_inventory(
        &mut self,
        now: Millis,
        observed: Vec<ObservedVm>,
        fx: &mut Vec<Effect>,
    ) {
        self.inventory_seen = true;
        self.inventory_ms = now;
        let seen = self.apply_listing(now, observed, fx);
        self.restore_runner_standing();
        self.forget_unlisted(now, &seen, fx);
        self.report_reconciled(now, fx);
        self.warn_over_capacity(now, fx);
    }

    /// Take each listed VM's team, labels and power state; returns the names listed.
    fn apply_listing(
        &mut self,
        now: Millis,
        observed: Vec<ObservedVm>,
        fx: &mut Vec<Effect>,
    ) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
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
        seen
    }

    fn restore_runner_standing(&mut self) {
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
    }

    fn forget_unlisted(&mut self, now: Millis, seen: &BTreeSet<String>, fx: &mut Vec<Effect>) {
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
    }

    /// Reconcile notes restored from the state file: say what prlctl reports now.
    fn report_reconciled(&mut self, now: Millis, fx: &mut Vec<Effect>) {
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
    }

    fn warn_over_capacity(&mut self, now: Millis, fx: &mut Vec<Effect>) {
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

    /// The feed shows a running ROOT VM's runner took its job (`used_here`): it is spent
    /// from now on, whatever the probes saw. A job that starts at once and ends before the
    /// first busy probe (a minute after readiness) was never seen otherwise, and the VM was
    /// kept as a spare for a matching job GitHub never gives a used ephemeral runner
    /// (issue 17: every host ended up holding one while jobs sat queued).
    pub(super) fn note_used_runners(
        &mut self,
        now: Millis,
        snapshot: &DemandSnapshot,
        fx: &mut Vec<Effect>,
    ) {
        let mut noted = Vec::new();
        for name in &snapshot.used_here {
            if let Some(vm) = self.vms.get_mut(name)
                && vm.team == Team::Root
                && vm.power.occupies_host()
                && !vm.was_busy
            {
                vm.was_busy = true;
                noted.push(name.clone());
            }
        }
        if !noted.is_empty() {
            self.note_root_holds(now);
        }
        for name in noted {
            self.decide(
                now,
                Some(&name),
                "the demand feed shows its runner took its job (single-use: spent)".into(),
                fx,
            );
        }
        // Its job is over: probe now instead of at the next re-check (up to `busy_recheck`
        // later), so the host goes to the next job sooner. Once per boot.
        let mut held = false;
        for name in &snapshot.done_here {
            if let Some(vm) = self.vms.get_mut(name)
                && vm.team == Team::Root
                && vm.power.occupies_host()
                && !vm.feed_done
            {
                vm.feed_done = true;
                if !vm.was_busy {
                    vm.was_busy = true;
                    held = true;
                }
                vm.next_probe_ms = vm.next_probe_ms.min(now);
                if let Some(StopPlan {
                    phase: StopPhase::Probe { not_before },
                    ..
                }) = vm.stop.as_mut()
                {
                    *not_before = (*not_before).min(now);
                }
            }
        }
        if held {
            self.note_root_holds(now);
        }
    }

    /// Count the wait of each job this host's runners took that is not counted yet.
    pub(super) fn count_job_waits(&mut self, snapshot: &DemandSnapshot) {
        // Far more than the jobs one host runs at once, or starts between two polls.
        const REMEMBERED: usize = 256;
        for job in &snapshot.started_here {
            if self.waits_counted.contains(&job.id) {
                continue;
            }
            self.counters.root_job_waits.record(
                &JOB_WAIT_BUCKETS_SECS,
                job.started_ms.saturating_sub(job.queued_ms),
            );
            self.waits_counted.push_back(job.id);
            if self.waits_counted.len() > REMEMBERED {
                self.waits_counted.pop_front();
            }
        }
    }
}
