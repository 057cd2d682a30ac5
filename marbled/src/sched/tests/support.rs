//! Shared scaffolding of the scenario tests: a tiny in-memory host that answers the operations
//! `World::handle` asks for, the VM names, and the hosts each group of tests starts from.

pub(super) use std::collections::BTreeMap;

pub(super) use marble_proto::{
    BusyState, ErrorKind, LockTarget, PowerState, Response, Team, UnlockTarget, WireError,
};

pub(super) use super::super::*;

/// A host the tests control: power per VM, which VMs run a job, which probes fail.
pub(super) struct Host {
    pub(super) world: World,
    pub(super) now: Millis,
    pub(super) power: BTreeMap<String, PowerState>,
    pub(super) teams: BTreeMap<String, Team>,
    pub(super) jobs: BTreeMap<String, String>,
    pub(super) probe_fails: BTreeMap<String, String>,
    pub(super) never_ready: BTreeMap<String, String>,
    /// Runner re-arms fail with this error (a daemon without re-arm support).
    pub(super) rearm_fails: Option<String>,
    pub(super) ops: Vec<(OpId, String, Action)>,
    pub(super) replies: BTreeMap<ReqId, Result<Response, WireError>>,
    pub(super) next_req: u64,
    /// Every Run effect, in order: (vm, action).
    pub(super) log: Vec<(String, Action)>,
    pub(super) max_running: usize,
    /// `Effect::RefreshDemand` seen.
    pub(super) demand_asks: u32,
    /// `Effect::LaunchJenkinsNode` seen: (node, vm), in order.
    pub(super) launches: Vec<(String, String)>,
}

pub(super) fn config(policy: Policy) -> SchedConfig {
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
        warm_idle_hosts: false,
        warm_swap: false,
        jobs_per_boot: 1,
        share_root: 1,
        share_spi: 2,
        waiter_expiry_ms: 300_000,
        // Off unless a test is about idle Jenkins agents.
        agent_idle_handover_ms: 0,
        agent_warm_handover_ms: 0,
        agent_predicted_handover_ms: 0,
        agent_spare_handover_ms: 0,
        // Off unless a test is about launching a node for a build for any node.
        launch_any_node_after_ms: 0,
        spi_labels: Vec::new(),
        jenkins_nodes: std::collections::BTreeMap::new(),
    }
}

impl Host {
    pub(super) fn new(policy: Policy, vms: &[(&str, Team, PowerState)]) -> Self {
        Self::with_world(World::new(config(policy), 1_000_000), vms)
    }

    pub(super) fn with_world(world: World, vms: &[(&str, Team, PowerState)]) -> Self {
        let mut host = Self::before_inventory(world, vms);
        host.inventory();
        host
    }

    /// A host whose daemon has not had its first inventory yet (`prlctl list` still runs).
    pub(super) fn before_inventory(world: World, vms: &[(&str, Team, PowerState)]) -> Self {
        Self {
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
            rearm_fails: None,
            ops: Vec::new(),
            replies: BTreeMap::new(),
            next_req: 1,
            log: Vec::new(),
            max_running: 0,
            demand_asks: 0,
            launches: Vec::new(),
        }
    }

    pub(super) fn feed(&mut self, input: Input) {
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
                Effect::LaunchJenkinsNode { node, vm } => self.launches.push((node, vm)),
                Effect::RefreshInventory
                | Effect::Persist
                | Effect::Emit(_)
                | Effect::Progress { .. } => {}
            }
        }
    }

    pub(super) fn inventory(&mut self) {
        let vms = self
            .power
            .iter()
            .map(|(name, power)| ObservedVm {
                name: name.clone(),
                uuid: format!("uuid-{name}"),
                power: power.clone(),
                team: self.teams[name],
                labels: runner_labels(name),
            })
            .collect();
        self.feed(Input::Inventory(vms));
    }

    pub(super) fn running(&self) -> Vec<String> {
        self.power
            .iter()
            .filter(|(_, p)| p.occupies_host())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Answer the oldest operation the way this host behaves.
    pub(super) fn complete_one(&mut self) -> bool {
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
            Action::Rearm => {
                assert!(
                    !self.jobs.contains_key(&vm),
                    "re-armed {vm} while a job ran"
                );
                match &self.rearm_fails {
                    Some(err) => Outcome::Failed(err.clone()),
                    None => Outcome::Done,
                }
            }
        };
        self.max_running = self.max_running.max(self.running().len());
        self.feed(Input::Finished { op, outcome });
        true
    }

    pub(super) fn settle(&mut self) {
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

    pub(super) fn advance(&mut self, ms: u64) {
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

    pub(super) fn command(&mut self, caller: &str, cmd: Command) -> ReqId {
        let req = ReqId(self.next_req);
        self.next_req += 1;
        self.feed(Input::Command {
            req,
            caller: caller.into(),
            cmd,
        });
        req
    }

    pub(super) fn reply(&self, req: ReqId) -> &Result<Response, WireError> {
        self.replies.get(&req).expect("request answered")
    }

    pub(super) fn err_kind(&self, req: ReqId) -> ErrorKind {
        match self.reply(req) {
            Err(err) => err.kind,
            Ok(ok) => panic!("expected an error, got {ok:?}"),
        }
    }
}

pub(super) fn slot(vm: &str, wait_ms: u64) -> Command {
    Command::RequestSlot {
        vm: vm.into(),
        wait_ms,
    }
}

pub(super) const R1: &str = "h-ROOT-VM-1";

pub(super) const R2: &str = "h-ROOT-VM-2";

pub(super) const S1: &str = "h-SPI-VM-1";

pub(super) const S2: &str = "h-SPI-VM-2";

pub(super) fn four(policy: Policy) -> Host {
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

pub(super) const M14: &str = "h-ROOT-VM-macOS-14";

pub(super) const M15: &str = "h-ROOT-VM-macOS-15";

pub(super) fn job(id: u64, since_ms: Millis, mac: &str) -> QueuedJob {
    QueuedJob {
        id,
        since_ms,
        labels: vec!["self-hosted".into(), "macOS".into(), mac.into()],
    }
}

pub(super) fn demand_host() -> Host {
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
pub(super) fn booted_for_job_7() -> Host {
    let mut host = demand_host();
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(7, host.now, "mac15")],
        ..Default::default()
    })));
    host.settle();
    assert_eq!(host.running(), vec![M15.to_owned()]);
    host
}

/// A `demand` host with `vms`, its config changed by `configure`.
pub(super) fn demand_host_with(
    configure: impl FnOnce(&mut SchedConfig),
    vms: &[(&str, Team, PowerState)],
) -> Host {
    let mut config = config(Policy::Demand);
    configure(&mut config);
    Host::with_world(World::new(config, 1_000_000), vms)
}

pub(super) fn warm_host(configure: impl FnOnce(&mut SchedConfig)) -> Host {
    demand_host_with(
        configure,
        &[
            (M14, Team::Root, PowerState::Stopped),
            (M15, Team::Root, PowerState::Stopped),
            (S1, Team::Spi, PowerState::Stopped),
        ],
    )
}

pub(super) fn mac_labels(mac: &str) -> Vec<String> {
    job(0, 0, mac).labels
}

pub(super) fn share_host(configure: impl FnOnce(&mut SchedConfig)) -> Host {
    demand_host_with(
        configure,
        &[
            (M14, Team::Root, PowerState::Stopped),
            (S1, Team::Spi, PowerState::Stopped),
            (S2, Team::Spi, PowerState::Stopped),
        ],
    )
}

/// S1 is granted and runs a build; then Jenkins asks for S2, waiting up to an hour.
pub(super) fn s1_busy_then_s2_asked(host: &mut Host) {
    let first = host.command("jenkins", slot(S1, 0));
    host.settle();
    assert!(matches!(host.reply(first), Ok(Response::SlotGranted(_))));
    host.jobs.insert(S1.into(), "jenkins build".into());
    let _waiting = host.command("jenkins", slot(S2, 3_600_000));
    host.settle();
}

/// S1 holds the host with a build; Jenkins waits for S2; a mac14 job is queued since
/// `root_since`. Returns the host and the time the Jenkins request was made.
pub(super) fn contended(
    configure: impl FnOnce(&mut SchedConfig),
    root_since_ago: u64,
) -> (Host, Millis) {
    let mut host = share_host(configure);
    s1_busy_then_s2_asked(&mut host);
    let asked = host.now;
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(5, asked - root_since_ago, "mac14")],
        ..Default::default()
    })));
    (host, asked)
}
