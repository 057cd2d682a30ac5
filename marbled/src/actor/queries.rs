//! Read-only answers (`Status`, `ListVms`, `ShowVm`, `Metrics`, `CiStatus`) and the name
//! resolution every request shares. Nothing here changes state.

use marble_proto::{ErrorKind, Request, Response, StatusReport, WireError};

use super::Supervisor;
use crate::clock::now_ms;
use crate::jobs::ci;

/// The runner report without `[github]`: nothing known.
fn no_runner_report() -> marble_proto::RunnerReport {
    marble_proto::RunnerReport {
        latest: None,
        latest_published_ms: 0,
        checked_ms: 0,
        check_error: "no [github] section: runner versions are not checked".into(),
        target: None,
        vms: Vec::new(),
    }
}

impl Supervisor {
    pub(super) fn query(&self, request: &Request) -> Result<Response, WireError> {
        let now = now_ms();
        match request {
            Request::Status => Ok(Response::Status(self.status(now))),
            Request::ListVms => Ok(Response::Vms(self.world.vms(now))),
            Request::Metrics => Ok(Response::Metrics {
                text: crate::metrics::render(self.metrics_snapshot(now)),
            }),
            Request::CiStatus => Ok(Response::Ci(self.ci_report())),
            Request::DemandPoller => Ok(Response::DemandPoller(
                (self.demand_poller.as_ref()).map(crate::demand::PollerSeen::report),
            )),
            Request::RunnerStatus => Ok(Response::Runners(
                ci::runner_report(&self.ctx.runners, now).unwrap_or_else(no_runner_report),
            )),
            Request::ShowVm { vm } => {
                let name = self.resolve(vm)?;
                self.world
                    .vms(now)
                    .into_iter()
                    .find(|v| v.name == name)
                    .map(Response::Vm)
                    .ok_or_else(|| self.not_found(vm))
            }
            other => Err(WireError::new(
                ErrorKind::Internal,
                format!("{} is not a query", other.kind()),
            )),
        }
    }

    /// What the metrics show now, as plain data for [`crate::metrics::render`].
    fn metrics_snapshot(&self, now: u64) -> crate::metrics::Snapshot {
        let transfers = self.transfers.metrics();
        let demand = self.world.demand();
        crate::metrics::Snapshot {
            status: self.status(now),
            counters: self.world.counters().clone(),
            transfers: crate::metrics::TransferCounts {
                bytes_sent: transfers.bytes_sent,
                bytes_received: transfers.bytes_received,
                kinds: (transfers.kinds.into_iter())
                    .map(|k| crate::metrics::TransferKind {
                        kind: k.kind,
                        running: k.running,
                        ok: k.ok,
                        failed: k.failed,
                    })
                    .collect(),
            },
            queued_jobs: demand.root_jobs.clone(),
            free_runners: demand.free_runners.len() as u64,
            unservable: self.world.unservable_jobs(),
            ci_systems: self.ci_report().systems,
            offline_runner_kinds: (self.github_offline.as_ref())
                .map(|seen| seen.runners.iter().map(|r| r.kind.clone()).collect()),
            github_quota: self.github_quota.map(|q| crate::metrics::GithubQuota {
                remaining: q.seen.remaining,
                spent: q.seen.spent,
                next_poll: q.next_poll,
            }),
            jenkins: self.jenkins_queue.clone(),
            demand_poller: (self.demand_poller.as_ref())
                .and_then(crate::demand::PollerSeen::holder_term),
            runners: ci::runner_report(&self.ctx.runners, now),
            now_ms: now,
        }
    }

    /// The CI side for `CiStatus` and the metrics: `[github]`'s token, and the offline
    /// runners the last poll did not count.
    fn ci_report(&self) -> marble_proto::CiReport {
        /// Entries sent; `offline_total` counts the rest (an org can have hundreds).
        const MAX_LISTED: usize = 50;
        let systems = ci::token_system(&self.ctx.runners).into_iter().collect();
        let (offline_runners, offline_total, polled_ms) = match &self.github_offline {
            Some(seen) => (
                seen.runners.iter().take(MAX_LISTED).cloned().collect(),
                u32::try_from(seen.runners.len()).unwrap_or(u32::MAX),
                seen.polled_ms,
            ),
            None => (Vec::new(), 0, 0),
        };
        marble_proto::CiReport {
            systems,
            offline_runners,
            offline_total,
            polled_ms,
        }
    }

    pub(super) fn status(&self, now: u64) -> StatusReport {
        let mut report = self.world.status(now);
        report.daemon_version.clone_from(&self.identity.version);
        report.host.clone_from(&self.identity.host);
        if report.inventory_ms == 0 {
            report.inventory_ms = self.inventory_ms;
        }
        report.decisions.extend(self.standing_warnings(now));
        report
    }

    /// An unknown VM (2), or, before the first inventory, "not listed yet" (75: try again;
    /// the VM may well exist).
    pub(super) fn not_found(&self, vm: &str) -> WireError {
        if !self.world.has_inventory() {
            return WireError::new(
                ErrorKind::Busy,
                format!(
                    "cannot tell whether {vm:?} exists yet: marbled has not listed its VMs \
                     since it started (the first `prlctl list` still runs); try again"
                ),
            );
        }
        self.world.unknown_vm(vm)
    }

    pub(super) fn resolve(&self, vm: &str) -> Result<String, WireError> {
        self.world.resolve(vm).ok_or_else(|| self.not_found(vm))
    }
}
