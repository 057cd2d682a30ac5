//! Per-process state of a guest shell (variables, positional parameters, options, functions,
//! working directory, umask, identity, file descriptors) and the non-local control flow of
//! the evaluator. A subshell is a clone of this state, thrown away when it ends.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use super::ast::Command;
use crate::prlsim::exec::GuestUser;

/// Non-local exits through the evaluator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// `exit N`, `set -e`, a fatal expansion error: the current shell process ends.
    Exit(i32),
    /// `return N` from a function (or a dot script).
    Return(i32),
    /// `break N`.
    Break(u32),
    /// `continue N`.
    Continue(u32),
    /// A process of this session (the pid) was killed: unwind to the frame that runs it.
    Killed(u32),
    /// The script would run forever (step or simulated-time budget spent): the exec hangs.
    Hang,
}

/// Result of evaluation: an exit status, or non-local control flow.
pub type Status = Result<i32, Flow>;

/// A shell variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    /// Value.
    pub value: String,
    /// Passed to child processes.
    pub exported: bool,
    /// `readonly`.
    pub readonly: bool,
}

/// `set` options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Opts {
    /// `-e`.
    pub errexit: bool,
    /// `-u`.
    pub nounset: bool,
    /// `-x`.
    pub xtrace: bool,
    /// `-f`.
    pub noglob: bool,
    /// `-o pipefail`.
    pub pipefail: bool,
    /// `-C`.
    pub noclobber: bool,
}

impl Opts {
    /// `$-`.
    pub fn flags(&self) -> String {
        let mut s = String::new();
        for (on, c) in [
            (self.errexit, 'e'),
            (self.noglob, 'f'),
            (self.nounset, 'u'),
            (self.xtrace, 'x'),
            (self.noclobber, 'C'),
        ] {
            if on {
                s.push(c);
            }
        }
        s
    }
}

/// Bytes a descriptor reads from, shared by every descriptor that refers to it (a child
/// reading the shell's stdin consumes what the shell would have read next).
#[derive(Debug, Default)]
pub struct Reader {
    /// All bytes.
    pub data: Vec<u8>,
    /// Read position.
    pub pos: usize,
}

impl Reader {
    /// A shared reader over `data`.
    pub fn shared(data: Vec<u8>) -> Rc<RefCell<Reader>> {
        Rc::new(RefCell::new(Reader { data, pos: 0 }))
    }

    /// The unread bytes.
    pub fn rest(&self) -> &[u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    /// Read everything left.
    pub fn take_all(&mut self) -> Vec<u8> {
        let out = self.rest().to_vec();
        self.pos = self.data.len();
        out
    }

    /// Read one line including its newline (`None` at end of input).
    pub fn take_line(&mut self) -> Option<Vec<u8>> {
        let rest = self.rest();
        if rest.is_empty() {
            return None;
        }
        let n = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = rest[..n].to_vec();
        self.pos += n;
        Some(line)
    }
}

/// Where written bytes go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// An in-memory buffer (the exec's stdout/stderr, a pipe, a command substitution).
    Buf(Rc<RefCell<Vec<u8>>>),
    /// A host file inside the guest root, already created/truncated; writes append.
    File(PathBuf),
    /// `/dev/null`.
    Null,
}

/// An open file descriptor.
#[derive(Debug, Clone)]
pub enum Fd {
    /// Readable.
    Read(Rc<RefCell<Reader>>),
    /// Writable.
    Write(Sink),
}

/// Descriptors 0–9.
#[derive(Debug, Clone, Default)]
pub struct Fds(pub BTreeMap<u32, Fd>);

impl Fds {
    /// Descriptor `n`, if open.
    pub fn get(&self, n: u32) -> Option<&Fd> {
        self.0.get(&n)
    }

    /// Open (or replace) descriptor `n`.
    pub fn set(&mut self, n: u32, fd: Fd) {
        self.0.insert(n, fd);
    }

    /// Close descriptor `n`.
    pub fn close(&mut self, n: u32) {
        self.0.remove(&n);
    }
}

/// Everything a shell process carries (and a subshell copies).
#[derive(Debug, Clone)]
pub struct ShellState {
    /// Variables.
    pub vars: BTreeMap<String, Var>,
    /// `$1…`.
    pub positional: Vec<String>,
    /// `$0`.
    pub arg0: String,
    /// `$?`.
    pub status: i32,
    /// `set` options.
    pub opts: Opts,
    /// Defined functions.
    pub funcs: BTreeMap<String, Rc<Command>>,
    /// `$$`: the pid of the shell (a subshell keeps its parent's).
    pub shell_pid: u32,
    /// The pid of the process currently running (a subshell, a command being run).
    pub pid: u32,
    /// `$!`.
    pub last_bg: Option<u32>,
    /// Working directory (guest path).
    pub cwd: String,
    /// File-creation mask.
    pub umask: u32,
    /// Identity.
    pub user: GuestUser,
    /// Open descriptors.
    pub fds: Fds,
    /// Depth of contexts where `set -e` does not apply (conditions, `&&`/`||` heads, `!`).
    pub errexit_off: u32,
    /// `trap` actions by condition (only `EXIT` runs).
    pub traps: BTreeMap<String, String>,
    /// Saved variables of `local`, one frame per running function.
    pub locals: Vec<Vec<(String, Option<Var>)>>,
    /// Status of the last command substitution of the current simple command.
    pub comsub_status: Option<i32>,
}

impl ShellState {
    /// A fresh shell for `user` in `cwd` with `env` (exported) and descriptors `fds`.
    pub fn new(
        user: GuestUser,
        cwd: String,
        umask: u32,
        env: &[(String, String)],
        fds: Fds,
    ) -> Self {
        let vars = env
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Var {
                        value: v.clone(),
                        exported: true,
                        readonly: false,
                    },
                )
            })
            .collect();
        ShellState {
            vars,
            positional: Vec::new(),
            arg0: "sh".to_owned(),
            status: 0,
            opts: Opts::default(),
            funcs: BTreeMap::new(),
            shell_pid: 0,
            pid: 0,
            last_bg: None,
            cwd,
            umask,
            user,
            fds,
            errexit_off: 0,
            traps: BTreeMap::new(),
            locals: Vec::new(),
            comsub_status: None,
        }
    }

    /// The exported variables (a child's environment).
    pub fn environment(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .filter(|(_, v)| v.exported)
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect()
    }

    /// A variable's value.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|v| v.value.as_str())
    }

    /// Set a variable (keeps its export flag); `Err` names a readonly variable.
    pub fn set_var(&mut self, name: &str, value: String) -> Result<(), String> {
        match self.vars.get_mut(name) {
            Some(v) if v.readonly => Err(format!("{name}: readonly variable")),
            Some(v) => {
                v.value = value;
                Ok(())
            }
            None => {
                self.vars.insert(
                    name.to_owned(),
                    Var {
                        value,
                        exported: false,
                        readonly: false,
                    },
                );
                Ok(())
            }
        }
    }

    /// `IFS` (default: space, tab, newline).
    pub fn ifs(&self) -> String {
        self.var("IFS").unwrap_or(" \t\n").to_owned()
    }
}
