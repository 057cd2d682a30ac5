//! Test support (Linux): a `prlctl` stand-in whose one verb is `exec`, with real prlctl's
//! guest semantics (`reference/prlctl.md` §4: the words after `exec VM` are joined with spaces
//! and the line is run by `/bin/sh -c`), and whose "guest" is this machine seen through
//! private namespaces, so the daemon's guest scripts run in a real shell with real tools:
//!
//! - a mount namespace in which `/var` and `/usr/local` are the test's directories
//!   ([`LocalGuest::host_path`]), so guest paths such as `/var/run/marble/jitconfig`,
//!   `/var/db/marble/provision` or `/usr/local/libexec` stay in them;
//! - a pid namespace holding only the guest's shells and the processes the test asks for
//!   ([`GuestProc`]), so `pgrep` sees exactly those. The namespace's first process keeps the
//!   whole command line in its own argv, as a guest agent that does not `exec` its shell
//!   would: a probe that matches its own command line is caught here.
//!
//! Every line received is appended to [`LocalGuest::lines`] (what the host's `ps` would have
//! shown), so tests can check that no secret travelled in argv. Needs `unshare` with user
//! namespaces (any recent Linux; the tests that use this fail, naming it, without them).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Prlctl, PrlctlConfig};

/// The fake: checks the verb, logs the line, enters the namespaces, starts the requested
/// processes (waiting until each shows its command line and, if busy, its child), then runs
/// the line with `/bin/sh -c`. Its status is the line's.
const FAKE_PRLCTL: &str = r#"#!/bin/bash
[ "$1" = exec ] || { echo "local guest: exec only" >&2; exit 255; }
shift 2
printf '%s\n' "$*" >> "$GUEST_LINES"
exec unshare -r -m -p -f --mount-proc /bin/bash -c '
mount --bind "$GUEST_VAR" /var || { echo "local guest: cannot bind /var" >&2; exit 255; }
mount --bind "$GUEST_USR_LOCAL" /usr/local \
  || { echo "local guest: cannot bind /usr/local" >&2; exit 255; }
while IFS= read -r spec; do
  [ -n "$spec" ] || continue
  kind=${spec%% *}; cmd=${spec#* }
  case $kind in
    idle) (exec -a "$cmd" sleep 1000) >/dev/null 2>&1 </dev/null & ;;
    busy) (exec -a "$cmd" /bin/bash -c "sleep 1000; :") >/dev/null 2>&1 </dev/null & ;;
    *) echo "local guest: bad process spec $spec" >&2; exit 255 ;;
  esac
  pid=$!
  n=0
  until grep -qaF -- "${cmd%% *}" "/proc/$pid/cmdline" 2>/dev/null \
      && { [ "$kind" = idle ] || pgrep -P "$pid" >/dev/null; }; do
    n=$((n + 1))
    [ "$n" -lt 1000 ] || { echo "local guest: $spec did not start" >&2; exit 255; }
    sleep 0.01
  done
done <<PROCS
$GUEST_PROCS
PROCS
/bin/sh -c "$1"
' local-guest "$*"
"#;

/// A process in the guest's process table besides the shells.
#[derive(Debug, Clone)]
pub(crate) enum GuestProc {
    /// A process with this command line and no children (an idle agent).
    Idle(String),
    /// A process with this command line and a child (a JVM running a build step).
    Busy(String),
}

/// A temp dir holding the fake `prlctl`, the guest's `/var` and the line log.
pub(crate) struct LocalGuest {
    dir: tempfile::TempDir,
}

impl LocalGuest {
    /// A fresh guest with an empty `/var`.
    pub(crate) fn new() -> LocalGuest {
        let dir = tempfile::tempdir().expect("test helper: tempdir");
        for d in ["var", "usr-local"] {
            std::fs::create_dir(dir.path().join(d)).expect("test helper: guest dir");
        }
        write_executable(&dir.path().join("prlctl"), FAKE_PRLCTL);
        let guest = LocalGuest { dir };
        guest.assert_namespaces_work();
        guest
    }

    /// The host path of guest path `guest`, which must be under `/var` or `/usr/local`.
    pub(crate) fn host_path(&self, guest: &str) -> PathBuf {
        if let Some(rest) = guest.strip_prefix("/var/") {
            self.dir.path().join("var").join(rest)
        } else if let Some(rest) = guest.strip_prefix("/usr/local/") {
            self.dir.path().join("usr-local").join(rest)
        } else {
            panic!("test helper: guest paths live under /var or /usr/local, not {guest}")
        }
    }

    /// Every command line prlctl received so far.
    #[cfg_attr(
        not(feature = "ci"),
        expect(dead_code, reason = "read by the `ci` tests only")
    )]
    pub(crate) fn lines(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("lines")).unwrap_or_default()
    }

    /// The production adapter pointed at the fake, with `procs` in the guest.
    pub(crate) fn hv(&self, procs: &[GuestProc]) -> Prlctl {
        let procs: Vec<String> = procs
            .iter()
            .map(|p| match p {
                GuestProc::Idle(cmd) => format!("idle {cmd}"),
                GuestProc::Busy(cmd) => format!("busy {cmd}"),
            })
            .collect();
        let path = |p: &Path| p.display().to_string();
        Prlctl::new(PrlctlConfig {
            path: self.dir.path().join("prlctl"),
            exec_timeout_default: Duration::from_secs(30),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin:/usr/sbin:/sbin".into()),
                ("GUEST_VAR".into(), path(&self.dir.path().join("var"))),
                (
                    "GUEST_USR_LOCAL".into(),
                    path(&self.dir.path().join("usr-local")),
                ),
                ("GUEST_LINES".into(), path(&self.dir.path().join("lines"))),
                ("GUEST_PROCS".into(), procs.join("\n")),
            ],
            ..PrlctlConfig::default()
        })
    }

    fn assert_namespaces_work(&self) {
        let out = Command::new("unshare")
            .args(["-r", "-m", "-p", "-f", "--mount-proc", "/bin/true"])
            .output();
        let ok = out.as_ref().is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "these tests run guest scripts in private namespaces and need `unshare -r -m -p` \
             (user namespaces) on this Linux machine: {out:?}"
        );
    }
}

/// Write an executable file through a child `sh`, so no writable descriptor of it exists in
/// this multi-threaded process, where a concurrent fork could inherit it and make running it
/// fail with ETXTBSY.
fn write_executable(path: &Path, body: &str) {
    use std::io::Write;
    let mut child = Command::new("/bin/sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("test helper: spawn sh");
    child
        .stdin
        .take()
        .expect("test helper: stdin piped")
        .write_all(body.as_bytes())
        .expect("test helper: write script");
    assert!(child.wait().expect("test helper: wait sh").success());
}
