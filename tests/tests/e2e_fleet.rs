//! Fleet inventory and metrics end to end (issue 6, "Must show"): two real daemons on two
//! simulated hosts share one real S3 server (s3s-fs); each writes its heartbeat and
//! `marblectl fleet ls --json` against either daemon lists both hosts with their VMs; a
//! stopped daemon's entry turns stale. `marblectl metrics` and the node_exporter textfile
//! parse as Prometheus text exposition under a strict parser written here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use marble_tests::harness::{
    DaemonProcess, marblectl, short_tempdir, test_config, wait_until_blocking,
};
use marble_tests::prlsim::SimHost;
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
        c.fleet = Some(marbled::fleet::FleetSection {
            interval: Duration::from_secs(1),
            ..marbled::fleet::FleetSection::default()
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
                "\"Stopped\"".to_owned()
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
    config.metrics = Some(marbled::metrics::MetricsSection {
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

#[test]
fn the_strict_parser_rejects_what_prometheus_rejects() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"\\\\\\n\"} 3\n";
    assert!(
        parse_exposition(good).is_ok(),
        "{:?}",
        parse_exposition(good)
    );
    for bad in [
        "a_total 1\n",                                          // no TYPE
        "# TYPE a counter\n# TYPE a counter\na 1\n",            // TYPE twice
        "# TYPE a gauge\na 1\n# TYPE b gauge\na 2\n",           // family split
        "# TYPE 1a gauge\n1a 1\n",                              // bad name
        "# TYPE a gauge\na{x=\"\\q\"} 1\n",                     // bad escape
        "# TYPE a gauge\na{x=\"1\"} one\n",                     // bad value
        "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n",               // repeated label
        "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",         // duplicate series
        "# TYPE a gauge\na 1",                                  // no final newline
        "# TYPE a gauge\na{x=\"1\" 1\n",                        // unclosed braces
        "# TYPE a counter\na -1\n",                             // negative counter
        "# TYPE a gauge\n# HELP a late\na 1\n# HELP a again\n", // HELP twice
        "# TYPE a gauge\na 1\n# HELP a after samples\n",        // HELP after samples
        "# TYPE a wibble\na 1\n",                               // unknown type
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted: {bad:?}");
    }
}

/// Strict Prometheus text exposition (0.0.4) parser: returns family name → type.
///
/// Lines are `# HELP name text`, `# TYPE name type` or `name{label="value",...} value
/// [timestamp]`; names match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`;
/// label values escape only `\\`, `\"` and `\n`; each family is TYPE'd once, before its
/// samples, and its samples are contiguous; HELP at most once and before the samples; no
/// series twice; counters non-negative; summary samples are `name`, `name_sum`, `name_count`.
fn parse_exposition(text: &str) -> Result<BTreeMap<String, String>, String> {
    if !text.ends_with('\n') {
        return Err("text must end with a newline".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut with_samples: BTreeSet<String> = BTreeSet::new();
    let mut closed: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series: BTreeSet<String> = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        if line.is_empty() {
            return Err(at("empty line".into()));
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let (kw, rest) = rest
                .split_once(' ')
                .ok_or_else(|| at("bad comment".into()))?;
            let (name, arg) = rest
                .split_once(' ')
                .ok_or_else(|| at("missing argument".into()))?;
            if !metric_name(name) {
                return Err(at(format!("bad metric name {name:?}")));
            }
            if with_samples.contains(name) {
                return Err(at(format!("{kw} after the samples of {name}")));
            }
            match kw {
                "TYPE" => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                        return Err(at(format!("unknown type {arg:?}")));
                    }
                    if types.insert(name.to_owned(), arg.to_owned()).is_some() {
                        return Err(at(format!("{name} TYPE'd twice")));
                    }
                }
                "HELP" => {
                    if !helps.insert(name.to_owned()) {
                        return Err(at(format!("{name} HELP'd twice")));
                    }
                    let mut chars = arg.chars();
                    while let Some(c) = chars.next() {
                        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                            return Err(at("bad escape in HELP".into()));
                        }
                    }
                }
                _ => return Err(at(format!("unknown comment keyword {kw:?}"))),
            }
            if let Some(prev) = current.replace(name.to_owned())
                && prev != name
            {
                closed.insert(prev);
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(at("comment without a space".into()));
        }
        let (name, labels, rest) = sample(line).map_err(at)?;
        let family = types
            .iter()
            .find(|(f, kind)| {
                name == **f
                    || (kind.as_str() == "summary"
                        && (name == format!("{f}_sum") || name == format!("{f}_count")))
                    || (kind.as_str() == "histogram"
                        && [
                            format!("{f}_sum"),
                            format!("{f}_count"),
                            format!("{f}_bucket"),
                        ]
                        .contains(&name))
            })
            .map(|(f, k)| (f.clone(), k.clone()))
            .ok_or_else(|| at(format!("sample {name} before its TYPE")))?;
        if closed.contains(&family.0) || current.as_deref() != Some(family.0.as_str()) {
            return Err(at(format!("samples of {} are not contiguous", family.0)));
        }
        with_samples.insert(family.0.clone());
        let mut parts = rest.split(' ');
        let value = parts.next().ok_or_else(|| at("no value".into()))?;
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| at(format!("bad value {v:?}")))?,
        };
        if let Some(ts) = parts.next() {
            ts.parse::<i64>()
                .map_err(|_| at(format!("bad timestamp {ts:?}")))?;
        }
        if parts.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        if family.1 == "counter" && (v < 0.0 || v.is_nan()) {
            return Err(at("negative counter".into()));
        }
        let key = format!("{name}{labels:?}");
        if !series.insert(key) {
            return Err(at("duplicate series".into()));
        }
    }
    Ok(types)
}

fn metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `name{labels} rest` → (name, sorted labels, rest after the single space).
fn sample(line: &str) -> Result<(String, BTreeMap<String, String>, &str), String> {
    let end = line.find(['{', ' ']).ok_or_else(|| "no value".to_owned())?;
    let name = &line[..end];
    if !metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            // label name up to '='
            let start = chars.peek().map(|(i, _)| *i).ok_or("unclosed braces")?;
            if body[start..].starts_with('}') {
                chars.next();
                break;
            }
            let eq = body[start..].find('=').ok_or("label without '='")? + start;
            let lname = &body[start..eq];
            if !label_name(lname) {
                return Err(format!("bad label name {lname:?}"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    None => return Err("unclosed label value".into()),
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape \\{other:?}")),
                    },
                    Some('\n') => return Err("raw newline in label value".into()),
                    Some(c) => value.push(c),
                }
            }
            if labels.insert(lname.to_owned(), value).is_some() {
                return Err(format!("label {lname} repeated"));
            }
            match chars.next().map(|(_, c)| c) {
                Some(',') => {}
                Some('}') => break,
                _ => return Err("expected ',' or '}' after a label".into()),
            }
        }
        let consumed = chars.peek().map_or(body.len(), |(i, _)| *i);
        rest = &body[consumed..];
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| "expected one space before the value".to_owned())?;
    if rest.starts_with(' ') {
        return Err("more than one space before the value".into());
    }
    Ok((name.to_owned(), labels, rest))
}
