//! The user registry: every user id in one stream, [`USERS_STREAM`], so ids
//! are allocated under one expected revision. Ids are global.
//!
//! Rules:
//! - `Register` takes a username of 1 to 100 characters of `A-Za-z0-9@.+_-`
//!   (trimmed) and a valid email (trimmed, required).
//! - Usernames are unique per platform, compared exactly (Django's default):
//!   a taken one is `Conflict`. Whether the platform exists is for the caller
//!   to check against the platform registry.
//! - The new user's id is the number of users plus one.
//!
//! [`USERS_STREAM`]: ibl_events::platform::USERS_STREAM

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use ibl_events::platform::UserEvent;

use super::validate::{self, FieldError};
use super::{rejection, Aggregate, RejectionKind};

/// Longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 100;

/// The aggregate, for the generic command handler.
pub struct UsersAggregate;

/// The fold of the registry; `Default` is an empty registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsersState {
    by_id: BTreeMap<u64, User>,
    by_name: HashMap<(String, String), u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: u64,
    pub platform: String,
    pub username: String,
    pub email: String,
    pub registered_at: DateTime<Utc>,
}

impl UsersState {
    pub fn get(&self, id: u64) -> Option<&User> {
        self.by_id.get(&id)
    }

    /// The user of this platform with this username.
    pub fn find(&self, platform: &str, username: &str) -> Option<&User> {
        let id = self
            .by_name
            .get(&(platform.to_owned(), username.to_owned()))?;
        self.by_id.get(id)
    }

    /// Every user, by id.
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.by_id.values()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The id the next user gets.
    pub fn next_id(&self) -> u64 {
        self.by_id.len() as u64 + 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    Register {
        platform: String,
        username: String,
        email: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("the username '{username}' is already taken on platform '{platform}'")]
    UsernameTaken { platform: String, username: String },
}

rejection!(UserError, |e| match e {
    UserError::Invalid(_) => RejectionKind::Invalid,
    UserError::UsernameTaken { .. } => RejectionKind::Conflict,
});

/// Whether `username` is 1 to 100 characters of `A-Za-z0-9@.+_-`.
pub fn is_username(username: &str) -> bool {
    !username.is_empty()
        && username.len() <= MAX_USERNAME_CHARS
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@.+_-".contains(c))
}

/// Validates a username (trimmed).
pub fn validate_username(field: &'static str, username: &str) -> Result<String, FieldError> {
    validate::no_nul(field, username)?;
    let username = username.trim();
    if username.is_empty() {
        return Err(FieldError::new(field, validate::BLANK));
    }
    validate::max_chars(field, username, MAX_USERNAME_CHARS)?;
    if !is_username(username) {
        return Err(FieldError::new(
            field,
            "Enter a valid username. This value may contain only letters, \
             numbers, and @/./+/-/_ characters.",
        ));
    }
    Ok(username.to_owned())
}

pub fn decide(state: &UsersState, cmd: UserCommand) -> Result<Vec<UserEvent>, UserError> {
    match cmd {
        UserCommand::Register {
            platform,
            username,
            email,
            now,
        } => {
            let username = validate_username("username", &username)?;
            let email = validate::email("email", &email)?;
            if state.find(&platform, &username).is_some() {
                return Err(UserError::UsernameTaken { platform, username });
            }
            Ok(vec![UserEvent::UserRegistered {
                id: state.next_id(),
                platform,
                username,
                email,
                registered_at: now,
            }])
        }
    }
}

pub fn evolve(mut state: UsersState, event: &UserEvent) -> UsersState {
    match event {
        UserEvent::UserRegistered {
            id,
            platform,
            username,
            email,
            registered_at,
        } => {
            let name = (platform.clone(), username.clone());
            if state.by_id.contains_key(id) || state.by_name.contains_key(&name) {
                return state;
            }
            state.by_name.insert(name, *id);
            state.by_id.insert(
                *id,
                User {
                    id: *id,
                    platform: platform.clone(),
                    username: username.clone(),
                    email: email.clone(),
                    registered_at: *registered_at,
                },
            );
        }
    }
    state
}

pub fn fold<'a>(events: impl IntoIterator<Item = &'a UserEvent>) -> UsersState {
    UsersAggregate::fold(events)
}

impl Aggregate for UsersAggregate {
    type State = UsersState;
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;

    fn decide(state: &UsersState, cmd: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        decide(state, cmd)
    }

    fn evolve(state: UsersState, event: &UserEvent) -> UsersState {
        evolve(state, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, t};
    use UserEvent as E;

    fn registered(id: u64, platform: &str, username: &str) -> UserEvent {
        E::UserRegistered {
            id,
            platform: platform.into(),
            username: username.into(),
            email: format!("{username}@example.com"),
            registered_at: t(0),
        }
    }

    fn register(platform: &str, username: &str, email: &str) -> UserCommand {
        UserCommand::Register {
            platform: platform.into(),
            username: username.into(),
            email: email.into(),
            now: t(5),
        }
    }

    #[test]
    fn the_first_user_gets_id_1() {
        let state = given::<UsersAggregate>(&[])
            .when(register("acme", " jane ", " jane@example.com "))
            .then(&[E::UserRegistered {
                id: 1,
                platform: "acme".into(),
                username: "jane".into(),
                email: "jane@example.com".into(),
                registered_at: t(5),
            }]);
        assert_eq!(state.find("acme", "jane").unwrap().id, 1);
        assert_eq!(state.get(1).unwrap().username, "jane");
        assert!(state.find("other", "jane").is_none());
    }

    #[test]
    fn ids_are_global_and_count_up() {
        let state =
            given::<UsersAggregate>(&[registered(1, "acme", "a"), registered(2, "beta", "b")])
                .when(register("acme", "c", "c@example.com"))
                .accepted()
                .0;
        assert_eq!(state.find("acme", "c").unwrap().id, 3);
    }

    #[test]
    fn usernames_are_unique_per_platform() {
        let e = given::<UsersAggregate>(&[registered(1, "acme", "jane")])
            .when(register("acme", "jane", "other@example.com"))
            .then_err(RejectionKind::Conflict);
        assert_eq!(
            e.to_string(),
            "the username 'jane' is already taken on platform 'acme'"
        );
        given::<UsersAggregate>(&[registered(1, "acme", "jane")])
            .when(register("beta", "jane", "jane@example.com"))
            .accepted();
        given::<UsersAggregate>(&[registered(1, "acme", "jane")])
            .when(register("acme", "Jane", "jane@example.com"))
            .accepted();
    }

    #[test]
    fn usernames_use_a_restricted_alphabet() {
        for good in ["j", "jane.doe+1@x_y-z", &"u".repeat(100)] {
            given::<UsersAggregate>(&[])
                .when(register("acme", good, "a@b.c"))
                .accepted();
        }
        for bad in ["", "  ", "ja ne", "jané", "a/b", "a\0", &"u".repeat(101)] {
            given::<UsersAggregate>(&[])
                .when(register("acme", bad, "a@b.c"))
                .then_invalid("username");
        }
    }

    #[test]
    fn the_email_is_required_and_valid() {
        for bad in ["", "nope", "a@b@c", "a b@c"] {
            given::<UsersAggregate>(&[])
                .when(register("acme", "jane", bad))
                .then_invalid("email");
        }
    }
}
