//! Check `api.jenkins-nodes`: Jenkins' node list as policy `demand` reads it
//! (`GET /computer/api/json?tree=computer[…]`, `JenkinsClient::nodes_body` and
//! `client::parse_nodes`, feeding `DemandSnapshot.jenkins_idle_agents`: which idle agent is
//! a spare that may give its host up for a warm runner, `agent_spare_handover`). Read-only.
//! The daemon's parser reads a missing field as false / empty (`#[serde(default)]`): a
//! controller that dropped `offline` would make every disconnected node look online and
//! idle, and a spare be taken where the fleet has no idle agent left. So the check looks at
//! the raw JSON: `computer` is an array, and every entry has a string `displayName`, booleans
//! `offline` and `idle`, and an `executors` array; then it checks the daemon's parse agrees
//! and names the agents the daemon counts as idle. The built-in node is always listed, so an
//! empty list is a failure, not a skip.

use std::time::Duration;

use anyhow::Context as _;
use marbled::ci::jenkins::client::{idle_agents, parse_nodes};
use serde_json::{Value, json};

use super::record::{Obs, Verdict};
use super::target::Env;

/// What the raw node list showed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NodesView {
    /// Nodes listed (the built-in node included).
    pub nodes: usize,
    /// The agents the daemon counts as online and idle, sorted.
    pub idle: Vec<String>,
    /// What is missing or of the wrong type, per node (empty: everything the daemon reads).
    pub problems: Vec<String>,
}

/// Inspect the raw body and compare it with the daemon's parse of the same bytes.
pub fn inspect(body: &[u8]) -> NodesView {
    let mut view = NodesView::default();
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            view.problems.push(format!("not JSON: {e}"));
            return view;
        }
    };
    let Some(computers) = value.get("computer").and_then(Value::as_array) else {
        view.problems
            .push("no `computer` array at the top level".to_owned());
        return view;
    };
    view.nodes = computers.len();
    let parsed = parse_nodes(body).unwrap_or_else(|e| {
        view.problems
            .push(format!("the daemon's parser refused it: {e}"));
        Vec::new()
    });
    for (i, node) in computers.iter().enumerate() {
        let name = node.get("displayName").and_then(Value::as_str);
        let label = name.map_or(format!("node #{i}"), |n| format!("node {n:?}"));
        let mut missing = Vec::new();
        if name.is_none() {
            missing.push("displayName (string)");
        }
        let offline = node.get("offline").and_then(Value::as_bool);
        if offline.is_none() {
            missing.push("offline (boolean)");
        }
        let idle = node.get("idle").and_then(Value::as_bool);
        if idle.is_none() {
            missing.push("idle (boolean)");
        }
        if node.get("executors").and_then(Value::as_array).is_none() {
            missing.push("executors (array)");
        }
        if !missing.is_empty() {
            view.problems
                .push(format!("{label}: missing {}", missing.join(", ")));
        }
        if let Some(p) = parsed.get(i)
            && (Some(p.offline) != offline || Some(p.idle) != idle)
        {
            view.problems.push(format!(
                "{label}: the daemon read offline {} idle {}, the JSON says {offline:?} {idle:?}",
                p.offline, p.idle
            ));
        }
    }
    if view.nodes == 0 {
        view.problems
            .push("no node listed (Jenkins lists its built-in node at least)".to_owned());
    }
    view.idle = idle_agents(&parsed, None);
    view
}

/// The check.
pub async fn check(env: &Env) {
    let limit = env.pick(Duration::from_secs(60), Duration::from_secs(30));
    env.rec
        .check("api.jenkins-nodes", limit, async |obs: &Obs| {
            nodes(env, obs).await
        })
        .await;
}

async fn nodes(env: &Env, obs: &Obs) -> anyhow::Result<Verdict> {
    let fake = if env.is_sim() {
        // The fake controller with the three states a real one shows: an idle agent, one
        // running a build, and a demand node whose agent is not connected.
        let fake = crate::fake_jenkins::FakeJenkins::start(&[
            "macphsft01-SPI-VM-1",
            "macphsft02-SPI-VM-1",
            "macphsft03-SPI-VM-1",
        ])
        .await;
        fake.set_build(
            "macphsft02-SPI-VM-1",
            Some("https://jenkins.example/job/x/17/"),
        );
        fake.set_connected("macphsft03-SPI-VM-1", false);
        Some(fake)
    } else {
        None
    };
    let client = match super::jenkins_queue::read_only_client(env, fake.as_ref())? {
        Ok(client) => client,
        Err(skip) => return Ok(skip),
    };
    let body = client
        .nodes_body()
        .await
        .context("GET /computer/api/json")?;
    let view = inspect(&body);
    obs.note(
        "nodes",
        json!({"bytes": body.len(), "nodes": view.nodes, "idle": view.idle,
               "problems": view.problems}),
    );
    Ok(verdict(&view))
}

/// Fail on any problem, else pass naming the idle agents.
pub fn verdict(view: &NodesView) -> Verdict {
    if !view.problems.is_empty() {
        return Verdict::Fail(format!(
            "the node list lacks what the daemon reads: {}",
            view.problems.join("; ")
        ));
    }
    Verdict::Pass(format!(
        "{} node(s) with displayName, offline, idle and executors, read alike by the daemon; idle nodes: {}",
        view.nodes,
        if view.idle.is_empty() {
            "none".to_owned()
        } else {
            view.idle.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(computers: &Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"_class": "hudson.model.ComputerSet", "computer": computers}))
            .expect("json")
    }

    fn node(name: &str, offline: bool, idle: bool) -> Value {
        json!({"_class": "hudson.slaves.SlaveComputer", "displayName": name,
               "offline": offline, "idle": idle, "temporarilyOffline": false,
               "numExecutors": 1, "executors": [{"idle": idle}]})
    }

    #[test]
    fn a_list_with_what_the_daemon_reads_passes_and_names_the_idle_agents() {
        let v = inspect(&body(&json!([
            node("Built-In Node", false, true),
            node("mac-b", false, true),
            node("mac-a", true, true),
            node("mac-c", false, false),
        ])));
        assert_eq!(v.problems, Vec::<String>::new());
        assert_eq!(v.idle, ["Built-In Node", "mac-b"]);
        assert!(
            matches!(verdict(&v), Verdict::Pass(t) if t.contains("idle nodes: Built-In Node, mac-b"))
        );
    }

    #[test]
    fn a_dropped_offline_field_fails_by_name_and_so_does_an_empty_list() {
        let mut dropped = node("mac-a", true, true);
        dropped.as_object_mut().map(|o| o.remove("offline"));
        let v = inspect(&body(&json!([dropped])));
        let text = match verdict(&v) {
            Verdict::Fail(t) => t,
            other => panic!("{other:?}"),
        };
        assert!(
            text.contains("node \"mac-a\": missing offline (boolean)"),
            "{text}"
        );
        // Read as online by the daemon: the comparison names it too.
        assert!(text.contains("the daemon read offline false"), "{text}");
        assert!(
            matches!(verdict(&inspect(&body(&json!([])))), Verdict::Fail(t) if t.contains("no node listed"))
        );
        assert!(
            matches!(verdict(&inspect(b"{}")), Verdict::Fail(t) if t.contains("no `computer` array"))
        );
        assert!(matches!(verdict(&inspect(b"<html>")), Verdict::Fail(t) if t.contains("not JSON")));
    }
}
