//! `[teams]` (which VM belongs to which team) and `[probe]` (the busy and readiness probes
//! run inside guests), with their defaults, and the team words of the config.

use std::collections::BTreeMap;
use std::time::Duration;

use marble_proto::Team;
use serde::{Deserialize, Serialize};

/// `[teams]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TeamsSection {
    /// Glob patterns on VM names for ROOT VMs.
    pub root: Vec<String>,
    /// Glob patterns on VM names for SPI VMs.
    pub spi: Vec<String>,
    /// Per-VM overrides: name → `root` | `spi` | `unassigned`.
    pub overrides: BTreeMap<String, String>,
}

impl Default for TeamsSection {
    fn default() -> Self {
        Self {
            root: vec!["*-ROOT-VM-*".into()],
            spi: vec!["*-SPI-VM-*".into()],
            overrides: BTreeMap::new(),
        }
    }
}

/// `[probe]`: what counts as busy, checked with `prlctl exec` inside the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeSection {
    /// ROOT: argv run in the guest; exit 0 with output = busy, exit 1 = idle, anything else
    /// (or an exec failure) = unknown. Default: a `Runner.Worker` process exists. It runs
    /// through a guest shell whose command line holds it: a `pgrep -f` pattern must not match
    /// its own text (see the defaults and docs/OPERATIONS.md).
    pub root: Vec<String>,
    /// SPI: same contract. Default: a Jenkins agent JVM has a child process (a build step
    /// runs); a connected but idle agent has none, so it does not look busy forever.
    pub spi: Vec<String>,
    /// Readiness check after a start: the guest answers this (ROOT additionally needs
    /// `ready_root` to succeed).
    pub ready: Vec<String>,
    /// ROOT readiness: the runner listener is up.
    pub ready_root: Vec<String>,
    /// How long one probe may take before it counts as unknown.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Interval between readiness polls.
    #[serde(with = "humantime_serde")]
    pub ready_poll: Duration,
}

impl Default for ProbeSection {
    fn default() -> Self {
        let argv = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        // Every `pgrep -f` pattern here escapes its dot (`Runner\.Worker`): `prlctl exec`
        // runs these through a guest shell whose own command line holds the pattern, and
        // `pgrep -f` matches command lines. An unescaped `Runner.Worker` (or
        // `agent.jar|remoting.jar`) finds that shell, so an idle guest looks busy (a ROOT
        // VM never stops, an idle SPI agent holds its VM for ever) and a guest whose
        // listener is down looks ready. With `\.` the shell's command line holds
        // `Runner\.Worker`, which the pattern (a literal dot) does not match, while a real
        // `…/bin/Runner.Worker` or `java -jar …/agent.jar` still does.
        Self {
            root: argv(&["/usr/bin/pgrep", "-lf", "Runner\\.Worker"]),
            spi: argv(&[
                "/bin/sh",
                "-c",
                "for p in $(/usr/bin/pgrep -f 'agent\\.jar|remoting\\.jar'); do /usr/bin/pgrep -lP \"$p\" && exit 0; done; exit 1",
            ]),
            ready: argv(&["/usr/bin/true"]),
            ready_root: argv(&["/usr/bin/pgrep", "-f", "Runner\\.Listener"]),
            timeout: Duration::from_secs(20),
            ready_poll: Duration::from_secs(2),
        }
    }
}

/// Parse a team name as written in config.
pub fn parse_team(name: &str) -> Option<Team> {
    match name {
        "root" => Some(Team::Root),
        "spi" => Some(Team::Spi),
        "unassigned" => Some(Team::Unassigned),
        _ => None,
    }
}
