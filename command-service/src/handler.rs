//! The generic command handler: load a stream, fold it, decide, append with
//! the expected revision, and retry against fresh state on a conflict.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ibl_events::{
    Actor, AppendResult, DomainEvent, EventStore, ExpectedRevision, IdempotencyTag, Metadata,
    StoreError,
};
use uuid::Uuid;

use crate::domain::{Aggregate, Rejection, RejectionKind};

/// Who sends a command and why: written into every event's metadata.
#[derive(Debug, Clone, Default)]
pub struct CommandContext {
    pub actor: Actor,
    pub correlation_id: String,
    pub client_request_id: Option<String>,
    pub causation_id: Option<String>,
    pub idempotency: Option<IdempotencyTag>,
}

impl CommandContext {
    fn metadata(&self) -> Metadata {
        Metadata {
            actor: self.actor.clone(),
            correlation_id: self.correlation_id.clone(),
            client_request_id: self.client_request_id.clone(),
            causation_id: self.causation_id.clone(),
            idempotency: self.idempotency.clone(),
        }
    }

    /// The id of the `index`-th event this command appends to `stream`.
    /// Random, except under an `Idempotency-Key`, where it is derived from the
    /// key so that a retry appends events the store already holds (a no-op).
    fn event_id(&self, stream: &str, revision: Option<u64>, index: usize) -> Uuid {
        match (&self.idempotency, &self.actor.platform) {
            (Some(tag), Some(platform)) => {
                let start = revision.map_or(0, |r| r + 1);
                derived_id(&format!(
                    "{platform}\n{}\n{stream}\n{}",
                    tag.key,
                    start + index as u64
                ))
            }
            _ => Uuid::new_v4(),
        }
    }
}

/// A name-based (v5) uuid in this service's namespace.
pub fn derived_id(name: &str) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2b8e_4a7d_4e55_9a0b_1c2d_3e4f_5a6b);
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

/// What a command did.
#[derive(Debug)]
pub struct Outcome<S> {
    pub state: S,
    /// `None` when the command appended nothing.
    pub appended: Option<AppendResult>,
    /// The global position of the last event the decision was made on (0:
    /// none), for a command that appended nothing.
    pub seen: u64,
}

impl<S> Outcome<S> {
    /// The position a reader must reach to see this command's effect, or,
    /// when it changed nothing, the state it was judged on (which another
    /// process may have written).
    pub fn position(&self) -> u64 {
        self.appended.map_or(self.seen, |a| a.position)
    }
}

/// Why a command did not go through. The handler knows no HTTP: the edge
/// maps this to an answer once (`impl From<CommandError> for ApiError` in
/// [`crate::http`]).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The domain refused the command.
    #[error("{message}")]
    Rejected {
        kind: RejectionKind,
        message: String,
        /// The offending field of an `Invalid` rejection.
        field: Option<&'static str>,
    },
    /// The store failed, or the stream kept changing under every attempt
    /// (`StoreError::Conflict`).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event this code cannot read.
    #[error("undecodable event {0}")]
    Undecodable(String),
}

impl CommandError {
    /// A rejection of any aggregate.
    pub fn rejected<E: Rejection>(e: E) -> Self {
        CommandError::Rejected {
            kind: e.kind(),
            message: e.to_string(),
            field: e.field(),
        }
    }

    /// Whether this is a conflict: the domain found the state changed (the
    /// entity exists, the name is held), or the stream kept changing.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            CommandError::Rejected {
                kind: RejectionKind::Conflict,
                ..
            } | CommandError::Store(StoreError::Conflict { .. })
        )
    }
}

/// Attempts of one command against a stream that other writers (of this
/// process or others) keep changing; from the second conflict on, each
/// retry waits a random moment, growing, so that racing writers spread out.
const MAX_ATTEMPTS: usize = 16;

async fn back_off(attempt: usize) {
    if attempt >= 2 {
        let ceiling = 1 + 2 * attempt as u64;
        let micros = rand::random_range(0..ceiling * 500);
        tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
    }
}

/// Loads `stream` as aggregate `A` and its last revision.
pub async fn load<A: Aggregate>(
    store: &dyn EventStore,
    stream: &str,
) -> Result<(A::State, Option<u64>), CommandError> {
    let loaded = load_after::<A>(store, stream, A::State::default(), None).await?;
    Ok((loaded.state, loaded.revision))
}

/// A stream as read: its state, last revision and the global position of
/// its last event (0: none).
struct Loaded<S> {
    state: S,
    revision: Option<u64>,
    position: u64,
}

/// Folds the events of `stream` after `revision` onto `state` (the stream's
/// state at `revision`; streams only grow, so this catches a state up).
async fn load_after<A: Aggregate>(
    store: &dyn EventStore,
    stream: &str,
    mut state: A::State,
    mut revision: Option<u64>,
) -> Result<Loaded<A::State>, CommandError> {
    const PAGE: usize = 1024;
    let mut position = 0;
    loop {
        let from = revision.map_or(0, |r| r + 1);
        let batch = store.read_stream(stream, from, PAGE).await?;
        for r in &batch {
            let event = A::Event::from_recorded(r).map_err(|e| {
                CommandError::Undecodable(format!("{}@{}: {e}", r.stream, r.revision))
            })?;
            state = A::evolve(state, &event);
            revision = Some(r.revision);
            position = r.position;
        }
        if batch.len() < PAGE {
            return Ok(Loaded {
                state,
                revision,
                position,
            });
        }
    }
}

/// Runs `command` against `stream`: load, decide, append at the expected
/// revision; on a conflict, reload and decide again.
pub async fn execute<A>(
    store: &Arc<dyn EventStore>,
    stream: &str,
    ctx: &CommandContext,
    command: A::Command,
) -> Result<Outcome<A::State>, CommandError>
where
    A: Aggregate,
    A::Command: Clone,
{
    run::<A>(store, stream, ctx, command, false, A::State::default).await
}

/// Like [`execute`] for a stream that continues a history kept elsewhere:
/// its events are folded onto `base` (the state that history left) rather
/// than onto the empty state.
pub async fn execute_from<A>(
    store: &Arc<dyn EventStore>,
    stream: &str,
    ctx: &CommandContext,
    command: A::Command,
    base: A::State,
) -> Result<Outcome<A::State>, CommandError>
where
    A: Aggregate,
    A::Command: Clone,
    A::State: Clone,
{
    run::<A>(store, stream, ctx, command, false, || base.clone()).await
}

/// Like [`execute`] for a command that creates `stream` under a new id: it
/// decides against the empty state and appends expecting no stream, without
/// reading first; if the stream exists after all, it reloads and decides
/// again as `execute` does.
pub async fn execute_new<A>(
    store: &Arc<dyn EventStore>,
    stream: &str,
    ctx: &CommandContext,
    command: A::Command,
) -> Result<Outcome<A::State>, CommandError>
where
    A: Aggregate,
    A::Command: Clone,
{
    run::<A>(store, stream, ctx, command, true, A::State::default).await
}

async fn run<A>(
    store: &Arc<dyn EventStore>,
    stream: &str,
    ctx: &CommandContext,
    command: A::Command,
    assume_new: bool,
    base: impl Fn() -> A::State,
) -> Result<Outcome<A::State>, CommandError>
where
    A: Aggregate,
    A::Command: Clone,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Loaded {
            state,
            revision,
            position,
        } = if assume_new && attempt == 1 {
            Loaded {
                state: base(),
                revision: None,
                position: 0,
            }
        } else {
            load_after::<A>(store.as_ref(), stream, base(), None).await?
        };
        let events = A::decide(&state, command.clone()).map_err(CommandError::rejected)?;
        if events.is_empty() {
            return Ok(Outcome {
                state,
                appended: None,
                seen: position,
            });
        }
        let metadata = ctx.metadata();
        let data = events
            .iter()
            .enumerate()
            .map(|(i, e)| e.to_data(ctx.event_id(stream, revision, i), metadata.clone()))
            .collect();
        let expected = revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
        match store.append(stream, expected, data).await {
            Ok(appended) => {
                let state = events.iter().fold(state, |s, e| A::evolve(s, e));
                return Ok(Outcome {
                    state,
                    appended: Some(appended),
                    seen: appended.position,
                });
            }
            Err(StoreError::Conflict { .. }) if attempt < MAX_ATTEMPTS => back_off(attempt).await,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Appends the first events of a new stream whose decision was already made
/// (a planned bulk issue). A retry under the same `Idempotency-Key` finds its
/// events stored and appends nothing.
pub async fn append_new<E: DomainEvent>(
    store: &dyn EventStore,
    stream: &str,
    ctx: &CommandContext,
    events: &[E],
) -> Result<AppendResult, CommandError> {
    let metadata = ctx.metadata();
    let data = events
        .iter()
        .enumerate()
        .map(|(i, e)| e.to_data(ctx.event_id(stream, None, i), metadata.clone()))
        .collect();
    Ok(store
        .append(stream, ExpectedRevision::NoStream, data)
        .await?)
}

/// States of recently loaded streams, reused while the stream's revision is
/// the one the caller knows (from a read model): saves a read of the store
/// for aggregates that many commands consult but few change (a credential
/// consulted by every issue).
pub struct StateCache<S> {
    map: Mutex<HashMap<String, (S, u64)>>,
}

/// Entries kept before the cache starts over.
const CACHE_ENTRIES: usize = 10_000;

impl<S: Clone> Default for StateCache<S> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<S: Clone + Default> StateCache<S> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (S, u64)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads `stream` as `A`: the cached state when its revision is `known`,
    /// else the cached state caught up with the events after it.
    pub async fn load<A>(
        &self,
        store: &dyn EventStore,
        stream: &str,
        known: Option<u64>,
    ) -> Result<A::State, CommandError>
    where
        A: Aggregate<State = S>,
    {
        let cached = self.lock().get(stream).cloned();
        if let (Some(known), Some((state, revision))) = (known, &cached) {
            if *revision == known {
                return Ok(state.clone());
            }
        }
        let (state, revision) = match cached {
            Some((state, revision)) => (state, Some(revision)),
            None => (<A::State as Default>::default(), None),
        };
        let Loaded {
            state, revision, ..
        } = load_after::<A>(store, stream, state, revision).await?;
        if let Some(revision) = revision {
            let mut map = self.lock();
            if map.len() >= CACHE_ENTRIES {
                map.clear();
            }
            map.insert(stream.to_owned(), (state.clone(), revision));
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::credential::{CredentialAggregate, CredentialCommand, UpdateCredential};
    use chrono::Utc;
    use ibl_events::credentials::CredentialFields;
    use ibl_events::memory::MemoryStore;

    fn store() -> Arc<dyn EventStore> {
        Arc::new(MemoryStore::new())
    }

    fn create() -> CredentialCommand {
        CredentialCommand::Create {
            platform: "acme".into(),
            entity_id: "c1".into(),
            fields: CredentialFields {
                name: "Rust 101".into(),
                ..CredentialFields::default()
            },
            now: Utc::now(),
        }
    }

    fn rename(name: &str) -> CredentialCommand {
        CredentialCommand::Update {
            changes: UpdateCredential {
                name: Some(name.into()),
                ..UpdateCredential::default()
            },
            now: Utc::now(),
        }
    }

    #[tokio::test]
    async fn a_command_appends_at_the_expected_revision_and_a_rejection_appends_nothing() {
        let store = store();
        let ctx = CommandContext::default();
        let first = execute::<CredentialAggregate>(&store, "credential-c1", &ctx, create()).await;
        assert_eq!(
            first.expect("created").appended.map(|a| a.revision),
            Some(0)
        );
        let again = execute::<CredentialAggregate>(&store, "credential-c1", &ctx, create()).await;
        assert!(
            again.as_ref().is_err_and(CommandError::is_conflict),
            "{again:?}"
        );
        let renamed =
            execute::<CredentialAggregate>(&store, "credential-c1", &ctx, rename("Rust 102"))
                .await
                .expect("renamed");
        assert_eq!(renamed.appended.map(|a| a.revision), Some(1));
        assert_eq!(*store.head().borrow(), 2);
    }

    #[tokio::test]
    async fn an_idempotency_key_derives_event_ids_so_a_retry_appends_nothing() {
        let store = store();
        let ctx = CommandContext {
            actor: Actor {
                platform: Some("acme".into()),
                ..Actor::default()
            },
            idempotency: Some(IdempotencyTag {
                key: "k1".into(),
                request_hash: "h".into(),
            }),
            ..CommandContext::default()
        };
        let first = execute_new::<CredentialAggregate>(&store, "credential-c1", &ctx, create())
            .await
            .expect("created");
        // A retry racing the first one decides against the empty state too.
        let data = {
            let event = ibl_events::credentials::CredentialEvent::CredentialDeleted {
                deleted_at: Utc::now(),
            };
            vec![event.to_data(ctx.event_id("credential-c1", None, 0), Metadata::default())]
        };
        let retry = store
            .append("credential-c1", ExpectedRevision::NoStream, data)
            .await
            .expect("a retry is not a conflict");
        assert!(retry.duplicate);
        assert_eq!(retry.position, first.position());
        assert_eq!(*store.head().borrow(), 1);
    }

    #[tokio::test]
    async fn the_state_cache_reuses_a_known_revision_and_catches_up_otherwise() {
        let store = store();
        let ctx = CommandContext::default();
        execute::<CredentialAggregate>(&store, "credential-c1", &ctx, create())
            .await
            .expect("created");
        let cache = StateCache::default();
        let state = cache
            .load::<CredentialAggregate>(store.as_ref(), "credential-c1", None)
            .await
            .expect("loaded");
        assert_eq!(
            state.live().map(|c| c.fields.name.clone()),
            Some("Rust 101".into())
        );
        execute::<CredentialAggregate>(&store, "credential-c1", &ctx, rename("Rust 102"))
            .await
            .expect("renamed");
        // Told the old revision, the cache answers from memory...
        let stale = cache
            .load::<CredentialAggregate>(store.as_ref(), "credential-c1", Some(0))
            .await
            .expect("cached");
        assert_eq!(
            stale.live().map(|c| c.fields.name.clone()),
            Some("Rust 101".into())
        );
        // ...told the new one, it catches up with the events after its own.
        let fresh = cache
            .load::<CredentialAggregate>(store.as_ref(), "credential-c1", Some(1))
            .await
            .expect("caught up");
        assert_eq!(
            fresh.live().map(|c| c.fields.name.clone()),
            Some("Rust 102".into())
        );
    }
}
