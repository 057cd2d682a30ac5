//! Request/reply envelope and the typed messages carried after the handshake.
//!
//! Wire rules (enforced by review and by `.ci/run`'s grep): no `usize`/`isize` (use `u32`/`u64`),
//! times are `u64` unix milliseconds, paths are UTF-8 `String`s, maps are `BTreeMap`/`Vec`, and
//! none of the serde attributes that a non-self-describing format cannot honour.
//!
//! Every connection carries at most one request at a time in v1. The daemon answers a request
//! with zero or more [`Reply::Event`] frames (progress, lifecycle events) followed by exactly
//! one terminal frame: [`Reply::Ok`], [`Reply::Err`] or, for streams the daemon ends,
//! [`Reply::EndOfStream`].

use serde::{Deserialize, Serialize};

/// A client frame: one request with the id its reply will carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Chosen by the client; echoed in every reply frame.
    pub id: u32,
    /// The request.
    pub body: Request,
}

/// A daemon frame answering the request with the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFrame {
    /// The id of the request this frame answers.
    pub id: u32,
    /// The reply.
    pub body: Reply,
}

/// One reply frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Terminal success. Since 1.0.
    Ok(Response),
    /// Terminal failure. Since 1.0.
    Err(WireError),
    /// A non-terminal streamed event. Since 1.0.
    Event(Event),
    /// Terminal end of a stream the daemon closes (for example at shutdown). Since 1.0.
    EndOfStream,
}

/// Requests, in wire order. Append only (see `docs/PROTOCOL.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Host overview: policy, running VM and why, pending requests, locks, recent decisions.
    /// Since 1.0. Read-only. Errors: `Internal`.
    Status,
    /// Every VM with state and team. Since 1.0. Read-only. Errors: `Internal`.
    ListVms,
    /// One VM in detail. Since 1.0. Read-only. Errors: `NotFound`.
    ShowVm {
        /// VM name or UUID.
        vm: String,
    },
    /// Start (or resume) a stopped/suspended/paused VM, respecting capacity and locks.
    /// Since 1.0. Mutating. Errors: `NotFound`, `InvalidState` (already running or an
    /// operation in flight), `Busy` (host full with a busy VM), `Locked`, `Unavailable`.
    StartVm {
        /// VM name or UUID.
        vm: String,
    },
    /// Stop a running VM: graceful first, `--kill` after a timeout. Refused while the VM is
    /// busy or its busy state is unknown unless `force`. Since 1.0. Mutating. Errors:
    /// `NotFound`, `InvalidState`, `Busy`, `Unavailable`.
    StopVm {
        /// VM name or UUID.
        vm: String,
        /// Skip the busy check. The operator accepts that a job may be killed.
        force: bool,
    },
    /// Turn this connection into a stream of [`Event`]s until the client disconnects.
    /// Since 1.0. Read-only.
    WatchEvents,
    /// Jenkins' start script asks for `vm` to run. Answers once the guest accepts
    /// `prlctl exec`. Since 1.0. Mutating. Errors: `NotFound` (message lists the known VMs),
    /// `Busy` (host busy with a job: names the VM, team, reason, since), `Locked`,
    /// `Unavailable`, `Timeout`.
    RequestSlot {
        /// The SPI VM to run.
        vm: String,
        /// How long the caller is willing to wait for the host to become free, in ms.
        /// 0 answers at once.
        wait_ms: u64,
    },
    /// Stop starting VMs on the cycle (running VMs are left alone). Since 1.0. Mutating.
    Pause {
        /// Why, shown in `status`.
        reason: String,
    },
    /// Resume cycling and end a drain. Since 1.0. Mutating.
    Resume,
    /// Lock a VM, or every VM but one, against starts. Since 1.0. Mutating.
    /// Errors: `NotFound`.
    Lock {
        /// What to lock.
        target: LockTarget,
        /// Why, shown in `status`.
        reason: String,
    },
    /// Remove locks. Since 1.0. Mutating. Errors: `NotFound`.
    Unlock {
        /// What to unlock.
        target: UnlockTarget,
    },
    /// Maintenance: no new starts; busy VMs finish; idle VMs stop. With `wait_ms > 0` the
    /// reply comes when no VM runs (or with `Timeout`). Since 1.0. Mutating.
    Drain {
        /// Why, shown in `status`.
        reason: String,
        /// How long to wait for the host to be empty, in ms. 0 answers at once.
        wait_ms: u64,
    },
    /// Push a stopped VM to the image bucket as a daemon job: clone, scrub the clone's guest,
    /// stream, verify, delete the clone. The VM is held for the whole push (starts are refused
    /// with `Locked`) and no VM may start while the scrubbing clone runs. Streams
    /// `Event::Progress` (bytes) and ends with `Response::ImagePushed`, or at once with
    /// `Response::TransferStarted` when `detach`. The job survives the client disconnecting.
    /// Since 1.1. Mutating. Valid when the VM is stopped and no VM occupies the host.
    /// Errors: `NotFound`, `InvalidState` (VM not stopped, or already in a transfer), `Busy`
    /// (another VM runs), `Locked`, `InvalidRequest` (bad image name), `Unavailable` (S3 or
    /// hypervisor), `Internal`.
    ImagePush {
        /// VM name or UUID.
        vm: String,
        /// Image name `YYYY-MM-DD-TEAM-VM-…`; default today's date + the VM name without the
        /// `<host>-` prefix.
        name: Option<String>,
        /// Answer with `TransferStarted` at once instead of following the job.
        detach: bool,
    },
    /// Pull an image (MARBLE format or legacy zip) as a daemon job, verify it, and register it
    /// as `<host>-<name without date>` (or `as_name`) with a new MAC. Nothing is registered
    /// unless every check passed. Streams `Event::Progress`; ends with `Response::ImagePulled`
    /// or `Response::TransferStarted` when `detach`. Since 1.1. Mutating.
    /// Errors: `NotFound` (no such image), `InvalidState` (a VM of that name exists, or a
    /// transfer of it runs), `InvalidRequest`, `Unavailable`, `Internal` (checksum, corrupt).
    ImagePull {
        /// Image name.
        name: String,
        /// Register under this VM name instead of `<host>-<name without date>`.
        as_name: Option<String>,
        /// Answer with `TransferStarted` at once instead of following the job.
        detach: bool,
    },
    /// List images in the bucket (one team's, or all). Answer: `Response::Images`.
    /// Since 1.1. Read-only. Errors: `InvalidRequest`, `Unavailable`.
    ImageList {
        /// Team folder (`ROOT`, `SPI`); `None` lists every team.
        team: Option<String>,
    },
    /// Delete an image's objects (manifest first). Answer: `Response::ImageRemoved`.
    /// Since 1.1. Mutating. Errors: `NotFound`, `InvalidRequest`, `InvalidState` (a transfer
    /// of it runs), `Unavailable`.
    ImageRemove {
        /// Image name.
        name: String,
    },
    /// Re-read a stored image and check every chunk against its manifest, as a daemon job.
    /// Streams `Event::Progress`; ends with `Response::ImageVerified` (or `TransferStarted`
    /// when `detach`). Since 1.1. Read-only. Errors: `NotFound`, `InvalidRequest`,
    /// `Unavailable`, `Internal` (checksum mismatch, corrupt).
    ImageVerify {
        /// Image name.
        name: String,
        /// Answer with `TransferStarted` at once instead of following the job.
        detach: bool,
    },
    /// Running and recently finished image transfers. Answer: `Response::Transfers`.
    /// Since 1.1. Read-only.
    Transfers,
    /// Create a macOS VM from an IPSW restore image (`prlctl create NAME -o macos --no-hdd
    /// --restore-image FILE`), then apply the seed's settings: CPUs and memory, a 64 GiB plain
    /// system disk, `net0` bridged to the default adapter, isolation off, the shared build disk
    /// attached, headless startup view, then no sharing of the host's folders. The new VM is
    /// locked against scheduler starts (first boot and setup are manual);
    /// `Response::VmCreated` lists the manual steps. A failure of a setting deletes the
    /// half-configured VM; a refused sharing switch keeps it (locked) and fails with
    /// `Unavailable` naming the switch. Since 1.2. Mutating.
    /// Errors: `InvalidRequest` (bad name, name does not match the team's pattern, IPSW not
    /// an absolute path to a readable `.ipsw` file, build disk missing), `InvalidState` (a VM
    /// of that name exists), `Unavailable` (prlctl failed), `Internal`.
    CreateVm {
        /// VM name: `[A-Za-z0-9._-]`, matching the team's name pattern.
        name: String,
        /// Absolute path of the `.ipsw` on the host (read by the daemon's user).
        ipsw: String,
        /// `Root` or `Spi`.
        team: Team,
        /// CPUs; `None`: all host CPUs.
        cpus: Option<u32>,
        /// Memory in MiB; `None`: host memory minus the configured reserve.
        memory_mib: Option<u64>,
    },
    /// Run a provisioning profile in a VM's guest through `prlctl exec`, as a daemon job
    /// bound to this connection. A stopped VM is started first when the host is free. For
    /// the whole run the VM is held: its busy probe answers busy (so the scheduler never
    /// stops it), stops and starts of it are refused with `Locked`, and no other VM starts.
    /// Steps already done (guest markers) are skipped. Streams `Event::Progress` (step n of
    /// total, step output); ends with `Response::Provisioned`. Since 1.2. Mutating.
    /// Errors: `NotFound`, `InvalidRequest` (invalid profile, listing every problem),
    /// `InvalidState` (a step failed — the message names it; VM suspended or in an
    /// operation; already provisioning), `Busy` (another VM occupies the host), `Locked`
    /// (held by an image transfer), `Unavailable` (the guest does not answer `prlctl exec`).
    ProvisionVm {
        /// VM name or UUID.
        vm: String,
        /// The profile as the client read it (the daemon never opens operator paths).
        profile: ProfileUpload,
    },
    /// The daemon's half of `marblectl host check`: Parallels, prlctl, host name, build
    /// disk, free disk, S3, GitHub, checked as the daemon's user (the VM owner). Answer:
    /// `Response::HostReport`. Since 1.2. Read-only.
    HostCheck,
    /// The fleet inventory: every host's heartbeat object (`fleet/<host>.json`) in the image
    /// bucket, read by the daemon (the client has no S3 access). Answer: `Response::Fleet`.
    /// Since 1.3. Read-only. Errors: `Unavailable` (the bucket cannot be listed),
    /// `InvalidState` (no `[fleet]` section configured).
    FleetList,
    /// The daemon's metrics in the Prometheus text exposition format (the same text as the
    /// node_exporter textfile). Answer: `Response::Metrics`. Since 1.3. Read-only.
    Metrics,
    /// The CI side as this daemon sees it: whether each configured CI system can be used
    /// (its token loaded) and why not, and the registered runners that are offline and not
    /// counted as free capacity. Answer: `Response::Ci`. Since 1.4. Read-only.
    CiStatus,
    /// `marblectl migrate check`: what on this host is still in the state the seed scripts
    /// left (a running cycler and its nohup log, `chflags uchg` bundles, VMs running that
    /// MARBLE did not start, runner registrations MARBLE does not own, the seed's PAT files
    /// and launch daemons in running guests, group- or world-readable secrets), one line per
    /// check, checked as the VM owner. Answer: `Response::HostReport`. Since 1.6. Read-only.
    MigrateCheck,
    /// Put the GitHub runner into a ROOT VM's guest (`marblectl runner install VM`, and with
    /// `upgrade` `marblectl runner upgrade VM`): the `actions/runner` macOS arm64 package of
    /// the target release (`[github] runner_version`, default the latest), from the host's
    /// cache (downloaded once per host, SHA-256 checked against the checksum the release
    /// publishes), unpacked through `prlctl exec` stdin, and (not with `upgrade`) the per-boot
    /// JIT start hook. Idempotent: what is in place already is skipped. Runs as a
    /// provisioning run (the VM is held; a stopped VM is started when the host is free) and
    /// never while a runner listens in the guest (a job may be assigned to it). Streams
    /// `Event::Progress`; ends with `Response::RunnerInstalled`. Since 1.6. Mutating.
    /// Errors: `NotFound`, `InvalidRequest` (not a ROOT VM), `InvalidState` (no `[github]`,
    /// a step failed), `Busy` (a runner listens or a job runs in the VM, or another VM
    /// occupies the host), `Locked`, `Unavailable` (GitHub or the guest cannot be reached),
    /// `DataError` (the package does not match its published checksum: nothing installed).
    RunnerInstall {
        /// VM name or UUID.
        vm: String,
        /// Only the package (no hook), and only when the VM's version differs.
        upgrade: bool,
    },
    /// Runner versions: the latest `actions/runner` release the daemon knows and, per ROOT
    /// VM, the version read in its guest at boot (or installed since), days behind and the
    /// 30-day update deadline. Answer: `Response::Runners`. Since 1.6. Read-only.
    RunnerStatus,
    /// The fleet's demand poller (`[demand] shared`) as this host's last election step saw
    /// it: the lease holder, its term and expiry, and this host's role. Answer:
    /// `Response::DemandPoller`. Since 1.7. Read-only.
    DemandPoller,
}

impl Request {
    /// The protocol minor that introduced this request; a client refuses to send it to an
    /// older daemon ("daemon too old for …").
    pub fn since_minor(&self) -> u16 {
        match self {
            Request::Status
            | Request::ListVms
            | Request::ShowVm { .. }
            | Request::StartVm { .. }
            | Request::StopVm { .. }
            | Request::WatchEvents
            | Request::RequestSlot { .. }
            | Request::Pause { .. }
            | Request::Resume
            | Request::Lock { .. }
            | Request::Unlock { .. }
            | Request::Drain { .. } => 0,
            Request::ImagePush { .. }
            | Request::ImagePull { .. }
            | Request::ImageList { .. }
            | Request::ImageRemove { .. }
            | Request::ImageVerify { .. }
            | Request::Transfers => 1,
            Request::CreateVm { .. } | Request::ProvisionVm { .. } | Request::HostCheck => 2,
            Request::FleetList | Request::Metrics => 3,
            Request::CiStatus => 4,
            Request::MigrateCheck => 6,
            Request::RunnerInstall { .. } | Request::RunnerStatus => 6,
            Request::DemandPoller => 7,
        }
    }

    /// Whether the request changes state (admin users only) or only reads it (socket group).
    pub fn is_mutating(&self) -> bool {
        match self {
            Request::Status
            | Request::ListVms
            | Request::ShowVm { .. }
            | Request::WatchEvents
            | Request::ImageList { .. }
            | Request::ImageVerify { .. }
            | Request::Transfers
            | Request::HostCheck
            | Request::FleetList
            | Request::Metrics
            | Request::CiStatus
            | Request::MigrateCheck
            | Request::RunnerStatus
            | Request::DemandPoller => false,
            Request::StartVm { .. }
            | Request::StopVm { .. }
            | Request::RequestSlot { .. }
            | Request::Pause { .. }
            | Request::Resume
            | Request::Lock { .. }
            | Request::Unlock { .. }
            | Request::Drain { .. }
            | Request::ImagePush { .. }
            | Request::ImagePull { .. }
            | Request::ImageRemove { .. }
            | Request::CreateVm { .. }
            | Request::ProvisionVm { .. }
            | Request::RunnerInstall { .. } => true,
        }
    }

    /// A short stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::ListVms => "list_vms",
            Request::ShowVm { .. } => "show_vm",
            Request::StartVm { .. } => "start_vm",
            Request::StopVm { .. } => "stop_vm",
            Request::WatchEvents => "watch_events",
            Request::RequestSlot { .. } => "request_slot",
            Request::Pause { .. } => "pause",
            Request::Resume => "resume",
            Request::Lock { .. } => "lock",
            Request::Unlock { .. } => "unlock",
            Request::Drain { .. } => "drain",
            Request::ImagePush { .. } => "image_push",
            Request::ImagePull { .. } => "image_pull",
            Request::ImageList { .. } => "image_list",
            Request::ImageRemove { .. } => "image_remove",
            Request::ImageVerify { .. } => "image_verify",
            Request::Transfers => "transfers",
            Request::CreateVm { .. } => "create_vm",
            Request::ProvisionVm { .. } => "provision_vm",
            Request::HostCheck => "host_check",
            Request::FleetList => "fleet_list",
            Request::Metrics => "metrics",
            Request::CiStatus => "ci_status",
            Request::MigrateCheck => "migrate_check",
            Request::RunnerInstall { upgrade: false, .. } => "runner_install",
            Request::RunnerInstall { upgrade: true, .. } => "runner_upgrade",
            Request::RunnerStatus => "runner_status",
            Request::DemandPoller => "demand_poller",
        }
    }
}

impl Request {
    /// Check the bounds a request must respect before the daemon acts on it: every
    /// free-text or name field is at most [`crate::MAX_TEXT_FIELD_LEN`] bytes. The daemon
    /// calls this before dispatch and answers a violation with `InvalidRequest`.
    ///
    /// Why at the door: reasons and names are stored and repeated in every `status` reply;
    /// a few 130 kB lock reasons pushed that reply over [`crate::MAX_FRAME_LEN`], and `status`
    /// failed until the daemon restarted. A provisioning profile's text and files are not
    /// free text (they are bounded by the frame) and are not checked here.
    ///
    /// Names the request would give a new VM (`image pull --as`, `vm create`) must also
    /// follow [`crate::names::name_problem`]: they end up in paths, prlctl argv and commands
    /// printed for a person to copy.
    pub fn validate(&self) -> Result<(), WireError> {
        for (field, value) in self.text_fields() {
            if value.len() > crate::MAX_TEXT_FIELD_LEN {
                return Err(WireError::new(
                    ErrorKind::InvalidRequest,
                    format!(
                        "`{}`: the {field} is {} bytes; at most {} bytes are allowed",
                        self.kind(),
                        value.len(),
                        crate::MAX_TEXT_FIELD_LEN
                    ),
                ));
            }
        }
        for (field, value) in self.new_names() {
            if let Some(problem) = crate::names::name_problem(field, value) {
                return Err(WireError::new(
                    ErrorKind::InvalidRequest,
                    format!("`{}`: {problem}", self.kind()),
                ));
            }
        }
        Ok(())
    }

    /// The names this request would create (a VM's name), for [`Request::validate`]: they
    /// must follow [`crate::names::name_problem`]'s rule. Names of existing VMs are looked
    /// up, never created, and image names have their own format (checked by the daemon).
    fn new_names(&self) -> Vec<(&'static str, &str)> {
        match self {
            Request::ImagePull {
                as_name: Some(vm), ..
            } => vec![("VM name (--as)", vm)],
            Request::CreateVm { name, .. } => vec![("VM name", name)],
            _ => Vec::new(),
        }
    }

    /// Every free-text or name field with its name, for [`Request::validate`].
    fn text_fields(&self) -> Vec<(&'static str, &str)> {
        match self {
            Request::Status
            | Request::ListVms
            | Request::WatchEvents
            | Request::Resume
            | Request::Transfers
            | Request::HostCheck
            | Request::FleetList
            | Request::Metrics
            | Request::CiStatus
            | Request::MigrateCheck
            | Request::RunnerStatus
            | Request::DemandPoller
            | Request::Unlock {
                target: UnlockTarget::All,
            } => Vec::new(),
            Request::ShowVm { vm }
            | Request::StartVm { vm }
            | Request::StopVm { vm, .. }
            | Request::RequestSlot { vm, .. }
            | Request::RunnerInstall { vm, .. }
            | Request::Unlock {
                target: UnlockTarget::Vm(vm),
            } => vec![("VM name", vm)],
            Request::Pause { reason } | Request::Drain { reason, .. } => vec![("reason", reason)],
            Request::Lock { target, reason } => {
                let (LockTarget::Vm(vm) | LockTarget::AllExcept(vm)) = target;
                vec![("VM name", vm), ("reason", reason)]
            }
            Request::ImagePush { vm, name, .. } => {
                let mut out = vec![("VM name", vm.as_str())];
                out.extend(name.as_deref().map(|n| ("image name", n)));
                out
            }
            Request::ImagePull { name, as_name, .. } => {
                let mut out = vec![("image name", name.as_str())];
                out.extend(as_name.as_deref().map(|n| ("VM name", n)));
                out
            }
            Request::ImageList { team } => {
                team.as_deref().map(|t| ("team", t)).into_iter().collect()
            }
            Request::ImageRemove { name } | Request::ImageVerify { name, .. } => {
                vec![("image name", name)]
            }
            Request::CreateVm { name, ipsw, .. } => vec![("VM name", name), ("IPSW path", ipsw)],
            Request::ProvisionVm { vm, profile } => {
                vec![("VM name", vm), ("profile origin", &profile.origin)]
            }
        }
    }
}

/// What a lock applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockTarget {
    /// One VM.
    Vm(String),
    /// Every VM except this one (the seed's `LOCK_ALL_EXCEPT.sh`).
    AllExcept(String),
}

/// What an unlock applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnlockTarget {
    /// One VM.
    Vm(String),
    /// Every VM.
    All,
}

/// Successful terminal replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Answer to `Status`. Since 1.0.
    Status(StatusReport),
    /// Answer to `ListVms`. Since 1.0.
    Vms(Vec<VmInfo>),
    /// Answer to `ShowVm`. Since 1.0.
    Vm(VmInfo),
    /// A mutating request completed; the message says what changed. Since 1.0.
    Done {
        /// Human-readable summary.
        message: String,
    },
    /// Answer to `RequestSlot`: the VM runs and its guest answers. Since 1.0.
    SlotGranted(SlotGrant),
    /// Answer to `ImageList`. Since 1.1.
    Images(Vec<ImageEntry>),
    /// Answer to `ImageRemove`. Since 1.1.
    ImageRemoved {
        /// The image.
        name: String,
        /// Object keys deleted, in deletion order.
        keys: Vec<String>,
    },
    /// Answer to `ImagePush`, `ImagePull` or `ImageVerify` with `detach`: the job runs in
    /// the daemon; follow it with `Transfers`. Since 1.1.
    TransferStarted(TransferInfo),
    /// Answer to `ImagePush`: the image is stored and verified. Since 1.1.
    ImagePushed(PushResult),
    /// Answer to `ImagePull`: the VM is registered. Since 1.1.
    ImagePulled(PullResult),
    /// Answer to `ImageVerify`: every chunk matched its manifest. Since 1.1.
    ImageVerified(VerifyResult),
    /// Answer to `Transfers`: running transfers first, then recently finished ones. Since 1.1.
    Transfers(Vec<TransferInfo>),
    /// Answer to `CreateVm`: the VM exists, configured and locked. Since 1.2.
    VmCreated(CreateResult),
    /// Answer to `ProvisionVm`: every step ran or was skipped. Since 1.2.
    Provisioned(ProvisionResult),
    /// Answer to `HostCheck`: one line per check, in a stable order. Since 1.2.
    HostReport(Vec<CheckResult>),
    /// Answer to `FleetList`. Since 1.3.
    Fleet(FleetReport),
    /// Answer to `Metrics`: Prometheus text exposition format 0.0.4. Since 1.3.
    Metrics {
        /// The exposition text (`# HELP`, `# TYPE`, samples), newline-terminated.
        text: String,
    },
    /// Answer to `CiStatus`. Since 1.4.
    Ci(CiReport),
    /// Answer to `RunnerInstall`. Since 1.6.
    RunnerInstalled(RunnerInstallResult),
    /// Answer to `RunnerStatus`. Since 1.6.
    Runners(RunnerReport),
    /// Answer to `DemandPoller`; `None` without `[demand] shared` or before the first
    /// election step. Since 1.7.
    DemandPoller(Option<DemandPollerReport>),
}

/// The fleet's demand poller as this host's last election step saw it (answer to
/// `DemandPoller`). Since 1.7.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemandPollerReport {
    /// This host's part: `holder` (it polls and publishes for the fleet), `follower` (it
    /// reads what the holder publishes) or `alone` (the bucket failed: it polls for itself).
    pub role: String,
    /// The lease holder (this host when `holder`; empty when `alone`).
    pub holder: String,
    /// The holder's lease term (0 when `alone`).
    pub term: u64,
    /// When the holder's lease runs out unless renewed, unix ms (0 when `alone`).
    pub lease_expires_ms: u64,
    /// When this host last stepped the election, unix ms.
    pub stepped_ms: u64,
    /// The lease object's key in the `[fleet]` bucket.
    pub lease_key: String,
}

/// A VM's team, derived from its name by configurable patterns or set per VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Team {
    /// ROOT: GitHub Actions ephemeral runners.
    #[serde(alias = "Root")]
    Root,
    /// SPI: Jenkins nodes.
    #[serde(alias = "Spi")]
    Spi,
    /// Matches no pattern; never cycled or granted.
    #[serde(alias = "Unassigned")]
    Unassigned,
}

impl Team {
    /// Lower-case name used in config, CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Team::Root => "root",
            Team::Spi => "spi",
            Team::Unassigned => "unassigned",
        }
    }
}

/// Power state as Parallels reports it (`prlctl list` state words).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    /// `stopped`.
    Stopped,
    /// `starting`.
    Starting,
    /// `running`.
    Running,
    /// `stopping`.
    Stopping,
    /// `suspended`.
    Suspended,
    /// `suspending`.
    Suspending,
    /// `paused`.
    Paused,
    /// `resuming`.
    Resuming,
    /// `invalid` (bundle missing or unreadable).
    Invalid,
    /// Any other word Parallels printed (kept verbatim).
    Other(String),
}

impl PowerState {
    /// Parse a Parallels state word; unknown words are kept as [`PowerState::Other`].
    pub fn from_word(word: &str) -> Self {
        match word.trim() {
            "stopped" => PowerState::Stopped,
            "starting" => PowerState::Starting,
            "running" => PowerState::Running,
            "stopping" => PowerState::Stopping,
            "suspended" => PowerState::Suspended,
            "suspending" => PowerState::Suspending,
            "paused" => PowerState::Paused,
            "resuming" => PowerState::Resuming,
            "invalid" => PowerState::Invalid,
            other => PowerState::Other(other.to_owned()),
        }
    }

    /// The Parallels word for this state.
    pub fn as_word(&self) -> &str {
        match self {
            PowerState::Stopped => "stopped",
            PowerState::Starting => "starting",
            PowerState::Running => "running",
            PowerState::Stopping => "stopping",
            PowerState::Suspended => "suspended",
            PowerState::Suspending => "suspending",
            PowerState::Paused => "paused",
            PowerState::Resuming => "resuming",
            PowerState::Invalid => "invalid",
            PowerState::Other(word) => word,
        }
    }

    /// Whether the VM holds the host's capacity (anything but stopped, suspended, invalid).
    ///
    /// Unknown words count as occupying: treating "don't know" as "running" is the safe side.
    pub fn occupies_host(&self) -> bool {
        !matches!(
            self,
            PowerState::Stopped | PowerState::Suspended | PowerState::Invalid
        )
    }
}

/// Whether a CI job is running inside a VM, as last probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusyState {
    /// Never probed (for example the VM is not running).
    NotProbed,
    /// No job runs.
    Idle {
        /// When the probe answered, unix ms.
        checked_ms: u64,
    },
    /// A job runs.
    Busy {
        /// What makes it busy (for example `Runner.Worker pid 812`).
        reason: String,
        /// Since when it has been seen busy, unix ms.
        since_ms: u64,
    },
    /// The probe failed; treated exactly like busy.
    Unknown {
        /// Why the probe failed.
        reason: String,
        /// When the probe failed, unix ms.
        checked_ms: u64,
    },
}

/// Who did something, why and when: attached to locks, pause and drain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// User name (or uid) of the caller.
    pub by: String,
    /// The reason given.
    pub reason: String,
    /// Unix ms.
    pub since_ms: u64,
}

/// One VM as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInfo {
    /// Parallels VM name.
    pub name: String,
    /// Parallels UUID, without braces, lower case.
    pub uuid: String,
    /// Team.
    pub team: Team,
    /// Power state from the last inventory refresh.
    pub power: PowerState,
    /// Last busy probe.
    pub busy: BusyState,
    /// Lock on this VM, if any.
    pub lock: Option<Attribution>,
    /// The operation in flight on this VM (`start`, `stop`, `probe`…), if any.
    pub operation: Option<String>,
    /// Scheduler note: why the VM runs, is protected, or is quarantined.
    pub note: String,
}

/// A pending slot request shown in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRequest {
    /// The VM asked for.
    pub vm: String,
    /// Who asked.
    pub by: String,
    /// Since when, unix ms.
    pub since_ms: u64,
}

/// A scheduler decision with its reason ("why is this VM not starting?").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Unix ms.
    pub at_ms: u64,
    /// The VM concerned, if any.
    pub vm: Option<String>,
    /// What was decided and why.
    pub text: String,
}

/// Answer to `Status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Daemon build version.
    pub daemon_version: String,
    /// Host name the daemon reports.
    pub host: String,
    /// Scheduling policy name (`cycle`, `demand`, `manual`).
    pub policy: String,
    /// How many VMs may run at once.
    pub capacity: u32,
    /// Cycling paused, by whom and why.
    pub paused: Option<Attribution>,
    /// Drain (maintenance) in effect, by whom and why.
    pub draining: Option<Attribution>,
    /// All VMs.
    pub vms: Vec<VmInfo>,
    /// Slot requests waiting for the host.
    pub pending: Vec<PendingRequest>,
    /// Most recent scheduler decisions, newest last.
    pub decisions: Vec<Decision>,
    /// Unix ms at which the inventory was last refreshed from the hypervisor.
    pub inventory_ms: u64,
}

/// Answer to `RequestSlot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotGrant {
    /// The VM now running.
    pub vm: String,
    /// True when the VM was already running (idempotent answer).
    pub already_running: bool,
    /// The VM that was stopped to make room, if any.
    pub preempted: Option<String>,
    /// Until when the VM is protected from preemption regardless of busy state, unix ms.
    pub protected_until_ms: u64,
}

/// One image in the bucket (answer to `ImageList`). Since 1.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// Image name (`YYYY-MM-DD-TEAM-VM-…`).
    pub name: String,
    /// Team folder.
    pub team: String,
    /// `marble` (complete), `marble-incomplete` (data without manifest: an unfinished push)
    /// or `zip` (legacy).
    pub format: String,
    /// Stored bytes (all objects of the image).
    pub size: u64,
    /// Last modified, unix ms; 0 when the server did not say.
    pub modified_ms: u64,
}

/// A daemon-side image transfer (push, pull or verify). Since 1.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferInfo {
    /// Daemon-assigned id, unique until the daemon restarts.
    pub id: u64,
    /// `push`, `pull` or `verify`.
    pub kind: String,
    /// The VM pushed, or the image pulled/verified.
    pub subject: String,
    /// The image name.
    pub image: String,
    /// Who asked.
    pub by: String,
    /// Unix ms.
    pub started_ms: u64,
    /// Current stage (`prepare`, `scan`, `upload`, `download`, `extract`, `verify`,
    /// `register`) or `done` / `failed`.
    pub phase: String,
    /// Bytes done in this stage.
    pub done: u64,
    /// Bytes expected in this stage, 0 if unknown.
    pub total: u64,
    /// Unix ms when it ended; 0 while it runs.
    pub finished_ms: u64,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// What a push did (answer to `ImagePush`). Since 1.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResult {
    /// Transfer id.
    pub transfer: u64,
    /// The image name.
    pub image: String,
    /// The VM pushed.
    pub vm: String,
    /// Data object key.
    pub data_key: String,
    /// Logical size of the bundle (holes included).
    pub apparent_bytes: u64,
    /// Bytes read and compressed (holes excluded).
    pub payload_bytes: u64,
    /// Size of the stored object.
    pub object_bytes: u64,
    /// Multipart parts in the object.
    pub parts: u32,
    /// Parts an interrupted earlier push had already sent (not sent again).
    pub parts_resumed: u32,
    /// Wall time of the whole pipeline, ms.
    pub elapsed_ms: u64,
    /// What the scrub removed or reset in the clone's guest.
    pub scrubbed: Vec<String>,
}

/// What a pull did (answer to `ImagePull`). Since 1.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullResult {
    /// Transfer id.
    pub transfer: u64,
    /// The image name.
    pub image: String,
    /// The registered VM.
    pub vm: String,
    /// Its bundle path on the host.
    pub bundle: String,
    /// `marble-image/1` or `zip`.
    pub format: String,
    /// Bytes downloaded in this attempt.
    pub downloaded_bytes: u64,
    /// Logical size of the bundle.
    pub apparent_bytes: u64,
    /// Chunks an interrupted earlier pull had already fetched.
    pub chunks_resumed: u32,
    /// Wall time, ms.
    pub elapsed_ms: u64,
    /// The new MAC of net0 (to register in LANDB).
    pub mac: Option<String>,
    /// Whether the shared build disk was missing and fetched.
    pub build_disk_fetched: bool,
    /// What the operator must do next (LANDB registration, first boot).
    pub operator_steps: String,
}

/// What a verify checked (answer to `ImageVerify`). Since 1.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResult {
    /// Transfer id.
    pub transfer: u64,
    /// The image name.
    pub image: String,
    /// Format checked.
    pub format: String,
    /// Chunks checked (0 for a legacy zip, which is checked for presence and size only).
    pub chunks: u32,
    /// Bytes read back.
    pub bytes: u64,
    /// Wall time, ms.
    pub elapsed_ms: u64,
}

/// A provisioning profile as `marblectl vm provision` read it: the TOML text and the files
/// its steps reference (`script`, `input`), keyed by the path written in the profile. The
/// client reads them with the operator's permissions, so the daemon never opens a path an
/// operator names. Since 1.2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileUpload {
    /// Where the profile came from (for messages).
    pub origin: String,
    /// The TOML text.
    pub text: String,
    /// Referenced files.
    pub files: Vec<ProfileFile>,
}

/// One file referenced by a profile. Since 1.2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileFile {
    /// The path as written in the profile (relative to the profile's directory).
    pub path: String,
    /// Its content.
    pub content: Vec<u8>,
}

/// What `CreateVm` did. Since 1.2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateResult {
    /// The VM name.
    pub vm: String,
    /// Its UUID (lower case, no braces), when `prlctl list -i` reported it.
    pub uuid: Option<String>,
    /// Bundle directory, when reported.
    pub bundle: Option<String>,
    /// MAC of `net0` (to register in LANDB), when reported.
    pub mac: Option<String>,
    /// CPUs set.
    pub cpus: u32,
    /// Memory set, MiB.
    pub memory_mib: u64,
    /// The build disk attached.
    pub build_disk: String,
    /// Every prlctl command line run, in order (without the prlctl path).
    pub commands: Vec<String>,
    /// Whether the VM was locked against scheduler starts.
    pub locked: bool,
    /// What the operator must do by hand, in order.
    pub manual_steps: Vec<String>,
}

/// One step of a provisioning run. Since 1.2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    /// Step name.
    pub name: String,
    /// `ran` or `skipped`.
    pub outcome: String,
    /// Why it was skipped (empty when it ran).
    pub detail: String,
    /// Wall time, ms (0 when skipped).
    pub duration_ms: u64,
}

/// What `ProvisionVm` did. Since 1.2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionResult {
    /// The VM.
    pub vm: String,
    /// The guest's macOS major version the `macos` selectors were evaluated against.
    pub macos_major: u32,
    /// Every step in profile order.
    pub steps: Vec<StepResult>,
    /// Whether the daemon started the VM for this run (it is left running).
    pub started_vm: bool,
    /// Wall time, ms.
    pub elapsed_ms: u64,
}

/// Result of one host check. Since 1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Fine.
    Pass,
    /// Works, but should be looked at.
    Warn,
    /// Broken; `marblectl host check` exits non-zero.
    Fail,
    /// Not applicable here (macOS only, or not configured); the detail says which.
    Skip,
}

/// One line of the host report. Since 1.2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable check name (`parallels`, `prlctl`, `build-disk`…).
    pub name: String,
    /// Outcome.
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// How to fix it (empty when nothing to do).
    pub fix: String,
}

impl CheckResult {
    /// One line of the report: the daemon's checks and `marblectl host check`'s own build
    /// them the same way.
    pub fn new(name: &str, status: CheckStatus, detail: String, fix: &str) -> Self {
        CheckResult {
            name: name.to_owned(),
            status,
            detail,
            fix: fix.to_owned(),
        }
    }
}

/// One VM in a fleet heartbeat. Since 1.3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetVm {
    /// VM name.
    pub name: String,
    /// Team.
    pub team: Team,
    /// Power state when the heartbeat was written.
    pub power: PowerState,
}

/// One host's heartbeat as read from the bucket. Since 1.3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetHost {
    /// Host name (`daemon.host_name`, else the system's).
    pub host: String,
    /// Daemon version that wrote the heartbeat.
    pub daemon_version: String,
    /// Scheduling policy.
    pub policy: String,
    /// When the heartbeat was written, unix ms (the writer's clock).
    pub written_ms: u64,
    /// The writer's heartbeat interval, ms: a heartbeat older than a few intervals is stale.
    pub interval_ms: u64,
    /// VMs occupying the host (running, starting, paused…), usually at most one.
    pub running: Vec<String>,
    /// Every VM with its power state.
    pub vms: Vec<FleetVm>,
    /// The scheduler's latest decision.
    pub last_decision: Option<Decision>,
    /// Free bytes on the volume of the daemon's state file; `None` when unknown.
    pub free_disk_bytes: Option<u64>,
}

/// Answer to `FleetList`. Since 1.3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetReport {
    /// Heartbeats, sorted by host name.
    pub hosts: Vec<FleetHost>,
    /// Heartbeat objects that could not be read or parsed: `key: error`.
    pub unreadable: Vec<String>,
    /// When the daemon read the bucket, unix ms (ages are relative to this).
    pub read_ms: u64,
}

/// One configured CI system as `CiStatus` reports it. Since 1.4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiSystem {
    /// `github`.
    pub system: String,
    /// Whether its requests can be made (its token is loaded).
    pub available: bool,
    /// Why not (the token source's error, naming the fix); empty when available.
    pub reason: String,
    /// Since when the current state holds, unix ms.
    pub since_ms: u64,
    /// When the daemon tries the token source again, unix ms; 0 when available.
    pub next_try_ms: u64,
}

/// A registered runner that is offline and not counted as free capacity. Since 1.4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineRunner {
    /// GitHub's runner id.
    pub id: u64,
    /// Runner name.
    pub name: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// GitHub still shows it running a job (a runner that died mid-job).
    pub busy: bool,
    /// Why it is not counted: `foreign` (not registered by MARBLE: e.g. the seed's
    /// AUTO_RUNNER), `marble` (another host's registration older than a boot), `this-host`
    /// (this host's, its VM up but its runner not connected).
    pub kind: String,
}

/// Answer to `CiStatus`. Since 1.4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiReport {
    /// The configured CI systems (empty: none configured).
    pub systems: Vec<CiSystem>,
    /// Offline runners not counted as free capacity, as the last demand poll saw them
    /// (at most 50; `offline_total` counts them all).
    pub offline_runners: Vec<OfflineRunner>,
    /// How many offline runners the last poll saw in all.
    pub offline_total: u32,
    /// When that poll ran, unix ms; 0 when none has.
    pub polled_ms: u64,
}

/// What `RunnerInstall` did. Since 1.6.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerInstallResult {
    /// The runner version now in the guest (`2.330.0`).
    pub version: String,
    /// Whether anything in the guest changed (false: all was in place).
    pub changed: bool,
    /// Whether the package came from the host cache without a download.
    pub cached: bool,
    /// The steps, as for `ProvisionVm`.
    pub run: ProvisionResult,
}

/// Answer to `RunnerStatus`. Since 1.6.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerReport {
    /// The newest `actions/runner` release (no drafts or pre-releases); `None` before the
    /// first successful check.
    pub latest: Option<String>,
    /// When it was published, unix ms (0 when unknown).
    pub latest_published_ms: u64,
    /// When the release list was last read, unix ms (0: never).
    pub checked_ms: u64,
    /// Why the last check failed (empty: it did not).
    pub check_error: String,
    /// The version `runner install` puts in a VM (`latest` resolved), when known.
    pub target: Option<String>,
    /// One entry per ROOT VM whose version the daemon has read or installed.
    pub vms: Vec<RunnerVm>,
}

/// One ROOT VM's runner version. Since 1.6.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerVm {
    /// The VM.
    pub vm: String,
    /// The version in its install directory; `None` when no runner was found there.
    pub version: Option<String>,
    /// When it was read (boot) or written (install), unix ms.
    pub read_ms: u64,
    /// Days since the first release newer than `version` was published (0: current).
    pub days_behind: u64,
    /// GitHub's update deadline: that release's publication + 30 days, unix ms; 0 when
    /// no newer release exists.
    pub deadline_ms: u64,
    /// `current`, `behind`, `warn` (25 days or more), `overdue` (30 or more: GitHub no
    /// longer sends it jobs), `unsupported` (older than 2.329.0: cannot register),
    /// `missing` (no runner), `unknown` (no release list yet).
    pub level: String,
}

/// Stable error categories. Append only; clients map them to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or its arguments invalid.
    InvalidRequest,
    /// The VM (or object) does not exist.
    NotFound,
    /// The request does not fit the current state (already running, operation in flight).
    InvalidState,
    /// The host or VM is busy with a CI job; try again later or elsewhere.
    Busy,
    /// The caller may not do this.
    PermissionDenied,
    /// A dependency (hypervisor, daemon shutting down) is not available.
    Unavailable,
    /// The daemon does not support this.
    Unsupported,
    /// A bug or unexpected failure inside the daemon.
    Internal,
    /// The VM or host is locked or in maintenance.
    Locked,
    /// The operation did not finish within its deadline.
    Timeout,
    /// Stored data failed a check: checksum mismatch, corrupt or truncated object, unsafe
    /// archive entry. Since 1.1; returned only by the image requests and (since 1.6)
    /// `RunnerInstall`.
    DataError,
    /// The host's disk has no room for what the request writes (ENOSPC, EDQUOT): an
    /// environment error the operator fixes by freeing space; the message gives the free and
    /// needed bytes. Since 1.6; sent only to clients whose hello announced minor 6 or later
    /// (older ones get [`ErrorKind::Unavailable`], see [`WireError::for_client`]).
    NoSpace,
}

impl ErrorKind {
    /// The protocol minor that introduced this kind (1.0 for most).
    pub fn since_minor(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::NotFound
            | ErrorKind::InvalidState
            | ErrorKind::Busy
            | ErrorKind::PermissionDenied
            | ErrorKind::Unavailable
            | ErrorKind::Unsupported
            | ErrorKind::Internal
            | ErrorKind::Locked
            | ErrorKind::Timeout => 0,
            ErrorKind::DataError => 1,
            ErrorKind::NoSpace => 6,
        }
    }

    /// The kind a client that announced `minor` can decode: this one, or the older kind that
    /// stood for it before it existed.
    pub fn for_client(self, minor: u16) -> ErrorKind {
        if self.since_minor() <= minor {
            return self;
        }
        match self {
            ErrorKind::NoSpace => ErrorKind::Unavailable,
            other => other,
        }
    }
}

/// A failure as it crosses the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// Stable category.
    pub kind: ErrorKind,
    /// The top-level message.
    pub message: String,
    /// Causes, outermost first, without the top message.
    pub chain: Vec<String>,
}

impl WireError {
    /// This error as a client that announced `minor` can decode it (its kind replaced by an
    /// older one when the client predates it; see [`ErrorKind::for_client`]).
    pub fn for_client(mut self, minor: u16) -> Self {
        self.kind = self.kind.for_client(minor);
        self
    }

    /// An error with no causes.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            chain: Vec::new(),
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        for cause in &self.chain {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for WireError {}

/// Streamed lifecycle events (`marblectl events --follow`) and progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A VM's power state changed. Since 1.0.
    VmPower {
        /// Unix ms.
        at_ms: u64,
        /// VM name.
        vm: String,
        /// Previous state.
        from: PowerState,
        /// New state.
        to: PowerState,
    },
    /// A VM's busy state changed. Since 1.0.
    VmBusy {
        /// Unix ms.
        at_ms: u64,
        /// VM name.
        vm: String,
        /// New busy state.
        busy: BusyState,
    },
    /// The scheduler decided something. Since 1.0.
    Decision(Decision),
    /// An operation on a VM started. Since 1.0.
    OperationStarted {
        /// Unix ms.
        at_ms: u64,
        /// VM name.
        vm: String,
        /// Operation kind (`start`, `stop`, `kill`, `probe`, `ready`).
        operation: String,
    },
    /// An operation on a VM finished. Since 1.0.
    OperationFinished {
        /// Unix ms.
        at_ms: u64,
        /// VM name.
        vm: String,
        /// Operation kind.
        operation: String,
        /// None on success, else the error text.
        error: Option<String>,
    },
    /// Progress of a long request on this connection. Since 1.0.
    Progress {
        /// Work done (bytes, steps).
        done: u64,
        /// Total work, 0 if unknown.
        total: u64,
        /// What is happening.
        message: String,
    },
    /// Subscriber fell behind and `dropped` events were discarded. Since 1.0.
    Lagged {
        /// How many.
        dropped: u64,
    },
    /// The daemon is still working on the pending request on this connection: sent every
    /// [`crate::KEEPALIVE_INTERVAL_MS`] while a submitted request (`RequestSlot`, `StartVm`,
    /// `Drain` with a wait, a transfer…) has no other news, so a client can tell a slow answer
    /// from a stalled daemon. Sent only to clients whose hello announced minor 5 or later.
    /// Clients do not render it. Since 1.5.
    Keepalive,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_bounds_every_free_text_field_and_names_it() {
        let long = "x".repeat(crate::MAX_TEXT_FIELD_LEN + 1);
        let fits = "x".repeat(crate::MAX_TEXT_FIELD_LEN);
        let lock = |reason: &str| Request::Lock {
            target: LockTarget::Vm("vm".into()),
            reason: reason.to_owned(),
        };
        assert!(lock(&fits).validate().is_ok());
        let err = lock(&long).validate().expect_err("too long");
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(err.message.contains("reason"), "{}", err.message);
        assert!(err.message.contains("1024"), "{}", err.message);
        assert!(err.message.contains("`lock`"), "{}", err.message);
        for request in [
            Request::Pause {
                reason: long.clone(),
            },
            Request::Drain {
                reason: long.clone(),
                wait_ms: 0,
            },
            Request::StartVm { vm: long.clone() },
            Request::ImagePull {
                name: "n".into(),
                as_name: Some(long.clone()),
                detach: false,
            },
        ] {
            assert!(request.validate().is_err(), "{}", request.kind());
        }
        assert!(Request::Status.validate().is_ok());
    }

    #[test]
    fn newer_error_kinds_reach_older_clients_as_the_kind_they_replace() {
        let full = WireError::new(ErrorKind::NoSpace, "disk full");
        assert_eq!(full.clone().for_client(6).kind, ErrorKind::NoSpace);
        assert_eq!(full.clone().for_client(5).kind, ErrorKind::Unavailable);
        assert_eq!(full.for_client(0).message, "disk full");
        let data = WireError::new(ErrorKind::DataError, "bad");
        assert_eq!(data.for_client(1).kind, ErrorKind::DataError);
        assert_eq!(ErrorKind::Busy.for_client(0), ErrorKind::Busy);
    }
}
