//! Commands the shell runs in its own process: the POSIX special builtins (`:`, `.`, `break`,
//! `continue`, `eval`, `exec`, `exit`, `export`, `readonly`, `return`, `set`, `shift`, `trap`,
//! `unset`) and the regular ones bash has built in (`cd`, `pwd`, `read`, `umask`, `local`,
//! `command`, `type`, `wait`, and `echo`/`printf`/`test`/`[`/`true`/`false`/`kill`, which share
//! their implementation with the utilities of the same name).

use super::parse::{is_name, parse_all};
use super::state::{Flow, Opts, Status, Var};
use super::{Session, builtins, printf, procs};

const SPECIAL: [&str; 15] = [
    ":", ".", "break", "continue", "eval", "exec", "exit", "export", "readonly", "return", "set",
    "shift", "trap", "unset", "source",
];

const REGULAR: [&str; 16] = [
    "cd", "pwd", "read", "umask", "local", "command", "type", "wait", "echo", "printf", "test",
    "[", "true", "false", "kill", "hash",
];

/// A POSIX special builtin (its variable assignments persist).
pub fn is_special(name: &str) -> bool {
    SPECIAL.contains(&name)
}

/// Whether the shell runs `name` itself.
pub fn is_builtin(name: &str) -> bool {
    is_special(name) || REGULAR.contains(&name)
}

/// Set a single-letter option; `false` if unknown.
pub fn set_flag(opts: &mut Opts, c: char, on: bool) -> bool {
    match c {
        'e' => opts.errexit = on,
        'u' => opts.nounset = on,
        'x' => opts.xtrace = on,
        'f' => opts.noglob = on,
        'C' => opts.noclobber = on,
        'a' | 'b' | 'h' | 'm' | 'n' | 'v' | 'B' | 'H' | 'P' | 'T' | 'E' => {}
        _ => return false,
    }
    true
}

/// Set a `-o NAME` option; `false` if unknown.
pub fn set_named_option(opts: &mut Opts, name: &str, on: bool) -> bool {
    match name {
        "errexit" => opts.errexit = on,
        "nounset" => opts.nounset = on,
        "xtrace" => opts.xtrace = on,
        "noglob" => opts.noglob = on,
        "noclobber" => opts.noclobber = on,
        "pipefail" => opts.pipefail = on,
        "posix" | "allexport" | "notify" | "verbose" | "vi" | "emacs" | "monitor" | "hashall" => {}
        _ => return false,
    }
    true
}

fn code(arg: Option<&String>, default: i32) -> Result<i32, String> {
    match arg {
        None => Ok(default),
        Some(a) => a
            .parse::<i64>()
            .map(|n| i32::try_from(n.rem_euclid(256)).unwrap_or(0))
            .map_err(|_| format!("{a}: numeric argument required")),
    }
}

/// Run builtin `argv[0]`.
pub fn run(s: &mut Session<'_>, argv: &[String]) -> Status {
    let name = argv[0].as_str();
    let args = &argv[1..];
    match name {
        ":" | "true" | "hash" | "wait" => Ok(0),
        "false" => Ok(1),
        "echo" => Ok(builtins::echo(s, args)),
        "printf" => Ok(printf::run(s, args)),
        "test" | "[" => Ok(builtins::test(s, name, args)),
        "kill" => Ok(procs::kill(s, args)),
        "pwd" => {
            let cwd = s.st.cwd.clone();
            s.out(format!("{cwd}\n"));
            Ok(0)
        }
        "cd" => Ok(cd(s, args)),
        "umask" => Ok(umask(s, args)),
        "read" => Ok(read(s, args)),
        "exit" => match code(args.first(), s.st.status) {
            Ok(n) => Err(Flow::Exit(n)),
            Err(msg) => {
                s.err(format!("sh: exit: {msg}\n"));
                Err(Flow::Exit(255))
            }
        },
        "return" => match code(args.first(), s.st.status) {
            Ok(n) => Err(Flow::Return(n)),
            Err(msg) => {
                s.err(format!("sh: return: {msg}\n"));
                Err(Flow::Return(2))
            }
        },
        "break" | "continue" => {
            let n = args
                .first()
                .and_then(|a| a.parse::<u32>().ok())
                .unwrap_or(1)
                .max(1);
            Err(if name == "break" {
                Flow::Break(n)
            } else {
                Flow::Continue(n)
            })
        }
        "shift" => {
            let n = args
                .first()
                .and_then(|a| a.parse::<usize>().ok())
                .unwrap_or(1);
            if n > s.st.positional.len() {
                s.err(format!("sh: shift: {n}: shift count out of range\n"));
                return Ok(1);
            }
            s.st.positional.drain(..n);
            Ok(0)
        }
        "set" => set(s, args),
        "export" | "readonly" => Ok(export(s, name, args)),
        "local" => Ok(local(s, args)),
        "unset" => Ok(unset(s, args)),
        "eval" => {
            let text = args.join(" ");
            match parse_all(&text) {
                Ok(items) => s.run_list(&items),
                Err(e) => {
                    s.err(format!("sh: eval: line {}: {}\n", e.line, e.msg));
                    Ok(2)
                }
            }
        }
        "." | "source" => dot(s, args),
        "exec" => {
            if args.is_empty() {
                return Ok(0);
            }
            let status = s.run_argv(args, true)?;
            Err(Flow::Exit(status))
        }
        "trap" => Ok(trap(s, args)),
        "command" => command(s, args),
        "type" => {
            let mut status = 0;
            for a in args {
                match describe(s, a) {
                    Some(d) => s.out(format!("{a} is {d}\n")),
                    None => {
                        s.err(format!("sh: type: {a}: not found\n"));
                        status = 1;
                    }
                }
            }
            Ok(status)
        }
        other => {
            s.err(format!("sh: {other}: not a shell builtin\n"));
            Ok(1)
        }
    }
}

fn cd(s: &mut Session<'_>, args: &[String]) -> i32 {
    let target = match args.iter().find(|a| *a != "-P" && *a != "-L") {
        None => s.st.var("HOME").map_or_else(|| s.home(), str::to_owned),
        Some(d) if d == "-" => s.st.var("OLDPWD").unwrap_or("").to_owned(),
        Some(d) => d.clone(),
    };
    if s.host_path(&target).is_dir() {
        let old = s.st.cwd.clone();
        s.st.cwd = s.normalize(&target);
        let cwd = s.st.cwd.clone();
        let _ = s.st.set_var("OLDPWD", old);
        let _ = s.st.set_var("PWD", cwd.clone());
        if args.first().is_some_and(|a| a == "-") {
            s.out(format!("{cwd}\n"));
        }
        0
    } else {
        let why = if s.host_path(&target).exists() {
            "Not a directory"
        } else {
            "No such file or directory"
        };
        s.err(format!("sh: cd: {target}: {why}\n"));
        1
    }
}

fn umask(s: &mut Session<'_>, args: &[String]) -> i32 {
    match args.iter().find(|a| *a != "-S") {
        Some(m) => match u32::from_str_radix(m, 8) {
            Ok(v) if v <= 0o777 => {
                s.st.umask = v;
                0
            }
            _ => {
                s.err(format!("sh: umask: {m}: octal number out of range\n"));
                1
            }
        },
        None => {
            let m = s.st.umask;
            s.out(format!("{m:04o}\n"));
            0
        }
    }
}

fn read(s: &mut Session<'_>, args: &[String]) -> i32 {
    let raw = args.iter().any(|a| a == "-r");
    let mut names: Vec<String> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .cloned()
        .collect();
    if names.is_empty() {
        names.push("REPLY".to_owned());
    }
    let mut text = String::new();
    let mut eof = true;
    while let Some(line) = s.stdin_line() {
        let mut l = String::from_utf8_lossy(&line).into_owned();
        let complete = l.ends_with('\n');
        if complete {
            l.pop();
        }
        if !raw && l.ends_with('\\') && complete {
            l.pop();
            text.push_str(&l);
            continue;
        }
        text.push_str(&l);
        eof = !complete;
        break;
    }
    if !raw {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(d) = chars.next() {
                    out.push(d);
                }
            } else {
                out.push(c);
            }
        }
        text = out;
    }
    let ifs = s.st.ifs();
    let ws: String = ifs.chars().filter(|c| c.is_whitespace()).collect();
    let mut rest = text.trim_matches(|c| ws.contains(c)).to_owned();
    for (i, name) in names.iter().enumerate() {
        let value = if i + 1 == names.len() {
            std::mem::take(&mut rest)
        } else {
            match rest.find(|c| ifs.contains(c)) {
                Some(at) => {
                    let v = rest[..at].to_owned();
                    rest = rest[at..]
                        .trim_start_matches(|c| ifs.contains(c))
                        .to_owned();
                    v
                }
                None => std::mem::take(&mut rest),
            }
        };
        if let Err(msg) = s.st.set_var(name, value) {
            s.err(format!("sh: read: {msg}\n"));
            return 1;
        }
    }
    i32::from(eof)
}

fn set(s: &mut Session<'_>, args: &[String]) -> Status {
    if args.is_empty() {
        let lines: String =
            s.st.vars
                .iter()
                .map(|(k, v)| format!("{k}={}\n", quote(&v.value)))
                .collect();
        s.out(lines);
        return Ok(0);
    }
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a == "--" {
            s.st.positional = args[i + 1..].to_vec();
            return Ok(0);
        }
        let on = a.starts_with('-');
        if !(on || a.starts_with('+')) || a.len() < 2 {
            break;
        }
        for c in a[1..].chars() {
            if c == 'o' {
                i += 1;
                let name = args.get(i).cloned().unwrap_or_default();
                if !set_named_option(&mut s.st.opts, &name, on) {
                    s.err(format!("sh: set: {name}: invalid option name\n"));
                    return Ok(2);
                }
            } else if !set_flag(&mut s.st.opts, c, on) {
                s.err(format!("sh: set: -{c}: invalid option\n"));
                return Ok(2);
            }
        }
        i += 1;
    }
    if i < args.len() {
        s.st.positional = args[i..].to_vec();
    }
    Ok(0)
}

/// Single-quote a value for `set`/`export -p` output.
pub fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

fn export(s: &mut Session<'_>, name: &str, args: &[String]) -> i32 {
    let list: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if list.is_empty() {
        let lines: String =
            s.st.vars
                .iter()
                .filter(|(_, v)| {
                    if name == "export" {
                        v.exported
                    } else {
                        v.readonly
                    }
                })
                .map(|(k, v)| format!("{name} {k}={}\n", quote(&v.value)))
                .collect();
        s.out(lines);
        return 0;
    }
    let mut status = 0;
    for a in list {
        let (var, value) = match a.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (a.clone(), None),
        };
        if !is_name(&var) {
            s.err(format!("sh: {name}: `{a}': not a valid identifier\n"));
            status = 1;
            continue;
        }
        if let Some(v) = value
            && let Err(msg) = s.st.set_var(&var, v)
        {
            s.err(format!("sh: {msg}\n"));
            status = 1;
            continue;
        }
        let entry = s.st.vars.entry(var).or_insert(Var {
            value: String::new(),
            exported: false,
            readonly: false,
        });
        if name == "export" {
            entry.exported = true;
        } else {
            entry.readonly = true;
        }
    }
    status
}

fn local(s: &mut Session<'_>, args: &[String]) -> i32 {
    if s.st.locals.is_empty() {
        s.err("sh: local: can only be used in a function\n");
        return 1;
    }
    for a in args {
        let (var, value) = match a.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (a.clone(), String::new()),
        };
        let old = s.st.vars.get(&var).cloned();
        if let Some(frame) = s.st.locals.last_mut() {
            frame.push((var.clone(), old));
        }
        let _ = s.st.set_var(&var, value);
    }
    0
}

fn unset(s: &mut Session<'_>, args: &[String]) -> i32 {
    let funcs = args.iter().any(|a| a == "-f");
    let mut status = 0;
    for a in args.iter().filter(|a| !a.starts_with('-')) {
        if funcs {
            s.st.funcs.remove(a);
        } else if s.st.vars.get(a).is_some_and(|v| v.readonly) {
            s.err(format!("sh: unset: {a}: cannot unset: readonly variable\n"));
            status = 1;
        } else {
            s.st.vars.remove(a);
        }
    }
    status
}

fn dot(s: &mut Session<'_>, args: &[String]) -> Status {
    let Some(path) = args.first() else {
        s.err("sh: .: filename argument required\n");
        return Ok(2);
    };
    let text = match s.read_guest(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            s.err(format!("sh: {path}: {e}\n"));
            return Err(Flow::Exit(1));
        }
    };
    let saved =
        (args.len() > 1).then(|| std::mem::replace(&mut s.st.positional, args[1..].to_vec()));
    let r = s.run_script_text(&text, &format!("{path}: "));
    if let Some(p) = saved {
        s.st.positional = p;
    }
    match r {
        Err(Flow::Return(n)) => Ok(n),
        other => other,
    }
}

fn trap(s: &mut Session<'_>, args: &[String]) -> i32 {
    match args {
        [] => {
            let lines: String =
                s.st.traps
                    .iter()
                    .map(|(k, v)| format!("trap -- {} {k}\n", quote(v)))
                    .collect();
            s.out(lines);
        }
        [action, conds @ ..] => {
            for c in conds {
                let c = match c.as_str() {
                    "0" => "EXIT".to_owned(),
                    other => other.trim_start_matches("SIG").to_owned(),
                };
                if action == "-" {
                    s.st.traps.remove(&c);
                } else {
                    s.st.traps.insert(c, action.clone());
                }
            }
        }
    }
    0
}

/// How `command -v`/`type` describe a name.
fn describe(s: &Session<'_>, name: &str) -> Option<String> {
    if s.st.funcs.contains_key(name) {
        return Some("a function".to_owned());
    }
    if is_builtin(name) {
        return Some("a shell builtin".to_owned());
    }
    builtins::find_in_path(s, name)
}

fn command(s: &mut Session<'_>, args: &[String]) -> Status {
    match args.first().map(String::as_str) {
        Some("-v" | "-V") => {
            let verbose = args[0] == "-V";
            let mut status = 0;
            for a in &args[1..] {
                let found = if s.st.funcs.contains_key(a) || is_builtin(a) {
                    Some(if verbose {
                        describe(s, a).unwrap_or_default()
                    } else {
                        a.clone()
                    })
                } else {
                    builtins::find_in_path(s, a)
                };
                match found {
                    Some(f) => s.out(format!("{f}\n")),
                    None => status = 1,
                }
            }
            Ok(status)
        }
        Some(_) => {
            let argv: Vec<String> = args
                .iter()
                .skip_while(|a| *a == "-p" || *a == "--")
                .cloned()
                .collect();
            if argv.is_empty() {
                return Ok(0);
            }
            if is_builtin(&argv[0]) {
                return run(s, &argv);
            }
            s.run_external(&argv, false)
        }
        None => Ok(0),
    }
}
