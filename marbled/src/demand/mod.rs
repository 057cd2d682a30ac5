//! Demand sources for policy `demand`: what CI is waiting for, polled every `[demand]
//! interval` and fed to the actor as an `Input::Demand` snapshot.
//!
//! - [`github`]: queued ROOT jobs (queued and in-progress workflow runs, then their jobs;
//!   only `status == "queued"` jobs count) and the fleet's runners without a job (idle and
//!   online, or registered by MARBLE for a VM booting now: [`runners`]) — the scheduler's
//!   fleet de-duplication input. ETags make an unchanged listing cost no quota; a rate limit
//!   backs the source off until GitHub's reset.
//! - [`jenkins`]: buildable queue items with the label parsed from their `why` text. The
//!   scheduler serves Jenkins through `request-slot`, so this is reported (status log and
//!   metrics), not scheduled on.
//!
//! A failed poll keeps the last good snapshot (cached) instead of telling the scheduler that
//! nothing waits; a snapshot older than `max_age` is dropped (replaced by an empty one) so a
//! long outage does not keep VMs booting for jobs that are long gone.
//!
//! The loop that polls them every interval is `crate::periodic`'s (it needs the actor's
//! handle, a layer above this one).

#[cfg(feature = "ci")]
pub mod github;
#[cfg(feature = "ci")]
pub mod jenkins;
#[cfg(feature = "ci")]
pub mod runners;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Shortest time between two polls when the scheduler asks for one early (a host became
/// free): bounds what a flapping host can cost in GitHub quota.
pub const MIN_NUDGE_GAP: Duration = Duration::from_secs(5);

/// `[demand]`: polling of the CI systems (absent: no demand sources; policy `demand` then
/// boots nothing on its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemandSection {
    /// How often the sources are polled.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// While nothing runs on this host (a boot needs no stop), check GitHub's queued-runs
    /// listing this often and poll at once when it changed; zero: off. Free of quota: an
    /// unchanged listing is a 304, which GitHub does not count.
    #[serde(with = "humantime_serde")]
    pub watch: Duration,
    /// Use `[github]` for queued jobs and fleet runners.
    pub github: bool,
    /// Use `[jenkins]` for the build queue.
    pub jenkins: bool,
    /// Repositories whose workflow runs are polled (`owner/repo`). Empty: `github.repo`
    /// (organisation runners need the list).
    pub repos: Vec<String>,
    /// Most workflow runs whose jobs are listed per poll (each costs one request).
    pub max_runs: u32,
    /// A snapshot older than this (polls failing) is replaced by an empty one.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for DemandSection {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            watch: Duration::from_secs(5),
            github: true,
            jenkins: true,
            repos: Vec::new(),
            max_runs: 50,
            max_age: Duration::from_secs(600),
        }
    }
}

impl DemandSection {
    /// Every problem, as `(key, message)`; `repo` is `github.repo` when `[github]` is set.
    pub fn problems(&self, github: Option<Option<&str>>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.interval < Duration::from_secs(5) {
            out.push((
                "demand.interval".into(),
                "must be at least 5s (GitHub's rate limit)".into(),
            ));
        }
        if !self.watch.is_zero() && self.watch < Duration::from_secs(1) {
            out.push((
                "demand.watch".into(),
                "must be 0s (off) or at least 1s".into(),
            ));
        }
        if self.max_age < self.interval {
            out.push((
                "demand.max_age".into(),
                "must be at least demand.interval".into(),
            ));
        }
        if self.max_runs == 0 {
            out.push(("demand.max_runs".into(), "must be at least 1".into()));
        }
        for r in &self.repos {
            let ok = r.split_once('/').is_some_and(|(o, n)| {
                let part = |s: &str| {
                    !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                };
                part(o) && part(n)
            });
            if !ok {
                out.push((
                    "demand.repos".into(),
                    format!("must be \"owner/repo\", got {r:?}"),
                ));
            }
        }
        if self.github
            && let Some(repo) = github
            && repo.is_none()
            && self.repos.is_empty()
        {
            out.push((
                "demand.repos".into(),
                "organisation runners ([github] org): list the repositories whose jobs to poll"
                    .into(),
            ));
        }
        out
    }
}

/// GitHub's primary rate limit as one poll saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSeen {
    /// Requests the poll spent (304 answers are free).
    pub spent: u64,
    /// Requests the token lost since this host's previous poll in the same window: its own
    /// and those of every other host (or tool) sharing the token; at least `spent`.
    pub drained: u64,
    /// Requests left in the window after the poll.
    pub remaining: u64,
    /// Seconds until the window resets.
    pub reset_in_secs: u64,
}

/// What the last GitHub poll saw of the rate limit and how long the poller then waits
/// (metrics: operators see pacing before the budget runs out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollQuota {
    /// The rate limit after the poll.
    pub seen: QuotaSeen,
    /// Until the next regular poll: `[demand] interval`, or longer when paced.
    pub next_poll: Duration,
}

/// The runners the last GitHub poll saw offline and did not count as free capacity (for
/// `status` and the metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfflineSeen {
    /// The runners.
    pub runners: Vec<marble_proto::OfflineRunner>,
    /// When the poll ran, unix ms.
    pub polled_ms: u64,
}

/// The Jenkins queue as last polled: buildable items per label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JenkinsDemand {
    /// `(label, buildable items, oldest queue time in unix ms)`; label `None` when the `why`
    /// text named none.
    pub by_label: Vec<(Option<String>, u64, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(section: &DemandSection) -> Vec<String> {
        section
            .problems(Some(Some("root-project/root")))
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }

    #[test]
    fn problems_name_their_key() {
        assert!(keys(&DemandSection::default()).is_empty());
        let bad = DemandSection {
            interval: Duration::from_secs(2),
            watch: Duration::from_millis(200),
            max_runs: 0,
            repos: vec!["no-slash".into()],
            ..DemandSection::default()
        };
        assert_eq!(
            keys(&bad),
            [
                "demand.interval",
                "demand.watch",
                "demand.max_runs",
                "demand.repos"
            ]
        );
        let off = DemandSection {
            watch: Duration::ZERO,
            ..DemandSection::default()
        };
        assert!(keys(&off).is_empty(), "watch 0s turns it off");
    }
}
