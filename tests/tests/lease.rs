//! The fleet lease (`marbled/src/lease`, issue 18) against the test S3 server: s3s-fs
//! honours `If-None-Match: *` and `If-Match` on PutObject one request at a time; contenders
//! racing for many terms get at most one holder per term and no overlapping validity
//! windows, and a holder that stops renewing is replaced after its expiry. s3s-fs 0.14.1
//! checks the condition and then writes without a lock, so the race runs behind
//! [`SerialProxy`] (one request at a time: atomic check-and-write, as on Ceph RGW); the same
//! race straight against s3s-fs shows why (`s3s_fs_alone_lets_two_contenders_win_one_term`).
//!
//! The contenders pace themselves with the lease's own timers (`renew_at`, `retry_at`):
//! those sleeps are the protocol under test, not waits for a condition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use marble_tests::s3::LocalS3;
use marble_tests::serial_proxy::SerialProxy;
use marbled::clock::now_ms;
use marbled::images::{Bucket, PutIf, PutOutcome};
use marbled::lease::bucket::{LeaseStore, Standing};
use marbled::lease::{Seen, Timing, WriteKind};

/// Short enough for many terms in seconds; the margin covers loopback latency.
const TIMING: Timing = Timing {
    duration_ms: 400,
    margin_ms: 50,
};
const KEY: &str = "fleet/lease/demand.json";
const CONTENDERS: usize = 5;
const GOAL_TERMS: u64 = 25;

/// One term as the contenders saw it.
#[derive(Debug, Default, Clone)]
struct Term {
    holders: BTreeSet<String>,
    /// When the first write of the term came back.
    start_ms: u64,
    /// The latest `valid_until` of any successful write in the term.
    end_ms: u64,
}

#[derive(Debug, Default)]
struct Log {
    terms: BTreeMap<u64, Term>,
    lost: u64,
    takeovers: u64,
}

impl Log {
    fn record(&mut self, term: u64, who: &str, start_ms: u64, valid_until_ms: u64) {
        let t = self.terms.entry(term).or_insert_with(|| Term {
            start_ms,
            ..Term::default()
        });
        t.holders.insert(who.to_string());
        t.start_ms = t.start_ms.min(start_ms);
        t.end_ms = t.end_ms.max(valid_until_ms);
    }

    fn top_term(&self) -> u64 {
        self.terms.keys().next_back().copied().unwrap_or(0)
    }
}

async fn sleep_until_ms(t: u64) {
    let now = now_ms();
    if t > now {
        tokio::time::sleep(Duration::from_millis(t - now)).await;
    }
}

/// One host: takes the lease when it can, renews it a few times (0–2, varying by term and
/// host), then "crashes" (stops renewing) and comes back only after its lease has lapsed.
async fn contender(index: usize, store: LeaseStore, log: Arc<Mutex<Log>>, deadline_ms: u64) {
    let name = format!("host{index}");
    let mut renewals_left: Option<u64> = None;
    while now_ms() < deadline_ms && log.lock().expect("log").top_term() < GOAL_TERMS {
        let now = now_ms();
        let standing = match store.step(now).await {
            Ok(s) => s,
            Err(e) => panic!("{name}: {e}"),
        };
        match standing {
            Standing::Leader {
                term,
                valid_until_ms,
                renew_at_ms,
                kind,
            } => {
                let back = now_ms();
                {
                    let mut l = log.lock().expect("log");
                    l.record(term, &name, back, valid_until_ms);
                    if kind == WriteKind::TakeOver {
                        l.takeovers += 1;
                    }
                }
                let left = renewals_left.get_or_insert((term + index as u64) % 3);
                if *left == 0 {
                    // Crash: no more renewals; rejoin once the others had time to take over.
                    renewals_left = None;
                    sleep_until_ms(valid_until_ms + TIMING.duration_ms).await;
                } else {
                    *left -= 1;
                    sleep_until_ms(renew_at_ms).await;
                }
            }
            Standing::Follower { retry_at_ms, .. } => {
                renewals_left = None;
                sleep_until_ms(retry_at_ms).await;
            }
            Standing::Lost => {
                renewals_left = None;
                log.lock().expect("log").lost += 1;
            }
        }
    }
}

/// Races [`CONTENDERS`] hosts for [`GOAL_TERMS`] terms through `endpoint`.
async fn race(s3: &LocalS3, endpoint: &str) -> Log {
    let bucket = Bucket::connect(&s3.config_for(endpoint))
        .await
        .expect("bucket");
    let log = Arc::new(Mutex::new(Log::default()));
    let deadline = now_ms() + 60_000;
    let tasks: Vec<_> = (0..CONTENDERS)
        .map(|i| {
            let store =
                LeaseStore::new(bucket.clone(), KEY, &format!("host{i}"), TIMING).expect("store");
            tokio::spawn(contender(i, store, log.clone(), deadline))
        })
        .collect();
    for t in tasks {
        t.await.expect("contender");
    }
    std::mem::take(&mut *log.lock().expect("log"))
}

/// The mutual-exclusion properties; `Err` names the first violation.
fn check(log: &Log) -> Result<(), String> {
    for (term, t) in &log.terms {
        if t.holders.len() > 1 {
            return Err(format!(
                "term {term} had {} holders: {:?}",
                t.holders.len(),
                t.holders
            ));
        }
    }
    let terms: Vec<(&u64, &Term)> = log.terms.iter().collect();
    for pair in terms.windows(2) {
        let ((ta, a), (tb, b)) = (pair[0], pair[1]);
        if a.end_ms > b.start_ms {
            return Err(format!(
                "term {ta} (valid until {}) overlaps term {tb} (from {}): {:?} / {:?}",
                a.end_ms, b.start_ms, a.holders, b.holders
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contenders_racing_for_many_terms_never_share_one_or_overlap() {
    let Some(s3) = LocalS3::start() else { return };
    let proxy = SerialProxy::start(s3.addr);
    let log = race(&s3, &proxy.endpoint).await;
    eprintln!(
        "terms {}, take-overs {}, lost races {}, requests {}",
        log.terms.len(),
        log.takeovers,
        log.lost,
        proxy.forwarded()
    );
    assert!(
        log.top_term() >= GOAL_TERMS,
        "the lease kept changing hands: {log:?}"
    );
    assert!(log.lost > 0, "the contenders did race (some lost a write)");
    assert!(log.takeovers > 0, "hosts took over expired leases");
    if let Err(e) = check(&log) {
        panic!("{e}\n{log:#?}");
    }
    // A crashed holder is replaced soon after its lease expires: from its last valid moment
    // to the next term's first, the two margins plus request time (100–220 ms measured on
    // loopback; the bound leaves room for a loaded machine).
    let terms: Vec<&Term> = log.terms.values().collect();
    let worst_gap = terms
        .windows(2)
        .map(|p| p[1].start_ms.saturating_sub(p[0].end_ms))
        .max()
        .unwrap_or(0);
    eprintln!("worst handover gap {worst_gap} ms");
    assert!(
        worst_gap <= 2 * TIMING.duration_ms,
        "worst handover gap {worst_gap} ms"
    );
}

/// Without the proxy, contenders that wake at the same expiry all pass s3s-fs's check
/// before any of them writes: the property fails (observed: two holders of one term). Kept
/// as the evidence for why the race runs behind [`SerialProxy`]; it is a race, so it is run
/// on demand (`--ignored`), not in the suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "shows s3s-fs 0.14.1's check-then-write race; nondeterministic by nature"]
async fn s3s_fs_alone_lets_two_contenders_win_one_term() {
    let Some(s3) = LocalS3::start() else { return };
    let log = race(&s3, &s3.endpoint.clone()).await;
    let verdict = check(&log);
    eprintln!("straight to s3s-fs: {verdict:?}");
    assert!(verdict.is_err(), "no violation this time: {log:?}");
}

/// What the lease relies on, one request at a time, straight against s3s-fs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3s_fs_honours_if_none_match_and_if_match_on_put() {
    let Some(s3) = LocalS3::start() else { return };
    let b = Bucket::connect(&s3.config()).await.expect("bucket");
    let key = "cond/object.json";
    let put = |body: &'static str, cond: PutIf<'static>| {
        let b = b.clone();
        async move {
            b.put_small_if(key, Bytes::from(body), "application/json", cond)
                .await
                .expect("put")
        }
    };
    let PutOutcome::Written { etag: Some(first) } = put("1", PutIf::Absent).await else {
        panic!("create if absent")
    };
    assert_eq!(put("2", PutIf::Absent).await, PutOutcome::ConditionFailed);
    assert_eq!(
        put("3", PutIf::Matches("0123456789abcdef0123456789abcdef")).await,
        PutOutcome::ConditionFailed
    );
    let first: &'static str = Box::leak(first.into_boxed_str());
    let PutOutcome::Written { etag: Some(second) } = put("4", PutIf::Matches(first)).await else {
        panic!("replace on the matching etag")
    };
    assert_ne!(second, first);
    assert_eq!(
        put("5", PutIf::Matches(first)).await,
        PutOutcome::ConditionFailed,
        "a stale etag cannot win twice"
    );
    let (body, etag) = b.get_small_tagged(key).await.expect("get").expect("exists");
    assert_eq!(
        (&body[..], etag.as_deref()),
        (&b"4"[..], Some(second.as_str()))
    );
}

/// A holder that resigns (graceful stop) is replaced after the margin, not a whole lease;
/// one that just stops is replaced after expiry + margin, and not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_holder_is_replaced_after_expiry_and_a_resigned_one_at_once() {
    let Some(s3) = LocalS3::start() else { return };
    let b = Bucket::connect(&s3.config()).await.expect("bucket");
    let timing = Timing {
        duration_ms: 60_000,
        margin_ms: 1_000,
    };
    let a = LeaseStore::new(b.clone(), KEY, "a", timing).expect("a");
    let other = LeaseStore::new(b.clone(), KEY, "b", timing).expect("b");
    let t0 = now_ms();
    let Standing::Leader {
        term: 1,
        valid_until_ms,
        ..
    } = a.step(t0).await.expect("a")
    else {
        panic!("a creates term 1")
    };
    assert_eq!(valid_until_ms, t0 + 59_000);
    // The clock is passed in, so "later" needs no waiting.
    let expires = t0 + 60_000;
    assert!(matches!(
        other.step(expires).await.expect("b"),
        Standing::Follower { retry_at_ms, .. } if retry_at_ms == expires + 1_000
    ));
    let Standing::Leader { term: 2, kind, .. } = other.step(expires + 1_000).await.expect("b")
    else {
        panic!("b takes over after expiry + margin")
    };
    assert_eq!(kind, WriteKind::TakeOver);
    // a comes back, sees b's lease, and follows; b resigns; a takes over one margin later.
    assert!(matches!(
        a.step(expires + 2_000).await.expect("a"),
        Standing::Follower { ref holder, term: 2, .. } if holder == "b"
    ));
    assert!(other.resign().await.expect("resign"));
    assert!(
        !a.resign().await.expect("a holds nothing"),
        "only the holder resigns"
    );
    let Seen::Present { lease, .. } = a.read().await.expect("read") else {
        panic!("still there")
    };
    assert_eq!((lease.holder.as_str(), lease.expires_ms), ("b", 0));
    let now = now_ms();
    assert!(matches!(
        a.step(now).await.expect("a"),
        Standing::Leader {
            term: 3,
            kind: WriteKind::TakeOver,
            ..
        }
    ));
}

/// The acceptance suite's `api.s3-conditional-writes` (what it demands of CERN's RGW), here
/// against s3s-fs behind the one-request-at-a-time proxy: exactly one winner in every round
/// of concurrent creates and of concurrent replaces on one ETag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acceptance_check_of_conditional_writes_passes_on_an_atomic_server() {
    let Some(s3) = LocalS3::start() else { return };
    let proxy = SerialProxy::start(s3.addr);
    let b = Bucket::connect(&s3.config_for(&proxy.endpoint))
        .await
        .expect("bucket");
    let report = marble_tests::acceptance::lease::conditional_writes(&b)
        .await
        .expect("check");
    assert!(report.exclusive(), "{report:?}");
    assert!(
        b.list("marble-acceptance/").await.expect("list").is_empty(),
        "the check cleans up"
    );
}

/// The same check straight against s3s-fs 0.14.1: concurrent conditional writes get more
/// than one winner (its check and write are not atomic). A race, so on demand only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "shows s3s-fs 0.14.1's check-then-write race; nondeterministic by nature"]
async fn the_acceptance_check_fails_straight_against_s3s_fs() {
    let Some(s3) = LocalS3::start() else { return };
    let b = Bucket::connect(&s3.config()).await.expect("bucket");
    let report = marble_tests::acceptance::lease::conditional_writes(&b)
        .await
        .expect("check");
    eprintln!("straight to s3s-fs: {report:?}");
    assert!(!report.exclusive(), "no race seen this time: {report:?}");
}

/// What a follower's read of the published demand snapshot relies on (`[demand] shared`):
/// a GET with `If-None-Match` and the ETag it last read is answered "not modified" without
/// the body while the object is unchanged, and with the new body and ETag once it changed.
/// s3s-fs sends the body regardless; [`SerialProxy`] answers 304 as S3 and RGW do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_with_the_last_etag_is_not_modified_until_the_object_changes() {
    use marbled::images::Fetched;
    let Some(s3) = LocalS3::start() else { return };
    let proxy = SerialProxy::start(s3.addr);
    let b = Bucket::connect(&s3.config_for(&proxy.endpoint))
        .await
        .expect("bucket");
    let key = "fleet/demand/root-project_root.json";
    assert_eq!(
        b.get_small_if_changed(key, None).await.expect("get"),
        Fetched::Absent
    );
    b.put_small(key, Bytes::from_static(b"{\"term\":1}"), "application/json")
        .await
        .expect("put");
    let Fetched::Body { data, etag } = b.get_small_if_changed(key, None).await.expect("get") else {
        panic!("no body")
    };
    assert_eq!(&data[..], b"{\"term\":1}");
    let etag = etag.expect("an ETag");
    assert_eq!(
        b.get_small_if_changed(key, Some(&etag)).await.expect("get"),
        Fetched::NotModified
    );
    assert_eq!(proxy.not_modified(), 1);
    b.put_small(key, Bytes::from_static(b"{\"term\":2}"), "application/json")
        .await
        .expect("put");
    match b.get_small_if_changed(key, Some(&etag)).await.expect("get") {
        Fetched::Body { data, etag: new } => {
            assert_eq!(&data[..], b"{\"term\":2}");
            assert_ne!(new.as_deref(), Some(etag.as_str()));
        }
        other => panic!("{other:?}"),
    }
}

/// The acceptance suite's `api.s3-conditional-read` (the follower's read of the published
/// demand snapshot) against a server that answers `If-None-Match` on GET as S3 and RGW do
/// (s3s-fs behind the proxy): it passes and removes its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acceptance_check_of_the_conditional_read_passes_where_get_honours_if_none_match() {
    use marble_tests::acceptance::cond_read::{conditional_read, verdict};
    use marble_tests::acceptance::record::Verdict;
    let Some(s3) = LocalS3::start() else { return };
    let proxy = SerialProxy::start(s3.addr);
    let b = Bucket::connect(&s3.config_for(&proxy.endpoint))
        .await
        .expect("bucket");
    let report = conditional_read(&b).await.expect("check");
    assert!(
        matches!(verdict(&report), Verdict::Pass(_)),
        "{report:?}: {:?}",
        verdict(&report)
    );
    assert_eq!(proxy.not_modified(), 2, "two GETs answered 304");
    assert!(
        b.list("marble-acceptance/").await.expect("list").is_empty(),
        "the check cleans up"
    );
}

/// The same check straight against s3s-fs 0.14.1, a real server that ignores
/// `If-None-Match` on GET (it sends the whole object every time): the check fails and says
/// so, and still removes its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acceptance_check_of_the_conditional_read_fails_on_a_server_that_ignores_if_none_match()
{
    use marble_tests::acceptance::cond_read::{conditional_read, verdict};
    use marble_tests::acceptance::record::Verdict;
    let Some(s3) = LocalS3::start() else { return };
    let b = Bucket::connect(&s3.config()).await.expect("bucket");
    let report = conditional_read(&b).await.expect("check");
    match verdict(&report) {
        Verdict::Fail(text) => {
            eprintln!("straight to s3s-fs: {text}");
            assert!(
                text.contains("the server ignores If-None-Match on GET"),
                "{text}"
            );
        }
        other => panic!("{other:?} for {report:?}"),
    }
    assert!(
        b.list("marble-acceptance/").await.expect("list").is_empty(),
        "the check cleans up after a fail too"
    );
}
