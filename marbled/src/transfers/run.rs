//! The transfer jobs themselves (feature `s3`): build the image store from `[images]`, run
//! `images::push_vm` / `pull_vm` / `ImageStore::verify` (or a quick `ls` / `rm`), forward
//! progress, map `ImageError`s to wire errors, report back to the actor.
//!
//! The store is built per job: credentials are re-read each time (a rotated secret file
//! needs no restart) and a missing or wrong S3 setup fails the request, never daemon start.

use std::sync::Arc;
use std::time::Instant;

use marble_proto::{
    ErrorKind, Event, ImageEntry, PullResult, PushResult, Response, VerifyResult, WireError,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Done, Snapshot, TransferEvent};
use crate::chain::to_wire;
use crate::hypervisor::{Hypervisor, StopMode};
use crate::images::{
    ImageError, ImageName, ImageStore, ImageStoreConfig, Phase, Progress, PullVmOptions,
    PushVmOptions, WireBytes,
};

/// What a validated image request will do.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Push `vm` as `image`.
    Push {
        vm: String,
        image: ImageName,
        detach: bool,
    },
    /// Pull `image` and register it as `vm_name`.
    Pull {
        image: ImageName,
        vm_name: String,
        detach: bool,
    },
    /// Re-read `image`.
    Verify { image: ImageName, detach: bool },
    /// Delete `image`.
    Remove { image: ImageName },
    /// List images.
    List { team: Option<String> },
}

/// (kind, subject, image, holds, host hold, detach) of a transfer.
type TransferShape = (&'static str, String, String, Vec<String>, bool, bool);

impl Plan {
    /// Short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Plan::Push { .. } => "push",
            Plan::Pull { .. } => "pull",
            Plan::Verify { .. } => "verify",
            Plan::Remove { .. } => "rm",
            Plan::List { .. } => "ls",
        }
    }

    /// The transfer's table entry facts; `None` for quick requests (ls, rm).
    pub fn transfer(&self) -> Option<TransferShape> {
        Some(match self {
            // The clone is named after the image; holding it keeps the scheduler off it.
            Plan::Push { vm, image, detach } => (
                "push",
                vm.clone(),
                image.to_string(),
                vec![vm.clone(), image.to_string()],
                true,
                *detach,
            ),
            // The bundle registers under the name it was pushed with, then is renamed.
            Plan::Pull {
                image,
                vm_name,
                detach,
            } => (
                "pull",
                image.to_string(),
                image.to_string(),
                vec![vm_name.clone(), image.to_string()],
                false,
                *detach,
            ),
            Plan::Verify { image, detach } => (
                "verify",
                image.to_string(),
                image.to_string(),
                Vec::new(),
                false,
                *detach,
            ),
            Plan::Remove { .. } | Plan::List { .. } => return None,
        })
    }
}

/// What every job needs.
pub struct Job {
    /// The hypervisor.
    pub hv: Arc<dyn Hypervisor>,
    /// `[images]`.
    pub images: Arc<ImageStoreConfig>,
    /// This host's name.
    pub host: String,
    /// Where the store adds the object bytes it moves (the daemon's metrics).
    pub wire: Arc<WireBytes>,
}

/// How a transfer talks back to the actor.
pub struct Control<C> {
    /// Transfer id.
    pub id: u64,
    /// Daemon shutdown.
    pub cancel: CancellationToken,
    /// The actor's completions channel.
    pub report: mpsc::Sender<C>,
    /// Wraps an event as a completion.
    pub wrap: fn(TransferEvent) -> C,
    /// Whether the actor holds the host until this push's clone is stopped.
    pub host_hold: bool,
}

/// The `ErrorKind` of an image failure.
pub fn kind_of(err: &ImageError) -> ErrorKind {
    crate::chain::WireKind::kind(err)
}

fn wire(err: &ImageError) -> WireError {
    to_wire(kind_of(err), err)
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Scan => "scan",
        Phase::Prepare => "prepare",
        Phase::Upload => "upload",
        Phase::Download => "download",
        Phase::Extract => "extract",
        Phase::Verify => "verify",
        Phase::Register => "register",
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Today's date in UTC as `YYYY-MM-DD` (the image name's date).
pub fn today_utc() -> String {
    let days = i64::try_from(crate::clock::now_ms() / 86_400_000).unwrap_or(0);
    let (y, m, d) = crate::calendar::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// CPUs and memory (MiB) of this host, for sizing a pulled VM.
fn host_facts() -> (u32, u64) {
    let cpus = std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1);
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    (cpus, sys.total_memory() / (1024 * 1024))
}

impl Job {
    async fn store(&self) -> Result<ImageStore, WireError> {
        ImageStore::new((*self.images).clone())
            .await
            .map(|store| store.counting_into(self.wire.clone()))
            .map_err(|e| wire(&e))
    }

    /// `ls` and `rm`: answered in one go.
    pub async fn quick(&self, plan: Plan) -> Result<Response, WireError> {
        let store = self.store().await?;
        match plan {
            Plan::List { team } => {
                let list = store.ls(team.as_deref()).await.map_err(|e| wire(&e))?;
                Ok(Response::Images(
                    list.into_iter()
                        .map(|i| ImageEntry {
                            name: i.name,
                            team: i.team,
                            format: i.format,
                            size: i.size,
                            modified_ms: i
                                .modified_unix
                                .and_then(|s| u64::try_from(s).ok())
                                .map_or(0, |s| s.saturating_mul(1000)),
                        })
                        .collect(),
                ))
            }
            Plan::Remove { image } => {
                let keys = store.rm(&image).await.map_err(|e| wire(&e))?;
                tracing::info!(image = %image, ?keys, "image removed");
                Ok(Response::ImageRemoved {
                    name: image.to_string(),
                    keys,
                })
            }
            other => Err(WireError::new(
                ErrorKind::Internal,
                format!("{} is not a quick request", other.kind()),
            )),
        }
    }

    async fn run(
        &self,
        id: u64,
        plan: &Plan,
        progress: &watch::Sender<Snapshot>,
    ) -> Result<Response, WireError> {
        let started = Instant::now();
        let sink = |p: Progress| {
            progress.send_replace(Snapshot {
                phase: phase_name(p.phase),
                done: p.done,
                total: p.total,
            });
        };
        let store = self.store().await?;
        let cfg = store.config();
        match plan {
            Plan::Push { vm, image, .. } => {
                let opts = PushVmOptions {
                    date: today_utc(),
                    host_name: self.host.clone(),
                    boot_timeout: cfg.boot_timeout,
                    exec_timeout: cfg.exec_timeout,
                    image: Some(image.clone()),
                };
                let r = crate::images::push_vm(&store, self.hv.clone(), vm, &opts, &sink)
                    .await
                    .map_err(|e| wire(&e))?;
                Ok(Response::ImagePushed(PushResult {
                    transfer: id,
                    image: r.image.to_string(),
                    vm: vm.clone(),
                    data_key: r.push.data_key,
                    apparent_bytes: r.push.apparent_bytes,
                    payload_bytes: r.push.payload_bytes,
                    object_bytes: r.push.object_bytes,
                    parts: r.push.parts,
                    parts_resumed: r.push.parts_resumed,
                    elapsed_ms: ms(started.elapsed()),
                    scrubbed: r.scrubbed,
                }))
            }
            Plan::Pull { image, vm_name, .. } => {
                let (host_cpus, host_memory_mib) = host_facts();
                let opts = PullVmOptions {
                    host_name: self.host.clone(),
                    bundles_dir: cfg.bundles_dir(),
                    host_cpus,
                    host_memory_mib,
                    vm_name: Some(vm_name.clone()),
                };
                let r = crate::images::pull_vm(&store, self.hv.clone(), image, &opts, &sink)
                    .await
                    .map_err(|e| wire(&e))?;
                tracing::info!(vm = %r.vm_name, mac = ?r.mac, "pulled VM registered; {}", r.operator_steps);
                Ok(Response::ImagePulled(PullResult {
                    transfer: id,
                    image: image.to_string(),
                    vm: r.vm_name,
                    bundle: r.bundle.display().to_string(),
                    format: r.pull.format,
                    downloaded_bytes: r.pull.downloaded_bytes,
                    apparent_bytes: r.pull.apparent_bytes,
                    chunks_resumed: r.pull.chunks_resumed,
                    elapsed_ms: ms(started.elapsed()),
                    mac: r.mac,
                    build_disk_fetched: r.build_disk_fetched,
                    operator_steps: r.operator_steps,
                }))
            }
            Plan::Verify { image, .. } => {
                let r = store.verify(image, &sink).await.map_err(|e| wire(&e))?;
                Ok(Response::ImageVerified(VerifyResult {
                    transfer: id,
                    image: image.to_string(),
                    format: r.format,
                    chunks: u32::try_from(r.chunks).unwrap_or(u32::MAX),
                    bytes: r.bytes,
                    elapsed_ms: ms(started.elapsed()),
                }))
            }
            Plan::Remove { .. } | Plan::List { .. } => self.quick(plan.clone()).await,
        }
    }

    /// After an interrupted push: the clone (named after the image) must not stay behind.
    async fn remove_clone(&self, plan: &Plan) {
        let Plan::Push { image, .. } = plan else {
            return;
        };
        let clone = image.as_str();
        if let Ok(list) = self.hv.list_all().await
            && list.iter().any(|v| v.name == clone)
        {
            let _ = self.hv.stop(clone, StopMode::Kill).await;
            match self.hv.delete(clone).await {
                Ok(()) => tracing::info!(vm = clone, "removed the interrupted push's clone"),
                Err(e) => {
                    tracing::warn!(vm = clone, error = %e, "could not remove the interrupted push's clone")
                }
            }
        }
    }
}

/// The transfer task: run the job, forward progress, tell the actor, answer the client.
pub async fn transfer<C: Send + 'static>(
    job: Job,
    plan: Plan,
    ctl: Control<C>,
    progress: watch::Sender<Snapshot>,
    mut follower: Option<(mpsc::Sender<Event>, Done)>,
) {
    let mut rx = progress.subscribe();
    let mut prepared = !ctl.host_hold;
    let mut last_sent: Option<(Instant, &'static str)> = None;
    let result = {
        let work = job.run(ctl.id, &plan, &progress);
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                () = ctl.cancel.cancelled() => {
                    break Err(WireError::new(
                        ErrorKind::Unavailable,
                        "marbled is shutting down; the transfer was interrupted (run it again: finished parts are not sent again)",
                    ));
                }
                r = &mut work => break r,
                Ok(()) = rx.changed() => {
                    let snap = *rx.borrow_and_update();
                    if !prepared && snap.phase != "prepare" && snap.phase != "queued" {
                        prepared = true;
                        let _ = ctl.report.send((ctl.wrap)(TransferEvent::Prepared { id: ctl.id })).await;
                    }
                    let due = last_sent.is_none_or(|(at, phase)| {
                        phase != snap.phase || at.elapsed() >= super::PROGRESS_INTERVAL
                    });
                    if due && let Some((events, _)) = &follower {
                        last_sent = Some((Instant::now(), snap.phase));
                        // Advisory: a slow client misses some, never blocks the transfer.
                        let _ = events.try_send(Event::Progress {
                            done: snap.done,
                            total: snap.total,
                            message: snap.phase.to_owned(),
                        });
                    }
                }
            }
        }
    };
    if ctl.cancel.is_cancelled() {
        job.remove_clone(&plan).await;
    }
    let error = result.as_ref().err().map(|e| {
        std::iter::once(e.message.as_str())
            .chain(e.chain.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(": ")
    });
    let _ = ctl
        .report
        .send((ctl.wrap)(TransferEvent::Finished { id: ctl.id, error }))
        .await;
    if let Some((_, done)) = follower.take() {
        let _ = done.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_failures_are_data_errors_and_names_are_requests() {
        let corrupt = ImageError::Corrupt {
            name: "x".into(),
            reason: "y".into(),
        };
        assert_eq!(kind_of(&corrupt), ErrorKind::DataError);
        let nf = ImageError::NotFound { name: "x".into() };
        assert_eq!(kind_of(&nf), ErrorKind::NotFound);
        let bad = ImageName::parse("nope").expect_err("bad name");
        assert_eq!(kind_of(&bad), ErrorKind::InvalidRequest);
    }
}
