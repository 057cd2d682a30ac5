//! Policy `demand`: boot a ROOT VM only for a queued GitHub job that no free runner in the
//! fleet will take, or to fill a warm-runner target ([`super::warm`]); stop it once its
//! ephemeral runner has done its one job.
//!
//! Input: the last [`DemandSnapshot`] (queued ROOT jobs with their `runs-on` labels, running
//! jobs as the prediction's history, and the fleet's registered runners that have no job
//! yet). A job is *unmet* when, matching jobs oldest first against free runners (a runner
//! takes the first job its labels cover), no runner is left for it — so a job another host is
//! already booting a runner for (registered before its VM boots) does not make this host boot
//! too. A job nobody this host can see will ever serve (labels no VM here nor any listed
//! runner offers: [`super::unservable`]) is not unmet: it is reported instead, and counted it
//! kept every "nothing unmet" gate below (warm boots, warmth hand-overs, the congestion mark)
//! shut on every host for as long as it stayed queued.
//!
//! Rules, in order:
//! - Running VMs: a ROOT VM whose runner has done its job — a probe saw it busy, or the feed
//!   shows its runner took a job (`used_here`) — is stopped once idle, never kept for a
//!   matching job (GitHub gives a single-use runner no second one); one without a job
//!   stays while a job it could take is queued or a warm target wants it (then gives way
//!   to an unmet job it cannot take after `warm_yield`, one host per job in a rank order:
//!   [`super::stagger`]), else until `warm_linger` after
//!   readiness — a runner whose job another runner took is a spare like a warm one.
//!   Another team's idle, unprotected VM gives the host up when an unmet ROOT job could run
//!   here, or once its probes have seen no build for `agent_idle_handover` (hours: a Jenkins
//!   agent left up after the nightly no longer holds its host until the morning push), or
//!   for `agent_warm_handover` when an idle-warm platform it could keep is missing in the
//!   fleet and nothing is unmet (the freed host then boots that warm runner at once), or for
//!   `agent_predicted_handover` when a predicted platform is missing likewise and no Jenkins
//!   build is queued, or — a spare, second by name among the fleet's idle agents in Jenkins'
//!   node list — for `agent_spare_handover` when any warm platform is missing likewise.
//!   Several agents old enough for the warmth or predicted hand-over take turns for one
//!   missing platform ([`super::agents`]).
//! - When a Jenkins slot request and an unmet ROOT job both wait, fair share
//!   ([`super::share`]) picks the turn; a slot request already taking the host goes on.
//! - A free host boots, for the oldest unmet job, a ROOT VM whose labels cover the job's
//!   (round robin among the eligible ones, skipping locked and quarantined VMs, and VMs whose
//!   last boot failed while another eligible one has not failed) — but only on
//!   a snapshot taken after the host became free, so hosts freed by the same stale
//!   picture do not all boot for one job; it asks for such a snapshot at once
//!   (`Effect::RefreshDemand`).
//! - Nothing unmet: boot a warm runner for a target the fleet is short of (not within 30 min
//!   of the fleet being seen full); else nothing boots. Every choice is recorded as a
//!   decision with its reason.

use marble_proto::{BusyState, PowerState, Team};

use super::agents::{AGENT_TURN_MS, AgentHandover};
use super::stagger::other_arch;
use super::vm::{Starter, StopWhy, VmState};
use super::warm::{IDLE_WARM_AFTER_MS, WarmNeed, wanted_warm};
use super::world::{SlotPhase, World};
use super::{Effect, FleetRunner, Millis, Policy, QueuedJob, format_ms, labels_cover};

/// No warm boots this long after the fleet was last seen full (a job waited `warm_yield`
/// with no idle runner left in the fleet to yield to it).
const WARM_AFTER_CONGESTION_MS: Millis = 30 * 60_000;

impl World {
    /// Whether new queued runs should reach this host at once (`[demand] watch`): policy
    /// `demand`, scheduling normally, and nothing occupies the host or waits for it — a boot
    /// here stops nothing, so a fast reaction costs nothing. A host that would first have to
    /// stop an idle VM waits for its regular poll: several hosts giving up their VMs for one
    /// new job at once costs more than a poll's delay (marble-sim: a fleet-wide 5 s watch
    /// made SPI grants 2.5x slower).
    pub fn watches_demand(&self) -> bool {
        self.config.policy == Policy::Demand
            && self.paused.is_none()
            && self.draining.is_none()
            && self.inventory_seen
            && self.slots.is_empty()
            && self.occupying_names().is_empty()
    }

    /// Queued jobs no free runner will take, oldest first.
    pub(super) fn unmet_jobs(&self) -> Vec<QueuedJob> {
        self.match_queued().0
    }

    pub(super) fn drive_demand(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        if self.config.policy != Policy::Demand
            || self.paused.is_some()
            || self.draining.is_some()
            || !self.inventory_seen
        {
            return;
        }
        let (unmet, free_left) = self.match_queued();
        // From here on, only the jobs a ROOT VM here could run. One only another host can
        // serve (an Intel job while the Intel host's runner has another) waits for that host:
        // nothing here can be done for it, and counting it held this host's idle warmth, its
        // agents' warmth hand-overs and its swaps off and marked the fleet full from here
        // for as long as it waited (`tests/warm.rs`).
        let (unmet, elsewhere): (Vec<QueuedJob>, Vec<QueuedJob>) =
            unmet.into_iter().partition(|job| self.servable_here(job));
        let yield_to = self.job_to_yield_to(now, &unmet, &free_left);
        let needs = self.warm_needs(&free_left);
        let swap = self.runner_to_swap(now, &unmet, &free_left, &needs);
        self.release_running(now, &unmet, yield_to.as_ref(), swap.as_ref(), &needs, fx);
        if unmet.is_empty() {
            self.launch_for_any_node(now, fx);
        }
        if !self.demand_may_boot(now, fx) {
            return;
        }
        if unmet.is_empty() {
            self.boot_warm_or_rest(now, &needs, elsewhere.len(), fx);
        } else {
            self.boot_for_unmet(now, &unmet, fx);
        }
    }

    /// Whether a queued job no free runner covers could run on a ROOT VM of this host.
    pub(super) fn unmet_here(&self) -> bool {
        self.config.policy == Policy::Demand
            && self.unmet_jobs().iter().any(|job| self.servable_here(job))
    }

    /// Whether a ROOT VM here could run `job` (by labels, whatever its state).
    pub(super) fn servable_here(&self, job: &QueuedJob) -> bool {
        self.vms
            .values()
            .any(|vm| vm.team == Team::Root && labels_cover(&vm.labels, &job.labels))
    }

    /// The oldest unmet job a VM here could serve that has waited `warm_yield` (plus this
    /// host's turn among the hosts that could yield: [`super::stagger`]): it has not been
    /// taken by a free host elsewhere, so a warm runner here gives way to it. Also notes the
    /// fleet as congested when an unmet job has waited `warm_yield` and no idle runner left
    /// in the fleet (`free_left`) could yield to it: a job waiting for a warm runner to
    /// yield waits behind idle runners, not a full fleet, and marking it held warm boots for
    /// 30 min on hosts freed meanwhile (marble-sim, `labels@2002` +10h 42m;
    /// `tests/policy_yield.rs`). An idle runner of another architecture than the job's does
    /// not count: its host cannot run the job (an Intel host's runner for an ARM64 job), and
    /// counting it kept a fleet that was full for the job from ever being seen full.
    fn job_to_yield_to(
        &mut self,
        now: Millis,
        unmet: &[QueuedJob],
        free_left: &[FleetRunner],
    ) -> Option<QueuedJob> {
        let spare = self
            .vms
            .values()
            .find(|vm| {
                vm.team == Team::Root
                    && vm.power == PowerState::Running
                    && !vm.was_busy
                    && vm.stop.is_none()
            })
            .map(|vm| (vm.name.clone(), vm.labels.clone()));
        let mine = spare.as_ref().map(|(n, l)| (n.as_str(), l.as_slice()));
        let yield_to = unmet
            .iter()
            .find(|job| self.yield_turn_come(now, job, mine, free_left))
            .cloned();
        let could_yield = |job: &QueuedJob| free_left.iter().any(|r| !other_arch(&r.labels, job));
        if unmet.iter().any(|job| {
            now.saturating_sub(job.since_ms) >= self.config.warm_yield_ms && !could_yield(job)
        }) {
            self.congested_at = Some(now);
        }
        yield_to
    }

    /// Running VMs: keep each or plan its stop (once idle), recording why.
    fn release_running(
        &mut self,
        now: Millis,
        unmet: &[QueuedJob],
        yield_to: Option<&QueuedJob>,
        swap: Option<&(String, String)>,
        needs: &[WarmNeed],
        fx: &mut Vec<Effect>,
    ) {
        // `unmet` holds only jobs a VM here could run (`drive_demand`): while one waits, an
        // agent gives way to it; otherwise a host it frees could boot a warm runner (a job
        // nobody can serve is not unmet, nor one only another host can serve).
        let root_waits_here = !unmet.is_empty();
        let running = self.settled_running(now);
        // Agents that waited for another's turn and no longer do (they go, their reason
        // went, or a ROOT job takes the host): a later wait starts afresh. One busy with an
        // operation (a probe) is not looked at on this pass and keeps its wait.
        let mut turn_over: Vec<String> = Vec::new();
        for name in running {
            if self.try_rearm(now, &name, unmet, fx) || self.rearm_pending(&name, unmet) {
                continue;
            }
            let Some(vm) = self.vms.get(&name) else {
                continue;
            };
            let reason = if vm.team == Team::Root {
                self.root_release_reason(now, vm, yield_to, needs)
                    .or_else(|| {
                        swap.filter(|(swapped, _)| *swapped == name)
                            .map(|(_, why)| why.clone())
                    })
            } else if root_waits_here {
                turn_over.push(name.clone());
                Some("an unmet ROOT job could run on this host".to_owned())
            } else {
                match self.idle_agent_gives_way(now, vm, needs) {
                    AgentHandover::Keep => {
                        turn_over.push(name.clone());
                        None
                    }
                    AgentHandover::AfterTurn { ahead } => {
                        self.agent_turn_waits.entry(name.clone()).or_insert(now);
                        let text = format!(
                            "demand: keeping the agent for now: {ahead}, idle as long in \
                             Jenkins' node list, gives its host up first (at most {} here)",
                            humantime::format_duration(std::time::Duration::from_millis(
                                AGENT_TURN_MS
                            ))
                        );
                        self.decide(now, Some(&name), text, fx);
                        None
                    }
                    AgentHandover::Go { why, for_warmth } => {
                        turn_over.push(name.clone());
                        self.freed_for_warmth = for_warmth;
                        Some(why)
                    }
                }
            };
            if let Some(reason) = reason {
                self.decide(
                    now,
                    Some(&name),
                    format!("demand: stopping once idle: {reason}"),
                    fx,
                );
                self.plan_stop(now, &name, StopWhy::Demand, fx);
            }
        }
        let vms = &self.vms;
        self.agent_turn_waits.retain(|name, _| {
            !turn_over.contains(name)
                && vms
                    .get(name)
                    .is_some_and(|vm| vm.power == PowerState::Running && vm.stop.is_none())
        });
    }

    /// Another team's VM (a Jenkins agent) whose probes have seen no build for
    /// `agent_idle_handover` gives its host up to ROOT even with no ROOT job waiting: after
    /// the nightly wave the agents stayed up idle until the morning's first push, whose jobs
    /// then waited for an agent's stop as well as a boot (marble-sim, standard trace: 2/3 of
    /// the cold starts). A free host watches for new runs and may keep a warm runner.
    /// Only while a ROOT VM here could start; the grace of a fresh grant is over already
    /// (`settled_running`), and a busy agent is never stopped (probe first).
    ///
    /// Idle for `agent_warm_handover` (shorter), it gives way only *for warmth*: an
    /// idle-warm platform a ROOT VM here could keep has no idle runner in the fleet
    /// ([`Self::warmth_wanted_here`]). The nightly's agents are idle 6–8 h by the morning
    /// push; at 8 h alone six of eight hosts still held them, so the push found one or two
    /// warm runners and booted the rest after an agent's stop (marble-sim, standard trace,
    /// +3d 9h 6m). Only when a warm boot could follow (a job a VM here could run that is
    /// unmet takes the host instead, and the congestion window holds warm boots off:
    /// [`Self::warmth_wanted_here`]), and the host it frees boots its warm
    /// runner without the idle-warmth delay (`World::freed_for_warmth`), so the next
    /// snapshot lists that runner and no other agent goes for the same platform.
    /// Idle for `agent_predicted_handover` (1 h) it gives way, under the same conditions and
    /// only while no Jenkins build is queued, for a *predicted* target the fleet is short of:
    /// on the standard trace a working hour's first push took the predicted runners, the
    /// hosts were busy, and the next push of that hour booted cold on an agent's host idle
    /// 1–4 h (marble-sim, +1d 18h 54m; `tests/policy_standard_gap.rs`).
    /// Idle for `agent_spare_handover` (15 min) it gives way likewise, for any missing warm
    /// runner, when it is the fleet's first spare ([`Self::first_spare_agent`]): the SPI
    /// builds of the standard shape accept any node, one idle agent serves the next at once,
    /// and the others held their hosts for an hour while a push's second run booted cold.
    /// `agent_idle_handover = "0s"` turns every hand-over off: an operator who switched
    /// the age off keeps every idle agent.
    ///
    /// Several agents idle for `agent_warm_handover` or `agent_predicted_handover` take
    /// turns for one missing platform ([`Self::agent_ahead`]): one that another agent's turn
    /// comes before waits for it, at most [`AGENT_TURN_MS`].
    fn idle_agent_gives_way(&self, now: Millis, vm: &VmState, needs: &[WarmNeed]) -> AgentHandover {
        self.agent_handover(now, vm, needs)
            .unwrap_or(AgentHandover::Keep)
    }

    fn agent_handover(
        &self,
        now: Millis,
        vm: &VmState,
        needs: &[WarmNeed],
    ) -> Option<AgentHandover> {
        let age = self.config.agent_idle_handover_ms;
        let warm_age = self.config.agent_warm_handover_ms;
        let since = vm.idle_since()?;
        let idle_for = now.saturating_sub(since);
        let old = age > 0 && idle_for >= age;
        let old_for_warmth = age > 0 && warm_age > 0 && idle_for >= warm_age;
        let pred_age = self.config.agent_predicted_handover_ms;
        let old_for_predicted = age > 0 && pred_age > 0 && idle_for >= pred_age;
        let spare_age = self.config.agent_spare_handover_ms;
        let old_for_spare =
            age > 0 && spare_age > 0 && idle_for >= spare_age && self.first_spare_agent(&vm.name);
        if !(old || old_for_warmth || old_for_predicted || old_for_spare)
            || matches!(vm.busy, BusyState::Busy { .. } | BusyState::Unknown { .. })
        {
            return None;
        }
        let root_can_start = self.vms.values().any(|other| {
            other.team == Team::Root && self.start_blocker(now, &other.name).is_none()
        });
        if !root_can_start {
            return None;
        }
        let age_text = |d: Millis| humantime::format_duration(std::time::Duration::from_millis(d));
        if old {
            let why = format!(
                "idle since {} (no build seen for agent_idle_handover {}): the host goes to ROOT",
                format_ms(since),
                age_text(age)
            );
            return Some(AgentHandover::Go {
                why,
                for_warmth: false,
            });
        }
        // An idle-warm platform first (the morning case), else a predicted one: a push of
        // the last `warm_window` took its runner and the next push of the hour would wait
        // for this agent's stop and a boot. Only while Jenkins is known to want nothing: a
        // queued build may be for this node (one for any node is not tied to one host), and
        // an unread queue (no `[jenkins]` feed, no answer yet, or none for a few polls) may
        // hold one.
        let jenkins_wants_nothing = now < self.demand.jenkins_idle_until_ms;
        let (need, key, key_age, spare) = match self.warmth_wanted_here(now, needs, false) {
            Some(need) if old_for_warmth => (need, "agent_warm_handover", warm_age, ""),
            _ if old_for_predicted && jenkins_wants_nothing => (
                self.warmth_wanted_here(now, needs, true)?,
                "agent_predicted_handover",
                pred_age,
                "",
            ),
            // A spare: another idle agent stays up for Jenkins' next build.
            _ if old_for_spare && jenkins_wants_nothing => (
                self.warmth_wanted_here(now, needs, true)
                    .or_else(|| self.warmth_wanted_here(now, needs, false))?,
                "agent_spare_handover",
                spare_age,
                "; a spare: another agent is idle in Jenkins' node list",
            ),
            _ => return None,
        };
        let why = format!(
            "idle since {} (no build seen for {key} {}{spare}) and no idle runner in the fleet \
             for runs-on {}: the host goes to ROOT for warmth",
            format_ms(since),
            age_text(key_age),
            need.labels.join(",")
        );
        // The spare rule ranks by itself (one spare at a time); the older hand-overs fire for
        // every agent old enough, so they take turns.
        if spare.is_empty()
            && self.agent_waits_its_turn(now, &vm.name)
            && let Some(ahead) = self.agent_ahead(now, &vm.name, key_age)
        {
            return Some(AgentHandover::AfterTurn {
                ahead: ahead.to_owned(),
            });
        }
        Some(AgentHandover::Go {
            why,
            for_warmth: true,
        })
    }

    /// The first idle-host warmth target (`predicted`: a configured or predicted one) the
    /// fleet is short of that a ROOT VM here could
    /// fill, while another is filled (an idle runner is up somewhere), and when a warm boot
    /// could happen at all (not within
    /// [`WARM_AFTER_CONGESTION_MS`] of the fleet being seen full: a host freed then would
    /// stay empty, and the agent was better left up for its next build).
    fn warmth_wanted_here<'a>(
        &self,
        now: Millis,
        needs: &'a [WarmNeed],
        predicted: bool,
    ) -> Option<&'a WarmNeed> {
        if !self.warm_boot_allowed(now) {
            return None;
        }
        // Only while some host keeps an idle runner: the fleet has room beyond Jenkins'
        // agents and ROOT's running jobs. With none, every host holds an agent or a ROOT
        // job, and freeing agents there gave their nodes' next builds up to the ROOT
        // backlog that followed (marble-sim, overload: all four hosts' agents went in the
        // first night, SPI grant p95 1h58m → 2h13m against the cycler's 2h05m).
        if !needs.iter().any(|n| n.have > 0) {
            return None;
        }
        needs.iter().find(|n| {
            n.idle != predicted
                && n.missing() > 0
                && self.demand_candidate(now, &n.labels).is_some()
        })
    }

    /// Why a running ROOT VM should give its host up, if it should.
    fn root_release_reason(
        &self,
        now: Millis,
        vm: &VmState,
        yield_to: Option<&QueuedJob>,
        needs: &[WarmNeed],
    ) -> Option<String> {
        let job_for_it = self
            .demand
            .root_jobs
            .iter()
            .any(|j| labels_cover(&vm.labels, &j.labels));
        let warm_over = vm.on_until.is_some_and(|t| now >= t);
        let busy = matches!(vm.busy, BusyState::Busy { .. });
        // With re-arm jobs left this boot, a busy runner's VM waits for its job's end
        // instead: `try_rearm` decides then (a planned stop would skip the re-arm).
        let rearm_left = self.config.jobs_per_boot > vm.rearms.saturating_add(1);
        if vm.was_busy && !(busy && rearm_left) {
            // Planned at once, busy or not: the stop's probe then paces the hand-over
            // (`stop_recheck_ms`: every 10 s while a job waits for this host). Left to the
            // background probe, a runner seen busy by a probe before the feed reported it
            // was re-checked only every `busy_recheck` and freed its host up to a poll or a
            // minute after its job ended (marble-sim, bursts-short +17h 19m: 23 s).
            Some(if busy {
                "its runner has taken its job (single-use)".to_owned()
            } else {
                "its runner has done its job (single-use)".to_owned()
            })
        } else if vm.was_busy || job_for_it {
            None
        } else if let Some(job) = yield_to {
            Some(format!(
                "job #{} (runs-on {}) it cannot take has waited since {} for a host",
                job.id,
                job.labels.join(","),
                format_ms(job.since_ms)
            ))
        } else if wanted_warm(&vm.labels, needs) {
            None
        } else if warm_over || vm.on_until.is_none() {
            Some("no queued job it could take, and no warm runner wanted".to_owned())
        } else {
            None
        }
    }

    /// Whether the host is free and it is ROOT's turn to take it, on a fresh enough
    /// snapshot (asking for one when not).
    fn demand_may_boot(&mut self, now: Millis, fx: &mut Vec<Effect>) -> bool {
        let occupying = self.occupying_names();
        if !occupying.is_empty() {
            self.host_free_since = None;
            if occupying
                .iter()
                .any(|name| self.vms.get(name).is_some_and(|vm| vm.team == Team::Root))
            {
                // The warm runner a warmth hand-over freed the host for is up.
                self.freed_for_warmth = false;
            }
            return false;
        }
        let free_since = *self.host_free_since.get_or_insert(now);
        // A slot request taking the host goes on; queued ones wait only when it is ROOT's
        // turn (fair share).
        let turn = self.share_turn(now);
        if self.slots.iter().any(|s| s.phase != SlotPhase::Queued)
            || !self.slots.is_empty() && turn.as_ref().is_none_or(|t| t.team != Team::Root)
        {
            return false;
        }
        // Only on a snapshot taken after the host became free: several hosts freed by the
        // same stale picture would otherwise all boot for the same job (marble-sim,
        // standard trace, +8h 43m).
        if self.demand_at < free_since {
            if self.demand_asked_for != Some(free_since) {
                // Rather than wait up to a poll interval for the next one.
                self.demand_asked_for = Some(free_since);
                fx.push(Effect::RefreshDemand);
            }
            self.decide(
                now,
                None,
                "demand: host free; waiting for a fresh demand snapshot before booting".into(),
                fx,
            );
            return false;
        }
        match turn {
            Some(turn) if turn.team == Team::Spi => {
                self.decide(
                    now,
                    None,
                    format!("demand: holding the host: {}", turn.why),
                    fx,
                );
                false
            }
            Some(turn) => {
                self.decide(now, None, format!("demand: {}", turn.why), fx);
                true
            }
            None => !self.host_kept_for_jenkins(now, "demand", fx),
        }
    }

    /// Nothing unmet here: boot a warm runner if one is wanted, else record why nothing
    /// boots. `elsewhere`: unmet jobs only another host's VMs can run.
    fn boot_warm_or_rest(
        &mut self,
        now: Millis,
        needs: &[WarmNeed],
        elsewhere: usize,
        fx: &mut Vec<Effect>,
    ) {
        if self.launch_pending(now) {
            let text = "demand: holding the host for the Jenkins node it launched".to_owned();
            self.decide(now, None, text, fx);
            return;
        }
        if self.boot_warm(now, needs, fx) {
            return;
        }
        let queued = self.demand.root_jobs.len();
        let unservable = (self.demand.root_jobs.iter())
            .filter(|job| self.unservable(job))
            .count();
        let covered = queued.saturating_sub(unservable + elsewhere);
        let text = match (covered, unservable, elsewhere) {
            (0, 0, 0) => "demand: no queued job; nothing boots".to_owned(),
            (covered, 0, 0) => {
                format!("demand: {covered} queued job(s), all covered by free runners in the fleet")
            }
            (covered, unservable, elsewhere) => {
                let mut text =
                    format!("demand: {covered} queued job(s) covered by free runners in the fleet");
                if elsewhere > 0 {
                    text.push_str(&format!(
                        ", {elsewhere} waiting for another host (no VM here can run them)"
                    ));
                }
                if unservable > 0 {
                    text.push_str(&format!(
                        ", {unservable} nobody can serve (see the WARNING line)"
                    ));
                }
                text
            }
        };
        self.decide(now, None, text, fx);
    }

    /// Whether a warm boot may happen now: not within [`WARM_AFTER_CONGESTION_MS`] of the
    /// fleet being seen full.
    pub(super) fn warm_boot_allowed(&self, now: Millis) -> bool {
        self.congested_at
            .is_none_or(|at| now.saturating_sub(at) >= WARM_AFTER_CONGESTION_MS)
    }

    /// Boot, for the oldest unmet job an eligible VM here covers, that VM.
    fn boot_for_unmet(&mut self, now: Millis, unmet: &[QueuedJob], fx: &mut Vec<Effect>) {
        for job in unmet {
            if let Some(vm) = self.demand_candidate(now, &job.labels) {
                match self.start_vm(now, &vm, Starter::Demand { job: job.id }, fx) {
                    Ok(()) => {
                        self.note_turn(now, Team::Root);
                        self.last_cycled = Some(vm.clone());
                        self.decide(
                            now,
                            Some(&vm),
                            format!(
                                "demand: booting for job #{} queued since {} (runs-on {})",
                                job.id,
                                format_ms(job.since_ms),
                                job.labels.join(",")
                            ),
                            fx,
                        );
                    }
                    Err(why) => {
                        self.decide(now, Some(&vm), format!("demand: not booting: {why}"), fx)
                    }
                }
                return;
            }
        }
        let labels: Vec<String> = unmet.iter().map(|j| j.labels.join(",")).collect();
        self.decide(
            now,
            None,
            format!(
                "demand: {} unmet job(s) but no eligible VM here covers runs-on [{}]",
                unmet.len(),
                labels.join("] [")
            ),
            fx,
        );
    }

    /// Boot a warm runner for the first target the fleet is short of that a VM here covers.
    fn boot_warm(&mut self, now: Millis, needs: &[WarmNeed], fx: &mut Vec<Effect>) -> bool {
        if !self.warm_boot_allowed(now) {
            // marble-sim, 4-host standard trace: warm runners booted between peaks were
            // mostly given up unused to the next job that found the fleet full.
            return false;
        }
        // A warm boot only on the snapshot that just arrived: one the host already acted on
        // predates the runners other hosts minted since, and hosts whose congestion window
        // ended together all booted the likeliest platform on their next tick (marble-sim,
        // bursts of short jobs: three mac13 and no mac-beta runner; the next run's mac-beta
        // job waited for a warm runner to yield).
        if self.demand_arrived_at != now {
            return false;
        }
        // Idle-host warmth only on a snapshot taken once the host had been free that long:
        // hosts freed together would otherwise all boot the same platform on pictures that
        // predate each other's runners (marble-sim, quiet trickle: six mac13 runners).
        // A host an idle agent gave up for warmth boots at once: it was freed for this, and
        // until its runner is listed every other idle agent sees the platform missing too.
        let idle_ok = self.freed_for_warmth
            || self
                .host_free_since
                .is_some_and(|since| self.demand_at >= since.saturating_add(IDLE_WARM_AFTER_MS));
        for need in needs
            .iter()
            .filter(|n| n.missing() > 0 && (!n.idle || idle_ok))
        {
            let Some(vm) = self.demand_candidate(now, &need.labels) else {
                continue;
            };
            let why = format!(
                "{}; {} of {} idle in the fleet",
                need.why, need.have, need.count
            );
            match self.start_vm(now, &vm, Starter::Warm { why: why.clone() }, fx) {
                Ok(()) => {
                    self.last_cycled = Some(vm.clone());
                    self.decide(
                        now,
                        Some(&vm),
                        format!("demand: booting a warm runner ({why})"),
                        fx,
                    );
                }
                Err(err) => self.decide(now, Some(&vm), format!("demand: not booting: {err}"), fx),
            }
            return true;
        }
        false
    }

    /// The next eligible ROOT VM (round robin after the last one booted) covering `labels`,
    /// among those whose last boot did not fail if there are any: a VM that failed readiness
    /// (not yet quarantined) would likely cost the job another `ready_timeout` while an
    /// equally able VM stands stopped.
    pub(super) fn demand_candidate(&self, now: Millis, labels: &[String]) -> Option<String> {
        let failing = |name: &str| self.quarantine.get(name).is_some_and(|q| q.failures > 0);
        let mut eligible: Vec<&String> = self
            .vms
            .values()
            .filter(|vm| {
                vm.team == Team::Root
                    && labels_cover(&vm.labels, labels)
                    && vm.op.is_none()
                    && matches!(vm.power, PowerState::Stopped | PowerState::Suspended)
                    && self.start_blocker(now, &vm.name).is_none()
            })
            .map(|vm| &vm.name)
            .collect();
        if eligible.iter().any(|name| !failing(name)) {
            eligible.retain(|name| !failing(name));
        }
        let after = self.last_cycled.as_ref();
        eligible
            .iter()
            .find(|name| after.is_some_and(|last| **name > last))
            .or_else(|| eligible.first())
            .map(|name| (*name).clone())
    }

    /// Registration watchdog (any policy, needs a demand snapshot): a ready ROOT VM whose
    /// runner has taken no job while a job it could take stayed queued for
    /// `runner_watchdog_ms` — counted from the later of the job's queueing and the VM's
    /// readiness, so jobs queued after readiness count too — is recycled (probe first, as
    /// every stop). A runner that GitHub never hands the waiting job (wrong registration,
    /// stuck listener, a spent runner nobody saw take its job) would otherwise hold the
    /// host forever.
    pub(super) fn runner_watchdog(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let limit = self.config.runner_watchdog_ms;
        if limit == 0 || self.draining.is_some() {
            return;
        }
        let stale: Vec<(String, QueuedJob)> = self
            .vms
            .values()
            .filter(|vm| {
                vm.unused_ready_root()
                    && vm.ready_at.is_some_and(|t| now.saturating_sub(t) >= limit)
                    && self.leases.get(&vm.name).is_none_or(|l| l.until_ms <= now)
            })
            .filter_map(|vm| {
                let ready_at = vm.ready_at?;
                self.demand
                    .root_jobs
                    .iter()
                    .filter(|j| {
                        now.saturating_sub(j.since_ms.max(ready_at)) >= limit
                            && labels_cover(&vm.labels, &j.labels)
                    })
                    .min_by_key(|j| j.since_ms)
                    .map(|j| (vm.name.clone(), j.clone()))
            })
            .collect();
        for (name, job) in stale {
            self.decide(
                now,
                Some(&name),
                format!(
                    "watchdog: its runner took no job in {} s while job #{} (runs-on {}) waited \
                     since {}; recycling",
                    limit / 1000,
                    job.id,
                    job.labels.join(","),
                    format_ms(job.since_ms)
                ),
                fx,
            );
            self.plan_stop(now, &name, StopWhy::Watchdog, fx);
        }
    }
}
