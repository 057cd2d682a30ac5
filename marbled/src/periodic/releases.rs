//! The runner release check: every `[github] release_check_interval` (6 h by default; a
//! round at start), read the `actions/runner` release list into the runner versions, so
//! `status`, `vm list --json` and the metrics can say how far each ROOT VM's runner is
//! behind. A conditional request: an unchanged list is a 304 that costs no rate-limit quota,
//! so the check costs at most 4 requests a day. A failure is logged and shown in `status`
//! (the last good list is kept); the next round tries again.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use super::every::Task;
use crate::ci::github::RunnerLifecycle;
use crate::ci::github::releases::check_releases;

/// The task's state.
pub(super) struct ReleaseCheck {
    /// The runner lifecycle (its GitHub client and the versions store).
    pub(super) runners: Arc<RunnerLifecycle>,
}

impl Task for ReleaseCheck {
    fn interval(&self) -> Duration {
        self.runners.setup().check_interval
    }

    async fn round(&mut self) -> ControlFlow<()> {
        let client = self.runners.client();
        match check_releases(&client, self.runners.versions()).await {
            Ok(list) => tracing::debug!(releases = list.len(), "runner releases read"),
            Err(err) => {
                tracing::warn!(error = %crate::chain::ErrorChain(&err), "runner release check failed")
            }
        }
        ControlFlow::Continue(())
    }
}
