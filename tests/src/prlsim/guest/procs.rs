//! Process builtins over the scripted guest processes: `pgrep`, `pkill`, `kill`, `ps`
//! (`-axo FIELDS`, `-ax`, `-ef`), and the tiny regular-expression matcher they share with
//! `grep` (`.`, `*`, `^`, `$`, `\` escapes and top-level `|`).

use std::fmt::Write as _;

use super::{Ran, Session, err_ran};
use crate::prlsim::model::GuestProc;

/// Whether `re` matches anywhere in `text` (alternation on top-level `|`).
pub fn re_match(re: &str, text: &str, icase: bool) -> bool {
    let (re, text) = if icase {
        (re.to_lowercase(), text.to_lowercase())
    } else {
        (re.to_owned(), text.to_owned())
    };
    split_alternatives(&re).iter().any(|alt| {
        let pat: Vec<char> = alt.chars().collect();
        let txt: Vec<char> = text.chars().collect();
        if pat.first() == Some(&'^') {
            return match_here(&pat[1..], &txt);
        }
        (0..=txt.len()).any(|i| match_here(&pat, &txt[i..]))
    })
}

fn split_alternatives(re: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = re.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let cur = out.last_mut().expect("invariant: never empty");
                cur.push('\\');
                if let Some(d) = chars.next() {
                    cur.push(d);
                }
            }
            '|' => out.push(String::new()),
            _ => out.last_mut().expect("invariant: never empty").push(c),
        }
    }
    out
}

/// One pattern atom: a literal (escaped) or any char.
fn atom(pat: &[char]) -> Option<(Option<char>, usize)> {
    match pat.first()? {
        '\\' => Some((pat.get(1).copied(), 2)),
        '.' => Some((None, 1)),
        c => Some((Some(*c), 1)),
    }
}

fn match_here(pat: &[char], txt: &[char]) -> bool {
    let Some((a, len)) = atom(pat) else {
        return true;
    };
    let eq = |c: char| a.is_none_or(|x| x == c);
    if pat.get(len) == Some(&'*') {
        let rest = &pat[len + 1..];
        let mut i = 0;
        loop {
            if match_here(rest, &txt[i..]) {
                return true;
            }
            if i < txt.len() && eq(txt[i]) {
                i += 1;
            } else {
                return false;
            }
        }
    }
    if pat.len() == 1 && pat[0] == '$' {
        return txt.is_empty();
    }
    match txt.first() {
        Some(&c) if eq(c) => match_here(&pat[len..], &txt[1..]),
        _ => false,
    }
}

fn select<'v>(
    s: &'v Session<'_>,
    args: &[String],
    verb: &str,
) -> Result<(Vec<&'v GuestProc>, bool, bool), Ran> {
    let (mut full, mut long, mut exact, mut icase) = (false, false, false, false);
    let mut pattern = None;
    for a in args {
        match a.as_str() {
            s if s.starts_with('-')
                && s.len() > 1
                && !s[1..].starts_with(|c: char| c.is_ascii_digit()) =>
            {
                for c in s[1..].chars() {
                    match c {
                        'f' => full = true,
                        'l' => long = true,
                        'x' => exact = true,
                        'i' => icase = true,
                        'a' | 'q' => {}
                        _ => return Err(err_ran(&format!("{verb}: illegal option -- {c}\n"), 2)),
                    }
                }
            }
            s if s.starts_with('-') => {} // a signal for pkill (`-9`)
            p => pattern = Some(p.to_owned()),
        }
    }
    let Some(pattern) = pattern else {
        return Err(err_ran(&format!("usage: {verb} [-filx] pattern\n"), 2));
    };
    let procs =
        s.vm.visible_procs(s.now)
            .filter(|p| {
                let hay = if full { p.command.as_str() } else { p.name() };
                if exact {
                    if icase {
                        hay.eq_ignore_ascii_case(&pattern)
                    } else {
                        hay == pattern
                    }
                } else {
                    re_match(&pattern, hay, icase)
                }
            })
            .collect();
    Ok((procs, full, long))
}

/// `pgrep [-filx] PATTERN`: pids one per line; exit 0 on a match, 1 otherwise.
pub fn pgrep(s: &Session<'_>, args: &[String]) -> Ran {
    let (procs, full, long) = match select(s, args, "pgrep") {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut out = String::new();
    for p in &procs {
        if long {
            let _ = writeln!(
                out,
                "{} {}",
                p.pid,
                if full { p.command.as_str() } else { p.name() }
            );
        } else {
            let _ = writeln!(out, "{}", p.pid);
        }
    }
    Ran {
        stdout: out.into_bytes(),
        exit: i32::from(procs.is_empty()),
        ..Ran::default()
    }
}

/// `pkill [-f] [-SIG] PATTERN`: exit 0 if something was signalled, 1 otherwise.
pub fn pkill(s: &mut Session<'_>, args: &[String]) -> Ran {
    let pids: Vec<u32> = match select(s, args, "pkill") {
        Ok((procs, _, _)) => procs.iter().map(|p| p.pid).collect(),
        Err(r) => return r,
    };
    s.vm.procs.retain(|p| !pids.contains(&p.pid));
    Ran {
        exit: i32::from(pids.is_empty()),
        ..Ran::default()
    }
}

/// `kill [-SIG] PID…`.
pub fn kill(s: &mut Session<'_>, args: &[String]) -> Ran {
    let mut r = Ran::default();
    for a in args.iter().filter(|a| !a.starts_with('-')) {
        let pid: Option<u32> = a.parse().ok();
        let before = s.vm.procs.len();
        s.vm.procs.retain(|p| Some(p.pid) != pid);
        if s.vm.procs.len() == before {
            r.stderr
                .extend(format!("kill: {a}: No such process\n").into_bytes());
            r.exit = 1;
        }
    }
    r
}

/// `[[dd-]hh:]mm:ss`, as BSD ps prints `etime`.
fn etime(ms: u64) -> String {
    let t = ms / 1000;
    let (d, h, m, sec) = (t / 86_400, t % 86_400 / 3600, t % 3600 / 60, t % 60);
    match (d, h) {
        (0, 0) => format!("{m:02}:{sec:02}"),
        (0, _) => format!("{h:02}:{m:02}:{sec:02}"),
        _ => format!("{d:02}-{h:02}:{m:02}:{sec:02}"),
    }
}

/// `ps -axo pid,ppid,etime,command`, `ps -ax`, `ps aux`-ish and `ps -ef`.
pub fn ps(s: &Session<'_>, args: &[String]) -> Ran {
    let mut fields: Vec<String> = vec!["pid".into(), "tty".into(), "time".into(), "command".into()];
    let mut ef = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-o" || a.ends_with('o') && a.starts_with('-') {
            let Some(list) = it.next() else {
                return err_ran("ps: option requires an argument -- o\n", 1);
            };
            fields = list
                .split(',')
                .map(|f| f.trim_end_matches('=').to_owned())
                .collect();
        } else if a.starts_with('-') && a.contains('f') && a.contains('e') {
            ef = true;
        }
    }
    let me = GuestProc {
        pid: s.vm.next_pid,
        ppid: 1,
        command: format!("ps {}", args.join(" ")),
        started_ms: s.now,
    };
    let launchd = GuestProc {
        pid: 1,
        ppid: 0,
        command: "/sbin/launchd".into(),
        started_ms: s.vm.started_ms.unwrap_or(s.now),
    };
    let mut procs: Vec<&GuestProc> = vec![&launchd];
    procs.extend(s.vm.visible_procs(s.now));
    procs.push(&me);
    if ef {
        let mut out = String::from("  UID   PID  PPID   C STIME   TTY           TIME CMD\n");
        for p in procs {
            let _ = writeln!(
                out,
                "{:>5} {:>5} {:>5} {:>3} {:>7} {:<3} {:>14} {}",
                0, p.pid, p.ppid, 0, "9:00AM", "??", "0:00.01", p.command
            );
        }
        return Ran {
            stdout: out.into_bytes(),
            ..Ran::default()
        };
    }
    let header = |f: &str| match f {
        "pid" => "PID",
        "ppid" => "PPID",
        "etime" => "ELAPSED",
        "tty" => "TT",
        "time" => "TIME",
        "user" => "USER",
        "uid" => "UID",
        "comm" => "COMM",
        "args" | "command" => "COMMAND",
        _ => "?",
    };
    let cell = |p: &GuestProc, f: &str| -> String {
        match f {
            "pid" => p.pid.to_string(),
            "ppid" => p.ppid.to_string(),
            "etime" => etime(s.now.saturating_sub(p.started_ms)),
            "tty" => "??".into(),
            "time" => "0:00.01".into(),
            "user" => "root".into(),
            "uid" => "0".into(),
            "comm" => p.command.split_whitespace().next().unwrap_or("").to_owned(),
            _ => p.command.clone(),
        }
    };
    let rows: Vec<Vec<String>> = procs
        .iter()
        .map(|p| fields.iter().map(|f| cell(p, f)).collect())
        .collect();
    let widths: Vec<usize> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            rows.iter()
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
                .max(header(f).len())
                .max(if matches!(f.as_str(), "pid" | "ppid") {
                    5
                } else {
                    0
                })
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let left = matches!(
                fields[i].as_str(),
                "command" | "args" | "comm" | "user" | "tty"
            );
            if i == last {
                l.push_str(c);
            } else if left {
                let _ = write!(l, "{c:<w$} ", w = widths[i]);
            } else {
                let _ = write!(l, "{c:>w$} ", w = widths[i]);
            }
        }
        out.push_str(&l);
        out.push('\n');
    };
    line(fields.iter().map(|f| header(f).to_owned()).collect());
    for r in rows {
        line(r);
    }
    Ran {
        stdout: out.into_bytes(),
        ..Ran::default()
    }
}

#[cfg(test)]
mod tests {
    use super::re_match;

    #[test]
    fn tiny_regex_covers_what_pgrep_callers_use() {
        assert!(re_match(
            "Runner.Worker",
            "/Users/runner/bin/Runner.Worker spawnclient",
            false
        ));
        assert!(re_match("^Runner", "Runner.Listener", false));
        assert!(!re_match("^Listener", "Runner.Listener", false));
        assert!(re_match(
            "remoting.jar|agent.jar",
            "java -jar agent.jar -url x",
            false
        ));
        assert!(re_match(
            "java.*remoting",
            "java -jar /opt/remoting.jar",
            false
        ));
        assert!(!re_match("Runner\\.Worker", "RunnerXWorker", false));
        assert!(re_match("worker$", "Runner.WORKER", true));
    }
}
