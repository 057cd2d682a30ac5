//! The calibration workload of `marble-sim requests` (`docs/SIMULATOR.md`, "Requests"): the
//! same small repository the fake-GitHub e2e test (`tests/tests/e2e_requests.rs`) gives a
//! real daemon — one queued run whose job no MARBLE VM covers, two runs in progress on
//! GitHub-hosted runners whose job listings change between polls, and a new queued run (no
//! VM covers it either) pushed between polls — polled `cycles` times by
//! the daemon's own `GithubDemand::poll` against [`crate::github::SimGitHub`]. The e2e
//! test asserts that the two counts per poll cycle agree within 10 %.

use std::sync::Arc;

use marbled::ci::github::GithubDemand;
use marbled::ci::{GitHubClient, RunnerScope, Secret};

use crate::github::{API_URL, EPOCH_S, SimGitHub};

/// The calibration repository.
pub const REPO: &str = "root-project/root";

/// Requests charged (not 304) per poll cycle over `cycles` polls after the first; between
/// polls the two runs in progress change (their steps advance) and a run is pushed.
pub fn charged_per_poll(cycles: u32) -> std::io::Result<f64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let gh = SimGitHub::new(REPO);
    let client = Arc::new(GitHubClient::with_transport(
        API_URL,
        RunnerScope::Repo(REPO.into()),
        Secret::new("calibration".to_owned()),
        gh.clone(),
    ));
    let demand = GithubDemand::new(client.clone(), vec![REPO.into()], 50);
    let windows: Vec<String> = vec!["self-hosted".into(), "windows".into(), "x64".into()];
    gh.queue_run(std::slice::from_ref(&windows));
    let hour = 3_600_000;
    gh.start_hosted_run(10 * hour);
    gh.start_hosted_run(10 * hour);
    let mut now = 0;
    let poll = |now: u64| rt.block_on(demand.poll(EPOCH_S * 1000 + now, None));
    poll(now).map_err(std::io::Error::other)?;
    let before = client.rate_limit().counted;
    for _ in 0..cycles {
        // A step of each running job ends (both listings change) and a run is pushed (the
        // queued listing changes, its jobs are new).
        now += 60_000;
        gh.set_now(now);
        gh.queue_run(std::slice::from_ref(&windows));
        poll(now).map_err(std::io::Error::other)?;
    }
    let spent = client.rate_limit().counted - before;
    Ok(spent as f64 / f64::from(cycles.max(1)))
}
