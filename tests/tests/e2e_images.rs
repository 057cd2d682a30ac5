//! `marblectl image …` end to end: the real daemon binary on a simulated Parallels host
//! (prlsim) and a real S3 server on loopback (s3s-fs, `LocalS3`), driven by the real CLI.
//!
//! One scenario, because each step needs the previous one's image: push a stopped VM (its
//! clone is scrubbed: a planted token file never reaches the bucket), pull it back as another
//! VM (byte-identical disk, holes preserved, new MAC, registered), list / verify / transfers,
//! then a detached push whose stored object is corrupted: verify and pull fail with exit 65,
//! nothing is registered and no partial bundle is left. The daemon logs at TRACE throughout
//! (the AWS SDK included) and its log must never contain the S3 secret key. Along the way,
//! `marblectl metrics` must count exactly the object bytes each transfer moved (compared with
//! the objects' sizes on the S3 server's disk) and every transfer's outcome.
//!
//! A second test checks the counter behind those metrics on the image store itself, where a
//! push can be interrupted at a known point: it grows while the push runs, and a resumed push
//! adds exactly the bytes it sends again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use marble_tests::data::noise;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use marble_tests::harness::{
    DaemonProcess, marblectl, short_tempdir, test_config, wait_until_blocking,
};
use marble_tests::prlsim::SimHost;
use marble_tests::s3::{LocalS3, SECRET_KEY};
use marbled::images::{ImageName, ImageStore, Phase, Progress, WireBytes};
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;
const VM: &str = "macphsft-test-ROOT-VM-macOS-14";
const IMAGE: &str = "2026-11-28-ROOT-VM-macOS-14";
const IMAGE2: &str = "2026-11-29-ROOT-VM-macOS-14";
const TOKEN: &[u8] = b"ghp_plantedTokenThatMustNeverLeaveTheHost0123";

fn sha(path: &Path) -> String {
    let mut f = std::fs::File::open(path).expect("open");
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).expect("read");
    hex::encode(h.finalize())
}

/// The VM's disk: 96 MiB apparent with 3 data regions and holes between them.
fn make_sparse_disk(path: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).expect("create disk");
    f.set_len(96 * MIB).expect("set_len");
    f.write_all_at(&noise(1, 2 * MIB as usize), 0)
        .expect("write");
    f.write_all_at(&noise(2, MIB as usize + 17), 40 * MIB)
        .expect("write");
    f.write_all_at(b"tail", 96 * MIB - 4).expect("write");
}

fn disk_of(bundle: &Path) -> PathBuf {
    let hdd = bundle.join("harddisk.hdd");
    std::fs::read_dir(&hdd)
        .expect("harddisk.hdd")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "hds"))
        .expect("an .hds in harddisk.hdd")
}

#[track_caller]
fn ok(socket: &Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = marblectl(socket, args);
    assert_eq!(
        code, 0,
        "marblectl {args:?}: stdout={stdout} stderr={stderr}"
    );
    stdout
}

/// The value of one series of `marblectl metrics`, `series` spelled as rendered
/// (`name{label="value",...}`).
#[track_caller]
fn metric(socket: &Path, series: &str) -> u64 {
    let text = ok(socket, &["metrics"]);
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"));
    value
        .parse()
        .unwrap_or_else(|e| panic!("{series} {value:?}: {e}"))
}

const PUSHED: &str = "marble_transfer_bytes_total{direction=\"push\"}";
const PULLED: &str = "marble_transfer_bytes_total{direction=\"pull\"}";

fn ended(socket: &Path, kind: &str, result: &str) -> u64 {
    metric(
        socket,
        &format!("marble_transfers_total{{kind=\"{kind}\",result=\"{result}\"}}"),
    )
}

/// Bytes of the image's data object and manifest as stored by the S3 server: what a push
/// sends, and what a verify or pull of it receives.
fn stored_bytes(s3: &LocalS3, image: &str) -> u64 {
    [".marble", ".marble.json"]
        .iter()
        .map(|suffix| {
            let path = s3.object_path(&format!("ROOT/{image}{suffix}"));
            std::fs::metadata(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .len()
        })
        .sum()
}

/// Waits until the daemon's first inventory lists [`VM`]: a push asked before that is
/// refused as an unknown VM (seen on a loaded machine).
#[track_caller]
fn wait_listed(socket: &Path) {
    let listed = wait_until_blocking(Duration::from_secs(30), || {
        marblectl(socket, &["vm", "list", "--json"]).1.contains(VM)
    });
    assert!(listed, "the daemon never listed {VM}");
}

fn transfers(socket: &Path) -> Vec<serde_json::Value> {
    let out = ok(socket, &["--json", "image", "transfers"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    v["transfers"].as_array().cloned().unwrap_or_default()
}

/// A pull submitted right after a push finished must not see the push's deleted clone as
/// still registered (the clone is named after the image). Before the fix the transfer check
/// read the inventory as last refreshed, and the refresh the finished push started was still
/// running: the pull was refused "a VM named … is already registered" (a flake of the
/// scenario below, made deterministic here by slow `prlctl delete` and `prlctl list`). Also:
/// a clone delete that reports failure after doing its work (Parallels' spurious
/// `PrlJob_GetRetCode`) is re-checked, not left as a warning.
#[test]
fn a_pull_right_after_a_push_sees_the_push_clone_gone() {
    use marble_tests::prlsim::FaultKind;
    let Some(s3) = LocalS3::start() else { return };
    let dir = short_tempdir();
    let sim = SimHost::create(dir.path().join("sim")).expect("sim host");
    sim.add_vm(VM).expect("add vm");
    make_sparse_disk(&disk_of(&sim.vm(VM).expect("vm").home));
    let mut config = test_config(dir.path(), sim.dir());
    let mut images = s3.config();
    images.scrub.files = vec!["/Users/admin/.PAT".into()];
    images.bundles_dir = Some(sim.dir().join("pulled"));
    images.boot_timeout = Duration::from_secs(20);
    images.exec_timeout = Duration::from_secs(10);
    images.host_memory_reserve_mib = 256;
    config.images = images;
    let daemon = DaemonProcess::spawn(dir.path(), &config);
    let sock = daemon.socket.clone();
    wait_listed(&sock);

    // The clone stays registered (stopped) for a while after the upload ...
    sim.set_fault(
        None,
        FaultKind::Slow {
            verb: "delete".into(),
            ms: 1500,
        },
        Some(1),
    )
    .expect("fault");
    let out = ok(&sock, &["image", "push", VM, "--name", IMAGE, "--detach"]);
    assert!(out.contains("started"), "{out}");
    let vm_names = |sock: &Path| {
        let out = ok(sock, &["--json", "vm", "list"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        v.to_string()
    };
    let seen = wait_until_blocking(Duration::from_secs(60), || vm_names(&sock).contains(IMAGE));
    assert!(
        seen,
        "the daemon's inventory shows the push clone: {}",
        vm_names(&sock)
    );
    // ... and from now on every inventory refresh takes 2.5 s.
    sim.set_fault(
        None,
        FaultKind::Slow {
            verb: "list".into(),
            ms: 2500,
        },
        None,
    )
    .expect("fault");
    let done = wait_until_blocking(Duration::from_secs(60), || {
        transfers(&sock)
            .iter()
            .any(|t| t["image"] == IMAGE && t["finished_ms"].as_u64() != Some(0))
    });
    assert!(done, "push finished: {:?}", transfers(&sock));
    let copy = "macphsft-test-ROOT-VM-macOS-14-copy";
    let (code, stdout, stderr) = marblectl(&sock, &["image", "pull", IMAGE, "--as", copy]);
    assert_eq!(code, 0, "pull right after the push: {stdout} {stderr}");
    sim.clear_faults(None).expect("clear");

    // A delete that did its work but reported a spurious failure: the push still succeeds
    // and leaves no clone behind.
    sim.set_fault(
        None,
        FaultKind::SpuriousFailure {
            verb: "delete".into(),
        },
        Some(1),
    )
    .expect("fault");
    ok(&sock, &["image", "push", VM, "--name", IMAGE2]);
    let names: Vec<String> = sim
        .state()
        .expect("state")
        .vms
        .iter()
        .map(|v| v.name.clone())
        .collect();
    assert!(
        !names.iter().any(|n| n == IMAGE2),
        "clone deleted: {names:?}"
    );
}

#[test]
fn push_pull_scrub_corruption_and_no_secret_in_logs() {
    let Some(s3) = LocalS3::start() else { return };
    let dir = short_tempdir();
    let sim = SimHost::create(dir.path().join("sim")).expect("sim host");
    sim.add_vm(VM).expect("add vm");
    let src = sim.vm(VM).expect("vm");
    make_sparse_disk(&disk_of(&src.home));
    sim.write_guest_file(VM, "/Users/admin/.PAT", TOKEN, 0o600)
        .expect("plant token");
    sim.write_guest_file(VM, "/Users/admin/notes.txt", b"keep me\n", 0o644)
        .expect("guest file");

    let mut config = test_config(dir.path(), sim.dir());
    let mut images = s3.config();
    // Literal paths: the simulator's guest shell has no globs (the real guest expands them).
    images.scrub.files = vec![
        "/Users/admin/.PAT".into(),
        "/Users/admin/.zsh_history".into(),
    ];
    images.bundles_dir = Some(sim.dir().join("pulled"));
    images.boot_timeout = Duration::from_secs(20);
    images.exec_timeout = Duration::from_secs(10);
    images.host_memory_reserve_mib = 256;
    config.images = images;
    let daemon = DaemonProcess::spawn_with_log(dir.path(), &config, "trace");
    let sock = daemon.socket.clone();
    wait_listed(&sock);
    // Exported from the start, at 0.
    assert_eq!(metric(&sock, PUSHED), 0);
    assert_eq!(metric(&sock, PULLED), 0);
    assert_eq!(ended(&sock, "push", "ok"), 0);
    assert_eq!(metric(&sock, "marble_transfers_running{kind=\"push\"}"), 0);

    // Push: scrubbed clone, original untouched, clone removed.
    let out = ok(&sock, &["image", "push", VM, "--name", IMAGE]);
    assert!(
        out.contains("scrub: removed /Users/admin/.PAT"),
        "push report: {out}"
    );
    assert_eq!(
        sim.read_guest_file(VM, "/Users/admin/.PAT").expect("read"),
        Some(TOKEN.to_vec()),
        "the original VM keeps its files"
    );
    let names: Vec<String> = sim
        .state()
        .expect("state")
        .vms
        .iter()
        .map(|v| v.name.clone())
        .collect();
    assert_eq!(names, [VM], "the push clone is deleted");

    // Metrics: exactly the stored bytes went up (every part once, then the manifest), none
    // came back (the default verify_after_push = "etag" only HEADs the object).
    let image_bytes = stored_bytes(&s3, IMAGE);
    assert!(image_bytes > 2 * MIB, "{image_bytes}");
    assert_eq!(metric(&sock, PUSHED), image_bytes);
    assert_eq!(metric(&sock, PULLED), 0);
    assert_eq!(ended(&sock, "push", "ok"), 1);
    assert_eq!(ended(&sock, "push", "failed"), 0);
    assert_eq!(metric(&sock, "marble_transfers_running{kind=\"push\"}"), 0);

    // Listed and verified.
    let ls = ok(&sock, &["--json", "image", "ls", "--team", "root"]);
    assert!(ls.contains(IMAGE) && ls.contains("\"marble\""), "{ls}");
    let verify = ok(&sock, &["image", "verify", IMAGE]);
    assert!(verify.contains("OK"), "{verify}");
    // Verify reads the manifest and every chunk once.
    assert_eq!(metric(&sock, PULLED), image_bytes);
    assert_eq!(ended(&sock, "verify", "ok"), 1);

    // Pull as another VM: registered, renamed, new MAC, disk byte-identical with holes.
    let copy = "macphsft-test-ROOT-VM-macOS-14-copy";
    let out = ok(&sock, &["image", "pull", IMAGE, "--as", copy]);
    assert!(out.contains(copy) && out.contains("MAC"), "{out}");
    assert_eq!(
        metric(&sock, PULLED),
        2 * image_bytes,
        "pull reads it once more"
    );
    assert_eq!(ended(&sock, "pull", "ok"), 1);
    assert_eq!(metric(&sock, PUSHED), image_bytes, "a pull sends nothing");
    let pulled = sim.vm(copy).expect("pulled VM registered under --as name");
    assert_ne!(pulled.uuid, src.uuid);
    assert_ne!(
        pulled.nets.first().map(|n| &n.mac),
        src.nets.first().map(|n| &n.mac),
        "a pulled VM gets a new MAC"
    );
    assert!(pulled.home.starts_with(sim.dir().join("pulled")));
    let (a, b) = (disk_of(&src.home), disk_of(&pulled.home));
    assert_eq!(std::fs::metadata(&b).expect("stat").len(), 96 * MIB);
    assert_eq!(sha(&a), sha(&b), "disk content survives push + pull");
    let allocated = std::fs::metadata(&b).expect("stat").blocks() * 512;
    assert!(
        allocated < 8 * MIB,
        "holes come back as holes: {allocated} bytes allocated for 3 MiB of data"
    );
    assert_eq!(
        sim.read_guest_file(copy, "/Users/admin/notes.txt")
            .expect("read"),
        Some(b"keep me\n".to_vec())
    );
    assert_eq!(
        sim.read_guest_file(copy, "/Users/admin/.PAT")
            .expect("read"),
        None,
        "scrubbed file absent from the image"
    );
    // Anywhere on the simulated host, the token is only in the original VM's guest.
    let holders = sim.files_containing(TOKEN).expect("scan");
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert!(holders[0].starts_with(&src.home), "{holders:?}");

    // A detached push returns at once; the transfer finishes in the daemon.
    let out = ok(&sock, &["image", "push", VM, "--name", IMAGE2, "--detach"]);
    assert!(out.contains("started"), "{out}");
    let done = wait_until_blocking(Duration::from_secs(60), || {
        transfers(&sock)
            .iter()
            .any(|t| t["image"] == IMAGE2 && t["finished_ms"].as_u64() != Some(0))
    });
    assert!(done, "detached push finished: {:?}", transfers(&sock));
    let t = transfers(&sock);
    let t2 = t.iter().find(|t| t["image"] == IMAGE2).expect("listed");
    assert_eq!(t2["phase"], "done", "{t2}");
    assert!(t2["error"].is_null(), "{t2}");
    assert_eq!(
        metric(&sock, PUSHED),
        image_bytes + stored_bytes(&s3, IMAGE2),
        "the detached push counted too"
    );
    assert_eq!(ended(&sock, "push", "ok"), 2);

    // Corrupt the stored object: verify and pull fail cleanly (65), nothing registered, no
    // bundle, no partial download left.
    let key = format!("ROOT/{IMAGE2}.marble");
    let obj = s3.object_path(&key);
    let mut data = std::fs::read(&obj).expect("stored object");
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&obj, &data).expect("corrupt");
    let (code, _, err) = marblectl(&sock, &["image", "verify", IMAGE2]);
    assert_eq!(code, 65, "verify of a corrupt object: {err}");
    let before: Vec<PathBuf> = std::fs::read_dir(sim.dir().join("pulled"))
        .expect("pulled dir")
        .map(|e| e.expect("entry").path())
        .collect();
    let bad = "macphsft-test-ROOT-VM-macOS-14-bad";
    let (code, _, err) = marblectl(&sock, &["image", "pull", IMAGE2, "--as", bad]);
    assert_eq!(code, 65, "pull of a corrupt object: {err}");
    assert!(err.contains("checksum") || err.contains("corrupt"), "{err}");
    assert!(sim.vm(bad).is_err(), "nothing registered");
    let after: Vec<PathBuf> = std::fs::read_dir(sim.dir().join("pulled"))
        .expect("pulled dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(before, after, "no bundle or partial download left");
    assert_eq!(ended(&sock, "verify", "failed"), 1);
    assert_eq!(ended(&sock, "pull", "failed"), 1);
    assert_eq!(ended(&sock, "pull", "ok"), 1);
    for kind in ["push", "pull", "verify"] {
        let running = format!("marble_transfers_running{{kind=\"{kind}\"}}");
        assert_eq!(metric(&sock, &running), 0, "{kind}");
    }

    // rm without a terminal and without --yes refuses (64) and removes nothing; with --yes
    // it removes; the transfer history names the failure.
    let (code, _, err) = marblectl(&sock, &["image", "rm", IMAGE2]);
    assert_eq!(code, 64, "rm without --yes off a terminal: {err}");
    assert!(err.contains("--yes"), "{err}");
    let ls = ok(&sock, &["--json", "image", "ls"]);
    assert!(ls.contains(IMAGE2), "nothing removed: {ls}");
    ok(&sock, &["image", "rm", IMAGE2, "--yes"]);
    let ls = ok(&sock, &["--json", "image", "ls"]);
    assert!(!ls.contains(IMAGE2) && ls.contains(IMAGE), "{ls}");
    let t = transfers(&sock);
    assert!(
        t.iter()
            .any(|t| t["kind"] == "pull" && t["phase"] == "failed" && t["image"] == IMAGE2),
        "{t:?}"
    );

    // The log saw the S3 traffic at TRACE, and never the secret key.
    let log = daemon.log_text();
    assert!(
        log.contains("transfer started"),
        "log captured the transfers"
    );
    assert!(
        log.contains("aws_smithy") || log.contains("aws_sdk_s3"),
        "SDK trace output captured"
    );
    assert!(
        !log.contains(SECRET_KEY),
        "the S3 secret key appeared in the daemon log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_bytes_grow_during_a_push_and_a_resumed_push_adds_only_what_it_resends() {
    let Some(s3) = LocalS3::start() else { return };
    let mut cfg = s3.config();
    // One part in flight: at each upload progress report the parts sent are exactly the
    // parts journaled, which are the ones a resumed push skips.
    cfg.concurrency = 1;
    let wire = Arc::new(WireBytes::default());
    let store = ImageStore::new(cfg)
        .await
        .expect("store")
        .counting_into(wire.clone());
    let work = tempfile::tempdir().expect("tmp");
    let name = ImageName::parse("2026-03-04-ROOT-VM-macOS-26").expect("name");
    let bundle = work.path().join(format!("{name}.macvm"));
    std::fs::create_dir_all(&bundle).expect("mkdir");
    // Incompressible: about five 5 MiB parts.
    std::fs::write(bundle.join("disk.hds"), noise(7, 24 * MIB as usize)).expect("write");

    // First attempt, dropped once 10 MiB of payload are uploaded; every upload report
    // records (payload done, object bytes counted so far).
    let seen: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let notify = Arc::new(tokio::sync::Notify::new());
    let (seen2, notify2, wire2) = (seen.clone(), notify.clone(), wire.clone());
    let progress = move |p: Progress| {
        if p.phase == Phase::Upload && p.done > 0 {
            seen2.lock().expect("seen").push((p.done, wire2.sent()));
            if p.done >= 10 * MIB {
                notify2.notify_one();
            }
        }
    };
    tokio::select! {
        r = store.push_dir(&bundle, &name, &progress) => panic!("push finished before the interruption: {r:?}"),
        () = notify.notified() => {}
        () = tokio::time::sleep(Duration::from_secs(120)) => panic!("no upload progress"),
    }
    let seen = seen.lock().expect("seen").clone();
    assert!(seen.len() >= 2, "{seen:?}");
    // Counted as the parts went, not at the end: every report already saw its part's bytes,
    // and the count grew with the payload.
    assert!(seen[0].1 > 0, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[1].1 > w[0].1), "{seen:?}");
    let journaled = seen.last().expect("a report").1;
    let first = wire.sent();
    // At most the one part in flight when the push was dropped went out unjournaled.
    assert!(first >= journaled, "{first} < {journaled}");

    let r = tokio::time::timeout(
        Duration::from_secs(120),
        store.push_dir(&bundle, &name, &|_| {}),
    )
    .await
    .expect("timeout")
    .expect("resumed push");
    assert!(
        r.parts_resumed >= 2,
        "resumed {} of {}",
        r.parts_resumed,
        r.parts
    );
    assert_eq!(
        wire.sent() - first,
        stored_bytes(&s3, name.as_str()) - journaled,
        "the resumed push sent everything but the journaled parts, once ({} parts, {} resumed)",
        r.parts,
        r.parts_resumed
    );
    assert_eq!(
        wire.received(),
        0,
        "a push with verify_after_push = \"etag\" reads nothing back"
    );
}
