//! ROOT runner lifecycle helpers for the daemon's start/stop jobs: label matching (the labels
//! themselves are `sched::LabelMap`'s, shared with the scheduler) and unique names,
//! minting a JIT config (with 409 recovery), delivering it into the guest through
//! `prlctl exec` stdin, and the delete-before-stop gate. (The registration watchdog is a
//! scheduler rule: `sched::World::runner_watchdog`.)
//!
//! Owns the ordering rules of `docs/CI.md`: the secret travels only on stdin into a
//! root-only file, never in argv; the registration is deleted before a VM stops and a 422
//! keeps the VM up. The functions are plain async functions over the [`Hypervisor`] seam and
//! [`GitHubClient`].

use std::time::Duration;

use crate::hypervisor::{Hypervisor, PrlctlError, guest_cmd};

use super::client::GitHubClient;
use super::types::{DeleteOutcome, GitHubError, JitConfig, Runner};

/// Guest path of the JIT config (a root-only file under a 0700 directory; `/var/run` is
/// emptied at every guest boot, so a config never survives a reboot or an image upload).
pub const DEFAULT_JIT_PATH: &str = "/var/run/marble/jitconfig";

/// Suffix of the marker written after the config is complete; the guest script waits for
/// the marker, not the file, so it never reads a half-written config.
pub const READY_SUFFIX: &str = ".ready";

/// Timeout of each guest command of the delivery.
const DELIVER_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest runner name produced (GitHub's limit for names is not documented; 64 is safe).
pub const MAX_RUNNER_NAME: usize = 64;

/// A runner name unique per host, VM and boot: `marble-<host>-<vm>-<counter>`. Characters
/// outside `[A-Za-z0-9._-]` become `-`; a long VM name is shortened from the front so the
/// distinguishing tail (`…-macOS-14`) and the counter survive. `boot_counter` must be
/// persisted by the daemon (a reused name answers 409, see [`mint_jit`]).
pub fn runner_name(host: &str, vm: &str, boot_counter: u64) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let host = clean(host.split('.').next().unwrap_or(host));
    let mut vm = clean(vm);
    let tail = format!("-{boot_counter:04}");
    let fixed = "marble-".len() + host.len() + 1 + tail.len();
    let room = MAX_RUNNER_NAME.saturating_sub(fixed).max(8);
    if vm.len() > room {
        vm = vm[vm.len() - room..].to_owned();
    }
    let mut name = format!("marble-{host}-{vm}{tail}");
    if name.len() > MAX_RUNNER_NAME {
        name = name[name.len() - MAX_RUNNER_NAME..].to_owned();
    }
    name
}

/// Mint a JIT config; on 409 (a stale registration with this name, e.g. after a daemon
/// crash between mint and boot) delete the stale runner if it is not busy and retry once.
pub async fn mint_jit(
    github: &GitHubClient,
    name: &str,
    labels: &[String],
    runner_group_id: u64,
    work_folder: Option<&str>,
) -> Result<JitConfig, GitHubError> {
    match github
        .generate_jitconfig(name, labels, runner_group_id, work_folder)
        .await
    {
        Err(GitHubError::NameTaken { .. }) => {
            for stale in github.find_runners_by_name(name).await? {
                if stale.busy {
                    continue;
                }
                tracing::warn!(runner_id = stale.id, runner = %stale.name, "deleting stale runner with our name");
                github.delete_runner(stale.id).await?;
            }
            github
                .generate_jitconfig(name, labels, runner_group_id, work_folder)
                .await
        }
        other => other,
    }
}

/// Why the JIT config could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The guest path is not an absolute path of safe characters.
    #[error("invalid guest path {path:?} for the jit config")]
    InvalidPath {
        /// The path.
        path: String,
    },
    /// `prlctl exec` failed.
    #[error("delivering the jit config into vm {vm} failed")]
    Exec {
        /// VM.
        vm: String,
        /// Cause.
        #[source]
        source: PrlctlError,
    },
    /// The guest command exited non-zero.
    #[error("guest command for the jit config in vm {vm} exited {status}: {stderr}")]
    GuestFailed {
        /// VM.
        vm: String,
        /// Exit status.
        status: i32,
        /// End of the guest's stderr (never contains the config: it is only on stdin).
        stderr: String,
    },
    /// The file is not a root-owned regular file of mode 0600 (it was removed again and no
    /// ready marker was made, so the guest's runner never reads it).
    #[error("jit config file {path} in vm {vm} is not a root-owned mode-600 file: {found}")]
    BadMode {
        /// VM.
        vm: String,
        /// Guest path.
        path: String,
        /// What the guest's `ls -ld` showed of it (or why it could not).
        found: String,
    },
}

/// Status of [`check_and_mark_argv`] when the file is not what was written.
pub const CHECK_REJECTED: i32 = 3;

fn safe_guest_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() > 1
        && !path.contains("..")
        && !path.ends_with('/')
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
}

/// The argv that writes stdin to `path` as a root-only file. Contains no secret: the config
/// arrives on stdin. `path` must be a safe guest path (checked by [`deliver_jit`]: nothing in
/// it a shell would interpret, so it stands unquoted in the script). Public for tests and docs.
pub fn deliver_argv(path: &str) -> Vec<String> {
    let dir = path
        .rsplit_once('/')
        .map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
    let ready = format!("{path}{READY_SUFFIX}");
    // umask first so the file is never readable by others, not even between create and
    // chmod; rm first because `cat >` into an existing file keeps that file's old mode.
    // `chown 0:0` is root:wheel on macOS (and needs no group name the guest may lack).
    guest_cmd::sh_c(&format!(
        "umask 077 && mkdir -p {dir} && chmod 700 {dir} && rm -f {path} {ready} && \
         cat > {path} && chmod 600 {path} && chown 0:0 {path}"
    ))
}

/// The argv that checks, in the guest, that `path` is a regular file owned by root with mode
/// 600 and only then creates the ready marker the guest's runner waits for. Decided by exit
/// status: 0 checked and marked; [`CHECK_REJECTED`] not such a file (it is removed; stdout
/// shows what it was); anything else: the check itself failed.
pub fn check_and_mark_argv(path: &str) -> Vec<String> {
    let ready = format!("{path}{READY_SUFFIX}");
    guest_cmd::sh_c(&format!(
        "if [ -n \"$(find {path} -prune -type f -perm 600 -user root)\" ]; then : > {ready}; \
         else ls -ld {path}; rm -f {path}; exit {CHECK_REJECTED}; fi"
    ))
}

/// Write the encoded JIT config into `path` inside `vm` (through `prlctl exec` stdin, as
/// root), then check in the guest that it is a root-owned mode-600 file and only then create
/// the ready marker.
pub async fn deliver_jit(
    hv: &dyn Hypervisor,
    vm: &str,
    jit: &JitConfig,
    path: &str,
) -> Result<(), DeliverError> {
    if !safe_guest_path(path) {
        return Err(DeliverError::InvalidPath {
            path: path.to_owned(),
        });
    }
    let exec_err = |source| DeliverError::Exec {
        vm: vm.to_owned(),
        source,
    };
    let out = hv
        .exec(
            vm,
            &deliver_argv(path),
            Some(jit.encoded_jit_config.expose().as_bytes()),
            DELIVER_TIMEOUT,
        )
        .await
        .map_err(exec_err)?;
    if out.status != 0 {
        return Err(DeliverError::GuestFailed {
            vm: vm.to_owned(),
            status: out.status,
            stderr: tail(&out.stderr),
        });
    }
    let out = hv
        .exec(vm, &check_and_mark_argv(path), None, DELIVER_TIMEOUT)
        .await
        .map_err(exec_err)?;
    match out.status {
        0 => {}
        CHECK_REJECTED => {
            return Err(DeliverError::BadMode {
                vm: vm.to_owned(),
                path: path.to_owned(),
                found: match (tail(&out.stdout), tail(&out.stderr)) {
                    (shown, _) if !shown.is_empty() => shown,
                    (_, why) if !why.is_empty() => why,
                    _ => "(nothing)".to_owned(),
                },
            });
        }
        status => {
            return Err(DeliverError::GuestFailed {
                vm: vm.to_owned(),
                status,
                stderr: tail(&out.stderr),
            });
        }
    }
    tracing::info!(vm, runner_id = jit.runner_id, path, "delivered jit config");
    Ok(())
}

fn tail(s: &str) -> String {
    let s = s.trim();
    let start = s.len().saturating_sub(300);
    let start = (start..=s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[start..].to_owned()
}

/// May the VM be stopped?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopGate {
    /// The registration is gone (deleted now or already): no job can be assigned any more.
    Proceed,
    /// GitHub refused the delete because a job is running: keep the VM up.
    Busy(String),
}

/// Delete the runner registration before stopping its VM. `Err` means "don't know": the
/// caller must treat it as busy and keep the VM running.
pub async fn before_stop(github: &GitHubClient, runner_id: u64) -> Result<StopGate, GitHubError> {
    match github.delete_runner(runner_id).await? {
        DeleteOutcome::Deleted | DeleteOutcome::AlreadyGone => Ok(StopGate::Proceed),
        DeleteOutcome::RunnerBusy { message } => {
            tracing::info!(runner_id, %message, "runner busy; vm stays up");
            Ok(StopGate::Busy(message))
        }
    }
}

/// GitHub's view of a runner as a busy signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitHubBusy {
    /// `busy: true`, or offline-and-busy (a crashed job GitHub has not released yet).
    Busy,
    /// Registered and not busy.
    Idle,
    /// No such runner (it ran its one job and unregistered, or it was deleted).
    Gone,
}

/// Classify `GET …/runners/{id}`'s answer.
pub fn github_busy(runner: Option<&Runner>) -> GitHubBusy {
    match runner {
        None => GitHubBusy::Gone,
        Some(r) if r.busy => GitHubBusy::Busy,
        Some(_) => GitHubBusy::Idle,
    }
}

/// Whether every label of a queued job is served by `runner_labels` (case-insensitive, as
/// GitHub matches labels).
pub fn labels_match(job_labels: &[String], runner_labels: &[String]) -> bool {
    !job_labels.is_empty()
        && job_labels
            .iter()
            .all(|j| runner_labels.iter().any(|r| r.eq_ignore_ascii_case(j)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cover_root_runs_on() {
        let strings = |v: &[&str]| -> Vec<String> { v.iter().map(|s| (*s).to_owned()).collect() };
        let mac = |v: &str| strings(&["self-hosted", "macOS", "ARM64", v]);
        let job = mac("mac15");
        assert!(labels_match(&job, &mac("mac15")));
        assert!(!labels_match(&job, &mac("mac14")));
        let lower = strings(&["arm64", "macos"]);
        assert!(labels_match(&lower, &mac("mac14")));
        assert!(!labels_match(&[], &mac("mac14")));
    }

    #[test]
    fn runner_names_are_unique_sanitized_and_bounded() {
        let a = runner_name("macphsft01.cern.ch", "macphsft01-ROOT-VM-macOS-14", 7);
        assert_eq!(a, "marble-macphsft01-macphsft01-ROOT-VM-macOS-14-0007");
        assert_ne!(
            a,
            runner_name("macphsft01", "macphsft01-ROOT-VM-macOS-14", 8)
        );
        assert_ne!(
            a,
            runner_name("macphsft01", "macphsft01-ROOT-VM-macOS-15", 7)
        );
        let weird = runner_name("h", "vm with spaces/and;semicolons", 1);
        assert!(
            weird
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "{weird}"
        );
        let long = runner_name("host", &"x".repeat(200), 123_456);
        assert!(long.len() <= MAX_RUNNER_NAME, "{long}");
        assert!(long.ends_with("-123456"), "{long}");
    }

    #[test]
    fn deliver_argv_carries_no_secret_and_rejects_bad_paths() {
        let argv = deliver_argv(DEFAULT_JIT_PATH);
        assert_eq!(argv[0], "/bin/sh");
        assert!(argv[2].starts_with("umask 077 && "));
        assert!(argv[2].contains("cat > /var/run/marble/jitconfig "));
        assert!(safe_guest_path(DEFAULT_JIT_PATH));
        for bad in ["relative", "/a/../b", "/a b", "/a;rm", "/", "/x/"] {
            assert!(!safe_guest_path(bad), "{bad}");
        }
    }

    #[test]
    fn github_busy_classifies() {
        assert_eq!(github_busy(None), GitHubBusy::Gone);
        let mut r = Runner {
            id: 1,
            name: "n".into(),
            os: "macos".into(),
            status: "online".into(),
            busy: true,
            runner_group_id: None,
            labels: vec![],
        };
        assert_eq!(github_busy(Some(&r)), GitHubBusy::Busy);
        r.busy = false;
        assert_eq!(github_busy(Some(&r)), GitHubBusy::Idle);
    }
}

/// Delivery through a real guest shell (see `hypervisor::local_guest`): the file, its mode,
/// the marker, and no secret on any command line.
#[cfg(all(test, target_os = "linux"))]
mod local_guest_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::ci::Secret;
    use crate::hypervisor::local_guest::LocalGuest;

    const JIT: &str = "eyJKSVQiOiJzZWNyZXQgJ3dpdGgnIHF1b3RlcyAkKGlkKSJ9-0123456789";

    fn jit() -> JitConfig {
        JitConfig {
            runner_id: 42,
            runner_name: "marble-h-vm-0001".into(),
            encoded_jit_config: Secret::new(JIT),
        }
    }

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    #[tokio::test]
    async fn the_config_arrives_root_only_and_then_the_marker() {
        let guest = LocalGuest::new();
        let hv = guest.hv(&[]);
        let file = guest.host_path(DEFAULT_JIT_PATH);
        let ready = guest.host_path(&format!("{DEFAULT_JIT_PATH}{READY_SUFFIX}"));
        // A leftover of the wrong mode from an earlier boot is replaced, not reused.
        std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
        std::fs::write(&file, b"stale").expect("plant");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");

        deliver_jit(&hv, "vm", &jit(), DEFAULT_JIT_PATH)
            .await
            .expect("delivered");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), JIT);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(file.parent().expect("dir")), 0o700);
        assert!(ready.exists(), "the ready marker follows the check");
        let lines = guest.lines();
        assert_eq!(lines.matches("'/bin/sh' '-c' ").count(), 2, "{lines}");
        assert!(
            !lines.contains(JIT),
            "the config travelled on a command line"
        );
    }

    #[tokio::test]
    async fn a_file_that_is_not_root_only_is_removed_and_never_marked() {
        let guest = LocalGuest::new();
        let hv = guest.hv(&[]);
        let file = guest.host_path(DEFAULT_JIT_PATH);
        std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
        std::fs::write(&file, JIT).expect("plant");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let out = hv
            .exec(
                "vm",
                &check_and_mark_argv(DEFAULT_JIT_PATH),
                None,
                DELIVER_TIMEOUT,
            )
            .await
            .expect("exec");
        assert_eq!(out.status, CHECK_REJECTED, "{out:?}");
        assert!(out.stdout.contains("-rw-r--r--"), "{out:?}");
        assert!(!file.exists(), "a readable config is removed");
        assert!(
            !guest
                .host_path(&format!("{DEFAULT_JIT_PATH}{READY_SUFFIX}"))
                .exists()
        );
    }
}
