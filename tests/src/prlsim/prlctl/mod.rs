//! The `prlctl` command surface of the simulator: the process entry point
//! ([`fake_main`]: environment, faults that act before any work, hangs, the invocation log),
//! dispatch by verb, and the power verbs (`start`, `stop`, `suspend`, `resume`, `pause`,
//! `reset`, `restart`, `status`). Listing is in [`list`], VM management in [`manage`].

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use super::exec;
use super::faults::{FaultKind, take_fault};
use super::model::{SimState, Vm, VmState, now_ms};
use super::store::{Invocation, Store};
use super::{DIR_ENV, SimError};

pub mod list;
pub mod manage;
pub mod set;

/// `Failed to get VM config: …` for an unknown VM (§2.5).
pub const NOT_FOUND: &str = "Failed to get VM config: The virtual machine could not be found.";
/// The SDK's access-denied text (§7).
pub const ACCESS_DENIED: &str =
    "Access denied. You do not have enough rights to use this virtual machine.";
/// The exec session error (§4).
pub const SESSION_ERROR: &str = "Unable to open new session in this virtual machine. Make sure \
     your virtual machine has finished booting, runs the latest version of Parallels Tools, \
     and is not isolated from the host OS.";
/// Printed when the dispatcher is unreachable (exit 253).
pub const NO_SERVICE: &str = "Unable to connect to Parallels Service. Make sure that Parallels \
     Desktop is running and the Parallels Service is started.";
/// The spurious job failure seen on real hosts (§1).
pub const SPURIOUS: &str = "PrlJob_GetRetCode: Invalid argument. An invalid argument was passed.";

/// What one invocation prints and returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes for stdout.
    pub stdout: Vec<u8>,
    /// Bytes for stderr.
    pub stderr: Vec<u8>,
    /// Exit code.
    pub exit: i32,
    /// Wait this long before printing.
    pub delay_ms: u64,
    /// Block forever instead of finishing.
    pub hang: bool,
}

impl Outcome {
    /// Success with `out` on stdout.
    pub fn ok(out: impl Into<String>) -> Self {
        Outcome {
            stdout: out.into().into_bytes(),
            ..Outcome::default()
        }
    }
    /// Failure with `err` on stderr (a newline is added) and `exit`.
    pub fn err(err: impl Into<String>, exit: i32) -> Self {
        let mut e = err.into();
        e.push('\n');
        Outcome {
            stderr: e.into_bytes(),
            exit,
            ..Outcome::default()
        }
    }
    /// Failure after a progress line on stdout.
    pub fn err_after(progress: &str, err: impl Into<String>) -> Self {
        let mut o = Outcome::err(err, 255);
        o.stdout = format!("{progress}\n").into_bytes();
        o
    }
}

/// `Unrecognized option: <opt>`, exit 255.
pub fn unrecognized(opt: &str) -> Outcome {
    Outcome::err(format!("Unrecognized option: {opt}"), 255)
}

/// SDK wording for an operation that needs a running VM.
pub fn not_started(name: &str) -> String {
    format!(
        "Unable to perform the operation because the virtual machine \"{name}\" is not started. \
         This operation can be performed for running virtual machines only."
    )
}

/// SDK wording for an operation that needs a stopped VM.
pub fn not_stopped(name: &str) -> String {
    format!(
        "Unable to perform the operation because the virtual machine \"{name}\" is not stopped. \
         This operation can be performed for stopped virtual machines only."
    )
}

/// Whether the VM's bundle forbids changes: the `locked` flag (models `chflags uchg`) or a
/// bundle directory the caller cannot write (the dispatcher's own rule, §7).
pub fn is_locked(vm: &Vm) -> bool {
    vm.locked || nix::unistd::access(&vm.home, nix::unistd::AccessFlags::W_OK).is_err()
}

/// Entry point of the `fake-prlctl` binary; returns the exit code.
pub fn fake_main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Installed as `prlsrvctl` too (a link to this binary), like Parallels' own tools.
    let argv0 = std::env::args().next().unwrap_or_default();
    let as_prlsrvctl = std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n == "prlsrvctl");
    let Some(dir) = std::env::var_os(DIR_ENV).map(PathBuf::from) else {
        eprintln!("{NO_SERVICE}");
        eprintln!("(fake-prlctl: {DIR_ENV} is not set)");
        return 253;
    };
    let store = Store::new(dir);
    if as_prlsrvctl {
        let outcome = store
            .with_state(|st| super::prlsrvctl::answer(st, &args))
            .unwrap_or_else(|e| Outcome::err(format!("{NO_SERVICE} ({e})"), 253));
        let _ = std::io::stdout().write_all(&outcome.stdout);
        let _ = std::io::stderr().write_all(&outcome.stderr);
        let mut logged = vec!["prlsrvctl".to_owned()];
        logged.extend(args.iter().cloned());
        let _ = store.log_invocation(&Invocation {
            ts_ms: now_ms(),
            argv: logged,
            exit: Some(outcome.exit),
            pid: std::process::id(),
        });
        return outcome.exit;
    }
    let verb = args.first().cloned().unwrap_or_default();
    let pid = std::process::id();
    let log = |exit: Option<i32>| {
        let inv = Invocation {
            ts_ms: now_ms(),
            argv: args.clone(),
            exit,
            pid,
        };
        if let Err(e) = store.log_invocation(&inv) {
            eprintln!("fake-prlctl: cannot write the invocation log: {e}");
        }
    };
    // Faults that act before any work; taken under the lock, acted on outside it so a hung
    // or slow process never blocks the others.
    let pre = store.with_state(|st| {
        let slow = take_fault(st, &verb, &args, |k| matches!(k, FaultKind::Slow { .. }));
        let hang = take_fault(st, &verb, &args, |k| matches!(k, FaultKind::Hang { .. }));
        (slow, hang)
    });
    let (slow, hang) = match pre {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{NO_SERVICE}");
            eprintln!("(fake-prlctl: {e})");
            log(Some(253));
            return 253;
        }
    };
    if let Some(FaultKind::Slow { ms, .. }) = slow {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if let Some(FaultKind::Hang { ignore_sigterm, .. }) = hang {
        log(None);
        hang_forever(ignore_sigterm);
    }
    let mut stdin = std::io::stdin();
    let outcome = match dispatch(&store, &args, &mut stdin) {
        Ok(o) => o,
        Err(e) => Outcome::err(format!("fake-prlctl internal error: {e}"), 255),
    };
    if outcome.hang {
        log(None);
        hang_forever(false);
    }
    if outcome.delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(outcome.delay_ms));
    }
    // A closed pipe on the reader's side is the reader's business; exit code still counts.
    let _ = std::io::stdout().write_all(&outcome.stdout);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(&outcome.stderr);
    log(Some(outcome.exit));
    outcome.exit
}

/// Block until killed. With `ignore_sigterm`, SIGTERM is blocked so only SIGKILL ends it.
fn hang_forever(ignore_sigterm: bool) -> ! {
    if ignore_sigterm {
        let mut set = nix::sys::signal::SigSet::empty();
        set.add(nix::sys::signal::Signal::SIGTERM);
        if let Err(e) = set.thread_block() {
            eprintln!("fake-prlctl: cannot block SIGTERM: {e}");
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Answer one command line against the store.
pub fn dispatch(store: &Store, args: &[String], stdin: &mut dyn Read) -> Result<Outcome, SimError> {
    let Some(verb) = args.first() else {
        return Ok(Outcome::err(
            "prlctl: no action given. Try 'prlctl --help'.",
            255,
        ));
    };
    let rest = &args[1..];
    match verb.as_str() {
        "--version" | "-V" => {
            store.with_state(|st| Outcome::ok(format!("{}\n", st.settings.version_line)))
        }
        "list" => list::list(store, rest),
        "status" => store.with_state(|st| status(st, rest)),
        "start" | "stop" | "suspend" | "resume" | "pause" | "reset" | "restart" => {
            store.with_state(|st| power(st, verb, rest, args))
        }
        "exec" => exec::exec(store, rest, stdin),
        "create" | "set" => match unknown_option(store, rest)? {
            Some(opt) => Ok(unrecognized(&opt)),
            None if verb == "create" => manage::create(store, rest),
            None => manage::set(store, rest),
        },
        "register" => manage::register(store, rest),
        "unregister" => manage::unregister(store, rest),
        "delete" => manage::delete(store, rest, stdin),
        "clone" => manage::clone(store, rest),
        "snapshot" | "snapshot-list" | "snapshot-delete" => manage::snapshot(store, verb, rest),
        other => Ok(unrecognized(other)),
    }
}

/// The first of `args` that this Parallels build does not know (`Settings::unknown_options`).
fn unknown_option(store: &Store, args: &[String]) -> Result<Option<String>, SimError> {
    store.with_state(|st| {
        args.iter()
            .find(|a| st.settings.unknown_options.contains(a))
            .cloned()
    })
}

fn status(st: &mut SimState, rest: &[String]) -> Outcome {
    let Some(id) = rest.first() else {
        return Outcome::err("prlctl status: VM id is required", 255);
    };
    match st.find(id).and_then(|i| st.vms.get(i)) {
        Some(vm) => Outcome::ok(format!("VM {id} exist {}\n", list::state_word(vm))),
        None => Outcome::err(NOT_FOUND, 255),
    }
}

/// Progress line and success line of each power verb (§3).
fn messages(verb: &str, kill: bool) -> (&'static str, &'static str) {
    match verb {
        "start" => (
            "Starting the VM...",
            "The VM has been successfully started.",
        ),
        "stop" if kill => ("Stopping the VM...", "The VM has been forcibly stopped"),
        "stop" => (
            "Stopping the VM...",
            "The VM has been successfully stopped.",
        ),
        "suspend" => (
            "Suspending the VM...",
            "The VM has been successfully suspended.",
        ),
        "resume" => (
            "Resuming the VM...",
            "The VM has been successfully resumed.",
        ),
        "pause" => ("Pause the VM...", "The VM has been successfully paused."),
        "reset" => ("Resetting the VM...", "The VM has been successfully reset."),
        _ => (
            "Restarting the VM...",
            "The VM has been successfully restarted.",
        ),
    }
}

fn power(st: &mut SimState, verb: &str, rest: &[String], all: &[String]) -> Outcome {
    let Some(id) = rest.first() else {
        return Outcome::err(format!("prlctl {verb}: VM id is required"), 255);
    };
    let (mut kill, mut drop_state, mut acpi) = (false, false, false);
    for opt in &rest[1..] {
        match (verb, opt.as_str()) {
            ("stop", "--kill" | "--fast" | "-k") => kill = true,
            ("stop", "--drop-state") => drop_state = true,
            ("stop", "--acpi") => acpi = true,
            ("start", "--wait") => {}
            _ => return unrecognized(opt),
        }
    }
    let Some(idx) = st.find(id) else {
        return Outcome::err(NOT_FOUND, 255);
    };
    let now = now_ms();
    let (progress, done) = messages(verb, kill);
    let failed = |e: &str| {
        let what = if verb == "pause" { "pause" } else { verb };
        Outcome::err_after(progress, format!("Failed to {what} the VM: {e}"))
    };
    let spurious = take_fault(st, verb, all, |k| {
        matches!(k, FaultKind::SpuriousFailure { .. })
    });
    let stop_fault = if verb == "stop" && !kill && !drop_state {
        take_fault(st, verb, all, |k| {
            matches!(k, FaultKind::StopCanceled { .. } | FaultKind::StopNoop)
        })
    } else {
        None
    };
    let Some(vm) = st.vms.get_mut(idx) else {
        return Outcome::err(NOT_FOUND, 255);
    };
    if is_locked(vm) {
        return failed(ACCESS_DENIED);
    }
    let name = vm.name.clone();
    match (verb, vm.state) {
        ("start", VmState::Stopped) => {
            vm.power_on(now, vm.boot_delay_ms);
            if vm.pending_install {
                vm.pending_install = false;
                append_log(vm, "Installation succeeded\n");
            }
        }
        ("start" | "resume", VmState::Suspended | VmState::Paused) => {
            vm.state = VmState::Running;
            vm.guest_ready_ms = Some(now + vm.resume_delay_ms);
            if vm.started_ms.is_none() {
                vm.started_ms = Some(now);
            }
        }
        ("start", _) => return failed(&not_stopped(&name)),
        ("resume", VmState::Running) => {
            return failed(&format!(
                "The virtual machine \"{name}\" is already running."
            ));
        }
        ("stop", VmState::Stopped) => {
            // Virtuozzo's prlctl special-cases "not started" on stop to exit 0 (§3).
            let mut o = Outcome::err(format!("Failed to stop the VM: {}", not_started(&name)), 0);
            o.stdout = format!("{progress}\n").into_bytes();
            return o;
        }
        ("stop", VmState::Suspended) if !drop_state => return failed(&not_started(&name)),
        ("stop", _) => match stop_fault {
            Some(FaultKind::StopCanceled { after_ms }) => {
                if after_ms == 0 {
                    vm.power_off();
                } else {
                    vm.pending_stop_ms = Some(now + after_ms);
                }
                return failed("Operation canceled");
            }
            Some(FaultKind::StopNoop) => {}
            _ => {
                let _ = acpi; // graceful and ACPI behave alike in the simulator
                vm.power_off();
            }
        },
        ("suspend", VmState::Running) => vm.state = VmState::Suspended,
        ("pause", VmState::Running) => vm.state = VmState::Paused,
        ("reset" | "restart", VmState::Running) => {
            vm.procs.clear();
            vm.power_on(now, vm.boot_delay_ms);
        }
        (_, _) => return failed(&not_started(&name)),
    }
    if spurious.is_some() {
        return Outcome::err_after(progress, format!("Failed to {verb} the VM: {SPURIOUS}"));
    }
    Outcome::ok(format!("{progress}\n{done}\n"))
}

fn append_log(vm: &Vm, line: &str) {
    let p = vm.home.join("parallels.log");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
    {
        let _ = f.write_all(line.as_bytes());
    }
}
