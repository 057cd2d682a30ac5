//! The `vm provision` job: start the VM if the actor decided to, wait until its guest
//! answers `prlctl exec`, read the guest's macOS version, run the profile with
//! [`crate::provision::run_profile`], and turn its events into `Event::Progress` for the
//! client and log lines for the daemon log.
//!
//! Output reaches the client through a bounded local queue drained by a forwarder, so a slow
//! or vanished client never stalls the guest work: when the queue is full, lines are dropped
//! from the client's view (and counted) but never from the log. A step's output is sent when
//! the step ends (the prlctl adapter captures output; it does not stream it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use marble_proto::{ErrorKind, Event, ProvisionResult, StepResult, WireError};
use tokio::sync::mpsc;

use crate::hypervisor::{Hypervisor, PrlctlError};
use crate::provision::{
    Profile, ProvisionError, ProvisionEvent, SkipReason, StepOutcome, Stream, guest_macos_major,
    run_profile,
};

/// Events queued for the client before lines are dropped from its view.
pub const FORWARD_CAPACITY: usize = 1024;
/// Output lines per stream and step shown to the client (the log keeps everything).
pub const MAX_LINES_PER_STEP: usize = 200;
/// Poll interval while waiting for a started guest to answer.
const BOOT_POLL: Duration = Duration::from_secs(2);
/// Timeout of one readiness exec.
const READY_EXEC_TIMEOUT: Duration = Duration::from_secs(20);

/// What the job needs.
pub struct ProvisionJob {
    /// The hypervisor.
    pub hv: Arc<dyn Hypervisor>,
    /// VM name.
    pub vm: String,
    /// The parsed profile.
    pub profile: Profile,
    /// `Some(resume)`: the VM is not running and must be started (`resume` for a
    /// suspended/paused one).
    pub start: Option<bool>,
    /// How long to wait for the guest to answer.
    pub boot_timeout: Duration,
}

/// Reported to the actor while the job runs.
#[derive(Debug)]
pub enum ProvisionNotice {
    /// The job started the VM (refresh the inventory so the scheduler sees it running).
    Started,
}

fn unavailable(vm: &str, what: &str, err: &PrlctlError) -> WireError {
    let mut e = crate::chain::to_wire(ErrorKind::Unavailable, err);
    e.chain.insert(0, e.message.clone());
    e.message = format!("{what} {vm}");
    e
}

/// Map an engine error to the wire: a failing step is `InvalidState` naming it; a guest
/// that cannot be reached is `Unavailable`.
pub fn to_wire(err: &ProvisionError) -> WireError {
    let kind = match err {
        ProvisionError::Exec { .. } => ErrorKind::Unavailable,
        ProvisionError::StepFailed { .. }
        | ProvisionError::Marker { .. }
        | ProvisionError::MacosVersion { .. } => ErrorKind::InvalidState,
    };
    crate::chain::to_wire(kind, err)
}

/// Poll `/usr/bin/true` in the guest until it exits 0 or `timeout` passes.
async fn wait_guest(hv: &dyn Hypervisor, vm: &str, timeout: Duration) -> Result<(), WireError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let argv = vec!["/usr/bin/true".to_owned()];
    loop {
        let last = match hv.exec(vm, &argv, None, READY_EXEC_TIMEOUT).await {
            Ok(out) if out.status == 0 => return Ok(()),
            Ok(out) => format!("`/usr/bin/true` exited {}", out.status),
            Err(e) => crate::chain::ErrorChain(&e).to_string(),
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(WireError {
                kind: ErrorKind::Unavailable,
                message: format!(
                    "the guest of {vm} does not answer prlctl exec after {} (Parallels Tools installed? booted?)",
                    humantime::format_duration(timeout)
                ),
                chain: vec![last],
            });
        }
        tokio::time::sleep_until(deadline.min(now + BOOT_POLL)).await;
    }
}

/// Lines of `text`, at most `max` (the last ones), with a note when some were left out.
fn shown_lines(text: &str, max: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(max);
    let mut out = Vec::with_capacity(lines.len().min(max) + 1);
    if skip > 0 {
        out.push(format!(
            "… {skip} earlier lines not shown (see the daemon log)"
        ));
    }
    out.extend(lines[skip..].iter().map(|l| (*l).to_owned()));
    out
}

/// Render one engine event as client progress lines (`done` = steps finished).
fn progress_lines(ev: &ProvisionEvent, total: usize, done: usize) -> Vec<String> {
    let n = done + 1;
    match ev {
        ProvisionEvent::StepStarted { step } => vec![format!("[{n}/{total}] {step}: running")],
        ProvisionEvent::StepSkipped { step, reason } => {
            vec![format!("[{n}/{total}] {step}: skipped ({reason})")]
        }
        ProvisionEvent::StepDone { step, duration } => vec![format!(
            "[{n}/{total}] {step}: done in {}",
            humantime::format_duration(Duration::from_secs(duration.as_secs()))
        )],
        ProvisionEvent::StepFailed { step, status } => {
            vec![format!(
                "[{n}/{total}] {step}: FAILED (exit status {status})"
            )]
        }
        ProvisionEvent::Output { step, stream, text } => {
            let tag = match stream {
                Stream::Stdout => "",
                Stream::Stderr => " (stderr)",
            };
            shown_lines(text, MAX_LINES_PER_STEP)
                .into_iter()
                .map(|l| format!("  {step}{tag} | {l}"))
                .collect()
        }
    }
}

fn as_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Run the job. `progress` is the client's channel (may be closed); `notify` tells the
/// actor about a start.
pub async fn run(
    job: ProvisionJob,
    progress: mpsc::Sender<Event>,
    notify: impl FnOnce(ProvisionNotice) + Send,
) -> Result<ProvisionResult, WireError> {
    let started = Instant::now();
    let vm = job.vm.as_str();
    let hv = job.hv.as_ref();
    let say = |message: String| {
        let _ = progress.try_send(Event::Progress {
            done: 0,
            total: 0,
            message,
        });
    };
    if let Some(resume) = job.start {
        say(format!("starting {vm}"));
        tracing::info!(vm, resume, "provision: starting the VM");
        let r = if resume {
            hv.resume(vm).await
        } else {
            hv.start(vm).await
        };
        r.map_err(|e| unavailable(vm, "cannot start", &e))?;
        notify(ProvisionNotice::Started);
    }
    say(format!(
        "waiting for the guest of {vm} to answer prlctl exec"
    ));
    wait_guest(hv, vm, job.boot_timeout).await?;
    let major = guest_macos_major(hv, vm).await.map_err(|e| to_wire(&e))?;
    let total = job.profile.steps.len();
    say(format!("{vm}: macOS {major}, {total} steps"));

    let (tx, mut rx) = mpsc::channel::<Event>(FORWARD_CAPACITY);
    let dropped = AtomicU64::new(0);
    let dropped_ref = &dropped;
    let mut done_steps = 0usize;
    let total_u64 = total as u64;
    // Owns `tx`, so the forwarder ends once the profile has run and this is dropped.
    let mut on_event = move |ev: ProvisionEvent| {
        if let ProvisionEvent::Output { step, stream, text } = &ev {
            tracing::info!(vm, step = %step, stream = ?stream, output = %text, "provision step output");
        }
        for message in progress_lines(&ev, total, done_steps) {
            let event = Event::Progress {
                done: done_steps as u64,
                total: total_u64,
                message,
            };
            if tx.try_send(event).is_err() {
                dropped_ref.fetch_add(1, Ordering::Relaxed);
            }
        }
        if matches!(
            ev,
            ProvisionEvent::StepDone { .. } | ProvisionEvent::StepSkipped { .. }
        ) {
            done_steps += 1;
        }
    };
    let forward = async {
        while let Some(ev) = rx.recv().await {
            // A vanished client only stops the view; the run goes on.
            let _ = progress.send(ev).await;
        }
    };
    let work = async {
        let r = run_profile(hv, vm, &job.profile, major, &mut on_event).await;
        drop(on_event);
        r
    };
    let (result, ()) = tokio::join!(work, forward);
    let dropped = dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        tracing::warn!(
            vm,
            dropped,
            "provision output lines not shown to a slow client"
        );
        say(format!(
            "{dropped} progress lines were not shown (client too slow); the daemon log has them all"
        ));
    }
    let report = result.map_err(|e| to_wire(&e))?;
    let steps = step_results(report.steps);
    Ok(ProvisionResult {
        vm: vm.to_owned(),
        macos_major: report.macos_major,
        steps,
        started_vm: job.start.is_some(),
        elapsed_ms: as_u64(started.elapsed()),
    })
}

/// The report's steps as the client sees them.
fn step_results(steps: Vec<(String, StepOutcome)>) -> Vec<StepResult> {
    steps
        .into_iter()
        .map(|(name, outcome)| match outcome {
            StepOutcome::Ran { duration } => StepResult {
                name,
                outcome: "ran".into(),
                detail: String::new(),
                duration_ms: as_u64(duration),
            },
            StepOutcome::Skipped(reason) => StepResult {
                name,
                outcome: "skipped".into(),
                detail: skip_detail(&reason),
                duration_ms: 0,
            },
        })
        .collect()
}

fn skip_detail(reason: &SkipReason) -> String {
    reason.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_keeps_the_tail_with_a_note() {
        let text: String = (0..250).map(|i| format!("line {i}\n")).collect();
        let lines = shown_lines(&text, 200);
        assert_eq!(lines.len(), 201);
        assert!(lines[0].contains("50 earlier lines"));
        assert_eq!(lines[200], "line 249");
    }

    #[test]
    fn progress_names_step_and_position() {
        let ev = ProvisionEvent::StepSkipped {
            step: "xcode".into(),
            reason: SkipReason::AlreadyDone,
        };
        assert_eq!(
            progress_lines(&ev, 9, 2),
            ["[3/9] xcode: skipped (already done)"]
        );
    }
}
