//! The production [`Hypervisor`]: Parallels Desktop's `prlctl` run through `tokio::process`.
//!
//! Owns: building argv for each operation, running one `prlctl` process per call with a
//! cleared environment, a timeout, bounded output capture and a global concurrency cap,
//! and turning the result into the seam's types or a [`PrlctlError`]. Transient failures
//! are retried here, bounded and only where that is safe (`retry.rs`); what to do about
//! any other failure (state polling, giving up) is the scheduler's and the jobs' decision.
//!
//! Crash safety (`intents.rs`, `recover.rs`): with an intent log ([`Prlctl::with_intent_log`])
//! every power verb is recorded durably before its prlctl runs, with the child's pid once
//! spawned; operations a killed daemon left behind are resolved (their orphaned children
//! waited for, the listing re-read until settled) before this adapter lists, starts or stops
//! anything.
//!
//! How a call runs ([`Prlctl::run`]):
//! - a permit from a global [`Semaphore`] (`max_concurrent`) is taken first: the dispatcher
//!   copes badly with many concurrent clients, and a burst of reconcile calls must not fork a
//!   process per VM. The timeout covers the process only, not the wait for a permit (every
//!   holder is itself bounded by its own timeout);
//! - `exec` into one VM also takes one of that VM's `max_exec_per_vm` slots first (Parallels'
//!   DevOps service keeps it to 2): a burst of probes, readiness checks and provisioning into
//!   one guest waits its turn without holding up calls for other VMs;
//! - on the host, prlctl's argv is passed element by element, never through a shell, so VM
//!   names with shell metacharacters are inert;
//! - the environment is cleared and only [`PrlctlConfig::env`] is set (by default a fixed
//!   `PATH` plus `HOME`/`USER`/`LOGNAME`/`TMPDIR` of the daemon): daemon secrets such as
//!   S3 credentials never reach prlctl;
//! - stdin is `/dev/null` unless the operation provides bytes (exec's stdin, delete's
//!   confirmation), which are written and then closed. Stdin is never logged; argv is logged
//!   at debug level and never contains secrets by contract;
//! - the child runs in its own process group; on timeout the whole group is SIGKILLed (a
//!   hung `prlctl exec` ignores SIGTERM, PD 26.4) and the call returns
//!   [`PrlctlError::Timeout`]. `kill_on_drop` covers a cancelled caller;
//! - stdout/stderr are read concurrently up to `output_cap_bytes` each; the rest is drained
//!   and discarded so the child never blocks on a full pipe, and the truncation is recorded.
//!
//! Semantics worth knowing (see `reference/prlctl.md` §3):
//! - a graceful [`StopMode::Graceful`] stop can exit 0 while the guest keeps running (PD
//!   27.0.1), and can fail with 255 `Operation canceled` while the VM stops later (PD
//!   26.3.2). The adapter reports exactly what prlctl said; callers poll
//!   [`Hypervisor::list_all`] for the real state;
//! - `start` works from stopped, suspended and paused; `resume` from suspended and paused
//!   only. Which one to use is the caller's decision; the adapter does not look at state;
//! - `exec` in the guest DOES go through a shell: prlctl joins the words after `exec VM` with
//!   spaces and the guest re-parses that string (§4). So the adapter sends the caller's argv as
//!   ONE argument, the line built by [`guest_cmd::command_line`] (every word single-quoted),
//!   which the guest shell parses back into exactly that argv. A line over
//!   [`guest_cmd::MAX_ARGV_LINE`] (argv above ~3.9 KB hangs prlctl exec) goes on stdin to
//!   `/bin/sh -s` instead, or is refused with [`PrlctlError::CommandTooLong`] when the caller
//!   sends stdin of its own;
//! - `exec`: the guest's exit status passes through, so a non-zero status is
//!   `Ok(ExecOutput)`. Exit 255 is ambiguous (a guest may exit 255); it is an error only when
//!   stderr carries a prlctl-side message (session unavailable, not started, not found,
//!   access denied, …), see [`is_prlctl_side_message`].

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::Semaphore;

use super::guest_cmd;
use super::parse::{self, ParseError, PrlctlVersion, VmStatus};
use super::{ExecOutput, HvFuture, Hypervisor, Snapshot, StopMode, VmDetails, VmListing};

mod error;
mod intents;
mod recover;
mod retry;
mod slots;

pub use error::{PrlctlError, is_prlctl_side_message};
pub use intents::{Intent, IntentGuard, IntentLog, path_for as intent_log_path};
pub use retry::ATTEMPTS as RETRY_ATTEMPTS;
use slots::ExecSlots;

/// `PATH` given to prlctl: system directories plus `/usr/local/bin` where PD installs its
/// tools. Fixed rather than inherited so a daemon started from a shell behaves like launchd.
pub const DEFAULT_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin";

/// Variables passed through from the daemon's environment by default. prlctl needs the
/// user's identity and home to find the per-user VM registry; nothing else.
pub const PASSTHROUGH_ENV: &[&str] = &["HOME", "USER", "LOGNAME", "TMPDIR"];

/// How much of stderr a [`PrlctlError::Failed`] keeps (the end, where the error is).
const STDERR_TAIL_BYTES: usize = 2048;

/// Read size when draining child output.
const READ_CHUNK: usize = 16 * 1024;

/// Configuration of the prlctl adapter.
#[derive(Debug, Clone)]
pub struct PrlctlConfig {
    /// The prlctl executable (tests point this at the simulator or a fake script).
    pub path: PathBuf,
    /// Timeout of ordinary calls (list, info, set, register, snapshots…).
    pub default_timeout: Duration,
    /// Timeout of `start` and `resume`.
    pub start_timeout: Duration,
    /// Timeout of `stop` and `suspend`.
    pub stop_timeout: Duration,
    /// Timeout of `clone` and `delete`, which copy or remove whole bundles (tens of GB when
    /// the filesystem cannot clone).
    pub bulk_timeout: Duration,
    /// Timeout of `exec` when the caller passes [`Duration::ZERO`].
    pub exec_timeout_default: Duration,
    /// Most prlctl processes at once (at least 1).
    pub max_concurrent: usize,
    /// Most `prlctl exec` processes at once into one VM (at least 1). Parallels' own DevOps
    /// service keeps it to 2; further execs into that VM wait, those into other VMs do not.
    pub max_exec_per_vm: usize,
    /// Most bytes kept of each of stdout and stderr per call.
    pub output_cap_bytes: usize,
    /// The complete environment of prlctl (it is cleared first). Never put secrets here.
    pub env: Vec<(String, String)>,
}

impl PrlctlConfig {
    /// The default environment: [`DEFAULT_PATH`] plus [`PASSTHROUGH_ENV`] variables that are
    /// set (and valid UTF-8) in the daemon's environment.
    pub fn default_env() -> Vec<(String, String)> {
        let mut env = vec![("PATH".to_owned(), DEFAULT_PATH.to_owned())];
        for key in PASSTHROUGH_ENV {
            if let Ok(v) = std::env::var(key) {
                env.push(((*key).to_owned(), v));
            }
        }
        env
    }
}

impl Default for PrlctlConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/usr/local/bin/prlctl"),
            default_timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(180),
            stop_timeout: Duration::from_secs(120),
            bulk_timeout: Duration::from_secs(30 * 60),
            exec_timeout_default: Duration::from_secs(60),
            max_concurrent: 4,
            max_exec_per_vm: 2,
            // Enough for any listing of a few hundred VMs and for probe output; exec callers
            // that need more should write to a guest file instead.
            output_cap_bytes: 1024 * 1024,
            env: Self::default_env(),
        }
    }
}

/// What one prlctl process produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOutput {
    /// Exit code; `None` when killed by a signal.
    pub status: Option<i32>,
    /// Stdout, at most `output_cap_bytes`.
    pub stdout: Vec<u8>,
    /// Stderr, at most `output_cap_bytes`.
    pub stderr: Vec<u8>,
    /// Stdout was longer than the cap (the rest was discarded).
    pub stdout_truncated: bool,
    /// Stderr was longer than the cap.
    pub stderr_truncated: bool,
}

impl RawOutput {
    /// Stdout as (lossy) UTF-8.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as (lossy) UTF-8.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// The last ~[`STDERR_TAIL_BYTES`] of `bytes` as trimmed, lossy UTF-8.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

/// The prlctl adapter. Cheap to share: hold it as `Arc<dyn Hypervisor>`.
#[derive(Debug)]
pub struct Prlctl {
    config: PrlctlConfig,
    permits: Semaphore,
    exec_slots: ExecSlots,
    /// Where power verbs are recorded before they run (None: not recorded, e.g. tools).
    intents: Option<Arc<IntentLog>>,
}

impl Prlctl {
    /// An adapter with `config` (`max_concurrent` and `max_exec_per_vm` are raised to 1 if 0).
    pub fn new(config: PrlctlConfig) -> Prlctl {
        let permits = Semaphore::new(config.max_concurrent.max(1));
        let exec_slots = ExecSlots::new(config.max_exec_per_vm.max(1));
        Prlctl {
            config,
            permits,
            exec_slots,
            intents: None,
        }
    }

    /// Record power verbs in `log` before they run, and resolve what it inherited from a
    /// previous daemon before anything is listed, started or stopped.
    #[must_use]
    pub fn with_intent_log(mut self, log: Arc<IntentLog>) -> Prlctl {
        self.intents = Some(log);
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &PrlctlConfig {
        &self.config
    }

    fn argv(&self, args: &[String]) -> Vec<String> {
        let mut argv = Vec::with_capacity(args.len() + 1);
        argv.push(self.config.path.to_string_lossy().into_owned());
        argv.extend(args.iter().cloned());
        argv
    }

    /// The `prlctl ARGS…` process: a cleared environment plus the configured one, piped
    /// output, stdin piped only when there is something to send.
    fn command(&self, args: &[String], with_stdin: bool) -> Command {
        let mut cmd = Command::new(&self.config.path);
        cmd.args(args)
            .env_clear()
            .envs(self.config.env.iter().map(|(k, v)| (k, v)))
            .stdin(if with_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own group, so a timeout kills helpers prlctl may have forked too.
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }

    /// Run `prlctl ARGS…` once (see the module docs for the rules) and return what it
    /// produced, whatever its exit status. Errors only for spawn/I/O failures and timeouts.
    pub async fn run(
        &self,
        args: &[String],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<RawOutput, PrlctlError> {
        self.run_recorded(args, stdin, timeout, None).await
    }

    /// [`Self::run`], writing the child's pid into `intent` once it is spawned.
    async fn run_recorded(
        &self,
        args: &[String],
        stdin: Option<&[u8]>,
        timeout: Duration,
        intent: Option<&IntentGuard>,
    ) -> Result<RawOutput, PrlctlError> {
        let argv = self.argv(args);
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("invariant: the semaphore is never closed");
        tracing::debug!(argv = ?argv, timeout = ?timeout, "running prlctl");
        let started = Instant::now();

        let mut child = match self.command(args, stdin.is_some()).spawn() {
            Ok(c) => c,
            Err(source) => return Err(PrlctlError::Spawn { argv, source }),
        };
        let pid = child.id();
        // If this future is dropped mid-call (caller cancelled), `kill_on_drop` only reaches
        // the direct child; the guard takes the rest of the group with it.
        let mut group = GroupGuard { pid };
        if let (Some(intent), Some(pid)) = (intent, pid)
            && let Err(err) = intent.spawned(pid).await
        {
            // The intent itself is on disk: a restart still finds the child by its argv.
            tracing::warn!(error = %err, "cannot record the prlctl pid in the intent log");
        }
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(PrlctlError::Io {
                argv,
                source: std::io::Error::other("child pipes missing"),
            });
        };
        let child_stdin = child.stdin.take();
        let cap = self.config.output_cap_bytes;

        let work = async {
            let feed = async {
                if let (Some(mut pipe), Some(bytes)) = (child_stdin, stdin) {
                    // A child that exits without reading its stdin closes the pipe: not an
                    // error of ours, its exit status tells the story.
                    let _ = pipe.write_all(bytes).await;
                    drop(pipe);
                }
            };
            let ((), o, e, status) = tokio::join!(
                feed,
                read_capped(out, cap),
                read_capped(err, cap),
                child.wait()
            );
            Ok::<_, std::io::Error>((o?, e?, status?))
        };

        let result = tokio::time::timeout(timeout, work).await;
        let elapsed = started.elapsed();
        let ((stdout, stdout_truncated), (stderr, stderr_truncated), status) = match result {
            Ok(Ok(r)) => {
                // Reaped: the pid may be reused from now on, so never signal it again.
                group.disarm();
                r
            }
            Ok(Err(source)) => {
                group.kill();
                return Err(PrlctlError::Io { argv, source });
            }
            Err(_elapsed) => {
                group.kill();
                // Reap the direct child so no zombie is left; bounded because SIGKILL
                // cannot be ignored.
                let _ = child.kill().await;
                tracing::warn!(argv = ?argv, after = ?timeout, "prlctl timed out; killed");
                return Err(PrlctlError::Timeout {
                    argv,
                    after: timeout,
                });
            }
        };
        if stdout_truncated || stderr_truncated {
            tracing::warn!(
                argv = ?argv,
                cap,
                stdout_truncated,
                stderr_truncated,
                "prlctl output exceeded the cap and was truncated"
            );
        }
        tracing::debug!(argv = ?argv, status = ?status.code(), ?elapsed, "prlctl finished");
        Ok(RawOutput {
            status: status.code(),
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
        })
    }

    /// [`Self::run`], and a non-zero exit becomes [`PrlctlError::Failed`].
    pub async fn run_ok(
        &self,
        args: &[String],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<RawOutput, PrlctlError> {
        let out = self.run(args, stdin, timeout).await?;
        if out.status == Some(0) {
            Ok(out)
        } else {
            Err(self.failed(args, &out))
        }
    }

    fn failed(&self, args: &[String], out: &RawOutput) -> PrlctlError {
        let stderr_tail = if out.stderr.iter().all(u8::is_ascii_whitespace) {
            tail(&out.stdout)
        } else {
            tail(&out.stderr)
        };
        PrlctlError::Failed {
            argv: self.argv(args),
            status: out.status,
            stderr_tail,
        }
    }

    fn parse_err(&self, args: &[String], reason: ParseError) -> PrlctlError {
        PrlctlError::Parse {
            argv: self.argv(args),
            reason,
        }
    }

    async fn simple(&self, args: Vec<String>, timeout: Duration) -> Result<(), PrlctlError> {
        self.run_ok(&args, None, timeout).await.map(drop)
    }

    /// `prlctl --version`.
    pub async fn version(&self) -> Result<PrlctlVersion, PrlctlError> {
        let args = strings(&["--version"]);
        let out = self
            .read_retrying(|| self.run_ok(&args, None, self.config.default_timeout))
            .await?;
        parse::parse_version(&out.stdout_text()).map_err(|e| self.parse_err(&args, e))
    }

    /// `prlctl status VM`.
    pub async fn status(&self, vm: &str) -> Result<VmStatus, PrlctlError> {
        let args = strings(&["status", vm]);
        let out = self
            .read_retrying(|| self.run_ok(&args, None, self.config.default_timeout))
            .await?;
        parse::parse_status(&out.stdout_text()).map_err(|e| self.parse_err(&args, e))
    }

    /// `prlctl list -a` (plain table): the fallback when the JSON listing is unusable.
    pub async fn list_table(&self) -> Result<Vec<VmListing>, PrlctlError> {
        let args = strings(&["list", "-a"]);
        let out = self
            .run_ok(&args, None, self.config.default_timeout)
            .await?;
        parse::parse_list_table(&out.stdout_text()).map_err(|e| self.parse_err(&args, e))
    }

    async fn list_all_impl(&self) -> Result<Vec<VmListing>, PrlctlError> {
        let args = strings(&["list", "-a", "--json"]);
        let out = self
            .run_ok(&args, None, self.config.default_timeout)
            .await?;
        match parse::parse_list_json(&out.stdout_text()) {
            Ok(list) => Ok(list),
            Err(reason) => {
                let err = self.parse_err(&args, reason);
                tracing::warn!(error = %err, "unusable json listing; falling back to the table");
                // The table's own failure is the more useful one to report if both fail.
                self.list_table().await
            }
        }
    }

    async fn info_impl(&self, vm: &str) -> Result<VmDetails, PrlctlError> {
        let args = strings(&["list", "-i", "--json", vm]);
        let out = self
            .read_retrying(|| self.run_ok(&args, None, self.config.default_timeout))
            .await?;
        parse::parse_info_json(&out.stdout_text()).map_err(|e| self.parse_err(&args, e))
    }

    async fn exec_impl(
        &self,
        vm: &str,
        argv: &[String],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, PrlctlError> {
        let timeout = if timeout.is_zero() {
            self.config.exec_timeout_default
        } else {
            timeout
        };
        // One argument, the quoted line: real prlctl joins its arguments with spaces and the
        // guest shell re-parses them (reference §4), so separate words would be re-split.
        let line = guest_cmd::command_line(argv);
        let mut args = strings(&["exec", vm]);
        let long_line;
        let stdin = if line.len() <= guest_cmd::MAX_ARGV_LINE {
            args.push(line);
            stdin
        } else if stdin.is_none() {
            // Too long for argv (prlctl exec hangs above ~3.9 KB): the same line as a script
            // for `sh -s`, with the stdin it would have had (none).
            args.push(guest_cmd::command_line(&guest_cmd::STDIN_SHELL));
            long_line = guest_cmd::long_line_on_stdin(&line);
            Some(long_line.as_slice())
        } else {
            return Err(PrlctlError::CommandTooLong {
                argv: self.argv(&args),
                bytes: line.len(),
                limit: guest_cmd::MAX_ARGV_LINE,
            });
        };
        // The VM's slot first, then (in `run`) the global permit: an exec waiting for its VM
        // holds no permit that calls for other VMs need.
        let slot = self.exec_slots.acquire(vm).await;
        let out = self.run(&args, stdin, timeout).await;
        drop(slot);
        let out = out?;
        let stderr = out.stderr_text();
        match out.status {
            Some(255) if is_prlctl_side_message(&stderr) => Err(self.failed(&args, &out)),
            Some(status) => Ok(ExecOutput {
                status,
                stdout: out.stdout_text(),
                stderr,
            }),
            None => Err(self.failed(&args, &out)),
        }
    }

    async fn snapshot_list_impl(&self, vm: &str) -> Result<Vec<Snapshot>, PrlctlError> {
        let args = strings(&["snapshot-list", vm, "--json"]);
        let out = self
            .read_retrying(|| self.run_ok(&args, None, self.config.default_timeout))
            .await?;
        parse::parse_snapshot_list_json(&out.stdout_text()).map_err(|e| self.parse_err(&args, e))
    }
}

fn strings(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

/// Kills the child's process group when dropped, unless disarmed after the child was reaped.
struct GroupGuard {
    pid: Option<u32>,
}

impl GroupGuard {
    fn kill(&mut self) {
        kill_group(self.pid.take());
    }

    fn disarm(&mut self) {
        self.pid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILL the child's process group (it is the group leader). Errors mean it is gone.
fn kill_group(pid: Option<u32>) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Read `r` to EOF keeping at most `cap` bytes; the rest is drained and dropped so the writer
/// never blocks. Returns the bytes and whether anything was dropped.
async fn read_capped<R: AsyncRead + Unpin>(
    mut r: R,
    cap: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok((kept, truncated));
        }
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
        truncated |= n > room;
    }
}

impl Hypervisor for Prlctl {
    fn list_all(&self) -> HvFuture<'_, Vec<VmListing>> {
        Box::pin(async move {
            self.resolve_inherited().await?;
            self.list_all_retrying().await
        })
    }

    fn unresolved(&self) -> Vec<String> {
        self.unresolved_now()
    }

    fn info<'a>(&'a self, vm: &'a str) -> HvFuture<'a, VmDetails> {
        Box::pin(self.info_impl(vm))
    }

    fn start<'a>(&'a self, vm: &'a str) -> HvFuture<'a, ()> {
        Box::pin(self.power(strings(&["start", vm]), self.config.start_timeout))
    }

    fn resume<'a>(&'a self, vm: &'a str) -> HvFuture<'a, ()> {
        Box::pin(self.power(strings(&["resume", vm]), self.config.start_timeout))
    }

    fn stop<'a>(&'a self, vm: &'a str, mode: StopMode) -> HvFuture<'a, ()> {
        let mut args = strings(&["stop", vm]);
        match mode {
            StopMode::Graceful => {}
            StopMode::Kill => args.push("--kill".into()),
            StopMode::DropState => args.push("--drop-state".into()),
        }
        Box::pin(self.power(args, self.config.stop_timeout))
    }

    fn suspend<'a>(&'a self, vm: &'a str) -> HvFuture<'a, ()> {
        Box::pin(self.power(strings(&["suspend", vm]), self.config.stop_timeout))
    }

    fn exec<'a>(
        &'a self,
        vm: &'a str,
        argv: &'a [String],
        stdin: Option<&'a [u8]>,
        timeout: Duration,
    ) -> HvFuture<'a, ExecOutput> {
        Box::pin(self.exec_impl(vm, argv, stdin, timeout))
    }

    fn register<'a>(&'a self, bundle: &'a str, regenerate_src_uuid: bool) -> HvFuture<'a, ()> {
        let mut args = strings(&["register", bundle]);
        if regenerate_src_uuid {
            args.push("--regenerate-src-uuid".into());
        }
        Box::pin(self.simple(args, self.config.default_timeout))
    }

    fn unregister<'a>(&'a self, vm: &'a str) -> HvFuture<'a, ()> {
        Box::pin(self.simple(strings(&["unregister", vm]), self.config.default_timeout))
    }

    fn set<'a>(&'a self, vm: &'a str, args: &'a [String]) -> HvFuture<'a, ()> {
        let mut full = strings(&["set", vm]);
        full.extend(args.iter().cloned());
        Box::pin(self.simple(full, self.config.default_timeout))
    }

    fn clone_vm<'a>(
        &'a self,
        src: &'a str,
        new_name: &'a str,
        dst: Option<&'a str>,
    ) -> HvFuture<'a, ()> {
        let mut args = strings(&["clone", src, "--name", new_name]);
        if let Some(dst) = dst {
            args.extend(strings(&["--dst", dst]));
        }
        Box::pin(self.simple(args, self.config.bulk_timeout))
    }

    fn delete<'a>(&'a self, vm: &'a str) -> HvFuture<'a, ()> {
        // PD 26.3.2 asks for confirmation and reads it from stdin; answer yes up front.
        Box::pin(async move {
            let args = strings(&["delete", vm]);
            self.run_ok(&args, Some(b"y\n"), self.config.bulk_timeout)
                .await
                .map(drop)
        })
    }

    fn snapshot_list<'a>(&'a self, vm: &'a str) -> HvFuture<'a, Vec<Snapshot>> {
        Box::pin(self.snapshot_list_impl(vm))
    }

    fn snapshot_delete<'a>(&'a self, vm: &'a str, id: &'a str) -> HvFuture<'a, ()> {
        Box::pin(self.simple(
            strings(&["snapshot-delete", vm, "--id", id]),
            self.config.default_timeout,
        ))
    }

    fn create_macos<'a>(
        &'a self,
        name: &'a str,
        ipsw: &'a str,
        timeout: Duration,
    ) -> HvFuture<'a, ()> {
        Box::pin(self.simple(
            strings(&[
                "create",
                name,
                "-o",
                "macos",
                "--no-hdd",
                "--restore-image",
                ipsw,
            ]),
            timeout,
        ))
    }

    fn version(&self) -> HvFuture<'_, PrlctlVersion> {
        Box::pin(Prlctl::version(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end_and_trims() {
        let mut long = vec![b'a'; 5000];
        long.extend_from_slice(b"  the error\n");
        let t = tail(&long);
        assert!(t.ends_with("the error"));
        assert!(t.len() <= STDERR_TAIL_BYTES);
        assert_eq!(tail(b"\n  x  \n"), "x");
    }

    #[test]
    fn default_config_env_is_minimal() {
        let c = PrlctlConfig::default();
        assert_eq!(c.path, PathBuf::from("/usr/local/bin/prlctl"));
        assert_eq!(c.env[0], ("PATH".to_owned(), DEFAULT_PATH.to_owned()));
        for (k, _) in &c.env[1..] {
            assert!(PASSTHROUGH_ENV.contains(&k.as_str()), "{k}");
        }
    }

    #[tokio::test]
    async fn read_capped_drains_past_the_cap() {
        let data = vec![7u8; 100_000];
        let (kept, truncated) = read_capped(&data[..], 1000).await.unwrap();
        assert_eq!(kept.len(), 1000);
        assert!(truncated);
        let (kept, truncated) = read_capped(&data[..10], 1000).await.unwrap();
        assert_eq!(kept.len(), 10);
        assert!(!truncated);
        let (kept, truncated) = read_capped(&data[..1000], 1000).await.unwrap();
        assert_eq!(kept.len(), 1000);
        assert!(!truncated);
    }

    #[test]
    fn prlctl_is_send_sync_static() {
        fn assert_hv<T: Hypervisor>() {}
        assert_hv::<Prlctl>();
    }
}
