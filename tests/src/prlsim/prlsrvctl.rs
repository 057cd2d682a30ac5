//! `prlsrvctl info [--license] [-j|--json] [-f|--full]` (reference/prlctl.md §10), answered
//! by the `fake-prlctl` binary when it runs under the name `prlsrvctl`. The version comes
//! from the simulated `prlctl --version` line, the edition from `Settings::edition`. Yes/no
//! fields of the licence JSON are the strings `"yes"`/`"no"`, as PD prints them.
//! Other actions are "Unrecognized option", exit 255, as on PD for unknown words.

use super::model::SimState;
use super::prlctl::{Outcome, unrecognized};

/// `26.3.2-57398` from `prlctl version 26.3.2 (57398)`.
fn version(st: &SimState) -> String {
    let line = &st.settings.version_line;
    let mut words = line.split_whitespace().skip(2);
    let v = words.next().unwrap_or("0.0.0");
    let build = words
        .next()
        .map(|b| b.trim_matches(['(', ')']))
        .unwrap_or("0");
    format!("{v}-{build}")
}

/// Answer one `prlsrvctl` command line.
pub fn answer(st: &mut SimState, args: &[String]) -> Outcome {
    let Some(action) = args.first() else {
        return Outcome::err("prlsrvctl: no action given", 255);
    };
    if action != "info" {
        return unrecognized(action);
    }
    let (mut license, mut json) = (false, false);
    for a in &args[1..] {
        match a.as_str() {
            "--license" => license = true,
            "-j" | "--json" => json = true,
            "-f" | "--full" => {}
            other => return unrecognized(other),
        }
    }
    let edition = st.settings.edition.clone();
    let version = version(st);
    let home = st
        .settings
        .vm_home
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let text = match (license, json) {
        (true, true) => format!(
            "{{\n\t\"status\": \"ACTIVE\",\n\t\"serial\": \"XXXXXX-XXXXXX\",\n\t\"expiration\": \"2027-01-01 00:00:00\",\n\t\"edition\": \"{edition}\",\n\t\"is_trial\": \"no\",\n\t\"is_volume\": \"yes\"\n}}\n"
        ),
        (true, false) => {
            format!("License: state='valid' edition=\"{edition}\" restricted='false'\n")
        }
        (false, true) => format!(
            "{{\n\t\"ID\": \"{{8e1a6bbd-0000-4000-8000-000000000001}}\",\n\t\"Hostname\": \"simulated\",\n\t\"Version\": \"Desktop {version}\",\n\t\"VM home\": \"{home}\"\n}}\n"
        ),
        (false, false) => format!(
            "ID: {{8e1a6bbd-0000-4000-8000-000000000001}}\nHostname: simulated\nVersion: Desktop {version}\nVM home: {home}\nLicense: state='valid' restricted='false'\n"
        ),
    };
    Outcome::ok(text)
}
