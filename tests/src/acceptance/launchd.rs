//! Group `launchd` (macOS only): the daemon installed as docs/OPERATIONS.md says, running
//! under launchd as the real user, seen from every side an operator or Jenkins sees it.
//!
//! - `launchd.install`: the OPERATIONS.md install steps (binaries into `/usr/local/bin`,
//!   config, directories, the plist with `UserName` set to this user, `launchctl
//!   bootstrap`). The config is the default with policy `manual` (the daemon never starts or
//!   stops a VM on its own) and the throw-away VM as its only SPI VM. Refused when any part
//!   of a marbled installation exists: the suite never touches a production daemon.
//! - `launchd.env`: the daemon process's HOME and TMPDIR.
//! - `launchd.host-check`: `marblectl host check` answered by the daemon under launchd
//!   (prlctl works for the user without a login session?).
//! - `launchd.socket-owner`, `-other-user` (`nobody`), `-root`.
//! - `launchd.ssh-path`: `ssh localhost` (non-interactive, as Jenkins connects): PATH,
//!   `command -v marblectl`, `/usr/local/bin/marblectl`.
//! - `launchd.start-vm-sh`: the real `docs/jenkins/start_vm.sh` over `ssh localhost`, granting
//!   the throw-away VM; stdout must carry only the agent's output.
//! - `launchd.keychain-<logged-in|logged-out>`: a dummy item read by the daemon's
//!   `read_keychain` in this process and in a LaunchDaemon job running as this user.
//!
//! Everything installed is removed at the end (and by the script's trap on an interrupted
//! run, from `cleanup.log`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

use super::record::{Obs, Verdict};
use super::target::Env;
use super::vm::Throwaway;

/// launchd label of the daemon (docs/OPERATIONS.md).
pub const LABEL: &str = "ch.cern.sft.marbled";
/// Installed plist.
pub const PLIST: &str = "/Library/LaunchDaemons/ch.cern.sft.marbled.plist";
/// launchd label of the one-shot keychain probe job.
pub const KEYCHAIN_LABEL: &str = "ch.cern.sft.marble-acceptance-keychain";
/// Its plist.
pub const KEYCHAIN_PLIST: &str =
    "/Library/LaunchDaemons/ch.cern.sft.marble-acceptance-keychain.plist";
/// Keychain service of the dummy item.
pub const KEYCHAIN_SERVICE: &str = "marble-acceptance";

/// Paths the install creates; any of them existing means "marbled is installed here".
pub const INSTALLED: &[&str] = &[
    PLIST,
    "/usr/local/bin/marbled",
    "/usr/local/bin/marblectl",
    "/usr/local/etc/marble",
    "/usr/local/var/marble",
    "/usr/local/var/log/marble",
];

const SOCKET: &str = "/usr/local/var/marble/marbled.sock";
const MARBLECTL: &str = "/usr/local/bin/marblectl";

/// The check ids of this group, for skipping them together.
pub const IDS: &[&str] = &[
    "launchd.install",
    "launchd.env",
    "launchd.host-check",
    "launchd.socket-owner",
    "launchd.socket-other-user",
    "launchd.socket-root",
    "launchd.ssh-path",
    "launchd.start-vm-sh",
    "launchd.keychain",
];

fn t(env: &Env) -> Duration {
    env.pick(Duration::from_secs(60), Duration::from_secs(10))
}

/// This user's name and home.
fn me() -> anyhow::Result<(String, PathBuf)> {
    let u = nix::unistd::User::from_uid(nix::unistd::getuid())
        .context("look up this user")?
        .context("this uid has no passwd entry")?;
    Ok((u.name, u.dir))
}

/// Environment for host tools run by the suite: the daemon's tool environment plus this
/// user's identity (sudo, ssh and security need them).
fn user_env(env: &Env) -> Vec<(String, String)> {
    let mut e = env.tool_env.clone();
    for key in ["HOME", "USER", "LOGNAME", "SSH_AUTH_SOCK", "TMPDIR"] {
        if let Ok(v) = std::env::var(key)
            && !e.iter().any(|(k, _)| k == key)
        {
            e.push((key.to_owned(), v));
        }
    }
    e
}

async fn run(
    env: &Env,
    obs: &Obs,
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> anyhow::Result<(Option<i32>, String, String)> {
    let out = env
        .command(obs, Path::new(program), args, &user_env(env), timeout)
        .await?;
    Ok((out.status, out.stdout_text(), out.stderr_text()))
}

async fn sudo(
    env: &Env,
    obs: &Obs,
    args: &[&str],
    timeout: Duration,
) -> anyhow::Result<(Option<i32>, String, String)> {
    let mut full = vec!["-n"];
    full.extend_from_slice(args);
    run(env, obs, "/usr/bin/sudo", &full, timeout).await
}

async fn sudo_ok(env: &Env, obs: &Obs, args: &[&str], timeout: Duration) -> anyhow::Result<String> {
    let (status, out, err) = sudo(env, obs, args, timeout).await?;
    if status != Some(0) {
        anyhow::bail!("sudo {} exited {status:?}: {}", args.join(" "), err.trim());
    }
    Ok(out)
}

/// Run the group. `vm` is the stopped throw-away VM when this run has one.
pub async fn checks(env: &Env, vm: Option<&Throwaway>) {
    if env.is_sim() {
        for id in IDS {
            env.rec.skip(id, "simulator");
        }
        return;
    }
    if !cfg!(target_os = "macos") {
        for id in IDS {
            env.rec.skip(id, "needs macOS (launchd, Keychain)");
        }
        return;
    }
    let existing: Vec<&str> = INSTALLED
        .iter()
        .copied()
        .filter(|p| Path::new(p).exists())
        .collect();
    let sudo_works = {
        let obs = Obs::default();
        matches!(
            sudo(env, &obs, &["true"], t(env)).await,
            Ok((Some(0), _, _))
        )
    };
    let install_blocker = if !existing.is_empty() {
        Some(format!(
            "marbled is installed on this host ({}); these checks install their own and never touch an existing one",
            existing.join(", ")
        ))
    } else if !sudo_works {
        Some(
            "needs sudo without a password prompt: run `sudo -v` right before the suite".to_owned(),
        )
    } else {
        None
    };

    let installed = match &install_blocker {
        Some(reason) => {
            for id in &IDS[..6] {
                env.rec.skip(id, reason);
            }
            false
        }
        None => {
            let s = env
                .rec
                .check("launchd.install", t(env) * 2, async |obs: &Obs| {
                    install(env, obs, vm).await
                })
                .await;
            s == super::record::Status::Pass
        }
    };
    if installed {
        daemon_checks(env).await;
    } else if install_blocker.is_none() {
        for id in &IDS[1..6] {
            env.rec.skip(id, "the install failed (see launchd.install)");
        }
    }

    env.rec
        .check("launchd.ssh-path", t(env), async |obs: &Obs| {
            ssh_path(env, obs).await
        })
        .await;
    match (vm, installed) {
        (Some(vm), true) => {
            env.rec
                .check(
                    "launchd.start-vm-sh",
                    env.pick(Duration::from_secs(600), Duration::from_secs(30)),
                    async |obs: &Obs| start_vm_sh(env, obs, vm).await,
                )
                .await;
        }
        (None, _) => env.rec.skip(
            "launchd.start-vm-sh",
            "no throw-away VM in this run (the exec/guest/lifecycle groups make one)",
        ),
        (_, false) => env
            .rec
            .skip("launchd.start-vm-sh", "no marbled installed by this run"),
    }
    if installed {
        let obs = Obs::default();
        if let Err(e) = uninstall(env, &obs).await {
            eprintln!("acceptance: uninstalling marbled failed: {e:#}; see cleanup.log");
        }
    }
    if sudo_works {
        env.rec
            .check("launchd.keychain", t(env) * 2, async |obs: &Obs| {
                keychain(env, obs).await
            })
            .await;
    } else {
        env.rec.skip(
            "launchd.keychain",
            "needs sudo without a password prompt (the probe job is a LaunchDaemon)",
        );
    }
}

/// The daemon config the acceptance install uses.
pub fn acceptance_config(vm: Option<&str>) -> marbled::Config {
    let mut c = marbled::Config::default();
    c.scheduler.policy = "manual".to_owned();
    c.teams.root = Vec::new();
    c.teams.spi = vm.map(|v| vec![v.to_owned()]).unwrap_or_default();
    c
}

/// The repository's plist with `UserName` set to `user`.
pub fn plist_for(template: &str, user: &str) -> anyhow::Result<String> {
    let needle = "<key>UserName</key>";
    let at = template
        .find(needle)
        .context("no UserName key in the plist")?;
    let rest = &template[at + needle.len()..];
    let open = rest.find("<string>").context("no UserName value")?;
    let close = rest.find("</string>").context("no UserName value end")?;
    let start = at + needle.len() + open + "<string>".len();
    let end = at + needle.len() + close;
    Ok(format!("{}{user}{}", &template[..start], &template[end..]))
}

async fn install(env: &Env, obs: &Obs, vm: Option<&Throwaway>) -> anyhow::Result<Verdict> {
    let (user, _) = me()?;
    let marbled = crate::harness::bin_path("marbled-under-test");
    let marblectl = crate::harness::bin_path("marblectl-under-test");
    let staging = env.work.join("install");
    std::fs::create_dir_all(&staging).context("staging dir")?;
    let config = staging.join("marbled.toml");
    std::fs::write(
        &config,
        toml::to_string(&acceptance_config(vm.map(|v| v.name.as_str())))
            .context("serialise config")?,
    )
    .context("write config")?;
    let template = std::fs::read_to_string(
        env.settings
            .repo
            .join("launchd")
            .join("ch.cern.sft.marbled.plist"),
    )
    .context("read launchd/ch.cern.sft.marbled.plist")?;
    let plist = staging.join("ch.cern.sft.marbled.plist");
    std::fs::write(&plist, plist_for(&template, &user)?).context("write plist")?;
    for p in INSTALLED {
        env.rec.cleanup_log(&format!("create path {p}"));
    }
    env.rec.cleanup_log(&format!("create launchd {LABEL}"));
    let s = |p: &Path| p.display().to_string();
    let long = t(env);
    sudo_ok(
        env,
        obs,
        &[
            "install",
            "-m",
            "0755",
            &s(&marbled),
            "/usr/local/bin/marbled",
        ],
        long,
    )
    .await?;
    sudo_ok(
        env,
        obs,
        &["install", "-m", "0755", &s(&marblectl), MARBLECTL],
        long,
    )
    .await?;
    sudo_ok(
        env,
        obs,
        &[
            "mkdir",
            "-p",
            "/usr/local/etc/marble",
            "/usr/local/var/marble",
            "/usr/local/var/log/marble",
        ],
        long,
    )
    .await?;
    sudo_ok(
        env,
        obs,
        &[
            "install",
            "-m",
            "0644",
            &s(&config),
            "/usr/local/etc/marble/marbled.toml",
        ],
        long,
    )
    .await?;
    sudo_ok(
        env,
        obs,
        &[
            "chown",
            "-R",
            &format!("{user}:staff"),
            "/usr/local/var/marble",
            "/usr/local/var/log/marble",
        ],
        long,
    )
    .await?;
    let (status, _, err) = run(
        env,
        obs,
        "/usr/local/bin/marbled",
        &[
            "--config",
            "/usr/local/etc/marble/marbled.toml",
            "check-config",
        ],
        long,
    )
    .await?;
    if status != Some(0) {
        anyhow::bail!("marbled check-config exited {status:?}: {}", err.trim());
    }
    sudo_ok(
        env,
        obs,
        &["install", "-m", "0644", &s(&plist), PLIST],
        long,
    )
    .await?;
    sudo_ok(env, obs, &["launchctl", "bootstrap", "system", PLIST], long).await?;
    let started = Instant::now();
    loop {
        if std::os::unix::net::UnixStream::connect(SOCKET).is_ok() {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let log = sudo(
                env,
                obs,
                &["tail", "-n", "40", "/usr/local/var/log/marble/marbled.log"],
                long,
            )
            .await
            .map(|r| r.1)
            .unwrap_or_default();
            anyhow::bail!("the socket {SOCKET} did not appear within 30 s; log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    env.rec.timing("launchd_up_s", started.elapsed());
    Ok(Verdict::Pass(format!(
        "installed per docs/OPERATIONS.md as {user}; socket up {:.1} s after bootstrap",
        started.elapsed().as_secs_f64()
    )))
}

async fn uninstall(env: &Env, obs: &Obs) -> anyhow::Result<()> {
    let long = t(env);
    let _ = sudo(
        env,
        obs,
        &["launchctl", "bootout", &format!("system/{LABEL}")],
        long,
    )
    .await;
    env.rec.cleanup_log(&format!("removed launchd {LABEL}"));
    sudo_ok(
        env,
        obs,
        &[
            "rm",
            "-rf",
            INSTALLED[0],
            INSTALLED[1],
            INSTALLED[2],
            INSTALLED[3],
            INSTALLED[4],
            INSTALLED[5],
        ],
        long,
    )
    .await?;
    for p in INSTALLED {
        env.rec.cleanup_log(&format!("removed path {p}"));
    }
    Ok(())
}

/// `pid = N` from `launchctl print`.
pub fn launchctl_pid(print: &str) -> Option<u32> {
    print
        .lines()
        .find_map(|l| l.trim().strip_prefix("pid = "))
        .and_then(|p| p.trim().parse().ok())
}

/// `KEY=value` words of a `ps -E` command line.
pub fn env_var<'a>(ps_line: &'a str, key: &str) -> Option<&'a str> {
    ps_line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

async fn daemon_checks(env: &Env) {
    env.rec
        .check("launchd.env", t(env), async |obs: &Obs| {
            let (_, home) = me()?;
            let print = sudo_ok(
                env,
                obs,
                &["launchctl", "print", &format!("system/{LABEL}")],
                t(env),
            )
            .await?;
            let pid = launchctl_pid(&print).context("no pid in launchctl print")?;
            let ps = sudo_ok(
                env,
                obs,
                &["ps", "-E", "-ww", "-o", "command=", "-p", &pid.to_string()],
                t(env),
            )
            .await?;
            let got_home = env_var(&ps, "HOME").map(str::to_owned);
            let tmpdir = env_var(&ps, "TMPDIR").map(str::to_owned);
            obs.note(
                "daemon environment",
                json!({"pid": pid, "HOME": got_home, "TMPDIR": tmpdir}),
            );
            let want = home.display().to_string();
            Ok(if got_home.as_deref() == Some(want.as_str()) {
                Verdict::Pass(format!(
                    "HOME={want}, TMPDIR={}",
                    tmpdir.as_deref().unwrap_or("(unset)")
                ))
            } else {
                Verdict::Fail(format!(
                    "HOME is {got_home:?}, expected {want:?}; TMPDIR={tmpdir:?}"
                ))
            })
        })
        .await;
    env.rec
        .check("launchd.host-check", t(env) * 2, async |obs: &Obs| {
            let (_, out, err) = run(
                env,
                obs,
                MARBLECTL,
                &["host", "check", "--json"],
                t(env) * 2,
            )
            .await?;
            let v: Value = serde_json::from_str(&out)
                .with_context(|| format!("host check --json: {}", err.trim()))?;
            let status_of = |name: &str| {
                v.as_array()
                    .and_then(|a| {
                        a.iter()
                            .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
                    })
                    .and_then(|c| c.get("status").and_then(Value::as_str))
                    .map(str::to_ascii_lowercase)
            };
            let prl = status_of("prlctl");
            let parallels = status_of("parallels");
            Ok(
                if prl.as_deref() == Some("pass") && parallels.as_deref() == Some("pass") {
                    Verdict::Pass("under launchd: `parallels` and `prlctl` PASS".into())
                } else {
                    Verdict::Fail(format!(
                        "under launchd: parallels {parallels:?}, prlctl {prl:?} (see results.json)"
                    ))
                },
            )
        })
        .await;
    env.rec
        .check("launchd.socket-owner", t(env), async |obs: &Obs| {
            let (status, _, err) = run(env, obs, MARBLECTL, &["status"], t(env)).await?;
            Ok(if status == Some(0) {
                Verdict::Pass("marblectl status as the daemon's user: exit 0".into())
            } else {
                Verdict::Fail(format!("exit {status:?}: {}", err.trim()))
            })
        })
        .await;
    env.rec
        .check("launchd.socket-other-user", t(env), async |obs: &Obs| {
            let (status, out, err) =
                sudo(env, obs, &["-u", "nobody", MARBLECTL, "status"], t(env)).await?;
            Ok(match status {
                Some(0) => Verdict::Fail(format!("user nobody got a status: {}", out.trim())),
                Some(69 | 77) => Verdict::Pass(format!("refused, exit {status:?}: {}", err.trim())),
                other => Verdict::Fail(format!("unexpected exit {other:?}: {}", err.trim())),
            })
        })
        .await;
    env.rec
        .check("launchd.socket-root", t(env), async |obs: &Obs| {
            let (status, _, err) = sudo(env, obs, &[MARBLECTL, "status"], t(env)).await?;
            Ok(if status == Some(0) {
                Verdict::Pass("marblectl status as root: exit 0".into())
            } else {
                Verdict::Fail(format!("exit {status:?}: {}", err.trim()))
            })
        })
        .await;
}

fn ssh_args<'a>(host: &'a str, command: &'a str) -> Vec<&'a str> {
    vec![
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "StrictHostKeyChecking=accept-new",
        host,
        command,
    ]
}

async fn ssh_path(env: &Env, obs: &Obs) -> anyhow::Result<Verdict> {
    let host = env.settings.ssh_host.clone();
    let cmd = "echo \"PATH=$PATH\"; command -v marblectl || echo 'marblectl: not on PATH'; test -x /usr/local/bin/marblectl && echo absolute-ok; true";
    let (status, out, err) = run(env, obs, "/usr/bin/ssh", &ssh_args(&host, cmd), t(env)).await?;
    if status == Some(255) {
        return Ok(Verdict::Skip(format!(
            "`ssh -o BatchMode=yes {host}` failed ({}): enable Remote Login and put your key in ~/.ssh/authorized_keys",
            err.trim()
        )));
    }
    let path = out
        .lines()
        .find_map(|l| l.strip_prefix("PATH="))
        .unwrap_or("?")
        .to_owned();
    let bare = !out.contains("not on PATH");
    let absolute = out.lines().any(|l| l.trim() == "absolute-ok");
    obs.note(
        "ssh",
        json!({"PATH": path, "bare_marblectl_found": bare, "absolute_ok": absolute}),
    );
    Ok(if absolute {
        Verdict::Pass(format!(
            "non-interactive PATH={path}; bare `marblectl` {}; /usr/local/bin/marblectl runs",
            if bare {
                "found"
            } else {
                "NOT found (scripts must use the absolute path)"
            }
        ))
    } else {
        Verdict::Fail(format!(
            "non-interactive PATH={path}; /usr/local/bin/marblectl is not there (bare marblectl found: {bare})"
        ))
    })
}

async fn start_vm_sh(env: &Env, obs: &Obs, vm: &Throwaway) -> anyhow::Result<Verdict> {
    let script = env.work.join("start_vm.sh");
    std::fs::copy(env.settings.repo.join("docs/jenkins/start_vm.sh"), &script)
        .context("copy docs/jenkins/start_vm.sh")?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .context("chmod start_vm.sh")?;
    let cmd = format!(
        "{} {} 0s /bin/echo agent-started",
        script.display(),
        vm.name
    );
    let host = env.settings.ssh_host.clone();
    let started = Instant::now();
    let (status, out, err) = run(
        env,
        obs,
        "/usr/bin/ssh",
        &ssh_args(&host, &cmd),
        env.pick(Duration::from_secs(540), Duration::from_secs(30)),
    )
    .await?;
    env.rec.timing("start_vm_sh_s", started.elapsed());
    Ok(match status {
        Some(0) if out == "agent-started\n" => Verdict::Pass(format!(
            "granted in {:.1} s; stdout carried only the agent's output",
            started.elapsed().as_secs_f64()
        )),
        Some(0) => Verdict::Fail(format!(
            "exit 0 but stdout was {out:?}: the remoting channel would be corrupted"
        )),
        Some(75) => Verdict::Pass(format!(
            "host busy (exit 75, Jenkins tries another node): {}",
            err.trim()
        )),
        Some(255) => Verdict::Skip(format!("ssh {host} failed: {}", err.trim())),
        Some(127) => Verdict::Fail(format!("exit 127 (command not found): {}", err.trim())),
        other => Verdict::Fail(format!("exit {other:?}: {}", err.trim())),
    })
}

/// Who owns the console: this user (logged in) or root (login window).
async fn console_state(env: &Env, obs: &Obs) -> String {
    let (user, _) = me().unwrap_or_default();
    match run(
        env,
        obs,
        "/usr/bin/stat",
        &["-f", "%Su", "/dev/console"],
        t(env),
    )
    .await
    {
        Ok((Some(0), out, _)) if out.trim() == user => "logged-in".to_owned(),
        Ok((Some(0), out, _)) => format!("logged-out (console: {})", out.trim()),
        _ => "unknown".to_owned(),
    }
}

async fn keychain(env: &Env, obs: &Obs) -> anyhow::Result<Verdict> {
    let (user, _) = me()?;
    let state = console_state(env, obs).await;
    obs.note("console", state.clone().into());
    let value = format!("marble-acceptance-dummy-{}", std::process::id());
    env.rec
        .cleanup_log(&format!("create keychain {KEYCHAIN_SERVICE} {user}"));
    let (status, _, err) = run(
        env,
        obs,
        "/usr/bin/security",
        &[
            "add-generic-password",
            "-U",
            "-s",
            KEYCHAIN_SERVICE,
            "-a",
            &user,
            "-w",
            &value,
        ],
        t(env),
    )
    .await?;
    if status != Some(0) {
        return Ok(Verdict::Fail(format!(
            "[{state}] cannot add a keychain item as {user}: {}",
            err.trim()
        )));
    }
    let here = marbled::ci::secret::read_keychain(
        std::path::Path::new(marbled::ci::secret::DEFAULT_SECURITY),
        KEYCHAIN_SERVICE,
        &user,
    )
    .map(|s| s.expose() == value)
    .map_err(|e| marbled::chain::ErrorChain(&e).to_string());
    let launchd = launchd_read(env, obs, &user).await;
    let _ = run(
        env,
        obs,
        "/usr/bin/security",
        &[
            "delete-generic-password",
            "-s",
            KEYCHAIN_SERVICE,
            "-a",
            &user,
        ],
        t(env),
    )
    .await;
    env.rec
        .cleanup_log(&format!("removed keychain {KEYCHAIN_SERVICE} {user}"));
    obs.note(
        "reads",
        json!({"in_process": format!("{here:?}"), "launchd_job": format!("{launchd:?}")}),
    );
    Ok(match (&here, &launchd) {
        (Ok(true), Ok(true)) => Verdict::Pass(format!(
            "[{state}] read in this session and by a LaunchDaemon job as {user}"
        )),
        _ => Verdict::Fail(format!(
            "[{state}] this session: {here:?}; LaunchDaemon job as {user}: {launchd:?} (a failure here means github.token_keychain cannot work under launchd: use token_file)"
        )),
    })
}

/// Run the `keychain_probe` test of this test binary as a one-shot LaunchDaemon job with
/// `UserName` = this user, and read what it found.
async fn launchd_read(env: &Env, obs: &Obs, user: &str) -> Result<bool, String> {
    let out = env.work.join("keychain-probe.out");
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let plist = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
<plist version=\"1.0\"><dict>\n\
<key>Label</key><string>{KEYCHAIN_LABEL}</string>\n\
<key>UserName</key><string>{user}</string>\n\
<key>ProgramArguments</key><array><string>{}</string><string>keychain_probe</string><string>--exact</string><string>--ignored</string><string>--test-threads=1</string></array>\n\
<key>EnvironmentVariables</key><dict><key>MARBLE_ACCEPT_KEYCHAIN_OUT</key><string>{}</string><key>MARBLE_ACCEPT_KEYCHAIN_SERVICE</key><string>{KEYCHAIN_SERVICE}</string><key>MARBLE_ACCEPT_KEYCHAIN_ACCOUNT</key><string>{user}</string></dict>\n\
<key>RunAtLoad</key><true/>\n\
</dict></plist>\n",
        exe.display(),
        out.display()
    );
    let staged = env.work.join("keychain-probe.plist");
    std::fs::write(&staged, plist).map_err(|e| e.to_string())?;
    env.rec
        .cleanup_log(&format!("create launchd {KEYCHAIN_LABEL}"));
    env.rec
        .cleanup_log(&format!("create path {KEYCHAIN_PLIST}"));
    let long = t(env);
    let staged_s = staged.display().to_string();
    let result = async {
        sudo_ok(
            env,
            obs,
            &["install", "-m", "0644", &staged_s, KEYCHAIN_PLIST],
            long,
        )
        .await?;
        sudo_ok(
            env,
            obs,
            &["launchctl", "bootstrap", "system", KEYCHAIN_PLIST],
            long,
        )
        .await?;
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&out)
                && text.ends_with('\n')
            {
                return Ok::<_, anyhow::Error>(text);
            }
            if started.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("the probe job wrote nothing within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    .await;
    let _ = sudo(
        env,
        obs,
        &["launchctl", "bootout", &format!("system/{KEYCHAIN_LABEL}")],
        long,
    )
    .await;
    let _ = sudo(env, obs, &["rm", "-f", KEYCHAIN_PLIST], long).await;
    env.rec
        .cleanup_log(&format!("removed launchd {KEYCHAIN_LABEL}"));
    env.rec
        .cleanup_log(&format!("removed path {KEYCHAIN_PLIST}"));
    let text = result.map_err(|e| format!("{e:#}"))?;
    let expected = format!("marble-acceptance-dummy-{}", std::process::id());
    match text.trim().strip_prefix("ok ") {
        Some(v) => Ok(v == expected),
        None => Err(text.trim().to_owned()),
    }
}

/// What the `keychain_probe` test writes: `ok VALUE` or `error CHAIN` (the value is the
/// suite's dummy, never a real secret).
pub fn keychain_probe_line(service: &str, account: &str) -> String {
    match marbled::ci::secret::read_keychain(
        std::path::Path::new(marbled::ci::secret::DEFAULT_SECURITY),
        service,
        account,
    ) {
        Ok(s) => format!("ok {}\n", s.expose()),
        Err(e) => format!("error {}\n", marbled::chain::ErrorChain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plist_user_is_replaced() {
        let t = "<dict>\n\t<key>UserName</key>\n\t<string>sftnight</string>\n\t<key>GroupName</key>\n\t<string>staff</string>\n</dict>";
        let p = plist_for(t, "alice").unwrap();
        assert!(p.contains("<key>UserName</key>\n\t<string>alice</string>"));
        assert!(p.contains("<string>staff</string>"));
        assert!(plist_for("<dict/>", "x").is_err());
    }

    #[test]
    fn launchctl_and_ps_parsing() {
        assert_eq!(
            launchctl_pid("system/x = {\n\tstate = running\n\tpid = 4242\n}"),
            Some(4242)
        );
        assert_eq!(launchctl_pid("state = waiting"), None);
        let ps = "/usr/local/bin/marbled --config x run PATH=/usr/bin HOME=/Users/sftnight USER=sftnight";
        assert_eq!(env_var(ps, "HOME"), Some("/Users/sftnight"));
        assert_eq!(env_var(ps, "TMPDIR"), None);
    }

    #[test]
    fn acceptance_config_is_manual_with_one_spi_vm() {
        let c = acceptance_config(Some("marble-acceptance-1"));
        assert_eq!(c.scheduler.policy, "manual");
        assert!(c.teams.root.is_empty());
        assert_eq!(c.teams.spi, vec!["marble-acceptance-1".to_owned()]);
        // What the install writes loads as `marbled check-config` loads it, with or without
        // a throw-away VM.
        let dir = tempfile::tempdir().unwrap();
        for vm in [Some("marble-acceptance-1"), None] {
            let path = dir.path().join("marbled.toml");
            std::fs::write(&path, toml::to_string(&acceptance_config(vm)).unwrap()).unwrap();
            let loaded = marbled::Config::load(&path).unwrap();
            assert_eq!(loaded.scheduler.policy, "manual");
        }
    }
}
