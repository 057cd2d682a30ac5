//! Prometheus metrics: [`render`] turns the scheduler's status, counters and last demand
//! snapshot, GitHub's rate limit as the demand poller last saw it, and the image transfers'
//! counters ([`crate::transfers::Transfers::metrics`]), into the text exposition format
//! (0.0.4); the `Metrics` request answers with it
//! and, with `[metrics] textfile = path`, [`run_textfile`] writes it atomically for
//! node_exporter's textfile collector every interval.
//!
//! Families are fixed (each `# HELP`/`# TYPE` once, samples right after); per-VM state uses
//! one 0/1 gauge per possible value so a state change never leaves a stale series behind.
//! Boot times are a histogram (`marble_vm_boot_seconds`, buckets
//! [`crate::sched::BOOT_BUCKETS_SECS`]): their tail, not their mean, is what a cold start
//! costs a job.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use marble_proto::{BusyState, CiSystem, PowerState, StatusReport};
use serde::{Deserialize, Serialize};

use crate::demand::{JenkinsDemand, OfflineSeen, PollQuota};
use crate::sched::{BOOT_BUCKETS_SECS, Counters, DemandSnapshot, Histogram, JOB_WAIT_BUCKETS_SECS};
use crate::transfers::TransferMetrics;

/// `[metrics]`: the node_exporter textfile (absent: only `marblectl metrics`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Where to write the exposition text (`*.prom` in node_exporter's
    /// `--collector.textfile.directory`). Unset: no file.
    pub textfile: Option<PathBuf>,
    /// How often the file is rewritten.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            textfile: None,
            interval: Duration::from_secs(30),
        }
    }
}

impl MetricsSection {
    /// Every problem, as `(key, message)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.interval < Duration::from_secs(1) {
            out.push(("metrics.interval".into(), "must be at least 1s".into()));
        }
        if let Some(path) = &self.textfile
            && (!path.is_absolute() || path.file_name().is_none())
        {
            out.push((
                "metrics.textfile".into(),
                format!("must be an absolute file path, got {}", path.display()),
            ));
        }
        out
    }
}

/// Power words exported for every VM (Parallels' states; an unknown word is added as seen).
const POWER_WORDS: [&str; 9] = [
    "stopped",
    "starting",
    "running",
    "stopping",
    "suspended",
    "suspending",
    "paused",
    "resuming",
    "invalid",
];

/// Escape a label value: backslash, double quote and newline.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Accumulates families, each announced once before its samples.
struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // HELP text escapes backslash and newline only.
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", fmt_value(value));
    }

    /// A histogram family: cumulative `le` buckets, `+Inf`, `_sum` (seconds), `_count`.
    fn histogram(&mut self, name: &str, help: &str, bounds_secs: &[u64], h: &Histogram) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (i, bound) in bounds_secs.iter().enumerate() {
            self.sample(
                &bucket,
                &[("le", &bound.to_string())],
                h.at_or_under(i) as f64,
            );
        }
        self.sample(&bucket, &[("le", "+Inf")], h.count as f64);
        self.sample(&format!("{name}_sum"), &[], h.sum_ms as f64 / 1000.0);
        self.sample(&format!("{name}_count"), &[], h.count as f64);
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

#[allow(clippy::cast_precision_loss)] // counters far below 2^53
fn f(v: u64) -> f64 {
    v as f64
}

/// The CI side for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct CiView<'a> {
    /// The configured CI systems and whether each is usable.
    pub systems: &'a [CiSystem],
    /// The offline runners the last GitHub poll did not count.
    pub offline: Option<&'a OfflineSeen>,
    /// GitHub's rate limit as the last poll saw it.
    pub quota: Option<&'a PollQuota>,
}

/// The exposition text for one moment.
pub fn render(
    status: &StatusReport,
    counters: &Counters,
    transfers: &TransferMetrics,
    demand: &DemandSnapshot,
    jenkins: Option<&JenkinsDemand>,
    ci: &CiView<'_>,
    now_ms: u64,
) -> String {
    let mut o = Out {
        text: String::new(),
    };
    o.family(
        "marble_info",
        "gauge",
        "Daemon identity (always 1): host, version, policy.",
    );
    o.sample(
        "marble_info",
        &[
            ("host", &status.host),
            ("version", &status.daemon_version),
            ("policy", &status.policy),
        ],
        1.0,
    );
    o.single(
        "marble_capacity",
        "gauge",
        "VMs allowed to run at once on this host.",
        f(u64::from(status.capacity)),
    );
    o.single(
        "marble_paused",
        "gauge",
        "1 while cycling is paused.",
        f(u64::from(status.paused.is_some())),
    );
    o.single(
        "marble_draining",
        "gauge",
        "1 while the host is draining (maintenance).",
        f(u64::from(status.draining.is_some())),
    );
    o.single(
        "marble_vms_running",
        "gauge",
        "VMs occupying the host (running, starting, paused, ...).",
        f(status
            .vms
            .iter()
            .filter(|v| v.power.occupies_host())
            .count() as u64),
    );

    o.family(
        "marble_vm_power",
        "gauge",
        "1 for the VM's current power state, 0 for the others.",
    );
    for vm in &status.vms {
        let team = vm.team.as_str();
        let current = vm.power.as_word();
        for word in POWER_WORDS {
            o.sample(
                "marble_vm_power",
                &[("vm", &vm.name), ("team", team), ("power", word)],
                f(u64::from(current == word)),
            );
        }
        if let PowerState::Other(word) = &vm.power {
            o.sample(
                "marble_vm_power",
                &[("vm", &vm.name), ("team", team), ("power", word)],
                1.0,
            );
        }
    }
    o.family(
        "marble_vm_busy",
        "gauge",
        "1 for the VM's last busy-probe answer (busy, idle, unknown, not_probed), 0 for the others.",
    );
    for vm in &status.vms {
        let team = vm.team.as_str();
        let state = match vm.busy {
            BusyState::NotProbed => "not_probed",
            BusyState::Idle { .. } => "idle",
            BusyState::Busy { .. } => "busy",
            BusyState::Unknown { .. } => "unknown",
        };
        for word in ["busy", "idle", "unknown", "not_probed"] {
            o.sample(
                "marble_vm_busy",
                &[("vm", &vm.name), ("team", team), ("state", word)],
                f(u64::from(state == word)),
            );
        }
    }
    o.family(
        "marble_vm_locked",
        "gauge",
        "1 while the VM is locked against starts.",
    );
    for vm in &status.vms {
        o.sample(
            "marble_vm_locked",
            &[("vm", &vm.name), ("team", vm.team.as_str())],
            f(u64::from(vm.lock.is_some())),
        );
    }
    o.single(
        "marble_slot_requests_pending",
        "gauge",
        "Jenkins slot requests waiting for the host.",
        f(status.pending.len() as u64),
    );
    let oldest_pending = status.pending.iter().map(|p| p.since_ms).min();
    o.single(
        "marble_slot_request_wait_seconds",
        "gauge",
        "Age of the oldest waiting slot request (0 when none waits).",
        oldest_pending.map_or(0.0, |since| secs(now_ms.saturating_sub(since))),
    );
    o.single(
        "marble_inventory_age_seconds",
        "gauge",
        "Time since the hypervisor inventory was last refreshed.",
        if status.inventory_ms == 0 {
            0.0
        } else {
            secs(now_ms.saturating_sub(status.inventory_ms))
        },
    );

    o.single(
        "marble_boots_total",
        "counter",
        "VM starts and resumes issued since the daemon started.",
        f(counters.boots),
    );
    o.single(
        "marble_boot_failures_total",
        "counter",
        "Boots that failed to start or to become ready.",
        f(counters.boot_failures),
    );
    o.histogram(
        "marble_vm_boot_seconds",
        "Time from prlctl start to the guest answering, per boot MARBLE started (resumes not counted).",
        &BOOT_BUCKETS_SECS,
        &counters.boot_times,
    );
    o.histogram(
        "marble_root_job_wait_seconds",
        "Time from queued to started (GitHub's created_at and started_at), per ROOT job a runner of this host took.",
        &JOB_WAIT_BUCKETS_SECS,
        &counters.root_job_waits,
    );
    o.single(
        "marble_slot_grants_total",
        "counter",
        "Jenkins slot requests granted.",
        f(counters.grants),
    );
    o.family(
        "marble_slot_refusals_total",
        "counter",
        "Jenkins slot requests refused, by reason (busy = exit 75, locked = exit 77).",
    );
    o.sample(
        "marble_slot_refusals_total",
        &[("reason", "busy")],
        f(counters.refusals_busy),
    );
    o.sample(
        "marble_slot_refusals_total",
        &[("reason", "locked")],
        f(counters.refusals_locked),
    );
    o.family(
        "marble_slot_grant_latency_seconds",
        "summary",
        "Time from a slot request to its grant.",
    );
    o.sample(
        "marble_slot_grant_latency_seconds_sum",
        &[],
        secs(counters.grant_latency_ms_sum),
    );
    o.sample(
        "marble_slot_grant_latency_seconds_count",
        &[],
        f(counters.grants),
    );
    o.single(
        "marble_vm_stops_total",
        "counter",
        "VMs stopped by the scheduler or an operator.",
        f(counters.stops),
    );
    o.single(
        "marble_vm_kills_total",
        "counter",
        "Stops that needed a hard power-off after the graceful timeout.",
        f(counters.kills),
    );
    o.family("marble_probes_total", "counter", "Busy probes by answer.");
    for (result, n) in [
        ("busy", counters.probes_busy),
        ("idle", counters.probes_idle),
        ("unknown", counters.probes_unknown),
    ] {
        o.sample("marble_probes_total", &[("result", result)], f(n));
    }
    render_transfers(&mut o, transfers);

    // Demand: queued jobs and the oldest one's age per label set.
    let mut by_labels: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for job in &demand.root_jobs {
        let mut labels: Vec<String> = job.labels.iter().map(|l| l.to_ascii_lowercase()).collect();
        labels.sort();
        labels.dedup();
        let entry = by_labels.entry(labels.join(",")).or_insert((0, u64::MAX));
        entry.0 += 1;
        entry.1 = entry.1.min(job.since_ms);
    }
    o.family(
        "marble_queued_jobs",
        "gauge",
        "Queued GitHub jobs by runs-on label set (last demand snapshot).",
    );
    for (labels, (count, _)) in &by_labels {
        o.sample("marble_queued_jobs", &[("labels", labels)], f(*count));
    }
    o.family(
        "marble_job_wait_seconds",
        "gauge",
        "Age of the oldest queued GitHub job by runs-on label set (last demand snapshot).",
    );
    for (labels, (_, oldest)) in &by_labels {
        o.sample(
            "marble_job_wait_seconds",
            &[("labels", labels)],
            secs(now_ms.saturating_sub(*oldest)),
        );
    }
    o.single(
        "marble_fleet_free_runners",
        "gauge",
        "Runners that will take a matching job across the fleet: idle and online, or registered \
         by MARBLE for a VM booting now (last demand snapshot).",
        f(demand.free_runners.len() as u64),
    );
    o.family(
        "marble_ci_available",
        "gauge",
        "1 when the CI system can be used (its token is loaded), 0 while the daemon retries \
         its token source; the reason is in `marblectl status`.",
    );
    for system in ci.systems {
        o.sample(
            "marble_ci_available",
            &[("system", &system.system)],
            if system.available { 1.0 } else { 0.0 },
        );
    }
    if let Some(offline) = ci.offline {
        o.family(
            "marble_github_offline_runners",
            "gauge",
            "Registered runners offline and not counted as free capacity (last demand poll), \
             by kind: foreign (not MARBLE's), marble (another host's, older than a boot), \
             this-host.",
        );
        for kind in ["foreign", "marble", "this-host"] {
            let n = offline.runners.iter().filter(|r| r.kind == kind).count();
            o.sample(
                "marble_github_offline_runners",
                &[("kind", kind)],
                f(n as u64),
            );
        }
    }
    if let Some(quota) = ci.quota {
        o.single(
            "marble_github_rate_limit_remaining",
            "gauge",
            "GitHub primary rate-limit requests left in the window (last demand poll).",
            f(quota.seen.remaining),
        );
        o.single(
            "marble_github_poll_requests",
            "gauge",
            "Rate-limit requests the last demand poll spent (304 answers are free).",
            f(quota.seen.spent),
        );
        o.single(
            "marble_github_poll_interval_seconds",
            "gauge",
            "Wait before the next demand poll: [demand] interval, longer while paced.",
            quota.next_poll.as_secs_f64(),
        );
    }
    if let Some(jenkins) = jenkins {
        o.family(
            "marble_jenkins_buildable_items",
            "gauge",
            "Buildable Jenkins queue items by the label named in their why text.",
        );
        for (label, n, _) in &jenkins.by_label {
            o.sample(
                "marble_jenkins_buildable_items",
                &[("label", label.as_deref().unwrap_or(""))],
                f(*n),
            );
        }
        o.family(
            "marble_jenkins_wait_seconds",
            "gauge",
            "Age of the oldest buildable Jenkins queue item by label.",
        );
        for (label, _, oldest) in &jenkins.by_label {
            o.sample(
                "marble_jenkins_wait_seconds",
                &[("label", label.as_deref().unwrap_or(""))],
                secs(now_ms.saturating_sub(*oldest)),
            );
        }
    }
    o.text
}

/// Image transfers. Always rendered (zeros in a build without feature `s3`, where no transfer
/// can start), so a dashboard's series exist before the first transfer.
fn render_transfers(o: &mut Out, t: &TransferMetrics) {
    o.family(
        "marble_transfer_bytes_total",
        "counter",
        "Object bytes image transfers moved over the wire since marbled started, added as each S3 request succeeds (so a running transfer counts): push = sent to S3 (parts, manifests), pull = received from S3 (pull, verify, a push's read-back). A resumed transfer counts only what it sends or fetches again; HTTP headers, XML and failed attempts are not counted.",
    );
    o.sample(
        "marble_transfer_bytes_total",
        &[("direction", "push")],
        f(t.bytes_sent),
    );
    o.sample(
        "marble_transfer_bytes_total",
        &[("direction", "pull")],
        f(t.bytes_received),
    );
    o.family(
        "marble_transfers_total",
        "counter",
        "Image transfers (push, pull, verify) ended since marbled started, by result (failed includes those interrupted by a shutdown).",
    );
    for k in &t.kinds {
        for (result, n) in [("ok", k.ok), ("failed", k.failed)] {
            o.sample(
                "marble_transfers_total",
                &[("kind", &k.kind), ("result", result)],
                f(n),
            );
        }
    }
    o.family(
        "marble_transfers_running",
        "gauge",
        "Image transfers running now, by kind.",
    );
    for k in &t.kinds {
        o.sample(
            "marble_transfers_running",
            &[("kind", &k.kind)],
            f(k.running),
        );
    }
}

#[allow(clippy::cast_precision_loss)]
fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Write `text` to `path` atomically: a temp file in the same directory, fsync, rename (so
/// node_exporter never reads half a file).
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Rewrite the textfile now and every interval until `shutdown`; failures are logged.
pub async fn run_textfile(
    handle: crate::actor::DaemonHandle,
    path: PathBuf,
    interval: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        match handle.query(marble_proto::Request::Metrics).await {
            Ok(marble_proto::Response::Metrics { text }) => {
                let target = path.clone();
                let written =
                    tokio::task::spawn_blocking(move || write_atomic(&target, &text)).await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        tracing::warn!(path = %path.display(), error = %err, "metrics textfile not written");
                    }
                    Err(err) => tracing::warn!(error = %err, "metrics writer panicked"),
                }
            }
            Ok(_) => tracing::warn!("unexpected answer to the metrics query"),
            Err(_) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod golden;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::sched::QueuedJob;
    use marble_proto::{Team, VmInfo};

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn families_and_job_wait() {
        let status = StatusReport {
            daemon_version: "0.1".into(),
            host: "h\"1".into(),
            policy: "demand".into(),
            capacity: 1,
            paused: None,
            draining: None,
            vms: vec![VmInfo {
                name: "v".into(),
                uuid: "u".into(),
                team: Team::Root,
                power: PowerState::Other("weird".into()),
                busy: BusyState::NotProbed,
                lock: None,
                operation: None,
                note: String::new(),
            }],
            pending: vec![],
            decisions: vec![],
            inventory_ms: 0,
        };
        // Only the field this test is about: the snapshot grows others.
        let demand = DemandSnapshot {
            root_jobs: vec![
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
            ],
            ..DemandSnapshot::default()
        };
        let jenkins = JenkinsDemand {
            by_label: vec![(Some("macos".into()), 2, 10_000)],
        };
        let text = render(
            &status,
            &Counters::default(),
            &TransferMetrics::default(),
            &demand,
            Some(&jenkins),
            &CiView {
                systems: &[CiSystem {
                    system: "github".into(),
                    available: false,
                    reason: "security exit 36".into(),
                    since_ms: 1,
                    next_try_ms: 2,
                }],
                offline: Some(&OfflineSeen {
                    runners: vec![
                        marble_proto::OfflineRunner {
                            id: 1,
                            name: "seed".into(),
                            labels: vec![],
                            busy: false,
                            kind: "foreign".into(),
                        };
                        2
                    ],
                    polled_ms: 1,
                }),
                quota: Some(&PollQuota {
                    seen: crate::demand::QuotaSeen {
                        spent: 17,
                        drained: 17,
                        remaining: 1_234,
                        reset_in_secs: 600,
                    },
                    next_poll: Duration::from_secs(90),
                }),
            },
            70_000,
        );
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
        use crate::transfers::KindCounts;
        let status = StatusReport {
            daemon_version: "0.1".into(),
            host: "h".into(),
            policy: "manual".into(),
            capacity: 1,
            paused: None,
            draining: None,
            vms: vec![],
            pending: vec![],
            decisions: vec![],
            inventory_ms: 0,
        };
        let transfers = TransferMetrics {
            bytes_sent: 5_000_000_017,
            bytes_received: 42,
            kinds: vec![
                KindCounts {
                    kind: "push".into(),
                    running: 1,
                    ok: 2,
                    failed: 3,
                },
                KindCounts {
                    kind: "pull".into(),
                    running: 0,
                    ok: 0,
                    failed: 1,
                },
            ],
        };
        let text = render(
            &status,
            &Counters::default(),
            &transfers,
            &DemandSnapshot::default(),
            None,
            &CiView::default(),
            1,
        );
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

    #[test]
    fn textfile_is_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("marble.prom");
        write_atomic(&path, "a 1\n").unwrap();
        write_atomic(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
