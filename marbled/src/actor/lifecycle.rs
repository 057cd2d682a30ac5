//! The actor's side of [`crate::lifecycle`]: validating `CreateVm`/`ProvisionVm`/`HostCheck`/`MigrateCheck`
//! against the scheduler's state, taking locks and holds, and spawning the jobs. A child
//! module of `actor` (it reads the supervisor's fields); nothing here awaits. The lifecycle
//! module itself never sees the actor: its jobs report through [`Completion::Lifecycle`].

use marble_proto::{ErrorKind, LockTarget, PowerState, Request, UnlockTarget, WireError};
use tracing::Instrument;

use super::{Completion, Supervisor, Waiter, now_ms};
use crate::jobs::s3;
use crate::lifecycle::provisioning::{ProvisionJob, ProvisionNotice};
use crate::lifecycle::{Lifecycle, LifecycleEvent, check, create, migrate};
use crate::provision::Profile;
use crate::sched::{Command, Input, ReqId};

impl Supervisor {
    /// Answer a lifecycle request; `waiter.done` is always answered (now or by the job).
    pub(super) fn submit_lifecycle(
        &mut self,
        req: ReqId,
        caller: &str,
        request: Request,
        waiter: Waiter,
    ) {
        tracing::info!(req = req.0, user = %caller, kind = request.kind(), "request");
        let result = match request {
            Request::CreateVm {
                name,
                ipsw,
                team,
                cpus,
                memory_mib,
            } => self.start_create(req, caller, &name, &ipsw, team, cpus, memory_mib, waiter),
            Request::ProvisionVm { vm, profile } => match Profile::from_upload(&profile) {
                Ok(profile) => self.start_provision(caller, &vm, profile, waiter),
                Err(e) => Err((crate::chain::to_wire(ErrorKind::InvalidRequest, &e), waiter)),
            },
            Request::HostCheck => {
                self.start_check(waiter);
                Ok(())
            }
            Request::MigrateCheck => {
                self.start_migrate_check(waiter);
                Ok(())
            }
            Request::RunnerInstall { vm, upgrade } => {
                self.start_runner_install(caller, &vm, upgrade, waiter)
            }
            other => Err((
                WireError::new(
                    ErrorKind::Internal,
                    format!("{} is not a lifecycle request", other.kind()),
                ),
                waiter,
            )),
        };
        if let Err((err, waiter)) = result {
            tracing::info!(req = req.0, error = %err, "lifecycle request refused");
            let _ = waiter.done.send(Err(err));
        }
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the request's fields, unpacked once"
    )]
    #[allow(
        clippy::result_large_err,
        reason = "hands the waiter back to answer it"
    )]
    fn start_create(
        &mut self,
        req: ReqId,
        caller: &str,
        name: &str,
        ipsw: &str,
        team: marble_proto::Team,
        cpus: Option<u32>,
        memory_mib: Option<u64>,
        waiter: Waiter,
    ) -> Result<(), (WireError, Waiter)> {
        let host_cfg = self.host_cfg.clone();
        let images_disk = s3::build_disk(&self.ctx.images);
        let facts = create::HostFacts::probe(
            host_cfg.memory_reserve_mib,
            host_cfg.build_disk(images_disk.as_ref()),
        );
        let vms = self.world.vms(now_ms());
        let plan = match create::plan(
            name,
            ipsw,
            team,
            cpus,
            memory_mib,
            &self.ctx.teams,
            &vms,
            &facts,
        ) {
            Ok(p) => p,
            Err(e) => return Err((e, waiter)),
        };
        if !self.lifecycle.begin_create(name) {
            return Err((
                WireError::new(
                    ErrorKind::InvalidState,
                    format!("{name} is already being created"),
                ),
                waiter,
            ));
        }
        // Lock the name before the VM exists, so the first inventory that sees it never lets
        // the cycle boot a VM whose OS is not even installed.
        let locked_here = !self.world.persisted().locks.contains_key(name);
        if locked_here {
            let cmd = Command::Lock {
                target: LockTarget::Vm(name.to_owned()),
                reason: format!(
                    "new VM created by {caller}: first boot, setup and provisioning are manual; unlock when done"
                ),
            };
            let effects = self.world.handle(
                now_ms(),
                Input::Command {
                    req,
                    caller: caller.to_owned(),
                    cmd,
                },
            );
            // `req` is not in `waiting`: the lock's own reply is dropped; the persist stays.
            self.apply(effects);
        }
        let hv = self.ctx.hv.clone();
        let tx = self.completions_tx.clone();
        let vm = name.to_owned();
        let ci_user = host_cfg.ci_user.clone();
        let timeout = host_cfg.create_timeout;
        let span = tracing::info_span!("create", vm = %vm);
        self.jobs.spawn(
            async move {
                let outcome = create::run(hv, plan, ci_user, timeout).await;
                let ok = outcome.vm_exists;
                let _ = waiter
                    .done
                    .send(outcome.result.map(marble_proto::Response::VmCreated));
                let event = LifecycleEvent::Created {
                    vm,
                    ok,
                    locked_here,
                };
                let _ = tx.send(Completion::Lifecycle(event)).await;
            }
            .instrument(span),
        );
        Ok(())
    }

    #[allow(
        clippy::result_large_err,
        reason = "hands the waiter back to answer it"
    )]
    fn start_provision(
        &mut self,
        caller: &str,
        vm: &str,
        profile: Profile,
        waiter: Waiter,
    ) -> Result<(), (WireError, Waiter)> {
        let Some(name) = self.world.resolve(vm) else {
            return Err((self.not_found(vm), waiter));
        };
        let start = match self.provision_start(&name, vm) {
            Ok(start) => start,
            Err(e) => return Err((e, waiter)),
        };
        let id = match self.lifecycle.begin_provision(&name, caller) {
            Ok(id) => id,
            Err(e) => return Err((e, waiter)),
        };
        let job = ProvisionJob {
            hv: self.ctx.hv.clone(),
            vm: name.clone(),
            profile,
            start,
            boot_timeout: self.host_cfg.boot_timeout,
        };
        let tx = self.completions_tx.clone();
        let span = tracing::info_span!("provision", run = id, vm = %name);
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
                let result =
                    crate::lifecycle::provisioning::run(job, waiter.progress, notify).await;
                match &result {
                    Ok(r) => tracing::info!(steps = r.steps.len(), "provisioning done"),
                    Err(e) => tracing::warn!(error = %e, "provisioning failed"),
                }
                let _ = waiter
                    .done
                    .send(result.map(marble_proto::Response::Provisioned));
                let _ = tx
                    .send(Completion::Lifecycle(LifecycleEvent::ProvisionFinished {
                        id,
                    }))
                    .await;
            }
            .instrument(span),
        );
        Ok(())
    }

    /// Whether `name` can be provisioned now (`vm` as the client named it): not being
    /// created, not held by a transfer, no operation in flight, running or startable, and
    /// the host not occupied by another VM. `Some(resume)`: start it first (resuming it).
    pub(super) fn provision_start(&self, name: &str, vm: &str) -> Result<Option<bool>, WireError> {
        if self.lifecycle.creating(name) {
            return Err(WireError::new(
                ErrorKind::InvalidState,
                format!("{name} is still being created"),
            ));
        }
        // An image transfer holding the VM refuses a stop of it: the same test.
        let stop = Command::StopVm {
            vm: name.to_owned(),
            force: true,
        };
        if let Some(err) = self.transfers.refuse_command(&stop) {
            return Err(err);
        }
        let vms = self.world.vms(now_ms());
        let Some(me) = vms.iter().find(|v| v.name == name) else {
            return Err(self.not_found(vm));
        };
        if let Some(op) = &me.operation {
            return Err(WireError::new(
                ErrorKind::InvalidState,
                format!("{name} has a {op} in flight; try again when it ends"),
            ));
        }
        let start = match me.power {
            PowerState::Running => None,
            PowerState::Stopped => Some(false),
            PowerState::Suspended | PowerState::Paused => Some(true),
            ref other => {
                return Err(WireError::new(
                    ErrorKind::InvalidState,
                    format!(
                        "{name} is {}; provision a running or stopped VM",
                        other.as_word()
                    ),
                ));
            }
        };
        // The run occupies the host: refuse while another VM holds it.
        if let Some(other) = vms
            .iter()
            .find(|v| v.name != name && (v.power.occupies_host() || v.operation.is_some()))
        {
            return Err(WireError::new(
                ErrorKind::Busy,
                format!(
                    "host busy: {} is {}; the host runs one VM at a time (marblectl drain, or stop it first)",
                    other.name,
                    other
                        .operation
                        .clone()
                        .unwrap_or_else(|| other.power.as_word().to_owned())
                ),
            ));
        }
        Ok(start)
    }

    fn start_check(&mut self, waiter: Waiter) {
        let env = check::CheckEnv {
            hv: self.ctx.hv.clone(),
            host_cfg: self.host_cfg.clone(),
            tool_env: self.tool_env.clone(),
            host: self.identity.host.clone(),
            images_build_disk: s3::build_disk(&self.ctx.images),
            bundles_dir: s3::bundles_dir(&self.ctx.images),
            images: self.ctx.images.clone(),
            github: self.ctx.runners.clone(),
        };
        self.jobs.spawn(
            async move {
                let report = check::run(env).await;
                let _ = waiter
                    .done
                    .send(Ok(marble_proto::Response::HostReport(report)));
            }
            .instrument(tracing::info_span!("host_check")),
        );
    }

    fn start_migrate_check(&mut self, waiter: Waiter) {
        let runners = self.ctx.runners.is_some().then(|| {
            self.github_offline
                .as_ref()
                .map_or((Vec::new(), 0), |seen| {
                    (seen.runners.clone(), seen.polled_ms)
                })
        });
        let env = migrate::MigrateEnv {
            hv: self.ctx.hv.clone(),
            vms: self.world.vms(now_ms()),
            found_running: self.world.found_running(),
            runners,
            home: std::env::var_os("HOME").map(std::path::PathBuf::from),
            bundles_dir: s3::bundles_dir(&self.ctx.images),
        };
        self.jobs.spawn(
            async move {
                let report = migrate::run(env).await;
                let _ = waiter
                    .done
                    .send(Ok(marble_proto::Response::HostReport(report)));
            }
            .instrument(tracing::info_span!("migrate_check")),
        );
    }

    /// A lifecycle job reported.
    pub(super) fn on_lifecycle_event(&mut self, event: &LifecycleEvent) {
        if let LifecycleEvent::Created {
            vm,
            ok: false,
            locked_here: true,
        } = event
        {
            // Nothing was created: drop the lock taken for the name.
            let effects = self.world.handle(
                now_ms(),
                Input::Command {
                    req: ReqId(u64::MAX),
                    caller: "marbled".into(),
                    cmd: Command::Unlock {
                        target: UnlockTarget::Vm(vm.clone()),
                    },
                },
            );
            self.apply(effects);
        }
        if self.lifecycle.on_event(event) {
            self.refresh_inventory();
        }
    }
}

/// Whether `request` is answered by [`Supervisor::submit_lifecycle`].
pub(super) fn handles(request: &Request) -> bool {
    Lifecycle::handles(request)
}
