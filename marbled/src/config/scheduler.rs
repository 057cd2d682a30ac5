//! `[scheduler]`: the policy word, timings and limits, warm-runner targets and fair-share
//! weights, with their defaults. The scheduler builds its own `SchedConfig` from this
//! (`SchedConfig::from_config`); the words and types of the section live here so the config
//! layer needs nothing of the scheduler.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[scheduler]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerSection {
    /// `cycle` (the seed's round robin), `demand` (boot for queued jobs) or `manual`.
    pub policy: String,
    /// VMs allowed to run at once (1: the shared build disk).
    pub capacity: u32,
    /// Minimum on-time of a cycled ROOT VM after it is ready.
    #[serde(with = "humantime_serde")]
    pub cycle_on_min: Duration,
    /// Random extra on-time, uniform in [0, this).
    #[serde(with = "humantime_serde")]
    pub cycle_on_jitter: Duration,
    /// Window after an idle stop left free for Jenkins.
    #[serde(with = "humantime_serde")]
    pub cycle_off_window: Duration,
    /// Re-check interval of a busy VM.
    #[serde(with = "humantime_serde")]
    pub busy_recheck: Duration,
    /// Readiness timeout after a start.
    #[serde(with = "humantime_serde")]
    pub ready_timeout: Duration,
    /// Graceful stop timeout before `--kill`.
    #[serde(with = "humantime_serde")]
    pub graceful_stop_timeout: Duration,
    /// Readiness failures in a row before quarantine.
    pub quarantine_after_failures: u32,
    /// First quarantine back-off (doubles).
    #[serde(with = "humantime_serde")]
    pub quarantine_base: Duration,
    /// Longest quarantine back-off.
    #[serde(with = "humantime_serde")]
    pub quarantine_max: Duration,
    /// Protection of a granted Jenkins slot, busy or not.
    #[serde(with = "humantime_serde")]
    pub slot_grace: Duration,
    /// Bound on how long one team waits while the other holds the host (`cycle`); policy
    /// `demand`: how long a team may be passed over on a host while the other team takes
    /// it before its turn comes (docs/SCHEDULER.md, "Fair share").
    #[serde(with = "humantime_serde")]
    pub fairness_bound: Duration,
    /// Periodic inventory refresh.
    #[serde(with = "humantime_serde")]
    pub inventory_interval: Duration,
    /// Decisions kept for `status`.
    pub decision_log_len: u32,
    /// Policy `demand`: warm runners always kept idle across the fleet, per label set
    /// (`[[scheduler.warm]]` with `labels` and `count`).
    pub warm: Vec<WarmTarget>,
    /// Policy `demand`: a label set with at least `warm_min_jobs` jobs queued within this
    /// window gets one warm runner in the fleet ("0s": no prediction).
    #[serde(with = "humantime_serde")]
    pub warm_window: Duration,
    /// See `warm_window`.
    pub warm_min_jobs: u32,
    /// A warm runner gives its host up to an unmet job it cannot take after the job has
    /// waited this long.
    #[serde(with = "humantime_serde")]
    pub warm_yield: Duration,
    /// A warm runner no longer wanted, or a runner whose job another runner took, stays up
    /// this long after it became ready (unless its host is wanted), so its boot is not
    /// thrown away.
    #[serde(with = "humantime_serde")]
    pub warm_linger: Duration,
    /// Idle-host warmth: a free host with nothing to do keeps a ready runner of a label set
    /// no idle runner in the fleet covers (the likeliest first), giving way to any request.
    pub warm_idle_hosts: bool,
    /// Idle-host warmth's swap (off by default): an idle-host runner no configured or
    /// predicted target wants gives its host to a missing predicted or configured target
    /// that the last day's jobs show likelier, one host per target (docs/SCHEDULER.md, "The
    /// swap").
    pub warm_swap: bool,
    /// Policy `demand`: jobs a ROOT VM may run per boot (runner re-arm above 1; 1 = a
    /// fresh boot for every job, the seed's behaviour).
    pub jobs_per_boot: u32,
    /// Policy `demand`, fair share when both teams wait for a host: weight of ROOT's wait.
    pub share_root: u32,
    /// Weight of Jenkins' wait (the larger `wait × weight` goes first).
    pub share_spi: u32,
    /// A Jenkins node that has not asked for a slot this long no longer waits: its age (from
    /// its first request, kept across retries and refusals) is forgotten. Keep it clearly
    /// above Jenkins' retry interval.
    #[serde(with = "humantime_serde")]
    pub waiter_expiry: Duration,
    /// Policy `demand`: another team's VM (a Jenkins agent) idle this long — no build seen by
    /// a probe since — gives its host up to ROOT even when no ROOT job waits ("0s": never).
    /// Hours, so the day's builds still find their agent up but the night's idle agents free
    /// their hosts before the morning's first push.
    #[serde(default = "default_agent_idle_handover", with = "humantime_serde")]
    pub agent_idle_handover: Duration,
    /// Policy `demand`: a Jenkins agent idle this long (below `agent_idle_handover`) gives
    /// its host up *for warmth*: when an idle-warm platform has no idle runner in the fleet
    /// while another has one, nothing is unmet and no job has found the fleet full lately
    /// ("0s": never; `agent_idle_handover = "0s"` turns it off too). Frees the nightly's
    /// agents for the morning push's platforms.
    #[serde(default = "default_agent_warm_handover", with = "humantime_serde")]
    pub agent_warm_handover: Duration,
    /// Policy `demand`: a Jenkins agent idle this long gives its host up for a *predicted*
    /// or configured warm runner (a platform with `warm_min_jobs` jobs in `warm_window`, or a
    /// `[[scheduler.warm]]` target) the fleet is short of, under the same conditions as
    /// `agent_warm_handover` and only while Jenkins' queue is known to hold no buildable
    /// item (an unread queue — no `[demand] jenkins` — may hold one) ("0s": never; `agent_idle_handover = "0s"` turns this off too). A second
    /// push within the hour then finds its platform warm instead of waiting for the agent's
    /// stop and a boot.
    #[serde(default = "default_agent_predicted_handover", with = "humantime_serde")]
    pub agent_predicted_handover: Duration,
    /// Policy `demand`: an idle Jenkins agent that another idle agent makes redundant — the
    /// fleet's idle agents (Jenkins' node list) sorted by name, it is the second — gives its
    /// host up for a missing warm runner (idle-host, predicted or configured) once idle this
    /// long, while Jenkins' queue is known to hold no buildable item ("0s": never;
    /// `agent_idle_handover = "0s"` turns this off too). The first idle agent stays for
    /// the next build; one spare goes at a time, so one platform frees one host.
    #[serde(default = "default_agent_spare_handover", with = "humantime_serde")]
    pub agent_spare_handover: Duration,
    /// Policy `demand`, **opt-in** (default "0s": never): a build that accepts any node
    /// (`[jenkins] labels`) buildable in Jenkins' queue this long, with no idle agent in the
    /// fleet, makes a host that could take it at once (no unmet ROOT job here, nothing
    /// busy, no runner the fleet's only one of its platform) ask Jenkins to launch this
    /// host's own node — one host at a time, in node-name order (docs/SCHEDULER.md, "A free
    /// host launches its own node"). Jenkins launches the first offline node by name for
    /// such a build, again and again while its host runs a long job. Needs `[demand]
    /// jenkins` and the `[jenkins]` user's Agent/Connect permission; "4m" is the value
    /// measured.
    #[serde(default = "default_launch_any_node_after", with = "humantime_serde")]
    pub launch_any_node_after: Duration,
    /// Deprecated (issue 17): a turn-counted limit, replaced by `fairness_bound` counting
    /// the time a team is passed over. Accepted so old files still load; ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_consecutive: Option<u32>,
}

impl Default for SchedulerSection {
    fn default() -> Self {
        let secs = Duration::from_secs;
        let hours = |h: u64| Duration::from_secs(h * 3600);
        Self {
            policy: Policy::Cycle.as_str().into(),
            capacity: 1,
            // The seed's cycle: on 60–119 s after ready, 60 s left to Jenkins after a stop.
            cycle_on_min: secs(60),
            cycle_on_jitter: secs(60),
            cycle_off_window: secs(60),
            busy_recheck: secs(60),
            // Above the slowest normal boot: a cold host's first boot can take minutes
            // (marble-sim's standard boot model has a tail to 4 min), and a timeout there
            // throws the boot away and makes the job wait for another.
            ready_timeout: secs(300),
            graceful_stop_timeout: secs(60),
            quarantine_after_failures: 3,
            quarantine_base: secs(300),
            quarantine_max: hours(1),
            slot_grace: secs(300),
            fairness_bound: secs(1800),
            inventory_interval: secs(30),
            decision_log_len: 50,
            warm: Vec::new(),
            warm_window: hours(2),
            warm_min_jobs: 2,
            warm_yield: secs(60),
            warm_linger: hours(24),
            warm_idle_hosts: true,
            warm_swap: false,
            jobs_per_boot: 1,
            // Jenkins' start script holds an executor while it waits: its wait counts double.
            share_root: 1,
            share_spi: 2,
            // Jenkins retries a refused start 60 s later: five of its retries may be missed.
            waiter_expiry: secs(300),
            agent_idle_handover: default_agent_idle_handover(),
            agent_warm_handover: default_agent_warm_handover(),
            agent_predicted_handover: default_agent_predicted_handover(),
            agent_spare_handover: default_agent_spare_handover(),
            launch_any_node_after: default_launch_any_node_after(),
            max_consecutive: None,
        }
    }
}

/// `agent_idle_handover`'s default: well above the day's gaps between builds on one agent (up
/// to ~3.5 h on the standard trace), so a day's builds find their agent up. 4 h took the
/// standard trace's ROOT p95 from 1m45s to 1m29s but, with idle-host warmth on, put SPI grant
/// p95 over the cycler's on `overload` and `overload@1001` (docs/benchmarks.md); at 8 h only
/// agents idle from a night to a late morning, or over a weekend, give their host up.
fn default_agent_idle_handover() -> Duration {
    Duration::from_secs(8 * 3600)
}

/// `agent_warm_handover`'s default: well above the day's gaps between builds on one agent (up
/// to ~3.5 h on the standard trace) and within the nightly's agents' idle time at the morning
/// push (6–8 h there). 4 h took the standard trace's ROOT p95 to 1m28s but put SPI grant p95
/// over the cycler's on `overload@1001` (docs/SCHEDULER.md, "Idle agents and the morning push").
fn default_agent_warm_handover() -> Duration {
    Duration::from_secs(6 * 3600)
}

/// `agent_predicted_handover`'s default: an agent left idle an hour in a working hour whose
/// pushes took the predicted warm runners. 1 h took the standard trace's ROOT p95 from 1m41s
/// to 1m21s (SPI grant p95 3m26s → 4m21s, cycler 7m19s); 30 min put SPI at 6m45s
/// (docs/benchmarks.md, "Task std8").
fn default_agent_predicted_handover() -> Duration {
    Duration::from_secs(3600)
}

/// `agent_spare_handover`'s default: a spare agent idle a quarter of an hour (a build's
/// next stage or a quick rebuild has come by then) goes for warmth.
fn default_agent_spare_handover() -> Duration {
    Duration::from_secs(15 * 60)
}

/// `launch_any_node_after`'s default: off. The call needs a Jenkins permission the read-only
/// demand poll does not (Agent/Connect), and on the issue-17 traces it moved the targets
/// neither way (docs/benchmarks.md, "Opt-in: a free host launches its own node"); an
/// operator turns it on with the permission granted ("4m": above what Jenkins' own launch
/// takes when the node it picks is on a free host — its retention check within a minute,
/// the start script, a boot of up to 90 s — so a build already being served is not launched
/// for twice).
fn default_launch_any_node_after() -> Duration {
    Duration::ZERO
}

/// A configured warm-runner target (`[[scheduler.warm]]`): keep this many runners covering
/// `labels` registered and idle across the fleet, whether or not a job waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmTarget {
    /// The `runs-on` labels the warm runners must cover.
    pub labels: Vec<String>,
    /// How many, fleet-wide.
    pub count: u32,
}

/// Scheduling policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    /// Only operator commands and slot requests start VMs.
    Manual,
    /// The seed's round robin over ROOT VMs.
    Cycle,
    /// Boot a ROOT VM only for a queued job no free runner in the fleet will take.
    Demand,
}

impl Policy {
    /// The configuration word.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Manual => "manual",
            Policy::Cycle => "cycle",
            Policy::Demand => "demand",
        }
    }

    /// The policy named by a configuration word (`cycle`, `demand`, `manual`).
    pub fn parse(word: &str) -> Option<Policy> {
        [Policy::Manual, Policy::Cycle, Policy::Demand]
            .into_iter()
            .find(|p| p.as_str() == word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_words_round_trip() {
        for p in [Policy::Manual, Policy::Cycle, Policy::Demand] {
            assert_eq!(Policy::parse(p.as_str()), Some(p));
        }
        assert_eq!(Policy::parse("random"), None);
        assert_eq!(Policy::parse("Cycle"), None);
    }
}
