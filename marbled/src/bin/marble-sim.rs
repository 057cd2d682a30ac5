//! `marble-sim`: replay a trace through the scheduler in virtual time (see
//! `docs/SIMULATOR.md`). Exit 0, 1 when an invariant was violated, 2 for a bad trace or
//! arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use marbled::sched::Policy;
use marbled::sim::{RunOptions, Trace, simulate};

#[derive(Parser)]
#[command(
    name = "marble-sim",
    version,
    about = "Replay a CI trace through the MARBLE scheduler in virtual time"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
}

#[derive(Clone, Copy, ValueEnum)]
enum PolicyArg {
    Cycle,
    Manual,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Cmd::Run {
        trace,
        json,
        policy,
        seed,
        log,
    } = cli.command;
    let loaded = match Trace::load(&trace) {
        Ok(t) => t,
        Err(err) => {
            eprintln!("marble-sim: {err}");
            return ExitCode::from(2);
        }
    };
    let opts = RunOptions {
        policy: policy.map(|p| match p {
            PolicyArg::Cycle => Policy::Cycle,
            PolicyArg::Manual => Policy::Manual,
        }),
        seed,
        log,
    };
    let report = simulate(&loaded, opts);
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
