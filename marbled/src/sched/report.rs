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

/// Upper bounds, in seconds, of the boot-time histogram's buckets: from a fast guest to the
/// five-minute readiness timeout, dense where macOS guests usually land (a minute or two) so
/// that the slow tail — what decides whether a cold start keeps a job's wait short — shows.
pub const BOOT_BUCKETS_SECS: [u64; 9] = [15, 30, 45, 60, 90, 120, 180, 240, 300];

/// Boot times (`prlctl start` issued → the guest answers) of the boots MARBLE started, as a
/// cumulative histogram over [`BOOT_BUCKETS_SECS`]. Resumes are not boots and not counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BootTimes {
    /// Boots at or under each bound (cumulative, as Prometheus' `le` buckets).
    pub at_or_under: [u64; BOOT_BUCKETS_SECS.len()],
    /// Boots measured.
    pub count: u64,
    /// Their sum, ms.
    pub sum_ms: u64,
}

impl BootTimes {
    /// Count one boot of `ms`.
    pub fn record(&mut self, ms: u64) {
        for (bound, n) in BOOT_BUCKETS_SECS.iter().zip(&mut self.at_or_under) {
            if ms <= bound * 1000 {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
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
    /// How long the boots MARBLE started took to answer.
    pub boot_times: BootTimes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_times_fill_cumulative_buckets_bounds_included() {
        let mut boots = BootTimes::default();
        boots.record(15_000);
        boots.record(15_001);
        boots.record(301_000);
        assert_eq!(boots.at_or_under[0], 1, "15 s is in le=15");
        assert_eq!(boots.at_or_under[1], 2, "cumulative: le=30 holds both");
        assert_eq!(boots.at_or_under[BOOT_BUCKETS_SECS.len() - 1], 2);
        assert_eq!((boots.count, boots.sum_ms), (3, 331_001));
    }
}
