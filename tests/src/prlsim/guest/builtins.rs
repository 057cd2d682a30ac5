//! The macOS utilities the simulated guest has, at their real paths (`/usr/bin/pgrep`,
//! `/bin/test`, `/usr/sbin/chown`, …): lookup ([`utility_at`], [`find_in_path`]), dispatch
//! ([`run_utility`]), and the small ones: `sh`/`bash`/`zsh`, `true`, `false`, `echo`, `test`,
//! `sleep` (simulated time), `id`, `whoami`, `hostname`, `scutil`, `sw_vers`, `uname`, `env`,
//! `sudo`, `date`, `basename`, `dirname`, `seq`, `which`, `launchctl` (stateless). Files:
//! [`super::fileutils`]; text: [`super::textutils`]; processes: [`super::procs`].
//! A name or path not listed here: `sh: NAME: command not found` (127) or `No such file or
//! directory`.

use std::os::unix::fs::PermissionsExt;

use super::state::Status;
use super::{Session, fileutils, printf, procs, textutils};
use crate::prlsim::exec::GuestUser;

/// Utilities and the directories macOS (14/15) has them in.
const UTILITIES: &[(&str, &[&str])] = &[
    ("sh", &["/bin"]),
    ("bash", &["/bin"]),
    ("zsh", &["/bin"]),
    ("dash", &["/bin"]),
    ("[", &["/bin"]),
    ("test", &["/bin"]),
    ("echo", &["/bin"]),
    ("cat", &["/bin"]),
    ("chmod", &["/bin"]),
    ("cp", &["/bin"]),
    ("date", &["/bin"]),
    ("hostname", &["/bin"]),
    ("kill", &["/bin"]),
    ("launchctl", &["/bin"]),
    ("ln", &["/bin"]),
    ("ls", &["/bin"]),
    ("mkdir", &["/bin"]),
    ("mv", &["/bin"]),
    ("ps", &["/bin"]),
    ("pwd", &["/bin"]),
    ("rm", &["/bin"]),
    ("rmdir", &["/bin"]),
    ("sleep", &["/bin"]),
    ("basename", &["/usr/bin"]),
    ("cut", &["/usr/bin"]),
    ("dirname", &["/usr/bin"]),
    ("env", &["/usr/bin"]),
    ("find", &["/usr/bin"]),
    ("false", &["/usr/bin"]),
    ("grep", &["/usr/bin"]),
    ("egrep", &["/usr/bin"]),
    ("fgrep", &["/usr/bin"]),
    ("head", &["/usr/bin"]),
    ("id", &["/usr/bin"]),
    ("mktemp", &["/usr/bin"]),
    ("nohup", &["/usr/bin"]),
    ("pgrep", &["/usr/bin"]),
    ("pkill", &["/usr/bin"]),
    ("printf", &["/usr/bin"]),
    ("readlink", &["/usr/bin"]),
    ("seq", &["/usr/bin"]),
    ("sort", &["/usr/bin"]),
    ("stat", &["/usr/bin"]),
    ("sudo", &["/usr/bin"]),
    ("sw_vers", &["/usr/bin"]),
    ("tail", &["/usr/bin"]),
    ("tee", &["/usr/bin"]),
    ("touch", &["/usr/bin"]),
    ("tr", &["/usr/bin"]),
    ("true", &["/usr/bin"]),
    ("uname", &["/usr/bin"]),
    ("uniq", &["/usr/bin"]),
    ("wc", &["/usr/bin"]),
    ("which", &["/usr/bin"]),
    ("whoami", &["/usr/bin"]),
    ("chown", &["/usr/sbin"]),
    ("tar", &["/usr/bin"]),
    ("cmp", &["/usr/bin"]),
    ("scutil", &["/usr/sbin"]),
];

/// Command names that read their standard input (see [`super::needs_stdin`]).
pub const READS_STDIN: &[&str] = &[
    "cat", "tee", "grep", "egrep", "fgrep", "wc", "head", "tail", "sort", "uniq", "tr", "cut",
    "sh", "bash", "zsh", "dash", "read", "sudo", "env", "xargs", "exec", "command", "eval", ".",
    "tar", "cmp", "source", "nohup",
];

/// The utility installed at guest path `path`, if any.
pub fn utility_at(path: &str) -> Option<&'static str> {
    let (dir, name) = path.rsplit_once('/')?;
    let dir = if dir.is_empty() { "/" } else { dir };
    UTILITIES
        .iter()
        .find(|(n, dirs)| *n == name && dirs.contains(&dir))
        .map(|(n, _)| *n)
}

/// The full path `name` resolves to through `PATH` (utilities or executable guest files).
pub fn find_in_path(s: &Session<'_>, name: &str) -> Option<String> {
    if name.contains('/') {
        let abs = s.normalize(name);
        let exec = std::fs::metadata(s.host_path(&abs))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        return (utility_at(&abs).is_some() || exec).then(|| name.to_owned());
    }
    let path = s.st.var("PATH").unwrap_or("/usr/bin:/bin:/usr/sbin:/sbin");
    path.split(':').find_map(|dir| {
        let full = format!("{dir}/{name}");
        let exec = std::fs::metadata(s.host_path(&full))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        (utility_at(&s.normalize(&full)).is_some() || exec).then_some(full)
    })
}

/// Run utility `name` (already resolved) with `argv` in the current process.
pub fn run_utility(s: &mut Session<'_>, name: &str, argv: &[String]) -> Status {
    let args = &argv[1..];
    Ok(match name {
        "sh" | "bash" | "zsh" | "dash" => return s.run_sh(argv),
        "sudo" => return sudo(s, args),
        "env" => return env(s, args),
        "nohup" => return nohup(s, args),
        "true" => 0,
        "false" => 1,
        "echo" => echo(s, args),
        "printf" => printf::run(s, args),
        "test" | "[" => test(s, name, args),
        "pwd" => {
            let cwd = s.st.cwd.clone();
            s.out(format!("{cwd}\n"));
            0
        }
        "sleep" => sleep(s, args),
        "id" => id(s, args),
        "whoami" => {
            let n = s.st.user.name.clone();
            s.out(format!("{n}\n"));
            0
        }
        "hostname" => {
            let h =
                s.vm.scutil
                    .get("HostName")
                    .or_else(|| s.vm.scutil.get("LocalHostName"));
            let h = h.cloned().unwrap_or_else(|| "Mac.local".to_owned());
            s.out(format!("{h}\n"));
            0
        }
        "scutil" => scutil(s, args),
        "sw_vers" => match args.first().map(String::as_str) {
            Some("-productVersion") => {
                s.out("14.6.1\n");
                0
            }
            Some("-productName") => {
                s.out("macOS\n");
                0
            }
            Some("-buildVersion") => {
                s.out("23G93\n");
                0
            }
            _ => {
                s.out("ProductName:\t\tmacOS\nProductVersion:\t\t14.6.1\nBuildVersion:\t\t23G93\n");
                0
            }
        },
        "uname" => {
            let out = match args.first().map(String::as_str) {
                Some("-m" | "-p") => "arm64\n",
                Some("-a") => "Darwin Mac.local 23.6.0 Darwin Kernel Version 23.6.0 arm64\n",
                Some("-r") => "23.6.0\n",
                _ => "Darwin\n",
            };
            s.out(out);
            0
        }
        "date" => date(s, args),
        "basename" => match args {
            [p, rest @ ..] => {
                let mut b = p
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or("/")
                    .to_owned();
                if b.is_empty() {
                    b = "/".to_owned();
                }
                if let Some(suffix) = rest.first()
                    && b != *suffix
                    && let Some(stripped) = b.strip_suffix(suffix.as_str())
                {
                    b = stripped.to_owned();
                }
                s.out(format!("{b}\n"));
                0
            }
            [] => usage(s, "basename string [suffix]"),
        },
        "dirname" => match args.first() {
            Some(p) => {
                let t = p.trim_end_matches('/');
                let d = match t.rsplit_once('/') {
                    Some(("", _)) => "/".to_owned(),
                    Some((d, _)) => d.trim_end_matches('/').to_owned(),
                    None if p.starts_with('/') => "/".to_owned(),
                    None => ".".to_owned(),
                };
                s.out(format!("{d}\n"));
                0
            }
            None => usage(s, "dirname string [...]"),
        },
        "seq" => seq(s, args),
        "which" => {
            let mut status = 0;
            for a in args.iter().filter(|a| !a.starts_with('-')) {
                match find_in_path(s, a) {
                    Some(p) => s.out(format!("{p}\n")),
                    None => status = 1,
                }
            }
            status
        }
        "launchctl" => launchctl(s, args),
        "pgrep" => procs::pgrep(s, args),
        "pkill" => procs::pkill(s, args),
        "kill" => procs::kill(s, args),
        "ps" => procs::ps(s, args),
        "find" => super::find::find(s, args),
        other => {
            if let Some(r) = fileutils::run(s, other, args) {
                r
            } else if let Some(r) = super::archive::run(s, other, args) {
                r
            } else if let Some(r) = textutils::run(s, other, args) {
                r
            } else {
                s.err(format!("sh: {other}: command not found\n"));
                127
            }
        }
    })
}

fn usage(s: &mut Session<'_>, text: &str) -> i32 {
    s.err(format!("usage: {text}\n"));
    1
}

/// `echo [-n] ARGS…` (no escape processing, as bash's builtin).
pub fn echo(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (newline, args) = match args.first().map(String::as_str) {
        Some("-n") => (false, &args[1..]),
        _ => (true, args),
    };
    let mut line = args.join(" ");
    if newline {
        line.push('\n');
    }
    s.out(line);
    0
}

/// `test`/`[`: 0 true, 1 false, 2 usage error.
pub fn test(s: &mut Session<'_>, name: &str, args: &[String]) -> i32 {
    let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
    if name == "[" {
        if a.last() != Some(&"]") {
            s.err("sh: [: missing `]'\n");
            return 2;
        }
        a.pop();
    }
    match test_expr(s, &a) {
        Ok(b) => i32::from(!b),
        Err(msg) => {
            s.err(format!("sh: {name}: {msg}\n"));
            2
        }
    }
}

fn test_expr(s: &Session<'_>, a: &[&str]) -> Result<bool, String> {
    match a {
        [] => Ok(false),
        [x] => Ok(!x.is_empty()),
        ["!", rest @ ..] if rest.len() <= 3 => Ok(!test_expr(s, rest)?),
        [op, x] if op.starts_with('-') && op.len() == 2 => unary(s, op, x),
        [_, _] => Err(format!("{}: unary operator expected", a[0])),
        ["(", x, ")"] => test_expr(s, &[x]),
        [x, op, y] if is_binary(op) => binary(x, op, y),
        [x, "-a", y] => Ok(test_expr(s, &[x])? && test_expr(s, &[y])?),
        [x, "-o", y] => Ok(test_expr(s, &[x])? || test_expr(s, &[y])?),
        ["(", x, y, ")"] => test_expr(s, &[x, y]),
        _ => {
            if let Some(i) = a.iter().position(|t| *t == "-o") {
                return Ok(test_expr(s, &a[..i])? || test_expr(s, &a[i + 1..])?);
            }
            if let Some(i) = a.iter().position(|t| *t == "-a") {
                return Ok(test_expr(s, &a[..i])? && test_expr(s, &a[i + 1..])?);
            }
            Err("too many arguments".to_owned())
        }
    }
}

fn is_binary(op: &str) -> bool {
    matches!(
        op,
        "=" | "==" | "!=" | "<" | ">" | "-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge"
    )
}

fn unary(s: &Session<'_>, op: &str, x: &str) -> Result<bool, String> {
    let path = s.host_path(x);
    let meta = std::fs::metadata(&path);
    let mode = meta.as_ref().map(|m| m.permissions().mode()).unwrap_or(0);
    let (owner, _) = s.owner(x);
    let bits = |shift: u32| {
        if s.st.user.uid == 0 {
            // root may read and write anything, execute what has any x bit.
            return if shift == 0 { mode & 0o111 != 0 } else { true };
        }
        let who = if owner == s.st.user.name { 6 } else { 0 };
        mode >> who & (1 << shift) != 0
    };
    Ok(match op {
        "-e" => meta.is_ok(),
        "-f" => meta.as_ref().is_ok_and(std::fs::Metadata::is_file),
        "-d" => meta.as_ref().is_ok_and(std::fs::Metadata::is_dir),
        "-s" => meta.as_ref().is_ok_and(|m| m.len() > 0),
        "-L" | "-h" => std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()),
        "-r" => meta.is_ok() && bits(2),
        "-w" => meta.is_ok() && bits(1),
        "-x" => meta.is_ok() && bits(0),
        "-b" | "-c" | "-p" | "-S" | "-t" => false,
        "-n" => !x.is_empty(),
        "-z" => x.is_empty(),
        _ => return Err(format!("{op}: unary operator expected")),
    })
}

fn binary(x: &str, op: &str, y: &str) -> Result<bool, String> {
    let int = |v: &str| {
        v.trim()
            .parse::<i64>()
            .map_err(|_| format!("{v}: integer expression expected"))
    };
    Ok(match op {
        "=" | "==" => x == y,
        "!=" => x != y,
        "<" => x < y,
        ">" => x > y,
        "-eq" => int(x)? == int(y)?,
        "-ne" => int(x)? != int(y)?,
        "-lt" => int(x)? < int(y)?,
        "-le" => int(x)? <= int(y)?,
        "-gt" => int(x)? > int(y)?,
        _ => int(x)? >= int(y)?,
    })
}

fn sleep(s: &mut Session<'_>, args: &[String]) -> i32 {
    let Some(secs) = args.first().and_then(|a| a.parse::<f64>().ok()) else {
        return usage(s, "sleep seconds");
    };
    if secs.is_finite() && secs > 0.0 {
        s.delay_ms = s.delay_ms.saturating_add((secs * 1000.0) as u64);
    }
    0
}

fn id(s: &mut Session<'_>, args: &[String]) -> i32 {
    let flags: String = args
        .iter()
        .filter(|a| a.starts_with('-'))
        .flat_map(|a| a.chars().skip(1))
        .collect();
    let user = match args.iter().find(|a| !a.starts_with('-')) {
        Some(u) if u == "root" || u == "0" => GuestUser::root(),
        Some(u) => GuestUser {
            name: u.clone(),
            uid: 501,
        },
        None => s.st.user.clone(),
    };
    let (gid, group) = if user.uid == 0 {
        (0, "wheel")
    } else {
        (20, "staff")
    };
    let name = flags.contains('n');
    let line = if flags.contains('u') {
        if name {
            user.name.clone()
        } else {
            user.uid.to_string()
        }
    } else if flags.contains('g') || flags.contains('G') {
        if name {
            group.to_owned()
        } else {
            gid.to_string()
        }
    } else {
        format!(
            "uid={}({}) gid={gid}({group}) groups={gid}({group})",
            user.uid, user.name
        )
    };
    s.out(format!("{line}\n"));
    0
}

fn scutil(s: &mut Session<'_>, args: &[String]) -> i32 {
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["--set", key, value] => {
            s.vm.scutil.insert((*key).to_owned(), (*value).to_owned());
            0
        }
        ["--get", key] => match s.vm.scutil.get(*key).cloned() {
            Some(v) => {
                s.out(format!("{v}\n"));
                0
            }
            None => {
                s.err(format!("{key}: not set\n"));
                1
            }
        },
        _ => usage(s, "scutil --set|--get PREF [VALUE]"),
    }
}

/// `env [-i] [NAME=VALUE…] [CMD ARGS…]`.
fn env(s: &mut Session<'_>, args: &[String]) -> Status {
    let mut i = 0;
    let mut clear = false;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-i" | "-" => clear = true,
            "--" => {
                i += 1;
                break;
            }
            _ => break,
        }
        i += 1;
    }
    let mut assigns = Vec::new();
    while let Some((k, v)) = args.get(i).and_then(|a| a.split_once('=')) {
        assigns.push((k.to_owned(), v.to_owned()));
        i += 1;
    }
    let cmd = &args[i.min(args.len())..];
    let saved = s.st.vars.clone();
    if clear {
        s.st.vars.retain(|_, v| !v.exported);
    }
    let r = s.with_env(&assigns, |s| {
        if cmd.is_empty() {
            let lines: String =
                s.st.environment()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}\n"))
                    .collect();
            s.out(lines);
            Ok(0)
        } else {
            s.run_external(cmd, false)
        }
    });
    s.st.vars = saved;
    r
}

/// `nohup [--] UTILITY [ARG…]`: runs the utility (the simulator sends no hangups, so
/// ignoring SIGHUP changes nothing); without one, macOS's usage error and status 127.
fn nohup(s: &mut Session<'_>, args: &[String]) -> Status {
    let cmd = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    };
    if cmd.is_empty() {
        s.err("usage: nohup [--] utility [arguments]\n");
        return Ok(127);
    }
    s.run_external(cmd, false)
}

/// `sudo [-u USER] [-H] [-n] [-E] [--] CMD…`: run `CMD` as `USER` (default root); only root
/// may switch without a password in the simulated guest. The environment is reset (PATH,
/// HOME with `-H`, USER, LOGNAME); the working directory stays.
fn sudo(s: &mut Session<'_>, args: &[String]) -> Status {
    let mut user = "root".to_owned();
    let mut set_home = false;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-u" => {
                i += 1;
                match args.get(i) {
                    Some(u) => user.clone_from(u),
                    None => {
                        s.err("sudo: option requires an argument -- u\n");
                        return Ok(1);
                    }
                }
            }
            "-H" => set_home = true,
            "-n" | "-E" | "-S" => {}
            "--" => {
                i += 1;
                break;
            }
            o if o.starts_with('-') => {
                s.err(format!("sudo: unknown option {o}\n"));
                return Ok(1);
            }
            _ => break,
        }
        i += 1;
    }
    let cmd = &args[i.min(args.len())..];
    if cmd.is_empty() {
        s.err("usage: sudo -u user command\n");
        return Ok(1);
    }
    if s.st.user.uid != 0 {
        s.err("sudo: a password is required\n");
        return Ok(1);
    }
    let target = GuestUser {
        uid: if user == "root" { 0 } else { 501 },
        name: user.clone(),
    };
    let home = super::fs::home_of(&target.name, target.uid);
    let saved = (s.st.user.clone(), s.st.vars.clone());
    s.st.vars.retain(|_, v| !v.exported);
    let mut env = vec![
        (
            "PATH".to_owned(),
            "/usr/bin:/bin:/usr/sbin:/sbin".to_owned(),
        ),
        ("USER".to_owned(), user.clone()),
        ("LOGNAME".to_owned(), user.clone()),
        ("SHELL".to_owned(), "/bin/sh".to_owned()),
        ("SUDO_USER".to_owned(), saved.0.name.clone()),
    ];
    let caller_home = saved
        .1
        .get("HOME")
        .map(|v| v.value.clone())
        .unwrap_or_default();
    env.push(("HOME".to_owned(), if set_home { home } else { caller_home }));
    s.st.user = target;
    let r = s.with_env(&env, |s| s.run_argv(cmd, false));
    (s.st.user, s.st.vars) = saved;
    r
}

fn date(s: &mut Session<'_>, args: &[String]) -> i32 {
    let format = args
        .iter()
        .find_map(|a| a.strip_prefix('+'))
        .unwrap_or("%a %b %e %H:%M:%S %Z %Y")
        .to_owned();
    let secs = s.now() / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let tod = secs % 86_400;
    let (y, m, d) = marbled::calendar::civil_from_days(days);
    let wday = (days + 4).rem_euclid(7);
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:>2}")),
            Some('H') => out.push_str(&format!("{:02}", tod / 3600)),
            Some('M') => out.push_str(&format!("{:02}", tod % 3600 / 60)),
            Some('S') => out.push_str(&format!("{:02}", tod % 60)),
            Some('s') => out.push_str(&secs.to_string()),
            Some('F') => out.push_str(&format!("{y}-{m:02}-{d:02}")),
            Some('T') => out.push_str(&format!(
                "{:02}:{:02}:{:02}",
                tod / 3600,
                tod % 3600 / 60,
                tod % 60
            )),
            Some('Z') => out.push_str("UTC"),
            Some('z') => out.push_str("+0000"),
            Some('a') => out.push_str(DAYS[usize::try_from(wday).unwrap_or(0)]),
            Some('b') => out.push_str(MONTHS[usize::try_from(m - 1).unwrap_or(0)]),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    s.out(format!("{out}\n"));
    0
}

fn seq(s: &mut Session<'_>, args: &[String]) -> i32 {
    let nums: Vec<i64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let (first, step, last) = match nums.as_slice() {
        [l] => (1, 1, *l),
        [f, l] => (*f, 1, *l),
        [f, st, l] => (*f, *st, *l),
        _ => return usage(s, "seq [first [incr]] last"),
    };
    if step == 0 {
        return usage(s, "seq [first [incr]] last");
    }
    let mut out = String::new();
    let mut v = first;
    let mut n = 0;
    while (step > 0 && v <= last || step < 0 && v >= last) && n < 1_000_000 {
        out.push_str(&format!("{v}\n"));
        v += step;
        n += 1;
    }
    s.out(out);
    0
}

/// `launchctl`: stateless — `bootstrap DOMAIN PLIST` succeeds when the plist exists,
/// `bootout` reports the service as not loaded, `kickstart`/`print` as not found.
fn launchctl(s: &mut Session<'_>, args: &[String]) -> i32 {
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["bootstrap", _, plist] | ["load", plist] | ["load", "-w", plist] => {
            if s.host_path(plist).is_file() {
                0
            } else {
                s.err(format!(
                    "Bootstrap failed: 2: No such file or directory\n{plist}\n"
                ));
                5
            }
        }
        ["bootout", ..] | ["unload", ..] => {
            s.err("Boot-out failed: 3: No such process\n");
            3
        }
        ["kickstart", .., target] | ["print", target] => {
            s.err(format!(
                "Could not find service \"{target}\" in domain for system\n"
            ));
            113
        }
        _ => usage(s, "launchctl <subcommand> ... | help [subcommand]"),
    }
}
