//! A fake Jenkins controller for the node endpoints MARBLE uses (`reference/ci-apis.md` §5):
//! `GET /computer/<node>/api/json` (the computer object: `offline`, `idle`,
//! `temporarilyOffline`, `numExecutors`, `executors[idle,currentExecutable{url}]`…), 404 for
//! an unknown node, `GET /computer/api/json` (every node, the same objects under `computer`:
//! the demand poll's idle agents), and `POST /computer/<node>/toggleOffline?offlineMessage=…` answered with
//! the 302 Jenkins sends after a form POST; `POST /computer/<node>/launchSlaveAgent` ("Launch
//! agent": a 302 to the node's log for a disconnected node, the "already launched" page
//! (200) for a connected one, 403 without the Agent/Connect permission — `SlaveComputer.
//! doLaunchSlaveAgent`; the fake counts launches, it runs no launcher); `GET /queue/api/json` (the build queue: `items`
//! with `id`, `why`, `buildable`, `blocked`, `stuck`, `inQueueSince`, `task.name`);
//! `GET /computer/<node>/config.xml` (its `<mode>`) and `GET /pluginManager/api/json`
//! (`plugins` with `shortName`, `active`) for the acceptance check `api.jenkins-any-node`. Served over real HTTP on 127.0.0.1 through the
//! same server loop as the fake GitHub, so the production client is what tests exercise.
//! `GET /job/<a>/job/<b>/api/json?tree=builds[…]` answers a job's build history (the
//! `builds` array of `hudson.model.Job`, newest first; 404 for an unknown job) for
//! `marble-sim import`. Every request is recorded (without the `authorization` header).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use serde_json::json;

use crate::fake_github::{RecordedRequest, Reply, record, serve};

#[derive(Debug, Default, Clone)]
struct Node {
    temporarily_offline: bool,
    offline_message: String,
    build: Option<String>,
    /// `EXCLUSIVE` when set (config.xml's `<mode>`), else `NORMAL`.
    exclusive: bool,
    /// No agent connected (a demand node Jenkins has not launched, or took offline idle).
    disconnected: bool,
    /// Configured labels besides its own name (`macos` unless set).
    labels: Option<Vec<String>>,
}

#[derive(Debug, Default)]
struct State {
    nodes: BTreeMap<String, Node>,
    queue: Vec<serde_json::Value>,
    requests: Vec<RecordedRequest>,
    /// Job path (`a/b` for `/job/a/job/b`) → its builds, newest first.
    jobs: BTreeMap<String, Vec<serde_json::Value>>,
    /// `/pluginManager/api/json`'s `plugins`.
    plugins: Vec<serde_json::Value>,
    /// Every request answers 503, as Jenkins does while it restarts.
    down: bool,
    /// The API user lacks Agent/Connect: `launchSlaveAgent` answers 403.
    deny_launch: bool,
    /// `launchSlaveAgent` calls that started a launch, by node.
    launches: BTreeMap<String, u32>,
}

/// The running fake.
#[derive(Debug)]
pub struct FakeJenkins {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeJenkins {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn decode(segment: &str) -> String {
    percent_decode(segment)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or(""), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A node as `/computer/<name>/api/json` (and each entry of `/computer/api/json`) shows it:
/// offline when marked so or when no agent is connected, idle without a build.
fn computer_json(name: &str, node: &Node) -> serde_json::Value {
    let busy = node.build.is_some();
    let offline = node.temporarily_offline || node.disconnected;
    let cause = if node.temporarily_offline {
        json!(node.offline_message)
    } else if node.disconnected {
        json!("Offline because computer was idle; it will be relaunched when needed.")
    } else {
        json!("")
    };
    json!({
        "_class": "hudson.slaves.SlaveComputer",
        "displayName": name,
        "offline": offline,
        "idle": !busy,
        "temporarilyOffline": node.temporarily_offline,
        "numExecutors": 1,
        "offlineCauseReason": cause,
        "assignedLabels": std::iter::once(name)
            .chain(node.labels.as_ref().map_or(vec!["macos"], |l| l.iter().map(String::as_str).collect()))
            .map(|l| json!({"name": l}))
            .collect::<Vec<_>>(),
        "executors": [{
            "idle": !busy,
            "currentExecutable": node.build.as_ref().map(|u| json!({"url": u}))
        }]
    })
}

/// `GET /job/<a>/job/<b>/api/json`: the job's builds; `None` for other paths.
/// `POST /computer/<name>/launchSlaveAgent` as `SlaveComputer.doLaunchSlaveAgent` answers.
fn launch_agent(st: &mut State, name: &str) -> Reply {
    let Some(disconnected) = st.nodes.get(name).map(|n| n.disconnected) else {
        return Reply::empty(StatusCode::NOT_FOUND);
    };
    if st.deny_launch {
        let mut reply = Reply::empty(StatusCode::FORBIDDEN);
        reply.body =
            format!("marble-bot is missing the Agent/Connect permission on {name}").into_bytes();
        return reply;
    }
    if !disconnected {
        let mut reply = Reply::empty(StatusCode::OK);
        reply.body = b"<html><body>The agent has been already launched.</body></html>".to_vec();
        return reply;
    }
    *st.launches.entry(name.to_owned()).or_insert(0) += 1;
    let mut reply = Reply::empty(StatusCode::FOUND);
    reply
        .headers
        .push(("location".into(), format!("/computer/{name}/log")));
    reply
}

fn route_job(st: &State, path: &str) -> Option<Reply> {
    let job_part = path.strip_prefix("/job/")?.strip_suffix("/api/json")?;
    let job = job_part
        .split("/job/")
        .map(decode)
        .collect::<Vec<_>>()
        .join("/");
    Some(match st.jobs.get(&job) {
        Some(builds) => Reply::json(
            StatusCode::OK,
            &json!({"_class": "hudson.model.FreeStyleProject", "builds": builds}),
        ),
        None => Reply::empty(StatusCode::NOT_FOUND),
    })
}

impl FakeJenkins {
    /// Start with the given nodes (all online, idle).
    pub async fn start(nodes: &[&str]) -> FakeJenkins {
        let state = Arc::new(Mutex::new(State {
            nodes: nodes
                .iter()
                .map(|n| ((*n).to_owned(), Node::default()))
                .collect(),
            queue: Vec::new(),
            requests: Vec::new(),
            jobs: BTreeMap::new(),
            plugins: Vec::new(),
            down: false,
            deny_launch: false,
            launches: BTreeMap::new(),
        }));
        let shared = state.clone();
        let (addr, task) = serve(move |req, body| {
            let mut st = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            st.requests.push(record(req, body));
            if st.down {
                return Reply::empty(StatusCode::SERVICE_UNAVAILABLE);
            }
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or("").to_owned();
            if let Some(reply) = route_job(&st, &path) {
                return reply;
            }
            if req.method() == http::Method::GET && path == "/queue/api/json" {
                let items = st.queue.clone();
                return Reply::json(
                    StatusCode::OK,
                    &json!({"_class": "hudson.model.Queue", "items": items}),
                );
            }
            if req.method() == http::Method::GET && path == "/pluginManager/api/json" {
                let plugins = st.plugins.clone();
                return Reply::json(
                    StatusCode::OK,
                    &json!({"_class": "hudson.LocalPluginManager", "plugins": plugins}),
                );
            }
            if req.method() == http::Method::GET && path == "/computer/api/json" {
                // A real controller lists its built-in node first (online, idle, no
                // executors, label `built-in`), and it is no SPI agent.
                let built_in = json!({"_class": "hudson.model.Hudson$MasterComputer",
                    "displayName": "Built-In Node", "offline": false, "idle": true,
                    "temporarilyOffline": false, "numExecutors": 0, "offlineCauseReason": "",
                    "assignedLabels": [{"name": "built-in"}], "executors": []});
                let computers: Vec<serde_json::Value> = std::iter::once(built_in)
                    .chain(st.nodes.iter().map(|(name, node)| computer_json(name, node)))
                    .collect();
                return Reply::json(
                    StatusCode::OK,
                    &json!({"_class": "hudson.model.ComputerSet", "computer": computers}),
                );
            }
            let rest = path.strip_prefix("/computer/").unwrap_or("");
            let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
            let name = decode(name);
            if req.method() == http::Method::POST && tail == "launchSlaveAgent" {
                return launch_agent(&mut st, &name);
            }
            let Some(node) = st.nodes.get_mut(&name) else {
                return Reply::empty(StatusCode::NOT_FOUND);
            };
            match (req.method().as_str(), tail) {
                ("GET", "api/json") => Reply::json(StatusCode::OK, &computer_json(&name, node)),
                ("GET", "config.xml") => {
                    let mode = if node.exclusive { "EXCLUSIVE" } else { "NORMAL" };
                    let xml = format!(
                        "<?xml version=\"1.1\" encoding=\"UTF-8\"?>\n<slave>\n  <name>{name}</name>\n  <numExecutors>1</numExecutors>\n  <mode>{mode}</mode>\n  <retentionStrategy class=\"hudson.slaves.RetentionStrategy$Demand\">\n    <inDemandDelay>0</inDemandDelay>\n    <idleDelay>10</idleDelay>\n  </retentionStrategy>\n  <label>macos</label>\n</slave>"
                    );
                    let mut reply = Reply::empty(StatusCode::OK);
                    reply.body = xml.into_bytes();
                    reply.headers.push(("content-type".into(), "application/xml".into()));
                    reply
                }
                ("POST", "toggleOffline") => {
                    node.temporarily_offline = !node.temporarily_offline;
                    node.offline_message = query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("offlineMessage="))
                        .map(percent_decode)
                        .unwrap_or_default();
                    let mut reply = Reply::empty(StatusCode::FOUND);
                    reply.headers.push(("location".into(), format!("/computer/{name}/")));
                    reply
                }
                _ => Reply::empty(StatusCode::NOT_FOUND),
            }
        })
        .await;
        FakeJenkins {
            url: format!("http://{addr}"),
            state,
            task,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Whether the API user lacks the Agent/Connect permission (`launchSlaveAgent` → 403).
    pub fn set_deny_launch(&self, deny: bool) {
        self.with(|st| st.deny_launch = deny);
    }

    /// How many launches `launchSlaveAgent` started for `node`.
    pub fn launches(&self, node: &str) -> u32 {
        self.with(|st| st.launches.get(node).copied().unwrap_or(0))
    }

    /// The installed plugins `(shortName, active)` of `/pluginManager/api/json`.
    pub fn set_plugins(&self, plugins: &[(&str, bool)]) {
        self.with(|st| {
            st.plugins = (plugins.iter())
                .map(|(n, a)| json!({"shortName": n, "active": a, "enabled": a}))
                .collect();
        });
    }

    /// Jenkins restarting (`true`: every request answers 503) or back (`false`).
    pub fn set_down(&self, down: bool) {
        self.with(|st| st.down = down);
    }

    /// `node`'s usage mode in its config.xml: `EXCLUSIVE` (only builds naming it) or not.
    pub fn set_exclusive(&self, node: &str, exclusive: bool) {
        self.with(|st| {
            if let Some(n) = st.nodes.get_mut(node) {
                n.exclusive = exclusive;
            }
        });
    }

    /// `node`'s configured labels (besides its own name; `macos` until set).
    pub fn set_labels(&self, node: &str, labels: &[&str]) {
        self.with(|st| {
            if let Some(n) = st.nodes.get_mut(node) {
                n.labels = Some(labels.iter().map(|l| (*l).to_owned()).collect());
            }
        });
    }

    /// Whether `node`'s agent is connected (`false`: offline, as a demand node Jenkins has
    /// not launched).
    pub fn set_connected(&self, node: &str, connected: bool) {
        self.with(|st| {
            if let Some(n) = st.nodes.get_mut(node) {
                n.disconnected = !connected;
            }
        });
    }

    /// A build starts (`Some(url)`) or ends (`None`) on `node`.
    pub fn set_build(&self, node: &str, build: Option<&str>) {
        self.with(|st| {
            if let Some(n) = st.nodes.get_mut(node) {
                n.build = build.map(str::to_owned);
            }
        });
    }

    /// Put a buildable item in the queue: task `task`, queued at `since_ms`, waiting with
    /// Jenkins' English `why` text.
    pub fn queue_buildable(&self, id: u64, task: &str, why: &str, since_ms: u64) {
        let item = json!({
            "_class": "hudson.model.Queue$BuildableItem",
            "id": id,
            "why": why,
            "buildable": true,
            "blocked": false,
            "stuck": false,
            "inQueueSince": since_ms,
            "task": {"name": task},
        });
        self.with(|st| st.queue.push(item));
    }

    /// Whether `node` is marked temporarily offline, and the message.
    pub fn offline(&self, node: &str) -> Option<(bool, String)> {
        self.with(|st| {
            st.nodes
                .get(node)
                .map(|n| (n.temporarily_offline, n.offline_message.clone()))
        })
    }

    /// A finished build of `job` (`a/b` for a job in a folder) in Jenkins' shape: started at
    /// `timestamp` (unix ms), ran `duration` ms on `built_on` with `result`; `queued_ms` is
    /// the Metrics plugin's `queuingDurationMillis` action when given. Newest first.
    pub fn add_build(
        &self,
        job: &str,
        (number, timestamp, duration): (u64, u64, u64),
        result: &str,
        built_on: &str,
        queued_ms: Option<u64>,
    ) {
        let mut actions = vec![json!({"_class": "hudson.model.CauseAction"})];
        if let Some(q) = queued_ms {
            actions.push(json!({
                "_class": "jenkins.metrics.impl.TimeInQueueAction",
                "queuingDurationMillis": q
            }));
        }
        let build = json!({
            "_class": "hudson.model.FreeStyleBuild",
            "number": number, "timestamp": timestamp, "duration": duration,
            "result": result, "builtOn": built_on, "actions": actions,
        });
        self.with(|st| st.jobs.entry(job.to_owned()).or_default().insert(0, build));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.with(|st| st.requests.clone())
    }
}
