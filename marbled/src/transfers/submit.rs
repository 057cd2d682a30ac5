//! Starting a transfer (feature `s3`): check an image request against the running transfers,
//! their holds and the VMs ([`Transfers::plan`]), then record it and spawn its job
//! ([`Transfers::start`]).

use marble_proto::{ErrorKind, Event, Request, Response, TransferInfo, WireError};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::run::{self, Plan};
use super::{Done, Running, Snapshot, SubmitEnv, Transfers};
use crate::chain::to_wire;
use crate::clock::now_ms;
use crate::images::ImageName;

fn parse(name: &str) -> Result<ImageName, WireError> {
    ImageName::parse(name).map_err(|e| to_wire(ErrorKind::InvalidRequest, &e))
}

impl Transfers {
    fn image_busy(&self, image: &str) -> Option<WireError> {
        self.running.values().find(|r| r.info.image == image).map(|r| {
            WireError::new(
                ErrorKind::InvalidState,
                format!(
                    "image {image} is in transfer #{} ({} by {}); wait for it (marblectl image transfers)",
                    r.info.id, r.info.kind, r.info.by
                ),
            )
        })
    }

    /// Check a request against the current state and decide what to run and hold.
    pub(super) fn plan<C>(
        &self,
        env: &SubmitEnv<'_, C>,
        request: &Request,
    ) -> Result<Plan, WireError> {
        match request {
            Request::ImagePush { vm, name, detach } => {
                self.plan_push(env, vm, name.as_deref(), *detach)
            }
            Request::ImagePull {
                name,
                as_name,
                detach,
            } => self.plan_pull(env, name, as_name.as_deref(), *detach),
            Request::ImageVerify { name, detach } => {
                let image = parse(name)?;
                Ok(Plan::Verify {
                    image,
                    detach: *detach,
                })
            }
            Request::ImageRemove { name } => {
                let image = parse(name)?;
                if let Some(err) = self.image_busy(image.as_str()) {
                    return Err(err);
                }
                Ok(Plan::Remove { image })
            }
            Request::ImageList { team } => Ok(Plan::List { team: team.clone() }),
            other => Err(WireError::new(
                ErrorKind::Internal,
                format!("{} is not an image request", other.kind()),
            )),
        }
    }

    /// A push: a known, stopped VM, a free image and clone name, and an idle host.
    fn plan_push<C>(
        &self,
        env: &SubmitEnv<'_, C>,
        vm: &str,
        name: Option<&str>,
        detach: bool,
    ) -> Result<Plan, WireError> {
        let Some(vm) = (env.resolve)(vm) else {
            let known: Vec<&str> = env.vms.iter().map(|v| v.name.as_str()).collect();
            return Err(WireError::new(
                ErrorKind::NotFound,
                format!("unknown VM {vm:?}; known VMs: {}", known.join(", ")),
            ));
        };
        let image = match name {
            Some(n) => parse(n)?,
            None => ImageName::for_vm(
                &run::today_utc(),
                crate::images::vm::pure_name(&vm, env.host),
            )
            .map_err(|e| to_wire(ErrorKind::InvalidRequest, &e))?,
        };
        if let Some(r) = self.holder(&vm) {
            return Err(WireError::new(
                ErrorKind::InvalidState,
                format!("{vm} is already in image {} #{}", r.info.kind, r.info.id),
            ));
        }
        if let Some(err) = self.image_busy(image.as_str()) {
            return Err(err);
        }
        if let Some(r) = self.host_holder() {
            return Err(WireError::new(
                ErrorKind::Busy,
                format!(
                    "image push #{} is scrubbing its clone; try again when it uploads",
                    r.info.id
                ),
            ));
        }
        if let Some(v) = env.vms.iter().find(|v| v.name == vm)
            && v.power != marble_proto::PowerState::Stopped
        {
            return Err(WireError::new(
                ErrorKind::InvalidState,
                format!(
                    "{vm} is {}; only a stopped VM can be pushed (marblectl vm stop {vm})",
                    v.power.as_word()
                ),
            ));
        }
        if let Some(v) = env.vms.iter().find(|v| v.name == image.as_str()) {
            return Err(WireError::new(
                ErrorKind::InvalidState,
                format!(
                    "a VM named {} (the push clone's name) exists; remove it first",
                    v.name
                ),
            ));
        }
        // The clone boots with the shared build disk: nothing else may run meanwhile.
        if let Some(v) = env
            .vms
            .iter()
            .find(|v| v.power.occupies_host() || v.operation.is_some())
        {
            let what = match &v.operation {
                Some(op) => format!("{} has a {op} in flight", v.name),
                None => format!("{} is {}", v.name, v.power.as_word()),
            };
            return Err(WireError::new(
                ErrorKind::Busy,
                format!(
                    "host busy: {what}; a push boots a scrubbing clone and the host runs one VM at a time (marblectl pause, then stop it, or drain first)"
                ),
            ));
        }
        Ok(Plan::Push { vm, image, detach })
    }

    /// A pull: the VM name it registers and the image's own name are free and unheld.
    fn plan_pull<C>(
        &self,
        env: &SubmitEnv<'_, C>,
        name: &str,
        as_name: Option<&str>,
        detach: bool,
    ) -> Result<Plan, WireError> {
        let image = parse(name)?;
        let vm_name = as_name
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}-{}", env.host, image.without_date()));
        for n in [vm_name.as_str(), image.as_str()] {
            if env.vms.iter().any(|v| v.name == n) {
                return Err(WireError::new(
                    ErrorKind::InvalidState,
                    format!(
                        "a VM named {n} is already registered; unregister or rename it first, or pull --as another name"
                    ),
                ));
            }
            if let Some(r) = self.holder(n) {
                return Err(WireError::new(
                    ErrorKind::InvalidState,
                    format!("{n} is held by image {} #{}", r.info.kind, r.info.id),
                ));
            }
        }
        if let Some(err) = self.image_busy(image.as_str()) {
            return Err(err);
        }
        Ok(Plan::Pull {
            image,
            vm_name,
            detach,
        })
    }

    /// Record the transfer and its holds, spawn its job, answer `done` now if it detaches.
    pub(super) fn start<C: Send + 'static>(
        &mut self,
        env: SubmitEnv<'_, C>,
        caller: String,
        plan: Plan,
        progress: mpsc::Sender<Event>,
        done: Done,
    ) {
        let job = run::Job {
            hv: env.ctx.hv.clone(),
            images: env.ctx.images.clone(),
            host: env.host.to_owned(),
            wire: self.wire.clone(),
        };
        let Some((kind, subject, image, holds, host_hold, detach)) = plan.transfer() else {
            // List and remove: one S3 call or a few, answered by a plain job.
            let span = tracing::info_span!("image", op = plan.kind());
            env.jobs.spawn(
                async move {
                    let _ = done.send(job.quick(plan).await);
                }
                .instrument(span),
            );
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        let info = TransferInfo {
            id,
            kind: kind.to_owned(),
            subject,
            image,
            by: caller,
            started_ms: now_ms(),
            phase: "queued".into(),
            done: 0,
            total: 0,
            finished_ms: 0,
            error: None,
        };
        tracing::info!(transfer = id, kind, image = %info.image, subject = %info.subject, by = %info.by, "transfer started");
        let (progress_tx, progress_rx) = watch::channel(Snapshot {
            phase: "queued",
            done: 0,
            total: 0,
        });
        let follower = if detach {
            let _ = done.send(Ok(Response::TransferStarted(info.clone())));
            None
        } else {
            Some((progress, done))
        };
        self.running.insert(
            id,
            Running {
                info,
                progress: progress_rx,
                holds,
                host_hold,
            },
        );
        let ctl = run::Control {
            id,
            cancel: self.cancel.clone(),
            report: env.report,
            wrap: env.wrap,
            host_hold,
        };
        let span = tracing::info_span!("transfer", id, kind);
        env.jobs
            .spawn(run::transfer(job, plan, ctl, progress_tx, follower).instrument(span));
    }
}
