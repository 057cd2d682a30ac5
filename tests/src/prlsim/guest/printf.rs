//! `printf FORMAT [ARGS…]` as POSIX specifies it: escapes in the format (`\n`, `\t`, `\\`,
//! `\NNN` octal — `\0` is a NUL byte), conversions `%s %b %c %d %i %u %o %x %X %e %f %g %%`
//! with flags, width and precision (`*` too), and the format reused while arguments remain.
//! `%b` expands escapes in its argument (`\0NNN`, `\c` stops all output). Bad numbers are
//! reported and exit 1; unknown directives stop with status 1.

use super::Session;

/// Run `printf` with `args` (format first).
pub fn run(s: &mut Session<'_>, args: &[String]) -> i32 {
    let Some((format, rest)) = args.split_first() else {
        s.err("usage: printf format [arguments ...]\n");
        return 1;
    };
    let (out, errors, status) = format_all(format, rest);
    s.out(out);
    for e in errors {
        s.err(format!("printf: {e}\n"));
    }
    status
}

/// Format `args` with `format`: (output, error messages, status).
pub fn format_all(format: &str, args: &[String]) -> (Vec<u8>, Vec<String>, i32) {
    let fmt: Vec<char> = format.chars().collect();
    let mut st = State {
        out: Vec::new(),
        errors: Vec::new(),
        status: 0,
        args,
        next: 0,
        stop: false,
    };
    loop {
        let before = st.next;
        st.pass(&fmt);
        if st.stop || st.next == before || st.next >= args.len() {
            break;
        }
    }
    (st.out, st.errors, st.status)
}

struct State<'a> {
    out: Vec<u8>,
    errors: Vec<String>,
    status: i32,
    args: &'a [String],
    next: usize,
    stop: bool,
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// An escape after `\` at `chars[i]`; returns the bytes and how many chars it used.
/// `b_style`: `%b` rules (`\0NNN`, `\c`).
fn escape(chars: &[char], i: usize, b_style: bool) -> (Option<Vec<u8>>, usize) {
    let Some(&c) = chars.get(i) else {
        return (Some(b"\\".to_vec()), 0);
    };
    let simple = match c {
        'a' => Some(7u8),
        'b' => Some(8),
        'f' => Some(12),
        'n' => Some(b'\n'),
        'r' => Some(b'\r'),
        't' => Some(b'\t'),
        'v' => Some(11),
        '\\' => Some(b'\\'),
        '"' => Some(b'"'),
        '\'' => Some(b'\''),
        _ => None,
    };
    if let Some(b) = simple {
        return (Some(vec![b]), 1);
    }
    if b_style && c == 'c' {
        return (None, 1);
    }
    if c.is_digit(8) {
        // %b: `\0` then up to three octal digits; format: up to three octal digits.
        let (start, max) = if b_style && c == '0' {
            (i + 1, 3)
        } else {
            (i, 3)
        };
        let mut v: u32 = 0;
        let mut n = 0;
        while n < max
            && let Some(d) = chars.get(start + n).and_then(|d| d.to_digit(8))
        {
            v = v * 8 + d;
            n += 1;
        }
        return (
            Some(vec![u8::try_from(v & 0xff).unwrap_or(0)]),
            start - i + n,
        );
    }
    let mut v = vec![b'\\'];
    push_char(&mut v, c);
    (Some(v), 1)
}

impl State<'_> {
    fn arg(&mut self) -> Option<String> {
        let a = self.args.get(self.next).cloned();
        if a.is_some() {
            self.next += 1;
        }
        a
    }

    fn int_arg(&mut self) -> i64 {
        let Some(a) = self.arg() else {
            return 0;
        };
        match parse_int(&a) {
            Ok(v) => v,
            Err(v) => {
                self.errors.push(format!("{a}: invalid number"));
                self.status = 1;
                v
            }
        }
    }

    fn pass(&mut self, fmt: &[char]) {
        let mut i = 0;
        while i < fmt.len() && !self.stop {
            let c = fmt[i];
            if c == '\\' {
                let (bytes, used) = escape(fmt, i + 1, false);
                self.out.extend(bytes.unwrap_or_default());
                i += 1 + used;
                continue;
            }
            if c != '%' {
                push_char(&mut self.out, c);
                i += 1;
                continue;
            }
            i += 1;
            let mut flags = String::new();
            while let Some(f) = fmt.get(i).filter(|f| "-+ #0".contains(**f)) {
                flags.push(*f);
                i += 1;
            }
            let mut width: Option<usize> = None;
            if fmt.get(i) == Some(&'*') {
                let w = self.int_arg();
                if w < 0 {
                    flags.push('-');
                }
                width = usize::try_from(w.unsigned_abs()).ok();
                i += 1;
            } else {
                let mut w = String::new();
                while let Some(d) = fmt.get(i).filter(|d| d.is_ascii_digit()) {
                    w.push(*d);
                    i += 1;
                }
                width = w.parse().ok().or(width);
            }
            let mut precision: Option<usize> = None;
            if fmt.get(i) == Some(&'.') {
                i += 1;
                if fmt.get(i) == Some(&'*') {
                    precision = usize::try_from(self.int_arg().max(0)).ok();
                    i += 1;
                } else {
                    let mut p = String::new();
                    while let Some(d) = fmt.get(i).filter(|d| d.is_ascii_digit()) {
                        p.push(*d);
                        i += 1;
                    }
                    precision = Some(p.parse().unwrap_or(0));
                }
            }
            let Some(&conv) = fmt.get(i) else {
                self.errors.push("missing format character".to_owned());
                self.status = 1;
                self.stop = true;
                return;
            };
            i += 1;
            let spec = Spec {
                flags,
                width,
                precision,
            };
            match conv {
                '%' => self.out.push(b'%'),
                's' => {
                    let a = self.arg().unwrap_or_default();
                    let a: String = match precision {
                        Some(p) => a.chars().take(p).collect(),
                        None => a,
                    };
                    let padded = spec.pad(a.into_bytes(), false);
                    self.out.extend(padded);
                }
                'b' => {
                    let a: Vec<char> = self.arg().unwrap_or_default().chars().collect();
                    let mut bytes = Vec::new();
                    let mut j = 0;
                    while j < a.len() {
                        if a[j] == '\\' {
                            let (b, used) = escape(&a, j + 1, true);
                            match b {
                                Some(b) => bytes.extend(b),
                                None => {
                                    self.stop = true;
                                    break;
                                }
                            }
                            j += 1 + used;
                        } else {
                            push_char(&mut bytes, a[j]);
                            j += 1;
                        }
                    }
                    if let Some(p) = precision {
                        bytes.truncate(p);
                    }
                    let padded = spec.pad(bytes, false);
                    self.out.extend(padded);
                }
                'c' => {
                    let a = self.arg().unwrap_or_default();
                    let mut b = Vec::new();
                    if let Some(ch) = a.chars().next() {
                        push_char(&mut b, ch);
                    }
                    let padded = spec.pad(b, false);
                    self.out.extend(padded);
                }
                'd' | 'i' => {
                    let v = self.int_arg();
                    let mut digits = v.unsigned_abs().to_string();
                    if let Some(p) = precision {
                        while digits.len() < p {
                            digits.insert(0, '0');
                        }
                    }
                    let sign = if v < 0 {
                        "-"
                    } else if spec.flags.contains('+') {
                        "+"
                    } else if spec.flags.contains(' ') {
                        " "
                    } else {
                        ""
                    };
                    let padded = spec.pad_number(sign, &digits);
                    self.out.extend(padded);
                }
                'u' | 'o' | 'x' | 'X' => {
                    let v = self.int_arg();
                    let u = v as u64;
                    let mut digits = match conv {
                        'u' => u.to_string(),
                        'o' => format!("{u:o}"),
                        'x' => format!("{u:x}"),
                        _ => format!("{u:X}"),
                    };
                    if let Some(p) = precision {
                        while digits.len() < p {
                            digits.insert(0, '0');
                        }
                    }
                    let prefix = match (spec.flags.contains('#'), conv) {
                        (true, 'o') if !digits.starts_with('0') => "0",
                        (true, 'x') if u != 0 => "0x",
                        (true, 'X') if u != 0 => "0X",
                        _ => "",
                    };
                    let padded = spec.pad_number(prefix, &digits);
                    self.out.extend(padded);
                }
                'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
                    let a = self.arg().unwrap_or_default();
                    let v: f64 = match a.trim().parse() {
                        Ok(v) => v,
                        Err(_) if a.is_empty() => 0.0,
                        Err(_) => {
                            self.errors.push(format!("{a}: invalid number"));
                            self.status = 1;
                            0.0
                        }
                    };
                    let p = precision.unwrap_or(6);
                    let text = match conv {
                        'e' => format!("{v:.p$e}"),
                        'E' => format!("{v:.p$E}"),
                        'g' | 'G' => {
                            let t = format!("{v}");
                            if conv == 'G' { t.to_uppercase() } else { t }
                        }
                        _ => format!("{v:.p$}"),
                    };
                    let (sign, digits) = match text.strip_prefix('-') {
                        Some(d) => ("-", d.to_owned()),
                        None => ("", text),
                    };
                    let padded = spec.pad_number(sign, &digits);
                    self.out.extend(padded);
                }
                other => {
                    self.errors.push(format!("%{other}: invalid directive"));
                    self.status = 1;
                    self.stop = true;
                }
            }
        }
    }
}

struct Spec {
    flags: String,
    width: Option<usize>,
    precision: Option<usize>,
}

impl Spec {
    fn pad(&self, body: Vec<u8>, _numeric: bool) -> Vec<u8> {
        let w = self.width.unwrap_or(0);
        let len = String::from_utf8_lossy(&body).chars().count();
        if len >= w {
            return body;
        }
        let fill = vec![b' '; w - len];
        if self.flags.contains('-') {
            [body, fill].concat()
        } else {
            [fill, body].concat()
        }
    }

    fn pad_number(&self, sign: &str, digits: &str) -> Vec<u8> {
        let w = self.width.unwrap_or(0);
        let len = sign.len() + digits.len();
        if len >= w {
            return format!("{sign}{digits}").into_bytes();
        }
        if self.flags.contains('-') {
            format!("{sign}{digits}{}", " ".repeat(w - len)).into_bytes()
        } else if self.flags.contains('0') && self.precision.is_none() {
            format!("{sign}{}{digits}", "0".repeat(w - len)).into_bytes()
        } else {
            format!("{}{sign}{digits}", " ".repeat(w - len)).into_bytes()
        }
    }
}

/// A printf integer argument: decimal, `0x` hex, `0` octal, `'c` (the character's code).
/// `Err` carries the value of the valid prefix.
fn parse_int(a: &str) -> Result<i64, i64> {
    let t = a.trim_start();
    if let Some(c) = t.strip_prefix('\'').or_else(|| t.strip_prefix('"')) {
        return Ok(c.chars().next().map_or(0, |c| i64::from(u32::from(c))));
    }
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (radix, digits) =
        if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, h)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    let valid: String = digits.chars().take_while(|c| c.is_digit(radix)).collect();
    let v = i64::from_str_radix(&valid, radix).unwrap_or(0);
    let v = if neg { -v } else { v };
    if valid.len() == digits.len() && !digits.is_empty() {
        Ok(v)
    } else {
        Err(v)
    }
}

#[cfg(test)]
mod tests {
    use super::format_all;

    fn f(fmt: &str, args: &[&str]) -> (String, i32) {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let (out, _, status) = format_all(fmt, &args);
        (String::from_utf8_lossy(&out).into_owned(), status)
    }

    #[test]
    fn formats_like_sh() {
        assert_eq!(f("%s\\0", &["a b", "", "c"]).0, "a b\0\0c\0");
        assert_eq!(f("%s\\n", &[]).0, "\n");
        assert_eq!(f("%d|%5s|%-3s|\\n", &["42", "x", "y"]).0, "42|    x|y  |\n");
        assert_eq!(
            f("%05d %x %o %c", &["-42", "255", "8", "hello"]).0,
            "-0042 ff 10 h"
        );
        assert_eq!(f("%b", &["a\\tb\\n\\0101"]).0, "a\tb\nA");
        assert_eq!(f("%b%s", &["x\\cy", "z"]).0, "x");
        assert_eq!(f("\\101\\\\%%", &[]).0, "A\\%");
        assert_eq!(f("%d", &["3x"]), ("3".to_owned(), 1));
        assert_eq!(f("%.2s%3.1f", &["abc", "2.25"]).0, "ab2.2");
        assert_eq!(f("%z", &["a"]).1, 1);
        assert_eq!(f("no conversions\\n", &["extra"]).0, "no conversions\n");
    }
}
