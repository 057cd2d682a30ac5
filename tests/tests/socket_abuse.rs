//! Bad input on the control socket gets a clear answer or a closed connection, and the daemon
//! keeps serving other clients: garbage bytes, an oversize frame, a wrong-major handshake, a
//! malformed request after a good handshake, and a client that never says hello.

use std::time::Duration;

use marble_proto::handshake::{Hello, ServerHello};
use marble_proto::{ClientFrame, ErrorKind, FramedConn, Reply, Request, Response, ServerFrame};
use marble_tests::harness::{TestDaemon, short_tempdir, test_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const T: Duration = Duration::from_secs(10);

async fn daemon() -> (tempfile::TempDir, TestDaemon) {
    let dir = short_tempdir();
    let sim = dir.path().join("sim");
    std::fs::create_dir_all(&sim).expect("sim dir");
    let daemon = TestDaemon::start(test_config(dir.path(), &sim));
    (dir, daemon)
}

/// A well-behaved client still gets answers.
async fn still_serving(daemon: &TestDaemon) {
    let mut client = tokio::time::timeout(T, daemon.client())
        .await
        .expect("connect in time");
    let resp = tokio::time::timeout(T, client.call(Request::Status, |_| {}))
        .await
        .expect("status in time")
        .expect("status ok");
    assert!(matches!(resp, Response::Status(_)));
}

/// Read until EOF (or an error); returns everything read.
async fn read_to_close(stream: &mut UnixStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(T, stream.read_to_end(&mut buf))
        .await
        .expect("closed in time");
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_get_a_rejection_and_a_closed_connection() {
    let (_dir, daemon) = daemon().await;
    let mut stream = UnixStream::connect(daemon.socket()).await.expect("connect");
    // A plausible length prefix followed by bytes that are not a MARBLE hello.
    stream.write_all(&[0, 0, 0, 12]).await.expect("write");
    stream.write_all(b"GET / HTTP/1").await.expect("write");
    let answer = read_to_close(&mut stream).await;
    assert!(
        answer.len() > 4,
        "expected a Rejected frame before close, got {answer:?}"
    );
    match ServerHello::decode(&answer[4..]).expect("a server hello") {
        ServerHello::Rejected { reason, .. } => {
            assert!(reason.contains("malformed handshake"), "{reason}");
            assert!(
                reason.contains("does not speak the MARBLE protocol"),
                "{reason}"
            );
        }
        other => panic!("garbage was welcomed: {other:?}"),
    }
    still_serving(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_closes_only_that_connection() {
    let (_dir, daemon) = daemon().await;
    // Before the handshake.
    let mut stream = UnixStream::connect(daemon.socket()).await.expect("connect");
    stream
        .write_all(&u32::MAX.to_be_bytes())
        .await
        .expect("write prefix");
    let answer = read_to_close(&mut stream).await;
    assert!(
        answer.is_empty(),
        "no reply is possible to an unframeable stream: {answer:?}"
    );

    // After a good handshake: a 2 MiB frame is refused, the connection closed.
    let stream = UnixStream::connect(daemon.socket()).await.expect("connect");
    let mut conn = FramedConn::new(stream);
    conn.client_handshake(&Hello::current("test"))
        .await
        .expect("handshake");
    let mut raw = conn.into_inner();
    raw.write_all(&(2u32 * 1024 * 1024).to_be_bytes())
        .await
        .expect("write prefix");
    let _ = raw.write_all(&[0u8; 4096]).await;
    let answer = read_to_close(&mut raw).await;
    assert!(
        answer.is_empty(),
        "oversize frame must close the connection: {answer:?}"
    );
    still_serving(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_major_is_rejected_saying_which_side_is_older() {
    let (_dir, daemon) = daemon().await;
    let stream = UnixStream::connect(daemon.socket()).await.expect("connect");
    let mut conn = FramedConn::new(stream);
    let hello = Hello {
        major: 99,
        minor: 0,
        client_version: "future".into(),
        features: vec![],
    };
    let err = conn.client_handshake(&hello).await.expect_err("rejected");
    let text = err.to_string();
    assert!(text.contains("protocol major mismatch"), "{text}");
    assert!(text.contains("marbled is older"), "{text}");
    still_serving(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_after_handshake_gets_invalid_request_and_the_connection_survives() {
    let (_dir, daemon) = daemon().await;
    let stream = UnixStream::connect(daemon.socket()).await.expect("connect");
    let mut conn = FramedConn::new(stream);
    conn.client_handshake(&Hello::current("test"))
        .await
        .expect("handshake");
    // A variant index far beyond the Request enum.
    conn.send_frame(vec![7, 0xfc, 0xff, 0xff, 0, 0])
        .await
        .expect("send");
    let frame: ServerFrame = conn.recv().await.expect("recv").expect("a reply");
    match frame.body {
        Reply::Err(err) => {
            assert_eq!(err.kind, ErrorKind::InvalidRequest);
            assert!(
                err.message.contains("malformed request frame"),
                "{}",
                err.message
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // Same connection, a valid request now.
    conn.send(&ClientFrame {
        id: 5,
        body: Request::ListVms,
    })
    .await
    .expect("send");
    let frame: ServerFrame = conn.recv().await.expect("recv").expect("a reply");
    assert_eq!(frame.id, 5);
    assert!(
        matches!(frame.body, Reply::Ok(Response::Vms(_))),
        "{:?}",
        frame.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_does_not_block_others() {
    let (_dir, daemon) = daemon().await;
    let _silent: Vec<UnixStream> = futures_connect(&daemon, 20).await;
    still_serving(&daemon).await;
}

async fn futures_connect(daemon: &TestDaemon, n: usize) -> Vec<UnixStream> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(UnixStream::connect(daemon.socket()).await.expect("connect"));
    }
    out
}
