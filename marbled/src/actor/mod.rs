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
//!
//! Layout: `handle` (the connection side: [`DaemonHandle`], commands), `run_loop` (the
//! `select!` and what each wake-up does), `commands` (requests from connections), `queries`
//! (read-only answers), `effects` (applying the scheduler's effects, spawning jobs),
//! `inventory` (refreshes, and the settling transfers wait for), `lifecycle` (`vm create`,
//! `vm provision`, `host check`), `recovery` (requests held until the first inventory, the
//! loud over-capacity and unresolved-operation states).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use marble_proto::{Event, Response, Team, WireError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::HostSection;
use crate::demand::JenkinsDemand;
use crate::jobs::JobContext;
use crate::jobs::s3::Fleet;
use crate::lifecycle::{Lifecycle, LifecycleEvent};
use crate::sched::{ObservedVm, OpId, Outcome, Persisted, ReqId, World};
use crate::transfers::{TransferEvent, Transfers};

mod commands;
mod effects;
mod handle;
mod inventory;
mod lifecycle;
mod queries;
mod recovery;
mod run_loop;
mod runner_install;

use crate::clock::now_ms;
use handle::ActorCommand;
pub use handle::{DaemonHandle, Submitted, progress_event};

/// Commands queued from connections to the actor. Bounded so a flood of clients applies
/// back-pressure instead of growing memory.
pub const COMMAND_CAPACITY: usize = 256;
/// Completed jobs waiting for the actor.
pub const COMPLETION_CAPACITY: usize = 256;
/// Events buffered per `events --follow` subscriber before it is dropped as too slow.
pub const WATCHER_CAPACITY: usize = 1024;
/// Progress messages buffered per waiting request (extra ones are dropped, never blocking).
pub const PROGRESS_CAPACITY: usize = 32;

/// A request waiting for the scheduler's answer.
struct Waiter {
    progress: mpsc::Sender<Event>,
    done: oneshot::Sender<Result<Response, WireError>>,
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
    /// Requests held: transfers until `settle_at`, and every change until the first
    /// inventory (`recovery.rs`); replayed after an inventory.
    deferred_transfers: Vec<ActorCommand>,
    next_refresh: Instant,
    inventory_ms: u64,
    /// When the last over-capacity WARN was logged (None: not over capacity).
    over_capacity_warned: Option<Instant>,
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
    /// The fleet's demand poller (`[demand] shared`; metrics only).
    demand_poller: Option<crate::demand::PollerSeen>,
    /// Shared with the demand poller (see [`DaemonHandle::demand_nudge`]).
    demand_nudge: Arc<tokio::sync::Notify>,
    /// See [`DaemonHandle::demand_watching`].
    demand_watching: watch::Sender<bool>,
    /// `[fleet]` heartbeat reader for `FleetList` (None: not configured).
    fleet: Fleet,
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
            over_capacity_warned: None,
            // Interrupted at shutdown rather than holding it for the whole budget: pushes
            // and pulls resume without resending finished parts.
            transfers: Transfers::new(shutdown.child_token()),
            lifecycle: Lifecycle::default(),
            host_cfg: Arc::new(HostSection::default()),
            tool_env: Arc::new(Vec::new()),
            jenkins_queue: None,
            github_quota: None,
            github_offline: None,
            demand_poller: None,
            demand_nudge: Arc::clone(&demand_nudge),
            demand_watching,
            fleet: Fleet::default(),
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
    #[must_use]
    pub fn with_fleet(mut self, fleet: Fleet) -> Self {
        self.fleet = fleet;
        self
    }
}
