//! `[host]` moved to [`crate::config::host`]; re-exported here so callers not yet moved
//! compile.

pub use crate::config::HostSection;
