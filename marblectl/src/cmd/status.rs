//! `status` and `events`.

use marble_proto::{Reply, Request, Response};

use crate::cli::EventsArgs;
use crate::client::{Client, ClientError};
use crate::cmd::{Context, out};
use crate::exit::Exit;
use crate::render;

/// `marblectl status`.
pub async fn status(ctx: &Context) -> Result<Exit, ClientError> {
    match ctx.call(Request::Status).await? {
        Response::Status(report) => {
            let poller = demand_poller(ctx).await;
            out(&if ctx.json {
                // The poller joins the report's object (`null`: not shared, or an older daemon).
                let mut value = serde_json::to_value(&report).unwrap_or_default();
                if let Some(map) = value.as_object_mut() {
                    map.insert(
                        "demand_poller".into(),
                        serde_json::to_value(&poller).unwrap_or_default(),
                    );
                }
                render::json(&value)
            } else {
                render::status(&report)
            });
            if !ctx.json {
                if let Some(p) = &poller {
                    out(&render::demand_poller(p, render::now_ms()));
                }
                ci_side(ctx).await;
                if let Some(r) = crate::cmd::runner::report(ctx).await {
                    let text = crate::cmd::runner::status_lines(&r, crate::render::now_ms());
                    if !text.is_empty() {
                        out(&text);
                    }
                }
                running_transfers(ctx).await;
            }
            Ok(Exit::Ok)
        }
        other => Err(unexpected(&other)),
    }
}

/// The CI side under the status (protocol 1.4; an older daemon does not say): whether each
/// CI system can be used and why not, and the offline runners not counted as free.
async fn ci_side(ctx: &Context) {
    let Ok(mut client) = Client::connect(&ctx.socket).await else {
        return;
    };
    if client.welcome().minor < Request::CiStatus.since_minor() {
        return;
    }
    if let Ok(Response::Ci(report)) = client.call(Request::CiStatus, |_| {}).await {
        let text = render::ci(&report);
        if !text.is_empty() {
            out(&text);
        }
    }
}

/// The fleet's demand poller (protocol 1.7; an older daemon does not say; None also without
/// `[demand] shared`).
async fn demand_poller(ctx: &Context) -> Option<marble_proto::DemandPollerReport> {
    let mut client = Client::connect(&ctx.socket).await.ok()?;
    if client.welcome().minor < Request::DemandPoller.since_minor() {
        return None;
    }
    match client.call(Request::DemandPoller, |_| {}).await {
        Ok(Response::DemandPoller(p)) => p,
        _ => None,
    }
}

/// Running image transfers under the status (protocol 1.1; an older daemon has none).
async fn running_transfers(ctx: &Context) {
    let Ok(mut client) = Client::connect(&ctx.socket).await else {
        return;
    };
    if client.welcome().minor < Request::Transfers.since_minor() {
        return;
    }
    if let Ok(Response::Transfers(list)) = client.call(Request::Transfers, |_| {}).await {
        let running: Vec<_> = list.into_iter().filter(|t| t.finished_ms == 0).collect();
        if !running.is_empty() {
            out(&format!(
                "image transfers:\n{}",
                crate::cmd::image::transfer_table(&running)
            ));
        }
    }
}

/// `marblectl events [--follow]`.
pub async fn events(ctx: &Context, args: &EventsArgs) -> Result<Exit, ClientError> {
    if !args.follow {
        let Response::Status(report) = ctx.call(Request::Status).await? else {
            return Err(ClientError::Protocol("unexpected answer to status".into()));
        };
        // `--json`: NDJSON, one event object per line, as `--follow --json` prints them.
        for d in report.decisions {
            let event = marble_proto::Event::Decision(d);
            out(&if ctx.json {
                serde_json::to_string(&event).unwrap_or_default()
            } else {
                render::event(&event)
            });
        }
        return Ok(Exit::Ok);
    }
    let mut client = Client::connect(&ctx.socket).await?;
    client.send(Request::WatchEvents).await?;
    loop {
        match client.next_reply().await? {
            Reply::Event(event) => {
                out(&if ctx.json {
                    serde_json::to_string(&event).unwrap_or_default()
                } else {
                    render::event(&event)
                });
            }
            Reply::EndOfStream => return Ok(Exit::Ok),
            Reply::Err(err) => return Err(ClientError::Daemon(err)),
            Reply::Ok(other) => return Err(unexpected(&other)),
        }
    }
}

/// A response of the wrong type.
pub fn unexpected(resp: &Response) -> ClientError {
    ClientError::Protocol(format!("unexpected answer: {resp:?}"))
}
