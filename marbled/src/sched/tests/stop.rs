//! Stops: the operator's (refused when busy unless forced), graceful then kill, the stop job's
//! last-moment busy gate, and a failed kill.

use super::support::*;

#[test]
fn operator_stop_refuses_busy_or_unknown_unless_forced() {
    let mut host = four(Policy::Manual);
    let start = host.command("admin", Command::StartVm { vm: S1.into() });
    host.settle();
    assert!(host.reply(start).is_ok());
    host.probe_fails
        .insert(S1.into(), "Unable to open new session".into());
    let stop = host.command(
        "admin",
        Command::StopVm {
            vm: S1.into(),
            force: false,
        },
    );
    host.settle();
    assert_eq!(host.err_kind(stop), ErrorKind::Busy);
    assert_eq!(host.running(), vec![S1.to_owned()]);
    host.probe_fails.clear();
    let forced = host.command(
        "admin",
        Command::StopVm {
            vm: S1.into(),
            force: true,
        },
    );
    host.settle();
    assert!(host.reply(forced).is_ok(), "{:?}", host.reply(forced));
    assert!(host.running().is_empty());
}

#[test]
fn graceful_stop_that_is_ignored_ends_in_kill_after_the_timeout() {
    let mut host = four(Policy::Manual);
    let start = host.command("admin", Command::StartVm { vm: S1.into() });
    host.settle();
    assert!(host.reply(start).is_ok());
    let stop = host.command(
        "admin",
        Command::StopVm {
            vm: S1.into(),
            force: false,
        },
    );
    // Probe → idle → graceful stop, which "succeeds" but leaves the VM running.
    assert!(host.complete_one()); // probe
    let (op, vm, action) = host.ops.remove(0);
    assert_eq!(
        (vm.as_str(), &action),
        (S1, &Action::Stop(StopKind::Graceful))
    );
    host.feed(Input::Finished {
        op,
        outcome: Outcome::Done,
    });
    host.inventory();
    assert!(!host.replies.contains_key(&stop));
    host.advance(20_000);
    assert!(
        host.log
            .contains(&(S1.to_owned(), Action::Stop(StopKind::Kill)))
    );
    assert!(host.reply(stop).is_ok());
}

#[test]
fn stop_gate_finding_the_vm_busy_keeps_it_running() {
    let mut host = four(Policy::Manual);
    let start = host.command("admin", Command::StartVm { vm: R1.into() });
    host.settle();
    assert!(host.reply(start).is_ok());
    let stop = host.command(
        "admin",
        Command::StopVm {
            vm: R1.into(),
            force: false,
        },
    );
    assert!(host.complete_one()); // probe: idle
    let (op, vm, action) = host.ops.remove(0);
    assert_eq!(
        (vm.as_str(), &action),
        (R1, &Action::Stop(StopKind::Graceful))
    );
    // GitHub refused to delete the runner (422): a job was just assigned.
    host.feed(Input::Finished {
        op,
        outcome: Outcome::Probe(ProbeResult::Busy("GitHub: runner is running a job".into())),
    });
    host.settle();
    assert_eq!(host.err_kind(stop), ErrorKind::Busy);
    let Err(err) = host.reply(stop) else {
        unreachable!()
    };
    assert!(err.message.contains("GitHub"), "{}", err.message);
    assert_eq!(host.running(), vec![R1.to_owned()]);
    let info = host.world.vms(host.now);
    let r1 = info.iter().find(|v| v.name == R1).unwrap();
    assert!(matches!(r1.busy, BusyState::Busy { .. }), "{:?}", r1.busy);
    assert!(
        r1.operation.is_none(),
        "no stop left pending: {:?}",
        r1.operation
    );
}

#[test]
fn a_failed_kill_does_not_make_a_stopped_vm_grantable() {
    let mut host = four(Policy::Manual);
    let start = host.command("admin", Command::StartVm { vm: S1.into() });
    host.settle();
    assert!(host.reply(start).is_ok());
    host.advance(200_000); // past the operator-start grace
    let stop = host.command(
        "admin",
        Command::StopVm {
            vm: S1.into(),
            force: false,
        },
    );
    assert!(host.complete_one()); // probe: idle
    // The graceful stop takes exactly the timeout: the VM is in fact stopped when the
    // scheduler kills, and the kill fails ("not running").
    let (op, _, action) = host.ops.remove(0);
    assert_eq!(action, Action::Stop(StopKind::Graceful));
    host.power.insert(S1.into(), PowerState::Stopped);
    host.now += 20_000;
    host.feed(Input::Finished {
        op,
        outcome: Outcome::Done,
    });
    let (op, _, action) = host.ops.remove(0);
    assert_eq!(action, Action::Stop(StopKind::Kill));
    let req = host.command("jenkins", slot(S1, 60_000));
    host.feed(Input::Finished {
        op,
        outcome: Outcome::Failed("The VM is not running".into()),
    });
    assert!(
        !matches!(host.replies.get(&req), Some(Ok(Response::SlotGranted(g))) if g.already_running),
        "granted a stopped VM as already running"
    );
    host.settle();
    assert!(host.replies.contains_key(&stop));
    // After the inventory shows it stopped, the request boots it and is granted properly.
    match host.reply(req) {
        Ok(Response::SlotGranted(g)) => assert!(!g.already_running),
        other => panic!("{other:?}"),
    }
    assert_eq!(host.running(), vec![S1.to_owned()]);
}
