//! The demand polling task (policy `demand`'s sources, [`crate::demand`]): every interval,
//! ask each configured source, send the actor what it found, back off on rate limits, and keep the last good GitHub snapshot until `max_age`.
//! When the rate-limit window runs low, the interval stretches to spread what is left until
//! GitHub's reset ([`crate::ci::github::demand::paced_interval`]), keeping a reserve for runners.
//! The scheduler may ask for a poll sooner (a host became free and waits for a fresh
//! picture before it boots); such asks are honoured at most every [`MIN_NUDGE_GAP`] and
//! never while backing off from a rate limit. While the scheduler says the host is free
//! ([`DaemonHandle::demand_watching`]), the `watch` lists GitHub's queued runs every
//! `[demand] watch` and polls early (same gap) when a new run is queued.
//!
//! With `[demand] shared` (issue 18) one host per fleet polls: each round steps the bucket
//! lease (`super::fleet_poll`); the holder polls as above (renewing every half interval,
//! watching whether or not its own host is free) and publishes what it saw, the others read
//! the published snapshot every interval (early on a nudge) and feed it to their actor as if
//! they had polled, and wake at the holder's expiry + margin to take over. A host that cannot
//! reach the bucket polls for itself.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use super::every::Task;
use crate::actor::DaemonHandle;
use crate::ci::github::GithubDemand;
use crate::ci::{GitHubError, JenkinsClient};
use crate::clock::now_ms;
use crate::config::DemandSection;
use crate::demand::{JenkinsDemand, MIN_NUDGE_GAP, OfflineSeen, PollQuota};
use crate::sched::DemandSnapshot;

/// The configured sources.
#[derive(Debug, Default)]
pub struct Sources {
    /// Queued jobs and fleet runners.
    pub github: Option<GithubDemand>,
    /// The build queue.
    pub jenkins: Option<Arc<JenkinsClient>>,
    /// `[jenkins] labels`: the node list's idle agents count only with one of them.
    pub spi_labels: Vec<String>,
}

/// The poller's state between rounds.
pub(super) struct DemandPoll {
    handle: DaemonHandle,
    section: DemandSection,
    sources: Sources,
    max_age_ms: u64,
    /// When the last good GitHub snapshot was taken; None once it expired (or never).
    github_at: Option<u64>,
    /// The Jenkins queue last seen (its changes are logged; the fleet's poller publishes it).
    last_jenkins: Option<JenkinsDemand>,
    /// The scheduler's asks for an early poll.
    nudge: Arc<tokio::sync::Notify>,
    /// When the last round started.
    polled_at: tokio::time::Instant,
    /// The wait the last round chose: the interval, or longer while paced or rate limited.
    wait: Duration,
    /// `[demand] shared`: the election and the published snapshot (None: this host polls
    /// for itself).
    #[cfg(feature = "s3")]
    shared: Option<super::fleet_poll::Shared>,
    /// The next round was asked for early (a nudge or the watch).
    early: bool,
    /// The last good GitHub poll, with when it ran and the offline runners it saw: what the
    /// holder publishes.
    last_good: Option<(DemandSnapshot, u64, Vec<marble_proto::OfflineRunner>)>,
}

impl DemandPoll {
    pub(super) fn new(handle: DaemonHandle, section: DemandSection, sources: Sources) -> Self {
        Self {
            max_age_ms: u64::try_from(section.max_age.as_millis()).unwrap_or(u64::MAX),
            github_at: None,
            last_jenkins: None,
            nudge: handle.demand_nudge(),
            polled_at: tokio::time::Instant::now(),
            wait: section.interval,
            #[cfg(feature = "s3")]
            shared: None,
            early: false,
            last_good: None,
            handle,
            section,
            sources,
        }
    }

    /// Elect one poller per fleet through the bucket (`[demand] shared`).
    #[cfg(feature = "s3")]
    pub(super) fn with_shared(mut self, shared: Option<super::fleet_poll::Shared>) -> Self {
        self.shared = shared;
        self
    }

    /// Poll GitHub and send the actor what it found (or an empty snapshot once the last good
    /// one expired); sets `wait` when the rate limit asks for a longer one.
    async fn poll_github(&mut self, gh: &GithubDemand) -> ControlFlow<()> {
        let now = now_ms();
        let vms = this_hosts_vms(&self.handle).await;
        let (snapshot, stats) = match gh.poll(now, vms.as_deref()).await {
            Ok(polled) => polled,
            Err(err) => return self.github_failed(&err, now).await,
        };
        tracing::debug!(
            queued = snapshot.root_jobs.len(),
            free_runners = snapshot.free_runners.len(),
            runs = stats.runs,
            runs_skipped = stats.runs_skipped,
            "github demand polled"
        );
        if stats.runs_skipped > 0 {
            tracing::warn!(
                skipped = stats.runs_skipped,
                "more workflow runs than demand.max_runs: some queued jobs are not seen"
            );
        }
        if let Some(quota) = stats.quota {
            let paced = crate::ci::github::demand::paced_interval(self.section.interval, quota);
            if paced > self.section.interval {
                // Also no early polls (nudges, the watch) until then.
                tracing::warn!(
                    remaining = quota.remaining,
                    spent = quota.spent,
                    drained = quota.drained,
                    reset_in_secs = quota.reset_in_secs,
                    next_in = %humantime::format_duration(paced),
                    "github rate limit running low: spreading the polls left until the reset"
                );
                self.wait = paced;
            }
        }
        self.github_at = Some(now);
        let quota = stats.quota.map(|seen| PollQuota {
            seen,
            next_poll: self.wait,
        });
        self.last_good = Some((snapshot.clone(), now, stats.offline.clone()));
        let offline = OfflineSeen {
            runners: stats.offline,
            polled_ms: now,
        };
        let sent = self
            .handle
            .demand(Some(snapshot), None, quota, Some(offline));
        if sent.await.is_err() {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// A failed GitHub poll: keep the last snapshot until it expires.
    async fn github_failed(&mut self, err: &GitHubError, now: u64) -> ControlFlow<()> {
        if let GitHubError::RateLimited { retry_in, .. } = err {
            // Wait out GitHub's reset rather than spending the next polls on refusals (the
            // client also refuses locally until then).
            self.wait = self.wait.max(*retry_in).min(Duration::from_secs(3600));
        }
        tracing::warn!(
            error = %crate::chain::ErrorChain(err),
            retry_in = %humantime::format_duration(self.wait),
            "github demand poll failed; keeping the last snapshot"
        );
        if let Some(at) = self.github_at
            && now.saturating_sub(at) > self.max_age_ms
        {
            tracing::warn!("github demand snapshot expired; assuming nothing waits");
            self.github_at = None;
            let sent = (self.handle).demand(Some(DemandSnapshot::default()), None, None, None);
            if sent.await.is_err() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// Poll the Jenkins queue and send the actor what it found.
    async fn poll_jenkins(
        &mut self,
        jenkins: &JenkinsClient,
        spi_labels: &[String],
    ) -> ControlFlow<()> {
        // Taken when the poll begins, as GitHub's: the answer is at least this old.
        let polled_ms = now_ms();
        let items = match jenkins.queue().await {
            Ok(items) => items,
            Err(err) => {
                // The last answer stays, until its `known_until_ms`.
                tracing::warn!(
                    error = %crate::chain::ErrorChain(&err),
                    "jenkins queue poll failed"
                );
                return ControlFlow::Continue(());
            }
        };
        // Which agents are idle fleet-wide (`agent_spare_handover`); a failed read leaves
        // none known, and no agent is taken for a spare.
        // And which are offline (the turns of `launch_any_node_after`).
        let (idle_agents, offline_agents) = match jenkins.nodes().await {
            Ok(nodes) => (
                crate::ci::jenkins::client::idle_agents(&nodes, Some(spi_labels)),
                crate::ci::jenkins::client::offline_agents(&nodes, spi_labels),
            ),
            Err(err) => {
                tracing::warn!(
                    error = %crate::chain::ErrorChain(&err),
                    "jenkins node list poll failed"
                );
                (Vec::new(), Vec::new())
            }
        };
        let demand = JenkinsDemand {
            by_label: crate::ci::jenkins::buildable_by_label(&items)
                .into_iter()
                .map(|(label, (n, oldest))| (label, n, oldest))
                .collect(),
            known_until_ms: JenkinsDemand::known_until(polled_ms, self.section.interval),
            idle_agents,
            offline_agents,
        };
        if self.last_jenkins.as_ref().map(|last| &last.by_label) != Some(&demand.by_label) {
            tracing::info!(buildable = ?demand.by_label, "jenkins queue changed");
        }
        if self.last_jenkins.as_ref().map(|last| &last.idle_agents) != Some(&demand.idle_agents) {
            tracing::info!(idle = ?demand.idle_agents, "jenkins idle agents changed");
        }
        // Kept with every answer (the holder publishes it): its freshness moves on.
        self.last_jenkins = Some(demand.clone());
        if self
            .handle
            .demand(None, Some(demand), None, None)
            .await
            .is_err()
        {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

impl Task for DemandPoll {
    fn interval(&self) -> Duration {
        self.section.interval
    }

    async fn round(&mut self) -> ControlFlow<()> {
        #[cfg(feature = "s3")]
        if let Some(mut shared) = self.shared.take() {
            let flow = self.shared_round(&mut shared).await;
            self.shared = Some(shared);
            return flow;
        }
        self.poll_round().await
    }

    async fn until_next(&mut self) {
        #[cfg(feature = "s3")]
        // Not taken out (as in `round`): this wait is dropped at shutdown, and `stopped`
        // still needs the lease to resign.
        if let Some(shared) = &self.shared {
            let (role, next_step_ms) = (shared.role().cloned(), shared.next_step_ms());
            self.shared_wait(role, next_step_ms).await;
            return;
        }
        self.poll_wait().await;
    }

    /// The fleet's poller steps down (`[demand] shared`), so another host takes over at its
    /// next read instead of at this lease's expiry.
    async fn stopped(&mut self) {
        #[cfg(feature = "s3")]
        if let Some(shared) = &self.shared {
            shared.resign().await;
        }
    }
}

impl DemandPoll {
    /// Poll every source and send the actor what they said (without `shared`, or as the
    /// fleet's poller).
    async fn poll_round(&mut self) -> ControlFlow<()> {
        self.early = false;
        self.polled_at = tokio::time::Instant::now();
        self.wait = self.section.interval;
        // Taken out for the round so the pollers can update the rest of the state.
        let sources = std::mem::take(&mut self.sources);
        let mut flow = ControlFlow::Continue(());
        // Jenkins first: the actor hands the scheduler the queue last polled with each
        // GitHub snapshot (fair share's Jenkins ages), so this round's is the one it gets.
        if let Some(jenkins) = &sources.jenkins {
            flow = self.poll_jenkins(jenkins, &sources.spi_labels).await;
        }
        if flow.is_continue()
            && let Some(gh) = &sources.github
        {
            flow = self.poll_github(gh).await;
        }
        self.sources = sources;
        flow
    }

    /// Until `polled_at + wait`, or earlier when the scheduler asks or the watch sees a new
    /// run, but never sooner than [`MIN_NUDGE_GAP`] after the last round started.
    async fn poll_wait(&mut self) {
        let next = self.polled_at + self.wait;
        let backing_off = self.wait > self.section.interval;
        let early = wait_for_poll(
            &self.section,
            &self.sources,
            &self.handle,
            &self.nudge,
            next,
            backing_off,
            false,
        )
        .await;
        if early {
            let earliest = self.polled_at + MIN_NUDGE_GAP;
            tokio::time::sleep_until(earliest.min(next)).await;
        }
    }
}

/// `[demand] shared`: one round and the wait after it, by this host's role.
#[cfg(feature = "s3")]
impl DemandPoll {
    /// Step the election; the holder polls when its poll is due (at once when it just took
    /// the lease) and publishes, a follower reads the published snapshot and feeds it to its
    /// actor, and a host without the bucket polls for itself.
    async fn shared_round(&mut self, shared: &mut super::fleet_poll::Shared) -> ControlFlow<()> {
        use super::fleet_poll::Role;
        let before = shared.role().cloned();
        let due = self.early || tokio::time::Instant::now() >= self.polled_at + self.wait;
        let role = shared.step().await;
        // Every step: the lease's expiry moves with each renewal (`marblectl status`).
        self.handle.demand_poller(shared.seen()).await;
        match role {
            Role::Leader { term } => {
                let new_term = before != Some(Role::Leader { term });
                if !(new_term || due) {
                    // A renewal only.
                    return ControlFlow::Continue(());
                }
                let flow = self.poll_round().await;
                let github = (self.last_good.as_ref()).map(|(s, at, off)| (s, *at, off.as_slice()));
                shared
                    .publish(term, github, self.last_jenkins.as_ref())
                    .await;
                flow
            }
            Role::Alone if due => self.poll_round().await,
            Role::Alone => ControlFlow::Continue(()),
            Role::Follower { .. } => self.follow(shared).await,
        }
    }

    /// Read the published snapshot and feed it to the actor as if this host had polled; a
    /// snapshot (or an outage) older than `max_age` feeds "nothing waits".
    async fn follow(&mut self, shared: &mut super::fleet_poll::Shared) -> ControlFlow<()> {
        self.early = false;
        self.polled_at = tokio::time::Instant::now();
        self.wait = self.section.interval;
        let now = now_ms();
        let feed = match shared.read().await {
            Some(published) => {
                self.github_at = Some(published.polled_ms).filter(|at| *at > 0);
                published.feed(now, self.max_age_ms)
            }
            None => match self.github_at {
                Some(at) if now.saturating_sub(at) > self.max_age_ms => {
                    tracing::warn!("the fleet's demand snapshot expired; assuming nothing waits");
                    self.github_at = None;
                    crate::demand::shared::Feed {
                        github: Some(DemandSnapshot::default()),
                        offline: None,
                        jenkins: None,
                    }
                }
                _ => return ControlFlow::Continue(()),
            },
        };
        if feed.github.is_none() && feed.jenkins.is_none() {
            return ControlFlow::Continue(());
        }
        let sent = (self.handle).demand(feed.github, feed.jenkins, None, feed.offline);
        if sent.await.is_err() {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// Until the next poll (holder, or alone) or read (follower), or the next election step
    /// (the holder's renewal, a follower's take-over time), whichever is first. A nudge asks
    /// the holder for an early poll and a follower for an early read (after
    /// [`MIN_NUDGE_GAP`]); only the holder watches GitHub.
    async fn shared_wait(&mut self, role: Option<super::fleet_poll::Role>, next_step_ms: u64) {
        use super::fleet_poll::Role;
        let step_at = {
            let ms = next_step_ms.saturating_sub(now_ms());
            tokio::time::Instant::now() + Duration::from_millis(ms)
        };
        let no_sources = Sources::default();
        // The fleet's poller watches whether or not its own host is free: another host may be.
        let leads = matches!(role, Some(Role::Leader { .. }));
        let (next, backing_off, sources) = match role {
            Some(Role::Follower { .. }) => (
                (self.polled_at + self.section.interval).min(step_at),
                false,
                &no_sources,
            ),
            Some(Role::Leader { .. }) => (
                (self.polled_at + self.wait).min(step_at),
                self.wait > self.section.interval,
                &self.sources,
            ),
            Some(Role::Alone) | None => (
                self.polled_at + self.wait,
                self.wait > self.section.interval,
                &self.sources,
            ),
        };
        let early = wait_for_poll(
            &self.section,
            sources,
            &self.handle,
            &self.nudge,
            next,
            backing_off,
            leads,
        )
        .await;
        if early {
            self.early = true;
            let earliest = self.polled_at + MIN_NUDGE_GAP;
            tokio::time::sleep_until(earliest.min(next)).await;
        }
    }
}

/// This host's VMs as the scheduler sees them, once it has seen the hypervisor's inventory
/// (before that its view may be a restored state file's, too old to call a registration
/// stale by).
async fn this_hosts_vms(handle: &DaemonHandle) -> Option<Vec<marble_proto::VmInfo>> {
    match handle.query(marble_proto::Request::Status).await {
        Ok(marble_proto::Response::Status(report)) if report.inventory_ms > 0 => Some(report.vms),
        _ => None,
    }
}

/// Wait until the next poll is due: `next` (false), or earlier (true) when the scheduler asks
/// for one or, while the host is free (or always: `always_watch`, the fleet's poller), the
/// watch sees a newly queued run. Neither while backing off from a rate limit.
async fn wait_for_poll(
    section: &DemandSection,
    sources: &Sources,
    handle: &DaemonHandle,
    nudge: &tokio::sync::Notify,
    next: tokio::time::Instant,
    backing_off: bool,
    always_watch: bool,
) -> bool {
    let mut watching = handle.demand_watching();
    let watch_github = sources
        .github
        .as_ref()
        .filter(|_| !backing_off && !section.watch.is_zero());
    loop {
        let look_at = tokio::time::Instant::now() + section.watch;
        // Read (and mark seen) either way, so `changed` below waits for the next change.
        let free_here = *watching.borrow_and_update();
        let watch_now = watch_github.filter(|_| (always_watch || free_here) && look_at < next);
        tokio::select! {
            () = tokio::time::sleep_until(next) => return false,
            () = nudge.notified(), if !backing_off => {
                tracing::debug!("demand poll asked for early by the scheduler");
                return true;
            }
            changed = watching.changed() => {
                if changed.is_err() {
                    // The actor is gone: only the interval is left to wait for.
                    tokio::time::sleep_until(next).await;
                    return false;
                }
            }
            () = tokio::time::sleep_until(look_at), if watch_now.is_some() => {
                let Some(gh) = watch_now else { continue };
                match gh.new_queued_run().await {
                    Ok(true) => {
                        tracing::debug!("demand watch: a new workflow run is queued; polling now");
                        return true;
                    }
                    Ok(false) => {}
                    Err(err) => {
                        // The next poll reports (and backs off from) lasting failures.
                        tracing::debug!(
                            error = %crate::chain::ErrorChain(&err),
                            "demand watch failed; waiting for the next poll"
                        );
                        tokio::time::sleep_until(next).await;
                        return false;
                    }
                }
            }
        }
    }
}
