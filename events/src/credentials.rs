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
    AssertionIssued {
        platform: String,
        entity_id: String,
        credential_id: String,
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
