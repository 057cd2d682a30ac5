//! Holes: finding a file's data extents (`SEEK_DATA`/`SEEK_HOLE`, Linux and APFS) so holes
//! are never read or sent, and writing blocks so that all-zero blocks stay holes.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rustix::fs::SeekFrom;

/// Granularity of zero detection on write: a 64 KiB all-zero block is skipped (left a hole).
/// Smaller finds more holes but costs syscalls; APFS and ext4 allocate in 4 KiB blocks.
pub const ZERO_BLOCK: usize = 64 * 1024;

/// Data extents `[offset, len]` of `file` (logical size `size`). Filesystems without
/// `SEEK_DATA` report the whole file as one extent.
pub fn data_extents(file: &File, size: u64) -> io::Result<Vec<[u64; 2]>> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(rustix::io::Errno::INVAL) if pos == 0 => return Ok(vec![[0, size]]),
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = match rustix::fs::seek(file, SeekFrom::Hole(start)) {
            Ok(e) => e.min(size),
            Err(rustix::io::Errno::NXIO) => size,
            Err(e) => return Err(e.into()),
        };
        if end <= start {
            break;
        }
        out.push([start, end - start]);
        pos = end;
    }
    Ok(out)
}

/// Writes `buf` at `offset`, skipping aligned all-zero [`ZERO_BLOCK`]s (the file was sized
/// with `set_len`, so skipped ranges read back as zeros and stay unallocated).
pub fn write_sparse(file: &File, mut offset: u64, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // Align block boundaries to the file offset so holes line up with filesystem blocks.
        let to_boundary = ZERO_BLOCK - (offset % ZERO_BLOCK as u64) as usize;
        let n = to_boundary.min(buf.len());
        let (block, rest) = buf.split_at(n);
        if !is_zero(block) {
            file.write_all_at(block, offset)?;
        }
        offset += n as u64;
        buf = rest;
    }
    Ok(())
}

fn is_zero(b: &[u8]) -> bool {
    // Compare in u64 words: ~10× faster than a byte loop on the multi-GiB zero runs of disks.
    let (head, words, tail) = {
        let (chunks, tail) = b.split_at(b.len() - b.len() % 8);
        (&[] as &[u8], chunks.chunks_exact(8), tail)
    };
    head.iter().all(|&x| x == 0)
        && words
            .into_iter()
            .all(|w| u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) == 0)
        && tail.iter().all(|&x| x == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0u8; 100]));
        let mut v = vec![0u8; 100];
        v[99] = 1;
        assert!(!is_zero(&v));
        v[99] = 0;
        v[3] = 1;
        assert!(!is_zero(&v));
    }
}
