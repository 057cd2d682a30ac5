//! Check `api.jenkins-launch`: the "Launch agent" call a free host makes for a build that
//! accepts any node (`launch_any_node_after`; `JenkinsClient::launch_agent`, `POST
//! /computer/<node>/launchSlaveAgent`). It must not start a launch on a real controller —
//! that would run the node's start script and boot a VM — so it calls it only for the
//! `--jenkins-node` while that node is **online**: Jenkins then answers its "already
//! launched" page and does nothing (`SlaveComputer.doLaunchSlaveAgent` returns before
//! `connect` when the agent has a channel), which still proves the endpoint, the POST
//! without a crumb (an API token is exempt) and the Agent/Connect permission (403 without
//! it: a fail naming the permission). An offline node is skipped; the node list is read
//! again after the call to show the node still online.

use std::time::Duration;

use anyhow::Context as _;
use marbled::ci::jenkins::{JenkinsClient, JenkinsError};
use serde_json::json;

use super::record::{Obs, Verdict};
use super::target::Env;

/// The check.
pub async fn check(env: &Env) {
    let limit = env.pick(Duration::from_secs(60), Duration::from_secs(30));
    env.rec
        .check("api.jenkins-launch", limit, async |obs: &Obs| {
            launch(env, obs).await
        })
        .await;
}

async fn launch(env: &Env, obs: &Obs) -> anyhow::Result<Verdict> {
    // The fake controller answers as Jenkins does: the "already launched" page for a connected
    // node, a launch (counted) for a disconnected one.
    match super::apis::fake_or_operator_jenkins(env).await? {
        Ok(target) => try_launch(&target.client, &target.node, obs).await,
        Err(skip) => Ok(skip),
    }
}

/// Read `node`, call `launchSlaveAgent` only if it is online, read it again: the verdict.
async fn try_launch(client: &JenkinsClient, node: &str, obs: &Obs) -> anyhow::Result<Verdict> {
    let before = client.node(node).await.context("read the node")?;
    obs.note(
        "node before",
        json!({"offline": before.offline, "temporarily_offline": before.temporarily_offline}),
    );
    if before.offline {
        return Ok(Verdict::Skip(format!(
            "node {node} is offline: launching it would run its start script; run the check \
             while its agent is online"
        )));
    }
    let result = client.launch_agent(node).await;
    let after = client.node(node).await.context("read the node again")?;
    obs.note(
        "launch",
        json!({"result": format!("{result:?}"), "offline_after": after.offline}),
    );
    Ok(match result {
        Ok(()) if !after.offline => Verdict::Pass(format!(
            "{node}: POST launchSlaveAgent accepted for an online agent (Jenkins' \"already \
             launched\": nothing started); the user may launch agents"
        )),
        Ok(()) => Verdict::Fail(format!("{node} went offline after the launch call")),
        Err(err @ JenkinsError::Denied { .. }) => Verdict::Fail(format!(
            "{err}: the [jenkins] user needs the Agent/Connect permission for \
             launch_any_node_after (or set it to \"0s\")"
        )),
        Err(err) => return Err(err).context("POST launchSlaveAgent"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_jenkins::FakeJenkins;
    use marbled::ci::secret::Secret;

    fn client(fake: &FakeJenkins) -> JenkinsClient {
        JenkinsClient::new(&fake.url, "u", &Secret::new("t"), Duration::from_secs(5))
    }

    #[tokio::test]
    async fn an_online_node_passes_a_denied_launch_fails_by_permission_an_offline_node_is_left_alone()
     {
        let fake = FakeJenkins::start(&["n1"]).await;
        let obs = Obs::default();
        let pass = try_launch(&client(&fake), "n1", &obs).await.unwrap();
        assert!(
            matches!(&pass, Verdict::Pass(t) if t.contains("already")),
            "{pass:?}"
        );
        assert_eq!(fake.launches("n1"), 0, "nothing launched");
        fake.set_deny_launch(true);
        let fail = try_launch(&client(&fake), "n1", &obs).await.unwrap();
        assert!(
            matches!(&fail, Verdict::Fail(t) if t.contains("Agent/Connect")),
            "{fail:?}"
        );
        fake.set_deny_launch(false);
        fake.set_connected("n1", false);
        let skip = try_launch(&client(&fake), "n1", &obs).await.unwrap();
        assert!(
            matches!(&skip, Verdict::Skip(t) if t.contains("offline")),
            "{skip:?}"
        );
        assert_eq!(fake.launches("n1"), 0, "an offline node is never launched");
    }
}
