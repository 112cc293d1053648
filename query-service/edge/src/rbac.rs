//! The wire shapes of RBAC (the `iblai` client's `RbacRole`, `RbacGroup`,
//! `RbacPolicy` and `MentorPolicy`) and what a tenant may see of roles,
//! groups and policies, for the routes of both services.

use ibl_projections::rbac::{GroupRef, GroupView, PolicyView, RoleView, UserRef, MENTOR_ROLES};
use serde_json::{json, Value};

use crate::extract::Principal;
use crate::request::Params;
use crate::ApiError;

/// `{id, key, name}` of a platform.
fn platform(id: u64, key: &str, name: &str) -> Value {
    json!({"id": id, "key": key, "name": name})
}

pub fn user_ref(u: &UserRef) -> Value {
    json!({"id": u.id, "username": u.username, "email": u.email})
}

pub fn group_ref(g: &GroupRef) -> Value {
    json!({"id": g.id, "name": g.name, "unique_id": g.unique_id, "description": g.description})
}

/// `RbacRole`.
pub fn role(r: &RoleView) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "platform": platform(r.platform_id, &r.platform_key, &r.platform_name),
        "platform_key": r.platform_key,
        "actions": r.actions,
        "data_actions": r.data_actions,
        "is_internal": r.is_internal,
    })
}

/// `RbacGroup`; `users` is empty unless asked for.
pub fn group(g: &GroupView, include_users: bool) -> Value {
    let users: Vec<Value> = if include_users {
        g.users.iter().map(user_ref).collect()
    } else {
        vec![]
    };
    json!({
        "id": g.id,
        "unique_id": g.unique_id,
        "platform": platform(g.platform_id, &g.platform_key, &g.platform_name),
        "platform_key": g.platform_key,
        "name": g.name,
        "description": g.description,
        "owner": user_ref(&g.owner),
        "users": users,
        "is_internal": g.is_internal,
    })
}

/// `RbacPolicy`.
pub fn policy(p: &PolicyView, include_users: bool, include_groups: bool) -> Value {
    let users: Vec<Value> = if include_users {
        p.users.iter().map(user_ref).collect()
    } else {
        vec![]
    };
    let groups: Vec<Value> = if include_groups {
        p.groups.iter().map(group_ref).collect()
    } else {
        vec![]
    };
    json!({
        "id": p.id,
        "name": p.name,
        "role": {
            "id": p.role.id,
            "name": p.role.name,
            "platform_key": p.platform_key,
            "actions": p.role.actions,
            "data_actions": p.role.data_actions,
        },
        "role_id": p.role.id,
        "platform": platform(p.platform_id, &p.platform_key, &p.platform_name),
        "platform_key": p.platform_key,
        "resources": p.resources,
        "users": users,
        "groups": groups,
        "is_internal": p.is_internal,
    })
}

/// The short name (`viewer`) of a mentor role name (`Mentor Viewer`).
pub fn mentor_role_short(name: &str) -> &str {
    MENTOR_ROLES
        .iter()
        .find(|(_, long)| *long == name)
        .map_or(name, |(short, _)| short)
}

/// `MentorPolicy`.
pub fn mentor_policy(p: &PolicyView, mentor_id: u64) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "platform_key": p.platform_key,
        "mentor_id": mentor_id,
        "role": mentor_role_short(&p.role.name),
        "resources": p.resources,
        "users": p.users.iter().map(user_ref).collect::<Vec<_>>(),
        "groups": p.groups.iter().map(group_ref).collect::<Vec<_>>(),
    })
}

/// The required `platform_key` query parameter; the key must belong to it.
pub fn platform_param(principal: &Principal, params: &Params) -> Result<String, ApiError> {
    let key = params
        .get("platform_key")
        .ok_or_else(|| ApiError::field("platform_key", "This field is required."))?
        .to_owned();
    principal.require_platform(&key)?;
    Ok(key)
}

/// `platform_key` of the query, else the caller's own platform (the client
/// sends none on detail reads); the key must belong to it.
pub fn platform_or_own(principal: &Principal, params: &Params) -> Result<String, ApiError> {
    let key = params
        .get("platform_key")
        .map_or_else(|| principal.platform.key.clone(), str::to_owned);
    principal.require_platform(&key)?;
    Ok(key)
}

/// An integer id in a path: 404 when it is not one.
pub fn path_id(raw: &str) -> Result<u64, ApiError> {
    raw.trim().parse::<u64>().map_err(|_| ApiError::not_found())
}

/// A role a tenant may see, of those found live on its platform (or
/// global): not internal.
pub fn visible_role(found: Option<RoleView>) -> Result<RoleView, ApiError> {
    found
        .filter(|r| !r.is_internal)
        .ok_or_else(|| ApiError::NotFound("No such role.".into()))
}

pub fn visible_group(found: Option<GroupView>) -> Result<GroupView, ApiError> {
    found
        .filter(|g| !g.is_internal)
        .ok_or_else(|| ApiError::NotFound("No such group.".into()))
}

pub fn visible_policy(found: Option<PolicyView>) -> Result<PolicyView, ApiError> {
    found
        .filter(|p| !p.is_internal)
        .ok_or_else(|| ApiError::NotFound("No such policy.".into()))
}
