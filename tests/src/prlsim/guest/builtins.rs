//! Guest commands the scripted guest knows without a rule: `true`, `false`, `exit`, `echo`,
//! `printf` (literal), `umask`, `cd`, `cat`, `tee`, `test`/`[`, `rm`, `mkdir`, `chmod`,
//! `chown` (no-op), `ls`, `grep`, `wc -l`, `sleep` (simulated time), `id`, `whoami`,
//! `hostname`, `scutil`, `sw_vers`, `uname`, and the process commands of [`super::procs`].
//! Anything else: `sh: NAME: command not found`, exit 127.

use std::os::unix::fs::PermissionsExt;

use super::procs;
use super::{Ran, Session, err_ran, read_guest, write_guest};

fn out(s: impl Into<String>) -> Ran {
    Ran {
        stdout: s.into().into_bytes(),
        ..Ran::default()
    }
}

fn status(ok: bool) -> Ran {
    Ran {
        exit: i32::from(!ok),
        ..Ran::default()
    }
}

/// Run builtin `name` with `args`; `input` is piped input (else the session's stdin).
pub fn run(s: &mut Session<'_>, name: &str, args: &[String], input: Option<Vec<u8>>) -> Ran {
    let mut input = input;
    let mut stdin = |s: &mut Session<'_>| input.take().unwrap_or_else(|| s.take_stdin());
    match name {
        "true" | ":" => Ran::default(),
        "false" => status(false),
        "exit" => {
            let code = args.first().and_then(|a| a.parse().ok()).unwrap_or(0);
            s.exited = Some(code);
            Ran {
                exit: code,
                ..Ran::default()
            }
        }
        "echo" => match args.first().map(String::as_str) {
            Some("-n") => out(args[1..].join(" ")),
            _ => out(format!("{}\n", args.join(" "))),
        },
        "printf" => out(args
            .first()
            .map(|f| f.replace("\\n", "\n").replace("%s", ""))
            .unwrap_or_default()),
        "umask" => match args.first().and_then(|m| u32::from_str_radix(m, 8).ok()) {
            Some(m) => {
                s.umask = m & 0o777;
                Ran::default()
            }
            None => out(format!("{:04o}\n", s.umask)),
        },
        "cd" => {
            let target = args.first().cloned().unwrap_or_else(|| s.home());
            if s.host_path(&target).is_dir() {
                s.cwd = s.normalize(&target);
                Ran::default()
            } else {
                err_ran(&format!("sh: cd: {target}: No such file or directory\n"), 1)
            }
        }
        "cat" => {
            let files: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
            if files.is_empty() {
                return Ran {
                    stdout: stdin(s),
                    ..Ran::default()
                };
            }
            let mut r = Ran::default();
            for f in files {
                match read_guest(s, f) {
                    Ok(b) => r.stdout.extend(b),
                    Err(e) => {
                        r.stderr.extend(format!("cat: {f}: {e}\n").into_bytes());
                        r.exit = 1;
                    }
                }
            }
            r
        }
        "tee" => {
            let append = args.iter().any(|a| a == "-a");
            let data = stdin(s);
            let mut r = Ran {
                stdout: data.clone(),
                ..Ran::default()
            };
            for f in args.iter().filter(|a| !a.starts_with('-')) {
                if let Err(e) = write_guest(s, f, &data, append) {
                    r.stderr.extend(format!("tee: {f}: {e}\n").into_bytes());
                    r.exit = 1;
                }
            }
            r
        }
        "test" | "[" => {
            let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
            if name == "[" && a.last() == Some(&"]") {
                a.pop();
            }
            status(test(s, &a))
        }
        "rm" => {
            let force = args.iter().any(|a| a.starts_with('-') && a.contains('f'));
            // `-v` prints each path as it is removed (BSD rm prints a directory's contents
            // too; the simulator prints the operand).
            let verbose = args.iter().any(|a| a.starts_with('-') && a.contains('v'));
            let mut r = Ran::default();
            for f in args.iter().filter(|a| !a.starts_with('-')) {
                let p = s.host_path(f);
                let res = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                if res.is_ok() && verbose {
                    r.stdout.extend(format!("{f}\n").into_bytes());
                }
                if res.is_err() && !force {
                    r.stderr
                        .extend(format!("rm: {f}: No such file or directory\n").into_bytes());
                    r.exit = 1;
                }
            }
            r
        }
        "mkdir" => {
            let parents = args.iter().any(|a| a == "-p");
            let mut r = Ran::default();
            for d in args.iter().filter(|a| !a.starts_with('-')) {
                let p = s.host_path(d);
                let res = if parents {
                    std::fs::create_dir_all(&p)
                } else {
                    std::fs::create_dir(&p)
                };
                if res.is_err() {
                    let why = if p.exists() {
                        "File exists"
                    } else {
                        "No such file or directory"
                    };
                    r.stderr.extend(format!("mkdir: {d}: {why}\n").into_bytes());
                    r.exit = 1;
                }
            }
            r
        }
        "chmod" => chmod(s, args),
        "chown" => {
            let missing: Vec<&String> = args
                .iter()
                .skip(1)
                .filter(|a| !a.starts_with('-') && !s.host_path(a).exists())
                .collect();
            match missing.first() {
                Some(f) => err_ran(&format!("chown: {f}: No such file or directory\n"), 1),
                None => Ran::default(),
            }
        }
        "ls" if args.iter().any(|a| a.starts_with('-') && a.contains('d')) => {
            // `ls -d OPERAND…`: each existing operand on its own line, errors for the others.
            let mut r = Ran::default();
            for f in args.iter().filter(|a| !a.starts_with('-')) {
                if std::fs::symlink_metadata(s.host_path(f)).is_ok() {
                    r.stdout.extend(format!("{f}\n").into_bytes());
                } else {
                    r.stderr
                        .extend(format!("ls: {f}: No such file or directory\n").into_bytes());
                    r.exit = 1;
                }
            }
            r
        }
        "ls" => {
            let dir = args
                .iter()
                .find(|a| !a.starts_with('-'))
                .cloned()
                .unwrap_or_else(|| s.cwd.clone());
            match std::fs::read_dir(s.host_path(&dir)) {
                Ok(rd) => {
                    let mut names: Vec<String> = rd
                        .filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    out(names.iter().map(|n| format!("{n}\n")).collect::<String>())
                }
                Err(_) => err_ran(&format!("ls: {dir}: No such file or directory\n"), 1),
            }
        }
        "grep" => {
            let data = stdin(s);
            grep(s, args, data)
        }
        "wc" => {
            let data = stdin(s);
            let lines = data.iter().filter(|b| **b == b'\n').count();
            out(format!("{lines:>8}\n"))
        }
        "sleep" => {
            let secs: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(0.0);
            s.delay_ms += (secs * 1000.0) as u64;
            Ran::default()
        }
        "id" => match args.first().map(String::as_str) {
            Some("-u") => out(format!("{}\n", s.user.uid)),
            Some("-un") | Some("-nu") => out(format!("{}\n", s.user.name)),
            _ => out(format!(
                "uid={0}({1}) gid={0}({1})\n",
                s.user.uid, s.user.name
            )),
        },
        "whoami" => out(format!("{}\n", s.user.name)),
        "hostname" => {
            let h =
                s.vm.scutil
                    .get("HostName")
                    .or_else(|| s.vm.scutil.get("LocalHostName"));
            out(format!(
                "{}\n",
                h.cloned().unwrap_or_else(|| "Mac.local".to_owned())
            ))
        }
        "scutil" => match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["--set", key, value] => {
                s.vm.scutil.insert((*key).to_owned(), (*value).to_owned());
                Ran::default()
            }
            ["--get", key] => match s.vm.scutil.get(*key) {
                Some(v) => out(format!("{v}\n")),
                None => err_ran(&format!("{key}: not set\n"), 1),
            },
            _ => err_ran("usage: scutil --set|--get PREF [VALUE]\n", 1),
        },
        "sw_vers" => {
            out("ProductName:\t\tmacOS\nProductVersion:\t\t14.6.1\nBuildVersion:\t\t23G93\n")
        }
        "uname" => match args.first().map(String::as_str) {
            Some("-m") | Some("-p") => out("arm64\n"),
            Some("-a") => out("Darwin Mac.local 23.6.0 Darwin Kernel Version 23.6.0 arm64\n"),
            _ => out("Darwin\n"),
        },
        "pgrep" => procs::pgrep(s, args),
        "pkill" => procs::pkill(s, args),
        "kill" => procs::kill(s, args),
        "ps" => procs::ps(s, args),
        other => err_ran(&format!("sh: {other}: command not found\n"), 127),
    }
}

fn test(s: &Session<'_>, a: &[&str]) -> bool {
    match a {
        ["!", rest @ ..] => !test(s, rest),
        ["-e", f] => s.host_path(f).exists(),
        ["-f", f] => s.host_path(f).is_file(),
        ["-d", f] => s.host_path(f).is_dir(),
        ["-s", f] => std::fs::metadata(s.host_path(f)).is_ok_and(|m| m.len() > 0),
        ["-x", f] => {
            std::fs::metadata(s.host_path(f)).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
        }
        ["-n", v] => !v.is_empty(),
        ["-z", v] => v.is_empty(),
        [x, "=", y] | [x, "==", y] => x == y,
        [x, "!=", y] => x != y,
        [v] => !v.is_empty(),
        _ => false,
    }
}

fn chmod(s: &Session<'_>, args: &[String]) -> Ran {
    let mut it = args.iter().filter(|a| *a != "-R");
    let Some(mode) = it.next() else {
        return err_ran("usage: chmod mode file ...\n", 1);
    };
    let mut r = Ran::default();
    for f in it {
        let p = s.host_path(f);
        let Ok(meta) = std::fs::metadata(&p) else {
            r.stderr
                .extend(format!("chmod: {f}: No such file or directory\n").into_bytes());
            r.exit = 1;
            continue;
        };
        let cur = meta.permissions().mode() & 0o7777;
        let new = if let Ok(m) = u32::from_str_radix(mode, 8) {
            m
        } else if let Some((who, bits)) = mode.split_once(['+', '-']) {
            let add = mode.contains('+');
            let mut mask = 0;
            for b in bits.chars() {
                mask |= match b {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    _ => 0,
                };
            }
            let scope = if who.is_empty() || who.contains('a') {
                0o777
            } else {
                who.chars().fold(0, |acc, c| {
                    acc | match c {
                        'u' => 0o700,
                        'g' => 0o070,
                        'o' => 0o007,
                        _ => 0,
                    }
                })
            };
            if add {
                cur | (mask & scope)
            } else {
                cur & !(mask & scope)
            }
        } else {
            return err_ran(&format!("chmod: Invalid file mode: {mode}\n"), 1);
        };
        if std::fs::set_permissions(&p, std::fs::Permissions::from_mode(new)).is_err() {
            r.stderr
                .extend(format!("chmod: {f}: Operation not permitted\n").into_bytes());
            r.exit = 1;
        }
    }
    r
}

fn grep(s: &Session<'_>, args: &[String], input: Vec<u8>) -> Ran {
    let (mut quiet, mut invert, mut count, mut fixed, mut icase) =
        (false, false, false, false, false);
    let mut rest = Vec::new();
    for a in args {
        if a.starts_with('-') && a.len() > 1 {
            for c in a[1..].chars() {
                match c {
                    'q' => quiet = true,
                    'v' => invert = true,
                    'c' => count = true,
                    'F' => fixed = true,
                    'i' => icase = true,
                    _ => {}
                }
            }
        } else {
            rest.push(a.clone());
        }
    }
    let Some(pattern) = rest.first() else {
        return err_ran("usage: grep [-qvcFi] pattern [file ...]\n", 2);
    };
    let data = match rest.get(1) {
        Some(f) => match read_guest(s, f) {
            Ok(b) => b,
            Err(e) => return err_ran(&format!("grep: {f}: {e}\n"), 2),
        },
        None => input,
    };
    let text = String::from_utf8_lossy(&data);
    let hits: Vec<&str> = text
        .lines()
        .filter(|l| {
            let m = if fixed {
                if icase {
                    l.to_lowercase().contains(&pattern.to_lowercase())
                } else {
                    l.contains(pattern.as_str())
                }
            } else {
                procs::re_match(pattern, l, icase)
            };
            m != invert
        })
        .collect();
    let exit = i32::from(hits.is_empty());
    if quiet {
        return Ran {
            exit,
            ..Ran::default()
        };
    }
    let body = if count {
        format!("{}\n", hits.len())
    } else {
        hits.iter().map(|l| format!("{l}\n")).collect()
    };
    Ran {
        stdout: body.into_bytes(),
        exit,
        ..Ran::default()
    }
}
