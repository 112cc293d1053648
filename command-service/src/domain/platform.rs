//! The platform registry: every platform (tenant) in one stream,
//! [`PLATFORMS_STREAM`], so keys and ids are allocated under one expected
//! revision.
//!
//! Rules:
//! - `Create` takes a key that is a slug: 1 to 50 characters of `a-z`, `0-9`,
//!   `-` and `_`, starting with a letter or digit (surrounding whitespace is
//!   trimmed, upper case is rejected, not folded); a taken key is `Conflict`.
//! - The name is trimmed, not blank, at most 255 characters, no NUL.
//! - The new platform's id is the number of platforms plus one.
//!
//! [`PLATFORMS_STREAM`]: ibl_events::platform::PLATFORMS_STREAM

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ibl_events::platform::PlatformEvent;

use super::validate::{self, FieldError, MAX_NAME_CHARS};
use super::{rejection, Aggregate, RejectionKind};

/// Longest platform key, in characters.
pub const MAX_KEY_CHARS: usize = 50;

/// The aggregate, for the generic command handler.
pub struct PlatformsAggregate;

/// The fold of the registry; `Default` is an empty registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformsState {
    by_key: BTreeMap<String, Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub id: u64,
    pub key: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl PlatformsState {
    pub fn get(&self, key: &str) -> Option<&Platform> {
        self.by_key.get(key)
    }

    pub fn by_id(&self, id: u64) -> Option<&Platform> {
        self.by_key.values().find(|p| p.id == id)
    }

    /// Every platform, by key.
    pub fn iter(&self) -> impl Iterator<Item = &Platform> {
        self.by_key.values()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The id the next platform gets.
    pub fn next_id(&self) -> u64 {
        self.by_key.len() as u64 + 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformCommand {
    Create {
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
    state: &PlatformsState,
    cmd: PlatformCommand,
) -> Result<Vec<PlatformEvent>, PlatformError> {
    match cmd {
        PlatformCommand::Create { key, name, now } => {
            let key = validate_key("key", &key)?;
            let name = validate::name("name", &name, MAX_NAME_CHARS)?;
            if state.get(&key).is_some() {
                return Err(PlatformError::KeyTaken(key));
            }
            Ok(vec![PlatformEvent::PlatformCreated {
                id: state.next_id(),
                key,
                name,
                created_at: now,
            }])
        }
    }
}

pub fn evolve(mut state: PlatformsState, event: &PlatformEvent) -> PlatformsState {
    match event {
        PlatformEvent::PlatformCreated {
            id,
            key,
            name,
            created_at,
        } => {
            state.by_key.entry(key.clone()).or_insert_with(|| Platform {
                id: *id,
                key: key.clone(),
                name: name.clone(),
                created_at: *created_at,
            });
        }
    }
    state
}

pub fn fold<'a>(events: impl IntoIterator<Item = &'a PlatformEvent>) -> PlatformsState {
    PlatformsAggregate::fold(events)
}

impl Aggregate for PlatformsAggregate {
    type State = PlatformsState;
    type Command = PlatformCommand;
    type Event = PlatformEvent;
    type Error = PlatformError;

    fn decide(
        state: &PlatformsState,
        cmd: PlatformCommand,
    ) -> Result<Vec<PlatformEvent>, PlatformError> {
        decide(state, cmd)
    }

    fn evolve(state: PlatformsState, event: &PlatformEvent) -> PlatformsState {
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
            key: key.into(),
            name: name.into(),
            now: t(5),
        }
    }

    #[test]
    fn the_first_platform_gets_id_1() {
        let state = given::<PlatformsAggregate>(&[])
            .when(create(" acme ", " ACME Corp "))
            .then(&[E::PlatformCreated {
                id: 1,
                key: "acme".into(),
                name: "ACME Corp".into(),
                created_at: t(5),
            }]);
        assert_eq!(state.get("acme").unwrap().id, 1);
        assert_eq!(state.by_id(1).unwrap().key, "acme");
    }

    #[test]
    fn ids_count_up() {
        given::<PlatformsAggregate>(&[created(1, "a"), created(2, "b")])
            .when(create("c", "C"))
            .then(&[E::PlatformCreated {
                id: 3,
                key: "c".into(),
                name: "C".into(),
                created_at: t(5),
            }]);
    }

    #[test]
    fn a_taken_key_conflicts() {
        let e = given::<PlatformsAggregate>(&[created(1, "acme")])
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
            given::<PlatformsAggregate>(&[])
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
            given::<PlatformsAggregate>(&[])
                .when(create(bad, "Name"))
                .then_invalid("key");
        }
    }

    #[test]
    fn the_name_is_required() {
        given::<PlatformsAggregate>(&[])
            .when(create("acme", "  "))
            .then_invalid("name");
        given::<PlatformsAggregate>(&[])
            .when(create("acme", &"n".repeat(256)))
            .then_invalid("name");
    }
}
