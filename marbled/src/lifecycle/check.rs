//! The daemon's half of `marblectl host check`: what must be checked as the VM owner (the
//! daemon's user, whose Parallels registry and files matter) or needs the daemon's config.
//! The CLI adds what only it can see (the socket from the client's side, launchd, Spotlight).
//!
//! Every check has a timeout and turns any failure into a FAIL line with a fix; nothing here
//! returns an error. Secrets are never printed: the S3 check names the credential source
//! only through the store's own messages, which never contain keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use marble_proto::{CheckResult, CheckStatus};
use tokio::process::Command;

use crate::config::HostSection;
use crate::hypervisor::Hypervisor;
use crate::jobs::{ci, s3};

/// Timeout of each external call made by a check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// Editions whose CLI works (reference/prlctl.md §1, §10).
const CLI_EDITIONS: &[&str] = &["pro", "business", "enterprise"];

/// What the checks look at.
pub struct CheckEnv {
    /// The hypervisor.
    pub hv: Arc<dyn Hypervisor>,
    /// `[host]`.
    pub host_cfg: Arc<HostSection>,
    /// Environment of `prlsrvctl` (cleared, then this, like prlctl's).
    pub tool_env: Arc<Vec<(String, String)>>,
    /// The host name the daemon reports.
    pub host: String,
    /// `images.build_disk`, when set.
    pub images_build_disk: Option<PathBuf>,
    /// Where VM bundles live (free-space check).
    pub bundles_dir: PathBuf,
    /// `[images]`, for the S3 check.
    pub images: s3::Images,
    /// `[github]`'s runner lifecycle, for the token check (None: not configured).
    pub github: ci::Runners,
}

/// Run every daemon-side check, in report order.
pub async fn run(env: CheckEnv) -> Vec<CheckResult> {
    let mut out = Vec::new();
    out.push(parallels_version(env.hv.as_ref()).await);
    out.push(edition(&env.host_cfg.prlsrvctl, &env.tool_env).await);
    out.push(prlctl_list(env.hv.as_ref()).await);
    out.push(host_name(&env.host_cfg, &env.host));
    out.extend(build_disk(&env.host_cfg, env.images_build_disk.as_ref()));
    out.push(free_disk(&env.bundles_dir, env.host_cfg.min_free_disk_gib));
    out.push(s3_check::s3(&env.images).await);
    out.push(github(&env).await);
    out
}

/// The GitHub token works for the runner scope (`[github]` configured) — else SKIP.
async fn github(env: &CheckEnv) -> CheckResult {
    match ci::check_token(&env.github, CHECK_TIMEOUT).await {
        Some(Ok(Ok(detail))) => CheckResult::new("github", CheckStatus::Pass, detail, ""),
        Some(Ok(Err(err))) => CheckResult::new(
            "github",
            CheckStatus::Fail,
            err,
            "give the token the permission named above, or fix github.token_file",
        ),
        Some(Err(_)) => CheckResult::new(
            "github",
            CheckStatus::Fail,
            format!("no answer from the GitHub API within {CHECK_TIMEOUT:?}"),
            "check the network path to github.api_url",
        ),
        None => CheckResult::new(
            "github",
            CheckStatus::Skip,
            "not configured: no [github] section in this daemon's config".into(),
            "",
        ),
    }
}

async fn parallels_version(hv: &dyn Hypervisor) -> CheckResult {
    match tokio::time::timeout(CHECK_TIMEOUT, hv.version()).await {
        Ok(Ok(v)) => CheckResult::new(
            "parallels",
            CheckStatus::Pass,
            format!("prlctl version {v}"),
            "",
        ),
        Ok(Err(e)) => CheckResult::new(
            "parallels",
            CheckStatus::Fail,
            format!(
                "`prlctl --version` failed: {}",
                crate::chain::ErrorChain(&e)
            ),
            "install Parallels Desktop Pro or Business (CERN Self-Service) and check prlctl.path in marbled.toml",
        ),
        Err(_) => CheckResult::new(
            "parallels",
            CheckStatus::Fail,
            format!("`prlctl --version` did not answer within {CHECK_TIMEOUT:?}"),
            "restart Parallels Desktop; check prlctl.path",
        ),
    }
}

/// `prlsrvctl info --license --json` → `{"edition": "pro", "status": "ACTIVE", …}`.
async fn edition(prlsrvctl: &Path, tool_env: &[(String, String)]) -> CheckResult {
    let fix_missing =
        "prlsrvctl ships with Parallels Desktop; check host.prlsrvctl in marbled.toml";
    let mut cmd = Command::new(prlsrvctl);
    cmd.args(["info", "--license", "--json"])
        .env_clear()
        .envs(tool_env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(CHECK_TIMEOUT, cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            return CheckResult::new(
                "edition",
                CheckStatus::Warn,
                format!("cannot run {}: {e}", prlsrvctl.display()),
                fix_missing,
            );
        }
        Err(_) => {
            return CheckResult::new(
                "edition",
                CheckStatus::Warn,
                format!(
                    "{} did not answer within {CHECK_TIMEOUT:?}",
                    prlsrvctl.display()
                ),
                fix_missing,
            );
        }
    };
    if !out.status.success() {
        return CheckResult::new(
            "edition",
            CheckStatus::Warn,
            format!(
                "`prlsrvctl info --license --json` exited {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            fix_missing,
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let parsed = crate::hypervisor::parse::lenient_json(&text).ok();
    let Some(v) = parsed else {
        return CheckResult::new(
            "edition",
            CheckStatus::Warn,
            "cannot parse `prlsrvctl info --license --json`".into(),
            fix_missing,
        );
    };
    let edition = v["edition"].as_str().unwrap_or("").to_ascii_lowercase();
    let status = v["status"].as_str().unwrap_or("unknown").to_owned();
    let trial = yes(&v["is_trial"]);
    let detail = format!(
        "edition {}, licence {status}{}",
        if edition.is_empty() {
            "unknown"
        } else {
            &edition
        },
        if trial { " (trial)" } else { "" }
    );
    if !CLI_EDITIONS.contains(&edition.as_str()) {
        CheckResult::new(
            "edition",
            CheckStatus::Fail,
            detail,
            "prlctl needs the Pro, Business or Enterprise edition; install the CERN licence",
        )
    } else if !status.eq_ignore_ascii_case("active") || trial {
        CheckResult::new(
            "edition",
            CheckStatus::Warn,
            detail,
            "activate the licence (prlsrvctl install-license -k KEY)",
        )
    } else {
        CheckResult::new("edition", CheckStatus::Pass, detail, "")
    }
}

/// A yes/no field of `prlsrvctl … --json`: PD prints `"yes"`/`"no"` strings (Parallels'
/// prl-devops-service models `is_trial` as a string); a JSON boolean is accepted too.
fn yes(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::String(s) => {
            ["yes", "true", "1"].contains(&s.trim().to_ascii_lowercase().as_str())
        }
        _ => false,
    }
}

async fn prlctl_list(hv: &dyn Hypervisor) -> CheckResult {
    let user = std::env::var("USER").unwrap_or_else(|_| format!("uid {}", nix::unistd::getuid()));
    match tokio::time::timeout(CHECK_TIMEOUT, hv.list_all()).await {
        Ok(Ok(vms)) => CheckResult::new(
            "prlctl",
            CheckStatus::Pass,
            format!("`prlctl list -a` works for {user}: {} VMs", vms.len()),
            "",
        ),
        Ok(Err(e)) => CheckResult::new(
            "prlctl",
            CheckStatus::Fail,
            format!(
                "`prlctl list -a --json` failed for {user}: {}",
                crate::chain::ErrorChain(&e)
            ),
            "start Parallels Desktop for this user (it owns the VM registry) and run `prlctl list -a` as that user",
        ),
        Err(_) => CheckResult::new(
            "prlctl",
            CheckStatus::Fail,
            format!("`prlctl list -a` did not answer within {CHECK_TIMEOUT:?}"),
            "restart Parallels Desktop",
        ),
    }
}

fn host_name(cfg: &HostSection, host: &str) -> CheckResult {
    if cfg.host_name_ok(host) {
        CheckResult::new(
            "host-name",
            CheckStatus::Pass,
            format!("{host} matches {}", cfg.name_pattern),
            "",
        )
    } else {
        CheckResult::new(
            "host-name",
            CheckStatus::Warn,
            format!(
                "{host} does not match host.name_pattern {}",
                cfg.name_pattern
            ),
            "sudo marblectl host setup --name <name matching the pattern> (macOS), or set daemon.host_name",
        )
    }
}

fn build_disk(cfg: &HostSection, images_disk: Option<&PathBuf>) -> Vec<CheckResult> {
    let disk = cfg.build_disk(images_disk);
    let mut out = Vec::new();
    out.push(if disk.is_dir() {
        CheckResult::new(
            "build-disk",
            CheckStatus::Pass,
            format!("{} present", disk.display()),
            "",
        )
    } else if disk.exists() {
        CheckResult::new(
            "build-disk",
            CheckStatus::Fail,
            format!("{} exists but is not a Parallels .hdd bundle directory", disk.display()),
            "move it away and fetch the build disk again (marblectl image pull)",
        )
    } else {
        CheckResult::new(
            "build-disk",
            CheckStatus::Fail,
            format!("{} is missing", disk.display()),
            "marblectl image pull <image> fetches it, or prl_disk_tool create --hdd <path> --size 262144",
        )
    });
    if let (Some(h), Some(i)) = (&cfg.build_disk, images_disk)
        && h != i
    {
        out.push(CheckResult::new(
            "build-disk-config",
            CheckStatus::Warn,
            format!(
                "host.build_disk {} differs from images.build_disk {}",
                h.display(),
                i.display()
            ),
            "set only one of them (host.build_disk is used by vm create)",
        ));
    }
    out
}

fn free_disk(dir: &Path, min_gib: u64) -> CheckResult {
    // The bundles directory may not exist yet on a new host: measure its nearest ancestor.
    let mut probe = dir;
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p,
            None => break,
        }
    }
    match nix::sys::statvfs::statvfs(probe) {
        Ok(st) => {
            #[allow(
                clippy::useless_conversion,
                reason = "field widths differ per platform"
            )]
            let free = u64::from(st.blocks_available()) * u64::from(st.fragment_size());
            let gib = free / (1024 * 1024 * 1024);
            let detail = format!("{gib} GiB free on the volume of {}", dir.display());
            if gib >= min_gib {
                CheckResult::new("free-disk", CheckStatus::Pass, detail, "")
            } else if gib >= min_gib / 4 {
                CheckResult::new(
                    "free-disk",
                    CheckStatus::Warn,
                    format!("{detail} (below host.min_free_disk_gib = {min_gib})"),
                    "remove unused VM bundles or old image transfer state; an image pull needs twice a VM's size",
                )
            } else {
                CheckResult::new(
                    "free-disk",
                    CheckStatus::Fail,
                    format!("{detail} (far below host.min_free_disk_gib = {min_gib})"),
                    "free space before pulling or creating VMs",
                )
            }
        }
        Err(e) => CheckResult::new(
            "free-disk",
            CheckStatus::Fail,
            format!("cannot stat {}: {e}", probe.display()),
            "check images.bundles_dir",
        ),
    }
}

/// The `s3` line, a seam: the bucket check with feature `s3`, a SKIP line without it.
#[cfg(feature = "s3")]
mod s3_check {
    use marble_proto::{CheckResult, CheckStatus};

    use super::CHECK_TIMEOUT;

    /// The bucket answers an authenticated listing — else SKIP (no endpoint) or FAIL.
    pub async fn s3(cfg: &crate::images::ImageStoreConfig) -> CheckResult {
        use crate::images::{Bucket, ImageError};
        let bucket = match tokio::time::timeout(CHECK_TIMEOUT, Bucket::connect(cfg)).await {
            Ok(Ok(b)) => b,
            Ok(Err(ImageError::Config(msg))) if msg.contains("no endpoint") => {
                return CheckResult::new(
                    "s3",
                    CheckStatus::Skip,
                    format!("not configured: {msg}"),
                    "",
                );
            }
            Ok(Err(e)) => {
                return CheckResult::new(
                    "s3",
                    CheckStatus::Fail,
                    format!(
                        "cannot set up the S3 client: {}",
                        crate::chain::ErrorChain(&e)
                    ),
                    "check [images] credentials (docs/IMAGES.md)",
                );
            }
            Err(_) => {
                return CheckResult::new(
                    "s3",
                    CheckStatus::Fail,
                    "setting up the S3 client timed out".into(),
                    "check [images] credentials",
                );
            }
        };
        // Listing needs valid credentials and read access: one cheap authenticated call.
        let prefix = format!("{}ROOT/", cfg.key_prefix);
        match tokio::time::timeout(CHECK_TIMEOUT, bucket.list(&prefix)).await {
            Ok(Ok(objects)) => CheckResult::new(
                "s3",
                CheckStatus::Pass,
                format!(
                    "bucket {} reachable with valid credentials ({} objects under {prefix})",
                    bucket.name(),
                    objects.len()
                ),
                "",
            ),
            Ok(Err(e)) => CheckResult::new(
                "s3",
                CheckStatus::Fail,
                format!(
                    "listing bucket {} failed: {}",
                    bucket.name(),
                    crate::chain::ErrorChain(&e)
                ),
                "check images.endpoint, the bucket name and the access key (docs/IMAGES.md)",
            ),
            Err(_) => CheckResult::new(
                "s3",
                CheckStatus::Fail,
                format!(
                    "bucket {} did not answer within {CHECK_TIMEOUT:?}",
                    bucket.name()
                ),
                "check network access to the S3 endpoint",
            ),
        }
    }
}

/// Without feature `s3`: no bucket to check.
#[cfg(not(feature = "s3"))]
mod s3_check {
    use marble_proto::{CheckResult, CheckStatus};

    /// SKIP: this build has no image support.
    pub async fn s3(_images: &crate::jobs::s3::Images) -> CheckResult {
        CheckResult::new(
            "s3",
            CheckStatus::Skip,
            "not configured: this marbled was built without image support".into(),
            "",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `edition` against a `prlsrvctl` that prints `tests/fixtures/prlsrvctl/<fixture>`.
    async fn edition_of(fixture: &str) -> CheckResult {
        let dir = tempfile::tempdir().unwrap();
        let json = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/prlsrvctl")
            .join(fixture);
        let fake = dir.path().join("prlsrvctl");
        std::fs::write(&fake, format!("#!/bin/sh\ncat '{}'\n", json.display())).unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        edition(&fake, &[("PATH".into(), "/usr/bin:/bin".into())]).await
    }

    #[tokio::test]
    async fn a_trial_licence_is_flagged_whether_is_trial_is_a_string_or_a_boolean() {
        for fixture in ["license_json_trial.json", "license_json_bool_trial.json"] {
            let r = edition_of(fixture).await;
            assert_eq!(r.status, CheckStatus::Warn, "{fixture}: {r:?}");
            assert!(r.detail.contains("(trial)"), "{fixture}: {r:?}");
        }
        let r = edition_of("license_json_volume.json").await;
        assert_eq!(r.status, CheckStatus::Pass, "{r:?}");
        assert_eq!(r.detail, "edition business, licence ACTIVE");
    }
}
