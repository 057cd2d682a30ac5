//! Fault injection: what can go wrong in a `prlctl` call, how a fault is named on the
//! `prlsim` command line, and which faults apply to one invocation.
//!
//! A fault is global or bound to one VM (by UUID); a VM-bound fault applies when any argument
//! of the invocation names that VM. Faults may be limited to a number of uses.

use serde::{Deserialize, Serialize};

use super::model::SimState;

/// One kind of injected misbehaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The process blocks forever before doing anything (for `verb`, or every verb). With
    /// `ignore_sigterm` only SIGKILL ends it, like PD 26.4's oversized exec.
    Hang {
        /// Only this verb (`stop`, `exec`, …); `None` = all.
        verb: Option<String>,
        /// Block SIGTERM.
        ignore_sigterm: bool,
    },
    /// Delay every invocation of `verb` by `ms` before answering.
    Slow {
        /// Verb.
        verb: String,
        /// Delay.
        ms: u64,
    },
    /// `stop` exits 255 with `Operation canceled`; the VM still stops `after_ms` later.
    StopCanceled {
        /// Delay until the VM reaches `stopped`.
        after_ms: u64,
    },
    /// A graceful `stop` prints success and exits 0 but the VM keeps running.
    StopNoop,
    /// `list --json` output is wrapped in garbage text.
    ListGarbage,
    /// `list` fails with `Login failed:` on stderr, exit 255.
    LoginFailed,
    /// `exec` fails with the "Unable to open new session" error.
    ExecSessionError,
    /// `verb` does its work but then reports `PrlJob_GetRetCode: Invalid argument…`, exit 255.
    SpuriousFailure {
        /// Verb.
        verb: String,
    },
}

/// A fault with its scope and remaining uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultEntry {
    /// UUID of the VM it is bound to; `None` = global.
    pub vm: Option<String>,
    /// What goes wrong.
    pub kind: FaultKind,
    /// Uses left; `None` = until cleared.
    pub remaining: Option<u32>,
}

impl FaultKind {
    /// Parse the `prlsim fault set` syntax:
    /// `hang[:VERB]`, `hang-ignore-term[:VERB]`, `slow:VERB:MS`, `stop-canceled[:MS]`,
    /// `stop-noop`, `list-garbage`, `login-failed`, `exec-session-error`,
    /// `spurious-failure:VERB`. (`locked` is a VM flag, handled by the caller.)
    pub fn parse(spec: &str) -> Option<Self> {
        let mut parts = spec.split(':');
        let head = parts.next()?;
        let a = parts.next();
        let b = parts.next();
        let kind = match (head, a, b) {
            ("hang", verb, None) => FaultKind::Hang {
                verb: verb.map(str::to_owned),
                ignore_sigterm: false,
            },
            ("hang-ignore-term", verb, None) => FaultKind::Hang {
                verb: verb.map(str::to_owned),
                ignore_sigterm: true,
            },
            ("slow", Some(verb), Some(ms)) => FaultKind::Slow {
                verb: verb.to_owned(),
                ms: ms.parse().ok()?,
            },
            ("stop-canceled", ms, None) => FaultKind::StopCanceled {
                after_ms: match ms {
                    Some(m) => m.parse().ok()?,
                    None => 0,
                },
            },
            ("stop-noop", None, None) => FaultKind::StopNoop,
            ("list-garbage", None, None) => FaultKind::ListGarbage,
            ("login-failed", None, None) => FaultKind::LoginFailed,
            ("exec-session-error", None, None) => FaultKind::ExecSessionError,
            ("spurious-failure", Some(verb), None) => FaultKind::SpuriousFailure {
                verb: verb.to_owned(),
            },
            _ => return None,
        };
        Some(kind)
    }

    /// Short tag used to clear faults by kind (`hang`, `slow`, …).
    pub fn tag(&self) -> &'static str {
        match self {
            FaultKind::Hang { .. } => "hang",
            FaultKind::Slow { .. } => "slow",
            FaultKind::StopCanceled { .. } => "stop-canceled",
            FaultKind::StopNoop => "stop-noop",
            FaultKind::ListGarbage => "list-garbage",
            FaultKind::LoginFailed => "login-failed",
            FaultKind::ExecSessionError => "exec-session-error",
            FaultKind::SpuriousFailure { .. } => "spurious-failure",
        }
    }

    /// Whether this fault concerns an invocation of `verb`.
    fn concerns(&self, verb: &str) -> bool {
        match self {
            FaultKind::Hang { verb: v, .. } => v.as_deref().is_none_or(|v| v == verb),
            FaultKind::Slow { verb: v, .. } | FaultKind::SpuriousFailure { verb: v } => v == verb,
            FaultKind::StopCanceled { .. } | FaultKind::StopNoop => verb == "stop",
            FaultKind::ListGarbage | FaultKind::LoginFailed => verb == "list",
            FaultKind::ExecSessionError => verb == "exec",
        }
    }
}

/// Take (and count a use of) the first fault matching `pred` that applies to an invocation of
/// `verb` with `args`.
pub fn take_fault(
    st: &mut SimState,
    verb: &str,
    args: &[String],
    pred: impl Fn(&FaultKind) -> bool,
) -> Option<FaultKind> {
    let idx = st.faults.iter().position(|f| {
        pred(&f.kind)
            && f.kind.concerns(verb)
            && f.remaining != Some(0)
            && match &f.vm {
                None => true,
                Some(u) => args.iter().any(|a| {
                    st.find(a)
                        .is_some_and(|i| st.vms.get(i).is_some_and(|v| &v.uuid == u))
                }),
            }
    })?;
    let entry = st.faults.get_mut(idx)?;
    let kind = entry.kind.clone();
    if let Some(n) = entry.remaining.as_mut() {
        *n = n.saturating_sub(1);
        if *n == 0 {
            st.faults.remove(idx);
        }
    }
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_spec() {
        for s in [
            "hang",
            "hang:stop",
            "hang-ignore-term:exec",
            "slow:list:250",
            "stop-canceled",
            "stop-canceled:500",
            "stop-noop",
            "list-garbage",
            "login-failed",
            "exec-session-error",
            "spurious-failure:start",
        ] {
            assert!(FaultKind::parse(s).is_some(), "{s}");
        }
        assert_eq!(FaultKind::parse("slow:list"), None);
        assert_eq!(FaultKind::parse("explode"), None);
    }
}
