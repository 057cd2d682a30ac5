//! `runner install|upgrade` (protocol 1.6), and the runner lines of `status` and the
//! `runner` object `vm list --json` adds to each ROOT VM.

use std::fmt::Write as _;

use marble_proto::{ErrorKind, Request, Response, RunnerInstallResult, RunnerReport, Team};

use crate::cli::{RunnerCommand, RunnerUpgradeArgs};
use crate::client::{Client, ClientError};
use crate::cmd::status::unexpected;
use crate::cmd::{Context, out, print_run_event};
use crate::exit::Exit;
use crate::render;

/// Run a `runner` subcommand.
pub async fn run(ctx: &Context, cmd: RunnerCommand) -> Result<Exit, ClientError> {
    match cmd {
        RunnerCommand::Install(a) => install(ctx, a.vm, false).await.map(|_| Exit::Ok),
        RunnerCommand::Upgrade(RunnerUpgradeArgs { vm: Some(vm), .. }) => {
            install(ctx, vm, true).await.map(|_| Exit::Ok)
        }
        RunnerCommand::Upgrade(RunnerUpgradeArgs { vm: None, .. }) => upgrade_all(ctx).await,
    }
}

/// One install or upgrade; progress (steps) on stderr, the summary on stdout.
async fn install(
    ctx: &Context,
    vm: String,
    upgrade: bool,
) -> Result<RunnerInstallResult, ClientError> {
    let mut client = Client::connect(&ctx.socket).await?;
    let resp = client
        .call(Request::RunnerInstall { vm, upgrade }, print_run_event)
        .await?;
    match resp {
        Response::RunnerInstalled(r) => {
            out(&if ctx.json {
                render::json(&r)
            } else {
                summary(&r)
            });
            Ok(r)
        }
        other => Err(unexpected(&other)),
    }
}

fn summary(r: &RunnerInstallResult) -> String {
    let what = if r.changed {
        "installed"
    } else {
        "already in place, nothing changed"
    };
    let from = if r.cached { "host cache" } else { "downloaded" };
    let mut s = format!(
        "runner {} in {}: {what} (package: {from})\n",
        r.version, r.run.vm
    );
    if r.run.started_vm {
        s.push_str("  the VM was started for this run and is left running\n");
    }
    s
}

/// `runner upgrade --all`: every ROOT VM, one at a time (the daemon reads the release list
/// and leaves alone a VM already at the target, without starting a stopped one). A busy VM
/// is skipped (exit 75 at the end); any other failure is reported and the rest go on (a
/// failure other than busy decides the exit code).
async fn upgrade_all(ctx: &Context) -> Result<Exit, ClientError> {
    let vms = match ctx.call(Request::ListVms).await? {
        Response::Vms(v) => v,
        other => return Err(unexpected(&other)),
    };
    let mut exit = Exit::Ok;
    for vm in vms.iter().filter(|v| v.team == Team::Root) {
        match install(ctx, vm.name.clone(), true).await {
            Ok(_) => {}
            Err(ClientError::Daemon(e)) => {
                eprintln!("{}: {}", vm.name, e.message);
                let code = crate::exit::for_kind(e.kind);
                if exit == Exit::Ok || (code != Exit::TempFail && e.kind != ErrorKind::Busy) {
                    exit = code;
                }
            }
            Err(other) => return Err(other),
        }
    }
    Ok(exit)
}

/// The runner lines under `status` (daemon 1.6 or later; nothing without `[github]`).
pub fn status_lines(report: &RunnerReport, now_ms: u64) -> String {
    let mut s = String::new();
    if report.latest.is_none() && report.vms.is_empty() && report.checked_ms == 0 {
        return s;
    }
    let _ = writeln!(
        s,
        "runners: latest actions/runner {} (checked {}){}",
        report.latest.as_deref().unwrap_or("unknown"),
        render::when(report.checked_ms),
        if report.check_error.is_empty() {
            String::new()
        } else {
            format!("; last check failed: {}", report.check_error)
        }
    );
    for vm in &report.vms {
        let version = vm.version.as_deref().unwrap_or("none");
        let mut line = format!("  {}: {version} ({})", vm.vm, vm.level);
        if vm.deadline_ms != 0 {
            let left_days = (vm.deadline_ms as i128 - now_ms as i128) / 86_400_000;
            let _ = write!(
                line,
                ", {} days behind, deadline {}",
                vm.days_behind,
                if left_days >= 0 {
                    format!("in {left_days} days")
                } else {
                    format!("passed {} days ago: GitHub sends it no jobs", -left_days)
                }
            );
        }
        if matches!(vm.level.as_str(), "warn" | "overdue" | "unsupported") {
            line.push_str("  <- marblectl runner upgrade");
        }
        let _ = writeln!(s, "{line}");
    }
    s
}

/// `vm list --json` with each ROOT VM's runner (`runner`: version, latest, days behind,
/// deadline, level) when the daemon knows it.
pub fn with_runners(vms: &[marble_proto::VmInfo], report: Option<&RunnerReport>) -> String {
    let Some(report) = report else {
        return render::json(&vms);
    };
    let mut value = serde_json::to_value(vms).unwrap_or_default();
    if let Some(list) = value.as_array_mut() {
        for entry in list {
            let name = entry.get("name").and_then(|n| n.as_str()).unwrap_or("");
            if let Some(r) = report.vms.iter().find(|r| r.vm == name)
                && let Some(obj) = entry.as_object_mut()
            {
                obj.insert(
                    "runner".into(),
                    serde_json::json!({
                        "version": r.version,
                        "latest": report.latest,
                        "days_behind": r.days_behind,
                        "deadline_ms": r.deadline_ms,
                        "level": r.level,
                        "read_ms": r.read_ms,
                    }),
                );
            }
        }
    }
    render::json(&value)
}

/// The runner report, when the daemon is new enough (1.6) to give it.
pub async fn report(ctx: &Context) -> Option<RunnerReport> {
    let mut client = Client::connect(&ctx.socket).await.ok()?;
    if client.welcome().minor < Request::RunnerStatus.since_minor() {
        return None;
    }
    match client.call(Request::RunnerStatus, |_| {}).await {
        Ok(Response::Runners(r)) => Some(r),
        _ => None,
    }
}
