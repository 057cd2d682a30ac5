//! The S3 side of the lease ([`super`]): [`LeaseStore::step`] reads the lease object with
//! its ETag, asks [`super::decide`] what to do at the given time and, when it says write,
//! sends a conditional PUT (`If-None-Match: *` or `If-Match`). The caller passes the time
//! (read *before* the step, so the expiry it writes is never later than the truth) and
//! runs the loop; nothing here sleeps.

use bytes::Bytes;

use super::{Condition, Decision, Lease, Seen, Timing, WriteKind};
use crate::images::{Bucket, ImageError, PutIf, PutOutcome};

/// Errors of the lease: the bucket failed, or the object is not a lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The S3 request failed (network, auth, server): nothing is known about the lease.
    #[error("lease {key}: {source}")]
    S3 {
        /// The lease object's key.
        key: String,
        /// The bucket's error (boxed: `ImageError` is large and this is the rare path).
        #[source]
        source: Box<ImageError>,
    },
    /// The object exists but is not a lease this version can read. Nobody can take it over
    /// safely (its expiry is unknown): an operator deletes it.
    #[error("lease {key} is not a lease object ({detail}); delete it to let the hosts elect again")]
    Corrupt {
        /// The key.
        key: String,
        /// The parse error.
        detail: String,
    },
    /// The object has no ETag, so it cannot be replaced conditionally.
    #[error("lease {key}: the server sent no ETag, so the lease cannot be renewed safely")]
    NoEtag {
        /// The key.
        key: String,
    },
    /// Bad timing.
    #[error("lease {key}: {detail}")]
    Config {
        /// The key.
        key: String,
        /// What is wrong.
        detail: String,
    },
}

/// Where this host stands after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// This host holds the lease: it may act until `valid_until_ms`, and should step again
    /// (renew) after `renew_at_ms`.
    Leader {
        /// The term.
        term: u64,
        /// Last moment to act on it (expiry − margin).
        valid_until_ms: u64,
        /// When to renew.
        renew_at_ms: u64,
        /// What the write was.
        kind: WriteKind,
    },
    /// Another host holds it: step again at `retry_at_ms`.
    Follower {
        /// The holder.
        holder: String,
        /// Its term.
        term: u64,
        /// Its expiry plus the margin.
        retry_at_ms: u64,
    },
    /// Another host wrote between the read and the write (the condition failed): read
    /// again at once. A holder that gets this has lost the lease.
    Lost,
}

/// One host's handle on one lease object.
#[derive(Debug, Clone)]
pub struct LeaseStore {
    bucket: Bucket,
    key: String,
    me: String,
    timing: Timing,
}

impl LeaseStore {
    /// The lease at `key` for host `me`.
    pub fn new(bucket: Bucket, key: &str, me: &str, timing: Timing) -> Result<Self, LeaseError> {
        let timing = timing.validate().map_err(|detail| LeaseError::Config {
            key: key.to_string(),
            detail,
        })?;
        Ok(Self {
            bucket,
            key: key.to_string(),
            me: me.to_string(),
            timing,
        })
    }

    /// The object key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Reads the lease object.
    pub async fn read(&self) -> Result<Seen, LeaseError> {
        let got = self
            .bucket
            .get_small_tagged(&self.key)
            .await
            .map_err(|source| self.s3(source))?;
        let Some((body, etag)) = got else {
            return Ok(Seen::Absent);
        };
        let lease = Lease::from_json(&body).map_err(|e| LeaseError::Corrupt {
            key: self.key.clone(),
            detail: e.to_string(),
        })?;
        let etag = etag.ok_or_else(|| LeaseError::NoEtag {
            key: self.key.clone(),
        })?;
        Ok(Seen::Present { lease, etag })
    }

    /// One election step at `now_ms` (read before calling): read, decide, maybe write.
    pub async fn step(&self, now_ms: u64) -> Result<Standing, LeaseError> {
        let seen = self.read().await?;
        match super::decide(&self.me, now_ms, &seen, self.timing) {
            Decision::Follow {
                holder,
                term,
                retry_at_ms,
            } => Ok(Standing::Follower {
                holder,
                term,
                retry_at_ms,
            }),
            Decision::Write {
                lease,
                condition,
                kind,
            } => {
                if !self.write(&lease, &condition).await? {
                    return Ok(Standing::Lost);
                }
                Ok(Standing::Leader {
                    term: lease.term,
                    valid_until_ms: lease.valid_until_ms(self.timing),
                    renew_at_ms: now_ms.saturating_add(self.timing.renew_after_ms()),
                    kind,
                })
            }
        }
    }

    /// Steps down if this host holds the lease (graceful shutdown): writes it expired, so
    /// another host takes over after the margin. Returns whether it did.
    pub async fn resign(&self) -> Result<bool, LeaseError> {
        let seen = self.read().await?;
        match super::resignation(&self.me, &seen) {
            Some((lease, condition)) => self.write(&lease, &condition).await,
            None => Ok(false),
        }
    }

    /// The conditional PUT; `false` when the condition failed.
    async fn write(&self, lease: &Lease, condition: &Condition) -> Result<bool, LeaseError> {
        let put_if = match condition {
            Condition::Absent => PutIf::Absent,
            Condition::Matches(etag) => PutIf::Matches(etag),
        };
        let out = self
            .bucket
            .put_small_if(
                &self.key,
                Bytes::from(lease.to_json()),
                "application/json",
                put_if,
            )
            .await
            .map_err(|source| self.s3(source))?;
        Ok(matches!(out, PutOutcome::Written { .. }))
    }

    fn s3(&self, source: ImageError) -> LeaseError {
        LeaseError::S3 {
            key: self.key.clone(),
            source: Box::new(source),
        }
    }
}
