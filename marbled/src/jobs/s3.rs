//! The S3 side of jobs, built with feature `s3`: the `[images]` settings transfer jobs and
//! `host check` read, and the `[fleet]` bucket reader that answers `FleetList`.
//!
//! This is one half of a seam: `jobs/mod.rs` declares a stub with the same API when the
//! feature is off, so the jobs, the actor and the daemon use these without `cfg`.

use std::path::PathBuf;
use std::sync::Arc;

use marble_proto::{Response, WireError};
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::fleet::FleetReader;
use crate::images::ImageStoreConfig;

/// `[images]`: S3 store and image pipeline settings.
pub type Images = Arc<ImageStoreConfig>;
/// `[fleet]`: the heartbeat bucket reader (None: not configured).
pub type Fleet = Option<Arc<FleetReader>>;

/// The `[images]` settings of `config`.
pub fn images(config: &Config) -> Images {
    Arc::new(config.images.clone())
}

/// `images.build_disk`, when set.
pub fn build_disk(images: &Images) -> Option<PathBuf> {
    images.build_disk.clone()
}

/// Where VM bundles live.
pub fn bundles_dir(images: &Images) -> PathBuf {
    images.bundles_dir()
}

/// The bucket reader for `FleetList` and the heartbeat (None without `[fleet]`).
pub fn fleet(config: &Config) -> Fleet {
    config
        .fleet
        .as_ref()
        .map(|section| Arc::new(FleetReader::new(config.images.clone(), section.clone())))
}

/// Answer `FleetList` from `fleet` in a job on `jobs`.
pub fn spawn_list(
    jobs: &TaskTracker,
    fleet: Fleet,
    done: oneshot::Sender<Result<Response, WireError>>,
) {
    crate::fleet::spawn_list(jobs, fleet, done);
}
