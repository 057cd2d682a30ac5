//! Shell pattern matching (`case`, `${x#pat}`, pathname expansion): `*`, `?`, bracket
//! expressions (`[abc]`, `[a-z]`, `[!x]`/`[^x]`, `[[:alpha:]]`…). A pattern is a sequence of
//! (char, literal) pairs: quoted characters are `literal` and match only themselves.

/// One pattern character and whether it was quoted.
pub type PatChar = (char, bool);

/// Whether the pattern has an unquoted `*`, `?` or `[`.
pub fn has_magic(pat: &[PatChar]) -> bool {
    pat.iter()
        .any(|(c, lit)| !lit && matches!(c, '*' | '?' | '['))
}

/// Whether `pat` matches all of `s`. With `path_rules`, wildcards do not match a leading
/// `.` (file names in pathname expansion).
pub fn matches(pat: &[PatChar], s: &[char], path_rules: bool) -> bool {
    if path_rules && s.first() == Some(&'.') && pat.first().map(|(c, _)| *c) != Some('.') {
        // A leading dot must be matched by a dot in the pattern.
        return false;
    }
    match_from(pat, s)
}

fn match_from(pat: &[PatChar], s: &[char]) -> bool {
    let Some(&(c, lit)) = pat.first() else {
        return s.is_empty();
    };
    if lit {
        return s.first() == Some(&c) && match_from(&pat[1..], &s[1..]);
    }
    match c {
        '*' => {
            let rest = &pat[1..];
            (0..=s.len()).any(|i| match_from(rest, &s[i..]))
        }
        '?' => !s.is_empty() && match_from(&pat[1..], &s[1..]),
        '[' => match bracket(&pat[1..]) {
            Some((set, len)) => {
                s.first().is_some_and(|ch| set.matches(*ch)) && match_from(&pat[1 + len..], &s[1..])
            }
            // An unterminated `[` is an ordinary character.
            None => s.first() == Some(&'[') && match_from(&pat[1..], &s[1..]),
        },
        _ => s.first() == Some(&c) && match_from(&pat[1..], &s[1..]),
    }
}

struct Bracket {
    negate: bool,
    items: Vec<BracketItem>,
}

enum BracketItem {
    Char(char),
    Range(char, char),
    Class(String),
}

impl Bracket {
    fn matches(&self, ch: char) -> bool {
        let hit = self.items.iter().any(|i| match i {
            BracketItem::Char(c) => *c == ch,
            BracketItem::Range(a, b) => (*a..=*b).contains(&ch),
            BracketItem::Class(name) => class_matches(name, ch),
        });
        hit != self.negate
    }
}

/// Whether `ch` is in the POSIX character class `name`.
pub fn class_matches(name: &str, ch: char) -> bool {
    match name {
        "alpha" => ch.is_alphabetic(),
        "digit" => ch.is_ascii_digit(),
        "alnum" => ch.is_alphanumeric(),
        "upper" => ch.is_uppercase(),
        "lower" => ch.is_lowercase(),
        "space" => ch.is_whitespace(),
        "blank" => ch == ' ' || ch == '\t',
        "punct" => ch.is_ascii_punctuation(),
        "xdigit" => ch.is_ascii_hexdigit(),
        "cntrl" => ch.is_control(),
        "print" => !ch.is_control(),
        "graph" => !ch.is_control() && ch != ' ',
        _ => false,
    }
}

/// Parse a bracket expression after `[`; returns it and the pattern length it used
/// (including the closing `]`).
fn bracket(pat: &[PatChar]) -> Option<(Bracket, usize)> {
    let mut i = 0;
    let negate = matches!(pat.first(), Some(('!' | '^', false)));
    if negate {
        i += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    loop {
        let &(c, lit) = pat.get(i)?;
        if c == ']' && !lit && !first {
            return Some((Bracket { negate, items }, i + 1));
        }
        first = false;
        if c == '[' && !lit && pat.get(i + 1) == Some(&(':', false)) {
            let rest: String = pat[i + 2..].iter().map(|(c, _)| *c).collect();
            if let Some(end) = rest.find(":]") {
                items.push(BracketItem::Class(rest[..end].to_owned()));
                i += 2 + rest[..end].chars().count() + 2;
                continue;
            }
        }
        if pat.get(i + 1).is_some_and(|(d, l)| *d == '-' && !l)
            && let Some(&(hi, _)) = pat.get(i + 2)
            && (hi != ']' || pat[i + 2].1)
        {
            items.push(BracketItem::Range(c, hi));
            i += 3;
            continue;
        }
        items.push(BracketItem::Char(c));
        i += 1;
    }
}

/// The shortest (`longest == false`) or longest prefix of `s` matched by `pat`, as a char count.
pub fn prefix_len(pat: &[PatChar], s: &[char], longest: bool) -> Option<usize> {
    let mut lens: Vec<usize> = (0..=s.len()).collect();
    if longest {
        lens.reverse();
    }
    lens.into_iter().find(|n| match_from(pat, &s[..*n]))
}

/// The shortest or longest suffix of `s` matched by `pat`, as a char count.
pub fn suffix_len(pat: &[PatChar], s: &[char], longest: bool) -> Option<usize> {
    let mut lens: Vec<usize> = (0..=s.len()).collect();
    if longest {
        lens.reverse();
    }
    lens.into_iter()
        .find(|n| match_from(pat, &s[s.len() - *n..]))
}

/// Pathname expansion of `pat` (a guest path pattern, absolute or relative): the matching
/// paths, sorted, spelled like the pattern. `list` lists a guest directory (`""` = the current
/// directory); `exists` says whether a guest path exists.
pub fn glob(
    pat: &[PatChar],
    list: &dyn Fn(&str) -> Option<Vec<String>>,
    exists: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let absolute = pat.first().is_some_and(|(c, _)| *c == '/');
    let comps: Vec<&[PatChar]> = pat
        .split(|(c, _)| *c == '/')
        .filter(|c| !c.is_empty())
        .collect();
    let mut found = Vec::new();
    let start = if absolute {
        "/".to_owned()
    } else {
        String::new()
    };
    walk(&start, &comps, list, exists, &mut found);
    found.sort();
    found
}

fn walk(
    prefix: &str,
    comps: &[&[PatChar]],
    list: &dyn Fn(&str) -> Option<Vec<String>>,
    exists: &dyn Fn(&str) -> bool,
    found: &mut Vec<String>,
) {
    let Some((comp, rest)) = comps.split_first() else {
        if !prefix.is_empty() && exists(prefix) {
            found.push(prefix.to_owned());
        }
        return;
    };
    let join = |name: &str| {
        if prefix.is_empty() {
            name.to_owned()
        } else if prefix.ends_with('/') {
            format!("{prefix}{name}")
        } else {
            format!("{prefix}/{name}")
        }
    };
    if !has_magic(comp) {
        let name: String = comp.iter().map(|(c, _)| *c).collect();
        walk(&join(&name), rest, list, exists, found);
        return;
    }
    let Some(mut names) = list(prefix) else {
        return;
    };
    names.sort();
    for name in names {
        let chars: Vec<char> = name.chars().collect();
        if name == "." || name == ".." {
            continue;
        }
        if matches(comp, &chars, true) {
            walk(&join(&name), rest, list, exists, found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<PatChar> {
        s.chars().map(|c| (c, false)).collect()
    }

    fn m(pat: &str, s: &str) -> bool {
        matches(&p(pat), &s.chars().collect::<Vec<_>>(), false)
    }

    #[test]
    fn wildcards_and_brackets() {
        assert!(m("*.jar", "agent.jar"));
        assert!(!m("*.jar", "agent.jar.bak"));
        assert!(m("a?c", "abc"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[!a-c]x", "bx"));
        assert!(m("[[:digit:]]*", "9lives"));
        assert!(m("[]]", "]"));
        assert!(m("[", "["));
        let quoted: Vec<PatChar> = vec![('*', true)];
        assert!(!matches(&quoted, &['a'], false));
        assert!(matches(&quoted, &['*'], false));
    }

    #[test]
    fn leading_dot_needs_a_literal_dot_in_paths() {
        let s: Vec<char> = ".PAT".chars().collect();
        assert!(!matches(&p("*"), &s, true));
        assert!(matches(&p(".P*"), &s, true));
        assert!(matches(&p("*"), &s, false));
    }

    #[test]
    fn trims() {
        let s: Vec<char> = "a/b/c.tar.gz".chars().collect();
        assert_eq!(prefix_len(&p("*/"), &s, false), Some(2));
        assert_eq!(prefix_len(&p("*/"), &s, true), Some(4));
        assert_eq!(suffix_len(&p(".*"), &s, false), Some(3));
        assert_eq!(suffix_len(&p(".*"), &s, true), Some(7));
    }
}
