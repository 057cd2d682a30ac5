//! The shipped launchd plist parses and carries the keys the daemon's contract needs.

use std::path::PathBuf;

fn plist() -> plist::Dictionary {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../launchd/ch.cern.sft.marbled.plist");
    plist::Value::from_file(&path)
        .expect("plist parses")
        .into_dictionary()
        .expect("top level is a dict")
}

#[test]
fn daemon_plist_has_the_launchd_contract() {
    let p = plist();
    assert_eq!(
        p.get("Label").and_then(|v| v.as_string()),
        Some("ch.cern.sft.marbled")
    );
    let args: Vec<&str> = p
        .get("ProgramArguments")
        .and_then(|v| v.as_array())
        .expect("ProgramArguments")
        .iter()
        .filter_map(|v| v.as_string())
        .collect();
    assert_eq!(args[0], "/usr/local/bin/marbled");
    let config_at = args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config passed");
    assert!(args[config_at + 1].ends_with("marbled.toml"));
    let keep_alive = p
        .get("KeepAlive")
        .and_then(|v| v.as_dictionary())
        .expect("KeepAlive dict");
    assert_eq!(
        keep_alive
            .get("SuccessfulExit")
            .and_then(|v| v.as_boolean()),
        Some(false)
    );
    let throttle = p
        .get("ThrottleInterval")
        .and_then(|v| v.as_signed_integer())
        .expect("throttle");
    assert!((5..=60).contains(&throttle));
    let exit_timeout = p
        .get("ExitTimeOut")
        .and_then(|v| v.as_signed_integer())
        .expect("ExitTimeOut");
    let budget = marbled::Config::default().daemon.shutdown_budget.as_secs();
    assert!(
        i64::try_from(budget).expect("fits") < exit_timeout,
        "shutdown budget {budget}s must stay below ExitTimeOut {exit_timeout}s"
    );
    assert!(
        p.get("StandardErrorPath")
            .and_then(|v| v.as_string())
            .is_some()
    );
    assert!(
        p.get("UserName").and_then(|v| v.as_string()).is_some(),
        "runs as the VM owner"
    );
}
