//! The ROOT runner lifecycle as the daemon's jobs run it (feature `ci`, `[github]`
//! configured): at each boot mint a JIT runner config — before `prlctl start` when the VM's
//! macOS version is known without the guest, so the booting runner is already in GitHub's
//! runner list for the fleet's demand de-duplication, else at readiness — and deliver it into
//! the guest once it answers; before each stop delete the runner registration, and keep the
//! VM up if GitHub refuses because a job is running. See docs/CI.md.
//!
//! Owns the per-VM runner records (which registration belongs to which VM). They live in
//! memory only, shared by every job and kept across config reloads; after a daemon restart
//! a VM's registrations are found again by name (`<prefix>-<host>-<vm>-<boot>`). It does not
//! decide when a VM starts or stops (the scheduler does) and holds no scheduler state. The
//! GitHub calls and the guest delivery are [`crate::ci`]'s; nothing here logs a secret.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::client::GitHubClient;
use super::macos::runner_labels;
use super::records::{Known, RunnerRecord, RunnerRecords};
use super::releases::RunnerSetup;
use super::runner::{DeliverError, StopGate, before_stop, deliver_jit, mint_jit};
use super::token::{Credentials, GithubToken};
use super::types::{GitHubError, JitConfig, RunnerScope, client_config};
use super::versions::RunnerVersions;
use crate::ci::secret::TokenStatus;
use crate::config::{Config, ConfigError, ConfigProblem, GithubSection};
use crate::hypervisor::Hypervisor;
use crate::sched::{LabelMap, host_arch_label};

/// Why a ROOT VM could not be given its runner config.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The macOS version (for the `macNN` label) could not be found.
    #[error(
        "cannot tell the macOS version of vm {vm} for its runner labels: the name has no \
         `macOS-NN` and {why}"
    )]
    MacosVersion {
        /// VM.
        vm: String,
        /// What the other sources said.
        why: String,
    },
    /// GitHub refused or could not be reached.
    #[error("GitHub: {what} for vm {vm} failed")]
    GitHub {
        /// VM.
        vm: String,
        /// What was attempted.
        what: &'static str,
        /// Cause.
        #[source]
        source: GitHubError,
    },
    /// A GitHub call did not answer in time.
    #[error("GitHub: {what} for vm {vm} did not answer within {after:?}")]
    Timeout {
        /// VM.
        vm: String,
        /// What was attempted.
        what: &'static str,
        /// The time left.
        after: Duration,
    },
    /// A previous registration of this VM is running a job although its runner is not up.
    #[error("GitHub: runner {name} of vm {vm} from an earlier boot is still running a job")]
    StaleBusy {
        /// VM.
        vm: String,
        /// The runner's name.
        name: String,
    },
    /// The config could not be written into the guest.
    #[error("delivering the runner config into vm {vm} failed")]
    Deliver {
        /// VM.
        vm: String,
        /// Cause.
        #[source]
        source: DeliverError,
    },
}

/// The GitHub side of the ROOT lifecycle: client, naming and label settings, and records.
#[derive(Debug)]
pub struct RunnerLifecycle {
    /// Shared with the demand poller (one rate-limit account, one ETag cache).
    github: Arc<GitHubClient>,
    host: String,
    prefix: String,
    /// The runner labels of each VM: the scheduler's mapping (`[labels]`, `labels_extra`).
    labels: LabelMap,
    runner_group_id: u64,
    work_folder: String,
    jit_path: String,
    /// Budget of the mint before `prlctl start` (GitHub slower than this delays the boot
    /// no further: the VM starts and readiness mints).
    pre_start_budget: Duration,
    records: RunnerRecords,
    /// Runner packages and versions (`runner install|upgrade`, the boot-time read).
    setup: RunnerSetup,
}

impl RunnerLifecycle {
    /// `host check`: the token works for the runner scope (lists the runners; a 401/403
    /// error names the permission the token lacks). Ok: how many runners are registered.
    pub async fn check_token(&self) -> Result<String, GitHubError> {
        let runners = self.github.list_runners().await?;
        let scope = match self.github.scope() {
            RunnerScope::Repo(r) => format!("repository {r}"),
            RunnerScope::Org(o) => format!("organization {o}"),
        };
        Ok(format!(
            "token valid for {scope}; {} runner(s) registered; minting needs {}",
            runners.len(),
            self.github.scope().permission(true)
        ))
    }

    /// The lifecycle for `config`'s `[github]` (None when the section or its token is
    /// absent) with the token `token` holds. `records` are shared with the previous
    /// lifecycle across config reloads. An unusable section (the scope, which validation
    /// checked already) is a config problem named by its key.
    pub fn for_config(
        config: &Config,
        host: &str,
        records: &RunnerRecords,
        token: Option<&GithubToken>,
    ) -> Result<Option<Arc<Self>>, ConfigError> {
        let (Some(section), Some(token)) = (&config.github, token) else {
            return Ok(None);
        };
        match Self::from_config(section, host, records.clone(), token.credentials.clone()) {
            Ok(mut lifecycle) => {
                lifecycle.setup.ci_user.clone_from(&config.host.ci_user);
                lifecycle.labels = LabelMap::from_config(config);
                Ok(Some(Arc::new(lifecycle)))
            }
            Err(err) => Err(ConfigError::Invalid {
                path: "[github]".into(),
                problems: vec![ConfigProblem {
                    key: "github".into(),
                    message: crate::chain::ErrorChain(&err).to_string(),
                }],
            }),
        }
    }

    /// Build from `[github]` with the token `token` holds (loaded, or retried until it is;
    /// GitHub calls fail meanwhile). `records` carries the runner records over from the
    /// previous config.
    pub fn from_config(
        section: &GithubSection,
        host: &str,
        records: RunnerRecords,
        credentials: Credentials,
    ) -> Result<Self, GitHubError> {
        let cfg = client_config(section)?;
        Ok(Self::with_client(
            GitHubClient::from_config(&cfg, credentials)?,
            section,
            host,
            records,
        ))
    }

    /// Build around an existing client (tests).
    pub fn with_client(
        github: GitHubClient,
        section: &GithubSection,
        host: &str,
        records: RunnerRecords,
    ) -> Self {
        Self {
            github: Arc::new(github),
            host: host.to_owned(),
            prefix: section.name_prefix.clone(),
            labels: LabelMap::new(
                &host_arch_label(),
                &section.labels_extra,
                &Default::default(),
            ),
            runner_group_id: section.runner_group_id,
            work_folder: section.work_folder.clone(),
            jit_path: section.jit_path.clone(),
            // A stale registration's delete plus the mint, each bounded by the client's
            // own per-call timeout.
            pre_start_budget: section.request_timeout.saturating_mul(2),
            records,
            setup: RunnerSetup::from_section(section),
        }
    }

    /// The runner's package and version settings.
    pub fn setup(&self) -> &RunnerSetup {
        &self.setup
    }

    /// The runner versions (shared across reloads with the records).
    pub fn versions(&self) -> &RunnerVersions {
        self.records.versions()
    }

    /// The GitHub client (the demand poller shares it).
    pub fn client(&self) -> Arc<GitHubClient> {
        Arc::clone(&self.github)
    }

    /// Whether the token is loaded, and why not (`status`, metrics).
    pub fn token_status(&self) -> TokenStatus {
        self.github.token_status()
    }

    /// The runner name prefix (`[github] name_prefix`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Delete `record`, a registration of `vm` that no boot will use (the VM is stopped and
    /// its runner offline): it would otherwise stand in GitHub's list for up to a day. A
    /// registration GitHub says is running a job is left alone; the records forget it once
    /// it is gone. Whether it is gone.
    pub async fn remove_stale(&self, vm: &str, record: &RunnerRecord) -> bool {
        match before_stop(&self.github, record.id).await {
            Ok(StopGate::Proceed) => {
                tracing::info!(
                    vm,
                    runner_id = record.id,
                    runner = %record.name,
                    "deleted a stale runner registration (offline, its vm not running)"
                );
                let mut map = self.records.lock();
                let recorded = match map.get(vm) {
                    Some(Known::Registered(r) | Known::Undelivered(Some(r))) => Some(r.id),
                    _ => None,
                };
                if recorded == Some(record.id) {
                    map.insert(vm.to_owned(), Known::Cleared);
                }
                true
            }
            Ok(StopGate::Busy(_)) => false,
            Err(err) => {
                tracing::warn!(
                    vm,
                    runner_id = record.id,
                    error = %crate::chain::ErrorChain(&err),
                    "could not delete a stale runner registration; retrying at the next poll"
                );
                false
            }
        }
    }

    /// The records (shared).
    pub fn records(&self) -> &RunnerRecords {
        &self.records
    }

    /// The runner name of `vm`'s boot `boot`: [`crate::ci::runner_name`] with the configured
    /// prefix in place of `marble`, at most [`super::runner::MAX_RUNNER_NAME`] long.
    pub fn name_for(&self, vm: &str, boot: u64) -> String {
        let base = super::runner::runner_name(&self.host, vm, boot);
        let rest = base.strip_prefix("marble-").unwrap_or(&base);
        let room = super::runner::MAX_RUNNER_NAME.saturating_sub(self.prefix.len() + 1);
        // `rest` is ASCII (runner_name replaces everything else), so byte slicing is safe;
        // like runner_name, keep the distinguishing tail.
        let rest = &rest[rest.len().saturating_sub(room)..];
        format!("{}-{rest}", self.prefix)
    }

    /// Whether `name` is a runner name this host gave `vm` (any boot).
    pub fn is_ours(&self, vm: &str, name: &str) -> bool {
        name.rsplit_once('-')
            .and_then(|(_, boot)| boot.parse::<u64>().ok())
            .is_some_and(|boot| self.name_for(vm, boot) == name)
    }

    /// The labels of `vm`'s runner: the scheduler's ([`LabelMap::for_registration`]), so
    /// GitHub gives this VM a job exactly when the scheduler would boot it for that job.
    pub fn labels(&self, vm: &str, major: Option<u32>) -> Option<Vec<String>> {
        self.labels.for_registration(vm, major)
    }

    /// Before `prlctl start` of `vm` (on macOS `major`): mint its JIT config now, so the
    /// booting runner is in GitHub's runner list (where other hosts' demand counts it as a
    /// free runner and does not boot for the same job), and keep the config in memory for
    /// readiness to deliver ([`Self::give_config`]). A registration left from an earlier boot
    /// is deleted first. `Err` leaves nothing registered for this boot: the caller starts
    /// the VM anyway and readiness mints (the VM stays stoppable without GitHub's word).
    pub async fn mint_before_start(
        &self,
        vm: &str,
        major: Option<u32>,
    ) -> Result<RunnerRecord, RunnerError> {
        let deadline = tokio::time::Instant::now() + self.pre_start_budget;
        let labels = self
            .labels(vm, major)
            .ok_or_else(|| RunnerError::MacosVersion {
                vm: vm.to_owned(),
                why: "the guest was not asked before the boot".into(),
            })?;
        let (record, jit) = self.mint(vm, labels, deadline, "before boot").await?;
        self.records.set(
            vm,
            Known::Minted {
                record: record.clone(),
                jit,
            },
        );
        Ok(record)
    }

    /// Readiness of a ROOT VM whose runner is not listening: deliver the config minted before
    /// the boot, or (none minted: the macOS version needed the guest, or the mint before the
    /// boot failed) mint one now and deliver it. The config goes out once.
    pub async fn give_config(
        &self,
        hv: &dyn Hypervisor,
        vm: &str,
        probe_timeout: Duration,
        deadline: tokio::time::Instant,
    ) -> Result<RunnerRecord, RunnerError> {
        let (record, jit) = match self.records.take_minted(vm) {
            // Now `Registered`: from here a delivery failing half-way may have reached the
            // guest, so the stop that follows failed readiness asks GitHub first.
            Some(minted) => minted,
            None => {
                let labels = runner_labels(&self.labels, hv, vm, probe_timeout).await?;
                let (record, jit) = self.mint(vm, labels, deadline, "at readiness").await?;
                // Recorded before delivery, for the same reason.
                self.records.set(vm, Known::Registered(record.clone()));
                (record, jit)
            }
        };
        deliver_jit(hv, vm, &jit, &self.jit_path)
            .await
            .map_err(|source| RunnerError::Deliver {
                vm: vm.to_owned(),
                source,
            })?;
        Ok(record)
    }

    /// Give up the config minted before `vm`'s boot without delivering it: its start failed,
    /// or its runner listens without it. Deletes the registration so it does not stand in
    /// GitHub's list as a free runner for a VM that will never run it; if GitHub does not
    /// answer, it is kept as one to delete at the VM's next stop or boot. No-op unless a
    /// config is held for `vm`.
    pub async fn discard_minted(&self, vm: &str) {
        if let Some(Known::Minted { record, .. }) = self.records.known(vm) {
            self.clean_up(vm, record).await;
        }
    }

    /// Mint a JIT config for `vm` with `labels`, deleting a registration left from an
    /// earlier boot first. Every GitHub call is bounded by `deadline`. Leaves the VM marked
    /// `Undelivered` (so a failure leaves it stoppable without GitHub); the caller records
    /// the new registration.
    async fn mint(
        &self,
        vm: &str,
        labels: Vec<String>,
        deadline: tokio::time::Instant,
        when: &'static str,
    ) -> Result<(RunnerRecord, JitConfig), RunnerError> {
        // Nothing of this boot has reached the guest: until a config goes out, nothing can
        // run in this VM (a failed mint leaves it stoppable even while GitHub is down).
        let stale = self.records.get(vm);
        self.records.set(vm, Known::Undelivered(stale.clone()));
        if let Some(stale) = stale {
            // That registration's config was never used or its boot is over: remove it so it
            // does not linger as an offline runner.
            let gate = bounded(vm, "deleting the previous runner", deadline, async {
                before_stop(&self.github, stale.id).await
            })
            .await?;
            if let StopGate::Busy(_) = gate {
                return Err(RunnerError::StaleBusy {
                    vm: vm.to_owned(),
                    name: stale.name,
                });
            }
            self.records.set(vm, Known::Undelivered(None));
        }
        let name = self.name_for(vm, boot_counter());
        let jit: JitConfig = bounded(vm, "minting a JIT runner config", deadline, async {
            mint_jit(
                &self.github,
                &name,
                &labels,
                self.runner_group_id,
                Some(&self.work_folder),
            )
            .await
        })
        .await?;
        let record = RunnerRecord {
            id: jit.runner_id,
            name: jit.runner_name.clone(),
        };
        tracing::info!(vm, runner_id = record.id, runner = %record.name, labels = ?labels, when, "registered jit runner");
        Ok((record, jit))
    }

    /// Delete a registration whose config never reached `vm`'s guest (nothing can run in the
    /// VM under it, so this is housekeeping, not a stop gate). Deleted or gone: `Cleared`;
    /// GitHub unreachable or refusing: kept (`Undelivered`) to delete at the next stop or
    /// boot, and logged — the held config, if any, is dropped either way.
    async fn clean_up(&self, vm: &str, record: RunnerRecord) {
        self.records
            .set(vm, Known::Undelivered(Some(record.clone())));
        match before_stop(&self.github, record.id).await {
            Ok(StopGate::Proceed) => self.records.set(vm, Known::Cleared),
            Ok(StopGate::Busy(_)) | Err(_) => tracing::warn!(
                vm,
                runner_id = record.id,
                runner = %record.name,
                "could not delete a runner registration whose config never reached the vm; \
                 retrying at its next stop or boot"
            ),
        }
    }

    /// The gate before stopping `vm`: delete its registration (the recorded one, or after a
    /// restart every registration of ours found by name). `Err` means "don't know": the
    /// caller keeps the VM up. A registration whose config never reached the guest (minted
    /// before the boot, or an earlier boot's) is deleted on the way without holding the stop.
    pub async fn before_stop(&self, vm: &str) -> Result<StopGate, GitHubError> {
        match self.records.known(vm) {
            Some(Known::Cleared | Known::Undelivered(None)) => {
                self.records.set(vm, Known::Cleared);
                Ok(StopGate::Proceed)
            }
            Some(Known::Minted { record, .. } | Known::Undelivered(Some(record))) => {
                // Housekeeping only: that registration's config is not in this boot of the
                // VM (minted for it but not delivered yet, or an earlier boot's).
                self.clean_up(vm, record).await;
                Ok(StopGate::Proceed)
            }
            Some(Known::Registered(record)) => {
                let gate = before_stop(&self.github, record.id).await?;
                match &gate {
                    StopGate::Proceed => self.records.set(vm, Known::Cleared),
                    StopGate::Busy(_) => {}
                }
                Ok(gate.map_busy(&record.name))
            }
            None => {
                // Not seen since this daemon started: look for registrations by name.
                let ours: Vec<_> = self
                    .github
                    .list_runners()
                    .await?
                    .into_iter()
                    .filter(|r| self.is_ours(vm, &r.name))
                    .collect();
                for runner in &ours {
                    let gate = before_stop(&self.github, runner.id).await?;
                    if let StopGate::Busy(_) = gate {
                        self.records.set(
                            vm,
                            Known::Registered(RunnerRecord {
                                id: runner.id,
                                name: runner.name.clone(),
                            }),
                        );
                        return Ok(gate.map_busy(&runner.name));
                    }
                }
                if !ours.is_empty() {
                    tracing::info!(
                        vm,
                        count = ours.len(),
                        "deleted runner registrations found by name"
                    );
                }
                self.records.set(vm, Known::Cleared);
                Ok(StopGate::Proceed)
            }
        }
    }
}

trait MapBusy {
    fn map_busy(self, name: &str) -> Self;
}

impl MapBusy for StopGate {
    /// The busy reason as the scheduler shows it: which runner, and that GitHub said so.
    fn map_busy(self, name: &str) -> Self {
        match self {
            StopGate::Busy(_) => StopGate::Busy(format!("GitHub: runner {name} is running a job")),
            other => other,
        }
    }
}

/// Run a GitHub call with what is left until `deadline`.
async fn bounded<T>(
    vm: &str,
    what: &'static str,
    deadline: tokio::time::Instant,
    call: impl std::future::Future<Output = Result<T, GitHubError>>,
) -> Result<T, RunnerError> {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    match tokio::time::timeout(left, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(RunnerError::GitHub {
            vm: vm.to_owned(),
            what,
            source,
        }),
        Err(_) => Err(RunnerError::Timeout {
            vm: vm.to_owned(),
            what,
            after: left,
        }),
    }
}

/// A per-boot counter that needs no persistence: unix seconds (boots of one VM are far
/// more than a second apart; a clash would answer 409, which `mint_jit` recovers from).
fn boot_counter() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::ci::Secret;

    const VM: &str = "macphsft01-ROOT-VM-macOS-14";
    const JIT: &str = "JIT-CONFIG-SECRET-0123456789";

    fn lifecycle(prefix: &str) -> RunnerLifecycle {
        lifecycle_at("http://127.0.0.1:9", prefix)
    }

    fn lifecycle_at(api_url: &str, prefix: &str) -> RunnerLifecycle {
        let section = GithubSection {
            name_prefix: prefix.into(),
            labels_extra: vec!["mac14-xl".into(), "macos".into()],
            request_timeout: Duration::from_secs(5),
            ..GithubSection::default()
        };
        let client = GitHubClient::new(
            api_url,
            RunnerScope::Repo("o/r".into()),
            Secret::new("ghp_TOKEN"),
            Duration::from_secs(5),
        );
        RunnerLifecycle::with_client(
            client,
            &section,
            "macphsft01.cern.ch",
            RunnerRecords::default(),
        )
    }

    /// A GitHub on loopback that answers a mint with runner 42 and every DELETE with 204,
    /// one request per connection, and records `METHOD path` of each request.
    async fn github_answering() -> (String, Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // The head, then the body its content-length announces.
                let complete = |buf: &[u8]| {
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    (buf.len() >= end + 4 + len).then_some(end)
                };
                while complete(&buf).is_none() {
                    let n = sock.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "request cut short");
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let mut words = head.split_whitespace();
                let (method, path) = (words.next().unwrap(), words.next().unwrap());
                log.lock().unwrap().push(format!("{method} {path}"));
                let (status, body) = match method {
                    "POST" => (
                        "201 Created",
                        format!(
                            r#"{{"runner":{{"id":42,"name":"r42"}},"encoded_jit_config":"{JIT}"}}"#
                        ),
                    ),
                    "DELETE" => ("204 No Content", String::new()),
                    _ => ("200 OK", r#"{"total_count":0,"runners":[]}"#.to_owned()),
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                sock.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        (url, seen)
    }

    fn minted(id: u64) -> Known {
        Known::Minted {
            record: RunnerRecord {
                id,
                name: format!("r{id}"),
            },
            jit: JitConfig {
                runner_id: id,
                runner_name: format!("r{id}"),
                encoded_jit_config: Secret::new(JIT),
            },
        }
    }

    #[test]
    fn names_carry_the_prefix_stay_bounded_and_are_recognised_after_a_restart() {
        let l = lifecycle("marble");
        let vm = "macphsft01-ROOT-VM-macOS-14";
        let name = l.name_for(vm, 1_764_000_000);
        assert_eq!(
            name,
            crate::ci::github::runner::runner_name("macphsft01.cern.ch", vm, 1_764_000_000)
        );
        assert!(l.is_ours(vm, &name));
        assert!(!l.is_ours("macphsft01-ROOT-VM-macOS-15", &name));
        assert!(!l.is_ours(vm, "marble-macphsft01-macphsft01-ROOT-VM-macOS-14-x"));
        let long = lifecycle("ci-runner-of-cern-xx");
        let name = long.name_for(&"v".repeat(100), 1_764_000_000);
        assert!(
            name.len() <= crate::ci::github::runner::MAX_RUNNER_NAME,
            "{name}"
        );
        assert!(name.starts_with("ci-runner-of-cern-xx-"), "{name}");
        assert!(name.ends_with("-1764000000"), "{name}");
        assert!(long.is_ours(&"v".repeat(100), &name));
    }

    #[tokio::test]
    async fn the_gate_needs_github_only_when_a_config_may_be_in_use() {
        // Nothing listens on the discard port: every GitHub call fails at once.
        let l = lifecycle("marble");
        let vm = "macphsft01-ROOT-VM-macOS-14";
        let stale = RunnerRecord {
            id: 7,
            name: l.name_for(vm, 1),
        };
        // Unknown (running before this daemon started): a failed lookup is "don't know".
        assert!(l.before_stop(vm).await.is_err());
        // A delivered config: the registration must go first.
        l.records.set(vm, Known::Registered(stale.clone()));
        assert!(l.before_stop(vm).await.is_err());
        assert_eq!(l.records.get(vm), Some(stale.clone()), "kept for the retry");
        // Nothing delivered this boot: stop; the earlier boot's registration GitHub did not
        // let us delete is kept, to be deleted at the next stop or boot.
        l.records.set(vm, Known::Undelivered(Some(stale.clone())));
        assert_eq!(l.before_stop(vm).await.unwrap(), StopGate::Proceed);
        assert_eq!(l.records.known(vm), Some(Known::Undelivered(Some(stale))));
        assert_eq!(l.before_stop(vm).await.unwrap(), StopGate::Proceed);
        l.records.set(vm, Known::Undelivered(None));
        assert_eq!(l.before_stop(vm).await.unwrap(), StopGate::Proceed);
        assert_eq!(l.records.known(vm), Some(Known::Cleared));
    }

    #[tokio::test]
    async fn a_config_minted_before_the_boot_is_held_and_taken_once() {
        let (url, seen) = github_answering().await;
        let l = lifecycle_at(&url, "marble");
        let record = l.mint_before_start(VM, Some(14)).await.unwrap();
        assert_eq!(record.id, 42);
        assert_eq!(seen.lock().unwrap().len(), 1, "{seen:?}");
        assert!(seen.lock().unwrap()[0].starts_with("POST /repos/o/r/actions/runners/generate"));
        assert!(
            matches!(l.records.known(VM), Some(Known::Minted { ref record, .. }) if record.id == 42)
        );
        assert_eq!(l.records.get(VM).map(|r| r.id), Some(42));
        // Held in memory only, and never printed.
        assert!(!format!("{:?}", l.records).contains(JIT));
        assert!(!format!("{l:?}").contains(JIT));
        // Readiness takes it once: from then on it may be in the guest.
        let (taken, jit) = l.records.take_minted(VM).unwrap();
        assert_eq!(taken.id, 42);
        assert_eq!(jit.encoded_jit_config.expose(), JIT);
        assert_eq!(l.records.known(VM), Some(Known::Registered(taken)));
        assert!(l.records.take_minted(VM).is_none(), "delivered only once");
    }

    #[tokio::test]
    async fn a_minted_vm_stops_without_a_gate_and_its_registration_is_deleted() {
        let (url, seen) = github_answering().await;
        let l = lifecycle_at(&url, "marble");
        l.records.set(VM, minted(42));
        assert_eq!(l.before_stop(VM).await.unwrap(), StopGate::Proceed);
        assert_eq!(
            *seen.lock().unwrap(),
            ["DELETE /repos/o/r/actions/runners/42"]
        );
        assert_eq!(l.records.known(VM), Some(Known::Cleared));
        assert!(l.records.take_minted(VM).is_none());

        // GitHub down: the stop still goes ahead (nothing reached the guest); the config is
        // dropped and the registration kept to be deleted later.
        let down = lifecycle("marble");
        down.records.set(VM, minted(42));
        assert_eq!(down.before_stop(VM).await.unwrap(), StopGate::Proceed);
        let kept = down.records.known(VM);
        assert!(
            matches!(kept, Some(Known::Undelivered(Some(ref r))) if r.id == 42),
            "{kept:?}"
        );
        assert!(down.records.take_minted(VM).is_none(), "config dropped");
    }

    #[tokio::test]
    async fn a_failed_start_deletes_the_minted_registration_and_nothing_else() {
        let (url, seen) = github_answering().await;
        let l = lifecycle_at(&url, "marble");
        l.mint_before_start(VM, Some(14)).await.unwrap();
        l.discard_minted(VM).await;
        let calls = seen.lock().unwrap().clone();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[1], "DELETE /repos/o/r/actions/runners/42");
        assert_eq!(l.records.known(VM), Some(Known::Cleared));
        // Not minted (delivered, or none): nothing to discard, GitHub not asked.
        let delivered = Known::Registered(RunnerRecord {
            id: 7,
            name: "r7".into(),
        });
        l.records.set(VM, delivered.clone());
        l.discard_minted(VM).await;
        assert_eq!(l.records.known(VM), Some(delivered));
        assert_eq!(seen.lock().unwrap().len(), 2);

        // GitHub down after the mint: kept as a registration to delete later.
        let down = lifecycle("marble");
        down.records.set(VM, minted(42));
        down.discard_minted(VM).await;
        assert_eq!(down.records.get(VM).map(|r| r.id), Some(42));
        assert!(down.records.take_minted(VM).is_none());
    }

    #[tokio::test]
    async fn the_next_mint_deletes_a_registration_left_by_an_earlier_start() {
        let (url, seen) = github_answering().await;
        let l = lifecycle_at(&url, "marble");
        l.records.set(VM, minted(41));
        l.mint_before_start(VM, Some(14)).await.unwrap();
        let calls = seen.lock().unwrap().clone();
        assert_eq!(
            calls[0], "DELETE /repos/o/r/actions/runners/41",
            "{calls:?}"
        );
        assert!(calls[1].starts_with("POST "), "{calls:?}");
        assert_eq!(l.records.get(VM).map(|r| r.id), Some(42));
    }

    #[tokio::test]
    async fn a_failed_mint_before_the_boot_leaves_the_vm_stoppable() {
        let l = lifecycle("marble");
        assert!(l.mint_before_start(VM, Some(14)).await.is_err());
        assert_eq!(l.records.known(VM), Some(Known::Undelivered(None)));
        assert!(
            l.records.take_minted(VM).is_none(),
            "readiness mints instead"
        );
        assert_eq!(l.before_stop(VM).await.unwrap(), StopGate::Proceed);
    }

    #[test]
    fn labels_add_extras_once_and_debug_hides_the_token() {
        let l = lifecycle("marble");
        let want = [
            "self-hosted",
            "macOS",
            &host_arch_label(),
            "mac14",
            "mac14-xl",
        ];
        assert_eq!(l.labels(VM, None).expect("the name says macOS 14"), want);
        assert!(!format!("{l:?}").contains("ghp_TOKEN"));
    }
}
