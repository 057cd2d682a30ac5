//! `SIGHUP` through the real daemon binary: the config file is read again and applied
//! without a restart — scheduler settings at once, the side tasks (`[metrics]` textfile,
//! `[demand]`, `[fleet]`) stopped and started again when their sections changed — and a
//! config with an error is refused with the old one kept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::path::Path;
use std::time::Duration;

use e2e_support::{SimEnv, T, ctl};
use marble_tests::harness::{DaemonProcess, wait_until_blocking};
use marbled::config::Config;
use nix::sys::signal::Signal;

fn rewrite_config(dir: &Path, config: &Config) {
    std::fs::write(
        dir.join("marbled.toml"),
        toml::to_string(config).expect("serialise config"),
    )
    .expect("write config");
}

fn policy(daemon: &DaemonProcess) -> String {
    let out = ctl(&daemon.socket, &["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    st["policy"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn sighup_applies_scheduler_and_side_task_changes_without_a_restart() {
    let mut env = SimEnv::new();
    let first = env.dir.path().join("first.prom");
    let second = env.dir.path().join("second.prom");
    env.config.metrics = Some(marbled::config::MetricsSection {
        textfile: Some(first.clone()),
        interval: Duration::from_secs(1),
    });
    let daemon = env.spawn();
    assert!(wait_until_blocking(T, || first.exists()), "no textfile");
    assert_eq!(policy(&daemon), "manual");

    // New textfile path and policy; SIGHUP.
    env.config.metrics = Some(marbled::config::MetricsSection {
        textfile: Some(second.clone()),
        interval: Duration::from_secs(1),
    });
    env.config.scheduler.policy = "demand".into();
    rewrite_config(env.dir.path(), &env.config);
    daemon.signal(Signal::SIGHUP);
    assert!(
        wait_until_blocking(T, || policy(&daemon) == "demand"),
        "policy not reloaded: {}",
        daemon.log_text()
    );
    assert!(
        wait_until_blocking(T, || second.exists()),
        "the metrics task was not restarted with the new path:\n{}",
        daemon.log_text()
    );
    let text = std::fs::read_to_string(&second).unwrap();
    assert!(text.contains("marble_vms_running"), "{text}");
    // The old task is gone: the first file is no longer rewritten.
    std::fs::remove_file(&first).unwrap();
    let restarted_line = "side tasks ([demand], [fleet], [metrics]) restarted";
    assert!(
        wait_until_blocking(T, || daemon.log_text().contains(restarted_line)),
        "{}",
        daemon.log_text()
    );
    // Two more rewrites of the new file prove time has passed for the old task too.
    let modified = || std::fs::metadata(&second).and_then(|m| m.modified()).ok();
    let before = modified();
    assert!(wait_until_blocking(T, || modified() != before));
    let before = modified();
    assert!(wait_until_blocking(T, || modified() != before));
    assert!(
        !first.exists(),
        "the old metrics task still writes its file"
    );

    // A reload that changes nothing the side tasks use leaves them alone.
    env.config.scheduler.busy_recheck = Duration::from_secs(90);
    rewrite_config(env.dir.path(), &env.config);
    daemon.signal(Signal::SIGHUP);
    assert!(wait_until_blocking(T, || {
        daemon.log_text().matches("configuration reloaded").count() >= 2
    }));
    assert_eq!(
        daemon.log_text().matches(restarted_line).count(),
        1,
        "side tasks restarted for a change they do not use"
    );

    // A config with an error is refused, naming the key; the running one stays.
    let mut broken = env.config.clone();
    broken.scheduler.policy = "fastest".into();
    rewrite_config(env.dir.path(), &broken);
    daemon.signal(Signal::SIGHUP);
    assert!(
        wait_until_blocking(T, || daemon.log_text().contains("config rejected")),
        "{}",
        daemon.log_text()
    );
    assert!(
        daemon.log_text().contains("scheduler.policy"),
        "{}",
        daemon.log_text()
    );
    assert_eq!(policy(&daemon), "demand");
}
