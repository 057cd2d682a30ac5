//! A stand-in for macOS's `security(1)`, enough of `find-generic-password` for the daemon's
//! Keychain token source, with the failures a LaunchDaemon meets.
//!
//! Semantics, from Apple's `SecurityTool` sources (`keychain_find.c`
//! `keychain_find_generic_password` / `do_keychain_find_generic_password` /
//! `do_password_item_printing`, `security.c` `main`): options are parsed with getopt
//! `ha:c:C:D:G:j:l:s:wg` (anything else prints the usage and exits 2); the command's
//! `OSStatus` is the process's exit status, so it arrives truncated to its low byte:
//! - item not found (`errSecItemNotFound`, -25300): `security: SecKeychainSearchCopyNext: The
//!   specified item could not be found in the keychain.` on stderr, exit **44** — what a
//!   LaunchDaemon gets when the user's login keychain is not in its search list;
//! - item found but its secret unreadable without asking (`errSecInteractionNotAllowed`,
//!   -25308): exit **36** and nothing on stdout — the login keychain is locked (nobody logged
//!   in at the console) and a daemon has no UI to ask for the password. Apple's tool prints
//!   nothing for it in the version read; other reports show `User interaction is not
//!   allowed.` on stderr, so nothing may depend on the text;
//! - found and readable: with `-w`, the password alone and a newline on stdout, exit 0.
//!
//! The keychain is a directory: `items/<service>/<account>` holds a password, `state` says
//! `unlocked`, `locked` or `not-in-search-list`, and every call's arguments are appended to
//! `calls` (one line, tab-separated) so tests can count retries.

use std::path::{Path, PathBuf};

/// What the login keychain looks like to the calling process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeychainState {
    /// The user is logged in at the console: items are readable.
    Unlocked,
    /// The keychain is in the search list but locked; no UI to unlock it (exit 36).
    Locked,
    /// The keychain is not searched at all, as from a LaunchDaemon's session (exit 44).
    NotInSearchList,
}

impl KeychainState {
    fn word(self) -> &'static str {
        match self {
            KeychainState::Unlocked => "unlocked",
            KeychainState::Locked => "locked",
            KeychainState::NotInSearchList => "not-in-search-list",
        }
    }
}

/// A fake `security` program and the keychain it reads.
#[derive(Debug)]
pub struct FakeKeychain {
    dir: PathBuf,
}

fn script(dir: &Path) -> String {
    format!(
        r#"#!/bin/sh
# Fake security(1) for MARBLE's tests: see tests/src/fake_keychain.rs.
kc='{dir}'
printf '%s\t' "$@" >> "$kc/calls"; printf '\n' >> "$kc/calls"
usage() {{
  echo "Usage: find-generic-password [-a account] [-s service] [options...] [-g] [keychain...]" >&2
  exit 2
}}
[ "$1" = find-generic-password ] || {{ echo "security: unknown command \"$1\"" >&2; exit 1; }}
shift
account=; service=; password=
while getopts ha:c:C:D:G:j:l:s:wg opt; do
  case $opt in
    a) account=$OPTARG ;;
    s) service=$OPTARG ;;
    w|g) password=1 ;;
    c|C|D|G|j|l) ;;
    *) usage ;;
  esac
done
state=$(cat "$kc/state")
item="$kc/items/$service/$account"
if [ "$state" = not-in-search-list ] || [ -z "$service" ] || [ -z "$account" ] || [ ! -f "$item" ]; then
  echo "security: SecKeychainSearchCopyNext: The specified item could not be found in the keychain." >&2
  exit 44
fi
if [ -n "$password" ] && [ "$state" = locked ]; then
  exit 36
fi
cat "$item"; echo
"#,
        dir = dir.display()
    )
}

impl FakeKeychain {
    /// Create the program and an empty, `state` keychain in `dir` (created if missing).
    pub fn create(dir: &Path, state: KeychainState) -> std::io::Result<FakeKeychain> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir.join("items"))?;
        let program = dir.join("security");
        std::fs::write(&program, script(dir))?;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))?;
        let kc = FakeKeychain {
            dir: dir.to_owned(),
        };
        kc.set_state(state)?;
        Ok(kc)
    }

    /// The `security` program to configure (`token_keychain.security`).
    pub fn program(&self) -> PathBuf {
        self.dir.join("security")
    }

    /// Store a generic password (no trailing newline: `security -w` adds one).
    pub fn add_generic_password(
        &self,
        service: &str,
        account: &str,
        password: &str,
    ) -> std::io::Result<()> {
        let dir = self.dir.join("items").join(service);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(account), password)
    }

    /// Lock, unlock or hide the keychain.
    pub fn set_state(&self, state: KeychainState) -> std::io::Result<()> {
        std::fs::write(self.dir.join("state"), state.word())
    }

    /// The argument lists of every call so far.
    pub fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.dir.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                l.trim_end_matches('\t')
                    .split('\t')
                    .map(str::to_owned)
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn run(kc: &FakeKeychain, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(kc.program()).args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn answers_like_security_find_generic_password() {
        let dir = tempfile::tempdir().unwrap();
        let kc = FakeKeychain::create(dir.path(), KeychainState::Locked).unwrap();
        kc.add_generic_password("marble-github", "marbled", "ghp_x")
            .unwrap();
        let args = [
            "find-generic-password",
            "-s",
            "marble-github",
            "-a",
            "marbled",
            "-w",
        ];
        assert_eq!(run(&kc, &args), (36, String::new(), String::new()));
        kc.set_state(KeychainState::NotInSearchList).unwrap();
        let (code, out, err) = run(&kc, &args);
        assert_eq!((code, out.as_str()), (44, ""));
        assert!(err.contains("could not be found in the keychain"), "{err}");
        kc.set_state(KeychainState::Unlocked).unwrap();
        assert_eq!(run(&kc, &args), (0, "ghp_x\n".into(), String::new()));
        let (code, _, _) = run(
            &kc,
            &["find-generic-password", "-s", "other", "-a", "marbled"],
        );
        assert_eq!(code, 44);
        assert_eq!(run(&kc, &["find-generic-password", "-x"]).0, 2);
        assert_eq!(kc.calls().len(), 5);
        assert_eq!(kc.calls()[0], args);
    }
}
