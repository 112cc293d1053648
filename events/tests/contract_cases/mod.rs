//! The contract every `EventStore` adapter fulfils: generic async cases over
//! `Arc<dyn EventStore>` and the helpers they share.
//!
//! Included by each adapter's contract test (`#[macro_use] mod ...;`, with a
//! `#[path]` from another crate): `tests/contract.rs` instantiates every case
//! per in-process adapter with [`contract_tests!`], and
//! `kurrentdb/tests/contract.rs` runs them one after the other against an
//! EventStoreDB server with [`for_each_case!`]. Cases create their own streams
//! with unique names, so a shared server can run them.
#![allow(dead_code, unused_macros)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ibl_events::{
    read_stream_all, Actor, AppendResult, EventData, EventStore, ExpectedRevision, IdempotencyTag,
    Metadata, RecordedEvent, StoreError, Subscription,
};
use serde_json::json;
use uuid::Uuid;

/// What a case may assume of the store's global log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    /// A fresh store of the case's own, whose positions are dense: 1, 2, 3,
    /// ... (the in-memory and SQLite adapters).
    Dense,
    /// Positions only increase, with gaps, and the log may already hold
    /// events of other cases or earlier runs (a shared EventStoreDB server,
    /// whose positions are byte offsets in its transaction log).
    Sparse,
}

pub fn event(n: u64) -> EventData {
    EventData {
        recorded_at: None,
        event_id: Uuid::new_v4(),
        event_type: "Tested".into(),
        schema_version: 1,
        payload: json!({ "type": "Tested", "n": n }),
        metadata: Metadata::default(),
    }
}

pub fn events(range: std::ops::Range<u64>) -> Vec<EventData> {
    range.map(event).collect()
}

pub fn stream_name(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4())
}

/// Reads the whole global log.
pub async fn read_everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.position);
        let batch = store.read_all(after, 500).await.expect("read_all");
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

pub fn assert_conflict(
    result: Result<AppendResult, StoreError>,
    stream: &str,
    expected: ExpectedRevision,
    actual: Option<u64>,
) {
    match result {
        Err(StoreError::Conflict {
            stream: s,
            expected: e,
            actual: a,
        }) => {
            assert_eq!(s, stream);
            assert_eq!(e, expected);
            assert_eq!(a, actual, "actual revision carried by the conflict");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// Each case of the contract, generic over the adapter.
pub mod cases {
    use super::*;

    pub async fn append_and_read_back(store: Arc<dyn EventStore>, log: Log) {
        let stream = stream_name("credential");
        let metadata = Metadata {
            actor: Actor {
                platform: Some("acme".into()),
                user: Some("alice".into()),
                key_name: Some("ci-key".into()),
                on_behalf_of: Some("bob".into()),
            },
            correlation_id: "req-42".into(),
            client_request_id: Some("client-9".into()),
            causation_id: Some("cmd-7".into()),
            idempotency: Some(IdempotencyTag {
                key: "idem-1".into(),
                request_hash: "abc123".into(),
            }),
        };
        let written: Vec<EventData> = (0..3)
            .map(|n| EventData {
                recorded_at: None,
                event_id: Uuid::new_v4(),
                event_type: format!("Type{n}"),
                schema_version: 2 + n,
                payload: json!({
                    "type": format!("Type{n}"),
                    "nested": { "list": [1, 2.5, "three", null, true], "unicode": "é✓" },
                }),
                metadata: if n == 1 {
                    Metadata::default()
                } else {
                    metadata.clone()
                },
            })
            .collect();

        // Where the global log ended before the append.
        let head_before = *store.head().borrow();
        let before = Utc::now() - chrono::Duration::seconds(1);
        let result = store
            .append(&stream, ExpectedRevision::NoStream, written.clone())
            .await
            .expect("append");
        let after = Utc::now() + chrono::Duration::seconds(1);
        assert_eq!(result.revision, 2);
        assert!(!result.duplicate);
        assert_eq!(*store.head().borrow(), result.position);

        let read = read_stream_all(store.as_ref(), &stream)
            .await
            .expect("read");
        assert_eq!(read.len(), 3);
        for (i, (recorded, data)) in read.iter().zip(&written).enumerate() {
            assert_eq!(recorded.event_id, data.event_id);
            assert_eq!(recorded.stream, stream);
            assert_eq!(recorded.revision, i as u64);
            if log == Log::Dense {
                assert_eq!(recorded.position, result.position - 2 + i as u64);
            }
            assert_eq!(recorded.event_type, data.event_type);
            assert_eq!(recorded.schema_version, data.schema_version);
            assert_eq!(*recorded.payload, data.payload);
            assert_eq!(recorded.metadata, data.metadata);
            assert!(recorded.recorded_at > before && recorded.recorded_at < after);
        }
        // Positions grow within the append, up to the one it answered.
        assert!(read.windows(2).all(|w| w[0].position < w[1].position));
        assert!(read[0].position > head_before);
        assert_eq!(read[2].position, result.position);

        // Reading from a revision, with a maximum.
        let page = store.read_stream(&stream, 1, 1).await.expect("read");
        assert_eq!(page, vec![read[1].clone()]);
        assert!(store.read_stream(&stream, 3, 10).await.unwrap().is_empty());
        assert!(store.read_stream(&stream, 0, 0).await.unwrap().is_empty());
        assert!(store
            .read_stream("no-such-stream", 0, 10)
            .await
            .unwrap()
            .is_empty());

        // The global log holds the same events.
        let after_position = match log {
            Log::Dense => result.position - 3,
            Log::Sparse => head_before,
        };
        let all = store.read_all(after_position, 10).await.expect("read_all");
        assert_eq!(all, read);
    }

    /// An event appended with the time it was first recorded (an import)
    /// keeps it, to the microsecond, in the stream and in the global log;
    /// one without is stamped now.
    pub async fn imported_times_are_kept(store: Arc<dyn EventStore>, _log: Log) {
        let stream = stream_name("imported");
        let first = chrono::DateTime::parse_from_rfc3339("2021-03-04T05:06:07.123456789Z")
            .expect("a time")
            .with_timezone(&Utc);
        let mut old = event(1);
        old.recorded_at = Some(first);
        let before = Utc::now() - chrono::Duration::seconds(1);
        let result = store
            .append(&stream, ExpectedRevision::NoStream, vec![old, event(2)])
            .await
            .expect("append");
        let read = read_stream_all(store.as_ref(), &stream)
            .await
            .expect("read");
        let kept = chrono::DateTime::parse_from_rfc3339("2021-03-04T05:06:07.123456Z")
            .expect("a time")
            .with_timezone(&Utc);
        assert_eq!(read[0].recorded_at, kept);
        assert!(read[1].recorded_at > before);
        let all = store
            .read_all(result.position - 1, 1)
            .await
            .expect("read_all");
        let in_log = store
            .read_all(read[0].position - 1, 1)
            .await
            .expect("read_all");
        assert_eq!(all, vec![read[1].clone()]);
        assert_eq!(in_log, vec![read[0].clone()]);
    }

    /// What a subscription reads (`read_tail`, which an adapter may answer
    /// from memory) is what `read_all` reads from the store, event for
    /// event: payloads with floats, large and negative numbers, escapes and
    /// nesting, full metadata, imported times, and around them a refused
    /// append and an idempotent retry, which write nothing.
    pub async fn the_tail_reads_as_the_store(store: Arc<dyn EventStore>, _log: Log) {
        let start = *store.head().borrow();
        let stream = stream_name("tail");
        let mut odd = event(0);
        odd.payload = json!({
            "floats": [0.1, 1e9 / 3.0, 2.0_f64.sqrt(), 1e300, -2.5e-308, 12.0],
            "ints": [u64::MAX, i64::MIN, 0, -1],
            "text": "caf\u{e9} \u{1F600} \"quoted\" \\ \n\t\u{1}",
            "nested": {"b": [{"z": null, "a": true}], "a": {}},
        });
        odd.metadata = Metadata {
            actor: Actor {
                platform: Some("acme".into()),
                user: Some("admin".into()),
                key_name: Some("k".into()),
                on_behalf_of: Some("learner".into()),
            },
            correlation_id: "req-1".into(),
            client_request_id: Some("client-1".into()),
            causation_id: Some("cause".into()),
            idempotency: Some(IdempotencyTag {
                key: "idem".into(),
                request_hash: "hash".into(),
            }),
        };
        let mut imported = event(1);
        imported.recorded_at = Some(
            chrono::DateTime::parse_from_rfc3339("2020-01-02T03:04:05.678901Z")
                .expect("a time")
                .with_timezone(&Utc),
        );
        let first = vec![odd, imported, event(2)];
        store
            .append(&stream, ExpectedRevision::NoStream, first.clone())
            .await
            .expect("append");
        // Refused, then a retry of the first append: neither writes.
        store
            .append(&stream, ExpectedRevision::NoStream, events(3..4))
            .await
            .expect_err("a conflict");
        let retry = store
            .append(&stream, ExpectedRevision::NoStream, first)
            .await
            .expect("a retry");
        assert!(retry.duplicate);
        for n in 3..8 {
            store
                .append(
                    &stream_name("tail"),
                    ExpectedRevision::NoStream,
                    events(n..n + 2),
                )
                .await
                .expect("append");
        }
        let everything = store.read_all(start, 1_000).await.expect("read_all");
        assert_eq!(everything.len(), 13);
        let afters = std::iter::once(start).chain(everything.iter().map(|e| e.position));
        for after in afters {
            for max in [1, 3, 1_000] {
                let tail = store.read_tail(after, max).await.expect("read_tail");
                let stored = store.read_all(after, max).await.expect("read_all");
                assert_eq!(tail, stored, "after {after}, at most {max}");
            }
        }
    }

    pub async fn expected_revision(store: Arc<dyn EventStore>, _log: Log) {
        let stream = stream_name("issuer");

        // Exact on a stream that does not exist.
        let r = store
            .append(&stream, ExpectedRevision::Exact(0), vec![event(0)])
            .await;
        assert_conflict(r, &stream, ExpectedRevision::Exact(0), None);

        let first = store
            .append(&stream, ExpectedRevision::NoStream, vec![event(0)])
            .await
            .expect("NoStream on a new stream");
        assert_eq!(first.revision, 0);

        let r = store
            .append(&stream, ExpectedRevision::NoStream, vec![event(1)])
            .await;
        assert_conflict(r, &stream, ExpectedRevision::NoStream, Some(0));
        let r = store
            .append(&stream, ExpectedRevision::NoStream, events(1..4))
            .await;
        assert_conflict(r, &stream, ExpectedRevision::NoStream, Some(0));

        let second = store
            .append(&stream, ExpectedRevision::Exact(0), events(1..3))
            .await
            .expect("Exact(0)");
        assert_eq!(second.revision, 2);
        assert!(second.position > first.position);

        let r = store
            .append(&stream, ExpectedRevision::Exact(0), vec![event(3)])
            .await;
        assert_conflict(r, &stream, ExpectedRevision::Exact(0), Some(2));
        let r = store
            .append(&stream, ExpectedRevision::Exact(7), vec![event(3)])
            .await;
        assert_conflict(r, &stream, ExpectedRevision::Exact(7), Some(2));

        let any = store
            .append(&stream, ExpectedRevision::Any, vec![event(3)])
            .await
            .expect("Any on an existing stream");
        assert_eq!(any.revision, 3);
        let other = stream_name("issuer");
        let any_new = store
            .append(&other, ExpectedRevision::Any, vec![event(0)])
            .await
            .expect("Any on a new stream");
        assert_eq!(any_new.revision, 0);

        // Rejected appends left nothing behind.
        let read = read_stream_all(store.as_ref(), &stream).await.unwrap();
        assert_eq!(
            read.iter().map(|e| e.revision).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );

        // Invalid requests.
        assert!(matches!(
            store.append(&stream, ExpectedRevision::Any, vec![]).await,
            Err(StoreError::Invalid(_))
        ));
        let twice = event(9);
        assert!(matches!(
            store
                .append(&stream, ExpectedRevision::Any, vec![twice.clone(), twice])
                .await,
            Err(StoreError::Invalid(_))
        ));
    }

    pub async fn idempotent_retry(store: Arc<dyn EventStore>, _log: Log) {
        let stream = stream_name("assertion");
        let batch = events(0..3);
        let original = store
            .append(&stream, ExpectedRevision::NoStream, batch.clone())
            .await
            .expect("append");
        assert!(!original.duplicate);

        // A retry of the same request, whatever its expectation, answers as
        // the original did.
        for expected in [
            ExpectedRevision::NoStream,
            ExpectedRevision::Any,
            ExpectedRevision::Exact(0),
            ExpectedRevision::Exact(2),
        ] {
            let retry = store
                .append(&stream, expected, batch.clone())
                .await
                .expect("retry");
            assert_eq!(
                retry,
                AppendResult {
                    duplicate: true,
                    ..original
                },
                "retry with {expected:?}"
            );
        }
        assert_eq!(
            read_stream_all(store.as_ref(), &stream)
                .await
                .unwrap()
                .len(),
            3
        );

        // A single-event retry after more events were appended.
        let single = event(3);
        let appended = store
            .append(&stream, ExpectedRevision::Exact(2), vec![single.clone()])
            .await
            .unwrap();
        store
            .append(&stream, ExpectedRevision::Exact(3), vec![event(4)])
            .await
            .unwrap();
        let retry = store
            .append(&stream, ExpectedRevision::Exact(2), vec![single])
            .await
            .unwrap();
        assert_eq!(
            retry,
            AppendResult {
                duplicate: true,
                ..appended
            }
        );

        // The same event id in another stream is another event.
        let elsewhere = stream_name("assertion");
        let moved = store
            .append(
                &elsewhere,
                ExpectedRevision::NoStream,
                vec![batch[0].clone()],
            )
            .await
            .unwrap();
        assert!(!moved.duplicate);

        // A later event already stored (but not the first) is refused, and
        // the refused append leaves nothing behind.
        let r = store
            .append(
                &stream,
                ExpectedRevision::Exact(4),
                vec![event(5), batch[1].clone()],
            )
            .await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "got {r:?}");
        let read = read_stream_all(store.as_ref(), &stream).await.unwrap();
        assert_eq!(read.len(), 5);
        assert_eq!(read.last().unwrap().revision, 4);
        // The stream is still writable after the refusal.
        store
            .append(&stream, ExpectedRevision::Exact(4), vec![event(5)])
            .await
            .expect("append after a refused one");
    }

    pub async fn global_ordering(store: Arc<dyn EventStore>, log: Log) {
        let streams: Vec<String> = (0..5).map(|_| stream_name("order")).collect();
        let mut tasks = Vec::new();
        for stream in streams.clone() {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let mut revision = None;
                for n in 0..20u64 {
                    let expected =
                        revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
                    let count = 1 + n % 3;
                    let r = store
                        .append(&stream, expected, events(0..count))
                        .await
                        .expect("append");
                    revision = Some(r.revision);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }

        let everything = read_everything(store.as_ref()).await;
        assert_eq!(*store.head().borrow(), everything.last().unwrap().position);
        let all: Vec<RecordedEvent> = match log {
            Log::Dense => {
                assert!(everything
                    .windows(2)
                    .all(|w| w[1].position == w[0].position + 1));
                assert_eq!(everything.first().map(|e| e.position), Some(1));
                everything
            }
            // Other cases' events are in the log too: only this case's are
            // checked.
            Log::Sparse => {
                assert!(everything.windows(2).all(|w| w[0].position < w[1].position));
                everything
                    .into_iter()
                    .filter(|e| streams.contains(&e.stream))
                    .collect()
            }
        };
        let ids: HashSet<Uuid> = all.iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), all.len());
        // Within each stream, revisions follow positions.
        for stream in &streams {
            let revisions: Vec<u64> = all
                .iter()
                .filter(|e| &e.stream == stream)
                .map(|e| e.revision)
                .collect();
            assert_eq!(revisions, (0..revisions.len() as u64).collect::<Vec<_>>());
            let appended: u64 = (0..20).map(|n| 1 + n % 3).sum();
            assert_eq!(revisions.len() as u64, appended);
        }
    }

    pub async fn read_all_pagination(store: Arc<dyn EventStore>, _log: Log) {
        let start = *store.head().borrow();
        for n in 0..25 {
            store
                .append(
                    &stream_name("page"),
                    ExpectedRevision::NoStream,
                    vec![event(n)],
                )
                .await
                .unwrap();
        }
        let whole = store.read_all(start, 1000).await.unwrap();
        assert_eq!(whole.len(), 25);

        let mut paged = Vec::new();
        let mut after = start;
        loop {
            let page = store.read_all(after, 7).await.unwrap();
            assert!(page.len() <= 7);
            let Some(last) = page.last() else { break };
            after = last.position;
            paged.extend(page);
        }
        assert_eq!(paged, whole);
        assert!(store.read_all(after, 10).await.unwrap().is_empty());
        assert!(store.read_all(start, 0).await.unwrap().is_empty());
        assert!(store.read_all(u64::MAX - 1, 10).await.unwrap().is_empty());
        // After a position in the middle.
        let tail = store.read_all(whole[9].position, 1000).await.unwrap();
        assert_eq!(tail, whole[10..]);
    }

    /// Appends racing for the same new stream: one wins, the others conflict,
    /// and appends to other streams at the same time are not disturbed.
    pub async fn racing_creations(store: Arc<dyn EventStore>, _log: Log) {
        let contested = stream_name("race");
        let mut tasks = Vec::new();
        for n in 0..40u64 {
            let store = Arc::clone(&store);
            let stream = if n % 2 == 0 {
                contested.clone()
            } else {
                stream_name("free")
            };
            tasks.push(tokio::spawn(async move {
                let r = store
                    .append(
                        &stream,
                        ExpectedRevision::NoStream,
                        events(n..n + 1 + n % 3),
                    )
                    .await;
                (stream, r)
            }));
        }
        let mut winners = 0;
        for task in tasks {
            let (stream, r) = task.await.unwrap();
            if stream == contested {
                match r {
                    Ok(_) => winners += 1,
                    Err(StoreError::Conflict { actual, .. }) => assert!(actual.is_some()),
                    Err(e) => panic!("unexpected {e}"),
                }
            } else {
                let r = r.expect("append to a free stream");
                assert!(!r.duplicate);
                let read = read_stream_all(store.as_ref(), &stream).await.unwrap();
                assert_eq!(read.len() as u64, r.revision + 1);
            }
        }
        assert_eq!(winners, 1);
        let read = read_stream_all(store.as_ref(), &contested).await.unwrap();
        assert_eq!(
            read.iter().map(|e| e.revision).collect::<Vec<_>>(),
            (0..read.len() as u64).collect::<Vec<_>>()
        );
    }

    pub async fn concurrent_writers_one_stream(store: Arc<dyn EventStore>, _log: Log) {
        const WRITERS: u64 = 8;
        const PER_WRITER: u64 = 30;
        let stream = stream_name("contended");
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let store = Arc::clone(&store);
            let stream = stream.clone();
            tasks.push(tokio::spawn(async move {
                let mut known: Option<u64> = None;
                let mut mine = Vec::new();
                let mut conflicts = 0u64;
                for n in 0..PER_WRITER {
                    let data = event(writer * 1000 + n);
                    mine.push(data.event_id);
                    loop {
                        let expected =
                            known.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
                        match store.append(&stream, expected, vec![data.clone()]).await {
                            Ok(r) => {
                                assert!(!r.duplicate);
                                known = Some(r.revision);
                                break;
                            }
                            Err(StoreError::Conflict { actual, .. }) => {
                                conflicts += 1;
                                known = actual;
                            }
                            Err(e) => panic!("append failed: {e}"),
                        }
                    }
                }
                (mine, conflicts)
            }));
        }
        let mut expected_ids = Vec::new();
        for task in tasks {
            let (mine, _conflicts) = task.await.unwrap();
            expected_ids.push(mine);
        }

        let read = read_stream_all(store.as_ref(), &stream).await.unwrap();
        assert_eq!(read.len() as u64, WRITERS * PER_WRITER);
        assert_eq!(
            read.iter().map(|e| e.revision).collect::<Vec<_>>(),
            (0..WRITERS * PER_WRITER).collect::<Vec<_>>()
        );
        let stored: HashSet<Uuid> = read.iter().map(|e| e.event_id).collect();
        assert_eq!(stored.len(), read.len(), "no event stored twice");
        // Every writer's events are there, in its order.
        let revision_of: HashMap<Uuid, u64> =
            read.iter().map(|e| (e.event_id, e.revision)).collect();
        for mine in expected_ids {
            let revisions: Vec<u64> = mine.iter().map(|id| revision_of[id]).collect();
            assert!(revisions.windows(2).all(|w| w[0] < w[1]));
        }
    }

    pub async fn subscription_history_then_live(store: Arc<dyn EventStore>, log: Log) {
        let stream = stream_name("sub");
        let head_before = *store.head().borrow();
        let history = store
            .append(&stream, ExpectedRevision::NoStream, events(0..5))
            .await
            .unwrap();
        // Just before the five events.
        let start = match log {
            Log::Dense => history.position - 5,
            Log::Sparse => head_before,
        };

        let mut sub = Subscription::new(Arc::clone(&store), start);
        assert_eq!(sub.position(), start);
        let first = sub.next_batch(3).await.unwrap();
        assert_eq!(
            first.iter().map(|e| e.revision).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let second = sub.next_batch(100).await.unwrap();
        assert_eq!(
            second.iter().map(|e| e.revision).collect::<Vec<_>>(),
            [3, 4]
        );
        assert_eq!(sub.position(), history.position);

        // Nothing new: the subscription waits for the next append.
        let writer = {
            let store = Arc::clone(&store);
            let stream = stream.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                store
                    .append(&stream, ExpectedRevision::Exact(4), events(5..7))
                    .await
                    .unwrap()
            })
        };
        let live = tokio::time::timeout(Duration::from_secs(5), sub.next_batch(100))
            .await
            .expect("live events within 5 s")
            .unwrap();
        let appended = writer.await.unwrap();
        assert_eq!(live.iter().map(|e| e.revision).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(sub.position(), appended.position);

        // A subscription from a later position sees only what follows.
        let from = match log {
            Log::Dense => appended.position - 1,
            Log::Sparse => live[0].position,
        };
        let mut late = Subscription::new(Arc::clone(&store), from);
        let only = late.next_batch(100).await.unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].position, appended.position);
    }
}

/// Calls `$m!(case)` for each case of [`cases`], in order: the one list of
/// the cases, for every way of running them.
macro_rules! for_each_case {
    ($m:ident) => {
        $m!(append_and_read_back);
        $m!(imported_times_are_kept);
        $m!(the_tail_reads_as_the_store);
        $m!(expected_revision);
        $m!(idempotent_retry);
        $m!(global_ordering);
        $m!(read_all_pagination);
        $m!(racing_creations);
        $m!(concurrent_writers_one_stream);
        $m!(subscription_history_then_live);
    };
}

/// One test per case for an adapter whose fixture (an expression of the
/// caller's `Fixture` type, holding `store`) gives a fresh store of dense
/// positions.
macro_rules! contract_tests {
    ($adapter:ident, $fixture:expr) => {
        mod $adapter {
            use super::*;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $name() {
                        let fixture: Fixture = $fixture;
                        cases::$name(Arc::clone(&fixture.store), Log::Dense).await;
                    }
                };
            }

            for_each_case!(case);
        }
    };
}
