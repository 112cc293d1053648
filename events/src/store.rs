//! The event store port: streams with optimistic concurrency, the global log,
//! and catch-up subscriptions over it.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod checks;
pub mod memory;
pub mod sqlite;

/// Position of an event in the global log. Positions start at 1; a checkpoint
/// of 0 means "nothing read yet".
pub type Position = u64;

/// Who caused an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// The user a request named as the one it acts for (the `{user_id}` of a
    /// credentials path), recorded only when that is a real user of the
    /// platform other than `user`. Never the actor: `user` owns the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

/// Metadata every event carries besides what the store assigns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub actor: Actor,
    /// The server's id of the request that caused the event.
    #[serde(default)]
    pub correlation_id: String,
    /// The `X-Request-Id` the client sent with that request, if any: kept
    /// beside the server's own, never instead of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    /// The id of the event or command that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// `Idempotency-Key` of the request, with a hash of its body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<IdempotencyTag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyTag {
    pub key: String,
    pub request_hash: String,
}

/// An event to append. The payload is already serialized: adapters never see
/// domain types.
#[derive(Debug, Clone, PartialEq)]
pub struct EventData {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: serde_json::Value,
    pub metadata: Metadata,
    /// When the event was first recorded, for an import that keeps a log's
    /// times (`ibl import`); `None`, as every command writes: the store's
    /// clock. Kept to the microsecond.
    pub recorded_at: Option<DateTime<Utc>>,
}

/// An event as stored, with everything the store assigned to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub stream: String,
    /// Revision within the stream, starting at 0.
    pub revision: u64,
    /// Position in the global log, starting at 1.
    pub position: Position,
    pub event_type: String,
    pub schema_version: u32,
    pub recorded_at: DateTime<Utc>,
    /// Shared: copies of the event (each subscriber's, from the SQLite
    /// store's tail) share one payload instead of cloning its tree.
    pub payload: Arc<serde_json::Value>,
    pub metadata: Metadata,
}

impl RecordedEvent {
    /// The platform the event belongs to: that of the key that wrote it,
    /// else the one its payload names (`platform`, `platform_key`), else
    /// the one its stream is named by (`platform-acme`, `apikey-acme/ci`,
    /// `apikeys-acme`, `adminkeys-acme`: a key made by an operator, or
    /// before actors were recorded, names no platform itself).
    pub fn platform(&self) -> Option<&str> {
        self.metadata
            .actor
            .platform
            .as_deref()
            .or_else(|| {
                ["platform", "platform_key"]
                    .iter()
                    .find_map(|k| self.payload.get(*k).and_then(|v| v.as_str()))
            })
            .or_else(|| {
                // Streams named by their platform: its own, and its keys'.
                let stream = self.stream.as_str();
                stream
                    .strip_prefix("platform-")
                    .or_else(|| stream.strip_prefix("apikeys-"))
                    .or_else(|| stream.strip_prefix("adminkeys-"))
                    .or_else(|| crate::platform::api_key_of_stream(stream).map(|(p, _)| p))
            })
            .filter(|p| !p.is_empty())
    }
}

/// What the writer expects the stream to be at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedRevision {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this revision.
    Exact(u64),
}

/// The result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Revision of the last event of the stream after the append.
    pub revision: u64,
    /// Global position of the last event of the append.
    pub position: Position,
    /// True when the events were already stored (an idempotent retry).
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream}: expected revision {expected:?}, actual {actual:?}")]
    Conflict {
        stream: String,
        expected: ExpectedRevision,
        /// The stream's last revision, `None` when it does not exist.
        actual: Option<u64>,
    },
    #[error("invalid append: {0}")]
    Invalid(String),
    #[error("event store unavailable: {0}")]
    Unavailable(String),
}

/// The port every event store adapter implements. One contract test suite
/// (`tests/contract.rs`) checks every adapter.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if it is at `expected`. Appending events
    /// whose first id is already stored in that stream is a no-op that answers
    /// as the first append did (`duplicate: true`).
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError>;

    /// Up to `max` events of `stream` from revision `from` on.
    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `max` events of the global log after position `after`, read
    /// from the store itself (what a verification of the log relies on).
    async fn read_all(&self, after: Position, max: usize)
        -> Result<Vec<RecordedEvent>, StoreError>;

    /// [`read_all`](Self::read_all) for a reader that follows the log's
    /// tail (a [`Subscription`]): the adapter may answer the events this
    /// process committed last from memory, equal to what `read_all` answers
    /// for them, instead of reading and decoding them again for every
    /// projector. No default, so that a wrapper cannot lose it.
    async fn read_tail(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The last position known to be committed. Changes when this process
    /// appends and, within the adapter's polling interval, when another
    /// process does.
    fn head(&self) -> tokio::sync::watch::Receiver<Position>;

    /// The last committed position, asked of the store now rather than as
    /// this process last noticed it: what a read that must see every write
    /// acknowledged before it began waits for. The default, [`head`](Self::head),
    /// is exact for an adapter that learns of every commit as it is made.
    async fn last_committed(&self) -> Result<Position, StoreError> {
        Ok(*self.head().borrow())
    }
}

/// Reads a whole stream.
pub async fn read_stream_all(
    store: &dyn EventStore,
    stream: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    const PAGE: usize = 1024;
    let mut out = Vec::new();
    loop {
        let batch = store.read_stream(stream, out.len() as u64, PAGE).await?;
        let done = batch.len() < PAGE;
        out.extend(batch);
        if done {
            return Ok(out);
        }
    }
}

/// A catch-up subscription: the history after a position, then live events.
pub struct Subscription {
    store: Arc<dyn EventStore>,
    after: Position,
    head: tokio::sync::watch::Receiver<Position>,
}

impl Subscription {
    pub fn new(store: Arc<dyn EventStore>, after: Position) -> Self {
        let head = store.head();
        Self { store, after, head }
    }

    /// The position of the last event handed out.
    pub fn position(&self) -> Position {
        self.after
    }

    /// The next batch of at most `max` events; waits while there is none.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            let batch = self.store.read_tail(self.after, max).await?;
            if let Some(last) = batch.last() {
                self.after = last.position;
                return Ok(batch);
            }
            // Nothing new: wait until the head moves past what we have read.
            let after = self.after;
            if self.head.wait_for(|h| *h > after).await.is_err() {
                return Err(StoreError::Unavailable("event store closed".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: &str, payload: serde_json::Value, actor: Option<&str>) -> RecordedEvent {
        RecordedEvent {
            event_id: Uuid::nil(),
            stream: stream.into(),
            revision: 0,
            position: 1,
            event_type: "T".into(),
            schema_version: 1,
            recorded_at: DateTime::UNIX_EPOCH,
            payload: payload.into(),
            metadata: Metadata {
                actor: Actor {
                    platform: actor.map(str::to_owned),
                    ..Actor::default()
                },
                ..Metadata::default()
            },
        }
    }

    #[test]
    fn an_events_platform_is_its_actors_else_its_payloads_else_its_streams() {
        let none = serde_json::json!({});
        let named = serde_json::json!({"platform": "beta"});
        let cases = [
            (event("user-1", named.clone(), Some("acme")), Some("acme")),
            (event("user-1", named, None), Some("beta")),
            (event("platform-acme", none.clone(), None), Some("acme")),
            (event("apikey-acme/ci", none.clone(), None), Some("acme")),
            (event("apikeys-acme", none.clone(), None), Some("acme")),
            (event("adminkeys-acme", none.clone(), None), Some("acme")),
            (event("ids-user", none.clone(), None), None),
            (event("platform-", none, None), None),
        ];
        for (event, platform) in cases {
            assert_eq!(event.platform(), platform, "{}", event.stream);
        }
    }
}
