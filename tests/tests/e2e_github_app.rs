//! GitHub App authentication end to end (issue 14 §1): the real daemon binary, configured
//! with `[github] app_id` and `app_key_file` (a real RS256 key generated here, written as
//! GitHub's download has it, mode 0600) and no token, against the fake GitHub playing the
//! App's installation (`marble_tests::github_app`): it checks every JWT's signature with the
//! public key and GitHub's claim rules, hands out installation tokens that expire after 8 s
//! (GitHub: one hour), and takes nothing else on the runner and job endpoints.
//!
//! Shown: the installation is found (no `installation_id` configured), demand polling sees
//! the queued job and the ROOT VM starts with a JIT runner minted as the App; tokens are
//! replaced before they expire (never an expired one sent); a token GitHub stops taking (a
//! 401) is replaced at once and the request sent once more; neither the private key, a JWT
//! nor an installation token appears in the daemon's log (debug level) or a prlctl command
//! line. Nothing sleeps for a fixed time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::time::Duration;

use e2e_support::{ROOT1, SimEnv, ctl, queue_mac14_job, wait_power};
use marble_tests::fake_github::{FakeGitHub, RecordedRequest};
use marble_tests::github_app::{AppKeyPair, FakeApp};
use marble_tests::harness::{DaemonProcess, wait_until_blocking};

const APP_ID: u64 = 424_242;
const INSTALLATION: u64 = 31_337;
/// The fake's installation tokens live 8 s: replaced halfway (4 s), so each 5 s demand poll
/// finds the last one due but not yet expired.
const LIFETIME: Duration = Duration::from_secs(8);
/// Long enough for a few demand polls.
const POLLS: Duration = Duration::from_secs(60);
const MINT_PATH: &str = "/app/installations/31337/access_tokens";

/// Policy `demand`, polling `[github]` every 5 s (the shortest the config allows).
fn poll_demand(env: &mut SimEnv) {
    env.config.demand = Some(marbled::config::DemandSection {
        interval: Duration::from_secs(5),
        ..marbled::config::DemandSection::default()
    });
    env.config.scheduler.policy = "demand".into();
    env.config.scheduler.inventory_interval = Duration::from_secs(1);
}

/// A fake GitHub playing App `APP_ID` with a fresh key pair, a queued mac14 job, and a
/// simulated host whose `[github]` authenticates as the App.
fn app_setup() -> (tokio::runtime::Runtime, FakeGitHub, SimEnv, AppKeyPair) {
    let (rt, gh) = FakeGitHub::start_on_own_runtime("ghp_personalTokenTheAppFakeRefuses");
    let keys = AppKeyPair::generate();
    gh.use_app(FakeApp::new(APP_ID, INSTALLATION, &keys, LIFETIME));
    queue_mac14_job(&gh);
    let mut env = SimEnv::new();
    env.use_github(gh.url(), "unused");
    let key_file = keys.write_key_file(env.dir.path(), "github-app.pem");
    let github = env.config.github.as_mut().unwrap();
    github.token_file = None;
    github.app_id = Some(APP_ID);
    github.app_key_file = Some(key_file);
    poll_demand(&mut env);
    (rt, gh, env, keys)
}

fn is_app_call(r: &RecordedRequest) -> bool {
    r.path.starts_with("/app/") || r.path.ends_with("/installation")
}

/// The `github:` line of `marblectl status`.
fn github_status(daemon: &DaemonProcess) -> String {
    let text = ctl(&daemon.socket, &["status"]).stdout;
    text.lines()
        .find(|l| l.trim_start().starts_with("github:"))
        .unwrap_or_else(|| panic!("no github line in\n{text}"))
        .to_owned()
}

/// Within this of a 401, the same request is answered again: at once, not at the next
/// demand poll (5 s later), which would send it anyway.
const RETRY_WITHIN_MS: u64 = 2_500;

/// After `from` (an index into the fake's requests): a non-App request refused with 401,
/// then a mint, then the same request answered, within [`RETRY_WITHIN_MS`].
fn retried_after_401(requests: &[RecordedRequest], from: usize) -> bool {
    let tail = &requests[from.min(requests.len())..];
    tail.iter().enumerate().any(|(i, refused)| {
        let soon = |r: &RecordedRequest| r.ts_ms <= refused.ts_ms + RETRY_WITHIN_MS;
        refused.status == 401
            && !is_app_call(refused)
            && tail[i + 1..]
                .iter()
                .position(|m| m.path == MINT_PATH && m.status == 201 && soon(m))
                .is_some_and(|j| {
                    tail[i + 1 + j + 1..].iter().any(|again| {
                        again.method == refused.method
                            && again.path == refused.path
                            && again.status < 400
                            && soon(again)
                    })
                })
    })
}

#[test]
fn a_github_app_polls_demand_starts_a_jit_runner_and_refreshes_its_token_before_expiry() {
    let (_rt, gh, env, keys) = app_setup();
    let daemon = env.spawn();

    // The queued job gets its VM: the demand poll and the JIT registration ran as the App.
    wait_power(&daemon, ROOT1, "running");
    assert!(!gh.issued_jit().is_empty(), "no JIT config minted");
    let requests = gh.requests();
    assert!(
        requests.iter().any(|r| r.method == "GET"
            && r.path == "/repos/root-project/root/installation"
            && r.status == 200),
        "the installation was not looked up: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.path.contains("/actions/runs") && r.status == 200),
        "no demand poll answered: {requests:#?}"
    );

    // Tokens are replaced while the last one still lives, and none is used expired.
    let early = wait_until_blocking(POLLS, || {
        gh.with_app(|a| a.tokens.iter().filter(|t| t.previous_live).count() >= 2)
    });
    gh.with_app(|app| {
        assert!(early, "no refresh ahead of expiry: {:#?}", app.tokens);
        assert_eq!(app.expired_uses, 0, "an expired token was sent");
        assert_eq!(app.unknown_uses, 0, "an unknown token was sent");
        assert_eq!(app.jwt_refusals, 0, "a JWT was refused");
        for jwt in &app.jwts {
            assert!(jwt.iat + 59 <= jwt.received, "iat not backdated: {jwt:?}");
            assert!(jwt.exp <= jwt.received + 600, "exp beyond 10 min: {jwt:?}");
        }
    });
    let refused: Vec<RecordedRequest> = gh
        .requests()
        .into_iter()
        .filter(|r| r.status == 401)
        .collect();
    assert!(refused.is_empty(), "401s: {refused:#?}");
    let line = github_status(&daemon);
    assert!(
        line.contains("available") && !line.contains("unavailable"),
        "{line}"
    );

    // GitHub stops taking the tokens (revoked): the next 401 brings a new token and the
    // same request once more. A token that lives an hour is revoked, so that no refresh
    // comes first.
    gh.with_app(|a| a.lifetime = Duration::from_secs(3600));
    let long_lived = gh.with_app(|a| a.tokens.len()) + 1;
    assert!(
        wait_until_blocking(POLLS, || gh.with_app(|a| a.tokens.len()) >= long_lived),
        "no token minted with the long lifetime"
    );
    let from = gh.requests().len();
    gh.with_app(FakeApp::revoke_all);
    let recovered = wait_until_blocking(POLLS, || retried_after_401(&gh.requests(), from));
    assert!(
        recovered,
        "no retry with a new token after a 401: {:#?}",
        &gh.requests()[from..]
    );
    let line = github_status(&daemon);
    assert!(!line.contains("unavailable"), "{line}");

    // No secret in the log or on a command line.
    let log = daemon.log_text();
    let invocations = env.host.invocations().unwrap();
    let argv: Vec<String> = invocations.iter().map(|i| i.argv.join(" ")).collect();
    let mut secrets = keys.private_lines();
    gh.with_app(|a| {
        secrets.extend(a.tokens.iter().map(|t| t.token.clone()));
        secrets.extend(a.jwts.iter().map(|j| j.jwt.clone()));
    });
    assert!(secrets.len() > 10, "{}", secrets.len());
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "secret in the daemon log");
        assert!(
            argv.iter().all(|line| !line.contains(secret.as_str())),
            "secret in a prlctl command line"
        );
    }
    assert!(
        log.contains("github app installation token minted"),
        "{log}"
    );
}
