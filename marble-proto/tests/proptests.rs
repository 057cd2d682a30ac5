//! Property tests: generated values survive encode/decode unchanged, and arbitrary or mutated
//! bytes fed to every decoder (bincode, handshake, framed reader) return without panicking.
//!
//! Case counts default to proptest's 256 (a few seconds on two cores); set `PROPTEST_CASES`
//! for a longer soak, e.g. `PROPTEST_CASES=20000 cargo test -p marble-proto --test proptests`.
//! The strategies live here, not in the library, so `marble-proto` does not depend on proptest.

use std::time::Duration;

use marble_proto::{
    Attribution, BusyState, CheckResult, CheckStatus, CiReport, CiSystem, ClientFrame,
    CreateResult, Decision, ErrorKind, Event, FleetHost, FleetReport, FleetVm, FramedConn, Hello,
    ImageEntry, LockTarget, OfflineRunner, PendingRequest, PowerState, ProfileFile, ProfileUpload,
    ProvisionResult, PullResult, PushResult, Reply, Request, Response, RunnerReport, RunnerVm,
    ServerFrame, ServerHello, SlotGrant, StatusReport, StepResult, Team, TransferInfo,
    UnlockTarget, VerifyResult, VmInfo, Welcome, WireError, codec,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

// ---------------------------------------------------------------------------------------------
// Strategies for the wire types.

/// Any Unicode, short: names, reasons, messages.
fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn ms() -> impl Strategy<Value = u64> {
    prop_oneof![0..300u64, any::<u64>()]
}

fn team() -> impl Strategy<Value = Team> {
    prop_oneof![Just(Team::Root), Just(Team::Spi), Just(Team::Unassigned)]
}

fn power_state() -> impl Strategy<Value = PowerState> {
    prop_oneof![
        Just(PowerState::Stopped),
        Just(PowerState::Starting),
        Just(PowerState::Running),
        Just(PowerState::Stopping),
        Just(PowerState::Suspended),
        Just(PowerState::Suspending),
        Just(PowerState::Paused),
        Just(PowerState::Resuming),
        Just(PowerState::Invalid),
        text().prop_map(PowerState::Other),
    ]
}

fn busy_state() -> impl Strategy<Value = BusyState> {
    prop_oneof![
        Just(BusyState::NotProbed),
        ms().prop_map(|checked_ms| BusyState::Idle { checked_ms }),
        (text(), ms()).prop_map(|(reason, since_ms)| BusyState::Busy { reason, since_ms }),
        (text(), ms()).prop_map(|(reason, checked_ms)| BusyState::Unknown { reason, checked_ms }),
    ]
}

fn attribution() -> impl Strategy<Value = Attribution> {
    (text(), text(), ms()).prop_map(|(by, reason, since_ms)| Attribution {
        by,
        reason,
        since_ms,
    })
}

fn vm_info() -> impl Strategy<Value = VmInfo> {
    (
        text(),
        text(),
        team(),
        power_state(),
        busy_state(),
        option::of(attribution()),
        option::of(text()),
        text(),
    )
        .prop_map(
            |(name, uuid, team, power, busy, lock, operation, note)| VmInfo {
                name,
                uuid,
                team,
                power,
                busy,
                lock,
                operation,
                note,
            },
        )
}

fn decision() -> impl Strategy<Value = Decision> {
    (ms(), option::of(text()), text()).prop_map(|(at_ms, vm, text)| Decision { at_ms, vm, text })
}

fn status_report() -> impl Strategy<Value = StatusReport> {
    (
        (text(), text(), text(), any::<u32>()),
        option::of(attribution()),
        option::of(attribution()),
        vec(vm_info(), 0..4),
        vec(
            (text(), text(), ms()).prop_map(|(vm, by, since_ms)| PendingRequest {
                vm,
                by,
                since_ms,
            }),
            0..3,
        ),
        vec(decision(), 0..3),
        ms(),
    )
        .prop_map(
            |(
                (daemon_version, host, policy, capacity),
                paused,
                draining,
                vms,
                pending,
                decisions,
                inventory_ms,
            )| {
                StatusReport {
                    daemon_version,
                    host,
                    policy,
                    capacity,
                    paused,
                    draining,
                    vms,
                    pending,
                    decisions,
                    inventory_ms,
                }
            },
        )
}

fn lock_target() -> impl Strategy<Value = LockTarget> {
    prop_oneof![
        text().prop_map(LockTarget::Vm),
        text().prop_map(LockTarget::AllExcept),
    ]
}

fn unlock_target() -> impl Strategy<Value = UnlockTarget> {
    prop_oneof![text().prop_map(UnlockTarget::Vm), Just(UnlockTarget::All)]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Status),
        Just(Request::ListVms),
        text().prop_map(|vm| Request::ShowVm { vm }),
        text().prop_map(|vm| Request::StartVm { vm }),
        (text(), any::<bool>()).prop_map(|(vm, force)| Request::StopVm { vm, force }),
        Just(Request::WatchEvents),
        (text(), ms()).prop_map(|(vm, wait_ms)| Request::RequestSlot { vm, wait_ms }),
        text().prop_map(|reason| Request::Pause { reason }),
        Just(Request::Resume),
        (lock_target(), text()).prop_map(|(target, reason)| Request::Lock { target, reason }),
        unlock_target().prop_map(|target| Request::Unlock { target }),
        (text(), ms()).prop_map(|(reason, wait_ms)| Request::Drain { reason, wait_ms }),
        (text(), option::of(text()), any::<bool>())
            .prop_map(|(vm, name, detach)| Request::ImagePush { vm, name, detach }),
        (text(), option::of(text()), any::<bool>()).prop_map(|(name, as_name, detach)| {
            Request::ImagePull {
                name,
                as_name,
                detach,
            }
        }),
        option::of(text()).prop_map(|team| Request::ImageList { team }),
        text().prop_map(|name| Request::ImageRemove { name }),
        (text(), any::<bool>()).prop_map(|(name, detach)| Request::ImageVerify { name, detach }),
        Just(Request::Transfers),
        (
            text(),
            text(),
            team(),
            option::of(any::<u32>()),
            option::of(any::<u64>())
        )
            .prop_map(|(name, ipsw, team, cpus, memory_mib)| Request::CreateVm {
                name,
                ipsw,
                team,
                cpus,
                memory_mib,
            }),
        (text(), profile_upload()).prop_map(|(vm, profile)| Request::ProvisionVm { vm, profile }),
        Just(Request::HostCheck),
        Just(Request::FleetList),
        Just(Request::Metrics),
        Just(Request::CiStatus),
        Just(Request::MigrateCheck),
        (text(), any::<bool>()).prop_map(|(vm, upgrade)| Request::RunnerInstall { vm, upgrade }),
        Just(Request::RunnerStatus),
        Just(Request::DemandPoller),
    ]
}

fn profile_upload() -> impl Strategy<Value = ProfileUpload> {
    (
        text(),
        text(),
        vec(
            (text(), vec(any::<u8>(), 0..64))
                .prop_map(|(path, content)| ProfileFile { path, content }),
            0..3,
        ),
    )
        .prop_map(|(origin, text, files)| ProfileUpload {
            origin,
            text,
            files,
        })
}

fn check_status() -> impl Strategy<Value = CheckStatus> {
    prop_oneof![
        Just(CheckStatus::Pass),
        Just(CheckStatus::Warn),
        Just(CheckStatus::Fail),
        Just(CheckStatus::Skip),
    ]
}

fn transfer_info() -> impl Strategy<Value = TransferInfo> {
    (
        (any::<u64>(), text(), text(), text(), text(), ms()),
        (text(), ms(), ms(), ms(), option::of(text())),
    )
        .prop_map(
            |(
                (id, kind, subject, image, by, started_ms),
                (phase, done, total, finished_ms, error),
            )| {
                TransferInfo {
                    id,
                    kind,
                    subject,
                    image,
                    by,
                    started_ms,
                    phase,
                    done,
                    total,
                    finished_ms,
                    error,
                }
            },
        )
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        status_report().prop_map(Response::Status),
        vec(vm_info(), 0..4).prop_map(Response::Vms),
        vm_info().prop_map(Response::Vm),
        text().prop_map(|message| Response::Done { message }),
        (text(), any::<bool>(), option::of(text()), ms()).prop_map(
            |(vm, already_running, preempted, protected_until_ms)| {
                Response::SlotGranted(SlotGrant {
                    vm,
                    already_running,
                    preempted,
                    protected_until_ms,
                })
            }
        ),
        vec(
            (text(), text(), text(), ms(), ms()).prop_map(
                |(name, team, format, size, modified_ms)| ImageEntry {
                    name,
                    team,
                    format,
                    size,
                    modified_ms,
                }
            ),
            0..3
        )
        .prop_map(Response::Images),
        (text(), vec(text(), 0..3)).prop_map(|(name, keys)| Response::ImageRemoved { name, keys }),
        transfer_info().prop_map(Response::TransferStarted),
        (
            (any::<u64>(), text(), text(), text(), ms(), ms()),
            (ms(), any::<u32>(), any::<u32>(), ms(), vec(text(), 0..3)),
        )
            .prop_map(
                |(
                    (transfer, image, vm, data_key, apparent_bytes, payload_bytes),
                    (object_bytes, parts, parts_resumed, elapsed_ms, scrubbed),
                )| {
                    Response::ImagePushed(PushResult {
                        transfer,
                        image,
                        vm,
                        data_key,
                        apparent_bytes,
                        payload_bytes,
                        object_bytes,
                        parts,
                        parts_resumed,
                        elapsed_ms,
                        scrubbed,
                    })
                }
            ),
        (
            (any::<u64>(), text(), text(), text(), text(), ms()),
            (
                ms(),
                any::<u32>(),
                ms(),
                option::of(text()),
                any::<bool>(),
                text()
            ),
        )
            .prop_map(
                |(
                    (transfer, image, vm, bundle, format, downloaded_bytes),
                    (
                        apparent_bytes,
                        chunks_resumed,
                        elapsed_ms,
                        mac,
                        build_disk_fetched,
                        operator_steps,
                    ),
                )| {
                    Response::ImagePulled(PullResult {
                        transfer,
                        image,
                        vm,
                        bundle,
                        format,
                        downloaded_bytes,
                        apparent_bytes,
                        chunks_resumed,
                        elapsed_ms,
                        mac,
                        build_disk_fetched,
                        operator_steps,
                    })
                }
            ),
        (any::<u64>(), text(), text(), any::<u32>(), ms(), ms()).prop_map(
            |(transfer, image, format, chunks, bytes, elapsed_ms)| {
                Response::ImageVerified(VerifyResult {
                    transfer,
                    image,
                    format,
                    chunks,
                    bytes,
                    elapsed_ms,
                })
            }
        ),
        vec(transfer_info(), 0..3).prop_map(Response::Transfers),
        (
            (
                text(),
                option::of(text()),
                option::of(text()),
                option::of(text())
            ),
            (any::<u32>(), any::<u64>(), text(), vec(text(), 0..3)),
            (any::<bool>(), vec(text(), 0..3)),
        )
            .prop_map(
                |(
                    (vm, uuid, bundle, mac),
                    (cpus, memory_mib, build_disk, commands),
                    (locked, manual_steps),
                )| {
                    Response::VmCreated(CreateResult {
                        vm,
                        uuid,
                        bundle,
                        mac,
                        cpus,
                        memory_mib,
                        build_disk,
                        commands,
                        locked,
                        manual_steps,
                    })
                }
            ),
        (
            text(),
            any::<u32>(),
            vec(
                (text(), text(), text(), ms()).prop_map(|(name, outcome, detail, duration_ms)| {
                    StepResult {
                        name,
                        outcome,
                        detail,
                        duration_ms,
                    }
                }),
                0..3
            ),
            any::<bool>(),
            ms()
        )
            .prop_map(|(vm, macos_major, steps, started_vm, elapsed_ms)| {
                Response::Provisioned(ProvisionResult {
                    vm,
                    macos_major,
                    steps,
                    started_vm,
                    elapsed_ms,
                })
            }),
        vec(
            (text(), check_status(), text(), text()).prop_map(|(name, status, detail, fix)| {
                CheckResult {
                    name,
                    status,
                    detail,
                    fix,
                }
            }),
            0..4
        )
        .prop_map(Response::HostReport),
        (
            vec(
                (
                    text(),
                    text(),
                    text(),
                    ms(),
                    ms(),
                    vec(text(), 0..2),
                    vec(
                        (text(), team(), power_state()).prop_map(|(name, team, power)| FleetVm {
                            name,
                            team,
                            power
                        }),
                        0..3
                    ),
                    option::of(decision()),
                    option::of(any::<u64>()),
                )
                    .prop_map(
                        |(
                            host,
                            daemon_version,
                            policy,
                            written_ms,
                            interval_ms,
                            running,
                            vms,
                            last_decision,
                            free_disk_bytes,
                        )| FleetHost {
                            host,
                            daemon_version,
                            policy,
                            written_ms,
                            interval_ms,
                            running,
                            vms,
                            last_decision,
                            free_disk_bytes,
                        }
                    ),
                0..3
            ),
            vec(text(), 0..2),
            ms()
        )
            .prop_map(|(hosts, unreadable, read_ms)| Response::Fleet(FleetReport {
                hosts,
                unreadable,
                read_ms
            })),
        text().prop_map(|text| Response::Metrics { text }),
        (
            vec(
                (text(), any::<bool>(), text(), ms(), ms()).prop_map(
                    |(system, available, reason, since_ms, next_try_ms)| CiSystem {
                        system,
                        available,
                        reason,
                        since_ms,
                        next_try_ms,
                    }
                ),
                0..2
            ),
            vec(
                (
                    any::<u64>(),
                    text(),
                    vec(text(), 0..3),
                    any::<bool>(),
                    text()
                )
                    .prop_map(|(id, name, labels, busy, kind)| OfflineRunner {
                        id,
                        name,
                        labels,
                        busy,
                        kind,
                    }),
                0..3
            ),
            any::<u32>(),
            ms()
        )
            .prop_map(|(systems, offline_runners, offline_total, polled_ms)| {
                Response::Ci(CiReport {
                    systems,
                    offline_runners,
                    offline_total,
                    polled_ms,
                })
            }),
        (
            proptest::option::of(text()),
            ms(),
            text(),
            proptest::collection::vec(
                (
                    text(),
                    proptest::option::of(text()),
                    ms(),
                    any::<u64>(),
                    text()
                ),
                0..3
            )
        )
            .prop_map(|(latest, checked_ms, check_error, vms)| {
                Response::Runners(RunnerReport {
                    target: latest.clone(),
                    latest,
                    latest_published_ms: checked_ms / 2,
                    checked_ms,
                    check_error,
                    vms: vms
                        .into_iter()
                        .map(|(vm, version, read_ms, days_behind, level)| RunnerVm {
                            vm,
                            version,
                            read_ms,
                            days_behind,
                            deadline_ms: read_ms / 2,
                            level,
                        })
                        .collect(),
                })
            }),
        proptest::option::of((text(), text(), any::<u64>(), ms(), ms(), text())).prop_map(|p| {
            Response::DemandPoller(p.map(
                |(role, holder, term, lease_expires_ms, stepped_ms, lease_key)| {
                    marble_proto::DemandPollerReport {
                        role,
                        holder,
                        term,
                        lease_expires_ms,
                        stepped_ms,
                        lease_key,
                    }
                },
            ))
        }),
    ]
}

fn error_kind() -> impl Strategy<Value = ErrorKind> {
    prop_oneof![
        Just(ErrorKind::InvalidRequest),
        Just(ErrorKind::NotFound),
        Just(ErrorKind::InvalidState),
        Just(ErrorKind::Busy),
        Just(ErrorKind::PermissionDenied),
        Just(ErrorKind::Unavailable),
        Just(ErrorKind::Unsupported),
        Just(ErrorKind::Internal),
        Just(ErrorKind::Locked),
        Just(ErrorKind::Timeout),
        Just(ErrorKind::DataError),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (ms(), text(), power_state(), power_state()).prop_map(|(at_ms, vm, from, to)| {
            Event::VmPower {
                at_ms,
                vm,
                from,
                to,
            }
        }),
        (ms(), text(), busy_state()).prop_map(|(at_ms, vm, busy)| Event::VmBusy {
            at_ms,
            vm,
            busy
        }),
        decision().prop_map(Event::Decision),
        (ms(), text(), text()).prop_map(|(at_ms, vm, operation)| Event::OperationStarted {
            at_ms,
            vm,
            operation
        }),
        (ms(), text(), text(), option::of(text())).prop_map(|(at_ms, vm, operation, error)| {
            Event::OperationFinished {
                at_ms,
                vm,
                operation,
                error,
            }
        }),
        (ms(), ms(), text()).prop_map(|(done, total, message)| Event::Progress {
            done,
            total,
            message
        }),
        ms().prop_map(|dropped| Event::Lagged { dropped }),
        Just(Event::Keepalive),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        response().prop_map(Reply::Ok),
        (error_kind(), text(), vec(text(), 0..3)).prop_map(|(kind, message, chain)| Reply::Err(
            WireError {
                kind,
                message,
                chain
            }
        )),
        event().prop_map(Reply::Event),
        Just(Reply::EndOfStream),
    ]
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    (any::<u32>(), request()).prop_map(|(id, body)| ClientFrame { id, body })
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    (any::<u32>(), reply()).prop_map(|(id, body)| ServerFrame { id, body })
}

/// Handshake strings stay within `MAX_HANDSHAKE_STR` bytes (4 bytes per char at most).
fn hs_text() -> impl Strategy<Value = String> {
    ".{0,64}"
}

fn hello() -> impl Strategy<Value = Hello> {
    (any::<u16>(), any::<u16>(), hs_text(), vec(hs_text(), 0..8)).prop_map(
        |(major, minor, client_version, features)| Hello {
            major,
            minor,
            client_version,
            features,
        },
    )
}

fn server_hello() -> impl Strategy<Value = ServerHello> {
    prop_oneof![
        (
            any::<u16>(),
            any::<u16>(),
            hs_text(),
            hs_text(),
            vec(hs_text(), 0..8)
        )
            .prop_map(|(major, minor, daemon_version, git_sha, features)| {
                ServerHello::Welcome(Welcome {
                    major,
                    minor,
                    daemon_version,
                    git_sha,
                    features,
                })
            }),
        (any::<u16>(), any::<u16>(), hs_text()).prop_map(|(major, minor, reason)| {
            ServerHello::Rejected {
                major,
                minor,
                reason,
            }
        }),
    ]
}

/// A way to damage an encoding.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Truncate { at: usize },
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Remove { at }),
    ];
    vec(one, 1..4)
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Flip { at, xor } if len > 0 => bytes[at % len] ^= xor,
            Mutation::Truncate { at } => bytes.truncate(at % (len + 1)),
            Mutation::Insert { at, byte } => bytes.insert(at % (len + 1), byte),
            Mutation::Remove { at } if len > 0 => {
                bytes.remove(at % len);
            }
            Mutation::Flip { .. } | Mutation::Remove { .. } => {}
        }
    }
    bytes
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Whatever decodes must re-encode to something that decodes to the same value.
fn check_bincode<T>(bytes: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = codec::decode::<T>(bytes) {
        let again = codec::encode(&value).expect("a decoded value re-encodes");
        assert_eq!(codec::decode::<T>(&again).expect("re-decodes"), value);
    }
}

fn check_all_decoders(bytes: &[u8]) {
    check_bincode::<ClientFrame>(bytes);
    check_bincode::<ServerFrame>(bytes);
    if let Ok(hello) = Hello::decode(bytes) {
        assert_eq!(Hello::decode(&hello.encode()), Ok(hello));
    }
    if let Ok(answer) = ServerHello::decode(bytes) {
        assert_eq!(ServerHello::decode(&answer.encode()), Ok(answer));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("build runtime")
}

/// Feed `stream` to a `FramedConn` reader as the peer, then close; read until the end or the
/// first error. Returns the number of frames read. Bounded in time so a hang fails the test.
fn read_stream(stream: &[u8], server_side: bool) -> usize {
    runtime().block_on(async {
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let input = stream.to_vec();
        let writer = tokio::spawn(async move {
            // The reader may stop early (error) and drop its end: a failed write is fine.
            let _ = peer.write_all(&input).await;
            let _ = peer.shutdown().await;
            // Hand the peer back so it stays open (the daemon side writes its answer to it)
            // until the reader is done.
            peer
        });
        let mut conn = FramedConn::new(ours);
        let frames = tokio::time::timeout(Duration::from_secs(10), async {
            if server_side {
                // The daemon's first read is the handshake.
                if conn.server_handshake("0.0.0", "test").await.is_err() {
                    return 0;
                }
            }
            let mut frames = 0;
            loop {
                match conn.recv::<ClientFrame>().await {
                    Ok(Some(_)) => frames += 1,
                    Ok(None) | Err(_) => return frames,
                }
            }
        })
        .await
        .expect("the reader finishes within 10 s");
        drop(conn);
        drop(writer.await.expect("writer task"));
        frames
    })
}

/// A byte stream of length-prefixed chunks whose prefixes are mostly right, some wrong.
fn frame_stream() -> impl Strategy<Value = Vec<u8>> {
    let chunk = prop_oneof![
        // A well-formed frame around arbitrary bytes.
        vec(any::<u8>(), 0..64).prop_map(|body| {
            let mut out = u32::try_from(body.len())
                .expect("short")
                .to_be_bytes()
                .to_vec();
            out.extend(body);
            out
        }),
        // A well-formed frame around a real, possibly damaged, client frame.
        (client_frame(), mutations()).prop_map(|(frame, muts)| {
            let body = mutate(codec::encode(&frame).expect("encodes"), &muts);
            let mut out = u32::try_from(body.len())
                .expect("short")
                .to_be_bytes()
                .to_vec();
            out.extend(body);
            out
        }),
        // Raw bytes: lies about lengths, partial prefixes.
        vec(any::<u8>(), 0..16),
    ];
    vec(chunk, 0..6).prop_map(|chunks| chunks.concat())
}

// ---------------------------------------------------------------------------------------------
// Round trips.

proptest! {
    #[test]
    fn client_frame_round_trips(frame in client_frame()) {
        let bytes = codec::encode(&frame).expect("encodes");
        prop_assert_eq!(codec::decode::<ClientFrame>(&bytes).expect("decodes"), frame);
    }

    #[test]
    fn server_frame_round_trips(frame in server_frame()) {
        let bytes = codec::encode(&frame).expect("encodes");
        prop_assert_eq!(codec::decode::<ServerFrame>(&bytes).expect("decodes"), frame);
    }

    #[test]
    fn hello_round_trips(hello in hello()) {
        prop_assert_eq!(Hello::decode(&hello.encode()), Ok(hello));
    }

    #[test]
    fn server_hello_round_trips(answer in server_hello()) {
        prop_assert_eq!(ServerHello::decode(&answer.encode()), Ok(answer));
    }

    /// Every strict prefix of a valid encoding is an error, never a shorter value.
    #[test]
    fn truncated_client_frames_never_decode(frame in client_frame(), cut in any::<usize>()) {
        let bytes = codec::encode(&frame).expect("encodes");
        let cut = cut % bytes.len();
        prop_assert!(codec::decode::<ClientFrame>(&bytes[..cut]).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Random and damaged bytes: Ok or Err, never a panic or a hang.

proptest! {
    #[test]
    fn random_bytes_never_panic_decoders(bytes in vec(any::<u8>(), 0..512)) {
        check_all_decoders(&bytes);
    }

    /// Random bytes rarely get past the first tag; damaged valid encodings reach deep fields.
    #[test]
    fn damaged_frames_never_panic_decoders(
        client in client_frame(),
        server in server_frame(),
        muts in mutations(),
    ) {
        check_all_decoders(&mutate(codec::encode(&client).expect("encodes"), &muts));
        check_all_decoders(&mutate(codec::encode(&server).expect("encodes"), &muts));
    }

    #[test]
    fn damaged_handshakes_never_panic_decoders(
        hello in hello(),
        answer in server_hello(),
        muts in mutations(),
    ) {
        check_all_decoders(&mutate(hello.encode(), &muts));
        check_all_decoders(&mutate(answer.encode(), &muts));
    }
}

proptest! {
    // Each case builds a runtime; fewer cases keep this well under a few seconds.
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.min(128),
        ..ProptestConfig::default()
    })]

    #[test]
    fn framed_reader_survives_any_stream(stream in frame_stream()) {
        read_stream(&stream, false);
    }

    #[test]
    fn framed_reader_survives_random_bytes(stream in vec(any::<u8>(), 0..256)) {
        read_stream(&stream, false);
    }

    /// The daemon side: a random first frame in place of the hello.
    #[test]
    fn server_handshake_survives_any_stream(stream in frame_stream()) {
        read_stream(&stream, true);
    }
}

/// The framed reader really reads the frames of a well-formed stream (so the properties above
/// exercise decoding, not only early errors).
#[test]
fn framed_reader_reads_a_well_formed_stream() {
    let frames = [
        ClientFrame {
            id: 1,
            body: Request::Status,
        },
        ClientFrame {
            id: 2,
            body: Request::ShowVm { vm: "x".into() },
        },
    ];
    let mut stream = Vec::new();
    for frame in &frames {
        let body = codec::encode(frame).expect("encodes");
        stream.extend(u32::try_from(body.len()).expect("short").to_be_bytes());
        stream.extend(body);
    }
    assert_eq!(read_stream(&stream, false), 2);

    let hello = Hello::current("test").encode();
    let mut with_hello = u32::try_from(hello.len())
        .expect("short")
        .to_be_bytes()
        .to_vec();
    with_hello.extend(hello);
    with_hello.extend(&stream);
    assert_eq!(read_stream(&with_hello, true), 2);
}
