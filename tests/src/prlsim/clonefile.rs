//! Copying a bundle the way Parallels clones a `.macvm` (with APFS `clonefile`): the copy has
//! the same bytes, the same holes, the same modes, and symlinks stay symlinks. A disk of
//! 64 GiB with 3 MiB written stays 3 MiB allocated, so a push of a clone reads what it would
//! read on a Mac.
//!
//! On Linux a reflink (`FICLONE`) is tried first (btrfs, XFS); where that is not supported the
//! file is copied extent by extent (`SEEK_DATA`/`SEEK_HOLE`), holes left unwritten. This is
//! deliberately not the daemon's own extent code (`marbled::images::sparse`): a bug there
//! must not hide in the simulator too.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

use rustix::fs::SeekFrom;

use super::SimError;

/// Bytes copied per read.
const BLOCK: usize = 1024 * 1024;

/// Recursively copy `src` to `dst` (which must not exist yet).
pub fn clone_dir(src: &Path, dst: &Path) -> Result<(), SimError> {
    fs::create_dir_all(dst).map_err(|e| SimError::io(dst, e))?;
    let entries = fs::read_dir(src).map_err(|e| SimError::io(src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SimError::io(src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let ft = entry.file_type().map_err(|e| SimError::io(&from, e))?;
        if ft.is_dir() {
            clone_dir(&from, &to)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&from).map_err(|e| SimError::io(&from, e))?;
            std::os::unix::fs::symlink(&target, &to).map_err(|e| SimError::io(&to, e))?;
        } else {
            clone_file(&from, &to).map_err(|e| SimError::io(&from, e))?;
        }
    }
    let mode = fs::metadata(src)
        .map_err(|e| SimError::io(src, e))?
        .permissions()
        .mode();
    fs::set_permissions(dst, fs::Permissions::from_mode(mode)).map_err(|e| SimError::io(dst, e))
}

/// Copy one regular file, keeping its holes and mode.
pub fn clone_file(from: &Path, to: &Path) -> io::Result<()> {
    let src = File::open(from)?;
    let meta = src.metadata()?;
    let dst = File::create(to)?;
    if !reflink(&dst, &src) {
        let size = meta.len();
        dst.set_len(size)?;
        copy_extents(&src, &dst, size)?;
    }
    fs::set_permissions(to, meta.permissions())
}

#[cfg(target_os = "linux")]
fn reflink(dst: &File, src: &File) -> bool {
    rustix::fs::ioctl_ficlone(dst, src).is_ok()
}

#[cfg(not(target_os = "linux"))]
fn reflink(_dst: &File, _src: &File) -> bool {
    false
}

/// Copy the data extents of `src` (logical size `size`) into the pre-sized `dst`.
fn copy_extents(src: &File, dst: &File, size: u64) -> io::Result<()> {
    let mut buf = vec![0u8; BLOCK];
    let mut pos = 0u64;
    while pos < size {
        let start = match rustix::fs::seek(src, SeekFrom::Data(pos)) {
            Ok(s) => s,
            // No data after `pos`: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => break,
            // A filesystem without SEEK_DATA: everything is data.
            Err(rustix::io::Errno::INVAL) => pos,
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = match rustix::fs::seek(src, SeekFrom::Hole(start)) {
            Ok(e) => e.min(size),
            Err(rustix::io::Errno::INVAL) => size,
            Err(e) => return Err(e.into()),
        };
        let mut off = start;
        while off < end {
            let want = usize::try_from(end - off).map_or(BLOCK, |n| n.min(BLOCK));
            let got = src.read_at(&mut buf[..want], off)?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being cloned",
                ));
            }
            dst.write_all_at(&buf[..got], off)?;
            off += got as u64;
        }
        pos = end.max(start + 1);
    }
    Ok(())
}
