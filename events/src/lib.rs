//! The language of the system: the event envelope, the domain events of each
//! aggregate, and the `EventStore` port with its adapters.
//!
//! This crate knows no web framework and no driver type outside its adapters.
#![forbid(unsafe_code)]

pub mod credentials;
pub mod ids;
pub mod platform;
pub mod rbac;
mod store;
pub mod transfer;

pub use store::*;

/// A domain event: a serde enum tagged by `type`, whose tag is its event type.
pub trait DomainEvent: serde::Serialize + serde::de::DeserializeOwned {
    /// The schema version written for new events of this type.
    const SCHEMA_VERSION: u32 = 1;

    /// Serializes the event with its metadata for the store.
    fn to_data(&self, event_id: uuid::Uuid, metadata: Metadata) -> EventData {
        let payload = serde_json::to_value(self).expect("domain events serialize");
        let event_type = payload
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_owned();
        EventData {
            event_id,
            event_type,
            schema_version: Self::SCHEMA_VERSION,
            payload,
            metadata,
            recorded_at: None,
        }
    }

    /// Reads a stored event, upcasting older schema versions.
    fn from_recorded(event: &RecordedEvent) -> Result<Self, serde_json::Error> {
        if event.schema_version == Self::SCHEMA_VERSION {
            Self::deserialize(&*event.payload)
        } else {
            serde_json::from_value(Self::upcast(
                event.schema_version,
                serde_json::Value::clone(&event.payload),
            ))
        }
    }

    /// Turns the payload of an older schema version into the current one.
    fn upcast(_schema_version: u32, payload: serde_json::Value) -> serde_json::Value {
        payload
    }
}

impl DomainEvent for credentials::CredentialEvent {}
impl DomainEvent for credentials::IssuerEvent {}
impl DomainEvent for credentials::AssertionEvent {
    const SCHEMA_VERSION: u32 = 2;

    fn upcast(schema_version: u32, payload: serde_json::Value) -> serde_json::Value {
        match schema_version {
            1 => credentials::upcast_assertion_v1(payload),
            _ => payload,
        }
    }
}
impl DomainEvent for platform::PlatformEvent {}
impl DomainEvent for ids::IdEvent {}
impl DomainEvent for ids::ReservationEvent {}
impl DomainEvent for ids::IdempotencyEvent {}
impl DomainEvent for platform::UserEvent {}
impl DomainEvent for platform::ApiKeyEvent {}
impl DomainEvent for platform::AdminKeyEvent {}
impl DomainEvent for rbac::RoleEvent {}
impl DomainEvent for rbac::GroupEvent {}
impl DomainEvent for rbac::PolicyEvent {}
