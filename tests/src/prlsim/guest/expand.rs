//! Word expansion, in POSIX order: tilde, parameters (`$x`, `${x:-w}`, `${#x}`, `${x%%p}`,
//! `$@`, …), command substitution (trailing newlines stripped), arithmetic; then field
//! splitting of unquoted expansion results on `IFS`, pathname expansion of unquoted
//! wildcards against the guest filesystem (no match: the word stays as written), and quote
//! removal.

use std::cell::RefCell;
use std::rc::Rc;

use super::Session;
use super::arith;
use super::ast::{Item, Param, ParamOp, Part, Word};
use super::pattern::{self, PatChar};
use super::state::{Fd, Flow, Sink};

/// One expanded character: whether it was quoted (literal for globbing) and whether it came
/// from an unquoted expansion (subject to field splitting).
#[derive(Debug, Clone, Copy)]
struct Ch {
    c: char,
    quoted: bool,
    split: bool,
}

#[derive(Debug, Clone, Copy)]
enum Piece {
    Ch(Ch),
    /// A quoted empty string: the field exists even if it has no characters.
    Mark,
    /// Between the parameters of an unquoted `$@`/`$*`: always a field boundary.
    Break,
}

/// Fields under construction (more than one only through `"$@"`).
type Fields = Vec<Vec<Piece>>;

fn push_str(fields: &mut Fields, s: &str, quoted: bool, split: bool) {
    if let Some(f) = fields.last_mut() {
        f.extend(s.chars().map(|c| Piece::Ch(Ch { c, quoted, split })));
    }
}

fn push_piece(fields: &mut Fields, p: Piece) {
    if let Some(f) = fields.last_mut() {
        f.push(p);
    }
}

impl Session<'_> {
    /// Command words to argv: all expansions, field splitting, globbing, quote removal.
    pub fn expand_words(&mut self, words: &[Word]) -> Result<Vec<String>, Flow> {
        let mut out = Vec::new();
        let ifs = self.st.ifs();
        for w in words {
            for field in self.expand_raw(w)? {
                for f in split(&field, &ifs) {
                    let pat: Vec<PatChar> = f.iter().map(|c| (c.c, c.quoted)).collect();
                    let text: String = f.iter().map(|c| c.c).collect();
                    if !self.st.opts.noglob && pattern::has_magic(&pat) {
                        let hits = pattern::glob(&pat, &|d| self.list_dir(d), &|p| {
                            std::fs::symlink_metadata(self.host_path(p)).is_ok()
                        });
                        if !hits.is_empty() {
                            out.extend(hits);
                            continue;
                        }
                    }
                    out.push(text);
                }
            }
        }
        Ok(out)
    }

    /// One string, no splitting or globbing (assignments, redirection targets, `case`).
    pub fn expand_string(&mut self, w: &Word) -> Result<String, Flow> {
        let fields = self.expand_raw(w)?;
        let mut s = String::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            for p in f {
                match p {
                    Piece::Ch(c) => s.push(c.c),
                    Piece::Break => s.push(' '),
                    Piece::Mark => {}
                }
            }
        }
        Ok(s)
    }

    /// A pattern (`case`, `${x#p}`): quoted characters are literal.
    pub fn expand_pattern(&mut self, w: &Word) -> Result<Vec<PatChar>, Flow> {
        let fields = self.expand_raw(w)?;
        let mut pat = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                pat.push((' ', true));
            }
            for p in f {
                match p {
                    Piece::Ch(c) => pat.push((c.c, c.quoted)),
                    Piece::Break => pat.push((' ', true)),
                    Piece::Mark => {}
                }
            }
        }
        Ok(pat)
    }

    fn expand_raw(&mut self, w: &Word) -> Result<Fields, Flow> {
        let mut fields: Fields = vec![Vec::new()];
        let mut parts = w.0.as_slice();
        if let Some(Part::Lit(first)) = parts.first()
            && let Some(after) = first.strip_prefix('~')
        {
            let (user, rest) = after
                .split_once('/')
                .map_or((after, None), |(u, r)| (u, Some(r)));
            if let Some(home) = self.tilde(user) {
                push_str(&mut fields, &home, true, false);
                if let Some(rest) = rest {
                    push_str(&mut fields, "/", false, false);
                    push_str(&mut fields, rest, false, false);
                }
                parts = &parts[1..];
            }
        }
        for p in parts {
            self.expand_part(p, false, &mut fields)?;
        }
        Ok(fields)
    }

    fn tilde(&self, user: &str) -> Option<String> {
        match user {
            "" => Some(
                self.st
                    .var("HOME")
                    .map_or_else(|| self.home(), str::to_owned),
            ),
            "root" => Some("/var/root".to_owned()),
            u if self.host_path(&format!("/Users/{u}")).is_dir() => Some(format!("/Users/{u}")),
            _ => None,
        }
    }

    fn expand_part(&mut self, p: &Part, in_dq: bool, fields: &mut Fields) -> Result<(), Flow> {
        match p {
            Part::Lit(s) => push_str(fields, s, in_dq, false),
            Part::Quoted(s) => {
                push_piece(fields, Piece::Mark);
                push_str(fields, s, true, false);
            }
            Part::Double(inner) => {
                let only_at = matches!(inner.as_slice(), [Part::Param(p)] if p.name == "@" && p.op == ParamOp::Get);
                if !(only_at && self.st.positional.is_empty()) {
                    push_piece(fields, Piece::Mark);
                }
                for q in inner {
                    self.expand_part(q, true, fields)?;
                }
            }
            Part::Param(param) => self.expand_param(param, in_dq, fields)?,
            Part::Command(items) => {
                let text = self.command_subst(items)?;
                push_str(fields, &text, in_dq, !in_dq);
            }
            Part::Arith(expr) => {
                let e = self.expand_string(expr)?;
                let st = &self.st;
                let lookup = |n: &str| st.var(n).map(str::to_owned);
                match arith::eval(&e, &lookup) {
                    Ok(v) => push_str(fields, &v.to_string(), in_dq, !in_dq),
                    Err(msg) => {
                        self.err(format!("sh: {}: {msg}\n", e.trim()));
                        return Err(Flow::Exit(1));
                    }
                }
            }
        }
        Ok(())
    }

    /// `$name` and friends; `None` when unset.
    pub fn param_value(&self, name: &str) -> Option<String> {
        let st = &self.st;
        match name {
            "?" => Some(st.status.to_string()),
            "$" => Some(st.shell_pid.to_string()),
            "#" => Some(st.positional.len().to_string()),
            "0" => Some(st.arg0.clone()),
            "!" => st.last_bg.map(|p| p.to_string()),
            "-" => Some(st.opts.flags()),
            "@" | "*" => Some(st.positional.join(" ")),
            n if n.chars().all(|c| c.is_ascii_digit()) => n
                .parse::<usize>()
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| st.positional.get(i).cloned()),
            n => st.var(n).map(str::to_owned),
        }
    }

    fn expand_param(&mut self, p: &Param, in_dq: bool, fields: &mut Fields) -> Result<(), Flow> {
        let name = p.name.as_str();
        if matches!(name, "@" | "*") && p.op == ParamOp::Get {
            let params = self.st.positional.clone();
            if in_dq && name == "@" {
                for (i, a) in params.iter().enumerate() {
                    if i > 0 {
                        fields.push(Vec::new());
                    }
                    push_piece(fields, Piece::Mark);
                    push_str(fields, a, true, false);
                }
            } else if in_dq {
                let sep = self
                    .st
                    .ifs()
                    .chars()
                    .next()
                    .map(String::from)
                    .unwrap_or_default();
                push_str(fields, &params.join(&sep), true, false);
            } else {
                for (i, a) in params.iter().enumerate() {
                    if i > 0 {
                        push_piece(fields, Piece::Break);
                    }
                    push_str(fields, a, false, true);
                }
            }
            return Ok(());
        }
        let value = self.param_value(name);
        let unset_or_null = |colon: bool| match &value {
            None => true,
            Some(v) => colon && v.is_empty(),
        };
        let text = match &p.op {
            ParamOp::Get => {
                self.check_set(name, value.as_ref())?;
                value.clone().unwrap_or_default()
            }
            ParamOp::Length => {
                self.check_set(name, value.as_ref())?;
                value.as_deref().unwrap_or("").chars().count().to_string()
            }
            ParamOp::Default(colon, w) => {
                if unset_or_null(*colon) {
                    for q in &w.0 {
                        self.expand_part(q, in_dq, fields)?;
                    }
                    return Ok(());
                }
                value.clone().unwrap_or_default()
            }
            ParamOp::Alt(colon, w) => {
                if !unset_or_null(*colon) {
                    for q in &w.0 {
                        self.expand_part(q, in_dq, fields)?;
                    }
                }
                return Ok(());
            }
            ParamOp::Assign(colon, w) => {
                if unset_or_null(*colon) {
                    let v = self.expand_string(w)?;
                    if !super::parse::is_name(name) {
                        self.err(format!("sh: ${name}: cannot assign in this way\n"));
                        return Err(Flow::Exit(1));
                    }
                    if let Err(msg) = self.st.set_var(name, v.clone()) {
                        self.err(format!("sh: {msg}\n"));
                        return Err(Flow::Exit(1));
                    }
                    v
                } else {
                    value.clone().unwrap_or_default()
                }
            }
            ParamOp::Error(colon, w) => {
                if unset_or_null(*colon) {
                    let msg = self.expand_string(w)?;
                    let msg = if msg.is_empty() {
                        "parameter null or not set".to_owned()
                    } else {
                        msg
                    };
                    self.err(format!("sh: {name}: {msg}\n"));
                    return Err(Flow::Exit(1));
                }
                value.clone().unwrap_or_default()
            }
            ParamOp::TrimPrefix(longest, w) | ParamOp::TrimSuffix(longest, w) => {
                self.check_set(name, value.as_ref())?;
                let v: Vec<char> = value.as_deref().unwrap_or("").chars().collect();
                let pat = self.expand_pattern(w)?;
                let prefix = matches!(p.op, ParamOp::TrimPrefix(..));
                let kept: String = if prefix {
                    let n = pattern::prefix_len(&pat, &v, *longest).unwrap_or(0);
                    v[n..].iter().collect()
                } else {
                    let n = pattern::suffix_len(&pat, &v, *longest).unwrap_or(0);
                    v[..v.len() - n].iter().collect()
                };
                kept
            }
        };
        push_str(fields, &text, in_dq, !in_dq);
        Ok(())
    }

    fn check_set(&mut self, name: &str, value: Option<&String>) -> Result<(), Flow> {
        if value.is_none() && self.st.opts.nounset && !matches!(name, "@" | "*") {
            self.err(format!("sh: {name}: unbound variable\n"));
            return Err(Flow::Exit(127));
        }
        Ok(())
    }

    /// `$(…)`: run `items` in a subshell with stdout captured; trailing newlines removed.
    pub fn command_subst(&mut self, items: &Rc<Vec<Item>>) -> Result<String, Flow> {
        let buf = Rc::new(RefCell::new(Vec::new()));
        let saved = self.st.fds.clone();
        self.st.fds.set(1, Fd::Write(Sink::Buf(buf.clone())));
        let items = Rc::clone(items);
        let r = self.in_subprocess(None, |s| s.run_list(&items));
        self.st.fds = saved;
        let status = r?;
        self.st.comsub_status = Some(status);
        self.st.status = status;
        let mut bytes = buf.take();
        bytes.retain(|b| *b != 0);
        while bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Field splitting of one field on `ifs` (only characters from unquoted expansions split).
fn split(field: &[Piece], ifs: &str) -> Vec<Vec<Ch>> {
    let is_ifs = |c: &Ch| c.split && ifs.contains(c.c);
    let is_ws = |c: &Ch| is_ifs(c) && matches!(c.c, ' ' | '\t' | '\n');
    let mut out = Vec::new();
    let mut cur: Vec<Ch> = Vec::new();
    let mut started = false;
    let mut i = 0;
    while i < field.len() {
        match field[i] {
            Piece::Mark => {
                started = true;
                i += 1;
            }
            Piece::Break => {
                if started {
                    out.push(std::mem::take(&mut cur));
                }
                started = false;
                i += 1;
            }
            Piece::Ch(c) if is_ifs(&c) => {
                let ws_at = |j: usize| matches!(field.get(j), Some(Piece::Ch(d)) if is_ws(d));
                let mut j = i;
                while ws_at(j) {
                    j += 1;
                }
                let mut hard = false;
                if let Some(Piece::Ch(d)) = field.get(j)
                    && is_ifs(d)
                    && !is_ws(d)
                {
                    hard = true;
                    j += 1;
                    while ws_at(j) {
                        j += 1;
                    }
                }
                if started || hard {
                    out.push(std::mem::take(&mut cur));
                }
                started = false;
                i = j;
            }
            Piece::Ch(c) => {
                cur.push(c);
                started = true;
                i += 1;
            }
        }
    }
    if started {
        out.push(cur);
    }
    out
}
