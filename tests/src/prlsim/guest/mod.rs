//! The scripted guest's shell: a small POSIX-ish interpreter over the VM's guest filesystem
//! (a host directory, see [`Vm::guest_root`]) and its scripted processes.
//!
//! Supported syntax: words with `'…'`, `"…"` and `\` quoting; `;` or a newline, `&&`, `||`, `|`; redirects
//! `>`, `>>`, `<`, `2>`, `2>>`, `2>&1`; `~` for the user's home. No variables, globs or
//! subshells: commands outside [`builtins`] exit 127 with `command not found`.

use std::path::{Component, Path, PathBuf};

use super::exec::GuestUser;
use super::model::Vm;

pub mod builtins;
pub mod procs;

/// Result of running a guest command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ran {
    /// Guest stdout.
    pub stdout: Vec<u8>,
    /// Guest stderr.
    pub stderr: Vec<u8>,
    /// Exit status.
    pub exit: i32,
    /// Simulated time spent (`sleep`).
    pub delay_ms: u64,
}

/// Mutable context of one exec session.
pub struct Session<'a> {
    /// The VM.
    pub vm: &'a mut Vm,
    /// Wall-clock ms.
    pub now: u64,
    /// Who runs the command.
    pub user: GuestUser,
    /// The session's stdin, consumed by the first command that reads it.
    pub stdin: Option<Vec<u8>>,
    /// Current directory (guest path).
    pub cwd: String,
    /// File-creation mask.
    pub umask: u32,
    /// Accumulated `sleep`.
    pub delay_ms: u64,
    /// Set by `exit N`.
    pub exited: Option<i32>,
}

impl Session<'_> {
    /// Host path of a guest path (relative to the cwd; `..` cannot escape the guest root).
    pub fn host_path(&self, guest: &str) -> PathBuf {
        self.vm
            .guest_root()
            .join(self.normalize(guest).trim_start_matches('/'))
    }

    /// Absolute, normalized guest path.
    pub fn normalize(&self, guest: &str) -> String {
        let home = self.home();
        let p = if guest == "~" {
            home
        } else if let Some(rest) = guest.strip_prefix("~/") {
            format!("{home}/{rest}")
        } else if guest.starts_with('/') {
            guest.to_owned()
        } else {
            format!("{}/{guest}", self.cwd)
        };
        let mut parts: Vec<String> = Vec::new();
        for c in Path::new(&p).components() {
            match c {
                Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
                Component::ParentDir => {
                    parts.pop();
                }
                _ => {}
            }
        }
        format!("/{}", parts.join("/"))
    }

    /// The user's home directory.
    pub fn home(&self) -> String {
        if self.user.uid == 0 {
            "/var/root".to_owned()
        } else {
            format!("/Users/{}", self.user.name)
        }
    }

    /// Take the session stdin (empty after the first reader).
    pub fn take_stdin(&mut self) -> Vec<u8> {
        self.stdin.take().unwrap_or_default()
    }
}

/// Run an exec command (see the argument model in [`super::exec`]) in `vm`.
pub fn run(vm: &mut Vm, cmd: &[String], stdin: Vec<u8>, now: u64, user: &GuestUser) -> Ran {
    let cwd = if user.uid == 0 {
        "/var/root".to_owned()
    } else {
        format!("/Users/{}", user.name)
    };
    let mut s = Session {
        vm,
        now,
        user: user.clone(),
        stdin: Some(stdin),
        cwd,
        umask: 0o022,
        delay_ms: 0,
        exited: None,
    };
    let mut ran = if let [line] = cmd {
        run_script(&mut s, line)
    } else {
        run_argv(&mut s, cmd, None)
    };
    ran.delay_ms = s.delay_ms;
    ran
}

/// Whether running `cmd` may read the session's stdin (so the caller collects it first).
/// Over-approximates: any `cat`, `tee`, `grep`, `wc`, `sh -s` or `<` anywhere counts.
pub fn needs_stdin(cmd: &[String]) -> bool {
    cmd.iter().flat_map(|a| tokenize(a)).any(|t| {
        let base = t.text.rsplit('/').next().unwrap_or(&t.text).to_owned();
        matches!(base.as_str(), "cat" | "tee" | "grep" | "wc" | "-s" | "<")
    })
}

/// One shell token; operators are unquoted tokens with `op` set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Text after quote removal.
    pub text: String,
    /// Whether this is an operator (`;`, `&&`, `||`, `|`, redirects).
    pub op: bool,
}

/// Split a command line into words and operators.
pub fn tokenize(line: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let flush = |cur: &mut String, in_word: &mut bool, out: &mut Vec<Token>| {
        if *in_word {
            out.push(Token {
                text: std::mem::take(cur),
                op: false,
            });
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => flush(&mut cur, &mut in_word, &mut out),
            // A newline ends a command like `;` (scripts sent to `sh -s`), except after an
            // operator (`a &&` newline `b` continues the list).
            '\n' => {
                flush(&mut cur, &mut in_word, &mut out);
                if out.last().is_some_and(|t| !t.op) {
                    out.push(Token {
                        text: ";".to_owned(),
                        op: true,
                    });
                }
            }
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                in_word = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            if let Some(e) = chars.next() {
                                cur.push(e);
                            }
                        }
                        _ => cur.push(d),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(d) = chars.next() {
                    cur.push(d);
                }
            }
            ';' | '|' | '&' | '>' | '<' => {
                let fd2 = c == '>' && in_word && cur == "2";
                if !fd2 {
                    flush(&mut cur, &mut in_word, &mut out);
                } else {
                    cur.clear();
                    in_word = false;
                }
                let mut op = String::from(if fd2 { "2>" } else { "" });
                if !fd2 {
                    op.push(c);
                }
                match (op.as_str(), chars.peek()) {
                    ("&", Some('&')) | ("|", Some('|')) | (">" | "2>", Some('>')) => {
                        if let Some(d) = chars.next() {
                            op.push(d);
                        }
                    }
                    _ => {}
                }
                if op == "2>" && chars.peek() == Some(&'&') {
                    chars.next();
                    if let Some(d) = chars.next() {
                        op.push('&');
                        op.push(d);
                    }
                }
                out.push(Token { text: op, op: true });
            }
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    flush(&mut cur, &mut in_word, &mut out);
    out
}

/// A simple command with its redirects.
#[derive(Debug, Default)]
struct Simple {
    words: Vec<String>,
    out: Option<(String, bool)>,
    err: Option<(String, bool)>,
    err_to_out: bool,
    input: Option<String>,
}

/// Run a shell command line.
pub fn run_script(s: &mut Session<'_>, line: &str) -> Ran {
    let toks = tokenize(line);
    let mut total = Ran::default();
    let mut last = 0;
    let mut skip = false;
    let mut pipeline: Vec<Simple> = vec![Simple::default()];
    let mut it = toks.into_iter().peekable();
    loop {
        let tok = it.next();
        let connector = match &tok {
            None => Some(";".to_owned()),
            Some(t) if t.op && matches!(t.text.as_str(), ";" | "&&" | "||" | "&") => {
                Some(t.text.clone())
            }
            _ => None,
        };
        if let Some(conn) = connector {
            let nonempty = pipeline.iter().any(|c| !c.words.is_empty());
            if nonempty && !skip {
                let r = run_pipeline(s, std::mem::take(&mut pipeline));
                total.stdout.extend(r.stdout);
                total.stderr.extend(r.stderr);
                last = r.exit;
                if let Some(code) = s.exited {
                    total.exit = code;
                    return total;
                }
            }
            pipeline = vec![Simple::default()];
            skip = match conn.as_str() {
                "&&" => last != 0,
                "||" => last == 0,
                _ => false,
            };
            if tok.is_none() {
                break;
            }
            continue;
        }
        let Some(t) = tok else { break };
        let cur = pipeline
            .last_mut()
            .expect("invariant: pipeline is never empty");
        if !t.op {
            cur.words.push(t.text);
            continue;
        }
        match t.text.as_str() {
            "|" => pipeline.push(Simple::default()),
            ">" | ">>" => cur.out = it.next().map(|w| (w.text, t.text == ">>")),
            "2>" | "2>>" => cur.err = it.next().map(|w| (w.text, t.text == "2>>")),
            "2>&1" => cur.err_to_out = true,
            "<" => cur.input = it.next().map(|w| w.text),
            _ => {}
        }
    }
    total.exit = last;
    total
}

fn run_pipeline(s: &mut Session<'_>, cmds: Vec<Simple>) -> Ran {
    let mut carry: Option<Vec<u8>> = None;
    let mut result = Ran::default();
    let n = cmds.len();
    for (i, c) in cmds.into_iter().enumerate() {
        let mut input = carry.take();
        if let Some(path) = &c.input {
            match read_guest(s, path) {
                Ok(b) => input = Some(b),
                Err(e) => {
                    result
                        .stderr
                        .extend(format!("sh: {path}: {e}\n").into_bytes());
                    result.exit = 1;
                    continue;
                }
            }
        }
        let mut r = run_argv(s, &c.words, input);
        if c.err_to_out {
            let e = std::mem::take(&mut r.stderr);
            r.stdout.extend(e);
        }
        if let Some((path, append)) = &c.err {
            let e = std::mem::take(&mut r.stderr);
            if let Err(msg) = write_guest(s, path, &e, *append) {
                r.stderr.extend(format!("sh: {path}: {msg}\n").into_bytes());
            }
        }
        if let Some((path, append)) = &c.out {
            let o = std::mem::take(&mut r.stdout);
            if let Err(msg) = write_guest(s, path, &o, *append) {
                r.stderr.extend(format!("sh: {path}: {msg}\n").into_bytes());
                r.exit = 1;
            }
        }
        result.stderr.extend(r.stderr);
        result.exit = r.exit;
        if i + 1 < n {
            carry = Some(r.stdout);
        } else {
            result.stdout = r.stdout;
        }
    }
    result
}

/// Run one argv: `sh -c`, then builtins; `input` is piped input (else the session stdin).
pub fn run_argv(s: &mut Session<'_>, words: &[String], input: Option<Vec<u8>>) -> Ran {
    let Some(first) = words.first() else {
        return Ran::default();
    };
    let base = first.rsplit('/').next().unwrap_or(first);
    if base == "sudo" {
        return sudo(s, &words[1..], input);
    }
    if matches!(base, "sh" | "bash" | "zsh") {
        let mut rest = words[1..]
            .iter()
            .skip_while(|w| w.starts_with('-') && *w != "-c" && *w != "-s");
        return match rest.next().map(String::as_str) {
            Some("-c") => match rest.next() {
                Some(script) => run_script(s, script),
                None => err_ran(&format!("{base}: -c: option requires an argument\n"), 2),
            },
            _ => {
                let script = input.unwrap_or_else(|| s.take_stdin());
                run_script(s, &String::from_utf8_lossy(&script))
            }
        };
    }
    builtins::run(s, base, &words[1..], input)
}

/// `sudo [-u USER] [-H] [-n] [--] CMD…`: run `CMD` as `USER` (default root) with that
/// user's home as the working directory. Only root may switch users without a password in
/// the simulated guest (the provisioning path: `prlctl exec` runs as root).
fn sudo(s: &mut Session<'_>, args: &[String], input: Option<Vec<u8>>) -> Ran {
    let mut user = "root".to_owned();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-u" => {
                i += 1;
                match args.get(i) {
                    Some(u) => user.clone_from(u),
                    None => return err_ran("sudo: option requires an argument -- u\n", 1),
                }
            }
            "-H" | "-n" | "-E" => {}
            "--" => {
                i += 1;
                break;
            }
            o if o.starts_with('-') => return err_ran(&format!("sudo: unknown option {o}\n"), 1),
            _ => break,
        }
        i += 1;
    }
    let cmd = &args[i.min(args.len())..];
    if cmd.is_empty() {
        return err_ran("usage: sudo -u user command\n", 1);
    }
    if s.user.uid != 0 {
        return err_ran("sudo: a password is required\n", 1);
    }
    let saved = (s.user.clone(), s.cwd.clone());
    s.user = GuestUser {
        uid: if user == "root" { 0 } else { 501 },
        name: user,
    };
    s.cwd = s.home();
    let ran = run_argv(s, cmd, input);
    (s.user, s.cwd) = saved;
    ran
}

/// A result with only stderr.
pub fn err_ran(msg: &str, exit: i32) -> Ran {
    Ran {
        stderr: msg.as_bytes().to_vec(),
        exit,
        ..Ran::default()
    }
}

/// Read a guest file (`/dev/null` is empty).
pub fn read_guest(s: &Session<'_>, path: &str) -> Result<Vec<u8>, &'static str> {
    if path == "/dev/null" {
        return Ok(Vec::new());
    }
    let p = s.host_path(path);
    if p.is_dir() {
        return Err("Is a directory");
    }
    std::fs::read(&p).map_err(|_| "No such file or directory")
}

/// Write (or append to) a guest file; new files get `0666 & !umask`.
pub fn write_guest(
    s: &Session<'_>,
    path: &str,
    data: &[u8],
    append: bool,
) -> Result<(), &'static str> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if path == "/dev/null" {
        return Ok(());
    }
    let p = s.host_path(path);
    if !p.parent().is_some_and(Path::is_dir) {
        return Err("No such file or directory");
    }
    if p.is_dir() {
        return Err("Is a directory");
    }
    let existed = p.exists();
    let mode = 0o666 & !s.umask;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .mode(mode)
        .open(&p)
        .map_err(|_| "Permission denied")?;
    if !existed {
        // The host process umask must not widen or narrow the guest's.
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode));
    }
    f.write_all(data).map_err(|_| "Input/output error")
}
