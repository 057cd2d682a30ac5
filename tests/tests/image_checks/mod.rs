//! The image checks several test files run against different servers (s3s-fs over http and
//! over HTTPS, Garage behind TLS): the full round trip of a bundle like Parallels' and the
//! legacy seed zip. Each takes the store's config, so the server and transport are the
//! caller's choice.
#![allow(dead_code, unreachable_pub)]

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use marble_tests::data::noise;
use marbled::images::{ImageName, ImageStore, ImageStoreConfig, Progress};
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;

/// A bundle like Parallels': a config, a sparse disk with data, zero-filled and hole regions,
/// an empty file, a private file and an internal symlink.
fn make_bundle(parent: &Path, name: &str) -> PathBuf {
    let b = parent.join(name);
    std::fs::create_dir_all(b.join("harddisk.hdd")).expect("mkdir");
    std::fs::write(
        b.join("config.pvs"),
        "<ParallelsVirtualMachine/>\n".repeat(100),
    )
    .expect("write");
    std::fs::write(b.join("empty.log"), b"").expect("write");
    std::fs::write(b.join("secret.bin"), noise(7, 1000)).expect("write");
    std::fs::set_permissions(b.join("secret.bin"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    let disk = b.join("harddisk.hdd/disk.hds");
    let f = std::fs::File::create(&disk).expect("create");
    f.set_len(300 * MIB).expect("set_len");
    use std::os::unix::fs::FileExt;
    f.write_all_at(&noise(1, 3 * MIB as usize), 0)
        .expect("write");
    f.write_all_at(&noise(2, 2 * MIB as usize + 123), 100 * MIB)
        .expect("write");
    f.write_all_at(&vec![0u8; MIB as usize], 200 * MIB)
        .expect("write"); // allocated zeros
    f.write_all_at(b"tail", 300 * MIB - 4).expect("write");
    std::os::unix::fs::symlink("harddisk.hdd/disk.hds", b.join("disk-link")).expect("symlink");
    b
}

fn sha(path: &Path) -> String {
    let mut f = std::fs::File::open(path).expect("open");
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).expect("read");
    hex::encode(h.finalize())
}

#[track_caller]
fn assert_same_tree(a: &Path, b: &Path) {
    let mut stack = vec![PathBuf::new()];
    let mut n = 0;
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(a.join(&rel))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        let mut other: Vec<_> = std::fs::read_dir(b.join(&rel))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        other.sort();
        assert_eq!(names, other, "directory {} differs", rel.display());
        for name in names {
            let r = rel.join(&name);
            let (ma, mb) = (
                std::fs::symlink_metadata(a.join(&r)).expect("stat"),
                std::fs::symlink_metadata(b.join(&r)).expect("stat"),
            );
            assert_eq!(ma.file_type(), mb.file_type(), "{}", r.display());
            if ma.is_dir() {
                stack.push(r);
            } else if ma.file_type().is_symlink() {
                assert_eq!(
                    std::fs::read_link(a.join(&r)).expect("link"),
                    std::fs::read_link(b.join(&r)).expect("link")
                );
            } else {
                assert_eq!(ma.len(), mb.len(), "{}", r.display());
                assert_eq!(
                    ma.mode() & 0o777,
                    mb.mode() & 0o777,
                    "mode of {}",
                    r.display()
                );
                assert_eq!(
                    sha(&a.join(&r)),
                    sha(&b.join(&r)),
                    "content of {}",
                    r.display()
                );
                n += 1;
            }
        }
    }
    assert!(n >= 4, "compared only {n} files");
}

/// Captures everything logged (all levels, all crates) into a buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Push, ls, verify, pull (byte-identical, holes kept), refused second pull, rm — through a
/// store built from `cfg`, on an empty bucket; `secret_key` never reaches the logs.
pub async fn roundtrip(cfg: ImageStoreConfig, secret_key: &str) {
    let cap = Capture::default();
    let c2 = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || c2.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let work = tempfile::tempdir().expect("tmp");
    let name = ImageName::parse("2026-11-28-ROOT-VM-macOS-14").expect("name");
    let src = make_bundle(work.path(), "2026-11-28-ROOT-VM-macOS-14.macvm");
    let store = ImageStore::new(cfg).await.expect("store");
    let seen = Arc::new(Mutex::new(Vec::<Progress>::new()));
    let s2 = seen.clone();
    let progress = move |p: Progress| s2.lock().expect("progress").push(p);
    let pushed = tokio::time::timeout(
        Duration::from_secs(120),
        store.push_dir(&src, &name, &progress),
    )
    .await
    .expect("push timed out")
    .expect("push");
    assert_eq!(pushed.data_key, "ROOT/2026-11-28-ROOT-VM-macOS-14.marble");
    assert!(
        pushed.payload_bytes < 10 * MIB,
        "holes were read: payload {}",
        pushed.payload_bytes
    );
    assert!(pushed.apparent_bytes > 300 * MIB);
    assert!(
        pushed.parts >= 2,
        "expected multipart, got {} parts",
        pushed.parts
    );
    assert!(
        seen.lock()
            .expect("progress")
            .iter()
            .any(|p| p.done == p.total && p.total == pushed.payload_bytes)
    );

    let listed = store.ls(Some("ROOT")).await.expect("ls");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].format, "marble");
    let v = store.verify(&name, &|_| {}).await.expect("verify");
    assert!(v.chunks >= 5);

    let dest = tempfile::tempdir().expect("tmp");
    let pulled = tokio::time::timeout(
        Duration::from_secs(120),
        store.pull_to_dir(&name, dest.path(), &progress),
    )
    .await
    .expect("pull timed out")
    .expect("pull");
    assert_eq!(
        pulled.bundle,
        dest.path().join("2026-11-28-ROOT-VM-macOS-14.macvm")
    );
    assert_same_tree(&src, &pulled.bundle);
    // Holes: the pulled disk allocates no more than the source (zero-filled blocks even
    // become holes), and far less than its apparent size.
    let (ms, md) = (
        std::fs::metadata(src.join("harddisk.hdd/disk.hds")).expect("stat"),
        std::fs::metadata(pulled.bundle.join("harddisk.hdd/disk.hds")).expect("stat"),
    );
    assert!(
        md.blocks() <= ms.blocks(),
        "dest allocates {} blocks, source {}",
        md.blocks(),
        ms.blocks()
    );
    assert!(
        md.blocks() * 512 < 8 * MIB,
        "dest allocates {} bytes",
        md.blocks() * 512
    );
    // Nothing else left next to the bundle (no partial dirs).
    let left: Vec<_> = std::fs::read_dir(dest.path())
        .expect("read_dir")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");

    // A second pull refuses to touch the existing bundle.
    let again = store.pull_to_dir(&name, dest.path(), &|_| {}).await;
    assert!(
        matches!(again, Err(marbled::images::ImageError::Exists { .. })),
        "{again:?}"
    );

    let deleted = store.rm(&name).await.expect("rm");
    assert_eq!(deleted.len(), 2);
    assert!(store.ls(None).await.expect("ls").is_empty());

    let logs = String::from_utf8_lossy(&cap.0.lock().expect("capture")).to_string();
    assert!(
        logs.contains("image pushed"),
        "capture did not work: {}",
        &logs[..logs.len().min(500)]
    );
    assert!(!logs.contains(secret_key), "secret key appeared in logs");
    let _ = std::io::stderr().flush();
}

/// A zip made exactly as the seed makes them (`zip -r`), uploaded as `SPI/NAME.zip`, pulls
/// with its directory structure and content.
pub async fn seed_zip_pulls_with_its_structure(cfg: ImageStoreConfig) {
    let work = tempfile::tempdir().expect("tmp");
    let name = "2025-01-10-SPI-VM-macOS-15";
    let b = work.path().join(format!("{name}.macvm"));
    std::fs::create_dir_all(b.join("harddisk.hdd")).expect("mkdir");
    std::fs::write(b.join("config.pvs"), "<vm/>\n".repeat(500)).expect("write");
    let mut disk = noise(3, 6 * 1024 * 1024);
    disk.extend(vec![0u8; 4 * 1024 * 1024]);
    std::fs::write(b.join("harddisk.hdd/disk.hds"), &disk).expect("write");
    std::fs::write(b.join("harddisk.hdd/DiskDescriptor.xml"), "<Disk/>").expect("write");
    // Exactly the seed's command: `cd ~/Parallels && zip -r STORAGE.zip STORAGE.macvm`.
    let st = Command::new("zip")
        .current_dir(work.path())
        .args(["-q", "-r", &format!("{name}.zip"), &format!("{name}.macvm")])
        .status();
    let Ok(st) = st else {
        panic!("Info-ZIP `zip` is needed for this test (apt-get install zip)");
    };
    assert!(st.success());
    let store = ImageStore::new(cfg).await.expect("store");
    store
        .upload_file(
            &work.path().join(format!("{name}.zip")),
            &format!("SPI/{name}.zip"),
        )
        .await
        .expect("upload");
    let listed = store.ls(Some("SPI")).await.expect("ls");
    assert_eq!(listed[0].format, "zip");

    let dest = tempfile::tempdir().expect("tmp");
    let image = ImageName::parse(name).expect("name");
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        store.pull_to_dir(&image, dest.path(), &|_| {}),
    )
    .await
    .expect("timeout")
    .expect("pull");
    assert_eq!(r.bundle, dest.path().join(format!("{name}.macvm")));
    assert_eq!(
        std::fs::read(r.bundle.join("harddisk.hdd/disk.hds")).expect("read"),
        disk,
        "nested file content"
    );
    assert_eq!(
        std::fs::read_to_string(r.bundle.join("harddisk.hdd/DiskDescriptor.xml")).expect("read"),
        "<Disk/>"
    );
    assert!(r.bundle.join("config.pvs").is_file());
    let left: Vec<_> = std::fs::read_dir(dest.path())
        .expect("read_dir")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}
