//! Arrivals of a run (the trace's explicit ones merged with Poisson-generated ones), and
//! random traces for the property tests.

use std::collections::BTreeSet;
use std::time::Duration;

use marbled::config::SchedulerSection;

use super::rng::SimRng;
use super::trace::{
    FaultKind, FaultSpec, GenerateSection, HangAction, HostSection, InitialPower, JenkinsSpec,
    RootJobSpec, Trace, VmSpec,
};

/// A GitHub job arriving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootArrival {
    /// Arrival, ms after the start.
    pub at_ms: u64,
    /// Run time, ms.
    pub duration_ms: u64,
    /// Labels asked for.
    pub labels: BTreeSet<String>,
}

/// A Jenkins build arriving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JenkinsArrival {
    /// Arrival, ms after the start.
    pub at_ms: u64,
    /// The node, or `None` for any SPI VM.
    pub vm: Option<String>,
    /// Run time, ms.
    pub duration_ms: u64,
    /// `request-slot --wait`, ms.
    pub wait_ms: u64,
    /// Pause before a retry, ms.
    pub retry_ms: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// All arrivals of `trace`, sorted by time (explicit before generated at equal times).
pub fn arrivals(trace: &Trace, seed: u64) -> (Vec<RootArrival>, Vec<JenkinsArrival>) {
    let mut root: Vec<RootArrival> = trace
        .root_jobs
        .iter()
        .map(|j| RootArrival {
            at_ms: ms(j.at),
            duration_ms: ms(j.duration),
            labels: j.labels.iter().cloned().collect(),
        })
        .collect();
    let mut spi: Vec<JenkinsArrival> = trace
        .jenkins
        .iter()
        .map(|b| JenkinsArrival {
            at_ms: ms(b.at),
            vm: (b.vm != "any").then(|| b.vm.clone()),
            duration_ms: ms(b.duration),
            wait_ms: ms(b.wait),
            retry_ms: ms(b.retry),
        })
        .collect();
    if let Some(g) = &trace.generate {
        let seed = g.seed.unwrap_or(seed);
        let until = ms(g.until.unwrap_or(trace.sim.duration));
        generated(g, seed, until, &mut root, &mut spi);
    }
    root.sort_by_key(|a| a.at_ms);
    spi.sort_by_key(|a| a.at_ms);
    (root, spi)
}

fn generated(
    g: &GenerateSection,
    seed: u64,
    until: u64,
    root: &mut Vec<RootArrival>,
    spi: &mut Vec<JenkinsArrival>,
) {
    if let Some(r) = g.root.as_ref().filter(|r| r.per_hour > 0.0) {
        let mut rng = SimRng::stream(seed, "generate.root");
        let mean = 3_600_000.0 / r.per_hour;
        let mut at = rng.exponential_ms(mean);
        while at < until {
            let labels = r
                .label_sets
                .get(rng.below(r.label_sets.len()))
                .map(|l| l.iter().cloned().collect())
                .unwrap_or_default();
            root.push(RootArrival {
                at_ms: at,
                duration_ms: rng.range(ms(r.duration_min), ms(r.duration_max)),
                labels,
            });
            at = at.saturating_add(rng.exponential_ms(mean));
        }
    }
    if let Some(daily) = &g.daily {
        let (r, b) = daily.arrivals(seed, until);
        root.extend(r);
        spi.extend(b);
    }
    if let Some(s) = g.spi.as_ref().filter(|s| s.per_hour > 0.0) {
        let mut rng = SimRng::stream(seed, "generate.spi");
        let mean = 3_600_000.0 / s.per_hour;
        let mut at = rng.exponential_ms(mean);
        while at < until {
            let vm = s
                .vms
                .get(rng.below(s.vms.len()))
                .filter(|v| v.as_str() != "any")
                .cloned();
            spi.push(JenkinsArrival {
                at_ms: at,
                vm,
                duration_ms: rng.range(ms(s.duration_min), ms(s.duration_max)),
                wait_ms: ms(s.wait),
                retry_ms: ms(s.retry),
            });
            at = at.saturating_add(rng.exponential_ms(mean));
        }
    }
}

/// A random, valid trace with small timings: random host, scheduler timings, arrivals and
/// faults. The property tests run thousands of these.
pub fn random_trace(seed: u64) -> Trace {
    let mut r = SimRng::stream(seed, "random-trace");
    let mut t = Trace::default();
    // Seeds above i64::MAX do not fit a TOML integer; keep them printable as a trace.
    t.sim.seed = seed & (i64::MAX as u64);
    let capacity = random_host(&mut t, &mut r);
    random_fleet(&mut t, seed);
    random_scheduler(&mut t.scheduler, &mut r, capacity);
    random_arrivals(&mut t, &mut r);
    random_faults(&mut t, &mut r);
    t
}

/// `random_trace`'s `[sim]` timings, host and boot times; returns the host's capacity.
fn random_host(t: &mut Trace, r: &mut SimRng) -> u32 {
    let secs = Duration::from_secs;
    t.sim.duration = secs(r.range(15 * 60, 60 * 60));
    t.sim.start_latency = secs(r.range(0, 3));
    t.sim.resume_latency = secs(r.range(0, 2));
    t.sim.stop_latency = secs(r.range(0, 5));
    t.sim.kill_latency = secs(r.range(0, 1));
    t.sim.probe_latency = secs(r.range(0, 2));
    t.sim.inventory_latency = Duration::from_millis(r.range(0, 1000));
    t.sim.reply_slack = secs(30);

    let capacity = if r.chance(0.15) { 2 } else { 1 };
    t.host = HostSection {
        capacity,
        root_vms: u32::try_from(r.range(1, 3)).unwrap_or(1),
        spi_vms: u32::try_from(r.range(0, 2)).unwrap_or(0),
        ..HostSection::default()
    };
    if r.chance(0.2) {
        // A VM that is already running when the daemon starts (a restart mid-cycle).
        t.host.vms.push(VmSpec {
            name: "sim-ROOT-VM-9".into(),
            labels: None,
            power: if r.chance(0.5) {
                InitialPower::Running
            } else {
                InitialPower::Suspended
            },
        });
    }
    t.boot.min = secs(r.range(1, 20));
    t.boot.max = t.boot.min + secs(r.range(0, 30));
    capacity
}

/// `random_trace`'s fleet: one host, or in a third of the schedules two or three hosts like
/// it sharing one GitHub queue, one runner list and one Jenkins — the rules that only run
/// across hosts (the yield ranks, warm swaps, a build for any node launched on one host of
/// several, jobs another host serves) run only there. Its own random stream, so every other
/// draw of a schedule stays what it was.
fn random_fleet(t: &mut Trace, seed: u64) {
    let mut r = SimRng::stream(seed, "random-fleet");
    if !r.chance(1.0 / 3.0) {
        return;
    }
    let base = std::mem::take(&mut t.host);
    t.hosts = (1..=r.range(2, 3))
        .map(|i| {
            let prefix = format!("h{i}");
            let vms = (base.vms.iter())
                .map(|vm| VmSpec {
                    name: vm.name.replacen(&base.prefix, &prefix, 1),
                    ..vm.clone()
                })
                .collect();
            HostSection {
                prefix,
                vms,
                ..base.clone()
            }
        })
        .collect();
}

/// `random_trace`'s `[scheduler]`: a policy and small timings.
fn random_scheduler(s: &mut SchedulerSection, r: &mut SimRng, capacity: u32) {
    let secs = Duration::from_secs;
    s.policy = ["cycle", "cycle", "cycle", "demand", "demand", "manual"][r.below(6)].into();
    s.capacity = capacity;
    s.cycle_on_min = secs(r.range(5, 60));
    s.cycle_on_jitter = secs(r.range(0, 30));
    s.cycle_off_window = secs(r.range(5, 60));
    s.busy_recheck = secs(r.range(5, 30));
    s.ready_timeout = secs(r.range(20, 90));
    s.graceful_stop_timeout = secs(r.range(5, 30));
    s.quarantine_after_failures = u32::try_from(r.range(1, 3)).unwrap_or(1);
    s.quarantine_base = secs(r.range(10, 60));
    s.quarantine_max = s.quarantine_base * 4;
    s.slot_grace = secs(r.range(10, 120));
    s.fairness_bound = secs(r.range(60, 600));
    s.inventory_interval = secs(r.range(5, 30));
    // Issue 17's features: idle-host warmth (on by default), runner re-arm (up to 3 jobs a
    // boot) and the idle Jenkins agent hand-over, at ages short enough to fire in a random
    // schedule's hours (0 = off).
    s.warm_idle_hosts = r.chance(0.5);
    // The swap with idle-host warmth (no draw: the random schedules stay the same).
    s.warm_swap = s.warm_idle_hosts;
    s.jobs_per_boot = u32::try_from(r.range(1, 3)).unwrap_or(1);
    s.agent_idle_handover = secs([0, 300, 1_800, 3_600][r.below(4)]);
    // The warmth hand-over at half that age (no draw: the random schedules stay the same).
    s.agent_warm_handover = s.agent_idle_handover / 2;
    s.agent_predicted_handover = s.agent_idle_handover / 4;
}

/// `random_trace`'s GitHub jobs and Jenkins builds.
fn random_arrivals(t: &mut Trace, r: &mut SimRng) {
    let secs = Duration::from_secs;
    t.sim.demand_poll = secs([0, 5, 30][r.below(3)]);
    let span = t.sim.duration.as_secs();
    // Under `demand`, some jobs ask for a label no VM has (`mac99`): a job nobody can serve
    // must not make the scheduler boot or livelock.
    let versioned = t.scheduler.policy == "demand" && r.chance(0.3);
    for _ in 0..r.range(0, 15) {
        let mut labels: Vec<String> = super::trace::DEFAULT_ROOT_LABELS
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        if versioned && r.chance(0.3) {
            labels.push("mac99".into());
        }
        t.root_jobs.push(RootJobSpec {
            at: secs(r.range(0, span)),
            duration: secs(r.range(10, 600)),
            labels,
        });
    }
    let spi_names: Vec<String> = t
        .host_vms()
        .into_iter()
        .filter(|v| v.team == marble_proto::Team::Spi)
        .map(|v| v.name)
        .collect();
    if !spi_names.is_empty() {
        for _ in 0..r.range(0, 8) {
            let vm = if r.chance(0.5) {
                "any".to_owned()
            } else {
                spi_names[r.below(spi_names.len())].clone()
            };
            t.jenkins.push(JenkinsSpec {
                at: secs(r.range(0, span)),
                vm,
                duration: secs(r.range(10, 600)),
                wait: secs(r.range(10, 120)),
                retry: secs(r.range(5, 60)),
            });
        }
    }
}

/// `random_trace`'s faults: half the traces get one or two.
fn random_faults(t: &mut Trace, r: &mut SimRng) {
    let secs = Duration::from_secs;
    let span = t.sim.duration.as_secs();
    let names: Vec<String> = t.host_vms().into_iter().map(|v| v.name).collect();
    if r.chance(0.5) {
        for _ in 0..r.range(1, 3) {
            let kind = [
                FaultKind::Probe,
                FaultKind::Boot,
                FaultKind::StopIgnored,
                FaultKind::Hang,
            ][r.below(4)];
            let from = r.range(0, span);
            let hang = kind == FaultKind::Hang;
            t.faults.push(FaultSpec {
                kind,
                vm: r.chance(0.5).then(|| names[r.below(names.len())].clone()),
                rate: [0.1, 0.3, 1.0][r.below(3)],
                from: Some(secs(from)),
                until: Some(secs(from + r.range(60, 900))),
                action: hang
                    .then(|| {
                        [
                            HangAction::Start,
                            HangAction::Resume,
                            HangAction::Stop,
                            HangAction::Probe,
                            HangAction::WaitReady,
                        ]
                        .get(r.below(6))
                        .copied()
                    })
                    .flatten(),
                delay: hang.then(|| secs(r.range(60, 600))),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::GenRoot;

    #[test]
    fn generated_arrivals_are_sorted_reproducible_and_bounded() {
        let t = Trace {
            generate: Some(GenerateSection {
                seed: None,
                until: Some(Duration::from_secs(3600)),
                root: Some(GenRoot {
                    per_hour: 30.0,
                    ..GenRoot::default()
                }),
                spi: None,
                daily: None,
            }),
            ..Trace::default()
        };
        let (a, _) = arrivals(&t, 5);
        let (b, _) = arrivals(&t, 5);
        let (c, _) = arrivals(&t, 6);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.len() > 10 && a.len() < 60, "{} arrivals", a.len());
        assert!(a.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert!(a.iter().all(|x| x.at_ms < 3_600_000));
    }

    #[test]
    fn random_traces_are_valid() {
        for seed in 0..300 {
            let t = random_trace(seed);
            assert!(t.problems().is_empty(), "seed {seed}: {:?}", t.problems());
        }
    }

    #[test]
    fn a_third_of_the_random_schedules_run_a_fleet_of_two_or_three_hosts() {
        let fleets: Vec<usize> = (0..300)
            .map(|seed| random_trace(seed).host_sections().len())
            .collect();
        let several = fleets.iter().filter(|&&n| n > 1).count();
        assert!((70..=130).contains(&several), "{several} of 300");
        assert!(fleets.iter().all(|n| (1..=3).contains(n)), "{fleets:?}");
        assert!(fleets.contains(&2) && fleets.contains(&3), "{fleets:?}");
        // Each host names its own VMs, also the one found running.
        for seed in 0..300 {
            let t = random_trace(seed);
            let names: Vec<String> = t.host_vms().into_iter().map(|v| v.name).collect();
            let unique: std::collections::BTreeSet<&String> = names.iter().collect();
            assert_eq!(unique.len(), names.len(), "seed {seed}: {names:?}");
        }
    }
}
