//! Queued ROOT jobs this host knows nobody can serve: labels no ROOT VM here offers and no
//! runner in GitHub's list (free runners of every host, MARBLE's booting ones included)
//! covers. The scheduler never boots for them (a VM is booted only for labels it covers);
//! this module makes them visible instead of letting them wait silently: a standing line in
//! `status` and the `marble_demand_unservable_jobs` gauge.
//!
//! What "the fleet" is, from one host: its own VMs (it knows every one, running or not) plus
//! the labels of runners registered anywhere. Another host's *stopped* VM has no runner
//! registered, so a job only another host can serve shows here until that host registers a
//! runner for it (each host reports from its own view; docs/SCHEDULER.md, "Labels").
//!
//! Such a job is not *unmet* either ([`World::match_queued`]): nothing here can be done for
//! it, and counting it held every gate that waits for "nothing unmet" shut for as long as
//! it stayed queued — one mislabelled workflow turned idle-host warmth, the warmth
//! hand-overs of idle agents and the congestion window's end off on every host.

use std::collections::BTreeMap;

use marble_proto::Decision;

use super::{Millis, QueuedJob, World, format_ms, labels_cover};

/// Queued jobs of one `runs-on` label set no VM here nor any listed runner can serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnservableJobs {
    /// The label set, lower-case and sorted.
    pub labels: Vec<String>,
    /// How many such jobs are queued.
    pub jobs: u64,
    /// When the oldest was queued, unix ms.
    pub since_ms: Millis,
}

impl World {
    /// Whether nobody this host can see will ever serve `job`: no ROOT VM here offers its
    /// labels and no runner in GitHub's list covers them.
    pub(super) fn unservable(&self, job: &QueuedJob) -> bool {
        let here = self.servable_here(job);
        let listed =
            (self.demand.free_runners.iter()).any(|r| labels_cover(&r.labels, &job.labels));
        !(here || listed || job.labels.is_empty())
    }

    /// Queued jobs nobody this host can see will ever serve, by label set (sorted by labels).
    pub fn unservable_jobs(&self) -> Vec<UnservableJobs> {
        let mut by_labels: BTreeMap<Vec<String>, (u64, Millis)> = BTreeMap::new();
        for job in &self.demand.root_jobs {
            if !self.unservable(job) {
                continue;
            }
            let mut key: Vec<String> = job.labels.iter().map(|l| l.to_ascii_lowercase()).collect();
            key.sort();
            key.dedup();
            let entry = by_labels.entry(key).or_insert((0, Millis::MAX));
            entry.0 += 1;
            entry.1 = entry.1.min(job.since_ms);
        }
        by_labels
            .into_iter()
            .map(|(labels, (jobs, since_ms))| UnservableJobs {
                labels,
                jobs,
                since_ms,
            })
            .collect()
    }

    /// The `status` lines for [`World::unservable_jobs`]: one per label set, naming the
    /// labels, how many jobs and since when.
    pub(super) fn unservable_lines(&self, now: Millis) -> Vec<Decision> {
        self.unservable_jobs()
            .into_iter()
            .map(|u| Decision {
                at_ms: now,
                vm: None,
                text: format!(
                    "WARNING now: {} queued job(s) ask for [{}] (oldest since {}): no ROOT VM \
                     here offers these labels and no registered runner covers them; nothing \
                     boots for them (set the VM's labels in [labels], docs/OPERATIONS.md)",
                    u.jobs,
                    u.labels.join(", "),
                    format_ms(u.since_ms)
                ),
            })
            .collect()
    }
}
