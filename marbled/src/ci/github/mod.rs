//! GitHub (feature `ci`, `[github]` configured): everything MARBLE does with GitHub, built
//! from the config here.
//!
//! - [`types`] and [`client`]: the runner API's wire types and the REST client (JIT configs,
//!   runner listings with ETags, deletes; rate-limit accounting);
//! - [`token`]: the `[github]` credentials (a token, or a GitHub App), loaded and retried
//!   while their source fails; [`app`] and [`jwt`]: GitHub App authentication (the App's
//!   RS256 JWT, installation tokens minted with it and refreshed before they expire);
//! - [`runner`]: labels, names, minting, delivery into the guest and the delete-before-stop
//!   gate, as plain functions;
//! - [`lifecycle`] (with [`records`] and [`macos`]): the ROOT runner per boot as the
//!   daemon's jobs run it;
//! - [`demand`] and [`offline`]: the demand signal (queued jobs, fleet runners) and the
//!   rules for offline registrations;
//! - [`install`]: the in-guest runner's install steps.

pub mod app;
pub mod client;
pub mod demand;
pub mod install;
pub mod jwt;
pub mod lifecycle;
pub mod macos;
pub mod offline;
pub mod records;
pub mod releases;
pub mod runner;
pub mod token;
pub mod types;
pub mod versions;

pub use client::{ACCEPT, API_VERSION, GitHubClient, PER_PAGE};
pub use demand::{FleetView, GithubDemand, PollStats, QUOTA_RESERVE};
pub use lifecycle::{RunnerError, RunnerLifecycle};
pub use macos::{macos_from_name, macos_version, macos_without_guest};
pub use records::{RunnerRecord, RunnerRecords};
pub use runner::{
    DEFAULT_JIT_PATH, DeliverError, GitHubBusy, StopGate, before_stop, deliver_jit, github_busy,
    labels_match, mint_jit, runner_name,
};
pub use token::{Credentials, GithubToken};
pub use types::{
    CachedPage, DEFAULT_API_URL, DeleteOutcome, GitHubConfig, GitHubError, JitConfig, RateLimit,
    Runner, RunnerLabel, RunnerScope, client_config,
};
