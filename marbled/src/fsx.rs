//! Durable file replacement: the one routine every writer of a whole file uses (the state
//! file, the metrics textfile, the image push and pull journals).
//!
//! [`write_atomic`] writes a temporary file next to the target, fsyncs it, renames it over
//! the target and fsyncs the directory. A reader sees the old content or the new, never half
//! a file; after a crash the rename is either on disk or not, and the new content is never
//! lost once the call returned. Without the file fsync a crash can leave the renamed file
//! empty (the data was still in the page cache); without the directory fsync the rename
//! itself can be lost.
//!
//! Mode: the temporary file is created afresh (0666 minus the process umask), so the target
//! ends with that mode whatever mode it had before; a writer that needs another mode sets it
//! afterwards.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temp files of concurrent writers of one target inside one process (the
/// process id alone tells processes apart).
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// Replace `path` with `bytes` atomically and durably (see the module doc). The parent
/// directory must exist. On error the temporary file is removed and `path` is unchanged
/// (unless only the final directory fsync failed: then the new content is in place but may
/// not survive a crash).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = temp_path(dir, path);
    let written = (|| {
        // Not `create_new`: a temp file left by a crash of an earlier process with the same
        // pid (likely after a reboot) is simply overwritten.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(err) = written {
        // Best effort: the temp file may not exist (the open failed); the write error is
        // what the caller needs to see.
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    // Persist the rename itself.
    std::fs::File::open(dir)?.sync_all()
}

/// `.<name>.<pid>.<n>.tmp` in `dir`: hidden, unique per writer, and never matching a
/// collector's `*.prom` or a `*.json` glob.
fn temp_path(dir: &Path, target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_and_replaces_the_content_leaving_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        write_atomic(&path, b"first").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        write_atomic(&path, b"").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        assert_eq!(entries(dir.path()), ["state.bin"]);
    }

    #[test]
    fn the_new_file_gets_a_fresh_mode_not_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&path, b"new").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // Documented: a fresh create (0666 minus the umask), never group- or world-writable
        // under the usual umasks, and not the old 0600.
        let umask = {
            let probe = dir.path().join("probe");
            std::fs::write(&probe, "").unwrap();
            0o666 & !(std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777)
        };
        assert_eq!(mode, 0o666 & !umask);
    }

    #[test]
    fn a_failed_rename_removes_the_temp_file_and_keeps_the_target() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: the temp file is written, the rename fails.
        let target = dir.path().join("busy");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), "x").unwrap();
        let err = write_atomic(&target, b"data").expect_err("cannot replace a directory");
        assert!(!err.to_string().is_empty());
        assert_eq!(entries(dir.path()), ["busy"]);
        assert_eq!(entries(&target), ["inside"]);
    }

    #[test]
    fn a_missing_directory_is_an_error_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(&dir.path().join("no/such/file"), b"x").expect_err("no dir");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn a_bare_file_name_writes_in_the_current_directory_form() {
        // `Path::parent` of "x" is "": the directory used (and fsynced) is ".".
        let p = temp_path(Path::new("."), Path::new("x"));
        assert!(p.starts_with("."));
        assert!(p.to_string_lossy().contains(".x."));
    }
}
