//! Slow work that runs outside the actor: one job per scheduler [`Action`], plus inventory
//! refreshes. Jobs only call the [`Hypervisor`] and report an [`Outcome`]; they never touch
//! scheduler state.
//!
//! Busy probes are fail-safe by construction: only an exit status of exactly 1 from the
//! probe command means idle; 0 means busy (its output says why); anything else — another
//! status, an exec failure, a timeout, a VM that is not running — is `Unknown`, which the
//! scheduler treats as busy. This is the seed's worst bug inverted: an unreachable guest is
//! never mistaken for an idle one.

use std::sync::Arc;
use std::time::Duration;

use marble_proto::Team;

use crate::config::ProbeSection;
use crate::hypervisor::{Hypervisor, StopMode};
use crate::inventory::TeamMap;
use crate::sched::{Action, ObservedVm, Outcome, ProbeResult, StopKind};

/// What jobs need; cheap to clone into each task.
#[derive(Clone)]
pub struct JobContext {
    /// The hypervisor.
    pub hv: Arc<dyn Hypervisor>,
    /// Probe and readiness commands.
    pub probe: Arc<ProbeSection>,
    /// Team mapping for inventory results.
    pub teams: Arc<TeamMap>,
    /// `[images]`: S3 store and image pipeline settings for transfer jobs.
    #[cfg(feature = "s3")]
    pub images: Arc<crate::images::ImageStoreConfig>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext").finish_non_exhaustive()
    }
}

impl JobContext {
    /// Run one scheduler action on `vm` (whose team is `team`).
    pub async fn run(&self, vm: &str, team: Team, action: &Action) -> Outcome {
        let result = match action {
            Action::Start => self.hv.start(vm).await,
            Action::Resume => self.hv.resume(vm).await,
            Action::Stop(kind) => {
                let mode = match kind {
                    StopKind::Graceful => StopMode::Graceful,
                    StopKind::Kill => StopMode::Kill,
                    StopKind::DropState => StopMode::DropState,
                };
                self.hv.stop(vm, mode).await
            }
            Action::Probe(team) => return Outcome::Probe(self.probe(vm, *team).await),
            Action::WaitReady { timeout_ms } => {
                return self
                    .wait_ready(vm, team, Duration::from_millis(*timeout_ms))
                    .await;
            }
        };
        match result {
            Ok(()) => Outcome::Done,
            Err(err) => Outcome::Failed(crate::error::error_chain(&err).join(": ")),
        }
    }

    /// Busy probe: run the team's probe command in the guest.
    pub async fn probe(&self, vm: &str, team: Team) -> ProbeResult {
        let argv = match team {
            Team::Root => &self.probe.root,
            Team::Spi => &self.probe.spi,
            // A VM of no team runs no CI job we know how to detect: unknown, so never stopped
            // by the scheduler without an operator's --force.
            Team::Unassigned => {
                return ProbeResult::Unknown("VM belongs to no team; no probe configured".into());
            }
        };
        match self.hv.exec(vm, argv, None, self.probe.timeout).await {
            Ok(out) if out.status == 1 => ProbeResult::Idle,
            Ok(out) if out.status == 0 => {
                let what = out.stdout.lines().next().unwrap_or("").trim();
                ProbeResult::Busy(if what.is_empty() {
                    format!("probe `{}` succeeded", argv.join(" "))
                } else {
                    what.to_owned()
                })
            }
            Ok(out) => ProbeResult::Unknown(format!(
                "probe exited {}: {}",
                out.status,
                out.stderr.lines().last().unwrap_or("").trim()
            )),
            Err(err) => ProbeResult::Unknown(crate::error::error_chain(&err).join(": ")),
        }
    }

    /// Poll until the guest answers (and for ROOT the runner listener runs) or time runs out.
    async fn wait_ready(&self, vm: &str, team: Team, timeout: Duration) -> Outcome {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last_error = match self.ready_once(vm, team).await {
                Ok(()) => return Outcome::Done,
                Err(why) => why,
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Outcome::Failed(format!(
                    "not ready after {}: {last_error}",
                    humantime::format_duration(timeout)
                ));
            }
            tokio::time::sleep_until(deadline.min(now + self.probe.ready_poll)).await;
        }
    }

    async fn ready_once(&self, vm: &str, team: Team) -> Result<(), String> {
        let checks: &[&Vec<String>] = if team == Team::Root && !self.probe.ready_root.is_empty() {
            &[&self.probe.ready, &self.probe.ready_root]
        } else {
            &[&self.probe.ready]
        };
        for argv in checks {
            match self.hv.exec(vm, argv, None, self.probe.timeout).await {
                Ok(out) if out.status == 0 => {}
                Ok(out) => return Err(format!("`{}` exited {}", argv.join(" "), out.status)),
                Err(err) => return Err(crate::error::error_chain(&err).join(": ")),
            }
        }
        Ok(())
    }

    /// List all VMs with their teams.
    pub async fn inventory(&self) -> Result<Vec<ObservedVm>, String> {
        match self.hv.list_all().await {
            Ok(list) => Ok(self.teams.observe(list)),
            Err(err) => Err(crate::error::error_chain(&err).join(": ")),
        }
    }
}
