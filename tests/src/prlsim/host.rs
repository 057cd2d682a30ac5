//! [`SimHost`]: the test-side control API of a simulated host. Every call takes the same
//! `flock` as `fake-prlctl`, so tests may drive and observe the host while the daemon runs
//! prlctl concurrently. Accessors return owned snapshots, handy inside `wait_until` closures.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::faults::{FaultEntry, FaultKind};
use super::model::{ExecRule, GuestProc, SimState, Vm, VmState, now_ms};
use super::store::{self, Invocation, Store};
use super::{DIR_ENV, SimError};

/// A simulated Parallels host (one host user) rooted in a directory.
#[derive(Debug, Clone)]
pub struct SimHost {
    store: Store,
}

impl SimHost {
    /// Create (or reopen) a simulated host in `dir`, creating the directory layout.
    pub fn create(dir: impl Into<PathBuf>) -> Result<Self, SimError> {
        let store = Store::new(dir);
        store.init()?;
        store.with_state(|_| ())?;
        Ok(SimHost { store })
    }

    /// The host directory (the value for `MARBLE_PRLSIM_DIR`).
    pub fn dir(&self) -> &Path {
        self.store.dir()
    }

    /// `(MARBLE_PRLSIM_DIR, dir)`, ready for `Command::env`.
    pub fn env(&self) -> (&'static str, PathBuf) {
        (DIR_ENV, self.dir().to_owned())
    }

    /// Run `f` on the state under the lock and save it (escape hatch for anything not
    /// covered by a dedicated method).
    pub fn update<R>(&self, f: impl FnOnce(&mut SimState) -> R) -> Result<R, SimError> {
        self.store.with_state(f)
    }

    fn with_vm<R>(&self, id: &str, f: impl FnOnce(&mut Vm) -> R) -> Result<R, SimError> {
        self.store.with_state(|st| match st.find(id) {
            Some(i) => Ok(f(&mut st.vms[i])),
            None => Err(SimError::NoSuchVm(id.to_owned())),
        })?
    }

    /// A copy of the whole state.
    pub fn state(&self) -> Result<SimState, SimError> {
        self.store.with_state(|st| st.clone())
    }

    /// Register a new stopped VM with Tools installed and a bundle under `<dir>/vms/`;
    /// returns its UUID (no braces).
    pub fn add_vm(&self, name: &str) -> Result<String, SimError> {
        let home = self.store.default_vm_home().join(format!("{name}.macvm"));
        self.store.with_state(|st| {
            if st.vms.iter().any(|v| v.name == name) {
                return Err(SimError::DuplicateName(name.to_owned()));
            }
            let vm = st.new_vm(name, home);
            store::create_bundle(&vm)?;
            let uuid = vm.uuid.clone();
            st.vms.push(vm);
            Ok(uuid)
        })?
    }

    /// [`Self::add_vm`] and start it (guest ready at once unless a boot delay is set later).
    pub fn add_running_vm(&self, name: &str) -> Result<String, SimError> {
        let uuid = self.add_vm(name)?;
        self.set_vm_state(&uuid, VmState::Running)?;
        Ok(uuid)
    }

    /// A copy of one VM (by name or UUID).
    pub fn vm(&self, id: &str) -> Result<Vm, SimError> {
        self.with_vm(id, |vm| vm.clone())
    }

    /// The VM's power state.
    pub fn vm_state(&self, id: &str) -> Result<VmState, SimError> {
        self.with_vm(id, |vm| vm.state)
    }

    /// Force a power state, as if done in the PD GUI: `Running` boots (boot delay and boot
    /// processes apply), `Stopped` kills every guest process.
    pub fn set_vm_state(&self, id: &str, state: VmState) -> Result<(), SimError> {
        self.with_vm(id, |vm| match state {
            VmState::Running if vm.state == VmState::Stopped => {
                vm.power_on(now_ms(), vm.boot_delay_ms)
            }
            VmState::Stopped => vm.power_off(),
            s => vm.state = s,
        })
    }

    /// Guest boot time after `start` during which exec fails with the session error.
    pub fn set_boot_delay(&self, id: &str, d: Duration) -> Result<(), SimError> {
        self.with_vm(id, |vm| vm.boot_delay_ms = millis(d))
    }

    /// Same after `resume`/`start` of a suspended or paused VM.
    pub fn set_resume_delay(&self, id: &str, d: Duration) -> Result<(), SimError> {
        self.with_vm(id, |vm| vm.resume_delay_ms = millis(d))
    }

    /// `GuestTools.state` (`installed`, `not_installed`, …); exec needs `installed`.
    pub fn set_tools_state(&self, id: &str, state: &str) -> Result<(), SimError> {
        self.with_vm(id, |vm| vm.tools_state = state.to_owned())
    }

    /// Model `chflags uchg` on the bundle (§7 "Access denied"). Linux has no file flags, so
    /// the flag itself is modelled as a sibling marker `<bundle>.uchg` (see [`uchg_marker`]):
    /// what `marblectl migrate check` reads off the host on Linux where macOS reads
    /// `st_flags`.
    pub fn set_locked(&self, id: &str, locked: bool) -> Result<(), SimError> {
        let home = self.with_vm(id, |vm| {
            vm.locked = locked;
            vm.home.clone()
        })?;
        let marker = uchg_marker(&home);
        let done = if locked {
            std::fs::write(&marker, b"")
        } else {
            match std::fs::remove_file(&marker) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        done.map_err(|e| SimError::io(&marker, e))
    }

    /// `--isolate-vm on|off`.
    pub fn set_isolated(&self, id: &str, isolated: bool) -> Result<(), SimError> {
        self.with_vm(id, |vm| vm.isolated = isolated)
    }

    /// Start a guest process now; returns its pid. It dies when the VM stops.
    pub fn add_process(&self, id: &str, command: &str) -> Result<u32, SimError> {
        self.with_vm(id, |vm| vm.spawn(command, now_ms()))
    }

    /// Kill guest processes whose command line contains `pattern`; returns how many.
    pub fn remove_processes(&self, id: &str, pattern: &str) -> Result<usize, SimError> {
        self.with_vm(id, |vm| {
            let before = vm.procs.len();
            vm.procs.retain(|p| !p.command.contains(pattern));
            before - vm.procs.len()
        })
    }

    /// Guest processes visible now.
    pub fn processes(&self, id: &str) -> Result<Vec<GuestProc>, SimError> {
        let now = now_ms();
        self.with_vm(id, |vm| vm.visible_procs(now).cloned().collect())
    }

    /// A process started on every boot, once the boot delay has passed.
    pub fn add_boot_process(&self, id: &str, command: &str) -> Result<(), SimError> {
        self.with_vm(id, |vm| vm.boot_procs.push(command.to_owned()))
    }

    /// Stop starting boot processes whose command line contains `pattern`.
    pub fn remove_boot_processes(&self, id: &str, pattern: &str) -> Result<(), SimError> {
        self.with_vm(id, |vm| vm.boot_procs.retain(|c| !c.contains(pattern)))
    }

    /// Append an exec rule (rules are tried in order before the builtins).
    pub fn add_exec_rule(&self, id: &str, rule: ExecRule) -> Result<(), SimError> {
        self.with_vm(id, |vm| vm.exec_rules.push(rule))
    }

    /// Remove every exec rule of the VM.
    pub fn clear_exec_rules(&self, id: &str) -> Result<(), SimError> {
        self.with_vm(id, |vm| vm.exec_rules.clear())
    }

    /// Inject a fault, global (`vm = None`) or for one VM, for `times` uses or until cleared.
    pub fn set_fault(
        &self,
        vm: Option<&str>,
        kind: FaultKind,
        times: Option<u32>,
    ) -> Result<(), SimError> {
        self.store.with_state(|st| {
            let vm = match vm {
                None => None,
                Some(id) => match st.find(id) {
                    Some(i) => Some(st.vms[i].uuid.clone()),
                    None => return Err(SimError::NoSuchVm(id.to_owned())),
                },
            };
            st.faults.push(FaultEntry {
                vm,
                kind,
                remaining: times,
            });
            Ok(())
        })?
    }

    /// Clear faults: of one VM, or every fault when `vm` is `None`.
    pub fn clear_faults(&self, vm: Option<&str>) -> Result<(), SimError> {
        self.store.with_state(|st| match vm {
            None => st.faults.clear(),
            Some(id) => {
                let uuid = st.find(id).map(|i| st.vms[i].uuid.clone());
                st.faults.retain(|f| f.vm != uuid);
            }
        })
    }

    /// Host directory holding the VM's guest filesystem.
    pub fn guest_root(&self, id: &str) -> Result<PathBuf, SimError> {
        self.with_vm(id, |vm| vm.guest_root())
    }

    /// Host path of an absolute guest path.
    pub fn guest_path(&self, id: &str, guest: &str) -> Result<PathBuf, SimError> {
        Ok(self.guest_root(id)?.join(guest.trim_start_matches('/')))
    }

    /// Contents of a guest file, `None` if it does not exist.
    pub fn read_guest_file(&self, id: &str, guest: &str) -> Result<Option<Vec<u8>>, SimError> {
        let p = self.guest_path(id, guest)?;
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SimError::io(&p, e)),
        }
    }

    /// Permission bits of a guest file, `None` if it does not exist.
    pub fn guest_file_mode(&self, id: &str, guest: &str) -> Result<Option<u32>, SimError> {
        use std::os::unix::fs::PermissionsExt;
        let p = self.guest_path(id, guest)?;
        Ok(std::fs::metadata(&p)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777))
    }

    /// Create a guest file (parents too) with `mode`.
    pub fn write_guest_file(
        &self,
        id: &str,
        guest: &str,
        data: &[u8],
        mode: u32,
    ) -> Result<(), SimError> {
        use std::os::unix::fs::PermissionsExt;
        let p = self.guest_path(id, guest)?;
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| SimError::io(parent, e))?;
        }
        std::fs::write(&p, data).map_err(|e| SimError::io(&p, e))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| SimError::io(&p, e))
    }

    /// Every file under the host directory (bundles, guest filesystems, state, log) whose
    /// bytes contain `needle`; for "the secret is only where it belongs" assertions.
    pub fn files_containing(&self, needle: &[u8]) -> Result<Vec<PathBuf>, SimError> {
        let mut hits = Vec::new();
        let mut stack = vec![self.dir().to_owned()];
        while let Some(d) = stack.pop() {
            let rd = std::fs::read_dir(&d).map_err(|e| SimError::io(&d, e))?;
            for entry in rd.flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(bytes) = std::fs::read(&p)
                    && !needle.is_empty()
                    && bytes.windows(needle.len()).any(|w| w == needle)
                {
                    hits.push(p);
                }
            }
        }
        hits.sort();
        Ok(hits)
    }

    /// Every logged invocation, oldest first.
    pub fn invocations(&self) -> Result<Vec<Invocation>, SimError> {
        self.store.invocations()
    }

    /// Just the argv of every finished invocation (hang markers excluded), oldest first.
    pub fn argvs(&self) -> Result<Vec<Vec<String>>, SimError> {
        Ok(self
            .invocations()?
            .into_iter()
            .filter(|i| i.exit.is_some())
            .map(|i| i.argv)
            .collect())
    }

    /// Empty the invocation log.
    pub fn clear_invocations(&self) -> Result<(), SimError> {
        self.store.clear_invocations()
    }

    /// Poll `cond` on the state every 10 ms until it holds or `timeout` passes.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut cond: impl FnMut(&SimState) -> bool,
    ) -> Result<bool, SimError> {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&self.state()?) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// What one `fake-prlctl` run printed and returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrlRun {
    /// Stdout (lossy UTF-8).
    pub stdout: String,
    /// Stderr (lossy UTF-8).
    pub stderr: String,
    /// Exit code (`-1` if killed by a signal).
    pub code: i32,
}

impl SimHost {
    /// Run the `fake-prlctl` executable `exe` against this host with `args`, feeding `stdin`
    /// (closed afterwards; `None` = `/dev/null`).
    pub fn prlctl(
        &self,
        exe: &Path,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> std::io::Result<PrlRun> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(exe)
            .args(args)
            .env(DIR_ENV, self.dir())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // The guest command may not read stdin; a closed pipe is not a failure here.
            let _ = pipe.write_all(data);
        }
        let out = child.wait_with_output()?;
        Ok(PrlRun {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code().unwrap_or(-1),
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The simulator's stand-in for the `uchg` flag of `bundle`: an empty file `<bundle>.uchg`
/// next to it (marbled's non-macOS `migrate check` reads the same name).
pub fn uchg_marker(bundle: &Path) -> PathBuf {
    let mut name = bundle.file_name().unwrap_or_default().to_os_string();
    name.push(".uchg");
    bundle.with_file_name(name)
}
