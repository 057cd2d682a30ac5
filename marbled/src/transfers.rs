//! Image transfers (`marblectl image …`) as daemon jobs, and the holds they put on VMs.
//!
//! Owns: the table of running and recently finished transfers, the names of VMs held for a
//! transfer, and the host-wide hold while a push's scrubbing clone runs. The actor owns one
//! [`Transfers`] and consults it before scheduler commands ([`Transfers::refuse_command`]) and
//! scheduler actions ([`Transfers::blocks_action`]); it never awaits anything here.
//!
//! A transfer is a task on the actor's `TaskTracker`. It owns the request's terminal-answer
//! channel, so a client that disconnects only stops following: the transfer goes on (the
//! connection's `Cancel` never reaches it), and `detach` answers `TransferStarted` at once.
//! Progress goes through a `watch` (latest value wins, so a fast transfer never queues
//! progress) that `Transfers` reads for `Transfers` queries and the job forwards to the
//! follower at most every [`PROGRESS_INTERVAL`]. The job reports back to the actor through
//! the actor's bounded completions channel: [`TransferEvent::Prepared`] when a push's clone is
//! stopped (the host may start VMs again), [`TransferEvent::Finished`] at the end.
//!
//! Holds: a push holds its VM (starts, stops and slot requests for it are refused with
//! `Locked`) and the clone's name, and holds the whole host while the clone runs, because the
//! clone boots with the shared build disk and the host runs one VM at a time (a push is
//! refused with `Busy` while any VM occupies the host). A pull holds the name it registers.
//! S3 access only happens in the jobs (module `crate::images`, feature `s3`); secrets never
//! reach this module.
//!
//! Metrics ([`Transfers::metrics`]): transfers running and ended per kind, and the object
//! bytes every job's S3 client moved (an `images::WireBytes` shared by all jobs, added to per
//! request as it completes, so a long push counts while it runs and a resumed one counts only
//! what it sends again). Without feature `s3` no transfer can start and all of them are 0.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use marble_proto::{ErrorKind, Event, Request, Response, TransferInfo, VmInfo, WireError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
#[cfg(feature = "s3")]
use tracing::Instrument;

use crate::actor::now_ms;
use crate::jobs::JobContext;
use crate::sched::{Action, Command};

/// Finished transfers kept for `marblectl image transfers` / `status`.
pub const FINISHED_KEPT: usize = 16;
/// Most frequent progress forwarded to a following client (phase changes always go out).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// Transfer kinds, each exported by the metrics even before its first transfer.
pub const KINDS: [&str; 3] = ["push", "pull", "verify"];

/// What the metrics export about transfers (since the daemon started).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferMetrics {
    /// Object bytes sent to S3 (part uploads, manifests), per successful request.
    pub bytes_sent: u64,
    /// Object bytes received from S3 (ranges, manifests), per successful request.
    pub bytes_received: u64,
    /// One row per kind: every one of [`KINDS`], then any other kind seen.
    pub kinds: Vec<KindCounts>,
}

/// Transfers of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindCounts {
    /// `push`, `pull` or `verify`.
    pub kind: String,
    /// Running now.
    pub running: u64,
    /// Ended without error.
    pub ok: u64,
    /// Ended with an error (including those interrupted by a daemon shutdown).
    pub failed: u64,
}

/// Latest progress of one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Stage name (`prepare`, `upload`, …).
    pub phase: &'static str,
    /// Bytes done in this stage.
    pub done: u64,
    /// Bytes expected in this stage (0 unknown).
    pub total: u64,
}

/// What a transfer job reports to the actor.
#[derive(Debug)]
pub enum TransferEvent {
    /// A push's clone is stopped: lift the host-wide hold.
    Prepared {
        /// Transfer id.
        id: u64,
    },
    /// The job ended (its client, if any, has its answer).
    Finished {
        /// Transfer id.
        id: u64,
        /// The error chain when it failed.
        error: Option<String>,
    },
}

struct Running {
    info: TransferInfo,
    progress: watch::Receiver<Snapshot>,
    /// VM names nothing may start or stop while this runs.
    holds: Vec<String>,
    /// No VM may start (the push's clone runs).
    host_hold: bool,
}

/// What [`Transfers::submit`] needs from the actor.
pub struct SubmitEnv<'a, C> {
    /// The actor's job tracker (waited for at shutdown).
    pub jobs: &'a TaskTracker,
    /// Hypervisor and image settings.
    pub ctx: &'a JobContext,
    /// This host's name.
    pub host: &'a str,
    /// The scheduler's current view of the VMs.
    pub vms: Vec<VmInfo>,
    /// Resolves a VM name or UUID to its name.
    pub resolve: &'a dyn Fn(&str) -> Option<String>,
    /// The actor's completions channel.
    pub report: mpsc::Sender<C>,
    /// Wraps a [`TransferEvent`] as a completion.
    pub wrap: fn(TransferEvent) -> C,
}

/// Running and finished transfers plus the holds they put on VMs.
#[derive(Default)]
pub struct Transfers {
    // Used only by `submit`, which exists with feature `s3`.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    next_id: u64,
    running: BTreeMap<u64, Running>,
    finished: VecDeque<TransferInfo>,
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    cancel: CancellationToken,
    /// Ended transfers by kind: (ok, failed) (one entry per kind, so bounded).
    ended: BTreeMap<String, (u64, u64)>,
    /// Object bytes moved by every job's S3 client.
    #[cfg(feature = "s3")]
    wire: std::sync::Arc<crate::images::WireBytes>,
}

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfers")
            .field("running", &self.running.len())
            .finish_non_exhaustive()
    }
}

/// The answer channel of one request.
pub type Done = oneshot::Sender<Result<Response, WireError>>;

impl Transfers {
    /// `cancel` interrupts every transfer (daemon shutdown); they resume when run again.
    pub fn new(cancel: CancellationToken) -> Self {
        Self {
            next_id: 1,
            cancel,
            ..Self::default()
        }
    }

    /// Whether this module answers `request` (rather than the scheduler).
    pub fn handles(request: &Request) -> bool {
        matches!(
            request,
            Request::ImagePush { .. }
                | Request::ImagePull { .. }
                | Request::ImageList { .. }
                | Request::ImageRemove { .. }
                | Request::ImageVerify { .. }
                | Request::Transfers
        )
    }

    fn holder(&self, vm: &str) -> Option<&Running> {
        self.running
            .values()
            .find(|r| r.holds.iter().any(|h| h == vm))
    }

    fn host_holder(&self) -> Option<&Running> {
        self.running.values().find(|r| r.host_hold)
    }

    /// Refusal of a scheduler command that would start or stop a held VM, or start any VM
    /// while a push's clone runs.
    pub fn refuse_command(&self, cmd: &Command) -> Option<WireError> {
        let (vm, starts) = match cmd {
            Command::StartVm { vm } | Command::RequestSlot { vm, .. } => (vm, true),
            Command::StopVm { vm, .. } => (vm, false),
            _ => return None,
        };
        if let Some(r) = self.holder(vm) {
            return Some(WireError::new(
                ErrorKind::Locked,
                format!(
                    "{vm} is held by image {} #{} ({}, by {}); it cannot start or stop until the transfer ends",
                    r.info.kind, r.info.id, r.info.image, r.info.by
                ),
            ));
        }
        if starts && let Some(r) = self.host_holder() {
            return Some(WireError::new(
                ErrorKind::Busy,
                format!(
                    "host busy: image push #{} is scrubbing its clone {} (one VM at a time); try again in a few minutes",
                    r.info.id, r.info.image
                ),
            ));
        }
        None
    }

    /// Why the scheduler's `action` on `vm` must not run now, if it must not.
    pub fn blocks_action(&self, vm: &str, action: &Action) -> Option<String> {
        let starts = matches!(action, Action::Start | Action::Resume);
        let stops = matches!(action, Action::Stop(_));
        if (starts || stops)
            && let Some(r) = self.holder(vm)
        {
            return Some(format!(
                "held by image {} #{} ({})",
                r.info.kind, r.info.id, r.info.image
            ));
        }
        if starts && let Some(r) = self.host_holder() {
            return Some(format!(
                "host held by image push #{} while its clone {} is scrubbed",
                r.info.id, r.info.image
            ));
        }
        None
    }

    /// Running transfers (oldest first), then finished ones (newest first).
    pub fn list(&self) -> Vec<TransferInfo> {
        let mut out: Vec<TransferInfo> = self
            .running
            .values()
            .map(|r| {
                let p = *r.progress.borrow();
                TransferInfo {
                    phase: p.phase.to_owned(),
                    done: p.done,
                    total: p.total,
                    ..r.info.clone()
                }
            })
            .collect();
        out.extend(self.finished.iter().cloned());
        out
    }

    /// A job reported; returns whether the VM inventory should be refreshed.
    pub fn on_event(&mut self, event: TransferEvent) -> bool {
        match event {
            TransferEvent::Prepared { id } => {
                if let Some(r) = self.running.get_mut(&id) {
                    r.host_hold = false;
                    tracing::info!(transfer = id, "push clone stopped; host released");
                }
                true
            }
            TransferEvent::Finished { id, error } => {
                let Some(r) = self.running.remove(&id) else {
                    return false;
                };
                let p = *r.progress.borrow();
                let ended = self.ended.entry(r.info.kind.clone()).or_default();
                if error.is_some() {
                    ended.1 += 1;
                } else {
                    ended.0 += 1;
                }
                let info = TransferInfo {
                    phase: if error.is_some() { "failed" } else { "done" }.to_owned(),
                    done: p.done,
                    total: p.total,
                    finished_ms: now_ms(),
                    error,
                    ..r.info
                };
                match &info.error {
                    Some(err) => {
                        tracing::warn!(transfer = id, kind = %info.kind, image = %info.image, error = %err, "transfer failed");
                    }
                    None => {
                        tracing::info!(transfer = id, kind = %info.kind, image = %info.image, "transfer done");
                    }
                }
                self.finished.push_front(info);
                self.finished.truncate(FINISHED_KEPT);
                true
            }
        }
    }

    /// The counters and gauges [`crate::metrics`] exports.
    pub fn metrics(&self) -> TransferMetrics {
        let mut kinds: Vec<KindCounts> = KINDS
            .iter()
            .map(|k| KindCounts {
                kind: (*k).to_owned(),
                ..KindCounts::default()
            })
            .collect();
        let seen = self.running.values().map(|r| r.info.kind.as_str());
        for kind in seen.chain(self.ended.keys().map(String::as_str)) {
            if !kinds.iter().any(|k| k.kind == kind) {
                kinds.push(KindCounts {
                    kind: kind.to_owned(),
                    ..KindCounts::default()
                });
            }
        }
        for k in &mut kinds {
            k.running = self
                .running
                .values()
                .filter(|r| r.info.kind == k.kind)
                .count() as u64;
            (k.ok, k.failed) = self.ended.get(&k.kind).copied().unwrap_or_default();
        }
        #[cfg(feature = "s3")]
        let (bytes_sent, bytes_received) = (self.wire.sent(), self.wire.received());
        #[cfg(not(feature = "s3"))]
        let (bytes_sent, bytes_received) = (0, 0);
        TransferMetrics {
            bytes_sent,
            bytes_received,
            kinds,
        }
    }

    /// Answer an image request: validate against the current state, take holds, start the
    /// job. `progress` and `done` are the request's channels; `done` is always answered.
    pub fn submit<C: Send + 'static>(
        &mut self,
        env: SubmitEnv<'_, C>,
        caller: String,
        request: &Request,
        progress: mpsc::Sender<Event>,
        done: Done,
    ) {
        if let Request::Transfers = request {
            let _ = done.send(Ok(Response::Transfers(self.list())));
            return;
        }
        #[cfg(feature = "s3")]
        {
            let plan = match self.plan(&env, request) {
                Ok(plan) => plan,
                Err(err) => {
                    let _ = done.send(Err(err));
                    return;
                }
            };
            self.start(env, caller, plan, progress, done);
        }
        #[cfg(not(feature = "s3"))]
        {
            let _ = (env, caller, progress);
            let _ = done.send(Err(WireError::new(
                ErrorKind::Unsupported,
                "this marbled was built without image support (feature `s3`)",
            )));
        }
    }
}

#[cfg(feature = "s3")]
mod run;

#[cfg(feature = "s3")]
use run::Plan;

#[cfg(feature = "s3")]
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
    fn plan<C>(&self, env: &SubmitEnv<'_, C>, request: &Request) -> Result<Plan, WireError> {
        use crate::images::ImageName;
        let parse = |name: &str| {
            ImageName::parse(name).map_err(|e| crate::chain::to_wire(ErrorKind::InvalidRequest, &e))
        };
        match request {
            Request::ImagePush { vm, name, detach } => {
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
                    .map_err(|e| crate::chain::to_wire(ErrorKind::InvalidRequest, &e))?,
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
                Ok(Plan::Push {
                    vm,
                    image,
                    detach: *detach,
                })
            }
            Request::ImagePull {
                name,
                as_name,
                detach,
            } => {
                let image = parse(name)?;
                let vm_name = as_name
                    .clone()
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
                    detach: *detach,
                })
            }
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

    fn start<C: Send + 'static>(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn running(id: u64, holds: &[&str], host_hold: bool) -> Running {
        let (_tx, rx) = watch::channel(Snapshot {
            phase: "prepare",
            done: 0,
            total: 0,
        });
        Running {
            info: TransferInfo {
                id,
                kind: "push".into(),
                subject: holds.first().map(|s| (*s).to_owned()).unwrap_or_default(),
                image: "2026-01-02-ROOT-VM-macOS-14".into(),
                by: "alice".into(),
                started_ms: 1,
                phase: "prepare".into(),
                done: 0,
                total: 0,
                finished_ms: 0,
                error: None,
            },
            progress: rx,
            holds: holds.iter().map(|s| (*s).to_owned()).collect(),
            host_hold,
        }
    }

    #[test]
    fn held_vm_refuses_start_stop_and_slot_and_host_hold_refuses_other_starts() {
        let mut t = Transfers::new(CancellationToken::new());
        t.running.insert(1, running(1, &["h-ROOT-1"], true));
        let start = Command::StartVm {
            vm: "h-ROOT-1".into(),
        };
        assert_eq!(
            t.refuse_command(&start).map(|e| e.kind),
            Some(ErrorKind::Locked)
        );
        let stop = Command::StopVm {
            vm: "h-ROOT-1".into(),
            force: true,
        };
        assert_eq!(
            t.refuse_command(&stop).map(|e| e.kind),
            Some(ErrorKind::Locked)
        );
        let other = Command::RequestSlot {
            vm: "h-SPI-1".into(),
            wait_ms: 0,
        };
        assert_eq!(
            t.refuse_command(&other).map(|e| e.kind),
            Some(ErrorKind::Busy)
        );
        assert!(t.blocks_action("h-SPI-1", &Action::Start).is_some());
        assert!(
            t.blocks_action("h-ROOT-1", &Action::Probe(marble_proto::Team::Root))
                .is_none()
        );
        // The clone is stopped: other VMs may start again, the pushed VM stays held.
        assert!(t.on_event(TransferEvent::Prepared { id: 1 }));
        assert!(t.refuse_command(&other).is_none());
        assert!(t.blocks_action("h-SPI-1", &Action::Start).is_none());
        assert!(t.refuse_command(&start).is_some());
        // Finished: released and listed as done.
        assert!(t.on_event(TransferEvent::Finished { id: 1, error: None }));
        assert!(t.refuse_command(&start).is_none());
        let list = t.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].phase, "done");
        assert!(list[0].finished_ms > 0);
    }

    #[test]
    fn metrics_count_running_and_ended_per_kind() {
        let mut t = Transfers::new(CancellationToken::new());
        // Before any transfer: every kind listed, all zero.
        let m = t.metrics();
        assert_eq!(
            m.kinds.iter().map(|k| k.kind.as_str()).collect::<Vec<_>>(),
            KINDS
        );
        assert!(
            m.kinds
                .iter()
                .all(|k| k.running == 0 && k.ok == 0 && k.failed == 0)
        );
        assert_eq!((m.bytes_sent, m.bytes_received), (0, 0));

        t.running.insert(1, running(1, &["a"], false));
        t.running.insert(2, running(2, &["b"], false));
        let mut pull = running(3, &[], false);
        pull.info.kind = "pull".into();
        t.running.insert(3, pull);
        let m = t.metrics();
        assert_eq!(m.kinds[0].running, 2, "{m:?}");
        assert_eq!(m.kinds[1].running, 1, "{m:?}");

        t.on_event(TransferEvent::Finished { id: 1, error: None });
        t.on_event(TransferEvent::Finished {
            id: 2,
            error: Some("boom".into()),
        });
        t.on_event(TransferEvent::Finished { id: 3, error: None });
        // A second report for the same id changes nothing.
        t.on_event(TransferEvent::Finished { id: 3, error: None });
        let m = t.metrics();
        let push = &m.kinds[0];
        assert_eq!((push.running, push.ok, push.failed), (0, 1, 1), "{m:?}");
        let pull = &m.kinds[1];
        assert_eq!((pull.running, pull.ok, pull.failed), (0, 1, 0), "{m:?}");
        assert_eq!(m.kinds.len(), KINDS.len());
    }

    #[test]
    fn finished_list_is_bounded_newest_first() {
        let mut t = Transfers::new(CancellationToken::new());
        for id in 0..(FINISHED_KEPT as u64 + 5) {
            t.running.insert(id, running(id, &[], false));
            t.on_event(TransferEvent::Finished {
                id,
                error: Some("boom".into()),
            });
        }
        let list = t.list();
        assert_eq!(list.len(), FINISHED_KEPT);
        assert_eq!(list[0].id, FINISHED_KEPT as u64 + 4);
        assert_eq!(list[0].phase, "failed");
    }
}
