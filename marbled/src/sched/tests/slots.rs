//! Jenkins slot requests: preemption of an idle VM, refusals that name the busy VM, waiting, and
//! one grant among many concurrent requests.

use super::support::*;

#[test]
fn slot_preempts_an_idle_root_vm_and_grants() {
    let mut host = four(Policy::Cycle);
    host.advance(1_000);
    assert_eq!(host.running(), vec![R1.to_owned()]);
    let req = host.command("jenkins", slot(S1, 0));
    host.settle();
    match host.reply(req) {
        Ok(Response::SlotGranted(grant)) => {
            assert_eq!(grant.vm, S1);
            assert!(!grant.already_running);
            assert_eq!(grant.preempted.as_deref(), Some(R1));
        }
        other => panic!("not granted: {other:?}"),
    }
    assert_eq!(host.running(), vec![S1.to_owned()]);
    let stop_at = host
        .log
        .iter()
        .position(|(v, a)| v == R1 && matches!(a, Action::Stop(_)));
    let start_at = host
        .log
        .iter()
        .position(|(v, a)| v == S1 && *a == Action::Start);
    assert!(
        stop_at < start_at,
        "ROOT VM stopped before the SPI VM starts"
    );
    // Idempotent: asking again answers at once, already running.
    let again = host.command("jenkins", slot(S1, 0));
    match host.reply(again) {
        Ok(Response::SlotGranted(grant)) => assert!(grant.already_running),
        other => panic!("{other:?}"),
    }
    // Protected during grace even when idle: the cycle does not take it back.
    host.advance(100_000);
    assert_eq!(host.running(), vec![S1.to_owned()]);
}

#[test]
fn slot_refused_when_busy_names_the_vm_and_job() {
    let mut host = four(Policy::Cycle);
    host.advance(1_000);
    host.jobs.insert(R1.into(), "Runner.Worker pid 812".into());
    let req = host.command("jenkins", slot(S1, 0));
    host.settle();
    let Err(err) = host.reply(req) else {
        panic!("granted")
    };
    assert_eq!(err.kind, ErrorKind::Busy);
    assert!(err.message.contains(R1), "{}", err.message);
    assert!(err.message.contains("Runner.Worker"), "{}", err.message);
    assert!(err.message.contains("root"), "{}", err.message);
    assert_eq!(host.running(), vec![R1.to_owned()]);
}

#[test]
fn slot_with_wait_is_granted_when_the_job_ends() {
    let mut host = four(Policy::Cycle);
    host.advance(1_000);
    host.jobs.insert(R1.into(), "Runner.Worker".into());
    let req = host.command("jenkins", slot(S1, 600_000));
    host.settle();
    assert!(!host.replies.contains_key(&req), "waits");
    host.advance(30_000);
    host.jobs.remove(R1);
    host.advance(120_000);
    assert!(
        matches!(host.reply(req), Ok(Response::SlotGranted(_))),
        "{:?}",
        host.reply(req)
    );
    assert_eq!(host.running(), vec![S1.to_owned()]);
}

#[test]
fn fifty_concurrent_requests_grant_exactly_one() {
    let mut names = vec![(R1.to_owned(), Team::Root)];
    for i in 0..50 {
        names.push((format!("h-SPI-VM-{i:02}"), Team::Spi));
    }
    let vms: Vec<(&str, Team, PowerState)> = names
        .iter()
        .map(|(n, t)| (n.as_str(), *t, PowerState::Stopped))
        .collect();
    let mut host = Host::new(Policy::Cycle, &vms);
    host.advance(1_000);
    let reqs: Vec<ReqId> = (0..50)
        .map(|i| host.command("jenkins", slot(&format!("h-SPI-VM-{i:02}"), 0)))
        .collect();
    host.settle();
    let granted = reqs
        .iter()
        .filter(|r| matches!(host.reply(**r), Ok(Response::SlotGranted(_))))
        .count();
    let busy = reqs
        .iter()
        .filter(|r| matches!(host.reply(**r), Err(e) if e.kind == ErrorKind::Busy))
        .count();
    assert_eq!((granted, busy), (1, 49));
    assert_eq!(host.max_running, 1);
}
