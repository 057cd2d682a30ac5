//! Read-only views of the scheduler for `status`, `vm list` and `vm show`: each VM with its
//! busy state, lock, operation and a note saying why it runs or why it does not start.

use marble_proto::{PendingRequest, StatusReport, VmInfo};

use super::vm::StopPhase;
use super::world::World;
use super::{Millis, action_kind, format_ms};

impl World {
    /// Running VMs this daemon did not start and has no record of starting ("found
    /// running": the seed's cycler, a manual `prlctl start`), for `marblectl migrate check`.
    /// A VM it started keeps its reason across restarts (the state file), so only a start
    /// made behind its back is listed.
    pub fn found_running(&self) -> Vec<String> {
        self.vms
            .values()
            .filter(|vm| {
                vm.power.occupies_host()
                    && vm.running_because.is_none()
                    && vm.op.is_none()
                    && vm.start.is_none()
            })
            .map(|vm| vm.name.clone())
            .collect()
    }

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
            // Standing lines last: jobs nobody here can serve (the decision log rolls over).
            decisions: (self.decisions.iter().cloned())
                .chain(self.unservable_lines(now))
                .collect(),
            inventory_ms: self.inventory_ms,
        }
    }
}

/// Upper bounds, in seconds, of the boot-time histogram's buckets: from a fast guest to the
/// five-minute readiness timeout, dense where macOS guests usually land (a minute or two) so
/// that the slow tail — what decides whether a cold start keeps a job's wait short — shows.
pub const BOOT_BUCKETS_SECS: [u64; 9] = [15, 30, 45, 60, 90, 120, 180, 240, 300];

/// Upper bounds, in seconds, of the ROOT job-wait histogram's buckets: a warm runner's few
/// seconds, a cold boot's minute or two (90 and 120 s bracket the policy target's bar on the
/// standard trace), and an hour for a full fleet.
pub const JOB_WAIT_BUCKETS_SECS: [u64; 10] = [5, 15, 30, 60, 90, 120, 300, 600, 1800, 3600];

/// Durations as a cumulative histogram over bounds the caller keeps (one of the
/// `*_BUCKETS_SECS`), ready for Prometheus' `le` buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Histogram {
    /// Observations at or under each bound (empty until the first).
    pub at_or_under: Vec<u64>,
    /// Observations.
    pub count: u64,
    /// Their sum, ms.
    pub sum_ms: u64,
}

impl Histogram {
    /// Count one observation of `ms`.
    pub fn record(&mut self, bounds_secs: &[u64], ms: u64) {
        self.at_or_under.resize(bounds_secs.len(), 0);
        for (bound, n) in bounds_secs.iter().zip(&mut self.at_or_under) {
            if ms <= bound.saturating_mul(1000) {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
    }

    /// Observations at or under the `i`-th bound.
    pub fn at_or_under(&self, i: usize) -> u64 {
        self.at_or_under.get(i).copied().unwrap_or(0)
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
    /// How long the boots MARBLE started took to answer ([`BOOT_BUCKETS_SECS`]).
    pub boot_times: Histogram,
    /// How long the ROOT jobs this host's runners took had been queued
    /// ([`JOB_WAIT_BUCKETS_SECS`]).
    pub root_job_waits: Histogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_fills_cumulative_buckets_bounds_included() {
        let mut boots = Histogram::default();
        assert_eq!(boots.at_or_under(0), 0, "no observation yet");
        boots.record(&BOOT_BUCKETS_SECS, 15_000);
        boots.record(&BOOT_BUCKETS_SECS, 15_001);
        boots.record(&BOOT_BUCKETS_SECS, 301_000);
        assert_eq!(boots.at_or_under(0), 1, "15 s is in le=15");
        assert_eq!(boots.at_or_under(1), 2, "cumulative: le=30 holds both");
        assert_eq!(boots.at_or_under(BOOT_BUCKETS_SECS.len() - 1), 2);
        assert_eq!((boots.count, boots.sum_ms), (3, 331_001));
    }
}
