//! The standard fleet trace (`marble-sim generate`): several CERN-style hosts, each with
//! ROOT VMs for macOS 13, 14, 15 and beta and one SPI VM, the seed's scheduler timings, a
//! boot-time distribution with a slow tail, and the `[generate.daily]` workload; optionally
//! expanded into explicit arrivals.

use std::time::Duration;

use super::daily::GenDaily;
use super::generate::arrivals;
use super::trace::{
    BootSection, GenerateSection, HostSection, JenkinsSpec, RootJobSpec, Trace, VmSpec,
};

/// The standard trace: `days` days, `hosts` hosts, arrivals from `seed`.
pub fn standard_trace(days: u32, seed: u64, hosts: u32) -> Trace {
    let mut t = Trace::default();
    t.sim.duration = Duration::from_secs(u64::from(days) * 24 * 3600);
    // Seeds above i64::MAX do not fit a TOML integer.
    let seed = seed & (i64::MAX as u64);
    t.sim.seed = seed;
    t.boot = BootSection {
        min: Duration::from_secs(45),
        max: Duration::from_secs(90),
        slow_rate: 0.1,
        slow_max: Some(Duration::from_secs(240)),
    };
    t.hosts = (1..=hosts.max(1))
        .map(|n| {
            let name = format!("macphsft{n:02}");
            let vm = |suffix: &str| VmSpec {
                name: format!("{name}-{suffix}"),
                ..VmSpec::default()
            };
            HostSection {
                capacity: 1,
                root_vms: 0,
                spi_vms: 0,
                vms: vec![
                    vm("ROOT-VM-macOS-13"),
                    vm("ROOT-VM-macOS-14"),
                    vm("ROOT-VM-macOS-15"),
                    // The daemon's mapping gives it `mac-beta`, as ROOT's workflows ask.
                    vm("ROOT-VM-macOS-beta"),
                    vm("SPI-VM-1"),
                ],
                prefix: name,
                ..HostSection::default()
            }
        })
        .collect();
    t.generate = Some(GenerateSection {
        seed: Some(seed),
        daily: Some(GenDaily::default()),
        ..GenerateSection::default()
    });
    t
}

/// `trace` with its generated arrivals written out as `[[root_jobs]]` and `[[jenkins]]`
/// (the `[generate]` section dropped), so the workload can be read or edited.
pub fn explicit(trace: &Trace) -> Trace {
    let (root, spi) = arrivals(trace, trace.sim.seed);
    let mut t = trace.clone();
    t.generate = None;
    t.root_jobs = root
        .into_iter()
        .map(|a| RootJobSpec {
            at: Duration::from_millis(a.at_ms),
            duration: Duration::from_millis(a.duration_ms),
            labels: a.labels.into_iter().collect(),
        })
        .collect();
    t.jenkins = spi
        .into_iter()
        .map(|b| JenkinsSpec {
            at: Duration::from_millis(b.at_ms),
            vm: b.vm.unwrap_or_else(|| "any".into()),
            duration: Duration::from_millis(b.duration_ms),
            wait: Duration::from_millis(b.wait_ms),
            retry: Duration::from_millis(b.retry_ms),
        })
        .collect();
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{RunOptions, simulate};

    #[test]
    fn the_standard_trace_is_valid_and_round_trips() {
        let t = standard_trace(2, 5, 3);
        assert!(t.problems().is_empty(), "{:?}", t.problems());
        let text = t.to_toml().expect("serialises");
        let back = Trace::parse(&text, std::path::Path::new("s.toml")).expect("parses");
        assert_eq!(back, t);
        let e = explicit(&t);
        assert!(e.generate.is_none() && !e.root_jobs.is_empty() && !e.jenkins.is_empty());
        let text = e.to_toml().expect("serialises");
        let back = Trace::parse(&text, std::path::Path::new("e.toml")).expect("parses");
        assert_eq!(arrivals(&back, 0), arrivals(&t, 5));
        let a = simulate(&t, RunOptions::default());
        let b = simulate(&e, RunOptions::default());
        assert_eq!(a.teams, b.teams, "expanding the arrivals changes nothing");
    }
}
