//! Scenario tests of the scheduler rules, driven through `World::handle` exactly as the
//! actor drives it, with a tiny in-memory host answering the operations.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use marble_proto::{
    BusyState, ErrorKind, LockTarget, PowerState, Response, Team, UnlockTarget, WireError,
};

use super::*;
use super::{DemandSnapshot, FleetRunner, QueuedJob, StartedJob};

/// A host the tests control: power per VM, which VMs run a job, which probes fail.
struct Host {
    world: World,
    now: Millis,
    power: BTreeMap<String, PowerState>,
    teams: BTreeMap<String, Team>,
    jobs: BTreeMap<String, String>,
    probe_fails: BTreeMap<String, String>,
    never_ready: BTreeMap<String, String>,
    ops: Vec<(OpId, String, Action)>,
    replies: BTreeMap<ReqId, Result<Response, WireError>>,
    next_req: u64,
    /// Every Run effect, in order: (vm, action).
    log: Vec<(String, Action)>,
    max_running: usize,
    /// `Effect::RefreshDemand` seen.
    demand_asks: u32,
}

fn config(policy: Policy) -> SchedConfig {
    SchedConfig {
        policy,
        capacity: 1,
        cycle_on_min_ms: 60_000,
        cycle_on_jitter_ms: 60_000,
        cycle_off_window_ms: 60_000,
        busy_recheck_ms: 60_000,
        ready_timeout_ms: 30_000,
        graceful_stop_timeout_ms: 20_000,
        quarantine_after_failures: 2,
        quarantine_base_ms: 300_000,
        quarantine_max_ms: 3_600_000,
        slot_grace_ms: 120_000,
        fairness_bound_ms: 600_000,
        inventory_interval_ms: 30_000,
        decision_log_len: 50,
        seed: 42,
        runner_watchdog_ms: 0,
        // Off unless a test is about warm runners.
        warm: Vec::new(),
        warm_window_ms: 0,
        warm_min_jobs: 2,
        warm_yield_ms: 60_000,
        warm_linger_ms: 3_600_000,
        share_root: 1,
        share_spi: 2,
        max_consecutive: 3,
    }
}

impl Host {
    fn new(policy: Policy, vms: &[(&str, Team, PowerState)]) -> Self {
        Self::with_world(World::new(config(policy), 1_000_000), vms)
    }

    fn with_world(world: World, vms: &[(&str, Team, PowerState)]) -> Self {
        let mut host = Self {
            world,
            now: 1_000_000,
            power: vms
                .iter()
                .map(|(n, _, p)| ((*n).to_owned(), p.clone()))
                .collect(),
            teams: vms.iter().map(|(n, t, _)| ((*n).to_owned(), *t)).collect(),
            jobs: BTreeMap::new(),
            probe_fails: BTreeMap::new(),
            never_ready: BTreeMap::new(),
            ops: Vec::new(),
            replies: BTreeMap::new(),
            next_req: 1,
            log: Vec::new(),
            max_running: 0,
            demand_asks: 0,
        };
        host.inventory();
        host
    }

    fn feed(&mut self, input: Input) {
        let effects = self.world.handle(self.now, input);
        for effect in effects {
            match effect {
                Effect::Run { op, vm, action } => {
                    assert!(
                        !self.ops.iter().any(|(_, v, _)| *v == vm),
                        "two operations in flight on {vm}"
                    );
                    if let Action::Stop(_) = action {
                        // The scheduler's own last answer for this VM must have been idle
                        // (or the operator forced it, which these tests check separately).
                        let info = self.world.vms(self.now);
                        let busy = info.iter().find(|v| v.name == vm).map(|v| v.busy.clone());
                        let forced = self.log.iter().any(|(v, a)| {
                            *v == vm && matches!(a, Action::Stop(StopKind::Graceful))
                        });
                        assert!(
                            forced
                                || matches!(busy, Some(BusyState::Idle { .. }))
                                || self.never_ready.contains_key(&vm)
                                || !self.jobs.contains_key(&vm)
                                    && !self.probe_fails.contains_key(&vm),
                            "stop of {vm} whose last probe was {busy:?}"
                        );
                    }
                    self.log.push((vm.clone(), action.clone()));
                    self.ops.push((op, vm, action));
                }
                Effect::Reply { req, result } => {
                    assert!(self.replies.insert(req, result).is_none(), "second reply");
                }
                Effect::RefreshDemand => self.demand_asks += 1,
                Effect::RefreshInventory
                | Effect::Persist
                | Effect::Emit(_)
                | Effect::Progress { .. } => {}
            }
        }
    }

    fn inventory(&mut self) {
        let vms = self
            .power
            .iter()
            .map(|(name, power)| ObservedVm {
                name: name.clone(),
                uuid: format!("uuid-{name}"),
                power: power.clone(),
                team: self.teams[name],
                labels: super::runner_labels(name),
            })
            .collect();
        self.feed(Input::Inventory(vms));
    }

    fn running(&self) -> Vec<String> {
        self.power
            .iter()
            .filter(|(_, p)| p.occupies_host())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Answer the oldest operation the way this host behaves.
    fn complete_one(&mut self) -> bool {
        if self.ops.is_empty() {
            return false;
        }
        let (op, vm, action) = self.ops.remove(0);
        let outcome = match &action {
            Action::Start | Action::Resume => {
                self.power.insert(vm.clone(), PowerState::Running);
                Outcome::Done
            }
            Action::Stop(_) => {
                assert!(!self.jobs.contains_key(&vm), "stopped {vm} while a job ran");
                self.power.insert(vm.clone(), PowerState::Stopped);
                Outcome::Done
            }
            Action::Probe(_) => Outcome::Probe(if let Some(err) = self.probe_fails.get(&vm) {
                ProbeResult::Unknown(err.clone())
            } else if let Some(job) = self.jobs.get(&vm) {
                ProbeResult::Busy(job.clone())
            } else {
                ProbeResult::Idle
            }),
            Action::WaitReady { .. } => match self.never_ready.get(&vm) {
                Some(err) => Outcome::Failed(err.clone()),
                None => Outcome::Done,
            },
        };
        self.max_running = self.max_running.max(self.running().len());
        self.feed(Input::Finished { op, outcome });
        true
    }

    fn settle(&mut self) {
        for _ in 0..200 {
            if !self.complete_one() {
                self.inventory();
                if self.ops.is_empty() {
                    return;
                }
            }
        }
        panic!("operations never settled: {:?}", self.ops);
    }

    fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        loop {
            self.settle();
            match self.world.next_deadline() {
                Some(at) if at <= end => {
                    self.now = at.max(self.now);
                    self.feed(Input::Tick);
                }
                _ => break,
            }
        }
        self.now = end;
        self.feed(Input::Tick);
        self.settle();
    }

    fn command(&mut self, caller: &str, cmd: Command) -> ReqId {
        let req = ReqId(self.next_req);
        self.next_req += 1;
        self.feed(Input::Command {
            req,
            caller: caller.into(),
            cmd,
        });
        req
    }

    fn reply(&self, req: ReqId) -> &Result<Response, WireError> {
        self.replies.get(&req).expect("request answered")
    }

    fn err_kind(&self, req: ReqId) -> ErrorKind {
        match self.reply(req) {
            Err(err) => err.kind,
            Ok(ok) => panic!("expected an error, got {ok:?}"),
        }
    }
}

fn slot(vm: &str, wait_ms: u64) -> Command {
    Command::RequestSlot {
        vm: vm.into(),
        wait_ms,
    }
}

const R1: &str = "h-ROOT-VM-1";
const R2: &str = "h-ROOT-VM-2";
const S1: &str = "h-SPI-VM-1";
const S2: &str = "h-SPI-VM-2";

fn four(policy: Policy) -> Host {
    Host::new(
        policy,
        &[
            (R1, Team::Root, PowerState::Stopped),
            (R2, Team::Root, PowerState::Stopped),
            (S1, Team::Spi, PowerState::Stopped),
            (S2, Team::Spi, PowerState::Stopped),
        ],
    )
}

#[test]
fn cycle_round_robins_root_vms_one_at_a_time() {
    let mut host = four(Policy::Cycle);
    let mut started = Vec::new();
    for _ in 0..40 {
        host.advance(10_000);
        assert!(
            host.running().len() <= 1,
            "two VMs running: {:?}",
            host.running()
        );
    }
    for (vm, action) in &host.log {
        if *action == Action::Start {
            started.push(vm.clone());
        }
    }
    assert!(started.len() >= 2, "cycled: {started:?}");
    assert_eq!(started[0], R1);
    assert_eq!(started[1], R2);
    assert!(started.iter().all(|vm| vm.contains("ROOT")), "{started:?}");
    // Graceful stops only (the VMs were idle and stopped at once).
    assert!(
        host.log
            .iter()
            .all(|(_, a)| *a != Action::Stop(StopKind::Kill))
    );
}

#[test]
fn cycle_keeps_busy_and_unknown_vms_running() {
    let mut host = four(Policy::Cycle);
    host.advance(1_000);
    assert_eq!(host.running(), vec![R1.to_owned()]);
    host.jobs.insert(R1.into(), "Runner.Worker pid 812".into());
    host.advance(600_000);
    assert_eq!(host.running(), vec![R1.to_owned()], "busy VM kept");
    host.jobs.remove(R1);
    host.probe_fails.insert(R1.into(), "exec failed".into());
    host.advance(600_000);
    assert_eq!(host.running(), vec![R1.to_owned()], "unknown VM kept");
    host.probe_fails.remove(R1);
    host.advance(130_000);
    assert!(!host.running().contains(&R1.to_owned()), "idle VM stopped");
}

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
fn readiness_failures_quarantine_instead_of_looping() {
    let mut host = Host::new(Policy::Cycle, &[(R1, Team::Root, PowerState::Stopped)]);
    host.never_ready
        .insert(R1.into(), "Runner.Listener not running".into());
    host.advance(3_600_000);
    let starts = host.log.iter().filter(|(_, a)| *a == Action::Start).count();
    // Two failures → 5 min, then 10, 20, 40 min back-off: a handful of starts in an hour.
    assert!((2..=5).contains(&starts), "starts in an hour: {starts}");
    let status = host.world.status(host.now);
    assert!(
        status.vms[0].note.contains("quarantined"),
        "{}",
        status.vms[0].note
    );
}

#[test]
fn restore_keeps_locks_and_marks_in_flight_ops_for_reconcile() {
    let mut host = four(Policy::Cycle);
    host.command(
        "ops",
        Command::Lock {
            target: LockTarget::Vm(R2.into()),
            reason: "replacing".into(),
        },
    );
    host.advance(1_000);
    // A start is in flight when the daemon dies.
    assert!(host.world.persisted().locks.contains_key(R2));
    let mut persisted = host.world.persisted();
    persisted.in_flight.insert(
        S2.into(),
        persist::InFlightOp {
            operation: "start".into(),
            since_ms: host.now,
        },
    );
    let restored = World::restore(config(Policy::Cycle), persisted, host.now + 5_000);
    let mut after = Host::with_world(
        restored,
        &[
            (R1, Team::Root, PowerState::Running),
            (R2, Team::Root, PowerState::Stopped),
            (S1, Team::Spi, PowerState::Stopped),
            (S2, Team::Spi, PowerState::Running),
        ],
    );
    after.now = host.now + 5_000;
    let status = after.world.status(after.now);
    assert!(
        status.vms.iter().any(|v| v.name == R2 && v.lock.is_some()),
        "lock kept"
    );
    assert!(
        status
            .decisions
            .iter()
            .any(|d| d.vm.as_deref() == Some(S2) && d.text.contains("reconciled")),
        "{:?}",
        status.decisions
    );
    // Over capacity after the crash: nothing else starts, idle VMs are cycled down.
    after.advance(400_000);
    assert!(after.running().len() <= 1, "{:?}", after.running());
    assert!(after.world.persisted().in_flight.is_empty());
}

#[test]
fn unknown_state_before_first_inventory_starts_nothing() {
    let mut world = World::new(config(Policy::Cycle), 0);
    let fx = world.handle(1, Input::Tick);
    assert!(
        fx.iter().all(|e| !matches!(e, Effect::Run { .. })),
        "{fx:?}"
    );
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
fn a_vm_whose_guest_never_answers_is_stopped_and_quarantined() {
    let mut host = Host::new(
        Policy::Cycle,
        &[
            (R1, Team::Root, PowerState::Stopped),
            (R2, Team::Root, PowerState::Stopped),
        ],
    );
    host.never_ready
        .insert(R1.into(), "Unable to open new session".into());
    host.probe_fails
        .insert(R1.into(), "Unable to open new session".into());
    host.advance(3_600_000);
    // R1 never holds the host for long: it is stopped after each failed boot and
    // quarantined, and R2 gets cycled meanwhile.
    let r2_starts = host
        .log
        .iter()
        .filter(|(v, a)| v == R2 && *a == Action::Start)
        .count();
    assert!(r2_starts >= 5, "R2 started {r2_starts} times in an hour");
    let status = host.world.status(host.now);
    let r1 = status.vms.iter().find(|v| v.name == R1).unwrap();
    assert!(
        r1.note.contains("quarantined") || r1.power == PowerState::Stopped,
        "{r1:?}"
    );
}

#[test]
fn a_vm_found_running_with_a_silent_guest_is_never_stopped_on_a_guess() {
    let mut host = Host::new(Policy::Cycle, &[(R1, Team::Root, PowerState::Running)]);
    host.never_ready
        .insert(R1.into(), "Unable to open new session".into());
    host.probe_fails
        .insert(R1.into(), "Unable to open new session".into());
    host.advance(3_600_000);
    assert_eq!(host.running(), vec![R1.to_owned()]);
    assert!(!host.log.iter().any(|(_, a)| matches!(a, Action::Stop(_))));
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

#[test]
fn operations_the_actor_did_not_run_are_not_failures_and_do_not_spin() {
    let mut host = four(Policy::Cycle);
    // The actor refuses every start (an image transfer holds the host).
    let mut refused = 0;
    for _ in 0..50 {
        let Some(pos) = host.ops.iter().position(|(_, _, a)| *a == Action::Start) else {
            host.now += 1_000;
            host.feed(Input::Tick);
            continue;
        };
        let (op, _, _) = host.ops.remove(pos);
        host.feed(Input::Finished {
            op,
            outcome: Outcome::NotRun("not run: host held by an image push".into()),
        });
        refused += 1;
        host.now += 1_000;
        host.feed(Input::Tick);
    }
    // One attempt per re-check interval (60 s), not one per tick.
    assert!(
        (1..=2).contains(&refused),
        "start attempts in 50 s: {refused}"
    );
    assert!(
        host.world.persisted().quarantine.is_empty(),
        "not counted as failures"
    );
}

const M14: &str = "h-ROOT-VM-macOS-14";
const M15: &str = "h-ROOT-VM-macOS-15";

fn job(id: u64, since_ms: Millis, mac: &str) -> QueuedJob {
    QueuedJob {
        id,
        since_ms,
        labels: vec!["self-hosted".into(), "macOS".into(), mac.into()],
    }
}

fn demand_host() -> Host {
    Host::new(
        Policy::Demand,
        &[
            (M14, Team::Root, PowerState::Stopped),
            (M15, Team::Root, PowerState::Stopped),
            (S1, Team::Spi, PowerState::Stopped),
        ],
    )
}

/// A demand host that has booted the mac15 VM for queued job 7 (mac15).
fn booted_for_job_7() -> Host {
    let mut host = demand_host();
    host.feed(Input::Demand(DemandSnapshot {
        root_jobs: vec![job(7, host.now, "mac15")],
        ..Default::default()
    }));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    host
}

#[test]
fn demand_boots_nothing_when_nothing_waits() {
    let mut host = demand_host();
    host.feed(Input::Demand(DemandSnapshot::default()));
    host.advance(600_000);
    assert!(host.log.is_empty(), "{:?}", host.log);
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions.iter().any(|d| d.text.contains("no queued job")),
        "{decisions:?}"
    );
}

#[test]
fn demand_boots_the_vm_whose_labels_cover_the_job_and_stops_it_after_its_job() {
    let mut host = demand_host();
    host.feed(Input::Demand(DemandSnapshot {
        root_jobs: vec![job(7, host.now - 5_000, "mac15")],
        free_runners: vec![],
        ..Default::default()
    }));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    // Its runner takes the job: busy; the job leaves the queue.
    host.jobs.insert(M15.into(), "Runner.Worker".into());
    host.feed(Input::Demand(DemandSnapshot::default()));
    host.advance(120_000);
    assert_eq!(host.running(), vec![M15.to_owned()], "kept while busy");
    host.jobs.remove(M15);
    host.advance(120_000);
    assert!(host.running().is_empty(), "stopped after its one job");
    let boots = host.log.iter().filter(|(_, a)| *a == Action::Start).count();
    assert_eq!(boots, 1, "nothing boots when nothing waits");
}

#[test]
fn a_runner_whose_job_went_elsewhere_stays_a_spare_for_the_warm_linger() {
    // Test config: no prediction, warm_linger 1 h, cycle_on_min 1 min.
    let mut host = booted_for_job_7();
    // Another runner took job 7 while this one booted.
    host.feed(Input::Demand(DemandSnapshot::default()));
    host.advance(30 * 60_000);
    assert_eq!(
        host.running(),
        vec![M15.to_owned()],
        "kept past cycle_on_min: its boot is not thrown away"
    );
    host.advance(31 * 60_000);
    assert!(host.running().is_empty(), "stopped once the linger ended");
    let boots = host.log.iter().filter(|(_, a)| *a == Action::Start).count();
    assert_eq!(boots, 1);
}

#[test]
fn only_a_free_host_under_demand_watches_for_new_runs() {
    let mut host = demand_host();
    assert!(host.world.watches_demand(), "free host");
    host.feed(Input::Demand(DemandSnapshot {
        root_jobs: vec![job(7, host.now, "mac15")],
        ..Default::default()
    }));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    assert!(
        !host.world.watches_demand(),
        "a VM runs: a new job would cost a stop"
    );

    let cycle = four(Policy::Cycle);
    assert!(
        !cycle.world.watches_demand(),
        "policy cycle does not read demand"
    );

    let mut draining = demand_host();
    draining.command(
        "admin",
        Command::Drain {
            reason: "maintenance".into(),
            wait_ms: 0,
        },
    );
    assert!(
        !draining.world.watches_demand(),
        "a draining host boots nothing"
    );

    let mut asked = demand_host();
    asked.command("jenkins", slot(S1, 60_000));
    assert!(!asked.world.watches_demand(), "a slot request has the host");
}

#[test]
fn demand_does_not_boot_for_a_job_a_free_fleet_runner_will_take() {
    let mut host = demand_host();
    host.feed(Input::Demand(DemandSnapshot {
        root_jobs: vec![job(1, host.now, "mac14"), job(2, host.now + 1, "mac14")],
        free_runners: vec![FleetRunner {
            name: "other-host-ROOT-VM-macOS-14".into(),
            labels: super::runner_labels("x-macOS-14"),
        }],
        ..Default::default()
    }));
    host.settle();
    // One of the two jobs is covered by the other host's runner: boot exactly one VM.
    assert_eq!(host.running(), vec![M14.to_owned()]);
    assert_eq!(host.world.unmet_jobs().len(), 1);
}

#[test]
fn demand_lets_an_idle_spi_vm_go_for_an_unmet_root_job_after_its_grace() {
    let mut host = demand_host();
    let req = host.command("jenkins", slot(S1, 0));
    host.settle();
    assert!(matches!(host.reply(req), Ok(Response::SlotGranted(_))));
    host.feed(Input::Demand(DemandSnapshot {
        root_jobs: vec![job(3, host.now, "mac14")],
        free_runners: vec![],
        ..Default::default()
    }));
    host.advance(60_000);
    assert_eq!(
        host.running(),
        vec![S1.to_owned()],
        "protected during the grace"
    );
    let asks_before = host.demand_asks;
    host.advance(200_000);
    assert!(
        host.running().is_empty(),
        "idle SPI VM gave way: {:?}",
        host.running()
    );
    assert_eq!(
        host.demand_asks,
        asks_before + 1,
        "the freed host asks once for a fresh snapshot instead of waiting for the next poll"
    );
    // The host boots only on a snapshot taken after it became free.
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.text.contains("fresh demand snapshot")),
        "{decisions:?}"
    );
    host.feed(Input::Demand(DemandSnapshot {
        root_jobs: vec![job(3, host.now - 260_000, "mac14")],
        free_runners: vec![],
        ..Default::default()
    }));
    host.settle();
    assert_eq!(
        host.running(),
        vec![M14.to_owned()],
        "idle SPI VM gave way to ROOT"
    );
}

#[test]
fn registration_watchdog_recycles_a_runner_that_takes_no_waiting_job() {
    let mut cfg = config(Policy::Manual);
    cfg.runner_watchdog_ms = 600_000;
    let world = World::new(cfg, 1_000_000);
    let mut host = Host::with_world(world, &[(M15, Team::Root, PowerState::Stopped)]);
    let start = host.command("admin", Command::StartVm { vm: M15.into() });
    host.settle();
    assert!(host.reply(start).is_ok());
    // A mac15 job waits, but the runner never gets it.
    host.feed(Input::Demand(DemandSnapshot {
        root_jobs: vec![job(9, host.now - 1_000, "mac15")],
        free_runners: vec![],
        ..Default::default()
    }));
    host.advance(500_000);
    assert_eq!(
        host.running(),
        vec![M15.to_owned()],
        "not before the timeout"
    );
    host.advance(200_000);
    assert!(host.running().is_empty(), "recycled after the timeout");
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions.iter().any(|d| d.text.starts_with("watchdog:")),
        "{decisions:?}"
    );

    // A runner that takes the job is left alone.
    let start = host.command("admin", Command::StartVm { vm: M15.into() });
    host.settle();
    assert!(host.reply(start).is_ok());
    host.feed(Input::Demand(DemandSnapshot {
        root_jobs: vec![job(10, host.now - 1_000, "mac15")],
        free_runners: vec![],
        ..Default::default()
    }));
    host.jobs.insert(M15.into(), "Runner.Worker".into());
    host.advance(900_000);
    assert_eq!(host.running(), vec![M15.to_owned()], "busy runner kept");
}

/// A `demand` host with `vms`, its config changed by `configure`.
fn demand_host_with(
    configure: impl FnOnce(&mut SchedConfig),
    vms: &[(&str, Team, PowerState)],
) -> Host {
    let mut config = config(Policy::Demand);
    configure(&mut config);
    Host::with_world(World::new(config, 1_000_000), vms)
}

fn warm_host(configure: impl FnOnce(&mut SchedConfig)) -> Host {
    demand_host_with(
        configure,
        &[
            (M14, Team::Root, PowerState::Stopped),
            (M15, Team::Root, PowerState::Stopped),
            (S1, Team::Spi, PowerState::Stopped),
        ],
    )
}

fn mac_labels(mac: &str) -> Vec<String> {
    job(0, 0, mac).labels
}

#[test]
fn prediction_keeps_a_warm_runner_for_a_label_set_with_recent_jobs_and_only_then() {
    let mut host = warm_host(|c| {
        c.warm_window_ms = 3_600_000;
        c.warm_min_jobs = 2;
    });
    // One mac15 job seen in the window: below `warm_min_jobs`, nothing boots.
    host.feed(Input::Demand(DemandSnapshot {
        running_jobs: vec![job(1, host.now - 600_000, "mac15")],
        ..Default::default()
    }));
    host.advance(60_000);
    assert!(host.running().is_empty(), "{:?}", host.log);
    // A second one (seen running: a warm runner elsewhere took it between polls).
    host.feed(Input::Demand(DemandSnapshot {
        running_jobs: vec![job(2, host.now - 1_000, "mac15")],
        ..Default::default()
    }));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.text.contains("warm runner") && d.text.contains("predicted: 2 job(s)")),
        "{decisions:?}"
    );
    // No job comes: it stays warm past the on-time (a job-booted VM would be stopped).
    host.advance(30 * 60_000);
    assert_eq!(host.running(), vec![M15.to_owned()], "kept warm");
    // Its runner is now in the fleet list: the target is filled, nothing else boots.
    host.feed(Input::Demand(DemandSnapshot {
        free_runners: vec![FleetRunner {
            name: M15.into(),
            labels: mac_labels("mac15"),
        }],
        ..Default::default()
    }));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    let boots = host.log.iter().filter(|(_, a)| *a == Action::Start).count();
    assert_eq!(boots, 1);
}

#[test]
fn a_free_runner_elsewhere_fills_the_warm_target_so_this_host_boots_nothing() {
    let mut host = warm_host(|c| {
        c.warm = vec![super::WarmTarget {
            labels: mac_labels("mac14"),
            count: 1,
        }];
    });
    host.feed(Input::Demand(DemandSnapshot {
        free_runners: vec![FleetRunner {
            name: "other-ROOT-VM-macOS-14".into(),
            labels: super::runner_labels("x-macOS-14"),
        }],
        ..Default::default()
    }));
    host.advance(60_000);
    assert!(host.running().is_empty(), "{:?}", host.log);
    // That runner takes a queued job: the fleet is one short, this host boots one.
    host.feed(Input::Demand(DemandSnapshot::default()));
    host.settle();
    assert_eq!(host.running(), vec![M14.to_owned()]);
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.text.contains("configured: 1 warm") && d.text.contains("0 of 1 idle")),
        "{decisions:?}"
    );
}

#[test]
fn a_warm_runner_gives_way_to_an_unmet_job_it_cannot_take_after_the_yield_time() {
    let mut host = warm_host(|c| {
        c.warm = vec![super::WarmTarget {
            labels: mac_labels("mac15"),
            count: 1,
        }];
        c.warm_yield_ms = 60_000;
    });
    host.feed(Input::Demand(DemandSnapshot::default()));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    // A mac14 job: a free host elsewhere may take it first, so the warm runner waits.
    let since = host.now;
    host.feed(Input::Demand(DemandSnapshot {
        root_jobs: vec![job(9, since, "mac14")],
        ..Default::default()
    }));
    host.advance(30_000);
    assert_eq!(
        host.running(),
        vec![M15.to_owned()],
        "not before the yield time"
    );
    host.advance(60_000);
    assert!(
        host.running().is_empty(),
        "warm runner gave way: {:?}",
        host.running()
    );
    // Probe first, as every stop.
    let probed = host
        .log
        .iter()
        .rposition(|(v, a)| v == M15 && matches!(a, Action::Probe(_)));
    let stopped = host
        .log
        .iter()
        .rposition(|(v, a)| v == M15 && matches!(a, Action::Stop(_)));
    assert!(probed < stopped, "{:?}", host.log);
    host.feed(Input::Demand(DemandSnapshot {
        root_jobs: vec![job(9, since, "mac14")],
        ..Default::default()
    }));
    host.settle();
    assert_eq!(host.running(), vec![M14.to_owned()]);
}

#[test]
fn a_slot_request_takes_the_host_from_an_idle_warm_runner() {
    let mut host = warm_host(|c| {
        c.warm = vec![super::WarmTarget {
            labels: mac_labels("mac15"),
            count: 1,
        }];
    });
    host.feed(Input::Demand(DemandSnapshot::default()));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    let req = host.command("jenkins", slot(S1, 0));
    host.settle();
    assert!(
        matches!(host.reply(req), Ok(Response::SlotGranted(_))),
        "{:?}",
        host.reply(req)
    );
    assert_eq!(host.running(), vec![S1.to_owned()]);
}

fn share_host(configure: impl FnOnce(&mut SchedConfig)) -> Host {
    demand_host_with(
        configure,
        &[
            (M14, Team::Root, PowerState::Stopped),
            (S1, Team::Spi, PowerState::Stopped),
            (S2, Team::Spi, PowerState::Stopped),
        ],
    )
}

#[test]
fn fair_share_gives_the_freed_host_to_the_longer_weighted_wait() {
    // The ageing bound out of the way: the weights decide.
    let mut host = share_host(|c| c.fairness_bound_ms = 7_200_000);
    // S1 runs a Jenkins build; a mac14 job queues behind it.
    let first = host.command("jenkins", slot(S1, 0));
    host.settle();
    assert!(matches!(host.reply(first), Ok(Response::SlotGranted(_))));
    host.jobs.insert(S1.into(), "jenkins build".into());
    let queued_at = host.now;
    let snapshot = DemandSnapshot {
        root_jobs: vec![job(4, queued_at, "mac14")],
        ..Default::default()
    };
    host.feed(Input::Demand(snapshot.clone()));
    host.advance(20 * 60_000);
    // Twenty minutes later Jenkins asks for S2 and waits; then S1's build ends.
    let second = host.command("jenkins", slot(S2, 3_600_000));
    host.advance(60_000);
    host.jobs.remove(S1);
    host.advance(5 * 60_000);
    host.feed(Input::Demand(snapshot.clone()));
    host.settle();
    // ROOT waited 26 min × 1 against Jenkins' 6 min × 2: ROOT's turn.
    assert_eq!(host.running(), vec![M14.to_owned()], "{:?}", host.log);
    assert!(
        !host.replies.contains_key(&second),
        "Jenkins waits its turn"
    );
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.text.contains("fair share: root goes")),
        "{decisions:?}"
    );
    // The job runs and ends; the queue is empty: Jenkins gets the host.
    host.jobs.insert(M14.into(), "Runner.Worker".into());
    host.feed(Input::Demand(DemandSnapshot::default()));
    host.advance(10 * 60_000);
    host.jobs.remove(M14);
    host.advance(5 * 60_000);
    assert!(
        matches!(host.reply(second), Ok(Response::SlotGranted(_))),
        "{:?}",
        host.reply(second)
    );
    assert_eq!(host.running(), vec![S2.to_owned()]);
}

/// S1 holds the host with a build; Jenkins waits for S2; a mac14 job is queued since
/// `root_since`. Returns the host and the time the Jenkins request was made.
fn contended(configure: impl FnOnce(&mut SchedConfig), root_since_ago: u64) -> (Host, Millis) {
    let mut host = share_host(configure);
    let first = host.command("jenkins", slot(S1, 0));
    host.settle();
    assert!(matches!(host.reply(first), Ok(Response::SlotGranted(_))));
    host.jobs.insert(S1.into(), "jenkins build".into());
    let _waiting = host.command("jenkins", slot(S2, 3_600_000));
    host.settle();
    let asked = host.now;
    host.feed(Input::Demand(DemandSnapshot {
        root_jobs: vec![job(5, asked - root_since_ago, "mac14")],
        ..Default::default()
    }));
    (host, asked)
}

#[test]
fn fair_share_weights_favour_jenkins_until_root_waits_age_past_the_bound() {
    let (host, asked) = contended(
        |c| {
            c.share_root = 0;
            c.max_consecutive = 0;
        },
        60_000,
    );
    let turn = host.world.share_turn(asked + 60_000).expect("both wait");
    assert_eq!(turn.team, Team::Spi, "{}", turn.why);
    // Weight 0 delays ROOT but never starves it: past fairness_bound it goes first (its
    // job is older than Jenkins' request).
    let later = asked + host.world.config.fairness_bound_ms;
    let turn = host.world.share_turn(later).expect("both wait");
    assert_eq!(turn.team, Team::Root, "{}", turn.why);
    assert!(turn.why.contains("fairness_bound"), "{}", turn.why);
}

#[test]
fn fair_share_caps_consecutive_turns_while_the_other_team_waits() {
    let (mut host, asked) = contended(|c| c.max_consecutive = 2, 0);
    let now = asked + 60_000;
    // Jenkins has the longer weighted wait…
    assert_eq!(host.world.share_turn(now).map(|t| t.team), Some(Team::Spi));
    // …but took the host twice in a row while ROOT waited: ROOT's turn.
    host.world.note_turn(Team::Spi, true);
    host.world.note_turn(Team::Spi, true);
    let turn = host.world.share_turn(now).expect("both wait");
    assert_eq!(turn.team, Team::Root, "{}", turn.why);
    assert!(turn.why.contains("2 times in a row"), "{}", turn.why);
    // An uncontested turn ends the streak.
    host.world.note_turn(Team::Spi, false);
    assert_eq!(host.world.share_turn(now).map(|t| t.team), Some(Team::Spi));
}

/// The daemon restarts after `down_ms`: a new world from `host`'s state file (after `edit`),
/// the same VMs in the same power states, the same jobs running.
fn restart(host: &Host, down_ms: u64, edit: impl FnOnce(&mut Persisted)) -> Host {
    let mut persisted = host.world.persisted();
    edit(&mut persisted);
    let later = host.now + down_ms;
    let restored = World::restore(host.world.config().clone(), persisted, later);
    let vms: Vec<(&str, Team, PowerState)> = host
        .power
        .iter()
        .map(|(name, power)| (name.as_str(), host.teams[name], power.clone()))
        .collect();
    let mut after = Host::with_world(restored, &vms);
    after.now = later;
    after.jobs = host.jobs.clone();
    after
}

fn starts_and_stops(host: &Host) -> Vec<(String, Action)> {
    host.log
        .iter()
        .filter(|(_, a)| matches!(a, Action::Start | Action::Stop(_)))
        .cloned()
        .collect()
}

#[test]
fn a_restart_keeps_the_warm_runner_prediction() {
    let warm = |c: &mut SchedConfig| {
        c.warm_window_ms = 3_600_000;
        c.warm_min_jobs = 2;
    };
    let mut host = warm_host(warm);
    host.feed(Input::Demand(DemandSnapshot {
        running_jobs: vec![
            job(1, host.now - 600_000, "mac15"),
            job(2, host.now - 1_000, "mac15"),
        ],
        ..Default::default()
    }));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    // The Mac rebooted: the daemon starts again with every VM stopped, and GitHub shows no
    // job any more (both finished).
    host.power.insert(M15.into(), PowerState::Stopped);
    let mut after = restart(&host, 5_000, |_| {});
    after.feed(Input::Demand(DemandSnapshot::default()));
    after.settle();
    assert_eq!(after.running(), vec![M15.to_owned()], "{:?}", after.log);
    let decisions = after.world.status(after.now).decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.text.contains("warm runner") && d.text.contains("predicted: 2 job(s)")),
        "{decisions:?}"
    );
    // A daemon that forgot the history boots nothing.
    let mut forgetful = restart(&host, 5_000, |state| state.seen_jobs.clear());
    forgetful.feed(Input::Demand(DemandSnapshot::default()));
    forgetful.advance(60_000);
    assert!(forgetful.running().is_empty(), "{:?}", forgetful.log);
    // History that left the window while the daemon was down is dropped at once, not kept
    // (and written back) until the first demand snapshot.
    let window = host.world.config().warm_window_ms;
    assert_eq!(
        restart(&host, 5_000, |_| {})
            .world
            .persisted()
            .seen_jobs
            .len(),
        2
    );
    let stale = restart(&host, window, |_| {});
    assert!(stale.world.persisted().seen_jobs.is_empty());
}

#[test]
fn a_restart_keeps_a_spare_runner_for_the_rest_of_its_linger() {
    // Test config: no prediction, warm_linger 1 h.
    let mut host = booted_for_job_7();
    // Another runner took job 7; ten minutes later the daemon restarts.
    host.feed(Input::Demand(DemandSnapshot::default()));
    host.advance(10 * 60_000);
    let mut after = restart(&host, 5_000, |_| {});
    after.feed(Input::Demand(DemandSnapshot::default()));
    after.advance(30 * 60_000);
    assert_eq!(
        after.running(),
        vec![M15.to_owned()],
        "its boot is not thrown away: {:?}",
        after.log
    );
    let decisions = after.world.status(after.now).decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.text.contains("found running; booted at")
                && d.text.contains("for queued job #7")),
        "{decisions:?}"
    );
    after.advance(25 * 60_000);
    assert!(after.running().is_empty(), "stopped once the linger ended");
    // A daemon that forgot why it runs stops it at once.
    let mut forgetful = restart(&host, 5_000, |state| state.runners.clear());
    forgetful.feed(Input::Demand(DemandSnapshot::default()));
    forgetful.advance(5 * 60_000);
    assert!(forgetful.running().is_empty(), "{:?}", forgetful.log);
}

#[test]
fn a_restart_does_not_keep_a_used_runner_for_another_job() {
    let mut host = booted_for_job_7();
    // Its runner takes job 7; a probe sees it busy; then the daemon restarts.
    host.jobs.insert(M15.into(), "Runner.Worker".into());
    host.feed(Input::Demand(DemandSnapshot::default()));
    host.advance(2 * 60_000);
    let queued = DemandSnapshot {
        root_jobs: vec![job(8, host.now, "mac15")],
        ..Default::default()
    };
    let mut after = restart(&host, 5_000, |_| {});
    after.feed(Input::Demand(queued.clone()));
    after.advance(2 * 60_000);
    assert!(starts_and_stops(&after).is_empty(), "busy: kept");
    // Job 7 ends. Job 8 is queued for the same labels, but GitHub will not give it to a used
    // single-use runner: stopped, then booted afresh for job 8.
    after.jobs.remove(M15);
    after.advance(3 * 60_000);
    after.feed(Input::Demand(queued.clone()));
    after.settle();
    let ops = starts_and_stops(&after);
    assert!(
        matches!(ops.as_slice(), [(stop, Action::Stop(_)), (start, Action::Start)] if stop == M15 && start == M15),
        "{ops:?}"
    );
    // A daemon that forgot the runner was used keeps it for job 8, which never comes to it.
    let mut forgetful = restart(&host, 5_000, |state| state.runners.clear());
    forgetful.feed(Input::Demand(queued));
    forgetful.jobs.remove(M15);
    forgetful.advance(5 * 60_000);
    assert!(
        starts_and_stops(&forgetful).is_empty(),
        "{:?}",
        forgetful.log
    );
}

#[test]
fn a_restart_keeps_the_fair_share_streak() {
    let (mut host, asked) = contended(|c| c.max_consecutive = 2, 0);
    host.world.note_turn(Team::Spi, true);
    host.world.note_turn(Team::Spi, true);
    let mut after = restart(&host, 5_000, |_| {});
    // Jenkins' start script asks again; the ROOT job still waits.
    after.command("jenkins", slot(S2, 3_600_000));
    after.settle();
    after.feed(Input::Demand(DemandSnapshot {
        root_jobs: vec![job(5, asked, "mac14")],
        ..Default::default()
    }));
    let now = after.now + 60_000;
    let turn = after.world.share_turn(now).expect("both wait");
    assert_eq!(turn.team, Team::Root, "{}", turn.why);
    assert!(turn.why.contains("2 times in a row"), "{}", turn.why);
    // Without the streak, Jenkins' longer weighted wait would go first.
    let mut forgetful = restart(&host, 5_000, |state| state.streak = None);
    forgetful.command("jenkins", slot(S2, 3_600_000));
    forgetful.settle();
    forgetful.feed(Input::Demand(DemandSnapshot {
        root_jobs: vec![job(5, asked, "mac14")],
        ..Default::default()
    }));
    assert_eq!(
        forgetful.world.share_turn(now).map(|t| t.team),
        Some(Team::Spi)
    );
}

#[test]
fn boot_times_are_measured_from_the_start_to_the_guest_answering() {
    let mut host = four(Policy::Manual);
    host.command("admin", Command::StartVm { vm: R1.into() });
    assert!(host.complete_one(), "the start runs");
    // The guest answers 70 s after the start was issued.
    host.now += 70_000;
    assert!(host.complete_one(), "the readiness wait ends");
    assert_eq!(host.running(), vec![R1.to_owned()]);
    let boots = &host.world.counters().boot_times;
    assert_eq!((boots.count, boots.sum_ms), (1, 70_000));
    let le = |secs: u64| {
        let i = BOOT_BUCKETS_SECS
            .iter()
            .position(|b| *b == secs)
            .expect("a bucket bound");
        boots.at_or_under(i)
    };
    assert_eq!((le(60), le(90), le(300)), (0, 1, 1));

    // A boot whose guest never answers has no boot time; it is a failure.
    host.never_ready.insert(R2.into(), "guest silent".into());
    host.command(
        "admin",
        Command::StopVm {
            vm: R1.into(),
            force: false,
        },
    );
    host.settle();
    host.command("admin", Command::StartVm { vm: R2.into() });
    host.settle();
    let counters = host.world.counters();
    assert_eq!(counters.boot_times.count, 1, "{:?}", counters.boot_times);
    assert!(counters.boot_failures >= 1);
}

#[test]
fn a_resume_is_not_a_boot_time() {
    let mut host = Host::new(Policy::Manual, &[(R1, Team::Root, PowerState::Suspended)]);
    host.command("admin", Command::StartVm { vm: R1.into() });
    host.settle();
    assert_eq!(host.running(), vec![R1.to_owned()]);
    assert!(host.log.iter().any(|(_, a)| *a == Action::Resume));
    assert_eq!(host.world.counters().boot_times, Histogram::default());
}

#[test]
fn each_job_a_runner_here_took_counts_its_wait_once() {
    let mut host = demand_host();
    let started = |id: u64, queued_ms: Millis, started_ms: Millis| StartedJob {
        id,
        queued_ms,
        started_ms,
        runner: format!("runner-{id}"),
    };
    let snapshot = DemandSnapshot {
        started_here: vec![
            started(7, 1_000_000, 1_070_000),
            started(8, 1_000_000, 1_005_000),
        ],
        ..Default::default()
    };
    // Seen running by several polls: counted once each.
    host.feed(Input::Demand(snapshot.clone()));
    host.feed(Input::Demand(snapshot));
    host.feed(Input::Demand(DemandSnapshot {
        started_here: vec![started(9, 1_000_000, 1_000_000 + 3_600_000 + 1)],
        ..Default::default()
    }));
    let waits = &host.world.counters().root_job_waits;
    assert_eq!(waits.count, 3, "{waits:?}");
    assert_eq!(waits.sum_ms, 70_000 + 5_000 + 3_600_001);
    let le = |secs: u64| {
        let i = JOB_WAIT_BUCKETS_SECS
            .iter()
            .position(|b| *b == secs)
            .expect("a bucket bound");
        waits.at_or_under(i)
    };
    assert_eq!((le(5), le(60), le(90), le(3600)), (1, 1, 2, 2));
}

#[test]
fn the_prediction_remembers_only_jobs_a_vm_here_could_run() {
    let mut host = warm_host(|c| c.warm_window_ms = 3_600_000);
    host.feed(Input::Demand(DemandSnapshot {
        running_jobs: vec![
            job(1, host.now, "mac15"),
            QueuedJob {
                id: 2,
                since_ms: host.now,
                labels: vec!["ubuntu-latest".into()],
            },
        ],
        ..Default::default()
    }));
    let seen = host.world.persisted().seen_jobs;
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), vec![1]);
}
