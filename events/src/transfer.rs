//! Moving a platform's events from one store to another (`ibl export`,
//! `ibl import`): between the embedded store and EventStoreDB, or out of a
//! store that several platforms share.
//!
//! An export is one JSON line per event, each the event as stored
//! ([`RecordedEvent`]: id, stream, revision, position, type, schema version,
//! time, payload and metadata, the actor among them), in the log's order.
//! An import appends them to an empty store as they were: the same ids,
//! streams, revisions, types, payloads, metadata and times, in the same
//! order. Only positions change (they are the store's).
//!
//! A platform's events are those [`RecordedEvent::platform`] names it for,
//! less the streams every platform shares: the id counters (`ids-*`) and
//! the legacy registries (`platforms`, `users`), whose events were copied
//! into streams of their own when they were migrated. An import moves the
//! id counters past the highest id it loaded, so that the target hands out
//! no id twice.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;

use crate::ids::{ids_stream, IdEvent};
use crate::platform::{is_platform_stream, user_of_stream, PLATFORMS_STREAM, USERS_STREAM};
use crate::{DomainEvent, EventData, EventStore, ExpectedRevision, Metadata, RecordedEvent};

/// Streams whose events belong to every platform.
fn shared(stream: &str) -> bool {
    stream.starts_with("ids-") || stream == USERS_STREAM || stream == PLATFORMS_STREAM
}

/// What an export or an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Moved {
    pub events: u64,
    pub streams: u64,
    /// The id counters an import moved: kind → highest id taken.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub counters: HashMap<String, u64>,
}

/// Writes `platform`'s events, up to the last committed when it starts, to
/// `out` as JSON lines. Refuses a log where one of its streams holds
/// another platform's event before one of its own (the stream could not be
/// imported alone).
pub async fn export(
    store: &dyn EventStore,
    platform: &str,
    out: &mut impl Write,
) -> Result<Moved, String> {
    const BATCH: usize = 1024;
    let end = store.last_committed().await.map_err(|e| e.to_string())?;
    // The next revision of each of the platform's streams.
    let mut next: HashMap<String, u64> = HashMap::new();
    let mut moved = Moved::default();
    let mut after = 0;
    while after < end {
        let batch = store
            .read_all(after, BATCH)
            .await
            .map_err(|e| format!("reading the log after {after}: {e}"))?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for event in batch.iter().filter(|e| e.position <= end) {
            if event.platform() != Some(platform) || shared(&event.stream) {
                continue;
            }
            let expected = next.entry(event.stream.clone()).or_insert(0);
            if event.revision != *expected {
                return Err(format!(
                    "stream {}: revision {} (position {}) is {platform}'s but an earlier one is not: a stream that holds another platform's events cannot be exported alone",
                    event.stream, event.revision, event.position
                ));
            }
            *expected += 1;
            serde_json::to_writer(&mut *out, event).map_err(|e| e.to_string())?;
            out.write_all(b"\n").map_err(|e| e.to_string())?;
            moved.events += 1;
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    moved.streams = next.len() as u64;
    Ok(moved)
}

/// The id an event's stream (or, for a platform, its creation) takes from
/// a counter: the counter's kind and the id.
fn id_taken(event: &RecordedEvent) -> Option<(&'static str, u64)> {
    if let Some(id) = user_of_stream(&event.stream) {
        return Some(("user", id));
    }
    if is_platform_stream(&event.stream) {
        return event
            .payload
            .get("id")
            .and_then(|id| id.as_u64())
            .map(|id| ("platform", id));
    }
    ["role", "group", "policy"].into_iter().find_map(|kind| {
        let id = event.stream.strip_prefix(kind)?.strip_prefix('-')?;
        id.parse().ok().map(|id| (kind, id))
    })
}

/// Appends the events of an export (`lines`) to `store`, which must be
/// empty, in their order; then moves each id counter past the highest id
/// loaded. A line that is not an event, an event out of the export's order
/// or a stream with a gap stops the import at that line, naming it (what
/// came before stays: import into a fresh store again).
pub async fn import(store: &dyn EventStore, lines: impl BufRead) -> Result<Moved, String> {
    /// Events of one stream appended at once.
    const BATCH: usize = 500;
    if !store
        .read_all(0, 1)
        .await
        .map_err(|e| e.to_string())?
        .is_empty()
    {
        return Err("the store is not empty: an import loads into an empty store".into());
    }
    let mut next: HashMap<String, u64> = HashMap::new();
    let mut moved = Moved::default();
    let mut pending: Vec<RecordedEvent> = Vec::new();
    let mut last_position = 0;
    for (n, line) in lines.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: RecordedEvent = serde_json::from_str(&line)
            .map_err(|e| format!("line {}: not an exported event: {e}", n + 1))?;
        if event.position <= last_position {
            return Err(format!(
                "line {}: position {} after {last_position}: not in the log's order",
                n + 1,
                event.position
            ));
        }
        last_position = event.position;
        let expected = next.entry(event.stream.clone()).or_insert(0);
        if event.revision != *expected {
            return Err(format!(
                "line {}: stream {} at revision {} where {} comes next",
                n + 1,
                event.stream,
                event.revision,
                expected
            ));
        }
        *expected += 1;
        if let Some((kind, id)) = id_taken(&event) {
            let highest = moved.counters.entry(kind.to_owned()).or_default();
            *highest = (*highest).max(id);
        }
        if pending
            .first()
            .is_some_and(|p| p.stream != event.stream || pending.len() >= BATCH)
        {
            append(store, std::mem::take(&mut pending)).await?;
        }
        pending.push(event);
        moved.events += 1;
    }
    append(store, pending).await?;
    moved.streams = next.len() as u64;
    let metadata = Metadata {
        correlation_id: format!("import-{}", uuid::Uuid::new_v4()),
        ..Metadata::default()
    };
    for (kind, highest) in &moved.counters {
        let counter = IdEvent::IdsAllocated {
            first: 1,
            count: *highest,
            allocated_at: Utc::now(),
        };
        store
            .append(
                &ids_stream(kind),
                ExpectedRevision::NoStream,
                vec![counter.to_data(uuid::Uuid::new_v4(), metadata.clone())],
            )
            .await
            .map_err(|e| format!("moving the {kind} ids past {highest}: {e}"))?;
    }
    Ok(moved)
}

/// Appends events of one stream, read from an export, as they were.
async fn append(store: &dyn EventStore, events: Vec<RecordedEvent>) -> Result<(), String> {
    let Some(first) = events.first() else {
        return Ok(());
    };
    let stream = first.stream.clone();
    let expected = match first.revision {
        0 => ExpectedRevision::NoStream,
        r => ExpectedRevision::Exact(r - 1),
    };
    let data = events
        .into_iter()
        .map(|e| EventData {
            event_id: e.event_id,
            event_type: e.event_type,
            schema_version: e.schema_version,
            payload: Arc::unwrap_or_clone(e.payload),
            metadata: e.metadata,
            recorded_at: Some(e.recorded_at),
        })
        .collect();
    store
        .append(&stream, expected, data)
        .await
        .map(|_| ())
        .map_err(|e| format!("appending to {stream}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::Actor;
    use serde_json::json;

    fn by(platform: &str, n: u64) -> EventData {
        EventData {
            event_id: uuid::Uuid::new_v4(),
            event_type: "Tested".into(),
            schema_version: 1,
            payload: json!({"type": "Tested", "n": n}),
            metadata: Metadata {
                actor: Actor {
                    platform: Some(platform.into()),
                    user: Some("admin".into()),
                    ..Actor::default()
                },
                correlation_id: format!("r{n}"),
                ..Metadata::default()
            },
            recorded_at: None,
        }
    }

    async fn put(store: &MemoryStore, stream: &str, events: Vec<EventData>) {
        store
            .append(stream, ExpectedRevision::Any, events)
            .await
            .expect("append");
    }

    /// Two platforms' events interleaved, and a counter they share.
    async fn two_platforms() -> MemoryStore {
        let store = MemoryStore::new();
        let created = |key: &str, id: u64| {
            let mut e = by(key, 0);
            e.event_type = "PlatformCreated".into();
            e.payload = json!({"type": "PlatformCreated", "id": id, "key": key, "name": key});
            e
        };
        put(&store, "platform-acme", vec![created("acme", 1)]).await;
        put(&store, "platform-other", vec![created("other", 2)]).await;
        put(&store, "ids-role", vec![by("acme", 1)]).await;
        put(&store, "role-7", vec![by("acme", 2), by("acme", 3)]).await;
        put(&store, "role-8", vec![by("other", 4)]).await;
        put(&store, "user-12", vec![by("acme", 5)]).await;
        put(&store, "role-7", vec![by("acme", 6)]).await;
        store
    }

    #[tokio::test]
    async fn a_platforms_export_imports_into_an_empty_store_as_it_was() {
        let source = two_platforms().await;
        let mut file = Vec::new();
        let moved = export(&source, "acme", &mut file).await.expect("exports");
        assert_eq!((moved.events, moved.streams), (5, 3));
        let target = MemoryStore::new();
        let loaded = import(&target, &file[..]).await.expect("imports");
        assert_eq!((loaded.events, loaded.streams), (5, 3));
        assert_eq!(
            loaded.counters,
            HashMap::from([
                ("platform".into(), 1),
                ("role".into(), 7),
                ("user".into(), 12)
            ])
        );
        let all = target.read_all(0, 100).await.expect("reads");
        let theirs: Vec<RecordedEvent> = source
            .read_all(0, 100)
            .await
            .expect("reads")
            .into_iter()
            .filter(|e| e.platform() == Some("acme") && !e.stream.starts_with("ids-"))
            .collect();
        // The same events, positions aside, then the counters.
        let without_position = |e: &RecordedEvent| RecordedEvent {
            position: 0,
            ..e.clone()
        };
        assert_eq!(
            all[..5].iter().map(without_position).collect::<Vec<_>>(),
            theirs.iter().map(without_position).collect::<Vec<_>>()
        );
        assert_eq!(all.len(), 8);
        assert!(all[5..].iter().all(|e| e.stream.starts_with("ids-")));

        // Once loaded, the store is not empty: a second import is refused.
        let again = import(&target, &file[..]).await;
        assert!(again.unwrap_err().contains("not empty"));
    }

    #[tokio::test]
    async fn an_import_stops_at_a_line_out_of_order_or_not_an_event() {
        let source = two_platforms().await;
        let mut file = Vec::new();
        export(&source, "acme", &mut file).await.expect("exports");
        let text = String::from_utf8(file).expect("text");
        let lines: Vec<&str> = text.lines().collect();
        let cases = [
            (
                format!("{}\n{}\n", lines[0], lines[2]),
                "line 2: stream role-7 at revision 1 where 0 comes next",
            ),
            (
                format!("{}\n{}\n", lines[1], lines[0]),
                "line 2: position 1 after 4: not in the log's order",
            ),
            (
                format!("{}\n{{}}\n", lines[0]),
                "line 2: not an exported event",
            ),
        ];
        for (file, expected) in cases {
            let error = import(&MemoryStore::new(), file.as_bytes())
                .await
                .unwrap_err();
            assert!(error.contains(expected), "{expected:?} in {error:?}");
        }
    }

    #[tokio::test]
    async fn a_stream_shared_with_another_platform_is_not_exported() {
        let store = two_platforms().await;
        put(&store, "mixed", vec![by("other", 9), by("acme", 10)]).await;
        let error = export(&store, "acme", &mut Vec::new()).await.unwrap_err();
        assert!(error.contains("stream mixed: revision 1"), "{error}");
    }
}
