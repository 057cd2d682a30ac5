//! `marble-sim`: replay a trace through the scheduler in virtual time, compare policies on
//! it, or generate the standard trace (see `docs/SIMULATOR.md`). Exit 0, 1 when an invariant
//! was violated, 2 for a bad trace or arguments (64 for a bad `replay-all --set`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use marble_sim::compare::compare;
use marble_sim::fleet_demand::{EngineRequestOptions, requests_on_engine};
use marble_sim::requests::{Mode, RequestOptions, requests};
use marble_sim::settings::Settings;
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
struct ImportArgs {
    /// Start of the period: YYYY-MM-DD (00:00 UTC) or RFC 3339; offset 0 of the trace.
    #[arg(long)]
    since: String,
    /// End of the period (default: now).
    #[arg(long)]
    until: Option<String>,
    /// GitHub repository `owner/name` whose workflow jobs become `[[root_jobs]]`.
    #[arg(long)]
    repo: Option<String>,
    /// File holding the GitHub token (mode 0600; never pass a token on the command line).
    #[arg(long, requires = "repo")]
    github_token_file: Option<PathBuf>,
    /// GitHub API base URL.
    #[arg(long, default_value = "https://api.github.com")]
    github_api: String,
    /// A job must carry this label to be imported (repeatable; default `self-hosted`).
    #[arg(long = "require-label", default_values_t = ["self-hosted".to_owned()])]
    require_labels: Vec<String>,
    /// Jenkins base URL whose builds become `[[jenkins]]`.
    #[arg(long)]
    jenkins: Option<String>,
    /// A Jenkins job to import (repeatable; `folder/job` for a job in a folder).
    #[arg(long = "jenkins-job", requires = "jenkins")]
    jenkins_jobs: Vec<String>,
    /// Jenkins user for the API token.
    #[arg(long, requires = "jenkins_token_file")]
    jenkins_user: Option<String>,
    /// File holding the Jenkins API token (mode 0600).
    #[arg(long, requires = "jenkins_user")]
    jenkins_token_file: Option<PathBuf>,
    /// The fleet: `standard` (the standard fleet of `--hosts` hosts) or a trace file whose
    /// hosts, boot model and simulator latencies to take.
    #[arg(long, default_value = "standard")]
    hosts_from: String,
    /// Hosts of the standard fleet.
    #[arg(long, default_value_t = 8)]
    hosts: u32,
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

/// One line of either `requests` table: the fleet, GitHub requests per hour, two counters
/// the tables name differently (`jenk/h` and `s3/h`, or `polls` and `s3`), and the waits.
struct RequestsLine {
    hosts: u32,
    mode: Mode,
    github_p50: u64,
    github_max: u64,
    first: u64,
    second: u64,
    wait_p50_s: f64,
    wait_p95_s: f64,
    spi_p95_s: f64,
}

impl RequestsLine {
    /// The header, naming the two counters.
    fn print_header(first: &str, second: &str) {
        println!(
            "{:>5} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9}",
            "hosts",
            "mode",
            "gh/h p50",
            "gh/h max",
            first,
            second,
            "wait p50",
            "wait p95",
            "spi p95"
        );
    }

    fn print(&self) {
        let mode = match self.mode {
            Mode::Each => "each",
            Mode::Elected => "elected",
        };
        println!(
            "{:>5} {:>8} {:>9} {:>9} {:>8} {:>8} {:>7.0}s {:>8.0}s {:>8.0}s",
            self.hosts,
            mode,
            self.github_p50,
            self.github_max,
            self.first,
            self.second,
            self.wait_p50_s,
            self.wait_p95_s,
            self.spi_p95_s
        );
    }
}

/// The error of a `requests` run that could not start its runtime: exit 70.
fn no_runtime(err: &std::io::Error) -> ExitCode {
    eprintln!("marble-sim: cannot start the runtime: {err}");
    ExitCode::from(70)
}

/// `marble-sim requests`: one row per fleet size.
fn requests_table(trace: &Trace, hosts: &[u32], base: &RequestOptions, json: bool) -> ExitCode {
    if !json {
        RequestsLine::print_header("jenk/h", "s3/h");
    }
    for &n in hosts {
        let opts = RequestOptions {
            hosts: n,
            ..base.clone()
        };
        let r = match requests(trace, &opts) {
            Ok(r) => r,
            Err(err) => return no_runtime(&err),
        };
        if json {
            if let Err(code) = print_json(&r, false) {
                return code;
            }
        } else {
            RequestsLine {
                hosts: n,
                mode: base.mode,
                github_p50: r.github_per_hour_p50,
                github_max: r.github_per_hour_max,
                first: r.jenkins_per_hour_max,
                second: r.s3_reads_per_hour_max + r.s3_writes_per_hour_max,
                wait_p50_s: r.root_wait_p50_s,
                wait_p95_s: r.root_wait_p95_s,
                spi_p95_s: r.spi_grant_p95_s,
            }
            .print();
        }
    }
    ExitCode::SUCCESS
}

/// `marble-sim requests --engine`: one row per fleet size, from the scheduler's own figures.
fn requests_engine_table(
    trace: &Trace,
    hosts: &[u32],
    opts: EngineRequestOptions,
    duration: Option<std::time::Duration>,
    json: bool,
) -> ExitCode {
    let mut trace = trace.clone();
    if let Some(d) = duration {
        trace.sim.duration = d;
        if let Some(g) = trace.generate.as_mut() {
            g.until = Some(g.until.map_or(d, |u| u.min(d)));
        }
    }
    if !json {
        RequestsLine::print_header("polls", "s3");
    }
    let secs = |v: Option<u64>| v.map_or(0.0, |v| v as f64 / 1000.0);
    for &n in hosts {
        let r = match requests_on_engine(&trace, n, opts) {
            Ok(r) => r,
            Err(err) => return no_runtime(&err),
        };
        let mut hourly: Vec<u64> = r.charged_per_hour.values().copied().collect();
        hourly.sort_unstable();
        let p50 = hourly
            .get(hourly.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0);
        let max = hourly.last().copied().unwrap_or(0);
        let root = r.report.teams.get("root");
        let (w50, w95) = (
            secs(root.and_then(|t| t.wait_p50_ms)),
            secs(root.and_then(|t| t.wait_p95_ms)),
        );
        let spi95 = secs(r.report.spi_grant_latency.p95_ms);
        let c = r.counted;
        if json {
            let line = serde_json::json!({
                "hosts": n, "mode": opts.mode, "github_per_hour_p50": p50,
                "github_per_hour_max": max, "polls": c.polls, "paced_polls": c.paced,
                "runner_calls": c.runner_calls, "release_checks": c.release_checks,
                "s3_reads": c.s3_reads, "s3_writes": c.s3_writes,
                "root_wait_p50_s": w50, "root_wait_p95_s": w95, "spi_grant_p95_s": spi95,
                "takeover_ms": c.takeover_ms,
            });
            if let Err(code) = print_json(&line, false) {
                return code;
            }
        } else {
            RequestsLine {
                hosts: n,
                mode: opts.mode,
                github_p50: p50,
                github_max: max,
                first: c.polls,
                second: c.s3_reads + c.s3_writes,
                wait_p50_s: w50,
                wait_p95_s: w95,
                spi_p95_s: spi95,
            }
            .print();
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
        Cmd::ReplayAll {
            dir,
            seeds,
            first_seed,
            json,
            strict,
            set,
        } => replay_all(&dir, seeds, first_seed, json, strict, &set),
        #[cfg(feature = "import")]
        Cmd::Import(args) => import(&args),
        Cmd::Requests {
            trace,
            hosts,
            mode,
            leader_dies_at,
            hosted_runs_per_hour,
            duration,
            json,
            engine,
        } => {
            let loaded = match load(&trace) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let mode = match mode {
                ModeArg::Each => Mode::Each,
                ModeArg::Elected => Mode::Elected,
            };
            if engine {
                let opts = EngineRequestOptions {
                    leader_dies_at,
                    hosted_runs_per_hour,
                    ..EngineRequestOptions::new(mode)
                };
                return requests_engine_table(&loaded, &hosts, opts, duration, json);
            }
            let base = RequestOptions {
                leader_dies_at,
                hosted_runs_per_hour,
                duration,
                ..RequestOptions::new(1, mode)
            };
            requests_table(&loaded, &hosts, &base, json)
        }
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
/// bad trace, 64 on a bad `--set`.
fn replay_all(
    dir: &std::path::Path,
    seeds: u64,
    first: u64,
    json: bool,
    strict: bool,
    set: &[String],
) -> ExitCode {
    // Checked before any trace is read or replayed: a typo costs nothing.
    let settings = match Settings::parse(set) {
        Ok(s) => s,
        Err(err) => {
            eprintln!("marble-sim replay-all: {err}");
            return ExitCode::from(64);
        }
    };
    let entries = match marble_sim::replay_all::entries(dir, seeds, first) {
        Ok(e) => e,
        Err(err) => {
            eprintln!("marble-sim: {err}");
            return ExitCode::from(2);
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let rows = marble_sim::replay_all::replay(&entries, &settings, threads);
    if json {
        if let Err(code) = print_json(&rows, true) {
            return code;
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

/// `marble-sim import`: the trace on stdout, what was kept and left out on stderr.
#[cfg(feature = "import")]
fn import(args: &ImportArgs) -> ExitCode {
    use marble_sim::import::{self, FleetSource, Window, fetch};
    let usage = |msg: String| {
        eprintln!("marble-sim import: {msg}");
        ExitCode::from(2)
    };
    if args.repo.is_some() != args.github_token_file.is_some() {
        return usage("--repo needs --github-token-file (and the reverse)".into());
    }
    if args.jenkins.is_some() && args.jenkins_jobs.is_empty() {
        return usage("--jenkins needs at least one --jenkins-job".into());
    }
    let since_ms = match import::parse_time(&args.since) {
        Ok(t) => t,
        Err(e) => return usage(e.to_string()),
    };
    let until_ms = match args.until.as_deref().map(import::parse_time) {
        None => import::now_ms(),
        Some(Ok(t)) => t,
        Some(Err(e)) => return usage(e.to_string()),
    };
    if until_ms <= since_ms {
        return usage("--until must be after --since".into());
    }
    let fleet = if args.hosts_from == "standard" {
        FleetSource::Standard(args.hosts.max(1))
    } else {
        match load(std::path::Path::new(&args.hosts_from)) {
            Ok(t) => FleetSource::Trace(Box::new(t)),
            Err(_) => return ExitCode::from(65),
        }
    };
    let opts = fetch::ImportOptions {
        repo: args.repo.clone(),
        github_api: args.github_api.clone(),
        github_token_file: args.github_token_file.clone(),
        require_labels: args.require_labels.clone(),
        jenkins: args.jenkins.clone(),
        jenkins_jobs: args.jenkins_jobs.clone(),
        jenkins_auth: args
            .jenkins_user
            .clone()
            .zip(args.jenkins_token_file.clone()),
        window: Window { since_ms, until_ms },
        fleet,
    };
    let (trace, summary) = match fetch::import(&opts) {
        Ok(done) => done,
        Err(err) => {
            eprintln!("marble-sim import: {}", marbled::chain::ErrorChain(&err));
            return ExitCode::from(err.exit_code());
        }
    };
    eprintln!(
        "marble-sim import: {} ROOT jobs ({} cancelled after starting; real wait p50 {}, p95 \
         {}); left out: {} with other labels, {} skipped, {} never ran, {} unfinished, {} \
         outside the period; {} Jenkins builds ({} to any node, {} still building left out)",
        summary.root_jobs,
        summary.cancelled_after_start,
        summary
            .real_wait_p50_ms
            .map_or("-".into(), marble_sim::metrics::fmt_ms),
        summary
            .real_wait_p95_ms
            .map_or("-".into(), marble_sim::metrics::fmt_ms),
        summary.other_labels,
        summary.skipped,
        summary.never_ran,
        summary.unfinished,
        summary.outside,
        summary.jenkins_builds,
        summary.jenkins_any,
        summary.jenkins_building,
    );
    let args = format!(
        "import --since {} --until {}",
        import::format_time(since_ms),
        import::format_time(until_ms)
    );
    print_trace(&trace, &args, "Replaying real history")
}

/// Print `value` as one line of JSON (or `pretty`, indented); exit 70 if it cannot be.
fn print_json(value: &impl serde::Serialize, pretty: bool) -> Result<(), ExitCode> {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    match text {
        Ok(text) => {
            println!("{text}");
            Ok(())
        }
        Err(err) => {
            eprintln!("marble-sim: {err}");
            Err(ExitCode::from(70))
        }
    }
}

/// Print `trace` as TOML under a header naming the command that wrote it.
fn print_trace(trace: &Trace, args: &str, section: &str) -> ExitCode {
    match trace.to_toml() {
        Ok(text) => {
            let what = match section {
                "Trace shapes" => "MARBLE load-shape trace (issue 17): marble-sim generate",
                "Replaying real history" => "Real CI history: marble-sim",
                _ => "Standard MARBLE fleet trace: marble-sim generate",
            };
            println!("# {what} {args}\n# See docs/SIMULATOR.md (\"{section}\").\n");
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("marble-sim: cannot write the trace: {err}");
            ExitCode::from(2)
        }
    }
}
