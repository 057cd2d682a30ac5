//! `marbled.toml`: the typed configuration, every section type with its defaults (each
//! section's `Default` impl, in the file of its concern), loading, and validation. This
//! layer imports nothing of `marbled` but the layer-0 leaves: the scheduler, adapters and
//! tasks take their section from here.
//!
//! Files: [`daemon`] (`[daemon]`, `[prlctl]`), [`teams`] (`[teams]`, `[probe]`),
//! [`scheduler`] (`[scheduler]`, policy words, warm targets), [`host`] (`[host]`),
//! [`images`] (`[images]`), [`labels`] (`[labels]`), [`ci`] (`[github]`, `[jenkins]`, token sources), [`periodic`]
//! (`[demand]`, `[fleet]`, `[metrics]`), `validate` (the whole-file checks), [`strict`]
//! (the strict TOML loader, shared with other TOML files).
//!
//! Loading reports *every* problem at once, each naming its key: unknown keys are collected
//! with `serde_ignored` (so a typo'd key is never silently ignored, and two typos give two
//! errors), type errors (a string where a number belongs) are stepped over one by one, each
//! with its key and line ([`strict`]), then semantic checks run over the whole value.
//! `check-config` adds the secret files' checks (existence, owner, mode).
//!
//! Secrets never live here: the file names where credentials are (a 0600 file, the
//! Keychain, the AWS chain), never the credentials themselves.

pub mod ci;
pub mod daemon;
pub mod host;
#[cfg(feature = "s3")]
pub mod images;
pub mod labels;
pub mod periodic;
pub mod scheduler;
pub mod strict;
pub mod teams;
mod validate;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use ci::{GithubSection, JenkinsSection, KeychainItem};
pub use daemon::{DaemonSection, PrlctlSection};
pub use host::{HostSection, valid_user};
#[cfg(feature = "s3")]
pub use images::{ChecksumMode, CredentialSource, ImageStoreConfig, ScrubConfig, VerifyAfterPush};
pub use labels::{LabelRule, LabelsSection};
pub use periodic::{DemandSection, FleetSection, MetricsSection};
pub use scheduler::{Policy, SchedulerSection, WarmTarget};
pub use strict::{
    ConfigProblem, StrictError, from_str_checked, from_str_collect, from_str_strict,
    render_problems,
};
pub use teams::{ProbeSection, TeamsSection, parse_team};

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
    pub host: HostSection,
    /// Runner labels of ROOT VMs beyond their names: architecture, per-VM rules.
    #[serde(skip_serializing_if = "LabelsSection::is_default")]
    pub labels: LabelsSection,
    /// VM images in S3 (`marblectl image …`): endpoint, bucket, credentials, transfer tuning,
    /// scrub list. See docs/IMAGES.md.
    #[cfg(feature = "s3")]
    pub images: ImageStoreConfig,
    /// GitHub JIT runners for ROOT VMs (absent: no runner lifecycle). See docs/CI.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github: Option<GithubSection>,
    /// Jenkins node state for SPI VMs (absent: the guest probe alone). See docs/CI.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jenkins: Option<JenkinsSection>,
    /// Demand sources polled for policy `demand` (absent: none). See docs/OPERATIONS.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demand: Option<DemandSection>,
    /// Fleet heartbeat in the `[images]` bucket (absent: none; `fleet ls` refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetSection>,
    /// node_exporter textfile (absent: metrics only through `marblectl metrics`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSection>,
}

/// What `marbled check-config` found ([`Config::check_file`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// Problems that make `marbled run` refuse the config (exit 78).
    pub problems: Vec<ConfigProblem>,
    /// Secret files that cannot be used now (the daemon would run without what needs them).
    pub secrets: Vec<ConfigProblem>,
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

impl crate::chain::WireKind for ConfigError {
    /// Every config failure, an unreadable file included, is the operator's to fix: exit
    /// 78 (EX_CONFIG) from `marbled run` and `check-config`.
    fn kind(&self) -> marble_proto::ErrorKind {
        marble_proto::ErrorKind::InvalidRequest
    }
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
        strict::from_str_checked(text, path, Config::problems).map_err(|err| match err {
            // toml's message names the key and line; the key found from the position is
            // left out, as `check-config` always printed it.
            StrictError::Syntax { path, message, .. } => ConfigError::Syntax { path, message },
            StrictError::Invalid { path, problems } => ConfigError::Invalid { path, problems },
        })
    }

    /// What `marbled check-config` reports about `path`: every problem of the config
    /// (unknown keys and type errors, each with its line, then the semantic checks) and every
    /// secret file problem ([`Config::secret_problems`]; also when the config has type
    /// errors, on the entries that parsed). `Err` only when the file cannot be read or is not
    /// TOML.
    pub fn check_file(path: &Path) -> Result<FileCheck, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (config, mut problems) = match strict::from_str_collect::<Config>(&text, path) {
            Ok(found) => found,
            Err(StrictError::Syntax { path, message, .. }) => {
                return Err(ConfigError::Syntax { path, message });
            }
            // A type error the loader cannot step over: no value to check further.
            Err(StrictError::Invalid { problems, .. }) => {
                return Ok(FileCheck {
                    problems,
                    secrets: Vec::new(),
                });
            }
        };
        problems.extend(config.problems());
        Ok(FileCheck {
            problems,
            secrets: config.secret_problems(),
        })
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
             # Runner labels of ROOT VMs beyond their names (optional; docs/OPERATIONS.md, \"Runner labels\"):\n\
             # [labels]\n\
             # arch = \"ARM64\"                  # default: this build's architecture (aarch64 ARM64, x86_64 X64)\n\
             # [[labels.vms]]                  # rules in file order, each for the VMs its glob matches\n\
             # name = \"*-ROOT-VM-macOS-14\"\n\
             # add = [\"X64\"]                   # and/or replace = [\"self-hosted\", \"macOS\", \"X64\", \"mac14\"]\n\
             #\n\
             # Optional sections (absent = feature off; see docs/CI.md):\n\
             # [github]      # JIT runners for ROOT VMs; delete-before-stop gate\n\
             # repo = \"root-project/root\"      # or org = \"root-project\"\n\
             # token_file = \"/usr/local/etc/marble/github-token\"   # mode 0600 (preferred); or\n\
             # # token_keychain = {{ service = \"marble-github\", account = \"marbled\" }}  # locked under launchd until a console login\n\
             # # app_id = 123456            # or a GitHub App (docs/CI.md) instead of a token:\n\
             # # app_key_file = \"/usr/local/etc/marble/github-app.pem\"  # its private key, mode 0600\n\
             # # installation_id = 12345678  # default: asked of GitHub\n\
             # api_url = \"https://api.github.com\"\n\
             # runner_group_id = 1\n\
             # name_prefix = \"marble\"\n\
             # labels_extra = []               # added to every ROOT VM's labels (the scheduler's too)\n\
             # jit_path = \"/var/run/marble/jitconfig\"\n\
             # work_folder = \"_work\"\n\
             # request_timeout = \"30s\"\n\
             # registration_timeout = \"15m\"\n\
             # runner_version = \"latest\"        # what `marblectl runner install|upgrade` installs (or \"2.330.0\")\n\
             # runner_cache = \"/usr/local/var/marble/runner-cache\"\n\
             # release_check_interval = \"6h\"\n\
             # [jenkins]     # SPI node state\n\
             # url = \"https://lcgapp-services.cern.ch/spi-jenkins\"\n\
             # user = \"marble-bot\"\n\
             # token_file = \"/usr/local/etc/marble/jenkins-token\"  # mode 0600; or token_keychain\n\
             # request_timeout = \"20s\"\n\
             # nodes = {{ \"macphsft01-SPI-VM-macOS-14\" = \"macphsft01-spi-14\" }}  # default: node = VM name\n\
             # labels = []                     # labels all SPI nodes here carry (builds for any node: fair share)\n\
             # [demand]      # poll CI for policy demand (see docs/OPERATIONS.md)\n\
             # interval = \"30s\"\n\
             # watch = \"5s\"                    # while the host is free: new queued runs (304s cost no quota)\n\
             # github = true                   # queued jobs + free fleet runners via [github]\n\
             # jenkins = true                  # buildable queue items via [jenkins] (metrics, fair share)\n\
             # repos = []                      # default: github.repo; required with github.org\n\
             # max_runs = 50\n\
             # max_age = \"10m\"\n\
             # shared = false                  # one elected poller per fleet, via [fleet]'s bucket\n\
             # [fleet]       # heartbeat object in the [images] bucket; marblectl fleet ls\n\
             # interval = \"1m\"\n\
             # prefix = \"fleet/\"\n\
             # [metrics]     # Prometheus textfile for node_exporter\n\
             # textfile = \"/usr/local/var/node_exporter/textfile/marble.prom\"\n\
             # interval = \"30s\"\n\n{body}"
        )
    }
}
