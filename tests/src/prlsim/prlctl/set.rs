//! `prlctl set VM OPTIONS…` (§6): identity, CPU/memory (stopped VMs only), startup view,
//! network and disk devices (a new disk is created in the bundle, sparse), host sharing,
//! isolation (`--isolate-vm off` turns sharing back on, as on PD 26.3.2), and a list of known
//! on/off switches that are accepted and remembered. Changes apply all-or-nothing.

use std::path::PathBuf;

use super::super::SimError;
use super::super::model::{Net, VmState, new_mac};
use super::super::store::{self, Store};
use super::manage::new_hdd;
use super::{ACCESS_DENIED, NOT_FOUND, Outcome, is_locked, not_started, not_stopped, unrecognized};

/// Switches accepted as `on|off` and stored without a model.
const SWITCHES: &[&str] = &[
    "--shared-clipboard",
    "--shared-cloud",
    "--shared-profile",
    "--smart-mount",
    "--sh-app-guest-to-host",
    "--sh-app-host-to-guest",
    "--auto-share-camera",
    "--auto-share-smart-card",
    "--auto-share-gamepad",
    "--share-host-location",
    "--sync-ssh-ids",
    "--time-sync",
    "--time-sync-smart-mode",
    "--disable-timezone-sync",
    "--tools-autoupdate",
    "--smart-guard",
    "--longer-battery-life",
    "--faster-vm",
    "--nested-virt",
    "--pause-idle",
    "--efi-boot",
    "--efi-secure-boot",
    "--select-boot-device",
    "--3d-accelerate",
    "--rosetta-linux",
    "--shf-host-automount",
    "--shf-guest",
    "--shf-guest-automount",
    "--lock-on-suspend",
    "--lock-edit-settings",
];

/// Options taking one free value, stored without a model.
const VALUED: &[&str] = &[
    "--videosize",
    "--time-sync-interval",
    "--on-shutdown",
    "--on-window-close",
    "--autostart",
    "--autostart-delay",
    "--autostop",
    "--device-bootorder",
    "--require-pwd",
];

const VIEWS: &[&str] = &[
    "same",
    "window",
    "coherence",
    "fullscreen",
    "modality",
    "headless",
];

fn on_off(v: Option<&String>) -> Option<bool> {
    match v.map(String::as_str) {
        Some("on") => Some(true),
        Some("off") => Some(false),
        _ => None,
    }
}

/// Options that follow `--device-add` / `--device-set` and describe the device.
#[derive(Default)]
struct DevOpts {
    kind: Option<String>,
    iface: Option<String>,
    mac: Option<String>,
    image: Option<String>,
    size: Option<u64>,
    enable: Option<bool>,
}

fn dev_opts<'a>(
    it: &mut std::iter::Peekable<impl Iterator<Item = &'a String>>,
) -> Result<DevOpts, Outcome> {
    let mut d = DevOpts::default();
    while let Some(a) = it.peek().map(|s| s.to_string()) {
        let flag = matches!(
            a.as_str(),
            "--enable" | "--connect" | "--disable" | "--disconnect"
        );
        let known = flag
            || matches!(
                a.as_str(),
                "--type"
                    | "--iface"
                    | "--mac"
                    | "--image"
                    | "--size"
                    | "--position"
                    | "--adapter-type"
            );
        if !known {
            break;
        }
        it.next();
        if flag {
            d.enable = Some(matches!(a.as_str(), "--enable" | "--connect"));
            continue;
        }
        let v = it.next().cloned().ok_or_else(|| unrecognized(&a))?;
        match a.as_str() {
            "--type" => d.kind = Some(v),
            "--iface" => d.iface = Some(v),
            "--mac" => d.mac = Some(v),
            "--image" => d.image = Some(v),
            "--size" => {
                let n = v
                    .trim_end_matches(['M', 'm'])
                    .parse()
                    .map_err(|_| unrecognized(&a))?;
                d.size = Some(n);
            }
            _ => {}
        }
    }
    Ok(d)
}

fn describe_net(n: &Net) -> String {
    let iface = n
        .iface
        .as_ref()
        .map(|i| format!(" iface='{i}'"))
        .unwrap_or_default();
    let sign = if n.enabled { "+" } else { "-" };
    format!(
        "{} ({sign}) type={}{iface} mac={} card=virtio",
        n.name, n.kind, n.mac
    )
}

/// `prlctl set VM …`.
pub fn set(store: &Store, rest: &[String]) -> Result<Outcome, SimError> {
    let Some(id) = rest.first() else {
        return Ok(Outcome::err("prlctl set: VM id is required", 255));
    };
    store.with_state(|st| {
        let Some(idx) = st.find(id) else {
            return Ok(Outcome::err(NOT_FOUND, 255));
        };
        let mut vm = st.vms[idx].clone();
        let commit_err =
            |e: String| Outcome::err(format!("Unable to commit VM configuration: {e}"), 255);
        if is_locked(&vm) {
            return Ok(commit_err(ACCESS_DENIED.to_owned()));
        }
        let stopped = vm.state == VmState::Stopped;
        let mut lines: Vec<String> = Vec::new();
        let mut extra_out: Vec<String> = Vec::new();
        let mut new_disks: Vec<(PathBuf, u64)> = Vec::new();
        let mut it = rest[1..].iter().peekable();
        while let Some(opt) = it.next() {
            let o = opt.as_str();
            match o {
                "--name" => {
                    let Some(n) = it.next().cloned() else {
                        return Ok(unrecognized(o));
                    };
                    if st
                        .vms
                        .iter()
                        .enumerate()
                        .any(|(i, v)| i != idx && v.name == n)
                    {
                        return Ok(commit_err(format!(
                            "The virtual machine \"{n}\" already exists."
                        )));
                    }
                    vm.name = n;
                }
                "--description" => vm.description = it.next().cloned().unwrap_or_default(),
                "--cpus" | "--memsize" => {
                    let Some(v) = it.next().cloned() else {
                        return Ok(unrecognized(o));
                    };
                    if !stopped {
                        return Ok(commit_err(not_stopped(&vm.name)));
                    }
                    if o == "--cpus" {
                        vm.cpus = if v == "auto" {
                            4
                        } else {
                            v.parse().unwrap_or(vm.cpus)
                        };
                    } else {
                        vm.memsize_mb = v.parse().unwrap_or(vm.memsize_mb);
                    }
                }
                "--startup-view" => match it.next().cloned() {
                    Some(v) if VIEWS.contains(&v.as_str()) => vm.startup_view = v,
                    _ => return Ok(unrecognized(o)),
                },
                "--shf-host" => match on_off(it.next()) {
                    Some(b) => vm.shf_host = b,
                    None => return Ok(unrecognized(o)),
                },
                "--shf-host-defined" => {
                    vm.shf_host_defined = it.next().cloned().unwrap_or_default()
                }
                "--isolate-vm" => match on_off(it.next()) {
                    Some(b) => {
                        vm.isolated = b;
                        if !b {
                            // Integration comes back on: gamepad auto-sharing re-enabled
                            // (observed on PD 26.3.2, §6) and the Mac folders shared (the
                            // seed's guests saw the host's home after `--isolate-vm off`).
                            vm.shf_host = true;
                            vm.shf_host_defined = "home".to_owned();
                            vm.other_settings
                                .insert("--auto-share-gamepad".to_owned(), "on".to_owned());
                        }
                    }
                    None => return Ok(unrecognized(o)),
                },
                "--template" => match on_off(it.next()) {
                    Some(b) => vm.template = b,
                    None => return Ok(unrecognized(o)),
                },
                "--userpasswd" => {
                    it.next();
                    if vm.state != VmState::Running {
                        return Ok(commit_err(not_started(&vm.name)));
                    }
                    extra_out.push("Authentication tokens updated successfully.".to_owned());
                }
                "--device-set" => {
                    let Some(dev) = it.next().cloned() else {
                        return Ok(unrecognized(o));
                    };
                    let d = match dev_opts(&mut it) {
                        Ok(d) => d,
                        Err(out) => return Ok(out),
                    };
                    if let Some(n) = vm.nets.iter_mut().find(|n| n.name == dev) {
                        if let Some(k) = d.kind {
                            n.kind = k;
                        }
                        if d.iface.is_some() {
                            n.iface = d.iface;
                        }
                        if let Some(m) = d.mac {
                            n.mac = if m == "auto" {
                                new_mac()
                            } else {
                                m.replace(':', "").to_ascii_uppercase()
                            };
                        }
                        if let Some(e) = d.enable {
                            n.enabled = e;
                        }
                        lines.push(format!("Configured {}", describe_net(n)));
                    } else if vm.hdds.iter().any(|h| h.name == dev) {
                        lines.push(format!("Configured {dev}"));
                    } else {
                        return Ok(commit_err(format!("The device {dev} does not exist.")));
                    }
                }
                "--device-add" => {
                    let Some(kind) = it.next().cloned() else {
                        return Ok(unrecognized(o));
                    };
                    let d = match dev_opts(&mut it) {
                        Ok(d) => d,
                        Err(out) => return Ok(out),
                    };
                    match kind.as_str() {
                        "net" => {
                            let name = format!("net{}", vm.nets.len());
                            let mac = match d.mac.as_deref() {
                                None | Some("auto") => new_mac(),
                                Some(m) => m.replace(':', "").to_ascii_uppercase(),
                            };
                            let n = Net {
                                name,
                                kind: d.kind.unwrap_or_else(|| "shared".to_owned()),
                                iface: d.iface,
                                mac,
                                enabled: true,
                            };
                            lines.push(format!("Created {}", describe_net(&n)));
                            vm.nets.push(n);
                        }
                        "hdd" => {
                            let idx = vm.hdds.len();
                            let size_mb = d.size.unwrap_or(65536);
                            let image = match d.image {
                                Some(p) => PathBuf::from(p),
                                None => {
                                    // A new disk in the bundle: `harddisk.hdd`, then
                                    // `harddisk1.hdd`… (§8), created at commit.
                                    let file = if vm
                                        .hdds
                                        .iter()
                                        .any(|h| h.image == vm.home.join("harddisk.hdd"))
                                    {
                                        format!("harddisk{idx}.hdd")
                                    } else {
                                        "harddisk.hdd".to_owned()
                                    };
                                    let image = vm.home.join(file);
                                    new_disks.push((image.clone(), size_mb));
                                    image
                                }
                            };
                            let h = new_hdd(
                                idx,
                                image,
                                d.kind.as_deref().unwrap_or("expanded"),
                                size_mb,
                            );
                            lines.push(format!(
                                "Created {} (+) sata:{idx} image='{}' type={} {}Mb",
                                h.name,
                                h.image.display(),
                                h.kind,
                                h.size_mb
                            ));
                            vm.hdds.push(h);
                        }
                        other => return Ok(unrecognized(other)),
                    }
                }
                "--device-del" => {
                    let Some(dev) = it.next().cloned() else {
                        return Ok(unrecognized(o));
                    };
                    while it.peek().is_some_and(|a| {
                        a.as_str() == "--destroy-image" || a.as_str() == "--detach-only"
                    }) {
                        it.next();
                    }
                    let before = vm.nets.len() + vm.hdds.len();
                    vm.nets.retain(|n| n.name != dev);
                    vm.hdds.retain(|h| h.name != dev);
                    if vm.nets.len() + vm.hdds.len() == before {
                        return Ok(commit_err(format!("The device {dev} does not exist.")));
                    }
                    lines.push(format!("Remove the {dev} device."));
                }
                s if SWITCHES.contains(&s) => match it.next().cloned() {
                    Some(v) if v == "on" || v == "off" => {
                        vm.other_settings.insert(s.to_owned(), v);
                    }
                    _ => return Ok(unrecognized(s)),
                },
                s if VALUED.contains(&s) => match it.next().cloned() {
                    Some(v) => {
                        vm.other_settings.insert(s.to_owned(), v);
                    }
                    None => return Ok(unrecognized(s)),
                },
                other => return Ok(unrecognized(other)),
            }
        }
        for (image, size_mb) in &new_disks {
            if !image.exists() {
                store::create_disk(image, size_mb * 1024 * 1024)?;
            }
        }
        store::write_config(&vm)?;
        st.vms[idx] = vm;
        let mut out = String::new();
        for l in extra_out.iter().chain(&lines) {
            out.push_str(l);
            out.push('\n');
        }
        if !lines.is_empty() {
            out.push('\n');
        }
        out.push_str("The VM has been successfully configured.\n");
        Ok(Outcome::ok(out))
    })?
}
