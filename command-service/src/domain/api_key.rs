//! API keys: each name of a platform has a stream of its own
//! (`apikey-{platform}/{name}`, holding that name's keys one after the
//! other); keys made before that live in the platform's legacy stream
//! (`apikeys-{platform}`), whose events of the name are folded first, as
//! the name's earlier history. And the guard of a platform's admin keys.
//!
//! The domain never sees a secret: the caller generates it, shows it once,
//! and passes only its non-secret `prefix` and its SHA-256 `hash`.
//!
//! Rules:
//! - `Create` takes a name matching `^[-a-zA-Z0-9_]+$` of at most 255
//!   characters (not trimmed), a non-blank prefix of at most 64 characters,
//!   a hash of 64 lowercase hex digits, a non-blank username, and an
//!   `expires` after `now` if any.
//! - Names are unique among active (not revoked) keys: `Conflict`. An
//!   expired key stays active until revoked, so it keeps its name. The same
//!   hash twice is `Conflict` too.
//! - `Revoke` needs an active key of that name: `NotFound`. Its name can then
//!   be used again.
//! - No lockout: before a key of an active tenant admin is revoked, the
//!   platform's admin keys guard (stream `adminkeys-{platform}`) records it
//!   as going, judged against the other admin keys (as their streams show
//!   them) less those the guard already saw go: the last active, unexpired
//!   one stays (`Conflict`). Two racing revocations append to the guard at
//!   one expected revision, so the second is judged after the first.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ibl_events::platform::{AdminKeyEvent, ApiKeyEvent};

use super::validate::{self, FieldError, MAX_NAME_CHARS};
use super::{rejection, Aggregate, RejectionKind};

/// Longest key prefix, in characters.
pub const MAX_PREFIX_CHARS: usize = 64;

/// The aggregate, for the generic command handler.
pub struct ApiKeysAggregate;

/// The fold of a platform's key stream: its active keys. `Default` is a
/// platform without keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeysState {
    active: BTreeMap<String, ApiKey>,
}

/// An active (not revoked) key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub name: String,
    pub prefix: String,
    /// SHA-256 of the secret, lowercase hex.
    pub hash: String,
    pub user_id: u64,
    pub username: String,
    pub expires: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl ApiKey {
    /// Whether the key has expired at `now` (from the instant `expires`).
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

impl ApiKeysState {
    /// The active key of this name.
    pub fn get(&self, name: &str) -> Option<&ApiKey> {
        self.active.get(name)
    }

    /// The active key with this hash.
    pub fn by_hash(&self, hash: &str) -> Option<&ApiKey> {
        self.active.values().find(|k| k.hash == hash)
    }

    /// The active keys, by name.
    pub fn active(&self) -> impl Iterator<Item = &ApiKey> {
        self.active.values()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeyCommand {
    Create {
        name: String,
        prefix: String,
        hash: String,
        user_id: u64,
        username: String,
        expires: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    },
    Revoke {
        name: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("an API key named '{0}' already exists")]
    NameTaken(String),
    #[error("an API key with this hash already exists")]
    HashTaken,
    #[error("no API key named '{0}'")]
    NotFound(String),
    #[error(
        "'{0}' is the platform's last API key of an active tenant admin; \
         create another admin key before deleting it"
    )]
    LastAdminKey(String),
}

rejection!(ApiKeyError, |e| match e {
    ApiKeyError::Invalid(_) => RejectionKind::Invalid,
    ApiKeyError::NameTaken(_) | ApiKeyError::HashTaken | ApiKeyError::LastAdminKey(_) => {
        RejectionKind::Conflict
    }
    ApiKeyError::NotFound(_) => RejectionKind::NotFound,
});

/// Whether `name` matches `^[-a-zA-Z0-9_]+$` and has at most 255 characters.
pub fn is_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn validate_name(name: &str) -> Result<(), FieldError> {
    validate::no_nul("name", name)?;
    if name.is_empty() {
        return Err(FieldError::new("name", validate::BLANK));
    }
    validate::max_chars("name", name, MAX_NAME_CHARS)?;
    if !is_key_name(name) {
        return Err(FieldError::new(
            "name",
            "Enter a valid name: letters, digits, '-' or '_'.",
        ));
    }
    Ok(())
}

fn is_sha256_hex(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

pub fn decide(state: &ApiKeysState, cmd: ApiKeyCommand) -> Result<Vec<ApiKeyEvent>, ApiKeyError> {
    match cmd {
        ApiKeyCommand::Create {
            name,
            prefix,
            hash,
            user_id,
            username,
            expires,
            now,
        } => {
            validate_name(&name)?;
            validate::name("prefix", &prefix, MAX_PREFIX_CHARS)?;
            if prefix.trim() != prefix {
                return Err(
                    FieldError::new("prefix", "Must not have surrounding whitespace.").into(),
                );
            }
            if !is_sha256_hex(&hash) {
                return Err(
                    FieldError::new("hash", "Expected a SHA-256 digest in lowercase hex.").into(),
                );
            }
            let username = validate::name("username", &username, usize::MAX)?;
            if expires.is_some_and(|e| e <= now) {
                return Err(FieldError::new("expires", "Must be in the future.").into());
            }
            if state.get(&name).is_some() {
                return Err(ApiKeyError::NameTaken(name));
            }
            if state.by_hash(&hash).is_some() {
                return Err(ApiKeyError::HashTaken);
            }
            Ok(vec![ApiKeyEvent::ApiKeyCreated {
                name,
                prefix,
                hash,
                user_id,
                username,
                expires,
                created_at: now,
            }])
        }
        ApiKeyCommand::Revoke { name, now } => {
            if state.get(&name).is_none() {
                return Err(ApiKeyError::NotFound(name));
            }
            Ok(vec![ApiKeyEvent::ApiKeyRevoked {
                name,
                revoked_at: now,
            }])
        }
    }
}

pub fn evolve(mut state: ApiKeysState, event: &ApiKeyEvent) -> ApiKeysState {
    match event {
        ApiKeyEvent::ApiKeyCreated {
            name,
            prefix,
            hash,
            user_id,
            username,
            expires,
            created_at,
        } => {
            state.active.entry(name.clone()).or_insert_with(|| ApiKey {
                name: name.clone(),
                prefix: prefix.clone(),
                hash: hash.clone(),
                user_id: *user_id,
                username: username.clone(),
                expires: *expires,
                created_at: *created_at,
            });
        }
        ApiKeyEvent::ApiKeyRevoked { name, .. } => {
            state.active.remove(name);
        }
    }
    state
}

pub fn fold<'a>(events: impl IntoIterator<Item = &'a ApiKeyEvent>) -> ApiKeysState {
    ApiKeysAggregate::fold(events)
}

impl Aggregate for ApiKeysAggregate {
    type State = ApiKeysState;
    type Command = ApiKeyCommand;
    type Event = ApiKeyEvent;
    type Error = ApiKeyError;

    fn decide(state: &ApiKeysState, cmd: ApiKeyCommand) -> Result<Vec<ApiKeyEvent>, ApiKeyError> {
        decide(state, cmd)
    }

    fn evolve(state: ApiKeysState, event: &ApiKeyEvent) -> ApiKeysState {
        evolve(state, event)
    }
}

/// The guard of a platform's admin keys, for the generic command handler.
pub struct AdminKeysAggregate;

/// The hashes of the admin keys the guard saw go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminKeysState {
    revoked: std::collections::BTreeSet<String>,
}

/// Revoke `key`, a key of an active tenant admin, while `others` (the
/// platform's other keys of active tenant admins, as their streams show
/// them) remain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeAdminKey {
    pub key: ApiKey,
    pub others: Vec<ApiKey>,
    pub now: DateTime<Utc>,
}

impl Aggregate for AdminKeysAggregate {
    type State = AdminKeysState;
    type Command = RevokeAdminKey;
    type Event = AdminKeyEvent;
    type Error = ApiKeyError;

    fn decide(
        state: &AdminKeysState,
        cmd: RevokeAdminKey,
    ) -> Result<Vec<AdminKeyEvent>, ApiKeyError> {
        let RevokeAdminKey { key, others, now } = cmd;
        let way_in = |k: &ApiKey| {
            k.hash != key.hash && !k.is_expired(now) && !state.revoked.contains(&k.hash)
        };
        if !key.is_expired(now) && !others.iter().any(way_in) {
            return Err(ApiKeyError::LastAdminKey(key.name));
        }
        Ok(vec![AdminKeyEvent::AdminKeyRevoked {
            name: key.name,
            hash: key.hash,
            revoked_at: now,
        }])
    }

    fn evolve(mut state: AdminKeysState, event: &AdminKeyEvent) -> AdminKeysState {
        match event {
            AdminKeyEvent::AdminKeyRevoked { hash, .. } => {
                state.revoked.insert(hash.clone());
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, t};
    use ApiKeyCommand as C;
    use ApiKeyEvent as E;

    fn hash(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn created(name: &str, n: u8) -> ApiKeyEvent {
        E::ApiKeyCreated {
            name: name.into(),
            prefix: format!("pre{n}"),
            hash: hash(n),
            user_id: 1,
            username: "admin".into(),
            expires: None,
            created_at: t(0),
        }
    }

    fn revoked(name: &str) -> ApiKeyEvent {
        E::ApiKeyRevoked {
            name: name.into(),
            revoked_at: t(1),
        }
    }

    fn create(name: &str, n: u8) -> ApiKeyCommand {
        C::Create {
            name: name.into(),
            prefix: format!("pre{n}"),
            hash: hash(n),
            user_id: 1,
            username: "admin".into(),
            expires: Some(t(1000)),
            now: t(5),
        }
    }

    fn create_with(
        prefix: &str,
        hash: &str,
        username: &str,
        expires: Option<i64>,
    ) -> ApiKeyCommand {
        C::Create {
            name: "k".into(),
            prefix: prefix.into(),
            hash: hash.into(),
            user_id: 1,
            username: username.into(),
            expires: expires.map(t),
            now: t(5),
        }
    }

    #[test]
    fn creates_a_key_and_lists_it_as_active() {
        let state = given::<ApiKeysAggregate>(&[])
            .when(create("ci-bot_1", 1))
            .then(&[E::ApiKeyCreated {
                name: "ci-bot_1".into(),
                prefix: "pre1".into(),
                hash: hash(1),
                user_id: 1,
                username: "admin".into(),
                expires: Some(t(1000)),
                created_at: t(5),
            }]);
        let key = state.get("ci-bot_1").unwrap();
        assert!(!key.is_expired(t(999)));
        assert!(key.is_expired(t(1000)));
        assert_eq!(state.by_hash(&hash(1)).unwrap().name, "ci-bot_1");
        assert_eq!(state.active().count(), 1);
    }

    #[test]
    fn key_names_match_the_sdk_pattern() {
        for good in ["a", "A-b_9", &"n".repeat(255)] {
            given::<ApiKeysAggregate>(&[])
                .when(create(good, 1))
                .accepted();
        }
        for bad in ["", " a", "a b", "a.b", "ä", "a\0", &"n".repeat(256)] {
            given::<ApiKeysAggregate>(&[])
                .when(create(bad, 1))
                .then_invalid("name");
        }
    }

    #[test]
    fn hash_prefix_username_and_expiry_are_checked() {
        let h = hash(1);
        let upper = "A".repeat(64);
        for (cmd, field) in [
            (create_with("p", "abc", "admin", None), "hash"),
            (create_with("p", &upper, "admin", None), "hash"),
            (create_with("p", &format!("{h}0"), "admin", None), "hash"),
            (create_with("", &h, "admin", None), "prefix"),
            (create_with(" p", &h, "admin", None), "prefix"),
            (create_with(&"p".repeat(65), &h, "admin", None), "prefix"),
            (create_with("p", &h, " ", None), "username"),
            (create_with("p", &h, "admin", Some(5)), "expires"),
            (create_with("p", &h, "admin", Some(4)), "expires"),
        ] {
            given::<ApiKeysAggregate>(&[]).when(cmd).then_invalid(field);
        }
    }

    #[test]
    fn a_key_without_expiry_is_fine() {
        given::<ApiKeysAggregate>(&[])
            .when(create_with("p", &hash(1), "admin", None))
            .accepted();
    }

    #[test]
    fn an_active_name_conflicts() {
        let e = given::<ApiKeysAggregate>(&[created("ci", 1)])
            .when(create("ci", 2))
            .then_err(RejectionKind::Conflict);
        assert_eq!(e, ApiKeyError::NameTaken("ci".into()));
    }

    #[test]
    fn a_revoked_name_can_be_reused() {
        given::<ApiKeysAggregate>(&[created("ci", 1), revoked("ci")])
            .when(create("ci", 2))
            .accepted();
    }

    #[test]
    fn the_same_hash_twice_conflicts() {
        let e = given::<ApiKeysAggregate>(&[created("ci", 1)])
            .when(create("other", 1))
            .then_err(RejectionKind::Conflict);
        assert_eq!(e, ApiKeyError::HashTaken);
    }

    #[test]
    fn revoke_removes_the_key_from_the_active_ones() {
        let state = given::<ApiKeysAggregate>(&[created("ci", 1), created("ops", 2)])
            .when(C::Revoke {
                name: "ci".into(),
                now: t(9),
            })
            .then(&[E::ApiKeyRevoked {
                name: "ci".into(),
                revoked_at: t(9),
            }]);
        assert!(state.get("ci").is_none());
        assert!(state.by_hash(&hash(1)).is_none());
        assert_eq!(
            state.active().map(|k| k.name.as_str()).collect::<Vec<_>>(),
            ["ops"]
        );
    }

    #[test]
    fn revoke_needs_an_active_key() {
        for events in [vec![], vec![created("ci", 1), revoked("ci")]] {
            let e = given::<ApiKeysAggregate>(&events)
                .when(C::Revoke {
                    name: "ci".into(),
                    now: t(9),
                })
                .then_err(RejectionKind::NotFound);
            assert_eq!(e.to_string(), "no API key named 'ci'");
        }
    }

    fn key(name: &str, n: u8, expires: Option<DateTime<Utc>>) -> ApiKey {
        ApiKey {
            name: name.into(),
            prefix: format!("pre{n}"),
            hash: hash(n),
            user_id: 1,
            username: "admin".into(),
            expires,
            created_at: t(0),
        }
    }

    fn going(key: &ApiKey) -> AdminKeyEvent {
        AdminKeyEvent::AdminKeyRevoked {
            name: key.name.clone(),
            hash: key.hash.clone(),
            revoked_at: t(9),
        }
    }

    fn revoke_admin_key(key: &ApiKey, others: &[ApiKey]) -> RevokeAdminKey {
        RevokeAdminKey {
            key: key.clone(),
            others: others.to_vec(),
            now: t(9),
        }
    }

    #[test]
    fn the_last_admin_key_stays() {
        let root = key("root", 1, None);
        let e = given::<AdminKeysAggregate>(&[])
            .when(revoke_admin_key(&root, &[]))
            .then_err(RejectionKind::Conflict);
        assert!(e.to_string().contains("last API key"), "{e}");
        // With another admin key it may go, and is recorded as going.
        let ops = key("ops", 2, None);
        given::<AdminKeysAggregate>(&[])
            .when(revoke_admin_key(&root, std::slice::from_ref(&ops)))
            .then(&[going(&root)]);
        // An expired key is no way in; nor is the key itself listed again.
        let old = key("old", 3, Some(t(5)));
        given::<AdminKeysAggregate>(&[])
            .when(revoke_admin_key(&root, &[old, root.clone()]))
            .then_err(RejectionKind::Conflict);
        // An expired admin key may always go.
        let expired = key("gone", 4, Some(t(5)));
        given::<AdminKeysAggregate>(&[])
            .when(revoke_admin_key(&expired, &[]))
            .then(&[going(&expired)]);
    }

    #[test]
    fn of_two_racing_revocations_of_the_last_two_admin_keys_the_second_is_refused() {
        // Each saw the other's key active in its stream; the guard saw the
        // first go.
        let (root, ops) = (key("root", 1, None), key("ops", 2, None));
        let e = given::<AdminKeysAggregate>(&[going(&root)])
            .when(revoke_admin_key(&ops, std::slice::from_ref(&root)))
            .then_err(RejectionKind::Conflict);
        assert_eq!(e, ApiKeyError::LastAdminKey("ops".into()));
        // A new key of the same name (another hash) is a way in again.
        let new_root = key("root", 3, None);
        given::<AdminKeysAggregate>(&[going(&root)])
            .when(revoke_admin_key(&ops, &[new_root]))
            .then(&[going(&ops)]);
    }
}
