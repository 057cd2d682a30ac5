//! The resume journal of a push (`<state_dir>/push-<hash>.json`): which multipart upload
//! the push writes into, the settings that shape its parts, and every part the server has
//! confirmed, with its MD5. It is what makes a push resumable *by content*: a re-run
//! produces its parts again and does not send a part whose MD5 equals the one stored under
//! that number (see `push::upload_parts`). Nothing about the source's metadata is kept —
//! modification times, paths on the host and the VM's identity change with every clone.
//!
//! The journal holds object keys, the upload id and hashes: no credential, no file content.
//! It is rewritten atomically (and fsync'd, `fsx::write_atomic`) each time a part is
//! confirmed, so a crash loses at most the parts still in flight.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{ImageError, ImageStore};

/// One part the server confirmed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(super) struct StoredPart {
    /// ETag the server returned (unquoted).
    pub etag: String,
    /// MD5 of the part's bytes, hex: what a re-run compares its own part with.
    pub md5: String,
    /// Bytes in the part.
    pub size: u64,
}

/// The journal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(super) struct PushJournal {
    /// Data object key.
    pub key: String,
    /// The multipart upload parts go into.
    pub upload_id: String,
    /// Compression level, chunk size and part size: the same content cuts into the same
    /// parts only under the same settings.
    pub settings: String,
    /// Confirmed parts by number.
    pub parts: BTreeMap<i32, StoredPart>,
}

/// The part of an older journal needed to abort its upload (journals before resume by
/// content had a source fingerprint with modification times instead of `settings`).
#[derive(Deserialize)]
struct AnyJournal {
    key: String,
    upload_id: String,
}

/// Where the journal of `key` in the store's bucket lives.
pub(super) fn path(store: &ImageStore, key: &str) -> PathBuf {
    let h = hex::encode(Sha256::digest(format!("{}/{key}", store.bucket.name())));
    store
        .cfg
        .state_dir()
        .join(format!("push-{}.json", &h[..16]))
}

/// Rewrites the journal atomically.
pub(super) fn save(path: &Path, j: &PushJournal) -> Result<(), ImageError> {
    let data = serde_json::to_vec(j).map_err(|source| ImageError::Manifest {
        name: j.key.clone(),
        source,
    })?;
    crate::fsx::write_atomic(path, &data).map_err(ImageError::io("write", path))
}

/// The journaled upload of `key` if it was made with `settings` and the server still has
/// it, keeping only the parts the server lists as journaled; else a new upload (the old one
/// aborted). Which journaled parts are reused is decided later, part by part, by content.
pub(super) async fn open_upload(
    store: &ImageStore,
    key: &str,
    settings: &str,
    jpath: &Path,
) -> Result<PushJournal, ImageError> {
    let data = std::fs::read(jpath).ok();
    if let Some(j) = data
        .as_deref()
        .and_then(|d| serde_json::from_slice::<PushJournal>(d).ok())
        .filter(|j| j.key == key)
    {
        if j.settings == settings {
            if let Some(j) = reconcile(store, j).await? {
                return Ok(j);
            }
        } else {
            tracing::warn!(
                key,
                was = %j.settings,
                now = settings,
                "compression level, chunk or part size changed since the interrupted push: its parts cannot match; started over"
            );
            let _ = store.bucket.abort(key, &j.upload_id).await;
        }
    } else if let Some(old) = data
        .as_deref()
        .and_then(|d| serde_json::from_slice::<AnyJournal>(d).ok())
        .filter(|j| j.key == key)
    {
        tracing::warn!(
            key,
            "journal of an interrupted push in an older format; started over"
        );
        let _ = store.bucket.abort(key, &old.upload_id).await;
    }
    let upload_id = store.bucket.create_multipart(key).await?;
    let j = PushJournal {
        key: key.to_string(),
        upload_id,
        settings: settings.to_string(),
        parts: BTreeMap::new(),
    };
    save(jpath, &j)?;
    Ok(j)
}

/// Keeps the journaled parts the server lists with the journaled ETag (or, for servers
/// whose ListParts omits ETags such as s3s-fs, that size); `None` when the upload is gone.
async fn reconcile(
    store: &ImageStore,
    mut j: PushJournal,
) -> Result<Option<PushJournal>, ImageError> {
    let Some(listed) = store.bucket.list_parts(&j.key, &j.upload_id).await? else {
        tracing::warn!(
            key = %j.key,
            "the interrupted push's upload no longer exists on the server; started over"
        );
        return Ok(None);
    };
    let listed: BTreeMap<i32, (String, u64)> =
        listed.into_iter().map(|(n, e, s)| (n, (e, s))).collect();
    j.parts.retain(|n, p| match listed.get(n) {
        Some((e, s)) if e.is_empty() => *s == p.size,
        Some((e, _)) => *e == p.etag,
        None => false,
    });
    tracing::info!(
        key = %j.key,
        upload_id = %j.upload_id,
        stored = j.parts.len(),
        "resuming an interrupted push: parts are compared by content (MD5) as they are produced"
    );
    Ok(Some(j))
}
