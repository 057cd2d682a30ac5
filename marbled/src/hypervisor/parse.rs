//! Defensive parsing of `prlctl` output: pure functions from text to the seam's types.
//!
//! Owns: `list -a --json`, `list -i --json`, the plain `list -a` table (the fallback when the
//! JSON cannot be repaired), `snapshot-list --json`, `status` and `--version`. No I/O here;
//! [`super::prlctl`] runs the process and wraps a [`ParseError`] with the argv.
//!
//! Why defensive: real `--json` output is occasionally not clean JSON (vagrant-parallels
//! GH-204/GH-219 strip banner text around it and raw control characters inside it), keys and
//! value types drift between PD releases (numbers as strings, `"8192Mb"`, `-` for empty), and
//! UUIDs come with or without braces in either case. So every parser
//! - strips text before the first `[`/`{` and after the matching last bracket, then retries
//!   once more with raw control characters removed;
//! - looks keys up case-insensitively, ignores unknown keys and treats missing ones as absent;
//! - normalises UUIDs to lower case without braces ([`normalize_uuid`]).

use marble_proto::PowerState;
use serde_json::{Map, Value};

use super::{Snapshot, VmDetails, VmListing};

/// Why a piece of prlctl output could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// No `[`…`]` or `{`…`}` in the output at all.
    #[error("no json found in {len} bytes of output")]
    NoJson {
        /// Length of the output.
        len: usize,
    },
    /// Brackets were found but the text inside is not JSON, even after cleaning.
    #[error("invalid json")]
    Json(#[source] serde_json::Error),
    /// Valid JSON (or text) of an unexpected shape.
    #[error("unexpected output shape: {0}")]
    Shape(String),
}

/// A UUID in the canonical form used throughout MARBLE: trimmed, lower case, no braces.
pub fn normalize_uuid(raw: &str) -> String {
    raw.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim()
        .to_ascii_lowercase()
}

/// Whether `s` looks like a UUID (optionally braced, any case): 36 chars of hex and dashes
/// with dashes at positions 8, 13, 18 and 23.
pub fn looks_like_uuid(s: &str) -> bool {
    let u = normalize_uuid(s);
    u.len() == 36
        && u.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The JSON part of `raw`: from the first `[` or `{` to its matching closing bracket
/// (string-aware), or, when the brackets do not balance, to the last closing bracket of the
/// same kind (what vagrant-parallels strips to).
pub fn extract_json(raw: &str) -> Option<&str> {
    let start = raw.find(['[', '{'])?;
    if let Some(end) = balanced_end(&raw[start..]) {
        return Some(&raw[start..start + end]);
    }
    let close = if raw[start..].starts_with('[') {
        ']'
    } else {
        '}'
    };
    let end = raw.rfind(close)?;
    (end > start).then(|| &raw[start..=end])
}

/// Byte length of the balanced bracket group at the start of `s`, ignoring brackets inside
/// JSON strings.
fn balanced_end(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '[' | '{' => depth += 1,
            ']' | '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// `s` without raw control characters (everything below 0x20 except tab, CR and LF, and DEL),
/// which are invalid inside JSON strings. ANSI escape sequences (`ESC [ … final`) go as a
/// whole, since their `[` would otherwise look like the start of the JSON.
pub fn strip_control(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameter and intermediate bytes, then one final byte in 0x40..=0x7e.
            for p in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&p) {
                    break;
                }
            }
            continue;
        }
        if matches!(c, '\t' | '\n' | '\r') || !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// Parse JSON leniently: as is, then the extracted bracketed part, then that without control
/// characters. The first error is the one reported when every attempt fails.
pub fn lenient_json(raw: &str) -> Result<Value, ParseError> {
    let first = match serde_json::from_str::<Value>(raw) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let Some(inner) = extract_json(raw) else {
        return Err(ParseError::NoJson { len: raw.len() });
    };
    if let Ok(v) = serde_json::from_str::<Value>(inner) {
        return Ok(v);
    }
    let cleaned = strip_control(raw);
    if let Some(inner) = extract_json(&cleaned)
        && let Ok(v) = serde_json::from_str::<Value>(inner)
    {
        return Ok(v);
    }
    Err(ParseError::Json(first))
}

/// Case-insensitive key lookup (exact match first, as it is the common case).
fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The first of `keys` present with a non-empty value, as text.
fn get_text(obj: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| get(obj, k).and_then(text))
}

/// A scalar as text: strings trimmed, `-` and empty as absent, numbers and booleans printed.
fn text(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!s.is_empty() && s != "-").then_some(s)
}

/// A boolean given as `true`, `"true"`, `"yes"`, `"on"`, `1`…
fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_u64().is_some_and(|n| n != 0),
        Value::String(s) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "true" | "yes" | "on" | "1" | "*"
        ),
        _ => false,
    }
}

/// The leading unsigned integer of `s` (`"4"`, `"4 cores"`), if any.
fn leading_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits: &str = &s[..s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len())];
    digits.parse().ok()
}

/// Memory as Parallels prints it (`"8192Mb"`, `"8192MB"`, `"8192"`, `"8 GB"`, `"8Gb"`) in MiB.
/// A bare number is MiB, as in `--memsize`.
pub fn parse_memory_mib(s: &str) -> Option<u64> {
    let s = s.trim();
    let n = leading_u64(s)?;
    let unit = s
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .trim()
        .to_ascii_lowercase();
    match unit.as_str() {
        "" | "m" | "mb" | "mib" => Some(n),
        "g" | "gb" | "gib" => n.checked_mul(1024),
        "k" | "kb" | "kib" => Some(n / 1024),
        _ => None,
    }
}

/// The entries of a JSON listing: an array of objects, or a single object.
fn objects(v: &Value) -> Result<Vec<&Map<String, Value>>, ParseError> {
    match v {
        Value::Array(items) => Ok(items.iter().filter_map(Value::as_object).collect()),
        Value::Object(o) => Ok(vec![o]),
        other => Err(ParseError::Shape(format!(
            "expected an array of objects, got {}",
            kind(other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `prlctl list -a --json` (also tolerates `--info`-style keys `ID`/`Name`/`State`).
///
/// Entries without a UUID are skipped: the daemon addresses and tracks VMs by UUID, and a
/// nameless-UUID-less entry cannot be acted on. A missing status reads as `unknown`
/// ([`PowerState::Other`]), which counts as occupying the host (the safe side).
pub fn parse_list_json(raw: &str) -> Result<Vec<VmListing>, ParseError> {
    if raw.trim().is_empty() {
        // Seen for an empty host on some builds; the table fallback would say the same.
        return Ok(Vec::new());
    }
    let v = lenient_json(raw)?;
    Ok(objects(&v)?
        .into_iter()
        .filter_map(|o| {
            let uuid = normalize_uuid(&get_text(o, &["uuid", "ID"])?);
            let name = get_text(o, &["name"]).unwrap_or_default();
            let state = get_text(o, &["status", "state"]).unwrap_or_else(|| "unknown".into());
            Some(VmListing {
                uuid,
                name,
                power: PowerState::from_word(&state.to_ascii_lowercase()),
            })
        })
        .collect())
}

/// `prlctl list -i --json VM`: an array with one object (or the object itself).
pub fn parse_info_json(raw: &str) -> Result<VmDetails, ParseError> {
    let v = lenient_json(raw)?;
    let o = objects(&v)?
        .into_iter()
        .next()
        .ok_or_else(|| ParseError::Shape("empty info array".into()))?;
    let uuid = get_text(o, &["ID", "uuid"])
        .map(|u| normalize_uuid(&u))
        .ok_or_else(|| ParseError::Shape("info without ID".into()))?;
    let hw = get(o, "Hardware").and_then(Value::as_object);
    let hw_obj = |key: &str| hw.and_then(|h| get(h, key)).and_then(Value::as_object);
    let cpus = hw_obj("cpu")
        .and_then(|c| get_text(c, &["cpus", "count"]))
        .and_then(|s| leading_u64(&s))
        .and_then(|n| u32::try_from(n).ok());
    let memory_mib = hw_obj("memory")
        .and_then(|m| get_text(m, &["size"]))
        .and_then(|s| parse_memory_mib(&s));
    let mac = hw_obj("net0").and_then(|n| get_text(n, &["mac"]));
    let tools_state = get(o, "GuestTools").and_then(|g| match g {
        Value::Object(g) => get_text(g, &["state"]),
        // Older builds print the text-mode shape `state=installed version=…`.
        Value::String(s) => s
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("state="))
            .map(str::to_owned),
        _ => None,
    });
    Ok(VmDetails {
        uuid,
        name: get_text(o, &["Name"]).unwrap_or_default(),
        state: get_text(o, &["State", "status"])
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_else(|| "unknown".into()),
        home: get_text(o, &["Home"]),
        os: get_text(o, &["OS"]),
        tools_state,
        cpus,
        memory_mib,
        mac,
    })
}

/// The plain `prlctl list -a` table (default columns `UUID STATUS IP_ADDR NAME`). Names may
/// contain spaces: as in Parallels' own scripts, the name is the rest of the line after the
/// third column. Lines that do not start with a UUID (the header, blank lines) are skipped;
/// output with neither a header nor a row is an error, so garbage is not read as "no VMs".
pub fn parse_list_table(raw: &str) -> Result<Vec<VmListing>, ParseError> {
    let mut saw_header = false;
    let mut out = Vec::new();
    for line in raw.lines() {
        let line = line.trim_end_matches('\r');
        let trimmed = line.trim_start();
        if trimmed.starts_with("UUID") {
            saw_header = true;
            continue;
        }
        let mut rest = trimmed;
        let mut cols = Vec::with_capacity(3);
        while cols.len() < 3 {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            cols.push(&rest[..end]);
            rest = rest[end..].trim_start();
        }
        let [uuid, status, _ip] = cols[..] else {
            continue;
        };
        if !looks_like_uuid(uuid) {
            continue;
        }
        out.push(VmListing {
            uuid: normalize_uuid(uuid),
            name: rest.trim_end().to_owned(),
            power: PowerState::from_word(&status.to_ascii_lowercase()),
        });
    }
    if !saw_header && out.is_empty() && !raw.trim().is_empty() {
        return Err(ParseError::Shape("no table header and no rows".into()));
    }
    Ok(out)
}

/// `prlctl snapshot-list VM --json`: an object keyed by braced snapshot id. Empty output
/// means no snapshots (PD 26 prints nothing rather than `{}`). Ids are returned braced and
/// lower case, sorted, whatever form prlctl printed.
pub fn parse_snapshot_list_json(raw: &str) -> Result<Vec<Snapshot>, ParseError> {
    if raw.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v = lenient_json(raw)?;
    let map = match &v {
        Value::Object(m) => m,
        Value::Array(a) if a.is_empty() => return Ok(Vec::new()),
        other => {
            return Err(ParseError::Shape(format!(
                "expected an object keyed by snapshot id, got {}",
                kind(other)
            )));
        }
    };
    let mut out: Vec<Snapshot> = map
        .iter()
        .filter_map(|(id, body)| {
            let body = body.as_object()?;
            Some(Snapshot {
                id: format!("{{{}}}", normalize_uuid(id)),
                name: get_text(body, &["name"]).unwrap_or_default(),
                current: get(body, "current").is_some_and(truthy),
            })
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// What `prlctl status VM` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmStatus {
    /// `VM <id> exist <state>`.
    Exists(PowerState),
    /// `VM <id> deleted` (not registered).
    Deleted,
}

/// `prlctl status VM`: `VM <id-as-given> exist <state>` or `VM <id> deleted`. The id may
/// contain spaces, so the line is split at its last ` exist `.
pub fn parse_status(raw: &str) -> Result<VmStatus, ParseError> {
    for line in raw.lines().map(str::trim) {
        if !line.starts_with("VM ") {
            continue;
        }
        if let Some((_, state)) = line.rsplit_once(" exist ") {
            let state = state.trim();
            if !state.is_empty() {
                return Ok(VmStatus::Exists(PowerState::from_word(
                    &state.to_ascii_lowercase(),
                )));
            }
        }
        if line.ends_with(" deleted") {
            return Ok(VmStatus::Deleted);
        }
    }
    Err(ParseError::Shape("no `VM … exist|deleted` line".into()))
}

/// `prlctl --version`, e.g. `prlctl version 26.3.2 (57398)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PrlctlVersion {
    /// Major (the PD release, e.g. 26).
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
    /// Build number in parentheses, when printed.
    pub build: Option<u32>,
}

impl std::fmt::Display for PrlctlVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(b) = self.build {
            write!(f, " ({b})")?;
        }
        Ok(())
    }
}

/// Parse `prlctl version X.Y.Z (BUILD)[ rev …]` (what tools match with
/// `prlctl version (\d+\.\d+\.\d+)`).
pub fn parse_version(raw: &str) -> Result<PrlctlVersion, ParseError> {
    let bad = || ParseError::Shape(format!("no `version X.Y.Z` in {:?}", truncate(raw, 80)));
    let after = raw
        .split_once("version ")
        .map(|(_, rest)| rest.trim_start())
        .ok_or_else(bad)?;
    let mut words = after.split_whitespace();
    let triple = words.next().ok_or_else(bad)?;
    let mut nums = triple.split('.').map(|p| p.parse::<u32>().ok());
    let (Some(Some(major)), Some(Some(minor)), Some(Some(patch))) =
        (nums.next(), nums.next(), nums.next())
    else {
        return Err(bad());
    };
    let build = words.next().and_then(|w| {
        w.strip_prefix('(')
            .and_then(|w| w.strip_suffix(')'))
            .and_then(|b| b.parse().ok())
    });
    Ok(PrlctlVersion {
        major,
        minor,
        patch,
        build,
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST_JSON: &str = "[\n\t{\n\t\t\"uuid\": \"8d66f605-e28d-412b-b3c9-028c316072c9\",\n\t\t\"status\": \"running\",\n\t\t\"ip_configured\": \"10.211.55.66\",\n\t\t\"name\": \"builder-01\"\n\t},\n\t{\n\t\t\"uuid\": \"83193991-61fe-4ff7-93a9-6b51d9531f67\",\n\t\t\"status\": \"stopped\",\n\t\t\"ip_configured\": \"-\",\n\t\t\"name\": \"stopped-vm\"\n\t}\n]\n";

    fn two_vms() -> Vec<VmListing> {
        vec![
            VmListing {
                uuid: "8d66f605-e28d-412b-b3c9-028c316072c9".into(),
                name: "builder-01".into(),
                power: PowerState::Running,
            },
            VmListing {
                uuid: "83193991-61fe-4ff7-93a9-6b51d9531f67".into(),
                name: "stopped-vm".into(),
                power: PowerState::Stopped,
            },
        ]
    }

    #[test]
    fn list_json_clean() {
        assert_eq!(parse_list_json(LIST_JSON).unwrap(), two_vms());
    }

    #[test]
    fn list_json_empty_array_and_empty_output() {
        assert_eq!(parse_list_json("[]\n").unwrap(), vec![]);
        assert_eq!(parse_list_json("  \n").unwrap(), vec![]);
    }

    #[test]
    fn list_json_with_garbage_around_it() {
        let raw = format!("Login succeeded\nsome banner\n{LIST_JSON}\nbye\n");
        assert_eq!(parse_list_json(&raw).unwrap(), two_vms());
        // Trailing text with brackets of its own: the balanced scan stops at the real end.
        let raw = format!("banner\n{LIST_JSON}trailing junk ]x}}");
        assert_eq!(parse_list_json(&raw).unwrap(), two_vms());
        // A bracket in the banner cannot be told from the JSON: an error, never invented VMs.
        let raw = format!("WARNING: [x\n{LIST_JSON}");
        assert!(parse_list_json(&raw).is_err());
    }

    #[test]
    fn list_json_with_raw_control_characters() {
        let raw = LIST_JSON.replace("builder-01", "builder-\u{1}01\u{7}");
        assert_eq!(parse_list_json(&raw).unwrap(), two_vms());
        let raw = format!(
            "\u{1b}[0m{}",
            LIST_JSON.replace("stopped-vm", "stopped\u{0}-vm")
        );
        assert_eq!(parse_list_json(&raw).unwrap(), two_vms());
    }

    #[test]
    fn list_json_uuid_forms_and_key_drift() {
        let raw = r#"[{"UUID": "{8D66F605-E28D-412B-B3C9-028C316072C9}", "Status": "RUNNING",
                      "name": "builder-01", "extra": {"nested": [1, 2]}},
                     {"uuid": "{83193991-61fe-4ff7-93a9-6b51d9531f67}", "name": "stopped-vm",
                      "status": "stopped"},
                     {"name": "no-uuid-is-skipped", "status": "running"},
                     "not an object"]"#;
        assert_eq!(parse_list_json(raw).unwrap(), two_vms());
    }

    #[test]
    fn list_json_missing_status_is_unknown_and_occupies_host() {
        let v = parse_list_json(r#"[{"uuid": "8d66f605-e28d-412b-b3c9-028c316072c9"}]"#).unwrap();
        assert_eq!(v[0].name, "");
        assert_eq!(v[0].power, PowerState::Other("unknown".into()));
        assert!(v[0].power.occupies_host());
    }

    #[test]
    fn list_json_rejects_non_json_and_wrong_shapes() {
        assert!(matches!(
            parse_list_json("Unable to connect to Parallels Service"),
            Err(ParseError::NoJson { .. })
        ));
        assert!(matches!(
            parse_list_json("[{\"uuid\": \"x\","),
            Err(ParseError::NoJson { .. } | ParseError::Json(_))
        ));
        assert!(matches!(parse_list_json("42"), Err(ParseError::Shape(_))));
    }

    const INFO_JSON: &str = r#"[
	{
		"ID": "bd70007c-83b8-4642-b1d0-fa8ddfa0a4cf",
		"Name": "macOS",
		"Type": "APPLE_VZ_VM",
		"State": "stopped",
		"OS": "macosx",
		"Home": "/Users/ci/Parallels/macOS.macvm/",
		"GuestTools": {"state": "not_installed"},
		"Hardware": {
			"cpu": {"cpus": 4},
			"memory": {"size": "8192Mb", "auto": "off", "hotplug": false},
			"net0": {"enabled": true, "type": "shared", "mac": "001C42F95777", "card": "virtio"}
		}
	}
]"#;

    #[test]
    fn info_json_reference_shape() {
        let d = parse_info_json(INFO_JSON).unwrap();
        assert_eq!(
            d,
            VmDetails {
                uuid: "bd70007c-83b8-4642-b1d0-fa8ddfa0a4cf".into(),
                name: "macOS".into(),
                state: "stopped".into(),
                home: Some("/Users/ci/Parallels/macOS.macvm/".into()),
                os: Some("macosx".into()),
                tools_state: Some("not_installed".into()),
                cpus: Some(4),
                memory_mib: Some(8192),
                mac: Some("001C42F95777".into()),
            }
        );
    }

    #[test]
    fn info_json_lenient_types_and_missing_sections() {
        let raw = r#"garbage{"ID": "{BD70007C-83B8-4642-B1D0-FA8DDFA0A4CF}", "Name": "a b",
            "State": "Running", "Home": "-", "OS": "",
            "GuestTools": "state=installed version=26.2.0-57363",
            "Hardware": {"cpu": {"cpus": "8"}, "memory": {"size": 16384}}}more"#;
        let d = parse_info_json(raw).unwrap();
        assert_eq!(d.uuid, "bd70007c-83b8-4642-b1d0-fa8ddfa0a4cf");
        assert_eq!(d.name, "a b");
        assert_eq!(d.state, "running");
        assert_eq!(d.home, None);
        assert_eq!(d.os, None);
        assert_eq!(d.tools_state.as_deref(), Some("installed"));
        assert_eq!(d.cpus, Some(8));
        assert_eq!(d.memory_mib, Some(16384));
        assert_eq!(d.mac, None);
        let d = parse_info_json(r#"{"ID": "bd70007c-83b8-4642-b1d0-fa8ddfa0a4cf"}"#).unwrap();
        assert_eq!(d.state, "unknown");
        assert_eq!(d.cpus, None);
    }

    #[test]
    fn info_json_errors() {
        assert!(matches!(parse_info_json("[]"), Err(ParseError::Shape(_))));
        assert!(matches!(
            parse_info_json(r#"[{"Name": "x"}]"#),
            Err(ParseError::Shape(_))
        ));
        assert!(parse_info_json("").is_err());
    }

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory_mib("8192Mb"), Some(8192));
        assert_eq!(parse_memory_mib("8192MB"), Some(8192));
        assert_eq!(parse_memory_mib(" 8192 "), Some(8192));
        assert_eq!(parse_memory_mib("8 GB"), Some(8192));
        assert_eq!(parse_memory_mib("8Gb"), Some(8192));
        assert_eq!(parse_memory_mib("2048KiB"), Some(2));
        assert_eq!(parse_memory_mib("auto"), None);
        assert_eq!(parse_memory_mib("12 parsecs"), None);
        assert_eq!(parse_memory_mib(""), None);
    }

    #[test]
    fn uuid_normalisation_and_recognition() {
        assert_eq!(
            normalize_uuid(" {168C789E-CAA6-4B83-BB84-A1F18C26E1F3} "),
            "168c789e-caa6-4b83-bb84-a1f18c26e1f3"
        );
        assert!(looks_like_uuid("{168C789E-CAA6-4B83-BB84-A1F18C26E1F3}"));
        assert!(looks_like_uuid("168c789e-caa6-4b83-bb84-a1f18c26e1f3"));
        assert!(!looks_like_uuid("168c789e-caa6-4b83-bb84-a1f18c26e1f"));
        assert!(!looks_like_uuid("UUID"));
        assert!(!looks_like_uuid("168c789e+caa6-4b83-bb84-a1f18c26e1f3"));
    }

    const TABLE: &str = "UUID                                    STATUS       IP_ADDR         NAME\n\
{168c789e-caa6-4b83-bb84-a1f18c26e1f3}  stopped      -               Clone_2 of VM macOS Mojave\n\
{edbe0c40-83dc-4505-8941-bac038897648}  stopped      -               VM macOS Mojave\n\
{14c73b9b-c677-4647-9fe8-ad71f2b23b53}  paused       10.211.55.3     macOS Catalina  \n";

    #[test]
    fn table_names_with_spaces_are_rest_of_line() {
        let v = parse_list_table(TABLE).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].uuid, "168c789e-caa6-4b83-bb84-a1f18c26e1f3");
        assert_eq!(v[0].name, "Clone_2 of VM macOS Mojave");
        assert_eq!(v[1].name, "VM macOS Mojave");
        assert_eq!(v[2].name, "macOS Catalina");
        assert_eq!(v[2].power, PowerState::Paused);
    }

    #[test]
    fn table_header_only_is_empty_and_garbage_is_an_error() {
        assert_eq!(
            parse_list_table(
                "UUID                                    STATUS       IP_ADDR         NAME\n"
            )
            .unwrap(),
            vec![]
        );
        assert_eq!(parse_list_table("").unwrap(), vec![]);
        assert!(parse_list_table("Login failed: bad things\n").is_err());
        // A row with too few columns is skipped, not misread.
        let v = parse_list_table(&format!(
            "{TABLE}{{14c73b9b-c677-4647-9fe8-ad71f2b23b53}} running\n"
        ))
        .unwrap();
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn table_crlf_lines() {
        let v = parse_list_table(&TABLE.replace('\n', "\r\n")).unwrap();
        assert_eq!(v[1].name, "VM macOS Mojave");
    }

    #[test]
    fn snapshot_list_shapes() {
        let raw = r#"{
	"{351B744B-3B1B-422C-957F-CFEAE36B472D}": {
		"name": "clean-os",
		"date": "2025-07-10 11:41:38",
		"state": "poweroff",
		"current": true,
		"parent": ""
	},
	"0a000000-3b1b-422c-957f-cfeae36b472d": {
		"name": "older",
		"current": "false",
		"parent": ""
	}
}"#;
        let v = parse_snapshot_list_json(raw).unwrap();
        assert_eq!(
            v,
            vec![
                Snapshot {
                    id: "{0a000000-3b1b-422c-957f-cfeae36b472d}".into(),
                    name: "older".into(),
                    current: false,
                },
                Snapshot {
                    id: "{351b744b-3b1b-422c-957f-cfeae36b472d}".into(),
                    name: "clean-os".into(),
                    current: true,
                },
            ]
        );
        assert_eq!(parse_snapshot_list_json("").unwrap(), vec![]);
        assert_eq!(parse_snapshot_list_json("\n").unwrap(), vec![]);
        assert_eq!(parse_snapshot_list_json("{}").unwrap(), vec![]);
        assert!(parse_snapshot_list_json("\"x\"").is_err());
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status("VM Windows 11 exist paused\n").unwrap(),
            VmStatus::Exists(PowerState::Paused)
        );
        assert_eq!(
            parse_status("VM my exist vm exist running\n").unwrap(),
            VmStatus::Exists(PowerState::Running)
        );
        assert_eq!(
            parse_status("VM {bd70007c-83b8-4642-b1d0-fa8ddfa0a4cf} deleted\n").unwrap(),
            VmStatus::Deleted
        );
        assert!(parse_status("Failed to get VM config").is_err());
    }

    #[test]
    fn version_lines() {
        assert_eq!(
            parse_version("prlctl version 26.3.2 (57398)\n").unwrap(),
            PrlctlVersion {
                major: 26,
                minor: 3,
                patch: 2,
                build: Some(57398)
            }
        );
        let v = parse_version("prlctl version 10.0.0 (12345) rev 123456").unwrap();
        assert_eq!((v.major, v.build), (10, Some(12345)));
        assert_eq!(v.to_string(), "10.0.0 (12345)");
        assert_eq!(parse_version("prlctl version 19.1.0").unwrap().build, None);
        assert!(parse_version("prlctl version x.y").is_err());
        assert!(parse_version("").is_err());
    }

    #[test]
    fn extract_and_strip_helpers() {
        assert_eq!(extract_json("ab[1,[2]]cd"), Some("[1,[2]]"));
        assert_eq!(extract_json("x{\"a\":1}y"), Some("{\"a\":1}"));
        assert_eq!(extract_json("]["), None);
        assert_eq!(extract_json("none"), None);
        assert_eq!(strip_control("a\u{1}b\tc\n\u{7f}"), "ab\tc\n");
        assert_eq!(strip_control("\u{1b}[0;31mred\u{1b}[0m [1]"), "red [1]");
    }
}
