//! Limits and malformed input: every bad frame or hello gives a typed error, and an oversize
//! length prefix is refused before anything near its declared size is allocated.
//!
//! The "without allocating" claim is checked two ways: the error arrives while the peer has
//! written only the 4-byte prefix and keeps its end open (so the reader cannot have waited for
//! a body), and a counting global allocator records the largest single allocation made on the
//! test's thread while the frame is read.
// A global allocator is the one honest way to observe allocations; it only forwards to
// `System` and records sizes.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use marble_proto::handshake::{MAX_FEATURES, MAX_HANDSHAKE_STR};
use marble_proto::{
    ClientFrame, CodecError, ConnError, FramedConn, HandshakeError, Hello, MAX_FRAME_LEN, Reply,
    Request, Response, ServerFrame, ServerHello, codec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

// ---------------------------------------------------------------------------------------------
// Allocation tracking, per thread so that tests running in parallel do not pollute each other.
// `#[tokio::test]` runs on a current-thread runtime, so all of a test's work is on its thread.

struct Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: thread-locals may already be gone while a thread is being torn down.
    let _ = TRACKING.try_with(|tracking| {
        if tracking.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is exactly `System`'s; `record` neither allocates nor panics (const
// thread-locals without destructors, `try_with`).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: same layout as our caller gave us, who upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: `ptr`/`layout` came from `System` through this allocator; the caller upholds
        // `realloc`'s contract for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Run `f` and return its output with the largest single allocation it made on this thread.
async fn largest_allocation<F: Future>(f: F) -> (F::Output, usize) {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let out = f.await;
    TRACKING.with(|t| t.set(false));
    (out, LARGEST.with(Cell::get))
}

const MIB: usize = 1024 * 1024;
const WAIT: Duration = Duration::from_secs(10);

fn pair() -> (FramedConn<DuplexStream>, DuplexStream) {
    let (ours, peer) = tokio::io::duplex(64 * 1024);
    (FramedConn::new(ours), peer)
}

#[track_caller]
fn assert_frame_too_large(result: Result<Option<bytes::Bytes>, ConnError>) {
    match result {
        Err(ConnError::Io(err)) => {
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
            assert!(err.to_string().contains("frame size too big"), "{err}");
        }
        other => panic!("expected an oversize-frame error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Frame length limits.

/// The allocation probe sees a large allocation when one happens (so the next test can fail).
#[tokio::test]
async fn allocation_probe_detects_large_allocations() {
    let (len, largest) = largest_allocation(async { vec![0u8; 2 * MIB].len() }).await;
    assert_eq!(len, 2 * MIB);
    assert!(
        largest >= 2 * MIB,
        "probe missed a 2 MiB allocation: {largest}"
    );
}

#[tokio::test]
async fn oversize_prefix_is_rejected_after_the_prefix_without_allocating() {
    for declared in [u32::MAX, u32::try_from(MAX_FRAME_LEN + 1).expect("fits")] {
        let (mut conn, mut peer) = pair();
        // Only the prefix; the peer stays open, so the reader cannot be waiting for EOF.
        peer.write_all(&declared.to_be_bytes())
            .await
            .expect("write prefix");
        let (result, largest) =
            largest_allocation(tokio::time::timeout(WAIT, conn.recv_frame())).await;
        let result = result.expect("the error arrives without more bytes from the peer");
        assert_frame_too_large(result);
        assert!(
            largest < MIB,
            "declared {declared}: reading allocated {largest} bytes at once"
        );
        drop(peer);
    }
}

#[tokio::test]
async fn frame_of_exactly_max_len_is_accepted() {
    let (mut conn, mut peer) = pair();
    let writer = tokio::spawn(async move {
        let len = u32::try_from(MAX_FRAME_LEN).expect("fits");
        peer.write_all(&len.to_be_bytes()).await.expect("prefix");
        peer.write_all(&vec![0xA5; MAX_FRAME_LEN])
            .await
            .expect("body");
        peer
    });
    let frame = tokio::time::timeout(WAIT, conn.recv_frame())
        .await
        .expect("in time")
        .expect("accepted")
        .expect("a frame");
    assert_eq!(frame.len(), MAX_FRAME_LEN);
    assert!(frame.iter().all(|&b| b == 0xA5));
    drop(writer.await.expect("writer"));
}

/// A typed reply whose encoding is exactly `MAX_FRAME_LEN` crosses a `FramedConn` intact.
#[tokio::test]
async fn typed_frame_of_exactly_max_len_round_trips() {
    let frame_with = |n: usize| ServerFrame {
        id: 7,
        body: Reply::Ok(Response::Done {
            message: "x".repeat(n),
        }),
    };
    let encoded_len = |n: usize| {
        bincode_len(&frame_with(n)).expect("measuring never hits the encode limit below 2 MiB")
    };
    // The string's length prefix grows with n, so search near the top.
    let n = (MAX_FRAME_LEN - 16..MAX_FRAME_LEN)
        .find(|&n| encoded_len(n) == MAX_FRAME_LEN)
        .expect("some message length encodes to exactly MAX_FRAME_LEN");
    let value = frame_with(n);
    assert_eq!(codec::encode(&value).expect("encodes").len(), MAX_FRAME_LEN);
    assert!(matches!(
        codec::encode(&frame_with(n + 1)),
        Err(CodecError::TooLarge { len, max }) if len == MAX_FRAME_LEN + 1 && max == MAX_FRAME_LEN
    ));

    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let mut sender = FramedConn::new(ours);
    let mut receiver = FramedConn::new(theirs);
    let expected = value.clone();
    let send = tokio::spawn(async move { sender.send(&value).await });
    let got: ServerFrame = tokio::time::timeout(WAIT, receiver.recv())
        .await
        .expect("in time")
        .expect("decodes")
        .expect("a frame");
    assert_eq!(got, expected);
    send.await.expect("sender task").expect("sent");
}

/// The worst case for bincode's limit accounting: a frame of one-byte varint lengths (each
/// charged 8 bytes) that fills `MAX_FRAME_LEN` must still decode, since `encode` accepted it.
#[test]
fn max_len_frame_of_tiny_fields_decodes() {
    let frame_with = |n: usize| ServerFrame {
        id: 1,
        body: Reply::Err(marble_proto::WireError {
            kind: marble_proto::ErrorKind::Internal,
            message: String::new(),
            chain: vec![String::new(); n],
        }),
    };
    // id, Reply tag, kind, empty message: 1 byte each; the chain length: 5 bytes; 1 per item.
    let value = frame_with(MAX_FRAME_LEN - 9);
    let bytes = codec::encode(&value).expect("encodes");
    assert_eq!(bytes.len(), MAX_FRAME_LEN);
    assert_eq!(
        codec::decode::<ServerFrame>(&bytes).expect("decodes"),
        value
    );
}

/// Length of an encoding without `codec::encode`'s frame check (it would refuse > MAX).
fn bincode_len<T: serde::Serialize>(value: &T) -> Option<usize> {
    match codec::encode(value) {
        Ok(bytes) => Some(bytes.len()),
        Err(CodecError::TooLarge { len, .. }) => Some(len),
        Err(_) => None,
    }
}

#[tokio::test]
async fn oversize_value_is_refused_and_nothing_is_sent() {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let mut sender = FramedConn::new(ours);
    let mut receiver = FramedConn::new(theirs);
    let huge = ServerFrame {
        id: 1,
        body: Reply::Ok(Response::Done {
            message: "x".repeat(MAX_FRAME_LEN),
        }),
    };
    let err = sender.send(&huge).await.expect_err("over the limit");
    assert!(
        matches!(err, ConnError::Codec(CodecError::TooLarge { max, .. }) if max == MAX_FRAME_LEN),
        "{err:?}"
    );
    // The stream is still in sync: the next frame the peer sees is the next valid one.
    let small = ServerFrame {
        id: 2,
        body: Reply::EndOfStream,
    };
    sender.send(&small).await.expect("small frame");
    let got: ServerFrame = tokio::time::timeout(WAIT, receiver.recv())
        .await
        .expect("in time")
        .expect("decodes")
        .expect("a frame");
    assert_eq!(got, small);
}

#[test]
fn decode_refuses_more_than_a_frame() {
    let bytes = vec![0u8; MAX_FRAME_LEN + 1];
    assert!(matches!(
        codec::decode::<ClientFrame>(&bytes),
        Err(CodecError::TooLarge { len, max }) if len == MAX_FRAME_LEN + 1 && max == MAX_FRAME_LEN
    ));
}

#[tokio::test]
async fn truncated_frame_is_an_error_not_a_clean_close() {
    let (mut conn, mut peer) = pair();
    peer.write_all(&100u32.to_be_bytes()).await.expect("prefix");
    peer.write_all(&[0u8; 10]).await.expect("partial body");
    drop(peer);
    let result = tokio::time::timeout(WAIT, conn.recv_frame())
        .await
        .expect("in time");
    match result {
        Err(ConnError::Io(err)) => assert!(err.to_string().contains("bytes remaining"), "{err}"),
        other => panic!("expected a truncation error, got {other:?}"),
    }
}

#[tokio::test]
async fn truncated_prefix_is_an_error_and_clean_close_is_none() {
    let (mut conn, mut peer) = pair();
    peer.write_all(&[0, 0]).await.expect("half a prefix");
    drop(peer);
    let result = tokio::time::timeout(WAIT, conn.recv_frame())
        .await
        .expect("in time");
    assert!(matches!(result, Err(ConnError::Io(_))), "{result:?}");

    let (mut conn, peer) = pair();
    drop(peer);
    let result = tokio::time::timeout(WAIT, conn.recv_frame())
        .await
        .expect("in time");
    assert!(matches!(result, Ok(None)), "{result:?}");
}

// ---------------------------------------------------------------------------------------------
// Malformed payloads.

#[track_caller]
fn assert_decode_error<T: serde::de::DeserializeOwned + std::fmt::Debug>(bytes: &[u8]) {
    match codec::decode::<T>(bytes) {
        Err(CodecError::Decode(_)) => {}
        other => panic!(
            "{}: expected CodecError::Decode, got {other:?}",
            hex::encode(bytes)
        ),
    }
}

#[test]
fn unknown_variant_index_is_a_decode_error() {
    // ClientFrame = varint id | varint variant | fields.
    let known = codec::encode(&ClientFrame {
        id: 1,
        body: Request::Status,
    })
    .expect("encodes");
    assert_eq!(known, [1, 0]);
    // 25 is the first index past `MigrateCheck` (the last request, 1.6); 200 and 250 are far
    // out; 251 starts a u16 varint.
    for variant in [25u8, 200, 250] {
        assert_decode_error::<ClientFrame>(&[1, variant]);
    }
    assert_decode_error::<ClientFrame>(&[1, 251, 0xFF, 0xFF]);
    // Reply has four variants; ErrorKind twelve (the last, `NoSpace`, since 1.6).
    assert_decode_error::<ServerFrame>(&[1, 4]);
    assert_decode_error::<ServerFrame>(&[1, 1, 12, 0, 0]);
}

#[test]
fn invalid_field_bytes_are_decode_errors() {
    // StopVm (4) { vm: "a", force: 2 }: a bool must be 0 or 1.
    assert_decode_error::<ClientFrame>(&[1, 4, 1, b'a', 2]);
    // ShowVm (2) { vm: invalid UTF-8 }.
    assert_decode_error::<ClientFrame>(&[1, 2, 2, 0xC3, 0x28]);
    // ShowVm with a string length far beyond the input and beyond the frame limit.
    assert_decode_error::<ClientFrame>(&[1, 2, 100, b'a']);
    assert_decode_error::<ClientFrame>(&[1, 2, 253, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
    // An Option tag must be 0 or 1: Ok(0) SlotGranted(4) { vm "", false, preempted: tag 2 }.
    assert_decode_error::<ServerFrame>(&[1, 0, 4, 0, 0, 2]);
    // Empty input, and an id alone.
    assert_decode_error::<ClientFrame>(&[]);
    assert_decode_error::<ClientFrame>(&[1]);
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = codec::encode(&ClientFrame {
        id: 9,
        body: Request::ListVms,
    })
    .expect("encodes");
    bytes.extend([0, 0, 0]);
    assert!(matches!(
        codec::decode::<ClientFrame>(&bytes),
        Err(CodecError::TrailingBytes { trailing: 3 })
    ));
}

// ---------------------------------------------------------------------------------------------
// Malformed handshakes.

#[test]
fn garbage_magic_is_bad_magic() {
    for garbage in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"XRBL\x00\x01\x00\x00",
        b"mrbl",
        b"\0",
    ] {
        match Hello::decode(garbage) {
            Err(HandshakeError::BadMagic { found }) => {
                assert_eq!(found, garbage[..garbage.len().min(4)]);
            }
            other => panic!("{garbage:?}: expected BadMagic, got {other:?}"),
        }
        assert!(matches!(
            ServerHello::decode(garbage),
            Err(HandshakeError::BadMagic { .. })
        ));
    }
}

#[test]
fn every_truncated_handshake_is_truncated() {
    let hello = Hello {
        major: 1,
        minor: 0,
        client_version: "0.1.0".into(),
        features: vec!["watch".into()],
    }
    .encode();
    let answers = [
        ServerHello::Welcome(marble_proto::Welcome {
            major: 1,
            minor: 0,
            daemon_version: "0.1.0".into(),
            git_sha: "abc".into(),
            features: vec!["watch".into()],
        })
        .encode(),
        ServerHello::Rejected {
            major: 1,
            minor: 0,
            reason: "no".into(),
        }
        .encode(),
    ];
    for cut in 0..hello.len() {
        let result = Hello::decode(&hello[..cut]);
        assert!(
            matches!(result, Err(HandshakeError::Truncated { .. })),
            "hello cut at {cut}: {result:?}"
        );
    }
    for answer in &answers {
        for cut in 0..answer.len() {
            let result = ServerHello::decode(&answer[..cut]);
            assert!(
                matches!(result, Err(HandshakeError::Truncated { .. })),
                "server hello cut at {cut}: {result:?}"
            );
        }
    }
}

/// Build a hello by hand: `MRBL`, 1.0, then the given raw tail.
fn raw_hello(tail: &[u8]) -> Vec<u8> {
    let mut out = b"MRBL\x00\x01\x00\x00".to_vec();
    out.extend_from_slice(tail);
    out
}

fn str_field(len: u16, fill: u8) -> Vec<u8> {
    let mut out = len.to_be_bytes().to_vec();
    out.extend(std::iter::repeat_n(fill, usize::from(len)));
    out
}

#[test]
fn over_long_handshake_fields_are_rejected() {
    let max = u16::try_from(MAX_HANDSHAKE_STR).expect("fits");
    // At the limit: accepted.
    let mut ok = str_field(max, b'v');
    ok.extend(0u16.to_be_bytes());
    assert!(Hello::decode(&raw_hello(&ok)).is_ok());
    // One byte over, and the largest declarable length: refused before reading the bytes.
    for len in [max + 1, u16::MAX] {
        let mut tail = str_field(len, b'v');
        tail.extend(0u16.to_be_bytes());
        assert_eq!(
            Hello::decode(&raw_hello(&tail)),
            Err(HandshakeError::InvalidField {
                field: "client_version"
            })
        );
    }
    // Too many features.
    let mut tail = str_field(1, b'v');
    tail.extend((u16::try_from(MAX_FEATURES).expect("fits") + 1).to_be_bytes());
    assert_eq!(
        Hello::decode(&raw_hello(&tail)),
        Err(HandshakeError::InvalidField { field: "features" })
    );
    // Not UTF-8.
    let tail = [0, 2, 0xC3, 0x28, 0, 0];
    assert_eq!(
        Hello::decode(&raw_hello(&tail)),
        Err(HandshakeError::InvalidField {
            field: "client_version"
        })
    );
}

#[test]
fn encoding_clamps_handshake_fields_to_the_limits() {
    // 'é' is two bytes: 200 of them cross the limit in the middle of a char.
    let hello = Hello {
        major: 1,
        minor: 0,
        client_version: "é".repeat(200),
        features: (0..MAX_FEATURES + 5).map(|i| format!("f{i}")).collect(),
    };
    let decoded = Hello::decode(&hello.encode()).expect("an encoded hello always decodes");
    assert_eq!(decoded.client_version, "é".repeat(MAX_HANDSHAKE_STR / 2));
    assert_eq!(decoded.features.len(), MAX_FEATURES);
    assert_eq!(decoded.features[..], hello.features[..MAX_FEATURES]);
}

#[test]
fn handshake_trailing_bytes_and_unknown_tag() {
    let mut hello = Hello::current("x").encode();
    hello.push(0);
    assert_eq!(Hello::decode(&hello), Err(HandshakeError::TrailingBytes(1)));
    assert_eq!(
        ServerHello::decode(b"MRBL\x07"),
        Err(HandshakeError::UnknownTag(7))
    );
}

/// The daemon reads the hello from a frame: an oversize prefix in its place is refused the
/// same way (no allocation, error at once) instead of waiting for a megabyte-long "hello".
#[tokio::test]
async fn oversize_hello_frame_is_refused_at_once() {
    let (mut conn, mut peer) = pair();
    peer.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
    let (result, largest) = largest_allocation(tokio::time::timeout(
        WAIT,
        conn.server_handshake("0.1.0", "test"),
    ))
    .await;
    let err = result.expect("in time").expect_err("not a hello");
    assert!(matches!(err, ConnError::Io(_)), "{err:?}");
    assert!(largest < MIB, "allocated {largest} bytes at once");
    // Nothing was answered: the peer is not speaking our framing at all.
    drop(conn);
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest).await.expect("read");
    assert!(rest.is_empty(), "{rest:?}");
}
