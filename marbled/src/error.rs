//! Daemon-level errors and the one function that maps internal errors to wire [`ErrorKind`]s.

use marble_proto::ErrorKind;

use crate::config::ConfigError;
use crate::hypervisor::PrlctlError;
use crate::socket::SocketError;
use crate::store::StoreError;

/// Why the daemon could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Bad configuration.
    #[error("configuration error")]
    Config(#[from] ConfigError),
    /// The control socket could not be set up.
    #[error("cannot set up the control socket")]
    Socket(#[from] SocketError),
    /// The state file could not be read.
    #[error("cannot load persisted state")]
    Store(#[from] StoreError),
    /// The hypervisor could not be listed at start.
    #[error("cannot reach the hypervisor")]
    Hypervisor(#[from] PrlctlError),
    /// The runtime could not be built.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

// Moved to the layer-0 leaf `chain`; kept here so callers not yet moved compile.
pub use crate::chain::{error_chain, to_wire};

/// The kind a hypervisor failure maps to.
pub fn prlctl_kind(err: &PrlctlError) -> ErrorKind {
    if err.is_not_found() {
        ErrorKind::NotFound
    } else if err.is_access_denied() {
        ErrorKind::Locked
    } else if err.is_timeout() {
        ErrorKind::Timeout
    } else if err.is_not_running() || err.is_not_stopped() {
        ErrorKind::InvalidState
    } else {
        ErrorKind::Unavailable
    }
}
