//! A small backtracking POSIX regular-expression engine for `grep` (basic or extended) and
//! `pgrep`/`pkill` (extended): literals, `.`, bracket expressions, `^`, `$`, groups,
//! alternation, `*`, `+`, `?`, `{m,n}`; case folding.

use super::pattern::class_matches;

/// A compiled regular expression.
#[derive(Debug, Clone)]
pub struct Regex {
    alt: Alt,
    icase: bool,
}

#[derive(Debug, Clone)]
struct Alt(Vec<Vec<Item>>);

#[derive(Debug, Clone)]
struct Item {
    node: Node,
    min: usize,
    max: usize,
}

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Set(bool, Vec<SetItem>),
    Start,
    End,
    Group(Alt),
}

#[derive(Debug, Clone)]
enum SetItem {
    Char(char),
    Range(char, char),
    Class(String),
}

struct P<'a> {
    s: &'a [char],
    i: usize,
    ere: bool,
    icase: bool,
}

impl Regex {
    /// Compile `pat` (ERE if `extended`, else BRE).
    pub fn new(pat: &str, extended: bool, icase: bool) -> Result<Regex, String> {
        let chars: Vec<char> = pat.chars().collect();
        let mut p = P {
            s: &chars,
            i: 0,
            ere: extended,
            icase,
        };
        let alt = p.alt(0)?;
        if p.i < chars.len() {
            return Err("parentheses not balanced".to_owned());
        }
        Ok(Regex { alt, icase })
    }

    /// Whether it matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        let t = self.fold(text);
        (0..=t.len()).any(|start| match_alt(&self.alt, &t, start, &mut |_| true))
    }

    /// Whether it matches all of `text`.
    pub fn matches_whole(&self, text: &str) -> bool {
        let t = self.fold(text);
        match_alt(&self.alt, &t, 0, &mut |end| end == t.len())
    }

    /// Whether it matches a whole word of `text` (`grep -w`).
    pub fn matches_word(&self, text: &str) -> bool {
        let t = self.fold(text);
        let is_word = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_');
        (0..=t.len()).any(|start| {
            (start == 0 || !is_word(t.get(start - 1)))
                && match_alt(&self.alt, &t, start, &mut |end| {
                    end > start && !is_word(t.get(end))
                })
        })
    }

    fn fold(&self, text: &str) -> Vec<char> {
        if self.icase {
            text.to_lowercase().chars().collect()
        } else {
            text.chars().collect()
        }
    }
}

impl P<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn at_alt_bar(&self) -> bool {
        if self.ere {
            self.peek() == Some('|')
        } else {
            self.peek() == Some('\\') && self.s.get(self.i + 1) == Some(&'|')
        }
    }

    fn at_group_end(&self) -> bool {
        if self.ere {
            self.peek() == Some(')')
        } else {
            self.peek() == Some('\\') && self.s.get(self.i + 1) == Some(&')')
        }
    }

    fn alt(&mut self, depth: usize) -> Result<Alt, String> {
        let mut branches = vec![self.seq(depth)?];
        while self.at_alt_bar() {
            self.i += if self.ere { 1 } else { 2 };
            branches.push(self.seq(depth)?);
        }
        Ok(Alt(branches))
    }

    fn seq(&mut self, depth: usize) -> Result<Vec<Item>, String> {
        let mut items: Vec<Item> = Vec::new();
        let start = self.i;
        while let Some(c) = self.peek() {
            if self.at_alt_bar() || depth > 0 && self.at_group_end() {
                break;
            }
            if self.ere && c == ')' && depth == 0 {
                return Err("parentheses not balanced".to_owned());
            }
            // Quantifiers apply to the previous item.
            let quant = match c {
                '*' if !(items.is_empty() && !self.ere && self.i == start) => {
                    Some((0, usize::MAX, 1))
                }
                '+' if self.ere => Some((1, usize::MAX, 1)),
                '?' if self.ere => Some((0, 1, 1)),
                '{' if self.ere => self.braces(1)?,
                '\\' if !self.ere && self.s.get(self.i + 1) == Some(&'{') => self.braces(2)?,
                _ => None,
            };
            if let Some((min, max, width)) = quant {
                match items.last_mut() {
                    Some(last) => {
                        last.min = min;
                        last.max = max;
                        self.i += width;
                        continue;
                    }
                    None if self.ere => {
                        return Err("repetition-operator operand invalid".to_owned());
                    }
                    None => {}
                }
            }
            let node = self.atom(depth, items.is_empty() && self.i == start)?;
            items.push(Item {
                node,
                min: 1,
                max: 1,
            });
        }
        Ok(items)
    }

    /// `{m}`, `{m,}`, `{m,n}` (after `skip` opening chars); advances past it (so the width
    /// left to skip is 0).
    fn braces(&mut self, skip: usize) -> Result<Option<(usize, usize, usize)>, String> {
        let from = self.i + skip;
        let close = if self.ere { "}" } else { "\\}" };
        let rest: String = self.s[from..].iter().collect();
        let Some(end) = rest.find(close) else {
            return Err("braces not balanced".to_owned());
        };
        let body = &rest[..end];
        let (min, max) = match body.split_once(',') {
            Some((a, "")) => (
                a.parse().map_err(|_| "invalid repetition count(s)")?,
                usize::MAX,
            ),
            Some((a, b)) => (
                a.parse().map_err(|_| "invalid repetition count(s)")?,
                b.parse().map_err(|_| "invalid repetition count(s)")?,
            ),
            None => {
                let n = body.parse().map_err(|_| "invalid repetition count(s)")?;
                (n, n)
            }
        };
        self.i = from + body.chars().count() + close.len();
        Ok(Some((min, max, 0)))
    }

    fn atom(&mut self, depth: usize, first: bool) -> Result<Node, String> {
        let c = self.peek().ok_or("trailing backslash (\\)")?;
        self.i += 1;
        Ok(match c {
            '.' => Node::Any,
            '^' if self.ere || first => Node::Start,
            '$' if self.ere || self.peek().is_none() || self.at_group_end() && depth > 0 => {
                Node::End
            }
            '[' => self.set()?,
            '(' if self.ere => {
                let alt = self.alt(depth + 1)?;
                if self.peek() != Some(')') {
                    return Err("parentheses not balanced".to_owned());
                }
                self.i += 1;
                Node::Group(alt)
            }
            '\\' => {
                let d = self.peek().ok_or("trailing backslash (\\)")?;
                self.i += 1;
                if !self.ere && d == '(' {
                    let alt = self.alt(depth + 1)?;
                    if !self.at_group_end() {
                        return Err("parentheses not balanced".to_owned());
                    }
                    self.i += 2;
                    Node::Group(alt)
                } else {
                    Node::Char(self.fold(d))
                }
            }
            other => Node::Char(self.fold(other)),
        })
    }

    fn fold(&self, c: char) -> char {
        if self.icase {
            c.to_lowercase().next().unwrap_or(c)
        } else {
            c
        }
    }

    fn set(&mut self) -> Result<Node, String> {
        let negate = self.peek() == Some('^');
        if negate {
            self.i += 1;
        }
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let c = self.peek().ok_or("brackets ([ ]) not balanced")?;
            if c == ']' && !first {
                self.i += 1;
                break;
            }
            first = false;
            if c == '[' && self.s.get(self.i + 1) == Some(&':') {
                let rest: String = self.s[self.i + 2..].iter().collect();
                if let Some(end) = rest.find(":]") {
                    items.push(SetItem::Class(rest[..end].to_owned()));
                    self.i += 2 + rest[..end].chars().count() + 2;
                    continue;
                }
            }
            if self.s.get(self.i + 1) == Some(&'-')
                && let Some(&hi) = self.s.get(self.i + 2)
                && hi != ']'
            {
                items.push(SetItem::Range(self.fold(c), self.fold(hi)));
                self.i += 3;
                continue;
            }
            items.push(SetItem::Char(self.fold(c)));
            self.i += 1;
        }
        Ok(Node::Set(negate, items))
    }
}

fn match_alt(alt: &Alt, t: &[char], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    alt.0.iter().any(|seq| match_seq(seq, t, pos, k))
}

fn match_seq(items: &[Item], t: &[char], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    let Some((first, rest)) = items.split_first() else {
        return k(pos);
    };
    match_repeat(first, 0, t, pos, &mut |p| match_seq(rest, t, p, k))
}

fn match_repeat(
    item: &Item,
    count: usize,
    t: &[char],
    pos: usize,
    k: &mut dyn FnMut(usize) -> bool,
) -> bool {
    if count < item.max
        && match_node(&item.node, t, pos, &mut |p| {
            // Beyond the required count, an empty iteration cannot make progress: stop.
            (p > pos || count < item.min) && match_repeat(item, count + 1, t, p, k)
        })
    {
        return true;
    }
    count >= item.min && k(pos)
}

fn match_node(node: &Node, t: &[char], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    match node {
        Node::Char(c) => t.get(pos) == Some(c) && k(pos + 1),
        Node::Any => pos < t.len() && k(pos + 1),
        Node::Set(negate, items) => {
            t.get(pos).is_some_and(|ch| {
                items.iter().any(|i| match i {
                    SetItem::Char(c) => c == ch,
                    SetItem::Range(a, b) => (a..=b).contains(&ch),
                    SetItem::Class(name) => class_matches(name, *ch),
                }) != *negate
            }) && k(pos + 1)
        }
        Node::Start => pos == 0 && k(pos),
        Node::End => pos == t.len() && k(pos),
        Node::Group(alt) => match_alt(alt, t, pos, k),
    }
}

#[cfg(test)]
mod tests {
    use super::Regex;

    fn ere(p: &str, t: &str) -> bool {
        Regex::new(p, true, false).unwrap().is_match(t)
    }

    #[test]
    fn what_pgrep_and_grep_callers_use() {
        assert!(ere(
            "Runner.Worker",
            "/Users/runner/bin/Runner.Worker spawnclient"
        ));
        assert!(ere("^Runner", "Runner.Listener"));
        assert!(!ere("^Listener", "Runner.Listener"));
        assert!(ere(
            "agent.jar|remoting.jar",
            "java -jar /x/remoting.jar -url y"
        ));
        assert!(ere("java.*remoting", "java -jar /opt/remoting.jar"));
        assert!(!ere("Runner\\.Worker", "RunnerXWorker"));
        assert!(ere("(ab)+c$", "xababc"));
        assert!(ere("a{2,3}", "caab"));
        assert!(!ere("^a{2}$", "aaa"));
        assert!(ere("[[:digit:]]+", "v12"));
        assert!(
            Regex::new("WORKER$", true, true)
                .unwrap()
                .is_match("Runner.worker")
        );
        // BRE: `|` and `+` are literal, `\(\)` groups.
        let bre = |p: &str, t: &str| Regex::new(p, false, false).unwrap().is_match(t);
        assert!(bre("a|b", "xa|by"));
        assert!(!bre("a|b", "a"));
        assert!(bre("\\(ab\\)*c", "ababc"));
        assert!(bre("*a", "*a"));
        assert!(Regex::new("(a", true, false).is_err());
    }
}
