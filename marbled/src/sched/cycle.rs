//! Policy `cycle` (the seed's round robin, without its bugs) and drain.
//!
//! Cycle: when nothing holds the host, nothing waits for it and the off window is over,
//! start the next ROOT VM in name order (skipping locked, quarantined and unlisted ones;
//! VMs registered later join the rotation at the next inventory). Once its guest answers
//! it stays on for `cycle_on_min + uniform(0, cycle_on_jitter)`; then a probe: idle → stop
//! (graceful, then kill) and leave `cycle_off_window` free for Jenkins; busy or unknown →
//! re-check every `busy_recheck`. A VM the cycle did not start (a granted slot after its
//! grace, an operator start, one found running) is handled the same way once unprotected,
//! but only when there is a ROOT VM to give the host to.
//!
//! Fairness: while slot requests keep being refused for `fairness_bound`, the cycle starts
//! nothing, so the host falls to Jenkins as soon as the running job ends. A running job is
//! never interrupted for fairness.
//!
//! Drain: no new starts (slot requests get 77); idle VMs stop once any grant's grace is
//! over; busy ones are re-checked until they finish; `drain --wait` answers when the host
//! is empty or its wait ends.

use marble_proto::{ErrorKind, PowerState, Team};

use super::vm::{Starter, StopWhy};
use super::world::{World, reply_done, reply_err};
use super::{Effect, Millis, Policy};

impl World {
    pub(super) fn drive_cycle(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        if self.config.policy != Policy::Cycle
            || self.paused.is_some()
            || self.draining.is_some()
            || !self.inventory_seen
        {
            return;
        }
        let on_min = self.config.cycle_on_min_ms;
        let candidate = self.next_root(now);
        // Schedule the end of on-time for running VMs, and stop them when it is reached.
        let running = self.settled_running(now);
        for name in running {
            let team = self.vms.get(&name).map(|vm| vm.team);
            let others_to_run = candidate.as_ref().is_some_and(|c| *c != name);
            // A ROOT VM is cycled even if it is the only one (the seed did: its ephemeral
            // runner is replaced by a fresh boot); another team's VM only gives way to ROOT.
            if team != Some(Team::Root) && !others_to_run {
                continue;
            }
            let Some(vm) = self.vms.get_mut(&name) else {
                continue;
            };
            let due = *vm.on_until.get_or_insert(now.saturating_add(on_min));
            if now >= due {
                self.plan_stop(now, &name, StopWhy::Cycle, fx);
            }
        }
        if !self.occupying_names().is_empty() || !self.slots.is_empty() {
            return;
        }
        if self.host_kept_for_jenkins(now, "cycle", fx) {
            return;
        }
        let Some(next) = candidate else {
            let text = self.no_candidate_reason(now);
            self.decide(now, None, text, fx);
            return;
        };
        match self.start_vm(now, &next, Starter::Cycle, fx) {
            Ok(()) => {
                self.last_cycled = Some(next.clone());
                self.decide(now, Some(&next), "cycle: starting (round robin)".into(), fx);
            }
            Err(why) => self.decide(now, Some(&next), format!("cycle: not starting: {why}"), fx),
        }
    }

    /// Whether a policy must leave a free host to Jenkins now: inside the off window after
    /// a stop, or while slot requests have been refused for longer than `fairness_bound`
    /// (recorded as a decision naming `policy`).
    pub(super) fn host_kept_for_jenkins(
        &mut self,
        now: Millis,
        policy: &str,
        fx: &mut Vec<Effect>,
    ) -> bool {
        if now < self.cycle_off_until {
            return true;
        }
        let Some(demand) = self.live_demand(now) else {
            return false;
        };
        if now.saturating_sub(demand.since) < self.config.fairness_bound_ms {
            return false;
        }
        self.decide(
            now,
            None,
            format!(
                "{policy}: holding the host for Jenkins (slot requests refused since {})",
                super::format_ms(demand.since)
            ),
            fx,
        );
        true
    }

    /// The ROOT VM after `last_cycled` in name order that may be started now.
    fn next_root(&self, now: Millis) -> Option<String> {
        let roots: Vec<&String> = self
            .vms
            .values()
            .filter(|vm| vm.team == Team::Root)
            .map(|vm| &vm.name)
            .collect();
        let start = self
            .last_cycled
            .as_ref()
            .map_or(0, |last| roots.iter().position(|n| n > &last).unwrap_or(0));
        (0..roots.len())
            .map(|i| roots[(start + i) % roots.len()])
            .find(|name| {
                self.start_blocker(now, name).is_none()
                    && self.vms.get(*name).is_some_and(|vm| {
                        vm.op.is_none()
                            && matches!(vm.power, PowerState::Stopped | PowerState::Suspended)
                    })
            })
            .cloned()
    }

    fn no_candidate_reason(&self, now: Millis) -> String {
        let reasons: Vec<String> = self
            .vms
            .values()
            .filter(|vm| vm.team == Team::Root)
            .map(|vm| match self.start_blocker(now, &vm.name) {
                Some(err) => err.message,
                None => format!("{} is {}", vm.name, vm.power.as_word()),
            })
            .collect();
        if reasons.is_empty() {
            "cycle: no ROOT VM on this host".to_owned()
        } else {
            format!("cycle: no ROOT VM can start: {}", reasons.join("; "))
        }
    }

    pub(super) fn drive_drain(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        if self.draining.is_none() {
            return;
        }
        let to_stop: Vec<String> = self
            .vms
            .values()
            .filter(|vm| {
                vm.power.occupies_host()
                    && vm.stop.is_none()
                    && vm.start.is_none()
                    && self.leases.get(&vm.name).is_none_or(|l| l.until_ms <= now)
            })
            .map(|vm| vm.name.clone())
            .collect();
        for name in to_stop {
            self.plan_stop(now, &name, StopWhy::Drain, fx);
        }
        let running = self.occupying_names();
        let waiters = std::mem::take(&mut self.drain_waiters);
        for (req, deadline) in waiters {
            if running.is_empty() {
                reply_done(req, "host drained: no VM runs".into(), fx);
            } else if now >= deadline {
                let detail: Vec<String> = running.iter().map(|n| self.busy_message(n)).collect();
                reply_err(
                    req,
                    ErrorKind::Timeout,
                    format!(
                        "drain wait ended with VMs still running (they stop once idle): {}",
                        detail.join("; ")
                    ),
                    fx,
                );
            } else {
                self.drain_waiters.push((req, deadline));
            }
        }
    }
}
