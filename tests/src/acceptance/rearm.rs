//! Check `guest.runner-rearm`: runner re-arm's real delivery path (`[scheduler]
//! jobs_per_boot` > 1, docs/CI.md "Runner re-arm") in the throw-away VM. The repository's
//! own guest runner script (`launchd/guest/marble-runner.sh`, what `runner install` puts in
//! the image) runs as root with a stand-in runner (`run.sh` records the config it was given
//! and whether an earlier registration's `.runner`/`.credentials` were still there, then
//! registers and exits at once, as a runner after its one job). The host delivers two
//! configs with the daemon's `deliver_jit` (the path `jobs::ci::rearm` takes after its mint):
//! the first before the script starts (as at a boot), the second after the first runner
//! exited. On a Mac the script runs in the background and must pick up the second config in
//! the same process, having removed the first registration's credentials. The configs are
//! dummies; nothing reaches GitHub (the clone's network is off).
//!
//! The simulator runs a background command to completion inside its exec (it has no
//! concurrent guest processes): there the script is started once per config, and each start
//! must end with "no further jit config … done for this boot" after its one runner — the
//! wait for a next config is run, but not the pick-up by a live process (said in the line).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use marbled::ci::github::JitConfig;
use marbled::ci::secret::Secret;
use serde_json::json;

use super::record::{Obs, Verdict};
use super::target::Env;
use super::vm::Throwaway;

/// Everything the check puts in the guest (removed at the end; goes with the VM anyway).
const DIR: &str = "/var/tmp/marble-acceptance-rearm";
/// Where the configs are delivered (not the runner's `/var/run/marble/jitconfig`, so a runner
/// script installed in the image never picks them up).
pub const REARM_JIT_PATH: &str = "/var/run/marble-acceptance/rearm/jitconfig";
/// The script under test.
pub const SCRIPT: &str = include_str!("../../../launchd/guest/marble-runner.sh");
/// A stand-in for `actions-runner/run.sh --jitconfig CONFIG`.
const RUN_SH: &str = "#!/bin/sh\n\
# marble acceptance: a runner that takes its one job at once\n\
if [ -e .runner ] || [ -e .credentials ]; then s=stale; else s=clean; fi\n\
echo \"run $s $2\" >> /var/tmp/marble-acceptance-rearm/runs.log\n\
echo registered > .runner\n\
echo dummy > .credentials\n\
exit 0\n";

/// The check.
pub async fn check(env: &Env, vm: &Throwaway) {
    let limit = env.pick(Duration::from_secs(300), Duration::from_secs(60));
    let name = vm.name.as_str();
    env.rec
        .check("guest.runner-rearm", limit, async |obs: &Obs| {
            let verdict = rearm_with(env, obs, name, SCRIPT).await;
            // Whatever happened: no script left waiting, nothing left in the guest.
            let _ = sh(env, obs, name, &cleanup_line(), None).await;
            verdict
        })
        .await;
}

fn cleanup_line() -> String {
    format!(
        "pkill -f {DIR}/marble-runner.sh; rm -rf {DIR} {}; true",
        REARM_JIT_PATH
            .rsplit_once('/')
            .map_or(REARM_JIT_PATH, |(d, _)| d)
    )
}

/// One guest shell line through raw `prlctl exec` (recorded in the check's observations).
async fn sh(
    env: &Env,
    obs: &Obs,
    vm: &str,
    line: &str,
    stdin: Option<&[u8]>,
) -> anyhow::Result<(i32, String)> {
    let t = env.pick(Duration::from_secs(60), Duration::from_secs(20));
    let out = env.prlctl(obs, &["exec", vm, line], stdin, t).await?;
    Ok((out.status.unwrap_or(-1), out.stdout_text()))
}

/// Start the script as `launchd` would (root, its environment, output to a log), in the
/// background; returns the pid the guest shell gave it.
async fn start_script(env: &Env, obs: &Obs, vm: &str, wait_s: u64) -> anyhow::Result<String> {
    let line = format!(
        "cd / && MARBLE_JIT_PATH={REARM_JIT_PATH} MARBLE_RUNNER_USER=root \
         MARBLE_RUNNER_DIR={DIR}/actions-runner MARBLE_JIT_WAIT_SECONDS={wait_s} \
         nohup /bin/sh {DIR}/marble-runner.sh >>{DIR}/script.log 2>&1 </dev/null & echo $!"
    );
    let (status, out) = sh(env, obs, vm, &line, None).await?;
    anyhow::ensure!(status == 0, "starting the script exited {status}");
    Ok(out.trim().to_owned())
}

async fn deliver(env: &Env, vm: &str, config: &str) -> anyhow::Result<()> {
    let jit = JitConfig {
        runner_id: 0,
        runner_name: "marble-acceptance-rearm".to_owned(),
        encoded_jit_config: Secret::new(config.to_owned()),
    };
    marbled::ci::github::runner::deliver_jit(env.prl.as_ref(), vm, &jit, REARM_JIT_PATH)
        .await
        .map_err(|e| anyhow::anyhow!("{}", marbled::chain::ErrorChain(&e)))
}

/// What the guest shows: the stand-in's runs, the script's log, and whether a
/// registration's files or a config are still there.
#[derive(Debug, Default)]
struct Seen {
    runs: Vec<String>,
    log: String,
    creds_left: bool,
    config_left: bool,
}

async fn look(env: &Env, obs: &Obs, vm: &str) -> anyhow::Result<Seen> {
    let (_, runs) = sh(env, obs, vm, &format!("cat {DIR}/runs.log"), None).await?;
    let (_, log) = sh(env, obs, vm, &format!("cat {DIR}/script.log"), None).await?;
    let (_, left) = sh(
        env,
        obs,
        vm,
        &format!(
            "ls -a {DIR}/actions-runner; test -e {REARM_JIT_PATH} && echo CONFIG; \
             test -e {REARM_JIT_PATH}.ready && echo CONFIG"
        ),
        None,
    )
    .await?;
    Ok(Seen {
        runs: runs.lines().map(str::to_owned).collect(),
        log,
        creds_left: left
            .lines()
            .any(|l| matches!(l.trim(), ".runner" | ".credentials")),
        config_left: left.lines().any(|l| l.trim() == "CONFIG"),
    })
}

/// Poll until the stand-in ran `n` times and the script logged the runner's exit `n` times.
async fn until_runs(env: &Env, obs: &Obs, vm: &str, n: usize) -> anyhow::Result<Seen> {
    let deadline = Instant::now() + env.pick(Duration::from_secs(90), Duration::from_secs(10));
    loop {
        let seen = look(env, obs, vm).await?;
        let exits = seen.log.matches("runner exited with status").count();
        // The script removes the used credentials just after logging the exit.
        let settled = seen.runs.len() >= n && exits >= n && !seen.creds_left;
        if settled || Instant::now() >= deadline {
            return Ok(seen);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The check's body with `script` as the guest's runner script (the repository's, or in
/// the suite's own tests a broken one, to show the check fails on it).
pub async fn rearm_with(env: &Env, obs: &Obs, vm: &str, script: &str) -> anyhow::Result<Verdict> {
    let (a, b) = (
        format!("marble-acceptance-config-A-{}", std::process::id()),
        format!("marble-acceptance-config-B-{}", std::process::id()),
    );
    sh(env, obs, vm, &cleanup_line(), None).await?;
    for (path, body) in [
        (format!("{DIR}/marble-runner.sh"), script),
        (format!("{DIR}/actions-runner/run.sh"), RUN_SH),
    ] {
        let (status, _) = sh(
            env,
            obs,
            vm,
            &format!("mkdir -p {DIR}/actions-runner && cat > {path} && chmod 755 {path}"),
            Some(body.as_bytes()),
        )
        .await
        .with_context(|| format!("writing {path}"))?;
        anyhow::ensure!(status == 0, "writing {path} exited {status}");
    }
    // A simulated background script ends inside its exec: a short wait is one of 2 s.
    let wait_s = if env.is_sim() { 2 } else { 120 };

    deliver(env, vm, &a).await.context("first delivery")?;
    let pid = start_script(env, obs, vm, wait_s).await?;
    let first = until_runs(env, obs, vm, 1).await?;
    let alive = if env.is_sim() {
        None
    } else {
        let (status, _) = sh(env, obs, vm, &format!("kill -0 {pid}"), None).await?;
        Some(status == 0)
    };
    deliver(env, vm, &b)
        .await
        .context("second delivery (the re-arm)")?;
    if env.is_sim() {
        start_script(env, obs, vm, wait_s).await?;
    }
    let second = until_runs(env, obs, vm, 2).await?;
    let starts = second.log.matches("starting one ephemeral runner").count();
    let done_early = first.log.contains("done for this boot") && !env.is_sim();
    obs.note(
        "guest",
        json!({"runs": second.runs, "script_log": second.log, "alive_after_first": alive,
               "creds_left_after_first": first.creds_left, "creds_left_after_second": second.creds_left,
               "config_left": second.config_left}),
    );
    let want = [format!("run clean {a}"), format!("run clean {b}")];
    let mut wrong = Vec::new();
    if second.runs != want {
        wrong.push(format!(
            "the runner was given {:?}, expected {want:?} (\"stale\": an earlier registration's files were still there)",
            second.runs
        ));
    }
    if first.creds_left || second.creds_left {
        wrong.push(
            "a used registration's .runner/.credentials were not removed after its runner exited"
                .into(),
        );
    }
    if second.config_left {
        wrong.push(format!(
            "a delivered config or its ready marker is still at {REARM_JIT_PATH}"
        ));
    }
    if alive == Some(false) || done_early {
        wrong.push(format!(
            "the script exited after its first runner instead of waiting for a next config (pid {pid})"
        ));
    }
    if starts != 2 {
        wrong.push(format!("the script started {starts} runner(s), expected 2"));
    }
    if env.is_sim() && second.log.matches("no further jit config").count() != 2 {
        wrong.push("a simulated run did not wait for a next config after its runner".into());
    }
    Ok(if !wrong.is_empty() {
        Verdict::Fail(wrong.join("; "))
    } else if env.is_sim() {
        Verdict::Pass(
            "two configs delivered, each taken by one stand-in runner with no earlier credentials left; simulator: the script ran once per config (no concurrent guest processes), each waited for a next one".into(),
        )
    } else {
        Verdict::Pass(format!(
            "two configs delivered into one live runner script (pid {pid}): it took the second after its first runner exited, the first registration's credentials removed in between"
        ))
    })
}
