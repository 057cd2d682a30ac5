//! Check `api.s3-conditional-writes` (issue 18): what the fleet lease (`marbled/src/lease`)
//! needs from the bucket's server, against the real one (`--s3-config`: Ceph RGW at CERN)
//! or, in simulator mode, the local s3s-fs behind a [`crate::serial_proxy::SerialProxy`]
//! (s3s-fs checks and writes without a lock; see docs/SCHEDULER.md, "Demand at fleet
//! scale"):
//!
//! - one at a time: `If-None-Match: *` creates once, then 412; `If-Match` with a wrong ETag
//!   is 412, with the current one it replaces, and the replaced ETag cannot win again;
//! - at once: [`RACERS`] concurrent creates of one fresh key, and [`RACERS`] concurrent
//!   replaces on one ETag, [`ROUNDS`] times each: exactly one winner every round.
//!
//! Every key lives under `marble-acceptance/lease-<pid>-<ms>/` and is deleted afterwards.

use anyhow::Context as _;
use bytes::Bytes;
use marbled::images::{Bucket, PutIf, PutOutcome};

/// Concurrent writers per round.
pub const RACERS: usize = 8;
/// Rounds per kind of race.
pub const ROUNDS: usize = 10;

/// What the check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConditionalReport {
    /// The one-at-a-time semantics held.
    pub sequential_ok: bool,
    /// Winners of each create round.
    pub create_winners: Vec<usize>,
    /// Winners of each replace round.
    pub replace_winners: Vec<usize>,
}

impl ConditionalReport {
    /// Every round had exactly one winner and the sequential checks held.
    pub fn exclusive(&self) -> bool {
        self.sequential_ok
            && self
                .create_winners
                .iter()
                .chain(&self.replace_winners)
                .all(|&w| w == 1)
    }
}

async fn put(b: &Bucket, key: &str, body: String, cond: PutIf<'_>) -> anyhow::Result<PutOutcome> {
    b.put_small_if(key, Bytes::from(body), "application/json", cond)
        .await
        .with_context(|| format!("conditional put {key}"))
}

fn etag_of(out: &PutOutcome, key: &str) -> anyhow::Result<String> {
    match out {
        PutOutcome::Written { etag: Some(e) } => Ok(e.clone()),
        PutOutcome::Written { etag: None } => anyhow::bail!("{key}: the server sent no ETag"),
        PutOutcome::ConditionFailed => anyhow::bail!("{key}: the condition failed"),
    }
}

async fn sequential(b: &Bucket, key: &str) -> anyhow::Result<bool> {
    let first = put(b, key, "1".into(), PutIf::Absent).await?;
    let e1 = etag_of(&first, key)?;
    let again = put(b, key, "2".into(), PutIf::Absent).await?;
    let wrong = put(
        b,
        key,
        "3".into(),
        PutIf::Matches("0123456789abcdef0123456789abcdef"),
    )
    .await?;
    let right = put(b, key, "4".into(), PutIf::Matches(&e1)).await?;
    let stale = put(b, key, "5".into(), PutIf::Matches(&e1)).await?;
    Ok(again == PutOutcome::ConditionFailed
        && wrong == PutOutcome::ConditionFailed
        && matches!(right, PutOutcome::Written { .. })
        && stale == PutOutcome::ConditionFailed)
}

/// [`RACERS`] writers at once with `cond`; how many wrote.
async fn round(b: &Bucket, key: &str, cond: Option<&str>) -> anyhow::Result<usize> {
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (b, key, cond) = (b.clone(), key.to_string(), cond.map(str::to_string));
            tokio::spawn(async move {
                let c = match &cond {
                    Some(e) => PutIf::Matches(e),
                    None => PutIf::Absent,
                };
                put(&b, &key, format!("racer {i}"), c).await
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        if matches!(t.await.context("racer")??, PutOutcome::Written { .. }) {
            winners += 1;
        }
    }
    Ok(winners)
}

/// Runs the check on `bucket`, deleting its keys afterwards.
pub async fn conditional_writes(bucket: &Bucket) -> anyhow::Result<ConditionalReport> {
    let dir = format!(
        "marble-acceptance/lease-{}-{}/",
        std::process::id(),
        marbled::clock::now_ms()
    );
    let mut keys = Vec::new();
    let result = async {
        let mut report = ConditionalReport::default();
        let key = format!("{dir}sequential.json");
        keys.push(key.clone());
        report.sequential_ok = sequential(bucket, &key).await?;
        for r in 0..ROUNDS {
            let key = format!("{dir}create-{r}.json");
            keys.push(key.clone());
            report.create_winners.push(round(bucket, &key, None).await?);
            let seed = format!("{dir}replace-{r}.json");
            keys.push(seed.clone());
            let e = etag_of(
                &put(bucket, &seed, format!("seed {r}"), PutIf::Absent).await?,
                &seed,
            )?;
            report
                .replace_winners
                .push(round(bucket, &seed, Some(&e)).await?);
        }
        anyhow::Ok(report)
    }
    .await;
    for k in &keys {
        // Best effort: a key left behind is named in the error below.
        if let Err(e) = bucket.delete(k).await {
            return Err(anyhow::anyhow!("could not delete {k}: {e}"));
        }
    }
    result
}
