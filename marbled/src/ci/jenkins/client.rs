//! Jenkins JSON API client for SPI nodes (`reference/ci-apis.md` §5): node state from
//! `/computer/<name>/api/json`, taking a node offline/online with `toggleOffline` (with the
//! CSRF crumb when the server demands one), the build queue, and the busy signal.
//!
//! Owns the wire shapes and the mapping to [`NodeState`] / [`JenkinsBusy`]. The drain
//! sequence (offline → wait idle → stop → online) belongs to the daemon. The API token lives
//! in a [`Secret`] used only to build the `Authorization` header, sent preemptively because
//! Jenkins answers 403 instead of negotiating.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use crate::ci::http::{HttpClient, HttpError, HttpResponse};
use crate::ci::secret::{Secret, SecretError, TokenSource};
use crate::config::{Config, JenkinsSection};

/// Characters escaped in a path segment or query value: everything but RFC 3986 unreserved.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `tree=` used for node reads (keeps responses small).
pub const NODE_TREE: &str = "displayName,offline,idle,temporarilyOffline,numExecutors,\
offlineCauseReason,assignedLabels[name],executors[idle,currentExecutable[url]]";

fn default_timeout() -> Duration {
    Duration::from_secs(20)
}

/// The `[jenkins]` section of `marbled.toml`.
///
/// ```toml
/// [jenkins]
/// url = "https://jenkins.example.cern.ch"
/// user = "marble-bot"
/// token = { file = "/etc/marble/jenkins-token" }   # API token, mode 0600
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JenkinsConfig {
    /// Controller base URL (with the context path, if any).
    pub url: String,
    /// User the API token belongs to.
    pub user: String,
    /// Where the API token is read from.
    pub token: TokenSource,
    /// Timeout of one API request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
}

/// A node as `/computer/<name>/api/json` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeState {
    /// Node name.
    pub name: String,
    /// Not usable now (temporarily offline or no agent connected).
    pub offline: bool,
    /// All executors idle.
    pub idle: bool,
    /// Marked offline by a user or the API (`toggleOffline`).
    pub temporarily_offline: bool,
    /// Configured executors.
    pub num_executors: u32,
    /// Executors running a build.
    pub executors_busy: u32,
    /// URLs of the running builds.
    pub current_builds: Vec<String>,
    /// Why offline (`""` when online).
    pub offline_cause: String,
    /// Labels (including the node's own name).
    pub labels: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawExecutor {
    #[serde(default)]
    idle: bool,
    #[serde(default)]
    current_executable: Option<RawExecutable>,
}

#[derive(Deserialize)]
struct RawExecutable {
    #[serde(default)]
    url: String,
}

#[derive(Deserialize)]
struct RawLabel {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawComputer {
    display_name: String,
    #[serde(default)]
    offline: bool,
    #[serde(default)]
    idle: bool,
    #[serde(default)]
    temporarily_offline: bool,
    #[serde(default)]
    num_executors: u32,
    #[serde(default)]
    offline_cause_reason: Option<String>,
    #[serde(default)]
    assigned_labels: Vec<RawLabel>,
    #[serde(default)]
    executors: Vec<RawExecutor>,
}

impl From<RawComputer> for NodeState {
    fn from(c: RawComputer) -> Self {
        let busy: Vec<&RawExecutor> = c.executors.iter().filter(|e| !e.idle).collect();
        NodeState {
            name: c.display_name,
            offline: c.offline,
            idle: c.idle,
            temporarily_offline: c.temporarily_offline,
            num_executors: c.num_executors,
            executors_busy: u32::try_from(busy.len()).unwrap_or(u32::MAX),
            current_builds: busy
                .iter()
                .filter_map(|e| e.current_executable.as_ref().map(|x| x.url.clone()))
                .collect(),
            offline_cause: c.offline_cause_reason.unwrap_or_default(),
            labels: c.assigned_labels.into_iter().map(|l| l.name).collect(),
        }
    }
}

#[derive(Deserialize)]
struct RawComputerSet {
    #[serde(default)]
    computer: Vec<RawComputer>,
}

/// The daemon's reading of `GET /computer/api/json?tree=computer[…]`: every node, as
/// [`JenkinsClient::node`] reads one.
pub fn parse_nodes(body: &[u8]) -> Result<Vec<NodeState>, serde_json::Error> {
    let raw: RawComputerSet = serde_json::from_slice(body)?;
    Ok(raw.computer.into_iter().map(NodeState::from).collect())
}

/// The names of the agents online and idle (neither offline nor running a build), sorted:
/// the fleet's idle agents every host reads alike. With `spi_labels` (`[jenkins] labels`),
/// only nodes carrying one of them — the nodes a build for any SPI node can run on: a real
/// controller also lists its built-in node and every other team's agents, and one of those
/// sorting first made the only idle SPI agent look like a spare. `None` (the on-Mac
/// check's report) lists every idle node.
pub fn idle_agents(nodes: &[NodeState], spi_labels: Option<&[String]>) -> Vec<String> {
    let mut idle: Vec<String> = (nodes.iter())
        .filter(|n| !n.offline && n.idle && n.executors_busy == 0)
        .filter(|n| spi_labels.is_none_or(|want| n.labels.iter().any(|l| want.contains(l))))
        .map(|n| n.name.clone())
        .collect();
    idle.sort();
    idle
}

/// The names of the agents offline but launchable — not taken offline by a user — sorted,
/// with `spi_labels` as in [`idle_agents`]: the nodes Jenkins' retention strategy may
/// launch for a build that accepts any node (the first of them by name), and the order in
/// which hosts take turns launching their own (`sched/launch.rs`). A node still connecting
/// is listed offline too: the node list does not say.
pub fn offline_agents(nodes: &[NodeState], spi_labels: &[String]) -> Vec<String> {
    let mut offline: Vec<String> = (nodes.iter())
        .filter(|n| n.offline && !n.temporarily_offline)
        .filter(|n| n.labels.iter().any(|l| spi_labels.contains(l)))
        .map(|n| n.name.clone())
        .collect();
    offline.sort();
    offline
}

/// A buildable/blocked/waiting queue item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueItem {
    /// Queue id.
    pub id: u64,
    /// Human text; the only place the label appears.
    pub why: String,
    /// Ready to run but no executor.
    pub buildable: bool,
    /// Blocked by another build.
    pub blocked: bool,
    /// Buildable for too long.
    pub stuck: bool,
    /// Milliseconds since the epoch.
    pub in_queue_since: u64,
    /// Task name.
    pub task: String,
    /// The label parsed from `why`, when it names one.
    pub label: Option<String>,
}

#[derive(Deserialize)]
struct RawTask {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawItem {
    id: u64,
    #[serde(default)]
    why: Option<String>,
    #[serde(default)]
    buildable: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    stuck: bool,
    #[serde(default)]
    in_queue_since: u64,
    #[serde(default)]
    task: Option<RawTask>,
}

#[derive(Deserialize)]
struct RawQueue {
    #[serde(default)]
    items: Vec<RawItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Crumb {
    crumb_request_field: String,
    crumb: String,
}

/// The label named by a queue item's `why` (English templates of `Messages.properties`,
/// with their curly quotes), e.g. `Waiting for next available executor on ‘macos’`.
pub fn label_from_why(why: &str) -> Option<String> {
    const LABEL_TEMPLATES: [&str; 3] = [
        "Waiting for next available executor on ‘",
        "There are no nodes with the label ‘",
        "All nodes of label ‘",
    ];
    LABEL_TEMPLATES.iter().find_map(|t| {
        let rest = why.strip_prefix(t)?;
        let end = rest.find('’')?;
        Some(rest[..end].to_owned())
    })
}

/// The daemon's reading of `GET /queue/api/json` (missing fields read as 0 / false / empty,
/// which is why the acceptance suite checks a real controller sends them).
pub fn parse_queue(body: &[u8]) -> Result<Vec<QueueItem>, serde_json::Error> {
    let raw: RawQueue = serde_json::from_slice(body)?;
    Ok(raw
        .items
        .into_iter()
        .map(|i| {
            let why = i.why.unwrap_or_default();
            QueueItem {
                id: i.id,
                label: label_from_why(&why),
                why,
                buildable: i.buildable,
                blocked: i.blocked,
                stuck: i.stuck,
                in_queue_since: i.in_queue_since,
                task: i.task.map(|t| t.name).unwrap_or_default(),
            }
        })
        .collect())
}

/// Jenkins as a busy signal for an SPI VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JenkinsBusy {
    /// Jenkins says the node is running something (not idle).
    Busy,
    /// Jenkins says all executors are idle.
    Idle,
    /// Jenkins could not be asked: treat as busy.
    Unknown,
}

/// Map a node read to the busy signal: not idle → Busy, idle → Idle, any error
/// (unreachable, auth, unknown node) → Unknown.
pub fn busy_signal(node: &Result<NodeState, JenkinsError>) -> JenkinsBusy {
    match node {
        Ok(n) if !n.idle || n.executors_busy > 0 => JenkinsBusy::Busy,
        Ok(_) => JenkinsBusy::Idle,
        Err(_) => JenkinsBusy::Unknown,
    }
}

/// What a toggle call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToggleOutcome {
    /// The state was changed.
    Changed,
    /// The node was already in the requested state; nothing was sent.
    AlreadyThere,
}

/// Jenkins client errors; none carries the API token.
#[derive(Debug, thiserror::Error)]
pub enum JenkinsError {
    /// The `[jenkins]` section cannot make a client.
    #[error("[jenkins]: {0}")]
    Config(String),
    /// The token could not be loaded.
    #[error("jenkins token unavailable")]
    Token(#[source] SecretError),
    /// Transport failure.
    #[error("jenkins {op} request failed")]
    Http {
        /// Operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: HttpError,
    },
    /// 401/403.
    #[error(
        "jenkins refused {op} for user {user:?} ({status}): check the API token and the \
             user's Overall/Read and Computer/Connect+Disconnect permissions"
    )]
    Denied {
        /// Operation.
        op: &'static str,
        /// User.
        user: String,
        /// Status.
        status: u16,
    },
    /// 404: no such node.
    #[error("jenkins has no node {node:?}")]
    NoSuchNode {
        /// Node.
        node: String,
    },
    /// Other status.
    #[error("jenkins {op}: unexpected status {status}: {excerpt}")]
    Unexpected {
        /// Operation.
        op: &'static str,
        /// Status.
        status: u16,
        /// Body excerpt.
        excerpt: String,
    },
    /// Malformed JSON.
    #[error("jenkins {op}: malformed response")]
    Decode {
        /// Operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The Jenkins client.
pub struct JenkinsClient {
    http: HttpClient,
    base: String,
    user: String,
    auth: Secret,
}

impl std::fmt::Debug for JenkinsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JenkinsClient")
            .field("base", &self.base)
            .field("user", &self.user)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl JenkinsClient {
    /// Build from `[jenkins]` (loads the token now).
    pub fn from_section(section: &JenkinsSection) -> Result<Self, JenkinsError> {
        let token = TokenSource::from_section(
            "jenkins",
            section.token_file.as_ref(),
            section.token_keychain.as_ref(),
        )
        .map_err(JenkinsError::Config)?;
        Self::from_config(&JenkinsConfig {
            url: section.url.trim_end_matches('/').to_owned(),
            user: section.user.clone(),
            token,
            request_timeout: section.request_timeout,
        })
    }

    /// The demand source's client: `[jenkins]` when `[demand] jenkins` asks for it. One that
    /// cannot be built is left out and logged, so the daemon still runs its VMs.
    pub fn for_demand(config: &Config) -> Option<std::sync::Arc<Self>> {
        config.demand.as_ref().filter(|d| d.jenkins)?;
        let section = config.jenkins.as_ref()?;
        match Self::from_section(section) {
            Ok(client) => Some(std::sync::Arc::new(client)),
            Err(err) => {
                tracing::error!(error = %crate::chain::ErrorChain(&err), "jenkins demand source disabled");
                None
            }
        }
    }

    /// Build from config, loading the token (file mode checked, or Keychain on macOS).
    pub fn from_config(cfg: &JenkinsConfig) -> Result<Self, JenkinsError> {
        let token = cfg.token.load().map_err(JenkinsError::Token)?;
        Ok(Self::new(&cfg.url, &cfg.user, &token, cfg.request_timeout))
    }

    /// Build with an already loaded API token.
    pub fn new(base: &str, user: &str, token: &Secret, timeout: Duration) -> Self {
        let raw = format!("{user}:{}", token.expose());
        let auth = Secret::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ));
        Self {
            http: HttpClient::new(timeout),
            base: base.trim_end_matches('/').to_owned(),
            user: user.to_owned(),
            auth,
        }
    }

    fn computer_url(&self, node: &str) -> String {
        // The built-in node is `(built-in)` in the UI but `/computer/(built-in)/` in URLs too;
        // every name is escaped as one path segment.
        format!(
            "{}/computer/{}",
            self.base,
            utf8_percent_encode(node, COMPONENT)
        )
    }

    async fn send(
        &self,
        op: &'static str,
        method: Method,
        url: &str,
        extra: &[(&str, &str)],
    ) -> Result<HttpResponse, JenkinsError> {
        let mut headers = vec![
            ("authorization", self.auth.expose()),
            ("accept", "application/json"),
            ("accept-language", "en"),
            ("user-agent", "marbled"),
        ];
        headers.extend_from_slice(extra);
        let body = (method == Method::POST).then(Bytes::new);
        let resp = self
            .http
            .send(method.clone(), url, &headers, body)
            .await
            .map_err(|source| JenkinsError::Http { op, source })?;
        tracing::debug!(op, %method, url, status = resp.status.as_u16(), "jenkins api call");
        Ok(resp)
    }

    fn status_error(
        &self,
        op: &'static str,
        node: Option<&str>,
        resp: &HttpResponse,
    ) -> JenkinsError {
        match (resp.status, node) {
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => JenkinsError::Denied {
                op,
                user: self.user.clone(),
                status: resp.status.as_u16(),
            },
            (StatusCode::NOT_FOUND, Some(n)) => JenkinsError::NoSuchNode { node: n.to_owned() },
            (s, _) => JenkinsError::Unexpected {
                op,
                status: s.as_u16(),
                excerpt: resp.body_excerpt(200),
            },
        }
    }

    /// Read one node (`GET /computer/<name>/api/json?tree=…`).
    pub async fn node(&self, name: &str) -> Result<NodeState, JenkinsError> {
        const OP: &str = "node";
        let tree = utf8_percent_encode(NODE_TREE, COMPONENT);
        let url = format!("{}/api/json?tree={tree}", self.computer_url(name));
        let resp = self.send(OP, Method::GET, &url, &[]).await?;
        if resp.status != StatusCode::OK {
            return Err(self.status_error(OP, Some(name), &resp));
        }
        let raw: RawComputer = serde_json::from_slice(&resp.body)
            .map_err(|source| JenkinsError::Decode { op: OP, source })?;
        Ok(raw.into())
    }

    /// Every node (`GET /computer/api/json?tree=computer[…]`, the fields of [`Self::node`]):
    /// which agents are online and idle fleet-wide (the demand poll's
    /// [`crate::demand::JenkinsDemand::idle_agents`]). The built-in node is listed too.
    pub async fn nodes(&self) -> Result<Vec<NodeState>, JenkinsError> {
        const OP: &str = "nodes";
        let body = self.nodes_body().await?;
        parse_nodes(&body).map_err(|source| JenkinsError::Decode { op: OP, source })
    }

    /// The node list's JSON as Jenkins sent it (what [`Self::nodes`] parses; the on-Mac
    /// acceptance suite checks its fields on a real controller).
    pub async fn nodes_body(&self) -> Result<Bytes, JenkinsError> {
        const OP: &str = "nodes";
        let tree = format!("computer[{NODE_TREE}]");
        let tree = utf8_percent_encode(&tree, COMPONENT);
        let url = format!("{}/computer/api/json?tree={tree}", self.base);
        let resp = self.send(OP, Method::GET, &url, &[]).await?;
        if resp.status != StatusCode::OK {
            return Err(self.status_error(OP, None, &resp));
        }
        Ok(resp.body)
    }

    /// Buildable, blocked and waiting items of the queue (`GET /queue/api/json`).
    pub async fn queue(&self) -> Result<Vec<QueueItem>, JenkinsError> {
        let body = self.queue_body().await?;
        parse_queue(&body).map_err(|source| JenkinsError::Decode {
            op: "queue",
            source,
        })
    }

    /// The queue's JSON as Jenkins sent it (what [`Self::queue`] parses; the on-Mac
    /// acceptance suite checks its fields on a real controller).
    pub async fn queue_body(&self) -> Result<Bytes, JenkinsError> {
        const OP: &str = "queue";
        let url = format!("{}/queue/api/json", self.base);
        let resp = self.send(OP, Method::GET, &url, &[]).await?;
        if resp.status != StatusCode::OK {
            return Err(self.status_error(OP, None, &resp));
        }
        Ok(resp.body)
    }

    /// Mark the node temporarily offline with `message` (no new builds; a running build
    /// continues). No-op when it already is.
    pub async fn set_offline(
        &self,
        name: &str,
        message: &str,
    ) -> Result<ToggleOutcome, JenkinsError> {
        if self.node(name).await?.temporarily_offline {
            return Ok(ToggleOutcome::AlreadyThere);
        }
        self.toggle(name, message).await?;
        Ok(ToggleOutcome::Changed)
    }

    /// Clear a temporary-offline mark. No-op when the node is not marked.
    pub async fn set_online(&self, name: &str) -> Result<ToggleOutcome, JenkinsError> {
        if !self.node(name).await?.temporarily_offline {
            return Ok(ToggleOutcome::AlreadyThere);
        }
        self.toggle(name, "").await?;
        Ok(ToggleOutcome::Changed)
    }

    /// `POST /computer/<name>/toggleOffline?offlineMessage=…`; on a 403 that asks for a
    /// crumb, fetch one (with its session cookie) and retry once.
    async fn toggle(&self, name: &str, message: &str) -> Result<(), JenkinsError> {
        const OP: &str = "toggle-offline";
        let url = format!(
            "{}/toggleOffline?offlineMessage={}",
            self.computer_url(name),
            utf8_percent_encode(message, COMPONENT)
        );
        self.post_form(OP, name, &url).await?;
        tracing::info!(
            node = name,
            offline = !message.is_empty(),
            "toggled jenkins node"
        );
        Ok(())
    }

    /// Ask Jenkins to launch `name`'s agent (`POST /computer/<name>/launchSlaveAgent`, the
    /// node page's "Launch agent"; needs the Agent/Connect permission). Jenkins runs the
    /// node's launcher — for MARBLE's nodes the start script, whose `request-slot` then asks
    /// the host for the slot — and answers with a redirect to the node's log; for an agent
    /// already online it answers a page saying so (200) and does nothing. Only for a node
    /// known offline and not being launched: Jenkins starts a second launch of one that is
    /// still connecting.
    pub async fn launch_agent(&self, name: &str) -> Result<(), JenkinsError> {
        const OP: &str = "launch-agent";
        let url = format!("{}/launchSlaveAgent", self.computer_url(name));
        self.post_form(OP, name, &url).await
    }

    /// A form POST about node `name`; on a 403 that asks for a crumb (a password rather than
    /// an API token), fetch one (with its session cookie) and retry once. Jenkins answers a
    /// form POST with a redirect (or a page): both are success.
    async fn post_form(&self, op: &'static str, name: &str, url: &str) -> Result<(), JenkinsError> {
        let resp = self.send(op, Method::POST, url, &[]).await?;
        let resp = if resp.status == StatusCode::FORBIDDEN
            && String::from_utf8_lossy(&resp.body).contains("crumb")
        {
            let (field, crumb, cookie) = self.crumb().await?;
            let mut extra = vec![(field.as_str(), crumb.as_str())];
            if let Some(c) = cookie.as_deref() {
                extra.push(("cookie", c));
            }
            self.send(op, Method::POST, url, &extra).await?
        } else {
            resp
        };
        if resp.status.is_success() || resp.status.is_redirection() {
            Ok(())
        } else {
            Err(self.status_error(op, Some(name), &resp))
        }
    }

    async fn crumb(&self) -> Result<(String, String, Option<String>), JenkinsError> {
        const OP: &str = "crumb";
        let url = format!("{}/crumbIssuer/api/json", self.base);
        let resp = self.send(OP, Method::GET, &url, &[]).await?;
        if resp.status != StatusCode::OK {
            return Err(self.status_error(OP, None, &resp));
        }
        let c: Crumb = serde_json::from_slice(&resp.body)
            .map_err(|source| JenkinsError::Decode { op: OP, source })?;
        // Crumbs are bound to the web session since Jenkins 2.176: send its cookie back.
        let cookie = resp
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .collect::<Vec<_>>()
            .join("; ");
        Ok((
            c.crumb_request_field,
            c.crumb,
            (!cookie.is_empty()).then_some(cookie),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn why_templates_yield_labels() {
        assert_eq!(
            label_from_why("Waiting for next available executor on ‘macos’").as_deref(),
            Some("macos")
        );
        assert_eq!(
            label_from_why("There are no nodes with the label ‘mac && arm64’").as_deref(),
            Some("mac && arm64")
        );
        assert_eq!(label_from_why("‘mac-vm-07’ is offline"), None);
        assert_eq!(
            label_from_why("In the quiet period. Expires in 4 sec"),
            None
        );
    }

    #[test]
    fn busy_signal_treats_errors_as_unknown() {
        let idle = NodeState {
            idle: true,
            ..NodeState::default()
        };
        assert_eq!(busy_signal(&Ok(idle.clone())), JenkinsBusy::Idle);
        let busy = NodeState {
            idle: false,
            executors_busy: 1,
            ..idle
        };
        assert_eq!(busy_signal(&Ok(busy)), JenkinsBusy::Busy);
        let err = Err(JenkinsError::NoSuchNode { node: "x".into() });
        assert_eq!(busy_signal(&err), JenkinsBusy::Unknown);
    }

    #[test]
    fn the_node_list_gives_the_idle_online_agents_sorted() {
        // The shape of ci-apis.md §5.2's fixture, as `tree=computer[…]` returns it.
        let body = br#"{"_class": "hudson.model.ComputerSet", "busyExecutors": 1, "totalExecutors": 4,
          "computer": [
            {"_class": "hudson.model.Hudson$MasterComputer", "displayName": "Built-In Node",
             "idle": true, "offline": false, "numExecutors": 0, "executors": [],
             "assignedLabels": [{"name": "built-in"}]},
            {"_class": "hudson.slaves.SlaveComputer", "displayName": "mac-vm-09", "idle": true,
             "assignedLabels": [{"name": "mac-vm-09"}, {"name": "macos"}],
             "offline": false, "temporarilyOffline": false, "numExecutors": 1,
             "executors": [{"idle": true, "currentExecutable": null}]},
            {"_class": "hudson.slaves.SlaveComputer", "displayName": "mac-vm-07", "idle": false,
             "offline": false, "numExecutors": 1,
             "executors": [{"idle": false, "currentExecutable": {"url": "https://j/job/x/17/"}}]},
            {"_class": "hudson.slaves.SlaveComputer", "displayName": "mac-vm-08", "idle": true,
             "offline": true, "temporarilyOffline": false, "numExecutors": 1,
             "offlineCauseReason": "Offline because computer was idle; it will be relaunched when needed.",
             "executors": [{"idle": true, "currentExecutable": null}]},
            {"_class": "hudson.slaves.SlaveComputer", "displayName": "mac-vm-03", "idle": true,
             "assignedLabels": [{"name": "mac-vm-03"}, {"name": "macos"}],
             "offline": false, "numExecutors": 1, "executors": [{"idle": true}]}]}"#;
        let nodes = parse_nodes(body).unwrap();
        assert_eq!(nodes.len(), 5);
        assert_eq!(
            idle_agents(&nodes, None),
            ["Built-In Node", "mac-vm-03", "mac-vm-09"]
        );
        // Only the SPI nodes (`[jenkins] labels`): not the built-in node, which sorts first.
        let spi = ["macos".to_owned()];
        assert_eq!(
            idle_agents(&nodes, Some(&spi[..])),
            ["mac-vm-03", "mac-vm-09"]
        );
        assert_eq!(idle_agents(&nodes, Some(&[][..])), Vec::<String>::new());
        assert!(parse_nodes(b"{\"computer\": 3}").is_err());
        assert_eq!(parse_nodes(b"{}").unwrap(), []);
    }

    #[test]
    fn fixture_computer_parses() {
        let raw: RawComputer = serde_json::from_str(
            r#"{"_class": "hudson.slaves.SlaveComputer", "displayName": "mac-vm-07",
               "assignedLabels": [{"name": "mac-vm-07"}, {"name": "macos"}],
               "idle": false, "offline": false, "temporarilyOffline": false, "offlineCauseReason": "",
               "numExecutors": 1,
               "executors": [{"idle": false, "number": 0, "progress": 42,
                              "currentExecutable": {"url": "https://jenkins.example/job/x/17/"}}]}"#,
        )
        .unwrap();
        let n = NodeState::from(raw);
        assert_eq!(n.executors_busy, 1);
        assert_eq!(n.current_builds, ["https://jenkins.example/job/x/17/"]);
        assert_eq!(n.labels, ["mac-vm-07", "macos"]);
    }
}
