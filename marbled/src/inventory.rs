//! Which team a VM belongs to: configurable name patterns plus per-VM overrides, and the
//! conversion of a hypervisor listing into the scheduler's [`ObservedVm`]s (a ROOT VM's
//! runner labels from [`LabelMap`], the mapping the registration uses too).

use std::collections::BTreeMap;

use globset::{Glob, GlobSet, GlobSetBuilder};
use marble_proto::Team;

use crate::config::{TeamsSection, parse_team};
use crate::hypervisor::VmListing;
use crate::sched::{LabelMap, ObservedVm};

/// Maps VM names to teams.
#[derive(Debug, Clone)]
pub struct TeamMap {
    root: GlobSet,
    spi: GlobSet,
    overrides: BTreeMap<String, Team>,
    labels: LabelMap,
}

impl TeamMap {
    /// Build from the `[teams]` section (already validated; bad patterns are skipped).
    pub fn new(section: &TeamsSection) -> Self {
        let set = |patterns: &[String]| {
            let mut builder = GlobSetBuilder::new();
            for p in patterns {
                if let Ok(glob) = Glob::new(p) {
                    builder.add(glob);
                }
            }
            builder.build().unwrap_or_else(|_| GlobSet::empty())
        };
        let overrides = section
            .overrides
            .iter()
            .filter_map(|(vm, team)| parse_team(team).map(|t| (vm.clone(), t)))
            .collect();
        Self {
            root: set(&section.root),
            spi: set(&section.spi),
            overrides,
            labels: LabelMap::default(),
        }
    }

    /// With `labels` as the runner-label mapping of ROOT VMs (default: the name and this
    /// host's architecture only).
    #[must_use]
    pub fn with_labels(mut self, labels: LabelMap) -> Self {
        self.labels = labels;
        self
    }

    /// The team of a VM name. Overrides win; ROOT patterns are checked before SPI ones.
    pub fn team_of(&self, name: &str) -> Team {
        if let Some(team) = self.overrides.get(name) {
            *team
        } else if self.root.is_match(name) {
            Team::Root
        } else if self.spi.is_match(name) {
            Team::Spi
        } else {
            Team::Unassigned
        }
    }

    /// Attach teams to a listing.
    pub fn observe(&self, listing: Vec<VmListing>) -> Vec<ObservedVm> {
        listing
            .into_iter()
            .map(|vm| {
                let team = self.team_of(&vm.name);
                ObservedVm {
                    team,
                    // Only a ROOT VM runs a GitHub runner; other teams offer no labels.
                    labels: if team == Team::Root {
                        self.labels.labels(&vm.name)
                    } else {
                        Vec::new()
                    },
                    name: vm.name,
                    uuid: vm.uuid,
                    power: vm.power,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_patterns_and_overrides() {
        let mut section = TeamsSection::default();
        section
            .overrides
            .insert("macphsft01-SPI-VM-macOS-9".into(), "root".into());
        let map = TeamMap::new(&section);
        assert_eq!(map.team_of("macphsft01-ROOT-VM-macOS-14"), Team::Root);
        assert_eq!(map.team_of("macphsft01-SPI-VM-macOS-13"), Team::Spi);
        assert_eq!(map.team_of("macphsft01-SPI-VM-macOS-9"), Team::Root);
        assert_eq!(map.team_of("scratch"), Team::Unassigned);
    }

    #[test]
    fn root_vms_get_the_configured_labels_others_none() {
        let config: crate::config::Config = toml::from_str(
            "[github]\nlabels_extra = [\"xl\"]\n[labels]\narch = \"ARM64\"\n\
             [[labels.vms]]\nname = \"*-macOS-14\"\nadd = [\"X64\"]\n",
        )
        .expect("config");
        let map =
            TeamMap::new(&TeamsSection::default()).with_labels(LabelMap::from_config(&config));
        let listing = |name: &str| VmListing {
            name: name.into(),
            uuid: "u".into(),
            power: marble_proto::PowerState::Stopped,
        };
        let seen = map.observe(vec![
            listing("macphsft01-ROOT-VM-macOS-14"),
            listing("macphsft01-ROOT-VM-macOS-beta"),
            listing("macphsft01-SPI-VM-macOS-14"),
        ]);
        assert_eq!(
            seen[0].labels,
            ["self-hosted", "macOS", "ARM64", "mac14", "xl", "X64"]
        );
        assert_eq!(
            seen[1].labels,
            ["self-hosted", "macOS", "ARM64", "mac-beta", "xl"],
            "github.labels_extra reaches the scheduler too"
        );
        assert!(seen[2].labels.is_empty());
    }
}
