//! The actor acknowledges a mutation only once the state it acknowledges is written: the
//! test plays the persister itself (holding back the "written" report) and checks that a
//! `lock` reply waits for it. Without this, `kill -9` right after `marblectl lock` returned 0
//! could lose the lock (seen end to end: 1 lost lock in 20 lock-then-kill runs).
//!
//! Deterministic, no sleeps: the actor hands the new state to the persister before it
//! decides about the reply in the same step, so once the state is observed the reply's fate
//! is sealed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use marble_proto::{LockTarget, Request, Response};
use marble_tests::harness::{short_tempdir, test_config, wait_until, wait_until_async};
use marble_tests::prlsim::SimHost;
use marbled::actor::{Identity, Supervisor};
use marbled::clock::now_ms;
use marbled::sched::World;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(20);
const VM: &str = "macphsft01-SPI-VM-macOS-14";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_is_acknowledged_only_after_its_state_is_written() {
    let dir = short_tempdir();
    let host = SimHost::create(dir.path().join("sim")).unwrap();
    host.add_vm(VM).unwrap();
    let config = test_config(dir.path(), host.dir());
    let world = World::new(config.sched_config(), now_ms());
    let ctx = marbled::jobs::JobContext::from_config(&config, marbled::daemon::hypervisor(&config));
    let identity = Identity {
        version: "test".into(),
        host: "test".into(),
    };
    let (persist_tx, persist_rx) = watch::channel((0, world.persisted()));
    let (written_tx, written_rx) = watch::channel(0u64);
    let stop = CancellationToken::new();
    let (supervisor, handle) =
        Supervisor::new(world, ctx, identity, persist_tx, written_rx, stop.clone());
    let actor = tokio::spawn(supervisor.run(Duration::from_secs(1)));

    // Wait for the first inventory, so the lock can name the VM.
    let listed = wait_until_async(T, || async {
        matches!(
            handle.query(Request::ListVms).await,
            Ok(Response::Vms(vms)) if vms.iter().any(|v| v.name == VM)
        )
    })
    .await;
    assert!(listed, "the actor never listed {VM}");
    // Everything handed over so far counts as written.
    let before = persist_rx.borrow().0;
    written_tx.send_replace(before);

    let mut sub = handle
        .submit(
            "root",
            Request::Lock {
                target: LockTarget::Vm(VM.into()),
                reason: "disk swap".into(),
            },
        )
        .await
        .expect("submitted");
    let handed_over = wait_until(T, || {
        let (generation, state) = &*persist_rx.borrow();
        *generation > before && state.locks.contains_key(VM)
    })
    .await;
    assert!(handed_over, "the lock never reached the persister");
    assert!(
        sub.done.try_recv().is_err(),
        "the lock was acknowledged before its state was written"
    );

    let generation = persist_rx.borrow().0;
    written_tx.send_replace(generation);
    let reply = tokio::time::timeout(T, &mut sub.done)
        .await
        .expect("reply once written")
        .expect("reply sent");
    assert!(
        matches!(reply, Ok(Response::Done { .. })),
        "lock reply: {reply:?}"
    );

    stop.cancel();
    let _ = tokio::time::timeout(T, actor).await.expect("actor stops");
}
