//! The on-Mac acceptance suite (issue 13 §3, runbook `docs/ACCEPTANCE.md`): what cannot be
//! tested on Linux, run on one real Parallels host in one command
//! (`scripts/acceptance-mac.sh`), against a throw-away VM cloned from a stopped source VM,
//! using the daemon's own library so production code is what gets tested. The same suite
//! runs against the prlctl simulator (`--simulator`, in CI), where checks that need a Mac say
//! `skipped: simulator`.
//!
//! Layout: [`record`] (lines, results.json, fixtures, cleanup log), [`target`] (real host or
//! simulator; the daemon's prlctl adapter), [`vm`] (the throw-away VM), and one module per
//! group of checks: [`parse`], [`exec`], [`guest`], [`lifecycle`], [`launchd`], [`apis`].
//! [`run`] sequences them on one VM so the whole suite boots it as few times as it can.
//!
//! Settings come from `MARBLE_ACCEPT_*` environment variables, which the script sets from its
//! options ([`Settings::from_env`]).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use marble_proto::PowerState;
use marbled::hypervisor::Hypervisor as _;

pub mod apis;
pub mod cond_read;
pub mod exec;
pub mod guest;
pub mod jenkins_any;
pub mod jenkins_launch;
pub mod jenkins_nodes;
pub mod jenkins_queue;
pub mod launchd;
pub mod lease;
pub mod lifecycle;
pub mod parse;
pub mod rearm;
pub mod record;
pub mod runner;
pub mod target;
pub mod vm;

use record::{Obs, Recorder, Status};
use target::Env;

/// Groups of checks (`--only parse,exec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// Real outputs through the daemon's parsers.
    Parse,
    /// `prlctl exec` semantics.
    Exec,
    /// Probes, JIT delivery, provisioning, scrub.
    Guest,
    /// Power operations, MAC, snapshots, delete.
    Lifecycle,
    /// The daemon under launchd, ssh, start_vm.sh, Keychain.
    Launchd,
    /// GitHub, Jenkins, S3.
    Apis,
}

impl Group {
    /// Every group, in run order.
    pub const ALL: [Group; 6] = [
        Group::Parse,
        Group::Exec,
        Group::Guest,
        Group::Lifecycle,
        Group::Launchd,
        Group::Apis,
    ];

    /// Parse a group name.
    pub fn parse(s: &str) -> anyhow::Result<Group> {
        Ok(match s.trim() {
            "parse" => Group::Parse,
            "exec" => Group::Exec,
            "guest" => Group::Guest,
            "lifecycle" => Group::Lifecycle,
            "launchd" => Group::Launchd,
            "apis" => Group::Apis,
            other => anyhow::bail!(
                "unknown group {other:?} (parse, exec, guest, lifecycle, launchd, apis)"
            ),
        })
    }
}

/// Environment variables the suite reads (the script's options set them).
pub mod vars {
    /// `1`: run against the prlctl simulator.
    pub const SIMULATOR: &str = "MARBLE_ACCEPT_SIMULATOR";
    /// Output directory.
    pub const OUT: &str = "MARBLE_ACCEPT_OUT";
    /// Source VM to clone (real host).
    pub const SOURCE: &str = "MARBLE_ACCEPT_SOURCE";
    /// Name of the throw-away VM (default `marble-acceptance-<time>-<pid>`).
    pub const CLONE_NAME: &str = "MARBLE_ACCEPT_CLONE_NAME";
    /// Comma-separated groups to run (default all).
    pub const ONLY: &str = "MARBLE_ACCEPT_ONLY";
    /// prlctl path.
    pub const PRLCTL: &str = "MARBLE_ACCEPT_PRLCTL";
    /// prlsrvctl path.
    pub const PRLSRVCTL: &str = "MARBLE_ACCEPT_PRLSRVCTL";
    /// GitHub API URL.
    pub const GITHUB_API: &str = "MARBLE_ACCEPT_GITHUB_API";
    /// GitHub runner scope, `repo:OWNER/NAME` or `org:NAME`.
    pub const GITHUB_SCOPE: &str = "MARBLE_ACCEPT_GITHUB_SCOPE";
    /// GitHub token file (0600).
    pub const GITHUB_TOKEN_FILE: &str = "MARBLE_ACCEPT_GITHUB_TOKEN_FILE";
    /// Jenkins URL.
    pub const JENKINS_URL: &str = "MARBLE_ACCEPT_JENKINS_URL";
    /// Jenkins user.
    pub const JENKINS_USER: &str = "MARBLE_ACCEPT_JENKINS_USER";
    /// Jenkins API token file (0600).
    pub const JENKINS_TOKEN_FILE: &str = "MARBLE_ACCEPT_JENKINS_TOKEN_FILE";
    /// Jenkins node that may be toggled offline and back.
    pub const JENKINS_NODE: &str = "MARBLE_ACCEPT_JENKINS_NODE";
    /// TOML file with an `[images]` table (S3).
    pub const S3_CONFIG: &str = "MARBLE_ACCEPT_S3_CONFIG";
    /// ssh destination for the launchd checks (default `localhost`).
    pub const SSH_HOST: &str = "MARBLE_ACCEPT_SSH_HOST";
}

/// Everything a run is told.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Against the simulator.
    pub simulator: bool,
    /// Output directory.
    pub out: PathBuf,
    /// Source VM (real host).
    pub source_vm: Option<String>,
    /// Throw-away VM name.
    pub clone_name: Option<String>,
    /// prlctl.
    pub prlctl: PathBuf,
    /// prlsrvctl.
    pub prlsrvctl: PathBuf,
    /// prl_disk_tool (the decoy build disk).
    pub prl_disk_tool: PathBuf,
    /// Groups to run.
    pub only: BTreeSet<Group>,
    /// GitHub, when given.
    pub github: Option<apis::GithubCreds>,
    /// Jenkins, when given.
    pub jenkins: Option<apis::JenkinsCreds>,
    /// `[images]` TOML, when given.
    pub s3_config: Option<PathBuf>,
    /// ssh destination.
    pub ssh_host: String,
    /// Repository root (start_vm.sh, the plist).
    pub repo: PathBuf,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Settings {
    /// Read the `MARBLE_ACCEPT_*` variables ([`vars`]). Partial credentials are an error
    /// naming what is missing, so a typo never turns into a silent skip.
    pub fn from_env() -> anyhow::Result<Settings> {
        let simulator = var(vars::SIMULATOR).is_some_and(|v| v == "1");
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(PathBuf::from)
            .context("the tests crate has a parent directory")?;
        let out = var(vars::OUT).map(PathBuf::from).unwrap_or_else(|| {
            repo.join("target").join("acceptance").join(format!(
                "{}-{}",
                if simulator { "simulator" } else { "host" },
                std::process::id()
            ))
        });
        let only = match var(vars::ONLY) {
            None => Group::ALL.into_iter().collect(),
            Some(list) => list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(Group::parse)
                .collect::<anyhow::Result<_>>()?,
        };
        let github = match (var(vars::GITHUB_TOKEN_FILE), var(vars::GITHUB_SCOPE)) {
            (None, None) => None,
            (Some(f), Some(s)) => Some(apis::GithubCreds {
                api: var(vars::GITHUB_API)
                    .unwrap_or_else(|| marbled::ci::github::DEFAULT_API_URL.to_owned()),
                scope: apis::parse_scope(&s)?,
                token_file: PathBuf::from(f),
            }),
            _ => anyhow::bail!("GitHub checks need both --github-token-file and --github-scope"),
        };
        let jenkins = match (
            var(vars::JENKINS_URL),
            var(vars::JENKINS_USER),
            var(vars::JENKINS_TOKEN_FILE),
            var(vars::JENKINS_NODE),
        ) {
            (None, None, None, None) => None,
            (Some(url), Some(user), Some(f), Some(node)) => Some(apis::JenkinsCreds {
                url,
                user,
                token_file: PathBuf::from(f),
                node,
            }),
            _ => anyhow::bail!(
                "Jenkins checks need --jenkins-url, --jenkins-user, --jenkins-token-file and --jenkins-node"
            ),
        };
        Ok(Settings {
            simulator,
            out,
            source_vm: var(vars::SOURCE),
            clone_name: var(vars::CLONE_NAME),
            prlctl: var(vars::PRLCTL).map_or_else(|| "/usr/local/bin/prlctl".into(), PathBuf::from),
            prlsrvctl: var(vars::PRLSRVCTL)
                .map_or_else(|| "/usr/local/bin/prlsrvctl".into(), PathBuf::from),
            prl_disk_tool: "/usr/local/bin/prl_disk_tool".into(),
            only,
            github,
            jenkins,
            s3_config: var(vars::S3_CONFIG).map(PathBuf::from),
            ssh_host: var(vars::SSH_HOST).unwrap_or_else(|| "localhost".to_owned()),
            repo,
        })
    }

    fn runs(&self, g: Group) -> bool {
        self.only.contains(&g)
    }
}

/// Check ids of the VM groups, skipped together when there is no VM.
const VM_CHECKS: &[(Group, &str)] = &[
    (Group::Parse, "parse.info"),
    (Group::Parse, "parse.status"),
    (Group::Exec, "exec.not-running"),
    (Group::Lifecycle, "lifecycle.new-mac"),
    (Group::Lifecycle, "lifecycle.snapshots"),
    (Group::Lifecycle, "lifecycle.start"),
    (Group::Exec, "exec.sh-c"),
    (Group::Exec, "exec.argv-model"),
    (Group::Exec, "exec.argv"),
    (Group::Exec, "exec.argv-newline"),
    (Group::Exec, "exec.stdin"),
    (Group::Exec, "exec.stdin-closed"),
    (Group::Exec, "exec.parallel"),
    (Group::Exec, "exec.guest-status"),
    (Group::Guest, "guest.spi-probe-idle"),
    (Group::Guest, "guest.spi-probe-busy"),
    (Group::Guest, "guest.root-probe-idle"),
    (Group::Guest, "guest.jit-delivery"),
    (Group::Guest, "guest.provision-twice"),
    (Group::Guest, "guest.runner-package"),
    (Group::Guest, "guest.runner-rearm"),
    (Group::Guest, "guest.plant-pat"),
    (Group::Parse, "parse.info_running"),
    (Group::Parse, "parse.status_running"),
    (Group::Parse, "parse.list_running"),
    (Group::Lifecycle, "lifecycle.suspend-resume"),
    (Group::Lifecycle, "lifecycle.stop"),
    (Group::Guest, "guest.scrub"),
    (Group::Lifecycle, "lifecycle.delete-keeps-build-disk"),
    (Group::Lifecycle, "lifecycle.stop-hung"),
];

/// Result of a run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The summary line (counts and the output directory).
    pub line: String,
    /// Ids of failed checks.
    pub failed: Vec<String>,
}

/// Run the suite with `settings`; prints one line per check and writes the output
/// directory. Errors only when the suite cannot start at all (output directory, simulator).
pub async fn run(settings: Settings) -> anyhow::Result<RunSummary> {
    let rec = Recorder::create(&settings.out)?;
    let work = tempfile::Builder::new()
        .prefix("mbacc")
        .tempdir_in("/tmp")
        .context("scratch directory")?;
    rec.cleanup_log(&format!("create dir {}", work.path().display()));
    // Canonical (macOS: /private/tmp/…), as Parallels reports disk paths.
    let work_dir = work
        .path()
        .canonicalize()
        .context("resolve the scratch directory")?;
    let env = Env::new(settings, rec, work_dir)?;
    env.rec.meta(
        "target",
        if env.is_sim() { "simulator" } else { "real" }.into(),
    );
    env.rec.meta(
        "host",
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default()
            .into(),
    );
    env.rec.meta("started_utc", utc_now().into());
    env.rec
        .meta("groups", format!("{:?}", env.settings.only).into());
    env.rec
        .meta("source_vm", env.settings.source_vm.clone().into());

    let s = &env.settings;
    if env.is_sim() {
        // The simulated host gets its source VM first, so the host listing is not empty.
        vm::prepare_sim_source(&env)?;
    }
    if s.runs(Group::Parse) {
        parse::host_checks(&env).await;
    }
    let needs_vm = s.runs(Group::Exec) || s.runs(Group::Guest) || s.runs(Group::Lifecycle);
    let mut vm = None;
    if needs_vm {
        let limit = env.pick(Duration::from_secs(900), Duration::from_secs(30));
        let mut made = None;
        env.rec
            .check("lifecycle.clone", limit, async |obs: &Obs| {
                let t = vm::create(&env, obs).await?;
                let detail = format!(
                    "{} cloned from {}; external disks detached, decoy build disk {}, net0 disconnected",
                    t.name,
                    t.source,
                    t.decoy.display()
                );
                made = Some(t);
                Ok(record::Verdict::Pass(detail))
            })
            .await;
        vm = made;
        match &vm {
            Some(t) => {
                with_vm(&env, t).await;
            }
            None => {
                for (g, id) in VM_CHECKS {
                    if s.runs(*g) {
                        env.rec.skip(id, "no throw-away VM (see lifecycle.clone)");
                    }
                }
            }
        }
    }
    if s.runs(Group::Launchd) {
        // The VM must be stopped for start_vm.sh to start it through the daemon.
        let vm_ref = vm.as_ref();
        if let Some(t) = vm_ref
            && vm::power(&env, &t.name).await.ok().flatten() != Some(PowerState::Stopped)
        {
            let _ = env
                .prl
                .stop(&t.name, marbled::hypervisor::StopMode::Kill)
                .await;
            let _ =
                vm::wait_power(&env, &t.name, PowerState::Stopped, Duration::from_secs(60)).await;
        }
        launchd::checks(&env, vm_ref).await;
    }
    if let Some(t) = &vm {
        if s.runs(Group::Lifecycle) {
            hung_stop(&env, t).await;
        }
        cleanup(&env, t).await;
    }
    if needs_vm {
        let obs = Obs::default();
        match vm::destroy_leftovers(&env, &obs).await {
            Ok(left) if !left.is_empty() => eprintln!("acceptance: deleted left-over VMs {left:?}"),
            Ok(_) => {}
            Err(e) => {
                eprintln!("acceptance: deleting left-over VMs failed: {e:#}; see cleanup.log")
            }
        }
    }
    if s.runs(Group::Apis) {
        apis::checks(&env).await;
    }
    env.rec
        .cleanup_log(&format!("removed dir {}", work.path().display()));
    drop(work);
    let line = env.rec.write_all()?;
    let failed = env
        .rec
        .records()
        .into_iter()
        .filter(|r| r.status == Status::Fail)
        .map(|r| r.id)
        .collect();
    Ok(RunSummary { line, failed })
}

/// The checks on the throw-away VM, ordered so it boots as few times as it can.
async fn with_vm(env: &Env, t: &vm::Throwaway) {
    let s = &env.settings;
    if s.runs(Group::Parse) {
        parse::vm_checks(env, t, PowerState::Stopped, "").await;
    }
    if s.runs(Group::Exec) {
        exec::not_running_check(env, t).await;
    }
    if s.runs(Group::Lifecycle) {
        lifecycle::new_mac(env, t).await;
        lifecycle::snapshots(env, t).await;
    }
    let running = lifecycle::start(env, t, "lifecycle.start").await;
    if !running {
        for (g, id) in VM_CHECKS.iter().skip_while(|(_, id)| *id != "exec.sh-c") {
            if s.runs(*g) && *id != "lifecycle.stop-hung" {
                env.rec.skip(
                    id,
                    "the throw-away VM did not come up (see lifecycle.start)",
                );
            }
        }
        return;
    }
    if s.runs(Group::Exec) {
        exec::running_checks(env, t).await;
    }
    if s.runs(Group::Guest) {
        guest::running_checks(env, t).await;
        runner::package_check(env, t).await;
        rearm::check(env, t).await;
    }
    let planted = if s.runs(Group::Guest) {
        guest::plant_pat(env, t).await
    } else {
        Status::Skipped
    };
    if s.runs(Group::Parse) {
        parse::vm_checks(env, t, PowerState::Running, "_running").await;
    }
    if s.runs(Group::Lifecycle) {
        lifecycle::suspend_resume(env, t).await;
    }
    lifecycle::stop(env, t).await;
    if s.runs(Group::Guest) {
        guest::scrub_check(env, t, planted).await;
    }
    if s.runs(Group::Lifecycle) {
        lifecycle::delete_keeps_build_disk(env, t).await;
    }
}

/// Start the VM again when needed (start_vm.sh may have started it), then the hung stop.
async fn hung_stop(env: &Env, t: &vm::Throwaway) {
    if vm::power(env, &t.name).await.ok().flatten() != Some(PowerState::Running)
        && !lifecycle::start(env, t, "lifecycle.start-again").await
    {
        env.rec.skip(
            "lifecycle.stop-hung",
            "the throw-away VM did not come up again",
        );
        return;
    }
    lifecycle::stop_hung(env, t).await;
}

/// Delete the throw-away VM and check the decoy build disk survived every delete.
async fn cleanup(env: &Env, t: &vm::Throwaway) {
    let limit = env.pick(Duration::from_secs(300), Duration::from_secs(30));
    env.rec
        .check("cleanup", limit, async |obs: &Obs| {
            vm::destroy(env, obs, &t.name).await?;
            let kept = t.decoy.exists();
            Ok(if kept {
                record::Verdict::Pass(format!(
                    "{} deleted; decoy build disk still there after every delete",
                    t.name
                ))
            } else {
                record::Verdict::Fail(format!(
                    "{} deleted, but the decoy build disk {} is gone: a delete removed an external disk",
                    t.name,
                    t.decoy.display()
                ))
            })
        })
        .await;
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = marbled::calendar::civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Entry point of the ignored test: settings from the environment, a multi-thread runtime,
/// the run. Returns the summary; the caller asserts on it.
pub fn run_from_env() -> anyhow::Result<RunSummary> {
    let settings = Settings::from_env()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(run(settings))
}
