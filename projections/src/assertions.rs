//! The read models that grow with every write: assertions and the records
//! of `Idempotency-Key` requests, kept in SQLite (a file of their own in
//! the data folder) rather than on the heap.
//!
//! Why SQLite and not a snapshot: a million assertions take about 1 KB
//! each on the heap (975 MiB resident), and a snapshot of them would be
//! rewritten whole every time; in a table each batch of events is one
//! transaction that also moves the checkpoint, so the file is always a
//! consistent state at a known position (a crash rolls back to the last
//! commit, and the projector resumes from its checkpoint). Rows are read
//! through the page cache, a few MiB, whatever the table's size. New
//! issues wait in a tail in memory for at most 20 ms before they are
//! written (see [`AssertionsModel`]), so no request waits for a commit.
//!
//! The file is rebuilt from the log (deleted and recreated) when it is
//! missing, not a database of ours, of another schema version, or covers a
//! position of another log (the id of the event at its checkpoint is kept
//! and checked).

use std::collections::hash_map::{Entry, HashMap};
use std::collections::HashSet;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use ibl_events::credentials::{AssertionEvent, CredentialEvent, Recipient};
use ibl_events::{DomainEvent, EventStore, Position, RecordedEvent};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Applied, ReadModel};

/// The schema this code writes (`PRAGMA user_version`): bump it when the
/// tables or the stored views change shape; a file of another version is
/// rebuilt.
const VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE meta (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checkpoint INTEGER NOT NULL,
    event_id   BLOB                         -- of the event at checkpoint
);
INSERT INTO meta VALUES (1, 0, NULL);
CREATE TABLE assertions (
    seq           INTEGER PRIMARY KEY,      -- issue order
    entity_id     TEXT    NOT NULL UNIQUE,
    platform      TEXT    NOT NULL,
    credential_id TEXT    NOT NULL,
    email         TEXT    NOT NULL,         -- the recipient's, lower case
    username      TEXT    NOT NULL,         -- the recipient's
    expires       INTEGER,                  -- µs since the epoch; NULL: never
    revoked       INTEGER NOT NULL DEFAULT 0,
    view          TEXT    NOT NULL          -- the AssertionView, JSON
);
-- Pages in issue order, and counts of the valid ones from the index alone
-- (each index an insert writes costs a page in the commit: no more).
CREATE INDEX assertions_of_platform ON assertions (platform, seq, revoked, expires);
CREATE INDEX assertions_of_credential ON assertions (credential_id, seq, revoked, expires, platform);
-- Who already holds a credential, by recipient.
CREATE INDEX holders_by_email ON assertions (credential_id, email) WHERE email != '';
CREATE INDEX holders_by_username ON assertions (credential_id, username) WHERE username != '';
-- The course of each live credential, for the assertion lists' filter.
CREATE TABLE courses (
    credential_id TEXT PRIMARY KEY,
    course        TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX courses_by_name ON courses (course);
CREATE TABLE idempotency (
    platform     TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    streams      TEXT    NOT NULL,          -- JSON array, in the order written
    position     INTEGER NOT NULL,
    PRIMARY KEY (platform, key)
) WITHOUT ROWID;
";

/// An assertion as the lists and the public route show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssertionView {
    pub platform: String,
    pub entity_id: String,
    pub credential_id: String,
    pub recipient: Recipient,
    pub issued_on: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub narrative: String,
    pub metadata: serde_json::Value,
    pub evidence: Vec<ibl_events::credentials::Evidence>,
    pub revoked: Option<Revocation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub reason: String,
    pub at: DateTime<Utc>,
}

impl AssertionView {
    /// The view of an assertion as issued (`None` for another event).
    pub fn issued(event: AssertionEvent) -> Option<Self> {
        match event {
            AssertionEvent::AssertionIssued {
                platform,
                entity_id,
                credential_id,
                issuer_id: _,
                recipient,
                issued_on,
                expires,
                narrative,
                metadata,
                evidence,
            } => Some(AssertionView {
                platform,
                entity_id,
                credential_id,
                recipient,
                issued_on,
                expires,
                narrative,
                metadata,
                evidence,
                revoked: None,
            }),
            AssertionEvent::AssertionRevoked { .. } => None,
        }
    }

    /// The view after `event`, one of its stream's: an issue makes it, a
    /// revocation marks it.
    pub fn evolve(view: Option<Self>, event: AssertionEvent) -> Option<Self> {
        match event {
            issued @ AssertionEvent::AssertionIssued { .. } => Self::issued(issued),
            AssertionEvent::AssertionRevoked { reason, revoked_at } => view.map(|view| Self {
                revoked: Some(Revocation {
                    reason,
                    at: revoked_at,
                }),
                ..view
            }),
        }
    }

    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
    pub fn valid(&self, now: DateTime<Utc>) -> bool {
        self.revoked.is_none() && !self.expired(now)
    }
}

/// A request that carried an `Idempotency-Key`: the hash of its body and the
/// first stream of each kind it wrote, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub request_hash: String,
    pub streams: Vec<String>,
    pub position: Position,
}

impl IdempotencyRecord {
    /// Notes that the request wrote `stream` (up to `position`): the first
    /// stream of each kind is kept, which is all `created` needs, so a bulk
    /// issue's record stays small.
    fn add(&mut self, stream: &str, position: Position) {
        let kind = |s: &str| s.split_once('-').map_or(s, |(k, _)| k).to_owned();
        if !self.streams.iter().any(|s| kind(s) == kind(stream)) {
            self.streams.push(stream.to_owned());
        }
        self.position = position;
    }

    /// The id of the first entity of kind `prefix` (`"assertion-"`, ...) the
    /// request wrote, or `""`.
    pub fn created(&self, prefix: &str) -> &str {
        self.streams
            .iter()
            .find_map(|s| s.strip_prefix(prefix))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct AssertionFilter {
    pub credential: Option<String>,
    pub course: Option<String>,
    pub include_revoked: bool,
    pub include_expired: bool,
    pub now: DateTime<Utc>,
}

/// A read that failed in the database (not a missing row): the request
/// answers 503.
#[derive(Debug, thiserror::Error)]
#[error("a read model: {0}")]
pub struct ReadError(String);

impl ReadError {
    pub fn new(what: impl Into<String>) -> Self {
        ReadError(what.into())
    }
}

/// The queries every adapter of the assertions read model answers (SQLite
/// in the data folder: [`AssertionsModel`]; Redis: [`crate::redis_assertions`]).
/// Async, so that an adapter over the network does not block a worker.
#[async_trait::async_trait]
pub trait AssertionQueries: Send + Sync + 'static {
    /// The backend's name, as `/readyz` shows it.
    fn backend(&self) -> &'static str;

    /// Any platform's assertion: for public verification.
    async fn assertion(&self, entity_id: &str) -> Result<Option<AssertionView>, ReadError>;

    /// A page of a platform's assertions, in issue order, and the count of
    /// all that match.
    async fn assertions(
        &self,
        platform: &str,
        filter: &AssertionFilter,
        offset: usize,
        limit: usize,
    ) -> Result<crate::credentials::Page<AssertionView>, ReadError>;

    /// Of `recipients`, those who already hold a valid assertion of the
    /// credential other than those in `except`: their emails (lower case)
    /// and their usernames. Looks up only these recipients.
    async fn holders_among(
        &self,
        credential_id: &str,
        platform: &str,
        now: DateTime<Utc>,
        recipients: &[Recipient],
        except: &HashSet<&str>,
    ) -> Result<(HashSet<String>, HashSet<String>), ReadError>;

    /// The record of a request sent with an `Idempotency-Key`.
    async fn idempotency(
        &self,
        platform: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, ReadError>;
}

#[async_trait::async_trait]
impl AssertionQueries for AssertionsModel {
    fn backend(&self) -> &'static str {
        "read_models"
    }

    async fn assertion(&self, entity_id: &str) -> Result<Option<AssertionView>, ReadError> {
        AssertionsModel::assertion(self, entity_id)
    }

    async fn assertions(
        &self,
        platform: &str,
        filter: &AssertionFilter,
        offset: usize,
        limit: usize,
    ) -> Result<crate::credentials::Page<AssertionView>, ReadError> {
        AssertionsModel::assertions(self, platform, filter, offset, limit)
    }

    async fn holders_among(
        &self,
        credential_id: &str,
        platform: &str,
        now: DateTime<Utc>,
        recipients: &[Recipient],
        except: &HashSet<&str>,
    ) -> Result<(HashSet<String>, HashSet<String>), ReadError> {
        AssertionsModel::holders_among(self, credential_id, platform, now, recipients, except)
    }

    async fn idempotency(
        &self,
        platform: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, ReadError> {
        AssertionsModel::idempotency(self, platform, key)
    }
}

impl From<rusqlite::Error> for ReadError {
    fn from(e: rusqlite::Error) -> Self {
        ReadError(e.to_string())
    }
}

/// The SQLite adapter of the assertions read model, with a tail in memory.
///
/// An assertion issued is applied to the tail (a few microseconds), which
/// is what a write waits for before it answers; a thread of the model's
/// writes the tail to the file in one transaction every
/// [`FLUSH_EVERY`], so a commit is paid once for many events and never on
/// a request's path. Only issues (and the records of their requests) wait
/// in the tail: any other event (a revocation, a credential's course)
/// first writes the tail and itself to the file, so the file is current
/// for everything but those issues. Reads see the file as of one read
/// transaction and the tail's events after the file's checkpoint: a
/// consistent prefix of the log. The tail is bounded ([`MAX_TAIL`]): past
/// it, the projector writes it itself.
pub struct AssertionsModel {
    path: PathBuf,
    shared: Arc<Shared>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// Stops the flusher when the model is dropped.
    stop: Arc<AtomicBool>,
}

struct Shared {
    writer: Mutex<Connection>,
    tail: RwLock<Tail>,
    /// Every event up to here is applied: in the file or in the tail.
    checkpoint: AtomicU64,
}

/// Applied, not yet in the file.
#[derive(Default)]
struct Tail {
    /// The events to write, in order.
    pending: Vec<RecordedEvent>,
    /// The assertions they issue, in order, with their positions.
    issued: VecDeque<(Position, Arc<AssertionView>)>,
    by_id: HashMap<String, Arc<AssertionView>>,
    /// The records of keyed requests with events in `pending`, as they
    /// will be once written (`position`: their last event).
    records: HashMap<(String, String), IdempotencyRecord>,
}

/// How often the flusher writes the tail to the file.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// The most events the tail holds before the projector writes it itself.
const MAX_TAIL: usize = 4_096;

impl Drop for AssertionsModel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.shared.flush(&[]);
    }
}

impl Shared {
    fn tail(&self) -> std::sync::RwLockReadGuard<'_, Tail> {
        self.tail.read().unwrap_or_else(|p| p.into_inner())
    }

    fn tail_mut(&self) -> std::sync::RwLockWriteGuard<'_, Tail> {
        self.tail.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the tail and then `more` to the file in one transaction
    /// (under the writer's lock, so that writes keep the log's order), then
    /// drops from the tail what the file holds. Retries until it succeeds.
    fn flush(&self, more: &[RecordedEvent]) {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let (mut events, views) = {
            let mut tail = self.tail_mut();
            let events = std::mem::take(&mut tail.pending);
            // The views the tail built of its issues: written as they are,
            // not decoded from their events again.
            let views: Vec<(Position, Arc<AssertionView>)> = tail.issued.iter().cloned().collect();
            (events, views)
        };
        if events.is_empty() && more.is_empty() {
            return;
        }
        events.extend_from_slice(more);
        let mut delay = std::time::Duration::from_millis(50);
        while let Err(error) = apply_batch(&mut conn, &events, &views) {
            tracing::error!(%error, "the assertions read model could not write; retrying");
            std::thread::sleep(delay);
            delay = (delay * 2).min(std::time::Duration::from_secs(5));
        }
        let written = events.last().map_or(0, |e| e.position);
        let mut tail = self.tail_mut();
        while tail.issued.front().is_some_and(|(p, _)| *p <= written) {
            if let Some((_, view)) = tail.issued.pop_front() {
                tail.by_id.remove(&view.entity_id);
            }
        }
        tail.records.retain(|_, r| r.position > written);
    }
}

/// Whether `event` may wait in the tail: an issue, or an event of no
/// stream of this model's (it matters only for its request's record).
fn may_wait(event: &RecordedEvent) -> bool {
    if event.stream.starts_with("credential-") {
        return false;
    }
    !event.stream.starts_with("assertion-") || event.event_type == "AssertionIssued"
}

fn flusher(shared: Arc<Shared>, stop: Arc<AtomicBool>) -> Result<(), String> {
    std::thread::Builder::new()
        .name("assertions-flush".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(FLUSH_EVERY);
                shared.flush(&[]);
            }
            shared.flush(&[]);
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Readers: enough for the HTTP workers of a few cores without waiting.
const READERS: usize = 8;

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // A read model: a commit lost to a power cut is rebuilt from the log
    // (the checkpoint rolls back with it), so NORMAL is enough.
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -4096;")?;
    Ok(conn)
}

/// Opens the file at `path` as it is, or answers why it must be rebuilt.
fn open_existing(path: &Path) -> Result<Connection, String> {
    let conn = connect(path).map_err(|e| e.to_string())?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if version != VERSION {
        return Err(format!(
            "schema version {version}, this code's is {VERSION}"
        ));
    }
    // Reading the version and the checkpoint is the check: a file that is
    // not a database, or not ours, fails here. No `quick_check`: it reads
    // the whole file (a GB with a million assertions) at every start, and
    // a WAL file with synchronous=NORMAL survives crashes intact.
    read_meta(&conn).map_err(|e| e.to_string())?;
    Ok(conn)
}

fn create(path: &Path) -> Result<Connection, String> {
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", file.display())),
        }
    }
    let conn = connect(path).map_err(|e| e.to_string())?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .map_err(|e| e.to_string())?;
    conn.execute_batch(&format!("{SCHEMA} PRAGMA user_version = {VERSION};"))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

impl AssertionsModel {
    /// Opens the model's file at `path` (created with its folder when
    /// missing), checked against `store`: a file that cannot be used as it
    /// is, is rebuilt from position 0. Answers the model and, when it was
    /// rebuilt, why.
    pub async fn open(
        path: &Path,
        store: &dyn EventStore,
    ) -> Result<(Self, Option<String>), String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let existing = if path.exists() {
            open_existing(path)
        } else {
            Err("no file".into())
        };
        let (writer, rebuilt) = match existing {
            Ok(conn) => {
                let (checkpoint, event_id) = read_meta(&conn).map_err(|e| e.to_string())?;
                let at = crate::snapshot::event_at(store, checkpoint).await?;
                if at == event_id {
                    (conn, None)
                } else {
                    drop(conn);
                    let why = format!("it covers position {checkpoint} of another log");
                    (create(path)?, Some(why))
                }
            }
            Err(why) => (create(path)?, Some(why)),
        };
        let (checkpoint, _) = read_meta(&writer).map_err(|e| e.to_string())?;
        // The writer keeps more pages: index inserts land at many places.
        writer
            .execute_batch("PRAGMA cache_size = -16384;")
            .map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            writer: Mutex::new(writer),
            tail: RwLock::new(Tail::default()),
            checkpoint: AtomicU64::new(checkpoint),
        });
        let stop = Arc::new(AtomicBool::new(false));
        flusher(shared.clone(), stop.clone())?;
        let readers = (0..READERS)
            .map(|_| connect(path).map(Mutex::new))
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| e.to_string())?;
        Ok((
            Self {
                path: path.to_owned(),
                shared,
                readers,
                next_reader: AtomicUsize::new(0),
                stop,
            },
            rebuilt,
        ))
    }

    /// The file this model lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes what the tail holds to the file now.
    pub fn flush(&self) {
        self.shared.flush(&[]);
    }

    /// Runs `f` on a free reader (or waits for one).
    fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, ReadError> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Ok(conn) = self.readers[(start + i) % self.readers.len()].try_lock() {
                return Ok(f(&conn)?);
            }
        }
        let conn = self.readers[start % self.readers.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// Any platform's assertion: for public verification.
    pub fn assertion(&self, entity_id: &str) -> Result<Option<AssertionView>, ReadError> {
        // The tail first: what leaves it is in the file already.
        if let Some(view) = self.shared.tail().by_id.get(entity_id) {
            return Ok(Some(AssertionView::clone(view)));
        }
        let json: Option<String> = self.read(|c| {
            c.prepare_cached("SELECT view FROM assertions WHERE entity_id = ?1")?
                .query_row([entity_id], |r| r.get(0))
                .optional()
        })?;
        json.map(|j| decode(&j)).transpose()
    }

    /// The tail's assertions of `platform` (taken before the file is read:
    /// the file's checkpoint then tells which of them it holds already).
    fn tail_of(&self, platform: &str) -> Vec<(Position, Arc<AssertionView>)> {
        self.shared
            .tail()
            .issued
            .iter()
            .filter(|(_, v)| v.platform == platform)
            .cloned()
            .collect()
    }

    /// A page of a platform's assertions, in issue order, and the count of
    /// all that match.
    pub fn assertions(
        &self,
        platform: &str,
        filter: &AssertionFilter,
        offset: usize,
        limit: usize,
    ) -> Result<crate::credentials::Page<AssertionView>, ReadError> {
        let mut cond = String::from("platform = ?1");
        if filter.credential.is_some() {
            cond.push_str(" AND credential_id = ?2");
        }
        if filter.course.is_some() {
            cond.push_str(
                " AND credential_id IN (SELECT credential_id FROM courses WHERE course = ?3)",
            );
        }
        if !filter.include_revoked {
            cond.push_str(" AND revoked = 0");
        }
        if !filter.include_expired {
            cond.push_str(" AND (expires IS NULL OR expires > ?4)");
        }
        let credential = filter.credential.as_deref().unwrap_or_default();
        let course = filter.course.as_deref().unwrap_or_default();
        let now = micros(filter.now);
        let tail = self.tail_of(platform);
        let (count, views, in_course, written) = self.read(|c| {
            // One read transaction: the rows and the checkpoint they cover.
            let tx = c.unchecked_transaction()?;
            let (written, _) = read_meta(&tx)?;
            // Unused parameters are bound too: one statement per shape.
            let bind = |sql: &str| -> rusqlite::Result<_> {
                let mut s = tx.prepare_cached(sql)?;
                for (i, name) in ["?1", "?2", "?3", "?4"].iter().enumerate() {
                    if sql.contains(name) {
                        let value: &dyn rusqlite::ToSql = match i {
                            0 => &platform,
                            1 => &credential,
                            2 => &course,
                            _ => &now,
                        };
                        s.raw_bind_parameter(i + 1, value)?;
                    }
                }
                Ok(s)
            };
            let mut s = bind(&format!("SELECT count(*) FROM assertions WHERE {cond}"))?;
            let count: i64 = s.raw_query().next()?.map_or(Ok(0), |r| r.get(0))?;
            drop(s);
            let mut s = bind(&format!(
                "SELECT view FROM assertions WHERE {cond} ORDER BY seq LIMIT {limit} OFFSET {offset}"
            ))?;
            let mut rows = s.raw_query();
            let mut views = Vec::new();
            while let Some(row) = rows.next()? {
                views.push(row.get::<_, String>(0)?);
            }
            drop(rows);
            drop(s);
            let in_course: HashSet<String> = match &filter.course {
                Some(course) => tx
                    .prepare_cached("SELECT credential_id FROM courses WHERE course = ?1")?
                    .query_map([course], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
                None => HashSet::new(),
            };
            Ok((count as usize, views, in_course, written))
        })?;
        // The tail's issues after the file's checkpoint: newer than every
        // row, never revoked (a revocation writes the tail first).
        let more: Vec<&Arc<AssertionView>> = tail
            .iter()
            .filter(|(p, _)| *p > written)
            .map(|(_, v)| v)
            .filter(|v| {
                filter
                    .credential
                    .as_deref()
                    .is_none_or(|c| v.credential_id == c)
                    && (filter.course.is_none() || in_course.contains(&v.credential_id))
                    && (filter.include_expired || !v.expired(filter.now))
            })
            .collect();
        let mut items: Vec<AssertionView> =
            views.iter().map(|j| decode(j)).collect::<Result<_, _>>()?;
        let from = offset.saturating_sub(count);
        let room = limit - items.len().min(limit);
        items.extend(
            more.iter()
                .skip(from)
                .take(room)
                .map(|v| AssertionView::clone(v)),
        );
        Ok(crate::credentials::Page {
            count: count + more.len(),
            items,
        })
    }

    /// Of `recipients`, those who already hold a valid assertion of the
    /// credential other than those in `except` (a retried request's own):
    /// their emails (lower case) and their usernames. Looks up only these
    /// recipients, however many hold the credential.
    pub fn holders_among(
        &self,
        credential_id: &str,
        platform: &str,
        now: DateTime<Utc>,
        recipients: &[Recipient],
        except: &HashSet<&str>,
    ) -> Result<(HashSet<String>, HashSet<String>), ReadError> {
        let tail = self.tail_of(platform);
        let at = micros(now);
        let (mut emails, mut usernames) = self.read(|c| {
            let mut emails = HashSet::new();
            let mut usernames = HashSet::new();
            for (column, found) in [("email", &mut emails), ("username", &mut usernames)] {
                let mut s = c.prepare_cached(&format!(
                    "SELECT entity_id FROM assertions WHERE credential_id = ?1 AND {column} = ?2
                     AND {column} != '' AND platform = ?3 AND revoked = 0
                     AND (expires IS NULL OR expires > ?4)"
                ))?;
                for r in recipients {
                    let value = match column {
                        "email" => r.email.to_lowercase(),
                        _ => r.username.clone(),
                    };
                    if value.is_empty() || found.contains(&value) {
                        continue;
                    }
                    let ids = s.query_map(params![credential_id, value, platform, at], |r| {
                        r.get::<_, String>(0)
                    })?;
                    for id in ids {
                        if !except.contains(id?.as_str()) {
                            found.insert(value);
                            break;
                        }
                    }
                }
            }
            Ok((emails, usernames))
        })?;
        // Issues still in the tail (some may be in the file too: a set).
        let wanted_emails: HashSet<String> =
            recipients.iter().map(|r| r.email.to_lowercase()).collect();
        let wanted_usernames: HashSet<&str> =
            recipients.iter().map(|r| r.username.as_str()).collect();
        for (_, v) in &tail {
            if v.credential_id != credential_id
                || !v.valid(now)
                || except.contains(v.entity_id.as_str())
            {
                continue;
            }
            let email = v.recipient.email.to_lowercase();
            if !email.is_empty() && wanted_emails.contains(&email) {
                emails.insert(email);
            }
            let username = &v.recipient.username;
            if !username.is_empty() && wanted_usernames.contains(username.as_str()) {
                usernames.insert(username.clone());
            }
        }
        Ok((emails, usernames))
    }

    pub fn idempotency(
        &self,
        platform: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, ReadError> {
        let id = (platform.to_owned(), key.to_owned());
        if let Some(record) = self.shared.tail().records.get(&id) {
            return Ok(Some(record.clone()));
        }
        self.read(|c| stored_record(c, platform, key))
    }
}

fn decode(json: &str) -> Result<AssertionView, ReadError> {
    serde_json::from_str(json).map_err(|e| ReadError(format!("a stored view: {e}")))
}

fn read_meta(conn: &Connection) -> rusqlite::Result<(Position, Option<Uuid>)> {
    conn.query_row("SELECT checkpoint, event_id FROM meta", [], |r| {
        let id: Option<Vec<u8>> = r.get(1)?;
        Ok((
            r.get::<_, i64>(0)? as Position,
            id.and_then(|b| Uuid::from_slice(&b).ok()),
        ))
    })
}

/// The digest of the model's tables (not the positions they hold) and the
/// checkpoint it covers, read in one transaction: assertions in issue
/// order, courses and `Idempotency-Key` records by key. Of one platform:
/// its assertions and records, and the courses of the credentials it
/// issued (a course matters to nothing else).
fn digest_db(conn: &Connection, platform: Option<&str>) -> Result<(Position, String), String> {
    let e = |e: rusqlite::Error| e.to_string();
    let tx = conn.unchecked_transaction().map_err(e)?;
    let (checkpoint, _) = read_meta(&tx).map_err(e)?;
    let mut rows = crate::replay::Rows::new();
    // (`?1 IS NULL`: every platform.)
    let tables: [(&str, &str); 3] = [
        (
            "assertions",
            "SELECT entity_id, platform, credential_id, email, username, expires, revoked, view
             FROM assertions WHERE ?1 IS NULL OR platform = ?1 ORDER BY seq",
        ),
        (
            "courses",
            "SELECT credential_id, course FROM courses WHERE ?1 IS NULL
             OR credential_id IN (SELECT credential_id FROM assertions WHERE platform = ?1)
             ORDER BY credential_id",
        ),
        (
            "idempotency",
            "SELECT platform, key, request_hash, streams FROM idempotency
             WHERE ?1 IS NULL OR platform = ?1 ORDER BY platform, key",
        ),
    ];
    for (name, sql) in tables {
        rows.section(name);
        let mut stmt = tx.prepare(sql).map_err(e)?;
        let width = stmt.column_count();
        let mut found = stmt.query([platform]).map_err(e)?;
        while let Some(row) = found.next().map_err(e)? {
            let values = (0..width)
                .map(|i| match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => Ok(serde_json::Value::Null),
                    rusqlite::types::ValueRef::Integer(n) => Ok(n.into()),
                    rusqlite::types::ValueRef::Text(t) => {
                        Ok(String::from_utf8_lossy(t).into_owned().into())
                    }
                    other => Err(rusqlite::Error::InvalidColumnType(
                        i,
                        name.to_owned(),
                        other.data_type(),
                    )),
                })
                .collect::<rusqlite::Result<Vec<serde_json::Value>>>()
                .map_err(e)?;
            rows.row(&values)?;
        }
    }
    Ok((checkpoint, rows.finish()))
}

/// The digest of the model in the file at `path`, as another process
/// keeps it (read without stopping it), and the position it covers.
pub fn digest_file(path: &Path, platform: Option<&str>) -> Result<(Position, String), String> {
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    digest_db(&open_existing(path)?, platform)
}

impl crate::replay::Digest for AssertionsModel {
    fn digest(&self, platform: Option<&str>) -> Result<String, String> {
        self.flush();
        let conn = self.shared.writer.lock().unwrap_or_else(|p| p.into_inner());
        digest_db(&conn, platform).map(|(_, digest)| digest)
    }
}

impl ReadModel for AssertionsModel {
    fn name(&self) -> &'static str {
        "assertions"
    }

    fn checkpoint(&self) -> Position {
        self.shared.checkpoint.load(Ordering::Acquire)
    }

    fn apply(&self, batch: &[RecordedEvent]) -> Applied {
        self.take(batch);
        Applied::Done
    }
}

impl AssertionsModel {
    /// Applies a batch: into the tail when its events may wait, else
    /// written now.
    fn take(&self, batch: &[RecordedEvent]) {
        let checkpoint = self.checkpoint();
        let events: Vec<&RecordedEvent> =
            batch.iter().filter(|e| e.position > checkpoint).collect();
        let Some(last) = events.last().map(|e| e.position) else {
            return;
        };
        let write_now = |events: Vec<&RecordedEvent>| {
            let batch: Vec<RecordedEvent> = events.into_iter().cloned().collect();
            self.shared.flush(&batch);
            self.shared.checkpoint.store(last, Ordering::Release);
        };
        let pending = self.shared.tail().pending.len();
        if pending + events.len() > MAX_TAIL || !events.iter().all(|e| may_wait(e)) {
            return write_now(events);
        }
        // The records these events touch, as the tail or else the file has
        // them (read before the tail is locked: only this projector adds).
        let mut records: HashMap<(String, String), IdempotencyRecord> = HashMap::new();
        for event in &events {
            let (Some(tag), Some(platform)) =
                (&event.metadata.idempotency, &event.metadata.actor.platform)
            else {
                continue;
            };
            let id = (platform.clone(), tag.key.clone());
            if !records.contains_key(&id) {
                let known = match self.shared.tail().records.get(&id) {
                    Some(record) => Some(record.clone()),
                    // A record the file cannot show now: the writer, which
                    // reads and merges it in its transaction, does it.
                    None => match self.idempotency(platform, &tag.key) {
                        Ok(known) => known,
                        Err(_) => return write_now(events),
                    },
                };
                records.insert(
                    id.clone(),
                    known.unwrap_or_else(|| IdempotencyRecord {
                        request_hash: tag.request_hash.clone(),
                        streams: Vec::new(),
                        position: event.position,
                    }),
                );
            }
            if let Some(record) = records.get_mut(&id) {
                record.add(&event.stream, event.position);
            }
        }
        let mut views = Vec::new();
        for event in &events {
            if !event.stream.starts_with("assertion-") {
                continue;
            }
            match AssertionEvent::from_recorded(event) {
                Ok(issued) => {
                    if let Some(view) = AssertionView::issued(issued) {
                        views.push((event.position, Arc::new(view)));
                    }
                }
                Err(error) => tracing::error!(
                    stream = %event.stream, revision = event.revision, %error,
                    "event skipped by the assertions read model"
                ),
            }
        }
        let mut tail = self.shared.tail_mut();
        tail.pending.extend(events.into_iter().cloned());
        for (position, view) in views {
            tail.by_id.insert(view.entity_id.clone(), view.clone());
            tail.issued.push_back((position, view));
        }
        tail.records.extend(records);
        drop(tail);
        self.shared.checkpoint.store(last, Ordering::Release);
    }
}

/// Applies the events after the stored checkpoint and moves it, in one
/// transaction. Answers the new checkpoint (`None`: nothing new).
/// `views`: views of issues among them, by position, in order (each used
/// instead of decoding its event; any may be missing).
fn apply_batch(
    conn: &mut Connection,
    batch: &[RecordedEvent],
    mut views: &[(Position, Arc<AssertionView>)],
) -> rusqlite::Result<Option<Position>> {
    let tx = conn.transaction()?;
    let (checkpoint, _) = read_meta(&tx)?;
    let Some(last) = batch.last().filter(|e| e.position > checkpoint) else {
        return Ok(None);
    };
    // A bulk issue writes thousands of events under one key: its record is
    // read once and written once per batch.
    let mut records: HashMap<(String, String), IdempotencyRecord> = HashMap::new();
    for event in batch.iter().filter(|e| e.position > checkpoint) {
        if let (Some(tag), Some(platform)) =
            (&event.metadata.idempotency, &event.metadata.actor.platform)
        {
            let id = (platform.clone(), tag.key.clone());
            let record = match records.entry(id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let stored = stored_record(&tx, platform, &tag.key)?;
                    e.insert(stored.unwrap_or_else(|| IdempotencyRecord {
                        request_hash: tag.request_hash.clone(),
                        streams: Vec::new(),
                        position: event.position,
                    }))
                }
            };
            record.add(&event.stream, event.position);
        }
        while views.first().is_some_and(|(p, _)| *p < event.position) {
            views = &views[1..];
        }
        let view = views
            .first()
            .filter(|(p, _)| *p == event.position)
            .map(|(_, v)| v.as_ref());
        if let Err(error) = apply_event(&tx, event, view) {
            match error {
                Skip::Decode(error) => tracing::error!(
                    stream = %event.stream, revision = event.revision, %error,
                    "event skipped by the assertions read model"
                ),
                Skip::Db(e) => return Err(e),
            }
        }
    }
    for ((platform, key), record) in records {
        let streams = serde_json::to_string(&record.streams)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        tx.prepare_cached("INSERT OR REPLACE INTO idempotency VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![
                platform,
                key,
                record.request_hash,
                streams,
                record.position as i64
            ])?;
    }
    tx.execute(
        "UPDATE meta SET checkpoint = ?1, event_id = ?2",
        params![last.position as i64, last.event_id.as_bytes().as_slice()],
    )?;
    tx.commit()?;
    Ok(Some(last.position))
}

fn stored_record(
    conn: &Connection,
    platform: &str,
    key: &str,
) -> rusqlite::Result<Option<IdempotencyRecord>> {
    let row: Option<(String, String, i64)> = conn
        .prepare_cached(
            "SELECT request_hash, streams, position FROM idempotency
             WHERE platform = ?1 AND key = ?2",
        )?
        .query_row([platform, key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    row.map(|(request_hash, streams, position)| {
        Ok(IdempotencyRecord {
            request_hash,
            streams: serde_json::from_str(&streams).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
            position: position as Position,
        })
    })
    .transpose()
}

enum Skip {
    Decode(String),
    Db(rusqlite::Error),
}

impl From<rusqlite::Error> for Skip {
    fn from(e: rusqlite::Error) -> Self {
        Skip::Db(e)
    }
}

impl From<serde_json::Error> for Skip {
    fn from(e: serde_json::Error) -> Self {
        Skip::Decode(e.to_string())
    }
}

/// `issued`: the view of the assertion `event` issues, when the caller has
/// it already.
fn apply_event(
    tx: &Transaction,
    event: &RecordedEvent,
    issued: Option<&AssertionView>,
) -> Result<(), Skip> {
    let stream = event.stream.as_str();
    if let Some(id) = stream.strip_prefix("credential-") {
        match CredentialEvent::from_recorded(event)? {
            CredentialEvent::CredentialCreated { fields, .. }
            | CredentialEvent::CredentialUpdated { fields, .. } => match fields.course {
                Some(course) => {
                    tx.prepare_cached("INSERT OR REPLACE INTO courses VALUES (?1, ?2)")?
                        .execute([id, &course])?;
                }
                None => {
                    tx.prepare_cached("DELETE FROM courses WHERE credential_id = ?1")?
                        .execute([id])?;
                }
            },
            CredentialEvent::CredentialDeleted { .. } => {
                tx.prepare_cached("DELETE FROM courses WHERE credential_id = ?1")?
                    .execute([id])?;
            }
            CredentialEvent::CredentialRetired { .. } => {}
        }
    } else if let Some(view) = issued {
        insert_issued(tx, view)?;
    } else if let Some(id) = stream.strip_prefix("assertion-") {
        match AssertionEvent::from_recorded(event)? {
            issued @ AssertionEvent::AssertionIssued { .. } => {
                if let Some(view) = AssertionView::issued(issued) {
                    insert_issued(tx, &view)?;
                }
            }
            revoked @ AssertionEvent::AssertionRevoked { .. } => {
                let json: Option<String> = tx
                    .prepare_cached("SELECT view FROM assertions WHERE entity_id = ?1")?
                    .query_row([id], |r| r.get(0))
                    .optional()?;
                if let Some(json) = json {
                    let view: AssertionView = serde_json::from_str(&json)?;
                    let view = AssertionView::evolve(Some(view), revoked);
                    tx.prepare_cached(
                        "UPDATE assertions SET revoked = 1, view = ?2 WHERE entity_id = ?1",
                    )?
                    .execute(params![id, serde_json::to_string(&view)?])?;
                }
            }
        }
    }
    Ok(())
}

fn insert_issued(tx: &Transaction, view: &AssertionView) -> Result<(), Skip> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO assertions
         (entity_id, platform, credential_id, email, username, expires, view)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        view.entity_id,
        view.platform,
        view.credential_id,
        view.recipient.email.to_lowercase(),
        view.recipient.username,
        view.expires.map(micros),
        serde_json::to_string(view)?,
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assertion_cases::{self as cases, answers, rich};
    use crate::testing::{sample, Log};
    use ibl_events::memory::MemoryStore;
    use ibl_events::{EventData, ExpectedRevision};

    /// A store holding `log`'s events at the same positions.
    async fn store_of(log: &Log) -> MemoryStore {
        let store = MemoryStore::new();
        for e in &log.events {
            let data = EventData {
                recorded_at: None,
                event_id: e.event_id,
                event_type: e.event_type.clone(),
                schema_version: e.schema_version,
                payload: serde_json::Value::clone(&e.payload),
                metadata: e.metadata.clone(),
            };
            let written = store
                .append(&e.stream, ExpectedRevision::Any, vec![data])
                .await
                .expect("append");
            assert_eq!(written.position, e.position);
        }
        store
    }

    async fn model_in(dir: &Path, store: &dyn EventStore) -> (AssertionsModel, Option<String>) {
        AssertionsModel::open(&dir.join("assertions.db"), store)
            .await
            .expect("open")
    }

    /// A fresh model in a folder of its own under `dir`.
    async fn fresh(dir: &Path, name: &str) -> AssertionsModel {
        model_in(&dir.join(name), &MemoryStore::new()).await.0
    }

    #[tokio::test]
    async fn lists_leave_out_revoked_and_expired_unless_asked_and_filter_by_credential_and_course()
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = fresh(dir.path(), "m").await;
        cases::lists_leave_out_revoked_and_expired_unless_asked_and_filter_by_credential_and_course(&model).await;
    }

    #[tokio::test]
    async fn a_batch_applied_twice_changes_nothing_the_second_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let once = fresh(dir.path(), "once").await;
        let twice = fresh(dir.path(), "twice").await;
        cases::a_batch_applied_twice_changes_nothing_the_second_time(&once, &twice).await;
    }

    #[tokio::test]
    async fn idempotency_records_keep_the_first_stream_of_each_kind_a_request_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = fresh(dir.path(), "m").await;
        cases::idempotency_records_keep_the_first_stream_of_each_kind_a_request_wrote(&model).await;
    }

    #[tokio::test]
    async fn a_course_change_moves_a_credentials_assertions_between_course_lists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = fresh(dir.path(), "m").await;
        cases::a_course_change_moves_a_credentials_assertions_between_course_lists(&model).await;
    }

    #[tokio::test]
    async fn holders_are_found_by_email_and_username_unless_revoked_expired_or_excepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = fresh(dir.path(), "m").await;
        cases::holders_are_found_by_email_and_username_unless_revoked_expired_or_excepted(&model)
            .await;
    }

    #[tokio::test]
    async fn pages_match_a_plain_filter_of_the_log_whatever_the_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = fresh(dir.path(), "m").await;
        cases::pages_match_a_plain_filter_of_the_log_whatever_the_offset(&model).await;
    }

    #[tokio::test]
    async fn a_file_is_kept_across_opens_and_rebuilt_when_it_does_not_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = sample();
        let store = store_of(&log).await;
        let (model, why) = model_in(dir.path(), &store).await;
        assert_eq!(why.as_deref(), Some("no file"));
        model.apply(&log.events);
        drop(model);

        let (model, why) = model_in(dir.path(), &store).await;
        assert_eq!(why, None, "kept");
        assert_eq!(model.checkpoint(), log.events.len() as u64);
        assert!(model.assertion("a1").expect("read").is_some());
        drop(model);

        // Another log with as many events: the ids at the checkpoint differ.
        let other = store_of(&sample()).await;
        let (model, why) = model_in(dir.path(), &other).await;
        assert!(why.expect("rebuilt").contains("another log"));
        assert_eq!(model.checkpoint(), 0);
        assert!(model.assertion("a1").expect("read").is_none(), "emptied");
        drop(model);

        // Another schema version.
        let path = dir.path().join("assertions.db");
        Connection::open(&path)
            .and_then(|c| c.execute_batch("PRAGMA user_version = 99;"))
            .expect("set version");
        let (_, why) = model_in(dir.path(), &store).await;
        assert!(why.expect("rebuilt").contains("schema version 99"));

        // Not a database at all.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        std::fs::write(&path, vec![7u8; 8192]).expect("write junk");
        let (model, why) = model_in(dir.path(), &store).await;
        assert!(why.is_some(), "rebuilt");
        model.apply(&log.events);
        assert!(
            model.assertion("a1").expect("read").is_some(),
            "usable again"
        );
    }

    #[tokio::test]
    async fn answers_are_the_same_whether_events_wait_in_the_tail_or_are_in_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = rich();
        let store = store_of(&log).await;
        let (written, _) = model_in(&dir.path().join("written"), &store).await;
        let (tailed, _) = model_in(&dir.path().join("tailed"), &store).await;
        // Its flusher stopped: only the test (and the projector's own
        // writes of revocations and credentials) write its tail.
        tailed.stop.store(true, Ordering::Relaxed);
        std::thread::sleep(FLUSH_EVERY * 3);
        let mut waited = 0;
        for (n, event) in log.events.iter().enumerate() {
            let one = std::slice::from_ref(event);
            written.apply(one);
            written.flush();
            tailed.apply(one);
            waited += tailed.shared.tail().issued.len();
            if n % 3 == 2 {
                tailed.flush();
            }
            assert_eq!(
                answers(&tailed).await,
                answers(&written).await,
                "after event {n}"
            );
        }
        assert!(
            answers(&tailed).await.contains("b3"),
            "the answers are not empty"
        );
        assert!(waited > 3, "issues waited in the tail: {waited}");
        drop(tailed);
        let (reopened, _) = model_in(&dir.path().join("tailed"), &store).await;
        assert_eq!(
            reopened.checkpoint(),
            log.events.len() as u64,
            "written at drop"
        );
        assert_eq!(
            answers(&reopened).await,
            answers(&written).await,
            "the file as written from the tail's views"
        );
    }
}
