//! `migrate check`: the daemon's report on what the seed scripts left on this host
//! (`Request::MigrateCheck`), rendered like `host check`. The checks run in marbled, as the
//! VM owner: its home held the seed's files, its Parallels registry the VMs.

use marble_proto::{CheckStatus, Request, Response};

use crate::cli::MigrateCommand;
use crate::client::ClientError;
use crate::cmd::{Context, host, out};
use crate::exit::Exit;
use crate::render;

/// Run a `migrate` subcommand.
pub async fn run(ctx: &Context, cmd: MigrateCommand) -> Result<Exit, ClientError> {
    match cmd {
        MigrateCommand::Check => check(ctx).await,
    }
}

async fn check(ctx: &Context) -> Result<Exit, ClientError> {
    let lines = match ctx.call_with_progress(Request::MigrateCheck, false).await? {
        Response::HostReport(lines) => lines,
        other => {
            eprintln!(
                "marblectl: unexpected answer {other:?}; upgrade marblectl and marbled together"
            );
            return Ok(Exit::Software);
        }
    };
    out(&if ctx.json {
        render::json(&lines)
    } else {
        host::report(&lines)
    });
    if lines.iter().any(|l| l.status == CheckStatus::Fail) {
        Ok(Exit::Failure)
    } else {
        Ok(Exit::Ok)
    }
}
