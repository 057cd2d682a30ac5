//! The sections of the daemon's periodic side tasks: `[demand]` (polling CI for policy
//! `demand`), `[fleet]` (the heartbeat in the images bucket) and `[metrics]` (the
//! node_exporter textfile), with their defaults and value checks. Absent sections turn the
//! task off.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[demand]`: polling of the CI systems (absent: no demand sources; policy `demand` then
/// boots nothing on its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemandSection {
    /// How often the sources are polled.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// While nothing runs on this host (a boot needs no stop), check GitHub's queued-runs
    /// listing this often and poll at once when it changed; zero: off. Free of quota: an
    /// unchanged listing is a 304, which GitHub does not count.
    #[serde(with = "humantime_serde")]
    pub watch: Duration,
    /// Use `[github]` for queued jobs and fleet runners.
    pub github: bool,
    /// Use `[jenkins]` for the build queue.
    pub jenkins: bool,
    /// Repositories whose workflow runs are polled (`owner/repo`). Empty: `github.repo`
    /// (organisation runners need the list).
    pub repos: Vec<String>,
    /// Most workflow runs whose jobs are listed per poll (each costs one request).
    pub max_runs: u32,
    /// A snapshot older than this (polls failing) is replaced by an empty one.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// One elected host per fleet polls and publishes the snapshot in the `[fleet]` bucket;
    /// the others read it (issue 18). Needs `[fleet]`. The lease's timing follows
    /// `interval` ([`Self::lease_timing_ms`]).
    pub shared: bool,
}

impl Default for DemandSection {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            watch: Duration::from_secs(5),
            github: true,
            jenkins: true,
            repos: Vec::new(),
            max_runs: 50,
            max_age: Duration::from_secs(600),
            shared: false,
        }
    }
}

impl DemandSection {
    /// The poller lease's `(duration, margin)` in ms, from `interval`: duration 1.5 ×
    /// interval, margin interval / 6. A holder that dies just after renewing is replaced
    /// `duration + margin` = 5/3 interval later, within the two intervals issue 18 asks for;
    /// the holder renews every duration / 3 = interval / 2.
    pub fn lease_timing_ms(&self) -> (u64, u64) {
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        (interval.saturating_mul(3) / 2, (interval / 6).max(1))
    }

    /// Every problem, as `(key, message)`; `repo` is `github.repo` when `[github]` is set.
    pub fn problems(&self, github: Option<Option<&str>>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.interval < Duration::from_secs(5) {
            out.push((
                "demand.interval".into(),
                "must be at least 5s (GitHub's rate limit)".into(),
            ));
        }
        if !self.watch.is_zero() && self.watch < Duration::from_secs(1) {
            out.push((
                "demand.watch".into(),
                "must be 0s (off) or at least 1s".into(),
            ));
        }
        if self.max_age < self.interval {
            out.push((
                "demand.max_age".into(),
                "must be at least demand.interval".into(),
            ));
        }
        if self.max_runs == 0 {
            out.push(("demand.max_runs".into(), "must be at least 1".into()));
        }
        for r in &self.repos {
            let ok = r.split_once('/').is_some_and(|(o, n)| {
                let part = |s: &str| {
                    !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                };
                part(o) && part(n)
            });
            if !ok {
                out.push((
                    "demand.repos".into(),
                    format!("must be \"owner/repo\", got {r:?}"),
                ));
            }
        }
        if self.github
            && let Some(repo) = github
            && repo.is_none()
            && self.repos.is_empty()
        {
            out.push((
                "demand.repos".into(),
                "organisation runners ([github] org): list the repositories whose jobs to poll"
                    .into(),
            ));
        }
        out
    }
}

/// `[fleet]`: the heartbeat (absent: no heartbeat, `fleet ls` refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetSection {
    /// How often this daemon writes its heartbeat.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Key prefix of the heartbeat objects in the `[images]` bucket.
    pub prefix: String,
}

impl Default for FleetSection {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            prefix: "fleet/".into(),
        }
    }
}

impl FleetSection {
    /// Every problem, as `(key, message)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.interval < Duration::from_secs(1) {
            out.push(("fleet.interval".into(), "must be at least 1s".into()));
        }
        if self.prefix.is_empty() || !self.prefix.ends_with('/') || self.prefix.starts_with('/') {
            out.push((
                "fleet.prefix".into(),
                format!(
                    "must be a key prefix ending in '/' (like \"fleet/\"), got {:?}",
                    self.prefix
                ),
            ));
        }
        out
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(section: &DemandSection) -> Vec<String> {
        section
            .problems(Some(Some("root-project/root")))
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }

    #[test]
    fn problems_name_their_key() {
        assert!(keys(&DemandSection::default()).is_empty());
        let bad = DemandSection {
            interval: Duration::from_secs(2),
            watch: Duration::from_millis(200),
            max_runs: 0,
            repos: vec!["no-slash".into()],
            ..DemandSection::default()
        };
        assert_eq!(
            keys(&bad),
            [
                "demand.interval",
                "demand.watch",
                "demand.max_runs",
                "demand.repos"
            ]
        );
        let off = DemandSection {
            watch: Duration::ZERO,
            ..DemandSection::default()
        };
        assert!(keys(&off).is_empty(), "watch 0s turns it off");
    }

    #[test]
    fn fleet_and_metrics_problems_name_their_key() {
        assert!(FleetSection::default().problems().is_empty());
        let bad = FleetSection {
            interval: Duration::from_millis(10),
            prefix: "fleet".into(),
        };
        let keys: Vec<String> = bad.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["fleet.interval", "fleet.prefix"]);
        assert!(MetricsSection::default().problems().is_empty());
        let bad = MetricsSection {
            textfile: Some(PathBuf::from("rel.prom")),
            interval: Duration::ZERO,
        };
        let keys: Vec<String> = bad.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["metrics.interval", "metrics.textfile"]);
    }
}
