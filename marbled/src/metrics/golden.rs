//! Golden test of the exposition text: a rich moment (every family, several label values,
//! zeros and non-zeros, every transfer kind and result, the optional CI blocks present) and
//! a bare one (no VM, no demand, the optional blocks absent), each compared with the text
//! recorded in `marbled/tests/golden/` — what node_exporter's textfile collector reads.
//! The text was recorded from the hand-written renderer `prometheus-client` replaced, and is
//! compared byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use marble_proto::{
    Attribution, BusyState, CiSystem, PendingRequest, PowerState, StatusReport, Team, VmInfo,
};

use super::*;
use crate::sched::{BOOT_BUCKETS_SECS, JOB_WAIT_BUCKETS_SECS};

const RICH: &str = include_str!("../../tests/golden/metrics-rich.prom");
const BARE: &str = include_str!("../../tests/golden/metrics-bare.prom");

/// Now, unix ms.
const NOW: u64 = 1_700_000_100_000;

fn vm(name: &str, team: Team, power: PowerState, busy: BusyState, locked: bool) -> VmInfo {
    VmInfo {
        name: name.into(),
        uuid: format!("{{{name}}}"),
        team,
        power,
        busy,
        lock: locked.then(|| Attribution {
            by: "ops".into(),
            reason: "disk".into(),
            since_ms: NOW - 5_000,
        }),
        operation: None,
        note: String::new(),
    }
}

fn rich_status() -> StatusReport {
    StatusReport {
        daemon_version: "0.1.0".into(),
        host: "mac\"ph\\01\nx".into(),
        policy: "demand".into(),
        capacity: 2,
        paused: Some(Attribution {
            by: "ops".into(),
            reason: "upgrade".into(),
            since_ms: NOW - 60_000,
        }),
        draining: None,
        vms: vec![
            vm(
                "a-ROOT-VM-macOS-14",
                Team::Root,
                PowerState::Running,
                BusyState::Busy {
                    reason: "job".into(),
                    since_ms: NOW - 1,
                },
                false,
            ),
            vm(
                "a-SPI-VM-macOS-1",
                Team::Spi,
                PowerState::Stopped,
                BusyState::Idle { checked_ms: NOW },
                true,
            ),
            vm(
                "odd",
                Team::Unassigned,
                PowerState::Other("mounted".into()),
                BusyState::Unknown {
                    reason: "ssh".into(),
                    checked_ms: NOW,
                },
                false,
            ),
            vm(
                "b-ROOT-VM-macOS-15",
                Team::Root,
                PowerState::Paused,
                BusyState::NotProbed,
                true,
            ),
        ],
        pending: vec![
            PendingRequest {
                vm: "a-SPI-VM-macOS-1".into(),
                by: "jenkins".into(),
                since_ms: NOW - 12_345,
            },
            PendingRequest {
                vm: "a-SPI-VM-macOS-1".into(),
                by: "jenkins".into(),
                since_ms: NOW - 2_000,
            },
        ],
        decisions: vec![],
        inventory_ms: NOW - 4_500,
    }
}

fn rich_counters() -> Counters {
    let mut counters = Counters {
        boots: 12,
        boot_failures: 1,
        grants: 7,
        refusals_busy: 3,
        refusals_locked: 0,
        stops: 9,
        kills: 2,
        probes_busy: 40,
        probes_idle: 0,
        probes_unknown: 5,
        grant_latency_ms_sum: 15_250,
        ..Counters::default()
    };
    for ms in [14_000, 31_000, 95_500, 400_000] {
        counters.boot_times.record(&BOOT_BUCKETS_SECS, ms);
    }
    for ms in [1_000, 60_000, 7_200_000] {
        counters.root_job_waits.record(&JOB_WAIT_BUCKETS_SECS, ms);
    }
    counters
}

fn rich_transfers() -> TransferCounts {
    let kind = |kind: &str, running, ok, failed| TransferKind {
        kind: kind.into(),
        running,
        ok,
        failed,
    };
    TransferCounts {
        bytes_sent: 5_000_000_017,
        bytes_received: 0,
        kinds: vec![
            kind("push", 1, 2, 3),
            kind("pull", 0, 0, 1),
            kind("verify", 2, 5, 0),
        ],
    }
}

fn rich_queued_jobs() -> Vec<QueuedJob> {
    let job = |id, since_ms, labels: &[&str]| QueuedJob {
        id,
        since_ms,
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
    };
    vec![
        job(1, NOW - 90_000, &["macOS", "self-hosted"]),
        job(2, NOW - 30_500, &["self-hosted", "macos", "macos"]),
        job(3, NOW - 1_000, &["ARM64", "macos-15"]),
    ]
}

fn system(name: &str, available: bool) -> CiSystem {
    CiSystem {
        system: name.into(),
        available,
        reason: String::new(),
        since_ms: 1,
        next_try_ms: 2,
    }
}

/// One runner current, one 31 days past its first newer release, one VM without a runner.
fn rich_runners() -> marble_proto::RunnerReport {
    const DAY: u64 = 86_400_000;
    let vm = |name: &str, version: Option<&str>, days: u64, deadline_ms: u64, level: &str| {
        marble_proto::RunnerVm {
            vm: name.into(),
            version: version.map(str::to_owned),
            read_ms: NOW - 3_600_000,
            days_behind: days,
            deadline_ms,
            level: level.into(),
        }
    };
    marble_proto::RunnerReport {
        latest: Some("2.331.0".into()),
        latest_published_ms: NOW - 2 * DAY,
        checked_ms: NOW - 60_000,
        check_error: String::new(),
        target: Some("2.331.0".into()),
        vms: vec![
            vm(
                "h-ROOT-VM-macOS-14",
                Some("2.329.0"),
                31,
                NOW - DAY,
                "overdue",
            ),
            vm("h-ROOT-VM-macOS-15", Some("2.331.0"), 0, 0, "current"),
            vm("h-ROOT-VM-macOS-26", None, 0, 0, "missing"),
        ],
    }
}

fn rich() -> String {
    let offline = ["foreign", "marble", "foreign", "this-host"];
    render(Snapshot {
        status: rich_status(),
        counters: rich_counters(),
        transfers: rich_transfers(),
        queued_jobs: rich_queued_jobs(),
        free_runners: 2,
        unservable: vec![crate::sched::UnservableJobs {
            labels: vec!["arm64".into(), "macos-15".into()],
            jobs: 1,
            since_ms: NOW - 1_000,
        }],
        ci_systems: vec![system("github", true), system("jenkins", false)],
        offline_runner_kinds: Some(offline.iter().map(|k| (*k).to_owned()).collect()),
        github_quota: Some(GithubQuota {
            remaining: 0,
            spent: 17,
            next_poll: Duration::from_millis(92_500),
        }),
        demand_poller: Some(("macphsft41".into(), 3)),
        jenkins: Some(JenkinsDemand {
            by_label: vec![
                (Some("macos".into()), 2, NOW - 61_000),
                (None, 1, NOW - 500),
                (Some("mac\"arm".into()), 0, NOW),
            ],
            known_until_ms: NOW + 60_000,
            idle_agents: vec!["macphsft02-SPI-VM-1".into(), "macphsft05-SPI-VM-1".into()],
            offline_agents: Vec::new(),
        }),
        runners: Some(rich_runners()),
        now_ms: NOW,
    })
}

fn bare() -> String {
    let status = StatusReport {
        daemon_version: "0.1.0".into(),
        host: "h".into(),
        policy: "manual".into(),
        capacity: 0,
        paused: None,
        draining: Some(Attribution {
            by: "ops".into(),
            reason: "maintenance".into(),
            since_ms: 1,
        }),
        vms: vec![],
        pending: vec![],
        decisions: vec![],
        inventory_ms: 0,
    };
    let transfers = TransferCounts {
        bytes_sent: 0,
        bytes_received: 0,
        kinds: ["push", "pull", "verify"]
            .iter()
            .map(|k| TransferKind {
                kind: (*k).into(),
                ..TransferKind::default()
            })
            .collect(),
    };
    render(Snapshot {
        status,
        counters: Counters::default(),
        transfers,
        queued_jobs: vec![],
        free_runners: 0,
        unservable: vec![],
        ci_systems: vec![],
        offline_runner_kinds: None,
        github_quota: None,
        jenkins: None,
        demand_poller: None,
        runners: None,
        now_ms: NOW,
    })
}

/// Compare with the recorded text; on a difference, leave the actual text next to the
/// golden one's name in the temp dir (to diff, or to record after a deliberate change).
fn check(name: &str, golden: &str, actual: &str) {
    if golden != actual {
        let path = std::env::temp_dir().join(format!("{name}.actual"));
        std::fs::write(&path, actual).unwrap();
        panic!(
            "{name} differs from marbled/tests/golden/{name}; actual text in {}",
            path.display()
        );
    }
}

#[test]
fn rich_moment_matches_the_golden_text() {
    check("metrics-rich.prom", RICH, &rich());
}

#[test]
fn bare_moment_matches_the_golden_text() {
    check("metrics-bare.prom", BARE, &bare());
}

/// Every metric name (`marble_…`) in the `expr` of every target of the fleet dashboard.
fn dashboard_metrics() -> std::collections::BTreeSet<String> {
    let text = include_str!("../../../docs/grafana/marble-fleet.json");
    let dashboard: serde_json::Value = serde_json::from_str(text).expect("dashboard is JSON");
    let mut exprs = Vec::new();
    fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => collect(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    collect(&dashboard, &mut exprs);
    assert!(exprs.len() >= 8, "the dashboard has its queries: {exprs:?}");
    let mut names = std::collections::BTreeSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("marble_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

/// Sample names the daemon exports (the rich moment has every family).
fn exported() -> std::collections::BTreeSet<String> {
    rich()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_metric_the_fleet_dashboard_queries_is_exported() {
    let queried = dashboard_metrics();
    let exported = exported();
    let missing: Vec<&String> = queried.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "docs/grafana/marble-fleet.json queries metrics marbled does not export: {missing:?}"
    );
    for m in [
        "marble_info",
        "marble_heartbeat_timestamp_seconds",
        "marble_vm_power",
        "marble_slot_requests_pending",
        "marble_queued_jobs",
        "marble_boots_total",
        "marble_runner_info",
        "marble_runner_days_behind",
        "marble_runner_update_deadline_seconds",
    ] {
        assert!(queried.contains(m), "the dashboard shows {m}");
    }
}
