//! The small HTTPS client shared by the GitHub and Jenkins clients: `reqwest` over rustls
//! (aws-lc provider, the OS's root certificates), one overall timeout per attempt, a cap on
//! response bodies, and a bounded retry of transient failures (exponential backoff with
//! jitter, `backon`) that honours a short `Retry-After`.
//!
//! Owns transport only: status codes are interpreted by the callers, which see the last
//! attempt's answer. URLs never carry secrets (tokens travel in headers), so errors and the
//! retry log lines may name the URL; headers are never logged.
//!
//! What is retried, and why only that:
//! - a connection that could not be made (nothing was sent, so any method is safe);
//! - 502, 503, 504 and 429 answers to idempotent methods (GET, HEAD, PUT, DELETE), after
//!   `Retry-After` when the server sent one no longer than [`MAX_RETRY_AFTER`].
//!
//! Not retried: a timeout (the caller's budget is spent), a POST that reached the server (a
//! JIT registration or a Jenkins toggle must not happen twice), 403 with `Retry-After`
//! (GitHub's secondary limit: its minute-long wait is the caller's back-off, recorded by
//! [`super::github`]), and a `Retry-After` longer than [`MAX_RETRY_AFTER`] (returned as is).

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode};

/// Largest response body read (GitHub pages of 100 runners are ~100 KB).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Retries after the first attempt (so at most three requests per call).
pub const MAX_RETRIES: usize = 2;

/// First backoff delay (before jitter); doubles per retry.
const RETRY_MIN_DELAY: Duration = Duration::from_millis(250);

/// Largest backoff delay.
const RETRY_MAX_DELAY: Duration = Duration::from_secs(2);

/// Longest `Retry-After` waited for inside one call; a longer one is the caller's to honour
/// (its answer is returned), so a call never sleeps past its callers' own deadlines.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// A transport failure (no HTTP status was received, or the body could not be read).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No complete answer within the timeout.
    #[error("{method} {url} timed out after {timeout:?}")]
    Timeout {
        /// Method.
        method: Method,
        /// URL (never contains secrets).
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// Connection, TLS or protocol failure.
    #[error("{method} {url} failed")]
    Transport {
        /// Method.
        method: Method,
        /// URL.
        url: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request could not be built (bad URL or header value).
    #[error("invalid request {method} {url}")]
    Build {
        /// Method.
        method: Method,
        /// URL.
        url: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The body grew past [`MAX_BODY_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error("response body larger than {MAX_BODY_BYTES} bytes")]
pub struct BodyTooLarge;

/// A complete response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body (at most [`MAX_BODY_BYTES`]).
    pub body: Bytes,
}

impl HttpResponse {
    /// A header as a string, if present and ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as (lossy) text, truncated to `max` bytes, for error messages.
    pub fn body_excerpt(&self, max: usize) -> String {
        let end = self.body.len().min(max);
        String::from_utf8_lossy(&self.body[..end]).into_owned()
    }
}

/// One attempt's failure, as the retry loop sees it.
#[derive(Debug)]
enum Attempt {
    /// A transient answer worth another try; `after` is its `Retry-After`.
    Again {
        resp: HttpResponse,
        after: Option<Duration>,
    },
    /// A transport failure; `retry` when nothing reached the server.
    Failed { error: HttpError, retry: bool },
}

impl Attempt {
    fn retryable(&self) -> bool {
        match self {
            Attempt::Again { .. } => true,
            Attempt::Failed { retry, .. } => *retry,
        }
    }

    fn describe(&self) -> String {
        match self {
            Attempt::Again { resp, .. } => format!("status {}", resp.status.as_u16()),
            Attempt::Failed { error, .. } => crate::chain::ErrorChain(error).to_string(),
        }
    }
}

/// An in-process stand-in for the network: answers a request at once, from its own state.
/// marble-sim's GitHub implements it so the simulator drives the daemon's own GitHub client,
/// poller and pacing (`docs/SIMULATOR.md`, "Requests"); the daemon never sets one. It sees the
/// request exactly as it would go out (method, URL, headers, body) and answers with real
/// headers (`etag`, `x-ratelimit-*`); no retry loop runs around it.
pub trait Transport: Send + Sync {
    /// The answer to one request.
    fn exchange(
        &self,
        method: &Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse;
}

/// Pooled HTTP/1.1 client, `http://` and `https://`.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    timeout: Duration,
    /// When set, [`HttpClient::send`] asks it instead of the network (the simulator).
    local: Option<std::sync::Arc<dyn Transport>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// rustls on the aws-lc provider with the OS's root certificates. A host without a CA bundle
/// can still talk plain http (tests, a Jenkins on the LAN); https calls then fail with a
/// certificate error naming the cause.
fn tls_config() -> rustls::ClientConfig {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "could not load some native root certificates");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::warn!("no native root certificates; https will fail");
    }
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("invariant: the aws-lc provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

impl HttpClient {
    /// A client whose every attempt (connect, send, read the whole body) is bounded by
    /// `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config())
            .http1_only()
            // As before the switch to reqwest: no proxy from the environment, and a redirect
            // is an answer for the caller (a renamed repository's 301, Jenkins' 302 to its
            // login page), not followed with the credentials.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30))
            .build();
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                // Only a broken TLS backend setup gets here; fall back to the defaults (the
                // same rustls provider, compiled in) rather than refuse to start.
                tracing::warn!(error = %crate::chain::ErrorChain(&e), "http client setup failed; using defaults");
                reqwest::Client::new()
            }
        };
        Self {
            client,
            timeout,
            local: None,
        }
    }

    /// A client whose [`HttpClient::send`] is answered by `local` (marble-sim): the callers'
    /// code is the production path, only the socket is replaced.
    pub fn with_transport(timeout: Duration, local: std::sync::Arc<dyn Transport>) -> Self {
        Self {
            local: Some(local),
            ..Self::new(timeout)
        }
    }

    /// The per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Send one request and read the whole response, retrying transient failures (see the
    /// module doc). The answer is the last attempt's.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<HttpResponse, HttpError> {
        if let Some(local) = &self.local {
            return Ok(local.exchange(&method, url, headers, body.as_deref()));
        }
        let backoff = ExponentialBuilder::default()
            .with_min_delay(RETRY_MIN_DELAY)
            .with_max_delay(RETRY_MAX_DELAY)
            .with_max_times(MAX_RETRIES)
            .with_jitter();
        let result = (|| self.attempt(&method, url, headers, body.clone()))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(Attempt::retryable)
            .adjust(|a, next| match a {
                // Wait as long as asked (never less than the backoff) while retries remain.
                Attempt::Again {
                    after: Some(after), ..
                } => next.map(|d| d.max(*after)),
                _ => next,
            })
            .notify(|a, wait| {
                tracing::info!(%method, url, why = %a.describe(), ?wait, "retrying http request");
            })
            .await;
        match result {
            Ok(resp) | Err(Attempt::Again { resp, .. }) => Ok(resp),
            Err(Attempt::Failed { error, .. }) => Err(error),
        }
    }

    /// One attempt bounded by the timeout, classified for the retry loop.
    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<HttpResponse, Attempt> {
        let mut req = self.client.request(method.clone(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let req = req.build().map_err(|e| Attempt::Failed {
            error: HttpError::Build {
                method: method.clone(),
                url: url.to_owned(),
                source: Box::new(e.without_url()),
            },
            retry: false,
        })?;
        let resp = match tokio::time::timeout(self.timeout, self.exchange(req)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err((source, connect))) => {
                let error = HttpError::Transport {
                    method: method.clone(),
                    url: url.to_owned(),
                    source,
                };
                return Err(Attempt::Failed {
                    error,
                    retry: connect,
                });
            }
            Err(_) => {
                let error = HttpError::Timeout {
                    method: method.clone(),
                    url: url.to_owned(),
                    timeout: self.timeout,
                };
                return Err(Attempt::Failed {
                    error,
                    retry: false,
                });
            }
        };
        match transient(method, &resp) {
            Some(after) => Err(Attempt::Again { resp, after }),
            None => Ok(resp),
        }
    }

    /// Send and read the whole (capped) body. The error says whether the connection failed
    /// before anything was sent.
    async fn exchange(
        &self,
        req: reqwest::Request,
    ) -> Result<HttpResponse, (Box<dyn std::error::Error + Send + Sync>, bool)> {
        let mut resp = self.client.execute(req).await.map_err(|e| {
            let connect = e.is_connect();
            (Box::new(e.without_url()) as Box<_>, connect)
        })?;
        let status = resp.status();
        let headers = std::mem::take(resp.headers_mut());
        let mut body = BytesMut::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| (Box::new(e.without_url()) as Box<_>, false))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err((Box::new(BodyTooLarge), false));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body: body.freeze(),
        })
    }
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The transfer failed or took too long.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The server answered with something other than 200 (after redirects).
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The URL answered.
        url: String,
        /// Its status.
        status: u16,
    },
    /// More redirects than [`MAX_REDIRECTS`], or one without a usable `Location`.
    #[error("GET {url}: too many or bad redirects")]
    Redirects {
        /// The first URL.
        url: String,
    },
    /// The body is larger than the caller allows.
    #[error("GET {url}: larger than {max} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        max: u64,
    },
    /// Writing the file failed.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Redirects a download follows (GitHub's release assets answer with one, to their CDN).
pub const MAX_REDIRECTS: usize = 5;

impl HttpClient {
    /// `GET url` into the file `dest` (created or truncated), without credentials,
    /// following up to [`MAX_REDIRECTS`] redirects, at most `max` bytes, the whole transfer
    /// within `timeout`. Returns the byte count and the lower-case hex SHA-256 of the body,
    /// computed while it streams. Not retried: the caller decides.
    pub async fn download(
        &self,
        url: &str,
        dest: &std::path::Path,
        max: u64,
        timeout: Duration,
    ) -> Result<(u64, String), DownloadError> {
        let fut = self.download_inner(url, dest, max);
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(DownloadError::Http(HttpError::Timeout {
                method: Method::GET,
                url: url.to_owned(),
                timeout,
            })),
        }
    }

    async fn download_inner(
        &self,
        url: &str,
        dest: &std::path::Path,
        max: u64,
    ) -> Result<(u64, String), DownloadError> {
        use sha2::Digest as _;
        use tokio::io::AsyncWriteExt as _;
        let transport = |u: &str, e: reqwest::Error| {
            DownloadError::Http(HttpError::Transport {
                method: Method::GET,
                url: u.to_owned(),
                source: Box::new(e.without_url()),
            })
        };
        let mut current = url.to_owned();
        let mut resp = None;
        for _ in 0..=MAX_REDIRECTS {
            let r = self
                .client
                .get(&current)
                .header("user-agent", "marbled")
                .send()
                .await
                .map_err(|e| transport(&current, e))?;
            if !r.status().is_redirection() {
                resp = Some(r);
                break;
            }
            let next = r
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| r.url().join(l).ok())
                .ok_or_else(|| DownloadError::Redirects {
                    url: url.to_owned(),
                })?;
            current = next.to_string();
        }
        let mut resp = resp.ok_or_else(|| DownloadError::Redirects {
            url: url.to_owned(),
        })?;
        if resp.status() != StatusCode::OK {
            return Err(DownloadError::Status {
                url: current,
                status: resp.status().as_u16(),
            });
        }
        let write_err = |source| DownloadError::Write {
            path: dest.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(write_err)?;
        let mut hash = sha2::Sha256::new();
        let mut n: u64 = 0;
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(&current, e))? {
            n += chunk.len() as u64;
            if n > max {
                return Err(DownloadError::TooLarge { url: current, max });
            }
            hash.update(&chunk);
            file.write_all(&chunk).await.map_err(write_err)?;
        }
        file.sync_all().await.map_err(write_err)?;
        Ok((n, hex::encode(hash.finalize())))
    }
}

/// `Some(retry_after)` when `resp` is a transient answer worth another attempt of `method`.
fn transient(method: &Method, resp: &HttpResponse) -> Option<Option<Duration>> {
    let idempotent = matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE
    );
    let status = resp.status;
    let transient = matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    );
    if !idempotent || !transient {
        return None;
    }
    let after = resp
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match after {
        Some(a) if a > MAX_RETRY_AFTER => None,
        a => Some(a),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn resp(status: u16, retry_after: Option<&str>) -> HttpResponse {
        let mut headers = HeaderMap::new();
        if let Some(v) = retry_after {
            headers.insert("retry-after", v.parse().expect("header"));
        }
        HttpResponse {
            status: StatusCode::from_u16(status).expect("status"),
            headers,
            body: Bytes::new(),
        }
    }

    #[test]
    fn only_transient_answers_to_idempotent_methods_are_retried() {
        assert_eq!(transient(&Method::GET, &resp(503, None)), Some(None));
        assert_eq!(
            transient(&Method::DELETE, &resp(429, Some("2"))),
            Some(Some(Duration::from_secs(2)))
        );
        assert_eq!(transient(&Method::POST, &resp(503, None)), None);
        assert_eq!(transient(&Method::GET, &resp(500, None)), None);
        assert_eq!(transient(&Method::GET, &resp(403, Some("1"))), None);
        assert_eq!(transient(&Method::GET, &resp(429, Some("600"))), None);
    }

    /// A loopback server answering each connection with the next of `answers` (status,
    /// extra header line), counting the requests.
    async fn serve(answers: Vec<(u16, &'static str)>) -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/x", listener.local_addr().expect("addr"));
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&count);
        tokio::spawn(async move {
            for (status, extra) in answers {
                let (mut sock, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await.expect("read");
                seen.fetch_add(1, Ordering::SeqCst);
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n{extra}\r\nok"
                );
                sock.write_all(resp.as_bytes()).await.expect("write");
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn a_transient_answer_is_retried_and_the_last_answer_returned() {
        let (url, count) = serve(vec![(503, "retry-after: 0\r\n"), (502, ""), (200, "")]).await;
        let client = HttpClient::new(Duration::from_secs(5));
        let resp = client
            .send(Method::GET, &url, &[], None)
            .await
            .expect("send");
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(&resp.body[..], b"ok");
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_post_that_reached_the_server_is_not_retried() {
        let (url, count) = serve(vec![(503, ""), (200, "")]).await;
        let client = HttpClient::new(Duration::from_secs(5));
        let resp = client
            .send(Method::POST, &url, &[], Some(Bytes::from_static(b"{}")))
            .await
            .expect("send");
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}
