//! The small HTTPS client shared by the GitHub and Jenkins clients: hyper-util's pooled
//! client over rustls (aws-lc provider, the OS's root certificates), one overall timeout per
//! request, and a cap on response bodies.
//!
//! Owns transport only: status codes are interpreted by the callers. URLs never carry
//! secrets (tokens travel in headers), so errors may name the URL.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Largest response body read (GitHub pages of 100 runners are ~100 KB).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

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
        source: http::Error,
    },
}

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

/// Pooled HTTP/1.1 client, `http://` and `https://`.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client whose every request (connect, send, read the whole body) is bounded by
    /// `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(b) => b,
            Err(e) => {
                // A host without a CA bundle can still talk plain http (tests, a Jenkins on
                // the LAN); https calls then fail with a certificate error naming the cause.
                tracing::warn!(error = %e, "no native root certificates; https will fail");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("invariant: the aws-lc provider supports the default protocol versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self { client, timeout }
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Send one request and read the whole response.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<HttpResponse, HttpError> {
        let mut builder = Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|source| HttpError::Build {
                method: method.clone(),
                url: url.to_owned(),
                source,
            })?;
        let transport = |source: Box<dyn std::error::Error + Send + Sync>| HttpError::Transport {
            method: method.clone(),
            url: url.to_owned(),
            source,
        };
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| transport(Box::new(e)))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(transport)?
                .to_bytes();
            Ok(HttpResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout {
                method,
                url: url.to_owned(),
                timeout: self.timeout,
            }),
        }
    }
}
