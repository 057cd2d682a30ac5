//! Process utilities over the guest process table (scripted processes plus the session's own
//! shells and commands, see [`super::Session::spawn`]): `pgrep`/`pkill` with the BSD rules —
//! extended regular expressions, `-f -l -x -i -n -o -q -v -a -d -P -u`, and the calling
//! process *and all its ancestors* excluded unless `-a` (macOS `pgrep(1)`: "By default, the
//! current pgrep or pkill process and all of its ancestors are excluded") — `kill`, and `ps`
//! (`-ax`, `-e`, `-o FIELDS` with `=` headers, `-p PIDS`, `-ef`).

use std::fmt::Write as _;

use super::Session;
use super::regex::Regex;
use crate::prlsim::model::GuestProc;

/// The table as the guest sees it now: launchd, then visible processes.
fn table(s: &Session<'_>) -> Vec<GuestProc> {
    let mut all = vec![GuestProc {
        pid: 1,
        ppid: 0,
        command: "/sbin/launchd".to_owned(),
        started_ms: s.vm.started_ms.unwrap_or(0),
        ends_ms: None,
    }];
    all.extend(s.visible());
    all
}

/// Pids of `pid` and its ancestors.
fn lineage(all: &[GuestProc], pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut cur = pid;
    while let Some(p) = all.iter().find(|p| p.pid == cur) {
        if p.ppid == 0 || out.contains(&p.ppid) {
            break;
        }
        out.push(p.ppid);
        cur = p.ppid;
    }
    out
}

struct Select {
    full: bool,
    long: bool,
    quiet: bool,
    delim: String,
    signal: i32,
    procs: Vec<GuestProc>,
}

fn signal_number(name: &str) -> Option<i32> {
    let n = name.trim_start_matches("SIG");
    Some(match n {
        "0" => 0,
        "HUP" | "1" => 1,
        "INT" | "2" => 2,
        "QUIT" | "3" => 3,
        "KILL" | "9" => 9,
        "USR1" | "30" => 30,
        "USR2" | "31" => 31,
        "TERM" | "15" => 15,
        "STOP" | "17" => 17,
        "CONT" | "19" => 19,
        other => return other.parse().ok(),
    })
}

fn select(s: &mut Session<'_>, args: &[String], verb: &str) -> Result<Select, i32> {
    let (mut full, mut long, mut exact, mut icase, mut quiet, mut invert, mut ancestors) =
        (false, false, false, false, false, false, false);
    let (mut newest, mut oldest) = (false, false);
    let mut delim = "\n".to_owned();
    let mut parents: Option<Vec<u32>> = None;
    let mut users: Option<Vec<String>> = None;
    let mut signal = 15;
    let mut patterns = Vec::new();
    let usage = |s: &mut Session<'_>, msg: String| {
        s.err(format!(
            "{msg}usage: {verb} [-Lafilnoqvx] [-F pidfile] [-G gid] [-P ppid] [-U uid] [-d delim]\n             [-g pgrp] [-t tty] [-u euid] pattern ...\n"
        ));
        2
    };
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        if a == "--" {
            patterns.extend(args[i..].iter().cloned());
            break;
        }
        if !a.starts_with('-') || a.len() < 2 {
            patterns.push(a.clone());
            continue;
        }
        if verb == "pkill"
            && i == 1
            && let Some(sig) = signal_number(&a[1..])
        {
            signal = sig;
            continue;
        }
        let chars: Vec<char> = a[1..].chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            j += 1;
            let mut value = |s: &mut Session<'_>| -> Result<String, i32> {
                let rest: String = chars[j..].iter().collect();
                j = chars.len();
                if !rest.is_empty() {
                    return Ok(rest);
                }
                let v = args.get(i).cloned();
                i += 1;
                v.ok_or_else(|| usage(s, format!("{verb}: option requires an argument -- {c}\n")))
            };
            match c {
                'f' => full = true,
                'l' => long = true,
                'x' => exact = true,
                'i' => icase = true,
                'n' => newest = true,
                'o' => oldest = true,
                'q' => quiet = true,
                'v' => invert = true,
                'a' => ancestors = true,
                'I' | 'L' => {}
                'd' => delim = value(s)?,
                'P' => {
                    let v = value(s)?;
                    parents = Some(v.split(',').filter_map(|p| p.trim().parse().ok()).collect());
                }
                'u' | 'U' => {
                    let v = value(s)?;
                    users = Some(v.split(',').map(str::to_owned).collect());
                }
                'G' | 'g' | 't' | 'F' | 's' => {
                    value(s)?;
                }
                other => return Err(usage(s, format!("{verb}: illegal option -- {other}\n"))),
            }
        }
    }
    if patterns.is_empty() && parents.is_none() && users.is_none() {
        return Err(usage(s, String::new()));
    }
    let mut res = Vec::new();
    for p in &patterns {
        match Regex::new(p, true, icase) {
            Ok(r) => res.push(r),
            Err(e) => {
                s.err(format!(
                    "{verb}: Cannot compile regular expression `{p}' ({e})\n"
                ));
                return Err(2);
            }
        }
    }
    let all = table(s);
    let me = s.st.pid;
    let excluded = if ancestors || invert {
        vec![me]
    } else {
        lineage(&all, me)
    };
    let mut procs: Vec<GuestProc> = all
        .iter()
        .filter(|p| !excluded.contains(&p.pid))
        .filter(|p| {
            let hay = if full { p.command.as_str() } else { p.name() };
            let pattern_ok = res.iter().all(|r| {
                if exact {
                    r.matches_whole(hay)
                } else {
                    r.is_match(hay)
                }
            });
            let parent_ok = parents.as_ref().is_none_or(|ps| ps.contains(&p.ppid));
            let user_ok = users
                .as_ref()
                .is_none_or(|us| us.iter().any(|u| u == "root" || u == "0"));
            (pattern_ok && parent_ok && user_ok) != invert
        })
        .cloned()
        .collect();
    if newest {
        procs = procs
            .iter()
            .max_by_key(|p| (p.started_ms, p.pid))
            .cloned()
            .into_iter()
            .collect();
    } else if oldest {
        procs = procs
            .iter()
            .min_by_key(|p| (p.started_ms, p.pid))
            .cloned()
            .into_iter()
            .collect();
    }
    Ok(Select {
        full,
        long,
        quiet,
        delim,
        signal,
        procs,
    })
}

/// `pgrep`: matching pids; exit 0 on a match, 1 none, 2 usage.
pub fn pgrep(s: &mut Session<'_>, args: &[String]) -> i32 {
    let sel = match select(s, args, "pgrep") {
        Ok(x) => x,
        Err(code) => return code,
    };
    if !sel.quiet {
        let mut out = String::new();
        for p in &sel.procs {
            if sel.long {
                let what = if sel.full {
                    p.command.as_str()
                } else {
                    p.name()
                };
                let _ = write!(out, "{} {what}{}", p.pid, sel.delim);
            } else {
                let _ = write!(out, "{}{}", p.pid, sel.delim);
            }
        }
        s.out(out);
    }
    i32::from(sel.procs.is_empty())
}

/// `pkill [-SIG] …`: exit 0 if something was signalled, 1 otherwise.
pub fn pkill(s: &mut Session<'_>, args: &[String]) -> i32 {
    let sel = match select(s, args, "pkill") {
        Ok(x) => x,
        Err(code) => return code,
    };
    let mut any = false;
    for p in &sel.procs {
        any |= s.signal(p.pid, sel.signal);
    }
    i32::from(!any)
}

/// `kill [-s SIG | -SIG] PID…`, `kill -l`.
pub fn kill(s: &mut Session<'_>, args: &[String]) -> i32 {
    let mut sig = 15;
    let mut i = 0;
    match args.first().map(String::as_str) {
        Some("-l") => {
            s.out("HUP INT QUIT ILL TRAP ABRT EMT FPE KILL BUS SEGV SYS PIPE ALRM TERM URG STOP TSTP CONT CHLD TTIN TTOU IO XCPU XFSZ VTALRM PROF WINCH INFO USR1 USR2\n");
            return 0;
        }
        Some("-s" | "-n") => {
            match args.get(1).and_then(|n| signal_number(n)) {
                Some(n) => sig = n,
                None => {
                    s.err("sh: kill: invalid signal specification\n");
                    return 1;
                }
            }
            i = 2;
        }
        Some(a) if a.starts_with('-') && a.len() > 1 && a != "--" => {
            match signal_number(&a[1..]) {
                Some(n) => sig = n,
                None => {
                    s.err(format!(
                        "sh: kill: {}: invalid signal specification\n",
                        &a[1..]
                    ));
                    return 1;
                }
            }
            i = 1;
        }
        _ => {}
    }
    let pids: Vec<&String> = args[i.min(args.len())..]
        .iter()
        .filter(|a| *a != "--")
        .collect();
    if pids.is_empty() {
        s.err("kill: usage: kill [-s sigspec | -n signum | -sigspec] pid | jobspec ... or kill -l [sigspec]\n");
        return 2;
    }
    let mut status = 0;
    for a in pids {
        match a.parse::<u32>() {
            Ok(pid) if s.signal(pid, sig) => {}
            Ok(pid) => {
                s.err(format!("sh: kill: ({pid}) - No such process\n"));
                status = 1;
            }
            Err(_) => {
                s.err(format!(
                    "sh: kill: {a}: arguments must be process or job IDs\n"
                ));
                status = 1;
            }
        }
    }
    status
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

/// `ps -axo pid,ppid,etime,command`, `ps -ax`, `ps -p PID -o comm=`, `ps -ef`.
pub fn ps(s: &mut Session<'_>, args: &[String]) -> i32 {
    let mut fields: Vec<(String, Option<String>)> = Vec::new();
    let mut pids: Option<Vec<u32>> = None;
    let mut ef = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if !a.starts_with('-') {
            continue;
        }
        let letters = &a[1..];
        if letters.contains('e') && letters.contains('f') {
            ef = true;
        }
        if letters.ends_with('o') || letters.ends_with('O') {
            let Some(list) = it.next() else {
                s.err("ps: option requires an argument -- o\n");
                return 1;
            };
            for f in list.split(',') {
                let (name, header) = match f.split_once('=') {
                    Some((n, h)) => (n.to_owned(), Some(h.to_owned())),
                    None => (f.to_owned(), None),
                };
                fields.push((name, header));
            }
        } else if letters.ends_with('p') {
            let Some(list) = it.next() else {
                s.err("ps: option requires an argument -- p\n");
                return 1;
            };
            pids = Some(
                list.split([',', ' '])
                    .filter_map(|p| p.parse().ok())
                    .collect(),
            );
        }
    }
    let mut procs = table(s);
    if let Some(ps) = &pids {
        procs.retain(|p| ps.contains(&p.pid));
    }
    let now = s.now();
    if ef && fields.is_empty() {
        let mut out = String::from("  UID   PID  PPID   C STIME   TTY           TIME CMD\n");
        for p in &procs {
            let _ = writeln!(
                out,
                "{:>5} {:>5} {:>5} {:>3} {:>7} {:<3} {:>14} {}",
                0, p.pid, p.ppid, 0, "9:00AM", "??", "0:00.01", p.command
            );
        }
        s.out(out);
        return i32::from(procs.is_empty());
    }
    if fields.is_empty() {
        fields = ["pid", "tty", "time", "command"]
            .iter()
            .map(|f| ((*f).to_owned(), None))
            .collect();
    }
    let header = |f: &str| match f {
        "pid" => "PID",
        "ppid" => "PPID",
        "etime" => "ELAPSED",
        "tty" | "tt" => "TT",
        "time" => "TIME",
        "user" => "USER",
        "uid" => "UID",
        "comm" | "ucomm" => "COMM",
        "state" | "stat" => "STAT",
        "args" | "command" => "COMMAND",
        _ => "?",
    };
    let cell = |p: &GuestProc, f: &str| -> String {
        match f {
            "pid" => p.pid.to_string(),
            "ppid" => p.ppid.to_string(),
            "etime" => etime(now.saturating_sub(p.started_ms)),
            "tty" | "tt" => "??".into(),
            "time" => "0:00.01".into(),
            "user" => "root".into(),
            "uid" => "0".into(),
            "state" | "stat" => "Ss".into(),
            "comm" | "ucomm" => p.command.split_whitespace().next().unwrap_or("").to_owned(),
            _ => p.command.clone(),
        }
    };
    let heads: Vec<String> = fields
        .iter()
        .map(|(f, h)| h.clone().unwrap_or_else(|| header(f).to_owned()))
        .collect();
    let show_header = heads.iter().any(|h| !h.is_empty());
    let rows: Vec<Vec<String>> = procs
        .iter()
        .map(|p| fields.iter().map(|(f, _)| cell(p, f)).collect())
        .collect();
    let widths: Vec<usize> = fields
        .iter()
        .enumerate()
        .map(|(i, (f, _))| {
            rows.iter()
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
                .max(heads[i].len())
                .max(if matches!(f.as_str(), "pid" | "ppid") {
                    5
                } else {
                    0
                })
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let last = cells.len().saturating_sub(1);
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let left = matches!(
                fields[i].0.as_str(),
                "command" | "args" | "comm" | "ucomm" | "user" | "tty" | "tt" | "state" | "stat"
            );
            if i == last && left {
                l.push_str(c);
            } else if left {
                let _ = write!(l, "{c:<w$} ", w = widths[i]);
            } else if i == last {
                let _ = write!(l, "{c:>w$}", w = widths[i]);
            } else {
                let _ = write!(l, "{c:>w$} ", w = widths[i]);
            }
        }
        out.push_str(&l);
        out.push('\n');
    };
    if show_header {
        line(&heads);
    }
    for r in &rows {
        line(r);
    }
    s.out(out);
    i32::from(procs.is_empty())
}
