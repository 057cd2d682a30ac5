//! Reading a trace file: every problem at once, each naming its key, like `marbled.toml`
//! (both use `marbled::config::from_str_checked`, the one strict TOML loader): unknown keys
//! and type errors (a bad duration, a string where a number belongs) are collected, each with
//! its key and line, then the semantic checks (`crate::validate`) run over the whole value.

use std::path::{Path, PathBuf};

use marbled::config::{StrictError, from_str_checked, render_problems};

use super::Trace;

/// One problem found in a trace: the same shape as a config problem (dotted key, message).
pub type TraceProblem = marbled::config::ConfigProblem;

/// Why a trace could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read.
    #[error("cannot read trace {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, or a value of the wrong type (toml's message names the key and line).
    #[error("invalid trace {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// toml's message.
        message: String,
    },
    /// Unknown keys or invalid values.
    #[error("invalid trace {path}: {}", render_problems(.problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<TraceProblem>,
    },
}

impl Trace {
    /// Read and validate a trace file.
    pub fn load(path: &Path) -> Result<Trace, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate trace text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Trace, TraceError> {
        from_str_checked::<Trace>(text, path, Trace::problems).map_err(|err| match err {
            StrictError::Syntax { path, key, message } => TraceError::Syntax {
                path,
                // toml's message shows the line but not always the key's full path: name it.
                message: format!(
                    "{}{message}",
                    key.map(|k| format!("{k}: ")).unwrap_or_default()
                ),
            },
            StrictError::Invalid { path, problems } => TraceError::Invalid { path, problems },
        })
    }

    /// The trace as TOML (for replaying a generated schedule with `marble-sim run`).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::*;

    fn parse(text: &str) -> Result<Trace, TraceError> {
        Trace::parse(text, Path::new("t.toml"))
    }

    #[test]
    fn empty_trace_uses_defaults() {
        let t = parse("").expect("empty trace is valid");
        assert_eq!(t, Trace::default());
        let names: Vec<String> = t.host_vms().into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["sim-ROOT-VM-1", "sim-ROOT-VM-2", "sim-SPI-VM-1"]);
    }

    #[test]
    fn unknown_keys_are_named_all_at_once() {
        let err = parse(
            "[sim]\nduraton = \"1h\"\n[host]\nroot_vm = 2\n[[root_jobs]]\nat = \"1m\"\nduration = \"1m\"\n",
        )
        .expect_err("unknown keys");
        let text = err.to_string();
        assert!(text.contains("sim.duraton: unknown key"), "{text}");
        assert!(text.contains("host.root_vm: unknown key"), "{text}");
    }

    #[test]
    fn unknown_key_in_an_array_of_tables_is_named() {
        let err = parse("[[root_jobs]]\nat = \"1m\"\nduration = \"1m\"\nlabel = [\"x\"]\n")
            .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("label"), "{text}");
        assert!(text.contains("root_jobs"), "{text}");
    }

    #[test]
    fn bad_duration_names_its_key() {
        let err = parse("[sim]\nduration = \"4 fortnights\"\n").expect_err("bad duration");
        let text = err.to_string();
        assert!(text.contains("sim.duration: "), "{text}");
        assert!(text.contains("line 2"), "{text}");
        let err = parse("[boot]\nmin = \"60\"\n").expect_err("no unit");
        assert!(err.to_string().contains("boot.min: "), "{err}");
        let err = parse("[[faults]]\nkind = \"hang\"\ndelay = \"soon\"\n").expect_err("bad");
        // The entry of an array of tables is named with its index, as unknown keys are.
        assert!(err.to_string().contains("faults.0.delay: "), "{err}");
    }

    #[test]
    fn semantic_problems_name_their_keys() {
        let err = parse(
            "[boot]\nmin = \"2m\"\nmax = \"1m\"\n[scheduler]\npolicy = \"random\"\n\
             [[jenkins]]\nat = \"0s\"\nvm = \"sim-ROOT-VM-1\"\nduration = \"1m\"\n\
             [[faults]]\nkind = \"probe\"\nvm = \"nope\"\nrate = 2.0\n",
        )
        .expect_err("invalid");
        let text = err.to_string();
        for key in [
            "boot.min",
            "scheduler.policy",
            "jenkins[0].vm",
            "faults[0].vm",
            "faults[0].rate",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
    }

    #[test]
    fn scheduler_keys_map_like_the_daemon() {
        let t = parse("[scheduler]\npolicy = \"manual\"\ncycle_on_min = \"10s\"\ncapacity = 2\n")
            .expect("valid");
        let s = t.sched_config(None, 9);
        assert_eq!(s.policy, Policy::Manual);
        assert_eq!(s.cycle_on_min_ms, 10_000);
        assert_eq!(s.capacity, 2);
        assert_eq!(s.seed, 9);
        assert_eq!(t.sched_config(Some(Policy::Cycle), 1).policy, Policy::Cycle);
    }

    #[test]
    fn a_trace_round_trips_through_toml() {
        let mut t = Trace::default();
        t.faults.push(FaultSpec {
            kind: FaultKind::Hang,
            vm: Some("sim-ROOT-VM-1".into()),
            rate: 0.5,
            from: Some(Duration::from_secs(60)),
            until: None,
            action: Some(HangAction::WaitReady),
            delay: Some(Duration::from_secs(600)),
        });
        t.jenkins.push(JenkinsSpec {
            at: Duration::from_millis(1500),
            vm: "any".into(),
            duration: Duration::from_secs(30),
            wait: Duration::from_secs(10),
            retry: Duration::from_secs(5),
        });
        t.generate = Some(GenerateSection {
            seed: Some(3),
            until: None,
            root: Some(GenRoot::default()),
            spi: None,
            daily: None,
        });
        let text = t.to_toml().expect("serialises");
        assert_eq!(parse(&text).expect("parses back"), t);
    }
}
