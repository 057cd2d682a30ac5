//! `[daemon]` (socket, state file, logging, shutdown, host name) and `[prlctl]` (the
//! hypervisor adapter's path, timeouts and concurrency), with their defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DaemonSection {
    /// Unix socket path (at most 103 bytes: macOS's `sun_path` limit).
    pub socket: PathBuf,
    /// Group owning the socket; its members may run read-only commands. Empty: the daemon
    /// user's primary group.
    pub socket_group: String,
    /// Users allowed to run mutating commands (root always may; so may the daemon's own user).
    pub admin_users: Vec<String>,
    /// State file (locks, leases, cycle position), written atomically.
    pub state_file: PathBuf,
    /// Optional log file, rotated daily, in addition to stderr. Reloadable: no.
    pub log_file: Option<PathBuf>,
    /// Log files kept by rotation.
    pub log_keep: u32,
    /// Graceful shutdown budget; must stay below the plist's `ExitTimeOut` (30 s).
    #[serde(with = "humantime_serde")]
    pub shutdown_budget: Duration,
    /// Name the daemon reports for this host. Empty: the system host name. Either is cut at
    /// the first dot (`macphsft01.cern.ch` → `macphsft01`).
    pub host_name: String,
}

impl Default for DaemonSection {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/usr/local/var/marble/marbled.sock"),
            socket_group: String::new(),
            admin_users: Vec::new(),
            state_file: PathBuf::from("/usr/local/var/marble/state.bin"),
            log_file: None,
            log_keep: 14,
            shutdown_budget: Duration::from_secs(20),
            host_name: String::new(),
        }
    }
}

/// `[prlctl]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrlctlSection {
    /// Path of the prlctl executable (tests point this at the simulator).
    pub path: PathBuf,
    /// Timeout of ordinary calls (list, set, register…).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Timeout of `start`/`resume`.
    #[serde(with = "humantime_serde")]
    pub start_timeout: Duration,
    /// Timeout of `stop`.
    #[serde(with = "humantime_serde")]
    pub stop_timeout: Duration,
    /// Most prlctl processes at once.
    pub max_concurrent: u32,
    /// Most `prlctl exec` processes at once into one VM (probes, readiness checks, JIT
    /// delivery, provisioning); further execs into that VM wait. Parallels' DevOps service
    /// keeps it to 2.
    pub max_exec_per_vm: u32,
    /// Extra environment for prlctl (the environment is otherwise cleared). Never secrets.
    pub env: BTreeMap<String, String>,
}

impl Default for PrlctlSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/usr/local/bin/prlctl"),
            timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(180),
            stop_timeout: Duration::from_secs(120),
            max_concurrent: 4,
            max_exec_per_vm: 2,
            env: BTreeMap::new(),
        }
    }
}
