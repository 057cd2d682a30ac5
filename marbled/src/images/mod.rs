//! VM images in S3: push a VM bundle as a streamed, chunked, zstd-compressed, sparse-aware,
//! resumable and verified object plus a JSON manifest; pull it (or a legacy `zip -r` object)
//! back into place; list, remove, verify. Format and operations: `docs/IMAGES.md`.
//!
//! Layout: [`config`] (`[images]` table), [`creds`] (credential sources, s3cfg parser,
//! redacted secrets), [`client`] (aws-sdk-s3 wrapper), `s3error` (SDK failures as one line
//! a person can act on), `trust` (its HTTPS client and the `ca_file` trust roots), [`name`]
//! (image names and keys),
//! [`manifest`] (format + path-safety rules), [`sparse`] (extents, hole-preserving writes),
//! `push`/`pull`/`legacy` (directory-level transfers; `push_journal` makes pushes resume by
//! content), [`vm`] (push/pull pipelines through the
//! [`crate::hypervisor::Hypervisor`] seam).
//!
//! This module owns no daemon state: the daemon runs these futures as jobs (holding the VM
//! lock) and forwards [`Progress`] as `Event::Progress`.

use std::path::Path;

use bytes::Bytes;
use md5::{Digest as _, Md5};
use sha2::Sha256;
use tokio::task::JoinSet;

pub mod client;
pub mod config;
pub mod creds;
mod error;
mod legacy;
mod locate;
pub mod manifest;
pub mod name;
mod parts;
mod preflight;
mod pull;
mod push;
mod push_journal;
mod s3error;
pub mod sparse;
mod trust;
pub mod vm;

pub use client::{Bucket, Fetched, ObjectInfo, PutIf, PutOutcome, WireBytes};
pub use config::{ChecksumMode, CredentialSource, ImageStoreConfig, ScrubConfig, VerifyAfterPush};
pub use error::ImageError;
pub use manifest::Manifest;
pub use name::ImageName;
pub use pull::PullReport;
pub use push::PushReport;
pub use vm::{PullVmOptions, PullVmReport, PushVmOptions, PushVmReport, pull_vm, push_vm};

use manifest::Chunk;
use name::{DATA_SUFFIX, MANIFEST_SUFFIX, ZIP_SUFFIX};

/// Stage of a transfer, for progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Walking the bundle.
    Scan,
    /// Preparing the VM (clone, scrub, snapshots).
    Prepare,
    /// Sending parts.
    Upload,
    /// Fetching chunks or the archive.
    Download,
    /// Unpacking a legacy zip.
    Extract,
    /// Checking hashes.
    Verify,
    /// Registering and configuring the pulled VM.
    Register,
}

/// One progress report: `done` of `total` bytes in `phase` (`total` 0 = unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Stage.
    pub phase: Phase,
    /// Bytes done in this stage.
    pub done: u64,
    /// Bytes expected in this stage.
    pub total: u64,
}

/// Progress callback; called from the transfer's own task, so it must not block (the daemon
/// passes a closure doing `try_send` on a bounded channel).
pub type ProgressSink<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// One image in the bucket as `ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Image name.
    pub name: String,
    /// Team.
    pub team: String,
    /// `marble` (complete), `marble-incomplete` (data without manifest) or `zip`.
    pub format: String,
    /// Stored bytes.
    pub size: u64,
    /// Last modified, unix seconds.
    pub modified_unix: Option<i64>,
}

/// Result of `verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Format checked.
    pub format: String,
    /// Chunks checked (0 for zip).
    pub chunks: usize,
    /// Bytes read back.
    pub bytes: u64,
}

/// The image store: configuration plus a connected bucket.
#[derive(Debug, Clone)]
pub struct ImageStore {
    cfg: ImageStoreConfig,
    bucket: Bucket,
}

pub(crate) fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [
            c[0],
            c.get(1).copied().unwrap_or(0),
            c.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(crate) fn md5_base64(data: &[u8]) -> String {
    base64(&Md5::digest(data))
}

/// Re-downloads every chunk and checks its SHA-256 (no disk writes).
pub(crate) async fn verify_chunks(
    store: &ImageStore,
    key: &str,
    chunks: &[Chunk],
    etag: Option<&str>,
    progress: ProgressSink<'_>,
) -> Result<u64, ImageError> {
    let total: u64 = chunks.iter().map(|c| c.size).sum();
    let mut set: JoinSet<Result<u64, ImageError>> = JoinSet::new();
    let mut done = 0;
    let mut it = chunks.iter().enumerate();
    loop {
        if set.len() < store.cfg.concurrency
            && let Some((i, c)) = it.next()
        {
            let (b, k, c, e) = (
                store.bucket.clone(),
                key.to_string(),
                c.clone(),
                etag.map(str::to_string),
            );
            set.spawn(async move {
                let data = b.get_range(&k, c.offset, c.size, e.as_deref()).await?;
                let actual = hex::encode(<Sha256 as sha2::Digest>::digest(&data));
                if actual != c.sha256 {
                    return Err(ImageError::Checksum {
                        what: format!("chunk {i} of {k}"),
                        expected: c.sha256,
                        actual,
                    });
                }
                Ok(c.size)
            });
            continue;
        }
        match set.join_next().await {
            Some(r) => {
                done += r.map_err(ImageError::Task)??;
                progress(Progress {
                    phase: Phase::Verify,
                    done,
                    total,
                });
            }
            None => break,
        }
    }
    Ok(done)
}

impl ImageStore {
    /// Validates the config, resolves credentials and builds the S3 client (no request yet).
    pub async fn new(cfg: ImageStoreConfig) -> Result<Self, ImageError> {
        let bucket = Bucket::connect(&cfg).await?;
        Ok(Self { cfg, bucket })
    }

    /// The configuration.
    pub fn config(&self) -> &ImageStoreConfig {
        &self.cfg
    }

    /// The bucket (raw object access, e.g. for tools and tests).
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// Add the object bytes this store moves from now on to `wire` (see [`WireBytes`]).
    #[must_use]
    pub fn counting_into(mut self, wire: std::sync::Arc<WireBytes>) -> Self {
        self.bucket.count_into(wire);
        self
    }

    /// Pushes the bundle directory `dir` as image `name`. Resumes an interrupted push of
    /// `name` by content: a part the server already holds with the same bytes (MD5) is not
    /// sent again, whatever the files' times or the directory's path.
    pub async fn push_dir(
        &self,
        dir: &Path,
        name: &ImageName,
        progress: ProgressSink<'_>,
    ) -> Result<PushReport, ImageError> {
        push::push_dir(self, dir, name, Vec::new(), progress).await
    }

    /// Pushes `dir` in the MARBLE format under the key stem `stem` (`<stem>.marble` and
    /// `<stem>.marble.json`, the prefix not added): for objects that are not team images,
    /// such as the build disk (`build_drive.hdd`).
    pub async fn push_dir_as(
        &self,
        dir: &Path,
        stem: &str,
        progress: ProgressSink<'_>,
    ) -> Result<PushReport, ImageError> {
        let name = stem.rsplit('/').next().unwrap_or(stem);
        push::push_dir_to_stem(self, dir, stem, name, Vec::new(), progress).await
    }

    pub(crate) async fn push_dir_scrubbed(
        &self,
        dir: &Path,
        name: &ImageName,
        scrubbed: Vec<String>,
        progress: ProgressSink<'_>,
    ) -> Result<PushReport, ImageError> {
        push::push_dir(self, dir, name, scrubbed, progress).await
    }

    /// Pulls image `name` into `dest_parent/<bundle dir>`: the MARBLE format when its manifest
    /// exists, else the legacy `<name>.zip`. Nothing appears at the destination unless every
    /// check passed; an existing bundle of that name is an error and is never touched.
    pub async fn pull_to_dir(
        &self,
        name: &ImageName,
        dest_parent: &Path,
        progress: ProgressSink<'_>,
    ) -> Result<PullReport, ImageError> {
        self.pull_key_to_dir(
            &name.stem(&self.cfg.key_prefix),
            &format!("{name}.macvm"),
            dest_parent,
            progress,
        )
        .await
    }

    /// Pulls by key (`<prefix>TEAM/NAME` without suffix, or any key such as the build disk's
    /// `build_drive.hdd`) into `dest_parent`; the format is told by the manifest or by the
    /// object's first bytes (see `locate`). `default_bundle` names the directory for zips
    /// without a single top directory.
    pub async fn pull_key_to_dir(
        &self,
        key: &str,
        default_bundle: &str,
        dest_parent: &Path,
        progress: ProgressSink<'_>,
    ) -> Result<PullReport, ImageError> {
        let found = locate::locate(self, key).await?;
        self.pull_located(&found, default_bundle, dest_parent, progress)
            .await
    }

    /// Pulls what [`locate::locate`] found.
    pub(crate) async fn pull_located(
        &self,
        found: &locate::Located,
        default_bundle: &str,
        dest_parent: &Path,
        progress: ProgressSink<'_>,
    ) -> Result<PullReport, ImageError> {
        std::fs::create_dir_all(dest_parent).map_err(ImageError::io("create", dest_parent))?;
        match found {
            locate::Located::Marble {
                data_key,
                manifest_bytes,
                ..
            } => pull::pull_marble(self, data_key, manifest_bytes, dest_parent, progress).await,
            locate::Located::Zip { key, size, etag } => {
                legacy::pull_zip(
                    self,
                    key,
                    *size,
                    etag.clone(),
                    default_bundle,
                    dest_parent,
                    progress,
                )
                .await
            }
        }
    }

    /// Images of one team (or all teams when `None`).
    pub async fn ls(&self, team: Option<&str>) -> Result<Vec<ImageInfo>, ImageError> {
        let prefix = match team {
            Some(t) => format!("{}{t}/", self.cfg.key_prefix),
            None => self.cfg.key_prefix.clone(),
        };
        let objects = self.bucket.list(&prefix).await?;
        let mut out: std::collections::BTreeMap<String, ImageInfo> =
            std::collections::BTreeMap::new();
        for o in &objects {
            let rest = &o.key[self.cfg.key_prefix.len().min(o.key.len())..];
            let (format, stem) = if let Some(s) = rest.strip_suffix(MANIFEST_SUFFIX) {
                ("marble", s)
            } else if let Some(s) = rest.strip_suffix(DATA_SUFFIX) {
                ("marble-incomplete", s)
            } else if let Some(s) = rest.strip_suffix(ZIP_SUFFIX) {
                ("zip", s)
            } else {
                continue;
            };
            let Ok(name) = ImageName::parse(stem) else {
                continue;
            };
            let e = out.entry(name.to_string()).or_insert_with(|| ImageInfo {
                name: name.to_string(),
                team: name.team().to_string(),
                format: format.to_string(),
                size: 0,
                modified_unix: o.modified_unix,
            });
            e.size += o.size;
            if format == "marble" || (format == "zip" && e.format == "marble-incomplete") {
                e.format = format.to_string();
            }
            e.modified_unix = e.modified_unix.max(o.modified_unix);
        }
        Ok(out.into_values().collect())
    }

    /// Deletes every object of image `name` (manifest first, so a half-deleted image is
    /// never mistaken for a complete one). Returns the keys deleted.
    pub async fn rm(&self, name: &ImageName) -> Result<Vec<String>, ImageError> {
        let stem = name.stem(&self.cfg.key_prefix);
        let mut deleted = Vec::new();
        for suffix in [MANIFEST_SUFFIX, DATA_SUFFIX, ZIP_SUFFIX] {
            let key = format!("{stem}{suffix}");
            if self.bucket.head(&key).await?.is_some() {
                self.bucket.delete(&key).await?;
                deleted.push(key);
            }
        }
        if deleted.is_empty() {
            return Err(ImageError::NotFound {
                name: name.to_string(),
            });
        }
        Ok(deleted)
    }

    /// Re-reads the stored image and checks it against its manifest (every chunk's SHA-256,
    /// sizes); a zip is checked for presence and size only.
    pub async fn verify(
        &self,
        name: &ImageName,
        progress: ProgressSink<'_>,
    ) -> Result<VerifyReport, ImageError> {
        let stem = name.stem(&self.cfg.key_prefix);
        if let Some(raw) = self
            .bucket
            .get_small(&format!("{stem}{MANIFEST_SUFFIX}"))
            .await?
        {
            let m: Manifest =
                serde_json::from_slice(&raw).map_err(|source| ImageError::Manifest {
                    name: name.to_string(),
                    source,
                })?;
            m.validate()?;
            let key = format!("{stem}{DATA_SUFFIX}");
            let head = self
                .bucket
                .head(&key)
                .await?
                .ok_or_else(|| ImageError::NotFound { name: key.clone() })?;
            if head.size != m.object_size {
                return Err(ImageError::Corrupt {
                    name: name.to_string(),
                    reason: format!(
                        "object has {} bytes, manifest says {}",
                        head.size, m.object_size
                    ),
                });
            }
            let bytes =
                verify_chunks(self, &key, &m.chunks, m.object_etag.as_deref(), progress).await?;
            return Ok(VerifyReport {
                format: m.format,
                chunks: m.chunks.len(),
                bytes,
            });
        }
        match self.bucket.head(&format!("{stem}{ZIP_SUFFIX}")).await? {
            Some(h) => Ok(VerifyReport {
                format: "zip".into(),
                chunks: 0,
                bytes: h.size,
            }),
            None => Err(ImageError::NotFound {
                name: name.to_string(),
            }),
        }
    }

    /// Uploads a local file as one object (multipart, concurrent parts, Content-MD5 each).
    /// For tools and tests (legacy zips, build disks); images go through [`Self::push_dir`].
    pub async fn upload_file(&self, path: &Path, key: &str) -> Result<(), ImageError> {
        let size = std::fs::metadata(path)
            .map_err(ImageError::io("stat", path))?
            .len();
        let ps = self.cfg.part_size();
        if size <= ps {
            let data = std::fs::read(path).map_err(ImageError::io("read", path))?;
            return self
                .bucket
                .put_small(key, Bytes::from(data), "application/octet-stream")
                .await;
        }
        let id = self.bucket.create_multipart(key).await?;
        let f =
            std::sync::Arc::new(std::fs::File::open(path).map_err(ImageError::io("open", path))?);
        let mut set: JoinSet<Result<(i32, String), ImageError>> = JoinSet::new();
        let mut parts = Vec::new();
        let (mut off, mut n) = (0u64, 1i32);
        while off < size || !set.is_empty() {
            if off < size && set.len() < self.cfg.concurrency {
                let len = ps.min(size - off);
                let (b, k, id, f, p, num, o) = (
                    self.bucket.clone(),
                    key.to_string(),
                    id.clone(),
                    f.clone(),
                    path.to_path_buf(),
                    n,
                    off,
                );
                set.spawn(async move {
                    let data = tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0u8; len as usize];
                        std::os::unix::fs::FileExt::read_exact_at(&*f, &mut buf, o)
                            .map(|_| buf)
                            .map_err(ImageError::io("read", p))
                    })
                    .await
                    .map_err(ImageError::Task)??;
                    let md5 = md5_base64(&data);
                    let etag = b.upload_part(&k, &id, num, Bytes::from(data), &md5).await?;
                    Ok((num, etag))
                });
                off += len;
                n += 1;
                continue;
            }
            if let Some(r) = set.join_next().await {
                parts.push(r.map_err(ImageError::Task)??);
            }
        }
        parts.sort();
        self.bucket.complete(key, &id, &parts).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
