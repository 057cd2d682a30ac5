//! The simulated hypervisor: how each scheduler `Action` changes the host and what it
//! reports, after how long; and the checks made when an operation is issued (op already in
//! flight for the VM, stopping a VM known busy or unknown).
//!
//! Start takes `start_latency` and the guest answers after a boot time drawn from `[boot]`
//! (never, under a `boot` fault); resume takes `resume_latency` and the guest answers at
//! once; a graceful stop takes `stop_latency` (and may be ignored: Done, VM still running),
//! kill and drop-state `kill_latency`; a probe answers from ground truth after
//! `probe_latency`; `WaitReady` succeeds when the guest answers or fails at its timeout. A
//! `hang` fault delays the report (a hung probe reports `Unknown`, as a timed-out exec does).

use std::time::Duration;

use marble_proto::{PowerState, Team};
use marbled::sched::{Action, Input, Millis, OpId, Outcome, ProbeResult, StopKind};

use super::engine::{Engine, Ev, ms};
use super::host::{JobRef, ProbeSeen};
use super::invariants::ViolationKind;
use super::metrics::fmt_ms;
use super::trace::{FaultKind, HangAction};

/// What an operation will do when its time comes, decided when it is issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Plan {
    /// The VM does not exist: fail.
    NoVm,
    /// Refuse with this error (wrong power state for the action).
    Reject(String),
    /// Power on (start or resume).
    PowerOn,
    /// Stop; `ignored`: report Done and leave the VM running. `race_job`: a job that started
    /// after the idle probe preceding this stop.
    Stop {
        ignored: bool,
        race_job: Option<u64>,
    },
    /// Busy probe.
    Probe,
    /// Readiness wait until `deadline`.
    WaitReady { deadline: Millis, timeout_ms: u64 },
    /// Runner re-arm: a fresh ephemeral runner in the running guest.
    Rearm,
}

/// An operation in flight.
#[derive(Debug, Clone)]
pub(super) struct OpState {
    vm: Option<usize>,
    boot: u64,
    plan: Plan,
    hang: Duration,
    outcome: Option<Outcome>,
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Start => "start",
        Action::Resume => "resume",
        Action::Stop(StopKind::Graceful) => "stop",
        Action::Stop(StopKind::Kill) => "kill",
        Action::Stop(StopKind::DropState) => "drop_state",
        Action::Probe(_) => "probe",
        Action::WaitReady { .. } => "wait_ready",
        Action::Rearm => "rearm",
    }
}

fn hang_action(action: &Action) -> HangAction {
    match action {
        Action::Start => HangAction::Start,
        Action::Resume => HangAction::Resume,
        Action::Stop(_) => HangAction::Stop,
        Action::Probe(_) => HangAction::Probe,
        Action::WaitReady { .. } => HangAction::WaitReady,
        // A guest exec (mint and delivery), like a probe.
        Action::Rearm => HangAction::Probe,
    }
}

fn describe(result: &ProbeResult) -> String {
    match result {
        ProbeResult::Idle => "Idle".into(),
        ProbeResult::Busy(why) => format!("Busy({why})"),
        ProbeResult::Unknown(why) => format!("Unknown({why})"),
    }
}

impl Engine {
    /// An operation with an injected hang is in flight.
    pub(super) fn hung_op_in_flight(&self) -> bool {
        self.ops.values().any(|o| o.hang > Duration::ZERO)
    }

    /// `Effect::Run`: check, decide the plan, schedule the completion.
    pub(super) fn start_op(&mut self, h: usize, op: OpId, vm: &str, action: &Action) {
        *self.op_counts.entry(action_name(action)).or_insert(0) += 1;
        if self.ops.contains_key(&(h, op)) {
            self.violation(
                ViolationKind::DuplicateOp,
                format!(
                    "Run op {} ({action:?} {vm}) reuses an op id in flight",
                    op.0
                ),
            );
            return;
        }
        // A host's scheduler can only act on its own VMs.
        let Some(&vi) = self.by_name.get(vm).filter(|&&vi| self.vms[vi].host == h) else {
            self.violation(
                ViolationKind::UnknownVm,
                format!(
                    "Run op {} ({action:?}) for unknown VM {vm:?} on host {}",
                    op.0, self.hosts[h].name
                ),
            );
            self.ops.insert(
                (h, op),
                OpState {
                    vm: None,
                    boot: 0,
                    plan: Plan::NoVm,
                    hang: Duration::ZERO,
                    outcome: None,
                },
            );
            self.schedule_in(0, Ev::OpDue(h, op));
            return;
        };
        if self.ops_per_vm[vi] > 0 {
            let in_flight: Vec<String> = self
                .ops
                .iter()
                .filter(|(_, s)| s.vm == Some(vi))
                .map(|((_, id), s)| format!("op {} {:?}", id.0, s.plan))
                .collect();
            self.violation(
                ViolationKind::OpInFlight,
                format!(
                    "Run op {} ({action:?}) for {vm} while {} in flight",
                    op.0,
                    in_flight.join(", ")
                ),
            );
        }
        self.ops_per_vm[vi] += 1;
        let offset = self.offset_duration();
        let hang = self
            .faults
            .hits(FaultKind::Hang, vm, offset, Some(hang_action(action)))
            .unwrap_or(Duration::ZERO);
        if hang > Duration::ZERO {
            self.mark_requests_hung();
        }
        let (plan, after) = match action {
            Action::Start | Action::Resume => self.plan_power_on(vi, action),
            Action::Stop(kind) => self.plan_stop(vi, *kind),
            Action::Probe(team) => {
                if *team != self.vms[vi].team {
                    self.violation(
                        ViolationKind::WrongProbeTeam,
                        format!("Probe({team:?}) for {vm}, a {:?} VM", self.vms[vi].team),
                    );
                }
                (Plan::Probe, ms(self.cfg.probe_latency))
            }
            // Mint (a GitHub call) and deliver (a guest exec): about a probe's time.
            Action::Rearm => (Plan::Rearm, ms(self.cfg.probe_latency)),
            Action::WaitReady { timeout_ms } => {
                let deadline = self.now.saturating_add(*timeout_ms);
                let plan = Plan::WaitReady {
                    deadline,
                    timeout_ms: *timeout_ms,
                };
                (plan, self.next_ready_check(vi, deadline) - self.now)
            }
        };
        self.ops.insert(
            (h, op),
            OpState {
                vm: Some(vi),
                boot: self.vms[vi].boot,
                plan,
                hang,
                outcome: None,
            },
        );
        self.schedule_in(after, Ev::OpDue(h, op));
    }

    fn plan_power_on(&mut self, vi: usize, action: &Action) -> (Plan, u64) {
        let offset = self.offset_duration();
        let v = &self.vms[vi];
        let resumable = matches!(v.power, PowerState::Suspended | PowerState::Paused);
        if resumable {
            // `prlctl start` of a suspended VM resumes it, like `prlctl resume`.
            let latency = ms(self.cfg.resume_latency);
            let ready = self.now + latency;
            let v = &mut self.vms[vi];
            v.power = PowerState::Resuming;
            v.begin_boot(self.now, Some(ready));
            self.resumes += 1;
            return (Plan::PowerOn, latency);
        }
        if *action == Action::Resume || v.power != PowerState::Stopped {
            let why = format!("cannot {action:?} {}: it is {:?}", v.name, v.power);
            return (Plan::Reject(why), ms(self.cfg.kill_latency));
        }
        let latency = ms(self.cfg.start_latency);
        let name = v.name.clone();
        let boot = self.draw_boot_time(vi);
        let failed = self
            .faults
            .hits(FaultKind::Boot, &name, offset, None)
            .is_some();
        let ready_at = (!failed).then(|| self.now + boot.max(latency));
        let v = &mut self.vms[vi];
        v.power = PowerState::Starting;
        v.begin_boot(self.now, ready_at);
        let (host, team) = (v.host, v.team);
        self.boots += 1;
        self.hosts[host].boots += 1;
        if team == Team::Root {
            self.root_boots += 1;
        }
        if failed {
            self.boot_failures += 1;
        }
        if let Some(at) = ready_at {
            self.schedule_at(at, Ev::GuestReady);
        }
        (Plan::PowerOn, latency)
    }

    /// Checks a stop against what the scheduler knew, then plans it.
    fn plan_stop(&mut self, vi: usize, kind: StopKind) -> (Plan, u64) {
        let v = &self.vms[vi];
        let name = v.name.clone();
        let mut race_job = None;
        if v.occupies_host() {
            let job = v.job;
            let job_text = job.map_or_else(
                || "no job runs".to_owned(),
                |j| {
                    format!(
                        "a job runs since +{}",
                        fmt_ms(j.started - super::engine::EPOCH_MS)
                    )
                },
            );
            match &v.last_probe {
                Some(ProbeSeen {
                    result: result @ (ProbeResult::Busy(_) | ProbeResult::Unknown(_)),
                    at,
                }) => {
                    // A guest that never came up cannot run a job: stopping a VM whose
                    // readiness wait failed is the quarantine path, not a busy stop.
                    let exempt = matches!(result, ProbeResult::Unknown(_)) && v.ready_failed;
                    if !exempt {
                        let text = format!(
                            "Stop({kind:?}) of {name}, whose last probe (at +{}) answered {}; {job_text}",
                            fmt_ms(at - super::engine::EPOCH_MS),
                            describe(result)
                        );
                        self.violation(ViolationKind::StopBusyOrUnknown, text);
                    }
                }
                Some(ProbeSeen {
                    result: ProbeResult::Idle,
                    at,
                }) => {
                    if let Some(j) = job.filter(|j| j.started >= *at) {
                        race_job = Some(j.id);
                    }
                }
                None => {
                    if job.is_some() && !v.ready_failed {
                        let text = format!(
                            "Stop({kind:?}) of {name}, never probed since it started; {job_text}"
                        );
                        self.violation(ViolationKind::StopUnprobed, text);
                    }
                }
            }
        }
        let offset = self.offset_duration();
        let v = &mut self.vms[vi];
        let suspended = matches!(v.power, PowerState::Suspended | PowerState::Paused);
        match kind {
            StopKind::DropState if suspended => (
                Plan::Stop {
                    ignored: false,
                    race_job,
                },
                ms(self.cfg.kill_latency),
            ),
            StopKind::Graceful | StopKind::Kill if v.occupies_host() => {
                v.power = PowerState::Stopping;
                let graceful = kind == StopKind::Graceful;
                let ignored = graceful
                    && self
                        .faults
                        .hits(FaultKind::StopIgnored, &name, offset, None)
                        .is_some();
                let latency = if graceful {
                    self.cfg.stop_latency
                } else {
                    self.cfg.kill_latency
                };
                (Plan::Stop { ignored, race_job }, ms(latency))
            }
            _ => {
                let why = format!("cannot stop {name} ({kind:?}): it is {:?}", v.power);
                (Plan::Reject(why), ms(self.cfg.kill_latency))
            }
        }
    }

    /// A boot time of VM `vi` from `[boot]`, drawn from that VM's own stream.
    fn draw_boot_time(&mut self, vi: usize) -> u64 {
        self.boot_dist.draw(&mut self.boot_rngs[vi])
    }

    /// When a readiness wait should look again.
    fn next_ready_check(&self, vi: usize, deadline: Millis) -> Millis {
        match self.vms[vi].ready_at {
            Some(r) if r > self.now => r.min(deadline),
            // Ready in principle, waiting for the power state: poll like `ready_poll`.
            Some(_) => (self.now + 1000).min(deadline),
            None => deadline,
        }
    }

    /// The operation's work is done: change the host, compute the outcome, report.
    pub(super) fn op_due(&mut self, h: usize, op: OpId) {
        let Some(state) = self.ops.get(&(h, op)).cloned() else {
            return;
        };
        let outcome = match (&state.plan, state.vm) {
            (Plan::NoVm, _) | (_, None) => Outcome::Failed("no such VM".into()),
            (Plan::Reject(why), _) => Outcome::Failed(why.clone()),
            (Plan::PowerOn, Some(vi)) => {
                let v = &mut self.vms[vi];
                if matches!(v.power, PowerState::Starting | PowerState::Resuming) {
                    v.power = PowerState::Running;
                }
                Outcome::Done
            }
            (Plan::Stop { ignored, race_job }, Some(vi)) => {
                if *ignored {
                    self.vms[vi].power = PowerState::Running;
                } else if let Some(job) = {
                    let v = &self.vms[vi];
                    if v.team == Team::Root && !v.runner_used {
                        self.root_boots_unused += 1;
                    }
                    self.vms[vi].power_off()
                } {
                    if *race_job == Some(job.id) {
                        self.race_interruptions += 1;
                    }
                    self.job_killed(job.job);
                }
                Outcome::Done
            }
            (Plan::Rearm, Some(vi)) => {
                // As the daemon: the guest must answer and its runner must have exited
                // after its job; a runner still without a job keeps its registration.
                let v = &mut self.vms[vi];
                if state.hang > Duration::ZERO || !v.guest_up(self.now) || v.job.is_some() {
                    Outcome::Failed("re-arm: guest not answering or a job runs".into())
                } else {
                    v.runner_used = false;
                    Outcome::Done
                }
            }
            (Plan::Probe, Some(vi)) => {
                if state.hang > Duration::ZERO {
                    Outcome::Probe(ProbeResult::Unknown(
                        "probe timed out (injected hang)".into(),
                    ))
                } else {
                    Outcome::Probe(self.probe(vi))
                }
            }
            (
                Plan::WaitReady {
                    deadline,
                    timeout_ms,
                },
                Some(vi),
            ) => {
                if self.vms[vi].guest_up(self.now) {
                    Outcome::Done
                } else if self.now < *deadline {
                    let at = self.next_ready_check(vi, *deadline);
                    self.schedule_at(at, Ev::OpDue(h, op));
                    return;
                } else {
                    Outcome::Failed(format!(
                        "not ready after {}: guest does not answer",
                        fmt_ms(*timeout_ms)
                    ))
                }
            }
        };
        if state.hang > Duration::ZERO {
            if let Some(s) = self.ops.get_mut(&(h, op)) {
                s.outcome = Some(outcome);
            }
            self.schedule_in(ms(state.hang), Ev::OpReport(h, op));
        } else {
            self.deliver(h, op, outcome);
        }
    }

    /// A hung operation reports.
    pub(super) fn op_report(&mut self, h: usize, op: OpId) {
        let outcome = self.ops.get_mut(&(h, op)).and_then(|s| s.outcome.take());
        if let Some(outcome) = outcome {
            self.deliver(h, op, outcome);
        }
    }

    fn probe(&mut self, vi: usize) -> ProbeResult {
        let offset = self.offset_duration();
        let now = self.now;
        let name = self.vms[vi].name.clone();
        if !self.vms[vi].guest_up(now) {
            return ProbeResult::Unknown(format!(
                "guest does not answer ({:?})",
                self.vms[vi].power
            ));
        }
        if self
            .faults
            .hits(FaultKind::Probe, &name, offset, None)
            .is_some()
        {
            return ProbeResult::Unknown("exec failed (injected)".into());
        }
        match self.vms[vi].job {
            Some(j) => {
                let what = match (j.job, self.vms[vi].team) {
                    (JobRef::Root(_), _) | (_, Team::Root) => "Runner.Worker",
                    _ => "Jenkins build",
                };
                ProbeResult::Busy(format!(
                    "{what} running since +{}",
                    fmt_ms(j.started - super::engine::EPOCH_MS)
                ))
            }
            None => ProbeResult::Idle,
        }
    }

    /// Report an operation's end to the world, recording what the scheduler learns.
    fn deliver(&mut self, h: usize, op: OpId, outcome: Outcome) {
        let Some(state) = self.ops.remove(&(h, op)) else {
            return;
        };
        if let Some(vi) = state.vm {
            self.ops_per_vm[vi] = self.ops_per_vm[vi].saturating_sub(1);
            let now = self.now;
            let v = &mut self.vms[vi];
            if v.boot == state.boot {
                match (&state.plan, &outcome) {
                    (Plan::Probe, Outcome::Probe(result)) => {
                        v.last_probe = Some(ProbeSeen {
                            at: now,
                            result: result.clone(),
                        });
                    }
                    (Plan::WaitReady { .. }, Outcome::Done) => v.ready_failed = false,
                    (Plan::WaitReady { .. }, Outcome::Failed(_)) => v.ready_failed = true,
                    _ => {}
                }
            }
        }
        self.feed(h, Input::Finished { op, outcome });
    }
}
