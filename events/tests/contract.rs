//! The contract every `EventStore` adapter fulfils, run against each
//! in-process adapter, plus the durability tests only a durable adapter can
//! pass.
//!
//! The cases live in `contract_cases/`, shared with the EventStoreDB
//! adapter's contract test (`kurrentdb/tests/contract.rs`); the
//! `contract_tests!` macro instantiates all of them for one adapter.

#[macro_use]
mod contract_cases;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use contract_cases::*;
use ibl_events::memory::MemoryStore;
use ibl_events::sqlite::SqliteStore;
use ibl_events::{
    read_stream_all, AppendResult, EventData, EventStore, ExpectedRevision, RecordedEvent,
    StoreError, Subscription,
};
use serde_json::json;
use uuid::Uuid;

/// A store under test and whatever must outlive it (its folder).
struct Fixture {
    store: Arc<dyn EventStore>,
    _dir: Option<tempfile::TempDir>,
}

fn memory() -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::new()),
        _dir: None,
    }
}

fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path()).expect("open sqlite store");
    Fixture {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

contract_tests!(memory_store, memory());
contract_tests!(sqlite_store, sqlite());

/// What only the durable adapter promises.
mod sqlite_only {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::time::Instant;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopen_after_drop_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let stream = stream_name("durable");
        let batch = events(0..10);
        let (written, result) = {
            let store = SqliteStore::open(dir.path()).unwrap();
            let result = store
                .append(&stream, ExpectedRevision::NoStream, batch.clone())
                .await
                .unwrap();
            (read_everything(&store).await, result)
        };
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(*store.head().borrow(), result.position);
        assert_eq!(read_everything(&store).await, written);
        // Appends go on where they stopped.
        let next = store
            .append(&stream, ExpectedRevision::Exact(9), vec![event(10)])
            .await
            .unwrap();
        assert_eq!(next.revision, 10);
        assert_eq!(next.position, result.position + 1);
        // And a retried append is still recognized after the reopen.
        let retry = store
            .append(&stream, ExpectedRevision::NoStream, batch)
            .await
            .unwrap();
        assert_eq!(
            retry,
            AppendResult {
                duplicate: true,
                ..result
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_rejects_an_unusable_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-folder");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            SqliteStore::open(&file),
            Err(StoreError::Unavailable(_))
        ));
    }

    /// Concurrent appends share commits, and each is answered with its own
    /// result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let before = store.writer_stats();
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let stream = stream_name("shared-commit");
                for n in 0..20u64 {
                    let expected = n
                        .checked_sub(1)
                        .map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
                    let r = store.append(&stream, expected, vec![event(n)]).await;
                    assert_eq!(r.unwrap().revision, n);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let stats = store.writer_stats().since(&before);
        assert_eq!((stats.appends, stats.events), (640, 640));
        assert!(
            stats.batches < stats.appends / 2,
            "{} commits for {} appends",
            stats.batches,
            stats.appends
        );
        assert_eq!(read_everything(store.as_ref()).await.len(), 640);
    }

    /// The layout of schema version 2, as earlier builds wrote it.
    const SCHEMA_V2: &str = "
        CREATE TABLE events (
            position       INTEGER PRIMARY KEY,
            event_id       BLOB    NOT NULL,
            stream         TEXT    NOT NULL,
            revision       INTEGER NOT NULL,
            event_type     TEXT    NOT NULL,
            schema_version INTEGER NOT NULL,
            recorded_at    TEXT    NOT NULL,
            payload        TEXT    NOT NULL,
            metadata       TEXT    NOT NULL,
            UNIQUE (stream, revision),
            UNIQUE (stream, event_id)
        );
        PRAGMA user_version = 2;
    ";

    /// A folder written by a build of schema version 2 opens: every event
    /// keeps its position, stream and revision, and the checks still see
    /// them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_migrates_schema_version_2() {
        let dir = tempfile::tempdir().unwrap();
        // Three streams whose events interleave in the global log.
        let streams = [stream_name("old"), stream_name("old"), stream_name("old")];
        let mut written: Vec<(Uuid, &str, u64, u64)> = Vec::new();
        {
            let conn = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
                .unwrap();
            conn.execute_batch(SCHEMA_V2).unwrap();
            let mut insert = conn
                .prepare(
                    "INSERT INTO events (event_id, stream, revision, event_type, schema_version, \
                     recorded_at, payload, metadata) VALUES (?1, ?2, ?3, 'Tested', 1, \
                     '2024-05-01T10:00:00.000000Z', ?4, '{\"correlation_id\":\"old\"}')",
                )
                .unwrap();
            let mut revisions = [0u64; 3];
            for n in 0..10u64 {
                let s = [0, 1, 0, 2, 2, 0, 1, 2, 0, 0][n as usize];
                let id = Uuid::new_v4();
                let payload = json!({ "type": "Tested", "n": n }).to_string();
                insert
                    .execute(rusqlite::params![
                        &id.as_bytes()[..],
                        streams[s],
                        revisions[s] as i64,
                        payload
                    ])
                    .unwrap();
                written.push((id, &streams[s], revisions[s], n + 1));
                revisions[s] += 1;
            }
        }

        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(*store.head().borrow(), 10);
        let all = read_everything(&store).await;
        assert_eq!(all.len(), written.len());
        for (event, (id, stream, revision, position)) in all.iter().zip(&written) {
            assert_eq!(event.event_id, *id);
            assert_eq!(event.stream, *stream);
            assert_eq!(event.revision, *revision);
            assert_eq!(event.position, *position);
            assert_eq!(
                *event.payload,
                json!({ "type": "Tested", "n": position - 1 })
            );
            assert_eq!(event.metadata.correlation_id, "old");
        }
        let first = read_stream_all(&store, &streams[0]).await.unwrap();
        assert_eq!(
            first.iter().map(|e| e.position).collect::<Vec<_>>(),
            [1, 3, 6, 9, 10]
        );

        // The checks see the migrated events.
        let r = store
            .append(&streams[0], ExpectedRevision::NoStream, vec![event(0)])
            .await;
        assert_conflict(r, &streams[0], ExpectedRevision::NoStream, Some(4));
        let old = &written[3]; // revision 0 of streams[2]
        let retry = store
            .append(
                &streams[2],
                ExpectedRevision::NoStream,
                vec![EventData {
                    event_id: old.0,
                    ..event(0)
                }],
            )
            .await
            .unwrap();
        assert_eq!(
            retry,
            AppendResult {
                revision: 0,
                position: 4,
                duplicate: true
            }
        );
        let refused = store
            .append(
                &streams[1],
                ExpectedRevision::Exact(1),
                vec![
                    event(2),
                    EventData {
                        event_id: written[1].0,
                        ..event(3)
                    },
                ],
            )
            .await;
        assert!(
            matches!(refused, Err(StoreError::Invalid(_))),
            "got {refused:?}"
        );
        let next = store
            .append(&streams[1], ExpectedRevision::Exact(1), vec![event(2)])
            .await
            .unwrap();
        assert_eq!((next.revision, next.position), (2, 11));
        let new = store
            .append(
                &stream_name("new"),
                ExpectedRevision::NoStream,
                events(0..2),
            )
            .await
            .unwrap();
        assert_eq!((new.revision, new.position), (1, 13));
        drop(store);

        // Migrated once: the next open finds the current version.
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(read_everything(&store).await.len(), 13);
        drop(store);
        let conn = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 3);
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_refuses_an_unknown_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        let conn = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(conn);
        match SqliteStore::open(dir.path()) {
            Err(StoreError::Unavailable(message)) => assert!(message.contains("schema")),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a store of an unknown schema version opened"),
        }
    }

    /// A second instance on the same folder stands for another process.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_instance_append_is_seen_within_200ms() {
        let dir = tempfile::tempdir().unwrap();
        let first: Arc<dyn EventStore> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let second = SqliteStore::open(dir.path()).unwrap();
        let stream = stream_name("shared");
        first
            .append(&stream, ExpectedRevision::NoStream, vec![event(0)])
            .await
            .unwrap();

        let mut sub = Subscription::new(Arc::clone(&first), 0);
        assert_eq!(sub.next_batch(10).await.unwrap().len(), 1);

        for n in 1..6 {
            // Let the poller settle in a random phase of its interval.
            tokio::time::sleep(Duration::from_millis(37 * n)).await;
            let appended = second
                .append(&stream, ExpectedRevision::Exact(n - 1), vec![event(n)])
                .await
                .unwrap();
            let started = Instant::now();
            let batch = tokio::time::timeout(Duration::from_millis(200), sub.next_batch(10))
                .await
                .expect("the other instance's append seen within 200 ms")
                .unwrap();
            assert_eq!(batch.len(), 1);
            assert_eq!(batch[0].position, appended.position);
            assert!(started.elapsed() < Duration::from_millis(200));
        }

        // The revision check sees the other instance's events too.
        let r = first
            .append(&stream, ExpectedRevision::Exact(0), vec![event(9)])
            .await;
        assert_conflict(r, &stream, ExpectedRevision::Exact(0), Some(5));
        // And so does the idempotency check.
        let events_of_second = read_stream_all(first.as_ref(), &stream).await.unwrap();
        let retry = first
            .append(
                &stream,
                ExpectedRevision::Any,
                vec![EventData {
                    event_id: events_of_second[3].event_id,
                    ..event(3)
                }],
            )
            .await
            .unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.position, events_of_second[3].position);
    }

    /// Two instances on one file take turns: each one's tail holds only
    /// runs of its own commits, and a subscription on either reads the whole
    /// log, in order, as `read_all` does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_tail_never_hides_another_instances_events() {
        let dir = tempfile::tempdir().unwrap();
        let first: Arc<dyn EventStore> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let second: Arc<dyn EventStore> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let mut subs = [
            Subscription::new(Arc::clone(&first), 0),
            Subscription::new(Arc::clone(&second), 0),
        ];
        let mut seen = [Vec::new(), Vec::new()];
        // Whose turn: first, second, first twice, second twice, ...
        let turns = [0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1];
        for (n, &who) in turns.iter().enumerate() {
            let store = if who == 0 { &first } else { &second };
            let n = n as u64;
            let appended = store
                .append(
                    &stream_name("turns"),
                    ExpectedRevision::NoStream,
                    events(n..n + 2),
                )
                .await
                .unwrap();
            for (sub, seen) in subs.iter_mut().zip(&mut seen) {
                while sub.position() < appended.position {
                    let batch = tokio::time::timeout(Duration::from_secs(5), sub.next_batch(3))
                        .await
                        .expect("the append within 5 s")
                        .unwrap();
                    seen.extend(batch);
                }
            }
        }
        let everything = read_everything(first.as_ref()).await;
        assert_eq!(everything.len(), 2 * turns.len());
        assert_eq!(seen[0], everything);
        assert_eq!(seen[1], everything);
    }

    /// How many stream names are stored more than once (always 0).
    fn duplicated_stream_names(dir: &std::path::Path) -> i64 {
        let conn = rusqlite::Connection::open(dir.join("events.db")).unwrap();
        conn.query_row(
            "SELECT COUNT(*) FROM (SELECT name FROM streams GROUP BY name HAVING COUNT(*) > 1)",
            [],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// Streams created by another instance (standing for another process)
    /// are known to this one: its reads find them, its checks see them, and
    /// it never creates a second stream of the same name, even when both
    /// create it at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn streams_created_by_another_instance_are_known() {
        let dir = tempfile::tempdir().unwrap();
        let first = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let second = Arc::new(SqliteStore::open(dir.path()).unwrap());

        for n in 0..20u64 {
            let (creator, other) = if n % 2 == 0 {
                (&first, &second)
            } else {
                (&second, &first)
            };
            let stream = stream_name("elsewhere");
            let created = creator
                .append(&stream, ExpectedRevision::NoStream, vec![event(0)])
                .await
                .unwrap();
            let read = other.read_stream(&stream, 0, 10).await.unwrap();
            assert_eq!(read.len(), 1);
            assert_eq!(read[0].position, created.position);
            let r = other
                .append(&stream, ExpectedRevision::NoStream, vec![event(1)])
                .await;
            assert_conflict(r, &stream, ExpectedRevision::NoStream, Some(0));
            let next = other
                .append(&stream, ExpectedRevision::Exact(0), vec![event(1)])
                .await
                .unwrap();
            assert_eq!(next.revision, 1);
        }

        // Both instances create the same new streams at once: one of them
        // wins each.
        let names: Vec<String> = (0..40).map(|_| stream_name("both")).collect();
        let mut tasks = Vec::new();
        for name in &names {
            for store in [&first, &second] {
                let store = Arc::clone(store);
                let name = name.clone();
                tasks.push(tokio::spawn(async move {
                    store
                        .append(&name, ExpectedRevision::NoStream, vec![event(0)])
                        .await
                }));
            }
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        for pair in results.chunks(2) {
            let won = pair.iter().filter(|r| r.is_ok()).count();
            assert_eq!(won, 1, "{pair:?}");
            for r in pair {
                assert!(
                    matches!(r, Ok(_) | Err(StoreError::Conflict { .. })),
                    "{r:?}"
                );
            }
        }
        for name in &names {
            assert_eq!(first.read_stream(name, 0, 10).await.unwrap().len(), 1);
            assert_eq!(second.read_stream(name, 0, 10).await.unwrap().len(), 1);
        }
        drop((first, second));
        assert_eq!(duplicated_stream_names(dir.path()), 0);
    }

    const CHILD_DIR_VAR: &str = "IBL_EVENTS_CRASH_CHILD_DIR";

    /// The child of `crash_keeps_every_acknowledged_append`: appends until
    /// killed, printing `ACK <stream> <event id> <position>` for each event of
    /// each acknowledged append. Does nothing unless run by that test.
    #[test]
    #[ignore = "child process of crash_keeps_every_acknowledged_append"]
    fn crash_child_writer() {
        let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
            return;
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let store = Arc::new(SqliteStore::open(std::path::Path::new(&dir)).unwrap());
            let (acks, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
            for task in 0..16u64 {
                let store = Arc::clone(&store);
                let acks = acks.clone();
                tokio::spawn(async move {
                    let stream = stream_name(&format!("crash{task}"));
                    let mut known = None;
                    for n in 0u64.. {
                        // Mix single-event appends with multi-event ones.
                        let batch = events(0..1 + (n + task) % 4);
                        let expected =
                            known.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
                        let r = store
                            .append(&stream, expected, batch.clone())
                            .await
                            .unwrap();
                        known = Some(r.revision);
                        let first = r.position + 1 - batch.len() as u64;
                        for (i, e) in batch.iter().enumerate() {
                            let line = format!("ACK {stream} {} {}", e.event_id, first + i as u64);
                            if acks.send(line).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
            drop(acks);
            // One printer, so lines never interleave; each line goes out in
            // one write, flushed at once.
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut stdout = std::io::stdout().lock();
            while let Some(line) = lines.recv().await {
                if writeln!(stdout, "{line}")
                    .and_then(|()| stdout.flush())
                    .is_err()
                    || Instant::now() > deadline
                {
                    std::process::exit(1);
                }
            }
        });
    }

    /// Kills a writing child with SIGKILL, several times, and checks that
    /// every acknowledged event survived, with contiguous positions and no
    /// duplicate.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crash_keeps_every_acknowledged_append() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut acknowledged: HashMap<Uuid, (String, u64)> = HashMap::new();

        for round in 0..3 {
            let mut child = Command::new(&exe)
                .args([
                    "--exact",
                    "sqlite_only::crash_child_writer",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR_VAR, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start the child writer");
            let stdout = child.stdout.take().unwrap();
            let target = 1000 + 500 * round;

            // Read acknowledgments until enough, then kill mid-write.
            let (count, reader) = tokio::task::spawn_blocking(move || {
                let mut reader = BufReader::new(stdout);
                let mut acks = Vec::new();
                let mut line = String::new();
                while acks.len() < target {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => acks.extend(parse_ack(&line)),
                    }
                }
                (acks, reader)
            })
            .await
            .unwrap();
            assert!(
                count.len() >= target,
                "child stopped after {} acknowledgments",
                count.len()
            );
            child.kill().expect("SIGKILL the child");
            child.wait().unwrap();

            // Lines already in the pipe were acknowledged too.
            let mut rest = String::new();
            let mut reader = reader;
            let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
            let mut acks = count;
            // A last line cut short by the kill does not parse.
            acks.extend(rest.split_inclusive('\n').filter_map(parse_ack));
            for (id, stream, position) in acks {
                assert!(
                    acknowledged.insert(id, (stream, position)).is_none(),
                    "event {id} acknowledged twice"
                );
            }

            let store = SqliteStore::open(dir.path()).unwrap();
            let all = read_everything(&store).await;
            assert!(all.len() >= acknowledged.len());
            assert_eq!(*store.head().borrow(), all.len() as u64);
            for (i, event) in all.iter().enumerate() {
                assert_eq!(event.position, i as u64 + 1, "positions contiguous");
            }
            let mut seen = HashSet::new();
            let mut revisions: HashMap<&str, u64> = HashMap::new();
            for event in &all {
                assert!(seen.insert(event.event_id), "duplicate {}", event.event_id);
                let next = revisions.entry(&event.stream).or_insert(0);
                assert_eq!(event.revision, *next, "revisions contiguous");
                *next += 1;
            }
            let by_id: HashMap<Uuid, &RecordedEvent> =
                all.iter().map(|e| (e.event_id, e)).collect();
            for (id, (stream, position)) in &acknowledged {
                let event = by_id
                    .get(id)
                    .unwrap_or_else(|| panic!("acknowledged event {id} lost"));
                assert_eq!(&event.stream, stream);
                assert_eq!(event.position, *position);
            }
            eprintln!(
                "crash round {round}: {} events acknowledged in all, {} stored",
                acknowledged.len(),
                all.len()
            );
            drop(store);

            let conn = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
            let check: String = conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(check, "ok");
            assert_eq!(duplicated_stream_names(dir.path()), 0);
        }
    }

    /// Parses one whole line (with its newline) of the child's output.
    fn parse_ack(line: &str) -> Option<(Uuid, String, u64)> {
        let mut words = line.strip_suffix('\n')?.split(' ');
        if words.next()? != "ACK" {
            return None;
        }
        let stream = words.next()?.to_owned();
        let id = Uuid::parse_str(words.next()?).ok()?;
        let position = words.next()?.parse().ok()?;
        words.next().is_none().then_some((id, stream, position))
    }
}
