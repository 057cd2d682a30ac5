//! Persistence of the simulated host in a directory: `state.json` guarded by an exclusive
//! `flock` on `state.lock` (many fake `prlctl` processes run at once), the invocation log
//! `invocations.jsonl`, and the on-disk VM bundles (`config.pvs`, disk directory, guest root).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::SimError;
use super::model::{SimState, Vm, now_ms};

/// State file name inside the sim dir.
pub const STATE_FILE: &str = "state.json";
/// Lock file name inside the sim dir.
pub const LOCK_FILE: &str = "state.lock";
/// Invocation log name inside the sim dir.
pub const LOG_FILE: &str = "invocations.jsonl";

/// One logged `prlctl` invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// Wall-clock ms when the line was written.
    pub ts_ms: u64,
    /// Arguments after the program name.
    pub argv: Vec<String>,
    /// Exit code; `None` for a hang (written when the hang starts).
    pub exit: Option<i32>,
    /// Process id of the fake prlctl.
    pub pid: u32,
}

/// A simulated host directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// A store rooted at `dir` (not created).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    /// The sim dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Create the directory layout if missing.
    pub fn init(&self) -> Result<(), SimError> {
        for d in [self.dir.clone(), self.dir.join("vms")] {
            fs::create_dir_all(&d).map_err(|e| SimError::io(&d, e))?;
        }
        Ok(())
    }

    /// Default VM home (`<dir>/vms`).
    pub fn default_vm_home(&self) -> PathBuf {
        self.dir.join("vms")
    }

    /// Run `f` on the state under the exclusive lock, after settling time-based transitions;
    /// the state is written back (atomically) only if `f` changed it.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut SimState) -> R) -> Result<R, SimError> {
        let lock_path = self.dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| SimError::io(&lock_path, e))?;
        let _guard = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| SimError::io(&lock_path, errno.into()))?;
        let path = self.dir.join(STATE_FILE);
        let before = match fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(SimError::io(&path, e)),
        };
        let mut st: SimState = if before.is_empty() {
            SimState::default()
        } else {
            serde_json::from_str(&before).map_err(|e| SimError::Corrupt(path.clone(), e))?
        };
        st.settle(now_ms());
        let out = f(&mut st);
        let after =
            serde_json::to_string_pretty(&st).map_err(|e| SimError::Corrupt(path.clone(), e))?;
        if after != before {
            let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
            fs::write(&tmp, after.as_bytes()).map_err(|e| SimError::io(&tmp, e))?;
            fs::rename(&tmp, &path).map_err(|e| SimError::io(&path, e))?;
        }
        Ok(out)
    }

    /// Append one invocation line (a single `write` on an `O_APPEND` file, so concurrent
    /// processes never interleave lines).
    pub fn log_invocation(&self, inv: &Invocation) -> Result<(), SimError> {
        let path = self.dir.join(LOG_FILE);
        let mut line =
            serde_json::to_string(inv).map_err(|e| SimError::Corrupt(path.clone(), e))?;
        line.push('\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| SimError::io(&path, e))?;
        f.write_all(line.as_bytes())
            .map_err(|e| SimError::io(&path, e))
    }

    /// Every logged invocation, oldest first.
    pub fn invocations(&self) -> Result<Vec<Invocation>, SimError> {
        let path = self.dir.join(LOG_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(SimError::io(&path, e)),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| SimError::Corrupt(path.clone(), e)))
            .collect()
    }

    /// Truncate the invocation log.
    pub fn clear_invocations(&self) -> Result<(), SimError> {
        let path = self.dir.join(LOG_FILE);
        File::create(&path)
            .map(|_| ())
            .map_err(|e| SimError::io(&path, e))
    }
}

/// Guest directories every simulated macOS guest starts with.
const GUEST_DIRS: &[&str] = &[
    "etc",
    "tmp",
    "private/tmp",
    "var/root",
    "Users/admin",
    "usr/local/bin",
    "Library/LaunchDaemons",
    "Library/Preferences",
    "opt",
];

/// Create a `.macvm`-like bundle for `vm`: `config.pvs`, `Snapshots.xml`, the VZ blobs, the
/// disk directory with its descriptor, and the guest root with the standard directories.
pub fn create_bundle(vm: &Vm) -> Result<(), SimError> {
    let home = &vm.home;
    fs::create_dir_all(home).map_err(|e| SimError::io(home, e))?;
    for (name, body) in [
        (
            "Snapshots.xml",
            "<?xml version=\"1.0\"?>\n<ParallelsSavedStates/>\n",
        ),
        ("aux.bin", "aux"),
        ("machw.bin", "machw"),
        ("macid.bin", "macid"),
        ("parallels.log", ""),
    ] {
        let p = home.join(name);
        fs::write(&p, body).map_err(|e| SimError::io(&p, e))?;
    }
    if let Some(hdd) = vm.hdds.first() {
        create_disk(&hdd.image, 0)?;
    }
    let root = vm.guest_root();
    for d in GUEST_DIRS {
        let p = root.join(d);
        fs::create_dir_all(&p).map_err(|e| SimError::io(&p, e))?;
    }
    write_config(vm)
}

/// A new disk bundle `image` (`…/harddisk.hdd`): `DiskDescriptor.xml` and the base `.hds`
/// (well-known GUID, §8) of `size` bytes, all hole, as a new plain disk is before the guest
/// writes to it.
pub fn create_disk(image: &Path, size: u64) -> Result<(), SimError> {
    fs::create_dir_all(image).map_err(|e| SimError::io(image, e))?;
    let name = image
        .file_name()
        .map_or_else(|| "harddisk.hdd".into(), |n| n.to_string_lossy());
    let hds = format!("{name}.0.{{5fbaabe3-6958-40ff-92a7-860e329aab41}}.hds");
    let desc = image.join("DiskDescriptor.xml");
    let body = format!(
        "<?xml version=\"1.0\"?>\n<Parallels_disk_image Version=\"1.0\">\n  \
         <StorageData><Storage><Image><File>{hds}</File></Image></Storage>\
         </StorageData>\n</Parallels_disk_image>\n"
    );
    fs::write(&desc, body).map_err(|e| SimError::io(&desc, e))?;
    let hds = image.join(hds);
    let f = File::create(&hds).map_err(|e| SimError::io(&hds, e))?;
    f.set_len(size).map_err(|e| SimError::io(&hds, e))
}

/// Rewrite `<home>/config.pvs` from the VM record (identity, name, CPU, memory, MACs).
pub fn write_config(vm: &Vm) -> Result<(), SimError> {
    let p = vm.home.join("config.pvs");
    let macs: String = vm
        .nets
        .iter()
        .map(|n| {
            format!(
                "    <NetworkAdapter id=\"{}\"><MAC>{}</MAC></NetworkAdapter>\n",
                &n.name[3..],
                n.mac
            )
        })
        .collect();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ParallelsVirtualMachine>\n  <Identification>\n    \
         <VmUuid>{{{}}}</VmUuid>\n    <SourceVmUuid>{{{}}}</SourceVmUuid>\n    <VmName>{}</VmName>\n  \
         </Identification>\n  <Hardware>\n    <Cpu><Number>{}</Number></Cpu>\n    \
         <Memory><RAM>{}</RAM></Memory>\n{macs}  </Hardware>\n</ParallelsVirtualMachine>\n",
        vm.uuid,
        vm.src_uuid,
        xml_escape(&vm.name),
        vm.cpus,
        vm.memsize_mb
    );
    fs::write(&p, body).map_err(|e| SimError::io(&p, e))
}

/// Identity read back from a bundle's `config.pvs` (for `register`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleConfig {
    /// `VmUuid` without braces.
    pub uuid: Option<String>,
    /// `SourceVmUuid` without braces.
    pub src_uuid: Option<String>,
    /// `VmName`.
    pub name: Option<String>,
    /// CPU count.
    pub cpus: Option<u32>,
    /// RAM in MiB.
    pub memsize_mb: Option<u64>,
    /// net0 MAC.
    pub mac: Option<String>,
}

/// Read `config.pvs` of a bundle; `None` if it does not exist.
pub fn read_config(home: &Path) -> Option<BundleConfig> {
    let text = fs::read_to_string(home.join("config.pvs")).ok()?;
    let tag = |t: &str| -> Option<String> {
        let open = format!("<{t}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find('<')? + start;
        Some(xml_unescape(&text[start..end]))
    };
    let strip = |s: String| {
        s.trim_matches(|c| c == '{' || c == '}')
            .to_ascii_lowercase()
    };
    Some(BundleConfig {
        uuid: tag("VmUuid").map(strip),
        src_uuid: tag("SourceVmUuid").map(strip),
        name: tag("VmName"),
        cpus: tag("Number").and_then(|s| s.parse().ok()),
        memsize_mb: tag("RAM").and_then(|s| s.parse().ok()),
        mac: tag("MAC"),
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Recursively copy a directory (for `clone`) as Parallels does with APFS clonefile: same
/// bytes, holes and modes (see [`super::clonefile`]).
pub fn copy_dir(src: &Path, dst: &Path) -> Result<(), SimError> {
    super::clonefile::clone_dir(src, dst)
}
