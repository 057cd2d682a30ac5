//! VM lifecycle requests that are not scheduling decisions: `CreateVm`, `ProvisionVm`,
//! `HostCheck` and `MigrateCheck` (`marblectl vm create|provision`, `marblectl host check`,
//! `marblectl migrate check`), and the holds a provisioning run puts on the host.
//!
//! Owns: the VMs being created (a name is created once at a time) and the one provisioning
//! run (the host runs one VM at a time, so one run at a time). The actor owns one
//! [`Lifecycle`] and consults it before scheduler commands ([`Lifecycle::refuse_command`])
//! and before running scheduler actions ([`Lifecycle::intercept`]); it never awaits here.
//! The jobs ([`create`], [`provisioning`], [`check`]) run on the actor's task tracker and
//! answer their client directly; they report back through the completions channel.
//!
//! Why a provisioning run holds the VM this way (the choice the design asks for): steps run
//! for many minutes in a guest that has no CI job, so the busy probe would say idle and the
//! cycle or a Jenkins slot request would stop the VM mid-step. Instead of refusing to
//! provision whenever the scheduler *could* stop the VM (always, under the cycle policy), the
//! run makes the VM busy in the scheduler's eyes: its probes answer busy ("provisioning …"),
//! which every stop decision already respects ("never stop a busy VM"); stop and start
//! commands for it are refused with `Locked`, and no other VM may start (the host is
//! occupied, exactly as by a CI job). A scheduler stop that slipped through anyway (probed
//! idle just before the run began) is refused at the last moment by the same hold.

pub mod check;
pub mod create;
pub mod migrate;
pub mod provisioning;

use std::collections::BTreeSet;

use marble_proto::{ErrorKind, Request, WireError};

use crate::clock::now_ms;
use crate::sched::{Action, Command, Outcome, ProbeResult};

/// The provisioning run in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Run id (unique until restart).
    pub id: u64,
    /// The VM provisioned.
    pub vm: String,
    /// Who asked.
    pub by: String,
    /// Unix ms.
    pub since_ms: u64,
}

/// What a lifecycle job reports to the actor.
#[derive(Debug)]
pub enum LifecycleEvent {
    /// A create ended; on failure the actor removes the lock it took for the name.
    Created {
        /// VM name.
        vm: String,
        /// Whether the VM now exists.
        ok: bool,
        /// Whether the actor locked the name for this create (and must unlock on failure).
        locked_here: bool,
    },
    /// A provisioning run started its VM.
    ProvisionStarted {
        /// Run id.
        id: u64,
    },
    /// A provisioning run ended.
    ProvisionFinished {
        /// Run id.
        id: u64,
    },
}

/// Creates in flight and the provisioning hold.
#[derive(Debug, Default)]
pub struct Lifecycle {
    creating: BTreeSet<String>,
    hold: Option<Hold>,
    next_id: u64,
}

impl Lifecycle {
    /// Whether this module answers `request`.
    pub fn handles(request: &Request) -> bool {
        matches!(
            request,
            Request::CreateVm { .. }
                | Request::ProvisionVm { .. }
                | Request::HostCheck
                | Request::MigrateCheck
                | Request::RunnerInstall { .. }
        )
    }

    /// The current provisioning hold.
    pub fn hold(&self) -> Option<&Hold> {
        self.hold.as_ref()
    }

    /// Whether `name` is being created.
    pub fn creating(&self, name: &str) -> bool {
        self.creating.contains(name)
    }

    /// Record a create of `name`; false if one is already in flight.
    pub fn begin_create(&mut self, name: &str) -> bool {
        self.creating.insert(name.to_owned())
    }

    /// Take the provisioning hold for `vm`; the refusal when a run is already in progress.
    pub fn begin_provision(&mut self, vm: &str, by: &str) -> Result<u64, WireError> {
        if let Some(h) = &self.hold {
            return Err(WireError::new(
                ErrorKind::InvalidState,
                format!(
                    "{} is being provisioned by {} (run #{}); one run at a time per host",
                    h.vm, h.by, h.id
                ),
            ));
        }
        self.next_id += 1;
        let id = self.next_id;
        self.hold = Some(Hold {
            id,
            vm: vm.to_owned(),
            by: by.to_owned(),
            since_ms: now_ms(),
        });
        tracing::info!(run = id, vm, by, "provisioning hold taken");
        Ok(id)
    }

    /// A job reported. Returns whether the inventory should be refreshed.
    pub fn on_event(&mut self, event: &LifecycleEvent) -> bool {
        match event {
            LifecycleEvent::Created { vm, .. } => {
                self.creating.remove(vm);
                true
            }
            LifecycleEvent::ProvisionStarted { .. } => true,
            LifecycleEvent::ProvisionFinished { id } => {
                if self.hold.as_ref().is_some_and(|h| h.id == *id) {
                    let h = self.hold.take();
                    tracing::info!(run = id, vm = ?h.map(|h| h.vm), "provisioning hold released");
                }
                true
            }
        }
    }

    fn held_msg(h: &Hold) -> String {
        format!("{} is being provisioned by {} (run #{})", h.vm, h.by, h.id)
    }

    /// Refusal of a scheduler command that conflicts with the provisioning hold: any start
    /// or slot request (the host is occupied), and a stop of the held VM (even forced: a
    /// half-run step is worse than waiting).
    pub fn refuse_command(&self, cmd: &Command) -> Option<WireError> {
        let h = self.hold.as_ref()?;
        match cmd {
            Command::StartVm { vm } | Command::RequestSlot { vm, .. } if *vm == h.vm => {
                Some(WireError::new(
                    ErrorKind::Locked,
                    format!("{}; wait for the run to end", Self::held_msg(h)),
                ))
            }
            Command::StartVm { .. } | Command::RequestSlot { .. } => Some(WireError::new(
                ErrorKind::Busy,
                format!(
                    "host busy: {} (one VM at a time); try another host or later",
                    Self::held_msg(h)
                ),
            )),
            Command::StopVm { vm, .. } if *vm == h.vm => Some(WireError::new(
                ErrorKind::Locked,
                format!(
                    "{}; it cannot be stopped until the run ends",
                    Self::held_msg(h)
                ),
            )),
            _ => None,
        }
    }

    /// The outcome to report instead of running scheduler `action` on `vm`, if the hold
    /// decides it: probes of the held VM answer busy; stops of it and starts of any other
    /// VM are not run; its readiness is the run's (answered ready without waiting for a
    /// runner): a ROOT VM started for a run gets no JIT runner, which could take a job
    /// mid-run or start under `runner install` swapping its files. It gets one at its next
    /// boot.
    pub fn intercept(&self, vm: &str, action: &Action) -> Option<Outcome> {
        let h = self.hold.as_ref()?;
        match action {
            Action::Probe(_) if vm == h.vm => Some(Outcome::Probe(ProbeResult::Busy(format!(
                "provisioning by {} (run #{})",
                h.by, h.id
            )))),
            Action::Stop(_) if vm == h.vm => {
                Some(Outcome::Failed(format!("not run: {}", Self::held_msg(h))))
            }
            Action::WaitReady { .. } if vm == h.vm => Some(Outcome::Done),
            Action::Start | Action::Resume if vm != h.vm => Some(Outcome::Failed(format!(
                "not run: host held while {}",
                Self::held_msg(h)
            ))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::StopKind;
    use marble_proto::Team;

    #[test]
    fn hold_makes_the_vm_busy_and_the_host_occupied() {
        let mut l = Lifecycle::default();
        let id = l.begin_provision("h-ROOT-1", "alice").unwrap();
        assert!(l.begin_provision("h-SPI-1", "bob").is_err());
        assert_eq!(
            l.intercept("h-ROOT-1", &Action::Probe(Team::Root)),
            Some(Outcome::Probe(ProbeResult::Busy(format!(
                "provisioning by alice (run #{id})"
            ))))
        );
        assert!(matches!(
            l.intercept("h-ROOT-1", &Action::Stop(StopKind::Kill)),
            Some(Outcome::Failed(_))
        ));
        assert!(matches!(
            l.intercept("h-SPI-1", &Action::Start),
            Some(Outcome::Failed(_))
        ));
        assert_eq!(l.intercept("h-SPI-1", &Action::Probe(Team::Spi)), None);
        let stop = Command::StopVm {
            vm: "h-ROOT-1".into(),
            force: true,
        };
        assert_eq!(
            l.refuse_command(&stop).map(|e| e.kind),
            Some(ErrorKind::Locked)
        );
        let slot = Command::RequestSlot {
            vm: "h-SPI-1".into(),
            wait_ms: 0,
        };
        assert_eq!(
            l.refuse_command(&slot).map(|e| e.kind),
            Some(ErrorKind::Busy)
        );
        // Readiness of the held VM is the run's: no JIT runner is delivered into a guest
        // being provisioned (it could take a job mid-run, or start under a runner install).
        assert_eq!(
            l.intercept("h-ROOT-1", &Action::WaitReady { timeout_ms: 1_000 }),
            Some(Outcome::Done)
        );
        assert!(l.on_event(&LifecycleEvent::ProvisionFinished { id }));
        assert!(l.refuse_command(&stop).is_none());
        assert_eq!(l.intercept("h-ROOT-1", &Action::Probe(Team::Root)), None);
    }
}
