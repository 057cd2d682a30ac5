//! Secrets of the CI front-ends: the [`Secret`] newtype (redacting `Debug`/`Display`),
//! loading a token from a 0600 file or, on macOS, from the Keychain, and the [`TokenCell`]
//! that keeps a token for its clients and retries a source that fails.
//!
//! Owns the rule "a secret never reaches a log line, an error message or a command line":
//! the only way to see the value is [`Secret::expose`], and every call site of it is either
//! an HTTP header or the stdin of `prlctl exec`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        "secret file {} has mode {mode:04o}, readable by other users; fix with `{}`",
        path.display(),
        marble_proto::names::shell_command(&["chmod", "600", &path.to_string_lossy()])
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
    /// The Keychain lookup failed.
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

/// The `security(1)` program the Keychain is read with unless `token_keychain.security`
/// names another.
pub const DEFAULT_SECURITY: &str = "/usr/bin/security";

/// Longest a `security find-generic-password` may take (it cannot prompt: stdin is closed and
/// a daemon has no UI, so it answers at once or hangs on something else).
const KEYCHAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Why `security find-generic-password` failed, from its exit status (the command's
/// `OSStatus` truncated to 8 bits: Apple `SecurityTool` `security.c` `main`) and its stderr
/// (never its stdout, where the password would be). Decided by the status, not the text:
/// some versions print nothing for a locked keychain.
pub fn keychain_failure(code: Option<i32>, stderr: &str) -> String {
    let why = match code {
        Some(36) => "exit 36, errSecInteractionNotAllowed: the keychain is locked and a daemon \
                     cannot ask for its password (a LaunchDaemon has no unlocked login \
                     keychain while nobody is logged in at the console); use token_file"
            .to_owned(),
        Some(44) => "exit 44, errSecItemNotFound: no such item in the keychains this process \
                     searches (a LaunchDaemon does not search the user's login keychain); \
                     use token_file"
            .to_owned(),
        Some(51) => "exit 51, errSecAuthFailed: access to the item was denied".to_owned(),
        Some(128) => "exit 128, errSecUserCanceled: access to the item was refused".to_owned(),
        Some(2) => "exit 2: security rejected its arguments".to_owned(),
        Some(n) => format!("exit {n}"),
        None => "killed by a signal".to_owned(),
    };
    match stderr.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) => {
            let line: String = line.chars().take(200).collect();
            format!("security {why}; it said: {line}")
        }
        None => format!("security {why}"),
    }
}

/// The secret `security find-generic-password … -w` printed, or why there is none.
fn keychain_answer(
    service: &str,
    account: &str,
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: &[u8],
) -> Result<Secret, SecretError> {
    let fail = |reason: String| SecretError::Keychain {
        service: service.to_owned(),
        account: account.to_owned(),
        reason,
    };
    if code != Some(0) {
        return Err(fail(keychain_failure(
            code,
            &String::from_utf8_lossy(stderr),
        )));
    }
    let value = String::from_utf8(stdout).map_err(|_| fail("not utf-8".to_owned()))?;
    let value = value.trim();
    if value.is_empty() {
        return Err(fail("empty item".to_owned()));
    }
    Ok(Secret::new(value))
}

fn keychain_command(program: &Path, service: &str, account: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.args(["find-generic-password", "-s", service, "-a", account, "-w"])
        .stdin(std::process::Stdio::null());
    cmd
}

/// Without macOS there is no `/usr/bin/security`; another program (a test's) may stand in.
fn keychain_supported(program: &Path) -> Result<(), SecretError> {
    if cfg!(target_os = "macos") || program != Path::new(DEFAULT_SECURITY) {
        Ok(())
    } else {
        Err(SecretError::KeychainUnsupported)
    }
}

/// Read a generic password with `security find-generic-password -s SERVICE -a ACCOUNT -w`
/// (`program`: normally [`DEFAULT_SECURITY`]). The value comes back on `security`'s stdout;
/// nothing secret is on its command line. Blocking; see [`TokenSource::load_async`].
pub fn read_keychain(program: &Path, service: &str, account: &str) -> Result<Secret, SecretError> {
    keychain_supported(program)?;
    let out = keychain_command(program, service, account)
        .output()
        .map_err(|e| SecretError::Keychain {
            service: service.to_owned(),
            account: account.to_owned(),
            reason: format!("cannot run {}: {e}", program.display()),
        })?;
    keychain_answer(service, account, out.status.code(), out.stdout, &out.stderr)
}

async fn read_keychain_async(
    program: &Path,
    service: &str,
    account: &str,
) -> Result<Secret, SecretError> {
    keychain_supported(program)?;
    let fail = |reason: String| SecretError::Keychain {
        service: service.to_owned(),
        account: account.to_owned(),
        reason,
    };
    let mut cmd = tokio::process::Command::from(keychain_command(program, service, account));
    cmd.kill_on_drop(true);
    match tokio::time::timeout(KEYCHAIN_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) => {
            keychain_answer(service, account, out.status.code(), out.stdout, &out.stderr)
        }
        Ok(Err(e)) => Err(fail(format!("cannot run {}: {e}", program.display()))),
        Err(_) => Err(fail(format!(
            "{} did not answer within {KEYCHAIN_TIMEOUT:?}",
            program.display()
        ))),
    }
}

fn default_security() -> PathBuf {
    PathBuf::from(DEFAULT_SECURITY)
}

/// Where a token comes from (config: `token_file = "…"` or `token_keychain = { service,
/// account }`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum TokenSource {
    /// A file with mode 0600.
    File(PathBuf),
    /// A Keychain generic password (macOS; not readable from a LaunchDaemon while nobody is
    /// logged in at the console: prefer a file for the daemon).
    Keychain {
        /// Service name (`-s`).
        service: String,
        /// Account name (`-a`).
        account: String,
        /// The `security(1)` program.
        #[serde(default = "default_security")]
        security: PathBuf,
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
                security: k.security.clone().unwrap_or_else(default_security),
            }),
            _ => Err(format!(
                "set exactly one of {section}.token_file and {section}.token_keychain"
            )),
        }
    }

    /// Load the secret (blocking).
    pub fn load(&self) -> Result<Secret, SecretError> {
        match self {
            TokenSource::File(p) => read_secret_file(p),
            TokenSource::Keychain {
                service,
                account,
                security,
            } => read_keychain(security, service, account),
        }
    }

    /// Load the secret without blocking the runtime; a Keychain lookup is bounded in time.
    pub async fn load_async(&self) -> Result<Secret, SecretError> {
        match self {
            TokenSource::File(p) => {
                let path = p.clone();
                match tokio::task::spawn_blocking(move || read_secret_file(&path)).await {
                    Ok(result) => result,
                    Err(err) => Err(SecretError::Read {
                        path: p.clone(),
                        source: std::io::Error::other(err.to_string()),
                    }),
                }
            }
            TokenSource::Keychain {
                service,
                account,
                security,
            } => read_keychain_async(security, service, account).await,
        }
    }

    /// Where the token is read from, for messages (`file /path`, `keychain service/account`).
    pub fn describe(&self) -> String {
        match self {
            TokenSource::File(p) => format!("file {}", p.display()),
            TokenSource::Keychain {
                service, account, ..
            } => format!("keychain item {service}/{account}"),
        }
    }
}

/// The token was not available when a request needed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token from {source_name} unavailable: {reason}")]
pub struct TokenUnavailable {
    /// Where it is read from ([`TokenSource::describe`]).
    pub source_name: String,
    /// Why the last try failed.
    pub reason: String,
}

/// What a [`TokenCell`] reports for `status` and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStatus {
    /// A token is loaded.
    pub available: bool,
    /// Why not (empty when available).
    pub reason: String,
    /// Since when (unix ms) the current state holds.
    pub since_ms: u64,
    /// When the next try is due (unix ms; 0 when available).
    pub next_try_ms: u64,
}

/// The wait before try `failures + 1` after `failures` failed ones: 2 s, doubling, at most
/// 5 min — quick to pick up a fix made right after start-up, cheap when nobody comes.
pub fn retry_delay(failures: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(2);
    const LONGEST: Duration = Duration::from_secs(300);
    FIRST
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(LONGEST)
}

#[derive(Debug, Clone)]
struct Failure {
    reason: String,
    since_ms: u64,
    failures: u32,
    next_try_ms: u64,
}

#[derive(Debug, Default)]
struct CellState {
    token: Option<Secret>,
    /// Set while no token is loaded.
    failure: Option<Failure>,
    /// Since when the token is loaded (unix ms).
    loaded_ms: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A token shared by the clients that send it, loaded from its [`TokenSource`] at start-up
/// and, while that fails, again with back-off ([`TokenCell::retry`]): a source that cannot be
/// read (a locked Keychain, a file with the wrong mode) leaves the daemon running with its CI
/// side unavailable — exiting would only make launchd restart it into the same failure —
/// and a fixed source is picked up without a restart.
///
/// Once loaded, the token is kept: a later failed reload (SIGHUP) is logged and the token in
/// use stays.
pub struct TokenCell {
    /// None: a fixed token (tests, or built from an already loaded secret).
    source: Option<TokenSource>,
    state: Mutex<CellState>,
    /// Rung to make [`TokenCell::retry`] try at once (a reload).
    kick: tokio::sync::Notify,
}

impl fmt::Debug for TokenCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCell")
            .field("source", &self.source)
            .field("available", &self.status().available)
            .finish_non_exhaustive()
    }
}

impl TokenCell {
    /// A cell holding `token` for good.
    pub fn fixed(token: Secret) -> Arc<Self> {
        Arc::new(Self {
            source: None,
            state: Mutex::new(CellState {
                token: Some(token),
                failure: None,
                loaded_ms: unix_ms(),
            }),
            kick: tokio::sync::Notify::new(),
        })
    }

    /// A cell for `source`, tried once now.
    pub async fn load(source: TokenSource) -> Arc<Self> {
        let cell = Arc::new(Self {
            source: Some(source),
            state: Mutex::new(CellState::default()),
            kick: tokio::sync::Notify::new(),
        });
        cell.refresh().await;
        cell
    }

    fn lock(&self) -> MutexGuard<'_, CellState> {
        // Plain data, never left half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The source (None for a fixed token).
    pub fn source(&self) -> Option<&TokenSource> {
        self.source.as_ref()
    }

    /// The token, or why there is none.
    pub fn token(&self) -> Result<Secret, TokenUnavailable> {
        let state = self.lock();
        match (&state.token, &state.failure) {
            (Some(token), _) => Ok(token.clone()),
            (None, failure) => Err(TokenUnavailable {
                source_name: self
                    .source
                    .as_ref()
                    .map_or_else(|| "config".to_owned(), TokenSource::describe),
                reason: failure
                    .as_ref()
                    .map_or_else(|| "not loaded yet".to_owned(), |f| f.reason.clone()),
            }),
        }
    }

    /// For `status` and the metrics.
    pub fn status(&self) -> TokenStatus {
        let state = self.lock();
        match (&state.token, &state.failure) {
            (Some(_), _) => TokenStatus {
                available: true,
                reason: String::new(),
                since_ms: state.loaded_ms,
                next_try_ms: 0,
            },
            (None, Some(f)) => TokenStatus {
                available: false,
                reason: f.reason.clone(),
                since_ms: f.since_ms,
                next_try_ms: f.next_try_ms,
            },
            (None, None) => TokenStatus {
                available: false,
                reason: "not loaded yet".into(),
                since_ms: 0,
                next_try_ms: 0,
            },
        }
    }

    /// Read the source now; whether a token is loaded afterwards.
    pub async fn refresh(&self) -> bool {
        let Some(source) = &self.source else {
            return true;
        };
        let result = source.load_async().await;
        let now = unix_ms();
        let mut state = self.lock();
        match result {
            Ok(token) => {
                if state.token.is_none() {
                    tracing::info!(source = %source.describe(), "token loaded");
                    state.loaded_ms = now;
                } else if state.token.as_ref() != Some(&token) {
                    tracing::info!(source = %source.describe(), "token re-read: changed");
                    state.loaded_ms = now;
                }
                state.token = Some(token);
                state.failure = None;
                true
            }
            Err(err) if state.token.is_some() => {
                tracing::warn!(
                    source = %source.describe(),
                    error = %crate::chain::ErrorChain(&err),
                    "token source unreadable; keeping the token loaded before"
                );
                true
            }
            Err(err) => {
                let reason = crate::chain::ErrorChain(&err).to_string();
                let failures = state.failure.as_ref().map_or(0, |f| f.failures) + 1;
                let wait = retry_delay(failures);
                let since_ms = state.failure.as_ref().map_or(now, |f| f.since_ms);
                let next_try_ms =
                    now.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
                tracing::error!(
                    source = %source.describe(),
                    error = %reason,
                    failures,
                    retry_in = %humantime::format_duration(wait),
                    "token unavailable: CI requests wait for it; retrying"
                );
                state.failure = Some(Failure {
                    reason,
                    since_ms,
                    failures,
                    next_try_ms,
                });
                false
            }
        }
    }

    /// Try again now (a reload), from [`TokenCell::retry`]'s task.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Until `stop`: while no token is loaded, read the source again after each
    /// [`retry_delay`]; at a [`TokenCell::kick`], at once (loaded or not).
    pub async fn retry(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        if self.source.is_none() {
            return;
        }
        loop {
            let wait = self
                .lock()
                .failure
                .as_ref()
                .map(|f| Duration::from_millis(f.next_try_ms.saturating_sub(unix_ms())));
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.kick.notified() => {}
                () = tokio::time::sleep(wait.unwrap_or(Duration::MAX)), if wait.is_some() => {}
            }
            self.refresh().await;
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

    #[test]
    fn keychain_failures_are_named_by_exit_status_and_point_at_token_file() {
        let locked = keychain_failure(Some(36), "");
        assert!(locked.contains("exit 36"), "{locked}");
        assert!(
            locked.contains("locked") && locked.contains("token_file"),
            "{locked}"
        );
        let missing = keychain_failure(
            Some(44),
            "security: SecKeychainSearchCopyNext: The specified item could not be found in \
             the keychain.\n",
        );
        assert!(missing.contains("errSecItemNotFound"), "{missing}");
        assert!(
            missing.contains("it said: security: SecKeychainSearchCopyNext"),
            "{missing}"
        );
        assert!(keychain_failure(Some(7), "").contains("exit 7"));
        assert!(keychain_failure(None, "").contains("signal"));
    }

    /// A `security` stand-in: prints `out` and exits `code`.
    fn fake_security(dir: &Path, code: i32, out: &str) -> PathBuf {
        let p = dir.join(format!("security-{code}"));
        std::fs::write(
            &p,
            format!("#!/bin/sh\nprintf '%s' '{out}'\necho 'stderr line' >&2\nexit {code}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn keychain_reads_stdout_and_reports_the_status_without_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let ok = fake_security(dir.path(), 0, "ghp_fromkeychain\n");
        assert_eq!(
            read_keychain(&ok, "s", "a").unwrap().expose(),
            "ghp_fromkeychain"
        );
        // A non-zero exit: the status decides, even with something on stdout.
        let locked = fake_security(dir.path(), 36, "ghp_partial");
        let err = read_keychain(&locked, "s", "a").unwrap_err().to_string();
        assert!(
            err.contains("exit 36") && err.contains("it said: stderr line"),
            "{err}"
        );
        assert!(!err.contains("ghp_partial"), "{err}");
        let missing = dir.path().join("nope");
        let err = read_keychain(&missing, "s", "a").unwrap_err().to_string();
        assert!(err.contains("cannot run"), "{err}");
        if !cfg!(target_os = "macos") {
            assert!(matches!(
                read_keychain(Path::new(DEFAULT_SECURITY), "s", "a"),
                Err(SecretError::KeychainUnsupported)
            ));
        }
    }

    #[test]
    fn retries_start_quick_and_back_off_to_five_minutes() {
        let secs: Vec<u64> = (1..=10).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(300));
    }

    #[tokio::test]
    async fn a_cell_reports_why_retries_and_keeps_a_loaded_token() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "ghp_cell\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cell = TokenCell::load(TokenSource::File(p.clone())).await;
        let status = cell.status();
        assert!(!status.available);
        assert!(status.reason.contains("chmod 600"), "{status:?}");
        assert!(status.next_try_ms > status.since_ms, "{status:?}");
        let err = cell.token().unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(!format!("{cell:?}").contains("ghp_cell"));
        // The second failure keeps the first one's time and waits longer.
        assert!(!cell.refresh().await);
        let again = cell.status();
        assert_eq!(again.since_ms, status.since_ms);
        assert!(
            again.next_try_ms - unix_ms() > 3_000,
            "second retry in about 4 s: {again:?}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(cell.refresh().await);
        assert_eq!(cell.token().unwrap().expose(), "ghp_cell");
        assert!(cell.status().available);
        // A source broken later does not take the loaded token away.
        std::fs::remove_file(&p).unwrap();
        assert!(cell.refresh().await);
        assert_eq!(cell.token().unwrap().expose(), "ghp_cell");
    }

    #[tokio::test]
    async fn the_retry_task_picks_up_a_fixed_source_and_a_kick() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        let cell = TokenCell::load(TokenSource::File(p.clone())).await;
        assert!(!cell.status().available);
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(Arc::clone(&cell).retry(stop.clone()));
        std::fs::write(&p, "ghp_later\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Without waiting out the back-off: a kick tries at once.
        cell.kick();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !cell.status().available && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(cell.token().unwrap().expose(), "ghp_later");
        stop.cancel();
        task.await.unwrap();
    }
}
