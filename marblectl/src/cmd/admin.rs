//! `pause`, `resume`, `lock`, `unlock`, `drain`.

use marble_proto::{LockTarget, Request, Response, UnlockTarget};

use crate::cli::{DrainArgs, LockArgs, ReasonArgs, UnlockArgs};
use crate::client::ClientError;
use crate::cmd::status::unexpected;
use crate::cmd::{Context, out};
use crate::exit::Exit;
use crate::render;

async fn done(ctx: &Context, request: Request) -> Result<Exit, ClientError> {
    match ctx.call(request).await? {
        Response::Done { message } => {
            if ctx.json {
                out(&render::json(&Response::Done { message }));
            } else {
                eprintln!("{message}");
            }
            Ok(Exit::Ok)
        }
        other => Err(unexpected(&other)),
    }
}

/// `pause`.
pub async fn pause(ctx: &Context, args: ReasonArgs) -> Result<Exit, ClientError> {
    done(
        ctx,
        Request::Pause {
            reason: args.reason,
        },
    )
    .await
}

/// `resume`.
pub async fn resume(ctx: &Context) -> Result<Exit, ClientError> {
    done(ctx, Request::Resume).await
}

/// `lock`.
pub async fn lock(ctx: &Context, args: LockArgs) -> Result<Exit, ClientError> {
    let target = match (args.vm, args.all_except) {
        (_, Some(keep)) => LockTarget::AllExcept(keep),
        (Some(vm), None) => LockTarget::Vm(vm),
        (None, None) => unreachable_target(),
    };
    done(
        ctx,
        Request::Lock {
            target,
            reason: args.reason,
        },
    )
    .await
}

/// `unlock`.
pub async fn unlock(ctx: &Context, args: UnlockArgs) -> Result<Exit, ClientError> {
    let target = match (args.vm, args.all) {
        (_, true) => UnlockTarget::All,
        (Some(vm), false) => UnlockTarget::Vm(vm),
        (None, false) => return Ok(Exit::Usage),
    };
    done(ctx, Request::Unlock { target }).await
}

fn unreachable_target() -> LockTarget {
    // clap's required ArgGroup guarantees one of the two; keep a harmless value regardless.
    LockTarget::AllExcept(String::new())
}

/// `drain`.
pub async fn drain(ctx: &Context, args: DrainArgs) -> Result<Exit, ClientError> {
    let wait_ms = args
        .wait
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    done(
        ctx,
        Request::Drain {
            reason: args.reason,
            wait_ms,
        },
    )
    .await
}
