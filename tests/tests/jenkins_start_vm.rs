//! `docs/jenkins/start_vm.sh` as Jenkins runs it (issue 13 §2): the SSH launcher starts it
//! over a non-interactive ssh session, whose PATH is `/usr/bin:/bin:/usr/sbin:/sbin` — no
//! `/usr/local/bin`, where `marblectl` is installed. Every run here is `env -i` with that
//! minimal PATH, the real script, the real `marblectl` and the real daemon on a simulated host.
//!
//! `marblectl` is reachable only at an absolute path: the install prefix by default, or
//! `MARBLECTL` (the test points it at the built binary). A bare `marblectl` in that
//! environment exits 127, which is what every host saw before the script used the path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e_support::{Out, Running, SPI1, SPI2, SimEnv, T, ctl};
use marble_tests::harness::bin_path;
use marble_tests::prlsim::VmState;

/// The PATH of a non-interactive ssh session on macOS (and narrower: no `/usr/sbin`).
const SSH_PATH: &str = "/usr/bin:/bin";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/jenkins/start_vm.sh")
}

/// `env -i PATH=/usr/bin:/bin [VARS…] /bin/sh start_vm.sh ARGS…`, waited on with a timeout.
fn run_script(vars: &[(&str, &Path)], args: &[&str]) -> Out {
    let mut cmd = Command::new("/usr/bin/env");
    cmd.arg("-i").arg(format!("PATH={SSH_PATH}"));
    for (k, v) in vars {
        cmd.arg(format!("{k}={}", v.display()));
    }
    cmd.arg("/bin/sh").arg(script()).args(args);
    Running::spawn(cmd).wait(T)
}

#[test]
fn start_vm_sh_reaches_the_daemon_under_the_ssh_path_and_passes_its_exit_codes() {
    let env = SimEnv::new();
    let daemon = env.spawn();
    let marblectl = bin_path("marblectl-under-test");
    let vars = [
        ("MARBLECTL", marblectl.as_path()),
        ("MARBLE_SOCKET", daemon.socket.as_path()),
    ];

    // The control: in this environment a bare `marblectl` is not found (what the old
    // script ran into on every host).
    let mut bare = Command::new("/usr/bin/env");
    bare.args(["-i", &format!("PATH={SSH_PATH}"), "/bin/sh", "-c"])
        .arg("marblectl request-slot \"$1\" --wait 0s")
        .args(["sh", SPI1]);
    let bare = Running::spawn(bare).wait(T);
    assert_eq!(
        bare.code, 127,
        "a bare marblectl must not be on {SSH_PATH}: {bare}"
    );

    // Granted: the VM runs, and the agent command (the `exec` at the end) owns stdout.
    let out = run_script(&vars, &[SPI1, "/bin/sh", "-c", "echo agent-channel"]);
    assert_eq!(out.code, 0, "{out}\n{}", daemon.log_text());
    assert_eq!(
        out.stdout, "agent-channel\n",
        "only the agent writes stdout: {out}"
    );
    assert_eq!(env.sim_state(SPI1), VmState::Running);

    // Refused: the request's exit code is the script's (77 = locked), the agent never runs.
    let lock = ctl(&daemon.socket, &["lock", SPI2, "--reason", "disk check"]);
    assert_eq!(lock.code, 0, "{lock}");
    let out = run_script(&vars, &[SPI2, "/bin/sh", "-c", "echo agent-channel"]);
    assert_eq!(out.code, 77, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(out.stderr.contains("disk check"), "{out}");
    // Unknown VM: 2.
    let out = run_script(&vars, &["no-such-VM", "/bin/true"]);
    assert_eq!(out.code, 2, "{out}");
}

#[test]
fn start_vm_sh_calls_marblectl_by_the_install_path_by_default() {
    let installed = Path::new("/usr/local/bin/marblectl");
    if installed.exists() {
        // On a real host the default path works; this check needs it absent.
        eprintln!("skipped: {} exists on this machine", installed.display());
        return;
    }
    let out = run_script(&[], &[SPI1, "/bin/true"]);
    assert_eq!(out.code, 127, "{out}");
    assert!(
        out.stderr.contains("/usr/local/bin/marblectl"),
        "names the absolute path it looked for: {out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
}
