//! `ImageError`: every way an image operation can fail, with the key, path or VM it concerns.

use std::path::PathBuf;

use crate::hypervisor::PrlctlError;

/// Errors of [`crate::images`]. Messages are lowercase and name the object they concern.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The `[images]` configuration is unusable.
    #[error("invalid image store config: {0}")]
    Config(String),
    /// No credential source in the configured order produced keys.
    #[error("no s3 credentials found (tried: {tried})")]
    NoCredentials {
        /// The sources tried, in order, with why each gave nothing.
        tried: String,
    },
    /// The secret file can be read by other users.
    #[error(
        "secret file {} has mode {mode:o}: it must not be readable by group or others (`{}`)",
        path.display(),
        marble_proto::names::shell_command(&["chmod", "600", &path.to_string_lossy()])
    )]
    InsecureSecretFile {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file with keys belongs to another user.
    #[error(
        "secret file {} is owned by uid {owner}, not by the service user (uid {uid}): `sudo {} && {}`",
        path.display(),
        marble_proto::names::shell_command(&["chown", &uid.to_string(), &path.to_string_lossy()]),
        marble_proto::names::shell_command(&["chmod", "600", &path.to_string_lossy()])
    )]
    ForeignSecretFile {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The service user.
        uid: u32,
    },
    /// A local file operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done (`read`, `create`, `rename` …).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An S3 request failed. `detail` is the SDK's error chain rendered once (the SDK's own
    /// `Display` says only "service error").
    #[error("s3 {op} {key}: {detail}")]
    S3 {
        /// The S3 operation.
        op: &'static str,
        /// Object key (or prefix).
        key: String,
        /// Rendered SDK error chain.
        detail: String,
    },
    /// The server is in another region than the one requests are signed for.
    #[error(
        "s3 {op}: the server expects region {expected:?}, requests are signed for {sent:?}: set images.region = {expected:?} in marbled.toml"
    )]
    WrongRegion {
        /// The S3 operation.
        op: &'static str,
        /// The region the request was signed for (`images.region`).
        sent: String,
        /// The region the server named.
        expected: String,
    },
    /// The object was replaced after its manifest was written: the server refused the reads
    /// pinned to the manifest's ETag (`If-Match`, HTTP 412).
    #[error(
        "object {key} was replaced after its manifest was written (the server answered 412 to reads pinned to the manifest's ETag); push the image again"
    )]
    Replaced {
        /// The object key.
        key: String,
    },
    /// No object (or manifest) under that name.
    #[error("image {name} not found in the bucket")]
    NotFound {
        /// The image name or key.
        name: String,
    },
    /// The image name does not follow `YYYY-MM-DD-TEAM-VM-macOS-N`.
    #[error("invalid image name {name:?}: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An archive entry would land outside the bundle (zip-slip) or is otherwise unsafe.
    #[error("archive entry {entry:?} rejected: {reason}")]
    UnsafeEntry {
        /// The entry path as stored in the archive.
        entry: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A hash did not match the manifest.
    #[error("checksum mismatch for {what}: expected {expected}, got {actual}")]
    Checksum {
        /// Chunk, part or file.
        what: String,
        /// Expected value.
        expected: String,
        /// Computed value.
        actual: String,
    },
    /// The archive is structurally broken (truncated, bad compression, wrong sizes).
    #[error("corrupt image {name}: {reason}")]
    Corrupt {
        /// The image or key.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The destination bundle already exists; it is never touched.
    #[error("destination {path} already exists; remove or rename it first")]
    Exists {
        /// The existing path.
        path: PathBuf,
    },
    /// The destination filesystem is too full.
    #[error("not enough free space in {path}: need {need} bytes, {avail} available")]
    NoSpace {
        /// Directory checked.
        path: PathBuf,
        /// Bytes needed.
        need: u64,
        /// Bytes available.
        avail: u64,
    },
    /// The disk filled up while a pull was writing (ENOSPC or EDQUOT from the OS, after the
    /// free-space check passed: another writer, or more files than the filesystem has room
    /// for). The partial download is removed before this is reported.
    #[error(
        "disk full: {op} {path}: the pull needs {need} bytes in {dir}; {avail} bytes free now ({files} more files fit); the partial download was removed"
    )]
    DiskFull {
        /// What was being done (`write`, `create` …).
        op: &'static str,
        /// The file being written.
        path: PathBuf,
        /// The directory the pull writes into.
        dir: PathBuf,
        /// Bytes the pull needs there.
        need: u64,
        /// Bytes free there after the partial download was removed.
        avail: u64,
        /// Files (inodes) that can still be created there.
        files: u64,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest could not be parsed or encoded.
    #[error("manifest of {name}")]
    Manifest {
        /// The image.
        name: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The legacy zip archive is unreadable.
    #[error("zip archive {name}")]
    Zip {
        /// The image.
        name: String,
        /// The zip error.
        #[source]
        source: zip::result::ZipError,
    },
    /// A VM-level precondition failed.
    #[error("vm {vm}: {reason}")]
    Vm {
        /// The VM.
        vm: String,
        /// What is wrong.
        reason: String,
    },
    /// A hypervisor call failed.
    #[error("{op} on vm {vm}")]
    Hypervisor {
        /// The prlctl verb.
        op: &'static str,
        /// The VM.
        vm: String,
        /// The adapter error.
        #[source]
        source: PrlctlError,
    },
    /// After scrubbing, some scrub targets were still present in the guest.
    #[error("scrub of {vm} incomplete: still present: {remaining:?}")]
    ScrubIncomplete {
        /// The clone that was scrubbed.
        vm: String,
        /// What remained.
        remaining: Vec<String>,
    },
    /// A pull needs the build disk, which is missing on the host and not in the bucket.
    #[error(
        "build disk {path} is missing and the bucket has no {key} to fetch it from (a zip or a MARBLE image); upload it there or set images.build_disk_key. Nothing was changed on this host"
    )]
    BuildDiskMissing {
        /// The configured build disk (`images.build_disk`).
        path: PathBuf,
        /// The key looked for (prefix + `images.build_disk_key`).
        key: String,
    },
    /// The image cannot be stored as one S3 object (part count, part size or object size).
    #[error(
        "image too large for S3: {payload} bytes of data compress to at most {bound} bytes, beyond {limit}"
    )]
    TooLarge {
        /// Allocated bytes of the bundle's files (holes left out).
        payload: u64,
        /// Largest possible size of the compressed data object.
        bound: u64,
        /// The limit it exceeds.
        limit: &'static str,
    },
    /// A worker task panicked or was cancelled.
    #[error("transfer task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl ImageError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}

impl crate::chain::WireKind for ImageError {
    /// The kind an image failure is reported with (and so marblectl's exit code).
    fn kind(&self) -> marble_proto::ErrorKind {
        use marble_proto::ErrorKind;
        match self {
            Self::NotFound { .. } | Self::BuildDiskMissing { .. } => ErrorKind::NotFound,
            Self::BadName { .. } | Self::TooLarge { .. } => ErrorKind::InvalidRequest,
            Self::Exists { .. } | Self::Vm { .. } | Self::ScrubIncomplete { .. } => {
                ErrorKind::InvalidState
            }
            Self::Config(_)
            | Self::NoCredentials { .. }
            | Self::InsecureSecretFile { .. }
            | Self::ForeignSecretFile { .. }
            | Self::S3 { .. }
            | Self::WrongRegion { .. }
            | Self::Hypervisor { .. } => ErrorKind::Unavailable,
            Self::NoSpace { .. } | Self::DiskFull { .. } => ErrorKind::NoSpace,
            Self::UnsafeEntry { .. }
            | Self::Checksum { .. }
            | Self::Corrupt { .. }
            | Self::Manifest { .. }
            | Self::Replaced { .. }
            | Self::Zip { .. } => ErrorKind::DataError,
            Self::Io { .. } | Self::Task(_) => ErrorKind::Internal,
        }
    }
}
