//! Events of platforms (tenants), their users and their API keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The registry of every platform: one stream, so that keys and ids are
/// allocated under one expected revision.
pub const PLATFORMS_STREAM: &str = "platforms";
/// The registry of every user id (ids are global, below 2^53).
pub const USERS_STREAM: &str = "users";

/// Stream of the API keys of one platform.
pub fn api_keys_stream(platform_key: &str) -> String {
    format!("apikeys-{platform_key}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum PlatformEvent {
    PlatformCreated {
        id: u64,
        key: String,
        name: String,
        created_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum UserEvent {
    UserRegistered {
        id: u64,
        platform: String,
        username: String,
        email: String,
        /// `""` when unknown (users registered before names were recorded).
        #[serde(default)]
        given_name: String,
        #[serde(default)]
        family_name: String,
        registered_at: DateTime<Utc>,
    },
    /// The new values of every writable field of user `id`.
    UserUpdated {
        id: u64,
        username: String,
        email: String,
        given_name: String,
        family_name: String,
        updated_at: DateTime<Utc>,
    },
    /// User `id` can no longer act (SCIM `active: false`); its data and
    /// memberships stay.
    UserDeactivated {
        id: u64,
        deactivated_at: DateTime<Utc>,
    },
    UserReactivated {
        id: u64,
        reactivated_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ApiKeyEvent {
    /// Only the SHA-256 of the secret is recorded, never the secret.
    ApiKeyCreated {
        name: String,
        prefix: String,
        hash: String,
        user_id: u64,
        username: String,
        expires: Option<DateTime<Utc>>,
        created_at: DateTime<Utc>,
    },
    ApiKeyRevoked {
        name: String,
        revoked_at: DateTime<Utc>,
    },
}
