//! The GitHub runner API's configuration and wire types: the `[github]` client section
//! ([`GitHubConfig`], [`RunnerScope`]), runners and JIT configs as GitHub returns them, the
//! outcomes of a delete, the rate-limit state, and [`GitHubError`] (which never carries the
//! token or a JIT config). No I/O: the calls are [`super::client`]'s.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ci::http::HttpError;
use crate::ci::secret::{Secret, TokenSource, TokenUnavailable};
use crate::config::GithubSection;

/// Default API base URL.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// Where runners are registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum RunnerScope {
    /// Repository runners, `"owner/repo"` (needs "Administration" on the repository).
    Repo(String),
    /// Organisation runners, `"org"` (needs "Self-hosted runners" on the organisation).
    Org(String),
}

impl RunnerScope {
    /// Path prefix of the runner endpoints, e.g. `/repos/root-project/root/actions/runners`.
    pub fn runners_path(&self) -> String {
        match self {
            RunnerScope::Repo(r) => format!("/repos/{r}/actions/runners"),
            RunnerScope::Org(o) => format!("/orgs/{o}/actions/runners"),
        }
    }

    /// The fine-grained permission an operation needs (§1.7), with the classic-PAT scope.
    pub fn permission(&self, write: bool) -> &'static str {
        match (self, write) {
            (RunnerScope::Repo(_), false) => {
                "repository permission \"Administration: read\" (classic PAT: repo scope)"
            }
            (RunnerScope::Repo(_), true) => {
                "repository permission \"Administration: write\" (classic PAT: repo scope)"
            }
            (RunnerScope::Org(_), false) => {
                "organization permission \"Self-hosted runners: read\" (classic PAT: admin:org)"
            }
            (RunnerScope::Org(_), true) => {
                "organization permission \"Self-hosted runners: write\" (classic PAT: admin:org)"
            }
        }
    }

    /// Check the shape (`owner/repo` or `org`, no slashes or spaces elsewhere).
    pub fn validate(&self) -> Result<(), String> {
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match self {
            RunnerScope::Repo(r) => match r.split_once('/') {
                Some((o, n)) if ok(o) && ok(n) => Ok(()),
                _ => Err(format!(
                    "github.scope.repo must be \"owner/repo\", got {r:?}"
                )),
            },
            RunnerScope::Org(o) if ok(o) => Ok(()),
            RunnerScope::Org(o) => Err(format!("github.scope.org is not an org name: {o:?}")),
        }
    }
}

fn default_api_url() -> String {
    DEFAULT_API_URL.to_owned()
}
fn default_group() -> u64 {
    1
}
fn default_work_folder() -> String {
    "_work".to_owned()
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_registration_timeout() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_jit_path() -> String {
    super::runner::DEFAULT_JIT_PATH.to_owned()
}

/// The `[github]` section of `marbled.toml`.
///
/// ```toml
/// [github]
/// scope = { repo = "root-project/root" }
/// token = { file = "/etc/marble/github-token" }   # mode 0600; or
/// # token = { keychain = { service = "marble-github", account = "marbled" } }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubConfig {
    /// API base URL (tests point it at the fake server).
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Repository or organisation.
    pub scope: RunnerScope,
    /// Where the token (with GitHub App authentication: the App's private key) is read from.
    pub token: TokenSource,
    /// Runner group (repository runners: 1, the Default group).
    #[serde(default = "default_group")]
    pub runner_group_id: u64,
    /// Runner work folder relative to the runner install dir.
    #[serde(default = "default_work_folder")]
    pub work_folder: String,
    /// Timeout of one API request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Registration watchdog: recycle a VM whose runner took no job within this time while
    /// matching jobs are queued.
    #[serde(default = "default_registration_timeout", with = "humantime_serde")]
    pub registration_timeout: Duration,
    /// Guest path the JIT config is delivered to (must match the in-guest script).
    #[serde(default = "default_jit_path")]
    pub jit_path: String,
}

/// A label of a runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerLabel {
    /// Label id.
    #[serde(default)]
    pub id: u64,
    /// Label name.
    pub name: String,
    /// `read-only` (automatic) or `custom`.
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// A page from [`super::GitHubClient::get_cached_page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPage {
    /// The page (from the cache when GitHub answered 304).
    pub body: Bytes,
    /// GitHub sent a new page (200) rather than confirming the cached one (304).
    pub changed: bool,
}

/// A runner object (§1.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    /// Runner id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// `macos`, `linux`, `unknown`…
    #[serde(default)]
    pub os: String,
    /// `online` or `offline`.
    #[serde(default)]
    pub status: String,
    /// Running a job.
    #[serde(default)]
    pub busy: bool,
    /// Group.
    #[serde(default)]
    pub runner_group_id: Option<u64>,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<RunnerLabel>,
}

impl Runner {
    /// Whether GitHub sees the runner connected.
    pub fn online(&self) -> bool {
        self.status == "online"
    }
}

/// A freshly minted JIT runner configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitConfig {
    /// The registered runner's id (persist it before starting the VM).
    pub runner_id: u64,
    /// The registered runner's name.
    pub runner_name: String,
    /// The base64 blob for `run.sh --jitconfig`; single use, a secret.
    pub encoded_jit_config: Secret,
}

/// Result of `DELETE …/runners/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// 204: the registration is gone.
    Deleted,
    /// 404: it was already gone (job done, expired, deleted by someone else).
    AlreadyGone,
    /// 422: GitHub refuses because the runner is running a job.
    RunnerBusy {
        /// GitHub's message.
        message: String,
    },
}

/// Rate-limit state last reported by GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimit {
    /// `x-ratelimit-remaining`.
    pub remaining: Option<u64>,
    /// `x-ratelimit-reset` (unix seconds).
    pub reset_epoch: Option<u64>,
    /// Until when (unix seconds) a `retry-after` asked us to wait.
    pub retry_after_until: Option<u64>,
    /// Requests this client made that count against the primary limit (every answer but a
    /// 304), since it was created.
    pub counted: u64,
}

/// GitHub client errors. None of them carries the token or a JIT config.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// No token is loaded (its source fails; the daemon retries it).
    #[error("github token unavailable")]
    Token(#[source] TokenUnavailable),
    /// Configuration is invalid.
    #[error("invalid github config: {0}")]
    Config(String),
    /// Transport failure.
    #[error("github {op} request failed")]
    Http {
        /// Operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: HttpError,
    },
    /// 401: the token is invalid, expired or revoked.
    #[error("github rejected the token for {op} (401: expired or revoked?): {message}")]
    Unauthorized {
        /// Operation.
        op: &'static str,
        /// GitHub's message.
        message: String,
    },
    /// 403 (not a rate limit): the token lacks a permission.
    #[error("github refused {op} (403): the token needs {needed}{}: {message}",
        accepted.as_deref().map(|a| format!(" (GitHub accepts: {a})")).unwrap_or_default())]
    Forbidden {
        /// Operation.
        op: &'static str,
        /// The permission this operation needs.
        needed: &'static str,
        /// `x-accepted-github-permissions`, when present.
        accepted: Option<String>,
        /// GitHub's message.
        message: String,
    },
    /// The rate limit is exhausted or GitHub asked us to back off; retry after the wait.
    #[error("github rate limit for {op}: retry in {retry_in:?}")]
    RateLimited {
        /// Operation.
        op: &'static str,
        /// How long to wait.
        retry_in: Duration,
    },
    /// 409 on generate-jitconfig: a runner with this name exists.
    #[error("github runner name {name:?} already exists")]
    NameTaken {
        /// The name.
        name: String,
    },
    /// 404 where the resource must exist (unknown repository, org or runner group).
    #[error("github {op}: not found (404): {message}")]
    NotFound {
        /// Operation.
        op: &'static str,
        /// GitHub's message.
        message: String,
    },
    /// Any other status.
    #[error("github {op}: unexpected status {status}: {message}")]
    Unexpected {
        /// Operation.
        op: &'static str,
        /// Status.
        status: u16,
        /// GitHub's message (or a body excerpt).
        message: String,
    },
    /// The body did not parse.
    #[error("github {op}: malformed response")]
    Decode {
        /// Operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The client config of a `[github]` section (scope and token source mapped).
pub fn client_config(section: &GithubSection) -> Result<GitHubConfig, GitHubError> {
    let scope = match (&section.repo, &section.org) {
        (Some(r), None) => RunnerScope::Repo(r.clone()),
        (None, Some(o)) => RunnerScope::Org(o.clone()),
        _ => {
            return Err(GitHubError::Config(
                "set exactly one of github.repo and github.org".into(),
            ));
        }
    };
    let token = match (&section.app_key_file, section.uses_app()) {
        (Some(key), true) => TokenSource::File(key.clone()),
        (None, true) => return Err(GitHubError::Config("set github.app_key_file".into())),
        (_, false) => TokenSource::from_section(
            "github",
            section.token_file.as_ref(),
            section.token_keychain.as_ref(),
        )
        .map_err(GitHubError::Config)?,
    };
    Ok(GitHubConfig {
        api_url: section.api_url.clone(),
        scope,
        token,
        runner_group_id: section.runner_group_id,
        work_folder: section.work_folder.clone(),
        request_timeout: section.request_timeout,
        registration_timeout: section.registration_timeout,
        jit_path: section.jit_path.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_paths_permissions_and_validation() {
        let r = RunnerScope::Repo("root-project/root".into());
        assert_eq!(r.runners_path(), "/repos/root-project/root/actions/runners");
        assert!(r.permission(true).contains("Administration: write"));
        let o = RunnerScope::Org("root-project".into());
        assert_eq!(o.runners_path(), "/orgs/root-project/actions/runners");
        assert!(o.permission(true).contains("Self-hosted runners: write"));
        assert!(r.validate().is_ok() && o.validate().is_ok());
        assert!(RunnerScope::Repo("root".into()).validate().is_err());
        assert!(RunnerScope::Org("a/b".into()).validate().is_err());
    }

    #[test]
    fn config_parses_with_defaults_and_rejects_unknown_fields() {
        let c: GitHubConfig = toml::from_str(
            "scope = { repo = \"root-project/root\" }\ntoken = { file = \"/etc/marble/gh\" }\n",
        )
        .unwrap();
        assert_eq!(c.api_url, DEFAULT_API_URL);
        assert_eq!(c.runner_group_id, 1);
        assert_eq!(c.jit_path, super::super::runner::DEFAULT_JIT_PATH);
        let k: GitHubConfig = toml::from_str(
            "scope = { org = \"x\" }\ntoken = { keychain = { service = \"s\", account = \"a\" } }\nrequest_timeout = \"10s\"\n",
        )
        .unwrap();
        assert_eq!(k.request_timeout, Duration::from_secs(10));
        assert!(
            toml::from_str::<GitHubConfig>(
                "scope = { org = \"x\" }\ntoken = { file = \"/t\" }\ntokn = 1\n"
            )
            .is_err()
        );
    }
}
