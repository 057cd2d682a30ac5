//! Daemon-level errors (what `run` can fail with) and their wire [`ErrorKind`]s, hence marbled's exit codes.

use marble_proto::ErrorKind;

use crate::chain::WireKind;

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

impl WireKind for DaemonError {
    /// The kind `marbled`'s exit code is chosen by (`cli::DaemonExit::for_kind`): a bad
    /// config is `InvalidRequest` (78, EX_CONFIG); the socket or the state file failing is
    /// `Unavailable` (71, EX_OSERR); the rest is `Internal` (70, EX_SOFTWARE) — the
    /// hypervisor unreachable at start included, as it always exited 70.
    fn kind(&self) -> ErrorKind {
        match self {
            DaemonError::Config(_) => ErrorKind::InvalidRequest,
            DaemonError::Socket(_) | DaemonError::Store(_) => ErrorKind::Unavailable,
            DaemonError::Hypervisor(_) | DaemonError::Runtime(_) => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_errors_keep_their_exit_kinds() {
        let io = || std::io::Error::other("x");
        let config = DaemonError::Config(ConfigError::Read {
            path: "/c".into(),
            source: io(),
        });
        assert_eq!(config.kind(), ErrorKind::InvalidRequest);
        let store = DaemonError::Store(StoreError::Write {
            path: "/s".into(),
            source: io(),
        });
        assert_eq!(store.kind(), ErrorKind::Unavailable);
        assert_eq!(DaemonError::Runtime(io()).kind(), ErrorKind::Internal);
    }
}
