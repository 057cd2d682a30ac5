//! Which registered runners are free capacity for the scheduler's fleet de-duplication, and
//! which of this host's registrations are stale.
//!
//! GitHub lists every registration of the scope with `status` (`online`/`offline`) and
//! `busy`. An idle online runner takes a matching job now. An offline one takes a job only if
//! it is about to come up: a JIT runner MARBLE registered before its VM's `prlctl start` is
//! offline until the guest runs it. Any other offline registration — the seed's AUTO_RUNNER
//! runners, a runner whose VM crashed — stays listed for up to a day (14 days if not
//! ephemeral) and takes nothing; counting it as free left the jobs its labels match without a
//! boot for that long. So an offline runner counts only when MARBLE registered it for a VM
//! booting now:
//! - this host's registration (`<prefix>-<host>-<vm>-<unix seconds>`, checked per VM with
//!   [`super::RunnerLifecycle::is_ours`]) while its VM is starting or running and
//!   the registration is younger than a boot ([`boot_window`]). Older than a boot, it is
//!   stale when its VM is stopped with no operation on it, or up with another registration
//!   (the records say which): the poller deletes it;
//! - another host's MARBLE registration (the prefix, and a unix-seconds tail) younger than a
//!   boot: this host cannot see that VM, but a registration older than a boot is not one
//!   whose runner is still coming up.
//!
//! Every other offline runner is listed in `marblectl status` (kind `foreign`, `marble` or
//! `this-host`), not counted, and not touched.

use std::time::Duration;

use marble_proto::{OfflineRunner, PowerState, VmInfo};

use super::types::Runner;

/// How long after its registration a MARBLE runner may still be offline because its VM is
/// booting: the mint before `prlctl start` (two GitHub calls), the start, readiness, and a
/// margin for the runner to connect once its config is delivered.
pub fn boot_window(
    request_timeout: Duration,
    start_timeout: Duration,
    ready_timeout: Duration,
) -> Duration {
    const CONNECT_MARGIN: Duration = Duration::from_secs(120);
    request_timeout
        .saturating_mul(2)
        .saturating_add(start_timeout)
        .saturating_add(ready_timeout)
        .saturating_add(CONNECT_MARGIN)
}

/// What a registered runner means for demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Online and idle: takes a matching job now.
    Free,
    /// Offline, registered by MARBLE for a VM booting now: takes a matching job once up.
    Booting,
    /// Online and running a job.
    Busy,
    /// This host's registration for VM `vm`, offline, older than a boot, and not the one of
    /// a boot under way (the VM is stopped with no operation on it, or runs with another
    /// registration): nothing will use it; delete it.
    Stale {
        /// The VM.
        vm: String,
    },
    /// Offline, not counted: `kind` is `foreign` (not MARBLE's), `marble` (another host's,
    /// older than a boot) or `this-host` (its VM up or going down, its runner not connected).
    Offline {
        /// See above.
        kind: &'static str,
    },
}

/// The unix-seconds registration time at the end of a MARBLE runner name
/// (`<prefix>-…-<secs>`, [`crate::ci::github::RunnerLifecycle::name_for`]); None for a name
/// MARBLE did not give.
pub fn registered_at(prefix: &str, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let (_, secs) = rest.rsplit_once('-')?;
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    secs.parse().ok()
}

/// Whether `vm` is coming up or up (an operation starting it, or powered on and not being
/// stopped).
fn coming_up(vm: &VmInfo) -> bool {
    let op = vm.operation.as_deref();
    matches!(op, Some("start" | "resume" | "ready"))
        || matches!(
            vm.power,
            PowerState::Starting | PowerState::Running | PowerState::Resuming
        ) && !matches!(op, Some("stop" | "kill" | "drop-state"))
}

/// This host's VM a registration was named for, and the registration of its current boot as
/// this daemon's records have it.
#[derive(Debug, Clone, Copy)]
pub struct Own<'a> {
    /// The VM.
    pub vm: &'a VmInfo,
    /// `None`: the records do not know (the VM ran before this daemon started);
    /// `Some(None)`: they know it has none; `Some(Some(id))`: that one.
    pub current: Option<Option<u64>>,
}

/// `runner`'s standing. `own`: this host's VM whose registration it is (None: not this
/// host's, or this host's VMs are not known yet); `prefix`: the runner-name prefix; `now_s`
/// unix seconds; `window`: [`boot_window`].
///
/// Only a registration older than a boot is ever [`Standing::Stale`]: a younger one may be a
/// start's that began while the poll ran (the VM list and the records are read around the
/// runner list, and a start mints before `prlctl start`), so it counts as booting and is
/// judged again at the next poll.
pub fn classify(
    runner: &Runner,
    own: Option<Own<'_>>,
    prefix: &str,
    now_s: u64,
    window: Duration,
) -> Standing {
    let online = runner.online();
    if online {
        return if runner.busy {
            Standing::Busy
        } else {
            Standing::Free
        };
    }
    let window = window.as_secs();
    let young = registered_at(prefix, &runner.name)
        .is_some_and(|at| now_s.saturating_sub(at) < window && at <= now_s.saturating_add(window));
    let Some(Own { vm, current }) = own else {
        return if registered_at(prefix, &runner.name).is_none() {
            Standing::Offline { kind: "foreign" }
        } else if young && !runner.busy {
            Standing::Booting
        } else {
            Standing::Offline { kind: "marble" }
        };
    };
    let idle_stopped = !vm.power.occupies_host() && vm.operation.is_none();
    let stale = Standing::Stale {
        vm: vm.name.clone(),
    };
    match current {
        // GitHub refuses to delete a runner it shows busy (one that died mid-job, released
        // after some minutes): listed, deleted at a later poll.
        _ if runner.busy => Standing::Offline { kind: "this-host" },
        _ if young && (idle_stopped || coming_up(vm)) => Standing::Booting,
        _ if young => Standing::Offline { kind: "this-host" },
        // Older than a boot: no boot is under way to use it,
        _ if idle_stopped => stale,
        // or the VM is up with another registration (an earlier boot's, kept because GitHub
        // did not answer then),
        Some(Some(id)) if id != runner.id => stale,
        Some(None) => stale,
        // or it is the current boot's (or nobody knows) and the runner never connected.
        Some(Some(_)) | None => Standing::Offline { kind: "this-host" },
    }
}

/// The `status` entry of a runner with standing [`Standing::Offline`].
pub fn offline_entry(runner: &Runner, kind: &str) -> OfflineRunner {
    OfflineRunner {
        id: runner.id,
        name: runner.name.clone(),
        labels: runner.labels.iter().map(|l| l.name.clone()).collect(),
        busy: runner.busy,
        kind: kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::ci::github::RunnerLabel;
    use marble_proto::{BusyState, Team};

    const NOW: u64 = 1_790_000_000;
    const WINDOW: Duration = Duration::from_secs(660);

    fn runner(name: &str, status: &str, busy: bool) -> Runner {
        Runner {
            id: 7,
            name: name.into(),
            os: "macos".into(),
            status: status.into(),
            busy,
            runner_group_id: Some(1),
            labels: vec![RunnerLabel {
                id: 1,
                name: "mac14".into(),
                kind: "custom".into(),
            }],
        }
    }

    fn vm(power: PowerState, operation: Option<&str>) -> VmInfo {
        VmInfo {
            name: "h-ROOT-VM-macOS-14".into(),
            uuid: "u".into(),
            team: Team::Root,
            power,
            busy: BusyState::NotProbed,
            lock: None,
            operation: operation.map(str::to_owned),
            note: String::new(),
        }
    }

    fn at(secs_ago: u64) -> String {
        format!("marble-h-h-ROOT-VM-macOS-14-{}", NOW - secs_ago)
    }

    /// `own`: this host's VM, its current registration unknown to the records.
    fn standing(r: &Runner, own: Option<&VmInfo>) -> Standing {
        let own = own.map(|vm| Own { vm, current: None });
        classify(r, own, "marble", NOW, WINDOW)
    }

    #[test]
    fn registration_times_come_from_marble_names_only() {
        assert_eq!(registered_at("marble", &at(0)), Some(NOW));
        assert_eq!(registered_at("ci", "ci-h-vm-0001"), Some(1));
        assert_eq!(registered_at("marble", "marblex-h-vm-1"), None);
        assert_eq!(registered_at("marble", "marble-h-vm-"), None);
        assert_eq!(registered_at("marble", "marble-1"), None);
        assert_eq!(
            registered_at(
                "marble",
                "macphsft32-ROOT-VM-macOS-15-Thu-Oct--2-14-28-06-CEST-2025"
            ),
            None
        );
    }

    #[test]
    fn online_runners_count_when_idle() {
        assert_eq!(
            standing(&runner("any", "online", false), None),
            Standing::Free
        );
        assert_eq!(
            standing(&runner("any", "online", true), None),
            Standing::Busy
        );
        let up = vm(PowerState::Running, None);
        assert_eq!(
            standing(&runner(&at(9_999), "online", false), Some(&up)),
            Standing::Free
        );
    }

    #[test]
    fn an_offline_runner_counts_only_while_marble_boots_its_vm() {
        // Registered outside MARBLE (the seed's AUTO_RUNNER): never counted, never deleted.
        let seed = runner(
            "macphsft32-ROOT-VM-macOS-15-Thu-Oct--2-14-28-06-CEST-2025",
            "offline",
            false,
        );
        assert_eq!(standing(&seed, None), Standing::Offline { kind: "foreign" });
        // Another host's registration: a boot's time.
        assert_eq!(
            standing(&runner(&at(30), "offline", false), None),
            Standing::Booting
        );
        assert_eq!(
            standing(&runner(&at(661), "offline", false), None),
            Standing::Offline { kind: "marble" }
        );
        // A clock a little ahead still counts; far ahead does not.
        assert_eq!(
            standing(
                &runner(
                    &at(0).replace(&NOW.to_string(), &(NOW + 60).to_string()),
                    "offline",
                    false
                ),
                None
            ),
            Standing::Booting
        );
        // This host's: its VM starting, up, or readiness pending.
        for (power, op) in [
            (PowerState::Stopped, Some("start")),
            (PowerState::Starting, None),
            (PowerState::Running, Some("ready")),
            (PowerState::Running, None),
        ] {
            let v = vm(power.clone(), op);
            assert_eq!(
                standing(&runner(&at(30), "offline", false), Some(&v)),
                Standing::Booting,
                "{power:?} {op:?}"
            );
        }
        // Up for longer than a boot, or being stopped: its runner is not coming.
        let up = vm(PowerState::Running, None);
        assert_eq!(
            standing(&runner(&at(661), "offline", false), Some(&up)),
            Standing::Offline { kind: "this-host" }
        );
        let stopping = vm(PowerState::Running, Some("stop"));
        assert_eq!(
            standing(&runner(&at(30), "offline", false), Some(&stopping)),
            Standing::Offline { kind: "this-host" }
        );
    }

    #[test]
    fn this_hosts_registration_of_a_stopped_vm_is_stale() {
        let stopped = vm(PowerState::Stopped, None);
        let stale = Standing::Stale {
            vm: stopped.name.clone(),
        };
        assert_eq!(
            standing(&runner(&at(661), "offline", false), Some(&stopped)),
            stale
        );
        assert_eq!(
            standing(&runner(&at(86_000), "offline", false), Some(&stopped)),
            stale
        );
        let suspended = vm(PowerState::Suspended, None);
        assert!(matches!(
            standing(&runner(&at(3_600), "offline", false), Some(&suspended)),
            Standing::Stale { .. }
        ));
        // Younger than a boot: perhaps a start that began while the poll ran (it mints
        // before `prlctl start`; the VM list is read before the runner list). Not deleted.
        assert_eq!(
            standing(&runner(&at(5), "offline", false), Some(&stopped)),
            Standing::Booting
        );
        // An operation on it (a start minting right now): left alone.
        let starting = vm(PowerState::Stopped, Some("start"));
        assert_eq!(
            standing(&runner(&at(5), "offline", false), Some(&starting)),
            Standing::Booting
        );
        // Died mid-job (offline, still busy): GitHub refuses the delete; listed instead.
        assert_eq!(
            standing(&runner(&at(3_600), "offline", true), Some(&stopped)),
            Standing::Offline { kind: "this-host" }
        );
        assert_eq!(
            standing(&runner(&at(5), "offline", true), None),
            Standing::Offline { kind: "marble" }
        );
    }

    #[test]
    fn an_earlier_boots_registration_of_a_running_vm_is_stale_once_the_records_say_so() {
        let up = vm(PowerState::Running, None);
        let judge = |r: &Runner, current| {
            classify(r, Some(Own { vm: &up, current }), "marble", NOW, WINDOW)
        };
        let old = runner(&at(3_600), "offline", false);
        let stale = Standing::Stale {
            vm: up.name.clone(),
        };
        // The records know the current boot's registration: this is another one.
        assert_eq!(judge(&old, Some(Some(old.id + 1))), stale);
        assert_eq!(judge(&old, Some(None)), stale);
        // It is the current one (its runner never connected), or nobody knows (the VM ran
        // before this daemon started): listed, not deleted.
        let this_host = Standing::Offline { kind: "this-host" };
        assert_eq!(judge(&old, Some(Some(old.id))), this_host);
        assert_eq!(judge(&old, None), this_host);
        // Younger than a boot: never deleted (a start may have minted it just now).
        let young = runner(&at(5), "offline", false);
        assert_eq!(judge(&young, Some(Some(young.id + 1))), Standing::Booting);
        assert_eq!(judge(&young, Some(None)), Standing::Booting);
    }

    #[test]
    fn the_boot_window_covers_mint_start_readiness_and_connecting() {
        assert_eq!(
            boot_window(
                Duration::from_secs(30),
                Duration::from_secs(180),
                Duration::from_secs(300)
            ),
            Duration::from_secs(660)
        );
    }

    #[test]
    fn offline_entries_carry_the_labels_and_kind() {
        let e = offline_entry(&runner("seed", "offline", true), "foreign");
        assert_eq!(
            (e.id, e.name.as_str(), e.busy, e.kind.as_str()),
            (7, "seed", true, "foreign")
        );
        assert_eq!(e.labels, ["mac14"]);
    }
}
