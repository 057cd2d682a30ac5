//! The clap types: global flags, then noun-verb subcommands. Doc comments are the help text.
#![deny(missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Default control socket (matches marbled's default `daemon.socket`).
pub const DEFAULT_SOCKET: &str = "/usr/local/var/marble/marbled.sock";

/// marblectl — control the MARBLE daemon on this host.
#[derive(Debug, Parser)]
#[command(name = "marblectl", version, about, propagate_version = true)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options for every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Control socket of marbled.
    #[arg(long, global = true, env = "MARBLE_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print machine-readable JSON on stdout (read commands).
    #[arg(long, global = true)]
    pub json: bool,
    /// How long marbled may stay silent (e.g. 10s, 500ms): no handshake answer within it
    /// exits 69; after the handshake, no reply or progress for it exits 75. Long requests
    /// (a slot wait, a boot, a transfer) are not cut off: the daemon confirms it is working
    /// every second. `events --follow` has no limit.
    #[arg(long, global = true, value_parser = humantime::parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// More detail on stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Host overview: policy, running VM and why, pending requests, locks, recent decisions.
    Status,
    /// VM commands.
    #[command(subcommand)]
    Vm(VmCommand),
    /// Ask for a VM to run (Jenkins' start script). Prints nothing on stdout.
    ///
    /// Exit 0: the VM runs and its guest answers. 75: the host is busy with a job (try another
    /// node). 77: locked or in maintenance. 2: unknown VM. 69: marbled unreachable.
    RequestSlot(RequestSlotArgs),
    /// Stop starting VMs on the cycle (running VMs are left alone).
    Pause(ReasonArgs),
    /// Resume cycling and end a drain.
    Resume,
    /// Lock a VM (or all but one) against starts.
    Lock(LockArgs),
    /// Remove locks.
    Unlock(UnlockArgs),
    /// Maintenance: no new starts; busy VMs finish; idle VMs stop.
    Drain(DrainArgs),
    /// Lifecycle events and scheduler decisions.
    Events(EventsArgs),
    /// VM images in the S3 bucket: push, pull, list, remove, verify (transfers run in the
    /// daemon and survive this command's session ending).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Host doctor (`host check`) and setup (`host setup`, macOS only).
    #[command(subcommand)]
    Host(HostCommand),
    /// Every MARBLE host, from the heartbeats daemons write to the image bucket (read by
    /// this host's marblectl through its daemon). Stale hosts are marked with their age.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Moving a host off the seed scripts (docs/MIGRATION.md).
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// The daemon's metrics in Prometheus text format (the node_exporter textfile's
    /// content).
    Metrics,
    /// The GitHub runner in ROOT VMs: install it (package and per-boot JIT hook) or upgrade
    /// it to the target release; versions and deadlines are in `status`.
    #[command(subcommand)]
    Runner(RunnerCommand),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Install MARBLE on this host (as root): binaries, the LaunchDaemon plist, newsyslog
    /// conf, config directory with the default config and 0600 token files, state and log
    /// directories, completions and man pages; then start the daemon. Refuses on a host that
    /// fails the pre-install host check; `--destdir` stages the files without the check.
    Install(InstallArgs),
    /// Replace the binaries (plist, completions and man pages too) and restart the daemon.
    /// Locks, leases and running VMs are kept: marbled leaves VMs running when it stops, and
    /// the new daemon adopts them and the state file.
    Upgrade(UpgradeArgs),
    /// Stop the daemon and remove binaries, plist, newsyslog conf, completions and man pages.
    /// Keeps the config directory (config and token files), state, logs, VMs and images.
    Uninstall(UninstallArgs),
}

/// `install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Absolute prefix on the host: PREFIX/bin, PREFIX/etc/marble, PREFIX/var/marble,
    /// PREFIX/var/log/marble, PREFIX/share.
    #[arg(long, default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// Write every file under DIR instead of / (a staging root or package build); skips the
    /// host check and does not start the daemon.
    #[arg(long, value_name = "DIR")]
    pub destdir: Option<PathBuf>,
    /// Directory holding the new marbled and marblectl (default: this marblectl's directory,
    /// e.g. the unpacked release's bin/).
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// The service user: owns the Parallels VMs, runs marbled, owns token files and state.
    #[arg(long, default_value = "sftnight")]
    pub user: String,
    /// The service user's group.
    #[arg(long, default_value = "staff")]
    pub group: String,
    /// Group of the control socket, whose members may run read-only commands (default:
    /// --group).
    #[arg(long)]
    pub socket_group: Option<String>,
    /// Tests only: stand in for launchd, running the plist's program and recording its pid.
    #[arg(long, hide = true, value_name = "FILE")]
    pub service_pid_file: Option<PathBuf>,
}

/// `upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The prefix given to install.
    #[arg(long, default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// The destdir given to install (the daemon is then not restarted).
    #[arg(long, value_name = "DIR")]
    pub destdir: Option<PathBuf>,
    /// Directory holding the new marbled and marblectl (default: this marblectl's directory).
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// Tests only: stand in for launchd (see install).
    #[arg(long, hide = true, value_name = "FILE")]
    pub service_pid_file: Option<PathBuf>,
}

/// `uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// The prefix given to install.
    #[arg(long, default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// The destdir given to install.
    #[arg(long, value_name = "DIR")]
    pub destdir: Option<PathBuf>,
    /// Tests only: stand in for launchd (see install).
    #[arg(long, hide = true, value_name = "FILE")]
    pub service_pid_file: Option<PathBuf>,
}

/// `vm …` commands.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// List every VM with state, team and busy state.
    List,
    /// Show one VM.
    Show(VmArg),
    /// Start (or resume) a VM, respecting capacity and locks.
    Start(VmArg),
    /// Stop a VM: graceful first, then forced after a timeout. Refuses a busy VM or one whose
    /// busy state cannot be determined unless --force.
    Stop(StopArgs),
    /// Create a macOS VM from an IPSW restore image with the uniform settings (headless,
    /// bridged net0, build disk attached, no host folder sharing), locked against scheduler
    /// starts, and print the steps that must be done by hand.
    Create(CreateArgs),
    /// Run a provisioning profile's steps in the VM's guest (prlctl exec). Completed steps
    /// are skipped, so it is safe to run again; the first failing step stops the run. A
    /// stopped VM is started when the host is free; the VM is held busy for the whole run.
    Provision(ProvisionArgs),
}

/// `vm create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// VM name, e.g. macphsft01-ROOT-VM-macOS-15 (letters, digits, '.', '_', '-'; must match
    /// the team's name pattern).
    pub name: String,
    /// The .ipsw restore image (made absolute; read by marbled's user).
    #[arg(long)]
    pub ipsw: PathBuf,
    /// Team: root or spi.
    #[arg(long, value_parser = ["root", "spi"])]
    pub team: String,
    /// CPUs (default: all host CPUs).
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Memory in MiB (default: host memory minus host.memory_reserve_mib).
    #[arg(long, value_name = "MB")]
    pub memory: Option<u64>,
}

/// `vm provision`.
#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// VM name or UUID.
    pub vm: String,
    /// Profile (TOML); see docs/profiles/root.toml and docs/profiles/spi.toml.
    #[arg(long)]
    pub profile: PathBuf,
}

/// `runner …` commands.
#[derive(Debug, Subcommand)]
pub enum RunnerCommand {
    /// Put the pinned actions/runner release (macOS arm64, from the host's verified cache)
    /// and the per-boot JIT start hook into a ROOT VM's guest. Idempotent: a second run
    /// changes nothing. Refused (75) while a runner runs in the guest; a package that does
    /// not match its published SHA-256 is refused (65) and nothing is installed.
    Install(VmArg),
    /// Bring ROOT VMs' runners to the target release (`[github] runner_version`, default
    /// the latest), one VM at a time, never while a runner (or its job) runs in the VM.
    Upgrade(RunnerUpgradeArgs),
}

/// `runner upgrade`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["vm", "all"])))]
pub struct RunnerUpgradeArgs {
    /// VM name or UUID.
    pub vm: Option<String>,
    /// Every ROOT VM whose runner is not the target version (busy ones are skipped: exit 75).
    #[arg(long)]
    pub all: bool,
}

/// `fleet …` commands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// List the hosts: version, policy, last heartbeat, free disk, running VM, every VM.
    Ls,
}

/// `migrate …` commands.
#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Report what on this host is still in the seed scripts' state: a running
    /// vm_cycler.sh and its nohup log, `chflags uchg` bundles, VMs running that marbled did
    /// not start, GitHub runner registrations marbled does not own, the seed's PAT files,
    /// launch daemons and shared key in running guests, secret files readable by others.
    /// Checked by marbled as the VM owner. One PASS/WARN/FAIL/SKIP line each with the fix;
    /// exits 1 if anything is left (FAIL), 0 when the host is clean.
    Check,
}

/// `host …` commands.
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Check this host: Parallels, prlctl, host name, build disk, free disk, S3, GitHub
    /// (checked by marbled as the VM owner), socket, launchd job and Spotlight (checked
    /// here). One PASS/WARN/FAIL/SKIP line per check with the fix; exits 1 on any FAIL.
    Check,
    /// Apply the host settings that can be automated (macOS only, as root): computer, host
    /// and local host name, and Spotlight indexing off on /.
    Setup(HostSetupArgs),
}

/// `host setup`.
#[derive(Debug, Args)]
pub struct HostSetupArgs {
    /// The host name, e.g. macphsft32.
    #[arg(long)]
    pub name: String,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
}

/// `image …` commands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Push a stopped VM: clone, scrub secrets in the clone, stream to S3, verify, delete the
    /// clone. The VM is held (nothing starts it) for the whole push.
    Push(ImagePushArgs),
    /// Pull an image (or a legacy .zip), verify it, register it as `<host>-<name without
    /// date>` with a new MAC, and print what to register in LANDB.
    Pull(ImagePullArgs),
    /// List images in the bucket.
    Ls(ImageLsArgs),
    /// Delete an image from the bucket (for every host). Asks for confirmation when stdin is
    /// a terminal; elsewhere (scripts, ssh without a tty) it needs --yes and exits 64 without.
    Rm(ImageRmArgs),
    /// Re-download an image and check every chunk against its manifest.
    Verify(ImageVerifyArgs),
    /// Running and recently finished transfers.
    Transfers,
}

/// `image push`.
#[derive(Debug, Args)]
pub struct ImagePushArgs {
    /// VM name or UUID (must be stopped).
    pub vm: String,
    /// Image name (default: today's date + the VM name without the host prefix).
    #[arg(long)]
    pub name: Option<String>,
    /// Return once the transfer has started; follow it with `marblectl image transfers`.
    #[arg(long)]
    pub detach: bool,
}

/// `image pull`.
#[derive(Debug, Args)]
pub struct ImagePullArgs {
    /// Image name, e.g. 2026-11-28-ROOT-VM-macOS-14.
    pub name: String,
    /// Register under this VM name instead of `<host>-<name without date>`.
    #[arg(long = "as", value_name = "VM")]
    pub as_name: Option<String>,
    /// Return once the transfer has started.
    #[arg(long)]
    pub detach: bool,
}

/// `image ls`.
#[derive(Debug, Args)]
pub struct ImageLsArgs {
    /// Only this team's images (root, spi; the bucket folder is upper case).
    #[arg(long)]
    pub team: Option<String>,
}

/// `image rm`.
#[derive(Debug, Args)]
pub struct ImageRmArgs {
    /// Image name.
    pub name: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short)]
    pub yes: bool,
}

/// `image verify`.
#[derive(Debug, Args)]
pub struct ImageVerifyArgs {
    /// Image name.
    pub name: String,
    /// Return once the transfer has started.
    #[arg(long)]
    pub detach: bool,
}

/// A VM name or UUID.
#[derive(Debug, Args)]
pub struct VmArg {
    /// VM name or UUID.
    pub vm: String,
}

/// `vm stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// VM name or UUID.
    pub vm: String,
    /// Stop even if a CI job may be running (it will be killed).
    #[arg(long)]
    pub force: bool,
}

/// `request-slot`.
#[derive(Debug, Args)]
pub struct RequestSlotArgs {
    /// The VM Jenkins wants.
    pub vm: String,
    /// Wait this long for a busy host to free up (e.g. 10m). Default: answer at once.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub wait: Option<Duration>,
}

/// A reason for the record.
#[derive(Debug, Args)]
pub struct ReasonArgs {
    /// Why (shown in status).
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `lock`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["vm", "all_except"])))]
pub struct LockArgs {
    /// The VM to lock.
    pub vm: Option<String>,
    /// Lock every VM except this one.
    #[arg(long, value_name = "VM")]
    pub all_except: Option<String>,
    /// Why (shown in status).
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `unlock`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["vm", "all"])))]
pub struct UnlockArgs {
    /// The VM to unlock.
    pub vm: Option<String>,
    /// Unlock every VM.
    #[arg(long)]
    pub all: bool,
    /// Why (logged).
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Wait until no VM runs (or this long), e.g. 30m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub wait: Option<Duration>,
    /// Why (shown in status).
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep streaming until interrupted (otherwise print recent decisions and exit).
    #[arg(long, short)]
    pub follow: bool,
}

/// `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}
