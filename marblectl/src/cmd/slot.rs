//! `request-slot`: the one command Jenkins runs. It must never write to stdout — in Jenkins'
//! SSH launcher the start script's stdout becomes the agent's remoting channel — so every
//! message, including errors and progress, goes to stderr.

use marble_proto::{Request, Response};

use crate::cli::RequestSlotArgs;
use crate::client::ClientError;
use crate::cmd::Context;
use crate::cmd::status::unexpected;
use crate::exit::Exit;

/// Run `request-slot`.
pub async fn run(ctx: &Context, args: RequestSlotArgs) -> Result<Exit, ClientError> {
    let wait_ms = args
        .wait
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    // Progress always goes to stderr here: Jenkins copies it into the agent's launch log,
    // which is where an operator looks for why a node waited.
    match ctx
        .call_with_progress(
            Request::RequestSlot {
                vm: args.vm,
                wait_ms,
            },
            true,
        )
        .await?
    {
        Response::SlotGranted(grant) => {
            if grant.already_running {
                eprintln!("marblectl: {} is already running", grant.vm);
            } else if let Some(prev) = &grant.preempted {
                eprintln!(
                    "marblectl: granted {} (stopped idle {prev} first)",
                    grant.vm
                );
            } else {
                eprintln!("marblectl: granted {}", grant.vm);
            }
            Ok(Exit::Ok)
        }
        other => Err(unexpected(&other)),
    }
}
