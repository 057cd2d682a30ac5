//! `marbled.toml`: the typed configuration, its defaults (all in one place: the `Default`
//! impls below), loading, and validation.
//!
//! Loading reports *every* problem at once, each naming its key: unknown keys are collected
//! with `serde_ignored` (so a typo'd key is never silently ignored, and two typos give two
//! errors), then semantic checks run over the whole value. A type error (a string where a
//! number belongs) stops deserialisation, so only the first of those is reported, with its
//! key and line as toml gives them.
//!
//! Secrets never live here: the file names where credentials are (a 0600 file, the
//! Keychain, the AWS chain), never the credentials themselves.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use marble_proto::Team;
use serde::{Deserialize, Serialize};

use crate::sched::{Policy, SchedConfig};

/// Where `marbled` looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/usr/local/etc/marble/marbled.toml";

/// macOS limits `sun_path` to 104 bytes including the terminating NUL.
pub const MAX_SOCKET_PATH_LEN: usize = 103;

/// The whole daemon configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    /// Socket, state, logging, shutdown.
    pub daemon: DaemonSection,
    /// The prlctl adapter.
    pub prlctl: PrlctlSection,
    /// How VM names map to teams.
    pub teams: TeamsSection,
    /// Busy probes run inside guests.
    pub probe: ProbeSection,
    /// Scheduler policy and timings.
    pub scheduler: SchedulerSection,
    /// VM images in S3 (`marblectl image …`): endpoint, bucket, credentials, transfer tuning,
    /// scrub list. See docs/IMAGES.md.
    #[cfg(feature = "s3")]
    pub images: crate::images::ImageStoreConfig,
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DaemonSection {
    /// Unix socket path (at most 103 bytes: macOS's `sun_path` limit).
    pub socket: PathBuf,
    /// Group owning the socket; its members may run read-only commands. Empty: the daemon
    /// user's primary group.
    pub socket_group: String,
    /// Users allowed to run mutating commands (root always may; so may the daemon's own user).
    pub admin_users: Vec<String>,
    /// State file (locks, leases, cycle position), written atomically.
    pub state_file: PathBuf,
    /// Optional log file, rotated daily, in addition to stderr. Reloadable: no.
    pub log_file: Option<PathBuf>,
    /// Log files kept by rotation.
    pub log_keep: u32,
    /// Graceful shutdown budget; must stay below the plist's `ExitTimeOut` (30 s).
    #[serde(with = "humantime_serde")]
    pub shutdown_budget: Duration,
    /// Name the daemon reports for this host. Empty: the system host name.
    pub host_name: String,
}

impl Default for DaemonSection {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/usr/local/var/marble/marbled.sock"),
            socket_group: String::new(),
            admin_users: Vec::new(),
            state_file: PathBuf::from("/usr/local/var/marble/state.bin"),
            log_file: None,
            log_keep: 14,
            shutdown_budget: Duration::from_secs(20),
            host_name: String::new(),
        }
    }
}

/// `[prlctl]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrlctlSection {
    /// Path of the prlctl executable (tests point this at the simulator).
    pub path: PathBuf,
    /// Timeout of ordinary calls (list, set, register…).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Timeout of `start`/`resume`.
    #[serde(with = "humantime_serde")]
    pub start_timeout: Duration,
    /// Timeout of `stop`.
    #[serde(with = "humantime_serde")]
    pub stop_timeout: Duration,
    /// Most prlctl processes at once.
    pub max_concurrent: u32,
    /// Extra environment for prlctl (the environment is otherwise cleared). Never secrets.
    pub env: BTreeMap<String, String>,
}

impl Default for PrlctlSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/usr/local/bin/prlctl"),
            timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(180),
            stop_timeout: Duration::from_secs(120),
            max_concurrent: 4,
            env: BTreeMap::new(),
        }
    }
}

/// `[teams]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TeamsSection {
    /// Glob patterns on VM names for ROOT VMs.
    pub root: Vec<String>,
    /// Glob patterns on VM names for SPI VMs.
    pub spi: Vec<String>,
    /// Per-VM overrides: name → `root` | `spi` | `unassigned`.
    pub overrides: BTreeMap<String, String>,
}

impl Default for TeamsSection {
    fn default() -> Self {
        Self {
            root: vec!["*-ROOT-VM-*".into()],
            spi: vec!["*-SPI-VM-*".into()],
            overrides: BTreeMap::new(),
        }
    }
}

/// `[probe]`: what counts as busy, checked with `prlctl exec` inside the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeSection {
    /// ROOT: argv run in the guest; exit 0 with output = busy, exit 1 = idle, anything else
    /// (or an exec failure) = unknown. Default: a `Runner.Worker` process exists.
    pub root: Vec<String>,
    /// SPI: same contract. Default: a Jenkins agent JVM has a child process (a build step
    /// runs); a connected but idle agent has none, so it does not look busy forever.
    pub spi: Vec<String>,
    /// Readiness check after a start: the guest answers this (ROOT additionally needs
    /// `ready_root` to succeed).
    pub ready: Vec<String>,
    /// ROOT readiness: the runner listener is up.
    pub ready_root: Vec<String>,
    /// How long one probe may take before it counts as unknown.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Interval between readiness polls.
    #[serde(with = "humantime_serde")]
    pub ready_poll: Duration,
}

impl Default for ProbeSection {
    fn default() -> Self {
        let argv = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        Self {
            root: argv(&["/usr/bin/pgrep", "-lf", "Runner.Worker"]),
            spi: argv(&[
                "/bin/sh",
                "-c",
                "for p in $(/usr/bin/pgrep -f 'agent.jar|remoting.jar'); do /usr/bin/pgrep -lP \"$p\" && exit 0; done; exit 1",
            ]),
            ready: argv(&["/usr/bin/true"]),
            ready_root: argv(&["/usr/bin/pgrep", "-f", "Runner.Listener"]),
            timeout: Duration::from_secs(20),
            ready_poll: Duration::from_secs(2),
        }
    }
}

/// `[scheduler]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerSection {
    /// `cycle` (the seed's round robin) or `manual`.
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
    /// Bound on how long one team waits while the other holds the host.
    #[serde(with = "humantime_serde")]
    pub fairness_bound: Duration,
    /// Periodic inventory refresh.
    #[serde(with = "humantime_serde")]
    pub inventory_interval: Duration,
    /// Decisions kept for `status`.
    pub decision_log_len: u32,
}

impl Default for SchedulerSection {
    fn default() -> Self {
        let s = SchedConfig::default();
        let ms = Duration::from_millis;
        Self {
            policy: "cycle".into(),
            capacity: s.capacity,
            cycle_on_min: ms(s.cycle_on_min_ms),
            cycle_on_jitter: ms(s.cycle_on_jitter_ms),
            cycle_off_window: ms(s.cycle_off_window_ms),
            busy_recheck: ms(s.busy_recheck_ms),
            ready_timeout: ms(s.ready_timeout_ms),
            graceful_stop_timeout: ms(s.graceful_stop_timeout_ms),
            quarantine_after_failures: s.quarantine_after_failures,
            quarantine_base: ms(s.quarantine_base_ms),
            quarantine_max: ms(s.quarantine_max_ms),
            slot_grace: ms(s.slot_grace_ms),
            fairness_bound: ms(s.fairness_bound_ms),
            inventory_interval: ms(s.inventory_interval_ms),
            decision_log_len: s.decision_log_len,
        }
    }
}

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path (`scheduler.capacity`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or a value has the wrong type.
    #[error("invalid config {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// toml's message (names the key and line).
        message: String,
    },
    /// One or more keys are unknown or have invalid values.
    #[error("invalid config {path}: {}", render_problems(.problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
}

fn render_problems(problems: &[ConfigProblem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("\n  - {p}")).collect();
    format!("{} problem(s):{}", problems.len(), lines.concat())
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut unknown = Vec::new();
        let deserializer = toml::Deserializer::new(text);
        let config: Config = serde_ignored::deserialize(deserializer, |key| {
            unknown.push(ConfigProblem {
                key: key.to_string(),
                message: "unknown key".into(),
            });
        })
        .map_err(|err| ConfigError::Syntax {
            path: path.to_owned(),
            message: err.to_string().trim().to_owned(),
        })?;
        let mut problems = unknown;
        problems.extend(config.problems());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
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
        for user in &self.daemon.admin_users {
            if user.is_empty() || user.contains(|c: char| c.is_whitespace() || c == ':') {
                bad("daemon.admin_users", format!("{user:?} is not a user name"));
            }
        }
        if self.prlctl.max_concurrent == 0 {
            bad("prlctl.max_concurrent", "must be at least 1".into());
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
        if parse_policy(&self.scheduler.policy).is_none() {
            bad(
                "scheduler.policy",
                format!(
                    "unknown policy {:?}; expected cycle or manual",
                    self.scheduler.policy
                ),
            );
        }
        if self.scheduler.capacity == 0 {
            bad("scheduler.capacity", "must be at least 1".into());
        }
        #[cfg(feature = "s3")]
        if let Err(err) = self.images.validate() {
            bad("images", err.to_string());
        }
        if self.scheduler.quarantine_base > self.scheduler.quarantine_max {
            bad(
                "scheduler.quarantine_base",
                "must not exceed scheduler.quarantine_max".into(),
            );
        }
        out
    }

    /// The scheduler's view of this config.
    pub fn sched_config(&self) -> SchedConfig {
        let s = &self.scheduler;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        SchedConfig {
            policy: parse_policy(&s.policy).unwrap_or(Policy::Manual),
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
            seed: rand::random(),
        }
    }

    /// The documented default config, as written to `docs/marbled.example.toml`.
    pub fn default_toml() -> String {
        let body = toml::to_string_pretty(&Config::default())
            .expect("invariant: the default config serialises");
        format!(
            "# marbled configuration — every key with its default.\n\
             # Generated by `marbled print-default-config`; docs/marbled.example.toml is checked\n\
             # against it by a test. Durations are humantime strings (\"90s\", \"5m\").\n\
             # Optional keys not shown: daemon.log_file = \"/path/to/marbled.log\";\n\
             # images.endpoint = \"https://s3.cern.ch\" (default: the s3cfg's host_base),\n\
             # images.secret_file = \"/Users/ci/.marble/s3.secret\" (mode 0600), images.s3cfg,\n\
             # images.state_dir, images.build_disk, images.bundles_dir (default ~/Parallels).\n\
             # See docs/IMAGES.md.\n\n{body}"
        )
    }
}

/// Parse a team name as written in config.
pub fn parse_team(name: &str) -> Option<Team> {
    match name {
        "root" => Some(Team::Root),
        "spi" => Some(Team::Spi),
        "unassigned" => Some(Team::Unassigned),
        _ => None,
    }
}

fn parse_policy(name: &str) -> Option<Policy> {
    match name {
        "cycle" => Some(Policy::Cycle),
        "manual" => Some(Policy::Manual),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn default_config_round_trips_and_is_valid() {
        let text = Config::default_toml();
        let parsed = parse(&text).expect("default config parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn every_unknown_key_and_bad_value_is_reported_at_once() {
        let err = parse(
            "[daemon]\nsokcet = \"/x\"\n[scheduler]\ncapacity = 0\npolicy = \"random\"\nfoo = 1\n",
        )
        .expect_err("invalid");
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("wrong error {err:?}")
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "daemon.sokcet",
                "scheduler.foo",
                "scheduler.policy",
                "scheduler.capacity"
            ]
        );
    }

    #[test]
    fn long_socket_path_is_refused_naming_the_key() {
        let long = format!("/tmp/{}/s.sock", "x".repeat(120));
        let err = parse(&format!("[daemon]\nsocket = \"{long}\"\n")).expect_err("too long");
        assert!(err.to_string().contains("daemon.socket: path is"), "{err}");
    }

    #[test]
    fn type_errors_name_the_key() {
        let err = parse("[scheduler]\ncapacity = \"one\"\n").expect_err("type error");
        assert!(err.to_string().contains("capacity"), "{err}");
    }

    #[test]
    fn bad_team_override_names_the_vm() {
        let err = parse("[teams.overrides]\n\"host-X\" = \"blue\"\n").expect_err("bad team");
        assert!(err.to_string().contains("teams.overrides.host-X"), "{err}");
    }
}
