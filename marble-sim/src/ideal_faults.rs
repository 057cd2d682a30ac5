//! What a trace's injected faults certainly cost any scheduler that keeps MARBLE's safety
//! rules, for the fault-bound reference ([`super::ideal::Ideal::fault_bound`]; docs/SIMULATOR.md
//! "The fault-bound reference").
//!
//! Only faults that hit every occasion (`rate` ≥ 1) are charged — a fault of lower rate is a
//! matter of luck, and charging nothing for it keeps the reference optimistic. As in the
//! simulation (`Faults::hits`), only the first fault of a kind listed for a VM and moment
//! applies: a certain fault is charged only where no earlier fault of its kind matches.
//! - `boot` certain at every moment: no boot of the VM ever gets ready, so it runs nothing
//!   (the reference avoids it from the start, which no scheduler can: it learns by one
//!   failed boot — optimistic again); a VM running at the start still runs until its first
//!   stop;
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
use super::trace::{FaultKind, FaultSpec, InitialPower, Trace};

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

/// A fault of the trace as [`super::host::Faults::hits`] sees it: the VMs it hits (`None`:
/// every VM), its window, kind and whether it hits every occasion (`rate` ≥ 1).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    vm: Option<String>,
    window: Window,
    kind: FaultKind,
    certain: bool,
}

impl Listed {
    fn applies(&self, vm: &str, kind: FaultKind) -> bool {
        self.kind == kind && self.vm.as_deref().is_none_or(|n| n == vm)
    }
}

/// The faults of a trace the fault-bound reference charges ([`FaultCharges::of`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCharges {
    /// Every fault but `hang`, in trace order: the simulation applies only the first one of
    /// a kind that matches a VM and moment, so a certain fault listed after an overlapping
    /// uncertain one is a matter of luck where they overlap.
    listed: Vec<Listed>,
    /// VMs running at the start: one with a permanent boot fault still runs until its
    /// first stop.
    running_at_start: Vec<String>,
    /// Extra stop time of a stop-ignored stop over a graceful one, ms.
    ignored_stop_extra_ms: u64,
}

impl FaultCharges {
    /// The faults of `trace` (every `[[faults]]` entry but `hang`); only a fault of rate ≥ 1
    /// that is the first of its kind to match a VM and moment is charged there.
    pub fn of(trace: &Trace) -> Self {
        let listed = trace
            .faults
            .iter()
            .filter(|f| f.kind != FaultKind::Hang)
            .map(|f| Listed {
                vm: f.vm.clone(),
                window: Window::of(f),
                kind: f.kind,
                certain: f.rate >= 1.0,
            })
            .collect();
        let running_at_start = trace
            .host_vms()
            .into_iter()
            .filter(|v| v.power == InitialPower::Running)
            .map(|v| v.name)
            .collect();
        let kill =
            ms(trace.scheduler.graceful_stop_timeout).saturating_add(ms(trace.sim.kill_latency));
        Self {
            listed,
            running_at_start,
            ignored_stop_extra_ms: kill.saturating_sub(ms(trace.sim.stop_latency)),
        }
    }

    /// No fault is charged: the fault-bound reference is the boot-bound one.
    pub fn is_empty(&self) -> bool {
        !self.listed.iter().any(|l| l.certain)
    }

    /// A fault of `kind` certainly hits `vm` at `at`: the first fault of that kind matching
    /// `vm` and `at` (the one `Faults::hits` draws on) has rate ≥ 1.
    fn certain(&self, vm: &str, kind: FaultKind, at: u64) -> bool {
        self.listed
            .iter()
            .find(|l| l.applies(vm, kind) && l.window.contains(at))
            .is_some_and(|l| l.certain)
    }

    /// The moments after `at` where which fault of `kind` applies to `vm` may change (the
    /// window edges of the faults that match it), ascending.
    fn edges_after(&self, vm: &str, kind: FaultKind, at: u64) -> Vec<u64> {
        let mut edges: Vec<u64> = self
            .listed
            .iter()
            .filter(|l| l.applies(vm, kind))
            .flat_map(|l| [l.window.from, l.window.until])
            .filter(|&e| e > at && e < u64::MAX)
            .collect();
        edges.sort_unstable();
        edges.dedup();
        edges
    }

    /// The first moment from `at` on when a fault of `kind` is no longer certain on `vm`
    /// (`u64::MAX`: never).
    fn certain_until(&self, vm: &str, kind: FaultKind, at: u64) -> u64 {
        std::iter::once(at)
            .chain(self.edges_after(vm, kind, at))
            .find(|&t| !self.certain(vm, kind, t))
            .unwrap_or(u64::MAX)
    }

    /// No boot of VM `vm` ever gets ready: a boot fault is certain at every moment.
    pub fn never_boots(&self, vm: &str) -> bool {
        self.certain_until(vm, FaultKind::Boot, 0) == u64::MAX
    }

    /// VM `vm` runs nothing: it never boots and is not running at the start (one that is
    /// runs until its first stop, [`FaultCharges::never_boots`]).
    pub fn dead(&self, vm: &str) -> bool {
        self.never_boots(vm) && !self.running_at_start.iter().any(|n| n == vm)
    }

    /// When the slot and VM that ran a ROOT job on `vm` ending at `end_ms` may be counted
    /// free (before the boot-bound gap): the end of the certain probe failures it ended in,
    /// plus the extra stop time of an ignored graceful stop at that moment.
    pub fn root_release_ms(&self, vm: &str, end_ms: u64) -> u64 {
        let held = self.certain_until(vm, FaultKind::Probe, end_ms);
        if held != u64::MAX && self.certain(vm, FaultKind::StopIgnored, held) {
            held.saturating_add(self.ignored_stop_extra_ms)
        } else {
            held
        }
    }
}

/// `hosts` without the VMs that never get ready under `charges` ([`FaultCharges::dead`]).
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
    fn a_certain_fault_after_an_overlapping_uncertain_one_is_charged_only_where_it_applies() {
        // The simulation applies only the first matching fault of a kind: where the rate-0.1
        // probe fault matches, the later certain one never counts.
        let min = 60_000;
        let t = trace_with(
            "[[faults]]\nkind = \"probe\"\nrate = 0.1\n\n\
             [[faults]]\nkind = \"probe\"\nvm = \"sim-ROOT-VM-1\"\n\
             from = \"10m\"\nuntil = \"30m\"\n",
        );
        assert_eq!(
            FaultCharges::of(&t).root_release_ms("sim-ROOT-VM-1", 12 * min),
            12 * min
        );
        // Overlapping only in part: charged where it is the first to match.
        let t = trace_with(
            "[[faults]]\nkind = \"probe\"\nrate = 0.1\nuntil = \"20m\"\n\n\
             [[faults]]\nkind = \"probe\"\nvm = \"sim-ROOT-VM-1\"\n\
             from = \"10m\"\nuntil = \"30m\"\n",
        );
        let c = FaultCharges::of(&t);
        assert_eq!(c.root_release_ms("sim-ROOT-VM-1", 12 * min), 12 * min);
        assert_eq!(c.root_release_ms("sim-ROOT-VM-1", 25 * min), 30 * min);
        // A certain stop-ignored fault shadowed by an uncertain one is not charged either.
        let t = trace_with(
            "[[faults]]\nkind = \"stop-ignored\"\nrate = 0.2\n\n\
             [[faults]]\nkind = \"stop-ignored\"\nfrom = \"10m\"\nuntil = \"20m\"\n",
        );
        assert_eq!(
            FaultCharges::of(&t).root_release_ms("sim-ROOT-VM-1", 12 * min),
            12 * min
        );
        // A permanent boot fault after a boot fault of lower rate for the first hour: the VM
        // may boot in that hour, so it is not left out.
        let t = trace_with(
            "[[faults]]\nkind = \"boot\"\nvm = \"sim-ROOT-VM-2\"\nrate = 0.5\nuntil = \"1h\"\n\n\
             [[faults]]\nkind = \"boot\"\nvm = \"sim-ROOT-VM-2\"\n",
        );
        assert!(!FaultCharges::of(&t).dead("sim-ROOT-VM-2"));
    }

    #[test]
    fn a_vm_running_at_the_start_that_never_boots_is_kept() {
        let t = trace_with(
            "[[host.vms]]\nname = \"sim-ROOT-VM-3\"\npower = \"running\"\n\n\
             [[faults]]\nkind = \"boot\"\nvm = \"sim-ROOT-VM-3\"\n",
        );
        let c = FaultCharges::of(&t);
        assert!(c.never_boots("sim-ROOT-VM-3") && !c.dead("sim-ROOT-VM-3"));
        let hosts = without_dead(&super::super::ideal::fleet(&t), &c);
        assert!(hosts[0].vms.iter().any(|v| v.name == "sim-ROOT-VM-3"));
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
