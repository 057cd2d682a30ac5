//! End to end for issue 5's lifecycle commands, through the real binaries on a simulated
//! host: `vm create` issues exactly the documented prlctl sequence and locks the new VM;
//! `vm provision` run twice performs each step once (counted in the prlctl invocation log)
//! and stops at a failing step naming it; `host check` prints PASS lines on the simulated
//! host, SKIP for the macOS-only checks on Linux, and FAIL (exit 1) when prlctl is broken.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::path::{Path, PathBuf};

use e2e_support::{ROOT1, SimEnv, ctl};
use marble_tests::harness::{DaemonProcess, bin_path, wait_until_blocking};

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| (*s).to_owned()).collect()
}

/// A simulated host whose build disk exists, with `prlsrvctl` linked to the simulator.
fn env_with_disk() -> (SimEnv, PathBuf) {
    let mut env = SimEnv::new();
    let disk = env.dir.path().join("build_drive.hdd");
    std::fs::create_dir(&disk).unwrap();
    let prlsrvctl = env.dir.path().join("prlsrvctl");
    std::os::unix::fs::symlink(bin_path("fake-prlctl"), &prlsrvctl).unwrap();
    env.config.host.build_disk = Some(disk.clone());
    env.config.host.prlsrvctl = prlsrvctl;
    env.config.host.min_free_disk_gib = 0;
    env.config.host.boot_timeout = std::time::Duration::from_secs(10);
    // No S3 endpoint anywhere: the S3 check must say "not configured".
    env.config.images.s3cfg = Some(env.dir.path().join("no-such-s3cfg"));
    (env, disk)
}

#[test]
fn vm_create_issues_the_documented_prlctl_sequence_and_locks_the_vm() {
    let (env, disk) = env_with_disk();
    let daemon = env.spawn();
    let ipsw = env.dir.path().join("UniversalMac_26.0_Restore.ipsw");
    std::fs::write(&ipsw, b"not really an ipsw").unwrap();
    let name = "macphsft01-ROOT-VM-macOS-26";

    // A name that does not match the team's pattern is refused before any prlctl call.
    let out = ctl(
        &daemon.socket,
        &[
            "vm",
            "create",
            name,
            "--ipsw",
            ipsw.to_str().unwrap(),
            "--team",
            "spi",
        ],
    );
    assert_eq!(out.code, 64, "{out}");
    assert!(
        out.stderr.contains("does not match the spi name pattern"),
        "{out}"
    );
    let out = ctl(
        &daemon.socket,
        &[
            "vm",
            "create",
            "bad;name",
            "--ipsw",
            ipsw.to_str().unwrap(),
            "--team",
            "root",
        ],
    );
    assert_eq!(out.code, 64, "{out}");

    env.host.clear_invocations().unwrap();
    let out = ctl(
        &daemon.socket,
        &[
            "vm",
            "create",
            name,
            "--ipsw",
            ipsw.to_str().unwrap(),
            "--team",
            "root",
            "--cpus",
            "2",
            "--memory",
            "8192",
        ],
    );
    assert_eq!(out.code, 0, "{out}\n{}", daemon.log_text());
    let calls: Vec<Vec<String>> = env
        .host
        .argvs()
        .unwrap()
        .into_iter()
        .filter(|a| !matches!(a.first().map(String::as_str), Some("list" | "exec")))
        .collect();
    let d = disk.to_str().unwrap();
    // The seed's HOST_create_vm.sh, then MARBLE's own switches: sharing off comes after
    // `--isolate-vm off`, which turns sharing back on.
    assert_eq!(
        calls,
        vec![
            argv(&[
                "create",
                name,
                "-o",
                "macos",
                "--no-hdd",
                "--restore-image",
                ipsw.to_str().unwrap()
            ]),
            argv(&["set", name, "--cpus", "2", "--memsize", "8192"]),
            argv(&[
                "set",
                name,
                "--device-add",
                "hdd",
                "--type",
                "plain",
                "--size",
                "65536"
            ]),
            argv(&[
                "set",
                name,
                "--device-set",
                "net0",
                "--type",
                "bridged",
                "--iface",
                "default"
            ]),
            argv(&["set", name, "--isolate-vm", "off"]),
            argv(&["set", name, "--device-add", "hdd", "--image", d]),
            argv(&["set", name, "--startup-view", "headless"]),
            argv(&["set", name, "--shf-host", "off"]),
            argv(&["set", name, "--shf-host-defined", "off"]),
            argv(&["set", name, "--shared-profile", "off"]),
        ],
        "{}",
        daemon.log_text()
    );
    // The simulator agrees, and the output carries the MAC and the manual steps.
    let vm = env.host.vm(name).unwrap();
    assert_eq!(vm.startup_view, "headless");
    assert!(!vm.isolated, "prlctl exec needs isolation off");
    assert!(
        !vm.shf_host,
        "no host folder shared, although --isolate-vm off shared it"
    );
    assert_eq!(
        vm.other_settings
            .get("--shared-profile")
            .map(String::as_str),
        Some("off")
    );
    assert_eq!(vm.nets[0].kind, "bridged");
    // System disk first (the guest lives on it), then the shared build disk.
    assert_eq!(vm.hdds.len(), 2, "{:?}", vm.hdds);
    assert_eq!(vm.hdds[0].image, vm.home.join("harddisk.hdd"));
    assert_eq!(
        (vm.hdds[0].kind.as_str(), vm.hdds[0].size_mb),
        ("plain", 65536)
    );
    assert_eq!(vm.hdds[1].image, disk);
    assert_eq!((vm.cpus, vm.memsize_mb), (2, 8192));
    assert!(out.stdout.contains(vm.mac0().unwrap()), "{out}");
    for needle in ["Setup Assistant", "installtools", "vm provision", "unlock"] {
        assert!(out.stdout.contains(needle), "missing {needle:?}: {out}");
    }
    // Locked against scheduler starts once the inventory sees it.
    let ok = wait_until_blocking(e2e_support::T, || {
        let o = ctl(&daemon.socket, &["vm", "show", name, "--json"]);
        o.code == 0
            && serde_json::from_str::<serde_json::Value>(&o.stdout)
                .is_ok_and(|v| !v["lock"].is_null())
    });
    assert!(ok, "{name} not shown locked\n{}", daemon.log_text());
    let out = ctl(&daemon.socket, &["vm", "start", name]);
    assert_eq!(out.code, 77, "{out}");
    // Creating it again is refused as existing.
    let out = ctl(
        &daemon.socket,
        &[
            "vm",
            "create",
            name,
            "--ipsw",
            ipsw.to_str().unwrap(),
            "--team",
            "root",
        ],
    );
    assert_eq!(out.code, 1, "{out}");
}

fn write_profile(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("b.sh"), "echo two >> /tmp/b.log\necho from-b\n").unwrap();
    let p = dir.join("p.toml");
    std::fs::write(
        &p,
        r#"
[[step]]
name = "a"
command = "mkdir -p /tmp && chmod 1777 /tmp && echo one >> /tmp/a.log"

[[step]]
name = "b"
script = "b.sh"
user = "sftnight"

[[step]]
name = "only-15"
command = "echo fifteen >> /tmp/c.log"
macos = ">=15"

[[step]]
name = "guarded"
command = "echo guarded >> /tmp/d.log"
creates = "/etc/already-there"
"#,
    )
    .unwrap();
    p
}

fn count_execs(env: &SimEnv, needle: &str) -> usize {
    env.host
        .argvs()
        .unwrap()
        .iter()
        .filter(|a| a.first().map(String::as_str) == Some("exec") && a.join(" ").contains(needle))
        .count()
}

/// `vm provision ROOT1 --profile PROFILE`, once the daemon's own operations on the VM right
/// after it started (readiness wait, busy probe) have ended: while one runs the daemon refuses
/// with "… in flight; try again when it ends", and this does as the message says.
fn provision_when_settled(daemon: &DaemonProcess, profile: &str) -> e2e_support::Out {
    let args = ["vm", "provision", ROOT1, "--profile", profile];
    let mut out = ctl(&daemon.socket, &args);
    let settled = wait_until_blocking(e2e_support::T, || {
        if !out.stderr.contains("in flight; try again when it ends") {
            return true;
        }
        out = ctl(&daemon.socket, &args);
        false
    });
    assert!(settled, "the daemon's startup operations ended: {out}");
    out
}

#[test]
fn vm_provision_twice_performs_each_step_once() {
    let (env, _) = env_with_disk();
    env.power_on(ROOT1);
    env.host
        .write_guest_file(ROOT1, "/etc/already-there", b"x", 0o644)
        .unwrap();
    let daemon = env.spawn();
    let profile = write_profile(env.dir.path());
    let p = profile.to_str().unwrap();

    let first = provision_when_settled(&daemon, p);
    assert_eq!(first.code, 0, "{first}\n{}", daemon.log_text());
    assert!(first.stdout.contains("2 ran, 2 skipped"), "{first}");
    assert!(first.stderr.contains("[1/4] a: running"), "{first}");
    assert!(
        first.stderr.contains("b | from-b"),
        "step output streamed: {first}"
    );
    assert!(
        first
            .stderr
            .contains("only-15: skipped (macOS version not in >=15)"),
        "{first}"
    );
    assert!(
        first
            .stderr
            .contains("guarded: skipped (/etc/already-there exists)"),
        "{first}"
    );

    let second = ctl(&daemon.socket, &["vm", "provision", ROOT1, "--profile", p]);
    assert_eq!(second.code, 0, "{second}");
    assert!(second.stdout.contains("0 ran, 4 skipped"), "{second}");
    assert!(
        second.stderr.contains("a: skipped (already done)"),
        "{second}"
    );

    // Each step's command reached the guest exactly once over both runs.
    assert_eq!(count_execs(&env, "echo one >> /tmp/a.log"), 1);
    // The script travels on stdin to `sh -s` run as the step's user.
    let b_runs = env
        .host
        .argvs()
        .unwrap()
        .into_iter()
        .filter(|a| {
            // One guest line, each word quoted (prlctl exec re-parses it in a guest shell).
            a.last().map(String::as_str)
                == Some(marbled::hypervisor::guest_cmd::command_line(&[
                    "/usr/bin/sudo",
                    "-u",
                    "sftnight",
                    "-H",
                    "--",
                    "/bin/sh",
                    "-s",
                ]))
                .as_deref()
        })
        .count();
    assert_eq!(b_runs, 1);
    assert_eq!(count_execs(&env, "fifteen"), 0);
    assert_eq!(count_execs(&env, "echo guarded"), 0);
    let read =
        |p: &str| String::from_utf8(env.host.read_guest_file(ROOT1, p).unwrap().unwrap()).unwrap();
    assert_eq!(read("/tmp/a.log"), "one\n");
    assert_eq!(read("/tmp/b.log"), "two\n");
}

#[test]
fn vm_provision_stops_at_a_failing_step_and_names_it() {
    let (env, _) = env_with_disk();
    env.power_on(ROOT1);
    let daemon = env.spawn();
    let p = env.dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[[step]]\nname = \"ok\"\ncommand = \"true\"\n[[step]]\nname = \"broken\"\ncommand = \"echo nope >&2; exit 3\"\n[[step]]\nname = \"never\"\ncommand = \"echo never\"\n",
    )
    .unwrap();
    let out = provision_when_settled(&daemon, p.to_str().unwrap());
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("step \"broken\""), "{out}");
    assert!(out.stderr.contains("exit status 3"), "{out}");
    assert_eq!(count_execs(&env, "echo never"), 0);
    // An invalid profile is refused listing its problems, before anything runs.
    std::fs::write(
        &p,
        "[[step]]\nname = \"x y\"\ncommand = \"true\"\nuser = \"Bad User\"\n",
    )
    .unwrap();
    let out = ctl(
        &daemon.socket,
        &["vm", "provision", ROOT1, "--profile", p.to_str().unwrap()],
    );
    assert_eq!(out.code, 64, "{out}");
    assert!(
        out.stderr.contains("name must be") && out.stderr.contains("invalid user"),
        "{out}"
    );
}

fn status_of<'a>(report: &'a [serde_json::Value], name: &str) -> &'a str {
    report
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no {name} line in {report:?}"))["status"]
        .as_str()
        .unwrap()
}

#[test]
fn host_check_reports_pass_and_skip_on_the_simulated_host_and_fail_when_prlctl_is_broken() {
    let (env, _) = env_with_disk();
    let daemon = env.spawn();
    let out = ctl(&daemon.socket, &["host", "check"]);
    assert_eq!(out.code, 0, "{out}\n{}", daemon.log_text());
    for line in [
        "PASS  daemon",
        "PASS  parallels",
        "PASS  edition",
        "PASS  prlctl",
        "PASS  host-name",
        "PASS  build-disk",
        "PASS  free-disk",
        "SKIP  s3",
        "SKIP  github",
        "PASS  socket",
    ] {
        assert!(
            out.stdout.contains(line),
            "missing {line:?}:\n{}",
            out.stdout
        );
    }
    #[cfg(not(target_os = "macos"))]
    for name in ["launchd", "spotlight"] {
        let line = out.stdout.lines().find(|l| l.contains(name)).unwrap();
        assert!(
            line.starts_with("SKIP") && line.contains("macOS only"),
            "{line}"
        );
    }
    let json = ctl(&daemon.socket, &["host", "check", "--json"]);
    let report: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(status_of(&report, "edition"), "pass");
    // A standard edition has no working CLI: FAIL with the fix.
    env.host
        .update(|st| st.settings.edition = "standard".into())
        .unwrap();
    let out = ctl(&daemon.socket, &["host", "check"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("FAIL  edition"), "{out}");
    drop(daemon);

    // prlctl broken: the simulated dispatcher is gone (exit 253 on every call).
    let mut broken = env.config.clone();
    broken
        .prlctl
        .env
        .insert("MARBLE_PRLSIM_DIR".into(), "/nonexistent/prlsim".into());
    let dir = env.dir.path().join("broken");
    std::fs::create_dir(&dir).unwrap();
    broken.daemon.socket = dir.join("m.sock");
    broken.daemon.state_file = dir.join("state.bin");
    let daemon = DaemonProcess::spawn(&dir, &broken);
    let mut last = None;
    let ok = wait_until_blocking(e2e_support::T, || {
        let o = ctl(&daemon.socket, &["host", "check", "--json"]);
        let done = o.code == 1
            && serde_json::from_str::<Vec<serde_json::Value>>(&o.stdout).is_ok_and(|r| {
                status_of(&r, "prlctl") == "fail" && status_of(&r, "daemon") == "pass"
            });
        last = Some(o);
        done
    });
    assert!(
        ok,
        "no prlctl FAIL: {}\n{}",
        last.map(|o| o.to_string()).unwrap_or_default(),
        daemon.log_text()
    );
    let out = ctl(&daemon.socket, &["host", "check"]);
    assert!(out.stdout.contains("FAIL  prlctl"), "{out}");
    assert!(out.stdout.contains("fix: "), "{out}");
}

#[test]
fn host_setup_is_macos_only_here() {
    if cfg!(target_os = "macos") {
        return;
    }
    let dir = marble_tests::harness::short_tempdir();
    let out = ctl(
        &dir.path().join("none.sock"),
        &["host", "setup", "--name", "macphsft99", "--yes"],
    );
    assert_eq!(out.code, 69, "{out}");
    assert!(out.stderr.contains("macOS-only"), "{out}");
}

#[test]
fn shipped_profiles_parse_and_guard_the_build_disk() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/profiles");
    for team in ["root", "spi"] {
        let p = marbled::provision::Profile::load(&dir.join(format!("{team}.toml")))
            .unwrap_or_else(|e| panic!("{team}.toml: {e}"));
        let disk = p.steps.iter().find(|s| s.name == "build-disk").unwrap();
        // Never run twice on a mounted drive, and only with an explicit size to check.
        assert_eq!(disk.creates.as_deref(), Some("/Volumes/build_drive"));
        let marbled::provision::StepAction::Script { args, body, .. } = &disk.action else {
            panic!("build-disk is a script");
        };
        assert_eq!(args, &["274877906944"]);
        let body = String::from_utf8_lossy(body);
        assert!(
            body.contains("[ \"$#\" -ne 1 ]"),
            "exactly one candidate required"
        );
    }
}

/// `vm create NAME` for ROOT with a fresh IPSW; returns the CLI's output.
fn create_root_vm(env: &SimEnv, daemon: &DaemonProcess, name: &str) -> e2e_support::Out {
    let ipsw = env.dir.path().join("UniversalMac_26.0_Restore.ipsw");
    std::fs::write(&ipsw, b"not really an ipsw").unwrap();
    ctl(
        &daemon.socket,
        &[
            "vm",
            "create",
            name,
            "--ipsw",
            ipsw.to_str().unwrap(),
            "--team",
            "root",
        ],
    )
}

#[track_caller]
fn lock_shown(daemon: &DaemonProcess, name: &str) -> bool {
    let o = ctl(&daemon.socket, &["vm", "show", name, "--json"]);
    o.code == 0
        && serde_json::from_str::<serde_json::Value>(&o.stdout).is_ok_and(|v| !v["lock"].is_null())
}

#[test]
fn vm_create_keeps_the_new_vm_when_parallels_refuses_a_sharing_switch() {
    let (env, _disk) = env_with_disk();
    // A Parallels build that does not know `--shared-profile` (for a .macvm).
    env.host
        .update(|st| st.settings.unknown_options = vec!["--shared-profile".into()])
        .unwrap();
    let daemon = env.spawn();
    let name = "macphsft01-ROOT-VM-macOS-26";
    let out = create_root_vm(&env, &daemon, name);
    assert_ne!(out.code, 0, "{out}");
    for needle in ["--shared-profile", "Unrecognized option", "kept", "Sharing"] {
        assert!(out.stderr.contains(needle), "missing {needle:?}: {out}");
    }
    // Not deleted: fully configured but for that switch, the others applied.
    let vm = env.host.vm(name).expect("the new VM is kept");
    assert!(!vm.shf_host && !vm.isolated, "{vm:?}");
    assert_eq!(vm.hdds.len(), 2);
    let verbs: Vec<String> = env
        .host
        .argvs()
        .unwrap()
        .into_iter()
        .filter_map(|a| a.first().cloned())
        .collect();
    assert!(!verbs.iter().any(|v| v == "delete"), "{verbs:?}");
    // It stays locked against scheduler starts until the operator has looked at it.
    let ok = wait_until_blocking(e2e_support::T, || lock_shown(&daemon, name));
    assert!(ok, "{name} not shown locked\n{}", daemon.log_text());
}

#[test]
fn vm_create_deletes_a_vm_whose_configuration_failed_and_drops_its_lock() {
    let (env, _disk) = env_with_disk();
    // Without `--isolate-vm` the VM would have no `prlctl exec`: a configuration failure.
    env.host
        .update(|st| st.settings.unknown_options = vec!["--isolate-vm".into()])
        .unwrap();
    let daemon = env.spawn();
    let name = "macphsft01-ROOT-VM-macOS-26";
    let out = create_root_vm(&env, &daemon, name);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("--isolate-vm"), "{out}");
    assert!(out.stderr.contains("was deleted"), "{out}");
    assert!(env.host.vm(name).is_err(), "the half-configured VM is gone");
    let ok = wait_until_blocking(e2e_support::T, || !lock_shown(&daemon, name));
    assert!(ok, "the lock taken for {name} stays\n{}", daemon.log_text());
}
