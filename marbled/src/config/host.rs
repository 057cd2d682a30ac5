//! `[host]`: what `vm create`, `vm provision` and `host check` need to know about this host
//! (host name pattern, build disk, memory left to the host, free-disk floor, prlsrvctl, the
//! timeouts of the long guest waits). Defaults live in the `Default` impl; `problems` checks
//! values for `Config::problems`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigProblem;

/// `[host]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostSection {
    /// Glob the host name must match (`host check` warns otherwise; `host setup --name`
    /// refuses other names). The seed's hosts are `macphsft<NN>`.
    pub name_pattern: String,
    /// Shared build disk (a Parallels `.hdd` bundle) attached to every VM. Unset:
    /// `images.build_disk`, else `$HOME/Parallels/build_drive.hdd` of the daemon's user.
    pub build_disk: Option<PathBuf>,
    /// Memory left to the host when `vm create` sizes a VM without `--memory` (MiB).
    pub memory_reserve_mib: u64,
    /// `host check` warns below this much free space where VM bundles live (GiB).
    pub min_free_disk_gib: u64,
    /// `prlsrvctl` (edition and licence for `host check`).
    pub prlsrvctl: PathBuf,
    /// Timeout of `prlctl create` (it reads the whole IPSW).
    #[serde(with = "humantime_serde")]
    pub create_timeout: Duration,
    /// How long `vm provision` waits for a VM it started to answer `prlctl exec`.
    #[serde(with = "humantime_serde")]
    pub boot_timeout: Duration,
    /// The CI account created by hand in Setup Assistant (named in `vm create`'s steps).
    pub ci_user: String,
}

impl Default for HostSection {
    fn default() -> Self {
        Self {
            name_pattern: "macphsft*".into(),
            build_disk: None,
            memory_reserve_mib: 4096,
            min_free_disk_gib: 100,
            prlsrvctl: PathBuf::from("/usr/local/bin/prlsrvctl"),
            create_timeout: Duration::from_secs(15 * 60),
            boot_timeout: Duration::from_secs(10 * 60),
            ci_user: "sftnight".into(),
        }
    }
}

impl HostSection {
    /// Value problems, each naming its key.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: String| {
            out.push(ConfigProblem {
                key: format!("host.{key}"),
                message,
            });
        };
        if let Err(err) = globset::Glob::new(&self.name_pattern) {
            bad(
                "name_pattern",
                format!("bad pattern {:?}: {err}", self.name_pattern),
            );
        }
        if let Some(disk) = &self.build_disk
            && !disk.is_absolute()
        {
            bad("build_disk", "must be an absolute path".into());
        }
        if self.create_timeout.is_zero() {
            bad("create_timeout", "must be greater than zero".into());
        }
        if self.boot_timeout.is_zero() {
            bad("boot_timeout", "must be greater than zero".into());
        }
        if !valid_user(&self.ci_user) {
            bad("ci_user", format!("{:?} is not a user name", self.ci_user));
        }
        out
    }

    /// The build disk path: `host.build_disk`, else `images_build_disk`, else
    /// `$HOME/Parallels/build_drive.hdd`.
    pub fn build_disk(&self, images_build_disk: Option<&PathBuf>) -> PathBuf {
        self.build_disk
            .clone()
            .or_else(|| images_build_disk.cloned())
            .unwrap_or_else(|| {
                std::env::var_os("HOME")
                    .map_or_else(|| PathBuf::from("/var/empty"), PathBuf::from)
                    .join("Parallels/build_drive.hdd")
            })
    }

    /// Whether `host` matches `name_pattern` (an invalid pattern matches nothing).
    pub fn host_name_ok(&self, host: &str) -> bool {
        globset::Glob::new(&self.name_pattern)
            .map(|g| g.compile_matcher().is_match(host))
            .unwrap_or(false)
    }
}

/// Whether `user` is a plausible macOS short user name.
pub fn valid_user(user: &str) -> bool {
    let mut chars = user.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_patterns_match() {
        let h = HostSection::default();
        assert!(h.problems().is_empty());
        assert!(h.host_name_ok("macphsft32"));
        assert!(!h.host_name_ok("laptop"));
    }

    #[test]
    fn bad_values_name_their_keys() {
        let h = HostSection {
            name_pattern: "[".into(),
            build_disk: Some(PathBuf::from("rel/disk.hdd")),
            boot_timeout: Duration::ZERO,
            ci_user: "Bad User".into(),
            ..HostSection::default()
        };
        let keys: Vec<String> = h.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "host.name_pattern",
                "host.build_disk",
                "host.boot_timeout",
                "host.ci_user"
            ]
        );
    }

    #[test]
    fn build_disk_falls_back_to_images_then_home() {
        let h = HostSection::default();
        let img = PathBuf::from("/d/build.hdd");
        assert_eq!(h.build_disk(Some(&img)), img);
        assert!(h.build_disk(None).ends_with("Parallels/build_drive.hdd"));
        let h = HostSection {
            build_disk: Some(PathBuf::from("/x.hdd")),
            ..h
        };
        assert_eq!(h.build_disk(Some(&img)), PathBuf::from("/x.hdd"));
    }
}
