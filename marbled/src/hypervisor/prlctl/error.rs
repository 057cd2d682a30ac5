//! [`PrlctlError`]: what can go wrong running prlctl, and the classification helpers that
//! read prlctl's (SDK) wording so callers never match on message text themselves.
//!
//! The phrases come from `reference/prlctl.md` (observed PD output and the shared SDK
//! strings); matching is case-insensitive on the stderr tail.

use std::time::Duration;

use super::ParseError;

/// Errors from running prlctl. `argv` always starts with the executable path.
#[derive(Debug, thiserror::Error)]
pub enum PrlctlError {
    /// The process could not be started.
    #[error("cannot run `{}`", argv.join(" "))]
    Spawn {
        /// Command line.
        argv: Vec<String>,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// prlctl exited non-zero (or was killed by a signal: `status` is `None`).
    #[error("`{}` failed (exit {}): {stderr_tail}", argv.join(" "), fmt_status(*status))]
    Failed {
        /// Command line.
        argv: Vec<String>,
        /// Exit code, `None` when killed by a signal.
        status: Option<i32>,
        /// The last ~2 KiB of stderr (stdout when stderr was empty), trimmed.
        stderr_tail: String,
    },
    /// prlctl did not finish in time; its process group was killed.
    #[error("`{}` timed out after {after:?}", argv.join(" "))]
    Timeout {
        /// Command line.
        argv: Vec<String>,
        /// The timeout that expired.
        after: Duration,
    },
    /// prlctl succeeded but its output could not be understood.
    #[error("cannot parse the output of `{}`", argv.join(" "))]
    Parse {
        /// Command line.
        argv: Vec<String>,
        /// What was wrong.
        #[source]
        reason: ParseError,
    },
    /// A guest command line too long for `prlctl exec`'s argv (which hangs above ~3.9 KB)
    /// that cannot go on stdin either, because the caller sends stdin of its own. Nothing ran.
    #[error("guest command line of `{}` is {bytes} bytes; at most {limit} fit in argv and the caller's stdin rules out sending it on stdin", argv.join(" "))]
    CommandTooLong {
        /// Command line (prlctl, `exec`, VM).
        argv: Vec<String>,
        /// Length of the guest command line.
        bytes: usize,
        /// The most sent in argv.
        limit: usize,
    },
    /// Talking to the child process failed (reading its output, waiting for it).
    #[error("i/o with `{}`", argv.join(" "))]
    Io {
        /// Command line.
        argv: Vec<String>,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

fn fmt_status(status: Option<i32>) -> String {
    status.map_or_else(|| "by signal".to_owned(), |s| s.to_string())
}

impl PrlctlError {
    /// The command line of the failed call.
    pub fn argv(&self) -> &[String] {
        match self {
            PrlctlError::Spawn { argv, .. }
            | PrlctlError::Failed { argv, .. }
            | PrlctlError::Timeout { argv, .. }
            | PrlctlError::Parse { argv, .. }
            | PrlctlError::CommandTooLong { argv, .. }
            | PrlctlError::Io { argv, .. } => argv,
        }
    }

    /// The stderr tail of a [`PrlctlError::Failed`], else `""`.
    pub fn stderr_tail(&self) -> &str {
        match self {
            PrlctlError::Failed { stderr_tail, .. } => stderr_tail,
            _ => "",
        }
    }

    fn says(&self, needles: &[&str]) -> bool {
        let tail = self.stderr_tail().to_ascii_lowercase();
        needles.iter().any(|n| tail.contains(n))
    }

    /// The VM (or snapshot) does not exist for this user: `… could not be found.`
    pub fn is_not_found(&self) -> bool {
        self.says(&["could not be found", "does not exist"])
    }

    /// `Access denied. You do not have enough rights to use this virtual machine.` (a locked
    /// bundle, `chflags uchg`, or another user's VM).
    pub fn is_access_denied(&self) -> bool {
        self.says(&["access denied", "do not have enough rights"])
    }

    /// The operation needs a running VM: SDK `… is not started.` / `… for running virtual
    /// machines only`.
    pub fn is_not_running(&self) -> bool {
        self.says(&["is not started", "for running virtual machines only"])
    }

    /// The operation needs a stopped VM: SDK `… is not stopped.` / `… for stopped virtual
    /// machines only`.
    pub fn is_not_stopped(&self) -> bool {
        self.says(&["is not stopped", "for stopped virtual machines only"])
    }

    /// `prlctl exec` could not open a guest session (Tools not ready, still booting, VM
    /// isolated). Usually transient right after start/resume.
    pub fn is_exec_session_unavailable(&self) -> bool {
        self.says(&[
            "unable to open new session",
            "prl_err_vm_exec_guest_tool_not_available",
        ])
    }

    /// The call hit its timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, PrlctlError::Timeout { .. })
    }

    /// `Operation canceled` (e.g. a graceful stop whose guest question had no answer; the VM
    /// may still stop later).
    pub fn is_operation_canceled(&self) -> bool {
        self.says(&["operation canceled", "operation cancelled"])
    }

    /// The Parallels service is unreachable (exit 253, `Unable to connect to Parallels
    /// Service`).
    pub fn is_service_unavailable(&self) -> bool {
        matches!(
            self,
            PrlctlError::Failed {
                status: Some(253),
                ..
            }
        ) || self.says(&["unable to connect to parallels service"])
    }

    /// Failures seen in the wild that are worth one retry: `Login failed:`, spurious
    /// `PrlJob_GetRetCode`/`PrlJob_GetResult` errors (the operation may have succeeded, so
    /// re-check state before retrying a mutation), snapshot data synchronisation.
    pub fn is_transient(&self) -> bool {
        self.says(&[
            "login failed:",
            "prljob_getretcode",
            "prljob_getresult",
            "data synchronization is currently in progress",
        ]) || self.is_service_unavailable()
    }
}

/// Whether an exec stderr line is prlctl's own complaint rather than the guest's output (used
/// to classify exit 255).
pub fn is_prlctl_side_message(stderr: &str) -> bool {
    const MARKERS: &[&str] = &[
        "unable to open new session",
        "prl_err_vm_exec_guest_tool_not_available",
        "prlvmguest_",
        "failed to execute the command",
        "is not started",
        "for running virtual machines only",
        "could not be found",
        "access denied",
        "unable to connect to parallels service",
        "unrecognized option",
        "failed to get vm config",
        "login failed:",
        "prljob_get",
    ];
    let lower = stderr.to_ascii_lowercase();
    MARKERS.iter().any(|m| lower.contains(m))
}

impl crate::chain::WireKind for PrlctlError {
    /// The kind a hypervisor failure is reported with.
    fn kind(&self) -> marble_proto::ErrorKind {
        use marble_proto::ErrorKind;
        if self.is_not_found() {
            ErrorKind::NotFound
        } else if self.is_access_denied() {
            ErrorKind::Locked
        } else if self.is_timeout() {
            ErrorKind::Timeout
        } else if self.is_not_running() || self.is_not_stopped() {
            ErrorKind::InvalidState
        } else {
            ErrorKind::Unavailable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| (*s).to_owned()).collect()
    }

    type Predicate = fn(&PrlctlError) -> bool;

    fn failed(status: i32, stderr: &str) -> PrlctlError {
        PrlctlError::Failed {
            argv: strings(&["prlctl", "start", "vm one"]),
            status: Some(status),
            stderr_tail: stderr.into(),
        }
    }

    #[test]
    fn display_joins_argv() {
        let e = failed(
            255,
            "Failed to get VM config: The virtual machine could not be found.",
        );
        assert_eq!(
            e.to_string(),
            "`prlctl start vm one` failed (exit 255): Failed to get VM config: The virtual \
             machine could not be found."
        );
        let e = PrlctlError::Timeout {
            argv: strings(&["prlctl", "stop", "x", "--kill"]),
            after: Duration::from_secs(3),
        };
        assert_eq!(e.to_string(), "`prlctl stop x --kill` timed out after 3s");
        assert!(e.is_timeout());
        assert!(!e.is_not_found());
    }

    #[test]
    fn classification_matches_reference_wording() {
        let cases: &[(&str, Predicate)] = &[
            (
                "Failed to get VM config: The virtual machine could not be found.",
                PrlctlError::is_not_found,
            ),
            (
                "Failed to start the VM: Access denied. You do not have enough rights to use \
                 this virtual machine.",
                PrlctlError::is_access_denied,
            ),
            (
                "Unable to perform the operation because the virtual machine \"m\" is not \
                 started. This operation can be performed for running virtual machines only.",
                PrlctlError::is_not_running,
            ),
            (
                "Unable to perform the operation because \"macOS\" is not started.",
                PrlctlError::is_not_running,
            ),
            (
                "Failed to start the VM: The virtual machine \"Windows 11\" is not stopped. \
                 This operation can be performed for stopped virtual machines only.",
                PrlctlError::is_not_stopped,
            ),
            (
                "Failed to execute the command: Unable to open new session in this virtual \
                 machine. Make sure your virtual machine has finished booting, runs the latest \
                 version of Parallels Tools, and is not isolated from the host OS.",
                PrlctlError::is_exec_session_unavailable,
            ),
            (
                "Failed to stop the VM: Operation canceled",
                PrlctlError::is_operation_canceled,
            ),
            (
                "Unable to connect to Parallels Service",
                PrlctlError::is_service_unavailable,
            ),
            ("Login failed: try again", PrlctlError::is_transient),
            (
                "PrlJob_GetRetCode: Invalid argument. An invalid argument was passed.",
                PrlctlError::is_transient,
            ),
        ];
        let all: &[fn(&PrlctlError) -> bool] = &[
            PrlctlError::is_not_found,
            PrlctlError::is_access_denied,
            PrlctlError::is_not_running,
            PrlctlError::is_not_stopped,
            PrlctlError::is_exec_session_unavailable,
            PrlctlError::is_operation_canceled,
            PrlctlError::is_timeout,
        ];
        for (msg, yes) in cases {
            let e = failed(255, msg);
            assert!(yes(&e), "{msg}");
            // Each message answers yes to exactly its own predicate among the main ones.
            let hits = all.iter().filter(|p| p(&e)).count();
            assert!(hits <= 1, "{msg} matched {hits} predicates");
        }
        assert!(failed(253, "").is_service_unavailable());
        let spawn = PrlctlError::Spawn {
            argv: strings(&["prlctl"]),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(
            !spawn.is_not_found(),
            "a missing binary is not a missing VM"
        );
    }

    #[test]
    fn prlctl_side_messages_for_exec_255() {
        assert!(is_prlctl_side_message(
            "Unable to open new session in this virtual machine."
        ));
        assert!(is_prlctl_side_message(
            "PrlVmGuest_RunProgram: something went wrong"
        ));
        assert!(is_prlctl_side_message(
            "Unable to perform the operation because \"m\" is not started."
        ));
        assert!(!is_prlctl_side_message("bash: line 1: oops\n"));
        assert!(!is_prlctl_side_message(""));
    }
}
