//! Sans-I/O scheduler core: every rule about which VM may run, when, and for whom.
//!
//! `World::handle(now, input) -> Vec<Effect>` is a pure state machine: no tokio, no clock, no
//! filesystem, no randomness source other than the seeded one it owns. Time is an argument
//! (unix milliseconds). The daemon's actor (the `actor` module) feeds it inputs and interprets
//! the effects; `marble-sim` feeds it the same inputs in virtual time.
//!
//! CONTRACT with the actor (keep in sync with the `actor` module):
//! - every `Effect::Run { op, .. }` is eventually answered by exactly one
//!   `Input::Finished { op, .. }` (the actor never drops one; after a daemon restart in-flight
//!   ops are gone and the restored world marks them "needs reconcile");
//! - a `Stop` job may answer `Outcome::Probe(Busy | Unknown)` instead of stopping when a
//!   last-moment gate finds the VM busy (GitHub refusing to delete a runner that was just
//!   given a job); the scheduler treats it exactly like a busy probe;
//! - every `Input::Command { req, .. }` is eventually answered by exactly one
//!   `Effect::Reply { req, .. }` unless an `Input::Cancelled { req }` arrives first;
//! - `Effect::RefreshInventory` makes the actor list VMs and send `Input::Inventory`;
//! - `Effect::RefreshDemand` asks the demand sources for a fresh `Input::Demand` soon (a
//!   hint: the sources may ignore it, e.g. while rate-limited; the next poll comes anyway);
//! - `Effect::Persist` makes the actor write `World::persisted()` atomically;
//! - the actor calls `handle(now, Input::Tick)` no later than `next_deadline()`.

use crate::config::{Policy, WarmTarget};
use marble_proto::{Event, LockTarget, PowerState, Response, Team, UnlockTarget, WireError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Unix time in milliseconds.
pub type Millis = u64;

/// Identifies one operation the scheduler asked the actor to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId(pub u64);

/// Identifies one client request waiting for a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReqId(pub u64);

/// One VM as the latest inventory saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedVm {
    /// VM name.
    pub name: String,
    /// UUID, lower case, no braces.
    pub uuid: String,
    /// Power state.
    pub power: PowerState,
    /// Team from the configured name patterns and overrides.
    pub team: Team,
    /// Runner labels a job must be covered by to run in this VM (ROOT: [`LabelMap`]:
    /// `self-hosted`, `macOS`, the architecture, `macNN`/`mac-beta` from the name, then the
    /// configured extras and rules); empty for other teams.
    pub labels: Vec<String>,
}

/// One queued CI job (GitHub) as a demand source last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// Job id (stable across snapshots).
    pub id: u64,
    /// Queued since, unix ms.
    pub since_ms: Millis,
    /// `runs-on` labels.
    pub labels: Vec<String>,
}

/// A runner registered anywhere in the fleet that has not taken a job yet (idle or still
/// booting): it will take a matching queued job, so nobody else boots for that job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRunner {
    /// Runner name, as GitHub lists it: for messages, and the staggered yield's tie-break
    /// between runners of the same labels (every host sees the same names).
    pub name: String,
    /// Its labels.
    pub labels: Vec<String>,
}

/// What the demand sources last saw (policy `demand`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemandSnapshot {
    /// Queued ROOT jobs, any order.
    pub root_jobs: Vec<QueuedJob>,
    /// Registered runners without a job, fleet-wide (GitHub's runner list).
    pub free_runners: Vec<FleetRunner>,
    /// Jobs already running (`since_ms` = when they were queued): with the queued ones, the
    /// history the warm-runner prediction learns from. A job a warm runner took between two
    /// polls is never seen queued, but it is seen here.
    pub running_jobs: Vec<QueuedJob>,
    /// Running jobs taken by one of this host's runners, with when they started: the job
    /// waits the metrics count. The poller lists every running job with its runner; the
    /// actor keeps those whose runner is a registration this host made.
    pub started_here: Vec<StartedJob>,
    /// Runner names the feed shows have taken their job: busy in the runner list, named by
    /// a job in progress or completed (`runner_name`), or — this host's registrations,
    /// read before the runner list — gone from the runner list (an ephemeral runner is
    /// deleted once its job ends). The actor maps them to [`Self::used_here`].
    pub taken_runners: Vec<String>,
    /// This host's ROOT VMs whose current runner is among [`Self::taken_runners`]: spent,
    /// even when no probe ever saw them busy (a job that starts at once and ends before the
    /// first probe). The scheduler reads only this; names it does not have are ignored.
    pub used_here: Vec<String>,
    /// Of [`Self::taken_runners`], those whose job is over: a completed job names them, or
    /// their registration is gone.
    pub done_runners: Vec<String>,
    /// This host's ROOT VMs whose current runner is among [`Self::done_runners`]: probed at
    /// once rather than at the next re-check, so the host is freed without waiting for it.
    pub done_here: Vec<String>,
    /// This host's ROOT VMs' current runner names, by VM name (the actor fills it from its
    /// registrations, or for a VM they do not know — kept across a restart — from the
    /// runner list). The staggered yield orders runners of the same labels by runner name,
    /// the one name every host sees in the runner list; a VM missing here is taken to have
    /// a runner named after it (the simulator's).
    pub runners_here: BTreeMap<String, String>,
    /// Jenkins' buildable queue items (`/queue/api/json`) with the label their `why` names,
    /// fleet-wide: every host polls the same queue. A build for a named node waits for the
    /// host of that VM; one for a label every SPI node carries (`spi_labels`) waits for every
    /// host with an SPI VM, so a build that accepts any node ages on all of them.
    pub jenkins_queue: Vec<JenkinsQueued>,
    /// Until when (unix ms) Jenkins' queue is known to hold no buildable item at all, with a
    /// label or without: the actor fills it from its last `[jenkins]` queue answer, which
    /// stands for the queue [`JENKINS_FRESH_POLLS`] demand intervals from its poll. 0 when
    /// the queue holds one, and when it is unknown — no `[jenkins]` feed, no answer yet, or
    /// only one older than that (failing polls leave the last answer in place): a rule that
    /// needs Jenkins to want nothing (`agent_predicted_handover`) then does not fire. A
    /// time, not a flag, so a snapshot the scheduler keeps while GitHub's polls fail stops
    /// vouching for the queue too.
    pub jenkins_idle_until_ms: Millis,
    /// Jenkins agents online and idle fleet-wide (`/computer/api/json`: a node neither
    /// offline nor running a build), by node name; empty when none is, or when unknown (no
    /// `[jenkins]` feed, or no answer). Every host reads the same list, so they agree on
    /// which idle agent the fleet keeps for the next build that accepts any node (the first
    /// by name) and which one is its first spare (`agent_spare_handover`).
    pub jenkins_idle_agents: Vec<String>,
    /// Jenkins' SPI nodes offline fleet-wide (`/computer/api/json`: offline, not taken
    /// offline by a user, launchable), by node name, sorted; empty when unknown. Hosts that
    /// could launch their own node for a build that accepts any node take turns in this
    /// order (`sched/launch.rs`).
    pub jenkins_offline_nodes: Vec<String>,
    /// When the poll that saw all this began, unix ms (0: unknown, its arrival stands in).
    /// Freshness is judged by it, not by the arrival: a poll begun before this host was
    /// freed (one in flight, or a fleet poller's published snapshot) predates what other
    /// hosts did since, like any older picture.
    pub taken_at_ms: Millis,
}

impl DemandSnapshot {
    /// The runner name every host sees for this host's `vm` (`runners_here`), or the VM's
    /// own name when the actor named none (no registration of ours for it is known).
    pub(crate) fn runner_of<'a>(&'a self, vm: &'a str) -> &'a str {
        self.runners_here.get(vm).map_or(vm, String::as_str)
    }
}

/// How many demand poll intervals one Jenkins queue answer stands for the queue
/// ([`DemandSnapshot::jenkins_idle_until_ms`]): a failed poll or two (a Jenkins restart, a
/// timeout) is ridden out without flapping, and by the third missing answer the queue counts
/// as unknown. An answer is at most one interval old when the next GitHub snapshot takes it.
pub const JENKINS_FRESH_POLLS: u32 = 3;

/// A buildable Jenkins queue item (policy `demand`'s fair share: the SPI waiter's age).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JenkinsQueued {
    /// The node name or label it waits for, as Jenkins' `why` names it.
    pub label: String,
    /// In the queue since (`inQueueSince`), unix ms.
    pub since_ms: Millis,
}

/// A job a runner took, as GitHub's jobs API shows it while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedJob {
    /// Job id.
    pub id: u64,
    /// Queued since (`created_at`), unix ms.
    pub queued_ms: Millis,
    /// Started (`started_at`), unix ms.
    pub started_ms: Millis,
    /// The runner that took it (`runner_name`).
    pub runner: String,
}

/// How to stop a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopKind {
    /// Graceful shutdown.
    Graceful,
    /// Immediate power-off (`--kill`), used only after a graceful stop timed out or with force.
    Kill,
    /// Discard a suspended VM's saved state.
    DropState,
}

/// Work the actor runs outside the scheduler, as a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// `prlctl start`.
    Start,
    /// `prlctl resume` (suspended or paused VMs).
    Resume,
    /// `prlctl stop` in the given mode.
    Stop(StopKind),
    /// Busy probe for the given team (guest exec of the team's configured probe command).
    Probe(Team),
    /// Poll until the guest answers `prlctl exec` (and, for ROOT, a runner listener is up),
    /// or until `timeout_ms` elapses (then the op fails).
    WaitReady {
        /// Give up after this long.
        timeout_ms: u64,
    },
    /// ROOT runner re-arm (`jobs_per_boot` > 1): register a fresh JIT runner in the running
    /// guest, whose previous runner has done its job, instead of rebooting.
    Rearm,
}

/// Result of a busy probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// No job runs.
    Idle,
    /// A job runs; the text says what was found.
    Busy(String),
    /// The probe failed or timed out; counts as busy.
    Unknown(String),
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The operation succeeded.
    Done,
    /// The operation failed; the text is the error chain.
    Failed(String),
    /// A probe's answer.
    Probe(ProbeResult),
    /// The actor did not run the operation (the VM is held by another subsystem, e.g. an
    /// image transfer); nothing changed on the host. Not counted as a VM failure.
    NotRun(String),
}

/// A client command that goes through the scheduler (queries do not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start a VM on an operator's request.
    StartVm {
        /// Resolved VM name.
        vm: String,
    },
    /// Stop a VM on an operator's request.
    StopVm {
        /// Resolved VM name.
        vm: String,
        /// Skip the busy check.
        force: bool,
    },
    /// Jenkins asks for a VM.
    RequestSlot {
        /// Resolved VM name.
        vm: String,
        /// How long the caller waits for the host, ms.
        wait_ms: u64,
    },
    /// Pause cycling.
    Pause {
        /// Why.
        reason: String,
    },
    /// Resume cycling and end a drain.
    Resume,
    /// Lock.
    Lock {
        /// Target.
        target: LockTarget,
        /// Why.
        reason: String,
    },
    /// Unlock.
    Unlock {
        /// Target.
        target: UnlockTarget,
    },
    /// Drain the host.
    Drain {
        /// Why.
        reason: String,
        /// How long to wait for the host to empty, ms.
        wait_ms: u64,
    },
}

/// Inputs to the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A fresh inventory from the hypervisor.
    Inventory(Vec<ObservedVm>),
    /// An operation finished.
    Finished {
        /// The op.
        op: OpId,
        /// How it ended.
        outcome: Outcome,
    },
    /// A client command.
    Command {
        /// Reply handle.
        req: ReqId,
        /// User name of the caller, for attribution.
        caller: String,
        /// The command.
        cmd: Command,
    },
    /// The client waiting on `req` went away; drop its pending request.
    Cancelled {
        /// The request.
        req: ReqId,
    },
    /// Time passed (a deadline from `next_deadline` was reached, or a periodic tick).
    Tick,
    /// A fresh demand snapshot (policy `demand`; ignored by the others except for `status`).
    /// Boxed: it is by far the largest input (a dozen lists), and every input is moved.
    Demand(Box<DemandSnapshot>),
}

/// What the scheduler wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Run an action on a VM as a job and report back with `Input::Finished { op }`.
    Run {
        /// The op id to report back with.
        op: OpId,
        /// VM name.
        vm: String,
        /// What to do.
        action: Action,
    },
    /// Answer a waiting client (terminal).
    Reply {
        /// The request.
        req: ReqId,
        /// The answer.
        result: Result<Response, WireError>,
    },
    /// Tell a waiting client how its request is progressing (non-terminal).
    Progress {
        /// The request.
        req: ReqId,
        /// What is happening.
        message: String,
    },
    /// Broadcast an event to watchers.
    Emit(Event),
    /// Write `World::persisted()` to the state file.
    Persist,
    /// List VMs and feed back `Input::Inventory`.
    RefreshInventory,
    /// Poll the demand sources now rather than at the next interval (a hint).
    RefreshDemand,
    /// Ask Jenkins to launch `node`, the Jenkins node of this host's SPI VM `vm`
    /// (`POST /computer/<node>/launchSlaveAgent`): its start script then asks for the slot
    /// like any launch (`sched/launch.rs`).
    LaunchJenkinsNode {
        /// The Jenkins node name.
        node: String,
        /// This host's SPI VM it runs on.
        vm: String,
    },
}

/// Timings and limits. All durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedConfig {
    /// Policy.
    pub policy: Policy,
    /// VMs allowed to run at once (the shared build disk: 1).
    pub capacity: u32,
    /// Cycle: minimum time a ROOT VM stays on after it is ready (seed: 60 s).
    pub cycle_on_min_ms: u64,
    /// Cycle: uniform random extra on-time (seed: 60 s, giving 60–119 s).
    pub cycle_on_jitter_ms: u64,
    /// Cycle: window after an idle stop in which nothing is started, so Jenkins can take the
    /// host (seed: 60 s).
    pub cycle_off_window_ms: u64,
    /// Cycle: re-check interval of a busy VM (seed: 60 s).
    pub busy_recheck_ms: u64,
    /// Readiness timeout after a start.
    pub ready_timeout_ms: u64,
    /// Graceful stop timeout before `--kill`.
    pub graceful_stop_timeout_ms: u64,
    /// Readiness failures in a row before a VM is quarantined.
    pub quarantine_after_failures: u32,
    /// First quarantine back-off; doubles per further failure.
    pub quarantine_base_ms: u64,
    /// Longest quarantine back-off.
    pub quarantine_max_ms: u64,
    /// A granted slot is protected from preemption this long, busy or not.
    pub slot_grace_ms: u64,
    /// When both teams have demand, neither waits longer than this.
    pub fairness_bound_ms: u64,
    /// Periodic inventory refresh.
    pub inventory_interval_ms: u64,
    /// How many decisions `status` keeps.
    pub decision_log_len: u32,
    /// Seed for the cycle's jitter, so simulations replay exactly.
    pub seed: u64,
    /// Registration watchdog: a ready ROOT VM whose runner has taken no job this long while
    /// a job it could take was queued (per the demand snapshot) is recycled. 0 = off.
    pub runner_watchdog_ms: u64,
    /// Policy `demand`: configured warm-runner targets (fleet-wide idle runners per label set).
    pub warm: Vec<WarmTarget>,
    /// Policy `demand`: warm-runner prediction — a label set with at least `warm_min_jobs`
    /// jobs queued within this window gets one warm runner. 0 = prediction off.
    pub warm_window_ms: u64,
    /// See `warm_window_ms`.
    pub warm_min_jobs: u32,
    /// A warm runner (one booted for no particular job) gives its host up to an unmet job
    /// it cannot take once that job has been queued this long (time for a free host
    /// elsewhere in the fleet to take it first).
    pub warm_yield_ms: u64,
    /// A warm runner whose target lapsed (no job came), or a runner booted for a job that
    /// another runner took, stays up this long after it became ready, unless its host is
    /// wanted: stopping it unused would throw its boot away, and the next day's first job
    /// takes it.
    pub warm_linger_ms: u64,
    /// Policy `demand`, idle-host warmth: a free host with nothing to do boots a runner for
    /// a label set of its VMs that no idle runner in the fleet covers (`super::warm`).
    pub warm_idle_hosts: bool,
    /// Policy `demand`, idle-host warmth's swap: an idle-host runner gives its host to a
    /// missing predicted or configured target (`super::swap`).
    pub warm_swap: bool,
    /// Policy `demand`: jobs a ROOT VM may run per boot. Above 1, a VM whose runner has done
    /// its job and that an unmet job fits gets a fresh runner (`Action::Rearm`) instead of a
    /// reboot. 1 = the seed's one job per boot.
    pub jobs_per_boot: u32,
    /// Policy `demand`, fair share: weight of ROOT's wait when both teams wait for a host.
    pub share_root: u32,
    /// Policy `demand`, fair share: weight of Jenkins' wait.
    pub share_spi: u32,
    /// Policy `demand`, fair share: a Jenkins node that has not asked for a slot for this
    /// long no longer waits (its age is forgotten). Clearly above Jenkins' retry interval
    /// (60 s), so a retry, a refusal or a pre-emption probe never resets its age.
    pub waiter_expiry_ms: u64,
    /// Policy `demand`: another team's idle VM whose probes have seen no build for this long
    /// gives its host up to ROOT whether or not a ROOT job waits. 0 = never.
    pub agent_idle_handover_ms: u64,
    /// Policy `demand`: another team's idle VM whose probes have seen no build for this long
    /// gives its host up when idle-host warmth is short of a platform a ROOT VM here could
    /// keep (`sched/demand.rs`). 0 = never.
    pub agent_warm_handover_ms: u64,
    /// Policy `demand`: another team's idle VM whose probes have seen no build for this long
    /// gives its host up when the fleet is short of a predicted or configured warm runner a
    /// ROOT VM here could be, and Jenkins' queue is known empty
    /// ([`DemandSnapshot::jenkins_idle_until_ms`]). 0 = never.
    pub agent_predicted_handover_ms: u64,
    /// Policy `demand`: an idle Jenkins agent that is the fleet's first spare (another idle
    /// agent sorts before it in [`DemandSnapshot::jenkins_idle_agents`]) and has seen no
    /// build for this long gives its host up for a missing warm runner, while Jenkins' queue
    /// is known empty. 0 = never.
    pub agent_spare_handover_ms: u64,
    /// Policy `demand`: a build that accepts any node, buildable this long with no idle agent
    /// in the fleet, makes a free host launch its own node ([`Effect::LaunchJenkinsNode`]).
    /// 0 = never (the default: opt-in).
    pub launch_any_node_after_ms: u64,
    /// Jenkins labels every SPI node on this host carries (`[jenkins] labels`): a queued
    /// build for one of them (a build that accepts any node) waits for this host too.
    pub spi_labels: Vec<String>,
    /// Jenkins node name per SPI VM name where they differ (`[jenkins] nodes`), to match
    /// a queue item waiting for a named node to its VM.
    pub jenkins_nodes: BTreeMap<String, String>,
}

impl Default for SchedConfig {
    fn default() -> Self {
        Self {
            policy: Policy::Cycle,
            capacity: 1,
            cycle_on_min_ms: 60_000,
            cycle_on_jitter_ms: 60_000,
            cycle_off_window_ms: 60_000,
            busy_recheck_ms: 60_000,
            // Above the slowest normal boot: a cold host's first boot can take minutes
            // (marble-sim's standard boot model has a tail to 4 min), and a timeout there
            // throws the boot away and makes the job wait for another.
            ready_timeout_ms: 300_000,
            graceful_stop_timeout_ms: 60_000,
            quarantine_after_failures: 3,
            quarantine_base_ms: 300_000,
            quarantine_max_ms: 3_600_000,
            slot_grace_ms: 300_000,
            fairness_bound_ms: 1_800_000,
            inventory_interval_ms: 30_000,
            decision_log_len: 50,
            seed: 0,
            runner_watchdog_ms: 0,
            warm: Vec::new(),
            warm_window_ms: 2 * 3_600_000,
            warm_min_jobs: 2,
            warm_yield_ms: 60_000,
            warm_linger_ms: 24 * 3_600_000,
            warm_idle_hosts: true,
            warm_swap: false,
            jobs_per_boot: 1,
            // Jenkins' start script holds an executor while it waits: its wait counts double.
            share_root: 1,
            share_spi: 2,
            waiter_expiry_ms: 300_000,
            agent_idle_handover_ms: 8 * 3_600_000,
            agent_warm_handover_ms: 6 * 3_600_000,
            agent_predicted_handover_ms: 3_600_000,
            agent_spare_handover_ms: 15 * 60_000,
            launch_any_node_after_ms: 0,
            spi_labels: Vec::new(),
            jenkins_nodes: BTreeMap::new(),
        }
    }
}

mod agents;
mod commands;
mod cycle;
mod demand;
mod from_config;
mod labels;
mod launch;
mod observe;
mod outcome;
mod persist;
mod report;
mod rng;
mod share;
mod slots;
mod stagger;
mod stop;
mod swap;
mod unservable;
mod vm;
mod warm;
mod world;

#[cfg(test)]
mod tests;

pub use labels::{
    LabelMap, VmLabels, arch_label, host_arch_label, labels_cover, macos_major, runner_labels,
    version_label,
};
pub use persist::{Lease, Persisted, Quarantine, RunnerStanding, SeenJob, SpiWaiter, Streak};
pub use report::{BOOT_BUCKETS_SECS, Counters, Histogram, JOB_WAIT_BUCKETS_SECS};
pub use unservable::UnservableJobs;
pub use world::World;

/// The operation kind as shown in events and `status` (`start`, `stop`, `kill`, `probe`…).
pub fn action_kind(action: &Action) -> &'static str {
    match action {
        Action::Start => "start",
        Action::Resume => "resume",
        Action::Stop(StopKind::Graceful) => "stop",
        Action::Stop(StopKind::Kill) => "kill",
        Action::Stop(StopKind::DropState) => "drop-state",
        Action::Probe(_) => "probe",
        Action::WaitReady { .. } => "ready",
        Action::Rearm => "rearm",
    }
}

/// Unix ms as an RFC 3339 UTC timestamp, for messages (pure: no clock is read).
pub fn format_ms(ms: Millis) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}
