//! Per-VM exec slots of the prlctl adapter: at most `max_exec_per_vm` `prlctl exec`
//! processes into one guest at once (Parallels' DevOps service keeps it to 2); execs into
//! other VMs never wait for them.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};

use tokio::sync::Semaphore;

/// Per-VM exec slots: a semaphore of `per_vm` permits for each VM that has execs running or
/// waiting, dropped from the map again when the last of them is done (so the map holds only
/// busy VMs). Keyed by the VM argument as the caller wrote it (callers use names).
#[derive(Debug)]
pub(super) struct ExecSlots {
    per_vm: usize,
    by_vm: std::sync::Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl ExecSlots {
    pub(super) fn new(per_vm: usize) -> ExecSlots {
        ExecSlots {
            per_vm,
            by_vm: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Semaphore>>> {
        // The map stays consistent whatever a panicking holder did: every change is one
        // insert or remove.
        self.by_vm.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait for a slot of `vm`; it is released when the returned guard drops.
    pub(super) async fn acquire(&self, vm: &str) -> ExecSlot<'_> {
        let semaphore = Arc::clone(
            self.map()
                .entry(vm.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_vm))),
        );
        // Built before waiting, so a caller cancelled while waiting still tidies the map.
        let mut slot = ExecSlot {
            slots: self,
            vm: vm.to_owned(),
            semaphore,
            permit: None,
        };
        slot.permit = Some(
            Arc::clone(&slot.semaphore)
                .acquire_owned()
                .await
                .expect("invariant: exec semaphores are never closed"),
        );
        slot
    }

    /// VMs with execs running or waiting.
    #[cfg(test)]
    fn busy_vms(&self) -> usize {
        self.map().len()
    }
}

/// A held (or awaited) exec slot of one VM.
pub(super) struct ExecSlot<'a> {
    slots: &'a ExecSlots,
    vm: String,
    semaphore: Arc<Semaphore>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for ExecSlot<'_> {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut map = self.slots.map();
        // References: the map's and ours. More means another exec holds or awaits a slot.
        if Arc::strong_count(&self.semaphore) == 2
            && map
                .get(&self.vm)
                .is_some_and(|s| Arc::ptr_eq(s, &self.semaphore))
        {
            map.remove(&self.vm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exec_slots_cap_each_vm_and_forget_idle_vms() {
        let slots = ExecSlots::new(2);
        let a1 = slots.acquire("a").await;
        let a2 = slots.acquire("a").await;
        let b1 = slots.acquire("b").await;
        assert_eq!(slots.busy_vms(), 2);
        // A third slot of `a` waits; cancelled while waiting, it leaves nothing behind.
        let third = futures_util::FutureExt::now_or_never(slots.acquire("a"));
        assert!(third.is_none(), "a third slot of one VM was granted");
        drop(b1);
        assert_eq!(slots.busy_vms(), 1, "an idle VM is forgotten");
        drop(a1);
        let a3 = slots.acquire("a").await;
        drop((a2, a3));
        assert_eq!(slots.busy_vms(), 0);
    }
}
