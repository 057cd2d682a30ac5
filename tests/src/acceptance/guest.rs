//! Group `guest`: the daemon's in-guest work, run by the daemon's own library functions
//! against the throw-away VM: busy probes (`jobs::JobContext::probe` with the default
//! `[probe]` commands), JIT config delivery (`ci::runner::deliver_jit`), one provisioning
//! step run twice (`provision::run_profile`), and the image scrub (`images::push_vm`, up to
//! the upload, which goes to a closed port on purpose).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use marble_proto::Team;
use marbled::ci::github::JitConfig;
use marbled::ci::secret::Secret;
use marbled::hypervisor::Hypervisor;
use marbled::images::{ImageError, ImageName, ImageStore, Phase, Progress, PushVmOptions};
use marbled::sched::ProbeResult;
use serde_json::json;

use super::record::{Obs, Verdict};
use super::target::Env;
use super::vm::Throwaway;

/// Guest path the dummy JIT config goes to: not the daemon's default
/// (`/var/run/marble/jitconfig`), so a runner script in the image never picks it up.
pub const JIT_PATH: &str = "/var/run/marble-acceptance/jitconfig";

/// Where the planted secret for the scrub lives (matches the default scrub glob
/// `/Users/*/.PAT`).
pub const PLANTED_PAT: &str = "/Users/marble-acceptance/.PAT";

/// The provisioning profile run twice: one step appending a line to a guest file.
pub const PROFILE: &str = r#"
[[step]]
name = "marble-acceptance-twice"
command = "echo ran >> /var/tmp/marble-acceptance-provision.log"
timeout = "2m"
"#;

fn t(env: &Env) -> Duration {
    env.pick(Duration::from_secs(60), Duration::from_secs(10))
}

fn job_context(env: &Env) -> marbled::jobs::JobContext {
    marbled::jobs::JobContext::from_config(&marbled::Config::default(), env.prl.clone())
}

/// One line through `prlctl exec VM LINE` (a single argument is a shell command line in
/// every model of exec), for the suite's own guest inspections.
async fn guest_line(env: &Env, obs: &Obs, vm: &str, line: &str) -> anyhow::Result<(i32, String)> {
    let out = env.prlctl(obs, &["exec", vm, line], None, t(env)).await?;
    Ok((out.status.unwrap_or(-1), out.stdout_text()))
}

/// The probe checks, then JIT delivery and provisioning; plants the `.PAT` for the scrub.
pub async fn running_checks(env: &Env, vm: &Throwaway) {
    let name = vm.name.as_str();
    let ctx = job_context(env);

    env.rec
        .check("guest.spi-probe-idle", t(env) * 3, async |obs: &Obs| {
            env.stop_fake_agents(obs, name).await?;
            let none = ctx.probe(name, Team::Spi).await;
            env.start_fake_agent(obs, name, false).await?;
            let agents = env.fake_agents(obs, name).await?;
            let idle_agent = ctx.probe(name, Team::Spi).await;
            env.stop_fake_agents(obs, name).await?;
            obs.note(
                "probe results",
                json!({"no_agent": format!("{none:?}"), "idle_agent": format!("{idle_agent:?}"), "agents": agents}),
            );
            if agents.is_empty() {
                return Ok(Verdict::Fail("the fake idle agent did not start in the guest".into()));
            }
            Ok(match (&none, &idle_agent) {
                (ProbeResult::Idle, ProbeResult::Idle) => {
                    Verdict::Pass("no agent: idle; agent without a child: idle".into())
                }
                _ => Verdict::Fail(format!(
                    "expected idle twice; no agent: {none:?}, idle agent: {idle_agent:?}"
                )),
            })
        })
        .await;

    env.rec
        .check("guest.spi-probe-busy", t(env) * 3, async |obs: &Obs| {
            env.start_fake_agent(obs, name, true).await?;
            let agents = env.fake_agents(obs, name).await?;
            let busy = ctx.probe(name, Team::Spi).await;
            env.stop_fake_agents(obs, name).await?;
            obs.note(
                "probe result",
                json!({"busy_agent": format!("{busy:?}"), "agents": agents}),
            );
            if agents.is_empty() {
                return Ok(Verdict::Fail(
                    "the fake busy agent did not start in the guest".into(),
                ));
            }
            Ok(match busy {
                ProbeResult::Busy(why) => Verdict::Pass(format!("busy: {why}")),
                other => Verdict::Fail(format!("agent with a child probed as {other:?}")),
            })
        })
        .await;

    env.rec
        .check("guest.root-probe-idle", t(env), async |obs: &Obs| {
            // No Runner.Worker runs in the throw-away VM (its network is off): the ROOT probe
            // must say idle, i.e. it must not find its own command line.
            let r = ctx.probe(name, Team::Root).await;
            obs.note("probe result", format!("{r:?}").into());
            Ok(match r {
                ProbeResult::Idle => Verdict::Pass("idle".into()),
                other => Verdict::Fail(format!("no Runner.Worker runs, probe said {other:?}")),
            })
        })
        .await;

    env.rec
        .check("guest.jit-delivery", t(env) * 3, async |obs: &Obs| {
            jit(env, obs, name).await
        })
        .await;

    env.rec
        .check("guest.provision-twice", t(env) * 4, async |obs: &Obs| {
            provision(env, obs, name).await
        })
        .await;
}

async fn jit(env: &Env, obs: &Obs, vm: &str) -> anyhow::Result<Verdict> {
    let dummy = format!("marble-acceptance-dummy-jit-{}", std::process::id());
    let jit = JitConfig {
        runner_id: 0,
        runner_name: "marble-acceptance".to_owned(),
        encoded_jit_config: Secret::new(dummy.clone()),
    };
    let delivered =
        marbled::ci::github::runner::deliver_jit(env.prl.as_ref(), vm, &jit, JIT_PATH).await;
    let (file_ok, dir_ok, ready, content) = jit_guest_view(env, obs, vm).await?;
    let intact = content.as_deref() == Some(dummy.as_str());
    obs.note(
        "guest view",
        json!({"file_0600_root": file_ok, "dir_0700_root": dir_ok, "ready_marker": ready, "content_matches": intact}),
    );
    Ok(match delivered {
        Err(e) => Verdict::Fail(marbled::chain::ErrorChain(&e).to_string()),
        Ok(()) if file_ok && dir_ok && ready && intact => Verdict::Pass(
            "delivered on stdin; file 0600 root, directory 0700 root, ready marker present, content intact".into(),
        ),
        Ok(()) => Verdict::Fail(format!(
            "deliver_jit succeeded but the guest shows: file 0600 root {file_ok}, dir 0700 root {dir_ok}, ready {ready}, content intact {intact}"
        )),
    })
}

/// The suite's own look at the delivered config: (file 0600 root, directory 0700 root,
/// ready marker, content). Real guest: `ls -ld` and `cat` through exec (the same on macOS
/// and Linux). Simulator: the guest files' host modes (the simulator does not model owners,
/// so the owner is the daemon's own `stat` check alone).
async fn jit_guest_view(
    env: &Env,
    obs: &Obs,
    vm: &str,
) -> anyhow::Result<(bool, bool, bool, Option<String>)> {
    const DIR: &str = "/var/run/marble-acceptance";
    if let Some(sim) = env.sim() {
        let err = |e: crate::prlsim::SimError| anyhow::anyhow!("simulator: {e}");
        let file = sim.guest_file_mode(vm, JIT_PATH).map_err(err)?;
        let dir = sim.guest_file_mode(vm, DIR).map_err(err)?;
        let ready = sim
            .read_guest_file(vm, &format!("{JIT_PATH}.ready"))
            .map_err(err)?
            .is_some();
        let content = sim
            .read_guest_file(vm, JIT_PATH)
            .map_err(err)?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        obs.note(
            "simulated modes",
            json!({"file": file.map(|m| format!("{m:o}")), "dir": dir.map(|m| format!("{m:o}"))}),
        );
        return Ok((file == Some(0o600), dir == Some(0o700), ready, content));
    }
    let (_, listing) = guest_line(
        env,
        obs,
        vm,
        &format!("ls -ld {JIT_PATH} {DIR}; test -e {JIT_PATH}.ready && echo ready"),
    )
    .await?;
    let (status, content) = guest_line(env, obs, vm, &format!("cat {JIT_PATH}")).await?;
    let file = listing.lines().find(|l| l.trim_end().ends_with(JIT_PATH));
    let dir = listing.lines().find(|l| l.trim_end().ends_with(DIR));
    Ok((
        file.is_some_and(|l| mode_owner(l) == Some(("-rw-------", "root"))),
        dir.is_some_and(|l| mode_owner(l) == Some(("drwx------", "root"))),
        listing.lines().any(|l| l.trim() == "ready"),
        (status == 0).then_some(content),
    ))
}

/// `(mode, owner)` from an `ls -l` line (`-rw-------  1 root  wheel …`).
pub fn mode_owner(line: &str) -> Option<(&str, &str)> {
    let mut w = line.split_whitespace();
    let mode = w.next()?;
    let _links = w.next()?;
    let owner = w.next()?;
    // macOS appends `@` or `+` for extended attributes / ACLs.
    Some((mode.trim_end_matches(['@', '+', '.']), owner))
}

async fn provision(env: &Env, obs: &Obs, vm: &str) -> anyhow::Result<Verdict> {
    use marbled::provision::{Profile, run_profile};
    let profile = Profile::parse(PROFILE, Path::new("."), Path::new("acceptance.toml"))
        .context("the suite's profile")?;
    let major = marbled::provision::guest_macos_major(env.prl.as_ref(), vm)
        .await
        .context("guest macOS version")?;
    let mut events = Vec::new();
    let first = run_profile(env.prl.as_ref(), vm, &profile, major, &mut |e| {
        events.push(format!("{e:?}"));
    })
    .await
    .context("first run")?;
    let second = run_profile(env.prl.as_ref(), vm, &profile, major, &mut |e| {
        events.push(format!("{e:?}"));
    })
    .await
    .context("second run")?;
    let (_, log) = guest_line(env, obs, vm, "cat /var/tmp/marble-acceptance-provision.log").await?;
    obs.note(
        "runs",
        json!({"macos": major, "first": format!("{:?}", first.steps), "second": format!("{:?}", second.steps), "events": events, "guest_log": log}),
    );
    env.rec.meta("guest_macos_major", major.into());
    Ok(
        if first.ran() == ["marble-acceptance-twice"] && second.ran().is_empty() && log == "ran\n" {
            Verdict::Pass(format!(
                "macOS {major}: ran once, skipped as already done the second time"
            ))
        } else {
            Verdict::Fail(format!(
                "first run ran {:?}, second ran {:?}, guest log {log:?}",
                first.ran(),
                second.ran()
            ))
        },
    )
}

/// The fake token planted for the scrub.
const FAKE_PAT: &str = "ghp_marbleacceptancefake";

/// Plant a fake PAT where the default scrub list looks (`/Users/*/.PAT`), for
/// [`scrub_check`] after the VM stops.
pub async fn plant_pat(env: &Env, vm: &Throwaway) -> super::record::Status {
    env.rec
        .check("guest.plant-pat", t(env), async |obs: &Obs| {
            let (status, out) = guest_line(
                env,
                obs,
                &vm.name,
                &format!(
                    "mkdir -p /Users/marble-acceptance && echo {FAKE_PAT} > {PLANTED_PAT} && cat {PLANTED_PAT}"
                ),
            )
            .await?;
            Ok(if status == 0 && out.trim() == FAKE_PAT {
                Verdict::Pass(format!("{PLANTED_PAT} planted"))
            } else {
                Verdict::Fail(format!("planting {PLANTED_PAT}: exit {status}, read back {out:?}"))
            })
        })
        .await
}

/// The daemon's push pipeline on the (stopped) throw-away VM up to the upload: clone,
/// start, scrub with the default list, verify, stop, delete snapshots. The S3 endpoint is a
/// closed local port, so the upload fails right after the scan; reaching the scan means the
/// scrub verified that nothing on the list (the planted `.PAT` included) remains.
pub async fn scrub_check(env: &Env, vm: &Throwaway, planted: super::record::Status) {
    if planted != super::record::Status::Pass {
        env.rec.skip(
            "guest.scrub",
            "nothing planted to scrub (see guest.plant-pat)",
        );
        return;
    }
    let limit = env.pick(Duration::from_secs(600), Duration::from_secs(90));
    env.rec
        .check("guest.scrub", limit, async |obs: &Obs| {
            let secret = env.work.join("dead-s3.secret");
            std::fs::write(&secret, "access_key = acceptance\nsecret_key = acceptance-not-a-secret\n")
                .context("write the dummy S3 secret")?;
            std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .context("chmod the dummy S3 secret")?;
            let cfg = marbled::images::ImageStoreConfig {
                // Nothing listens on port 9 (discard) of loopback: the upload fails at once.
                endpoint: Some("http://127.0.0.1:9".to_owned()),
                credentials: vec![marbled::images::CredentialSource::SecretFile],
                secret_file: Some(secret),
                state_dir: Some(env.work.join("push-state")),
                ..marbled::images::ImageStoreConfig::default()
            };
            let store = ImageStore::new(cfg).await.context("image store")?;
            let image = ImageName::parse(&format!(
                "{}-ACCEPTANCE-{}",
                today(),
                vm.name
            ))?;
            env.rec.cleanup_log(&format!("create vm {image}"));
            let opts = PushVmOptions {
                date: today(),
                host_name: "acceptance".to_owned(),
                boot_timeout: env.pick(Duration::from_secs(300), Duration::from_secs(30)),
                exec_timeout: t(env),
                image: Some(image.clone()),
            };
            let phases = std::sync::Mutex::new(Vec::<Phase>::new());
            // Simulator only: at the scan the scrubbed clone is stopped and not yet deleted;
            // its guest files are host files there, so look for the planted token directly.
            let pat_in_clone = std::sync::Mutex::new(None::<bool>);
            let sink = |p: Progress| {
                if let Ok(mut v) = phases.lock()
                    && v.last() != Some(&p.phase)
                {
                    v.push(p.phase);
                    if p.phase == Phase::Scan
                        && let Some(sim) = env.sim()
                        && let Ok(mut seen) = pat_in_clone.lock()
                    {
                        *seen = sim
                            .read_guest_file(image.as_str(), PLANTED_PAT)
                            .ok()
                            .map(|f| f.is_some());
                    }
                }
            };
            let hv: Arc<dyn Hypervisor> = env.prl.clone();
            let result = marbled::images::push_vm(&store, hv, &vm.name, &opts, &sink).await;
            let phases = phases.lock().map(|p| p.clone()).unwrap_or_default();
            let pat_in_clone = pat_in_clone.lock().map(|p| *p).unwrap_or(None);
            let clone_left = super::vm::power(env, image.as_str()).await?.is_some();
            if !clone_left {
                env.rec.cleanup_log(&format!("removed vm {image}"));
            }
            obs.note(
                "push",
                json!({"phases": format!("{phases:?}"), "result": match &result {
                    Ok(r) => format!("unexpected success: {:?}", r.scrubbed),
                    Err(e) => marbled::chain::ErrorChain(e).to_string(),
                }, "clone_left_behind": clone_left, "planted_pat_in_clone_at_upload (simulator)": pat_in_clone}),
            );
            let scanned = phases.contains(&Phase::Scan);
            Ok(match result {
                Err(ImageError::ScrubIncomplete { remaining, .. }) => {
                    Verdict::Fail(format!("scrub incomplete, still present: {remaining:?}"))
                }
                _ if clone_left => Verdict::Fail(format!("the push clone {image} was left behind")),
                _ if pat_in_clone == Some(true) => Verdict::Fail(format!(
                    "the scrub passed its own check, but {PLANTED_PAT} is still in the clone at upload time"
                )),
                Err(e) if !scanned => Verdict::Fail(format!(
                    "the pipeline stopped before the upload: {}",
                    marbled::chain::ErrorChain(&e)
                )),
                _ => Verdict::Pass(
                    "clone scrubbed and verified (nothing on the scrub list left), stopped, deleted; upload refused by the closed port as intended".into(),
                ),
            })
        })
        .await;
}

/// Today's date, `YYYY-MM-DD` (UTC), for image names.
pub fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    let (y, m, d) = marbled::calendar::civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_lines_give_mode_and_owner() {
        assert_eq!(
            mode_owner("-rw-------  1 root  wheel  42 Jan  1 00:00 /var/run/x"),
            Some(("-rw-------", "root"))
        );
        assert_eq!(
            mode_owner("drwx------@ 3 root  wheel  96 Jan  1 00:00 /var/run"),
            Some(("drwx------", "root"))
        );
        assert_eq!(mode_owner("ls: x: No such file"), Some(("ls:", "No")));
        assert_eq!(mode_owner(""), None);
    }
}
