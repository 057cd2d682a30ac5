//! The in-guest runner pieces (`launchd/guest/`), embedded here so `marblectl runner install
//! VM` can put them in place with [`runner_install_steps`] through the provisioning engine:
//! the start script that waits for a JIT config, and its LaunchDaemon. See `docs/CI.md`.

use std::time::Duration;

use crate::provision::{Profile, Step, StepAction};

/// The in-guest LaunchDaemon (with `@RUNNER_USER@`/`@RUNNER_DIR@` placeholders).
pub const GUEST_PLIST: &str =
    include_str!("../../../../launchd/guest/ch.cern.sft.marble.runner.plist");
/// The in-guest start script.
pub const GUEST_SCRIPT: &str = include_str!("../../../../launchd/guest/marble-runner.sh");
/// launchd label of the in-guest runner job.
pub const GUEST_LABEL: &str = "ch.cern.sft.marble.runner";
/// Guest path of the LaunchDaemon plist.
pub const GUEST_PLIST_PATH: &str = "/Library/LaunchDaemons/ch.cern.sft.marble.runner.plist";
/// Guest path of the start script.
pub const GUEST_SCRIPT_PATH: &str = "/usr/local/libexec/marble-runner.sh";
/// The seed's LaunchDaemon label and plist (removed on install).
const SEED_LABEL: &str = "start.actions.runner";
/// Guest file that says the hook's script or plist changed since launchd last loaded them
/// (so a second install, which changes nothing, does not restart the job).
pub const HOOK_CHANGED_PATH: &str = "/var/db/marble/runner-hook.changed";
/// Name of the step that refuses to touch a guest whose runner is running.
pub const RUNNER_IDLE_STEP: &str = "runner-not-running";
/// Name of the step that unpacks the runner package.
pub const RUNNER_PACKAGE_STEP: &str = "runner-package";
/// Name of the step that (re)loads the LaunchDaemon.
pub const RUNNER_BOOTSTRAP_STEP: &str = "runner-bootstrap";

/// Why the install steps could not be built.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The user name or directory is not safe to put in a plist and shell commands.
    #[error("invalid runner {what} {value:?}")]
    Invalid {
        /// `user` or `dir`.
        what: &'static str,
        /// The value.
        value: String,
    },
}

/// A shell line that installs its stdin as `path` (root:wheel, `mode`) by writing a new file
/// beside it and renaming it over the old one, so the step can run again at any time. When
/// the file is already exactly that (content, owner, mode), nothing is touched; otherwise
/// [`HOOK_CHANGED_PATH`] tells the bootstrap step to reload the job.
/// `path` is one of this module's constants (no character a shell would interpret).
fn install_file(path: &str, mode: &str) -> String {
    let dir = path.rsplit_once('/').map_or("/", |(d, _)| d);
    let new = format!("{path}.new");
    let marker_dir = HOOK_CHANGED_PATH.rsplit_once('/').map_or("/", |(d, _)| d);
    format!(
        "umask 022 && mkdir -p {dir} && cat > {new} && \
         if /usr/bin/cmp -s {new} {path} && [ \"$(/usr/bin/stat -f %Su:%Lp {path})\" = root:{mode} ]; \
         then rm -f {new}; else chown 0:0 {new} && chmod {mode} {new} && mv -f {new} {path} && \
         mkdir -p {marker_dir} && : > {HOOK_CHANGED_PATH}; fi"
    )
}

fn step(name: &str, action: StepAction, input: Option<Vec<u8>>) -> Step {
    Step {
        name: name.to_owned(),
        action,
        input,
        user: None,
        macos: None,
        creates: None,
        unless: None,
        timeout: Duration::from_secs(120),
        always: true,
    }
}

/// The steps of `marblectl runner install VM` for CI user `ci_user` whose actions-runner
/// lives in `runner_dir` (default `/Users/<user>/actions-runner`): remove the seed's
/// AUTO_RUNNER and its world-readable `~/.PAT`, install script and plist (root:wheel) via
/// exec stdin, and (re)bootstrap the job. Every step is `always` (install is idempotent and
/// must pick up a newer script). Run them with [`crate::provision::run_profile`].
pub fn runner_install_steps(
    ci_user: &str,
    runner_dir: Option<&str>,
) -> Result<Profile, InstallError> {
    if !crate::config::valid_user(ci_user) {
        return Err(InstallError::Invalid {
            what: "user",
            value: ci_user.to_owned(),
        });
    }
    let dir = runner_dir
        .map(str::to_owned)
        .unwrap_or_else(|| format!("/Users/{ci_user}/actions-runner"));
    let dir_ok = dir.starts_with('/')
        && !dir.contains("..")
        && dir
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
    if !dir_ok {
        return Err(InstallError::Invalid {
            what: "dir",
            value: dir,
        });
    }
    let plist = GUEST_PLIST
        .replace("@RUNNER_USER@", ci_user)
        .replace("@RUNNER_DIR@", &dir);
    let shell = |s: String| StepAction::Shell(s);
    Ok(Profile {
        steps: vec![
            step(
                "runner-remove-seed",
                // The seed's job registered runners with a PAT kept world-readable in the
                // guest (seed-scripts.md §5.4/§6); remove both. Failures are fine: absent.
                shell(format!(
                    "launchctl bootout system/{SEED_LABEL} 2>/dev/null; \
                     rm -f /Library/LaunchDaemons/{SEED_LABEL}.plist /Users/{ci_user}/.PAT \
                     /Users/{ci_user}/VM_ROOT_download_and_config_runner.sh; true"
                )),
                None,
            ),
            step(
                "runner-install-script",
                // Written beside and renamed over the old one: launchd's shell may be running
                // the old script (waiting for a JIT config), and a shell reads its script as
                // it goes, so rewriting it in place would feed it a mix of both versions.
                shell(install_file(GUEST_SCRIPT_PATH, "755")),
                Some(GUEST_SCRIPT.as_bytes().to_vec()),
            ),
            step(
                "runner-install-plist",
                shell(install_file(GUEST_PLIST_PATH, "644")),
                Some(plist.into_bytes()),
            ),
            Step {
                // Only when the script or plist changed: reloading the job of an unchanged
                // hook would only kill what it runs. (RunAtLoad starts it at every boot.)
                unless: Some(format!("test ! -e {HOOK_CHANGED_PATH}")),
                ..step(
                    RUNNER_BOOTSTRAP_STEP,
                    // bootout first: bootstrap of an already loaded job fails (seed §6 bug).
                    // And bootout can return before the job is gone, when a bootstrap fails
                    // ("5: Input/output error"): wait (bounded) until launchd no longer
                    // knows it.
                    shell(format!(
                        "launchctl bootout system/{GUEST_LABEL} 2>/dev/null; n=0; \
                         while launchctl print system/{GUEST_LABEL} >/dev/null 2>&1; do \
                         n=$((n + 1)); [ \"$n\" -le 50 ] || break; sleep 0.2; done; \
                         launchctl bootstrap system {GUEST_PLIST_PATH} && rm -f {HOOK_CHANGED_PATH}"
                    )),
                    None,
                )
            },
        ],
    })
}

/// The runner's install directory for `ci_user` (the plist's default).
pub fn runner_dir(ci_user: &str) -> String {
    format!("/Users/{ci_user}/actions-runner")
}

/// The guest command that prints the version of the runner installed in `dir` (what
/// `bin/Runner.Listener --version` prints: actions/runner compiles its version into the
/// binary and keeps no version file in the install directory).
pub fn version_argv(dir: &str) -> Vec<String> {
    vec![format!("{dir}/bin/Runner.Listener"), "--version".to_owned()]
}

/// The step that fails (and so stops the run before anything changes) while a runner
/// listener or worker runs in the guest: GitHub may assign a job to a listening runner at
/// any moment, and swapping its files under it would break that job.
pub fn runner_idle_step() -> Step {
    step(
        RUNNER_IDLE_STEP,
        StepAction::Shell(
            "for p in 'Runner\\.Worker' 'Runner\\.Listener'; do \
             if /usr/bin/pgrep -f \"$p\" >/dev/null; then \
             echo \"a runner is running in this guest ($p)\" >&2; exit 1; fi; done"
                .to_owned(),
        ),
        None,
    )
}

/// The step that unpacks `tarball` (the `actions/runner` macOS arm64 package of `version`)
/// into `dir`, owned by `ci_user`, unless `dir` already holds that version. The package
/// arrives on `prlctl exec`'s stdin (Parallels forwards it; no shared folder needed) and is
/// unpacked beside the old install; the new directory replaces the old one only after its
/// `Runner.Listener` reports `version`, keeping the work folder (`_work`: checkouts reused
/// between jobs). `ci_user` and `dir` are checked by the caller.
pub fn runner_package_step(ci_user: &str, dir: &str, version: &str, tarball: Vec<u8>) -> Step {
    let new = format!("{dir}.marble-new");
    let old = format!("{dir}.marble-old");
    let script = format!(
        "set -e; rm -rf {new} {old}; mkdir -p {new}; /usr/bin/tar -xzf - -C {new}; \
         v=$({new}/bin/Runner.Listener --version); \
         if [ \"$v\" != {version} ]; then echo \"the package holds runner $v, not {version}\" >&2; \
         rm -rf {new}; exit 1; fi; \
         if [ -d {dir}/_work ]; then mv {dir}/_work {new}/_work; fi; \
         /usr/sbin/chown -R {ci_user}:staff {new}; \
         if [ -e {dir} ]; then mv {dir} {old}; fi; mv {new} {dir}; rm -rf {old}"
    );
    let mut s = step(
        RUNNER_PACKAGE_STEP,
        StepAction::Shell(script),
        Some(tarball),
    );
    s.unless = Some(format!(
        "test \"$({dir}/bin/Runner.Listener --version 2>/dev/null)\" = {version}"
    ));
    s.timeout = Duration::from_secs(15 * 60);
    s
}

/// The whole `runner install` (or with `upgrade`, `runner upgrade`) profile: refuse a guest
/// whose runner runs, then the hook (not for an upgrade), then the package.
pub fn runner_install_profile(
    ci_user: &str,
    version: &str,
    tarball: Vec<u8>,
    upgrade: bool,
) -> Result<Profile, InstallError> {
    let hook = runner_install_steps(ci_user, None)?;
    let dir = runner_dir(ci_user);
    let mut steps = vec![runner_idle_step()];
    if !upgrade {
        steps.extend(hook.steps);
    }
    steps.push(runner_package_step(ci_user, &dir, version, tarball));
    Ok(Profile { steps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_steps_substitute_user_and_refuse_unsafe_values() {
        let p = runner_install_steps("sftnight", None).unwrap();
        assert_eq!(p.steps.len(), 4);
        let plist = String::from_utf8(p.steps[2].input.clone().unwrap()).unwrap();
        assert!(plist.contains("<string>sftnight</string>"));
        assert!(plist.contains("<string>/Users/sftnight/actions-runner</string>"));
        assert!(!plist.contains('@'));
        assert!(p.steps.iter().all(|s| s.always));
        assert!(runner_install_steps("bad user", None).is_err());
        assert!(runner_install_steps("ok", Some("/x; rm -rf /")).is_err());
    }

    #[test]
    fn guest_script_waits_bounded_and_reads_then_deletes() {
        assert!(GUEST_SCRIPT.contains("MARBLE_JIT_WAIT_SECONDS"));
        let read = GUEST_SCRIPT.find("config=$(cat \"$JIT\")").unwrap();
        let del = GUEST_SCRIPT[read..]
            .find("rm -f \"$JIT\" \"$READY\"")
            .unwrap();
        let run = GUEST_SCRIPT.find("./run.sh --jitconfig").unwrap();
        assert!(
            read + del < run,
            "the file is deleted before the runner starts"
        );
        assert!(GUEST_PLIST.contains("<key>RunAtLoad</key>\n  <true/>"));
        assert!(GUEST_PLIST.contains("<key>KeepAlive</key>\n  <false/>"));
        assert!(!GUEST_PLIST.contains("<key>UserName</key>"), "runs as root");
    }
}

/// The install steps through a real guest shell (see `hypervisor::local_guest`; only the
/// start script's step: `/Library` and `launchctl` do not exist on Linux).
#[cfg(all(test, target_os = "linux"))]
mod local_guest_tests {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;
    use crate::hypervisor::local_guest::LocalGuest;

    #[tokio::test]
    async fn reinstalling_the_start_script_never_rewrites_it_under_a_running_instance() {
        let guest = LocalGuest::new();
        let hv = guest.hv(&[]);
        let steps = runner_install_steps("sftnight", None).expect("steps");
        let install = Profile {
            steps: vec![steps.steps[1].clone()],
        };
        assert_eq!(install.steps[0].name, "runner-install-script");
        let host = guest.host_path(GUEST_SCRIPT_PATH);
        std::fs::create_dir_all(host.parent().expect("dir")).expect("mkdir");
        std::fs::write(&host, b"#!/bin/sh\n# the version launchd is running now\n").expect("plant");
        // launchd's running shell reads its script as it goes, through this open file.
        let mut running = std::fs::File::open(&host).expect("open");

        for _ in 0..2 {
            crate::provision::run_profile(&hv, "vm", &install, 14, &mut |_| {})
                .await
                .expect("install");
        }
        assert_eq!(std::fs::read_to_string(&host).expect("read"), GUEST_SCRIPT);
        let meta = std::fs::metadata(&host).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
        assert_eq!(meta.uid(), 0);
        let mut seen = String::new();
        running.read_to_string(&mut seen).expect("read old");
        assert_eq!(
            seen, "#!/bin/sh\n# the version launchd is running now\n",
            "the running instance's script was rewritten in place"
        );
    }
}
