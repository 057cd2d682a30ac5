//! The hypervisor seam: what the daemon needs from Parallels (and, later, Tart).
//!
//! The actor and jobs only see [`Hypervisor`]; [`prlctl::Prlctl`] is the production
//! implementation, and tests run that same implementation against the prlctl simulator
//! executable (`tests/src/bin/fake-prlctl.rs`), so the daemon's code path in tests is the
//! production one.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use marble_proto::PowerState;

pub mod guest_cmd;
#[cfg(all(test, target_os = "linux"))]
pub(crate) mod local_guest;
pub mod parse;
pub mod prlctl;

pub use prlctl::{Prlctl, PrlctlConfig, PrlctlError};

/// Boxed future returned by [`Hypervisor`] methods (object-safe, `Send`).
pub type HvFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, PrlctlError>> + Send + 'a>>;

/// One VM as `prlctl list -a --json` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmListing {
    /// UUID, lower case, braces stripped.
    pub uuid: String,
    /// VM name.
    pub name: String,
    /// Power state.
    pub power: PowerState,
}

/// Details from `prlctl list -i --json <vm>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VmDetails {
    /// UUID, lower case, braces stripped.
    pub uuid: String,
    /// VM name.
    pub name: String,
    /// State word.
    pub state: String,
    /// Bundle directory (`Home`), when reported.
    pub home: Option<String>,
    /// Guest OS (`OS`).
    pub os: Option<String>,
    /// `GuestTools.state`.
    pub tools_state: Option<String>,
    /// Number of CPUs.
    pub cpus: Option<u32>,
    /// Memory in MiB.
    pub memory_mib: Option<u64>,
    /// MAC address of net0 (12 hex digits as Parallels prints it).
    pub mac: Option<String>,
}

/// How to stop a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `prlctl stop VM` (graceful shutdown through Tools/ACPI).
    Graceful,
    /// `prlctl stop VM --kill` (immediate power-off).
    Kill,
    /// `prlctl stop VM --drop-state` (discard a suspended VM's saved state).
    DropState,
}

/// Result of `prlctl exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The guest command's exit status.
    pub status: i32,
    /// Captured stdout (bounded).
    pub stdout: String,
    /// Captured stderr (bounded).
    pub stderr: String,
}

/// A snapshot from `prlctl snapshot-list VM --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Snapshot id with braces, as prlctl wants it back.
    pub id: String,
    /// Name.
    pub name: String,
    /// Whether it is the current snapshot.
    pub current: bool,
}

/// What MARBLE needs from a hypervisor. Every call has a timeout inside the implementation;
/// implementations serialise nothing themselves (the actor guarantees one operation per VM)
/// except concurrent `exec`s into one guest, which they may cap.
pub trait Hypervisor: Send + Sync + 'static {
    /// All VMs of the user (`prlctl list -a --json`).
    fn list_all(&self) -> HvFuture<'_, Vec<VmListing>>;
    /// Details of one VM (`prlctl list -i --json VM`).
    fn info<'a>(&'a self, vm: &'a str) -> HvFuture<'a, VmDetails>;
    /// `prlctl start VM`.
    fn start<'a>(&'a self, vm: &'a str) -> HvFuture<'a, ()>;
    /// `prlctl resume VM` (for suspended or paused VMs).
    fn resume<'a>(&'a self, vm: &'a str) -> HvFuture<'a, ()>;
    /// `prlctl stop VM [--kill|--drop-state]`.
    fn stop<'a>(&'a self, vm: &'a str, mode: StopMode) -> HvFuture<'a, ()>;
    /// `prlctl suspend VM`.
    fn suspend<'a>(&'a self, vm: &'a str) -> HvFuture<'a, ()>;
    /// Run `argv` in the guest (`prlctl exec VM …`) with its own timeout: the guest runs
    /// exactly these words, whatever characters they hold (the prlctl adapter turns them into
    /// one quoted guest command line, see [`guest_cmd`]). A non-zero guest status is not an
    /// error.
    /// `stdin` is written to the guest command's standard input and then closed; secrets
    /// (JIT configs) travel this way, never in argv, which other host users can read.
    fn exec<'a>(
        &'a self,
        vm: &'a str,
        argv: &'a [String],
        stdin: Option<&'a [u8]>,
        timeout: Duration,
    ) -> HvFuture<'a, ExecOutput>;
    /// `prlctl register PATH [--regenerate-src-uuid]`.
    fn register<'a>(&'a self, bundle: &'a str, regenerate_src_uuid: bool) -> HvFuture<'a, ()>;
    /// `prlctl unregister VM`.
    fn unregister<'a>(&'a self, vm: &'a str) -> HvFuture<'a, ()>;
    /// `prlctl set VM ARGS…`.
    fn set<'a>(&'a self, vm: &'a str, args: &'a [String]) -> HvFuture<'a, ()>;
    /// `prlctl clone SRC --name NEW [--dst DIR]`.
    fn clone_vm<'a>(
        &'a self,
        src: &'a str,
        new_name: &'a str,
        dst: Option<&'a str>,
    ) -> HvFuture<'a, ()>;
    /// `prlctl delete VM`.
    fn delete<'a>(&'a self, vm: &'a str) -> HvFuture<'a, ()>;
    /// `prlctl snapshot-list VM --json`.
    fn snapshot_list<'a>(&'a self, vm: &'a str) -> HvFuture<'a, Vec<Snapshot>>;
    /// `prlctl snapshot-delete VM --id ID`.
    fn snapshot_delete<'a>(&'a self, vm: &'a str, id: &'a str) -> HvFuture<'a, ()>;
    /// `prlctl create NAME -o macos --no-hdd --restore-image IPSW`: a stopped macOS VM without
    /// a disk (the caller adds the system disk, as the seed did) whose OS is installed from
    /// the IPSW on its first start. `timeout` because reading a 15 GB IPSW
    /// can take much longer than an ordinary call.
    fn create_macos<'a>(
        &'a self,
        name: &'a str,
        ipsw: &'a str,
        timeout: Duration,
    ) -> HvFuture<'a, ()>;
    /// `prlctl --version`, parsed.
    fn version(&self) -> HvFuture<'_, parse::PrlctlVersion>;
    /// Operations a previous daemon began and this one has not resolved yet (described for
    /// `status`); while there are any, nothing is started or stopped. Default: none.
    fn unresolved(&self) -> Vec<String> {
        Vec::new()
    }
}
