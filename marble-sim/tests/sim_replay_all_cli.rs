//! `marble-sim replay-all --set` through the binary: the settings reach the table's header
//! and the JSON rows, and a bad setting exits 64 naming its key before anything is replayed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// A directory holding one small committed trace (4 h on one host), for this test alone.
fn traces_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("replay-all-cli-{test}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("cycle-mixed.toml"),
        include_str!("../../docs/traces/cycle-mixed.toml"),
    )
    .unwrap();
    dir
}

fn replay_all(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_marble-sim"))
        .arg("replay-all")
        .arg(dir)
        .args(["--seeds", "0"])
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn settings_head_the_table_and_ride_on_every_json_row() {
    let dir = traces_dir("settings");
    let set = [
        "--set",
        "scheduler.jobs_per_boot=2",
        "--set",
        "scheduler.warm_idle_hosts=true",
    ];
    let out = replay_all(&dir, &set);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.starts_with(
            "Settings over the shipped defaults: scheduler.jobs_per_boot = 2, \
             scheduler.warm_idle_hosts = true\n"
        ),
        "{table}"
    );
    assert!(table.contains("| cycle-mixed |"), "{table}");

    let out = replay_all(&dir, &[&set[..], &["--json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["settings"],
        serde_json::json!([
            "scheduler.jobs_per_boot = 2",
            "scheduler.warm_idle_hosts = true"
        ])
    );

    // Without settings: the shipped defaults, no header, an empty list.
    let out = replay_all(&dir, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["settings"], serde_json::json!([]));
}

#[test]
fn a_bad_setting_exits_64_naming_its_key() {
    let dir = traces_dir("bad");
    for (arg, key) in [
        ("scheduler.jobs_per_bot=2", "scheduler.jobs_per_bot"),
        ("scheduler.jobs_per_boot=two", "scheduler.jobs_per_boot"),
        ("scheduler.warm_linger=soon", "scheduler.warm_linger"),
        ("sim.duration=1h", "sim.duration"),
        ("scheduler.policy=cycle", "scheduler.policy"),
        ("jobs_per_boot", "KEY=VALUE"),
    ] {
        let out = replay_all(&dir, &["--set", arg]);
        assert_eq!(out.status.code(), Some(64), "{arg}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.starts_with("marble-sim replay-all: --set"),
            "{arg}: {err}"
        );
        assert!(err.contains(key), "{arg}: {err}");
        assert!(out.stdout.is_empty(), "{arg}: nothing replayed");
    }
}
