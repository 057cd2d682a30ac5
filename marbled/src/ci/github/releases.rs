//! The `actions/runner` releases and the host's package cache.
//!
//! Releases come from GitHub's REST API (`GET /repos/actions/runner/releases`, one page of
//! 30, through the client's ETag cache: an unchanged list is a 304 that costs no rate-limit
//! quota). Drafts and pre-releases are ignored. Each release's notes publish the SHA-256 of
//! every package between `<!-- BEGIN SHA osx-arm64 -->` and `<!-- END SHA osx-arm64 -->`
//! (actions/runner `releaseNote.md`); that is the checksum a package must match.
//!
//! The cache (`[github] runner_cache`) holds `actions-runner-osx-arm64-V.tar.gz` and
//! `….tar.gz.sha256` (the published checksum, hex). A package is downloaded once per host
//! (into `….part`, hashed while it streams, renamed into place only when it matches), and
//! checked against its `.sha256` again at every use. An air-gapped host gets both files put
//! there by hand; with `runner_version = "latest"` and GitHub unreachable, the newest
//! version in the cache is used.

use std::path::{Path, PathBuf};
use std::time::Duration;

use marble_proto::{ErrorKind, WireError};
use serde::Deserialize;
use sha2::Digest as _;

use super::client::GitHubClient;
use super::types::GitHubError;
use super::versions::{Release, RunnerVersions, Version};
use crate::ci::http::{DownloadError, HttpClient};

/// The package platform MARBLE installs (Apple silicon hosts run arm64 macOS guests).
pub const PLATFORM: &str = "osx-arm64";
/// The release list read (newest first).
pub const RELEASES_PATH: &str = "/repos/actions/runner/releases?per_page=30";
/// Largest package accepted (the real one is ~100–200 MB).
pub const MAX_PACKAGE_BYTES: u64 = 1 << 30;
/// Budget of one package download.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The package file name of `version`.
pub fn asset_name(version: Version) -> String {
    format!("actions-runner-{PLATFORM}-{version}.tar.gz")
}

/// One release as the REST API returns it (the fields MARBLE reads).
#[derive(Debug, Clone, Deserialize)]
struct ApiRelease {
    tag_name: String,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    prerelease: bool,
    published_at: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    assets: Vec<ApiAsset>,
}

#[derive(Debug, Clone, Deserialize)]
struct ApiAsset {
    name: String,
    browser_download_url: String,
}

/// A release with what installing its package needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseInfo {
    /// Version and publication.
    pub release: Release,
    /// The published SHA-256 of the `osx-arm64` package (from the notes), lower-case hex.
    pub sha256: Option<String>,
    /// Where the package is downloaded from.
    pub url: Option<String>,
}

/// The checksum of `platform`'s package in a release's notes.
pub fn published_sha(body: &str, platform: &str) -> Option<String> {
    let begin = format!("<!-- BEGIN SHA {platform} -->");
    let end = format!("<!-- END SHA {platform} -->");
    let start = body.find(&begin)? + begin.len();
    let len = body[start..].find(&end)?;
    let sha = body[start..start + len].trim().to_ascii_lowercase();
    (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then_some(sha)
}

/// Parse a page of the releases API (drafts, pre-releases and odd tags left out).
pub fn parse_releases(body: &[u8]) -> Result<Vec<ReleaseInfo>, serde_json::Error> {
    let api: Vec<ApiRelease> = serde_json::from_slice(body)?;
    Ok(api
        .into_iter()
        .filter(|r| !r.draft && !r.prerelease)
        .filter_map(|r| {
            let version = Version::parse(&r.tag_name)?;
            let published = humantime::parse_rfc3339(r.published_at.as_deref()?).ok()?;
            let published_ms = published
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .and_then(|d| u64::try_from(d.as_millis()).ok())?;
            let name = asset_name(version);
            Some(ReleaseInfo {
                release: Release {
                    version,
                    published_ms,
                },
                sha256: r.body.as_deref().and_then(|b| published_sha(b, PLATFORM)),
                url: r
                    .assets
                    .into_iter()
                    .find(|a| a.name == name)
                    .map(|a| a.browser_download_url),
            })
        })
        .collect())
}

/// Read the release list and record it in `versions`.
pub async fn check_releases(
    client: &GitHubClient,
    versions: &RunnerVersions,
) -> Result<Vec<ReleaseInfo>, PackageError> {
    let result = async {
        let body = client
            .get_cached("list runner releases", RELEASES_PATH)
            .await
            .map_err(PackageError::GitHub)?;
        parse_releases(&body).map_err(|e| PackageError::Releases(e.to_string()))
    }
    .await;
    match &result {
        Ok(list) => versions.set_releases(
            list.iter().map(|r| r.release.clone()).collect(),
            crate::clock::now_ms(),
        ),
        Err(e) => versions.set_check_error(crate::chain::ErrorChain(e).to_string()),
    }
    result
}

/// Why no package could be had.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// GitHub could not be asked.
    #[error("reading the actions/runner releases")]
    GitHub(#[source] GitHubError),
    /// The release list is not what GitHub sends.
    #[error("the actions/runner release list cannot be read: {0}")]
    Releases(String),
    /// No such release, or no package for macOS arm64 in it.
    #[error("actions/runner {0}: no {PLATFORM} package in the release list, and none in the cache")]
    NoRelease(String),
    /// The release publishes no checksum for the package.
    #[error(
        "actions/runner {0}: the release notes publish no SHA-256 for the {PLATFORM} package; not installing an unverified package"
    )]
    NoChecksum(Version),
    /// The package is not what the release published.
    #[error("{file}: SHA-256 {actual} does not match the published {expected}; nothing installed")]
    Checksum {
        /// The package file (or URL).
        file: String,
        /// Published.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The download failed.
    #[error("downloading actions/runner {version}")]
    Download {
        /// Version.
        version: Version,
        /// Cause.
        #[source]
        source: DownloadError,
    },
    /// The cache could not be read or written.
    #[error("runner cache {path}")]
    Cache {
        /// The path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl PackageError {
    /// The wire kind (hence `marblectl`'s exit status): a checksum mismatch is a data error
    /// (65), GitHub or the download unreachable is unavailable (69), the cache is I/O.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PackageError::Checksum { .. } | PackageError::NoChecksum(_) => ErrorKind::DataError,
            PackageError::GitHub(_) | PackageError::Download { .. } => ErrorKind::Unavailable,
            PackageError::Releases(_) | PackageError::NoRelease(_) => ErrorKind::Unavailable,
            PackageError::Cache { .. } => ErrorKind::Internal,
        }
    }

    /// As a wire error.
    pub fn to_wire(&self) -> WireError {
        crate::chain::to_wire(self.kind(), self)
    }
}

/// A verified package, in memory (it goes to the guest on `prlctl exec`'s stdin).
#[derive(Debug)]
pub struct Package {
    /// Its version.
    pub version: Version,
    /// The `.tar.gz`.
    pub bytes: Vec<u8>,
    /// Whether it came from the cache without a download.
    pub cached: bool,
}

/// What installing and checking runner versions needs (`[github]`'s runner keys).
#[derive(Debug, Clone)]
pub struct RunnerSetup {
    /// `[github] runner_version` (`None`: the latest release).
    pub pin: Option<Version>,
    /// The host's package cache.
    pub cache: PackageCache,
    /// Downloads (no credentials; the API client is separate).
    pub http: HttpClient,
    /// The CI user the runner runs as (`[host] ci_user`).
    pub ci_user: String,
    /// How often the release list is read.
    pub check_interval: Duration,
}

impl RunnerSetup {
    /// From `[github]`; the CI user is `[host]`'s default until the caller sets it.
    pub fn from_section(section: &crate::config::GithubSection) -> Self {
        Self {
            pin: Version::parse(&section.runner_version),
            cache: PackageCache::new(section.runner_cache.clone()),
            http: HttpClient::new(section.request_timeout),
            ci_user: crate::config::HostSection::default().ci_user,
            check_interval: section.release_check_interval,
        }
    }
}

/// The host's package cache.
#[derive(Debug, Clone)]
pub struct PackageCache {
    dir: PathBuf,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

impl PackageCache {
    /// The cache in `dir` (created on first download).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn file(&self, v: Version) -> PathBuf {
        self.dir.join(asset_name(v))
    }

    fn sum_file(&self, v: Version) -> PathBuf {
        self.dir.join(format!("{}.sha256", asset_name(v)))
    }

    fn cache_err(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
        move |source| PackageError::Cache {
            path: path.display().to_string(),
            source,
        }
    }

    /// The newest version with a package and its checksum in the cache.
    pub fn newest_cached(&self) -> Option<Version> {
        let prefix = format!("actions-runner-{PLATFORM}-");
        std::fs::read_dir(&self.dir)
            .ok()?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let v = Version::parse(name.strip_prefix(&prefix)?.strip_suffix(".tar.gz")?)?;
                self.sum_file(v).is_file().then_some(v)
            })
            .max()
    }

    /// The cached package of `v` checked against its `.sha256`; `None` when not cached.
    fn cached(&self, v: Version) -> Result<Option<Package>, PackageError> {
        let (file, sum) = (self.file(v), self.sum_file(v));
        if !file.is_file() || !sum.is_file() {
            return Ok(None);
        }
        let expected = std::fs::read_to_string(&sum).map_err(Self::cache_err(&sum))?;
        let expected = expected
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let bytes = std::fs::read(&file).map_err(Self::cache_err(&file))?;
        let actual = sha256_hex(&bytes);
        if actual != expected {
            return Err(PackageError::Checksum {
                file: file.display().to_string(),
                expected,
                actual,
            });
        }
        Ok(Some(Package {
            version: v,
            bytes,
            cached: true,
        }))
    }

    /// Download `info`'s package into the cache, verified against its published checksum.
    async fn download(
        &self,
        http: &HttpClient,
        info: &ReleaseInfo,
    ) -> Result<Package, PackageError> {
        let v = info.release.version;
        let expected = info.sha256.clone().ok_or(PackageError::NoChecksum(v))?;
        let url = info
            .url
            .clone()
            .ok_or_else(|| PackageError::NoRelease(v.to_string()))?;
        std::fs::create_dir_all(&self.dir).map_err(Self::cache_err(&self.dir))?;
        let file = self.file(v);
        let part = self.dir.join(format!("{}.part", asset_name(v)));
        tracing::info!(version = %v, url, "downloading the runner package into the host cache");
        let (size, actual) = http
            .download(&url, &part, MAX_PACKAGE_BYTES, DOWNLOAD_TIMEOUT)
            .await
            .map_err(|source| {
                let _ = std::fs::remove_file(&part);
                PackageError::Download { version: v, source }
            })?;
        if actual != expected {
            let _ = std::fs::remove_file(&part);
            return Err(PackageError::Checksum {
                file: url,
                expected,
                actual,
            });
        }
        crate::fsx::write_atomic(&self.sum_file(v), format!("{expected}\n").as_bytes())
            .map_err(Self::cache_err(&self.dir))?;
        std::fs::rename(&part, &file).map_err(Self::cache_err(&file))?;
        tracing::info!(version = %v, size, "runner package cached");
        let bytes = std::fs::read(&file).map_err(Self::cache_err(&file))?;
        Ok(Package {
            version: v,
            bytes,
            cached: false,
        })
    }

    /// The package of `pin` (`None`: the latest release), from the cache or downloaded.
    /// The release list is read first (a 304 when unchanged); when GitHub cannot be asked,
    /// the cache alone answers: the pinned version's files, or the newest cached version.
    pub async fn get(
        &self,
        client: &GitHubClient,
        http: &HttpClient,
        versions: &RunnerVersions,
        pin: Option<Version>,
    ) -> Result<Package, PackageError> {
        let releases = match check_releases(client, versions).await {
            Ok(list) => list,
            Err(err) => {
                let offline = pin.or_else(|| self.newest_cached());
                if let Some(v) = offline
                    && let Some(p) = self.cached(v)?
                {
                    tracing::warn!(error = %crate::chain::ErrorChain(&err), version = %v, "release list unavailable; using the cached package");
                    return Ok(p);
                }
                return Err(err);
            }
        };
        let info = match pin {
            Some(v) => releases.iter().find(|r| r.release.version == v),
            None => releases.iter().max_by_key(|r| r.release.version),
        };
        let Some(info) = info else {
            let v = pin.map_or_else(|| "latest".to_owned(), |v| v.to_string());
            return match pin.map(|v| self.cached(v)).transpose()?.flatten() {
                Some(p) => Ok(p),
                None => Err(PackageError::NoRelease(v)),
            };
        };
        let v = info.release.version;
        if let Some(p) = self.cached(v)? {
            // The cache's checksum must still be the published one.
            if info
                .sha256
                .as_deref()
                .is_some_and(|s| s != sha256_hex(&p.bytes))
            {
                return Err(PackageError::Checksum {
                    file: self.file(v).display().to_string(),
                    expected: info.sha256.clone().unwrap_or_default(),
                    actual: sha256_hex(&p.bytes),
                });
            }
            return Ok(p);
        }
        self.download(http, info).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_comes_from_the_release_notes_markers() {
        let sha = "ab".repeat(32);
        let body = format!(
            "- actions-runner-osx-x64-2.330.0.tar.gz <!-- BEGIN SHA osx-x64 -->{}<!-- END SHA osx-x64 -->\n\
             - actions-runner-osx-arm64-2.330.0.tar.gz <!-- BEGIN SHA osx-arm64 -->{sha}<!-- END SHA osx-arm64 -->\n",
            "cd".repeat(32)
        );
        assert_eq!(published_sha(&body, "osx-arm64"), Some(sha));
        assert_eq!(
            published_sha(
                "<!-- BEGIN SHA osx-arm64 -->nothex<!-- END SHA osx-arm64 -->",
                "osx-arm64"
            ),
            None
        );
        assert_eq!(published_sha("no markers", "osx-arm64"), None);
    }

    #[test]
    fn the_cache_checks_every_use_and_an_air_gapped_dir_answers_alone() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PackageCache::new(dir.path().to_owned());
        assert_eq!(cache.newest_cached(), None);
        let v = |s: &str| Version::parse(s).unwrap();
        // Put there by hand, as on an air-gapped host: package + published checksum.
        for (ver, body) in [
            ("2.330.0", &b"package 330"[..]),
            ("2.331.0", &b"package 331"[..]),
        ] {
            std::fs::write(dir.path().join(asset_name(v(ver))), body).unwrap();
            let sum = format!("{}  {}\n", sha256_hex(body), asset_name(v(ver)));
            std::fs::write(
                dir.path().join(format!("{}.sha256", asset_name(v(ver)))),
                sum,
            )
            .unwrap();
        }
        // A package without its checksum is not a candidate.
        std::fs::write(dir.path().join(asset_name(v("2.340.0"))), b"x").unwrap();
        assert_eq!(cache.newest_cached(), Some(v("2.331.0")));
        let p = cache.cached(v("2.331.0")).unwrap().unwrap();
        assert_eq!((p.bytes.as_slice(), p.cached), (&b"package 331"[..], true));
        // A package changed since: refused at use, as a data error.
        std::fs::write(dir.path().join(asset_name(v("2.330.0"))), b"tampered").unwrap();
        let err = cache.cached(v("2.330.0")).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DataError);
        assert!(cache.cached(v("2.329.0")).unwrap().is_none());
    }

    #[test]
    fn releases_skip_drafts_and_prereleases_and_find_the_asset() {
        let json = br#"[
          {"tag_name":"v2.331.0","draft":false,"prerelease":true,"published_at":"2026-11-20T10:00:00Z","body":"","assets":[]},
          {"tag_name":"v2.330.0","draft":false,"prerelease":false,"published_at":"2026-11-01T10:00:00Z",
           "body":"x","assets":[{"name":"actions-runner-osx-arm64-2.330.0.tar.gz","browser_download_url":"https://example/a.tgz"}]},
          {"tag_name":"v2.329.0","draft":true,"prerelease":false,"published_at":null,"body":null,"assets":[]}
        ]"#;
        let r = parse_releases(json).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].release.version, Version(2, 330, 0));
        assert_eq!(r[0].release.published_ms, 1_793_527_200_000);
        assert_eq!(r[0].url.as_deref(), Some("https://example/a.tgz"));
        assert_eq!(r[0].sha256, None);
    }
}
