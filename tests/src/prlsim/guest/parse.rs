//! Recursive-descent parser of the guest shell: POSIX `sh` grammar (lists, and-or lists,
//! pipelines, `if`/`while`/`until`/`for`/`case`, `{ }`, `( )`, function definitions,
//! redirections and here-documents) over the tokens of [`super::lex`], into [`super::ast`].
//! Reserved words count only in command position.
//!
//! Scripts are parsed one complete command (up to a newline) at a time, as `sh` does: a
//! syntax error on line 3 does not stop lines 1–2 from running, and `sh -s` knows how much
//! of its stdin it has consumed ([`Parser::consumed_bytes`]).

use std::rc::Rc;

use super::ast::{AndOr, Command, Compound, Item, Part, Pipeline, Redir, RedirOp, Simple, Word};

/// A syntax error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What bash would say after `line N: `.
    pub msg: String,
    /// 1-based line.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    Word(Word),
    Io(u32),
    Op(&'static str),
    Newline,
    Eof,
}

pub(super) const OPS: [&str; 17] = [
    "&&", "||", ";;", "<<-", "<<", "<&", "<>", ">>", ">&", ">|", ";", "&", "|", "(", ")", "<", ">",
];

/// Words that may not start a command.
const CLOSERS: [&str; 8] = ["then", "else", "elif", "fi", "do", "done", "esac", "}"];

/// Incremental parser over one script.
pub struct Parser {
    pub(super) src: Vec<char>,
    pub(super) pos: usize,
    pub(super) line: usize,
    pub(super) peeked: Option<Tok>,
    /// Where lexing resumes after the newline that ends a line with here-documents.
    pub(super) heredoc_end: Option<usize>,
}

/// Parse a whole script (for `eval`, traps, `$(…)` in backquotes).
pub fn parse_all(src: &str) -> Result<Vec<Item>, ParseError> {
    let mut p = Parser::new(src);
    let mut items = Vec::new();
    while let Some(more) = p.next_complete()? {
        items.extend(more);
    }
    Ok(items)
}

/// Whether `s` is a valid variable name.
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Parser {
    /// A parser at the start of `src`.
    pub fn new(src: &str) -> Self {
        Parser {
            src: src.chars().collect(),
            pos: 0,
            line: 1,
            peeked: None,
            heredoc_end: None,
        }
    }

    /// Bytes of the source consumed so far (complete commands and their newlines).
    pub fn consumed_bytes(&self) -> usize {
        self.src[..self.pos.min(self.src.len())]
            .iter()
            .map(|c| c.len_utf8())
            .sum()
    }

    /// The current line (for error messages).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The next complete command (one line's list, plus any lines its compound commands
    /// and here-documents span), or `None` at the end.
    pub fn next_complete(&mut self) -> Result<Option<Vec<Item>>, ParseError> {
        loop {
            match self.peek()? {
                Tok::Newline => {
                    self.next()?;
                }
                Tok::Eof => return Ok(None),
                _ => break,
            }
        }
        let mut items = Vec::new();
        loop {
            let and_or = self.and_or()?;
            match self.peek()? {
                Tok::Op(";") | Tok::Op("&") => {
                    let background = self.next()? == Tok::Op("&");
                    items.push(Item { and_or, background });
                    if matches!(self.peek()?, Tok::Newline | Tok::Eof) {
                        break;
                    }
                }
                Tok::Newline | Tok::Eof => {
                    items.push(Item {
                        and_or,
                        background: false,
                    });
                    break;
                }
                other => return Err(self.unexpected(&other)),
            }
        }
        if self.peek()? == Tok::Newline {
            self.next()?;
        }
        Ok(Some(items))
    }

    pub(super) fn err(&self, msg: impl Into<String>) -> ParseError {
        ParseError {
            msg: msg.into(),
            line: self.line,
        }
    }

    fn unexpected(&self, t: &Tok) -> ParseError {
        let shown = match t {
            Tok::Eof => return self.err("syntax error: unexpected end of file"),
            Tok::Newline => "newline".to_owned(),
            Tok::Op(o) => (*o).to_owned(),
            Tok::Io(n) => n.to_string(),
            Tok::Word(w) => w.literal_text(),
        };
        self.err(format!("syntax error near unexpected token `{shown}'"))
    }

    fn peek(&mut self) -> Result<Tok, ParseError> {
        if self.peeked.is_none() {
            let t = self.lex()?;
            self.peeked = Some(t);
        }
        Ok(self.peeked.clone().unwrap_or(Tok::Eof))
    }

    fn next(&mut self) -> Result<Tok, ParseError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex(),
        }
    }

    fn skip_newlines(&mut self) -> Result<(), ParseError> {
        while self.peek()? == Tok::Newline {
            self.next()?;
        }
        Ok(())
    }

    fn peek_is_word(&mut self, kw: &str) -> Result<bool, ParseError> {
        Ok(matches!(self.peek()?, Tok::Word(w) if w.as_lit() == Some(kw)))
    }

    fn expect_word(&mut self, kw: &str) -> Result<(), ParseError> {
        let t = self.next()?;
        match &t {
            Tok::Word(w) if w.as_lit() == Some(kw) => Ok(()),
            _ => Err(self.unexpected(&t)),
        }
    }

    pub(super) fn expect_op(&mut self, op: &str) -> Result<(), ParseError> {
        let t = self.next()?;
        if t == Tok::Op(op_static(op)) {
            Ok(())
        } else {
            Err(self.unexpected(&t))
        }
    }

    fn at_term(&mut self, terms: &[&str]) -> Result<bool, ParseError> {
        Ok(match self.peek()? {
            Tok::Word(w) => w.as_lit().is_some_and(|s| terms.contains(&s)),
            Tok::Op(o) => terms.contains(&o),
            _ => false,
        })
    }

    /// A list inside a compound command, ended (not consumed) by one of `terms`.
    pub(super) fn compound_list(
        &mut self,
        terms: &[&str],
        allow_empty: bool,
    ) -> Result<Vec<Item>, ParseError> {
        let mut items = Vec::new();
        loop {
            self.skip_newlines()?;
            if self.at_term(terms)? {
                break;
            }
            if self.peek()? == Tok::Eof {
                return Err(self.unexpected(&Tok::Eof));
            }
            let and_or = self.and_or()?;
            let background = match self.peek()? {
                Tok::Op(";") | Tok::Newline => {
                    self.next()?;
                    false
                }
                Tok::Op("&") => {
                    self.next()?;
                    true
                }
                other => {
                    if !self.at_term(terms)? {
                        return Err(self.unexpected(&other));
                    }
                    false
                }
            };
            items.push(Item { and_or, background });
        }
        if items.is_empty() && !allow_empty {
            let t = self.peek()?;
            return Err(self.unexpected(&t));
        }
        Ok(items)
    }

    fn and_or(&mut self) -> Result<AndOr, ParseError> {
        let first = self.pipeline()?;
        let mut rest = Vec::new();
        loop {
            let and = match self.peek()? {
                Tok::Op("&&") => true,
                Tok::Op("||") => false,
                _ => break,
            };
            self.next()?;
            self.skip_newlines()?;
            rest.push((and, self.pipeline()?));
        }
        Ok(AndOr { first, rest })
    }

    fn pipeline(&mut self) -> Result<Pipeline, ParseError> {
        let bang = self.peek_is_word("!")?;
        if bang {
            self.next()?;
        }
        let mut cmds = vec![self.command()?];
        while self.peek()? == Tok::Op("|") {
            self.next()?;
            self.skip_newlines()?;
            cmds.push(self.command()?);
        }
        Ok(Pipeline { bang, cmds })
    }

    fn command(&mut self) -> Result<Command, ParseError> {
        let t = self.peek()?;
        let compound = match &t {
            Tok::Word(w) => match w.as_lit() {
                Some("if") => Some(self.if_clause()?),
                Some("while") => Some(self.loop_clause(false)?),
                Some("until") => Some(self.loop_clause(true)?),
                Some("for") => Some(self.for_clause()?),
                Some("case") => Some(self.case_clause()?),
                Some("{") => {
                    self.next()?;
                    let body = self.compound_list(&["}"], false)?;
                    self.expect_word("}")?;
                    Some(Compound::Brace(body))
                }
                Some(s) if CLOSERS.contains(&s) => return Err(self.unexpected(&t)),
                _ => None,
            },
            Tok::Op("(") => {
                self.next()?;
                let body = self.compound_list(&[")"], false)?;
                self.expect_op(")")?;
                Some(Compound::Subshell(body))
            }
            _ => None,
        };
        match compound {
            Some(c) => {
                let mut redirs = Vec::new();
                while let Some(r) = self.maybe_redir()? {
                    redirs.push(r);
                }
                Ok(Command::Compound(Box::new(c), redirs))
            }
            None => self.simple(),
        }
    }

    fn simple(&mut self) -> Result<Command, ParseError> {
        let mut s = Simple::default();
        loop {
            if let Some(r) = self.maybe_redir()? {
                s.redirs.push(r);
                continue;
            }
            let Tok::Word(w) = self.peek()? else { break };
            self.next()?;
            if s.words.is_empty() {
                if let Some((name, value)) = split_assignment(&w) {
                    s.assigns.push((name, value));
                    continue;
                }
                if s.assigns.is_empty()
                    && s.redirs.is_empty()
                    && w.as_lit().is_some_and(is_name)
                    && self.peek()? == Tok::Op("(")
                {
                    self.next()?;
                    self.expect_op(")")?;
                    self.skip_newlines()?;
                    let body = self.command()?;
                    let name = w.as_lit().unwrap_or_default().to_owned();
                    return Ok(Command::Function(name, Rc::new(body)));
                }
            }
            s.words.push(w);
        }
        if s.assigns.is_empty() && s.words.is_empty() && s.redirs.is_empty() {
            let t = self.peek()?;
            return Err(self.unexpected(&t));
        }
        Ok(Command::Simple(s))
    }

    fn maybe_redir(&mut self) -> Result<Option<Redir>, ParseError> {
        let fd = match self.peek()? {
            Tok::Io(n) => {
                self.next()?;
                Some(n)
            }
            Tok::Op(o) if redir_op(o).is_some() => None,
            _ => return Ok(None),
        };
        let t = self.next()?;
        let Tok::Op(o) = t else {
            return Err(self.unexpected(&t));
        };
        let Some(op) = redir_op(o) else {
            return Err(self.unexpected(&t));
        };
        let t = self.next()?;
        let Tok::Word(target) = t else {
            return Err(self.unexpected(&t));
        };
        if op == RedirOp::Heredoc {
            let body = self.heredoc_body(&target.literal_text(), o == "<<-");
            let body = if target.has_quotes() {
                Word(vec![Part::Quoted(body)])
            } else {
                let mut sub = Parser::new(&body);
                Word(sub.dq_body(false)?)
            };
            return Ok(Some(Redir {
                fd,
                op,
                target: body,
            }));
        }
        Ok(Some(Redir { fd, op, target }))
    }

    fn if_clause(&mut self) -> Result<Compound, ParseError> {
        self.next()?;
        let mut arms = Vec::new();
        let mut otherwise = None;
        loop {
            let cond = self.compound_list(&["then"], false)?;
            self.expect_word("then")?;
            let body = self.compound_list(&["elif", "else", "fi"], false)?;
            arms.push((cond, body));
            let t = self.next()?;
            match &t {
                Tok::Word(w) if w.as_lit() == Some("elif") => continue,
                Tok::Word(w) if w.as_lit() == Some("else") => {
                    otherwise = Some(self.compound_list(&["fi"], false)?);
                    self.expect_word("fi")?;
                    break;
                }
                Tok::Word(w) if w.as_lit() == Some("fi") => break,
                _ => return Err(self.unexpected(&t)),
            }
        }
        Ok(Compound::If { arms, otherwise })
    }

    fn loop_clause(&mut self, until: bool) -> Result<Compound, ParseError> {
        self.next()?;
        let cond = self.compound_list(&["do"], false)?;
        self.expect_word("do")?;
        let body = self.compound_list(&["done"], false)?;
        self.expect_word("done")?;
        Ok(Compound::Loop { until, cond, body })
    }

    fn for_clause(&mut self) -> Result<Compound, ParseError> {
        self.next()?;
        let t = self.next()?;
        let var = match &t {
            Tok::Word(w) if w.as_lit().is_some_and(is_name) => {
                w.as_lit().unwrap_or_default().to_owned()
            }
            _ => return Err(self.unexpected(&t)),
        };
        self.skip_newlines()?;
        let mut words = None;
        if self.peek_is_word("in")? {
            self.next()?;
            let mut list = Vec::new();
            loop {
                match self.next()? {
                    Tok::Word(w) => list.push(w),
                    Tok::Op(";") | Tok::Newline => break,
                    other => return Err(self.unexpected(&other)),
                }
            }
            words = Some(list);
        } else if self.peek()? == Tok::Op(";") {
            self.next()?;
        }
        self.skip_newlines()?;
        self.expect_word("do")?;
        let body = self.compound_list(&["done"], false)?;
        self.expect_word("done")?;
        Ok(Compound::For { var, words, body })
    }

    fn case_clause(&mut self) -> Result<Compound, ParseError> {
        self.next()?;
        let t = self.next()?;
        let Tok::Word(word) = t else {
            return Err(self.unexpected(&t));
        };
        self.skip_newlines()?;
        self.expect_word("in")?;
        let mut arms = Vec::new();
        loop {
            self.skip_newlines()?;
            if self.peek_is_word("esac")? {
                self.next()?;
                break;
            }
            if self.peek()? == Tok::Op("(") {
                self.next()?;
            }
            let mut patterns = Vec::new();
            loop {
                let t = self.next()?;
                let Tok::Word(p) = t else {
                    return Err(self.unexpected(&t));
                };
                patterns.push(p);
                match self.next()? {
                    Tok::Op("|") => continue,
                    Tok::Op(")") => break,
                    other => return Err(self.unexpected(&other)),
                }
            }
            let body = self.compound_list(&[";;", "esac"], true)?;
            arms.push((patterns, body));
            if self.peek()? == Tok::Op(";;") {
                self.next()?;
            }
        }
        Ok(Compound::Case { word, arms })
    }
}

fn op_static(op: &str) -> &'static str {
    OPS.iter().find(|o| **o == op).copied().unwrap_or(";")
}

fn redir_op(o: &str) -> Option<RedirOp> {
    Some(match o {
        "<" => RedirOp::In,
        ">" | ">|" => RedirOp::Out,
        ">>" => RedirOp::Append,
        "<>" => RedirOp::ReadWrite,
        "<&" => RedirOp::DupIn,
        ">&" => RedirOp::DupOut,
        "<<" | "<<-" => RedirOp::Heredoc,
        _ => return None,
    })
}

/// `NAME=value` as (name, value word), if `w` is an assignment.
fn split_assignment(w: &Word) -> Option<(String, Word)> {
    let Some(Part::Lit(first)) = w.0.first() else {
        return None;
    };
    let (name, value) = first.split_once('=')?;
    if !is_name(name) {
        return None;
    }
    let mut parts = Vec::new();
    if !value.is_empty() {
        parts.push(Part::Lit(value.to_owned()));
    }
    parts.extend(w.0[1..].iter().cloned());
    Some((name.to_owned(), Word(parts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(items: &[Item]) -> Vec<Vec<String>> {
        items
            .iter()
            .map(|i| match &i.and_or.first.cmds[0] {
                Command::Simple(s) => s.words.iter().map(Word::literal_text).collect(),
                _ => vec!["<compound>".to_owned()],
            })
            .collect()
    }

    #[test]
    fn quoting_and_operators() {
        let items = parse_all("echo 'a b' \"c\\\"d\" e\\ f; ls -d x").unwrap();
        assert_eq!(
            lits(&items),
            vec![vec!["echo", "a b", "c\"d", "e f"], vec!["ls", "-d", "x"]]
        );
    }

    #[test]
    fn one_complete_command_at_a_time() {
        let mut p = Parser::new("echo a\nif true\nthen echo b\nfi\necho c; do\n");
        assert!(p.next_complete().unwrap().is_some());
        assert_eq!(p.consumed_bytes(), 7);
        assert!(p.next_complete().unwrap().is_some());
        let e = p.next_complete().unwrap_err();
        assert_eq!(e.msg, "syntax error near unexpected token `do'");
    }

    #[test]
    fn heredoc_body_is_skipped_by_the_lexer() {
        let items = parse_all("cat <<EOF >x\nhello $USER\nEOF\necho after\n").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(lits(&items[1..]), vec![vec!["echo", "after"]]);
    }

    #[test]
    fn comsub_with_case_inside() {
        let items = parse_all("x=$(case a in a) echo y;; esac); echo \"$x\"").unwrap();
        assert_eq!(items.len(), 2);
    }
}
