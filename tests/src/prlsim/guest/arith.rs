//! Shell arithmetic (`$((…))`): signed 64-bit integers, decimal/octal/hex literals, variable
//! names (their value, 0 when unset or empty), unary `+ - ! ~`, binary `* / % + - << >> < <=
//! > >= == != & ^ | && ||`, `?:` and parentheses. Assignment operators are not supported.

/// Evaluate `expr`; `var` reads a variable.
pub fn eval(expr: &str, var: &dyn Fn(&str) -> Option<String>) -> Result<i64, String> {
    let toks = tokenize(expr)?;
    let mut p = Arith {
        toks,
        pos: 0,
        var,
        depth: 0,
    };
    if p.toks.is_empty() {
        return Ok(0);
    }
    let v = p.ternary()?;
    match p.toks.get(p.pos) {
        None => Ok(v),
        Some(t) => Err(format!(
            "syntax error in expression (error token is \"{t}\")"
        )),
    }
}

fn tokenize(s: &str) -> Result<Vec<String>, String> {
    const OPS: [&str; 25] = [
        "<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "(", ")", "+", "-", "*", "/", "%", "!",
        "~", "<", ">", "&", "^", "|", "?", ":", "=",
    ];
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if let Some(op) = OPS.iter().find(|op| {
            let n = op.len();
            i + n <= chars.len() && chars[i..i + n].iter().copied().eq(op.chars())
        }) {
            if *op == "=" {
                return Err("attempted assignment to non-variable".to_owned());
            }
            out.push((*op).to_owned());
            i += op.len();
        } else {
            return Err(format!(
                "syntax error: invalid arithmetic operator (error token is \"{c}\")"
            ));
        }
    }
    Ok(out)
}

struct Arith<'a> {
    toks: Vec<String>,
    pos: usize,
    var: &'a dyn Fn(&str) -> Option<String>,
    depth: usize,
}

const LEVELS: [&[&str]; 10] = [
    &["||"],
    &["&&"],
    &["|"],
    &["^"],
    &["&"],
    &["==", "!="],
    &["<", "<=", ">", ">="],
    &["<<", ">>"],
    &["+", "-"],
    &["*", "/", "%"],
];

impl Arith<'_> {
    fn peek(&self) -> Option<&str> {
        self.toks.get(self.pos).map(String::as_str)
    }

    fn ternary(&mut self) -> Result<i64, String> {
        let c = self.binary(0)?;
        if self.peek() != Some("?") {
            return Ok(c);
        }
        self.pos += 1;
        let a = self.ternary()?;
        if self.peek() != Some(":") {
            return Err("`:' expected for conditional expression".to_owned());
        }
        self.pos += 1;
        let b = self.ternary()?;
        Ok(if c != 0 { a } else { b })
    }

    fn binary(&mut self, level: usize) -> Result<i64, String> {
        let Some(ops) = LEVELS.get(level) else {
            return self.unary();
        };
        let mut v = self.binary(level + 1)?;
        while let Some(op) = self.peek().filter(|t| ops.contains(t)).map(str::to_owned) {
            self.pos += 1;
            let r = self.binary(level + 1)?;
            v = apply(&op, v, r)?;
        }
        Ok(v)
    }

    fn unary(&mut self) -> Result<i64, String> {
        self.depth += 1;
        if self.depth > 200 {
            return Err("expression recursion level exceeded".to_owned());
        }
        let t = self
            .peek()
            .map(str::to_owned)
            .ok_or_else(|| "syntax error: operand expected".to_owned())?;
        self.pos += 1;
        let v = match t.as_str() {
            "+" => self.unary()?,
            "-" => self.unary()?.wrapping_neg(),
            "!" => i64::from(self.unary()? == 0),
            "~" => !self.unary()?,
            "(" => {
                let v = self.ternary()?;
                if self.peek() != Some(")") {
                    return Err("missing `)'".to_owned());
                }
                self.pos += 1;
                v
            }
            s if s.starts_with(|c: char| c.is_ascii_digit()) => number(s)?,
            s if s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') => {
                match (self.var)(s) {
                    Some(v) if !v.trim().is_empty() => {
                        eval(&v, self.var).map_err(|e| format!("{s}: {e}"))?
                    }
                    _ => 0,
                }
            }
            other => {
                return Err(format!(
                    "syntax error: operand expected (error token is \"{other}\")"
                ));
            }
        };
        self.depth -= 1;
        Ok(v)
    }
}

fn number(s: &str) -> Result<i64, String> {
    let parsed = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i64::from_str_radix(h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        i64::from_str_radix(&s[1..], 8)
    } else {
        s.parse()
    };
    parsed.map_err(|_| format!("{s}: value too great for base (error token is \"{s}\")"))
}

fn apply(op: &str, a: i64, b: i64) -> Result<i64, String> {
    Ok(match op {
        "||" => i64::from(a != 0 || b != 0),
        "&&" => i64::from(a != 0 && b != 0),
        "|" => a | b,
        "^" => a ^ b,
        "&" => a & b,
        "==" => i64::from(a == b),
        "!=" => i64::from(a != b),
        "<" => i64::from(a < b),
        "<=" => i64::from(a <= b),
        ">" => i64::from(a > b),
        ">=" => i64::from(a >= b),
        "<<" => a.wrapping_shl(u32::try_from(b & 63).unwrap_or(0)),
        ">>" => a.wrapping_shr(u32::try_from(b & 63).unwrap_or(0)),
        "+" => a.wrapping_add(b),
        "-" => a.wrapping_sub(b),
        "*" => a.wrapping_mul(b),
        "/" | "%" if b == 0 => return Err("division by 0 (error token is \"0\")".to_owned()),
        "/" => a.wrapping_div(b),
        _ => a.wrapping_rem(b),
    })
}

#[cfg(test)]
mod tests {
    use super::eval;

    #[test]
    fn precedence_variables_and_errors() {
        let vars = |n: &str| match n {
            "waited" => Some("4".to_owned()),
            "e" => Some(String::new()),
            _ => None,
        };
        assert_eq!(eval("waited + 2 * 3", &vars), Ok(10));
        assert_eq!(eval("(1 + 2) * 3 - 010 + 0x10", &vars), Ok(17));
        assert_eq!(eval("e + nope", &vars), Ok(0));
        assert_eq!(eval("3 > 2 && !0 ? 7 : 8", &vars), Ok(7));
        assert!(eval("1 / 0", &vars).is_err());
        assert!(eval("1 +", &vars).is_err());
    }
}
