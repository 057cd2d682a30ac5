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
        }
    }

    /// Whether the request changes state (admin users only) or only reads it (socket group).
    pub fn is_mutating(&self) -> bool {
        match self {
            Request::Status | Request::ListVms | Request::ShowVm { .. } | Request::WatchEvents => {
                false
            }
            Request::StartVm { .. }
            | Request::StopVm { .. }
            | Request::RequestSlot { .. }
            | Request::Pause { .. }
            | Request::Resume
            | Request::Lock { .. }
            | Request::Unlock { .. }
            | Request::Drain { .. } => true,
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
        }
    }
}

/// What a lock applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockTarget {
    /// One VM.
    Vm(String),
    /// Every VM except this one (the seed's `LOCK_ALL_EXCEPT.sh`).
    AllExcept(String),
}

/// What an unlock applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnlockTarget {
    /// One VM.
    Vm(String),
    /// Every VM.
    All,
}

/// Successful terminal replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// A VM's team, derived from its name by configurable patterns or set per VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Team {
    /// ROOT: GitHub Actions ephemeral runners.
    Root,
    /// SPI: Jenkins nodes.
    Spi,
    /// Matches no pattern; never cycled or granted.
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

/// Stable error categories. Append only; clients map them to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}
