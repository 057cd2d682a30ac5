//! The order of the checks on `request-slot` and `vm start` (docs/SCHEDULER.md): a lock, a
//! drain or a quarantine answers 77 before anything else — also for a VM that already runs —
//! a refused request waits (75 when its wait ends), and requests made before the first
//! inventory wait for it instead of calling an existing VM unknown.

use super::support::*;

fn lock(host: &mut Host, vm: &str) {
    host.command(
        "admin",
        Command::Lock {
            target: LockTarget::Vm(vm.into()),
            reason: "disk check".into(),
        },
    );
}

fn drain(host: &mut Host) -> ReqId {
    host.command(
        "admin",
        Command::Drain {
            reason: "maintenance".into(),
            wait_ms: 0,
        },
    )
}

/// A manual host with S1 running and answering, granted to Jenkins.
fn s1_granted() -> Host {
    let mut host = four(Policy::Manual);
    let req = host.command("jenkins", slot(S1, 0));
    host.settle();
    assert!(
        matches!(host.reply(req), Ok(Response::SlotGranted(_))),
        "{:?}",
        host.reply(req)
    );
    host
}

#[test]
fn a_running_locked_vm_is_refused_77_by_request_slot_and_vm_start() {
    let mut host = s1_granted();
    lock(&mut host, S1);
    let leased_until = host.world.leases[S1].until_ms;
    host.advance(10_000);
    let req = host.command("jenkins", slot(S1, 0));
    assert_eq!(
        host.err_kind(req),
        ErrorKind::Locked,
        "{:?}",
        host.reply(req)
    );
    let Err(err) = host.reply(req) else {
        unreachable!()
    };
    assert!(err.message.contains("disk check"), "{}", err.message);
    let start = host.command("admin", Command::StartVm { vm: S1.into() });
    assert_eq!(
        host.err_kind(start),
        ErrorKind::Locked,
        "{:?}",
        host.reply(start)
    );
    // The refusal grants nothing: the grace is the one given before the lock.
    assert_eq!(host.world.leases[S1].until_ms, leased_until);
    // A lock does not stop a running VM.
    assert_eq!(host.running(), vec![S1.to_owned()]);
}

#[test]
fn a_running_quarantined_vm_is_refused_77_by_request_slot_but_an_operator_may_start_it() {
    let mut host = s1_granted();
    host.world.quarantine.insert(
        S1.into(),
        Quarantine {
            until_ms: host.now + 600_000,
            failures: 2,
            last_error: "guest did not answer".into(),
        },
    );
    let req = host.command("jenkins", slot(S1, 0));
    assert_eq!(
        host.err_kind(req),
        ErrorKind::Locked,
        "{:?}",
        host.reply(req)
    );
    // An operator may start a quarantined VM; this one already runs.
    let start = host.command("admin", Command::StartVm { vm: S1.into() });
    assert!(
        matches!(host.reply(start), Ok(Response::Done { .. })),
        "{:?}",
        host.reply(start)
    );
}

#[test]
fn a_draining_host_refuses_its_running_vm_77_and_empties_once_the_job_ends() {
    let mut host = s1_granted();
    host.jobs.insert(S1.into(), "jenkins build #12".into());
    let granted_until = host.world.leases[S1].until_ms;
    drain(&mut host);
    // Jenkins keeps asking for its node while the build runs: every answer is 77 and none
    // renews the grace (a renewed grace would keep the VM up for ever).
    for _ in 0..5 {
        host.advance(60_000);
        let req = host.command("jenkins", slot(S1, 0));
        assert_eq!(
            host.err_kind(req),
            ErrorKind::Locked,
            "{:?}",
            host.reply(req)
        );
        let start = host.command("admin", Command::StartVm { vm: S1.into() });
        assert_eq!(host.err_kind(start), ErrorKind::Locked);
    }
    assert!(
        host.world
            .leases
            .get(S1)
            .is_none_or(|l| l.until_ms <= granted_until)
    );
    assert_eq!(
        host.running(),
        vec![S1.to_owned()],
        "a busy VM is never stopped"
    );
    host.jobs.remove(S1);
    // The drain re-checks a busy VM every busy_recheck: empty within one more.
    host.advance(host.world.config.busy_recheck_ms + 30_000);
    assert!(
        host.running().is_empty(),
        "still running: {:?}",
        host.running()
    );
}

#[test]
fn a_waiting_request_ends_75_and_a_drain_meanwhile_answers_it_77() {
    let mut host = four(Policy::Cycle);
    host.advance(1_000);
    host.jobs.insert(R1.into(), "Runner.Worker".into());
    let busy = host.command("jenkins", slot(S1, 120_000));
    host.settle();
    assert!(!host.replies.contains_key(&busy), "waits");
    host.advance(125_000);
    assert_eq!(
        host.err_kind(busy),
        ErrorKind::Busy,
        "{:?}",
        host.reply(busy)
    );
    let waiting = host.command("jenkins", slot(S1, 600_000));
    host.settle();
    assert!(!host.replies.contains_key(&waiting), "waits");
    drain(&mut host);
    assert_eq!(host.err_kind(waiting), ErrorKind::Locked);
}

fn fresh() -> Host {
    Host::before_inventory(
        World::new(config(Policy::Manual), 1_000_000),
        &[
            (R1, Team::Root, PowerState::Stopped),
            (S1, Team::Spi, PowerState::Stopped),
        ],
    )
}

#[test]
fn a_slot_request_before_the_first_inventory_waits_for_it() {
    let mut host = fresh();
    let req = host.command("jenkins", slot(S1, 60_000));
    host.now += 5_000;
    host.feed(Input::Tick);
    assert!(
        !host.replies.contains_key(&req),
        "{:?}",
        host.replies.get(&req)
    );
    host.inventory();
    host.settle();
    assert!(
        matches!(host.reply(req), Ok(Response::SlotGranted(_))),
        "{:?}",
        host.reply(req)
    );
    assert_eq!(host.running(), vec![S1.to_owned()]);
}

#[test]
fn before_the_first_inventory_a_request_is_75_when_its_wait_ends_and_2_only_once_listed() {
    let mut host = fresh();
    let no_wait = host.command("jenkins", slot(S1, 0));
    assert_eq!(
        host.err_kind(no_wait),
        ErrorKind::Busy,
        "{:?}",
        host.reply(no_wait)
    );
    let Err(err) = host.reply(no_wait) else {
        unreachable!()
    };
    assert!(err.message.contains("first inventory"), "{}", err.message);
    let short = host.command("jenkins", slot(S1, 10_000));
    let unknown = host.command("jenkins", slot("h-SPI-VM-9", 60_000));
    let by_uuid = host.command("jenkins", slot("{UUID-H-SPI-VM-1}", 60_000));
    host.now += 10_000;
    host.feed(Input::Tick);
    assert_eq!(
        host.err_kind(short),
        ErrorKind::Busy,
        "{:?}",
        host.reply(short)
    );
    assert!(!host.replies.contains_key(&unknown));
    host.inventory();
    host.settle();
    assert_eq!(host.err_kind(unknown), ErrorKind::NotFound);
    let Err(err) = host.reply(unknown) else {
        unreachable!()
    };
    assert!(
        err.message.contains(S1),
        "lists the known VMs: {}",
        err.message
    );
    match host.reply(by_uuid) {
        Ok(Response::SlotGranted(grant)) => assert_eq!(grant.vm, S1),
        other => panic!("{other:?}"),
    }
}
