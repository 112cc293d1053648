//! A group of users (stream `group-{id}`).
//!
//! Rules (besides the shared ones in [`super`]):
//! - `unique_id` is required: trimmed, not blank, at most 255 characters, no
//!   NUL. Its uniqueness within the platform is the caller's check against
//!   the read model (the aggregate sees one group). The HTTP layer may
//!   default it (for instance to a UUID) when the client sends none.
//! - `name` is optional (`""` when none): trimmed, at most 255 characters,
//!   no NUL. `description` is free text without NUL.
//! - `owner_id` is the user who created the group.
//! - `Create` may name first members; `Update` changes any writable field
//!   and the membership in one command: `GroupUpdated` (when a field
//!   changes), then `GroupMembersAdded`, then `GroupMembersRemoved`.
//! - A built-in group's fields cannot change (`Forbidden`), but its members
//!   can; it cannot be deleted. An internal group refuses every command.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use ibl_events::rbac::GroupEvent;

use super::{dedup_ids, membership_changes, validate_id};
use crate::domain::validate::{self, FieldError, MAX_NAME_CHARS};
use crate::domain::{rejection, Aggregate, RejectionKind};

/// The aggregate, for the generic command handler.
pub struct GroupAggregate;

/// The fold of a group stream; `Default` is a stream that does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupState {
    group: Option<Group>,
}

/// A group as its events left it (deleted ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: u64,
    pub platform: String,
    pub unique_id: String,
    pub name: String,
    pub description: String,
    pub owner_id: u64,
    pub members: BTreeSet<u64>,
    pub is_internal: bool,
    pub is_builtin: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl GroupState {
    /// The group, deleted or not; `None` if the stream does not exist.
    pub fn get(&self) -> Option<&Group> {
        self.group.as_ref()
    }

    /// The group unless it is missing or deleted.
    pub fn live(&self) -> Option<&Group> {
        self.group.as_ref().filter(|g| g.deleted_at.is_none())
    }

    /// The live group if it belongs to `platform`.
    pub fn live_in(&self, platform: &str) -> Option<&Group> {
        self.live().filter(|g| g.platform == platform)
    }

    pub fn exists(&self) -> bool {
        self.group.is_some()
    }
}

/// A change of some writable fields (`None` keeps the current value) and of
/// the membership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateGroup {
    pub unique_id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub users_to_add: Vec<u64>,
    pub users_to_remove: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupCommand {
    Create {
        id: u64,
        platform: String,
        unique_id: String,
        name: String,
        description: String,
        owner_id: u64,
        /// First members.
        users: Vec<u64>,
        now: DateTime<Utc>,
    },
    Update {
        /// The caller's platform key.
        platform: String,
        changes: UpdateGroup,
        now: DateTime<Utc>,
    },
    Delete {
        platform: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("group not found")]
    NotFound,
    #[error("a group with this id already exists")]
    AlreadyExists,
    #[error("built-in groups cannot be renamed or deleted; only their members can change")]
    Builtin,
    #[error("internal groups cannot be changed or deleted")]
    Internal,
}

rejection!(GroupError, |e| match e {
    GroupError::Invalid(_) => RejectionKind::Invalid,
    GroupError::NotFound => RejectionKind::NotFound,
    GroupError::AlreadyExists => RejectionKind::Conflict,
    GroupError::Builtin | GroupError::Internal => RejectionKind::Forbidden,
});

struct Fields {
    unique_id: String,
    name: String,
    description: String,
}

fn validate_fields(unique_id: &str, name: &str, description: &str) -> Result<Fields, FieldError> {
    let unique_id = validate::name("unique_id", unique_id, MAX_NAME_CHARS)?;
    validate::no_nul("name", name)?;
    let name = name.trim();
    validate::max_chars("name", name, MAX_NAME_CHARS)?;
    validate::no_nul("description", description)?;
    Ok(Fields {
        unique_id,
        name: name.to_owned(),
        description: description.to_owned(),
    })
}

/// The live group of `platform` that a tenant may address.
fn tenant_group<'a>(state: &'a GroupState, platform: &str) -> Result<&'a Group, GroupError> {
    let group = state.live_in(platform).ok_or(GroupError::NotFound)?;
    if group.is_internal {
        return Err(GroupError::Internal);
    }
    Ok(group)
}

pub fn decide(state: &GroupState, cmd: GroupCommand) -> Result<Vec<GroupEvent>, GroupError> {
    match cmd {
        GroupCommand::Create {
            id,
            platform,
            unique_id,
            name,
            description,
            owner_id,
            users,
            now,
        } => {
            if state.exists() {
                return Err(GroupError::AlreadyExists);
            }
            let id = validate_id("id", id)?;
            let fields = validate_fields(&unique_id, &name, &description)?;
            let mut events = vec![GroupEvent::GroupCreated {
                id,
                platform,
                unique_id: fields.unique_id,
                name: fields.name,
                description: fields.description,
                owner_id,
                is_internal: false,
                is_builtin: false,
                created_at: now,
            }];
            let users = dedup_ids(&users);
            if !users.is_empty() {
                events.push(GroupEvent::GroupMembersAdded {
                    user_ids: users,
                    added_at: now,
                });
            }
            Ok(events)
        }
        GroupCommand::Update {
            platform,
            changes,
            now,
        } => {
            let group = tenant_group(state, &platform)?;
            let fields = validate_fields(
                changes.unique_id.as_deref().unwrap_or(&group.unique_id),
                changes.name.as_deref().unwrap_or(&group.name),
                changes.description.as_deref().unwrap_or(&group.description),
            )?;
            let (added, removed) = membership_changes(
                &group.members,
                &changes.users_to_add,
                &changes.users_to_remove,
                "users_to_remove",
            )?;
            let changed = fields.unique_id != group.unique_id
                || fields.name != group.name
                || fields.description != group.description;
            if changed && group.is_builtin {
                return Err(GroupError::Builtin);
            }
            let mut events = Vec::new();
            if changed {
                events.push(GroupEvent::GroupUpdated {
                    unique_id: fields.unique_id,
                    name: fields.name,
                    description: fields.description,
                    updated_at: now,
                });
            }
            if !added.is_empty() {
                events.push(GroupEvent::GroupMembersAdded {
                    user_ids: added,
                    added_at: now,
                });
            }
            if !removed.is_empty() {
                events.push(GroupEvent::GroupMembersRemoved {
                    user_ids: removed,
                    removed_at: now,
                });
            }
            Ok(events)
        }
        GroupCommand::Delete { platform, now } => {
            let group = tenant_group(state, &platform)?;
            if group.is_builtin {
                return Err(GroupError::Builtin);
            }
            Ok(vec![GroupEvent::GroupDeleted { deleted_at: now }])
        }
    }
}

pub fn evolve(state: GroupState, event: &GroupEvent) -> GroupState {
    let group = match (state.group, event) {
        (
            None,
            GroupEvent::GroupCreated {
                id,
                platform,
                unique_id,
                name,
                description,
                owner_id,
                is_internal,
                is_builtin,
                created_at,
            },
        ) => Some(Group {
            id: *id,
            platform: platform.clone(),
            unique_id: unique_id.clone(),
            name: name.clone(),
            description: description.clone(),
            owner_id: *owner_id,
            members: BTreeSet::new(),
            is_internal: *is_internal,
            is_builtin: *is_builtin,
            created_at: *created_at,
            updated_at: *created_at,
            deleted_at: None,
        }),
        (
            Some(g),
            GroupEvent::GroupUpdated {
                unique_id,
                name,
                description,
                updated_at,
            },
        ) => Some(Group {
            unique_id: unique_id.clone(),
            name: name.clone(),
            description: description.clone(),
            updated_at: *updated_at,
            ..g
        }),
        (Some(mut g), GroupEvent::GroupMembersAdded { user_ids, .. }) => {
            g.members.extend(user_ids);
            Some(g)
        }
        (Some(mut g), GroupEvent::GroupMembersRemoved { user_ids, .. }) => {
            for id in user_ids {
                g.members.remove(id);
            }
            Some(g)
        }
        (Some(g), GroupEvent::GroupDeleted { deleted_at }) => Some(Group {
            deleted_at: Some(*deleted_at),
            ..g
        }),
        (group, _) => group,
    };
    GroupState { group }
}

pub fn fold<'a>(events: impl IntoIterator<Item = &'a GroupEvent>) -> GroupState {
    GroupAggregate::fold(events)
}

impl Aggregate for GroupAggregate {
    type State = GroupState;
    type Command = GroupCommand;
    type Event = GroupEvent;
    type Error = GroupError;

    fn decide(state: &GroupState, cmd: GroupCommand) -> Result<Vec<GroupEvent>, GroupError> {
        decide(state, cmd)
    }

    fn evolve(state: GroupState, event: &GroupEvent) -> GroupState {
        evolve(state, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, t};
    use GroupCommand as C;
    use GroupEvent as E;

    type Given = crate::domain::testing::Given<GroupAggregate>;

    fn created() -> GroupEvent {
        E::GroupCreated {
            id: 3,
            platform: "acme".into(),
            unique_id: "reviewers".into(),
            name: "Reviewers".into(),
            description: "".into(),
            owner_id: 1,
            is_internal: false,
            is_builtin: false,
            created_at: t(0),
        }
    }

    fn flagged(is_internal: bool, is_builtin: bool) -> GroupEvent {
        let mut e = created();
        if let E::GroupCreated {
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

    fn members(user_ids: &[u64]) -> GroupEvent {
        E::GroupMembersAdded {
            user_ids: user_ids.to_vec(),
            added_at: t(1),
        }
    }

    fn group(events: &[GroupEvent]) -> Given {
        given::<GroupAggregate>(events)
    }

    fn create(unique_id: &str, name: &str, users: &[u64]) -> GroupCommand {
        C::Create {
            id: 3,
            platform: "acme".into(),
            unique_id: unique_id.into(),
            name: name.into(),
            description: "".into(),
            owner_id: 1,
            users: users.to_vec(),
            now: t(0),
        }
    }

    /// Changes the id or the description of a `Create`.
    fn edit(mut cmd: GroupCommand, f: impl FnOnce(&mut u64, &mut String)) -> GroupCommand {
        if let C::Create {
            id, description, ..
        } = &mut cmd
        {
            f(id, description);
        }
        cmd
    }

    fn update(changes: UpdateGroup) -> GroupCommand {
        C::Update {
            platform: "acme".into(),
            changes,
            now: t(5),
        }
    }

    fn add_remove(add: &[u64], remove: &[u64]) -> GroupCommand {
        update(UpdateGroup {
            users_to_add: add.to_vec(),
            users_to_remove: remove.to_vec(),
            ..Default::default()
        })
    }

    fn rename(name: &str) -> GroupCommand {
        update(UpdateGroup {
            name: Some(name.into()),
            ..Default::default()
        })
    }

    fn delete(platform: &str) -> GroupCommand {
        C::Delete {
            platform: platform.into(),
            now: t(6),
        }
    }

    #[test]
    fn creates_a_group_with_its_first_members() {
        let state = group(&[])
            .when(create(" reviewers ", " Reviewers ", &[5, 4, 5]))
            .then(&[
                created(),
                E::GroupMembersAdded {
                    user_ids: vec![5, 4],
                    added_at: t(0),
                },
            ]);
        let g = state.live_in("acme").unwrap();
        assert_eq!(g.members, [4, 5].into());
        assert_eq!(g.owner_id, 1);
        assert!(!g.is_builtin && !g.is_internal);
    }

    #[test]
    fn creates_an_empty_group_with_no_name() {
        let state = group(&[]).when(create("g-1", "  ", &[])).accepted().0;
        assert_eq!(state.live().unwrap().name, "");
        assert!(state.live().unwrap().members.is_empty());
    }

    #[test]
    fn create_validates_the_fields() {
        group(&[])
            .when(create(" ", "x", &[]))
            .then_invalid("unique_id");
        group(&[])
            .when(create(&"u".repeat(256), "x", &[]))
            .then_invalid("unique_id");
        group(&[])
            .when(create("g", &"n".repeat(256), &[]))
            .then_invalid("name");
        group(&[])
            .when(create("g", "a\0", &[]))
            .then_invalid("name");
        group(&[])
            .when(edit(create("g", "x", &[]), |_, description| {
                *description = "\0".into()
            }))
            .then_invalid("description");
        group(&[])
            .when(edit(create("g", "x", &[]), |id, _| *id = 0))
            .then_invalid("id");
    }

    #[test]
    fn create_fails_if_the_group_exists() {
        group(&[created()])
            .when(create("g", "x", &[]))
            .then_err(RejectionKind::Conflict);
        group(&[created(), E::GroupDeleted { deleted_at: t(1) }])
            .when(create("g", "x", &[]))
            .then_err(RejectionKind::Conflict);
    }

    #[test]
    fn update_changes_fields_and_members_in_one_command() {
        let state = group(&[created(), members(&[1, 2])])
            .when(update(UpdateGroup {
                name: Some("Senior reviewers".into()),
                description: Some("Those who approve".into()),
                users_to_add: vec![3],
                users_to_remove: vec![1],
                ..Default::default()
            }))
            .then(&[
                E::GroupUpdated {
                    unique_id: "reviewers".into(),
                    name: "Senior reviewers".into(),
                    description: "Those who approve".into(),
                    updated_at: t(5),
                },
                E::GroupMembersAdded {
                    user_ids: vec![3],
                    added_at: t(5),
                },
                E::GroupMembersRemoved {
                    user_ids: vec![1],
                    removed_at: t(5),
                },
            ]);
        let g = state.live().unwrap();
        assert_eq!(g.members, [2, 3].into());
        assert_eq!(g.updated_at, t(5));
    }

    #[test]
    fn membership_changes_are_idempotent() {
        group(&[created(), members(&[1, 2])])
            .when(add_remove(&[1, 2], &[9]))
            .then(&[]);
        group(&[created(), members(&[1])])
            .when(add_remove(&[2, 2, 1], &[]))
            .then(&[E::GroupMembersAdded {
                user_ids: vec![2],
                added_at: t(5),
            }]);
        group(&[created(), members(&[1, 2])])
            .when(add_remove(&[], &[2, 2]))
            .then(&[E::GroupMembersRemoved {
                user_ids: vec![2],
                removed_at: t(5),
            }]);
    }

    #[test]
    fn adding_and_removing_the_same_user_is_invalid() {
        group(&[created()])
            .when(add_remove(&[4], &[4]))
            .then_invalid("users_to_remove");
    }

    #[test]
    fn update_that_changes_nothing_decides_nothing() {
        group(&[created()]).when(rename(" Reviewers ")).then(&[]);
    }

    #[test]
    fn update_validates_the_fields() {
        group(&[created()])
            .when(update(UpdateGroup {
                unique_id: Some("".into()),
                ..Default::default()
            }))
            .then_invalid("unique_id");
        group(&[created()])
            .when(rename(&"n".repeat(256)))
            .then_invalid("name");
    }

    #[test]
    fn update_and_delete_need_a_live_group_of_the_callers_platform() {
        let deleted = [created(), E::GroupDeleted { deleted_at: t(1) }];
        for events in [&[][..], &deleted[..]] {
            group(events)
                .when(rename("x"))
                .then_err(RejectionKind::NotFound);
            group(events)
                .when(delete("acme"))
                .then_err(RejectionKind::NotFound);
        }
        group(&[created()])
            .when(C::Update {
                platform: "other".into(),
                changes: UpdateGroup::default(),
                now: t(5),
            })
            .then_err(RejectionKind::NotFound);
        group(&[created()])
            .when(delete("other"))
            .then_err(RejectionKind::NotFound);
    }

    #[test]
    fn built_in_groups_keep_their_fields_but_change_members() {
        group(&[flagged(false, true)])
            .when(rename("Ours"))
            .then_err(RejectionKind::Forbidden);
        group(&[flagged(false, true)])
            .when(update(UpdateGroup {
                unique_id: Some("other".into()),
                users_to_add: vec![9],
                ..Default::default()
            }))
            .then_err(RejectionKind::Forbidden);
        group(&[flagged(false, true)])
            .when(delete("acme"))
            .then_err(RejectionKind::Forbidden);
        group(&[flagged(false, true)])
            .when(update(UpdateGroup {
                name: Some("Reviewers".into()),
                users_to_add: vec![9],
                ..Default::default()
            }))
            .then(&[E::GroupMembersAdded {
                user_ids: vec![9],
                added_at: t(5),
            }]);
    }

    #[test]
    fn internal_groups_refuse_every_tenant_command() {
        for cmd in [add_remove(&[9], &[]), rename("x"), delete("acme")] {
            group(&[flagged(true, false)])
                .when(cmd)
                .then_err(RejectionKind::Forbidden);
        }
    }

    #[test]
    fn delete_marks_the_group_deleted() {
        let state = group(&[created()])
            .when(delete("acme"))
            .then(&[E::GroupDeleted { deleted_at: t(6) }]);
        assert!(state.exists());
        assert!(state.live().is_none());
    }

    #[test]
    fn events_that_do_not_fit_are_ignored() {
        let state = fold(&[members(&[1]), E::GroupDeleted { deleted_at: t(1) }]);
        assert!(!state.exists());
    }
}
