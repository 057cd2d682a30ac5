//! `marble-sim`: replay a trace through the scheduler in virtual time, compare policies on
//! it, or generate the standard trace (see `docs/SIMULATOR.md`). Exit 0, 1 when an invariant
//! was violated, 2 for a bad trace or arguments (64 for a bad `replay-all --set`).

use std::process::ExitCode;

use clap::Parser;
use marble_sim::cli::{Cli, Cmd, ImportArgs, ModeArg, PolicyArg};
use marble_sim::compare::compare;
use marble_sim::fleet_demand::{EngineRequestOptions, requests_on_engine};
use marble_sim::requests::{Mode, RequestOptions, requests};
use marble_sim::settings::Settings;
use marble_sim::standard::{explicit, standard_trace};
use marble_sim::{RunOptions, Trace, simulate};
use marbled::config::Policy;

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
