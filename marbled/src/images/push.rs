//! Directory push: scan the bundle (extents via `SEEK_DATA`), stream the payload through zstd
//! chunks into multipart parts uploaded concurrently, journal each part as the server
//! confirms it, complete, verify against what was sent, then write the manifest (last: it
//! marks the image complete).
//!
//! Resume is by content: a re-run produces every part again and sends only those whose MD5
//! differs from the part the server holds under that number (`push_journal`). The payload
//! puts the largest files first, so a small file whose length changes between attempts (a
//! clone's `config.pvs`, its `parallels.log`) moves only the tail of the payload, not the
//! disk's parts.
//!
//! Memory is bounded by the channel: at most `concurrency` parts queued plus `concurrency`
//! in flight, each ≤ part size + one chunk frame. The part size is the configured one, raised
//! for large bundles so the object fits in S3's 10 000 parts (see `parts`).

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use md5::{Digest as _, Md5};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::config::VerifyAfterPush;
use super::manifest::{Chunk, Entry, EntryKind, FORMAT, Manifest};
use super::name::{DATA_SUFFIX, ImageName, MANIFEST_SUFFIX};
use super::push_journal::{self, PushJournal, StoredPart};
use super::{ImageError, ImageStore, Phase, Progress, ProgressSink, sparse};

/// Read size from the source files.
const READ_BLOCK: usize = 1024 * 1024;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// Data object key.
    pub data_key: String,
    /// Manifest key.
    pub manifest_key: String,
    /// Entries in the bundle.
    pub entries: usize,
    /// Logical size of all files (holes included).
    pub apparent_bytes: u64,
    /// Bytes of data read and compressed (holes excluded).
    pub payload_bytes: u64,
    /// Size of the uploaded object.
    pub object_bytes: u64,
    /// Multipart parts in the object.
    pub parts: u32,
    /// Parts found already uploaded by an interrupted earlier attempt and not re-sent.
    pub parts_resumed: u32,
    /// Wall time.
    pub elapsed: std::time::Duration,
}

/// A finished upload: part number, ETag, MD5, payload bytes it carried.
type PartDone = (i32, String, [u8; 16], u64, u64);

/// One part ready to send.
struct PartOut {
    number: i32,
    body: Bytes,
    md5: [u8; 16],
    payload_len: u64,
}

/// Walks `dir` (sorted, parents first) into entries with extents, in payload order (see
/// `payload_order`).
pub(crate) fn scan(dir: &Path) -> Result<Vec<Entry>, ImageError> {
    let mut entries = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&abs)
            .map_err(ImageError::io("read dir", &abs))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(ImageError::io("read dir", &abs))?;
        names.sort();
        let mut subdirs = Vec::new();
        for n in names {
            let r = rel.join(&n);
            let p = dir.join(&r);
            let meta = std::fs::symlink_metadata(&p).map_err(ImageError::io("stat", &p))?;
            let path = r
                .to_str()
                .ok_or_else(|| ImageError::UnsafeEntry {
                    entry: r.display().to_string(),
                    reason: "path is not UTF-8",
                })?
                .to_string();
            let mode = meta.permissions().mode() & 0o7777;
            let ft = meta.file_type();
            let entry = if ft.is_dir() {
                subdirs.push(r.clone());
                Entry {
                    path,
                    kind: EntryKind::Dir,
                    mode,
                    size: 0,
                    extents: vec![],
                    sha256: None,
                    target: None,
                }
            } else if ft.is_symlink() {
                let t = std::fs::read_link(&p).map_err(ImageError::io("read link", &p))?;
                let target = t.to_str().unwrap_or_default().to_string();
                super::manifest::check_link_target(&path, &r, &target)?;
                Entry {
                    path,
                    kind: EntryKind::Symlink,
                    mode,
                    size: 0,
                    extents: vec![],
                    sha256: None,
                    target: Some(target),
                }
            } else if ft.is_file() {
                let f = File::open(&p).map_err(ImageError::io("open", &p))?;
                let extents = sparse::data_extents(&f, meta.len())
                    .map_err(ImageError::io("seek data", &p))?;
                Entry {
                    path,
                    kind: EntryKind::File,
                    mode,
                    size: meta.len(),
                    extents,
                    sha256: None,
                    target: None,
                }
            } else {
                tracing::warn!(path = %p.display(), "skipping special file in bundle");
                continue;
            };
            entries.push(entry);
        }
        // Reverse so the stack pops subdirectories in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
    payload_order(&mut entries);
    Ok(entries)
}

/// Directories first (in walk order, so parents before children), then files, largest data
/// first, then symlinks. The payload is the files' data in this order: the disk comes first,
/// so small files that change length from one clone to the next (the booted clone's
/// `parallels.log`) shift only the last parts, and a resumed push still finds the disk's.
fn payload_order(entries: &mut [Entry]) {
    // Stable: equal sizes keep the walk's (sorted) order.
    entries.sort_by_key(|e| match e.kind {
        EntryKind::Dir => (0, Reverse(0)),
        EntryKind::File => (1, Reverse(e.data_len())),
        EntryKind::Symlink => (2, Reverse(0)),
    });
}

struct Producer {
    dir: PathBuf,
    level: i32,
    chunk_size: u64,
    part_size: u64,
    tx: mpsc::Sender<PartOut>,
    chunks: Vec<Chunk>,
    object_off: u64,
    payload_off: u64,
    enc: Option<zstd::stream::write::Encoder<'static, Vec<u8>>>,
    chunk_payload: u64,
    part: Vec<u8>,
    part_payload: u64,
    next_part: i32,
}

impl Producer {
    fn corrupt(&self, reason: String) -> ImageError {
        ImageError::Corrupt {
            name: self.dir.display().to_string(),
            reason,
        }
    }

    fn encoder(
        &mut self,
    ) -> Result<&mut zstd::stream::write::Encoder<'static, Vec<u8>>, ImageError> {
        if self.enc.is_none() {
            let mut e = zstd::stream::write::Encoder::new(
                Vec::with_capacity(self.chunk_size as usize / 2),
                self.level,
            )
            .map_err(ImageError::io("zstd init", &self.dir))?;
            e.include_checksum(true)
                .map_err(ImageError::io("zstd init", &self.dir))?;
            self.enc = Some(e);
        }
        Ok(self
            .enc
            .as_mut()
            .expect("invariant: encoder was just created"))
    }

    fn feed(&mut self, mut data: &[u8]) -> Result<(), ImageError> {
        use std::io::Write as _;
        while !data.is_empty() {
            let room = (self.chunk_size - self.chunk_payload) as usize;
            let n = room.min(data.len());
            let dir = self.dir.clone();
            self.encoder()?
                .write_all(&data[..n])
                .map_err(ImageError::io("zstd compress", &dir))?;
            self.chunk_payload += n as u64;
            data = &data[n..];
            if self.chunk_payload == self.chunk_size {
                self.finish_chunk()?;
            }
        }
        Ok(())
    }

    fn finish_chunk(&mut self) -> Result<(), ImageError> {
        let Some(enc) = self.enc.take() else {
            return Ok(());
        };
        let frame = enc
            .finish()
            .map_err(ImageError::io("zstd finish", &self.dir))?;
        let c = Chunk {
            offset: self.object_off,
            size: frame.len() as u64,
            payload_offset: self.payload_off,
            payload_len: self.chunk_payload,
            sha256: hex::encode(Sha256::digest(&frame)),
        };
        self.object_off += c.size;
        self.payload_off += c.payload_len;
        self.part_payload += c.payload_len;
        self.chunk_payload = 0;
        self.chunks.push(c);
        self.part.extend_from_slice(&frame);
        if self.part.len() as u64 >= self.part_size {
            self.ship_part()?;
        }
        Ok(())
    }

    fn ship_part(&mut self) -> Result<(), ImageError> {
        if self.part.is_empty() {
            return Ok(());
        }
        let body = std::mem::replace(
            &mut self.part,
            Vec::with_capacity(self.part_size as usize + self.chunk_size as usize / 4),
        );
        let md5: [u8; 16] = Md5::digest(&body).into();
        let p = PartOut {
            number: self.next_part,
            body: Bytes::from(body),
            md5,
            payload_len: self.part_payload,
        };
        self.next_part += 1;
        self.part_payload = 0;
        self.tx
            .blocking_send(p)
            .map_err(|_| self.corrupt("upload side stopped".into()))
    }

    /// Streams every file's extents; returns entries with their SHA-256 and the chunk table.
    fn run(mut self, mut entries: Vec<Entry>) -> Result<(Vec<Entry>, Vec<Chunk>), ImageError> {
        let mut buf = vec![0u8; READ_BLOCK];
        for e in entries.iter_mut().filter(|e| e.kind == EntryKind::File) {
            let p = self.dir.join(&e.path);
            let f = File::open(&p).map_err(ImageError::io("open", &p))?;
            let mut h = Sha256::new();
            for [off, len] in e.extents.clone() {
                let mut pos = off;
                while pos < off + len {
                    let n = ((off + len - pos) as usize).min(READ_BLOCK);
                    let got = f
                        .read_at(&mut buf[..n], pos)
                        .map_err(ImageError::io("read", &p))?;
                    if got == 0 {
                        return Err(self.corrupt(format!("{} shrank while being read", e.path)));
                    }
                    h.update(&buf[..got]);
                    self.feed(&buf[..got])?;
                    pos += got as u64;
                }
            }
            e.sha256 = Some(hex::encode(h.finalize()));
        }
        self.finish_chunk()?;
        self.ship_part()?;
        Ok((entries, self.chunks))
    }
}

pub(crate) async fn push_dir(
    store: &ImageStore,
    dir: &Path,
    name: &ImageName,
    scrubbed: Vec<String>,
    progress: ProgressSink<'_>,
) -> Result<PushReport, ImageError> {
    let stem = name.stem(&store.cfg.key_prefix);
    push_dir_to_stem(store, dir, &stem, name.as_str(), scrubbed, progress).await
}

/// What the scan decided before any request (the entries themselves travel separately: the
/// producer takes them).
struct PushPlan {
    /// The bundle directory's name (goes into the manifest).
    bundle: String,
    /// Bytes of data to read and compress (holes excluded).
    payload_total: u64,
    /// Logical size of all files (holes included).
    apparent: u64,
    part_size: u64,
    /// The settings that shape the parts (level, chunk and part size): a resume needs them
    /// equal. The source itself is compared by content, part by part.
    settings: String,
}

/// The multipart upload being written: its object key, and its resume journal and where
/// that is saved.
struct Upload<'a> {
    key: &'a str,
    jpath: &'a Path,
    journal: PushJournal,
}

/// What the upload step produced: the entries with their SHA-256, the chunk table, and the
/// MD5 of every part (sent or resumed).
struct Uploaded {
    entries: Vec<Entry>,
    chunks: Vec<Chunk>,
    md5s: BTreeMap<i32, [u8; 16]>,
    resumed: u32,
}

/// Pushes `dir` as `<stem>.marble` + `<stem>.marble.json`; `name` goes into the manifest.
///
/// Steps: scan and plan, open (or resume) the multipart upload, upload the parts, complete
/// and verify the object, then write the manifest, which marks the image complete.
pub(crate) async fn push_dir_to_stem(
    store: &ImageStore,
    dir: &Path,
    stem: &str,
    name: &str,
    scrubbed: Vec<String>,
    progress: ProgressSink<'_>,
) -> Result<PushReport, ImageError> {
    let started = Instant::now();
    let cfg = &store.cfg;
    let data_key = format!("{stem}{DATA_SUFFIX}");
    let manifest_key = format!("{stem}{MANIFEST_SUFFIX}");
    let (plan, entries) = plan_push(store, dir, progress).await?;
    let sd = cfg.state_dir();
    std::fs::create_dir_all(&sd).map_err(ImageError::io("create", &sd))?;
    let jpath = push_journal::path(store, &data_key);
    let mut upload = Upload {
        key: &data_key,
        jpath: &jpath,
        journal: push_journal::open_upload(store, &data_key, &plan.settings, &jpath).await?,
    };
    let up = upload_parts(store, dir, entries, &plan, &mut upload, progress).await?;
    let object_size: u64 = up.chunks.iter().map(|c| c.size).sum();
    let etag = commit_object(store, &upload, &up, object_size, progress).await?;
    let PushPlan {
        bundle,
        payload_total,
        apparent,
        ..
    } = plan;
    let Uploaded {
        entries,
        chunks,
        md5s,
        resumed,
    } = up;

    let manifest = Manifest {
        format: FORMAT.to_string(),
        name: name.to_string(),
        bundle,
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        compression: "zstd".to_string(),
        chunk_size: cfg.chunk_size(),
        payload_size: payload_total,
        object_size,
        object_etag: etag,
        scrubbed,
        entries,
        chunks,
    };
    put_manifest(store, &manifest_key, &manifest).await?;
    let _ = std::fs::remove_file(&jpath);
    tracing::info!(key = %data_key, payload = payload_total, object = object_size, parts = md5s.len(), resumed, "image pushed");
    Ok(PushReport {
        data_key,
        manifest_key,
        entries: manifest.entries.len(),
        apparent_bytes: apparent,
        payload_bytes: payload_total,
        object_bytes: object_size,
        parts: md5s.len() as u32,
        parts_resumed: resumed,
        elapsed: started.elapsed(),
    })
}

/// Scans `dir` and sizes the parts. Before any request: an image S3 cannot hold is refused
/// here, with the figures.
async fn plan_push(
    store: &ImageStore,
    dir: &Path,
    progress: ProgressSink<'_>,
) -> Result<(PushPlan, Vec<Entry>), ImageError> {
    let cfg = &store.cfg;
    let bundle = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            ImageError::Config(format!("{} has no usable directory name", dir.display()))
        })?
        .to_string();
    progress(Progress {
        phase: Phase::Scan,
        done: 0,
        total: 0,
    });
    let d = dir.to_path_buf();
    let entries = tokio::task::spawn_blocking(move || scan(&d))
        .await
        .map_err(ImageError::Task)??;
    let payload_total: u64 = entries.iter().map(Entry::data_len).sum();
    let apparent: u64 = entries.iter().map(|e| e.size).sum();
    let part_size = super::parts::part_size_for(payload_total, cfg.chunk_size(), cfg.part_size())?;
    if part_size != cfg.part_size() {
        tracing::info!(
            payload = payload_total,
            part_size,
            configured = cfg.part_size(),
            "part size raised to stay within S3's 10 000 parts"
        );
    }
    let settings = format!(
        "level {}, chunk {}, part {part_size}",
        cfg.compression_level,
        cfg.chunk_size(),
    );
    let plan = PushPlan {
        bundle,
        payload_total,
        apparent,
        part_size,
        settings,
    };
    Ok((plan, entries))
}

/// The producer's task: it ends with the entries (with their SHA-256) and the chunk table.
type ProducerTask = tokio::task::JoinHandle<Result<(Vec<Entry>, Vec<Chunk>), ImageError>>;

/// Starts the producer (a blocking task: read, hash, compress, cut parts) on `entries`; its
/// parts arrive on the returned channel, at most `concurrency` of them queued.
fn start_producer(
    store: &ImageStore,
    dir: &Path,
    entries: Vec<Entry>,
    part_size: u64,
) -> (ProducerTask, mpsc::Receiver<PartOut>) {
    let cfg = &store.cfg;
    let (tx, rx) = mpsc::channel::<PartOut>(cfg.concurrency);
    let producer = Producer {
        dir: dir.to_path_buf(),
        level: cfg.compression_level,
        chunk_size: cfg.chunk_size(),
        part_size,
        tx,
        chunks: Vec::new(),
        object_off: 0,
        payload_off: 0,
        enc: None,
        chunk_payload: 0,
        part: Vec::new(),
        part_payload: 0,
        next_part: 1,
    };
    (
        tokio::task::spawn_blocking(move || producer.run(entries)),
        rx,
    )
}

/// Streams the bundle through the producer and uploads its parts, at most `concurrency` at
/// a time, journaling each the moment the server confirms it (so a crash loses only the
/// uploads in flight, and progress counts stored parts). A part the server already holds
/// under its number with the same MD5 is not sent again: resume by content.
async fn upload_parts(
    store: &ImageStore,
    dir: &Path,
    entries: Vec<Entry>,
    plan: &PushPlan,
    upload: &mut Upload<'_>,
    progress: ProgressSink<'_>,
) -> Result<Uploaded, ImageError> {
    let concurrency = store.cfg.concurrency;
    // What the server held when this run began; the journal itself changes as parts land.
    let stored = upload.journal.parts.clone();
    let (prod, mut rx) = start_producer(store, dir, entries, plan.part_size);
    let mut inflight: JoinSet<Result<PartDone, ImageError>> = JoinSet::new();
    let mut md5s: BTreeMap<i32, [u8; 16]> = BTreeMap::new();
    let (mut done_payload, mut reused, mut differed) = (0u64, 0u32, 0u32);
    let uploaded = |done: u64| Progress {
        phase: Phase::Upload,
        done,
        total: plan.payload_total,
    };
    progress(uploaded(0));
    let mut producing = true;
    loop {
        tokio::select! {
            // Confirmations first: each reaches the journal before anything else happens.
            biased;
            Some(r) = inflight.join_next(), if !inflight.is_empty() => {
                done_payload += record_part(r.map_err(ImageError::Task)?, upload)?;
                progress(uploaded(done_payload));
            }
            part = rx.recv(), if producing && inflight.len() < concurrency => {
                let Some(part) = part else {
                    producing = false;
                    continue;
                };
                md5s.insert(part.number, part.md5);
                match stored.get(&part.number) {
                    Some(p) if p.md5 == hex::encode(part.md5) => {
                        reused += 1;
                        done_payload += part.payload_len;
                        progress(uploaded(done_payload));
                        continue;
                    }
                    Some(_) => {
                        differed += 1;
                        // That part is about to be replaced on the server: until the new
                        // one is confirmed, the journal must not vouch for either.
                        upload.journal.parts.remove(&part.number);
                        push_journal::save(upload.jpath, &upload.journal)?;
                    }
                    None => {}
                }
                spawn_upload(&mut inflight, store, upload, part);
            }
            else => break,
        }
    }
    report_resume(upload.key, stored.len(), reused, differed);
    let (entries, chunks) = prod.await.map_err(ImageError::Task)??;
    Ok(Uploaded {
        entries,
        chunks,
        md5s,
        resumed: reused,
    })
}

/// Uploads `part` as a task of `inflight`.
fn spawn_upload(
    inflight: &mut JoinSet<Result<PartDone, ImageError>>,
    store: &ImageStore,
    upload: &Upload<'_>,
    part: PartOut,
) {
    let bucket = store.bucket.clone();
    let (key, upload_id) = (upload.key.to_string(), upload.journal.upload_id.clone());
    inflight.spawn(async move {
        let md5_b64 = super::base64(&part.md5);
        let size = part.body.len() as u64;
        let etag = bucket
            .upload_part(&key, &upload_id, part.number, part.body, &md5_b64)
            .await?;
        Ok((part.number, etag, part.md5, part.payload_len, size))
    });
}

/// Says how a resumed push compared with the interrupted one (`stored` parts were on the
/// server; `reused` matched this run's content, `differed` did not).
fn report_resume(key: &str, stored: usize, reused: u32, differed: u32) {
    if stored == 0 {
        return;
    }
    if reused == 0 {
        tracing::warn!(
            key,
            stored,
            "source content differs from the interrupted push: none of its stored parts matches this run's part of the same number (compared by MD5); started over"
        );
    } else if differed > 0 {
        tracing::info!(
            key,
            stored,
            reused,
            differed,
            "source content partly differs from the interrupted push: parts whose MD5 differs were sent again"
        );
    }
}

/// Checks a finished part upload and journals it; returns the payload bytes it carried.
fn record_part(
    r: Result<PartDone, ImageError>,
    upload: &mut Upload<'_>,
) -> Result<u64, ImageError> {
    let (n, etag, md5, payload, size) = r?;
    let md5_hex = hex::encode(md5);
    // RGW and S3 (without SSE-KMS) return the part MD5 as its ETag: a mismatch means
    // the bytes stored are not the bytes sent.
    if etag.len() == 32
        && etag.bytes().all(|b| b.is_ascii_hexdigit())
        && !etag.eq_ignore_ascii_case(&md5_hex)
    {
        return Err(ImageError::Checksum {
            what: format!("part {n} of {}", upload.key),
            expected: md5_hex,
            actual: etag,
        });
    }
    upload.journal.parts.insert(
        n,
        StoredPart {
            etag,
            md5: md5_hex,
            size,
        },
    );
    push_journal::save(upload.jpath, &upload.journal)?;
    Ok(payload)
}

/// Completes the multipart upload (or, without data, stores an empty object) and verifies
/// what the server holds against what was sent. Returns the object's ETag.
async fn commit_object(
    store: &ImageStore,
    upload: &Upload<'_>,
    up: &Uploaded,
    object_size: u64,
    progress: ProgressSink<'_>,
) -> Result<Option<String>, ImageError> {
    let (data_key, journal) = (upload.key, &upload.journal);
    progress(Progress {
        phase: Phase::Verify,
        done: 0,
        total: object_size,
    });
    // The parts this run produced, each as the journal has it confirmed with that MD5
    // (journaled parts of an earlier, longer attempt are left out: S3 drops them).
    let parts = up
        .md5s
        .iter()
        .map(|(n, md5)| match journal.parts.get(n) {
            Some(p) if p.md5 == hex::encode(md5) => Ok((*n, p.etag.clone())),
            _ => Err(ImageError::Corrupt {
                name: data_key.to_string(),
                reason: format!("part {n} was produced but no upload of it is confirmed"),
            }),
        })
        .collect::<Result<Vec<(i32, String)>, ImageError>>()?;
    let etag = if parts.is_empty() {
        // S3 refuses an empty multipart completion; an image without data is a plain PUT.
        let _ = store.bucket.abort(data_key, &journal.upload_id).await;
        store
            .bucket
            .put_small(data_key, Bytes::new(), "application/octet-stream")
            .await?;
        None
    } else {
        store
            .bucket
            .complete(data_key, &journal.upload_id, &parts)
            .await?
    };
    verify_uploaded(store, data_key, object_size, &up.md5s, &up.chunks).await?;
    progress(Progress {
        phase: Phase::Verify,
        done: object_size,
        total: object_size,
    });
    Ok(etag)
}

/// Validates and stores the manifest: the last write of a push, marking the image complete.
async fn put_manifest(
    store: &ImageStore,
    manifest_key: &str,
    manifest: &Manifest,
) -> Result<(), ImageError> {
    manifest.validate()?;
    let body = serde_json::to_vec_pretty(manifest).map_err(|source| ImageError::Manifest {
        name: manifest.name.clone(),
        source,
    })?;
    store
        .bucket
        .put_small(manifest_key, Bytes::from(body), "application/json")
        .await?;
    Ok(())
}

/// Checks the stored object: its size, its multipart ETag (MD5 of the part MD5s, `-N`) when
/// the server uses that scheme, and with `verify_after_push = "full"` every chunk's SHA-256.
async fn verify_uploaded(
    store: &ImageStore,
    key: &str,
    size: u64,
    md5s: &BTreeMap<i32, [u8; 16]>,
    chunks: &[Chunk],
) -> Result<(), ImageError> {
    let head = store
        .bucket
        .head(key)
        .await?
        .ok_or_else(|| ImageError::NotFound {
            name: key.to_string(),
        })?;
    if head.size != size {
        return Err(ImageError::Corrupt {
            name: key.to_string(),
            reason: format!("stored size {} != sent {size}", head.size),
        });
    }
    if let Some(etag) = &head.etag
        && let Some((hexpart, n)) = etag.split_once('-')
        && n.parse::<usize>().ok() == Some(md5s.len())
        && hexpart.len() == 32
    {
        let mut h = Md5::new();
        for m in md5s.values() {
            h.update(m);
        }
        let expected = hex::encode(h.finalize());
        if !expected.eq_ignore_ascii_case(hexpart) {
            return Err(ImageError::Checksum {
                what: format!("object {key} (multipart etag)"),
                expected,
                actual: hexpart.to_string(),
            });
        }
    }
    if store.cfg.verify_after_push == VerifyAfterPush::Full {
        super::verify_chunks(store, key, chunks, head.etag.as_deref(), &|_| {}).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload leads with the largest file, so small files that differ per clone sit in
    /// the last part; directories still come before what they hold.
    #[test]
    fn scan_orders_directories_then_files_largest_first() {
        let t = tempfile::tempdir().unwrap();
        let b = t.path();
        std::fs::write(b.join("config.pvs"), b"<vm/>").unwrap();
        std::fs::write(b.join("parallels.log"), vec![1u8; 300]).unwrap();
        std::fs::create_dir_all(b.join("harddisk.hdd/guest")).unwrap();
        std::fs::write(b.join("harddisk.hdd/disk.hds"), vec![7u8; 64 * 1024]).unwrap();
        std::fs::write(b.join("harddisk.hdd/guest/a"), b"x").unwrap();
        std::fs::write(b.join("harddisk.hdd/guest/b"), b"y").unwrap();
        let order: Vec<String> = scan(b).unwrap().into_iter().map(|e| e.path).collect();
        assert_eq!(
            order,
            [
                "harddisk.hdd",
                "harddisk.hdd/guest",
                "harddisk.hdd/disk.hds",
                "parallels.log",
                "config.pvs",
                "harddisk.hdd/guest/a",
                "harddisk.hdd/guest/b",
            ]
        );
    }
}
