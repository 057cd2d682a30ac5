//! The JSON manifest of a MARBLE image (`<stem>.marble.json`), and the path-safety rules every
//! entry (manifest or legacy zip) must pass before anything is written.
//!
//! The data object `<stem>.marble` is the *payload* — the bytes of every file's data extents,
//! in manifest order, holes left out — cut into fixed-size chunks, each compressed as an
//! independent zstd frame (with the frame checksum) and concatenated. The manifest maps
//! chunks to object byte ranges and payload ranges, so any chunk can be fetched, verified and
//! written on its own (parallel, resumable pulls).

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ImageError;

/// Format identifier stored in every manifest.
pub const FORMAT: &str = "marble-image/1";

/// Kind of a bundle entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// Directory.
    Dir,
    /// Regular file.
    File,
    /// Symbolic link (target must stay inside the bundle).
    Symlink,
}

/// One file, directory or symlink of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Path relative to the bundle root, `/`-separated.
    pub path: String,
    /// Kind.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Logical size (files).
    #[serde(default)]
    pub size: u64,
    /// Data extents `[offset, len]` (files); everything else is a hole.
    #[serde(default)]
    pub extents: Vec<[u64; 2]>,
    /// SHA-256 (hex) of the bytes of `extents`, in order (files).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Link target (symlinks).
    #[serde(default)]
    pub target: Option<String>,
}

impl Entry {
    /// Bytes of data (not holes).
    pub fn data_len(&self) -> u64 {
        self.extents.iter().map(|e| e[1]).sum()
    }
}

/// One independently compressed chunk of the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// Byte offset of the zstd frame in the data object.
    pub offset: u64,
    /// Compressed size.
    pub size: u64,
    /// Payload offset of its first uncompressed byte.
    pub payload_offset: u64,
    /// Uncompressed length.
    pub payload_len: u64,
    /// SHA-256 (hex) of the compressed bytes.
    pub sha256: String,
}

/// The manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// Image name.
    pub name: String,
    /// Directory name of the bundle (e.g. `2026-11-28-ROOT-VM-macOS-14.macvm`).
    pub bundle: String,
    /// Creation time, unix seconds.
    pub created_unix: u64,
    /// `zstd`.
    pub compression: String,
    /// Uncompressed bytes per chunk (last one shorter).
    pub chunk_size: u64,
    /// Total payload bytes.
    pub payload_size: u64,
    /// Size of the data object.
    pub object_size: u64,
    /// ETag of the data object as the server reported it after completion.
    pub object_etag: Option<String>,
    /// What was scrubbed from the guest before upload (VM pushes).
    #[serde(default)]
    pub scrubbed: Vec<String>,
    /// Entries, parents before children.
    pub entries: Vec<Entry>,
    /// Chunks, in payload order.
    pub chunks: Vec<Chunk>,
}

impl Manifest {
    /// Structural checks: format, safe paths, extents within sizes, chunks contiguous and
    /// covering exactly the payload.
    pub fn validate(&self) -> Result<(), ImageError> {
        let corrupt = |reason: String| ImageError::Corrupt {
            name: self.name.clone(),
            reason,
        };
        if self.format != FORMAT {
            return Err(corrupt(format!("unknown format {:?}", self.format)));
        }
        if self.compression != "zstd" {
            return Err(corrupt(format!(
                "unknown compression {:?}",
                self.compression
            )));
        }
        safe_component(&self.bundle)?;
        let mut payload = 0u64;
        for e in &self.entries {
            let rel = safe_relative(&e.path)?;
            match e.kind {
                EntryKind::File => {
                    let mut end = 0;
                    for [off, len] in &e.extents {
                        if *off < end || off.checked_add(*len).is_none_or(|x| x > e.size) {
                            return Err(corrupt(format!("bad extents for {}", e.path)));
                        }
                        end = off + len;
                    }
                    payload += e.data_len();
                }
                EntryKind::Symlink => {
                    let target = e.target.as_deref().unwrap_or("");
                    check_link_target(&e.path, &rel, target)?;
                }
                EntryKind::Dir => {}
            }
        }
        if payload != self.payload_size {
            return Err(corrupt(format!(
                "payload {} != sum of extents {payload}",
                self.payload_size
            )));
        }
        let (mut off, mut pay) = (0u64, 0u64);
        for (i, c) in self.chunks.iter().enumerate() {
            if c.offset != off || c.payload_offset != pay || c.payload_len == 0 {
                return Err(corrupt(format!("chunk {i} is not contiguous")));
            }
            off += c.size;
            pay += c.payload_len;
        }
        if off != self.object_size || pay != self.payload_size {
            return Err(corrupt("chunks do not cover the object".to_string()));
        }
        Ok(())
    }
}

fn unsafe_entry(entry: &str, reason: &'static str) -> ImageError {
    ImageError::UnsafeEntry {
        entry: entry.to_string(),
        reason,
    }
}

/// A single path component that is a plain name.
pub fn safe_component(name: &str) -> Result<(), ImageError> {
    let p = Path::new(name);
    match (p.components().next(), p.components().count()) {
        (Some(Component::Normal(_)), 1) => Ok(()),
        _ => Err(unsafe_entry(
            name,
            "bundle name must be a single plain component",
        )),
    }
}

/// Validates an archive path: relative, no `..`, no empty or root components, no NUL.
pub fn safe_relative(path: &str) -> Result<PathBuf, ImageError> {
    if path.is_empty() {
        return Err(unsafe_entry(path, "empty path"));
    }
    if path.contains('\0') || path.contains('\\') {
        return Err(unsafe_entry(path, "NUL or backslash in path"));
    }
    if path.starts_with('/') {
        return Err(unsafe_entry(path, "absolute path"));
    }
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_entry(path, "'..' component")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(path, "absolute path"));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(unsafe_entry(path, "path names the bundle root"));
    }
    Ok(out)
}

/// A symlink at `rel` with `target` must resolve (lexically) inside the bundle.
pub fn check_link_target(entry: &str, rel: &Path, target: &str) -> Result<(), ImageError> {
    if target.is_empty() || target.contains('\0') {
        return Err(unsafe_entry(entry, "empty link target"));
    }
    if target.starts_with('/') {
        return Err(unsafe_entry(entry, "link target is absolute"));
    }
    // Depth of the link's directory below the root, then walk the target.
    let mut depth: i64 = rel.components().count() as i64 - 1;
    for c in Path::new(target).components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return Err(unsafe_entry(entry, "link target is absolute")),
        }
        if depth < 0 {
            return Err(unsafe_entry(entry, "link target escapes the bundle"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rules() {
        assert!(safe_relative("a/b.hdd").is_ok());
        assert!(safe_relative("./a").is_ok());
        for bad in ["/etc/passwd", "../x", "a/../../x", "", ".", "a\\b"] {
            assert!(safe_relative(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_link_target("a/l", Path::new("a/l"), "../b").is_ok());
        assert!(check_link_target("a/l", Path::new("a/l"), "../../b").is_err());
        assert!(check_link_target("l", Path::new("l"), "/etc").is_err());
    }
}
