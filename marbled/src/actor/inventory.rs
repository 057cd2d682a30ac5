//! The inventory refresh (`prlctl list` as a job) and its settling: a finished transfer
//! changes the VM set, and transfer requests wait until a refresh that can see it is done.

use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use super::handle::ActorCommand;
use super::{Completion, Supervisor};
use crate::transfers::Transfers;

impl Supervisor {
    /// Whether every refresh a finished transfer asked for has completed.
    pub(super) fn inventory_settled(&self) -> bool {
        self.refreshes_done >= self.settle_at
    }

    /// A transfer request arriving while the inventory does not yet show a finished
    /// transfer's clone deletion or registration waits for that refresh.
    pub(super) fn defers_transfer(&self, cmd: &ActorCommand) -> bool {
        matches!(cmd, ActorCommand::Submit { request, .. } if Transfers::handles(request))
            && !self.inventory_settled()
    }

    pub(super) fn refresh_inventory(&mut self) {
        self.next_refresh = Instant::now()
            + Duration::from_millis(self.world.config().inventory_interval_ms.max(1000));
        if self.refresh_in_flight {
            self.refresh_again = true;
            return;
        }
        self.refresh_in_flight = true;
        self.refreshes_spawned += 1;
        let ctx = self.ctx.clone();
        let tx = self.completions_tx.clone();
        self.jobs.spawn(
            async move {
                let result = ctx.inventory().await;
                let _ = tx.send(Completion::Inventory(result)).await;
            }
            .instrument(tracing::debug_span!("inventory")),
        );
    }
}
