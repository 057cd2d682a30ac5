//! Check `api.s3-conditional-read`: what a fleet follower's read of the published demand
//! snapshot (`marbled/src/periodic/fleet_poll.rs`, `[demand] shared`) needs from the
//! bucket's server, with the daemon's own `Bucket::get_small_if_changed`. Against the real
//! server (`--s3-config`: Ceph RGW at CERN) or, in simulator mode, the local s3s-fs behind
//! a [`crate::serial_proxy::SerialProxy`] (s3s-fs ignores `If-None-Match` on GET; the proxy
//! answers 304 as S3 and RGW do).
//!
//! Steps on one key under `marble-acceptance/cond-read-<pid>-<ms>/`: put a small object,
//! GET it (200, body, ETag), GET with that ETag in `If-None-Match` (must be 304: a 200 with
//! the body means the server ignores the header and every follower downloads the snapshot
//! on every poll; a 412 is what the daemon reads as an error, so a follower would lose the
//! snapshot after its first read), replace the object, GET with the old ETag (must be 200
//! with the new body and a new ETag: a 304 would keep followers on a stale snapshot), GET
//! with the new ETag (304 again). The key is deleted afterwards. [`verdict`] judges what was
//! seen, so its logic is unit-tested on servers that misbehave.

use anyhow::Context as _;
use bytes::Bytes;
use marbled::images::{Bucket, Fetched, ImageError};

use super::record::Verdict;

/// First content of the object.
const FIRST: &[u8] = b"{\"acceptance\":\"s3-conditional-read\",\"version\":1}";
/// Content after the change.
const SECOND: &[u8] = b"{\"acceptance\":\"s3-conditional-read\",\"version\":2}";

/// One GET as the daemon's client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// 304: no body.
    NotModified,
    /// 200: the body and its ETag (unquoted), when the server sent one.
    Body {
        /// Content.
        data: Bytes,
        /// ETag.
        etag: Option<String>,
    },
    /// 404.
    Absent,
    /// 412 Precondition Failed (the daemon's `ImageError::Replaced`).
    PreconditionFailed,
    /// Any other failure, as the daemon words it.
    Error(String),
}

impl Read {
    fn from(result: Result<Fetched, ImageError>) -> Read {
        match result {
            Ok(Fetched::NotModified) => Read::NotModified,
            Ok(Fetched::Body { data, etag }) => Read::Body { data, etag },
            Ok(Fetched::Absent) => Read::Absent,
            Err(ImageError::Replaced { .. }) => Read::PreconditionFailed,
            Err(e) => Read::Error(format!("{e:#}")),
        }
    }

    /// How it reads in a verdict.
    pub fn describe(&self) -> String {
        match self {
            Read::NotModified => "304 Not Modified".to_owned(),
            Read::Body { data, etag } => format!(
                "200 with {} bytes ({}), ETag {}",
                data.len(),
                if &data[..] == FIRST {
                    "the first content"
                } else if &data[..] == SECOND {
                    "the changed content"
                } else {
                    "unexpected content"
                },
                etag.as_deref().unwrap_or("none")
            ),
            Read::Absent => "404 (no such key)".to_owned(),
            Read::PreconditionFailed => "412 Precondition Failed".to_owned(),
            Read::Error(e) => format!("error: {e}"),
        }
    }
}

/// What the four GETs returned (`None`: not reached, an earlier step made it moot).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// Plain GET after the first put.
    pub plain: Option<Read>,
    /// GET with the first ETag, object unchanged.
    pub unchanged: Option<Read>,
    /// GET with the first ETag after the object was replaced.
    pub changed: Option<Read>,
    /// GET with the new ETag, object unchanged since.
    pub unchanged_again: Option<Read>,
}

/// Runs the steps on `bucket`, deleting the key afterwards.
pub async fn conditional_read(bucket: &Bucket) -> anyhow::Result<ReadReport> {
    let key = format!(
        "marble-acceptance/cond-read-{}-{}/snapshot.json",
        std::process::id(),
        marbled::clock::now_ms()
    );
    let result = steps(bucket, &key).await;
    // A key left behind is named in the error.
    bucket
        .delete(&key)
        .await
        .with_context(|| format!("could not delete {key}"))?;
    result
}

async fn steps(b: &Bucket, key: &str) -> anyhow::Result<ReadReport> {
    let put = |body: &'static [u8]| async move {
        b.put_small(key, Bytes::from_static(body), "application/json")
            .await
            .with_context(|| format!("put {key}"))
    };
    let get = |etag: Option<String>| async move {
        Read::from(b.get_small_if_changed(key, etag.as_deref()).await)
    };
    let mut report = ReadReport::default();
    put(FIRST).await?;
    let plain = get(None).await;
    report.plain = Some(plain.clone());
    let Read::Body {
        etag: Some(first), ..
    } = plain
    else {
        return Ok(report);
    };
    report.unchanged = Some(get(Some(first.clone())).await);
    put(SECOND).await?;
    let changed = get(Some(first.clone())).await;
    report.changed = Some(changed.clone());
    if let Read::Body {
        etag: Some(second), ..
    } = changed
        && second != first
    {
        report.unchanged_again = Some(get(Some(second)).await);
    }
    Ok(report)
}

/// Pass only when the server answers as the follower's read needs; a fail names the step
/// and what it means for the fleet.
pub fn verdict(r: &ReadReport) -> Verdict {
    let seen = |x: &Option<Read>| x.as_ref().map_or("not reached".to_owned(), Read::describe);
    let first_etag = match &r.plain {
        Some(Read::Body {
            data,
            etag: Some(e),
        }) if &data[..] == FIRST => e.clone(),
        other => {
            return Verdict::Fail(format!(
                "a plain GET of the object just written must be 200 with its content and an ETag (the follower keys its next read on it); got {}",
                seen(other)
            ));
        }
    };
    match &r.unchanged {
        Some(Read::NotModified) => {}
        Some(Read::Body { .. }) => {
            return Verdict::Fail(format!(
                "the server ignores If-None-Match on GET: an unchanged object with ETag {first_etag} came back as {} instead of 304 Not Modified; every follower would download the demand snapshot on every poll",
                seen(&r.unchanged)
            ));
        }
        Some(Read::PreconditionFailed) => {
            return Verdict::Fail(format!(
                "GET with If-None-Match and the current ETag {first_etag} was answered 412 Precondition Failed, not 304 Not Modified (RFC 9110 §13.1.2: 412 is for other methods); the daemon reads it as an error, so a follower would lose the demand snapshot after its first read"
            ));
        }
        other => {
            return Verdict::Fail(format!(
                "GET with If-None-Match and the current ETag must be 304 Not Modified; got {}",
                seen(other)
            ));
        }
    }
    let second_etag = match &r.changed {
        Some(Read::Body {
            data,
            etag: Some(e),
        }) if &data[..] == SECOND && *e != first_etag => e.clone(),
        Some(Read::NotModified) => {
            return Verdict::Fail(format!(
                "after the object changed, GET with its old ETag {first_etag} was answered 304 Not Modified; followers would keep a stale demand snapshot"
            ));
        }
        other => {
            return Verdict::Fail(format!(
                "after the object changed, GET with its old ETag must be 200 with the new content and a new ETag; got {}",
                seen(other)
            ));
        }
    };
    match &r.unchanged_again {
        Some(Read::NotModified) => Verdict::Pass(format!(
            "If-None-Match honoured on GET: 304 while unchanged (ETag {first_etag}), 200 with the new body and ETag {second_etag} after a change, then 304 on the new ETag"
        )),
        other => Verdict::Fail(format!(
            "GET with If-None-Match and the new ETag {second_etag} must be 304 Not Modified; got {}",
            seen(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(data: &'static [u8], etag: &str) -> Option<Read> {
        Some(Read::Body {
            data: Bytes::from_static(data),
            etag: Some(etag.to_owned()),
        })
    }

    fn good() -> ReadReport {
        ReadReport {
            plain: body(FIRST, "e1"),
            unchanged: Some(Read::NotModified),
            changed: body(SECOND, "e2"),
            unchanged_again: Some(Read::NotModified),
        }
    }

    fn fail_text(r: &ReadReport) -> String {
        match verdict(r) {
            Verdict::Fail(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_server_that_honours_if_none_match_passes() {
        assert!(matches!(verdict(&good()), Verdict::Pass(t) if t.contains("304 while unchanged")));
    }

    #[test]
    fn a_server_that_ignores_if_none_match_fails_by_name() {
        let r = ReadReport {
            unchanged: body(FIRST, "e1"),
            unchanged_again: body(SECOND, "e2"),
            ..good()
        };
        let t = fail_text(&r);
        assert!(t.contains("ignores If-None-Match on GET"), "{t}");
        assert!(t.contains("200 with"), "{t}");
    }

    #[test]
    fn a_412_a_stale_304_and_a_missing_etag_fail_by_name() {
        let t = fail_text(&ReadReport {
            unchanged: Some(Read::PreconditionFailed),
            ..good()
        });
        assert!(t.contains("answered 412"), "{t}");
        let t = fail_text(&ReadReport {
            changed: Some(Read::NotModified),
            unchanged_again: None,
            ..good()
        });
        assert!(t.contains("stale demand snapshot"), "{t}");
        let t = fail_text(&ReadReport {
            plain: Some(Read::Body {
                data: Bytes::from_static(FIRST),
                etag: None,
            }),
            unchanged: None,
            changed: None,
            unchanged_again: None,
        });
        assert!(t.contains("an ETag"), "{t}");
        // The changed object must come with a new ETag and the new content.
        let t = fail_text(&ReadReport {
            changed: body(SECOND, "e1"),
            ..good()
        });
        assert!(t.contains("new content and a new ETag"), "{t}");
        let t = fail_text(&ReadReport {
            unchanged_again: body(SECOND, "e2"),
            ..good()
        });
        assert!(t.contains("new ETag e2 must be 304"), "{t}");
    }
}
