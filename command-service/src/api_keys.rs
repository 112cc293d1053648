//! Creating and revoking API keys: a stream per key name, the legacy
//! per-platform stream as the earlier history of each name, and the admin
//! keys guard (see `domain::api_key`).
//!
//! No command reads more than the streams of the names it touches (and,
//! for a platform that had keys before names had streams, that platform's
//! legacy stream, which no longer grows).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ibl_events::platform::{admin_keys_stream, api_key_stream, api_keys_stream, ApiKeyEvent};
use ibl_events::{read_stream_all, DomainEvent, EventStore};

use crate::domain::api_key::{
    AdminKeysAggregate, ApiKey, ApiKeyCommand, ApiKeysAggregate, ApiKeysState, RevokeAdminKey,
};
use crate::domain::Aggregate;
use crate::handler::{execute, execute_from, CommandContext, CommandError, Outcome};

/// What the platform's legacy stream says of key name `name`.
async fn legacy(
    store: &dyn EventStore,
    platform: &str,
    name: &str,
) -> Result<ApiKeysState, CommandError> {
    let mut events = Vec::new();
    for r in read_stream_all(store, &api_keys_stream(platform)).await? {
        let event = ApiKeyEvent::from_recorded(&r)
            .map_err(|e| CommandError::Undecodable(format!("{}@{}: {e}", r.stream, r.revision)))?;
        let of_name = match &event {
            ApiKeyEvent::ApiKeyCreated { name: n, .. }
            | ApiKeyEvent::ApiKeyRevoked { name: n, .. } => n == name,
        };
        if of_name {
            events.push(event);
        }
    }
    Ok(ApiKeysAggregate::fold(&events))
}

/// The active key named `name` of `platform`, if any.
pub async fn active_key(
    store: &dyn EventStore,
    platform: &str,
    name: &str,
) -> Result<Option<ApiKey>, CommandError> {
    let mut state = legacy(store, platform, name).await?;
    for r in read_stream_all(store, &api_key_stream(platform, name)).await? {
        let event = ApiKeyEvent::from_recorded(&r)
            .map_err(|e| CommandError::Undecodable(format!("{}@{}: {e}", r.stream, r.revision)))?;
        state = ApiKeysAggregate::evolve(state, &event);
    }
    Ok(state.get(name).cloned())
}

/// Runs `command` (a create or a revoke of key `name`) on the name's
/// stream, after the name's legacy history.
pub async fn run(
    store: &Arc<dyn EventStore>,
    ctx: &CommandContext,
    platform: &str,
    name: &str,
    command: ApiKeyCommand,
) -> Result<Outcome<ApiKeysState>, CommandError> {
    let base = legacy(store.as_ref(), platform, name).await?;
    execute_from::<ApiKeysAggregate>(store, &api_key_stream(platform, name), ctx, command, base)
        .await
}

/// Revokes key `name` of `platform`. When its owner is one of `admins`
/// (the platform's active tenant admins), the admin keys guard first
/// records it as going, judged against the keys named in `admin_keys` (the
/// platform's keys of those admins as the read model lists them; each is
/// read from its own stream): 409 when it is the last way in.
pub async fn revoke(
    store: &Arc<dyn EventStore>,
    ctx: &CommandContext,
    platform: &str,
    name: &str,
    admins: &[u64],
    admin_keys: &[String],
    now: DateTime<Utc>,
) -> Result<Outcome<ApiKeysState>, CommandError> {
    let key = active_key(store.as_ref(), platform, name).await?;
    if let Some(key) = key.filter(|k| admins.contains(&k.user_id)) {
        let mut others = Vec::new();
        for other in admin_keys.iter().filter(|n| n.as_str() != name) {
            if let Some(k) = active_key(store.as_ref(), platform, other).await? {
                if admins.contains(&k.user_id) {
                    others.push(k);
                }
            }
        }
        let command = RevokeAdminKey { key, others, now };
        execute::<AdminKeysAggregate>(store, &admin_keys_stream(platform), ctx, command).await?;
    }
    let command = ApiKeyCommand::Revoke {
        name: name.to_owned(),
        now,
    };
    run(store, ctx, platform, name, command).await
}
