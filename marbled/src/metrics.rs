//! Prometheus metrics, rendering only: [`render`] turns a [`Snapshot`] (the scheduler's
//! status, counters and last demand snapshot, the image transfers' counters, GitHub's rate
//! limit as the demand poller last saw it, the Jenkins queue) into the text exposition format
//! (0.0.4) through `prometheus-client`'s Prometheus-text encoder. The `Metrics` request
//! answers with it, and with `[metrics] textfile = path` the periodic textfile task
//! (`crate::periodic`) writes it for node_exporter's textfile collector every interval.
//!
//! The snapshot is plain data the actor fills in: this module knows nothing of the actor,
//! the demand poller or the transfers. Families are fixed and in a fixed order (each `#
//! HELP`/`# TYPE` once, samples right after); per-VM state uses one 0/1 gauge per possible
//! value so a state change never leaves a stale series behind. Boot times are a histogram
//! (`marble_vm_boot_seconds`, buckets [`crate::sched::BOOT_BUCKETS_SECS`]): their tail, not
//! their mean, is what a cold start costs a job.
//!
//! The text is byte for byte what the hand-written renderer before it wrote (golden test in
//! `metrics/golden.rs`). Two things the encoder cannot write are adapted here: the one
//! summary family (the crate has no summary type) is written by hand between the encoded
//! families, and a histogram's whole-number `_sum`, which the encoder always writes as a
//! float (`95.0`), loses its `.0` again (`95`, as dashboards and tests have read it).

mod families;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use marble_proto::{CiSystem, StatusReport};
use prometheus_client::registry::Registry;

use crate::demand::JenkinsDemand;
use crate::sched::{Counters, QueuedJob, UnservableJobs};

/// Everything one exposition shows, as plain data (filled in by the actor).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The scheduler's status (identity, VMs, pending slot requests, inventory age).
    pub status: StatusReport,
    /// Counters and histograms since the daemon started.
    pub counters: Counters,
    /// Image transfer counters.
    pub transfers: TransferCounts,
    /// Queued ROOT jobs of the last demand snapshot.
    pub queued_jobs: Vec<QueuedJob>,
    /// Free runners across the fleet in the last demand snapshot.
    pub free_runners: u64,
    /// Queued jobs no VM here nor any registered runner can serve, by label set.
    pub unservable: Vec<UnservableJobs>,
    /// The configured CI systems and whether each is usable.
    pub ci_systems: Vec<CiSystem>,
    /// The `kind` of each runner the last GitHub poll saw offline (None before a poll).
    pub offline_runner_kinds: Option<Vec<String>>,
    /// GitHub's rate limit as the last poll saw it.
    pub github_quota: Option<GithubQuota>,
    /// The Jenkins queue as last polled; None when Jenkins is not polled.
    pub jenkins: Option<JenkinsDemand>,
    /// The fleet's demand poller (`[demand] shared`): `(holder, term)`; None without it.
    pub demand_poller: Option<(String, u64)>,
    /// ROOT VMs' runner versions (None without `[github]`).
    pub runners: Option<marble_proto::RunnerReport>,
    /// Now, unix ms (ages are computed from it).
    pub now_ms: u64,
}

/// Image transfers' counters (always rendered, zeros in a build without feature `s3`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferCounts {
    /// Object bytes sent to S3.
    pub bytes_sent: u64,
    /// Object bytes received from S3.
    pub bytes_received: u64,
    /// One row per kind, in the order rendered.
    pub kinds: Vec<TransferKind>,
}

/// Transfers of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferKind {
    /// `push`, `pull` or `verify`.
    pub kind: String,
    /// Running now.
    pub running: u64,
    /// Ended without error.
    pub ok: u64,
    /// Ended with an error.
    pub failed: u64,
}

/// GitHub's primary rate limit after the last demand poll, and the poller's next wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GithubQuota {
    /// Requests left in the window.
    pub remaining: u64,
    /// Requests the poll spent.
    pub spent: u64,
    /// Until the next regular poll.
    pub next_poll: Duration,
}

/// The exposition text for one moment.
pub fn render(snapshot: Snapshot) -> String {
    let snapshot = Arc::new(snapshot);
    let mut text = String::new();
    // prometheus-client has no summary type (its `MetricType` stops at counter, gauge,
    // histogram, info, unknown), so the one summary family is written here between the
    // families encoded before and after it: it stays a summary for node_exporter.
    encode(&mut text, families::Part::BeforeSummary, &snapshot);
    whole_sums(&mut text);
    let grant_latency = "marble_slot_grant_latency_seconds";
    let _ = write!(
        text,
        "# HELP {grant_latency} Time from a slot request to its grant.\n\
         # TYPE {grant_latency} summary\n\
         {grant_latency}_sum {}\n\
         {grant_latency}_count {}\n",
        fmt_value(secs(snapshot.counters.grant_latency_ms_sum)),
        snapshot.counters.grants,
    );
    encode(&mut text, families::Part::AfterSummary, &snapshot);
    text
}

/// Append one part's families to `text`.
fn encode(text: &mut String, part: families::Part, snapshot: &Arc<Snapshot>) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(families::Families {
        part,
        snapshot: Arc::clone(snapshot),
    }));
    // Writing to a String cannot fail, and no family returns an error of its own.
    let _ = prometheus_client::encoding::prometheus_text::encode(text, &registry);
}

/// Drop the `.0` the encoder writes after a whole histogram `_sum` (`95.0` → `95`): every
/// other value of the text is written without a fraction when whole, and so were these.
fn whole_sums(text: &mut String) {
    for name in families::HISTOGRAMS {
        let line = format!("\n{name}_sum ");
        let Some(at) = text.find(&line) else {
            continue;
        };
        let start = at + line.len();
        let end = text[start..].find('\n').map_or(text.len(), |n| start + n);
        if text[start..end].ends_with(".0") {
            text.replace_range(end - 2..end, "");
        }
    }
}

/// A value as the text shows it: whole numbers without a fraction (`60`, not `60.0`).
fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

#[allow(clippy::cast_precision_loss)]
fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod golden;

#[cfg(test)]
mod tests;
