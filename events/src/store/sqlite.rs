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
//! # Writes: group commit
//!
//! One writer thread owns the only write connection of this instance.
//! [`EventStore::append`] encodes the events (JSON serialization happens on
//! the caller's thread), sends the request over a channel and awaits the
//! answer. The writer blocks for one request, takes every request already
//! queued (up to [`MAX_BATCH_REQUESTS`] requests or [`MAX_BATCH_ROWS`]
//! events), applies them all in one `BEGIN IMMEDIATE` transaction and
//! commits once: one `fsync` for the whole batch. A request that fails its
//! checks (conflict, invalid) is undone alone and answered with its error;
//! the others commit. Every answer is sent only after the commit returned, so
//! an acknowledged append is durable.
//!
//! Checks read the stream inside the write transaction, so appends by other
//! processes on the same file are taken into account: SQLite's write lock
//! serializes the writers of all processes.
//!
//! # Reads and the head
//!
//! Reads run on the blocking thread pool with a small pool of read-only
//! connections; WAL readers never block the writer nor each other. The head
//! moves when this instance commits, and a poller thread notices commits of
//! other processes within [`POLL_INTERVAL`].

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use super::checks::{check_expected, validate_append};
use super::{
    AppendResult, EventData, EventStore, ExpectedRevision, Position, RecordedEvent, StoreError,
};

/// Name of the database file inside the store's folder.
pub const DB_FILE: &str = "events.db";

/// How long a connection waits for a lock held by another connection
/// (another process appending, a checkpoint) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the poller looks for commits of other processes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How often the checkpointer copies the log into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// The writer checkpoints by itself once the log holds this many pages. The
/// log only restarts from its beginning after a checkpoint that caught up
/// with it, which the background checkpointer cannot achieve while the
/// writer keeps committing; by then most pages are already copied.
const WRITER_CHECKPOINT_PAGES: u32 = 8192;

/// At most this many append requests share one transaction.
pub const MAX_BATCH_REQUESTS: usize = 512;

/// The writer stops taking requests into a batch once it holds this many
/// events (a single larger request still goes through, alone).
pub const MAX_BATCH_ROWS: usize = 20_000;

/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 4;

/// The schema version this code writes and reads (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY,
    event_id       TEXT    NOT NULL,
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
";

const SELECT_COLUMNS: &str = "SELECT position, event_id, stream, revision, event_type, \
     schema_version, recorded_at, payload, metadata FROM events";

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
        let (head, _) = watch::channel(to_u64(last.unwrap_or(0)));
        let head = Arc::new(head);

        // Open every connection before starting any thread, so that an error
        // leaves nothing behind.
        let poll_conn = open_reader(&path).map_err(|e| unavailable(&path, e))?;
        let checkpoint_conn = open_checkpointer(&path).map_err(|e| unavailable(&path, e))?;

        let (requests, queue) = mpsc::channel();
        let writer = {
            let head = Arc::clone(&head);
            std::thread::Builder::new()
                .name("event-store-writer".into())
                .spawn(move || run_writer(conn, queue, head))
                .map_err(|e| StoreError::Unavailable(format!("cannot start writer: {e}")))?
        };
        let mut store = SqliteStore {
            readers: Arc::new(ReaderPool::new(path.clone())),
            path,
            requests: Some(requests),
            writer: Some(writer),
            background: Vec::with_capacity(2),
            head: Arc::clone(&head),
        };
        // On error, dropping `store` stops what was started.
        store
            .background
            .push(Background::spawn("event-store-poller", move |stop| {
                run_poller(poll_conn, stop, head)
            })?);
        store.background.push(Background::spawn(
            "event-store-checkpointer",
            move |stop| run_checkpointer(checkpoint_conn, stop),
        )?);
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
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
            .iter()
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
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{SELECT_COLUMNS} WHERE stream = ?1 AND revision >= ?2 ORDER BY revision LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![stream, from, limit(max)], decode_row)?;
            collect(rows, max)
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
            let mut stmt = conn.prepare_cached(&format!(
                "{SELECT_COLUMNS} WHERE position > ?1 ORDER BY position LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![after, limit(max)], decode_row)?;
            collect(rows, max)
        })
        .await
    }

    fn head(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }
}

// ---------------------------------------------------------------------------
// Connections

fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let sql = |e| unavailable(path, e);
    let mut conn = Connection::open(path).map_err(sql)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    if let Ok(ps) = std::env::var("IBL_AUTOCKPT") {
        conn.execute_batch(&format!("PRAGMA wal_autocheckpoint={ps}"))
            .map_err(sql)?;
    }
    if let Ok(ps) = std::env::var("IBL_SYNC") {
        conn.execute_batch(&format!("PRAGMA synchronous={ps}"))
            .map_err(sql)?;
    }
    if let Ok(ps) = std::env::var("IBL_CACHE") {
        conn.execute_batch(&format!("PRAGMA cache_size={ps}"))
            .map_err(sql)?;
    }
    if let Ok(ps) = std::env::var("IBL_PAGE_SIZE") {
        conn.execute_batch(&format!("PRAGMA page_size={ps}"))
            .map_err(sql)?;
    }
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
    if let Ok(ps) = std::env::var("IBL_SYNC") {
        conn.execute_batch(&format!("PRAGMA synchronous={ps}"))
            .map_err(sql)?;
    }
    if let Ok(ps) = std::env::var("IBL_AUTOCKPT") {
        conn.execute_batch(&format!("PRAGMA wal_autocheckpoint={ps}"))
            .map_err(sql)?;
    }
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
        SCHEMA_VERSION => {}
        other => {
            return Err(StoreError::Unavailable(format!(
            "{}: unknown event store schema version {other} (this build knows {SCHEMA_VERSION})",
            path.display()
        )))
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

/// An event ready to be written: everything serialized by the caller.
struct EncodedEvent {
    event_id: String,
    event_type: String,
    schema_version: u32,
    payload: String,
    metadata: String,
}

impl EncodedEvent {
    fn new(event: &EventData) -> Result<Self, StoreError> {
        let payload = serde_json::to_string(&event.payload)
            .map_err(|e| StoreError::Invalid(format!("payload of {}: {e}", event.event_id)))?;
        let metadata = serde_json::to_string(&event.metadata)
            .map_err(|e| StoreError::Invalid(format!("metadata of {}: {e}", event.event_id)))?;
        Ok(Self {
            event_id: event.event_id.hyphenated().to_string(),
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload,
            metadata,
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

/// The writer thread: batches requests until the channel closes.
fn run_writer(
    conn: Connection,
    queue: mpsc::Receiver<WriteRequest>,
    head: Arc<watch::Sender<Position>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH_REQUESTS);
    let pipe = std::env::var("IBL_PIPE").is_ok();
    let (stx, srx) = mpsc::channel::<(
        Vec<(
            oneshot::Sender<Result<AppendResult, StoreError>>,
            Result<AppendResult, StoreError>,
        )>,
        Option<u64>,
    )>();
    let wal_path = conn.path().map(|p| format!("{p}-wal")).unwrap_or_default();
    let sh = Arc::clone(&head);
    let syncer = std::thread::spawn(move || {
        let wal = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&wal_path)
            .unwrap();
        let mut n = 0u64;
        let mut items = 0u64;
        while let Ok(first) = srx.recv() {
            let mut all = vec![first];
            while let Ok(x) = srx.try_recv() {
                all.push(x);
            }
            wal.sync_data().unwrap();
            n += 1;
            items += all.len() as u64;
            let mx = all.iter().filter_map(|x| x.1).max();
            if let Some(p) = mx {
                advance(&sh, p);
            }
            for (replies, _) in all {
                for (r, a) in replies {
                    let _ = r.send(a);
                }
            }
        }
        eprintln!(
            "DEBUG syncs={n} batches/sync={:.1}",
            items as f64 / n.max(1) as f64
        );
    });
    let (mut nb, mut nr) = (0u64, 0u64);
    let mut t_commit = Duration::ZERO;
    // `recv` fails once every sender is gone and the queue is empty.
    while let Ok(first) = queue.recv() {
        let mut rows = first.events.len();
        batch.push(first);
        while batch.len() < MAX_BATCH_REQUESTS && rows < MAX_BATCH_ROWS {
            match queue.try_recv() {
                Ok(request) => {
                    rows += request.events.len();
                    batch.push(request);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        nb += 1;
        nr += batch.len() as u64;
        let t0 = std::time::Instant::now();
        let answers = commit_batch(&conn, &batch);
        t_commit += t0.elapsed();
        if nb % 500 == 0 {
            eprintln!(
                "DEBUG commit-only={:?} batches={nb} requests={nr} avg={:.1} batch_total={:?}",
                Duration::from_nanos(COMMIT_NS.swap(0, std::sync::atomic::Ordering::Relaxed)) / 500,
                nr as f64 / nb as f64,
                t_commit / 500
            );
            nb = 0;
            nr = 0;
            t_commit = Duration::ZERO;
        }
        // Move the head before answering, so that a caller sees its own
        // append in `head()` once `append` returned.
        let committed = answers
            .iter()
            .filter_map(|answer| answer.as_ref().ok().map(|result| result.position))
            .max();
        if pipe {
            let _ = stx.send((
                batch.drain(..).map(|r| r.reply).zip(answers).collect(),
                committed,
            ));
            continue;
        }
        if let Some(position) = committed {
            advance(&head, position);
        }
        for (request, answer) in batch.drain(..).zip(answers) {
            // The caller may have given up waiting; nothing to do then.
            let _ = request.reply.send(answer);
        }
    }
    drop(stx);
    let _ = syncer.join();
    eprintln!(
        "DEBUG commit-only={:?}",
        Duration::from_nanos(COMMIT_NS.swap(0, std::sync::atomic::Ordering::Relaxed))
    );
    eprintln!(
        "DEBUG batches={nb} requests={nr} avg={:.1} total_commit={:?} per_batch={:?} ",
        nr as f64 / nb as f64,
        t_commit,
        t_commit / nb.max(1) as u32
    );
}

/// Applies `batch` in one transaction. Answers one result per request, in
/// order; `Ok` answers are committed.
fn commit_batch(
    conn: &Connection,
    batch: &[WriteRequest],
) -> Vec<Result<AppendResult, StoreError>> {
    let fail_all = |e: &rusqlite::Error| -> Vec<Result<AppendResult, StoreError>> {
        let message = format!("append failed: {e}");
        batch
            .iter()
            .map(|_| Err(StoreError::Unavailable(message.clone())))
            .collect()
    };

    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        return fail_all(&e);
    }
    let recorded_at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut answers = Vec::with_capacity(batch.len());
    for request in batch {
        match apply_request(conn, request, &recorded_at) {
            Ok(answer) => answers.push(answer),
            Err(e) => {
                // The transaction can no longer be trusted: undo it all.
                rollback(conn);
                return fail_all(&e);
            }
        }
    }
    let tc = std::time::Instant::now();
    let r = conn.execute_batch("COMMIT");
    COMMIT_NS.fetch_add(
        tc.elapsed().as_nanos() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    if let Err(e) = r {
        rollback(conn);
        return fail_all(&e);
    }
    answers
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
/// the caller's answer (its changes are undone when it is an error); the
/// outer error means the whole transaction is lost.
fn apply_request(
    conn: &Connection,
    request: &WriteRequest,
    recorded_at: &str,
) -> rusqlite::Result<Result<AppendResult, StoreError>> {
    let stream = request.stream.as_str();
    let events = &request.events;
    let actual: Option<u64> = conn
        .prepare_cached(
            "SELECT revision FROM events WHERE stream = ?1 ORDER BY revision DESC LIMIT 1",
        )?
        .query_row([stream], |r| r.get::<_, i64>(0))
        .optional()?
        .map(to_u64);

    // Idempotency before the revision check, so that a retried `NoStream`
    // append is answered as a duplicate. Only an existing stream can hold it.
    if actual.is_some() {
        if let Some(answer) = find_duplicate(conn, stream, events)? {
            return Ok(Ok(answer));
        }
    }
    if let Err(conflict) = check_expected(stream, request.expected, actual) {
        return Ok(Err(conflict));
    }

    // A failed statement undoes itself; several inserts need a savepoint to
    // be undone together.
    let savepoint = events.len() > 1;
    if savepoint {
        conn.prepare_cached("SAVEPOINT append")?.execute([])?;
    }
    match insert_events(conn, stream, actual, events, recorded_at) {
        Ok(answer) => {
            if savepoint {
                conn.prepare_cached("RELEASE append")?.execute([])?;
            }
            Ok(Ok(answer))
        }
        Err(e) => {
            // I/O errors may have rolled the whole transaction back.
            if conn.is_autocommit() {
                return Err(e);
            }
            if savepoint {
                conn.prepare_cached("ROLLBACK TO append")?.execute([])?;
                conn.prepare_cached("RELEASE append")?.execute([])?;
            }
            let answer = if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) {
                StoreError::Invalid(format!("an event id is already stored in {stream}: {e}"))
            } else {
                StoreError::Unavailable(format!("append to {stream} failed: {e}"))
            };
            Ok(Err(answer))
        }
    }
}

/// The answer of the original append when the first event is already in the
/// stream: its last event if the retry carries the same events, else the
/// stored first event.
fn find_duplicate(
    conn: &Connection,
    stream: &str,
    events: &[EncodedEvent],
) -> rusqlite::Result<Option<AppendResult>> {
    let mut stmt = conn.prepare_cached(
        "SELECT revision, position FROM events WHERE stream = ?1 AND event_id = ?2",
    )?;
    let mut lookup = |event: &EncodedEvent| {
        stmt.query_row([stream, event.event_id.as_str()], |r| {
            Ok((to_u64(r.get(0)?), to_u64(r.get(1)?)))
        })
        .optional()
    };
    let Some((first_revision, first_position)) = lookup(&events[0])? else {
        return Ok(None);
    };
    let (mut revision, mut position) = (first_revision, first_position);
    if let [_, .., last] = events {
        if let Some((last_revision, last_position)) = lookup(last)? {
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

fn insert_events(
    conn: &Connection,
    stream: &str,
    actual: Option<u64>,
    events: &[EncodedEvent],
    recorded_at: &str,
) -> rusqlite::Result<AppendResult> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (event_id, stream, revision, event_type, schema_version, \
         recorded_at, payload, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut revision = actual.map_or(0, |r| r + 1);
    for event in events {
        stmt.execute(params![
            event.event_id,
            stream,
            to_i64(revision),
            event.event_type,
            event.schema_version,
            recorded_at,
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
/// background, so that the writer rarely has to (see [`WRITER_CHECKPOINT_PAGES`]).
fn run_checkpointer(conn: Connection, stop: mpsc::Receiver<()>) {
    while !stopped(&stop, CHECKPOINT_INTERVAL) {
        // A passive checkpoint never waits for the writer nor for readers:
        // it copies what it can.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!("event store checkpoint: {e}");
        }
    }
}

// ---------------------------------------------------------------------------
// Rows and conversions

fn decode_row(row: &Row<'_>) -> rusqlite::Result<RecordedEvent> {
    let bad = |column: usize, e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e)
    };
    let event_id: String = row.get(1)?;
    let recorded_at: String = row.get(6)?;
    let payload: String = row.get(7)?;
    let metadata: String = row.get(8)?;
    Ok(RecordedEvent {
        position: to_u64(row.get(0)?),
        event_id: Uuid::parse_str(&event_id).map_err(|e| bad(1, e.into()))?,
        stream: row.get(2)?,
        revision: to_u64(row.get(3)?),
        event_type: row.get(4)?,
        schema_version: row.get(5)?,
        recorded_at: DateTime::parse_from_rfc3339(&recorded_at)
            .map_err(|e| bad(6, e.into()))?
            .with_timezone(&Utc),
        payload: serde_json::from_str(&payload).map_err(|e| bad(7, e.into()))?,
        metadata: serde_json::from_str(&metadata).map_err(|e| bad(8, e.into()))?,
    })
}

fn collect(
    rows: impl Iterator<Item = rusqlite::Result<RecordedEvent>>,
    max: usize,
) -> rusqlite::Result<Vec<RecordedEvent>> {
    let mut out = Vec::with_capacity(max.min(1024));
    for row in rows {
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

fn limit(max: usize) -> i64 {
    i64::try_from(max).unwrap_or(i64::MAX)
}

fn unavailable(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("event store writer stopped".into())
}

pub static COMMIT_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
