//! The supervisor's loop: the biased `select!` over shutdown, completions, written states,
//! commands and the next deadline, what each wake-up does, and the drain at shutdown.

use std::time::Duration;

use tokio::time::Instant;

use super::handle::gone;
use super::{Completion, Supervisor, now_ms};
use crate::sched::{Input, Persisted};

impl Supervisor {
    /// Run until shutdown; then answer waiting clients, wait for jobs up to `budget`, and
    /// return the final state to persist.
    pub async fn run(mut self, budget: Duration) -> Persisted {
        self.refresh_inventory();
        loop {
            let deadline = self.next_wakeup();
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                Some(done) = self.completions.recv() => self.on_completion(done),
                Ok(()) = self.written.changed(), if !self.held.is_empty() => self.release_held(),
                Some(cmd) = self.commands.recv() => self.on_command(cmd),
                () = tokio::time::sleep_until(deadline) => self.on_timer(),
            }
        }
        tracing::info!(
            waiting = self.waiting.len(),
            held = self.held.len(),
            "actor stopping"
        );
        // The daemon writes the final state right after the actor returns; these answers
        // are already decided.
        for (_, done, result) in self.held.drain(..) {
            let _ = done.send(result);
        }
        for (_, waiter) in self.waiting.drain() {
            let _ = waiter.done.send(Err(gone()));
        }
        self.watchers.clear();
        self.jobs.close();
        if tokio::time::timeout(budget, self.jobs.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                budget = %humantime::format_duration(budget),
                "jobs still running at the end of the shutdown budget; their operations \
                 will be reconciled at the next start"
            );
        }
        self.world.persisted()
    }

    fn next_wakeup(&self) -> Instant {
        let mut at = self.next_refresh;
        if let Some(deadline) = self.world.next_deadline() {
            let now = now_ms();
            let wait = Duration::from_millis(deadline.saturating_sub(now));
            at = at.min(Instant::now() + wait);
        }
        at
    }

    fn on_timer(&mut self) {
        if Instant::now() >= self.next_refresh {
            self.refresh_inventory();
        }
        let effects = self.world.handle(now_ms(), Input::Tick);
        self.apply(effects);
    }

    pub(super) fn on_completion(&mut self, done: Completion) {
        let input = match done {
            Completion::Op { op, vm, outcome } => {
                tracing::debug!(vm = %vm, op = op.0, ?outcome, "operation finished");
                Input::Finished { op, outcome }
            }
            Completion::Lifecycle(event) => {
                self.on_lifecycle_event(&event);
                return;
            }
            Completion::Transfer(event) => {
                // Pushes create and delete a clone, pulls register a VM.
                if self.transfers.on_event(event) {
                    // The next refresh spawned (now, or after the one in flight) is the
                    // first that can see what the transfer did.
                    self.settle_at = self.refreshes_spawned + 1;
                    self.refresh_inventory();
                }
                return;
            }
            Completion::Inventory(result) => {
                self.refresh_in_flight = false;
                self.refreshes_done = self.refreshes_spawned;
                if std::mem::take(&mut self.refresh_again) {
                    self.refresh_inventory();
                }
                let input = match result {
                    Ok(vms) => {
                        self.inventory_ms = now_ms();
                        self.teams = vms.iter().map(|v| (v.name.clone(), v.team)).collect();
                        Some(Input::Inventory(vms))
                    }
                    Err(err) => {
                        // A failed refresh still releases waiting transfers: they then
                        // check against the last inventory, as before.
                        tracing::warn!(error = %err, "inventory refresh failed; keeping the last one");
                        None
                    }
                };
                if let Some(input) = input {
                    let effects = self.world.handle(now_ms(), input);
                    self.apply(effects);
                    self.warn_over_capacity(now_ms());
                }
                if self.inventory_settled() {
                    for cmd in std::mem::take(&mut self.deferred_transfers) {
                        self.on_command(cmd);
                    }
                }
                return;
            }
        };
        let effects = self.world.handle(now_ms(), input);
        self.apply(effects);
    }
}
