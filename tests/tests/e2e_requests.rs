//! Calibration of `marble-sim requests` (issue 18): a real daemon polling the fake GitHub
//! spends, per poll cycle, within 10 % of what the simulator's GitHub counts for the daemon's
//! poller on the same workload ([`marble_sim::calibrate`]): one queued run whose job no VM
//! here covers, two runs in progress on GitHub-hosted runners whose job listings change
//! between polls, and between polls a new queued run no VM covers either. Counted as GitHub charges: every answer but a 304.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::time::Duration;

use e2e_support::{SimEnv, T};
use marble_tests::fake_github::{FakeGitHub, RecordedRequest};
use marble_tests::harness::wait_until_blocking;

const TOKEN: &str = "ghp_e2eRequestsTokenNeverLogged0123456789ab";
const ACTIONS: &str = "/repos/root-project/root/actions/";
const IN_PROGRESS: &str = "/repos/root-project/root/actions/runs?status=in_progress&per_page=100";
const RUNNERS: &str = "/repos/root-project/root/actions/runners?per_page=100";
/// Poll cycles measured after the first (which reads everything once).
const CYCLES: u32 = 4;

/// Index (in `reqs`) of the runner listing that ended poll `k` (1-based): the first runner
/// list after the k-th in-progress listing.
fn poll_end(reqs: &[RecordedRequest], k: usize) -> Option<usize> {
    let start = reqs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.path == IN_PROGRESS)
        .nth(k - 1)?
        .0;
    (start..reqs.len()).find(|&i| reqs[i].path == RUNNERS)
}

/// Both runs in progress move on (a new `started_at`, as a step would): new listings; and a
/// run is pushed whose job no VM here covers.
fn advance(gh: &FakeGitHub, cycle: u32) {
    if cycle > 0 {
        let run = 9100 + u64::from(cycle);
        gh.set_run(run, "queued");
        gh.set_job(
            run,
            200 + u64::from(cycle),
            "queued",
            &["self-hosted", "windows", "x64"],
            "2026-01-01T10:00:00Z",
        );
    }
    let started = format!("2026-01-01T10:{:02}:00Z", 10 + cycle);
    for (run, job) in [(9002, 112), (9003, 114)] {
        gh.start_job(
            run,
            job,
            &["ubuntu-latest"],
            "2026-01-01T10:00:00Z",
            &started,
            &format!("GitHub Actions {job}"),
        );
    }
}

#[test]
fn the_simulator_counts_a_poll_cycle_within_ten_percent_of_a_real_daemon() {
    let (_rt, gh) = FakeGitHub::start_on_own_runtime(TOKEN);
    gh.set_run(9001, "queued");
    gh.set_job(
        9001,
        113,
        "queued",
        &["self-hosted", "windows", "x64"],
        "2026-01-01T10:00:00Z",
    );
    gh.set_run(9002, "in_progress");
    gh.set_run(9003, "in_progress");
    advance(&gh, 0);

    let mut env = SimEnv::new();
    env.use_github(gh.url(), TOKEN);
    env.config.demand = Some(marbled::config::DemandSection {
        interval: Duration::from_secs(5),
        ..marbled::config::DemandSection::default()
    });
    env.config.scheduler.policy = "demand".into();
    let _daemon = env.spawn();

    let cycles = usize::try_from(CYCLES).unwrap();
    for k in 1..=cycles + 1 {
        let ended = wait_until_blocking(T, || poll_end(&gh.requests(), k).is_some());
        assert!(ended, "poll {k} did not end: {:#?}", gh.requests());
        if k <= cycles {
            advance(&gh, u32::try_from(k).unwrap());
        }
    }
    let reqs = gh.requests();
    let (from, to) = (
        poll_end(&reqs, 1).unwrap(),
        poll_end(&reqs, cycles + 1).unwrap(),
    );
    let window = &reqs[from + 1..=to];
    let polls = window.iter().filter(|r| r.path == IN_PROGRESS).count();
    let charged = window
        .iter()
        .filter(|r| r.path.starts_with(ACTIONS) && r.status != 304)
        .count();
    let real = charged as f64 / polls as f64;
    let sim = marble_sim::calibrate::charged_per_poll(CYCLES).unwrap();
    eprintln!(
        "charged per poll cycle: daemon {real:.2} ({charged} in {polls}), simulator {sim:.2}"
    );
    assert!(
        (real / sim - 1.0).abs() <= 0.10,
        "daemon {real} vs simulator {sim} per poll cycle: {:#?}",
        window
            .iter()
            .map(|r| (&r.method, &r.path, r.status))
            .collect::<Vec<_>>()
    );
}
