//! A credential: the badge definition a platform issues (stream
//! `credential-{entity_id}`).
//!
//! Rules:
//! - `Create` fails if the stream exists (even deleted): `Conflict`.
//! - `Update` and `Delete` need an existing, not deleted credential, else
//!   `NotFound`. An update that changes nothing decides no event.
//! - `Retire` needs an existing, not deleted credential (`NotFound`) that is
//!   not already retired (`Conflict`). Retirement is final. The reason may be
//!   empty.
//! - On an existing stream, checks run in the order a DRF view makes them:
//!   existence (`NotFound`), then the fields (`Invalid`), then the state
//!   (`Conflict`).
//! - Names are trimmed, not blank, at most 255 characters; no string field
//!   takes a NUL character; blank optional texts (`issuer`, `credential_type`,
//!   `course`, `program`) become `None`.
//! - [`CredentialState::issuable`] says whether an assertion may be issued
//!   now: missing or deleted is `NotFound`; retired is `Gone` (410: withdrawn
//!   for good, no command brings it back); expired is `Conflict` (409: the
//!   state forbids it, but an update of `expires_at` can lift it).

use chrono::{DateTime, Utc};
use ibl_events::credentials::{CredentialEvent, CredentialFields};

use super::validate::{self, FieldError, MAX_NAME_CHARS};
use super::{rejection, Aggregate, RejectionKind};

/// The aggregate, for the generic command handler.
pub struct CredentialAggregate;

/// The fold of a credential stream; `Default` is a stream that does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialState {
    credential: Option<Credential>,
}

/// A credential as its events left it (deleted ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub platform: String,
    pub entity_id: String,
    pub fields: CredentialFields,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub retired: Option<Retirement>,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retirement {
    pub reason: String,
    pub retired_at: DateTime<Utc>,
}

/// Proof that a credential could be issued at some instant: only
/// [`CredentialState::issuable`] makes one. The assertion aggregate takes it
/// instead of the credential's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuableCredential {
    platform: String,
    entity_id: String,
    issuer: Option<String>,
}

impl IssuableCredential {
    pub fn platform(&self) -> &str {
        &self.platform
    }
    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }
    /// The credential's issuer now (recorded on each assertion issued).
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }
}

impl CredentialState {
    /// The credential, deleted or not; `None` if the stream does not exist.
    pub fn get(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }

    /// The credential unless it is missing or deleted.
    pub fn live(&self) -> Option<&Credential> {
        self.credential.as_ref().filter(|c| c.deleted_at.is_none())
    }

    pub fn exists(&self) -> bool {
        self.credential.is_some()
    }

    /// Whether an assertion of this credential may be issued at `now`.
    pub fn issuable(&self, now: DateTime<Utc>) -> Result<IssuableCredential, CredentialError> {
        let c = self.live().ok_or(CredentialError::NotFound)?;
        if c.retired.is_some() {
            return Err(CredentialError::Retired);
        }
        if let Some(expires_at) = c.fields.expires_at {
            if expires_at <= now {
                return Err(CredentialError::Expired(expires_at));
            }
        }
        Ok(IssuableCredential {
            platform: c.platform.clone(),
            entity_id: c.entity_id.clone(),
            issuer: c.fields.issuer.clone(),
        })
    }
}

/// A change of some writable fields; `None` keeps the current value. The
/// optional fields take `Some(None)` to clear them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateCredential {
    pub name: Option<String>,
    pub description: Option<String>,
    pub issuer: Option<Option<String>>,
    pub credential_type: Option<Option<String>>,
    pub html_template: Option<String>,
    pub css_template: Option<String>,
    pub icon_image: Option<String>,
    pub background_image: Option<String>,
    pub thumbnail_image: Option<String>,
    pub criteria_url: Option<String>,
    pub criteria_text: Option<String>,
    pub issuing_signal: Option<String>,
    pub course: Option<Option<String>>,
    pub program: Option<Option<String>>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

impl UpdateCredential {
    /// The fields after this change (not yet validated).
    pub fn merge(self, current: &CredentialFields) -> CredentialFields {
        let c = current.clone();
        CredentialFields {
            name: self.name.unwrap_or(c.name),
            description: self.description.unwrap_or(c.description),
            issuer: self.issuer.unwrap_or(c.issuer),
            credential_type: self.credential_type.unwrap_or(c.credential_type),
            html_template: self.html_template.unwrap_or(c.html_template),
            css_template: self.css_template.unwrap_or(c.css_template),
            icon_image: self.icon_image.unwrap_or(c.icon_image),
            background_image: self.background_image.unwrap_or(c.background_image),
            thumbnail_image: self.thumbnail_image.unwrap_or(c.thumbnail_image),
            criteria_url: self.criteria_url.unwrap_or(c.criteria_url),
            criteria_text: self.criteria_text.unwrap_or(c.criteria_text),
            issuing_signal: self.issuing_signal.unwrap_or(c.issuing_signal),
            course: self.course.unwrap_or(c.course),
            program: self.program.unwrap_or(c.program),
            expires_at: self.expires_at.unwrap_or(c.expires_at),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialCommand {
    Create {
        platform: String,
        entity_id: String,
        fields: CredentialFields,
        now: DateTime<Utc>,
    },
    Update {
        changes: UpdateCredential,
        now: DateTime<Utc>,
    },
    Delete {
        now: DateTime<Utc>,
    },
    Retire {
        reason: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("credential not found")]
    NotFound,
    #[error("a credential with this id already exists")]
    AlreadyExists,
    #[error("credential is already retired")]
    AlreadyRetired,
    #[error("credential is retired and can no longer be issued")]
    Retired,
    #[error("credential expired at {} and can no longer be issued", .0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))]
    Expired(DateTime<Utc>),
}

rejection!(CredentialError, |e| match e {
    CredentialError::Invalid(_) => RejectionKind::Invalid,
    CredentialError::NotFound => RejectionKind::NotFound,
    CredentialError::AlreadyExists
    | CredentialError::AlreadyRetired
    | CredentialError::Expired(_) => RejectionKind::Conflict,
    CredentialError::Retired => RejectionKind::Gone,
});

/// Validates and normalizes the writable fields.
pub fn validate_fields(fields: CredentialFields) -> Result<CredentialFields, FieldError> {
    let texts = [
        ("description", &fields.description),
        ("html_template", &fields.html_template),
        ("css_template", &fields.css_template),
        ("icon_image", &fields.icon_image),
        ("background_image", &fields.background_image),
        ("thumbnail_image", &fields.thumbnail_image),
        ("criteria_url", &fields.criteria_url),
        ("criteria_text", &fields.criteria_text),
        ("issuing_signal", &fields.issuing_signal),
    ];
    for (field, value) in texts {
        validate::no_nul(field, value)?;
    }
    Ok(CredentialFields {
        name: validate::name("name", &fields.name, MAX_NAME_CHARS)?,
        issuer: validate::optional_text("issuer", fields.issuer)?,
        credential_type: validate::optional_text("credential_type", fields.credential_type)?,
        course: validate::optional_text("course", fields.course)?,
        program: validate::optional_text("program", fields.program)?,
        ..fields
    })
}

pub fn decide(
    state: &CredentialState,
    cmd: CredentialCommand,
) -> Result<Vec<CredentialEvent>, CredentialError> {
    match cmd {
        CredentialCommand::Create {
            platform,
            entity_id,
            fields,
            now,
        } => {
            if state.exists() {
                return Err(CredentialError::AlreadyExists);
            }
            Ok(vec![CredentialEvent::CredentialCreated {
                platform,
                entity_id,
                fields: validate_fields(fields)?,
                created_at: now,
            }])
        }
        CredentialCommand::Update { changes, now } => {
            let current = state.live().ok_or(CredentialError::NotFound)?;
            let fields = validate_fields(changes.merge(&current.fields))?;
            if fields == current.fields {
                return Ok(vec![]);
            }
            Ok(vec![CredentialEvent::CredentialUpdated {
                fields,
                updated_at: now,
            }])
        }
        CredentialCommand::Delete { now } => {
            state.live().ok_or(CredentialError::NotFound)?;
            Ok(vec![CredentialEvent::CredentialDeleted { deleted_at: now }])
        }
        CredentialCommand::Retire { reason, now } => {
            let current = state.live().ok_or(CredentialError::NotFound)?;
            validate::no_nul("reason", &reason)?;
            if current.retired.is_some() {
                return Err(CredentialError::AlreadyRetired);
            }
            Ok(vec![CredentialEvent::CredentialRetired {
                reason: reason.trim().to_owned(),
                retired_at: now,
            }])
        }
    }
}

pub fn evolve(state: CredentialState, event: &CredentialEvent) -> CredentialState {
    let credential = match (state.credential, event) {
        (
            None,
            CredentialEvent::CredentialCreated {
                platform,
                entity_id,
                fields,
                created_at,
            },
        ) => Some(Credential {
            platform: platform.clone(),
            entity_id: entity_id.clone(),
            fields: fields.clone(),
            created_at: *created_at,
            updated_at: *created_at,
            retired: None,
            deleted_at: None,
        }),
        (Some(c), CredentialEvent::CredentialUpdated { fields, updated_at }) => Some(Credential {
            fields: fields.clone(),
            updated_at: *updated_at,
            ..c
        }),
        (Some(c), CredentialEvent::CredentialRetired { reason, retired_at }) => Some(Credential {
            retired: Some(Retirement {
                reason: reason.clone(),
                retired_at: *retired_at,
            }),
            ..c
        }),
        (Some(c), CredentialEvent::CredentialDeleted { deleted_at }) => Some(Credential {
            deleted_at: Some(*deleted_at),
            ..c
        }),
        (credential, _) => credential,
    };
    CredentialState { credential }
}

pub fn fold<'a>(events: impl IntoIterator<Item = &'a CredentialEvent>) -> CredentialState {
    CredentialAggregate::fold(events)
}

impl Aggregate for CredentialAggregate {
    type State = CredentialState;
    type Command = CredentialCommand;
    type Event = CredentialEvent;
    type Error = CredentialError;

    fn decide(
        state: &CredentialState,
        cmd: CredentialCommand,
    ) -> Result<Vec<CredentialEvent>, CredentialError> {
        decide(state, cmd)
    }

    fn evolve(state: CredentialState, event: &CredentialEvent) -> CredentialState {
        evolve(state, event)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::testing::{given, t};
    use CredentialCommand as C;
    use CredentialEvent as E;

    type Given = crate::domain::testing::Given<CredentialAggregate>;

    pub(crate) fn fields(name: &str) -> CredentialFields {
        CredentialFields {
            name: name.into(),
            ..Default::default()
        }
    }

    pub(crate) fn created() -> CredentialEvent {
        E::CredentialCreated {
            platform: "acme".into(),
            entity_id: "cred-1".into(),
            fields: fields("Rust 101"),
            created_at: t(0),
        }
    }

    fn credential(events: &[CredentialEvent]) -> Given {
        given::<CredentialAggregate>(events)
    }

    fn create(fields: CredentialFields) -> CredentialCommand {
        C::Create {
            platform: "acme".into(),
            entity_id: "cred-1".into(),
            fields,
            now: t(0),
        }
    }

    #[test]
    fn creates_a_credential_with_a_trimmed_name() {
        let mut f = fields("  Rust 101 ");
        f.issuer = Some("  ".into());
        f.course = Some(" course-v1:x ".into());
        let state = credential(&[])
            .when(create(f))
            .then(&[E::CredentialCreated {
                platform: "acme".into(),
                entity_id: "cred-1".into(),
                fields: CredentialFields {
                    course: Some("course-v1:x".into()),
                    ..fields("Rust 101")
                },
                created_at: t(0),
            }]);
        let c = state.live().unwrap();
        assert_eq!(c.fields.name, "Rust 101");
        assert_eq!(c.fields.issuer, None);
        assert_eq!(c.updated_at, t(0));
    }

    #[test]
    fn create_needs_a_name() {
        let e = credential(&[])
            .when(create(fields(" \t ")))
            .then_invalid("name");
        assert_eq!(e.to_string(), "name: This field may not be blank.");
    }

    #[test]
    fn create_bounds_the_name_at_255_characters() {
        credential(&[])
            .when(create(fields(&"n".repeat(255))))
            .accepted();
        credential(&[])
            .when(create(fields(&"n".repeat(256))))
            .then_invalid("name");
    }

    #[test]
    fn create_rejects_nul_in_any_string_field() {
        credential(&[])
            .when(create(fields("a\0b")))
            .then_invalid("name");
        let mut f = fields("ok");
        f.criteria_text = "x\0".into();
        credential(&[])
            .when(create(f))
            .then_invalid("criteria_text");
        let mut f = fields("ok");
        f.program = Some("\0".into());
        credential(&[]).when(create(f)).then_invalid("program");
    }

    #[test]
    fn create_fails_if_the_credential_exists() {
        credential(&[created()])
            .when(create(fields("Again")))
            .then_err(RejectionKind::Conflict);
        credential(&[created(), E::CredentialDeleted { deleted_at: t(1) }])
            .when(create(fields("Again")))
            .then_err(RejectionKind::Conflict);
    }

    #[test]
    fn update_merges_the_given_fields() {
        let state = credential(&[created()])
            .when(C::Update {
                changes: UpdateCredential {
                    description: Some("Learn Rust".into()),
                    course: Some(Some("c1".into())),
                    expires_at: Some(Some(t(100))),
                    ..Default::default()
                },
                now: t(5),
            })
            .then(&[E::CredentialUpdated {
                fields: CredentialFields {
                    description: "Learn Rust".into(),
                    course: Some("c1".into()),
                    expires_at: Some(t(100)),
                    ..fields("Rust 101")
                },
                updated_at: t(5),
            }]);
        assert_eq!(state.live().unwrap().updated_at, t(5));
        assert_eq!(state.live().unwrap().created_at, t(0));
    }

    #[test]
    fn update_can_clear_an_optional_field() {
        let with_course = E::CredentialUpdated {
            fields: CredentialFields {
                course: Some("c1".into()),
                ..fields("Rust 101")
            },
            updated_at: t(1),
        };
        credential(&[created(), with_course])
            .when(C::Update {
                changes: UpdateCredential {
                    course: Some(None),
                    ..Default::default()
                },
                now: t(2),
            })
            .then(&[E::CredentialUpdated {
                fields: fields("Rust 101"),
                updated_at: t(2),
            }]);
    }

    #[test]
    fn update_that_changes_nothing_decides_nothing() {
        credential(&[created()])
            .when(C::Update {
                changes: UpdateCredential {
                    name: Some(" Rust 101 ".into()),
                    ..Default::default()
                },
                now: t(5),
            })
            .then(&[]);
    }

    #[test]
    fn update_validates_a_given_name() {
        credential(&[created()])
            .when(C::Update {
                changes: UpdateCredential {
                    name: Some("".into()),
                    ..Default::default()
                },
                now: t(5),
            })
            .then_invalid("name");
        credential(&[created()])
            .when(C::Update {
                changes: UpdateCredential {
                    icon_image: Some("\0".into()),
                    ..Default::default()
                },
                now: t(5),
            })
            .then_invalid("icon_image");
    }

    #[test]
    fn update_needs_a_live_credential() {
        let cmd = || C::Update {
            changes: UpdateCredential::default(),
            now: t(5),
        };
        credential(&[])
            .when(cmd())
            .then_err(RejectionKind::NotFound);
        credential(&[created(), E::CredentialDeleted { deleted_at: t(1) }])
            .when(cmd())
            .then_err(RejectionKind::NotFound);
    }

    #[test]
    fn a_retired_credential_can_still_be_updated() {
        credential(&[
            created(),
            E::CredentialRetired {
                reason: "old".into(),
                retired_at: t(1),
            },
        ])
        .when(C::Update {
            changes: UpdateCredential {
                description: Some("archived".into()),
                ..Default::default()
            },
            now: t(2),
        })
        .accepted();
    }

    #[test]
    fn delete_marks_the_credential_deleted() {
        let state = credential(&[created()])
            .when(C::Delete { now: t(3) })
            .then(&[E::CredentialDeleted { deleted_at: t(3) }]);
        assert!(state.exists());
        assert!(state.live().is_none());
        assert_eq!(state.get().unwrap().deleted_at, Some(t(3)));
    }

    #[test]
    fn delete_needs_a_live_credential() {
        credential(&[])
            .when(C::Delete { now: t(3) })
            .then_err(RejectionKind::NotFound);
        credential(&[created(), E::CredentialDeleted { deleted_at: t(1) }])
            .when(C::Delete { now: t(3) })
            .then_err(RejectionKind::NotFound);
    }

    #[test]
    fn retire_records_the_reason() {
        let state = credential(&[created()])
            .when(C::Retire {
                reason: " superseded ".into(),
                now: t(4),
            })
            .then(&[E::CredentialRetired {
                reason: "superseded".into(),
                retired_at: t(4),
            }]);
        assert_eq!(
            state.live().unwrap().retired,
            Some(Retirement {
                reason: "superseded".into(),
                retired_at: t(4)
            })
        );
    }

    #[test]
    fn retire_twice_conflicts() {
        credential(&[
            created(),
            E::CredentialRetired {
                reason: "".into(),
                retired_at: t(1),
            },
        ])
        .when(C::Retire {
            reason: "again".into(),
            now: t(4),
        })
        .then_err(RejectionKind::Conflict);
    }

    #[test]
    fn retire_needs_a_live_credential() {
        let cmd = || C::Retire {
            reason: "x".into(),
            now: t(4),
        };
        credential(&[])
            .when(cmd())
            .then_err(RejectionKind::NotFound);
        credential(&[created(), E::CredentialDeleted { deleted_at: t(1) }])
            .when(cmd())
            .then_err(RejectionKind::NotFound);
    }

    #[test]
    fn retire_rejects_nul_in_the_reason() {
        credential(&[created()])
            .when(C::Retire {
                reason: "\0".into(),
                now: t(4),
            })
            .then_invalid("reason");
    }

    #[test]
    fn issuable_when_live_unretired_and_unexpired() {
        let ok = fold(&[created()]).issuable(t(10)).unwrap();
        assert_eq!(ok.platform(), "acme");
        assert_eq!(ok.entity_id(), "cred-1");
    }

    #[test]
    fn not_issuable_when_missing_or_deleted() {
        let missing = CredentialState::default().issuable(t(10)).unwrap_err();
        assert_eq!(missing.kind(), RejectionKind::NotFound);
        let deleted = fold(&[created(), E::CredentialDeleted { deleted_at: t(1) }])
            .issuable(t(10))
            .unwrap_err();
        assert_eq!(deleted, CredentialError::NotFound);
    }

    #[test]
    fn not_issuable_when_retired() {
        let e = fold(&[
            created(),
            E::CredentialRetired {
                reason: "x".into(),
                retired_at: t(1),
            },
        ])
        .issuable(t(10))
        .unwrap_err();
        assert_eq!(e, CredentialError::Retired);
        assert_eq!(e.kind(), RejectionKind::Gone);
    }

    #[test]
    fn not_issuable_from_the_instant_it_expires() {
        let state = fold(&[
            created(),
            E::CredentialUpdated {
                fields: CredentialFields {
                    expires_at: Some(t(10)),
                    ..fields("Rust 101")
                },
                updated_at: t(1),
            },
        ]);
        assert!(state.issuable(t(9)).is_ok());
        let e = state.issuable(t(10)).unwrap_err();
        assert_eq!(e, CredentialError::Expired(t(10)));
        assert_eq!(e.kind(), RejectionKind::Conflict);
        assert_eq!(
            e.to_string(),
            "credential expired at 2024-01-01T00:00:10Z and can no longer be issued"
        );
    }

    #[test]
    fn events_that_do_not_fit_are_ignored() {
        let state = fold(&[E::CredentialDeleted { deleted_at: t(1) }]);
        assert!(!state.exists());
        let twice = fold(&[created(), {
            let mut again = created();
            if let E::CredentialCreated { fields, .. } = &mut again {
                fields.name = "Other".into();
            }
            again
        }]);
        assert_eq!(twice.live().unwrap().fields.name, "Rust 101");
    }
}
