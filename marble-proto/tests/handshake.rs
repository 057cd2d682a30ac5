//! The handshake matrix (same, older and newer client minor; older and newer major) as a pure
//! function, then end to end over an in-memory stream with both sides of `FramedConn`.

use std::time::Duration;

use marble_proto::handshake::negotiate;
use marble_proto::{
    ClientFrame, ConnError, FramedConn, HandshakeError, Hello, PROTO_MAJOR, PROTO_MINOR, Reply,
    Request, Response, ServerFrame, ServerHello, Welcome,
};
use tokio::io::DuplexStream;

const WAIT: Duration = Duration::from_secs(10);

fn hello(major: u16, minor: u16) -> Hello {
    Hello {
        major,
        minor,
        client_version: "9.9.9".into(),
        features: vec!["watch".into()],
    }
}

#[track_caller]
fn assert_welcome(answer: &ServerHello) -> &Welcome {
    match answer {
        ServerHello::Welcome(welcome) => {
            assert_eq!((welcome.major, welcome.minor), (PROTO_MAJOR, PROTO_MINOR));
            assert_eq!(welcome.daemon_version, "1.2.3");
            assert_eq!(welcome.git_sha, "deadbeef");
            welcome
        }
        ServerHello::Rejected { reason, .. } => panic!("expected Welcome, got Rejected: {reason}"),
    }
}

#[track_caller]
fn assert_rejected(answer: &ServerHello) -> &str {
    match answer {
        ServerHello::Rejected {
            major,
            minor,
            reason,
        } => {
            // The daemon's own version travels back so the client can explain the mismatch.
            assert_eq!((*major, *minor), (PROTO_MAJOR, PROTO_MINOR));
            reason
        }
        ServerHello::Welcome(w) => panic!("expected Rejected, got Welcome {w:?}"),
    }
}

#[test]
fn same_version_is_welcome() {
    assert_welcome(&negotiate(
        &hello(PROTO_MAJOR, PROTO_MINOR),
        "1.2.3",
        "deadbeef",
    ));
}

/// An older client only sends requests the daemon knows. At 1.0 "older" coincides with 0.
#[test]
fn older_client_minor_is_welcome() {
    // Every minor up to this build's (a range, so it stays meaningful after a minor bump).
    for minor in (0..=PROTO_MINOR).rev() {
        assert_welcome(&negotiate(&hello(PROTO_MAJOR, minor), "1.2.3", "deadbeef"));
    }
}

/// A newer client is welcome too; the welcome carries the daemon's minor so the client can
/// refuse requests the daemon does not know.
#[test]
fn newer_client_minor_is_welcome_with_the_daemon_minor() {
    for minor in [PROTO_MINOR + 1, PROTO_MINOR + 7, u16::MAX] {
        let answer = negotiate(&hello(PROTO_MAJOR, minor), "1.2.3", "deadbeef");
        let welcome = assert_welcome(&answer);
        // The daemon does not echo the client's minor: it states its own, lower one, and the
        // client (marblectl's `Client::send`) refuses requests with `since_minor` above it.
        assert!(welcome.minor < minor);
    }
}

#[test]
fn older_client_major_is_rejected_naming_the_client() {
    if PROTO_MAJOR == 0 {
        return;
    }
    let answer = negotiate(&hello(PROTO_MAJOR - 1, 5), "1.2.3", "deadbeef");
    let reason = assert_rejected(&answer);
    assert!(reason.contains("marblectl is older"), "{reason}");
    assert!(
        reason.contains(&format!("marblectl speaks {}.5", PROTO_MAJOR - 1)),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("marbled speaks {PROTO_MAJOR}.{PROTO_MINOR}")),
        "{reason}"
    );
}

#[test]
fn newer_client_major_is_rejected_naming_the_daemon() {
    for major in [PROTO_MAJOR + 1, u16::MAX] {
        let answer = negotiate(&hello(major, 0), "1.2.3", "deadbeef");
        let reason = assert_rejected(&answer);
        assert!(reason.contains("marbled is older"), "{reason}");
        assert!(
            reason.contains(&format!("marblectl speaks {major}.0")),
            "{reason}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// End to end over `tokio::io::duplex`.

fn pair() -> (FramedConn<DuplexStream>, FramedConn<DuplexStream>) {
    let (client, daemon) = tokio::io::duplex(64 * 1024);
    (FramedConn::new(client), FramedConn::new(daemon))
}

async fn in_time<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .expect("finishes in time")
}

#[tokio::test]
async fn handshake_then_request_and_reply() {
    let (mut client, mut daemon) = pair();
    let hello = Hello::current("0.1.0-test");
    let (welcome, accepted) = in_time(async {
        tokio::join!(
            client.client_handshake(&hello),
            daemon.server_handshake("1.2.3", "deadbeef")
        )
    })
    .await;
    let welcome = welcome.expect("client is welcomed");
    assert_eq!((welcome.major, welcome.minor), (PROTO_MAJOR, PROTO_MINOR));
    assert_eq!(welcome.daemon_version, "1.2.3");
    assert_eq!(accepted.expect("daemon accepts"), hello);

    // After the handshake the connection carries typed frames both ways.
    let request = ClientFrame {
        id: 42,
        body: Request::ShowVm {
            vm: "spi-mac-01".into(),
        },
    };
    client.send(&request).await.expect("send request");
    let got: ClientFrame = in_time(daemon.recv())
        .await
        .expect("decodes")
        .expect("frame");
    assert_eq!(got, request);
    let reply = ServerFrame {
        id: 42,
        body: Reply::Ok(Response::Done {
            message: "ok".into(),
        }),
    };
    daemon.send(&reply).await.expect("send reply");
    let got: ServerFrame = in_time(client.recv())
        .await
        .expect("decodes")
        .expect("frame");
    assert_eq!(got, reply);
}

#[tokio::test]
async fn major_mismatch_end_to_end_is_rejected_on_both_sides() {
    let (mut client, mut daemon) = pair();
    let newer = hello(PROTO_MAJOR + 1, 0);
    let (client_side, daemon_side) = in_time(async {
        tokio::join!(
            client.client_handshake(&newer),
            daemon.server_handshake("1.2.3", "deadbeef")
        )
    })
    .await;
    match client_side {
        Err(ConnError::Rejected {
            major,
            minor,
            reason,
        }) => {
            assert_eq!((major, minor), (PROTO_MAJOR, PROTO_MINOR));
            assert!(reason.contains("marbled is older"), "{reason}");
        }
        other => panic!("client expected Rejected, got {other:?}"),
    }
    assert!(
        matches!(daemon_side, Err(ConnError::Rejected { .. })),
        "{daemon_side:?}"
    );
}

#[tokio::test]
async fn newer_minor_end_to_end_is_welcome() {
    let (mut client, mut daemon) = pair();
    let newer = hello(PROTO_MAJOR, PROTO_MINOR + 1);
    let (client_side, daemon_side) = in_time(async {
        tokio::join!(
            client.client_handshake(&newer),
            daemon.server_handshake("1.2.3", "deadbeef")
        )
    })
    .await;
    assert_eq!(client_side.expect("welcome").minor, PROTO_MINOR);
    assert_eq!(daemon_side.expect("accepted").minor, PROTO_MINOR + 1);
}

/// The daemon answers a malformed hello with `Rejected` *before* returning its error, so the
/// peer learns why it was dropped.
#[tokio::test]
async fn malformed_hello_gets_rejected_before_the_daemon_errors() {
    let (mut client, mut daemon) = pair();
    client
        .send_frame(b"XRBL\x00\x01\x00\x00".to_vec())
        .await
        .expect("send garbage hello");
    // The daemon finishes first; only then does the client look at what it was sent.
    let err = in_time(daemon.server_handshake("1.2.3", "deadbeef"))
        .await
        .expect_err("garbage is refused");
    assert!(
        matches!(
            err,
            ConnError::Handshake(HandshakeError::BadMagic { ref found }) if found == b"XRBL"
        ),
        "{err:?}"
    );
    drop(daemon);
    let frame = in_time(client.recv_frame())
        .await
        .expect("read")
        .expect("a Rejected frame was already written");
    let reason = match ServerHello::decode(&frame).expect("a valid server hello") {
        ServerHello::Rejected {
            major,
            minor,
            reason,
        } => {
            assert_eq!((major, minor), (PROTO_MAJOR, PROTO_MINOR));
            reason
        }
        other => panic!("expected Rejected, got {other:?}"),
    };
    assert!(reason.contains("malformed handshake"), "{reason}");
    assert!(reason.contains("bad magic"), "{reason}");
    // Then the daemon is gone.
    assert!(matches!(in_time(client.recv_frame()).await, Ok(None)));
}

#[tokio::test]
async fn truncated_hello_gets_rejected_too() {
    let (mut client, mut daemon) = pair();
    client
        .send_frame(b"MRBL\x00\x01".to_vec())
        .await
        .expect("send short hello");
    let err = in_time(daemon.server_handshake("1.2.3", "deadbeef"))
        .await
        .expect_err("short hello is refused");
    assert!(
        matches!(
            err,
            ConnError::Handshake(HandshakeError::Truncated { field: "minor", .. })
        ),
        "{err:?}"
    );
    let frame = in_time(client.recv_frame())
        .await
        .expect("read")
        .expect("frame");
    assert!(matches!(
        ServerHello::decode(&frame),
        Ok(ServerHello::Rejected { .. })
    ));
}

#[tokio::test]
async fn daemon_closing_without_an_answer_is_closed() {
    let (mut client, daemon) = pair();
    drop(daemon);
    let result = in_time(client.client_handshake(&Hello::current("x"))).await;
    // The write may fail first (peer gone) or the read sees EOF: never a welcome.
    assert!(
        matches!(result, Err(ConnError::Closed | ConnError::Io(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn garbage_answer_is_a_handshake_error_for_the_client() {
    let (mut client, mut daemon) = pair();
    let hello = Hello::current("x");
    let (client_side, _) = in_time(async {
        tokio::join!(client.client_handshake(&hello), async {
            let _ = daemon.recv_frame().await;
            daemon
                .send_frame(b"HTTP/1.1 400".to_vec())
                .await
                .expect("send garbage");
        })
    })
    .await;
    assert!(
        matches!(
            client_side,
            Err(ConnError::Handshake(HandshakeError::BadMagic { .. }))
        ),
        "{client_side:?}"
    );
}
