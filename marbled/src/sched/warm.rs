//! Warm runners for policy `demand`: ROOT runners registered and idle ahead of the jobs, so a
//! job starts as soon as GitHub hands it out instead of waiting for a poll and a boot.
//!
//! Targets are fleet-wide counts of idle runners per `runs-on` label set, from two places:
//! - configured `[[scheduler.warm]]` entries (always kept);
//! - the prediction: a label set with at least `warm_min_jobs` jobs queued within
//!   `warm_window` (seen queued or running in the demand snapshots) gets one warm runner. The
//!   history is what GitHub shows of the recent past, so it follows the working day: the
//!   morning's first jobs switch it on, a quiet evening switches it off. It is kept in the
//!   state file, so a daemon restart does not switch the prediction off.
//!
//! The fleet's idle runners count against the targets after the queued jobs have taken theirs
//! (GitHub gives a queued job to an idle runner whose labels cover it), so a host boots a warm
//! runner only when the whole fleet is short of one. Queued jobs always come first: a warm
//! runner gives its host up to an unmet job it cannot take once that job has waited
//! `warm_yield` (time for a free host elsewhere to take it).
//!
//! The price is boots that never serve a job (a warm runner preempted by a Jenkins slot
//! request, or stopped as surplus); `docs/SCHEDULER.md` shows the measured trade.

use std::collections::BTreeMap;

use marble_proto::{BusyState, PowerState, Team};

use super::persist::SeenJob;
use super::vm::StopWhy;
use super::world::World;
use super::{Action, DemandSnapshot, Effect, FleetRunner, Millis, QueuedJob, labels_cover};

/// Idle-host warmth waits until its host has been free this long: a host freed between two
/// jobs of a busy hour gets the next job soon, and a warm runner of another platform would
/// only be given up to it unused (marble-sim, standard trace).
pub(super) const IDLE_WARM_AFTER_MS: Millis = 10 * 60_000;

/// How long the jobs seen are remembered to rank platforms by likelihood (longer than
/// `warm_window`, which only decides the prediction): after a quiet night the window is
/// empty, and idle-host warmth ranked the platforms by name — `mac-beta` (a quarter of the
/// pushes) first, `mac15` (nine in ten) last — so the morning's push found its likeliest
/// platforms cold (marble-sim, standard trace).
pub(super) const RANK_MEMORY_MS: Millis = 24 * 3_600_000;

/// One warm-runner target and why it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WarmNeed {
    /// The labels the runners must cover.
    pub(super) labels: Vec<String>,
    /// Runners wanted, fleet-wide.
    pub(super) count: u32,
    /// Idle runners in the fleet covering it, after the queued jobs took theirs.
    pub(super) have: u32,
    /// Why (configured, or the prediction's evidence), for decisions.
    pub(super) why: String,
    /// From idle-host warmth (not configured or predicted): booted only by a host that has
    /// been free for [`IDLE_WARM_AFTER_MS`].
    pub(super) idle: bool,
}

impl WarmNeed {
    /// Runners still missing.
    pub(super) fn missing(&self) -> u32 {
        self.count.saturating_sub(self.have)
    }
}

/// Labels compared as GitHub does (case-insensitively), in a canonical order for grouping.
fn canonical(labels: &[String]) -> Vec<String> {
    let mut out: Vec<String> = labels.iter().map(|l| l.to_ascii_lowercase()).collect();
    out.sort();
    out.dedup();
    out
}

impl World {
    /// Learn from a demand snapshot: every job seen queued or running that a ROOT VM of this
    /// host could run, kept for the window (and for [`RANK_MEMORY_MS`], to rank platforms).
    /// The others (a repository's Linux and Windows jobs, hundreds an hour) could never make
    /// this host boot a warm runner, and would only swell the state file.
    pub(super) fn remember_jobs(&mut self, now: Millis, snapshot: &DemandSnapshot) {
        if self.config.warm_window_ms == 0 {
            self.recent_jobs.clear();
            return;
        }
        let servable = |labels: &[String]| {
            self.vms
                .values()
                .any(|vm| vm.team == Team::Root && labels_cover(&vm.labels, labels))
        };
        let new: Vec<(u64, SeenJob)> = snapshot
            .root_jobs
            .iter()
            .chain(&snapshot.running_jobs)
            .filter(|job| !self.recent_jobs.contains_key(&job.id) && servable(&job.labels))
            .map(|job| {
                (
                    job.id,
                    SeenJob {
                        since_ms: job.since_ms,
                        labels: canonical(&job.labels),
                    },
                )
            })
            .collect();
        self.recent_jobs.extend(new);
        self.forget_old_jobs(now);
    }

    /// Drop the jobs seen before both the prediction's window and [`RANK_MEMORY_MS`] (all of
    /// them when the prediction is off): after each snapshot, and after a restart for the
    /// jobs that aged out while the daemon was down.
    pub(super) fn forget_old_jobs(&mut self, now: Millis) {
        let window = self.config.warm_window_ms;
        let horizon = now.saturating_sub(window.max(RANK_MEMORY_MS));
        self.recent_jobs
            .retain(|_, seen| window > 0 && seen.since_ms >= horizon);
    }

    /// Queued jobs no idle runner will take (oldest first), and the labels of the idle
    /// runners left over once the queued jobs have taken theirs. A job nobody this host can
    /// see will ever serve ([`World::unservable`]: reported in `status` and the metrics) is
    /// not unmet: no runner covers it, so it takes none, and no boot here can help it.
    pub(super) fn match_queued(&self) -> (Vec<QueuedJob>, Vec<FleetRunner>) {
        let mut jobs: Vec<QueuedJob> = (self.demand.root_jobs.iter())
            .filter(|job| !self.unservable(job))
            .cloned()
            .collect();
        jobs.sort_by_key(|j| (j.since_ms, j.id));
        let mut free: Vec<FleetRunner> = self.demand.free_runners.clone();
        let mut unmet = Vec::new();
        for job in jobs {
            match free
                .iter()
                .position(|r| labels_cover(&r.labels, &job.labels))
            {
                Some(i) => {
                    free.swap_remove(i);
                }
                None => unmet.push(job),
            }
        }
        (unmet, free)
    }

    /// Every warm target (configured first, then predicted, busiest first) with how many of
    /// `free` (the idle runners left once queued jobs took theirs: [`World::match_queued`])
    /// already fill it. An idle runner fills at most one target.
    pub(super) fn warm_needs(&self, free: &[FleetRunner]) -> Vec<WarmNeed> {
        let mut free: Vec<&[String]> = free.iter().map(|r| r.labels.as_slice()).collect();
        let mut needs: Vec<WarmNeed> = self
            .config
            .warm
            .iter()
            .filter(|t| t.count > 0 && !t.labels.is_empty())
            .map(|t| WarmNeed {
                labels: canonical(&t.labels),
                count: t.count,
                have: 0,
                idle: false,
                why: format!(
                    "configured: {} warm for runs-on {}",
                    t.count,
                    t.labels.join(",")
                ),
            })
            .collect();
        if self.config.warm_window_ms > 0 {
            let horizon = self.last_now.saturating_sub(self.config.warm_window_ms);
            let mut seen: BTreeMap<&Vec<String>, u32> = BTreeMap::new();
            for job in self.recent_jobs.values() {
                if job.since_ms >= horizon {
                    *seen.entry(&job.labels).or_default() += 1;
                }
            }
            let mut predicted: Vec<(&Vec<String>, u32)> = seen
                .into_iter()
                .filter(|(_, n)| *n >= self.config.warm_min_jobs.max(1))
                .collect();
            // Ties go to the platform of more jobs over the longer memory.
            predicted.sort_by_cached_key(|&(labels, n)| {
                (std::cmp::Reverse((n, self.remembered(labels))), labels)
            });
            for (labels, n) in predicted {
                if needs.iter().any(|t| &t.labels == labels) {
                    continue;
                }
                needs.push(WarmNeed {
                    labels: labels.clone(),
                    count: 1,
                    have: 0,
                    idle: false,
                    why: format!(
                        "predicted: {n} job(s) for runs-on {} in the last {}",
                        labels.join(","),
                        humantime::format_duration(std::time::Duration::from_millis(
                            self.config.warm_window_ms
                        ))
                    ),
                });
            }
        }
        if self.config.warm_idle_hosts {
            self.push_idle_host_needs(&mut needs);
        }
        for need in &mut needs {
            while need.have < need.count {
                match free.iter().position(|r| labels_cover(r, &need.labels)) {
                    Some(i) => {
                        free.swap_remove(i);
                        need.have += 1;
                    }
                    None => break,
                }
            }
        }
        needs
    }
}

impl World {
    /// Jobs remembered (up to [`RANK_MEMORY_MS`]) that a runner with `labels` could take:
    /// how likely its platform is.
    pub(super) fn remembered(&self, labels: &[String]) -> usize {
        self.recent_jobs
            .values()
            .filter(|job| labels_cover(labels, &job.labels))
            .count()
    }

    /// Idle-host warmth: one idle runner fleet-wide for every label set a ROOT VM of this
    /// host offers, after the configured and predicted targets, the likeliest first (most
    /// jobs in the remembered history, [`RANK_MEMORY_MS`], then name order). A free host
    /// boots the first one no idle runner in the fleet covers, so the fleet's idle hosts keep
    /// different platforms and a quiet fleet's next job, whatever its labels, finds a runner
    /// up (marble-sim, `docs/traces/quiet-trickle.toml`: every job started cold without it).
    fn push_idle_host_needs(&self, needs: &mut Vec<WarmNeed>) {
        let mut sets: Vec<Vec<String>> = self
            .vms
            .values()
            .filter(|vm| vm.team == Team::Root && !vm.labels.is_empty())
            .map(|vm| canonical(&vm.labels))
            .collect();
        sets.sort();
        sets.dedup();
        let mut ranked: Vec<(usize, Vec<String>)> = sets
            .into_iter()
            .map(|set| (self.remembered(&set), set))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        for (_, labels) in ranked {
            if needs.iter().any(|t| t.labels == labels) {
                continue;
            }
            let why = format!(
                "idle host: no idle runner in the fleet for runs-on {}",
                labels.join(",")
            );
            needs.push(WarmNeed {
                labels,
                count: 1,
                have: 0,
                why,
                idle: true,
            });
        }
    }
}

/// Whether an idle ROOT VM with `labels` is still wanted warm: a target it could fill
/// exists. A surplus (two hosts booted for one target) is kept too: stopping it would throw
/// its boot away, and it takes the next matching job; no new warm boot happens meanwhile.
pub(super) fn wanted_warm(labels: &[String], needs: &[WarmNeed]) -> bool {
    needs.iter().any(|need| labels_cover(labels, &need.labels))
}

impl World {
    /// Runner re-arm (`jobs_per_boot` > 1): a running ROOT VM whose runner has done its job
    /// (seen busy, now probed idle), that has jobs left this boot and that an unmet job
    /// fits, gets a fresh runner in the running guest (`Action::Rearm`) instead of a stop
    /// and a boot. Returns whether it did.
    pub(super) fn try_rearm(
        &mut self,
        now: Millis,
        name: &str,
        unmet: &[QueuedJob],
        fx: &mut Vec<Effect>,
    ) -> bool {
        let Some(vm) = self.vms.get(name) else {
            return false;
        };
        let done = vm.team == Team::Root
            && vm.ready
            && vm.power == PowerState::Running
            && vm.op.is_none()
            && vm.stop.is_none()
            && vm.was_busy
            && matches!(vm.busy, BusyState::Idle { .. });
        if !done || self.config.jobs_per_boot <= vm.rearms.saturating_add(1) {
            return false;
        }
        let Some(job) = unmet.iter().find(|j| labels_cover(&vm.labels, &j.labels)) else {
            return false;
        };
        let text = format!(
            "demand: re-arming its runner for job #{} (runs-on {}): job {} of at most {} this boot",
            job.id,
            job.labels.join(","),
            vm.rearms + 2,
            self.config.jobs_per_boot
        );
        self.run(now, name, Action::Rearm, fx);
        self.decide(now, Some(name), text, fx);
        true
    }

    /// Whether a ROOT VM whose runner has taken its job should be kept, not stopped, until
    /// that job ends: a re-arm is possible (jobs left this boot) and an unmet job fits. The
    /// feed can report a runner used while its job still runs; stopping it then (the probe
    /// holds the stop until the job ends, and the stop goes on from there) would skip the
    /// re-arm that `try_rearm` makes once the probe says idle.
    pub(super) fn rearm_pending(&self, name: &str, unmet: &[QueuedJob]) -> bool {
        let Some(vm) = self.vms.get(name) else {
            return false;
        };
        vm.team == Team::Root
            && vm.was_busy
            && vm.stop.is_none()
            && self.config.jobs_per_boot > vm.rearms.saturating_add(1)
            && unmet.iter().any(|j| labels_cover(&vm.labels, &j.labels))
    }

    /// The guest has a fresh runner: it is a runner without a job again, kept like one
    /// booted for a job.
    pub(super) fn on_rearmed(&mut self, now: Millis, name: &str, fx: &mut Vec<Effect>) {
        let linger = self.config.cycle_on_min_ms.max(self.config.warm_linger_ms);
        let recheck = self.config.busy_recheck_ms.max(1);
        let Some(vm) = self.vms.get_mut(name) else {
            return;
        };
        vm.rearms = vm.rearms.saturating_add(1);
        vm.was_busy = false;
        vm.busy = BusyState::NotProbed;
        vm.probe_ms = None;
        vm.next_probe_ms = now.saturating_add(recheck);
        vm.on_until = Some(now.saturating_add(linger));
        vm.running_because = Some(format!("runner re-armed at {}", super::format_ms(now)));
        let text = format!(
            "re-armed: a fresh runner waits for a job ({} re-arm(s) this boot)",
            vm.rearms
        );
        self.decide(now, Some(name), text, fx);
    }

    /// A re-arm failed (no GitHub, mint or delivery failed): the VM is stopped as without
    /// re-arm (probe first), and its next job gets a fresh boot.
    pub(super) fn on_rearm_failed(
        &mut self,
        now: Millis,
        name: &str,
        err: &str,
        fx: &mut Vec<Effect>,
    ) {
        self.decide(
            now,
            Some(name),
            format!("demand: stopping once idle: runner re-arm failed: {err}"),
            fx,
        );
        self.plan_stop(now, name, StopWhy::Demand, fx);
    }
}
