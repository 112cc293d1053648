//! Snapshots of the read models kept in memory.
//!
//! A model that is small enough to live on the heap (platforms, users, API
//! keys, credentials, issuers; the RBAC model and its check index) is
//! written out now and then, whole, with the position it covers, so that a
//! start reads the snapshot and catches up from there instead of folding
//! the log from 0. Large models (assertions) live in SQLite instead (see
//! `assertions`).
//!
//! A snapshot file is written to a temporary name, synced and renamed over
//! the old one, so a crash leaves the old snapshot or the new one, never a
//! torn one. It names the model's version (a snapshot of another version is
//! not read), the position it covers and the id of the event at that
//! position: a snapshot of another log (a data folder restored from a
//! backup, an event store that was replaced) is not read either. A snapshot
//! that is missing, unreadable or does not match is ignored and the model is
//! rebuilt from the log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ibl_events::{EventStore, Position};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ReadModel;

/// A read model kept in memory whose state can be written out and read
/// back.
pub trait Snapshot: ReadModel {
    /// The shape of the snapshot: bump it whenever the state's shape
    /// changes, so older snapshots are ignored.
    fn version(&self) -> u32;
    /// The state and the checkpoint it covers, taken under one lock.
    fn snapshot(&self) -> (Position, Vec<u8>);
    /// Replaces the state with a snapshot's (the model's checkpoint becomes
    /// `checkpoint`). On an error the model is left empty.
    fn restore(&self, checkpoint: Position, bytes: &[u8]) -> Result<(), String>;
}

#[derive(Serialize, Deserialize)]
struct Header {
    model: String,
    version: u32,
    checkpoint: Position,
    /// The id of the event at `checkpoint` (none at 0).
    event_id: Option<Uuid>,
}

/// The file of a model's snapshot.
fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.snapshot"))
}

/// Writes `model`'s snapshot into `dir` atomically. Answers the position it
/// covers.
pub async fn save(
    dir: &Path,
    model: &Arc<dyn Snapshot>,
    store: &dyn EventStore,
) -> Result<Position, String> {
    // Serializing takes a while for a large model: off the async threads.
    let taken = model.clone();
    let (checkpoint, bytes) = tokio::task::spawn_blocking(move || taken.snapshot())
        .await
        .map_err(|e| e.to_string())?;
    let event_id = event_at(store, checkpoint).await?;
    let header = Header {
        model: model.name().to_owned(),
        version: model.version(),
        checkpoint,
        event_id,
    };
    let mut head = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    head.push(b'\n');
    let path = file(dir, model.name());
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let tmp = path.with_extension("snapshot.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&head)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        // The rename itself is durable once the folder is synced.
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    Ok(checkpoint)
}

/// Restores `model` from its snapshot in `dir`, when there is one of its
/// version over this store's log. Answers the checkpoint restored, or why
/// the model starts from 0.
pub async fn load(
    dir: &Path,
    model: &dyn Snapshot,
    store: &dyn EventStore,
) -> Result<Position, String> {
    let path = file(dir, model.name());
    // At start-up, before anything else runs: a blocking read is fine.
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("no snapshot".into());
        }
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let split = bytes.iter().position(|b| *b == b'\n').ok_or("no header")?;
    let header: Header =
        serde_json::from_slice(&bytes[..split]).map_err(|e| format!("header: {e}"))?;
    if header.model != model.name() || header.version != model.version() {
        return Err(format!(
            "snapshot of {} version {}, this model is {} version {}",
            header.model,
            header.version,
            model.name(),
            model.version()
        ));
    }
    if event_at(store, header.checkpoint).await? != header.event_id {
        return Err(format!(
            "the snapshot covers position {} of another log",
            header.checkpoint
        ));
    }
    model.restore(header.checkpoint, &bytes[split + 1..])?;
    Ok(header.checkpoint)
}

/// The id of the event at `position` (`None` at 0 or when there is none).
pub(crate) async fn event_at(
    store: &dyn EventStore,
    position: Position,
) -> Result<Option<Uuid>, String> {
    if position == 0 {
        return Ok(None);
    }
    let events = store
        .read_all(position - 1, 1)
        .await
        .map_err(|e| e.to_string())?;
    Ok(events
        .first()
        .filter(|e| e.position == position)
        .map(|e| e.event_id))
}

/// The snapshots of a process's in-memory models: read at start, written
/// in the background while events arrive, and once more at a clean stop.
pub struct Snapshots {
    dir: PathBuf,
    store: Arc<dyn EventStore>,
    models: Vec<Arc<dyn Snapshot>>,
    /// Per model, the position of its last snapshot written or read.
    saved: Mutex<Vec<Position>>,
    /// Held while snapshots are written: the background task and the last
    /// save at a stop would otherwise write the same temporary file at
    /// once, and one of them fail.
    saving: tokio::sync::Mutex<()>,
}

impl Snapshots {
    pub fn new(dir: PathBuf, store: Arc<dyn EventStore>, models: Vec<Arc<dyn Snapshot>>) -> Self {
        let saved = Mutex::new(vec![0; models.len()]);
        Self {
            dir,
            store,
            models,
            saved,
            saving: tokio::sync::Mutex::new(()),
        }
    }

    /// Restores every model it can; a model without a usable snapshot is
    /// left empty, to be rebuilt from the log. Answers, per model, the
    /// position restored or why it was not.
    pub async fn load(&self) -> Vec<(&'static str, Result<Position, String>)> {
        let mut out = Vec::new();
        for (i, model) in self.models.iter().enumerate() {
            let loaded = load(&self.dir, model.as_ref(), self.store.as_ref()).await;
            if let Ok(position) = loaded {
                self.saved.lock().unwrap_or_else(|p| p.into_inner())[i] = position;
            }
            out.push((model.name(), loaded));
        }
        out
    }

    /// Writes the snapshot of every model that moved since its last one,
    /// one save at a time; answers how many could not be written.
    pub async fn save_changed(&self) -> usize {
        let _saving = self.saving.lock().await;
        let mut failed = 0;
        for (i, model) in self.models.iter().enumerate() {
            let last = self.saved.lock().unwrap_or_else(|p| p.into_inner())[i];
            if model.checkpoint() <= last {
                continue;
            }
            match save(&self.dir, model, self.store.as_ref()).await {
                Ok(position) => {
                    self.saved.lock().unwrap_or_else(|p| p.into_inner())[i] = position;
                    tracing::debug!(model = model.name(), position, "snapshot written");
                }
                Err(error) => {
                    failed += 1;
                    tracing::warn!(model = model.name(), %error, "snapshot not written");
                }
            }
        }
        failed
    }

    /// Writes snapshots now (a rebuild at start is kept at once) and then
    /// every `every` while the models move.
    pub fn spawn(self: Arc<Self>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.save_changed().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{CredentialFilter, CredentialsModel};
    use crate::ReadModel;
    use ibl_events::credentials::CredentialEvent;
    use ibl_events::memory::MemoryStore;
    use ibl_events::{DomainEvent, ExpectedRevision, Metadata};

    #[tokio::test(flavor = "multi_thread")]
    async fn saves_at_once_are_written_one_after_the_other_and_restore() {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        for i in 0..20 {
            let event = CredentialEvent::CredentialCreated {
                platform: "acme".into(),
                entity_id: format!("c{i}"),
                fields: crate::testing::credential(&format!("Badge {i}"), "", None),
                created_at: crate::testing::at(i),
            };
            let data = event.to_data(uuid::Uuid::new_v4(), Metadata::default());
            store
                .append(
                    &format!("credential-c{i}"),
                    ExpectedRevision::NoStream,
                    vec![data],
                )
                .await
                .expect("append");
        }
        let model = Arc::new(CredentialsModel::new());
        let batch = store.read_all(0, 100).await.expect("read");
        model.apply(&batch);
        let dir = tempfile::tempdir().expect("a folder");
        let snapshots = Arc::new(Snapshots::new(
            dir.path().to_owned(),
            store.clone(),
            vec![model.clone() as Arc<dyn Snapshot>],
        ));
        // The background task and the save at a stop, at once (as at a
        // stop right after events arrived).
        let (a, b, c, d) = tokio::join!(
            snapshots.save_changed(),
            snapshots.save_changed(),
            snapshots.save_changed(),
            snapshots.save_changed(),
        );
        assert_eq!(a + b + c + d, 0, "no save failed");
        let restored = Arc::new(CredentialsModel::new());
        let again = Snapshots::new(
            dir.path().to_owned(),
            store,
            vec![restored.clone() as Arc<dyn Snapshot>],
        );
        assert_eq!(again.load().await[0].1, Ok(20));
        let all = CredentialFilter::default();
        assert_eq!(
            restored.credentials("acme", &all, 0, 100).items,
            model.credentials("acme", &all, 0, 100).items
        );
    }
}
