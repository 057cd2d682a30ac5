//! `vm create`: validation of the request, and the job that runs the seed's recipe
//! (`HOST_create_vm.sh`, reference/seed-scripts.md §7; prlctl.md §5.1, §6) for a new macOS VM:
//!
//! ```text
//! prlctl create NAME -o macos --no-hdd --restore-image IPSW
//! prlctl set NAME --cpus N --memsize MB
//! prlctl set NAME --device-add hdd --type plain --size 65536     # 64 GiB system disk
//! prlctl set NAME --device-set net0 --type bridged --iface default
//! prlctl set NAME --isolate-vm off                               # prlctl exec needs it
//! prlctl set NAME --device-add hdd --image BUILD_DISK            # the shared build disk
//! prlctl set NAME --startup-view headless
//! prlctl set NAME --shf-host off
//! prlctl set NAME --shf-host-defined off
//! prlctl set NAME --shared-profile off
//! ```
//!
//! The last three are what the seed never did: no host folder (the seed shared the whole home
//! with its S3 keys and ssh keys into every VM) and no Mac profile folders are visible in the
//! guest. They come after `--isolate-vm off`, which turns sharing back on (PD 26.3.2), and each
//! is its own call, so one that this Parallels does not accept for a `.macvm` leaves the others
//! applied. A failure up to the build disk deletes the half-configured VM, so a retry starts
//! clean; a refused sharing switch does not: the VM is complete, it is kept (and stays locked)
//! and the error says what to check by hand.
//! Owns no state; the actor locks the name before the job runs (see `lifecycle`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use marble_proto::{CreateResult, ErrorKind, Team, VmInfo, WireError};

use crate::hypervisor::Hypervisor;
use crate::inventory::TeamMap;

/// A validated `CreateVm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePlan {
    /// VM name.
    pub name: String,
    /// Absolute IPSW path.
    pub ipsw: PathBuf,
    /// Team.
    pub team: Team,
    /// CPUs to set.
    pub cpus: u32,
    /// Memory to set, MiB.
    pub memory_mib: u64,
    /// Build disk to attach.
    pub build_disk: PathBuf,
}

/// Host resources and paths the plan is computed from.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// CPUs of the host.
    pub cpus: u32,
    /// Memory of the host, MiB.
    pub memory_mib: u64,
    /// Memory left to the host, MiB.
    pub reserve_mib: u64,
    /// The build disk.
    pub build_disk: PathBuf,
}

impl HostFacts {
    /// This host's CPUs and memory.
    pub fn probe(reserve_mib: u64, build_disk: PathBuf) -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(1);
        let mut sys = sysinfo::System::new();
        sys.refresh_memory();
        Self {
            cpus,
            memory_mib: sys.total_memory() / (1024 * 1024),
            reserve_mib,
            build_disk,
        }
    }
}

/// Why a VM name is unusable, if it is. Names end up in prlctl argv, guest host names,
/// Jenkins node names and LANDB, so only `[A-Za-z0-9._-]` is allowed (no shell
/// metacharacters, no spaces), not starting with `-` or `.`, at most 63 characters.
pub fn name_problem(name: &str) -> Option<String> {
    marble_proto::names::name_problem("VM name", name)
}

fn invalid(message: String) -> WireError {
    WireError::new(ErrorKind::InvalidRequest, message)
}

/// `ipsw` as a path to an absolute, readable `.ipsw` file (as marbled's user).
fn readable_ipsw(ipsw: &str) -> Result<&Path, WireError> {
    let path = Path::new(ipsw);
    if !path.is_absolute() {
        return Err(invalid(format!("IPSW path {ipsw:?} must be absolute")));
    }
    if path.extension().and_then(|e| e.to_str()) != Some("ipsw") {
        return Err(invalid(format!("{ipsw} is not an .ipsw restore image")));
    }
    match std::fs::File::open(path).and_then(|f| f.metadata()) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(invalid(format!("{ipsw} is not a regular file"))),
        Err(e) => {
            return Err(invalid(format!(
                "cannot read {ipsw} as marbled's user: {e}"
            )));
        }
    }
    Ok(path)
}

/// Check a `CreateVm` against the host: name, team pattern, IPSW, build disk, existing VMs.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, each argument named"
)]
pub fn plan(
    name: &str,
    ipsw: &str,
    team: Team,
    cpus: Option<u32>,
    memory_mib: Option<u64>,
    teams: &TeamMap,
    vms: &[VmInfo],
    facts: &HostFacts,
) -> Result<CreatePlan, WireError> {
    if let Some(p) = name_problem(name) {
        return Err(invalid(p));
    }
    if team == Team::Unassigned {
        return Err(invalid("--team must be root or spi".into()));
    }
    let matched = teams.team_of(name);
    if matched != team {
        return Err(invalid(format!(
            "VM name {name} does not match the {} name pattern (config [teams]); it would be {}. \
             Use a name like <host>-{}-VM-macOS-<N>",
            team.as_str(),
            matched.as_str(),
            team.as_str().to_uppercase()
        )));
    }
    if let Some(v) = vms.iter().find(|v| v.name == name) {
        return Err(WireError::new(
            ErrorKind::InvalidState,
            format!(
                "a VM named {name} already exists ({}); pick another name or delete it first",
                v.power.as_word()
            ),
        ));
    }
    let path = readable_ipsw(ipsw)?;
    if !facts.build_disk.is_dir() {
        return Err(invalid(format!(
            "build disk {} is missing; fetch it with `marblectl image pull` (it comes with any image) \
             or create it with `prl_disk_tool create --hdd {} --size 262144`, or set host.build_disk",
            facts.build_disk.display(),
            facts.build_disk.display()
        )));
    }
    let cpus = match cpus {
        Some(0) => return Err(invalid("--cpus must be at least 1".into())),
        Some(n) if n > facts.cpus => {
            return Err(invalid(format!(
                "--cpus {n} exceeds the host's {} CPUs",
                facts.cpus
            )));
        }
        Some(n) => n,
        None => facts.cpus,
    };
    let default_mem = facts.memory_mib.saturating_sub(facts.reserve_mib);
    let memory_mib = match memory_mib {
        Some(m) if m < 4096 => {
            return Err(invalid(format!(
                "--memory {m} MiB is too small for macOS (at least 4096)"
            )));
        }
        Some(m) if m > facts.memory_mib => {
            return Err(invalid(format!(
                "--memory {m} MiB exceeds the host's {} MiB",
                facts.memory_mib
            )));
        }
        Some(m) => m,
        None if default_mem < 4096 => {
            return Err(invalid(format!(
                "host memory {} MiB minus the reserve (host.memory_reserve_mib = {}) leaves less than 4096 MiB; pass --memory",
                facts.memory_mib, facts.reserve_mib
            )));
        }
        None => default_mem,
    };
    Ok(CreatePlan {
        name: name.to_owned(),
        ipsw: path.to_owned(),
        team,
        cpus,
        memory_mib,
        build_disk: facts.build_disk.clone(),
    })
}

/// Size of the system disk, MiB (the seed's 64 GiB plain disk).
pub const SYSTEM_DISK_MIB: u64 = 65_536;

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

/// The `prlctl set` argument lists that make the VM usable, in order: a failure of any of
/// them deletes the new VM.
pub fn settings(plan: &CreatePlan) -> Vec<Vec<String>> {
    let disk = plan.build_disk.to_string_lossy().into_owned();
    vec![
        args(&[
            "--cpus",
            &plan.cpus.to_string(),
            "--memsize",
            &plan.memory_mib.to_string(),
        ]),
        args(&[
            "--device-add",
            "hdd",
            "--type",
            "plain",
            "--size",
            &SYSTEM_DISK_MIB.to_string(),
        ]),
        args(&[
            "--device-set",
            "net0",
            "--type",
            "bridged",
            "--iface",
            "default",
        ]),
        args(&["--isolate-vm", "off"]),
        args(&["--device-add", "hdd", "--image", &disk]),
        args(&["--startup-view", "headless"]),
    ]
}

/// The sharing switches, one `prlctl set` each, applied after [`settings`] (after
/// `--isolate-vm off`, which re-enables sharing).
pub fn sharing_off() -> Vec<Vec<String>> {
    vec![
        args(&["--shf-host", "off"]),
        args(&["--shf-host-defined", "off"]),
        args(&["--shared-profile", "off"]),
    ]
}

/// The steps that cannot be automated, in order (seed §7 step 10, without its secrets).
pub fn manual_steps(
    plan: &CreatePlan,
    ci_user: &str,
    bundle: Option<&str>,
    mac: Option<&str>,
) -> Vec<String> {
    let n = plan.name.as_str();
    // Every command shown is quoted for a shell (the name may come from anywhere).
    let cmd = marble_proto::names::shell_command;
    let mac = mac.unwrap_or("(see `prlctl list -i` → net0 mac)");
    let log = bundle.map_or_else(
        || "the bundle's parallels.log".to_owned(),
        |b| format!("{b}/parallels.log"),
    );
    let profile = match plan.team {
        Team::Spi => "spi",
        _ => "root",
    };
    vec![
        format!("Register the VM in LANDB: device {n}, MAC {mac}, no IPv6; wait until the name resolves."),
        format!("Pause the cycle while you work: `{}` (the VM stays locked against scheduler starts until you unlock it).", cmd(&["marblectl", "pause", "--reason", &format!("setting up {n}")])),
        format!("First boot installs macOS from the IPSW: `{}`, open it from Parallels Control Center (it starts headless), wait for \"Installation succeeded\" in {log}.", cmd(&["prlctl", "start", n])),
        format!("Setup Assistant: English, Switzerland, create the account {ci_user}, no Apple ID, no Location Services, no analytics, no Siri, time zone Geneva."),
        format!("System Settings: automatic login as {ci_user}; Lock Screen: never start the screen saver, never turn the display off, never require a password."),
        "System Settings > General > Sharing: Remote Login on (SSH); update macOS before installing Xcode.".to_owned(),
        format!("Parallels Tools: `{}`, accept the installer in the guest, restart; `{}` must then exit 0.", cmd(&["prlctl", "installtools", n]), cmd(&["prlctl", "exec", n, "/usr/bin/true"])),
        format!("Guest host name: `{}`, then the same with HostName and LocalHostName.", cmd(&["prlctl", "exec", n, "scutil", "--set", "ComputerName", n])),
        format!("Provision: `{}` (safe to re-run; completed steps are skipped).", cmd(&["marblectl", "vm", "provision", n, "--profile", &format!("docs/profiles/{profile}.toml")])),
        format!("When done: `{}` and `marblectl resume`.", cmd(&["marblectl", "unlock", n])),
    ]
}

/// What [`run`] did.
#[derive(Debug)]
pub struct CreateOutcome {
    /// The answer to the client.
    pub result: Result<CreateResult, WireError>,
    /// Whether the VM exists afterwards (also after a refused sharing switch): the lock
    /// taken for its name must stay.
    pub vm_exists: bool,
}

/// The job: create, configure, turn sharing off, report. A failing setting deletes the VM
/// again; a refused sharing switch keeps it (see the module doc).
pub async fn run(
    hv: Arc<dyn Hypervisor>,
    plan: CreatePlan,
    ci_user: String,
    create_timeout: Duration,
) -> CreateOutcome {
    let name = plan.name.as_str();
    let ipsw = plan.ipsw.to_string_lossy().into_owned();
    // Shown to the operator after `prlctl `: quoted so each line pastes as the argv run.
    let quoted = |args: &[&str]| marble_proto::names::shell_command(args);
    let set_line = |args: &[String]| {
        let mut words = vec!["set", name];
        words.extend(args.iter().map(String::as_str));
        quoted(&words)
    };
    let mut commands = vec![quoted(&[
        "create",
        name,
        "-o",
        "macos",
        "--no-hdd",
        "--restore-image",
        &ipsw,
    ])];
    tracing::info!(vm = name, ipsw = %ipsw, "creating VM");
    if let Err(e) = hv.create_macos(name, &ipsw, create_timeout).await {
        return CreateOutcome {
            result: Err(crate::chain::to_wire(ErrorKind::Unavailable, &e)),
            vm_exists: false,
        };
    }
    for args in settings(&plan) {
        commands.push(set_line(&args));
        if let Err(e) = hv.set(name, &args).await {
            return CreateOutcome {
                result: Err(delete_half_configured(&*hv, name, &args, &e).await),
                vm_exists: false,
            };
        }
    }
    let mut refused = Vec::new();
    for args in sharing_off() {
        let line = set_line(&args);
        match hv.set(name, &args).await {
            Ok(()) => commands.push(line),
            Err(e) => refused.push(crate::chain::ErrorChain(&e).to_string()),
        }
    }
    // Identity for the operator (LANDB needs the MAC); not fatal if Parallels is terse.
    let details = hv.info(name).await.ok();
    let bundle = details.as_ref().and_then(|d| d.home.clone());
    let mac = details.as_ref().and_then(|d| d.mac.clone());
    if !refused.is_empty() {
        let err = sharing_refused(name, &refused, mac.as_deref());
        tracing::warn!(vm = name, error = %err, "vm create: sharing switches refused; VM kept");
        return CreateOutcome {
            result: Err(err),
            vm_exists: true,
        };
    }
    let manual_steps = manual_steps(&plan, &ci_user, bundle.as_deref(), mac.as_deref());
    tracing::info!(vm = name, "VM created and configured");
    CreateOutcome {
        result: Ok(CreateResult {
            vm: name.to_owned(),
            uuid: details.map(|d| d.uuid).filter(|u| !u.is_empty()),
            bundle,
            mac,
            cpus: plan.cpus,
            memory_mib: plan.memory_mib,
            build_disk: plan.build_disk.to_string_lossy().into_owned(),
            commands,
            locked: true,
            manual_steps,
        }),
        vm_exists: true,
    }
}

/// A setting failed: delete the VM (a retry starts clean) and say what happened.
async fn delete_half_configured(
    hv: &dyn Hypervisor,
    name: &str,
    args: &[String],
    e: &crate::hypervisor::PrlctlError,
) -> WireError {
    let mut err = crate::chain::to_wire(ErrorKind::Unavailable, e);
    let mut set = vec!["prlctl", "set", name];
    set.extend(args.iter().map(String::as_str));
    err.message = format!(
        "configuring new VM {name} failed at `{}`: {}",
        marble_proto::names::shell_command(&set),
        err.message
    );
    match hv.delete(name).await {
        Ok(()) => err
            .chain
            .push(format!("the half-configured VM {name} was deleted")),
        Err(d) => err.chain.push(format!(
            "deleting the half-configured VM {name} also failed ({}); delete it by hand: {}",
            crate::chain::ErrorChain(&d),
            marble_proto::names::shell_command(&["prlctl", "delete", name])
        )),
    }
    tracing::warn!(vm = name, error = %err, "vm create failed");
    err
}

/// The VM is complete but some sharing switches were refused (the adapter's errors).
fn sharing_refused(name: &str, refused: &[String], mac: Option<&str>) -> WireError {
    WireError {
        kind: ErrorKind::Unavailable,
        message: format!(
            "new VM {name} was created, but Parallels refused to turn host sharing off: {}",
            refused.join("; ")
        ),
        chain: vec![
            "the VM is kept (everything else is configured) and stays locked: the scheduler will not start it"
                .to_owned(),
            format!(
                "check by hand that nothing of the Mac is shared into it (Parallels Desktop: {name} > Configure > Options > Sharing: no Mac folders, no user profile), then continue with the manual steps in docs/OPERATIONS.md (\"vm create\"){}",
                mac.map(|m| format!("; its net0 MAC for LANDB is {m}"))
                    .unwrap_or_default()
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TeamsSection;

    fn facts(dir: &Path) -> HostFacts {
        HostFacts {
            cpus: 8,
            memory_mib: 32_768,
            reserve_mib: 4096,
            build_disk: dir.join("build_drive.hdd"),
        }
    }

    #[test]
    fn names_with_shell_metacharacters_are_refused() {
        for bad in [
            "",
            "a b",
            "a;rm",
            "$(x)",
            "-x",
            ".x",
            "a/b",
            "a`b`",
            &"x".repeat(64),
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?} accepted");
        }
        assert!(name_problem("macphsft01-ROOT-VM-macOS-15").is_none());
    }

    #[test]
    fn plan_checks_team_ipsw_disk_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let teams = TeamMap::new(&TeamsSection::default());
        let f = facts(dir.path());
        let ipsw = dir.path().join("x.ipsw");
        std::fs::write(&ipsw, b"ipsw").unwrap();
        let ipsw = ipsw.to_str().unwrap();
        let name = "h1-ROOT-VM-macOS-15";
        // No build disk yet.
        let e = plan(name, ipsw, Team::Root, None, None, &teams, &[], &f).unwrap_err();
        assert!(e.message.contains("build disk"), "{e}");
        std::fs::create_dir(&f.build_disk).unwrap();
        let p = plan(name, ipsw, Team::Root, None, None, &teams, &[], &f).unwrap();
        assert_eq!((p.cpus, p.memory_mib), (8, 28_672));
        let e = plan(name, ipsw, Team::Spi, None, None, &teams, &[], &f).unwrap_err();
        assert!(
            e.message.contains("does not match the spi name pattern"),
            "{e}"
        );
        let e = plan(name, "rel.ipsw", Team::Root, None, None, &teams, &[], &f).unwrap_err();
        assert!(e.message.contains("absolute"), "{e}");
        let missing = dir.path().join("no.ipsw");
        let e = plan(
            name,
            missing.to_str().unwrap(),
            Team::Root,
            None,
            None,
            &teams,
            &[],
            &f,
        )
        .unwrap_err();
        assert!(e.message.contains("cannot read"), "{e}");
        let e = plan(name, ipsw, Team::Root, Some(9), None, &teams, &[], &f).unwrap_err();
        assert!(e.message.contains("exceeds"), "{e}");
        let e = plan(name, ipsw, Team::Root, None, Some(1024), &teams, &[], &f).unwrap_err();
        assert!(e.message.contains("too small"), "{e}");
        let p = plan(name, ipsw, Team::Root, Some(4), Some(8192), &teams, &[], &f).unwrap();
        assert_eq!(settings(&p)[0], ["--cpus", "4", "--memsize", "8192"]);
    }
}
