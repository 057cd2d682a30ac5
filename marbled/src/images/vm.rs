//! VM-level pipelines over the [`Hypervisor`] seam.
//!
//! Push: the VM must be stopped (the daemon holds its lock for the whole push); it is cloned
//! (the original stays usable), the clone is started, scrubbed inside the guest (secret
//! files, shell histories, host names), the scrub is verified, the clone is stopped, its
//! snapshots deleted, its bundle pushed, and the clone deleted whatever happened.
//!
//! Pull: first everything it needs is checked without changing the host (`preflight`: the
//! image, a free name and bundle directory, the build disk present or fetchable, disk space);
//! then the build disk is fetched if missing, the image is downloaded and verified into place
//! (see `pull`), registered, renamed to `<host>-<name without date>`, given a new MAC on a
//! bridged default adapter and the host's CPUs and memory (minus a reserve). Any failure after
//! the download unregisters and removes what was created.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::hypervisor::{Hypervisor, StopMode};

use super::{
    ImageError, ImageName, ImageStore, Phase, Progress, ProgressSink, PullReport, PushReport,
};

/// Options of [`push_vm`].
#[derive(Debug, Clone)]
pub struct PushVmOptions {
    /// Date for the image name, `YYYY-MM-DD`.
    pub date: String,
    /// Host name; a `<host>-` prefix is stripped from the VM name (the seed's "PURE").
    pub host_name: String,
    /// How long to wait for the clone's guest to answer `exec` after start.
    pub boot_timeout: Duration,
    /// Timeout of each guest command.
    pub exec_timeout: Duration,
    /// Image name to use instead of `<date>-<pure name>`.
    pub image: Option<ImageName>,
}

/// What [`push_vm`] did.
#[derive(Debug, Clone)]
pub struct PushVmReport {
    /// The image pushed.
    pub image: ImageName,
    /// Transfer details.
    pub push: PushReport,
    /// Guest paths removed and settings reset by the scrub.
    pub scrubbed: Vec<String>,
}

/// Options of [`pull_vm`].
#[derive(Debug, Clone)]
pub struct PullVmOptions {
    /// Host name (`scutil --get ComputerName`).
    pub host_name: String,
    /// Directory holding VM bundles (`~/Parallels`).
    pub bundles_dir: PathBuf,
    /// CPUs to give the VM (the host's count).
    pub host_cpus: u32,
    /// Host memory in MiB; the VM gets this minus `host_memory_reserve_mib`.
    pub host_memory_mib: u64,
    /// VM name to register instead of `<host>-<name without date>`.
    pub vm_name: Option<String>,
}

/// What [`pull_vm`] did, including what the operator must register in LANDB.
#[derive(Debug, Clone)]
pub struct PullVmReport {
    /// Registered VM name.
    pub vm_name: String,
    /// Bundle path.
    pub bundle: PathBuf,
    /// New MAC of net0, as Parallels reports it.
    pub mac: Option<String>,
    /// Transfer details.
    pub pull: PullReport,
    /// Whether the build disk had to be fetched.
    pub build_disk_fetched: bool,
    /// Human instructions: LANDB registration (name, MAC) and first boot.
    pub operator_steps: String,
}

fn hv_err(op: &'static str, vm: &str) -> impl FnOnce(crate::hypervisor::PrlctlError) -> ImageError {
    let vm = vm.to_string();
    move |source| ImageError::Hypervisor { op, vm, source }
}

/// Single-quotes a string for the guest's `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The seed's "PURE": VM name without the `<host>-` prefix.
pub fn pure_name<'a>(vm: &'a str, host: &str) -> &'a str {
    vm.strip_prefix(host)
        .and_then(|r| r.strip_prefix('-'))
        .unwrap_or(vm)
}

async fn guest_sh(
    hv: &dyn Hypervisor,
    vm: &str,
    script: &str,
    timeout: Duration,
) -> Result<(i32, String), ImageError> {
    let argv = vec!["/bin/sh".to_string(), "-c".to_string(), script.to_string()];
    let out = hv
        .exec(vm, &argv, None, timeout)
        .await
        .map_err(hv_err("exec", vm))?;
    Ok((out.status, out.stdout))
}

/// Removes the scrub list in the running clone, resets host names, then checks nothing
/// on the list remains. Returns what was done.
///
/// Only `rm -rfv` and `ls -d` over the globs: the guest shell expands them, an unmatched glob
/// stays literal (ignored by `rm -f`, an error on stderr for `ls`), and stdout lists exactly
/// what was removed / what remains. No loops or variables, so the same script runs in the
/// prlctl simulator's guest shell.
async fn scrub(
    store: &ImageStore,
    hv: &dyn Hypervisor,
    clone: &str,
    image: &ImageName,
    timeout: Duration,
) -> Result<Vec<String>, ImageError> {
    let cfg = &store.config().scrub;
    let mut done = Vec::new();
    // Globs are left unquoted so the guest shell expands them.
    let globs = cfg.files.join(" ");
    if !globs.is_empty() {
        let (_, out) = guest_sh(hv, clone, &format!("rm -rfv {globs}; true"), timeout).await?;
        done.extend(
            out.lines()
                .filter(|l| !l.is_empty())
                .map(|l| format!("removed {l}")),
        );
    }
    if cfg.reset_hostname {
        let n = sh_quote(image.as_str());
        let (status, _) = guest_sh(hv, clone, &format!("scutil --set ComputerName {n} && scutil --set HostName {n} && scutil --set LocalHostName {n}"), timeout).await?;
        if status != 0 {
            return Err(ImageError::Vm {
                vm: clone.to_string(),
                reason: format!("resetting host names failed (status {status})"),
            });
        }
        done.push(format!(
            "ComputerName/HostName/LocalHostName set to {image}"
        ));
    }
    if !globs.is_empty() {
        let (_, out) = guest_sh(hv, clone, &format!("ls -d {globs}; true"), timeout).await?;
        let remaining: Vec<String> = out
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if !remaining.is_empty() {
            return Err(ImageError::ScrubIncomplete {
                vm: clone.to_string(),
                remaining,
            });
        }
    }
    Ok(done)
}

async fn wait_for_guest(
    hv: &dyn Hypervisor,
    vm: &str,
    boot: Duration,
    exec: Duration,
) -> Result<(), ImageError> {
    let deadline = tokio::time::Instant::now() + boot;
    loop {
        match guest_sh(hv, vm, "true", exec).await {
            Ok((0, _)) => return Ok(()),
            Ok(_) | Err(_) if tokio::time::Instant::now() < deadline => {
                // Guest tools take a while after boot; poll at a modest rate.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Ok((s, _)) => {
                return Err(ImageError::Vm {
                    vm: vm.to_string(),
                    reason: format!("guest did not answer exec (status {s})"),
                });
            }
            Err(e) => return Err(e),
        }
    }
}

async fn delete_snapshots(hv: &dyn Hypervisor, vm: &str) -> Result<(), ImageError> {
    // Bounded: deleting a parent can re-parent children, so list again, but never forever.
    for _round in 0..16 {
        let snaps = hv
            .snapshot_list(vm)
            .await
            .map_err(hv_err("snapshot-list", vm))?;
        if snaps.is_empty() {
            return Ok(());
        }
        for s in snaps {
            hv.snapshot_delete(vm, &s.id)
                .await
                .map_err(hv_err("snapshot-delete", vm))?;
        }
    }
    Err(ImageError::Vm {
        vm: vm.to_string(),
        reason: "snapshots remain after 16 rounds of deletion".into(),
    })
}

/// Pushes stopped VM `vm` as `<date>-<pure name>` via a scrubbed clone.
pub async fn push_vm(
    store: &ImageStore,
    hv: Arc<dyn Hypervisor>,
    vm: &str,
    opts: &PushVmOptions,
    progress: ProgressSink<'_>,
) -> Result<PushVmReport, ImageError> {
    let info = hv.info(vm).await.map_err(hv_err("info", vm))?;
    if info.state != "stopped" {
        return Err(ImageError::Vm {
            vm: vm.to_string(),
            reason: format!("is {}; only a stopped VM can be pushed", info.state),
        });
    }
    let image = match &opts.image {
        Some(image) => image.clone(),
        None => ImageName::for_vm(&opts.date, pure_name(vm, &opts.host_name))?,
    };
    let clone = image.as_str().to_string();
    progress(Progress {
        phase: Phase::Prepare,
        done: 0,
        total: 0,
    });
    hv.clone_vm(vm, &clone, None)
        .await
        .map_err(hv_err("clone", vm))?;
    let result = async {
        hv.start(&clone).await.map_err(hv_err("start", &clone))?;
        let scrubbed = async {
            wait_for_guest(&*hv, &clone, opts.boot_timeout, opts.exec_timeout).await?;
            scrub(store, &*hv, &clone, &image, opts.exec_timeout).await
        }
        .await;
        if hv.stop(&clone, StopMode::Graceful).await.is_err() {
            hv.stop(&clone, StopMode::Kill)
                .await
                .map_err(hv_err("stop", &clone))?;
        }
        let scrubbed = scrubbed?;
        delete_snapshots(&*hv, &clone).await?;
        let home = hv
            .info(&clone)
            .await
            .map_err(hv_err("info", &clone))?
            .home
            .ok_or_else(|| ImageError::Vm {
                vm: clone.clone(),
                reason: "prlctl reports no bundle path (Home)".into(),
            })?;
        let push = store
            .push_dir_scrubbed(
                Path::new(home.trim_end_matches('/')),
                &image,
                scrubbed.clone(),
                progress,
            )
            .await?;
        Ok(PushVmReport {
            image: image.clone(),
            push,
            scrubbed,
        })
    }
    .await;
    if let Err(e) = hv.delete(&clone).await {
        tracing::warn!(vm = %clone, error = %e, "could not delete the push clone");
    }
    result
}

/// Pulls image `name` and turns it into this host's VM `<host>-<name without date>`.
pub async fn pull_vm(
    store: &ImageStore,
    hv: Arc<dyn Hypervisor>,
    name: &ImageName,
    opts: &PullVmOptions,
    progress: ProgressSink<'_>,
) -> Result<PullVmReport, ImageError> {
    let vm_name = opts
        .vm_name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", opts.host_name, name.without_date()));
    let existing = hv.list_all().await.map_err(hv_err("list", &vm_name))?;
    if let Some(v) = existing
        .iter()
        .find(|v| v.name == vm_name || v.name == name.as_str())
    {
        return Err(ImageError::Vm {
            vm: v.name.clone(),
            reason: "is already registered; unregister or rename it first".into(),
        });
    }
    let reserve = store.config().host_memory_reserve_mib;
    if opts.host_memory_mib <= reserve + 1024 {
        return Err(ImageError::Config(format!(
            "host memory {} MiB leaves nothing after the {reserve} MiB reserve",
            opts.host_memory_mib
        )));
    }
    // Everything else the pull needs, before the host changes (image, free bundle name,
    // build disk present or fetchable, disk space).
    let plan = super::preflight::check(store, name, &opts.bundles_dir).await?;
    // The build disk first: a VM registered without it could not start.
    let build_disk_fetched = match &plan.build_disk {
        Some((disk, found)) => {
            super::preflight::fetch_build_disk(store, disk, found, progress).await?;
            true
        }
        None => false,
    };
    let pull = store
        .pull_located(
            &plan.image,
            &format!("{name}.macvm"),
            &opts.bundles_dir,
            progress,
        )
        .await?;
    progress(Progress {
        phase: Phase::Register,
        done: 0,
        total: 0,
    });
    let bundle = pull.bundle.to_string_lossy().to_string();
    let mut registered: Option<String> = None;
    let result = async {
        hv.register(&bundle, true)
            .await
            .map_err(hv_err("register", name.as_str()))?;
        // The bundle's config still carries the name it was pushed under (the clone's).
        let after = hv.list_all().await.map_err(hv_err("list", name.as_str()))?;
        let reg_name = after
            .iter()
            .find(|v| !existing.iter().any(|e| e.uuid == v.uuid))
            .map(|v| v.name.clone())
            .unwrap_or_else(|| name.to_string());
        registered = Some(reg_name.clone());
        hv.set(&reg_name, &["--name".to_string(), vm_name.clone()])
            .await
            .map_err(hv_err("set --name", &reg_name))?;
        registered = Some(vm_name.clone());
        let args: Vec<String> = [
            "--device-set",
            "net0",
            "--type",
            "bridged",
            "--iface",
            "default",
            "--mac",
            "auto",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        hv.set(&vm_name, &args)
            .await
            .map_err(hv_err("set net0", &vm_name))?;
        let mem = opts.host_memory_mib - reserve;
        hv.set(
            &vm_name,
            &[
                "--cpus".to_string(),
                opts.host_cpus.to_string(),
                "--memsize".to_string(),
                mem.to_string(),
            ],
        )
        .await
        .map_err(hv_err("set cpus/memory", &vm_name))?;
        let mac = hv
            .info(&vm_name)
            .await
            .map_err(hv_err("info", &vm_name))?
            .mac;
        Ok::<_, ImageError>(mac)
    }
    .await;
    let mac = match result {
        Ok(mac) => mac,
        Err(e) => {
            if let Some(r) = registered {
                let _ = hv.unregister(&r).await;
            }
            let _ = std::fs::remove_dir_all(&pull.bundle);
            return Err(e);
        }
    };
    let mac_s = mac
        .clone()
        .unwrap_or_else(|| "(unknown: check `prlctl list -i`)".into());
    let operator_steps = format!(
        "register in LANDB: device {vm_name}, MAC {mac_s}, no IPv6; then log in once in the GUI so Parallels Tools reinstall, restart, and set the guest name with `prlctl exec {vm_name} scutil --set ComputerName {vm_name}` (and HostName)"
    );
    Ok(PullVmReport {
        vm_name,
        bundle: pull.bundle.clone(),
        mac,
        pull,
        build_disk_fetched,
        operator_steps,
    })
}
