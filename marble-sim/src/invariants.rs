//! Invariant violations found while driving the scheduler: their kinds, counts, and the
//! first few descriptions (with the virtual time) for the report.
//!
//! What each kind means is documented in `docs/SIMULATOR.md` ("Invariants").

use std::collections::BTreeMap;

use serde::Serialize;

/// How many descriptions the report keeps.
pub const KEEP_DESCRIPTIONS: usize = 10;

/// The rules the simulator checks after every step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ViolationKind {
    /// More VMs occupy the host than its capacity.
    OverCapacity,
    /// A stop for a VM whose last probe answer was busy or unknown.
    StopBusyOrUnknown,
    /// A stop for a VM running a job that the scheduler never probed since it started.
    StopUnprobed,
    /// A slot request not answered within its wait plus the slack.
    Unanswered,
    /// A `Run` for a VM that already has an operation in flight.
    OpInFlight,
    /// A `Run` reusing an op id that is still in flight.
    DuplicateOp,
    /// A `Run` for a VM the host does not have.
    UnknownVm,
    /// A probe for another team than the VM's.
    WrongProbeTeam,
    /// A reply for a request that was never sent or was already answered.
    BadReply,
    /// A grant for another VM, or for a VM that is not running with its guest up.
    BadGrant,
    /// `next_deadline()` stayed in the past after many ticks (a busy loop).
    StuckDeadline,
    /// The run exceeded its step budget (a livelock).
    StepBudget,
}

impl ViolationKind {
    /// Stable name used in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationKind::OverCapacity => "over_capacity",
            ViolationKind::StopBusyOrUnknown => "stop_busy_or_unknown",
            ViolationKind::StopUnprobed => "stop_unprobed_job",
            ViolationKind::Unanswered => "unanswered_command",
            ViolationKind::OpInFlight => "op_in_flight",
            ViolationKind::DuplicateOp => "duplicate_op",
            ViolationKind::UnknownVm => "unknown_vm",
            ViolationKind::WrongProbeTeam => "wrong_probe_team",
            ViolationKind::BadReply => "bad_reply",
            ViolationKind::BadGrant => "bad_grant",
            ViolationKind::StuckDeadline => "stuck_deadline",
            ViolationKind::StepBudget => "step_budget",
        }
    }
}

/// Violations found so far.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Violations {
    /// Total count.
    pub count: u64,
    /// Count per kind.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// The first descriptions, each prefixed with the virtual time.
    pub first: Vec<String>,
}

impl Violations {
    /// Record one violation at `offset_ms` after the start.
    pub fn record(&mut self, offset_ms: u64, kind: ViolationKind, description: String) {
        self.count += 1;
        *self.by_kind.entry(kind.as_str()).or_insert(0) += 1;
        if self.first.len() < KEEP_DESCRIPTIONS {
            let mut line = description;
            let prefix = format!(
                "t=+{} {}: ",
                super::metrics::fmt_ms(offset_ms),
                kind.as_str()
            );
            line.insert_str(0, &prefix);
            self.first.push(line);
        }
    }

    /// No violation was found.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_one_and_keeps_the_first_few() {
        let mut v = Violations::default();
        for i in 0..15 {
            v.record(i * 1000, ViolationKind::OverCapacity, format!("n{i}"));
        }
        v.record(0, ViolationKind::BadGrant, "g".into());
        assert_eq!(v.count, 16);
        assert_eq!(v.by_kind["over_capacity"], 15);
        assert_eq!(v.by_kind["bad_grant"], 1);
        assert_eq!(v.first.len(), KEEP_DESCRIPTIONS);
        assert!(
            v.first[1].starts_with("t=+1s over_capacity: n1"),
            "{}",
            v.first[1]
        );
    }
}
