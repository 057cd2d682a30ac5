//! Which team a VM belongs to: configurable name patterns plus per-VM overrides, and the
//! conversion of a hypervisor listing into the scheduler's [`ObservedVm`]s.

use std::collections::BTreeMap;

use globset::{Glob, GlobSet, GlobSetBuilder};
use marble_proto::Team;

use crate::config::{TeamsSection, parse_team};
use crate::hypervisor::VmListing;
use crate::sched::ObservedVm;
use crate::sched::runner_labels;
/// Maps VM names to teams.
#[derive(Debug, Clone)]
pub struct TeamMap {
    root: GlobSet,
    spi: GlobSet,
    overrides: BTreeMap<String, Team>,
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
        }
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
            .map(|vm| ObservedVm {
                team: self.team_of(&vm.name),
                labels: runner_labels(&vm.name),
                name: vm.name,
                uuid: vm.uuid,
                power: vm.power,
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
    fn labels_come_from_the_macos_version_in_the_name() {
        assert_eq!(
            runner_labels("macphsft01-ROOT-VM-macOS-15"),
            ["self-hosted", "macOS", "ARM64", "mac15"]
        );
        assert_eq!(runner_labels("macphsft01-ROOT-VM-macOS-14-2")[3], "mac14");
        assert!(runner_labels("scratch").is_empty());
        assert!(runner_labels("x-macOS-beta").is_empty());
    }
}
