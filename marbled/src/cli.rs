//! The `marbled` command line and process entry, shared by the shipped binary
//! (`src/main.rs`) and the test harness's `marbled-under-test`, so process-level tests run
//! exactly what launchd runs.
//!
//! This is the only place that installs signal handlers and the tracing subscriber:
//! SIGTERM/SIGINT start a graceful shutdown and a second one exits at once; SIGHUP re-reads
//! the config file and applies the reloadable fields.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::chain::WireKind as _;
use crate::config::{Config, DEFAULT_CONFIG_PATH};

/// Exit codes (sysexits), documented in docs/OPERATIONS.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DaemonExit {
    /// Clean shutdown.
    Ok = 0,
    /// Bad command line.
    Usage = 64,
    /// A dependency is unavailable (another daemon owns the socket).
    Unavailable = 69,
    /// Internal failure.
    Software = 70,
    /// OS-level failure (socket, state file, runtime).
    OsErr = 71,
    /// Bad configuration.
    Config = 78,
}

impl DaemonExit {
    /// The exit code of a failure of this kind ([`crate::chain::WireKind::kind`]).
    pub fn for_kind(kind: marble_proto::ErrorKind) -> DaemonExit {
        match kind {
            marble_proto::ErrorKind::InvalidRequest => DaemonExit::Config,
            marble_proto::ErrorKind::Unavailable => DaemonExit::OsErr,
            _ => DaemonExit::Software,
        }
    }
}

impl From<DaemonExit> for ExitCode {
    fn from(code: DaemonExit) -> Self {
        ExitCode::from(code as u8)
    }
}

/// marbled — the MARBLE daemon: owns the VMs of this host and decides which one runs.
#[derive(Debug, Parser)]
#[command(name = "marbled", version, about)]
#[deny(missing_docs)]
pub struct Cli {
    /// Config file.
    #[arg(long, short, global = true, env = "MARBLE_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<DaemonCommand>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Run the daemon in the foreground (launchd's mode; never forks).
    Run,
    /// Validate the config file, report every problem, and exit.
    CheckConfig,
    /// Print the default config with every key.
    PrintDefaultConfig,
    /// Write marbled's man page (roff) into DIR (used by `marblectl install` and
    /// `scripts/release.sh`).
    #[command(hide = true)]
    GenerateMan {
        /// Output directory.
        dir: PathBuf,
    },
}

/// What `--version` prints after the name: the crate version, the git commit it was built
/// from (`build.rs`; `unknown` outside a git checkout) and the wire protocol version, so a
/// host's `marbled --version` and `marblectl --version` can be compared at a glance.
pub fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        marble_proto::version_line(env!("CARGO_PKG_VERSION"), env!("MARBLE_COMMIT"))
    })
}

/// The clap command with [`version`] (man pages are generated from it too).
pub fn command() -> clap::Command {
    Cli::command().version(version())
}

/// Process entry.
pub fn main() -> ExitCode {
    let parsed = command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                DaemonExit::Usage.into()
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command.unwrap_or(DaemonCommand::Run) {
        DaemonCommand::PrintDefaultConfig => {
            print_out(&Config::default_toml());
            ExitCode::SUCCESS
        }
        DaemonCommand::CheckConfig => check_config(&cli.config).into(),
        DaemonCommand::GenerateMan { dir } => match clap_mangen::generate_to(command(), &dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!(
                    "marbled: cannot write man pages into {}: {err}",
                    dir.display()
                );
                ExitCode::from(73)
            }
        },
        DaemonCommand::Run => run(&cli.config).into(),
    }
}

/// `marbled check-config`: every problem of the file, then every secret file problem
/// (the daemon would run without what needs that secret until it is fixed). 0 when there is
/// none, else 78.
fn check_config(path: &std::path::Path) -> DaemonExit {
    let check = match Config::check_file(path) {
        Ok(check) => check,
        Err(err) => {
            eprintln!("marbled: {err}");
            return DaemonExit::for_kind(err.kind());
        }
    };
    if check.problems.is_empty() && check.secrets.is_empty() {
        eprintln!("{}: ok", path.display());
        return DaemonExit::Ok;
    }
    if !check.problems.is_empty() {
        eprintln!(
            "marbled: invalid config {}: {}",
            path.display(),
            crate::config::render_problems(&check.problems)
        );
    }
    if !check.secrets.is_empty() {
        eprintln!(
            "marbled: {}: {} secret file problem(s) (marbled would run with what needs them \
             unavailable until fixed):",
            path.display(),
            check.secrets.len()
        );
        for problem in &check.secrets {
            eprintln!("  - {problem}");
        }
    }
    DaemonExit::Config
}

#[allow(clippy::print_stdout)]
fn print_out(text: &str) {
    print!("{text}");
}

fn run(path: &std::path::Path) -> DaemonExit {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("marbled: {err}");
            return DaemonExit::for_kind(err.kind());
        }
    };
    let _log = match crate::logging::init(config.daemon.log_file.as_deref(), config.daemon.log_keep)
    {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("marbled: {err}");
            return DaemonExit::Config;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return DaemonExit::OsErr;
        }
    };
    runtime.block_on(async_main(path.to_owned(), config))
}

async fn async_main(path: PathBuf, config: Config) -> DaemonExit {
    // Bind before anything else so clients can connect as soon as we report started.
    let (listener, guard) =
        match crate::socket::bind(&config.daemon.socket, &config.daemon.socket_group) {
            Ok(bound) => bound,
            Err(err) => {
                tracing::error!(error = %err, "cannot bind the control socket");
                return match err {
                    crate::socket::SocketError::AlreadyRunning { .. }
                    | crate::socket::SocketError::InUse { .. } => DaemonExit::Unavailable,
                    _ => DaemonExit::OsErr,
                };
            }
        };
    let shutdown = CancellationToken::new();
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    if let Err(err) = spawn_signal_handlers(path, shutdown.clone(), reload_tx) {
        tracing::error!(error = %err, "cannot install signal handlers");
        return DaemonExit::OsErr;
    }
    let result = crate::daemon::run(config, listener, reload_rx, shutdown).await;
    drop(guard);
    match result {
        Ok(()) => DaemonExit::Ok,
        Err(err) => {
            let chain = crate::chain::ErrorChain(&err).to_string();
            tracing::error!(error = %chain, "marbled failed");
            DaemonExit::for_kind(err.kind())
        }
    }
}

fn spawn_signal_handlers(
    path: PathBuf,
    shutdown: CancellationToken,
    reload: tokio::sync::mpsc::Sender<Config>,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = hup.recv() => {
                    match Config::load(&path) {
                        Ok(config) => {
                            tracing::info!(path = %path.display(), "SIGHUP: reloading configuration");
                            let _ = reload.send(config).await;
                        }
                        Err(err) => tracing::error!(error = %err, "SIGHUP: config rejected; keeping the current one"),
                    }
                    continue;
                }
            }
            if shutdown.is_cancelled() {
                tracing::warn!("second signal: exiting immediately");
                std::process::exit(130);
            }
            tracing::info!("signal received: graceful shutdown (send again to exit at once)");
            shutdown.cancel();
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
