//! The simulated host's ground truth: each VM's power state, boot generation, guest
//! readiness, the job running in it, and what the scheduler last learned from a probe; plus
//! the fault table that decides when reality misbehaves.

use std::collections::BTreeSet;
use std::time::Duration;

use marble_proto::{PowerState, Team};
use marbled::sched::{Millis, ObservedVm, ProbeResult};

use super::rng::SimRng;
use super::trace::{FaultKind, FaultSpec, HangAction, HostVm, InitialPower};

/// Which team's job runs in a VM, and which arrival it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobRef {
    /// Index into the ROOT job list.
    Root(usize),
    /// Index into the Jenkins build list.
    Spi(usize),
}

/// A job running in a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningJob {
    /// Unique per simulation, so a stale end event is recognised.
    pub id: u64,
    /// Which arrival.
    pub job: JobRef,
    /// When it started.
    pub started: Millis,
}

/// What the scheduler last heard from a busy probe of this VM, since its last start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSeen {
    /// When the answer was delivered.
    pub at: Millis,
    /// The answer.
    pub result: ProbeResult,
}

/// One simulated VM.
#[derive(Debug, Clone)]
pub struct SimVm {
    /// Index of its host.
    pub host: usize,
    /// Name.
    pub name: String,
    /// UUID (stable per index).
    pub uuid: String,
    /// Team.
    pub team: Team,
    /// Runner labels.
    pub labels: BTreeSet<String>,
    /// Power state as `prlctl list` would print it.
    pub power: PowerState,
    /// Boot generation; bumped by every start or resume.
    pub boot: u64,
    /// When the guest of this boot answers; `None` while stopped or when the boot failed.
    pub ready_at: Option<Millis>,
    /// When this boot (start or resume) began; `None` for a VM running since the start.
    pub boot_began: Option<Millis>,
    /// The job running in the guest.
    pub job: Option<RunningJob>,
    /// ROOT: the ephemeral runner of this boot has taken its one job.
    pub runner_used: bool,
    /// SPI: a Jenkins agent is connected (from a grant until the VM stops).
    pub agent_connected: bool,
    /// Last probe answer delivered to the scheduler since the last start.
    pub last_probe: Option<ProbeSeen>,
    /// The scheduler was told `WaitReady` failed for this boot and never that it succeeded.
    pub ready_failed: bool,
}

impl SimVm {
    /// A VM at the start of the simulation.
    pub fn new(index: usize, spec: &HostVm, now: Millis) -> Self {
        let (power, ready_at) = match spec.power {
            InitialPower::Stopped => (PowerState::Stopped, None),
            InitialPower::Running => (PowerState::Running, Some(now)),
            InitialPower::Suspended => (PowerState::Suspended, None),
        };
        Self {
            host: spec.host,
            name: spec.name.clone(),
            uuid: format!("5173d000-0000-4000-8000-{:012x}", index + 1),
            team: spec.team,
            labels: spec.labels.clone(),
            power,
            boot: 0,
            ready_at,
            boot_began: None,
            job: None,
            runner_used: false,
            agent_connected: false,
            last_probe: None,
            ready_failed: false,
        }
    }

    /// The guest answers `prlctl exec` now.
    pub fn guest_up(&self, now: Millis) -> bool {
        self.power == PowerState::Running && self.ready_at.is_some_and(|t| t <= now)
    }

    /// Counts against the host's capacity (the shared build disk is attached).
    pub fn occupies_host(&self) -> bool {
        matches!(
            self.power,
            PowerState::Starting
                | PowerState::Running
                | PowerState::Stopping
                | PowerState::Resuming
        )
    }

    /// Running and not running a job (idle VM time).
    pub fn idle_running(&self) -> bool {
        self.power == PowerState::Running && self.job.is_none()
    }

    /// ROOT: its ephemeral runner is registered with GitHub and has not taken a job. The
    /// daemon mints the JIT config before it starts the VM, so the runner counts from the
    /// moment the boot starts until it takes its job or the VM stops.
    pub fn free_runner(&self) -> bool {
        self.team == Team::Root
            && matches!(
                self.power,
                PowerState::Starting | PowerState::Running | PowerState::Resuming
            )
            && !self.runner_used
    }

    /// What `prlctl list` shows.
    pub fn observed(&self) -> ObservedVm {
        ObservedVm {
            name: self.name.clone(),
            uuid: self.uuid.clone(),
            power: self.power.clone(),
            team: self.team,
            labels: self.labels.iter().cloned().collect(),
        }
    }

    /// A new boot begins: the guest, runner and agent of the previous one are gone.
    pub fn begin_boot(&mut self, now: Millis, ready_at: Option<Millis>) {
        self.boot += 1;
        self.ready_at = ready_at;
        self.boot_began = Some(now);
        self.runner_used = false;
        self.agent_connected = false;
        self.last_probe = None;
        self.ready_failed = false;
    }

    /// The VM is off: its guest, job, runner and agent are gone. Returns the killed job.
    pub fn power_off(&mut self) -> Option<RunningJob> {
        self.power = PowerState::Stopped;
        self.ready_at = None;
        self.agent_connected = false;
        self.job.take()
    }
}

/// The faults of a trace and the random stream that decides their rates.
#[derive(Debug, Clone)]
pub struct Faults {
    specs: Vec<FaultSpec>,
    rng: SimRng,
}

impl Faults {
    /// Faults from the trace, drawing from `rng`.
    pub fn new(specs: Vec<FaultSpec>, rng: SimRng) -> Self {
        Self { specs, rng }
    }

    /// Does a fault of `kind` hit `vm` at `offset` (time since the start)? For `hang`,
    /// `action` must match too. Returns the hang delay (zero for other kinds) when it hits.
    pub fn hits(
        &mut self,
        kind: FaultKind,
        vm: &str,
        offset: Duration,
        action: Option<HangAction>,
    ) -> Option<Duration> {
        let spec = self.specs.iter().find(|f| {
            f.kind == kind
                && f.vm.as_deref().is_none_or(|v| v == vm)
                && f.from.is_none_or(|from| offset >= from)
                && f.until.is_none_or(|until| offset < until)
                && (kind != FaultKind::Hang || f.action.is_none() || f.action == action)
        })?;
        let (rate, delay) = (
            spec.rate,
            spec.delay.unwrap_or(super::trace::DEFAULT_HANG_DELAY),
        );
        self.rng.chance(rate).then_some(if kind == FaultKind::Hang {
            delay
        } else {
            Duration::ZERO
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(kind: FaultKind, vm: Option<&str>, from: u64, until: u64) -> FaultSpec {
        FaultSpec {
            kind,
            vm: vm.map(str::to_owned),
            rate: 1.0,
            from: Some(Duration::from_secs(from)),
            until: Some(Duration::from_secs(until)),
            action: None,
            delay: None,
        }
    }

    #[test]
    fn faults_respect_vm_window_and_kind() {
        let mut f = Faults::new(
            vec![fault(FaultKind::Probe, Some("a"), 10, 20)],
            SimRng::new(1),
        );
        let at = Duration::from_secs;
        assert!(f.hits(FaultKind::Probe, "a", at(10), None).is_some());
        assert!(f.hits(FaultKind::Probe, "a", at(20), None).is_none());
        assert!(f.hits(FaultKind::Probe, "a", at(9), None).is_none());
        assert!(f.hits(FaultKind::Probe, "b", at(15), None).is_none());
        assert!(f.hits(FaultKind::Boot, "a", at(15), None).is_none());
    }

    #[test]
    fn hang_matches_its_action_and_reports_the_delay() {
        let mut spec = fault(FaultKind::Hang, None, 0, 100);
        spec.action = Some(HangAction::Stop);
        spec.delay = Some(Duration::from_secs(7));
        let mut f = Faults::new(vec![spec], SimRng::new(1));
        let at = Duration::from_secs(1);
        assert_eq!(
            f.hits(FaultKind::Hang, "x", at, Some(HangAction::Stop)),
            Some(Duration::from_secs(7))
        );
        assert!(
            f.hits(FaultKind::Hang, "x", at, Some(HangAction::Start))
                .is_none()
        );
    }
}
