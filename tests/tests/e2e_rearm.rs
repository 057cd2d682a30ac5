//! Runner re-arm end to end (issue 17, "Fewer cold starts"): the real daemon with policy
//! `demand`, `[scheduler] jobs_per_boot = 2` and `[github]` on the fake GitHub. A queued mac14
//! job boots the mac14 VM with a JIT runner; the runner takes the job (a `Runner.Worker` in
//! the guest); when it ends while a second mac14 job is queued, the daemon mints a second JIT
//! config and delivers it into the running VM instead of stopping it and booting again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::time::Duration;

use e2e_support::{JIT_PATH, ROOT1, SimEnv, T, WORKER, queue_mac14_job, wait_power};
use marble_tests::fake_github::FakeGitHub;
use marble_tests::harness::wait_until_blocking;

const TOKEN: &str = "ghp_e2eRearmTokenNeverLogged0123456789abcdef";
const MINT: &str = "/repos/root-project/root/actions/runners/generate-jitconfig";
const MAC14: [&str; 4] = ["self-hosted", "macOS", "ARM64", "mac14"];

#[test]
fn a_used_runner_is_re_armed_in_the_running_vm_for_the_next_queued_job() {
    let (_rt, gh) = FakeGitHub::start_on_own_runtime(TOKEN);
    queue_mac14_job(&gh);
    let mut env = SimEnv::new();
    env.runner_listens_after_jit(ROOT1);
    env.use_github(gh.url(), TOKEN);
    env.config.demand = Some(marbled::config::DemandSection {
        interval: Duration::from_secs(5),
        ..marbled::config::DemandSection::default()
    });
    let s = &mut env.config.scheduler;
    s.policy = "demand".into();
    s.inventory_interval = Duration::from_secs(1);
    s.busy_recheck = Duration::from_secs(1);
    s.jobs_per_boot = 2;
    // Only the job boots: no warm runners.
    s.warm_idle_hosts = false;
    s.warm_window = Duration::ZERO;
    let daemon = env.spawn();

    wait_power(&daemon, ROOT1, "running");
    let mints = || {
        gh.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path == MINT)
            .count()
    };
    let deliveries = || {
        env.host
            .invocations()
            .unwrap()
            .into_iter()
            .filter(|i| {
                i.argv.first().map(String::as_str) == Some("exec")
                    && i.argv.get(1).map(String::as_str) == Some(ROOT1)
                    && i.argv.join(" ").contains(&format!("cat > {JIT_PATH}"))
            })
            .count()
    };
    let listening = || {
        env.host
            .processes(ROOT1)
            .unwrap()
            .iter()
            .any(|p| p.command.contains("Runner.Listener"))
    };
    assert!(
        wait_until_blocking(T, || deliveries() == 1 && listening()),
        "first config never delivered\n{}",
        daemon.log_text()
    );
    let first = gh.runner_ids();
    assert_eq!(first.len(), 1, "{first:?}");

    // The runner takes job 111: GitHub shows it running, the guest runs its worker.
    gh.set_busy(first[0], true);
    gh.set_run(9001, "in_progress");
    gh.set_job(9001, 111, "in_progress", &MAC14, "2026-01-01T10:00:00Z");
    env.host.add_process(ROOT1, WORKER).unwrap();
    let busy = || {
        let out = e2e_support::ctl(&daemon.socket, &["vm", "show", ROOT1, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        v["busy"].to_string().contains("busy")
    };
    assert!(wait_until_blocking(T, busy), "{}", daemon.log_text());

    // Job 111 ends (the ephemeral runner exits and GitHub drops it) while job 222 is queued.
    gh.set_run(9004, "queued");
    gh.set_job(9004, 222, "queued", &MAC14, "2026-01-01T11:00:00Z");
    gh.set_job(9001, 111, "completed", &MAC14, "2026-01-01T10:00:00Z");
    gh.set_run(9001, "completed");
    gh.remove_runner(first[0]);
    env.host.remove_processes(ROOT1, "Runner").unwrap();

    assert!(
        wait_until_blocking(T, || mints() == 2 && deliveries() == 2 && listening()),
        "no second runner in the running VM: {} mint(s), {} deliveries\n{}",
        mints(),
        deliveries(),
        daemon.log_text()
    );
    let power: Vec<Vec<String>> = env.power_calls();
    let starts = power.iter().filter(|a| a[0] == "start").count();
    let stops = power.iter().filter(|a| a[0] == "stop").count();
    assert_eq!((starts, stops), (1, 0), "one boot, no stop: {power:?}");
    let second = gh.runner_ids();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second[0], first[0], "a fresh registration");
}
