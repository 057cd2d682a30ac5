//! Semantic checks of a parsed trace, all at once, each naming its key (`faults[2].vm`):
//! the daemon's own checks of `[scheduler]`, then the host, boot distribution, arrivals,
//! generated load and faults.

use std::collections::BTreeSet;

use marble_proto::Team;
use marbled::config::Config;

use super::trace::{
    FaultKind, GenerateSection, HostSection, HostVm, InitialPower, Trace, TraceProblem,
};

impl Trace {
    /// Semantic checks, all at once.
    pub fn problems(&self) -> Vec<TraceProblem> {
        let mut out = Vec::new();
        let mut bad = |key: String, message: String| out.push(TraceProblem { key, message });
        // The daemon's own checks of [scheduler].
        let daemon = Config {
            scheduler: self.scheduler.clone(),
            labels: self.labels.clone(),
            ..Config::default()
        };
        for p in daemon.problems() {
            if p.key.starts_with("scheduler.") || p.key.starts_with("labels.") {
                bad(p.key, p.message);
            }
        }
        if self.sim.duration.is_zero() {
            bad("sim.duration".into(), "must be greater than zero".into());
        }
        if !self.hosts.is_empty() && self.host != HostSection::default() {
            bad(
                "host".into(),
                "give either [host] or [[hosts]], not both".into(),
            );
        }
        let vms = self.host_vms();
        let names = self.host_problems(&vms, &mut bad);
        self.boot_problems(&mut bad);
        let spi: BTreeSet<&str> = vms
            .iter()
            .filter(|v| v.team == Team::Spi)
            .map(|v| v.name.as_str())
            .collect();
        self.arrival_problems(&spi, &mut bad);
        if let Some(g) = &self.generate {
            generate_problems(g, &spi, &mut bad);
        }
        self.fault_problems(&names, &mut bad);
        out
    }

    /// Each host's capacity and VMs, then every VM name (returned: the names faults may hit).
    fn host_problems<'a>(
        &self,
        vms: &'a [HostVm],
        bad: &mut impl FnMut(String, String),
    ) -> BTreeSet<&'a str> {
        for (h, host) in self.host_sections().into_iter().enumerate() {
            let key = self.host_key(h);
            if host.capacity == 0 {
                bad(format!("{key}.capacity"), "must be at least 1".into());
            }
            if !marbled::config::labels::label_word(&host.arch) {
                bad(
                    format!("{key}.arch"),
                    format!("{:?} is not a label (ARM64, X64)", host.arch),
                );
            }
            if !vms.iter().any(|v| v.host == h) {
                bad(key.clone(), "the host has no VMs".into());
            }
            let running = vms
                .iter()
                .filter(|v| v.host == h && v.power == InitialPower::Running)
                .count();
            if running > host.capacity as usize {
                bad(
                    format!("{key}.vms"),
                    format!(
                        "{running} VMs start running but {key}.capacity is {}",
                        host.capacity
                    ),
                );
            }
        }
        let mut names = BTreeSet::new();
        for (i, vm) in vms.iter().enumerate() {
            if vm.name.trim().is_empty() {
                bad(
                    format!("{}.vms[{i}].name", self.host_key(vm.host)),
                    "must not be empty".into(),
                );
            } else if !names.insert(vm.name.as_str()) {
                bad(
                    format!("{}.vms", self.host_key(vm.host)),
                    format!("VM {:?} is defined twice", vm.name),
                );
            }
        }
        names
    }

    /// `[boot]`: the slow tail, then the ordinary range.
    fn boot_problems(&self, bad: &mut impl FnMut(String, String)) {
        if self.boot.slow_rate.is_nan() || !(0.0..=1.0).contains(&self.boot.slow_rate) {
            bad("boot.slow_rate".into(), "must be within 0..=1".into());
        }
        if self.boot.slow_max.is_some_and(|m| m < self.boot.max) {
            bad("boot.slow_max".into(), "must not be below boot.max".into());
        }
        if self.boot.min > self.boot.max {
            bad("boot.min".into(), "must not exceed boot.max".into());
        }
    }

    /// Explicit arrivals (`[[root_jobs]]`, `[[jenkins]]`) and whether SPI load has an SPI VM.
    fn arrival_problems(&self, spi: &BTreeSet<&str>, bad: &mut impl FnMut(String, String)) {
        for (i, job) in self.root_jobs.iter().enumerate() {
            if job.labels.is_empty() {
                bad(format!("root_jobs[{i}].labels"), "must not be empty".into());
            }
        }
        for (i, b) in self.jenkins.iter().enumerate() {
            if b.vm != "any" && !spi.contains(b.vm.as_str()) {
                bad(format!("jenkins[{i}].vm"), not_spi(&b.vm, spi));
            }
            if b.retry.is_zero() {
                bad(
                    format!("jenkins[{i}].retry"),
                    "must be greater than zero".into(),
                );
            }
        }
        let needs_spi = self.jenkins.iter().any(|b| b.vm == "any")
            || self
                .generate
                .as_ref()
                .is_some_and(|g| g.spi.is_some() || g.daily.is_some());
        if needs_spi && spi.is_empty() {
            bad(
                "host.spi_vms".into(),
                "Jenkins builds are configured but the host has no SPI VM".into(),
            );
        }
    }

    /// `[[faults]]`: the VM each names, its rate and window, and `hang`-only keys.
    fn fault_problems(&self, names: &BTreeSet<&str>, bad: &mut impl FnMut(String, String)) {
        for (i, f) in self.faults.iter().enumerate() {
            if let Some(vm) = &f.vm
                && !names.contains(vm.as_str())
            {
                bad(
                    format!("faults[{i}].vm"),
                    format!("unknown VM {vm:?}; the host has {}", join(names)),
                );
            }
            if !(0.0..=1.0).contains(&f.rate) {
                bad(format!("faults[{i}].rate"), "must be within 0..=1".into());
            }
            if let (Some(from), Some(until)) = (f.from, f.until)
                && from >= until
            {
                bad(format!("faults[{i}].from"), "must be before until".into());
            }
            if f.kind != FaultKind::Hang {
                if f.action.is_some() {
                    bad(
                        format!("faults[{i}].action"),
                        "only valid for kind = \"hang\"".into(),
                    );
                }
                if f.delay.is_some() {
                    bad(
                        format!("faults[{i}].delay"),
                        "only valid for kind = \"hang\"".into(),
                    );
                }
            }
        }
    }
}

/// `[generate]`: the daily model, then the Poisson ROOT and SPI load.
fn generate_problems(
    g: &GenerateSection,
    spi: &BTreeSet<&str>,
    bad: &mut impl FnMut(String, String),
) {
    if let Some(d) = &g.daily {
        for (key, message) in d.problems() {
            bad(format!("generate.daily.{key}"), message);
        }
    }
    if let Some(r) = &g.root {
        rate_problems(bad, "generate.root", r.per_hour);
        if r.duration_min > r.duration_max {
            bad(
                "generate.root.duration_min".into(),
                "must not exceed duration_max".into(),
            );
        }
        if r.label_sets.is_empty() || r.label_sets.iter().any(Vec::is_empty) {
            bad(
                "generate.root.label_sets".into(),
                "needs at least one non-empty label set".into(),
            );
        }
    }
    if let Some(s) = &g.spi {
        rate_problems(bad, "generate.spi", s.per_hour);
        if s.duration_min > s.duration_max {
            bad(
                "generate.spi.duration_min".into(),
                "must not exceed duration_max".into(),
            );
        }
        if s.vms.is_empty() {
            bad("generate.spi.vms".into(), "must not be empty".into());
        }
        for vm in &s.vms {
            if vm != "any" && !spi.contains(vm.as_str()) {
                bad("generate.spi.vms".into(), not_spi(vm, spi));
            }
        }
        if s.retry.is_zero() {
            bad(
                "generate.spi.retry".into(),
                "must be greater than zero".into(),
            );
        }
    }
}

fn rate_problems(bad: &mut impl FnMut(String, String), key: &str, per_hour: f64) {
    if !per_hour.is_finite() || per_hour < 0.0 {
        bad(
            format!("{key}.per_hour"),
            "must be a non-negative number".into(),
        );
    }
}

fn not_spi(vm: &str, spi: &BTreeSet<&str>) -> String {
    format!(
        "{vm:?} is not an SPI VM of the host; expected \"any\" or one of {}",
        join(spi)
    )
}

fn join(names: &BTreeSet<&str>) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.iter().copied().collect::<Vec<_>>().join(", ")
    }
}
