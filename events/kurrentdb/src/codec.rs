//! How an event of the port is stored in KurrentDB, and read back.
//!
//! * the event's id is the record's id (so that the server's own
//!   idempotence applies to retries);
//! * the event type is the record's type;
//! * the payload is the record's data, as JSON (`content-type:
//!   application/json`);
//! * the record's metadata is a JSON object: the port's [`Metadata`]
//!   fields, flattened, plus `schema_version`, e.g.
//!   `{"schema_version":1,"actor":{"platform":"acme"},"correlation_id":"r1"}`;
//! * `recorded_at` is the server's `created` time (100 ns ticks since the
//!   Unix epoch), cut to microseconds as the other adapters keep it, unless
//!   an import kept the event's first time: the server assigns `created`
//!   itself, so that time travels in the metadata as `recorded_at`;
//! * the revision is the record's stream revision, the position its commit
//!   position in `$all` (see the crate documentation).

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use ibl_events::{EventData, Metadata, Position, RecordedEvent, StoreError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The record metadata this adapter writes.
#[derive(Serialize)]
struct EnvelopeOut<'a> {
    schema_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    recorded_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    metadata: &'a Metadata,
}

/// The record metadata this adapter reads: unknown fields (another writer's
/// `$correlationId`, …) are ignored, missing metadata fields are defaults,
/// but the schema version must be there.
#[derive(Deserialize)]
struct EnvelopeIn {
    schema_version: u32,
    #[serde(default)]
    recorded_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    metadata: Metadata,
}

/// The record metadata (JSON) of `event`.
pub(crate) fn encode_metadata(event: &EventData) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&EnvelopeOut {
        schema_version: event.schema_version,
        recorded_at: event.recorded_at.map(|t| t.trunc_subsecs(6)),
        metadata: &event.metadata,
    })
    .map_err(|e| StoreError::Invalid(format!("event {}: metadata: {e}", event.event_id)))
}

/// The record to append for `event`.
pub(crate) fn encode(event: &EventData) -> Result<kurrentdb::EventData, StoreError> {
    let record = kurrentdb::EventData::json(&event.event_type, &event.payload)
        .map_err(|e| StoreError::Invalid(format!("event {}: payload: {e}", event.event_id)))?;
    Ok(record
        .id(event.event_id)
        .metadata(Bytes::from(encode_metadata(event)?)))
}

/// What [`decode`] needs of a record, borrowed from the client's
/// `RecordedEvent` (whose stream name the client keeps to itself, so that
/// tests could not build one).
pub(crate) struct Raw<'a> {
    pub id: Uuid,
    pub stream: &'a str,
    pub revision: u64,
    pub commit: u64,
    pub prepare: u64,
    pub event_type: &'a str,
    pub data: &'a [u8],
    pub metadata: &'a [u8],
    /// The record's `created` system metadata: 100 ns ticks since the Unix
    /// epoch, as text.
    pub created_ticks: Option<&'a str>,
    /// The client's reading of `created`, cut to whole seconds: used only
    /// when the ticks are missing.
    pub created: DateTime<Utc>,
}

impl<'a> Raw<'a> {
    pub(crate) fn of(record: &'a kurrentdb::RecordedEvent) -> Self {
        Raw {
            id: record.id,
            stream: record.stream_id(),
            revision: record.revision,
            commit: record.position.commit,
            prepare: record.position.prepare,
            event_type: &record.event_type,
            data: &record.data,
            metadata: &record.custom_metadata,
            created_ticks: record.metadata.get("created").map(String::as_str),
            created: record.created,
        }
    }
}

/// Reads a record back as the port's event.
pub(crate) fn decode(raw: Raw<'_>) -> Result<RecordedEvent, StoreError> {
    let what = || {
        format!(
            "event {} of {} at revision {}",
            raw.id, raw.stream, raw.revision
        )
    };
    let position = position(raw.commit, raw.prepare).map_err(|e| match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("{}: {m}", what())),
        StoreError::Invalid(m) => StoreError::Invalid(format!("{}: {m}", what())),
        other => other,
    })?;
    let payload = serde_json::from_slice(raw.data)
        .map_err(|e| StoreError::Invalid(format!("{}: data is not JSON: {e}", what())))?;
    let envelope: EnvelopeIn = serde_json::from_slice(raw.metadata).map_err(|e| {
        StoreError::Invalid(format!("{}: metadata is not this store's: {e}", what()))
    })?;
    Ok(RecordedEvent {
        event_id: raw.id,
        stream: raw.stream.to_owned(),
        revision: raw.revision,
        position,
        event_type: raw.event_type.to_owned(),
        schema_version: envelope.schema_version,
        recorded_at: envelope
            .recorded_at
            .unwrap_or_else(|| recorded_at(raw.created_ticks, raw.created)),
        payload,
        metadata: envelope.metadata,
    })
}

/// The port's position of a record found at (`commit`, `prepare`) in `$all`.
///
/// Every append through gRPC writes each event as a record of its own that
/// commits itself: its commit and prepare positions are both where it starts
/// in the log. Only the legacy TCP API's explicit transactions give several
/// events one commit position (each with a prepare position of its own);
/// such an event has no position of its own in this store. A record whose
/// position the server did not report (`u64::MAX`) has none either.
pub(crate) fn position(commit: u64, prepare: u64) -> Result<Position, StoreError> {
    if commit == u64::MAX {
        Err(StoreError::Unavailable(
            "the server reported no $all position (a server too old to report the position \
             of events read from a stream)"
                .into(),
        ))
    } else if commit != prepare {
        Err(StoreError::Invalid(format!(
            "written in an explicit transaction (commit position {commit}, prepare position \
             {prepare}): not supported"
        )))
    } else {
        Ok(commit)
    }
}

/// The server's `created` time, cut to microseconds.
pub(crate) fn recorded_at(ticks: Option<&str>, fallback: DateTime<Utc>) -> DateTime<Utc> {
    ticks
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|ticks| DateTime::from_timestamp_micros(ticks / 10))
        .unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ibl_events::{Actor, IdempotencyTag};
    use serde_json::json;

    fn full_metadata() -> Metadata {
        Metadata {
            actor: Actor {
                platform: Some("acme".into()),
                user: Some("alice".into()),
                key_name: Some("ci-key".into()),
                on_behalf_of: Some("bob".into()),
            },
            correlation_id: "req-42".into(),
            client_request_id: Some("client-9".into()),
            causation_id: Some("cmd-7".into()),
            idempotency: Some(IdempotencyTag {
                key: "idem-1".into(),
                request_hash: "abc123".into(),
            }),
        }
    }

    fn data(metadata: Metadata) -> EventData {
        EventData {
            recorded_at: None,
            event_id: Uuid::new_v4(),
            event_type: "CredentialCreated".into(),
            schema_version: 3,
            payload: json!({
                "type": "CredentialCreated",
                "nested": { "list": [1, 2.5, "three", null, true], "unicode": "é✓" },
            }),
            metadata,
        }
    }

    /// What the server hands back for `event` stored at revision 4,
    /// position 1234, created at `ticks`.
    fn stored(event: &EventData, metadata: &[u8], data: &[u8], ticks: &str) -> RecordedEvent {
        decode(Raw {
            id: event.event_id,
            stream: "credential-1",
            revision: 4,
            commit: 1234,
            prepare: 1234,
            event_type: &event.event_type,
            data,
            metadata,
            created_ticks: Some(ticks),
            created: DateTime::UNIX_EPOCH,
        })
        .expect("decodes")
    }

    #[test]
    fn an_event_round_trips() {
        for metadata in [full_metadata(), Metadata::default()] {
            let event = data(metadata);
            let meta = encode_metadata(&event).unwrap();
            let payload = serde_json::to_vec(&event.payload).unwrap();
            // 2024-05-01T10:00:00.1234567Z in ticks.
            let ticks = "17145576001234567";
            let recorded = stored(&event, &meta, &payload, ticks);
            assert_eq!(recorded.event_id, event.event_id);
            assert_eq!(recorded.stream, "credential-1");
            assert_eq!(recorded.revision, 4);
            assert_eq!(recorded.position, 1234);
            assert_eq!(recorded.event_type, event.event_type);
            assert_eq!(recorded.schema_version, 3);
            assert_eq!(*recorded.payload, event.payload);
            assert_eq!(recorded.metadata, event.metadata);
            assert_eq!(
                recorded.recorded_at.to_rfc3339(),
                "2024-05-01T10:00:00.123456+00:00"
            );
        }
        // The record the client sends is built from the same parts.
        assert!(encode(&data(full_metadata())).is_ok());
    }

    #[test]
    fn an_imported_time_travels_in_the_metadata_and_wins_over_the_servers() {
        let mut event = data(Metadata::default());
        let first = DateTime::parse_from_rfc3339("2021-03-04T05:06:07.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        event.recorded_at = Some(first);
        let meta = encode_metadata(&event).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&meta).unwrap();
        assert_eq!(json["recorded_at"], "2021-03-04T05:06:07.123456Z");
        let payload = serde_json::to_vec(&event.payload).unwrap();
        let recorded = stored(&event, &meta, &payload, "17145576001234567");
        assert_eq!(recorded.recorded_at, first.trunc_subsecs(6));
        assert_eq!(recorded.metadata, event.metadata);
    }

    #[test]
    fn the_metadata_is_flat_json_with_the_schema_version() {
        let event = data(full_metadata());
        let meta: serde_json::Value =
            serde_json::from_slice(&encode_metadata(&event).unwrap()).expect("JSON");
        assert_eq!(
            meta,
            json!({
                "schema_version": 3,
                "actor": {
                    "platform": "acme",
                    "user": "alice",
                    "key_name": "ci-key",
                    "on_behalf_of": "bob",
                },
                "correlation_id": "req-42",
                "client_request_id": "client-9",
                "causation_id": "cmd-7",
                "idempotency": { "key": "idem-1", "request_hash": "abc123" },
            })
        );
        let bare = data(Metadata::default());
        let meta: serde_json::Value =
            serde_json::from_slice(&encode_metadata(&bare).unwrap()).unwrap();
        assert_eq!(
            meta,
            json!({ "schema_version": 3, "actor": {}, "correlation_id": "" })
        );
    }

    #[test]
    fn foreign_metadata_fields_are_ignored_but_the_schema_version_is_required() {
        let event = data(Metadata::default());
        let payload = serde_json::to_vec(&event.payload).unwrap();
        let other = br#"{"schema_version":1,"correlation_id":"c","$correlationId":"x"}"#;
        let recorded = stored(&event, other, &payload, "0");
        assert_eq!(recorded.schema_version, 1);
        assert_eq!(recorded.metadata.correlation_id, "c");

        for metadata in [&br#"{"correlation_id":"c"}"#[..], b"", b"not json"] {
            let r = decode(Raw {
                id: event.event_id,
                stream: "s",
                revision: 0,
                commit: 10,
                prepare: 10,
                event_type: "T",
                data: &payload,
                metadata,
                created_ticks: None,
                created: DateTime::UNIX_EPOCH,
            });
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
        }
    }

    #[test]
    fn data_that_is_not_json_is_refused() {
        let event = data(Metadata::default());
        let meta = encode_metadata(&event).unwrap();
        let r = decode(Raw {
            id: event.event_id,
            stream: "s",
            revision: 0,
            commit: 10,
            prepare: 10,
            event_type: "T",
            data: b"\x00\x01",
            metadata: &meta,
            created_ticks: None,
            created: DateTime::UNIX_EPOCH,
        });
        assert!(matches!(r, Err(StoreError::Invalid(m)) if m.contains("not JSON")));
    }

    #[test]
    fn positions_are_commit_positions_of_self_committed_records() {
        assert_eq!(position(1234, 1234), Ok(1234));
        // An event of an explicit transaction.
        assert!(matches!(position(2000, 1500), Err(StoreError::Invalid(_))));
        // No position reported.
        assert!(matches!(
            position(u64::MAX, u64::MAX),
            Err(StoreError::Unavailable(_))
        ));
    }

    #[test]
    fn recorded_at_falls_back_to_the_clients_seconds() {
        let fallback = DateTime::from_timestamp(1_714_557_600, 0).unwrap();
        assert_eq!(recorded_at(None, fallback), fallback);
        assert_eq!(recorded_at(Some("garbage"), fallback), fallback);
        assert_eq!(
            recorded_at(Some("10"), fallback),
            DateTime::from_timestamp_micros(1).unwrap()
        );
    }
}
