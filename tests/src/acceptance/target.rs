//! Where the suite runs: a real Parallels host, or the project's prlctl simulator.
//!
//! Owns [`Env`], what every check gets: the settings, the recorder, the daemon's own prlctl
//! adapter ([`Prlctl`], so checks exercise production code), raw tool runs that are recorded
//! as observations, a scratch directory, and the few target-specific hooks. The hooks are
//! only for setting up guest state the simulator cannot create through `exec` (background
//! processes) and for the decoy build disk; every assertion runs the same code on both
//! targets.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use marbled::hypervisor::prlctl::RawOutput;
use marbled::hypervisor::{Prlctl, PrlctlConfig};

use super::Settings;
use super::record::{Obs, Recorder};
use crate::prlsim::{GuestProc, SimHost};

/// Guest directory the suite's own files live in (fake agents, planted files).
pub const GUEST_DIR: &str = "/tmp/marble-acceptance";

/// Command line of the idle fake Jenkins agent (a copy of `sleep` named `remoting.jar`).
pub const IDLE_AGENT: &str = "/tmp/marble-acceptance/remoting.jar 900";

/// Command line of the busy fake agent: a shell whose command line names `remoting.jar`,
/// running `sleep` as its child (the `; :` keeps the shell from exec'ing `sleep`).
pub const BUSY_AGENT: &str = "/bin/sh -c sleep 900; : /tmp/marble-acceptance/remoting.jar";

/// A `pgrep -f` pattern for the fake agents that cannot match the shell running it
/// (`[r]emoting` matches `remoting`, but the literal text `[r]emoting` does not).
const AGENT_PATTERN: &str = "/tmp/marble-acceptance/[r]emoting.jar";

/// launchd label prefix of the fake agents when started as launchd jobs.
const AGENT_LABEL: &str = "ch.cern.sft.marble-acceptance.agent";

/// The host the suite talks to.
#[derive(Debug)]
pub enum Target {
    /// Parallels Desktop on this Mac.
    Real,
    /// The prlctl simulator in a scratch directory.
    Simulator(SimHost),
}

/// Everything a check needs.
#[derive(Debug)]
pub struct Env {
    /// Run settings.
    pub settings: Settings,
    /// Output.
    pub rec: Recorder,
    /// The daemon's prlctl adapter.
    pub prl: Arc<Prlctl>,
    /// Real host or simulator.
    pub target: Target,
    /// Scratch directory (decoy build disk, secret files, S3 state).
    pub work: PathBuf,
    /// `prlsrvctl` (the simulator answers under that name through a symlink).
    pub prlsrvctl: PathBuf,
    /// The environment prlctl and prlsrvctl run with (cleared, then this), as in the daemon.
    pub tool_env: Vec<(String, String)>,
}

impl Env {
    /// Build the environment for `target`; for the simulator this creates the simulated host
    /// under `work/sim`.
    pub fn new(settings: Settings, rec: Recorder, work: PathBuf) -> anyhow::Result<Env> {
        let (target, path, prlsrvctl, mut env) = if settings.simulator {
            let host = SimHost::create(work.join("sim"))
                .map_err(|e| anyhow::anyhow!("create the simulated host: {e}"))?;
            let fake = crate::harness::bin_path("fake-prlctl");
            if !fake.is_file() {
                anyhow::bail!(
                    "{} is missing: build it with `cargo build -p marble-tests --bins`",
                    fake.display()
                );
            }
            let link = work.join("prlsrvctl");
            std::os::unix::fs::symlink(&fake, &link)
                .with_context(|| format!("link {}", link.display()))?;
            let mut env = PrlctlConfig::default_env();
            env.push((
                crate::prlsim::DIR_ENV.to_owned(),
                host.dir().display().to_string(),
            ));
            (Target::Simulator(host), fake, link, env)
        } else {
            (
                Target::Real,
                settings.prlctl.clone(),
                settings.prlsrvctl.clone(),
                PrlctlConfig::default_env(),
            )
        };
        env.sort();
        env.dedup_by(|a, b| a.0 == b.0);
        let config = PrlctlConfig {
            path,
            // Room for the parallel-exec measurement; the per-call timeouts are the checks'.
            max_concurrent: 16,
            env: env.clone(),
            ..PrlctlConfig::default()
        };
        Ok(Env {
            settings,
            rec,
            prl: Arc::new(Prlctl::new(config)),
            target,
            work,
            prlsrvctl,
            tool_env: env,
        })
    }

    /// Whether this run is against the simulator.
    pub fn is_sim(&self) -> bool {
        matches!(self.target, Target::Simulator(_))
    }

    /// The simulated host, when there is one.
    pub fn sim(&self) -> Option<&SimHost> {
        match &self.target {
            Target::Simulator(h) => Some(h),
            Target::Real => None,
        }
    }

    /// `real` on a Mac, `sim` against the simulator (timeouts and waits: a simulated guest
    /// boots in seconds).
    pub fn pick(&self, real: Duration, sim: Duration) -> Duration {
        if self.is_sim() { sim } else { real }
    }

    /// Run `prlctl ARGS…` through the daemon's adapter (its environment, process group and
    /// output cap) and record argv, exit code, outputs and time. Never fails on a non-zero
    /// exit: the caller judges it.
    pub async fn prlctl(
        &self,
        obs: &Obs,
        args: &[&str],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> anyhow::Result<RawOutput> {
        let argv: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let started = Instant::now();
        let out = self
            .prl
            .run(&argv, stdin, timeout)
            .await
            .with_context(|| format!("prlctl {}", args.join(" ")))?;
        let mut shown = vec!["prlctl".to_owned()];
        shown.extend(argv);
        obs.run(
            &shown,
            out.status,
            &out.stdout_text(),
            &out.stderr_text(),
            started.elapsed(),
        );
        Ok(out)
    }

    /// [`Self::prlctl`] that must exit 0.
    pub async fn prlctl_ok(
        &self,
        obs: &Obs,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<RawOutput> {
        let out = self.prlctl(obs, args, None, timeout).await?;
        if out.status != Some(0) {
            anyhow::bail!(
                "`prlctl {}` exited {:?}: {}",
                args.join(" "),
                out.status,
                out.stderr_text().trim()
            );
        }
        Ok(out)
    }

    /// Run a host program (prlsrvctl, prl_disk_tool, security, launchctl…) with the tools'
    /// environment, recorded like prlctl. `None` timeout output: an error.
    pub async fn tool(
        &self,
        obs: &Obs,
        program: &Path,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<RawOutput> {
        self.command(obs, program, args, &self.tool_env, timeout)
            .await
    }

    /// Run `program ARGS…` with exactly `env`, recorded.
    pub async fn command(
        &self,
        obs: &Obs,
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
        timeout: Duration,
    ) -> anyhow::Result<RawOutput> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let started = Instant::now();
        let out = tokio::time::timeout(timeout, cmd.output())
            .await
            .map_err(|_| {
                anyhow::anyhow!("{} did not finish within {timeout:?}", program.display())
            })?
            .with_context(|| format!("run {}", program.display()))?;
        let raw = RawOutput {
            status: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
            stdout_truncated: false,
            stderr_truncated: false,
        };
        let mut shown = vec![program.display().to_string()];
        shown.extend(args.iter().map(|s| (*s).to_owned()));
        obs.run(
            &shown,
            raw.status,
            &raw.stdout_text(),
            &raw.stderr_text(),
            started.elapsed(),
        );
        Ok(raw)
    }

    /// Start a fake Jenkins agent in the guest: idle (no child) or busy (one child).
    /// Real guest: through `prlctl exec` with one shell command line; simulator: as guest
    /// processes (the simulated guest runs no background processes of its own).
    pub async fn start_fake_agent(&self, obs: &Obs, vm: &str, busy: bool) -> anyhow::Result<()> {
        if let Some(sim) = self.sim() {
            let now = crate::prlsim::model::now_ms();
            sim.update(|st| {
                let Some(i) = st.find(vm) else { return };
                let v = &mut st.vms[i];
                let pid = v.spawn(if busy { BUSY_AGENT } else { IDLE_AGENT }, now);
                if busy {
                    let child = v.next_pid;
                    v.next_pid += 1;
                    v.procs.push(GuestProc {
                        pid: child,
                        ppid: pid,
                        command: "sleep 900".to_owned(),
                        started_ms: now,
                        ends_ms: None,
                    });
                }
            })
            .map_err(|e| anyhow::anyhow!("simulated agent: {e}"))?;
            obs.note("fake agent (simulator processes)", busy.into());
            return Ok(());
        }
        // First a detached background process; if the exec session takes it down with it
        // (Parallels may end the session's processes), a launchd job instead.
        let nohup = if busy {
            format!(
                "mkdir -p {GUEST_DIR} && nohup /bin/sh -c 'sleep 900; :' {GUEST_DIR}/remoting.jar </dev/null >/dev/null 2>&1 &"
            )
        } else {
            format!(
                "mkdir -p {GUEST_DIR} && cp /bin/sleep {GUEST_DIR}/remoting.jar && nohup {IDLE_AGENT} </dev/null >/dev/null 2>&1 &"
            )
        };
        let submit = if busy {
            format!(
                "launchctl submit -l {AGENT_LABEL}-busy -- /bin/sh -c 'sleep 900; :' {GUEST_DIR}/remoting.jar"
            )
        } else {
            format!(
                "mkdir -p {GUEST_DIR} && cp /bin/sleep {GUEST_DIR}/remoting.jar && launchctl submit -l {AGENT_LABEL}-idle -- {IDLE_AGENT}"
            )
        };
        for (how, line) in [("nohup", nohup), ("launchctl submit", submit)] {
            let out = self
                .prlctl(obs, &["exec", vm, &line], None, Duration::from_secs(60))
                .await?;
            if out.status == Some(0) && !self.fake_agents(obs, vm).await?.is_empty() {
                obs.note("fake agent started with", how.into());
                return Ok(());
            }
        }
        anyhow::bail!("the fake agent did not stay up in the guest (nohup nor launchctl submit)")
    }

    /// Kill the fake agents and their children.
    pub async fn stop_fake_agents(&self, obs: &Obs, vm: &str) -> anyhow::Result<()> {
        if let Some(sim) = self.sim() {
            sim.update(|st| {
                if let Some(i) = st.find(vm) {
                    st.vms[i]
                        .procs
                        .retain(|p| !p.command.contains(GUEST_DIR) && p.command != "sleep 900");
                }
            })
            .map_err(|e| anyhow::anyhow!("simulated agent: {e}"))?;
            return Ok(());
        }
        let line = format!(
            "launchctl remove {AGENT_LABEL}-idle 2>/dev/null; launchctl remove {AGENT_LABEL}-busy 2>/dev/null; \
             for p in $(pgrep -f '{AGENT_PATTERN}'); do pkill -P \"$p\"; kill \"$p\"; done; true"
        );
        self.prlctl(obs, &["exec", vm, &line], None, Duration::from_secs(60))
            .await?;
        Ok(())
    }

    /// Fake agents visible in the guest now (their `pgrep -lf` lines), for the record.
    pub async fn fake_agents(&self, obs: &Obs, vm: &str) -> anyhow::Result<Vec<String>> {
        if let Some(sim) = self.sim() {
            let procs = sim
                .processes(vm)
                .map_err(|e| anyhow::anyhow!("simulated processes: {e}"))?;
            return Ok(procs
                .into_iter()
                .filter(|p| p.command.contains(GUEST_DIR))
                .map(|p| format!("{} {}", p.pid, p.command))
                .collect());
        }
        let line = format!("pgrep -lf '{AGENT_PATTERN}'; true");
        let out = self
            .prlctl(obs, &["exec", vm, &line], None, Duration::from_secs(60))
            .await?;
        Ok(out
            .stdout_text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Create the decoy build disk at `path`: a real 64 MiB Parallels disk on a Mac
    /// (`prl_disk_tool create`), a disk directory with a descriptor in the simulator.
    pub async fn make_decoy_disk(&self, obs: &Obs, path: &Path) -> anyhow::Result<()> {
        if self.is_sim() {
            std::fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))?;
            std::fs::write(path.join("DiskDescriptor.xml"), "<Parallels_disk_image/>\n")
                .context("write the decoy descriptor")?;
            return Ok(());
        }
        let tool = self.settings.prl_disk_tool.clone();
        let p = path.display().to_string();
        let out = self
            .tool(
                obs,
                &tool,
                &["create", "--hdd", &p, "--size", "64M"],
                Duration::from_secs(120),
            )
            .await?;
        if out.status != Some(0) || !path.exists() {
            anyhow::bail!(
                "prl_disk_tool create exited {:?}: {}",
                out.status,
                out.stderr_text().trim()
            );
        }
        Ok(())
    }
}
