//! Images over HTTPS, as against CERN's endpoint: the S3 server (s3s-fs) is reachable only
//! through a TLS front whose certificate a private CA signed (`LocalS3::start_tls`), and only
//! `[images] ca_file` makes that CA trusted.
//!
//! - The real daemon reads `ca_file` from its TOML config and pushes, lists, verifies, pulls
//!   and removes an image through `marblectl` over TLS.
//! - Without `ca_file` the endpoint is refused at the handshake, no request reaches the
//!   server, and the error names the option to set.
//! - `ca_file` is a bundle: a CA anywhere in it is trusted (a site's Root and Grid CAs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use marble_tests::data::noise;
use marble_tests::harness::{
    DaemonProcess, marblectl, short_tempdir, test_config, wait_until_blocking,
};
use marble_tests::prlsim::SimHost;
use marble_tests::s3::LocalS3;
use marble_tests::tls::TestCa;
use marbled::images::ImageStore;
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;
const VM: &str = "macphsft-test-ROOT-VM-macOS-15";
const IMAGE: &str = "2026-12-01-ROOT-VM-macOS-15";

#[track_caller]
fn ok(socket: &Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = marblectl(socket, args);
    assert_eq!(
        code, 0,
        "marblectl {args:?}: stdout={stdout} stderr={stderr}"
    );
    stdout
}

fn disk_sha(bundle: &Path) -> String {
    let disk = std::fs::read_dir(bundle.join("harddisk.hdd"))
        .expect("harddisk.hdd")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "hds"))
        .expect("an .hds in harddisk.hdd");
    let mut f = std::fs::File::open(disk).expect("open");
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).expect("read");
    hex::encode(h.finalize())
}

#[test]
fn daemon_pushes_pulls_verifies_and_removes_over_https_trusting_ca_file_from_its_config() {
    let Some(s3) = LocalS3::start_tls() else {
        return;
    };
    let https = s3.https.as_ref().expect("started with TLS");
    let dir = short_tempdir();
    let sim = SimHost::create(dir.path().join("sim")).expect("sim host");
    sim.add_vm(VM).expect("add vm");
    let src = sim.vm(VM).expect("vm");
    let disk = std::fs::read_dir(src.home.join("harddisk.hdd"))
        .expect("harddisk.hdd")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "hds"))
        .expect("an .hds");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&disk).expect("create disk");
        f.set_len(32 * MIB).expect("set_len");
        f.write_all_at(&noise(5, 3 * MIB as usize), MIB)
            .expect("write");
    }

    let mut config = test_config(dir.path(), sim.dir());
    let mut images = s3.config();
    // Literal paths: the simulated guest shell expands no globs.
    images.scrub.files = vec!["/Users/admin/.PAT".into()];
    images.bundles_dir = Some(sim.dir().join("pulled"));
    images.boot_timeout = Duration::from_secs(20);
    images.exec_timeout = Duration::from_secs(10);
    images.host_memory_reserve_mib = 256;
    config.images = images;
    let daemon = DaemonProcess::spawn(dir.path(), &config);
    let sock = daemon.socket.clone();
    // A push asked before the first inventory is refused as an unknown VM.
    let listed = wait_until_blocking(Duration::from_secs(30), || {
        marblectl(&sock, &["vm", "list", "--json"]).1.contains(VM)
    });
    assert!(listed, "the daemon never listed {VM}");
    // The daemon got the endpoint and the CA from its config file, like an operator's.
    let toml = std::fs::read_to_string(dir.path().join("marbled.toml")).expect("config");
    let ca = https.ca.ca_file();
    assert!(
        toml.contains(&format!("ca_file = \"{}\"", ca.display())),
        "{toml}"
    );
    assert!(toml.contains("endpoint = \"https://localhost:"), "{toml}");

    ok(&sock, &["image", "push", VM, "--name", IMAGE]);
    let ls = ok(&sock, &["--json", "image", "ls", "--team", "root"]);
    assert!(ls.contains(IMAGE), "{ls}");
    let verify = ok(&sock, &["image", "verify", IMAGE]);
    assert!(verify.contains("OK"), "{verify}");
    let copy = "macphsft-test-ROOT-VM-macOS-15-copy";
    ok(&sock, &["image", "pull", IMAGE, "--as", copy]);
    let pulled = sim.vm(copy).expect("pulled VM registered");
    assert_eq!(disk_sha(&src.home), disk_sha(&pulled.home));
    ok(&sock, &["image", "rm", IMAGE, "--yes"]);
    let ls = ok(&sock, &["--json", "image", "ls", "--team", "root"]);
    assert!(!ls.contains(IMAGE), "{ls}");

    // All of it crossed the TLS front: parts went up, chunks came down, nothing was refused.
    assert!(https.front.handshakes_completed() > 0);
    assert_eq!(https.front.handshakes_failed(), 0);
    assert!(https.wire.upload_parts() > 0, "{:?}", https.wire.requests());
    assert!(
        https.wire.requests().iter().any(|r| r.starts_with("GET ")),
        "{:?}",
        https.wire.requests()
    );
    assert!(
        https
            .wire
            .requests()
            .iter()
            .any(|r| r.starts_with("DELETE ")),
        "{:?}",
        https.wire.requests()
    );
}

#[tokio::test]
async fn https_endpoint_without_ca_file_is_refused_and_the_error_names_the_option() {
    let Some(s3) = LocalS3::start_tls() else {
        return;
    };
    let https = s3.https.as_ref().expect("started with TLS");
    let mut cfg = s3.config();
    cfg.ca_file = None;
    let store = ImageStore::new(cfg).await.expect("store");
    let err = store
        .ls(None)
        .await
        .expect_err("an unknown CA must be refused");
    let msg = err.to_string();
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert!(msg.contains("[images] ca_file"), "{msg}");
    assert!(https.front.handshakes_failed() > 0);
    assert!(
        https.wire.requests().is_empty(),
        "a request reached the server: {:?}",
        https.wire.requests()
    );
}

#[tokio::test]
async fn ca_file_is_a_bundle_and_a_ca_anywhere_in_it_is_trusted() {
    let Some(s3) = LocalS3::start_tls() else {
        return;
    };
    let https = s3.https.as_ref().expect("started with TLS");
    // Another site's CA first, the one that signed the server after it.
    let other = TestCa::new();
    let bundle = https.ca.dir().join("bundle.pem");
    let mut pem = std::fs::read(other.ca_file()).expect("other ca");
    pem.extend(std::fs::read(https.ca.ca_file()).expect("ca"));
    std::fs::write(&bundle, pem).expect("bundle");
    let mut cfg = s3.config();
    cfg.ca_file = Some(bundle);
    let store = ImageStore::new(cfg.clone()).await.expect("store");
    assert!(store.ls(None).await.expect("ls over https").is_empty());

    // Only the other CA: refused.
    cfg.ca_file = Some(other.ca_file());
    let store = ImageStore::new(cfg).await.expect("store");
    let err = store.ls(None).await.expect_err("wrong CA");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}
