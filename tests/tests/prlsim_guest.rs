//! The scripted guest behind `fake-prlctl exec`: utilities with real exit codes, stdin to a
//! root-only file, the process table as pgrep/ps see it (the exec's own shells included, BSD
//! pgrep's ancestor rule), and scripted rules.

use std::path::Path;

use marble_tests::prlsim::{ExecRule, PrlRun, SimHost};

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fake-prlctl"))
}

const VM: &str = "macphsft02-SPI-VM-macOS-15";

fn running() -> (tempfile::TempDir, SimHost) {
    let dir = tempfile::tempdir().expect("test helper");
    let host = SimHost::create(dir.path()).expect("test helper");
    host.add_running_vm(VM).expect("test helper");
    (dir, host)
}

// Single-quote one argument for the guest shell: the daemon's own quoting.
use marbled::hypervisor::guest_cmd::quote as q;

fn exec(h: &SimHost, cmd: &[&str]) -> PrlRun {
    let mut args = vec!["exec", VM];
    args.extend_from_slice(cmd);
    h.prlctl(exe(), &args, None).expect("test helper")
}

#[test]
fn a_secret_sent_on_stdin_lands_only_in_a_root_only_file() {
    let (_d, h) = running();
    let secret = b"jitconfig-eyJzZWNyZXQiOiJ4In0=";
    // Unquoted, `sh -c umask 077` runs `umask` alone (printing the mask) and the `cat`
    // runs in the outer shell with the default mask: the secret is world-readable.
    let r = h
        .prlctl(
            exe(),
            &[
                "exec",
                VM,
                "/bin/sh",
                "-c",
                "umask 077; cat > /var/root/.runner_jit",
            ],
            Some(secret),
        )
        .unwrap();
    assert_eq!((r.code, r.stdout.as_str()), (0, "0022\n"));
    assert_eq!(
        h.guest_file_mode(VM, "/var/root/.runner_jit").unwrap(),
        Some(0o644)
    );
    assert_eq!(exec(&h, &["rm", "/var/root/.runner_jit"]).code, 0);
    let r = h
        .prlctl(
            exe(),
            &[
                "exec",
                VM,
                "/bin/sh",
                "-c",
                &q("umask 077; cat > /var/root/.runner_jit"),
            ],
            Some(secret),
        )
        .unwrap();
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    assert_eq!(
        h.read_guest_file(VM, "/var/root/.runner_jit")
            .unwrap()
            .as_deref(),
        Some(&secret[..])
    );
    assert_eq!(
        h.guest_file_mode(VM, "/var/root/.runner_jit").unwrap(),
        Some(0o600)
    );
    // Nothing else under the host dir holds it: not the state, not the invocation log.
    let hits = h.files_containing(secret).unwrap();
    assert_eq!(
        hits,
        vec![h.guest_path(VM, "/var/root/.runner_jit").unwrap()]
    );
    let logged = std::fs::read_to_string(h.dir().join("invocations.jsonl")).unwrap();
    assert!(logged.contains("umask 077; cat > /var/root/.runner_jit"));

    // tee writes with the default umask.
    let r = h
        .prlctl(
            exe(),
            &["exec", VM, "tee /etc/runner.env > /dev/null"],
            Some(b"A=1\n"),
        )
        .unwrap();
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
    assert_eq!(
        h.guest_file_mode(VM, "/etc/runner.env").unwrap(),
        Some(0o644)
    );
    assert_eq!(exec(&h, &["chmod", "600", "/etc/runner.env"]).code, 0);
    assert_eq!(
        h.guest_file_mode(VM, "/etc/runner.env").unwrap(),
        Some(0o600)
    );
}

#[test]
fn file_builtins_have_shell_exit_codes() {
    let (_d, h) = running();
    assert_eq!(exec(&h, &["test", "-e", "/var/root/x"]).code, 1);
    assert_eq!(exec(&h, &["mkdir", "-p", "/opt/runner/work"]).code, 0);
    assert_eq!(exec(&h, &["test", "-d", "/opt/runner/work"]).code, 0);
    assert_eq!(
        exec(&h, &["echo hi > /opt/runner/f && cat /opt/runner/f"]).stdout,
        "hi\n"
    );
    assert_eq!(exec(&h, &["test", "-f", "/opt/runner/f"]).code, 0);
    assert_eq!(
        exec(&h, &["rm", "-f", "/opt/runner/f", "/opt/runner/none"]).code,
        0
    );
    let r = exec(&h, &["cat", "/opt/runner/f"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "cat: /opt/runner/f: No such file or directory\n")
    );
    assert_eq!(exec(&h, &["false || echo fallback"]).stdout, "fallback\n");
    assert_eq!(exec(&h, &["true && false"]).code, 1);
    assert_eq!(exec(&h, &["id", "-u"]).stdout, "0\n");
    assert_eq!(
        h.prlctl(exe(), &["exec", VM, "--current-user", "id", "-u"], None)
            .unwrap()
            .stdout,
        "501\n"
    );
    assert_eq!(
        exec(&h, &["scutil", "--set", "HostName", "macphsft02-spi"]).code,
        0
    );
    assert_eq!(
        exec(&h, &["scutil", "--get", "HostName"]).stdout,
        "macphsft02-spi\n"
    );
    let r = exec(&h, &["brew", "install", "x"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (127, "sh: brew: command not found\n")
    );
    assert_eq!(exec(&h, &["exit 3"]).code, 3);
}

#[test]
fn pgrep_and_ps_see_the_scripted_processes() {
    let (_d, h) = running();
    let r = exec(&h, &["pgrep", "-f", "Runner.Worker"]);
    assert_eq!((r.code, r.stdout.as_str()), (1, ""));
    let pid = h
        .add_process(
            VM,
            "/Users/runner/actions-runner/bin/Runner.Worker spawnclient 107 110",
        )
        .unwrap();
    h.add_process(
        VM,
        "java -jar /Users/jenkins/remoting.jar -workDir /Users/jenkins",
    )
    .unwrap();
    let r = exec(&h, &["pgrep", "-f", "Runner.Worker"]);
    assert_eq!((r.code, r.stdout), (0, format!("{pid}\n")));
    assert_eq!(exec(&h, &["pgrep", "-x", "Runner.Worker"]).code, 0);
    assert_eq!(exec(&h, &["pgrep", "-x", "Runner"]).code, 1);
    assert_eq!(
        exec(&h, &["pgrep", "-f", "'remoting.jar|agent.jar'"]).code,
        0
    );
    // Unquoted, `|` is a pipe in the guest shell.
    let r = exec(&h, &["pgrep", "-f", "remoting.jar|agent.jar"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (127, "sh: agent.jar: command not found\n")
    );
    let ps = exec(&h, &["ps", "-axo", "pid,ppid,etime,command"]).stdout;
    let mut lines = ps.lines();
    assert_eq!(lines.next(), Some("  PID  PPID ELAPSED COMMAND"));
    assert!(
        ps.contains(&format!(
            "{pid:>5}     1   00:00 /Users/runner/actions-runner/bin/Runner.Worker"
        )),
        "{ps}"
    );
    assert!(
        exec(&h, &["ps", "-ef"])
            .stdout
            .starts_with("  UID   PID  PPID   C STIME   TTY           TIME CMD\n")
    );
    // The exec's own shell (`sh -c ps -axo command | grep -c remoting.jar`) is in the table
    // too: the classic `ps | grep` self-match.
    assert_eq!(
        exec(&h, &["ps -axo command | grep -c remoting.jar"]).stdout,
        "2\n"
    );
    assert_eq!(exec(&h, &["pkill", "-f", "remoting.jar"]).code, 0);
    assert_eq!(h.processes(VM).unwrap().len(), 1);
}

#[test]
fn scripted_rules_win_over_builtins_and_can_start_processes() {
    let (_d, h) = running();
    h.add_exec_rule(
        VM,
        ExecRule::contains("launchctl kickstart")
            .stdout("started\n")
            .spawns("/Users/runner/bin/Runner.Listener run"),
    )
    .unwrap();
    h.add_exec_rule(VM, ExecRule::exact("id -u").stdout("77\n").exit(4).times(1))
        .unwrap();
    h.add_exec_rule(VM, ExecRule::contains("flaky").session_error())
        .unwrap();
    let r = exec(
        &h,
        &[
            "launchctl",
            "kickstart",
            "-k",
            "system/ch.cern.marble.runner",
        ],
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "started\n"));
    assert_eq!(exec(&h, &["pgrep", "Runner.Listener"]).code, 0);
    let r = exec(&h, &["id", "-u"]);
    assert_eq!((r.code, r.stdout.as_str()), (4, "77\n"));
    assert_eq!(
        exec(&h, &["id", "-u"]).stdout,
        "0\n",
        "a times(1) rule is used up"
    );
    let r = exec(&h, &["flaky"]);
    assert_eq!(r.code, 255);
    assert!(r.stderr.starts_with("Unable to open new session"));
}

#[test]
fn exec_is_refused_for_isolated_vms_and_without_tools() {
    let (_d, h) = running();
    h.set_isolated(VM, true).unwrap();
    assert_eq!(exec(&h, &["true"]).code, 255);
    h.set_isolated(VM, false).unwrap();
    h.set_tools_state(VM, "not_installed").unwrap();
    assert_eq!(exec(&h, &["true"]).code, 255);
    h.set_tools_state(VM, "installed").unwrap();
    assert_eq!(exec(&h, &["true"]).code, 0);
}

#[test]
fn pgrep_excludes_itself_and_its_ancestors_unless_dash_a() {
    let (_d, h) = running();
    // The pattern is in the command line of the exec's shell and of the inner shell, both
    // ancestors of pgrep: BSD pgrep skips them.
    let r = exec(
        &h,
        &["/bin/sh", "-c", &q("/usr/bin/pgrep -f marker-7; echo $?")],
    );
    assert_eq!(r.stdout, "1\n", "{r:?}");
    // With -a they match: the exec's shell (`sh -c '/bin/sh' …`) and the inner `/bin/sh -c …`.
    let r = exec(
        &h,
        &[&q("/bin/sh"), "-c", &q("/usr/bin/pgrep -alf marker-7")],
    );
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert!(
        lines[0].ends_with(" sh -c '/bin/sh' -c '/usr/bin/pgrep -alf marker-7'"),
        "{r:?}"
    );
    assert!(
        lines[1].ends_with(" /bin/sh -c /usr/bin/pgrep -alf marker-7"),
        "{r:?}"
    );
    // A command substitution is a child of the shell (a fork with the shell's command line),
    // and the command inside it is that subshell's child.
    let r = exec(&h, &["echo $$; echo $(/usr/bin/pgrep -alP $$)"]);
    let mut lines = r.stdout.lines();
    let shell = lines.next().unwrap_or_default().to_owned();
    let child = lines.next().unwrap_or_default();
    assert!(child.ends_with(" sh"), "{r:?}");
    let state = h.state().unwrap();
    assert!(
        state.vms[0]
            .procs
            .iter()
            .all(|p| p.pid.to_string() != shell),
        "the exec's processes are gone once it ended"
    );
    // Without -a, pgrep -P $$ from inside that subshell finds nothing: its only other
    // child is pgrep's own parent.
    let r = exec(&h, &["x=$(/usr/bin/pgrep -lP $$); echo \"[$x] $?\""]);
    assert_eq!(r.stdout, "[] 1\n", "{r:?}");
}

#[test]
fn a_shell_that_kills_itself_ends_with_the_signal_status() {
    let (_d, h) = running();
    let r = exec(&h, &["kill $$; echo not-reached"]);
    assert_eq!((r.code, r.stdout.as_str()), (143, ""));
    let r = exec(&h, &["sh -c 'kill -9 $$; echo no'; echo parent-goes-on $?"]);
    assert_eq!(r.stdout, "parent-goes-on 137\n");
}

#[test]
fn an_exec_that_sleeps_stays_in_the_process_table_until_its_simulated_end() {
    let (_d, h) = running();
    let before = h.state().unwrap().vms[0].next_pid;
    let mut child = std::process::Command::new(exe())
        .args(["exec", VM, "sleep 600; echo done"])
        .env(marble_tests::prlsim::DIR_ENV, h.dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let seen = h
        .wait_for(std::time::Duration::from_secs(20), |st| {
            st.vms[0].procs.iter().any(|p| p.command == "sleep 600")
        })
        .unwrap();
    assert!(seen);
    let ps = exec(&h, &["ps -axo pid,ppid,command"]).stdout;
    let _ = child.kill();
    let _ = child.wait();
    let shell = format!("{before:>5}     1 sh -c sleep 600; echo done");
    assert!(ps.contains(&shell), "{ps}");
    assert!(
        ps.contains(&format!("{:>5} {before:>5} sleep 600", before + 1)),
        "{ps}"
    );
}

#[test]
fn a_then_run_rule_starts_processes_and_still_runs_the_command() {
    let (_d, h) = running();
    h.add_exec_rule(
        VM,
        ExecRule::contains("/usr/bin/stat")
            .then_run()
            .spawns("/Users/runner/bin/Runner.Listener run"),
    )
    .unwrap();
    let r = exec(&h, &["/usr/bin/stat", "-f", "%Su", "/nope"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "stat: /nope: stat: No such file or directory\n")
    );
    assert_eq!(exec(&h, &["pgrep", "Runner.Listener"]).code, 0);
}

#[test]
fn tar_unpacks_a_gzip_package_from_stdin_and_cmp_compares() {
    let (_d, h) = running();
    let pkg = marble_tests::runner_release::build("2.330.0");
    assert_eq!(exec(&h, &["mkdir", "-p", "/Users/ci/r"]).code, 0);
    let r = h
        .prlctl(
            exe(),
            &["exec", VM, "/usr/bin/tar", "-xzf", "-", "-C", "/Users/ci/r"],
            Some(&pkg.tarball),
        )
        .unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        h.guest_file_mode(VM, "/Users/ci/r/bin/Runner.Listener")
            .unwrap(),
        Some(0o755)
    );
    let r = exec(&h, &["/Users/ci/r/bin/Runner.Listener", "--version"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "2.330.0\n"));
    // Not an archive: bsdtar's error, status 1, nothing written.
    let r = h
        .prlctl(
            exe(),
            &["exec", VM, "tar", "-xzf", "-", "-C", "/Users/ci/r"],
            Some(b"garbage"),
        )
        .unwrap();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("tar: "), "{r:?}");
    assert_eq!(
        exec(&h, &["cp", "/Users/ci/r/run.sh", "/Users/ci/x"]).code,
        0
    );
    assert_eq!(
        exec(&h, &["cmp", "-s", "/Users/ci/r/run.sh", "/Users/ci/x"]).code,
        0
    );
    assert_eq!(
        exec(
            &h,
            &["cmp", "-s", "/Users/ci/r/run.sh", "/Users/ci/r/config.sh"]
        )
        .code,
        1
    );
    assert_eq!(
        exec(&h, &["cmp", "-s", "/Users/ci/r/run.sh", "/nope"]).code,
        2
    );
}
