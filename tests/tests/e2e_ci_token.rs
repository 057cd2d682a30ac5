//! The GitHub token's source failing at start-up (issue 13 §2): a LaunchDaemon has no
//! unlocked login keychain, and a token file can be unreadable or too open when launchd
//! starts the daemon. The real daemon binary must come up anyway (launchd's KeepAlive would
//! restart a daemon that exits, over and over), say in `marblectl status` and the metrics
//! that the GitHub side is unavailable and why, retry the source with back-off, and use the
//! token as soon as it can be read — a fixed file or an unlocked keychain — without a
//! restart.
//!
//! The Keychain is played by `FakeKeychain`: a `security` program answering
//! `find-generic-password` as Apple's tool does from a daemon (exit 36 for a locked keychain,
//! 44 for one not in the search list; see `tests/src/fake_keychain.rs`). Nothing sleeps for a
//! fixed time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::time::Duration;

use e2e_support::{ROOT1, SimEnv, T, ctl, power, queue_mac14_job, vm_list, wait_power};
use marble_tests::fake_github::FakeGitHub;
use marble_tests::fake_keychain::{FakeKeychain, KeychainState};
use marble_tests::harness::{DaemonProcess, wait_until_blocking};

const TOKEN: &str = "ghp_e2eTokenSourceNeverLogged0123456789abc";

/// Policy `demand`, polling `[github]` every 5 s.
fn poll_demand(env: &mut SimEnv) {
    env.config.demand = Some(marbled::config::DemandSection {
        interval: Duration::from_secs(5),
        ..marbled::config::DemandSection::default()
    });
    env.config.scheduler.policy = "demand".into();
    env.config.scheduler.inventory_interval = Duration::from_secs(1);
}

/// `marblectl status` once its GitHub line matches `want` (the last output either way).
fn status_when(daemon: &DaemonProcess, want: impl Fn(&str) -> bool) -> (bool, String) {
    let mut text = String::new();
    let seen = wait_until_blocking(T, || {
        text = ctl(&daemon.socket, &["status"]).stdout;
        text.lines()
            .any(|l| l.trim_start().starts_with("github:") && want(l))
    });
    (seen, text)
}

/// The value of the `marble_ci_available{system="github"}` gauge.
fn github_available_gauge(daemon: &DaemonProcess) -> Option<f64> {
    let out = ctl(&daemon.socket, &["metrics"]);
    marble_tests::prometheus::parse_exposition(&out.stdout)
        .unwrap_or_else(|err| panic!("{err}\n{}", out.stdout));
    out.stdout
        .lines()
        .find(|l| l.starts_with("marble_ci_available{system=\"github\"} "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn a_token_file_readable_by_others_at_start_up_leaves_the_daemon_up_until_it_is_fixed() {
    use std::os::unix::fs::PermissionsExt;
    let (_rt, gh) = FakeGitHub::start_on_own_runtime(TOKEN);
    queue_mac14_job(&gh);
    let mut env = SimEnv::new();
    env.use_github(gh.url(), TOKEN);
    poll_demand(&mut env);
    let token_file = env
        .config
        .github
        .as_ref()
        .and_then(|g| g.token_file.clone())
        .unwrap();
    // The operator copied the token with the wrong mode: the daemon refuses to use it.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();

    // It comes up anyway (before: it exited with a config error, and launchd restarted it
    // into the same error forever).
    let daemon = env.spawn();
    let (seen, text) = status_when(&daemon, |l| l.contains("unavailable"));
    assert!(seen, "{text}\nlog:\n{}", daemon.log_text());
    let line = text.lines().find(|l| l.contains("github:")).unwrap();
    assert!(line.contains("chmod 600"), "{line}");
    assert_eq!(github_available_gauge(&daemon), Some(0.0));
    assert_eq!(power(&vm_list(&daemon.socket), ROOT1), "stopped");
    assert!(gh.requests().is_empty(), "GitHub called without a token");

    // Fixed: picked up by the retry, no restart; the queued job gets its VM.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (seen, text) = status_when(&daemon, |l| {
        l.contains("available") && !l.contains("unavailable")
    });
    assert!(seen, "{text}\nlog:\n{}", daemon.log_text());
    assert_eq!(github_available_gauge(&daemon), Some(1.0));
    wait_power(&daemon, ROOT1, "running");
    assert!(
        !daemon.log_text().contains(TOKEN),
        "token in the daemon log"
    );
}

#[test]
fn a_locked_login_keychain_leaves_the_daemon_up_and_is_retried_until_unlocked() {
    let (_rt, gh) = FakeGitHub::start_on_own_runtime(TOKEN);
    queue_mac14_job(&gh);
    let mut env = SimEnv::new();
    let kc = FakeKeychain::create(&env.dir.path().join("keychain"), KeychainState::Locked).unwrap();
    kc.add_generic_password("marble-github", "marbled", TOKEN)
        .unwrap();
    env.use_github(gh.url(), TOKEN);
    if let Some(github) = env.config.github.as_mut() {
        github.token_file = None;
        github.token_keychain = Some(marbled::config::KeychainItem {
            service: "marble-github".into(),
            account: "marbled".into(),
            security: Some(kc.program()),
        });
    }
    poll_demand(&mut env);

    // Nobody logged in at the console: `security` answers 36 to the LaunchDaemon.
    let daemon = env.spawn();
    let (seen, text) = status_when(&daemon, |l| l.contains("unavailable"));
    assert!(seen, "{text}\nlog:\n{}", daemon.log_text());
    let line = text.lines().find(|l| l.contains("github:")).unwrap();
    for word in ["exit 36", "locked", "token_file"] {
        assert!(line.contains(word), "{word}: {line}");
    }
    assert_eq!(github_available_gauge(&daemon), Some(0.0));
    // Retried, not given up after the first try.
    assert!(
        wait_until_blocking(T, || kc.calls().len() >= 2),
        "{:?}",
        kc.calls()
    );
    assert_eq!(power(&vm_list(&daemon.socket), ROOT1), "stopped");

    // The user logs in: the next try reads the token and the job gets its VM.
    kc.set_state(KeychainState::Unlocked).unwrap();
    wait_power(&daemon, ROOT1, "running");
    let (seen, text) = status_when(&daemon, |l| !l.contains("unavailable"));
    assert!(seen, "{text}");
    assert_eq!(github_available_gauge(&daemon), Some(1.0));
    // The secret never went through a command line (only `-w`: stdout).
    assert!(
        kc.calls().iter().flatten().all(|arg| !arg.contains(TOKEN)),
        "{:?}",
        kc.calls()
    );
    assert!(
        !daemon.log_text().contains(TOKEN),
        "token in the daemon log"
    );
}
