//! The CI side of jobs, built with feature `ci`: the ROOT runner lifecycle (`[github]`, see
//! [`crate::ci::github`]) and the SPI Jenkins node view (`[jenkins]`, [`crate::ci::jenkins`]).
//!
//! This is one half of a seam: `jobs/mod.rs` declares a stub with the same API when the
//! feature is off, so the jobs, the actor and the daemon call these hooks without `cfg`.
//! Every hook answers `None` (go on as without CI) when its section is not configured.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use marble_proto::{CiSystem, Team};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::JobContext;
use crate::ci::github::{GithubToken, RunnerLifecycle, RunnerRecords};
use crate::config::{Config, ConfigError};
use crate::sched::{Command, Outcome, ProbeResult};

/// Whether this build has the CI clients.
pub const ENABLED: bool = true;

/// `[github]`: the ROOT runner lifecycle (None: not configured).
pub type Runners = Option<Arc<RunnerLifecycle>>;
/// `[jenkins]`: the controller's node view, combined with the SPI guest probe.
pub type Jenkins = Option<Arc<crate::ci::jenkins::JenkinsNodes>>;

/// The `[github]` side kept across config reloads: the token (with its retry task) and the
/// per-VM runner records every runner lifecycle shares.
#[derive(Debug, Clone, Default)]
pub struct Github {
    token: Option<GithubToken>,
    records: RunnerRecords,
}

impl Github {
    /// The `[github]` side for `config`. `previous` (the running config's) gives its
    /// records, and its token when the source is the same: kept, and read again at once (a
    /// reload re-reads the token without dropping one that works); otherwise the previous
    /// token's retry task ends. A new token's retry task is a child of `shutdown`.
    pub async fn for_config(
        config: &Config,
        previous: Option<&Github>,
        shutdown: &CancellationToken,
    ) -> Github {
        let records = previous.map(|p| p.records.clone()).unwrap_or_default();
        let token =
            GithubToken::for_config(config, previous.and_then(|p| p.token.clone()), shutdown).await;
        Github { token, records }
    }

    /// The ROOT runner lifecycle for `config`'s `[github]` (None when the section is absent
    /// or its token has no source), named after `host`; a client that cannot be built is a
    /// config problem named by its key.
    pub fn runners(&self, config: &Config, host: &str) -> Result<Runners, ConfigError> {
        RunnerLifecycle::for_config(config, host, &self.records, self.token.as_ref())
    }
}

/// The Jenkins node view for `config` (None without `[jenkins]`, or when its client cannot
/// be built: SPI busy probes then use the guest alone).
pub fn jenkins(config: &Config) -> Jenkins {
    crate::ci::jenkins::JenkinsNodes::for_config(config)
}

/// Runner versions for `RunnerStatus`, `vm list --json` and the metrics (None without
/// `[github]`).
pub fn runner_report(runners: &Runners, now_ms: u64) -> Option<marble_proto::RunnerReport> {
    let r = runners.as_ref()?;
    Some(r.versions().report(now_ms, r.setup().pin))
}

/// Get the verified runner package (host cache or download) and build the steps of
/// `runner install` (`upgrade`: `runner upgrade`). Runs before the VM is touched: a package
/// that fails its checksum stops everything here (`DataError`), with nothing installed.
pub async fn prepare_runner_install(
    runners: &Runners,
    upgrade: bool,
) -> Result<super::RunnerInstallPlan, marble_proto::WireError> {
    let Some(r) = runners else {
        return Err(marble_proto::WireError::new(
            marble_proto::ErrorKind::InvalidState,
            "no [github] section (or its token has no source): the runner is installed from \
             GitHub's releases and registered with that token; configure [github] first",
        ));
    };
    let setup = r.setup();
    let package = setup
        .cache
        .get(&r.client(), &setup.http, r.versions(), setup.pin)
        .await
        .map_err(|e| e.to_wire())?;
    let version = package.version.to_string();
    let profile = crate::ci::github::install::runner_install_profile(
        &setup.ci_user,
        &version,
        package.bytes,
        upgrade,
    )
    .map_err(|e| crate::chain::to_wire(marble_proto::ErrorKind::InvalidRequest, &e))?;
    Ok(super::RunnerInstallPlan {
        profile,
        version,
        cached: package.cached,
        idle_step: crate::ci::github::install::RUNNER_IDLE_STEP,
        changing_steps: [
            crate::ci::github::install::RUNNER_PACKAGE_STEP,
            crate::ci::github::install::RUNNER_BOOTSTRAP_STEP,
        ],
    })
}

/// Record that `vm` now holds runner `version` (after an install).
pub fn record_runner_version(runners: &Runners, vm: &str, version: &str) {
    if let Some(r) = runners {
        let v = crate::ci::github::versions::Version::parse(version);
        r.versions().record(vm, v, crate::clock::now_ms());
    }
}

/// The runner version recorded for `vm` (read at its last boot or installed since).
pub fn recorded_runner_version(runners: &Runners, vm: &str) -> Option<String> {
    let v = runners.as_ref()?.versions().of(vm)??;
    Some(v.to_string())
}

/// Read the runner version installed in `vm`'s guest (at boot: GitHub's runner object has
/// no version field) and record it. A guest that does not answer leaves the record as it
/// was; one without a runner (`Runner.Listener` missing: status 126/127) records none.
async fn read_runner_version(ctx: &JobContext, vm: &str, runners: &RunnerLifecycle) {
    let dir = crate::ci::github::install::runner_dir(&runners.setup().ci_user);
    let argv = crate::ci::github::install::version_argv(&dir);
    match ctx.hv.exec(vm, &argv, None, ctx.probe.timeout).await {
        Ok(out) => {
            let version = (out.status == 0)
                .then(|| crate::ci::github::versions::Version::parse(&out.stdout))
                .flatten();
            if version.is_none() && out.status == 0 {
                tracing::warn!(vm, output = %out.stdout.trim(), "runner version not understood");
            }
            tracing::info!(vm, version = ?version.map(|v| v.to_string()), "runner version read at boot");
            let now = crate::clock::now_ms();
            runners.versions().record(vm, version, now);
            check_releases_if_stale(runners, now);
        }
        Err(err) => {
            tracing::info!(vm, error = %crate::chain::ErrorChain(&err), "runner version not read")
        }
    }
}

/// Read the release list in the background when it is older than the check interval (or
/// was never read): a boot does not wait for GitHub.
fn check_releases_if_stale(runners: &RunnerLifecycle, now: u64) {
    let every = u64::try_from(runners.setup().check_interval.as_millis()).unwrap_or(u64::MAX);
    if now.saturating_sub(runners.versions().checked_ms()) < every {
        return;
    }
    let (client, versions) = (runners.client(), runners.versions().clone());
    tokio::spawn(async move {
        if let Err(err) = crate::ci::github::releases::check_releases(&client, &versions).await {
            let error = crate::chain::ErrorChain(&err);
            tracing::warn!(error = %error, "runner release check failed");
        }
    });
}

/// Start a ROOT VM through the runner lifecycle; `None`: start it plainly.
pub async fn start(ctx: &JobContext, vm: &str, team: Team) -> Option<Outcome> {
    let runners = ctx.runners.as_ref().filter(|_| team == Team::Root)?;
    Some(start_root_jit(ctx, vm, runners).await)
}

/// How long a runner re-arm (a mint and a delivery) may take.
const REARM_TIMEOUT: Duration = Duration::from_secs(60);

/// Runner re-arm (`jobs_per_boot` > 1): a fresh JIT runner for the running ROOT guest
/// whose runner has done its job. `give_config` holds no config for a VM whose first one
/// was delivered, so it mints anew (deleting the previous registration first) and delivers
/// it through the same root-only file and marker; the guest's runner script waits for it.
pub async fn rearm(ctx: &JobContext, vm: &str, team: Team) -> Outcome {
    let Some(runners) = ctx.runners.as_ref().filter(|_| team == Team::Root) else {
        return Outcome::Failed("runner re-arm needs [github] and a ROOT VM".to_owned());
    };
    let deadline = tokio::time::Instant::now() + REARM_TIMEOUT;
    let record = match runners
        .give_config(ctx.hv.as_ref(), vm, ctx.probe.timeout, deadline)
        .await
    {
        Ok(record) => record,
        Err(err) => return Outcome::Failed(crate::chain::ErrorChain(&err).to_string()),
    };
    // A guest whose runner script predates re-arm exits after its first runner: nothing
    // reads the new config, so say so now (the scheduler stops the VM, and the stop gate
    // deletes the registration) rather than hold the host for a runner that never comes.
    if !ctx.probe.ready_root.is_empty()
        && let Err(why) = ctx.poll(vm, &[&ctx.probe.ready_root], deadline).await
    {
        return Outcome::Failed(format!(
            "re-armed runner {} is not listening: {why}",
            record.name
        ));
    }
    tracing::info!(vm, runner = %record.name, "runner re-armed");
    Outcome::Done
}

/// The delete-before-stop gate of a ROOT VM; `None`: go on and stop.
pub async fn before_stop(ctx: &JobContext, vm: &str, team: Team) -> Option<Outcome> {
    let runners = ctx.runners.as_ref().filter(|_| team == Team::Root)?;
    match runners.before_stop(vm).await {
        Ok(crate::ci::StopGate::Proceed) => None,
        Ok(crate::ci::StopGate::Busy(why)) => Some(Outcome::Probe(ProbeResult::Busy(why))),
        Err(err) => Some(Outcome::Probe(ProbeResult::Unknown(format!(
            "GitHub: cannot remove the runner registration before stopping: {}",
            crate::chain::ErrorChain(&err)
        )))),
    }
}

/// An SPI VM's guest probe combined with its Jenkins node (busy if either says so).
pub async fn refine_probe(
    ctx: &JobContext,
    vm: &str,
    team: Team,
    guest: ProbeResult,
) -> ProbeResult {
    match &ctx.jenkins {
        Some(jenkins) if team == Team::Spi => jenkins.refine(vm, guest).await,
        _ => guest,
    }
}

/// ROOT readiness through the runner lifecycle; `None`: the plain readiness checks.
pub async fn wait_ready(
    ctx: &JobContext,
    vm: &str,
    team: Team,
    timeout: Duration,
) -> Option<Outcome> {
    let runners = ctx.runners.as_ref().filter(|_| team == Team::Root)?;
    Some(wait_ready_jit(ctx, vm, runners, timeout).await)
}

/// The `[github]` token's state for `CiStatus` and the metrics (None: not configured).
pub fn token_system(runners: &Runners) -> Option<CiSystem> {
    let token = runners.as_ref()?.token_status();
    Some(CiSystem {
        system: "github".into(),
        available: token.available,
        reason: token.reason,
        since_ms: token.since_ms,
        next_try_ms: token.next_try_ms,
    })
}

/// The runner names of this host's ROOT VMs (by the last inventory's `teams`); None without
/// runner registrations of our own.
pub fn runners_started_here(
    runners: &Runners,
    teams: &HashMap<String, Team>,
) -> Option<HashSet<String>> {
    let runners = runners.as_ref()?;
    Some(
        teams
            .iter()
            .filter(|(_, team)| **team == Team::Root)
            .filter_map(|(vm, _)| runners.records().get(vm))
            .map(|record| record.name)
            .collect(),
    )
}

/// This host's ROOT VMs' current runner names, by VM name: the names every host sees in
/// GitHub's runner list and jobs (the staggered yield ranks by them; the feed's taken and
/// done runners map to VMs through them). A VM's current registration gives it; a VM these
/// records do not know (it ran before this daemon started: the records live in memory
/// only, so a runner kept across a restart has none for the rest of its boot) takes the
/// newest (highest boot counter) of the names of ours among `listed` — every runner name
/// the last poll saw: free, taken or done, so the runner is still named once it has taken
/// its job. None without runner registrations of our own.
pub fn runner_names_here(
    runners: &Runners,
    teams: &HashMap<String, Team>,
    listed: &[&str],
) -> Option<BTreeMap<String, String>> {
    let runners = runners.as_ref()?;
    let records = runners.records();
    Some(
        teams
            .iter()
            .filter(|(_, team)| **team == Team::Root)
            .filter_map(|(vm, _)| {
                let name = match records.current(vm) {
                    Some(_) => records.current_record(vm)?.name,
                    // The boot counter is the mint's unix time, so the current boot's
                    // registration is the newest of this VM's; an earlier boot's may still be
                    // named by a finished job of a live run, never after the current one.
                    None => (*listed
                        .iter()
                        .filter(|name| runners.is_ours(vm, name))
                        .max_by_key(|name| boot_of(name))?)
                    .to_owned(),
                };
                Some((vm.clone(), name))
            })
            .collect(),
    )
}

/// The boot counter a runner name ends with (0 when none: `is_ours` names always have one).
fn boot_of(name: &str) -> u64 {
    name.rsplit_once('-')
        .and_then(|(_, boot)| boot.parse().ok())
        .unwrap_or(0)
}

/// `drain` marks the SPI VMs' Jenkins nodes temporarily offline, `resume` clears the mark
/// (a job on `jobs`: the actor never waits on Jenkins). `spi_vms` is asked only when there
/// is something to do.
pub fn mirror_drain(
    jenkins: &Jenkins,
    jobs: &TaskTracker,
    cmd: &Command,
    caller: &str,
    spi_vms: impl FnOnce() -> Vec<String>,
) {
    let Some(jenkins) = jenkins.clone() else {
        return;
    };
    let (offline, message) = match cmd {
        Command::Drain { reason, .. } => (true, format!("MARBLE drain by {caller}: {reason}")),
        Command::Resume => (false, String::new()),
        _ => return,
    };
    let vms = spi_vms();
    jobs.spawn(
        async move { jenkins.set_nodes_offline(&vms, offline, &message).await }
            .instrument(tracing::info_span!("jenkins-drain")),
    );
}

/// Ask Jenkins to launch `node`, the node of SPI VM `vm` (`Effect::LaunchJenkinsNode`; a
/// job on `jobs`: the actor never waits on Jenkins). Without `[jenkins]` nothing happens.
pub fn launch_node(jenkins: &Jenkins, jobs: &TaskTracker, vm: String, node: String) {
    let Some(jenkins) = jenkins.clone() else {
        tracing::warn!(vm = %vm, node = %node, "no [jenkins] client to launch the node with");
        return;
    };
    jobs.spawn(
        async move { jenkins.launch(&vm, &node).await }
            .instrument(tracing::info_span!("jenkins-launch")),
    );
}

/// `host check`'s `github` line: the token works for the runner scope; None without
/// `[github]`.
pub async fn check_token(
    runners: &Runners,
    timeout: Duration,
) -> Option<Result<Result<String, String>, tokio::time::error::Elapsed>> {
    let runners = runners.as_ref()?;
    Some(
        tokio::time::timeout(timeout, runners.check_token())
            .await
            .map(|checked| checked.map_err(|err| crate::chain::ErrorChain(&err).to_string())),
    )
}

/// ROOT readiness with `[github]`: wait for the guest, give it a runner config unless
/// its runner already listens (a resumed VM), then wait for the listener.
async fn wait_ready_jit(
    ctx: &JobContext,
    vm: &str,
    runners: &RunnerLifecycle,
    timeout: Duration,
) -> Outcome {
    let deadline = tokio::time::Instant::now() + timeout;
    let not_ready = |what: &str, why: String| {
        Outcome::Failed(format!(
            "not ready after {} ({what}): {why}",
            humantime::format_duration(timeout)
        ))
    };
    if let Err(why) = ctx.poll(vm, &[&ctx.probe.ready], deadline).await {
        return not_ready("guest did not answer", why);
    }
    read_runner_version(ctx, vm, runners).await;
    let listening = !ctx.probe.ready_root.is_empty()
        && ctx.ready_checks(vm, &[&ctx.probe.ready_root]).await.is_ok();
    if listening {
        // A runner we did not configure (a resumed VM's, or a guest without the JIT
        // LaunchDaemon): a config minted before this boot would never be used.
        runners.discard_minted(vm).await;
    } else if let Err(err) = runners
        .give_config(ctx.hv.as_ref(), vm, ctx.probe.timeout, deadline)
        .await
    {
        return Outcome::Failed(crate::chain::ErrorChain(&err).to_string());
    }
    if !ctx.probe.ready_root.is_empty()
        && let Err(why) = ctx.poll(vm, &[&ctx.probe.ready_root], deadline).await
    {
        return not_ready("runner listener not up after the config was delivered", why);
    }
    Outcome::Done
}

/// Start a ROOT VM with `[github]`: register its runner first when the macOS version is
/// known without the guest, so the runner is in GitHub's list (and counted by other
/// hosts' demand) for the whole boot. A mint that fails does not hold the start back:
/// readiness mints instead (GitHub being down must not keep CI capacity off, and the VM
/// stays stoppable because nothing reached it). A failed start deletes the registration
/// again: no stop follows a failed start, and an unused registration would stand in the
/// fleet's list as a free runner.
async fn start_root_jit(ctx: &JobContext, vm: &str, runners: &RunnerLifecycle) -> Outcome {
    // The version is looked up only when the name (or a `[labels]` rule) does not give it.
    let major = match runners.labels(vm, None) {
        Some(_) => None,
        None => crate::ci::github::macos_without_guest(ctx.hv.as_ref(), vm).await,
    };
    match runners.labels(vm, major) {
        Some(_) => {
            if let Err(err) = runners.mint_before_start(vm, major).await {
                tracing::warn!(
                    vm,
                    error = %crate::chain::ErrorChain(&err),
                    "could not register the runner before the boot; registering it at \
                     readiness instead (other hosts do not see it while the VM boots)"
                );
            }
        }
        None => tracing::info!(
            vm,
            "macOS version unknown until the guest answers: the runner is registered at \
             readiness (other hosts do not see it while the VM boots)"
        ),
    }
    match ctx.hv.start(vm).await {
        Ok(()) => Outcome::Done,
        Err(err) => {
            runners.discard_minted(vm).await;
            Outcome::Failed(crate::chain::ErrorChain(&err).to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ci::Secret;
    use crate::ci::github::{GitHubClient, RunnerScope};
    use crate::config::GithubSection;

    const VM: &str = "h-ROOT-VM-macOS-15";

    /// The runner lifecycle of host `h` (default name prefix), with no runner records: a
    /// daemon just started.
    fn restarted() -> Runners {
        let section = GithubSection::default();
        let client = GitHubClient::new(
            "http://127.0.0.1:9",
            RunnerScope::Repo("o/r".into()),
            Secret::new("ghp_TOKEN"),
            Duration::from_secs(5),
        );
        Some(Arc::new(RunnerLifecycle::with_client(
            client,
            &section,
            "h.example.org",
            RunnerRecords::default(),
        )))
    }

    #[test]
    fn a_runner_kept_across_a_restart_is_named_as_the_runner_list_names_it() {
        let runners = restarted();
        let ours = runners.as_ref().unwrap().name_for(VM, 3);
        assert_eq!(ours, "marble-h-h-ROOT-VM-macOS-15-0003");
        let teams = HashMap::from([(VM.to_owned(), Team::Root)]);
        let listed = [
            "marble-g-h-ROOT-VM-macOS-15-0009",
            "marble-h-h-ROOT-VM-macOS-15-0001",
            &ours,
            "marble-h-h-ROOT-VM-macOS-14-0007",
        ];
        let names = runner_names_here(&runners, &teams, &listed).unwrap();
        assert_eq!(names.get(VM).map(String::as_str), Some(ours.as_str()));
        // Nothing of ours listed: no name (the scheduler falls back to the VM's).
        let names = runner_names_here(&runners, &teams, &listed[..1]).unwrap();
        assert_eq!(names.get(VM), None);
    }
}
