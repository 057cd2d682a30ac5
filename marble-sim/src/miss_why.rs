//! Why `replay-all` says a trace missed a target of issue 17 ([`super::replay_all`]): a ROOT
//! p95 miss is infeasible (boot bound), infeasible under the faults (fault bound) or a policy
//! gap over the tightest bound; a loss is explained by boots, faults, the order of the two
//! teams, or nothing (docs/SIMULATOR.md "Replay all").

use serde::Serialize;

use super::replay_all::{ROOT_P95_SLACK_MS, short};

/// Why `demand` missed the ROOT p95 target on a trace.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RootP95Miss {
    /// The boot-bound reference's ROOT p95 already exceeds ideal.both p95 + 60 s: no
    /// scheduler at one job per boot meets the target on this trace.
    Infeasible,
    /// The boot bound alone does not, but the fault-bound reference's ROOT p95 exceeds
    /// ideal.both p95 + 60 s: the trace's certain injected faults put the target out of
    /// reach.
    InfeasibleFaults,
    /// `demand`'s ROOT p95 is this far over the boot-bound reference's, ms (a trace without
    /// charged faults).
    PolicyGap {
        /// `demand` p95 − boot-bound p95, ms.
        over_bound_ms: u64,
    },
    /// `demand`'s ROOT p95 is this far over the fault-bound reference's, ms (a trace with
    /// charged faults).
    FaultGap {
        /// `demand` p95 − fault-bound p95, ms.
        over_bound_ms: u64,
    },
}

impl RootP95Miss {
    /// The reason for a miss of `demand`'s p95 against the ideal's, given the boot bound's.
    /// `fault_p95_ms`: the fault-bound reference's p95 when the trace has charged faults
    /// (`Some(None)`: it starts no ROOT job).
    pub fn classify(
        demand_p95_ms: u64,
        ideal_p95_ms: Option<u64>,
        bound_p95_ms: Option<u64>,
        fault_p95_ms: Option<Option<u64>>,
    ) -> Self {
        let limit = ideal_p95_ms.map(|i| i + ROOT_P95_SLACK_MS);
        let beyond = |p: Option<u64>| match (p, limit) {
            (Some(b), Some(l)) => b > l,
            // No ideal p95 but a bound p95: the bound starts jobs the ideal does not.
            (Some(_), None) => true,
            (None, _) => false,
        };
        if beyond(bound_p95_ms) {
            return Self::Infeasible;
        }
        if fault_p95_ms.is_some_and(beyond) {
            return Self::InfeasibleFaults;
        }
        let over = |b: Option<u64>| demand_p95_ms.saturating_sub(b.unwrap_or(0));
        match fault_p95_ms {
            Some(f) => Self::FaultGap {
                over_bound_ms: over(f),
            },
            None => Self::PolicyGap {
                over_bound_ms: over(bound_p95_ms),
            },
        }
    }

    /// The reason in words.
    pub fn reason(&self) -> String {
        match self {
            Self::Infeasible => {
                "infeasible: boot-bound p95 already exceeds ideal.both p95 + 60 s".into()
            }
            Self::InfeasibleFaults => "infeasible under the injected faults: fault-bound p95 \
                                       already exceeds ideal.both p95 + 60 s"
                .into(),
            Self::PolicyGap { over_bound_ms } => {
                format!(
                    "policy gap: {} over the boot bound",
                    short(Some(*over_bound_ms))
                )
            }
            Self::FaultGap { over_bound_ms } => {
                format!(
                    "policy gap: {} over the fault bound",
                    short(Some(*over_bound_ms))
                )
            }
        }
    }
}

/// What explains the jobs `demand` lost against ideal.both on a trace.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LostWhy {
    /// The trace's certain injected faults: the fault-bound reference loses as many (it
    /// starts no job `demand` does not).
    Faults,
    /// One job per boot: the boot-bound reference loses as many (no faults charged).
    Boots,
    /// The mix: `demand` started at least as many jobs in all as the tightest bound (fault-
    /// or boot-bound), but fewer of one team (it served the other team's later jobs before
    /// older ones, where the references place jobs FIFO).
    Order,
    /// None of these: `demand` started fewer jobs in all than the tightest bound.
    Policy,
}

impl LostWhy {
    /// Why `lost` (> 0) jobs were lost: `lost_boot` is the loss against the boot bound,
    /// `lost_fault` against the fault bound (`None`: the trace has no charged fault), and
    /// `started` / `bound_started` the jobs (both teams) `demand` and the tightest bound (the
    /// fault bound if any, else the boot bound) start within the trace. Boots come first:
    /// when the boot bound alone loses as many, the faults explain nothing more.
    pub fn classify(
        lost_boot: u64,
        lost_fault: Option<u64>,
        started: u64,
        bound_started: u64,
    ) -> Self {
        if lost_boot == 0 {
            Self::Boots
        } else if lost_fault == Some(0) {
            Self::Faults
        } else if started >= bound_started {
            Self::Order
        } else {
            Self::Policy
        }
    }

    /// The "0 lost" cell of a missed target.
    pub(crate) fn cell(self) -> &'static str {
        match self {
            Self::Faults => "✘ faults",
            Self::Boots => "✘ boots",
            Self::Order => "✘ order",
            Self::Policy => "✘",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_p95_miss_is_infeasible_or_a_policy_gap() {
        let m = 60_000;
        // The bound is already past ideal + 60 s: no scheduler at one job per boot meets it.
        assert_eq!(
            RootP95Miss::classify(10 * m, Some(m), Some(3 * m), None),
            RootP95Miss::Infeasible
        );
        // The bound is within the target: the rest is the policy's.
        let gap = RootP95Miss::classify(10 * m, Some(m), Some(2 * m), None);
        assert_eq!(
            gap,
            RootP95Miss::PolicyGap {
                over_bound_ms: 8 * m
            }
        );
        assert_eq!(gap.reason(), "policy gap: 8m00s over the boot bound");
        assert!(
            RootP95Miss::Infeasible
                .reason()
                .starts_with("infeasible: boot-bound p95")
        );
        assert_eq!(
            RootP95Miss::classify(m, None, Some(m), None),
            RootP95Miss::Infeasible
        );
    }
}
