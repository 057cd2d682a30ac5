//! The guest shell's lexer: tokens (words, operators, IO numbers, newlines) for
//! [`super::parse::Parser`], words with their quoting (`'…'`, `"…"`, `\`, `$'…'`), `$name`,
//! `${…}` with its operators, `$(…)` (parsed recursively), backquotes, `$((…))`, comments,
//! line continuations and here-document bodies.

use std::rc::Rc;

use super::ast::{Param, ParamOp, Part, Word};
use super::parse::{OPS, ParseError, Parser, Tok, parse_all};

impl Parser {
    /// Read a here-document body: the lines after the current line (or after the previous
    /// here-document of this line) up to the delimiter line.
    pub(super) fn heredoc_body(&mut self, delim: &str, strip_tabs: bool) -> String {
        let start = self.heredoc_end.unwrap_or_else(|| {
            (self.pos..self.src.len())
                .find(|i| self.src[*i] == '\n')
                .map_or(self.src.len(), |i| i + 1)
        });
        let mut body = String::new();
        let mut i = start;
        while i < self.src.len() {
            let end = (i..self.src.len())
                .find(|j| self.src[*j] == '\n')
                .unwrap_or(self.src.len());
            let line: String = self.src[i..end].iter().collect();
            let line = if strip_tabs {
                line.trim_start_matches('\t').to_owned()
            } else {
                line
            };
            i = (end + 1).min(self.src.len());
            if line == delim {
                break;
            }
            body.push_str(&line);
            body.push('\n');
        }
        self.heredoc_end = Some(i);
        body
    }

    fn cur(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }

    fn at(&self, off: usize) -> Option<char> {
        self.src.get(self.pos + off).copied()
    }

    pub(super) fn lex(&mut self) -> Result<Tok, ParseError> {
        loop {
            match self.cur() {
                Some(' ' | '\t') => self.pos += 1,
                Some('\\') if self.at(1) == Some('\n') => {
                    self.pos += 2;
                    self.line += 1;
                }
                Some('#') => {
                    while self.cur().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
        let Some(c) = self.cur() else {
            return Ok(Tok::Eof);
        };
        if c == '\n' {
            self.pos += 1;
            self.line += 1;
            if let Some(end) = self.heredoc_end.take() {
                let skipped = self.src[self.pos.min(end)..end]
                    .iter()
                    .filter(|c| **c == '\n')
                    .count();
                self.line += skipped;
                self.pos = end.max(self.pos);
            }
            return Ok(Tok::Newline);
        }
        for op in OPS {
            let n = op.chars().count();
            if self.src.len() >= self.pos + n
                && self.src[self.pos..self.pos + n]
                    .iter()
                    .copied()
                    .eq(op.chars())
            {
                self.pos += n;
                return Ok(Tok::Op(op));
            }
        }
        let w = self.word()?;
        if let Some(digits) = w.as_lit()
            && !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
            && matches!(self.cur(), Some('<' | '>'))
            && let Ok(n) = digits.parse()
        {
            return Ok(Tok::Io(n));
        }
        Ok(Tok::Word(w))
    }

    fn word(&mut self) -> Result<Word, ParseError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        while let Some(c) = self.cur() {
            match c {
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')' => break,
                _ => self.word_char(c, &mut parts, &mut lit, false)?,
            }
        }
        flush(&mut parts, &mut lit);
        Ok(Word(parts))
    }

    /// One character (or quoted/expansion construct) of an unquoted word; `in_brace` is
    /// the word of `${x-word}`, where blanks are literal.
    fn word_char(
        &mut self,
        c: char,
        parts: &mut Vec<Part>,
        lit: &mut String,
        in_brace: bool,
    ) -> Result<(), ParseError> {
        match c {
            '\\' => {
                self.pos += 1;
                match self.cur() {
                    Some('\n') => {
                        self.pos += 1;
                        self.line += 1;
                    }
                    Some(d) => {
                        flush(parts, lit);
                        parts.push(Part::Quoted(d.to_string()));
                        self.pos += 1;
                    }
                    None => lit.push('\\'),
                }
            }
            '\'' => {
                flush(parts, lit);
                self.pos += 1;
                let mut s = String::new();
                loop {
                    match self.cur() {
                        None => {
                            return Err(self.err("unexpected EOF while looking for matching `''"));
                        }
                        Some('\'') => break,
                        Some(d) => {
                            if d == '\n' {
                                self.line += 1;
                            }
                            s.push(d);
                            self.pos += 1;
                        }
                    }
                }
                self.pos += 1;
                parts.push(Part::Quoted(s));
            }
            '"' => {
                flush(parts, lit);
                self.pos += 1;
                let inner = self.dq_body(true)?;
                parts.push(Part::Double(inner));
            }
            '$' => match self.dollar(in_brace)? {
                Some(p) => {
                    flush(parts, lit);
                    parts.push(p);
                }
                None => {
                    lit.push('$');
                    self.pos += 1;
                }
            },
            '`' => {
                flush(parts, lit);
                let p = self.backquote()?;
                parts.push(p);
            }
            _ => {
                if c == '\n' {
                    self.line += 1;
                }
                lit.push(c);
                self.pos += 1;
            }
        }
        Ok(())
    }

    /// The inside of `"…"` (`until_quote`, consuming the closing quote) or of a
    /// here-document / arithmetic expression (to the end, `"` literal).
    pub(super) fn dq_body(&mut self, until_quote: bool) -> Result<Vec<Part>, ParseError> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let flush_q = |parts: &mut Vec<Part>, text: &mut String| {
            if !text.is_empty() {
                parts.push(Part::Quoted(std::mem::take(text)));
            }
        };
        loop {
            let Some(c) = self.cur() else {
                if until_quote {
                    return Err(self.err("unexpected EOF while looking for matching `\"'"));
                }
                break;
            };
            match c {
                '"' if until_quote => {
                    self.pos += 1;
                    break;
                }
                '\\' => {
                    let next = self.at(1);
                    let special = matches!(next, Some('$' | '`' | '\\' | '\n'))
                        || (until_quote && next == Some('"'));
                    if special {
                        self.pos += 2;
                        match next {
                            Some('\n') => self.line += 1,
                            Some(d) => text.push(d),
                            None => {}
                        }
                    } else {
                        text.push('\\');
                        self.pos += 1;
                    }
                }
                '$' => match self.dollar(false)? {
                    Some(p) => {
                        flush_q(&mut parts, &mut text);
                        parts.push(p);
                    }
                    None => {
                        text.push('$');
                        self.pos += 1;
                    }
                },
                '`' => {
                    flush_q(&mut parts, &mut text);
                    let p = self.backquote()?;
                    parts.push(p);
                }
                _ => {
                    if c == '\n' {
                        self.line += 1;
                    }
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
        flush_q(&mut parts, &mut text);
        Ok(parts)
    }

    /// At a `$`: the expansion it starts, or `None` for a literal `$`.
    fn dollar(&mut self, in_brace: bool) -> Result<Option<Part>, ParseError> {
        let Some(n) = self.at(1) else {
            return Ok(None);
        };
        match n {
            '{' => {
                self.pos += 2;
                self.braced().map(Some)
            }
            '(' if self.at(2) == Some('(') => {
                self.pos += 3;
                let start = self.pos;
                let mut depth = 0usize;
                loop {
                    match self.cur() {
                        None => return Err(self.err("unexpected EOF while looking for `))'")),
                        Some('(') => depth += 1,
                        Some(')') if depth == 0 && self.at(1) == Some(')') => break,
                        Some(')') => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                    self.pos += 1;
                }
                let expr: String = self.src[start..self.pos].iter().collect();
                self.pos += 2;
                let mut sub = Parser::new(&expr);
                Ok(Some(Part::Arith(Box::new(Word(sub.dq_body(false)?)))))
            }
            '(' => {
                self.pos += 2;
                let saved = self.peeked.take();
                let items = self.compound_list(&[")"], true)?;
                self.expect_op(")")?;
                self.peeked = saved;
                Ok(Some(Part::Command(Rc::new(items))))
            }
            '\'' if !in_brace => {
                self.pos += 2;
                Ok(Some(Part::Quoted(self.ansi_c()?)))
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                self.pos += 1;
                let mut name = String::new();
                while let Some(d) = self
                    .cur()
                    .filter(|d| d.is_ascii_alphanumeric() || *d == '_')
                {
                    name.push(d);
                    self.pos += 1;
                }
                Ok(Some(param(name, ParamOp::Get)))
            }
            c if c.is_ascii_digit() || "@*#?-$!".contains(c) => {
                self.pos += 2;
                Ok(Some(param(c.to_string(), ParamOp::Get)))
            }
            _ => Ok(None),
        }
    }

    /// After `${`: name, operator and word up to the matching `}`.
    fn braced(&mut self) -> Result<Part, ParseError> {
        let length = self.cur() == Some('#') && !matches!(self.at(1), Some('}') | None);
        if length {
            self.pos += 1;
        }
        let mut name = String::new();
        match self.cur() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                while let Some(d) = self
                    .cur()
                    .filter(|d| d.is_ascii_alphanumeric() || *d == '_')
                {
                    name.push(d);
                    self.pos += 1;
                }
            }
            Some(c) if c.is_ascii_digit() => {
                while let Some(d) = self.cur().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
            }
            Some(c) if "@*#?-$!".contains(c) => {
                name.push(c);
                self.pos += 1;
            }
            _ => return Err(self.err("bad substitution")),
        }
        if length {
            if self.cur() != Some('}') {
                return Err(self.err("bad substitution"));
            }
            self.pos += 1;
            return Ok(param(name, ParamOp::Length));
        }
        let colon = self.cur() == Some(':');
        if colon {
            self.pos += 1;
        }
        let Some(op_char) = self.cur() else {
            return Err(self.err("unexpected EOF while looking for matching `}'"));
        };
        if op_char == '}' && !colon {
            self.pos += 1;
            return Ok(param(name, ParamOp::Get));
        }
        let doubled = matches!(op_char, '#' | '%') && self.at(1) == Some(op_char);
        if !matches!(op_char, '-' | '=' | '?' | '+') && (colon || !matches!(op_char, '#' | '%')) {
            return Err(self.err("bad substitution"));
        }
        self.pos += if doubled { 2 } else { 1 };
        let mut parts = Vec::new();
        let mut lit = String::new();
        loop {
            match self.cur() {
                None => return Err(self.err("unexpected EOF while looking for matching `}'")),
                Some('}') => {
                    self.pos += 1;
                    break;
                }
                Some(c) => self.word_char(c, &mut parts, &mut lit, true)?,
            }
        }
        flush(&mut parts, &mut lit);
        let word = Word(parts);
        let op = match op_char {
            '-' => ParamOp::Default(colon, word),
            '=' => ParamOp::Assign(colon, word),
            '?' => ParamOp::Error(colon, word),
            '+' => ParamOp::Alt(colon, word),
            '#' => ParamOp::TrimPrefix(doubled, word),
            _ => ParamOp::TrimSuffix(doubled, word),
        };
        Ok(param(name, op))
    }

    /// After `` ` ``: the command up to the closing backquote, parsed.
    fn backquote(&mut self) -> Result<Part, ParseError> {
        self.pos += 1;
        let mut text = String::new();
        loop {
            match self.cur() {
                None => return Err(self.err("unexpected EOF while looking for matching ``'")),
                Some('`') => {
                    self.pos += 1;
                    break;
                }
                Some('\\') if matches!(self.at(1), Some('`' | '\\' | '$')) => {
                    if let Some(d) = self.at(1) {
                        text.push(d);
                    }
                    self.pos += 2;
                }
                Some(c) => {
                    if c == '\n' {
                        self.line += 1;
                    }
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
        let items = parse_all(&text).map_err(|e| ParseError {
            msg: e.msg,
            line: self.line,
        })?;
        Ok(Part::Command(Rc::new(items)))
    }

    /// After `$'`: ANSI-C quoting (bash extension, also in `sh` mode).
    fn ansi_c(&mut self) -> Result<String, ParseError> {
        let mut s = String::new();
        loop {
            let Some(c) = self.cur() else {
                return Err(self.err("unexpected EOF while looking for matching `''"));
            };
            self.pos += 1;
            match c {
                '\'' => break,
                '\\' => {
                    let Some(e) = self.cur() else { continue };
                    self.pos += 1;
                    match e {
                        'n' => s.push('\n'),
                        't' => s.push('\t'),
                        'r' => s.push('\r'),
                        'a' => s.push('\x07'),
                        'b' => s.push('\x08'),
                        'e' | 'E' => s.push('\x1b'),
                        'f' => s.push('\x0c'),
                        'v' => s.push('\x0b'),
                        'x' => {
                            let mut v = 0u32;
                            let mut n = 0;
                            while n < 2
                                && let Some(d) = self.cur().and_then(|d| d.to_digit(16))
                            {
                                v = v * 16 + d;
                                self.pos += 1;
                                n += 1;
                            }
                            s.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                        }
                        '0'..='7' => {
                            let mut v = e.to_digit(8).unwrap_or(0);
                            let mut n = 1;
                            while n < 3
                                && let Some(d) = self.cur().and_then(|d| d.to_digit(8))
                            {
                                v = v * 8 + d;
                                self.pos += 1;
                                n += 1;
                            }
                            s.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                        }
                        other => s.push(other),
                    }
                }
                _ => s.push(c),
            }
        }
        Ok(s)
    }
}

fn flush(parts: &mut Vec<Part>, lit: &mut String) {
    if !lit.is_empty() {
        parts.push(Part::Lit(std::mem::take(lit)));
    }
}

fn param(name: String, op: ParamOp) -> Part {
    Part::Param(Box::new(Param { name, op }))
}
