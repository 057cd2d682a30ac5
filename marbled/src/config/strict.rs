//! The one strict TOML loader, for `marbled.toml` and any other TOML file MARBLE reads (the
//! simulator's traces): an unknown key is an error naming it, never silently ignored.
//!
//! Every problem is reported at once, each with its dotted key and line: unknown keys are
//! collected with `serde_ignored` (two typos give two problems); a type error (a string where
//! a number belongs) stops serde's deserialisation, so the loader blanks that entry (spaces,
//! so every offset and line stays where it was), notes the error and deserialises again, the
//! entry then taking its default — every type error in one run. Unknown keys and type errors
//! come in file order, then the caller's semantic check runs over the value and its problems
//! follow. Only a file that is not TOML at all (or an error the loader cannot step over, such
//! as a missing required key of a table) stops at its first problem.

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

/// [`from_str_strict`] plus a semantic check: unknown keys and type errors (in file order)
/// and `check`'s problems are reported together, `check`'s last.
pub fn from_str_checked<T: DeserializeOwned>(
    text: &str,
    origin: &Path,
    check: impl FnOnce(&T) -> Vec<ConfigProblem>,
) -> Result<T, StrictError> {
    let (value, mut problems) = from_str_collect(text, origin)?;
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

/// At most this many type errors are stepped over in one file (each costs a parse).
const MAX_TYPE_ERRORS: usize = 100;

/// Parse TOML `text` into `T`, collecting every unknown key and type error (file order, each
/// with its line) instead of refusing: the value has defaults where the errors were, for a
/// semantic check to run on. `Err` only for a file that is not TOML, or a type error the
/// loader cannot step over (then with the problems found up to it).
pub fn from_str_collect<T: DeserializeOwned>(
    text: &str,
    origin: &Path,
) -> Result<(T, Vec<ConfigProblem>), StrictError> {
    // Not TOML at all: there are no entries to step over.
    if let Err(err) = text.parse::<toml::Table>() {
        return Err(StrictError::Syntax {
            path: origin.to_owned(),
            key: err.span().and_then(|span| key_at(text, span.start)),
            message: err.to_string().trim().to_owned(),
        });
    }
    let entries = entry_keys(text);
    let mut patched = text.to_owned();
    // (line, problem): sorted into file order at the end.
    let mut type_errors: Vec<(usize, ConfigProblem)> = Vec::new();
    for _ in 0..=MAX_TYPE_ERRORS {
        let mut unknown = Vec::new();
        let result: Result<T, toml::de::Error> =
            serde_ignored::deserialize(toml::Deserializer::new(&patched), |key| {
                unknown.push(user_key(&key.to_string()));
            });
        let err = match result {
            Ok(value) => {
                let mut found: Vec<(usize, ConfigProblem)> = unknown
                    .into_iter()
                    .map(|key| {
                        let line = line_of_key(&entries, &key);
                        let message = match line {
                            Some(line) => format!("unknown key (line {line})"),
                            None => "unknown key".to_owned(),
                        };
                        (line.unwrap_or(0), ConfigProblem { key, message })
                    })
                    .collect();
                found.append(&mut type_errors);
                // Stable: unknown keys without a line stay first, in serde's order.
                found.sort_by_key(|(line, _)| *line);
                return Ok((value, found.into_iter().map(|(_, p)| p).collect()));
            }
            Err(err) => err,
        };
        // A missing key is not in any entry: blanking one would not bring it back.
        let steppable = !err.message().starts_with("missing field");
        let step = err
            .span()
            .filter(|_| steppable)
            .and_then(|span| entry_at(&patched, &entries, span));
        let Some((entry, range)) = step else {
            // Cannot step over it: report it with what was found before it.
            let key = err
                .span()
                .and_then(|span| key_at(text, span.start))
                .unwrap_or_else(|| "(file)".to_owned());
            let line = err.span().map_or(0, |span| line_col(text, span.start).0);
            type_errors.push((line, type_problem(key, &err, text)));
            break;
        };
        type_errors.push((entry.line, type_problem(entry.key.clone(), &err, text)));
        blank(&mut patched, range);
    }
    type_errors.sort_by_key(|(line, _)| *line);
    Err(StrictError::Invalid {
        path: origin.to_owned(),
        problems: type_errors.into_iter().map(|(_, p)| p).collect(),
    })
}

/// A type error as a problem: its key, serde's message and where it is.
fn type_problem(key: String, err: &toml::de::Error, text: &str) -> ConfigProblem {
    let at = err.span().map_or_else(String::new, |span| {
        let (line, col) = line_col(text, span.start);
        format!(" (line {line}, column {col})")
    });
    ConfigProblem {
        key,
        message: format!("{}{at}", err.message().trim()),
    }
}

/// 1-based line and column of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// One `key = value` line of the file, with its full dotted key as serde names it
/// (`scheduler.capacity`, `scheduler.warm.0.count`) and its 1-based line.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    line: usize,
    /// A `[table]` / `[[array]]` header rather than a `key =` line.
    header: bool,
    /// Byte offset where the line starts.
    start: usize,
}

/// Every header and `key =` line of `text`, in order. Best effort (a key inside a
/// multi-line value can be taken for one); used only to name lines in messages and to find
/// the entry a type error is in.
fn entry_keys(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut table = String::new();
    let mut arrays: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let mut start = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = unquote_path(name);
            let n = arrays.entry(name.clone()).or_insert(0);
            table = format!("{name}.{n}");
            *n += 1;
            out.push(Entry {
                key: name,
                line: i + 1,
                header: true,
                start,
            });
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = unquote_path(name);
            out.push(Entry {
                key: table.clone(),
                line: i + 1,
                header: true,
                start,
            });
        } else if !line.starts_with('#')
            && let Some((key, _)) = line.split_once('=')
            && !key.trim().is_empty()
        {
            let key = unquote_path(key);
            let key = if table.is_empty() {
                key
            } else {
                format!("{table}.{key}")
            };
            out.push(Entry {
                key,
                line: i + 1,
                header: false,
                start,
            });
        }
        start += raw.len() + 1;
    }
    out
}

/// `a . "b.c"` → `a.b.c` as serde_ignored writes it (quotes dropped).
fn unquote_path(path: &str) -> String {
    path.split('.')
        .map(|part| part.trim().trim_matches('"').trim_matches('\''))
        .collect::<Vec<_>>()
        .join(".")
}

/// The line of the entry named `key` (or of the header of the table it is).
fn line_of_key(entries: &[Entry], key: &str) -> Option<usize> {
    entries.iter().find(|e| e.key == key).map(|e| e.line)
}

/// The `key =` entry a type error at `span` is in, and the byte range to blank to step over
/// it: from its line's start to the end of the line where the value ends. `None` when the
/// error is not inside a `key =` entry (a table header, a missing key).
fn entry_at(
    text: &str,
    entries: &[Entry],
    span: std::ops::Range<usize>,
) -> Option<(Entry, std::ops::Range<usize>)> {
    let entry = entries.iter().rev().find(|e| e.start <= span.start)?;
    if entry.header {
        return None;
    }
    let last = span.end.max(span.start + 1).min(text.len());
    let end = text
        .get(last.saturating_sub(1)..)?
        .find('\n')
        .map_or(text.len(), |i| last.saturating_sub(1) + i);
    Some((entry.clone(), entry.start..end))
}

/// Replace `range` of `text` with spaces, one per byte (newlines kept): offsets and lines
/// stay put.
fn blank(text: &mut String, range: std::ops::Range<usize>) {
    let blanked: String = text
        .get(range.clone())
        .unwrap_or_default()
        .bytes()
        .map(|b| if b == b'\n' { '\n' } else { ' ' })
        .collect();
    text.replace_range(range, &blanked);
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
            "t.toml: 2 problem(s):\n  - a.z: unknown key (line 3)\n  - a.n: must be at least 1"
        );
    }

    #[test]
    fn a_type_error_names_its_key_and_line() {
        let err = parse("[a]\n\nn = \"one\"\n").expect_err("type error");
        let StrictError::Invalid { problems, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "a.n");
        assert!(problems[0].message.contains("line 3"), "{problems:?}");
        assert!(
            err.to_string()
                .starts_with("t.toml: 1 problem(s):\n  - a.n: "),
            "{err}"
        );
        let err = parse("top = [\n").expect_err("not toml");
        assert!(matches!(err, StrictError::Syntax { .. }), "{err}");
    }

    #[test]
    fn every_type_error_and_unknown_key_is_reported_in_file_order_with_its_line() {
        let text = "[a]\nn = \"one\"\nzz = 1\n[opt]\nn = [1,\n 2]\n[[list]]\nn = 3\n\
                    [[list]]\nn = true\n[map]\nx = \"é\"\ny = 5\n";
        let err = parse(text).expect_err("five problems");
        let StrictError::Invalid { problems, .. } = &err else {
            panic!("{err}")
        };
        let got: Vec<(&str, bool)> = problems
            .iter()
            .map(|p| (p.key.as_str(), p.message.contains("line ")))
            .collect();
        assert_eq!(
            got,
            [
                ("a.n", true),
                ("a.zz", true),
                ("opt.n", true),
                ("list.1.n", true),
                ("map.x", true)
            ],
            "{err}"
        );
        for (problem, line) in problems.iter().zip([2, 3, 5, 10, 12]) {
            assert!(
                problem.message.contains(&format!("line {line}")),
                "{problem} is on line {line}"
            );
        }
        assert!(problems[0].message.contains("invalid type"), "{err}");
        assert_eq!(problems[1].message, "unknown key (line 3)");
    }

    #[test]
    fn type_errors_come_with_the_semantic_problems_of_the_rest() {
        let err = from_str_checked(
            "[a]\nn = \"x\"\n[opt]\nn = 0\n",
            Path::new("t.toml"),
            |d: &Doc| {
                // The bad `a.n` took its default; the check still sees `opt`.
                assert_eq!(d.a.n, 0);
                match &d.opt {
                    Some(Section { n: 0 }) => vec![ConfigProblem {
                        key: "opt.n".into(),
                        message: "must be at least 1".into(),
                    }],
                    _ => Vec::new(),
                }
            },
        )
        .expect_err("invalid");
        assert_eq!(
            err.to_string().lines().count(),
            3,
            "a header and two problems: {err}"
        );
        assert!(err.to_string().contains("  - a.n: invalid type"), "{err}");
        assert!(
            err.to_string().contains("  - opt.n: must be at least 1"),
            "{err}"
        );
    }
}
