//! Check `guest.runner-package`: the daemon's own `runner upgrade` steps
//! (`ci::github::install::runner_install_profile`, run by `provision::run_profile` as the
//! daemon runs them) put a runner package into the throw-away VM through real `prlctl exec`
//! stdin and macOS's `tar`, then a second run changes nothing. The package is the tests'
//! stand-in (`runner_release::build_padded`: real `.tar.gz`, a shell-script
//! `bin/Runner.Listener` that prints its version), padded to about the real package's size
//! on a Mac (128 MiB) so the timing says what moving the real one into a guest costs — the
//! transfer half of what a runner's self-update costs its first job after a release
//! (docs/CI.md "Runner versions"). Installed as `root` (every guest has it) in
//! `/Users/root/actions-runner`; without the launchd hook (an upgrade), so nothing starts in
//! the clone.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use marbled::hypervisor::Hypervisor as _;
use serde_json::json;

use super::record::{Obs, Verdict};
use super::target::Env;
use super::vm::Throwaway;

/// The check.
pub async fn package_check(env: &Env, vm: &Throwaway) {
    let limit = env.pick(Duration::from_secs(600), Duration::from_secs(30));
    let name = vm.name.as_str();
    env.rec
        .check("guest.runner-package", limit, async |obs: &Obs| {
            package(env, obs, name).await
        })
        .await;
}

async fn package(env: &Env, obs: &Obs, vm: &str) -> anyhow::Result<Verdict> {
    use marbled::ci::github::install::{
        RUNNER_PACKAGE_STEP, runner_dir, runner_install_profile, version_argv,
    };
    use marbled::provision::run_profile;
    let pad = if env.is_sim() { 256 << 10 } else { 128 << 20 };
    let pkg = crate::runner_release::build_padded("2.330.0", pad);
    let size = pkg.tarball.len();
    let profile = runner_install_profile("root", &pkg.version, pkg.tarball, true)
        .context("the daemon's runner steps")?;
    let major = marbled::provision::guest_macos_major(env.prl.as_ref(), vm)
        .await
        .context("guest macOS version")?;
    let started = Instant::now();
    let first = run_profile(env.prl.as_ref(), vm, &profile, major, &mut |_| {})
        .await
        .context("first run")?;
    let first_ms = started.elapsed().as_millis() as u64;
    let started = Instant::now();
    let second = run_profile(env.prl.as_ref(), vm, &profile, major, &mut |_| {})
        .await
        .context("second run")?;
    let second_ms = started.elapsed().as_millis() as u64;
    let argv = version_argv(&runner_dir("root"));
    let out = env
        .prl
        .exec(vm, &argv, None, Duration::from_secs(30))
        .await
        .context("reading the version back")?;
    obs.note(
        "runs",
        json!({"package_bytes": size, "first_ms": first_ms, "second_ms": second_ms,
               "first": first.ran(), "second": second.ran(), "version_out": out.stdout}),
    );
    env.rec.meta("runner_package_ms", first_ms.into());
    let mb = size as f64 / 1e6;
    Ok(
        if first.ran().contains(&RUNNER_PACKAGE_STEP)
            && !second.ran().contains(&RUNNER_PACKAGE_STEP)
            && out.stdout.trim() == pkg.version
        {
            Verdict::Pass(format!(
                "{mb:.1} MB package unpacked in {first_ms} ms; second run skipped it ({second_ms} ms); version {}",
                pkg.version
            ))
        } else {
            Verdict::Fail(format!(
                "first ran {:?}, second ran {:?}, version read {:?}",
                first.ran(),
                second.ran(),
                out.stdout.trim()
            ))
        },
    )
}
