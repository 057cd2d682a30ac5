//! Fleet leader election with one lease object in a bucket (issue 18: one host polls
//! GitHub for the fleet). This file is the pure part: the lease's JSON format ([`Lease`]),
//! the timing rules ([`Timing`]) and [`decide`], which says from what was read (and the
//! time) what to write; it does no I/O and reads no clock, so it is unit-tested with
//! numbers. [`bucket`] does the S3 calls (read, then a conditional PUT).
//!
//! The protocol (docs/SCHEDULER.md, "Demand at fleet scale"):
//!
//! - absent → create with `If-None-Match: *`, term 1;
//! - mine and still valid → renew with `If-Match` on the ETag read: same term, new expiry;
//! - mine but lapsed → a new term, written the same way (someone may have seen it lapse);
//! - another's and not expired (plus the clock margin) → follow, try again after that;
//! - another's and expired by more than the margin → take over with `If-Match`, term + 1.
//!
//! A failed condition means another host wrote first: whoever loses stops at once. The
//! holder trusts its lease only until `expires − margin` (the expiry is computed from a time
//! read *before* the write was sent), and nobody takes over before `expires + margin`, so two
//! holders' validity windows never overlap while the hosts' clocks agree within the margin.
//! Every write changes the body (`seq`, `expires_ms`), so the ETag changes with it and an
//! `If-Match` on an old ETag cannot succeed twice.

#[cfg(feature = "s3")]
pub mod bucket;

use serde::{Deserialize, Serialize};

/// Lease object format written by this version.
pub const LEASE_FORMAT: u32 = 1;

/// The lease object's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// [`LEASE_FORMAT`] of the writer.
    pub format: u32,
    /// Host name of the holder.
    pub holder: String,
    /// Increases by one whenever the lease is taken (created, taken over, or retaken by its
    /// holder after it lapsed); the same through renewals.
    pub term: u64,
    /// Renewals within this term (0 when taken): keeps every write's body, hence its ETag,
    /// distinct.
    pub seq: u64,
    /// Unix ms after which the lease is void (others wait a further margin).
    pub expires_ms: u64,
}

impl Lease {
    /// The JSON body written to the bucket.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses a lease object; unknown fields (a newer writer's) are ignored.
    pub fn from_json(body: &[u8]) -> Result<Lease, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// Until when `holder` may act on this lease: `margin_ms` before its expiry.
    pub fn valid_until_ms(&self, timing: Timing) -> u64 {
        self.expires_ms.saturating_sub(timing.margin_ms)
    }
}

/// How long a lease lasts and how far clocks may disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Lease duration from the time a write is decided.
    pub duration_ms: u64,
    /// Clock disagreement tolerated between hosts (and request latency): the holder stops
    /// this long before expiry, others start this long after it.
    pub margin_ms: u64,
}

impl Timing {
    /// Checks that a holder has time left to act and renew: `duration > 3 × margin`.
    pub fn validate(self) -> Result<Self, String> {
        if self.margin_ms == 0 || self.duration_ms <= 3 * self.margin_ms {
            return Err(format!(
                "lease duration {} ms must exceed three times the clock margin {} ms (and the margin must not be 0)",
                self.duration_ms, self.margin_ms
            ));
        }
        Ok(self)
    }

    /// When a holder renews: once a third of the lease has passed, so two renewals can fail
    /// before it lapses.
    pub fn renew_after_ms(self) -> u64 {
        self.duration_ms / 3
    }
}

/// What was read from the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// No lease object.
    Absent,
    /// A lease and the ETag it was read with.
    Present {
        /// Its content.
        lease: Lease,
        /// Its ETag (unquoted).
        etag: String,
    },
}

/// The condition a write is sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `If-None-Match: *`.
    Absent,
    /// `If-Match` on this ETag.
    Matches(String),
}

/// Why a write is made (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// No lease existed.
    Create,
    /// The holder extends its valid lease.
    Renew,
    /// The holder's lease had lapsed (possibly seen so by others): it starts a new term.
    Retake,
    /// Another host's lease expired.
    TakeOver,
}

/// What [`decide`] says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write `lease` under `condition`; on success this host holds it until
    /// [`Lease::valid_until_ms`].
    Write {
        /// The new content.
        lease: Lease,
        /// The condition.
        condition: Condition,
        /// Why.
        kind: WriteKind,
    },
    /// Another host holds it: nothing to write before `retry_at_ms`.
    Follow {
        /// The holder.
        holder: String,
        /// Its term.
        term: u64,
        /// When it can first be taken over (expiry + margin).
        retry_at_ms: u64,
    },
}

/// The next step for host `me` at `now_ms`, given what was read.
pub fn decide(me: &str, now_ms: u64, seen: &Seen, timing: Timing) -> Decision {
    let fresh = |term: u64, seq: u64| Lease {
        format: LEASE_FORMAT,
        holder: me.to_string(),
        term,
        seq,
        expires_ms: now_ms.saturating_add(timing.duration_ms),
    };
    match seen {
        Seen::Absent => Decision::Write {
            lease: fresh(1, 0),
            condition: Condition::Absent,
            kind: WriteKind::Create,
        },
        Seen::Present { lease, etag } if lease.holder == me => {
            let (lease, kind) = if now_ms < lease.valid_until_ms(timing) {
                (fresh(lease.term, lease.seq + 1), WriteKind::Renew)
            } else {
                (fresh(lease.term + 1, 0), WriteKind::Retake)
            };
            Decision::Write {
                lease,
                condition: Condition::Matches(etag.clone()),
                kind,
            }
        }
        Seen::Present { lease, etag } => {
            let free_at = lease.expires_ms.saturating_add(timing.margin_ms);
            if now_ms < free_at {
                Decision::Follow {
                    holder: lease.holder.clone(),
                    term: lease.term,
                    retry_at_ms: free_at,
                }
            } else {
                Decision::Write {
                    lease: fresh(lease.term + 1, 0),
                    condition: Condition::Matches(etag.clone()),
                    kind: WriteKind::TakeOver,
                }
            }
        }
    }
}

/// The lease a holder writes to step down (graceful shutdown): already expired, so the
/// others take over after the margin instead of a whole lease duration. `None` when `me`
/// does not hold `seen`.
pub fn resignation(me: &str, seen: &Seen) -> Option<(Lease, Condition)> {
    match seen {
        Seen::Present { lease, etag } if lease.holder == me => Some((
            Lease {
                seq: lease.seq + 1,
                expires_ms: 0,
                ..lease.clone()
            },
            Condition::Matches(etag.clone()),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        duration_ms: 30_000,
        margin_ms: 2_000,
    };

    fn held(holder: &str, term: u64, expires_ms: u64) -> Seen {
        Seen::Present {
            lease: Lease {
                format: LEASE_FORMAT,
                holder: holder.into(),
                term,
                seq: 3,
                expires_ms,
            },
            etag: "e1".into(),
        }
    }

    #[test]
    fn nobody_holds_it_so_it_is_created_if_absent_as_term_one() {
        let d = decide("a", 1_000, &Seen::Absent, T);
        let Decision::Write {
            lease,
            condition,
            kind,
        } = d
        else {
            panic!("{d:?}")
        };
        assert_eq!(kind, WriteKind::Create);
        assert_eq!(condition, Condition::Absent);
        assert_eq!((lease.holder.as_str(), lease.term), ("a", 1));
        assert_eq!(lease.expires_ms, 31_000);
        assert_eq!(
            lease.valid_until_ms(T),
            29_000,
            "the holder stops a margin early"
        );
    }

    #[test]
    fn the_holder_renews_its_valid_lease_in_the_same_term_on_the_etag_it_read() {
        let d = decide("a", 20_000, &held("a", 4, 31_000), T);
        assert_eq!(
            d,
            Decision::Write {
                lease: Lease {
                    format: LEASE_FORMAT,
                    holder: "a".into(),
                    term: 4,
                    seq: 4,
                    expires_ms: 50_000,
                },
                condition: Condition::Matches("e1".into()),
                kind: WriteKind::Renew,
            }
        );
    }

    #[test]
    fn a_holder_whose_lease_lapsed_starts_a_new_term() {
        // 29 000 is its own deadline (expiry 31 000 − margin): past it, the next write is a
        // new term even if nobody took the lease meanwhile.
        let Decision::Write { lease, kind, .. } = decide("a", 29_000, &held("a", 4, 31_000), T)
        else {
            panic!()
        };
        assert_eq!((kind, lease.term, lease.seq), (WriteKind::Retake, 5, 0));
    }

    #[test]
    fn others_follow_until_expiry_plus_margin_then_take_over_with_the_next_term() {
        let seen = held("a", 4, 31_000);
        assert_eq!(
            decide("b", 31_500, &seen, T),
            Decision::Follow {
                holder: "a".into(),
                term: 4,
                retry_at_ms: 33_000,
            },
            "expired, but within the clock margin"
        );
        let Decision::Write {
            lease,
            condition,
            kind,
        } = decide("b", 33_000, &seen, T)
        else {
            panic!()
        };
        assert_eq!(kind, WriteKind::TakeOver);
        assert_eq!(condition, Condition::Matches("e1".into()));
        assert_eq!((lease.holder.as_str(), lease.term, lease.seq), ("b", 5, 0));
    }

    #[test]
    fn validity_windows_of_consecutive_terms_never_overlap() {
        // The holder's last chance to renew is just before its deadline; the earliest
        // take-over is at expiry + margin: at least two margins apart, so a clock that is
        // up to a margin off on either side still keeps them apart.
        for now in (0..40_000).step_by(250) {
            let seen = held("a", 1, 31_000);
            if let Decision::Write { lease, .. } = decide("b", now, &seen, T) {
                assert!(now >= 33_000);
                let a_deadline = 31_000 - T.margin_ms;
                assert!(now - a_deadline >= 2 * T.margin_ms, "{now}: {lease:?}");
            }
        }
    }

    #[test]
    fn every_write_has_a_new_body_so_a_stale_etag_cannot_win_twice() {
        let seen = held("a", 4, 31_000);
        let Decision::Write { lease: first, .. } = decide("a", 20_000, &seen, T) else {
            panic!()
        };
        // The same decision at the same millisecond on the renewed lease still differs.
        let again = Seen::Present {
            lease: first.clone(),
            etag: "e2".into(),
        };
        let Decision::Write { lease: second, .. } = decide("a", 20_000, &again, T) else {
            panic!()
        };
        assert_ne!(first.to_json(), second.to_json());
    }

    #[test]
    fn a_resignation_is_an_expired_lease_only_the_holder_can_write() {
        let seen = held("a", 4, 31_000);
        assert_eq!(resignation("b", &seen), None);
        let (lease, cond) = resignation("a", &seen).expect("holder");
        assert_eq!((lease.term, lease.seq, lease.expires_ms), (4, 4, 0));
        assert_eq!(cond, Condition::Matches("e1".into()));
        assert!(matches!(
            decide(
                "b",
                T.margin_ms,
                &Seen::Present {
                    lease,
                    etag: "e3".into()
                },
                T
            ),
            Decision::Write {
                kind: WriteKind::TakeOver,
                ..
            }
        ));
    }

    #[test]
    fn the_format_round_trips_and_ignores_unknown_fields() {
        let l = Lease {
            format: LEASE_FORMAT,
            holder: "macphsft41".into(),
            term: 9,
            seq: 2,
            expires_ms: 1_765_000_000_000,
        };
        assert_eq!(Lease::from_json(&l.to_json()).expect("parse"), l);
        let newer = br#"{"format":2,"holder":"h","term":1,"seq":0,"expires_ms":5,"extra":true}"#;
        assert_eq!(Lease::from_json(newer).expect("parse").holder, "h");
        assert!(Lease::from_json(b"{}").is_err());
    }

    #[test]
    fn timing_needs_room_to_act_and_renew() {
        assert!(T.validate().is_ok());
        assert!(
            Timing {
                duration_ms: 6_000,
                margin_ms: 2_000
            }
            .validate()
            .is_err()
        );
        assert!(
            Timing {
                duration_ms: 6_000,
                margin_ms: 0
            }
            .validate()
            .is_err()
        );
        assert_eq!(T.renew_after_ms(), 10_000);
    }
}
