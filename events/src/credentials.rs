//! Events of the credentials aggregates: credentials (badge definitions),
//! issuers and assertions (a credential issued to one recipient).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Stream of one credential definition.
pub fn credential_stream(entity_id: &str) -> String {
    format!("credential-{entity_id}")
}
/// Stream of one issuer.
pub fn issuer_stream(entity_id: &str) -> String {
    format!("issuer-{entity_id}")
}
/// Stream of one assertion.
pub fn assertion_stream(entity_id: &str) -> String {
    format!("assertion-{entity_id}")
}

/// The writable fields of a credential definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialFields {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Entity id of the issuer, if any.
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub credential_type: Option<String>,
    #[serde(default)]
    pub html_template: String,
    #[serde(default)]
    pub css_template: String,
    #[serde(default)]
    pub icon_image: String,
    #[serde(default)]
    pub background_image: String,
    #[serde(default)]
    pub thumbnail_image: String,
    #[serde(default)]
    pub criteria_url: String,
    #[serde(default)]
    pub criteria_text: String,
    #[serde(default)]
    pub issuing_signal: String,
    #[serde(default)]
    pub course: Option<String>,
    #[serde(default)]
    pub program: Option<String>,
    /// After this instant the definition can no longer be issued.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CredentialEvent {
    CredentialCreated {
        platform: String,
        entity_id: String,
        fields: CredentialFields,
        created_at: DateTime<Utc>,
    },
    CredentialUpdated {
        fields: CredentialFields,
        updated_at: DateTime<Utc>,
    },
    /// The definition is withdrawn: it shows as `revoked` and can no longer be
    /// issued; existing assertions stay as they are.
    CredentialRetired {
        reason: String,
        retired_at: DateTime<Utc>,
    },
    CredentialDeleted {
        deleted_at: DateTime<Utc>,
    },
}

/// The writable fields of an issuer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerFields {
    pub name: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub icon_image: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub signatories: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum IssuerEvent {
    IssuerCreated {
        platform: String,
        entity_id: String,
        fields: IssuerFields,
        created_at: DateTime<Utc>,
    },
    IssuerUpdated {
        fields: IssuerFields,
        updated_at: DateTime<Utc>,
    },
    IssuerDeleted {
        deleted_at: DateTime<Utc>,
    },
}

/// A field that must be present, `null` or not (serde would take a missing
/// `Option` as `None`).
fn required<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// The payload of a schema 1 assertion event in schema 2: an issue gains
/// `issuer_id: null` (not recorded then).
pub fn upcast_assertion_v1(mut payload: serde_json::Value) -> serde_json::Value {
    if payload.get("type").and_then(|t| t.as_str()) == Some("AssertionIssued") {
        if let Some(fields) = payload.as_object_mut() {
            fields.entry("issuer_id").or_insert(serde_json::Value::Null);
        }
    }
    payload
}

/// Who receives an assertion. At least one of `email` and `username`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub narrative: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[allow(clippy::large_enum_variant)] // short-lived values, decoded one at a time
pub enum AssertionEvent {
    /// Schema 2 added `issuer_id` (required: schema 1 events are upcast
    /// with `null`, "not recorded").
    AssertionIssued {
        platform: String,
        entity_id: String,
        credential_id: String,
        /// The issuer of the credential when the assertion was issued
        /// (`null`: the credential had none, or a schema 1 event).
        #[serde(deserialize_with = "required")]
        issuer_id: Option<String>,
        recipient: Recipient,
        issued_on: DateTime<Utc>,
        #[serde(default)]
        expires: Option<DateTime<Utc>>,
        #[serde(default)]
        narrative: String,
        #[serde(default)]
        metadata: serde_json::Value,
        #[serde(default)]
        evidence: Vec<Evidence>,
    },
    AssertionRevoked {
        reason: String,
        revoked_at: DateTime<Utc>,
    },
}

#[cfg(test)]
mod schema_tests {
    use super::*;
    use crate::{DomainEvent, Metadata, RecordedEvent};
    use serde_json::json;

    fn recorded(schema_version: u32, payload: serde_json::Value) -> RecordedEvent {
        RecordedEvent {
            event_id: uuid::Uuid::nil(),
            stream: assertion_stream("a1"),
            revision: 0,
            position: 1,
            event_type: "AssertionIssued".into(),
            schema_version,
            recorded_at: chrono::DateTime::from_timestamp(0, 0).expect("a time"),
            payload: payload.into(),
            metadata: Metadata::default(),
        }
    }

    fn issued_v1() -> serde_json::Value {
        json!({"type": "AssertionIssued", "platform": "acme", "entity_id": "a1",
               "credential_id": "c1", "recipient": {"email": "a@x.test"},
               "issued_on": "2026-01-01T00:00:00Z"})
    }

    #[test]
    fn a_schema_1_issue_reads_with_its_issuer_not_recorded() {
        let event = AssertionEvent::from_recorded(&recorded(1, issued_v1())).expect("upcast");
        let AssertionEvent::AssertionIssued { issuer_id, .. } = event else {
            panic!("an issue");
        };
        assert_eq!(issuer_id, None);
        // A revocation of schema 1 is the same in schema 2.
        let revoked = json!({"type": "AssertionRevoked", "reason": "r", "revoked_at": "2026-01-02T00:00:00Z"});
        assert!(AssertionEvent::from_recorded(&recorded(1, revoked)).is_ok());
    }

    #[test]
    fn schema_2_requires_the_issuer_and_writes_it() {
        let missing = AssertionEvent::from_recorded(&recorded(2, issued_v1()));
        assert!(missing.unwrap_err().to_string().contains("issuer_id"));
        let mut v2 = issued_v1();
        v2["issuer_id"] = json!("i1");
        let event = AssertionEvent::from_recorded(&recorded(2, v2)).expect("reads");
        let data = event.to_data(uuid::Uuid::nil(), Metadata::default());
        assert_eq!(data.schema_version, 2);
        assert_eq!(data.payload["issuer_id"], "i1");
    }
}
