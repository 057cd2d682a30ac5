//! A free host launching its own Jenkins node for a build that accepts any node (policy
//! `demand`, `launch_any_node_after`; opt-in: it needs the Agent/Connect permission).
//!
//! Jenkins starts an offline node for a buildable item through its retention strategy
//! (`RetentionStrategy.Demand.check`, every minute, nodes in name order): the first offline
//! node that can take the item is launched, and while it connects its idle executor counts
//! as available, so no second node is launched for the same item. MARBLE's start script
//! holds that launch (`request-slot --wait`) while the node's host runs a job, refuses it
//! when the wait ends, and a minute later Jenkins launches the same first node again — so a
//! build for any node waits for one host's job, however long, while other hosts stand free
//! (marble-sim, `standard@1001`: an any-node build waited 37 min, asking node after node,
//! each refusal costing the 5-min wait).
//!
//! Every host reads the same queue and node list. A host that could take such a build at
//! once — nothing unmet for ROOT here, no slot request here, its SPI VM stopped and
//! startable, and nothing on the host but an unused runner (which yields to a slot request)
//! whose platform another free runner of the fleet also covers — asks Jenkins to launch its own node once the build has been buildable
//! `launch_any_node_after` with no idle agent in the fleet; the node's start script then
//! asks for the slot here like any launch, and Jenkins hands the new agent's executor to the
//! oldest build it can take. One host at a time: hosts take turns [`LAUNCH_TURN_MS`] apart
//! in the order of their nodes among the fleet's offline nodes (the first offline node is
//! the one Jenkins is launching itself, so it shares the first turn), and once the launched
//! agent is up (listed idle) or has taken the build, the others see nothing to launch for.
//! A launch is not repeated for [`LAUNCH_AGAIN_MS`] (Jenkins may refuse it: no permission,
//! the node taken offline by a user).

use marble_proto::Team;

use super::world::World;
use super::{Effect, Millis, format_ms, labels_cover};

/// How far apart the hosts' turns to launch their node are: more than a launch takes to
/// show (the start script's request, stopping an unused runner, a boot of up to 90 s, the
/// agent listed idle at the next poll), so the next host sees the first one's agent before
/// its own turn comes.
pub(super) const LAUNCH_TURN_MS: Millis = 2 * 60_000;

/// A host launches its node at most this often: Jenkins' answer is not seen here (a
/// launch it refused, or one whose start script never came, shows only as the build
/// still waiting).
pub(super) const LAUNCH_AGAIN_MS: Millis = 6 * 60_000;

/// How long after a launch the host is held for the start script's request: a warm boot
/// meanwhile would only be stopped again by the grant.
pub(super) const LAUNCH_HOLD_MS: Millis = 60_000;

impl World {
    /// Launch this host's Jenkins node for a build that accepts any node, when it is this
    /// host's turn (module docs). The caller has checked that no unmet ROOT job could run
    /// here.
    pub(super) fn launch_for_any_node(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let after = self.config.launch_any_node_after_ms;
        if after == 0
            || !self.demand.jenkins_idle_agents.is_empty()
            || !self.slots.is_empty()
            || self
                .launched_at
                .is_some_and(|at| now < at + LAUNCH_AGAIN_MS)
        {
            return;
        }
        let Some(oldest) = (self.demand.jenkins_queue.iter())
            .filter(|item| self.config.spi_labels.contains(&item.label))
            .map(|item| item.since_ms)
            .min()
        else {
            return;
        };
        let Some((vm, node, turn)) = self.launchable_node(now) else {
            return;
        };
        let due = oldest + after + turn * LAUNCH_TURN_MS;
        if now < due {
            return;
        }
        self.launched_at = Some(now);
        let text = format!(
            "launching Jenkins node {node}: a build for any node has waited since {} with no \
             idle agent in the fleet, and this host could take it at once (turn {} among the \
             offline nodes)",
            format_ms(oldest),
            turn + 1
        );
        self.decide(now, Some(&vm), text, fx);
        fx.push(Effect::LaunchJenkinsNode { node, vm });
    }

    /// This host's SPI VM Jenkins could launch now for a build that accepts any node, its
    /// node name, and its turn among the fleet's offline nodes: stopped, startable, listed
    /// offline, and nothing on the host but unused runners.
    fn launchable_node(&self, now: Millis) -> Option<(String, String, u64)> {
        let occupants_yield = self.vms.values().all(|vm| {
            !vm.occupies()
                || vm.unused_ready_root()
                    && !vm.fresh_not_idle(now, u64::MAX)
                    && self.another_free_runner_covers(&vm.name, &vm.labels)
        });
        if !occupants_yield || self.paused.is_some() || self.draining.is_some() {
            return None;
        }
        let offline = &self.demand.jenkins_offline_nodes;
        (self.vms.values())
            .filter(|vm| vm.team == Team::Spi && !vm.occupies() && vm.op.is_none())
            .filter(|vm| self.start_blocker(now, &vm.name).is_none())
            .find_map(|vm| {
                let node = self.jenkins_node_of(&vm.name);
                let rank = offline.iter().position(|n| n == node)?;
                // The first offline node is the one Jenkins launches itself: it shares the
                // first turn with the second.
                let turn = rank.saturating_sub(1) as u64;
                Some((vm.name.clone(), node.to_owned(), turn))
            })
    }

    /// Whether another free runner of the fleet (GitHub's runner list) covers the labels of
    /// this host's runner in `vm`: stopping it for an SPI agent then leaves its platform warm.
    /// A host whose runner is the fleet's only one of its platform keeps it (turning idle-host
    /// warmth into agents made the next push of that platform boot cold: marble-sim,
    /// standard shape, ROOT p95 up by tens of seconds on most weeks).
    fn another_free_runner_covers(&self, vm: &str, labels: &[String]) -> bool {
        let own = self.demand.runner_of(vm);
        (self.demand.free_runners.iter()).any(|r| r.name != own && labels_cover(&r.labels, labels))
    }

    /// Whether this host launched its node a moment ago and waits for its start script.
    pub(super) fn launch_pending(&self, now: Millis) -> bool {
        self.launched_at
            .is_some_and(|at| now < at.saturating_add(LAUNCH_HOLD_MS))
            && self.slots.is_empty()
    }
}
