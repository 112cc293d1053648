//! An issuer: who signs a platform's credentials (stream `issuer-{entity_id}`).
//!
//! Rules:
//! - `Create` fails if the stream exists (even deleted): `Conflict`.
//! - `Update` and `Delete` need an existing, not deleted issuer: `NotFound`.
//!   An update that changes nothing decides no event.
//! - The name is trimmed, not blank, at most 255 characters; `email`, when
//!   not blank, must be an email address; no string (signatories included)
//!   takes a NUL character.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ibl_events::credentials::{IssuerEvent, IssuerFields};

use super::validate::{self, FieldError, MAX_NAME_CHARS};
use super::{rejection, Aggregate, RejectionKind};

/// The aggregate, for the generic command handler.
pub struct IssuerAggregate;

/// The fold of an issuer stream; `Default` is a stream that does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerState {
    issuer: Option<Issuer>,
}

/// An issuer as its events left it (deleted ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    pub platform: String,
    pub entity_id: String,
    pub fields: IssuerFields,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl IssuerState {
    /// The issuer, deleted or not; `None` if the stream does not exist.
    pub fn get(&self) -> Option<&Issuer> {
        self.issuer.as_ref()
    }

    /// The issuer unless it is missing or deleted.
    pub fn live(&self) -> Option<&Issuer> {
        self.issuer.as_ref().filter(|i| i.deleted_at.is_none())
    }

    pub fn exists(&self) -> bool {
        self.issuer.is_some()
    }
}

/// A change of some writable fields; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateIssuer {
    pub name: Option<String>,
    pub url: Option<String>,
    pub icon_image: Option<String>,
    pub description: Option<String>,
    pub email: Option<String>,
    pub signatories: Option<BTreeMap<String, String>>,
}

impl UpdateIssuer {
    /// The fields after this change (not yet validated).
    pub fn merge(self, current: &IssuerFields) -> IssuerFields {
        let c = current.clone();
        IssuerFields {
            name: self.name.unwrap_or(c.name),
            url: self.url.unwrap_or(c.url),
            icon_image: self.icon_image.unwrap_or(c.icon_image),
            description: self.description.unwrap_or(c.description),
            email: self.email.unwrap_or(c.email),
            signatories: self.signatories.unwrap_or(c.signatories),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerCommand {
    Create {
        platform: String,
        entity_id: String,
        fields: IssuerFields,
        now: DateTime<Utc>,
    },
    Update {
        changes: UpdateIssuer,
        now: DateTime<Utc>,
    },
    Delete {
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("issuer not found")]
    NotFound,
    #[error("an issuer with this id already exists")]
    AlreadyExists,
}

rejection!(IssuerError, |e| match e {
    IssuerError::Invalid(_) => RejectionKind::Invalid,
    IssuerError::NotFound => RejectionKind::NotFound,
    IssuerError::AlreadyExists => RejectionKind::Conflict,
});

/// Validates and normalizes the writable fields.
pub fn validate_fields(fields: IssuerFields) -> Result<IssuerFields, FieldError> {
    for (field, value) in [
        ("url", &fields.url),
        ("icon_image", &fields.icon_image),
        ("description", &fields.description),
    ] {
        validate::no_nul(field, value)?;
    }
    for (key, value) in &fields.signatories {
        validate::no_nul("signatories", key)?;
        validate::no_nul("signatories", value)?;
    }
    Ok(IssuerFields {
        name: validate::name("name", &fields.name, MAX_NAME_CHARS)?,
        email: validate::optional_email("email", &fields.email)?,
        ..fields
    })
}

pub fn decide(state: &IssuerState, cmd: IssuerCommand) -> Result<Vec<IssuerEvent>, IssuerError> {
    match cmd {
        IssuerCommand::Create {
            platform,
            entity_id,
            fields,
            now,
        } => {
            if state.exists() {
                return Err(IssuerError::AlreadyExists);
            }
            Ok(vec![IssuerEvent::IssuerCreated {
                platform,
                entity_id,
                fields: validate_fields(fields)?,
                created_at: now,
            }])
        }
        IssuerCommand::Update { changes, now } => {
            let current = state.live().ok_or(IssuerError::NotFound)?;
            let fields = validate_fields(changes.merge(&current.fields))?;
            if fields == current.fields {
                return Ok(vec![]);
            }
            Ok(vec![IssuerEvent::IssuerUpdated {
                fields,
                updated_at: now,
            }])
        }
        IssuerCommand::Delete { now } => {
            state.live().ok_or(IssuerError::NotFound)?;
            Ok(vec![IssuerEvent::IssuerDeleted { deleted_at: now }])
        }
    }
}

pub fn evolve(state: IssuerState, event: &IssuerEvent) -> IssuerState {
    let issuer = match (state.issuer, event) {
        (
            None,
            IssuerEvent::IssuerCreated {
                platform,
                entity_id,
                fields,
                created_at,
            },
        ) => Some(Issuer {
            platform: platform.clone(),
            entity_id: entity_id.clone(),
            fields: fields.clone(),
            created_at: *created_at,
            updated_at: *created_at,
            deleted_at: None,
        }),
        (Some(i), IssuerEvent::IssuerUpdated { fields, updated_at }) => Some(Issuer {
            fields: fields.clone(),
            updated_at: *updated_at,
            ..i
        }),
        (Some(i), IssuerEvent::IssuerDeleted { deleted_at }) => Some(Issuer {
            deleted_at: Some(*deleted_at),
            ..i
        }),
        (issuer, _) => issuer,
    };
    IssuerState { issuer }
}

pub fn fold<'a>(events: impl IntoIterator<Item = &'a IssuerEvent>) -> IssuerState {
    IssuerAggregate::fold(events)
}

impl Aggregate for IssuerAggregate {
    type State = IssuerState;
    type Command = IssuerCommand;
    type Event = IssuerEvent;
    type Error = IssuerError;

    fn decide(state: &IssuerState, cmd: IssuerCommand) -> Result<Vec<IssuerEvent>, IssuerError> {
        decide(state, cmd)
    }

    fn evolve(state: IssuerState, event: &IssuerEvent) -> IssuerState {
        evolve(state, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, t};
    use IssuerCommand as C;
    use IssuerEvent as E;

    fn fields(name: &str) -> IssuerFields {
        IssuerFields {
            name: name.into(),
            ..Default::default()
        }
    }

    fn created() -> IssuerEvent {
        E::IssuerCreated {
            platform: "acme".into(),
            entity_id: "iss-1".into(),
            fields: fields("ACME Academy"),
            created_at: t(0),
        }
    }

    fn deleted() -> IssuerEvent {
        E::IssuerDeleted { deleted_at: t(1) }
    }

    fn create(fields: IssuerFields) -> IssuerCommand {
        C::Create {
            platform: "acme".into(),
            entity_id: "iss-1".into(),
            fields,
            now: t(0),
        }
    }

    fn update(changes: UpdateIssuer) -> IssuerCommand {
        C::Update { changes, now: t(5) }
    }

    #[test]
    fn creates_an_issuer() {
        let f = IssuerFields {
            email: " badges@acme.test ".into(),
            signatories: [("Dean".to_owned(), "Jane Roe".to_owned())].into(),
            ..fields(" ACME Academy ")
        };
        let state = given::<IssuerAggregate>(&[])
            .when(create(f))
            .then(&[E::IssuerCreated {
                platform: "acme".into(),
                entity_id: "iss-1".into(),
                fields: IssuerFields {
                    email: "badges@acme.test".into(),
                    signatories: [("Dean".to_owned(), "Jane Roe".to_owned())].into(),
                    ..fields("ACME Academy")
                },
                created_at: t(0),
            }]);
        assert_eq!(state.live().unwrap().fields.name, "ACME Academy");
    }

    #[test]
    fn create_needs_a_name() {
        given::<IssuerAggregate>(&[])
            .when(create(fields("")))
            .then_invalid("name");
        given::<IssuerAggregate>(&[])
            .when(create(fields(&"x".repeat(256))))
            .then_invalid("name");
    }

    #[test]
    fn create_checks_the_email_and_nul() {
        given::<IssuerAggregate>(&[])
            .when(create(IssuerFields {
                email: "not an email".into(),
                ..fields("ACME")
            }))
            .then_invalid("email");
        given::<IssuerAggregate>(&[])
            .when(create(IssuerFields {
                signatories: [("a\0".to_owned(), "b".to_owned())].into(),
                ..fields("ACME")
            }))
            .then_invalid("signatories");
        given::<IssuerAggregate>(&[])
            .when(create(IssuerFields {
                url: "\0".into(),
                ..fields("ACME")
            }))
            .then_invalid("url");
    }

    #[test]
    fn create_fails_if_the_issuer_exists() {
        given::<IssuerAggregate>(&[created()])
            .when(create(fields("Again")))
            .then_err(RejectionKind::Conflict);
        given::<IssuerAggregate>(&[created(), deleted()])
            .when(create(fields("Again")))
            .then_err(RejectionKind::Conflict);
    }

    #[test]
    fn update_merges_the_given_fields() {
        given::<IssuerAggregate>(&[created()])
            .when(update(UpdateIssuer {
                url: Some("https://acme.test".into()),
                ..Default::default()
            }))
            .then(&[E::IssuerUpdated {
                fields: IssuerFields {
                    url: "https://acme.test".into(),
                    ..fields("ACME Academy")
                },
                updated_at: t(5),
            }]);
    }

    #[test]
    fn update_that_changes_nothing_decides_nothing() {
        given::<IssuerAggregate>(&[created()])
            .when(update(UpdateIssuer::default()))
            .then(&[]);
    }

    #[test]
    fn update_validates_the_result() {
        given::<IssuerAggregate>(&[created()])
            .when(update(UpdateIssuer {
                name: Some("  ".into()),
                ..Default::default()
            }))
            .then_invalid("name");
        given::<IssuerAggregate>(&[created()])
            .when(update(UpdateIssuer {
                email: Some("a@b@c".into()),
                ..Default::default()
            }))
            .then_invalid("email");
    }

    #[test]
    fn update_and_delete_need_a_live_issuer() {
        for events in [vec![], vec![created(), deleted()]] {
            given::<IssuerAggregate>(&events)
                .when(update(UpdateIssuer::default()))
                .then_err(RejectionKind::NotFound);
            given::<IssuerAggregate>(&events)
                .when(C::Delete { now: t(5) })
                .then_err(RejectionKind::NotFound);
        }
    }

    #[test]
    fn delete_marks_the_issuer_deleted() {
        let state = given::<IssuerAggregate>(&[created()])
            .when(C::Delete { now: t(5) })
            .then(&[E::IssuerDeleted { deleted_at: t(5) }]);
        assert!(state.exists());
        assert!(state.live().is_none());
    }
}
