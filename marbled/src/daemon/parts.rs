//! What the daemon builds from a [`Config`], at start and again at each reload (SIGHUP):
//! [`Parts`]. One constructor for both, so a reload rebuilds exactly what a start builds,
//! and keeps what is not reloadable from the running parts.
//!
//! Kept across a reload: the host name, the state file's store, the socket group, the
//! `[github]` token when its source is unchanged (read again at once), the runner records,
//! and the runner lifecycle itself when the new `[github]` cannot be used. Rebuilt: the
//! hypervisor adapter (prlctl settings), the job context (probes, teams, `[images]`,
//! `[jenkins]`), the access policy's admin users, the `[fleet]` reader.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::DaemonError;
use crate::hypervisor::{Hypervisor, Prlctl, PrlctlConfig};
use crate::jobs::{JobContext, ci, s3};
use crate::peer::AccessPolicy;
use crate::socket::resolve_group;
use crate::store::Store;

/// Everything the daemon runs with that comes from the config.
#[derive(Debug)]
pub struct Parts {
    /// The short host name: `status`, VM names, heartbeats, runner names (not reloadable).
    pub host: String,
    /// The state file (not reloadable).
    pub store: Store,
    /// The socket's group, for the access policy (not reloadable: the socket is bound).
    gid: Option<nix::unistd::Gid>,
    /// What jobs run with, the runner lifecycle included.
    pub ctx: JobContext,
    /// The `[github]` token and runner records, kept across reloads.
    github: ci::Github,
    /// The `[fleet]` reader for `FleetList` and the heartbeat (a side-task input).
    pub fleet: s3::Fleet,
}

impl Parts {
    /// Build the parts for `config`. `previous` (the running parts, on a reload) gives what
    /// is not reloadable; without it this is a start, where an unusable `[github]` is an
    /// error; on a reload the previous runner lifecycle is kept instead (ROOT VMs must not
    /// lose their runners, nor their stops the delete-before-stop gate). `shutdown` parents
    /// the token's retry task.
    pub async fn from_config(
        config: &Config,
        previous: Option<&Parts>,
        shutdown: &CancellationToken,
    ) -> Result<Parts, DaemonError> {
        let (host, store, gid) = match previous {
            Some(p) => (p.host.clone(), p.store.clone(), p.gid),
            None => (
                host_name(config),
                Store::new(&config.daemon.state_file),
                resolve_group(&config.daemon.socket_group)?,
            ),
        };
        let mut ctx = JobContext::from_config(config, hypervisor(config));
        let github = ci::Github::for_config(config, previous.map(|p| &p.github), shutdown).await;
        ctx.runners = match (github.runners(config, &host), previous) {
            (Ok(runners), _) => runners,
            (Err(err), None) => return Err(DaemonError::Config(err)),
            (Err(err), Some(previous)) => {
                tracing::error!(error = %crate::chain::ErrorChain(&err), "[github] of the new config unusable; keeping the previous one");
                previous.ctx.runners.clone()
            }
        };
        if ci::ENABLED
            && previous.is_none()
            && let Some(github) = &config.github
        {
            tracing::info!(api = %github.api_url, repo = ?github.repo, org = ?github.org, "github runner lifecycle enabled for ROOT VMs");
        }
        Ok(Parts {
            host,
            store,
            gid,
            ctx,
            github,
            fleet: s3::fleet(config),
        })
    }

    /// Who may do what on the socket under `config`'s admin users.
    pub fn access_policy(&self, config: &Config) -> AccessPolicy {
        AccessPolicy::new(self.gid, config.daemon.admin_users.clone())
    }
}

/// Build the production hypervisor adapter from config.
pub fn hypervisor(config: &Config) -> Arc<dyn Hypervisor> {
    let p = &config.prlctl;
    let defaults = PrlctlConfig::default();
    let mut env = defaults.env.clone();
    env.extend(p.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Arc::new(
        Prlctl::new(PrlctlConfig {
            path: p.path.clone(),
            default_timeout: p.timeout,
            start_timeout: p.start_timeout,
            stop_timeout: p.stop_timeout,
            max_concurrent: usize::try_from(p.max_concurrent).unwrap_or(1).max(1),
            max_exec_per_vm: usize::try_from(p.max_exec_per_vm).unwrap_or(1).max(1),
            env,
            ..defaults
        })
        // One log per state file for the whole process: a reload's new adapter shares it.
        .with_intent_log(crate::hypervisor::prlctl::IntentLog::shared(
            &crate::hypervisor::prlctl::intent_log_path(&config.daemon.state_file),
        )),
    )
}

/// The environment of Parallels' helper tools (`prlsrvctl`): cleared like prlctl's, then
/// prlctl's defaults and `prlctl.env`.
pub fn tool_env(config: &Config) -> Vec<(String, String)> {
    let mut env = PrlctlConfig::default_env();
    env.extend(
        config
            .prlctl
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    env
}

/// The host name to report and to build names from (`<host>-…` VM names, fleet heartbeats,
/// runner names): configured, else the system's, in both cases the short name before the
/// first dot — `gethostname` returns `macphsft01.cern.ch` on CERN hosts, and the seed's names
/// (`macphsft01-ROOT-VM-macOS-15`) use `macphsft01`.
pub fn host_name(config: &Config) -> String {
    let full = if config.daemon.host_name.is_empty() {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default()
    } else {
        config.daemon.host_name.clone()
    };
    match full.split('.').next() {
        Some(short) if !short.is_empty() => short.to_owned(),
        _ => "unknown-host".into(),
    }
}

#[cfg(test)]
mod host_name_tests {
    use super::*;

    #[test]
    fn the_host_name_is_the_short_name_before_the_first_dot() {
        let mut config = Config::default();
        config.daemon.host_name = "macphsft01.cern.ch".into();
        assert_eq!(host_name(&config), "macphsft01");
        config.daemon.host_name = "macphsft01".into();
        assert_eq!(host_name(&config), "macphsft01");
        // The system's name (what gethostname returns on a CERN host) is shortened the same way.
        config.daemon.host_name = String::new();
        let system = host_name(&config);
        assert!(!system.is_empty() && !system.contains('.'), "{system:?}");
    }
}
