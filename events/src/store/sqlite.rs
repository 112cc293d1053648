//! SQLite adapter (embedded, durable, group commit).
//!
//! # Layout
//!
//! One file, `events.db`, in the folder given to [`SqliteStore::open`], in
//! WAL mode with `synchronous=FULL`: a commit is on disk when it returns.
//! Every event is one row of the `events` table; its `position` is the
//! table's rowid, so the global log is the table in rowid order. Events are
//! never deleted, so positions are contiguous and never reused.
//!
//! Each stream is a row of `streams`: its name and an integer id, given in
//! order of creation. Events name their stream by that id, and `events` has
//! two unique indexes, (stream id, revision) and (stream id, event id): the
//! first serves stream reads and the revision check, the second the
//! idempotency check. Event ids are stored as 16-byte blobs to keep that
//! index small.
//!
//! Stream names are random (`assertion-<uuid>`), so any index keyed by them
//! takes each new stream at a random place: one more page to write per new
//! stream, in every commit. In schema version 2 both indexes led with the
//! name (two such pages per event). Now a new stream has the highest id, so
//! its events land at the end of both indexes, next to those of the other
//! new streams of the batch, and the names are not indexed in the file at
//! all: the stream directory (`sqlite/directory.rs`) keeps a hash of every
//! name in memory (about 25 bytes a stream: 36 MB for 1.5 million) and
//! finds streams by name. A batch of 32 appends to new streams then writes
//! about 18 pages to the log instead of about 46.
//!
//! # Writes: group commit
//!
//! One writer thread owns the only write connection of this instance.
//! [`EventStore::append`] encodes the events (JSON serialization happens on
//! the caller's thread), sends the request over a channel and awaits the
//! answer. The writer takes a request, opens a `BEGIN IMMEDIATE`
//! transaction and applies it, then applies every request already queued,
//! each as soon as it is taken, so that requests arriving meanwhile join the
//! batch too. It commits once for the whole batch: one `fsync` (up to
//! [`MAX_BATCH_REQUESTS`] requests or [`MAX_BATCH_ROWS`] events). Every
//! answer is sent only after the commit returned, so an acknowledged append
//! is durable.
//!
//! Appenders that were just answered usually come back at once (a request
//! handler appends, answers its client, the next one appends). The writer
//! counts the appenders active at the end of a batch (those it answers plus
//! those that queued meanwhile) and lets the next batch wait for as many:
//! while the batch holds fewer, it waits for the next request as long as one
//! arrives within [`BATCH_GAP`] of the previous one, and never longer than
//! [`MAX_BATCH_WAIT`] after the first. With 32 appenders, every commit then
//! serves all 32 instead of alternating between two halves of 16. A lone
//! appender never waits. Between batches, while appenders are active, the
//! writer polls for the next request for a few tens of microseconds before
//! it sleeps, since a sleeping thread takes about as long to wake up.
//!
//! Each request is checked before anything of it is written: expected
//! revision, idempotency (its first event id already in the stream), none of
//! its other ids in the stream. A request that fails its checks (conflict,
//! invalid) writes nothing and is answered with its error; the others
//! commit. Once the checks passed, the inserts cannot be refused, so no
//! savepoint is needed; an insert that fails anyway (I/O error, full disk)
//! fails the whole batch, none of which is acknowledged.
//!
//! Checks read the stream inside the write transaction, so appends by other
//! processes on the same file are taken into account: SQLite's write lock
//! serializes the writers of all processes. Each transaction starts by
//! adding the streams other processes created to the stream directory,
//! under that lock, before any name is looked up.
//!
//! [`SqliteStore::writer_stats`] counts batches, appends and events and the
//! writer's time in each phase of a batch (the append benchmark prints them).
//!
//! A checkpointer thread copies the log into the database file every
//! [`CHECKPOINT_INTERVAL`], off the writer's path. Once the log grew past
//! [`RESTART_LOG_PAGES`], it catches up with the writer in shorter and
//! shorter rounds, then lets the writer copy the last few pages between two
//! batches, so that the next transaction writes the log from its start
//! again. The writer checkpoints by itself only past
//! [`WRITER_CHECKPOINT_PAGES`].
//!
//! # Reads and the head
//!
//! Reads run on the blocking thread pool with a small pool of read-only
//! connections; WAL readers never block the writer nor each other. A stream
//! read finds the stream's id in the directory, which reads the streams
//! created since it last looked when it does not know the name. The head
//! moves when this instance commits (before the appender is answered), and a
//! poller thread notices commits of other processes within
//! [`POLL_INTERVAL`].
//!
//! The events this instance committed last are also kept in memory, in the
//! tail (`sqlite/tail.rs`): the writer adds each batch there before it moves
//! the head, and [`EventStore::read_tail`], which subscriptions use, answers
//! from it what it holds, so that the projectors following the log do not
//! each read back and decode what was just written. `read_all` always reads
//! the file.
//!
//! # Threads
//!
//! Each open store runs three threads: the writer, the poller and the
//! checkpointer. Dropping the store lets the writer finish the requests
//! already queued, then stops and joins all three.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use super::checks::{check_expected, validate_append};
use super::{
    AppendResult, EventData, EventStore, ExpectedRevision, Position, RecordedEvent, StoreError,
};
use directory::Directory;
use tail::Tail;

mod directory;
mod tail;

/// Name of the database file inside the store's folder.
pub const DB_FILE: &str = "events.db";

/// How long a connection waits for a lock held by another connection
/// (another process appending, a checkpoint) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the poller looks for commits of other processes: one
/// `PRAGMA data_version` (a read of the WAL index in shared memory, no I/O)
/// each time, so that a service reading another's writes lags by
/// milliseconds.
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// How often the checkpointer copies the log into the database file.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// Once the log holds this many pages, it is restarted from its beginning:
/// the checkpointer catches up with it, then the writer copies the last
/// pages itself between two batches, which lets its next transaction write
/// the log from the start again.
pub const RESTART_LOG_PAGES: i64 = 16_384;

/// The writer checkpoints by itself only past this many pages in the log: a
/// safety net for a checkpointer that cannot keep up.
pub const WRITER_CHECKPOINT_PAGES: u32 = 65_536;

/// At most this many append requests share one transaction.
pub const MAX_BATCH_REQUESTS: usize = 512;

/// The writer stops taking requests into a batch once it holds this many
/// events (a single larger request still goes through, alone).
pub const MAX_BATCH_ROWS: usize = 20_000;

/// A batch stays open for more requests at most this long after its first
/// one (as EventStoreDB's writer flushes at most 2 ms after its last flush).
pub const MAX_BATCH_WAIT: Duration = Duration::from_millis(1);

/// A batch waiting for more requests commits once none arrived for this
/// long.
pub const BATCH_GAP: Duration = Duration::from_micros(200);

/// After a batch, while appenders are active, the writer polls this long
/// for the next request before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 4;

/// The schema version this code writes and reads (`PRAGMA user_version`).
/// Version 2 (events keyed by stream name) is migrated when opened, see
/// [`MIGRATE_FROM_2`]. Version 1, with event ids as text, only ever existed
/// during development: such a folder is refused.
const SCHEMA_VERSION: i64 = 3;

/// Streams get an integer id, in order of creation, and events refer to
/// their stream by that id. Both indexes of `events` lead with the stream
/// id, so the events of a new stream go to the end of every index. Names
/// are unique but not indexed: the writer keeps them unique with the stream
/// directory (see the module documentation).
const SCHEMA: &str = "
CREATE TABLE streams (
    id   INTEGER PRIMARY KEY,
    name TEXT    NOT NULL -- unique, kept so by the writer (see directory.rs)
);
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    event_id       BLOB    NOT NULL, -- the 16 bytes of the UUID
    stream_id      INTEGER NOT NULL REFERENCES streams (id),
    revision       INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    recorded_at    TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL
);
CREATE UNIQUE INDEX events_by_revision ON events (stream_id, revision);
CREATE UNIQUE INDEX events_by_id ON events (stream_id, event_id);
";

/// Turns a version 2 database (one `events` table with the stream's name in
/// every row, unique on (stream, revision) and (stream, event_id)) into
/// version 3, keeping every position. Runs in the transaction that opens the
/// store: all or nothing. It rewrites the whole table once, so the log
/// temporarily grows by about the size of the database.
const MIGRATE_FROM_2: &str = "
ALTER TABLE events RENAME TO events_v2;
CREATE TABLE streams (
    id   INTEGER PRIMARY KEY,
    name TEXT    NOT NULL -- unique, kept so by the writer (see directory.rs)
);
INSERT INTO streams (name)
    SELECT stream FROM events_v2 GROUP BY stream ORDER BY MIN(position);
CREATE UNIQUE INDEX streams_by_name ON streams (name); -- for the copy only
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    event_id       BLOB    NOT NULL,
    stream_id      INTEGER NOT NULL REFERENCES streams (id),
    revision       INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    recorded_at    TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL
);
INSERT INTO events (position, event_id, stream_id, revision, event_type, schema_version,
                    recorded_at, payload, metadata)
    SELECT e.position, e.event_id, s.id, e.revision, e.event_type, e.schema_version,
           e.recorded_at, e.payload, e.metadata
    FROM events_v2 AS e CROSS JOIN streams AS s ON s.name = e.stream
    ORDER BY e.position;
DROP TABLE events_v2;
DROP INDEX streams_by_name;
CREATE UNIQUE INDEX events_by_revision ON events (stream_id, revision);
CREATE UNIQUE INDEX events_by_id ON events (stream_id, event_id);
";

/// The columns [`decode_row`] reads, from `events AS e` joined with
/// `streams AS s`.
const SELECT_COLUMNS: &str = "SELECT e.position, e.event_id, s.name, e.revision, e.event_type, \
     e.schema_version, e.recorded_at, e.payload, e.metadata";

/// An [`EventStore`] in an SQLite database file, safe to share between
/// processes.
///
/// Dropping the store lets the writer finish the requests already queued,
/// then closes every connection.
pub struct SqliteStore {
    path: PathBuf,
    /// `None` only while dropping.
    requests: Option<mpsc::Sender<WriteRequest>>,
    writer: Option<JoinHandle<()>>,
    /// The poller and the checkpointer.
    background: Vec<Background>,
    head: Arc<watch::Sender<Position>>,
    readers: Arc<ReaderPool>,
    directory: Arc<Directory>,
    stats: Arc<StatCounters>,
    tail: Arc<Tail>,
}

/// A thread that runs until its stop channel is dropped.
struct Background {
    /// Dropping it stops the thread.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Starts `body` on a thread named `name`, handing it the receiving end
    /// of its stop channel.
    fn spawn(
        name: &str,
        body: impl FnOnce(mpsc::Receiver<()>) + Send + 'static,
    ) -> Result<Self, StoreError> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(stopped))
            .map_err(|e| StoreError::Unavailable(format!("cannot start {name}: {e}")))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("event store background thread panicked");
            }
        }
    }
}

/// Waits `interval` for a stop; true when the thread must stop.
fn stopped(stop: &mpsc::Receiver<()>, interval: Duration) -> bool {
    !matches!(stop.recv_timeout(interval), Err(RecvTimeoutError::Timeout))
}

impl SqliteStore {
    /// Opens the store in `dir`, creating the folder and the database when
    /// they do not exist.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        let path = dir.join(DB_FILE);

        let conn = open_writer(&path)?;
        let last: Option<i64> = conn
            .query_row("SELECT MAX(position) FROM events", [], |r| r.get(0))
            .map_err(|e| unavailable(&path, e))?;
        let last = to_u64(last.unwrap_or(0));
        let (head, _) = watch::channel(last);
        let head = Arc::new(head);
        let tail = Arc::new(Tail::new(last));
        let directory = Arc::new(Directory::load(&conn).map_err(|e| unavailable(&path, e))?);

        // Open every connection before starting any thread, so that an error
        // leaves nothing behind.
        let poll_conn = open_reader(&path).map_err(|e| unavailable(&path, e))?;
        let checkpoint_conn = open_checkpointer(&path).map_err(|e| unavailable(&path, e))?;

        let (requests, queue) = mpsc::channel();
        let restart = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(StatCounters::default());
        let writer = {
            let head = Arc::clone(&head);
            let restart = Arc::clone(&restart);
            let stats = Arc::clone(&stats);
            let directory = Arc::clone(&directory);
            let tail = Arc::clone(&tail);
            std::thread::Builder::new()
                .name("event-store-writer".into())
                .spawn(move || {
                    let writer = Writer {
                        conn,
                        directory,
                        stats,
                    };
                    run_writer(&writer, queue, (head, tail), restart)
                })
                .map_err(|e| StoreError::Unavailable(format!("cannot start writer: {e}")))?
        };
        let mut store = SqliteStore {
            readers: Arc::new(ReaderPool::new(path.clone())),
            path,
            requests: Some(requests),
            writer: Some(writer),
            background: Vec::with_capacity(2),
            head: Arc::clone(&head),
            directory,
            stats,
            tail,
        };
        // On error, dropping `store` stops what was started.
        store
            .background
            .push(Background::spawn("event-store-poller", move |stop| {
                run_poller(poll_conn, stop, head)
            })?);
        store.background.push(Background::spawn(
            "event-store-checkpointer",
            move |stop| run_checkpointer(checkpoint_conn, stop, restart),
        )?);
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the writer did since the store opened.
    pub fn writer_stats(&self) -> WriterStats {
        self.stats.snapshot()
    }

    /// Runs a read on the blocking pool with a pooled read connection.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || readers.with(f))
            .await
            .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel lets the writer drain what is queued and exit.
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("event store writer thread panicked");
            }
        }
        // Stops and joins the poller and the checkpointer.
        self.background.clear();
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        validate_append(stream, &events)?;
        let events = events
            .into_iter()
            .map(EncodedEvent::new)
            .collect::<Result<Vec<_>, _>>()?;
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest {
            stream: stream.to_owned(),
            expected,
            events,
            reply,
        };
        self.requests
            .as_ref()
            .ok_or_else(writer_gone)?
            .send(request)
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let stream = stream.to_owned();
        let from = to_i64(from);
        let directory = Arc::clone(&self.directory);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{SELECT_COLUMNS} FROM events AS e CROSS JOIN streams AS s ON s.id = e.stream_id \
                 WHERE e.stream_id = ?1 AND e.revision >= ?2 ORDER BY e.revision"
            ))?;
            let mut caught_up = false;
            loop {
                for id in directory.candidates(&stream) {
                    let rows = stmt.query_map(params![id, from], decode_row)?;
                    let events = collect(rows, max)?;
                    // The events carry their stream's name: only when there
                    // are none is the name read on its own.
                    let named = match events.first() {
                        Some(first) => first.stream == stream,
                        None => directory.is_named(conn, id, &stream)?,
                    };
                    if named {
                        return Ok(events);
                    }
                }
                // A stream created since the directory last looked, by
                // another process?
                if caught_up || !directory.catch_up(conn)? {
                    return Ok(Vec::new());
                }
                caught_up = true;
            }
        })
        .await
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let after = to_i64(after);
        self.read(move |conn| {
            // Events drive the join: positions in order, each one's stream
            // found by its id.
            let mut stmt = conn.prepare_cached(&format!(
                "{SELECT_COLUMNS} FROM events AS e CROSS JOIN streams AS s ON s.id = e.stream_id \
                 WHERE e.position > ?1 ORDER BY e.position"
            ))?;
            let rows = stmt.query_map(params![after], decode_row)?;
            collect(rows, max)
        })
        .await
    }

    /// From the tail when it holds the next event (see `sqlite/tail.rs`).
    async fn read_tail(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match self.tail.read(after, max) {
            Some(events) => Ok(events),
            None => self.read_all(after, max).await,
        }
    }

    fn head(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }

    /// Read from the file: another process's commit counts at once, not
    /// at the next poll.
    async fn last_committed(&self) -> Result<Position, StoreError> {
        let last = self
            .read(|conn| {
                conn.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .await?;
        Ok(u64::try_from(last).unwrap_or(0))
    }
}

// ---------------------------------------------------------------------------
// Writer statistics

/// What the writer did since the store opened, for benchmarks and
/// diagnostics. Counted once per batch, so keeping them costs nothing
/// measurable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions run, one per batch.
    pub batches: u64,
    /// Append requests answered (committed, refused or failed).
    pub appends: u64,
    /// Events in those requests.
    pub events: u64,
    /// Time spent from `BEGIN` to just before `COMMIT` on checks and
    /// inserts.
    pub apply: Duration,
    /// Time spent between `BEGIN` and `COMMIT` waiting for more requests.
    pub wait: Duration,
    /// Time spent in `COMMIT`: writing the log and syncing it.
    pub commit: Duration,
    /// Time spent moving the head and answering the appenders.
    pub answer: Duration,
    /// Time spent waiting for a request to start a batch with (polling,
    /// then sleeping).
    pub idle: Duration,
    /// Time spent on the checkpoints that let the log restart.
    pub checkpoint: Duration,
}

impl WriterStats {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &WriterStats) -> WriterStats {
        WriterStats {
            batches: self.batches - earlier.batches,
            appends: self.appends - earlier.appends,
            events: self.events - earlier.events,
            apply: self.apply.saturating_sub(earlier.apply),
            wait: self.wait.saturating_sub(earlier.wait),
            commit: self.commit.saturating_sub(earlier.commit),
            answer: self.answer.saturating_sub(earlier.answer),
            idle: self.idle.saturating_sub(earlier.idle),
            checkpoint: self.checkpoint.saturating_sub(earlier.checkpoint),
        }
    }
}

/// The writer's side of [`WriterStats`].
#[derive(Default)]
struct StatCounters {
    batches: AtomicU64,
    appends: AtomicU64,
    events: AtomicU64,
    apply_nanos: AtomicU64,
    wait_nanos: AtomicU64,
    commit_nanos: AtomicU64,
    answer_nanos: AtomicU64,
    idle_nanos: AtomicU64,
    checkpoint_nanos: AtomicU64,
}

impl StatCounters {
    fn add(counter: &AtomicU64, time: Duration) {
        let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_add(nanos, Ordering::Relaxed);
    }

    fn add_time(counter: &AtomicU64, since: Instant) {
        Self::add(counter, since.elapsed());
    }

    fn snapshot(&self) -> WriterStats {
        let time = |counter: &AtomicU64| Duration::from_nanos(counter.load(Ordering::Relaxed));
        WriterStats {
            batches: self.batches.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            apply: time(&self.apply_nanos),
            wait: time(&self.wait_nanos),
            commit: time(&self.commit_nanos),
            answer: time(&self.answer_nanos),
            idle: time(&self.idle_nanos),
            checkpoint: time(&self.checkpoint_nanos),
        }
    }
}

// ---------------------------------------------------------------------------
// Connections

fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let sql = |e| unavailable(path, e);
    let mut conn = Connection::open(path).map_err(sql)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    // `journal_mode` answers with the mode now in force.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sql)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "{}: cannot switch to WAL mode (journal mode is {mode})",
            path.display()
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES};"
    ))
    .map_err(sql)?;
    conn.set_prepared_statement_cache_capacity(32);

    // Create or check the schema under the write lock, so that two processes
    // opening a new folder at once agree.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)?;
    match version {
        0 => tx
            .execute_batch(&format!("{SCHEMA} PRAGMA user_version = {SCHEMA_VERSION};"))
            .map_err(sql)?,
        2 => {
            tracing::info!(
                "{}: migrating the event store to schema version {SCHEMA_VERSION}",
                path.display()
            );
            tx.execute_batch(&format!(
                "{MIGRATE_FROM_2} PRAGMA user_version = {SCHEMA_VERSION};"
            ))
            .map_err(sql)?;
        }
        SCHEMA_VERSION => {}
        other => {
            let path = path.display();
            return Err(StoreError::Unavailable(format!(
                "{path}: unknown schema version {other} (this build knows {SCHEMA_VERSION})"
            )));
        }
    }
    tx.commit().map_err(sql)?;
    Ok(conn)
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch("PRAGMA cache_size = -16384;")?;
    Ok(conn)
}

/// The checkpointer's connection: it writes the database file, never the log.
fn open_checkpointer(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // The checkpoint syncs the log before copying it, and the database file
    // after.
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0;")?;
    Ok(conn)
}

/// Read-only connections, opened on demand and kept for reuse.
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` with a connection of the pool (blocking).
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let idle = self.take_idle();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.path).map_err(|e| unavailable(&self.path, e))?,
        };
        let result = f(&conn).map_err(|e| unavailable(&self.path, e));
        // A connection that just failed is not trusted again.
        if result.is_ok() {
            self.put_idle(conn);
        }
        result
    }

    fn take_idle(&self) -> Option<Connection> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
    }

    fn put_idle(&self, conn: Connection) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }
}

// ---------------------------------------------------------------------------
// Writer

/// An event ready to be written: everything serialized by the caller. The
/// event itself is kept for the tail.
struct EncodedEvent {
    event_id: [u8; 16],
    payload: String,
    metadata: String,
    /// As an import kept it; `None`: the batch's time.
    recorded_at: Option<String>,
    event: EventData,
}

impl EncodedEvent {
    fn new(event: EventData) -> Result<Self, StoreError> {
        let payload = serde_json::to_string(&event.payload)
            .map_err(|e| StoreError::Invalid(format!("payload of {}: {e}", event.event_id)))?;
        let metadata = serde_json::to_string(&event.metadata)
            .map_err(|e| StoreError::Invalid(format!("metadata of {}: {e}", event.event_id)))?;
        Ok(Self {
            event_id: event.event_id.into_bytes(),
            payload,
            metadata,
            recorded_at: event
                .recorded_at
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true)),
            event,
        })
    }
}

struct WriteRequest {
    stream: String,
    expected: ExpectedRevision,
    /// Never empty.
    events: Vec<EncodedEvent>,
    reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

/// The writer thread: batches requests until the channel closes. Between
/// batches, finishes the checkpoint the checkpointer asks for in `restart`.
fn run_writer(
    writer: &Writer,
    queue: mpsc::Receiver<WriteRequest>,
    (head, tail): (Arc<watch::Sender<Position>>, Arc<Tail>),
    restart: Arc<AtomicBool>,
) {
    let stats = &*writer.stats;
    let mut queue = Queue {
        channel: queue,
        taken: VecDeque::new(),
    };
    // Appenders active at the end of the last batch.
    let mut expected = 1;
    loop {
        let idle = Instant::now();
        let first = if expected > 1 { queue.poll(SPIN) } else { None };
        // `recv` fails once every sender is gone and the queue is empty.
        let Some(first) = first.or_else(|| queue.recv()) else {
            return;
        };
        StatCounters::add_time(&stats.idle_nanos, idle);

        let batch = fill_batch(writer, &mut queue, first, expected);
        let (mut requests, answers, recorded_at) = batch.commit(writer);
        // Those queued now came from appenders other than the ones about to
        // be answered, which may come back at once: the next batch waits for
        // them all.
        expected = (requests.len() + queue.take_queued()).min(MAX_BATCH_REQUESTS);

        let answering = Instant::now();
        // The tail before the head: a reader woken by the head finds the
        // batch there.
        tail.push(committed_events(&mut requests, &answers, &recorded_at));
        // Move the head before answering, so that a caller sees its own
        // append in `head()` once `append` returned.
        let committed = answers
            .iter()
            .filter_map(|answer| answer.as_ref().ok().map(|result| result.position))
            .max();
        if let Some(position) = committed {
            advance(&head, position);
        }
        for (request, answer) in requests.into_iter().zip(answers) {
            // The caller may have given up waiting; nothing to do then.
            let _ = request.reply.send(answer);
        }
        StatCounters::add_time(&stats.answer_nanos, answering);

        if restart.swap(false, Ordering::Relaxed) {
            let checkpointing = Instant::now();
            if let Err(e) = wal_checkpoint(&writer.conn) {
                tracing::warn!("event store checkpoint: {e}");
            }
            StatCounters::add_time(&stats.checkpoint_nanos, checkpointing);
        }
    }
}

/// What the writer thread works with.
struct Writer {
    /// The only write connection of this instance.
    conn: Connection,
    directory: Arc<Directory>,
    stats: Arc<StatCounters>,
}

/// The writer's end of the request channel.
struct Queue {
    channel: mpsc::Receiver<WriteRequest>,
    /// Requests taken from the channel but not yet into a batch, in order.
    taken: VecDeque<WriteRequest>,
}

impl Queue {
    /// The next request, waiting for one; `None` once every sender is gone.
    fn recv(&mut self) -> Option<WriteRequest> {
        self.taken.pop_front().or_else(|| self.channel.recv().ok())
    }

    /// The next request if one is there.
    fn try_recv(&mut self) -> Option<WriteRequest> {
        self.taken
            .pop_front()
            .or_else(|| self.channel.try_recv().ok())
    }

    /// The next request, waiting at most `timeout` for one.
    fn recv_timeout(&mut self, timeout: Duration) -> Option<WriteRequest> {
        self.taken
            .pop_front()
            .or_else(|| self.channel.recv_timeout(timeout).ok())
    }

    /// The next request, polling for it (and yielding the core meanwhile)
    /// for at most `spin`: a thread woken from sleep takes tens of
    /// microseconds to run again.
    fn poll(&mut self, spin: Duration) -> Option<WriteRequest> {
        let until = Instant::now() + spin;
        loop {
            if let Some(request) = self.try_recv() {
                return Some(request);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::yield_now();
        }
    }

    /// Takes every request queued in the channel; answers how many are
    /// waiting now.
    fn take_queued(&mut self) -> usize {
        self.taken.extend(self.channel.try_iter());
        self.taken.len()
    }
}

/// Opens a batch with `first` and applies requests as they come: those
/// queued, then, while the batch holds fewer than `expected`, each one that
/// arrives within [`BATCH_GAP`] of the previous one, until
/// [`MAX_BATCH_WAIT`] after the first. Applying requests while the next ones
/// are on their way lets one commit serve every active appender.
fn fill_batch(writer: &Writer, queue: &mut Queue, first: WriteRequest, expected: usize) -> Batch {
    let deadline = Instant::now() + MAX_BATCH_WAIT;
    let mut batch = Batch::begin(writer);
    batch.add(writer, first);
    while !batch.full() {
        if let Some(request) = queue.try_recv() {
            batch.add(writer, request);
            continue;
        }
        let now = Instant::now();
        if batch.requests.len() >= expected || now >= deadline {
            break;
        }
        let arrived = queue.recv_timeout(BATCH_GAP.min(deadline - now));
        batch.waited += now.elapsed();
        match arrived {
            Some(request) => batch.add(writer, request),
            None => break,
        }
    }
    batch
}

/// One transaction of the writer: requests are applied as they are added,
/// and answered once [`Batch::commit`] returned.
struct Batch {
    requests: Vec<WriteRequest>,
    /// One per request applied so far; `Ok` ones are written in the
    /// transaction.
    answers: Vec<Result<AppendResult, StoreError>>,
    rows: usize,
    recorded_at: String,
    /// Streams created in the transaction, with their ids.
    created: Vec<(String, i64)>,
    /// Set when the transaction is lost: every request of the batch is
    /// answered with this error and no more are added.
    failed: Option<String>,
    started: Instant,
    /// Time spent waiting for requests since `started`.
    waited: Duration,
}

impl Batch {
    /// Starts the transaction, and learns the streams other processes
    /// created: under the write lock, no more can appear until the commit.
    fn begin(writer: &Writer) -> Batch {
        let started = Instant::now();
        let mut batch = Batch {
            requests: Vec::new(),
            answers: Vec::new(),
            rows: 0,
            recorded_at: Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
            created: Vec::new(),
            failed: None,
            started,
            waited: Duration::ZERO,
        };
        let begun = execute_cached(&writer.conn, "BEGIN IMMEDIATE")
            .and_then(|()| writer.directory.catch_up(&writer.conn));
        if let Err(e) = begun {
            batch.fail(writer, &e);
        }
        batch
    }

    /// True when the batch takes no more requests.
    fn full(&self) -> bool {
        self.failed.is_some()
            || self.requests.len() >= MAX_BATCH_REQUESTS
            || self.rows >= MAX_BATCH_ROWS
    }

    /// Applies `request` in the transaction (unless it is lost).
    fn add(&mut self, writer: &Writer, request: WriteRequest) {
        if self.failed.is_none() {
            match apply_request(writer, &request, &self.recorded_at, &mut self.created) {
                Ok(answer) => self.answers.push(answer),
                Err(e) => self.fail(writer, &e),
            }
        }
        self.rows += request.events.len();
        self.requests.push(request);
    }

    /// Undoes the whole transaction after `e`.
    fn fail(&mut self, writer: &Writer, e: &rusqlite::Error) {
        rollback(&writer.conn);
        writer.directory.forget(&self.created);
        self.created.clear();
        self.failed = Some(format!("append failed: {e}"));
    }

    /// Commits; answers one result per request, in order, and the batch's
    /// time. `Ok` answers are committed.
    fn commit(
        mut self,
        writer: &Writer,
    ) -> (
        Vec<WriteRequest>,
        Vec<Result<AppendResult, StoreError>>,
        String,
    ) {
        let stats = &writer.stats;
        let applied = self.started.elapsed().saturating_sub(self.waited);
        StatCounters::add(&stats.apply_nanos, applied);
        StatCounters::add(&stats.wait_nanos, self.waited);
        if self.failed.is_none() {
            let committing = Instant::now();
            let committed = execute_cached(&writer.conn, "COMMIT");
            StatCounters::add_time(&stats.commit_nanos, committing);
            match committed {
                Ok(()) => {
                    if let Some(&(_, last)) = self.created.last() {
                        writer.directory.committed(last);
                    }
                }
                Err(e) => self.fail(writer, &e),
            }
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .appends
            .fetch_add(self.requests.len() as u64, Ordering::Relaxed);
        stats.events.fetch_add(self.rows as u64, Ordering::Relaxed);
        let answers = match self.failed {
            Some(message) => self
                .requests
                .iter()
                .map(|_| Err(StoreError::Unavailable(message.clone())))
                .collect(),
            None => self.answers,
        };
        (self.requests, answers, self.recorded_at)
    }
}

/// The events a batch wrote, as [`decode_row`] reads them back: those of
/// each request answered `Ok` and not a duplicate (its answer names its
/// last event; its events were inserted one after the other). Their
/// payloads and metadata are moved out of the requests.
fn committed_events(
    requests: &mut [WriteRequest],
    answers: &[Result<AppendResult, StoreError>],
    recorded_at: &str,
) -> Vec<RecordedEvent> {
    let batch_time = parse_time(recorded_at);
    let mut out = Vec::new();
    for (request, answer) in requests.iter_mut().zip(answers) {
        let Ok(result) = answer else { continue };
        if result.duplicate {
            continue;
        }
        let first = (result.position + 1) - request.events.len() as Position;
        let first_revision = (result.revision + 1) - request.events.len() as u64;
        for (i, encoded) in request.events.iter_mut().enumerate() {
            let recorded_at = match &encoded.recorded_at {
                Some(time) => parse_time(time),
                None => batch_time,
            };
            let (Some(recorded_at), event) = (recorded_at, &mut encoded.event) else {
                // Not a time this store writes: the tail is not trusted
                // with the batch (readers go to the file).
                return Vec::new();
            };
            out.push(RecordedEvent {
                event_id: event.event_id,
                stream: request.stream.clone(),
                revision: first_revision + i as u64,
                position: first + i as Position,
                event_type: std::mem::take(&mut event.event_type),
                schema_version: event.schema_version,
                recorded_at,
                payload: Arc::new(std::mem::take(&mut event.payload)),
                metadata: std::mem::take(&mut event.metadata),
            });
        }
    }
    out
}

/// A stored time, as [`decode_row`] reads it.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Runs a statement without parameters nor rows, keeping it prepared.
fn execute_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Ends the open transaction, if any, without its changes.
fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::error!("event store rollback failed: {e}");
        }
    }
}

/// Applies one append inside the batch's transaction. The inner result is
/// the caller's answer; the outer error means the whole transaction is lost.
///
/// Every check runs before the first write, so a refused append (conflict,
/// invalid) writes nothing and needs no savepoint. Once the checks passed,
/// the inserts cannot be refused: the write lock keeps other writers out,
/// and ids are distinct within an append ([`validate_append`]). An insert
/// that fails anyway (I/O error, disk full) fails the whole batch.
fn apply_request(
    writer: &Writer,
    request: &WriteRequest,
    recorded_at: &str,
    created: &mut Vec<(String, i64)>,
) -> rusqlite::Result<Result<AppendResult, StoreError>> {
    let conn = &writer.conn;
    let stream = request.stream.as_str();
    let events = &request.events;

    let Some(stream_id) = writer.directory.lookup(conn, stream)? else {
        // A new stream: nothing stored to compare with.
        if let Err(conflict) = check_expected(stream, request.expected, None) {
            return Ok(Err(conflict));
        }
        let stream_id = create_stream(conn, stream)?;
        writer.directory.add(stream, stream_id);
        created.push((request.stream.clone(), stream_id));
        return insert_events(conn, stream_id, None, events, recorded_at).map(Ok);
    };
    let actual = last_revision(conn, stream_id)?;
    // Idempotency before the revision check, so that a retried `NoStream`
    // append is answered as a duplicate.
    if let Some(answer) = find_duplicate(conn, stream_id, events)? {
        return Ok(Ok(answer));
    }
    if let Err(conflict) = check_expected(stream, request.expected, actual) {
        return Ok(Err(conflict));
    }
    // The first id is not stored (no duplicate); the others must not be
    // either.
    for event in &events[1..] {
        if find_event(conn, stream_id, &event.event_id)?.is_some() {
            let id = Uuid::from_bytes(event.event_id);
            return Ok(Err(StoreError::Invalid(format!(
                "event id {id} is already stored in {stream}"
            ))));
        }
    }
    insert_events(conn, stream_id, actual, events, recorded_at).map(Ok)
}

/// Adds the stream named `name`; answers its id.
fn create_stream(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("INSERT INTO streams (name) VALUES (?1)")?
        .execute([name])?;
    Ok(conn.last_insert_rowid())
}

/// The revision of the last event of the stream, `None` when it has none.
fn last_revision(conn: &Connection, stream_id: i64) -> rusqlite::Result<Option<u64>> {
    let revision: Option<i64> = conn
        .prepare_cached(
            "SELECT revision FROM events WHERE stream_id = ?1 ORDER BY revision DESC LIMIT 1",
        )?
        .query_row([stream_id], |r| r.get(0))
        .optional()?;
    Ok(revision.map(to_u64))
}

/// The revision and position of the event of the stream with this id.
fn find_event(
    conn: &Connection,
    stream_id: i64,
    event_id: &[u8; 16],
) -> rusqlite::Result<Option<(u64, Position)>> {
    conn.prepare_cached(
        "SELECT revision, position FROM events WHERE stream_id = ?1 AND event_id = ?2",
    )?
    .query_row(params![stream_id, &event_id[..]], |r| {
        Ok((to_u64(r.get(0)?), to_u64(r.get(1)?)))
    })
    .optional()
}

/// The answer of the original append when the first event is already in the
/// stream: its last event if the retry carries the same events, else the
/// stored first event.
fn find_duplicate(
    conn: &Connection,
    stream_id: i64,
    events: &[EncodedEvent],
) -> rusqlite::Result<Option<AppendResult>> {
    let Some((first_revision, first_position)) = find_event(conn, stream_id, &events[0].event_id)?
    else {
        return Ok(None);
    };
    let (mut revision, mut position) = (first_revision, first_position);
    if let [_, .., last] = events {
        if let Some((last_revision, last_position)) = find_event(conn, stream_id, &last.event_id)? {
            if last_revision == first_revision + events.len() as u64 - 1 {
                (revision, position) = (last_revision, last_position);
            }
        }
    }
    Ok(Some(AppendResult {
        revision,
        position,
        duplicate: true,
    }))
}

/// Inserts `events` after revision `actual` of the stream.
fn insert_events(
    conn: &Connection,
    stream_id: i64,
    actual: Option<u64>,
    events: &[EncodedEvent],
    recorded_at: &str,
) -> rusqlite::Result<AppendResult> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (event_id, stream_id, revision, event_type, schema_version, \
         recorded_at, payload, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut revision = actual.map_or(0, |r| r + 1);
    for event in events {
        stmt.execute(params![
            &event.event_id[..],
            stream_id,
            to_i64(revision),
            event.event.event_type,
            event.event.schema_version,
            event.recorded_at.as_deref().unwrap_or(recorded_at),
            event.payload,
            event.metadata,
        ])?;
        revision += 1;
    }
    Ok(AppendResult {
        revision: revision - 1,
        position: to_u64(conn.last_insert_rowid()),
        duplicate: false,
    })
}

// ---------------------------------------------------------------------------
// Head

/// Moves the head forward to `position` (never backward).
fn advance(head: &watch::Sender<Position>, position: Position) {
    head.send_if_modified(|current| {
        let newer = position > *current;
        if newer {
            *current = position;
        }
        newer
    });
}

/// The poller thread: notices commits of other connections (other processes)
/// until `stop` is dropped.
fn run_poller(conn: Connection, stop: mpsc::Receiver<()>, head: Arc<watch::Sender<Position>>) {
    let mut seen_version: Option<i64> = None;
    while !stopped(&stop, POLL_INTERVAL) {
        match poll_once(&conn, &mut seen_version) {
            Ok(Some(last)) => advance(&head, last),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("event store poller: {e}");
                seen_version = None;
            }
        }
    }
}

/// The last position, when the database changed since the last call.
fn poll_once(
    conn: &Connection,
    seen_version: &mut Option<i64>,
) -> rusqlite::Result<Option<Position>> {
    // `data_version` changes whenever another connection commits.
    let version: i64 = conn
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))?;
    if *seen_version == Some(version) {
        return Ok(None);
    }
    let last: Option<i64> = conn
        .prepare_cached("SELECT MAX(position) FROM events")?
        .query_row([], |r| r.get(0))?;
    *seen_version = Some(version);
    Ok(last.map(to_u64))
}

/// The checkpointer thread: copies the log into the database file in the
/// background until `stop` is dropped.
///
/// A passive checkpoint never holds the writer back, but the log restarts
/// from its beginning only once a checkpoint caught up with it, which cannot
/// happen while the writer keeps committing: the log would grow for as long
/// as appends go on. Once the log is past [`RESTART_LOG_PAGES`], the
/// checkpointer catches up as far as it can and raises `restart`: between two
/// batches, the writer then copies the few pages left itself, so that its
/// next transaction restarts the log.
fn run_checkpointer(conn: Connection, stop: mpsc::Receiver<()>, restart: Arc<AtomicBool>) {
    while !stopped(&stop, CHECKPOINT_INTERVAL) {
        match checkpoint(&conn) {
            Ok(true) => restart.store(true, Ordering::Relaxed),
            Ok(false) => {}
            Err(e) => tracing::warn!("event store checkpoint: {e}"),
        }
    }
}

/// One round of the checkpointer; true when the log should restart.
fn checkpoint(conn: &Connection) -> rusqlite::Result<bool> {
    /// Extra passive checkpoints before asking for a restart, at most.
    const CATCH_UP_ROUNDS: usize = 3;
    /// Pages the writer may be left to copy.
    const CATCH_UP_PAGES: i64 = 256;

    let (mut log, _) = wal_checkpoint(conn)?;
    if log < RESTART_LOG_PAGES {
        return Ok(false);
    }
    // Each round copies what the writer added during the previous one (and
    // what readers kept it from copying), so the rounds get shorter.
    for _ in 0..CATCH_UP_ROUNDS {
        let (now, copied) = wal_checkpoint(conn)?;
        let left = (now - log) + (now - copied);
        log = now;
        if left <= CATCH_UP_PAGES {
            break;
        }
    }
    Ok(true)
}

/// Runs a passive checkpoint; answers the pages in the log and the pages
/// copied into the database file.
fn wal_checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.prepare_cached("PRAGMA wal_checkpoint(PASSIVE)")?
        .query_row([], |r| Ok((r.get(1)?, r.get(2)?)))
}

// ---------------------------------------------------------------------------
// Rows and conversions

/// Decodes a row of [`SELECT_COLUMNS`].
fn decode_row(row: &Row<'_>) -> rusqlite::Result<RecordedEvent> {
    let bad = |column: usize, e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e)
    };
    // Borrowed text: no copy before parsing.
    let text = |column: usize| -> rusqlite::Result<&str> {
        row.get_ref(column)?
            .as_str()
            .map_err(|e| bad(column, e.into()))
    };
    Ok(RecordedEvent {
        position: to_u64(row.get(0)?),
        event_id: Uuid::from_bytes(row.get(1)?),
        stream: row.get(2)?,
        revision: to_u64(row.get(3)?),
        event_type: row.get(4)?,
        schema_version: row.get(5)?,
        recorded_at: DateTime::parse_from_rfc3339(text(6)?)
            .map_err(|e| bad(6, e.into()))?
            .with_timezone(&Utc),
        payload: Arc::new(serde_json::from_str(text(7)?).map_err(|e| bad(7, e.into()))?),
        metadata: serde_json::from_str(text(8)?).map_err(|e| bad(8, e.into()))?,
    })
}

/// The first `max` rows. Reads take no `LIMIT ?`: SQLite re-prepares a
/// statement whenever a bound LIMIT differs from the last one (its planner
/// uses the value), which cost a parse per read; rows are made one at a
/// time, so stopping after `max` reads no more than a LIMIT would.
fn collect(
    rows: impl Iterator<Item = rusqlite::Result<RecordedEvent>>,
    max: usize,
) -> rusqlite::Result<Vec<RecordedEvent>> {
    let mut out = Vec::with_capacity(max.min(1024));
    for row in rows.take(max) {
        out.push(row?);
    }
    Ok(out)
}

/// Positions and revisions are stored as SQLite integers (i64).
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn unavailable(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("event store writer stopped".into())
}
