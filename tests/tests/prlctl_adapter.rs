//! The production prlctl adapter (`marbled::hypervisor::Prlctl`) run against real processes:
//! tiny `#!/bin/sh` fakes written into a temp dir (fixture output, exit codes, hangs, 10 MB of
//! output, argv/env/stdin recorders), then the full simulator `fake-prlctl`.
//!
//! Nothing here mocks the adapter: every call forks a process through the same code path the
//! daemon uses.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use marble_proto::PowerState;
use marble_tests::prlsim::{ExecRule, FaultKind, SimHost, VmState};
use marbled::hypervisor::{Hypervisor, Prlctl, PrlctlConfig, PrlctlError, StopMode};

/// Upper bound on any single awaited call in these tests.
const CALL_BUDGET: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/prlctl-adapter")
        .join(name)
}

/// Write an executable `#!/bin/sh` script. The file is written by a child `sh`, so no
/// writable descriptor of it ever exists in this (multi-threaded) process, where a
/// concurrent fork could inherit it and make our exec fail with ETXTBSY.
#[track_caller]
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::io::Write;
    let path = dir.join(name);
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(&path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh to write the script");
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(format!("#!/bin/sh\n{body}\n").as_bytes())
        .expect("write script");
    assert!(child.wait().expect("wait sh").success());
    path
}

fn config(path: &Path) -> PrlctlConfig {
    PrlctlConfig {
        path: path.to_owned(),
        default_timeout: Duration::from_secs(20),
        start_timeout: Duration::from_secs(20),
        stop_timeout: Duration::from_secs(20),
        bulk_timeout: Duration::from_secs(20),
        exec_timeout_default: Duration::from_secs(20),
        ..PrlctlConfig::default()
    }
}

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(CALL_BUDGET, fut)
        .await
        .expect("call finished within the test budget")
}

/// Poll `cond` every 10 ms until it holds or `timeout` passes.
async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether `pid` is a live process (a zombie awaiting its reaper counts as gone).
fn alive(pid: i32) -> bool {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 is the state; the command in field 2 is parenthesised and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => true,
    }
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid")
}

// ---------------------------------------------------------------------------------------
// Fixture parsing through a real process.

#[tokio::test]
async fn list_all_parses_json_wrapped_in_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(
        dir.path(),
        "prlctl",
        &format!("cat '{}'", fixture("list_a_json_garbage.txt").display()),
    );
    let hv = Prlctl::new(config(&exe));
    let vms = within(hv.list_all()).await.unwrap();
    assert_eq!(vms.len(), 2);
    assert_eq!(vms[0].uuid, "8d66f605-e28d-412b-b3c9-028c316072c9");
    assert_eq!(vms[0].name, "macphsft01-ROOT-VM-macOS-14");
    assert_eq!(vms[0].power, PowerState::Running);
    assert_eq!(vms[1].name, "SPI node [x]");
    assert_eq!(vms[1].power, PowerState::Suspended);
}

#[tokio::test]
async fn list_all_falls_back_to_the_table_when_json_is_unusable() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(
        dir.path(),
        "prlctl",
        &format!(
            "case \"$*\" in\n  *--json*) echo 'this is {{ not json';;\n  'list -a') cat '{}';;\n  *) exit 9;;\nesac",
            fixture("list_a_table.txt").display()
        ),
    );
    let hv = Prlctl::new(config(&exe));
    let vms = within(hv.list_all()).await.unwrap();
    let names: Vec<_> = vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Clone_2 of VM macOS Mojave",
            "VM macOS Mojave",
            "macOS Catalina"
        ]
    );
    assert_eq!(vms[1].uuid, "edbe0c40-83dc-4505-8941-bac038897648");
    assert_eq!(vms[1].power, PowerState::Running);
}

#[tokio::test]
async fn info_and_snapshot_list_parse_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(
        dir.path(),
        "prlctl",
        &format!(
            "case \"$1\" in\n  list) cat '{}';;\n  snapshot-list) cat '{}';;\nesac",
            fixture("list_i_json_macos.json").display(),
            fixture("snapshot_list.json").display()
        ),
    );
    let hv = Prlctl::new(config(&exe));
    let d = within(hv.info("macOS")).await.unwrap();
    assert_eq!(d.uuid, "bd70007c-83b8-4642-b1d0-fa8ddfa0a4cf");
    assert_eq!(d.memory_mib, Some(8192));
    assert_eq!(d.cpus, Some(4));
    assert_eq!(d.tools_state.as_deref(), Some("not_installed"));
    let snaps = within(hv.snapshot_list("macOS")).await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].id, "{351b744b-3b1b-422c-957f-cfeae36b472d}");
    assert!(snaps[0].current);
}

#[tokio::test]
async fn empty_snapshot_list_output_means_no_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(dir.path(), "prlctl", "exit 0");
    let hv = Prlctl::new(config(&exe));
    assert_eq!(within(hv.snapshot_list("vm")).await.unwrap(), vec![]);
}

#[tokio::test]
async fn unparseable_info_is_a_parse_error_with_argv() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(dir.path(), "prlctl", "echo 'INFO'; echo 'Name: x'");
    let hv = Prlctl::new(config(&exe));
    let err = within(hv.info("x")).await.unwrap_err();
    assert!(matches!(err, PrlctlError::Parse { .. }), "{err:?}");
    assert_eq!(err.argv()[1..], ["list", "-i", "--json", "x"]);
}

// ---------------------------------------------------------------------------------------
// Failures, classification, exec status handling.

#[tokio::test]
async fn non_zero_exit_is_failed_with_stderr_tail_and_classification() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(
        dir.path(),
        "prlctl",
        "echo 'Starting the VM...'\n\
         echo 'Failed to get VM config: The virtual machine could not be found.' >&2\nexit 255",
    );
    let hv = Prlctl::new(config(&exe));
    let err = within(hv.start("ghost vm")).await.unwrap_err();
    match &err {
        PrlctlError::Failed {
            argv,
            status,
            stderr_tail,
        } => {
            assert_eq!(argv[0], exe.to_string_lossy());
            assert_eq!(argv[1..], ["start", "ghost vm"]);
            assert_eq!(*status, Some(255));
            assert_eq!(
                stderr_tail,
                "Failed to get VM config: The virtual machine could not be found."
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(err.is_not_found());
    assert!(!err.is_access_denied() && !err.is_timeout());
    assert!(err.to_string().contains("start ghost vm"));
}

#[tokio::test]
async fn missing_executable_is_a_spawn_error() {
    let dir = tempfile::tempdir().unwrap();
    let hv = Prlctl::new(config(&dir.path().join("no-such-prlctl")));
    let err = within(hv.list_all()).await.unwrap_err();
    assert!(matches!(err, PrlctlError::Spawn { .. }), "{err:?}");
    assert!(!err.is_not_found());
}

#[tokio::test]
async fn exec_passes_guest_status_through_and_flags_prlctl_side_255() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(
        dir.path(),
        "prlctl",
        "case \"$3\" in\n\
           \"'three'\") echo out; echo err >&2; exit 3;;\n\
           \"'guest255'\") echo 'guest script failed' >&2; exit 255;;\n\
           \"'session'\") echo 'Failed to execute the command: Unable to open new session in this virtual machine. Make sure your virtual machine has finished booting.' >&2; exit 255;;\n\
           \"'stopped'\") echo 'Unable to perform the operation because \"macOS\" is not started.' >&2; exit 255;;\n\
         esac",
    );
    let hv = Prlctl::new(config(&exe));
    let run = |cmd: &str| vec![cmd.to_owned()];

    let argv = run("three");
    let out = within(hv.exec("vm", &argv, None, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.as_str()),
        (3, "out\n", "err\n")
    );

    let argv = run("guest255");
    let out = within(hv.exec("vm", &argv, None, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.status, 255);

    let argv = run("session");
    let err = within(hv.exec("vm", &argv, None, Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert!(err.is_exec_session_unavailable(), "{err:?}");

    let argv = run("stopped");
    let err = within(hv.exec("vm", &argv, None, Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert!(err.is_not_running(), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// Process control: timeout + kill, output cap, concurrency cap.

#[tokio::test]
async fn hung_prlctl_times_out_and_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let grandchild_file = dir.path().join("grandchild");
    // A background helper holding stdout open, as a forked helper of prlctl would: killing
    // only the direct child would leave it, and a reader waiting for EOF.
    let exe = script(
        dir.path(),
        "prlctl",
        &format!(
            "sleep 1000 &\necho $! > '{}'\necho $$ > '{}'\nexec sleep 1000",
            grandchild_file.display(),
            pid_file.display()
        ),
    );
    let timeout = Duration::from_millis(500);
    let hv = Prlctl::new(PrlctlConfig {
        default_timeout: timeout,
        ..config(&exe)
    });
    let started = Instant::now();
    let err = within(hv.list_all()).await.unwrap_err();
    let took = started.elapsed();
    match &err {
        PrlctlError::Timeout { argv, after } => {
            assert_eq!(*after, timeout);
            assert_eq!(argv[1..], ["list", "-a", "--json"]);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(err.is_timeout());
    assert!(took >= timeout, "returned early: {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let (pid, grandchild) = (read_pid(&pid_file), read_pid(&grandchild_file));
    assert!(
        wait_until(Duration::from_secs(5), || !alive(pid) && !alive(grandchild)).await,
        "prlctl ({pid}) or its child ({grandchild}) survived the timeout"
    );
}

#[tokio::test]
async fn a_cancelled_call_kills_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let grandchild_file = dir.path().join("grandchild");
    let exe = script(
        dir.path(),
        "prlctl",
        &format!(
            "sleep 1000 &\necho $! > '{}'\necho $$ > '{}'\nexec sleep 1000",
            grandchild_file.display(),
            pid_file.display()
        ),
    );
    let hv = Prlctl::new(config(&exe));
    // The caller gives up long before the adapter's own 20 s timeout: the future is dropped.
    let outcome = tokio::time::timeout(Duration::from_millis(500), hv.list_all()).await;
    assert!(outcome.is_err(), "the fake cannot have answered");
    assert!(
        wait_until(Duration::from_secs(5), || pid_file.exists()
            && grandchild_file.exists())
        .await
    );
    let (pid, grandchild) = (read_pid(&pid_file), read_pid(&grandchild_file));
    assert!(
        wait_until(Duration::from_secs(5), || !alive(pid) && !alive(grandchild)).await,
        "prlctl ({pid}) or its child ({grandchild}) outlived the cancelled call"
    );
}

#[tokio::test]
async fn exec_timeout_uses_the_callers_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let exe = script(
        dir.path(),
        "prlctl",
        &format!("echo $$ > '{}'\nexec sleep 1000", pid_file.display()),
    );
    let hv = Prlctl::new(config(&exe));
    let started = Instant::now();
    let argv = vec!["true".to_owned()];
    let err = within(hv.exec("vm", &argv, Some(b"input"), Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid = read_pid(&pid_file);
    assert!(wait_until(Duration::from_secs(5), || !alive(pid)).await);
}

#[tokio::test]
async fn output_beyond_the_cap_is_drained_and_marked_truncated() {
    let dir = tempfile::tempdir().unwrap();
    // 10 MiB on stdout, then a marker on stderr and exit 0: the child only exits if its
    // whole stdout was read.
    let exe = script(
        dir.path(),
        "prlctl",
        "head -c 10485760 /dev/zero | tr '\\0' 'a'\necho done >&2\nexit 0",
    );
    let cap = 64 * 1024;
    let hv = Prlctl::new(PrlctlConfig {
        output_cap_bytes: cap,
        ..config(&exe)
    });
    let out = within(hv.run(&["list".to_owned()], None, Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(out.status, Some(0));
    assert_eq!(out.stdout.len(), cap);
    assert!(out.stdout.iter().all(|&b| b == b'a'));
    assert!(out.stdout_truncated);
    assert!(!out.stderr_truncated);
    assert_eq!(out.stderr_text(), "done\n");
}

#[tokio::test]
async fn concurrent_calls_are_capped_by_the_semaphore() {
    let dir = tempfile::tempdir().unwrap();
    let running = dir.path().join("running");
    std::fs::create_dir(&running).unwrap();
    let counts = dir.path().join("counts");
    // Each fake registers itself, records how many are registered, lingers, deregisters.
    let exe = script(
        dir.path(),
        "prlctl",
        &format!(
            "touch '{r}/'$$\nls '{r}' | wc -l >> '{c}'\nsleep 0.3\nrm '{r}/'$$\necho '[]'",
            r = running.display(),
            c = counts.display()
        ),
    );
    let hv = Arc::new(Prlctl::new(PrlctlConfig {
        max_concurrent: 2,
        ..config(&exe)
    }));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let hv = Arc::clone(&hv);
        tasks.push(tokio::spawn(async move { hv.list_all().await }));
    }
    for t in tasks {
        within(t).await.unwrap().unwrap();
    }
    let seen: Vec<u32> = std::fs::read_to_string(&counts)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(seen.len(), 6);
    let max = seen.iter().copied().max().unwrap();
    assert!(max <= 2, "{max} prlctl processes ran at once: {seen:?}");
    assert_eq!(max, 2, "calls did not overlap at all: {seen:?}");
}

#[tokio::test]
async fn a_third_exec_into_one_vm_waits_while_another_vm_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let running = dir.path().join("running");
    let counts = dir.path().join("counts");
    let release = dir.path().join("release");
    std::fs::create_dir(&running).unwrap();
    std::fs::create_dir(&counts).unwrap();
    // Each exec registers itself under its VM, records how many execs into that VM run now,
    // and (into vm-a only) holds its slot until the test creates `release`.
    let exe = script(
        dir.path(),
        "prlctl",
        &format!(
            "vm=$2\n\
             touch '{r}/'$vm.$$\n\
             ls '{r}' | grep -c \"^$vm\\.\" >> '{c}/'$vm\n\
             if [ \"$vm\" = vm-a ]; then while [ ! -e '{rel}' ]; do sleep 0.02; done; fi\n\
             rm '{r}/'$vm.$$",
            r = running.display(),
            c = counts.display(),
            rel = release.display(),
        ),
    );
    let hv = Arc::new(Prlctl::new(PrlctlConfig {
        max_concurrent: 4,
        max_exec_per_vm: 2,
        ..config(&exe)
    }));
    let started = |vm: &str| -> Vec<u32> {
        std::fs::read_to_string(counts.join(vm))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    };
    let exec = |vm: &'static str| {
        let hv = Arc::clone(&hv);
        tokio::spawn(async move {
            let argv = vec!["/usr/bin/true".to_owned()];
            hv.exec(vm, &argv, None, Duration::from_secs(20)).await
        })
    };
    let held: Vec<_> = (0..3).map(|_| exec("vm-a")).collect();
    assert!(
        wait_until(CALL_BUDGET, || started("vm-a").len() >= 2).await,
        "two execs into vm-a never started"
    );
    // The global cap (4) has room: an exec into another VM runs now and finishes.
    within(exec("vm-b")).await.unwrap().unwrap();
    assert_eq!(started("vm-b"), [1]);
    // Meanwhile the third exec into vm-a has not started: it waits for a slot of its VM.
    assert_eq!(
        started("vm-a").len(),
        2,
        "a third exec into one VM ran beside two others: {:?}",
        started("vm-a")
    );
    std::fs::write(&release, b"").unwrap();
    for t in held {
        within(t).await.unwrap().unwrap();
    }
    let seen = started("vm-a");
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|n| *n <= 2), "{seen:?}");
}

// ---------------------------------------------------------------------------------------
// argv, stdin and environment handling.

/// A fake that records argv (one per line), stdin and env, then prints `[]`.
fn recorder(dir: &Path) -> PathBuf {
    script(
        dir,
        "prlctl",
        &format!(
            "n=$(ls '{d}' | grep -c '^argv')\n\
             printf '%s\\n' \"$@\" > '{d}/argv.'$n\n\
             cat > '{d}/stdin.'$n\n\
             env > '{d}/env.'$n\n\
             echo '[]'",
            d = dir.join("rec").display()
        ),
    )
}

fn recorded(dir: &Path, what: &str, n: usize) -> String {
    std::fs::read_to_string(dir.join("rec").join(format!("{what}.{n}"))).expect("recorded file")
}

fn recorded_argv(dir: &Path, n: usize) -> Vec<String> {
    recorded(dir, "argv", n)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn shell_metacharacters_in_names_are_passed_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rec")).unwrap();
    let canary = dir.path().join("canary");
    let exe = recorder(dir.path());
    let hv = Prlctl::new(config(&exe));
    let evil = format!("a; rm -rf / $(touch {}) `x` 'q\" *", canary.display());
    within(hv.start(&evil)).await.unwrap();
    assert_eq!(
        recorded_argv(dir.path(), 0),
        ["start".to_owned(), evil.clone()]
    );
    let guest = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        "echo $HOME && ls *".to_owned(),
    ];
    within(hv.exec(&evil, &guest, None, Duration::ZERO))
        .await
        .unwrap();
    // The guest argv travels as ONE single-quoted command line (the guest shell re-parses
    // whatever prlctl exec is given; reference §4).
    assert_eq!(
        recorded_argv(dir.path(), 1),
        ["exec", evil.as_str(), "'sh' '-c' 'echo $HOME && ls *'"]
    );
    assert!(!canary.exists(), "a shell interpreted the VM name");
}

#[tokio::test]
async fn every_operation_builds_the_documented_argv() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rec")).unwrap();
    let exe = recorder(dir.path());
    let hv = Prlctl::new(config(&exe));
    let vm = "ROOT vm";
    within(hv.stop(vm, StopMode::Graceful)).await.unwrap();
    within(hv.stop(vm, StopMode::Kill)).await.unwrap();
    within(hv.stop(vm, StopMode::DropState)).await.unwrap();
    within(hv.resume(vm)).await.unwrap();
    within(hv.suspend(vm)).await.unwrap();
    within(hv.register("/Users/ci/VMs/x y.macvm", true))
        .await
        .unwrap();
    within(hv.register("/b.macvm", false)).await.unwrap();
    within(hv.unregister(vm)).await.unwrap();
    let set_args = vec![
        "--cpus".to_owned(),
        "4".to_owned(),
        "--description".to_owned(),
        "a b".to_owned(),
    ];
    within(hv.set(vm, &set_args)).await.unwrap();
    within(hv.clone_vm(vm, "new vm", Some("/Volumes/VMs")))
        .await
        .unwrap();
    within(hv.clone_vm(vm, "n2", None)).await.unwrap();
    within(hv.delete(vm)).await.unwrap();
    within(hv.snapshot_delete(vm, "{351b744b-3b1b-422c-957f-cfeae36b472d}"))
        .await
        .unwrap();
    within(hv.list_all()).await.unwrap();
    let expected: &[&[&str]] = &[
        &["stop", vm],
        &["stop", vm, "--kill"],
        &["stop", vm, "--drop-state"],
        &["resume", vm],
        &["suspend", vm],
        &[
            "register",
            "/Users/ci/VMs/x y.macvm",
            "--regenerate-src-uuid",
        ],
        &["register", "/b.macvm"],
        &["unregister", vm],
        &["set", vm, "--cpus", "4", "--description", "a b"],
        &["clone", vm, "--name", "new vm", "--dst", "/Volumes/VMs"],
        &["clone", vm, "--name", "n2"],
        &["delete", vm],
        &[
            "snapshot-delete",
            vm,
            "--id",
            "{351b744b-3b1b-422c-957f-cfeae36b472d}",
        ],
        &["list", "-a", "--json"],
    ];
    for (n, want) in expected.iter().enumerate() {
        assert_eq!(recorded_argv(dir.path(), n), *want, "call {n}");
        let stdin = recorded(dir.path(), "stdin", n);
        // Only delete gets input (its confirmation); everything else reads /dev/null.
        let want_stdin = if want[0] == "delete" { "y\n" } else { "" };
        assert_eq!(stdin, want_stdin, "stdin of call {n}");
    }
}

#[tokio::test]
async fn exec_stdin_is_written_then_closed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rec")).unwrap();
    let exe = recorder(dir.path());
    let hv = Prlctl::new(config(&exe));
    // Larger than a pipe buffer, so writing must overlap with the child's reading.
    let secret: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let argv = vec!["/bin/bash".to_owned(), "-s".to_owned()];
    let out = within(hv.exec("vm", &argv, Some(&secret), Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.status, 0);
    assert_eq!(recorded(dir.path(), "stdin", 0).as_bytes(), &secret[..]);
}

/// A fake with real prlctl's exec semantics (reference §4): the words after `exec VM` are
/// joined with spaces and the line is run by a shell ("the guest" is this machine).
fn joining_prlctl(dir: &Path) -> PathBuf {
    script(
        dir,
        "prlctl",
        "[ \"$1\" = exec ] || { echo \"fake prlctl: exec only\" >&2; exit 255; }\n\
         shift 2\n\
         exec /bin/sh -c \"$*\"",
    )
}

/// Run `args` through `printf '%s\0'` in the joining fake's guest; the words it printed.
async fn guest_words(hv: &Prlctl, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["printf".to_owned(), "%s\\0".to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let out = within(hv.exec("vm", &argv, None, Duration::from_secs(10)))
        .await
        .expect("exec in the joining fake");
    assert_eq!(out.status, 0, "{out:?}");
    let mut words: Vec<String> = out.stdout.split('\0').map(str::to_owned).collect();
    assert_eq!(words.pop().as_deref(), Some(""), "{out:?}");
    words
}

#[tokio::test]
async fn exec_argv_arrives_intact_through_the_guest_shell() {
    let dir = tempfile::tempdir().unwrap();
    let hv = Prlctl::new(config(&joining_prlctl(dir.path())));
    let canary = dir.path().join("canary");
    let touch = format!("touch {}", canary.display());
    let args = [
        "two words",
        "it's",
        "say \"hi\"",
        "$HOME",
        "`id`",
        &format!("; {touch}"),
        &format!("$({touch})"),
        "*",
        "line\nbreak",
        "",
        "naïve 日本",
        "%Lp %Su",
    ];
    assert_eq!(guest_words(&hv, &args).await, args);
    assert!(
        !canary.exists(),
        "an argument ran as shell code in the guest"
    );
    // A script for `sh -c` keeps its words, and its positional parameters stay data.
    let argv: Vec<String> = [
        "/bin/sh",
        "-c",
        "printf '%s|' \"$@\"; exit 3",
        "sh",
        "a b",
        "$c",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let out = within(hv.exec("vm", &argv, None, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!((out.status, out.stdout.as_str()), (3, "a b|$c|"));
}

#[tokio::test]
async fn a_command_line_too_long_for_argv_goes_on_stdin_to_sh() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rec")).unwrap();
    let rec = Prlctl::new(config(&recorder(dir.path())));
    let long = "x".repeat(3 * 4096);
    let argv = vec!["echo".to_owned(), long.clone()];
    within(rec.exec("vm", &argv, None, Duration::from_secs(10)))
        .await
        .unwrap();
    // Nothing long in prlctl's argv (it would hang above ~3.9 KB, PD 26.4): the line is
    // a script for `/bin/sh -s`, its own stdin closed.
    assert_eq!(
        recorded_argv(dir.path(), 0),
        ["exec", "vm", "'/bin/sh' '-s'"]
    );
    assert_eq!(
        recorded(dir.path(), "stdin", 0),
        format!("'echo' '{long}' </dev/null\n")
    );
    // And it runs the same in a guest shell.
    let hv = Prlctl::new(config(&joining_prlctl(dir.path())));
    let out = within(hv.exec("vm", &argv, None, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.stdout, format!("{long}\n"));
    // With stdin of its own a long line cannot be moved: refused before prlctl runs.
    let err = within(rec.exec("vm", &argv, Some(b"data"), Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert!(matches!(err, PrlctlError::CommandTooLong { .. }), "{err:?}");
}

/// Marker telling [`env_child_probe`] it runs inside [`environment_is_cleared_and_secrets_do_not_reach_prlctl`].
const ENV_PROBE_DIR: &str = "MARBLE_ADAPTER_ENV_PROBE_DIR";

#[test]
fn environment_is_cleared_and_secrets_do_not_reach_prlctl() {
    // Setting a variable in this process would need `unsafe` (and races other test
    // threads), so the probe runs in a fresh copy of this test binary with the secret set.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "env_child_probe",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_PROBE_DIR, dir.path())
        .env("AWS_SECRET_ACCESS_KEY", "sekrit-aws-value")
        .env("MARBLE_S3_TOKEN", "sekrit-token")
        .env("HOME", "/Users/marble-ci")
        .env("USER", "marble-ci")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "probe failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dir.path().join("probe-done").exists(),
        "the probe did not run: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn env_child_probe() {
    let Some(base) = std::env::var_os(ENV_PROBE_DIR) else {
        return; // Only meaningful inside the test above.
    };
    let base = PathBuf::from(base);
    std::fs::create_dir(base.join("rec")).unwrap();
    let exe = recorder(&base);
    let mut cfg = config(&exe);
    cfg.env
        .push(("MARBLE_PRLSIM_DIR".into(), "/tmp/sim".into()));
    let hv = Prlctl::new(cfg);
    within(hv.list_all()).await.unwrap();
    let env = recorded(&base, "env", 0);
    let vars: Vec<(&str, &str)> = env.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    assert_eq!(get("PATH"), Some(marbled::hypervisor::prlctl::DEFAULT_PATH));
    assert_eq!(get("HOME"), Some("/Users/marble-ci"));
    assert_eq!(get("USER"), Some("marble-ci"));
    assert_eq!(get("MARBLE_PRLSIM_DIR"), Some("/tmp/sim"));
    assert!(
        !env.contains("sekrit"),
        "secret leaked into prlctl's env:\n{env}"
    );
    assert_eq!(get("AWS_SECRET_ACCESS_KEY"), None);
    assert_eq!(get(ENV_PROBE_DIR), None, "the environment was not cleared");
    std::fs::write(base.join("probe-done"), b"ok").unwrap();
}

// ---------------------------------------------------------------------------------------
// Against the prlctl simulator.

fn sim() -> (tempfile::TempDir, SimHost, Prlctl) {
    let dir = tempfile::tempdir().expect("test helper: tempdir");
    let host = SimHost::create(dir.path()).expect("test helper: sim host");
    let (k, v) = host.env();
    let mut cfg = config(Path::new(env!("CARGO_BIN_EXE_fake-prlctl")));
    cfg.env
        .push((k.to_owned(), v.to_string_lossy().into_owned()));
    (dir, host, Prlctl::new(cfg))
}

#[tokio::test]
async fn sim_list_start_exec_stop() {
    let (_d, host, hv) = sim();
    let uuid = host.add_vm("macphsft01-ROOT-VM-macOS-14").unwrap();
    host.add_vm("SPI node 1").unwrap();

    let vms = within(hv.list_all()).await.unwrap();
    assert_eq!(vms.len(), 2);
    let root = vms.iter().find(|v| v.uuid == uuid).expect("listed by uuid");
    assert_eq!(root.name, "macphsft01-ROOT-VM-macOS-14");
    assert_eq!(root.power, PowerState::Stopped);
    assert!(vms.iter().any(|v| v.name == "SPI node 1"));

    // Address by braced upper-case UUID, as prlctl accepts.
    within(hv.start(&format!("{{{}}}", uuid.to_uppercase())))
        .await
        .unwrap();
    assert_eq!(host.vm_state(&uuid).unwrap(), VmState::Running);
    let info = within(hv.info(&uuid)).await.unwrap();
    assert_eq!(info.name, "macphsft01-ROOT-VM-macOS-14");
    assert_eq!(info.state, "running");

    let argv = vec!["echo".to_owned(), "hello".to_owned()];
    let out = within(hv.exec(&uuid, &argv, None, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!((out.status, out.stdout.as_str()), (0, "hello\n"));
    let argv = vec!["cat".to_owned()];
    let out = within(hv.exec(&uuid, &argv, Some(b"from stdin"), Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.stdout, "from stdin");
    let argv = vec!["false".to_owned()];
    let out = within(hv.exec(&uuid, &argv, None, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.status, 1);

    within(hv.stop(&uuid, StopMode::Graceful)).await.unwrap();
    assert_eq!(host.vm_state(&uuid).unwrap(), VmState::Stopped);
    let vms = within(hv.list_all()).await.unwrap();
    assert!(vms.iter().all(|v| v.power == PowerState::Stopped));
}

#[tokio::test]
async fn sim_errors_are_classified() {
    let (_d, host, hv) = sim();
    let err = within(hv.start("no such vm")).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = within(hv.info("no such vm")).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");

    let vm = "locked-vm";
    host.add_vm(vm).unwrap();
    let argv = vec!["true".to_owned()];
    let err = within(hv.exec(vm, &argv, None, Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert!(err.is_not_running(), "{err:?}");
    host.set_locked(vm, true).unwrap();
    let err = within(hv.start(vm)).await.unwrap_err();
    assert!(err.is_access_denied(), "{err:?}");
    host.set_locked(vm, false).unwrap();

    within(hv.start(vm)).await.unwrap();
    let err = within(hv.start(vm)).await.unwrap_err();
    assert!(err.is_not_stopped(), "{err:?}");

    host.set_fault(Some(vm), FaultKind::ExecSessionError, Some(1))
        .unwrap();
    let err = within(hv.exec(vm, &argv, None, Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert!(err.is_exec_session_unavailable(), "{err:?}");
    host.add_exec_rule(
        vm,
        ExecRule::contains("guest-fails").stderr("boom\n").exit(255),
    )
    .unwrap();
    let argv = vec!["guest-fails".to_owned()];
    let out = within(hv.exec(vm, &argv, None, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.status, 255, "a guest's own 255 is not an adapter error");
}

#[tokio::test]
async fn sim_stop_canceled_is_reported_and_state_is_polled() {
    let (_d, host, hv) = sim();
    let uuid = host.add_running_vm("vm").unwrap();
    host.set_fault(None, FaultKind::StopCanceled { after_ms: 200 }, Some(1))
        .unwrap();
    let err = within(hv.stop("vm", StopMode::Graceful)).await.unwrap_err();
    assert!(err.is_operation_canceled(), "{err:?}");
    // What the scheduler does: poll the listing until the VM is really stopped.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let vms = within(hv.list_all()).await.unwrap();
        if vms
            .iter()
            .any(|v| v.uuid == uuid && v.power == PowerState::Stopped)
        {
            break;
        }
        assert!(Instant::now() < deadline, "vm never stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sim_garbage_listing_and_snapshots() {
    let (_d, host, hv) = sim();
    let uuid = host.add_vm("snap vm").unwrap();
    host.set_fault(None, FaultKind::ListGarbage, Some(1))
        .unwrap();
    let vms = within(hv.list_all()).await.unwrap();
    assert_eq!(vms.len(), 1);
    assert_eq!(vms[0].uuid, uuid);

    assert_eq!(within(hv.snapshot_list(&uuid)).await.unwrap(), vec![]);
    let args: Vec<String> = ["snapshot", "snap vm", "-n", "clean"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    within(hv.run_ok(&args, None, Duration::from_secs(10)))
        .await
        .unwrap();
    let snaps = within(hv.snapshot_list("snap vm")).await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].name, "clean");
    within(hv.snapshot_delete("snap vm", &snaps[0].id))
        .await
        .unwrap();
    assert_eq!(within(hv.snapshot_list("snap vm")).await.unwrap(), vec![]);
}

#[tokio::test]
async fn sim_version_and_status() {
    let (_d, host, hv) = sim();
    host.add_vm("Windows 11").unwrap();
    let v = within(hv.version()).await.unwrap();
    assert!(v.major >= 18, "{v}");
    assert_eq!(
        within(hv.status("Windows 11")).await.unwrap(),
        marbled::hypervisor::parse::VmStatus::Exists(PowerState::Stopped)
    );
}

/// Verbs of the simulator's invocation log, in order.
fn verbs(host: &SimHost) -> Vec<String> {
    host.argvs()
        .expect("test helper: invocation log")
        .into_iter()
        .filter_map(|a| a.first().cloned())
        .collect()
}

#[tokio::test]
async fn sim_a_transient_listing_failure_is_retried_and_a_lasting_one_is_bounded() {
    let (_d, host, hv) = sim();
    host.add_vm("vm").unwrap();
    host.set_fault(None, FaultKind::LoginFailed, Some(1))
        .unwrap();
    let vms = within(hv.list_all()).await.unwrap();
    assert_eq!(vms.len(), 1, "the retry's listing");
    assert_eq!(verbs(&host), ["list", "list"]);

    host.clear_invocations().unwrap();
    host.set_fault(None, FaultKind::LoginFailed, None).unwrap();
    let err = within(hv.list_all()).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(
        verbs(&host).len(),
        marbled::hypervisor::prlctl::RETRY_ATTEMPTS as usize,
        "bounded: {:?}",
        verbs(&host)
    );
}

#[tokio::test]
async fn sim_a_start_that_worked_but_failed_spuriously_is_not_run_twice() {
    let (_d, host, hv) = sim();
    host.add_vm("vm").unwrap();
    // PrlJob_GetRetCode after the work is done (seen on real hosts): re-list, do not retry.
    host.set_fault(
        Some("vm"),
        FaultKind::SpuriousFailure {
            verb: "start".into(),
        },
        Some(1),
    )
    .unwrap();
    within(hv.start("vm")).await.unwrap();
    assert_eq!(host.vm_state("vm").unwrap(), VmState::Running);
    assert_eq!(verbs(&host), ["start", "list"], "one start, then a look");

    // Same for a stop.
    host.clear_invocations().unwrap();
    host.set_fault(
        Some("vm"),
        FaultKind::SpuriousFailure {
            verb: "stop".into(),
        },
        Some(1),
    )
    .unwrap();
    within(hv.stop("vm", StopMode::Kill)).await.unwrap();
    assert_eq!(host.vm_state("vm").unwrap(), VmState::Stopped);
    assert_eq!(verbs(&host), ["stop", "list"]);
}

#[tokio::test]
async fn sim_an_orphaned_start_in_the_inherited_intent_log_is_waited_for_before_listing() {
    use std::os::unix::process::CommandExt;
    let (dir, host, _) = sim();
    host.add_vm("vm").unwrap();
    host.set_fault(
        None,
        FaultKind::Slow {
            verb: "start".into(),
            ms: 1500,
        },
        Some(1),
    )
    .unwrap();
    // What a killed daemon leaves: its `prlctl start` still running in its own group, and
    // the intent, with that pid, in the log next to its state file.
    let exe = env!("CARGO_BIN_EXE_fake-prlctl");
    let (k, v) = host.env();
    let mut orphan = std::process::Command::new(exe)
        .args(["start", "vm"])
        .env(k, &v)
        .process_group(0)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let orphan_pid = orphan.id();
    // Reaped as init reaps a real orphan (a zombie still counts as its group).
    let reaped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reaper = {
        let reaped = Arc::clone(&reaped);
        std::thread::spawn(move || {
            orphan.wait().unwrap();
            reaped.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let log_path = dir.path().join("state.bin.intents");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let intents = serde_json::json!({"version": 1, "intents": [{
        "verb": "start", "vm": "vm", "since_ms": now, "deadline_ms": now + 20_000,
        "pid": orphan_pid
    }]});
    std::fs::write(&log_path, intents.to_string()).unwrap();

    let mut cfg = config(Path::new(exe));
    cfg.env
        .push((k.to_owned(), host.dir().to_string_lossy().into_owned()));
    let log = marbled::hypervisor::prlctl::IntentLog::shared(&log_path);
    let hv = Prlctl::new(cfg).with_intent_log(log);
    assert_eq!(hv.unresolved().len(), 1, "{:?}", hv.unresolved());
    assert!(
        hv.unresolved()[0].starts_with("start vm (pid "),
        "{:?}",
        hv.unresolved()
    );

    // The first listing waits for the orphan, so it never reports the VM stopped.
    let vms = within(hv.list_all()).await.unwrap();
    // (The orphan sleeps 1.5 s before it touches the VM: a listing that did not wait for
    // it says "stopped".)
    assert_eq!(
        vms[0].power,
        PowerState::Running,
        "listed before the orphan was done"
    );
    reaper.join().unwrap();
    assert!(reaped.load(std::sync::atomic::Ordering::SeqCst));
    assert!(hv.unresolved().is_empty());
    let reread: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&log_path).unwrap()).unwrap();
    assert_eq!(
        reread["intents"],
        serde_json::json!([]),
        "resolved intents are cleared"
    );
}
