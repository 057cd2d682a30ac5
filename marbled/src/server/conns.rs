//! The table of open control connections: how many there are, which are idle, and shedding
//! the oldest idle one when a new connection needs its descriptor.
//!
//! Idle means still in the handshake or between requests. A connection with a request in
//! progress or a `watch` stream is never shed: its client is waiting for an answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long the accept loop waits for a shed connection to close before looking again.
const SHED_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct Slot {
    idle: bool,
    /// Cancelled when the connection is shed; it is then no longer a candidate.
    shed: CancellationToken,
}

/// What [`ConnTable::make_room`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// There was room under the cap.
    Free,
    /// Connection `id` (the oldest idle one) was shed and has closed.
    Shed(u64),
    /// Every connection is busy: the new one must be refused.
    Full,
}

/// Open connections by id (ids grow with accept order, so the first idle one is the oldest).
#[derive(Debug, Default)]
pub struct ConnTable {
    slots: Mutex<BTreeMap<u64, Slot>>,
    closed: Notify,
}

impl ConnTable {
    fn slots(&self) -> MutexGuard<'_, BTreeMap<u64, Slot>> {
        // The map stays consistent even if a holder panicked: every update is one call.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Open connections, shed ones still closing included (each holds a descriptor).
    pub fn len(&self) -> usize {
        self.slots().len()
    }

    /// Add connection `id` (idle: it starts in its handshake).
    pub fn register(self: &Arc<Self>, id: u64) -> ConnGuard {
        let shed = CancellationToken::new();
        self.slots().insert(
            id,
            Slot {
                idle: true,
                shed: shed.clone(),
            },
        );
        ConnGuard {
            table: Arc::clone(self),
            id,
            shed,
        }
    }

    /// Make room for one more connection under `cap`: shed the oldest idle connection and
    /// wait for it to close (its descriptor is only free then).
    pub async fn make_room(&self, cap: usize) -> Room {
        let mut room = Room::Free;
        loop {
            let notified = self.closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut slots = self.slots();
                if slots.len() < cap {
                    return room;
                }
                let closing = slots.values().any(|s| s.shed.is_cancelled());
                if !closing {
                    let Some((id, victim)) = slots.iter_mut().find(|(_, s)| s.idle) else {
                        return Room::Full;
                    };
                    victim.idle = false;
                    victim.shed.cancel();
                    room = Room::Shed(*id);
                }
            }
            // A shed connection closes within a scheduling round; the bound only guards
            // against one that is stuck writing, after which the next idle one goes.
            if tokio::time::timeout(SHED_WAIT, notified).await.is_err() {
                tracing::debug!("a shed connection is slow to close");
                let mut slots = self.slots();
                for slot in slots.values_mut().filter(|s| s.shed.is_cancelled()) {
                    // Count it but stop waiting for it.
                    slot.shed = CancellationToken::new();
                }
            }
        }
    }
}

/// A connection's entry in the table; removed when dropped.
#[derive(Debug)]
pub struct ConnGuard {
    table: Arc<ConnTable>,
    id: u64,
    shed: CancellationToken,
}

impl ConnGuard {
    /// Mark the connection idle (between requests) or busy (a request or a watch stream).
    pub fn set_idle(&self, idle: bool) {
        if let Some(slot) = self.table.slots().get_mut(&self.id)
            && !slot.shed.is_cancelled()
        {
            slot.idle = idle;
        }
    }

    /// Cancelled when the accept loop sheds this connection.
    pub fn shed(&self) -> &CancellationToken {
        &self.shed
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.table.slots().remove(&self.id);
        self.table.closed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sheds_the_oldest_idle_connection_never_a_busy_one() {
        let table = Arc::new(ConnTable::default());
        let busy = table.register(1);
        busy.set_idle(false);
        let old_idle = table.register(2);
        let new_idle = table.register(3);
        assert_eq!(table.make_room(4).await, Room::Free, "room under the cap");

        let shed_task = {
            let table = Arc::clone(&table);
            tokio::spawn(async move { table.make_room(3).await })
        };
        old_idle.shed().cancelled().await;
        assert!(!busy.shed().is_cancelled());
        assert!(!new_idle.shed().is_cancelled());
        drop(old_idle);
        assert_eq!(shed_task.await.expect("join"), Room::Shed(2));
        assert_eq!(table.len(), 2);

        new_idle.set_idle(false);
        assert_eq!(table.make_room(2).await, Room::Full, "all busy: refuse");
    }
}
