//! The ideal-scheduler reference of `marble-sim compare`: the job waits a clairvoyant,
//! overhead-free FIFO scheduler would get from the same arrivals on the same fleet.
//!
//! The model: no boot, stop, poll or probe time; a host of capacity `c` runs up to `c` jobs
//! at once, each on its own VM (a VM runs one job at a time: one ephemeral runner, one
//! Jenkins build); a ROOT job may run on a ROOT VM whose labels cover its own
//! ([`marbled::sched::labels_cover`]), an SPI build on the SPI VM it names, or on any SPI VM
//! for `any`. Jobs are placed one by one in arrival order (FIFO list scheduling), each on the
//! host where it can start earliest (ties: the first host), starting at
//! `max(arrival, a slot of the host frees, an eligible VM of the host frees)`. A job is never
//! delayed for a later one and a later one never fills a gap left before an earlier one's
//! start (no backfilling; at capacity 1 there are no such gaps).
//!
//! Two variants: ROOT alone (SPI ignored: the best ROOT can get on this fleet with this
//! discipline) and both teams in one FIFO order (ROOT before SPI at equal arrival times).
//! A third, the boot-bound reference, places both teams the same way but charges one job per
//! boot: a slot or VM that ran a job is ready again only `sim.stop_latency + boot.min` after
//! its end ([`schedule_with_gap`]; what it bounds and what it ignores: docs/SIMULATOR.md).
//!
//! This is a reference point — "what a perfect, overhead-free FIFO scheduler gets" — not a
//! proven lower bound on any percentile: a scheduler that reorders jobs (shortest first,
//! backfilling, choosing hosts with foresight) can beat FIFO on p95 in some traces. Like the
//! engine's metrics, waits are arrival → start of jobs that start before the end of the
//! simulated time; a job that would start later, or that no VM can run, has no wait.

use marble_proto::Team;
use marbled::sched::labels_cover;
use serde::Serialize;

use super::generate::{JenkinsArrival, RootArrival, arrivals};
use super::ideal_faults::{FaultCharges, without_dead};
use super::metrics::percentile;
use super::trace::Trace;

/// One VM of the ideal fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdealVm {
    /// Its name (what a named SPI build asks for).
    pub name: String,
    /// Its team.
    pub team: Team,
    /// Runner labels (ROOT VMs).
    pub labels: Vec<String>,
}

/// One host of the ideal fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdealHost {
    /// Jobs (VMs) it runs at once.
    pub capacity: u32,
    /// Its VMs.
    pub vms: Vec<IdealVm>,
}

/// What a job needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// A ROOT VM whose labels cover these.
    Root(Vec<String>),
    /// The SPI VM of this name, or any SPI VM for `None`.
    Spi(Option<String>),
}

/// One job to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdealJob {
    /// Arrival, ms.
    pub at_ms: u64,
    /// Run time, ms.
    pub duration_ms: u64,
    /// Where it may run.
    pub need: Need,
}

impl IdealJob {
    fn from_root(a: &RootArrival) -> Self {
        Self {
            at_ms: a.at_ms,
            duration_ms: a.duration_ms,
            need: Need::Root(a.labels.iter().cloned().collect()),
        }
    }

    fn from_spi(a: &JenkinsArrival) -> Self {
        Self {
            at_ms: a.at_ms,
            duration_ms: a.duration_ms,
            need: Need::Spi(a.vm.clone()),
        }
    }

    fn is_root(&self) -> bool {
        matches!(self.need, Need::Root(_))
    }

    fn fits(&self, vm: &IdealVm) -> bool {
        match &self.need {
            Need::Root(labels) => vm.team == Team::Root && labels_cover(&vm.labels, labels),
            Need::Spi(name) => vm.team == Team::Spi && name.as_ref().is_none_or(|n| *n == vm.name),
        }
    }
}

/// The fleet of `trace`: its hosts, their capacities and VMs. A host's capacity is the
/// smaller of its `capacity` (`[host]`/`[[hosts]]`, the ground truth of how many VMs may run)
/// and `scheduler.capacity` (how many the scheduler, the same on every host, lets run): the
/// reference must run at the capacity the scheduler runs at, or it counts jobs as lost that
/// only a second slot the scheduler never uses could start (`replay-all` replaces a trace's
/// `scheduler.capacity` with the shipped 1 while its `[host]` may say 2).
pub fn fleet(trace: &Trace) -> Vec<IdealHost> {
    let scheduled = trace.scheduler.capacity;
    let mut hosts: Vec<IdealHost> = trace
        .host_sections()
        .into_iter()
        .map(|h| IdealHost {
            capacity: h.capacity.min(scheduled),
            vms: Vec::new(),
        })
        .collect();
    for vm in trace.host_vms() {
        if let Some(h) = hosts.get_mut(vm.host) {
            h.vms.push(IdealVm {
                name: vm.name,
                team: vm.team,
                labels: vm.labels.into_iter().collect(),
            });
        }
    }
    hosts
}

/// Start time of each job under FIFO list scheduling on `hosts` (see the module doc), in the
/// order of `jobs`, which are placed in that order; `None` for a job no VM can run.
pub fn schedule(hosts: &[IdealHost], jobs: &[IdealJob]) -> Vec<Option<u64>> {
    schedule_with_gap(hosts, jobs, 0)
}

/// [`schedule`] where a slot, and a VM, that ran a job can start the next one only `gap_ms`
/// after that job's end (the boot-bound reference: stop, then a fresh boot, since a VM runs
/// one job per boot). Exception: an SPI VM runs the next build it may take without a gap on
/// the slot it holds (a Jenkins node stays up between builds). A slot or VM that has not run
/// a job yet has no gap (it may have been booted ahead, before the job arrived).
pub fn schedule_with_gap(hosts: &[IdealHost], jobs: &[IdealJob], gap_ms: u64) -> Vec<Option<u64>> {
    schedule_charged(hosts, jobs, gap_ms, &FaultCharges::default())
}

/// [`schedule_with_gap`] where a ROOT job's slot and VM are free again only when `charges`
/// release them ([`FaultCharges::root_release_ms`]: held by a probe fault, an ignored
/// graceful stop), then after the gap. `hosts` should already lack the VMs that never boot
/// ([`without_dead`]); one that never boots but runs at the start runs only until it is first
/// stopped (its slot goes to another VM, or it ends a ROOT job).
pub fn schedule_charged(
    hosts: &[IdealHost],
    jobs: &[IdealJob],
    gap_ms: u64,
    charges: &FaultCharges,
) -> Vec<Option<u64>> {
    // Each slot: when it is next free, and the VM that last ran on it; each VM: when it is
    // next free (`None`: it has not run yet).
    let mut slots: Vec<Vec<(u64, Option<usize>)>> = hosts
        .iter()
        .map(|h| vec![(0, None); h.capacity as usize])
        .collect();
    let mut vm_free: Vec<Vec<Option<u64>>> =
        hosts.iter().map(|h| vec![None; h.vms.len()]).collect();
    // VMs that never boot but run at the start: usable only until their first stop.
    let no_boot: Vec<Vec<bool>> = hosts
        .iter()
        .map(|h| h.vms.iter().map(|v| charges.never_boots(&v.name)).collect())
        .collect();
    let mut starts = Vec::with_capacity(jobs.len());
    for job in jobs {
        // (start, host, slot, vm) of the earliest placement; the first host wins ties.
        let mut best: Option<(u64, usize, usize, usize)> = None;
        for (h, host) in hosts.iter().enumerate() {
            let keeps_running = |v: usize| !job.is_root() && host.vms[v].team == Team::Spi;
            // Earliest (start, vm ready, vm, slot ready, slot) on this host: with no gap
            // this is the VM that frees first on the slot that frees first.
            let placement = host
                .vms
                .iter()
                .enumerate()
                .filter(|(_, vm)| job.fits(vm))
                .flat_map(|(v, _)| {
                    let vm_ready =
                        vm_free[h][v].map_or(0, |f| if keeps_running(v) { f } else { f + gap_ms });
                    let (vm_ran, no_boot) = (vm_free[h][v].is_some(), no_boot[h][v]);
                    slots[h]
                        .iter()
                        .enumerate()
                        .filter_map(move |(s, &(free, last))| {
                            // A VM that cannot boot runs while it has not been stopped: it is
                            // fresh on a fresh slot, or an SPI node staying up on its slot.
                            let (slot_ready, unstopped) = match last {
                                None => (0, !vm_ran),
                                Some(l) if l == v && keeps_running(v) => (free, true),
                                Some(_) => (free + gap_ms, false),
                            };
                            if no_boot && !unstopped {
                                return None;
                            }
                            let start = job.at_ms.max(vm_ready).max(slot_ready);
                            Some((start, vm_ready, v, slot_ready, s))
                        })
                })
                .min();
            let Some((start, _, v, _, s)) = placement else {
                continue;
            };
            if best.is_none_or(|(b, ..)| start < b) {
                best = Some((start, h, s, v));
            }
        }
        starts.push(best.map(|(start, h, s, v)| {
            let end = start.saturating_add(job.duration_ms);
            let free = if job.is_root() {
                charges.root_release_ms(&hosts[h].vms[v].name, end)
            } else {
                end
            };
            slots[h][s] = (free, Some(v));
            vm_free[h][v] = Some(free);
            start
        }));
    }
    starts
}

/// One team's jobs under the ideal reference.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct IdealTeam {
    /// Jobs that arrived.
    pub arrived: u64,
    /// Jobs that start before the end of the simulated time.
    pub started: u64,
    /// Jobs that would start only after the end.
    pub started_after_end: u64,
    /// Jobs no VM of the fleet can run (labels no VM covers, an SPI VM that does not exist).
    pub unservable: u64,
    /// Median wait of started jobs, ms.
    pub wait_p50_ms: Option<u64>,
    /// 95th percentile wait of started jobs, ms (nearest rank, as the engine's).
    pub wait_p95_ms: Option<u64>,
    /// Longest wait of a started job, ms.
    pub wait_max_ms: Option<u64>,
    /// Every started job's wait, ascending, ms (for `compare`'s budget; not in the JSON).
    #[serde(skip)]
    pub waits_ms: Vec<u64>,
}

impl IdealTeam {
    /// Summarise the `starts` of `jobs` (as [`schedule`] returned them) of one team: `pick`
    /// says which jobs belong to it; only starts before `end_ms` count as started.
    fn of(
        jobs: &[IdealJob],
        starts: &[Option<u64>],
        end_ms: u64,
        pick: impl Fn(&IdealJob) -> bool,
    ) -> Self {
        let mut team = Self::default();
        let mut waits = Vec::new();
        for (job, start) in jobs.iter().zip(starts).filter(|(j, _)| pick(j)) {
            team.arrived += 1;
            match *start {
                None => team.unservable += 1,
                Some(s) if s >= end_ms => team.started_after_end += 1,
                Some(s) => {
                    team.started += 1;
                    waits.push(s - job.at_ms);
                }
            }
        }
        waits.sort_unstable();
        team.wait_p50_ms = percentile(&waits, 50);
        team.wait_p95_ms = percentile(&waits, 95);
        team.wait_max_ms = waits.last().copied();
        team.waits_ms = waits;
        team
    }
}

/// ROOT and SPI placed together in one FIFO order.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct IdealBoth {
    /// ROOT jobs.
    pub root: IdealTeam,
    /// SPI builds.
    pub spi: IdealTeam,
}

/// The ideal reference for a trace: both variants, and the boot-bound reference.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Ideal {
    /// ROOT alone, SPI ignored: the best ROOT gets on this fleet under overhead-free FIFO.
    pub root_only: IdealTeam,
    /// Both teams in one FIFO order (ROOT first at equal arrival times).
    pub both: IdealBoth,
    /// Both teams in the same FIFO order, but a slot or VM that ran a job takes the next
    /// one only `sim.stop_latency + boot.min` after its end ([`schedule_with_gap`]): what
    /// one job per boot costs even a clairvoyant scheduler (docs/SIMULATOR.md).
    pub boot_bound: IdealBoth,
    /// The boot-bound placement charged with the trace's certain injected faults
    /// ([`super::ideal_faults`]): VMs that never boot left out, a VM whose probe fails when
    /// its job ends held to the window's end, an ignored graceful stop paid; `None` when the
    /// trace has no such fault (it would equal `boot_bound`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_bound: Option<IdealBoth>,
    /// Share of the fleet's slot time (capacity × simulated time) `both` leaves idle, 0–1;
    /// `None` for no simulated time or no slot.
    pub host_idle_share: Option<f64>,
}

/// The gap between two jobs on a slot under one job per boot: a graceful stop, then the
/// shortest boot of the trace's boot model, ms.
pub fn boot_gap_ms(trace: &Trace) -> u64 {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    ms(trace.sim.stop_latency).saturating_add(ms(trace.boot.min))
}

/// Idle share of the slot time of `hosts` over `end_ms` when `jobs` start at `starts`.
fn idle_share(
    hosts: &[IdealHost],
    jobs: &[IdealJob],
    starts: &[Option<u64>],
    end_ms: u64,
) -> Option<f64> {
    let slots: u64 = hosts.iter().map(|h| u64::from(h.capacity)).sum();
    let total = slots.checked_mul(end_ms).filter(|&t| t > 0)?;
    let busy: u64 = jobs
        .iter()
        .zip(starts)
        .filter_map(|(j, s)| {
            s.filter(|&s| s < end_ms)
                .map(|s| s.saturating_add(j.duration_ms).min(end_ms) - s)
        })
        .sum();
    Some(1.0 - busy.min(total) as f64 / total as f64)
}

fn both(jobs: &[IdealJob], starts: &[Option<u64>], end_ms: u64) -> IdealBoth {
    IdealBoth {
        root: IdealTeam::of(jobs, starts, end_ms, IdealJob::is_root),
        spi: IdealTeam::of(jobs, starts, end_ms, |j| !j.is_root()),
    }
}

/// The reference for `hosts` and these arrivals, over `end_ms` of simulated time; `gap_ms`
/// is the boot-bound reference's gap ([`boot_gap_ms`]).
pub fn reference(
    hosts: &[IdealHost],
    root: &[RootArrival],
    spi: &[JenkinsArrival],
    end_ms: u64,
    gap_ms: u64,
) -> Ideal {
    reference_with_faults(hosts, root, spi, end_ms, gap_ms, &FaultCharges::default())
}

/// [`reference()`] with the fault-bound reference for `charges` (`None` when it is empty).
pub fn reference_with_faults(
    hosts: &[IdealHost],
    root: &[RootArrival],
    spi: &[JenkinsArrival],
    end_ms: u64,
    gap_ms: u64,
    charges: &FaultCharges,
) -> Ideal {
    let root_jobs: Vec<IdealJob> = root.iter().map(IdealJob::from_root).collect();
    let root_starts = schedule(hosts, &root_jobs);
    let root_only = IdealTeam::of(&root_jobs, &root_starts, end_ms, |_| true);

    let mut all = root_jobs;
    all.extend(spi.iter().map(IdealJob::from_spi));
    // Stable: arrival order within each team is kept, and ROOT (first in `all`) goes first
    // at equal times.
    all.sort_by_key(|j| j.at_ms);
    let starts = schedule(hosts, &all);
    let bound_starts = schedule_with_gap(hosts, &all, gap_ms);
    let fault_bound = (!charges.is_empty()).then(|| {
        let alive = without_dead(hosts, charges);
        both(
            &all,
            &schedule_charged(&alive, &all, gap_ms, charges),
            end_ms,
        )
    });
    Ideal {
        root_only,
        both: both(&all, &starts, end_ms),
        boot_bound: both(&all, &bound_starts, end_ms),
        fault_bound,
        host_idle_share: idle_share(hosts, &all, &starts, end_ms),
    }
}

/// The reference for `trace` run with `seed` (the seed in force: `--seed` or `sim.seed`),
/// from the same arrivals the engine replays.
pub fn ideal(trace: &Trace, seed: u64) -> Ideal {
    let (root, spi) = arrivals(trace, seed);
    let end_ms = u64::try_from(trace.sim.duration.as_millis()).unwrap_or(u64::MAX);
    reference_with_faults(
        &fleet(trace),
        &root,
        &spi,
        end_ms,
        boot_gap_ms(trace),
        &FaultCharges::of(trace),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| (*s).to_owned()).collect()
    }

    fn root_vm(name: &str, l: &[&str]) -> IdealVm {
        IdealVm {
            name: name.into(),
            team: Team::Root,
            labels: labels(l),
        }
    }

    fn spi_vm(name: &str) -> IdealVm {
        IdealVm {
            name: name.into(),
            team: Team::Spi,
            labels: Vec::new(),
        }
    }

    fn host(capacity: u32, vms: Vec<IdealVm>) -> IdealHost {
        IdealHost { capacity, vms }
    }

    fn root(at_ms: u64, duration_ms: u64, l: &[&str]) -> IdealJob {
        IdealJob {
            at_ms,
            duration_ms,
            need: Need::Root(labels(l)),
        }
    }

    fn spi(at_ms: u64, duration_ms: u64, vm: Option<&str>) -> IdealJob {
        IdealJob {
            at_ms,
            duration_ms,
            need: Need::Spi(vm.map(str::to_owned)),
        }
    }

    #[test]
    fn two_hosts_three_jobs_at_once() {
        let hosts = [
            host(1, vec![root_vm("a-ROOT", &["macOS"])]),
            host(1, vec![root_vm("b-ROOT", &["macOS"])]),
        ];
        // Jobs 1 and 2 start at once on hosts a and b; job 3 waits for the host that frees
        // first: b at 30 s.
        let jobs = [
            root(0, 60_000, &["macOS"]),
            root(0, 30_000, &["macOS"]),
            root(0, 10_000, &["macOS"]),
        ];
        assert_eq!(
            schedule(&hosts, &jobs),
            vec![Some(0), Some(0), Some(30_000)]
        );
        let team = IdealTeam::of(&jobs, &schedule(&hosts, &jobs), u64::MAX, |_| true);
        assert_eq!(team.started, 3);
        assert_eq!(team.wait_p50_ms, Some(0));
        assert_eq!(team.wait_p95_ms, Some(30_000));
        assert_eq!(team.wait_max_ms, Some(30_000));
    }

    #[test]
    fn fifo_does_not_let_a_later_job_jump_the_queue() {
        let hosts = [host(1, vec![root_vm("a-ROOT", &["macOS"])])];
        // The second job arrives before the first ends and starts when it does; the third,
        // though shorter, queues behind the second.
        let jobs = [
            root(0, 100, &["macOS"]),
            root(50, 100, &["macOS"]),
            root(60, 1, &["macOS"]),
        ];
        assert_eq!(schedule(&hosts, &jobs), vec![Some(0), Some(100), Some(200)]);
    }

    #[test]
    fn labels_restrict_the_hosts_a_job_may_use() {
        // Only host b has a mac14 VM (labels are matched case-insensitively, as GitHub does).
        let hosts = [
            host(1, vec![root_vm("a-13", &["macOS", "mac13"])]),
            host(1, vec![root_vm("b-14", &["macOS", "MAC14"])]),
        ];
        let jobs = [
            root(0, 1_000, &["macOS", "mac14"]),
            root(0, 1_000, &["macOS", "mac14"]),
            root(0, 1_000, &["macOS", "mac15"]),
            root(0, 1_000, &["macOS"]),
        ];
        // The second mac14 job waits for b although a is free; no VM runs mac15; the plain
        // macOS job takes the free host a.
        assert_eq!(
            schedule(&hosts, &jobs),
            vec![Some(0), Some(1_000), None, Some(0)]
        );
        let team = IdealTeam::of(&jobs, &schedule(&hosts, &jobs), u64::MAX, |_| true);
        assert_eq!((team.arrived, team.started, team.unservable), (4, 3, 1));
    }

    #[test]
    fn spi_any_takes_any_spi_vm_and_a_named_build_only_its_own() {
        let hosts = [
            host(1, vec![root_vm("a-ROOT", &["macOS"]), spi_vm("a-SPI")]),
            host(1, vec![spi_vm("b-SPI")]),
        ];
        let jobs = [
            spi(0, 500, Some("a-SPI")),
            spi(0, 500, Some("a-SPI")),
            spi(0, 500, None),
            spi(0, 500, Some("c-SPI")),
            root(0, 500, &["macOS"]),
        ];
        // The named builds queue on a-SPI; `any` runs at once on b; c-SPI does not exist; the
        // ROOT job needs host a, busy with SPI until 1 s.
        assert_eq!(
            schedule(&hosts, &jobs),
            vec![Some(0), Some(500), Some(0), None, Some(1_000)]
        );
    }

    #[test]
    fn capacity_two_runs_two_jobs_but_one_per_vm() {
        let two_vms = [host(
            2,
            vec![root_vm("a-1", &["macOS"]), root_vm("a-2", &["macOS"])],
        )];
        let one_vm = [host(2, vec![root_vm("a-1", &["macOS"])])];
        let jobs = [
            root(0, 100, &["macOS"]),
            root(0, 100, &["macOS"]),
            root(0, 100, &["macOS"]),
        ];
        assert_eq!(schedule(&two_vms, &jobs), vec![Some(0), Some(0), Some(100)]);
        assert_eq!(
            schedule(&one_vm, &jobs),
            vec![Some(0), Some(100), Some(200)]
        );
    }

    #[test]
    fn root_only_ignores_spi_and_both_share_the_hosts_fifo() {
        let hosts = [host(
            1,
            vec![root_vm("a-ROOT", &["macOS"]), spi_vm("a-SPI")],
        )];
        let root_arrivals = [
            RootArrival {
                at_ms: 0,
                duration_ms: 1_000,
                labels: BTreeSet::from(["macOS".to_owned()]),
            },
            RootArrival {
                at_ms: 100,
                duration_ms: 1_000,
                labels: BTreeSet::from(["macOS".to_owned()]),
            },
        ];
        let spi_arrivals = [JenkinsArrival {
            at_ms: 50,
            vm: None,
            duration_ms: 2_000,
            wait_ms: 0,
            retry_ms: 0,
        }];
        let r = reference(&hosts, &root_arrivals, &spi_arrivals, u64::MAX, 0);
        // ROOT alone: 0 → 0, 100 → 1 000 (wait 900).
        assert_eq!(r.root_only.wait_max_ms, Some(900));
        // FIFO with SPI: ROOT 0 at 0; SPI (50) at 1 000; ROOT (100) at 3 000 (wait 2 900).
        assert_eq!(r.both.root.wait_p50_ms, Some(0));
        assert_eq!(r.both.root.wait_max_ms, Some(2_900));
        assert_eq!(r.both.spi.wait_max_ms, Some(950));
        assert_eq!((r.both.root.arrived, r.both.spi.arrived), (2, 1));
    }

    #[test]
    fn jobs_starting_after_the_end_have_no_wait() {
        let hosts = [host(1, vec![root_vm("a", &["macOS"])])];
        let jobs = [root(0, 1_000, &["macOS"]), root(10, 1_000, &["macOS"])];
        let starts = schedule(&hosts, &jobs);
        let team = IdealTeam::of(&jobs, &starts, 1_000, |_| true);
        assert_eq!((team.started, team.started_after_end), (1, 1));
        assert_eq!(team.wait_max_ms, Some(0));
    }

    #[test]
    fn the_fleet_of_a_trace_has_its_hosts_capacities_and_vms() {
        let t = crate::standard::standard_trace(1, 1, 2);
        let f = fleet(&t);
        assert_eq!(f.len(), 2);
        for h in &f {
            assert_eq!(h.capacity, 1);
            assert_eq!(h.vms.iter().filter(|v| v.team == Team::Spi).count(), 1);
            assert!(h.vms.iter().any(|v| v.labels.iter().any(|l| l == "mac14")));
        }
        // Same arrivals as the engine: every ROOT job of a day of standard load is counted.
        let (root, _) = arrivals(&t, 1);
        let r = ideal(&t, 1);
        assert_eq!(r.root_only.arrived, root.len() as u64);
        assert!(r.root_only.started > 0);
    }
    #[test]
    fn the_fleet_runs_at_the_capacity_the_scheduler_runs_at() {
        // `[host] capacity = 2` (the ground truth allows two VMs) but the scheduler runs one
        // (the shipped `scheduler.capacity`, as `replay-all` sets it): one slot, not two.
        let mut t = Trace::default();
        t.host.capacity = 2;
        t.scheduler.capacity = 1;
        assert_eq!(fleet(&t)[0].capacity, 1);
        // Both at 2: two slots; a scheduler allowed more than the host still gets the host's.
        t.scheduler.capacity = 2;
        assert_eq!(fleet(&t)[0].capacity, 2);
        t.scheduler.capacity = 3;
        assert_eq!(fleet(&t)[0].capacity, 2);
    }

    #[test]
    fn the_fault_bound_holds_a_vm_whose_probe_fails_when_its_job_ends() {
        // cycle-faults: ROOT-VM-1's probe fails from 10 to 30 min, ROOT-VM-2 never boots.
        let text = "[host]\nroot_vms = 3\nspi_vms = 0\n\
                    [[faults]]\nkind = \"probe\"\nvm = \"sim-ROOT-VM-1\"\n\
                    from = \"10m\"\nuntil = \"30m\"\n\
                    [[faults]]\nkind = \"boot\"\nvm = \"sim-ROOT-VM-2\"\n";
        let t = Trace::parse(text, std::path::Path::new("t")).unwrap();
        let charges = FaultCharges::of(&t);
        let hosts = without_dead(&fleet(&t), &charges);
        assert_eq!(hosts[0].vms.len(), 2, "ROOT-VM-2 runs nothing");
        let min = 60_000;
        let m = ["self-hosted", "macOS", "ARM64"];
        // A job 2–12 min on ROOT-VM-1 (the first VM) ends in the window: the host is held
        // to 30 min, so the next job starts at 30 min + the gap (not 12 min + the gap).
        let jobs = [root(2 * min, 10 * min, &m), root(3 * min, min, &m)];
        assert_eq!(
            schedule_charged(&hosts, &jobs, 1_000, &charges),
            vec![Some(2 * min), Some(30 * min + 1_000)]
        );
        assert_eq!(
            schedule_with_gap(&hosts, &jobs, 1_000),
            vec![Some(2 * min), Some(12 * min + 1_000)]
        );
        // Ending outside the window: no hold.
        let jobs = [root(0, 5 * min, &m), root(min, min, &m)];
        assert_eq!(
            schedule_charged(&hosts, &jobs, 1_000, &charges),
            vec![Some(0), Some(5 * min + 1_000)]
        );
        // The trace's reference carries the fault bound; a trace without faults does not.
        assert!(ideal(&t, 1).fault_bound.is_some());
        assert!(ideal(&Trace::default(), 1).fault_bound.is_none());
    }

    #[test]
    fn a_vm_that_never_boots_but_runs_at_the_start_runs_until_its_first_stop() {
        let text = "[host]\nroot_vms = 0\nspi_vms = 0\n\
                    [[host.vms]]\nname = \"sim-ROOT-VM-1\"\npower = \"running\"\n\
                    [[faults]]\nkind = \"boot\"\nvm = \"sim-ROOT-VM-1\"\n";
        let t = Trace::parse(text, std::path::Path::new("t")).unwrap();
        let charges = FaultCharges::of(&t);
        let hosts = without_dead(&fleet(&t), &charges);
        let min = 60_000;
        let m = ["self-hosted", "macOS", "ARM64"];
        // Its runner takes the first job; the stop after it is its last.
        let jobs = [root(min, min, &m), root(2 * min, min, &m)];
        assert_eq!(
            schedule_charged(&hosts, &jobs, 1_000, &charges),
            vec![Some(min), None]
        );
    }

    #[test]
    fn boot_bound_adds_a_stop_and_a_boot_per_queued_job() {
        let hosts = [host(1, vec![root_vm("a", &["macOS"])])];
        // Three jobs queued at once: each waits for the previous end + the gap, so the k-th
        // queued job is k gaps behind the zero-overhead ideal.
        let jobs = [
            root(0, 100, &["macOS"]),
            root(0, 100, &["macOS"]),
            root(0, 100, &["macOS"]),
        ];
        assert_eq!(schedule(&hosts, &jobs), vec![Some(0), Some(100), Some(200)]);
        assert_eq!(
            schedule_with_gap(&hosts, &jobs, 10),
            vec![Some(0), Some(110), Some(220)]
        );
        // No gap: the same placement as the ideal.
        assert_eq!(schedule_with_gap(&hosts, &jobs, 0), schedule(&hosts, &jobs));
    }

    #[test]
    fn boot_bound_starts_at_once_on_a_host_free_for_a_gap() {
        let hosts = [host(1, vec![root_vm("a", &["macOS"])])];
        // Free at 100; ready again at 110: a job arriving at 150 starts at once (pre-booted),
        // one arriving at 105 waits for the rest of the boot.
        let late = [root(0, 100, &["macOS"]), root(150, 10, &["macOS"])];
        let early = [root(0, 100, &["macOS"]), root(105, 10, &["macOS"])];
        assert_eq!(
            schedule_with_gap(&hosts, &late, 10),
            vec![Some(0), Some(150)]
        );
        assert_eq!(
            schedule_with_gap(&hosts, &early, 10),
            vec![Some(0), Some(110)]
        );
    }

    #[test]
    fn boot_bound_takes_the_host_ready_first_after_its_gap() {
        // The third job takes the host ready first once the gap is added: a (100 + gap)
        // before b (120 + gap).
        let hosts = [
            host(1, vec![root_vm("a", &["macOS"])]),
            host(1, vec![root_vm("b", &["macOS"])]),
        ];
        let jobs = [
            root(0, 100, &["macOS"]),
            root(0, 120, &["macOS"]),
            root(0, 10, &["macOS"]),
        ];
        assert_eq!(
            schedule_with_gap(&hosts, &jobs, 50),
            vec![Some(0), Some(0), Some(150)]
        );
        assert_eq!(
            schedule_with_gap(&hosts, &jobs, 30),
            vec![Some(0), Some(0), Some(130)]
        );
    }

    #[test]
    fn boot_bound_keeps_a_jenkins_node_up_between_builds() {
        let hosts = [host(
            1,
            vec![root_vm("a-ROOT", &["macOS"]), spi_vm("a-SPI")],
        )];
        // Two builds back to back on the same SPI VM: no gap; the ROOT job after them needs
        // the SPI VM stopped and its own VM booted.
        let jobs = [
            spi(0, 100, Some("a-SPI")),
            spi(0, 100, None),
            root(0, 100, &["macOS"]),
        ];
        assert_eq!(
            schedule_with_gap(&hosts, &jobs, 10),
            vec![Some(0), Some(100), Some(210)]
        );
    }

    #[test]
    fn the_reference_has_a_boot_bound_and_an_idle_share() {
        let hosts = [host(1, vec![root_vm("a", &["macOS"])])];
        let arrival = |at_ms| RootArrival {
            at_ms,
            duration_ms: 100,
            labels: BTreeSet::from(["macOS".to_owned()]),
        };
        let r = reference(&hosts, &[arrival(0), arrival(0)], &[], 1_000, 30);
        assert_eq!(r.both.root.wait_max_ms, Some(100));
        assert_eq!(r.boot_bound.root.wait_max_ms, Some(130));
        // 200 ms busy of 1 000.
        assert_eq!(r.host_idle_share, Some(0.8));
        // A second job the bound starts after the end is not started there.
        let r = reference(&hosts, &[arrival(0), arrival(0)], &[], 120, 30);
        assert_eq!(r.both.root.started, 2);
        assert_eq!(
            (
                r.boot_bound.root.started,
                r.boot_bound.root.started_after_end
            ),
            (1, 1)
        );
    }

    #[test]
    fn the_boot_gap_is_a_graceful_stop_and_the_shortest_boot() {
        let mut t = crate::standard::standard_trace(1, 1, 1);
        t.sim.stop_latency = std::time::Duration::from_secs(10);
        t.boot.min = std::time::Duration::from_secs(45);
        assert_eq!(boot_gap_ms(&t), 55_000);
    }
}
