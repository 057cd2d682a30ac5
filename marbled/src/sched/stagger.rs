//! Policy `demand`: which host's warm runner yields to an unmet job, and when. Every host
//! holding an idle runner that cannot take the job used to give it up once the job had waited
//! `warm_yield`; hosts whose 60 s expired within a few seconds all did, for one job (marble-sim,
//! `labels@2002` jobs #32 and #37: a boot thrown away, a platform left cold). The runner the
//! first host boots for the job shows in the feed only after its probe, stop and a fresh
//! snapshot (~13 s), too late for the others.
//!
//! So the hosts that could yield are ranked, the same way on every host (all read the same
//! runner list): the fleet's idle runners left once the queued jobs took theirs, those whose
//! architecture label matches the job's first (a host of another architecture is less likely
//! to have a VM for it), then by their labels. The k-th yields `k × YIELD_STAGGER_MS` after
//! `warm_yield`, and only on a snapshot taken after that, which shows the runner an earlier
//! host booted for the job (the job is then met and nobody else yields). A host remembers the
//! highest rank it has seen for a job: once an earlier host yields, its runner leaves the
//! list and the later host's rank would otherwise drop to 0 at once. Nothing is orphaned: if
//! the earlier host's stop or boot fails, the job stays unmet and the next host's turn comes;
//! a host that cannot run the job only delays the next by one step. Runners with the same
//! labels rank by runner name, the one name every host sees in the runner list (the actor
//! maps this host's VMs to theirs, `DemandSnapshot::runners_here`): ranked equal, two hosts
//! with identical warm runners both yielded for one job.

use std::collections::BTreeSet;

use super::world::World;
use super::{FleetRunner, Millis, QueuedJob};

/// Delay between two ranked hosts' yields for one job: covers the earlier host's decision (up
/// to a tick after its turn), probe, stop and fresh snapshot before its new runner shows.
pub(super) const YIELD_STAGGER_MS: Millis = 30_000;

/// Architecture labels (the job's and a runner's, compared case-insensitively).
const ARCH_LABELS: [&str; 2] = ["arm64", "x64"];

/// Whether a runner with `labels` has an architecture label other than `job`'s (a runner or
/// job without one matches any).
pub(super) fn other_arch(labels: &[String], job: &QueuedJob) -> bool {
    let arch = |set: &[String]| -> Option<String> {
        set.iter()
            .map(|l| l.to_ascii_lowercase())
            .find(|l| ARCH_LABELS.contains(&l.as_str()))
    };
    match (arch(labels), arch(&job.labels)) {
        (Some(mine), Some(wanted)) => mine != wanted,
        _ => false,
    }
}

/// The runner's ordering key for `job`: a runner whose architecture label differs from the
/// job's sorts after every other, then by its lower-cased, sorted labels, then by its name
/// (so no two runners rank equal).
fn rank_key<'a>(labels: &[String], name: &'a str, job: &QueuedJob) -> (bool, Vec<String>, &'a str) {
    let (key, name) = rank_key_of(labels, name);
    (other_arch(labels, job), key, name)
}

/// A runner's ordering key among runners of any job: its lower-cased, sorted labels, then
/// its name (the swap of an idle-host runner: [`super::swap`]).
pub(super) fn rank_key_of<'a>(labels: &[String], name: &'a str) -> (Vec<String>, &'a str) {
    let mut key: Vec<String> = labels.iter().map(|l| l.to_ascii_lowercase()).collect();
    key.sort();
    key.dedup();
    (key, name)
}

impl World {
    /// Whether this host's spare runner (`mine`: its VM's name and labels) may yield to
    /// `job` now: its rank among `free_left` (the fleet's idle runners no queued job takes)
    /// sets how long after `warm_yield` its turn comes; a later turn needs a snapshot taken
    /// after it.
    pub(super) fn yield_turn_come(
        &mut self,
        now: Millis,
        job: &QueuedJob,
        mine: Option<(&str, &[String])>,
        free_left: &[FleetRunner],
    ) -> bool {
        let waited = now.saturating_sub(job.since_ms);
        let Some((vm, labels)) = mine else {
            return waited >= self.config.warm_yield_ms;
        };
        let key = rank_key(labels, self.demand.runner_of(vm), job);
        let seen = free_left
            .iter()
            .filter(|other| rank_key(&other.labels, &other.name, job) < key)
            .count();
        let rank = self
            .yield_ranks
            .entry((job.id, vm.to_owned()))
            .and_modify(|r| *r = (*r).max(seen))
            .or_insert(seen);
        let steps = Millis::try_from(*rank).unwrap_or(Millis::MAX);
        let turn = job
            .since_ms
            .saturating_add(self.config.warm_yield_ms)
            .saturating_add(steps.saturating_mul(YIELD_STAGGER_MS));
        now >= turn && (steps == 0 || self.demand_at >= turn)
    }

    /// Forget the ranks of jobs no longer queued: on each demand snapshot (not each step:
    /// a daemon restored from its state file has none before its first poll, and would
    /// forget the ranks it restored).
    pub(super) fn prune_yield_ranks(&mut self) {
        let queued: BTreeSet<u64> = self.demand.root_jobs.iter().map(|j| j.id).collect();
        self.yield_ranks.retain(|(id, _), _| queued.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn runners_of_the_jobs_architecture_rank_first_then_by_labels() {
        let job = QueuedJob {
            id: 1,
            since_ms: 0,
            labels: s(&["self-hosted", "macOS", "ARM64", "mac15"]),
        };
        let intel = rank_key(&s(&["self-hosted", "macOS", "X64", "mac14"]), "a", &job);
        let m13 = rank_key(&s(&["self-hosted", "macOS", "ARM64", "mac13"]), "z", &job);
        let m14 = rank_key(&s(&["macOS", "self-hosted", "arm64", "mac14"]), "b", &job);
        let m14_too = rank_key(&s(&["self-hosted", "macOS", "ARM64", "mac14"]), "c", &job);
        assert!(m13 < m14);
        assert!(m14 < m14_too, "same labels: by runner name");
        assert!(m14_too < intel);
    }
}
