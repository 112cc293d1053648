//! One platform (tenant), in a stream of its own named by its key
//! ([`platform_stream`]): the stream's existence is the key's uniqueness.
//!
//! Rules:
//! - `Create` takes a key that is a slug: 1 to 50 characters of `a-z`, `0-9`,
//!   `-` and `_`, starting with a letter or digit (surrounding whitespace is
//!   trimmed, upper case is rejected, not folded); on a stream that holds a
//!   platform it is `Conflict` (the key is taken).
//! - The name is trimmed, not blank, at most 255 characters, no NUL.
//! - The id comes in the command (the caller allocates it, below 2^53).
//!
//! [`platform_stream`]: ibl_events::platform::platform_stream

use chrono::{DateTime, Utc};
use ibl_events::platform::PlatformEvent;

use super::validate::{self, FieldError, MAX_NAME_CHARS};
use super::{rejection, Aggregate, RejectionKind};

/// Longest platform key, in characters.
pub const MAX_KEY_CHARS: usize = 50;

/// The aggregate, for the generic command handler.
pub struct PlatformAggregate;

/// The fold of one platform's stream; `Default` is no platform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformState {
    platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub id: u64,
    pub key: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl PlatformState {
    pub fn get(&self) -> Option<&Platform> {
        self.platform.as_ref()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformCommand {
    Create {
        id: u64,
        key: String,
        name: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("a platform with the key '{0}' already exists")]
    KeyTaken(String),
}

rejection!(PlatformError, |e| match e {
    PlatformError::Invalid(_) => RejectionKind::Invalid,
    PlatformError::KeyTaken(_) => RejectionKind::Conflict,
});

/// Whether `key` is a platform key: 1 to 50 characters of `a-z0-9-_`,
/// starting with a letter or digit.
pub fn is_platform_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && key.len() <= MAX_KEY_CHARS
}

/// Validates a platform key (trimmed).
pub fn validate_key(field: &'static str, key: &str) -> Result<String, FieldError> {
    validate::no_nul(field, key)?;
    let key = key.trim();
    if key.is_empty() {
        return Err(FieldError::new(field, validate::BLANK));
    }
    validate::max_chars(field, key, MAX_KEY_CHARS)?;
    if !is_platform_key(key) {
        return Err(FieldError::new(
            field,
            "Enter a valid key: lowercase letters, digits, '-' or '_', \
             starting with a letter or a digit.",
        ));
    }
    Ok(key.to_owned())
}

pub fn decide(
    state: &PlatformState,
    cmd: PlatformCommand,
) -> Result<Vec<PlatformEvent>, PlatformError> {
    match cmd {
        PlatformCommand::Create { id, key, name, now } => {
            let key = validate_key("key", &key)?;
            let name = validate::name("name", &name, MAX_NAME_CHARS)?;
            if state.platform.is_some() {
                return Err(PlatformError::KeyTaken(key));
            }
            Ok(vec![PlatformEvent::PlatformCreated {
                id,
                key,
                name,
                created_at: now,
            }])
        }
    }
}

pub fn evolve(mut state: PlatformState, event: &PlatformEvent) -> PlatformState {
    match event {
        PlatformEvent::PlatformCreated {
            id,
            key,
            name,
            created_at,
        } => {
            state.platform.get_or_insert_with(|| Platform {
                id: *id,
                key: key.clone(),
                name: name.clone(),
                created_at: *created_at,
            });
        }
    }
    state
}

impl Aggregate for PlatformAggregate {
    type State = PlatformState;
    type Command = PlatformCommand;
    type Event = PlatformEvent;
    type Error = PlatformError;

    fn decide(
        state: &PlatformState,
        cmd: PlatformCommand,
    ) -> Result<Vec<PlatformEvent>, PlatformError> {
        decide(state, cmd)
    }

    fn evolve(state: PlatformState, event: &PlatformEvent) -> PlatformState {
        evolve(state, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, t};
    use PlatformEvent as E;

    fn created(id: u64, key: &str) -> PlatformEvent {
        E::PlatformCreated {
            id,
            key: key.into(),
            name: format!("{key} inc."),
            created_at: t(0),
        }
    }

    fn create(key: &str, name: &str) -> PlatformCommand {
        PlatformCommand::Create {
            id: 7,
            key: key.into(),
            name: name.into(),
            now: t(5),
        }
    }

    #[test]
    fn a_platform_is_created_with_the_id_it_is_given_trimmed() {
        let state = given::<PlatformAggregate>(&[])
            .when(create(" acme ", " ACME Corp "))
            .then(&[E::PlatformCreated {
                id: 7,
                key: "acme".into(),
                name: "ACME Corp".into(),
                created_at: t(5),
            }]);
        assert_eq!(state.get().unwrap().id, 7);
    }

    #[test]
    fn a_taken_key_conflicts() {
        let e = given::<PlatformAggregate>(&[created(1, "acme")])
            .when(create("acme", "Another"))
            .then_err(RejectionKind::Conflict);
        assert_eq!(
            e.to_string(),
            "a platform with the key 'acme' already exists"
        );
    }

    #[test]
    fn keys_are_slugs() {
        for good in ["a", "0", "acme", "acme-2_x", &"k".repeat(50)] {
            given::<PlatformAggregate>(&[])
                .when(create(good, "Name"))
                .accepted();
        }
        for bad in [
            "",
            " ",
            "-acme",
            "_acme",
            "Acme",
            "ac me",
            "acmé",
            "a.b",
            "a\0",
            &"k".repeat(51),
        ] {
            given::<PlatformAggregate>(&[])
                .when(create(bad, "Name"))
                .then_invalid("key");
        }
    }

    #[test]
    fn the_name_is_required() {
        given::<PlatformAggregate>(&[])
            .when(create("acme", "  "))
            .then_invalid("name");
        given::<PlatformAggregate>(&[])
            .when(create("acme", &"n".repeat(256)))
            .then_invalid("name");
    }
}
