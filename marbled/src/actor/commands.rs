//! Requests from connections: routing each [`ActorCommand`] (to the transfers, the
//! lifecycle jobs, the fleet reader or the scheduler), translating scheduler requests into
//! [`Command`]s, and the demand snapshots the poller feeds.

use marble_proto::{ErrorKind, LockTarget, Request, Team, UnlockTarget, WireError};

use super::handle::ActorCommand;
use super::{Completion, Supervisor, Waiter, lifecycle, now_ms};
use crate::demand::{JenkinsDemand, OfflineSeen, PollQuota};
use crate::jobs::{ci, s3};
use crate::sched::{Command, DemandSnapshot, Input, ReqId, World};
use crate::transfers::{SubmitEnv, Transfers};

impl Supervisor {
    pub(super) fn on_command(&mut self, cmd: ActorCommand) {
        match cmd {
            ActorCommand::Query { request, reply } => {
                let _ = reply.send(self.query(&request));
            }
            ActorCommand::Submit {
                req,
                caller,
                request: Request::FleetList,
                waiter,
            } => {
                tracing::debug!(req = req.0, user = %caller, "request: fleet_list");
                s3::spawn_list(&self.jobs, self.fleet.clone(), waiter.done);
            }
            cmd @ ActorCommand::Submit { .. }
                if self.defers_transfer(&cmd) || self.defers_until_inventory(&cmd) =>
            {
                self.deferred_transfers.push(cmd);
            }
            ActorCommand::Submit {
                req,
                caller,
                request,
                waiter,
            } => self.on_submit(req, caller, request, waiter),
            ActorCommand::Cancel { req } => {
                if self.waiting.remove(&req).is_some() {
                    let effects = self.world.handle(now_ms(), Input::Cancelled { req });
                    self.apply(effects);
                }
            }
            ActorCommand::Watch { events } => self.watchers.push(events),
            ActorCommand::Demand {
                github,
                jenkins,
                quota,
                offline,
            } => self.on_demand(github, jenkins, quota, offline),
            ActorCommand::DemandPoller(seen) => self.demand_poller = seen,
            ActorCommand::SetFleet(fleet) => self.fleet = fleet,
            ActorCommand::Reconfigure { sched, ctx } => {
                tracing::info!("configuration reloaded");
                self.world.reconfigure(*sched);
                self.ctx = ctx;
                self.refresh_inventory();
            }
        }
    }

    /// A request that changes something: an image transfer, a lifecycle request, or a
    /// scheduler command (unless a provisioning run or a transfer refuses it).
    fn on_submit(&mut self, req: ReqId, caller: String, request: Request, waiter: Waiter) {
        if Transfers::handles(&request) {
            tracing::info!(req = req.0, user = %caller, kind = request.kind(), "request");
            let world = &self.world;
            let resolve = |vm: &str| world.resolve(vm);
            let env = SubmitEnv {
                jobs: &self.jobs,
                ctx: &self.ctx,
                host: &self.identity.host,
                vms: world.vms(now_ms()),
                resolve: &resolve,
                report: self.completions_tx.clone(),
                wrap: Completion::Transfer,
            };
            self.transfers
                .submit(env, caller, &request, waiter.progress, waiter.done);
            return;
        }
        if lifecycle::handles(&request) {
            self.submit_lifecycle(req, &caller, request, waiter);
            return;
        }
        match self.to_command(&request) {
            Ok(cmd) if let Some(err) = self.lifecycle.refuse_command(&cmd) => {
                tracing::info!(req = req.0, user = %caller, kind = request.kind(), error = %err, "refused: provisioning");
                let _ = waiter.done.send(Err(err));
            }
            Ok(cmd) if let Some(err) = self.transfers.refuse_command(&cmd) => {
                tracing::info!(req = req.0, user = %caller, kind = request.kind(), error = %err, "refused: image transfer");
                let _ = waiter.done.send(Err(err));
            }
            Ok(cmd) => {
                tracing::info!(req = req.0, user = %caller, kind = request.kind(), "request");
                let world = &self.world;
                ci::mirror_drain(&self.ctx.jenkins, &self.jobs, &cmd, &caller, || {
                    spi_vms(world)
                });
                self.waiting.insert(req, waiter);
                let effects = self
                    .world
                    .handle(now_ms(), Input::Command { req, caller, cmd });
                self.apply(effects);
            }
            Err(err) => {
                let _ = waiter.done.send(Err(err));
            }
        }
    }

    /// Fresh answers from the demand sources: the Jenkins queue, GitHub's rate limit and
    /// offline runners are kept for the metrics; a GitHub snapshot goes to the scheduler.
    fn on_demand(
        &mut self,
        github: Option<Box<DemandSnapshot>>,
        jenkins: Option<JenkinsDemand>,
        quota: Option<PollQuota>,
        offline: Option<OfflineSeen>,
    ) {
        if jenkins.is_some() {
            self.jenkins_queue = jenkins;
        }
        if quota.is_some() {
            self.github_quota = quota;
        }
        if offline.is_some() {
            self.github_offline = offline;
        }
        if let Some(mut snapshot) = github {
            self.keep_jobs_started_here(&mut snapshot);
            let now = now_ms();
            // The fair share ages Jenkins' waiters by the queue (every host polls the same),
            // only while the last answer still stands for it (`waiting_at`).
            snapshot.jenkins_queue = (self.jenkins_queue.as_ref())
                .map(|queue| queue.waiting_at(now))
                .unwrap_or_default();
            // Known empty until the last answer goes stale (a few polls: failing ones leave
            // it in place), and only from an answer still fresh now.
            snapshot.jenkins_idle_until_ms = match &self.jenkins_queue {
                Some(queue) if queue.idle_at(now) => queue.known_until_ms,
                _ => 0,
            };
            snapshot.jenkins_idle_agents = (self.jenkins_queue.as_ref())
                .map(|queue| queue.idle_agents_at(now))
                .unwrap_or_default();
            snapshot.jenkins_offline_nodes = (self.jenkins_queue.as_ref())
                .map(|queue| queue.offline_agents_at(now))
                .unwrap_or_default();
            let effects = self.world.handle(now, Input::Demand(snapshot));
            self.apply(effects);
        }
    }

    /// Narrow the snapshot's running jobs with a runner to those whose runner is a
    /// registration of one of this host's VMs, or the runner of a VM kept across a restart
    /// (the job waits the metrics count); name this host's VMs' current runners
    /// (`runners_here`: from the registrations, or for a VM the records do not know — kept
    /// across a restart — from the names the poll saw); and through those names, this
    /// host's VMs whose current runner the feed shows has taken its job (`used_here`: the
    /// scheduler stops them once idle instead of keeping them for a matching job) or
    /// finished it (`done_here`: probed at once). A runner kept across a restart that takes
    /// a job is spent like any other (before, only a probe that saw its job running marked
    /// it).
    fn keep_jobs_started_here(&self, snapshot: &mut DemandSnapshot) {
        let seen: Vec<&str> = (snapshot.free_runners.iter())
            .map(|runner| runner.name.as_str())
            .chain(snapshot.taken_runners.iter().map(String::as_str))
            .chain(snapshot.done_runners.iter().map(String::as_str))
            .collect();
        let names =
            ci::runner_names_here(&self.ctx.runners, &self.teams, &seen).unwrap_or_default();
        let here = |runners: &[String]| -> Vec<String> {
            (names.iter())
                .filter(|(_, runner)| runners.contains(runner))
                .map(|(vm, _)| vm.clone())
                .collect()
        };
        snapshot.used_here = here(&snapshot.taken_runners);
        snapshot.done_here = here(&snapshot.done_runners);
        // The last inventory's teams: no status report built for every snapshot.
        match ci::runners_started_here(&self.ctx.runners, &self.teams) {
            Some(ours) => snapshot.started_here.retain(|job| {
                ours.contains(&job.runner) || names.values().any(|n| *n == job.runner)
            }),
            // No runner registrations of our own: no job is known to be this host's.
            None => snapshot.started_here.clear(),
        }
        // The staggered yield ranks this host's runners by the names other hosts see.
        snapshot.runners_here = names;
    }

    /// Translate a mutating request into a scheduler command, resolving VM names.
    fn to_command(&self, request: &Request) -> Result<Command, WireError> {
        Ok(match request {
            Request::StartVm { vm } => Command::StartVm {
                vm: self.resolve(vm)?,
            },
            Request::StopVm { vm, force } => Command::StopVm {
                vm: self.resolve(vm)?,
                force: *force,
            },
            Request::RequestSlot { vm, wait_ms } => Command::RequestSlot {
                // Before the first inventory the scheduler holds the request (within its
                // wait) and resolves the name once the VMs are listed.
                vm: if self.world.has_inventory() {
                    self.resolve(vm)?
                } else {
                    vm.clone()
                },
                wait_ms: *wait_ms,
            },
            Request::Pause { reason } => Command::Pause {
                reason: reason.clone(),
            },
            Request::Resume => Command::Resume,
            Request::Lock { target, reason } => Command::Lock {
                target: match target {
                    LockTarget::Vm(vm) => LockTarget::Vm(self.resolve(vm)?),
                    LockTarget::AllExcept(vm) => LockTarget::AllExcept(self.resolve(vm)?),
                },
                reason: reason.clone(),
            },
            Request::Unlock { target } => Command::Unlock {
                target: match target {
                    UnlockTarget::Vm(vm) => UnlockTarget::Vm(self.resolve(vm)?),
                    UnlockTarget::All => UnlockTarget::All,
                },
            },
            Request::Drain { reason, wait_ms } => Command::Drain {
                reason: reason.clone(),
                wait_ms: *wait_ms,
            },
            Request::Status
            | Request::ListVms
            | Request::ShowVm { .. }
            | Request::WatchEvents
            | Request::ImagePush { .. }
            | Request::ImagePull { .. }
            | Request::ImageList { .. }
            | Request::ImageRemove { .. }
            | Request::ImageVerify { .. }
            | Request::Transfers
            | Request::CreateVm { .. }
            | Request::ProvisionVm { .. }
            | Request::HostCheck
            | Request::MigrateCheck
            | Request::FleetList
            | Request::Metrics
            | Request::CiStatus
            | Request::RunnerInstall { .. }
            | Request::RunnerStatus
            | Request::DemandPoller => {
                return Err(WireError::new(
                    ErrorKind::Internal,
                    format!("{} is not a scheduler command", request.kind()),
                ));
            }
        })
    }
}

/// The SPI VMs (whose Jenkins nodes a drain marks offline).
fn spi_vms(world: &World) -> Vec<String> {
    world
        .vms(now_ms())
        .into_iter()
        .filter(|vm| vm.team == Team::Spi)
        .map(|vm| vm.name)
        .collect()
}
