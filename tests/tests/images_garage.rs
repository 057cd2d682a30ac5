//! The image round trip against Garage over HTTPS — run by `scripts/s3-garage.sh`, ignored
//! otherwise. Garage is a strict S3 implementation (like Ceph RGW it rejects encodings that
//! lenient servers such as s3s-fs accept, checks Content-MD5 and part ETags, and enforces its
//! configured region). The script starts a single-node Garage and passes its plain-http S3
//! address, region, bucket and a throw-away key in `MARBLE_GARAGE_*`; this test puts a TLS
//! front with a private CA before it, so the store talks `https://` and trusts the CA through
//! `ca_file`, as against CERN's endpoint. Both checksum modes run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use marble_tests::tls::{TestCa, TlsFront};
use marbled::images::{ChecksumMode, CredentialSource, ImageStoreConfig};

mod image_checks;
use image_checks::{roundtrip, seed_zip_pulls_with_its_structure};

fn var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run this test through scripts/s3-garage.sh"))
}

fn with_checksums(base: &ImageStoreConfig, checksums: ChecksumMode) -> ImageStoreConfig {
    ImageStoreConfig {
        checksums,
        ..base.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a running Garage: scripts/s3-garage.sh"]
async fn garage_over_https_push_pull_verify_rm_and_legacy_zip() {
    let upstream: SocketAddr = var("MARBLE_GARAGE_S3")
        .parse()
        .expect("MARBLE_GARAGE_S3 addr");
    let secret = var("MARBLE_GARAGE_SECRET");
    let ca = TestCa::new();
    let front = TlsFront::start(upstream, &ca);
    let secret_file = ca.dir().join("s3.secret");
    std::fs::write(
        &secret_file,
        format!(
            "access_key = {}\nsecret_key = {secret}\n",
            var("MARBLE_GARAGE_KEY_ID")
        ),
    )
    .expect("secret file");
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let state = tempfile::tempdir().expect("tmp");
    let base = ImageStoreConfig {
        endpoint: Some(front.endpoint.clone()),
        ca_file: Some(ca.ca_file()),
        region: var("MARBLE_GARAGE_REGION"),
        bucket: var("MARBLE_GARAGE_BUCKET"),
        credentials: vec![CredentialSource::SecretFile],
        secret_file: Some(secret_file.clone()),
        part_size_mib: 5,
        chunk_size_mib: 1,
        concurrency: 3,
        state_dir: Some(state.path().to_path_buf()),
        ..ImageStoreConfig::default()
    };
    // Round trips first: each starts and ends with an empty bucket; the zips stay.
    let modes = [ChecksumMode::WhenRequired, ChecksumMode::WhenSupported];
    for mode in modes {
        eprintln!("garage over https, checksums {mode:?}: round trip");
        roundtrip(with_checksums(&base, mode), &secret).await;
    }
    for mode in modes {
        eprintln!("garage over https, checksums {mode:?}: legacy zip");
        seed_zip_pulls_with_its_structure(with_checksums(&base, mode)).await;
    }
    assert!(front.handshakes_completed() > 0, "nothing went over TLS");
    assert_eq!(front.handshakes_failed(), 0);
}
