//! The event store contract (`events/tests/contract_cases`), run against an
//! EventStoreDB / KurrentDB server when `EVENTSTORE_URL` names one, e.g.
//! `EVENTSTORE_URL='esdb://localhost:2113?tls=false'`.
//!
//! One test runs every case in turn, each with a store of its own (a
//! connection, with its own follower of `$all`), then what only this adapter
//! adds. Cases name their streams uniquely, and check only the part of
//! `$all` their own appends made (`Log::Sparse`): the server may hold the
//! events of earlier runs. Nothing else may append to the server while the
//! test runs (two cases count what follows the head).
//!
//! The SQLite adapter's own tests (reopening its folder, migrating its file,
//! a writer killed mid-append, two instances on one file) do not apply.

#[macro_use]
#[path = "../../tests/contract_cases/mod.rs"]
mod contract_cases;

use std::sync::Arc;
use std::time::Duration;

use contract_cases::{cases, event, stream_name, Log};
use ibl_events::{EventStore, ExpectedRevision, StoreError, Subscription};
use ibl_events_kurrentdb::{KurrentStore, StreamFilter};

const SKIPPED: &str = "kurrentdb contract: skipped, EVENTSTORE_URL is not set \
                       (no EventStoreDB server can be installed on this machine)";

async fn connect(url: &str) -> Arc<dyn EventStore> {
    Arc::new(
        KurrentStore::connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kurrentdb_contract() {
    let Ok(url) = std::env::var("EVENTSTORE_URL") else {
        eprintln!("{SKIPPED}");
        return;
    };

    macro_rules! run {
        ($name:ident) => {
            eprintln!("kurrentdb contract: {}", stringify!($name));
            cases::$name(connect(&url).await, Log::Sparse).await;
        };
    }
    for_each_case!(run);

    eprintln!("kurrentdb contract: another_connection_moves_the_head");
    another_connection_moves_the_head(&url).await;
    eprintln!("kurrentdb contract: a_filter_keeps_its_streams_only");
    a_filter_keeps_its_streams_only(&url).await;
}

/// A second connection stands for another process: its appends reach the
/// first one's head through the subscription to `$all`, and the first one's
/// checks see its events.
async fn another_connection_moves_the_head(url: &str) {
    let first = connect(url).await;
    let second = connect(url).await;
    let stream = stream_name("shared");
    first
        .append(&stream, ExpectedRevision::NoStream, vec![event(0)])
        .await
        .unwrap();
    let mut sub = Subscription::new(Arc::clone(&first), *first.head().borrow());
    for n in 1..6 {
        let appended = second
            .append(&stream, ExpectedRevision::Exact(n - 1), vec![event(n)])
            .await
            .unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(2), sub.next_batch(10))
            .await
            .expect("the other connection's append seen within 2 s")
            .unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].position, appended.position);
        assert_eq!(*first.head().borrow(), appended.position);
    }
    // The revision check sees the other connection's events...
    match first
        .append(&stream, ExpectedRevision::Exact(0), vec![event(9)])
        .await
    {
        Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, Some(5)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // ... and so does the duplicate check.
    let stored = first.read_stream(&stream, 3, 1).await.unwrap();
    let retry = first
        .append(
            &stream,
            ExpectedRevision::Any,
            vec![ibl_events::EventData {
                event_id: stored[0].event_id,
                ..event(3)
            }],
        )
        .await
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.revision, retry.position), (3, stored[0].position));
}

/// A store filtered on prefixes reads only those streams in `$all`, and
/// its head does not move for appends to other streams.
async fn a_filter_keeps_its_streams_only(url: &str) {
    let prefix = format!("kept{}-", uuid::Uuid::new_v4().simple());
    let store: Arc<dyn EventStore> = Arc::new(
        KurrentStore::connect_filtered(url, StreamFilter::prefixes([prefix.clone()]))
            .await
            .unwrap(),
    );
    let start = *store.head().borrow();
    let kept = store
        .append(
            &format!("{prefix}{}", uuid::Uuid::new_v4()),
            ExpectedRevision::NoStream,
            vec![event(0)],
        )
        .await
        .unwrap();
    assert_eq!(*store.head().borrow(), kept.position);
    store
        .append(
            &stream_name("other"),
            ExpectedRevision::NoStream,
            vec![event(1)],
        )
        .await
        .unwrap();
    assert_eq!(*store.head().borrow(), kept.position);
    let all = store.read_all(start, 100).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].position, kept.position);
    // The head (read at connection) of a new store is that event too.
    let again = KurrentStore::connect_filtered(url, StreamFilter::prefixes([prefix]))
        .await
        .unwrap();
    assert_eq!(*again.head().borrow(), kept.position);
}

/// Needs no server: a malformed connection string is invalid, a server
/// that does not answer (nothing listens on port 1 of this machine) is
/// unavailable.
#[tokio::test]
async fn connecting_fails_cleanly() {
    assert!(matches!(
        KurrentStore::connect("postgres://localhost").await,
        Err(StoreError::Invalid(_))
    ));
    // Nothing listens there.
    assert!(matches!(
        KurrentStore::connect("esdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=1").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        KurrentStore::connect_filtered(
            "esdb://127.0.0.1:1?tls=false",
            StreamFilter::Prefixes(vec![])
        )
        .await,
        Err(StoreError::Invalid(_))
    ));
}
