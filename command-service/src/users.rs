//! Users, each in a stream of its own (`user-{id}`), and the rules that span
//! users: a username (exact) and an email (ignoring case) belong to at most
//! one user of a platform. Those are kept by reservation streams
//! ([`crate::reservations`]) taken before the user's own command, so that
//! they hold across processes, and no command reads more than the streams
//! of the user and the names it takes.
//!
//! Data folders written before per-user streams keep every user in one
//! stream, [`USERS_STREAM`]: [`import_legacy_users`] copies each user's
//! state into its own stream once, with its reservations, and moves the
//! user id counter past them.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ibl_edge::ApiError;
use ibl_events::ids::{ids_stream, reservation_stream, IdEvent, ReservationEvent};
use ibl_events::platform::{user_stream, UserEvent, USERS_STREAM};
use ibl_events::{
    read_stream_all, DomainEvent, EventStore, ExpectedRevision, Metadata, StoreError,
};
use uuid::Uuid;

use crate::domain::reservation::ReservationAggregate;
use crate::domain::user::{UpdateUser, User, UserAggregate, UserCommand, UserState};
use crate::domain::Aggregate;
use crate::handler::{execute, execute_new, load, CommandContext, Outcome};
use crate::http::rejected;
use crate::reservations::{reserve, IN_FLIGHT};

/// The reservation kinds of a user's names.
const USERNAME: &str = "username";
const EMAIL: &str = "email";

/// A user to register.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub platform: String,
    pub username: String,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub active: bool,
}

impl NewUser {
    fn command(&self, id: u64, now: DateTime<Utc>) -> UserCommand {
        UserCommand::Register {
            id,
            platform: self.platform.clone(),
            username: self.username.clone(),
            email: self.email.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            active: self.active,
            now,
        }
    }

    /// Judges the registration alone (fields), before an id is taken.
    pub fn judge(&self) -> Result<(), ApiError> {
        UserAggregate::decide(&UserState::default(), self.command(1, Utc::now()))
            .map(|_| ())
            .map_err(rejected)
    }
}

fn username_taken(platform: &str, username: &str) -> ApiError {
    ApiError::Conflict(format!(
        "the username '{username}' is already taken on platform '{platform}'"
    ))
}

fn email_taken(platform: &str, email: &str) -> ApiError {
    ApiError::Conflict(format!(
        "the email '{email}' is already taken on platform '{platform}'"
    ))
}

/// Whether user `holder` still holds `name` of `kind`: it has that username
/// (or that email, ignoring case); a holder whose stream does not exist yet
/// is in the middle of its registration for [`IN_FLIGHT`].
async fn holds(
    store: &Arc<dyn EventStore>,
    kind: &str,
    name: &str,
    holder: u64,
    at: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let (state, _) = load::<UserAggregate>(store.as_ref(), &user_stream(holder)).await?;
    Ok(match state.get() {
        None => Utc::now() - at < IN_FLIGHT,
        Some(u) if kind == USERNAME => u.username == name,
        Some(u) => u.email.to_lowercase() == name,
    })
}

/// Takes `name` of `kind` on `platform` for user `id`: `false` when another
/// user holds it.
async fn take(
    store: &Arc<dyn EventStore>,
    ctx: &CommandContext,
    kind: &str,
    platform: &str,
    name: &str,
    id: u64,
) -> Result<bool, ApiError> {
    let lives = async |holder, at| holds(store, kind, name, holder, at).await;
    let holder = reserve(store, ctx, kind, platform, name, lives, async || Ok(id)).await?;
    Ok(holder == id)
}

/// Registers `new` as user `id` (an id the caller took): its username and
/// email reserved (409 naming the one taken), then its stream created.
pub async fn register(
    store: &Arc<dyn EventStore>,
    ctx: &CommandContext,
    id: u64,
    new: &NewUser,
) -> Result<Outcome<UserState>, ApiError> {
    let command = new.command(id, Utc::now());
    // The names as the user will have them (trimmed, validated).
    let events = UserAggregate::decide(&UserState::default(), command.clone()).map_err(rejected)?;
    let Some(UserEvent::UserRegistered {
        username, email, ..
    }) = events.first()
    else {
        return Err(ApiError::Internal("a registration decided no user".into()));
    };
    let platform = &new.platform;
    if !take(store, ctx, USERNAME, platform, username, id).await? {
        return Err(username_taken(platform, username));
    }
    if !take(store, ctx, EMAIL, platform, &email.to_lowercase(), id).await? {
        return Err(email_taken(platform, email));
    }
    Ok(execute_new::<UserAggregate>(store, &user_stream(id), ctx, command).await?)
}

/// Changes user `id` of `platform`: its fields (a new username or email is
/// reserved first: 409 when another user holds it), then its activation.
/// Answers the user's state after the last command that ran and the
/// position to wait for.
pub async fn change(
    store: &Arc<dyn EventStore>,
    ctx: &CommandContext,
    platform: &str,
    id: u64,
    changes: UpdateUser,
    active: Option<bool>,
) -> Result<(Option<UserState>, u64), ApiError> {
    let now = Utc::now();
    let stream = user_stream(id);
    let mut state = None;
    let mut position = 0;
    if changes != UpdateUser::default() {
        let command = UserCommand::Update {
            platform: platform.to_owned(),
            changes,
            now,
        };
        let (current, _) = load::<UserAggregate>(store.as_ref(), &stream).await?;
        let events = UserAggregate::decide(&current, command.clone()).map_err(rejected)?;
        if let (
            Some(UserEvent::UserUpdated {
                username, email, ..
            }),
            Some(user),
        ) = (events.first(), current.get())
        {
            if *username != user.username
                && !take(store, ctx, USERNAME, platform, username, id).await?
            {
                return Err(username_taken(platform, username));
            }
            let lower = email.to_lowercase();
            if lower != user.email.to_lowercase()
                && !take(store, ctx, EMAIL, platform, &lower, id).await?
            {
                return Err(email_taken(platform, email));
            }
        }
        let outcome = execute::<UserAggregate>(store, &stream, ctx, command).await?;
        position = position.max(outcome.position());
        state = Some(outcome.state);
    }
    if let Some(active) = active {
        let platform = platform.to_owned();
        let command = if active {
            UserCommand::Reactivate { platform, now }
        } else {
            UserCommand::Deactivate { platform, now }
        };
        let outcome = execute::<UserAggregate>(store, &stream, ctx, command).await?;
        position = position.max(outcome.position());
        state = Some(outcome.state);
    }
    Ok((state, position))
}

/// The user of `platform` whose username is `username`, found through the
/// username's reservation.
pub async fn find_by_username(
    store: &Arc<dyn EventStore>,
    platform: &str,
    username: &str,
) -> Result<Option<User>, ApiError> {
    let stream = reservation_stream(USERNAME, platform, username);
    let (reservation, _) = load::<ReservationAggregate>(store.as_ref(), &stream).await?;
    let Some((holder, _)) = reservation.holder else {
        return Ok(None);
    };
    let (state, _) = load::<UserAggregate>(store.as_ref(), &user_stream(holder)).await?;
    Ok(state
        .get_in(platform)
        .filter(|u| u.username == username)
        .cloned())
}

/// The users of the legacy registry stream, folded.
fn legacy_users(events: &[ibl_events::RecordedEvent]) -> Result<BTreeMap<u64, User>, ApiError> {
    let mut states: BTreeMap<u64, UserState> = BTreeMap::new();
    for recorded in events {
        let event = UserEvent::from_recorded(recorded)
            .map_err(|e| ApiError::Internal(format!("a legacy user event: {e}")))?;
        let id = match &event {
            UserEvent::UserRegistered { id, .. }
            | UserEvent::UserUpdated { id, .. }
            | UserEvent::UserDeactivated { id, .. }
            | UserEvent::UserReactivated { id, .. }
            | UserEvent::UserImported { id, .. } => *id,
        };
        let state = states.remove(&id).unwrap_or_default();
        states.insert(id, UserAggregate::evolve(state, &event));
    }
    Ok(states
        .into_iter()
        .filter_map(|(id, s)| s.get().cloned().map(|u| (id, u)))
        .collect())
}

/// Appends `event` as the first event of `stream`, unless the stream
/// exists (then another run of the import, maybe in another process, did).
pub(crate) async fn append_first<E: DomainEvent>(
    store: &Arc<dyn EventStore>,
    stream: &str,
    event: &E,
    metadata: &Metadata,
) -> Result<(), ApiError> {
    let data = event.to_data(Uuid::new_v4(), metadata.clone());
    match store
        .append(stream, ExpectedRevision::NoStream, vec![data])
        .await
    {
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Imports the users of a data folder written before per-user streams:
/// each user's state into its own stream (`UserImported`), its username and
/// email reserved, and the user id counter (`ids-user`) moved past the
/// highest legacy id, last. Idempotent and safe to run from several
/// processes at once: a store whose id counter exists (new, or imported
/// before) is left as it is. Answers how many users it imported.
pub async fn import_legacy_users(store: &Arc<dyn EventStore>) -> Result<usize, ApiError> {
    let ids = ids_stream("user");
    if !store.read_stream(&ids, 0, 1).await?.is_empty() {
        return Ok(0);
    }
    let legacy = read_stream_all(store.as_ref(), USERS_STREAM).await?;
    if legacy.is_empty() {
        return Ok(0);
    }
    let users = legacy_users(&legacy)?;
    let metadata = Metadata {
        correlation_id: format!("import-legacy-users-{}", Uuid::new_v4()),
        ..Metadata::default()
    };
    let now = Utc::now();
    for user in users.values() {
        let imported = UserEvent::UserImported {
            id: user.id,
            platform: user.platform.clone(),
            username: user.username.clone(),
            email: user.email.clone(),
            given_name: user.given_name.clone(),
            family_name: user.family_name.clone(),
            active: user.active,
            registered_at: user.registered_at,
            updated_at: user.updated_at,
        };
        append_first(store, &user_stream(user.id), &imported, &metadata).await?;
        for (kind, name) in [
            (USERNAME, user.username.clone()),
            (EMAIL, user.email.to_lowercase()),
        ] {
            let reserved = ReservationEvent::Reserved {
                platform: user.platform.clone(),
                name: name.clone(),
                holder: user.id,
                reserved_at: now,
            };
            let stream = reservation_stream(kind, &user.platform, &name);
            append_first(store, &stream, &reserved, &metadata).await?;
        }
    }
    let highest = users.keys().next_back().copied().unwrap_or(0);
    let counter = IdEvent::IdsAllocated {
        first: 1,
        count: highest,
        allocated_at: now,
    };
    append_first(store, &ids, &counter, &metadata).await?;
    Ok(users.len())
}

#[cfg(test)]
mod tests {
    use ibl_events::memory::MemoryStore;

    use super::*;
    use crate::domain::testing::t;
    use crate::platforms::allocate_ids;

    fn legacy(event: UserEvent) -> ibl_events::EventData {
        event.to_data(Uuid::new_v4(), Metadata::default())
    }

    #[tokio::test]
    async fn legacy_users_are_imported_once_with_their_names_and_the_id_counter() {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let registered = |id: u64, name: &str| UserEvent::UserRegistered {
            id,
            platform: "acme".into(),
            username: name.into(),
            email: format!("{name}@x.test"),
            given_name: String::new(),
            family_name: String::new(),
            registered_at: t(0),
        };
        let events = vec![
            legacy(registered(1, "ann")),
            legacy(registered(2, "bob")),
            legacy(UserEvent::UserUpdated {
                id: 2,
                username: "robert".into(),
                email: "Robert@x.test".into(),
                given_name: "Rob".into(),
                family_name: String::new(),
                updated_at: t(1),
            }),
            legacy(UserEvent::UserDeactivated {
                id: 1,
                deactivated_at: t(2),
            }),
        ];
        store
            .append(USERS_STREAM, ExpectedRevision::NoStream, events)
            .await
            .unwrap();
        assert_eq!(import_legacy_users(&store).await.unwrap(), 2);
        let head = *store.head().borrow();
        assert_eq!(import_legacy_users(&store).await.unwrap(), 0, "once");
        assert_eq!(*store.head().borrow(), head);

        let (ann, _) = load::<UserAggregate>(store.as_ref(), &user_stream(1))
            .await
            .unwrap();
        assert!(!ann.get().unwrap().active);
        let bob = find_by_username(&store, "acme", "robert").await.unwrap();
        assert_eq!(bob.map(|u| (u.id, u.given_name)), Some((2, "Rob".into())));
        // The names are taken, the old one is free, new ids come after.
        let ctx = CommandContext::default();
        let id = allocate_ids(&store, &ctx, "user", 1).await.unwrap();
        assert_eq!(id, 3);
        let new = |username: &str, email: &str| NewUser {
            platform: "acme".into(),
            username: username.into(),
            email: email.into(),
            given_name: String::new(),
            family_name: String::new(),
            active: true,
        };
        let taken = register(&store, &ctx, id, &new("robert", "r2@x.test")).await;
        assert!(matches!(taken, Err(ApiError::Conflict(_))), "{taken:?}");
        let taken = register(&store, &ctx, id, &new("rob2", "ROBERT@x.test")).await;
        assert!(matches!(taken, Err(ApiError::Conflict(_))), "{taken:?}");
        register(&store, &ctx, id, &new("bob", "bob@x.test"))
            .await
            .expect("the old username is free");
    }
}
