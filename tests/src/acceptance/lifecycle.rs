//! Group `lifecycle`: power operations and VM management through the daemon's adapter, with
//! timings: start (and exec while the guest boots), graceful stop, stop of a hung guest,
//! suspend/resume, a new MAC as `image pull` sets it, snapshots, and delete of a clone next
//! to the shared build disk.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use marble_proto::PowerState;
use marbled::hypervisor::prlctl::is_prlctl_side_message;
use marbled::hypervisor::{Hypervisor, StopMode};
use serde_json::json;

use super::record::{Obs, Verdict};
use super::target::Env;
use super::vm::{self, Throwaway};

fn t(env: &Env) -> Duration {
    env.pick(Duration::from_secs(60), Duration::from_secs(10))
}

fn boot(env: &Env) -> Duration {
    env.pick(Duration::from_secs(300), Duration::from_secs(20))
}

/// New MAC (the `image pull` settings), then net0 disconnected again. VM stopped.
pub async fn new_mac(env: &Env, vm: &Throwaway) {
    env.rec
        .check("lifecycle.new-mac", t(env), async |obs: &Obs| {
            let before = env.prl.info(&vm.name).await?.mac;
            // Exactly the arguments `images::pull_vm` gives a pulled VM.
            let args: Vec<String> = marbled::images::vm::NEW_MAC_ARGS
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            env.prl
                .set(&vm.name, &args)
                .await
                .context("set net0 as image pull does")?;
            env.prlctl_ok(
                obs,
                &["set", &vm.name, "--device-set", "net0", "--disconnect"],
                t(env),
            )
            .await
            .context("disconnect net0 again")?;
            let after = env.prl.info(&vm.name).await?.mac;
            obs.note("mac", json!({"before": before, "after": after}));
            Ok(match (&before, &after) {
                (Some(b), Some(a)) if a != b => Verdict::Pass(format!("{b} -> {a}")),
                _ => Verdict::Fail(format!("MAC before {before:?}, after {after:?}")),
            })
        })
        .await;
}

/// Snapshot create, list (daemon parser), delete, list empty. VM stopped.
pub async fn snapshots(env: &Env, vm: &Throwaway) {
    let limit = env.pick(Duration::from_secs(300), Duration::from_secs(20));
    env.rec
        .check("lifecycle.snapshots", limit, async |obs: &Obs| {
            let name = vm.name.as_str();
            let empty = env
                .prlctl_ok(obs, &["snapshot-list", name, "--json"], t(env))
                .await?
                .stdout_text();
            env.rec.fixture(
                "snapshot_list_json_empty.txt",
                "prlctl snapshot-list VM --json (no snapshots)",
                &empty,
            );
            super::parse::validate_snapshots(&empty, 0).context("before the snapshot")?;
            let started = Instant::now();
            let made = env
                .prlctl_ok(obs, &["snapshot", name, "-n", "marble-acceptance"], limit)
                .await?;
            env.rec.timing("snapshot_create_s", started.elapsed());
            env.rec.fixture(
                "snapshot_create.txt",
                "prlctl snapshot VM -n marble-acceptance",
                &made.stdout_text(),
            );
            let one = env
                .prlctl_ok(obs, &["snapshot-list", name, "--json"], t(env))
                .await?
                .stdout_text();
            let plain = env
                .prlctl_ok(obs, &["snapshot-list", name], t(env))
                .await?
                .stdout_text();
            env.rec.fixture(
                "snapshot_list_json.json",
                "prlctl snapshot-list VM --json (one snapshot)",
                &one,
            );
            env.rec.fixture(
                "snapshot_list_plain.txt",
                "prlctl snapshot-list VM (one snapshot)",
                &plain,
            );
            let listed = super::parse::validate_snapshots(&one, 1).context("after the snapshot")?;
            let snaps = env.prl.snapshot_list(name).await?;
            let started = Instant::now();
            for s in &snaps {
                env.prl.snapshot_delete(name, &s.id).await?;
            }
            env.rec.timing("snapshot_delete_s", started.elapsed());
            let after = env.prl.snapshot_list(name).await?;
            Ok(if after.is_empty() {
                Verdict::Pass(format!("{listed}; deleted again"))
            } else {
                Verdict::Fail(format!("{} snapshots left after delete", after.len()))
            })
        })
        .await;
}

/// Start, and exec while the guest boots: the first exec right after `start` returns is
/// either prlctl's session error (the adapter must report an error, not a guest status) or
/// already an answer; then the time until the guest answers.
pub async fn start(env: &Env, vm: &Throwaway, id: &str) -> bool {
    let status = env
        .rec
        .check(id, boot(env) + t(env), async |obs: &Obs| {
            let name = vm.name.as_str();
            let started = Instant::now();
            env.prl.start(name).await.context("prlctl start")?;
            let start_returned = started.elapsed();
            let early = env
                .prl
                .exec(name, &["/usr/bin/true".to_owned()], None, t(env))
                .await;
            let early_text = match &early {
                Ok(o) => format!("answered: status {} stderr {:?}", o.status, o.stderr.trim()),
                Err(e) => format!("error: {}", marbled::chain::ErrorChain(e)),
            };
            obs.note("exec right after start", early_text.clone().into());
            let (ready, failures) = vm::wait_exec(env, name, boot(env)).await?;
            let to_exec = started.elapsed();
            env.rec.timing("start_returned_s", start_returned);
            env.rec.timing("start_to_exec_s", to_exec);
            let timing = format!(
                "start returned after {:.1} s, guest answered exec after {:.1} s ({failures} refused execs while booting; first: {early_text})",
                start_returned.as_secs_f64(),
                to_exec.as_secs_f64()
            );
            let _ = ready;
            Ok(match early {
                // The guest already answered, or the adapter saw prlctl's own failure.
                Ok(o) if o.status == 0 => Verdict::Pass(timing),
                Err(marbled::hypervisor::PrlctlError::Failed { stderr_tail, .. })
                    if is_prlctl_side_message(&stderr_tail) =>
                {
                    Verdict::Pass(timing)
                }
                Err(e) => Verdict::Fail(format!(
                    "exec while booting failed in an unexpected way: {}; {timing}",
                    marbled::chain::ErrorChain(&e)
                )),
                Ok(o) => Verdict::Fail(format!(
                    "exec while booting came back as guest status {} ({:?}): the adapter does not recognise the message; {timing}",
                    o.status,
                    o.stderr.trim()
                )),
            })
        })
        .await;
    // Later checks need the guest, whatever the verdict on the booting exec was.
    vm::power(env, &vm.name).await.ok().flatten() == Some(PowerState::Running)
        && (status == super::record::Status::Pass
            || vm::wait_exec(env, &vm.name, t(env)).await.is_ok())
}

/// Suspend, resume, and the time until the guest answers again. VM running.
pub async fn suspend_resume(env: &Env, vm: &Throwaway) {
    env.rec
        .check("lifecycle.suspend-resume", boot(env) * 2, async |obs: &Obs| {
            let name = vm.name.as_str();
            let started = Instant::now();
            env.prl.suspend(name).await.context("prlctl suspend")?;
            let suspended = vm::wait_power(env, name, PowerState::Suspended, boot(env)).await?;
            env.rec.timing("suspend_s", started.elapsed());
            let started = Instant::now();
            env.prl.resume(name).await.context("prlctl resume")?;
            vm::wait_power(env, name, PowerState::Running, boot(env)).await?;
            let (to_exec, failures) = vm::wait_exec(env, name, boot(env)).await?;
            env.rec.timing("resume_to_exec_s", started.elapsed());
            obs.note("timings", json!({"suspended_after_ms": suspended.as_millis() as u64, "exec_after_resume_ms": to_exec.as_millis() as u64, "refused_execs": failures}));
            Ok(Verdict::Pass(format!(
                "suspended in {:.1} s; after resume the guest answered exec in {:.1} s ({failures} refused)",
                suspended.as_secs_f64(),
                started.elapsed().as_secs_f64()
            )))
        })
        .await;
}

/// Graceful stop, timed until the listing says stopped (prlctl may return before).
pub async fn stop(env: &Env, vm: &Throwaway) {
    env.rec
        .check("lifecycle.stop", boot(env), async |obs: &Obs| {
            let name = vm.name.as_str();
            let started = Instant::now();
            let r = env.prl.stop(name, StopMode::Graceful).await;
            let returned = started.elapsed();
            obs.note(
                "graceful stop",
                json!({"result": r.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()), "returned_ms": returned.as_millis() as u64}),
            );
            let stopped = vm::wait_power(env, name, PowerState::Stopped, boot(env)).await;
            env.rec.timing("graceful_stop_s", started.elapsed());
            Ok(match stopped {
                Ok(_) => Verdict::Pass(format!(
                    "prlctl stop returned after {:.1} s ({}), stopped after {:.1} s",
                    returned.as_secs_f64(),
                    if r.is_ok() { "exit 0" } else { "an error" },
                    started.elapsed().as_secs_f64()
                )),
                Err(e) => {
                    // Leave the VM stopped for what follows.
                    let _ = env.prl.stop(name, StopMode::Kill).await;
                    Verdict::Fail(format!("graceful stop did not stop the VM: {e}"))
                }
            })
        })
        .await;
}

/// Stop of a hung guest: the guest cannot answer a shutdown (a paused VM on a Mac, the
/// simulator's "stop ignored" fault), so the graceful stop with a bounded wait does not
/// stop it and `--kill` must. VM running on entry; stopped on exit.
pub async fn stop_hung(env: &Env, vm: &Throwaway) {
    env.rec
        .check("lifecycle.stop-hung", boot(env) * 2, async |obs: &Obs| {
            let name = vm.name.as_str();
            if let Some(sim) = env.sim() {
                sim.set_fault(Some(name), crate::prlsim::FaultKind::StopNoop, Some(1))
                    .map_err(|e| anyhow::anyhow!("simulator fault: {e}"))?;
            } else {
                env.prlctl_ok(obs, &["pause", name], t(env)).await.context("prlctl pause")?;
            }
            // The daemon gives a graceful stop `scheduler.graceful_stop_timeout` before
            // `--kill`; the suite bounds the graceful call itself too (it may block).
            let wait = env.pick(Duration::from_secs(45), Duration::from_secs(2));
            let started = Instant::now();
            let graceful = match tokio::time::timeout(wait, env.prl.stop(name, StopMode::Graceful)).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("prlctl stop did not return within {wait:?}")),
            };
            let rest = wait.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
            let graceful_stopped = vm::wait_power(env, name, PowerState::Stopped, rest).await.is_ok();
            obs.note(
                "graceful stop of the hung guest",
                json!({"result": graceful.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(Clone::clone), "stopped_within_wait": graceful_stopped, "elapsed_ms": started.elapsed().as_millis() as u64}),
            );
            if graceful_stopped {
                return Ok(Verdict::Pass(format!(
                    "the graceful stop stopped the hung guest by itself in {:.1} s",
                    started.elapsed().as_secs_f64()
                )));
            }
            let left = vm::power(env, name).await?;
            let kill_started = Instant::now();
            let kill = env.prl.stop(name, StopMode::Kill).await;
            let stopped = vm::wait_power(env, name, PowerState::Stopped, t(env)).await;
            env.rec.timing("kill_s", kill_started.elapsed());
            obs.note("kill", json!({"result": kill.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string())}));
            Ok(match stopped {
                Ok(_) => Verdict::Pass(format!(
                    "graceful stop left it {} after {:.0} s; --kill stopped it in {:.1} s",
                    left.map_or_else(|| "unregistered".to_owned(), |p| format!("{p:?}")),
                    wait.as_secs_f64(),
                    kill_started.elapsed().as_secs_f64()
                )),
                Err(e) => Verdict::Fail(format!("--kill did not stop the hung guest: {e}")),
            })
        })
        .await;
}

/// Delete of a clone leaves the shared build disk alone: clone the throw-away VM (the decoy
/// `build_drive.hdd` attached), delete the clone, check the decoy. VM stopped.
pub async fn delete_keeps_build_disk(env: &Env, vm: &Throwaway) {
    let limit = env.pick(Duration::from_secs(600), Duration::from_secs(30));
    env.rec
        .check("lifecycle.delete-keeps-build-disk", limit, async |obs: &Obs| {
            let second = format!("{}-2", vm.name);
            env.rec.cleanup_log(&format!("create vm {second}"));
            let started = Instant::now();
            env.prl.clone_vm(&vm.name, &second, None).await.context("clone")?;
            env.rec.timing("clone_second_s", started.elapsed());
            let decoy = vm.decoy.display().to_string();
            let attached = vm::has_disk(env, obs, &second, &vm.decoy).await?;
            let started = Instant::now();
            vm::destroy(env, obs, &second).await?;
            env.rec.timing("delete_s", started.elapsed());
            let kept = vm.decoy.join("DiskDescriptor.xml").exists() || vm.decoy.exists();
            obs.note("decoy", json!({"path": decoy, "attached_to_clone": attached, "exists_after_delete": kept}));
            Ok(match (attached, kept) {
                (true, true) => Verdict::Pass(format!(
                    "the clone referenced {decoy}; deleting the clone kept it"
                )),
                (false, true) => Verdict::Fail(format!(
                    "the clone does not reference the decoy build disk {decoy} (clone copied or dropped it?): see results.json"
                )),
                (_, false) => Verdict::Fail(format!("deleting the clone removed the shared build disk {decoy}")),
            })
        })
        .await;
}
