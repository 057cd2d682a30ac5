//! What a trace's injected faults certainly cost any scheduler that keeps MARBLE's safety
//! rules, for the fault-bound reference ([`super::ideal::Ideal::fault_bound`]; docs/SIMULATOR.md
//! "The fault-bound reference").
//!
//! Only faults that hit every occasion (`rate` ≥ 1) are charged — a fault of lower rate is a
//! matter of luck, and charging nothing for it keeps the reference optimistic:
//! - `boot` on a VM with no window: no boot of it ever gets ready, so it runs nothing (the
//!   reference avoids it from the start, which no scheduler can: it learns by one failed
//!   boot — optimistic again);
//! - `probe` in a window: a ROOT job on a hit VM that ends inside the window leaves a VM
//!   nobody may stop (its busy probe fails, and unknown counts as busy), so the VM and its
//!   slot are held until the window ends;
//! - `stop-ignored` in a window: a ROOT job on a hit VM that ends inside the window is
//!   followed by a graceful stop that does nothing, so its VM is killed only after
//!   `scheduler.graceful_stop_timeout` (+ `sim.kill_latency` instead of `sim.stop_latency`).
//!
//! `hang` faults are not charged. The reference has no foresight of a window: it places jobs
//! as [`super::ideal::schedule_with_gap`] does and pays the faults where they fall on that
//! placement (a scheduler that does not know the future does no better on average).

use std::time::Duration;

use super::ideal::IdealHost;
use super::trace::{FaultKind, FaultSpec, Trace};

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A window of simulated time, ms, `[from, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    from: u64,
    until: u64,
}

impl Window {
    fn of(f: &FaultSpec) -> Self {
        Self {
            from: f.from.map_or(0, ms),
            until: f.until.map_or(u64::MAX, ms),
        }
    }

    fn contains(&self, at: u64) -> bool {
        self.from <= at && at < self.until
    }
}

/// A charged fault: the VMs it hits (`None`: every VM), its window and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Charged {
    vm: Option<String>,
    window: Window,
    kind: FaultKind,
}

/// The faults of a trace the fault-bound reference charges ([`FaultCharges::of`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCharges {
    charged: Vec<Charged>,
    /// Extra stop time of a stop-ignored stop over a graceful one, ms.
    ignored_stop_extra_ms: u64,
}

impl FaultCharges {
    /// The certain faults of `trace` (every `[[faults]]` entry of rate ≥ 1 but `hang`).
    pub fn of(trace: &Trace) -> Self {
        let charged = trace
            .faults
            .iter()
            .filter(|f| f.rate >= 1.0 && f.kind != FaultKind::Hang)
            .map(|f| Charged {
                vm: f.vm.clone(),
                window: Window::of(f),
                kind: f.kind,
            })
            .collect();
        let kill =
            ms(trace.scheduler.graceful_stop_timeout).saturating_add(ms(trace.sim.kill_latency));
        Self {
            charged,
            ignored_stop_extra_ms: kill.saturating_sub(ms(trace.sim.stop_latency)),
        }
    }

    /// No fault is charged: the fault-bound reference is the boot-bound one.
    pub fn is_empty(&self) -> bool {
        self.charged.is_empty()
    }

    fn hits<'a>(&'a self, vm: &'a str, kind: FaultKind) -> impl Iterator<Item = Window> + 'a {
        self.charged
            .iter()
            .filter(move |c| c.kind == kind && c.vm.as_deref().is_none_or(|n| n == vm))
            .map(|c| c.window)
    }

    /// VM `vm` never gets ready (a `boot` fault without a window).
    pub fn dead(&self, vm: &str) -> bool {
        self.hits(vm, FaultKind::Boot)
            .any(|w| w.from == 0 && w.until == u64::MAX)
    }

    /// When the slot and VM that ran a ROOT job on `vm` ending at `end_ms` may be counted
    /// free (before the boot-bound gap): the end of a probe-fault window it ended in, plus
    /// the extra stop time of an ignored graceful stop at that moment.
    pub fn root_release_ms(&self, vm: &str, end_ms: u64) -> u64 {
        let held = self
            .hits(vm, FaultKind::Probe)
            .filter(|w| w.contains(end_ms))
            .map(|w| w.until)
            .max()
            .map_or(end_ms, |until| until.max(end_ms));
        let ignored = self
            .hits(vm, FaultKind::StopIgnored)
            .any(|w| w.contains(held));
        if ignored {
            held.saturating_add(self.ignored_stop_extra_ms)
        } else {
            held
        }
    }
}

/// `hosts` without the VMs that never get ready under `charges`.
pub fn without_dead(hosts: &[IdealHost], charges: &FaultCharges) -> Vec<IdealHost> {
    hosts
        .iter()
        .map(|h| IdealHost {
            capacity: h.capacity,
            vms: h
                .vms
                .iter()
                .filter(|v| !charges.dead(&v.name))
                .cloned()
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace_with(faults: &str) -> Trace {
        let text = format!("[host]\nroot_vms = 2\nspi_vms = 1\n{faults}");
        Trace::parse(&text, std::path::Path::new("t")).expect("trace")
    }

    #[test]
    fn only_certain_faults_are_charged() {
        let t = trace_with(
            "[[faults]]\nkind = \"probe\"\nrate = 0.1\n\n\
             [[faults]]\nkind = \"hang\"\naction = \"start\"\n\n\
             [[faults]]\nkind = \"boot\"\nvm = \"sim-ROOT-VM-2\"\nrate = 0.5\n",
        );
        assert!(FaultCharges::of(&t).is_empty());
    }

    #[test]
    fn a_vm_that_never_boots_is_left_out() {
        let t = trace_with("[[faults]]\nkind = \"boot\"\nvm = \"sim-ROOT-VM-2\"\n");
        let c = FaultCharges::of(&t);
        assert!(c.dead("sim-ROOT-VM-2") && !c.dead("sim-ROOT-VM-1"));
        let hosts = without_dead(&super::super::ideal::fleet(&t), &c);
        let names: Vec<&str> = hosts[0].vms.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["sim-ROOT-VM-1", "sim-SPI-VM-1"]);
        // A boot fault with a window is not certain death.
        let t = trace_with("[[faults]]\nkind = \"boot\"\nvm = \"sim-ROOT-VM-2\"\nuntil = \"1h\"\n");
        assert!(!FaultCharges::of(&t).dead("sim-ROOT-VM-2"));
    }

    #[test]
    fn a_job_ending_while_its_vm_cannot_be_probed_holds_it_to_the_window_end() {
        let t = trace_with(
            "[[faults]]\nkind = \"probe\"\nvm = \"sim-ROOT-VM-1\"\nfrom = \"10m\"\nuntil = \"30m\"\n",
        );
        let c = FaultCharges::of(&t);
        let min = 60_000;
        assert_eq!(c.root_release_ms("sim-ROOT-VM-1", 12 * min), 30 * min);
        // Before or after the window, or on another VM: no hold.
        assert_eq!(c.root_release_ms("sim-ROOT-VM-1", 9 * min), 9 * min);
        assert_eq!(c.root_release_ms("sim-ROOT-VM-1", 30 * min), 30 * min);
        assert_eq!(c.root_release_ms("sim-ROOT-VM-2", 12 * min), 12 * min);
    }

    #[test]
    fn an_ignored_graceful_stop_costs_the_graceful_timeout_and_a_kill() {
        let t =
            trace_with("[[faults]]\nkind = \"stop-ignored\"\nfrom = \"10m\"\nuntil = \"20m\"\n");
        let c = FaultCharges::of(&t);
        // Shipped graceful_stop_timeout 60 s + kill 1 s instead of the 10 s graceful stop.
        assert_eq!(
            c.root_release_ms("sim-ROOT-VM-1", 600_000),
            600_000 + 51_000
        );
        assert_eq!(c.root_release_ms("sim-ROOT-VM-1", 1_200_000), 1_200_000);
    }
}
