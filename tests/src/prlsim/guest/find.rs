//! BSD `find PATH… [PRIMARY…]` for the simulated guest: the primaries the daemon's guest
//! scripts use (`-prune`, `-type f|d|l`, `-perm MODE` exact or `-perm -MODE` all bits,
//! `-user NAME`, `-name GLOB`), ANDed, with the implicit `-print`. Unknown primaries fail as
//! BSD find does (`find: -x: unknown primary or operator`, exit 1), so a script that relies
//! on one the simulator lacks fails loudly instead of matching nothing.

use std::os::unix::fs::PermissionsExt;

use super::Session;
use super::pattern;

/// One test of the expression.
#[derive(Debug)]
enum Primary {
    Prune,
    Type(char),
    PermExact(u32),
    PermAll(u32),
    User(String),
    Name(String),
}

/// Run `find` with `args`; the exit status.
pub fn find(s: &mut Session<'_>, args: &[String]) -> i32 {
    let split = args
        .iter()
        .position(|a| a.starts_with('-'))
        .unwrap_or(args.len());
    let (roots, expr) = args.split_at(split);
    if roots.is_empty() {
        s.err("usage: find [-H | -L | -P] [-EXdsx] [-f path] path ... [expression]\n");
        return 1;
    }
    let primaries = match parse(expr) {
        Ok(p) => p,
        Err(msg) => {
            s.err(format!("find: {msg}\n"));
            return 1;
        }
    };
    let mut status = 0;
    for root in roots {
        if !s.host_path(root).exists() {
            s.err(format!("find: {root}: No such file or directory\n"));
            status = 1;
            continue;
        }
        walk(s, root, &primaries);
    }
    status
}

fn parse(expr: &[String]) -> Result<Vec<Primary>, String> {
    let mut out = Vec::new();
    let mut it = expr.iter();
    while let Some(p) = it.next() {
        let mut operand = || {
            it.next()
                .cloned()
                .ok_or(format!("{p}: requires additional arguments"))
        };
        out.push(match p.as_str() {
            "-prune" => Primary::Prune,
            "-print" => continue,
            "-type" => {
                let t = operand()?;
                match t.as_str() {
                    "f" => Primary::Type('f'),
                    "d" => Primary::Type('d'),
                    "l" => Primary::Type('l'),
                    _ => return Err(format!("-type: {t}: unknown type")),
                }
            }
            "-perm" => {
                let m = operand()?;
                let (all, digits) = match m.strip_prefix('-') {
                    Some(rest) => (true, rest.to_owned()),
                    None => (false, m.clone()),
                };
                let mode = u32::from_str_radix(&digits, 8)
                    .map_err(|_| format!("-perm: {m}: illegal mode string"))?;
                if all {
                    Primary::PermAll(mode)
                } else {
                    Primary::PermExact(mode)
                }
            }
            "-user" => Primary::User(super::fileutils::user_name(&operand()?)),
            "-name" => Primary::Name(operand()?),
            other => return Err(format!("{other}: unknown primary or operator")),
        });
    }
    Ok(out)
}

/// Visit `path` (a guest path as given), print it if every primary holds, descend unless
/// pruned.
fn walk(s: &mut Session<'_>, path: &str, primaries: &[Primary]) {
    let host = s.host_path(path);
    let Ok(meta) = std::fs::symlink_metadata(&host) else {
        return;
    };
    let mut pruned = false;
    let mut matched = true;
    for p in primaries {
        let holds = match p {
            Primary::Prune => {
                pruned = true;
                true
            }
            Primary::Type('d') => meta.is_dir(),
            Primary::Type('l') => meta.file_type().is_symlink(),
            Primary::Type(_) => meta.is_file(),
            Primary::PermExact(m) => meta.permissions().mode() & 0o7777 == *m,
            Primary::PermAll(m) => meta.permissions().mode() & m == *m,
            Primary::User(u) => s.owner(path).0 == *u,
            Primary::Name(glob) => {
                let base = path.rsplit('/').next().unwrap_or(path);
                let pat: Vec<pattern::PatChar> = glob.chars().map(|c| (c, false)).collect();
                let name: Vec<char> = base.chars().collect();
                pattern::matches(&pat, &name, false)
            }
        };
        if !holds {
            matched = false;
            break;
        }
    }
    if matched {
        s.out(format!("{path}\n"));
    }
    if pruned || !meta.is_dir() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(&host) else {
        return;
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        walk(
            s,
            &format!("{}/{name}", path.trim_end_matches('/')),
            primaries,
        );
    }
}
