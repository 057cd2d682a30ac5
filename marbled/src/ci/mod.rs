//! CI front-ends (feature `ci`), one module tree per CI system, each built here from
//! [`crate::config::Config`] rather than in the daemon:
//!
//! - [`github`]: the GitHub runner API client, JIT runner registration per ROOT boot and the
//!   delete-before-stop gate, the demand signal (queued jobs, fleet runners), the
//!   offline-runner rules, the token that is loaded and retried, and the in-guest runner
//!   install steps;
//! - [`jenkins`]: the Jenkins node API client, the build-queue demand signal and the SPI
//!   node busy signal;
//! - shared: the HTTPS transport ([`http`]: reqwest over rustls/aws-lc, bounded retries)
//!   and secrets ([`secret`]).
//!
//! See `docs/CI.md` for the whole flow.

pub mod github;
pub mod http;
pub mod jenkins;
pub mod secret;

pub use github::install::{
    GUEST_LABEL, GUEST_PLIST, GUEST_PLIST_PATH, GUEST_SCRIPT, GUEST_SCRIPT_PATH, InstallError,
    runner_install_steps,
};
pub use github::{
    DEFAULT_JIT_PATH, DeleteOutcome, DeliverError, GitHubBusy, GitHubClient, GitHubConfig,
    GitHubError, JitConfig, RateLimit, Runner, RunnerScope, StopGate, before_stop, deliver_jit,
    github_busy, labels_match, mint_jit, runner_name,
};
pub use jenkins::{
    JenkinsBusy, JenkinsClient, JenkinsConfig, JenkinsError, NodeState, QueueItem, ToggleOutcome,
    busy_signal,
};
pub use secret::{Secret, SecretError, TokenCell, TokenSource, TokenStatus, TokenUnavailable};
