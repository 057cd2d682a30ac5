//! File utilities of the simulated guest with BSD options, messages and exit codes: `rm`,
//! `rmdir`, `mkdir`, `chmod`, `chown`, `ls`, `stat` (`-f FORMAT`: `%Lp %Su %Sg %p %Sp %u %g
//! %z %N %m %HT`…), `mktemp`, `mv`, `cp`, `ln`, `touch`, `readlink`.

use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::Session;

/// Run file utility `name`; `None` if it is not one.
pub fn run(s: &mut Session<'_>, name: &str, args: &[String]) -> Option<i32> {
    Some(match name {
        "rm" => rm(s, args),
        "rmdir" => rmdir(s, args),
        "mkdir" => mkdir(s, args),
        "chmod" => chmod(s, args),
        "chown" => chown(s, args),
        "ls" => ls(s, args),
        "stat" => stat(s, args),
        "mktemp" => mktemp(s, args),
        "mv" => mv(s, args),
        "cp" => cp(s, args),
        "ln" => ln(s, args),
        "touch" => touch(s, args),
        "readlink" => readlink(s, args),
        _ => return None,
    })
}

/// Split `args` into single-letter flags and operands (options end at `--` or the first
/// operand); flags that take a value take the next argument.
fn getopt(args: &[String], with_value: &str) -> (Vec<(char, Option<String>)>, Vec<String>) {
    let mut flags = Vec::new();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a.len() < 2 {
            break;
        }
        let chars: Vec<char> = a[1..].chars().collect();
        for (j, c) in chars.iter().enumerate() {
            if with_value.contains(*c) {
                let rest: String = chars[j + 1..].iter().collect();
                let v = if rest.is_empty() {
                    i += 1;
                    args.get(i).cloned()
                } else {
                    Some(rest)
                };
                flags.push((*c, v));
                break;
            }
            flags.push((*c, None));
        }
        i += 1;
    }
    (flags, args[i.min(args.len())..].to_vec())
}

fn has(flags: &[(char, Option<String>)], c: char) -> bool {
    flags.iter().any(|(f, _)| *f == c)
}

fn value(flags: &[(char, Option<String>)], c: char) -> Option<String> {
    flags
        .iter()
        .rev()
        .find(|(f, _)| *f == c)
        .and_then(|(_, v)| v.clone())
}

fn fail(s: &mut Session<'_>, msg: String) -> i32 {
    s.err(msg);
    1
}

fn rm(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (flags, files) = getopt(args, "");
    let force = has(&flags, 'f');
    let recursive = has(&flags, 'r') || has(&flags, 'R');
    let verbose = has(&flags, 'v');
    if files.is_empty() {
        if force {
            return 0;
        }
        return fail(s, "usage: rm [-f | -i] [-dIPRrvWx] file ...\n".to_owned());
    }
    let mut status = 0;
    for f in files {
        let p = s.host_path(&f);
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            if !force {
                status = fail(s, format!("rm: {f}: No such file or directory\n"));
            }
            continue;
        };
        let res = if meta.is_dir() {
            if !recursive {
                status = fail(s, format!("rm: {f}: is a directory\n"));
                continue;
            }
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match res {
            Ok(()) => {
                s.forget_owners(&f);
                if verbose {
                    s.out(format!("{f}\n"));
                }
            }
            Err(_) => status = fail(s, format!("rm: {f}: Permission denied\n")),
        }
    }
    status
}

fn rmdir(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (_, dirs) = getopt(args, "");
    let mut status = 0;
    for d in dirs {
        if std::fs::remove_dir(s.host_path(&d)).is_err() {
            let why = if s.host_path(&d).is_dir() {
                "Directory not empty"
            } else {
                "No such file or directory"
            };
            status = fail(s, format!("rmdir: {d}: {why}\n"));
        } else {
            s.forget_owners(&d);
        }
    }
    status
}

fn mkdir(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (flags, dirs) = getopt(args, "m");
    let parents = has(&flags, 'p');
    let mode = value(&flags, 'm').and_then(|m| u32::from_str_radix(&m, 8).ok());
    if dirs.is_empty() {
        return fail(
            s,
            "usage: mkdir [-pv] [-m mode] directory_name ...\n".to_owned(),
        );
    }
    let mut status = 0;
    for d in dirs {
        let abs = s.normalize(&d);
        let p = s.host_path(&abs);
        if p.is_dir() {
            if !parents {
                status = fail(s, format!("mkdir: {d}: File exists\n"));
            }
            continue;
        }
        if p.exists() {
            status = fail(s, format!("mkdir: {d}: File exists\n"));
            continue;
        }
        // Create missing ancestors one by one so each gets the guest's mode and owner.
        let mut missing = Vec::new();
        let mut cur = abs.clone();
        while !s.host_path(&cur).exists() {
            missing.push(cur.clone());
            match cur.rsplit_once('/') {
                Some(("", _)) | None => break,
                Some((parent, _)) => cur = parent.to_owned(),
            }
        }
        if !parents && missing.len() > 1 {
            status = fail(s, format!("mkdir: {d}: No such file or directory\n"));
            continue;
        }
        for m in missing.iter().rev() {
            let host = s.host_path(m);
            if std::fs::create_dir(&host).is_err() {
                status = fail(s, format!("mkdir: {d}: Permission denied\n"));
                break;
            }
            let bits = if *m == abs {
                mode.unwrap_or(0o777 & !s.st.umask)
            } else {
                (0o777 & !s.st.umask) | 0o300
            };
            let _ = std::fs::set_permissions(&host, std::fs::Permissions::from_mode(bits));
            s.created(m);
        }
    }
    status
}

fn chmod(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (flags, rest) = getopt(args, "");
    let recursive = has(&flags, 'R');
    let Some((mode, files)) = rest.split_first() else {
        return fail(
            s,
            "usage: chmod [-fhv] [-R [-H | -L | -P]] mode file ...\n".to_owned(),
        );
    };
    if files.is_empty() {
        return fail(
            s,
            "usage: chmod [-fhv] [-R [-H | -L | -P]] mode file ...\n".to_owned(),
        );
    }
    let mut status = 0;
    for f in files {
        let p = s.host_path(f);
        let mut targets = vec![p.clone()];
        if recursive && p.is_dir() {
            collect_tree(&p, &mut targets);
        }
        for t in targets {
            let Ok(meta) = std::fs::metadata(&t) else {
                status = fail(s, format!("chmod: {f}: No such file or directory\n"));
                continue;
            };
            let cur = meta.permissions().mode() & 0o7777;
            let Some(new) = apply_mode(mode, cur, meta.is_dir(), s.st.umask) else {
                return fail(s, format!("chmod: Invalid file mode: {mode}\n"));
            };
            if std::fs::set_permissions(&t, std::fs::Permissions::from_mode(new)).is_err() {
                status = fail(s, format!("chmod: {f}: Operation not permitted\n"));
            }
        }
    }
    status
}

fn collect_tree(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            out.push(p.clone());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_tree(&p, out);
            }
        }
    }
}

/// An octal or symbolic (`u+x`, `go-w`, `a=r,u+w`, `+x`) mode applied to `cur`.
pub fn apply_mode(mode: &str, cur: u32, is_dir: bool, umask: u32) -> Option<u32> {
    if let Ok(m) = u32::from_str_radix(mode, 8) {
        return (m <= 0o7777).then_some(m);
    }
    let mut out = cur;
    for clause in mode.split(',') {
        let op_at = clause.find(['+', '-', '='])?;
        let (who, rest) = clause.split_at(op_at);
        let mut scope = 0;
        for c in who.chars() {
            scope |= match c {
                'u' => 0o4700,
                'g' => 0o2070,
                'o' => 0o0007,
                'a' => 0o6777,
                _ => return None,
            };
        }
        let implicit = who.is_empty();
        if implicit {
            scope = 0o6777;
        }
        let op = rest.chars().next()?;
        let mut bits = 0;
        for c in rest[1..].chars() {
            bits |= match c {
                'r' => 0o444,
                'w' => 0o222,
                'x' => 0o111,
                'X' if is_dir || cur & 0o111 != 0 => 0o111,
                'X' => 0,
                's' => 0o6000,
                't' => 0o1000,
                _ => return None,
            };
        }
        let mut mask = bits & scope;
        if implicit {
            mask &= !umask;
        }
        out = match op {
            '+' => out | mask,
            '-' => out & !mask,
            _ => (out & !scope) | mask,
        };
    }
    Some(out)
}

/// The name of a user given by name or by uid (the simulated guest has root, uid 0, and one
/// admin user, uid 501).
pub fn user_name(spec: &str) -> String {
    match spec {
        "0" => "root".to_owned(),
        "501" => "admin".to_owned(),
        other => other.to_owned(),
    }
}

/// The name of a group given by name or by gid (`wheel` 0, `staff` 20).
pub fn group_name(spec: &str) -> String {
    match spec {
        "0" => "wheel".to_owned(),
        "20" => "staff".to_owned(),
        other => other.to_owned(),
    }
}

fn chown(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (flags, rest) = getopt(args, "");
    let recursive = has(&flags, 'R');
    let Some((spec, files)) = rest.split_first() else {
        return fail(
            s,
            "usage: chown [-fhnvx] [-R [-H | -L | -P]] owner[:group] file ...\n".to_owned(),
        );
    };
    if files.is_empty() {
        return fail(
            s,
            "usage: chown [-fhnvx] [-R [-H | -L | -P]] owner[:group] file ...\n".to_owned(),
        );
    }
    // The guest stores owners by id and prints names, so `chown 0:0` is `root:wheel`.
    let (user, group) = match spec.split_once([':', '.']) {
        Some((u, g)) => (user_name(u), Some(group_name(g))),
        None => (user_name(spec), None),
    };
    let mut status = 0;
    for f in files {
        if std::fs::symlink_metadata(s.host_path(f)).is_err() {
            status = fail(s, format!("chown: {f}: No such file or directory\n"));
            continue;
        }
        if s.st.user.uid != 0 {
            status = fail(s, format!("chown: {f}: Operation not permitted\n"));
            continue;
        }
        let mut paths = vec![s.normalize(f)];
        if recursive && s.host_path(f).is_dir() {
            let mut tree = Vec::new();
            collect_tree(&s.host_path(f), &mut tree);
            let root = s.vm.guest_root();
            paths.extend(tree.iter().filter_map(|p| {
                p.strip_prefix(&root)
                    .ok()
                    .map(|r| format!("/{}", r.to_string_lossy()))
            }));
        }
        for p in paths {
            let (cur_user, cur_group) = s.owner(&p);
            let u = if user.is_empty() {
                cur_user
            } else {
                user.clone()
            };
            let g = group.clone().filter(|g| !g.is_empty()).unwrap_or(cur_group);
            s.set_owner(&p, &u, &g);
        }
    }
    status
}

fn ls(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (flags, operands) = getopt(args, "");
    let long = has(&flags, 'l');
    let all = has(&flags, 'a') || has(&flags, 'A');
    let dir_itself = has(&flags, 'd');
    let operands = if operands.is_empty() {
        vec![".".to_owned()]
    } else {
        operands
    };
    let mut status = 0;
    let many = operands.len() > 1;
    let mut out = String::new();
    for (i, f) in operands.iter().enumerate() {
        let p = s.host_path(f);
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            status = fail(s, format!("ls: {f}: No such file or directory\n"));
            continue;
        };
        if dir_itself || !meta.is_dir() {
            out.push_str(&entry(s, f, f, long));
            continue;
        }
        if many {
            if i > 0 {
                out.push('\n');
            }
            let _ = writeln!(out, "{f}:");
        }
        let mut names = s.list_dir(f).unwrap_or_default();
        names.retain(|n| all || !n.starts_with('.'));
        names.sort();
        for n in names {
            let path = format!("{}/{n}", f.trim_end_matches('/'));
            out.push_str(&entry(s, &path, &n, long));
        }
    }
    s.out(out);
    status
}

fn entry(s: &Session<'_>, path: &str, shown: &str, long: bool) -> String {
    if !long {
        return format!("{shown}\n");
    }
    let meta = std::fs::symlink_metadata(s.host_path(path));
    let (mode, size, links) = meta
        .map(|m| (m.mode(), m.len(), m.nlink()))
        .unwrap_or((0, 0, 1));
    let (user, group) = s.owner(path);
    format!(
        "{} {links:>2} {user:<8} {group:<8} {size:>8} Jan  1 00:00 {shown}\n",
        symbolic_mode(mode)
    )
}

/// `-rw-r--r--` from a full st_mode.
pub fn symbolic_mode(mode: u32) -> String {
    let kind = match mode & 0o170_000 {
        0o040_000 => 'd',
        0o120_000 => 'l',
        _ => '-',
    };
    let mut s = String::from(kind);
    for shift in [6, 3, 0] {
        let b = mode >> shift & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// BSD `stat [-L] [-f FORMAT] FILE…` (`-c` is the GNU spelling: illegal on macOS).
fn stat(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (flags, files) = getopt(args, "ft");
    if let Some((c, _)) = flags.iter().find(|(c, _)| !"fLlnqrsxt".contains(*c)) {
        return fail(
            s,
            format!(
                "stat: illegal option -- {c}\nusage: stat [-FLnq] [-f format | -l | -r | -s | -x] [-t timefmt] [file ...]\n"
            ),
        );
    }
    let format = value(&flags, 'f');
    let follow = has(&flags, 'L');
    let quiet = has(&flags, 'q');
    let mut status = 0;
    for f in files {
        let p = s.host_path(&f);
        let meta = if follow {
            std::fs::metadata(&p)
        } else {
            std::fs::symlink_metadata(&p)
        };
        let Ok(meta) = meta else {
            if !quiet {
                s.err(format!("stat: {f}: stat: No such file or directory\n"));
            }
            status = 1;
            continue;
        };
        let (user, group) = s.owner(&f);
        let uid = if user == "root" { 0 } else { 501 };
        let gid = if group == "wheel" { 0 } else { 20 };
        let line = match &format {
            Some(fmt) => format_stat(fmt, &f, &meta, &user, &group, uid, gid),
            None => format!(
                "16777220 {} {} {} {user} {group} 0 {} \"Jan  1 00:00:00 2024\" \"Jan  1 00:00:00 2024\" \"Jan  1 00:00:00 2024\" \"Jan  1 00:00:00 2024\" 4096 0 0 {f}",
                meta.ino(),
                symbolic_mode(meta.mode()),
                meta.nlink(),
                meta.len()
            ),
        };
        s.out(format!("{line}\n"));
    }
    status
}

fn format_stat(
    fmt: &str,
    name: &str,
    meta: &std::fs::Metadata,
    user: &str,
    group: &str,
    uid: u32,
    gid: u32,
) -> String {
    let mode = meta.mode();
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Modifiers: S (string), L (low bits), H (high bits), O (octal), D (decimal).
        let mut modifier = None;
        if let Some(m) = chars.peek().copied().filter(|m| "SLHOMD".contains(*m)) {
            modifier = Some(m);
            chars.next();
        }
        match (modifier, chars.next()) {
            (None, Some('%')) => out.push('%'),
            (Some('L'), Some('p')) => {
                let _ = write!(out, "{:o}", mode & 0o777);
            }
            (Some('H'), Some('p')) => {
                let _ = write!(out, "{:o}", mode >> 12);
            }
            (Some('S'), Some('p')) => out.push_str(&symbolic_mode(mode)),
            (_, Some('p')) => {
                let _ = write!(out, "{mode:o}");
            }
            (Some('S'), Some('u')) => out.push_str(user),
            (Some('S'), Some('g')) => out.push_str(group),
            (_, Some('u')) => out.push_str(&uid.to_string()),
            (_, Some('g')) => out.push_str(&gid.to_string()),
            (_, Some('z')) => out.push_str(&meta.len().to_string()),
            (_, Some('N')) => out.push_str(name),
            (_, Some('l')) => out.push_str(&meta.nlink().to_string()),
            (_, Some('i')) => out.push_str(&meta.ino().to_string()),
            (_, Some('m')) => out.push_str(&meta.mtime().to_string()),
            (_, Some('a')) => out.push_str(&meta.atime().to_string()),
            (Some('H'), Some('T')) => out.push_str(if meta.is_dir() {
                "Directory"
            } else if meta.file_type().is_symlink() {
                "Symbolic Link"
            } else {
                "Regular File"
            }),
            (_, Some(other)) => {
                out.push('%');
                out.push(other);
            }
            (_, None) => out.push('%'),
        }
    }
    out
}

fn mktemp(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (flags, templates) = getopt(args, "t");
    let dir = has(&flags, 'd');
    let quiet = has(&flags, 'q');
    let tmpdir =
        s.st.var("TMPDIR")
            .filter(|t| !t.is_empty())
            .unwrap_or("/tmp")
            .trim_end_matches('/')
            .to_owned();
    let mut templates = templates;
    if let Some(prefix) = value(&flags, 't') {
        templates.push(format!("{tmpdir}/{prefix}.XXXXXXXX"));
    } else if templates.is_empty() {
        templates.push(format!("{tmpdir}/tmp.XXXXXXXX"));
    }
    let mut status = 0;
    for t in templates {
        let xs = t.len() - t.trim_end_matches('X').len();
        let mut made = None;
        for _ in 0..100 {
            s.seq += 1;
            let mut n = s.seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ s.now();
            let mut suffix = String::new();
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            for _ in 0..xs {
                suffix.push(char::from(ALPHABET[usize::try_from(n % 62).unwrap_or(0)]));
                n /= 62;
            }
            let path = format!("{}{suffix}", &t[..t.len() - xs]);
            if !s.host_path(&path).exists() {
                made = Some(path);
                break;
            }
        }
        let Some(path) = made else {
            status = 1;
            continue;
        };
        let host = s.host_path(&path);
        let ok = if dir {
            std::fs::create_dir(&host)
                .and_then(|()| {
                    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o700))
                })
                .is_ok()
        } else {
            std::fs::write(&host, b"")
                .and_then(|()| {
                    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o600))
                })
                .is_ok()
        };
        if ok {
            s.created(&path);
            s.out(format!("{path}\n"));
        } else {
            if !quiet {
                let what = if dir { "mkdtemp" } else { "mkstemp" };
                s.err(format!(
                    "mktemp: {what} failed on {path}: No such file or directory\n"
                ));
            }
            status = 1;
        }
    }
    status
}

/// Destination of `src` for `mv`/`cp`/`ln` into `dst` (into it when it is a directory).
fn destination(s: &Session<'_>, src: &str, dst: &str, into_dir: bool) -> String {
    if into_dir && s.host_path(dst).is_dir() {
        let base = src.trim_end_matches('/').rsplit('/').next().unwrap_or(src);
        format!("{}/{base}", dst.trim_end_matches('/'))
    } else {
        dst.to_owned()
    }
}

fn mv(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (_, ops) = getopt(args, "");
    let Some((dst, srcs)) = ops.split_last().filter(|(_, srcs)| !srcs.is_empty()) else {
        return fail(
            s,
            "usage: mv [-f | -i | -n] [-hv] source target\n".to_owned(),
        );
    };
    let mut status = 0;
    for src in srcs {
        let to = destination(s, src, dst, true);
        if std::fs::symlink_metadata(s.host_path(src)).is_err() {
            status = fail(
                s,
                format!("mv: rename {src} to {to}: No such file or directory\n"),
            );
            continue;
        }
        if std::fs::rename(s.host_path(src), s.host_path(&to)).is_err() {
            status = fail(
                s,
                format!("mv: rename {src} to {to}: No such file or directory\n"),
            );
            continue;
        }
        s.move_owners(src, &to);
    }
    status
}

fn cp(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (flags, ops) = getopt(args, "");
    let recursive = has(&flags, 'R') || has(&flags, 'r');
    let Some((dst, srcs)) = ops.split_last().filter(|(_, srcs)| !srcs.is_empty()) else {
        return fail(
            s,
            "usage: cp [-R [-H | -L | -P]] [-fi | -n] [-aclpsvXx] source_file target_file\n"
                .to_owned(),
        );
    };
    let mut status = 0;
    for src in srcs {
        let from = s.host_path(src);
        let to_guest = destination(s, src, dst, true);
        let to = s.host_path(&to_guest);
        if from.is_dir() {
            if !recursive {
                status = fail(s, format!("cp: {src} is a directory (not copied).\n"));
                continue;
            }
            if copy_tree(&from, &to).is_err() {
                status = fail(s, format!("cp: {to_guest}: Permission denied\n"));
            }
            continue;
        }
        if !from.exists() {
            status = fail(s, format!("cp: {src}: No such file or directory\n"));
            continue;
        }
        let existed = to.exists();
        if std::fs::copy(&from, &to).is_err() {
            status = fail(s, format!("cp: {to_guest}: No such file or directory\n"));
        } else if !existed {
            s.created(&to_guest);
        }
    }
    status
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

fn ln(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (flags, ops) = getopt(args, "");
    let symbolic = has(&flags, 's');
    let force = has(&flags, 'f');
    let no_deref = has(&flags, 'n') || has(&flags, 'h');
    let (target, link) = match ops.as_slice() {
        [t] => (
            t.clone(),
            t.trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(t)
                .to_owned(),
        ),
        [t, l] => (t.clone(), l.clone()),
        _ => {
            return fail(
                s,
                "usage: ln [-s [-F] | -L | -P] [-f | -i] [-hnv] source_file [target_file]\n"
                    .to_owned(),
            );
        }
    };
    let link_is_dir = s.host_path(&link).is_dir()
        && !(no_deref
            && std::fs::symlink_metadata(s.host_path(&link))
                .is_ok_and(|m| m.file_type().is_symlink()));
    let link = destination(s, &target, &link, link_is_dir);
    let host = s.host_path(&link);
    if std::fs::symlink_metadata(&host).is_ok() {
        if !force {
            return fail(s, format!("ln: {link}: File exists\n"));
        }
        if std::fs::remove_file(&host).is_err() {
            return fail(s, format!("ln: {link}: Is a directory\n"));
        }
    }
    let res = if symbolic {
        s.symlink(&target, &link)
    } else {
        std::fs::hard_link(s.host_path(&target), &host)
    };
    match res {
        Ok(()) => 0,
        Err(_) => fail(s, format!("ln: {link}: No such file or directory\n")),
    }
}

fn touch(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (_, files) = getopt(args, "trd");
    let mut status = 0;
    for f in files {
        let p = s.host_path(&f);
        if p.exists() {
            let now = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(s.now());
            let _ = std::fs::File::options()
                .append(true)
                .open(&p)
                .and_then(|file| file.set_modified(now));
        } else if let Err(e) = s.open_write(&f, true) {
            status = fail(s, format!("touch: {f}: {e}\n"));
        }
    }
    status
}

fn readlink(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (flags, files) = getopt(args, "");
    let canonical = has(&flags, 'f');
    let mut status = 0;
    for f in files {
        if canonical {
            let abs = s.normalize(&f);
            let resolved = s.read_link(&abs).unwrap_or(abs);
            s.out(format!("{resolved}\n"));
        } else {
            match s.read_link(&f) {
                Some(t) => s.out(format!("{t}\n")),
                None => status = 1,
            }
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::apply_mode;

    #[test]
    fn symbolic_modes() {
        assert_eq!(apply_mode("600", 0o644, false, 0o022), Some(0o600));
        assert_eq!(apply_mode("u+x", 0o644, false, 0o022), Some(0o744));
        assert_eq!(apply_mode("go-rwx", 0o755, true, 0o022), Some(0o700));
        assert_eq!(apply_mode("a=r,u+w", 0o777, false, 0o022), Some(0o644));
        assert_eq!(apply_mode("+x", 0o644, false, 0o022), Some(0o755));
        assert_eq!(apply_mode("q+x", 0o644, false, 0o022), None);
    }
}
