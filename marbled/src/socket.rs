//! Binding the control socket safely.
//!
//! Order matters: take an exclusive `flock` on `<socket>.lock` first, so two daemons never
//! race to replace each other's socket; only then remove a stale socket (one nobody answers
//! on) and bind. The directory is 0750 and the socket 0660, both owned by the configured
//! group, so only the daemon's user and the group can connect at all; what each peer may do
//! is then decided per request from its credentials (see [`crate::peer`]).
//!
//! The lock is held for the daemon's lifetime by [`SocketGuard`]; the kernel drops it if the
//! daemon is killed, so a restart after `kill -9` binds again without manual cleanup.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Gid, Group, chown};
use tokio::net::UnixListener;

use crate::config::MAX_SOCKET_PATH_LEN;

/// Errors preparing the control socket.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The path is too long for macOS's `sun_path`.
    #[error(
        "socket path {path} is {len} bytes; macOS allows at most {MAX_SOCKET_PATH_LEN} (set daemon.socket to a shorter path)"
    )]
    PathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The configured group does not exist.
    #[error("socket group {group:?} does not exist (daemon.socket_group)")]
    UnknownGroup {
        /// The group name.
        group: String,
    },
    /// Another daemon holds the lock.
    #[error("another marbled already owns {path} (lock {lock} is held)")]
    AlreadyRunning {
        /// The socket.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// A live daemon answers on the socket even though the lock was free.
    #[error("a process is already serving on {path}")]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SocketError + 'a {
    move |source| SocketError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Holds the socket lock; removes the socket file when dropped after a clean shutdown.
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
    _lock: Flock<File>,
}

impl SocketGuard {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Resolve a group name to its id; empty means "the daemon's primary group".
pub fn resolve_group(name: &str) -> Result<Option<Gid>, SocketError> {
    if name.is_empty() {
        return Ok(None);
    }
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(Some(group.gid)),
        _ => Err(SocketError::UnknownGroup {
            group: name.to_owned(),
        }),
    }
}

/// Create the directory, take the lock, clear a stale socket and bind.
///
/// Must be called inside a tokio runtime (the listener registers with it).
pub fn bind(path: &Path, group: &str) -> Result<(UnixListener, SocketGuard), SocketError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH_LEN {
        return Err(SocketError::PathTooLong {
            path: path.to_owned(),
            len,
        });
    }
    let gid = resolve_group(group)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(io_err("create socket directory", dir))?;
        if gid.is_some() {
            chown(dir, None, gid).map_err(|e| SocketError::Io {
                action: "chown socket directory",
                path: dir.to_owned(),
                source: e.into(),
            })?;
        }
    }

    let lock_path = lock_path(path);
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("open lock file", &lock_path))?;
    let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|_| {
        SocketError::AlreadyRunning {
            path: path.to_owned(),
            lock: lock_path.clone(),
        }
    })?;

    if path.exists() {
        // We hold the lock, so no marbled serves here; but refuse to remove a socket some
        // other program answers on.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse {
                path: path.to_owned(),
            });
        }
        std::fs::remove_file(path).map_err(io_err("remove stale socket", path))?;
        tracing::info!(path = %path.display(), "removed stale socket");
    }

    let listener = UnixListener::bind(path).map_err(io_err("bind", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io_err("chmod socket", path))?;
    if gid.is_some() {
        chown(path, None, gid).map_err(|e| SocketError::Io {
            action: "chown socket",
            path: path.to_owned(),
            source: e.into(),
        })?;
    }
    Ok((
        listener,
        SocketGuard {
            path: path.to_owned(),
            _lock: lock,
        },
    ))
}

/// The lock file next to a socket.
pub fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_bind_is_refused_while_first_holds_the_lock_and_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/m.sock");
        let (listener, guard) = bind(&path, "").expect("first bind");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let dir_mode = std::fs::metadata(path.parent().expect("parent"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o750);

        let err = bind(&path, "").expect_err("second bind must fail");
        assert!(matches!(err, SocketError::AlreadyRunning { .. }), "{err}");
        drop((listener, guard));
        assert!(!path.exists(), "a clean shutdown removes the socket");
    }

    /// A socket file nobody listens on, as a daemon killed with `kill -9` leaves it: bound,
    /// never listening. Not a listener bound and dropped: a process that another test
    /// thread forks in between (every `Command::spawn`, until its `exec`) inherits the
    /// listening socket and keeps it accepting, so `bind` would rightly find it in use.
    pub(super) fn leave_stale_socket(path: &Path) {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, socket};
        use std::os::fd::AsRawFd;
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .expect("socket");
        bind(fd.as_raw_fd(), &UnixAddr::new(path).expect("unix address")).expect("bind");
    }

    #[tokio::test]
    async fn stale_socket_left_by_a_killed_daemon_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.sock");
        leave_stale_socket(&path);
        assert!(path.exists());
        let (_listener, _guard) = bind(&path, "").expect("bind over stale socket");
        tokio::net::UnixStream::connect(&path)
            .await
            .expect("connect to the new socket");
    }

    #[tokio::test]
    async fn live_foreign_socket_is_not_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.sock");
        let _other = std::os::unix::net::UnixListener::bind(&path).expect("bind std");
        let err = bind(&path, "").expect_err("in use");
        assert!(matches!(err, SocketError::InUse { .. }), "{err}");
    }

    #[test]
    fn overlong_path_is_refused() {
        let path = PathBuf::from(format!("/tmp/{}/m.sock", "x".repeat(110)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let _enter = rt.enter();
        let err = bind(&path, "").expect_err("too long");
        assert!(matches!(err, SocketError::PathTooLong { .. }), "{err}");
    }
}
