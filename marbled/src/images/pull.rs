//! Pull of a MARBLE image into a directory: free-disk check, download chunks concurrently
//! into a hidden partial directory on the destination filesystem (holes kept), verify every
//! chunk and every file against the manifest, then rename into place.
//!
//! The partial directory `.<bundle>.marble-partial/` holds the tree and a journal of finished
//! chunks, so an interrupted pull resumes without re-downloading them. Integrity failures
//! delete it (nothing left behind); transport failures keep it for the next attempt. The
//! destination bundle itself appears only by the final `rename`, and an existing one is never
//! touched.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::task::JoinSet;

use super::client::Bucket;
use super::manifest::{Entry, EntryKind, Manifest, safe_relative};
use super::{ImageError, ImageStore, Phase, Progress, ProgressSink, sparse};

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReport {
    /// The bundle directory created.
    pub bundle: PathBuf,
    /// Format pulled (`marble-image/1` or `zip`).
    pub format: String,
    /// Bytes downloaded in this attempt.
    pub downloaded_bytes: u64,
    /// Logical size of all files.
    pub apparent_bytes: u64,
    /// Chunks skipped because an interrupted attempt had finished them.
    pub chunks_resumed: u32,
    /// Wall time.
    pub elapsed: std::time::Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct PullJournal {
    manifest_sha256: String,
    done: BTreeSet<usize>,
}

/// Payload range `[start, start+len)` of file `file` at file offset `file_off`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    start: u64,
    len: u64,
    file: usize,
    file_off: u64,
}

fn segments(entries: &[Entry]) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut pos = 0;
    for (i, e) in entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == EntryKind::File)
    {
        for [off, len] in &e.extents {
            if *len > 0 {
                out.push(Segment {
                    start: pos,
                    len: *len,
                    file: i,
                    file_off: *off,
                });
                pos += len;
            }
        }
    }
    out
}

/// True when the failure means the data is bad (delete the partial), not the transport.
pub(crate) fn is_integrity(e: &ImageError) -> bool {
    matches!(
        e,
        ImageError::Checksum { .. }
            | ImageError::Corrupt { .. }
            | ImageError::UnsafeEntry { .. }
            | ImageError::Replaced { .. }
            | ImageError::Manifest { .. }
            | ImageError::Zip { .. }
    )
}

/// Free bytes for unprivileged users on the filesystem of `dir`.
pub(crate) fn free_bytes(dir: &Path) -> Result<u64, ImageError> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(|e| ImageError::Io {
        op: "statvfs",
        path: dir.to_path_buf(),
        source: e.into(),
    })?;
    #[allow(clippy::useless_conversion)] // field widths differ between Linux and macOS
    Ok(u64::from(s.blocks_available()) * u64::from(s.fragment_size()))
}

/// When `e` is the OS saying the disk is full (ENOSPC, EDQUOT) while the pull wrote into
/// `dir`: remove the partial download (a resume would need the same room, and it holds
/// space others need) and report what is free now and what the pull needs. Other errors
/// pass unchanged.
pub(crate) fn out_of_space(e: ImageError, dir: &Path, need: u64, partial: &Path) -> ImageError {
    let ImageError::Io { op, path, source } = e else {
        return e;
    };
    let full = matches!(
        source.raw_os_error(),
        Some(code) if code == libc::ENOSPC || code == libc::EDQUOT
    );
    if !full {
        return ImageError::Io { op, path, source };
    }
    let _ = std::fs::remove_dir_all(partial);
    let (avail, files) = nix::sys::statvfs::statvfs(dir).map_or((0, 0), |s| {
        #[allow(clippy::useless_conversion)] // field widths differ between Linux and macOS
        (
            u64::from(s.blocks_available()) * u64::from(s.fragment_size()),
            u64::from(s.files_available()),
        )
    });
    tracing::warn!(dir = %dir.display(), need, avail, files, "disk full during a pull; partial download removed");
    ImageError::DiskFull {
        op,
        path,
        dir: dir.to_path_buf(),
        need,
        avail,
        files,
        source,
    }
}

/// Fails unless `need` bytes (plus a 256 MiB margin for the rest of the system) are free.
pub(crate) fn check_space(dir: &Path, need: u64) -> Result<(), ImageError> {
    const MARGIN: u64 = 256 * 1024 * 1024;
    let avail = free_bytes(dir)?;
    if avail < need.saturating_add(MARGIN) {
        return Err(ImageError::NoSpace {
            path: dir.to_path_buf(),
            need: need + MARGIN,
            avail,
        });
    }
    Ok(())
}

/// Decompresses one verified chunk and writes its payload into the tree.
fn write_chunk(
    root: &Path,
    entries: &[Entry],
    segs: &[Segment],
    payload_offset: u64,
    payload_len: u64,
    frame: &[u8],
    name: &str,
) -> Result<(), ImageError> {
    let corrupt = |reason: String| ImageError::Corrupt {
        name: name.to_string(),
        reason,
    };
    let mut dec = zstd::stream::read::Decoder::with_buffer(frame)
        .map_err(|e| corrupt(format!("zstd: {e}")))?
        .single_frame();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut files: HashMap<usize, File> = HashMap::new();
    let mut pos = payload_offset;
    let end = payload_offset + payload_len;
    while pos < end {
        let want = ((end - pos) as usize).min(buf.len());
        let mut got = 0;
        while got < want {
            let n = dec
                .read(&mut buf[got..want])
                .map_err(|e| corrupt(format!("chunk at payload {payload_offset}: {e}")))?;
            if n == 0 {
                return Err(corrupt(format!(
                    "chunk at payload {payload_offset} is short"
                )));
            }
            got += n;
        }
        // Scatter buf[..got] over the segments it covers.
        let mut off = 0usize;
        while off < got {
            let p = pos + off as u64;
            let si = segs.partition_point(|s| s.start + s.len <= p);
            let s = segs
                .get(si)
                .ok_or_else(|| corrupt(format!("payload {p} beyond extents")))?;
            let in_seg = p - s.start;
            let n = ((s.len - in_seg) as usize).min(got - off);
            let f = match files.entry(s.file) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let path = root.join(&entries[s.file].path);
                    v.insert(
                        OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .map_err(ImageError::io("open", &path))?,
                    )
                }
            };
            sparse::write_sparse(f, s.file_off + in_seg, &buf[off..off + n])
                .map_err(ImageError::io("write", root.join(&entries[s.file].path)))?;
            off += n;
        }
        pos += got as u64;
    }
    // The frame must end exactly here (one frame per chunk, nothing trailing).
    if dec
        .read(&mut buf[..1])
        .map_err(|e| corrupt(format!("zstd: {e}")))?
        != 0
    {
        return Err(corrupt(format!(
            "chunk at payload {payload_offset} is longer than the manifest says"
        )));
    }
    Ok(())
}

/// SHA-256 of a file's extents as the manifest defines it.
fn hash_extents(path: &Path, extents: &[[u64; 2]]) -> Result<String, ImageError> {
    let f = File::open(path).map_err(ImageError::io("open", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    for [off, len] in extents {
        let mut pos = *off;
        while pos < off + len {
            let n = ((off + len - pos) as usize).min(buf.len());
            f.read_exact_at(&mut buf[..n], pos)
                .map_err(ImageError::io("read", path))?;
            h.update(&buf[..n]);
            pos += n as u64;
        }
    }
    Ok(hex::encode(h.finalize()))
}

fn create_tree(root: &Path, m: &Manifest) -> Result<(), ImageError> {
    std::fs::create_dir_all(root).map_err(ImageError::io("create", root))?;
    for e in &m.entries {
        let rel = safe_relative(&e.path)?;
        let p = root.join(rel);
        match e.kind {
            EntryKind::Dir => std::fs::create_dir_all(&p).map_err(ImageError::io("create", &p))?,
            EntryKind::File => {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(ImageError::io("create", parent))?;
                }
                let f = File::create(&p).map_err(ImageError::io("create", &p))?;
                // All holes until chunks land; zero blocks are never written.
                f.set_len(e.size)
                    .map_err(ImageError::io("set length", &p))?;
            }
            EntryKind::Symlink => {}
        }
    }
    Ok(())
}

/// Verifies files, applies modes, creates symlinks. Runs on the complete tree.
fn finish_tree(root: &Path, m: &Manifest) -> Result<(), ImageError> {
    for e in &m.entries {
        let p = root.join(safe_relative(&e.path)?);
        match e.kind {
            EntryKind::File => {
                let actual = hash_extents(&p, &e.extents)?;
                let expected = e.sha256.clone().unwrap_or_default();
                if actual != expected {
                    return Err(ImageError::Checksum {
                        what: format!("file {}", e.path),
                        expected,
                        actual,
                    });
                }
                let len = std::fs::metadata(&p)
                    .map_err(ImageError::io("stat", &p))?
                    .len();
                if len != e.size {
                    return Err(ImageError::Corrupt {
                        name: m.name.clone(),
                        reason: format!("{} has size {len}, expected {}", e.path, e.size),
                    });
                }
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(e.mode & 0o7777))
                    .map_err(ImageError::io("chmod", &p))?;
            }
            EntryKind::Symlink => {
                let target = e.target.as_deref().unwrap_or_default();
                if std::fs::symlink_metadata(&p).is_err() {
                    std::os::unix::fs::symlink(target, &p)
                        .map_err(ImageError::io("symlink", &p))?;
                }
            }
            EntryKind::Dir => {}
        }
    }
    // Directory modes last (children first) so a read-only directory cannot block its files.
    for e in m.entries.iter().rev().filter(|e| e.kind == EntryKind::Dir) {
        let p = root.join(safe_relative(&e.path)?);
        std::fs::set_permissions(
            &p,
            std::fs::Permissions::from_mode((e.mode & 0o7777) | 0o700),
        )
        .map_err(ImageError::io("chmod", &p))?;
    }
    Ok(())
}

pub(crate) fn partial_dir(dest_parent: &Path, bundle: &str, kind: &str) -> PathBuf {
    dest_parent.join(format!(".{bundle}.{kind}-partial"))
}

/// Renames `tree` to `dest` unless `dest` exists; then removes `partial`.
pub(crate) fn move_into_place(tree: &Path, dest: &Path, partial: &Path) -> Result<(), ImageError> {
    if std::fs::symlink_metadata(dest).is_ok() {
        return Err(ImageError::Exists {
            path: dest.to_path_buf(),
        });
    }
    std::fs::rename(tree, dest).map_err(ImageError::io("rename", dest))?;
    let _ = std::fs::remove_dir_all(partial);
    Ok(())
}

/// Where a pull writes: the bundle it creates, and the hidden partial directory holding the
/// tree being filled and the journal of finished chunks.
struct PullPaths {
    dest: PathBuf,
    partial: PathBuf,
    tree: PathBuf,
    jpath: PathBuf,
}

/// Pulls the MARBLE image `data_key` (its manifest is `manifest_bytes`) into
/// `dest_parent/<bundle>`.
///
/// Steps: read the manifest and the journal, check the object against the manifest and the
/// free space, download the chunks, verify the tree and move it into place. An integrity
/// failure in the last two removes the partial directory; any other keeps it for a resume.
pub(crate) async fn pull_marble(
    store: &ImageStore,
    data_key: &str,
    manifest_bytes: &[u8],
    dest_parent: &Path,
    progress: ProgressSink<'_>,
) -> Result<PullReport, ImageError> {
    let started = Instant::now();
    let m: Manifest =
        serde_json::from_slice(manifest_bytes).map_err(|source| ImageError::Manifest {
            name: data_key.to_string(),
            source,
        })?;
    m.validate()?;
    let dest = dest_parent.join(&m.bundle);
    if std::fs::symlink_metadata(&dest).is_ok() {
        return Err(ImageError::Exists { path: dest });
    }
    let partial = partial_dir(dest_parent, &m.bundle, "marble");
    let paths = PullPaths {
        tree: partial.join("bundle"),
        jpath: partial.join("journal.json"),
        dest,
        partial,
    };
    let mut journal = open_journal(&paths, manifest_bytes);
    check_object(store, data_key, &m, &paths.partial).await?;
    let resumed = journal.done.len() as u32;
    let remaining: u64 = m
        .chunks
        .iter()
        .enumerate()
        .filter(|(i, _)| !journal.done.contains(i))
        .map(|(_, c)| c.payload_len)
        .sum();
    check_space(dest_parent, remaining)?;
    let result = async {
        let m = Arc::new(m);
        let downloaded =
            download_chunks(store, data_key, &m, &paths, &mut journal, progress).await?;
        verify_and_place(&m, &paths, progress).await?;
        Ok(PullReport {
            bundle: paths.dest.clone(),
            format: m.format.clone(),
            downloaded_bytes: downloaded,
            apparent_bytes: m.entries.iter().map(|e| e.size).sum(),
            chunks_resumed: resumed,
            elapsed: started.elapsed(),
        })
    }
    .await
    .map_err(|e| out_of_space(e, dest_parent, remaining, &paths.partial));
    if let Err(e) = &result
        && is_integrity(e)
    {
        tracing::warn!(key = data_key, error = %e, "pull failed verification; removing partial download");
        let _ = std::fs::remove_dir_all(&paths.partial);
    }
    result
}

/// The journal of an interrupted pull of the same manifest whose tree is still there, or a
/// fresh one (and no partial directory).
fn open_journal(paths: &PullPaths, manifest_bytes: &[u8]) -> PullJournal {
    let msha = hex::encode(Sha256::digest(manifest_bytes));
    match std::fs::read(&paths.jpath)
        .ok()
        .and_then(|d| serde_json::from_slice::<PullJournal>(&d).ok())
    {
        Some(j) if j.manifest_sha256 == msha && paths.tree.is_dir() => j,
        _ => {
            let _ = std::fs::remove_dir_all(&paths.partial);
            PullJournal {
                manifest_sha256: msha,
                done: BTreeSet::new(),
            }
        }
    }
}

/// A truncated or replaced data object fails here, before anything is written.
async fn check_object(
    store: &ImageStore,
    data_key: &str,
    m: &Manifest,
    partial: &Path,
) -> Result<(), ImageError> {
    let head = store
        .bucket
        .head(data_key)
        .await?
        .ok_or_else(|| ImageError::NotFound {
            name: data_key.to_string(),
        })?;
    if head.size != m.object_size {
        let _ = std::fs::remove_dir_all(partial);
        return Err(ImageError::Corrupt {
            name: data_key.to_string(),
            reason: format!(
                "object has {} bytes, manifest says {}",
                head.size, m.object_size
            ),
        });
    }
    Ok(())
}

/// Creates the tree (all holes) on a fresh start, then fetches every chunk the journal
/// lacks, at most `concurrency` at a time, journaling each as it lands. Returns the bytes
/// downloaded.
async fn download_chunks(
    store: &ImageStore,
    data_key: &str,
    m: &Arc<Manifest>,
    paths: &PullPaths,
    journal: &mut PullJournal,
    progress: ProgressSink<'_>,
) -> Result<u64, ImageError> {
    // Owned so the journal write below reads as it did inline in `pull_marble`.
    let (tree, jpath) = (&paths.tree, paths.jpath.clone());
    if journal.done.is_empty() {
        let (t, mm) = (tree.clone(), m.clone());
        tokio::task::spawn_blocking(move || create_tree(&t, &mm))
            .await
            .map_err(ImageError::Task)??;
    }
    let segs = Arc::new(segments(&m.entries));
    let total = m.payload_size;
    let mut done: u64 = m
        .chunks
        .iter()
        .enumerate()
        .filter(|(i, _)| journal.done.contains(i))
        .map(|(_, c)| c.payload_len)
        .sum();
    let mut downloaded = 0u64;
    progress(Progress {
        phase: Phase::Download,
        done,
        total,
    });
    let mut set: JoinSet<Result<(usize, u64), ImageError>> = JoinSet::new();
    let todo: Vec<usize> = (0..m.chunks.len())
        .filter(|i| !journal.done.contains(i))
        .collect();
    let mut handle = |r: Result<Result<(usize, u64), ImageError>, tokio::task::JoinError>,
                      journal: &mut PullJournal|
     -> Result<u64, ImageError> {
        let (i, size) = r.map_err(ImageError::Task)??;
        journal.done.insert(i);
        crate::fsx::write_atomic(
            &jpath,
            &serde_json::to_vec(journal).map_err(|source| ImageError::Manifest {
                name: data_key.to_string(),
                source,
            })?,
        )
        .map_err(ImageError::io("write", &jpath))?;
        downloaded += size;
        Ok(m.chunks[i].payload_len)
    };
    for i in todo {
        while set.len() >= store.cfg.concurrency {
            if let Some(r) = set.join_next().await {
                done += handle(r, journal)?;
                progress(Progress {
                    phase: Phase::Download,
                    done,
                    total,
                });
            }
        }
        let (bucket, key, m, segs, tree) = (
            store.bucket.clone(),
            data_key.to_string(),
            m.clone(),
            segs.clone(),
            tree.clone(),
        );
        set.spawn(fetch_chunk(bucket, key, m, segs, tree, i));
    }
    while let Some(r) = set.join_next().await {
        done += handle(r, journal)?;
        progress(Progress {
            phase: Phase::Download,
            done,
            total,
        });
    }
    Ok(downloaded)
}

/// Downloads chunk `i`, checks its SHA-256, and writes its payload into `tree`; returns `i`
/// and the frame's size.
async fn fetch_chunk(
    bucket: Bucket,
    key: String,
    m: Arc<Manifest>,
    segs: Arc<Vec<Segment>>,
    tree: PathBuf,
    i: usize,
) -> Result<(usize, u64), ImageError> {
    let c = &m.chunks[i];
    let frame = bucket
        .get_range(&key, c.offset, c.size, m.object_etag.as_deref())
        .await?;
    let actual = hex::encode(Sha256::digest(&frame));
    if actual != c.sha256 {
        return Err(ImageError::Checksum {
            what: format!("chunk {i} of {key}"),
            expected: c.sha256.clone(),
            actual,
        });
    }
    let size = c.size;
    tokio::task::spawn_blocking(move || {
        let c = &m.chunks[i];
        write_chunk(
            &tree,
            &m.entries,
            &segs,
            c.payload_offset,
            c.payload_len,
            &frame,
            &key,
        )
    })
    .await
    .map_err(ImageError::Task)??;
    Ok((i, size))
}

/// Verifies every file of the complete tree against the manifest, applies modes and links,
/// then renames the tree into place.
async fn verify_and_place(
    m: &Arc<Manifest>,
    paths: &PullPaths,
    progress: ProgressSink<'_>,
) -> Result<(), ImageError> {
    let total = m.payload_size;
    progress(Progress {
        phase: Phase::Verify,
        done: 0,
        total,
    });
    let (t, mm) = (paths.tree.clone(), m.clone());
    tokio::task::spawn_blocking(move || finish_tree(&t, &mm))
        .await
        .map_err(ImageError::Task)??;
    progress(Progress {
        phase: Phase::Verify,
        done: total,
        total,
    });
    move_into_place(&paths.tree, &paths.dest, &paths.partial)
}
