//! The intent log: every power operation (`start`, `resume`, `stop`, `suspend`) is written to
//! a small JSON file next to the state file, fsync'd, *before* its `prlctl` runs, updated with
//! the child's pid once it is spawned, and removed when the call is over.
//!
//! Why: `kill -9` of the daemon does not kill its `prlctl` children (they run in their own
//! process group, as they must so a timeout can kill helpers too). An orphaned `prlctl start`
//! keeps starting its VM, and Parallels lists that VM as `stopped` until it is up; a new
//! daemon that trusted its first listing would start a second VM on the shared build disk.
//! So what a previous daemon left in the log is *inherited*: until it is resolved (see
//! `recover.rs`) nothing is started or stopped and listings wait.
//!
//! Owns: the file format, the in-memory copy, and one log per path in the process (a reload
//! builds a new adapter; both must write one file, not overwrite each other's entries).
//! Writes go through [`crate::fsx::write_atomic`] and happen on the blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;

/// Version of the file format (a newer daemon reading an unknown version treats the file as
/// one unknown operation, which is resolved by re-listing).
const FORMAT_VERSION: u32 = 1;

/// One power operation that was (or was about to be) handed to prlctl.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The prlctl verb (`start`, `stop`, …).
    pub verb: String,
    /// The VM argument as given to prlctl.
    pub vm: String,
    /// When it was recorded, unix ms.
    pub since_ms: u64,
    /// When the daemon that recorded it would have killed the call (its timeout), unix ms.
    pub deadline_ms: u64,
    /// The child's pid, also its process group id; `None` until spawned (or when the daemon
    /// died between recording and spawning: then the child is looked for by its argv).
    pub pid: Option<u32>,
}

impl Intent {
    /// What an unreadable log stands for: some operation, no child known, so resolving it
    /// is re-listing until the states settle.
    fn unknown() -> Intent {
        Intent {
            verb: "unknown".into(),
            vm: "(unreadable intent log)".into(),
            since_ms: now_ms(),
            deadline_ms: now_ms(),
            pid: None,
        }
    }

    /// `start VM (pid N, since T)` for logs and `status`.
    pub fn describe(&self) -> String {
        let pid = self
            .pid
            .map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"));
        let since = crate::sched::format_ms(self.since_ms);
        format!("{} {} ({pid}, since {since})", self.verb, self.vm)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    intents: Vec<Intent>,
}

#[derive(Debug, Default)]
struct LogState {
    next_id: u64,
    /// This process's operations in flight.
    own: BTreeMap<u64, Intent>,
    /// Left by a previous daemon and not yet resolved.
    inherited: Vec<Intent>,
}

/// The intent log of one path. Shared: get it with [`IntentLog::shared`].
#[derive(Debug)]
pub struct IntentLog {
    path: PathBuf,
    state: Mutex<LogState>,
    /// Held while inherited intents are being resolved, so concurrent callers wait for one
    /// resolution instead of each running their own.
    pub(super) resolving: tokio::sync::Mutex<()>,
}

/// An intent's handle: ends it (removes it from the log) when dropped, whatever way the call
/// ended (finished, failed, timed out and killed, or its caller cancelled and the child
/// killed with it).
#[derive(Debug)]
pub struct IntentGuard {
    log: Arc<IntentLog>,
    id: u64,
}

impl IntentLog {
    /// The log at `path`, loaded once per process: what is in the file when it is first
    /// opened was left by a previous daemon and is inherited.
    pub fn shared(path: &Path) -> Arc<IntentLog> {
        static LOGS: OnceLock<Mutex<HashMap<PathBuf, Arc<IntentLog>>>> = OnceLock::new();
        let mut logs = LOGS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            logs.entry(path.to_owned())
                .or_insert_with(|| Arc::new(IntentLog::load(path))),
        )
    }

    /// Read `path` (missing = empty). An unreadable or unknown file is one unknown inherited
    /// operation: the listing is then re-read until it settles before anything is done.
    fn load(path: &Path) -> IntentLog {
        let inherited = match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<OnDisk>(&bytes) {
                Ok(disk) if disk.version == FORMAT_VERSION => disk.intents,
                Ok(_) | Err(_) => {
                    tracing::error!(path = %path.display(), "intent log unreadable; treating it as an unknown operation in flight");
                    vec![Intent::unknown()]
                }
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(err) => {
                tracing::error!(path = %path.display(), error = %err, "cannot read the intent log; treating it as an unknown operation in flight");
                vec![Intent::unknown()]
            }
        };
        IntentLog {
            path: path.to_owned(),
            state: Mutex::new(LogState {
                inherited,
                ..LogState::default()
            }),
            resolving: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // Every change is a single insert/remove/assign: consistent whatever a panic did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Write the current content. Called with the state lock held, so writes are ordered.
    fn write(&self, st: &LogState) -> std::io::Result<()> {
        let disk = OnDisk {
            version: FORMAT_VERSION,
            intents: st
                .inherited
                .iter()
                .chain(st.own.values())
                .cloned()
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&disk).map_err(std::io::Error::other)?;
        crate::fsx::write_atomic(&self.path, &bytes)
    }

    /// Record `verb vm` (with the caller's `timeout`) durably before it runs.
    pub async fn begin(
        self: &Arc<Self>,
        verb: &str,
        vm: &str,
        timeout: Duration,
    ) -> std::io::Result<IntentGuard> {
        let now = now_ms();
        let intent = Intent {
            verb: verb.to_owned(),
            vm: vm.to_owned(),
            since_ms: now,
            deadline_ms: now.saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
            pid: None,
        };
        let log = Arc::clone(self);
        let id = blocking(move || {
            let mut st = log.lock();
            let id = st.next_id;
            st.next_id += 1;
            st.own.insert(id, intent);
            match log.write(&st) {
                Ok(()) => Ok(id),
                Err(err) => {
                    st.own.remove(&id);
                    Err(err)
                }
            }
        })
        .await?;
        Ok(IntentGuard {
            log: Arc::clone(self),
            id,
        })
    }

    /// Inherited intents not yet resolved.
    pub fn inherited(&self) -> Vec<Intent> {
        self.lock().inherited.clone()
    }

    /// The inherited intents are resolved: forget them (durably).
    pub async fn clear_inherited(self: &Arc<Self>) -> std::io::Result<()> {
        let log = Arc::clone(self);
        blocking(move || {
            let mut st = log.lock();
            let before = std::mem::take(&mut st.inherited);
            let written = log.write(&st);
            if written.is_err() {
                st.inherited = before;
            }
            written
        })
        .await
    }
}

impl IntentGuard {
    /// The child was spawned as `pid` (its own process group leader): record it durably.
    pub async fn spawned(&self, pid: u32) -> std::io::Result<()> {
        let log = Arc::clone(&self.log);
        let id = self.id;
        blocking(move || {
            let mut st = log.lock();
            if let Some(intent) = st.own.get_mut(&id) {
                intent.pid = Some(pid);
            }
            log.write(&st)
        })
        .await
    }
}

impl Drop for IntentGuard {
    fn drop(&mut self) {
        let log = Arc::clone(&self.log);
        let id = self.id;
        let end = move || {
            let mut st = log.lock();
            if st.own.remove(&id).is_some()
                && let Err(err) = log.write(&st)
            {
                // Left in the file, the entry only makes the next start re-list once more.
                tracing::warn!(path = %log.path.display(), error = %err, "cannot remove a finished operation from the intent log");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(end)),
            Err(_) => end(),
        }
    }
}

/// Run `f` on the blocking pool (an fsync must not stall a runtime worker).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join)))
}

/// Where the intent log of the state file `state_file` lives: next to it.
pub fn path_for(state_file: &Path) -> PathBuf {
    let mut name = state_file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".intents");
    state_file.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_intent_is_on_disk_while_its_call_runs_and_inherited_by_the_next_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin.intents");
        let log = Arc::new(IntentLog::load(&path));
        assert!(log.inherited().is_empty());
        let guard = log
            .begin("start", "vm one", Duration::from_secs(3))
            .await
            .unwrap();
        guard.spawned(4242).await.unwrap();
        // A "new process" reading the file now inherits the start, with its pid.
        let next = IntentLog::load(&path);
        let inherited = next.inherited();
        assert_eq!(inherited.len(), 1);
        assert_eq!(
            (inherited[0].verb.as_str(), inherited[0].vm.as_str()),
            ("start", "vm one")
        );
        assert_eq!(inherited[0].pid, Some(4242));
        assert!(inherited[0].deadline_ms >= inherited[0].since_ms + 3000);
        assert!(inherited[0].describe().contains("start vm one (pid 4242"));
        drop(guard);
        // The end is written on the blocking pool.
        let ended = async {
            while !IntentLog::load(&path).inherited().is_empty() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), ended)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn inherited_intents_stay_until_cleared_and_garbage_is_an_unknown_operation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i");
        std::fs::write(&path, b"{ not json").unwrap();
        let log = Arc::new(IntentLog::load(&path));
        assert_eq!(log.inherited()[0].verb, "unknown");
        let own = log
            .begin("stop", "b", Duration::from_secs(1))
            .await
            .unwrap();
        log.clear_inherited().await.unwrap();
        assert!(log.inherited().is_empty());
        // Clearing the inherited ones keeps this process's own.
        let reread = IntentLog::load(&path).inherited();
        assert_eq!(reread.len(), 1);
        assert_eq!(reread[0].verb, "stop");
        drop(own);
    }

    #[test]
    fn the_log_lives_next_to_the_state_file() {
        assert_eq!(
            path_for(Path::new("/var/db/marble/state.bin")),
            PathBuf::from("/var/db/marble/state.bin.intents")
        );
    }
}
