//! `replay-all --set KEY=VALUE`: the scheduler settings (`scheduler.*`) and the simulated
//! demand feed's (`sim.demand_poll`, `sim.demand_watch`) that a replay applies over the
//! shipped defaults, for the issue-17 table's opt-in rows (`jobs_per_boot = 2`, idle-host
//! warmth). Checked by the trace loader itself (unknown keys, types, the daemon's semantic
//! checks), so a setting means exactly what the same key means in a trace or `marbled.toml`.
//! Documented in `docs/SIMULATOR.md` ("Replay all").

use std::path::Path;

use serde::Deserialize;

use super::trace::{Trace, TraceError};

/// The `[sim]` keys a setting may change: how the demand feed reaches the scheduler, not the
/// workload or the fleet.
pub const DEMAND_KEYS: [&str; 2] = ["demand_poll", "demand_watch"];
/// The `[sim]` key of the simulated Jenkins' launch order a setting may change
/// (`sim.jenkins_launch = "first-offline"`: Jenkins' real order, docs/SIMULATOR.md).
pub const JENKINS_LAUNCH_KEY: &str = "jenkins_launch";

/// Why a `--set` argument was refused (exit 64).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// Not `KEY=VALUE`.
    #[error("--set {arg:?}: expected KEY=VALUE (e.g. scheduler.jobs_per_boot=2)")]
    Syntax {
        /// The argument as given.
        arg: String,
    },
    /// A key outside the scheduler and the demand feed (a trace's workload, fleet, ...).
    #[error(
        "--set {key}: not a setting replay-all can change (scheduler.KEY, sim.demand_poll, \
         sim.demand_watch, sim.jenkins_launch)"
    )]
    NotASetting {
        /// The key.
        key: String,
    },
    /// `scheduler.policy`: every trace runs under both policies.
    #[error("--set scheduler.policy: replay-all runs every trace under both cycle and demand")]
    Policy,
    /// Unknown key or bad value, as the trace loader words it (each names its key).
    #[error("{}", .problems.join("; "))]
    Invalid {
        /// `--set key: what is wrong`, one per problem.
        problems: Vec<String>,
    },
}

/// One `KEY = VALUE`.
#[derive(Debug, Clone, PartialEq)]
struct Setting {
    /// `[sim]` or `[scheduler]`.
    section: String,
    /// The key within the section.
    field: String,
    value: toml::Value,
}

/// The settings a replay applies over the shipped defaults, in the order given (a key set
/// twice keeps its first place and its last value). Empty: the shipped defaults.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    given: Vec<Setting>,
    /// The default trace with the settings applied: the scheduler section and demand-feed
    /// keys every replayed trace gets.
    base: Trace,
}

impl Settings {
    /// Parse and check `KEY=VALUE` arguments. A VALUE that is not a TOML value (`5m`,
    /// `demand`) is taken as a string, so durations need no quotes.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Settings, SettingError> {
        let mut given: Vec<Setting> = Vec::new();
        for arg in args {
            let arg = arg.as_ref();
            let Some((key, raw)) = arg.split_once('=') else {
                return Err(SettingError::Syntax { arg: arg.into() });
            };
            let key = key.trim();
            let setting = setting(key, raw.trim())?;
            match given
                .iter_mut()
                .find(|s| s.section == setting.section && s.field == setting.field)
            {
                Some(old) => old.value = setting.value,
                None => given.push(setting),
            }
        }
        let base = base_trace(&given)?;
        Ok(Settings { given, base })
    }

    /// No setting: the shipped defaults.
    pub fn is_empty(&self) -> bool {
        self.given.is_empty()
    }

    /// `scheduler.jobs_per_boot = 2`, one per setting, in the order given.
    pub fn describe(&self) -> Vec<String> {
        self.given
            .iter()
            .map(|s| format!("{}.{} = {}", s.section, s.field, s.value))
            .collect()
    }

    /// The trace every replayed trace takes its scheduler section and demand-feed keys from.
    pub fn base(&self) -> &Trace {
        &self.base
    }
}

/// One checked key (not yet its value: the loader checks that) and its value.
fn setting(key: &str, raw: &str) -> Result<Setting, SettingError> {
    let not = || SettingError::NotASetting { key: key.into() };
    let (section, field) = key.split_once('.').ok_or_else(not)?;
    match section {
        "scheduler" if field == "policy" => return Err(SettingError::Policy),
        "scheduler" if !field.is_empty() && !field.contains('.') => {}
        "sim" if DEMAND_KEYS.contains(&field) || field == JENKINS_LAUNCH_KEY => {}
        _ => return Err(not()),
    }
    let value = toml::Value::deserialize(toml::de::ValueDeserializer::new(raw))
        .unwrap_or_else(|_| toml::Value::String(raw.into()));
    Ok(Setting {
        section: section.into(),
        field: field.into(),
        value,
    })
}

/// The default trace with `given` applied, through the trace loader: an unknown key or a bad
/// value is the problem a trace file with the same keys would have.
fn base_trace(given: &[Setting]) -> Result<Trace, SettingError> {
    let mut doc = toml::Table::new();
    for s in given {
        let section = doc
            .entry(s.section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = section {
            t.insert(s.field.clone(), s.value.clone());
        }
    }
    let text = toml::to_string(&doc).map_err(|err| SettingError::Invalid {
        problems: vec![format!("--set: {err}")],
    })?;
    Trace::parse(&text, Path::new("--set")).map_err(|err| SettingError::Invalid {
        problems: match err {
            TraceError::Invalid { problems, .. } => problems
                .iter()
                .map(|p| format!("--set {}: {}", p.key, without_position(&p.message)))
                .collect(),
            TraceError::Syntax { message, .. } => {
                vec![format!("--set: {}", without_position(&message))]
            }
            TraceError::Read { .. } => vec![err.to_string()],
        },
    })
}

/// The loader's message without its `(line 2, column 17)`: the text it points into is made
/// here from the arguments, not written by the user.
fn without_position(message: &str) -> &str {
    message
        .rfind(" (line ")
        .filter(|_| message.ends_with(')'))
        .map_or(message, |i| &message[..i])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use marbled::config::SchedulerSection;

    use super::*;

    #[test]
    fn settings_apply_over_the_shipped_defaults() {
        let s = Settings::parse(&[
            "scheduler.jobs_per_boot=2",
            "scheduler.warm_idle_hosts = true",
            "scheduler.warm_linger=5m",
            "sim.demand_poll=0s",
        ])
        .expect("valid settings");
        let b = s.base();
        assert_eq!(b.scheduler.jobs_per_boot, 2);
        assert!(b.scheduler.warm_idle_hosts);
        assert_eq!(b.scheduler.warm_linger, Duration::from_secs(300));
        assert_eq!(b.sim.demand_poll, Duration::ZERO);
        // Everything else keeps its shipped default.
        let d = SchedulerSection::default();
        assert_eq!(b.scheduler.fairness_bound, d.fairness_bound);
        assert_eq!(b.sim.demand_watch, Trace::default().sim.demand_watch);
        assert_eq!(
            s.describe(),
            [
                "scheduler.jobs_per_boot = 2",
                "scheduler.warm_idle_hosts = true",
                "scheduler.warm_linger = \"5m\"",
                "sim.demand_poll = \"0s\"",
            ]
        );
        assert!(Settings::parse::<&str>(&[]).expect("none").is_empty());
    }

    #[test]
    fn a_key_set_twice_keeps_its_last_value() {
        let s = Settings::parse(&["scheduler.jobs_per_boot=2", "scheduler.jobs_per_boot=3"])
            .expect("valid");
        assert_eq!(s.describe(), ["scheduler.jobs_per_boot = 3"]);
        assert_eq!(s.base().scheduler.jobs_per_boot, 3);
    }

    #[test]
    fn a_table_valued_setting_takes_an_inline_toml_value() {
        let s = Settings::parse(&["scheduler.warm=[{labels = [\"mac15\"], count = 1}]"])
            .expect("valid");
        assert_eq!(s.base().scheduler.warm.len(), 1);
        assert_eq!(s.base().scheduler.warm[0].labels, ["mac15"]);
    }

    fn refused(arg: &str) -> SettingError {
        match Settings::parse(&[arg]) {
            Ok(s) => panic!("{arg} accepted: {:?}", s.describe()),
            Err(e) => e,
        }
    }

    #[test]
    fn bad_settings_name_their_key() {
        assert!(matches!(
            refused("jobs_per_boot"),
            SettingError::Syntax { .. }
        ));
        let text = refused("scheduler.jobs_per_bot=2").to_string();
        assert!(text.contains("scheduler.jobs_per_bot"), "{text}");
        let text = refused("scheduler.jobs_per_boot=two").to_string();
        assert!(text.contains("scheduler.jobs_per_boot"), "{text}");
        let text = refused("scheduler.warm_linger=soon").to_string();
        assert!(text.contains("scheduler.warm_linger"), "{text}");
        // The daemon's own semantic checks.
        let text = refused("scheduler.capacity=0").to_string();
        assert_eq!(text, "--set scheduler.capacity: must be at least 1");
        assert_eq!(
            refused("scheduler.jobs_per_bot=2").to_string(),
            "--set scheduler.jobs_per_bot: unknown key"
        );
        assert_eq!(refused("scheduler.policy=cycle"), SettingError::Policy);
        for key in [
            "sim.duration=1h",
            "hosts.capacity=2",
            "scheduler=1",
            "scheduler.=1",
        ] {
            let text = refused(key).to_string();
            assert!(
                text.contains("not a setting replay-all can change"),
                "{text}"
            );
        }
    }
}
