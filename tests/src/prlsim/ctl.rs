//! The `prlsim` command line: script a simulated host by hand (demos, debugging), over the
//! same [`SimHost`] API tests use. Grammar is noun then verb; see [`USAGE`].

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use super::faults::FaultKind;
use super::host::SimHost;
use super::model::{ExecRule, VmState};
use super::{DIR_ENV, SimError};

/// Help text.
pub const USAGE: &str = "\
usage: prlsim [--dir DIR] COMMAND   (DIR defaults to $MARBLE_PRLSIM_DIR)

  init [--vm NAME]... [--running NAME]...   create the host, optionally with VMs
  vm add NAME [--running]                   register a new VM (bundle under DIR/vms)
  vm state VM stopped|running|paused|suspended
  vm boot-delay VM MS | vm resume-delay VM MS
  vm tools VM installed|not_installed|outdated|possibly_installed
  vm lock VM | vm unlock VM | vm isolate VM on|off
  proc add VM CMD...        start a guest process now
  proc rm VM PATTERN        kill guest processes whose command contains PATTERN
  proc boot-add VM CMD...   start CMD on every boot (after the boot delay)
  proc boot-rm VM PATTERN
  proc ls VM
  rule add VM (--exact S | --contains S) [--stdout S] [--stderr S] [--exit N]
           [--delay-ms N] [--hang] [--session-error] [--run] [--spawn CMD] [--kill PAT]
           [--times N]   (--run: spawn/kill, then run the command in the guest shell)
  rule clear VM
  fault set (VM | --global) SPEC [--times N]
        SPEC: hang[:VERB] hang-ignore-term[:VERB] slow:VERB:MS stop-canceled[:MS]
              stop-noop list-garbage login-failed exec-session-error
              spurious-failure:VERB locked
  fault clear [VM]          clear the VM's faults, or all faults
  guest cat VM PATH | guest mode VM PATH | guest root VM
  guest write VM PATH [--mode OCTAL]   (contents from stdin)
  show                      the whole state as JSON
  log [clear]               the invocation log (JSON lines)
  env                       print `export MARBLE_PRLSIM_DIR=DIR`
";

/// Entry point of the `prlsim` binary; returns the exit code.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => {
            print!("{out}");
            0
        }
        Err(CtlError::Usage(m)) => {
            eprintln!("prlsim: {m}\n\n{USAGE}");
            64
        }
        Err(CtlError::Sim(e)) => {
            eprintln!("prlsim: {e}");
            1
        }
    }
}

/// Why a `prlsim` command failed.
#[derive(Debug)]
pub enum CtlError {
    /// Bad command line.
    Usage(String),
    /// The simulator refused.
    Sim(SimError),
}

impl From<SimError> for CtlError {
    fn from(e: SimError) -> Self {
        CtlError::Sim(e)
    }
}

fn usage<T>(m: impl Into<String>) -> Result<T, CtlError> {
    Err(CtlError::Usage(m.into()))
}

fn num(s: Option<&String>, what: &str) -> Result<u64, CtlError> {
    match s.and_then(|v| v.parse().ok()) {
        Some(n) => Ok(n),
        None => usage(format!("{what} needs a number")),
    }
}

/// Run one `prlsim` command line (without the program name); returns stdout text.
pub fn run(args: &[String]) -> Result<String, CtlError> {
    let (dir, rest) = match args {
        [flag, d, rest @ ..] if flag == "--dir" => (PathBuf::from(d), rest),
        _ => match std::env::var_os(DIR_ENV) {
            Some(d) => (PathBuf::from(d), args),
            None => return usage(format!("no --dir and {DIR_ENV} is not set")),
        },
    };
    let host = SimHost::create(&dir)?;
    let words: Vec<&str> = rest.iter().map(String::as_str).collect();
    let s = |i: usize| rest.get(i).cloned().unwrap_or_default();
    match words.as_slice() {
        ["init", ..] => {
            let mut it = rest[1..].iter();
            while let Some(a) = it.next() {
                match (a.as_str(), it.next()) {
                    ("--vm", Some(n)) => drop(host.add_vm(n)?),
                    ("--running", Some(n)) => drop(host.add_running_vm(n)?),
                    _ => return usage(format!("init: unexpected {a}")),
                }
            }
            Ok(format!("initialized {}\n", dir.display()))
        }
        ["vm", "add", name, flags @ ..] => {
            let uuid = if flags == ["--running"] {
                host.add_running_vm(name)?
            } else {
                host.add_vm(name)?
            };
            Ok(format!("{uuid}\n"))
        }
        ["vm", "state", vm, state] => match VmState::parse(state) {
            Some(st) => host
                .set_vm_state(vm, st)
                .map(|()| String::new())
                .map_err(Into::into),
            None => usage(format!("unknown state {state}")),
        },
        ["vm", "boot-delay", vm, _] => {
            host.set_boot_delay(vm, Duration::from_millis(num(rest.get(3), "boot-delay")?))?;
            Ok(String::new())
        }
        ["vm", "resume-delay", vm, _] => {
            host.set_resume_delay(vm, Duration::from_millis(num(rest.get(3), "resume-delay")?))?;
            Ok(String::new())
        }
        ["vm", "tools", vm, state] => {
            Ok(host.set_tools_state(vm, state).map(|()| String::new())?)
        }
        ["vm", "lock", vm] => Ok(host.set_locked(vm, true).map(|()| String::new())?),
        ["vm", "unlock", vm] => Ok(host.set_locked(vm, false).map(|()| String::new())?),
        ["vm", "isolate", vm, on] => {
            Ok(host.set_isolated(vm, *on == "on").map(|()| String::new())?)
        }
        ["proc", "add", vm, cmd @ ..] if !cmd.is_empty() => {
            Ok(format!("{}\n", host.add_process(vm, &cmd.join(" "))?))
        }
        ["proc", "rm", vm, pat] => Ok(format!("{}\n", host.remove_processes(vm, pat)?)),
        ["proc", "boot-add", vm, cmd @ ..] if !cmd.is_empty() => Ok(host
            .add_boot_process(vm, &cmd.join(" "))
            .map(|()| String::new())?),
        ["proc", "boot-rm", vm, pat] => Ok(host
            .remove_boot_processes(vm, pat)
            .map(|()| String::new())?),
        ["proc", "ls", vm] => Ok(host
            .processes(vm)?
            .iter()
            .map(|p| format!("{} {}\n", p.pid, p.command))
            .collect()),
        ["rule", "add", vm, ..] => {
            let rule = parse_rule(&rest[3..])?;
            host.add_exec_rule(vm, rule)?;
            Ok(String::new())
        }
        ["rule", "clear", vm] => Ok(host.clear_exec_rules(vm).map(|()| String::new())?),
        ["fault", "set", target, spec, more @ ..] => {
            let times = match more {
                [] => None,
                ["--times", _] => {
                    Some(u32::try_from(num(rest.get(5), "--times")?).unwrap_or(u32::MAX))
                }
                _ => return usage("fault set: only --times N may follow the spec"),
            };
            let vm = if *target == "--global" {
                None
            } else {
                Some(*target)
            };
            if *spec == "locked" {
                let Some(vm) = vm else {
                    return usage("locked needs a VM");
                };
                host.set_locked(vm, true)?;
                return Ok(String::new());
            }
            let Some(kind) = FaultKind::parse(spec) else {
                return usage(format!("unknown fault {spec}"));
            };
            host.set_fault(vm, kind, times)?;
            Ok(String::new())
        }
        ["fault", "clear"] => Ok(host.clear_faults(None).map(|()| String::new())?),
        ["fault", "clear", vm] => {
            host.clear_faults(Some(vm))?;
            host.set_locked(vm, false)?;
            Ok(String::new())
        }
        ["guest", "cat", vm, path] => match host.read_guest_file(vm, path)? {
            Some(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            None => Err(SimError::Invalid(format!("no guest file {path}")).into()),
        },
        ["guest", "mode", vm, path] => match host.guest_file_mode(vm, path)? {
            Some(m) => Ok(format!("{m:04o}\n")),
            None => Err(SimError::Invalid(format!("no guest file {path}")).into()),
        },
        ["guest", "root", vm] => Ok(format!("{}\n", host.guest_root(vm)?.display())),
        ["guest", "write", vm, path, more @ ..] => {
            let mode = match more {
                [] => 0o644,
                ["--mode", m] => match u32::from_str_radix(m, 8) {
                    Ok(m) => m,
                    Err(_) => return usage("--mode needs an octal mode"),
                },
                _ => return usage("guest write: only --mode may follow"),
            };
            let mut data = Vec::new();
            std::io::stdin()
                .read_to_end(&mut data)
                .map_err(|e| SimError::io(std::path::Path::new("<stdin>"), e))?;
            host.write_guest_file(vm, path, &data, mode)?;
            Ok(String::new())
        }
        ["show"] => Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&host.state()?)
                .map_err(|e| SimError::Invalid(e.to_string()))?
        )),
        ["log"] => Ok(host
            .invocations()?
            .iter()
            .filter_map(|i| serde_json::to_string(i).ok())
            .map(|l| format!("{l}\n"))
            .collect()),
        ["log", "clear"] => Ok(host.clear_invocations().map(|()| String::new())?),
        ["env"] => Ok(format!("export {DIR_ENV}={}\n", dir.display())),
        _ => usage(format!("unknown command {:?}", s(0))),
    }
}

fn parse_rule(args: &[String]) -> Result<ExecRule, CtlError> {
    let mut rule: Option<ExecRule> = None;
    let mut it = args.iter();
    let need = |it: &mut std::slice::Iter<'_, String>, flag: &str| match it.next() {
        Some(v) => Ok(v.clone()),
        None => usage(format!("{flag} needs a value")),
    };
    let mut pending: Vec<(String, String)> = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--exact" => rule = Some(ExecRule::exact(&need(&mut it, a)?)),
            "--contains" => rule = Some(ExecRule::contains(&need(&mut it, a)?)),
            "--hang" | "--session-error" | "--run" => pending.push((a.clone(), String::new())),
            "--stdout" | "--stderr" | "--exit" | "--delay-ms" | "--spawn" | "--kill"
            | "--times" => {
                let v = need(&mut it, a)?;
                pending.push((a.clone(), v));
            }
            other => return usage(format!("rule add: unexpected {other}")),
        }
    }
    let Some(mut rule) = rule else {
        return usage("rule add needs --exact or --contains");
    };
    for (flag, v) in pending {
        rule = match flag.as_str() {
            "--hang" => rule.hang(),
            "--session-error" => rule.session_error(),
            "--run" => rule.then_run(),
            "--stdout" => rule.stdout(&v.replace("\\n", "\n")),
            "--stderr" => rule.stderr(&v.replace("\\n", "\n")),
            "--exit" => rule.exit(
                v.parse()
                    .map_err(|_| CtlError::Usage("--exit needs a number".into()))?,
            ),
            "--delay-ms" => rule.delay_ms(
                v.parse()
                    .map_err(|_| CtlError::Usage("--delay-ms needs a number".into()))?,
            ),
            "--spawn" => rule.spawns(&v),
            "--kill" => rule.kills(&v),
            _ => rule.times(
                v.parse()
                    .map_err(|_| CtlError::Usage("--times needs a number".into()))?,
            ),
        };
    }
    Ok(rule)
}
