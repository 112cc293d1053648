//! Pure aggregates: `decide(state, command) -> events`, `evolve(state, event) -> state`.
//!
//! Nothing here does I/O, reads the clock or generates ids: the time (`now`)
//! and every new id come in the command, and whatever another aggregate knows
//! (is the credential issuable? does this recipient already hold one?) is
//! looked up by the caller before the command is built.
//!
//! A rejected command is an `XError` whose [`Rejection::kind`] says how the
//! HTTP layer answers it; infrastructure failures are not domain errors and
//! never appear here.

pub mod api_key;
pub mod assertion;
pub mod credential;
pub mod ids;
pub mod issuer;
pub mod platform;
pub mod rbac;
pub mod reservation;
pub mod user;
pub mod validate;

#[cfg(test)]
pub(crate) mod testing;

pub use validate::FieldError;

/// How a rejected command is answered. The HTTP layer maps each kind to one
/// status: `NotFound` 404, `Conflict` 409, `Invalid` 400, `Gone` 410,
/// `Forbidden` 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionKind {
    /// The aggregate does not exist (or is deleted).
    NotFound,
    /// The command contradicts the current state (already exists, already
    /// revoked, duplicate key, ...).
    Conflict,
    /// The command itself is malformed; [`Rejection::field`] names the field.
    Invalid,
    /// The target existed but is permanently withdrawn.
    Gone,
    /// The target exists but this command may never change it (a built-in or
    /// internal RBAC entity changed by a tenant).
    Forbidden,
}

/// A rejected command of any aggregate.
pub trait Rejection: std::error::Error + Send + Sync + 'static {
    fn kind(&self) -> RejectionKind;
    /// The offending field of an `Invalid` rejection (`"name"`,
    /// `"recipient.email"`, ...), named as in the domain types (snake_case).
    fn field(&self) -> Option<&'static str> {
        None
    }
}

/// One event-sourced aggregate, so that a generic command handler can load a
/// stream, fold it, decide and append.
pub trait Aggregate {
    /// `Default` is the state of a stream that does not exist.
    type State: Default;
    type Command;
    type Event: ibl_events::DomainEvent;
    type Error: Rejection;

    /// Accepts (events to append, possibly none) or rejects a command.
    fn decide(state: &Self::State, cmd: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Applies one event. Total: an event that does not fit the state is ignored.
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    /// Folds a stream from its beginning.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self::State
    where
        Self::Event: 'a,
    {
        events
            .into_iter()
            .fold(Self::State::default(), |state, event| {
                Self::evolve(state, event)
            })
    }
}

/// Implements `Rejection` and the inherent `kind`/`field` for an error enum
/// that has an `Invalid(FieldError)` variant.
macro_rules! rejection {
    ($error:ty, |$e:ident| $kind:expr) => {
        impl $error {
            /// How the HTTP layer answers this rejection.
            pub fn kind(&self) -> $crate::domain::RejectionKind {
                let $e = self;
                $kind
            }
            /// The offending field of an `Invalid` rejection.
            pub fn field(&self) -> Option<&'static str> {
                match self {
                    Self::Invalid(e) => Some(e.field),
                    _ => None,
                }
            }
        }
        impl $crate::domain::Rejection for $error {
            fn kind(&self) -> $crate::domain::RejectionKind {
                <$error>::kind(self)
            }
            fn field(&self) -> Option<&'static str> {
                <$error>::field(self)
            }
        }
    };
}
pub(crate) use rejection;
