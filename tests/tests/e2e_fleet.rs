//! Fleet inventory and metrics end to end (issue 6, "Must show"): two real daemons on two
//! simulated hosts share one real S3 server (s3s-fs); each writes its heartbeat and
//! `marblectl fleet ls --json` against either daemon lists both hosts with their VMs; a
//! stopped daemon's entry turns stale. `marblectl metrics` and the node_exporter textfile
//! parse as Prometheus text exposition under a strict parser
//! (`marble_tests::prometheus`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use marble_tests::harness::{
    DaemonProcess, marblectl, short_tempdir, test_config, wait_until_blocking,
};
use marble_tests::prlsim::SimHost;
use marble_tests::prometheus::parse_exposition;
use marble_tests::s3::LocalS3;
use serde_json::Value;

fn fleet_json(socket: &Path) -> Option<Value> {
    let (code, out, _) = marblectl(socket, &["--json", "fleet", "ls"]);
    if code != 0 {
        return None;
    }
    serde_json::from_str(&out).ok()
}

fn host_vms(fleet: &Value, host: &str) -> Option<Vec<(String, String)>> {
    let h = fleet["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["host"] == host)?;
    Some(
        h["vms"]
            .as_array()?
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap_or_default().to_owned(),
                    serde_json::to_string(&v["power"]).unwrap_or_default(),
                )
            })
            .collect(),
    )
}

#[test]
fn two_daemons_sharing_a_bucket_list_each_other() {
    let Some(s3) = LocalS3::start() else { return };
    let dir_a = short_tempdir();
    let dir_b = short_tempdir();
    let sim_a = SimHost::create(dir_a.path().join("sim")).expect("sim a");
    let sim_b = SimHost::create(dir_b.path().join("sim")).expect("sim b");
    sim_a.add_vm("macphsft-a-ROOT-VM-macOS-14").expect("vm");
    sim_a.add_vm("macphsft-a-SPI-VM-macOS-1").expect("vm");
    sim_b
        .add_running_vm("macphsft-b-ROOT-VM-macOS-15")
        .expect("vm");

    let config = |dir: &Path, sim: &SimHost, host: &str| {
        let mut c = test_config(dir, sim.dir());
        c.daemon.host_name = host.into();
        c.images = s3.config();
        c.fleet = Some(marbled::config::FleetSection {
            interval: Duration::from_secs(1),
            ..marbled::config::FleetSection::default()
        });
        c.scheduler.inventory_interval = Duration::from_secs(1);
        c
    };
    let a = DaemonProcess::spawn(dir_a.path(), &config(dir_a.path(), &sim_a, "macphsft-a"));
    let mut b = DaemonProcess::spawn(dir_b.path(), &config(dir_b.path(), &sim_b, "macphsft-b"));

    // Both hosts, each with its VMs (heartbeats written after the first inventory).
    for socket in [&a.socket, &b.socket] {
        let mut last = None;
        let both = wait_until_blocking(Duration::from_secs(20), || {
            last = fleet_json(socket);
            last.as_ref().is_some_and(|f| {
                host_vms(f, "macphsft-a").is_some_and(|v| v.len() == 2)
                    && host_vms(f, "macphsft-b").is_some_and(|v| v.len() == 1)
            })
        });
        assert!(
            both,
            "fleet ls via {} never showed both hosts: {last:#?}\nlog a:\n{}\nlog b:\n{}",
            socket.display(),
            a.log_text(),
            b.log_text()
        );
        let fleet = last.unwrap();
        let vms_a = host_vms(&fleet, "macphsft-a").unwrap();
        assert!(
            vms_a.contains(&(
                "macphsft-a-ROOT-VM-macOS-14".to_owned(),
                "\"stopped\"".to_owned()
            )),
            "{vms_a:?}"
        );
        let hb = fleet["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == "macphsft-b")
            .unwrap();
        assert_eq!(hb["running"][0], "macphsft-b-ROOT-VM-macOS-15");
        assert_eq!(hb["stale"], false);
        assert_eq!(hb["policy"], "manual");
        assert!(
            hb["free_disk_bytes"].as_u64().is_some_and(|n| n > 0),
            "{hb}"
        );
        assert_eq!(hb["interval_ms"], 1000);
    }
    // The object itself is the documented JSON.
    let object = std::fs::read_to_string(s3.object_path("fleet/macphsft-a.json")).expect("object");
    let doc: Value = serde_json::from_str(&object).expect("heartbeat JSON");
    assert_eq!(doc["format"], 1);
    assert_eq!(doc["vms"][0]["power"], "stopped");

    // The human table names both hosts.
    let (code, table, err) = marblectl(&a.socket, &["fleet", "ls"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("macphsft-a") && table.contains("macphsft-b"),
        "{table}"
    );

    // B stops: its heartbeat ages past three intervals and is shown stale (not removed).
    b.terminate(Duration::from_secs(20)).expect("b exits");
    let mut last = None;
    let stale = wait_until_blocking(Duration::from_secs(20), || {
        last = fleet_json(&a.socket);
        last.as_ref().is_some_and(|f| {
            f["hosts"].as_array().is_some_and(|hs| {
                hs.iter()
                    .any(|h| h["host"] == "macphsft-b" && h["stale"] == true)
                    && hs
                        .iter()
                        .any(|h| h["host"] == "macphsft-a" && h["stale"] == false)
            })
        })
    });
    assert!(stale, "b never turned stale: {last:#?}");
    let (_, table, _) = marblectl(&a.socket, &["fleet", "ls"]);
    assert!(table.contains("STALE"), "{table}");
}

#[test]
fn fleet_ls_without_a_fleet_section_is_refused() {
    let dir = short_tempdir();
    let sim = SimHost::create(dir.path().join("sim")).expect("sim");
    let d = DaemonProcess::spawn(dir.path(), &test_config(dir.path(), sim.dir()));
    let (code, _, err) = marblectl(&d.socket, &["fleet", "ls"]);
    assert_ne!(code, 0);
    assert!(err.contains("[fleet]"), "{err}");
}

#[test]
fn metrics_and_textfile_are_valid_exposition_text() {
    let dir = short_tempdir();
    let sim = SimHost::create(dir.path().join("sim")).expect("sim");
    sim.add_vm("macphsft-test-ROOT-VM-macOS-14").expect("vm");
    // A name needing escapes in a label value is legal for Parallels.
    sim.add_running_vm("macphsft-test-SPI-VM-macOS-1 \"x\\y\"")
        .expect("vm");
    let mut config = test_config(dir.path(), sim.dir());
    let textfile = dir.path().join("marble.prom");
    config.metrics = Some(marbled::config::MetricsSection {
        textfile: Some(textfile.clone()),
        interval: Duration::from_secs(1),
    });
    config.scheduler.inventory_interval = Duration::from_secs(1);
    let d = DaemonProcess::spawn(dir.path(), &config);

    let mut text = String::new();
    let seen = wait_until_blocking(Duration::from_secs(20), || {
        let (code, out, _) = marblectl(&d.socket, &["metrics"]);
        text = out;
        code == 0 && text.contains("marble_vm_power{vm=\"macphsft-test-ROOT-VM-macOS-14\"")
    });
    assert!(
        seen,
        "metrics never listed the VM:\n{text}\n{}",
        d.log_text()
    );
    let families = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n---\n{text}"));
    for (name, kind) in [
        ("marble_boots_total", "counter"),
        ("marble_slot_refusals_total", "counter"),
        ("marble_probes_total", "counter"),
        ("marble_vm_power", "gauge"),
        ("marble_vm_busy", "gauge"),
        ("marble_job_wait_seconds", "gauge"),
        ("marble_slot_grant_latency_seconds", "summary"),
        ("marble_transfer_bytes_total", "counter"),
        ("marble_transfers_total", "counter"),
        ("marble_transfers_running", "gauge"),
    ] {
        assert_eq!(families.get(name).map(String::as_str), Some(kind), "{name}");
    }
    assert!(
        text.contains(
            "marble_vm_power{vm=\"macphsft-test-SPI-VM-macOS-1 \\\"x\\\\y\\\"\",team=\"spi\",power=\"running\"} 1\n"
        ),
        "{text}"
    );
    assert!(text.contains(
        "marble_vm_power{vm=\"macphsft-test-ROOT-VM-macOS-14\",team=\"root\",power=\"stopped\"} 1\n"
    ));

    let mut file = String::new();
    let written = wait_until_blocking(Duration::from_secs(20), || {
        file = std::fs::read_to_string(&textfile).unwrap_or_default();
        file.contains("marble_vm_power{vm=\"macphsft-test-ROOT-VM-macOS-14\"")
    });
    assert!(written, "textfile never written:\n{}", d.log_text());
    parse_exposition(&file).unwrap_or_else(|e| panic!("textfile: {e}\n---\n{file}"));
    // Written atomically: no temp file left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
