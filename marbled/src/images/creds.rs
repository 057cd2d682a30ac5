//! Credentials: the configured sources in order (0600 secret file, environment, a 0600
//! `~/.s3cfg` or the seed's `~/MARBLE/.s3cfg`,
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

    /// `$S3CMD_CONFIG`, else `~/.s3cfg`, else the seed's `~/MARBLE/.s3cfg`
    /// ([`default_path_from`]).
    pub fn default_path() -> Option<PathBuf> {
        default_path_from(std::env::var_os("S3CMD_CONFIG"), std::env::var_os("HOME"))
    }
}

/// [`S3cfg::default_path`] from the values of `$S3CMD_CONFIG` and `$HOME`: the variable, else
/// `~/.s3cfg`, else the seed's `~/MARBLE/.s3cfg` when only that one exists (the seed scp'd
/// it there and pointed s3cmd at it), so a host migrates with its credentials where they are.
pub fn default_path_from(
    env: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    if let Some(p) = env {
        return Some(PathBuf::from(p));
    }
    let home = PathBuf::from(home?);
    let dot = home.join(".s3cfg");
    let seed = home.join("MARBLE/.s3cfg");
    Some(if !dot.exists() && seed.exists() {
        seed
    } else {
        dot
    })
}

/// A file with keys may be read only if group and others cannot read it and `uid` (the
/// service user) owns it: another user could have planted or read it. The refusal names the
/// `chmod`/`chown` that fixes it.
pub fn check_private(path: &Path, uid: u32) -> Result<(), ImageError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(ImageError::io("stat", path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ImageError::InsecureSecretFile {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.uid() != uid {
        return Err(ImageError::ForeignSecretFile {
            path: path.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    Ok(())
}

/// Reads a file with keys (secret file or s3cfg) after [`check_private`] as this process.
pub fn load_private(path: &Path) -> Result<S3cfg, ImageError> {
    check_private(path, nix::unistd::geteuid().as_raw())?;
    S3cfg::load(path)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Reads a secret file after checking only the service user can read it.
pub fn load_secret_file(path: &Path) -> Result<S3cfg, ImageError> {
    load_private(path)
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
                let parsed = load_private(&path)?;
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const S3CFG: &str = "[default]\naccess_key = AK\nsecret_key = SK\nhost_base = s3.cern.ch\n";

    fn s3cfg_only(path: &Path) -> ImageStoreConfig {
        ImageStoreConfig {
            credentials: vec![CredentialSource::S3cfg],
            s3cfg: Some(path.to_owned()),
            ..ImageStoreConfig::default()
        }
    }

    #[test]
    fn the_seeds_marble_s3cfg_is_the_default_when_there_is_no_home_s3cfg() {
        let home = tempfile::tempdir().unwrap();
        let h = Some(home.path().as_os_str().to_owned());
        assert_eq!(
            default_path_from(None, h.clone()),
            Some(home.path().join(".s3cfg"))
        );
        std::fs::create_dir(home.path().join("MARBLE")).unwrap();
        std::fs::write(home.path().join("MARBLE/.s3cfg"), S3CFG).unwrap();
        assert_eq!(
            default_path_from(None, h.clone()),
            Some(home.path().join("MARBLE/.s3cfg"))
        );
        std::fs::write(home.path().join(".s3cfg"), S3CFG).unwrap();
        assert_eq!(
            default_path_from(None, h.clone()),
            Some(home.path().join(".s3cfg")),
            "s3cmd's own default first"
        );
        assert_eq!(
            default_path_from(Some("/x/cfg".into()), h),
            Some(PathBuf::from("/x/cfg"))
        );
    }

    #[test]
    fn a_group_or_world_readable_s3cfg_is_refused_naming_the_chmod() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".s3cfg");
        std::fs::write(&path, S3CFG).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = resolve(&s3cfg_only(&path)).expect_err("0644 refused");
        let text = err.to_string();
        assert!(
            text.contains(&format!("chmod 600 {}", path.display())),
            "{text}"
        );
        assert!(!text.contains("SK"), "no secret in the error: {text}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(resolve(&s3cfg_only(&path)).is_ok());
    }

    #[test]
    fn an_s3cfg_of_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".s3cfg");
        std::fs::write(&path, S3CFG).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let err = check_private(&path, me.wrapping_add(1)).expect_err("foreign owner refused");
        assert!(err.to_string().contains("chown"), "{err}");
        assert!(check_private(&path, me).is_ok());
    }
}
