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

use crate::hypervisor::{Hypervisor, StopMode, VmListing, guest_cmd};

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

/// The seed's "PURE": VM name without the `<host>-` prefix.
pub fn pure_name<'a>(vm: &'a str, host: &str) -> &'a str {
    vm.strip_prefix(host)
        .and_then(|r| r.strip_prefix('-'))
        .unwrap_or(vm)
}

/// Run a one-line `script` with the guest's `/bin/sh` (see [`guest_cmd`]).
async fn guest_sh(
    hv: &dyn Hypervisor,
    vm: &str,
    script: &str,
    timeout: Duration,
) -> Result<crate::hypervisor::ExecOutput, ImageError> {
    hv.exec(vm, &guest_cmd::sh_c(script), None, timeout)
        .await
        .map_err(hv_err("exec", vm))
}

/// The last line of `text`, trimmed (for error messages).
fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or("").trim()
}

/// Removes the scrub list in the running clone, resets host names, then checks nothing
/// on the list remains. Returns what was done.
///
/// Each configured glob becomes one shell word in which only `*` and `?` are active
/// ([`guest_cmd::glob_word`]); the guest shell expands it, and a glob that matches nothing
/// stays literal (ignored by `rm -f`, and `ls -d` finds nothing of it). Every step is decided
/// by its exit status: the removal's own, the host-name reset's, and for the check `grep .`
/// over what `ls -d` still finds (0: something remains, 1: nothing does). Output only feeds
/// the report.
async fn scrub(
    cfg: &super::config::ScrubConfig,
    hv: &dyn Hypervisor,
    clone: &str,
    image: &ImageName,
    timeout: Duration,
) -> Result<Vec<String>, ImageError> {
    let mut done = Vec::new();
    let globs = cfg
        .files
        .iter()
        .map(|g| guest_cmd::glob_word(g))
        .collect::<Vec<_>>()
        .join(" ");
    let failed = |what: &str, out: &crate::hypervisor::ExecOutput| ImageError::Vm {
        vm: clone.to_string(),
        reason: format!(
            "{what} failed in the guest (status {}): {}",
            out.status,
            last_line(&out.stderr)
        ),
    };
    if !globs.is_empty() {
        let out = guest_sh(hv, clone, &format!("rm -rfv {globs}"), timeout).await?;
        if out.status != 0 {
            return Err(failed("removing the scrub list", &out));
        }
        done.extend(
            out.stdout
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| format!("removed {l}")),
        );
    }
    if cfg.reset_hostname {
        let n = guest_cmd::quote(image.as_str());
        let out = guest_sh(
            hv,
            clone,
            &format!(
                "scutil --set ComputerName {n} && scutil --set HostName {n} && \
                 scutil --set LocalHostName {n}"
            ),
            timeout,
        )
        .await?;
        if out.status != 0 {
            return Err(failed("resetting host names", &out));
        }
        done.push(format!(
            "ComputerName/HostName/LocalHostName set to {image}"
        ));
    }
    check_scrubbed(&globs, hv, clone, timeout).await?;
    Ok(done)
}

/// Fails with [`ImageError::ScrubIncomplete`] naming what the guest still has of `globs`
/// (shell words from [`guest_cmd::glob_word`]).
async fn check_scrubbed(
    globs: &str,
    hv: &dyn Hypervisor,
    clone: &str,
    timeout: Duration,
) -> Result<(), ImageError> {
    if globs.is_empty() {
        return Ok(());
    }
    let out = guest_sh(
        hv,
        clone,
        &format!("ls -d {globs} 2>/dev/null | grep ."),
        timeout,
    )
    .await?;
    match out.status {
        1 => Ok(()),
        0 => Err(ImageError::ScrubIncomplete {
            vm: clone.to_string(),
            remaining: out
                .stdout
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        }),
        status => Err(ImageError::Vm {
            vm: clone.to_string(),
            reason: format!(
                "checking the scrub failed in the guest (status {status}): {}",
                last_line(&out.stderr)
            ),
        }),
    }
}

async fn wait_for_guest(
    hv: &dyn Hypervisor,
    vm: &str,
    boot: Duration,
    exec: Duration,
) -> Result<(), ImageError> {
    let deadline = tokio::time::Instant::now() + boot;
    loop {
        match guest_sh(hv, vm, "true", exec).await.map(|out| out.status) {
            Ok(0) => return Ok(()),
            Ok(_) | Err(_) if tokio::time::Instant::now() < deadline => {
                // Guest tools take a while after boot; poll at a modest rate.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Ok(s) => {
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
            scrub(
                &store.config().scrub,
                &*hv,
                &clone,
                &image,
                opts.exec_timeout,
            )
            .await
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
    match (delete_clone(&*hv, &clone).await, result) {
        (Ok(()), result) => result,
        (Err(e), Err(push)) => {
            tracing::error!(vm = %clone, error = %e, "could not delete the push clone");
            Err(push)
        }
        // The image is stored, but a clone left registered under the image's name would
        // make a later pull of that image refuse: the operator must hear about it.
        (Err(e), Ok(report)) => Err(ImageError::Vm {
            vm: clone.clone(),
            reason: format!(
                "image {} is stored, but its push clone could not be deleted ({e}); delete it with: {}",
                report.image,
                marble_proto::names::shell_command(&["prlctl", "delete", &clone])
            ),
        }),
    }
}

/// How long a push clone may take to reach `stopped` after its stop returned.
const CLONE_STOP_WAIT: Duration = Duration::from_secs(60);

/// Deletes the push clone. A graceful stop can return before the VM is stopped (Parallels'
/// "Operation canceled" with the VM stopping later): then the delete is refused, so wait for
/// `stopped` (bounded), forcing a stop once, and delete again.
async fn delete_clone(hv: &dyn Hypervisor, clone: &str) -> Result<(), String> {
    let first = match hv.delete(clone).await {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    tracing::warn!(vm = %clone, error = %first, "push clone not deleted yet; waiting for it to stop");
    let deadline = tokio::time::Instant::now() + CLONE_STOP_WAIT;
    let mut forced = false;
    loop {
        match hv.info(clone).await {
            Ok(info) if info.state == "stopped" => break,
            Ok(_) if !forced => {
                forced = true;
                let _ = hv.stop(clone, StopMode::Kill).await;
            }
            Ok(_) => {}
            // Gone already (deleted after all): nothing left to do.
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(format!("{first}; then info failed: {e}")),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "{first}; still not stopped after {}s",
                CLONE_STOP_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    hv.delete(clone).await.map_err(|e| e.to_string())
}

/// The `prlctl set` arguments that give a pulled VM bridged networking and a new MAC (an
/// image carries its source's MAC; two VMs with one MAC break CERN's LANDB registration).
pub const NEW_MAC_ARGS: [&str; 8] = [
    "--device-set",
    "net0",
    "--type",
    "bridged",
    "--iface",
    "default",
    "--mac",
    "auto",
];

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
    let existing = registered_vms(&*hv, &vm_name, name).await?;
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
        let mem = opts.host_memory_mib - reserve;
        configure_pulled(&*hv, &vm_name, opts.host_cpus, mem).await
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
    let operator_steps = operator_steps(&vm_name, mac.as_deref());
    Ok(PullVmReport {
        vm_name,
        bundle: pull.bundle.clone(),
        mac,
        pull,
        build_disk_fetched,
        operator_steps,
    })
}

/// The VMs registered now; fails when `vm_name` or the image's own name (the name a pushed
/// bundle still carries) is among them.
async fn registered_vms(
    hv: &dyn Hypervisor,
    vm_name: &str,
    name: &ImageName,
) -> Result<Vec<VmListing>, ImageError> {
    let existing = hv.list_all().await.map_err(hv_err("list", vm_name))?;
    if let Some(v) = existing
        .iter()
        .find(|v| v.name == vm_name || v.name == name.as_str())
    {
        return Err(ImageError::Vm {
            vm: v.name.clone(),
            reason: "is already registered; unregister or rename it first".into(),
        });
    }
    Ok(existing)
}

/// Gives the registered `vm_name` a new MAC on a bridged default adapter, `cpus` CPUs and
/// `mem_mib` of memory; returns its MAC as Parallels reports it.
async fn configure_pulled(
    hv: &dyn Hypervisor,
    vm_name: &str,
    cpus: u32,
    mem_mib: u64,
) -> Result<Option<String>, ImageError> {
    let args: Vec<String> = NEW_MAC_ARGS.iter().map(|s| (*s).to_owned()).collect();
    hv.set(vm_name, &args)
        .await
        .map_err(hv_err("set net0", vm_name))?;
    hv.set(
        vm_name,
        &[
            "--cpus".to_string(),
            cpus.to_string(),
            "--memsize".to_string(),
            mem_mib.to_string(),
        ],
    )
    .await
    .map_err(hv_err("set cpus/memory", vm_name))?;
    let mac = hv.info(vm_name).await.map_err(hv_err("info", vm_name))?.mac;
    Ok(mac)
}

/// What the operator must do for a pulled VM: LANDB registration (name, MAC) and first boot.
fn operator_steps(vm_name: &str, mac: Option<&str>) -> String {
    let mac_s = mac.unwrap_or("(unknown: check `prlctl list -i`)");
    let set_name = marble_proto::names::shell_command(&[
        "prlctl",
        "exec",
        vm_name,
        "scutil",
        "--set",
        "ComputerName",
        vm_name,
    ]);
    format!(
        "register in LANDB: device {vm_name}, MAC {mac_s}, no IPv6; then log in once in the GUI so Parallels Tools reinstall, restart, and set the guest name with `{set_name}` (and HostName)"
    )
}

/// The scrub through a real guest shell (see `hypervisor::local_guest`), with the default
/// scrub list moved under the guest's `/var` so planted files stay in the test's directory.
#[cfg(all(test, target_os = "linux"))]
mod local_guest_tests {
    use super::*;
    use crate::hypervisor::local_guest::LocalGuest;
    use crate::images::config::ScrubConfig;

    /// Where the default guest paths live in these tests.
    const ROOT: &str = "/var/guest";

    /// The default list, under [`ROOT`], without the host-name reset (no scutil here).
    fn rooted_defaults() -> ScrubConfig {
        ScrubConfig {
            files: ScrubConfig::default()
                .files
                .iter()
                .map(|g| format!("{ROOT}{g}"))
                .collect(),
            reset_hostname: false,
        }
    }

    /// A file at each default glob, as a user `sftnight` (the seed's CI user) would leave it,
    /// plus the runner's secrets where `marblectl runner install` puts the runner
    /// (`ci::runner_install_steps`: `/Users/<user>/actions-runner`).
    fn secrets() -> Vec<String> {
        let mut paths: Vec<String> = ScrubConfig::default()
            .files
            .iter()
            .map(|g| g.replace('*', "sftnight"))
            .collect();
        paths.extend(
            [".credentials", ".credentials_rsaparams", ".runner"]
                .iter()
                .map(|f| format!("/Users/sftnight/actions-runner/{f}")),
        );
        paths.push("/Users/runner user/.PAT".to_owned());
        paths.sort();
        paths.dedup();
        paths
    }

    fn plant(guest: &LocalGuest, path: &str, body: &[u8]) -> std::path::PathBuf {
        let host = guest.host_path(&format!("{ROOT}{path}"));
        std::fs::create_dir_all(host.parent().expect("parent")).expect("mkdir");
        std::fs::write(&host, body).expect("plant");
        host
    }

    #[tokio::test]
    async fn the_scrub_removes_every_planted_secret_and_keeps_the_rest() {
        let guest = LocalGuest::new();
        let hv = guest.hv(&[]);
        let planted: Vec<_> = secrets()
            .iter()
            .map(|p| (p.clone(), plant(&guest, p, b"ghp_secret")))
            .collect();
        let kept = [
            plant(&guest, "/Users/sftnight/notes.txt", b"keep"),
            plant(&guest, "/Users/sftnight/actions-runner/run.sh", b"keep"),
            plant(&guest, "/Users/sftnight/actions-runner/.env", b"keep"),
        ];
        let image = ImageName::for_vm("2025-01-01", "ROOT-VM-macOS-14").expect("name");
        let done = scrub(
            &rooted_defaults(),
            &hv,
            "vm",
            &image,
            Duration::from_secs(30),
        )
        .await
        .expect("scrubbed");
        for (path, host) in &planted {
            assert!(
                !host.exists(),
                "{path} is still in the image; scrub said {done:?}"
            );
        }
        for host in &kept {
            assert!(host.exists(), "{} was removed", host.display());
        }
        assert_eq!(
            done.len(),
            planted.len(),
            "one report line per removed path: {done:?}"
        );
    }

    #[tokio::test]
    async fn the_check_names_what_remains_by_its_exit_status() {
        let guest = LocalGuest::new();
        let hv = guest.hv(&[]);
        let globs: String = rooted_defaults()
            .files
            .iter()
            .map(|g| guest_cmd::glob_word(g))
            .collect::<Vec<_>>()
            .join(" ");
        check_scrubbed(&globs, &hv, "vm", Duration::from_secs(30))
            .await
            .expect("nothing planted, nothing remains");
        plant(&guest, "/Users/ci/actions-runner/.runner", b"{}");
        match check_scrubbed(&globs, &hv, "vm", Duration::from_secs(30)).await {
            Err(ImageError::ScrubIncomplete { remaining, .. }) => assert_eq!(
                remaining,
                [format!("{ROOT}/Users/ci/actions-runner/.runner")]
            ),
            other => panic!("a remaining secret must fail the push: {other:?}"),
        }
    }
}
