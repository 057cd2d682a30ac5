//! The scheduler's parameters built from the `[scheduler]` section (and the two other
//! sections the registration watchdog depends on): the scheduler takes its config from the
//! config layer, never the other way round.

use std::time::Duration;

use super::{Policy, SchedConfig};
use crate::config::Config;

impl SchedConfig {
    /// The scheduler's view of `config`, with the given jitter seed.
    pub fn from_config(config: &Config, seed: u64) -> SchedConfig {
        let s = &config.scheduler;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        SchedConfig {
            policy: Policy::parse(&s.policy).unwrap_or(Policy::Manual),
            capacity: s.capacity,
            cycle_on_min_ms: ms(s.cycle_on_min),
            cycle_on_jitter_ms: ms(s.cycle_on_jitter),
            cycle_off_window_ms: ms(s.cycle_off_window),
            busy_recheck_ms: ms(s.busy_recheck),
            ready_timeout_ms: ms(s.ready_timeout),
            graceful_stop_timeout_ms: ms(s.graceful_stop_timeout),
            quarantine_after_failures: s.quarantine_after_failures,
            quarantine_base_ms: ms(s.quarantine_base),
            quarantine_max_ms: ms(s.quarantine_max),
            slot_grace_ms: ms(s.slot_grace),
            fairness_bound_ms: ms(s.fairness_bound),
            inventory_interval_ms: ms(s.inventory_interval),
            decision_log_len: s.decision_log_len,
            seed,
            // The watchdog needs GitHub (runners) and a demand source (queued jobs).
            runner_watchdog_ms: match (&config.github, &config.demand) {
                (Some(github), Some(_)) => ms(github.registration_timeout),
                _ => 0,
            },
            warm: s.warm.clone(),
            warm_window_ms: ms(s.warm_window),
            warm_min_jobs: s.warm_min_jobs,
            warm_yield_ms: ms(s.warm_yield),
            warm_linger_ms: ms(s.warm_linger),
            warm_idle_hosts: s.warm_idle_hosts,
            warm_swap: s.warm_swap,
            jobs_per_boot: s.jobs_per_boot.max(1),
            share_root: s.share_root,
            share_spi: s.share_spi,
            waiter_expiry_ms: ms(s.waiter_expiry),
            agent_idle_handover_ms: ms(s.agent_idle_handover),
            agent_warm_handover_ms: ms(s.agent_warm_handover),
            agent_predicted_handover_ms: ms(s.agent_predicted_handover),
            agent_spare_handover_ms: ms(s.agent_spare_handover),
            launch_any_node_after_ms: ms(s.launch_any_node_after),
            spi_labels: config
                .jenkins
                .as_ref()
                .map(|j| j.labels.clone())
                .unwrap_or_default(),
            jenkins_nodes: config
                .jenkins
                .as_ref()
                .map(|j| j.nodes.clone())
                .unwrap_or_default(),
        }
    }
}

impl Config {
    /// The scheduler's view of this config, with a random jitter seed (what the daemon
    /// runs). Kept for callers of the old `Config::sched_config`; new code calls
    /// [`SchedConfig::from_config`].
    pub fn sched_config(&self) -> SchedConfig {
        SchedConfig::from_config(self, rand::random())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_defaults_are_the_scheduler_defaults() {
        // The defaults are written twice (the config's for the file, the scheduler's for
        // tests and the simulator): they must agree.
        assert_eq!(
            SchedConfig::from_config(&Config::default(), 0),
            SchedConfig::default()
        );
    }
}
