//! Policy `demand`: an idle-host warm runner gives its host to a missing predicted platform
//! (`warm_swap`, off by default: docs/SCHEDULER.md "The swap" has the measured trade).
//!
//! Idle-host warmth keeps one runner per platform on hosts nothing else wants, likeliest
//! first; a predicted target (`warm_min_jobs` jobs in `warm_window`) is a platform a push of
//! this hour asked for. When a push takes the predicted runner and every other host is busy,
//! the hour's next push used to boot cold while a host kept a runner of a platform nobody had
//! asked for in hours (marble-sim, standard trace +15h 31m: the 15:18 push took the mac15 and
//! mac14 runners, hosts 05 and 08 kept mac-beta and mac13 idle-host runners, and the 15:31
//! push waited 1m 53s and 2m 23s). So such a runner — wanted by no configured or predicted
//! target, with no queued job it could take — is stopped when a predicted (or configured)
//! target is missing that a VM here can fill and whose platform the remembered jobs
//! ([`super::warm::RANK_MEMORY_MS`]) show likelier than the runner's, while nothing is unmet
//! and the fleet was not seen full in the last 30 min; the freed host boots the missing
//! platform on its next snapshot (predicted targets skip the idle-warmth delay).
//!
//! One host per missing target: the hosts whose runners could swap rank them the same way
//! (the fleet's idle runners no configured or predicted target wants, in the staggered
//! yield's order: [`super::stagger`]), and the k-th swaps `k × SWAP_STAGGER_MS` after the
//! target went missing — the queue time of its platform's latest job, which every host sees
//! — on a snapshot taken after its turn, which shows the runner an earlier host booted. Each
//! host keeps the highest rank it saw (an earlier host's runner leaves the list when it
//! stops, before its new one is listed). The ranks are not persisted: after a restart a host
//! may swap a second runner for the same target once.

use marble_proto::BusyState;

use super::stagger::{YIELD_STAGGER_MS, rank_key_of};
use super::warm::WarmNeed;
use super::world::World;
use super::{FleetRunner, Millis, QueuedJob, labels_cover};

/// Delay between two ranked hosts' swaps for one target: the earlier host sees the target
/// missing only on its next poll (up to `demand_poll`, 30 s), then probes and stops its
/// runner (~13 s) before its new runner is listed; [`YIELD_STAGGER_MS`] (30 s) let a second
/// host swap for the same target (marble-sim, standard trace +15h 18m: 24 s and 35 s after
/// the target went missing).
const SWAP_STAGGER_MS: Millis = 2 * YIELD_STAGGER_MS;

/// How long a swap rank is kept after its target went missing.
const SWAP_RANK_MEMORY_MS: Millis = 3_600_000;

/// How long a runner that left the free list still counts in the swap's ranks: an earlier
/// host's stop and its new runner's registration take a poll, a probe, a stop and a boot
/// (2–3 min); a runner that left because it took a job only delays later ranks.
pub(super) const LEFT_MEMORY_MS: Millis = 5 * 60_000;

/// Whether a configured or predicted target wants a runner with `labels`.
fn targeted(labels: &[String], needs: &[WarmNeed]) -> bool {
    needs
        .iter()
        .any(|n| !n.idle && labels_cover(labels, &n.labels))
}

impl World {
    /// This host's idle-host runner that should give its host to a missing predicted or
    /// configured target now, with why (module doc). `unmet`, `free_left` and `needs` are
    /// this step's matching ([`World::match_queued`], [`World::warm_needs`]).
    pub(super) fn runner_to_swap(
        &mut self,
        now: Millis,
        unmet: &[QueuedJob],
        free_left: &[FleetRunner],
        needs: &[WarmNeed],
    ) -> Option<(String, String)> {
        self.swap_ranks
            .retain(|(_, anchor, _), _| now.saturating_sub(*anchor) < SWAP_RANK_MEMORY_MS);
        if !self.config.warm_swap || !unmet.is_empty() || !self.warm_boot_allowed(now) {
            return None;
        }
        // Probed idle and listed free by GitHub: a runner the feed shows busy before this
        // host attributed the job, or one whose state is unknown, is not a candidate (its
        // stop would wait parked, and the other hosts rank without it).
        let listed_free = |vm: &str| {
            let runner = self.demand.runner_of(vm);
            self.demand.free_runners.iter().any(|r| r.name == runner)
        };
        let (vm, labels) = self
            .vms
            .values()
            .find(|vm| {
                vm.unused_ready_root()
                    && matches!(vm.busy, BusyState::Idle { .. })
                    && listed_free(&vm.name)
            })
            .map(|vm| (vm.name.clone(), vm.labels.clone()))?;
        if targeted(&labels, needs)
            || self
                .demand
                .root_jobs
                .iter()
                .any(|j| labels_cover(&labels, &j.labels))
        {
            return None;
        }
        let mine = self.remembered(&labels);
        let need = needs.iter().find(|n| {
            !n.idle
                && n.missing() > 0
                && self.remembered(&n.labels) > mine
                && self.demand_candidate(now, &n.labels).is_some()
        })?;
        let anchor = self.need_missing_since(&need.labels)?;
        let key = rank_key_of(&labels, self.demand.runner_of(&vm));
        // Also the runners that left the list in the last few minutes: an earlier host's
        // runner leaves it when it stops to swap, possibly before this host saw it, or on a
        // snapshot where this host could not swap (standard trace +1d 13h 36m: hosts 03 and
        // 05 swapped for one target 8 s apart). Recorded on every snapshot (`world.rs`).
        let left = self.left_recently.iter().map(|(r, _)| r).filter(|r| {
            !self
                .demand
                .free_runners
                .iter()
                .any(|now_free| now_free.name == r.name)
        });
        let seen = free_left
            .iter()
            .chain(left)
            .filter(|r| !targeted(&r.labels, needs) && rank_key_of(&r.labels, &r.name) < key)
            .count();
        let first_possible = self.demand_at;
        let (rank, since) = *self
            .swap_ranks
            .entry((need.labels.clone(), anchor, vm.clone()))
            .and_modify(|(r, _)| *r = (*r).max(seen))
            .or_insert((seen, first_possible));
        // Turns count from when the swap became possible here, not from the anchor alone:
        // a swap that opens long after its target went missing (the job took a runner that
        // was still booting, the congestion window ended, a configured target's runner was
        // stopped by hand) would otherwise find every ranked host past its turn at once.
        let steps = Millis::try_from(rank).unwrap_or(Millis::MAX);
        let turn = anchor
            .max(since)
            .saturating_add(steps.saturating_mul(SWAP_STAGGER_MS));
        if now < turn || (steps > 0 && self.demand_at < turn) {
            return None;
        }
        let why = format!(
            "no configured or predicted target wants it, and the fleet has no idle runner for \
             runs-on {} ({}; its last job queued {})",
            need.labels.join(","),
            need.why,
            super::format_ms(anchor)
        );
        Some((vm, why))
    }

    /// Remember the runners of the previous snapshot's free list (`before`) that the new one
    /// lacks, and forget those older than [`LEFT_MEMORY_MS`].
    pub(super) fn note_runners_left(&mut self, before: Vec<FleetRunner>) {
        let at = self.demand_at;
        let now_free = &self.demand.free_runners;
        let gone = before
            .into_iter()
            .filter(|r| !now_free.iter().any(|n| n.name == r.name));
        for runner in gone {
            self.left_recently
                .retain(|(known, _)| known.name != runner.name);
            self.left_recently.push((runner, at));
        }
        self.left_recently
            .retain(|(_, left_at)| at.saturating_sub(*left_at) < LEFT_MEMORY_MS);
    }

    /// When the target for `labels` went missing, as every host sees it: the queue time of
    /// the latest remembered job a runner with these labels could take (it took the target's
    /// runner, or made the prediction).
    fn need_missing_since(&self, labels: &[String]) -> Option<Millis> {
        self.recent_jobs
            .values()
            .filter(|job| labels_cover(labels, &job.labels))
            .map(|job| job.since_ms)
            .max()
    }
}
