//! Unit tests of the exposition: escaping, the families and their order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use marble_proto::{BusyState, PowerState, Team, VmInfo};

use super::*;

fn status(host: &str, policy: &str, vms: Vec<VmInfo>) -> StatusReport {
    StatusReport {
        daemon_version: "0.1".into(),
        host: host.into(),
        policy: policy.into(),
        capacity: 1,
        paused: None,
        draining: None,
        vms,
        pending: vec![],
        decisions: vec![],
        inventory_ms: 0,
    }
}

/// A snapshot of `status` with nothing else to show.
fn snapshot(status: StatusReport, now_ms: u64) -> Snapshot {
    Snapshot {
        status,
        counters: Counters::default(),
        transfers: TransferCounts::default(),
        queued_jobs: vec![],
        free_runners: 0,
        unservable: vec![],
        ci_systems: vec![],
        offline_runner_kinds: None,
        runners: None,
        github_quota: None,
        jenkins: None,
        demand_poller: None,
        now_ms,
    }
}

#[test]
fn label_values_are_escaped() {
    let text = render(snapshot(status("a\"b\\c\nd", "manual", vec![]), 1));
    assert!(
        text.contains("marble_info{host=\"a\\\"b\\\\c\\nd\","),
        "{text}"
    );
}

#[test]
fn families_and_job_wait() {
    let vm = VmInfo {
        name: "v".into(),
        uuid: "u".into(),
        team: Team::Root,
        power: PowerState::Other("weird".into()),
        busy: BusyState::NotProbed,
        lock: None,
        operation: None,
        note: String::new(),
    };
    let mut s = snapshot(status("h\"1", "demand", vec![vm]), 70_000);
    s.queued_jobs = vec![
        QueuedJob {
            id: 1,
            since_ms: 10_000,
            labels: vec!["macOS".into(), "self-hosted".into()],
        },
        QueuedJob {
            id: 2,
            since_ms: 40_000,
            labels: vec!["self-hosted".into(), "macos".into()],
        },
    ];
    s.jenkins = Some(JenkinsDemand {
        by_label: vec![(Some("macos".into()), 2, 10_000)],
        known_until_ms: 0,
        idle_agents: Vec::new(),
        offline_agents: Vec::new(),
    });
    s.ci_systems = vec![CiSystem {
        system: "github".into(),
        available: false,
        reason: "security exit 36".into(),
        since_ms: 1,
        next_try_ms: 2,
    }];
    s.offline_runner_kinds = Some(vec!["foreign".into(); 2]);
    s.github_quota = Some(GithubQuota {
        remaining: 1_234,
        spent: 17,
        next_poll: Duration::from_secs(90),
    });
    let text = render(s);
    assert!(
        text.contains("marble_ci_available{system=\"github\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("marble_github_offline_runners{kind=\"foreign\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("marble_github_offline_runners{kind=\"this-host\"} 0\n"),
        "{text}"
    );
    assert!(text.contains("marble_jenkins_wait_seconds{label=\"macos\"} 60\n"));
    // An answer that no longer stands (Jenkins silent for longer than the bound).
    assert!(text.contains("marble_jenkins_queue_known 0\n"), "{text}");
    assert!(
        text.contains("marble_github_rate_limit_remaining 1234\n"),
        "{text}"
    );
    assert!(text.contains("marble_github_poll_requests 17\n"), "{text}");
    assert!(
        text.contains("marble_github_poll_interval_seconds 90\n"),
        "{text}"
    );
    assert!(text.contains("marble_info{host=\"h\\\"1\""), "{text}");
    assert!(text.contains("marble_job_wait_seconds{labels=\"macos,self-hosted\"} 60\n"));
    assert!(text.contains("marble_queued_jobs{labels=\"macos,self-hosted\"} 2\n"));
    assert!(text.contains("marble_vm_power{vm=\"v\",team=\"root\",power=\"weird\"} 1\n"));
    let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!(types, helps);
}

#[test]
fn transfer_families() {
    let mut s = snapshot(status("h", "manual", vec![]), 1);
    s.transfers = TransferCounts {
        bytes_sent: 5_000_000_017,
        bytes_received: 42,
        kinds: vec![
            TransferKind {
                kind: "push".into(),
                running: 1,
                ok: 2,
                failed: 3,
            },
            TransferKind {
                kind: "pull".into(),
                running: 0,
                ok: 0,
                failed: 1,
            },
        ],
    };
    let text = render(s);
    // Each family announced once, its samples right after its TYPE line, in this order.
    let expected = "# TYPE marble_transfer_bytes_total counter\n\
        marble_transfer_bytes_total{direction=\"push\"} 5000000017\n\
        marble_transfer_bytes_total{direction=\"pull\"} 42\n\
        # HELP marble_transfers_total ";
    assert!(text.contains(expected), "{text}");
    let expected = "# TYPE marble_transfers_total counter\n\
        marble_transfers_total{kind=\"push\",result=\"ok\"} 2\n\
        marble_transfers_total{kind=\"push\",result=\"failed\"} 3\n\
        marble_transfers_total{kind=\"pull\",result=\"ok\"} 0\n\
        marble_transfers_total{kind=\"pull\",result=\"failed\"} 1\n\
        # HELP marble_transfers_running ";
    assert!(text.contains(expected), "{text}");
    let expected = "# TYPE marble_transfers_running gauge\n\
        marble_transfers_running{kind=\"push\"} 1\n\
        marble_transfers_running{kind=\"pull\"} 0\n";
    assert!(text.contains(expected), "{text}");
    for family in [
        "marble_transfer_bytes_total",
        "marble_transfers_total",
        "marble_transfers_running",
    ] {
        let help = format!("# HELP {family} ");
        assert_eq!(text.matches(&help).count(), 1, "{family}");
    }
    // The HELP says what is counted, as one line (no raw newline in it).
    let help = text
        .lines()
        .find(|l| l.starts_with("# HELP marble_transfer_bytes_total "))
        .unwrap();
    assert!(
        help.contains("push = sent to S3") && help.contains("resumed"),
        "{help}"
    );
}
