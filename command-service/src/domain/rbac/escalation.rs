//! What a caller may grant, and what must never be taken away: the rules
//! that keep a narrow management permission from becoming tenant admin, and
//! a tenant from locking itself out.
//!
//! Escalation prevention, as Kubernetes RBAC does it (its `escalate` and
//! `bind` rules), over this service's model:
//! - **Defining a role** (create, or change its actions): the caller must
//!   hold every action and every data action of the role on the whole
//!   platform, `/platforms/{pk}/`, the scope a role lives in (as a Kubernetes
//!   Role lives in its namespace).
//! - **Binding a role** (a policy's role or resources, adding users or groups
//!   to a policy, mentor access, adding members to a group that policies
//!   bind): the caller must hold the role's actions and data actions on each
//!   of the policy's resources.
//! - **Acting for another user** (an API key for them): the caller must hold
//!   everything that user holds, grant by grant.
//!
//! "Hold" means: one grant that covers the resource has one pattern (of the
//! same kind: actions never stand for data actions) that covers the pattern
//! asked for ([`ActionPattern::covers`]). Tenant admins hold `Ibl.*` on the
//! platform, and so may do all of it.
//!
//! No lockout: a platform keeps at least one active tenant admin. A change
//! that would take the last one's admin grant away (deactivating them,
//! removing them from the group or policy that makes them admin, changing
//! that policy's role) is refused.
//!
//! Pure: the caller's grants and the admins' grants come from the check
//! index, looked up before the rule is asked.

use ibl_events::rbac::{ActionKind, ActionPattern, Grant, ResourcePath};

use crate::domain::{Rejection, RejectionKind};

/// The permissions a role would grant: its parsed actions and data actions.
#[derive(Debug, Clone, Copy)]
pub struct Permissions<'a> {
    pub actions: &'a [ActionPattern],
    pub data_actions: &'a [ActionPattern],
}

impl<'a> Permissions<'a> {
    /// The permissions a grant carries.
    pub fn of(grant: &'a Grant) -> Self {
        Permissions {
            actions: &grant.actions,
            data_actions: &grant.data_actions,
        }
    }
}

/// A refused grant: the first pattern the caller does not hold, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "You may not grant {what} {pattern:?} on {resource}: you do not hold it there. \
     Only what you hold can be given."
)]
pub struct Escalation {
    pub pattern: String,
    pub what: &'static str,
    pub resource: String,
}

impl Rejection for Escalation {
    fn kind(&self) -> RejectionKind {
        RejectionKind::Forbidden
    }
}

/// A change that would leave the platform without an active tenant admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "This would leave the platform without an active tenant admin; \
     make another user a tenant admin first."
)]
pub struct Lockout;

impl Rejection for Lockout {
    fn kind(&self) -> RejectionKind {
        RejectionKind::Conflict
    }
}

fn patterns(grant: &Grant, kind: ActionKind) -> &[ActionPattern] {
    match kind {
        ActionKind::Action => &grant.actions,
        ActionKind::DataAction => &grant.data_actions,
    }
}

/// Whether `grants` hold `pattern` (of `kind`) on `resource`.
pub fn holds(
    grants: &[Grant],
    pattern: &ActionPattern,
    kind: ActionKind,
    resource: &ResourcePath,
) -> bool {
    grants
        .iter()
        .any(|g| g.covers(resource) && patterns(g, kind).iter().any(|held| held.covers(pattern)))
}

/// The bind rule: `grants` may give `role` on every one of `resources`.
pub fn may_bind(
    grants: &[Grant],
    role: Permissions<'_>,
    resources: &[ResourcePath],
) -> Result<(), Escalation> {
    for resource in resources {
        for (kind, list, what) in [
            (ActionKind::Action, role.actions, "the action"),
            (ActionKind::DataAction, role.data_actions, "the data action"),
        ] {
            if let Some(missing) = list.iter().find(|p| !holds(grants, p, kind, resource)) {
                return Err(Escalation {
                    pattern: missing.as_str().to_owned(),
                    what,
                    resource: resource.as_str().to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// The escalate rule: `grants` may define a role with these permissions on
/// platform `platform_pk`.
pub fn may_define_role(
    grants: &[Grant],
    role: Permissions<'_>,
    platform_pk: u64,
) -> Result<(), Escalation> {
    may_bind(grants, role, &[ResourcePath::platform_root(platform_pk)])
}

/// The rule for acting as another user: `grants` hold everything `theirs`
/// hold.
pub fn may_act_for(grants: &[Grant], theirs: &[Grant]) -> Result<(), Escalation> {
    theirs
        .iter()
        .try_for_each(|g| may_bind(grants, Permissions::of(g), &g.resources))
}

/// `Ibl.*`: what a tenant admin holds on the platform.
fn admin_pattern() -> ActionPattern {
    ActionPattern::parse("Ibl.*").expect("a valid pattern")
}

/// Whether a role of these actions makes whom it is bound to on the
/// platform a tenant admin.
pub fn makes_admin(actions: &[ActionPattern]) -> bool {
    let admin = admin_pattern();
    actions.iter().any(|p| p.covers(&admin))
}

/// Whether `grants` make their user a tenant admin of platform
/// `platform_pk`: `Ibl.*` held on `/platforms/{pk}/`.
pub fn is_tenant_admin(grants: &[Grant], platform_pk: u64) -> bool {
    holds(
        grants,
        &admin_pattern(),
        ActionKind::Action,
        &ResourcePath::platform_root(platform_pk),
    )
}

/// The no-lockout rule: `admins` are the platform's active tenant admins
/// with their grants; `lost(user, grant)` says which grants a change takes
/// away. Accepted when some admin stays admin with what is left (or when
/// there was none to begin with: nothing is made worse).
pub fn keeps_an_admin(
    admins: &[(u64, &[Grant])],
    platform_pk: u64,
    lost: impl Fn(u64, &Grant) -> bool,
) -> Result<(), Lockout> {
    if admins.is_empty() {
        return Ok(());
    }
    let remains = admins.iter().any(|(user, grants)| {
        let kept: Vec<Grant> = grants.iter().filter(|g| !lost(*user, g)).cloned().collect();
        is_tenant_admin(&kept, platform_pk)
    });
    if remains {
        Ok(())
    } else {
        Err(Lockout)
    }
}

#[cfg(test)]
mod tests {
    //! given: what the caller holds (grants); when: what they grant; then:
    //! accepted, or the missing pattern and where.

    use std::sync::Arc;

    use ibl_events::rbac::Via;

    use super::*;

    fn patterns(list: &[&str]) -> Arc<[ActionPattern]> {
        list.iter()
            .map(|s| ActionPattern::parse(s).unwrap())
            .collect()
    }

    fn paths(list: &[&str]) -> Vec<ResourcePath> {
        list.iter()
            .map(|s| ResourcePath::parse(s).unwrap())
            .collect()
    }

    /// A grant of policy `id` on `resources` with a role of `actions` and
    /// `data_actions`.
    fn grant(id: u64, resources: &[&str], actions: &[&str], data_actions: &[&str]) -> Grant {
        Grant {
            policy_id: id,
            role_id: id,
            via: Via::Direct,
            resources: paths(resources).into(),
            actions: patterns(actions),
            data_actions: patterns(data_actions),
        }
    }

    struct Given(Vec<Grant>);

    fn given(grants: Vec<Grant>) -> Given {
        Given(grants)
    }

    struct When<'a> {
        given: &'a Given,
        result: Result<(), Escalation>,
    }

    impl Given {
        fn define_role(&self, actions: &[&str], data_actions: &[&str]) -> When<'_> {
            let (a, d) = (patterns(actions), patterns(data_actions));
            let role = Permissions {
                actions: &a,
                data_actions: &d,
            };
            When {
                given: self,
                result: may_define_role(&self.0, role, 1),
            }
        }

        fn bind(&self, actions: &[&str], data_actions: &[&str], on: &[&str]) -> When<'_> {
            let (a, d) = (patterns(actions), patterns(data_actions));
            let role = Permissions {
                actions: &a,
                data_actions: &d,
            };
            When {
                given: self,
                result: may_bind(&self.0, role, &paths(on)),
            }
        }

        fn act_for(&self, theirs: Vec<Grant>) -> When<'_> {
            When {
                given: self,
                result: may_act_for(&self.0, &theirs),
            }
        }
    }

    impl When<'_> {
        fn then_allowed(self) {
            assert_eq!(self.result, Ok(()), "given {:?}", self.given.0);
        }

        fn then_missing(self, pattern: &str, resource: &str) {
            let e = self.result.expect_err("should be refused");
            assert_eq!(
                (e.pattern.as_str(), e.resource.as_str()),
                (pattern, resource)
            );
            assert!(e.to_string().contains(pattern), "{e}");
        }
    }

    fn tenant_admin() -> Grant {
        grant(1, &["/platforms/1/"], &["Ibl.*"], &["Ibl.*"])
    }

    fn role_manager() -> Grant {
        grant(2, &["/platforms/1/roles/"], &["Ibl.Core/Roles/*"], &[])
    }

    #[test]
    fn a_role_manager_may_not_define_a_role_beyond_what_they_hold() {
        given(vec![role_manager()])
            .define_role(&["Ibl.*"], &[])
            .then_missing("Ibl.*", "/platforms/1/");
        // Holding role management on roles/ is not holding it on the platform.
        given(vec![role_manager()])
            .define_role(&["Ibl.Core/Roles/read"], &[])
            .then_missing("Ibl.Core/Roles/read", "/platforms/1/");
    }

    #[test]
    fn a_tenant_admin_may_define_any_ibl_role() {
        given(vec![tenant_admin()])
            .define_role(
                &["Ibl.*", "Ibl.Mentor/*", "Ibl.Core/Roles/read"],
                &["Ibl.Mentor/Settings/*/read"],
            )
            .then_allowed();
        given(vec![tenant_admin()])
            .define_role(&["*"], &[])
            .then_missing("*", "/platforms/1/");
    }

    #[test]
    fn what_is_held_on_the_platform_may_be_put_in_a_role() {
        let mentor_admin = grant(3, &["/platforms/1/"], &["Ibl.Mentor/*"], &[]);
        given(vec![mentor_admin.clone()])
            .define_role(&["Ibl.Mentor/Mentors/read", "Ibl.Mentor/Chat/*"], &[])
            .then_allowed();
        given(vec![mentor_admin.clone()])
            .define_role(&["Ibl.Mentor/*", "Ibl.Core/Users/read"], &[])
            .then_missing("Ibl.Core/Users/read", "/platforms/1/");
        // Actions never stand for data actions.
        given(vec![mentor_admin])
            .define_role(&[], &["Ibl.Mentor/Settings/name/read"])
            .then_missing("Ibl.Mentor/Settings/name/read", "/platforms/1/");
    }

    #[test]
    fn binding_needs_the_role_on_every_resource_of_the_policy() {
        let mentor5 = grant(4, &["/platforms/1/mentors/5/"], &["Ibl.Mentor/*"], &[]);
        given(vec![mentor5.clone()])
            .bind(
                &["Ibl.Mentor/Mentors/read"],
                &[],
                &["/platforms/1/mentors/5/"],
            )
            .then_allowed();
        given(vec![mentor5.clone()])
            .bind(
                &["Ibl.Mentor/Mentors/read"],
                &[],
                &["/platforms/1/mentors/5/documents/"],
            )
            .then_allowed();
        given(vec![mentor5.clone()])
            .bind(
                &["Ibl.Mentor/Mentors/read"],
                &[],
                &["/platforms/1/mentors/5/", "/platforms/1/mentors/6/"],
            )
            .then_missing("Ibl.Mentor/Mentors/read", "/platforms/1/mentors/6/");
        given(vec![mentor5])
            .bind(&["Ibl.*"], &[], &["/platforms/1/"])
            .then_missing("Ibl.*", "/platforms/1/");
    }

    #[test]
    fn a_policy_manager_may_not_bind_tenant_admin() {
        let policy_manager = grant(
            5,
            &["/platforms/1/policies/"],
            &["Ibl.Core/Policies/*"],
            &[],
        );
        given(vec![policy_manager.clone()])
            .bind(&["Ibl.*"], &["Ibl.*"], &["/platforms/1/"])
            .then_missing("Ibl.*", "/platforms/1/");
        // Nor mentor editor access on a mentor.
        given(vec![policy_manager])
            .bind(
                &["Ibl.Mentor/Mentors/write"],
                &["Ibl.Mentor/Settings/*/write"],
                &["/platforms/1/mentors/9/"],
            )
            .then_missing("Ibl.Mentor/Mentors/write", "/platforms/1/mentors/9/");
    }

    #[test]
    fn data_actions_are_checked_against_held_data_actions() {
        let viewer = grant(
            6,
            &["/platforms/1/mentors/5/"],
            &["Ibl.Mentor/*"],
            &["Ibl.Mentor/Settings/*/read"],
        );
        given(vec![viewer.clone()])
            .bind(
                &["Ibl.Mentor/Chat/action"],
                &["Ibl.Mentor/Settings/*/read"],
                &["/platforms/1/mentors/5/"],
            )
            .then_allowed();
        given(vec![viewer])
            .bind(
                &[],
                &["Ibl.Mentor/Settings/*/write"],
                &["/platforms/1/mentors/5/"],
            )
            .then_missing("Ibl.Mentor/Settings/*/write", "/platforms/1/mentors/5/");
    }

    #[test]
    fn the_union_of_grants_counts_pattern_by_pattern() {
        let a = grant(7, &["/platforms/1/"], &["Ibl.Mentor/*"], &[]);
        let b = grant(8, &["/platforms/1/"], &["Ibl.Core/Users/*"], &[]);
        given(vec![a, b])
            .define_role(&["Ibl.Mentor/Chat/action", "Ibl.Core/Users/read"], &[])
            .then_allowed();
    }

    #[test]
    fn acting_for_another_user_needs_everything_they_hold() {
        let theirs = vec![
            grant(9, &["/platforms/1/mentors/5/"], &["Ibl.Mentor/*"], &[]),
            grant(10, &["/platforms/1/users/"], &["Ibl.Core/Users/read"], &[]),
        ];
        given(vec![tenant_admin()])
            .act_for(theirs.clone())
            .then_allowed();
        given(vec![grant(11, &["/platforms/1/"], &["Ibl.Mentor/*"], &[])])
            .act_for(theirs)
            .then_missing("Ibl.Core/Users/read", "/platforms/1/users/");
        given(vec![role_manager()])
            .act_for(vec![tenant_admin()])
            .then_missing("Ibl.*", "/platforms/1/");
    }

    #[test]
    fn tenant_admins_hold_ibl_star_on_the_platform() {
        assert!(is_tenant_admin(&[tenant_admin()], 1));
        assert!(!is_tenant_admin(&[tenant_admin()], 2));
        assert!(!is_tenant_admin(
            &[grant(1, &["/platforms/1/mentors/"], &["Ibl.*"], &[])],
            1
        ));
        assert!(!is_tenant_admin(&[role_manager()], 1));
    }

    #[test]
    fn the_last_admin_keeps_their_admin_grant() {
        let alice = vec![tenant_admin()];
        let bob = vec![grant(12, &["/platforms/1/"], &["Ibl.*"], &[])];
        let one: Vec<(u64, &[Grant])> = vec![(1, &alice)];
        let two: Vec<(u64, &[Grant])> = vec![(1, &alice), (2, &bob)];
        // Deactivating (every grant of the user goes).
        assert_eq!(keeps_an_admin(&one, 1, |u, _| u == 1), Err(Lockout));
        assert_eq!(keeps_an_admin(&two, 1, |u, _| u == 1), Ok(()));
        // A policy that makes nobody else admin may go.
        assert_eq!(keeps_an_admin(&one, 1, |_, g| g.policy_id == 99), Ok(()));
        // The policy that makes the only admin admin may not.
        assert_eq!(
            keeps_an_admin(&one, 1, |_, g| g.policy_id == 1),
            Err(Lockout)
        );
        // An admin through two policies keeps it when one goes.
        let both = vec![tenant_admin(), grant(13, &["/platforms/1/"], &["*"], &[])];
        let twice: Vec<(u64, &[Grant])> = vec![(1, &both)];
        assert_eq!(keeps_an_admin(&twice, 1, |_, g| g.policy_id == 1), Ok(()));
        // No admin to begin with: nothing is made worse.
        assert_eq!(keeps_an_admin(&[], 1, |_, _| true), Ok(()));
    }
}
