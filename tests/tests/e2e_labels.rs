//! Runner labels end to end (issue 17, fault 4): the real daemon with policy `demand`, the
//! fake GitHub, and a `[labels]` rule giving the mac14 VM `X64` (ROOT's workflow asks for
//! mac14 with `X64`). The queued X64 job boots that VM and its JIT registration carries the
//! configured labels — the same ones the scheduler matched; a `mac-beta` job no VM of this
//! host offers is reported in `status` and in the metrics, and boots nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::time::Duration;

use e2e_support::{ROOT1, ROOT2, SimEnv, T, ctl, power, vm_list, wait_power};
use marble_tests::fake_github::FakeGitHub;
use marble_tests::harness::wait_until_blocking;

const TOKEN: &str = "ghp_e2eLabelsTokenNeverLogged0123456789abcd";
const JIT: &str = "/repos/root-project/root/actions/runners/generate-jitconfig";

#[test]
fn the_registration_carries_the_configured_labels_and_status_names_jobs_nobody_serves() {
    let (_rt, gh) = FakeGitHub::start_on_own_runtime(TOKEN);
    gh.set_run(9001, "queued");
    gh.set_job(
        9001,
        111,
        "queued",
        &["self-hosted", "macOS", "X64", "mac14"],
        "2026-01-01T10:00:00Z",
    );
    gh.set_job(
        9001,
        112,
        "queued",
        &["self-hosted", "macOS", "ARM64", "mac-beta"],
        "2026-01-01T10:01:00Z",
    );

    let mut env = SimEnv::new();
    env.use_github(gh.url(), TOKEN);
    env.runner_listens_after_jit(ROOT1);
    env.config.demand = Some(marbled::config::DemandSection {
        interval: Duration::from_secs(5),
        ..marbled::config::DemandSection::default()
    });
    env.config.scheduler.policy = "demand".into();
    env.config.scheduler.inventory_interval = Duration::from_secs(1);
    env.config.labels.vms = vec![marbled::config::LabelRule {
        name: "*-ROOT-VM-macOS-14".into(),
        replace: None,
        add: vec!["X64".into()],
    }];
    let daemon = env.spawn();

    // The X64 job boots the mac14 VM (covered only by the rule), registered with its labels.
    wait_power(&daemon, ROOT1, "running");
    let mut posts = Vec::new();
    assert!(
        wait_until_blocking(T, || {
            posts = (gh.requests().into_iter())
                .filter(|r| r.method == "POST" && r.path == JIT)
                .collect();
            !posts.is_empty()
        }),
        "no JIT registration\ndaemon log:\n{}",
        daemon.log_text()
    );
    let body: serde_json::Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(
        body["labels"],
        serde_json::json!(["self-hosted", "macOS", "ARM64", "mac14", "X64"])
    );

    // The mac-beta job: a standing status line with its labels, count and age; a gauge.
    let mut decisions = String::new();
    assert!(
        wait_until_blocking(T, || {
            let out = ctl(&daemon.socket, &["status", "--json"]);
            let st: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            decisions = st["decisions"].to_string();
            decisions.contains("1 queued job(s) ask for [arm64, mac-beta, macos, self-hosted]")
        }),
        "decisions: {decisions}"
    );
    assert!(decisions.contains("2026-01-01T10:01:00Z"), "{decisions}");
    let text = ctl(&daemon.socket, &["status"]).stdout;
    assert!(text.contains("mac-beta"), "{text}");
    let metrics = ctl(&daemon.socket, &["metrics"]).stdout;
    assert!(
        metrics.contains(
            "marble_demand_unservable_jobs{labels=\"arm64,mac-beta,macos,self-hosted\"} 1"
        ),
        "{metrics}"
    );
    // Nothing boots for it: the mac15 VM stays off.
    assert_eq!(power(&vm_list(&daemon.socket), ROOT2), "stopped");
}
