//! GitHub App authentication (`[github] app_id` + `app_key_file`): the installation token
//! the client sends instead of a personal token, minted with the App's JWT
//! ([`super::jwt`]) from `POST /app/installations/{id}/access_tokens` and kept until
//! shortly before it expires ([`refresh_at`]: 5 minutes ahead of GitHub's one hour). The
//! installation is `installation_id`, or asked of GitHub once (`GET /repos/{owner}/{repo}/
//! installation`, `GET /orgs/{org}/installation`).
//!
//! Owns the token's life: mint, cache, refresh, drop after a 401 ([`AppAuth::invalidate`];
//! the client retries that request once), and back off after a failed mint while a token
//! that has not expired yet stays in use. The private key is a secret loaded like a token
//! ([`TokenCell`]: 0600 file, retried while unreadable). Neither the key, the JWT nor an
//! installation token reaches a log line or an error: they travel as [`Secret`]s into the
//! `Authorization` header only.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::client::{ACCEPT, API_VERSION, message_of};
use super::jwt::{AppKey, AppKeyError};
use super::types::RunnerScope;
use crate::ci::http::{HttpClient, HttpError, HttpResponse};
use crate::ci::secret::{Secret, TokenCell, TokenStatus, TokenUnavailable, retry_delay};

/// How long before its expiry an installation token is replaced (GitHub's last one hour;
/// a request in flight or a clock a little off never meets an expired token).
pub const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);

/// When a token received at `received` that expires at `expires_at` is replaced:
/// [`REFRESH_AHEAD`] before it expires, or halfway through a lifetime shorter than twice
/// that (never a fresh mint for every request).
pub fn refresh_at(received: SystemTime, expires_at: SystemTime) -> SystemTime {
    let lifetime = expires_at.duration_since(received).unwrap_or_default();
    expires_at
        .checked_sub(REFRESH_AHEAD.min(lifetime / 2))
        .unwrap_or(received)
}

/// Why no installation token could be minted.
#[derive(Debug, thiserror::Error)]
pub enum AppAuthError {
    /// The key file holds no usable key.
    #[error("the App's private key (github.app_key_file) is unusable")]
    Key(#[source] AppKeyError),
    /// Transport failure.
    #[error("github {op} request failed")]
    Http {
        /// Operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: HttpError,
    },
    /// 401 to the JWT.
    #[error(
        "github refused the App's JWT for {op} (401: check github.app_id, that \
         github.app_key_file holds the App's current key, and the host's clock): {message}"
    )]
    JwtRejected {
        /// Operation.
        op: &'static str,
        /// GitHub's message.
        message: String,
    },
    /// 404: no such installation, or the App is not installed where the runners go.
    #[error(
        "github {op}: the App has no installation on {scope} (404; install the App there, or \
         check github.installation_id): {message}"
    )]
    NotInstalled {
        /// Operation.
        op: &'static str,
        /// Repository or organisation.
        scope: String,
        /// GitHub's message.
        message: String,
    },
    /// Any other status (403: the App lacks a permission, 422: …).
    #[error("github {op}: unexpected status {status}: {message}")]
    Unexpected {
        /// Operation.
        op: &'static str,
        /// Status.
        status: u16,
        /// GitHub's message.
        message: String,
    },
    /// The body did not parse.
    #[error("github {op}: malformed response")]
    Decode {
        /// Operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// `expires_at` is not a time.
    #[error("github {op}: expires_at {value:?} is not an RFC 3339 time")]
    ExpiresAt {
        /// Operation.
        op: &'static str,
        /// What GitHub sent.
        value: String,
    },
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
}

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: String,
}

/// An installation token and its times.
#[derive(Debug, Clone)]
struct Minted {
    token: Secret,
    expires_at: SystemTime,
    refresh_at: SystemTime,
    /// When it was minted (unix ms), for `status`.
    minted_ms: u64,
}

#[derive(Debug, Clone)]
struct Failure {
    reason: String,
    since_ms: u64,
    failures: u32,
    next_try: SystemTime,
}

#[derive(Debug, Default)]
struct State {
    minted: Option<Minted>,
    /// The configured installation, or the one GitHub named.
    installation_id: Option<u64>,
    /// Set while the last mint failed.
    failure: Option<Failure>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A GitHub App's credentials and the installation token minted with them. Shared by the
/// runner lifecycle and the demand poller (one token for both), and across config reloads
/// that keep the App.
pub struct AppAuth {
    app_id: u64,
    /// `[github] installation_id` (None: asked of GitHub).
    configured_installation: Option<u64>,
    /// The private key's PEM text, loaded and retried as a token is.
    key: Arc<TokenCell>,
    /// Tiny leaf state, never held across an await.
    state: Mutex<State>,
    /// One mint at a time: requests that find the token stale together wait for one mint.
    minting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for AppAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppAuth")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.configured_installation)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl AppAuth {
    /// App `app_id` with its key in `key`, for installation `installation_id` (None: ask).
    pub fn new(app_id: u64, installation_id: Option<u64>, key: Arc<TokenCell>) -> Self {
        Self {
            app_id,
            configured_installation: installation_id,
            key,
            state: Mutex::new(State {
                installation_id,
                ..State::default()
            }),
            minting: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether this is App `app_id` with installation `installation_id` (a reload keeps it).
    pub fn is(&self, app_id: u64, installation_id: Option<u64>) -> bool {
        self.app_id == app_id && self.configured_installation == installation_id
    }

    /// The private key's cell (its retry task, its source).
    pub fn key(&self) -> &Arc<TokenCell> {
        &self.key
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data, never left half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn describe(&self) -> String {
        format!("github app {}", self.app_id)
    }

    /// The cached token while it is not due for replacement.
    fn fresh(&self, now: SystemTime) -> Option<Secret> {
        let state = self.lock();
        let minted = state.minted.as_ref()?;
        (now < minted.refresh_at).then(|| minted.token.clone())
    }

    /// After a failed mint: the token minted before while it has not expired, else why not.
    fn fallback(&self, now: SystemTime, reason: String) -> Result<Secret, TokenUnavailable> {
        let state = self.lock();
        match state.minted.as_ref().filter(|m| now < m.expires_at) {
            Some(minted) => Ok(minted.token.clone()),
            None => Err(TokenUnavailable {
                source_name: self.describe(),
                reason,
            }),
        }
    }

    /// Forget `used` after GitHub answered 401 to it (revoked, or expired early): the next
    /// [`AppAuth::token`] mints another. A token minted since is kept.
    pub fn invalidate(&self, used: &Secret) {
        let mut state = self.lock();
        if state.minted.as_ref().is_some_and(|m| &m.token == used) {
            tracing::info!(
                app_id = self.app_id,
                "installation token refused (401); minting another"
            );
            state.minted = None;
        }
    }

    /// For `status` and the metrics: the key's state while it is not loaded, else whether a
    /// usable installation token is there (or none was needed yet).
    pub fn status(&self) -> TokenStatus {
        let key = self.key.status();
        if !key.available {
            return key;
        }
        let now = SystemTime::now();
        let state = self.lock();
        let usable = state.minted.as_ref().filter(|m| now < m.expires_at);
        match (usable, &state.failure) {
            (None, Some(f)) => TokenStatus {
                available: false,
                reason: f.reason.clone(),
                since_ms: f.since_ms,
                next_try_ms: unix_ms(f.next_try),
            },
            (Some(m), _) => TokenStatus {
                since_ms: m.minted_ms,
                ..key
            },
            (None, None) => key,
        }
    }

    /// An installation token for a request: the cached one, or a new one when it is due
    /// ([`refresh_at`]). After a failed mint the next try waits ([`retry_delay`]) and the old
    /// token serves until it expires.
    pub async fn token(
        &self,
        http: &HttpClient,
        api_url: &str,
        scope: &RunnerScope,
    ) -> Result<Secret, TokenUnavailable> {
        if let Some(token) = self.fresh(SystemTime::now()) {
            return Ok(token);
        }
        let _one_mint = self.minting.lock().await;
        let now = SystemTime::now();
        if let Some(token) = self.fresh(now) {
            return Ok(token);
        }
        let waiting = self.lock().failure.clone().filter(|f| now < f.next_try);
        if let Some(failure) = waiting {
            return self.fallback(now, failure.reason);
        }
        let pem = self.key.token()?;
        match self.mint(&pem, http, api_url, scope, now).await {
            Ok(minted) => {
                let token = minted.token.clone();
                let mut state = self.lock();
                state.minted = Some(minted);
                state.failure = None;
                Ok(token)
            }
            Err(err) => {
                let reason = crate::chain::ErrorChain(&err).to_string();
                self.record_failure(&err, &reason, now);
                self.fallback(now, reason)
            }
        }
    }

    fn record_failure(&self, err: &AppAuthError, reason: &str, now: SystemTime) {
        let mut state = self.lock();
        if matches!(err, AppAuthError::NotInstalled { .. }) {
            // A discovered installation may be gone (the App reinstalled): ask again.
            state.installation_id = self.configured_installation;
        }
        let failures = state.failure.as_ref().map_or(0, |f| f.failures) + 1;
        let wait = retry_delay(failures);
        let since_ms = state.failure.as_ref().map_or(unix_ms(now), |f| f.since_ms);
        tracing::error!(
            app_id = self.app_id,
            error = %reason,
            failures,
            retry_in = %humantime::format_duration(wait),
            "github app: no installation token; GitHub requests wait for it"
        );
        state.failure = Some(Failure {
            reason: reason.to_owned(),
            since_ms,
            failures,
            next_try: now + wait,
        });
    }

    /// Sign a JWT with the key, find the installation, and mint its token.
    async fn mint(
        &self,
        pem: &Secret,
        http: &HttpClient,
        api_url: &str,
        scope: &RunnerScope,
        now: SystemTime,
    ) -> Result<Minted, AppAuthError> {
        const OP: &str = "app-access-token";
        let jwt = AppKey::from_pem(pem)
            .and_then(|key| key.jwt(self.app_id, now))
            .map_err(AppAuthError::Key)?;
        let known = self.lock().installation_id;
        let installation = match known {
            Some(id) => id,
            None => {
                let id = discover(&jwt, http, api_url, scope).await?;
                tracing::info!(
                    app_id = self.app_id,
                    installation_id = id,
                    "github app installation found"
                );
                self.lock().installation_id = Some(id);
                id
            }
        };
        let url = format!("{api_url}/app/installations/{installation}/access_tokens");
        let resp = call(http, Method::POST, &url, &jwt, OP).await?;
        let answer: AccessToken = parse(OP, &resp, StatusCode::CREATED, scope)?;
        let expires_at = humantime::parse_rfc3339_weak(&answer.expires_at).map_err(|_| {
            AppAuthError::ExpiresAt {
                op: OP,
                value: answer.expires_at.clone(),
            }
        })?;
        let received = SystemTime::now();
        tracing::info!(
            app_id = self.app_id,
            installation_id = installation,
            expires_at = %answer.expires_at,
            "github app installation token minted"
        );
        Ok(Minted {
            token: Secret::new(answer.token),
            expires_at,
            refresh_at: refresh_at(received, expires_at),
            minted_ms: unix_ms(received),
        })
    }
}

/// `GET /repos/{owner}/{repo}/installation` or `/orgs/{org}/installation` with the JWT.
async fn discover(
    jwt: &Secret,
    http: &HttpClient,
    api_url: &str,
    scope: &RunnerScope,
) -> Result<u64, AppAuthError> {
    const OP: &str = "app-installation";
    let path = match scope {
        RunnerScope::Repo(r) => format!("/repos/{r}/installation"),
        RunnerScope::Org(o) => format!("/orgs/{o}/installation"),
    };
    let resp = call(http, Method::GET, &format!("{api_url}{path}"), jwt, OP).await?;
    parse::<Installation>(OP, &resp, StatusCode::OK, scope).map(|i| i.id)
}

/// One request authenticated with the App's JWT.
async fn call(
    http: &HttpClient,
    method: Method,
    url: &str,
    jwt: &Secret,
    op: &'static str,
) -> Result<HttpResponse, AppAuthError> {
    let auth = format!("Bearer {}", jwt.expose());
    let headers = [
        ("accept", ACCEPT),
        ("x-github-api-version", API_VERSION),
        ("user-agent", "marbled"),
        ("authorization", auth.as_str()),
    ];
    let resp = http
        .send(method.clone(), url, &headers, None)
        .await
        .map_err(|source| AppAuthError::Http { op, source })?;
    tracing::debug!(op, %method, url, status = resp.status.as_u16(), "github app call");
    Ok(resp)
}

/// The body of a `want` answer, or the error its status means.
fn parse<T: DeserializeOwned>(
    op: &'static str,
    resp: &HttpResponse,
    want: StatusCode,
    scope: &RunnerScope,
) -> Result<T, AppAuthError> {
    match resp.status {
        s if s == want => {
            serde_json::from_slice(&resp.body).map_err(|source| AppAuthError::Decode { op, source })
        }
        StatusCode::UNAUTHORIZED => Err(AppAuthError::JwtRejected {
            op,
            message: message_of(resp),
        }),
        StatusCode::NOT_FOUND => Err(AppAuthError::NotInstalled {
            op,
            scope: match scope {
                RunnerScope::Repo(r) => format!("repository {r}"),
                RunnerScope::Org(o) => format!("organization {o}"),
            },
            message: message_of(resp),
        }),
        s => Err(AppAuthError::Unexpected {
            op,
            status: s.as_u16(),
            message: message_of(resp),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn app_with(token: &str, received: SystemTime, lifetime: Duration) -> AppAuth {
        let app = AppAuth::new(1, Some(2), TokenCell::fixed(Secret::new("pem")));
        let expires_at = received + lifetime;
        app.lock().minted = Some(Minted {
            token: Secret::new(token),
            expires_at,
            refresh_at: refresh_at(received, expires_at),
            minted_ms: unix_ms(received),
        });
        app
    }

    #[test]
    fn an_hour_token_is_replaced_five_minutes_before_it_expires() {
        assert_eq!(refresh_at(at(0), at(3600)), at(3300));
        // Short lifetimes (the test server's): halfway, never at once.
        assert_eq!(refresh_at(at(0), at(6)), at(3));
        assert_eq!(refresh_at(at(0), at(600)), at(300));
        // Already expired by our clock: due now.
        assert_eq!(refresh_at(at(10), at(5)), at(5));
    }

    #[test]
    fn the_cached_token_serves_until_due_and_a_401_drops_only_it() {
        let app = app_with("ghs_first", at(0), HOUR);
        assert_eq!(app.fresh(at(0)).unwrap().expose(), "ghs_first");
        assert_eq!(app.fresh(at(3299)).unwrap().expose(), "ghs_first");
        assert!(app.fresh(at(3300)).is_none(), "due 5 min before expiry");
        // A 401 to another (older) token leaves this one.
        app.invalidate(&Secret::new("ghs_older"));
        assert!(app.fresh(at(1)).is_some());
        app.invalidate(&Secret::new("ghs_first"));
        assert!(app.fresh(at(1)).is_none());
    }

    #[test]
    fn after_a_failed_mint_the_old_token_serves_until_it_expires() {
        let app = app_with("ghs_old", at(0), HOUR);
        assert_eq!(
            app.fallback(at(3400), "down".into()).unwrap().expose(),
            "ghs_old"
        );
        let err = app.fallback(at(3600), "github down".into()).unwrap_err();
        assert_eq!(err.source_name, "github app 1");
        assert_eq!(err.reason, "github down");
        assert!(!format!("{app:?}").contains("ghs_old"));
    }

    #[test]
    fn status_reports_a_failed_mint_once_no_token_is_usable() {
        let app = app_with("ghs_old", SystemTime::now(), HOUR);
        assert!(app.status().available);
        let err = AppAuthError::JwtRejected {
            op: "app-access-token",
            message: "A JSON web token could not be decoded".into(),
        };
        let reason = crate::chain::ErrorChain(&err).to_string();
        app.record_failure(&err, &reason, SystemTime::now());
        assert!(app.status().available, "the old token still works");
        app.invalidate(&Secret::new("ghs_old"));
        let status = app.status();
        assert!(!status.available);
        assert!(status.reason.contains("github.app_id"), "{status:?}");
        assert!(status.next_try_ms > status.since_ms, "{status:?}");
    }
}
