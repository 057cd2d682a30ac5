//! `marbled`: the MARBLE daemon library. One daemon per host owns every VM decision.
//!
//! Request path (see `docs/ARCHITECTURE.md`):
//!
//! ```text
//! marblectl ──UDS──> server::serve ──> server::Handler (peer creds, handshake, access)
//!     ──bounded mpsc──> actor::Supervisor (owns sched::World)
//!     ──Effect::Run──> jobs::JobContext (a task) ──> hypervisor::Hypervisor (prlctl)
//!     <──Completion── (bounded mpsc) ──> World::handle ──> replies, events, persist
//! ```
//!
//! Layout: [`config`] (TOML, defaults, validation), [`socket`] (lock + bind),
//! [`peer`] (credentials and access), [`server`] (accept loop, handler), [`actor`] (state
//! owner), [`jobs`] (slow work), [`sched`] (sans-I/O scheduler), [`hypervisor`] (prlctl),
//! [`inventory`] (teams), [`store`] (state file), [`logging`] (subscriber for `main`),
//! [`daemon`] (wiring: `run`, and the [`daemon::Parts`] a start and a reload build),
//! [`clock`] (the wall clock, unix ms), [`transfers`] (image push/pull/verify jobs and the VM holds
//! they take; the S3 code is [`images`]), [`lifecycle`] (`vm create`, `vm provision`, `host
//! check`: jobs and the provisioning hold), [`provision`] (the profile engine), `ci` (GitHub and
//! Jenkins, feature `ci`: JIT runners per ROOT boot, the delete-before-stop gate, the demand
//! signals, the SPI node signal), [`fleet`] (heartbeats
//! in the bucket, `fleet ls`), [`metrics`] (Prometheus text, node_exporter textfile),
//! [`demand`] (GitHub and Jenkins demand sources polled for policy `demand`), [`periodic`]
//! (starts those side tasks).
//!
//! Optional capabilities (features `s3` and `ci`) are gated at module seams only: the
//! modules below that need them, and [`jobs::s3`] / [`jobs::ci`], which have a stub with the
//! same API when the feature is off, so the jobs, the actor and the daemon need no `cfg`.

pub mod actor;
pub mod calendar;
pub mod chain;
#[cfg(feature = "ci")]
pub mod ci;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod demand;
pub mod error;
pub mod fleet;
pub mod fsx;
pub mod hypervisor;
#[cfg(feature = "s3")]
pub mod images;
pub mod inventory;
pub mod jobs;
pub mod lease;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod peer;
pub mod periodic;
pub mod provision;
pub mod sched;
pub mod server;
pub mod socket;
pub mod store;
pub mod transfers;

pub use config::Config;
pub use daemon::run;
pub use error::DaemonError;
