//! Integer ids of roles, groups and policies, allocated in order from one
//! stream per kind, so that concurrent writers (even in other processes)
//! never hand out the same id.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Stream of the ids of one kind (`"role"`, `"group"`, `"policy"`).
pub fn ids_stream(kind: &str) -> String {
    format!("ids-{kind}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum IdEvent {
    /// Ids `first ..= first + count - 1` are taken.
    IdsAllocated {
        first: u64,
        count: u64,
        allocated_at: DateTime<Utc>,
    },
}

/// Stream of one name that at most one entity of a platform may hold at a
/// time (`kind` says which: a group's `unique_id`, the access policy of one
/// mentor and role). The name can be any text, so the stream is named by
/// a v5 uuid of the platform and the name.
pub fn reservation_stream(kind: &str, platform: &str, name: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x1b5e_7f0c_2d34_4a8b_9c61_0e2f_3a4b_5c6d);
    let key = uuid::Uuid::new_v5(&NAMESPACE, format!("{platform}\n{name}").as_bytes());
    format!("reservation-{kind}-{key}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ReservationEvent {
    /// From now on `holder` (an id of the reserved kind) holds the name.
    /// `name` is kept for auditors: the stream is named by its hash.
    Reserved {
        platform: String,
        name: String,
        holder: u64,
        reserved_at: DateTime<Utc>,
    },
}

/// Stream of one `Idempotency-Key` of a platform: its first event binds the
/// key to the first request's body and to a random seed from which the
/// entity ids of that request come. Named by a v5 uuid of the platform and
/// the key (the key can be any text).
pub fn idempotency_stream(platform: &str, key: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5d0a_41c2_98e3_4f6b_a1d7_2c3e_4f50_6172);
    let id = uuid::Uuid::new_v5(&NAMESPACE, format!("{platform}\n{key}").as_bytes());
    format!("idempotency-{id}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum IdempotencyEvent {
    /// The key is bound to the request whose hash this is. `seed` is random:
    /// the ids the request makes derive from it, so nobody who knows the key
    /// can compute them.
    IdempotencyKeyClaimed {
        platform: String,
        key: String,
        request_hash: String,
        seed: uuid::Uuid,
        claimed_at: DateTime<Utc>,
    },
}
