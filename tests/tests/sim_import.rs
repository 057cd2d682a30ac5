//! `marble-sim import` against the fake GitHub and Jenkins: a day of a repository's workflow
//! history (paged runs, completed jobs with their conclusions, a job no runner took, a
//! skipped one, a GitHub-hosted one) and a Jenkins job's builds become a trace that the
//! simulator replays; the tokens come from files and never reach the trace.

use std::os::unix::fs::PermissionsExt as _;

use marble_sim::import::fetch::{ImportOptions, import};
use marble_sim::import::{FleetSource, Window, parse_time};
use marble_sim::{RunOptions, simulate};
use marble_tests::fake_github::FakeGitHub;
use marble_tests::fake_jenkins::FakeJenkins;

const GH_TOKEN: &str = "ghp_importtesttoken";
const JENKINS_TOKEN: &str = "jenkins-import-token";

fn secret_file(dir: &std::path::Path, name: &str, value: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).expect("write token");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// 120 runs on 2026-11-02 (two pages of 100), each with one mac15 job queued at its
/// creation and run for 10 min after a 1 min wait; run 1 has the odd jobs.
fn history(gh: &FakeGitHub) {
    let mac15 = ["self-hosted", "macOS", "ARM64", "mac15"];
    for run in 1..=120_u64 {
        let at = |min: u64| {
            let t = 8 * 60 + run * 3 + min;
            format!("2026-11-02T{:02}:{:02}:00Z", t / 60, t % 60)
        };
        gh.history_run(run, &at(0));
        let times = (at(0), at(1), at(11));
        gh.finished_job(
            (run, 1000 + run),
            &mac15,
            "success",
            (&times.0, &times.1, &times.2),
            Some("macphsft01-ROOT-VM-macOS-15-b1"),
        );
    }
    // Run 1's other jobs: cancelled 20 s after starting (kept), cancelled while queued (no
    // runner), skipped, and a GitHub-hosted one.
    let t = (
        "2026-11-02T08:03:00Z",
        "2026-11-02T08:04:00Z",
        "2026-11-02T08:04:20Z",
    );
    let mac14 = ["self-hosted", "macOS", "ARM64", "mac14"];
    gh.finished_job((1, 1), &mac14, "cancelled", t, Some("r"));
    gh.finished_job((1, 2), &mac14, "cancelled", (t.0, t.0, t.1), None);
    gh.finished_job((1, 3), &mac14, "skipped", (t.0, t.0, t.0), None);
    gh.finished_job(
        (1, 4),
        &["ubuntu-latest"],
        "success",
        t,
        Some("GitHub Actions 2"),
    );
    // Outside the day: not listed by `created=`.
    gh.history_run(500, "2026-11-04T10:00:00Z");
    gh.finished_job((500, 5000), &mac15, "success", t, Some("r"));
}

#[test]
fn a_day_of_github_and_jenkins_history_becomes_a_replayable_trace() {
    let (rt, gh) = FakeGitHub::start_on_own_runtime(GH_TOKEN);
    let jenkins = rt.block_on(FakeJenkins::start(&[]));
    history(&gh);
    let day = parse_time("2026-11-02").expect("date");
    // Two builds of a folder job: on a fleet node after 2 min in the queue, and on an agent
    // outside the fleet; one still building.
    let job = "spi/nightly";
    jenkins.add_build(
        job,
        (1, day + 3_600_000, 1_800_000),
        "SUCCESS",
        "macphsft02-SPI-VM-1",
        Some(120_000),
    );
    jenkins.add_build(
        job,
        (2, day + 7_200_000, 600_000),
        "FAILURE",
        "linux-agent-7",
        None,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = ImportOptions {
        repo: Some("root-project/root".into()),
        github_api: gh.url(),
        github_token_file: Some(secret_file(dir.path(), "gh", GH_TOKEN)),
        require_labels: vec!["self-hosted".into()],
        jenkins: Some(jenkins.url.clone()),
        jenkins_jobs: vec![job.into()],
        jenkins_auth: Some((
            "spi-bot".into(),
            secret_file(dir.path(), "jk", JENKINS_TOKEN),
        )),
        window: Window {
            since_ms: day,
            until_ms: day + 86_400_000,
        },
        fleet: FleetSource::Standard(2),
    };
    let (trace, summary) = import(&opts).expect("import");

    assert_eq!(summary.root_jobs, 121, "{summary:?}");
    assert_eq!(
        (summary.never_ran, summary.skipped, summary.other_labels),
        (1, 1, 1)
    );
    assert_eq!(summary.cancelled_after_start, 1);
    assert_eq!(summary.real_wait_p95_ms, Some(60_000));
    assert_eq!((summary.jenkins_builds, summary.jenkins_any), (2, 1));
    let short = trace.root_jobs.iter().find(|j| j.duration.as_secs() == 20);
    assert!(short.is_some(), "the cancelled job keeps the 20 s it ran");
    let named = trace.jenkins.iter().find(|b| b.vm == "macphsft02-SPI-VM-1");
    assert_eq!(named.map(|b| b.at.as_secs()), Some(3600 - 120));
    assert_eq!(trace.hosts.len(), 2);
    assert_eq!(trace.sim.duration.as_secs(), 86_400);

    // Paged: two pages of runs, a job listing per run; every request authorised.
    let requests = gh.requests();
    let pages: Vec<_> = requests
        .iter()
        .filter(|r| r.path.contains("/actions/runs?created="))
        .collect();
    assert_eq!(
        pages.len(),
        2,
        "{:?}",
        pages.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert!(pages[1].path.contains("page=2"));
    assert!(requests.iter().all(|r| r.authorized));
    assert!(jenkins.requests().iter().all(|r| r.authorized));
    assert!(
        jenkins.requests()[0]
            .path
            .contains("tree=builds%5Bnumber%2Ctimestamp"),
        "{}",
        jenkins.requests()[0].path
    );

    let text = trace.to_toml().expect("serialises");
    assert!(!text.contains(GH_TOKEN) && !text.contains(JENKINS_TOKEN));
    let back = marble_sim::Trace::parse(&text, std::path::Path::new("i.toml")).expect("parses");
    let report = simulate(&back, RunOptions::default());
    assert!(report.violations.is_empty());
    assert_eq!(report.teams["root"].arrived, 121);
    drop(gh);
    drop(jenkins);
    drop(rt);
}

#[test]
fn a_token_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = secret_file(dir.path(), "gh", GH_TOKEN);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let opts = ImportOptions {
        repo: Some("root-project/root".into()),
        github_api: "http://127.0.0.1:9".into(),
        github_token_file: Some(path),
        require_labels: vec![],
        jenkins: None,
        jenkins_jobs: vec![],
        jenkins_auth: None,
        window: Window {
            since_ms: 0,
            until_ms: 1000,
        },
        fleet: FleetSource::Standard(1),
    };
    let err = import(&opts).expect_err("refused");
    assert_eq!(err.exit_code(), 74, "{err}");
}

#[test]
fn a_refused_token_exits_69_and_an_unknown_jenkins_job_too() {
    let (rt, gh) = FakeGitHub::start_on_own_runtime(GH_TOKEN);
    let jenkins = rt.block_on(FakeJenkins::start(&[]));
    gh.set_deny(Some(marble_tests::fake_github::Deny::Unauthorized));
    let dir = tempfile::tempdir().expect("tempdir");
    let window = Window {
        since_ms: parse_time("2026-11-02").expect("date"),
        until_ms: parse_time("2026-11-03").expect("date"),
    };
    let mut opts = ImportOptions {
        repo: Some("root-project/root".into()),
        github_api: gh.url(),
        github_token_file: Some(secret_file(dir.path(), "gh", GH_TOKEN)),
        require_labels: vec!["self-hosted".into()],
        jenkins: None,
        jenkins_jobs: vec![],
        jenkins_auth: None,
        window,
        fleet: FleetSource::Standard(1),
    };
    let err = import(&opts).expect_err("401");
    assert_eq!(err.exit_code(), 69, "{err}");
    let message = marbled::chain::ErrorChain(&err).to_string();
    assert!(!message.contains(GH_TOKEN), "{message}");

    opts.repo = None;
    opts.github_token_file = None;
    opts.jenkins = Some(jenkins.url.clone());
    opts.jenkins_jobs = vec!["no-such-job".into()];
    let err = import(&opts).expect_err("404");
    assert_eq!(err.exit_code(), 69, "{err}");
    assert!(err.to_string().contains("no-such-job") && err.to_string().contains("404"));
    drop(gh);
    drop(jenkins);
    drop(rt);
}
