//! The simulated guest's `/bin/sh`: a POSIX shell interpreter over the VM's guest filesystem
//! (a host directory, see [`Vm::guest_root`]) and its process table.
//!
//! `prlctl exec VM a b c` runs `sh -c "a b c"` here ([`run`]): the session shell is a guest
//! process with that command line while it runs, every external command it starts is a child
//! process with its own argv, subshells (`(…)`, `$(…)`, pipeline members) are forks with the
//! parent's command line, and `sleep` advances the session's clock — processes that lived
//! through simulated time stay visible to other execs until their end time.
//!
//! Layout: [`lex`] and [`parse`] (into [`ast`]), [`expand`] (word expansion with
//! [`pattern`] and [`arith`]), [`eval`] (lists, pipelines, compound commands, redirections,
//! command lookup, `sh` itself), [`shell_builtins`] (`cd`, `set`, `export`, `read`, …),
//! [`builtins`] (the macOS utilities at their real paths), [`fileutils`], [`textutils`],
//! [`printf`], [`procs`] (`pgrep`, `pkill`, `kill`, `ps`), [`regex`], [`fs`], [`state`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::exec::GuestUser;
use super::model::{GuestProc, Vm};
use state::{Fd, Fds, Flow, Reader, ShellState, Sink};

pub mod archive;
pub mod arith;
pub mod ast;
pub mod builtins;
pub mod eval;
pub mod expand;
pub mod fileutils;
pub mod find;
pub mod fs;
pub mod lex;
pub mod parse;
pub mod pattern;
pub mod printf;
pub mod procs;
pub mod regex;
pub mod shell_builtins;
pub mod state;
pub mod textutils;

/// Result of running a guest command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ran {
    /// Guest stdout.
    pub stdout: Vec<u8>,
    /// Guest stderr.
    pub stderr: Vec<u8>,
    /// Exit status.
    pub exit: i32,
    /// Simulated time spent (`sleep`).
    pub delay_ms: u64,
    /// The command never ends (an endless loop, a wait that nothing satisfies).
    pub hang: bool,
}

/// Commands run before a session is declared hung.
const MAX_STEPS: u64 = 50_000;
/// Simulated time after which a session is declared hung.
const MAX_DELAY_MS: u64 = 7 * 24 * 3_600_000;
/// Nesting (functions, shells, substitutions) after which a command fails.
const MAX_DEPTH: u32 = 200;

/// One exec session: the VM, the clock, and the state of the shell process running now.
pub struct Session<'a> {
    /// The VM.
    pub vm: &'a mut Vm,
    /// Wall-clock ms when the session started.
    start: u64,
    /// Simulated time spent so far (`sleep`).
    pub delay_ms: u64,
    /// State of the current shell process.
    pub st: ShellState,
    /// Session processes killed while running, with their exit status.
    killed: BTreeMap<u32, i32>,
    /// Session processes running now (outermost first).
    live: Vec<u32>,
    steps: u64,
    depth: u32,
    /// Counter for `mktemp` names.
    pub seq: u64,
}

/// Run `prlctl exec`'s joined command line `line` in `vm` as `user`, like the guest's
/// `/bin/sh -c "$line"`, with `stdin` as its standard input.
pub fn run(vm: &mut Vm, line: &str, stdin: Vec<u8>, now: u64, user: &GuestUser) -> Ran {
    vm.procs.retain(|p| p.ends_ms.is_none_or(|e| e > now));
    let out = Rc::new(RefCell::new(Vec::new()));
    let err = Rc::new(RefCell::new(Vec::new()));
    let mut fds = Fds::default();
    fds.set(0, Fd::Read(Reader::shared(stdin)));
    fds.set(1, Fd::Write(Sink::Buf(out.clone())));
    fds.set(2, Fd::Write(Sink::Buf(err.clone())));
    let home = fs::home_of(&user.name, user.uid);
    let env = base_env(user, &home);
    let mut st = ShellState::new(user.clone(), home, 0o022, &env, fds);
    st.pid = 1;
    let mut s = Session {
        vm,
        start: now,
        delay_ms: 0,
        st,
        killed: BTreeMap::new(),
        live: Vec::new(),
        steps: 0,
        depth: 0,
        seq: 0,
    };
    let argv = vec!["sh".to_owned(), "-c".to_owned(), line.to_owned()];
    let result = s.run_external(&argv, false);
    let delay_ms = s.delay_ms;
    let (exit, hang) = match result {
        Ok(code) => (code, false),
        Err(Flow::Hang) => (0, true),
        Err(Flow::Exit(code) | Flow::Return(code)) => (code, false),
        Err(_) => (0, false),
    };
    let stdout = out.take();
    let stderr = err.take();
    Ran {
        stdout,
        stderr,
        exit,
        delay_ms,
        hang,
    }
}

/// The environment `prlctl exec` gives a command (nearly empty, per the reference).
fn base_env(user: &GuestUser, home: &str) -> Vec<(String, String)> {
    vec![
        (
            "PATH".to_owned(),
            "/usr/bin:/bin:/usr/sbin:/sbin".to_owned(),
        ),
        ("HOME".to_owned(), home.to_owned()),
        ("USER".to_owned(), user.name.clone()),
        ("LOGNAME".to_owned(), user.name.clone()),
        ("SHELL".to_owned(), "/bin/sh".to_owned()),
    ]
}

/// Whether running the command line `line` may read the exec's stdin (so the caller
/// collects stdin first). Over-approximates: a command whose name is computed, or any of
/// the utilities that read stdin (`cat`, `tee`, `grep`, `sh`, `read`, …) anywhere.
pub fn needs_stdin(line: &str) -> bool {
    match parse::parse_all(line) {
        Ok(items) => items_read_stdin(&items),
        Err(_) => false,
    }
}

fn items_read_stdin(items: &[ast::Item]) -> bool {
    items.iter().any(|i| {
        std::iter::once(&i.and_or.first)
            .chain(i.and_or.rest.iter().map(|(_, p)| p))
            .flat_map(|p| p.cmds.iter())
            .any(command_reads_stdin)
    })
}

fn command_reads_stdin(c: &ast::Command) -> bool {
    use ast::{Command, Compound};
    match c {
        Command::Simple(s) => {
            let in_words = s
                .words
                .iter()
                .chain(s.assigns.iter().map(|(_, w)| w))
                .any(word_reads_stdin);
            let name_reads = match s.words.first() {
                None => false,
                Some(w) => match w.static_text() {
                    Some(name) => {
                        let base = name.rsplit('/').next().unwrap_or(&name);
                        builtins::READS_STDIN.contains(&base)
                    }
                    None => true,
                },
            };
            in_words || name_reads
        }
        Command::Function(_, body) => command_reads_stdin(body),
        Command::Compound(c, _) => match c.as_ref() {
            Compound::Brace(l) | Compound::Subshell(l) => items_read_stdin(l),
            Compound::If { arms, otherwise } => {
                arms.iter()
                    .any(|(c, b)| items_read_stdin(c) || items_read_stdin(b))
                    || otherwise.as_deref().is_some_and(items_read_stdin)
            }
            Compound::For { words, body, .. } => {
                items_read_stdin(body) || words.iter().flatten().any(word_reads_stdin)
            }
            Compound::Loop { cond, body, .. } => items_read_stdin(cond) || items_read_stdin(body),
            Compound::Case { word, arms } => {
                word_reads_stdin(word) || arms.iter().any(|(_, b)| items_read_stdin(b))
            }
        },
    }
}

fn word_reads_stdin(w: &ast::Word) -> bool {
    fn parts(ps: &[ast::Part]) -> bool {
        ps.iter().any(|p| match p {
            ast::Part::Command(items) => items_read_stdin(items),
            ast::Part::Double(inner) => parts(inner),
            _ => false,
        })
    }
    parts(&w.0)
}

impl Session<'_> {
    /// The session clock: start plus simulated time spent.
    pub fn now(&self) -> u64 {
        self.start + self.delay_ms
    }

    /// Write to descriptor `fd`; `false` if it is not open for writing.
    pub fn write_fd(&mut self, fd: u32, data: &[u8]) -> bool {
        match self.st.fds.get(fd) {
            Some(Fd::Write(Sink::Buf(b))) => {
                b.borrow_mut().extend_from_slice(data);
                true
            }
            Some(Fd::Write(Sink::File(p))) => fs::append_host(p, data).is_ok(),
            Some(Fd::Write(Sink::Null)) => true,
            _ => false,
        }
    }

    /// Write to stdout.
    pub fn out(&mut self, data: impl AsRef<[u8]>) {
        self.write_fd(1, data.as_ref());
    }

    /// Write to stderr.
    pub fn err(&mut self, data: impl AsRef<[u8]>) {
        self.write_fd(2, data.as_ref());
    }

    /// Read all of stdin.
    pub fn stdin_all(&mut self) -> Vec<u8> {
        match self.st.fds.get(0) {
            Some(Fd::Read(r)) => r.borrow_mut().take_all(),
            _ => Vec::new(),
        }
    }

    /// Read one line of stdin (with its newline), `None` at its end.
    pub fn stdin_line(&mut self) -> Option<Vec<u8>> {
        match self.st.fds.get(0) {
            Some(Fd::Read(r)) => r.borrow_mut().take_line(),
            _ => None,
        }
    }

    /// Start a process (child of the current one) with `command` as its command line.
    pub fn spawn(&mut self, command: String) -> u32 {
        let pid = self.vm.next_pid;
        self.vm.next_pid += 1;
        self.vm.procs.push(GuestProc {
            pid,
            ppid: self.st.pid,
            command,
            started_ms: self.now(),
            ends_ms: None,
        });
        self.live.push(pid);
        pid
    }

    /// A session process ended: it disappears, or — if it lived through simulated time —
    /// stays visible to other execs until the time it ended.
    pub fn reap(&mut self, pid: u32) {
        self.live.retain(|p| *p != pid);
        let now = self.now();
        if let Some(i) = self.vm.procs.iter().position(|p| p.pid == pid) {
            if self.vm.procs[i].started_ms < now {
                self.vm.procs[i].ends_ms = Some(now);
            } else {
                self.vm.procs.remove(i);
            }
        }
    }

    /// Command line of the process running now.
    pub fn current_command(&self) -> String {
        self.vm
            .procs
            .iter()
            .find(|p| p.pid == self.st.pid)
            .map(|p| p.command.clone())
            .unwrap_or_default()
    }

    /// Replace the command line of the process running now (`exec`).
    pub fn set_current_command(&mut self, command: String) {
        let pid = self.st.pid;
        if let Some(p) = self.vm.procs.iter_mut().find(|p| p.pid == pid) {
            p.command = command;
        }
    }

    /// Processes visible now.
    pub fn visible(&self) -> Vec<GuestProc> {
        self.vm.visible_procs(self.now()).cloned().collect()
    }

    /// Deliver signal `sig` to `pid`: the process ends (a session process unwinds with
    /// status 128+sig). `false` if there is no such process.
    pub fn signal(&mut self, pid: u32, sig: i32) -> bool {
        let now = self.now();
        let Some(i) =
            self.vm.procs.iter().position(|p| {
                p.pid == pid && p.started_ms <= now && p.ends_ms.is_none_or(|e| e > now)
            })
        else {
            return false;
        };
        if sig == 0 {
            return true;
        }
        if self.live.contains(&pid) {
            self.killed.insert(pid, 128 + sig);
        } else {
            self.vm.procs.remove(i);
        }
        true
    }

    /// Unwind if a running session process was killed.
    pub fn check_killed(&self) -> Result<(), Flow> {
        match self.live.iter().find(|p| self.killed.contains_key(p)) {
            Some(pid) => Err(Flow::Killed(*pid)),
            None => Ok(()),
        }
    }

    /// Exit status of a killed session process.
    pub fn killed_status(&self, pid: u32) -> Option<i32> {
        self.killed.get(&pid).copied()
    }

    /// Count one command against the budget that declares a session hung.
    pub fn tick(&mut self) -> Result<(), Flow> {
        self.steps += 1;
        if self.steps > MAX_STEPS || self.delay_ms > MAX_DELAY_MS {
            return Err(Flow::Hang);
        }
        self.check_killed()
    }

    /// Enter a nested evaluation (function, shell, substitution); `false` when too deep.
    pub fn enter(&mut self) -> bool {
        self.depth += 1;
        self.depth <= MAX_DEPTH
    }

    /// Leave a nested evaluation.
    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::needs_stdin;

    #[test]
    fn stdin_is_read_only_when_the_line_can_read_it() {
        assert!(!needs_stdin("'/usr/bin/pgrep' '-lf' 'Runner.Worker'"));
        assert!(!needs_stdin("printf '%s' 'cat'"));
        assert!(needs_stdin("'/bin/sh' '-s'"));
        assert!(needs_stdin("umask 077 && cat > /x"));
        assert!(needs_stdin("x=$(cat)"));
        assert!(needs_stdin("$cmd"));
        assert!(needs_stdin("if true; then sudo -u a -- /bin/sh -s; fi"));
        assert!(!needs_stdin("for x in a; do"));
    }
}
