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
