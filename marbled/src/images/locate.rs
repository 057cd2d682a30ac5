//! Which objects hold an image or the build disk, and in which format, told by the manifest
//! or by the object's first bytes, not by its name: the seed stored the build disk as the
//! object `build_drive.hdd`, a zip without the `.zip` extension.
//!
//! For a key `K` (a trailing `.zip` ignored for the MARBLE lookup), in order:
//! 1. `K.marble.json` exists → the MARBLE format (data in `K.marble`);
//! 2. the object `K` exists → its first bytes decide: a zip signature → a zip archive; the
//!    zstd frame magic → MARBLE data whose manifest is missing (an unfinished push);
//!    anything else → refused, naming the bytes;
//! 3. `K.zip` exists (team images as the seed stored them: `TEAM/NAME.zip`) → the same check.
//!
//! Nothing is downloaded but the manifest and the first bytes, so a pull can check what it
//! needs (existence, size) before it changes the host.

use super::manifest::Manifest;
use super::name::{DATA_SUFFIX, MANIFEST_SUFFIX, ZIP_SUFFIX};
use super::{ImageError, ImageStore};

/// Bytes read to recognise an object.
const SNIFF: u64 = 4;
/// Zip signatures: local file header, end of central directory (empty archive), spanning.
const ZIP_MAGIC: [&[u8]; 3] = [b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"];
/// A zstd frame: what a MARBLE data object starts with.
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// An image (or build disk) found in the bucket.
#[derive(Debug, Clone)]
pub(crate) enum Located {
    /// The MARBLE format.
    Marble {
        /// Data object key.
        data_key: String,
        /// The manifest as stored (its hash keys the pull journal).
        manifest_bytes: bytes::Bytes,
        /// The parsed, validated manifest.
        manifest: Box<Manifest>,
    },
    /// A zip archive.
    Zip {
        /// Its key.
        key: String,
        /// Its size.
        size: u64,
        /// Its ETag (pins the ranged GETs).
        etag: Option<String>,
    },
}

impl Located {
    /// Bytes the pull writes at its destination (before the 256 MiB margin).
    pub(crate) fn bytes_needed(&self) -> u64 {
        match self {
            Located::Marble { manifest, .. } => manifest.payload_size,
            // The archive is downloaded next to the tree it extracts to.
            Located::Zip { size, .. } => size.saturating_mul(2),
        }
    }

    /// The bundle directory name the pull creates, when known before extracting.
    pub(crate) fn bundle(&self) -> Option<&str> {
        match self {
            Located::Marble { manifest, .. } => Some(&manifest.bundle),
            Located::Zip { .. } => None,
        }
    }
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the object `key` (which exists, `size` bytes) holds, by its first bytes.
async fn sniff(
    store: &ImageStore,
    key: &str,
    size: u64,
    etag: Option<String>,
) -> Result<Located, ImageError> {
    let head = store
        .bucket
        .get_range(key, 0, SNIFF.min(size), etag.as_deref())
        .await?;
    if ZIP_MAGIC.iter().any(|m| head.starts_with(m)) {
        return Ok(Located::Zip {
            key: key.to_string(),
            size,
            etag,
        });
    }
    let reason = if head.starts_with(ZSTD_MAGIC) {
        format!(
            "it holds MARBLE data without its manifest {key}{MANIFEST_SUFFIX} (an unfinished push?)"
        )
    } else if head.is_empty() {
        "the object is empty".to_string()
    } else {
        format!(
            "it is neither a zip archive nor a MARBLE image (first bytes: {})",
            hex_bytes(&head)
        )
    };
    Err(ImageError::Corrupt {
        name: key.to_string(),
        reason,
    })
}

/// Finds `key` in the bucket (see the module doc).
pub(crate) async fn locate(store: &ImageStore, key: &str) -> Result<Located, ImageError> {
    let stem = key.strip_suffix(ZIP_SUFFIX).unwrap_or(key);
    let manifest_key = format!("{stem}{MANIFEST_SUFFIX}");
    if let Some(m) = store.bucket.get_small(&manifest_key).await? {
        let manifest: Manifest =
            serde_json::from_slice(&m).map_err(|source| ImageError::Manifest {
                name: manifest_key.clone(),
                source,
            })?;
        manifest.validate()?;
        return Ok(Located::Marble {
            data_key: format!("{stem}{DATA_SUFFIX}"),
            manifest_bytes: m,
            manifest: Box::new(manifest),
        });
    }
    let zip_key = format!("{key}{ZIP_SUFFIX}");
    let candidates = if key.ends_with(ZIP_SUFFIX) {
        vec![key.to_string()]
    } else {
        vec![key.to_string(), zip_key]
    };
    for k in candidates {
        if let Some(h) = store.bucket.head(&k).await? {
            return sniff(store, &k, h.size, h.etag).await;
        }
    }
    Err(ImageError::NotFound {
        name: stem.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_in_hex() {
        assert_eq!(hex_bytes(b"<?xm"), "3c 3f 78 6d");
    }
}
