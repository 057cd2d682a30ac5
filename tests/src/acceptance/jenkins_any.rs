//! Check `api.jenkins-any-node`: read-only, what the simulator's model of Jenkins' dispatch
//! (`marble-sim`, docs/SIMULATOR.md "Jenkins (SPI)"; `sim_jenkins_any.rs`,
//! `policy_spi_starvation`) takes for granted on the real controller: a free executor is
//! given the **oldest** buildable item it accepts, and an SPI node accepts a build that may
//! run on any node. Neither can be watched without queueing builds that compete for
//! production executors (docs/ACCEPTANCE.md says why the suite does not), so the check reads
//! the two settings that decide them:
//!
//! - the node's usage mode, `<mode>` of `GET /computer/<node>/config.xml` (`NORMAL`: it
//!   takes builds that do not name it; `EXCLUSIVE`: only builds whose label expression
//!   matches it, so a build for any node never runs there). Needs Agent/ExtendedRead (it
//!   comes with Agent/Configure); the `api/json` of a computer does not carry the mode.
//! - the controller's plugins (`GET /pluginManager/api/json?depth=1`): an active queue
//!   sorter ([`REORDERING_PLUGINS`]) replaces Jenkins' default order (buildable items in
//!   the order they became buildable). Needs Overall/SystemRead or Administer.
//!
//! The field names are Jenkins' own: `PluginWrapper` exports `getShortName` and `isActive`
//! (`shortName`, `active` in the JSON), a permanent agent's `config.xml` is its `Slave`
//! serialised with `<mode>NORMAL</mode>` or `<mode>EXCLUSIVE</mode>`, and the Priority Sorter
//! plugin's short name is its Maven artifactId `PrioritySorter` (jenkinsci/jenkins
//! `core/src/main/java/hudson/PluginWrapper.java`, jenkinsci/priority-sorter-plugin `pom.xml`,
//! read for this check).
//!
//! It also reports the node's labels as the daemon reads them (`JenkinsClient::node`), for
//! the operator to compare with `[jenkins] labels`, and its retention strategy (the `class`
//! of `<retentionStrategy>` in the same config.xml), which decides which node Jenkins
//! launches for a build for any node: `RetentionStrategy$Demand` the first offline node by
//! name, again after a refusal (the simulator's `sim.jenkins_launch = "first-offline"`),
//! `$Always` every offline node all the time. Neither fails: policy `demand` counts such a
//! build on the hosts Jenkins asks (docs/SCHEDULER.md, "Fair share"), whichever they are. A setting that breaks the model fails by
//! name; one that cannot be read makes the check skip, naming the permission.

use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use http::{Method, StatusCode};
use marbled::ci::http::HttpClient;
use marbled::ci::jenkins::JenkinsClient;
use marbled::ci::secret::Secret;
use serde_json::{Value, json};

use super::record::{Obs, Verdict};
use super::target::Env;

/// Plugins (short names) whose queue sorter or manual moves change which buildable item a
/// free executor gets first.
pub const REORDERING_PLUGINS: &[&str] = &[
    "PrioritySorter",
    "multi-branch-priority-sorter",
    "dependency-queue-plugin",
    "simple-queue",
];

/// What was read (`Err`: why it could not be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnyNodeView {
    /// The node.
    pub node: String,
    /// Its `<mode>` (`NORMAL` / `EXCLUSIVE`).
    pub mode: Result<String, String>,
    /// Active plugins (short names).
    pub active_plugins: Result<Vec<String>, String>,
    /// Its labels as the daemon reads them.
    pub labels: Vec<String>,
    /// Its retention strategy's class, when config.xml was read and names one.
    pub retention: Option<String>,
}

/// The `class` of `<retentionStrategy>` in a node's `config.xml`.
pub fn retention_of(config_xml: &str) -> Option<String> {
    let start = config_xml.find("<retentionStrategy")?;
    let tag = &config_xml[start..start + config_xml[start..].find('>')?];
    let class = tag.find("class=\"")? + "class=\"".len();
    let len = tag[class..].find('"')?;
    Some(tag[class..class + len].to_owned())
}

/// Which node Jenkins launches for a build any node can run, under `class`.
pub fn launch_order(class: &str) -> String {
    match class.rsplit(['$', '.']).next().unwrap_or(class) {
        "Demand" => "Jenkins launches the first offline node by name for a build for any node, \
                     and the same node again after a refusal (marble-sim's default order, \
                     `sim.jenkins_launch = \"first-offline\"`)"
            .to_owned(),
        "Always" => "Jenkins relaunches every offline node all the time, so every host is asked \
                     (no simulator model: `\"in-turn\"` is the nearest)"
            .to_owned(),
        other => {
            format!("retention strategy {other}: the simulator has no model of its launch order")
        }
    }
}

/// `<mode>` of a node's `config.xml`.
pub fn mode_of(config_xml: &str) -> Option<String> {
    let start = config_xml.find("<mode>")? + "<mode>".len();
    let len = config_xml[start..].find("</mode>")?;
    Some(config_xml[start..start + len].trim().to_owned())
}

/// Short names of the active plugins in `/pluginManager/api/json?depth=1`.
pub fn active_plugins(body: &[u8]) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let plugins = v
        .get("plugins")
        .and_then(Value::as_array)
        .ok_or("no `plugins` array")?;
    Ok(plugins
        .iter()
        .filter(|p| p.get("active").and_then(Value::as_bool) != Some(false))
        .filter_map(|p| {
            p.get("shortName")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect())
}

/// Fail on a setting that breaks the model, skip (naming what is missing) when a setting
/// could not be read, pass otherwise.
pub fn verdict(v: &AnyNodeView) -> Verdict {
    let node = &v.node;
    let mut fails = Vec::new();
    if let Ok(mode) = &v.mode
        && mode != "NORMAL"
    {
        fails.push(format!(
            "node {node} is in mode {mode} (\"Only build jobs with label expressions matching this node\"): Jenkins never gives it a build for any node, which the simulator (`vm = \"any\"`) and policy demand's share for such builds assume; set its Usage to \"Use this node as much as possible\" or expect builds for any node to wait for other nodes"
        ));
    }
    if let Ok(active) = &v.active_plugins {
        let sorters: Vec<&str> = (REORDERING_PLUGINS.iter().copied())
            .filter(|p| active.iter().any(|a| a == p))
            .collect();
        if !sorters.is_empty() {
            fails.push(format!(
                "active plugin(s) {} reorder the build queue: a free executor may not get the oldest buildable build, as the simulator assumes (docs/SIMULATOR.md \"Jenkins (SPI)\")",
                sorters.join(", ")
            ));
        }
    }
    if !fails.is_empty() {
        return Verdict::Fail(fails.join("; "));
    }
    let mut unread = Vec::new();
    if let Err(e) = &v.mode {
        unread.push(format!(
            "the mode of {node} (GET /computer/{node}/config.xml needs Agent/ExtendedRead): {e}"
        ));
    }
    if let Err(e) = &v.active_plugins {
        unread.push(format!(
            "the plugins (GET /pluginManager/api/json needs Overall/SystemRead): {e}"
        ));
    }
    if !unread.is_empty() {
        return Verdict::Skip(format!(
            "could not read {} (give the suite's Jenkins user that permission, or check it in the UI)",
            unread.join("; and ")
        ));
    }
    let active = v.active_plugins.as_ref().map_or(0, Vec::len);
    let retention = v.retention.as_deref().map_or_else(
        || "no retention strategy read".to_owned(),
        |class| format!("retention {class}: {}", launch_order(class)),
    );
    Verdict::Pass(format!(
        "node {node}: mode NORMAL (takes builds for any node), labels [{}]; none of {} among {active} active plugins: Jenkins' default order, oldest buildable first; {retention}",
        v.labels.join(", "),
        REORDERING_PLUGINS.join(", ")
    ))
}

/// The check.
pub async fn check(env: &Env) {
    let limit = env.pick(Duration::from_secs(60), Duration::from_secs(30));
    env.rec
        .check("api.jenkins-any-node", limit, async |obs: &Obs| {
            any_node(env, obs).await
        })
        .await;
}

/// A node name as one URL path segment.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET base+path` with the API token; the body of a 200, else the status as the error.
async fn get(
    http: &HttpClient,
    base: &str,
    auth: &Secret,
    path: &str,
) -> anyhow::Result<Result<Vec<u8>, String>> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let resp = http
        .send(
            Method::GET,
            &url,
            &[
                ("authorization", auth.expose()),
                ("accept-language", "en"),
                ("user-agent", "marbled"),
            ],
            None,
        )
        .await
        .with_context(|| format!("GET {path}"))?;
    Ok(match resp.status {
        StatusCode::OK => Ok(resp.body.to_vec()),
        s => Err(format!("HTTP {}", s.as_u16())),
    })
}

async fn any_node(env: &Env, obs: &Obs) -> anyhow::Result<Verdict> {
    let fake;
    let (url, user, token, node) = if env.is_sim() {
        // The fake controller: the node in mode NORMAL, a few ordinary plugins.
        fake = crate::fake_jenkins::FakeJenkins::start(&["marble-acceptance-node"]).await;
        fake.set_plugins(&[
            ("git", true),
            ("workflow-aggregator", true),
            ("PrioritySorter", false),
        ]);
        (
            fake.url.clone(),
            "acceptance".to_owned(),
            Secret::new("acceptance-token"),
            "marble-acceptance-node".to_owned(),
        )
    } else {
        match super::apis::operator_jenkins(env)? {
            Ok(jenkins) => jenkins,
            Err(skip) => return Ok(skip),
        }
    };
    let view = read_view(&url, &user, &token, &node).await?;
    let reordering: Option<Vec<&str>> = view.active_plugins.as_ref().ok().map(|a| {
        (REORDERING_PLUGINS.iter().copied())
            .filter(|p| a.iter().any(|x| x == p))
            .collect()
    });
    obs.note(
        "any-node",
        json!({"node": view.node, "mode": format!("{:?}", view.mode), "labels": view.labels,
               "retention": view.retention,
               "active_plugins": view.active_plugins.as_ref().map(Vec::len).map_err(Clone::clone),
               "reordering_plugins_active": reordering}),
    );
    Ok(verdict(&view))
}

/// Reads what [`verdict`] judges from the controller at `url` (the node through the
/// daemon's `JenkinsClient::node`, the rest with the same credentials).
pub async fn read_view(
    url: &str,
    user: &str,
    token: &Secret,
    node: &str,
) -> anyhow::Result<AnyNodeView> {
    let client = JenkinsClient::new(url, user, token, Duration::from_secs(20));
    let state = client.node(node).await.context("read the node")?;
    let auth = Secret::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", token.expose()))
    ));
    let http = HttpClient::new(Duration::from_secs(20));
    let config = get(
        &http,
        url,
        &auth,
        &format!("/computer/{}/config.xml", segment(node)),
    )
    .await?;
    let config = config.map(|b| String::from_utf8_lossy(&b).into_owned());
    let retention = config.as_ref().ok().and_then(|xml| retention_of(xml));
    let mode =
        config.and_then(|xml| mode_of(&xml).ok_or_else(|| "no <mode> in config.xml".to_owned()));
    let plugins = get(
        &http,
        url,
        &auth,
        "/pluginManager/api/json?depth=1&tree=plugins%5BshortName,active%5D",
    )
    .await?;
    Ok(AnyNodeView {
        node: node.to_owned(),
        mode,
        active_plugins: plugins.and_then(|b| active_plugins(&b)),
        labels: state.labels,
        retention,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> AnyNodeView {
        AnyNodeView {
            node: "macphsft01".to_owned(),
            mode: Ok("NORMAL".to_owned()),
            active_plugins: Ok(vec!["git".to_owned(), "credentials".to_owned()]),
            labels: vec!["macphsft01".to_owned(), "mac15".to_owned()],
            retention: Some("hudson.slaves.RetentionStrategy$Demand".to_owned()),
        }
    }

    #[test]
    fn reading_the_mode_and_the_plugins() {
        let xml = "<?xml version='1.1' encoding='UTF-8'?>\n<slave>\n  <name>macphsft01</name>\n  <numExecutors>1</numExecutors>\n  <mode>EXCLUSIVE</mode>\n  <label>mac15 arm64</label>\n</slave>";
        assert_eq!(mode_of(xml).as_deref(), Some("EXCLUSIVE"));
        assert_eq!(mode_of("<slave/>"), None);
        let body = br#"{"_class":"hudson.LocalPluginManager","plugins":[{"active":true,"shortName":"git"},{"active":false,"shortName":"PrioritySorter"},{"shortName":"credentials"}]}"#;
        assert_eq!(
            active_plugins(body),
            Ok(vec!["git".to_owned(), "credentials".to_owned()])
        );
        assert!(active_plugins(b"<html>login</html>").is_err());
        assert!(active_plugins(b"{}").is_err());
        let demand = "<slave>\n  <mode>NORMAL</mode>\n  <retentionStrategy class=\"hudson.slaves.RetentionStrategy$Demand\">\n    <inDemandDelay>0</inDemandDelay>\n  </retentionStrategy>\n</slave>";
        assert_eq!(
            retention_of(demand).as_deref(),
            Some("hudson.slaves.RetentionStrategy$Demand")
        );
        let always =
            "<slave><retentionStrategy class=\"hudson.slaves.RetentionStrategy$Always\"/></slave>";
        assert!(launch_order(&retention_of(always).unwrap()).contains("every offline node"));
        assert!(launch_order("hudson.slaves.RetentionStrategy$Demand").contains("first-offline"));
        assert!(launch_order("org.example.CloudRetention").contains("CloudRetention"));
        assert_eq!(retention_of(xml), None);
        assert_eq!(segment("mac phsft/01"), "mac%20phsft%2F01");
    }

    #[test]
    fn a_normal_node_without_a_queue_sorter_passes() {
        assert!(
            matches!(verdict(&view()), Verdict::Pass(t) if t.contains("mode NORMAL") && t.contains("mac15") && t.contains("first offline node by name"))
        );
    }

    #[test]
    fn an_exclusive_node_or_an_active_queue_sorter_fails_by_name() {
        let v = AnyNodeView {
            mode: Ok("EXCLUSIVE".to_owned()),
            ..view()
        };
        assert!(
            matches!(verdict(&v), Verdict::Fail(t) if t.contains("node macphsft01 is in mode EXCLUSIVE"))
        );
        let v = AnyNodeView {
            active_plugins: Ok(vec!["git".to_owned(), "PrioritySorter".to_owned()]),
            ..view()
        };
        assert!(
            matches!(verdict(&v), Verdict::Fail(t) if t.contains("PrioritySorter reorder the build queue"))
        );
        // A fail is a fail even when the other setting could not be read.
        let v = AnyNodeView {
            mode: Ok("EXCLUSIVE".to_owned()),
            active_plugins: Err("HTTP 403".to_owned()),
            ..view()
        };
        assert!(matches!(verdict(&v), Verdict::Fail(_)));
    }

    /// Through HTTP against the fake controller: what `read_view` reads decides the verdict.
    #[tokio::test]
    async fn the_fake_controller_read_over_http_passes_and_fails_as_configured() {
        let fake = crate::fake_jenkins::FakeJenkins::start(&["mac01"]).await;
        let token = Secret::new("t");
        let read = async || {
            read_view(&fake.url, "u", &token, "mac01")
                .await
                .expect("read")
        };
        fake.set_plugins(&[("git", true), ("PrioritySorter", false)]);
        let v = read().await;
        assert_eq!(v.mode, Ok("NORMAL".to_owned()));
        assert_eq!(
            v.retention.as_deref(),
            Some("hudson.slaves.RetentionStrategy$Demand")
        );
        assert!(matches!(verdict(&v), Verdict::Pass(_)), "{v:?}");
        fake.set_exclusive("mac01", true);
        assert!(matches!(verdict(&read().await), Verdict::Fail(t) if t.contains("mode EXCLUSIVE")));
        fake.set_exclusive("mac01", false);
        fake.set_plugins(&[("PrioritySorter", true)]);
        assert!(matches!(verdict(&read().await), Verdict::Fail(t) if t.contains("PrioritySorter")));
        // An unknown node is an error, not a verdict.
        assert!(read_view(&fake.url, "u", &token, "nope").await.is_err());
    }

    #[test]
    fn an_unreadable_setting_skips_naming_the_permission() {
        let v = AnyNodeView {
            mode: Err("HTTP 403".to_owned()),
            ..view()
        };
        assert!(
            matches!(verdict(&v), Verdict::Skip(t) if t.contains("Agent/ExtendedRead") && t.contains("HTTP 403"))
        );
        let v = AnyNodeView {
            active_plugins: Err("HTTP 403".to_owned()),
            ..view()
        };
        assert!(matches!(verdict(&v), Verdict::Skip(t) if t.contains("Overall/SystemRead")));
    }
}
