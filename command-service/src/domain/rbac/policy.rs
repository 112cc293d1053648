//! A policy: one role bound to resource paths for users and groups (stream
//! `policy-{id}`).
//!
//! Rules (besides the shared ones in [`super`]):
//! - The name is trimmed, not blank, at most 255 characters, no NUL. The API
//!   says a missing name defaults to a UUID4: the HTTP layer supplies it.
//! - Every resource parses as a [`ResourcePath`] (trimmed; a missing
//!   trailing `/` is added, as the seed's own example omits it) and lies
//!   under `/platforms/{platform_pk}/` of the policy's platform; duplicates
//!   are dropped; at most 100. The list may be empty (the policy then grants
//!   nothing), as a DRF list field allows.
//! - The role, users and groups are checked by the caller (they exist, are
//!   live and belong to the platform); `role_id` must be a valid id.
//! - `Update` changes any writable field and the membership in one command:
//!   `PolicyUpdated` (when a field changes), then users added, users
//!   removed, groups added, groups removed.
//! - Internal policies (the built-in tenant-admin one) refuse every tenant
//!   command (`Forbidden`); the HTTP layer also keeps them out of lists.
//!
//! [`ResourcePath`]: ibl_events::rbac::ResourcePath

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use ibl_events::rbac::{PolicyEvent, ResourcePath};

use super::{dedup_ids, membership_changes, validate_id, validate_resources};
use crate::domain::validate::{self, FieldError, MAX_NAME_CHARS};
use crate::domain::{rejection, Aggregate, RejectionKind};

/// The aggregate, for the generic command handler.
pub struct PolicyAggregate;

/// The fold of a policy stream; `Default` is a stream that does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyState {
    policy: Option<Policy>,
}

/// A policy as its events left it (deleted ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub id: u64,
    pub platform: String,
    pub platform_pk: u64,
    pub name: String,
    pub role_id: u64,
    pub resources: Vec<String>,
    pub users: BTreeSet<u64>,
    pub groups: BTreeSet<u64>,
    pub is_internal: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Policy {
    /// The parsed resources (entries that no longer parse are skipped).
    pub fn resource_paths(&self) -> Vec<ResourcePath> {
        self.resources
            .iter()
            .filter_map(|r| ResourcePath::parse(r).ok())
            .collect()
    }
}

impl PolicyState {
    /// The policy, deleted or not; `None` if the stream does not exist.
    pub fn get(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// The policy unless it is missing or deleted.
    pub fn live(&self) -> Option<&Policy> {
        self.policy.as_ref().filter(|p| p.deleted_at.is_none())
    }

    /// The live policy if it belongs to `platform`.
    pub fn live_in(&self, platform: &str) -> Option<&Policy> {
        self.live().filter(|p| p.platform == platform)
    }

    pub fn exists(&self) -> bool {
        self.policy.is_some()
    }
}

/// A change of some writable fields (`None` keeps the current value) and of
/// who the policy names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdatePolicy {
    pub name: Option<String>,
    pub role_id: Option<u64>,
    pub resources: Option<Vec<String>>,
    pub users_to_add: Vec<u64>,
    pub users_to_remove: Vec<u64>,
    pub groups_to_add: Vec<u64>,
    pub groups_to_remove: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyCommand {
    Create {
        id: u64,
        platform: String,
        /// The platform's integer id.
        platform_pk: u64,
        name: String,
        role_id: u64,
        resources: Vec<String>,
        users: Vec<u64>,
        groups: Vec<u64>,
        now: DateTime<Utc>,
    },
    Update {
        /// The caller's platform key.
        platform: String,
        changes: UpdatePolicy,
        now: DateTime<Utc>,
    },
    Delete {
        platform: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("policy not found")]
    NotFound,
    #[error("a policy with this id already exists")]
    AlreadyExists,
    #[error("internal policies cannot be changed or deleted")]
    Internal,
}

rejection!(PolicyError, |e| match e {
    PolicyError::Invalid(_) => RejectionKind::Invalid,
    PolicyError::NotFound => RejectionKind::NotFound,
    PolicyError::AlreadyExists => RejectionKind::Conflict,
    PolicyError::Internal => RejectionKind::Forbidden,
});

/// The live policy of `platform` that a tenant may address.
fn tenant_policy<'a>(state: &'a PolicyState, platform: &str) -> Result<&'a Policy, PolicyError> {
    let policy = state.live_in(platform).ok_or(PolicyError::NotFound)?;
    if policy.is_internal {
        return Err(PolicyError::Internal);
    }
    Ok(policy)
}

pub fn decide(state: &PolicyState, cmd: PolicyCommand) -> Result<Vec<PolicyEvent>, PolicyError> {
    match cmd {
        PolicyCommand::Create {
            id,
            platform,
            platform_pk,
            name,
            role_id,
            resources,
            users,
            groups,
            now,
        } => {
            if state.exists() {
                return Err(PolicyError::AlreadyExists);
            }
            Ok(vec![PolicyEvent::PolicyCreated {
                id: validate_id("id", id)?,
                platform,
                platform_pk,
                name: validate::name("name", &name, MAX_NAME_CHARS)?,
                role_id: validate_id("role_id", role_id)?,
                resources: validate_resources("resources", resources, platform_pk)?,
                user_ids: dedup_ids(&users),
                group_ids: dedup_ids(&groups),
                is_internal: false,
                created_at: now,
            }])
        }
        PolicyCommand::Update {
            platform,
            changes,
            now,
        } => {
            let policy = tenant_policy(state, &platform)?;
            let name = match changes.name {
                Some(name) => validate::name("name", &name, MAX_NAME_CHARS)?,
                None => policy.name.clone(),
            };
            let role_id = match changes.role_id {
                Some(role_id) => validate_id("role_id", role_id)?,
                None => policy.role_id,
            };
            let resources = match changes.resources {
                Some(resources) => validate_resources("resources", resources, policy.platform_pk)?,
                None => policy.resources.clone(),
            };
            let (users_added, users_removed) = membership_changes(
                &policy.users,
                &changes.users_to_add,
                &changes.users_to_remove,
                "users_to_remove",
            )?;
            let (groups_added, groups_removed) = membership_changes(
                &policy.groups,
                &changes.groups_to_add,
                &changes.groups_to_remove,
                "groups_to_remove",
            )?;
            let mut events = Vec::new();
            if name != policy.name || role_id != policy.role_id || resources != policy.resources {
                events.push(PolicyEvent::PolicyUpdated {
                    name,
                    role_id,
                    resources,
                    updated_at: now,
                });
            }
            if !users_added.is_empty() {
                events.push(PolicyEvent::PolicyUsersAdded {
                    user_ids: users_added,
                    added_at: now,
                });
            }
            if !users_removed.is_empty() {
                events.push(PolicyEvent::PolicyUsersRemoved {
                    user_ids: users_removed,
                    removed_at: now,
                });
            }
            if !groups_added.is_empty() {
                events.push(PolicyEvent::PolicyGroupsAdded {
                    group_ids: groups_added,
                    added_at: now,
                });
            }
            if !groups_removed.is_empty() {
                events.push(PolicyEvent::PolicyGroupsRemoved {
                    group_ids: groups_removed,
                    removed_at: now,
                });
            }
            Ok(events)
        }
        PolicyCommand::Delete { platform, now } => {
            tenant_policy(state, &platform)?;
            Ok(vec![PolicyEvent::PolicyDeleted { deleted_at: now }])
        }
    }
}

pub fn evolve(state: PolicyState, event: &PolicyEvent) -> PolicyState {
    let policy = match (state.policy, event) {
        (
            None,
            PolicyEvent::PolicyCreated {
                id,
                platform,
                platform_pk,
                name,
                role_id,
                resources,
                user_ids,
                group_ids,
                is_internal,
                created_at,
            },
        ) => Some(Policy {
            id: *id,
            platform: platform.clone(),
            platform_pk: *platform_pk,
            name: name.clone(),
            role_id: *role_id,
            resources: resources.clone(),
            users: user_ids.iter().copied().collect(),
            groups: group_ids.iter().copied().collect(),
            is_internal: *is_internal,
            created_at: *created_at,
            updated_at: *created_at,
            deleted_at: None,
        }),
        (
            Some(p),
            PolicyEvent::PolicyUpdated {
                name,
                role_id,
                resources,
                updated_at,
            },
        ) => Some(Policy {
            name: name.clone(),
            role_id: *role_id,
            resources: resources.clone(),
            updated_at: *updated_at,
            ..p
        }),
        (Some(mut p), PolicyEvent::PolicyUsersAdded { user_ids, .. }) => {
            p.users.extend(user_ids);
            Some(p)
        }
        (Some(mut p), PolicyEvent::PolicyUsersRemoved { user_ids, .. }) => {
            for id in user_ids {
                p.users.remove(id);
            }
            Some(p)
        }
        (Some(mut p), PolicyEvent::PolicyGroupsAdded { group_ids, .. }) => {
            p.groups.extend(group_ids);
            Some(p)
        }
        (Some(mut p), PolicyEvent::PolicyGroupsRemoved { group_ids, .. }) => {
            for id in group_ids {
                p.groups.remove(id);
            }
            Some(p)
        }
        (Some(p), PolicyEvent::PolicyDeleted { deleted_at }) => Some(Policy {
            deleted_at: Some(*deleted_at),
            ..p
        }),
        (policy, _) => policy,
    };
    PolicyState { policy }
}

pub fn fold<'a>(events: impl IntoIterator<Item = &'a PolicyEvent>) -> PolicyState {
    PolicyAggregate::fold(events)
}

impl Aggregate for PolicyAggregate {
    type State = PolicyState;
    type Command = PolicyCommand;
    type Event = PolicyEvent;
    type Error = PolicyError;

    fn decide(state: &PolicyState, cmd: PolicyCommand) -> Result<Vec<PolicyEvent>, PolicyError> {
        decide(state, cmd)
    }

    fn evolve(state: PolicyState, event: &PolicyEvent) -> PolicyState {
        evolve(state, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, t};
    use PolicyCommand as C;
    use PolicyEvent as E;

    type Given = crate::domain::testing::Given<PolicyAggregate>;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn created() -> PolicyEvent {
        E::PolicyCreated {
            id: 11,
            platform: "acme".into(),
            platform_pk: 1,
            name: "Mentor 5 viewers".into(),
            role_id: 3,
            resources: strings(&["/platforms/1/mentors/5/"]),
            user_ids: vec![1, 2],
            group_ids: vec![4],
            is_internal: false,
            created_at: t(0),
        }
    }

    fn internal() -> PolicyEvent {
        let mut e = created();
        if let E::PolicyCreated { is_internal, .. } = &mut e {
            *is_internal = true;
        }
        e
    }

    fn policy(events: &[PolicyEvent]) -> Given {
        given::<PolicyAggregate>(events)
    }

    fn create(name: &str, resources: &[&str]) -> PolicyCommand {
        C::Create {
            id: 11,
            platform: "acme".into(),
            platform_pk: 1,
            name: name.into(),
            role_id: 3,
            resources: strings(resources),
            users: vec![1, 2, 1],
            groups: vec![4, 4],
            now: t(0),
        }
    }

    /// Changes the id, the role id or the resources of a `Create`.
    fn edit(
        mut cmd: PolicyCommand,
        f: impl FnOnce(&mut u64, &mut u64, &mut Vec<String>),
    ) -> PolicyCommand {
        if let C::Create {
            id,
            role_id,
            resources,
            ..
        } = &mut cmd
        {
            f(id, role_id, resources);
        }
        cmd
    }

    fn update(changes: UpdatePolicy) -> PolicyCommand {
        C::Update {
            platform: "acme".into(),
            changes,
            now: t(5),
        }
    }

    fn set_resources(resources: &[&str]) -> PolicyCommand {
        update(UpdatePolicy {
            resources: Some(strings(resources)),
            ..Default::default()
        })
    }

    fn delete(platform: &str) -> PolicyCommand {
        C::Delete {
            platform: platform.into(),
            now: t(6),
        }
    }

    #[test]
    fn creates_a_policy_with_deduplicated_subjects() {
        let state = policy(&[])
            .when(create(" Mentor 5 viewers ", &["/platforms/1/mentors/5/"]))
            .then(&[created()]);
        let p = state.live_in("acme").unwrap();
        assert_eq!(p.users, [1, 2].into());
        assert_eq!(p.groups, [4].into());
        assert_eq!(p.resource_paths()[0].as_str(), "/platforms/1/mentors/5/");
    }

    #[test]
    fn resources_without_a_trailing_slash_are_normalized() {
        let (_, events) = policy(&[])
            .when(create(
                "p",
                &[
                    "/platforms/1/mentors",
                    " /platforms/1/mentors/ ",
                    "/platforms/1/",
                ],
            ))
            .accepted();
        let E::PolicyCreated { resources, .. } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(
            resources,
            &strings(&["/platforms/1/mentors/", "/platforms/1/"])
        );
    }

    #[test]
    fn resources_must_be_valid_paths_under_the_policys_platform() {
        for bad in [
            "platforms/1/",
            "/platforms/1/../2/",
            "/platforms/1//mentors/",
            "/platforms/1/./",
            "/platforms/1/\u{1}/",
            "/platforms/2/",
            "/platforms/10/mentors/",
            "/platforms/",
            "/",
            "",
        ] {
            policy(&[])
                .when(create("p", &[bad]))
                .then_invalid("resources");
        }
        let too_many: Vec<String> = (0..101).map(|i| format!("/platforms/1/m/{i}/")).collect();
        policy(&[])
            .when(edit(create("p", &[]), |_, _, resources| {
                *resources = too_many
            }))
            .then_invalid("resources");
        policy(&[]).when(create("p", &[])).accepted();
    }

    #[test]
    fn create_validates_name_and_ids() {
        policy(&[])
            .when(create(" ", &["/platforms/1/"]))
            .then_invalid("name");
        policy(&[])
            .when(create(&"n".repeat(256), &["/platforms/1/"]))
            .then_invalid("name");
        policy(&[])
            .when(edit(create("p", &[]), |_, role_id, _| *role_id = 0))
            .then_invalid("role_id");
        policy(&[])
            .when(edit(create("p", &[]), |id, _, _| *id = 1 << 53))
            .then_invalid("id");
    }

    #[test]
    fn create_fails_if_the_policy_exists() {
        policy(&[created()])
            .when(create("p", &[]))
            .then_err(RejectionKind::Conflict);
        policy(&[created(), E::PolicyDeleted { deleted_at: t(1) }])
            .when(create("p", &[]))
            .then_err(RejectionKind::Conflict);
    }

    #[test]
    fn update_changes_fields_and_subjects_in_one_command() {
        let state = policy(&[created()])
            .when(update(UpdatePolicy {
                name: Some("Mentor 5 editors".into()),
                role_id: Some(8),
                resources: Some(strings(&[
                    "/platforms/1/mentors/5/",
                    "/platforms/1/mentors/6",
                ])),
                users_to_add: vec![3, 1],
                users_to_remove: vec![2, 9],
                groups_to_add: vec![5],
                groups_to_remove: vec![4],
            }))
            .then(&[
                E::PolicyUpdated {
                    name: "Mentor 5 editors".into(),
                    role_id: 8,
                    resources: strings(&["/platforms/1/mentors/5/", "/platforms/1/mentors/6/"]),
                    updated_at: t(5),
                },
                E::PolicyUsersAdded {
                    user_ids: vec![3],
                    added_at: t(5),
                },
                E::PolicyUsersRemoved {
                    user_ids: vec![2],
                    removed_at: t(5),
                },
                E::PolicyGroupsAdded {
                    group_ids: vec![5],
                    added_at: t(5),
                },
                E::PolicyGroupsRemoved {
                    group_ids: vec![4],
                    removed_at: t(5),
                },
            ]);
        let p = state.live().unwrap();
        assert_eq!(p.users, [1, 3].into());
        assert_eq!(p.groups, [5].into());
        assert_eq!(p.role_id, 8);
        assert_eq!(p.updated_at, t(5));
    }

    #[test]
    fn subject_changes_are_idempotent() {
        policy(&[created()])
            .when(update(UpdatePolicy {
                users_to_add: vec![1, 2, 2],
                users_to_remove: vec![7],
                groups_to_add: vec![4],
                groups_to_remove: vec![8, 8],
                ..Default::default()
            }))
            .then(&[]);
    }

    #[test]
    fn adding_and_removing_the_same_subject_is_invalid() {
        policy(&[created()])
            .when(update(UpdatePolicy {
                users_to_add: vec![7],
                users_to_remove: vec![7],
                ..Default::default()
            }))
            .then_invalid("users_to_remove");
        policy(&[created()])
            .when(update(UpdatePolicy {
                groups_to_add: vec![7],
                groups_to_remove: vec![7],
                ..Default::default()
            }))
            .then_invalid("groups_to_remove");
    }

    #[test]
    fn update_that_changes_nothing_decides_nothing() {
        policy(&[created()])
            .when(set_resources(&["/platforms/1/mentors/5"]))
            .then(&[]);
        policy(&[created()])
            .when(update(UpdatePolicy {
                name: Some("Mentor 5 viewers".into()),
                role_id: Some(3),
                ..Default::default()
            }))
            .then(&[]);
    }

    #[test]
    fn update_keeps_resources_in_the_policys_platform() {
        policy(&[created()])
            .when(set_resources(&["/platforms/2/mentors/5/"]))
            .then_invalid("resources");
        policy(&[created()])
            .when(set_resources(&["/platforms/1/mentors/../"]))
            .then_invalid("resources");
        policy(&[created()])
            .when(update(UpdatePolicy {
                name: Some("".into()),
                ..Default::default()
            }))
            .then_invalid("name");
    }

    #[test]
    fn update_and_delete_need_a_live_policy_of_the_callers_platform() {
        let deleted = [created(), E::PolicyDeleted { deleted_at: t(1) }];
        for events in [&[][..], &deleted[..]] {
            policy(events)
                .when(update(UpdatePolicy::default()))
                .then_err(RejectionKind::NotFound);
            policy(events)
                .when(delete("acme"))
                .then_err(RejectionKind::NotFound);
        }
        policy(&[created()])
            .when(C::Update {
                platform: "other".into(),
                changes: UpdatePolicy::default(),
                now: t(5),
            })
            .then_err(RejectionKind::NotFound);
        policy(&[created()])
            .when(delete("other"))
            .then_err(RejectionKind::NotFound);
    }

    #[test]
    fn internal_policies_refuse_every_tenant_command() {
        let e = policy(&[internal()])
            .when(update(UpdatePolicy {
                users_to_add: vec![9],
                ..Default::default()
            }))
            .then_err(RejectionKind::Forbidden);
        assert_eq!(
            e.to_string(),
            "internal policies cannot be changed or deleted"
        );
        policy(&[internal()])
            .when(update(UpdatePolicy::default()))
            .then_err(RejectionKind::Forbidden);
        policy(&[internal()])
            .when(delete("acme"))
            .then_err(RejectionKind::Forbidden);
    }

    #[test]
    fn delete_marks_the_policy_deleted() {
        let state = policy(&[created()])
            .when(delete("acme"))
            .then(&[E::PolicyDeleted { deleted_at: t(6) }]);
        assert!(state.exists());
        assert!(state.live().is_none());
    }

    #[test]
    fn events_that_do_not_fit_are_ignored() {
        let state = fold(&[
            E::PolicyUsersAdded {
                user_ids: vec![1],
                added_at: t(0),
            },
            E::PolicyDeleted { deleted_at: t(1) },
        ]);
        assert!(!state.exists());
    }
}
