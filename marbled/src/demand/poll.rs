//! The polling task: every interval, ask each configured source, send the actor what it
//! found, back off on rate limits, and keep the last good GitHub snapshot until `max_age`.
//! When the rate-limit window runs low, the interval stretches to spread what is left until
//! GitHub's reset ([`crate::ci::github::demand::paced_interval`]), keeping a reserve for runners.
//! The scheduler may ask for a poll sooner (a host became free and waits for a fresh
//! picture before it boots); such asks are honoured at most every [`MIN_NUDGE_GAP`] and
//! never while backing off from a rate limit. While the scheduler says the host is free
//! ([`DaemonHandle::demand_watching`]), the `watch` lists GitHub's queued runs every
//! `[demand] watch` and polls early (same gap) when a new run is queued.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{DemandSection, JenkinsDemand, MIN_NUDGE_GAP};
use crate::actor::{DaemonHandle, now_ms};
use crate::ci::github::GithubDemand;
use crate::ci::{GitHubError, JenkinsClient};
use crate::sched::DemandSnapshot;

/// The configured sources.
#[derive(Debug, Default)]
pub struct Sources {
    /// Queued jobs and fleet runners.
    pub github: Option<GithubDemand>,
    /// The build queue.
    pub jenkins: Option<Arc<JenkinsClient>>,
}

/// Poll until `shutdown`.
pub async fn run(
    handle: DaemonHandle,
    section: DemandSection,
    sources: Sources,
    shutdown: CancellationToken,
) {
    let max_age_ms = u64::try_from(section.max_age.as_millis()).unwrap_or(u64::MAX);
    // When the last good GitHub snapshot was taken; None once it expired (or never).
    let mut github_at: Option<u64> = None;
    let mut last_jenkins: Option<JenkinsDemand> = None;
    let nudge = handle.demand_nudge();
    loop {
        let polled_at = tokio::time::Instant::now();
        let mut wait = section.interval;
        if let Some(gh) = &sources.github {
            let now = now_ms();
            let vms = this_hosts_vms(&handle).await;
            match gh.poll(now, vms.as_deref()).await {
                Ok((snapshot, stats)) => {
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
                        let paced =
                            crate::ci::github::demand::paced_interval(section.interval, quota);
                        if paced > section.interval {
                            // Also no early polls (nudges, the watch) until then.
                            tracing::warn!(
                                remaining = quota.remaining,
                                spent = quota.spent,
                                drained = quota.drained,
                                reset_in_secs = quota.reset_in_secs,
                                next_in = %humantime::format_duration(paced),
                                "github rate limit running low: spreading the polls left until the reset"
                            );
                            wait = paced;
                        }
                    }
                    github_at = Some(now);
                    let quota = stats.quota.map(|seen| super::PollQuota {
                        seen,
                        next_poll: wait,
                    });
                    let offline = super::OfflineSeen {
                        runners: stats.offline,
                        polled_ms: now,
                    };
                    if handle
                        .demand(Some(snapshot), None, quota, Some(offline))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Err(err) => {
                    if let GitHubError::RateLimited { retry_in, .. } = &err {
                        // Wait out GitHub's reset rather than spending the next polls on
                        // refusals (the client also refuses locally until then).
                        wait = wait.max(*retry_in).min(Duration::from_secs(3600));
                    }
                    tracing::warn!(
                        error = %crate::chain::ErrorChain(&err),
                        retry_in = %humantime::format_duration(wait),
                        "github demand poll failed; keeping the last snapshot"
                    );
                    if let Some(at) = github_at
                        && now.saturating_sub(at) > max_age_ms
                    {
                        tracing::warn!("github demand snapshot expired; assuming nothing waits");
                        github_at = None;
                        if handle
                            .demand(Some(DemandSnapshot::default()), None, None, None)
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        }
        if let Some(jenkins) = &sources.jenkins {
            match jenkins.queue().await {
                Ok(items) => {
                    let demand = JenkinsDemand {
                        by_label: crate::ci::jenkins::buildable_by_label(&items)
                            .into_iter()
                            .map(|(label, (n, oldest))| (label, n, oldest))
                            .collect(),
                    };
                    if last_jenkins.as_ref() != Some(&demand) {
                        tracing::info!(buildable = ?demand.by_label, "jenkins queue changed");
                        last_jenkins = Some(demand.clone());
                    }
                    if handle.demand(None, Some(demand), None, None).await.is_err() {
                        break;
                    }
                }
                Err(err) => tracing::warn!(
                    error = %crate::chain::ErrorChain(&err),
                    "jenkins queue poll failed"
                ),
            }
        }
        let next = polled_at + wait;
        let backing_off = wait > section.interval;
        let early = tokio::select! {
            () = shutdown.cancelled() => break,
            early = wait_for_poll(&section, &sources, &handle, &nudge, next, backing_off) => early,
        };
        if early {
            let earliest = polled_at + MIN_NUDGE_GAP;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(earliest.min(next)) => {}
            }
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
/// for one or, while the host is free, the watch sees a newly queued run. Neither while
/// backing off from a rate limit.
async fn wait_for_poll(
    section: &DemandSection,
    sources: &Sources,
    handle: &DaemonHandle,
    nudge: &tokio::sync::Notify,
    next: tokio::time::Instant,
    backing_off: bool,
) -> bool {
    let mut watching = handle.demand_watching();
    let watch_github = sources
        .github
        .as_ref()
        .filter(|_| !backing_off && !section.watch.is_zero());
    loop {
        let look_at = tokio::time::Instant::now() + section.watch;
        let watch_now = watch_github.filter(|_| *watching.borrow_and_update() && look_at < next);
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
