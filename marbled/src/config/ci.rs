//! `[github]` (JIT runners for ROOT VMs) and `[jenkins]` (SPI node state), with their
//! defaults and value checks, and where their API tokens come from (a 0600 file or a
//! Keychain item: never this file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A Keychain generic password (`security find-generic-password -s SERVICE -a ACCOUNT`).
/// From a LaunchDaemon it is readable only while the user is logged in at the console (the
/// login keychain is locked otherwise): prefer `token_file` for the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeychainItem {
    /// Service name (`-s`).
    pub service: String,
    /// Account name (`-a`).
    pub account: String,
    /// The `security(1)` program (default `/usr/bin/security`; tests stand another in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<PathBuf>,
}

/// `[github]`: mint a JIT runner config at each ROOT boot and delete the registration
/// before each stop. The daemon authenticates with a token read from `token_file` (mode
/// 0600) or `token_keychain`, or as a GitHub App (`app_id` and its private key in
/// `app_key_file`, mode 0600), never with a secret from this file; exactly one of the three,
/// and exactly one of `repo`/`org`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GithubSection {
    /// API base URL (GitHub Enterprise or a test server).
    pub api_url: String,
    /// Repository runners: `"owner/repo"` (token needs "Administration: write").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Organisation runners: `"org"` (token needs "Self-hosted runners: write").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// File holding the token; must not be readable by group or others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Keychain item holding the token (macOS only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_keychain: Option<KeychainItem>,
    /// GitHub App authentication instead of a token: the App's id (its settings page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
    /// The App's installation on `repo`/`org` (default: asked of GitHub with the App's JWT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    /// File holding the App's private key (the PEM GitHub lets you download); must not be
    /// readable by group or others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_key_file: Option<PathBuf>,
    /// Runner group id (1: the Default group).
    pub runner_group_id: u64,
    /// First word of runner names: `<prefix>-<host>-<vm>-<boot>`.
    pub name_prefix: String,
    /// Labels added to `self-hosted, macOS, ARM64, macNN`.
    pub labels_extra: Vec<String>,
    /// Guest path the JIT config is written to (must match `launchd/guest/marble-runner.sh`).
    pub jit_path: String,
    /// Runner work folder, relative to the runner's install directory.
    pub work_folder: String,
    /// Timeout of one API request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Registration watchdog: a runner that took no job within this time while matching
    /// jobs are queued gets its VM recycled.
    #[serde(with = "humantime_serde")]
    pub registration_timeout: Duration,
    /// The `actions/runner` release `marblectl runner install|upgrade` puts in ROOT VMs:
    /// `"latest"` (the newest release the daemon has read) or a version (`"2.330.0"`).
    pub runner_version: String,
    /// Host directory of the runner package cache (`actions-runner-osx-arm64-V.tar.gz` and
    /// its checksum `….sha256`, downloaded once per host; an air-gapped host gets both put
    /// there by hand).
    pub runner_cache: PathBuf,
    /// How often the release list is read (`GET /repos/actions/runner/releases`, a
    /// conditional request: an unchanged list costs no rate-limit quota).
    #[serde(with = "humantime_serde")]
    pub release_check_interval: Duration,
}

impl Default for GithubSection {
    fn default() -> Self {
        Self {
            api_url: "https://api.github.com".into(),
            repo: None,
            org: None,
            token_file: None,
            token_keychain: None,
            app_id: None,
            installation_id: None,
            app_key_file: None,
            runner_group_id: 1,
            name_prefix: "marble".into(),
            labels_extra: Vec::new(),
            jit_path: "/var/run/marble/jitconfig".into(),
            work_folder: "_work".into(),
            request_timeout: Duration::from_secs(30),
            registration_timeout: Duration::from_secs(15 * 60),
            runner_version: "latest".into(),
            runner_cache: PathBuf::from("/usr/local/var/marble/runner-cache"),
            release_check_interval: Duration::from_secs(6 * 3600),
        }
    }
}

/// `[jenkins]`: the controller's node API, used as the SPI busy signal and to take a node
/// offline during a drain. The API token comes from `token_file` (0600) or `token_keychain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JenkinsSection {
    /// Controller base URL (with the context path, if any).
    pub url: String,
    /// User the API token belongs to.
    pub user: String,
    /// File holding the API token; must not be readable by group or others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Keychain item holding the API token (macOS only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_keychain: Option<KeychainItem>,
    /// Timeout of one API request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Jenkins node name per VM name, where they differ (default: the node is the VM name).
    pub nodes: BTreeMap<String, String>,
    /// Jenkins labels every SPI node on this host carries: a queued build waiting for one of
    /// them (a build that accepts any of these nodes) counts as waiting for this host in the
    /// fair share of policy `demand` while Jenkins launches a node here (a slot request for
    /// one waits), with the build's queue age.
    pub labels: Vec<String>,
}

impl Default for JenkinsSection {
    fn default() -> Self {
        Self {
            url: String::new(),
            user: String::new(),
            token_file: None,
            token_keychain: None,
            request_timeout: Duration::from_secs(20),
            nodes: BTreeMap::new(),
            labels: Vec::new(),
        }
    }
}

impl JenkinsSection {
    /// The Jenkins node name of `vm`.
    pub fn node_for<'a>(&'a self, vm: &'a str) -> &'a str {
        self.nodes.get(vm).map_or(vm, String::as_str)
    }
}

/// Characters allowed in runner labels and the name prefix (GitHub's own label charset is
/// wider; these never need quoting anywhere).
fn safe_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Check a secret's source: exactly one of file/keychain, the file's path absolute. Whether
/// the file can be read is [`secret_file_problems`]' question: not a reason to refuse the
/// config, as the daemon runs without the token and retries it.
fn secret_source_problems(
    section: &str,
    file: Option<&Path>,
    keychain: Option<&KeychainItem>,
    bad: &mut dyn FnMut(&str, String),
) {
    let file_key = format!("{section}.token_file");
    let kc_key = format!("{section}.token_keychain");
    match (file, keychain) {
        (None, None) => bad(
            &file_key,
            format!("set {file_key} (a mode-0600 file) or {kc_key}; secrets never go in this file"),
        ),
        (Some(_), Some(_)) => bad(
            &file_key,
            format!("set only one of {file_key} and {kc_key}"),
        ),
        (Some(path), None) => {
            if !path.is_absolute() {
                bad(&file_key, "must be an absolute path".into());
            }
        }
        (None, Some(item)) => {
            if item.service.is_empty() || item.account.is_empty() {
                bad(&kc_key, "needs a service and an account".into());
            }
            if !cfg!(target_os = "macos") && item.security.is_none() {
                bad(&kc_key, "the Keychain is only available on macOS".into());
            }
        }
    }
}

/// Whether a secret file (`key` names it: `github.token_file`, `images.secret_file`…) can be
/// used now: present, a file, owned by the user this runs as and readable by it, not
/// readable by group or others (mode 0600 or stricter). Every problem found is reported,
/// each with the command that fixes it. `marbled check-config` reports these; the daemon
/// starts anyway and says in `status` that the CI side waits for the token.
///
/// The owner is checked against the user check-config runs as: run it as the daemon's user
/// (a file the daemon cannot own is one it may not be able to read).
pub(super) fn secret_file_problems(
    file_key: &str,
    file: Option<&Path>,
    bad: &mut dyn FnMut(&str, String),
) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(path) = file.filter(|p| p.is_absolute()) else {
        return;
    };
    let shown = path.display();
    let path_str = path.to_string_lossy();
    // Hints a person pastes into a shell: quoted (a path may hold spaces or quotes).
    let chmod = marble_proto::names::shell_command(&["chmod", "600", &path_str]);
    let euid = nix::unistd::geteuid();
    let me = user_name(euid.as_raw());
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            bad(
                file_key,
                format!(
                    "cannot read {shown}: it does not exist; create it with `{}` and write the \
                     secret into it",
                    marble_proto::names::shell_command(&[
                        "install",
                        "-m",
                        "0600",
                        "-o",
                        &me,
                        "/dev/null",
                        &path_str
                    ])
                ),
            );
            return;
        }
        Err(err) => {
            bad(file_key, format!("cannot read {shown}: {err}"));
            return;
        }
    };
    if !meta.is_file() {
        bad(file_key, format!("{shown} is not a file"));
        return;
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        bad(
            file_key,
            format!("{shown} has mode {mode:04o}, readable by other users; fix with `{chmod}`"),
        );
    }
    if meta.uid() != euid.as_raw() {
        bad(
            file_key,
            format!(
                "{shown} is owned by {}, not by {me} (the user check-config runs as: run it as \
                 the daemon's user); fix with `{}`",
                user_name(meta.uid()),
                marble_proto::names::shell_command(&["chown", &me, &path_str])
            ),
        );
    } else if let Err(err) = std::fs::File::open(path) {
        bad(
            file_key,
            format!("cannot read {shown}: {err}; fix with `{chmod}`"),
        );
    }
}

/// A uid's user name, or the number when it has none.
fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |user| user.name)
}

impl GithubSection {
    /// Problems of the runner package keys (`runner_version`, `runner_cache`,
    /// `release_check_interval`).
    fn runner_problems(&self, bad: &mut dyn FnMut(&str, String)) {
        if self.runner_version != "latest" && !runner_version_ok(&self.runner_version) {
            bad(
                "github.runner_version",
                format!(
                    "{:?}: \"latest\" or a version MAJOR.MINOR.PATCH of at least 2.329.0 (GitHub refuses older runners)",
                    self.runner_version
                ),
            );
        }
        if !self.runner_cache.is_absolute() {
            bad(
                "github.runner_cache",
                format!("{} is not an absolute path", self.runner_cache.display()),
            );
        }
        if self.release_check_interval < Duration::from_secs(600) {
            bad(
                "github.release_check_interval",
                "at least 10m (the check counts against the token's rate limit)".into(),
            );
        }
    }

    /// Value problems, each naming its key.
    pub(super) fn problems(&self, bad: &mut dyn FnMut(&str, String)) {
        if !cfg!(feature = "ci") {
            bad(
                "github",
                "this marbled was built without the `ci` feature".into(),
            );
        }
        if !(self.api_url.starts_with("https://") || self.api_url.starts_with("http://")) {
            bad(
                "github.api_url",
                format!("{:?} is not an http(s) URL", self.api_url),
            );
        }
        match (&self.repo, &self.org) {
            (None, None) => bad(
                "github.repo",
                "set github.repo (\"owner/repo\") or github.org".into(),
            ),
            (Some(_), Some(_)) => bad(
                "github.repo",
                "set only one of github.repo and github.org".into(),
            ),
            (Some(r), None) => {
                if !r
                    .split_once('/')
                    .is_some_and(|(o, n)| safe_word(o) && safe_word(n))
                {
                    bad("github.repo", format!("must be \"owner/repo\", got {r:?}"));
                }
            }
            (None, Some(o)) => {
                if !safe_word(o) {
                    bad("github.org", format!("{o:?} is not an organisation name"));
                }
            }
        }
        self.credential_problems(bad);
        if !safe_word(&self.name_prefix) || self.name_prefix.len() > 20 {
            bad(
                "github.name_prefix",
                format!("{:?}: 1 to 20 of A-Z a-z 0-9 . _ -", self.name_prefix),
            );
        }
        for label in &self.labels_extra {
            if !safe_word(label) {
                bad(
                    "github.labels_extra",
                    format!("{label:?} is not a label (A-Z a-z 0-9 . _ -)"),
                );
            }
        }
        self.runner_problems(bad);
        let jit_ok = self.jit_path.starts_with('/')
            && !self.jit_path.contains("..")
            && !self.jit_path.ends_with('/')
            && self
                .jit_path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
        if !jit_ok {
            bad(
                "github.jit_path",
                format!(
                    "{:?}: an absolute guest path of A-Z a-z 0-9 / . _ -",
                    self.jit_path
                ),
            );
        }
        if self.runner_group_id == 0 {
            bad("github.runner_group_id", "must be at least 1".into());
        }
        for (key, d) in [
            ("github.request_timeout", self.request_timeout),
            ("github.registration_timeout", self.registration_timeout),
        ] {
            if d.is_zero() {
                bad(key, "must be greater than zero".into());
            }
        }
    }
}

impl GithubSection {
    /// Whether the section asks for GitHub App authentication (any of its keys is set).
    pub fn uses_app(&self) -> bool {
        self.app_id.is_some() || self.app_key_file.is_some() || self.installation_id.is_some()
    }

    /// Exactly one of a token (file or Keychain) and an App (id and key file).
    fn credential_problems(&self, bad: &mut dyn FnMut(&str, String)) {
        if !self.uses_app() {
            secret_source_problems(
                "github",
                self.token_file.as_deref(),
                self.token_keychain.as_ref(),
                bad,
            );
            return;
        }
        if self.token_file.is_some() || self.token_keychain.is_some() {
            bad(
                "github.app_id",
                "set either a token (github.token_file or github.token_keychain) or a GitHub \
                 App (github.app_id and github.app_key_file), not both"
                    .into(),
            );
        }
        if self.app_id.is_none() {
            bad(
                "github.app_id",
                "GitHub App authentication needs the App's id (its settings page)".into(),
            );
        }
        match &self.app_key_file {
            None => bad(
                "github.app_key_file",
                "GitHub App authentication needs the App's private key in a mode-0600 file".into(),
            ),
            Some(path) if !path.is_absolute() => {
                bad("github.app_key_file", "must be an absolute path".into());
            }
            Some(_) => {}
        }
    }
}

impl JenkinsSection {
    /// Value problems, each naming its key.
    pub(super) fn problems(&self, bad: &mut dyn FnMut(&str, String)) {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            bad(
                "jenkins.url",
                format!("{:?} is not an http(s) URL", self.url),
            );
        }
        if self.user.is_empty() {
            bad(
                "jenkins.user",
                "must name the user the API token belongs to".into(),
            );
        }
        secret_source_problems(
            "jenkins",
            self.token_file.as_deref(),
            self.token_keychain.as_ref(),
            bad,
        );
        if self.request_timeout.is_zero() {
            bad(
                "jenkins.request_timeout",
                "must be greater than zero".into(),
            );
        }
        for (vm, node) in &self.nodes {
            if node.is_empty() {
                bad(&format!("jenkins.nodes.{vm}"), "empty node name".into());
            }
        }
        for (i, label) in self.labels.iter().enumerate() {
            if label.trim().is_empty() {
                bad(&format!("jenkins.labels[{i}]"), "empty label".into());
            }
        }
    }
}

/// Whether `v` is `MAJOR.MINOR.PATCH` at least 2.329.0, the oldest runner GitHub registers
/// (the same rule as `ci::github::versions::MIN_REGISTER`, which this layer cannot name).
fn runner_version_ok(v: &str) -> bool {
    let parts: Vec<Option<u32>> = v.split('.').map(|p| p.parse().ok()).collect();
    match parts[..] {
        [Some(a), Some(b), Some(c)] => (a, b, c) >= (2, 329, 0),
        _ => false,
    }
}
