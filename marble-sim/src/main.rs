//! `marble-sim`: replay a trace through the scheduler in virtual time, compare policies on
//! it, or generate the standard trace (see `docs/SIMULATOR.md`). Exit 0, 1 when an invariant
//! was violated, 2 for a bad trace or arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use marble_sim::compare::compare;
use marble_sim::shapes::Shape;
use marble_sim::standard::{explicit, standard_trace};
use marble_sim::{RunOptions, Trace, simulate};
use marbled::config::Policy;

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

#[derive(Clone, Copy, ValueEnum)]
enum PolicyArg {
    Cycle,
    Demand,
    Manual,
}

fn load(path: &std::path::Path) -> Result<Trace, ExitCode> {
    Trace::load(path).map_err(|err| {
        eprintln!("marble-sim: {err}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run {
            trace,
            json,
            policy,
            seed,
            log,
        } => {
            let loaded = match load(&trace) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let opts = RunOptions {
                policy: policy.map(|p| match p {
                    PolicyArg::Cycle => Policy::Cycle,
                    PolicyArg::Demand => Policy::Demand,
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
        Cmd::Compare { trace, json, seed } => {
            let loaded = match load(&trace) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let result = compare(&loaded, seed);
            if json {
                println!("{}", result.to_json());
            } else {
                print!("{}", result.to_table(&trace.display().to_string()));
            }
            if result.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Cmd::ReplayAll {
            dir,
            seeds,
            first_seed,
            json,
            strict,
        } => replay_all(&dir, seeds, first_seed, json, strict),
        Cmd::Generate {
            shape: Some(shape),
            seed,
            ..
        } => print_trace(
            &shape.trace(seed),
            &format!("--shape {} --seed {seed}", shape.name()),
            "Trace shapes",
        ),
        Cmd::Generate {
            shape: None,
            days,
            seed,
            hosts,
            explicit: expand,
        } => {
            let mut trace = standard_trace(days, seed, hosts);
            if expand {
                trace = explicit(&trace);
            }
            let args = format!(
                "--days {days} --seed {seed} --hosts {hosts}{}",
                if expand { " --explicit" } else { "" }
            );
            print_trace(&trace, &args, "Trace generator")
        }
    }
}

/// `marble-sim replay-all`: exit 1 on a violation (or, `strict`, a missed target), 2 on a
/// bad trace.
fn replay_all(dir: &std::path::Path, seeds: u64, first: u64, json: bool, strict: bool) -> ExitCode {
    let entries = match marble_sim::replay_all::entries(dir, seeds, first) {
        Ok(e) => e,
        Err(err) => {
            eprintln!("marble-sim: {err}");
            return ExitCode::from(2);
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let rows = marble_sim::replay_all::replay(&entries, threads);
    if json {
        match serde_json::to_string_pretty(&rows) {
            Ok(text) => println!("{text}"),
            Err(err) => {
                eprintln!("marble-sim: {err}");
                return ExitCode::from(70);
            }
        }
    } else {
        print!("{}", marble_sim::replay_all::table(&rows));
    }
    let violated = rows.iter().any(|r| r.violations > 0);
    let missed = strict && rows.iter().any(|r| !r.targets.all_met());
    if violated || missed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Print `trace` as TOML under a header naming the command that wrote it.
fn print_trace(trace: &Trace, args: &str, section: &str) -> ExitCode {
    match trace.to_toml() {
        Ok(text) => {
            let what = if section == "Trace shapes" {
                "MARBLE load-shape trace (issue 17)"
            } else {
                "Standard MARBLE fleet trace"
            };
            println!(
                "# {what}: marble-sim generate {args}\n# See docs/SIMULATOR.md (\"{section}\").\n"
            );
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("marble-sim: cannot write the trace: {err}");
            ExitCode::from(2)
        }
    }
}
