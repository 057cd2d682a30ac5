//! `vm list|show|start|stop`; `vm create|provision` are in [`super::vm_setup`].

use marble_proto::{Request, Response};

use crate::cli::VmCommand;
use crate::client::ClientError;
use crate::cmd::status::unexpected;
use crate::cmd::{Context, out};
use crate::exit::Exit;
use crate::render;

/// Run a `vm` subcommand.
pub async fn run(ctx: &Context, cmd: VmCommand) -> Result<Exit, ClientError> {
    let request = match cmd {
        VmCommand::Create(a) => return crate::cmd::vm_setup::create(ctx, a).await,
        VmCommand::Provision(a) => return crate::cmd::vm_setup::provision(ctx, a).await,
        VmCommand::List => Request::ListVms,
        VmCommand::Show(a) => Request::ShowVm { vm: a.vm },
        VmCommand::Start(a) => Request::StartVm { vm: a.vm },
        VmCommand::Stop(a) => Request::StopVm {
            vm: a.vm,
            force: a.force,
        },
    };
    match ctx.call(request).await? {
        Response::Vms(vms) => out(&if ctx.json {
            crate::cmd::runner::with_runners(&vms, crate::cmd::runner::report(ctx).await.as_ref())
        } else {
            render::vm_table(&vms)
        }),
        Response::Vm(vm) => out(&if ctx.json {
            render::json(&vm)
        } else {
            render::vm_detail(&vm)
        }),
        Response::Done { message } => {
            if ctx.json {
                out(&render::json(&Response::Done { message }));
            } else {
                eprintln!("{message}");
            }
        }
        other => return Err(unexpected(&other)),
    }
    Ok(Exit::Ok)
}
