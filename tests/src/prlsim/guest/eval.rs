//! Running parsed shell code: lists, and-or lists (with `set -e`), pipelines (each member a
//! forked subshell; stdout buffered into the next member's stdin), compound commands,
//! functions, simple commands (assignments, redirections, lookup of functions, builtins and
//! the utilities at their macOS paths or PATH), subshells as guest processes, and `sh` itself
//! (`-c SCRIPT [ARG0 ARGS…]`, `-s [ARGS…]` reading its script from stdin one command at a
//! time as a real shell does, `sh FILE`).

use std::cell::RefCell;
use std::rc::Rc;

use super::ast::{AndOr, Command, Compound, Item, Pipeline, Redir, RedirOp, Simple};
use super::parse::Parser;
use super::state::{Fd, Flow, Opts, Reader, ShellState, Sink, Status};
use super::{Session, builtins, shell_builtins};

/// What a command name resolves to.
enum Target {
    /// A simulated utility (by name).
    Utility(&'static str),
    /// An executable guest file, run as a shell script.
    Script(String),
}

impl Session<'_> {
    /// Run a list.
    pub fn run_list(&mut self, items: &[Item]) -> Status {
        let mut status = 0;
        for item in items {
            status = if item.background {
                self.run_background(&item.and_or)?
            } else {
                self.run_and_or(&item.and_or)?
            };
            self.st.status = status;
            self.check_killed()?;
        }
        Ok(status)
    }

    /// `cmd &`: runs to completion now (the exec waits for it anyway: its stdout stays open),
    /// with stdin from `/dev/null`; `$!` is its pid.
    fn run_background(&mut self, ao: &AndOr) -> Status {
        let pid = self.vm.next_pid;
        let saved = self.st.fds.clone();
        self.st.fds.set(0, Fd::Read(Reader::shared(Vec::new())));
        let r = self.in_subprocess(None, |s| s.run_and_or(ao));
        self.st.fds = saved;
        r?;
        self.st.last_bg = Some(pid);
        Ok(0)
    }

    fn run_and_or(&mut self, ao: &AndOr) -> Status {
        let n = ao.rest.len();
        let mut status = self.run_pipeline_checked(&ao.first, n > 0)?;
        for (i, (and, p)) in ao.rest.iter().enumerate() {
            if *and == (status == 0) {
                status = self.run_pipeline_checked(p, i + 1 < n)?;
            }
        }
        Ok(status)
    }

    /// A pipeline, then `set -e` unless it is negated or not the last of an and-or list.
    fn run_pipeline_checked(&mut self, p: &Pipeline, nonfinal: bool) -> Status {
        let exempt = nonfinal || p.bang;
        if exempt {
            self.st.errexit_off += 1;
        }
        let r = self.run_pipeline(p);
        if exempt {
            self.st.errexit_off = self.st.errexit_off.saturating_sub(1);
        }
        let status = r?;
        self.st.status = status;
        if status != 0 && self.st.opts.errexit && self.st.errexit_off == 0 && !exempt {
            return Err(Flow::Exit(status));
        }
        Ok(status)
    }

    fn run_pipeline(&mut self, p: &Pipeline) -> Status {
        let status = if let [only] = p.cmds.as_slice() {
            self.run_command(only, false)?
        } else {
            let n = p.cmds.len();
            let mut input: Option<Vec<u8>> = None;
            let (mut last, mut failed) = (0, 0);
            for (i, cmd) in p.cmds.iter().enumerate() {
                let buf = Rc::new(RefCell::new(Vec::new()));
                let saved = self.st.fds.clone();
                if let Some(data) = input.take() {
                    self.st.fds.set(0, Fd::Read(Reader::shared(data)));
                }
                if i + 1 < n {
                    self.st.fds.set(1, Fd::Write(Sink::Buf(buf.clone())));
                }
                let r = self.in_subprocess(None, |s| s.run_command(cmd, true));
                self.st.fds = saved;
                last = r?;
                if last != 0 {
                    failed = last;
                }
                input = Some(buf.take());
            }
            if self.st.opts.pipefail { failed } else { last }
        };
        Ok(if p.bang {
            i32::from(status == 0)
        } else {
            status
        })
    }

    /// Run one command; `exec_in_place`: an external simple command replaces the current
    /// process (a pipeline member) instead of starting a child.
    pub fn run_command(&mut self, c: &Command, exec_in_place: bool) -> Status {
        match c {
            Command::Simple(s) => self.run_simple(s, exec_in_place),
            Command::Function(name, body) => {
                self.st.funcs.insert(name.clone(), Rc::clone(body));
                Ok(0)
            }
            Command::Compound(body, redirs) => {
                let saved = self.st.fds.clone();
                let r = match self.apply_redirs(redirs)? {
                    Ok(()) => self.run_compound(body),
                    Err(msg) => {
                        self.err(msg);
                        Ok(1)
                    }
                };
                self.st.fds = saved;
                r
            }
        }
    }

    fn run_compound(&mut self, c: &Compound) -> Status {
        match c {
            Compound::Brace(list) => self.run_list(list),
            Compound::Subshell(list) => self.in_subprocess(None, |s| s.run_list(list)),
            Compound::If { arms, otherwise } => {
                for (cond, body) in arms {
                    if self.condition(cond)? == 0 {
                        return self.run_list(body);
                    }
                }
                match otherwise {
                    Some(body) => self.run_list(body),
                    None => Ok(0),
                }
            }
            Compound::For { var, words, body } => {
                let values = match words {
                    Some(w) => self.expand_words(w)?,
                    None => self.st.positional.clone(),
                };
                let mut status = 0;
                for v in values {
                    self.tick()?;
                    if let Err(msg) = self.st.set_var(var, v) {
                        self.err(format!("sh: {msg}\n"));
                        return Ok(1);
                    }
                    match self.run_list(body) {
                        Ok(s) => status = s,
                        Err(Flow::Break(n)) if n > 1 => return Err(Flow::Break(n - 1)),
                        Err(Flow::Break(_)) => break,
                        Err(Flow::Continue(n)) if n > 1 => return Err(Flow::Continue(n - 1)),
                        Err(Flow::Continue(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(status)
            }
            Compound::Loop { until, cond, body } => {
                let mut status = 0;
                loop {
                    self.tick()?;
                    let c = match self.condition(cond) {
                        Ok(c) => c,
                        Err(Flow::Break(n)) if n > 1 => return Err(Flow::Break(n - 1)),
                        Err(Flow::Break(_)) => break,
                        Err(Flow::Continue(n)) if n > 1 => return Err(Flow::Continue(n - 1)),
                        Err(Flow::Continue(_)) => continue,
                        Err(e) => return Err(e),
                    };
                    if (c == 0) == *until {
                        break;
                    }
                    match self.run_list(body) {
                        Ok(s) => status = s,
                        Err(Flow::Break(n)) if n > 1 => return Err(Flow::Break(n - 1)),
                        Err(Flow::Break(_)) => break,
                        Err(Flow::Continue(n)) if n > 1 => return Err(Flow::Continue(n - 1)),
                        Err(Flow::Continue(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(status)
            }
            Compound::Case { word, arms } => {
                let subject: Vec<char> = self.expand_string(word)?.chars().collect();
                for (patterns, body) in arms {
                    for p in patterns {
                        let pat = self.expand_pattern(p)?;
                        if super::pattern::matches(&pat, &subject, false) {
                            return if body.is_empty() {
                                Ok(0)
                            } else {
                                self.run_list(body)
                            };
                        }
                    }
                }
                Ok(0)
            }
        }
    }

    /// A condition list (`if`, `while`): `set -e` does not apply inside.
    fn condition(&mut self, list: &[Item]) -> Status {
        self.st.errexit_off += 1;
        let r = self.run_list(list);
        self.st.errexit_off = self.st.errexit_off.saturating_sub(1);
        r
    }

    fn run_simple(&mut self, s: &Simple, exec_in_place: bool) -> Status {
        self.tick()?;
        self.st.comsub_status = None;
        let argv = self.expand_words(&s.words)?;
        let mut assigns = Vec::new();
        for (name, w) in &s.assigns {
            assigns.push((name.clone(), self.expand_string(w)?));
        }
        if self.st.opts.xtrace {
            let shown: Vec<String> = assigns
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .chain(argv.iter().cloned())
                .collect();
            self.err(format!("+ {}\n", shown.join(" ")));
        }
        if argv.is_empty() {
            for (name, value) in assigns {
                if let Err(msg) = self.st.set_var(&name, value) {
                    self.err(format!("sh: {msg}\n"));
                    return Ok(1);
                }
            }
            let saved = self.st.fds.clone();
            let r = self.apply_redirs(&s.redirs)?;
            self.st.fds = saved;
            return Ok(match r {
                Ok(()) => self.st.comsub_status.unwrap_or(0),
                Err(msg) => {
                    self.err(msg);
                    1
                }
            });
        }
        let saved = self.st.fds.clone();
        if let Err(msg) = self.apply_redirs(&s.redirs)? {
            self.st.fds = saved;
            self.err(msg);
            return Ok(1);
        }
        if argv.len() == 1 && argv[0] == "exec" {
            // `exec >file 2>&1`: the redirections stay.
            for (name, value) in assigns {
                let _ = self.st.set_var(&name, value);
            }
            return Ok(0);
        }
        let r = if shell_builtins::is_special(&argv[0]) {
            for (name, value) in assigns {
                if let Err(msg) = self.st.set_var(&name, value) {
                    self.err(format!("sh: {msg}\n"));
                }
            }
            self.run_argv(&argv, exec_in_place)
        } else {
            self.with_env(&assigns, |s| s.run_argv(&argv, exec_in_place))
        };
        self.st.fds = saved;
        r
    }

    /// Run `f` with `assigns` set and exported, then put the variables back.
    pub fn with_env(
        &mut self,
        assigns: &[(String, String)],
        f: impl FnOnce(&mut Self) -> Status,
    ) -> Status {
        let old: Vec<_> = assigns
            .iter()
            .map(|(k, _)| (k.clone(), self.st.vars.get(k).cloned()))
            .collect();
        for (k, v) in assigns {
            if self.st.set_var(k, v.clone()).is_ok()
                && let Some(var) = self.st.vars.get_mut(k)
            {
                var.exported = true;
            }
        }
        let r = f(self);
        for (k, v) in old {
            match v {
                Some(v) => self.st.vars.insert(k, v),
                None => self.st.vars.remove(&k),
            };
        }
        r
    }

    /// Run an argv: a function, a shell builtin, or an external command.
    pub fn run_argv(&mut self, argv: &[String], exec_in_place: bool) -> Status {
        let Some(name) = argv.first() else {
            return Ok(0);
        };
        if !name.contains('/') {
            if let Some(body) = self.st.funcs.get(name).cloned() {
                return self.call_function(&body, argv);
            }
            if shell_builtins::is_builtin(name) {
                return shell_builtins::run(self, argv);
            }
        }
        self.run_external(argv, exec_in_place)
    }

    fn call_function(&mut self, body: &Rc<Command>, argv: &[String]) -> Status {
        if !self.enter() {
            self.leave();
            self.err(format!(
                "sh: {}: maximum function nesting level exceeded\n",
                argv[0]
            ));
            return Ok(1);
        }
        let saved = std::mem::replace(&mut self.st.positional, argv[1..].to_vec());
        self.st.locals.push(Vec::new());
        let r = self.run_command(body, false);
        if let Some(frame) = self.st.locals.pop() {
            for (name, old) in frame.into_iter().rev() {
                match old {
                    Some(v) => self.st.vars.insert(name, v),
                    None => self.st.vars.remove(&name),
                };
            }
        }
        self.st.positional = saved;
        self.leave();
        match r {
            Err(Flow::Return(n)) => Ok(n),
            other => other,
        }
    }

    /// Apply redirections to the current descriptors; `Ok(Err(msg))` if one fails.
    pub fn apply_redirs(&mut self, redirs: &[Redir]) -> Result<Result<(), String>, Flow> {
        for r in redirs {
            let input = matches!(
                r.op,
                RedirOp::In | RedirOp::ReadWrite | RedirOp::DupIn | RedirOp::Heredoc
            );
            let fd = r.fd.unwrap_or(if input { 0 } else { 1 });
            let target = self.expand_string(&r.target)?;
            match r.op {
                RedirOp::Heredoc => {
                    self.st
                        .fds
                        .set(fd, Fd::Read(Reader::shared(target.into_bytes())));
                }
                RedirOp::DupIn | RedirOp::DupOut => {
                    if target == "-" {
                        self.st.fds.close(fd);
                        continue;
                    }
                    let Ok(n) = target.parse::<u32>() else {
                        return Ok(Err(format!("sh: {target}: ambiguous redirect\n")));
                    };
                    match self.st.fds.get(n).cloned() {
                        Some(f) => self.st.fds.set(fd, f),
                        None => return Ok(Err(format!("sh: {n}: Bad file descriptor\n"))),
                    }
                }
                RedirOp::In | RedirOp::ReadWrite => {
                    if let Some(n) = dev_fd(&target) {
                        match self.st.fds.get(n).cloned() {
                            Some(f) => self.st.fds.set(fd, f),
                            None => return Ok(Err(format!("sh: {target}: Bad file descriptor\n"))),
                        }
                        continue;
                    }
                    if r.op == RedirOp::ReadWrite
                        && !self.host_path(&target).exists()
                        && let Err(e) = self.open_write(&target, true)
                    {
                        return Ok(Err(format!("sh: {target}: {e}\n")));
                    }
                    match self.read_guest(&target) {
                        Ok(data) => self.st.fds.set(fd, Fd::Read(Reader::shared(data))),
                        Err(e) => return Ok(Err(format!("sh: {target}: {e}\n"))),
                    }
                }
                RedirOp::Out | RedirOp::Append => {
                    if let Some(n) = dev_fd(&target) {
                        match self.st.fds.get(n).cloned() {
                            Some(f) => self.st.fds.set(fd, f),
                            None => return Ok(Err(format!("sh: {target}: Bad file descriptor\n"))),
                        }
                        continue;
                    }
                    let target_shown = if target.is_empty() {
                        ""
                    } else {
                        target.as_str()
                    };
                    match self.open_write(&target, r.op == RedirOp::Append) {
                        Ok(sink) => self.st.fds.set(fd, Fd::Write(sink)),
                        Err(e) => return Ok(Err(format!("sh: {target_shown}: {e}\n"))),
                    }
                }
            }
        }
        Ok(Ok(()))
    }

    /// Run `f` in a forked subshell: a child process with `command` (default: the current
    /// process's command line), state changes thrown away afterwards.
    pub fn in_subprocess(
        &mut self,
        command: Option<String>,
        f: impl FnOnce(&mut Self) -> Status,
    ) -> Status {
        let command = command.unwrap_or_else(|| self.current_command());
        let pid = self.spawn(command);
        let saved = self.st.clone();
        self.st.pid = pid;
        let r = f(self);
        let status = match r {
            Ok(n) | Err(Flow::Exit(n) | Flow::Return(n)) => Ok(n),
            Err(Flow::Break(_) | Flow::Continue(_)) => Ok(self.st.status),
            Err(Flow::Killed(p)) if p == pid => Ok(0),
            Err(e) => Err(e),
        };
        self.st = saved;
        self.reap(pid);
        match (status, self.killed_status(pid)) {
            (Ok(_), Some(killed)) => Ok(killed),
            (other, _) => other,
        }
    }

    /// Run an external command as a child process (or in place of the current one).
    pub fn run_external(&mut self, argv: &[String], exec_in_place: bool) -> Status {
        let target = match self.resolve(&argv[0]) {
            Ok(t) => t,
            Err((msg, code)) => {
                self.err(msg);
                return Ok(code);
            }
        };
        let cmdline = match &target {
            Target::Script(_) => format!("/bin/sh {}", argv.join(" ")),
            Target::Utility(_) => argv.join(" "),
        };
        if exec_in_place {
            self.set_current_command(cmdline);
            return self.run_target(&target, argv);
        }
        let pid = self.spawn(cmdline);
        let parent = self.st.pid;
        self.st.pid = pid;
        let r = self.run_target(&target, argv);
        self.st.pid = parent;
        self.reap(pid);
        match (r, self.killed_status(pid)) {
            (Ok(_) | Err(Flow::Killed(_)), Some(killed)) => Ok(killed),
            (r, _) => r,
        }
    }

    fn run_target(&mut self, target: &Target, argv: &[String]) -> Status {
        match target {
            Target::Utility(name) => builtins::run_utility(self, name, argv),
            Target::Script(path) => {
                let mut a = vec!["sh".to_owned(), path.clone()];
                a.extend(argv[1..].iter().cloned());
                self.run_sh(&a)
            }
        }
    }

    /// Where a command name leads: a utility at a known macOS path, an executable guest file,
    /// or an error message and status.
    fn resolve(&self, name: &str) -> Result<Target, (String, i32)> {
        if name.contains('/') {
            let abs = self.normalize(name);
            if let Some(u) = builtins::utility_at(&abs) {
                return Ok(Target::Utility(u));
            }
            let host = self.host_path(&abs);
            return match std::fs::metadata(&host) {
                Ok(m) if m.is_dir() => Err((format!("sh: {name}: is a directory\n"), 126)),
                Ok(m) if std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 == 0 => {
                    Err((format!("sh: {name}: Permission denied\n"), 126))
                }
                Ok(_) => Ok(Target::Script(name.to_owned())),
                Err(_) => Err((format!("sh: {name}: No such file or directory\n"), 127)),
            };
        }
        let path = self
            .st
            .var("PATH")
            .unwrap_or("/usr/bin:/bin:/usr/sbin:/sbin")
            .to_owned();
        for dir in path.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let full = format!("{dir}/{name}");
            if let Some(u) = builtins::utility_at(&self.normalize(&full)) {
                return Ok(Target::Utility(u));
            }
            let host = self.host_path(&full);
            if let Ok(m) = std::fs::metadata(&host)
                && m.is_file()
                && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            {
                return Ok(Target::Script(full));
            }
        }
        Err((format!("sh: {name}: command not found\n"), 127))
    }

    /// The `sh` utility in the (already started) current process: options, then `-c SCRIPT
    /// [ARG0 [ARGS…]]`, `-s [ARGS…]` / no operand (script on stdin), or `FILE [ARGS…]`.
    pub fn run_sh(&mut self, argv: &[String]) -> Status {
        let base = argv[0].rsplit('/').next().unwrap_or("sh").to_owned();
        let mut opts = Opts::default();
        let (mut cmd_mode, mut stdin_mode) = (false, false);
        let mut i = 1;
        while let Some(a) = argv.get(i) {
            if a == "--" || a == "-" {
                i += 1;
                break;
            }
            let on = a.starts_with('-');
            if !(on || a.starts_with('+')) || a.len() < 2 {
                break;
            }
            for ch in a[1..].chars() {
                match ch {
                    'c' => cmd_mode = true,
                    's' => stdin_mode = true,
                    'o' => {
                        i += 1;
                        let name = argv.get(i).map(String::as_str).unwrap_or("");
                        if !shell_builtins::set_named_option(&mut opts, name, on) {
                            self.err(format!("{base}: {name}: invalid option name\n"));
                            return Ok(2);
                        }
                    }
                    'l' | 'i' | 'p' | 'v' | 'h' | 'm' | 'b' | 'a' | 'n' | 'B' | 'H' | 'P' | 'T'
                    | 'E' => {}
                    other => {
                        if !shell_builtins::set_flag(&mut opts, other, on) {
                            self.err(format!("{base}: -{other}: invalid option\n"));
                            return Ok(2);
                        }
                    }
                }
            }
            i += 1;
        }
        let rest = &argv[i.min(argv.len())..];
        enum Source {
            Text(String, String),
            Stdin,
        }
        let (source, arg0, params) = if cmd_mode {
            let Some(script) = rest.first() else {
                self.err(format!("{base}: -c: option requires an argument\n"));
                return Ok(2);
            };
            let arg0 = rest.get(1).cloned().unwrap_or_else(|| argv[0].clone());
            let params = rest.get(2..).unwrap_or_default().to_vec();
            (
                Source::Text(script.clone(), format!("{base}: -c: ")),
                arg0,
                params,
            )
        } else if stdin_mode || rest.is_empty() {
            (Source::Stdin, argv[0].clone(), rest.to_vec())
        } else {
            let path = &rest[0];
            match self.read_guest(path) {
                Ok(b) => (
                    Source::Text(
                        String::from_utf8_lossy(&b).into_owned(),
                        format!("{path}: "),
                    ),
                    path.clone(),
                    rest[1..].to_vec(),
                ),
                Err(e) => {
                    self.err(format!("{base}: {path}: {e}\n"));
                    return Ok(127);
                }
            }
        };
        if !self.enter() {
            self.leave();
            self.err(format!("{base}: maximum nesting level exceeded\n"));
            return Ok(2);
        }
        let parent = self.st.clone();
        let mut st = ShellState::new(
            parent.user.clone(),
            parent.cwd.clone(),
            parent.umask,
            &parent.environment(),
            parent.fds.clone(),
        );
        st.shell_pid = parent.pid;
        st.pid = parent.pid;
        st.arg0 = arg0;
        st.positional = params;
        st.opts = opts;
        let ppid = self
            .vm
            .procs
            .iter()
            .find(|p| p.pid == parent.pid)
            .map_or(1, |p| p.ppid);
        let _ = st.set_var("PPID", ppid.to_string());
        let _ = st.set_var("PWD", parent.cwd.clone());
        self.st = st;
        let r = match source {
            Source::Text(text, label) => self.run_script_text(&text, &label),
            Source::Stdin => self.run_stdin_script(&format!("{base}: ")),
        };
        let r = match r {
            Ok(n) | Err(Flow::Exit(n) | Flow::Return(n)) => Ok(n),
            Err(Flow::Break(_) | Flow::Continue(_)) => Ok(self.st.status),
            Err(e) => Err(e),
        };
        let r = match r {
            Ok(n) => self.run_exit_trap(n),
            e => e,
        };
        self.st = parent;
        self.leave();
        r
    }

    /// Run the `EXIT` trap, if any; the shell's status stays `status` unless the trap exits.
    fn run_exit_trap(&mut self, status: i32) -> Status {
        let Some(action) = self.st.traps.remove("EXIT") else {
            return Ok(status);
        };
        self.st.status = status;
        match super::parse::parse_all(&action) {
            Ok(items) => match self.run_list(&items) {
                Ok(_) => Ok(status),
                Err(Flow::Exit(n)) => Ok(n),
                Err(e) => Err(e),
            },
            Err(_) => Ok(status),
        }
    }

    /// Run a script string one complete command at a time; a syntax error stops it
    /// (status 2) after the commands before it ran.
    pub fn run_script_text(&mut self, text: &str, label: &str) -> Status {
        let mut p = Parser::new(text);
        let mut status = 0;
        loop {
            match p.next_complete() {
                Ok(None) => return Ok(status),
                Ok(Some(items)) => status = self.run_list(&items)?,
                Err(e) => {
                    self.err(format!("{label}line {}: {}\n", e.line, e.msg));
                    return Err(Flow::Exit(2));
                }
            }
        }
    }

    /// `sh -s`: read the script from stdin one complete command at a time, so a command that
    /// reads stdin consumes the rest of the script (as with a real shell on a pipe).
    fn run_stdin_script(&mut self, label: &str) -> Status {
        let Some(Fd::Read(reader)) = self.st.fds.get(0).cloned() else {
            return Ok(0);
        };
        let mut status = 0;
        let mut line = 1;
        loop {
            let rest = String::from_utf8_lossy(reader.borrow().rest()).into_owned();
            let mut p = Parser::new(&rest);
            match p.next_complete() {
                Ok(None) => {
                    reader.borrow_mut().take_all();
                    return Ok(status);
                }
                Ok(Some(items)) => {
                    let used = p.consumed_bytes();
                    line += rest[..used.min(rest.len())].matches('\n').count();
                    let mut r = reader.borrow_mut();
                    r.pos = (r.pos + used).min(r.data.len());
                    drop(r);
                    status = self.run_list(&items)?;
                }
                Err(e) => {
                    reader.borrow_mut().take_all();
                    self.err(format!("{label}line {}: {}\n", line + e.line - 1, e.msg));
                    return Err(Flow::Exit(2));
                }
            }
        }
    }
}

/// `/dev/stdin`, `/dev/stdout`, `/dev/stderr`, `/dev/fd/N` as a descriptor number.
fn dev_fd(path: &str) -> Option<u32> {
    match path {
        "/dev/stdin" => Some(0),
        "/dev/stdout" => Some(1),
        "/dev/stderr" => Some(2),
        p => p.strip_prefix("/dev/fd/").and_then(|n| n.parse().ok()),
    }
}
