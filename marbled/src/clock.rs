//! The wall clock, read in one place: everything above takes time as a `u64` of unix
//! milliseconds (the scheduler never reads a clock itself, so tests and the simulator pass
//! their own).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch (0 if the clock is before 1970; saturates far in the
/// future).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_2020_and_monotone_enough() {
        let a = super::now_ms();
        let b = super::now_ms();
        assert!(a > 1_577_836_800_000, "{a}");
        assert!(b >= a);
    }
}
