//! `marble-sim`: replay a trace through the scheduler in virtual time, compare policies on
//! it, or generate the standard trace (see `docs/SIMULATOR.md`). Exit 0, 1 when an invariant
//! was violated, 2 for a bad trace or arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use marble_sim::compare::compare;
use marble_sim::requests::{Mode, RequestOptions, requests};
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
    },
    /// Print the standard fleet trace (hosts, boot times, daily workload) as TOML.
    Generate {
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
enum ModeArg {
    Each,
    Elected,
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

/// `marble-sim requests`: one row per fleet size.
fn requests_table(trace: &Trace, hosts: &[u32], base: &RequestOptions, json: bool) -> ExitCode {
    if !json {
        println!(
            "{:>5} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9}",
            "hosts",
            "mode",
            "gh/h p50",
            "gh/h max",
            "jenk/h",
            "s3/h",
            "wait p50",
            "wait p95",
            "spi p95"
        );
    }
    for &n in hosts {
        let opts = RequestOptions {
            hosts: n,
            ..base.clone()
        };
        let r = match requests(trace, &opts) {
            Ok(r) => r,
            Err(err) => {
                eprintln!("marble-sim: cannot start the runtime: {err}");
                return ExitCode::from(70);
            }
        };
        if json {
            match serde_json::to_string(&r) {
                Ok(line) => println!("{line}"),
                Err(err) => {
                    eprintln!("marble-sim: {err}");
                    return ExitCode::from(70);
                }
            }
        } else {
            let label = match base.mode {
                Mode::Each => "each",
                Mode::Elected => "elected",
            };
            println!(
                "{:>5} {:>8} {:>9} {:>9} {:>8} {:>8} {:>7.0}s {:>8.0}s {:>8.0}s",
                n,
                label,
                r.github_per_hour_p50,
                r.github_per_hour_max,
                r.jenkins_per_hour_max,
                r.s3_reads_per_hour_max + r.s3_writes_per_hour_max,
                r.root_wait_p50_s,
                r.root_wait_p95_s,
                r.spi_grant_p95_s
            );
        }
    }
    ExitCode::SUCCESS
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
        Cmd::Requests {
            trace,
            hosts,
            mode,
            leader_dies_at,
            hosted_runs_per_hour,
            duration,
            json,
        } => {
            let loaded = match load(&trace) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let mode = match mode {
                ModeArg::Each => Mode::Each,
                ModeArg::Elected => Mode::Elected,
            };
            let base = RequestOptions {
                leader_dies_at,
                hosted_runs_per_hour,
                duration,
                ..RequestOptions::new(1, mode)
            };
            requests_table(&loaded, &hosts, &base, json)
        }
        Cmd::Generate {
            days,
            seed,
            hosts,
            explicit: expand,
        } => {
            let mut trace = standard_trace(days, seed, hosts);
            if expand {
                trace = explicit(&trace);
            }
            match trace.to_toml() {
                Ok(text) => {
                    println!(
                        "# Standard MARBLE fleet trace: marble-sim generate --days {days} \
                         --seed {seed} --hosts {hosts}{}\n# See docs/SIMULATOR.md \
                         (\"Trace generator\").\n",
                        if expand { " --explicit" } else { "" }
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
    }
}
