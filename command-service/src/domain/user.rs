//! One user (stream `user-{id}`): registered with an id the caller took,
//! updated, deactivated and reactivated.
//!
//! Rules:
//! - `Register` takes a username of 1 to 100 characters of `A-Za-z0-9@.+_-`
//!   (trimmed), a valid email (trimmed, required), given and family names
//!   (trimmed, at most 150 characters, may be blank) and an initial `active`
//!   flag (an inactive user is registered, then deactivated). On a stream
//!   that holds a user it is `Conflict`.
//! - `Update`, `Deactivate` and `Reactivate` name the caller's platform: no
//!   user, or a user of another platform, is `NotFound`. An update that
//!   changes nothing, deactivating an inactive user and reactivating an
//!   active one decide no event.
//! - Uniqueness of usernames (exact) and emails (ignoring case) per platform
//!   spans users, so it is not this aggregate's: it is kept by reservation
//!   streams taken before the command ([`crate::users`]).
//! - Deactivation keeps the user's memberships and policies; whoever
//!   evaluates permissions denies inactive users.

use chrono::{DateTime, Utc};
use ibl_events::platform::UserEvent;

use super::validate::{self, FieldError};
use super::{rejection, Aggregate, RejectionKind};

/// Longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 100;
/// Longest given or family name, in characters.
pub const MAX_PERSON_NAME_CHARS: usize = 150;

/// The aggregate, for the generic command handler.
pub struct UserAggregate;

/// The fold of one user's stream; `Default` is no user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserState {
    user: Option<User>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: u64,
    pub platform: String,
    pub username: String,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub active: bool,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl UserState {
    pub fn get(&self) -> Option<&User> {
        self.user.as_ref()
    }

    /// The user if it belongs to `platform`.
    pub fn get_in(&self, platform: &str) -> Option<&User> {
        self.get().filter(|u| u.platform == platform)
    }
}

/// A change of some writable fields; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateUser {
    pub username: Option<String>,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    Register {
        id: u64,
        platform: String,
        username: String,
        email: String,
        given_name: String,
        family_name: String,
        active: bool,
        now: DateTime<Utc>,
    },
    Update {
        /// The caller's platform key.
        platform: String,
        changes: UpdateUser,
        now: DateTime<Utc>,
    },
    Deactivate {
        platform: String,
        now: DateTime<Utc>,
    },
    Reactivate {
        platform: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("user {0} already exists")]
    Exists(u64),
    #[error("user not found")]
    NotFound,
}

rejection!(UserError, |e| match e {
    UserError::Invalid(_) => RejectionKind::Invalid,
    UserError::Exists(_) => RejectionKind::Conflict,
    UserError::NotFound => RejectionKind::NotFound,
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

/// Validates a given or family name (trimmed, may be blank).
pub fn validate_person_name(field: &'static str, name: &str) -> Result<String, FieldError> {
    validate::no_nul(field, name)?;
    let name = name.trim();
    validate::max_chars(field, name, MAX_PERSON_NAME_CHARS)?;
    Ok(name.to_owned())
}

pub fn decide(state: &UserState, cmd: UserCommand) -> Result<Vec<UserEvent>, UserError> {
    match cmd {
        UserCommand::Register {
            id,
            platform,
            username,
            email,
            given_name,
            family_name,
            active,
            now,
        } => {
            let username = validate_username("username", &username)?;
            let email = validate::email("email", &email)?;
            let given_name = validate_person_name("given_name", &given_name)?;
            let family_name = validate_person_name("family_name", &family_name)?;
            if state.user.is_some() {
                return Err(UserError::Exists(id));
            }
            let mut events = vec![UserEvent::UserRegistered {
                id,
                platform,
                username,
                email,
                given_name,
                family_name,
                registered_at: now,
            }];
            if !active {
                events.push(UserEvent::UserDeactivated {
                    id,
                    deactivated_at: now,
                });
            }
            Ok(events)
        }
        UserCommand::Update {
            platform,
            changes,
            now,
        } => {
            let user = state.get_in(&platform).ok_or(UserError::NotFound)?;
            let username = match changes.username {
                Some(username) => validate_username("username", &username)?,
                None => user.username.clone(),
            };
            let email = match changes.email {
                Some(email) => validate::email("email", &email)?,
                None => user.email.clone(),
            };
            let given_name = match changes.given_name {
                Some(name) => validate_person_name("given_name", &name)?,
                None => user.given_name.clone(),
            };
            let family_name = match changes.family_name {
                Some(name) => validate_person_name("family_name", &name)?,
                None => user.family_name.clone(),
            };
            if username == user.username
                && email == user.email
                && given_name == user.given_name
                && family_name == user.family_name
            {
                return Ok(vec![]);
            }
            Ok(vec![UserEvent::UserUpdated {
                id: user.id,
                username,
                email,
                given_name,
                family_name,
                updated_at: now,
            }])
        }
        UserCommand::Deactivate { platform, now } => {
            let user = state.get_in(&platform).ok_or(UserError::NotFound)?;
            if !user.active {
                return Ok(vec![]);
            }
            Ok(vec![UserEvent::UserDeactivated {
                id: user.id,
                deactivated_at: now,
            }])
        }
        UserCommand::Reactivate { platform, now } => {
            let user = state.get_in(&platform).ok_or(UserError::NotFound)?;
            if user.active {
                return Ok(vec![]);
            }
            Ok(vec![UserEvent::UserReactivated {
                id: user.id,
                reactivated_at: now,
            }])
        }
    }
}

pub fn evolve(mut state: UserState, event: &UserEvent) -> UserState {
    match event {
        UserEvent::UserRegistered {
            id,
            platform,
            username,
            email,
            given_name,
            family_name,
            registered_at,
        } => {
            if state.user.is_none() {
                state.user = Some(User {
                    id: *id,
                    platform: platform.clone(),
                    username: username.clone(),
                    email: email.clone(),
                    given_name: given_name.clone(),
                    family_name: family_name.clone(),
                    active: true,
                    registered_at: *registered_at,
                    updated_at: *registered_at,
                });
            }
        }
        UserEvent::UserImported { .. } => {
            // An import opens a user's stream: the same state as the
            // events it stands for.
            state = event.clone().expanded().iter().fold(state, evolve);
        }
        UserEvent::UserUpdated {
            username,
            email,
            given_name,
            family_name,
            updated_at,
            ..
        } => {
            if let Some(user) = state.user.as_mut() {
                user.username = username.clone();
                user.email = email.clone();
                user.given_name = given_name.clone();
                user.family_name = family_name.clone();
                user.updated_at = *updated_at;
            }
        }
        UserEvent::UserDeactivated { deactivated_at, .. } => {
            if let Some(user) = state.user.as_mut() {
                user.active = false;
                user.updated_at = *deactivated_at;
            }
        }
        UserEvent::UserReactivated { reactivated_at, .. } => {
            if let Some(user) = state.user.as_mut() {
                user.active = true;
                user.updated_at = *reactivated_at;
            }
        }
    }
    state
}

impl Aggregate for UserAggregate {
    type State = UserState;
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;

    fn decide(state: &UserState, cmd: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        decide(state, cmd)
    }

    fn evolve(state: UserState, event: &UserEvent) -> UserState {
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
            given_name: "".into(),
            family_name: "".into(),
            registered_at: t(0),
        }
    }

    fn register(id: u64, username: &str, email: &str) -> UserCommand {
        UserCommand::Register {
            id,
            platform: "acme".into(),
            username: username.into(),
            email: email.into(),
            given_name: "".into(),
            family_name: "".into(),
            active: true,
            now: t(5),
        }
    }

    fn update(changes: UpdateUser) -> UserCommand {
        UserCommand::Update {
            platform: "acme".into(),
            changes,
            now: t(7),
        }
    }

    #[test]
    fn a_user_is_registered_with_the_id_it_is_given_trimmed() {
        let state = given::<UserAggregate>(&[])
            .when(register(42, " jane ", " jane@example.com "))
            .then(&[E::UserRegistered {
                id: 42,
                platform: "acme".into(),
                username: "jane".into(),
                email: "jane@example.com".into(),
                given_name: "".into(),
                family_name: "".into(),
                registered_at: t(5),
            }]);
        let u = state.get().unwrap();
        assert_eq!((u.id, u.active, u.updated_at), (42, true, t(5)));
        assert!(state.get_in("other").is_none());
    }

    #[test]
    fn registering_twice_on_one_stream_conflicts() {
        given::<UserAggregate>(&[registered(1, "acme", "jane")])
            .when(register(1, "joan", "joan@example.com"))
            .then_err(RejectionKind::Conflict);
    }

    #[test]
    fn an_inactive_user_is_registered_then_deactivated_with_its_names() {
        given::<UserAggregate>(&[])
            .when(UserCommand::Register {
                id: 3,
                platform: "acme".into(),
                username: "ann".into(),
                email: "ann@example.com".into(),
                given_name: " Ann ".into(),
                family_name: "Lee".into(),
                active: false,
                now: t(5),
            })
            .then(&[
                E::UserRegistered {
                    id: 3,
                    platform: "acme".into(),
                    username: "ann".into(),
                    email: "ann@example.com".into(),
                    given_name: "Ann".into(),
                    family_name: "Lee".into(),
                    registered_at: t(5),
                },
                E::UserDeactivated {
                    id: 3,
                    deactivated_at: t(5),
                },
            ]);
    }

    #[test]
    fn usernames_emails_and_names_are_validated() {
        for good in ["j", "jane.doe+1@x_y-z", &"u".repeat(100)] {
            given::<UserAggregate>(&[])
                .when(register(1, good, "a@b.c"))
                .accepted();
        }
        for bad in ["", "  ", "ja ne", "jané", "a/b", "a\0", &"u".repeat(101)] {
            given::<UserAggregate>(&[])
                .when(register(1, bad, "a@b.c"))
                .then_invalid("username");
        }
        for bad in ["", "nope", "a@b@c"] {
            given::<UserAggregate>(&[])
                .when(register(1, "jane", bad))
                .then_invalid("email");
        }
        given::<UserAggregate>(&[])
            .when(UserCommand::Register {
                id: 1,
                platform: "acme".into(),
                username: "jane".into(),
                email: "j@x.y".into(),
                given_name: "g".repeat(151),
                family_name: "".into(),
                active: true,
                now: t(5),
            })
            .then_invalid("given_name");
    }

    #[test]
    fn update_changes_the_given_fields_and_nothing_is_nothing() {
        let state = given::<UserAggregate>(&[registered(1, "acme", "jane")])
            .when(update(UpdateUser {
                username: Some(" jane.doe ".into()),
                given_name: Some("Jane".into()),
                ..Default::default()
            }))
            .then(&[E::UserUpdated {
                id: 1,
                username: "jane.doe".into(),
                email: "jane@example.com".into(),
                given_name: "Jane".into(),
                family_name: "".into(),
                updated_at: t(7),
            }]);
        assert_eq!(state.get().unwrap().username, "jane.doe");
        assert_eq!(state.get().unwrap().registered_at, t(0));
        given::<UserAggregate>(&[registered(1, "acme", "jane")])
            .when(update(UpdateUser {
                username: Some("jane".into()),
                email: Some(" jane@example.com ".into()),
                ..Default::default()
            }))
            .then(&[]);
        given::<UserAggregate>(&[registered(1, "acme", "jane")])
            .when(update(UpdateUser {
                email: Some("no".into()),
                ..Default::default()
            }))
            .then_invalid("email");
    }

    #[test]
    fn commands_on_a_user_need_it_on_the_callers_platform() {
        for events in [vec![], vec![registered(1, "beta", "jane")]] {
            given::<UserAggregate>(&events)
                .when(update(UpdateUser::default()))
                .then_err(RejectionKind::NotFound);
            given::<UserAggregate>(&events)
                .when(UserCommand::Deactivate {
                    platform: "acme".into(),
                    now: t(7),
                })
                .then_err(RejectionKind::NotFound);
        }
    }

    #[test]
    fn deactivation_and_reactivation_are_idempotent() {
        let history = [registered(1, "acme", "jane")];
        let deactivate = || UserCommand::Deactivate {
            platform: "acme".into(),
            now: t(7),
        };
        let reactivate = || UserCommand::Reactivate {
            platform: "acme".into(),
            now: t(8),
        };
        given::<UserAggregate>(&history)
            .when(reactivate())
            .then(&[]);
        let off = given::<UserAggregate>(&history)
            .when(deactivate())
            .then(&[E::UserDeactivated {
                id: 1,
                deactivated_at: t(7),
            }]);
        assert!(!off.get().unwrap().active);
        let mut events = history.to_vec();
        events.push(E::UserDeactivated {
            id: 1,
            deactivated_at: t(7),
        });
        given::<UserAggregate>(&events).when(deactivate()).then(&[]);
        given::<UserAggregate>(&events)
            .when(reactivate())
            .then(&[E::UserReactivated {
                id: 1,
                reactivated_at: t(8),
            }]);
    }

    #[test]
    fn an_imported_user_is_the_state_it_carries() {
        let state = given::<UserAggregate>(&[E::UserImported {
            id: 9,
            platform: "acme".into(),
            username: "old".into(),
            email: "old@example.com".into(),
            given_name: "O".into(),
            family_name: "".into(),
            active: false,
            registered_at: t(1),
            updated_at: t(2),
        }])
        .when(UserCommand::Reactivate {
            platform: "acme".into(),
            now: t(9),
        })
        .then(&[E::UserReactivated {
            id: 9,
            reactivated_at: t(9),
        }]);
        assert_eq!(state.get().unwrap().username, "old");
    }
}
