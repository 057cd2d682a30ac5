//! The runner release check: every `[github] release_check_interval` (6 h by default; the
//! first a minute after start, so it does not land in the middle of the first demand poll,
//! whose quota accounting counts every request the token makes; a ROOT boot checks sooner
//! when the list is older than the interval, `jobs::ci`), read the `actions/runner` release list into the runner versions, so
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

/// Wait before the first check.
const FIRST_CHECK_AFTER: Duration = Duration::from_secs(60);

/// The task's state.
pub(super) struct ReleaseCheck {
    /// The runner lifecycle (its GitHub client and the versions store).
    pub(super) runners: Arc<RunnerLifecycle>,
    /// Whether the (skipped) first round at start has passed.
    pub(super) started: bool,
}

impl Task for ReleaseCheck {
    fn interval(&self) -> Duration {
        self.runners.setup().check_interval
    }

    fn until_next(&mut self) -> impl std::future::Future<Output = ()> + Send {
        let wait = if self.runners.versions().checked_ms() == 0 {
            FIRST_CHECK_AFTER
        } else {
            self.interval()
        };
        tokio::time::sleep(wait)
    }

    async fn round(&mut self) -> ControlFlow<()> {
        if !self.started {
            // The loop runs a round at once; the first check waits (see the module doc).
            self.started = true;
            return ControlFlow::Continue(());
        }
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
