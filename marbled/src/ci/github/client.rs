//! GitHub REST client for self-hosted runners (`reference/ci-apis.md` §1): mint JIT runner
//! configs, list/get/delete runners, with API-version pinning, rate-limit accounting, ETag
//! caching of listings, and errors that name the missing permission.
//!
//! Owns: the wire shapes of the runner endpoints and the mapping of status codes to typed
//! outcomes. It does not decide when to mint or delete (see [`super::runner`] and the
//! daemon's jobs). The token (a personal one, or a GitHub App's installation token:
//! [`Credentials`]) lives in a [`Secret`] and is only ever put in the `Authorization`
//! header; nothing here logs headers or bodies of requests. A 401 to an App's installation
//! token is retried once with a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::token::Credentials;
use super::types::{
    CachedPage, DeleteOutcome, GitHubConfig, GitHubError, JitConfig, RateLimit, Runner, RunnerScope,
};
use crate::ci::http::{HttpClient, HttpResponse};
use crate::ci::secret::{Secret, TokenCell, TokenStatus};

/// API version sent in `X-GitHub-Api-Version` (§1.1: supported until at least 2028-03).
pub const API_VERSION: &str = "2022-11-28";
/// Media type sent in `Accept`.
pub const ACCEPT: &str = "application/vnd.github+json";
/// Page size of listings (GitHub's maximum).
pub const PER_PAGE: u32 = 100;
/// Most cached conditional-request answers kept (see [`GitHubClient::get_cached`]).
const MAX_ETAGS: usize = 1024;
/// Most pages followed in one listing (10 000 runners): a guard against a `Link` loop.
const MAX_PAGES: usize = 100;

#[derive(Deserialize)]
struct RunnerList {
    #[serde(default)]
    runners: Vec<Runner>,
}

#[derive(Deserialize)]
struct JitResponse {
    runner: Runner,
    encoded_jit_config: String,
}

#[derive(Serialize)]
struct JitRequest<'a> {
    name: &'a str,
    runner_group_id: u64,
    labels: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    work_folder: Option<&'a str>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

pub(super) fn message_of(resp: &HttpResponse) -> String {
    serde_json::from_slice::<ErrorBody>(&resp.body)
        .map(|b| b.message)
        .unwrap_or_else(|_| resp.body_excerpt(200))
}

fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Debug, Default)]
struct Shared {
    rate: RateLimit,
    /// URL → (ETag, body) of the last 200 answer, for conditional requests.
    etags: HashMap<String, (String, Bytes)>,
}

/// The GitHub client. Cheap to share behind an `Arc`; internal state is a tiny leaf cache.
pub struct GitHubClient {
    http: HttpClient,
    api_url: String,
    scope: RunnerScope,
    credentials: Credentials,
    shared: Mutex<Shared>,
}

impl std::fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubClient")
            .field("api_url", &self.api_url)
            .field("scope", &self.scope)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl GitHubClient {
    /// Build from config with `credentials` (a token loaded, or retried until it is, or a
    /// GitHub App: requests fail with [`GitHubError::Token`] while there is no token).
    pub fn from_config(cfg: &GitHubConfig, credentials: Credentials) -> Result<Self, GitHubError> {
        cfg.scope.validate().map_err(GitHubError::Config)?;
        Ok(Self::with_credentials(
            &cfg.api_url,
            cfg.scope.clone(),
            credentials,
            cfg.request_timeout,
        ))
    }

    /// Build with an already loaded token.
    pub fn new(api_url: &str, scope: RunnerScope, token: Secret, timeout: Duration) -> Self {
        Self::with_token(api_url, scope, TokenCell::fixed(token), timeout)
    }

    /// Build with the token a [`TokenCell`] holds.
    pub fn with_token(
        api_url: &str,
        scope: RunnerScope,
        token: Arc<TokenCell>,
        timeout: Duration,
    ) -> Self {
        Self::with_credentials(api_url, scope, Credentials::Token(token), timeout)
    }

    /// Build with a token or a GitHub App.
    pub fn with_credentials(
        api_url: &str,
        scope: RunnerScope,
        credentials: Credentials,
        timeout: Duration,
    ) -> Self {
        Self {
            http: HttpClient::new(timeout),
            api_url: api_url.trim_end_matches('/').to_owned(),
            scope,
            credentials,
            shared: Mutex::new(Shared::default()),
        }
    }

    /// A client with `token` whose requests `local` answers instead of the network (the
    /// simulator's GitHub): everything above the socket is the daemon's own code.
    pub fn with_transport(
        api_url: &str,
        scope: RunnerScope,
        token: Secret,
        local: Arc<dyn crate::ci::http::Transport>,
    ) -> Self {
        let timeout = Duration::from_secs(30);
        Self {
            http: HttpClient::with_transport(timeout, local),
            ..Self::with_token(api_url, scope, TokenCell::fixed(token), timeout)
        }
    }

    /// Whether the token is loaded, and why not.
    pub fn token_status(&self) -> TokenStatus {
        self.credentials.status()
    }

    /// The scope.
    pub fn scope(&self) -> &RunnerScope {
        &self.scope
    }

    /// The rate-limit state last seen.
    pub fn rate_limit(&self) -> RateLimit {
        self.lock().rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A poisoned cache only means a panic elsewhere mid-update of plain data.
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuse early when GitHub told us to wait.
    fn check_budget(&self, op: &'static str) -> Result<(), GitHubError> {
        let rate = self.lock().rate;
        let now = now_epoch();
        if let Some(until) = rate.retry_after_until.filter(|u| *u > now) {
            return Err(GitHubError::RateLimited {
                op,
                retry_in: Duration::from_secs(until - now),
            });
        }
        if rate.remaining == Some(0)
            && let Some(reset) = rate.reset_epoch.filter(|r| *r > now)
        {
            return Err(GitHubError::RateLimited {
                op,
                retry_in: Duration::from_secs(reset - now),
            });
        }
        Ok(())
    }

    fn record_rate(&self, resp: &HttpResponse) {
        let num = |h: &str| resp.header(h).and_then(|v| v.trim().parse::<u64>().ok());
        let remaining = num("x-ratelimit-remaining");
        let reset = num("x-ratelimit-reset");
        let retry_after = num("retry-after");
        let mut g = self.lock();
        if resp.status != StatusCode::NOT_MODIFIED {
            g.rate.counted += 1;
        }
        if remaining.is_some() {
            g.rate.remaining = remaining;
        }
        if reset.is_some() {
            g.rate.reset_epoch = reset;
        }
        if let Some(secs) = retry_after {
            g.rate.retry_after_until = Some(now_epoch() + secs);
        }
    }

    async fn request(
        &self,
        op: &'static str,
        method: Method,
        url: &str,
        body: Option<Bytes>,
        etag: Option<&str>,
    ) -> Result<HttpResponse, GitHubError> {
        let token = self.token().await?;
        self.check_budget(op)?;
        let resp = self
            .send(op, method.clone(), url, body.clone(), etag, &token)
            .await?;
        if resp.status == StatusCode::UNAUTHORIZED && self.credentials.refused(&token) {
            // An installation token GitHub no longer takes (revoked, or expired early by its
            // clock): once more with a new one; a second 401 is the caller's error.
            let token = self.token().await?;
            return self.send(op, method, url, body, etag, &token).await;
        }
        Ok(resp)
    }

    async fn token(&self) -> Result<Secret, GitHubError> {
        self.credentials
            .token(&self.http, &self.api_url, &self.scope)
            .await
            .map_err(GitHubError::Token)
    }

    /// One request with `token`, its rate-limit headers recorded.
    async fn send(
        &self,
        op: &'static str,
        method: Method,
        url: &str,
        body: Option<Bytes>,
        etag: Option<&str>,
        token: &Secret,
    ) -> Result<HttpResponse, GitHubError> {
        let auth = format!("Bearer {}", token.expose());
        let mut headers: Vec<(&str, &str)> = vec![
            ("accept", ACCEPT),
            ("x-github-api-version", API_VERSION),
            ("user-agent", "marbled"),
            ("authorization", auth.as_str()),
        ];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        if let Some(e) = etag {
            headers.push(("if-none-match", e));
        }
        let resp = self
            .http
            .send(method.clone(), url, &headers, body)
            .await
            .map_err(|source| GitHubError::Http { op, source })?;
        self.record_rate(&resp);
        tracing::debug!(op, %method, url, status = resp.status.as_u16(), "github api call");
        Ok(resp)
    }

    /// Map the statuses shared by all operations (401, 403, 429) to errors.
    fn common_error(&self, op: &'static str, write: bool, resp: &HttpResponse) -> GitHubError {
        let message = message_of(resp);
        let status = resp.status;
        let rate_exhausted = resp.header("x-ratelimit-remaining") == Some("0");
        if status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::FORBIDDEN
                && (rate_exhausted || resp.header("retry-after").is_some()))
        {
            let now = now_epoch();
            let secs = resp
                .header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .or_else(|| {
                    resp.header("x-ratelimit-reset")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|r| r.saturating_sub(now))
                })
                // Secondary limits without headers: GitHub says wait at least a minute.
                .unwrap_or(60);
            return GitHubError::RateLimited {
                op,
                retry_in: Duration::from_secs(secs),
            };
        }
        match status {
            StatusCode::UNAUTHORIZED => GitHubError::Unauthorized { op, message },
            StatusCode::FORBIDDEN => GitHubError::Forbidden {
                op,
                needed: self.scope.permission(write),
                accepted: resp
                    .header("x-accepted-github-permissions")
                    .map(str::to_owned),
                message,
            },
            StatusCode::NOT_FOUND => GitHubError::NotFound { op, message },
            s => GitHubError::Unexpected {
                op,
                status: s.as_u16(),
                message,
            },
        }
    }

    /// `POST …/actions/runners/generate-jitconfig`: register a JIT runner and return its id
    /// and the encoded config. `labels` must hold every label jobs ask for (§1.4 caveat).
    pub async fn generate_jitconfig(
        &self,
        name: &str,
        labels: &[String],
        runner_group_id: u64,
        work_folder: Option<&str>,
    ) -> Result<JitConfig, GitHubError> {
        const OP: &str = "generate-jitconfig";
        let url = format!(
            "{}{}/generate-jitconfig",
            self.api_url,
            self.scope.runners_path()
        );
        let body = serde_json::to_vec(&JitRequest {
            name,
            runner_group_id,
            labels,
            work_folder,
        })
        .map_err(|source| GitHubError::Decode { op: OP, source })?;
        let resp = self
            .request(OP, Method::POST, &url, Some(Bytes::from(body)), None)
            .await?;
        match resp.status {
            StatusCode::CREATED | StatusCode::OK => {
                let parsed: JitResponse = serde_json::from_slice(&resp.body)
                    .map_err(|source| GitHubError::Decode { op: OP, source })?;
                tracing::info!(runner_id = parsed.runner.id, runner = %parsed.runner.name, "minted jit runner config");
                Ok(JitConfig {
                    runner_id: parsed.runner.id,
                    runner_name: parsed.runner.name,
                    encoded_jit_config: Secret::new(parsed.encoded_jit_config),
                })
            }
            StatusCode::CONFLICT => Err(GitHubError::NameTaken {
                name: name.to_owned(),
            }),
            _ => Err(self.common_error(OP, true, &resp)),
        }
    }

    /// `GET …/actions/runners` (all pages, following `Link: rel="next"`), with conditional
    /// requests: an unchanged page answers 304 and costs no rate-limit quota.
    pub async fn list_runners(&self) -> Result<Vec<Runner>, GitHubError> {
        self.list_runners_query("").await
    }

    /// Runners whose name is `name` (`?name=`), e.g. to clean up after a 409.
    pub async fn find_runners_by_name(&self, name: &str) -> Result<Vec<Runner>, GitHubError> {
        let enc = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        let all = self.list_runners_query(&format!("&name={enc}")).await?;
        Ok(all.into_iter().filter(|r| r.name == name).collect())
    }

    async fn list_runners_query(&self, extra: &str) -> Result<Vec<Runner>, GitHubError> {
        const OP: &str = "list-runners";
        let mut url = format!(
            "{}{}?per_page={PER_PAGE}{extra}",
            self.api_url,
            self.scope.runners_path()
        );
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let cached = self.lock().etags.get(&url).cloned();
            let resp = self
                .request(
                    OP,
                    Method::GET,
                    &url,
                    None,
                    cached.as_ref().map(|c| c.0.as_str()),
                )
                .await?;
            let body = match resp.status {
                StatusCode::NOT_MODIFIED => match cached {
                    Some((_, body)) => body,
                    None => {
                        return Err(GitHubError::Unexpected {
                            op: OP,
                            status: 304,
                            message: "304 without a cached page".to_owned(),
                        });
                    }
                },
                StatusCode::OK => {
                    if let Some(etag) = resp.header("etag") {
                        self.lock()
                            .etags
                            .insert(url.clone(), (etag.to_owned(), resp.body.clone()));
                    }
                    resp.body.clone()
                }
                _ => return Err(self.common_error(OP, false, &resp)),
            };
            let page: RunnerList = serde_json::from_slice(&body)
                .map_err(|source| GitHubError::Decode { op: OP, source })?;
            out.extend(page.runners);
            match resp.header("link").and_then(next_link) {
                Some(next) => url = next,
                None => return Ok(out),
            }
        }
        Ok(out)
    }

    /// `GET {api_url}{path}` (path with its query, e.g. `/repos/o/r/actions/runs?…`) with
    /// the ETag cache: an unchanged answer is a 304 that costs no rate-limit quota and returns
    /// the cached body. One page; the caller bounds its own page sizes. Used by the demand
    /// source (`crate::demand::github`).
    pub async fn get_cached(&self, op: &'static str, path: &str) -> Result<Bytes, GitHubError> {
        Ok(self.get_cached_page(op, path).await?.body)
    }

    /// [`GitHubClient::get_cached`], also telling whether GitHub sent a new page (200) or
    /// confirmed the cached one (304).
    pub async fn get_cached_page(
        &self,
        op: &'static str,
        path: &str,
    ) -> Result<CachedPage, GitHubError> {
        let url = format!("{}{path}", self.api_url);
        let cached = self.lock().etags.get(&url).cloned();
        let resp = self
            .request(
                op,
                Method::GET,
                &url,
                None,
                cached.as_ref().map(|c| c.0.as_str()),
            )
            .await?;
        match resp.status {
            StatusCode::NOT_MODIFIED => match cached {
                Some((_, body)) => Ok(CachedPage {
                    body,
                    changed: false,
                }),
                None => Err(GitHubError::Unexpected {
                    op,
                    status: 304,
                    message: "304 without a cached page".to_owned(),
                }),
            },
            StatusCode::OK => {
                if let Some(etag) = resp.header("etag") {
                    let mut g = self.lock();
                    // One entry per polled URL (a job list per workflow run): bound the
                    // cache so days of runs do not grow it forever; a miss costs one request.
                    if g.etags.len() >= MAX_ETAGS {
                        g.etags.clear();
                    }
                    g.etags.insert(url, (etag.to_owned(), resp.body.clone()));
                }
                Ok(CachedPage {
                    body: resp.body,
                    changed: true,
                })
            }
            _ => Err(self.common_error(op, false, &resp)),
        }
    }

    /// `GET …/actions/runners/{id}`; `None` when the runner no longer exists (404).
    pub async fn get_runner(&self, runner_id: u64) -> Result<Option<Runner>, GitHubError> {
        const OP: &str = "get-runner";
        let url = format!("{}{}/{runner_id}", self.api_url, self.scope.runners_path());
        let resp = self.request(OP, Method::GET, &url, None, None).await?;
        match resp.status {
            StatusCode::OK => serde_json::from_slice(&resp.body)
                .map(Some)
                .map_err(|source| GitHubError::Decode { op: OP, source }),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.common_error(OP, false, &resp)),
        }
    }

    /// `DELETE …/actions/runners/{id}`: 204 → [`DeleteOutcome::Deleted`], 404 →
    /// [`DeleteOutcome::AlreadyGone`], 422 → [`DeleteOutcome::RunnerBusy`].
    pub async fn delete_runner(&self, runner_id: u64) -> Result<DeleteOutcome, GitHubError> {
        const OP: &str = "delete-runner";
        let url = format!("{}{}/{runner_id}", self.api_url, self.scope.runners_path());
        let resp = self.request(OP, Method::DELETE, &url, None, None).await?;
        match resp.status {
            StatusCode::NO_CONTENT | StatusCode::OK => {
                tracing::info!(runner_id, "deleted runner registration");
                Ok(DeleteOutcome::Deleted)
            }
            StatusCode::NOT_FOUND => Ok(DeleteOutcome::AlreadyGone),
            StatusCode::UNPROCESSABLE_ENTITY => Ok(DeleteOutcome::RunnerBusy {
                message: message_of(&resp),
            }),
            _ => Err(self.common_error(OP, true, &resp)),
        }
    }
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_is_parsed() {
        let h = "<https://api.github.com/x?page=2>; rel=\"next\", <https://api.github.com/x?page=5>; rel=\"last\"";
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://api.github.com/x?page=2")
        );
        assert_eq!(next_link("<https://a/x?page=1>; rel=\"prev\""), None);
    }
}
