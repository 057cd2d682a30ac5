//! A strict parser of the Prometheus text exposition format (0.0.4), so tests can prove that
//! `marblectl metrics` and the node_exporter textfile are text Prometheus accepts.

use std::collections::{BTreeMap, BTreeSet};

/// Strict Prometheus text exposition (0.0.4) parser: returns family name → type.
///
/// Lines are `# HELP name text`, `# TYPE name type` or `name{label="value",...} value
/// [timestamp]`; names match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`;
/// label values escape only `\\`, `\"` and `\n`; each family is TYPE'd once, before its
/// samples, and its samples are contiguous; HELP at most once and before the samples; no
/// series twice; counters non-negative; summary samples are `name`, `name_sum`, `name_count`;
/// histogram samples are `name_bucket` (with an `le` label, a number or `+Inf`),
/// `name_sum` and `name_count`, and each histogram series has cumulative buckets (counts not
/// decreasing as `le` grows), a `+Inf` bucket, and a `_count` equal to it.
pub fn parse_exposition(text: &str) -> Result<BTreeMap<String, String>, String> {
    if !text.ends_with('\n') {
        return Err("text must end with a newline".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut with_samples: BTreeSet<String> = BTreeSet::new();
    let mut closed: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series: BTreeSet<String> = BTreeSet::new();
    let mut histograms = Histograms::default();
    for (n, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        if line.is_empty() {
            return Err(at("empty line".into()));
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let (kw, rest) = rest
                .split_once(' ')
                .ok_or_else(|| at("bad comment".into()))?;
            let (name, arg) = rest
                .split_once(' ')
                .ok_or_else(|| at("missing argument".into()))?;
            if !metric_name(name) {
                return Err(at(format!("bad metric name {name:?}")));
            }
            if with_samples.contains(name) {
                return Err(at(format!("{kw} after the samples of {name}")));
            }
            match kw {
                "TYPE" => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                        return Err(at(format!("unknown type {arg:?}")));
                    }
                    if types.insert(name.to_owned(), arg.to_owned()).is_some() {
                        return Err(at(format!("{name} TYPE'd twice")));
                    }
                }
                "HELP" => {
                    if !helps.insert(name.to_owned()) {
                        return Err(at(format!("{name} HELP'd twice")));
                    }
                    let mut chars = arg.chars();
                    while let Some(c) = chars.next() {
                        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                            return Err(at("bad escape in HELP".into()));
                        }
                    }
                }
                _ => return Err(at(format!("unknown comment keyword {kw:?}"))),
            }
            if let Some(prev) = current.replace(name.to_owned())
                && prev != name
            {
                closed.insert(prev);
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(at("comment without a space".into()));
        }
        let (name, labels, rest) = sample(line).map_err(at)?;
        let family = types
            .iter()
            .find(|(f, kind)| {
                name == **f
                    || (kind.as_str() == "summary"
                        && (name == format!("{f}_sum") || name == format!("{f}_count")))
                    || (kind.as_str() == "histogram"
                        && [
                            format!("{f}_sum"),
                            format!("{f}_count"),
                            format!("{f}_bucket"),
                        ]
                        .contains(&name))
            })
            .map(|(f, k)| (f.clone(), k.clone()))
            .ok_or_else(|| at(format!("sample {name} before its TYPE")))?;
        if closed.contains(&family.0) || current.as_deref() != Some(family.0.as_str()) {
            return Err(at(format!("samples of {} are not contiguous", family.0)));
        }
        with_samples.insert(family.0.clone());
        let mut parts = rest.split(' ');
        let value = parts.next().ok_or_else(|| at("no value".into()))?;
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| at(format!("bad value {v:?}")))?,
        };
        if let Some(ts) = parts.next() {
            ts.parse::<i64>()
                .map_err(|_| at(format!("bad timestamp {ts:?}")))?;
        }
        if parts.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        if family.1 == "counter" && (v < 0.0 || v.is_nan()) {
            return Err(at("negative counter".into()));
        }
        let key = format!("{name}{labels:?}");
        if !series.insert(key) {
            return Err(at("duplicate series".into()));
        }
        if family.1 == "histogram" {
            histograms.sample(&family.0, &name, labels, v).map_err(at)?;
        }
    }
    histograms.check()?;
    Ok(types)
}

/// Per histogram series (family and labels other than `le`): its buckets and its count.
#[derive(Default)]
struct Histograms {
    buckets: BTreeMap<String, Vec<(f64, f64)>>,
    counts: BTreeMap<String, f64>,
}

impl Histograms {
    fn sample(
        &mut self,
        family: &str,
        name: &str,
        mut labels: BTreeMap<String, String>,
        value: f64,
    ) -> Result<(), String> {
        let le = labels.remove("le");
        let series = format!("{family}{labels:?}");
        if name.ends_with("_bucket") {
            let le = le.ok_or("a bucket without an le label")?;
            let bound = match le.as_str() {
                "+Inf" => f64::INFINITY,
                v => v.parse().map_err(|_| format!("bad le {v:?}"))?,
            };
            self.buckets.entry(series).or_default().push((bound, value));
        } else if le.is_some() {
            return Err(format!("le label on {name}"));
        } else if name.ends_with("_count") {
            self.counts.insert(series, value);
        }
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        for (series, buckets) in &self.buckets {
            let mut sorted = buckets.clone();
            sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
            if sorted.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{series}: buckets not cumulative: {sorted:?}"));
            }
            let inf = sorted
                .last()
                .filter(|(bound, _)| bound.is_infinite())
                .ok_or_else(|| format!("{series}: no +Inf bucket"))?;
            match self.counts.get(series) {
                Some(count) if *count == inf.1 => {}
                other => {
                    return Err(format!(
                        "{series}: _count {other:?} is not the +Inf bucket {}",
                        inf.1
                    ));
                }
            }
        }
        Ok(())
    }
}

fn metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `name{labels} rest` → (name, sorted labels, rest after the single space).
fn sample(line: &str) -> Result<(String, BTreeMap<String, String>, &str), String> {
    let end = line.find(['{', ' ']).ok_or_else(|| "no value".to_owned())?;
    let name = &line[..end];
    if !metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            // label name up to '='
            let start = chars.peek().map(|(i, _)| *i).ok_or("unclosed braces")?;
            if body[start..].starts_with('}') {
                chars.next();
                break;
            }
            let eq = body[start..].find('=').ok_or("label without '='")? + start;
            let lname = &body[start..eq];
            if !label_name(lname) {
                return Err(format!("bad label name {lname:?}"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    None => return Err("unclosed label value".into()),
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape \\{other:?}")),
                    },
                    Some('\n') => return Err("raw newline in label value".into()),
                    Some(c) => value.push(c),
                }
            }
            if labels.insert(lname.to_owned(), value).is_some() {
                return Err(format!("label {lname} repeated"));
            }
            match chars.next().map(|(_, c)| c) {
                Some(',') => {}
                Some('}') => break,
                _ => return Err("expected ',' or '}' after a label".into()),
            }
        }
        let consumed = chars.peek().map_or(body.len(), |(i, _)| *i);
        rest = &body[consumed..];
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| "expected one space before the value".to_owned())?;
    if rest.starts_with(' ') {
        return Err("more than one space before the value".into());
    }
    Ok((name.to_owned(), labels, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strict_parser_rejects_what_prometheus_rejects() {
        let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"\\\\\\n\"} 3\n";
        assert!(
            parse_exposition(good).is_ok(),
            "{:?}",
            parse_exposition(good)
        );
        let histogram = "# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"1\"} 3\n\
                         h_bucket{le=\"+Inf\"} 4\nh_sum 2.5\nh_count 4\n";
        assert!(
            parse_exposition(histogram).is_ok(),
            "{:?}",
            parse_exposition(histogram)
        );
        for bad in [
            "a_total 1\n",                                          // no TYPE
            "# TYPE a counter\n# TYPE a counter\na 1\n",            // TYPE twice
            "# TYPE a gauge\na 1\n# TYPE b gauge\na 2\n",           // family split
            "# TYPE 1a gauge\n1a 1\n",                              // bad name
            "# TYPE a gauge\na{x=\"\\q\"} 1\n",                     // bad escape
            "# TYPE a gauge\na{x=\"1\"} one\n",                     // bad value
            "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n",               // repeated label
            "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",         // duplicate series
            "# TYPE a gauge\na 1",                                  // no final newline
            "# TYPE a gauge\na{x=\"1\" 1\n",                        // unclosed braces
            "# TYPE a counter\na -1\n",                             // negative counter
            "# TYPE a gauge\n# HELP a late\na 1\n# HELP a again\n", // HELP twice
            "# TYPE a gauge\na 1\n# HELP a after samples\n",        // HELP after samples
            "# TYPE a wibble\na 1\n",                               // unknown type
            // histograms: no le, not cumulative, no +Inf, _count not the +Inf bucket
            "# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"x\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        ] {
            assert!(parse_exposition(bad).is_err(), "accepted: {bad:?}");
        }
    }
}
