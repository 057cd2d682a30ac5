//! Read-only views of the scheduler for `status`, `vm list` and `vm show`: each VM with its
//! busy state, lock, operation and a note saying why it runs or why it does not start.

use marble_proto::{PendingRequest, StatusReport, VmInfo};

use super::vm::StopPhase;
use super::world::World;
use super::{Millis, Policy, action_kind, format_ms};

impl World {
    /// All VMs for `ListVms`.
    pub fn vms(&self, now: Millis) -> Vec<VmInfo> {
        self.vms
            .values()
            .map(|vm| {
                let operation = vm
                    .op
                    .as_ref()
                    .map(|(_, action)| action_kind(action).to_owned())
                    .or_else(|| {
                        vm.stop.as_ref().map(|plan| match plan.phase {
                            StopPhase::Probe { not_before } if not_before > now => format!(
                                "stop pending ({}), re-check at {}",
                                plan.why.describe(),
                                format_ms(not_before)
                            ),
                            _ => format!("stopping ({})", plan.why.describe()),
                        })
                    });
                let mut notes = Vec::new();
                if let Some(why) = &vm.reconcile {
                    notes.push(why.clone());
                }
                if let Some(why) = &vm.running_because
                    && vm.power.occupies_host()
                {
                    notes.push(why.clone());
                }
                if let Some(lease) = self.leases.get(&vm.name)
                    && lease.until_ms > now
                {
                    notes.push(format!(
                        "protected for {} until {}",
                        lease.by,
                        format_ms(lease.until_ms)
                    ));
                }
                if let Some(until) = vm.on_until {
                    notes.push(format!("cycle on-time until {}", format_ms(until)));
                }
                if let Some(q) = self.quarantine.get(&vm.name)
                    && q.until_ms > now
                {
                    notes.push(format!(
                        "quarantined until {} ({} failures: {})",
                        format_ms(q.until_ms),
                        q.failures,
                        q.last_error
                    ));
                }
                VmInfo {
                    name: vm.name.clone(),
                    uuid: vm.uuid.clone(),
                    team: vm.team,
                    power: vm.power.clone(),
                    busy: vm.busy.clone(),
                    lock: self.locks.get(&vm.name).cloned(),
                    operation,
                    note: notes.join("; "),
                }
            })
            .collect()
    }

    /// A status report; the actor fills `daemon_version` and `host`.
    pub fn status(&self, now: Millis) -> StatusReport {
        StatusReport {
            daemon_version: String::new(),
            host: String::new(),
            policy: match self.config.policy {
                Policy::Manual => "manual".into(),
                Policy::Cycle => "cycle".into(),
            },
            capacity: self.config.capacity,
            paused: self.paused.clone(),
            draining: self.draining.clone(),
            vms: self.vms(now),
            pending: self
                .slots
                .iter()
                .map(|s| PendingRequest {
                    vm: s.vm.clone(),
                    by: s.by.clone(),
                    since_ms: s.since,
                })
                .collect(),
            decisions: self.decisions.iter().cloned().collect(),
            inventory_ms: self.inventory_ms,
        }
    }
}
