//! `Idempotency-Key`: the first request under a key claims it, in a stream
//! of its own appended with "no stream", binding the key to that request's
//! body hash and to a random seed. Every later request under the key, even
//! one racing the first in another process, reads the claim: the same body
//! gets the same seed (so it makes the same entities, whose first events
//! the store then holds once), another body is refused (422).
//!
//! Entity ids of a keyed request derive from the seed, never from the key
//! itself: knowing a key tells nothing about the ids it made.

use chrono::Utc;
use ibl_edge::ApiError;
use ibl_events::ids::{idempotency_stream, IdempotencyEvent};
use ibl_events::{DomainEvent, EventStore, ExpectedRevision, IdempotencyTag, Metadata, StoreError};
use uuid::Uuid;

use crate::handler::{derived_id, CommandContext};

/// Claims `tag`'s key on `platform` for this request with `seed`; answers
/// the seed of the request that holds it (`seed`, or an earlier request's
/// with the same body). 422 when the key is held by a request with another
/// body.
pub async fn claim(
    store: &dyn EventStore,
    ctx: &CommandContext,
    platform: &str,
    tag: &IdempotencyTag,
    seed: Uuid,
) -> Result<Uuid, ApiError> {
    let stream = idempotency_stream(platform, &tag.key);
    let event = IdempotencyEvent::IdempotencyKeyClaimed {
        platform: platform.to_owned(),
        key: tag.key.clone(),
        request_hash: tag.request_hash.clone(),
        seed,
        claimed_at: Utc::now(),
    };
    // Without the tag in its metadata: the claim is not one of the writes
    // the key's record lists.
    let metadata = Metadata {
        actor: ctx.actor.clone(),
        correlation_id: ctx.correlation_id.clone(),
        client_request_id: ctx.client_request_id.clone(),
        ..Metadata::default()
    };
    let data = event.to_data(Uuid::new_v4(), metadata);
    match store
        .append(&stream, ExpectedRevision::NoStream, vec![data])
        .await
    {
        Ok(_) => Ok(seed),
        Err(StoreError::Conflict { .. }) => {
            let first = store.read_stream(&stream, 0, 1).await?;
            let held = first
                .first()
                .map(IdempotencyEvent::from_recorded)
                .transpose()
                .map_err(|e| ApiError::Internal(format!("reading a key's claim: {e}")))?;
            match held {
                Some(IdempotencyEvent::IdempotencyKeyClaimed {
                    request_hash, seed, ..
                }) if request_hash == tag.request_hash => Ok(seed),
                Some(_) => Err(ApiError::IdempotencyKeyReused),
                None => Err(ApiError::Internal("a key's claim vanished".into())),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The id of the entity `salt` names that a request makes, derived from the
/// request's random seed (under an `Idempotency-Key`, the claim's seed: the
/// same for every retry of the request).
///
/// A seed made by [`new_seed`] (UUIDv7) gives time-ordered ids: UUIDv7 (RFC
/// 9562) with the seed's millisecond timestamp and 74 bits derived from the
/// seed and `salt`. Ids made close in time then sit close in every index
/// keyed by them (a random id costs a write at a random place per insert).
/// Seeds of older claims (UUIDv4) keep the ids they always gave.
pub fn entity_id(seed: Uuid, salt: &str) -> String {
    let derived = derived_id(&format!("{seed}\n{salt}"));
    if seed.get_version() != Some(uuid::Version::SortRand) {
        return derived.to_string();
    }
    let mut bytes = *derived.as_bytes();
    bytes[..6].copy_from_slice(&seed.as_bytes()[..6]);
    uuid::Builder::from_bytes(bytes)
        .with_version(uuid::Version::SortRand)
        .with_variant(uuid::Variant::RFC4122)
        .into_uuid()
        .to_string()
}

/// A fresh random seed for the ids of a request (UUIDv7: see
/// [`entity_id`]).
pub fn new_seed() -> Uuid {
    Uuid::now_v7()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_a_fresh_seed_are_time_ordered_uuidv7_and_the_same_for_a_retry() {
        let first = new_seed();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = new_seed();
        let a = entity_id(first, "bulk\n0");
        let b = entity_id(first, "bulk\n1");
        assert_eq!(
            a,
            entity_id(first, "bulk\n0"),
            "a retry derives the same id"
        );
        assert_ne!(a, b);
        let parsed = Uuid::parse_str(&a).expect("a UUID");
        assert_eq!(parsed.get_version(), Some(uuid::Version::SortRand));
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(a[..13], first.to_string()[..13], "the seed's timestamp");
        assert!(entity_id(later, "bulk\n0") > b, "later seeds sort after");
    }

    #[test]
    fn seeds_of_older_claims_keep_the_ids_they_gave() {
        let old = Uuid::new_v4();
        assert_eq!(
            entity_id(old, "x"),
            derived_id(&format!("{old}\nx")).to_string()
        );
    }
}
