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
