//! Fair share between the teams on one host (policy `demand`): when a Jenkins build and an
//! unmet ROOT job this host could run both wait, whose turn it is — and how long each team's
//! waiter has waited.
//!
//! Waiters and their ages:
//! - *Jenkins*: a node's age runs from its first slot request and belongs to the node: kept
//!   across Jenkins' retries, refusals and pre-emption probes until it is granted or has not
//!   asked for `waiter_expiry` (clearly longer than Jenkins' 60 s retry). A buildable item
//!   of Jenkins' queue (fed with the demand snapshot; every host polls the same queue) ages
//!   the host that could serve it: a build for a named node that node's host, a build for a
//!   label all SPI nodes carry (`spi_labels`: one that accepts any node) the host whose
//!   node Jenkins is launching for it — so a build that hops between nodes is not younger
//!   on each, and a host Jenkins is not asking is not held for it.
//! - *ROOT*: the oldest unmet job a ROOT VM here could run (fleet-wide queue).
//!
//! How long a team has been *passed over here*: Jenkins its whole wait (its node waits for
//! this host only); ROOT only while Jenkins had this host — since the first of the turns
//! Jenkins took here in a row, or since the job was queued if later — and not while ROOT
//! itself had it (its job may run on any host of the fleet).
//!
//! Rules, in order, when both wait:
//! 1. *Bound*: a team passed over here for `fairness_bound` goes first (ROOT if both: it can
//!    only have been passed over while Jenkins had the host).
//! 2. *Weights*: the team with the larger `time passed over × share_<team>` goes; ties go to
//!    Jenkins (its start script holds an executor while it waits). So after a ROOT turn
//!    Jenkins goes next, while Jenkins may take several turns in a row until ROOT's time
//!    passed over outweighs its wait or reaches the bound.
//!
//! The streak (which team took the host last, since when) and the Jenkins waiters are kept
//! in the state file across restarts. A running VM is never stopped for a turn — busy VMs
//! keep the host as always; the turn decides who gets the host when it is free (or held by
//! an idle, unprotected VM). docs/SCHEDULER.md ("Fair share") has the bound this gives and
//! its proof sketch.

use marble_proto::Team;

use super::persist::{SpiWaiter, Streak};
use super::world::World;
use super::{Millis, format_ms};

/// Whose turn it is, and why (for decisions and the waiting side's progress message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Turn {
    /// The team that goes next.
    pub(super) team: Team,
    /// The rule that decided.
    pub(super) why: String,
}

impl World {
    /// A slot request for `vm` is waiting at `now`: the node's age starts with its first
    /// request and is kept while it keeps asking.
    pub(super) fn note_waiter(&mut self, now: Millis, vm: &str) {
        let expiry = self.config.waiter_expiry_ms;
        let waiter = self.spi_waiters.entry(vm.to_owned()).or_insert(SpiWaiter {
            since_ms: now,
            last_seen_ms: now,
        });
        if now.saturating_sub(waiter.last_seen_ms) > expiry {
            // Stopped asking for longer than Jenkins retries: a new wait.
            waiter.since_ms = now;
        }
        waiter.last_seen_ms = now;
    }

    /// `vm` was granted: its node no longer waits.
    pub(super) fn forget_waiter(&mut self, vm: &str) {
        self.spi_waiters.remove(vm);
    }

    /// Note every slot request still waiting and forget nodes that stopped asking.
    pub(super) fn refresh_waiters(&mut self, now: Millis) {
        let asking: Vec<String> = self.slots.iter().map(|s| s.vm.clone()).collect();
        for vm in asking {
            self.note_waiter(now, &vm);
        }
        let expiry = self.config.waiter_expiry_ms;
        self.spi_waiters
            .retain(|_, w| now.saturating_sub(w.last_seen_ms) <= expiry);
    }

    /// Since when Jenkins has waited for this host: its oldest waiting node here, or the
    /// oldest buildable queue item an SPI VM here could serve — a build for a named node of
    /// this host always, a build for any node only while Jenkins is launching a node here (a
    /// node of this host is waiting). Jenkins launches one node per such build, the first
    /// offline one by name and the same one again after a refusal: counted on every host
    /// with an SPI node, it held every free host for a start script that never came, and ROOT
    /// starved (marble-sim `spi-starvation` under `sim.jenkins_launch = "first-offline"`).
    /// A node that could not be granted (locked, quarantined, draining host) does not count:
    /// holding the host for it would only keep ROOT out.
    pub(super) fn spi_waiting_since(&self, now: Millis) -> Option<Millis> {
        let spi_here = |name: &str| {
            self.vms.get(name).is_some_and(|vm| vm.team == Team::Spi)
                && self.start_blocker(now, name).is_none()
        };
        let oldest_node = (self.spi_waiters.iter())
            .filter(|(vm, _)| spi_here(vm))
            .map(|(_, w)| w.since_ms)
            .min();
        let launching_here = oldest_node.is_some();
        let queue = self
            .demand
            .jenkins_queue
            .iter()
            .filter(|item| {
                let node = self
                    .config
                    .jenkins_nodes
                    .iter()
                    .find(|(_, n)| **n == item.label);
                let vm = node.map_or(item.label.as_str(), |(vm, _)| vm.as_str());
                spi_here(vm) || launching_here && self.config.spi_labels.contains(&item.label)
            })
            .map(|item| item.since_ms);
        oldest_node.into_iter().chain(queue).min()
    }

    /// Since when an unmet ROOT job that a VM here could run has been queued.
    fn root_waiting_since(&self) -> Option<(Millis, u64)> {
        self.unmet_jobs()
            .into_iter()
            .filter(|job| self.servable_here(job))
            .map(|job| (job.since_ms, job.id))
            .min()
    }

    /// Whose turn it is when both teams wait for this host; `None` when at most one does
    /// (or the policy is not `demand`).
    pub(super) fn share_turn(&self, now: Millis) -> Option<Turn> {
        if self.config.policy != super::Policy::Demand {
            return None;
        }
        let spi_since = self.spi_waiting_since(now)?;
        let (root_since, job) = self.root_waiting_since()?;
        // ROOT's job can run on any host of the fleet: this host has passed it over only
        // while Jenkins had it (since the first of Jenkins' turns in a row here, or since
        // the job was queued if later), not while ROOT itself had it.
        let root_passed_over = match self.streak {
            Some(s) if s.team == Team::Spi => Some(root_since.max(s.since_ms)),
            _ => None,
        };
        let spi_age = now.saturating_sub(spi_since);
        let root_age = root_passed_over.map_or(0, |since| now.saturating_sub(since));
        let waits = format!(
            "ROOT job #{job} queued since {}{}, Jenkins waiting since {}",
            format_ms(root_since),
            root_passed_over.map_or(String::new(), |since| format!(
                " and passed over here since {}",
                format_ms(since)
            )),
            format_ms(spi_since)
        );
        let bound = self.config.fairness_bound_ms;
        let aged = match (root_age >= bound, spi_age >= bound) {
            // ROOT can only have aged behind Jenkins' own turns: it goes.
            (true, _) => Some(Team::Root),
            (false, true) => Some(Team::Spi),
            (false, false) => None,
        };
        if let Some(team) = aged {
            let streak = match (team, self.streak) {
                (Team::Root, Some(s)) => format!(" (Jenkins' turns in a row: {})", s.count),
                _ => String::new(),
            };
            return Some(Turn {
                team,
                why: format!(
                    "fair share: {} has waited past fairness_bound{streak} ({waits})",
                    team.as_str()
                ),
            });
        }
        let root_score = u128::from(root_age) * u128::from(self.config.share_root);
        let spi_score = u128::from(spi_age) * u128::from(self.config.share_spi);
        let team = if root_score > spi_score {
            Team::Root
        } else {
            Team::Spi
        };
        Some(Turn {
            team,
            why: format!(
                "fair share: {} goes (wait here × weight, shares ROOT {} : SPI {}; {waits})",
                team.as_str(),
                self.config.share_root,
                self.config.share_spi
            ),
        })
    }

    /// A ROOT VM here was first seen running a job (the feed or a probe): ROOT has the host,
    /// turn or not. A runner ROOT did not boot as a turn — an idle-host or predicted warm
    /// runner, a spare, one the cycle, an operator or a restart left up — holds the host for
    /// ROOT as much as a demand boot does. Left as Jenkins' streak, ROOT's time "passed over
    /// here" ran on while its own job ran, reached `fairness_bound`, and rule 1 gave ROOT the
    /// next turn too, over an older Jenkins waiter (marble-sim `overload@1002`: a named build
    /// waited two ROOT jobs, 5 h 7 min; `marble-sim/tests/policy_spi_faults.rs`).
    pub(super) fn note_root_holds(&mut self, now: Millis) {
        if self.streak.is_some_and(|s| s.team == Team::Spi) {
            self.note_turn(now, Team::Root);
        }
    }

    /// Record that `team` took the host at `now` (a boot for a ROOT job, a start for a slot
    /// request): the streak is the run of turns one team has taken here, since its first.
    pub(super) fn note_turn(&mut self, now: Millis, team: Team) {
        self.streak = match self.streak {
            Some(s) if s.team == team => Some(Streak {
                count: s.count.saturating_add(1),
                ..s
            }),
            _ => Some(Streak {
                team,
                count: 1,
                since_ms: now,
            }),
        };
    }
}
