//! Provisioning engine for `marblectl vm provision NAME --profile FILE`: run a profile's
//! steps in a guest through [`Hypervisor::exec`], in order, skipping completed steps.
//!
//! Owns the step state machine: version selector → completion marker → `creates` →
//! `unless` → run → write marker. Completed steps are recorded in the guest as
//! `/var/db/marble/provision/<step>.done`, so a re-run (or a run after a failure) performs
//! each step once. Output is passed to the caller's callback as each step finishes (the
//! adapter captures a command's output; it does not stream it). No HTTP: this module is
//! available without the `ci` feature.

use std::time::{Duration, Instant};

use crate::hypervisor::{Hypervisor, PrlctlError};

pub mod profile;

pub use profile::{Profile, ProfileError, Step, StepAction, VersionSelector, step_argv};

/// Guest directory of completion markers.
pub const MARKER_DIR: &str = "/var/db/marble/provision";

/// Timeout of the engine's own guest checks (markers, `creates`, `sw_vers`).
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// How much stderr a failure keeps.
const TAIL_BYTES: usize = 2000;

/// Guest path of a step's completion marker.
pub fn marker_path(step: &str) -> String {
    format!("{MARKER_DIR}/{step}.done")
}

/// Why a step was not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Its marker exists (done in an earlier run).
    AlreadyDone,
    /// The `creates` path exists.
    Creates(String),
    /// The `unless` command exited 0.
    Unless,
    /// The `macos` selector excludes this guest's version.
    MacosVersion(String),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::AlreadyDone => f.write_str("already done"),
            SkipReason::Creates(p) => write!(f, "{p} exists"),
            SkipReason::Unless => f.write_str("`unless` check passed"),
            SkipReason::MacosVersion(s) => write!(f, "macOS version not in {s}"),
        }
    }
}

/// Which stream output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

/// Progress reported to the caller (CLI stream, log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionEvent {
    /// A step is about to run.
    StepStarted {
        /// Step.
        step: String,
    },
    /// A step was skipped.
    StepSkipped {
        /// Step.
        step: String,
        /// Why.
        reason: SkipReason,
    },
    /// Output of a step.
    Output {
        /// Step.
        step: String,
        /// Stream.
        stream: Stream,
        /// Text.
        text: String,
    },
    /// A step succeeded.
    StepDone {
        /// Step.
        step: String,
        /// Wall time.
        duration: Duration,
    },
    /// A step failed (the run stops).
    StepFailed {
        /// Step.
        step: String,
        /// Guest exit status.
        status: i32,
    },
}

/// What happened to one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// It ran and succeeded.
    Ran {
        /// Wall time.
        duration: Duration,
    },
    /// It was skipped.
    Skipped(SkipReason),
}

/// Result of a successful run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionReport {
    /// VM.
    pub vm: String,
    /// The macOS major version the selectors were evaluated against.
    pub macos_major: u32,
    /// Every step in order.
    pub steps: Vec<(String, StepOutcome)>,
}

impl ProvisionReport {
    /// Names of the steps that ran in this invocation.
    pub fn ran(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|(_, o)| matches!(o, StepOutcome::Ran { .. }))
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// Provisioning errors; the failing step is always named.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// `prlctl exec` itself failed (VM not running, no Tools, timeout…).
    #[error("step {step:?} in vm {vm}: guest command could not run")]
    Exec {
        /// Step (or `"<macos-version>"` for the version probe).
        step: String,
        /// VM.
        vm: String,
        /// Cause.
        #[source]
        source: PrlctlError,
    },
    /// The step's command exited non-zero.
    #[error("step {step:?} in vm {vm} failed with exit status {status}: {stderr_tail}")]
    StepFailed {
        /// Step.
        step: String,
        /// VM.
        vm: String,
        /// Exit status.
        status: i32,
        /// End of stderr.
        stderr_tail: String,
    },
    /// Writing the completion marker failed (the step itself succeeded).
    #[error("step {step:?} in vm {vm}: cannot write marker {marker} (exit {status}): {stderr}")]
    Marker {
        /// Step.
        step: String,
        /// VM.
        vm: String,
        /// Marker path.
        marker: String,
        /// Exit status.
        status: i32,
        /// stderr.
        stderr: String,
    },
    /// `sw_vers` output was not understood.
    #[error("cannot determine the macOS version of vm {vm} from {output:?}")]
    MacosVersion {
        /// VM.
        vm: String,
        /// What sw_vers printed.
        output: String,
    },
}

fn tail(s: &str) -> String {
    let s = s.trim_end();
    let mut start = s.len().saturating_sub(TAIL_BYTES);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_owned()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// The guest's macOS major version (`sw_vers -productVersion`; 26 for "26.0").
pub async fn guest_macos_major(hv: &dyn Hypervisor, vm: &str) -> Result<u32, ProvisionError> {
    let out = hv
        .exec(
            vm,
            &strs(&["/usr/bin/sw_vers", "-productVersion"]),
            None,
            CHECK_TIMEOUT,
        )
        .await
        .map_err(|source| ProvisionError::Exec {
            step: "<macos-version>".to_owned(),
            vm: vm.to_owned(),
            source,
        })?;
    parse_macos_major(&out.stdout).ok_or_else(|| ProvisionError::MacosVersion {
        vm: vm.to_owned(),
        output: out.stdout.chars().take(200).collect(),
    })
}

/// Parse `14.6.1` or a full `sw_vers` listing (`ProductVersion: 14.6.1`).
pub fn parse_macos_major(out: &str) -> Option<u32> {
    let version = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("ProductVersion:"))
        .unwrap_or(out)
        .trim();
    version.split('.').next()?.trim().parse().ok()
}

/// Run `profile` in `vm` (a running VM with Parallels Tools), evaluating `macos` selectors
/// against `macos_major`. Stops at the first failing step with an error naming it; the
/// markers of the steps completed before stay, so the next run resumes there.
pub async fn run_profile(
    hv: &dyn Hypervisor,
    vm: &str,
    profile: &Profile,
    macos_major: u32,
    on_output: &mut (dyn FnMut(ProvisionEvent) + Send),
) -> Result<ProvisionReport, ProvisionError> {
    let mut report = ProvisionReport {
        vm: vm.to_owned(),
        macos_major,
        steps: Vec::new(),
    };
    for step in &profile.steps {
        let outcome = run_step(hv, vm, step, macos_major, on_output).await?;
        report.steps.push((step.name.clone(), outcome));
    }
    Ok(report)
}

async fn exec_step(
    hv: &dyn Hypervisor,
    vm: &str,
    step: &str,
    argv: &[String],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<crate::hypervisor::ExecOutput, ProvisionError> {
    hv.exec(vm, argv, stdin, timeout)
        .await
        .map_err(|source| ProvisionError::Exec {
            step: step.to_owned(),
            vm: vm.to_owned(),
            source,
        })
}

async fn run_step(
    hv: &dyn Hypervisor,
    vm: &str,
    step: &Step,
    macos_major: u32,
    on_output: &mut (dyn FnMut(ProvisionEvent) + Send),
) -> Result<StepOutcome, ProvisionError> {
    let name = step.name.as_str();
    let skip = |reason: SkipReason, on_output: &mut (dyn FnMut(ProvisionEvent) + Send)| {
        tracing::info!(vm, step = name, %reason, "provision step skipped");
        on_output(ProvisionEvent::StepSkipped {
            step: name.to_owned(),
            reason: reason.clone(),
        });
        Ok(StepOutcome::Skipped(reason))
    };
    if let Some(sel) = step.macos.as_ref().filter(|s| !s.matches(macos_major)) {
        return skip(SkipReason::MacosVersion(sel.as_str().to_owned()), on_output);
    }
    let test_e = |path: &str| strs(&["/bin/test", "-e", path]);
    if !step.always {
        let out = exec_step(
            hv,
            vm,
            name,
            &test_e(&marker_path(name)),
            None,
            CHECK_TIMEOUT,
        )
        .await?;
        if out.status == 0 {
            return skip(SkipReason::AlreadyDone, on_output);
        }
    }
    if let Some(path) = &step.creates {
        let out = exec_step(hv, vm, name, &test_e(path), None, CHECK_TIMEOUT).await?;
        if out.status == 0 {
            return skip(SkipReason::Creates(path.clone()), on_output);
        }
    }
    if let Some(cmd) = &step.unless {
        let argv = profile::as_user(step.user.as_deref(), strs(&["/bin/sh", "-c", cmd.as_str()]));
        let out = exec_step(hv, vm, name, &argv, None, step.timeout).await?;
        if out.status == 0 {
            return skip(SkipReason::Unless, on_output);
        }
    }

    on_output(ProvisionEvent::StepStarted {
        step: name.to_owned(),
    });
    tracing::info!(vm, step = name, "provision step started");
    let started = Instant::now();
    let (argv, stdin) = step_argv(step);
    let out = exec_step(hv, vm, name, &argv, stdin.as_deref(), step.timeout).await?;
    for (stream, text) in [(Stream::Stdout, &out.stdout), (Stream::Stderr, &out.stderr)] {
        if !text.is_empty() {
            on_output(ProvisionEvent::Output {
                step: name.to_owned(),
                stream,
                text: text.clone(),
            });
        }
    }
    if out.status != 0 {
        on_output(ProvisionEvent::StepFailed {
            step: name.to_owned(),
            status: out.status,
        });
        tracing::warn!(
            vm,
            step = name,
            status = out.status,
            "provision step failed"
        );
        return Err(ProvisionError::StepFailed {
            step: name.to_owned(),
            vm: vm.to_owned(),
            status: out.status,
            stderr_tail: tail(&out.stderr),
        });
    }
    if !step.always {
        let marker = marker_path(name);
        let script = format!("mkdir -p {MARKER_DIR} && echo {name} > {marker}");
        let out = exec_step(
            hv,
            vm,
            name,
            &strs(&["/bin/sh", "-c", &script]),
            None,
            CHECK_TIMEOUT,
        )
        .await?;
        if out.status != 0 {
            return Err(ProvisionError::Marker {
                step: name.to_owned(),
                vm: vm.to_owned(),
                marker,
                status: out.status,
                stderr: tail(&out.stderr),
            });
        }
    }
    let duration = started.elapsed();
    tracing::info!(vm, step = name, ?duration, "provision step done");
    on_output(ProvisionEvent::StepDone {
        step: name.to_owned(),
        duration,
    });
    Ok(StepOutcome::Ran { duration })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macos_major_from_both_shapes() {
        assert_eq!(parse_macos_major("14.6.1\n"), Some(14));
        assert_eq!(parse_macos_major("26.0\n"), Some(26));
        assert_eq!(
            parse_macos_major(
                "ProductName:\t\tmacOS\nProductVersion:\t\t15.2\nBuildVersion:\t\t24C101\n"
            ),
            Some(15)
        );
        assert_eq!(parse_macos_major("garbage"), None);
    }

    #[test]
    fn markers_live_under_the_marker_dir() {
        assert_eq!(marker_path("xcode"), "/var/db/marble/provision/xcode.done");
    }
}
