//! Test helpers shared by the models' tests: a log of recorded events and
//! a small sample of credentials and assertions.

use chrono::{DateTime, Utc};
use ibl_events::credentials::{AssertionEvent, CredentialEvent, CredentialFields, Recipient};
use ibl_events::{Actor, DomainEvent, IdempotencyTag, Metadata, RecordedEvent};

use crate::assertions::AssertionFilter;

pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid instant")
}

/// A log of recorded events, positions and revisions assigned in order.
#[derive(Default)]
pub(crate) struct Log {
    pub(crate) events: Vec<RecordedEvent>,
}

impl Log {
    /// Appends `event` to `stream` as the store would record it, by acme.
    pub(crate) fn push<E: DomainEvent>(
        &mut self,
        stream: &str,
        event: E,
        idempotency: Option<&str>,
    ) {
        let metadata = Metadata {
            actor: Actor {
                platform: Some("acme".into()),
                ..Actor::default()
            },
            idempotency: idempotency.map(|k| IdempotencyTag {
                key: k.into(),
                request_hash: "h".into(),
            }),
            ..Metadata::default()
        };
        self.push_with(stream, event, metadata);
    }

    /// Appends `event` to `stream` with these metadata.
    pub(crate) fn push_with<E: DomainEvent>(&mut self, stream: &str, event: E, metadata: Metadata) {
        let revision = self.events.iter().filter(|e| e.stream == stream).count() as u64;
        let data = event.to_data(uuid::Uuid::new_v4(), metadata);
        self.events.push(RecordedEvent {
            event_id: data.event_id,
            stream: stream.into(),
            revision,
            position: self.events.len() as u64 + 1,
            event_type: data.event_type,
            schema_version: data.schema_version,
            recorded_at: at(0),
            payload: data.payload,
            metadata: data.metadata,
        });
    }
}

pub(crate) fn credential(name: &str, description: &str, course: Option<&str>) -> CredentialFields {
    CredentialFields {
        name: name.into(),
        description: description.into(),
        course: course.map(str::to_owned),
        ..CredentialFields::default()
    }
}

pub(crate) fn issued(
    id: &str,
    credential: &str,
    email: &str,
    expires: Option<DateTime<Utc>>,
) -> AssertionEvent {
    AssertionEvent::AssertionIssued {
        platform: "acme".into(),
        entity_id: id.into(),
        credential_id: credential.into(),
        recipient: Recipient {
            email: email.into(),
            ..Recipient::default()
        },
        issued_on: at(0),
        expires,
        narrative: String::new(),
        metadata: serde_json::json!({}),
        evidence: Vec::new(),
    }
}

pub(crate) fn sample() -> Log {
    let mut log = Log::default();
    for (id, name, desc, course) in [
        ("c1", "Rust 101", "Ownership", Some("course-1")),
        ("c2", "Go basics", "Goroutines and RUST envy", None),
        ("c3", "Python", "Snakes", Some("course-1")),
    ] {
        log.push(
            &format!("credential-{id}"),
            CredentialEvent::CredentialCreated {
                platform: "acme".into(),
                entity_id: id.into(),
                fields: credential(name, desc, course),
                created_at: at(1),
            },
            Some(&format!("key-{id}")),
        );
    }
    log.push(
        "credential-c3",
        CredentialEvent::CredentialDeleted { deleted_at: at(2) },
        None,
    );
    log.push(
        "assertion-a1",
        issued("a1", "c1", "bob@example.com", None),
        None,
    );
    log.push(
        "assertion-a2",
        issued("a2", "c1", "eve@example.com", Some(at(5))),
        None,
    );
    log.push(
        "assertion-a3",
        issued("a3", "c2", "bob@example.com", None),
        None,
    );
    log.push(
        "assertion-a3",
        AssertionEvent::AssertionRevoked {
            reason: "mistake".into(),
            revoked_at: at(3),
        },
        None,
    );
    log
}

pub(crate) fn filter(include_revoked: bool, include_expired: bool) -> AssertionFilter {
    AssertionFilter {
        credential: None,
        course: None,
        include_revoked,
        include_expired,
        now: at(10),
    }
}
