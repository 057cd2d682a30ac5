//! Wiring: builds the hypervisor, world, actor, persister and server from a [`Config`] and
//! runs them until shutdown, then drains in the documented order:
//!
//! 1. stop accepting connections; in-flight requests are answered (or get `Unavailable`);
//! 2. stop the actor, which answers waiting clients and waits for jobs up to the budget
//!    (a `prlctl` in the middle of an operation is not killed by default);
//! 3. flush the state file;
//! 4. return, so the caller drops the socket guard (removing the socket) and exits 0.
//!
//! [`run`] takes an already-bound listener so launchd socket activation stays a cheap
//! later step, and so tests bind first and never need to sleep-and-retry.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::actor::{Identity, Supervisor, now_ms};
use crate::config::Config;
use crate::error::DaemonError;
use crate::hypervisor::{Hypervisor, Prlctl, PrlctlConfig};
use crate::inventory::TeamMap;
use crate::jobs::JobContext;
use crate::peer::AccessPolicy;
use crate::sched::{Persisted, World};
use crate::socket::resolve_group;
use crate::store::Store;

/// Build the production hypervisor adapter from config.
pub fn hypervisor(config: &Config) -> Arc<dyn Hypervisor> {
    let p = &config.prlctl;
    let defaults = PrlctlConfig::default();
    let mut env = defaults.env.clone();
    env.extend(p.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Arc::new(Prlctl::new(PrlctlConfig {
        path: p.path.clone(),
        default_timeout: p.timeout,
        start_timeout: p.start_timeout,
        stop_timeout: p.stop_timeout,
        max_concurrent: usize::try_from(p.max_concurrent).unwrap_or(1).max(1),
        max_exec_per_vm: usize::try_from(p.max_exec_per_vm).unwrap_or(1).max(1),
        env,
        ..defaults
    }))
}

/// The environment of Parallels' helper tools (`prlsrvctl`): cleared like prlctl's, then
/// prlctl's defaults and `prlctl.env`.
pub fn tool_env(config: &Config) -> Vec<(String, String)> {
    let mut env = PrlctlConfig::default_env();
    env.extend(
        config
            .prlctl
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    env
}

/// The job context for a config.
pub fn job_context(config: &Config, hv: Arc<dyn Hypervisor>) -> JobContext {
    JobContext {
        hv,
        probe: Arc::new(config.probe.clone()),
        teams: Arc::new(TeamMap::new(&config.teams)),
        #[cfg(feature = "s3")]
        images: Arc::new(config.images.clone()),
        // Needs the token and the shared records: `run` adds it with
        // `ci::github::RunnerLifecycle::for_config`.
        #[cfg(feature = "ci")]
        runners: None,
        #[cfg(feature = "ci")]
        jenkins: crate::ci::jenkins::JenkinsNodes::for_config(config),
    }
}

/// The host name to report and to build names from (`<host>-…` VM names, fleet heartbeats,
/// runner names): configured, else the system's, in both cases the short name before the
/// first dot — `gethostname` returns `macphsft01.cern.ch` on CERN hosts, and the seed's names
/// (`macphsft01-ROOT-VM-macOS-15`) use `macphsft01`.
pub fn host_name(config: &Config) -> String {
    let full = if config.daemon.host_name.is_empty() {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default()
    } else {
        config.daemon.host_name.clone()
    };
    match full.split('.').next() {
        Some(short) if !short.is_empty() => short.to_owned(),
        _ => "unknown-host".into(),
    }
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
    let store = Store::new(&config.daemon.state_file);
    let now = now_ms();
    let world = match store.load()? {
        Some(persisted) => {
            tracing::info!(path = %store.path().display(), "restored state; reconciling with the hypervisor");
            World::restore(config.sched_config(), persisted, now)
        }
        None => World::new(config.sched_config(), now),
    };
    let hv = hypervisor(&config);
    #[cfg_attr(not(feature = "ci"), allow(unused_mut))]
    let mut ctx = job_context(&config, hv);
    let identity = Identity {
        version: crate::server::VERSION.to_owned(),
        host: host_name(&config),
    };
    #[cfg(feature = "ci")]
    let runner_records = crate::ci::github::RunnerRecords::default();
    #[cfg(feature = "ci")]
    let mut github_token =
        crate::ci::github::GithubToken::for_config(&config, None, &shutdown).await;
    #[cfg(feature = "ci")]
    {
        ctx.runners = crate::ci::github::RunnerLifecycle::for_config(
            &config,
            &identity.host,
            &runner_records,
            github_token.as_ref(),
        )?;
        if let Some(github) = &config.github {
            tracing::info!(api = %github.api_url, repo = ?github.repo, org = ?github.org, "github runner lifecycle enabled for ROOT VMs");
        }
    }
    #[cfg(feature = "ci")]
    let mut current_runners = ctx.runners.clone();
    let budget = config.daemon.shutdown_budget;

    let (persist_tx, persist_rx) = watch::channel((0, world.persisted()));
    let (written_tx, written_rx) = watch::channel(0);
    let persister = tokio::spawn(
        persist_loop(store.clone(), persist_rx, written_tx)
            .instrument(tracing::debug_span!("persister")),
    );

    let actor_stop = CancellationToken::new();
    let (supervisor, handle) = Supervisor::new(
        world,
        ctx,
        identity.clone(),
        persist_tx,
        written_rx,
        actor_stop.clone(),
    );
    let supervisor = supervisor.with_host_config(config.host.clone(), tool_env(&config));
    #[cfg(feature = "s3")]
    let fleet = crate::periodic::fleet_reader(&config);
    #[cfg(feature = "s3")]
    let supervisor = supervisor.with_fleet(fleet.clone());
    // The actor gets most of the budget for its jobs; the rest is for flushing.
    let actor = tokio::spawn(
        supervisor
            .run(budget.mul_f32(0.8))
            .instrument(tracing::info_span!("actor")),
    );

    let gid = resolve_group(&config.daemon.socket_group)?;
    let policy = Arc::new(RwLock::new(AccessPolicy::new(
        gid,
        config.daemon.admin_users.clone(),
    )));
    let server = tokio::spawn(crate::server::serve(
        listener,
        handle.clone(),
        policy.clone(),
        shutdown.clone(),
    ));
    let mut periodic_stop = shutdown.child_token();
    let mut periodic = crate::periodic::spawn(
        &config,
        &handle,
        #[cfg(feature = "s3")]
        fleet,
        #[cfg(feature = "ci")]
        current_runners.clone(),
        &periodic_stop,
    );
    tracing::info!(version = %identity.version, host = %identity.host, socket = %config.daemon.socket.display(), "marbled started");
    let mut current = config;

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(new) = reload.recv() => {
                let hv = hypervisor(&new);
                #[cfg_attr(not(feature = "ci"), allow(unused_mut))]
                let mut next = job_context(&new, hv);
                #[cfg(feature = "ci")]
                {
                    github_token = crate::ci::github::GithubToken::for_config(&new, github_token.take(), &shutdown).await;
                    next.runners = match crate::ci::github::RunnerLifecycle::for_config(&new, &identity.host, &runner_records, github_token.as_ref()) {
                        Ok(runners) => runners,
                        Err(err) => {
                            // Keep minting with the old settings rather than leave ROOT VMs
                            // without runners (or their stops without the gate).
                            tracing::error!(error = %crate::error::error_chain(&err).join(": "), "[github] of the new config unusable; keeping the previous one");
                            current_runners.clone()
                        }
                    };
                    current_runners = next.runners.clone();
                }
                handle.reconfigure(new.sched_config(), next).await;
                if let Ok(mut p) = policy.write() {
                    *p = AccessPolicy::new(gid, new.daemon.admin_users.clone());
                }
                if crate::periodic::inputs_changed(&current, &new) {
                    periodic_stop.cancel();
                    if tokio::time::timeout(Duration::from_secs(5), periodic.wait()).await.is_err() {
                        tracing::warn!("side tasks slow to stop for the reload; starting the new ones anyway");
                    }
                    periodic_stop = shutdown.child_token();
                    #[cfg(feature = "s3")]
                    let fleet = crate::periodic::fleet_reader(&new);
                    #[cfg(feature = "s3")]
                    handle.set_fleet(fleet.clone()).await;
                    periodic = crate::periodic::spawn(
                        &new,
                        &handle,
                        #[cfg(feature = "s3")]
                        fleet,
                        #[cfg(feature = "ci")]
                        current_runners.clone(),
                        &periodic_stop,
                    );
                    tracing::info!("side tasks ([demand], [fleet], [metrics]) restarted with the new config");
                }
                current = new;
            }
        }
    }

    tracing::info!(budget = %humantime::format_duration(budget), "shutting down");
    let started = tokio::time::Instant::now();
    if tokio::time::timeout(budget / 4, server).await.is_err() {
        tracing::warn!("connections did not close in time; continuing shutdown");
    }
    // Side tasks stop on `shutdown` at their next await; a heartbeat PUT in flight gets a
    // moment to finish so the object is not left at its previous write for no reason.
    if tokio::time::timeout(Duration::from_secs(2), periodic.wait())
        .await
        .is_err()
    {
        tracing::debug!("side tasks still running at shutdown");
    }
    actor_stop.cancel();
    let remaining = budget
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(1));
    let final_state = match tokio::time::timeout(remaining, actor).await {
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
        let store2 = store.clone();
        match tokio::task::spawn_blocking(move || store2.save(&state)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(error = %err, "final state write failed"),
            Err(err) => tracing::error!(error = %err, "final state write panicked"),
        }
    }
    tracing::info!("marbled stopped");
    Ok(())
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

#[cfg(test)]
mod host_name_tests {
    use super::*;

    #[test]
    fn the_host_name_is_the_short_name_before_the_first_dot() {
        let mut config = Config::default();
        config.daemon.host_name = "macphsft01.cern.ch".into();
        assert_eq!(host_name(&config), "macphsft01");
        config.daemon.host_name = "macphsft01".into();
        assert_eq!(host_name(&config), "macphsft01");
        // The system's name (what gethostname returns on a CERN host) is shortened the same way.
        config.daemon.host_name = String::new();
        let system = host_name(&config);
        assert!(!system.is_empty() && !system.contains('.'), "{system:?}");
    }
}
