//! What the acceptance suite saw, on the terminal and on disk.
//!
//! Owns the output directory: one line per check on stdout (`ID: pass …`, `ID: fail …`,
//! `ID: skipped: REASON`), `results.txt` (the same lines), `results.json` (every check with
//! its status, detail, elapsed time and observations: prlctl argv, exit codes, outputs,
//! errors), `timings.json`, `fixtures/` (raw outputs named like the repository's fixtures,
//! secrets redacted) and `cleanup.log` (what was created and removed, which
//! `scripts/acceptance-mac.sh` reads to clean up after an interrupted run).
//!
//! Nothing here decides whether a check passes; the checks do.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// It ran and what it asserts held.
    Pass,
    /// It ran and something it asserts did not hold (or it could not run as it should).
    Fail,
    /// It did not run; the reason says why (no credentials, simulator, …).
    Skipped,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skipped => "skipped",
        })
    }
}

/// A check's own judgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Passed; the text says what was measured.
    Pass(String),
    /// Failed; the text says what was expected and what was seen.
    Fail(String),
    /// Not run; the text is the reason.
    Skip(String),
}

/// One finished check.
#[derive(Debug, Clone)]
pub struct CheckRecord {
    /// Dotted id, `group.name`.
    pub id: String,
    /// Outcome.
    pub status: Status,
    /// Detail or reason.
    pub detail: String,
    /// Wall time of the check.
    pub elapsed: Duration,
    /// Everything it observed, in order.
    pub observations: Vec<Value>,
}

impl CheckRecord {
    /// The terminal line: `ID: pass (1.2 s) detail`, `ID: skipped: reason`.
    pub fn line(&self) -> String {
        let detail = one_line(&self.detail, 400);
        match self.status {
            Status::Skipped => format!("{}: skipped: {detail}", self.id),
            s => format!(
                "{}: {s} ({:.1} s){}{detail}",
                self.id,
                self.elapsed.as_secs_f64(),
                if detail.is_empty() { "" } else { " " }
            ),
        }
    }
}

/// `s` on one line, at most `max` characters (the full text stays in `results.json`).
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .trim()
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

/// Observations of the check in progress; handed to each check.
#[derive(Debug, Default)]
pub struct Obs {
    items: Mutex<Vec<Value>>,
}

/// Most bytes of one output kept in `results.json` (fixtures keep everything).
const OUTPUT_KEEP: usize = 64 * 1024;

/// `s` cut to 64 KiB at a character boundary, with a marker when cut.
pub fn keep(s: &str) -> String {
    if s.len() <= OUTPUT_KEEP {
        return s.to_owned();
    }
    let mut end = OUTPUT_KEEP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &s[..end], s.len() - end)
}

impl Obs {
    /// Record a free-form observation.
    pub fn note(&self, what: &str, value: Value) {
        let mut entry = serde_json::Map::new();
        entry.insert("note".to_owned(), Value::from(what));
        entry.insert("value".to_owned(), value);
        self.push(Value::Object(entry));
    }

    /// Record one prlctl (or other tool) run.
    pub fn run(
        &self,
        argv: &[String],
        status: Option<i32>,
        stdout: &str,
        stderr: &str,
        elapsed: Duration,
    ) {
        self.push(json!({
            "argv": argv,
            "status": status,
            "stdout": keep(stdout),
            "stderr": keep(stderr),
            "elapsed_ms": millis(elapsed),
        }));
    }

    /// Record an error (with its whole chain).
    pub fn error(&self, what: &str, err: &anyhow::Error) {
        self.push(json!({ "error": what, "chain": chain(err) }));
    }

    fn push(&self, v: Value) {
        if let Ok(mut items) = self.items.lock() {
            items.push(v);
        }
    }

    fn take(&self) -> Vec<Value> {
        self.items
            .lock()
            .map(|mut i| std::mem::take(&mut *i))
            .unwrap_or_default()
    }
}

/// The error and its sources, outermost first.
pub fn chain(err: &anyhow::Error) -> Vec<String> {
    err.chain().map(ToString::to_string).collect()
}

/// Milliseconds as u64 (saturating).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The output directory and the list of finished checks.
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    records: Mutex<Vec<CheckRecord>>,
    timings: Mutex<BTreeMap<String, f64>>,
    fixtures: Mutex<Vec<(String, String)>>,
    meta: Mutex<BTreeMap<String, Value>>,
    started: Instant,
}

impl Recorder {
    /// Create `dir` (and `dir/fixtures`); refuses a directory that already holds results, so
    /// two runs never mix.
    pub fn create(dir: &Path) -> anyhow::Result<Recorder> {
        if dir.join("results.json").exists() {
            anyhow::bail!(
                "{} already holds results of another run; choose another --out",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir.join("fixtures"))
            .with_context(|| format!("create {}", dir.display()))?;
        let rec = Recorder {
            dir: dir.to_owned(),
            records: Mutex::new(Vec::new()),
            timings: Mutex::new(BTreeMap::new()),
            fixtures: Mutex::new(Vec::new()),
            meta: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
        };
        std::fs::write(dir.join("results.txt"), "")
            .with_context(|| format!("write {}", dir.join("results.txt").display()))?;
        Ok(rec)
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Run one check: prints and stores its line. An `Err` is a failure carrying the error
    /// chain; a check that overruns `limit` fails as timed out (its future is dropped, which
    /// kills any prlctl it was running).
    pub async fn check(
        &self,
        id: &str,
        limit: Duration,
        f: impl AsyncFnOnce(&Obs) -> anyhow::Result<Verdict>,
    ) -> Status {
        let obs = Obs::default();
        let started = Instant::now();
        let outcome = tokio::time::timeout(limit, f(&obs)).await;
        let (status, detail) = match outcome {
            Ok(Ok(Verdict::Pass(d))) => (Status::Pass, d),
            Ok(Ok(Verdict::Fail(d))) => (Status::Fail, d),
            Ok(Ok(Verdict::Skip(d))) => (Status::Skipped, d),
            Ok(Err(e)) => {
                obs.error("check error", &e);
                (Status::Fail, chain(&e).join(": "))
            }
            Err(_) => (
                Status::Fail,
                format!("did not finish within {} s", limit.as_secs()),
            ),
        };
        self.finish(CheckRecord {
            id: id.to_owned(),
            status,
            detail,
            elapsed: started.elapsed(),
            observations: obs.take(),
        });
        status
    }

    /// Record a check that was not run.
    pub fn skip(&self, id: &str, reason: &str) {
        self.finish(CheckRecord {
            id: id.to_owned(),
            status: Status::Skipped,
            detail: reason.to_owned(),
            elapsed: Duration::ZERO,
            observations: Vec::new(),
        });
    }

    fn finish(&self, record: CheckRecord) {
        let line = record.line();
        println!("{line}");
        let path = self.dir.join("results.txt");
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&path) {
            let _ = writeln!(f, "{line}");
        }
        if let Ok(mut r) = self.records.lock() {
            r.push(record);
        }
        // Keep results.json current, so an interrupted run still leaves what it saw.
        let _ = self.write_json();
    }

    /// Remember a named timing (seconds) for `timings.json`.
    pub fn timing(&self, name: &str, d: Duration) {
        if let Ok(mut t) = self.timings.lock() {
            t.insert(name.to_owned(), (d.as_secs_f64() * 1000.0).round() / 1000.0);
        }
    }

    /// Remember a fact about the run (PD version, host, source VM…) for `results.json`.
    pub fn meta(&self, key: &str, value: Value) {
        if let Ok(mut m) = self.meta.lock() {
            m.insert(key.to_owned(), value);
        }
    }

    /// Write `fixtures/NAME` with `text` (already redacted by the caller where needed), and
    /// remember which command produced it for `fixtures/README.md`.
    pub fn fixture(&self, name: &str, command: &str, text: &str) {
        let path = self.dir.join("fixtures").join(name);
        if std::fs::write(&path, text).is_ok()
            && let Ok(mut f) = self.fixtures.lock()
        {
            f.retain(|(n, _)| n != name);
            f.push((name.to_owned(), command.to_owned()));
        }
    }

    /// Append one line to `cleanup.log` (`create vm NAME`, `removed vm NAME`, …).
    pub fn cleanup_log(&self, line: &str) {
        let path = self.dir.join("cleanup.log");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Every finished check so far.
    pub fn records(&self) -> Vec<CheckRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Write `results.json`, `timings.json`, `fixtures/README.md` and `summary.txt`; returns
    /// the summary line.
    pub fn write_all(&self) -> anyhow::Result<String> {
        self.write_json()?;
        let timings = self.timings.lock().map(|t| t.clone()).unwrap_or_default();
        write_pretty(&self.dir.join("timings.json"), &json!(timings))?;
        self.write_fixture_readme()?;
        let records = self.records();
        let count = |s: Status| records.iter().filter(|r| r.status == s).count();
        let summary = format!(
            "{} checks: {} pass, {} fail, {} skipped in {:.0} s; results in {}",
            records.len(),
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Skipped),
            self.started.elapsed().as_secs_f64(),
            self.dir.display()
        );
        std::fs::write(self.dir.join("summary.txt"), format!("{summary}\n"))
            .context("write summary.txt")?;
        Ok(summary)
    }

    fn write_json(&self) -> anyhow::Result<()> {
        let records = self.records();
        let meta = self.meta.lock().map(|m| m.clone()).unwrap_or_default();
        let timings = self.timings.lock().map(|t| t.clone()).unwrap_or_default();
        let checks: Vec<Value> = records
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "status": r.status.to_string(),
                    "detail": r.detail,
                    "elapsed_ms": millis(r.elapsed),
                    "observations": r.observations,
                })
            })
            .collect();
        write_pretty(
            &self.dir.join("results.json"),
            &json!({ "meta": meta, "timings": timings, "checks": checks }),
        )
    }

    fn write_fixture_readme(&self) -> anyhow::Result<()> {
        let fixtures = self.fixtures.lock().map(|f| f.clone()).unwrap_or_default();
        let meta = self.meta.lock().map(|m| m.clone()).unwrap_or_default();
        let version = meta
            .get("prlctl_version")
            .and_then(Value::as_str)
            .unwrap_or("unknown version");
        let simulated = meta.get("target").and_then(Value::as_str) == Some("simulator");
        let mut text = format!(
            "# {} ({version})\n\n\
             Captured by `scripts/acceptance-mac.sh` on {} ({}). Licence serials, keys and\n\
             account fields are replaced by `REDACTED`; everything else is byte for byte what\n\
             the tool printed. Copy this directory to `tests/fixtures/prlctl-real/<PD version>/`\n\
             (docs/ACCEPTANCE.md, \"Turning results into fixtures\").\n\n\
             | File | Command |\n|---|---|\n",
            if simulated {
                "prlctl SIMULATOR outputs (not fixtures of real behaviour)"
            } else {
                "Real prlctl outputs"
            },
            meta.get("host").and_then(Value::as_str).unwrap_or("?"),
            meta.get("started_utc")
                .and_then(Value::as_str)
                .unwrap_or("?"),
        );
        for (name, command) in &fixtures {
            text.push_str(&format!("| `{name}` | `{command}` |\n"));
        }
        std::fs::write(self.dir.join("fixtures").join("README.md"), text)
            .context("write fixtures/README.md")
    }
}

fn write_pretty(path: &Path, v: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v).context("serialise results")?;
    std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))
}

/// Keys whose string values are replaced by `REDACTED` in `prlsrvctl` fixtures (licence
/// serials and keys, host and account identifiers), matched case-insensitively.
pub const SECRET_KEYS: &[&str] = &[
    "serial",
    "key",
    "uuid",
    "hardware id",
    "host id",
    "signed in",
    "email",
    "user",
];

/// `raw` with the string values of `keys` (anywhere in the JSON) replaced by `"REDACTED"`,
/// leaving every other byte (indentation, key order, banners around the JSON) as it was.
/// Text that is not JSON is returned unchanged.
pub fn redact_json_text(raw: &str, keys: &[&str]) -> String {
    let Ok(v) = marbled::hypervisor::parse::lenient_json(raw) else {
        return raw.to_owned();
    };
    let mut secrets = Vec::new();
    collect_secret_values(&v, keys, &mut secrets);
    let mut out = raw.to_owned();
    for s in secrets {
        if s.is_empty() || s == "-" {
            continue;
        }
        if let Ok(encoded) = serde_json::to_string(&s) {
            out = out.replace(&encoded, "\"REDACTED\"");
        }
    }
    out
}

fn collect_secret_values(v: &Value, keys: &[&str], out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                if keys.iter().any(|s| k.eq_ignore_ascii_case(s))
                    && let Value::String(s) = val
                {
                    out.push(s.clone());
                }
                collect_secret_values(val, keys, out);
            }
        }
        Value::Array(items) => {
            for i in items {
                collect_secret_values(i, keys, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_replaces_only_the_values_of_secret_keys() {
        let raw = "banner\n{\n\t\"status\": \"ACTIVE\",\n\t\"serial\": \"AAAA-BBBB\",\n\t\"edition\": \"pro\",\n\t\"is_trial\": \"no\",\n\t\"License\": {\"key\": \"K-1\", \"state\": \"valid\"}\n}\n";
        let out = redact_json_text(raw, SECRET_KEYS);
        assert!(!out.contains("AAAA-BBBB"), "{out}");
        assert!(!out.contains("K-1"), "{out}");
        assert!(
            out.starts_with("banner\n{\n\t\"status\": \"ACTIVE\""),
            "{out}"
        );
        assert!(out.contains("\"edition\": \"pro\""));
        assert!(out.contains("\"is_trial\": \"no\""));
        assert_eq!(out.matches("REDACTED").count(), 2);
    }

    #[test]
    fn redaction_leaves_non_json_alone() {
        assert_eq!(redact_json_text("no json", SECRET_KEYS), "no json");
    }

    #[test]
    fn lines_are_single_and_bounded() {
        let r = CheckRecord {
            id: "exec.x".into(),
            status: Status::Fail,
            detail: "a\nb".into(),
            elapsed: Duration::from_millis(1500),
            observations: Vec::new(),
        };
        assert_eq!(r.line(), "exec.x: fail (1.5 s) a b");
        let s = CheckRecord {
            status: Status::Skipped,
            detail: "simulator".into(),
            ..r
        };
        assert_eq!(s.line(), "exec.x: skipped: simulator");
        assert_eq!(one_line(&"x".repeat(10), 4), "xxxx…");
    }
}
