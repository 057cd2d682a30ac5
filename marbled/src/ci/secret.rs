//! Secrets of the CI front-ends: the [`Secret`] newtype (redacting `Debug`/`Display`) and
//! loading a token from a 0600 file or, on macOS, from the Keychain.
//!
//! Owns the rule "a secret never reaches a log line, an error message or a command line":
//! the only way to see the value is [`Secret::expose`], and every call site of it is either
//! an HTTP header or the stdin of `prlctl exec`.

use std::fmt;
use std::path::{Path, PathBuf};

/// A secret string (API token, encoded JIT config). `Debug` and `Display` print
/// `<redacted>`; the value is only reachable through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value. Callers pass it to an HTTP header or a process's stdin, nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a secret could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read or inspected.
    #[error("cannot read secret file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is readable by group or others.
    #[error(
        "secret file {} has mode {mode:04o}, readable by other users; fix with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file holds nothing but whitespace.
    #[error("secret file {} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The Keychain lookup failed (macOS only).
    #[error("keychain item service={service:?} account={account:?} not readable: {reason}")]
    Keychain {
        /// Keychain service name.
        service: String,
        /// Keychain account name.
        account: String,
        /// `security`'s exit status or spawn failure (never the secret).
        reason: String,
    },
    /// Keychain lookup requested on a platform without a Keychain.
    #[error("keychain lookup is only available on macOS")]
    KeychainUnsupported,
}

/// Read a secret from `path`: the file must not be readable or writable by group or others
/// (mode `0600` or stricter), and its content is trimmed of surrounding whitespace (so a
/// trailing newline from `echo` does not end up in an HTTP header).
pub fn read_secret_file(path: &Path) -> Result<Secret, SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let read_err = |source| SecretError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let raw = std::fs::read_to_string(path).map_err(read_err)?;
    let value = raw.trim();
    if value.is_empty() {
        return Err(SecretError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(value))
}

/// Read a generic password from the login/System Keychain with
/// `security find-generic-password -s SERVICE -a ACCOUNT -w` (macOS only). The value comes
/// back on `security`'s stdout; nothing secret is on its command line.
#[cfg(target_os = "macos")]
pub fn read_keychain(service: &str, account: &str) -> Result<Secret, SecretError> {
    let fail = |reason: String| SecretError::Keychain {
        service: service.to_owned(),
        account: account.to_owned(),
        reason,
    };
    let out = std::process::Command::new("/usr/bin/security")
        .args(["find-generic-password", "-s", service, "-a", account, "-w"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| fail(format!("cannot run security: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!("security exited with {}", out.status)));
    }
    let value = String::from_utf8(out.stdout).map_err(|_| fail("not utf-8".to_owned()))?;
    let value = value.trim();
    if value.is_empty() {
        return Err(fail("empty item".to_owned()));
    }
    Ok(Secret::new(value))
}

/// Keychain lookup stub for non-macOS hosts: always [`SecretError::KeychainUnsupported`].
#[cfg(not(target_os = "macos"))]
pub fn read_keychain(_service: &str, _account: &str) -> Result<Secret, SecretError> {
    Err(SecretError::KeychainUnsupported)
}

/// Where a token comes from (config: `token_file = "…"` or `keychain = { service, account }`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum TokenSource {
    /// A file with mode 0600.
    File(PathBuf),
    /// A Keychain generic password (macOS only).
    Keychain {
        /// Service name (`-s`).
        service: String,
        /// Account name (`-a`).
        account: String,
    },
}

impl TokenSource {
    /// The source a config section names with its `token_file` / `token_keychain` pair
    /// (exactly one must be set; `marbled check-config` reports that too, naming the key).
    pub fn from_section(
        section: &str,
        file: Option<&PathBuf>,
        keychain: Option<&crate::config::KeychainItem>,
    ) -> Result<Self, String> {
        match (file, keychain) {
            (Some(f), None) => Ok(TokenSource::File(f.clone())),
            (None, Some(k)) => Ok(TokenSource::Keychain {
                service: k.service.clone(),
                account: k.account.clone(),
            }),
            _ => Err(format!(
                "set exactly one of {section}.token_file and {section}.token_keychain"
            )),
        }
    }

    /// Load the secret.
    pub fn load(&self) -> Result<Secret, SecretError> {
        match self {
            TokenSource::File(p) => read_secret_file(p),
            TokenSource::Keychain { service, account } => read_keychain(service, account),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("ghp_supersecret");
        assert_eq!(format!("{s}"), "<redacted>");
        assert!(!format!("{s:?}").contains("supersecret"));
        assert_eq!(s.expose(), "ghp_supersecret");
    }

    #[test]
    fn file_mode_is_checked_and_error_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "ghp_abc\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret_file(&p).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(msg.contains("0644"), "{msg}");
        assert!(!msg.contains("ghp_abc"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&p).unwrap().expose(), "ghp_abc");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            read_secret_file(&p),
            Err(SecretError::TooOpen { mode: 0o640, .. })
        ));
    }

    #[test]
    fn empty_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        assert!(matches!(
            read_secret_file(&p),
            Err(SecretError::Read { .. })
        ));
        std::fs::write(&p, " \n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            read_secret_file(&p),
            Err(SecretError::Empty { .. })
        ));
    }
}
