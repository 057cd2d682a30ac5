//! Issue 14 §4, the operator's touches, through the real binaries on a simulated host: every
//! decision line names its VM, a grant names the user and uid (not a word that reads like
//! team ROOT), `--json` values are snake_case, and `events --json` is NDJSON with the same
//! objects as `events --follow --json`.

mod e2e_support;

use e2e_support::{SPI1, SimEnv, ctl, vm_list};

#[test]
fn decisions_name_the_vm_and_a_grant_names_user_and_uid() {
    let env = SimEnv::new();
    let daemon = env.spawn();
    let slot = ctl(&daemon.socket, &["request-slot", SPI1]);
    assert_eq!(slot.code, 0, "{slot}");

    // The tests run as root: the grant must not read "granted to root".
    let status = ctl(&daemon.socket, &["status"]);
    assert!(
        status.stdout.contains("granted to user root (uid 0)"),
        "{status}"
    );
    assert!(!status.stdout.contains("granted to root"), "{status}");

    // Text: each decision about a VM names it.
    let events = ctl(&daemon.socket, &["events"]);
    assert_eq!(events.code, 0, "{events}");
    let granted = events
        .stdout
        .lines()
        .find(|l| l.contains("slot granted"))
        .unwrap_or_else(|| panic!("no grant decision: {events}"));
    assert!(granted.contains(SPI1), "{granted}");

    // JSON: one object per line, each `{"decision": {...}}` as in `--follow`.
    let json = ctl(&daemon.socket, &["events", "--json"]);
    assert_eq!(json.code, 0, "{json}");
    let lines: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{json}")))
        .collect();
    assert!(!lines.is_empty(), "{json}");
    assert!(
        lines
            .iter()
            .all(|e| e.get("decision").is_some_and(|d| d["at_ms"].is_u64())),
        "{json}"
    );
    assert!(lines.iter().any(|e| e["decision"]["vm"] == SPI1), "{json}");

    // `vm list --json`: lower-case snake_case values.
    let vms = vm_list(&daemon.socket);
    let spi = vms.iter().find(|v| v["name"] == SPI1).expect("listed");
    assert_eq!(spi["team"], "spi", "{spi}");
    assert_eq!(spi["power"], "running", "{spi}");
}
