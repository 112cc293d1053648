//! The caller's authority over what a write grants: looks up the grants the
//! rules of [`crate::domain::rbac::escalation`] judge (the caller's, a
//! group's bindings, the platform's admins) in the check index and asks the
//! rules. A refused escalation is 403 naming what is missing; a lockout 409.

use std::sync::Arc;

use ibl_edge::extract::Principal;
use ibl_edge::{ApiError, ReadState};
use ibl_events::rbac::{classify, evaluate, ActionPattern, Grant, Operation, ResourcePath};

use crate::domain::rbac::escalation::{self, Permissions};
use crate::domain::rbac::{validate_actions, validate_resources};
use crate::http::rejected;

/// The patterns of a role as written (entries that do not parse grant
/// nothing, so they are not asked about).
pub fn parse_patterns(list: &[String]) -> Vec<ActionPattern> {
    list.iter()
        .filter_map(|a| ActionPattern::parse(a.trim()).ok())
        .collect()
}

fn parse_paths(list: &[String]) -> Vec<ResourcePath> {
    list.iter()
        .filter_map(|r| ResourcePath::parse_lenient(r.trim()).ok())
        .collect()
}

/// What the caller (the key's owner) holds on its platform.
pub fn caller_grants(read: &ReadState, principal: &Principal) -> Arc<Vec<Grant>> {
    read.rbac
        .grants(&principal.platform.key, principal.key.user_id)
}

/// A field error of the domain's validation, as the write would answer it.
fn invalid(e: crate::domain::FieldError) -> ApiError {
    ApiError::field(e.field, e.message)
}

/// The escalate rule: the caller may define a role with these actions. A
/// body the domain would refuse is refused first (400).
pub fn may_define_role(
    read: &ReadState,
    principal: &Principal,
    actions: &[String],
    data_actions: &[String],
) -> Result<(), ApiError> {
    validate_actions("actions", actions.to_vec()).map_err(invalid)?;
    validate_actions("data_actions", data_actions.to_vec()).map_err(invalid)?;
    let (actions, data_actions) = (parse_patterns(actions), parse_patterns(data_actions));
    let role = Permissions {
        actions: &actions,
        data_actions: &data_actions,
    };
    escalation::may_define_role(&caller_grants(read, principal), role, principal.platform.id)
        .map_err(rejected)
}

/// The bind rule: the caller may give the role of these actions on these
/// resources. Resources the domain would refuse are refused first (400).
pub fn may_bind(
    read: &ReadState,
    principal: &Principal,
    actions: &[String],
    data_actions: &[String],
    resources: &[String],
) -> Result<(), ApiError> {
    validate_resources("resources", resources.to_vec(), principal.platform.id).map_err(invalid)?;
    let (actions, data_actions) = (parse_patterns(actions), parse_patterns(data_actions));
    let role = Permissions {
        actions: &actions,
        data_actions: &data_actions,
    };
    escalation::may_bind(
        &caller_grants(read, principal),
        role,
        &parse_paths(resources),
    )
    .map_err(rejected)
}

/// The bind rule for new members of a group: the caller must hold what
/// every policy binding the group gives on that policy's resources.
pub fn may_add_members(
    read: &ReadState,
    principal: &Principal,
    platform: &str,
    group_id: u64,
) -> Result<(), ApiError> {
    let mine = caller_grants(read, principal);
    read.rbac
        .group_bindings(platform, group_id)
        .iter()
        .try_for_each(|g| escalation::may_bind(&mine, Permissions::of(g), &g.resources))
        .map_err(rejected)
}

/// The caller may act for user `user_id` (make or delete their API key):
/// they may manage that user (`Ibl.Core/Users/write` on it) and hold
/// everything that user holds (no impersonation upward).
pub fn may_act_for(read: &ReadState, principal: &Principal, user_id: u64) -> Result<(), ApiError> {
    let mine = caller_grants(read, principal);
    let user = format!("/platforms/{}/users/{user_id}/", principal.platform.id);
    let user = ResourcePath::parse(&user).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let write = operation_on(&user, "write")?;
    if !evaluate(&mine, &user, write).allowed {
        return Err(ApiError::Forbidden(format!(
            "Acting for another user needs {} on {user}.",
            write.action
        )));
    }
    let theirs = read.rbac.grants(&principal.platform.key, user_id);
    escalation::may_act_for(&mine, &theirs).map_err(rejected)
}

fn operation_on(resource: &ResourcePath, name: &str) -> Result<&'static Operation, ApiError> {
    classify(resource)
        .and_then(|(t, kind)| t.operation(kind, name))
        .ok_or_else(|| ApiError::Internal(format!("no operation {name} on {resource}")))
}

/// Whether these patterns make a role that grants tenant admin.
pub fn makes_admin(actions: &[String]) -> bool {
    escalation::makes_admin(&parse_patterns(actions))
}

/// The platform's active tenant admins, with their grants.
pub fn tenant_admins(read: &ReadState, principal: &Principal) -> Vec<(u64, Arc<Vec<Grant>>)> {
    let pk = principal.platform.id;
    read.rbac
        .holders_at(&principal.platform.key, &ResourcePath::platform_root(pk))
        .into_iter()
        .filter(|(_, grants)| escalation::is_tenant_admin(grants, pk))
        .collect()
}

/// The no-lockout rule: some active tenant admin keeps admin once the grants
/// `lost(user, grant)` names are gone (409 otherwise).
pub fn keeps_an_admin(
    read: &ReadState,
    principal: &Principal,
    lost: impl Fn(u64, &Grant) -> bool,
) -> Result<(), ApiError> {
    let admins = tenant_admins(read, principal);
    let admins: Vec<(u64, &[Grant])> = admins.iter().map(|(u, g)| (*u, g.as_slice())).collect();
    escalation::keeps_an_admin(&admins, principal.platform.id, lost).map_err(rejected)
}
