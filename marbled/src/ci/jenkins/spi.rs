//! The SPI busy signal with `[jenkins]`: the guest probe (a build step is a child of the
//! agent JVM) combined with the controller's view of the node (executors running a build).
//!
//! Either saying busy makes the VM busy; only both saying idle makes it idle. The guest
//! probe stays authoritative for "unknown" (it is what sees the VM itself). A controller that
//! cannot be asked makes an otherwise idle VM unknown — never stopped on a guess — except
//! when Jenkins has no node of that name (a VM that is not a Jenkins node: the guest probe
//! alone decides).
//!
//! During a drain the SPI VMs' nodes are marked temporarily offline (and cleared again on
//! `resume`), so Jenkins stops sending builds to a host that will not take them.

use std::sync::Arc;

use super::client::{JenkinsClient, JenkinsError, NodeState};
use crate::config::{Config, JenkinsSection};
use crate::sched::ProbeResult;

/// The controller client and the VM → node mapping.
pub struct JenkinsNodes {
    client: JenkinsClient,
    section: JenkinsSection,
}

impl std::fmt::Debug for JenkinsNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JenkinsNodes")
            .field("url", &self.section.url)
            .finish_non_exhaustive()
    }
}

impl JenkinsNodes {
    /// Build from `[jenkins]` (loads the token now).
    pub fn new(section: &JenkinsSection) -> Result<Arc<Self>, JenkinsError> {
        Ok(Arc::new(Self {
            client: JenkinsClient::from_section(section)?,
            section: section.clone(),
        }))
    }

    /// The nodes of `config`'s `[jenkins]` (None without it). One that cannot be built is
    /// logged and left out: SPI busy probes then use the guest alone.
    pub fn for_config(config: &Config) -> Option<Arc<Self>> {
        let section = config.jenkins.as_ref()?;
        Self::new(section)
            .map_err(|err| {
                tracing::error!(
                    error = %crate::chain::ErrorChain(&err),
                    "[jenkins] unusable; SPI busy probes use the guest alone"
                );
            })
            .ok()
    }

    /// The guest probe's answer for `vm`, combined with the controller's.
    pub async fn refine(&self, vm: &str, guest: ProbeResult) -> ProbeResult {
        if !matches!(guest, ProbeResult::Idle) {
            // Busy or unknown already holds every stop; no need to ask.
            return guest;
        }
        let node = self.section.node_for(vm);
        combine(guest, node, &self.client.node(node).await)
    }
}

impl JenkinsNodes {
    /// Mark (`offline = true`) or clear the temporary-offline mark of the nodes of `vms`, so
    /// Jenkins sends no new build to a host being drained. Failures are logged: a drain
    /// still holds on MARBLE's side (no slot is granted), Jenkins then only sees refusals.
    pub async fn set_nodes_offline(&self, vms: &[String], offline: bool, message: &str) {
        for vm in vms {
            let node = self.section.node_for(vm);
            let result = if offline {
                self.client.set_offline(node, message).await
            } else {
                self.client.set_online(node).await
            };
            match result {
                Ok(outcome) => tracing::info!(vm = %vm, node, offline, ?outcome, "jenkins node"),
                Err(JenkinsError::NoSuchNode { .. }) => {}
                Err(err) => tracing::warn!(
                    vm = %vm,
                    node,
                    error = %crate::chain::ErrorChain(&err),
                    "could not change the jenkins node's offline mark"
                ),
            }
        }
    }
}

impl JenkinsNodes {
    /// Ask Jenkins to launch `node` (the scheduler's `Effect::LaunchJenkinsNode`). A refusal
    /// is logged with what to fix: the token's user needs the Agent/Connect permission.
    pub async fn launch(&self, vm: &str, node: &str) {
        match self.client.launch_agent(node).await {
            Ok(()) => tracing::info!(vm = %vm, node, "asked jenkins to launch the node"),
            Err(err @ JenkinsError::Denied { .. }) => tracing::warn!(
                vm = %vm,
                node,
                error = %crate::chain::ErrorChain(&err),
                "jenkins refused to launch the node: give [jenkins] user the Agent/Connect \
                 permission, or set scheduler.launch_any_node_after = \"0s\""
            ),
            Err(err) => tracing::warn!(
                vm = %vm,
                node,
                error = %crate::chain::ErrorChain(&err),
                "could not ask jenkins to launch the node"
            ),
        }
    }
}

/// Combine an idle-or-not guest answer with the node read (pure; see the module doc).
pub fn combine(
    guest: ProbeResult,
    node: &str,
    read: &Result<NodeState, JenkinsError>,
) -> ProbeResult {
    if !matches!(guest, ProbeResult::Idle) {
        return guest;
    }
    match read {
        Ok(state) if state.executors_busy > 0 || !state.current_builds.is_empty() => {
            ProbeResult::Busy(format!(
                "Jenkins node {node}: {} executor(s) busy{}",
                state.executors_busy.max(1),
                state
                    .current_builds
                    .first()
                    .map(|b| format!(" ({b})"))
                    .unwrap_or_default()
            ))
        }
        Ok(_) | Err(JenkinsError::NoSuchNode { .. }) => guest,
        Err(err) => ProbeResult::Unknown(format!(
            "guest idle but Jenkins could not be asked about node {node}: {}",
            crate::chain::ErrorChain(err)
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn node(busy: u32, builds: &[&str]) -> Result<NodeState, JenkinsError> {
        Ok(NodeState {
            name: "spi14".into(),
            offline: false,
            idle: busy == 0,
            temporarily_offline: false,
            num_executors: 1,
            executors_busy: busy,
            current_builds: builds.iter().map(|b| (*b).to_owned()).collect(),
            offline_cause: String::new(),
            labels: vec![],
        })
    }

    #[test]
    fn either_busy_is_busy_both_idle_is_idle() {
        let busy = combine(
            ProbeResult::Idle,
            "spi14",
            &node(1, &["https://j/job/x/7/"]),
        );
        assert!(
            matches!(&busy, ProbeResult::Busy(why) if why.contains("spi14") && why.contains("job/x/7")),
            "{busy:?}"
        );
        assert_eq!(
            combine(ProbeResult::Idle, "spi14", &node(0, &[])),
            ProbeResult::Idle
        );
        let guest_busy = ProbeResult::Busy("java child".into());
        assert_eq!(
            combine(guest_busy.clone(), "spi14", &node(0, &[])),
            guest_busy
        );
    }

    #[test]
    fn an_unreachable_controller_makes_idle_unknown_but_a_missing_node_does_not() {
        let down = Err(JenkinsError::Unexpected {
            op: "node",
            status: 503,
            excerpt: "down".into(),
        });
        assert!(matches!(
            combine(ProbeResult::Idle, "spi14", &down),
            ProbeResult::Unknown(why) if why.contains("spi14")
        ));
        let missing = Err(JenkinsError::NoSuchNode {
            node: "spi14".into(),
        });
        assert_eq!(
            combine(ProbeResult::Idle, "spi14", &missing),
            ProbeResult::Idle
        );
        let unknown = ProbeResult::Unknown("exec failed".into());
        assert_eq!(combine(unknown.clone(), "spi14", &node(1, &[])), unknown);
    }
}
