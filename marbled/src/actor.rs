//! The one task that owns all daemon state ([`Supervisor`]) and the handle connections use to
//! reach it ([`DaemonHandle`]).
//!
//! The supervisor holds the scheduler [`World`] and loops over: job completions, commands
//! from connections, the scheduler's next deadline, the periodic inventory refresh, and
//! shutdown. It never awaits slow I/O: every `Effect::Run` becomes a job on a
//! [`TaskTracker`] that reports back through the bounded completions channel; state writes go
//! to a persister task through a `watch` channel (latest state wins, so a burst of changes
//! costs one write).
//!
//! A mutation is acknowledged only once it is on disk: every state sent to the persister
//! carries a generation number, the persister reports the generation it has written, and a
//! reply waits (in `held`) until the state it acknowledges is durable. Otherwise `kill -9`
//! right after `marblectl lock` returned 0 could lose the lock the operator was told about.
//!
//! The `select!` is `biased` with shutdown first (a stop request must win over a busy
//! stream of commands) and completions before commands (finishing work frees capacity and
//! unblocks waiting clients; a flood of new commands must not starve it).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use marble_proto::{
    ErrorKind, Event, LockTarget, Reply, Request, Response, StatusReport, Team, UnlockTarget,
    WireError,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::demand::JenkinsDemand;
use crate::jobs::JobContext;
use crate::lifecycle::{HostSection, Lifecycle, LifecycleEvent};
use crate::sched::{
    Action, Command, DemandSnapshot, Effect, Input, ObservedVm, OpId, Outcome, Persisted, ReqId,
    SchedConfig, World,
};
use crate::transfers::{SubmitEnv, TransferEvent, Transfers};

/// Commands queued from connections to the actor. Bounded so a flood of clients applies
/// back-pressure instead of growing memory.
pub const COMMAND_CAPACITY: usize = 256;
/// Completed jobs waiting for the actor.
pub const COMPLETION_CAPACITY: usize = 256;
/// Events buffered per `events --follow` subscriber before it is dropped as too slow.
pub const WATCHER_CAPACITY: usize = 1024;
/// Progress messages buffered per waiting request (extra ones are dropped, never blocking).
pub const PROGRESS_CAPACITY: usize = 32;

/// Milliseconds since the unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A request waiting for the scheduler's answer.
struct Waiter {
    progress: mpsc::Sender<Event>,
    done: oneshot::Sender<Result<Response, WireError>>,
}

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
enum ActorCommand {
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
    #[cfg(feature = "s3")]
    SetFleet(Option<Arc<crate::fleet::FleetReader>>),
    /// Fresh answers from the demand sources (`crate::demand`).
    Demand {
        github: Option<Box<DemandSnapshot>>,
        jenkins: Option<JenkinsDemand>,
        quota: Option<crate::demand::PollQuota>,
        offline: Option<crate::demand::OfflineSeen>,
    },
}

/// Cloneable handle to the actor.
#[derive(Clone, Debug)]
pub struct DaemonHandle {
    tx: mpsc::Sender<ActorCommand>,
    next_req: Arc<AtomicU64>,
    /// Rung when the scheduler asks for a fresh demand snapshot (`Effect::RefreshDemand`).
    demand_nudge: Arc<tokio::sync::Notify>,
    /// Whether the scheduler wants new queued runs seen at once (`World::watches_demand`).
    demand_watching: watch::Receiver<bool>,
}

impl std::fmt::Debug for ActorCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ActorCommand::Query { .. } => "Query",
            ActorCommand::Submit { .. } => "Submit",
            ActorCommand::Cancel { .. } => "Cancel",
            ActorCommand::Watch { .. } => "Watch",
            ActorCommand::Reconfigure { .. } => "Reconfigure",
            #[cfg(feature = "s3")]
            ActorCommand::SetFleet(_) => "SetFleet",
            ActorCommand::Demand { .. } => "Demand",
        })
    }
}

fn gone() -> WireError {
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

    /// Answer `FleetList` from this bucket reader from now on (a reload changed `[fleet]`).
    #[cfg(feature = "s3")]
    pub async fn set_fleet(&self, fleet: Option<Arc<crate::fleet::FleetReader>>) {
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

/// Result of a job, reported back to the actor.
enum Completion {
    Op {
        op: OpId,
        vm: String,
        outcome: Outcome,
    },
    Inventory(Result<Vec<ObservedVm>, String>),
    /// An image transfer job reports (`crate::transfers`).
    Transfer(TransferEvent),
    /// A create, provision or host-check job reports (`crate::lifecycle`).
    Lifecycle(LifecycleEvent),
}

/// `vm create`, `vm provision`, `host check` (`crate::lifecycle`), with access to the
/// supervisor's state.
#[path = "lifecycle/actor_glue.rs"]
mod lifecycle_glue;

/// Static facts the actor reports in `status`.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Daemon build version.
    pub version: String,
    /// Host name.
    pub host: String,
}

/// A terminal answer waiting for the state file to catch up with it.
type HeldReply = (
    u64,
    oneshot::Sender<Result<Response, WireError>>,
    Result<Response, WireError>,
);

/// The state owner.
pub struct Supervisor {
    world: World,
    ctx: JobContext,
    identity: Identity,
    commands: mpsc::Receiver<ActorCommand>,
    completions_tx: mpsc::Sender<Completion>,
    completions: mpsc::Receiver<Completion>,
    jobs: TaskTracker,
    waiting: HashMap<ReqId, Waiter>,
    watchers: Vec<mpsc::Sender<Event>>,
    /// Events dropped because a watcher was too slow (it is disconnected).
    dropped_watchers: u64,
    /// States for the persister, with their generation.
    persist: watch::Sender<(u64, Persisted)>,
    /// Generation of the last state handed to the persister.
    persisted_gen: u64,
    /// Generation the persister has written (or failed to write, logged there).
    written: watch::Receiver<u64>,
    /// Replies waiting for their state to be written: (generation, reply, answer).
    held: VecDeque<HeldReply>,
    teams: HashMap<String, Team>,
    refresh_in_flight: bool,
    refresh_again: bool,
    /// Inventory refreshes spawned, and the number of the last one that completed.
    refreshes_spawned: u64,
    refreshes_done: u64,
    /// A transfer changed the VM set: transfer requests (whose name checks read the
    /// inventory) wait until refresh number `settle_at` has completed. Without this a pull
    /// right after a push saw the push's deleted clone as still registered.
    settle_at: u64,
    deferred_transfers: Vec<ActorCommand>,
    next_refresh: Instant,
    inventory_ms: u64,
    /// Image transfers and the VMs they hold.
    transfers: Transfers,
    /// VMs being created and the provisioning hold.
    lifecycle: Lifecycle,
    /// `[host]` (create and provision settings).
    host_cfg: Arc<HostSection>,
    /// Environment for Parallels tools other than prlctl (`prlsrvctl`): prlctl's.
    tool_env: Arc<Vec<(String, String)>>,
    /// The Jenkins queue as last polled (metrics only).
    jenkins_queue: Option<JenkinsDemand>,
    /// GitHub's rate limit as the last poll saw it (metrics only).
    github_quota: Option<crate::demand::PollQuota>,
    /// Offline runners the last GitHub poll did not count (`CiStatus`, metrics).
    github_offline: Option<crate::demand::OfflineSeen>,
    /// Shared with the demand poller (see [`DaemonHandle::demand_nudge`]).
    demand_nudge: Arc<tokio::sync::Notify>,
    /// See [`DaemonHandle::demand_watching`].
    demand_watching: watch::Sender<bool>,
    /// `[fleet]` heartbeat reader for `FleetList` (None: not configured).
    #[cfg(feature = "s3")]
    fleet: Option<Arc<crate::fleet::FleetReader>>,
    shutdown: CancellationToken,
}

impl Supervisor {
    /// Build the actor and its handle. `persist` receives every state to write with its
    /// generation (starting at 1); `written` reports the last generation written.
    pub fn new(
        world: World,
        ctx: JobContext,
        identity: Identity,
        persist: watch::Sender<(u64, Persisted)>,
        written: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) -> (Self, DaemonHandle) {
        let (tx, commands) = mpsc::channel(COMMAND_CAPACITY);
        let (completions_tx, completions) = mpsc::channel(COMPLETION_CAPACITY);
        let demand_nudge = Arc::new(tokio::sync::Notify::new());
        let (demand_watching, demand_watching_rx) = watch::channel(world.watches_demand());
        let supervisor = Self {
            world,
            ctx,
            identity,
            commands,
            completions_tx,
            completions,
            jobs: TaskTracker::new(),
            waiting: HashMap::new(),
            watchers: Vec::new(),
            dropped_watchers: 0,
            persist,
            persisted_gen: 0,
            written,
            held: VecDeque::new(),
            teams: HashMap::new(),
            refresh_in_flight: false,
            refresh_again: false,
            refreshes_spawned: 0,
            refreshes_done: 0,
            settle_at: 0,
            deferred_transfers: Vec::new(),
            next_refresh: Instant::now(),
            inventory_ms: 0,
            // Interrupted at shutdown rather than holding it for the whole budget: pushes
            // and pulls resume without resending finished parts.
            transfers: Transfers::new(shutdown.child_token()),
            lifecycle: Lifecycle::default(),
            host_cfg: Arc::new(HostSection::default()),
            tool_env: Arc::new(Vec::new()),
            jenkins_queue: None,
            github_quota: None,
            github_offline: None,
            demand_nudge: Arc::clone(&demand_nudge),
            demand_watching,
            #[cfg(feature = "s3")]
            fleet: None,
            shutdown,
        };
        (
            supervisor,
            DaemonHandle {
                tx,
                next_req: Arc::new(AtomicU64::new(1)),
                demand_nudge,
                demand_watching: demand_watching_rx,
            },
        )
    }

    /// Use `[host]` settings for `vm create` / `vm provision` (default: built-in defaults),
    /// and `tool_env` (prlctl's cleared-and-set environment) for `prlsrvctl`.
    #[must_use]
    pub fn with_host_config(mut self, host: HostSection, tool_env: Vec<(String, String)>) -> Self {
        self.host_cfg = Arc::new(host);
        self.tool_env = Arc::new(tool_env);
        self
    }

    /// Answer `FleetList` from this bucket reader.
    #[cfg(feature = "s3")]
    #[must_use]
    pub fn with_fleet(mut self, fleet: Option<Arc<crate::fleet::FleetReader>>) -> Self {
        self.fleet = fleet;
        self
    }

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

    fn on_completion(&mut self, done: Completion) {
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

    fn on_command(&mut self, cmd: ActorCommand) {
        match cmd {
            ActorCommand::Query { request, reply } => {
                let _ = reply.send(self.query(&request));
            }
            ActorCommand::Submit {
                req,
                caller,
                request: Request::FleetList,
                waiter,
            } => {
                tracing::debug!(req = req.0, user = %caller, "request: fleet_list");
                #[cfg(feature = "s3")]
                crate::fleet::spawn_list(&self.jobs, self.fleet.clone(), waiter.done);
                #[cfg(not(feature = "s3"))]
                let _ = waiter.done.send(Err(WireError::new(
                    ErrorKind::Unsupported,
                    "this marbled was built without S3 support",
                )));
            }
            cmd @ ActorCommand::Submit { .. } if self.defers_transfer(&cmd) => {
                self.deferred_transfers.push(cmd);
            }
            ActorCommand::Submit {
                req,
                caller,
                request,
                waiter,
            } if Transfers::handles(&request) => {
                tracing::info!(req = req.0, user = %caller, kind = request.kind(), "request");
                let world = &self.world;
                let resolve = |vm: &str| world.resolve(vm);
                let env = SubmitEnv {
                    jobs: &self.jobs,
                    ctx: &self.ctx,
                    host: &self.identity.host,
                    vms: world.vms(now_ms()),
                    resolve: &resolve,
                    report: self.completions_tx.clone(),
                    wrap: Completion::Transfer,
                };
                self.transfers
                    .submit(env, caller, &request, waiter.progress, waiter.done);
            }
            ActorCommand::Submit {
                req,
                caller,
                request,
                waiter,
            } if lifecycle_glue::handles(&request) => {
                self.submit_lifecycle(req, &caller, request, waiter);
            }
            ActorCommand::Submit {
                req,
                caller,
                request,
                waiter,
            } => match self.to_command(&request) {
                Ok(cmd) if let Some(err) = self.lifecycle.refuse_command(&cmd) => {
                    tracing::info!(req = req.0, user = %caller, kind = request.kind(), error = %err, "refused: provisioning");
                    let _ = waiter.done.send(Err(err));
                }
                Ok(cmd) if let Some(err) = self.transfers.refuse_command(&cmd) => {
                    tracing::info!(req = req.0, user = %caller, kind = request.kind(), error = %err, "refused: image transfer");
                    let _ = waiter.done.send(Err(err));
                }
                Ok(cmd) => {
                    tracing::info!(req = req.0, user = %caller, kind = request.kind(), "request");
                    #[cfg(feature = "ci")]
                    self.mirror_drain_to_jenkins(&cmd, &caller);
                    self.waiting.insert(req, waiter);
                    let effects = self
                        .world
                        .handle(now_ms(), Input::Command { req, caller, cmd });
                    self.apply(effects);
                }
                Err(err) => {
                    let _ = waiter.done.send(Err(err));
                }
            },
            ActorCommand::Cancel { req } => {
                if self.waiting.remove(&req).is_some() {
                    let effects = self.world.handle(now_ms(), Input::Cancelled { req });
                    self.apply(effects);
                }
            }
            ActorCommand::Watch { events } => self.watchers.push(events),
            ActorCommand::Demand {
                github,
                jenkins,
                quota,
                offline,
            } => {
                if jenkins.is_some() {
                    self.jenkins_queue = jenkins;
                }
                if quota.is_some() {
                    self.github_quota = quota;
                }
                if offline.is_some() {
                    self.github_offline = offline;
                }
                if let Some(mut snapshot) = github {
                    self.keep_jobs_started_here(&mut snapshot);
                    let effects = self.world.handle(now_ms(), Input::Demand(*snapshot));
                    self.apply(effects);
                }
            }
            #[cfg(feature = "s3")]
            ActorCommand::SetFleet(fleet) => self.fleet = fleet,
            ActorCommand::Reconfigure { sched, ctx } => {
                tracing::info!("configuration reloaded");
                self.world.reconfigure(*sched);
                self.ctx = ctx;
                self.refresh_inventory();
            }
        }
    }

    /// Narrow the snapshot's running jobs with a runner to those whose runner is the current
    /// registration of one of this host's VMs (the job waits the metrics count).
    fn keep_jobs_started_here(&self, snapshot: &mut DemandSnapshot) {
        #[cfg(feature = "ci")]
        if let Some(runners) = &self.ctx.runners {
            // The last inventory's teams: no status report built for every snapshot.
            let ours: std::collections::HashSet<String> = self
                .teams
                .iter()
                .filter(|(_, team)| **team == Team::Root)
                .filter_map(|(vm, _)| runners.records().get(vm))
                .map(|record| record.name)
                .collect();
            snapshot
                .started_here
                .retain(|job| ours.contains(&job.runner));
            return;
        }
        // No runner registrations of our own: no job is known to be this host's.
        snapshot.started_here.clear();
    }

    fn query(&self, request: &Request) -> Result<Response, WireError> {
        let now = now_ms();
        match request {
            Request::Status => Ok(Response::Status(self.status(now))),
            Request::ListVms => Ok(Response::Vms(self.world.vms(now))),
            Request::Metrics => Ok(Response::Metrics {
                text: crate::metrics::render(self.metrics_snapshot(now)),
            }),
            Request::CiStatus => Ok(Response::Ci(self.ci_report())),
            Request::ShowVm { vm } => {
                let name = self.resolve(vm)?;
                self.world
                    .vms(now)
                    .into_iter()
                    .find(|v| v.name == name)
                    .map(Response::Vm)
                    .ok_or_else(|| self.not_found(vm))
            }
            other => Err(WireError::new(
                ErrorKind::Internal,
                format!("{} is not a query", other.kind()),
            )),
        }
    }

    /// What the metrics show now, as plain data for [`crate::metrics::render`].
    fn metrics_snapshot(&self, now: u64) -> crate::metrics::Snapshot {
        let transfers = self.transfers.metrics();
        let demand = self.world.demand();
        crate::metrics::Snapshot {
            status: self.status(now),
            counters: self.world.counters().clone(),
            transfers: crate::metrics::TransferCounts {
                bytes_sent: transfers.bytes_sent,
                bytes_received: transfers.bytes_received,
                kinds: (transfers.kinds.into_iter())
                    .map(|k| crate::metrics::TransferKind {
                        kind: k.kind,
                        running: k.running,
                        ok: k.ok,
                        failed: k.failed,
                    })
                    .collect(),
            },
            queued_jobs: demand.root_jobs.clone(),
            free_runners: demand.free_runners.len() as u64,
            ci_systems: self.ci_report().systems,
            offline_runner_kinds: (self.github_offline.as_ref())
                .map(|seen| seen.runners.iter().map(|r| r.kind.clone()).collect()),
            github_quota: self.github_quota.map(|q| crate::metrics::GithubQuota {
                remaining: q.seen.remaining,
                spent: q.seen.spent,
                next_poll: q.next_poll,
            }),
            jenkins: (self.jenkins_queue.as_ref()).map(|j| j.by_label.clone()),
            now_ms: now,
        }
    }

    /// The CI side for `CiStatus` and the metrics: `[github]`'s token, and the offline
    /// runners the last poll did not count.
    fn ci_report(&self) -> marble_proto::CiReport {
        /// Entries sent; `offline_total` counts the rest (an org can have hundreds).
        const MAX_LISTED: usize = 50;
        #[cfg_attr(not(feature = "ci"), allow(unused_mut))]
        let mut systems = Vec::new();
        #[cfg(feature = "ci")]
        if let Some(runners) = &self.ctx.runners {
            let token = runners.token_status();
            systems.push(marble_proto::CiSystem {
                system: "github".into(),
                available: token.available,
                reason: token.reason,
                since_ms: token.since_ms,
                next_try_ms: token.next_try_ms,
            });
        }
        let (offline_runners, offline_total, polled_ms) = match &self.github_offline {
            Some(seen) => (
                seen.runners.iter().take(MAX_LISTED).cloned().collect(),
                u32::try_from(seen.runners.len()).unwrap_or(u32::MAX),
                seen.polled_ms,
            ),
            None => (Vec::new(), 0, 0),
        };
        marble_proto::CiReport {
            systems,
            offline_runners,
            offline_total,
            polled_ms,
        }
    }

    fn status(&self, now: u64) -> StatusReport {
        let mut report = self.world.status(now);
        report.daemon_version.clone_from(&self.identity.version);
        report.host.clone_from(&self.identity.host);
        if report.inventory_ms == 0 {
            report.inventory_ms = self.inventory_ms;
        }
        report
    }

    fn not_found(&self, vm: &str) -> WireError {
        let known = self.world.vm_names();
        let list = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        WireError::new(
            ErrorKind::NotFound,
            format!("unknown VM {vm:?}; known VMs: {list}"),
        )
    }

    fn resolve(&self, vm: &str) -> Result<String, WireError> {
        self.world.resolve(vm).ok_or_else(|| self.not_found(vm))
    }

    /// Translate a mutating request into a scheduler command, resolving VM names.
    fn to_command(&self, request: &Request) -> Result<Command, WireError> {
        Ok(match request {
            Request::StartVm { vm } => Command::StartVm {
                vm: self.resolve(vm)?,
            },
            Request::StopVm { vm, force } => Command::StopVm {
                vm: self.resolve(vm)?,
                force: *force,
            },
            Request::RequestSlot { vm, wait_ms } => Command::RequestSlot {
                vm: self.resolve(vm)?,
                wait_ms: *wait_ms,
            },
            Request::Pause { reason } => Command::Pause {
                reason: reason.clone(),
            },
            Request::Resume => Command::Resume,
            Request::Lock { target, reason } => Command::Lock {
                target: match target {
                    LockTarget::Vm(vm) => LockTarget::Vm(self.resolve(vm)?),
                    LockTarget::AllExcept(vm) => LockTarget::AllExcept(self.resolve(vm)?),
                },
                reason: reason.clone(),
            },
            Request::Unlock { target } => Command::Unlock {
                target: match target {
                    UnlockTarget::Vm(vm) => UnlockTarget::Vm(self.resolve(vm)?),
                    UnlockTarget::All => UnlockTarget::All,
                },
            },
            Request::Drain { reason, wait_ms } => Command::Drain {
                reason: reason.clone(),
                wait_ms: *wait_ms,
            },
            Request::Status
            | Request::ListVms
            | Request::ShowVm { .. }
            | Request::WatchEvents
            | Request::ImagePush { .. }
            | Request::ImagePull { .. }
            | Request::ImageList { .. }
            | Request::ImageRemove { .. }
            | Request::ImageVerify { .. }
            | Request::Transfers
            | Request::CreateVm { .. }
            | Request::ProvisionVm { .. }
            | Request::HostCheck
            | Request::FleetList
            | Request::Metrics
            | Request::CiStatus => {
                return Err(WireError::new(
                    ErrorKind::Internal,
                    format!("{} is not a scheduler command", request.kind()),
                ));
            }
        })
    }

    /// `drain` marks the SPI VMs' Jenkins nodes temporarily offline, `resume` clears the
    /// mark (a job: the actor never waits on Jenkins).
    #[cfg(feature = "ci")]
    fn mirror_drain_to_jenkins(&mut self, cmd: &Command, caller: &str) {
        let Some(jenkins) = self.ctx.jenkins.clone() else {
            return;
        };
        let (offline, message) = match cmd {
            Command::Drain { reason, .. } => (true, format!("MARBLE drain by {caller}: {reason}")),
            Command::Resume => (false, String::new()),
            _ => return,
        };
        let vms: Vec<String> = self
            .world
            .vms(now_ms())
            .into_iter()
            .filter(|vm| vm.team == Team::Spi)
            .map(|vm| vm.name)
            .collect();
        self.jobs.spawn(
            async move { jenkins.set_nodes_offline(&vms, offline, &message).await }
                .instrument(tracing::info_span!("jenkins-drain")),
        );
    }

    fn apply(&mut self, effects: Vec<Effect>) {
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
    fn release_held(&mut self) {
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

    /// Whether every refresh a finished transfer asked for has completed.
    fn inventory_settled(&self) -> bool {
        self.refreshes_done >= self.settle_at
    }

    /// A transfer request arriving while the inventory does not yet show a finished
    /// transfer's clone deletion or registration waits for that refresh.
    fn defers_transfer(&self, cmd: &ActorCommand) -> bool {
        matches!(cmd, ActorCommand::Submit { request, .. } if Transfers::handles(request))
            && !self.inventory_settled()
    }

    fn refresh_inventory(&mut self) {
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

/// Map a streamed reply body for a connection.
pub fn progress_event(event: Event) -> Reply {
    Reply::Event(event)
}
