//! The per-VM runner records: which GitHub registration belongs to which VM's current boot
//! (minted and held, delivered, left to clean up, or cleared). In memory only, shared by
//! every job and kept across config reloads; [`super::lifecycle`] moves them along.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::types::JitConfig;
use super::versions::RunnerVersions;

/// The registration MARBLE made for a VM's current boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerRecord {
    /// GitHub's runner id.
    pub id: u64,
    /// Runner name.
    pub name: String,
}

/// What the daemon knows about a VM's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Known {
    /// Registered with GitHub before the VM was started, the config held here (in memory
    /// only: `JitConfig`'s secret redacts itself in `Debug`) until readiness delivers it.
    /// The config has not reached the guest, so no job can run or be assigned in the VM: it
    /// may be stopped without GitHub's word, and the registration is deleted on the way.
    Minted {
        /// The registration.
        record: RunnerRecord,
        /// Its config, delivered at readiness.
        jit: JitConfig,
    },
    /// Registered by this daemon for the VM's current boot, and its config delivered (or
    /// about to be: a delivery that failed half-way may still have reached the guest).
    Registered(RunnerRecord),
    /// This boot's runner was not listening and no config has been delivered since, so no
    /// job can run or be assigned in the VM: stopping it needs no word from GitHub. Holds a
    /// registration to clean up on the way (an earlier boot's, or none).
    Undelivered(Option<RunnerRecord>),
    /// Checked: no registration of ours exists (deleted before a stop, or none found).
    Cleared,
}

/// Per-VM runner records, shared by all jobs and kept across config reloads. A std mutex:
/// it is held only for a map operation, never across an `.await`. The runner versions
/// ride along (the same lifetime: per VM, in memory, across reloads).
#[derive(Debug, Clone, Default)]
pub struct RunnerRecords(Arc<Mutex<HashMap<String, Known>>>, RunnerVersions);

impl RunnerRecords {
    /// The runner versions (releases read, each VM's installed version).
    pub fn versions(&self) -> &RunnerVersions {
        &self.1
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, Known>> {
        // Plain data: a panic elsewhere mid-insert leaves nothing half-updated.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The registration recorded for `vm` (its current one, minted or delivered, or one
    /// still to clean up).
    pub fn get(&self, vm: &str) -> Option<RunnerRecord> {
        match self.lock().get(vm) {
            Some(
                Known::Minted { record: r, .. }
                | Known::Registered(r)
                | Known::Undelivered(Some(r)),
            ) => Some(r.clone()),
            _ => None,
        }
    }

    /// The registration of `vm`'s current boot: `None` when these records do not know the
    /// VM (it ran before this daemon started), `Some(None)` when it has none (cleared, or
    /// only an earlier boot's left to clean up), `Some(Some(id))` when minted or delivered.
    pub fn current(&self, vm: &str) -> Option<Option<u64>> {
        match self.lock().get(vm)? {
            Known::Minted { record, .. } | Known::Registered(record) => Some(Some(record.id)),
            Known::Undelivered(_) | Known::Cleared => Some(None),
        }
    }

    /// The registration of `vm`'s current boot (minted or delivered), with its name; None
    /// when it has none or these records do not know the VM.
    pub fn current_record(&self, vm: &str) -> Option<RunnerRecord> {
        match self.lock().get(vm)? {
            Known::Minted { record, .. } | Known::Registered(record) => Some(record.clone()),
            Known::Undelivered(_) | Known::Cleared => None,
        }
    }

    /// The registration of `vm`'s current boot once its config was delivered (the runner
    /// may have connected and taken a job); None before that or without one.
    pub fn delivered(&self, vm: &str) -> Option<RunnerRecord> {
        match self.lock().get(vm)? {
            Known::Registered(record) => Some(record.clone()),
            _ => None,
        }
    }

    /// Take the config minted before `vm` booted, marking its registration delivered (in one
    /// step, so the config can go out only once). `None`: nothing was minted for this boot.
    pub(super) fn take_minted(&self, vm: &str) -> Option<(RunnerRecord, JitConfig)> {
        let mut map = self.lock();
        let entry = map.get_mut(vm)?;
        let Known::Minted { record, .. } = entry else {
            return None;
        };
        let delivered = Known::Registered(record.clone());
        match std::mem::replace(entry, delivered) {
            Known::Minted { record, jit } => Some((record, jit)),
            _ => None,
        }
    }

    pub(super) fn known(&self, vm: &str) -> Option<Known> {
        self.lock().get(vm).cloned()
    }

    pub(super) fn set(&self, vm: &str, known: Known) {
        self.lock().insert(vm.to_owned(), known);
    }
}
