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

use crate::config::ProbeSection;
use crate::hypervisor::{Hypervisor, StopMode};
use crate::inventory::TeamMap;
use crate::sched::{Action, ObservedVm, Outcome, ProbeResult, StopKind};

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
    #[cfg(feature = "s3")]
    pub images: Arc<crate::images::ImageStoreConfig>,
    /// `[github]`: the ROOT runner lifecycle (None: not configured).
    #[cfg(feature = "ci")]
    pub runners: Option<Arc<crate::ci::github::RunnerLifecycle>>,
    /// `[jenkins]`: the controller's node view, combined with the SPI guest probe.
    #[cfg(feature = "ci")]
    pub jenkins: Option<Arc<crate::ci::jenkins::JenkinsNodes>>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext").finish_non_exhaustive()
    }
}

impl JobContext {
    /// Run one scheduler action on `vm` (whose team is `team`).
    pub async fn run(&self, vm: &str, team: Team, action: &Action) -> Outcome {
        let result = match action {
            Action::Start => {
                #[cfg(feature = "ci")]
                if team == Team::Root
                    && let Some(runners) = &self.runners
                {
                    return self.start_root_jit(vm, runners).await;
                }
                self.hv.start(vm).await
            }
            Action::Resume => self.hv.resume(vm).await,
            Action::Stop(kind) => {
                #[cfg(feature = "ci")]
                if team == Team::Root
                    && let Some(gate) = self.runner_gate(vm).await
                {
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
                #[cfg(feature = "ci")]
                if *team == Team::Spi
                    && let Some(jenkins) = &self.jenkins
                {
                    return Outcome::Probe(jenkins.refine(vm, guest).await);
                }
                return Outcome::Probe(guest);
            }
            Action::WaitReady { timeout_ms } => {
                let timeout = Duration::from_millis(*timeout_ms);
                #[cfg(feature = "ci")]
                if team == Team::Root
                    && let Some(runners) = &self.runners
                {
                    return self.wait_ready_jit(vm, runners, timeout).await;
                }
                return self.wait_ready(vm, team, timeout).await;
            }
        };
        match result {
            Ok(()) => Outcome::Done,
            Err(err) => Outcome::Failed(crate::error::error_chain(&err).join(": ")),
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
            Err(err) => ProbeResult::Unknown(crate::error::error_chain(&err).join(": ")),
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

    /// ROOT readiness with `[github]`: wait for the guest, give it a runner config unless
    /// its runner already listens (a resumed VM), then wait for the listener.
    #[cfg(feature = "ci")]
    async fn wait_ready_jit(
        &self,
        vm: &str,
        runners: &crate::ci::github::RunnerLifecycle,
        timeout: Duration,
    ) -> Outcome {
        let deadline = tokio::time::Instant::now() + timeout;
        let not_ready = |what: &str, why: String| {
            Outcome::Failed(format!(
                "not ready after {} ({what}): {why}",
                humantime::format_duration(timeout)
            ))
        };
        if let Err(why) = self.poll(vm, &[&self.probe.ready], deadline).await {
            return not_ready("guest did not answer", why);
        }
        let listening = !self.probe.ready_root.is_empty()
            && self
                .ready_checks(vm, &[&self.probe.ready_root])
                .await
                .is_ok();
        if listening {
            // A runner we did not configure (a resumed VM's, or a guest without the JIT
            // LaunchDaemon): a config minted before this boot would never be used.
            runners.discard_minted(vm).await;
        } else if let Err(err) = runners
            .give_config(self.hv.as_ref(), vm, self.probe.timeout, deadline)
            .await
        {
            return Outcome::Failed(crate::error::error_chain(&err).join(": "));
        }
        if !self.probe.ready_root.is_empty()
            && let Err(why) = self.poll(vm, &[&self.probe.ready_root], deadline).await
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
    #[cfg(feature = "ci")]
    async fn start_root_jit(
        &self,
        vm: &str,
        runners: &crate::ci::github::RunnerLifecycle,
    ) -> Outcome {
        match crate::ci::github::macos_without_guest(self.hv.as_ref(), vm).await {
            Some(major) => {
                if let Err(err) = runners.mint_before_start(vm, major).await {
                    tracing::warn!(
                        vm,
                        error = %crate::error::error_chain(&err).join(": "),
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
        match self.hv.start(vm).await {
            Ok(()) => Outcome::Done,
            Err(err) => {
                runners.discard_minted(vm).await;
                Outcome::Failed(crate::error::error_chain(&err).join(": "))
            }
        }
    }

    /// The delete-before-stop gate of a ROOT VM; `None`: go on and stop.
    #[cfg(feature = "ci")]
    async fn runner_gate(&self, vm: &str) -> Option<Outcome> {
        let runners = self.runners.as_ref()?;
        match runners.before_stop(vm).await {
            Ok(crate::ci::StopGate::Proceed) => None,
            Ok(crate::ci::StopGate::Busy(why)) => Some(Outcome::Probe(ProbeResult::Busy(why))),
            Err(err) => Some(Outcome::Probe(ProbeResult::Unknown(format!(
                "GitHub: cannot remove the runner registration before stopping: {}",
                crate::error::error_chain(&err).join(": ")
            )))),
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
                Err(err) => return Err(crate::error::error_chain(&err).join(": ")),
            }
        }
        Ok(())
    }

    /// List all VMs with their teams.
    pub async fn inventory(&self) -> Result<Vec<ObservedVm>, String> {
        match self.hv.list_all().await {
            Ok(list) => Ok(self.teams.observe(list)),
            Err(err) => Err(crate::error::error_chain(&err).join(": ")),
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
        let ctx = crate::daemon::job_context(
            &crate::config::Config::default(),
            Arc::new(guest.hv(procs)),
        );
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
            let ctx = crate::daemon::job_context(
                &crate::config::Config::default(),
                Arc::new(guest.hv(&procs)),
            );
            ctx.ready_checks("vm", &[&ctx.probe.ready, &ctx.probe.ready_root])
                .await
        };
        assert!(checks(vec![]).await.is_err(), "no listener: not ready");
        checks(vec![idle(LISTENER)])
            .await
            .expect("a running listener is ready");
    }
}
