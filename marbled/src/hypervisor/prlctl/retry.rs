//! Bounded retries of transient prlctl failures ([`PrlctlError::is_transient`]: `Login
//! failed:`, spurious `PrlJob_GetRetCode`, an unreachable service), with exponential backoff
//! and jitter, each retry logged at WARN; and the power verbs' one path (intent recorded,
//! inherited intents resolved first).
//!
//! What is retried, and how:
//! - reads (`list`, `list -i`, `status`, `snapshot-list`, `--version`) are idempotent and
//!   simply run again;
//! - power verbs (`start`, `resume`, `stop`, `suspend`) may have done their work before
//!   failing (PrlJob_GetRetCode comes *after* the job), so the VM is re-listed first: when it
//!   is already where the verb takes it, the call succeeded; only otherwise is it run again.
//!   When the listing fails too, nothing is retried blind: the first error is returned;
//! - `exec` and the bundle verbs (`clone`, `delete`, `register`, `set`…) are never retried
//!   here: they are not idempotent, and their callers check state their own way.
//!
//! Bounded: [`ATTEMPTS`] calls in all, so a transient failure costs at most about
//! 250 ms + 500 ms (±50 %) more than the calls themselves.

use std::future::Future;
use std::time::Duration;

use marble_proto::PowerState;
use rand::Rng;

use super::{Prlctl, PrlctlError};
use crate::chain::ErrorChain;
use crate::hypervisor::VmListing;

/// Calls in all, the first included.
pub const ATTEMPTS: u32 = 3;
/// Backoff before the first retry; doubled for each further one.
const FIRST_DELAY: Duration = Duration::from_millis(250);

/// The wait before retry number `n` (1-based): [`FIRST_DELAY`] × 2^(n−1), jittered to
/// 50–150 % so daemons on one hypervisor service do not retry in step.
fn backoff(n: u32) -> Duration {
    let base = FIRST_DELAY.saturating_mul(1 << n.saturating_sub(1).min(8));
    base.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

impl Prlctl {
    /// Run the idempotent read `op`, again on transient failures (bounded, logged).
    pub(super) async fn read_retrying<T, F, Fut>(&self, op: F) -> Result<T, PrlctlError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, PrlctlError>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(err) if err.is_transient() && attempt < ATTEMPTS => {
                    let wait = backoff(attempt);
                    tracing::warn!(error = %ErrorChain(&err), attempt, ?wait, "transient prlctl failure; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// `prlctl list -a --json` with retries, without resolving inherited intents first
    /// (the resolution itself lists this way).
    pub(super) async fn list_all_retrying(&self) -> Result<Vec<VmListing>, PrlctlError> {
        self.read_retrying(|| self.list_all_impl()).await
    }

    /// A power verb (`args` = verb, VM, options): inherited intents resolved first, the
    /// intent recorded before each run, transient failures retried when a fresh listing
    /// shows the work is not done.
    pub(super) async fn power(
        &self,
        args: Vec<String>,
        timeout: Duration,
    ) -> Result<(), PrlctlError> {
        self.resolve_inherited().await?;
        let mut attempt = 1;
        loop {
            let err = match self.power_once(&args, timeout).await {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            if !err.is_transient() || attempt >= ATTEMPTS {
                return Err(err);
            }
            let vm = args.get(1).map_or("", String::as_str);
            let power = match self.list_all_retrying().await {
                Ok(list) => power_of(&list, vm),
                Err(list_err) => {
                    tracing::warn!(error = %ErrorChain(&list_err), "cannot re-list after a transient failure; not retrying");
                    return Err(err);
                }
            };
            if power.as_ref().is_some_and(|p| reached(&args, p)) {
                tracing::warn!(error = %ErrorChain(&err), vm, "transient prlctl failure, but the listing shows the work done");
                return Ok(());
            }
            let wait = backoff(attempt);
            tracing::warn!(error = %ErrorChain(&err), attempt, ?wait, ?power, "transient prlctl failure and the work is not done; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One run of a power verb, its intent recorded first (refused when it cannot be).
    async fn power_once(&self, args: &[String], timeout: Duration) -> Result<(), PrlctlError> {
        let guard = match &self.intents {
            Some(log) => {
                let verb = args.first().map_or("", String::as_str);
                let vm = args.get(1).map_or("", String::as_str);
                let guard =
                    log.begin(verb, vm, timeout)
                        .await
                        .map_err(|source| PrlctlError::Io {
                            argv: self.argv(args),
                            source,
                        })?;
                Some(guard)
            }
            None => None,
        };
        let out = self
            .run_recorded(args, None, timeout, guard.as_ref())
            .await?;
        drop(guard);
        if out.status == Some(0) {
            Ok(())
        } else {
            Err(self.failed(args, &out))
        }
    }
}

/// `vm`'s power state in `list` (by name or uuid).
fn power_of(list: &[VmListing], vm: &str) -> Option<PowerState> {
    let wanted = vm.trim_matches(|c| c == '{' || c == '}');
    list.iter()
        .find(|l| l.name == vm || l.uuid.eq_ignore_ascii_case(wanted))
        .map(|l| l.power.clone())
}

/// Whether `power` is where the verb of `args` takes the VM (or on its way there).
fn reached(args: &[String], power: &PowerState) -> bool {
    match args.first().map(String::as_str) {
        Some("start" | "resume") => matches!(
            power,
            PowerState::Running | PowerState::Starting | PowerState::Resuming
        ),
        Some("stop") => *power == PowerState::Stopped,
        Some("suspend") => matches!(power, PowerState::Suspended | PowerState::Suspending),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_within_bounds() {
        for n in 1..=4 {
            let base = FIRST_DELAY * (1 << (n - 1));
            for _ in 0..50 {
                let d = backoff(n);
                assert!(d >= base / 2 && d <= base * 3 / 2, "{n}: {d:?}");
            }
        }
    }

    #[test]
    fn reached_reads_the_verb() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert!(reached(&s(&["start", "a"]), &PowerState::Running));
        assert!(!reached(&s(&["start", "a"]), &PowerState::Stopped));
        assert!(reached(&s(&["stop", "a", "--kill"]), &PowerState::Stopped));
        assert!(!reached(&s(&["stop", "a"]), &PowerState::Running));
        assert!(reached(&s(&["suspend", "a"]), &PowerState::Suspended));
        let list = vec![VmListing {
            uuid: "abc".into(),
            name: "a".into(),
            power: PowerState::Running,
        }];
        assert_eq!(power_of(&list, "{ABC}"), Some(PowerState::Running));
        assert_eq!(power_of(&list, "a"), Some(PowerState::Running));
        assert_eq!(power_of(&list, "b"), None);
    }
}
