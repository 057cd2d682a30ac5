//! The multipart part size of a push, chosen against S3's limits before anything is sent.
//!
//! S3 (and Ceph RGW) take at most 10 000 parts per upload, 5 GiB per part and 5 TiB per
//! object. At the default 16 MiB, 10 000 parts hold about 156 GiB, and VM disks can be bigger.
//! The compressed object is bounded by the payload (the files' allocated bytes, holes left
//! out): each chunk is one zstd frame of at most `ZSTD_compressBound(chunk)` + the 4-byte
//! content checksum. So the part size is raised until the bound fits in 10 000 parts, and a
//! payload whose bound exceeds 5 TiB is refused up front with the figures.

use super::ImageError;

/// Parts per multipart upload.
const MAX_PARTS: u64 = 10_000;
/// Bytes per part.
const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;
/// Bytes per object.
const MAX_OBJECT: u64 = 5 * 1024 * 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

/// Largest zstd frame (with content checksum) for `n` uncompressed bytes.
fn frame_bound(n: u64) -> u64 {
    let bound = usize::try_from(n)
        .map(zstd::zstd_safe::compress_bound)
        .map_or(u64::MAX, |b| b as u64);
    bound.saturating_add(4)
}

/// Largest data object for `payload` bytes cut into `chunk`-byte frames.
pub(crate) fn object_bound(payload: u64, chunk: u64) -> u64 {
    let chunk = chunk.max(1);
    let rest = payload % chunk;
    (payload / chunk)
        .saturating_mul(frame_bound(chunk))
        .saturating_add(if rest > 0 { frame_bound(rest) } else { 0 })
}

/// The part size for a push of `payload` bytes in `chunk`-byte chunks: at least
/// `configured`, a multiple of 1 MiB, large enough that the worst-case object needs at most
/// 10 000 parts, and small enough that a part (which is shipped once it holds the part size,
/// so it can carry one more frame) stays within 5 GiB.
pub(crate) fn part_size_for(payload: u64, chunk: u64, configured: u64) -> Result<u64, ImageError> {
    let bound = object_bound(payload, chunk);
    if bound > MAX_OBJECT {
        return Err(ImageError::TooLarge {
            payload,
            bound,
            limit: "5 TiB per S3 object",
        });
    }
    // Every part but the last holds ≥ part bytes: parts ≤ bound / part + 1 ≤ MAX_PARTS.
    let needed = bound / MAX_PARTS + 1;
    let largest = (MAX_PART - frame_bound(chunk) + 1) / MIB * MIB;
    let part = configured.max(needed).div_ceil(MIB) * MIB;
    if part > largest {
        if needed > largest {
            return Err(ImageError::TooLarge {
                payload,
                bound,
                limit: "10 000 parts of at most 5 GiB",
            });
        }
        // A configured part size near 5 GiB: one more frame would overflow the part.
        return Ok(largest);
    }
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;
    const TIB: u64 = 1024 * GIB;
    /// S3's limits: parts per upload, bytes per part, bytes per object.
    const PARTS: u64 = 10_000;

    /// Parts a push of `payload` would produce at `part` in the worst case (nothing
    /// compresses): every part but the last holds at least `part` bytes of zstd frames.
    fn worst_parts(payload: u64, chunk: u64, part: u64) -> u64 {
        let frame = |n: u64| n + (n >> 8) + 64 + 4;
        let bound = (payload / chunk) * frame(chunk)
            + if !payload.is_multiple_of(chunk) {
                frame(payload % chunk)
            } else {
                0
            };
        bound / part + 1
    }

    #[test]
    fn small_images_keep_the_configured_part_size() {
        assert_eq!(part_size_for(0, 16 * MIB, 16 * MIB).unwrap(), 16 * MIB);
        assert_eq!(
            part_size_for(100 * GIB, 16 * MIB, 16 * MIB).unwrap(),
            16 * MIB
        );
        assert_eq!(
            part_size_for(100 * GIB, 16 * MIB, 64 * MIB).unwrap(),
            64 * MIB
        );
    }

    #[test]
    fn large_images_get_parts_big_enough_for_ten_thousand() {
        for (payload, want_mib) in [(200 * GIB, 21), (TIB, 106), (4 * TIB, 422)] {
            let part = part_size_for(payload, 16 * MIB, 16 * MIB).unwrap();
            assert_eq!(part, want_mib * MIB, "{payload}");
            assert_eq!(part % MIB, 0);
            assert!(
                worst_parts(payload, 16 * MIB, part) <= PARTS,
                "{payload}: {} parts",
                worst_parts(payload, 16 * MIB, part)
            );
        }
    }

    #[test]
    fn a_part_never_exceeds_five_gib_and_too_large_images_are_refused_with_the_figure() {
        // A part is shipped once it holds `part` bytes, so it may carry one more frame.
        let part = part_size_for(GIB, 16 * MIB, 5120 * MIB).unwrap();
        assert!(
            part + 16 * MIB + ((16 * MIB) >> 8) + 68 <= 5 * GIB,
            "{part}"
        );
        let e = part_size_for(5 * TIB, 16 * MIB, 16 * MIB).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("5497558138880"), "names the payload: {text}");
        assert!(text.contains("5 TiB"), "names the limit: {text}");
    }
}
