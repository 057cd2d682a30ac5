//! Demand sources end to end (issue 6, build item 1): the real daemon binary with policy
//! `demand`, `[github]` pointing at the fake GitHub and `[demand]` polling it. A queued mac14
//! job makes the scheduler boot the mac14 VM (and nothing else); the poller walks queued and
//! in-progress runs, then their jobs, ignores in-progress jobs, re-polls with `If-None-Match`,
//! and the metrics show the queued job's label set and its wait.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::time::Duration;

use e2e_support::demand::{
    MAC14, TOKEN, booted_with_a_second_mac14_job_queued, decisions, demand_daemon, fake_github,
    requests_to, runner_takes_job_111, unix_now, wait_marked_spent,
};
use e2e_support::{
    ROOT1, ROOT2, SPI1, SPI2, SimEnv, T, ctl, power, queue_mac14_job, vm_list, wait_metrics,
    wait_power, wait_started,
};
use marble_tests::harness::wait_until_blocking;

const RUNS: &str = "/repos/root-project/root/actions/runs";

#[test]
fn a_queued_mac14_job_boots_the_mac14_vm_only() {
    let (_rt, gh) = fake_github();
    // Run 9001 queued with a mac14 job; run 9002 in progress with one running job and one
    // queued Windows job (no VM here covers it).
    queue_mac14_job(&gh);
    gh.set_run(9002, "in_progress");
    gh.set_job(
        9002,
        112,
        "in_progress",
        &["self-hosted", "macOS", "ARM64", "mac15"],
        "2026-01-01T10:00:00Z",
    );
    gh.set_job(
        9002,
        113,
        "queued",
        &["self-hosted", "windows", "x64"],
        "2026-01-01T10:05:00Z",
    );
    gh.set_run(9003, "completed");

    let (_env, daemon) = demand_daemon(&gh, Duration::from_secs(5), |_| {});

    wait_power(&daemon, ROOT1, "running");
    let status = ctl(&daemon.socket, &["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let decisions = st["decisions"].to_string();
    assert!(
        decisions.contains("booting for job #111"),
        "decisions: {decisions}"
    );
    assert_eq!(power(&vm_list(&daemon.socket), ROOT2), "stopped");

    // The poller's requests: both run listings, the jobs of the two live runs only, the
    // runner list; and a later poll is conditional (ETag).
    let mut paths = Vec::new();
    let conditional = wait_until_blocking(T, || {
        let reqs = gh.requests();
        paths = reqs.iter().map(|r| r.path.clone()).collect();
        reqs.iter()
            .any(|r| r.path.starts_with(RUNS) && r.header("if-none-match").is_some())
    });
    assert!(conditional, "no conditional re-poll: {paths:#?}");
    for want in [
        format!("{RUNS}?status=queued&per_page=100"),
        format!("{RUNS}?status=in_progress&per_page=100"),
        format!("{RUNS}/9001/jobs?filter=latest&per_page=100"),
        format!("{RUNS}/9002/jobs?filter=latest&per_page=100"),
    ] {
        assert!(paths.contains(&want), "missing {want}: {paths:#?}");
    }
    assert!(
        !paths.iter().any(|p| p.contains("/9003/")),
        "jobs of a completed run were listed: {paths:#?}"
    );

    // Metrics: the queued mac14 and windows jobs by label set, with their age.
    let out = ctl(&daemon.socket, &["metrics"]);
    assert_eq!(out.code, 0, "{out}");
    let families = marble_tests::prometheus::parse_exposition(&out.stdout)
        .unwrap_or_else(|err| panic!("{err}\n{}", out.stdout));
    // The mac14 boot's time, from `prlctl start` to the guest answering (the simulated
    // guest answers at once: every bucket holds it).
    assert_eq!(
        families.get("marble_vm_boot_seconds").map(String::as_str),
        Some("histogram")
    );
    for line in [
        "marble_vm_boot_seconds_bucket{le=\"15\"} 1\n",
        "marble_vm_boot_seconds_bucket{le=\"+Inf\"} 1\n",
        "marble_vm_boot_seconds_count 1\n",
    ] {
        assert!(out.stdout.contains(line), "{line}{}", out.stdout);
    }
    assert!(
        out.stdout
            .contains("marble_queued_jobs{labels=\"arm64,mac14,macos,self-hosted\"} 1\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("marble_queued_jobs{labels=\"self-hosted,windows,x64\"} 1\n"),
        "{}",
        out.stdout
    );
    let wait_line = out
        .stdout
        .lines()
        .find(|l| {
            l.starts_with("marble_job_wait_seconds{labels=\"arm64,mac14,macos,self-hosted\"}")
        })
        .expect("job wait line");
    let secs: f64 = wait_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(secs > 3600.0, "{wait_line}");
    // Job 112 runs on another host's runner: not a wait of this host's.
    assert!(
        out.stdout
            .contains("marble_root_job_wait_seconds_count 0\n"),
        "{}",
        out.stdout
    );

    assert!(
        !daemon.log_text().contains(TOKEN),
        "token in the daemon log"
    );
}

#[test]
fn a_host_that_becomes_free_polls_github_at_once_instead_of_after_the_interval() {
    let (_rt, gh) = fake_github();
    // Polls every 5 minutes: any poll within seconds of the host freeing was asked for.
    let (_env, daemon) = demand_daemon(&gh, Duration::from_secs(300), |_| {});
    // Full polls only: the watch lists the queued runs too.
    let polls = || requests_to(&gh, &format!("{RUNS}?status=in_progress&per_page=100"));
    // Settled: the free host has seen a snapshot taken after it became free.
    assert!(
        wait_until_blocking(T, || decisions(&daemon)
            .contains("no queued job; nothing boots")),
        "{}",
        decisions(&daemon)
    );
    let out = ctl(&daemon.socket, &["vm", "start", ROOT1]);
    assert_eq!(out.code, 0, "{out}");
    // Not the power: the stop below is refused while the readiness wait runs.
    wait_started(&daemon, ROOT1);
    let before = polls();
    let out = ctl(&daemon.socket, &["vm", "stop", ROOT1]);
    assert_eq!(out.code, 0, "{out}");
    wait_power(&daemon, ROOT1, "stopped");
    assert!(
        wait_until_blocking(Duration::from_secs(20), || polls() > before),
        "no early poll after the host became free ({before} polls so far); decisions: {}",
        decisions(&daemon)
    );
}

#[test]
fn a_free_host_sees_a_newly_queued_run_within_seconds_at_no_quota() {
    let (_rt, gh) = fake_github();
    // Polls every 5 minutes: a boot within seconds of the push came from the watch.
    let (_env, daemon) = demand_daemon(&gh, Duration::from_secs(300), |env| {
        if let Some(demand) = env.config.demand.as_mut() {
            demand.watch = Duration::from_secs(1);
        }
    });
    let queued_listing = format!("{RUNS}?status=queued&per_page=100");
    let listings = || {
        gh.requests()
            .into_iter()
            .filter(|r| r.path == queued_listing)
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until_blocking(T, || decisions(&daemon)
            .contains("no queued job; nothing boots")),
        "{}",
        decisions(&daemon)
    );
    // Watching an unchanged queue: conditional requests, answered 304, spend no quota.
    let quota = gh.rate_remaining();
    let before = listings().len();
    assert!(
        wait_until_blocking(T, || listings().len() >= before + 3),
        "the free host does not watch the queued runs: {} listings",
        listings().len()
    );
    assert_eq!(gh.rate_remaining(), quota, "idle watching spent quota");
    assert!(
        listings()[before..]
            .iter()
            .all(|r| r.header("if-none-match").is_some()),
        "a watch request was not conditional"
    );
    // A push: the mac14 VM boots in seconds, not at the next poll 5 minutes away.
    queue_mac14_job(&gh);
    let booted = wait_until_blocking(Duration::from_secs(30), || {
        power(&vm_list(&daemon.socket), ROOT1) == "running"
    });
    assert!(booted, "not booted; decisions: {}", decisions(&daemon));
    let text = decisions(&daemon);
    assert!(text.contains("booting for job #111"), "{text}");
    assert_eq!(power(&vm_list(&daemon.socket), ROOT2), "stopped");
}

#[test]
fn a_low_rate_limit_spreads_the_polls_instead_of_spending_the_reserve() {
    let (_rt, gh) = fake_github();
    let reserve = marbled::ci::github::QUOTA_RESERVE;
    let reset = marble_tests::fake_github::now_ms() / 1000 + 3600;
    // Enough for one poll (three requests: two run listings, the runner list), not two.
    gh.set_rate_limit(reserve + 5, reset);
    let (_env, daemon) = demand_daemon(&gh, Duration::from_secs(5), |_| {});
    let full_polls = || requests_to(&gh, &format!("{RUNS}?status=in_progress&per_page=100"));
    assert!(
        wait_until_blocking(T, || daemon
            .log_text()
            .contains("github rate limit running low")),
        "no pacing; log:\n{}",
        daemon.log_text()
    );
    assert!(gh.rate_remaining() >= reserve, "{}", gh.rate_remaining());
    // Operators see it: the paced interval and what is left, in the metrics.
    let out = ctl(&daemon.socket, &["metrics"]);
    assert_eq!(out.code, 0, "{out}");
    let families = marble_tests::prometheus::parse_exposition(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}\n---\n{}", out.stdout));
    for name in [
        "marble_github_rate_limit_remaining",
        "marble_github_poll_requests",
        "marble_github_poll_interval_seconds",
    ] {
        assert_eq!(
            families.get(name).map(String::as_str),
            Some("gauge"),
            "{name}"
        );
    }
    let gauge = |name: &str| -> f64 {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in:\n{}", out.stdout));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(
        gauge("marble_github_poll_interval_seconds") > 3000.0,
        "{}",
        out.stdout
    );
    assert!(gauge("marble_github_rate_limit_remaining") >= reserve as f64);
    assert_eq!(gauge("marble_github_poll_requests"), 3.0);
    // Two intervals later: no poll, no early poll (the host is free), the reserve intact.
    let polled_again = wait_until_blocking(Duration::from_secs(12), || full_polls() > 1);
    assert!(!polled_again, "{} polls", full_polls());
    assert!(gh.rate_remaining() >= reserve, "{}", gh.rate_remaining());
}

#[test]
fn a_configured_warm_target_boots_a_runner_with_no_job_queued() {
    let (_rt, gh) = fake_github();
    let (_env, daemon) = demand_daemon(&gh, Duration::from_secs(5), |env| {
        env.config.scheduler.warm = vec![marbled::config::WarmTarget {
            labels: vec!["self-hosted".into(), "macOS".into(), "mac15".into()],
            count: 1,
        }];
    });
    wait_power(&daemon, ROOT2, "running");
    let text = decisions(&daemon);
    assert!(
        text.contains("booting a warm runner (configured: 1 warm for runs-on self-hosted,macOS,mac15; 0 of 1 idle"),
        "{text}"
    );
    assert_eq!(power(&vm_list(&daemon.socket), ROOT1), "stopped");
    // Its runner was registered (JIT) for the warm VM.
    assert!(
        wait_until_blocking(T, || !gh.issued_jit().is_empty()),
        "no JIT runner minted"
    );
    assert!(
        !daemon.log_text().contains(TOKEN),
        "token in the daemon log"
    );
}

#[test]
fn a_job_a_runner_of_this_host_took_counts_its_wait_once() {
    let (_rt, gh) = fake_github();
    queue_mac14_job(&gh);
    let (_env, daemon) = demand_daemon(&gh, Duration::from_secs(5), |env| {
        env.runner_listens_after_jit(ROOT1);
    });
    wait_power(&daemon, ROOT1, "running");
    // The runner the daemon registered for ROOT1 (its config delivered, so it is kept).
    let mut runner = None;
    let registered = wait_until_blocking(T, || {
        runner = gh
            .runner_ids()
            .into_iter()
            .filter_map(|id| gh.runner(id))
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .find(|name| name.contains(ROOT1));
        runner.is_some()
    });
    assert!(registered, "no runner for {ROOT1}: {}", daemon.log_text());
    let runner = runner.unwrap_or_default();
    // It takes job 111, 95 s after the job was queued; another host's runner takes job 112.
    gh.set_run(9001, "in_progress");
    gh.start_job(
        9001,
        111,
        &["self-hosted", "macOS", "ARM64", "mac14"],
        "2026-01-01T10:00:00Z",
        "2026-01-01T10:01:35Z",
        &runner,
    );
    gh.start_job(
        9001,
        112,
        &["self-hosted", "macOS", "ARM64", "mac15"],
        "2026-01-01T10:00:00Z",
        "2026-01-01T10:00:03Z",
        "marble-macphsft02-ROOT-VM-macOS-15-0001",
    );
    let polls = || requests_to(&gh, &format!("{RUNS}/9001/jobs?filter=latest&per_page=100"));
    wait_metrics(&daemon, &["marble_root_job_wait_seconds_count 1\n"]);
    // Seen running by more polls, still counted once.
    let seen = polls();
    assert!(
        wait_until_blocking(T, || polls() > seen),
        "no further polls"
    );
    let text = ctl(&daemon.socket, &["metrics"]).stdout;
    marble_tests::prometheus::parse_exposition(&text).unwrap_or_else(|err| panic!("{err}"));
    for line in [
        "marble_root_job_wait_seconds_bucket{le=\"90\"} 0\n",
        "marble_root_job_wait_seconds_bucket{le=\"120\"} 1\n",
        "marble_root_job_wait_seconds_sum 95\n",
        "marble_root_job_wait_seconds_count 1\n",
    ] {
        assert!(text.contains(line), "{line}{text}");
    }
}

/// The daemon noted ROOT1's runner as spent from the feed and stopped ROOT1 (its guest
/// runs no job: the job ended before any probe could see it).
fn assert_spent_and_stopped(env: &SimEnv, daemon: &marble_tests::harness::DaemonProcess) {
    wait_marked_spent(daemon);
    assert!(
        wait_until_blocking(T, || env.power_calls().iter().any(|c| c[0] == "stop")),
        "ROOT1 kept for job 114 its spent runner will never get: {}",
        decisions(daemon)
    );
}

#[test]
fn a_runner_github_shows_on_a_job_is_stopped_not_kept_for_the_next_matching_job() {
    // Issue 17: ROOT1's runner takes job 111, which ends before the first busy probe; the
    // jobs API shows it on ROOT1's runner. GitHub never gives that single-use runner job 114.
    let (_rt, gh) = fake_github();
    let (env, daemon, runner, _) = booted_with_a_second_mac14_job_queued(&gh);
    runner_takes_job_111(&gh, &runner);
    assert_spent_and_stopped(&env, &daemon);
}

#[test]
fn a_runner_whose_registration_is_gone_is_stopped_not_kept_for_the_next_matching_job() {
    // The job came and went between two polls: only the registration's absence tells (GitHub
    // deletes an ephemeral runner once its job ends; its run may be completed already).
    let (_rt, gh) = fake_github();
    let (env, daemon, _, id) = booted_with_a_second_mac14_job_queued(&gh);
    gh.set_run(9001, "completed");
    gh.remove_runner(id);
    assert_spent_and_stopped(&env, &daemon);
}

#[test]
fn an_offline_runner_registered_outside_marble_does_not_hold_back_a_boot() {
    let (_rt, gh) = fake_github();
    // A seed-era runner (AUTO_RUNNER's name and labels, all custom), registered with the
    // mac14 labels and offline since its VM went away: GitHub keeps it for up to a day (14
    // if it was not ephemeral), and until now it counted as a free runner for job 111.
    let seed = "macphsft01-ROOT-VM-macOS-14-Thu-Oct--2-14-28-06-CEST-2025";
    gh.add_runner_with_labels(
        seed,
        &["self-hosted", "macOS", "mac14", "arm64"],
        "offline",
        false,
    );
    queue_mac14_job(&gh);
    let (_env, daemon) = demand_daemon(&gh, Duration::from_secs(5), |_| {});
    wait_power(&daemon, ROOT1, "running");
    let text = decisions(&daemon);
    assert!(text.contains("booting for job #111"), "{text}");
    // `status` shows why it was not counted; it is not MARBLE's to delete.
    let mut out = ctl(&daemon.socket, &["status"]);
    let listed = wait_until_blocking(T, || {
        out = ctl(&daemon.socket, &["status"]);
        out.stdout.contains(seed)
    });
    assert!(listed, "{out}");
    let line = out.stdout.lines().find(|l| l.contains(seed)).unwrap();
    assert!(line.contains("not registered by MARBLE"), "{line}");
    assert!(line.contains("mac14"), "{line}");
    assert!(gh.runner_names().iter().any(|n| n == seed));
}

#[test]
fn a_stale_registration_of_this_host_whose_vm_is_stopped_is_deleted_and_not_counted() {
    let (_rt, gh) = fake_github();
    // This host's registration for ROOT1 from a boot an hour ago whose VM crashed: offline,
    // never deleted (the daemon did not stop the VM itself).
    let stale = marbled::ci::runner_name("macphsft-test", ROOT1, unix_now() - 3600);
    let id = gh.add_runner_with_labels(&stale, &MAC14, "offline", false);
    // And one for ROOT2, which no job wakes: it stays stopped throughout.
    let stale2 = marbled::ci::runner_name("macphsft-test", ROOT2, unix_now() - 7200);
    let mac15 = ["self-hosted", "macOS", "ARM64", "mac15"];
    let id2 = gh.add_runner_with_labels(&stale2, &mac15, "offline", false);
    queue_mac14_job(&gh);
    let (_env, daemon) = demand_daemon(&gh, Duration::from_secs(5), |_| {});
    let deleted = wait_until_blocking(T, || gh.runner(id2).is_none());
    assert!(
        deleted,
        "{stale2} still registered; log:\n{}",
        daemon.log_text()
    );
    assert_eq!(power(&vm_list(&daemon.socket), ROOT2), "stopped");
    // ROOT1's: deleted whether the first poll saw ROOT1 stopped, or (before the daemon's
    // first inventory) let it boot and then found the registration was not its boot's.
    let deleted = wait_until_blocking(T, || gh.runner(id).is_none());
    assert!(
        deleted,
        "{stale} still registered; log:\n{}",
        daemon.log_text()
    );
    assert!(
        gh.requests().iter().any(|r| r.method == "DELETE"
            && r.path == format!("/repos/root-project/root/actions/runners/{id}")),
        "no DELETE of runner {id}"
    );
    // Not a free runner for job 111 either: ROOT1 boots for it.
    wait_power(&daemon, ROOT1, "running");
    let text = decisions(&daemon);
    assert!(text.contains("booting for job #111"), "{text}");
}

#[test]
fn a_registration_for_a_vm_booting_on_another_host_still_counts() {
    let (_rt, gh) = fake_github();
    // Another host registered a runner for its mac14 VM a moment ago (before its `prlctl
    // start`): offline until the VM is up, and it will take job 111.
    let booting = marbled::ci::runner_name("macphsft02", "macphsft02-ROOT-VM-macOS-14", unix_now());
    gh.add_runner_with_labels(&booting, &MAC14, "offline", false);
    queue_mac14_job(&gh);
    let (_env, daemon) = demand_daemon(&gh, Duration::from_secs(5), |_| {});
    assert!(
        wait_until_blocking(T, || decisions(&daemon)
            .contains("1 queued job(s), all covered by free runners in the fleet")),
        "{}",
        decisions(&daemon)
    );
    assert_eq!(power(&vm_list(&daemon.socket), ROOT1), "stopped");
    assert!(
        gh.runner_names().contains(&booting),
        "another host's runner deleted"
    );
}

#[test]
fn a_jenkins_build_for_any_node_launched_on_another_host_leaves_this_free_host_to_root() {
    // Issue 17 (c), eleventh session: a build that accepts any SPI node waits in Jenkins'
    // queue (every host polls it) while Jenkins launches another host's node for it — the
    // first offline node by name, again after each refusal. This host's nodes are not
    // asked, so it is not held for that build: it boots for the queued mac14 job. (Before,
    // the queue dated the build on every host with an SPI VM, and this free host kept
    // itself for a start script that never came: "holding the host: fair share: spi goes".)
    let (rt, gh) = fake_github();
    queue_mac14_job(&gh);
    let jenkins = rt.block_on(marble_tests::fake_jenkins::FakeJenkins::start(&[]));
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 600_000;
    jenkins.queue_buildable(
        31,
        "lcg-nightly",
        "Waiting for next available executor on ‘mac-spi’",
        since,
    );
    let (_env, daemon) = demand_daemon(&gh, Duration::from_secs(5), |env| {
        env.use_jenkins_mac_spi(&jenkins.url);
    });
    // The daemon reads the build from Jenkins' queue ...
    wait_metrics(
        &daemon,
        &["marble_jenkins_buildable_items{label=\"mac-spi\"} 1\n"],
    );
    // ... and still boots for ROOT's job.
    let booted = wait_until_blocking(T, || decisions(&daemon).contains("demand: booting for job"));
    assert!(booted, "decisions: {}", decisions(&daemon));
    assert!(
        !decisions(&daemon).contains("holding the host: fair share"),
        "decisions: {}",
        decisions(&daemon)
    );
}

#[test]
fn a_jenkins_queue_answer_stands_a_few_polls_once_jenkins_stops_answering() {
    // The scheduler reads Jenkins' queue only while its last answer stands (three `[demand]
    // interval`s from its poll): past that, no Jenkins waiter in the fair share and no agent
    // handed over for a predicted runner. End to end, through the daemon's own Jenkins poll:
    // operators see the bound in `marble_jenkins_queue_known`.
    let (rt, gh) = fake_github();
    let jenkins = rt.block_on(marble_tests::fake_jenkins::FakeJenkins::start(&[]));
    let (_env, daemon) = demand_daemon(&gh, Duration::from_secs(5), |env| {
        env.use_jenkins_mac_spi(&jenkins.url);
    });
    wait_metrics(&daemon, &["marble_jenkins_queue_known 1\n"]);
    jenkins.set_down(true);
    let down_at = std::time::Instant::now();
    let text = wait_metrics(&daemon, &["marble_jenkins_queue_known 0\n"]);
    // The last answer came at most one interval before Jenkins went down, so it stood at
    // least two more: not dropped at the first failed poll.
    assert!(
        down_at.elapsed() >= Duration::from_secs(9),
        "dropped after {:?}",
        down_at.elapsed()
    );
    assert!(
        text.contains("marble_jenkins_buildable_items"),
        "the last answer is still shown: {text}"
    );
    jenkins.set_down(false);
    wait_metrics(&daemon, &["marble_jenkins_queue_known 1\n"]);
}

#[test]
fn the_daemon_reads_the_fleets_idle_jenkins_agents_from_the_node_list() {
    // `agent_spare_handover` needs the fleet's idle agents, which no host sees for itself:
    // the daemon reads them from Jenkins' node list with every queue poll, through the
    // production client, and shows the count in `marble_jenkins_idle_agents`.
    let (rt, gh) = fake_github();
    let jenkins = rt.block_on(marble_tests::fake_jenkins::FakeJenkins::start(&[
        "macphsft01-SPI-VM-1",
        "macphsft02-SPI-VM-1",
        "macphsft03-SPI-VM-1",
        "linux-01",
    ]));
    for node in [
        "macphsft01-SPI-VM-1",
        "macphsft02-SPI-VM-1",
        "macphsft03-SPI-VM-1",
    ] {
        jenkins.set_labels(node, &["mac-spi"]);
    }
    // Another team's idle agent and the built-in node (listed first, as a real controller
    // lists it) are no SPI agents: only nodes carrying `[jenkins] labels` count. (Counted,
    // the built-in node sorted first and made the only idle SPI agent a spare.)
    jenkins.set_labels("linux-01", &["linux"]);
    jenkins.set_build(
        "macphsft02-SPI-VM-1",
        Some("https://jenkins.example/job/x/1/"),
    );
    let (_env, daemon) = demand_daemon(&gh, Duration::from_secs(5), |env| {
        env.use_jenkins_mac_spi(&jenkins.url);
    });
    wait_metrics(&daemon, &["marble_jenkins_idle_agents 2\n"]);
    // A demand node whose agent Jenkins took offline is not idle.
    jenkins.set_connected("macphsft03-SPI-VM-1", false);
    wait_metrics(&daemon, &["marble_jenkins_idle_agents 1\n"]);
    let lists: Vec<_> = (jenkins.requests().into_iter())
        .filter(|r| r.path.starts_with("/computer/api/json?tree=computer"))
        .collect();
    assert!(!lists.is_empty(), "no node-list request");
    assert!(lists.iter().all(|r| r.method == "GET" && r.authorized));
    assert!(
        !daemon.log_text().contains("11jenkinsapitoken"),
        "the Jenkins token in the daemon log"
    );
}

#[test]
fn a_free_host_asks_jenkins_to_launch_its_node_for_a_build_for_any_node() {
    // A build that accepts any SPI node has waited 10 min: Jenkins keeps launching the first
    // offline node by name (`macphsft00-…`, on a host running a long job), and this host is
    // free. Its daemon asks Jenkins to launch its own node (`launchSlaveAgent`, through the
    // production client), whose start script would then ask it for the slot. A user without
    // Agent/Connect gets a log line naming the permission; the token is never logged.
    let (rt, gh) = fake_github();
    let jenkins = rt.block_on(marble_tests::fake_jenkins::FakeJenkins::start(&[
        "macphsft00-SPI-VM-1",
        SPI1,
        SPI2,
    ]));
    for node in ["macphsft00-SPI-VM-1", SPI1, SPI2] {
        jenkins.set_labels(node, &["mac-spi"]);
        jenkins.set_connected(node, false);
    }
    jenkins.set_deny_launch(true);
    jenkins.queue_buildable(
        32,
        "lcg-any",
        "All nodes of label ‘mac-spi’ are offline",
        unix_now() * 1000 - 600_000,
    );
    // Opt-in, at the value measured.
    let launching = |env: &mut SimEnv| {
        env.use_jenkins_mac_spi(&jenkins.url);
        env.config.scheduler.launch_any_node_after = Duration::from_secs(240);
    };
    let (_env, daemon) = demand_daemon(&gh, Duration::from_secs(5), launching);
    let denied = wait_until_blocking(T, || daemon.log_text().contains("Agent/Connect"));
    assert!(denied, "log: {}", daemon.log_text());
    assert_eq!(jenkins.launches(SPI1), 0);
    drop(daemon);
    // With the permission (a daemon started afresh: a host asks again only after 6 min):
    // launched, once, for this host's first SPI node, by a POST with the API token.
    jenkins.set_deny_launch(false);
    let (_env, daemon) = demand_daemon(&gh, Duration::from_secs(5), launching);
    let launched = wait_until_blocking(T, || jenkins.launches(SPI1) == 1);
    assert!(launched, "decisions: {}", decisions(&daemon));
    assert!(decisions(&daemon).contains(&format!("launching Jenkins node {SPI1}")));
    let posts: Vec<_> = (jenkins.requests().into_iter())
        .filter(|r| r.path.ends_with("/launchSlaveAgent"))
        .collect();
    assert!(
        posts.iter().all(|r| r.method == "POST" && r.authorized),
        "{posts:?}"
    );
    assert_eq!(jenkins.launches("macphsft00-SPI-VM-1"), 0);
    assert_eq!(jenkins.launches(SPI2), 0);
    assert!(
        !daemon.log_text().contains("11jenkinsapitoken"),
        "the Jenkins token in the daemon log"
    );
}
