//! State transitions and VM management through the real `fake-prlctl` binary: power verbs
//! with their messages and wrong-state errors, boot delay, create/register/clone/delete/set,
//! and the locked bundle.

use std::path::Path;
use std::time::{Duration, Instant};

use marble_tests::prlsim::{PrlRun, SimHost, VmState};

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fake-prlctl"))
}

fn host() -> (tempfile::TempDir, SimHost) {
    let dir = tempfile::tempdir().expect("test helper");
    let host = SimHost::create(dir.path()).expect("test helper");
    (dir, host)
}

fn prl(h: &SimHost, args: &[&str]) -> PrlRun {
    h.prlctl(exe(), args, None).expect("test helper")
}

const VM: &str = "macphsft01-ROOT-VM-macOS-14";

#[test]
fn power_verbs_print_the_sdk_messages_and_move_state() {
    let (_d, h) = host();
    h.add_vm(VM).unwrap();
    let steps: &[(&[&str], &str, VmState)] = &[
        (
            &["start", VM],
            "Starting the VM...\nThe VM has been successfully started.\n",
            VmState::Running,
        ),
        (
            &["pause", VM],
            "Pause the VM...\nThe VM has been successfully paused.\n",
            VmState::Paused,
        ),
        (
            &["resume", VM],
            "Resuming the VM...\nThe VM has been successfully resumed.\n",
            VmState::Running,
        ),
        (
            &["suspend", VM],
            "Suspending the VM...\nThe VM has been successfully suspended.\n",
            VmState::Suspended,
        ),
        (
            &["start", VM],
            "Starting the VM...\nThe VM has been successfully started.\n",
            VmState::Running,
        ),
        (
            &["stop", VM],
            "Stopping the VM...\nThe VM has been successfully stopped.\n",
            VmState::Stopped,
        ),
        (
            &["start", VM],
            "Starting the VM...\nThe VM has been successfully started.\n",
            VmState::Running,
        ),
        (
            &["stop", VM, "--kill"],
            "Stopping the VM...\nThe VM has been forcibly stopped\n",
            VmState::Stopped,
        ),
    ];
    for (args, out, state) in steps {
        let r = prl(&h, args);
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (0, *out, ""),
            "{args:?}"
        );
        assert_eq!(h.vm_state(VM).unwrap(), *state, "{args:?}");
        let status = prl(&h, &["status", VM]).stdout;
        assert_eq!(status, format!("VM {VM} exist {}\n", state.as_str()));
    }
    h.set_vm_state(VM, VmState::Suspended).unwrap();
    let r = prl(&h, &["stop", VM, "--drop-state"]);
    assert_eq!(r.code, 0);
    assert_eq!(h.vm_state(VM).unwrap(), VmState::Stopped);
}

#[test]
fn wrong_state_errors_use_the_sdk_wording() {
    let (_d, h) = host();
    h.add_vm(VM).unwrap();
    let r = prl(&h, &["suspend", VM]);
    assert_eq!(r.code, 255);
    assert_eq!(
        r.stderr,
        format!(
            "Failed to suspend the VM: Unable to perform the operation because the virtual machine \"{VM}\" \
             is not started. This operation can be performed for running virtual machines only.\n"
        )
    );
    let r = prl(&h, &["exec", VM, "true"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            255,
            &*format!("Unable to perform the operation because \"{VM}\" is not started.\n")
        )
    );
    // Stop on a stopped VM: message on stderr, exit 0 (the shared source's special case).
    let r = prl(&h, &["stop", VM]);
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("is not started"));
    prl(&h, &["start", VM]);
    let r = prl(&h, &["start", VM]);
    assert_eq!(r.code, 255);
    assert_eq!(
        r.stderr,
        format!(
            "Failed to start the VM: Unable to perform the operation because the virtual machine \"{VM}\" \
             is not stopped. This operation can be performed for stopped virtual machines only.\n"
        )
    );
    let r = prl(&h, &["set", VM, "--cpus", "8"]);
    assert_eq!(r.code, 255);
    assert!(
        r.stderr.starts_with("Unable to commit VM configuration: "),
        "{}",
        r.stderr
    );
    let r = prl(&h, &["stop", VM, "--bogus"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (255, "Unrecognized option: --bogus\n")
    );
}

#[test]
fn exec_fails_with_the_session_error_until_the_guest_has_booted() {
    let (_d, h) = host();
    h.add_vm(VM).unwrap();
    h.set_boot_delay(VM, Duration::from_millis(300)).unwrap();
    h.add_boot_process(VM, "/Users/runner/actions-runner/bin/Runner.Listener run")
        .unwrap();
    let started = Instant::now();
    assert_eq!(prl(&h, &["start", VM]).code, 0);
    // Running in `list` at once, but the guest is booting.
    assert_eq!(
        prl(&h, &["list", "-o", "status", "--no-header"]).stdout,
        "running\n"
    );
    let r = prl(&h, &["exec", VM, "true"]);
    if started.elapsed() < Duration::from_millis(300) {
        assert_eq!(r.code, 255);
        assert!(
            r.stderr
                .starts_with("Unable to open new session in this virtual machine."),
            "{}",
            r.stderr
        );
        assert!(
            h.processes(VM).unwrap().is_empty(),
            "boot processes appear only once booted"
        );
    }
    let ok = h
        .wait_for(Duration::from_secs(5), |_| {
            prl(&h, &["exec", VM, "pgrep", "Runner.Listener"]).code == 0
        })
        .unwrap();
    assert!(ok, "guest never became ready");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A stop kills every guest process; the next boot starts the boot process again.
    prl(&h, &["stop", VM, "--kill"]);
    assert!(h.vm(VM).unwrap().procs.is_empty());
}

#[test]
fn create_register_clone_delete_work_on_real_bundle_directories() {
    let (d, h) = host();
    let ipsw = d.path().join("UniversalMac_14.6.1_23G93_Restore.ipsw");
    std::fs::write(&ipsw, b"ipsw").unwrap();
    let dst = d.path().join("Parallels");
    std::fs::create_dir(&dst).unwrap();
    let r = prl(
        &h,
        &[
            "create",
            VM,
            "-o",
            "macos",
            "--restore-image",
            ipsw.to_str().unwrap(),
            "--dst",
            dst.to_str().unwrap(),
        ],
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (
            0,
            "Creating the virtual machine...\nThe VM has been successfully created.\n"
        )
    );
    let bundle = dst.join(format!("{VM}.macvm"));
    assert!(bundle.join("config.pvs").is_file());
    let vm = h.vm(VM).unwrap();
    assert_eq!(
        (vm.state, vm.vm_type.as_str()),
        (VmState::Stopped, "APPLE_VZ_VM")
    );
    // First start installs macOS: packer polls parallels.log for this marker.
    prl(&h, &["start", VM]);
    let log = std::fs::read_to_string(bundle.join("parallels.log")).unwrap();
    assert!(log.contains("Installation succeeded"));
    prl(&h, &["stop", VM, "--kill"]);

    // Clone: copied bundle, new uuid and MAC, same guest files.
    h.write_guest_file(VM, "/etc/marker", b"m", 0o644).unwrap();
    let r = prl(&h, &["clone", VM, "--name", "copy"]);
    assert_eq!(
        r.stdout,
        format!("Clone the {VM} VM to VM copy...\nThe VM has been successfully cloned.\n")
    );
    let (a, b) = (h.vm(VM).unwrap(), h.vm("copy").unwrap());
    assert_ne!(a.uuid, b.uuid);
    assert_ne!(a.mac0(), b.mac0());
    assert_eq!(
        h.read_guest_file("copy", "/etc/marker").unwrap().as_deref(),
        Some(&b"m"[..])
    );

    // Unregister keeps files; register gives a new uuid unless --preserve-uuid.
    let r = prl(&h, &["unregister", VM]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "The VM has been successfully unregistered.\n")
    );
    assert_eq!(prl(&h, &["status", VM]).code, 255);
    assert!(bundle.is_dir());
    let r = prl(&h, &["register", bundle.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let re = h.vm(VM).unwrap();
    assert_ne!(re.uuid, a.uuid);
    assert_eq!(re.mac0(), a.mac0(), "register keeps the MAC");
    assert_eq!(re.src_uuid, a.src_uuid);
    // Registering rewrote config.pvs with the new uuid; --preserve-uuid keeps that one.
    let first = re.uuid.clone();
    prl(&h, &["unregister", VM]);
    prl(
        &h,
        &[
            "register",
            bundle.to_str().unwrap(),
            "--preserve-uuid",
            "--regenerate-src-uuid",
        ],
    );
    let re = h.vm(VM).unwrap();
    assert_eq!(re.uuid, first);
    assert_ne!(re.src_uuid, a.src_uuid);

    // Delete removes registration and files (stdin closed = confirmed).
    let r = prl(&h, &["delete", "copy"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (
            0,
            "Removing the VM...\nThe VM has been successfully removed.\n"
        )
    );
    assert!(!b.home.exists());
    let r = h.prlctl(exe(), &["delete", VM], Some(b"n\n")).unwrap();
    assert_eq!(r.code, 255, "answering n cancels");
    assert!(bundle.is_dir());
}

#[test]
fn set_changes_identity_hardware_and_devices() {
    let (_d, h) = host();
    h.add_vm("img").unwrap();
    let old_mac = h.vm("img").unwrap().mac0().unwrap().to_owned();
    let r = prl(
        &h,
        &[
            "set",
            "img",
            "--name",
            VM,
            "--cpus",
            "6",
            "--memsize",
            "12288",
            "--startup-view",
            "headless",
        ],
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "The VM has been successfully configured.\n")
    );
    let r = prl(&h, &["set", VM, "--device-set", "net0", "--mac", "auto"]);
    assert_eq!(r.code, 0);
    let vm = h.vm(VM).unwrap();
    assert!(
        r.stdout
            .starts_with("Configured net0 (+) type=shared mac=001C42"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .ends_with("\n\nThe VM has been successfully configured.\n")
    );
    assert_ne!(vm.mac0().unwrap(), old_mac);
    assert_eq!(
        (vm.cpus, vm.memsize_mb, vm.startup_view.as_str()),
        (6, 12288, "headless")
    );
    let r = prl(
        &h,
        &[
            "set",
            VM,
            "--device-set",
            "net0",
            "--type",
            "bridged",
            "--iface",
            "default",
        ],
    );
    assert!(
        r.stdout.contains("type=bridged iface='default'"),
        "{}",
        r.stdout
    );
    let r = prl(
        &h,
        &[
            "set",
            VM,
            "--device-add",
            "hdd",
            "--image",
            "/Users/ci/build_drive.hdd",
        ],
    );
    assert!(
        r.stdout
            .starts_with("Created hdd1 (+) sata:1 image='/Users/ci/build_drive.hdd'"),
        "{}",
        r.stdout
    );
    // `--isolate-vm off` turns sharing back on (PD 26.3.2): sharing switches come after it.
    for args in [
        &["set", VM, "--isolate-vm", "off"][..],
        &["set", VM, "--shf-host", "off"],
        &["set", VM, "--shf-host-defined", "off"],
        &["set", VM, "--description", "ROOT macOS 14"],
        &["set", VM, "--device-add", "net", "--type", "shared"],
    ] {
        assert_eq!(prl(&h, args).code, 0, "{args:?}");
    }
    let vm = h.vm(VM).unwrap();
    assert!(
        !vm.shf_host
            && vm.hdds.len() == 2
            && vm.nets.len() == 2
            && vm.description == "ROOT macOS 14"
    );
    // config.pvs follows, so a later register sees the new name.
    let cfg = std::fs::read_to_string(vm.home.join("config.pvs")).unwrap();
    assert!(cfg.contains(&format!("<VmName>{VM}</VmName>")) && cfg.contains("<Number>6</Number>"));
}

#[test]
fn a_locked_bundle_refuses_changes_with_access_denied() {
    let (_d, h) = host();
    h.add_vm(VM).unwrap();
    h.set_locked(VM, true).unwrap();
    let r = prl(&h, &["start", VM]);
    assert_eq!(r.code, 255);
    assert_eq!(
        r.stderr,
        "Failed to start the VM: Access denied. You do not have enough rights to use this virtual machine.\n"
    );
    assert_eq!(h.vm_state(VM).unwrap(), VmState::Stopped);
    assert!(
        prl(&h, &["set", VM, "--cpus", "2"])
            .stderr
            .contains("Access denied.")
    );
    assert!(prl(&h, &["delete", VM]).stderr.contains("Access denied."));
    // `list` still shows it.
    assert!(prl(&h, &["list", "-a"]).stdout.contains(VM));
    h.set_locked(VM, false).unwrap();
    assert_eq!(prl(&h, &["start", VM]).code, 0);
}

#[test]
fn a_missing_bundle_reads_invalid() {
    let (_d, h) = host();
    h.add_vm(VM).unwrap();
    std::fs::remove_file(h.vm(VM).unwrap().home.join("config.pvs")).unwrap();
    assert_eq!(
        prl(&h, &["list", "-a", "-o", "status", "--no-header"]).stdout,
        "invalid\n"
    );
}
