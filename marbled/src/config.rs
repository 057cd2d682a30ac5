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
    /// This host: name pattern, build disk, VM sizing, `vm create`/`vm provision` timeouts.
    pub host: crate::lifecycle::HostSection,
    /// VM images in S3 (`marblectl image …`): endpoint, bucket, credentials, transfer tuning,
    /// scrub list. See docs/IMAGES.md.
    #[cfg(feature = "s3")]
    pub images: crate::images::ImageStoreConfig,
    /// GitHub JIT runners for ROOT VMs (absent: no runner lifecycle). See docs/CI.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github: Option<GithubSection>,
    /// Jenkins node state for SPI VMs (absent: the guest probe alone). See docs/CI.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jenkins: Option<JenkinsSection>,
    /// Demand sources polled for policy `demand` (absent: none). See docs/OPERATIONS.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demand: Option<crate::demand::DemandSection>,
    /// Fleet heartbeat in the `[images]` bucket (absent: none; `fleet ls` refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::fleet::FleetSection>,
    /// node_exporter textfile (absent: metrics only through `marblectl metrics`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<crate::metrics::MetricsSection>,
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
    /// Name the daemon reports for this host. Empty: the system host name. Either is cut at
    /// the first dot (`macphsft01.cern.ch` → `macphsft01`).
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
    /// Most `prlctl exec` processes at once into one VM (probes, readiness checks, JIT
    /// delivery, provisioning); further execs into that VM wait. Parallels' DevOps service
    /// keeps it to 2.
    pub max_exec_per_vm: u32,
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
            max_exec_per_vm: 2,
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
    /// (or an exec failure) = unknown. Default: a `Runner.Worker` process exists. It runs
    /// through a guest shell whose command line holds it: a `pgrep -f` pattern must not match
    /// its own text (see the defaults and docs/OPERATIONS.md).
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
        // Every `pgrep -f` pattern here escapes its dot (`Runner\.Worker`): `prlctl exec`
        // runs these through a guest shell whose own command line holds the pattern, and
        // `pgrep -f` matches command lines. An unescaped `Runner.Worker` (or
        // `agent.jar|remoting.jar`) finds that shell, so an idle guest looks busy (a ROOT
        // VM never stops, an idle SPI agent holds its VM for ever) and a guest whose
        // listener is down looks ready. With `\.` the shell's command line holds
        // `Runner\.Worker`, which the pattern (a literal dot) does not match, while a real
        // `…/bin/Runner.Worker` or `java -jar …/agent.jar` still does.
        Self {
            root: argv(&["/usr/bin/pgrep", "-lf", "Runner\\.Worker"]),
            spi: argv(&[
                "/bin/sh",
                "-c",
                "for p in $(/usr/bin/pgrep -f 'agent\\.jar|remoting\\.jar'); do /usr/bin/pgrep -lP \"$p\" && exit 0; done; exit 1",
            ]),
            ready: argv(&["/usr/bin/true"]),
            ready_root: argv(&["/usr/bin/pgrep", "-f", "Runner\\.Listener"]),
            timeout: Duration::from_secs(20),
            ready_poll: Duration::from_secs(2),
        }
    }
}

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
    /// Bound on how long one team waits while the other holds the host.
    #[serde(with = "humantime_serde")]
    pub fairness_bound: Duration,
    /// Periodic inventory refresh.
    #[serde(with = "humantime_serde")]
    pub inventory_interval: Duration,
    /// Decisions kept for `status`.
    pub decision_log_len: u32,
    /// Policy `demand`: warm runners always kept idle across the fleet, per label set
    /// (`[[scheduler.warm]]` with `labels` and `count`).
    pub warm: Vec<crate::sched::WarmTarget>,
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
    /// Policy `demand`, fair share when both teams wait for a host: weight of ROOT's wait.
    pub share_root: u32,
    /// Weight of Jenkins' wait (the larger `wait × weight` goes first).
    pub share_spi: u32,
    /// Turns one team may take in a row while the other waits (0: no limit).
    pub max_consecutive: u32,
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
            warm: s.warm,
            warm_window: ms(s.warm_window_ms),
            warm_min_jobs: s.warm_min_jobs,
            warm_yield: ms(s.warm_yield_ms),
            warm_linger: ms(s.warm_linger_ms),
            share_root: s.share_root,
            share_spi: s.share_spi,
            max_consecutive: s.max_consecutive,
        }
    }
}

/// A Keychain generic password (`security find-generic-password -s SERVICE -a ACCOUNT`).
/// From a LaunchDaemon it is readable only while the user is logged in at the console (the
/// login keychain is locked otherwise): prefer `token_file` for the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeychainItem {
    /// Service name (`-s`).
    pub service: String,
    /// Account name (`-a`).
    pub account: String,
    /// The `security(1)` program (default `/usr/bin/security`; tests stand another in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<PathBuf>,
}

/// `[github]`: mint a JIT runner config at each ROOT boot and delete the registration
/// before each stop. The token is read from `token_file` (mode 0600) or `token_keychain`,
/// never from this file; exactly one of them, and exactly one of `repo`/`org`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GithubSection {
    /// API base URL (GitHub Enterprise or a test server).
    pub api_url: String,
    /// Repository runners: `"owner/repo"` (token needs "Administration: write").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Organisation runners: `"org"` (token needs "Self-hosted runners: write").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// File holding the token; must not be readable by group or others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Keychain item holding the token (macOS only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_keychain: Option<KeychainItem>,
    /// Runner group id (1: the Default group).
    pub runner_group_id: u64,
    /// First word of runner names: `<prefix>-<host>-<vm>-<boot>`.
    pub name_prefix: String,
    /// Labels added to `self-hosted, macOS, ARM64, macNN`.
    pub labels_extra: Vec<String>,
    /// Guest path the JIT config is written to (must match `launchd/guest/marble-runner.sh`).
    pub jit_path: String,
    /// Runner work folder, relative to the runner's install directory.
    pub work_folder: String,
    /// Timeout of one API request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Registration watchdog: a runner that took no job within this time while matching
    /// jobs are queued gets its VM recycled.
    #[serde(with = "humantime_serde")]
    pub registration_timeout: Duration,
}

impl Default for GithubSection {
    fn default() -> Self {
        Self {
            api_url: "https://api.github.com".into(),
            repo: None,
            org: None,
            token_file: None,
            token_keychain: None,
            runner_group_id: 1,
            name_prefix: "marble".into(),
            labels_extra: Vec::new(),
            jit_path: "/var/run/marble/jitconfig".into(),
            work_folder: "_work".into(),
            request_timeout: Duration::from_secs(30),
            registration_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// `[jenkins]`: the controller's node API, used as the SPI busy signal and to take a node
/// offline during a drain. The API token comes from `token_file` (0600) or `token_keychain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JenkinsSection {
    /// Controller base URL (with the context path, if any).
    pub url: String,
    /// User the API token belongs to.
    pub user: String,
    /// File holding the API token; must not be readable by group or others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Keychain item holding the API token (macOS only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_keychain: Option<KeychainItem>,
    /// Timeout of one API request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Jenkins node name per VM name, where they differ (default: the node is the VM name).
    pub nodes: BTreeMap<String, String>,
}

impl Default for JenkinsSection {
    fn default() -> Self {
        Self {
            url: String::new(),
            user: String::new(),
            token_file: None,
            token_keychain: None,
            request_timeout: Duration::from_secs(20),
            nodes: BTreeMap::new(),
        }
    }
}

impl JenkinsSection {
    /// The Jenkins node name of `vm`.
    pub fn node_for<'a>(&'a self, vm: &'a str) -> &'a str {
        self.nodes.get(vm).map_or(vm, String::as_str)
    }
}

/// Characters allowed in runner labels and the name prefix (GitHub's own label charset is
/// wider; these never need quoting anywhere).
fn safe_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Check a secret's source: exactly one of file/keychain, the file's path absolute. Whether
/// the file can be read is [`secret_file_problems`]' question: not a reason to refuse the
/// config, as the daemon runs without the token and retries it.
fn secret_source_problems(
    section: &str,
    file: Option<&Path>,
    keychain: Option<&KeychainItem>,
    bad: &mut dyn FnMut(&str, String),
) {
    let file_key = format!("{section}.token_file");
    let kc_key = format!("{section}.token_keychain");
    match (file, keychain) {
        (None, None) => bad(
            &file_key,
            format!("set {file_key} (a mode-0600 file) or {kc_key}; secrets never go in this file"),
        ),
        (Some(_), Some(_)) => bad(
            &file_key,
            format!("set only one of {file_key} and {kc_key}"),
        ),
        (Some(path), None) => {
            if !path.is_absolute() {
                bad(&file_key, "must be an absolute path".into());
            }
        }
        (None, Some(item)) => {
            if item.service.is_empty() || item.account.is_empty() {
                bad(&kc_key, "needs a service and an account".into());
            }
            if !cfg!(target_os = "macos") && item.security.is_none() {
                bad(&kc_key, "the Keychain is only available on macOS".into());
            }
        }
    }
}

/// Whether a token file can be used now: present, a file, not readable by group or others
/// (mode 0600 or stricter). `marbled check-config` reports these; the daemon starts anyway
/// and says in `status` that the CI side waits for the token.
fn secret_file_problems(section: &str, file: Option<&Path>, bad: &mut dyn FnMut(&str, String)) {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = file.filter(|p| p.is_absolute()) else {
        return;
    };
    let file_key = format!("{section}.token_file");
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => bad(
            &file_key,
            format!(
                "{} has mode {:04o}, readable by other users; fix with `chmod 600 {}`",
                path.display(),
                meta.permissions().mode() & 0o7777,
                path.display()
            ),
        ),
        Ok(meta) if !meta.is_file() => {
            bad(&file_key, format!("{} is not a file", path.display()));
        }
        Ok(_) => {}
        Err(err) => bad(&file_key, format!("cannot read {}: {err}", path.display())),
    }
}

impl GithubSection {
    fn problems(&self, bad: &mut dyn FnMut(&str, String)) {
        if !cfg!(feature = "ci") {
            bad(
                "github",
                "this marbled was built without the `ci` feature".into(),
            );
        }
        if !(self.api_url.starts_with("https://") || self.api_url.starts_with("http://")) {
            bad(
                "github.api_url",
                format!("{:?} is not an http(s) URL", self.api_url),
            );
        }
        match (&self.repo, &self.org) {
            (None, None) => bad(
                "github.repo",
                "set github.repo (\"owner/repo\") or github.org".into(),
            ),
            (Some(_), Some(_)) => bad(
                "github.repo",
                "set only one of github.repo and github.org".into(),
            ),
            (Some(r), None) => {
                if !r
                    .split_once('/')
                    .is_some_and(|(o, n)| safe_word(o) && safe_word(n))
                {
                    bad("github.repo", format!("must be \"owner/repo\", got {r:?}"));
                }
            }
            (None, Some(o)) => {
                if !safe_word(o) {
                    bad("github.org", format!("{o:?} is not an organisation name"));
                }
            }
        }
        secret_source_problems(
            "github",
            self.token_file.as_deref(),
            self.token_keychain.as_ref(),
            bad,
        );
        if !safe_word(&self.name_prefix) || self.name_prefix.len() > 20 {
            bad(
                "github.name_prefix",
                format!("{:?}: 1 to 20 of A-Z a-z 0-9 . _ -", self.name_prefix),
            );
        }
        for label in &self.labels_extra {
            if !safe_word(label) {
                bad(
                    "github.labels_extra",
                    format!("{label:?} is not a label (A-Z a-z 0-9 . _ -)"),
                );
            }
        }
        let jit_ok = self.jit_path.starts_with('/')
            && !self.jit_path.contains("..")
            && !self.jit_path.ends_with('/')
            && self
                .jit_path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
        if !jit_ok {
            bad(
                "github.jit_path",
                format!(
                    "{:?}: an absolute guest path of A-Z a-z 0-9 / . _ -",
                    self.jit_path
                ),
            );
        }
        if self.runner_group_id == 0 {
            bad("github.runner_group_id", "must be at least 1".into());
        }
        for (key, d) in [
            ("github.request_timeout", self.request_timeout),
            ("github.registration_timeout", self.registration_timeout),
        ] {
            if d.is_zero() {
                bad(key, "must be greater than zero".into());
            }
        }
    }
}

impl JenkinsSection {
    fn problems(&self, bad: &mut dyn FnMut(&str, String)) {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            bad(
                "jenkins.url",
                format!("{:?} is not an http(s) URL", self.url),
            );
        }
        if self.user.is_empty() {
            bad(
                "jenkins.user",
                "must name the user the API token belongs to".into(),
            );
        }
        secret_source_problems(
            "jenkins",
            self.token_file.as_deref(),
            self.token_keychain.as_ref(),
            bad,
        );
        if self.request_timeout.is_zero() {
            bad(
                "jenkins.request_timeout",
                "must be greater than zero".into(),
            );
        }
        for (vm, node) in &self.nodes {
            if node.is_empty() {
                bad(&format!("jenkins.nodes.{vm}"), "empty node name".into());
            }
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

/// Deserialize TOML text into `T` strictly: every key `T` does not know is returned (dotted
/// path) instead of being silently ignored, so a caller can report them all at once. A type
/// error stops deserialisation: toml's error (message and span) is returned. Shared by
/// `marbled.toml` and `marble-sim`'s trace files.
pub fn parse_strict<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<(T, Vec<String>), toml::de::Error> {
    let mut unknown = Vec::new();
    let deserializer = toml::Deserializer::new(text);
    let value = serde_ignored::deserialize(deserializer, |key| {
        // serde_ignored writes an `Option` layer (the optional sections) as a `?`
        // segment; the key a user must fix has none.
        let key = key.to_string();
        let key: Vec<&str> = key.split('.').filter(|s| *s != "?").collect();
        unknown.push(key.join("."));
    })?;
    Ok((value, unknown))
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
        let (config, unknown) =
            parse_strict::<Config>(text).map_err(|err| ConfigError::Syntax {
                path: path.to_owned(),
                message: err.to_string().trim().to_owned(),
            })?;
        let mut problems: Vec<ConfigProblem> = unknown
            .into_iter()
            .map(|key| ConfigProblem {
                key,
                message: "unknown key".into(),
            })
            .collect();
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

    /// Token files that cannot be used now (missing, not a file, readable by others): what
    /// `marbled check-config` reports beyond [`Config::problems`]. Not a reason to refuse the
    /// config: the daemon starts, reports the CI side unavailable and retries the file.
    pub fn secret_problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: String| {
            out.push(ConfigProblem {
                key: key.to_owned(),
                message,
            });
        };
        if let Some(github) = &self.github {
            secret_file_problems("github", github.token_file.as_deref(), &mut bad);
        }
        if let Some(jenkins) = &self.jenkins {
            secret_file_problems("jenkins", jenkins.token_file.as_deref(), &mut bad);
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
        if let Err(err) = self.images.validate() {
            bad("images", err.to_string());
        }
        if self.scheduler.quarantine_base > self.scheduler.quarantine_max {
            bad(
                "scheduler.quarantine_base",
                "must not exceed scheduler.quarantine_max".into(),
            );
        }
        if let Some(github) = &self.github {
            github.problems(&mut bad);
        }
        if let Some(jenkins) = &self.jenkins {
            jenkins.problems(&mut bad);
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
        out.extend(self.host.problems());
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
            // The watchdog needs GitHub (runners) and a demand source (queued jobs).
            runner_watchdog_ms: match (&self.github, &self.demand) {
                (Some(github), Some(_)) => ms(github.registration_timeout),
                _ => 0,
            },
            warm: s.warm.clone(),
            warm_window_ms: ms(s.warm_window),
            warm_min_jobs: s.warm_min_jobs,
            warm_yield_ms: ms(s.warm_yield),
            warm_linger_ms: ms(s.warm_linger),
            share_root: s.share_root,
            share_spi: s.share_spi,
            max_consecutive: s.max_consecutive,
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
             # images.state_dir, images.build_disk, images.bundles_dir (default ~/Parallels);\n\
             # images.ca_file = \"/usr/local/etc/marble/s3-ca.pem\" (PEM CAs added to the OS roots);\n\
             # host.build_disk (default images.build_disk, else ~/Parallels/build_drive.hdd).\n\
             # See docs/IMAGES.md.\n\
             #\n\
             # Optional sections (absent = feature off; see docs/CI.md):\n\
             # [github]      # JIT runners for ROOT VMs; delete-before-stop gate\n\
             # repo = \"root-project/root\"      # or org = \"root-project\"\n\
             # token_file = \"/usr/local/etc/marble/github-token\"   # mode 0600 (preferred); or\n\
             # # token_keychain = {{ service = \"marble-github\", account = \"marbled\" }}  # locked under launchd until a console login\n\
             # api_url = \"https://api.github.com\"\n\
             # runner_group_id = 1\n\
             # name_prefix = \"marble\"\n\
             # labels_extra = []\n\
             # jit_path = \"/var/run/marble/jitconfig\"\n\
             # work_folder = \"_work\"\n\
             # request_timeout = \"30s\"\n\
             # registration_timeout = \"15m\"\n\
             # [jenkins]     # SPI node state\n\
             # url = \"https://lcgapp-services.cern.ch/spi-jenkins\"\n\
             # user = \"marble-bot\"\n\
             # token_file = \"/usr/local/etc/marble/jenkins-token\"  # mode 0600; or token_keychain\n\
             # request_timeout = \"20s\"\n\
             # nodes = {{ \"macphsft01-SPI-VM-macOS-14\" = \"macphsft01-spi-14\" }}  # default: node = VM name\n\
             # [demand]      # poll CI for policy demand (see docs/OPERATIONS.md)\n\
             # interval = \"30s\"\n\
             # watch = \"5s\"                    # while the host is free: new queued runs (304s cost no quota)\n\
             # github = true                   # queued jobs + free fleet runners via [github]\n\
             # jenkins = true                  # buildable queue items via [jenkins] (metrics)\n\
             # repos = []                      # default: github.repo; required with github.org\n\
             # max_runs = 50\n\
             # max_age = \"10m\"\n\
             # [fleet]       # heartbeat object in the [images] bucket; marblectl fleet ls\n\
             # interval = \"1m\"\n\
             # prefix = \"fleet/\"\n\
             # [metrics]     # Prometheus textfile for node_exporter\n\
             # textfile = \"/usr/local/var/node_exporter/textfile/marble.prom\"\n\
             # interval = \"30s\"\n\n{body}"
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
        "demand" => Some(Policy::Demand),
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

    fn secret_file(dir: &Path, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("token");
        std::fs::write(&p, "ghp_x\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn github_and_jenkins_sections_are_optional_and_parse() {
        let none = parse("").unwrap();
        assert_eq!((none.github, none.jenkins), (None, None));
        let dir = tempfile::tempdir().unwrap();
        let token = secret_file(dir.path(), 0o600);
        let text = format!(
            "[github]\nrepo = \"root-project/root\"\ntoken_file = \"{t}\"\nlabels_extra = [\"xl\"]\n\
             request_timeout = \"5s\"\n[jenkins]\nurl = \"https://j.example\"\nuser = \"bot\"\n\
             token_file = \"{t}\"\n[jenkins.nodes]\n\"h-SPI-VM-macOS-14\" = \"spi14\"\n",
            t = token.display()
        );
        let c = parse(&text).unwrap();
        let g = c.github.clone().unwrap();
        assert_eq!(g.repo.as_deref(), Some("root-project/root"));
        assert_eq!(g.labels_extra, ["xl"]);
        assert_eq!(g.request_timeout, Duration::from_secs(5));
        assert_eq!(g.jit_path, "/var/run/marble/jitconfig");
        let j = c.jenkins.clone().unwrap();
        assert_eq!(j.node_for("h-SPI-VM-macOS-14"), "spi14");
        assert_eq!(j.node_for("other"), "other");
        // What the test harness writes (toml::to_string of the config) parses back the same.
        assert_eq!(parse(&toml::to_string(&c).unwrap()).unwrap(), c);
    }

    #[test]
    fn github_validation_names_each_key_and_never_takes_a_secret_inline() {
        let dir = tempfile::tempdir().unwrap();
        let open = secret_file(dir.path(), 0o644);
        let err = parse(&format!(
            "[github]\nrepo = \"root\"\ntoken_file = \"{}\"\nname_prefix = \"a b\"\n\
             labels_extra = [\"ok\", \"no;\"]\njit_path = \"tmp/x\"\ntoken = \"ghp_inline\"\n",
            open.display()
        ))
        .expect_err("invalid");
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("wrong error {err:?}")
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "github.token",
                "github.repo",
                "github.name_prefix",
                "github.labels_extra",
                "github.jit_path"
            ],
            "{problems:?}"
        );
        // A token file readable by others does not make the config invalid (the daemon
        // starts and waits for the file to be fixed); `check-config` still names it.
        let text = format!(
            "[github]\nrepo = \"o/r\"\ntoken_file = \"{}\"\n",
            open.display()
        );
        let config = parse(&text).expect("valid apart from the file's mode");
        let problems = config.secret_problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "github.token_file");
        assert!(problems[0].message.contains("chmod 600"), "{problems:?}");
        let missing = parse("[github]\nrepo = \"o/r\"\ntoken_file = \"/nonexistent/t\"\n")
            .expect("a missing file is not a config error");
        assert!(missing.secret_problems()[0].message.contains("cannot read"));
        let relative = parse("[github]\nrepo = \"o/r\"\ntoken_file = \"t\"\n")
            .expect_err("a relative path is");
        assert!(
            relative.to_string().contains("must be an absolute path"),
            "{relative}"
        );
        let err = parse("[github]\norg = \"x\"\n").expect_err("no token");
        assert!(
            err.to_string()
                .contains("github.token_file: set github.token_file"),
            "{err}"
        );
        let err = parse("[jenkins]\nurl = \"ftp://x\"\n").expect_err("bad jenkins");
        let msg = err.to_string();
        for key in ["jenkins.url", "jenkins.user", "jenkins.token_file"] {
            assert!(msg.contains(key), "{key} missing: {msg}");
        }
    }

    #[test]
    fn bad_team_override_names_the_vm() {
        let err = parse("[teams.overrides]\n\"host-X\" = \"blue\"\n").expect_err("bad team");
        assert!(err.to_string().contains("teams.overrides.host-X"), "{err}");
    }
}
