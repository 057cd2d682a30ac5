//! The shared build disk in the bucket and the pull that needs it (issue 13 §2), on a real S3
//! server (s3s-fs on loopback):
//!
//! - The seed's download script fetches `s3://macvmstorage/build_drive.hdd`: a zip stored
//!   without the extension. The default `images.build_disk_key` is that key, and what the
//!   object holds (a zip, or MARBLE's own format) is recognised by its bytes, not its name.
//! - A pull whose build disk is missing and cannot be fetched fails before it changes the
//!   host: no VM registered, no bundle, no partial download. With the seed's object in the
//!   bucket, the same pull fetches it and registers the VM, named after the host's short
//!   name (`macphsft01`, not `gethostname`'s `macphsft01.cern.ch`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use marble_tests::data::noise;
use marble_tests::harness::{DaemonProcess, marblectl, short_tempdir, test_config};
use marble_tests::prlsim::SimHost;
use marble_tests::s3::LocalS3;
use marbled::images::{ImageError, ImageName, ImageStore, ImageStoreConfig};

const MIB: u64 = 1024 * 1024;
/// The seed's object key (reference/seed-scripts.md §1, §11).
const SEED_KEY: &str = "build_drive.hdd";

/// A build disk bundle `parent/build_drive.hdd/`: descriptor and a sparse `.hds` with data.
fn make_build_disk(parent: &Path) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let disk = parent.join("build_drive.hdd");
    std::fs::create_dir_all(&disk).expect("mkdir");
    std::fs::write(disk.join("DiskDescriptor.xml"), "<Parallels_disk_image/>\n").expect("write");
    let f = std::fs::File::create(disk.join("build_drive.hdd.0.{5fbaabe3}.hds")).expect("hds");
    f.set_len(64 * MIB).expect("set_len");
    f.write_all_at(&noise(7, MIB as usize), 8 * MIB)
        .expect("write");
    disk
}

/// `cd parent && zip -r out build_drive.hdd` (Info-ZIP, as on the seed's hosts).
fn zip_build_disk(parent: &Path, out: &Path) {
    let st = Command::new("zip")
        .current_dir(parent)
        .arg("-q")
        .arg("-r")
        .arg(out)
        .arg("build_drive.hdd")
        .status()
        .expect("Info-ZIP `zip` is needed for this test (apt-get install zip)");
    assert!(st.success());
}

fn read_hds(disk: &Path) -> Vec<u8> {
    std::fs::read(disk.join("build_drive.hdd.0.{5fbaabe3}.hds")).expect("read hds")
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_disk_is_found_under_the_seeds_key_as_a_zip_or_a_marble_image() {
    assert_eq!(
        ImageStoreConfig::default().build_disk_key,
        SEED_KEY,
        "the default key is the seed's object"
    );
    let Some(s3) = LocalS3::start() else { return };
    let store = ImageStore::new(s3.config()).await.expect("store");
    let work = tempfile::tempdir().expect("tmp");
    let src = make_build_disk(work.path());

    // The seed's object: a zip under a name without `.zip`.
    let zip = work.path().join("build_drive.hdd.zip");
    zip_build_disk(work.path(), &zip);
    store.upload_file(&zip, SEED_KEY).await.expect("upload");
    let dest = tempfile::tempdir().expect("tmp");
    let r = store
        .pull_key_to_dir(SEED_KEY, "build_drive.hdd", dest.path(), &|_| {})
        .await
        .expect("pull the seed's zip");
    assert_eq!(r.format, "zip");
    assert_eq!(r.bundle, dest.path().join("build_drive.hdd"));
    assert_eq!(read_hds(&r.bundle), read_hds(&src));

    // MARBLE's own format under the same key.
    store.bucket().delete(SEED_KEY).await.expect("delete");
    store
        .push_dir_as(&src, SEED_KEY, &|_| {})
        .await
        .expect("push as marble");
    let dest = tempfile::tempdir().expect("tmp");
    let r = store
        .pull_key_to_dir(SEED_KEY, "build_drive.hdd", dest.path(), &|_| {})
        .await
        .expect("pull the marble image");
    assert!(r.format.starts_with("marble"), "{}", r.format);
    assert_eq!(read_hds(&r.bundle), read_hds(&src));

    // Anything else under the key is named by its first bytes, and nothing is written.
    let junk = work.path().join("junk");
    std::fs::write(&junk, b"<?xml version=\"1.0\"?>\n").expect("write");
    store.upload_file(&junk, "other.hdd").await.expect("upload");
    let dest = tempfile::tempdir().expect("tmp");
    let e = store
        .pull_key_to_dir("other.hdd", "other.hdd", dest.path(), &|_| {})
        .await
        .expect_err("not an image");
    assert!(matches!(e, ImageError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("3c 3f 78 6d"), "{e}");
    assert!(
        entries(dest.path()).is_empty(),
        "{:?}",
        entries(dest.path())
    );
}

#[test]
fn a_pull_whose_build_disk_is_missing_leaves_the_host_unchanged() {
    let Some(s3) = LocalS3::start() else { return };
    let dir = short_tempdir();
    let sim = SimHost::create(dir.path().join("sim")).expect("sim host");
    // The image in the bucket, as `image push` leaves it: the bundle of a clone named after
    // the image (then deleted).
    let image = "2026-11-28-ROOT-VM-macOS-15";
    sim.add_vm(image).expect("add vm");
    let home = sim.vm(image).expect("vm").home;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = ImageStore::new(s3.config()).await.expect("store");
        store
            .push_dir(&home, &ImageName::parse(image).expect("name"), &|_| {})
            .await
            .expect("push");
    });
    sim.update(|st| st.vms.clear()).expect("unregister");
    std::fs::remove_dir_all(&home).expect("delete the clone");

    let pulled = sim.dir().join("pulled");
    std::fs::create_dir_all(&pulled).expect("mkdir");
    let disk_dir = dir.path().join("disks");
    std::fs::create_dir_all(&disk_dir).expect("mkdir");
    let disk = disk_dir.join("build_drive.hdd");
    let mut config = test_config(dir.path(), sim.dir());
    config.images = s3.config();
    config.images.bundles_dir = Some(pulled.clone());
    config.images.build_disk = Some(disk.clone());
    config.images.host_memory_reserve_mib = 256;
    // What gethostname says on a CERN host: VM names use the short name.
    config.daemon.host_name = "macphsft01.cern.ch".into();
    let daemon = DaemonProcess::spawn(dir.path(), &config);
    sim.clear_invocations().expect("clear log");

    let vm = "macphsft01-ROOT-VM-macOS-15";
    let (code, out, err) = marblectl(&daemon.socket, &["image", "pull", image]);
    assert_ne!(code, 0, "stdout={out} stderr={err}");
    // Nothing changed on the host.
    let names: Vec<String> = sim
        .state()
        .expect("state")
        .vms
        .iter()
        .map(|v| v.name.clone())
        .collect();
    assert!(names.is_empty(), "no VM registered: {names:?}");
    let verbs: Vec<String> = sim
        .argvs()
        .expect("log")
        .into_iter()
        .filter_map(|a| a.first().cloned())
        .filter(|v| v != "list")
        .collect();
    assert!(
        verbs.is_empty(),
        "no prlctl call changed anything: {verbs:?}"
    );
    assert!(entries(&pulled).is_empty(), "{:?}", entries(&pulled));
    assert!(entries(&disk_dir).is_empty(), "{:?}", entries(&disk_dir));
    assert!(
        err.contains(SEED_KEY) && err.contains(&disk.display().to_string()),
        "names the build disk's key and path: {err}"
    );

    // With the seed's object in the bucket the same pull fetches it, then registers the VM.
    let work = tempfile::tempdir().expect("tmp");
    let src = make_build_disk(work.path());
    let zip = work.path().join("build_drive.hdd.zip");
    zip_build_disk(work.path(), &zip);
    rt.block_on(async {
        let store = ImageStore::new(s3.config()).await.expect("store");
        store.upload_file(&zip, SEED_KEY).await.expect("upload");
    });
    let (code, out, err) = marblectl(&daemon.socket, &["image", "pull", image]);
    assert_eq!(code, 0, "stdout={out} stderr={err}\n{}", daemon.log_text());
    assert!(out.contains("MAC"), "{out}");
    assert_eq!(read_hds(&disk), read_hds(&src));
    assert!(
        sim.vm(vm).is_ok(),
        "registered as <short host>-<image without date>"
    );
}
