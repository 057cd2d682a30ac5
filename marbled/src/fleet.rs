//! Fleet inventory in the image bucket: every daemon with a `[fleet]` section writes a
//! heartbeat object `<prefix><host>.json` (version, VMs with power, running VM, policy, last
//! decision, free disk, time) every interval, and answers `FleetList` by reading all of them.
//! This replaces the spreadsheet of host names; [`FleetReader::host_name_in_use`] lets
//! `host setup` refuse a name another live host already reports.
//!
//! The object format is JSON ([`Heartbeat`], `format = 1`), not the wire types: other tools
//! (and older daemons) read it, and it must not change when the socket protocol does. A
//! heartbeat is *stale* when it is older than [`STALE_INTERVALS`] of its writer's own interval,
//! so readers need no configuration to judge it.
//!
//! This module is the bucket client only (the object format, [`FleetReader`] and the
//! [`HeartbeatWriter`]); the loop that writes a heartbeat every interval is
//! `crate::periodic`'s.

use std::path::Path;
use std::time::Duration;

use marble_proto::{Decision, FleetHost, FleetVm, PowerState, StatusReport, Team};
use serde::{Deserialize, Serialize};

/// A heartbeat older than this many of its writer's intervals is stale (the writer missed
/// two writes in a row, then some slack).
pub const STALE_INTERVALS: u64 = 3;

/// Heartbeat object format written by this version.
pub const HEARTBEAT_FORMAT: u32 = 1;

/// Heartbeat object keys; the section itself is config.
impl FleetSection {
    /// The object key of `host`'s heartbeat, or `None` when the name cannot be a key segment.
    pub fn key_for(&self, host: &str) -> Option<String> {
        valid_host_name(host).then(|| format!("{}{host}.json", self.prefix))
    }
}

/// Host names become object keys: letters, digits, `.`, `-`, `_`, at most 253 bytes.
pub fn valid_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// One VM in a heartbeat object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatVm {
    /// VM name.
    pub name: String,
    /// `root`, `spi` or `unassigned`.
    pub team: String,
    /// Parallels state word (`running`, `stopped`…).
    pub power: String,
}

/// The scheduler's latest decision in a heartbeat object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatDecision {
    /// Unix ms.
    pub at_ms: u64,
    /// The VM concerned.
    pub vm: Option<String>,
    /// What and why.
    pub text: String,
}

/// The JSON document at `fleet/<host>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// [`HEARTBEAT_FORMAT`].
    pub format: u32,
    /// Host name.
    pub host: String,
    /// Daemon version.
    pub version: String,
    /// Scheduling policy.
    pub policy: String,
    /// Written at, unix ms.
    pub written_ms: u64,
    /// Written at, RFC 3339 (for people reading the object).
    pub written_at: String,
    /// The writer's interval, ms.
    pub interval_ms: u64,
    /// VMs occupying the host.
    pub running: Vec<String>,
    /// Every VM.
    pub vms: Vec<HeartbeatVm>,
    /// Latest decision.
    pub last_decision: Option<HeartbeatDecision>,
    /// Free bytes on the state file's volume.
    pub free_disk_bytes: Option<u64>,
}

impl Heartbeat {
    /// Build from a status report.
    pub fn from_status(
        status: &StatusReport,
        interval: Duration,
        free_disk_bytes: Option<u64>,
        now_ms: u64,
    ) -> Self {
        Heartbeat {
            format: HEARTBEAT_FORMAT,
            host: status.host.clone(),
            version: status.daemon_version.clone(),
            policy: status.policy.clone(),
            written_ms: now_ms,
            written_at: crate::sched::format_ms(now_ms),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            running: status
                .vms
                .iter()
                .filter(|v| v.power.occupies_host())
                .map(|v| v.name.clone())
                .collect(),
            vms: status
                .vms
                .iter()
                .map(|v| HeartbeatVm {
                    name: v.name.clone(),
                    team: v.team.as_str().into(),
                    power: v.power.as_word().into(),
                })
                .collect(),
            last_decision: status.decisions.last().map(|d| HeartbeatDecision {
                at_ms: d.at_ms,
                vm: d.vm.clone(),
                text: d.text.clone(),
            }),
            free_disk_bytes,
        }
    }

    /// As the wire type.
    pub fn into_host(self) -> FleetHost {
        FleetHost {
            host: self.host,
            daemon_version: self.version,
            policy: self.policy,
            written_ms: self.written_ms,
            interval_ms: self.interval_ms,
            running: self.running,
            vms: self
                .vms
                .into_iter()
                .map(|v| FleetVm {
                    team: match v.team.as_str() {
                        "root" => Team::Root,
                        "spi" => Team::Spi,
                        _ => Team::Unassigned,
                    },
                    power: PowerState::from_word(&v.power),
                    name: v.name,
                })
                .collect(),
            last_decision: self.last_decision.map(|d| Decision {
                at_ms: d.at_ms,
                vm: d.vm,
                text: d.text,
            }),
            free_disk_bytes: self.free_disk_bytes,
        }
    }
}

/// Whether `host`'s heartbeat is stale at `now_ms`.
pub fn is_stale(host: &FleetHost, now_ms: u64) -> bool {
    let limit = host.interval_ms.max(1000).saturating_mul(STALE_INTERVALS);
    now_ms.saturating_sub(host.written_ms) > limit
}

/// Free bytes for unprivileged users on the volume holding `path` (`None` when unknown).
pub fn free_disk_bytes(path: &Path) -> Option<u64> {
    let dir = if path.is_dir() { path } else { path.parent()? };
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    #[allow(clippy::useless_conversion)] // the field widths differ between Linux and macOS
    let bytes = u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size()));
    Some(bytes)
}

/// Fleet errors.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The bucket could not be reached, listed, read or written.
    #[cfg(feature = "s3")]
    #[error("fleet heartbeats in the image bucket")]
    S3(#[from] crate::images::ImageError),
    /// The host name cannot be an object key.
    #[error("host name {0:?} cannot be used as a heartbeat key (letters, digits, '.', '-', '_')")]
    BadHostName(String),
    /// A heartbeat could not be encoded.
    #[error("encoding the heartbeat")]
    Encode(#[from] serde_json::Error),
}

#[cfg(feature = "s3")]
pub(crate) use s3::spawn_list;
#[cfg(feature = "s3")]
pub use s3::{FleetReader, HeartbeatFailure, HeartbeatWriter};

#[cfg(feature = "s3")]
use crate::clock::now_ms;
use crate::config::FleetSection;

#[cfg(feature = "s3")]
mod s3 {
    use std::sync::Arc;

    use bytes::Bytes;
    use marble_proto::{ErrorKind, FleetHost, FleetReport, Response, WireError};
    use tokio::sync::oneshot;
    use tokio_util::task::TaskTracker;

    use super::{FleetError, FleetSection, Heartbeat, is_stale, now_ms};
    use crate::images::{Bucket, ImageStoreConfig};

    /// Reads (and writes) heartbeat objects in the `[images]` bucket.
    #[derive(Debug, Clone)]
    pub struct FleetReader {
        images: ImageStoreConfig,
        section: FleetSection,
    }

    impl FleetReader {
        /// A reader for the bucket of `images`.
        pub fn new(images: ImageStoreConfig, section: FleetSection) -> Self {
            Self { images, section }
        }

        /// The `[fleet]` settings.
        pub fn section(&self) -> &FleetSection {
            &self.section
        }

        /// Every heartbeat under the prefix, sorted by host; unreadable objects are listed
        /// apart rather than failing the whole answer.
        pub async fn list(&self) -> Result<FleetReport, FleetError> {
            let bucket = Bucket::connect(&self.images).await?;
            let mut report = FleetReport {
                hosts: Vec::new(),
                unreadable: Vec::new(),
                read_ms: now_ms(),
            };
            for obj in bucket.list(&self.section.prefix).await? {
                if !obj.key.ends_with(".json") {
                    continue;
                }
                match bucket.get_small(&obj.key).await {
                    Ok(Some(body)) => match serde_json::from_slice::<Heartbeat>(&body) {
                        Ok(hb) => report.hosts.push(hb.into_host()),
                        Err(err) => report.unreadable.push(format!("{}: {err}", obj.key)),
                    },
                    // Deleted between list and get: the host is gone.
                    Ok(None) => {}
                    Err(err) => report.unreadable.push(format!("{}: {err}", obj.key)),
                }
            }
            report.hosts.sort_by(|a, b| a.host.cmp(&b.host));
            Ok(report)
        }

        /// The live heartbeat of a host named `name` (ASCII case-insensitive), if any: `host
        /// setup` refuses to give this host a name another live host reports. A stale
        /// heartbeat does not count (that host is gone or down; its name may be reused).
        /// The caller skips the answer when `name` is this host's own current name.
        pub async fn host_name_in_use(&self, name: &str) -> Result<Option<FleetHost>, FleetError> {
            let report = self.list().await?;
            let now = now_ms();
            Ok(report
                .hosts
                .into_iter()
                .find(|h| h.host.eq_ignore_ascii_case(name) && !is_stale(h, now)))
        }

        async fn put(&self, bucket: &Bucket, hb: &Heartbeat) -> Result<(), FleetError> {
            let key = self
                .section
                .key_for(&hb.host)
                .ok_or_else(|| FleetError::BadHostName(hb.host.clone()))?;
            let body = serde_json::to_vec_pretty(hb)?;
            bucket
                .put_small(&key, Bytes::from(body), "application/json")
                .await?;
            Ok(())
        }
    }

    /// Answer `FleetList` from a job so the actor never waits on S3.
    pub(crate) fn spawn_list(
        jobs: &TaskTracker,
        reader: Option<Arc<FleetReader>>,
        done: oneshot::Sender<Result<Response, WireError>>,
    ) {
        let Some(reader) = reader else {
            let _ = done.send(Err(WireError::new(
                ErrorKind::InvalidState,
                "no [fleet] section in marbled's config: this daemon neither writes nor reads \
                 heartbeats",
            )));
            return;
        };
        jobs.spawn(async move {
            let answer = reader
                .list()
                .await
                .map(Response::Fleet)
                .map_err(|err| crate::chain::to_wire(ErrorKind::Unavailable, &err));
            let _ = done.send(answer);
        });
    }

    /// Why a heartbeat was not written.
    #[derive(Debug, thiserror::Error)]
    pub enum HeartbeatFailure {
        /// No client for the bucket could be built.
        #[error("cannot reach the bucket")]
        Unreachable(#[source] FleetError),
        /// The object could not be written (the client is rebuilt next time).
        #[error("heartbeat not written")]
        NotWritten(#[source] FleetError),
    }

    /// Writes this host's heartbeat object, keeping one bucket client between writes.
    #[derive(Debug)]
    pub struct HeartbeatWriter {
        reader: Arc<FleetReader>,
        bucket: Option<Bucket>,
    }

    impl HeartbeatWriter {
        /// A writer to the bucket `reader` reads.
        pub fn new(reader: Arc<FleetReader>) -> Self {
            Self {
                reader,
                bucket: None,
            }
        }

        /// The `[fleet]` settings.
        pub fn section(&self) -> &FleetSection {
            &self.reader.section
        }

        /// Write `hb` (connecting first when there is no client yet).
        pub async fn write(&mut self, hb: &Heartbeat) -> Result<(), HeartbeatFailure> {
            let bucket = match self.bucket.take() {
                Some(bucket) => bucket,
                None => Bucket::connect(&self.reader.images)
                    .await
                    .map_err(|err| HeartbeatFailure::Unreachable(err.into()))?,
            };
            // On failure the client is dropped: credentials or the endpoint may have
            // recovered by the next write.
            self.reader
                .put(&bucket, hb)
                .await
                .map_err(HeartbeatFailure::NotWritten)?;
            self.bucket = Some(bucket);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use marble_proto::{BusyState, VmInfo};

    fn status() -> StatusReport {
        let vm = |name: &str, team, power| VmInfo {
            name: name.into(),
            uuid: "u".into(),
            team,
            power,
            busy: BusyState::NotProbed,
            lock: None,
            operation: None,
            note: String::new(),
        };
        StatusReport {
            daemon_version: "0.1.0".into(),
            host: "macphsft07".into(),
            policy: "demand".into(),
            capacity: 1,
            paused: None,
            draining: None,
            vms: vec![
                vm("a-ROOT-VM-macOS-14", Team::Root, PowerState::Running),
                vm("a-SPI-VM-macOS-1", Team::Spi, PowerState::Stopped),
            ],
            pending: vec![],
            decisions: vec![Decision {
                at_ms: 5,
                vm: None,
                text: "demand: no queued job; nothing boots".into(),
            }],
            inventory_ms: 1,
        }
    }

    #[test]
    fn heartbeat_round_trips_through_json_to_the_wire_type() {
        let hb = Heartbeat::from_status(&status(), Duration::from_secs(60), Some(42), 1_000_000);
        let json = serde_json::to_string(&hb).unwrap();
        assert!(json.contains("\"power\":\"running\""), "{json}");
        let host = serde_json::from_str::<Heartbeat>(&json)
            .unwrap()
            .into_host();
        assert_eq!(host.host, "macphsft07");
        assert_eq!(host.running, vec!["a-ROOT-VM-macOS-14".to_owned()]);
        assert_eq!(host.vms[1].team, Team::Spi);
        assert_eq!(host.vms[1].power, PowerState::Stopped);
        assert_eq!(host.free_disk_bytes, Some(42));
        assert_eq!(host.interval_ms, 60_000);
        assert!(!is_stale(&host, 1_000_000 + 180_000));
        assert!(is_stale(&host, 1_000_000 + 180_001));
    }

    #[test]
    fn host_names_that_cannot_be_keys_are_refused() {
        let s = FleetSection::default();
        assert_eq!(
            s.key_for("macphsft07").as_deref(),
            Some("fleet/macphsft07.json")
        );
        assert_eq!(s.key_for("a/b"), None);
        assert_eq!(s.key_for(""), None);
        assert_eq!(s.key_for(".."), None);
        assert!(FleetSection::default().problems().is_empty());
        let bad = FleetSection {
            interval: Duration::from_millis(10),
            prefix: "fleet".into(),
        };
        assert_eq!(bad.problems().len(), 2);
    }

    #[test]
    fn free_disk_of_a_temp_dir_is_known() {
        let dir = std::env::temp_dir();
        assert!(free_disk_bytes(&dir.join("state.bin")).is_some());
    }
}
