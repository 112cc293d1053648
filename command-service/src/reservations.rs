//! Taking a reservation (see [`crate::domain::reservation`]) for a name:
//! the rule "one group per `unique_id`", "one policy per mentor and role"
//! kept by the event store itself, so that it holds across any number of
//! command-service processes.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ibl_edge::ApiError;
use ibl_events::ids::reservation_stream;
use ibl_events::EventStore;

use crate::domain::reservation::{ReservationAggregate, Reserve};
use crate::handler::{execute, load, CommandContext};
use crate::http::WriteState;

/// Rounds of judge-then-append before giving up (each lost only to another
/// writer that changed the same reservation).
const ROUNDS: usize = 8;

/// A holder whose entity does not exist yet is taken to be in the middle of
/// its creation for this long; after that its reservation can be taken over
/// (it crashed between reserving and creating).
pub const IN_FLIGHT: chrono::Duration = chrono::Duration::seconds(60);

/// Reserves `name` (of `kind`, on `platform`) and answers its holder: the
/// one it has if `lives(holder, reserved_at)` says that one still holds it,
/// else the id `claimant` gives (asked once, only when needed). The caller
/// compares the holder with its own id.
pub async fn reserve(
    store: &Arc<dyn EventStore>,
    ctx: &CommandContext,
    kind: &str,
    platform: &str,
    name: &str,
    lives: impl AsyncFn(u64, DateTime<Utc>) -> Result<bool, ApiError>,
    mut claimant: impl AsyncFnMut() -> Result<u64, ApiError>,
) -> Result<u64, ApiError> {
    let stream = reservation_stream(kind, platform, name);
    // Random event ids even under an Idempotency-Key: two racing retries
    // claim with different ids, and the store must tell them apart (the
    // same event id twice is taken for one retried append).
    let ctx = &CommandContext {
        idempotency: None,
        ..ctx.clone()
    };
    let mut mine: Option<u64> = None;
    for _ in 0..ROUNDS {
        let (state, _) = load::<ReservationAggregate>(store.as_ref(), &stream).await?;
        let vacated = match state.holder {
            Some((holder, _)) if Some(holder) == mine => return Ok(holder),
            Some((holder, at)) if lives(holder, at).await? => return Ok(holder),
            Some((holder, _)) => Some(holder),
            None => None,
        };
        let id = match mine {
            Some(id) => id,
            None => *mine.insert(claimant().await?),
        };
        let command = Reserve {
            platform: platform.to_owned(),
            name: name.to_owned(),
            claimant: id,
            vacated,
            now: Utc::now(),
        };
        match execute::<ReservationAggregate>(store, &stream, ctx, command).await {
            Ok(_) => return Ok(id),
            // Taken or changed meanwhile: judge the new holder.
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(format!(
        "{name:?} is being reserved by other requests; retry."
    )))
}

/// The id of the entity a create makes (`kind`: `role`, `group`, `policy`,
/// `user`):
/// allocated; under an `Idempotency-Key`, reserved for the key, so that
/// every retry of the request, even one racing the first, makes the same
/// entity, whose first events (ids derived from the key) the store then
/// holds once.
pub async fn new_id(
    write: &WriteState,
    ctx: &CommandContext,
    platform: &str,
    kind: &str,
) -> Result<u64, ApiError> {
    let store = &write.store;
    let Some(tag) = &ctx.idempotency else {
        return write.ids.next(store, ctx, kind).await;
    };
    let kept = async |_, _| Ok(true);
    let allocate = async || write.ids.next(store, ctx, kind).await;
    let reservation = format!("idempotency-{kind}");
    reserve(store, ctx, &reservation, platform, &tag.key, kept, allocate).await
}
