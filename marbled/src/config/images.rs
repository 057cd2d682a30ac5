//! `[images]`: the S3 image store and image pipeline settings the daemon config embeds (S3
//! endpoint, bucket, credentials order, transfer tuning, scrub list, pull-time VM
//! settings), with their defaults and value checks.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where credentials may come from, tried in the configured order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialSource {
    /// `secret_file` (INI lines `access_key = …`, `secret_key = …`); must be mode 0600.
    SecretFile,
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
    Env,
    /// An s3cmd config (`s3cfg`, default `~/.s3cfg`), so existing hosts migrate as they are.
    S3cfg,
    /// The AWS SDK default chain (env, `~/.aws`, process, IMDS …).
    AwsChain,
}

/// Checksum behaviour of the SDK (both request calculation and response validation).
/// MARBLE always adds its own integrity (Content-MD5 per part, SHA-256 per chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChecksumMode {
    /// Only where the API requires it: works with older Ceph RGW and Garage over http.
    WhenRequired,
    /// The SDK default (CRC32 trailers on uploads); for servers known to support it.
    WhenSupported,
}

/// How much of the object to re-check after a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyAfterPush {
    /// HEAD: size and multipart ETag (MD5 of part MD5s) against what was sent.
    Etag,
    /// Download every chunk again and check its SHA-256.
    Full,
}

/// What to remove inside a clone's guest before it is pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubConfig {
    /// Guest path globs removed with `rm -rf`, expanded by the guest shell; only `*` and `?`
    /// are wildcards, every other character is literal.
    pub files: Vec<String>,
    /// Reset ComputerName/HostName/LocalHostName to the image name.
    pub reset_hostname: bool,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        Self {
            files: vec![
                "/Users/*/.PAT".into(),
                // The seed's setup script wrote the PAT as root (`prlctl exec` runs as root).
                "/var/root/.PAT".into(),
                // A registered runner's own secrets (left behind when its VM was stopped
                // before it took a job), where `marblectl runner install` and the seed put it.
                "/Users/*/actions-runner/.credentials".into(),
                "/Users/*/actions-runner/.credentials_rsaparams".into(),
                "/Users/*/actions-runner/.runner".into(),
                "/Users/*/.zsh_history".into(),
                "/Users/*/.bash_history".into(),
                "/Users/*/.zsh_sessions/*".into(),
                "/var/root/.zsh_history".into(),
                "/var/root/.bash_history".into(),
            ],
            reset_hostname: true,
        }
    }
}

/// The S3 image store and image pipeline settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageStoreConfig {
    /// Endpoint URL with scheme (e.g. `https://s3.cern.ch`). Unset: taken from the s3cfg's
    /// `host_base`/`use_https`.
    pub endpoint: Option<String>,
    /// PEM bundle of CA certificates trusted for an `https://` endpoint in addition to the
    /// operating system's roots (e.g. a site CA such as CERN's Root and Grid CAs).
    pub ca_file: Option<PathBuf>,
    /// SigV4 region; RGW accepts any real region name for a single zonegroup.
    pub region: String,
    /// Bucket holding the images.
    pub bucket: String,
    /// Path-style addressing (`https://host/bucket/key`); RGW usually needs it.
    pub path_style: bool,
    /// Credential sources, tried in this order.
    pub credentials: Vec<CredentialSource>,
    /// The 0600 secret file for [`CredentialSource::SecretFile`].
    pub secret_file: Option<PathBuf>,
    /// s3cmd config for [`CredentialSource::S3cfg`]; default `$S3CMD_CONFIG`, `~/.s3cfg`, else
    /// the seed's `~/MARBLE/.s3cfg`. Read only if 0600 and owned by the service user.
    pub s3cfg: Option<PathBuf>,
    /// Multipart part size in MiB (≥ 5, S3's minimum for all but the last part).
    pub part_size_mib: u64,
    /// Uncompressed payload per independently compressed, verified chunk, in MiB.
    pub chunk_size_mib: u64,
    /// Parts/chunks in flight at once.
    pub concurrency: usize,
    /// zstd level (1–3 is the sweet spot, see docs/IMAGES.md).
    pub compression_level: i32,
    /// SDK checksum behaviour.
    pub checksums: ChecksumMode,
    /// Prefix before `TEAM/NAME` (e.g. `images/`); empty for the seed's layout.
    pub key_prefix: String,
    /// Directory for push resume journals. Unset: `$TMPDIR/marble-images-<uid>`.
    pub state_dir: Option<PathBuf>,
    /// Post-push verification depth.
    pub verify_after_push: VerifyAfterPush,
    /// Scrub list for `image push`.
    pub scrub: ScrubConfig,
    /// Memory left to the host when sizing a pulled VM (MiB).
    pub host_memory_reserve_mib: u64,
    /// Build disk path on the host (shared by all VMs).
    pub build_disk: Option<PathBuf>,
    /// Object key of the build disk: the seed's `build_drive.hdd`, a zip stored without the
    /// extension; MARBLE's format (`<key>.marble.json` + `<key>.marble`) is accepted too. The
    /// content is recognised by its bytes, not its name.
    pub build_disk_key: String,
    /// Directory pulled VM bundles go to. Unset: `$HOME/Parallels` of the daemon's user.
    pub bundles_dir: Option<PathBuf>,
    /// How long `image push` waits for the scrubbing clone's guest to answer `prlctl exec`.
    #[serde(with = "humantime_serde")]
    pub boot_timeout: Duration,
    /// Timeout of each guest command of the scrub.
    #[serde(with = "humantime_serde")]
    pub exec_timeout: Duration,
}

impl Default for ImageStoreConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            ca_file: None,
            region: "us-east-1".into(),
            bucket: "macvmstorage".into(),
            path_style: true,
            credentials: vec![
                CredentialSource::SecretFile,
                CredentialSource::Env,
                CredentialSource::S3cfg,
                CredentialSource::AwsChain,
            ],
            secret_file: None,
            s3cfg: None,
            part_size_mib: 16,
            chunk_size_mib: 16,
            concurrency: 4,
            compression_level: 1,
            checksums: ChecksumMode::WhenRequired,
            key_prefix: String::new(),
            state_dir: None,
            verify_after_push: VerifyAfterPush::Etag,
            scrub: ScrubConfig::default(),
            host_memory_reserve_mib: 4096,
            build_disk: None,
            build_disk_key: "build_drive.hdd".into(),
            bundles_dir: None,
            boot_timeout: Duration::from_secs(300),
            exec_timeout: Duration::from_secs(60),
        }
    }
}

impl ImageStoreConfig {
    /// Value-range problems, all at once (empty: valid).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.bucket.is_empty() {
            problems.push("bucket is empty".to_string());
        }
        if self.region.is_empty() || self.region.eq_ignore_ascii_case("us") {
            problems.push(format!(
                "region {:?} is not a SigV4 region (use us-east-1)",
                self.region
            ));
        }
        if !(5..=5120).contains(&self.part_size_mib) {
            problems.push(format!(
                "part_size_mib {} not in 5..=5120",
                self.part_size_mib
            ));
        }
        if !(1..=1024).contains(&self.chunk_size_mib) {
            problems.push(format!(
                "chunk_size_mib {} not in 1..=1024",
                self.chunk_size_mib
            ));
        }
        if !(1..=64).contains(&self.concurrency) {
            problems.push(format!("concurrency {} not in 1..=64", self.concurrency));
        }
        if !(-7..=19).contains(&self.compression_level) {
            problems.push(format!(
                "compression_level {} not in -7..=19",
                self.compression_level
            ));
        }
        if self.boot_timeout.is_zero() || self.exec_timeout.is_zero() {
            problems.push("boot_timeout and exec_timeout must be greater than zero".to_string());
        }
        if self.credentials.is_empty() {
            problems.push("credentials order is empty".to_string());
        }
        if let Some(e) = &self.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            problems.push(format!(
                "endpoint {e:?} needs an http:// or https:// scheme"
            ));
        }
        problems
    }

    pub(crate) fn part_size(&self) -> u64 {
        self.part_size_mib * 1024 * 1024
    }

    pub(crate) fn chunk_size(&self) -> u64 {
        self.chunk_size_mib * 1024 * 1024
    }

    /// Where pulled bundles go: `bundles_dir`, else `$HOME/Parallels`.
    pub fn bundles_dir(&self) -> PathBuf {
        self.bundles_dir.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map_or_else(|| PathBuf::from("/var/empty"), PathBuf::from)
                .join("Parallels")
        })
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("marble-images-{}", nix::unistd::getuid()))
        })
    }
}
