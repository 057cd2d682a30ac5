//! Defensive parsing of `prlctl` output. (Being written.)
