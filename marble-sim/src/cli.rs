//! The `marble-sim` command line (clap types), in the library so the docs check
//! (`tests/tests/docs_commands.rs`) parses documented command lines with the real
//! definitions; `main.rs` runs them.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::shapes::Shape;

/// The clap command of `marble-sim`, as `main` parses it.
pub fn command() -> clap::Command {
    Cli::command()
}

// The `marble-sim` command line (no doc comment: it would become the long help).
#[derive(Parser)]
#[command(
    name = "marble-sim",
    version,
    about = "Replay a CI trace through the MARBLE scheduler in virtual time"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run a trace and print its metrics.
    Run {
        /// The trace file (TOML).
        trace: PathBuf,
        /// Print the metrics as JSON.
        #[arg(long)]
        json: bool,
        /// Override the trace's scheduler policy.
        #[arg(long, value_enum)]
        policy: Option<PolicyArg>,
        /// Override the trace's seed (`sim.seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Log every scheduler input and effect, with its virtual time, to stderr.
        #[arg(long)]
        log: bool,
    },
    /// Run a trace under policies `cycle` and `demand` and print them side by side.
    Compare {
        /// The trace file (TOML).
        trace: PathBuf,
        /// Print both reports and the targets as JSON.
        #[arg(long)]
        json: bool,
        /// Override the trace's seed (`sim.seed`).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Replay every trace of a directory and fresh seeds of every load shape under `cycle`
    /// and `demand` with the shipped defaults; print one table of issue 17's targets.
    ReplayAll {
        /// Directory of committed traces (every `*.toml`).
        #[arg(default_value = "docs/traces")]
        dir: PathBuf,
        /// Fresh instances of every shape to add.
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// Seed of the first fresh instance (then +1, +2, ...).
        #[arg(long, default_value_t = 1001)]
        first_seed: u64,
        /// Print the rows as JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Exit 1 when a target (not the stretch one) is missed, too.
        #[arg(long)]
        strict: bool,
        /// Replay with this setting over the shipped defaults (repeatable): `scheduler.KEY`
        /// as in `marbled.toml`, or the demand feed's `sim.demand_poll` / `sim.demand_watch`,
        /// e.g. `--set scheduler.jobs_per_boot=2`. The table and JSON name the settings.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Write a trace from a repository's GitHub Actions history and Jenkins build history.
    #[cfg(feature = "import")]
    Import(Box<ImportArgs>),
    /// Count GitHub/Jenkins/bucket requests per hour for fleets of N hosts on one token, with
    /// the daemon's own poller and pacing, and the ROOT waits and SPI grants they give.
    Requests {
        /// The trace file (TOML): its workload is scaled from its hosts to each fleet size.
        trace: PathBuf,
        /// Fleet sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "8,20,40")]
        hosts: Vec<u32>,
        /// Who polls GitHub: every host, or the lease holder.
        #[arg(long, value_enum, default_value = "each")]
        mode: ModeArg,
        /// Stop the lease holder's daemon this far into the run (`elected`), e.g. `2h`.
        #[arg(long, value_parser = humantime::parse_duration)]
        leader_dies_at: Option<std::time::Duration>,
        /// The repository's other (GitHub-hosted) workflow runs started an hour, 30 min
        /// each: 30 keeps 15 in progress, docs/OPERATIONS.md's busy repository.
        #[arg(long, default_value_t = 30.0)]
        hosted_runs_per_hour: f64,
        /// Simulate only this much of the trace, e.g. `1day`.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Print the reports as JSON lines.
        #[arg(long)]
        json: bool,
        /// Run the fleet on the real scheduler (one `World` per host, the engine of `run`,
        /// policy `demand`) fed by the daemon's poller, instead of the small fleet model.
        #[arg(long)]
        engine: bool,
    },
    /// Print the standard fleet trace (hosts, boot times, daily workload), or one of issue
    /// 17's load shapes, as TOML.
    Generate {
        /// A load shape instead of the standard trace (`--days`, `--hosts` and `--explicit`
        /// then do not apply: a shape fixes its fleet and length and writes every arrival).
        #[arg(long, value_enum)]
        shape: Option<Shape>,
        /// Days simulated (day 0 is a Monday).
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Seed of the arrivals and of the run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Hosts in the fleet.
        #[arg(long, default_value_t = 8)]
        hosts: u32,
        /// Write every arrival out as `[[root_jobs]]` / `[[jenkins]]` instead of the generator
        /// section.
        #[arg(long)]
        explicit: bool,
    },
}

/// `marble-sim import` (see docs/SIMULATOR.md, "Replaying real history").
#[cfg(feature = "import")]
#[derive(clap::Args)]
pub struct ImportArgs {
    /// Start of the period: YYYY-MM-DD (00:00 UTC) or RFC 3339; offset 0 of the trace.
    #[arg(long)]
    pub since: String,
    /// End of the period (default: now).
    #[arg(long)]
    pub until: Option<String>,
    /// GitHub repository `owner/name` whose workflow jobs become `[[root_jobs]]`.
    #[arg(long)]
    pub repo: Option<String>,
    /// File holding the GitHub token (mode 0600; never pass a token on the command line).
    #[arg(long, requires = "repo")]
    pub github_token_file: Option<PathBuf>,
    /// GitHub API base URL.
    #[arg(long, default_value = "https://api.github.com")]
    pub github_api: String,
    /// A job must carry this label to be imported (repeatable; default `self-hosted`).
    #[arg(long = "require-label", default_values_t = ["self-hosted".to_owned()])]
    pub require_labels: Vec<String>,
    /// Jenkins base URL whose builds become `[[jenkins]]`.
    #[arg(long)]
    pub jenkins: Option<String>,
    /// A Jenkins job to import (repeatable; `folder/job` for a job in a folder).
    #[arg(long = "jenkins-job", requires = "jenkins")]
    pub jenkins_jobs: Vec<String>,
    /// Jenkins user for the API token.
    #[arg(long, requires = "jenkins_token_file")]
    pub jenkins_user: Option<String>,
    /// File holding the Jenkins API token (mode 0600).
    #[arg(long, requires = "jenkins_user")]
    pub jenkins_token_file: Option<PathBuf>,
    /// The fleet: `standard` (the standard fleet of `--hosts` hosts) or a trace file whose
    /// hosts, boot model and simulator latencies to take.
    #[arg(long, default_value = "standard")]
    pub hosts_from: String,
    /// Hosts of the standard fleet.
    #[arg(long, default_value_t = 8)]
    pub hosts: u32,
}

// `requests --mode`: who polls GitHub.
#[derive(Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Each,
    Elected,
}

// `run --policy`: the scheduler policy.
#[derive(Clone, Copy, ValueEnum)]
pub enum PolicyArg {
    Cycle,
    Demand,
    Manual,
}
