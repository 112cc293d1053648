//! What the projections' benchmarks share: an issued assertion as the
//! store records it.

use ibl_events::credentials::{AssertionEvent, Recipient};
use ibl_events::{DomainEvent, Metadata, RecordedEvent};

/// The `n`-th issue of `credential` to a learner of its own, at position
/// `n`, written with `metadata`; its id is time-ordered, as the service
/// makes them.
pub fn issued(n: u64, credential: &str, metadata: Metadata) -> RecordedEvent {
    let id = uuid::Uuid::now_v7().to_string();
    let event = AssertionEvent::AssertionIssued {
        platform: "bench".into(),
        entity_id: id.clone(),
        credential_id: credential.into(),
        issuer_id: None,
        recipient: Recipient {
            email: format!("learner-{n}@example.com"),
            ..Recipient::default()
        },
        issued_on: chrono::Utc::now(),
        expires: None,
        narrative: String::new(),
        metadata: serde_json::json!({}),
        evidence: Vec::new(),
    };
    let data = event.to_data(uuid::Uuid::new_v4(), metadata);
    RecordedEvent {
        event_id: data.event_id,
        stream: format!("assertion-{id}"),
        revision: 0,
        position: n,
        event_type: data.event_type,
        schema_version: data.schema_version,
        recorded_at: chrono::Utc::now(),
        payload: data.payload.into(),
        metadata: data.metadata,
    }
}
