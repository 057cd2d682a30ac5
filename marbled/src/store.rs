//! The state file: what must survive a restart (locks, pause/drain, leases, cycle position,
//! in-flight operations, what policy `demand` has learnt), written atomically.
//!
//! Layout: `MRBS` | format major u16 BE | format minor u16 BE | payload length u32 BE |
//! CRC-32 of the payload u32 BE | payload (JSON of [`Persisted`]). JSON keeps the file
//! readable by an operator with `tail -c +17`; the header catches truncation and bit rot.
//! Writes go through [`crate::fsx::write_atomic`] (temp file, fsync, rename, directory
//! fsync), so a crash leaves either the old or the new state, never a mix.
//! A minor format change only adds fields with defaults: a file of an older minor loads, and
//! an older daemon reading a newer file ignores what it does not know.

use std::path::{Path, PathBuf};

use crate::sched::Persisted;

const MAGIC: [u8; 4] = *b"MRBS";
const FORMAT_MAJOR: u16 = 1;
/// 1: the demand policy's prediction history, fair-share streak and runner standing.
/// 2: the streak's start and the Jenkins nodes waiting (fair share, issue 17).
/// 3: the spare runners' ranks in the staggered yield (issue 17).
const FORMAT_MINOR: u16 = 3;
const HEADER_LEN: usize = 16;
/// A state file larger than this is refused before decoding (it holds a few KiB normally).
pub const MAX_STATE_LEN: usize = 16 * 1024 * 1024;

/// Errors reading or writing the state file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading failed.
    #[error("cannot read state file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing failed.
    #[error("cannot write state file {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a MARBLE state file or is damaged.
    #[error("state file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file was written by a newer, incompatible daemon.
    #[error("state file {path} has format {major}.{minor}; this marbled reads {FORMAT_MAJOR}.x")]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// Found major.
        major: u16,
        /// Found minor.
        minor: u16,
    },
}

/// The state file at one path.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// A store for `path` (nothing is read yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Load the state; `Ok(None)` when no file exists yet.
    pub fn load(&self) -> Result<Option<Persisted>, StoreError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        decode(&bytes).map(Some).map_err(|reason| match reason {
            DecodeFailure::Incompatible(major, minor) => StoreError::Incompatible {
                path: self.path.clone(),
                major,
                minor,
            },
            DecodeFailure::Corrupt(reason) => StoreError::Corrupt {
                path: self.path.clone(),
                reason,
            },
        })
    }

    /// Write the state atomically (blocking: call from `spawn_blocking` or a dedicated task).
    pub fn save(&self, state: &Persisted) -> Result<(), StoreError> {
        let write_err = |source| StoreError::Write {
            path: self.path.clone(),
            source,
        };
        let bytes = encode(state).map_err(write_err)?;
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write_err)?;
        crate::fsx::write_atomic(&self.path, &bytes).map_err(write_err)
    }
}

fn encode(state: &Persisted) -> std::io::Result<Vec<u8>> {
    let payload = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    frame(&payload)
}

/// The header in front of a JSON payload.
fn frame(payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|_| payload.len() <= MAX_STATE_LEN)
        .ok_or_else(|| std::io::Error::other("state exceeds the size limit"))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_MAJOR.to_be_bytes());
    out.extend_from_slice(&FORMAT_MINOR.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

enum DecodeFailure {
    Corrupt(String),
    Incompatible(u16, u16),
}

fn decode(bytes: &[u8]) -> Result<Persisted, DecodeFailure> {
    let corrupt = |s: &str| DecodeFailure::Corrupt(s.to_owned());
    if bytes.len() < HEADER_LEN {
        return Err(corrupt("shorter than its header"));
    }
    if bytes[..4] != MAGIC {
        return Err(corrupt("bad magic (not a marbled state file)"));
    }
    let be16 = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let (major, minor) = (be16(4), be16(6));
    if major != FORMAT_MAJOR {
        return Err(DecodeFailure::Incompatible(major, minor));
    }
    let len = usize::try_from(be32(8)).map_err(|_| corrupt("length overflows"))?;
    if len > MAX_STATE_LEN {
        return Err(corrupt("declared length exceeds the limit"));
    }
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != len {
        return Err(DecodeFailure::Corrupt(format!(
            "truncated or padded: header says {len} bytes, found {}",
            payload.len()
        )));
    }
    if crc32fast::hash(payload) != be32(12) {
        return Err(corrupt("checksum mismatch"));
    }
    serde_json::from_slice(payload).map_err(|err| DecodeFailure::Corrupt(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_and_missing_file_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("state.bin"));
        assert!(store.load().expect("load").is_none());
        let state = Persisted::default();
        store.save(&state).expect("save");
        assert_eq!(store.load().expect("load"), Some(state));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "temp files left behind");
    }

    #[test]
    fn what_demand_learnt_round_trips() {
        use crate::sched::{RunnerStanding, SeenJob, SpiWaiter, Streak};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("state.bin"));
        let mut state = Persisted::default();
        state.seen_jobs.insert(
            u64::MAX,
            SeenJob {
                since_ms: 1_700_000_000_000,
                labels: vec!["mac15".into(), "self-hosted".into()],
            },
        );
        state.streak = Some(Streak {
            team: marble_proto::Team::Spi,
            count: 2,
            since_ms: 1_700_000_050_000,
        });
        // Only the first request's time is kept: a restart counts as the last one seen.
        state.spi_waiters.insert(
            "mac-SPI-VM-1".into(),
            SpiWaiter {
                since_ms: 1_700_000_060_000,
                last_seen_ms: 0,
            },
        );
        state.runners.insert(
            "mac-ROOT-VM-macOS-15".into(),
            RunnerStanding {
                on_until_ms: Some(1_700_000_100_000),
                because: Some("booted warm at …".into()),
                used: true,
            },
        );
        state.yield_ranks.insert(
            42,
            [("mac-ROOT-VM-macOS-15".to_owned(), 2)]
                .into_iter()
                .collect(),
        );
        store.save(&state).expect("save");
        assert_eq!(store.load().expect("load"), Some(state));
    }

    #[test]
    fn a_file_of_the_first_format_loads_with_nothing_learnt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("state.bin"));
        // Written by a daemon of format 1.0: no prediction history, streak or standing.
        let payload = br#"{"locks":{},"paused":null,"draining":null,"leases":{},"quarantine":{},
            "last_cycled":"mac-ROOT-VM-macOS-14","cycle_off_until_ms":5,"in_flight":{}}"#;
        let mut bytes = frame(payload).expect("frame");
        bytes[6..8].copy_from_slice(&0u16.to_be_bytes());
        std::fs::write(store.path(), bytes).expect("write");
        let state = store.load().expect("load").expect("present");
        assert_eq!(state.last_cycled.as_deref(), Some("mac-ROOT-VM-macOS-14"));
        assert!(state.seen_jobs.is_empty() && state.streak.is_none() && state.runners.is_empty());
        assert!(state.yield_ranks.is_empty());
    }

    #[test]
    fn truncated_and_bit_flipped_files_are_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("state.bin"));
        store.save(&Persisted::default()).expect("save");
        let good = std::fs::read(store.path()).expect("read");

        std::fs::write(store.path(), &good[..good.len() - 1]).expect("write");
        assert!(matches!(store.load(), Err(StoreError::Corrupt { .. })));

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        std::fs::write(store.path(), &flipped).expect("write");
        assert!(matches!(store.load(), Err(StoreError::Corrupt { .. })));

        let mut newer = good;
        newer[5] = 9;
        std::fs::write(store.path(), &newer).expect("write");
        assert!(matches!(
            store.load(),
            Err(StoreError::Incompatible { major: 9, .. })
        ));
    }
}
