//! The guest shell's syntax tree: what [`super::parse`] builds from a script and
//! [`super::eval`] runs. Shapes follow the POSIX shell grammar (lists, and-or lists,
//! pipelines, simple and compound commands, redirections); words keep their quoting so
//! expansion ([`super::expand`]) can tell what is split and globbed.

use std::rc::Rc;

/// One shell word: the concatenation of its parts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Word(pub Vec<Part>);

/// A piece of a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Unquoted literal text: globbing applies, field splitting does not.
    Lit(String),
    /// Literal text protected by quotes (`'…'`, `\c`, plain text inside `"…"`).
    Quoted(String),
    /// `"…"`: the expansions inside are neither split nor globbed.
    Double(Vec<Part>),
    /// `$name`, `$1`, `$?`, `${…}`.
    Param(Box<Param>),
    /// `$(…)` or `` `…` ``, already parsed.
    Command(Rc<Vec<Item>>),
    /// `$((…))`: the expression, expanded like a double-quoted string, then evaluated.
    Arith(Box<Word>),
}

/// A parameter expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Variable name, digit string or special character (`?`, `#`, `@`, …).
    pub name: String,
    /// What to do with it.
    pub op: ParamOp,
}

/// The operator of `${name OP word}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamOp {
    /// `$x`, `${x}`.
    Get,
    /// `${#x}`.
    Length,
    /// `${x-w}`, `${x:-w}`.
    Default(bool, Word),
    /// `${x=w}`, `${x:=w}`.
    Assign(bool, Word),
    /// `${x?w}`, `${x:?w}`.
    Error(bool, Word),
    /// `${x+w}`, `${x:+w}`.
    Alt(bool, Word),
    /// `${x#p}` (false) / `${x##p}` (true).
    TrimPrefix(bool, Word),
    /// `${x%p}` (false) / `${x%%p}` (true).
    TrimSuffix(bool, Word),
}

/// One and-or list with its terminator (`&` runs it "in the background").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The list.
    pub and_or: AndOr,
    /// Ended by `&`.
    pub background: bool,
}

/// `p1 && p2 || p3 …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AndOr {
    /// The first pipeline.
    pub first: Pipeline,
    /// The rest: `true` for `&&`, `false` for `||`.
    pub rest: Vec<(bool, Pipeline)>,
}

/// `[!] c1 | c2 | …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// Leading `!`.
    pub bang: bool,
    /// The commands.
    pub cmds: Vec<Command>,
}

/// A command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Assignments, words and redirections.
    Simple(Simple),
    /// A compound command with its redirections.
    Compound(Box<Compound>, Vec<Redir>),
    /// `name() body`.
    Function(String, Rc<Command>),
}

/// A simple command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Simple {
    /// `NAME=value` prefixes.
    pub assigns: Vec<(String, Word)>,
    /// The command name and its arguments.
    pub words: Vec<Word>,
    /// Redirections, in order.
    pub redirs: Vec<Redir>,
}

/// Compound commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compound {
    /// `{ list; }`.
    Brace(Vec<Item>),
    /// `( list )`.
    Subshell(Vec<Item>),
    /// `if c; then l; elif c; then l; else l; fi`.
    If {
        /// (condition, body) pairs: the `if` and each `elif`.
        arms: Vec<(Vec<Item>, Vec<Item>)>,
        /// The `else` body.
        otherwise: Option<Vec<Item>>,
    },
    /// `for name [in words]; do body; done` (`None` = `"$@"`).
    For {
        /// Loop variable.
        var: String,
        /// The words after `in`.
        words: Option<Vec<Word>>,
        /// Body.
        body: Vec<Item>,
    },
    /// `while c; do b; done` / `until c; do b; done`.
    Loop {
        /// `until` instead of `while`.
        until: bool,
        /// Condition.
        cond: Vec<Item>,
        /// Body.
        body: Vec<Item>,
    },
    /// `case word in p1|p2) list;; … esac`.
    Case {
        /// The subject.
        word: Word,
        /// (patterns, body) arms.
        arms: Vec<(Vec<Word>, Vec<Item>)>,
    },
}

/// A redirection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redir {
    /// The file descriptor (default 0 for input operators, 1 for output).
    pub fd: Option<u32>,
    /// The operator.
    pub op: RedirOp,
    /// File name, descriptor number, or here-document body.
    pub target: Word,
}

/// Redirection operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirOp {
    /// `<`.
    In,
    /// `>` and `>|`.
    Out,
    /// `>>`.
    Append,
    /// `<>`.
    ReadWrite,
    /// `<&`.
    DupIn,
    /// `>&`.
    DupOut,
    /// `<<` and `<<-` (the body is the target).
    Heredoc,
}

impl Word {
    /// The word's text if it is one unquoted literal (reserved words, names).
    pub fn as_lit(&self) -> Option<&str> {
        match self.0.as_slice() {
            [Part::Lit(s)] => Some(s),
            _ => None,
        }
    }

    /// The word's text if it has no expansions (`'/usr/bin/pgrep'`, `"sh"`, `cat`).
    pub fn static_text(&self) -> Option<String> {
        fn walk(parts: &[Part], out: &mut String) -> bool {
            parts.iter().all(|p| match p {
                Part::Lit(s) | Part::Quoted(s) => {
                    out.push_str(s);
                    true
                }
                Part::Double(inner) => walk(inner, out),
                _ => false,
            })
        }
        let mut s = String::new();
        walk(&self.0, &mut s).then_some(s)
    }

    /// Whether any part is quoted (a here-document delimiter with quotes keeps its body
    /// literal).
    pub fn has_quotes(&self) -> bool {
        self.0
            .iter()
            .any(|p| matches!(p, Part::Quoted(_) | Part::Double(_)))
    }

    /// The text after quote removal, for words without expansions (delimiters).
    pub fn literal_text(&self) -> String {
        fn walk(parts: &[Part], out: &mut String) {
            for p in parts {
                match p {
                    Part::Lit(s) | Part::Quoted(s) => out.push_str(s),
                    Part::Double(inner) => walk(inner, out),
                    Part::Param(p) => {
                        out.push('$');
                        out.push_str(&p.name);
                    }
                    Part::Command(_) | Part::Arith(_) => {}
                }
            }
        }
        let mut s = String::new();
        walk(&self.0, &mut s);
        s
    }
}
