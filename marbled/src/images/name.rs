//! Image names and object keys. Names follow the seed's `YYYY-MM-DD-TEAM-VM-macOS-N`; keys are
//! `<prefix><TEAM>/<name><suffix>`, where the suffix picks the format.

use super::ImageError;

/// Suffix of the data object of a MARBLE image (concatenated zstd frames).
pub const DATA_SUFFIX: &str = ".marble";
/// Suffix of the JSON manifest; written last, so its presence means "complete".
pub const MANIFEST_SUFFIX: &str = ".marble.json";
/// Suffix of legacy archives made by `zip -r`.
pub const ZIP_SUFFIX: &str = ".zip";

/// A validated image name such as `2026-11-28-ROOT-VM-macOS-14`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageName {
    name: String,
    team: String,
}

impl ImageName {
    /// Parses a name; a trailing `.zip`/`.marble` suffix is accepted and dropped.
    pub fn parse(raw: &str) -> Result<Self, ImageError> {
        let bad = |reason| ImageError::BadName {
            name: raw.to_string(),
            reason,
        };
        let name = raw
            .rsplit('/')
            .next()
            .unwrap_or(raw)
            .trim_end_matches(ZIP_SUFFIX)
            .trim_end_matches(MANIFEST_SUFFIX)
            .trim_end_matches(DATA_SUFFIX);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            || name.starts_with('.')
        {
            return Err(bad("only letters, digits, '-', '_' and '.' are allowed"));
        }
        let fields: Vec<&str> = name.splitn(5, '-').collect();
        let [y, m, d, team, rest] = fields.as_slice() else {
            return Err(bad("expected YYYY-MM-DD-TEAM-…"));
        };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !(digits(y, 4) && digits(m, 2) && digits(d, 2)) {
            return Err(bad("expected a YYYY-MM-DD date first"));
        }
        if team.is_empty() || rest.is_empty() {
            return Err(bad("expected a team and a VM name after the date"));
        }
        Ok(Self {
            name: name.to_string(),
            team: (*team).to_string(),
        })
    }

    /// Builds today's name for a VM (`<date>-<vm name without host prefix>`).
    pub fn for_vm(date: &str, pure: &str) -> Result<Self, ImageError> {
        Self::parse(&format!("{date}-{pure}"))
    }

    /// The full name.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The team (`ROOT`, `SPI`).
    pub fn team(&self) -> &str {
        &self.team
    }

    /// The name without its date: `ROOT-VM-macOS-14` (the seed's "PURE").
    pub fn without_date(&self) -> &str {
        // Invariant of `parse`: the name starts with "YYYY-MM-DD-" (11 ASCII bytes).
        &self.name[11..]
    }

    /// `<prefix><TEAM>/<name>` without suffix.
    pub fn stem(&self, prefix: &str) -> String {
        format!("{prefix}{}/{}", self.team, self.name)
    }
}

impl std::fmt::Display for ImageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seed_names() {
        let n = ImageName::parse("ROOT/2026-11-28-ROOT-VM-macOS-14.zip").expect("valid");
        assert_eq!(n.as_str(), "2026-11-28-ROOT-VM-macOS-14");
        assert_eq!(n.team(), "ROOT");
        assert_eq!(n.without_date(), "ROOT-VM-macOS-14");
        assert_eq!(n.stem("img/"), "img/ROOT/2026-11-28-ROOT-VM-macOS-14");
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "ROOT-VM",
            "26-11-28-ROOT-VM",
            "2026-11-28-ROOT",
            "2026-11-28-RO OT-VM",
            "../x",
        ] {
            assert!(ImageName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
