//! The docs check (house rule "every documented command exists and works"): extracts the
//! command lines of this project's programs (`marblectl`, `marbled`, `marble-sim`,
//! `scripts/*.sh`, `cargo … -p/--bin/--test`) from Markdown — shell code blocks, `$ `
//! lines of untagged blocks, and inline code that is a command — and checks each one against
//! the real clap definitions (`marblectl::command`, `marbled::cli::command`,
//! `marble_sim::cli::command`), the scripts' files and usage text, and the workspace's
//! packages, binaries and test targets. Run by `tests/tests/docs_commands.rs`.
//!
//! Placeholders are substituted before parsing: `<vm>`, `VM`, `NAME`, `$VAR`, `…` become a
//! value (each of [`PLACEHOLDER_VALUES`] is tried, the same one everywhere in the line),
//! `[--opt X]` is taken as written without its brackets, `a|b` as its first alternative.
//! Inline code may name a command without its required arguments (`marblectl lock`) or a
//! flag without its value (`marblectl --timeout`); a code block line must parse in full.

use std::path::{Path, PathBuf};

/// Values tried for every placeholder of a line, in order: a name, a number, a duration, a
/// date. The first that makes the whole line parse wins.
pub const PLACEHOLDER_VALUES: [&str; 4] = ["x", "1", "1h", "2026-01-01"];

/// Marker standing for a placeholder in [`DocCommand::args`] until substitution.
const PLACEHOLDER: &str = "\u{1}PLACEHOLDER\u{1}";

/// Whose command line it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `marblectl` (any path ending in it).
    Marblectl,
    /// `marbled`.
    Marbled,
    /// `marble-sim`.
    MarbleSim,
    /// A script of the repository, by its path relative to the root (`scripts/demo.sh`).
    Script(String),
    /// `cargo`, for its `-p`, `--bin`, `--test` and `run … --` arguments.
    Cargo,
}

/// One command line found in a document.
#[derive(Debug, Clone)]
pub struct DocCommand {
    /// The document, relative to the repository root.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The command as written (one segment of the line).
    pub text: String,
    /// Inline code (may name a command without its required arguments).
    pub inline: bool,
    /// Whose command it is.
    pub program: Program,
    /// Arguments after the program, placeholders as `PLACEHOLDER` markers.
    pub args: Vec<String>,
}

impl DocCommand {
    /// `file:line: `text``, how failures name the command.
    pub fn location(&self) -> String {
        format!("{}:{}: `{}`", self.file, self.line, self.text)
    }

    /// The arguments with every placeholder replaced by `value`.
    pub fn args_with(&self, value: &str) -> Vec<String> {
        self.args
            .iter()
            .map(|a| a.replace(PLACEHOLDER, value))
            .collect()
    }
}

/// A shell token: its text, and whether it is an operator (`;`, `|`, `&&`, a redirection).
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Op(String),
}

/// Splits one shell line into words and operators. Quotes group; `#` at a word start ends
/// the line; `<word>` / `<two words>` is one placeholder; `;` always separates, `|`, `&&`,
/// `||`, `&` only as words of their own (`root|spi` is a doc's "one of").
fn tokenize(line: &str) -> Vec<Tok> {
    let chars: Vec<char> = line.chars().collect();
    let mut toks = Vec::new();
    let mut cur = String::new();
    let mut started = false;
    let mut i = 0;
    let flush = |cur: &mut String, started: &mut bool, toks: &mut Vec<Tok>| {
        if *started {
            let w = std::mem::take(cur);
            let op = matches!(w.as_str(), "|" | "||" | "&&" | "&");
            toks.push(if op { Tok::Op(w) } else { Tok::Word(w) });
        }
        *started = false;
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => flush(&mut cur, &mut started, &mut toks),
            '#' if !started => break,
            ';' => {
                flush(&mut cur, &mut started, &mut toks);
                toks.push(Tok::Op(";".into()));
            }
            '\'' | '"' => {
                started = true;
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if c == '"' && chars[i] == '$' {
                        cur.push_str(PLACEHOLDER);
                        i += skip_variable(&chars, i);
                        continue;
                    }
                    cur.push(chars[i]);
                    i += 1;
                }
            }
            '\\' if i + 1 < chars.len() => {
                started = true;
                cur.push(chars[i + 1]);
                i += 1;
            }
            '<' if chars.get(i + 1).is_some_and(|n| n.is_alphabetic()) => {
                match chars[i..].iter().position(|&x| x == '>') {
                    Some(end) => {
                        started = true;
                        cur.push_str(PLACEHOLDER);
                        i += end;
                    }
                    None => cur.push(c),
                }
            }
            '<' | '>' => {
                // A redirection: `2>&1`, `> file`, `>file`, `< file`; its target is dropped.
                if started && cur.chars().all(|d| d.is_ascii_digit()) {
                    cur.clear();
                    started = false;
                } else {
                    flush(&mut cur, &mut started, &mut toks);
                }
                while i + 1 < chars.len() && matches!(chars[i + 1], '>' | '&') {
                    i += 1;
                }
                toks.push(Tok::Op(">".into()));
            }
            '$' => {
                started = true;
                cur.push_str(PLACEHOLDER);
                i += skip_variable(&chars, i);
                continue;
            }
            _ => {
                started = true;
                cur.push(c);
            }
        }
        i += 1;
    }
    flush(&mut cur, &mut started, &mut toks);
    toks
}

/// Length of the variable reference at `chars[i]` (`$X`, `${X}`, `$(…)`, `$?`).
fn skip_variable(chars: &[char], i: usize) -> usize {
    let close = match chars.get(i + 1) {
        Some('{') => Some('}'),
        Some('(') => Some(')'),
        Some(c) if !(c.is_alphanumeric() || *c == '_') => return 2,
        None => return 1,
        _ => None,
    };
    match close {
        Some(close) => chars[i..]
            .iter()
            .position(|&c| c == close)
            .map_or(chars.len() - i, |p| p + 1),
        None => {
            1 + chars[i + 1..]
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_')
                .count()
        }
    }
}

/// The program a word names, if it is one of ours.
fn program_of(word: &str) -> Option<Program> {
    let base = word.rsplit('/').next().unwrap_or(word);
    match base {
        "marblectl" => Some(Program::Marblectl),
        "marbled" => Some(Program::Marbled),
        "marble-sim" => Some(Program::MarbleSim),
        "cargo" if word == "cargo" => Some(Program::Cargo),
        _ => {
            let rel = word.strip_prefix("./").unwrap_or(word);
            let name = rel.strip_prefix("scripts/")?;
            let ok = name.ends_with(".sh")
                && !name.contains('/')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            ok.then(|| Program::Script(rel.to_owned()))
        }
    }
}

/// One argument as documented → what to parse: brackets of optional parts dropped, the first
/// of `a|b`, placeholders marked. `None` drops the word (`...`, `…`, `[ARGS]`-style rests).
fn normalize_arg(word: &str) -> Option<String> {
    let w = word.trim_start_matches('[').trim_end_matches(']');
    if w.is_empty() || w == "..." || w == "…" {
        return None;
    }
    let w = if w.contains('|') && !w.contains(PLACEHOLDER) {
        w.split('|').next().unwrap_or(w)
    } else {
        w
    };
    let w = w.replace("...", PLACEHOLDER).replace('…', PLACEHOLDER);
    let all_caps = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    if all_caps(&w) {
        return Some(PLACEHOLDER.to_owned());
    }
    // `--opt=VALUE`, `KEY=VALUE`: placeholders on either side of `=`.
    if let Some((k, v)) = w.split_once('=') {
        let k = if all_caps(k) { PLACEHOLDER } else { k };
        let v = if all_caps(v) { PLACEHOLDER } else { v };
        return Some(format!("{k}={v}"));
    }
    Some(w)
}

/// The command segments of one shell line (prompt, `sudo`, `VAR=…` and `do`/`then` words
/// before the program are skipped; only segments whose program is ours are kept).
fn commands_of_line(
    file: &str,
    line_no: usize,
    line: &str,
    inline: bool,
    out: &mut Vec<DocCommand>,
) {
    let line = line.trim();
    let line = line.strip_prefix("$ ").unwrap_or(line);
    let toks = tokenize(line);
    let mut segments: Vec<Vec<String>> = vec![Vec::new()];
    let mut skip_next = false;
    for t in toks {
        match t {
            Tok::Op(op) => {
                if op == ">" {
                    skip_next = true;
                } else if let Some(last) = segments.last()
                    && !last.is_empty()
                {
                    segments.push(Vec::new());
                }
            }
            Tok::Word(w) => {
                if std::mem::take(&mut skip_next) {
                    continue;
                }
                if let Some(seg) = segments.last_mut() {
                    seg.push(w);
                }
            }
        }
    }
    for mut seg in segments {
        let start = seg.iter().position(|w| {
            !(w == "sudo"
                || w == "do"
                || w == "then"
                || w == "exec"
                || (w.contains('=')
                    && !w.starts_with('-')
                    && !w.contains('/')
                    && program_of(w).is_none()))
        });
        let Some(mut start) = start else { continue };
        let program = match program_of(&seg[start]) {
            Some(p) => p,
            None if inline && start == 0 && is_marblectl_shorthand(&seg) => {
                // `vm stop VM` in prose: a marblectl command without its program name.
                seg.insert(0, "marblectl".to_owned());
                start = 0;
                Program::Marblectl
            }
            None => continue,
        };
        let args: Vec<String> = seg[start + 1..]
            .iter()
            .filter_map(|w| normalize_arg(w))
            .collect();
        // A bare program name in prose is not a command line, but a script named must exist.
        let bare = args.is_empty() && !matches!(program, Program::Script(_));
        if inline && (bare || is_prose(&seg[start + 1..])) {
            continue; // a bare program name, or a message or output quoted in prose
        }
        out.push(DocCommand {
            file: file.to_owned(),
            line: line_no,
            text: seg[start..].join(" ").replace(PLACEHOLDER, "…"),
            inline,
            program,
            args,
        });
    }
}

/// A block's shell variable naming one of our programs (`marblectl="${MARBLECTL:-/usr/local/
/// bin/marblectl}"`) is recorded; a line starting with `"$marblectl"` gets the program back.
fn resolve_alias(line: &str, aliases: &mut Vec<(String, String)>) -> String {
    let trimmed = line.trim();
    if let Some((name, value)) = trimmed.split_once('=')
        && !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        let value = value.trim_matches(|c| "\"'{}".contains(c));
        let program = ["marblectl", "marbled", "marble-sim"]
            .into_iter()
            .find(|p| value.ends_with(&format!("/{p}")) || value.ends_with(&format!("-{p}")));
        if let Some(p) = program {
            aliases.push((name.to_owned(), p.to_owned()));
        }
        return line.to_owned();
    }
    for (name, program) in aliases.iter() {
        for form in [
            format!("\"${name}\""),
            format!("\"${{{name}}}\""),
            format!("${name}"),
        ] {
            if let Some(rest) = trimmed.strip_prefix(&form)
                && rest.starts_with(' ')
            {
                return format!("{program}{rest}");
            }
        }
    }
    line.to_owned()
}

/// Inline code like `vm stop VM [--force]` or `request-slot VM`: a `marblectl` command
/// written without the program. Taken as one when its first word is a top-level subcommand
/// with more words after it (not one of the single words also used in prose: `status`,
/// `install`, …) and its second word is an option, a placeholder, or one of the group's own
/// subcommands (`vm list`; `host idle` or `vm = "any"` are prose).
fn is_marblectl_shorthand(words: &[String]) -> bool {
    const GROUPS: [&str; 11] = [
        "vm",
        "request-slot",
        "lock",
        "unlock",
        "drain",
        "events",
        "image",
        "host",
        "fleet",
        "migrate",
        "runner",
    ];
    let (Some(first), Some(second)) = (words.first(), words.get(1)) else {
        return false;
    };
    if !GROUPS.contains(&first.as_str()) {
        return false;
    }
    let second = second.trim_start_matches('[');
    let cli = marblectl::command();
    let Some(group) = cli.find_subcommand(first) else {
        return false;
    };
    let subcommand = second
        .split('|')
        .next()
        .is_some_and(|s| group.find_subcommand(s).is_some());
    let placeholder = normalize_arg(second).is_some_and(|a| a == PLACEHOLDER)
        || (second.starts_with('<') && second.ends_with('>'));
    second.starts_with('-') || subcommand || placeholder || second.starts_with(PLACEHOLDER)
}

/// Inline code after a program name that is a quoted message or output, not a command: a
/// word ending in `:` or `,`, a parenthesis, or a first word starting with a digit
/// (`marblectl 0.1.0 (commit abc1234, protocol 1.5)`, `marble-sim replay-all: --set …`).
fn is_prose(args: &[String]) -> bool {
    let first_digit = args
        .first()
        .is_some_and(|a| a.starts_with(|c: char| c.is_ascii_digit()));
    first_digit
        || args
            .iter()
            .any(|a| a.ends_with(':') || a.ends_with(',') || a.contains('(') || a.contains(')'))
}

/// Every command line of one Markdown document (`file` is how failures name it).
pub fn extract(file: &str, text: &str) -> Vec<DocCommand> {
    let mut out = Vec::new();
    let mut fence: Option<String> = None; // the info string of the open block
    let mut pending = String::new(); // a `\`-continued line
    let mut pending_line = 0;
    let mut span: Option<(usize, String)> = None; // an open inline code span: line, text
    let mut aliases: Vec<(String, String)> = Vec::new(); // `x="…/marblectl"` of this block
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let trimmed = raw.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            span = None;
            aliases.clear();
            fence = match fence {
                Some(_) => None,
                None => Some(info.trim().to_owned()),
            };
            pending.clear();
            continue;
        }
        match fence.as_deref() {
            Some(info) => {
                let shell = matches!(info, "sh" | "bash" | "shell" | "console");
                let plain = info.is_empty();
                if !(shell || plain) {
                    continue;
                }
                if plain && !trimmed.starts_with("$ ") && pending.is_empty() {
                    continue; // output lines of an untagged block
                }
                if pending.is_empty() {
                    pending_line = line_no;
                }
                let body = trimmed.trim_end();
                if let Some(head) = body.strip_suffix('\\') {
                    pending.push_str(head);
                    pending.push(' ');
                    continue;
                }
                pending.push_str(body);
                let line = resolve_alias(&pending, &mut aliases);
                commands_of_line(file, pending_line, &line, false, &mut out);
                pending.clear();
            }
            None => {
                if trimmed.is_empty() {
                    span = None; // a span never crosses a paragraph
                }
                for (i, part) in raw.split('`').enumerate() {
                    if i > 0 {
                        span = match span.take() {
                            Some((start, text)) => {
                                commands_of_line(file, start, &text, true, &mut out);
                                None
                            }
                            None => Some((line_no, String::new())),
                        };
                    }
                    if let Some((_, text)) = span.as_mut() {
                        if !text.is_empty() {
                            text.push(' ');
                        }
                        text.push_str(part);
                    }
                }
            }
        }
    }
    out
}

/// README.md and every `docs/**/*.md` of the repository, relative paths sorted.
pub fn doc_files(repo: &Path) -> Vec<String> {
    let mut out = vec!["README.md".to_owned()];
    let mut stack = vec![repo.join("docs")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "md")
                && let Ok(rel) = p.strip_prefix(repo)
            {
                out.push(rel.display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Checks one command; `Err` says what is wrong (clap's message, a missing file, …).
pub fn check(cmd: &DocCommand, repo: &Path) -> Result<(), String> {
    match &cmd.program {
        Program::Marblectl => check_clap(&marblectl::command(), cmd, &cmd.args),
        Program::Marbled => check_clap(&marbled::cli::command(), cmd, &cmd.args),
        Program::MarbleSim => check_clap(&marble_sim::cli::command(), cmd, &cmd.args),
        Program::Script(path) => check_script(repo, path, &cmd.args),
        Program::Cargo => check_cargo(repo, cmd),
    }
}

/// Parses `args` with `command`, trying each placeholder value; inline code may stop short.
/// A placeholder given to an option with a fixed set of values (`--shape NAME`) takes the
/// first of them.
fn check_clap(command: &clap::Command, cmd: &DocCommand, args: &[String]) -> Result<(), String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let mut first_err = None;
    for value in PLACEHOLDER_VALUES {
        let mut argv: Vec<String> = args.iter().map(|a| a.replace(PLACEHOLDER, value)).collect();
        // Bounded: each round fixes one placeholder of an enum-valued option.
        for _ in 0..=args.len() {
            let full = std::iter::once(command.get_name().to_owned()).chain(argv.iter().cloned());
            let err = match command.clone().try_get_matches_from(full) {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            let last_is_flag = args.last().is_some_and(|a| a.starts_with('-'));
            let tolerated = match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => true,
                ErrorKind::MissingRequiredArgument
                | ErrorKind::MissingSubcommand
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => cmd.inline,
                ErrorKind::InvalidValue => cmd.inline && last_is_flag,
                _ => false,
            };
            if tolerated {
                return Ok(());
            }
            let flag = match err.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(a)) => a.split(' ').next().map(str::to_owned),
                _ => None,
            };
            let valid = match err.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(v)) => v.first().cloned(),
                _ => None,
            };
            let fix = (1..args.len()).find(|&i| {
                args[i] == PLACEHOLDER && argv[i] == value && Some(&args[i - 1]) == flag.as_ref()
            });
            match (fix, valid) {
                (Some(i), Some(v)) if err.kind() == ErrorKind::InvalidValue => argv[i] = v,
                _ => {
                    first_err.get_or_insert(err);
                    break;
                }
            }
        }
    }
    Err(first_err.map_or_else(String::new, |e| {
        let text = e.to_string();
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information"))
            .collect::<Vec<_>>()
            .join(" / ")
    }))
}

/// A script: the file exists and is executable, and each documented `--flag` is in its text
/// (its usage comment or argument parsing).
fn check_script(repo: &Path, path: &str, args: &[String]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let file = repo.join(path);
    let meta = std::fs::metadata(&file).map_err(|e| format!("{path}: {e}"))?;
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{path} is not executable"));
    }
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{path}: {e}"))?;
    for a in args {
        let flag = a.split('=').next().unwrap_or(a);
        if flag.starts_with("--") && flag.len() > 2 && !text.contains(flag) {
            return Err(format!("{path} does not know `{flag}` (not in its usage)"));
        }
    }
    Ok(())
}

/// The workspace's packages and their directories.
const PACKAGES: [(&str, &str); 5] = [
    ("marble-proto", "marble-proto"),
    ("marbled", "marbled"),
    ("marble-sim", "marble-sim"),
    ("marblectl", "marblectl"),
    ("marble-tests", "tests"),
];

/// The binaries of a package directory: `src/main.rs` (named after the package) and
/// `src/bin/*.rs`.
fn bins_of(repo: &Path, package: &str, dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    if repo.join(dir).join("src/main.rs").exists() {
        out.push(package.to_owned());
    }
    if let Ok(entries) = std::fs::read_dir(repo.join(dir).join("src/bin")) {
        for e in entries.flatten() {
            if let Some(stem) = e.path().file_stem() {
                out.push(stem.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// `cargo build|run|test|check|clippy|tree|bench|doc …`: `-p` names a workspace package,
/// `--bin` one of its binaries, `--test` one of its test targets, and `cargo run`'s
/// arguments after `--` parse as that binary's command line.
fn check_cargo(repo: &Path, cmd: &DocCommand) -> Result<(), String> {
    let Some(sub) = cmd.args.first() else {
        return Ok(());
    };
    if !matches!(
        sub.as_str(),
        "build" | "run" | "test" | "check" | "clippy" | "tree" | "bench" | "doc"
    ) {
        return Ok(());
    }
    let split = cmd.args.iter().position(|a| a == "--");
    let (own, rest) = match split {
        Some(i) => (&cmd.args[1..i], &cmd.args[i + 1..]),
        None => (&cmd.args[1..], &[][..]),
    };
    let value_of = |flags: &[&str]| {
        own.iter()
            .position(|a| flags.contains(&a.as_str()))
            .and_then(|i| own.get(i + 1))
            .cloned()
    };
    let package = value_of(&["-p", "--package"]);
    let dirs: Vec<(&str, &str)> = match &package {
        Some(p) => {
            let found: Vec<_> = PACKAGES.iter().copied().filter(|(n, _)| n == p).collect();
            if found.is_empty() {
                return Err(format!("no package `{p}` in the workspace"));
            }
            found
        }
        None => PACKAGES.to_vec(),
    };
    let bin = value_of(&["--bin"]);
    if let Some(b) = &bin
        && !dirs.iter().any(|(n, d)| bins_of(repo, n, d).contains(b))
    {
        return Err(format!("no binary `{b}` in {dirs:?}"));
    }
    if let Some(t) = value_of(&["--test"]) {
        let found = dirs.iter().any(|(_, d)| {
            let tests = repo.join(d).join("tests");
            tests.join(format!("{t}.rs")).exists() || tests.join(&t).join("main.rs").exists()
        });
        if !found {
            return Err(format!("no test target `{t}` in {dirs:?}"));
        }
    }
    if sub == "run" {
        let target = bin.or(package).unwrap_or_default();
        let run = DocCommand {
            args: rest.to_vec(),
            ..cmd.clone()
        };
        return match target.as_str() {
            "marblectl" => check_clap(&marblectl::command(), &run, rest),
            "marbled" => check_clap(&marbled::cli::command(), &run, rest),
            "marble-sim" => check_clap(&marble_sim::cli::command(), &run, rest),
            _ => Ok(()),
        };
    }
    Ok(())
}

/// Every command of README.md and docs/**/*.md, checked; one line per failure
/// (`file:line: `command`: error`).
pub fn check_repo(repo: &Path) -> (usize, Vec<String>) {
    let mut count = 0;
    let mut failures = Vec::new();
    for rel in doc_files(repo) {
        let path: PathBuf = repo.join(&rel);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{rel}: cannot read: {e}"));
                continue;
            }
        };
        for cmd in extract(&rel, &text) {
            count += 1;
            if let Err(e) = check(&cmd, repo) {
                failures.push(format!("{}: {e}", cmd.location()));
            }
        }
    }
    (count, failures)
}
