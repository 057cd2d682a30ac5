//! The node_exporter textfile: every `[metrics] interval`, ask the actor for the exposition
//! text ([`crate::metrics::render`] behind the `Metrics` query) and replace the file
//! atomically, so node_exporter never reads half a file.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use marble_proto::{Request, Response};

use super::every::Task;
use crate::actor::DaemonHandle;

/// Rewrites the textfile each round; failures are logged and retried at the next one.
pub(super) struct Textfile {
    pub(super) handle: DaemonHandle,
    pub(super) path: PathBuf,
    pub(super) interval: Duration,
}

impl Task for Textfile {
    fn interval(&self) -> Duration {
        self.interval
    }

    async fn round(&mut self) -> ControlFlow<()> {
        match self.handle.query(Request::Metrics).await {
            Ok(Response::Metrics { text }) => {
                let target = self.path.clone();
                let written =
                    tokio::task::spawn_blocking(move || write_atomic(&target, &text)).await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        tracing::warn!(path = %self.path.display(), error = %err, "metrics textfile not written");
                    }
                    Err(err) => tracing::warn!(error = %err, "metrics writer panicked"),
                }
            }
            Ok(_) => tracing::warn!("unexpected answer to the metrics query"),
            // The actor is stopping: the shutdown ends this task.
            Err(_) => {}
        }
        ControlFlow::Continue(())
    }
}

/// Write `text` to `path` atomically and durably, so node_exporter never reads half a file
/// ([`crate::fsx::write_atomic`]).
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    crate::fsx::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn textfile_is_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("marble.prom");
        write_atomic(&path, "a 1\n").unwrap();
        write_atomic(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
