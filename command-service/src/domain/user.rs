//! The user registry: every user id in one stream, [`USERS_STREAM`], so ids
//! are allocated under one expected revision. Ids are global.
//!
//! Rules:
//! - `Register` takes a username of 1 to 100 characters of `A-Za-z0-9@.+_-`
//!   (trimmed) and a valid email (trimmed, required).
//! - Usernames are unique per platform, compared exactly (Django's default):
//!   a taken one is `Conflict`. So are emails, compared ignoring case (a
//!   user is found by email, so two users may not share one; histories
//!   written before this rule may hold duplicates, which stay). Whether the platform exists is for the caller
//!   to check against the platform registry.
//! - The new user's id is the number of users plus one.
//! - `Provision` (SCIM create) is `Register` with names and an initial
//!   `active` flag: an inactive user is registered, then deactivated.
//! - `Update`, `Deactivate` and `Reactivate` name the user's id and the
//!   caller's platform: an unknown id, or a user of another platform, is
//!   `NotFound`. `Update` may rename the user (a name taken on the platform
//!   is `Conflict`); given and family names are trimmed, at most 150
//!   characters (Django's), no NUL, and may be blank. An update that changes
//!   nothing, deactivating an inactive user and reactivating an active one
//!   decide no event.
//! - Deactivation keeps the user's memberships and policies; whoever
//!   evaluates permissions denies inactive users.
//!
//! [`USERS_STREAM`]: ibl_events::platform::USERS_STREAM

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use ibl_events::platform::UserEvent;

use super::validate::{self, FieldError};
use super::{rejection, Aggregate, RejectionKind};

/// Longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 100;
/// Longest given or family name, in characters.
pub const MAX_PERSON_NAME_CHARS: usize = 150;

/// The aggregate, for the generic command handler.
pub struct UsersAggregate;

/// The fold of the registry; `Default` is an empty registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsersState {
    by_id: BTreeMap<u64, User>,
    by_name: HashMap<(String, String), u64>,
    /// (platform, lowercased email) → users.
    by_email: HashMap<(String, String), std::collections::BTreeSet<u64>>,
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

    /// User `id` if it belongs to `platform`.
    pub fn get_in(&self, platform: &str, id: u64) -> Option<&User> {
        self.get(id).filter(|u| u.platform == platform)
    }

    /// Whether a user of `platform` other than `except` has this email (any
    /// case).
    pub fn email_taken(&self, platform: &str, email: &str, except: Option<u64>) -> bool {
        self.by_email
            .get(&(platform.to_owned(), email.to_lowercase()))
            .is_some_and(|ids| ids.iter().any(|id| Some(*id) != except))
    }

    fn index_email(&mut self, platform: &str, email: &str, id: u64, add: bool) {
        let key = (platform.to_owned(), email.to_lowercase());
        if add {
            self.by_email.entry(key).or_default().insert(id);
        } else if let Some(ids) = self.by_email.get_mut(&key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_email.remove(&key);
            }
        }
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
        platform: String,
        username: String,
        email: String,
        now: DateTime<Utc>,
    },
    /// SCIM create: a registration with names and an initial `active` flag.
    Provision {
        platform: String,
        username: String,
        email: String,
        given_name: String,
        family_name: String,
        active: bool,
        now: DateTime<Utc>,
    },
    Update {
        id: u64,
        /// The caller's platform key.
        platform: String,
        changes: UpdateUser,
        now: DateTime<Utc>,
    },
    Deactivate {
        id: u64,
        platform: String,
        now: DateTime<Utc>,
    },
    Reactivate {
        id: u64,
        platform: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("the username '{username}' is already taken on platform '{platform}'")]
    UsernameTaken { platform: String, username: String },
    #[error("the email '{email}' is already taken on platform '{platform}'")]
    EmailTaken { platform: String, email: String },
    #[error("user not found")]
    NotFound,
}

rejection!(UserError, |e| match e {
    UserError::Invalid(_) => RejectionKind::Invalid,
    UserError::UsernameTaken { .. } | UserError::EmailTaken { .. } => RejectionKind::Conflict,
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

fn register(
    state: &UsersState,
    platform: String,
    username: &str,
    email: &str,
    given_name: &str,
    family_name: &str,
    now: DateTime<Utc>,
) -> Result<UserEvent, UserError> {
    let username = validate_username("username", username)?;
    let email = validate::email("email", email)?;
    let given_name = validate_person_name("given_name", given_name)?;
    let family_name = validate_person_name("family_name", family_name)?;
    if state.find(&platform, &username).is_some() {
        return Err(UserError::UsernameTaken { platform, username });
    }
    if state.email_taken(&platform, &email, None) {
        return Err(UserError::EmailTaken { platform, email });
    }
    Ok(UserEvent::UserRegistered {
        id: state.next_id(),
        platform,
        username,
        email,
        given_name,
        family_name,
        registered_at: now,
    })
}

pub fn decide(state: &UsersState, cmd: UserCommand) -> Result<Vec<UserEvent>, UserError> {
    match cmd {
        UserCommand::Register {
            platform,
            username,
            email,
            now,
        } => Ok(vec![register(
            state, platform, &username, &email, "", "", now,
        )?]),
        UserCommand::Provision {
            platform,
            username,
            email,
            given_name,
            family_name,
            active,
            now,
        } => {
            let registered = register(
                state,
                platform,
                &username,
                &email,
                &given_name,
                &family_name,
                now,
            )?;
            let id = state.next_id();
            let mut events = vec![registered];
            if !active {
                events.push(UserEvent::UserDeactivated {
                    id,
                    deactivated_at: now,
                });
            }
            Ok(events)
        }
        UserCommand::Update {
            id,
            platform,
            changes,
            now,
        } => {
            let user = state.get_in(&platform, id).ok_or(UserError::NotFound)?;
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
            if username != user.username
                && state.find(&platform, &username).is_some_and(|u| u.id != id)
            {
                return Err(UserError::UsernameTaken { platform, username });
            }
            if !email.eq_ignore_ascii_case(&user.email)
                && state.email_taken(&platform, &email, Some(id))
            {
                return Err(UserError::EmailTaken { platform, email });
            }
            if username == user.username
                && email == user.email
                && given_name == user.given_name
                && family_name == user.family_name
            {
                return Ok(vec![]);
            }
            Ok(vec![UserEvent::UserUpdated {
                id,
                username,
                email,
                given_name,
                family_name,
                updated_at: now,
            }])
        }
        UserCommand::Deactivate { id, platform, now } => {
            let user = state.get_in(&platform, id).ok_or(UserError::NotFound)?;
            if !user.active {
                return Ok(vec![]);
            }
            Ok(vec![UserEvent::UserDeactivated {
                id,
                deactivated_at: now,
            }])
        }
        UserCommand::Reactivate { id, platform, now } => {
            let user = state.get_in(&platform, id).ok_or(UserError::NotFound)?;
            if user.active {
                return Ok(vec![]);
            }
            Ok(vec![UserEvent::UserReactivated {
                id,
                reactivated_at: now,
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
            given_name,
            family_name,
            registered_at,
        } => {
            let name = (platform.clone(), username.clone());
            if state.by_id.contains_key(id) || state.by_name.contains_key(&name) {
                return state;
            }
            state.by_name.insert(name, *id);
            state.index_email(platform, email, *id, true);
            state.by_id.insert(
                *id,
                User {
                    id: *id,
                    platform: platform.clone(),
                    username: username.clone(),
                    email: email.clone(),
                    given_name: given_name.clone(),
                    family_name: family_name.clone(),
                    active: true,
                    registered_at: *registered_at,
                    updated_at: *registered_at,
                },
            );
        }
        UserEvent::UserUpdated {
            id,
            username,
            email,
            given_name,
            family_name,
            updated_at,
        } => {
            let Some(user) = state.by_id.get_mut(id) else {
                return state;
            };
            let new_name = (user.platform.clone(), username.clone());
            if state
                .by_name
                .get(&new_name)
                .is_some_and(|other| other != id)
            {
                return state;
            }
            state
                .by_name
                .remove(&(user.platform.clone(), user.username.clone()));
            state.by_name.insert(new_name, *id);
            let (platform, old_email) = (user.platform.clone(), user.email.clone());
            user.username = username.clone();
            user.email = email.clone();
            state.index_email(&platform, &old_email, *id, false);
            state.index_email(&platform, email, *id, true);
            let Some(user) = state.by_id.get_mut(id) else {
                return state;
            };
            user.given_name = given_name.clone();
            user.family_name = family_name.clone();
            user.updated_at = *updated_at;
        }
        UserEvent::UserDeactivated { id, deactivated_at } => {
            if let Some(user) = state.by_id.get_mut(id) {
                user.active = false;
                user.updated_at = *deactivated_at;
            }
        }
        UserEvent::UserReactivated { id, reactivated_at } => {
            if let Some(user) = state.by_id.get_mut(id) {
                user.active = true;
                user.updated_at = *reactivated_at;
            }
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
            given_name: "".into(),
            family_name: "".into(),
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
                given_name: "".into(),
                family_name: "".into(),
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
            .when(register("acme", "Jane", "jane2@example.com"))
            .accepted();
    }

    #[test]
    fn emails_are_unique_per_platform_ignoring_case() {
        let e = given::<UsersAggregate>(&[registered(1, "acme", "jane")])
            .when(register("acme", "joan", "JANE@example.com"))
            .then_err(RejectionKind::Conflict);
        assert_eq!(
            e.to_string(),
            "the email 'JANE@example.com' is already taken on platform 'acme'"
        );
        given::<UsersAggregate>(&[registered(1, "acme", "jane")])
            .when(register("beta", "joan", "jane@example.com"))
            .accepted();
        // Taking another user's email by an update is refused too; keeping
        // one's own (in another case) is not.
        let history = [registered(1, "acme", "jane"), registered(2, "acme", "joan")];
        let update = |id, email: &str| UserCommand::Update {
            id,
            platform: "acme".into(),
            changes: UpdateUser {
                email: Some(email.into()),
                ..UpdateUser::default()
            },
            now: t(9),
        };
        given::<UsersAggregate>(&history)
            .when(update(2, "jane@example.com"))
            .then_err(RejectionKind::Conflict);
        given::<UsersAggregate>(&history)
            .when(update(1, "Jane@Example.com"))
            .accepted();
        // Once changed, the old address is free again.
        let mut moved = history.to_vec();
        moved.push(E::UserUpdated {
            id: 1,
            username: "jane".into(),
            email: "new@example.com".into(),
            given_name: "".into(),
            family_name: "".into(),
            updated_at: t(3),
        });
        given::<UsersAggregate>(&moved)
            .when(update(2, "jane@example.com"))
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
    fn update(id: u64, changes: UpdateUser) -> UserCommand {
        UserCommand::Update {
            id,
            platform: "acme".into(),
            changes,
            now: t(7),
        }
    }

    fn two_users() -> [UserEvent; 2] {
        [registered(1, "acme", "jane"), registered(2, "acme", "john")]
    }

    #[test]
    fn registered_users_are_active_with_blank_names() {
        let state = fold(&[registered(1, "acme", "jane")]);
        let u = state.get(1).unwrap();
        assert!(u.active);
        assert_eq!((u.given_name.as_str(), u.family_name.as_str()), ("", ""));
        assert_eq!(u.updated_at, t(0));
    }

    #[test]
    fn user_registered_without_names_still_reads() {
        let json = serde_json::json!({
            "type": "UserRegistered", "id": 1, "platform": "acme",
            "username": "jane", "email": "jane@example.com",
            "registered_at": "2024-01-01T00:00:00Z"
        });
        let event: UserEvent = serde_json::from_value(json).unwrap();
        assert_eq!(event, registered(1, "acme", "jane"));
    }

    #[test]
    fn provision_records_names_and_the_active_flag() {
        let provision = |active| UserCommand::Provision {
            platform: "acme".into(),
            username: "jane".into(),
            email: "jane@example.com".into(),
            given_name: " Jane ".into(),
            family_name: "Doe".into(),
            active,
            now: t(5),
        };
        let registered = E::UserRegistered {
            id: 1,
            platform: "acme".into(),
            username: "jane".into(),
            email: "jane@example.com".into(),
            given_name: "Jane".into(),
            family_name: "Doe".into(),
            registered_at: t(5),
        };
        given::<UsersAggregate>(&[])
            .when(provision(true))
            .then(std::slice::from_ref(&registered));
        let state = given::<UsersAggregate>(&[]).when(provision(false)).then(&[
            registered,
            E::UserDeactivated {
                id: 1,
                deactivated_at: t(5),
            },
        ]);
        assert!(!state.get(1).unwrap().active);
        given::<UsersAggregate>(&[E::UserRegistered {
            id: 1,
            platform: "acme".into(),
            username: "jane".into(),
            email: "j@x.y".into(),
            given_name: "".into(),
            family_name: "".into(),
            registered_at: t(0),
        }])
        .when(provision(true))
        .then_err(RejectionKind::Conflict);
    }

    #[test]
    fn provision_validates_names() {
        let provision = |given_name: &str, family_name: &str| UserCommand::Provision {
            platform: "acme".into(),
            username: "jane".into(),
            email: "jane@example.com".into(),
            given_name: given_name.into(),
            family_name: family_name.into(),
            active: true,
            now: t(5),
        };
        given::<UsersAggregate>(&[])
            .when(provision(&"g".repeat(151), ""))
            .then_invalid("given_name");
        given::<UsersAggregate>(&[])
            .when(provision("", "\0"))
            .then_invalid("family_name");
        given::<UsersAggregate>(&[])
            .when(provision(&"g".repeat(150), ""))
            .accepted();
    }

    #[test]
    fn update_changes_the_given_fields() {
        let state = given::<UsersAggregate>(&two_users())
            .when(update(
                1,
                UpdateUser {
                    username: Some(" jane.doe ".into()),
                    given_name: Some("Jane".into()),
                    ..Default::default()
                },
            ))
            .then(&[E::UserUpdated {
                id: 1,
                username: "jane.doe".into(),
                email: "jane@example.com".into(),
                given_name: "Jane".into(),
                family_name: "".into(),
                updated_at: t(7),
            }]);
        assert!(state.find("acme", "jane").is_none());
        assert_eq!(state.find("acme", "jane.doe").unwrap().id, 1);
        assert_eq!(state.get(1).unwrap().updated_at, t(7));
        assert_eq!(state.get(1).unwrap().registered_at, t(0));
        // The old username is free again.
        let mut events = two_users().to_vec();
        events.push(E::UserUpdated {
            id: 1,
            username: "jane.doe".into(),
            email: "jane@example.com".into(),
            given_name: "".into(),
            family_name: "".into(),
            updated_at: t(7),
        });
        given::<UsersAggregate>(&events)
            .when(register("acme", "jane", "jane2@example.com"))
            .accepted();
    }

    #[test]
    fn update_to_a_taken_username_conflicts() {
        given::<UsersAggregate>(&two_users())
            .when(update(
                1,
                UpdateUser {
                    username: Some("john".into()),
                    ..Default::default()
                },
            ))
            .then_err(RejectionKind::Conflict);
    }

    #[test]
    fn update_that_changes_nothing_decides_nothing() {
        given::<UsersAggregate>(&two_users())
            .when(update(
                1,
                UpdateUser {
                    username: Some("jane".into()),
                    email: Some(" jane@example.com ".into()),
                    ..Default::default()
                },
            ))
            .then(&[]);
    }

    #[test]
    fn update_validates_the_fields() {
        let cases: [(UpdateUser, &str); 4] = [
            (
                UpdateUser {
                    username: Some("ja ne".into()),
                    ..Default::default()
                },
                "username",
            ),
            (
                UpdateUser {
                    email: Some("nope".into()),
                    ..Default::default()
                },
                "email",
            ),
            (
                UpdateUser {
                    given_name: Some("\0".into()),
                    ..Default::default()
                },
                "given_name",
            ),
            (
                UpdateUser {
                    family_name: Some("f".repeat(151)),
                    ..Default::default()
                },
                "family_name",
            ),
        ];
        for (changes, field) in cases {
            given::<UsersAggregate>(&two_users())
                .when(update(1, changes))
                .then_invalid(field);
        }
    }

    #[test]
    fn commands_on_a_user_need_it_on_the_callers_platform() {
        let events = [registered(1, "acme", "jane"), registered(2, "beta", "bob")];
        for id in [2, 3] {
            given::<UsersAggregate>(&events)
                .when(update(id, UpdateUser::default()))
                .then_err(RejectionKind::NotFound);
            given::<UsersAggregate>(&events)
                .when(UserCommand::Deactivate {
                    id,
                    platform: "acme".into(),
                    now: t(7),
                })
                .then_err(RejectionKind::NotFound);
            given::<UsersAggregate>(&events)
                .when(UserCommand::Reactivate {
                    id,
                    platform: "acme".into(),
                    now: t(7),
                })
                .then_err(RejectionKind::NotFound);
        }
    }

    #[test]
    fn deactivation_and_reactivation_are_idempotent() {
        let deactivate = || UserCommand::Deactivate {
            id: 1,
            platform: "acme".into(),
            now: t(7),
        };
        let reactivate = || UserCommand::Reactivate {
            id: 1,
            platform: "acme".into(),
            now: t(8),
        };
        let deactivated = E::UserDeactivated {
            id: 1,
            deactivated_at: t(7),
        };
        let state = given::<UsersAggregate>(&two_users())
            .when(deactivate())
            .then(std::slice::from_ref(&deactivated));
        assert!(!state.get(1).unwrap().active);
        assert!(state.get(2).unwrap().active);
        let mut events = two_users().to_vec();
        events.push(deactivated);
        given::<UsersAggregate>(&events)
            .when(deactivate())
            .then(&[]);
        let state =
            given::<UsersAggregate>(&events)
                .when(reactivate())
                .then(&[E::UserReactivated {
                    id: 1,
                    reactivated_at: t(8),
                }]);
        assert!(state.get(1).unwrap().active);
        given::<UsersAggregate>(&two_users())
            .when(reactivate())
            .then(&[]);
    }

    #[test]
    fn user_events_for_unknown_ids_are_ignored() {
        let state = fold(&[
            E::UserDeactivated {
                id: 9,
                deactivated_at: t(1),
            },
            E::UserUpdated {
                id: 9,
                username: "x".into(),
                email: "x@y".into(),
                given_name: "".into(),
                family_name: "".into(),
                updated_at: t(1),
            },
        ]);
        assert!(state.is_empty());
        assert!(state.find("acme", "x").is_none());
    }
}
