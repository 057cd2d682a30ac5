//! `prlctl exec VM [--current-user | --user U [--password P]] CMD…`: the session checks
//! (running, booted, Tools, not isolated, fault), the oversized-argv hang, scripted rules, and
//! hand-off to the guest shell ([`super::guest`]).
//!
//! Argument model (reference §4): argv boundaries are not kept. Everything from the first
//! non-option word on is joined with single spaces and the guest runs that line with
//! `/bin/sh -c "<line>"`, so quoting, `$`, globs and `;` in the arguments are re-parsed by the
//! guest shell. Rules match the same joined line.

use std::io::{IsTerminal, Read};

use super::SimError;
use super::faults::{FaultKind, take_fault};
use super::guest;
use super::model::{GuestProc, RuleAction, VmState, now_ms};
use super::prlctl::{NOT_FOUND, Outcome, SESSION_ERROR, unrecognized};
use super::store::Store;

/// Guest identity of an exec session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestUser {
    /// User name.
    pub name: String,
    /// Numeric uid.
    pub uid: u32,
}

impl GuestUser {
    /// `root` (the default on macOS guests).
    pub fn root() -> Self {
        GuestUser {
            name: "root".to_owned(),
            uid: 0,
        }
    }
}

/// Run `prlctl exec` (arguments after the verb).
pub fn exec(store: &Store, rest: &[String], stdin: &mut dyn Read) -> Result<Outcome, SimError> {
    let Some(id) = rest.first() else {
        return Ok(Outcome::err("prlctl exec: VM id is required", 255));
    };
    let mut user = GuestUser::root();
    let mut i = 1;
    while let Some(a) = rest.get(i) {
        match a.as_str() {
            "--current-user" => {
                user = GuestUser {
                    name: "admin".to_owned(),
                    uid: 501,
                }
            }
            "--user" => {
                i += 1;
                let name = rest.get(i).cloned().unwrap_or_default();
                user = GuestUser {
                    uid: if name == "root" { 0 } else { 501 },
                    name,
                };
            }
            "--password" => i += 1,
            "--without-shell" | "--resolve-paths" => {}
            s if s.starts_with("--") => return Ok(unrecognized(s)),
            _ => break,
        }
        i += 1;
    }
    let cmd: Vec<String> = rest.get(i..).unwrap_or_default().to_vec();
    if cmd.is_empty() {
        return Ok(Outcome::err(
            "prlctl exec: the command to execute is required",
            255,
        ));
    }
    let joined = cmd.join(" ");
    // Read stdin before taking the state lock, and only when the guest command may read it, so
    // a caller that leaves stdin open blocks only this invocation.
    let input = if !std::io::stdin().is_terminal() && guest::needs_stdin(&joined) {
        let mut buf = Vec::new();
        stdin
            .read_to_end(&mut buf)
            .map_err(|e| SimError::io(std::path::Path::new("<stdin>"), e))?;
        buf
    } else {
        Vec::new()
    };
    let mut all = vec!["exec".to_owned()];
    all.extend_from_slice(rest);
    store.with_state(|st| {
        let now = now_ms();
        let limit = st.settings.exec_argv_hang_bytes;
        let fault = take_fault(st, "exec", &all, |k| {
            matches!(k, FaultKind::ExecSessionError)
        });
        let Some(idx) = st.find(id) else {
            return Outcome::err(NOT_FOUND, 255);
        };
        let vm = &mut st.vms[idx];
        if vm.state != VmState::Running {
            return Outcome::err(
                format!(
                    "Unable to perform the operation because \"{}\" is not started.",
                    vm.name
                ),
                255,
            );
        }
        if fault.is_some() || !vm.guest_ready(now) || vm.isolated || vm.tools_state != "installed" {
            return Outcome::err(SESSION_ERROR, 255);
        }
        let argv_bytes: usize = cmd.iter().map(|a| a.len() + 1).sum();
        if limit.is_some_and(|l| argv_bytes > l) {
            return Outcome {
                hang: true,
                ..Outcome::default()
            };
        }
        if let Some(r) = vm
            .exec_rules
            .iter()
            .position(|r| r.remaining != Some(0) && r.matches(&joined))
        {
            let rule = vm.exec_rules[r].clone();
            if let Some(n) = vm.exec_rules[r].remaining.as_mut() {
                *n = n.saturating_sub(1);
            }
            for k in &rule.kill {
                vm.procs.retain(|p| !p.command.contains(k.as_str()));
            }
            for s in &rule.spawn {
                vm.spawn(s, now);
            }
            if rule.action == RuleAction::Reply && rule.delay_ms > 0 {
                // The guest shell runs for the rule's delay: other execs see it meanwhile.
                let pid = vm.next_pid;
                vm.next_pid += 1;
                vm.procs.push(GuestProc {
                    pid,
                    ppid: 1,
                    command: format!("sh -c {joined}"),
                    started_ms: now,
                    ends_ms: Some(now + rule.delay_ms),
                });
            }
            match rule.action {
                RuleAction::Hang => {
                    return Outcome {
                        hang: true,
                        ..Outcome::default()
                    };
                }
                RuleAction::SessionError => return Outcome::err(SESSION_ERROR, 255),
                RuleAction::Reply => {
                    return Outcome {
                        stdout: rule.stdout.into_bytes(),
                        stderr: rule.stderr.into_bytes(),
                        exit: rule.exit,
                        delay_ms: rule.delay_ms,
                        hang: false,
                    };
                }
                RuleAction::Run => {}
            }
        }
        let ran = guest::run(vm, &joined, input, now, &user);
        Outcome {
            stdout: ran.stdout,
            stderr: ran.stderr,
            exit: ran.exit,
            delay_ms: ran.delay_ms,
            hang: ran.hang,
        }
    })
}
