//! The daemon's periodic side tasks, started next to the actor and stopped with the server:
//! the fleet heartbeat (`heartbeat`, writing through [`crate::fleet`]), the metrics textfile
//! (`textfile`, the text of [`crate::metrics`]) and the demand poller (`demand`, the sources
//! of [`crate::demand`]). All three run on one loop (`every`: a round at once, then every
//! interval until the shutdown). Each talks to the actor only through its [`DaemonHandle`]
//! (queries and the `Demand` command), so none can block it. A reload (SIGHUP) that changes
//! what they are built from ([`inputs_changed`]) stops them and starts them again with the
//! new config; otherwise they keep running undisturbed.

#[cfg(feature = "ci")]
mod demand;
mod every;
#[cfg(feature = "s3")]
mod heartbeat;
mod textfile;

#[cfg(feature = "ci")]
use demand::Sources;

#[cfg(any(feature = "s3", feature = "ci"))]
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::actor::DaemonHandle;
use crate::config::Config;

/// The bucket reader for `FleetList` and the heartbeat (None without `[fleet]`).
#[cfg(feature = "s3")]
pub fn fleet_reader(config: &Config) -> Option<Arc<crate::fleet::FleetReader>> {
    config.fleet.as_ref().map(|section| {
        Arc::new(crate::fleet::FleetReader::new(
            config.images.clone(),
            section.clone(),
        ))
    })
}

/// Whether the side tasks must be restarted to apply `new`: a section they are built from
/// changed (`[demand]` with the `[github]`/`[jenkins]` clients it polls through, `[fleet]`
/// with the `[images]` bucket it writes to and the state file it reads, `[metrics]`).
pub fn inputs_changed(old: &Config, new: &Config) -> bool {
    let fleet = old.fleet.is_some() || new.fleet.is_some();
    let demand = old.demand.is_some() || new.demand.is_some();
    let fleet_inputs = old.daemon.state_file != new.daemon.state_file;
    // The bucket exists only with feature `s3` (without it there is no heartbeat either).
    #[cfg(feature = "s3")]
    let fleet_inputs = fleet_inputs || old.images != new.images;
    old.fleet != new.fleet
        || old.metrics != new.metrics
        || old.demand != new.demand
        || fleet && fleet_inputs
        || demand && (old.github != new.github || old.jenkins != new.jenkins)
}

/// Start the configured tasks; they end when `shutdown` is cancelled. `runners`: the ROOT
/// runner lifecycle, whose GitHub client (and token) the demand poller shares.
pub fn spawn(
    config: &Config,
    handle: &DaemonHandle,
    #[cfg(feature = "s3")] fleet: Option<Arc<crate::fleet::FleetReader>>,
    #[cfg(feature = "ci")] runners: Option<Arc<crate::runners::RunnerLifecycle>>,
    shutdown: &CancellationToken,
) -> TaskTracker {
    let tasks = TaskTracker::new();
    #[cfg(feature = "s3")]
    if let Some(reader) = fleet {
        tracing::info!(
            bucket = %config.images.bucket,
            prefix = %reader.section().prefix,
            interval = %humantime::format_duration(reader.section().interval),
            "fleet heartbeat enabled"
        );
        let task = heartbeat::HeartbeatTask {
            handle: handle.clone(),
            writer: crate::fleet::HeartbeatWriter::new(reader),
            state_file: config.daemon.state_file.clone(),
        };
        tasks.spawn(every::run(task, shutdown.clone()).instrument(tracing::info_span!("fleet")));
    }
    if let Some(metrics) = &config.metrics
        && let Some(path) = &metrics.textfile
    {
        tracing::info!(path = %path.display(), "metrics textfile enabled");
        let task = textfile::Textfile {
            handle: handle.clone(),
            path: path.clone(),
            interval: metrics.interval,
        };
        tasks.spawn(every::run(task, shutdown.clone()).instrument(tracing::info_span!("metrics")));
    }
    #[cfg(feature = "ci")]
    if let Some(demand) = &config.demand {
        let sources = demand_sources(config, demand, runners);
        if sources.github.is_some() || sources.jenkins.is_some() {
            tracing::info!(
                github = sources.github.is_some(),
                jenkins = sources.jenkins.is_some(),
                interval = %humantime::format_duration(demand.interval),
                "demand sources enabled"
            );
            let task = demand::DemandPoll::new(handle.clone(), demand.clone(), sources);
            tasks.spawn(
                every::run(task, shutdown.clone()).instrument(tracing::info_span!("demand")),
            );
        }
    }
    tasks.close();
    tasks
}

/// Build the sources: GitHub through the runner lifecycle's client (its token may still be
/// loading: polls fail and are retried meanwhile), Jenkins with its own client; a source
/// whose client cannot be built is left out and logged, so the daemon still runs its VMs.
#[cfg(feature = "ci")]
fn demand_sources(
    config: &Config,
    demand: &crate::demand::DemandSection,
    runners: Option<Arc<crate::runners::RunnerLifecycle>>,
) -> Sources {
    let mut sources = Sources::default();
    if demand.github
        && let Some(section) = &config.github
    {
        match runners {
            Some(lifecycle) => {
                let repos = if demand.repos.is_empty() {
                    section.repo.iter().cloned().collect()
                } else {
                    demand.repos.clone()
                };
                let boot_window = crate::demand::runners::boot_window(
                    section.request_timeout,
                    config.prlctl.start_timeout,
                    config.scheduler.ready_timeout,
                );
                sources.github = Some(
                    crate::demand::github::GithubDemand::new(
                        lifecycle.client(),
                        repos,
                        demand.max_runs,
                    )
                    .with_fleet(crate::demand::github::FleetView {
                        lifecycle,
                        boot_window,
                    }),
                );
            }
            None => tracing::error!("github demand source disabled: no [github] runner lifecycle"),
        }
    }
    if demand.jenkins
        && let Some(section) = &config.jenkins
    {
        match crate::demand::jenkins::client(section) {
            Ok(client) => sources.jenkins = Some(Arc::new(client)),
            Err(err) => tracing::error!(
                error = %crate::error::error_chain(&err).join(": "),
                "jenkins demand source disabled"
            ),
        }
    }
    sources
}
