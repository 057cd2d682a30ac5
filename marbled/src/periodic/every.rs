//! The one loop every periodic task runs on: a round at once (no initial delay, no jitter:
//! none of the tasks had one), then the task's wait, again and again until `shutdown` is
//! cancelled (during a wait; a round in progress finishes first) or a round says stop (the
//! actor is gone). Failures are the task's to log: each logs every failed round, as before.

use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// One periodic task.
pub trait Task: Send {
    /// The interval between rounds, when the task does not decide otherwise.
    fn interval(&self) -> Duration;

    /// One round. `Break` ends the task.
    fn round(&mut self) -> impl Future<Output = ControlFlow<()>> + Send;

    /// Wait until the next round is due: by default the interval, counted from the end of
    /// the round (a slow round never makes rounds pile up).
    fn until_next(&mut self) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(self.interval())
    }

    /// A last word when `shutdown` ends the task (not when a round stops it): kept short,
    /// the drain waits only 2 s for the side tasks. By default nothing.
    fn stopped(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// Run `task` until `shutdown` (or until a round stops it).
pub async fn run(mut task: impl Task, shutdown: CancellationToken) {
    loop {
        if task.round().await.is_break() {
            break;
        }
        tokio::select! {
            () = shutdown.cancelled() => {
                task.stopped().await;
                break;
            }
            () = task.until_next() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Count {
        interval: Duration,
        rounds: u32,
        stop_after: u32,
    }

    impl Task for Count {
        fn interval(&self) -> Duration {
            self.interval
        }

        async fn round(&mut self) -> ControlFlow<()> {
            self.rounds += 1;
            if self.rounds == self.stop_after {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }

    #[tokio::test]
    async fn first_round_at_once_then_every_interval_until_stopped() {
        let started = std::time::Instant::now();
        let task = Count {
            interval: Duration::from_millis(20),
            rounds: 0,
            stop_after: 3,
        };
        run(task, CancellationToken::new()).await;
        // Two waits between three rounds.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(40), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    }

    #[tokio::test]
    async fn shutdown_ends_the_wait_after_the_first_round() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let started = std::time::Instant::now();
        let task = Count {
            interval: Duration::from_secs(3600),
            rounds: 0,
            stop_after: 0,
        };
        run(task, shutdown).await;
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}
