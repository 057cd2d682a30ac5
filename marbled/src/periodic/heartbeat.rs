//! The fleet heartbeat: every `[fleet] interval`, ask the actor for its status and write it
//! to the bucket as this host's heartbeat object ([`crate::fleet::HeartbeatWriter`]).
//! Failures are logged and retried at the next interval (a missed heartbeat only ages the
//! entry).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Duration;

use marble_proto::{Request, Response};

use super::every::Task;
use crate::actor::DaemonHandle;
use crate::clock::now_ms;
use crate::fleet::{Heartbeat, HeartbeatFailure, HeartbeatWriter, free_disk_bytes};

/// Writes this host's heartbeat each round.
pub(super) struct HeartbeatTask {
    pub(super) handle: DaemonHandle,
    pub(super) writer: HeartbeatWriter,
    /// The state file, whose volume's free space the heartbeat reports.
    pub(super) state_file: PathBuf,
}

impl Task for HeartbeatTask {
    fn interval(&self) -> Duration {
        self.writer.section().interval
    }

    async fn round(&mut self) -> ControlFlow<()> {
        let status = match self.handle.query(Request::Status).await {
            Ok(Response::Status(status)) => status,
            Ok(_) | Err(_) => return ControlFlow::Continue(()),
        };
        let hb = Heartbeat::from_status(
            &status,
            self.interval(),
            free_disk_bytes(&self.state_file),
            now_ms(),
        );
        match self.writer.write(&hb).await {
            Ok(()) => tracing::debug!(host = %hb.host, "fleet heartbeat written"),
            Err(HeartbeatFailure::Unreachable(err)) => tracing::warn!(
                error = %crate::chain::ErrorChain(&err),
                "fleet heartbeat: cannot reach the bucket"
            ),
            Err(HeartbeatFailure::NotWritten(err)) => tracing::warn!(
                error = %crate::chain::ErrorChain(&err),
                "fleet heartbeat not written"
            ),
        }
        ControlFlow::Continue(())
    }
}
