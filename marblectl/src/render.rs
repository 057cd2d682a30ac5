//! Rendering for humans (tables) and machines (JSON). No transport here.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use marble_proto::{Attribution, BusyState, CiReport, Event, StatusReport, VmInfo};
use serde::Serialize;

/// Pretty JSON of any wire value.
pub fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
}

/// Now, unix ms (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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

/// `2026-11-28T18:00:00Z (in 40s)`, or `(… ago)` once past.
fn until(ms: u64, now: u64) -> String {
    let stamp = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms));
    let secs = |d: u64| humantime::format_duration(Duration::from_secs(d / 1000));
    if ms >= now {
        format!("{stamp} (in {})", secs(ms - now))
    } else {
        format!("{stamp} ({} ago)", secs(now - ms))
    }
}

/// The fleet's demand poller (`[demand] shared`) and this host's part, one line.
pub fn demand_poller(p: &marble_proto::DemandPollerReport, now: u64) -> String {
    let lease = until(p.lease_expires_ms, now);
    match p.role.as_str() {
        "holder" => format!(
            "demand poller: this host ({}) polls for the fleet, term {}, lease until {lease}\n",
            p.holder, p.term
        ),
        "follower" => format!(
            "demand poller: {} polls for the fleet, this host follows, term {}, lease until {lease}{}\n",
            p.holder,
            p.term,
            if p.lease_expires_ms < now {
                "; expired: this host may take over at its next step"
            } else {
                ""
            }
        ),
        _ => format!(
            "demand poller: the fleet's bucket did not answer at the last step ({}): this host polls for itself\n",
            when(p.stepped_ms)
        ),
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
            let _ = writeln!(out, "  {}  {}", when(d.at_ms), decision(d));
        }
    }
    out
}

/// A decision, led by the VM it is about (`VM: text`), else `decision: text`.
pub fn decision(d: &marble_proto::Decision) -> String {
    match &d.vm {
        Some(vm) => format!("{vm}: {}", d.text),
        None => format!("decision: {}", d.text),
    }
}

/// The `CiStatus` answer under `status` (empty when no CI system is configured and no
/// offline runner was seen).
pub fn ci(report: &CiReport) -> String {
    let mut out = String::new();
    if !report.systems.is_empty() {
        let _ = writeln!(out, "CI:");
    }
    for system in &report.systems {
        if system.available {
            let _ = writeln!(
                out,
                "  {}: available (token loaded {})",
                system.system,
                when(system.since_ms)
            );
        } else {
            let _ = writeln!(
                out,
                "  {}: unavailable since {}, next try {}: {}",
                system.system,
                when(system.since_ms),
                when(system.next_try_ms),
                system.reason
            );
        }
    }
    if !report.offline_runners.is_empty() {
        let _ = writeln!(
            out,
            "offline runners not counted as free capacity ({} seen by the poll of {}):",
            report.offline_total,
            when(report.polled_ms)
        );
        for r in &report.offline_runners {
            let why = match r.kind.as_str() {
                "foreign" => "not registered by MARBLE",
                "marble" => "a MARBLE registration older than a boot (another host's)",
                "this-host" => "this host's; its VM is up but its runner is not connected",
                other => other,
            };
            let busy = if r.busy {
                "; GitHub still shows it busy"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {} (id {}; {}): {why}{busy}",
                r.name,
                r.id,
                r.labels.join(",")
            );
        }
        let more = usize::try_from(report.offline_total)
            .unwrap_or(usize::MAX)
            .saturating_sub(report.offline_runners.len());
        if more > 0 {
            let _ = writeln!(out, "  … and {more} more");
        }
    }
    if out.is_empty() {
        return out;
    }
    // A section of its own, like `VMs:` above it.
    format!("\n{out}")
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
        Event::Decision(d) => format!("{}  {}", when(d.at_ms), decision(d)),
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
        // The client drops keepalives before rendering (client.rs); never shown.
        Event::Keepalive => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use marble_proto::{CiSystem, OfflineRunner};

    #[test]
    fn the_ci_section_says_why_and_lists_what_is_not_counted() {
        let report = CiReport {
            systems: vec![CiSystem {
                system: "github".into(),
                available: false,
                reason: "security exit 36: use token_file".into(),
                since_ms: 1_700_000_000_000,
                next_try_ms: 1_700_000_004_000,
            }],
            offline_runners: vec![OfflineRunner {
                id: 40,
                name: "seed-runner".into(),
                labels: vec!["self-hosted".into(), "mac15".into()],
                busy: true,
                kind: "foreign".into(),
            }],
            offline_total: 3,
            polled_ms: 1_700_000_001_000,
        };
        let text = ci(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "", "a section of its own: {text}");
        assert_eq!(lines[1], "CI:");
        assert!(
            lines[2].starts_with("  github: unavailable since 2023-11-14T22:13:20Z"),
            "{text}"
        );
        assert!(
            lines[2].contains(", next try 2023-11-14T22:13:24Z"),
            "{text}"
        );
        assert!(
            lines[2].ends_with(": security exit 36: use token_file"),
            "{text}"
        );
        assert!(lines[4].contains("seed-runner (id 40; self-hosted,mac15): not registered by MARBLE; GitHub still shows it busy"), "{text}");
        assert_eq!(lines[5], "  … and 2 more");
        let empty = CiReport {
            systems: vec![],
            offline_runners: vec![],
            offline_total: 0,
            polled_ms: 0,
        };
        assert_eq!(ci(&empty), "");
    }
}

#[cfg(test)]
mod json_doc_tests {
    //! The JSON examples of docs/OPERATIONS.md ("JSON output") are real: each parses into
    //! its wire type and renders back to the same value.

    use marble_proto::{Decision, Event, VmInfo};

    fn doc_block(tag: &str) -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/OPERATIONS.md");
        let text = std::fs::read_to_string(path).expect("docs/OPERATIONS.md");
        let start = text
            .find(&format!("```json {tag}\n"))
            .unwrap_or_else(|| panic!("no ```json {tag} block"));
        let body = &text[start..];
        let body = &body[body.find('\n').expect("fence line") + 1..];
        body[..body.find("```").expect("closing fence")].to_owned()
    }

    #[test]
    fn documented_vm_object_is_a_vm_info() {
        let block = doc_block("vm");
        let vm: VmInfo = serde_json::from_str(&block).expect("the documented VM parses");
        let back = serde_json::to_value(&vm).expect("renders");
        let doc: serde_json::Value = serde_json::from_str(&block).expect("json");
        assert_eq!(back, doc, "documented VM object matches the rendering");
    }

    #[test]
    fn documented_event_lines_are_events_one_per_line() {
        for line in doc_block("events").lines() {
            let event: Event = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("documented event {line:?}: {e}"));
            let back = serde_json::to_value(&event).expect("renders");
            let doc: serde_json::Value = serde_json::from_str(line).expect("json");
            assert_eq!(back, doc, "{line}");
        }
    }

    #[test]
    fn a_decision_line_leads_with_its_vm() {
        let d = Decision {
            at_ms: 0,
            vm: Some("macphsft01-SPI-VM-macOS-14".into()),
            text: "slot granted".into(),
        };
        assert_eq!(
            super::decision(&d),
            "macphsft01-SPI-VM-macOS-14: slot granted"
        );
        let e = super::event(&Event::Decision(d));
        assert!(
            e.ends_with("macphsft01-SPI-VM-macOS-14: slot granted"),
            "{e}"
        );
    }
}
