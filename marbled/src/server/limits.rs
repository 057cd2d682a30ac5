//! The accept loop's limits: how many connections the descriptor budget allows, how long to
//! back off after a failed `accept`, and how often to say so in the log.
//!
//! Pure bookkeeping (time is an argument), so the policies are tested without sockets.

use std::time::{Duration, Instant};

/// Most connections served at once, whatever the descriptor limit.
pub const MAX_CONNECTIONS: usize = 1024;
/// Descriptors kept for the daemon's own work (prlctl pipes, the state file, S3 and CI
/// connections, log files), never used for control connections.
pub const FD_RESERVE: u64 = 32;
/// Fewest connections served even under a tiny descriptor limit, so an admin can still ask.
pub const MIN_CONNECTIONS: usize = 4;
/// First wait after a failed `accept`; doubled on each further failure.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest wait between `accept` attempts while they keep failing.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one accept-error log line per this period.
pub const ACCEPT_LOG_PERIOD: Duration = Duration::from_secs(10);

/// The connection cap for an open-file soft limit (`None`: unlimited or unknown):
/// `min(MAX_CONNECTIONS, soft − FD_RESERVE)`, at least [`MIN_CONNECTIONS`].
pub fn connection_cap(soft_limit: Option<u64>) -> usize {
    let budget = soft_limit.map_or(MAX_CONNECTIONS, |soft| {
        usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(MAX_CONNECTIONS)
    });
    budget.clamp(MIN_CONNECTIONS, MAX_CONNECTIONS)
}

/// This process's open-file soft limit; `None` when unlimited or unreadable.
pub fn open_file_limit() -> Option<u64> {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _hard)) if soft != RLIM_INFINITY => Some(soft),
        Ok(_) => None,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the open-file limit; assuming none");
            None
        }
    }
}

/// Exponential backoff between failing `accept` calls, reset by a success.
#[derive(Debug, Clone)]
pub struct AcceptBackoff {
    next: Duration,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self {
            next: ACCEPT_BACKOFF_MIN,
        }
    }
}

impl AcceptBackoff {
    /// An accept failed: how long to wait before the next one.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(ACCEPT_BACKOFF_MAX);
        wait
    }

    /// An accept succeeded.
    pub fn succeeded(&mut self) {
        self.next = ACCEPT_BACKOFF_MIN;
    }
}

/// Lets one log line through per [`ACCEPT_LOG_PERIOD`] and counts the ones it holds back.
#[derive(Debug, Clone, Default)]
pub struct LogThrottle {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// Whether to log an event at `now`; `Some(n)`: yes, and `n` events were held back since
    /// the last line.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < ACCEPT_LOG_PERIOD => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_keeps_a_reserve_and_bounds() {
        assert_eq!(connection_cap(Some(64)), 32);
        assert_eq!(connection_cap(Some(256)), 224);
        assert_eq!(connection_cap(Some(1_048_576)), MAX_CONNECTIONS);
        assert_eq!(connection_cap(None), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(10)), MIN_CONNECTIONS);
    }

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut b = AcceptBackoff::default();
        let waits: Vec<_> = (0..10).map(|_| b.failed()).collect();
        assert_eq!(waits[0], Duration::from_millis(5));
        assert_eq!(waits[1], Duration::from_millis(10));
        assert_eq!(waits[7], Duration::from_millis(640));
        assert_eq!(waits[8], ACCEPT_BACKOFF_MAX);
        assert_eq!(waits[9], ACCEPT_BACKOFF_MAX);
        b.succeeded();
        assert_eq!(b.failed(), ACCEPT_BACKOFF_MIN);
    }

    #[test]
    fn throttle_lets_one_line_per_period_and_counts_the_rest() {
        let mut t = LogThrottle::default();
        let t0 = Instant::now();
        assert_eq!(t.allow(t0), Some(0));
        for ms in 1..=500 {
            assert_eq!(t.allow(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(t.allow(t0 + ACCEPT_LOG_PERIOD), Some(500));
        assert_eq!(t.allow(t0 + ACCEPT_LOG_PERIOD * 3), Some(0));
    }
}
