//! What every platform starts with: five built-in roles, two built-in groups
//! and one internal policy that makes the platform's admin a tenant admin.
//!
//! | entity | name | contents | flags |
//! |---|---|---|---|
//! | role | Tenant Admin | actions `Ibl.*`, data actions `Ibl.*` | built-in |
//! | role | Students | list and read mentors, chat | built-in |
//! | role | Mentor Viewer | read a mentor, its settings and documents, chat; read every setting field | built-in |
//! | role | Mentor Editor | the viewer's actions, plus write the mentor and its settings, manage its documents; read and write every setting field | built-in |
//! | role | Mentor Chat | chat only | built-in |
//! | group | Tenant Admins | the admin user | built-in |
//! | group | Students | nobody | built-in |
//! | policy | Tenant Admins | Tenant Admin on `/platforms/{pk}/` for the Tenant Admins group and the admin user | internal |
//!
//! Decisions (API.md calls only policies internal):
//! - Built-in roles and groups are visible to tenants (`is_internal: false`,
//!   `is_builtin: true`): tenants need their ids to write policies and to
//!   manage membership. Their own fields cannot change and they cannot be
//!   deleted; the built-in groups' members can change — adding a user to
//!   Tenant Admins makes them a tenant admin.
//! - The policy is internal (`is_internal: true`): never listed, never
//!   changed by tenants. It names the admin user directly as well as the
//!   group, so a platform can never lock its first admin out by emptying
//!   Tenant Admins.
//! - Viewer includes chat: viewing a mentor means being able to use it; the
//!   Chat role is for users who may talk to a mentor without seeing its
//!   configuration. Editor does not include deleting the mentor.
//! - Students is not bound by any policy at creation: a platform decides
//!   where students get it (for instance the whole platform, or some
//!   mentors). Only Tenant Admin is bound.
//!
//! Everything here is data for the caller to append: ids come in (see
//! [`BuiltinIds`]), nothing is allocated or read.

use chrono::{DateTime, Utc};
use ibl_events::rbac::{
    group_stream, policy_stream, role_stream, GroupEvent, PolicyEvent, ResourcePath, RoleEvent,
};

/// A built-in role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinRole {
    TenantAdmin,
    Students,
    MentorViewer,
    MentorEditor,
    MentorChat,
}

impl BuiltinRole {
    /// Every built-in role, in the order their ids are allocated.
    pub const ALL: [BuiltinRole; 5] = [
        BuiltinRole::TenantAdmin,
        BuiltinRole::Students,
        BuiltinRole::MentorViewer,
        BuiltinRole::MentorEditor,
        BuiltinRole::MentorChat,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BuiltinRole::TenantAdmin => "Tenant Admin",
            BuiltinRole::Students => "Students",
            BuiltinRole::MentorViewer => "Mentor Viewer",
            BuiltinRole::MentorEditor => "Mentor Editor",
            BuiltinRole::MentorChat => "Mentor Chat",
        }
    }

    pub fn actions(self) -> &'static [&'static str] {
        match self {
            BuiltinRole::TenantAdmin => &["Ibl.*"],
            BuiltinRole::Students => &[
                "Ibl.Mentor/Mentors/list",
                "Ibl.Mentor/Mentors/read",
                "Ibl.Mentor/Chat/action",
            ],
            BuiltinRole::MentorViewer => &[
                "Ibl.Mentor/Mentors/read",
                "Ibl.Mentor/Chat/action",
                "Ibl.Mentor/Settings/read",
                "Ibl.Mentor/Documents/list",
                "Ibl.Mentor/Documents/read",
            ],
            BuiltinRole::MentorEditor => &[
                "Ibl.Mentor/Mentors/read",
                "Ibl.Mentor/Mentors/write",
                "Ibl.Mentor/Chat/action",
                "Ibl.Mentor/Settings/read",
                "Ibl.Mentor/Settings/write",
                "Ibl.Mentor/Documents/*",
            ],
            BuiltinRole::MentorChat => &["Ibl.Mentor/Chat/action"],
        }
    }

    pub fn data_actions(self) -> &'static [&'static str] {
        match self {
            BuiltinRole::TenantAdmin => &["Ibl.*"],
            BuiltinRole::Students | BuiltinRole::MentorChat => &[],
            BuiltinRole::MentorViewer => &["Ibl.Mentor/Settings/*/read"],
            BuiltinRole::MentorEditor => {
                &["Ibl.Mentor/Settings/*/read", "Ibl.Mentor/Settings/*/write"]
            }
        }
    }

    /// The role of a mentor-access request (`viewer`, `editor` or `chat`).
    pub fn for_mentor_access(role: &str) -> Option<Self> {
        match role {
            "viewer" => Some(BuiltinRole::MentorViewer),
            "editor" => Some(BuiltinRole::MentorEditor),
            "chat" => Some(BuiltinRole::MentorChat),
            _ => None,
        }
    }

    /// The built-in role of this name (as created; tenants cannot rename them).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// A built-in group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinGroup {
    TenantAdmins,
    Students,
}

impl BuiltinGroup {
    /// Every built-in group, in the order their ids are allocated.
    pub const ALL: [BuiltinGroup; 2] = [BuiltinGroup::TenantAdmins, BuiltinGroup::Students];

    pub fn name(self) -> &'static str {
        match self {
            BuiltinGroup::TenantAdmins => "Tenant Admins",
            BuiltinGroup::Students => "Students",
        }
    }

    /// `{platform_key}-tenant-admins`, `{platform_key}-students`: unique
    /// across platforms too.
    pub fn unique_id(self, platform_key: &str) -> String {
        match self {
            BuiltinGroup::TenantAdmins => format!("{platform_key}-tenant-admins"),
            BuiltinGroup::Students => format!("{platform_key}-students"),
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            BuiltinGroup::TenantAdmins => "Administrators of this platform.",
            BuiltinGroup::Students => "Learners of this platform.",
        }
    }
}

/// The name of the internal tenant-admin policy.
pub const TENANT_ADMIN_POLICY_NAME: &str = "Tenant Admins";

/// The ids the caller allocated: roles get `first_role_id` and the four
/// after it (in [`BuiltinRole::ALL`] order), groups `first_group_id` and the
/// one after it (in [`BuiltinGroup::ALL`] order), the policy `policy_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinIds {
    pub first_role_id: u64,
    pub first_group_id: u64,
    pub policy_id: u64,
}

impl BuiltinIds {
    pub fn role(&self, role: BuiltinRole) -> u64 {
        let index = BuiltinRole::ALL
            .iter()
            .position(|r| *r == role)
            .unwrap_or(0);
        self.first_role_id + index as u64
    }

    pub fn group(&self, group: BuiltinGroup) -> u64 {
        let index = BuiltinGroup::ALL
            .iter()
            .position(|g| *g == group)
            .unwrap_or(0);
        self.first_group_id + index as u64
    }
}

/// The streams to create, each with its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Builtins {
    pub roles: Vec<(String, Vec<RoleEvent>)>,
    pub groups: Vec<(String, Vec<GroupEvent>)>,
    pub policies: Vec<(String, Vec<PolicyEvent>)>,
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The built-in roles, groups and policy of a new platform.
pub fn builtins(
    platform_key: &str,
    platform_pk: u64,
    admin_user_id: u64,
    ids: BuiltinIds,
    now: DateTime<Utc>,
) -> Builtins {
    let roles = BuiltinRole::ALL
        .into_iter()
        .map(|role| {
            let id = ids.role(role);
            let created = RoleEvent::RoleCreated {
                id,
                platform: platform_key.to_owned(),
                name: role.name().to_owned(),
                actions: strings(role.actions()),
                data_actions: strings(role.data_actions()),
                is_internal: false,
                is_builtin: true,
                created_at: now,
            };
            (role_stream(id), vec![created])
        })
        .collect();
    let groups = BuiltinGroup::ALL
        .into_iter()
        .map(|group| {
            let id = ids.group(group);
            let mut events = vec![GroupEvent::GroupCreated {
                id,
                platform: platform_key.to_owned(),
                unique_id: group.unique_id(platform_key),
                name: group.name().to_owned(),
                description: group.description().to_owned(),
                owner_id: admin_user_id,
                is_internal: false,
                is_builtin: true,
                created_at: now,
            }];
            if group == BuiltinGroup::TenantAdmins {
                events.push(GroupEvent::GroupMembersAdded {
                    user_ids: vec![admin_user_id],
                    added_at: now,
                });
            }
            (group_stream(id), events)
        })
        .collect();
    let policy = PolicyEvent::PolicyCreated {
        id: ids.policy_id,
        platform: platform_key.to_owned(),
        platform_pk,
        name: TENANT_ADMIN_POLICY_NAME.to_owned(),
        role_id: ids.role(BuiltinRole::TenantAdmin),
        resources: vec![ResourcePath::platform_root(platform_pk).to_string()],
        user_ids: vec![admin_user_id],
        group_ids: vec![ids.group(BuiltinGroup::TenantAdmins)],
        is_internal: true,
        created_at: now,
    };
    Builtins {
        roles,
        groups,
        policies: vec![(policy_stream(ids.policy_id), vec![policy])],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rbac::group::{self, GroupAggregate, GroupCommand, UpdateGroup};
    use crate::domain::rbac::policy::{self, PolicyAggregate, PolicyCommand, UpdatePolicy};
    use crate::domain::rbac::role::{self, RoleAggregate, RoleCommand, UpdateRole};
    use crate::domain::rbac::validate_actions;
    use crate::domain::testing::{given, t};
    use crate::domain::RejectionKind;
    use ibl_events::rbac::{check, ActionPattern, Grant, Via};

    const IDS: BuiltinIds = BuiltinIds {
        first_role_id: 10,
        first_group_id: 20,
        policy_id: 30,
    };

    fn acme() -> Builtins {
        builtins("acme", 1, 7, IDS, t(0))
    }

    fn patterns(list: &[&str]) -> Vec<ActionPattern> {
        list.iter()
            .map(|s| ActionPattern::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn five_roles_two_groups_one_policy_with_the_given_ids() {
        let b = acme();
        let role_streams: Vec<_> = b.roles.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            role_streams,
            ["role-10", "role-11", "role-12", "role-13", "role-14"]
        );
        let group_streams: Vec<_> = b.groups.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(group_streams, ["group-20", "group-21"]);
        assert_eq!(b.policies.len(), 1);
        assert_eq!(b.policies[0].0, "policy-30");
        let names: Vec<_> = b
            .roles
            .iter()
            .map(|(_, events)| role::fold(events).live().unwrap().name.clone())
            .collect();
        assert_eq!(
            names,
            [
                "Tenant Admin",
                "Students",
                "Mentor Viewer",
                "Mentor Editor",
                "Mentor Chat"
            ]
        );
    }

    #[test]
    fn built_in_roles_are_visible_but_protected_and_their_patterns_parse() {
        for (_, events) in acme().roles {
            let state = role::fold(&events);
            let r = state.live_in("acme").unwrap();
            assert!(r.is_builtin && !r.is_internal, "{}", r.name);
            assert_eq!(
                validate_actions("actions", r.actions.clone()).unwrap(),
                r.actions
            );
            assert_eq!(
                validate_actions("data_actions", r.data_actions.clone()).unwrap(),
                r.data_actions
            );
            given::<RoleAggregate>(&events)
                .when(RoleCommand::Update {
                    platform: "acme".into(),
                    changes: UpdateRole {
                        actions: Some(vec!["*".into()]),
                        ..Default::default()
                    },
                    now: t(1),
                })
                .then_err(RejectionKind::Forbidden);
            given::<RoleAggregate>(&events)
                .when(RoleCommand::Delete {
                    platform: "acme".into(),
                    now: t(1),
                })
                .then_err(RejectionKind::Forbidden);
        }
        let admin = BuiltinRole::TenantAdmin;
        assert_eq!(admin.actions(), ["Ibl.*"]);
        assert_eq!(admin.data_actions(), ["Ibl.*"]);
    }

    #[test]
    fn tenant_admins_has_the_admin_and_students_nobody() {
        let b = acme();
        let admins = group::fold(&b.groups[0].1);
        let admins = admins.live_in("acme").unwrap();
        assert_eq!(admins.name, "Tenant Admins");
        assert_eq!(admins.unique_id, "acme-tenant-admins");
        assert_eq!(admins.members, [7].into());
        assert_eq!(admins.owner_id, 7);
        assert!(admins.is_builtin && !admins.is_internal);
        let students = group::fold(&b.groups[1].1);
        let students = students.live_in("acme").unwrap();
        assert_eq!(students.name, "Students");
        assert!(students.members.is_empty());
    }

    #[test]
    fn built_in_groups_take_members_but_keep_their_name() {
        let events = acme().groups[0].1.clone();
        given::<GroupAggregate>(&events)
            .when(GroupCommand::Update {
                platform: "acme".into(),
                changes: UpdateGroup {
                    users_to_add: vec![8],
                    ..Default::default()
                },
                now: t(1),
            })
            .then(&[GroupEvent::GroupMembersAdded {
                user_ids: vec![8],
                added_at: t(1),
            }]);
        given::<GroupAggregate>(&events)
            .when(GroupCommand::Update {
                platform: "acme".into(),
                changes: UpdateGroup {
                    name: Some("Admins".into()),
                    ..Default::default()
                },
                now: t(1),
            })
            .then_err(RejectionKind::Forbidden);
        given::<GroupAggregate>(&events)
            .when(GroupCommand::Delete {
                platform: "acme".into(),
                now: t(1),
            })
            .then_err(RejectionKind::Forbidden);
    }

    #[test]
    fn the_internal_policy_makes_the_admin_a_tenant_admin_on_the_platform() {
        let b = acme();
        let state = policy::fold(&b.policies[0].1);
        let p = state.live_in("acme").unwrap();
        assert!(p.is_internal);
        assert_eq!(p.role_id, 10);
        assert_eq!(p.resources, ["/platforms/1/"]);
        assert_eq!(p.users, [7].into());
        assert_eq!(p.groups, [20].into());
        given::<PolicyAggregate>(&b.policies[0].1)
            .when(PolicyCommand::Update {
                platform: "acme".into(),
                changes: UpdatePolicy {
                    users_to_remove: vec![7],
                    ..Default::default()
                },
                now: t(1),
            })
            .then_err(RejectionKind::Forbidden);

        let grant = |via| Grant {
            policy_id: p.id,
            role_id: p.role_id,
            via,
            resources: p.resource_paths().into(),
            actions: patterns(BuiltinRole::TenantAdmin.actions()).into(),
            data_actions: patterns(BuiltinRole::TenantAdmin.data_actions()).into(),
        };
        for resource in [
            "/platforms/1/",
            "/platforms/1/mentors/",
            "/platforms/1/mentors/5/",
            "/platforms/1/policies/",
            "/platforms/1/mentors/5/settings/display_name/",
        ] {
            let answer = check(&[grant(Via::Direct)], &resource.parse().unwrap());
            assert!(!answer.is_empty(), "{resource}");
            assert!(answer.values().all(|d| d.allowed), "{resource}: {answer:?}");
        }
        let elsewhere = check(&[grant(Via::Group(20))], &"/platforms/2/".parse().unwrap());
        assert!(elsewhere.values().all(|d| !d.allowed));
    }

    #[test]
    fn mentor_roles_grant_what_their_names_say() {
        let mentor = "/platforms/1/mentors/5/".parse().unwrap();
        let field = "/platforms/1/mentors/5/settings/display_name/"
            .parse()
            .unwrap();
        let answer = |role: BuiltinRole, resource| {
            let grant = Grant {
                policy_id: 1,
                role_id: 1,
                via: Via::Direct,
                resources: vec!["/platforms/1/mentors/5/".parse().unwrap()].into(),
                actions: patterns(role.actions()).into(),
                data_actions: patterns(role.data_actions()).into(),
            };
            check(&[grant], resource)
                .into_iter()
                .filter(|(_, d)| d.allowed)
                .map(|(op, _)| op)
                .collect::<Vec<_>>()
        };
        assert_eq!(answer(BuiltinRole::MentorViewer, &mentor), ["chat", "read"]);
        assert_eq!(
            answer(BuiltinRole::MentorEditor, &mentor),
            ["chat", "read", "write"]
        );
        assert_eq!(answer(BuiltinRole::MentorChat, &mentor), ["chat"]);
        assert_eq!(answer(BuiltinRole::MentorViewer, &field), ["read"]);
        assert_eq!(answer(BuiltinRole::MentorEditor, &field), ["read", "write"]);
        assert!(answer(BuiltinRole::MentorChat, &field).is_empty());
    }

    #[test]
    fn mentor_access_roles_and_names_map_to_built_ins() {
        assert_eq!(
            BuiltinRole::for_mentor_access("viewer"),
            Some(BuiltinRole::MentorViewer)
        );
        assert_eq!(
            BuiltinRole::for_mentor_access("editor"),
            Some(BuiltinRole::MentorEditor)
        );
        assert_eq!(
            BuiltinRole::for_mentor_access("chat"),
            Some(BuiltinRole::MentorChat)
        );
        assert_eq!(BuiltinRole::for_mentor_access("owner"), None);
        for role in BuiltinRole::ALL {
            assert_eq!(BuiltinRole::from_name(role.name()), Some(role));
        }
        assert_eq!(IDS.role(BuiltinRole::MentorChat), 14);
        assert_eq!(IDS.group(BuiltinGroup::Students), 21);
    }
}
