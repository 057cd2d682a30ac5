//! Locks and drain: both refuse new work with `Locked`.

use super::support::*;

#[test]
fn locks_and_drain_refuse_with_locked() {
    let mut host = four(Policy::Manual);
    host.command(
        "admin",
        Command::Lock {
            target: LockTarget::Vm(S1.into()),
            reason: "disk check".into(),
        },
    );
    let req = host.command("jenkins", slot(S1, 0));
    assert_eq!(host.err_kind(req), ErrorKind::Locked);
    let Err(err) = host.reply(req) else {
        unreachable!()
    };
    assert!(
        err.message.contains("admin") && err.message.contains("disk check"),
        "{}",
        err.message
    );
    host.command(
        "admin",
        Command::Unlock {
            target: UnlockTarget::All,
        },
    );
    host.command(
        "admin",
        Command::Drain {
            reason: "maintenance".into(),
            wait_ms: 0,
        },
    );
    let req = host.command("jenkins", slot(S1, 0));
    assert_eq!(host.err_kind(req), ErrorKind::Locked);
    let start = host.command("admin", Command::StartVm { vm: S2.into() });
    assert_eq!(host.err_kind(start), ErrorKind::Locked);
}

/// `marblectl pause` without a reason: the answer names who paused, with no dangling colon
/// (a new user's walk through the demo saw "cycling paused by root: ").
#[test]
fn pause_without_a_reason_says_who_paused_and_nothing_more() {
    let mut host = four(Policy::Cycle);
    let bare = host.command(
        "root",
        Command::Pause {
            reason: String::new(),
        },
    );
    let with_reason = host.command(
        "ops",
        Command::Pause {
            reason: "disk swap".into(),
        },
    );
    let message = |req| match host.reply(req) {
        Ok(Response::Done { message }) => message.clone(),
        other => panic!("expected Done, got {other:?}"),
    };
    assert_eq!(message(bare), "cycling paused by root");
    assert_eq!(message(with_reason), "cycling paused by ops: disk swap");
}
