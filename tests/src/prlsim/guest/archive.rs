//! Archive and comparison utilities of the simulated guest: `tar` (bsdtar 3.5 as macOS
//! ships it, extraction only: `-x [-z] [-v] -f FILE|- [-C DIR]`, the form `marblectl runner
//! install` uses to unpack the actions/runner package it streams on `prlctl exec`'s stdin)
//! and `cmp` (`-s`, two files; 0 same, 1 different, 2 trouble).
//!
//! `tar` keeps each member's mode (minus the umask, as bsdtar does for a non-root user; root
//! keeps it whole), creates missing parent directories, refuses members that would land
//! outside the target directory (`..`, absolute paths: bsdtar strips the leading `/` and
//! refuses `..` unless `-P`), and reports a truncated or corrupt archive with bsdtar's
//! words and exit status 1. Files it creates belong to the user running it.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;

use super::Session;

/// Run archive utility `name`; `None` if it is not one.
pub fn run(s: &mut Session<'_>, name: &str, args: &[String]) -> Option<i32> {
    Some(match name {
        "tar" => tar(s, args),
        "cmp" => cmp(s, args),
        _ => return None,
    })
}

/// Options of one `tar` call.
#[derive(Default)]
struct TarOpts {
    extract: bool,
    gzip: bool,
    verbose: bool,
    file: Option<String>,
    dir: Option<String>,
}

/// bsdtar's option syntax: a first word without `-` is a bundle of letters (`xzf F`), and
/// `-xzf F`, `-C DIR`, `--directory DIR` work as usual; letters taking a value (`f`, `C`)
/// consume the next word.
fn tar_opts(args: &[String]) -> Result<TarOpts, String> {
    let mut o = TarOpts::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        let letters = if a == "--directory" || a == "-C" {
            o.dir = Some(
                args.get(i)
                    .cloned()
                    .ok_or("option -C requires an argument")?,
            );
            i += 1;
            continue;
        } else if let Some(rest) = a.strip_prefix('-') {
            rest
        } else if i == 1 {
            a
        } else {
            return Err(format!("tar: {a}: member selection is not supported here"));
        };
        for c in letters.chars() {
            match c {
                'x' => o.extract = true,
                'z' => o.gzip = true,
                'v' => o.verbose = true,
                'p' | 'o' => {}
                'f' | 'C' => {
                    let v = args
                        .get(i)
                        .cloned()
                        .ok_or(format!("option -{c} requires an argument"))?;
                    i += 1;
                    if c == 'f' {
                        o.file = Some(v);
                    } else {
                        o.dir = Some(v);
                    }
                }
                other => return Err(format!("tar: Option -{other} is not supported")),
            }
        }
    }
    Ok(o)
}

fn tar(s: &mut Session<'_>, args: &[String]) -> i32 {
    let o = match tar_opts(args) {
        Ok(o) if o.extract => o,
        Ok(_) => {
            s.err("tar: Must specify one of -c, -r, -t, -u, -x\n");
            return 1;
        }
        Err(e) => {
            s.err(format!("{e}\nUsage:\n  List:    tar -tf <archive-filename>\n  Extract: tar -xf <archive-filename>\n"));
            return 1;
        }
    };
    let data = match o.file.as_deref() {
        None | Some("-") => s.stdin_all(),
        Some(f) => match s.read_guest(f) {
            Ok(d) => d,
            Err(e) => {
                s.err(format!(
                    "tar: Error opening archive: Failed to open '{f}': {e}\n"
                ));
                return 1;
            }
        },
    };
    let dir = s.normalize(o.dir.as_deref().unwrap_or("."));
    if !s.host_path(&dir).is_dir() {
        s.err(format!("tar: could not chdir to '{dir}'\n"));
        return 1;
    }
    let raw = if o.gzip || data.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&data[..])
            .read_to_end(&mut out)
            .is_err()
        {
            s.err("tar: Error opening archive: truncated gzip input\n");
            return 1;
        }
        out
    } else {
        data
    };
    match extract(s, &raw, &dir, o.verbose) {
        Ok(()) => 0,
        Err(e) => {
            s.err(format!(
                "tar: {e}\ntar: Error exit delayed from previous errors.\n"
            ));
            1
        }
    }
}

/// Unpack `raw` (an uncompressed tar stream) under guest directory `dir`.
fn extract(s: &mut Session<'_>, raw: &[u8], dir: &str, verbose: bool) -> Result<(), String> {
    let mut archive = tar::Archive::new(raw);
    let entries = archive
        .entries()
        .map_err(|e| format!("Damaged tar archive: {e}"))?;
    let umask = if s.st.user.uid == 0 { 0 } else { s.st.umask };
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("Damaged tar archive: {e}"))?;
        let name = entry
            .path()
            .map_err(|e| format!("Damaged tar archive: {e}"))?
            .to_string_lossy()
            .trim_start_matches('/')
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_owned();
        if name.is_empty() {
            continue;
        }
        if name.split('/').any(|c| c == "..") {
            return Err(format!("{name}: Path contains '..'"));
        }
        if verbose {
            s.err(format!("x {name}\n"));
        }
        let guest = format!("{}/{name}", dir.trim_end_matches('/'));
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777 & !umask;
        let kind = entry.header().entry_type();
        make_parents(s, &guest)?;
        let host = s.host_path(&guest);
        if kind.is_dir() {
            if !host.is_dir() {
                std::fs::create_dir(&host)
                    .map_err(|e| format!("{name}: Can't create '{name}': {e}"))?;
                s.created(&guest);
            }
            let _ = std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode));
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            let _ = std::fs::remove_file(&host);
            s.symlink(&target, &guest)
                .map_err(|e| format!("{name}: Can't create '{name}': {e}"))?;
        } else if kind.is_file() {
            let mut body = Vec::new();
            entry
                .read_to_end(&mut body)
                .map_err(|_| "Truncated tar archive".to_owned())?;
            let _ = std::fs::remove_file(&host);
            s.write_guest(&guest, &body, false)
                .map_err(|e| format!("{name}: Can't create '{name}': {e}"))?;
            let _ = std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode));
        }
    }
    Ok(())
}

/// Create the missing ancestors of guest path `path` (mode 0755 minus the umask).
fn make_parents(s: &mut Session<'_>, path: &str) -> Result<(), String> {
    let Some((parent, _)) = path.rsplit_once('/') else {
        return Ok(());
    };
    if parent.is_empty() || s.host_path(parent).is_dir() {
        return Ok(());
    }
    make_parents(s, parent)?;
    let host = s.host_path(parent);
    std::fs::create_dir(&host).map_err(|e| format!("{parent}: Can't create '{parent}': {e}"))?;
    let _ = std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755 & !s.st.umask));
    s.created(parent);
    Ok(())
}

fn cmp(s: &mut Session<'_>, args: &[String]) -> i32 {
    let silent = args.iter().any(|a| a == "-s");
    let files: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with('-') || *a == "-")
        .collect();
    let [a, b] = files[..] else {
        s.err("usage: cmp [-l | -s | -x] [-hz] file1 file2 [skip1 [skip2]]\n");
        return 2;
    };
    let mut read = |f: &str| -> Option<Vec<u8>> {
        if f == "-" {
            return Some(s.stdin_all());
        }
        s.read_guest(f).ok()
    };
    let (da, db) = (read(a), read(b));
    let (Some(da), Some(db)) = (da, db) else {
        let missing = if s.read_guest(a).is_err() && a != "-" {
            a
        } else {
            b
        };
        if !silent {
            s.err(format!("cmp: {missing}: No such file or directory\n"));
        }
        return 2;
    };
    if da == db {
        return 0;
    }
    if !silent {
        let at = da.iter().zip(&db).position(|(x, y)| x != y);
        match at {
            Some(i) => {
                let line = da[..i].iter().filter(|c| **c == b'\n').count() + 1;
                s.out(format!("{a} {b} differ: char {}, line {line}\n", i + 1));
            }
            None => {
                let shorter = if da.len() < db.len() { a } else { b };
                s.err(format!("cmp: EOF on {shorter}\n"));
            }
        }
    }
    1
}
