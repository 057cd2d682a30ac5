//! The simulator's GitHub: an in-memory REST API behind [`marbled::ci::http::Transport`], so
//! marble-sim drives the daemon's own `GitHubClient`, `GithubDemand::poll`/`new_queued_run`
//! and pacing with no network (`docs/SIMULATOR.md`, "Requests").
//!
//! It answers from its own state (workflow runs, their jobs, the runners) in GitHub's JSON
//! shapes, with a content ETag on every listing (a changed listing gets a new ETag, an
//! unchanged one answers `If-None-Match` with a free 304) and `x-ratelimit-*` headers per
//! token (a 5 000 window that starts with the token's first request and resets an hour
//! later). It counts every request per token and per hour of simulated time: `counted` (not
//! 304: what GitHub charges) and `total`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use marbled::ci::http::{HttpResponse, Transport};
use serde_json::{Value, json};

/// Unix time (s) of the simulation's start: in the past, so the client's own check of the
/// reset time against the wall clock never refuses a request (the sim GitHub answers 403).
pub const EPOCH_S: u64 = 1_000_000_000;
/// The API root the simulated clients are built with.
pub const API_URL: &str = "http://github.sim";
/// A token's hourly budget.
pub const LIMIT: u64 = 5_000;
const HOUR_MS: u64 = 3_600_000;

/// Requests of one token in one hour of simulated time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourCount {
    /// Charged by GitHub (every answer but a 304).
    pub counted: u64,
    /// All requests.
    pub total: u64,
}

#[derive(Debug, Clone)]
struct Job {
    run: u64,
    labels: Vec<String>,
    status: &'static str,
    created_ms: u64,
    started_ms: Option<u64>,
    completed_ms: Option<u64>,
    runner: Option<(u64, String)>,
    /// A job of a GitHub-hosted runner: it ends by itself at this time.
    ends_ms: Option<u64>,
}

/// A running job's steps advance one a minute: its run's job listing changes as it runs
/// (docs/OPERATIONS.md: "whose job listings change as steps run").
const STEP_MS: u64 = 60_000;

#[derive(Debug, Clone)]
struct Runner {
    name: String,
    labels: Vec<String>,
    online: bool,
    busy: bool,
}

#[derive(Debug, Default)]
struct Window {
    remaining: u64,
    reset_s: u64,
}

#[derive(Debug, Default)]
struct State {
    now_ms: u64,
    next_id: u64,
    /// Runs with a job not completed (listed by status).
    runs: BTreeMap<u64, Vec<u64>>,
    /// Completed runs: never in a status listing, their jobs still readable.
    finished: BTreeMap<u64, Vec<u64>>,
    jobs: BTreeMap<u64, Job>,
    runners: BTreeMap<u64, Runner>,
    windows: BTreeMap<String, Window>,
    counts: BTreeMap<String, BTreeMap<u64, HourCount>>,
}

/// The simulated GitHub of one repository; clone the `Arc` into every host's client.
#[derive(Debug, Default)]
pub struct SimGitHub {
    repo: String,
    state: Mutex<State>,
}

fn stamp(ms: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(EPOCH_S * 1000 + ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// FNV-1a: a stable content hash for ETags.
fn etag_of(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("W/\"{h:016x}\"")
}

impl SimGitHub {
    /// An empty repository `repo` (`owner/name`).
    pub fn new(repo: &str) -> Arc<Self> {
        Arc::new(Self {
            repo: repo.to_owned(),
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Set the simulated time (ms since the start); GitHub-hosted jobs due end.
    pub fn set_now(&self, now_ms: u64) {
        let mut guard = self.lock();
        let s = &mut *guard;
        s.now_ms = now_ms;
        let mut ended = false;
        for jobs in s.runs.values() {
            for id in jobs {
                if let Some(j) = s.jobs.get_mut(id)
                    && j.status == "in_progress"
                    && j.ends_ms.is_some_and(|e| e <= now_ms)
                {
                    j.status = "completed";
                    j.completed_ms = Some(now_ms);
                    ended = true;
                }
            }
        }
        if ended {
            Self::retire(s);
        }
    }

    /// Move runs whose jobs all completed out of the live set (keeps listings cheap).
    fn retire(s: &mut State) {
        let done: Vec<u64> = s
            .runs
            .iter()
            .filter(|(_, jobs)| Self::run_status(s, jobs) == "completed")
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(jobs) = s.runs.remove(&id) {
                s.finished.insert(id, jobs);
            }
        }
    }

    /// Another workflow of the repository (GitHub-hosted runners, not MARBLE's) starts one
    /// job that runs for `duration_ms`: the busy repository's runs in progress.
    pub fn start_hosted_run(&self, duration_ms: u64) {
        let mut s = self.lock();
        s.next_id += 1;
        let run = s.next_id;
        s.next_id += 1;
        let id = s.next_id;
        let now = s.now_ms;
        s.jobs.insert(
            id,
            Job {
                run,
                labels: vec!["ubuntu-latest".to_owned()],
                status: "in_progress",
                created_ms: now,
                started_ms: Some(now),
                completed_ms: None,
                runner: Some((0, format!("GitHub Actions {id}"))),
                ends_ms: Some(now + duration_ms),
            },
        );
        s.runs.insert(run, vec![id]);
    }

    /// A workflow run is pushed with one queued job per label set; the job ids.
    pub fn queue_run(&self, label_sets: &[Vec<String>]) -> Vec<u64> {
        let mut s = self.lock();
        s.next_id += 1;
        let run = s.next_id;
        let now = s.now_ms;
        let mut ids = Vec::new();
        for labels in label_sets {
            s.next_id += 1;
            let id = s.next_id;
            s.jobs.insert(
                id,
                Job {
                    run,
                    labels: labels.clone(),
                    status: "queued",
                    created_ms: now,
                    started_ms: None,
                    completed_ms: None,
                    runner: None,
                    ends_ms: None,
                },
            );
            ids.push(id);
        }
        s.runs.insert(run, ids.clone());
        ids
    }

    /// A registered runner connects (its VM booted).
    pub fn runner_online(&self, name: &str) {
        let mut s = self.lock();
        if let Some(r) = s.runners.values_mut().find(|r| r.name == name) {
            r.online = true;
        }
    }

    /// GitHub hands queued job `job` to runner `name`: the job is in progress, the runner busy.
    pub fn start_job(&self, job: u64, name: &str) {
        let mut s = self.lock();
        let now = s.now_ms;
        let runner = s
            .runners
            .iter_mut()
            .find(|(_, r)| r.name == name)
            .map(|(id, r)| {
                r.busy = true;
                *id
            });
        if let (Some(j), Some(id)) = (s.jobs.get_mut(&job), runner) {
            j.status = "in_progress";
            j.started_ms = Some(now);
            j.runner = Some((id, name.to_owned()));
        }
    }

    /// Job `job` is in progress on a runner named `name` that this GitHub did not mint (the
    /// engine's fleet: `marble-sim requests --engine` follows the scheduler's ground truth).
    pub fn job_in_progress(&self, job: u64, name: &str) {
        let mut s = self.lock();
        let now = s.now_ms;
        if let Some(j) = s.jobs.get_mut(&job)
            && j.status == "queued"
        {
            j.status = "in_progress";
            j.started_ms = Some(now);
            j.runner = Some((0, name.to_owned()));
        }
    }

    /// Job `job` ends; GitHub deletes its ephemeral runner.
    pub fn complete_job(&self, job: u64) {
        let mut guard = self.lock();
        let s = &mut *guard;
        let now = s.now_ms;
        let Some(j) = s.jobs.get_mut(&job) else {
            return;
        };
        j.status = "completed";
        j.completed_ms = Some(now);
        if let Some((id, _)) = j.runner.clone() {
            s.runners.remove(&id);
        }
        Self::retire(s);
    }

    /// Whether job `job` is still queued.
    pub fn queued(&self, job: u64) -> bool {
        self.lock()
            .jobs
            .get(&job)
            .is_some_and(|j| j.status == "queued")
    }

    /// Requests per token: hour index → counts.
    pub fn counts(&self) -> BTreeMap<String, BTreeMap<u64, HourCount>> {
        self.lock().counts.clone()
    }

    fn run_status(s: &State, jobs: &[u64]) -> &'static str {
        let st = || jobs.iter().filter_map(|j| s.jobs.get(j).map(|j| j.status));
        if st().all(|x| x == "completed") {
            "completed"
        } else if st().all(|x| x == "queued") {
            "queued"
        } else {
            "in_progress"
        }
    }

    fn runs_json(&self, s: &State, status: &str) -> Value {
        let runs: Vec<Value> = s
            .runs
            .iter()
            .filter(|(_, jobs)| Self::run_status(s, jobs) == status)
            .map(|(id, jobs)| {
                let created = jobs
                    .first()
                    .and_then(|j| s.jobs.get(j))
                    .map_or(0, |j| j.created_ms);
                json!({"id": id, "name": "CI", "event": "push", "status": status,
                       "conclusion": null, "run_attempt": 1, "created_at": stamp(created),
                       "repository": {"full_name": self.repo}})
            })
            .collect();
        json!({"total_count": runs.len(), "workflow_runs": runs})
    }

    fn jobs_json(s: &State, run: u64) -> Value {
        let jobs: Vec<Value> = s
            .runs
            .get(&run)
            .or_else(|| s.finished.get(&run))
            .into_iter()
            .flatten()
            .filter_map(|id| s.jobs.get(id).map(|j| (id, j)))
            .map(|(id, j)| {
                let end = j.completed_ms.unwrap_or(s.now_ms);
                let done = j.started_ms.map_or(0, |st| end.saturating_sub(st) / STEP_MS);
                let steps: Vec<Value> = (1..=done + u64::from(j.status == "in_progress"))
                    .map(|n| json!({"name": format!("step {n}"), "number": n,
                                    "status": if n <= done { "completed" } else { "in_progress" }}))
                    .collect();
                json!({"steps": steps, "id": id, "run_id": j.run, "run_attempt": 1, "status": j.status,
                       "conclusion": j.completed_ms.map(|_| "success"),
                       "labels": j.labels, "runner_id": j.runner.as_ref().map(|r| r.0),
                       "runner_name": j.runner.as_ref().map(|r| r.1.clone()),
                       "created_at": stamp(j.created_ms),
                       "started_at": stamp(j.started_ms.unwrap_or(j.created_ms)),
                       "completed_at": j.completed_ms.map(stamp)})
            })
            .collect();
        json!({"total_count": jobs.len(), "jobs": jobs})
    }

    fn runner_json(id: u64, r: &Runner) -> Value {
        let labels: Vec<Value> = r
            .labels
            .iter()
            .enumerate()
            .map(|(n, l)| json!({"id": n + 1, "name": l, "type": "custom"}))
            .collect();
        json!({"id": id, "name": r.name, "os": "macOS",
               "status": if r.online { "online" } else { "offline" },
               "busy": r.busy, "runner_group_id": 1, "labels": labels})
    }

    /// The answer's status and body (None: no body).
    fn route(
        &self,
        s: &mut State,
        method: &Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> (StatusCode, Option<Value>) {
        let runs = format!("/repos/{}/actions/runs", self.repo);
        let runners = format!("/repos/{}/actions/runners", self.repo);
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let get = method == Method::GET;
        if get && path == runs {
            let status = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("status="))
                .unwrap_or("queued");
            return (StatusCode::OK, Some(self.runs_json(s, status)));
        }
        if let Some(rest) = path.strip_prefix(&format!("{runs}/"))
            && let Some(run) = rest.strip_suffix("/jobs").and_then(|r| r.parse().ok())
            && get
        {
            if !s.runs.contains_key(&run) && !s.finished.contains_key(&run) {
                return (StatusCode::NOT_FOUND, Some(json!({"message": "Not Found"})));
            }
            return (StatusCode::OK, Some(Self::jobs_json(s, run)));
        }
        if get && path == runners {
            let list: Vec<Value> = s
                .runners
                .iter()
                .map(|(id, r)| Self::runner_json(*id, r))
                .collect();
            return (
                StatusCode::OK,
                Some(json!({"total_count": list.len(), "runners": list})),
            );
        }
        if method == Method::POST && path == format!("{runners}/generate-jitconfig") {
            let req: Value = body
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            let name = req["name"].as_str().unwrap_or_default().to_owned();
            if s.runners.values().any(|r| r.name == name) {
                return (
                    StatusCode::CONFLICT,
                    Some(json!({"message": "Already exists"})),
                );
            }
            let labels = req["labels"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            s.next_id += 1;
            let id = s.next_id;
            let runner = Runner {
                name,
                labels,
                online: false,
                busy: false,
            };
            let shown = Self::runner_json(id, &runner);
            s.runners.insert(id, runner);
            return (
                StatusCode::CREATED,
                Some(json!({"runner": shown, "encoded_jit_config": "c2ltdWxhdGVk"})),
            );
        }
        if let Some(id) = path
            .strip_prefix(&format!("{runners}/"))
            .and_then(|r| r.parse::<u64>().ok())
        {
            if method == Method::DELETE {
                return match s.runners.remove(&id) {
                    Some(_) => (StatusCode::NO_CONTENT, None),
                    None => (StatusCode::NOT_FOUND, Some(json!({"message": "Not Found"}))),
                };
            }
            if get {
                return match s.runners.get(&id) {
                    Some(r) => (StatusCode::OK, Some(Self::runner_json(id, r))),
                    None => (StatusCode::NOT_FOUND, Some(json!({"message": "Not Found"}))),
                };
            }
        }
        if get && path == "/repos/actions/runner/releases" {
            let release = json!({"tag_name": "v2.330.0", "name": "v2.330.0", "draft": false,
                                 "prerelease": false, "body": "", "assets": []});
            return (StatusCode::OK, Some(json!([release])));
        }
        (StatusCode::NOT_FOUND, Some(json!({"message": "Not Found"})))
    }
}

fn header<'a>(headers: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

impl Transport for SimGitHub {
    fn exchange(
        &self,
        method: &Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        let token = header(headers, "authorization")
            .map(|a| a.trim_start_matches("Bearer ").to_owned())
            .unwrap_or_default();
        let path = url.strip_prefix(API_URL).unwrap_or(url);
        let mut guard = self.lock();
        let s = &mut *guard;
        let now_s = EPOCH_S + s.now_ms / 1000;
        let hour = s.now_ms / HOUR_MS;
        let window = s.windows.entry(token.clone()).or_default();
        if window.reset_s <= now_s {
            *window = Window {
                remaining: LIMIT,
                reset_s: now_s + 3600,
            };
        }
        let exhausted = window.remaining == 0;
        let (mut status, answer) = if exhausted {
            (
                StatusCode::FORBIDDEN,
                Some(json!({"message": "API rate limit exceeded"})),
            )
        } else {
            self.route(s, method, path, body)
        };
        let bytes = answer
            .map(|v| v.to_string().into_bytes())
            .unwrap_or_default();
        let etag = (status == StatusCode::OK).then(|| etag_of(&bytes));
        if etag.is_some() && etag.as_deref() == header(headers, "if-none-match") {
            status = StatusCode::NOT_MODIFIED;
        }
        let count = s
            .counts
            .entry(token.clone())
            .or_default()
            .entry(hour)
            .or_default();
        count.total += 1;
        let window = s.windows.entry(token).or_default();
        if status != StatusCode::NOT_MODIFIED && !exhausted {
            count.counted += 1;
            window.remaining -= 1;
        }
        let mut out = HeaderMap::new();
        let mut put = |k: &'static str, v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                out.insert(k, v);
            }
        };
        put("x-ratelimit-limit", LIMIT.to_string());
        put("x-ratelimit-remaining", window.remaining.to_string());
        put("x-ratelimit-used", (LIMIT - window.remaining).to_string());
        put("x-ratelimit-reset", window.reset_s.to_string());
        put("x-ratelimit-resource", "core".to_owned());
        if let Some(e) = etag {
            put("etag", e);
        }
        let body = if status == StatusCode::NOT_MODIFIED {
            Vec::new()
        } else {
            bytes
        };
        HttpResponse {
            status,
            headers: out,
            body: body.into(),
        }
    }
}
