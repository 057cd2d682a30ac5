//! Fair share between the teams on one host (policy `demand`): when a Jenkins slot request
//! and an unmet ROOT job this host could run both wait, whose turn it is.
//!
//! Rules, in order:
//! 1. *Maximum consecutive hold*: a team that took the host `max_consecutive` times in a row
//!    while the other waited lets the other go next.
//! 2. *Ageing*: a team whose oldest waiter has waited `fairness_bound` goes first (the
//!    longer-waiting one when both have), so weights can delay a team but never starve it.
//! 3. *Weights*: the team with the larger `oldest wait × share_<team>` goes; ties go to
//!    Jenkins (its start script holds an executor while it waits).
//!
//! Only turns taken while the other team waited count towards a streak; a turn nobody
//! contested ends it; the streak is kept in the state file across restarts. A running VM is never
//! stopped for a turn — busy VMs keep the host as always; the turn decides who gets the host
//! when it is free (or held by an idle, unprotected VM).

use marble_proto::Team;

use super::persist::Streak;
use super::world::{SlotPhase, World};
use super::{Millis, format_ms, labels_cover};

/// Whose turn it is, and why (for decisions and the waiting side's progress message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Turn {
    /// The team that goes next.
    pub(super) team: Team,
    /// The rule that decided.
    pub(super) why: String,
}

impl World {
    /// Since when Jenkins has waited for this host: its oldest queued slot request, or
    /// requests refused and retried since.
    fn spi_waiting_since(&self, now: Millis) -> Option<Millis> {
        let queued = self
            .slots
            .iter()
            .filter(|s| s.phase == SlotPhase::Queued)
            .map(|s| s.since);
        let refused = self.live_demand(now).map(|d| d.since);
        queued.chain(refused).min()
    }

    /// Since when an unmet ROOT job that a VM here could run has been queued.
    fn root_waiting_since(&self) -> Option<(Millis, u64)> {
        self.unmet_jobs()
            .into_iter()
            .filter(|job| {
                self.vms
                    .values()
                    .any(|vm| vm.team == Team::Root && labels_cover(&vm.labels, &job.labels))
            })
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
        let (spi_age, root_age) = (
            now.saturating_sub(spi_since),
            now.saturating_sub(root_since),
        );
        let other = |team: Team| match team {
            Team::Root => Team::Spi,
            _ => Team::Root,
        };
        let max = self.config.max_consecutive;
        if let Some(streak) = self.streak
            && max > 0
            && streak.count >= max
        {
            return Some(Turn {
                team: other(streak.team),
                why: format!(
                    "fair share: {} took the host {} times in a row while {} waited \
                     (max_consecutive {max})",
                    streak.team.as_str(),
                    streak.count,
                    other(streak.team).as_str()
                ),
            });
        }
        let bound = self.config.fairness_bound_ms;
        let root_aged = root_age >= bound;
        let spi_aged = spi_age >= bound;
        let waits = format!(
            "ROOT job #{job} queued since {}, Jenkins waiting since {}",
            format_ms(root_since),
            format_ms(spi_since)
        );
        if root_aged || spi_aged {
            let team = if root_aged && (!spi_aged || root_since < spi_since) {
                Team::Root
            } else {
                Team::Spi
            };
            return Some(Turn {
                team,
                why: format!(
                    "fair share: {} has waited past fairness_bound ({waits})",
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
                "fair share: {} goes (wait × weight, shares ROOT {} : SPI {}; {waits})",
                team.as_str(),
                self.config.share_root,
                self.config.share_spi
            ),
        })
    }

    /// Record that `team` took the host; `contested`: the other team was waiting.
    pub(super) fn note_turn(&mut self, team: Team, contested: bool) {
        self.streak = match self.streak {
            _ if !contested => None,
            Some(s) if s.team == team => Some(Streak {
                team,
                count: s.count.saturating_add(1),
            }),
            _ => Some(Streak { team, count: 1 }),
        };
    }

    /// Whether the other team waits for this host now (for [`World::note_turn`]).
    pub(super) fn other_team_waits(&self, now: Millis, team: Team) -> bool {
        match team {
            Team::Root => self.spi_waiting_since(now).is_some(),
            _ => self.root_waiting_since().is_some(),
        }
    }
}
