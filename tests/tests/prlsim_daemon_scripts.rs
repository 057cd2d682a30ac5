//! Every guest command the daemon sends, run through `fake-prlctl exec` the way it must be sent
//! to a real `prlctl` (each argv element single-quoted, joined with spaces), and — where the
//! old unquoted form breaks — the way it breaks: JIT delivery and its `stat -f "%Lp %Su"` check,
//! the ROOT and SPI busy probes, the image scrub, host-name reset, provisioning markers and
//! steps (`sh -c`, `sh -s` on stdin, `sudo -u`), and the runner install steps.

use std::path::Path;

use marble_tests::prlsim::{GuestProc, PrlRun, SimHost};

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fake-prlctl"))
}

const VM: &str = "macphsft01-SPI-VM-macOS-15";

fn running() -> (tempfile::TempDir, SimHost) {
    let dir = tempfile::tempdir().expect("test helper");
    let host = SimHost::create(dir.path()).expect("test helper");
    host.add_running_vm(VM).expect("test helper");
    (dir, host)
}

// Single-quote one argument for the guest shell: the daemon's own quoting.
use marbled::hypervisor::guest_cmd::quote as q;

/// `prlctl exec VM` with each element of `argv` quoted: the argv the guest must see.
fn exec_quoted(h: &SimHost, argv: &[String], stdin: Option<&[u8]>) -> PrlRun {
    let quoted: Vec<String> = argv.iter().map(|a| q(a)).collect();
    exec_raw(h, &quoted, stdin)
}

/// `prlctl exec VM` with `argv` appended verbatim (what the daemon did before).
fn exec_raw(h: &SimHost, argv: &[String], stdin: Option<&[u8]>) -> PrlRun {
    let mut all = vec!["exec", VM];
    all.extend(argv.iter().map(String::as_str));
    h.prlctl(exe(), &all, stdin).expect("test helper")
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn jit_delivery_and_its_owner_and_mode_check() {
    let (_d, h) = running();
    let path = "/var/run/marble/jitconfig";
    let secret = b"JIT-CONFIG-SECRET-0123456789";
    let deliver = marbled::ci::github::runner::deliver_argv(path);
    let stat = strs(&["/usr/bin/stat", "-f", "%Lp %Su", path]);

    let r = exec_quoted(&h, &deliver, Some(secret));
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{r:?}");
    assert_eq!(
        h.read_guest_file(VM, path).unwrap().as_deref(),
        Some(&secret[..])
    );
    assert_eq!(h.guest_file_mode(VM, path).unwrap(), Some(0o600));
    // The marker comes from the second exec, once the check in the guest holds.
    assert!(
        h.read_guest_file(VM, &format!("{path}.ready"))
            .unwrap()
            .is_none()
    );
    let r = exec_quoted(
        &h,
        &marbled::ci::github::runner::check_and_mark_argv(path),
        None,
    );
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{r:?}");
    assert!(
        h.read_guest_file(VM, &format!("{path}.ready"))
            .unwrap()
            .is_some()
    );
    let r = exec_quoted(&h, &stat, None);
    assert_eq!((r.code, r.stdout.as_str()), (0, "600 root\n"));

    // Unquoted, `stat -f %Lp %Su PATH` takes `%Su` for a file name.
    let r = exec_raw(&h, &stat, None);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stdout, "600\n");
    assert_eq!(r.stderr, "stat: %Su: stat: No such file or directory\n");
    // Unquoted, the delivery script loses `umask 077` to an inner `sh -c umask` (which prints
    // the mask) and writes the secret with the default mask before its chmod.
    let r = exec_raw(&h, &deliver, Some(secret));
    assert_eq!(r.stdout, "0022\n", "{r:?}");
}

fn add_java_agent(h: &SimHost, busy: bool) -> u32 {
    h.update(|st| {
        let vm = st.vms.iter_mut().find(|v| v.name == VM).expect("vm");
        let java = vm.spawn(
            "/usr/bin/java -jar /Users/jenkins/agent/remoting.jar -workDir /Users/jenkins/agent",
            0,
        );
        if busy {
            let pid = vm.next_pid;
            vm.next_pid += 1;
            vm.procs.push(GuestProc {
                pid,
                ppid: java,
                command: "/bin/sh -xe /Users/jenkins/workspace/job@tmp/jenkins1234.sh".into(),
                started_ms: 0,
                ends_ms: None,
            });
        }
        java
    })
    .expect("update")
}

#[test]
fn busy_probes_answer_idle_and_busy_when_quoted() {
    let (_d, h) = running();
    let probe = marbled::config::ProbeSection::default();
    // SPI: an idle agent (no child) is idle; the probe's own shells never match (BSD pgrep
    // excludes its ancestors).
    add_java_agent(&h, false);
    let r = exec_quoted(&h, &probe.spi, None);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (1, "", ""),
        "{r:?}"
    );
    h.remove_processes(VM, "remoting.jar").unwrap();
    add_java_agent(&h, true);
    let r = exec_quoted(&h, &probe.spi, None);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.ends_with(" sh\n"),
        "pgrep -l names the build step: {r:?}"
    );

    // ROOT: a Runner.Worker process is busy.
    let r = exec_quoted(&h, &probe.root, None);
    assert_eq!((r.code, r.stdout.as_str()), (1, ""));
    let pid = h
        .add_process(
            VM,
            "/Users/runner/actions-runner/bin/Runner.Worker spawnclient 107 110",
        )
        .unwrap();
    let r = exec_quoted(&h, &probe.root, None);
    assert_eq!(
        (r.code, r.stdout),
        (
            0,
            format!("{pid} /Users/runner/actions-runner/bin/Runner.Worker spawnclient 107 110\n")
        )
    );
    assert_eq!(exec_quoted(&h, &probe.ready, None).code, 0);
    h.add_process(VM, "/Users/runner/actions-runner/bin/Runner.Listener run")
        .unwrap();
    assert_eq!(exec_quoted(&h, &probe.ready_root, None).code, 0);
}

#[test]
fn the_unquoted_spi_probe_is_a_syntax_error_in_the_guest() {
    let (_d, h) = running();
    add_java_agent(&h, true);
    let probe = marbled::config::ProbeSection::default();
    let r = exec_raw(&h, &probe.spi, None);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(
        r.stderr,
        "sh: -c: line 1: syntax error near unexpected token `do'\n"
    );
}

#[test]
fn a_probe_sees_another_execs_shell_while_that_one_runs() {
    let (_d, h) = running();
    add_java_agent(&h, false);
    // Another exec whose command line holds the pattern is still running (sleeping in
    // simulated time): it is no ancestor of the probe's pgrep, so it matches, and its child
    // makes an idle agent look busy.
    let mut other = std::process::Command::new(exe())
        .args(["exec", VM, "/bin/sh", "-c", "'sleep 600' remoting.jar"])
        .env(marble_tests::prlsim::DIR_ENV, h.dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let appeared = h
        .wait_for(std::time::Duration::from_secs(20), |st| {
            st.vms[0].procs.iter().any(|p| p.command == "sleep 600")
        })
        .expect("wait");
    assert!(appeared);
    let probe = marbled::config::ProbeSection::default();
    let r = exec_quoted(&h, &probe.spi, None);
    let _ = other.kill();
    let _ = other.wait();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(" /bin/sh\n") || r.stdout.contains(" sh\n"),
        "{r:?}"
    );
}

#[test]
fn image_scrub_removes_the_planted_secrets_only_when_quoted() {
    let (_d, h) = running();
    let globs = marbled::images::config::ScrubConfig::default()
        .files
        .join(" ");
    let plant = |h: &SimHost| {
        h.write_guest_file(VM, "/Users/runner/.PAT", b"ghp_secret", 0o644)
            .unwrap();
        h.write_guest_file(VM, "/Users/sftnight/.zsh_history", b"history", 0o600)
            .unwrap();
        h.write_guest_file(VM, "/var/root/.bash_history", b"history", 0o600)
            .unwrap();
    };
    let scrub = strs(&["/bin/sh", "-c", &format!("rm -rfv {globs}; true")]);
    let check = strs(&["/bin/sh", "-c", &format!("ls -d {globs}; true")]);

    plant(&h);
    let r = exec_raw(&h, &scrub, None);
    assert_eq!(r.code, 0);
    assert!(
        h.read_guest_file(VM, "/Users/runner/.PAT")
            .unwrap()
            .is_some(),
        "unquoted, the inner `sh -c rm` gets no operands: {r:?}"
    );

    let r = exec_quoted(&h, &scrub, None);
    assert_eq!(r.code, 0, "{r:?}");
    let mut removed: Vec<&str> = r.stdout.lines().collect();
    removed.sort_unstable();
    assert_eq!(
        removed,
        [
            "/Users/runner/.PAT",
            "/Users/sftnight/.zsh_history",
            "/var/root/.bash_history"
        ]
    );
    assert!(h.files_containing(b"ghp_secret").unwrap().is_empty());
    let r = exec_quoted(&h, &check, None);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, ""),
        "nothing remains: {r:?}"
    );
}

#[test]
fn host_names_markers_and_provisioning_steps() {
    let (_d, h) = running();
    let n = q("2025-01-01-ROOT-VM-macOS-15");
    let reset = strs(&[
        "/bin/sh",
        "-c",
        &format!(
            "scutil --set ComputerName {n} && scutil --set HostName {n} && scutil --set LocalHostName {n}"
        ),
    ]);
    assert_eq!(exec_quoted(&h, &reset, None).code, 0);
    let r = exec_quoted(&h, &strs(&["scutil", "--get", "HostName"]), None);
    assert_eq!(r.stdout, "2025-01-01-ROOT-VM-macOS-15\n");

    let marker = marbled::provision::marker_path("build-disk");
    let test_e = strs(&["/bin/test", "-e", &marker]);
    assert_eq!(exec_quoted(&h, &test_e, None).code, 1);
    let write = format!(
        "mkdir -p {} && echo build-disk > {marker}",
        marbled::provision::MARKER_DIR
    );
    assert_eq!(
        exec_quoted(&h, &strs(&["/bin/sh", "-c", &write]), None).code,
        0
    );
    assert_eq!(exec_quoted(&h, &test_e, None).code, 0);

    let profile = marbled::provision::profile::Profile::parse(
        "[[step]]\nname = \"as-user\"\ncommand = \"mkdir -p ~/.ssh && chmod 700 ~/.ssh && id -un > ~/.ssh/who\"\nuser = \"sftnight\"\n",
        Path::new("/nonexistent"),
        Path::new("p.toml"),
    )
    .expect("profile");
    let (argv, stdin) = marbled::provision::profile::step_argv(&profile.steps[0]);
    let r = exec_quoted(&h, &argv, stdin.as_deref());
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        h.read_guest_file(VM, "/Users/sftnight/.ssh/who")
            .unwrap()
            .as_deref(),
        Some(&b"sftnight\n"[..])
    );
    // A script step travels on stdin to `sh -s`, its arguments after `--`.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s.sh"),
        "set -eu\ndisk=$1\necho \"disk=$disk args=$#\" > /tmp/step.out\ncat </dev/null\necho done >> /tmp/step.out\n",
    )
    .unwrap();
    let profile = marbled::provision::profile::Profile::parse(
        "[[step]]\nname = \"script\"\nscript = \"s.sh\"\nargs = [\"disk 4\", \"x\"]\n",
        dir.path(),
        &dir.path().join("p.toml"),
    )
    .expect("profile");
    let (argv, stdin) = marbled::provision::profile::step_argv(&profile.steps[0]);
    h.write_guest_file(VM, "/tmp/.keep", b"", 0o644).unwrap();
    let r = exec_quoted(&h, &argv, stdin.as_deref());
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        h.read_guest_file(VM, "/tmp/step.out").unwrap().as_deref(),
        Some(&b"disk=disk 4 args=2\ndone\n"[..])
    );
}

#[test]
fn runner_install_steps_run_in_order() {
    let (_d, h) = running();
    h.write_guest_file(VM, "/Users/sftnight/.PAT", b"ghp_old", 0o644)
        .unwrap();
    let profile = marbled::ci::runner_install_steps("sftnight", None).expect("steps");
    for step in &profile.steps {
        let (argv, stdin) = marbled::provision::profile::step_argv(step);
        let r = exec_quoted(&h, &argv, stdin.as_deref());
        assert_eq!(r.code, 0, "step {}: {r:?}", step.name);
    }
    assert!(
        h.read_guest_file(VM, "/Users/sftnight/.PAT")
            .unwrap()
            .is_none()
    );
    let script = marbled::ci::GUEST_SCRIPT_PATH;
    assert_eq!(h.guest_file_mode(VM, script).unwrap(), Some(0o755));
    assert_eq!(
        h.read_guest_file(VM, script).unwrap().as_deref(),
        Some(marbled::ci::GUEST_SCRIPT.as_bytes())
    );
    assert_eq!(
        h.guest_file_mode(VM, marbled::ci::GUEST_PLIST_PATH)
            .unwrap(),
        Some(0o644)
    );
    let r = exec_quoted(&h, &strs(&["/usr/bin/stat", "-f", "%Su:%Sg", script]), None);
    assert_eq!(r.stdout, "root:wheel\n");
}
