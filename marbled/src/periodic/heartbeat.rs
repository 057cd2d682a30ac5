//! The fleet heartbeat: every `[fleet] interval`, ask the actor for its status and write it
//! to the bucket as this host's heartbeat object ([`crate::fleet::HeartbeatWriter`]).
//! Failures are retried at the next interval (a missed heartbeat only ages the entry) and
//! logged as one line when they start or change, then again only every
//! [`REPEAT_LOG_EVERY`] while they repeat unchanged (with how many were not logged), and
//! once when heartbeats are written again: a wrong `images.region` fails every round, and a
//! warning every 5 s buries the rest of the log.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use marble_proto::{Request, Response};

use super::every::Task;
use crate::actor::DaemonHandle;
use crate::clock::now_ms;
use crate::fleet::{Heartbeat, HeartbeatFailure, HeartbeatWriter, free_disk_bytes};

/// How often a failure that repeats unchanged is logged again.
pub(super) const REPEAT_LOG_EVERY: Duration = Duration::from_secs(600);

/// Writes this host's heartbeat each round.
pub(super) struct HeartbeatTask {
    pub(super) handle: DaemonHandle,
    pub(super) writer: HeartbeatWriter,
    /// The state file, whose volume's free space the heartbeat reports.
    pub(super) state_file: PathBuf,
    /// The failures of the current run of failed rounds (what to log of them).
    pub(super) failures: Repeats,
}

/// Which of a run of failures to log: the first, each change, and a repeat every
/// [`REPEAT_LOG_EVERY`].
#[derive(Debug, Default)]
pub(super) struct Repeats {
    /// The failure last logged, when it was logged, and the rounds failed since without a log.
    last: Option<(String, Instant, u64)>,
}

impl Repeats {
    /// Whether to log `failure` now; `Some(n)` with the `n` unlogged repeats before it.
    fn should_log(&mut self, failure: &str, now: Instant) -> Option<u64> {
        match &mut self.last {
            Some((text, at, skipped))
                if text == failure && now.duration_since(*at) < REPEAT_LOG_EVERY =>
            {
                *skipped += 1;
                None
            }
            _ => {
                let skipped = self.last.as_ref().map_or(0, |l| l.2);
                self.last = Some((failure.to_owned(), now, 0));
                Some(skipped)
            }
        }
    }

    /// A round succeeded: `true` when failures were logged before (so the recovery is).
    fn recovered(&mut self) -> bool {
        self.last.take().is_some()
    }
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
        let failure = match self.writer.write(&hb).await {
            Ok(()) => {
                if self.failures.recovered() {
                    tracing::info!(host = %hb.host, "fleet heartbeat written again");
                } else {
                    tracing::debug!(host = %hb.host, "fleet heartbeat written");
                }
                return ControlFlow::Continue(());
            }
            Err(HeartbeatFailure::Unreachable(err)) => (
                "fleet heartbeat: cannot reach the bucket",
                crate::chain::ErrorChain(&err).to_string(),
            ),
            Err(HeartbeatFailure::NotWritten(err)) => (
                "fleet heartbeat not written",
                crate::chain::ErrorChain(&err).to_string(),
            ),
        };
        let (what, error) = failure;
        match self.failures.should_log(&error, Instant::now()) {
            Some(0) => tracing::warn!(%error, "{what}"),
            Some(repeats) => {
                tracing::warn!(%error, repeats, "{what} (failed {repeats} more times since last logged)")
            }
            None => tracing::debug!(%error, "{what} (again)"),
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_failure_is_logged_once_per_period_a_change_at_once() {
        let mut r = Repeats::default();
        let t0 = Instant::now();
        assert_eq!(r.should_log("region", t0), Some(0));
        for i in 1..=5 {
            assert_eq!(
                r.should_log("region", t0 + Duration::from_secs(5 * i)),
                None
            );
        }
        assert_eq!(
            r.should_log("denied", t0 + Duration::from_secs(30)),
            Some(5)
        );
        assert_eq!(
            r.should_log("denied", t0 + Duration::from_secs(30) + REPEAT_LOG_EVERY),
            Some(0)
        );
        assert!(r.recovered());
        assert!(!r.recovered());
        assert_eq!(r.should_log("denied", t0 + REPEAT_LOG_EVERY * 3), Some(0));
    }
}
