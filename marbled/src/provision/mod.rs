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

use crate::hypervisor::{Hypervisor, PrlctlError, guest_cmd};

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

/// Why `step` need not run in the guest now, if it need not (checked in order: macOS
/// selector, done marker, `creates`, `unless`).
async fn skip_reason(
    hv: &dyn Hypervisor,
    vm: &str,
    step: &Step,
    macos_major: u32,
) -> Result<Option<SkipReason>, ProvisionError> {
    let name = step.name.as_str();
    if let Some(sel) = step.macos.as_ref().filter(|s| !s.matches(macos_major)) {
        return Ok(Some(SkipReason::MacosVersion(sel.as_str().to_owned())));
    }
    let test_e = |path: &str| strs(&["/bin/test", "-e", path]);
    if !step.always {
        let marker = test_e(&marker_path(name));
        let out = exec_step(hv, vm, name, &marker, None, CHECK_TIMEOUT).await?;
        if out.status == 0 {
            return Ok(Some(SkipReason::AlreadyDone));
        }
    }
    if let Some(path) = &step.creates {
        let out = exec_step(hv, vm, name, &test_e(path), None, CHECK_TIMEOUT).await?;
        if out.status == 0 {
            return Ok(Some(SkipReason::Creates(path.clone())));
        }
    }
    if let Some(cmd) = &step.unless {
        let argv = profile::as_user(step.user.as_deref(), strs(&["/bin/sh", "-c", cmd.as_str()]));
        let out = exec_step(hv, vm, name, &argv, None, step.timeout).await?;
        if out.status == 0 {
            return Ok(Some(SkipReason::Unless));
        }
    }
    Ok(None)
}

/// Records in the guest that `step` ran, so a second `vm provision` skips it.
async fn write_marker(hv: &dyn Hypervisor, vm: &str, name: &str) -> Result<(), ProvisionError> {
    let marker = marker_path(name);
    // Creating it twice is harmless (a re-run after a lost answer).
    let script = format!(
        "mkdir -p {} && : > {}",
        guest_cmd::quote(MARKER_DIR),
        guest_cmd::quote(&marker)
    );
    let out = exec_step(hv, vm, name, &guest_cmd::sh_c(&script), None, CHECK_TIMEOUT).await?;
    if out.status != 0 {
        return Err(ProvisionError::Marker {
            step: name.to_owned(),
            vm: vm.to_owned(),
            marker,
            status: out.status,
            stderr: tail(&out.stderr),
        });
    }
    Ok(())
}

async fn run_step(
    hv: &dyn Hypervisor,
    vm: &str,
    step: &Step,
    macos_major: u32,
    on_output: &mut (dyn FnMut(ProvisionEvent) + Send),
) -> Result<StepOutcome, ProvisionError> {
    let name = step.name.as_str();
    if let Some(reason) = skip_reason(hv, vm, step, macos_major).await? {
        tracing::info!(vm, step = name, %reason, "provision step skipped");
        on_output(ProvisionEvent::StepSkipped {
            step: name.to_owned(),
            reason: reason.clone(),
        });
        return Ok(StepOutcome::Skipped(reason));
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
        write_marker(hv, vm, name).await?;
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

/// Profiles through a real guest shell (see `hypervisor::local_guest`): quoting of every kind
/// of step, markers, and a second run that performs nothing.
#[cfg(all(test, target_os = "linux"))]
mod local_guest_tests {
    use std::path::Path;

    use super::*;
    use crate::hypervisor::local_guest::LocalGuest;

    const PROFILE: &str = r#"
[[step]]
name = "quoted-shell"
command = "printf '%s\n' \"it's $((40 + 2))\" >> /var/tmp/out"

[[step]]
name = "argv"
command = ["/bin/sh", "-c", "printf '%s|' \"$@\" >> /var/tmp/out; echo >> /var/tmp/out", "sh", "a b", "$HOME", "*", ""]

[[step]]
name = "script"
script = "s.sh"
args = ["x y"]

[[step]]
name = "created-already"
command = "echo never >> /var/tmp/out"
creates = "/var/tmp/has space"

[[step]]
name = "unless-passes"
command = "echo never >> /var/tmp/out"
unless = "test -e '/var/tmp/has space'"
"#;

    /// A script whose first command reads stdin, as `ssh`, `brew` or a `read` would: it must
    /// not swallow the rest of the script. (bash, macOS's `/bin/sh`, reads a script on stdin
    /// byte by byte, so any child gets the rest; dash reads ahead a few KiB, hence the long
    /// comment that puts the last line beyond its first read.)
    fn script() -> Vec<u8> {
        let mut s = b"cat > /dev/null\n# ".to_vec();
        s.extend(std::iter::repeat_n(b'-', 64 * 1024));
        s.extend_from_slice(b"\necho \"after-cat $1\" >> /var/tmp/out\n");
        s
    }

    fn profile() -> Profile {
        let read = |p: &Path| {
            (p == Path::new("s.sh"))
                .then(script)
                .ok_or_else(|| format!("no {}", p.display()))
        };
        Profile::parse_with(PROFILE, Path::new("p.toml"), &read).expect("profile")
    }

    #[tokio::test]
    async fn every_kind_of_step_runs_as_written_and_only_once() {
        let guest = LocalGuest::new();
        let hv = guest.hv(&[]);
        std::fs::create_dir_all(guest.host_path("/var/tmp/has space")).expect("plant");
        let mut events = Vec::new();
        let report = run_profile(&hv, "vm", &profile(), 14, &mut |e| events.push(e))
            .await
            .expect("first run");
        assert_eq!(
            report.ran(),
            ["quoted-shell", "argv", "script"],
            "{events:?}"
        );
        let out = guest.host_path("/var/tmp/out");
        let want = "it's 42\na b|$HOME|*||\nafter-cat x y\n";
        assert_eq!(std::fs::read_to_string(&out).expect("out"), want);
        for step in ["quoted-shell", "argv", "script"] {
            assert!(guest.host_path(&marker_path(step)).exists(), "{step}");
        }

        let again = run_profile(&hv, "vm", &profile(), 14, &mut |_| {})
            .await
            .expect("second run");
        assert!(again.ran().is_empty(), "{again:?}");
        assert_eq!(std::fs::read_to_string(&out).expect("out"), want);
    }
}
