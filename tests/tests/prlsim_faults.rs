//! Fault injection, the invocation log, and concurrent invocations against one state dir.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use marble_tests::prlsim::{FaultKind, PrlRun, SimHost, VmState};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fake-prlctl"))
}

const VM: &str = "macphsft03-ROOT-VM-macOS-13";

fn host() -> (tempfile::TempDir, SimHost) {
    let dir = tempfile::tempdir().expect("test helper");
    let host = SimHost::create(dir.path()).expect("test helper");
    host.add_running_vm(VM).expect("test helper");
    (dir, host)
}

fn prl(h: &SimHost, args: &[&str]) -> PrlRun {
    h.prlctl(exe(), args, None).expect("test helper")
}

#[test]
fn missing_dir_env_is_unable_to_connect_exit_253() {
    let out = Command::new(exe())
        .args(["list", "-a"])
        .env_remove("MARBLE_PRLSIM_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(253));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("Unable to connect to Parallels Service")
    );
}

#[test]
fn stop_canceled_exits_255_and_the_vm_stops_anyway() {
    let (_d, h) = host();
    h.set_fault(Some(VM), FaultKind::StopCanceled { after_ms: 200 }, Some(1))
        .unwrap();
    let r = prl(&h, &["stop", VM]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (255, "Failed to stop the VM: Operation canceled\n")
    );
    let stopped = h
        .wait_for(Duration::from_secs(5), |st| {
            st.vms[0].state == VmState::Stopped
        })
        .unwrap();
    assert!(stopped);
    assert!(
        h.state().unwrap().faults.is_empty(),
        "a times(1) fault is used up"
    );
}

#[test]
fn graceful_stop_can_return_0_while_the_vm_keeps_running() {
    let (_d, h) = host();
    h.set_fault(None, FaultKind::StopNoop, None).unwrap();
    let r = prl(&h, &["stop", VM]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (
            0,
            "Stopping the VM...\nThe VM has been successfully stopped.\n"
        )
    );
    assert_eq!(h.vm_state(VM).unwrap(), VmState::Running);
    // --kill is not graceful and still works.
    assert_eq!(prl(&h, &["stop", VM, "--kill"]).code, 0);
    assert_eq!(h.vm_state(VM).unwrap(), VmState::Stopped);
}

#[test]
fn list_faults_garbage_and_login_failed() {
    let (_d, h) = host();
    h.set_fault(None, FaultKind::ListGarbage, Some(1)).unwrap();
    let r = prl(&h, &["list", "-a", "--json"]);
    assert_eq!(r.code, 0);
    assert!(
        serde_json::from_str::<serde_json::Value>(&r.stdout).is_err(),
        "not clean JSON"
    );
    let (start, end) = (r.stdout.find("[\n").unwrap(), r.stdout.rfind(']').unwrap());
    let v: serde_json::Value = serde_json::from_str(&r.stdout[start..=end]).unwrap();
    assert_eq!(v[0]["name"], VM);
    h.set_fault(None, FaultKind::LoginFailed, Some(1)).unwrap();
    let r = prl(&h, &["list", VM]);
    assert_eq!(r.code, 255);
    assert!(r.stderr.starts_with("Login failed:"));
    assert_eq!(prl(&h, &["list", VM]).code, 0);
}

#[test]
fn exec_session_error_fault_is_per_vm() {
    let (_d, h) = host();
    h.add_running_vm("other").unwrap();
    h.set_fault(Some(VM), FaultKind::ExecSessionError, None)
        .unwrap();
    assert_eq!(prl(&h, &["exec", VM, "true"]).code, 255);
    assert_eq!(prl(&h, &["exec", "other", "true"]).code, 0);
    h.clear_faults(Some(VM)).unwrap();
    assert_eq!(prl(&h, &["exec", VM, "true"]).code, 0);
}

#[test]
fn spurious_failure_reports_255_after_doing_the_work() {
    let (_d, h) = host();
    h.set_fault(
        None,
        FaultKind::SpuriousFailure {
            verb: "suspend".into(),
        },
        Some(1),
    )
    .unwrap();
    let r = prl(&h, &["suspend", VM]);
    assert_eq!(r.code, 255);
    assert!(r.stderr.contains("PrlJob_GetRetCode: Invalid argument."));
    assert_eq!(h.vm_state(VM).unwrap(), VmState::Suspended);
}

#[test]
fn slow_verbs_take_their_time() {
    let (_d, h) = host();
    h.set_fault(
        None,
        FaultKind::Slow {
            verb: "status".into(),
            ms: 300,
        },
        None,
    )
    .unwrap();
    let t = Instant::now();
    assert_eq!(prl(&h, &["status", VM]).code, 0);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

fn spawn(h: &SimHost, args: &[&str]) -> std::process::Child {
    Command::new(exe())
        .args(args)
        .env("MARBLE_PRLSIM_DIR", h.dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("test helper")
}

fn hang_logged(h: &SimHost, pid: u32) -> bool {
    h.wait_for(Duration::from_secs(5), |_| {
        h.invocations()
            .expect("test helper")
            .iter()
            .any(|i| i.pid == pid && i.exit.is_none())
    })
    .expect("test helper")
}

#[test]
fn a_hang_blocks_until_sigkill_without_blocking_other_calls() {
    use std::os::unix::process::ExitStatusExt;
    let (_d, h) = host();
    h.set_fault(
        Some(VM),
        FaultKind::Hang {
            verb: Some("stop".into()),
            ignore_sigterm: true,
        },
        Some(1),
    )
    .unwrap();
    let mut child = spawn(&h, &["stop", VM, "--kill"]);
    assert!(hang_logged(&h, child.id()), "hang marker with exit null");
    // Others still get answers: the hang does not hold the state lock.
    assert_eq!(prl(&h, &["status", VM]).code, 0);
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let died = h
        .wait_for(Duration::from_millis(400), |_| {
            child.try_wait().unwrap().is_some()
        })
        .unwrap();
    assert!(!died, "SIGTERM is ignored by this hang");
    kill(pid, Signal::SIGKILL).unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    assert_eq!(
        h.vm_state(VM).unwrap(),
        VmState::Running,
        "a hung stop did nothing"
    );
}

#[test]
fn an_oversized_exec_argv_hangs_like_pd_26_4() {
    let (_d, h) = host();
    let big = "x".repeat(4000);
    let mut child = spawn(&h, &["exec", VM, "echo", &big]);
    assert!(hang_logged(&h, child.id()));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn the_invocation_log_records_argv_and_exit_in_order() {
    let (_d, h) = host();
    h.clear_invocations().unwrap();
    prl(&h, &["list", "-a", "--json"]);
    prl(&h, &["exec", VM, "false"]);
    prl(&h, &["status", "nope"]);
    let log = h.invocations().unwrap();
    let got: Vec<(Vec<String>, Option<i32>)> =
        log.iter().map(|i| (i.argv.clone(), i.exit)).collect();
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            (s(&["list", "-a", "--json"]), Some(0)),
            (s(&["exec", VM, "false"]), Some(1)),
            (s(&["status", "nope"]), Some(255)),
        ]
    );
    assert!(log.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
}

#[test]
fn parallel_invocations_do_not_lose_updates() {
    let (_d, h) = host();
    let names: Vec<String> = (0..12)
        .map(|i| format!("macphsft03-ROOT-VM-macOS-{i}"))
        .collect();
    for n in &names {
        h.add_vm(n).unwrap();
    }
    std::thread::scope(|s| {
        for (i, n) in names.iter().enumerate() {
            let h = &h;
            s.spawn(move || {
                assert_eq!(
                    prl(h, &["set", n, "--description", &format!("d{i}")]).code,
                    0
                );
                assert_eq!(prl(h, &["start", n]).code, 0);
                assert_eq!(prl(h, &["list", "-a", "--json"]).code, 0);
            });
        }
    });
    let st = h.state().unwrap();
    for (i, n) in names.iter().enumerate() {
        let vm = &st.vms[st.find(n).unwrap()];
        assert_eq!(
            (vm.description.as_str(), vm.state),
            (&*format!("d{i}"), VmState::Running),
            "{n}"
        );
    }
    assert_eq!(h.argvs().unwrap().len(), names.len() * 3);
}
