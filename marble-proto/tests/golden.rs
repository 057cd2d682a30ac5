//! Golden bytes: one canonical value per variant of every wire enum, its exact encoding
//! committed as hex under `tests/golden/v<PROTO_MAJOR>/`.
//!
//! A fixture failing to match means the wire format changed. That is a major bump (see
//! `docs/PROTOCOL.md`), never something to "fix" by re-blessing. To add a fixture for a newly
//! appended variant, or to regenerate after an intended major bump, run
//! `MARBLE_BLESS=1 cargo test -p marble-proto --test golden`.
//!
//! Three layers make a newly appended variant impossible to forget:
//! 1. `Sampled::variant` is an exhaustive `match` without a wildcard, so a new variant does not
//!    compile until it has a name here;
//! 2. `samples_cover_every_variant` compares the sampled names with the variant list serde
//!    derives from the type itself, so a name without a sample fails;
//! 3. a sample without a committed fixture fails `golden_fixtures_match` (unless blessing).
//!
//! The handshake fixtures always live in `v1/`: their layout is frozen across majors.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use marble_proto::handshake::MAGIC;
use marble_proto::{
    Attribution, BusyState, CheckResult, CheckStatus, CiReport, CiSystem, ClientFrame,
    CreateResult, Decision, DemandPollerReport, ErrorKind, Event, FleetHost, FleetReport, FleetVm,
    Hello, ImageEntry, LockTarget, OfflineRunner, PROTO_MAJOR, PROTO_MINOR, PendingRequest,
    PowerState, ProfileFile, ProfileUpload, ProvisionResult, PullResult, PushResult, Reply,
    Request, Response, RunnerInstallResult, RunnerReport, RunnerVm, ServerFrame, ServerHello,
    SlotGrant, StatusReport, StepResult, Team, TransferInfo, UnlockTarget, VerifyResult, VmInfo,
    Welcome, WireError, codec,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A wire enum with one sample per variant.
trait Sampled: Serialize + DeserializeOwned + PartialEq + Debug + Sized + 'static {
    /// File-name prefix, e.g. `request`.
    const PREFIX: &'static str;
    /// The Rust (and serde) name of the variant. Must be an exhaustive match, no wildcard.
    fn variant(&self) -> &'static str;
    /// One canonical value per variant, in declaration (= wire) order.
    fn samples() -> Vec<Self>;
}

// Shared building blocks, chosen so that integers cross the one-byte varint boundary (251)
// and the big-endian multi-byte forms are pinned too.

fn attribution() -> Attribution {
    Attribution {
        by: "alice".into(),
        reason: "disk swap".into(),
        since_ms: 1_700_000_000_000,
    }
}

fn vm_info() -> VmInfo {
    VmInfo {
        name: "spi-mac-01".into(),
        uuid: "5f1c9e2a-0b7d-4c8e-9a31-2d4b6f8e0c17".into(),
        team: Team::Spi,
        power: PowerState::Running,
        busy: BusyState::Busy {
            reason: "java pid 812".into(),
            since_ms: 1_700_000_001_000,
        },
        lock: Some(attribution()),
        operation: Some("probe".into()),
        note: "granted to jenkins".into(),
    }
}

fn idle_vm() -> VmInfo {
    VmInfo {
        name: "root-mac-02".into(),
        uuid: "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d".into(),
        team: Team::Root,
        power: PowerState::Stopped,
        busy: BusyState::NotProbed,
        lock: None,
        operation: None,
        note: String::new(),
    }
}

fn decision() -> Decision {
    Decision {
        at_ms: 1_700_000_002_000,
        vm: Some("root-mac-02".into()),
        text: "not starting: host busy with spi-mac-01".into(),
    }
}

fn status_report() -> StatusReport {
    StatusReport {
        daemon_version: "0.1.0".into(),
        host: "mac-builder-7".into(),
        policy: "cycle".into(),
        capacity: 1,
        paused: Some(attribution()),
        draining: None,
        vms: vec![vm_info(), idle_vm()],
        pending: vec![PendingRequest {
            vm: "spi-mac-03".into(),
            by: "jenkins".into(),
            since_ms: 1_700_000_003_000,
        }],
        decisions: vec![
            decision(),
            Decision {
                at_ms: 1_700_000_004_000,
                vm: None,
                text: "cycle paused".into(),
            },
        ],
        inventory_ms: 1_700_000_005_000,
    }
}

impl Sampled for Request {
    const PREFIX: &'static str = "request";
    fn variant(&self) -> &'static str {
        match self {
            Request::Status => "Status",
            Request::ListVms => "ListVms",
            Request::ShowVm { .. } => "ShowVm",
            Request::StartVm { .. } => "StartVm",
            Request::StopVm { .. } => "StopVm",
            Request::WatchEvents => "WatchEvents",
            Request::RequestSlot { .. } => "RequestSlot",
            Request::Pause { .. } => "Pause",
            Request::Resume => "Resume",
            Request::Lock { .. } => "Lock",
            Request::Unlock { .. } => "Unlock",
            Request::Drain { .. } => "Drain",
            Request::ImagePush { .. } => "ImagePush",
            Request::ImagePull { .. } => "ImagePull",
            Request::ImageList { .. } => "ImageList",
            Request::ImageRemove { .. } => "ImageRemove",
            Request::ImageVerify { .. } => "ImageVerify",
            Request::Transfers => "Transfers",
            Request::CreateVm { .. } => "CreateVm",
            Request::ProvisionVm { .. } => "ProvisionVm",
            Request::HostCheck => "HostCheck",
            Request::FleetList => "FleetList",
            Request::Metrics => "Metrics",
            Request::CiStatus => "CiStatus",
            Request::MigrateCheck => "MigrateCheck",
            Request::RunnerInstall { .. } => "RunnerInstall",
            Request::RunnerStatus => "RunnerStatus",
            Request::DemandPoller => "DemandPoller",
        }
    }
    fn samples() -> Vec<Self> {
        vec![
            Request::Status,
            Request::ListVms,
            Request::ShowVm {
                vm: "spi-mac-01".into(),
            },
            Request::StartVm {
                vm: "root-mac-02".into(),
            },
            Request::StopVm {
                vm: "root-mac-02".into(),
                force: true,
            },
            Request::WatchEvents,
            Request::RequestSlot {
                vm: "spi-mac-01".into(),
                wait_ms: 600_000,
            },
            Request::Pause {
                reason: "xcode upgrade".into(),
            },
            Request::Resume,
            Request::Lock {
                target: LockTarget::AllExcept("spi-mac-01".into()),
                reason: "release build".into(),
            },
            Request::Unlock {
                target: UnlockTarget::All,
            },
            Request::Drain {
                reason: "disk swap".into(),
                wait_ms: 300,
            },
            Request::ImagePush {
                vm: "macphsft01-ROOT-VM-macOS-14".into(),
                name: Some("2026-11-28-ROOT-VM-macOS-14".into()),
                detach: true,
            },
            Request::ImagePull {
                name: "2026-11-28-ROOT-VM-macOS-14".into(),
                as_name: None,
                detach: false,
            },
            Request::ImageList {
                team: Some("ROOT".into()),
            },
            Request::ImageRemove {
                name: "2025-01-02-SPI-VM-macOS-13".into(),
            },
            Request::ImageVerify {
                name: "2026-11-28-ROOT-VM-macOS-14".into(),
                detach: false,
            },
            Request::Transfers,
            Request::CreateVm {
                name: "macphsft01-ROOT-VM-macOS-15".into(),
                ipsw: "/Users/ci/ipsw/UniversalMac_15.2_24C101_Restore.ipsw".into(),
                team: Team::Root,
                cpus: Some(8),
                memory_mib: None,
            },
            Request::ProvisionVm {
                vm: "macphsft01-ROOT-VM-macOS-15".into(),
                profile: ProfileUpload {
                    origin: "docs/profiles/root.toml".into(),
                    text: "[[step]]\nname = \"a\"\nscript = \"s.sh\"\n".into(),
                    files: vec![ProfileFile {
                        path: "s.sh".into(),
                        content: vec![b'e', b'c', b'h', b'o', 0, 255],
                    }],
                },
            },
            Request::HostCheck,
            Request::FleetList,
            Request::Metrics,
            Request::CiStatus,
            Request::MigrateCheck,
            Request::RunnerInstall {
                vm: "macphsft01-ROOT-VM-macOS-15".into(),
                upgrade: true,
            },
            Request::RunnerStatus,
            Request::DemandPoller,
        ]
    }
}

impl Sampled for Response {
    const PREFIX: &'static str = "response";
    fn variant(&self) -> &'static str {
        match self {
            Response::Status(_) => "Status",
            Response::Vms(_) => "Vms",
            Response::Vm(_) => "Vm",
            Response::Done { .. } => "Done",
            Response::SlotGranted(_) => "SlotGranted",
            Response::Images(_) => "Images",
            Response::ImageRemoved { .. } => "ImageRemoved",
            Response::TransferStarted(_) => "TransferStarted",
            Response::ImagePushed(_) => "ImagePushed",
            Response::ImagePulled(_) => "ImagePulled",
            Response::ImageVerified(_) => "ImageVerified",
            Response::Transfers(_) => "Transfers",
            Response::VmCreated(_) => "VmCreated",
            Response::Provisioned(_) => "Provisioned",
            Response::HostReport(_) => "HostReport",
            Response::Fleet(_) => "Fleet",
            Response::Metrics { .. } => "Metrics",
            Response::Ci(_) => "Ci",
            Response::RunnerInstalled(_) => "RunnerInstalled",
            Response::Runners(_) => "Runners",
            Response::DemandPoller(_) => "DemandPoller",
        }
    }
    fn samples() -> Vec<Self> {
        vec![
            Response::Status(status_report()),
            Response::Vms(vec![vm_info(), idle_vm()]),
            Response::Vm(vm_info()),
            Response::Done {
                message: "locked every VM except spi-mac-01".into(),
            },
            Response::SlotGranted(SlotGrant {
                vm: "spi-mac-01".into(),
                already_running: false,
                preempted: Some("root-mac-02".into()),
                protected_until_ms: 1_700_000_600_000,
            }),
            Response::Images(vec![
                ImageEntry {
                    name: "2026-11-28-ROOT-VM-macOS-14".into(),
                    team: "ROOT".into(),
                    format: "marble".into(),
                    size: 21_474_836_480,
                    modified_ms: 1_700_000_010_000,
                },
                ImageEntry {
                    name: "2024-05-01-SPI-VM-macOS-13".into(),
                    team: "SPI".into(),
                    format: "zip".into(),
                    size: 300,
                    modified_ms: 0,
                },
            ]),
            Response::ImageRemoved {
                name: "2025-01-02-SPI-VM-macOS-13".into(),
                keys: vec![
                    "SPI/2025-01-02-SPI-VM-macOS-13.marble.json".into(),
                    "SPI/2025-01-02-SPI-VM-macOS-13.marble".into(),
                ],
            },
            Response::TransferStarted(transfer_info()),
            Response::ImagePushed(PushResult {
                transfer: 7,
                image: "2026-11-28-ROOT-VM-macOS-14".into(),
                vm: "macphsft01-ROOT-VM-macOS-14".into(),
                data_key: "ROOT/2026-11-28-ROOT-VM-macOS-14.marble".into(),
                apparent_bytes: 68_719_476_736,
                payload_bytes: 21_474_836_480,
                object_bytes: 9_663_676_416,
                parts: 576,
                parts_resumed: 300,
                elapsed_ms: 95_000,
                scrubbed: vec!["removed /Users/admin/.PAT".into()],
            }),
            Response::ImagePulled(PullResult {
                transfer: 8,
                image: "2026-11-28-ROOT-VM-macOS-14".into(),
                vm: "macphsft02-ROOT-VM-macOS-14".into(),
                bundle: "/Users/ci/Parallels/2026-11-28-ROOT-VM-macOS-14.macvm".into(),
                format: "marble-image/1".into(),
                downloaded_bytes: 9_663_676_416,
                apparent_bytes: 68_719_476_736,
                chunks_resumed: 0,
                elapsed_ms: 61_000,
                mac: Some("001C42A1B2C3".into()),
                build_disk_fetched: true,
                operator_steps: "register in LANDB".into(),
            }),
            Response::ImageVerified(VerifyResult {
                transfer: 9,
                image: "2026-11-28-ROOT-VM-macOS-14".into(),
                format: "marble-image/1".into(),
                chunks: 1280,
                bytes: 9_663_676_416,
                elapsed_ms: 30_000,
            }),
            Response::Transfers(vec![
                transfer_info(),
                TransferInfo {
                    finished_ms: 1_700_000_020_000,
                    phase: "failed".into(),
                    error: Some("checksum mismatch for chunk 3".into()),
                    ..transfer_info()
                },
            ]),
            Response::VmCreated(CreateResult {
                vm: "macphsft01-ROOT-VM-macOS-15".into(),
                uuid: Some("0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d".into()),
                bundle: Some("/Users/ci/Parallels/macphsft01-ROOT-VM-macOS-15.macvm".into()),
                mac: None,
                cpus: 8,
                memory_mib: 28_672,
                build_disk: "/Users/ci/Parallels/build_drive.hdd".into(),
                commands: vec!["set macphsft01-ROOT-VM-macOS-15 --startup-view headless".into()],
                locked: true,
                manual_steps: vec!["start it".into(), "run Setup Assistant".into()],
            }),
            Response::Provisioned(ProvisionResult {
                vm: "macphsft01-ROOT-VM-macOS-15".into(),
                macos_major: 15,
                steps: vec![
                    StepResult {
                        name: "hostname".into(),
                        outcome: "ran".into(),
                        detail: String::new(),
                        duration_ms: 1_500,
                    },
                    StepResult {
                        name: "xcode-cli".into(),
                        outcome: "skipped".into(),
                        detail: "already done".into(),
                        duration_ms: 0,
                    },
                ],
                started_vm: true,
                elapsed_ms: 65_536,
            }),
            Response::HostReport(vec![
                CheckResult {
                    name: "parallels".into(),
                    status: CheckStatus::Pass,
                    detail: "prlctl version 26.3.2 (57398)".into(),
                    fix: String::new(),
                },
                CheckResult {
                    name: "build-disk".into(),
                    status: CheckStatus::Fail,
                    detail: "missing".into(),
                    fix: "marblectl image pull".into(),
                },
                CheckResult {
                    name: "spotlight".into(),
                    status: CheckStatus::Skip,
                    detail: "macOS only".into(),
                    fix: String::new(),
                },
                CheckResult {
                    name: "free-disk".into(),
                    status: CheckStatus::Warn,
                    detail: "40 GiB free".into(),
                    fix: "delete old bundles".into(),
                },
            ]),
            Response::Fleet(FleetReport {
                hosts: vec![FleetHost {
                    host: "macphsft01".into(),
                    daemon_version: "0.1.0".into(),
                    policy: "demand".into(),
                    written_ms: 1_700_000_000_000,
                    interval_ms: 60_000,
                    running: vec!["macphsft01-ROOT-VM-macOS-14".into()],
                    vms: vec![
                        FleetVm {
                            name: "macphsft01-ROOT-VM-macOS-14".into(),
                            team: Team::Root,
                            power: PowerState::Running,
                        },
                        FleetVm {
                            name: "macphsft01-SPI-VM-macOS-1".into(),
                            team: Team::Spi,
                            power: PowerState::Other("odd".into()),
                        },
                    ],
                    last_decision: Some(decision()),
                    free_disk_bytes: Some(500_000_000_000),
                }],
                unreadable: vec!["fleet/x.json: not JSON".into()],
                read_ms: 1_700_000_030_000,
            }),
            Response::Metrics {
                text: "# HELP marble_boots_total VM boots.\n# TYPE marble_boots_total counter\nmarble_boots_total 3\n".into(),
            },
            Response::Ci(CiReport {
                systems: vec![CiSystem {
                    system: "github".into(),
                    available: false,
                    reason: "security exit 36, errSecInteractionNotAllowed: use token_file".into(),
                    since_ms: 1_700_000_000_000,
                    next_try_ms: 1_700_000_004_000,
                }],
                offline_runners: vec![OfflineRunner {
                    id: 4242,
                    name: "macphsft32-ROOT-VM-macOS-15-Thu-Oct--2-14-28-06-CEST-2025".into(),
                    labels: vec!["self-hosted".into(), "macOS".into(), "mac15".into()],
                    busy: false,
                    kind: "foreign".into(),
                }],
                offline_total: 1,
                polled_ms: 1_700_000_030_000,
            }),
            Response::RunnerInstalled(RunnerInstallResult {
                version: "2.330.0".into(),
                changed: true,
                cached: false,
                run: ProvisionResult {
                    vm: "macphsft01-ROOT-VM-macOS-15".into(),
                    macos_major: 15,
                    steps: vec![StepResult {
                        name: "runner-package".into(),
                        outcome: "ran".into(),
                        detail: String::new(),
                        duration_ms: 9_000,
                    }],
                    started_vm: false,
                    elapsed_ms: 12_000,
                },
            }),
            Response::Runners(RunnerReport {
                latest: Some("2.331.0".into()),
                latest_published_ms: 1_700_000_000_000,
                checked_ms: 1_700_000_030_000,
                check_error: String::new(),
                target: Some("2.331.0".into()),
                vms: vec![RunnerVm {
                    vm: "macphsft01-ROOT-VM-macOS-15".into(),
                    version: Some("2.329.0".into()),
                    read_ms: 1_700_000_020_000,
                    days_behind: 31,
                    deadline_ms: 1_702_592_000_000,
                    level: "overdue".into(),
                }],
            }),
            Response::DemandPoller(Some(DemandPollerReport {
                role: "follower".into(),
                holder: "macphsft41".into(),
                term: 3,
                lease_expires_ms: 1_700_000_007_500,
                stepped_ms: 1_700_000_002_000,
                lease_key: "fleet/lease/demand-root-project_root.json".into(),
            })),
        ]
    }
}

fn transfer_info() -> TransferInfo {
    TransferInfo {
        id: 7,
        kind: "push".into(),
        subject: "macphsft01-ROOT-VM-macOS-14".into(),
        image: "2026-11-28-ROOT-VM-macOS-14".into(),
        by: "alice".into(),
        started_ms: 1_700_000_011_000,
        phase: "upload".into(),
        done: 1_048_576,
        total: 21_474_836_480,
        finished_ms: 0,
        error: None,
    }
}

impl Sampled for Reply {
    const PREFIX: &'static str = "reply";
    fn variant(&self) -> &'static str {
        match self {
            Reply::Ok(_) => "Ok",
            Reply::Err(_) => "Err",
            Reply::Event(_) => "Event",
            Reply::EndOfStream => "EndOfStream",
        }
    }
    fn samples() -> Vec<Self> {
        vec![
            Reply::Ok(Response::Done {
                message: "resumed".into(),
            }),
            Reply::Err(WireError {
                kind: ErrorKind::Busy,
                message: "host busy".into(),
                chain: vec!["spi-mac-01 runs a job".into(), "java pid 812".into()],
            }),
            Reply::Event(Event::Lagged { dropped: 3 }),
            Reply::EndOfStream,
        ]
    }
}

impl Sampled for Event {
    const PREFIX: &'static str = "event";
    fn variant(&self) -> &'static str {
        match self {
            Event::VmPower { .. } => "VmPower",
            Event::VmBusy { .. } => "VmBusy",
            Event::Decision(_) => "Decision",
            Event::OperationStarted { .. } => "OperationStarted",
            Event::OperationFinished { .. } => "OperationFinished",
            Event::Progress { .. } => "Progress",
            Event::Lagged { .. } => "Lagged",
            Event::Keepalive => "Keepalive",
        }
    }
    fn samples() -> Vec<Self> {
        vec![
            Event::VmPower {
                at_ms: 1_700_000_006_000,
                vm: "root-mac-02".into(),
                from: PowerState::Stopped,
                to: PowerState::Other("migrating".into()),
            },
            Event::VmBusy {
                at_ms: 1_700_000_007_000,
                vm: "root-mac-02".into(),
                busy: BusyState::Unknown {
                    reason: "prlctl exec timed out".into(),
                    checked_ms: 1_700_000_007_000,
                },
            },
            Event::Decision(decision()),
            Event::OperationStarted {
                at_ms: 1_700_000_008_000,
                vm: "spi-mac-01".into(),
                operation: "start".into(),
            },
            Event::OperationFinished {
                at_ms: 1_700_000_009_000,
                vm: "spi-mac-01".into(),
                operation: "start".into(),
                error: Some("prlctl start exited with 255".into()),
            },
            Event::Progress {
                done: 65_536,
                total: 4_294_967_296,
                message: "downloading image".into(),
            },
            Event::Lagged { dropped: 250 },
            Event::Keepalive,
        ]
    }
}

impl Sampled for ErrorKind {
    const PREFIX: &'static str = "error_kind";
    fn variant(&self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "InvalidRequest",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::InvalidState => "InvalidState",
            ErrorKind::Busy => "Busy",
            ErrorKind::PermissionDenied => "PermissionDenied",
            ErrorKind::Unavailable => "Unavailable",
            ErrorKind::Unsupported => "Unsupported",
            ErrorKind::Internal => "Internal",
            ErrorKind::Locked => "Locked",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::DataError => "DataError",
            ErrorKind::NoSpace => "NoSpace",
        }
    }
    fn samples() -> Vec<Self> {
        vec![
            ErrorKind::InvalidRequest,
            ErrorKind::NotFound,
            ErrorKind::InvalidState,
            ErrorKind::Busy,
            ErrorKind::PermissionDenied,
            ErrorKind::Unavailable,
            ErrorKind::Unsupported,
            ErrorKind::Internal,
            ErrorKind::Locked,
            ErrorKind::Timeout,
            ErrorKind::DataError,
            ErrorKind::NoSpace,
        ]
    }
}

impl Sampled for PowerState {
    const PREFIX: &'static str = "power_state";
    fn variant(&self) -> &'static str {
        match self {
            PowerState::Stopped => "Stopped",
            PowerState::Starting => "Starting",
            PowerState::Running => "Running",
            PowerState::Stopping => "Stopping",
            PowerState::Suspended => "Suspended",
            PowerState::Suspending => "Suspending",
            PowerState::Paused => "Paused",
            PowerState::Resuming => "Resuming",
            PowerState::Invalid => "Invalid",
            PowerState::Other(_) => "Other",
        }
    }
    fn samples() -> Vec<Self> {
        vec![
            PowerState::Stopped,
            PowerState::Starting,
            PowerState::Running,
            PowerState::Stopping,
            PowerState::Suspended,
            PowerState::Suspending,
            PowerState::Paused,
            PowerState::Resuming,
            PowerState::Invalid,
            PowerState::Other("migrating".into()),
        ]
    }
}

impl Sampled for BusyState {
    const PREFIX: &'static str = "busy_state";
    fn variant(&self) -> &'static str {
        match self {
            BusyState::NotProbed => "NotProbed",
            BusyState::Idle { .. } => "Idle",
            BusyState::Busy { .. } => "Busy",
            BusyState::Unknown { .. } => "Unknown",
        }
    }
    fn samples() -> Vec<Self> {
        vec![
            BusyState::NotProbed,
            BusyState::Idle {
                checked_ms: 1_700_000_010_000,
            },
            BusyState::Busy {
                reason: "Runner.Worker pid 812".into(),
                since_ms: 1_700_000_011_000,
            },
            BusyState::Unknown {
                reason: "guest tools not answering".into(),
                checked_ms: 1_700_000_012_000,
            },
        ]
    }
}

impl Sampled for Team {
    const PREFIX: &'static str = "team";
    fn variant(&self) -> &'static str {
        match self {
            Team::Root => "Root",
            Team::Spi => "Spi",
            Team::Unassigned => "Unassigned",
        }
    }
    fn samples() -> Vec<Self> {
        vec![Team::Root, Team::Spi, Team::Unassigned]
    }
}

impl Sampled for LockTarget {
    const PREFIX: &'static str = "lock_target";
    fn variant(&self) -> &'static str {
        match self {
            LockTarget::Vm(_) => "Vm",
            LockTarget::AllExcept(_) => "AllExcept",
        }
    }
    fn samples() -> Vec<Self> {
        vec![
            LockTarget::Vm("root-mac-02".into()),
            LockTarget::AllExcept("spi-mac-01".into()),
        ]
    }
}

impl Sampled for UnlockTarget {
    const PREFIX: &'static str = "unlock_target";
    fn variant(&self) -> &'static str {
        match self {
            UnlockTarget::Vm(_) => "Vm",
            UnlockTarget::All => "All",
        }
    }
    fn samples() -> Vec<Self> {
        vec![UnlockTarget::Vm("root-mac-02".into()), UnlockTarget::All]
    }
}

impl Sampled for CheckStatus {
    const PREFIX: &'static str = "check_status";
    fn variant(&self) -> &'static str {
        match self {
            CheckStatus::Pass => "Pass",
            CheckStatus::Warn => "Warn",
            CheckStatus::Fail => "Fail",
            CheckStatus::Skip => "Skip",
        }
    }
    fn samples() -> Vec<Self> {
        vec![
            CheckStatus::Pass,
            CheckStatus::Warn,
            CheckStatus::Fail,
            CheckStatus::Skip,
        ]
    }
}

/// The two handshake answers, hand-encoded (no serde): exhaustive match as well.
fn server_hello_variant(hello: &ServerHello) -> &'static str {
    match hello {
        ServerHello::Welcome(_) => "Welcome",
        ServerHello::Rejected { .. } => "Rejected",
    }
}

fn server_hello_samples() -> Vec<ServerHello> {
    vec![
        ServerHello::Welcome(Welcome {
            major: 1,
            minor: 0,
            daemon_version: "0.1.0".into(),
            git_sha: "0123456789abcdef0123456789abcdef01234567".into(),
            features: vec!["watch".into()],
        }),
        ServerHello::Rejected {
            major: 1,
            minor: 0,
            reason: "protocol major mismatch: marblectl speaks 2.0, marbled speaks 1.0; marbled is older, upgrade it".into(),
        },
    ]
}

fn hello_sample() -> Hello {
    Hello {
        major: 1,
        minor: 0,
        client_version: "0.1.0".into(),
        features: vec!["watch".into(), "json".into()],
    }
}

/// One fixture file: the bytes this build produces and a check that decodes the committed
/// bytes back to the sample.
struct Fixture {
    file: String,
    dir: PathBuf,
    encoded: Vec<u8>,
    debug: String,
    decodes_to_sample: DecodeCheck,
}

/// Decodes committed bytes and compares them with the sample.
type DecodeCheck = Box<dyn Fn(&[u8]) -> Result<(), String>>;

fn golden_dir(major: u16) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("v{major}"))
}

fn serde_fixture<T>(file: String, value: T) -> Fixture
where
    T: Serialize + DeserializeOwned + PartialEq + Debug + 'static,
{
    let encoded = codec::encode(&value).expect("sample encodes");
    let debug = format!("{value:#?}");
    Fixture {
        file,
        dir: golden_dir(PROTO_MAJOR),
        encoded,
        debug,
        decodes_to_sample: Box::new(move |bytes| match codec::decode::<T>(bytes) {
            Ok(decoded) if decoded == value => Ok(()),
            Ok(decoded) => Err(format!("decodes to {decoded:?}, expected {value:?}")),
            Err(err) => Err(format!("does not decode: {err}")),
        }),
    }
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn sampled_fixtures<T: Sampled>(out: &mut Vec<Fixture>) {
    for sample in T::samples() {
        let file = format!("{}_{}.hex", T::PREFIX, snake(sample.variant()));
        out.push(serde_fixture(file, sample));
    }
}

fn all_fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    sampled_fixtures::<Request>(&mut out);
    sampled_fixtures::<Response>(&mut out);
    sampled_fixtures::<Reply>(&mut out);
    sampled_fixtures::<Event>(&mut out);
    sampled_fixtures::<ErrorKind>(&mut out);
    sampled_fixtures::<PowerState>(&mut out);
    sampled_fixtures::<BusyState>(&mut out);
    sampled_fixtures::<Team>(&mut out);
    sampled_fixtures::<LockTarget>(&mut out);
    sampled_fixtures::<UnlockTarget>(&mut out);
    sampled_fixtures::<CheckStatus>(&mut out);

    // The envelopes, with ids above the one-byte varint range to pin the multi-byte form.
    out.push(serde_fixture(
        "client_frame.hex".into(),
        ClientFrame {
            id: 70_000,
            body: Request::StopVm {
                vm: "spi-mac-01".into(),
                force: false,
            },
        },
    ));
    out.push(serde_fixture(
        "server_frame.hex".into(),
        ServerFrame {
            id: 70_000,
            body: Reply::Err(WireError::new(ErrorKind::NotFound, "no VM named spi-mac-9")),
        },
    ));

    // The handshake: frozen layout, so always checked against v1.
    let hello = hello_sample();
    out.push(Fixture {
        file: "handshake_hello.hex".into(),
        dir: golden_dir(1),
        encoded: hello.encode(),
        debug: format!("{hello:#?}"),
        decodes_to_sample: Box::new(move |bytes| match Hello::decode(bytes) {
            Ok(decoded) if decoded == hello => Ok(()),
            Ok(decoded) => Err(format!("decodes to {decoded:?}")),
            Err(err) => Err(format!("does not decode: {err}")),
        }),
    });
    for sample in server_hello_samples() {
        out.push(Fixture {
            file: format!(
                "handshake_server_hello_{}.hex",
                snake(server_hello_variant(&sample))
            ),
            dir: golden_dir(1),
            encoded: sample.encode(),
            debug: format!("{sample:#?}"),
            decodes_to_sample: Box::new(move |bytes| match ServerHello::decode(bytes) {
                Ok(decoded) if decoded == sample => Ok(()),
                Ok(decoded) => Err(format!("decodes to {decoded:?}")),
                Err(err) => Err(format!("does not decode: {err}")),
            }),
        });
    }
    out
}

/// Fixture format: `#` comment lines (the sample's `Debug`, for reviewers), then hex, 32
/// bytes per line. Only the hex is compared.
fn render(fixture: &Fixture) -> String {
    let mut text =
        String::from("# Generated by MARBLE_BLESS=1 cargo test -p marble-proto --test golden.\n");
    text.push_str("# Changing these bytes is a protocol major bump: see docs/PROTOCOL.md.\n");
    for line in fixture.debug.lines() {
        text.push_str("# ");
        text.push_str(line);
        text.push('\n');
    }
    for chunk in fixture.encoded.chunks(32) {
        text.push_str(&hex::encode(chunk));
        text.push('\n');
    }
    text
}

fn parse(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect();
    hex::decode(digits).map_err(|err| format!("not hex: {err}"))
}

fn blessing() -> bool {
    std::env::var_os("MARBLE_BLESS").is_some_and(|v| v == "1")
}

#[test]
fn golden_fixtures_match() {
    let bless = blessing();
    let mut failures = Vec::new();
    for fixture in all_fixtures() {
        let path = fixture.dir.join(&fixture.file);
        let committed = std::fs::read_to_string(&path);
        if bless {
            let rendered = render(&fixture);
            if committed.as_deref().ok() != Some(rendered.as_str()) {
                std::fs::create_dir_all(&fixture.dir).expect("create golden dir");
                std::fs::write(&path, rendered).expect("write fixture");
                eprintln!("blessed {}", path.display());
            }
            continue;
        }
        let committed = match committed {
            Ok(text) => text,
            Err(err) => {
                failures.push(format!(
                    "{}: missing ({err}); run MARBLE_BLESS=1 cargo test -p marble-proto --test golden",
                    path.display()
                ));
                continue;
            }
        };
        let bytes = match parse(&committed) {
            Ok(bytes) => bytes,
            Err(err) => {
                failures.push(format!("{}: {err}", path.display()));
                continue;
            }
        };
        if bytes != fixture.encoded {
            failures.push(format!(
                "{}: encoding changed (a protocol major bump)\n  committed: {}\n  now:       {}",
                path.display(),
                hex::encode(&bytes),
                hex::encode(&fixture.encoded)
            ));
        }
        if let Err(err) = (fixture.decodes_to_sample)(&bytes) {
            failures.push(format!("{}: committed bytes {err}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A fixture nobody produces any more means a variant was renamed or removed: a major bump.
#[test]
fn no_stale_fixtures() {
    let expected: BTreeSet<PathBuf> = all_fixtures().iter().map(|f| f.dir.join(&f.file)).collect();
    let dirs: BTreeSet<PathBuf> = all_fixtures().into_iter().map(|f| f.dir).collect();
    let mut stale = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("read golden dir").path();
            if path.extension().is_some_and(|e| e == "hex") && !expected.contains(&path) {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "fixtures without a sample (renamed or removed variant?): {stale:?}"
    );
}

/// Captures the variant names serde derived for an enum, in declaration (= wire) order.
fn serde_variants<T: DeserializeOwned>() -> Vec<String> {
    use serde::de::{Error as _, Visitor};

    struct Probe;
    impl<'de> serde::Deserializer<'de> for &mut Probe {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not an enum"))
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            // Smuggle the list out through the error: the only channel serde gives us.
            Err(Self::Error::custom(variants.join(",")))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
            identifier ignored_any
        }
    }
    let err = T::deserialize(&mut Probe)
        .err()
        .expect("probe always fails");
    err.to_string().split(',').map(str::to_owned).collect()
}

#[track_caller]
fn assert_covers<T: Sampled>() {
    // serde's names are the JSON names (snake_case for the enums marblectl renders), the
    // samples' are the Rust names: compare both in snake_case.
    // A `#[serde(alias)]` (Team's pre-rename names, for old state files) is listed next to
    // its variant: the same name once snake_cased, so dedup keeps one per variant.
    let mut declared: Vec<String> = serde_variants::<T>().iter().map(|n| snake(n)).collect();
    declared.dedup();
    let samples = T::samples();
    let sampled: Vec<String> = samples.iter().map(|s| snake(s.variant())).collect();
    assert_eq!(
        sampled,
        declared,
        "{}: samples must list every variant once, in declaration order",
        T::PREFIX
    );
    // The wire index of each sample is its position: pins that `variant` names the right arm.
    for (index, sample) in samples.iter().enumerate() {
        let bytes = codec::encode(sample).expect("sample encodes");
        assert_eq!(
            usize::from(bytes[0]),
            index,
            "{}::{} is not wire variant {index}",
            T::PREFIX,
            sample.variant()
        );
    }
}

#[test]
fn samples_cover_every_variant() {
    assert_covers::<Request>();
    assert_covers::<Response>();
    assert_covers::<Reply>();
    assert_covers::<Event>();
    assert_covers::<ErrorKind>();
    assert_covers::<PowerState>();
    assert_covers::<BusyState>();
    assert_covers::<Team>();
    assert_covers::<LockTarget>();
    assert_covers::<UnlockTarget>();
    assert_covers::<CheckStatus>();
}

#[test]
fn server_hello_samples_cover_every_tag() {
    let samples = server_hello_samples();
    let names: Vec<&str> = samples.iter().map(server_hello_variant).collect();
    assert_eq!(names, ["Welcome", "Rejected"]);
    for (tag, sample) in samples.iter().enumerate() {
        let bytes = sample.encode();
        assert_eq!(&bytes[..4], &MAGIC);
        assert_eq!(usize::from(bytes[4]), tag);
    }
    // The next tag is unknown: a third answer would need a new sample and fixture.
    let mut next = samples[0].encode();
    next[4] = u8::try_from(samples.len()).expect("few tags");
    assert!(ServerHello::decode(&next).is_err());
}

/// A request cannot be newer than the build that declares it: appending a "since 1.N"
/// request without bumping `PROTO_MINOR` fails here.
#[test]
#[allow(
    clippy::absurd_extreme_comparisons,
    reason = "PROTO_MINOR is 0 at 1.0; the check bites after the first minor bump"
)]
fn request_minors_are_within_this_build() {
    for request in Request::samples() {
        assert!(
            request.since_minor() <= PROTO_MINOR,
            "{} claims since 1.{} but PROTO_MINOR is {PROTO_MINOR}: bump PROTO_MINOR",
            request.kind(),
            request.since_minor()
        );
    }
}

/// The "Since 1.N" in each `Request` variant's doc comment agrees with `since_minor`.
#[test]
fn request_docs_state_their_minor() {
    let source = include_str!("../src/wire.rs");
    let body = source
        .split_once("pub enum Request {")
        .expect("wire.rs declares Request")
        .1
        .split_once("\n}\n")
        .expect("Request enum ends")
        .0;
    // Variants sit at four spaces of indentation; their docs are the `///` lines just above.
    let mut docs = String::new();
    let mut found = Vec::new();
    for line in body.lines() {
        if let Some(doc) = line.strip_prefix("    /// ") {
            docs.push_str(doc);
            docs.push(' ');
        } else if let Some(decl) = line.strip_prefix("    ")
            && decl.starts_with(|c: char| c.is_ascii_uppercase())
        {
            let name: String = decl
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            found.push((name, std::mem::take(&mut docs)));
        } else if !line.starts_with("        ") {
            docs.clear();
        }
    }
    let samples = Request::samples();
    let names: Vec<&str> = samples.iter().map(Sampled::variant).collect();
    let parsed: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        parsed, names,
        "could not parse Request variants from wire.rs"
    );
    for (sample, (name, doc)) in samples.iter().zip(&found) {
        let want = format!("Since {PROTO_MAJOR}.{}.", sample.since_minor());
        assert!(
            doc.contains(&want),
            "Request::{name}: doc must say {want:?} (found {doc:?})"
        );
    }
}

/// What `marblectl --json` prints is these types through serde_json: every enum value and
/// every object key is lower-case snake_case (issue 14 §4), for every sample of every type a
/// client renders. Team also reads the names state files written before the rename hold.
#[test]
fn json_keys_and_enum_values_are_snake_case() {
    fn walk(v: &serde_json::Value, at: &str, bad: &mut Vec<String>) {
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    if !ok(k) {
                        bad.push(format!("{at}: key {k:?}"));
                    }
                    walk(v, &format!("{at}.{k}"), bad);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{at}[{i}]"), bad);
                }
            }
            _ => {}
        }
    }
    fn check<T: Sampled>(bad: &mut Vec<String>) {
        for sample in T::samples() {
            let v = serde_json::to_value(&sample).expect("serialises");
            let at = format!("{}::{}", T::PREFIX, sample.variant());
            // A unit variant is a bare string: the enum value itself.
            if let serde_json::Value::String(s) = &v
                && s != &snake(sample.variant())
            {
                bad.push(format!("{at}: value {s:?}"));
            }
            walk(&v, &at, bad);
        }
    }
    let mut bad = Vec::new();
    check::<Response>(&mut bad);
    check::<Event>(&mut bad);
    check::<ErrorKind>(&mut bad);
    check::<PowerState>(&mut bad);
    check::<BusyState>(&mut bad);
    check::<Team>(&mut bad);
    check::<LockTarget>(&mut bad);
    check::<UnlockTarget>(&mut bad);
    check::<CheckStatus>(&mut bad);
    assert!(
        bad.is_empty(),
        "not snake_case in JSON:\n{}",
        bad.join("\n")
    );
    assert_eq!(
        serde_json::from_str::<Team>("\"Root\"").expect("old state files"),
        Team::Root
    );
    assert_eq!(serde_json::to_string(&Team::Spi).expect("json"), "\"spi\"");
}
