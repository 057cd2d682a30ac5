//! Push then pull through a real s3s-fs, over http and over HTTPS: byte-identical files, holes
//! stay holes, modes and symlinks kept, ls/verify/rm, and the secret key never reaches the
//! logs (the round trip itself is `image_checks::roundtrip`).

use std::os::unix::fs::PermissionsExt;

use marble_tests::s3::{CountingProxy, LocalS3, SECRET_KEY};
use marbled::images::ImageStore;

mod image_checks;
use image_checks::roundtrip;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_roundtrip_keeps_bytes_and_holes_and_never_logs_secrets() {
    let Some(s3) = LocalS3::start() else { return };
    roundtrip(s3.config(), SECRET_KEY).await;
}

/// The round trip over HTTPS, as against CERN's endpoint: the server's certificate comes from
/// a private CA that only `ca_file` makes trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_roundtrip_over_https_trusting_the_configured_ca() {
    let Some(s3) = LocalS3::start_tls() else {
        return;
    };
    let cfg = s3.config();
    assert!(
        cfg.endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("https://"))
    );
    roundtrip(cfg, SECRET_KEY).await;
    let https = s3.https.as_ref().expect("started with TLS");
    assert!(
        https.front.handshakes_completed() > 0,
        "nothing went over TLS"
    );
    assert_eq!(https.front.handshakes_failed(), 0);
    assert_parts_signed_over_tls(&https.wire, None);
}

/// Same over HTTPS with `checksums = "when-supported"`, the SDK's own default, whose streamed
/// `aws-chunked` uploads strict servers treat differently over TLS and over http.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_roundtrip_over_https_with_sdk_checksums() {
    let Some(s3) = LocalS3::start_tls() else {
        return;
    };
    let mut cfg = s3.config();
    cfg.checksums = marbled::images::ChecksumMode::WhenSupported;
    roundtrip(cfg, SECRET_KEY).await;
    let https = s3.https.as_ref().expect("started with TLS");
    assert_parts_signed_over_tls(&https.wire, Some("x-amz-checksum-crc32"));
}

/// What the SDK put on the wire for each part, read behind the TLS front. MARBLE hands the SDK
/// every part as bytes in memory, so it signs each body (a hex SHA-256 in
/// `x-amz-content-sha256`) and sends it plain, with Content-MD5 (and a checksum header when
/// asked) — exactly as over http. The `aws-chunked` / `UNSIGNED-PAYLOAD` encodings the SDK
/// uses over TLS for streamed bodies never occur; if a change made part bodies streamed,
/// this fails and the Garage script (`scripts/s3-garage.sh`) is the check to run.
#[track_caller]
fn assert_parts_signed_over_tls(wire: &CountingProxy, checksum_header: Option<&str>) {
    let parts: Vec<_> = wire
        .seen()
        .into_iter()
        .filter(|r| r.is_upload_part())
        .collect();
    assert!(parts.len() >= 2, "{} parts went over TLS", parts.len());
    for p in &parts {
        let signed = p.header("x-amz-content-sha256").unwrap_or_default();
        assert!(
            signed.len() == 64 && signed.bytes().all(|b| b.is_ascii_hexdigit()),
            "part body not signed: {p:?}"
        );
        assert_eq!(p.header("content-encoding"), None, "{p:?}");
        assert!(p.header("content-md5").is_some(), "{p:?}");
        if let Some(h) = checksum_header {
            assert!(p.header(h).is_some(), "no {h}: {p:?}");
        }
    }
}

#[tokio::test]
async fn group_readable_secret_file_is_refused() {
    let Some(s3) = LocalS3::start() else { return };
    std::fs::set_permissions(s3.secret_file(), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");
    let err = ImageStore::new(s3.config()).await.expect_err("must refuse");
    assert!(err.to_string().contains("chmod 600"), "{err}");
}
