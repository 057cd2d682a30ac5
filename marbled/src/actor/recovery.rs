//! The host states that must be loud, and the wait for the first inventory.
//!
//! - **Unresolved operations.** After a crash the hypervisor adapter resolves the power
//!   operations the killed daemon began (its orphaned `prlctl` children, then a listing that
//!   has settled) before it answers the first listing (`hypervisor::prlctl`, `recover.rs`).
//!   Until that first inventory the world knows no VM, so requests that change something are
//!   held ([`Supervisor::defers_until_inventory`]) and replayed after it instead of failing
//!   with "unknown VM" (held only while the first refresh is under way or operations remain
//!   unresolved: a listing that just fails does not hold them). `status` shows what is waited for; the adapter logs the WARN lines.
//! - **Over capacity.** More VMs holding the host than its capacity (someone started one by
//!   hand, or a crash left two): the scheduler starts nothing until they stop; here it gets a
//!   WARN line (at most one per [`WARN_EVERY`]) and a line in `status`.

use std::time::Duration;

use marble_proto::{Decision, Request};
use tokio::time::Instant;

use super::Supervisor;
use super::handle::ActorCommand;

/// Between two WARN lines about the same standing condition.
const WARN_EVERY: Duration = Duration::from_secs(60);

impl Supervisor {
    /// A request that changes something waits for the first inventory while that may still
    /// come from a resolution: until the first refresh has completed, and after that while
    /// operations remain unresolved. (A host whose listing simply fails does not hold
    /// requests: `host check` must still say why.)
    ///
    /// `request-slot` is not held here: it carries its own wait budget, and the scheduler
    /// keeps it (within `--wait`, else 75 "the first inventory has not arrived") and resolves
    /// its name once the VMs are listed — Jenkins' retry loop relies on a prompt 75.
    pub(super) fn defers_until_inventory(&self, cmd: &ActorCommand) -> bool {
        matches!(
            cmd,
            ActorCommand::Submit { request, .. } if !matches!(request, Request::RequestSlot { .. })
        ) && self.inventory_ms == 0
            && (self.refreshes_done == 0 || !self.ctx.hv.unresolved().is_empty())
    }

    /// VMs holding the host beyond its capacity, when there are more than it allows.
    fn over_capacity(&self, now: u64) -> Option<Vec<String>> {
        let holding: Vec<String> = self
            .world
            .vms(now)
            .into_iter()
            .filter(|vm| vm.power.occupies_host())
            .map(|vm| vm.name)
            .collect();
        (holding.len() > self.world.config().capacity as usize).then_some(holding)
    }

    /// Conditions that hold now, as decisions `status` lists last.
    pub(super) fn standing_warnings(&self, now: u64) -> Vec<Decision> {
        let mut out = Vec::new();
        let unresolved = self.ctx.hv.unresolved();
        if !unresolved.is_empty() {
            out.push(Decision {
                at_ms: now,
                vm: None,
                text: format!(
                    "WARNING now: unresolved prlctl operations begun before the restart: {}; \
                     nothing is started or stopped until they are over",
                    unresolved.join("; ")
                ),
            });
        }
        if let Some(holding) = self.over_capacity(now) {
            out.push(Decision {
                at_ms: now,
                vm: None,
                text: format!(
                    "WARNING now: over capacity: {} VMs hold the host ({}), capacity {}; \
                     starting nothing until they stop",
                    holding.len(),
                    holding.join(", "),
                    self.world.config().capacity
                ),
            });
        }
        out
    }

    /// After an inventory: a WARN line while the host is over capacity (rate-limited).
    pub(super) fn warn_over_capacity(&mut self, now: u64) {
        let Some(holding) = self.over_capacity(now) else {
            self.over_capacity_warned = None;
            return;
        };
        if self
            .over_capacity_warned
            .is_some_and(|at| at.elapsed() < WARN_EVERY)
        {
            return;
        }
        self.over_capacity_warned = Some(Instant::now());
        tracing::warn!(
            capacity = self.world.config().capacity,
            "over capacity: {} VMs hold the host ({}); starting nothing until they stop",
            holding.len(),
            holding.join(", ")
        );
    }
}
