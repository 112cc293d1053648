//! A role: a named set of action patterns and data action patterns (stream
//! `role-{id}`).
//!
//! Rules (besides the shared ones in [`super`]):
//! - The name is trimmed, not blank, at most 255 characters, no NUL.
//!   Uniqueness of names is not enforced.
//! - Every entry of `actions` and `data_actions` parses as an
//!   [`ActionPattern`] (trimmed; invalid is `Invalid` naming the field);
//!   exact duplicates are dropped. Both lists may be empty.
//! - Tenants create roles that are neither internal nor built-in; the
//!   built-in ones come from [`super::builtins`].
//! - Deleting a role leaves the policies that name it as they are; a policy
//!   whose role is deleted grants nothing (the query side drops it).
//!
//! [`ActionPattern`]: ibl_events::rbac::ActionPattern

use chrono::{DateTime, Utc};
use ibl_events::rbac::{ActionPattern, RoleEvent};

use super::{validate_actions, validate_id};
use crate::domain::validate::{self, FieldError, MAX_NAME_CHARS};
use crate::domain::{rejection, Aggregate, RejectionKind};

/// The aggregate, for the generic command handler.
pub struct RoleAggregate;

/// The fold of a role stream; `Default` is a stream that does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleState {
    role: Option<Role>,
}

/// A role as its events left it (deleted ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub id: u64,
    pub platform: String,
    pub name: String,
    pub actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub is_internal: bool,
    pub is_builtin: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Role {
    /// The parsed `actions` (entries that no longer parse are skipped).
    pub fn action_patterns(&self) -> Vec<ActionPattern> {
        parse_all(&self.actions)
    }

    /// The parsed `data_actions` (entries that no longer parse are skipped).
    pub fn data_action_patterns(&self) -> Vec<ActionPattern> {
        parse_all(&self.data_actions)
    }
}

fn parse_all(patterns: &[String]) -> Vec<ActionPattern> {
    patterns
        .iter()
        .filter_map(|p| ActionPattern::parse(p).ok())
        .collect()
}

impl RoleState {
    /// The role, deleted or not; `None` if the stream does not exist.
    pub fn get(&self) -> Option<&Role> {
        self.role.as_ref()
    }

    /// The role unless it is missing or deleted.
    pub fn live(&self) -> Option<&Role> {
        self.role.as_ref().filter(|r| r.deleted_at.is_none())
    }

    /// The live role if it belongs to `platform`.
    pub fn live_in(&self, platform: &str) -> Option<&Role> {
        self.live().filter(|r| r.platform == platform)
    }

    pub fn exists(&self) -> bool {
        self.role.is_some()
    }
}

/// A change of some writable fields; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateRole {
    pub name: Option<String>,
    pub actions: Option<Vec<String>>,
    pub data_actions: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleCommand {
    Create {
        id: u64,
        platform: String,
        name: String,
        actions: Vec<String>,
        data_actions: Vec<String>,
        now: DateTime<Utc>,
    },
    Update {
        /// The caller's platform key.
        platform: String,
        changes: UpdateRole,
        now: DateTime<Utc>,
    },
    Delete {
        platform: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("role not found")]
    NotFound,
    #[error("a role with this id already exists")]
    AlreadyExists,
    #[error("built-in roles cannot be changed or deleted")]
    Builtin,
    #[error("internal roles cannot be changed or deleted")]
    Internal,
}

rejection!(RoleError, |e| match e {
    RoleError::Invalid(_) => RejectionKind::Invalid,
    RoleError::NotFound => RejectionKind::NotFound,
    RoleError::AlreadyExists => RejectionKind::Conflict,
    RoleError::Builtin | RoleError::Internal => RejectionKind::Forbidden,
});

/// The live role of `platform` that a tenant may address.
fn tenant_role<'a>(state: &'a RoleState, platform: &str) -> Result<&'a Role, RoleError> {
    let role = state.live_in(platform).ok_or(RoleError::NotFound)?;
    if role.is_internal {
        return Err(RoleError::Internal);
    }
    Ok(role)
}

pub fn decide(state: &RoleState, cmd: RoleCommand) -> Result<Vec<RoleEvent>, RoleError> {
    match cmd {
        RoleCommand::Create {
            id,
            platform,
            name,
            actions,
            data_actions,
            now,
        } => {
            if state.exists() {
                return Err(RoleError::AlreadyExists);
            }
            Ok(vec![RoleEvent::RoleCreated {
                id: validate_id("id", id)?,
                platform,
                name: validate::name("name", &name, MAX_NAME_CHARS)?,
                actions: validate_actions("actions", actions)?,
                data_actions: validate_actions("data_actions", data_actions)?,
                is_internal: false,
                is_builtin: false,
                created_at: now,
            }])
        }
        RoleCommand::Update {
            platform,
            changes,
            now,
        } => {
            let role = tenant_role(state, &platform)?;
            let name = match changes.name {
                Some(name) => validate::name("name", &name, MAX_NAME_CHARS)?,
                None => role.name.clone(),
            };
            let actions = match changes.actions {
                Some(actions) => validate_actions("actions", actions)?,
                None => role.actions.clone(),
            };
            let data_actions = match changes.data_actions {
                Some(data_actions) => validate_actions("data_actions", data_actions)?,
                None => role.data_actions.clone(),
            };
            if name == role.name && actions == role.actions && data_actions == role.data_actions {
                return Ok(vec![]);
            }
            if role.is_builtin {
                return Err(RoleError::Builtin);
            }
            Ok(vec![RoleEvent::RoleUpdated {
                name,
                actions,
                data_actions,
                updated_at: now,
            }])
        }
        RoleCommand::Delete { platform, now } => {
            let role = tenant_role(state, &platform)?;
            if role.is_builtin {
                return Err(RoleError::Builtin);
            }
            Ok(vec![RoleEvent::RoleDeleted { deleted_at: now }])
        }
    }
}

pub fn evolve(state: RoleState, event: &RoleEvent) -> RoleState {
    let role = match (state.role, event) {
        (
            None,
            RoleEvent::RoleCreated {
                id,
                platform,
                name,
                actions,
                data_actions,
                is_internal,
                is_builtin,
                created_at,
            },
        ) => Some(Role {
            id: *id,
            platform: platform.clone(),
            name: name.clone(),
            actions: actions.clone(),
            data_actions: data_actions.clone(),
            is_internal: *is_internal,
            is_builtin: *is_builtin,
            created_at: *created_at,
            updated_at: *created_at,
            deleted_at: None,
        }),
        (
            Some(r),
            RoleEvent::RoleUpdated {
                name,
                actions,
                data_actions,
                updated_at,
            },
        ) => Some(Role {
            name: name.clone(),
            actions: actions.clone(),
            data_actions: data_actions.clone(),
            updated_at: *updated_at,
            ..r
        }),
        (Some(r), RoleEvent::RoleDeleted { deleted_at }) => Some(Role {
            deleted_at: Some(*deleted_at),
            ..r
        }),
        (role, _) => role,
    };
    RoleState { role }
}

pub fn fold<'a>(events: impl IntoIterator<Item = &'a RoleEvent>) -> RoleState {
    RoleAggregate::fold(events)
}

impl Aggregate for RoleAggregate {
    type State = RoleState;
    type Command = RoleCommand;
    type Event = RoleEvent;
    type Error = RoleError;

    fn decide(state: &RoleState, cmd: RoleCommand) -> Result<Vec<RoleEvent>, RoleError> {
        decide(state, cmd)
    }

    fn evolve(state: RoleState, event: &RoleEvent) -> RoleState {
        evolve(state, event)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::testing::{given, t};
    use RoleCommand as C;
    use RoleEvent as E;

    type Given = crate::domain::testing::Given<RoleAggregate>;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    pub(crate) fn created() -> RoleEvent {
        E::RoleCreated {
            id: 7,
            platform: "acme".into(),
            name: "Reviewer".into(),
            actions: strings(&["Ibl.Mentor/Mentors/read"]),
            data_actions: vec![],
            is_internal: false,
            is_builtin: false,
            created_at: t(0),
        }
    }

    fn flagged(is_internal: bool, is_builtin: bool) -> RoleEvent {
        let mut e = created();
        if let E::RoleCreated {
            is_internal: i,
            is_builtin: b,
            ..
        } = &mut e
        {
            *i = is_internal;
            *b = is_builtin;
        }
        e
    }

    fn role(events: &[RoleEvent]) -> Given {
        given::<RoleAggregate>(events)
    }

    fn create(name: &str, actions: &[&str], data_actions: &[&str]) -> RoleCommand {
        C::Create {
            id: 7,
            platform: "acme".into(),
            name: name.into(),
            actions: strings(actions),
            data_actions: strings(data_actions),
            now: t(0),
        }
    }

    fn update(changes: UpdateRole) -> RoleCommand {
        C::Update {
            platform: "acme".into(),
            changes,
            now: t(5),
        }
    }

    fn rename(name: &str) -> RoleCommand {
        update(UpdateRole {
            name: Some(name.into()),
            ..Default::default()
        })
    }

    fn delete(platform: &str) -> RoleCommand {
        C::Delete {
            platform: platform.into(),
            now: t(6),
        }
    }

    #[test]
    fn creates_a_role_with_parsed_deduplicated_patterns() {
        let state = role(&[])
            .when(create(
                " Reviewer ",
                &[" Ibl.Mentor/Mentors/read", "Ibl.Mentor/Mentors/read"],
                &["Ibl.Mentor/Settings/*/read"],
            ))
            .then(&[E::RoleCreated {
                id: 7,
                platform: "acme".into(),
                name: "Reviewer".into(),
                actions: strings(&["Ibl.Mentor/Mentors/read"]),
                data_actions: strings(&["Ibl.Mentor/Settings/*/read"]),
                is_internal: false,
                is_builtin: false,
                created_at: t(0),
            }]);
        let r = state.live_in("acme").unwrap();
        assert_eq!(r.updated_at, t(0));
        assert!(r.action_patterns()[0].matches("Ibl.Mentor/Mentors/read"));
        assert!(r.data_action_patterns()[0].matches("Ibl.Mentor/Settings/name/read"));
        assert!(state.live_in("other").is_none());
    }

    #[test]
    fn a_role_may_have_no_actions() {
        role(&[]).when(create("Empty", &[], &[])).accepted();
    }

    #[test]
    fn create_needs_a_name_of_at_most_255_characters() {
        role(&[]).when(create(" ", &[], &[])).then_invalid("name");
        role(&[]).when(create("a\0", &[], &[])).then_invalid("name");
        role(&[])
            .when(create(&"n".repeat(255), &[], &[]))
            .accepted();
        role(&[])
            .when(create(&"n".repeat(256), &[], &[]))
            .then_invalid("name");
    }

    #[test]
    fn create_rejects_invalid_patterns_naming_the_field() {
        for bad in ["Ibl.Men*", "", "Ibl..x", "Ibl.Mentor/ read", "a\0"] {
            role(&[])
                .when(create("R", &[bad], &[]))
                .then_invalid("actions");
            role(&[])
                .when(create("R", &[], &[bad]))
                .then_invalid("data_actions");
        }
    }

    #[test]
    fn create_needs_an_id_below_2_pow_53() {
        for id in [0, 1 << 53] {
            role(&[])
                .when(C::Create {
                    id,
                    platform: "acme".into(),
                    name: "R".into(),
                    actions: vec![],
                    data_actions: vec![],
                    now: t(0),
                })
                .then_invalid("id");
        }
    }

    #[test]
    fn create_fails_if_the_role_exists() {
        role(&[created()])
            .when(create("Again", &[], &[]))
            .then_err(RejectionKind::Conflict);
        role(&[created(), E::RoleDeleted { deleted_at: t(1) }])
            .when(create("Again", &[], &[]))
            .then_err(RejectionKind::Conflict);
    }

    #[test]
    fn update_replaces_the_given_fields() {
        let state = role(&[created()])
            .when(update(UpdateRole {
                name: Some("Editor".into()),
                data_actions: Some(strings(&["Ibl.Mentor/Settings/*/write"])),
                ..Default::default()
            }))
            .then(&[E::RoleUpdated {
                name: "Editor".into(),
                actions: strings(&["Ibl.Mentor/Mentors/read"]),
                data_actions: strings(&["Ibl.Mentor/Settings/*/write"]),
                updated_at: t(5),
            }]);
        let r = state.live().unwrap();
        assert_eq!(r.name, "Editor");
        assert_eq!(r.updated_at, t(5));
        assert_eq!(r.created_at, t(0));
    }

    #[test]
    fn update_can_empty_the_actions() {
        role(&[created()])
            .when(update(UpdateRole {
                actions: Some(vec![]),
                ..Default::default()
            }))
            .then(&[E::RoleUpdated {
                name: "Reviewer".into(),
                actions: vec![],
                data_actions: vec![],
                updated_at: t(5),
            }]);
    }

    #[test]
    fn update_that_changes_nothing_decides_nothing() {
        role(&[created()]).when(rename(" Reviewer ")).then(&[]);
        role(&[created()])
            .when(update(UpdateRole::default()))
            .then(&[]);
    }

    #[test]
    fn update_validates_the_fields() {
        role(&[created()]).when(rename("")).then_invalid("name");
        role(&[created()])
            .when(update(UpdateRole {
                actions: Some(strings(&["Ibl.*", "x*"])),
                ..Default::default()
            }))
            .then_invalid("actions");
        role(&[created()])
            .when(update(UpdateRole {
                data_actions: Some(strings(&["*/"])),
                ..Default::default()
            }))
            .then_invalid("data_actions");
    }

    #[test]
    fn update_and_delete_need_a_live_role_of_the_callers_platform() {
        let deleted = [created(), E::RoleDeleted { deleted_at: t(1) }];
        for events in [&[][..], &deleted[..]] {
            role(events)
                .when(rename("X"))
                .then_err(RejectionKind::NotFound);
            role(events)
                .when(delete("acme"))
                .then_err(RejectionKind::NotFound);
        }
        role(&[created()])
            .when(C::Update {
                platform: "other".into(),
                changes: UpdateRole::default(),
                now: t(5),
            })
            .then_err(RejectionKind::NotFound);
        role(&[created()])
            .when(delete("other"))
            .then_err(RejectionKind::NotFound);
    }

    #[test]
    fn built_in_roles_cannot_be_changed_or_deleted() {
        let e = role(&[flagged(false, true)])
            .when(rename("Mine now"))
            .then_err(RejectionKind::Forbidden);
        assert_eq!(e.to_string(), "built-in roles cannot be changed or deleted");
        role(&[flagged(false, true)])
            .when(update(UpdateRole {
                actions: Some(strings(&["*"])),
                ..Default::default()
            }))
            .then_err(RejectionKind::Forbidden);
        role(&[flagged(false, true)])
            .when(delete("acme"))
            .then_err(RejectionKind::Forbidden);
        // A PUT that repeats the current values is harmless.
        role(&[flagged(false, true)])
            .when(rename("Reviewer"))
            .then(&[]);
    }

    #[test]
    fn internal_roles_refuse_every_tenant_command() {
        for cmd in [rename("Reviewer"), rename("X"), delete("acme")] {
            role(&[flagged(true, false)])
                .when(cmd)
                .then_err(RejectionKind::Forbidden);
        }
    }

    #[test]
    fn delete_marks_the_role_deleted() {
        let state = role(&[created()])
            .when(delete("acme"))
            .then(&[E::RoleDeleted { deleted_at: t(6) }]);
        assert!(state.exists());
        assert!(state.live().is_none());
        assert_eq!(state.get().unwrap().deleted_at, Some(t(6)));
    }

    #[test]
    fn events_that_do_not_fit_are_ignored() {
        let state = fold(&[E::RoleDeleted { deleted_at: t(1) }]);
        assert!(!state.exists());
        let mut again = created();
        if let E::RoleCreated { name, .. } = &mut again {
            *name = "Other".into();
        }
        assert_eq!(fold(&[created(), again]).live().unwrap().name, "Reviewer");
    }
}
