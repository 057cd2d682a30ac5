//! `fleet ls` and `metrics`: read-only views the daemon assembles (the fleet from the
//! heartbeat objects in the image bucket, which only the daemon can reach; the metrics in
//! Prometheus text format, the same text as its node_exporter textfile).

use std::fmt::Write as _;
use std::time::Duration;

use marble_proto::{FleetHost, FleetReport, Request, Response};

use crate::cli::FleetCommand;
use crate::client::ClientError;
use crate::cmd::status::unexpected;
use crate::cmd::{Context, out};
use crate::exit::Exit;

/// A heartbeat older than this many of its writer's intervals is shown as stale (the same
/// rule as marbled's `fleet::STALE_INTERVALS`).
pub const STALE_INTERVALS: u64 = 3;

/// `marblectl fleet …`.
pub async fn run(ctx: &Context, cmd: FleetCommand) -> Result<Exit, ClientError> {
    match cmd {
        FleetCommand::Ls => ls(ctx).await,
    }
}

async fn ls(ctx: &Context) -> Result<Exit, ClientError> {
    match ctx.call(Request::FleetList).await? {
        Response::Fleet(report) => {
            out(&if ctx.json {
                fleet_json(&report)
            } else {
                fleet_table(&report)
            });
            Ok(Exit::Ok)
        }
        other => Err(unexpected(&other)),
    }
}

/// `marblectl metrics`: the exposition text as the daemon rendered it.
pub async fn metrics(ctx: &Context) -> Result<Exit, ClientError> {
    match ctx.call(Request::Metrics).await? {
        Response::Metrics { text } => {
            out(&text);
            Ok(Exit::Ok)
        }
        other => Err(unexpected(&other)),
    }
}

fn age_ms(host: &FleetHost, read_ms: u64) -> u64 {
    read_ms.saturating_sub(host.written_ms)
}

/// Stale at `read_ms`.
pub fn is_stale(host: &FleetHost, read_ms: u64) -> bool {
    age_ms(host, read_ms) > host.interval_ms.max(1000).saturating_mul(STALE_INTERVALS)
}

/// JSON: the report, each host with `age_ms` and `stale` added.
pub fn fleet_json(report: &FleetReport) -> String {
    let hosts: Vec<serde_json::Value> = report
        .hosts
        .iter()
        .map(|h| {
            let mut v = serde_json::to_value(h).unwrap_or_default();
            if let Some(obj) = v.as_object_mut() {
                obj.insert("age_ms".into(), age_ms(h, report.read_ms).into());
                obj.insert("stale".into(), is_stale(h, report.read_ms).into());
            }
            v
        })
        .collect();
    crate::render::json(&serde_json::json!({
        "hosts": hosts,
        "unreadable": report.unreadable,
        "read_ms": report.read_ms,
    }))
}

fn gib(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let g = bytes as f64 / (1u64 << 30) as f64;
    format!("{g:.0} GiB")
}

/// The human table: one line per host, then its VMs.
pub fn fleet_table(report: &FleetReport) -> String {
    if report.hosts.is_empty() && report.unreadable.is_empty() {
        return "no heartbeats in the bucket (no host has a [fleet] section yet)\n".into();
    }
    let host_w = report
        .hosts
        .iter()
        .map(|h| h.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut text = format!(
        "{:<host_w$}  {:<8}  {:<8}  {:<16}  {:<9}  RUNNING\n",
        "HOST", "VERSION", "POLICY", "SEEN", "FREE DISK"
    );
    for h in &report.hosts {
        let age = Duration::from_secs(age_ms(h, report.read_ms) / 1000);
        let seen = if is_stale(h, report.read_ms) {
            format!("STALE {} ago", humantime::format_duration(age))
        } else {
            format!("{} ago", humantime::format_duration(age))
        };
        let running = if h.running.is_empty() {
            "-".to_owned()
        } else {
            h.running.join(", ")
        };
        let _ = writeln!(
            text,
            "{:<host_w$}  {:<8}  {:<8}  {:<16}  {:<9}  {running}",
            h.host,
            h.daemon_version,
            h.policy,
            seen,
            h.free_disk_bytes.map_or_else(|| "?".to_owned(), gib),
        );
        for vm in &h.vms {
            let _ = writeln!(
                text,
                "{:<host_w$}    {:<10} {:<6} {}",
                "",
                vm.power.as_word(),
                vm.team.as_str(),
                vm.name
            );
        }
        if let Some(d) = &h.last_decision {
            let _ = writeln!(text, "{:<host_w$}    last decision: {}", "", d.text);
        }
    }
    for bad in &report.unreadable {
        let _ = writeln!(text, "unreadable heartbeat: {bad}");
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use marble_proto::{FleetVm, PowerState, Team};

    fn host(name: &str, written_ms: u64) -> FleetHost {
        FleetHost {
            host: name.into(),
            daemon_version: "0.1.0".into(),
            policy: "cycle".into(),
            written_ms,
            interval_ms: 60_000,
            running: vec![],
            vms: vec![FleetVm {
                name: format!("{name}-ROOT-VM-macOS-14"),
                team: Team::Root,
                power: PowerState::Stopped,
            }],
            last_decision: None,
            free_disk_bytes: Some(3 << 30),
        }
    }

    #[test]
    fn stale_hosts_are_marked_by_age() {
        let report = FleetReport {
            hosts: vec![host("a", 1_000_000), host("b", 1_000_000 - 200_000)],
            unreadable: vec![],
            read_ms: 1_000_000,
        };
        let table = fleet_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[1].starts_with("a ") && !lines[1].contains("STALE"),
            "{table}"
        );
        assert!(table.contains("STALE 3m 20s ago"), "{table}");
        let json: serde_json::Value = serde_json::from_str(&fleet_json(&report)).unwrap();
        assert_eq!(json["hosts"][0]["stale"], false);
        assert_eq!(json["hosts"][1]["stale"], true);
        assert_eq!(json["hosts"][1]["age_ms"], 200_000);
    }

    #[test]
    fn host_setup_refuses_only_a_name_a_live_other_host_reports() {
        use crate::cmd::host::name_conflict;
        let report = FleetReport {
            hosts: vec![host("macphsft01", 1_000_000), host("macphsft02", 800_000)],
            unreadable: vec![],
            read_ms: 1_000_000,
        };
        assert!(name_conflict(&report, "newmac", "macphsft01").is_some());
        assert!(
            name_conflict(&report, "newmac", "MACPHSFT01").is_some(),
            "case-insensitive"
        );
        assert!(
            name_conflict(&report, "macphsft01", "macphsft01").is_none(),
            "our own name"
        );
        assert!(
            name_conflict(&report, "newmac", "macphsft02").is_none(),
            "stale host"
        );
        assert!(name_conflict(&report, "newmac", "macphsft03").is_none());
    }
}
