//! Credentials: the configured sources in order (0600 secret file, environment, `~/.s3cfg`,
//! the AWS default chain) and the s3cmd config parser. Secrets only travel inside
//! [`SecretString`], whose `Debug` is redacted, so no log line can carry them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::ImageError;
use super::config::{CredentialSource, ImageStoreConfig};

/// A secret whose `Debug`/`Display` never show the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself; only for handing to the SDK.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// Static keys found by one of the sources.
#[derive(Clone, Debug)]
pub struct StaticKeys {
    /// Access key id (not secret, but kept whole only in memory).
    pub access_key: String,
    /// Secret key.
    pub secret_key: SecretString,
    /// Session token, if any.
    pub session_token: Option<SecretString>,
    /// Which source produced them (for logs).
    pub source: &'static str,
}

/// Resolved credentials: static keys, or "let the AWS chain decide".
#[derive(Clone, Debug)]
pub enum ResolvedCredentials {
    /// Keys from a file or the environment.
    Static(StaticKeys),
    /// The SDK's default provider chain.
    AwsChain,
}

/// What MARBLE reads from an s3cmd config file (s3cmd 2.4 semantics, see s3.md §3.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3cfg {
    /// `access_key`.
    pub access_key: Option<String>,
    /// `secret_key`.
    pub secret_key: Option<SecretString>,
    /// `access_token`.
    pub access_token: Option<SecretString>,
    /// `host_base` (`host[:port]`).
    pub host_base: Option<String>,
    /// `host_bucket`.
    pub host_bucket: Option<String>,
    /// `use_https` (default true).
    pub use_https: bool,
    /// `bucket_location` mapped to a SigV4 region (`US`/empty → `us-east-1`).
    pub region: Option<String>,
    /// `signature_v2` (MARBLE only speaks SigV4 and warns).
    pub signature_v2: bool,
}

impl S3cfg {
    /// Parses the INI-like format: `key = value` in any section, last one wins, `#`/`;`
    /// comments, double-quoted values unquoted, `$VAR` values taken from the environment.
    pub fn parse(text: &str) -> Self {
        let mut cfg = S3cfg {
            use_https: true,
            ..S3cfg::default()
        };
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty()
                || line.starts_with('#')
                || line.starts_with(';')
                || line.starts_with('[')
            {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let k = k.trim();
            let mut v = v.trim().to_string();
            if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
                v = v[1..v.len() - 1].to_string();
            }
            if let Some(var) = v.strip_prefix('$') {
                v = std::env::var(var).unwrap_or_default();
            }
            let opt = |v: String| if v.is_empty() { None } else { Some(v) };
            match k {
                "access_key" => cfg.access_key = opt(v),
                "secret_key" => cfg.secret_key = opt(v).map(SecretString),
                "access_token" => cfg.access_token = opt(v).map(SecretString),
                "host_base" => cfg.host_base = opt(v),
                "host_bucket" => cfg.host_bucket = opt(v),
                "use_https" => cfg.use_https = parse_bool(&v).unwrap_or(true),
                "signature_v2" => cfg.signature_v2 = parse_bool(&v).unwrap_or(false),
                "bucket_location" => {
                    cfg.region = Some(match v.as_str() {
                        "" | "US" | "us" => "us-east-1".to_string(),
                        other => other.to_string(),
                    })
                }
                _ => {}
            }
        }
        cfg
    }

    /// Endpoint URL derived from `host_base` and `use_https`.
    pub fn endpoint(&self) -> Option<String> {
        let host = self.host_base.as_ref()?;
        let scheme = if self.use_https { "https" } else { "http" };
        Some(format!("{scheme}://{host}"))
    }

    /// s3cmd uses virtual-hosted style only when `host_bucket` contains `%(bucket)s`.
    pub fn path_style(&self) -> bool {
        !self
            .host_bucket
            .as_deref()
            .is_some_and(|h| h.contains("%(bucket)s"))
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        let text = std::fs::read_to_string(path).map_err(ImageError::io("read", path))?;
        Ok(Self::parse(&text))
    }

    /// `$S3CMD_CONFIG`, else `~/.s3cfg`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("S3CMD_CONFIG") {
            return Some(PathBuf::from(p));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".s3cfg"))
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Reads a secret file after checking it is not readable by group or others.
pub fn load_secret_file(path: &Path) -> Result<S3cfg, ImageError> {
    let meta = std::fs::metadata(path).map_err(ImageError::io("stat", path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ImageError::InsecureSecretFile {
            path: path.to_path_buf(),
            mode,
        });
    }
    S3cfg::load(path)
}

fn keys_from(cfg: &S3cfg, source: &'static str) -> Option<StaticKeys> {
    Some(StaticKeys {
        access_key: cfg.access_key.clone()?,
        secret_key: cfg.secret_key.clone()?,
        session_token: cfg.access_token.clone(),
        source,
    })
}

/// Walks the configured sources in order and returns the first that has keys.
/// A secret file that exists but is group/world readable is an error, not a skip.
pub fn resolve(cfg: &ImageStoreConfig) -> Result<ResolvedCredentials, ImageError> {
    let mut tried = Vec::new();
    for source in &cfg.credentials {
        match source {
            CredentialSource::SecretFile => {
                let Some(path) = &cfg.secret_file else {
                    tried.push("secret-file (not configured)".to_string());
                    continue;
                };
                if !path.exists() {
                    tried.push(format!("secret-file ({} missing)", path.display()));
                    continue;
                }
                match keys_from(&load_secret_file(path)?, "secret-file") {
                    Some(k) => return Ok(ResolvedCredentials::Static(k)),
                    None => tried.push(format!("secret-file ({} has no keys)", path.display())),
                }
            }
            CredentialSource::Env => {
                let id = std::env::var("AWS_ACCESS_KEY_ID")
                    .ok()
                    .filter(|s| !s.is_empty());
                let secret = std::env::var("AWS_SECRET_ACCESS_KEY")
                    .ok()
                    .filter(|s| !s.is_empty());
                match (id, secret) {
                    (Some(access_key), Some(secret)) => {
                        return Ok(ResolvedCredentials::Static(StaticKeys {
                            access_key,
                            secret_key: SecretString(secret),
                            session_token: std::env::var("AWS_SESSION_TOKEN")
                                .ok()
                                .map(SecretString),
                            source: "env",
                        }));
                    }
                    _ => tried
                        .push("env (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY unset)".to_string()),
                }
            }
            CredentialSource::S3cfg => {
                let Some(path) = cfg.s3cfg.clone().or_else(S3cfg::default_path) else {
                    tried.push("s3cfg (no HOME)".to_string());
                    continue;
                };
                if !path.exists() {
                    tried.push(format!("s3cfg ({} missing)", path.display()));
                    continue;
                }
                let parsed = S3cfg::load(&path)?;
                if parsed.signature_v2 {
                    tracing::warn!(path = %path.display(), "s3cfg asks for signature_v2; marble signs with sigv4");
                }
                match keys_from(&parsed, "s3cfg") {
                    Some(k) => return Ok(ResolvedCredentials::Static(k)),
                    None => tried.push(format!("s3cfg ({} has no keys)", path.display())),
                }
            }
            CredentialSource::AwsChain => return Ok(ResolvedCredentials::AwsChain),
        }
    }
    Err(ImageError::NoCredentials {
        tried: tried.join(", "),
    })
}
