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
#[cfg(all(feature = "ci", feature = "s3"))]
mod fleet_poll;
#[cfg(feature = "s3")]
mod heartbeat;
#[cfg(feature = "ci")]
mod releases;
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
    #[cfg(feature = "ci")] runners: Option<Arc<crate::ci::github::RunnerLifecycle>>,
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
            failures: heartbeat::Repeats::default(),
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
    if let Some(lifecycle) = &runners {
        let task = releases::ReleaseCheck {
            runners: Arc::clone(lifecycle),
            started: false,
        };
        tasks.spawn(
            every::run(task, shutdown.clone()).instrument(tracing::info_span!("runner_releases")),
        );
    }
    #[cfg(feature = "ci")]
    if let Some(demand) = &config.demand {
        let sources = Sources {
            github: crate::ci::github::GithubDemand::for_config(config, runners),
            jenkins: crate::ci::jenkins::JenkinsClient::for_demand(config),
            spi_labels: (config.jenkins.as_ref())
                .map(|j| j.labels.clone())
                .unwrap_or_default(),
        };
        if sources.github.is_some() || sources.jenkins.is_some() {
            tracing::info!(
                github = sources.github.is_some(),
                jenkins = sources.jenkins.is_some(),
                interval = %humantime::format_duration(demand.interval),
                "demand sources enabled"
            );
            let task = demand::DemandPoll::new(handle.clone(), demand.clone(), sources);
            // `[demand] shared`: one host per fleet polls (validation requires `[fleet]`).
            #[cfg(feature = "s3")]
            let task = task.with_shared(fleet_poll::Shared::for_config(config));
            tasks.spawn(
                every::run(task, shutdown.clone()).instrument(tracing::info_span!("demand")),
            );
        }
    }
    tasks.close();
    tasks
}
