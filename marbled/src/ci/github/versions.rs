//! Runner versions: the `actions/runner` releases the daemon last read, the version in each
//! ROOT VM's install directory (read in the guest at boot, or written by `runner install`),
//! and GitHub's update rule on top of them.
//!
//! GitHub enforces runner versions: registering needs at least [`MIN_REGISTER`], and a runner
//! that has not installed a new release within [`DEADLINE_DAYS`] of its publication stops
//! receiving jobs. So "days behind" counts from the publication of the **first** release
//! newer than the installed one (not the latest: a runner two releases behind has been due
//! since the older of the two came out), and the deadline is that publication + 30 days.
//! MARBLE warns from [`WARN_DAYS`].
//!
//! Shared by the jobs that read and install versions, the release check and the queries
//! (`status`, `vm list --json`, metrics); kept across config reloads with the runner records.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use marble_proto::{RunnerReport, RunnerVm};

/// Days after which MARBLE warns that a runner must be updated.
pub const WARN_DAYS: u64 = 25;
/// Days after a newer release's publication when GitHub stops sending jobs to an older runner.
pub const DEADLINE_DAYS: u64 = 30;
/// The oldest runner GitHub lets register.
pub const MIN_REGISTER: Version = Version(2, 329, 0);
const DAY_MS: u64 = 86_400_000;

/// A runner version `MAJOR.MINOR.PATCH` (`v` prefix accepted, as in release tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// Parse `2.330.0` or `v2.330.0` (surrounding white space ignored); `None` otherwise.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let mut parts = s.split('.');
        let mut next = || parts.next()?.parse::<u32>().ok();
        let v = Version(next()?, next()?, next()?);
        parts.next().is_none().then_some(v)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One published release (no drafts, no pre-releases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Its version.
    pub version: Version,
    /// `published_at`, unix ms.
    pub published_ms: u64,
}

/// How far an installed runner is behind, at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behind {
    /// Whole days since the first newer release was published (0: none is newer).
    pub days: u64,
    /// That release's publication + [`DEADLINE_DAYS`], unix ms; `None`: none is newer.
    pub deadline_ms: Option<u64>,
}

/// How far `installed` is behind `releases` at `now_ms`.
pub fn behind(installed: Version, releases: &[Release], now_ms: u64) -> Behind {
    let first_newer = releases
        .iter()
        .filter(|r| r.version > installed)
        .map(|r| r.published_ms)
        .min();
    match first_newer {
        None => Behind {
            days: 0,
            deadline_ms: None,
        },
        Some(published) => Behind {
            days: now_ms.saturating_sub(published) / DAY_MS,
            deadline_ms: Some(published.saturating_add(DEADLINE_DAYS * DAY_MS)),
        },
    }
}

/// The word `status` shows for a runner (see [`RunnerVm::level`]).
pub fn level(
    installed: Option<Version>,
    releases: &[Release],
    b: Behind,
    now_ms: u64,
) -> &'static str {
    let Some(v) = installed else {
        return "missing";
    };
    if v < MIN_REGISTER {
        "unsupported"
    } else if releases.is_empty() {
        "unknown"
    } else if b.deadline_ms.is_some_and(|d| now_ms >= d) {
        "overdue"
    } else if b.days >= WARN_DAYS {
        "warn"
    } else if b.deadline_ms.is_some() {
        "behind"
    } else {
        "current"
    }
}

/// What is known about one VM's runner.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    version: Option<Version>,
    at_ms: u64,
}

#[derive(Debug, Default)]
struct Inner {
    releases: Vec<Release>,
    checked_ms: u64,
    check_error: String,
    vms: BTreeMap<String, Seen>,
}

/// The shared store (a std mutex held only for a map operation, never across an `.await`).
#[derive(Debug, Clone, Default)]
pub struct RunnerVersions(Arc<Mutex<Inner>>);

impl RunnerVersions {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A successful release check at `now_ms`.
    pub fn set_releases(&self, mut releases: Vec<Release>, now_ms: u64) {
        releases.sort_by_key(|r| std::cmp::Reverse(r.version));
        let mut g = self.lock();
        g.releases = releases;
        g.checked_ms = now_ms;
        g.check_error.clear();
    }

    /// A failed release check (the last good list is kept).
    pub fn set_check_error(&self, why: String) {
        self.lock().check_error = why;
    }

    /// The newest release known.
    pub fn latest(&self) -> Option<Release> {
        self.lock().releases.first().cloned()
    }

    /// When the release list was last read (0: never).
    pub fn checked_ms(&self) -> u64 {
        self.lock().checked_ms
    }

    /// Record `vm`'s runner version (`None`: no runner in its install directory).
    pub fn record(&self, vm: &str, version: Option<Version>, now_ms: u64) {
        self.lock().vms.insert(
            vm.to_owned(),
            Seen {
                version,
                at_ms: now_ms,
            },
        );
    }

    /// The version recorded for `vm`.
    pub fn of(&self, vm: &str) -> Option<Option<Version>> {
        self.lock().vms.get(vm).map(|s| s.version)
    }

    /// Forget VMs not in `keep` (deleted or renamed).
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        self.lock().vms.retain(|vm, _| keep(vm));
    }

    /// The report `status`, `vm list --json` and the metrics show, at `now_ms`; `target` is
    /// what `runner install` would put in a VM now.
    pub fn report(&self, now_ms: u64, target: Option<Version>) -> RunnerReport {
        let g = self.lock();
        let latest = g.releases.first();
        let vms = g
            .vms
            .iter()
            .map(|(vm, seen)| {
                let b = seen.version.map_or(
                    Behind {
                        days: 0,
                        deadline_ms: None,
                    },
                    |v| behind(v, &g.releases, now_ms),
                );
                RunnerVm {
                    vm: vm.clone(),
                    version: seen.version.map(|v| v.to_string()),
                    read_ms: seen.at_ms,
                    days_behind: b.days,
                    deadline_ms: b.deadline_ms.unwrap_or(0),
                    level: level(seen.version, &g.releases, b, now_ms).to_owned(),
                }
            })
            .collect();
        RunnerReport {
            latest: latest.map(|r| r.version.to_string()),
            latest_published_ms: latest.map_or(0, |r| r.published_ms),
            checked_ms: g.checked_ms,
            check_error: g.check_error.clone(),
            target: target
                .or_else(|| latest.map(|r| r.version))
                .map(|v| v.to_string()),
            vms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = DAY_MS;
    const T0: u64 = 1_760_000_000_000;

    fn rel(v: &str, published_ms: u64) -> Release {
        Release {
            version: Version::parse(v).unwrap(),
            published_ms,
        }
    }

    #[test]
    fn versions_parse_and_order_numerically() {
        assert_eq!(Version::parse("v2.330.0"), Some(Version(2, 330, 0)));
        assert_eq!(Version::parse(" 2.329.1\n"), Some(Version(2, 329, 1)));
        assert!(Version::parse("2.330").is_none());
        assert!(Version::parse("2.330.0.1").is_none());
        assert!(Version::parse("2.33x.0").is_none());
        assert!(Version(2, 330, 0) > Version(2, 99, 9), "not string order");
    }

    #[test]
    fn days_behind_count_from_the_first_newer_release_not_the_latest() {
        // Installed 2.329.0; 2.330.0 came out 31 days ago, 2.331.0 two days ago.
        let releases = [
            rel("2.331.0", T0 + 29 * DAY),
            rel("2.330.0", T0),
            rel("2.329.0", T0 - 20 * DAY),
        ];
        let now = T0 + 31 * DAY + 3_600_000;
        let b = behind(Version(2, 329, 0), &releases, now);
        assert_eq!(b.days, 31);
        assert_eq!(b.deadline_ms, Some(T0 + 30 * DAY));
        assert_eq!(
            level(Some(Version(2, 329, 0)), &releases, b, now),
            "overdue"
        );
        // Counting from the latest would say 2 days: wrong.
        let on_latest = behind(Version(2, 330, 0), &releases, now);
        assert_eq!(on_latest.days, 2);
        assert_eq!(
            level(Some(Version(2, 330, 0)), &releases, on_latest, now),
            "behind"
        );
        let current = behind(Version(2, 331, 0), &releases, now);
        assert_eq!(
            current,
            Behind {
                days: 0,
                deadline_ms: None
            }
        );
        assert_eq!(
            level(Some(Version(2, 331, 0)), &releases, current, now),
            "current"
        );
    }

    #[test]
    fn warn_at_25_days_deadline_at_30() {
        let releases = [rel("2.330.0", T0), rel("2.329.0", T0 - DAY)];
        let at = |days: u64| {
            let now = T0 + days * DAY;
            level(
                Some(Version(2, 329, 0)),
                &releases,
                behind(Version(2, 329, 0), &releases, now),
                now,
            )
        };
        assert_eq!(at(24), "behind");
        assert_eq!(at(25), "warn");
        assert_eq!(at(29), "warn");
        assert_eq!(at(30), "overdue");
        assert_eq!(
            level(
                Some(Version(2, 328, 0)),
                &releases,
                behind(Version(2, 328, 0), &releases, T0),
                T0
            ),
            "unsupported"
        );
        assert_eq!(
            level(None, &releases, behind(Version(0, 0, 0), &releases, T0), T0),
            "missing"
        );
        assert_eq!(
            level(
                Some(Version(2, 330, 0)),
                &[],
                Behind {
                    days: 0,
                    deadline_ms: None
                },
                T0
            ),
            "unknown"
        );
    }

    #[test]
    fn the_report_lists_each_vm_with_its_deadline() {
        let v = RunnerVersions::default();
        v.set_releases(
            vec![rel("2.330.0", T0), rel("2.331.0", T0 + 5 * DAY)],
            T0 + 6 * DAY,
        );
        v.record("vm-a", Some(Version(2, 329, 0)), T0 + 6 * DAY);
        v.record("vm-b", None, T0 + 6 * DAY);
        let r = v.report(T0 + 31 * DAY, None);
        assert_eq!(r.latest.as_deref(), Some("2.331.0"));
        assert_eq!(r.target.as_deref(), Some("2.331.0"));
        assert_eq!(r.vms.len(), 2);
        assert_eq!(r.vms[0].days_behind, 31);
        assert_eq!(r.vms[0].deadline_ms, T0 + 30 * DAY);
        assert_eq!(r.vms[0].level, "overdue");
        assert_eq!(r.vms[1].level, "missing");
    }
}
