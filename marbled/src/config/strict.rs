//! The one strict TOML loader, for `marbled.toml` and any other TOML file MARBLE reads (the
//! simulator's traces): an unknown key is an error naming it, never silently ignored.
//!
//! Every problem is reported at once: unknown keys are collected with `serde_ignored` (two
//! typos give two problems), then the caller's semantic check runs over the whole value and
//! its problems follow. A type error (a string where a number belongs) stops
//! deserialisation, so only the first of those is reported, with its key and line.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// One problem found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path (`scheduler.capacity`, `root_jobs.0.label`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a TOML file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrictError {
    /// Not valid TOML, or a value of the wrong type.
    #[error("{}: {}{message}", path.display(), key.as_deref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Syntax {
        /// The file (only used in messages).
        path: PathBuf,
        /// The dotted key of the bad value, when it could be told from the error's position.
        key: Option<String>,
        /// toml's message (shows the line).
        message: String,
    },
    /// Unknown keys, then the semantic check's problems.
    #[error("{}: {}", path.display(), render_problems(.problems))]
    Invalid {
        /// The file (only used in messages).
        path: PathBuf,
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
}

/// `N problem(s):` and one indented line per problem.
pub fn render_problems(problems: &[ConfigProblem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("\n  - {p}")).collect();
    format!("{} problem(s):{}", problems.len(), lines.concat())
}

/// Parse TOML `text` into `T`, refusing unknown keys; `origin` is only used in messages.
pub fn from_str_strict<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, StrictError> {
    from_str_checked(text, origin, |_: &T| Vec::new())
}

/// [`from_str_strict`] plus a semantic check: unknown keys and `check`'s problems are
/// reported together, unknown keys first.
pub fn from_str_checked<T: DeserializeOwned>(
    text: &str,
    origin: &Path,
    check: impl FnOnce(&T) -> Vec<ConfigProblem>,
) -> Result<T, StrictError> {
    let mut problems = Vec::new();
    let deserializer = toml::Deserializer::new(text);
    let value: T = serde_ignored::deserialize(deserializer, |key| {
        problems.push(ConfigProblem {
            key: user_key(&key.to_string()),
            message: "unknown key".into(),
        });
    })
    .map_err(|err| StrictError::Syntax {
        path: origin.to_owned(),
        key: err.span().and_then(|span| key_at(text, span.start)),
        message: err.to_string().trim().to_owned(),
    })?;
    problems.extend(check(&value));
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(StrictError::Invalid {
            path: origin.to_owned(),
            problems,
        })
    }
}

/// serde_ignored writes an `Option` layer (an optional section) as a `?` segment; the key a
/// user must fix has none.
fn user_key(path: &str) -> String {
    path.split('.')
        .filter(|s| *s != "?")
        .collect::<Vec<_>>()
        .join(".")
}

/// The dotted key whose value starts at byte `offset`: the `key =` on that line under the
/// nearest `[table]` or `[[array]]` header above it. toml's message shows the line but not
/// always the key's full path.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?;
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let header = before
        .get(..line_start)?
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| h.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    Some(match header {
        Some(h) if !h.is_empty() => format!("{h}.{key}"),
        _ => key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Doc {
        a: Section,
        opt: Option<Section>,
        list: Vec<Section>,
        map: BTreeMap<String, u32>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Section {
        n: u32,
    }

    fn parse(text: &str) -> Result<Doc, StrictError> {
        from_str_strict(text, Path::new("t.toml"))
    }

    fn keys(err: StrictError) -> Vec<String> {
        match err {
            StrictError::Invalid { problems, .. } => problems.into_iter().map(|p| p.key).collect(),
            other => panic!("not invalid: {other}"),
        }
    }

    #[test]
    fn known_keys_parse() {
        let doc = parse("[a]\nn = 1\n[opt]\nn = 2\n[[list]]\nn = 3\n[map]\nx = 4\n").unwrap();
        assert_eq!(doc.a.n, 1);
        assert_eq!(doc.opt, Some(Section { n: 2 }));
        assert_eq!(doc.list, [Section { n: 3 }]);
        assert_eq!(doc.map["x"], 4);
    }

    #[test]
    fn every_unknown_key_is_named_without_option_markers() {
        let err = parse("top = 1\n[a]\nm = 1\n[opt]\nnn = 2\n[[list]]\nk = 3\n")
            .expect_err("unknown keys");
        assert_eq!(keys(err), ["top", "a.m", "opt.nn", "list.0.k"]);
    }

    #[test]
    fn checked_problems_follow_the_unknown_keys() {
        let err = from_str_checked("[a]\nn = 0\nz = 1\n", Path::new("t.toml"), |d: &Doc| {
            if d.a.n == 0 {
                vec![ConfigProblem {
                    key: "a.n".into(),
                    message: "must be at least 1".into(),
                }]
            } else {
                Vec::new()
            }
        })
        .expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "t.toml: 2 problem(s):\n  - a.z: unknown key\n  - a.n: must be at least 1"
        );
    }

    #[test]
    fn a_type_error_names_its_key_and_line() {
        let err = parse("[a]\n\nn = \"one\"\n").expect_err("type error");
        let StrictError::Syntax { key, message, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(key.as_deref(), Some("a.n"));
        assert!(message.contains("line 3"), "{message}");
        assert!(err.to_string().starts_with("t.toml: a.n: "), "{err}");
        let err = parse("top = [\n").expect_err("not toml");
        assert!(matches!(err, StrictError::Syntax { .. }), "{err}");
    }
}
