//! Shared setup of policy `demand`'s end-to-end tests (`e2e_demand`, `e2e_demand_restart`):
//! the real daemon binary with `[github]` pointing at the fake GitHub and `[demand]` polling it.

use std::time::Duration;

use marble_tests::fake_github::FakeGitHub;

use marble_tests::harness::wait_until_blocking;

use super::{ROOT1, SimEnv, T, ctl, queue_mac14_job, wait_power};

/// The labels ROOT's mac14 jobs ask for.
pub const MAC14: [&str; 4] = ["self-hosted", "macOS", "ARM64", "mac14"];

/// The fake GitHub's token (never in a log: the tests check).
pub const TOKEN: &str = "ghp_e2eDemandTokenNeverLogged0123456789abcd";

/// A daemon with policy `demand` polling `gh` every `interval`, its host and config changed
/// by `prepare`.
pub fn demand_daemon(
    gh: &FakeGitHub,
    interval: Duration,
    prepare: impl FnOnce(&mut SimEnv),
) -> (SimEnv, marble_tests::harness::DaemonProcess) {
    let mut env = SimEnv::new();
    env.use_github(gh.url(), TOKEN);
    env.config.demand = Some(marbled::config::DemandSection {
        interval,
        ..marbled::config::DemandSection::default()
    });
    env.config.scheduler.policy = "demand".into();
    env.config.scheduler.inventory_interval = Duration::from_secs(1);
    prepare(&mut env);
    let daemon = env.spawn();
    (env, daemon)
}

/// A fake GitHub on its own runtime (kept alive by the caller).
pub fn fake_github() -> (tokio::runtime::Runtime, FakeGitHub) {
    FakeGitHub::start_on_own_runtime(TOKEN)
}

/// Requests the fake GitHub has answered for exactly `path`.
pub fn requests_to(gh: &FakeGitHub, path: &str) -> usize {
    gh.requests().iter().filter(|r| r.path == path).count()
}

/// The daemon's decision log (`status --json`), as JSON text.
pub fn decisions(daemon: &marble_tests::harness::DaemonProcess) -> String {
    let status = ctl(&daemon.socket, &["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    st["decisions"].to_string()
}

/// Now, in unix seconds.
pub fn unix_now() -> u64 {
    marble_tests::fake_github::now_ms() / 1000
}

/// ROOT1 booted for job 111 with its runner registered and listening; a second mac14 job
/// (114) is queued. Returns the daemon and ROOT1's runner: its registration's name and id.
pub fn booted_with_a_second_mac14_job_queued(
    gh: &FakeGitHub,
) -> (SimEnv, marble_tests::harness::DaemonProcess, String, u64) {
    queue_mac14_job(gh);
    let (env, daemon) = demand_daemon(gh, Duration::from_secs(5), |env| {
        env.runner_listens_after_jit(ROOT1);
    });
    wait_power(&daemon, ROOT1, "running");
    let mut runner = None;
    let registered = wait_until_blocking(T, || {
        runner = gh.runner_ids().into_iter().find_map(|id| {
            let name = gh.runner(id)?["name"].as_str()?.to_owned();
            name.contains(ROOT1).then_some((name, id))
        });
        runner.is_some()
    });
    assert!(registered, "no runner for {ROOT1}: {}", daemon.log_text());
    let (name, id) = runner.unwrap_or_default();
    assert!(
        wait_until_blocking(T, || decisions(&daemon)
            .contains("ready; its runner waits for a job until")),
        "{}",
        decisions(&daemon)
    );
    gh.set_run(9004, "queued");
    gh.set_job(9004, 114, "queued", &MAC14, "2026-01-01T10:02:00Z");
    (env, daemon, name, id)
}

/// ROOT1's runner `runner` takes job 111 of run 9001, as GitHub's jobs API then shows it.
pub fn runner_takes_job_111(gh: &FakeGitHub, runner: &str) {
    gh.set_run(9001, "in_progress");
    gh.start_job(
        9001,
        111,
        &MAC14,
        "2026-01-01T10:00:00Z",
        "2026-01-01T10:01:00Z",
        runner,
    );
}

/// Wait until the daemon has noted, from the demand feed, that ROOT1's runner took its job.
pub fn wait_marked_spent(daemon: &marble_tests::harness::DaemonProcess) {
    assert!(
        wait_until_blocking(T, || decisions(daemon)
            .contains("the demand feed shows its runner took its job")),
        "{}",
        decisions(daemon)
    );
}
