//! The semantic checks of a whole `marbled.toml` ([`Config::problems`]), run after every
//! key was known, and the token-file checks `check-config` adds
//! ([`Config::secret_problems`]). Problems come in a fixed order (the file's sections, top
//! to bottom, with the zero-duration checks together), which `check-config` prints.

use std::time::Duration;

use super::ci::secret_file_problems;
use super::{Config, ConfigProblem, MAX_SOCKET_PATH_LEN, Policy, parse_team};

/// Records one problem: `(dotted key, message)`.
type Bad<'a> = dyn FnMut(&str, String) + 'a;

impl Config {
    /// Secret files that cannot be used now (missing, not a file, owned by another user,
    /// readable by others): every one the config names — `[github]` and `[jenkins]`
    /// `token_file`, `[images]` `secret_file` and `s3cfg` (it holds the S3 secret key too).
    /// What `marbled check-config` reports beyond [`Config::problems`]. Not a reason to
    /// refuse the config: the daemon starts, reports the CI side unavailable and retries the
    /// file; an image command fails naming the file.
    pub fn secret_problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: String| {
            out.push(ConfigProblem {
                key: key.to_owned(),
                message,
            });
        };
        #[cfg(feature = "s3")]
        {
            secret_file_problems(
                "images.secret_file",
                self.images.secret_file.as_deref(),
                &mut bad,
            );
            secret_file_problems("images.s3cfg", self.images.s3cfg.as_deref(), &mut bad);
        }
        if let Some(github) = &self.github {
            secret_file_problems("github.token_file", github.token_file.as_deref(), &mut bad);
            secret_file_problems(
                "github.app_key_file",
                github.app_key_file.as_deref(),
                &mut bad,
            );
        }
        if let Some(jenkins) = &self.jenkins {
            secret_file_problems(
                "jenkins.token_file",
                jenkins.token_file.as_deref(),
                &mut bad,
            );
        }
        out
    }

    /// Semantic checks, all at once.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: String| {
            out.push(ConfigProblem {
                key: key.to_owned(),
                message,
            });
        };
        self.local_problems(&mut bad);
        self.scheduler_problems(&mut bad);
        self.optional_problems(&mut bad);
        out.extend(self.host.problems());
        out
    }

    /// `[daemon]`, `[prlctl]`, the timeouts, `[teams]`, `[probe]`.
    fn local_problems(&self, bad: &mut Bad<'_>) {
        let socket_len = self.daemon.socket.as_os_str().len();
        if socket_len > MAX_SOCKET_PATH_LEN {
            bad(
                "daemon.socket",
                format!(
                    "path is {socket_len} bytes; macOS allows at most {MAX_SOCKET_PATH_LEN} for a unix socket"
                ),
            );
        }
        if !self.daemon.socket.is_absolute() {
            bad("daemon.socket", "must be an absolute path".into());
        }
        if !self.daemon.state_file.is_absolute() {
            bad("daemon.state_file", "must be an absolute path".into());
        }
        if self.daemon.shutdown_budget >= Duration::from_secs(30) {
            bad(
                "daemon.shutdown_budget",
                "must stay below launchd's ExitTimeOut of 30s (see launchd/ch.cern.sft.marbled.plist)"
                    .into(),
            );
        }
        // The host name starts the names of pulled VMs (`<host>-<pure>`) and heartbeat keys.
        if !self.daemon.host_name.is_empty()
            && let Some(problem) =
                marble_proto::names::name_problem("host name", &self.daemon.host_name)
        {
            bad("daemon.host_name", problem);
        }
        for user in &self.daemon.admin_users {
            if user.is_empty() || user.contains(|c: char| c.is_whitespace() || c == ':') {
                bad("daemon.admin_users", format!("{user:?} is not a user name"));
            }
        }
        if self.prlctl.max_concurrent == 0 {
            bad("prlctl.max_concurrent", "must be at least 1".into());
        }
        if self.prlctl.max_exec_per_vm == 0 {
            bad("prlctl.max_exec_per_vm", "must be at least 1".into());
        }
        for (key, d) in [
            ("prlctl.timeout", self.prlctl.timeout),
            ("prlctl.start_timeout", self.prlctl.start_timeout),
            ("prlctl.stop_timeout", self.prlctl.stop_timeout),
            ("probe.timeout", self.probe.timeout),
            ("probe.ready_poll", self.probe.ready_poll),
            ("scheduler.ready_timeout", self.scheduler.ready_timeout),
            (
                "scheduler.inventory_interval",
                self.scheduler.inventory_interval,
            ),
        ] {
            if d.is_zero() {
                bad(key, "must be greater than zero".into());
            }
        }
        for (key, pats) in [
            ("teams.root", &self.teams.root),
            ("teams.spi", &self.teams.spi),
        ] {
            for pat in pats {
                if let Err(err) = globset::Glob::new(pat) {
                    bad(key, format!("bad pattern {pat:?}: {err}"));
                }
            }
        }
        for (vm, team) in &self.teams.overrides {
            // The same rule as names entering through requests (marble_proto::names).
            if let Some(problem) = marble_proto::names::name_problem("VM name", vm) {
                bad(&format!("teams.overrides.{vm}"), problem);
            }
            if parse_team(team).is_none() {
                bad(
                    &format!("teams.overrides.{vm}"),
                    format!("unknown team {team:?}; expected root, spi or unassigned"),
                );
            }
        }
        for (key, argv) in [
            ("probe.root", &self.probe.root),
            ("probe.spi", &self.probe.spi),
            ("probe.ready", &self.probe.ready),
        ] {
            if argv.is_empty() {
                bad(key, "must name a command".into());
            }
        }
    }

    /// `[scheduler]` (and `[images]`, checked between its fields as it always was).
    fn scheduler_problems(&self, bad: &mut Bad<'_>) {
        if Policy::parse(&self.scheduler.policy).is_none() {
            bad(
                "scheduler.policy",
                format!(
                    "unknown policy {:?}; expected cycle, demand or manual",
                    self.scheduler.policy
                ),
            );
        }
        for (i, target) in self.scheduler.warm.iter().enumerate() {
            if target.labels.is_empty() || target.labels.iter().any(|l| l.trim().is_empty()) {
                bad(
                    &format!("scheduler.warm[{i}].labels"),
                    "must list the runs-on labels, none empty".into(),
                );
            }
        }
        if self.scheduler.share_root == 0 && self.scheduler.share_spi == 0 {
            bad(
                "scheduler.share_root",
                "share_root and share_spi cannot both be 0".into(),
            );
        }
        if self.scheduler.warm_min_jobs == 0 {
            bad("scheduler.warm_min_jobs", "must be at least 1".into());
        }
        if self.scheduler.capacity == 0 {
            bad("scheduler.capacity", "must be at least 1".into());
        }
        #[cfg(feature = "s3")]
        {
            let images = self.images.problems();
            if !images.is_empty() {
                // The text `ImageError::Config` shows for the same problems.
                bad(
                    "images",
                    format!("invalid image store config: {}", images.join("; ")),
                );
            }
        }
        if self.scheduler.quarantine_base > self.scheduler.quarantine_max {
            bad(
                "scheduler.quarantine_base",
                "must not exceed scheduler.quarantine_max".into(),
            );
        }
        // 0 would forget a Jenkins node between two of its retries: its wait would restart.
        if self.scheduler.waiter_expiry.is_zero() {
            bad(
                "scheduler.waiter_expiry",
                "must be greater than zero (keep it above Jenkins' retry interval)".into(),
            );
        }
    }

    /// The optional sections: `[github]`, `[jenkins]`, `[demand]`, `[fleet]`, `[metrics]`.
    fn optional_problems(&self, bad: &mut Bad<'_>) {
        self.labels.problems(bad);
        if let Some(github) = &self.github {
            github.problems(bad);
        }
        if let Some(jenkins) = &self.jenkins {
            jenkins.problems(bad);
        }
        let mut mine = Vec::new();
        if let Some(demand) = &self.demand {
            mine.extend(demand.problems(self.github.as_ref().map(|g| g.repo.as_deref())));
            let github = demand.github && self.github.is_some();
            let jenkins = demand.jenkins && self.jenkins.is_some();
            if !github && !jenkins {
                mine.push((
                    "demand".to_owned(),
                    "needs a [github] or [jenkins] section to poll".to_owned(),
                ));
            }
            if demand.shared && self.fleet.is_none() {
                mine.push((
                    "demand.shared".to_owned(),
                    "needs a [fleet] section: the poller is elected and publishes through the fleet's bucket".to_owned(),
                ));
            }
        }
        if let Some(fleet) = &self.fleet {
            mine.extend(fleet.problems());
        }
        if let Some(metrics) = &self.metrics {
            mine.extend(metrics.problems());
        }
        for (key, message) in mine {
            bad(&key, message);
        }
    }
}
