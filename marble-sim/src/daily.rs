//! The standard workload model (`[generate.daily]`): ROOT pull-request traffic following a
//! weekday-hour curve with a macOS-version label mix, SPI nightly batches plus daytime
//! requests. Deterministic from a seed; `docs/SIMULATOR.md` ("Trace generator") documents
//! the model and its defaults.
//!
//! Time: offset 0 of the simulation is Monday 00:00 local time (the hosts are at CERN); days
//! 5 and 6 of each week are the weekend.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::generate::{JenkinsArrival, RootArrival};
use super::rng::SimRng;

/// Share of the peak push rate in each local hour of a weekday (0 = midnight). Europe's
/// working day with a lunch dip, then the Americas' afternoon keeps it up into the evening.
pub const WEEKDAY_CURVE: [f64; 24] = [
    0.05, 0.03, 0.02, 0.02, 0.02, 0.03, 0.08, 0.20, 0.50, 0.80, 0.95, 1.00, 0.70, 0.80, 1.00, 1.00,
    0.95, 0.85, 0.70, 0.55, 0.40, 0.30, 0.15, 0.08,
];

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// One label set a push may queue a job for, and how often it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelShare {
    /// The job's `runs-on` labels.
    pub labels: Vec<String>,
    /// Probability that a push queues a job with these labels.
    pub share: f64,
}

/// `[generate.daily]`: the standard workload model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenDaily {
    /// Pull-request pushes per hour at the weekday peak (the curve's 1.0), fleet-wide.
    pub root_peak_pushes_per_hour: f64,
    /// Weekend rate as a share of the weekday rate at the same hour.
    pub weekend_factor: f64,
    /// Per push, each label set is queued independently with its share (at least one job
    /// per push: the first set when the draw picked none).
    pub root_mix: Vec<LabelShare>,
    /// Shortest ROOT job.
    #[serde(with = "humantime_serde")]
    pub root_duration_min: Duration,
    /// Longest ROOT job.
    #[serde(with = "humantime_serde")]
    pub root_duration_max: Duration,
    /// Local time of the SPI nightly batch.
    #[serde(with = "humantime_serde")]
    pub spi_nightly_at: Duration,
    /// Builds in each nightly batch (every day, weekends too).
    pub spi_nightly_builds: u32,
    /// The batch's builds arrive spread uniformly over this window.
    #[serde(with = "humantime_serde")]
    pub spi_nightly_spread: Duration,
    /// Shortest nightly build.
    #[serde(with = "humantime_serde")]
    pub spi_nightly_duration_min: Duration,
    /// Longest nightly build.
    #[serde(with = "humantime_serde")]
    pub spi_nightly_duration_max: Duration,
    /// Daytime SPI requests per hour, weekdays 08:00–18:00, fleet-wide.
    pub spi_day_per_hour: f64,
    /// Shortest daytime build.
    #[serde(with = "humantime_serde")]
    pub spi_day_duration_min: Duration,
    /// Longest daytime build.
    #[serde(with = "humantime_serde")]
    pub spi_day_duration_max: Duration,
    /// `request-slot --wait` of every build.
    #[serde(with = "humantime_serde")]
    pub spi_wait: Duration,
    /// Jenkins' pause before a retry.
    #[serde(with = "humantime_serde")]
    pub spi_retry: Duration,
}

/// `[self-hosted, macOS, ARM64, <version>]`.
pub fn mac_labels(version: &str) -> Vec<String> {
    ["self-hosted", "macOS", "ARM64", version]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

impl Default for GenDaily {
    fn default() -> Self {
        let mix = |v: &str, share: f64| LabelShare {
            labels: mac_labels(v),
            share,
        };
        let m = |min: u64| Duration::from_secs(min * 60);
        Self {
            root_peak_pushes_per_hour: 1.2,
            weekend_factor: 0.25,
            root_mix: vec![
                mix("mac15", 0.9),
                mix("mac14", 0.7),
                mix("mac13", 0.4),
                mix("mac-beta", 0.25),
            ],
            root_duration_min: m(20),
            root_duration_max: m(60),
            spi_nightly_at: m(60),
            spi_nightly_builds: 6,
            spi_nightly_spread: m(15),
            spi_nightly_duration_min: m(30),
            spi_nightly_duration_max: m(90),
            spi_day_per_hour: 0.5,
            spi_day_duration_min: m(15),
            spi_day_duration_max: m(45),
            spi_wait: m(5),
            spi_retry: m(1),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Weekend day (days 5 and 6 of each week, day 0 being a Monday).
fn weekend(at_ms: u64) -> bool {
    (at_ms / DAY_MS) % 7 >= 5
}

/// Arrivals of a non-homogeneous Poisson process whose rate (per hour) is constant within
/// each hour, from 0 until `until`. Exponential gaps are memoryless, so restarting the draw
/// at each hour boundary is exact.
fn hourly_poisson(rng: &mut SimRng, until: u64, rate: impl Fn(u64) -> f64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut hour = 0;
    while hour * HOUR_MS < until {
        let start = hour * HOUR_MS;
        let end = (start + HOUR_MS).min(until);
        let per_hour = rate(start);
        if per_hour > 0.0 {
            let mean = HOUR_MS as f64 / per_hour;
            let mut at = start.saturating_add(rng.exponential_ms(mean));
            while at < end {
                out.push(at);
                at = at.saturating_add(rng.exponential_ms(mean));
            }
        }
        hour += 1;
    }
    out
}

impl GenDaily {
    /// Pushes per hour at `at_ms` (local time from Monday 00:00).
    pub fn push_rate(&self, at_ms: u64) -> f64 {
        let hour = ((at_ms % DAY_MS) / HOUR_MS) as usize;
        let base = self.root_peak_pushes_per_hour * WEEKDAY_CURVE.get(hour).copied().unwrap_or(0.0);
        if weekend(at_ms) {
            base * self.weekend_factor
        } else {
            base
        }
    }

    /// Every arrival up to `until`, each team from its own stream under `seed`.
    pub fn arrivals(&self, seed: u64, until: u64) -> (Vec<RootArrival>, Vec<JenkinsArrival>) {
        let mut root = Vec::new();
        let mut rng = SimRng::stream(seed, "daily.root");
        for push in hourly_poisson(&mut rng, until, |at| self.push_rate(at)) {
            let mut picked: Vec<&LabelShare> = self
                .root_mix
                .iter()
                .filter(|m| rng.chance(m.share))
                .collect();
            if picked.is_empty()
                && let Some(first) = self.root_mix.first()
            {
                picked.push(first);
            }
            for m in picked {
                root.push(RootArrival {
                    at_ms: push,
                    duration_ms: rng.range(ms(self.root_duration_min), ms(self.root_duration_max)),
                    labels: m.labels.iter().cloned().collect::<BTreeSet<_>>(),
                });
            }
        }
        let mut spi = Vec::new();
        let build = |rng: &mut SimRng, at_ms: u64, min: Duration, max: Duration| JenkinsArrival {
            at_ms,
            vm: None,
            duration_ms: rng.range(ms(min), ms(max)),
            wait_ms: ms(self.spi_wait),
            retry_ms: ms(self.spi_retry),
        };
        let mut rng = SimRng::stream(seed, "daily.spi-nightly");
        let mut day = 0;
        while day * DAY_MS < until {
            let start = day * DAY_MS + ms(self.spi_nightly_at);
            for _ in 0..self.spi_nightly_builds {
                let at = start + rng.range(0, ms(self.spi_nightly_spread));
                if at < until {
                    let (min, max) = (self.spi_nightly_duration_min, self.spi_nightly_duration_max);
                    spi.push(build(&mut rng, at, min, max));
                }
            }
            day += 1;
        }
        let mut rng = SimRng::stream(seed, "daily.spi-day");
        let day_rate = |at: u64| {
            let hour = (at % DAY_MS) / HOUR_MS;
            if !weekend(at) && (8..18).contains(&hour) {
                self.spi_day_per_hour
            } else {
                0.0
            }
        };
        for at in hourly_poisson(&mut rng, until, day_rate) {
            let (min, max) = (self.spi_day_duration_min, self.spi_day_duration_max);
            spi.push(build(&mut rng, at, min, max));
        }
        (root, spi)
    }

    /// Problems with the section, each as (key under `generate.daily`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |k: &str, m: &str| out.push((k.to_owned(), m.to_owned()));
        for (key, rate) in [
            ("root_peak_pushes_per_hour", self.root_peak_pushes_per_hour),
            ("weekend_factor", self.weekend_factor),
            ("spi_day_per_hour", self.spi_day_per_hour),
        ] {
            if !rate.is_finite() || rate < 0.0 {
                bad(key, "must be a non-negative number");
            }
        }
        if self.root_mix.is_empty()
            || self
                .root_mix
                .iter()
                .any(|m| m.labels.is_empty() || !(0.0..=1.0).contains(&m.share))
        {
            bad(
                "root_mix",
                "needs at least one entry, each with labels and a share within 0..=1",
            );
        }
        for (key, min, max) in [
            (
                "root_duration_min",
                self.root_duration_min,
                self.root_duration_max,
            ),
            (
                "spi_nightly_duration_min",
                self.spi_nightly_duration_min,
                self.spi_nightly_duration_max,
            ),
            (
                "spi_day_duration_min",
                self.spi_day_duration_min,
                self.spi_day_duration_max,
            ),
        ] {
            if min > max {
                bad(key, "must not exceed the matching _max");
            }
        }
        if self.spi_retry.is_zero() {
            bad("spi_retry", "must be greater than zero");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_follow_the_curve_and_are_reproducible() {
        let g = GenDaily::default();
        let week = 7 * DAY_MS;
        let (root, spi) = g.arrivals(1, week);
        assert_eq!(g.arrivals(1, week), (root.clone(), spi.clone()));
        assert_ne!(g.arrivals(2, week).0, root);
        let in_hours = |from: u64, to: u64, weekend_days: bool| {
            root.iter()
                .filter(|a| {
                    let h = (a.at_ms % DAY_MS) / HOUR_MS;
                    (from..to).contains(&h) && weekend(a.at_ms) == weekend_days
                })
                .count()
        };
        // Weekday working hours carry far more jobs than the weekday night or the weekend.
        assert!(
            in_hours(9, 18, false) > 4 * in_hours(0, 7, false),
            "{root:?}"
        );
        assert!(in_hours(9, 18, false) > 4 * in_hours(9, 18, true));
        // Every label set of the mix occurs.
        for m in &g.root_mix {
            let set: BTreeSet<String> = m.labels.iter().cloned().collect();
            assert!(root.iter().any(|a| a.labels == set), "{:?}", m.labels);
        }
        // A nightly batch every day, daytime requests on weekdays only.
        let nightly = spi
            .iter()
            .filter(|b| (b.at_ms % DAY_MS) / HOUR_MS == 1)
            .count();
        assert_eq!(nightly, 7 * g.spi_nightly_builds as usize);
        assert!(spi.iter().all(|b| (b.at_ms % DAY_MS) / HOUR_MS == 1
            || !weekend(b.at_ms) && (8..18).contains(&((b.at_ms % DAY_MS) / HOUR_MS))));
    }
}
