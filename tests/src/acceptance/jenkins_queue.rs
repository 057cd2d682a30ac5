//! Check `api.jenkins-queue`: the Jenkins build queue as policy `demand` reads it
//! (`GET /queue/api/json`, `JenkinsClient::queue_body` and `client::parse_queue`, feeding
//! `DemandSnapshot.jenkins_queue`). Read-only. The daemon's parser reads a missing field as
//! 0 / false / empty (`#[serde(default)]`), so a controller that renamed or dropped one would
//! make every SPI request look new or not buildable without an error; this check therefore
//! looks at the raw JSON: `items` is an array, and every item has a numeric `id` and
//! `inQueueSince`, a boolean `buildable`, a `task.name`, and — when buildable — a `why` that
//! names the label or node it waits for (`label_from_why`) or is the any-node text. It then
//! checks the daemon's parse agrees with the raw values. An empty queue cannot show item
//! fields: the check says so (skipped) instead of passing.

use std::time::Duration;

use anyhow::Context as _;
use marbled::ci::jenkins::client::parse_queue;
use marbled::ci::jenkins::{JenkinsClient, label_from_why};
use marbled::ci::secret::{Secret, read_secret_file};
use serde_json::{Value, json};

use super::record::{Obs, Verdict};
use super::target::Env;

/// Jenkins' `why` for a buildable item that may run on any node (no label to name).
const ANY_NODE_WHY: &str = "Waiting for next available executor";

/// What the raw queue showed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct QueueView {
    /// Items in the queue.
    pub items: usize,
    /// Of those, buildable.
    pub buildable: usize,
    /// Labels (or nodes) named by buildable items; `None` for any node.
    pub labels: Vec<Option<String>>,
    /// What is missing or of the wrong type, per item (empty: everything the daemon reads).
    pub problems: Vec<String>,
}

/// Inspect the raw body and compare it with the daemon's parse of the same bytes.
pub fn inspect(body: &[u8]) -> QueueView {
    let mut view = QueueView::default();
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            view.problems.push(format!("not JSON: {e}"));
            return view;
        }
    };
    let Some(items) = value.get("items").and_then(Value::as_array) else {
        view.problems
            .push("no `items` array at the top level".to_owned());
        return view;
    };
    view.items = items.len();
    // A refusal is named, and the fields are still looked at (they say why).
    let parsed = parse_queue(body).unwrap_or_else(|e| {
        view.problems
            .push(format!("the daemon's parser refused it: {e}"));
        Vec::new()
    });
    for (i, item) in items.iter().enumerate() {
        let id = item.get("id").and_then(Value::as_u64);
        let name = id.map_or(format!("item #{i}"), |id| format!("item {id}"));
        let mut missing = Vec::new();
        if id.is_none() {
            missing.push("id (number)");
        }
        let since = item.get("inQueueSince").and_then(Value::as_u64);
        if since.is_none() {
            missing.push("inQueueSince (number)");
        }
        let buildable = item.get("buildable").and_then(Value::as_bool);
        if buildable.is_none() {
            missing.push("buildable (boolean)");
        }
        if item.pointer("/task/name").and_then(Value::as_str).is_none() {
            missing.push("task.name (string)");
        }
        let why = item.get("why").and_then(Value::as_str);
        if buildable == Some(true) {
            view.buildable += 1;
            match why {
                None => missing.push("why (string, names the label)"),
                Some(w) => match label_from_why(w) {
                    Some(label) => view.labels.push(Some(label)),
                    None if w.trim() == ANY_NODE_WHY => view.labels.push(None),
                    None => view.problems.push(format!(
                        "{name}: buildable, but its why {w:?} names no label the daemon can read"
                    )),
                },
            }
        }
        if !missing.is_empty() {
            view.problems
                .push(format!("{name}: missing {}", missing.join(", ")));
        }
        if let Some(p) = parsed.get(i)
            && (Some(p.in_queue_since) != since || Some(p.buildable) != buildable)
        {
            view.problems.push(format!(
                "{name}: the daemon read inQueueSince {} buildable {}, the JSON says {since:?} {buildable:?}",
                p.in_queue_since, p.buildable
            ));
        }
    }
    view
}

/// The check.
pub async fn check(env: &Env) {
    let limit = env.pick(Duration::from_secs(60), Duration::from_secs(30));
    env.rec
        .check("api.jenkins-queue", limit, async |obs: &Obs| {
            queue(env, obs).await
        })
        .await;
}

/// The client a read-only Jenkins check uses: the fake controller's (`fake`, simulator mode)
/// or the one `--jenkins-*` names; `Err` is the check's skip when no credentials were given.
pub(super) fn read_only_client(
    env: &Env,
    fake: Option<&crate::fake_jenkins::FakeJenkins>,
) -> anyhow::Result<Result<JenkinsClient, Verdict>> {
    if let Some(fake) = fake {
        return Ok(Ok(JenkinsClient::new(
            &fake.url,
            "acceptance",
            &Secret::new("acceptance-token"),
            Duration::from_secs(20),
        )));
    }
    let Some(c) = &env.settings.jenkins else {
        return Ok(Err(Verdict::Skip(
            "no Jenkins credentials (--jenkins-url, --jenkins-user, --jenkins-token-file, --jenkins-node)".into(),
        )));
    };
    let token = read_secret_file(&c.token_file).context("the Jenkins token file")?;
    Ok(Ok(JenkinsClient::new(
        &c.url,
        &c.user,
        &token,
        Duration::from_secs(20),
    )))
}

async fn queue(env: &Env, obs: &Obs) -> anyhow::Result<Verdict> {
    let fake = if env.is_sim() {
        // The fake controller with two waiting builds of the shapes a real one sends: one
        // for a label, one for any node.
        let fake = crate::fake_jenkins::FakeJenkins::start(&["marble-acceptance-node"]).await;
        let since = marbled::clock::now_ms().saturating_sub(60_000);
        fake.queue_buildable(
            101,
            "root-spi-build",
            "Waiting for next available executor on ‘macphsft01’",
            since,
        );
        fake.queue_buildable(102, "root-any-node", ANY_NODE_WHY, since + 1_000);
        Some(fake)
    } else {
        None
    };
    let client = match read_only_client(env, fake.as_ref())? {
        Ok(client) => client,
        Err(skip) => return Ok(skip),
    };
    let body = client.queue_body().await.context("GET /queue/api/json")?;
    let view = inspect(&body);
    obs.note(
        "queue",
        json!({"bytes": body.len(), "items": view.items, "buildable": view.buildable,
               "labels": view.labels, "problems": view.problems}),
    );
    Ok(verdict(&view))
}

/// Fail on any problem; skip when no item could be looked at.
pub fn verdict(view: &QueueView) -> Verdict {
    if !view.problems.is_empty() {
        return Verdict::Fail(format!(
            "the queue JSON lacks what the daemon reads: {}",
            view.problems.join("; ")
        ));
    }
    if view.items == 0 {
        return Verdict::Skip(
            "the queue is empty: `items` is there, but no item to check inQueueSince, buildable, why and task on (run `--only apis` again while a build waits)".into(),
        );
    }
    let labels: Vec<String> = (view.labels.iter())
        .map(|l| l.clone().unwrap_or_else(|| "(any node)".to_owned()))
        .collect();
    Verdict::Pass(format!(
        "{} item(s), {} buildable, waiting for {}; inQueueSince, buildable, why and task.name present and read alike by the daemon",
        view.items,
        view.buildable,
        if labels.is_empty() {
            "nothing buildable".to_owned()
        } else {
            labels.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(items: &Value) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"_class": "hudson.model.Queue", "discoverableItems": [], "items": items}),
        )
        .expect("json")
    }

    fn item(id: u64, why: &str) -> Value {
        json!({"_class": "hudson.model.Queue$BuildableItem", "id": id, "why": why,
               "buildable": true, "blocked": false, "stuck": false, "inQueueSince": 1_700_000_000_000u64,
               "task": {"_class": "hudson.model.FreeStyleProject", "name": "root-spi"}})
    }

    #[test]
    fn a_queue_with_what_the_daemon_reads_passes_and_names_the_labels() {
        let v = inspect(&body(&json!([
            item(1, "Waiting for next available executor on ‘mac-spi’"),
            item(2, "Waiting for next available executor"),
        ])));
        assert_eq!(v.problems, Vec::<String>::new());
        assert_eq!(v.labels, vec![Some("mac-spi".to_owned()), None]);
        assert!(matches!(verdict(&v), Verdict::Pass(_)));
    }

    #[test]
    fn a_renamed_or_mistyped_field_fails_by_name() {
        let mut renamed = item(3, "Waiting for next available executor on ‘mac’");
        let since = renamed
            .as_object_mut()
            .and_then(|o| o.remove("inQueueSince"))
            .expect("field");
        renamed["queuedSince"] = since;
        renamed.as_object_mut().map(|o| o.remove("buildable"));
        let v = inspect(&body(&json!([renamed])));
        let text = match verdict(&v) {
            Verdict::Fail(t) => t,
            other => panic!("{other:?}"),
        };
        assert!(
            text.contains("item 3: missing inQueueSince (number), buildable (boolean)"),
            "{text}"
        );
        // The daemon's parser reads both as defaults: the comparison names it too.
        assert!(text.contains("the daemon read inQueueSince 0"), "{text}");
        let mut mistyped = item(5, "Waiting for next available executor on ‘mac’");
        mistyped["buildable"] = json!("true");
        let text = match verdict(&inspect(&body(&json!([mistyped])))) {
            Verdict::Fail(t) => t,
            other => panic!("{other:?}"),
        };
        assert!(text.contains("parser refused it"), "{text}");
        assert!(
            text.contains("item 5: missing buildable (boolean)"),
            "{text}"
        );
    }

    #[test]
    fn a_why_without_a_readable_label_or_no_items_array_fails_and_an_empty_queue_is_skipped() {
        let v = inspect(&body(&json!([item(
            4,
            "En attente d'un exécuteur sur ‘mac’"
        )])));
        assert!(matches!(verdict(&v), Verdict::Fail(t) if t.contains("names no label")));
        let v = inspect(br#"{"jobs": []}"#);
        assert!(matches!(verdict(&v), Verdict::Fail(t) if t.contains("no `items` array")));
        let v = inspect(b"<html>login</html>");
        assert!(matches!(verdict(&v), Verdict::Fail(t) if t.contains("not JSON")));
        let v = inspect(&body(&json!([])));
        assert!(matches!(verdict(&v), Verdict::Skip(_)));
    }
}
