//! The demand snapshot one elected host publishes for its fleet (`[demand] shared`, issue
//! 18): its JSON format (`<[fleet] prefix>demand/<repo-set>.json`), the key names of the
//! object and of the poller's lease, and the conversions from and to what the actor is fed.
//! Pure: the bucket I/O and the election loop are `periodic::demand`'s.
//!
//! The snapshot carries the fleet-wide lists only (queued and running jobs, free, taken and
//! done runners, every started job with its runner); each host derives its own parts
//! (`used_here`, `done_here`, `started_here`) from them and its own registrations, exactly
//! as after its own poll (the actor does that for every snapshot).

use serde::{Deserialize, Serialize};

use super::{JenkinsDemand, OfflineSeen};
use crate::sched::{DemandSnapshot, FleetRunner, QueuedJob, StartedJob};

/// The object's format version.
pub const SHARED_FORMAT: u32 = 1;

/// The published object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// [`SHARED_FORMAT`].
    pub format: u32,
    /// The host that polled (the lease holder).
    pub holder: String,
    /// Its lease term.
    pub term: u64,
    /// When the GitHub poll ran, unix ms (0: GitHub is not polled or has no good snapshot).
    pub polled_ms: u64,
    /// The GitHub part; None when the holder has none (not configured, or expired).
    pub github: Option<GithubPart>,
    /// The Jenkins queue; None when not polled.
    pub jenkins: Option<Vec<JenkinsLabel>>,
    /// Until when that queue answer stands for the queue, unix ms
    /// ([`JenkinsDemand::known_until_ms`]): the holder keeps publishing its last answer
    /// while its Jenkins polls fail. Absent (0) from a holder older than the field: unknown.
    /// 0 too without a GitHub part: only a GitHub snapshot takes the queue's freshness to
    /// the scheduler, and a time that moves every round would turn a Jenkins-only fleet's
    /// conditional reads (304s while the queue stays the same) into full ones.
    #[serde(default)]
    pub jenkins_known_until_ms: u64,
    /// The Jenkins agents online and idle at that answer ([`JenkinsDemand::idle_agents`]);
    /// absent from a holder older than the field: none known.
    #[serde(default)]
    pub jenkins_idle_agents: Vec<String>,
    /// The SPI agents offline but launchable at that answer
    /// ([`JenkinsDemand::offline_agents`]); absent from a holder older than the field:
    /// none known (no host launches its node for a build that accepts any node).
    #[serde(default)]
    pub jenkins_offline_agents: Vec<String>,
}

/// The fleet-wide lists of one GitHub poll.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubPart {
    /// Queued ROOT jobs.
    pub queued: Vec<Job>,
    /// Jobs running.
    pub running: Vec<Job>,
    /// Runners without a job.
    pub free_runners: Vec<Runner>,
    /// Runners that have taken their job.
    pub taken_runners: Vec<String>,
    /// Of those, the ones whose job is over.
    pub done_runners: Vec<String>,
    /// Every running job with the runner that took it.
    pub started: Vec<Started>,
    /// Runners not counted as free (offline).
    pub offline: Vec<marble_proto::OfflineRunner>,
}

/// A queued or running job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Job id.
    pub id: u64,
    /// Queued since, unix ms.
    pub since_ms: u64,
    /// `runs-on` labels.
    pub labels: Vec<String>,
}

/// A runner without a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Vec<String>,
}

/// A running job and its runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// Job id.
    pub id: u64,
    /// Queued since, unix ms.
    pub queued_ms: u64,
    /// Started, unix ms.
    pub started_ms: u64,
    /// The runner.
    pub runner: String,
}

/// Buildable Jenkins items of one label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JenkinsLabel {
    /// The label (None: the `why` text named none).
    pub label: Option<String>,
    /// Buildable items.
    pub items: u64,
    /// Oldest queue time, unix ms.
    pub oldest_ms: u64,
}

/// What a follower feeds its actor from a published object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// The GitHub snapshot (per-host parts empty: the actor derives them).
    pub github: Option<DemandSnapshot>,
    /// Offline runners, as the holder saw them.
    pub offline: Option<OfflineSeen>,
    /// The Jenkins queue.
    pub jenkins: Option<JenkinsDemand>,
}

/// The repository set's part of the object names: the sorted repositories, `/` as `_`,
/// joined by `+` (so fleets polling different repositories through one bucket elect apart).
pub fn repo_set(repos: &[String]) -> String {
    let mut names: Vec<String> = repos.iter().map(|r| r.replace('/', "_")).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return "jenkins".into();
    }
    names.join("+")
}

/// The published snapshot's key.
pub fn snapshot_key(prefix: &str, repo_set: &str) -> String {
    format!("{prefix}demand/{repo_set}.json")
}

/// The poller lease's key.
pub fn lease_key(prefix: &str, repo_set: &str) -> String {
    format!("{prefix}lease/demand-{repo_set}.json")
}

impl Published {
    /// What the holder publishes after a round.
    pub fn new(
        holder: &str,
        term: u64,
        github: Option<(&DemandSnapshot, u64, &[marble_proto::OfflineRunner])>,
        jenkins: Option<&JenkinsDemand>,
    ) -> Self {
        let job = |j: &QueuedJob| Job {
            id: j.id,
            since_ms: j.since_ms,
            labels: j.labels.clone(),
        };
        let polled_ms = github.map_or(0, |(_, at, _)| at);
        Self {
            format: SHARED_FORMAT,
            holder: holder.to_string(),
            term,
            polled_ms,
            github: github.map(|(s, _, offline)| GithubPart {
                queued: s.root_jobs.iter().map(job).collect(),
                running: s.running_jobs.iter().map(job).collect(),
                free_runners: (s.free_runners.iter())
                    .map(|r| Runner {
                        name: r.name.clone(),
                        labels: r.labels.clone(),
                    })
                    .collect(),
                taken_runners: s.taken_runners.clone(),
                done_runners: s.done_runners.clone(),
                started: (s.started_here.iter())
                    .map(|j| Started {
                        id: j.id,
                        queued_ms: j.queued_ms,
                        started_ms: j.started_ms,
                        runner: j.runner.clone(),
                    })
                    .collect(),
                offline: offline.to_vec(),
            }),
            jenkins: jenkins.map(|d| {
                (d.by_label.iter())
                    .map(|(label, items, oldest_ms)| JenkinsLabel {
                        label: label.clone(),
                        items: *items,
                        oldest_ms: *oldest_ms,
                    })
                    .collect()
            }),
            jenkins_known_until_ms: match (github, jenkins) {
                (Some(_), Some(queue)) => queue.known_until_ms,
                _ => 0,
            },
            jenkins_idle_agents: jenkins.map(|d| d.idle_agents.clone()).unwrap_or_default(),
            jenkins_offline_agents: (jenkins.map(|d| d.offline_agents.clone())).unwrap_or_default(),
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a body (unknown fields ignored: a newer holder may add some).
    pub fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// What a follower feeds its actor at `now_ms`: a GitHub part older than `max_age_ms`
    /// counts as nothing waiting (an empty snapshot), as after the poller's own failures.
    pub fn feed(&self, now_ms: u64, max_age_ms: u64) -> Feed {
        let fresh = self.polled_ms > 0 && now_ms.saturating_sub(self.polled_ms) <= max_age_ms;
        let (github, offline) = match &self.github {
            Some(part) if fresh => (
                Some(part.snapshot(self.polled_ms)),
                Some(part.offline_seen(self.polled_ms)),
            ),
            Some(_) => (Some(DemandSnapshot::default()), None),
            None => (None, None),
        };
        let jenkins = self.jenkins.as_ref().map(|labels| JenkinsDemand {
            by_label: (labels.iter())
                .map(|l| (l.label.clone(), l.items, l.oldest_ms))
                .collect(),
            known_until_ms: self.jenkins_known_until_ms,
            idle_agents: self.jenkins_idle_agents.clone(),
            offline_agents: self.jenkins_offline_agents.clone(),
        });
        Feed {
            github,
            offline,
            jenkins,
        }
    }
}

impl GithubPart {
    /// The snapshot of the poll the holder ran at `polled_ms` (its time, not the read's: a
    /// host freed since must not boot on it).
    fn snapshot(&self, polled_ms: u64) -> DemandSnapshot {
        let job = |j: &Job| QueuedJob {
            id: j.id,
            since_ms: j.since_ms,
            labels: j.labels.clone(),
        };
        DemandSnapshot {
            root_jobs: self.queued.iter().map(job).collect(),
            free_runners: (self.free_runners.iter())
                .map(|r| FleetRunner {
                    name: r.name.clone(),
                    labels: r.labels.clone(),
                })
                .collect(),
            running_jobs: self.running.iter().map(job).collect(),
            // Every started job: the actor keeps those of this host's registrations.
            started_here: (self.started.iter())
                .map(|j| StartedJob {
                    id: j.id,
                    queued_ms: j.queued_ms,
                    started_ms: j.started_ms,
                    runner: j.runner.clone(),
                })
                .collect(),
            taken_runners: self.taken_runners.clone(),
            used_here: Vec::new(),
            done_runners: self.done_runners.clone(),
            done_here: Vec::new(),
            runners_here: Default::default(),
            // The actor fills these from the Jenkins part of the feed (`jenkins` below).
            jenkins_queue: Vec::new(),
            jenkins_idle_until_ms: 0,
            jenkins_idle_agents: Vec::new(),
            jenkins_offline_nodes: Vec::new(),
            taken_at_ms: polled_ms,
        }
    }

    /// The holder's offline runners; its `this-host` ones are another host's here.
    fn offline_seen(&self, polled_ms: u64) -> OfflineSeen {
        let runners = (self.offline.iter())
            .map(|r| {
                let mut r = r.clone();
                if r.kind == "this-host" {
                    r.kind = "marble".into();
                }
                r
            })
            .collect();
        OfflineSeen { runners, polled_ms }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn snapshot() -> DemandSnapshot {
        DemandSnapshot {
            root_jobs: vec![QueuedJob {
                id: 7,
                since_ms: 1_000,
                labels: vec!["self-hosted".into(), "mac15".into()],
            }],
            free_runners: vec![FleetRunner {
                name: "r1".into(),
                labels: vec!["mac14".into()],
            }],
            running_jobs: vec![QueuedJob {
                id: 8,
                since_ms: 900,
                labels: vec![],
            }],
            started_here: vec![StartedJob {
                id: 8,
                queued_ms: 900,
                started_ms: 950,
                runner: "macphsft-b-ROOT-1".into(),
            }],
            taken_runners: vec!["macphsft-b-ROOT-1".into()],
            used_here: vec!["vm-a".into()],
            done_runners: vec!["old".into()],
            done_here: vec!["vm-a".into()],
            runners_here: [("vm-a".to_owned(), "macphsft-b-ROOT-1".to_owned())].into(),
            jenkins_queue: Vec::new(),
            jenkins_idle_until_ms: 0,
            jenkins_idle_agents: Vec::new(),
            jenkins_offline_nodes: Vec::new(),
            taken_at_ms: 1_950,
        }
    }

    #[test]
    fn a_follower_is_fed_the_fleet_wide_lists_and_derives_its_own_parts() {
        let jenkins = JenkinsDemand {
            by_label: vec![(Some("mac".into()), 2, 500)],
            known_until_ms: 92_000,
            idle_agents: vec!["mac-vm-03".into(), "mac-vm-09".into()],
            offline_agents: vec!["mac-vm-01".into()],
        };
        let published = Published::new("a", 3, Some((&snapshot(), 2_000, &[])), Some(&jenkins));
        let body = published.to_json();
        let back = Published::from_json(&body).expect("parse");
        assert_eq!(back, published);
        let feed = back.feed(2_500, 600_000);
        let mut want = snapshot();
        // The holder's per-host parts are not the follower's.
        want.used_here.clear();
        want.done_here.clear();
        want.runners_here.clear();
        // Stamped with the holder's poll, not the follower's read.
        want.taken_at_ms = 2_000;
        assert_eq!(feed.github, Some(want));
        assert_eq!(feed.jenkins, Some(jenkins));
        assert_eq!(feed.offline.map(|o| o.polled_ms), Some(2_000));
    }

    #[test]
    fn a_snapshot_older_than_max_age_feeds_nothing_waiting() {
        let published = Published::new("a", 3, Some((&snapshot(), 2_000, &[])), None);
        let feed = published.feed(2_000 + 600_001, 600_000);
        assert_eq!(feed.github, Some(DemandSnapshot::default()));
        assert_eq!(feed.jenkins, None);
    }

    #[test]
    fn a_holder_that_keeps_publishing_an_old_jenkins_answer_vouches_for_it_only_so_long() {
        // Task robust9: the holder's Jenkins polls fail and it publishes its last answer (an
        // empty queue read at 2 000, polled every 30 s) on every round.
        let empty = JenkinsDemand {
            by_label: Vec::new(),
            known_until_ms: JenkinsDemand::known_until(2_000, Duration::from_secs(30)),
            idle_agents: Vec::new(),
            offline_agents: Vec::new(),
        };
        let published = Published::new("a", 3, Some((&snapshot(), 2_000, &[])), Some(&empty));
        let back = Published::from_json(&published.to_json()).expect("parse");
        let fed = back.feed(2_500, 600_000).jenkins.expect("jenkins part");
        assert!(fed.idle_at(2_500));
        assert!(fed.idle_at(2_000 + 89_999));
        assert!(!fed.idle_at(2_000 + 90_000), "three intervals old: unknown");
        // A holder older than the field says nothing of the answer's age: unknown.
        let mut old = serde_json::to_value(&published).expect("json");
        old.as_object_mut()
            .expect("object")
            .remove("jenkins_known_until_ms");
        let old = Published::from_json(&serde_json::to_vec(&old).expect("json")).expect("parse");
        let fed = old.feed(2_500, 600_000).jenkins.expect("jenkins part");
        assert!(!fed.idle_at(2_500));
        // A Jenkins-only fleet publishes no time (nothing reads it): the object stays the
        // same while the queue does.
        let later = JenkinsDemand {
            known_until_ms: empty.known_until_ms + 30_000,
            ..empty.clone()
        };
        assert_eq!(
            Published::new("a", 3, None, Some(&empty)),
            Published::new("a", 3, None, Some(&later))
        );
    }

    #[test]
    fn keys_name_the_repository_set() {
        let set = repo_set(&["root-project/root".into(), "a/b".into()]);
        assert_eq!(set, "a_b+root-project_root");
        assert_eq!(
            snapshot_key("fleet/", &set),
            "fleet/demand/a_b+root-project_root.json"
        );
        assert_eq!(
            lease_key("fleet/", &set),
            "fleet/lease/demand-a_b+root-project_root.json"
        );
    }
}
