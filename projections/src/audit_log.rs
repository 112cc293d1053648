//! The audit log: a Merkle tree over the whole event log, in global order,
//! and signed checkpoints of its head (see the `ibl-audit` crate for the
//! hashes, the proofs and the note format).
//!
//! # What an event's leaf is
//!
//! An event's leaf is `SHA-256(0x00 ‖ bytes)` (RFC 9162), where `bytes` is
//! the RFC 8785 (JCS) serialization of the event's [`record`] as the
//! history feed shows it, less its `leaf_index`: anyone holding the feed
//! recomputes every leaf from it. The record carries the event as stored
//! (its payload is not upcast). Its leaf index is its place in the log:
//! the `n`-th event read in global order is leaf `n - 1`, whatever the
//! store's positions are (EventStoreDB's are not dense).
//!
//! # What is kept, and where
//!
//! [`AuditLog`] is a read model ([`ReadModel`]): the projector hands it
//! every batch, and it appends the batch's leaves (index, position, hash)
//! to its own SQLite file, in one transaction, then to its tree in memory.
//! The tree keeps the hashes of whole blocks of 256 leaves and the leaves
//! after the last one ([`CompactTree`]: 250 KB for 1,000,000 events); a
//! proof reads the leaves of at most two blocks from the file, and checks
//! them against the tree first. The file is evidence, not a cache: it
//! records what the log held when the projector read it, so that `ibl
//! verify` can name an event altered afterwards. It is kept beside the
//! store's folder, not in the read models' folder, which may be deleted at
//! will.
//!
//! [`AuditLog::sign`] signs a checkpoint (origin, tree size, root) as a
//! C2SP signed note with the log's Ed25519 key when the tree grew since the
//! last one, and keeps it in the same file. The key itself lives outside
//! the data folder ([`load_or_create_signer`]).

use std::path::Path;
use std::sync::{Mutex, RwLock};

use chrono::SecondsFormat;
use ibl_audit::{
    leaf_hash, to_jcs, Checkpoint, CompactTree, Hash, LeafSource, MerkleError, Signer,
};
use ibl_events::{Position, RecordedEvent};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use crate::{Applied, ReadModel};

/// The evidence file's name in a data folder.
pub const AUDIT_FILE: &str = "audit.db";

/// The version of the file's schema.
const VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE leaves (
    leaf_index INTEGER PRIMARY KEY, -- from 0, dense
    position   INTEGER NOT NULL,    -- the event's position in the store
    stream     TEXT    NOT NULL,    -- its stream and revision: what a
    revision   INTEGER NOT NULL,    -- report names when it goes missing
    hash       BLOB    NOT NULL,    -- the leaf hash, 32 bytes
    -- What the history feed filters on:
    platform   TEXT,                -- the event's platform, if it has one
    time       INTEGER NOT NULL,    -- recorded at, µs since the epoch
    type       TEXT    NOT NULL,
    user       TEXT,                -- the actor: the key's user
    key        TEXT,                -- and the key's name
    rbac       INTEGER NOT NULL     -- 1: an event the RBAC model folds
);
CREATE INDEX leaves_by_platform ON leaves (platform, position);
CREATE INDEX leaves_by_type ON leaves (platform, type, position);
CREATE INDEX leaves_by_time ON leaves (platform, time);
CREATE INDEX leaves_at ON leaves (time, position);
-- (the RBAC events' positions are also kept in memory, from this column)
CREATE TABLE checkpoints (
    size       INTEGER PRIMARY KEY, -- the tree size signed
    root       BLOB    NOT NULL,    -- its root, 32 bytes
    note       TEXT    NOT NULL,    -- the signed note, as served
    signed_at  TEXT    NOT NULL     -- RFC 3339
);
";

/// Which of a platform's events the history feed shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedFilter {
    pub platform: String,
    /// Only events after this position.
    pub after: Position,
    /// Recorded at or after (µs since the epoch).
    pub from: Option<i64>,
    /// Recorded before (µs since the epoch).
    pub to: Option<i64>,
    /// Written by this user, or with this key name.
    pub actor: Option<String>,
    pub event_type: Option<String>,
}

/// A signed checkpoint of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub size: u64,
    pub root: Hash,
    /// The C2SP signed note (its body is the checkpoint).
    pub note: String,
}

struct State {
    tree: CompactTree,
    /// The position of the last leaf's event (0: none).
    last: Position,
    /// The positions of the events the RBAC model folds, in order.
    rbac: Vec<Position>,
    latest: Option<SignedCheckpoint>,
}

/// The Merkle tree over the log, its leaves kept in a file, and the signed
/// checkpoints of its head.
pub struct AuditLog {
    signer: Signer,
    db: Mutex<Connection>,
    /// The history feed's queries (read-only, beside the writer).
    reader: Mutex<Connection>,
    state: RwLock<State>,
}

/// The record of `event` as the history feed shows it, with `leaf_index`
/// when given (the leaf's bytes are those of the record without it).
pub fn record(event: &RecordedEvent, leaf_index: Option<u64>) -> Value {
    let actor = &event.metadata.actor;
    let mut record = json!({
        "position": event.position,
        "id": event.event_id.to_string(),
        "stream": event.stream,
        "revision": event.revision,
        "type": event.event_type,
        "schema_version": event.schema_version,
        "time": event.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "actor": {
            "platform": actor.platform,
            "user": actor.user,
            "key": actor.key_name,
            "on_behalf_of": actor.on_behalf_of,
        },
        "correlation_id": event.metadata.correlation_id,
        "client_request_id": event.metadata.client_request_id,
        "causation_id": event.metadata.causation_id,
        "data": event.payload,
    });
    if let (Some(index), Some(object)) = (leaf_index, record.as_object_mut()) {
        object.insert("leaf_index".into(), index.into());
    }
    record
}

/// The leaf hash of `event`: of the JCS bytes of its [`record`] without
/// `leaf_index`. A record JCS refuses (an integer beyond ±2^53 in a
/// payload, which no double holds) is hashed as `serde_json` writes it,
/// members sorted: the feed shows the same digits.
pub fn leaf_of(event: &RecordedEvent) -> Hash {
    match leaf_bytes(event) {
        Ok(bytes) => leaf_hash(bytes.as_bytes()),
        Err(_) => {
            let record = record(event, None);
            let bytes = to_jcs(&record).unwrap_or_else(|_| record.to_string().into_bytes());
            leaf_hash(&bytes)
        }
    }
}

/// The RFC 8785 bytes of [`record`]`(event, None)`, written member by
/// member (its names are known, and here in their canonical order) rather
/// than built as a JSON value, the payload copied in, and sorted: the
/// audit log does this for every event. `Err` where JCS refuses a number
/// (then [`record`] says what the bytes are). A test holds the two equal.
fn leaf_bytes(event: &RecordedEvent) -> Result<String, ibl_audit::JcsError> {
    use ibl_audit::jcs::{write_string, write_value};
    fn optional(out: &mut String, value: &Option<String>) {
        match value {
            Some(text) => write_string(out, text),
            None => out.push_str("null"),
        }
    }
    let number = |out: &mut String, n: u64| write_value(out, &Value::from(n));
    let actor = &event.metadata.actor;
    let meta = &event.metadata;
    let mut out = String::with_capacity(1024);
    out.push_str(r#"{"actor":{"key":"#);
    optional(&mut out, &actor.key_name);
    out.push_str(r#","on_behalf_of":"#);
    optional(&mut out, &actor.on_behalf_of);
    out.push_str(r#","platform":"#);
    optional(&mut out, &actor.platform);
    out.push_str(r#","user":"#);
    optional(&mut out, &actor.user);
    out.push_str(r#"},"causation_id":"#);
    optional(&mut out, &meta.causation_id);
    out.push_str(r#","client_request_id":"#);
    optional(&mut out, &meta.client_request_id);
    out.push_str(r#","correlation_id":"#);
    write_string(&mut out, &meta.correlation_id);
    out.push_str(r#","data":"#);
    write_value(&mut out, &event.payload)?;
    out.push_str(r#","id":"#);
    write_string(&mut out, &event.event_id.to_string());
    out.push_str(r#","position":"#);
    number(&mut out, event.position)?;
    out.push_str(r#","revision":"#);
    number(&mut out, event.revision)?;
    out.push_str(r#","schema_version":"#);
    number(&mut out, u64::from(event.schema_version))?;
    out.push_str(r#","stream":"#);
    write_string(&mut out, &event.stream);
    out.push_str(r#","time":"#);
    write_string(
        &mut out,
        &event
            .recorded_at
            .to_rfc3339_opts(SecondsFormat::Micros, true),
    );
    out.push_str(r#","type":"#);
    write_string(&mut out, &event.event_type);
    out.push('}');
    Ok(out)
}

fn hash_of(bytes: Vec<u8>) -> rusqlite::Result<Hash> {
    let len = bytes.len();
    bytes.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            len,
            rusqlite::types::Type::Blob,
            "a hash is 32 bytes".into(),
        )
    })
}

/// Column `i` of `row`, an integer never negative.
fn unsigned(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    let n: i64 = row.get(i)?;
    u64::try_from(n).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Integer, Box::new(e))
    })
}

/// `n` as SQLite stores integers (positions and sizes stay below 2^63).
fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn sqlite(e: rusqlite::Error) -> String {
    e.to_string()
}

impl AuditLog {
    /// Opens (or creates) the file at `path` and loads its leaves and its
    /// latest checkpoint; `signer` signs the checkpoints from now on.
    pub fn open(path: &Path, signer: Signer) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(sqlite)?;
        // No fsync per batch: leaves lost to a power cut are computed again
        // from the log at the next start (what the log holds then is what
        // `ibl verify` and the published checkpoints judge).
        conn.execute_batch("PRAGMA synchronous = NORMAL;")
            .map_err(sqlite)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        match version {
            0 => conn
                .execute_batch(&format!("{SCHEMA} PRAGMA user_version = {VERSION};"))
                .map_err(sqlite)?,
            VERSION => {}
            other => {
                return Err(format!(
                    "{}: schema version {other}, this code's is {VERSION}",
                    path.display()
                ))
            }
        }
        let mut tree = CompactTree::new();
        let mut last = 0;
        let mut rbac = Vec::new();
        each_leaf(&conn, path, |leaf, is_rbac| {
            if is_rbac {
                rbac.push(leaf.position);
            }
            last = leaf.position;
            tree.append(leaf.hash);
        })?;
        let latest = latest_checkpoint(&conn).map_err(sqlite)?;
        if let Some(c) = &latest {
            if tree.root_at(c.size, &FileLeaves(&conn)).ok() != Some(c.root) {
                return Err(format!(
                    "{}: the leaves do not match the checkpoint of size {} (run `ibl verify`)",
                    path.display(),
                    c.size
                ));
            }
        }
        let reader = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        reader
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite)?;
        Ok(Self {
            signer,
            db: Mutex::new(conn),
            reader: Mutex::new(reader),
            state: RwLock::new(State {
                tree,
                last,
                rbac,
                latest,
            }),
        })
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The log's origin (the first line of its checkpoints).
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The raw Ed25519 public key that signs the checkpoints.
    pub fn public_key(&self) -> [u8; 32] {
        self.signer.public_key()
    }

    /// The verifier key, `origin+keyid+base64key` (C2SP signed note).
    pub fn vkey(&self) -> String {
        self.signer.vkey()
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.state().tree.len()
    }

    /// The latest signed checkpoint, if one was signed.
    pub fn latest(&self) -> Option<SignedCheckpoint> {
        self.state().latest.clone()
    }

    /// The latest signed checkpoint, checked as `ibl verify` checks it: its
    /// note signed by this log's key, its size and root those of the tree
    /// of the recorded leaves. `Err` says why it does not hold.
    pub fn check_latest(&self) -> Result<Option<SignedCheckpoint>, String> {
        let state = self.state();
        let Some(latest) = state.latest.clone() else {
            return Ok(None);
        };
        let signed = self
            .signer
            .verifier()
            .verify(&latest.note)
            .map_err(|e| format!("its note is not signed by {}: {e}", self.vkey()))?;
        let root = state
            .tree
            .root_at(latest.size, &FileLeaves(&self.reader()))
            .map_err(|e| e.to_string())?;
        if signed.size != latest.size || signed.root != latest.root || root != latest.root {
            return Err("the recorded leaves do not hash to its signed root".into());
        }
        Ok(Some(latest))
    }

    /// The recorded leaves of `platform`'s events after `after`, in log
    /// order, at most `limit`, each with its index.
    pub fn leaves_of(
        &self,
        platform: &str,
        after: Position,
        limit: usize,
    ) -> Result<Vec<(u64, Leaf)>, String> {
        let reader = self.reader();
        let mut stmt = reader
            .prepare_cached(
                "SELECT leaf_index, position, stream, revision, hash FROM leaves
                 WHERE platform = ?1 AND position > ?2 ORDER BY position LIMIT ?3",
            )
            .map_err(sqlite)?;
        let rows = stmt
            .query_map(
                rusqlite::params![platform, signed(after), signed(limit as u64)],
                |row| Ok((unsigned(row, 0)?, leaf_at(row)?)),
            )
            .map_err(sqlite)?;
        rows.collect::<Result<_, _>>().map_err(sqlite)
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The inclusion proof of leaf `index` in the tree of `tree_size` (it
    /// reads leaves from the file: call it off the async workers).
    pub fn inclusion(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, MerkleError> {
        let state = self.state();
        state
            .tree
            .inclusion_proof(index, tree_size, &FileLeaves(&self.reader()))
    }

    /// The consistency proof from the tree of `first` leaves to that of
    /// `second` (it reads leaves from the file, as [`AuditLog::inclusion`]).
    pub fn consistency(&self, first: u64, second: u64) -> Result<Vec<Hash>, MerkleError> {
        let state = self.state();
        state
            .tree
            .consistency_proof(first, second, &FileLeaves(&self.reader()))
    }

    /// The leaf index of each of `platform`'s events at `positions`
    /// (ascending), as `(position, leaf index)`, for those the tree holds.
    pub fn leaf_indexes(
        &self,
        platform: &str,
        positions: &[Position],
    ) -> Result<Vec<(Position, u64)>, String> {
        let reader = self.reader();
        let mut stmt = reader
            .prepare_cached("SELECT leaf_index FROM leaves WHERE platform = ?1 AND position = ?2")
            .map_err(sqlite)?;
        let mut found = Vec::with_capacity(positions.len());
        for &position in positions {
            let index = stmt
                .query_row(params![platform, signed(position)], |r| unsigned(r, 0))
                .optional()
                .map_err(sqlite)?;
            found.extend(index.map(|i| (position, i)));
        }
        Ok(found)
    }

    /// The events of a platform that pass `filter`, in log order, at most
    /// `limit`: each one's position and leaf index.
    pub fn feed(&self, filter: &FeedFilter, limit: usize) -> Result<Vec<(Position, u64)>, String> {
        use rusqlite::types::Value as Sql;
        let mut args: Vec<Sql> = vec![filter.platform.clone().into(), signed(filter.after).into()];
        let mut sql = String::from(
            "SELECT position, leaf_index FROM leaves WHERE platform = ?1 AND position > ?2",
        );
        let mut with = |clause: &str, value: Sql, sql: &mut String| {
            args.push(value);
            sql.push_str(&clause.replace('#', &args.len().to_string()));
        };
        if let Some(from) = filter.from {
            with(" AND time >= ?#", from.into(), &mut sql);
        }
        if let Some(to) = filter.to {
            with(" AND time < ?#", to.into(), &mut sql);
        }
        if let Some(t) = &filter.event_type {
            with(" AND type = ?#", t.clone().into(), &mut sql);
        }
        if let Some(actor) = &filter.actor {
            with(
                " AND (user = ?# OR key = ?#)",
                actor.clone().into(),
                &mut sql,
            );
        }
        with(
            " ORDER BY position LIMIT ?#",
            signed(limit as u64).into(),
            &mut sql,
        );
        let reader = self.reader();
        let mut stmt = reader.prepare_cached(&sql).map_err(sqlite)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok((unsigned(r, 0)?, unsigned(r, 1)?))
            })
            .map_err(sqlite)?;
        rows.collect::<Result<_, _>>().map_err(sqlite)
    }

    /// The position of the last event recorded at or before `time` (µs
    /// since the epoch; 0: none), as far as the tree has read.
    pub fn position_at(&self, time: i64) -> Result<Position, String> {
        let reader = self.reader();
        reader
            .query_row(
                "SELECT position FROM leaves WHERE time <= ?1 ORDER BY time DESC, position DESC LIMIT 1",
                [time],
                |r| unsigned(r, 0),
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(sqlite)
    }

    /// The positions of the events the RBAC model folds after `after`, up
    /// to `upto` (found by binary search: a past model folded on from a
    /// kept one copies only the positions of its step).
    pub fn rbac_positions(&self, after: Position, upto: Position) -> Vec<Position> {
        let state = self.state();
        let start = state.rbac.partition_point(|p| *p <= after);
        let end = state.rbac.partition_point(|p| *p <= upto).max(start);
        state.rbac[start..end].to_vec()
    }

    /// The position of the last event the RBAC model folds, up to `upto`
    /// (0: none): two positions with the same one have the same RBAC model.
    pub fn last_rbac_position(&self, upto: Position) -> Position {
        let state = self.state();
        let end = state.rbac.partition_point(|p| *p <= upto);
        end.checked_sub(1).map_or(0, |i| state.rbac[i])
    }

    /// Signs a checkpoint of the whole tree when it grew since the latest
    /// one (`None`: nothing new), keeps it and answers it.
    pub fn sign(&self) -> Result<Option<SignedCheckpoint>, String> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let (size, root) = {
            let state = self.state();
            let size = state.tree.len();
            if size == 0 || state.latest.as_ref().is_some_and(|c| c.size >= size) {
                return Ok(None);
            }
            (size, state.tree.root())
        };
        let note = self
            .signer
            .sign(&Checkpoint::new(self.signer.name(), size, root))
            .map_err(|e| e.to_string())?;
        db.execute(
            "INSERT INTO checkpoints (size, root, note, signed_at) VALUES (?1, ?2, ?3, ?4)",
            params![
                signed(size),
                root.as_slice(),
                note,
                chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
            ],
        )
        .map_err(sqlite)?;
        let signed = SignedCheckpoint { size, root, note };
        self.state.write().unwrap_or_else(|p| p.into_inner()).latest = Some(signed.clone());
        Ok(Some(signed))
    }

    fn append(&self, batch: &[RecordedEvent]) -> Result<(), String> {
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let (mut next, last) = {
            let state = self.state();
            (state.tree.len(), state.last)
        };
        let fresh: Vec<(u64, &RecordedEvent, Hash)> = batch
            .iter()
            .filter(|e| e.position > last)
            .map(|e| {
                next += 1;
                (next - 1, e, leaf_of(e))
            })
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let tx = db.transaction().map_err(sqlite)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO leaves (leaf_index, position, stream, revision, hash, platform, time, type, user, key, rbac) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(sqlite)?;
            for (index, e, hash) in &fresh {
                insert
                    .execute(params![
                        signed(*index),
                        signed(e.position),
                        e.stream,
                        signed(e.revision),
                        hash.as_slice(),
                        e.platform(),
                        e.recorded_at.timestamp_micros(),
                        e.event_type,
                        e.metadata.actor.user,
                        e.metadata.actor.key_name,
                        crate::rbac::is_rbac_stream(&e.stream),
                    ])
                    .map_err(sqlite)?;
            }
        }
        tx.commit().map_err(sqlite)?;
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        for (_, e, hash) in fresh {
            state.tree.append(hash);
            state.last = e.position;
            if crate::rbac::is_rbac_stream(&e.stream) {
                state.rbac.push(e.position);
            }
        }
        Ok(())
    }
}

fn latest_checkpoint(conn: &Connection) -> rusqlite::Result<Option<SignedCheckpoint>> {
    conn.query_row(
        "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1",
        [],
        |r| {
            Ok(SignedCheckpoint {
                size: unsigned(r, 0)?,
                root: hash_of(r.get(1)?)?,
                note: r.get(2)?,
            })
        },
    )
    .optional()
}

/// The leaves of the file open on a connection, as the tree reads them
/// for a proof.
struct FileLeaves<'a>(&'a Connection);

impl LeafSource for FileLeaves<'_> {
    fn leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<Hash>, String> {
        let mut stmt = self
            .0
            .prepare_cached(
                "SELECT hash FROM leaves WHERE leaf_index >= ?1 AND leaf_index < ?2 ORDER BY leaf_index",
            )
            .map_err(sqlite)?;
        let rows = stmt
            .query_map(params![signed(start), signed(end)], |r| hash_of(r.get(0)?))
            .map_err(sqlite)?;
        rows.collect::<Result<_, _>>().map_err(sqlite)
    }
}

/// A leaf as the projector recorded it: its event's coordinates and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub position: Position,
    pub stream: String,
    pub revision: u64,
    pub hash: Hash,
}

/// What the file of an audit log holds: the leaves the projector computed
/// as it read the log, and the checkpoints it signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// By leaf index.
    pub leaves: Vec<Leaf>,
    /// By size.
    pub checkpoints: Vec<SignedCheckpoint>,
}

/// The leaf of a row of `leaves` whose columns 1 to 4 are its position,
/// stream, revision and hash.
fn leaf_at(row: &rusqlite::Row<'_>) -> rusqlite::Result<Leaf> {
    Ok(Leaf {
        position: unsigned(row, 1)?,
        stream: row.get(2)?,
        revision: unsigned(row, 3)?,
        hash: hash_of(row.get(4)?)?,
    })
}

/// Hands every leaf of the file open on `conn` (at `path`) to `f` in
/// order, with whether the RBAC model folds its event; a gap in the
/// indexes (a row deleted) is an error.
fn each_leaf(conn: &Connection, path: &Path, mut f: impl FnMut(Leaf, bool)) -> Result<(), String> {
    let mut read = conn
        .prepare(
            "SELECT leaf_index, position, stream, revision, hash, rbac FROM leaves ORDER BY leaf_index",
        )
        .map_err(sqlite)?;
    let mut rows = read.query([]).map_err(sqlite)?;
    let mut next = 0;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let index = unsigned(row, 0).map_err(sqlite)?;
        if index != next {
            return Err(format!(
                "{}: leaf {index} comes after {next} leaves: leaves are missing",
                path.display()
            ));
        }
        next += 1;
        f(leaf_at(row).map_err(sqlite)?, row.get(5).map_err(sqlite)?);
    }
    Ok(())
}

/// Reads the file at `path` (read-only): what `ibl verify` checks the
/// store against. A gap in the leaves' indexes is an error.
pub fn read_evidence(path: &Path) -> Result<Evidence, String> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut leaves = Vec::new();
    each_leaf(&conn, path, |leaf, _| leaves.push(leaf))?;
    let mut checkpoints = Vec::new();
    let mut read = conn
        .prepare("SELECT size, root, note FROM checkpoints ORDER BY size")
        .map_err(sqlite)?;
    let mut rows = read.query([]).map_err(sqlite)?;
    while let Some(row) = rows.next().map_err(sqlite)? {
        checkpoints.push(SignedCheckpoint {
            size: unsigned(row, 0).map_err(sqlite)?,
            root: hash_of(row.get(1).map_err(sqlite)?).map_err(sqlite)?,
            note: row.get(2).map_err(sqlite)?,
        });
    }
    Ok(Evidence {
        leaves,
        checkpoints,
    })
}

impl ReadModel for AuditLog {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn checkpoint(&self) -> Position {
        self.state().last
    }

    fn apply(&self, batch: &[RecordedEvent]) -> Applied {
        // The leaves are evidence: a batch is never skipped. A failing disk
        // is retried until it writes (the projector waits meanwhile).
        let mut wait = std::time::Duration::from_millis(50);
        while let Err(e) = self.append(batch) {
            tracing::warn!(target: "ibl::audit", error = %e, "writing the audit leaves; retrying");
            std::thread::sleep(wait);
            wait = (wait * 2).min(std::time::Duration::from_secs(5));
        }
        Applied::Done
    }
}

/// The log's signing key, read from the file at `path` (a C2SP note
/// signer key, `PRIVATE+KEY+origin+keyid+base64`), or created there with
/// `origin` when the file does not exist (its folder too, the file
/// readable by its owner only). Two processes starting at once end with
/// the same key: the file appears whole or not at all.
pub fn load_or_create_signer(path: &Path, origin: &str) -> Result<Signer, String> {
    let read = |path: &Path| -> Result<Option<Signer>, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Signer::from_skey(text.trim())
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    };
    if let Some(signer) = read(path)? {
        return Ok(signer);
    }
    let seed: [u8; 32] = rand::random();
    let signer = Signer::from_seed(seed, origin).map_err(|e| format!("origin {origin:?}: {e}"))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(tmp.path(), format!("{}\n", signer.skey()))
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| format!("{}: {e}", tmp.path().display()))?;
    // NamedTempFile is created 0600; persist_noclobber links it in place
    // only when nothing is there yet.
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(signer),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            read(path)?.ok_or_else(|| format!("{}: vanished while being created", path.display()))
        }
        Err(e) => Err(format!("{}: {}", path.display(), e.error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ibl_audit::{verify_consistency, verify_inclusion, Verifier};
    use ibl_events::Metadata;

    fn event(position: Position, payload: Value) -> RecordedEvent {
        RecordedEvent {
            event_id: uuid::Uuid::from_u128(position as u128),
            stream: format!("assertion-{position}"),
            revision: 0,
            position,
            event_type: "AssertionIssued".into(),
            schema_version: 1,
            recorded_at: chrono::DateTime::from_timestamp(
                1_700_000_000 + position as i64,
                123_456_789,
            )
            .expect("a time"),
            payload: payload.into(),
            metadata: Metadata::default(),
        }
    }

    fn signer() -> Signer {
        Signer::from_seed([9; 32], "test.example/audit").expect("a signer")
    }

    /// The leaf's bytes written member by member are those of the record's
    /// JCS, whatever its fields hold (nulls, escapes, names sorted by UTF-16
    /// inside the payload, numbers of every kind).
    #[test]
    fn leaf_bytes_are_the_jcs_of_the_record() {
        use ibl_events::{Actor, IdempotencyTag};
        let payloads = [
            json!({}),
            json!({"b": 1, "a": [true, null, 2.5, -3, 1e21]}),
            json!({"\u{e000}": 1, "\u{1f600}": 2, "é": "\u{0}\u{1f}\"\\\n\t\u{7f}", "A": {"z": [], "y": {}}}),
            json!({"narrative": "line\r\nnext \u{8}\u{c}", "n": 9007199254740992u64}),
        ];
        let metadata = [
            Metadata::default(),
            Metadata {
                actor: Actor {
                    platform: Some("acme".into()),
                    user: Some("zoë \"q\"".into()),
                    key_name: Some("ci/key".into()),
                    on_behalf_of: Some("bob".into()),
                },
                correlation_id: "req-\u{1}".into(),
                client_request_id: Some("client".into()),
                causation_id: Some("cause".into()),
                idempotency: Some(IdempotencyTag {
                    key: "k".into(),
                    request_hash: "h".into(),
                }),
            },
        ];
        for (n, payload) in payloads.iter().enumerate() {
            for meta in &metadata {
                let mut e = event(n as u64 + 1, payload.clone());
                e.metadata = meta.clone();
                e.stream = "user-\u{e9}\"7".into();
                let expected = ibl_audit::to_jcs_string(&record(&e, None)).expect("JCS");
                assert_eq!(leaf_bytes(&e).expect("bytes"), expected, "{payload}");
                assert_eq!(leaf_of(&e), leaf_hash(expected.as_bytes()));
            }
        }
        // A number JCS refuses: the record's own text, as before.
        let e = event(1, json!({"n": 9007199254740993u64}));
        assert!(leaf_bytes(&e).is_err());
        assert_eq!(
            leaf_of(&e),
            leaf_hash(record(&e, None).to_string().as_bytes())
        );
    }

    #[test]
    fn leaves_are_the_jcs_of_the_record_without_its_leaf_index() {
        let e = event(3, json!({"b": 1, "a": [true, null]}));
        let mut shown = record(&e, Some(2));
        assert_eq!(shown["leaf_index"], 2);
        assert_eq!(shown["time"], "2023-11-14T22:13:23.123456Z");
        shown
            .as_object_mut()
            .expect("an object")
            .remove("leaf_index");
        let bytes = to_jcs(&shown).expect("canonical");
        assert_eq!(leaf_of(&e), leaf_hash(&bytes));
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(text.starts_with(r#"{"actor":{"key":null,"on_behalf_of":null,"platform":null,"user":null},"causation_id":null,"client_request_id":null,"correlation_id":"","data":{"a":[true,null],"b":1},"id":"00000000-0000-0000-0000-000000000003","position":3,"revision":0,"schema_version":1,"#), "{text}");
        // An integer no double holds still gets a leaf (not canonical).
        let big = event(4, json!({"n": u64::MAX}));
        assert_ne!(leaf_of(&big), leaf_of(&event(4, json!({"n": 1}))));
    }

    #[test]
    fn the_tree_grows_with_the_log_survives_a_reopen_and_signs_checkpoints() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("audit.db");
        let log = AuditLog::open(&path, signer()).expect("opens");
        assert_eq!(log.sign().expect("signs"), None, "nothing to sign yet");
        // Positions need not be dense; a batch replayed is applied once.
        let batch: Vec<_> = [1, 2, 5, 9]
            .iter()
            .map(|p| event(*p, json!({"p": p, "platform": "acme"})))
            .collect();
        log.apply(&batch);
        log.apply(&batch[2..]);
        assert_eq!(log.size(), 4);
        assert_eq!(log.checkpoint(), 9);
        assert_eq!(
            log.leaf_indexes("acme", &[1, 4, 5]).expect("reads"),
            vec![(1, 0), (5, 2)]
        );
        let first = log.sign().expect("signs").expect("a checkpoint");
        assert_eq!(first.size, 4);
        assert_eq!(log.sign().expect("signs"), None, "nothing new since");
        log.apply(&[event(10, json!({}))]);
        let second = log.sign().expect("signs").expect("a checkpoint");
        let verifier = Verifier::from_vkey(&log.vkey()).expect("a verifier");
        let (old, new) = (
            verifier.verify(&first.note).expect("signed"),
            verifier.verify(&second.note).expect("signed"),
        );
        assert_eq!((old.size, new.size), (4, 5));
        let proof = log.consistency(4, 5).expect("a proof");
        assert!(verify_consistency(4, 5, &old.root, &new.root, &proof));
        let proof = log.inclusion(2, 5).expect("a proof");
        assert!(verify_inclusion(
            &leaf_of(&batch[2]),
            2,
            5,
            &proof,
            &new.root
        ));
        drop(log);

        let again = AuditLog::open(&path, signer()).expect("reopens");
        assert_eq!((again.size(), again.checkpoint()), (5, 10));
        assert_eq!(again.latest(), Some(second.clone()));
        let evidence = read_evidence(&path).expect("reads");
        assert_eq!(evidence.leaves.len(), 5);
        assert_eq!(
            evidence.leaves[3],
            Leaf {
                position: 9,
                stream: "assertion-9".into(),
                revision: 0,
                hash: leaf_of(&batch[3])
            }
        );
        assert_eq!(evidence.checkpoints, vec![first, second]);
    }

    #[test]
    fn proofs_over_many_blocks_read_the_file_and_refuse_leaves_altered_there() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("audit.db");
        let log = AuditLog::open(&path, signer()).expect("opens");
        let events: Vec<_> = (1..=1000).map(|p| event(p, json!({"p": p}))).collect();
        for batch in events.chunks(300) {
            log.apply(batch);
        }
        let old = log.sign().expect("signs").expect("a checkpoint");
        log.apply(&[event(1001, json!({}))]);
        let new = log.sign().expect("signs").expect("a checkpoint");
        assert_eq!((old.size, new.size), (1000, 1001));
        let full = ibl_audit::Tree::from_leaf_hashes(events.iter().map(leaf_of));
        assert_eq!(old.root, full.root());
        for index in [0, 255, 256, 511, 700, 999] {
            let proof = log.inclusion(index, 1000).expect("a proof");
            assert_eq!(proof, full.inclusion_proof(index, 1000).expect("a proof"));
            assert!(verify_inclusion(
                &leaf_of(&events[index as usize]),
                index,
                1000,
                &proof,
                &old.root
            ));
        }
        for first in [1, 256, 300, 999, 1000] {
            let proof = log.consistency(first, 1001).expect("a proof");
            let root1 = full.root_at(first).expect("a root");
            assert!(verify_consistency(first, 1001, &root1, &new.root, &proof));
        }
        // A leaf of the second block altered in the file behind the log's
        // back: proofs that need that block fail, the others still hold.
        let conn = Connection::open(&path).expect("opens");
        conn.execute(
            "UPDATE leaves SET hash = zeroblob(32) WHERE leaf_index = 300",
            [],
        )
        .expect("edits");
        assert!(matches!(
            log.inclusion(299, 1000),
            Err(MerkleError::LeavesUnavailable { block: 1, .. })
        ));
        assert!(log.consistency(300, 1001).is_err());
        assert!(log.inclusion(600, 1000).is_ok());
        assert!(log.check_latest().is_ok(), "the head needs no old leaves");
        drop(log);
        let err = AuditLog::open(&path, signer()).err().expect("refused");
        assert!(err.contains("do not match the checkpoint"), "{err}");
    }

    #[test]
    fn leaves_that_contradict_the_latest_checkpoint_refuse_to_open() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("audit.db");
        let log = AuditLog::open(&path, signer()).expect("opens");
        log.apply(&[event(1, json!({})), event(2, json!({}))]);
        log.sign().expect("signs");
        drop(log);
        let conn = Connection::open(&path).expect("opens");
        conn.execute(
            "UPDATE leaves SET hash = zeroblob(32) WHERE leaf_index = 1",
            [],
        )
        .expect("edits");
        drop(conn);
        let err = AuditLog::open(&path, signer()).err().expect("refused");
        assert!(
            err.contains("do not match the checkpoint of size 2"),
            "{err}"
        );
    }

    #[test]
    fn a_signing_key_is_created_once_and_then_read() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("keys").join("signing.key");
        let made = load_or_create_signer(&path, "a.example/log").expect("creates");
        let read = load_or_create_signer(&path, "another/origin").expect("reads");
        assert_eq!(made.public_key(), read.public_key());
        assert_eq!(read.name(), "a.example/log", "the file's origin wins");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "readable by its owner only: {mode:o}");
        }
        std::fs::write(&path, "not a key").expect("writes");
        assert!(load_or_create_signer(&path, "a.example/log").is_err());
    }
}
