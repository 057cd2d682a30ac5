//! Jenkins (feature `ci`, `[jenkins]` configured): everything MARBLE does with the Jenkins
//! controller, built from the config here.
//!
//! - [`client`]: the node API client (node state, `toggleOffline` with the CSRF crumb, the
//!   build queue) and the busy signal of one node;
//! - [`demand`]: the build queue's buildable items by label (reported, not scheduled on);
//! - [`spi`]: the SPI node signal (guest probe combined with the controller's view) and the
//!   drain's temporary-offline marks.

pub mod client;
pub mod demand;
pub mod spi;

pub use client::{
    JenkinsBusy, JenkinsClient, JenkinsConfig, JenkinsError, NodeState, QueueItem, ToggleOutcome,
    busy_signal, label_from_why,
};
pub use demand::buildable_by_label;
pub use spi::JenkinsNodes;
