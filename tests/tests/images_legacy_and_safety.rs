//! Legacy `zip -r` objects pull with their structure; zip-slip entries, corrupt and truncated
//! images are rejected and leave nothing behind.

use marble_tests::data::noise;
use std::path::Path;
use std::process::Command;

use marble_tests::s3::LocalS3;
use marbled::images::{ImageError, ImageName, ImageStore};

mod image_checks;
use image_checks::seed_zip_pulls_with_its_structure;

#[track_caller]
fn assert_empty_dir(p: &Path) {
    let left: Vec<_> = std::fs::read_dir(p)
        .expect("read_dir")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert!(left.is_empty(), "left behind in {}: {left:?}", p.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_made_like_the_seed_pulls_with_its_structure() {
    let Some(s3) = LocalS3::start() else { return };
    seed_zip_pulls_with_its_structure(s3.config()).await;
}

/// The legacy zip path over HTTPS (a private CA trusted through `ca_file`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_made_like_the_seed_pulls_over_https() {
    let Some(s3) = LocalS3::start_tls() else {
        return;
    };
    seed_zip_pulls_with_its_structure(s3.config()).await;
    let https = s3.https.as_ref().expect("started with TLS");
    assert!(
        https.front.handshakes_completed() > 0,
        "nothing went over TLS"
    );
    assert!(
        https.wire.requests().iter().any(|r| r.starts_with("GET ")),
        "the pull's GETs went over TLS"
    );
}

/// Writes a zip with a hostile entry using Python's zipfile (Info-ZIP refuses to make one).
fn hostile_zip(path: &Path, entry: &str) {
    let script = format!(
        "import zipfile\nz=zipfile.ZipFile({:?},'w')\nz.writestr('X.macvm/config.pvs','ok')\nz.writestr({entry:?},'pwned')\nz.close()\n",
        path.to_str().expect("utf8")
    );
    let st = Command::new("python3")
        .args(["-c", &script])
        .status()
        .expect("python3 needed");
    assert!(st.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_slip_entries_are_rejected_and_nothing_is_left() {
    let Some(s3) = LocalS3::start() else { return };
    let store = ImageStore::new(s3.config()).await.expect("store");
    let work = tempfile::tempdir().expect("tmp");
    for (i, entry) in [
        "X.macvm/../../evil",
        "/tmp/evil-abs",
        "X.macvm/a/../../../evil",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("2025-01-1{i}-ROOT-VM-bad");
        let z = work.path().join(format!("{name}.zip"));
        hostile_zip(&z, entry);
        store
            .upload_file(&z, &format!("ROOT/{name}.zip"))
            .await
            .expect("upload");
        let dest = tempfile::tempdir().expect("tmp");
        let err = store
            .pull_to_dir(
                &ImageName::parse(&name).expect("name"),
                dest.path(),
                &|_| {},
            )
            .await
            .expect_err("must reject");
        assert!(
            matches!(err, ImageError::UnsafeEntry { .. }),
            "{entry}: {err}"
        );
        assert!(err.to_string().contains("rejected"), "{err}");
        assert_empty_dir(dest.path());
    }
    assert!(!Path::new("/tmp/evil-abs").exists());
}

/// Issue 15 case 8: a zip with two entries of the same name is refused as corrupt (exit 65 at
/// the CLI: `DataError`), and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_08_duplicate_entries_are_refused_and_nothing_is_left() {
    let Some(s3) = LocalS3::start() else { return };
    let store = ImageStore::new(s3.config()).await.expect("store");
    let work = tempfile::tempdir().expect("tmp");
    let name = "2025-02-01-ROOT-VM-dup";
    let z = work.path().join(format!("{name}.zip"));
    // Python's zipfile warns about the duplicate but writes it, as a hostile tool would.
    hostile_zip(&z, "X.macvm/config.pvs");
    store
        .upload_file(&z, &format!("ROOT/{name}.zip"))
        .await
        .expect("upload");
    let dest = tempfile::tempdir().expect("tmp");
    let err = store
        .pull_to_dir(&ImageName::parse(name).expect("name"), dest.path(), &|_| {})
        .await
        .expect_err("a duplicate entry must be refused");
    assert!(
        matches!(err, ImageError::Corrupt { .. }),
        "duplicate entry: {err}"
    );
    assert_eq!(
        marbled::chain::WireKind::kind(&err),
        marble_proto::ErrorKind::DataError,
        "exit 65"
    );
    assert!(
        err.to_string().contains("two entries share a name"),
        "{err}"
    );
    assert_empty_dir(dest.path());
}

async fn pushed(s3: &LocalS3, name: &str) -> (ImageStore, ImageName, tempfile::TempDir) {
    let work = tempfile::tempdir().expect("tmp");
    let b = work.path().join(format!("{name}.macvm"));
    std::fs::create_dir_all(&b).expect("mkdir");
    std::fs::write(b.join("disk.hds"), noise(9, 12 * 1024 * 1024)).expect("write");
    let store = ImageStore::new(s3.config()).await.expect("store");
    let image = ImageName::parse(name).expect("name");
    store.push_dir(&b, &image, &|_| {}).await.expect("push");
    (store, image, work)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_object_fails_cleanly() {
    let Some(s3) = LocalS3::start() else { return };
    let (store, image, _w) = pushed(&s3, "2026-02-02-ROOT-VM-macOS-15").await;
    // Flip one byte in the middle of the stored object (s3s-fs keeps objects as plain files).
    let obj = s3.object_path(&format!("ROOT/{image}.marble"));
    let mut data = std::fs::read(&obj).expect("object file");
    let mid = data.len() / 2;
    data[mid] ^= 0x5a;
    std::fs::write(&obj, &data).expect("write");
    let err = store
        .verify(&image, &|_| {})
        .await
        .expect_err("verify must fail");
    assert!(matches!(err, ImageError::Checksum { .. }), "{err}");
    let dest = tempfile::tempdir().expect("tmp");
    let err = store
        .pull_to_dir(&image, dest.path(), &|_| {})
        .await
        .expect_err("pull must fail");
    assert!(matches!(err, ImageError::Checksum { .. }), "{err}");
    assert_empty_dir(dest.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_object_fails_cleanly() {
    let Some(s3) = LocalS3::start() else { return };
    let (store, image, _w) = pushed(&s3, "2026-02-03-ROOT-VM-macOS-15").await;
    let obj = s3.object_path(&format!("ROOT/{image}.marble"));
    let len = std::fs::metadata(&obj).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&obj)
        .expect("open")
        .set_len(len / 3)
        .expect("truncate");
    let dest = tempfile::tempdir().expect("tmp");
    let err = store
        .pull_to_dir(&image, dest.path(), &|_| {})
        .await
        .expect_err("pull must fail");
    assert!(
        matches!(
            err,
            ImageError::Corrupt { .. } | ImageError::Checksum { .. }
        ),
        "{err}"
    );
    assert_empty_dir(dest.path());
}
