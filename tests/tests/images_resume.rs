//! An interrupted push resumes without re-sending finished parts, counted on the wire by a
//! proxy in front of the server; the resumed image pulls back byte-identical.

use marble_tests::data::noise;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use marble_tests::s3::{CountingProxy, LocalS3};
use marbled::images::{ImageName, ImageStore, Phase, Progress};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_push_resumes_without_resending_parts() {
    let Some(s3) = LocalS3::start() else { return };
    let proxy = CountingProxy::start(s3.addr);
    let mut cfg = s3.config_for(&proxy.endpoint);
    cfg.concurrency = 2;
    let store = ImageStore::new(cfg).await.expect("store");
    let work = tempfile::tempdir().expect("tmp");
    let name = ImageName::parse("2026-03-03-ROOT-VM-macOS-26").expect("name");
    let b = work.path().join(format!("{name}.macvm"));
    std::fs::create_dir_all(&b).expect("mkdir");
    // Incompressible, so 48 MiB make ~10 parts of 5 MiB.
    let content = noise(11, 48 * 1024 * 1024);
    std::fs::write(b.join("disk.hds"), &content).expect("write");

    // First attempt: cancel (drop the future) once at least 3 parts are journaled.
    let done = Arc::new(AtomicU64::new(0));
    let d2 = done.clone();
    let notify = Arc::new(tokio::sync::Notify::new());
    let n2 = notify.clone();
    let progress = move |p: Progress| {
        if p.phase == Phase::Upload {
            d2.store(p.done, Ordering::SeqCst);
            if p.done >= 15 * 1024 * 1024 {
                n2.notify_one();
            }
        }
    };
    tokio::select! {
        r = store.push_dir(&b, &name, &progress) => panic!("push finished before the interruption: {r:?}"),
        _ = notify.notified() => {}
        _ = tokio::time::sleep(Duration::from_secs(120)) => panic!("no progress"),
    }
    let first_parts = proxy.upload_parts();
    assert!(
        first_parts >= 3,
        "only {first_parts} parts sent before the interruption"
    );
    assert!(
        store
            .ls(None)
            .await
            .expect("ls")
            .iter()
            .all(|i| i.format != "marble"),
        "image must not look complete"
    );
    proxy.reset();

    // Second attempt: resumes.
    let r = tokio::time::timeout(Duration::from_secs(120), store.push_dir(&b, &name, &|_| {}))
        .await
        .expect("timeout")
        .expect("resumed push");
    let second_parts = proxy.upload_parts();
    assert!(
        r.parts_resumed >= 3,
        "resumed only {} parts",
        r.parts_resumed
    );
    assert_eq!(
        second_parts as u32,
        r.parts - r.parts_resumed,
        "second attempt re-sent finished parts"
    );
    assert!(r.parts >= 9, "{} parts", r.parts);

    let dest = tempfile::tempdir().expect("tmp");
    let pulled = store
        .pull_to_dir(&name, dest.path(), &|_| {})
        .await
        .expect("pull");
    assert!(
        std::fs::read(pulled.bundle.join("disk.hds")).expect("read") == content,
        "content differs after resume"
    );
}
