//! Daemon-level errors and the one function that maps internal errors to wire [`ErrorKind`]s.

use std::error::Error as StdError;

use marble_proto::{ErrorKind, WireError};

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

/// The messages of an error and its sources, outermost first.
pub fn error_chain(err: &(dyn StdError + 'static)) -> Vec<String> {
    let mut out = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push(e.to_string());
        cur = e.source();
    }
    out
}

/// Convert an internal error into a wire error with the given kind and full chain.
pub fn to_wire(kind: ErrorKind, err: &(dyn StdError + 'static)) -> WireError {
    let mut chain = error_chain(err);
    let message = chain.remove(0);
    WireError {
        kind,
        message,
        chain,
    }
}

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
