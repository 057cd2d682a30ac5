//! `marble-sim`: replays a trace of CI demand through the real scheduler core
//! ([`marbled::sched::World`]) in virtual time and measures what happened.
//!
//! The engine drives `World` exactly as the daemon's actor does (see [`engine`]) against a
//! simulated host whose ground truth — power states, boots, guests, running jobs — it owns
//! ([`host`], `ops`), with GitHub and Jenkins as simulated clients (`workload`). After
//! every step it checks the scheduler's rules ([`invariants`]) and at the end reports
//! per-team waits, boots, idle time, grants and refusals ([`metrics`]). [`compare`] runs
//! two policies side by side against [`ideal`], the waits an overhead-free FIFO scheduler
//! would get from the same arrivals.
//!
//! A crate of its own, on `marbled` without its `s3` feature and never the reverse, so
//! building the daemon never compiles the simulator (`docs/SIMULATOR.md`, "Where it lives").
//! [`requests`] drives the daemon's own GitHub client and poller (`ci` feature) against
//! [`github`], an in-memory GitHub behind the client's transport seam; [`calibrate`] is the
//! workload `tests/tests/e2e_requests.rs` compares with a real daemon.
//!
//! Layout: [`trace`] (the TOML format, documented in `docs/SIMULATOR.md`; read with
//! `marbled.toml`'s strict loader; checked in `validate`), [`generate`] (Poisson arrivals,
//! random traces for property tests), [`daily`] (the standard workload model), [`standard`]
//! (the standard fleet trace), [`shapes`] (issue 17's load shapes), [`rng`] (seeded
//! streams), [`engine`] (event loop), `ops` (the simulated hypervisor), `workload` (CI
//! clients), [`host`] (VM ground truth, faults), [`invariants`], [`metrics`]; [`replay_all`]
//! (every trace and shape, one table of the issue-17 targets, each miss explained by
//! [`miss_why`], with [`settings`] over the
//! shipped defaults for an opt-in row) and [`import`] (a trace from real GitHub and Jenkins
//! history).

pub mod calibrate;
pub mod cli;
pub mod compare;
pub mod daily;
pub mod engine;
pub mod fleet_demand;
pub mod generate;
pub mod github;
pub mod host;
pub mod ideal;
pub mod ideal_faults;
pub mod import;
pub mod invariants;
pub mod metrics;
pub mod miss_why;
mod ops;
pub mod replay_all;
pub mod requests;
pub mod rng;
pub mod settings;
pub mod shapes;
pub mod standard;
#[cfg(test)]
mod tests;
pub mod trace;
mod validate;
mod workload;

pub use engine::{RunOptions, simulate};
pub use generate::random_trace;
pub use invariants::{ViolationKind, Violations};
pub use metrics::Report;
pub use trace::{Trace, TraceError};
