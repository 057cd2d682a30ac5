//! The actor's side of `runner install|upgrade` (`Request::RunnerInstall`): a ROOT VM only,
//! with the same checks and hold as `vm provision` (the run holds the VM: its probes answer
//! busy, nothing else starts), then a job that gets the verified package on the host first
//! (a checksum mismatch ends it there, nothing touched) and runs the install steps through
//! the provisioning job. Nothing here awaits.

use marble_proto::{ErrorKind, Response, RunnerInstallResult, Team, WireError};
use tracing::Instrument;

use super::{Completion, Supervisor, Waiter, now_ms};
use crate::jobs::ci;
use crate::lifecycle::LifecycleEvent;
use crate::lifecycle::provisioning::{ProvisionJob, ProvisionNotice};

impl Supervisor {
    /// Take the hold and spawn the install job; the refusal when the VM cannot be used now.
    #[allow(
        clippy::result_large_err,
        reason = "hands the waiter back to answer it"
    )]
    pub(super) fn start_runner_install(
        &mut self,
        caller: &str,
        vm: &str,
        upgrade: bool,
        waiter: Waiter,
    ) -> Result<(), (WireError, Waiter)> {
        let Some(name) = self.world.resolve(vm) else {
            return Err((self.not_found(vm), waiter));
        };
        let team = self
            .world
            .vms(now_ms())
            .into_iter()
            .find(|v| v.name == name)
            .map(|v| v.team);
        if team != Some(Team::Root) {
            let err = WireError::new(
                ErrorKind::InvalidRequest,
                format!("{name} is not a ROOT VM: the GitHub runner goes into ROOT VMs only"),
            );
            return Err((err, waiter));
        }
        let start = match self.provision_start(&name, vm) {
            Ok(start) => start,
            Err(e) => return Err((e, waiter)),
        };
        let id = match self.lifecycle.begin_provision(&name, caller) {
            Ok(id) => id,
            Err(e) => return Err((e, waiter)),
        };
        let runners = self.ctx.runners.clone();
        let hv = self.ctx.hv.clone();
        let boot_timeout = self.host_cfg.boot_timeout;
        let tx = self.completions_tx.clone();
        let what = if upgrade {
            "runner_upgrade"
        } else {
            "runner_install"
        };
        let span = tracing::info_span!("runner_install", run = id, vm = %name, what);
        self.jobs.spawn(
            async move {
                let notify_tx = tx.clone();
                let notify = move |n: ProvisionNotice| match n {
                    ProvisionNotice::Started => {
                        let _ = notify_tx.try_send(Completion::Lifecycle(
                            LifecycleEvent::ProvisionStarted { id },
                        ));
                    }
                };
                let progress = waiter.progress.clone();
                let result =
                    install_job(runners, hv, name, upgrade, start, boot_timeout, progress, notify)
                        .await;
                match &result {
                    Ok(r) => {
                        tracing::info!(version = %r.version, changed = r.changed, "runner install done");
                    }
                    Err(e) => tracing::warn!(error = %e, "runner install failed"),
                }
                let _ = waiter.done.send(result.map(Response::RunnerInstalled));
                let _ = tx
                    .send(Completion::Lifecycle(LifecycleEvent::ProvisionFinished { id }))
                    .await;
            }
            .instrument(span),
        );
        Ok(())
    }
}

/// The job: the verified package on the host first (a mismatch ends it there, nothing
/// touched), then the steps through the provisioning run.
#[allow(clippy::too_many_arguments, reason = "the job's inputs, moved in once")]
async fn install_job(
    runners: ci::Runners,
    hv: std::sync::Arc<dyn crate::hypervisor::Hypervisor>,
    name: String,
    upgrade: bool,
    start: Option<bool>,
    boot_timeout: std::time::Duration,
    progress: tokio::sync::mpsc::Sender<marble_proto::Event>,
    notify: impl FnOnce(ProvisionNotice) + Send,
) -> Result<RunnerInstallResult, WireError> {
    let plan = ci::prepare_runner_install(&runners, upgrade).await?;
    if upgrade
        && start.is_some()
        && ci::recorded_runner_version(&runners, &name).as_deref() == Some(plan.version.as_str())
    {
        // A stopped VM known to hold the target: not started for nothing.
        return Ok(RunnerInstallResult {
            version: plan.version,
            changed: false,
            cached: plan.cached,
            run: marble_proto::ProvisionResult {
                vm: name.clone(),
                macos_major: 0,
                steps: Vec::new(),
                started_vm: false,
                elapsed_ms: 0,
            },
        });
    }
    let job = ProvisionJob {
        hv,
        vm: name.clone(),
        profile: plan.profile,
        start,
        boot_timeout,
    };
    let run = crate::lifecycle::provisioning::run(job, progress, notify)
        .await
        .map_err(|mut e| {
            // The guard step failed: a runner runs there, so it may have a job.
            if e.message.contains(plan.idle_step) {
                e.kind = ErrorKind::Busy;
                e.message = format!(
                    "{name}: a runner is running in the guest (it may be given a job at any moment); stop the VM first (marblectl vm stop {name}: the stop deletes its registration)"
                );
            }
            e
        })?;
    let changed = run
        .steps
        .iter()
        .any(|s| s.outcome == "ran" && plan.changing_steps.contains(&s.name.as_str()));
    ci::record_runner_version(&runners, &name, &plan.version);
    Ok::<_, WireError>(RunnerInstallResult {
        version: plan.version,
        changed,
        cached: plan.cached,
        run,
    })
}
