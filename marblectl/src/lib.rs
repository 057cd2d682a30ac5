//! `marblectl`: the thin MARBLE client. Parses the command line ([`cli`]), talks to
//! `marbled` over its Unix socket ([`client`]), renders answers ([`render`]) and maps
//! failures to sysexits codes ([`exit`]). It never starts the daemon: launchd owns that.

pub mod cli;
pub mod client;
pub mod cmd;
pub mod exit;
pub mod render;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};
use crate::client::ClientError;
use crate::cmd::Context;
use crate::exit::Exit;

/// What `--version` prints after the name: the crate version, the git commit it was built
/// from (`build.rs`; `unknown` outside a git checkout) and the newest protocol version this
/// client speaks.
pub fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        marble_proto::version_line(env!("CARGO_PKG_VERSION"), env!("MARBLE_COMMIT"))
    })
}

/// The clap command with [`version`]: what is parsed, and what completions and man pages
/// are generated from.
pub fn command() -> clap::Command {
    Cli::command().version(version())
}

/// Process entry: parse, run on a current-thread runtime, map the result to an exit code.
pub fn main() -> ExitCode {
    let parsed = command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                Exit::Usage.into()
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("marblectl: cannot start runtime: {err}");
            return Exit::Software.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("marblectl: {}", render_error(&err));
            code_for(&err).into()
        }
    }
}

/// Run a parsed command.
pub async fn run(cli: Cli) -> Result<Exit, ClientError> {
    client::set_timeout(cli.global.timeout);
    let ctx = Context {
        socket: cli.global.socket,
        json: cli.global.json,
        verbose: cli.global.verbose,
    };
    match cli.command {
        Command::Status => cmd::status::status(&ctx).await,
        Command::Vm(vm) => cmd::vm::run(&ctx, vm).await,
        Command::RequestSlot(args) => cmd::slot::run(&ctx, args).await,
        Command::Pause(args) => cmd::admin::pause(&ctx, args).await,
        Command::Resume => cmd::admin::resume(&ctx).await,
        Command::Lock(args) => cmd::admin::lock(&ctx, args).await,
        Command::Unlock(args) => cmd::admin::unlock(&ctx, args).await,
        Command::Drain(args) => cmd::admin::drain(&ctx, args).await,
        Command::Events(args) => cmd::status::events(&ctx, &args).await,
        Command::Image(image) => cmd::image::run(&ctx, image).await,
        Command::Host(host) => cmd::host::run(&ctx, host).await,
        Command::Fleet(fleet) => cmd::fleet::run(&ctx, fleet).await,
        Command::Migrate(migrate) => cmd::migrate::run(&ctx, migrate).await,
        Command::Metrics => cmd::fleet::metrics(&ctx).await,
        Command::Runner(runner) => cmd::runner::run(&ctx, runner).await,
        Command::Completions(args) => {
            let mut buf = Vec::new();
            clap_complete::generate(args.shell, &mut command(), "marblectl", &mut buf);
            cmd::out(&String::from_utf8_lossy(&buf));
            Ok(Exit::Ok)
        }
        Command::Install(args) => Ok(cmd::install::install(&ctx, args).await),
        Command::Upgrade(args) => Ok(cmd::install::upgrade(&ctx, args).await),
        Command::Uninstall(args) => Ok(cmd::install::uninstall(&args)),
    }
}

/// The error and its chain, once.
pub fn render_error(err: &ClientError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The exit code for a failure.
pub fn code_for(err: &ClientError) -> Exit {
    match err {
        ClientError::Daemon(wire) => exit::for_kind(wire.kind),
        ClientError::NotRunning { .. }
        | ClientError::NoAnswer { .. }
        | ClientError::Refused { .. }
        | ClientError::VersionMismatch(_)
        | ClientError::DaemonTooOld { .. } => Exit::Unavailable,
        ClientError::NoAccess { .. } => Exit::NoPerm,
        ClientError::Silent { .. } => Exit::TempFail,
        ClientError::Conn(marble_proto::ConnError::Io(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Exit::Ok
        }
        ClientError::Conn(_) => Exit::Unavailable,
        ClientError::Protocol(_) => Exit::Software,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        command().debug_assert();
    }
}
