//! Slow work that runs outside the actor: one job per scheduler [`Action`], plus inventory
//! refreshes. Jobs only call the [`Hypervisor`] and report an [`Outcome`]; they never touch
//! scheduler state.
//!
//! Busy probes are fail-safe by construction: only an exit status of exactly 1 from the
//! probe command means idle; 0 means busy (its output says why); anything else — another
//! status, an exec failure, a timeout, a VM that is not running — is `Unknown`, which the
//! scheduler treats as busy. This is the seed's worst bug inverted: an unreachable guest is
//! never mistaken for an idle one.
//!
//! With `[github]` configured, ROOT VMs also run the runner lifecycle here
//! ([`crate::ci::github::lifecycle`]): the start job mints the JIT runner config *before* `prlctl start`
//! when the macOS version is known without the guest, so the booting runner is already in
//! GitHub's runner list and other hosts' demand does not boot for the same job (a failed
//! start deletes that registration again); readiness delivers the config once the guest
//! answers (minting it there instead when nothing was minted before the boot), then waits
//! for the runner listener; every stop of a ROOT VM first deletes its runner registration,
//! and answers a busy (422) or unknown (GitHub unreachable) probe result instead of
//! stopping. There is no separate signal for a forced operator stop, so the gate applies to
//! every stop of a ROOT VM, `--force` included.
//!
//! With `[jenkins]`, an SPI VM's busy probe also asks the controller about its node
//! ([`crate::ci::jenkins::spi`]): busy if either says so.

use std::sync::Arc;
use std::time::Duration;

use marble_proto::Team;

use crate::config::{Config, ProbeSection};
use crate::hypervisor::{Hypervisor, StopMode};
use crate::inventory::TeamMap;
use crate::sched::{Action, ObservedVm, Outcome, ProbeResult, StopKind};

// The optional capabilities, each a seam: the real module with its feature, a stub with the
// same API (answering "not configured") without it, so no code here or above needs `cfg`.

/// What a stub capability holds in place of its client: nothing can be built (not `Copy`,
/// like the real `Arc`s, so the same code clones it in every build).
#[derive(Debug, Clone)]
pub enum Unconfigured {}

#[cfg(feature = "ci")]
pub mod ci;
/// Without feature `ci`: no runner lifecycle, no Jenkins; every hook passes through.
#[cfg(not(feature = "ci"))]
pub mod ci {
    use std::collections::{BTreeMap, HashMap, HashSet};
    use std::time::Duration;

    use marble_proto::{CiSystem, Team};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::JobContext;
    use crate::config::{Config, ConfigError};
    use crate::sched::{Command, Outcome, ProbeResult};

    /// Whether this build has the CI clients.
    pub const ENABLED: bool = false;

    /// Never configured without the feature (not `Copy`, like the real types).
    pub type Runners = Option<super::Unconfigured>;
    /// Never configured without the feature.
    pub type Jenkins = Option<super::Unconfigured>;

    /// No `[github]` client in this build.
    #[derive(Debug, Clone, Default)]
    pub struct Github;

    impl Github {
        /// Nothing to load.
        pub async fn for_config(
            _config: &Config,
            _previous: Option<&Github>,
            _shutdown: &CancellationToken,
        ) -> Github {
            Github
        }

        /// No runner lifecycle.
        pub fn runners(&self, _config: &Config, _host: &str) -> Result<Runners, ConfigError> {
            Ok(None)
        }
    }

    /// No Jenkins client in this build.
    pub fn jenkins(_config: &Config) -> Jenkins {
        None
    }

    /// A plain start.
    pub async fn start(_ctx: &JobContext, _vm: &str, _team: Team) -> Option<Outcome> {
        None
    }

    /// No runner lifecycle to re-arm: the scheduler stops the VM instead.
    pub async fn rearm(_ctx: &JobContext, _vm: &str, _team: Team) -> Outcome {
        Outcome::Failed("runner re-arm needs the `ci` feature and [github]".to_owned())
    }

    /// No gate before a stop.
    pub async fn before_stop(_ctx: &JobContext, _vm: &str, _team: Team) -> Option<Outcome> {
        None
    }

    /// The guest's answer alone.
    pub async fn refine_probe(
        _ctx: &JobContext,
        _vm: &str,
        _team: Team,
        guest: ProbeResult,
    ) -> ProbeResult {
        guest
    }

    /// The plain readiness checks.
    pub async fn wait_ready(
        _ctx: &JobContext,
        _vm: &str,
        _team: Team,
        _timeout: Duration,
    ) -> Option<Outcome> {
        None
    }

    /// No token to report.
    pub fn token_system(_runners: &Runners) -> Option<CiSystem> {
        None
    }

    /// No runner registrations of our own.
    pub fn runners_started_here(
        _runners: &Runners,
        _teams: &HashMap<String, Team>,
    ) -> Option<HashSet<String>> {
        None
    }

    /// No runner registrations of our own.
    pub fn runner_names_here(
        _runners: &Runners,
        _teams: &HashMap<String, Team>,
        _listed: &[&str],
    ) -> Option<BTreeMap<String, String>> {
        None
    }

    /// No Jenkins nodes to mark.
    pub fn mirror_drain(
        _jenkins: &Jenkins,
        _jobs: &TaskTracker,
        _cmd: &Command,
        _caller: &str,
        _spi_vms: impl FnOnce() -> Vec<String>,
    ) {
    }

    /// No Jenkins client to launch a node with.
    pub fn launch_node(_jenkins: &Jenkins, _jobs: &TaskTracker, _vm: String, _node: String) {}

    /// No `[github]` token to check.
    pub async fn check_token(
        _runners: &Runners,
        _timeout: Duration,
    ) -> Option<Result<Result<String, String>, tokio::time::error::Elapsed>> {
        None
    }

    /// No runner versions known.
    pub fn runner_report(_runners: &Runners, _now_ms: u64) -> Option<marble_proto::RunnerReport> {
        None
    }

    /// No runner to install in this build.
    pub async fn prepare_runner_install(
        _runners: &Runners,
        _upgrade: bool,
    ) -> Result<super::RunnerInstallPlan, marble_proto::WireError> {
        Err(marble_proto::WireError::new(
            marble_proto::ErrorKind::Unsupported,
            "this marbled was built without the `ci` feature: no runner install",
        ))
    }

    /// Nothing to record.
    pub fn record_runner_version(_runners: &Runners, _vm: &str, _version: &str) {}

    /// Nothing recorded.
    pub fn recorded_runner_version(_runners: &Runners, _vm: &str) -> Option<String> {
        None
    }
}

/// What `runner install|upgrade` runs in the guest, prepared on the host (the verified
/// package is inside the profile).
#[derive(Debug)]
pub struct RunnerInstallPlan {
    /// The steps.
    pub profile: crate::provision::Profile,
    /// The version the package holds.
    pub version: String,
    /// Whether the package came from the host cache without a download.
    pub cached: bool,
    /// The step that fails while a runner runs in the guest (its failure is `Busy`).
    pub idle_step: &'static str,
    /// The steps whose running means the guest changed (the others compare first).
    pub changing_steps: [&'static str; 2],
}

#[cfg(feature = "s3")]
pub mod s3;
/// Without feature `s3`: no `[images]` bucket, no `[fleet]` reader.
#[cfg(not(feature = "s3"))]
pub mod s3 {
    use std::path::PathBuf;

    use marble_proto::{ErrorKind, Response, WireError};
    use tokio::sync::oneshot;
    use tokio_util::task::TaskTracker;

    use crate::config::Config;

    /// No `[images]` settings in this build.
    #[derive(Debug, Clone, Default)]
    pub struct Images;
    /// Never configured without the feature.
    pub type Fleet = Option<super::Unconfigured>;

    /// Nothing to read.
    pub fn images(_config: &Config) -> Images {
        Images
    }

    /// No image build disk.
    pub fn build_disk(_images: &Images) -> Option<PathBuf> {
        None
    }

    /// Parallels' default bundle directory, `~/Parallels` (`/Parallels` without `HOME`).
    pub fn bundles_dir(_images: &Images) -> PathBuf {
        std::env::var_os("HOME")
            .map_or_else(|| PathBuf::from("/"), PathBuf::from)
            .join("Parallels")
    }

    /// No bucket reader.
    pub fn fleet(_config: &Config) -> Fleet {
        None
    }

    /// `FleetList` is unsupported in this build.
    pub fn spawn_list(
        _jobs: &TaskTracker,
        _fleet: Fleet,
        done: oneshot::Sender<Result<Response, WireError>>,
    ) {
        let _ = done.send(Err(WireError::new(
            ErrorKind::Unsupported,
            "this marbled was built without S3 support",
        )));
    }
}

/// What jobs need; cheap to clone into each task.
#[derive(Clone)]
pub struct JobContext {
    /// The hypervisor.
    pub hv: Arc<dyn Hypervisor>,
    /// Probe and readiness commands.
    pub probe: Arc<ProbeSection>,
    /// Team mapping for inventory results.
    pub teams: Arc<TeamMap>,
    /// `[images]`: S3 store and image pipeline settings for transfer jobs.
    pub images: s3::Images,
    /// `[github]`: the ROOT runner lifecycle (None: not configured).
    pub runners: ci::Runners,
    /// `[jenkins]`: the controller's node view, combined with the SPI guest probe.
    pub jenkins: ci::Jenkins,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext").finish_non_exhaustive()
    }
}

impl JobContext {
    /// The context for `config` on `hv`. Without a runner lifecycle: the daemon adds it
    /// (`runners`) once the `[github]` token is loaded.
    pub fn from_config(config: &Config, hv: Arc<dyn Hypervisor>) -> Self {
        JobContext {
            hv,
            probe: Arc::new(config.probe.clone()),
            teams: Arc::new(
                TeamMap::new(&config.teams)
                    .with_labels(crate::sched::LabelMap::from_config(config)),
            ),
            images: s3::images(config),
            runners: ci::Runners::default(),
            jenkins: ci::jenkins(config),
        }
    }

    /// Run one scheduler action on `vm` (whose team is `team`).
    pub async fn run(&self, vm: &str, team: Team, action: &Action) -> Outcome {
        let result = match action {
            Action::Start => {
                if let Some(outcome) = ci::start(self, vm, team).await {
                    return outcome;
                }
                self.hv.start(vm).await
            }
            Action::Resume => self.hv.resume(vm).await,
            Action::Stop(kind) => {
                if let Some(gate) = ci::before_stop(self, vm, team).await {
                    return gate;
                }
                let mode = match kind {
                    StopKind::Graceful => StopMode::Graceful,
                    StopKind::Kill => StopMode::Kill,
                    StopKind::DropState => StopMode::DropState,
                };
                self.hv.stop(vm, mode).await
            }
            Action::Probe(team) => {
                let guest = self.probe(vm, *team).await;
                return Outcome::Probe(ci::refine_probe(self, vm, *team, guest).await);
            }
            // Emitted only with `jobs_per_boot` > 1; a failure makes the scheduler stop the
            // VM as with one job per boot (docs/CI.md, "Runner re-arm").
            Action::Rearm => return ci::rearm(self, vm, team).await,
            Action::WaitReady { timeout_ms } => {
                let timeout = Duration::from_millis(*timeout_ms);
                if let Some(outcome) = ci::wait_ready(self, vm, team, timeout).await {
                    return outcome;
                }
                return self.wait_ready(vm, team, timeout).await;
            }
        };
        match result {
            Ok(()) => Outcome::Done,
            Err(err) => Outcome::Failed(crate::chain::ErrorChain(&err).to_string()),
        }
    }

    /// Busy probe: run the team's probe command in the guest.
    pub async fn probe(&self, vm: &str, team: Team) -> ProbeResult {
        let argv = match team {
            Team::Root => &self.probe.root,
            Team::Spi => &self.probe.spi,
            // A VM of no team runs no CI job we know how to detect: unknown, so never stopped
            // by the scheduler without an operator's --force.
            Team::Unassigned => {
                return ProbeResult::Unknown("VM belongs to no team; no probe configured".into());
            }
        };
        match self.hv.exec(vm, argv, None, self.probe.timeout).await {
            Ok(out) if out.status == 1 => ProbeResult::Idle,
            Ok(out) if out.status == 0 => {
                let what = out.stdout.lines().next().unwrap_or("").trim();
                ProbeResult::Busy(if what.is_empty() {
                    format!("probe `{}` succeeded", argv.join(" "))
                } else {
                    what.to_owned()
                })
            }
            Ok(out) => ProbeResult::Unknown(format!(
                "probe exited {}: {}",
                out.status,
                out.stderr.lines().last().unwrap_or("").trim()
            )),
            Err(err) => ProbeResult::Unknown(crate::chain::ErrorChain(&err).to_string()),
        }
    }

    /// Poll until the guest answers (and for ROOT the runner listener runs) or time runs out.
    async fn wait_ready(&self, vm: &str, team: Team, timeout: Duration) -> Outcome {
        let deadline = tokio::time::Instant::now() + timeout;
        let checks: &[&Vec<String>] = if team == Team::Root && !self.probe.ready_root.is_empty() {
            &[&self.probe.ready, &self.probe.ready_root]
        } else {
            &[&self.probe.ready]
        };
        match self.poll(vm, checks, deadline).await {
            Ok(()) => Outcome::Done,
            Err(last_error) => Outcome::Failed(format!(
                "not ready after {}: {last_error}",
                humantime::format_duration(timeout)
            )),
        }
    }

    /// Run `checks` until they all pass or `deadline`; the error is the last failure.
    async fn poll(
        &self,
        vm: &str,
        checks: &[&Vec<String>],
        deadline: tokio::time::Instant,
    ) -> Result<(), String> {
        loop {
            let last_error = match self.ready_checks(vm, checks).await {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(last_error);
            }
            tokio::time::sleep_until(deadline.min(now + self.probe.ready_poll)).await;
        }
    }

    async fn ready_checks(&self, vm: &str, checks: &[&Vec<String>]) -> Result<(), String> {
        for argv in checks {
            match self.hv.exec(vm, argv, None, self.probe.timeout).await {
                Ok(out) if out.status == 0 => {}
                Ok(out) => return Err(format!("`{}` exited {}", argv.join(" "), out.status)),
                Err(err) => return Err(crate::chain::ErrorChain(&err).to_string()),
            }
        }
        Ok(())
    }

    /// List all VMs with their teams.
    pub async fn inventory(&self) -> Result<Vec<ObservedVm>, String> {
        match self.hv.list_all().await {
            Ok(list) => Ok(self.teams.observe(list)),
            Err(err) => Err(crate::chain::ErrorChain(&err).to_string()),
        }
    }
}

/// The default probes and readiness checks run the way `prlctl exec` runs them: one quoted
/// line through a real guest shell, in a process table that holds that shell (whose own
/// command line holds the probe's pattern) and the agents of each case.
#[cfg(all(test, target_os = "linux"))]
mod guest_probe_tests {
    use super::*;
    use crate::hypervisor::local_guest::{GuestProc, LocalGuest};

    const WORKER: &str = "/Users/runner/actions-runner/bin/Runner.Worker spawnclient 107 110";
    const LISTENER: &str = "/Users/runner/actions-runner/bin/Runner.Listener run";
    const AGENT: &str = "/usr/bin/java -jar /Users/sftnight/agent.jar -url https://ci -name m";
    const REMOTING: &str = "java -jar /Users/jenkins/remoting.jar -workDir /Users/jenkins";

    async fn probe(team: Team, procs: &[GuestProc]) -> ProbeResult {
        let guest = LocalGuest::new();
        let ctx = JobContext::from_config(&Config::default(), Arc::new(guest.hv(procs)));
        ctx.probe("vm", team).await
    }

    fn idle(cmd: &str) -> GuestProc {
        GuestProc::Idle(cmd.to_owned())
    }

    fn busy(cmd: &str) -> GuestProc {
        GuestProc::Busy(cmd.to_owned())
    }

    #[tokio::test]
    async fn the_root_probe_does_not_find_itself() {
        assert_eq!(
            probe(Team::Root, &[idle(LISTENER)]).await,
            ProbeResult::Idle
        );
        // (What follows the pid in the answer differs: Linux's `pgrep -l` prints the process
        // name, macOS's `pgrep -lf` the command line.)
        let got = probe(Team::Root, &[idle(LISTENER), idle(WORKER)]).await;
        assert!(
            matches!(got, ProbeResult::Busy(_)),
            "a running Runner.Worker is busy, got {got:?}"
        );
    }

    #[tokio::test]
    async fn the_spi_probe_does_not_find_itself() {
        assert_eq!(probe(Team::Spi, &[]).await, ProbeResult::Idle, "no agent");
        assert_eq!(
            probe(Team::Spi, &[idle(AGENT)]).await,
            ProbeResult::Idle,
            "a connected agent without a build step is idle"
        );
        for agent in [AGENT, REMOTING] {
            let got = probe(Team::Spi, &[busy(agent)]).await;
            assert!(
                matches!(got, ProbeResult::Busy(_)),
                "an agent with a child runs a build step: {agent}: {got:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_root_readiness_check_does_not_find_itself() {
        let checks = |procs: Vec<GuestProc>| async move {
            let guest = LocalGuest::new();
            let ctx = JobContext::from_config(&Config::default(), Arc::new(guest.hv(&procs)));
            ctx.ready_checks("vm", &[&ctx.probe.ready, &ctx.probe.ready_root])
                .await
        };
        assert!(checks(vec![]).await.is_err(), "no listener: not ready");
        checks(vec![idle(LISTENER)])
            .await
            .expect("a running listener is ready");
    }
}
