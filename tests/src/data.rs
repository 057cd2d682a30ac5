//! Deterministic test payloads: bytes that do not compress (so image tests exercise real
//! data frames, not a zstd shortcut) and that every run reproduces from a seed.

/// `len` pseudo-random bytes from an xorshift64 stream seeded with `seed`.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}
