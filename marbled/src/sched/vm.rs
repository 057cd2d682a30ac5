//! Per-VM scheduler state: what the inventory and probes last said, the one operation in
//! flight, and the start or stop the scheduler is driving for it.

use marble_proto::{BusyState, PowerState, Team};

use super::{Action, Millis, OpId, ReqId};

/// Who asked for a start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Starter {
    /// The cycle policy.
    Cycle,
    /// A Jenkins slot request (granted when the guest is ready).
    Slot,
    /// An operator's `vm start`; the reply goes out when `prlctl start` returns.
    Admin { req: Option<ReqId> },
    /// Policy `demand`, for the queued job with this id.
    Demand { job: u64 },
    /// Policy `demand`, a warm runner for no job yet; `why` names the target it fills.
    Warm { why: String },
}

/// Why a VM is being stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StopWhy {
    /// An operator's `vm stop`; `req` gets the answer.
    Admin { req: ReqId },
    /// To give the host to a slot request for another VM.
    Preempt { req: ReqId },
    /// The cycle's on-time is over (or the cycle takes the host back).
    Cycle,
    /// The host is draining.
    Drain,
    /// The VM failed readiness.
    NotReady,
    /// Policy `demand`: its runner's one job is done, or nothing it could take waits.
    Demand,
    /// Registration watchdog: its runner took no job while one it could take waited.
    Watchdog,
}

impl StopWhy {
    /// Whether a busy or unknown probe ends the plan (true) or only postpones it.
    pub(super) fn gives_up_when_busy(&self) -> bool {
        matches!(
            self,
            StopWhy::Admin { .. } | StopWhy::Preempt { .. } | StopWhy::Watchdog
        )
    }

    pub(super) fn describe(&self) -> &'static str {
        match self {
            StopWhy::Admin { .. } => "operator request",
            StopWhy::Preempt { .. } => "slot request for another VM",
            StopWhy::Cycle => "cycle on-time over",
            StopWhy::Drain => "drain",
            StopWhy::NotReady => "failed readiness",
            StopWhy::Demand => "its runner's job is done, or no queued job for it",
            StopWhy::Watchdog => "runner took no job while one waited (watchdog)",
        }
    }
}

/// Where a stop stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StopPhase {
    /// Probe first (not before the given time); only an idle answer lets the stop proceed.
    Probe { not_before: Millis },
    /// A graceful stop was issued; `--kill` at `kill_at` if the VM still runs.
    Graceful { kill_at: Millis },
    /// `--kill` was issued.
    Kill,
}

/// A stop the scheduler is driving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StopPlan {
    pub why: StopWhy,
    pub phase: StopPhase,
    /// The operator skipped the busy check.
    pub force: bool,
}

/// One VM.
#[derive(Debug, Clone)]
pub(super) struct VmState {
    pub name: String,
    pub uuid: String,
    pub team: Team,
    pub power: PowerState,
    pub busy: BusyState,
    /// When the last probe answered.
    pub probe_ms: Option<Millis>,
    /// The next background probe of a running VM.
    pub next_probe_ms: Millis,
    /// The one operation in flight (one at a time per VM).
    pub op: Option<(OpId, Action)>,
    /// The guest answered the readiness check since it was last started.
    pub ready: bool,
    /// A readiness check ran (or runs) since the VM was last seen stopped.
    pub ready_checked: bool,
    /// Who is starting it (until ready or failed).
    pub start: Option<Starter>,
    pub stop: Option<StopPlan>,
    /// Cycle: check for idleness and stop at this time.
    pub on_until: Option<Millis>,
    /// Why it runs (for `status`).
    pub running_because: Option<String>,
    /// The state file said an operation was in flight; cleared by the first inventory.
    pub reconcile: Option<String>,
    /// A stop failed: the power state is not known until the next inventory, so the VM is
    /// neither granted nor checked for readiness (it still counts as holding the host).
    pub power_stale: bool,
    /// MARBLE started this boot of the VM.
    pub started_here: bool,
    /// The guest answered an exec (readiness or probe) during this boot.
    pub answered: bool,
    /// Runner labels (from the inventory).
    pub labels: Vec<String>,
    /// Its ephemeral runner took its one job this boot: a probe saw it busy, or the demand
    /// feed showed the runner took a job (`DemandSnapshot::used_here`).
    pub was_busy: bool,
    /// When a probe last answered busy or unknown this boot: with `ready_at`, how long the
    /// guest has been idle (`VmState::idle_since`).
    pub busy_seen_ms: Option<Millis>,
    /// The demand feed showed its runner's job over (`DemandSnapshot::done_here`) this boot.
    pub feed_done: bool,
    /// When its guest became ready this boot.
    pub ready_at: Option<Millis>,
    /// When MARBLE issued this boot's `prlctl start` (not a resume); taken when the guest
    /// answers, for the boot-time histogram.
    pub boot_issued_ms: Option<Millis>,
    /// Runner re-arms this boot (each gave the running guest a fresh runner for one more job).
    pub rearms: u32,
}

impl VmState {
    pub(super) fn new(name: String, uuid: String, team: Team, power: PowerState) -> Self {
        Self {
            name,
            uuid,
            team,
            power,
            busy: BusyState::NotProbed,
            probe_ms: None,
            next_probe_ms: 0,
            op: None,
            ready: false,
            ready_checked: false,
            start: None,
            stop: None,
            on_until: None,
            running_because: None,
            reconcile: None,
            power_stale: false,
            started_here: false,
            answered: false,
            labels: Vec::new(),
            was_busy: false,
            busy_seen_ms: None,
            feed_done: false,
            ready_at: None,
            boot_issued_ms: None,
            rearms: 0,
        }
    }

    /// Holds the host: powered on in any way, or a start is in flight. Unknown power words
    /// count as occupying (the safe side).
    /// A ready ROOT VM whose runner has taken no job, with nothing in flight on it: what the
    /// registration watchdog and the swap may recycle.
    pub(super) fn unused_ready_root(&self) -> bool {
        self.team == Team::Root
            && self.power == PowerState::Running
            && self.ready
            && !self.was_busy
            && self.op.is_none()
            && self.stop.is_none()
            && self.start.is_none()
    }

    pub(super) fn occupies(&self) -> bool {
        self.power.occupies_host()
            || matches!(
                self.op,
                Some((_, Action::Start | Action::Resume | Action::WaitReady { .. }))
            )
            || self.start.is_some()
    }

    /// The last probe said busy or unknown, and it is younger than `max_age_ms`.
    pub(super) fn fresh_not_idle(&self, now: Millis, max_age_ms: u64) -> bool {
        let fresh = self
            .probe_ms
            .is_some_and(|at| now.saturating_sub(at) < max_age_ms);
        fresh
            && matches!(
                self.busy,
                BusyState::Busy { .. } | BusyState::Unknown { .. }
            )
    }

    /// Since when the guest has had no work, as far as probes know: the last busy or unknown
    /// answer, or readiness when none came since. `None` until it is ready.
    pub(super) fn idle_since(&self) -> Option<Millis> {
        let ready = self.ready_at?;
        Some(self.busy_seen_ms.map_or(ready, |busy| busy.max(ready)))
    }

    /// Forget everything that only holds while the VM runs.
    pub(super) fn reset_running_state(&mut self) {
        self.busy = BusyState::NotProbed;
        self.probe_ms = None;
        self.ready = false;
        self.ready_checked = false;
        self.on_until = None;
        self.running_because = None;
        self.started_here = false;
        self.answered = false;
        self.was_busy = false;
        self.busy_seen_ms = None;
        self.feed_done = false;
        self.ready_at = None;
        self.boot_issued_ms = None;
        self.rearms = 0;
    }
}
