//! The simulated host's state: VMs, their scripted guests, faults and settings, plus the
//! time-based settling (boot readiness, delayed stops) and identity helpers (UUIDs, MACs).
//!
//! Everything here is plain data that round-trips through `state.json`; no I/O except the
//! entropy read in [`random_bytes`] and the clock in [`now_ms`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::faults::FaultEntry;

/// Power state of a simulated VM, as `prlctl` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    /// Powered off.
    Stopped,
    /// Running (the guest may still be booting, see [`Vm::guest_ready`]).
    Running,
    /// Paused (memory kept, vCPUs halted).
    Paused,
    /// Suspended to disk.
    Suspended,
}

impl VmState {
    /// The word `prlctl` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Stopped => "stopped",
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Suspended => "suspended",
        }
    }

    /// Parse a state word.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stopped" => Some(VmState::Stopped),
            "running" => Some(VmState::Running),
            "paused" => Some(VmState::Paused),
            "suspended" => Some(VmState::Suspended),
            _ => None,
        }
    }
}

/// One network adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Net {
    /// Device name (`net0`).
    pub name: String,
    /// `shared`, `bridged` or `host`.
    pub kind: String,
    /// Host interface for bridged adapters (`default`, `en0`).
    pub iface: Option<String>,
    /// 12 upper-case hex digits, Parallels style (`001C42…`).
    pub mac: String,
    /// Whether the adapter is enabled.
    pub enabled: bool,
}

/// One hard disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hdd {
    /// Device name (`hdd0`).
    pub name: String,
    /// Path of the `.hdd` directory.
    pub image: PathBuf,
    /// `plain` or `expanded`.
    pub kind: String,
    /// Size in MiB.
    pub size_mb: u64,
}

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRec {
    /// Braced lower-case GUID.
    pub id: String,
    /// Name (`-n`).
    pub name: String,
    /// `YYYY-MM-DD HH:MM:SS` (UTC).
    pub date: String,
    /// `poweron`, `poweroff` or `pause`.
    pub state: String,
    /// Parent id (braced) or empty.
    pub parent: String,
}

/// A process in the scripted guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestProc {
    /// Guest pid.
    pub pid: u32,
    /// Parent pid (1 = launchd).
    pub ppid: u32,
    /// Full command line.
    pub command: String,
    /// Wall-clock ms at which the process appears (boot processes appear when the guest is up).
    pub started_ms: u64,
    /// Wall-clock ms at which it is gone (an exec's shell that ran through simulated time
    /// stays visible to other execs until then); `None` = runs until killed or power-off.
    #[serde(default)]
    pub ends_ms: Option<u64>,
}

impl GuestProc {
    /// Process name as `pgrep` without `-f` sees it: basename of the first word.
    pub fn name(&self) -> &str {
        let first = self.command.split_whitespace().next().unwrap_or("");
        first.rsplit('/').next().unwrap_or(first)
    }
}

/// How an exec rule matches the joined guest command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// The whole command line equals this string.
    Exact(String),
    /// The command line contains this string.
    Contains(String),
}

/// What a matching exec rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Answer with the rule's stdout/stderr/exit after `delay_ms`.
    Reply,
    /// Block forever (killable with SIGKILL).
    Hang,
    /// Fail with the "Unable to open new session" error, exit 255.
    SessionError,
    /// Start/kill the rule's processes, then run the command in the guest shell as usual.
    Run,
}

/// A scripted answer for `prlctl exec`; the first matching rule of a VM wins over builtins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRule {
    /// Match on the joined command line.
    pub matcher: Match,
    /// What to do.
    pub action: RuleAction,
    /// Guest stdout.
    pub stdout: String,
    /// Guest stderr.
    pub stderr: String,
    /// Guest exit status.
    pub exit: i32,
    /// Delay before answering.
    pub delay_ms: u64,
    /// Guest processes started by this command (command lines).
    pub spawn: Vec<String>,
    /// Guest processes whose command line contains one of these are killed by this command.
    pub kill: Vec<String>,
    /// How many more times the rule applies (`None` = always).
    pub remaining: Option<u32>,
}

impl ExecRule {
    fn new(matcher: Match) -> Self {
        ExecRule {
            matcher,
            action: RuleAction::Reply,
            stdout: String::new(),
            stderr: String::new(),
            exit: 0,
            delay_ms: 0,
            spawn: Vec::new(),
            kill: Vec::new(),
            remaining: None,
        }
    }
    /// Rule matching a command line exactly.
    pub fn exact(cmd: &str) -> Self {
        Self::new(Match::Exact(cmd.to_owned()))
    }
    /// Rule matching command lines containing `needle`.
    pub fn contains(needle: &str) -> Self {
        Self::new(Match::Contains(needle.to_owned()))
    }
    /// Set stdout.
    pub fn stdout(mut self, s: &str) -> Self {
        self.stdout = s.to_owned();
        self
    }
    /// Set stderr.
    pub fn stderr(mut self, s: &str) -> Self {
        self.stderr = s.to_owned();
        self
    }
    /// Set the exit status.
    pub fn exit(mut self, code: i32) -> Self {
        self.exit = code;
        self
    }
    /// Answer after a delay.
    pub fn delay_ms(mut self, ms: u64) -> Self {
        self.delay_ms = ms;
        self
    }
    /// Hang forever instead of answering.
    pub fn hang(mut self) -> Self {
        self.action = RuleAction::Hang;
        self
    }
    /// Fail with the exec session error.
    pub fn session_error(mut self) -> Self {
        self.action = RuleAction::SessionError;
        self
    }
    /// Only start/kill processes: the command itself still runs in the guest shell.
    pub fn then_run(mut self) -> Self {
        self.action = RuleAction::Run;
        self
    }
    /// Start a guest process when run.
    pub fn spawns(mut self, cmd: &str) -> Self {
        self.spawn.push(cmd.to_owned());
        self
    }
    /// Kill guest processes whose command line contains `pattern` when run.
    pub fn kills(mut self, pattern: &str) -> Self {
        self.kill.push(pattern.to_owned());
        self
    }
    /// Apply only `n` times.
    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }
    /// Whether the rule matches `cmdline`.
    pub fn matches(&self, cmdline: &str) -> bool {
        match &self.matcher {
            Match::Exact(s) => s == cmdline,
            Match::Contains(s) => cmdline.contains(s.as_str()),
        }
    }
}

/// One simulated VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    /// Lower-case UUID without braces.
    pub uuid: String,
    /// Source VM UUID (`SourceVmUuid`), without braces.
    pub src_uuid: String,
    /// Name, unique per host user.
    pub name: String,
    /// Free-text description.
    pub description: String,
    /// Power state.
    pub state: VmState,
    /// `macosx`.
    pub os: String,
    /// `APPLE_VZ_VM`.
    pub vm_type: String,
    /// Bundle directory (`…/<name>.macvm`).
    pub home: PathBuf,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memsize_mb: u64,
    /// Network adapters.
    pub nets: Vec<Net>,
    /// Hard disks; the guest filesystem lives in the first one.
    pub hdds: Vec<Hdd>,
    /// `installed`, `not_installed`, `possibly_installed`, `outdated`.
    pub tools_state: String,
    /// Parallels Tools version.
    pub tools_version: String,
    /// Models `chflags uchg` on the bundle (§7 "Access denied").
    pub locked: bool,
    /// `--isolate-vm on` (blocks exec).
    pub isolated: bool,
    /// `--shf-host on|off`.
    pub shf_host: bool,
    /// `--shf-host-defined` value.
    pub shf_host_defined: String,
    /// `--startup-view`.
    pub startup_view: String,
    /// Template flag.
    pub template: bool,
    /// IPSW the VM was created from.
    pub restore_image: Option<String>,
    /// Snapshots, oldest first.
    pub snapshots: Vec<SnapshotRec>,
    /// Current snapshot id.
    pub current_snapshot: Option<String>,
    /// Guest IPv4 once booted.
    pub ip: String,
    /// Wall-clock ms of the last start (uptime).
    pub started_ms: Option<u64>,
    /// Wall-clock ms from which the guest accepts exec sessions.
    pub guest_ready_ms: Option<u64>,
    /// A stop that will complete at this wall-clock ms (after a canceled stop).
    pub pending_stop_ms: Option<u64>,
    /// Guest boot time after `start` during which exec fails with the session error.
    pub boot_delay_ms: u64,
    /// Same after `resume`.
    pub resume_delay_ms: u64,
    /// Running guest processes.
    pub procs: Vec<GuestProc>,
    /// Command lines started on every boot, visible once the guest is up.
    pub boot_procs: Vec<String>,
    /// Next guest pid.
    pub next_pid: u32,
    /// Scripted exec answers, first match wins.
    pub exec_rules: Vec<ExecRule>,
    /// `scutil --set` values.
    pub scutil: BTreeMap<String, String>,
    /// Other `set` options accepted without a model (`--faster-vm on`, …).
    pub other_settings: BTreeMap<String, String>,
    /// Whether the first start should write `Installation succeeded` to `parallels.log`.
    pub pending_install: bool,
    /// Owners of guest paths (`user:group`) other than the default `root:wheel`.
    #[serde(default)]
    pub guest_owners: BTreeMap<String, String>,
}

impl Vm {
    /// Braced UUID as `list` prints it.
    pub fn braced_uuid(&self) -> String {
        format!("{{{}}}", self.uuid)
    }

    /// Whether `id` (name or UUID, braces optional, any case) names this VM.
    pub fn is_named(&self, id: &str) -> bool {
        self.name == id || normalize_uuid(id).is_some_and(|u| u == self.uuid)
    }

    /// Whether the guest accepts exec sessions at `now`.
    pub fn guest_ready(&self, now: u64) -> bool {
        self.state == VmState::Running && self.guest_ready_ms.is_some_and(|t| t <= now)
    }

    /// Processes visible at `now`.
    pub fn visible_procs(&self, now: u64) -> impl Iterator<Item = &GuestProc> {
        self.procs
            .iter()
            .filter(move |p| p.started_ms <= now && p.ends_ms.is_none_or(|e| now < e))
    }

    /// Add a guest process appearing at `at`; returns its pid.
    pub fn spawn(&mut self, command: &str, at: u64) -> u32 {
        let pid = self.next_pid;
        self.next_pid += 1;
        self.procs.push(GuestProc {
            pid,
            ppid: 1,
            command: command.to_owned(),
            started_ms: at,
            ends_ms: None,
        });
        pid
    }

    /// Power on: uptime starts, guest becomes ready after `delay`, boot processes appear then.
    pub fn power_on(&mut self, now: u64, delay: u64) {
        self.state = VmState::Running;
        self.started_ms = Some(now);
        self.guest_ready_ms = Some(now + delay);
        self.pending_stop_ms = None;
        let boot = self.boot_procs.clone();
        for cmd in &boot {
            self.spawn(cmd, now + delay);
        }
    }

    /// Power off: every guest process dies.
    pub fn power_off(&mut self) {
        self.state = VmState::Stopped;
        self.started_ms = None;
        self.guest_ready_ms = None;
        self.pending_stop_ms = None;
        self.procs.clear();
    }

    /// The guest root directory on the host (inside the system disk, so clones and images
    /// carry the guest's files like a real disk would).
    pub fn guest_root(&self) -> PathBuf {
        match self.hdds.first() {
            Some(h) => h.image.join("guest-root"),
            None => self.home.join("guest-root"),
        }
    }

    /// The `net0` MAC, if any.
    pub fn mac0(&self) -> Option<&str> {
        self.nets.first().map(|n| n.mac.as_str())
    }
}

/// Host-wide settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// What `prlctl --version` reports.
    pub version_line: String,
    /// `exec` with a total argv longer than this hangs forever (PD 26.4 behaviour, §4).
    pub exec_argv_hang_bytes: Option<usize>,
    /// Default VM home for `create`/`clone` without `--dst`.
    pub vm_home: Option<PathBuf>,
    /// Licence edition `prlsrvctl info --license` reports (`pro`, `business`, `standard`…).
    #[serde(default = "default_edition")]
    pub edition: String,
    /// Options this Parallels build does not know: `create` and `set` naming one fail with
    /// `Unrecognized option: <opt>`, exit 255, before changing anything (PD 26.3.2 did so for
    /// `--auto-share-bluetooth`, reference/prlctl.md §6).
    #[serde(default)]
    pub unknown_options: Vec<String>,
}

fn default_edition() -> String {
    "pro".to_owned()
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            version_line: "prlctl version 26.3.2 (57398)".to_owned(),
            exec_argv_hang_bytes: Some(3900),
            vm_home: None,
            edition: default_edition(),
            unknown_options: Vec::new(),
        }
    }
}

/// The whole simulated host (one host user's registry).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SimState {
    /// Registered VMs.
    pub vms: Vec<Vm>,
    /// Injected faults.
    pub faults: Vec<FaultEntry>,
    /// Host settings.
    pub settings: Settings,
    /// Counter for guest IPs.
    pub next_ip: u32,
}

impl SimState {
    /// Index of the VM named by `id`: UUID match first, then exact name (as prlctl does).
    pub fn find(&self, id: &str) -> Option<usize> {
        if let Some(u) = normalize_uuid(id)
            && let Some(i) = self.vms.iter().position(|v| v.uuid == u)
        {
            return Some(i);
        }
        self.vms.iter().position(|v| v.name == id)
    }

    /// Apply time-based transitions that are due at `now` (delayed stops).
    pub fn settle(&mut self, now: u64) {
        for vm in &mut self.vms {
            if vm.pending_stop_ms.is_some_and(|t| t <= now) {
                vm.power_off();
            }
        }
    }

    /// Next guest IP in Parallels' shared network.
    pub fn alloc_ip(&mut self) -> String {
        self.next_ip += 1;
        format!("10.211.55.{}", 2 + self.next_ip % 250)
    }

    /// A new VM record with defaults (stopped, Tools installed, one shared NIC and one disk).
    pub fn new_vm(&mut self, name: &str, home: PathBuf) -> Vm {
        let hdd = home.join("harddisk.hdd");
        Vm {
            uuid: new_uuid(),
            src_uuid: new_uuid(),
            name: name.to_owned(),
            description: String::new(),
            state: VmState::Stopped,
            os: "macosx".to_owned(),
            vm_type: "APPLE_VZ_VM".to_owned(),
            home,
            cpus: 4,
            memsize_mb: 8192,
            nets: vec![Net {
                name: "net0".to_owned(),
                kind: "shared".to_owned(),
                iface: None,
                mac: new_mac(),
                enabled: true,
            }],
            hdds: vec![Hdd {
                name: "hdd0".to_owned(),
                image: hdd,
                kind: "plain".to_owned(),
                size_mb: 65536,
            }],
            tools_state: "installed".to_owned(),
            tools_version: "26.3.2-57398".to_owned(),
            locked: false,
            isolated: false,
            shf_host: true,
            shf_host_defined: "home".to_owned(),
            startup_view: "window".to_owned(),
            template: false,
            restore_image: None,
            snapshots: Vec::new(),
            current_snapshot: None,
            ip: self.alloc_ip(),
            started_ms: None,
            guest_ready_ms: None,
            pending_stop_ms: None,
            boot_delay_ms: 0,
            resume_delay_ms: 0,
            procs: Vec::new(),
            boot_procs: Vec::new(),
            next_pid: 400,
            exec_rules: Vec::new(),
            scutil: BTreeMap::new(),
            other_settings: BTreeMap::new(),
            pending_install: false,
            guest_owners: BTreeMap::new(),
        }
    }
}

/// Lower-case UUID without braces, or `None` if `s` is not UUID-shaped.
pub fn normalize_uuid(s: &str) -> Option<String> {
    let t = s.trim();
    let t = t.strip_prefix('{').unwrap_or(t);
    let t = t.strip_suffix('}').unwrap_or(t);
    let ok = t.len() == 36
        && t.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    ok.then(|| t.to_ascii_lowercase())
}

/// `n` bytes from the kernel's entropy source (falls back to a clock/pid mix).
pub fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if filled.is_err() {
        let mut x = now_ms() ^ u64::from(std::process::id()).rotate_left(32);
        for b in &mut buf {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (x >> 56) as u8;
        }
    }
    buf
}

/// A random version-4 UUID, lower case, no braces.
pub fn new_uuid() -> String {
    let mut b = random_bytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A random Parallels MAC: `001C42` + 6 upper-case hex digits.
pub fn new_mac() -> String {
    let b = random_bytes(3);
    format!("001C42{:02X}{:02X}{:02X}", b[0], b[1], b[2])
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for a Unix-ms timestamp.
pub fn format_datetime(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `HH:MM:SS` for a duration in seconds (hours may exceed 24, as prlctl's uptime does).
pub fn format_hms(secs: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_normalization_accepts_braces_and_case() {
        let u = "BD70007C-83B8-4642-B1D0-FA8DDFA0A4CF";
        assert_eq!(
            normalize_uuid(&format!("{{{u}}}")).as_deref(),
            Some("bd70007c-83b8-4642-b1d0-fa8ddfa0a4cf")
        );
        assert_eq!(normalize_uuid("macphsft01-ROOT-VM-macOS-14"), None);
        assert!(normalize_uuid(&new_uuid()).is_some());
    }

    #[test]
    fn macs_have_the_parallels_prefix() {
        let m = new_mac();
        assert!(m.starts_with("001C42") && m.len() == 12, "{m}");
    }

    #[test]
    fn datetime_formats_known_instants() {
        assert_eq!(format_datetime(0), "1970-01-01 00:00:00");
        assert_eq!(format_datetime(1_752_147_698_000), "2025-07-10 11:41:38");
    }
}
