//! The simulated CI clients: GitHub's queue of ROOT jobs and Jenkins' SPI builds.
//!
//! ROOT: a queued job starts on a running ROOT VM whose guest is up, whose ephemeral runner
//! has not taken a job yet this boot, and whose labels include the job's. SPI: a build runs
//! at once on a node whose agent is connected and idle; otherwise Jenkins runs the start
//! script (`request-slot`) for its node — for "any", the nodes in turn — and on a grant the
//! agent connects and the oldest build waiting that can run there takes it (the launch is the
//! node's, not the build's); on a refusal (or no answer in time) Jenkins retries
//! after the build's retry interval. A granted agent stays connected, idle, until the VM
//! stops.

use marble_proto::{ErrorKind, Response, Team, WireError};
use marbled::sched::{Command, Input, JenkinsQueued, Millis, ReqId, labels_cover};

use super::engine::{Engine, Ev};
use super::generate::{JenkinsArrival, RootArrival};
use super::host::{JobRef, RunningJob};
use super::invariants::ViolationKind;
use super::metrics::fmt_ms;
use super::trace::JenkinsLaunch;

/// The Jenkins label every simulated SPI node carries and a build for `any` node asks for
/// (the hosts are configured with it as `[jenkins] labels`).
pub const ANY_NODE_LABEL: &str = "marble-spi";

/// Where a ROOT job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RootState {
    NotArrived,
    Queued,
    Running,
    Done,
    Interrupted,
}

/// A ROOT job of the run.
#[derive(Debug, Clone)]
pub(super) struct RootJob {
    pub(super) arrival: RootArrival,
    pub(super) state: RootState,
}

/// Where a Jenkins build is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BuildState {
    NotArrived,
    /// Queued in Jenkins, no start script running for it.
    Waiting,
    /// Its start script waits on this request.
    Requesting(ReqId),
    /// Refused; Jenkins tries again later.
    RetryWait,
    Running,
    Done,
    Interrupted,
}

impl BuildState {
    /// Arrived and not started.
    pub(super) fn is_waiting(self) -> bool {
        matches!(
            self,
            BuildState::Waiting | BuildState::Requesting(_) | BuildState::RetryWait
        )
    }
}

/// A Jenkins build of the run.
#[derive(Debug, Clone)]
pub(super) struct Build {
    pub(super) arrival: JenkinsArrival,
    pub(super) state: BuildState,
    /// "any": the SPI VM (index among SPI VMs) to ask next.
    pub(super) cursor: usize,
    /// When its first `request-slot` was sent.
    pub(super) first_request: Option<Millis>,
    /// It has been granted a slot (its grant latency is recorded).
    pub(super) granted: bool,
}

/// A `request-slot` in flight (kept after its answer, to catch a second reply).
#[derive(Debug, Clone)]
pub(super) struct PendingReq {
    /// The build whose turn ran the start script; `None` for a launch the host asked for
    /// (`Effect::LaunchJenkinsNode`), which is no build's.
    pub(super) build: Option<usize>,
    pub(super) vm: usize,
    pub(super) answered: bool,
    pub(super) cancelled: bool,
    /// An operation with an injected hang was in flight while this request waited.
    pub(super) saw_hang: bool,
    /// When the start script sent it.
    pub(super) sent_at: Millis,
    /// The `wait` it asked for (a launch's is its oldest waiting build's, not its own build's).
    pub(super) wait_ms: u64,
}

/// Stable snake_case name of an error kind, for the refusal counts (`Busy` → `busy`,
/// `InvalidState` → `invalid_state`). Derived from the wire name so kinds appended to the
/// protocol later are named without a change here.
pub fn kind_name(kind: ErrorKind) -> String {
    let wire = serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{kind:?}"));
    let mut out = String::new();
    for (i, c) in wire.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl Engine {
    pub(super) fn root_arrived(&mut self, i: usize) {
        self.stats_root.arrived += 1;
        self.root_jobs[i].state = RootState::Queued;
        self.root_queue.push(i);
        self.watch_sees_new_run();
    }

    pub(super) fn build_arrived(&mut self, i: usize) {
        self.stats_spi.arrived += 1;
        self.builds[i].state = BuildState::Waiting;
    }

    pub(super) fn build_retry(&mut self, i: usize) {
        if self.builds[i].state == BuildState::RetryWait {
            self.builds[i].state = BuildState::Waiting;
        }
    }

    /// What Jenkins' node list (`/computer/api/json`) shows as idle agents now: every SPI
    /// node whose agent is connected (its guest up) and runs no build, by node name (the
    /// simulated nodes are named after their VMs).
    pub(super) fn jenkins_idle_agents(&self) -> Vec<String> {
        let now = self.now;
        (self.vms.iter())
            .filter(|v| v.team == Team::Spi && v.agent_connected && v.guest_up(now))
            .filter(|v| v.job.is_none())
            .map(|v| v.name.clone())
            .collect()
    }

    /// What Jenkins' node list shows as offline SPI nodes now (not connected: stopped,
    /// booting for a start script, or connecting), sorted by node name.
    pub(super) fn jenkins_offline_nodes(&self) -> Vec<String> {
        let mut offline: Vec<String> = (self.vms.iter())
            .filter(|v| v.team == Team::Spi && !v.agent_connected)
            .map(|v| v.name.clone())
            .collect();
        offline.sort();
        offline
    }

    /// What Jenkins' queue API (`/queue/api/json`) shows now, as the daemon's queue poll
    /// reads it: every arrived, not yet started build is a buildable item since its arrival
    /// (`inQueueSince`), its `why` naming the node it is tied to or, for `any`, the label
    /// all SPI nodes carry ("Waiting for next available executor on ‘…’", "‘…’ is offline",
    /// "All nodes of label ‘…’ are offline").
    pub(super) fn jenkins_queue(&self) -> Vec<JenkinsQueued> {
        self.builds
            .iter()
            .filter(|b| b.state.is_waiting())
            .map(|b| JenkinsQueued {
                label: b
                    .arrival
                    .vm
                    .clone()
                    .unwrap_or_else(|| ANY_NODE_LABEL.to_owned()),
                since_ms: super::engine::EPOCH_MS.saturating_add(b.arrival.at_ms),
            })
            .collect()
    }

    /// Start whatever can start now, until nothing changes.
    pub(super) fn pump(&mut self) {
        // The step budget also bounds this loop, should a client and the scheduler livelock.
        while self.steps < super::engine::MAX_STEPS
            && (self.start_root_jobs() || self.dispatch_builds())
        {}
    }

    fn start_root_jobs(&mut self) -> bool {
        let mut changed = false;
        let mut k = 0;
        while k < self.root_queue.len() {
            let j = self.root_queue[k];
            let now = self.now;
            // GitHub's rule, the scheduler's function: labels match without case.
            let labels: Vec<String> = self.root_jobs[j].arrival.labels.iter().cloned().collect();
            let vm = self.vms.iter().position(|v| {
                v.team == Team::Root
                    && v.guest_up(now)
                    && v.job.is_none()
                    && !v.runner_used
                    && labels_cover(&v.labels.iter().cloned().collect::<Vec<_>>(), &labels)
            });
            if let Some(vi) = vm {
                self.root_queue.remove(k);
                self.vms[vi].runner_used = true;
                self.start_job(vi, JobRef::Root(j));
                changed = true;
            } else {
                k += 1;
            }
        }
        changed
    }

    fn dispatch_builds(&mut self) -> bool {
        let mut spi: Vec<usize> = (0..self.vms.len())
            .filter(|&i| self.vms[i].team == Team::Spi)
            .collect();
        if self.cfg.jenkins_launch == JenkinsLaunch::FirstOffline {
            // Jenkins' node order: `Jenkins.getComputers()` sorts by name.
            spi.sort_by(|&a, &b| self.vms[a].name.cmp(&self.vms[b].name));
        }
        let mut changed = false;
        for b in 0..self.builds.len() {
            // Jenkins' queue gives a buildable item to any idle executor whose node it
            // accepts, whatever start scripts run meanwhile: a build for `any` node whose
            // script waits on one host still runs at once on an agent that goes idle on
            // another (the script goes on; its grant connects an agent with nothing to do).
            if !self.builds[b].state.is_waiting() {
                continue;
            }
            let candidates: Vec<usize> = match &self.builds[b].arrival.vm {
                Some(name) => self.by_name.get(name).copied().into_iter().collect(),
                None => spi.clone(),
            };
            let now = self.now;
            if let Some(&vi) = candidates.iter().find(|&&vi| {
                let v = &self.vms[vi];
                v.agent_connected && v.guest_up(now) && v.job.is_none()
            }) {
                self.start_job(vi, JobRef::Spi(b));
                changed = true;
                continue;
            }
            if self.builds[b].state != BuildState::Waiting {
                continue;
            }
            // A node whose agent is connected is busy with another build: Jenkins queues
            // the build for it rather than running the start script again.
            let n = candidates.len();
            let start = match self.cfg.jenkins_launch {
                JenkinsLaunch::InTurn => self.builds[b].cursor,
                // A build for any node: `spi`, in name order.
                JenkinsLaunch::FirstOffline => 0,
            };
            let target = (0..n).map(|k| (start + k) % n).find(|&k| {
                let vi = candidates[k];
                self.request_for_vm[vi].is_none() && !self.vms[vi].agent_connected
            });
            if let Some(k) = target {
                // Unused by `FirstOffline`, which always scans from the first node.
                self.builds[b].cursor = (k + 1) % n;
                self.send_request(b, candidates[k]);
                changed = true;
            }
        }
        changed
    }

    fn send_request(&mut self, b: usize, vi: usize) {
        let req = self.run_start_script(Some(b), vi, self.builds[b].arrival.wait_ms);
        self.builds[b].state = BuildState::Requesting(req);
        let now = self.now;
        self.builds[b].first_request.get_or_insert(now);
    }

    /// `Effect::LaunchJenkinsNode`: Jenkins launches SPI VM `vi`'s node as its "Launch
    /// agent" does — the start script asks for the slot, for no build in particular — unless
    /// the node is connected or being launched already (the daemon asks only for a node it
    /// sees offline; Jenkins would start a second launch of one still connecting). The
    /// script waits as a build's would (the oldest waiting build's `wait`); a refusal is
    /// not retried (a launch is not a build: Jenkins' own launches go on as before).
    pub(super) fn launch_node(&mut self, vi: usize) {
        self.jenkins_launches += 1;
        if self.vms[vi].agent_connected || self.request_for_vm[vi].is_some() {
            return;
        }
        let wait_ms = (self.builds.iter())
            .find(|b| b.state.is_waiting())
            .map_or(300_000, |b| b.arrival.wait_ms);
        self.run_start_script(None, vi, wait_ms);
    }

    /// Run VM `vi`'s start script: `request-slot` with `wait_ms`, for build `b` if any.
    fn run_start_script(&mut self, b: Option<usize>, vi: usize, wait_ms: u64) -> ReqId {
        let req = ReqId(self.next_req);
        self.next_req += 1;
        self.slot_requests += 1;
        self.requests.insert(
            req,
            PendingReq {
                build: b,
                vm: vi,
                answered: false,
                cancelled: false,
                saw_hang: self.hung_op_in_flight(),
                sent_at: self.now,
                wait_ms,
            },
        );
        self.request_for_vm[vi] = Some(req);
        let bound = wait_ms.saturating_add(self.reply_bound());
        self.schedule_in(bound, Ev::ReplyDeadline(req));
        let vm = self.vms[vi].name.clone();
        let host = self.vms[vi].host;
        self.feed(
            host,
            Input::Command {
                req,
                caller: "jenkins".into(),
                cmd: Command::RequestSlot { vm, wait_ms },
            },
        );
        req
    }

    /// How long past its `wait` a request may take: the scheduler may use the wait to get
    /// the host, then stop the VM holding it (graceful timeout) and wait for the new one's
    /// guest (readiness timeout); `sim.reply_slack` covers the operations' own latencies.
    pub(super) fn reply_bound(&self) -> u64 {
        let c = self.hosts[0].world.config();
        c.graceful_stop_timeout_ms
            .saturating_add(c.ready_timeout_ms)
            .saturating_add(super::engine::ms(self.cfg.reply_slack))
    }

    /// Request `req` for build `b` failed: Jenkins tries again later, unless the build no
    /// longer waits on it (it started on an idle agent meanwhile).
    fn retry_later(&mut self, b: Option<usize>, req: ReqId) {
        let Some(b) = b else {
            return;
        };
        if self.builds[b].state != BuildState::Requesting(req) {
            return;
        }
        self.builds[b].state = BuildState::RetryWait;
        let retry = self.builds[b].arrival.retry_ms;
        self.schedule_in(retry, Ev::JenkinsRetry(b));
    }

    /// `Effect::Reply`.
    pub(super) fn on_reply(&mut self, req: ReqId, result: Result<Response, WireError>) {
        let Some(p) = self.requests.get_mut(&req) else {
            self.violation(
                ViolationKind::BadReply,
                format!("reply to request {} that was never sent", req.0),
            );
            return;
        };
        if p.answered {
            self.violation(
                ViolationKind::BadReply,
                format!("second reply to request {}", req.0),
            );
            return;
        }
        p.answered = true;
        if p.cancelled {
            self.late_replies += 1;
            return;
        }
        let (b, vi, sent_at) = (p.build, p.vm, p.sent_at);
        if self.request_for_vm[vi] == Some(req) {
            self.request_for_vm[vi] = None;
        }
        match result {
            Ok(Response::SlotGranted(grant)) => {
                self.grants += 1;
                let now = self.now;
                let v = &self.vms[vi];
                let problem = if grant.vm != v.name {
                    Some(format!(
                        "request {} for {} was granted {}",
                        req.0, v.name, grant.vm
                    ))
                } else if !v.guest_up(now) {
                    Some(format!(
                        "request {} granted {} while it is {:?} and its guest {}",
                        req.0,
                        v.name,
                        v.power,
                        if v.ready_at.is_some() {
                            "is still booting"
                        } else {
                            "does not answer"
                        }
                    ))
                } else {
                    None
                };
                if let Some(text) = problem {
                    self.violation(ViolationKind::BadGrant, text);
                    self.retry_later(b, req);
                    return;
                }
                self.vms[vi].agent_connected = true;
                let Some(b) = b else {
                    // A launch the host asked for: Jenkins hands the new agent's executor to
                    // the oldest build it can take, whose grant latency runs, as for any
                    // grant, from the earlier of its own first request and the granted
                    // request (the launch's): the node was asked for since then.
                    if let Some(taker) = self.oldest_waiting_for(vi) {
                        let since = (self.builds[taker].first_request)
                            .map_or(sent_at, |first| first.min(sent_at));
                        self.record_grant(taker, vi, Some(since));
                        if self.vms[vi].job.is_none() {
                            self.start_job(vi, JobRef::Spi(taker));
                        }
                    }
                    return;
                };
                if self.builds[b].state != BuildState::Requesting(req) {
                    // The build ran on another idle agent meanwhile: this one connects idle,
                    // and the build's wait ended when it started (not a grant latency).
                    return;
                }
                // The launch is the node's, not the build's: Jenkins hands the new agent's
                // executor to the longest-waiting build that can run there (builds are in
                // arrival order), which may be older than the one whose turn it was to run
                // the start script; that one then waits for the executor.
                self.builds[b].state = BuildState::Waiting;
                let taker = self.oldest_waiting_for(vi).unwrap_or(b);
                // The grant ends the wait of the build it runs, counted from the earlier of
                // its first request and that of the build whose request was answered: the
                // node was asked for since then (the taker may have first asked later, for
                // another node, than the answered build asked for this one).
                let charged = if self.builds[taker].first_request.is_some() {
                    taker
                } else {
                    b
                };
                let since = [taker, b]
                    .iter()
                    .filter_map(|&x| self.builds[x].first_request)
                    .min();
                self.record_grant(charged, vi, since);
                if self.vms[vi].job.is_none() {
                    self.start_job(vi, JobRef::Spi(taker));
                }
            }
            Ok(other) => {
                let text = format!("request {} answered with {other:?}", req.0);
                self.violation(ViolationKind::BadGrant, text);
                self.retry_later(b, req);
            }
            Err(err) => {
                *self.refusals.entry(kind_name(err.kind)).or_insert(0) += 1;
                self.retry_later(b, req);
            }
        }
    }

    /// The oldest arrived, not yet started build that can run on SPI VM `vi` (for its name
    /// or for any node).
    fn oldest_waiting_for(&self, vi: usize) -> Option<usize> {
        let name = &self.vms[vi].name;
        self.builds.iter().position(|x| {
            x.state.is_waiting() && x.arrival.vm.as_ref().is_none_or(|node| node == name)
        })
    }

    /// Build `b`'s wait for a slot ends with a grant of VM `vi`, asked for since `since`:
    /// its grant latency, once.
    fn record_grant(&mut self, b: usize, vi: usize, since: Option<Millis>) {
        if self.builds[b].granted {
            return;
        }
        let now = self.now;
        self.builds[b].granted = true;
        let first = since.unwrap_or(now);
        self.grant_latencies.push(now.saturating_sub(first));
        if self.log {
            // One line per grant, so a slow grant can be traced to its build.
            let asked = first.saturating_sub(super::engine::EPOCH_MS);
            eprintln!(
                "+{:<10} build spi#{b} for {:?} queued +{} first asked +{} granted {}, grant \
                 latency {}",
                fmt_ms(self.offset()),
                self.builds[b].arrival.vm,
                fmt_ms(self.builds[b].arrival.at_ms),
                fmt_ms(asked),
                self.vms[vi].name,
                fmt_ms(now.saturating_sub(first))
            );
        }
    }

    /// Every waiting request may now depend on a hung operation.
    pub(super) fn mark_requests_hung(&mut self) {
        for p in self.requests.values_mut() {
            if !p.answered && !p.cancelled {
                p.saw_hang = true;
            }
        }
    }

    /// A request's bound passed: the client gives up and retries. A violation, unless an
    /// operation with an injected hang was in flight meanwhile: the scheduler waits for its
    /// operations, which the daemon bounds with the prlctl timeouts; those are counted apart.
    pub(super) fn reply_overdue(&mut self, req: ReqId) {
        let Some(p) = self.requests.get_mut(&req) else {
            return;
        };
        if p.answered || p.cancelled {
            return;
        }
        p.cancelled = true;
        let (b, vi, saw_hang, wait) = (p.build, p.vm, p.saw_hang, p.wait_ms);
        self.unanswered += 1;
        if self.request_for_vm[vi] == Some(req) {
            self.request_for_vm[vi] = None;
        }
        let text = format!(
            "RequestSlot {} (request {}, wait {}) unanswered after wait + {} \
             (graceful stop timeout + ready timeout + reply slack)",
            self.vms[vi].name,
            req.0,
            fmt_ms(wait),
            fmt_ms(self.reply_bound())
        );
        if saw_hang {
            self.unanswered_under_hang += 1;
        } else {
            self.violation(ViolationKind::Unanswered, text);
        }
        let host = self.vms[vi].host;
        self.feed(host, Input::Cancelled { req });
        self.retry_later(b, req);
    }

    /// VM `vi`'s current boot began at or after the arrival at offset `at_ms`: a cold start.
    fn booted_after(&self, vi: usize, at_ms: u64) -> bool {
        let arrived = super::engine::EPOCH_MS.saturating_add(at_ms);
        self.vms[vi]
            .boot_began
            .is_some_and(|began| began >= arrived)
    }

    fn start_job(&mut self, vi: usize, job: JobRef) {
        let id = self.next_job_id;
        self.next_job_id += 1;
        let now = self.now;
        let offset = self.offset();
        self.vms[vi].job = Some(RunningJob {
            id,
            job,
            started: now,
        });
        let duration = match job {
            JobRef::Root(j) => {
                let (at, duration) = {
                    let a = &self.root_jobs[j].arrival;
                    (a.at_ms, a.duration_ms)
                };
                self.stats_root.started += 1;
                self.stats_root.waits.push(offset.saturating_sub(at));
                if self.booted_after(vi, at) {
                    self.stats_root.cold_starts += 1;
                }
                if self.log {
                    // One line per start, so a slow job can be traced back to its VM.
                    eprintln!(
                        "+{:<10} job root#{j} {:?} queued +{} starts on {}, waited {}",
                        fmt_ms(offset),
                        self.root_jobs[j].arrival.labels,
                        fmt_ms(at),
                        self.vms[vi].name,
                        fmt_ms(offset.saturating_sub(at))
                    );
                }
                self.root_jobs[j].state = RootState::Running;
                duration
            }
            JobRef::Spi(b) => {
                let (at, duration) = {
                    let a = &self.builds[b].arrival;
                    (a.at_ms, a.duration_ms)
                };
                self.stats_spi.started += 1;
                self.stats_spi.waits.push(offset.saturating_sub(at));
                if self.booted_after(vi, at) {
                    self.stats_spi.cold_starts += 1;
                }
                self.builds[b].state = BuildState::Running;
                duration
            }
        };
        self.schedule_in(duration, Ev::JobEnd { vm: vi, id });
    }

    pub(super) fn job_end(&mut self, vi: usize, id: u64) {
        let Some(job) = self.vms[vi].job.filter(|j| j.id == id) else {
            return;
        };
        self.vms[vi].job = None;
        match job.job {
            JobRef::Root(j) => {
                self.stats_root.completed += 1;
                self.root_jobs[j].state = RootState::Done;
            }
            JobRef::Spi(b) => {
                self.stats_spi.completed += 1;
                self.builds[b].state = BuildState::Done;
            }
        }
    }

    /// A stop killed a running job.
    pub(super) fn job_killed(&mut self, job: JobRef) {
        match job {
            JobRef::Root(j) => {
                self.stats_root.interrupted += 1;
                self.root_jobs[j].state = RootState::Interrupted;
            }
            JobRef::Spi(b) => {
                self.stats_spi.interrupted += 1;
                self.builds[b].state = BuildState::Interrupted;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use marble_proto::SlotGrant;

    use super::*;
    use crate::engine::{EPOCH_MS, RunOptions};
    use crate::trace::Trace;

    /// A build for any node on three nodes, refused each time: under `first-offline` Jenkins
    /// launches the first offline node by name every round (the same node while it stays
    /// offline); under `in-turn` the simulator asked the next node each time.
    #[test]
    fn a_build_for_any_node_relaunches_the_first_offline_node_by_name_under_jenkins_order() {
        let asked = |launch: &str| -> Vec<String> {
            let text = format!(
                "[sim]\njenkins_launch = \"{launch}\"\n[host]\nroot_vms = 0\nspi_vms = 3\n\
                 [[jenkins]]\nat = \"1m\"\nvm = \"any\"\nduration = \"10m\"\n"
            );
            let trace = Trace::parse(&text, std::path::Path::new("t")).expect("trace");
            let mut e = Engine::new(&trace, RunOptions::default());
            e.builds[0].state = BuildState::Waiting;
            let mut asked = Vec::new();
            for _ in 0..3 {
                assert!(e.dispatch_builds(), "a node is launched");
                let BuildState::Requesting(req) = e.builds[0].state else {
                    panic!("not requesting: {:?}", e.builds[0].state);
                };
                let vm = e.requests[&req].vm;
                asked.push(e.vms[vm].name.clone());
                // Refused: the node is offline again, the build retried.
                e.request_for_vm[vm] = None;
                e.builds[0].state = BuildState::Waiting;
            }
            asked
        };
        let first = "sim-SPI-VM-1".to_owned();
        assert_eq!(
            asked("first-offline"),
            vec![first.clone(), first.clone(), first]
        );
        let in_turn = asked("in-turn");
        assert_ne!(in_turn[0], in_turn[1], "{in_turn:?}");
        assert_ne!(in_turn[1], in_turn[2], "{in_turn:?}");
    }

    /// Driven directly: build A (`any`, arrived first) has asked only for node 2, after
    /// named build B first asked for node 1; node 1's grant goes to A, the oldest waiting.
    #[test]
    fn a_grant_taken_by_an_older_build_counts_from_the_earlier_first_request() {
        let text = "[host]\nroot_vms = 0\nspi_vms = 2\n\
                    [[jenkins]]\nat = \"1m\"\nvm = \"any\"\nduration = \"10m\"\n\
                    [[jenkins]]\nat = \"2m\"\nvm = \"sim-SPI-VM-1\"\nduration = \"10m\"\n";
        let trace = Trace::parse(text, std::path::Path::new("t")).expect("trace");
        let mut e = Engine::new(&trace, RunOptions::default());
        let (node1, node2) = (e.by_name["sim-SPI-VM-1"], e.by_name["sim-SPI-VM-2"]);
        let min = 60_000;
        e.builds[0].state = BuildState::Waiting;
        e.builds[1].state = BuildState::Waiting;
        e.now = EPOCH_MS + 2 * min;
        e.send_request(1, node1);
        let Some(req) = e.request_for_vm[node1] else {
            panic!("B asked for node 1");
        };
        e.now = EPOCH_MS + 5 * min;
        e.send_request(0, node2);
        e.now = EPOCH_MS + 10 * min;
        e.vms[node1].power = marble_proto::PowerState::Running;
        e.vms[node1].ready_at = Some(e.now);
        let grant = SlotGrant {
            vm: "sim-SPI-VM-1".into(),
            already_running: false,
            preempted: None,
            protected_until_ms: 0,
        };
        e.on_reply(req, Ok(Response::SlotGranted(grant)));
        assert!(e.violations.is_empty(), "{:?}", e.violations);
        assert_eq!(
            e.builds[0].state,
            BuildState::Running,
            "A takes the executor"
        );
        // Node 1 was asked for since B's first request at 2m: 8 min, not A's 5.
        assert_eq!(e.grant_latencies, vec![8 * min]);
    }
}
