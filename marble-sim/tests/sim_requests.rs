//! `marble-sim requests` (issue 18): the simulated GitHub answers the daemon's own poller
//! like GitHub does (a changed listing gets a new ETag, an unchanged one a free 304), and the
//! elected poller's failover loses no job and takes over within two poll intervals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use marble_sim::github::{API_URL, EPOCH_S, SimGitHub};
use marble_sim::requests::{Mode, RequestOptions, requests};
use marble_sim::standard::standard_trace;
use marbled::ci::github::GithubDemand;
use marbled::ci::{GitHubClient, RunnerScope, Secret};

mod common;
use common::mac14;

const REPO: &str = "root-project/root";

#[test]
fn listings_change_when_jobs_change_and_unchanged_ones_cost_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let gh = SimGitHub::new(REPO);
    let client = Arc::new(GitHubClient::with_transport(
        API_URL,
        RunnerScope::Repo(REPO.into()),
        Secret::new(String::from("t")),
        gh.clone(),
    ));
    let demand = GithubDemand::new(client.clone(), vec![REPO.into()], 50);
    let counted = || client.rate_limit().counted;
    let poll = |now_s: u64| {
        let before = counted();
        let (snapshot, stats) = rt
            .block_on(demand.poll((EPOCH_S + now_s) * 1000, None))
            .unwrap();
        (snapshot, stats, counted() - before)
    };

    let job = gh.queue_run(&[mac14()])[0];
    let (snapshot, stats, spent) = poll(0);
    assert_eq!(snapshot.root_jobs.len(), 1);
    assert_eq!(snapshot.root_jobs[0].labels, mac14());
    // Both run listings, the queued run's jobs, the runner list.
    assert_eq!(spent, 4);
    let quota = stats.quota.expect("rate-limit headers");
    assert_eq!((quota.spent, quota.remaining), (4, 4_996));
    assert_eq!(quota.reset_in_secs, 3_600);

    // Nothing changed: every answer is a 304, free.
    let (snapshot, _, spent) = poll(10);
    assert_eq!((snapshot.root_jobs.len(), spent), (1, 0));
    assert!(!rt.block_on(demand.new_queued_run()).unwrap());

    // A push: the watch sees it (one charged listing), the poll lists the new run's jobs.
    gh.queue_run(&[mac14(), mac14()]);
    assert!(rt.block_on(demand.new_queued_run()).unwrap());
    let (snapshot, _, spent) = poll(20);
    assert_eq!(snapshot.root_jobs.len(), 3);
    assert_eq!(
        spent, 1,
        "only the new run's jobs: the queued listing was read by the watch"
    );

    // A runner registered: the runner list changes (the mint is charged too).
    let jit = rt
        .block_on(client.generate_jitconfig("marble-h1-vm-1", &mac14(), 1, None))
        .unwrap();
    let (_, _, spent) = poll(30);
    assert_eq!(spent, 1, "the runner list");

    // GitHub hands the job to it: the queued listing loses the run, the in-progress one
    // gains it, its jobs and the runner (busy) change.
    gh.set_now(40_000);
    gh.runner_online("marble-h1-vm-1");
    gh.start_job(job, "marble-h1-vm-1");
    let (snapshot, _, spent) = poll(40);
    assert_eq!(snapshot.root_jobs.len(), 2);
    assert_eq!(snapshot.running_jobs.len(), 1);
    assert_eq!(snapshot.taken_runners, ["marble-h1-vm-1"]);
    assert_eq!(spent, 4);
    // A minute on, a step of the running job ended: its listing changed, nothing else.
    gh.set_now(100_000);
    let (_, _, spent) = poll(100);
    assert_eq!(spent, 1);

    // The job ends; GitHub deletes the ephemeral runner, so the daemon's delete is a 404
    // (still charged).
    gh.complete_job(job);
    let before = counted();
    let outcome = rt.block_on(client.delete_runner(jit.runner_id)).unwrap();
    assert_eq!(format!("{outcome:?}"), "AlreadyGone");
    assert_eq!(counted() - before, 1);
    let counts = gh.counts();
    let hour0 = counts["t"][&0];
    assert_eq!(hour0.counted, counted());
    assert!(hour0.total > hour0.counted, "304s are counted apart");
}

/// Three hosts, an elected poller, a push every 2 minutes for 2 hours; the lease holder's
/// daemon stops after 30 minutes.
#[test]
fn losing_the_elected_poller_loses_no_job_and_takes_over_within_two_intervals() {
    let trace = common::pushes(
        3,
        60,
        Duration::from_secs(120),
        Duration::from_secs(2 * 3600),
    );
    let run = |dies| {
        let opts = RequestOptions {
            leader_dies_at: dies,
            hosted_runs_per_hour: 30.0,
            ..RequestOptions::new(3, Mode::Elected)
        };
        requests(&trace, &opts).unwrap()
    };
    let calm = run(None);
    assert_eq!(calm.root_started, 60, "{calm:?}");
    assert_eq!(calm.takeover_ms, None);
    let fault = run(Some(Duration::from_secs(1800)));
    assert_eq!(fault.root_started, 60, "a job was lost: {fault:?}");
    let takeover = fault.takeover_ms.expect("another host took over");
    assert!(takeover <= 60_000, "took {takeover} ms: {fault:?}");
    // Two hosts were left to run the jobs; the waits stay within a poll interval or so of
    // the calm run's.
    assert!(
        fault.root_wait_p95_s <= calm.root_wait_p95_s + 60.0,
        "{calm:?}\n{fault:?}"
    );
}

/// The same load per host (pushes scaled with the fleet) on one 5 000/h token: forty hosts
/// with an elected poller spend at most half of it, and their ROOT waits are no worse than
/// eight hosts that each poll (the daemon before issue 18), which are paced at the limit.
#[test]
fn forty_hosts_with_an_elected_poller_use_half_the_budget_and_wait_no_longer_than_eight() {
    let mut trace = standard_trace(1, 1, 8);
    trace.sim.duration = Duration::from_secs(4 * 3600);
    // Every boot 60 s: the waits differ only by how soon a host learns of a job (its own
    // paced polls, or the leader's snapshot), not by which boots drew the slow tail.
    trace.boot = marble_sim::trace::BootSection {
        min: Duration::from_secs(60),
        max: Duration::from_secs(60),
        slow_rate: 0.0,
        slow_max: None,
    };
    trace.generate = Some(marble_sim::trace::GenerateSection {
        seed: Some(1),
        root: Some(marble_sim::trace::GenRoot {
            // One job an hour per host, 10-20 min each (twice the standard trace's weekday
            // rate). At two an hour the elected fleet spends ~3 000/h: the running jobs'
            // listings change as their steps run (docs/benchmarks.md).
            per_hour: 8.0,
            duration_min: Duration::from_secs(10 * 60),
            duration_max: Duration::from_secs(20 * 60),
            label_sets: vec![mac14()],
        }),
        ..marble_sim::trace::GenerateSection::default()
    });
    let run = |hosts, mode| {
        let opts = RequestOptions {
            hosted_runs_per_hour: 30.0,
            ..RequestOptions::new(hosts, mode)
        };
        requests(&trace, &opts).unwrap()
    };
    let eight = run(8, Mode::Each);
    let forty = run(40, Mode::Elected);
    assert!(
        forty.root_jobs >= 5 * eight.root_jobs / 2,
        "{eight:?}\n{forty:?}"
    );
    assert_eq!(forty.root_started, forty.root_jobs, "{forty:?}");
    assert!(
        eight.paced_polls > 0,
        "eight hosts polling each are paced: {eight:?}"
    );
    assert!(
        forty.github_per_hour_max <= 2_500,
        "over half the budget: {forty:?}"
    );
    assert!(
        forty.root_wait_p50_s <= eight.root_wait_p50_s
            && forty.root_wait_p95_s <= eight.root_wait_p95_s,
        "{eight:?}\n{forty:?}"
    );
}
