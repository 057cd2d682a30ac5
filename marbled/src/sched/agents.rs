//! The fleet's idle Jenkins agents as every host sees them in Jenkins' node list
//! ([`DemandSnapshot::jenkins_idle_agents`]): since when each has been listed idle, and which
//! of several agents goes first when more than one could give its host up for the same
//! missing warm runner.
//!
//! Every host reads the same list, so a rank computed from it comes out alike on every host
//! without any host talking to another: the spare rule's (the second idle agent by name
//! gives way, the first stays for Jenkins' next build) and the older hand-overs' turn (of the
//! agents listed idle long enough, the *last* by name goes first, so the first by name is the
//! one kept longest, as in the spare rule).
//!
//! [`DemandSnapshot::jenkins_idle_agents`]: super::DemandSnapshot::jenkins_idle_agents

use super::Millis;
use super::world::World;

/// How long an agent that could give its host up waits for its turn behind another agent
/// listed idle long enough, before it goes anyway. The one ahead stops its VM (a probe and a
/// graceful stop, seconds to a minute) and its host lists the warm runner it boots from the
/// start of the boot, so the next demand snapshot shows the platform filled; one that cannot
/// go (its host paused, draining, or its probe failing) must not hold the others back for
/// ever.
pub(super) const AGENT_TURN_MS: Millis = 3 * 60 * 1000;

/// How long an agent that has left the idle list still counts as going first: one whose
/// host stops it leaves the list (Jenkins shows it offline) as its stop begins, but the warm
/// runner its host boots is listed only once the stop is over and the boot begins; a snapshot
/// taken in between showed neither, and the next agent went for the same platform
/// (marble-sim, standard trace, +3d 8h 24m). One that left for a build holds the next agent
/// back this long at most.
pub(super) const AGENT_LEFT_MS: Millis = 2 * 60 * 1000;

/// When an agent was first listed idle without a break, and when it left the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IdleSeen {
    /// The first snapshot that listed it idle (since its last absence).
    pub(super) since: Millis,
    /// The first snapshot that no longer listed it.
    pub(super) left_at: Option<Millis>,
}

/// What an idle agent's host does for ROOT ([`World::idle_agent_gives_way`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AgentHandover {
    /// Keeps its agent.
    Keep,
    /// Would give its host up, but `ahead` (another idle agent's node) goes first.
    AfterTurn { ahead: String },
    /// Gives its host up: `why`, and whether for a warm runner (`World::freed_for_warmth`).
    Go { why: String, for_warmth: bool },
}

impl World {
    /// The Jenkins node name of this host's `vm` (`[jenkins] nodes`, else the VM's name).
    pub(super) fn jenkins_node_of<'a>(&'a self, vm: &'a str) -> &'a str {
        self.config.jenkins_nodes.get(vm).map_or(vm, String::as_str)
    }

    /// Notes which agents the snapshot taken at `taken_at` lists idle: one listed before
    /// keeps its first time, a new one (or one listed again) starts at `taken_at`. One no
    /// longer listed (it ran a build, went offline, or the list is unknown) is remembered
    /// as left for [`AGENT_LEFT_MS`].
    pub(super) fn note_idle_agents(&mut self, taken_at: Millis) {
        let listed = &self.demand.jenkins_idle_agents;
        for (node, seen) in &mut self.agents_idle_seen {
            if !listed.contains(node) && seen.left_at.is_none() {
                seen.left_at = Some(taken_at);
            }
        }
        self.agents_idle_seen.retain(|_, seen| {
            seen.left_at
                .is_none_or(|left| taken_at.saturating_sub(left) < AGENT_LEFT_MS)
        });
        for node in listed {
            let fresh = IdleSeen {
                since: taken_at,
                left_at: None,
            };
            let seen = self.agents_idle_seen.entry(node.clone()).or_insert(fresh);
            if seen.left_at.is_some() {
                *seen = fresh;
            }
        }
    }

    /// Whether `vm`'s Jenkins agent is the fleet's first spare: in Jenkins' list of idle
    /// agents sorted by node name, it comes second — the first stays up for the next build.
    /// One spare at a time: the next is second only once this one has left the list, on a
    /// later snapshot that also lists the runner its host booted, so two agents never go for
    /// one missing platform.
    pub(super) fn first_spare_agent(&self, vm: &str) -> bool {
        let node = self.jenkins_node_of(vm);
        let mut idle: Vec<&str> = (self.demand.jenkins_idle_agents.iter())
            .map(String::as_str)
            .collect();
        idle.sort_unstable();
        idle.dedup();
        idle.get(1) == Some(&node)
    }

    /// The agent whose turn to give its host up comes before `vm`'s, for a hand-over that
    /// needs an agent idle for `age`: another agent the node list has shown idle for `age`
    /// whose node name sorts after `vm`'s (the last by name goes first). On the standard
    /// trace's mornings three agents idle since the nightly went for one missing platform on
    /// snapshots taken before the first one's runner was listed, and two of the hosts then
    /// stood empty while their nodes' next builds waited for a boot.
    ///
    /// Within [`AGENT_TURN_MS`] of `age` counts: each host judges its own agent by its
    /// probes, which see it idle a poll or so before the list does, so two agents idle since
    /// about the same time each went by its own clock while the other's listing was still a
    /// minute short (marble-sim, standard trace, +3d 8h 24m); one that is not old enough
    /// after all only delays the next by the turn. `None` when `vm`'s own node is not in the
    /// list (no `[jenkins]` feed, or no answer): nothing to rank by, so it goes as before.
    pub(super) fn agent_ahead(&self, now: Millis, vm: &str, age: Millis) -> Option<&str> {
        let node = self.jenkins_node_of(vm);
        if (self.agents_idle_seen.get(node)).is_none_or(|seen| seen.left_at.is_some()) {
            return None;
        }
        self.agents_idle_seen
            .iter()
            .filter(|(other, seen)| {
                other.as_str() > node
                    && seen.since.saturating_add(age) <= now.saturating_add(AGENT_TURN_MS)
                    && (seen.left_at).is_none_or(|left| now < left.saturating_add(AGENT_LEFT_MS))
            })
            .map(|(other, _)| other.as_str())
            .next_back()
    }

    /// Whether `vm`, whose turn comes after [`Self::agent_ahead`]'s, still waits for it: for
    /// [`AGENT_TURN_MS`] from the first time it could have gone.
    pub(super) fn agent_waits_its_turn(&self, now: Millis, vm: &str) -> bool {
        self.agent_turn_waits
            .get(vm)
            .is_none_or(|since| now.saturating_sub(*since) < AGENT_TURN_MS)
    }
}
