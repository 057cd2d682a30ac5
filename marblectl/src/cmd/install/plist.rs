//! The LaunchDaemon plist and the newsyslog conf that `marblectl install` writes, generated
//! from the install's [`Layout`] with the `plist` crate (never by string templating, so a
//! user name or path cannot break the XML). `launchd/ch.cern.sft.marbled.plist` in the
//! repository is this output for the default options; a test keeps the two equal.

use std::path::Path;

use plist::{Dictionary, Value};

use super::Layout;
use crate::client::LAUNCHD_LABEL;

/// launchd's default soft limit of open files (256) is below what the daemon needs: its
/// connection cap is derived from the limit (server/limits.rs), and every prlctl child, S3
/// part and log file takes descriptors too.
pub const NUMBER_OF_FILES: i64 = 4096;
/// SIGTERM, then SIGKILL after this many seconds; marbled's `daemon.shutdown_budget`
/// (20 s by default) stays below it so a graceful stop always completes.
pub const EXIT_TIMEOUT: i64 = 30;
/// At most one restart this often after a crash, so a crash loop does not spin.
pub const THROTTLE_INTERVAL: i64 = 10;
/// PATH of the daemon: prlctl is in /usr/local/bin; nothing from a user's shell.
pub const DAEMON_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

fn p(path: &Path) -> Value {
    Value::String(path.display().to_string())
}

/// The plist as a value.
pub fn daemon_plist(layout: &Layout) -> Value {
    let mut d = Dictionary::new();
    d.insert("Label".into(), s(LAUNCHD_LABEL));
    d.insert(
        "ProgramArguments".into(),
        Value::Array(vec![
            p(&layout.bin().join("marbled")),
            s("--config"),
            p(&layout.config_file()),
            s("run"),
        ]),
    );
    // Parallels keeps a per-user VM registry: the daemon runs as the user owning the VMs.
    d.insert("UserName".into(), s(&layout.user));
    d.insert("GroupName".into(), s(&layout.group));
    d.insert("RunAtLoad".into(), Value::Boolean(true));
    // Restart after a crash (non-zero exit), not after a clean stop.
    let mut keep_alive = Dictionary::new();
    keep_alive.insert("SuccessfulExit".into(), Value::Boolean(false));
    d.insert("KeepAlive".into(), Value::Dictionary(keep_alive));
    d.insert("ThrottleInterval".into(), THROTTLE_INTERVAL.into());
    d.insert("ExitTimeOut".into(), EXIT_TIMEOUT.into());
    let mut limits = Dictionary::new();
    limits.insert("NumberOfFiles".into(), NUMBER_OF_FILES.into());
    d.insert("SoftResourceLimits".into(), Value::Dictionary(limits));
    d.insert("StandardErrorPath".into(), p(&layout.stderr_log()));
    d.insert("StandardOutPath".into(), p(&layout.stdout_log()));
    let mut env = Dictionary::new();
    // launchd gives a LaunchDaemon no HOME; Parallels and `~/Parallels` defaults need it.
    env.insert("HOME".into(), p(&layout.home));
    env.insert("MARBLE_LOG".into(), s("info"));
    env.insert("PATH".into(), s(DAEMON_PATH));
    d.insert("EnvironmentVariables".into(), Value::Dictionary(env));
    d.insert("ProcessType".into(), s("Standard"));
    Value::Dictionary(d)
}

/// The plist as XML.
pub fn daemon_plist_xml(layout: &Layout) -> Result<Vec<u8>, plist::Error> {
    let mut xml = Vec::new();
    daemon_plist(layout).to_writer_xml(&mut xml)?;
    xml.push(b'\n');
    Ok(xml)
}

/// `/etc/newsyslog.d/ch.cern.sft.marbled.conf`. The daemon rotates its own log
/// (`daemon.log_file`, daily, `daemon.log_keep` files); launchd's stdout/stderr files only get
/// what comes before logging starts (a config error) and panics, and newsyslog bounds them.
/// `N`: there is no process to signal (launchd holds the descriptors, so after a rotation
/// the old file is written until the next restart — acceptable for these rare lines).
pub fn newsyslog_conf(layout: &Layout) -> String {
    let owner = format!("{}:{}", layout.user, layout.group);
    let mut text = String::from(
        "# marbled: launchd's stdout/stderr files (installed by `marblectl install`).\n\
         # logfilename                                  [owner:group]  mode count size(KB) when flags\n",
    );
    for file in [layout.stderr_log(), layout.stdout_log()] {
        text.push_str(&format!(
            "{:<48} {owner:<14} 640  5     1024     *    NZ\n",
            file.display()
        ));
    }
    text
}
