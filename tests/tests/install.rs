//! Issue 14 §2: `marblectl install` / `upgrade` / `uninstall`, `--version`, man pages and the
//! release tarball, with the real binaries.
//!
//! Installs go into a `--destdir` root (a temp dir): every file, mode and owner is checked
//! and the plist is parsed with the `plist` crate. The upgrade runs against such an install
//! with a daemon started from it by the pid-file stand-in for launchd (the hidden
//! `--service-pid-file`), and shows that a lock and a busy VM survive the restart. A separate
//! test shows that without `--destdir` a host failing the host check is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e_support::{Out, ROOT2, Running, SPI2, SimEnv, T, WORKER, ctl};
use marble_tests::harness::{bin_path, short_tempdir, wait_until_blocking};
use marble_tests::prlsim::VmState;

/// `marblectl-under-test ARGS` (no socket needed), waited for.
fn marblectl(args: &[&str]) -> Out {
    let mut cmd = Command::new(bin_path("marblectl-under-test"));
    cmd.env("MARBLE_SOCKET", "/nonexistent/marble-test.sock")
        .args(args);
    Running::spawn(cmd).wait(T)
}

/// A directory holding the binaries under their shipped names (`--from`), hard-linked from
/// the test build (the same entry points as the shipped `marbled` and `marblectl`).
fn staged_binaries(dir: &Path) -> PathBuf {
    let from = dir.join("from");
    std::fs::create_dir_all(&from).unwrap();
    for (shipped, built) in [
        ("marbled", "marbled-under-test"),
        ("marblectl", "marblectl-under-test"),
    ] {
        let _ = std::fs::remove_file(from.join(shipped));
        if std::fs::hard_link(bin_path(built), from.join(shipped)).is_err() {
            std::fs::copy(bin_path(built), from.join(shipped)).unwrap();
        }
    }
    from
}

/// The service user of the tests: `nobody` and its primary group (both exist on Linux and
/// macOS), so owners are checked against a user that is not the test's.
fn service_user() -> (String, String, u32, u32, PathBuf) {
    let user = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    let group = nix::unistd::Group::from_gid(user.gid)
        .unwrap()
        .expect("nobody's group");
    (
        user.name,
        group.name,
        user.uid.as_raw(),
        user.gid.as_raw(),
        user.dir,
    )
}

fn install_args<'a>(root: &'a str, from: &'a str, user: &'a str, group: &'a str) -> Vec<&'a str> {
    vec![
        "install",
        "--destdir",
        root,
        "--from",
        from,
        "--user",
        user,
        "--group",
        group,
    ]
}

#[track_caller]
fn mode_owner(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.mode() & 0o7777, meta.uid(), meta.gid())
}

fn parse_plist(path: &Path) -> plist::Dictionary {
    plist::Value::from_file(path)
        .expect("plist parses")
        .into_dictionary()
        .expect("top level is a dict")
}

fn short_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn version_shows_the_commit_and_the_protocol_in_both_binaries() {
    let protocol = format!(
        "protocol {}.{})",
        marble_proto::PROTO_MAJOR,
        marble_proto::PROTO_MINOR
    );
    for (name, bin) in [
        ("marbled", "marbled-under-test"),
        ("marblectl", "marblectl-under-test"),
    ] {
        let out = Command::new(bin_path(bin))
            .arg("--version")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name} --version: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            text.starts_with(&format!("{name} {} (commit ", env!("CARGO_PKG_VERSION"))),
            "{text}"
        );
        assert!(text.ends_with(&protocol), "{text}");
        if let Some(commit) = short_commit() {
            // -dirty may follow; HEAD itself is what the binary was built from.
            assert!(
                text.contains(&format!("(commit {commit}")),
                "{text} (HEAD {commit})"
            );
        }
    }
}

#[test]
fn install_into_a_destdir_produces_the_files_modes_owners_and_a_plist_that_parses() {
    let dir = short_tempdir();
    let from = staged_binaries(dir.path());
    let root = dir.path().join("root");
    let (user, group, uid, gid, home) = service_user();
    let is_root = nix::unistd::geteuid().is_root();
    let args = install_args(
        root.to_str().unwrap(),
        from.to_str().unwrap(),
        &user,
        &group,
    );
    let out = marblectl(&args);
    assert_eq!(out.code, 0, "install: {out}");
    assert!(
        out.stderr.contains("host check skipped"),
        "--destdir says it skips the check: {out}"
    );
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let (root_uid, service) = if is_root {
        (0, (uid, gid))
    } else {
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        (me.0, me)
    };

    // Programs: root-owned, binaries 0755, the rest 0644.
    for (path, mode) in [
        ("/usr/local/bin/marbled", 0o755),
        ("/usr/local/bin/marblectl", 0o755),
        ("/Library/LaunchDaemons/ch.cern.sft.marbled.plist", 0o644),
        ("/etc/newsyslog.d/ch.cern.sft.marbled.conf", 0o644),
        (
            "/usr/local/share/bash-completion/completions/marblectl",
            0o644,
        ),
        ("/usr/local/share/zsh/site-functions/_marblectl", 0o644),
        (
            "/usr/local/share/fish/vendor_completions.d/marblectl.fish",
            0o644,
        ),
        ("/usr/local/share/man/man1/marblectl.1", 0o644),
        ("/usr/local/share/man/man1/marblectl-install.1", 0o644),
        ("/usr/local/share/man/man1/marblectl-vm-start.1", 0o644),
        ("/usr/local/share/man/man1/marbled.1", 0o644),
        ("/usr/local/etc/marble/marbled.toml", 0o644),
    ] {
        let (m, u, _) = mode_owner(&at(path));
        assert_eq!((m, u), (mode, root_uid), "{path}: mode {m:o} owner {u}");
    }
    // Secrets: 0600, owned by the service user; the state dir 0750 (the socket's group only).
    for (path, mode) in [
        ("/usr/local/etc/marble/github-token", 0o600),
        ("/usr/local/etc/marble/jenkins-token", 0o600),
        ("/usr/local/var/marble", 0o750),
        ("/usr/local/var/log/marble", 0o755),
    ] {
        let (m, u, g) = mode_owner(&at(path));
        assert_eq!(
            (m, (u, g)),
            (mode, service),
            "{path}: mode {m:o} owner {u}:{g}"
        );
    }
    assert_eq!(
        std::fs::read(at("/usr/local/etc/marble/github-token")).unwrap(),
        b""
    );

    // The plist, parsed.
    let p = parse_plist(&at("/Library/LaunchDaemons/ch.cern.sft.marbled.plist"));
    let files = p["SoftResourceLimits"]
        .as_dictionary()
        .expect("SoftResourceLimits")["NumberOfFiles"]
        .as_signed_integer()
        .expect("NumberOfFiles");
    assert!(
        files >= 1024,
        "NumberOfFiles {files}: launchd's default 256 is too low"
    );
    let env = p["EnvironmentVariables"]
        .as_dictionary()
        .expect("EnvironmentVariables");
    assert_eq!(
        env["HOME"].as_string(),
        Some(home.to_str().unwrap()),
        "HOME is the service user's"
    );
    assert!(
        env["PATH"]
            .as_string()
            .unwrap()
            .split(':')
            .any(|d| d == "/usr/local/bin")
    );
    assert_eq!(p["UserName"].as_string(), Some(user.as_str()));
    assert_eq!(p["GroupName"].as_string(), Some(group.as_str()));
    let argv: Vec<&str> = p["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_string())
        .collect();
    assert_eq!(
        argv,
        [
            "/usr/local/bin/marbled",
            "--config",
            "/usr/local/etc/marble/marbled.toml",
            "run"
        ]
    );
    for key in ["StandardErrorPath", "StandardOutPath"] {
        let path = p[key].as_string().unwrap();
        assert!(
            path.starts_with("/usr/local/var/log/marble/"),
            "{key} {path}"
        );
        let conf =
            std::fs::read_to_string(at("/etc/newsyslog.d/ch.cern.sft.marbled.conf")).unwrap();
        assert!(
            conf.lines().any(|l| l.starts_with(path)),
            "newsyslog rotates {path}:\n{conf}"
        );
    }

    // The config is the daemon's own default, valid, logging to its rotated file.
    let config = at("/usr/local/etc/marble/marbled.toml");
    let check = Command::new(bin_path("marbled-under-test"))
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(check.status.success(), "check-config: {check:?}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("log_file = \"/usr/local/var/log/marble/marbled.log\""),
        "{text}"
    );
    assert!(
        text.contains(&format!("socket_group = \"{group}\"")),
        "{text}"
    );

    // Man pages carry the version with the commit; completions know the commands.
    let man = std::fs::read_to_string(at("/usr/local/share/man/man1/marblectl.1")).unwrap();
    assert!(man.contains("commit"), "man page shows the version: {man}");
    let bash =
        std::fs::read_to_string(at("/usr/local/share/bash-completion/completions/marblectl"))
            .unwrap();
    assert!(
        bash.contains("request-slot") && bash.contains("install"),
        "bash completion"
    );

    // Nothing else: no temp or staging file left behind, every file accounted for.
    let listed = [
        "usr/local/bin/marbled",
        "usr/local/bin/marblectl",
        "Library/LaunchDaemons/ch.cern.sft.marbled.plist",
        "etc/newsyslog.d/ch.cern.sft.marbled.conf",
        "usr/local/share/bash-completion/completions/marblectl",
        "usr/local/share/zsh/site-functions/_marblectl",
        "usr/local/share/fish/vendor_completions.d/marblectl.fish",
        "usr/local/etc/marble/marbled.toml",
        "usr/local/etc/marble/github-token",
        "usr/local/etc/marble/jenkins-token",
    ];
    for file in all_files(&root) {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let man = rel
            .strip_prefix("usr/local/share/man/man1/")
            .is_some_and(|page| {
                (page.starts_with("marbled") || page.starts_with("marblectl"))
                    && page.ends_with(".1")
            });
        assert!(
            listed.contains(&rel.as_str()) || man,
            "unexpected file {rel}"
        );
    }

    // A second install keeps the config and the tokens' content, and tightens a token's mode.
    std::fs::write(at("/usr/local/etc/marble/github-token"), "ghp_secret\n").unwrap();
    std::fs::set_permissions(
        at("/usr/local/etc/marble/github-token"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(&config, format!("{text}\n# edited by the operator\n")).unwrap();
    let again = marblectl(&args);
    assert_eq!(again.code, 0, "second install: {again}");
    assert_eq!(
        std::fs::read_to_string(at("/usr/local/etc/marble/github-token")).unwrap(),
        "ghp_secret\n"
    );
    assert_eq!(
        mode_owner(&at("/usr/local/etc/marble/github-token")).0,
        0o600
    );
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .ends_with("# edited by the operator\n")
    );
}

/// Every regular file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(all_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn install_with_another_prefix_puts_every_path_of_plist_and_config_under_it() {
    let dir = short_tempdir();
    let from = staged_binaries(dir.path());
    let root = dir.path().join("root");
    let out = marblectl(&[
        "install",
        "--destdir",
        root.to_str().unwrap(),
        "--from",
        from.to_str().unwrap(),
        "--prefix",
        "/opt/marble",
    ]);
    assert_eq!(out.code, 0, "install: {out}");
    let p = parse_plist(&root.join("Library/LaunchDaemons/ch.cern.sft.marbled.plist"));
    let argv: Vec<&str> = p["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_string())
        .collect();
    assert_eq!(
        argv,
        [
            "/opt/marble/bin/marbled",
            "--config",
            "/opt/marble/etc/marble/marbled.toml",
            "run"
        ]
    );
    assert!(
        p["StandardErrorPath"]
            .as_string()
            .unwrap()
            .starts_with("/opt/marble/var/log/marble/")
    );
    assert!(root.join("opt/marble/bin/marbled").is_file());
    let text = std::fs::read_to_string(root.join("opt/marble/etc/marble/marbled.toml")).unwrap();
    for line in [
        "socket = \"/opt/marble/var/marble/marbled.sock\"",
        "state_file = \"/opt/marble/var/marble/state.bin\"",
        "log_file = \"/opt/marble/var/log/marble/marbled.log\"",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    assert!(
        text.contains("path = \"/usr/local/bin/prlctl\""),
        "Parallels' prlctl stays where Parallels puts it"
    );
    let bad = marblectl(&[
        "install",
        "--destdir",
        root.to_str().unwrap(),
        "--prefix",
        "opt/marble",
    ]);
    assert_eq!(bad.code, 64, "a relative prefix is a usage error: {bad}");
}

#[test]
fn the_shipped_plist_is_what_install_generates_for_the_default_options() {
    let dir = short_tempdir();
    let from = staged_binaries(dir.path());
    let root = dir.path().join("root");
    let out = marblectl(&[
        "install",
        "--destdir",
        root.to_str().unwrap(),
        "--from",
        from.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "install: {out}");
    let mut generated = parse_plist(&root.join("Library/LaunchDaemons/ch.cern.sft.marbled.plist"));
    let shipped = parse_plist(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../launchd/ch.cern.sft.marbled.plist"),
    );
    // HOME comes from the user database when sftnight exists here; the shipped file has the
    // macOS default.
    if let Some(plist::Value::Dictionary(env)) = generated.get_mut("EnvironmentVariables") {
        env.insert(
            "HOME".into(),
            plist::Value::String("/Users/sftnight".into()),
        );
    }
    assert_eq!(
        shipped, generated,
        "launchd/ch.cern.sft.marbled.plist differs from what install writes"
    );
}

#[cfg(not(target_os = "macos"))]
#[test]
fn install_without_destdir_refuses_a_host_that_fails_the_host_check_and_changes_nothing() {
    let dir = short_tempdir();
    let from = staged_binaries(dir.path());
    let prefix = dir.path().join("prefix");
    let out = marblectl(&[
        "install",
        "--prefix",
        prefix.to_str().unwrap(),
        "--from",
        from.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 69, "refused: {out}");
    assert!(
        out.stderr.contains("FAIL  platform"),
        "names the failed check: {out}"
    );
    assert!(out.stderr.contains("refusing to install"), "{out}");
    assert!(
        out.stderr.contains("--destdir"),
        "says how to stage instead: {out}"
    );
    assert!(!prefix.exists(), "nothing written under the prefix");
}

#[test]
fn uninstall_removes_the_programs_and_keeps_config_secrets_and_state() {
    let dir = short_tempdir();
    let from = staged_binaries(dir.path());
    let root = dir.path().join("root");
    let (user, group, ..) = service_user();
    let out = marblectl(&install_args(
        root.to_str().unwrap(),
        from.to_str().unwrap(),
        &user,
        &group,
    ));
    assert_eq!(out.code, 0, "install: {out}");
    std::fs::write(
        root.join("usr/local/etc/marble/github-token"),
        "ghp_secret\n",
    )
    .unwrap();
    std::fs::write(root.join("usr/local/var/marble/state.bin"), "state").unwrap();

    let out = marblectl(&["uninstall", "--destdir", root.to_str().unwrap()]);
    assert_eq!(out.code, 0, "uninstall: {out}");
    for gone in [
        "usr/local/bin/marbled",
        "usr/local/bin/marblectl",
        "Library/LaunchDaemons/ch.cern.sft.marbled.plist",
        "etc/newsyslog.d/ch.cern.sft.marbled.conf",
        "usr/local/share/zsh/site-functions/_marblectl",
        "usr/local/share/man/man1/marblectl.1",
        "usr/local/share/man/man1/marbled.1",
    ] {
        assert!(!root.join(gone).exists(), "{gone} removed");
    }
    let man_left: Vec<_> = std::fs::read_dir(root.join("usr/local/share/man/man1"))
        .unwrap()
        .collect();
    assert!(man_left.is_empty(), "no man page left: {man_left:?}");
    assert_eq!(
        std::fs::read_to_string(root.join("usr/local/etc/marble/github-token")).unwrap(),
        "ghp_secret\n"
    );
    assert!(root.join("usr/local/etc/marble/marbled.toml").exists());
    assert!(root.join("usr/local/var/marble/state.bin").exists());
    assert!(out.stderr.contains("VMs and images are untouched"), "{out}");
    let again = marblectl(&["uninstall", "--destdir", root.to_str().unwrap()]);
    assert_eq!(again.code, 69, "nothing installed any more: {again}");
}

/// Stops the daemon started from the install (by its recorded pid) when the test ends.
struct PidGuard(PathBuf);

impl Drop for PidGuard {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn pid_of(file: &Path) -> i32 {
    std::fs::read_to_string(file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn vm_json(socket: &Path, vm: &str) -> serde_json::Value {
    let out = ctl(socket, &["vm", "show", "--json", vm]);
    serde_json::from_str(&out.stdout).unwrap_or_default()
}

#[test]
fn upgrade_replaces_the_binaries_and_restarts_keeping_locks_and_a_busy_vm_running() {
    let env = SimEnv::new();
    env.power_on(ROOT2);
    let dir = env.dir.path();
    let from = staged_binaries(dir);
    let root = dir.join("root");
    let pid_file = dir.join("marbled.pid");
    let _guard = PidGuard(pid_file.clone());
    let socket = env.config.daemon.socket.clone();
    // The operator's config (kept by install): the simulated host.
    let config = root.join("usr/local/etc/marble/marbled.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, toml::to_string(&env.config).unwrap()).unwrap();
    let (user, group, ..) = service_user();
    let mut args = install_args(
        root.to_str().unwrap(),
        from.to_str().unwrap(),
        &user,
        &group,
    );
    args.extend(["--service-pid-file", pid_file.to_str().unwrap()]);
    let out = marblectl(&args);
    assert_eq!(out.code, 0, "install: {out}");
    let first = pid_of(&pid_file);
    let up = wait_until_blocking(T, || ctl(&socket, &["status"]).code == 0);
    assert!(
        up,
        "the installed daemon never answered; stderr:\n{}",
        std::fs::read_to_string(root.join("usr/local/var/log/marble/marbled.stderr"))
            .unwrap_or_default()
    );

    // A lock, and a VM running a CI job (a GitHub job's worker in the guest).
    let lock = ctl(&socket, &["lock", SPI2, "--reason", "disk swap"]);
    assert_eq!(lock.code, 0, "lock: {lock}");
    env.host.add_process(ROOT2, WORKER).unwrap();
    let refused = ctl(&socket, &["vm", "stop", ROOT2]);
    assert_eq!(refused.code, 75, "busy before the upgrade: {refused}");

    // The new build: a different marbled binary (what matters is that it is replaced).
    let old_inode = std::fs::metadata(root.join("usr/local/bin/marbled"))
        .unwrap()
        .ino();
    let out = marblectl(&[
        "upgrade",
        "--destdir",
        root.to_str().unwrap(),
        "--from",
        from.to_str().unwrap(),
        "--service-pid-file",
        pid_file.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "upgrade: {out}");
    assert!(
        out.stderr.contains("answers on"),
        "upgrade waits for the new daemon: {out}"
    );
    assert_ne!(
        std::fs::metadata(root.join("usr/local/bin/marbled"))
            .unwrap()
            .ino(),
        old_inode,
        "binary replaced (new inode)"
    );
    let second = pid_of(&pid_file);
    assert_ne!(first, second, "a new daemon process runs");

    // The lock is kept, the busy VM was never stopped, is adopted, and is still refused a stop.
    let vm = vm_json(&socket, SPI2);
    assert_eq!(vm["lock"]["reason"], "disk swap", "{vm}");
    assert_eq!(env.sim_state(ROOT2), VmState::Running);
    assert!(
        env.power_calls().iter().all(|a| a[0] != "stop"),
        "nothing stopped: {:?}",
        env.power_calls()
    );
    let running = wait_until_blocking(T, || vm_json(&socket, ROOT2)["power"] == "running");
    assert!(
        running,
        "the new daemon adopted the running {ROOT2}: {}",
        vm_json(&socket, ROOT2)
    );
    let stop = ctl(&socket, &["vm", "stop", ROOT2]);
    assert_eq!(
        stop.code, 75,
        "the new daemon still refuses to stop the busy VM: {stop}"
    );
}

#[test]
fn with_a_log_file_the_daemon_logs_there_and_not_to_launchds_stderr_file() {
    // The installed config sets daemon.log_file (rotated daily by the daemon); launchd's
    // StandardErrorPath is not rotated by anyone who can reopen it, so it must stay small.
    let mut env = SimEnv::new();
    let log_file = env.dir.path().join("logs/marbled.log");
    std::fs::create_dir_all(log_file.parent().unwrap()).unwrap();
    env.config.daemon.log_file = Some(log_file.clone());
    let daemon = env.spawn();
    let logged = wait_until_blocking(T, || {
        std::fs::read_dir(log_file.parent().unwrap())
            .unwrap()
            .flatten()
            .any(|f| {
                std::fs::read_to_string(f.path())
                    .unwrap_or_default()
                    .contains("marbled started")
            })
    });
    assert!(logged, "the log file has the start line");
    let stderr = daemon.log_text();
    assert!(
        !stderr.contains("marbled started"),
        "stderr repeats the log:\n{stderr}"
    );
}

#[test]
fn the_release_tarball_holds_binaries_plist_newsyslog_completions_and_man_pages() {
    let dir = short_tempdir();
    let from = staged_binaries(dir.path());
    let out_dir = dir.path().join("dist");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/release.sh");
    // --bin-dir: the test build's binaries (no cargo build inside the test).
    let out = Command::new("bash")
        .arg(&script)
        .args([
            "--bin-dir",
            from.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "release.sh: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tarball = PathBuf::from(stdout.lines().last().expect("tarball path").trim());
    let name = tarball
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".tar.gz")
        .to_owned();
    assert!(
        name.starts_with(&format!("marble-{}-", env!("CARGO_PKG_VERSION"))),
        "{name}"
    );
    if let Some(commit) = short_commit() {
        assert!(
            name.contains(&commit),
            "the tarball names the commit: {name}"
        );
    }
    assert!(
        out_dir.join(format!("{name}.tar.gz.sha256")).exists(),
        "checksum file"
    );
    let list = Command::new("tar")
        .arg("tzf")
        .arg(&tarball)
        .output()
        .unwrap();
    assert!(list.status.success(), "tar tzf: {list:?}");
    let entries: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    for want in [
        "usr/local/bin/marbled",
        "usr/local/bin/marblectl",
        "Library/LaunchDaemons/ch.cern.sft.marbled.plist",
        "etc/newsyslog.d/ch.cern.sft.marbled.conf",
        "usr/local/share/bash-completion/completions/marblectl",
        "usr/local/share/zsh/site-functions/_marblectl",
        "usr/local/share/fish/vendor_completions.d/marblectl.fish",
        "usr/local/share/man/man1/marblectl.1",
        "usr/local/share/man/man1/marblectl-install.1",
        "usr/local/share/man/man1/marbled.1",
    ] {
        let path = format!("{name}/{want}");
        assert!(
            entries.contains(&path),
            "{path} missing from the tarball: {entries:?}"
        );
    }
    for never in ["etc/marble", "github-token", "var/marble", "marbled.toml"] {
        assert!(
            !entries.iter().any(|e| e.contains(never)),
            "{never} must not ship: {entries:?}"
        );
    }
}
