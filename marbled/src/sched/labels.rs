//! Runner labels: the one mapping from a ROOT VM's name (plus `[labels]` and
//! `github.labels_extra`) to the labels its runner offers — used by the inventory (the
//! scheduler's view), the runner registration and the simulator alike, so what the scheduler
//! boots for is what GitHub will match — and GitHub's rule for whether a runner's labels
//! cover a job's `runs-on`.

use globset::{Glob, GlobMatcher};

use crate::config::{Config, LabelsSection};

/// Whether a job's labels are all among a runner's (case-insensitive; GitHub's rule).
pub fn labels_cover(runner: &[String], job: &[String]) -> bool {
    !job.is_empty()
        && job
            .iter()
            .all(|j| runner.iter().any(|r| r.eq_ignore_ascii_case(j)))
}

/// The architecture label GitHub's runner gives a machine of Rust's `arch`
/// (`std::env::consts::ARCH`): aarch64 → `ARM64`, x86_64 → `X64`, anything else upper-cased.
pub fn arch_label(arch: &str) -> String {
    match arch {
        "aarch64" | "arm64" => "ARM64".into(),
        "x86_64" | "amd64" => "X64".into(),
        other => other.to_ascii_uppercase(),
    }
}

/// The architecture label of the machine this build runs on.
pub fn host_arch_label() -> String {
    arch_label(std::env::consts::ARCH)
}

/// The macOS major version in a VM name (`…-macOS-14`, `…-macos15`, `…_macOS_26`).
pub fn macos_major(name: &str) -> Option<u32> {
    let lower = name.to_ascii_lowercase();
    lower.match_indices("macos").find_map(|(i, m)| {
        let rest = lower[i + m.len()..].trim_start_matches(['-', '_', ' ']);
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok().filter(|n| (11..=99).contains(n))
    })
}

/// The version label a VM name carries, as ROOT's workflows spell it: `macOS-NN` → `macNN`,
/// `macOS-beta` → `mac-beta`. None when the name says neither.
pub fn version_label(name: &str) -> Option<String> {
    if let Some(n) = macos_major(name) {
        return Some(format!("mac{n}"));
    }
    let lower = name.to_ascii_lowercase();
    lower
        .match_indices("macos")
        .any(|(i, m)| {
            lower[i + m.len()..]
                .trim_start_matches(['-', '_', ' '])
                .starts_with("beta")
        })
        .then(|| "mac-beta".to_owned())
}

/// A VM's runner labels and whether they name its macOS version (a name without one, and no
/// `replace` rule, leaves the version for the registration to find from the guest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmLabels {
    /// The labels, in order, without case-insensitive duplicates.
    pub labels: Vec<String>,
    /// The version label came from the name, or a `replace` rule set the whole list.
    pub complete: bool,
}

/// One compiled `[[labels.vms]]` rule.
#[derive(Debug, Clone)]
struct Rule {
    matcher: GlobMatcher,
    replace: Option<Vec<String>>,
    add: Vec<String>,
}

/// The label mapping: `self-hosted`, `macOS`, the architecture, the name's version label,
/// `github.labels_extra`, then each matching `[[labels.vms]]` rule in order.
#[derive(Debug, Clone)]
pub struct LabelMap {
    arch: String,
    extra: Vec<String>,
    rules: Vec<Rule>,
}

impl Default for LabelMap {
    /// This host's architecture, no extras, no rules.
    fn default() -> Self {
        Self::new(&host_arch_label(), &[], &LabelsSection::default())
    }
}

/// Push `label` unless already there (case-insensitively, as GitHub compares).
fn push_once(labels: &mut Vec<String>, label: &str) {
    if !labels.iter().any(|l| l.eq_ignore_ascii_case(label)) {
        labels.push(label.to_owned());
    }
}

impl LabelMap {
    /// From `arch` (a label, `ARM64`; `section.arch` wins when set), extras for every VM,
    /// and `section`'s rules (already validated: a bad glob is skipped).
    pub fn new(arch: &str, extra: &[String], section: &LabelsSection) -> Self {
        let rules = section
            .vms
            .iter()
            .filter_map(|r| {
                Some(Rule {
                    matcher: Glob::new(&r.name).ok()?.compile_matcher(),
                    replace: r.replace.clone(),
                    add: r.add.clone(),
                })
            })
            .collect();
        Self {
            arch: section.arch.clone().unwrap_or_else(|| arch.to_owned()),
            extra: extra.to_vec(),
            rules,
        }
    }

    /// The daemon's mapping: this build's architecture, `[labels]`, `github.labels_extra`.
    pub fn from_config(config: &Config) -> Self {
        let extra = config
            .github
            .as_ref()
            .map(|g| g.labels_extra.clone())
            .unwrap_or_default();
        Self::new(&host_arch_label(), &extra, &config.labels)
    }

    /// The architecture label in use.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The labels of VM `name` and whether they are complete (see [`VmLabels`]).
    pub fn resolve(&self, name: &str) -> VmLabels {
        let mut labels = Vec::new();
        for l in ["self-hosted", "macOS", self.arch.as_str()] {
            push_once(&mut labels, l);
        }
        let version = version_label(name);
        let mut complete = version.is_some();
        if let Some(v) = &version {
            push_once(&mut labels, v);
        }
        for l in &self.extra {
            push_once(&mut labels, l);
        }
        for rule in self.rules.iter().filter(|r| r.matcher.is_match(name)) {
            if let Some(replace) = &rule.replace {
                labels.clear();
                for l in replace {
                    push_once(&mut labels, l);
                }
                complete = true;
            }
            for l in &rule.add {
                push_once(&mut labels, l);
            }
        }
        VmLabels { labels, complete }
    }

    /// The labels of VM `name`.
    pub fn labels(&self, name: &str) -> Vec<String> {
        self.resolve(name).labels
    }

    /// The labels to register `name`'s runner with: [`Self::resolve`]'s, plus `macNN` from
    /// `major` (`prlctl list -i` or the guest's `sw_vers`) when neither the name nor a
    /// `replace` rule gives the version; None while that version is needed and unknown.
    pub fn for_registration(&self, name: &str, major: Option<u32>) -> Option<Vec<String>> {
        let VmLabels {
            mut labels,
            complete,
        } = self.resolve(name);
        if !complete {
            push_once(&mut labels, &format!("mac{}", major?));
        }
        Some(labels)
    }
}

/// The labels of VM `name` with no configuration on an Apple-silicon host (the seed's
/// fleet): for tests and hand-written fleets. The daemon uses [`LabelMap::from_config`].
pub fn runner_labels(name: &str) -> Vec<String> {
    LabelMap::new("ARM64", &[], &LabelsSection::default()).labels(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LabelRule;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn seed_names_map_to_roots_real_labels() {
        let map = LabelMap::new("ARM64", &[], &LabelsSection::default());
        for (name, version) in [
            ("macphsft01-ROOT-VM-macOS-13", "mac13"),
            ("macphsft01-ROOT-VM-macOS-14", "mac14"),
            ("macphsft01-ROOT-VM-macOS-15", "mac15"),
            ("macphsft01-ROOT-VM-macOS-beta", "mac-beta"),
            ("x-ROOT-VM-macos_26", "mac26"),
        ] {
            let got = map.resolve(name);
            assert_eq!(got.labels, s(&["self-hosted", "macOS", "ARM64", version]));
            assert!(got.complete, "{name}");
        }
        let bare = map.resolve("scratch-ROOT-VM-1");
        assert_eq!(bare.labels, s(&["self-hosted", "macOS", "ARM64"]));
        assert!(!bare.complete);
    }

    #[test]
    fn the_architecture_comes_from_the_host_not_a_constant() {
        assert_eq!(arch_label("aarch64"), "ARM64");
        assert_eq!(arch_label("x86_64"), "X64");
        let expected = if cfg!(target_arch = "x86_64") {
            "X64"
        } else {
            "ARM64"
        };
        assert_eq!(LabelMap::default().arch(), expected);
        let intel = LabelMap::new("X64", &[], &LabelsSection::default());
        assert_eq!(intel.labels("h-ROOT-VM-macOS-14")[2], "X64");
        let forced = LabelsSection {
            arch: Some("ARM64".into()),
            vms: Vec::new(),
        };
        assert_eq!(
            LabelMap::new("X64", &[], &forced).labels("h-ROOT-VM-macOS-14")[2],
            "ARM64"
        );
    }

    #[test]
    fn rules_add_or_replace_in_file_order() {
        let section = LabelsSection {
            arch: None,
            vms: vec![
                LabelRule {
                    name: "*-ROOT-VM-macOS-14".into(),
                    replace: None,
                    add: s(&["X64", "arm64"]),
                },
                LabelRule {
                    name: "lab-ROOT-VM-intel".into(),
                    replace: Some(s(&["self-hosted", "macOS", "X64", "mac14"])),
                    add: Vec::new(),
                },
            ],
        };
        let map = LabelMap::new("ARM64", &s(&["mac14-xl", "MACOS"]), &section);
        assert_eq!(
            map.labels("h1-ROOT-VM-macOS-14"),
            s(&["self-hosted", "macOS", "ARM64", "mac14", "mac14-xl", "X64"])
        );
        assert_eq!(
            map.labels("h1-ROOT-VM-macOS-15"),
            s(&["self-hosted", "macOS", "ARM64", "mac15", "mac14-xl"])
        );
        let replaced = map.resolve("lab-ROOT-VM-intel");
        assert_eq!(
            replaced.labels,
            s(&["self-hosted", "macOS", "X64", "mac14"])
        );
        assert!(replaced.complete);
    }

    #[test]
    fn a_registration_without_a_version_in_the_name_takes_the_guests() {
        let map = LabelMap::new("ARM64", &s(&["xl"]), &LabelsSection::default());
        assert_eq!(
            map.for_registration("h-ROOT-VM-1", Some(15)),
            Some(s(&["self-hosted", "macOS", "ARM64", "xl", "mac15"]))
        );
        assert_eq!(map.for_registration("h-ROOT-VM-1", None), None);
        assert_eq!(
            map.for_registration("h-ROOT-VM-macOS-beta", Some(26)),
            Some(s(&["self-hosted", "macOS", "ARM64", "mac-beta", "xl"])),
            "the name wins over the guest"
        );
    }

    #[test]
    fn cover_is_case_insensitive_and_needs_a_label() {
        let runner = s(&["self-hosted", "macOS", "ARM64", "mac-beta"]);
        assert!(labels_cover(
            &runner,
            &s(&["self-hosted", "macos", "MAC-BETA"])
        ));
        assert!(!labels_cover(&runner, &s(&["self-hosted", "X64"])));
        assert!(!labels_cover(&runner, &[]));
    }
}
