//! In-memory adapter: for tests and as the reference the contract suite
//! checks the durable adapters against.
//!
//! Everything lives in one `Vec` of [`RecordedEvent`] behind a mutex, with a
//! per-stream index of positions. Nothing survives the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{SubsecRound, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use super::checks::{check_expected, validate_append};
use super::{
    AppendResult, EventData, EventStore, ExpectedRevision, Position, RecordedEvent, StoreError,
};

/// One stream: the indices (into the global log) of its events, by revision,
/// and where each event id of the stream sits.
#[derive(Default)]
struct StreamIndex {
    /// `events[revision]` is the index of that event in the global log.
    events: Vec<usize>,
    /// Event id -> revision, for idempotent retries.
    ids: HashMap<Uuid, u64>,
}

#[derive(Default)]
struct Inner {
    /// The global log; the event at index `i` has position `i + 1`.
    log: Vec<RecordedEvent>,
    streams: HashMap<String, StreamIndex>,
}

/// An [`EventStore`] held in memory.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    head: watch::Sender<Position>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        let (head, _) = watch::channel(0);
        Self {
            inner: Mutex::new(Inner::default()),
            head,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock (short of running out of
        // memory), and appends change the log only after every check
        // passed: the data behind a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        validate_append(stream, &events)?;
        let mut inner = self.lock();
        let Inner { log, streams } = &mut *inner;

        if let Some(index) = streams.get(stream) {
            // Idempotency comes before the revision check, so that a retried
            // `NoStream` append answers as the first one did.
            if let Some(&first) = index.ids.get(&events[0].event_id) {
                // Answer with the last event of the original append when the
                // retry carries the same events, else with the first one.
                let last_id = events[events.len() - 1].event_id;
                let revision = first + events.len() as u64 - 1;
                let revision = match index.ids.get(&last_id) {
                    Some(&r) if r == revision => r,
                    _ => first,
                };
                let position = log[index.events[revision as usize]].position;
                return Ok(AppendResult {
                    revision,
                    position,
                    duplicate: true,
                });
            }
        }

        let actual = streams
            .get(stream)
            .and_then(|index| index.events.len().checked_sub(1))
            .map(|r| r as u64);
        check_expected(stream, expected, actual)?;
        if let Some(index) = streams.get(stream) {
            if let Some(event) = events.iter().find(|e| index.ids.contains_key(&e.event_id)) {
                return Err(StoreError::Invalid(format!(
                    "event id {} is already stored in {stream}",
                    event.event_id
                )));
            }
        }

        let index = streams.entry(stream.to_owned()).or_default();
        // Microseconds, as the durable adapters store them.
        let recorded_at = Utc::now().trunc_subsecs(6);
        let mut revision = actual.map_or(0, |r| r + 1);
        for event in events {
            let position = log.len() as Position + 1;
            index.events.push(log.len());
            index.ids.insert(event.event_id, revision);
            log.push(RecordedEvent {
                event_id: event.event_id,
                stream: stream.to_owned(),
                revision,
                position,
                event_type: event.event_type,
                schema_version: event.schema_version,
                recorded_at: event
                    .recorded_at
                    .map_or(recorded_at, |t| t.trunc_subsecs(6)),
                payload: Arc::new(event.payload),
                metadata: event.metadata,
            });
            revision += 1;
        }
        let position = log.len() as Position;
        drop(inner);
        // Concurrent appends may get here out of order: the head only grows.
        self.head.send_if_modified(|head| {
            let newer = position > *head;
            if newer {
                *head = position;
            }
            newer
        });
        Ok(AppendResult {
            revision: revision - 1,
            position,
            duplicate: false,
        })
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let inner = self.lock();
        let Some(index) = inner.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        Ok(index
            .events
            .iter()
            .skip(from)
            .take(max)
            .map(|&i| inner.log[i].clone())
            .collect())
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let inner = self.lock();
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        Ok(inner.log.iter().skip(start).take(max).cloned().collect())
    }

    /// The log is in memory already.
    async fn read_tail(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_all(after, max).await
    }

    fn head(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }
}
