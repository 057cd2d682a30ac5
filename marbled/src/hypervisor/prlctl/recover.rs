//! Resolving the operations a previous daemon left in the intent log (`intents.rs`) before
//! this one lists, starts or stops anything.
//!
//! The rule (docs/SCHEDULER.md, "After a crash"): for each inherited intent, find its child
//! — the `prlctl VERB … VM` processes `ps` shows (the recorded pid is one of them unless the
//! daemon died before writing it; a recorded pid that `ps` shows running something else was
//! reused after a reboot and is ignored) — and wait for it to exit, up to the deadline its
//! daemon would have killed it at (plus a grace); past that, kill its group as that daemon
//! would have (only a child `ps` confirmed; when `ps` cannot run, the recorded pid is waited
//! for but never killed). Then re-list until no VM is in a
//! transitional state (`starting`, `stopping`, …), bounded; only then clear the inherited
//! intents. Listings wait meanwhile, so the scheduler's first inventory is a settled one, and
//! the wait is loud: a WARN line when it begins and every [`WARN_EVERY`] while it lasts.

use std::time::Duration;

use marble_proto::PowerState;
use tokio::time::Instant;

use super::intents::Intent;
use super::{Prlctl, PrlctlError, kill_group};
use crate::clock::now_ms;

/// How often a child's liveness is checked.
const POLL: Duration = Duration::from_millis(100);
/// Between two WARN lines of one long wait.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// How long listings may keep showing transitional states once the children are gone;
/// after that the VMs count as holding the host (what the scheduler does with those states).
const SETTLE_BUDGET: Duration = Duration::from_secs(60);
/// Between two listings while states settle.
const SETTLE_POLL: Duration = Duration::from_millis(250);
/// Past an inherited call's own deadline, how long before its group is killed.
const GRACE: Duration = Duration::from_secs(5);

impl Prlctl {
    /// Inherited operations not yet resolved, described for `status`.
    pub(super) fn unresolved_now(&self) -> Vec<String> {
        self.intents.as_ref().map_or_else(Vec::new, |log| {
            log.inherited().iter().map(Intent::describe).collect()
        })
    }

    /// Resolve the inherited intents (see the module doc); immediate when there are none.
    /// Concurrent callers wait for one resolution. An error (the listing failed, the log
    /// could not be written) leaves them inherited: the next caller tries again.
    pub(super) async fn resolve_inherited(&self) -> Result<(), PrlctlError> {
        let Some(log) = &self.intents else {
            return Ok(());
        };
        if log.inherited().is_empty() {
            return Ok(());
        }
        let _one = log.resolving.lock().await;
        let inherited = log.inherited();
        if inherited.is_empty() {
            return Ok(());
        }
        let list = describe(&inherited);
        tracing::warn!(
            "unresolved prlctl operations begun before the restart: {list}; nothing is started \
             or stopped until they are over and the listing has settled"
        );
        self.wait_for_children(&inherited, &list).await;
        self.relist_until_settled().await?;
        log.clear_inherited()
            .await
            .map_err(|source| PrlctlError::Io {
                argv: self.argv(&["(intent log)".to_owned()]),
                source,
            })?;
        tracing::info!("resolved the prlctl operations begun before the restart: {list}");
        Ok(())
    }

    /// Wait until no inherited child is alive, killing those past their deadline.
    async fn wait_for_children(&self, inherited: &[Intent], list: &str) {
        // (intent, its children, whether `ps` confirmed them as that prlctl call)
        let mut live: Vec<(&Intent, Vec<u32>, bool)> = Vec::new();
        for intent in inherited {
            let (pids, confirmed) = match self.find_by_argv(intent).await {
                // Another user's `prlctl` of the same verb and VM is waited for, not killed.
                Some(found) => (
                    found
                        .into_iter()
                        .filter(|p| intent.pid.is_none_or(|mine| mine == *p))
                        .collect(),
                    true,
                ),
                None => (intent.pid.into_iter().collect(), false),
            };
            live.push((intent, pids, confirmed));
        }
        let mut last_warn = Instant::now();
        loop {
            live.retain(|(_, pids, _)| pids.iter().any(|p| group_alive(*p)));
            if live.is_empty() {
                return;
            }
            let now = now_ms();
            for (intent, pids, confirmed) in &live {
                let grace = u64::try_from(GRACE.as_millis()).unwrap_or(u64::MAX);
                if *confirmed && now > intent.deadline_ms.saturating_add(grace) {
                    tracing::warn!(
                        "inherited `prlctl {}` outlived its timeout; killing its process group, \
                         as the daemon that ran it would have: {}",
                        intent.verb,
                        intent.describe()
                    );
                    for pid in pids {
                        kill_group(Some(*pid));
                    }
                }
            }
            if last_warn.elapsed() >= WARN_EVERY {
                tracing::warn!("still waiting on unresolved prlctl operations: {list}");
                last_warn = Instant::now();
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// List until no VM is in a transitional state, or [`SETTLE_BUDGET`] is spent.
    async fn relist_until_settled(&self) -> Result<(), PrlctlError> {
        let until = Instant::now() + SETTLE_BUDGET;
        loop {
            let moving: Vec<String> = self
                .list_all_retrying()
                .await?
                .into_iter()
                .filter(|vm| transitional(&vm.power))
                .map(|vm| format!("{} {}", vm.name, vm.power.as_word()))
                .collect();
            if moving.is_empty() {
                return Ok(());
            }
            if Instant::now() >= until {
                tracing::warn!(
                    "VMs still in transition after {SETTLE_BUDGET:?}: {}; going on (they count \
                     as holding the host)",
                    moving.join(", ")
                );
                return Ok(());
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }

    /// Pids of `prlctl VERB … VM` processes (`ps`): the intent's child, whether or not its
    /// pid was recorded (the daemon may have died between recording the intent and writing
    /// the pid). `None` when `ps` cannot be run.
    async fn find_by_argv(&self, intent: &Intent) -> Option<Vec<u32>> {
        let prefix = format!("{} {} ", self.config.path.to_string_lossy(), intent.verb);
        let ps = tokio::process::Command::new("/bin/ps")
            .args(["-axo", "pid=,args="])
            .env_clear()
            .kill_on_drop(true)
            .output();
        let out = match tokio::time::timeout(self.config.default_timeout, ps).await {
            Ok(Ok(out)) => out,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "cannot run ps to find an inherited prlctl");
                return None;
            }
            Err(_) => {
                tracing::warn!("ps timed out looking for an inherited prlctl");
                return None;
            }
        };
        if !out.status.success() {
            tracing::warn!(status = ?out.status.code(), "ps failed looking for an inherited prlctl");
            return None;
        }
        Some(matching_pids(
            &String::from_utf8_lossy(&out.stdout),
            &prefix,
            &intent.vm,
        ))
    }
}

/// Pids in `ps -o pid=,args=` output whose command line starts with `prefix` and names `vm`.
fn matching_pids(ps: &str, prefix: &str, vm: &str) -> Vec<u32> {
    ps.lines()
        .filter_map(|line| {
            let (pid, args) = line.trim_start().split_once(' ')?;
            let args = args.trim_start();
            (args.starts_with(prefix) && args[prefix.len()..].contains(vm))
                .then(|| pid.parse().ok())
                .flatten()
        })
        .collect()
}

/// Whether any process of the group `pgid` exists (EPERM: it exists, another user's).
fn group_alive(pgid: u32) -> bool {
    use nix::errno::Errno;
    use nix::sys::signal::killpg;
    use nix::unistd::Pid;
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    !matches!(killpg(Pid::from_raw(raw), None), Err(Errno::ESRCH))
}

/// States Parallels shows while an operation is under way.
fn transitional(power: &PowerState) -> bool {
    matches!(
        power,
        PowerState::Starting | PowerState::Stopping | PowerState::Suspending | PowerState::Resuming
    )
}

fn describe(intents: &[Intent]) -> String {
    intents
        .iter()
        .map(Intent::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_lines_match_on_the_command_prefix_and_the_vm() {
        let ps = "    1 /sbin/launchd\n  812 /usr/local/bin/prlctl start vm one\n  \
                  813 /usr/local/bin/prlctl stop vm one --kill\n 9001 /usr/local/bin/prlctl \
                  start other\n";
        let prefix = "/usr/local/bin/prlctl start ";
        assert_eq!(matching_pids(ps, prefix, "vm one"), vec![812]);
        assert_eq!(matching_pids(ps, prefix, "other"), vec![9001]);
        assert!(matching_pids(ps, prefix, "absent").is_empty());
    }

    #[test]
    fn a_live_group_is_seen_and_a_gone_one_is_not() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(group_alive(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!group_alive(pid));
    }
}
