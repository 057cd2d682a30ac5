//! Text utilities of the simulated guest (BSD flavour): `cat`, `tee`, `grep`/`egrep`/`fgrep`
//! (`-qvcFEilnxwhs`, `-e`), `wc`, `head`, `tail`, `tr`, `sort`, `uniq`, `cut`. Files named
//! `-` or no files read stdin.

use super::Session;
use super::regex::Regex;

/// Run text utility `name`; `None` if it is not one.
pub fn run(s: &mut Session<'_>, name: &str, args: &[String]) -> Option<i32> {
    Some(match name {
        "cat" => cat(s, args),
        "tee" => tee(s, args),
        "grep" | "egrep" | "fgrep" => grep(s, name, args),
        "wc" => wc(s, args),
        "head" | "tail" => head_tail(s, name, args),
        "tr" => tr(s, args),
        "sort" => sort(s, args),
        "uniq" => uniq(s, args),
        "cut" => cut(s, args),
        _ => return None,
    })
}

/// Input of a utility: the named files in order (errors reported), or stdin.
fn inputs(s: &mut Session<'_>, name: &str, files: &[String]) -> (Vec<(String, Vec<u8>)>, i32) {
    if files.is_empty() {
        return (vec![(String::new(), s.stdin_all())], 0);
    }
    let mut out = Vec::new();
    let mut status = 0;
    for f in files {
        if f == "-" {
            out.push((f.clone(), s.stdin_all()));
            continue;
        }
        match s.read_guest(f) {
            Ok(b) => out.push((f.clone(), b)),
            Err(e) => {
                s.err(format!("{name}: {f}: {e}\n"));
                status = 1;
            }
        }
    }
    (out, status)
}

fn operands(args: &[String]) -> (String, Vec<String>) {
    let mut flags = String::new();
    let mut ops = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            ops.extend(it.cloned());
            break;
        }
        if a.len() > 1 && a.starts_with('-') {
            flags.push_str(&a[1..]);
        } else {
            ops.push(a.clone());
        }
    }
    (flags, ops)
}

fn cat(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (_, files) = operands(args);
    let (data, status) = inputs(s, "cat", &files);
    for (_, b) in data {
        s.out(b);
    }
    status
}

fn tee(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (flags, files) = operands(args);
    let append = flags.contains('a');
    let data = s.stdin_all();
    s.out(&data);
    let mut status = 0;
    for f in files {
        if let Err(e) = s.write_guest(&f, &data, append) {
            s.err(format!("tee: {f}: {e}\n"));
            status = 1;
        }
    }
    status
}

fn lines(b: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(b)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn grep(s: &mut Session<'_>, name: &str, args: &[String]) -> i32 {
    let mut flags = String::new();
    let mut patterns = Vec::new();
    let mut ops = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            ops.extend(it.cloned());
            break;
        }
        if a == "-e" {
            if let Some(p) = it.next() {
                patterns.push(p.clone());
            }
        } else if a.len() > 1 && a.starts_with('-') && ops.is_empty() {
            flags.push_str(&a[1..]);
        } else {
            ops.push(a.clone());
        }
    }
    if patterns.is_empty() {
        if ops.is_empty() {
            s.err("usage: grep [-abcdDEFGHhIiJLlMmnOopqRSsUVvwXxZz] [-A num] [-B num] [-C[num]]\n\t[-e pattern] [-f file] [--binary-files=value] [--color=when]\n\t[--context[=num]] [--directories=action] [--label] [--line-buffered]\n\t[--null] [pattern] [file ...]\n");
            return 2;
        }
        patterns.push(ops.remove(0));
    }
    let fixed = flags.contains('F') || name == "fgrep";
    let extended = flags.contains('E') || name == "egrep";
    let icase = flags.contains('i');
    let quiet = flags.contains('q');
    let mut res = Vec::new();
    for p in &patterns {
        if fixed {
            res.push(None);
            continue;
        }
        match Regex::new(p, extended, icase) {
            Ok(r) => res.push(Some(r)),
            Err(e) => {
                s.err(format!("grep: {e}\n"));
                return 2;
            }
        }
    }
    let whole_line = flags.contains('x');
    let word = flags.contains('w');
    let hit = |line: &str| {
        patterns.iter().zip(&res).any(|(p, r)| match r {
            None => {
                let (l, p) = if icase {
                    (line.to_lowercase(), p.to_lowercase())
                } else {
                    (line.to_owned(), p.clone())
                };
                if whole_line {
                    l == p
                } else if word {
                    l.split(|c: char| !c.is_alphanumeric() && c != '_')
                        .any(|w| w == p)
                } else {
                    l.contains(&p)
                }
            }
            Some(r) if whole_line => r.matches_whole(line),
            Some(r) if word => r.matches_word(line),
            Some(r) => r.is_match(line),
        })
    };
    let (data, read_status) = inputs(s, "grep", &ops);
    let show_names = data.len() > 1 && !flags.contains('h');
    let mut any = false;
    let mut out = String::new();
    for (fname, bytes) in &data {
        let mut count = 0;
        for (n, line) in lines(bytes).iter().enumerate() {
            if hit(line) == flags.contains('v') {
                continue;
            }
            any = true;
            count += 1;
            if quiet || flags.contains('c') || flags.contains('l') {
                continue;
            }
            if show_names {
                out.push_str(&format!("{fname}:"));
            }
            if flags.contains('n') {
                out.push_str(&format!("{}:", n + 1));
            }
            out.push_str(line);
            out.push('\n');
        }
        if flags.contains('c') && !quiet {
            if show_names {
                out.push_str(&format!("{fname}:"));
            }
            out.push_str(&format!("{count}\n"));
        }
        if flags.contains('l') && count > 0 && !quiet {
            out.push_str(&format!(
                "{}\n",
                if fname.is_empty() {
                    "(standard input)"
                } else {
                    fname
                }
            ));
        }
    }
    if !quiet {
        s.out(out);
    }
    if read_status != 0 && !(quiet && any) {
        return 2;
    }
    i32::from(!any)
}

fn wc(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (flags, files) = operands(args);
    let (data, status) = inputs(s, "wc", &files);
    let all = flags.is_empty();
    let mut out = String::new();
    for (name, b) in &data {
        let text = String::from_utf8_lossy(b);
        let mut cols = Vec::new();
        if all || flags.contains('l') {
            cols.push(b.iter().filter(|c| **c == b'\n').count());
        }
        if all || flags.contains('w') {
            cols.push(text.split_whitespace().count());
        }
        if all || flags.contains('c') {
            cols.push(b.len());
        }
        if flags.contains('m') {
            cols.push(text.chars().count());
        }
        for c in cols {
            out.push_str(&format!("{c:>8}"));
        }
        if !name.is_empty() {
            out.push(' ');
            out.push_str(name);
        }
        out.push('\n');
    }
    s.out(out);
    status
}

fn head_tail(s: &mut Session<'_>, name: &str, args: &[String]) -> i32 {
    let mut n: i64 = 10;
    let mut from_start = false;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-n" {
            let v = it.next().cloned().unwrap_or_default();
            from_start = v.starts_with('+');
            n = v.trim_start_matches(['+', '-']).parse().unwrap_or(10);
        } else if let Some(v) = a.strip_prefix("-n") {
            from_start = v.starts_with('+');
            n = v.trim_start_matches(['+', '-']).parse().unwrap_or(10);
        } else if a.len() > 1 && a.starts_with('-') && a[1..].chars().all(|c| c.is_ascii_digit()) {
            n = a[1..].parse().unwrap_or(10);
        } else if a.starts_with('+') && name == "tail" {
            from_start = true;
            n = a[1..].parse().unwrap_or(1);
        } else {
            files.push(a.clone());
        }
    }
    let (data, status) = inputs(s, name, &files);
    let n = usize::try_from(n).unwrap_or(0);
    for (_, b) in data {
        let text = String::from_utf8_lossy(&b).into_owned();
        let ls: Vec<&str> = text.split_inclusive('\n').collect();
        let picked: Vec<&str> = if name == "head" {
            ls.iter().take(n).copied().collect()
        } else if from_start {
            ls.iter().skip(n.saturating_sub(1)).copied().collect()
        } else {
            ls[ls.len().saturating_sub(n)..].to_vec()
        };
        s.out(picked.concat());
    }
    status
}

/// Expand a `tr` set: ranges, escapes, `[:class:]`.
fn tr_set(spec: &str) -> Vec<char> {
    let chars: Vec<char> = spec.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' && chars.get(i + 1) == Some(&':') {
            let rest: String = chars[i + 2..].iter().collect();
            if let Some(end) = rest.find(":]") {
                let class = &rest[..end];
                out.extend(
                    (0u8..128)
                        .map(char::from)
                        .filter(|c| super::pattern::class_matches(class, *c)),
                );
                i += 2 + class.chars().count() + 2;
                continue;
            }
        }
        let c = if chars[i] == '\\' && i + 1 < chars.len() {
            i += 1;
            match chars[i] {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '0' => '\0',
                other => other,
            }
        } else {
            chars[i]
        };
        if chars.get(i + 1) == Some(&'-') && i + 2 < chars.len() {
            let hi = chars[i + 2];
            out.extend(c..=hi);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn tr(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (flags, sets) = operands(args);
    let delete = flags.contains('d');
    let squeeze = flags.contains('s');
    let Some(set1) = sets.first().map(|x| tr_set(x)) else {
        s.err("usage: tr [-Ccsu] string1 string2\n");
        return 1;
    };
    let set2 = sets.get(1).map(|x| tr_set(x)).unwrap_or_default();
    let input = String::from_utf8_lossy(&s.stdin_all()).into_owned();
    let mut out = String::new();
    for c in input.chars() {
        let mapped = match set1.iter().position(|x| *x == c) {
            Some(_) if delete => continue,
            Some(i) if !set2.is_empty() => set2.get(i).or(set2.last()).copied().unwrap_or(c),
            _ => c,
        };
        let squeezable = if set2.is_empty() {
            set1.contains(&mapped)
        } else {
            set2.contains(&mapped)
        };
        if squeeze && squeezable && out.ends_with(mapped) {
            continue;
        }
        out.push(mapped);
    }
    s.out(out);
    0
}

fn sort(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (flags, files) = operands(args);
    let (data, status) = inputs(s, "sort", &files);
    let mut all: Vec<String> = data.iter().flat_map(|(_, b)| lines(b)).collect();
    if flags.contains('n') {
        let num = |l: &str| {
            l.trim()
                .split(|c: char| !c.is_ascii_digit() && c != '-')
                .next()
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(0)
        };
        all.sort_by(|a, b| num(a).cmp(&num(b)).then_with(|| a.cmp(b)));
    } else {
        all.sort();
    }
    if flags.contains('r') {
        all.reverse();
    }
    if flags.contains('u') {
        all.dedup();
    }
    s.out(all.iter().map(|l| format!("{l}\n")).collect::<String>());
    status
}

fn uniq(s: &mut Session<'_>, args: &[String]) -> i32 {
    let (flags, files) = operands(args);
    let (data, status) = inputs(s, "uniq", &files);
    let all: Vec<String> = data.iter().flat_map(|(_, b)| lines(b)).collect();
    let mut groups: Vec<(String, usize)> = Vec::new();
    for l in all {
        match groups.last_mut() {
            Some((prev, n)) if *prev == l => *n += 1,
            _ => groups.push((l, 1)),
        }
    }
    let mut out = String::new();
    for (l, n) in groups {
        if flags.contains('d') && n < 2 || flags.contains('u') && n > 1 {
            continue;
        }
        if flags.contains('c') {
            out.push_str(&format!("{n:>4} {l}\n"));
        } else {
            out.push_str(&format!("{l}\n"));
        }
    }
    s.out(out);
    status
}

fn cut(s: &mut Session<'_>, args: &[String]) -> i32 {
    let mut delim = '\t';
    let mut fields: Option<String> = None;
    let mut chars_list: Option<String> = None;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut take = |flag: &str| -> Option<String> {
            if a == flag {
                it.next().cloned()
            } else {
                a.strip_prefix(flag).map(str::to_owned)
            }
        };
        if let Some(d) = take("-d") {
            delim = d.chars().next().unwrap_or('\t');
        } else if let Some(f) = take("-f") {
            fields = Some(f);
        } else if let Some(c) = take("-c") {
            chars_list = Some(c);
        } else {
            files.push(a.clone());
        }
    }
    let Some(list) = fields.clone().or(chars_list.clone()) else {
        s.err("usage: cut -b list [-n] [file ...]\n       cut -c list [file ...]\n       cut -f list [-s] [-w | -d delim] [file ...]\n");
        return 1;
    };
    let wanted = |i: usize| {
        list.split(',').any(|r| match r.split_once('-') {
            Some((a, b)) => {
                let lo = a.parse().unwrap_or(1);
                let hi = b.parse().unwrap_or(usize::MAX);
                (lo..=hi).contains(&i)
            }
            None => r.parse() == Ok(i),
        })
    };
    let (data, status) = inputs(s, "cut", &files);
    let mut out = String::new();
    for l in data.iter().flat_map(|(_, b)| lines(b)) {
        let picked: Vec<String> = if fields.is_some() {
            if !l.contains(delim) {
                out.push_str(&l);
                out.push('\n');
                continue;
            }
            l.split(delim)
                .enumerate()
                .filter(|(i, _)| wanted(i + 1))
                .map(|(_, f)| f.to_owned())
                .collect()
        } else {
            l.chars()
                .enumerate()
                .filter(|(i, _)| wanted(i + 1))
                .map(|(_, c)| c.to_string())
                .collect()
        };
        let sep = if fields.is_some() {
            delim.to_string()
        } else {
            String::new()
        };
        out.push_str(&picked.join(&sep));
        out.push('\n');
    }
    s.out(out);
    status
}
