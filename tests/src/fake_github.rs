//! A fake GitHub REST API for the runner endpoints (`reference/ci-apis.md` §1), served over
//! real HTTP/1.1 on 127.0.0.1 so the production client (hyper + rustls, plain http here)
//! is what tests exercise.
//!
//! Speaks the documented shapes: runner objects and `{total_count, runners}` listings with
//! `per_page`/`page` and a `Link: rel="next"` header, ETag/`If-None-Match` → 304, the JIT
//! response `{runner, encoded_jit_config}` (201), 409 on a duplicate name, 204/404/422 on
//! delete, 401/403 bodies with `documentation_url`, and `x-ratelimit-*` headers (403 with
//! remaining 0 when exhausted; a scripted `retry-after`). Workflow runs and their jobs
//! (`§3.1`: `actions/runs?status=`, `actions/runs/{id}/jobs`) for the demand source, with
//! ETags too; and the finished history `marble-sim import` reads (`actions/runs?created=`,
//! `per_page`/`page`, completed jobs with their conclusions). Every request is recorded (method,
//! path, headers without `authorization`, body, wall-clock ms, status) for ordering
//! assertions. With [`FakeGitHub::use_app`] it plays a GitHub App's installation instead of
//! taking a personal token (`crate::github_app`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::github_app::FakeApp;

/// Wall-clock milliseconds (same clock as the prlctl simulator's invocation log).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Wall-clock ms when it arrived.
    pub ts_ms: u64,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers (lower-case names) except `authorization` and `cookie`.
    pub headers: Vec<(String, String)>,
    /// Whether an `authorization` header was present.
    pub authorized: bool,
    /// Body text.
    pub body: String,
    /// The status the fake GitHub answered (0 from the fake Jenkins, which does not say).
    pub status: u16,
}

impl RecordedRequest {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response the handler builds.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(status: StatusCode, v: &Value) -> Self {
        Reply {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: serde_json::to_vec(v).unwrap_or_default(),
        }
    }
    pub(crate) fn empty(status: StatusCode) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

/// Serve `handler` on 127.0.0.1:0 until the returned task is aborted.
pub(crate) async fn serve<F>(handler: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(&Request<()>, &[u8]) -> Reply + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("fake server: bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("fake server: local addr");
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let head = Request::from_parts(parts, ());
                        let reply = handler(&head, &body);
                        let mut resp = Response::builder().status(reply.status);
                        for (k, v) in &reply.headers {
                            resp = resp.header(k.as_str(), v.as_str());
                        }
                        let resp = resp
                            .body(Full::new(Bytes::from(reply.body)))
                            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

pub(crate) fn record(req: &Request<()>, body: &[u8]) -> RecordedRequest {
    RecordedRequest {
        ts_ms: now_ms(),
        method: req.method().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        headers: req
            .headers()
            .iter()
            .filter(|(k, _)| *k != "authorization" && *k != "cookie")
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("<binary>").to_owned()))
            .collect(),
        authorized: req.headers().contains_key("authorization"),
        body: String::from_utf8_lossy(body).into_owned(),
        status: 0,
    }
}

/// A scripted authentication failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deny {
    /// 401 Bad credentials.
    Unauthorized,
    /// 403 Resource not accessible (missing permission).
    Forbidden,
}

#[derive(Debug, Default)]
struct State {
    token: String,
    runners: BTreeMap<u64, Value>,
    next_id: u64,
    issued_jit: Vec<String>,
    requests: Vec<RecordedRequest>,
    deny: Option<Deny>,
    rate_limit: u64,
    rate_remaining: u64,
    rate_reset: u64,
    retry_after: Option<u64>,
    /// Workflow runs: id → status (`queued`, `in_progress`, `completed`).
    runs: BTreeMap<u64, String>,
    /// Jobs: id → job object (with `run_id`).
    jobs: BTreeMap<u64, Value>,
    /// Workflow runs' `created_at`, for the `created=` filter of the history (`import`).
    run_created: BTreeMap<u64, String>,
    /// Label name (lower case) → label id, shared by every runner.
    label_ids: BTreeMap<String, u64>,
    /// `actions/runner` releases, newest first, as the REST API returns them.
    releases: Vec<Value>,
    /// Release assets by file name (served without credentials, as github.com does).
    assets: BTreeMap<String, Vec<u8>>,
    /// Asset downloads served (the CDN's 200s).
    downloads: u64,
    /// A GitHub App: only its installation tokens are taken (not `token`).
    app: Option<FakeApp>,
}

/// The fake server. Dropping it stops serving.
pub struct FakeGitHub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// GitHub's runner object (`reference/ci-apis.md` §1.5): `status` `online`/`offline`, `busy`,
/// and `labels` as `{id, name, type}` — the default labels `read-only`, the rest `custom`,
/// each label name with one id across runners, as GitHub keeps labels per scope.
fn runner_json(
    st: &mut State,
    id: u64,
    name: &str,
    labels: &[String],
    status: &str,
    busy: bool,
) -> Value {
    let labels: Vec<Value> = labels
        .iter()
        .map(|l| {
            let kind = if ["self-hosted", "macOS", "ARM64", "X64"].contains(&l.as_str()) {
                "read-only"
            } else {
                "custom"
            };
            let next = st.label_ids.len() as u64 + 1;
            let label_id = *st.label_ids.entry(l.to_ascii_lowercase()).or_insert(next);
            json!({"id": label_id, "name": l, "type": kind})
        })
        .collect();
    json!({"id": id, "name": name, "os": "macos", "status": status, "busy": busy,
           "runner_group_id": 1, "labels": labels})
}

fn error(status: StatusCode, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"message": message,
                "documentation_url": "https://docs.github.com/rest/actions/self-hosted-runners",
                "status": status.as_u16().to_string()}),
    )
}

fn etag_of(body: &[u8]) -> String {
    // FNV-1a: stable, no extra dependency.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("W/\"{h:016x}\"")
}

fn query(req: &Request<()>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.replace("%2D", "-").replace("%20", " "))
    })
}

/// Release asset downloads: `browser_download_url` (`/actions/runner/releases/download/vV/F`)
/// answers 302 to the CDN (`/cdn/F`), as github.com does; neither needs credentials (and the
/// daemon must send none: it is another host in real life).
fn route_download(st: &mut State, req: &Request<()>, base: &str) -> Option<Reply> {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/actions/runner/releases/download/") {
        let name = rest.rsplit('/').next().unwrap_or("");
        let mut r = Reply::empty(StatusCode::FOUND);
        r.headers
            .push(("location".into(), format!("{base}/cdn/{name}")));
        return Some(r);
    }
    let name = path.strip_prefix("/cdn/")?;
    Some(match st.assets.get(name) {
        Some(bytes) => {
            st.downloads += 1;
            Reply {
                status: StatusCode::OK,
                headers: vec![("content-type".into(), "application/octet-stream".into())],
                body: bytes.clone(),
            }
        }
        None => Reply::empty(StatusCode::NOT_FOUND),
    })
}

fn handle(st: &mut State, req: &Request<()>, body: &[u8], base: &str) -> Reply {
    st.requests.push(record(req, body));
    if let Some(reply) = route_download(st, req, base) {
        if let Some(last) = st.requests.last_mut() {
            last.status = reply.status.as_u16();
        }
        return reply;
    }
    let mut reply = route(st, req, body, base);
    if let Some(last) = st.requests.last_mut() {
        last.status = reply.status.as_u16();
    }
    if reply.status != StatusCode::UNAUTHORIZED {
        let used = st.rate_limit - st.rate_remaining;
        reply.headers.extend([
            ("x-ratelimit-limit".into(), st.rate_limit.to_string()),
            (
                "x-ratelimit-remaining".into(),
                st.rate_remaining.to_string(),
            ),
            ("x-ratelimit-used".into(), used.to_string()),
            ("x-ratelimit-reset".into(), st.rate_reset.to_string()),
            ("x-ratelimit-resource".into(), "core".into()),
        ]);
    }
    reply
        .headers
        .push(("x-github-api-version-selected".into(), "2022-11-28".into()));
    reply
}

fn route(st: &mut State, req: &Request<()>, body: &[u8], base: &str) -> Reply {
    let expected = format!("Bearer {}", st.token);
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let authorized = match st.app.as_mut() {
        Some(app) => {
            if let Some(reply) = app.route(req) {
                return reply;
            }
            app.accepts(req)
        }
        None => auth == Some(expected.as_str()),
    };
    if !authorized || st.deny == Some(Deny::Unauthorized) {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    if let Some(secs) = st.retry_after.take() {
        let mut r = error(
            StatusCode::FORBIDDEN,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        );
        r.headers.push(("retry-after".into(), secs.to_string()));
        return r;
    }
    if st.rate_remaining == 0 {
        return error(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for user ID 1.",
        );
    }
    let path = req.uri().path().to_owned();
    if path == "/repos/actions/runner/releases" && req.method() == http::Method::GET {
        let reply = conditional_json(req, &Value::Array(st.releases.clone()));
        if reply.status != StatusCode::NOT_MODIFIED {
            st.rate_remaining = st.rate_remaining.saturating_sub(1);
        }
        return reply;
    }
    if let Some(reply) = route_runs(st, req, &path) {
        if reply.status != StatusCode::NOT_MODIFIED {
            st.rate_remaining = st.rate_remaining.saturating_sub(1);
        }
        return reply;
    }
    let Some(idx) = path.find("/actions/runners") else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let write = req.method() != http::Method::GET;
    if st.deny == Some(Deny::Forbidden) {
        let mut r = error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by personal access token",
        );
        let perm = if write {
            "administration=write"
        } else {
            "administration=read"
        };
        r.headers
            .push(("x-accepted-github-permissions".into(), perm.into()));
        return r;
    }
    let rest = &path[idx + "/actions/runners".len()..];
    let reply = match (req.method().as_str(), rest) {
        ("POST", "/generate-jitconfig") => {
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
            };
            let name = v["name"].as_str().unwrap_or_default().to_owned();
            let labels: Vec<String> = v["labels"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|l| l.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if name.is_empty() || labels.is_empty() || v["runner_group_id"].as_u64().is_none() {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.");
            }
            if st.runners.values().any(|r| r["name"] == name.as_str()) {
                return error(
                    StatusCode::CONFLICT,
                    &format!("Already exists - A runner with the name {name} already exists."),
                );
            }
            st.next_id += 1;
            let id = st.next_id;
            // Registered, not yet connected: a JIT runner is offline until its listener
            // runs in the guest (`set_runner_status` plays that).
            let runner = runner_json(st, id, &name, &labels, "offline", false);
            st.runners.insert(id, runner.clone());
            let jit = format!(
                "eyJ.runner-{id}.{:016x}.SECRETJIT",
                now_ms().wrapping_mul(2_654_435_761)
            );
            st.issued_jit.push(jit.clone());
            Reply::json(
                StatusCode::CREATED,
                &json!({"runner": runner, "encoded_jit_config": jit}),
            )
        }
        ("GET", "") => {
            let per_page: usize = query(req, "per_page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(30)
                .clamp(1, 100);
            let page: usize = query(req, "page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1);
            let name = query(req, "name");
            let all: Vec<Value> = st
                .runners
                .values()
                .filter(|r| name.as_deref().is_none_or(|n| r["name"] == n))
                .cloned()
                .collect();
            let total = all.len();
            let items: Vec<Value> = all
                .into_iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .collect();
            let body = json!({"total_count": total, "runners": items});
            let mut r = conditional_json(req, &body);
            if r.status == StatusCode::NOT_MODIFIED {
                return r;
            }
            if page * per_page < total {
                let mut next = format!("{base}{path}?per_page={per_page}&page={}", page + 1);
                if let Some(n) = name {
                    next.push_str(&format!("&name={n}"));
                }
                r.headers
                    .push(("link".into(), format!("<{next}>; rel=\"next\"")));
            }
            r
        }
        (m, id) if id.starts_with('/') => {
            let Ok(id) = id[1..].parse::<u64>() else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            match (m, st.runners.get(&id).cloned()) {
                ("GET", Some(r)) => Reply::json(StatusCode::OK, &r),
                ("DELETE", Some(r)) if r["busy"] == true => error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Bad request - Runner \"x\" is still running a job\"",
                ),
                ("DELETE", Some(_)) => {
                    st.runners.remove(&id);
                    Reply::empty(StatusCode::NO_CONTENT)
                }
                (_, None) => error(StatusCode::NOT_FOUND, "Not Found"),
                _ => error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    };
    if reply.status != StatusCode::NOT_MODIFIED {
        st.rate_remaining = st.rate_remaining.saturating_sub(1);
    }
    reply
}

/// 200 with an ETag, or 304 when `If-None-Match` carries the same ETag.
fn conditional_json(req: &Request<()>, value: &Value) -> Reply {
    let payload = serde_json::to_vec(value).unwrap_or_default();
    let etag = etag_of(&payload);
    if req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        let mut r = Reply::empty(StatusCode::NOT_MODIFIED);
        r.headers.push(("etag".into(), etag));
        return r;
    }
    Reply {
        status: StatusCode::OK,
        headers: vec![
            (
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            ),
            ("etag".into(), etag),
        ],
        body: payload,
    }
}

/// `GET /repos/{o}/{r}/actions/runs?status=…` and `GET …/actions/runs/{id}/jobs` (§3.1 of
/// `reference/ci-apis.md`); `None` for other paths.
fn route_runs(st: &State, req: &Request<()>, path: &str) -> Option<Reply> {
    let idx = path.find("/actions/runs")?;
    if !path.starts_with("/repos/") || req.method() != http::Method::GET {
        return None;
    }
    let rest = &path[idx + "/actions/runs".len()..];
    if rest.is_empty() {
        let status = query(req, "status");
        let created = query(req, "created");
        let runs: Vec<Value> = st
            .runs
            .iter()
            .filter(|(_, s)| status.as_deref().is_none_or(|want| *s == want))
            .filter(|(id, _)| created_in(created.as_deref(), st.run_created.get(id)))
            .map(|(id, s)| {
                let mut run = json!({"id": id, "status": s, "name": "ROOT CI", "run_attempt": 1});
                if let Some(at) = st.run_created.get(id) {
                    run["created_at"] = json!(at);
                    run["event"] = json!("pull_request");
                }
                run
            })
            .collect();
        let total = runs.len();
        let runs = paginate(req, runs);
        return Some(conditional_json(
            req,
            &json!({"total_count": total, "workflow_runs": runs}),
        ));
    }
    let run: u64 = rest
        .strip_prefix('/')?
        .strip_suffix("/jobs")?
        .parse()
        .ok()?;
    if !st.runs.contains_key(&run) {
        return Some(error(StatusCode::NOT_FOUND, "Not Found"));
    }
    let jobs: Vec<Value> = st
        .jobs
        .values()
        .filter(|j| j["run_id"] == run)
        .cloned()
        .collect();
    let total = jobs.len();
    let jobs = paginate(req, jobs);
    Some(conditional_json(
        req,
        &json!({"total_count": total, "jobs": jobs}),
    ))
}

/// `created=A..B` (RFC 3339 UTC or dates, compared as text as they sort alike): whether a
/// run created at `at` matches; runs without a creation time match only without a filter.
fn created_in(filter: Option<&str>, at: Option<&String>) -> bool {
    let Some(filter) = filter else { return true };
    let Some(at) = at else { return false };
    let filter = filter.replace("%3A", ":");
    let (from, to) = filter.split_once("..").unwrap_or((&filter, &filter));
    // A bare date as the upper bound includes that whole day.
    let to = if to.len() == 10 {
        format!("{to}T23:59:59Z")
    } else {
        to.to_owned()
    };
    at.as_str() >= from && at.as_str() <= to.as_str()
}

/// One page of `items` by `per_page` (default 30, at most 100) and `page` (from 1), as
/// GitHub's listings.
fn paginate(req: &Request<()>, items: Vec<Value>) -> Vec<Value> {
    let per_page = query(req, "per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = query(req, "page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect()
}

impl FakeGitHub {
    /// Start a fake that accepts `Bearer <token>` (5000 requests/hour budget).
    pub async fn start(token: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            token: token.to_owned(),
            next_id: 4200,
            rate_limit: 5000,
            rate_remaining: 5000,
            rate_reset: now_ms() / 1000 + 3600,
            ..State::default()
        }));
        let st = state.clone();
        let base = Arc::new(Mutex::new(String::new()));
        let b2 = base.clone();
        let (addr, task) = serve(move |req, body| {
            let base = b2.lock().expect("fake github: base lock").clone();
            handle(
                &mut st.lock().expect("fake github: state lock"),
                req,
                body,
                &base,
            )
        })
        .await;
        *base.lock().expect("fake github: base lock") = format!("http://{addr}");
        FakeGitHub { addr, state, task }
    }

    /// [`FakeGitHub::start`] on a runtime of its own, for blocking tests; keep the runtime
    /// alive (and drop the fake first) while the fake serves.
    pub fn start_on_own_runtime(token: &str) -> (tokio::runtime::Runtime, Self) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("fake github: tokio runtime");
        let gh = rt.block_on(Self::start(token));
        (rt, gh)
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake github: state lock")
    }

    /// Publish an `actions/runner` release `version` (no `v`) at `published_at` (RFC 3339)
    /// whose notes give `sha256` as the osx-arm64 checksum, with `tarball` as its osx-arm64
    /// asset (`None`: listed, not downloadable). The list stays sorted newest first.
    pub fn add_runner_release(
        &self,
        version: &str,
        published_at: &str,
        sha256: &str,
        tarball: Option<Vec<u8>>,
    ) {
        let name = crate::runner_release::asset_name(version);
        let base = self.url();
        let mut st = self.st();
        let id = 1000 + st.releases.len() as u64;
        let asset = json!({
            "name": name, "size": tarball.as_ref().map_or(0, Vec::len),
            "content_type": "application/gzip",
            "browser_download_url": format!("{base}/actions/runner/releases/download/v{version}/{name}"),
        });
        st.releases.push(json!({
            "id": id, "tag_name": format!("v{version}"), "name": format!("v{version}"),
            "draft": false, "prerelease": false, "published_at": published_at,
            "body": crate::runner_release::release_body(version, sha256),
            "assets": [asset],
        }));
        st.releases
            .sort_by(|a, b| b["published_at"].as_str().cmp(&a["published_at"].as_str()));
        if let Some(t) = tarball {
            st.assets.insert(name, t);
        }
    }

    /// Package downloads served so far.
    pub fn runner_downloads(&self) -> u64 {
        self.st().downloads
    }

    /// Base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on play GitHub App `app`'s installation: its endpoints answer, and the
    /// others take only its live installation tokens.
    pub fn use_app(&self, app: FakeApp) {
        self.st().app = Some(app);
    }

    /// `f` of the App (panics without one).
    pub fn with_app<T>(&self, f: impl FnOnce(&mut FakeApp) -> T) -> T {
        f(self.st().app.as_mut().expect("fake github: use_app first"))
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.st().requests.clone()
    }

    /// Add a registered runner; returns its id.
    pub fn add_runner(&self, name: &str, status: &str, busy: bool) -> u64 {
        let mut st = self.st();
        st.next_id += 1;
        let id = st.next_id;
        let labels: Vec<String> = ["self-hosted", "macOS", "ARM64", "mac14"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let runner = runner_json(&mut st, id, name, &labels, status, busy);
        st.runners.insert(id, runner);
        id
    }

    /// Remove a registration, as an operator's `gh api -X DELETE …/runners/ID` does.
    pub fn remove_runner(&self, id: u64) {
        self.st().runners.remove(&id);
    }

    /// Mark a runner busy (a job running: delete answers 422) or idle.
    pub fn set_busy(&self, id: u64, busy: bool) {
        if let Some(r) = self.st().runners.get_mut(&id) {
            r["busy"] = json!(busy);
            r["status"] = json!("online");
        }
    }

    /// A runner's connection as GitHub shows it: `online` once its listener long-polls
    /// GitHub, `offline` before that and after it stopped (a crashed VM's runner stays
    /// registered offline until deleted, or for a day, 14 if not ephemeral).
    pub fn set_runner_status(&self, id: u64, status: &str) {
        if let Some(r) = self.st().runners.get_mut(&id) {
            r["status"] = json!(status);
        }
    }

    /// Registered runner names.
    pub fn runner_names(&self) -> Vec<String> {
        self.st()
            .runners
            .values()
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// A runner object, if registered.
    pub fn runner(&self, id: u64) -> Option<Value> {
        self.st().runners.get(&id).cloned()
    }

    /// Ids of registered runners.
    pub fn runner_ids(&self) -> Vec<u64> {
        self.st().runners.keys().copied().collect()
    }

    /// Every `encoded_jit_config` handed out.
    pub fn issued_jit(&self) -> Vec<String> {
        self.st().issued_jit.clone()
    }

    /// Script 401/403 answers (None: normal).
    pub fn set_deny(&self, deny: Option<Deny>) {
        self.st().deny = deny;
    }

    /// Set the rate-limit budget and its reset time (unix seconds).
    pub fn set_rate_limit(&self, remaining: u64, reset_epoch: u64) {
        let mut st = self.st();
        st.rate_remaining = remaining;
        st.rate_reset = reset_epoch;
    }

    /// The rate-limit budget left (304 answers do not spend it, as on GitHub).
    pub fn rate_remaining(&self) -> u64 {
        self.st().rate_remaining
    }

    /// Add (or update) a workflow run with `status` (`queued`, `in_progress`, `completed`).
    pub fn set_run(&self, run_id: u64, status: &str) {
        self.st().runs.insert(run_id, status.to_owned());
    }

    /// Add (or replace) a job of `run_id` with the documented job shape; `runner_*` are null
    /// unless the job is `in_progress` (then runner `mac-vm-a`, started when created).
    pub fn set_job(
        &self,
        run_id: u64,
        job_id: u64,
        status: &str,
        labels: &[&str],
        created_at: &str,
    ) {
        let runner = (status == "in_progress").then_some("mac-vm-a");
        self.put_job(
            run_id,
            job_id,
            status,
            labels,
            (created_at, created_at),
            runner,
        );
    }

    /// Job `job_id` of `run_id`, queued at `created_at`, taken by `runner` at `started_at`.
    pub fn start_job(
        &self,
        run_id: u64,
        job_id: u64,
        labels: &[&str],
        created_at: &str,
        started_at: &str,
        runner: &str,
    ) {
        let times = (created_at, started_at);
        self.put_job(run_id, job_id, "in_progress", labels, times, Some(runner));
    }

    fn put_job(
        &self,
        run_id: u64,
        job_id: u64,
        status: &str,
        labels: &[&str],
        (created_at, started_at): (&str, &str),
        runner: Option<&str>,
    ) {
        let on_runner = |v: Value| if runner.is_some() { v } else { Value::Null };
        let job = json!({
            "id": job_id, "run_id": run_id, "run_attempt": 1, "status": status,
            "conclusion": null, "name": format!("job {job_id}"), "workflow_name": "ROOT CI",
            "head_branch": "master", "labels": labels,
            "runner_id": on_runner(json!(39)),
            "runner_name": runner.map_or(Value::Null, |r| json!(r)),
            "runner_group_id": on_runner(json!(1)),
            "runner_group_name": on_runner(json!("Default")),
            "created_at": created_at, "started_at": started_at, "completed_at": null,
        });
        self.st().jobs.insert(job_id, job);
    }

    /// A finished workflow run of the history (`marble-sim import`): created at `created_at`,
    /// listed by `actions/runs?created=…`; add its jobs with [`FakeGitHub::finished_job`].
    pub fn history_run(&self, run_id: u64, created_at: &str) {
        let mut st = self.st();
        st.runs.insert(run_id, "completed".to_owned());
        st.run_created.insert(run_id, created_at.to_owned());
    }

    /// A completed job of a history run in GitHub's shape: `conclusion` (`success`,
    /// `failure`, `cancelled`, `skipped`), `times` = (created, started, completed); `runner`
    /// `None` for a job no runner took (cancelled while queued, skipped).
    pub fn finished_job(
        &self,
        (run_id, job_id): (u64, u64),
        labels: &[&str],
        conclusion: &str,
        (created_at, started_at, completed_at): (&str, &str, &str),
        runner: Option<&str>,
    ) {
        let on_runner = |v: Value| if runner.is_some() { v } else { Value::Null };
        let job = json!({
            "id": job_id, "run_id": run_id, "run_attempt": 1, "status": "completed",
            "conclusion": conclusion, "name": format!("job {job_id}"),
            "workflow_name": "ROOT CI", "head_branch": "master", "labels": labels,
            "runner_id": on_runner(json!(39)),
            "runner_name": runner.map_or(Value::Null, |r| json!(r)),
            "runner_group_id": on_runner(json!(1)),
            "runner_group_name": on_runner(json!("Default")),
            "created_at": created_at, "started_at": started_at, "completed_at": completed_at,
            "steps": [],
        });
        self.st().jobs.insert(job_id, job);
    }

    /// Add a registered runner with the given labels; returns its id.
    pub fn add_runner_with_labels(
        &self,
        name: &str,
        labels: &[&str],
        status: &str,
        busy: bool,
    ) -> u64 {
        let mut st = self.st();
        st.next_id += 1;
        let id = st.next_id;
        let labels: Vec<String> = labels.iter().map(|s| (*s).to_owned()).collect();
        let runner = runner_json(&mut st, id, name, &labels, status, busy);
        st.runners.insert(id, runner);
        id
    }

    /// The next request answers 403 with `retry-after: secs` (a secondary limit).
    pub fn set_retry_after(&self, secs: u64) {
        self.st().retry_after = Some(secs);
    }
}
