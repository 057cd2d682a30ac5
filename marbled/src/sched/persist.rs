//! What survives a restart: locks, pause and drain (with who/why/since), slot leases,
//! quarantines, the cycle's position and the operations that were in flight. Kept by VM
//! name, so a lock on a VM that is temporarily unregistered is not lost.

use std::collections::BTreeMap;

use marble_proto::Attribution;
use serde::{Deserialize, Serialize};

use super::Millis;

/// A granted slot's protection from preemption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Who was granted the VM (the caller's user name).
    pub by: String,
    /// Granted at, unix ms.
    pub since_ms: Millis,
    /// Protected until, unix ms (afterwards only while busy).
    pub until_ms: Millis,
}

/// A VM that failed readiness repeatedly and is not started again before `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// Readiness failures in a row.
    pub failures: u32,
    /// Not started before this unix ms (0: not quarantined, only counting failures).
    pub until_ms: Millis,
    /// The last failure.
    pub last_error: String,
}

/// An operation that was running when the state was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlightOp {
    /// Operation kind (`start`, `stop`, `kill`, …).
    pub operation: String,
    /// Started at, unix ms.
    pub since_ms: Millis,
}

/// The state file's content (JSON inside the store's versioned header).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Persisted {
    /// Locked VMs by name.
    pub locks: BTreeMap<String, Attribution>,
    /// Cycling paused.
    pub paused: Option<Attribution>,
    /// Host draining.
    pub draining: Option<Attribution>,
    /// Slot leases by VM name.
    pub leases: BTreeMap<String, Lease>,
    /// Readiness failures and quarantines by VM name.
    pub quarantine: BTreeMap<String, Quarantine>,
    /// The ROOT VM the cycle started last (the round robin continues after it).
    pub last_cycled: Option<String>,
    /// The cycle starts nothing before this unix ms (the window left for Jenkins).
    pub cycle_off_until_ms: Millis,
    /// Operations in flight by VM name; after a restart they become "needs reconcile".
    pub in_flight: BTreeMap<String, InFlightOp>,
}
