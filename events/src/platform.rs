//! Events of platforms (tenants), their users and their API keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The legacy registry of every platform (one stream for all: read only to
/// import its platforms into their own streams, see [`platform_stream`]).
pub const PLATFORMS_STREAM: &str = "platforms";
/// The legacy registry of every user (one stream for all: read only to
/// import its users into their own streams, see [`user_stream`]).
pub const USERS_STREAM: &str = "users";

/// Stream of one platform, named by its key (a slug). (Platforms created
/// before streams of their own live in [`PLATFORMS_STREAM`] and are
/// imported into theirs at start.)
pub fn platform_stream(key: &str) -> String {
    format!("platform-{key}")
}

/// Whether a stream holds platform events (the legacy registry or one
/// platform's own).
pub fn is_platform_stream(stream: &str) -> bool {
    stream == PLATFORMS_STREAM || stream.starts_with("platform-")
}

/// The legacy stream of all the API keys of one platform (read only as the
/// history of keys made before each name had a stream of its own, see
/// [`api_key_stream`]).
pub fn api_keys_stream(platform_key: &str) -> String {
    format!("apikeys-{platform_key}")
}

/// Stream of the API key named `name` of a platform: its creation and its
/// revocation, then those of the next key of that name (the stream is the
/// name's reservation). `/` appears in neither a platform key nor a key
/// name.
pub fn api_key_stream(platform_key: &str, name: &str) -> String {
    format!("apikey-{platform_key}/{name}")
}

/// The platform key and key name of an [`api_key_stream`].
pub fn api_key_of_stream(stream: &str) -> Option<(&str, &str)> {
    stream.strip_prefix("apikey-")?.split_once('/')
}

/// Stream of the revocations of a platform's tenant admins' keys: appended
/// at an expected revision before such a key is revoked, so that two racing
/// revocations cannot both take the platform's last admin key.
pub fn admin_keys_stream(platform_key: &str) -> String {
    format!("adminkeys-{platform_key}")
}

/// Events of [`admin_keys_stream`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AdminKeyEvent {
    /// The key with this hash is being revoked: from now on it does not
    /// count as a way in.
    AdminKeyRevoked {
        name: String,
        hash: String,
        revoked_at: DateTime<Utc>,
    },
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
    /// The whole state of user `id` as the legacy registry stream
    /// ([`USERS_STREAM`]) left it, written once into the user's own stream
    /// when a data folder of that layout is first opened.
    UserImported {
        id: u64,
        platform: String,
        username: String,
        email: String,
        given_name: String,
        family_name: String,
        active: bool,
        registered_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    },
}

impl UserEvent {
    /// An import as the events that build the same user state: registered
    /// (ignored by a reader that knows the user), updated to its fields, and
    /// its activation. Other events as they are.
    pub fn expanded(self) -> Vec<UserEvent> {
        match self {
            UserEvent::UserImported {
                id,
                platform,
                username,
                email,
                given_name,
                family_name,
                active,
                registered_at,
                updated_at,
            } => vec![
                UserEvent::UserRegistered {
                    id,
                    platform,
                    username: username.clone(),
                    email: email.clone(),
                    given_name: given_name.clone(),
                    family_name: family_name.clone(),
                    registered_at,
                },
                UserEvent::UserUpdated {
                    id,
                    username,
                    email,
                    given_name,
                    family_name,
                    updated_at,
                },
                if active {
                    UserEvent::UserReactivated {
                        id,
                        reactivated_at: updated_at,
                    }
                } else {
                    UserEvent::UserDeactivated {
                        id,
                        deactivated_at: updated_at,
                    }
                },
            ],
            other => vec![other],
        }
    }
}

/// Stream of one user. (Users registered before per-user streams live in
/// [`USERS_STREAM`] and are imported into their own stream at start.)
pub fn user_stream(id: u64) -> String {
    format!("user-{id}")
}

/// The id of the user whose stream this is, if it is one.
pub fn user_of_stream(stream: &str) -> Option<u64> {
    stream.strip_prefix("user-")?.parse().ok()
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
