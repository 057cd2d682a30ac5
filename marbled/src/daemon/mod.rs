//! Wiring: builds the [`Parts`] (hypervisor, job context, store, side-task inputs), the
//! world, actor, persister and server from a [`Config`] and runs them until shutdown, then
//! drains in the documented order:
//!
//! 1. stop accepting connections; in-flight requests are answered (or get `Unavailable`);
//! 2. stop the actor, which answers waiting clients and waits for jobs up to the budget
//!    (a `prlctl` in the middle of an operation is not killed by default);
//! 3. flush the state file;
//! 4. return, so the caller drops the socket guard (removing the socket) and exits 0.
//!
//! [`run`] takes an already-bound listener so launchd socket activation stays a cheap
//! later step, and so tests bind first and never need to sleep-and-retry.

mod parts;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use self::parts::{Parts, host_name, hypervisor, tool_env};
use crate::actor::{DaemonHandle, Identity, Supervisor};
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::DaemonError;
use crate::peer::AccessPolicy;
use crate::sched::{Persisted, World};
use crate::store::Store;

/// The running daemon's tasks and what a reload changes.
struct Running {
    parts: Parts,
    config: Config,
    handle: DaemonHandle,
    policy: Arc<RwLock<AccessPolicy>>,
    side: SideTasks,
}

/// The periodic side tasks ([`crate::periodic`]) and the token that stops them.
struct SideTasks {
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// The actor's task and the token that stops it.
struct Actor {
    task: JoinHandle<Persisted>,
    stop: CancellationToken,
}

/// Run the daemon on `listener` until `shutdown` is cancelled. New configs arriving on
/// `reload` (SIGHUP) update the reloadable fields: scheduler timings and policy, probes,
/// teams, admin users and prlctl settings; a changed `[demand]`, `[fleet]` or `[metrics]`
/// restarts the side tasks with it. The socket, state file and log file are not
/// reloadable (restart for those).
pub async fn run(
    config: Config,
    listener: UnixListener,
    mut reload: mpsc::Receiver<Config>,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let parts = Parts::from_config(&config, None, &shutdown).await?;
    let store = parts.store.clone();
    let world = restore_world(&store, &config)?;
    let budget = config.daemon.shutdown_budget;
    let (persister, persist_tx, written_rx) = spawn_persister(&store, &world);
    let identity = Identity {
        version: crate::server::VERSION.to_owned(),
        host: parts.host.clone(),
    };
    let (actor, handle) = spawn_actor(world, &config, &parts, &identity, persist_tx, written_rx);
    let policy = Arc::new(RwLock::new(parts.access_policy(&config)));
    let server = tokio::spawn(crate::server::serve(
        listener,
        handle.clone(),
        policy.clone(),
        shutdown.clone(),
    ));
    let side = SideTasks::spawn(&config, &handle, &parts, &shutdown);
    tracing::info!(version = %identity.version, host = %identity.host, socket = %config.daemon.socket.display(), "marbled started");
    let mut running = Running {
        parts,
        config,
        handle,
        policy,
        side,
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(new) = reload.recv() => running.reload(new, &shutdown).await,
        }
    }
    drain(budget, server, running.side, actor, persister, store).await;
    Ok(())
}

/// The state file's world, reconciled with the hypervisor at the first inventory; a new
/// world without one.
fn restore_world(store: &Store, config: &Config) -> Result<World, DaemonError> {
    let now = now_ms();
    Ok(match store.load()? {
        Some(persisted) => {
            tracing::info!(path = %store.path().display(), "restored state; reconciling with the hypervisor");
            World::restore(config.sched_config(), persisted, now)
        }
        None => World::new(config.sched_config(), now),
    })
}

/// Start the persister for `store`; returns its task, the sender of states to write and the
/// receiver of the generation written.
fn spawn_persister(
    store: &Store,
    world: &World,
) -> (
    JoinHandle<()>,
    watch::Sender<(u64, Persisted)>,
    watch::Receiver<u64>,
) {
    let (persist_tx, persist_rx) = watch::channel((0, world.persisted()));
    let (written_tx, written_rx) = watch::channel(0);
    let persister = tokio::spawn(
        persist_loop(store.clone(), persist_rx, written_tx)
            .instrument(tracing::debug_span!("persister")),
    );
    (persister, persist_tx, written_rx)
}

/// Start the actor on `world` with `parts`; it gets most of the shutdown budget for its
/// jobs, the rest is for flushing.
fn spawn_actor(
    world: World,
    config: &Config,
    parts: &Parts,
    identity: &Identity,
    persist: watch::Sender<(u64, Persisted)>,
    written: watch::Receiver<u64>,
) -> (Actor, DaemonHandle) {
    let stop = CancellationToken::new();
    let (supervisor, handle) = Supervisor::new(
        world,
        parts.ctx.clone(),
        identity.clone(),
        persist,
        written,
        stop.clone(),
    );
    let supervisor = supervisor
        .with_host_config(config.host.clone(), tool_env(config))
        .with_fleet(parts.fleet.clone());
    let task = tokio::spawn(
        supervisor
            .run(config.daemon.shutdown_budget.mul_f32(0.8))
            .instrument(tracing::info_span!("actor")),
    );
    (Actor { task, stop }, handle)
}

impl Running {
    /// Apply a new config (SIGHUP): new parts for the actor, the admin users, and the side
    /// tasks restarted when their inputs changed.
    async fn reload(&mut self, new: Config, shutdown: &CancellationToken) {
        let parts = match Parts::from_config(&new, Some(&self.parts), shutdown).await {
            Ok(parts) => parts,
            Err(err) => {
                tracing::error!(error = %crate::chain::ErrorChain(&err), "new config unusable; keeping the running one");
                return;
            }
        };
        self.handle
            .reconfigure(new.sched_config(), parts.ctx.clone())
            .await;
        if let Ok(mut p) = self.policy.write() {
            *p = parts.access_policy(&new);
        }
        if crate::periodic::inputs_changed(&self.config, &new) {
            self.side.stop_for_reload().await;
            self.handle.set_fleet(parts.fleet.clone()).await;
            self.side = SideTasks::spawn(&new, &self.handle, &parts, shutdown);
            tracing::info!(
                "side tasks ([demand], [fleet], [metrics]) restarted with the new config"
            );
        }
        self.parts = parts;
        self.config = new;
    }
}

impl SideTasks {
    /// Start the periodic side tasks for `config` with `parts`' inputs (the `[fleet]`
    /// reader, the runner lifecycle whose GitHub client the demand poller shares).
    fn spawn(
        config: &Config,
        handle: &DaemonHandle,
        parts: &Parts,
        shutdown: &CancellationToken,
    ) -> SideTasks {
        let stop = shutdown.child_token();
        // The one `cfg` of the wiring: `periodic::spawn` takes each optional input only with
        // its feature (so `parts` is unused in a build with neither).
        let _ = parts;
        let tasks = crate::periodic::spawn(
            config,
            handle,
            #[cfg(feature = "s3")]
            parts.fleet.clone(),
            #[cfg(feature = "ci")]
            parts.ctx.runners.clone(),
            &stop,
        );
        SideTasks { tasks, stop }
    }

    /// Stop the side tasks before their restart, waiting a moment for them.
    async fn stop_for_reload(&self) {
        self.stop.cancel();
        if tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("side tasks slow to stop for the reload; starting the new ones anyway");
        }
    }
}

/// The shutdown drain, within `budget`: connections, side tasks, the actor and its jobs,
/// then the final state write.
async fn drain(
    budget: Duration,
    server: JoinHandle<()>,
    side: SideTasks,
    actor: Actor,
    persister: JoinHandle<()>,
    store: Store,
) {
    tracing::info!(budget = %humantime::format_duration(budget), "shutting down");
    let started = tokio::time::Instant::now();
    if tokio::time::timeout(budget / 4, server).await.is_err() {
        tracing::warn!("connections did not close in time; continuing shutdown");
    }
    // Side tasks stop on `shutdown` at their next await; a heartbeat PUT in flight gets a
    // moment to finish so the object is not left at its previous write for no reason.
    if tokio::time::timeout(Duration::from_secs(2), side.tasks.wait())
        .await
        .is_err()
    {
        tracing::debug!("side tasks still running at shutdown");
    }
    actor.stop.cancel();
    let remaining = budget
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(1));
    let final_state = match tokio::time::timeout(remaining, actor.task).await {
        Ok(Ok(state)) => Some(state),
        Ok(Err(err)) => {
            tracing::error!(error = %err, "actor task failed");
            None
        }
        Err(_) => {
            tracing::error!("actor did not stop within the budget");
            None
        }
    };
    let _ = persister.await;
    if let Some(state) = final_state {
        match tokio::task::spawn_blocking(move || store.save(&state)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(error = %err, "final state write failed"),
            Err(err) => tracing::error!(error = %err, "final state write panicked"),
        }
    }
    tracing::info!("marbled stopped");
}

/// Write each new state, then report its generation on `written` (the actor holds replies
/// until then); ends when the actor drops its sender. A failed write is reported too, so
/// clients are not held forever: the change stands in memory and the error is logged.
async fn persist_loop(
    store: Store,
    mut rx: watch::Receiver<(u64, Persisted)>,
    written: watch::Sender<u64>,
) {
    while rx.changed().await.is_ok() {
        let (generation, state) = rx.borrow_and_update().clone();
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.save(&state)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(error = %err, "cannot persist state"),
            Err(err) => tracing::error!(error = %err, "state writer panicked"),
        }
        written.send_replace(generation);
    }
}
