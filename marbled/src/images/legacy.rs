//! Legacy `.zip` images made by the seed's `zip -r NAME.zip NAME.macvm` (Info-ZIP or Finder):
//! deflate or stored entries, zip64, data descriptors, `__MACOSX/` AppleDouble entries
//! (skipped). The bundle's directory structure is kept (the seed's `unzip -j` flattened it).
//!
//! The archive is downloaded with concurrent ranged GETs into the hidden partial directory
//! (the central directory sits at the end, and a stored entry with a data descriptor cannot
//! be streamed), then extracted with zero blocks left as holes and every entry's CRC-32
//! checked, then renamed into place.

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::{FileExt as _, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::task::JoinSet;

use super::manifest::{check_link_target, safe_relative};
use super::pull::{
    PullReport, check_space, is_integrity, move_into_place, out_of_space, partial_dir,
};
use super::{ImageError, ImageStore, Phase, Progress, ProgressSink, sparse};

/// Downloads `key` (size `size`) into `path` with concurrent ranged GETs.
pub(crate) async fn download_to_file(
    store: &ImageStore,
    key: &str,
    size: u64,
    etag: Option<&str>,
    path: &Path,
    phase: Phase,
    progress: ProgressSink<'_>,
) -> Result<(), ImageError> {
    let f = File::create(path).map_err(ImageError::io("create", path))?;
    f.set_len(size)
        .map_err(ImageError::io("set length", path))?;
    let f = std::sync::Arc::new(f);
    let step = store.cfg.part_size();
    let mut set: JoinSet<Result<u64, ImageError>> = JoinSet::new();
    let mut done = 0;
    let mut off = 0;
    progress(Progress {
        phase,
        done,
        total: size,
    });
    while off < size || !set.is_empty() {
        if off < size && set.len() < store.cfg.concurrency {
            let len = step.min(size - off);
            let (b, k, e, f, p) = (
                store.bucket.clone(),
                key.to_string(),
                etag.map(str::to_string),
                f.clone(),
                path.to_path_buf(),
            );
            set.spawn(async move {
                let data = b.get_range(&k, off, len, e.as_deref()).await?;
                tokio::task::spawn_blocking(move || {
                    f.write_all_at(&data, off)
                        .map_err(ImageError::io("write", p))
                })
                .await
                .map_err(ImageError::Task)??;
                Ok(len)
            });
            off += len;
            continue;
        }
        if let Some(r) = set.join_next().await {
            done += r.map_err(ImageError::Task)??;
            progress(Progress {
                phase,
                done,
                total: size,
            });
        }
    }
    Ok(())
}

/// Name of an entry after dropping the common `X.macvm/`/`X.pvm/` top directory.
fn strip<'a>(name: &'a str, top: Option<&str>) -> &'a str {
    match top {
        Some(t) => name
            .strip_prefix(t)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(name),
        None => name,
    }
}

fn is_apple_double(name: &str) -> bool {
    name.starts_with("__MACOSX/") || name == "__MACOSX"
}

/// Pass 1 over the archive: the names of the entries to extract (AppleDouble skipped), each
/// checked to be a safe relative path, and their total size.
fn survey(z: &mut zip::ZipArchive<File>, name: &str) -> Result<(Vec<String>, u64), ImageError> {
    let zerr = |source| ImageError::Zip {
        name: name.to_string(),
        source,
    };
    let mut names = Vec::with_capacity(z.len());
    let mut total = 0u64;
    for i in 0..z.len() {
        let e = z.by_index_raw(i).map_err(zerr)?;
        let n = e.name().map_err(zerr)?.to_string();
        if is_apple_double(&n) {
            continue;
        }
        safe_relative(n.trim_end_matches('/'))?;
        total += e.size();
        names.push(n);
    }
    Ok((names, total))
}

/// The `*.macvm`/`*.pvm`/`*.hdd` directory every entry sits in, if there is one.
fn common_top(names: &[String]) -> Option<String> {
    names
        .first()
        .and_then(|n| n.split('/').next())
        .map(str::to_string)
        .filter(|t| {
            (t.ends_with(".macvm") || t.ends_with(".pvm") || t.ends_with(".hdd"))
                && names
                    .iter()
                    .all(|n| n == t || n.starts_with(&format!("{t}/")))
        })
}

/// Copies regular entry `e` (`raw` in archive `name`) to the new file `p`, zero blocks left
/// as holes, reading to EOF so the zip crate checks its CRC-32.
fn write_file(
    e: &mut zip::read::ZipFile<'_, File>,
    p: &Path,
    name: &str,
    raw: &str,
    buf: &mut [u8],
) -> Result<(), ImageError> {
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
        .map_err(ImageError::io("create", p))?;
    out.set_len(e.size())
        .map_err(ImageError::io("set length", p))?;
    let mut pos = 0u64;
    loop {
        // Reading to EOF makes the zip crate check the entry's CRC-32.
        let n = e.read(buf).map_err(|err| ImageError::Corrupt {
            name: name.to_string(),
            reason: format!("{raw}: {err}"),
        })?;
        if n == 0 {
            break;
        }
        sparse::write_sparse(&out, pos, &buf[..n]).map_err(ImageError::io("write", p))?;
        pos += n as u64;
    }
    if pos != e.size() {
        return Err(ImageError::Corrupt {
            name: name.to_string(),
            reason: format!("{raw}: {pos} bytes, expected {}", e.size()),
        });
    }
    Ok(())
}

/// Refuses an archive whose central directory holds two entries with one name: which copy a
/// reader keeps is up to the reader, so the archive does not say what the VM is. The zip
/// crate indexes entries by name (a duplicate collapses into one), so the check compares the
/// entry count the end-of-central-directory record declares with the distinct names indexed,
/// then walks the central directory itself to name the entry that repeats.
fn refuse_duplicates(archive: &Path, indexed: usize, name: &str) -> Result<(), ImageError> {
    let declared = central_directory(archive).map_err(ImageError::io("read", archive))?;
    match declared {
        Some(cd) if cd.entries != indexed as u64 => {
            let which = duplicated_name(archive, &cd)
                .ok()
                .flatten()
                .map_or_else(String::new, |n| format!(" ({n:?} appears twice)"));
            Err(ImageError::Corrupt {
                name: name.to_string(),
                reason: format!(
                    "the archive declares {} entries but has {indexed} distinct names: two entries share a name{which}",
                    cd.entries
                ),
            })
        }
        _ => Ok(()),
    }
}

/// Where the central directory is and how many entries it declares.
struct CentralDirectory {
    entries: u64,
    offset: u64,
}

/// The first name the central directory at `cd` lists twice; `None` when the records do not
/// parse where the end record says they are (e.g. data prepended to the archive).
fn duplicated_name(archive: &Path, cd: &CentralDirectory) -> std::io::Result<Option<String>> {
    use std::io::{BufReader, Seek, SeekFrom};
    let mut f = BufReader::new(File::open(archive)?);
    f.seek(SeekFrom::Start(cd.offset))?;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..cd.entries {
        // Central file header: signature, fixed fields (46 bytes), then name, extra, comment.
        let mut head = [0u8; 46];
        f.read_exact(&mut head)?;
        if &head[..4] != b"PK\x01\x02" {
            return Ok(None);
        }
        let len = |i: usize| usize::from(u16::from_le_bytes([head[i], head[i + 1]]));
        let mut raw = vec![0u8; len(28)];
        f.read_exact(&mut raw)?;
        let skip = i64::try_from(len(30) + len(32)).unwrap_or(i64::MAX);
        f.seek_relative(skip)?;
        let entry = String::from_utf8_lossy(&raw).into_owned();
        if !seen.insert(raw) {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// The entry count and offset of the central directory, from the end-of-central-directory
/// record (zip64's when the classic fields say 0xFFFF / 0xFFFFFFFF); `None` when no record is
/// found (the zip crate has opened it, so it reports what is wrong).
fn central_directory(archive: &Path) -> std::io::Result<Option<CentralDirectory>> {
    use std::io::{Seek, SeekFrom};
    /// The record (22 bytes) plus the longest comment.
    const TAIL: u64 = 22 + 65_535;
    let mut f = File::open(archive)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(TAIL);
    f.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    let Some(at) = tail.windows(4).rposition(|w| w == b"PK\x05\x06") else {
        return Ok(None);
    };
    let u16_at = |b: &[u8], i: usize| b.get(i..i + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u32_at = |b: &[u8], i: usize| {
        b.get(i..i + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let (Some(total), Some(offset)) = (u16_at(&tail, at + 10), u32_at(&tail, at + 16)) else {
        return Ok(None);
    };
    if total != 0xFFFF && offset != 0xFFFF_FFFF {
        return Ok(Some(CentralDirectory {
            entries: u64::from(total),
            offset: u64::from(offset),
        }));
    }
    // Zip64: the locator sits right before the classic record and points at the zip64 one.
    let Some(locator) = at.checked_sub(20).and_then(|l| tail.get(l..at)) else {
        return Ok(None);
    };
    if &locator[..4] != b"PK\x06\x07" {
        return Ok(None);
    }
    let mut off = [0u8; 8];
    off.copy_from_slice(&locator[8..16]);
    f.seek(SeekFrom::Start(u64::from_le_bytes(off)))?;
    let mut record = [0u8; 56];
    f.read_exact(&mut record)?;
    if &record[..4] != b"PK\x06\x06" {
        return Ok(None);
    }
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&record[i..i + 8]);
        u64::from_le_bytes(b)
    };
    Ok(Some(CentralDirectory {
        entries: u64_at(32),
        offset: u64_at(48),
    }))
}

/// Extracts `archive` into `tree`; returns the bundle directory name found in the archive
/// (when all entries share one `*.macvm`/`*.pvm`/`*.hdd` top directory) and the apparent size.
fn extract(
    archive: &Path,
    tree: &Path,
    name: &str,
    dest_parent: &Path,
) -> Result<(Option<String>, u64), ImageError> {
    let zerr = |source| ImageError::Zip {
        name: name.to_string(),
        source,
    };
    let f = File::open(archive).map_err(ImageError::io("open", archive))?;
    let mut z = zip::ZipArchive::new(f).map_err(zerr)?;
    refuse_duplicates(archive, z.len(), name)?;
    let (names, total) = survey(&mut z, name)?;
    let top = common_top(&names);
    check_space(dest_parent, total)?;
    std::fs::create_dir_all(tree).map_err(ImageError::io("create", tree))?;
    let mut buf = vec![0u8; 1024 * 1024];
    let mut dir_modes = Vec::new();
    for i in 0..z.len() {
        let mut e = z.by_index(i).map_err(zerr)?;
        let raw = e.name().map_err(zerr)?.to_string();
        if is_apple_double(&raw) {
            continue;
        }
        let rel_name = strip(raw.trim_end_matches('/'), top.as_deref());
        if rel_name.is_empty()
            || rel_name == raw.trim_end_matches('/') && top.as_deref() == Some(rel_name)
        {
            continue; // the top directory itself
        }
        let rel = safe_relative(rel_name)?;
        let p = tree.join(&rel);
        let mode = e.unix_mode();
        if e.is_dir() {
            std::fs::create_dir_all(&p).map_err(ImageError::io("create", &p))?;
            if let Some(m) = mode {
                dir_modes.push((p, m));
            }
            continue;
        }
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(ImageError::io("create", parent))?;
        }
        if e.is_symlink() {
            let mut target = String::new();
            e.read_to_string(&mut target)
                .map_err(|err| ImageError::Corrupt {
                    name: name.to_string(),
                    reason: format!("{raw}: {err}"),
                })?;
            check_link_target(&raw, &rel, &target)?;
            std::os::unix::fs::symlink(&target, &p).map_err(ImageError::io("symlink", &p))?;
            continue;
        }
        write_file(&mut e, &p, name, &raw, &mut buf)?;
        if let Some(m) = mode {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m & 0o7777))
                .map_err(ImageError::io("chmod", &p))?;
        }
    }
    for (p, m) in dir_modes.into_iter().rev() {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode((m & 0o7777) | 0o700))
            .map_err(ImageError::io("chmod", &p))?;
    }
    Ok((top, total))
}

/// Pulls the legacy zip `key` into `dest_parent/<bundle>`; `default_bundle` names the
/// directory when the archive has no single bundle directory at its top.
pub(crate) async fn pull_zip(
    store: &ImageStore,
    key: &str,
    size: u64,
    etag: Option<String>,
    default_bundle: &str,
    dest_parent: &Path,
    progress: ProgressSink<'_>,
) -> Result<PullReport, ImageError> {
    let started = Instant::now();
    let dest_default = dest_parent.join(default_bundle);
    if std::fs::symlink_metadata(&dest_default).is_ok() {
        return Err(ImageError::Exists { path: dest_default });
    }
    check_space(dest_parent, size)?;
    let partial = partial_dir(dest_parent, default_bundle, "zip");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(ImageError::io("create", &partial))?;
    let archive = partial.join("archive.zip");
    let tree = partial.join("bundle");
    let result = async {
        download_to_file(
            store,
            key,
            size,
            etag.as_deref(),
            &archive,
            Phase::Download,
            progress,
        )
        .await?;
        progress(Progress {
            phase: Phase::Extract,
            done: 0,
            total: size,
        });
        let (a, t, k, dp) = (
            archive.clone(),
            tree.clone(),
            key.to_string(),
            dest_parent.to_path_buf(),
        );
        let (top, apparent) = tokio::task::spawn_blocking(move || extract(&a, &t, &k, &dp))
            .await
            .map_err(ImageError::Task)??;
        progress(Progress {
            phase: Phase::Extract,
            done: size,
            total: size,
        });
        let dest: PathBuf = dest_parent.join(top.as_deref().unwrap_or(default_bundle));
        let _ = std::fs::remove_file(&archive);
        move_into_place(&tree, &dest, &partial)?;
        Ok(PullReport {
            bundle: dest,
            format: "zip".to_string(),
            downloaded_bytes: size,
            apparent_bytes: apparent,
            chunks_resumed: 0,
            elapsed: started.elapsed(),
        })
    }
    .await
    .map_err(|e| out_of_space(e, dest_parent, size, &partial));
    if result.is_err() {
        // A zip pull has no resume journal: never leave a half-extracted tree behind.
        if let Err(e) = &result
            && is_integrity(e)
        {
            tracing::warn!(key, error = %e, "zip pull failed verification");
        }
        let _ = std::fs::remove_dir_all(&partial);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a`, `b/c`, `b/c` as Python's zipfile writes them (it warns, then writes both).
    const DUPLICATE_ZIP: &str = "504b03041400000000001243865db7efdc830100000001000000010000006131504b03041400000000001243865d0dbed51a010000000100000003000000622f6332504b03041400000000001243865d9b8ed26d010000000100000003000000622f6333504b010214031400000000001243865db7efdc83010000000100000001000000000000000000000080010000000061504b010214031400000000001243865d0dbed51a0100000001000000030000000000000000000000800120000000622f63504b010214031400000000001243865d9b8ed26d0100000001000000030000000000000000000000800142000000622f63504b0506000000000300030091000000640000000000";

    #[test]
    fn the_duplicated_entry_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("dup.zip");
        std::fs::write(&path, hex::decode(DUPLICATE_ZIP).expect("hex")).expect("write");
        let err = refuse_duplicates(&path, 2, "img").expect_err("refused");
        let msg = err.to_string();
        assert!(msg.contains("declares 3 entries but has 2"), "{msg}");
        assert!(msg.contains("\"b/c\" appears twice"), "{msg}");
        refuse_duplicates(&path, 3, "img").expect("three distinct names");
    }
}
