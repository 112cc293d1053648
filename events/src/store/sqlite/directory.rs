//! The stream directory: stream names and ids, in memory.
//!
//! Stream names have no index in the database file. A unique index on them
//! cost one page write at a random place per new stream, as much as all the
//! rest an append writes, since names (`assertion-<uuid>`) are random. The
//! directory keeps a 64-bit hash of every name with its stream's id (about
//! 25 bytes a stream: 36 MB for 1.5 million streams, loaded in under 0.2 s
//! here); a name whose hash is found is confirmed by reading the stream's
//! row by its id, so a hash collision costs a read, never a wrong answer.
//!
//! Stream ids are given in commit order (the rowid of `streams`, under the
//! write lock), so the directory is complete up to the highest id it
//! loaded: catching up with streams that other processes created means
//! reading the rows with a higher id. The writer catches up at the start of
//! each transaction, under the write lock, before it looks up any name;
//! readers catch up when a name is not found.
//!
//! The writer adds the streams it creates as soon as it inserts them, so
//! that later requests of the same batch find them, and removes them again
//! when the transaction is rolled back. Until the commit, a reader that
//! finds such an id cannot read its row, and takes the name as unknown.

use std::collections::hash_map::{Entry, HashMap, RandomState};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use rusqlite::{params, Connection, OptionalExtension};

/// Stream names and ids; see the module documentation.
pub(super) struct Directory {
    names: RwLock<Names>,
    hasher: RandomState,
}

#[derive(Default)]
struct Names {
    /// Hash of a name -> id of the stream of that name.
    by_hash: HashMap<u64, i64, BuildHasherDefault<AlreadyHashed>>,
    /// Streams whose name's hash is already taken in `by_hash` by another
    /// name: almost always empty.
    collisions: Vec<(u64, i64)>,
    /// Every stream with an id up to this one is in the directory.
    loaded: i64,
}

/// Keys of `by_hash` are hashes already: used as they are.
#[derive(Default)]
struct AlreadyHashed(u64);

impl Hasher for AlreadyHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with it; any other input still works.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

impl Names {
    fn candidates(&self, hash: u64) -> impl Iterator<Item = i64> + '_ {
        let first = self.by_hash.get(&hash).copied();
        let others = self
            .collisions
            .iter()
            .filter(move |(h, _)| *h == hash)
            .map(|&(_, id)| id);
        first.into_iter().chain(others)
    }

    fn add(&mut self, hash: u64, id: i64) {
        match self.by_hash.entry(hash) {
            Entry::Vacant(entry) => {
                entry.insert(id);
            }
            Entry::Occupied(entry) if *entry.get() == id => {}
            Entry::Occupied(_) => {
                if !self.collisions.contains(&(hash, id)) {
                    self.collisions.push((hash, id));
                }
            }
        }
    }

    fn remove(&mut self, hash: u64, id: i64) {
        if self.by_hash.get(&hash) == Some(&id) {
            self.by_hash.remove(&hash);
            // A colliding stream takes the free place.
            if let Some(i) = self.collisions.iter().position(|(h, _)| *h == hash) {
                let (_, other) = self.collisions.swap_remove(i);
                self.by_hash.insert(hash, other);
            }
        } else {
            self.collisions.retain(|&entry| entry != (hash, id));
        }
    }
}

impl Directory {
    /// Loads every stream of the database.
    pub(super) fn load(conn: &Connection) -> rusqlite::Result<Directory> {
        let hasher = RandomState::new();
        // Ids run from 1 without gaps: the highest is the number of streams.
        let count: Option<i64> = conn.query_row("SELECT MAX(id) FROM streams", [], |r| r.get(0))?;
        let count = usize::try_from(count.unwrap_or(0)).unwrap_or(0);
        // Hashing every name first, then filling the table, takes half the
        // time of doing both row by row (each insert misses the CPU cache).
        let mut found = Vec::with_capacity(count);
        let mut stmt = conn.prepare("SELECT id, name FROM streams")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            found.push((hasher.hash_one(row.get_ref(1)?.as_str()?), id));
        }
        let mut names = Names::default();
        names.by_hash.reserve(count);
        for (hash, id) in found {
            names.add(hash, id);
            names.loaded = names.loaded.max(id);
        }
        Ok(Directory {
            names: RwLock::new(names),
            hasher,
        })
    }

    /// Adds the streams created since the last call (by anyone); true when
    /// there were some.
    pub(super) fn catch_up(&self, conn: &Connection) -> rusqlite::Result<bool> {
        let loaded = self.read().loaded;
        let mut stmt = conn.prepare_cached("SELECT id, name FROM streams WHERE id > ?1")?;
        let mut rows = stmt.query([loaded])?;
        let mut found = Vec::new();
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let name = row.get_ref(1)?.as_str()?;
            found.push((self.hash(name), id));
        }
        let Some(last) = found.iter().map(|&(_, id)| id).max() else {
            return Ok(false);
        };
        let mut names = self.write();
        for (hash, id) in found {
            names.add(hash, id);
        }
        names.loaded = names.loaded.max(last);
        Ok(true)
    }

    /// The ids that may be the stream named `name`: one, or none, but for
    /// a hash collision.
    pub(super) fn candidates(&self, name: &str) -> Vec<i64> {
        self.read().candidates(self.hash(name)).collect()
    }

    /// True when the stream `id` is named `name` (and visible to `conn`).
    pub(super) fn is_named(
        &self,
        conn: &Connection,
        id: i64,
        name: &str,
    ) -> rusqlite::Result<bool> {
        let mut stmt = conn.prepare_cached("SELECT name = ?2 FROM streams WHERE id = ?1")?;
        let same: Option<bool> = stmt.query_row(params![id, name], |r| r.get(0)).optional()?;
        Ok(same == Some(true))
    }

    /// The id of the stream named `name`, among those in the directory.
    pub(super) fn lookup(&self, conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
        for id in self.candidates(name) {
            if self.is_named(conn, id, name)? {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Adds a stream the writer just created (not yet committed).
    pub(super) fn add(&self, name: &str, id: i64) {
        let hash = self.hash(name);
        self.write().add(hash, id);
    }

    /// Removes streams whose creation was rolled back.
    pub(super) fn forget(&self, created: &[(String, i64)]) {
        if created.is_empty() {
            return;
        }
        let mut names = self.write();
        for (name, id) in created {
            names.remove(self.hash(name), *id);
        }
    }

    /// Records that the streams up to `id` are committed.
    pub(super) fn committed(&self, id: i64) {
        let mut names = self.write();
        names.loaded = names.loaded.max(id);
    }

    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    // Nothing panics while holding the lock, short of running out of
    // memory: the names behind a poisoned lock are still consistent.
    fn read(&self) -> RwLockReadGuard<'_, Names> {
        self.names.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Names> {
        self.names.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colliding_names_keep_their_ids() {
        let mut names = Names::default();
        names.add(7, 1);
        names.add(7, 2);
        names.add(7, 2);
        names.add(8, 3);
        assert_eq!(names.candidates(7).collect::<Vec<_>>(), [1, 2]);
        names.remove(7, 1);
        assert_eq!(names.candidates(7).collect::<Vec<_>>(), [2]);
        assert!(names.collisions.is_empty());
        names.remove(7, 2);
        assert_eq!(names.candidates(7).count(), 0);
        assert_eq!(names.candidates(8).collect::<Vec<_>>(), [3]);
    }
}
