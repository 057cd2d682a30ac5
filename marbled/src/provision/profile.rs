//! Provisioning profiles: the TOML format, its validation (all problems at once), macOS
//! version selectors, and the guest argv each step turns into.
//!
//! ```toml
//! [[step]]
//! name = "xcode-cli"                       # [A-Za-z0-9._-], unique; names the marker file
//! command = "xcode-select --install"       # a shell string (sh -c) or an argv array
//! # script = "scripts/x.sh"                # or a host file sent on stdin to `sh -s`
//! # args = ["a", "b"]                      # positional args of the script ($1, $2)
//! # input = "files/x.plist"                # host file sent on stdin of `command`
//! user = "sftnight"                        # run-as (default root)
//! macos = ">=14"                           # "13", ">=14", "<26", "13,14" (any of)
//! creates = "/Library/Developer/CommandLineTools"  # skip if this guest path exists
//! unless = "pkgutil --pkg-info com.apple.pkg.CLTools_Executables"  # skip if exit 0
//! timeout = "30m"
//! always = false                           # true: run every time, no completion marker
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::valid_user;
use serde::Deserialize;

/// Default timeout of a step.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML for the format.
    #[error("cannot parse profile {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: toml::de::Error,
    },
    /// Semantic problems (all of them).
    #[error("invalid profile {}: {}", path.display(), problems.join("; "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<String>,
    },
}

/// A macOS major-version selector: a comma-separated list of `N`, `=N`, `==N`, `>=N`,
/// `<=N`, `>N`, `<N`; matches when any item matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSelector {
    text: String,
    items: Vec<(Cmp, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ge,
    Le,
    Gt,
    Lt,
}

impl VersionSelector {
    /// Parse a selector.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut items = Vec::new();
        for part in text.split(',') {
            let p = part.trim();
            let (cmp, num) = if let Some(n) = p.strip_prefix(">=") {
                (Cmp::Ge, n)
            } else if let Some(n) = p.strip_prefix("<=") {
                (Cmp::Le, n)
            } else if let Some(n) = p.strip_prefix("==") {
                (Cmp::Eq, n)
            } else if let Some(n) = p.strip_prefix('>') {
                (Cmp::Gt, n)
            } else if let Some(n) = p.strip_prefix('<') {
                (Cmp::Lt, n)
            } else if let Some(n) = p.strip_prefix('=') {
                (Cmp::Eq, n)
            } else {
                (Cmp::Eq, p)
            };
            let n: u32 = num
                .trim()
                .parse()
                .map_err(|_| format!("bad macOS version selector {text:?}"))?;
            items.push((cmp, n));
        }
        Ok(Self {
            text: text.to_owned(),
            items,
        })
    }

    /// Whether `major` is selected.
    pub fn matches(&self, major: u32) -> bool {
        self.items.iter().any(|(c, n)| match c {
            Cmp::Eq => major == *n,
            Cmp::Ge => major >= *n,
            Cmp::Le => major <= *n,
            Cmp::Gt => major > *n,
            Cmp::Lt => major < *n,
        })
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// What a step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAction {
    /// An argv, run as exactly these words (the prlctl adapter quotes them for the guest
    /// shell that `prlctl exec` always goes through).
    Argv(Vec<String>),
    /// A shell command line (`/bin/sh -c`).
    Shell(String),
    /// A script sent on stdin to `/bin/sh -s -- ARGS…`, inside a `{ …; } </dev/null` group
    /// (see [`crate::hypervisor::guest_cmd::stdin_script`]): the shell reads all of it before
    /// running any, so a command in it that reads stdin cannot swallow the rest.
    Script {
        /// Where it came from (for messages).
        origin: String,
        /// Its content.
        body: Vec<u8>,
        /// Positional arguments.
        args: Vec<String>,
    },
}

/// One step of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Unique name.
    pub name: String,
    /// What to run.
    pub action: StepAction,
    /// Bytes sent on stdin of an `Argv`/`Shell` action (from `input = "file"`, or set by
    /// code such as `ci::runner_install_steps`).
    pub input: Option<Vec<u8>>,
    /// Run-as user (`None`: root, which is what `prlctl exec` runs as).
    pub user: Option<String>,
    /// macOS versions the step applies to.
    pub macos: Option<VersionSelector>,
    /// Skip when this guest path exists.
    pub creates: Option<String>,
    /// Skip when this guest shell command exits 0 (run as the step's user).
    pub unless: Option<String>,
    /// Timeout.
    pub timeout: Duration,
    /// Run every time; no completion marker.
    pub always: bool,
}

/// A provisioning profile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Profile {
    /// Steps in order.
    pub steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCommand {
    Argv(Vec<String>),
    Shell(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    #[serde(default)]
    command: Option<RawCommand>,
    #[serde(default)]
    script: Option<PathBuf>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    input: Option<PathBuf>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    macos: Option<String>,
    #[serde(default)]
    creates: Option<String>,
    #[serde(default)]
    unless: Option<String>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default)]
    always: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    #[serde(default)]
    step: Vec<RawStep>,
}

/// Whether `name` is a valid step name (it becomes a guest file name).
pub fn valid_step_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Profile {
    /// Load a profile file; `script`/`input` paths are relative to its directory and are
    /// read now, so a missing file fails before anything runs in the guest.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, path)
    }

    /// Parse profile text; `base` resolves relative file paths, `origin` names the profile
    /// in errors.
    pub fn parse(text: &str, base: &Path, origin: &Path) -> Result<Self, ProfileError> {
        let read = |p: &Path| {
            let full = base.join(p);
            std::fs::read(&full).map_err(|e| format!("cannot read {}: {e}", full.display()))
        };
        Self::parse_with(text, origin, &read)
    }

    /// Parse a profile uploaded by a client (`marblectl vm provision`): `script`/`input`
    /// files come from the upload, keyed by the path as written in the profile, so the
    /// daemon never opens a path an operator names.
    pub fn from_upload(upload: &marble_proto::ProfileUpload) -> Result<Self, ProfileError> {
        let read = |p: &Path| {
            upload
                .files
                .iter()
                .find(|f| Path::new(&f.path) == p)
                .map(|f| f.content.clone())
                .ok_or_else(|| format!("{} was not sent with the profile", p.display()))
        };
        Self::parse_with(&upload.text, Path::new(&upload.origin), &read)
    }

    /// Parse profile text, reading referenced files with `read` (its error is the problem
    /// text).
    pub fn parse_with(
        text: &str,
        origin: &Path,
        read_file: &dyn Fn(&Path) -> Result<Vec<u8>, String>,
    ) -> Result<Self, ProfileError> {
        let raw: RawProfile = toml::from_str(text).map_err(|source| ProfileError::Parse {
            path: origin.to_owned(),
            source,
        })?;
        let mut problems = Vec::new();
        let mut steps = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, r) in raw.step.into_iter().enumerate() {
            let label = format!("step {} ({:?})", i + 1, r.name);
            if !valid_step_name(&r.name) {
                problems.push(format!("{label}: name must be [A-Za-z0-9._-]+"));
            }
            if !seen.insert(r.name.clone()) {
                problems.push(format!("{label}: duplicate name"));
            }
            if let Some(u) = r.user.as_deref().filter(|u| !valid_user(u)) {
                problems.push(format!("{label}: invalid user {u:?}"));
            }
            let macos = match r.macos.as_deref().map(VersionSelector::parse) {
                Some(Err(e)) => {
                    problems.push(format!("{label}: {e}"));
                    None
                }
                Some(Ok(s)) => Some(s),
                None => None,
            };
            if r.timeout == Some(Duration::ZERO) {
                problems.push(format!("{label}: timeout must be positive"));
            }
            let read = |p: &Path, problems: &mut Vec<String>| -> Option<Vec<u8>> {
                match read_file(p) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        problems.push(format!("{label}: {e}"));
                        None
                    }
                }
            };
            let action = match (r.command, r.script) {
                (Some(_), Some(_)) | (None, None) => {
                    problems.push(format!("{label}: exactly one of `command` and `script`"));
                    None
                }
                (Some(RawCommand::Argv(v)), None) if v.is_empty() => {
                    problems.push(format!("{label}: empty command"));
                    None
                }
                (Some(RawCommand::Shell(s)), None) if s.trim().is_empty() => {
                    problems.push(format!("{label}: empty command"));
                    None
                }
                (Some(c), None) => {
                    if !r.args.is_empty() {
                        problems.push(format!("{label}: `args` only goes with `script`"));
                    }
                    Some(match c {
                        RawCommand::Argv(v) => StepAction::Argv(v),
                        RawCommand::Shell(s) => StepAction::Shell(s),
                    })
                }
                (None, Some(p)) => {
                    if r.input.is_some() {
                        problems.push(format!("{label}: `input` does not go with `script`"));
                    }
                    read(&p, &mut problems).map(|body| StepAction::Script {
                        origin: p.display().to_string(),
                        body,
                        args: r.args,
                    })
                }
            };
            let input = r.input.and_then(|p| read(&p, &mut problems));
            if let Some(action) = action {
                steps.push(Step {
                    name: r.name,
                    action,
                    input,
                    user: r.user,
                    macos,
                    creates: r.creates,
                    unless: r.unless,
                    timeout: r.timeout.unwrap_or(DEFAULT_STEP_TIMEOUT),
                    always: r.always,
                });
            }
        }
        if problems.is_empty() {
            Ok(Profile { steps })
        } else {
            Err(ProfileError::Invalid {
                path: origin.to_owned(),
                problems,
            })
        }
    }
}

/// Wrap `argv` to run as `user` (root runs it directly; `prlctl exec` already runs as root).
pub fn as_user(user: Option<&str>, argv: Vec<String>) -> Vec<String> {
    match user {
        None | Some("root") => argv,
        Some(u) => {
            let mut v: Vec<String> = ["/usr/bin/sudo", "-u", u, "-H", "--"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            v.extend(argv);
            v
        }
    }
}

/// The guest argv and stdin of a step's action.
pub fn step_argv(step: &Step) -> (Vec<String>, Option<Vec<u8>>) {
    let sh = |flag: &str| vec!["/bin/sh".to_owned(), flag.to_owned()];
    let (argv, stdin) = match &step.action {
        StepAction::Argv(v) => (v.clone(), step.input.clone()),
        StepAction::Shell(s) => {
            let mut v = sh("-c");
            v.push(s.clone());
            (v, step.input.clone())
        }
        StepAction::Script { body, args, .. } => {
            let mut v = sh("-s");
            if !args.is_empty() {
                v.push("--".to_owned());
                v.extend(args.iter().cloned());
            }
            (v, Some(crate::hypervisor::guest_cmd::stdin_script(body)))
        }
    };
    (as_user(step.user.as_deref(), argv), stdin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Profile, ProfileError> {
        Profile::parse(text, Path::new("/nonexistent"), Path::new("p.toml"))
    }

    #[test]
    fn selectors() {
        let s = VersionSelector::parse(">=14").unwrap();
        assert!(s.matches(14) && s.matches(26) && !s.matches(13));
        let s = VersionSelector::parse("13, 15").unwrap();
        assert!(s.matches(13) && s.matches(15) && !s.matches(14));
        let s = VersionSelector::parse("<26").unwrap();
        assert!(s.matches(15) && !s.matches(26));
        assert!(VersionSelector::parse(">=x").is_err());
        assert!(VersionSelector::parse("").is_err());
    }

    #[test]
    fn parses_steps_and_builds_argv() {
        let p = parse(
            r#"
[[step]]
name = "a"
command = ["scutil", "--set", "HostName", "vm1"]
[[step]]
name = "b"
command = "echo hi > /tmp/x"
user = "sftnight"
macos = ">=14"
creates = "/tmp/x"
timeout = "5m"
"#,
        )
        .unwrap();
        assert_eq!(p.steps.len(), 2);
        let (argv, stdin) = step_argv(&p.steps[0]);
        assert_eq!(argv, ["scutil", "--set", "HostName", "vm1"]);
        assert!(stdin.is_none());
        let (argv, _) = step_argv(&p.steps[1]);
        assert_eq!(
            argv,
            [
                "/usr/bin/sudo",
                "-u",
                "sftnight",
                "-H",
                "--",
                "/bin/sh",
                "-c",
                "echo hi > /tmp/x"
            ]
        );
        assert_eq!(p.steps[1].timeout, Duration::from_secs(300));
        assert_eq!(p.steps[0].timeout, DEFAULT_STEP_TIMEOUT);
    }

    #[test]
    fn reports_all_problems_at_once() {
        let err = parse(
            r#"
[[step]]
name = "bad name"
command = "true"
[[step]]
name = "x"
[[step]]
name = "x"
command = "true"
script = "s.sh"
user = "Root User"
macos = "fourteen"
"#,
        )
        .unwrap_err();
        let ProfileError::Invalid { problems, .. } = err else {
            panic!("expected Invalid, got {err:?}");
        };
        let all = problems.join("\n");
        for needle in [
            "name must be",
            "exactly one",
            "duplicate name",
            "invalid user",
            "version selector",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert!(parse("[[step]]\nname = \"a\"\ncommand = \"true\"\nbogus = 1\n").is_err());
    }

    #[test]
    fn script_and_input_files_are_read_relative_to_the_profile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("s")).unwrap();
        std::fs::write(dir.path().join("s/x.sh"), "echo $1\n").unwrap();
        std::fs::write(
            dir.path().join("p.toml"),
            "[[step]]\nname = \"s\"\nscript = \"s/x.sh\"\nargs = [\"disk4\"]\n",
        )
        .unwrap();
        let p = Profile::load(&dir.path().join("p.toml")).unwrap();
        let (argv, stdin) = step_argv(&p.steps[0]);
        assert_eq!(argv, ["/bin/sh", "-s", "--", "disk4"]);
        assert_eq!(stdin.as_deref(), Some(&b"{\necho $1\n\n} </dev/null\n"[..]));
        std::fs::write(
            dir.path().join("q.toml"),
            "[[step]]\nname = \"s\"\nscript = \"missing.sh\"\n",
        )
        .unwrap();
        let err = Profile::load(&dir.path().join("q.toml")).unwrap_err();
        assert!(err.to_string().contains("missing.sh"), "{err}");
    }
}
