//! VM lifecycle verbs that touch bundles on disk: `create -o macos --restore-image`,
//! `register`, `unregister`, `delete`, `clone`, and the snapshot verbs. `set` is in [`set`].

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};

use super::super::SimError;
use super::super::model::{
    Hdd, SimState, SnapshotRec, VmState, format_datetime, new_mac, new_uuid, normalize_uuid, now_ms,
};
use super::super::store::{self, Store};
use super::list::J;
use super::{ACCESS_DENIED, NOT_FOUND, Outcome, is_locked, not_stopped, unrecognized};

pub use super::set::set;

fn home_for(st: &SimState, store: &Store, dst: Option<&String>, name: &str) -> PathBuf {
    let base = match dst {
        Some(d) => PathBuf::from(d),
        None => st
            .settings
            .vm_home
            .clone()
            .unwrap_or_else(|| store.default_vm_home()),
    };
    base.join(format!("{name}.macvm"))
}

/// `prlctl create NAME -o macos --restore-image FILE [--dst DIR] [--no-hdd] [--uuid U]`.
pub fn create(store: &Store, rest: &[String]) -> Result<Outcome, SimError> {
    let Some(name) = rest.first().filter(|n| !n.starts_with('-')) else {
        return Ok(Outcome::err("prlctl create: the VM name is required", 255));
    };
    let (mut os, mut ipsw, mut dst, mut no_hdd, mut uuid) = (None, None, None, false, None);
    let mut it = rest[1..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" | "--ostype" | "-d" | "--distribution" => os = it.next().cloned(),
            "--restore-image" => ipsw = it.next().cloned(),
            "--dst" => dst = it.next().cloned(),
            "--uuid" => uuid = it.next().and_then(|u| normalize_uuid(u)),
            "--no-hdd" => no_hdd = true,
            other => return Ok(unrecognized(other)),
        }
    }
    if os.as_deref() != Some("macos") {
        return Ok(Outcome::err(
            format!(
                "Failed to create the VM: the simulator only creates macOS VMs (-o macos), got {os:?}"
            ),
            255,
        ));
    }
    let progress = "Creating the virtual machine...";
    if let Some(f) = &ipsw
        && !Path::new(f).is_file()
    {
        return Ok(Outcome::err_after(
            progress,
            format!("Failed to create the VM: The restore image \"{f}\" could not be found."),
        ));
    }
    store.with_state(|st| {
        if st.vms.iter().any(|v| &v.name == name) {
            return Ok(Outcome::err_after(
                progress,
                format!("Failed to create the VM: The virtual machine \"{name}\" already exists."),
            ));
        }
        let home = home_for(st, store, dst.as_ref(), name);
        if home.exists() {
            return Ok(Outcome::err_after(
                progress,
                format!(
                    "Failed to create the VM: The directory \"{}\" already exists.",
                    home.display()
                ),
            ));
        }
        let mut vm = st.new_vm(name, home);
        if let Some(u) = uuid {
            vm.uuid = u;
        }
        if no_hdd {
            vm.hdds.clear();
        }
        vm.restore_image = ipsw.clone();
        vm.pending_install = ipsw.is_some();
        store::create_bundle(&vm)?;
        st.vms.push(vm);
        Ok(Outcome::ok(format!(
            "{progress}\nThe VM has been successfully created.\n"
        )))
    })?
}

/// `prlctl register PATH [--preserve-uuid | --uuid U] [--regenerate-src-uuid] [--force]`.
pub fn register(store: &Store, rest: &[String]) -> Result<Outcome, SimError> {
    let Some(path) = rest.first().filter(|n| !n.starts_with('-')) else {
        return Ok(Outcome::err(
            "prlctl register: the VM path is required",
            255,
        ));
    };
    let (mut preserve, mut uuid, mut regen_src) = (false, None, false);
    let mut it = rest[1..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--preserve-uuid" => preserve = true,
            "--uuid" => uuid = it.next().and_then(|u| normalize_uuid(u)),
            "--regenerate-src-uuid" => regen_src = true,
            "--force" | "--delay-applying-restrictions" => {}
            other => return Ok(unrecognized(other)),
        }
    }
    let progress = "Register the virtual environment...";
    let home = PathBuf::from(path.trim_end_matches('/'));
    let Some(cfg) = store::read_config(&home) else {
        return Ok(Outcome::err_after(
            progress,
            format!(
                "Failed to register the VM: Unable to find the virtual machine configuration file \"{}\".",
                home.join("config.pvs").display()
            ),
        ));
    };
    store.with_state(|st| {
        let name = cfg.name.clone().unwrap_or_else(|| {
            home.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
        });
        if st.vms.iter().any(|v| v.name == name) {
            return Ok(Outcome::err_after(
                progress,
                format!("Failed to register the VM: The virtual machine \"{name}\" is already registered."),
            ));
        }
        let mut vm = st.new_vm(&name, home.clone());
        if let Some(u) = uuid.clone().or_else(|| if preserve { cfg.uuid.clone() } else { None }) {
            if st.vms.iter().any(|v| v.uuid == u) {
                return Ok(Outcome::err_after(
                    progress,
                    "Failed to register the VM: Cannot register this virtual machine due to an ID conflict.",
                ));
            }
            vm.uuid = u;
        }
        if let Some(s) = cfg.src_uuid.clone().filter(|_| !regen_src) {
            vm.src_uuid = s;
        }
        vm.cpus = cfg.cpus.unwrap_or(vm.cpus);
        vm.memsize_mb = cfg.memsize_mb.unwrap_or(vm.memsize_mb);
        if let (Some(m), Some(n)) = (cfg.mac.clone(), vm.nets.first_mut()) {
            n.mac = m;
        }
        let disk = home.join("harddisk.hdd");
        if disk.is_dir() {
            if let Some(h) = vm.hdds.first_mut() {
                h.image = disk;
            }
        } else {
            vm.hdds.clear();
        }
        store::write_config(&vm)?;
        st.vms.push(vm);
        Ok(Outcome::ok(format!("{progress}\nThe virtual environment has been successfully registered.\n")))
    })?
}

/// `prlctl unregister VM` (keeps the files).
pub fn unregister(store: &Store, rest: &[String]) -> Result<Outcome, SimError> {
    let Some(id) = rest.first() else {
        return Ok(Outcome::err("prlctl unregister: VM id is required", 255));
    };
    if let Some(opt) = rest[1..].iter().find(|a| a.as_str() != "--clean-src-uuid") {
        return Ok(unrecognized(opt));
    }
    store.with_state(|st| {
        let Some(i) = st.find(id) else {
            return Outcome::err(NOT_FOUND, 255);
        };
        let vm = &st.vms[i];
        if is_locked(vm) {
            return Outcome::err(format!("Failed to unregister the VM: {ACCESS_DENIED}"), 255);
        }
        if vm.state != VmState::Stopped && vm.state != VmState::Suspended {
            return Outcome::err(
                format!("Failed to unregister the VM: {}", not_stopped(&vm.name)),
                255,
            );
        }
        st.vms.remove(i);
        Outcome::ok("The VM has been successfully unregistered.\n")
    })
}

/// `prlctl delete VM`. PD 26.3.2 asks for confirmation: when stdin is not a terminal one line
/// is read; `y…`/`Y…` or an empty/closed stdin confirms, anything else cancels.
pub fn delete(store: &Store, rest: &[String], stdin: &mut dyn Read) -> Result<Outcome, SimError> {
    let Some(id) = rest.first() else {
        return Ok(Outcome::err("prlctl delete: VM id is required", 255));
    };
    if let Some(opt) = rest.get(1) {
        return Ok(unrecognized(opt));
    }
    let confirmed = if std::io::stdin().is_terminal() {
        true
    } else {
        let mut line = String::new();
        // An unreadable stdin counts as closed.
        let _ = BufReader::new(stdin).read_line(&mut line);
        let t = line.trim();
        t.is_empty() || t.starts_with(['y', 'Y'])
    };
    let progress = "Removing the VM...";
    store.with_state(|st| {
        let Some(i) = st.find(id) else {
            return Ok(Outcome::err(NOT_FOUND, 255));
        };
        let vm = &st.vms[i];
        if !confirmed {
            return Ok(Outcome::err_after(
                progress,
                "Failed to delete the VM: Operation canceled",
            ));
        }
        if is_locked(vm) {
            return Ok(Outcome::err_after(
                progress,
                format!("Failed to delete the VM: {ACCESS_DENIED}"),
            ));
        }
        if vm.state != VmState::Stopped {
            return Ok(Outcome::err_after(
                progress,
                format!("Failed to delete the VM: {}", not_stopped(&vm.name)),
            ));
        }
        let home = vm.home.clone();
        if home.exists() {
            std::fs::remove_dir_all(&home).map_err(|e| SimError::io(&home, e))?;
        }
        st.vms.remove(i);
        Ok(Outcome::ok(format!(
            "{progress}\nThe VM has been successfully removed.\n"
        )))
    })?
}

/// `prlctl clone SRC --name NEW [--dst DIR] [--linked] [--regenerate-src-uuid] [--template]`.
pub fn clone(store: &Store, rest: &[String]) -> Result<Outcome, SimError> {
    let Some(src) = rest.first() else {
        return Ok(Outcome::err("prlctl clone: VM id is required", 255));
    };
    let (mut name, mut dst, mut linked, mut regen, mut template) =
        (None, None, false, false, false);
    let mut it = rest[1..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--name" => name = it.next().cloned(),
            "--dst" => dst = it.next().cloned(),
            "--linked" => linked = true,
            "--regenerate-src-uuid" => regen = true,
            "--template" => template = true,
            "--id" | "--detach-external-hdd" => {
                it.next();
            }
            other => return Ok(unrecognized(other)),
        }
    }
    let Some(name) = name else {
        return Ok(Outcome::err("prlctl clone: --name is required", 255));
    };
    store.with_state(|st| {
        let Some(i) = st.find(src) else {
            return Ok(Outcome::err(NOT_FOUND, 255));
        };
        let source = st.vms[i].clone();
        let progress = format!("Clone the {} VM to VM {name}...", source.name);
        if st.vms.iter().any(|v| v.name == name) {
            return Ok(Outcome::err_after(
                &progress,
                format!("Failed to clone the VM: The virtual machine \"{name}\" already exists."),
            ));
        }
        let home = home_for(st, store, dst.as_ref(), &name);
        store::copy_dir(&source.home, &home)?;
        let mut vm = source.clone();
        vm.uuid = new_uuid();
        if regen {
            vm.src_uuid = new_uuid();
        }
        vm.name = name.clone();
        vm.home = home.clone();
        vm.template = template;
        vm.power_off();
        vm.snapshots.clear();
        vm.current_snapshot = None;
        vm.ip = st.alloc_ip();
        for n in &mut vm.nets {
            n.mac = new_mac();
        }
        for h in &mut vm.hdds {
            if let Ok(rel) = h.image.strip_prefix(&source.home) {
                h.image = home.join(rel);
            }
        }
        if linked {
            // A linked clone of a macOS VM came up without Tools (§5.3).
            vm.tools_state = "not_installed".to_owned();
        }
        vm.locked = false;
        store::write_config(&vm)?;
        st.vms.push(vm);
        Ok(Outcome::ok(format!(
            "{progress}\nThe VM has been successfully cloned.\n"
        )))
    })?
}

/// `snapshot`, `snapshot-list`, `snapshot-delete`.
pub fn snapshot(store: &Store, verb: &str, rest: &[String]) -> Result<Outcome, SimError> {
    let Some(id) = rest.first() else {
        return Ok(Outcome::err(
            format!("prlctl {verb}: VM id is required"),
            255,
        ));
    };
    let (mut name, mut json, mut no_header, mut snap_id) = (String::new(), false, false, None);
    let mut it = rest[1..].iter();
    while let Some(a) = it.next() {
        match (verb, a.as_str()) {
            ("snapshot", "-n" | "--name") => name = it.next().cloned().unwrap_or_default(),
            ("snapshot", "-d" | "--description") => {
                it.next();
            }
            ("snapshot-list", "-j" | "--json") => json = true,
            ("snapshot-list", "--no-header" | "-H") => no_header = true,
            ("snapshot-delete", "-i" | "--id") => snap_id = it.next().cloned(),
            ("snapshot-delete", "-c" | "--children") => {}
            (_, other) => return Ok(unrecognized(other)),
        }
    }
    store.with_state(|st| {
        let Some(i) = st.find(id) else { return Outcome::err(NOT_FOUND, 255) };
        let vm = &mut st.vms[i];
        match verb {
            "snapshot" => {
                let progress = "Creating the snapshot...";
                if is_locked(vm) {
                    return Outcome::err_after(progress, format!("Failed to create the snapshot: {ACCESS_DENIED}"));
                }
                let sid = format!("{{{}}}", new_uuid());
                let state = match vm.state {
                    VmState::Running => "poweron",
                    VmState::Paused => "pause",
                    _ => "poweroff",
                };
                vm.snapshots.push(SnapshotRec {
                    id: sid.clone(),
                    name,
                    date: format_datetime(now_ms()),
                    state: state.to_owned(),
                    parent: vm.current_snapshot.clone().unwrap_or_default(),
                });
                vm.current_snapshot = Some(sid.clone());
                Outcome::ok(format!("{progress}\nThe snapshot with id {sid} has been successfully created.\n"))
            }
            "snapshot-list" if json => {
                if vm.snapshots.is_empty() {
                    return Outcome::ok("");
                }
                let obj = J::Obj(
                    vm.snapshots
                        .iter()
                        .map(|s| {
                            let current = vm.current_snapshot.as_deref() == Some(s.id.as_str());
                            (
                                s.id.clone(),
                                J::obj([
                                    ("name", J::s(s.name.clone())),
                                    ("date", J::s(s.date.clone())),
                                    ("state", J::s(s.state.clone())),
                                    ("current", J::Bool(current)),
                                    ("parent", J::s(s.parent.clone())),
                                ]),
                            )
                        })
                        .collect(),
                );
                Outcome::ok(format!("{}\n", obj.pretty()))
            }
            "snapshot-list" => {
                let mut s = String::new();
                if !no_header {
                    s.push_str("PARENT_SNAPSHOT_ID                      SNAPSHOT_ID\n");
                }
                for snap in &vm.snapshots {
                    let mark = if vm.current_snapshot.as_deref() == Some(snap.id.as_str()) { '*' } else { ' ' };
                    let _ = writeln!(s, "{:>38} {mark}{}", snap.parent, snap.id);
                }
                Outcome::ok(s)
            }
            _ => {
                let progress = "Delete the snapshot...";
                if is_locked(vm) {
                    return Outcome::err_after(progress, format!("Failed to delete the snapshot: {ACCESS_DENIED}"));
                }
                let want = snap_id.as_deref().and_then(normalize_uuid).map(|u| format!("{{{u}}}"));
                let Some(pos) = want.as_ref().and_then(|w| vm.snapshots.iter().position(|s| &s.id == w)) else {
                    return Outcome::err_after(
                        progress,
                        format!(
                            "Failed to delete the snapshot: The snapshot with ID {} does not exist.",
                            snap_id.unwrap_or_default()
                        ),
                    );
                };
                let gone = vm.snapshots.remove(pos);
                for s in &mut vm.snapshots {
                    if s.parent == gone.id {
                        s.parent = gone.parent.clone();
                    }
                }
                if vm.current_snapshot.as_deref() == Some(gone.id.as_str()) {
                    vm.current_snapshot = Some(gone.parent.clone()).filter(|p| !p.is_empty());
                }
                Outcome::ok(format!("{progress}\nThe snapshot has been successfully deleted.\n"))
            }
        }
    })
}

/// A new hdd record for `--device-add hdd --image PATH`.
pub fn new_hdd(index: usize, image: PathBuf, kind: &str, size_mb: u64) -> Hdd {
    Hdd {
        name: format!("hdd{index}"),
        image,
        kind: kind.to_owned(),
        size_mb,
    }
}
