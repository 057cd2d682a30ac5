//! Group `parse`: every prlctl/prlsrvctl output the daemon reads, captured from the host and
//! read with the daemon's own parsers (`marbled::hypervisor::parse`, and `lifecycle::check`
//! for the licence).
//!
//! The `validate_*` functions are pure: the live checks call them on what the host printed,
//! and `tests/tests/real_host.rs` calls them on the fixtures in the repository, so a fixture
//! sent back from a real host becomes a regression test as it is.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use marble_proto::{CheckStatus, PowerState};
use marbled::hypervisor::parse::{
    self, VmStatus, lenient_json, looks_like_uuid, parse_info_json, parse_list_json,
    parse_list_table, parse_snapshot_list_json, parse_status, parse_version,
};
use serde_json::Value;

use super::record::{Obs, SECRET_KEYS, Verdict, redact_json_text};
use super::target::Env;
use super::vm::Throwaway;

/// `prlctl --version`: the daemon's parser finds `X.Y.Z (build)`.
pub fn validate_version(raw: &str) -> anyhow::Result<String> {
    let v = parse_version(raw).context("parse_version")?;
    Ok(format!("prlctl version {v}"))
}

/// `prlctl list -a --json` (and optionally the plain table of the same moment): every entry
/// has a UUID, a name and a known state; the table lists the same VMs.
pub fn validate_list(json: &str, table: Option<&str>) -> anyhow::Result<String> {
    let vms = parse_list_json(json).context("parse_list_json")?;
    let mut problems = Vec::new();
    for vm in &vms {
        if !looks_like_uuid(&vm.uuid) {
            problems.push(format!("uuid {:?} of {:?}", vm.uuid, vm.name));
        }
        if vm.name.is_empty() {
            problems.push(format!("no name for {}", vm.uuid));
        }
        if matches!(vm.power, PowerState::Other(_)) {
            problems.push(format!(
                "state of {:?} not understood: {:?}",
                vm.name, vm.power
            ));
        }
    }
    if let Some(table) = table {
        let rows = parse_list_table(table).context("parse_list_table")?;
        let mut a: Vec<&str> = vms.iter().map(|v| v.uuid.as_str()).collect();
        let mut b: Vec<&str> = rows.iter().map(|v| v.uuid.as_str()).collect();
        a.sort_unstable();
        b.sort_unstable();
        if a != b {
            problems.push(format!("json lists {a:?}, the table {b:?}"));
        }
    }
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("; "));
    }
    let states: Vec<String> = vms
        .iter()
        .map(|v| format!("{} {:?}", v.name, v.power))
        .collect();
    Ok(format!("{} VMs: {}", vms.len(), states.join(", ")))
}

/// `prlctl list -i --json VM` of a macOS VM: everything the daemon reads is there.
pub fn validate_info(raw: &str, expect_name: Option<&str>) -> anyhow::Result<String> {
    let d = parse_info_json(raw).context("parse_info_json")?;
    let mut missing = Vec::new();
    if !looks_like_uuid(&d.uuid) {
        missing.push("ID");
    }
    if d.home.is_none() {
        missing.push("Home");
    }
    if d.os.is_none() {
        missing.push("OS");
    }
    if d.tools_state.is_none() {
        missing.push("GuestTools.state");
    }
    if d.cpus.is_none() {
        missing.push("Hardware.cpu.cpus");
    }
    if d.memory_mib.is_none() {
        missing.push("Hardware.memory.size");
    }
    match &d.mac {
        Some(m) if m.len() == 12 && m.chars().all(|c| c.is_ascii_hexdigit()) => {}
        _ => missing.push("Hardware.net0.mac (12 hex digits)"),
    }
    if let Some(n) = expect_name
        && d.name != n
    {
        anyhow::bail!("Name is {:?}, expected {n:?}", d.name);
    }
    if !missing.is_empty() {
        anyhow::bail!("the daemon's parser found no {}", missing.join(", "));
    }
    Ok(format!(
        "{} {} os={} tools={} cpus={} memory={} MiB mac={}",
        d.name,
        d.state,
        d.os.unwrap_or_default(),
        d.tools_state.unwrap_or_default(),
        d.cpus.unwrap_or(0),
        d.memory_mib.unwrap_or(0),
        d.mac.unwrap_or_default()
    ))
}

/// `prlctl snapshot-list VM --json` with `expect` snapshots (ids braced, one current).
pub fn validate_snapshots(raw: &str, expect: usize) -> anyhow::Result<String> {
    let snaps = parse_snapshot_list_json(raw).context("parse_snapshot_list_json")?;
    if snaps.len() != expect {
        anyhow::bail!("{} snapshots parsed, expected {expect}", snaps.len());
    }
    if let Some(bad) = snaps
        .iter()
        .find(|s| !(s.id.starts_with('{') && looks_like_uuid(&s.id)))
    {
        anyhow::bail!("snapshot id {:?} is not a braced uuid", bad.id);
    }
    if expect > 0 && !snaps.iter().any(|s| s.current) {
        anyhow::bail!("no snapshot marked current");
    }
    Ok(format!(
        "{} snapshots{}",
        snaps.len(),
        snaps
            .iter()
            .map(|s| format!(
                " {} {:?}{}",
                s.id,
                s.name,
                if s.current { " *" } else { "" }
            ))
            .collect::<String>()
    ))
}

/// `prlctl status VM`: exists, in the state `expect`.
pub fn validate_status(raw: &str, expect: &PowerState) -> anyhow::Result<String> {
    match parse_status(raw).context("parse_status")? {
        VmStatus::Exists(p) if &p == expect => Ok(format!("exists, {p:?}")),
        other => anyhow::bail!("parsed {other:?}, expected Exists({expect:?})"),
    }
}

/// `prlsrvctl info --json`: a JSON object with a `Version` the operator can read.
pub fn validate_server_info(raw: &str) -> anyhow::Result<String> {
    let v = lenient_json(raw).context("lenient_json")?;
    let version = v
        .get("Version")
        .and_then(Value::as_str)
        .context("no \"Version\" string in prlsrvctl info --json")?;
    Ok(format!("Version {version:?}"))
}

/// `prlsrvctl info --license --json`: the keys `check.rs` reads (`edition`, `status`,
/// `is_trial`) and their JSON types, which is what the licence fixture pins down.
pub fn validate_license(raw: &str) -> anyhow::Result<String> {
    let v = lenient_json(raw).context("lenient_json")?;
    let edition = v
        .get("edition")
        .and_then(Value::as_str)
        .context("no \"edition\" string")?;
    let status = v.get("status").map(kind_and_value).unwrap_or_default();
    let trial = v.get("is_trial").map(kind_and_value).unwrap_or_default();
    Ok(format!(
        "edition {edition:?}, status {status}, is_trial {trial}"
    ))
}

fn kind_and_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?} (string)"),
        Value::Bool(b) => format!("{b} (boolean)"),
        other => format!(
            "{other} ({})",
            if other.is_number() { "number" } else { "other" }
        ),
    }
}

/// Run `f` on `raw`, then on the redacted fixture text, and insist both agree: what is sent
/// back must parse the same as what the host printed.
fn both(
    raw: &str,
    fixture: &str,
    f: impl Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<Verdict> {
    let live = f(raw);
    let fix = f(fixture);
    Ok(match (live, fix) {
        (Ok(a), Ok(b)) if a == b => Verdict::Pass(a),
        (Ok(a), Ok(b)) => Verdict::Fail(format!("redacted fixture parses differently: {a} / {b}")),
        (Err(e), _) => Verdict::Fail(super::record::chain(&e).join(": ")),
        (Ok(_), Err(e)) => Verdict::Fail(format!(
            "the redacted fixture does not parse: {}",
            super::record::chain(&e).join(": ")
        )),
    })
}

fn quick(env: &Env) -> Duration {
    env.pick(Duration::from_secs(60), Duration::from_secs(10))
}

/// Host-level outputs (no VM needed): version, listing, server info, licence.
pub async fn host_checks(env: &Env) {
    env.rec
        .check("parse.version", quick(env), async |obs: &Obs| {
            let out = env.prlctl_ok(obs, &["--version"], quick(env)).await?;
            let raw = out.stdout_text();
            env.rec.fixture("version.txt", "prlctl --version", &raw);
            if let Ok(v) = parse_version(&raw) {
                env.rec.meta("prlctl_version", v.to_string().into());
            }
            both(&raw, &raw, validate_version)
        })
        .await;

    env.rec
        .check("parse.list", quick(env), async |obs: &Obs| {
            let json = env
                .prlctl_ok(obs, &["list", "-a", "--json"], quick(env))
                .await?
                .stdout_text();
            let table = env
                .prlctl_ok(obs, &["list", "-a"], quick(env))
                .await?
                .stdout_text();
            env.rec
                .fixture("list_a_json.json", "prlctl list -a --json", &json);
            env.rec
                .fixture("list_a_table.txt", "prlctl list -a", &table);
            both(&json, &json, |j| validate_list(j, Some(&table)))
        })
        .await;

    env.rec
        .check("parse.server-info", quick(env), async |obs: &Obs| {
            let out = env
                .tool(obs, &env.prlsrvctl, &["info", "--json"], quick(env))
                .await?;
            if out.status != Some(0) {
                return Ok(Verdict::Fail(format!(
                    "prlsrvctl info --json exited {:?}: {}",
                    out.status,
                    out.stderr_text().trim()
                )));
            }
            let raw = out.stdout_text();
            let fixture = redact_json_text(&raw, SECRET_KEYS);
            env.rec.fixture(
                "prlsrvctl_info_json.json",
                "prlsrvctl info --json",
                &fixture,
            );
            both(&raw, &fixture, validate_server_info)
        })
        .await;

    env.rec
        .check("parse.license", quick(env), async |obs: &Obs| {
            let out = env
                .tool(
                    obs,
                    &env.prlsrvctl,
                    &["info", "--license", "--json"],
                    quick(env),
                )
                .await?;
            if out.status != Some(0) {
                return Ok(Verdict::Fail(format!(
                    "prlsrvctl info --license --json exited {:?}: {}",
                    out.status,
                    out.stderr_text().trim()
                )));
            }
            let raw = out.stdout_text();
            let fixture = redact_json_text(&raw, SECRET_KEYS);
            env.rec.fixture(
                "prlsrvctl_info_license_json.json",
                "prlsrvctl info --license --json",
                &fixture,
            );
            let keys = both(&raw, &fixture, validate_license)?;
            // The daemon's own reading of the licence: the `edition` line of `host check`.
            let line = edition_line(env, obs).await?;
            Ok(match keys {
                Verdict::Pass(d) if line.0 => Verdict::Pass(format!("{d}; host check: {}", line.1)),
                Verdict::Pass(d) => Verdict::Fail(format!("{d}; but host check says: {}", line.1)),
                other => other,
            })
        })
        .await;
}

/// The `edition` line of the daemon's `host check` (`lifecycle::check::run`) against this
/// host's prlsrvctl: (understood, text). Understood = the licence JSON was parsed and the
/// edition recognised (PASS, or WARN for an inactive or trial licence).
async fn edition_line(env: &Env, obs: &Obs) -> anyhow::Result<(bool, String)> {
    let host_cfg = marbled::config::HostSection {
        prlsrvctl: env.prlsrvctl.clone(),
        ..marbled::config::HostSection::default()
    };
    let check_env = marbled::lifecycle::check::CheckEnv {
        hv: env.prl.clone(),
        host_cfg: Arc::new(host_cfg),
        tool_env: Arc::new(env.tool_env.clone()),
        host: "acceptance".to_owned(),
        images_build_disk: None,
        bundles_dir: env.work.clone(),
        images: Arc::new(marbled::images::ImageStoreConfig::default()),
        github: None,
    };
    let results = marbled::lifecycle::check::run(check_env).await;
    obs.note(
        "host check",
        serde_json::to_value(&results).unwrap_or(Value::Null),
    );
    let line = results
        .iter()
        .find(|r| r.name == "edition")
        .context("host check printed no edition line")?;
    let text = format!("{:?} {}", line.status, line.detail);
    let understood = matches!(line.status, CheckStatus::Pass | CheckStatus::Warn)
        && !line.detail.contains("cannot parse")
        && !line.detail.contains("edition unknown");
    Ok((understood, text))
}

/// VM-level outputs of the throw-away VM in its current power state `state`: `list -i
/// --json`, `status`. `suffix` tells the fixtures apart (`""` stopped, `_running`).
pub async fn vm_checks(env: &Env, vm: &Throwaway, state: PowerState, suffix: &str) {
    let id = format!("parse.info{suffix}");
    env.rec
        .check(&id, quick(env), async |obs: &Obs| {
            let raw = env
                .prlctl_ok(obs, &["list", "-i", "--json", &vm.name], quick(env))
                .await?
                .stdout_text();
            env.rec.fixture(
                &format!("list_i_json_macos{suffix}.json"),
                &format!("prlctl list -i --json VM ({state:?})"),
                &raw,
            );
            both(&raw, &raw, |r| validate_info(r, Some(&vm.name)))
        })
        .await;
    let id = format!("parse.status{suffix}");
    env.rec
        .check(&id, quick(env), async |obs: &Obs| {
            let raw = env
                .prlctl_ok(obs, &["status", &vm.name], quick(env))
                .await?
                .stdout_text();
            env.rec.fixture(
                &format!(
                    "status{}.txt",
                    if suffix.is_empty() {
                        "_stopped"
                    } else {
                        suffix
                    }
                ),
                &format!("prlctl status VM ({state:?})"),
                &raw,
            );
            both(&raw, &raw, |r| validate_status(r, &state))
        })
        .await;
    if !suffix.is_empty() {
        let id = format!("parse.list{suffix}");
        env.rec
            .check(&id, quick(env), async |obs: &Obs| {
                let json = env
                    .prlctl_ok(obs, &["list", "-a", "--json"], quick(env))
                    .await?
                    .stdout_text();
                env.rec.fixture(
                    &format!("list_a_json{suffix}.json"),
                    &format!("prlctl list -a --json (throw-away VM {state:?})"),
                    &json,
                );
                let listed = parse::parse_list_json(&json)
                    .ok()
                    .and_then(|l| l.into_iter().find(|v| v.name == vm.name))
                    .map(|v| v.power);
                if listed.as_ref() != Some(&state) {
                    return Ok(Verdict::Fail(format!(
                        "the listing shows the throw-away VM as {listed:?}, expected {state:?}"
                    )));
                }
                both(&json, &json, |j| validate_list(j, None))
            })
            .await;
    }
}
