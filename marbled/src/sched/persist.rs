//! What survives a restart: locks, pause and drain (with who/why/since), slot leases,
//! quarantines, the cycle's position, the operations that were in flight, and what policy
//! `demand` has learnt — the warm-runner prediction's history, the fair-share streak, the
//! Jenkins nodes waiting (since when), why each running runner is up, the spare runners'
//! ranks in the staggered yield — and which jobs' waits the metrics have counted. Kept by VM
//! name, so a lock on a VM that is temporarily unregistered is not lost.

use std::collections::BTreeMap;

use marble_proto::{Attribution, Team};
use serde::{Deserialize, Serialize};

use super::world::World;
use super::{Action, Millis, SchedConfig, action_kind};

/// A granted slot's protection from preemption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Who was granted the VM (the caller's user name).
    pub by: String,
    /// Granted at, unix ms.
    pub since_ms: Millis,
    /// Protected until, unix ms (afterwards only while busy).
    pub until_ms: Millis,
}

/// A VM that failed readiness repeatedly and is not started again before `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// Readiness failures in a row.
    pub failures: u32,
    /// Not started before this unix ms (0: not quarantined, only counting failures).
    pub until_ms: Millis,
    /// The last failure.
    pub last_error: String,
}

/// An operation that was running when the state was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlightOp {
    /// Operation kind (`start`, `stop`, `kill`, …).
    pub operation: String,
    /// Started at, unix ms.
    pub since_ms: Millis,
}

/// A ROOT job the warm-runner prediction saw queued or running (kept for `warm_window`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenJob {
    /// Queued since, unix ms.
    pub since_ms: Millis,
    /// Its `runs-on` labels, lower-case and sorted (the prediction's grouping key).
    pub labels: Vec<String>,
}

/// Fair share: consecutive turns one team took while the other waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streak {
    /// The team that took them.
    pub team: Team,
    /// How many in a row (for messages; the bound is a time, `fairness_bound`).
    pub count: u32,
    /// The first of them was taken at this unix ms: the other team has been passed over
    /// since (0 in files written before issue 17: the restart's time is used).
    #[serde(default)]
    pub since_ms: Millis,
}

/// A Jenkins node waiting for this host: since its first slot request, kept across retries,
/// refusals and pre-emption probes until it is granted or stops asking for
/// `waiter_expiry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpiWaiter {
    /// First request, unix ms.
    pub since_ms: Millis,
    /// Last request seen waiting, unix ms (not persisted: a restart counts as seen).
    #[serde(skip)]
    pub last_seen_ms: Millis,
}

/// Why a running ROOT VM is up. Without it a restart would stop a warm runner or a spare
/// before its linger ends (its boot thrown away), and keep a used single-use runner for a
/// job GitHub will never give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerStanding {
    /// Kept at least until this unix ms (warm linger, cycle on-time).
    pub on_until_ms: Option<Millis>,
    /// Why it runs, as `status` shows it.
    pub because: Option<String>,
    /// Its single-use runner has run its job (a probe saw it busy).
    pub used: bool,
}

/// The state file's content (JSON inside the store's versioned header).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Persisted {
    /// Locked VMs by name.
    pub locks: BTreeMap<String, Attribution>,
    /// Cycling paused.
    pub paused: Option<Attribution>,
    /// Host draining.
    pub draining: Option<Attribution>,
    /// Slot leases by VM name.
    pub leases: BTreeMap<String, Lease>,
    /// Readiness failures and quarantines by VM name.
    pub quarantine: BTreeMap<String, Quarantine>,
    /// The ROOT VM the cycle started last (the round robin continues after it).
    pub last_cycled: Option<String>,
    /// The cycle starts nothing before this unix ms (the window left for Jenkins).
    pub cycle_off_until_ms: Millis,
    /// Operations in flight by VM name; after a restart they become "needs reconcile".
    pub in_flight: BTreeMap<String, InFlightOp>,
    /// The warm-runner prediction's history by GitHub job id.
    pub seen_jobs: BTreeMap<u64, SeenJob>,
    /// Fair share: the streak in progress.
    pub streak: Option<Streak>,
    /// Fair share: Jenkins nodes waiting for this host by VM name (their age survives a
    /// restart, which Jenkins' retries ride through).
    pub spi_waiters: BTreeMap<String, SpiWaiter>,
    /// Running ROOT VMs' standing by VM name; applied if the first inventory after a
    /// restart still finds the VM running.
    pub runners: BTreeMap<String, RunnerStanding>,
    /// Policy `demand`'s staggered yield (`sched/stagger.rs`): by queued job id, the highest
    /// rank each spare runner (by VM name) had among the hosts that could yield to it.
    /// Re-derived after a restart, a rank drops once an earlier host's runner has left the
    /// list by yielding, and a second host yielded for the same job.
    pub yield_ranks: BTreeMap<u64, BTreeMap<String, usize>>,
    /// Jobs whose wait this host has counted in `marble_root_job_wait_seconds` (GitHub job
    /// ids, newest last, bounded). The histogram restarts from zero with the daemon, as
    /// every counter does, and a rate over the restart adds both lives: a job of a runner
    /// kept across the restart, still running, was counted in each.
    pub waits_counted: Vec<u64>,
}

impl World {
    /// A world restored from the state file; in-flight operations become "needs reconcile".
    /// Nothing is started before the first inventory says what actually runs.
    pub fn restore(config: SchedConfig, persisted: Persisted, now: Millis) -> Self {
        let mut world = Self::new(config, now);
        world.locks = persisted.locks;
        world.paused = persisted.paused;
        world.draining = persisted.draining;
        world.leases = persisted.leases;
        world.quarantine = persisted.quarantine;
        world.last_cycled = persisted.last_cycled;
        world.cycle_off_until = persisted.cycle_off_until_ms;
        world.pending_reconcile = persisted.in_flight;
        // Jobs that left the window while the daemon was down no longer count.
        world.recent_jobs = persisted.seen_jobs;
        world.forget_old_jobs(now);
        // A streak from before issue 17 has no start: it starts now.
        world.streak = persisted.streak.map(|s| Streak {
            since_ms: if s.since_ms == 0 { now } else { s.since_ms },
            ..s
        });
        world.spi_waiters = persisted
            .spi_waiters
            .into_iter()
            .map(|(vm, w)| {
                let seen = SpiWaiter {
                    since_ms: w.since_ms,
                    last_seen_ms: now,
                };
                (vm, seen)
            })
            .collect();
        world.restored_runners = persisted.runners;
        // Jobs no longer queued are pruned at the first demand snapshot.
        world.yield_ranks = (persisted.yield_ranks.into_iter())
            .flat_map(|(job, ranks)| ranks.into_iter().map(move |(vm, r)| ((job, vm), r)))
            .collect();
        world.waits_counted = persisted.waits_counted.into_iter().collect();
        world
    }

    /// What to write to the state file.
    pub fn persisted(&self) -> Persisted {
        let mut in_flight: BTreeMap<String, InFlightOp> = self
            .ops
            .values()
            .filter(|(_, action, _)| !matches!(action, Action::Probe(_)))
            .map(|(vm, action, since)| {
                (
                    vm.clone(),
                    InFlightOp {
                        operation: action_kind(action).to_owned(),
                        since_ms: *since,
                    },
                )
            })
            .collect();
        // Not yet reconciled notes stay until an inventory has been seen.
        for (vm, op) in &self.pending_reconcile {
            in_flight.entry(vm.clone()).or_insert_with(|| op.clone());
        }
        let mut runners: BTreeMap<String, RunnerStanding> = self
            .vms
            .values()
            .filter(|vm| vm.team == Team::Root && vm.power.occupies_host())
            .filter(|vm| vm.on_until.is_some() || vm.running_because.is_some() || vm.was_busy)
            .map(|vm| {
                (
                    vm.name.clone(),
                    RunnerStanding {
                        on_until_ms: vm.on_until,
                        because: vm.running_because.clone(),
                        used: vm.was_busy,
                    },
                )
            })
            .collect();
        // Not yet applied (no inventory since the restart): kept for the next one.
        for (vm, standing) in &self.restored_runners {
            runners
                .entry(vm.clone())
                .or_insert_with(|| standing.clone());
        }
        Persisted {
            locks: self.locks.clone(),
            paused: self.paused.clone(),
            draining: self.draining.clone(),
            leases: self.leases.clone(),
            quarantine: self.quarantine.clone(),
            last_cycled: self.last_cycled.clone(),
            cycle_off_until_ms: self.cycle_off_until,
            in_flight,
            seen_jobs: self.recent_jobs.clone(),
            streak: self.streak,
            spi_waiters: self
                .spi_waiters
                .iter()
                .map(|(vm, w)| {
                    let since = SpiWaiter {
                        since_ms: w.since_ms,
                        last_seen_ms: 0,
                    };
                    (vm.clone(), since)
                })
                .collect(),
            runners,
            yield_ranks: self.yield_ranks.iter().fold(
                BTreeMap::new(),
                |mut by_job, ((job, vm), rank)| {
                    by_job.entry(*job).or_default().insert(vm.clone(), *rank);
                    by_job
                },
            ),
            waits_counted: self.waits_counted.iter().copied().collect(),
        }
    }
}
