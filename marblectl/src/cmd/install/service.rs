//! Starting, stopping and restarting the daemon, behind [`ServiceManager`]: launchd on a
//! host; nothing for a `--destdir` staging; and [`PidFile`], a stand-in for tests on Linux
//! that does what launchd does with the installed plist (run `ProgramArguments` with
//! `EnvironmentVariables` and the log paths; stop with SIGTERM, SIGKILL after `ExitTimeOut`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Layout;
use super::files::{InstallError, read_plist};
use crate::client::LAUNCHD_LABEL;

/// Start, stop, restart the daemon. Each returns what it did, for the operator.
pub trait ServiceManager {
    /// Start it (install).
    fn start(&self) -> Result<String, InstallError>;
    /// Stop it gracefully (uninstall). Never stops a VM: marbled leaves VMs running on SIGTERM.
    fn stop(&self) -> Result<String, InstallError>;
    /// Stop, then start the new binaries with the new plist (upgrade).
    fn restart(&self) -> Result<String, InstallError> {
        let stopped = self.stop()?;
        let started = self.start()?;
        Ok(format!("{stopped}; {started}"))
    }
    /// Whether a daemon runs afterwards (false for a staging).
    fn manages_daemon(&self) -> bool;
}

/// The manager for these flags: the pid-file stand-in when given, launchd on a host, nothing
/// for a `--destdir` staging.
pub fn for_args(layout: &Layout, pid_file: Option<&Path>) -> Box<dyn ServiceManager> {
    match pid_file {
        Some(pid_file) => Box::new(PidFile {
            layout: layout.clone(),
            pid_file: pid_file.to_owned(),
        }),
        None if layout.destdir != Path::new("/") => Box::new(Staged(layout.plist())),
        None => Box::new(Launchd {
            plist: layout.plist(),
        }),
    }
}

/// `--destdir`: the files are for another host; nothing is started there.
struct Staged(PathBuf);

impl ServiceManager for Staged {
    fn start(&self) -> Result<String, InstallError> {
        Ok(format!(
            "--destdir: marbled not started; on the host: sudo launchctl bootstrap system {}",
            self.0.display()
        ))
    }
    fn stop(&self) -> Result<String, InstallError> {
        Ok("--destdir: no daemon stopped".into())
    }
    fn restart(&self) -> Result<String, InstallError> {
        Ok(format!(
            "--destdir: marbled not restarted; on the host: sudo launchctl bootout system/{LAUNCHD_LABEL} && sudo launchctl bootstrap system {}",
            self.0.display()
        ))
    }
    fn manages_daemon(&self) -> bool {
        false
    }
}

/// launchd's system domain.
struct Launchd {
    plist: PathBuf,
}

fn launchctl(args: &[&str]) -> Result<(bool, String), InstallError> {
    let out = Command::new("/bin/launchctl")
        .args(args)
        .output()
        .map_err(|e| InstallError::Command {
            command: format!("launchctl {}", args.join(" ")),
            detail: e.to_string(),
        })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text.trim().to_owned()))
}

impl ServiceManager for Launchd {
    fn start(&self) -> Result<String, InstallError> {
        let plist = self.plist.display().to_string();
        // A reinstall over a loaded job: bootstrap would refuse ("already loaded"), and the
        // job must pick up the new plist anyway.
        let stopped = if launchctl(&["print", &format!("system/{LAUNCHD_LABEL}")])?.0 {
            format!("{}; ", self.stop()?)
        } else {
            String::new()
        };
        match launchctl(&["bootstrap", "system", &plist])? {
            (true, _) => Ok(format!(
                "{stopped}launchctl bootstrap system {plist}: started"
            )),
            (false, text) => Err(InstallError::Command {
                command: format!("launchctl bootstrap system {plist}"),
                detail: text,
            }),
        }
    }
    fn stop(&self) -> Result<String, InstallError> {
        let target = format!("system/{LAUNCHD_LABEL}");
        // bootout sends SIGTERM and waits up to the plist's ExitTimeOut; "not loaded" is fine.
        match launchctl(&["bootout", &target])? {
            (true, _) => Ok(format!("launchctl bootout {target}: stopped")),
            (false, text) if launchctl(&["print", &target])?.0 => Err(InstallError::Command {
                command: format!("launchctl bootout {target}"),
                detail: text,
            }),
            (false, _) => Ok(format!("{target} was not loaded")),
        }
    }
    fn manages_daemon(&self) -> bool {
        true
    }
}

/// The test stand-in for launchd: the daemon's pid in a file.
pub struct PidFile {
    layout: Layout,
    pid_file: PathBuf,
}

impl PidFile {
    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// Whether `pid` has exited (gone, or a zombie nobody reaped: the spawning marblectl exits
/// and the daemon's new parent may not reap it).
fn exited(pid: i32) -> bool {
    use nix::sys::signal::kill;
    if kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return true;
    }
    Command::new("ps")
        .args(["-o", "stat=", "-p", &pid.to_string()])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

impl ServiceManager for PidFile {
    fn start(&self) -> Result<String, InstallError> {
        let plist_path = self.layout.host(&self.layout.plist());
        let dict = read_plist(&plist_path)?;
        let argv: Vec<PathBuf> = dict
            .get("ProgramArguments")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_string())
                    .map(|s| {
                        if s.starts_with('/') {
                            self.layout.host(Path::new(s))
                        } else {
                            PathBuf::from(s)
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let Some((program, args)) = argv.split_first() else {
            return Err(InstallError::Usage(format!(
                "{}: no ProgramArguments",
                plist_path.display()
            )));
        };
        let log = |key: &str| -> Result<Stdio, InstallError> {
            let Some(path) = dict.get(key).and_then(|v| v.as_string()) else {
                return Ok(Stdio::null());
            };
            let path = self.layout.host(Path::new(path));
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|source| InstallError::Io {
                    what: "open",
                    path,
                    source,
                })?;
            Ok(file.into())
        };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(log("StandardOutPath")?)
            .stderr(log("StandardErrorPath")?);
        if let Some(env) = dict
            .get("EnvironmentVariables")
            .and_then(|v| v.as_dictionary())
        {
            for (k, v) in env {
                cmd.env(k, v.as_string().unwrap_or_default());
            }
        }
        // Its own process group, like a launchd job: not killed with this terminal's.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| InstallError::Command {
            command: format!("{cmd:?}"),
            detail: e.to_string(),
        })?;
        std::fs::write(&self.pid_file, format!("{}\n", child.id())).map_err(|source| {
            InstallError::Io {
                what: "write",
                path: self.pid_file.clone(),
                source,
            }
        })?;
        Ok(format!(
            "started {} (pid {})",
            program.display(),
            child.id()
        ))
    }

    fn stop(&self) -> Result<String, InstallError> {
        use nix::sys::signal::{Signal, kill};
        let Some(pid) = self.pid() else {
            return Ok("no daemon pid recorded".into());
        };
        let target = nix::unistd::Pid::from_raw(pid);
        if exited(pid) {
            return Ok(format!("pid {pid} was not running"));
        }
        let _ = kill(target, Signal::SIGTERM);
        let deadline =
            Instant::now() + Duration::from_secs(super::plist::EXIT_TIMEOUT.unsigned_abs());
        while !exited(pid) {
            if Instant::now() >= deadline {
                let _ = kill(target, Signal::SIGKILL);
                return Ok(format!("pid {pid} killed after ExitTimeOut"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(format!("stopped pid {pid} (SIGTERM)"))
    }

    fn manages_daemon(&self) -> bool {
        true
    }
}
