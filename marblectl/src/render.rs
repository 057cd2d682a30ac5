//! Rendering for humans (tables) and machines (JSON). No transport here.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use marble_proto::{Attribution, BusyState, Event, StatusReport, VmInfo};
use serde::Serialize;

/// Pretty JSON of any wire value.
pub fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
}

/// `2026-11-28T18:00:00Z (3m ago)`.
pub fn when(ms: u64) -> String {
    if ms == 0 {
        return "never".into();
    }
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    let stamp = humantime::format_rfc3339_seconds(t).to_string();
    match SystemTime::now().duration_since(t) {
        Ok(ago) => {
            let ago = Duration::from_secs(ago.as_secs());
            format!("{stamp} ({} ago)", humantime::format_duration(ago))
        }
        Err(_) => stamp,
    }
}

/// One-word-ish busy summary.
pub fn busy(b: &BusyState) -> String {
    match b {
        BusyState::NotProbed => "-".into(),
        BusyState::Idle { .. } => "idle".into(),
        BusyState::Busy { reason, since_ms } => format!("busy: {reason} since {}", when(*since_ms)),
        BusyState::Unknown { reason, .. } => format!("unknown (treated as busy): {reason}"),
    }
}

fn attribution(a: &Attribution) -> String {
    let reason = if a.reason.is_empty() {
        "no reason given"
    } else {
        &a.reason
    };
    format!("by {} since {}: {reason}", a.by, when(a.since_ms))
}

/// The `vm list` table.
pub fn vm_table(vms: &[VmInfo]) -> String {
    let name_w = vms.iter().map(|v| v.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<name_w$}  {:<10}  {:<10}  {:<8}  BUSY\n",
        "NAME", "TEAM", "STATE", "LOCK"
    );
    for vm in vms {
        let lock = if vm.lock.is_some() { "locked" } else { "-" };
        let op = vm
            .operation
            .as_deref()
            .map(|o| format!(" [{o}]"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<name_w$}  {:<10}  {:<10}  {:<8}  {}{op}",
            vm.name,
            vm.team.as_str(),
            vm.power.as_word(),
            lock,
            busy(&vm.busy)
        );
    }
    out
}

/// The `vm show` block.
pub fn vm_detail(vm: &VmInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "name:       {}", vm.name);
    let _ = writeln!(out, "uuid:       {}", vm.uuid);
    let _ = writeln!(out, "team:       {}", vm.team.as_str());
    let _ = writeln!(out, "state:      {}", vm.power.as_word());
    let _ = writeln!(out, "busy:       {}", busy(&vm.busy));
    let lock = vm.lock.as_ref().map_or_else(|| "-".to_owned(), attribution);
    let _ = writeln!(out, "lock:       {lock}");
    let _ = writeln!(
        out,
        "operation:  {}",
        vm.operation.as_deref().unwrap_or("-")
    );
    if !vm.note.is_empty() {
        let _ = writeln!(out, "note:       {}", vm.note);
    }
    out
}

/// The `status` report.
pub fn status(report: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "host:       {} (marbled {})",
        report.host, report.daemon_version
    );
    let _ = writeln!(
        out,
        "policy:     {} (capacity {})",
        report.policy, report.capacity
    );
    let paused = report
        .paused
        .as_ref()
        .map_or_else(|| "no".to_owned(), attribution);
    let _ = writeln!(out, "paused:     {paused}");
    let draining = report
        .draining
        .as_ref()
        .map_or_else(|| "no".to_owned(), attribution);
    let _ = writeln!(out, "draining:   {draining}");
    let running: Vec<&VmInfo> = report
        .vms
        .iter()
        .filter(|v| v.power.occupies_host())
        .collect();
    if running.is_empty() {
        let _ = writeln!(out, "running:    none");
    }
    for vm in running {
        let why = if vm.note.is_empty() {
            String::new()
        } else {
            format!(" — {}", vm.note)
        };
        let _ = writeln!(
            out,
            "running:    {} ({}, {}; {}){why}",
            vm.name,
            vm.team.as_str(),
            vm.power.as_word(),
            busy(&vm.busy)
        );
    }
    let _ = writeln!(out, "inventory:  {}", when(report.inventory_ms));
    if !report.pending.is_empty() {
        let _ = writeln!(out, "\npending slot requests:");
        for p in &report.pending {
            let _ = writeln!(out, "  {} by {} since {}", p.vm, p.by, when(p.since_ms));
        }
    }
    let locks: Vec<&VmInfo> = report.vms.iter().filter(|v| v.lock.is_some()).collect();
    if !locks.is_empty() {
        let _ = writeln!(out, "\nlocks:");
        for vm in locks {
            if let Some(lock) = &vm.lock {
                let _ = writeln!(out, "  {} {}", vm.name, attribution(lock));
            }
        }
    }
    let _ = writeln!(out, "\nVMs:");
    out.push_str(&vm_table(&report.vms));
    if !report.decisions.is_empty() {
        let _ = writeln!(out, "\nrecent decisions (newest last):");
        for d in &report.decisions {
            let _ = writeln!(out, "  {}  {}", when(d.at_ms), d.text);
        }
    }
    out
}

/// One event as a human line.
pub fn event(e: &Event) -> String {
    match e {
        Event::VmPower {
            at_ms,
            vm,
            from,
            to,
        } => {
            format!(
                "{}  {vm}: {} -> {}",
                when(*at_ms),
                from.as_word(),
                to.as_word()
            )
        }
        Event::VmBusy { at_ms, vm, busy: b } => format!("{}  {vm}: {}", when(*at_ms), busy(b)),
        Event::Decision(d) => format!("{}  decision: {}", when(d.at_ms), d.text),
        Event::OperationStarted {
            at_ms,
            vm,
            operation,
        } => {
            format!("{}  {vm}: {operation} started", when(*at_ms))
        }
        Event::OperationFinished {
            at_ms,
            vm,
            operation,
            error,
        } => match error {
            None => format!("{}  {vm}: {operation} done", when(*at_ms)),
            Some(err) => format!("{}  {vm}: {operation} failed: {err}", when(*at_ms)),
        },
        Event::Progress {
            done,
            total,
            message,
        } if *total > 0 => {
            format!("{message} ({done}/{total})")
        }
        Event::Progress { message, .. } => message.clone(),
        Event::Lagged { dropped } => format!("(fell behind; {dropped} event(s) dropped)"),
    }
}
