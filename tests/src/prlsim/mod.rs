//! A faithful `prlctl` simulator for tests on hosts without Parallels Desktop.
//!
//! One simulated host user lives in a directory: `state.json` (VMs, scripted guests, faults)
//! guarded by `flock`, VM bundles under `vms/`, and `invocations.jsonl`. The `fake-prlctl`
//! binary answers `prlctl` command lines against that directory with the output shapes,
//! messages and exit codes of `reference/prlctl.md`; tests drive and inspect it with
//! [`SimHost`], humans with the `prlsim` binary. Both bins are thin wrappers over
//! [`prlctl::fake_main`] and [`ctl::main`].
//!
//! Layout: [`model`] (state), [`store`] (locking, persistence, bundles, log), [`clonefile`]
//! (bundle copies that keep holes, like APFS clonefile), [`faults`],
//! [`prlctl`] (the command surface: power, list, manage), [`prlsrvctl`] (`info`, same binary
//! under that name), [`exec`] and [`guest`] (the scripted
//! guest), [`host`] ([`SimHost`]), [`ctl`] (the `prlsim` CLI).

use std::fmt;
use std::path::{Path, PathBuf};

pub mod clonefile;
pub mod ctl;
pub mod exec;
pub mod faults;
pub mod guest;
pub mod host;
pub mod model;
pub mod prlctl;
pub mod prlsrvctl;
pub mod store;

pub use faults::{FaultEntry, FaultKind};
pub use host::{PrlRun, SimHost};
pub use model::{ExecRule, GuestProc, Match, RuleAction, SimState, Vm, VmState};
pub use store::Invocation;

/// Environment variable naming the simulated host directory.
pub const DIR_ENV: &str = "MARBLE_PRLSIM_DIR";

/// Errors of the simulator's own machinery (not simulated prlctl errors, which are output).
#[derive(Debug)]
pub enum SimError {
    /// A filesystem operation failed.
    Io {
        /// Path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// `state.json` or the log does not parse.
    Corrupt(PathBuf, serde_json::Error),
    /// No VM with that name or UUID.
    NoSuchVm(String),
    /// A VM with that name already exists.
    DuplicateName(String),
    /// A control request was malformed.
    Invalid(String),
}

impl SimError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        SimError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Io { path, .. } => write!(f, "i/o on {}", path.display()),
            SimError::Corrupt(path, _) => write!(f, "corrupt simulator file {}", path.display()),
            SimError::NoSuchVm(id) => write!(f, "no simulated vm {id:?}"),
            SimError::DuplicateName(n) => write!(f, "simulated vm {n:?} already exists"),
            SimError::Invalid(m) => write!(f, "invalid request: {m}"),
        }
    }
}

impl std::error::Error for SimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SimError::Io { source, .. } => Some(source),
            SimError::Corrupt(_, e) => Some(e),
            _ => None,
        }
    }
}
