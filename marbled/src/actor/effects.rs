//! Applying the scheduler's effects: handing states to the persister, replies (held until
//! their state is written), progress, events to watchers, and the jobs of `Effect::Run`.

use marble_proto::{Event, Team};
use tracing::Instrument;

use super::{Completion, Supervisor};
use crate::sched::{Action, Effect, OpId, Outcome};

impl Supervisor {
    pub(super) fn apply(&mut self, effects: Vec<Effect>) {
        // Hand the state to the persister before any reply of this batch is considered,
        // wherever `Persist` sits in the batch: the replies acknowledge this state.
        if effects.iter().any(|e| matches!(e, Effect::Persist)) {
            self.persisted_gen += 1;
            self.persist
                .send_replace((self.persisted_gen, self.world.persisted()));
        }
        for effect in effects {
            match effect {
                Effect::Run { op, vm, action } => self.spawn_op(op, vm, action),
                Effect::Reply { req, result } => {
                    if let Some(waiter) = self.waiting.remove(&req) {
                        if *self.written.borrow() >= self.persisted_gen {
                            let _ = waiter.done.send(result);
                        } else {
                            self.held
                                .push_back((self.persisted_gen, waiter.done, result));
                        }
                    }
                }
                Effect::Progress { req, message } => {
                    if let Some(waiter) = self.waiting.get(&req) {
                        // Progress is advisory: drop it rather than block the actor.
                        let _ = waiter.progress.try_send(Event::Progress {
                            done: 0,
                            total: 0,
                            message,
                        });
                    }
                }
                Effect::Emit(event) => self.broadcast(&event),
                Effect::Persist => {} // sent above
                Effect::RefreshInventory => self.refresh_inventory(),
                // A stored permit if the poller is mid-poll: it polls once more, no more.
                Effect::RefreshDemand => self.demand_nudge.notify_one(),
                Effect::LaunchJenkinsNode { node, vm } => {
                    crate::jobs::ci::launch_node(&self.ctx.jenkins, &self.jobs, vm, node);
                }
            }
        }
        let watching = self.world.watches_demand();
        self.demand_watching.send_if_modified(|w| {
            let changed = *w != watching;
            *w = watching;
            changed
        });
    }

    /// Send the held replies whose state has been written.
    pub(super) fn release_held(&mut self) {
        let written = *self.written.borrow_and_update();
        while self
            .held
            .front()
            .is_some_and(|(gen_, _, _)| *gen_ <= written)
        {
            if let Some((_, done, result)) = self.held.pop_front() {
                let _ = done.send(result);
            }
        }
    }

    fn broadcast(&mut self, event: &Event) {
        let before = self.watchers.len();
        self.watchers.retain(|w| w.try_send(event.clone()).is_ok());
        let dropped = before - self.watchers.len();
        if dropped > 0 {
            self.dropped_watchers += dropped as u64;
            tracing::warn!(
                dropped,
                total = self.dropped_watchers,
                "dropped slow event watchers"
            );
        }
    }

    fn spawn_op(&mut self, op: OpId, vm: String, action: Action) {
        let tx = self.completions_tx.clone();
        if let Some(outcome) = self.lifecycle.intercept(&vm, &action) {
            // Reported back like any job: the world sees a busy probe or a refused action.
            tracing::info!(vm = %vm, op = op.0, ?action, ?outcome, "operation answered by the provisioning hold");
            self.jobs.spawn(async move {
                let _ = tx.send(Completion::Op { op, vm, outcome }).await;
            });
            return;
        }
        if let Some(why) = self.transfers.blocks_action(&vm, &action) {
            // Reported back through the channel like any job, never re-entering the world.
            tracing::info!(vm = %vm, op = op.0, ?action, %why, "operation refused");
            self.jobs.spawn(async move {
                let outcome = Outcome::NotRun(format!("not run: {why}"));
                let _ = tx.send(Completion::Op { op, vm, outcome }).await;
            });
            return;
        }
        let ctx = self.ctx.clone();
        let team = self.teams.get(&vm).copied().unwrap_or(Team::Unassigned);
        let span = tracing::info_span!("op", op = op.0, vm = %vm, action = ?action);
        tracing::debug!(parent: &span, "operation started");
        self.jobs.spawn(
            async move {
                let outcome = ctx.run(&vm, team, &action).await;
                match &outcome {
                    Outcome::Failed(err) => tracing::warn!(error = %err, "operation failed"),
                    _ => tracing::debug!(?outcome, "operation done"),
                }
                let _ = tx.send(Completion::Op { op, vm, outcome }).await;
            }
            .instrument(span),
        );
    }
}
