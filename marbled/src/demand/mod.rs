//! What CI is waiting for, as the demand sources report it and the actor and metrics keep
//! it: the types of policy `demand`'s input (fed to the actor as an `Input::Demand`
//! snapshot), below the CI clients that produce them.
//!
//! The sources themselves live with their CI system: `ci::github::demand` (queued ROOT jobs:
//! queued and in-progress workflow runs, then their jobs, only `status == "queued"` jobs
//! count; and the fleet's runners without a job, idle and online or registered by MARBLE for
//! a VM booting now, `ci::github::offline`) and `ci::jenkins::demand` (buildable queue items
//! with the label parsed from their `why` text; reported in the status log and metrics, not
//! scheduled on: Jenkins is served through `request-slot`). ETags make an unchanged GitHub
//! listing cost no quota; a rate limit backs the source off until GitHub's reset.
//!
//! The loop that polls them every interval is `periodic::demand` (it needs the actor's
//! handle, a layer above): a failed poll keeps the last good snapshot instead of telling the
//! scheduler that nothing waits, and a snapshot older than `max_age` is dropped so a long
//! outage does not keep VMs booting for jobs that are long gone. A Jenkins queue answer says
//! for how long it stands ([`JenkinsDemand::known_until_ms`]): past that, the queue is
//! unknown, never "known empty".

use std::time::Duration;

/// Shortest time between two polls when the scheduler asks for one early (a host became
/// free): bounds what a flapping host can cost in GitHub quota.
pub const MIN_NUDGE_GAP: Duration = Duration::from_secs(5);

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

/// Which host polls for the fleet (`[demand] shared`), as this host's last election step saw
/// it (metrics: `marble_demand_poller`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollerSeen {
    /// The lease holder (this host, or the one it follows; empty when [`PollerRole::Alone`]).
    pub holder: String,
    /// Its term (0 when alone).
    pub term: u64,
    /// This host's part.
    pub role: PollerRole,
    /// When the holder's lease runs out unless renewed, unix ms (0 when alone).
    pub lease_expires_ms: u64,
    /// When this host stepped the election, unix ms.
    pub stepped_ms: u64,
    /// The lease object's key.
    pub lease_key: String,
}

/// This host's part in the fleet's demand-poller election (`marblectl status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollerRole {
    /// It holds the lease: it polls and publishes for the fleet.
    Holder,
    /// Another host holds it: this one reads what it publishes.
    Follower,
    /// The bucket failed: nobody is known to poll, so this host polls for itself.
    Alone,
}

impl PollerRole {
    /// The wire name (`holder`, `follower`, `alone`).
    pub fn as_str(self) -> &'static str {
        match self {
            PollerRole::Holder => "holder",
            PollerRole::Follower => "follower",
            PollerRole::Alone => "alone",
        }
    }
}

impl PollerSeen {
    /// `(holder, term)` for the metrics; None when alone (nobody is known to poll).
    pub fn holder_term(&self) -> Option<(String, u64)> {
        (self.role != PollerRole::Alone).then(|| (self.holder.clone(), self.term))
    }

    /// The `DemandPoller` answer.
    pub fn report(&self) -> marble_proto::DemandPollerReport {
        marble_proto::DemandPollerReport {
            role: self.role.as_str().to_owned(),
            holder: self.holder.clone(),
            term: self.term,
            lease_expires_ms: self.lease_expires_ms,
            stepped_ms: self.stepped_ms,
            lease_key: self.lease_key.clone(),
        }
    }
}

/// The Jenkins queue as last polled: buildable items per label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JenkinsDemand {
    /// `(label, buildable items, oldest queue time in unix ms)`; label `None` when the `why`
    /// text named none.
    pub by_label: Vec<(Option<String>, u64, u64)>,
    /// Until when this answer stands for the queue, unix ms: the poll's start plus
    /// [`crate::sched::JENKINS_FRESH_POLLS`] `[demand] interval`s ([`Self::known_until`]).
    /// Later the queue is unknown: polls that fail leave this answer in place, and a
    /// fleet's published copy of it too. 0: never known (a holder too old to say).
    pub known_until_ms: u64,
    /// The agents online and idle when the queue was read (`/computer/api/json`), sorted
    /// by node name; empty when none is or the node list could not be read.
    pub idle_agents: Vec<String>,
    /// The SPI agents offline but launchable (not taken offline by a user) when the queue
    /// was read, sorted by node name; empty when unknown.
    pub offline_agents: Vec<String>,
}

impl JenkinsDemand {
    /// Until when an answer read at `polled_ms` stands for the queue, polled every
    /// `interval`.
    pub fn known_until(polled_ms: u64, interval: Duration) -> u64 {
        let interval = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        let fresh_for = interval.saturating_mul(u64::from(crate::sched::JENKINS_FRESH_POLLS));
        polled_ms.saturating_add(fresh_for)
    }

    /// Whether the queue is known, at `now_ms`, to hold no buildable item at all.
    pub fn idle_at(&self, now_ms: u64) -> bool {
        now_ms < self.known_until_ms && self.by_label.iter().all(|(_, items, _)| *items == 0)
    }

    /// The buildable items that name a node or label, oldest per label, while this answer
    /// still stands for the queue at `now_ms` (the fair share's Jenkins waiters). Past
    /// [`Self::known_until_ms`] none: a Jenkins that stopped answering kept its last queue in
    /// place, and every host with an SPI VM held itself for those builds — ROOT's queued jobs
    /// never booted anywhere until Jenkins answered again. Nothing is lost by dropping them:
    /// a build's age is Jenkins' own queue time, which the next answer brings back.
    pub fn waiting_at(&self, now_ms: u64) -> Vec<crate::sched::JenkinsQueued> {
        if now_ms >= self.known_until_ms {
            return Vec::new();
        }
        (self.by_label.iter())
            .filter_map(|(label, _, oldest)| {
                Some(crate::sched::JenkinsQueued {
                    label: label.clone()?,
                    since_ms: *oldest,
                })
            })
            .collect()
    }

    /// The idle agents, while this answer still stands for Jenkins at `now_ms` (none
    /// after: an agent listed idle then may have taken a build or gone since).
    pub fn idle_agents_at(&self, now_ms: u64) -> Vec<String> {
        if now_ms >= self.known_until_ms {
            return Vec::new();
        }
        self.idle_agents.clone()
    }

    /// The offline agents, while this answer still stands for Jenkins at `now_ms`.
    pub fn offline_agents_at(&self, now_ms: u64) -> Vec<String> {
        if now_ms >= self.known_until_ms {
            return Vec::new();
        }
        self.offline_agents.clone()
    }
}

pub mod shared;

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(polled_ms: u64) -> JenkinsDemand {
        JenkinsDemand {
            by_label: vec![(Some("mac-spi".into()), 1, 1_000), (None, 2, 500)],
            known_until_ms: JenkinsDemand::known_until(polled_ms, Duration::from_secs(30)),
            idle_agents: vec!["mac-vm-03".into()],
            offline_agents: vec!["mac-vm-01".into()],
        }
    }

    #[test]
    fn a_queue_answer_ages_the_fair_share_only_while_it_stands_for_the_queue() {
        let queue = answer(10_000);
        let fresh = queue.waiting_at(10_000 + 89_999);
        assert_eq!(fresh.len(), 1, "the labelled build waits: {fresh:?}");
        assert_eq!(
            (fresh[0].label.as_str(), fresh[0].since_ms),
            ("mac-spi", 1_000)
        );
        // Three 30 s polls later with no new answer (Jenkins down): no waiter is vouched for.
        assert!(queue.waiting_at(10_000 + 90_000).is_empty());
        // A holder too old to say how long its answer stands: unknown from the start.
        let unknown = JenkinsDemand {
            known_until_ms: 0,
            ..answer(10_000)
        };
        assert!(unknown.waiting_at(10_000).is_empty());
    }
}
