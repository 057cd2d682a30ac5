//! Read-only views of the scheduler for `status`, `vm list` and `vm show`: each VM with its
//! busy state, lock, operation and a note saying why it runs or why it does not start.

use marble_proto::{PendingRequest, StatusReport, VmInfo};

use super::vm::StopPhase;
use super::world::World;
use super::{Millis, action_kind, format_ms};

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
            policy: self.config.policy.as_str().into(),
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

/// Monotonic counters since the daemon started (for metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Starts and resumes issued.
    pub boots: u64,
    /// Boots that failed to start or to become ready.
    pub boot_failures: u64,
    /// Slot requests granted.
    pub grants: u64,
    /// Slot requests refused because the host was busy (75).
    pub refusals_busy: u64,
    /// Slot requests refused because of a lock, drain or quarantine (77).
    pub refusals_locked: u64,
    /// VMs stopped by the scheduler or an operator.
    pub stops: u64,
    /// Stops that needed `--kill` after the graceful timeout.
    pub kills: u64,
    /// Busy probes answered busy / idle / unknown.
    pub probes_busy: u64,
    /// Idle answers.
    pub probes_idle: u64,
    /// Unknown answers.
    pub probes_unknown: u64,
    /// Sum of slot-grant latencies (request to grant), ms.
    pub grant_latency_ms_sum: u64,
}
