//! `[labels]`: the runner labels of ROOT VMs beyond what their names say — the architecture
//! label (default: this build's architecture) and per-VM rules (`[[labels.vms]]`, a glob on
//! VM names with labels to add or to replace the derived ones). The mapping itself is
//! `sched::LabelMap`, shared by the scheduler, the runner registration and the simulator.

use serde::{Deserialize, Serialize};

/// `[labels]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelsSection {
    /// The architecture label every ROOT runner carries (`ARM64`, `X64`). Default: from the
    /// architecture `marbled` was built for (aarch64 → `ARM64`, x86_64 → `X64`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Per-VM rules, applied top to bottom to every VM whose name matches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vms: Vec<LabelRule>,
}

impl LabelsSection {
    /// Whether nothing is set (the section is left out when a config is written).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `[[labels.vms]]`: one rule. Rules are a list, not a table keyed by name, because globs
/// overlap and the order in which they apply must be the file's order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelRule {
    /// Glob on VM names (`*-ROOT-VM-macOS-14`, or one exact name).
    pub name: String,
    /// Labels that replace everything derived so far (name, architecture, earlier rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace: Option<Vec<String>>,
    /// Labels added (after `replace`, if both are given); duplicates are dropped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
}

/// Characters allowed in a runner label (GitHub's own charset is wider; these never need
/// quoting anywhere).
pub fn label_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl LabelsSection {
    /// Problems, each with its dotted key (`labels.vms[0].name`).
    pub fn problems(&self, bad: &mut dyn FnMut(&str, String)) {
        if let Some(arch) = &self.arch
            && !label_word(arch)
        {
            bad(
                "labels.arch",
                format!("{arch:?} is not a label (A-Z a-z 0-9 . _ -)"),
            );
        }
        for (i, rule) in self.vms.iter().enumerate() {
            let key = |k: &str| format!("labels.vms[{i}].{k}");
            if rule.name.trim().is_empty() {
                bad(&key("name"), "must name a VM or a glob on VM names".into());
            } else if let Err(err) = globset::Glob::new(&rule.name) {
                bad(&key("name"), format!("bad pattern {:?}: {err}", rule.name));
            }
            if rule.replace.is_none() && rule.add.is_empty() {
                bad(&key("add"), "a rule needs `add` or `replace`".into());
            }
            if rule.replace.as_ref().is_some_and(Vec::is_empty) {
                bad(
                    &key("replace"),
                    "must not be empty (a runner without labels takes no job)".into(),
                );
            }
            for (what, list) in [
                ("replace", rule.replace.as_deref()),
                ("add", Some(&rule.add[..])),
            ] {
                for label in list.unwrap_or_default() {
                    if !label_word(label) {
                        bad(
                            &key(what),
                            format!("{label:?} is not a label (A-Z a-z 0-9 . _ -)"),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    #[test]
    fn a_labels_section_parses_and_bad_input_names_its_key() {
        let good = "[labels]\narch = \"X64\"\n[[labels.vms]]\nname = \"*-ROOT-VM-macOS-14\"\nadd = [\"X64\"]\n[[labels.vms]]\nname = \"lab-ROOT-VM-intel\"\nreplace = [\"self-hosted\", \"macOS\", \"X64\", \"mac14\"]\n";
        let config = Config::parse(good, Path::new("t.toml")).expect("valid");
        assert_eq!(config.labels.arch.as_deref(), Some("X64"));
        assert_eq!(config.labels.vms.len(), 2);

        let bad = "[labels]\narch = \"arm 64\"\n[[labels.vms]]\nname = \"[\"\nadd = [\"has space\"]\n[[labels.vms]]\nname = \"x\"\n[[labels.vms]]\nname = \"y\"\nreplace = []\nlabel = [\"typo\"]\n";
        let err = Config::parse(bad, Path::new("t.toml")).expect_err("invalid");
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("wrong error {err:?}")
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "labels.vms.2.label",
                "labels.arch",
                "labels.vms[0].name",
                "labels.vms[0].add",
                "labels.vms[1].add",
                "labels.vms[2].replace",
            ],
            "{problems:?}"
        );
    }
}
