//! Fuzz the whole decode path a peer can reach: the bincode codec for both envelopes, both
//! hand-encoded handshake structs, and a `FramedConn` reading a byte stream (length prefixes,
//! frame limit, decoding) on the client side and on the daemon side (handshake first).
//!
//! The property is only "returns Ok or Err, never panics, hangs or over-allocates"; plus, a
//! value that decodes must survive a re-encode. The same checks run on every `cargo test` as
//! proptests (`marble-proto/tests/proptests.rs`); this target searches far longer.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use marble_proto::{ClientFrame, FramedConn, Hello, ServerFrame, ServerHello, codec};
use tokio::io::AsyncWriteExt;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("build a current-thread runtime")
    })
}

fn check_bincode<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = codec::decode::<T>(data) {
        let again = codec::encode(&value).expect("a decoded value re-encodes");
        assert_eq!(
            codec::decode::<T>(&again).expect("and decodes again"),
            value
        );
    }
}

/// Feed `data` as the peer's whole byte stream, then read until the end or the first error.
async fn read_stream(data: &[u8], daemon_side: bool) {
    // A buffer larger than the input: the write completes without a concurrent reader.
    let (mut peer, ours) = tokio::io::duplex(data.len() + 64 * 1024);
    peer.write_all(data).await.expect("fits in the buffer");
    peer.shutdown().await.expect("close the write side");
    let mut conn = FramedConn::new(ours);
    if daemon_side && conn.server_handshake("0.0.0", "fuzz").await.is_err() {
        return;
    }
    while let Ok(Some(_)) = conn.recv::<ClientFrame>().await {}
    // `peer` stays alive until here so the daemon's answer has somewhere to go.
    drop(peer);
}

fuzz_target!(|data: &[u8]| {
    check_bincode::<ClientFrame>(data);
    check_bincode::<ServerFrame>(data);
    if let Ok(hello) = Hello::decode(data) {
        assert_eq!(Hello::decode(&hello.encode()), Ok(hello));
    }
    if let Ok(answer) = ServerHello::decode(data) {
        assert_eq!(ServerHello::decode(&answer.encode()), Ok(answer));
    }
    runtime().block_on(async {
        read_stream(data, false).await;
        read_stream(data, true).await;
    });
});
