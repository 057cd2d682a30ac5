//! The throw-away VM: cloned from a stopped source VM, made safe, and always removed.
//!
//! Safety rules (docs/ACCEPTANCE.md): the source must exist and be stopped (a running or
//! suspended VM is never touched); the clone's name starts with [`CLONE_PREFIX`] (so no team
//! pattern of a production daemon matches it, and cleanup never deletes anything else) and
//! must not exist yet. Right after the clone, every disk outside its bundle (the host's real
//! `build_drive.hdd`) is detached with `--detach-only` and a 64 MiB decoy `build_drive.hdd` in
//! the scratch directory is attached instead, so no delete can reach the real build disk; and
//! net0 is disconnected, so a runner or agent configured in the image cannot come online.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use marble_proto::PowerState;
use marbled::hypervisor::{Hypervisor, StopMode};
use serde_json::Value;

use super::record::Obs;
use super::target::Env;

/// Every VM the suite creates is named `marble-acceptance-…`.
pub const CLONE_PREFIX: &str = "marble-acceptance-";

/// Name of the simulator's source VM (a stand-in for a ROOT image).
pub const SIM_SOURCE: &str = "sim-source-ROOT-image";

/// The VM under test.
#[derive(Debug, Clone)]
pub struct Throwaway {
    /// Its name.
    pub name: String,
    /// Its UUID (lower case, no braces).
    pub uuid: String,
    /// The decoy build disk attached to it.
    pub decoy: PathBuf,
    /// The source it was cloned from.
    pub source: String,
}

/// A name free of everything but `[A-Za-z0-9._-]`.
fn stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}-{}", std::process::id())
}

/// Set up the simulator's source VM: stopped, Tools installed, a boot delay (so "exec while
/// booting" is observable), the guest directories a macOS guest has, and an external build
/// disk attached like on a production host (which the clone must detach).
pub fn prepare_sim_source(env: &Env) -> anyhow::Result<String> {
    let Some(sim) = env.sim() else {
        anyhow::bail!("no simulated host");
    };
    let sim_err = |e: crate::prlsim::SimError| anyhow::anyhow!("simulator: {e}");
    sim.add_vm(SIM_SOURCE).map_err(sim_err)?;
    sim.set_boot_delay(SIM_SOURCE, Duration::from_millis(1500))
        .map_err(sim_err)?;
    sim.set_resume_delay(SIM_SOURCE, Duration::from_millis(500))
        .map_err(sim_err)?;
    let root = sim.guest_root(SIM_SOURCE).map_err(sim_err)?;
    for d in [
        "tmp",
        "var/root",
        "var/run",
        "var/tmp",
        "var/db",
        "Users/admin",
        "private/tmp",
    ] {
        std::fs::create_dir_all(root.join(d)).with_context(|| format!("guest dir {d}"))?;
    }
    let disk = sim.dir().join("build_drive.hdd");
    std::fs::create_dir_all(&disk).context("simulated build disk")?;
    sim.update(|st| {
        if let Some(i) = st.find(SIM_SOURCE) {
            let v = &mut st.vms[i];
            let idx = v.hdds.len();
            let mut h = v.hdds[0].clone();
            h.name = format!("hdd{idx}");
            h.image = disk.clone();
            v.hdds.push(h);
        }
    })
    .map_err(sim_err)?;
    Ok(SIM_SOURCE.to_owned())
}

/// Clone the source into a new throw-away VM and make it safe (module docs). Logs the VM in
/// `cleanup.log` before cloning, so an interrupted run is cleaned up by the script.
pub async fn create(env: &Env, obs: &Obs) -> anyhow::Result<Throwaway> {
    let source = if env.is_sim() {
        SIM_SOURCE.to_owned()
    } else {
        env.settings
            .source_vm
            .clone()
            .context("no source VM: pass --source NAME (a stopped VM to clone)")?
    };
    let vms = env.prl.list_all().await.context("prlctl list -a --json")?;
    obs.note(
        "vms before",
        vms.iter()
            .map(|v| format!("{} {:?}", v.name, v.power))
            .collect::<Vec<_>>()
            .into(),
    );
    let src = vms
        .iter()
        .find(|v| v.name == source || v.uuid == marbled::hypervisor::parse::normalize_uuid(&source))
        .with_context(|| format!("source VM {source:?} is not registered for this user"))?;
    if src.power != PowerState::Stopped {
        anyhow::bail!(
            "source VM {source:?} is {:?}: the suite clones only a stopped VM and never touches one that runs or is suspended",
            src.power
        );
    }
    let name = env
        .settings
        .clone_name
        .clone()
        .unwrap_or_else(|| format!("{CLONE_PREFIX}{}", stamp()));
    if !name.starts_with(CLONE_PREFIX)
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        anyhow::bail!(
            "clone name {name:?} must start with {CLONE_PREFIX:?} and use only [A-Za-z0-9._-]"
        );
    }
    if vms.iter().any(|v| v.name == name) {
        anyhow::bail!("a VM named {name:?} already exists; the suite never reuses a VM");
    }

    env.rec.cleanup_log(&format!("create vm {name}"));
    let started = Instant::now();
    env.prl
        .clone_vm(&src.name, &name, None)
        .await
        .with_context(|| format!("prlctl clone {} --name {name}", src.name))?;
    env.rec.timing("clone_s", started.elapsed());
    // From the listing, not `list -i`: a parser failure on the details is a parse check's
    // finding and must not take every VM check down with it.
    let uuid = env
        .prl
        .list_all()
        .await
        .context("list after the clone")?
        .into_iter()
        .find(|v| v.name == name)
        .map(|v| v.uuid)
        .with_context(|| format!("the clone {name} is not listed after `prlctl clone`"))?;

    detach_external_disks(env, obs, &name).await?;
    // Keep the guest off the network: exec goes through Parallels Tools, not the network.
    env.prlctl_ok(
        obs,
        &["set", &name, "--device-set", "net0", "--disconnect"],
        env.pick(Duration::from_secs(60), Duration::from_secs(10)),
    )
    .await
    .context("disconnect net0 of the clone")?;

    let decoy = env.work.join("decoy").join("build_drive.hdd");
    if let Some(parent) = decoy.parent() {
        std::fs::create_dir_all(parent).context("decoy directory")?;
    }
    env.make_decoy_disk(obs, &decoy).await?;
    let decoy_s = decoy.display().to_string();
    env.prlctl_ok(
        obs,
        &["set", &name, "--device-add", "hdd", "--image", &decoy_s],
        env.pick(Duration::from_secs(60), Duration::from_secs(10)),
    )
    .await
    .context("attach the decoy build disk")?;
    Ok(Throwaway {
        name,
        uuid,
        decoy,
        source: src.name.clone(),
    })
}

/// Detach (never delete) every disk of `vm` whose image lies outside its bundle.
async fn detach_external_disks(env: &Env, obs: &Obs, vm: &str) -> anyhow::Result<()> {
    let out = env
        .prlctl_ok(
            obs,
            &["list", "-i", "--json", vm],
            env.pick(Duration::from_secs(60), Duration::from_secs(10)),
        )
        .await?;
    let raw = out.stdout_text();
    let v = marbled::hypervisor::parse::lenient_json(&raw).context("list -i --json")?;
    let obj = match &v {
        Value::Array(a) => a.first().cloned().unwrap_or(Value::Null),
        o => o.clone(),
    };
    let home = obj
        .get("Home")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    let external = external_disks(&obj, &home);
    obs.note("disks of the clone", disk_images(&obj).into());
    obs.note("external disks detached", external.clone().into());
    for dev in external {
        env.prlctl_ok(
            obs,
            &["set", vm, "--device-del", &dev, "--detach-only"],
            env.pick(Duration::from_secs(60), Duration::from_secs(10)),
        )
        .await
        .with_context(|| format!("detach {dev} of {vm}"))?;
    }
    Ok(())
}

/// `hddN` devices of a `list -i --json` object whose `image` is not inside `home`.
pub fn external_disks(info: &Value, home: &str) -> Vec<String> {
    let Some(hw) = info.get("Hardware").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out: Vec<String> = hw
        .iter()
        .filter(|(k, _)| k.starts_with("hdd"))
        .filter_map(|(k, d)| {
            let image = d.get("image").and_then(Value::as_str)?;
            let inside = !home.is_empty() && Path::new(image).starts_with(home);
            (!inside).then(|| k.clone())
        })
        .collect();
    out.sort();
    out
}

/// `DEV image` of every `hddN` of a `list -i --json` object.
pub fn disk_images(info: &Value) -> Vec<String> {
    let Some(hw) = info.get("Hardware").and_then(Value::as_object) else {
        return Vec::new();
    };
    hw.iter()
        .filter(|(k, _)| k.starts_with("hdd"))
        .filter_map(|(k, d)| {
            d.get("image")
                .and_then(Value::as_str)
                .map(|i| format!("{k} {i}"))
        })
        .collect()
}

/// Whether `vm` (by `list -i --json`) has a disk whose image is `path`.
pub async fn has_disk(env: &Env, obs: &Obs, vm: &str, path: &Path) -> anyhow::Result<bool> {
    let raw = env
        .prlctl_ok(
            obs,
            &["list", "-i", "--json", vm],
            env.pick(Duration::from_secs(60), Duration::from_secs(10)),
        )
        .await?
        .stdout_text();
    let v = marbled::hypervisor::parse::lenient_json(&raw).context("list -i --json")?;
    let obj = match &v {
        Value::Array(a) => a.first().cloned().unwrap_or(Value::Null),
        o => o.clone(),
    };
    let want = path.display().to_string();
    Ok(disk_images(&obj).iter().any(|d| {
        d.split_once(' ')
            .is_some_and(|(_, i)| i.trim_end_matches('/') == want)
    }))
}

/// Stop (killing) and delete a VM the suite created. Refuses names without
/// "marble-acceptance" in them. A VM that is already gone is fine.
pub async fn destroy(env: &Env, obs: &Obs, name: &str) -> anyhow::Result<()> {
    if !name.contains("marble-acceptance") {
        anyhow::bail!("refusing to delete {name:?}: not a VM the suite created");
    }
    let vms = env.prl.list_all().await.context("list before delete")?;
    let Some(vm) = vms.iter().find(|v| v.name == name) else {
        env.rec.cleanup_log(&format!("removed vm {name}"));
        return Ok(());
    };
    match vm.power {
        PowerState::Stopped => {}
        PowerState::Suspended => {
            let _ = env.prl.stop(name, StopMode::DropState).await;
        }
        _ => {
            let _ = env.prl.stop(name, StopMode::Kill).await;
        }
    }
    let deadline = Instant::now() + env.pick(Duration::from_secs(120), Duration::from_secs(10));
    loop {
        let state = env
            .prl
            .list_all()
            .await
            .ok()
            .and_then(|l| l.into_iter().find(|v| v.name == name).map(|v| v.power));
        if matches!(state, None | Some(PowerState::Stopped)) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    env.prl
        .delete(name)
        .await
        .with_context(|| format!("prlctl delete {name}"))?;
    obs.note("deleted", name.into());
    env.rec.cleanup_log(&format!("removed vm {name}"));
    Ok(())
}

/// VMs this run logged as created but not as removed (`cleanup.log`): a clone whose setup
/// failed half-way, a second clone or a push clone left by a failed check.
pub fn leftovers(log: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in log.lines() {
        if let Some(name) = line.strip_prefix("create vm ") {
            out.push(name.to_owned());
        } else if let Some(name) = line.strip_prefix("removed vm ") {
            out.retain(|n| n != name);
        }
    }
    out.retain(|n| n.contains("marble-acceptance"));
    out
}

/// Delete every VM of [`leftovers`] that is still registered.
pub async fn destroy_leftovers(env: &Env, obs: &Obs) -> anyhow::Result<Vec<String>> {
    let log = std::fs::read_to_string(env.rec.dir().join("cleanup.log")).unwrap_or_default();
    let mut deleted = Vec::new();
    for name in leftovers(&log) {
        if power(env, &name).await?.is_some() {
            destroy(env, obs, &name).await?;
            deleted.push(name);
        } else {
            env.rec.cleanup_log(&format!("removed vm {name}"));
        }
    }
    Ok(deleted)
}

/// Power state of `vm` now (`None`: not registered).
pub async fn power(env: &Env, vm: &str) -> anyhow::Result<Option<PowerState>> {
    Ok(env
        .prl
        .list_all()
        .await
        .context("prlctl list -a --json")?
        .into_iter()
        .find(|v| v.name == vm)
        .map(|v| v.power))
}

/// Poll until `vm` is in `want` (or `timeout`); returns the time it took.
pub async fn wait_power(
    env: &Env,
    vm: &str,
    want: PowerState,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let now = power(env, vm).await?;
        if now.as_ref() == Some(&want) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            anyhow::bail!("{vm} is {now:?}, not {want:?}, after {timeout:?}");
        }
        tokio::time::sleep(env.pick(Duration::from_secs(1), Duration::from_millis(100))).await;
    }
}

/// Poll `exec VM /usr/bin/true` through the daemon's adapter until the guest answers;
/// returns the time it took and how many attempts failed first.
pub async fn wait_exec(env: &Env, vm: &str, timeout: Duration) -> anyhow::Result<(Duration, u32)> {
    let started = Instant::now();
    let mut failures = 0;
    let argv = vec!["/usr/bin/true".to_owned()];
    loop {
        let last = match env
            .prl
            .exec(
                vm,
                &argv,
                None,
                env.pick(Duration::from_secs(20), Duration::from_secs(5)),
            )
            .await
        {
            Ok(out) if out.status == 0 => return Ok((started.elapsed(), failures)),
            Ok(out) => format!("exit {}: {}", out.status, out.stderr.trim()),
            Err(e) => marbled::chain::ErrorChain(&e).to_string(),
        };
        failures += 1;
        if started.elapsed() > timeout {
            anyhow::bail!("guest of {vm} did not answer exec within {timeout:?}; last: {last}");
        }
        tokio::time::sleep(env.pick(Duration::from_secs(2), Duration::from_millis(200))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_created_and_not_removed() {
        let log = "create dir /tmp/x\ncreate vm marble-acceptance-1\ncreate vm marble-acceptance-1-2\nremoved vm marble-acceptance-1-2\ncreate vm other\n";
        assert_eq!(leftovers(log), vec!["marble-acceptance-1".to_owned()]);
    }

    #[test]
    fn only_disks_outside_the_bundle_are_external() {
        let info = serde_json::json!({
            "Home": "/Users/ci/Parallels/x.macvm/",
            "Hardware": {
                "hdd0": {"image": "/Users/ci/Parallels/x.macvm/harddisk.hdd"},
                "hdd1": {"image": "/Users/ci/Parallels/build_drive.hdd"},
                "net0": {"mac": "001C42000000"}
            }
        });
        assert_eq!(
            external_disks(&info, "/Users/ci/Parallels/x.macvm"),
            vec!["hdd1".to_owned()]
        );
        assert!(external_disks(&serde_json::json!({}), "/x").is_empty());
    }
}
