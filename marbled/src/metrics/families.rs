//! The metric families of [`super::render`], as a `prometheus-client` collector over one
//! [`Snapshot`]: names, types, HELP texts, labels and their order are what node_exporter's
//! textfile collector has always read (see the golden test). Counters are named without
//! `_total` here: the encoder appends it to the HELP, TYPE and sample names.

use std::collections::BTreeMap;
use std::fmt::Error;
use std::sync::Arc;

use marble_proto::{BusyState, PowerState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::{Snapshot, TransferCounts, secs};
use crate::sched::{BOOT_BUCKETS_SECS, Histogram, JOB_WAIT_BUCKETS_SECS};

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

/// Busy-probe answers exported for every VM.
const BUSY_WORDS: [&str; 4] = ["busy", "idle", "unknown", "not_probed"];

/// Offline runner kinds exported after a GitHub poll.
const OFFLINE_KINDS: [&str; 3] = ["foreign", "marble", "this-host"];

/// The histogram families (see `super::whole_sums`).
pub(super) const HISTOGRAMS: [&str; 2] = ["marble_vm_boot_seconds", "marble_root_job_wait_seconds"];

/// Which families: those before the hand-written summary, or those after it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Part {
    /// Host, VMs, slot requests, boots, slot grants and refusals.
    BeforeSummary,
    /// Stops, probes, transfers, demand, CI.
    AfterSummary,
}

/// The collector: one snapshot, one part.
#[derive(Debug)]
pub(super) struct Families {
    pub(super) part: Part,
    pub(super) snapshot: Arc<Snapshot>,
}

impl Collector for Families {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), Error> {
        let s = &*self.snapshot;
        match self.part {
            Part::BeforeSummary => {
                host(&mut enc, s)?;
                vms(&mut enc, s)?;
                slot_requests(&mut enc, s)?;
                boots(&mut enc, s)?;
                let refusals = [
                    ("busy", s.counters.refusals_busy),
                    ("locked", s.counters.refusals_locked),
                ];
                counter(
                    &mut enc,
                    "marble_slot_grants",
                    "Jenkins slot requests granted.",
                    s.counters.grants,
                )?;
                counters(
                    &mut enc,
                    "marble_slot_refusals",
                    "Jenkins slot requests refused, by reason (busy = exit 75, locked = exit 77).",
                    "reason",
                    &refusals,
                )
            }
            Part::AfterSummary => {
                stops_and_probes(&mut enc, s)?;
                transfers(&mut enc, &s.transfers)?;
                demand(&mut enc, s)?;
                ci(&mut enc, s)?;
                runners(&mut enc, s)?;
                jenkins(&mut enc, s)
            }
        }
    }
}

fn describe<'e>(
    enc: &'e mut DescriptorEncoder,
    name: &'e str,
    help: &str,
    kind: MetricType,
) -> Result<MetricEncoder<'e>, Error> {
    enc.encode_descriptor(name, help, None, kind)
}

/// A gauge without labels.
fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> Result<(), Error> {
    let mut family = describe(enc, name, help, MetricType::Gauge)?;
    set(&mut family, value)
}

/// A counter without labels (`name` without `_total`).
fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), Error> {
    describe(enc, name, help, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, f64>(&value, None)
}

/// A counter with one label (`name` without `_total`).
fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> Result<(), Error> {
    let mut family = describe(enc, name, help, MetricType::Counter)?;
    for (value, n) in values {
        family
            .encode_family(&[(label, *value)])?
            .encode_counter::<NoLabelSet, _, f64>(n, None)?;
    }
    Ok(())
}

/// Encode a gauge value: whole numbers as integers (`60`, not the encoder's `60.0` for a
/// float), as the text has always shown them.
fn set(metric: &mut MetricEncoder, value: f64) -> Result<(), Error> {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        #[allow(clippy::cast_possible_truncation)] // whole and far below i64::MAX
        metric.encode_gauge(&(value as i64))
    } else {
        metric.encode_gauge(&value)
    }
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^53
fn f(v: u64) -> f64 {
    v as f64
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

fn host(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), Error> {
    let status = &s.status;
    describe(
        enc,
        "marble_info",
        "Daemon identity (always 1): host, version, policy.",
        MetricType::Gauge,
    )?
    .encode_family(&[
        ("host", status.host.as_str()),
        ("version", status.daemon_version.as_str()),
        ("policy", status.policy.as_str()),
    ])?
    .encode_gauge(&1_i64)?;
    // The fleet view's "last heartbeat": a textfile keeps being scraped after its writer
    // died, so the time it was written is the only sign of life it can carry.
    gauge(
        enc,
        "marble_heartbeat_timestamp_seconds",
        "Unix time at which marbled rendered these metrics; time() minus this is how long it has been silent.",
        secs(s.now_ms),
    )?;
    gauge(
        enc,
        "marble_capacity",
        "VMs allowed to run at once on this host.",
        f64::from(status.capacity),
    )?;
    gauge(
        enc,
        "marble_paused",
        "1 while cycling is paused.",
        flag(status.paused.is_some()),
    )?;
    gauge(
        enc,
        "marble_draining",
        "1 while the host is draining (maintenance).",
        flag(status.draining.is_some()),
    )?;
    let running = status.vms.iter().filter(|v| v.power.occupies_host());
    gauge(
        enc,
        "marble_vms_running",
        "VMs occupying the host (running, starting, paused, ...).",
        f(running.count() as u64),
    )
}

fn vms(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), Error> {
    let vms = &s.status.vms;
    let mut family = describe(
        enc,
        "marble_vm_power",
        "1 for the VM's current power state, 0 for the others.",
        MetricType::Gauge,
    )?;
    for vm in vms {
        let current = vm.power.as_word();
        let extra = match &vm.power {
            PowerState::Other(word) => Some(word.as_str()),
            _ => None,
        };
        for word in POWER_WORDS.into_iter().chain(extra) {
            let labels = [
                ("vm", vm.name.as_str()),
                ("team", vm.team.as_str()),
                ("power", word),
            ];
            set(&mut family.encode_family(&labels)?, flag(current == word))?;
        }
    }
    let mut family = describe(
        enc,
        "marble_vm_busy",
        "1 for the VM's last busy-probe answer (busy, idle, unknown, not_probed), 0 for the others.",
        MetricType::Gauge,
    )?;
    for vm in vms {
        let state = match vm.busy {
            BusyState::NotProbed => "not_probed",
            BusyState::Idle { .. } => "idle",
            BusyState::Busy { .. } => "busy",
            BusyState::Unknown { .. } => "unknown",
        };
        for word in BUSY_WORDS {
            let labels = [
                ("vm", vm.name.as_str()),
                ("team", vm.team.as_str()),
                ("state", word),
            ];
            set(&mut family.encode_family(&labels)?, flag(state == word))?;
        }
    }
    let mut family = describe(
        enc,
        "marble_vm_locked",
        "1 while the VM is locked against starts.",
        MetricType::Gauge,
    )?;
    for vm in vms {
        let labels = [("vm", vm.name.as_str()), ("team", vm.team.as_str())];
        set(&mut family.encode_family(&labels)?, flag(vm.lock.is_some()))?;
    }
    Ok(())
}

fn slot_requests(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), Error> {
    let status = &s.status;
    gauge(
        enc,
        "marble_slot_requests_pending",
        "Jenkins slot requests waiting for the host.",
        f(status.pending.len() as u64),
    )?;
    let oldest_pending = status.pending.iter().map(|p| p.since_ms).min();
    gauge(
        enc,
        "marble_slot_request_wait_seconds",
        "Age of the oldest waiting slot request (0 when none waits).",
        oldest_pending.map_or(0.0, |since| secs(s.now_ms.saturating_sub(since))),
    )?;
    gauge(
        enc,
        "marble_inventory_age_seconds",
        "Time since the hypervisor inventory was last refreshed.",
        if status.inventory_ms == 0 {
            0.0
        } else {
            secs(s.now_ms.saturating_sub(status.inventory_ms))
        },
    )
}

fn boots(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), Error> {
    let c = &s.counters;
    counter(
        enc,
        "marble_boots",
        "VM starts and resumes issued since the daemon started.",
        c.boots,
    )?;
    counter(
        enc,
        "marble_boot_failures",
        "Boots that failed to start or to become ready.",
        c.boot_failures,
    )?;
    histogram(
        enc,
        HISTOGRAMS[0],
        "Time from prlctl start to the guest answering, per boot MARBLE started (resumes not counted).",
        &BOOT_BUCKETS_SECS,
        &c.boot_times,
    )?;
    histogram(
        enc,
        HISTOGRAMS[1],
        "Time from queued to started (GitHub's created_at and started_at), per ROOT job a runner of this host took.",
        &JOB_WAIT_BUCKETS_SECS,
        &c.root_job_waits,
    )
}

/// A histogram family: `le` buckets (the encoder makes them cumulative and adds `+Inf`),
/// `_sum` in seconds, `_count`.
fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    bounds_secs: &[u64],
    h: &Histogram,
) -> Result<(), Error> {
    let mut below = 0;
    let buckets: Vec<(f64, u64)> = (0..bounds_secs.len())
        .map(|i| {
            let at_or_under = h.at_or_under(i);
            let here = at_or_under.saturating_sub(below);
            below = at_or_under;
            (f(bounds_secs[i]), here)
        })
        .collect();
    describe(enc, name, help, MetricType::Histogram)?.encode_histogram::<NoLabelSet>(
        secs(h.sum_ms),
        h.count,
        &buckets,
        None,
    )
}

fn stops_and_probes(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), Error> {
    let c = &s.counters;
    counter(
        enc,
        "marble_vm_stops",
        "VMs stopped by the scheduler or an operator.",
        c.stops,
    )?;
    counter(
        enc,
        "marble_vm_kills",
        "Stops that needed a hard power-off after the graceful timeout.",
        c.kills,
    )?;
    let probes = [
        ("busy", c.probes_busy),
        ("idle", c.probes_idle),
        ("unknown", c.probes_unknown),
    ];
    counters(
        enc,
        "marble_probes",
        "Busy probes by answer.",
        "result",
        &probes,
    )
}

/// Image transfers. Always rendered (zeros in a build without feature `s3`, where no transfer
/// can start), so a dashboard's series exist before the first transfer.
fn transfers(enc: &mut DescriptorEncoder, t: &TransferCounts) -> Result<(), Error> {
    counters(
        enc,
        "marble_transfer_bytes",
        "Object bytes image transfers moved over the wire since marbled started, added as each S3 request succeeds (so a running transfer counts): push = sent to S3 (parts, manifests), pull = received from S3 (pull, verify, a push's read-back). A resumed transfer counts only what it sends or fetches again; HTTP headers, XML and failed attempts are not counted.",
        "direction",
        &[("push", t.bytes_sent), ("pull", t.bytes_received)],
    )?;
    let mut family = describe(
        enc,
        "marble_transfers",
        "Image transfers (push, pull, verify) ended since marbled started, by result (failed includes those interrupted by a shutdown).",
        MetricType::Counter,
    )?;
    for k in &t.kinds {
        for (result, n) in [("ok", k.ok), ("failed", k.failed)] {
            family
                .encode_family(&[("kind", k.kind.as_str()), ("result", result)])?
                .encode_counter::<NoLabelSet, _, f64>(&n, None)?;
        }
    }
    let mut family = describe(
        enc,
        "marble_transfers_running",
        "Image transfers running now, by kind.",
        MetricType::Gauge,
    )?;
    for k in &t.kinds {
        set(
            &mut family.encode_family(&[("kind", k.kind.as_str())])?,
            f(k.running),
        )?;
    }
    Ok(())
}

/// Demand: queued jobs and the oldest one's age per label set, the unservable ones, free
/// runners.
fn demand(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), Error> {
    let mut by_labels: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for job in &s.queued_jobs {
        let mut labels: Vec<String> = job.labels.iter().map(|l| l.to_ascii_lowercase()).collect();
        labels.sort();
        labels.dedup();
        let entry = by_labels.entry(labels.join(",")).or_insert((0, u64::MAX));
        entry.0 += 1;
        entry.1 = entry.1.min(job.since_ms);
    }
    let mut family = describe(
        enc,
        "marble_queued_jobs",
        "Queued GitHub jobs by runs-on label set (last demand snapshot).",
        MetricType::Gauge,
    )?;
    for (labels, (count, _)) in &by_labels {
        set(
            &mut family.encode_family(&[("labels", labels.as_str())])?,
            f(*count),
        )?;
    }
    let mut family = describe(
        enc,
        "marble_job_wait_seconds",
        "Age of the oldest queued GitHub job by runs-on label set (last demand snapshot).",
        MetricType::Gauge,
    )?;
    for (labels, (_, oldest)) in &by_labels {
        set(
            &mut family.encode_family(&[("labels", labels.as_str())])?,
            secs(s.now_ms.saturating_sub(*oldest)),
        )?;
    }
    let mut family = describe(
        enc,
        "marble_demand_unservable_jobs",
        "Queued GitHub jobs by runs-on label set that no ROOT VM of this host offers and no \
         registered runner covers: nothing boots for them (last demand snapshot).",
        MetricType::Gauge,
    )?;
    for u in &s.unservable {
        set(
            &mut family.encode_family(&[("labels", u.labels.join(",").as_str())])?,
            f(u.jobs),
        )?;
    }
    gauge(
        enc,
        "marble_fleet_free_runners",
        "Runners that will take a matching job across the fleet: idle and online, or registered \
         by MARBLE for a VM booting now (last demand snapshot).",
        f(s.free_runners),
    )
}

/// The CI systems, and what the last GitHub poll saw (when there was one).
fn ci(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), Error> {
    let mut family = describe(
        enc,
        "marble_ci_available",
        "1 when the CI system can be used (its token is loaded), 0 while the daemon retries \
         its token source; the reason is in `marblectl status`.",
        MetricType::Gauge,
    )?;
    for system in &s.ci_systems {
        set(
            &mut family.encode_family(&[("system", system.system.as_str())])?,
            flag(system.available),
        )?;
    }
    if let Some(offline) = &s.offline_runner_kinds {
        let mut family = describe(
            enc,
            "marble_github_offline_runners",
            "Registered runners offline and not counted as free capacity (last demand poll), \
             by kind: foreign (not MARBLE's), marble (another host's, older than a boot), \
             this-host.",
            MetricType::Gauge,
        )?;
        for kind in OFFLINE_KINDS {
            let n = offline.iter().filter(|k| *k == kind).count();
            set(&mut family.encode_family(&[("kind", kind)])?, f(n as u64))?;
        }
    }
    if let Some((holder, term)) = &s.demand_poller {
        let mut family = describe(
            enc,
            "marble_demand_poller",
            "The fleet's demand poller ([demand] shared) as this host's last election step \
             saw it: its lease term, labelled with the holder.",
            MetricType::Gauge,
        )?;
        set(
            &mut family.encode_family(&[("holder", holder.as_str())])?,
            f(*term),
        )?;
    }
    if let Some(quota) = &s.github_quota {
        gauge(
            enc,
            "marble_github_rate_limit_remaining",
            "GitHub primary rate-limit requests left in the window (last demand poll).",
            f(quota.remaining),
        )?;
        gauge(
            enc,
            "marble_github_poll_requests",
            "Rate-limit requests the last demand poll spent (304 answers are free).",
            f(quota.spent),
        )?;
        gauge(
            enc,
            "marble_github_poll_interval_seconds",
            "Wait before the next demand poll: [demand] interval, longer while paced.",
            quota.next_poll.as_secs_f64(),
        )?;
    }
    Ok(())
}

/// ROOT VMs' runner versions (with `[github]`): what each runs, how far behind the latest
/// release it is, and the time left until GitHub's 30-day update deadline.
fn runners(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), Error> {
    let Some(report) = &s.runners else {
        return Ok(());
    };
    let latest = report.latest.as_deref().unwrap_or("");
    let mut family = describe(
        enc,
        "marble_runner_info",
        "The GitHub runner version in each ROOT VM (read in the guest at boot, or installed \
         since; empty: none) and the latest actions/runner release.",
        MetricType::Gauge,
    )?;
    for vm in &report.vms {
        let version = vm.version.as_deref().unwrap_or("");
        let labels = [
            ("vm", vm.vm.as_str()),
            ("version", version),
            ("latest", latest),
        ];
        set(&mut family.encode_family(&labels)?, 1.0)?;
    }
    let mut family = describe(
        enc,
        "marble_runner_days_behind",
        "Days since the first actions/runner release newer than the VM's runner was \
         published (0: current). MARBLE warns at 25; GitHub's deadline is 30.",
        MetricType::Gauge,
    )?;
    for vm in report.vms.iter().filter(|v| v.version.is_some()) {
        set(
            &mut family.encode_family(&[("vm", vm.vm.as_str())])?,
            f(vm.days_behind),
        )?;
    }
    let mut family = describe(
        enc,
        "marble_runner_update_deadline_seconds",
        "Seconds left until GitHub stops sending jobs to the VM's runner (30 days after the \
         first newer release); negative when past. Absent while the runner is current.",
        MetricType::Gauge,
    )?;
    for vm in report
        .vms
        .iter()
        .filter(|v| v.version.is_some() && v.deadline_ms != 0)
    {
        let left = (vm.deadline_ms as f64 - s.now_ms as f64) / 1000.0;
        set(
            &mut family.encode_family(&[("vm", vm.vm.as_str())])?,
            left.round(),
        )?;
    }
    Ok(())
}

/// The Jenkins queue (when polled).
fn jenkins(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), Error> {
    let Some(queue) = &s.jenkins else {
        return Ok(());
    };
    let by_label = &queue.by_label;
    let mut family = describe(
        enc,
        "marble_jenkins_buildable_items",
        "Buildable Jenkins queue items by the label named in their why text.",
        MetricType::Gauge,
    )?;
    for (label, n, _) in by_label {
        let label = label.as_deref().unwrap_or("");
        set(&mut family.encode_family(&[("label", label)])?, f(*n))?;
    }
    let mut family = describe(
        enc,
        "marble_jenkins_wait_seconds",
        "Age of the oldest buildable Jenkins queue item by label.",
        MetricType::Gauge,
    )?;
    for (label, _, oldest) in by_label {
        let label = label.as_deref().unwrap_or("");
        set(
            &mut family.encode_family(&[("label", label)])?,
            secs(s.now_ms.saturating_sub(*oldest)),
        )?;
    }
    // Past it, the scheduler reads the queue as unknown: no Jenkins waiter in the fair
    // share, no agent handed over for a predicted runner. An operator sees why here.
    gauge(
        enc,
        "marble_jenkins_queue_known",
        "1 while the last Jenkins queue answer still stands for the queue (a few [demand] \
         intervals from its poll), 0 once Jenkins has not answered for longer.",
        flag(s.now_ms < queue.known_until_ms),
    )?;
    // The fleet's idle agents as the last answer listed them: with two or more, the
    // second by name is a spare (`agent_spare_handover`).
    gauge(
        enc,
        "marble_jenkins_idle_agents",
        "Jenkins agents online and idle fleet-wide at the last node-list answer (the second \
         by name is a spare that may give its host up for a warm runner).",
        f(u64::try_from(queue.idle_agents.len()).unwrap_or(u64::MAX)),
    )?;
    Ok(())
}
