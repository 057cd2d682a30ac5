//! The bucket side of `[demand] shared` (issue 18): the demand poller's lease
//! ([`crate::lease`]) and the published snapshot ([`crate::demand::shared`]) in the
//! `[fleet]` bucket. [`Shared::step`] runs one election step and says whether this host
//! polls (it holds the lease) or follows; the holder [`Shared::publish`]es after each poll,
//! followers [`Shared::read`] the object. The loop that uses them is `super::demand`.

use bytes::Bytes;

use crate::clock::now_ms;
use crate::config::Config;
use crate::demand::JenkinsDemand;
use crate::demand::shared::{Published, lease_key, repo_set, snapshot_key};
use crate::images::{Bucket, Fetched, ImageStoreConfig};
use crate::lease::Timing;
use crate::lease::bucket::{LeaseError, LeaseStore, Standing};
use crate::sched::DemandSnapshot;

/// This host's part in the election after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Role {
    /// This host polls and publishes, until the next step is due.
    Leader {
        /// The lease term.
        term: u64,
    },
    /// Another host polls; this one reads what it publishes.
    Follower {
        /// The holder.
        holder: String,
        /// Its term.
        term: u64,
    },
    /// The bucket failed: nobody is known to poll, so this host polls for itself (as
    /// without `shared`) until the bucket answers again.
    Alone,
}

/// The lease and the object, with the bucket client (connected at the first step).
pub(super) struct Shared {
    images: ImageStoreConfig,
    me: String,
    timing: Timing,
    lease_key: String,
    snapshot_key: String,
    lease: Option<LeaseStore>,
    bucket: Option<Bucket>,
    /// The role of the last step, for logging changes only.
    role: Option<Role>,
    /// When the next election step is due (renewal, or the holder's expiry + margin), ms.
    next_step_ms: u64,
    /// The holder's lease expiry as the last step saw it, ms (0: alone).
    lease_expires_ms: u64,
    /// When the last step ran, ms.
    stepped_ms: u64,
    /// The published snapshot last read, with its ETag: the next read asks for it only if
    /// it changed (`If-None-Match`; 304 → this one again).
    last_read: Option<(String, Published)>,
}

impl Shared {
    /// From the config (None unless `[demand] shared` and `[fleet]`).
    pub(super) fn for_config(config: &Config) -> Option<Self> {
        let demand = config.demand.as_ref().filter(|d| d.shared)?;
        let fleet = config.fleet.as_ref()?;
        let (duration_ms, margin_ms) = demand.lease_timing_ms();
        let mut repos = demand.repos.clone();
        if repos.is_empty()
            && let Some(repo) = config.github.as_ref().and_then(|g| g.repo.clone())
        {
            repos.push(repo);
        }
        let set = repo_set(&repos);
        Some(Self {
            images: config.images.clone(),
            me: config.daemon.host_name.clone(),
            timing: Timing {
                duration_ms,
                margin_ms,
            },
            lease_key: lease_key(&fleet.prefix, &set),
            snapshot_key: snapshot_key(&fleet.prefix, &set),
            lease: None,
            bucket: None,
            role: None,
            next_step_ms: 0,
            lease_expires_ms: 0,
            stepped_ms: 0,
            last_read: None,
        })
    }

    /// When the next election step is due, unix ms.
    pub(super) fn next_step_ms(&self) -> u64 {
        self.next_step_ms
    }

    /// The role of the last step.
    pub(super) fn role(&self) -> Option<&Role> {
        self.role.as_ref()
    }

    /// What the last step saw, for `marblectl status` and the metrics (None before one).
    pub(super) fn seen(&self) -> Option<crate::demand::PollerSeen> {
        use crate::demand::PollerRole;
        let (holder, term, role) = match self.role.as_ref()? {
            Role::Leader { term } => (self.me.clone(), *term, PollerRole::Holder),
            Role::Follower { holder, term } => (holder.clone(), *term, PollerRole::Follower),
            Role::Alone => (String::new(), 0, PollerRole::Alone),
        };
        Some(crate::demand::PollerSeen {
            holder,
            term,
            role,
            lease_expires_ms: self.lease_expires_ms,
            stepped_ms: self.stepped_ms,
            lease_key: self.lease_key.clone(),
        })
    }

    async fn store(&mut self) -> Result<&LeaseStore, LeaseError> {
        if self.lease.is_none() {
            let bucket = Bucket::connect(&self.images)
                .await
                .map_err(|source| LeaseError::S3 {
                    key: self.lease_key.clone(),
                    source: Box::new(source),
                })?;
            self.bucket = Some(bucket.clone());
            self.lease = Some(LeaseStore::new(
                bucket,
                &self.lease_key,
                &self.me,
                self.timing,
            )?);
        }
        self.lease.as_ref().ok_or_else(|| LeaseError::Config {
            key: self.lease_key.clone(),
            detail: "no bucket client".into(),
        })
    }

    /// One election step (a lost race is stepped again at once, once).
    pub(super) async fn step(&mut self) -> Role {
        let mut standing = Err(LeaseError::Config {
            key: self.lease_key.clone(),
            detail: "not stepped".into(),
        });
        for _ in 0..2 {
            // The time is read before the step: the expiry written is never later than the truth.
            let now = now_ms();
            standing = match self.store().await {
                Ok(store) => store.step(now).await,
                Err(err) => Err(err),
            };
            if !matches!(standing, Ok(Standing::Lost)) {
                break;
            }
        }
        self.stepped_ms = now_ms();
        let role = match standing {
            Ok(Standing::Leader {
                term,
                renew_at_ms,
                valid_until_ms,
                ..
            }) => {
                self.next_step_ms = renew_at_ms;
                // The holder acts until the expiry − margin.
                self.lease_expires_ms = valid_until_ms.saturating_add(self.timing.margin_ms);
                Role::Leader { term }
            }
            Ok(Standing::Follower {
                holder,
                term,
                retry_at_ms,
            }) => {
                self.next_step_ms = retry_at_ms;
                // A follower may take over at the expiry + margin.
                self.lease_expires_ms = retry_at_ms.saturating_sub(self.timing.margin_ms);
                Role::Follower { holder, term }
            }
            Ok(Standing::Lost) | Err(_) => {
                if let Err(err) = &standing {
                    tracing::warn!(
                        error = %crate::chain::ErrorChain(err),
                        "demand poller lease unavailable; polling for this host alone"
                    );
                }
                // Try again at the next poll.
                self.next_step_ms = 0;
                self.lease_expires_ms = 0;
                Role::Alone
            }
        };
        if self.role.as_ref() != Some(&role) {
            match &role {
                Role::Leader { term } => {
                    tracing::info!(term, lease = %self.lease_key, "this host is the fleet's demand poller");
                }
                Role::Follower { holder, term } => tracing::info!(
                    holder = %holder,
                    term,
                    snapshot = %self.snapshot_key,
                    "following the fleet's demand poller"
                ),
                Role::Alone => {}
            }
            self.role = Some(role.clone());
        }
        role
    }

    /// Step down if this host holds the lease (shutdown, reload): write it expired, so the
    /// others take over at their next read. Bounded: the drain waits 2 s for side tasks.
    pub(super) async fn resign(&self) {
        let (Some(store), Some(Role::Leader { term })) = (&self.lease, &self.role) else {
            return;
        };
        match tokio::time::timeout(std::time::Duration::from_millis(1500), store.resign()).await {
            Ok(Ok(true)) => tracing::info!(term, "resigned as the fleet's demand poller"),
            Ok(Ok(false)) => {}
            Ok(Err(err)) => tracing::warn!(
                error = %crate::chain::ErrorChain(&err),
                "could not resign as the fleet's demand poller; another host takes over at its expiry"
            ),
            Err(_) => tracing::warn!(
                "resigning as the fleet's demand poller timed out; another host takes over at its expiry"
            ),
        }
    }

    /// The holder publishes what it polled: the last good GitHub snapshot (with when it
    /// was taken and its offline runners) and the Jenkins queue.
    pub(super) async fn publish(
        &self,
        term: u64,
        github: Option<(&DemandSnapshot, u64, &[marble_proto::OfflineRunner])>,
        jenkins: Option<&JenkinsDemand>,
    ) {
        let Some(bucket) = &self.bucket else { return };
        let published = Published::new(&self.me, term, github, jenkins);
        let body = Bytes::from(published.to_json());
        if let Err(err) = bucket
            .put_small(&self.snapshot_key, body, "application/json")
            .await
        {
            tracing::warn!(
                error = %crate::chain::ErrorChain(&err),
                key = %self.snapshot_key,
                "could not publish the fleet's demand snapshot"
            );
        }
    }

    /// A follower reads the published snapshot (None: absent, unreadable or the bucket
    /// failed; logged). Conditional on the last read's ETag: an unchanged object costs a
    /// 304 without the body, and the snapshot read then is fed again.
    pub(super) async fn read(&mut self) -> Option<Published> {
        let bucket = self.bucket.as_ref()?;
        let etag = self.last_read.as_ref().map(|(etag, _)| etag.as_str());
        match bucket.get_small_if_changed(&self.snapshot_key, etag).await {
            Ok(Fetched::NotModified) => self.last_read.as_ref().map(|(_, p)| p.clone()),
            Ok(Fetched::Body { data, etag }) => {
                self.last_read = None;
                match Published::from_json(&data) {
                    Ok(published) => {
                        if let Some(etag) = etag {
                            self.last_read = Some((etag, published.clone()));
                        }
                        Some(published)
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, key = %self.snapshot_key, "the fleet's demand snapshot is not readable");
                        None
                    }
                }
            }
            Ok(Fetched::Absent) => {
                self.last_read = None;
                None
            }
            Err(err) => {
                tracing::warn!(
                    error = %crate::chain::ErrorChain(&err),
                    key = %self.snapshot_key,
                    "could not read the fleet's demand snapshot"
                );
                None
            }
        }
    }
}
