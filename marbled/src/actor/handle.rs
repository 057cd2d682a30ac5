//! The connection side of the actor: [`DaemonHandle`] (cloneable, wraps the bounded command
//! channel), the [`ActorCommand`]s it sends, and what a submitted request hands back
//! ([`Submitted`]). Nothing here touches the supervisor's state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use marble_proto::{ErrorKind, Event, Reply, Request, Response, WireError};
use tokio::sync::{mpsc, oneshot, watch};

use super::{PROGRESS_CAPACITY, WATCHER_CAPACITY, Waiter};
use crate::demand::JenkinsDemand;
use crate::jobs::JobContext;
use crate::jobs::s3::Fleet;
use crate::sched::{DemandSnapshot, ReqId, SchedConfig};

/// The receiving side of a submitted request.
#[derive(Debug)]
pub struct Submitted {
    /// Id to cancel with.
    pub req: ReqId,
    /// Non-terminal progress events (`Event::Progress`).
    pub progress: mpsc::Receiver<Event>,
    /// The terminal answer.
    pub done: oneshot::Receiver<Result<Response, WireError>>,
}

/// Messages from connection handlers to the actor.
pub(super) enum ActorCommand {
    Query {
        request: Request,
        reply: oneshot::Sender<Result<Response, WireError>>,
    },
    Submit {
        req: ReqId,
        caller: String,
        request: Request,
        waiter: Waiter,
    },
    Cancel {
        req: ReqId,
    },
    Watch {
        events: mpsc::Sender<Event>,
    },
    Reconfigure {
        sched: Box<SchedConfig>,
        ctx: JobContext,
    },
    /// A new `[fleet]` bucket reader after a reload (None: `[fleet]` removed).
    SetFleet(Fleet),
    /// Fresh answers from the demand sources (`crate::demand`).
    Demand {
        github: Option<Box<DemandSnapshot>>,
        jenkins: Option<JenkinsDemand>,
        quota: Option<crate::demand::PollQuota>,
        offline: Option<crate::demand::OfflineSeen>,
    },
    /// The fleet's demand poller changed (`[demand] shared`; None: nobody known).
    DemandPoller(Option<crate::demand::PollerSeen>),
}

/// Cloneable handle to the actor.
#[derive(Clone, Debug)]
pub struct DaemonHandle {
    pub(super) tx: mpsc::Sender<ActorCommand>,
    pub(super) next_req: Arc<AtomicU64>,
    /// Rung when the scheduler asks for a fresh demand snapshot (`Effect::RefreshDemand`).
    pub(super) demand_nudge: Arc<tokio::sync::Notify>,
    /// Whether the scheduler wants new queued runs seen at once (`World::watches_demand`).
    pub(super) demand_watching: watch::Receiver<bool>,
}

impl std::fmt::Debug for ActorCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ActorCommand::Query { .. } => "Query",
            ActorCommand::Submit { .. } => "Submit",
            ActorCommand::Cancel { .. } => "Cancel",
            ActorCommand::Watch { .. } => "Watch",
            ActorCommand::Reconfigure { .. } => "Reconfigure",
            ActorCommand::SetFleet(_) => "SetFleet",
            ActorCommand::Demand { .. } => "Demand",
            ActorCommand::DemandPoller(_) => "DemandPoller",
        })
    }
}

pub(super) fn gone() -> WireError {
    WireError::new(ErrorKind::Unavailable, "marbled is shutting down")
}

impl DaemonHandle {
    /// Notified when the scheduler wants a fresh demand snapshot before the next poll (a
    /// host just became free): the demand poller listens on it.
    pub fn demand_nudge(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.demand_nudge)
    }

    /// Follows whether the scheduler wants new queued runs seen at once (the host is free:
    /// `World::watches_demand`); the demand poller watches GitHub only while it is true.
    pub fn demand_watching(&self) -> watch::Receiver<bool> {
        self.demand_watching.clone()
    }

    /// Answer a read-only request (`Status`, `ListVms`, `ShowVm`).
    pub async fn query(&self, request: Request) -> Result<Response, WireError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(ActorCommand::Query { request, reply })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Submit a request that goes through the scheduler.
    pub async fn submit(&self, caller: &str, request: Request) -> Result<Submitted, WireError> {
        let req = ReqId(self.next_req.fetch_add(1, Ordering::Relaxed));
        let (progress_tx, progress) = mpsc::channel(PROGRESS_CAPACITY);
        let (done_tx, done) = oneshot::channel();
        let waiter = Waiter {
            progress: progress_tx,
            done: done_tx,
        };
        self.tx
            .send(ActorCommand::Submit {
                req,
                caller: caller.to_owned(),
                request,
                waiter,
            })
            .await
            .map_err(|_| gone())?;
        Ok(Submitted {
            req,
            progress,
            done,
        })
    }

    /// The client of `req` went away.
    pub async fn cancel(&self, req: ReqId) {
        let _ = self.tx.send(ActorCommand::Cancel { req }).await;
    }

    /// Subscribe to lifecycle events.
    pub async fn watch(&self) -> Result<mpsc::Receiver<Event>, WireError> {
        let (events, rx) = mpsc::channel(WATCHER_CAPACITY);
        self.tx
            .send(ActorCommand::Watch { events })
            .await
            .map_err(|_| gone())?;
        Ok(rx)
    }

    /// Feed a GitHub demand snapshot to the scheduler (`Input::Demand`) and/or the Jenkins
    /// queue to the metrics; with the snapshot, the offline runners it did not count
    /// (`status`, metrics).
    pub async fn demand(
        &self,
        github: Option<DemandSnapshot>,
        jenkins: Option<JenkinsDemand>,
        quota: Option<crate::demand::PollQuota>,
        offline: Option<crate::demand::OfflineSeen>,
    ) -> Result<(), WireError> {
        self.tx
            .send(ActorCommand::Demand {
                github: github.map(Box::new),
                jenkins,
                quota,
                offline,
            })
            .await
            .map_err(|_| gone())
    }

    /// The fleet's demand poller as the last election step saw it (metrics).
    pub async fn demand_poller(&self, seen: Option<crate::demand::PollerSeen>) {
        let _ = self.tx.send(ActorCommand::DemandPoller(seen)).await;
    }

    /// Answer `FleetList` from this bucket reader from now on (a reload changed `[fleet]`).
    pub async fn set_fleet(&self, fleet: Fleet) {
        let _ = self.tx.send(ActorCommand::SetFleet(fleet)).await;
    }

    /// Apply reloadable configuration (SIGHUP).
    pub async fn reconfigure(&self, sched: SchedConfig, ctx: JobContext) {
        let _ = self
            .tx
            .send(ActorCommand::Reconfigure {
                sched: Box::new(sched),
                ctx,
            })
            .await;
    }
}

/// Map a streamed reply body for a connection.
pub fn progress_event(event: Event) -> Reply {
    Reply::Event(event)
}
