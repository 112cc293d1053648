//! The read routes of RBAC roles, groups, policies and mentor access, and
//! their wire shapes (the `iblai` client's `RbacRole`, `RbacGroup`,
//! `RbacPolicy`, `MentorPolicy` and `Paginated*List`).

use actix_web::{web, HttpRequest, HttpResponse};
use ibl_projections::rbac::{
    GroupFilter, GroupRef, GroupView, PolicyFilter, PolicyView, RoleView, UserRef, MENTOR_ROLES,
};
use serde_json::{json, Value};

use crate::extract::Principal;
use crate::paging::drf_page;
use crate::routes::{fresh, Params};
use crate::{ApiError, ReadState};

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

/// An optional integer query parameter.
fn int_param(params: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| ApiError::field(name, "A valid integer is required."))
        })
        .transpose()
}

async fn start(
    req: &HttpRequest,
    read: &ReadState,
    principal: &Principal,
) -> Result<(Params, String), ApiError> {
    let params = Params::of(req)?;
    let platform = platform_param(principal, &params)?;
    fresh(req, read).await?;
    Ok((params, platform))
}

/// The start of a detail read: `platform_key` is optional.
async fn start_detail(
    req: &HttpRequest,
    read: &ReadState,
    principal: &Principal,
) -> Result<(Params, String), ApiError> {
    let params = Params::of(req)?;
    let platform = platform_or_own(principal, &params)?;
    fresh(req, read).await?;
    Ok((params, platform))
}

/// A role a tenant may see: live, of its platform (or global), not internal.
pub fn visible_role(read: &ReadState, platform: &str, id: u64) -> Result<RoleView, ApiError> {
    read.rbac
        .role(platform, id)
        .filter(|r| !r.is_internal)
        .ok_or_else(|| ApiError::NotFound("No such role.".into()))
}

pub fn visible_group(read: &ReadState, platform: &str, id: u64) -> Result<GroupView, ApiError> {
    read.rbac
        .group(platform, id)
        .filter(|g| !g.is_internal)
        .ok_or_else(|| ApiError::NotFound("No such group.".into()))
}

pub fn visible_policy(read: &ReadState, platform: &str, id: u64) -> Result<PolicyView, ApiError> {
    read.rbac
        .policy(platform, id)
        .filter(|p| !p.is_internal)
        .ok_or_else(|| ApiError::NotFound("No such policy.".into()))
}

pub async fn list_roles(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (params, platform) = start(&req, &read, &principal).await?;
    let page = params.page()?;
    let include_global = params.flag("include_global_roles", false)?;
    let found = read.rbac.roles(
        &platform,
        params.get("name"),
        include_global,
        page.offset(),
        page.size,
    );
    drf_page(&req, page, &found, role)
}

pub async fn get_role(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (_, platform) = start_detail(&req, &read, &principal).await?;
    let r = visible_role(&read, &platform, path_id(&id)?)?;
    Ok(HttpResponse::Ok().json(role(&r)))
}

pub async fn list_groups(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (params, platform) = start(&req, &read, &principal).await?;
    let page = params.page()?;
    let include_users = params.flag("include_users", true)?;
    let filter = GroupFilter {
        name: params.get("name").map(str::to_owned),
        owner: params.get("owner").map(str::to_owned),
        username: params.get("username").map(str::to_owned),
        email: params.get("email").map(str::to_owned),
    };
    let found = read
        .rbac
        .groups(&platform, &filter, page.offset(), page.size);
    drf_page(&req, page, &found, |g| group(g, include_users))
}

pub async fn get_group(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (params, platform) = start_detail(&req, &read, &principal).await?;
    let g = visible_group(&read, &platform, path_id(&id)?)?;
    Ok(HttpResponse::Ok().json(group(&g, params.flag("include_users", true)?)))
}

pub async fn list_policies(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (params, platform) = start(&req, &read, &principal).await?;
    let page = params.page()?;
    let include_users = params.flag("include_users", true)?;
    let include_groups = params.flag("include_groups", true)?;
    let filter = PolicyFilter {
        platform_key: platform,
        role_id: int_param(&params, "role_id")?,
        name: params.get("name").map(str::to_owned),
        username: params.get("username").map(str::to_owned),
        email: params.get("email").map(str::to_owned),
        group: params.get("group").map(str::to_owned),
    };
    let found = read.rbac.policies(&filter, page.offset(), page.size);
    drf_page(&req, page, &found, |p| {
        policy(p, include_users, include_groups)
    })
}

pub async fn get_policy(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (params, platform) = start_detail(&req, &read, &principal).await?;
    let p = visible_policy(&read, &platform, path_id(&id)?)?;
    Ok(HttpResponse::Ok().json(policy(
        &p,
        params.flag("include_users", true)?,
        params.flag("include_groups", true)?,
    )))
}

/// `GET /api/core/rbac/mentor-access/?platform_key=&mentor_id=`: a plain
/// array of `MentorPolicy`.
pub async fn list_mentor_access(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (params, platform) = start(&req, &read, &principal).await?;
    let mentor_id = int_param(&params, "mentor_id")?
        .ok_or_else(|| ApiError::field("mentor_id", "This field is required."))?;
    let out: Vec<Value> = read
        .rbac
        .mentor_policies(&platform, mentor_id)
        .iter()
        .map(|p| mentor_policy(p, mentor_id))
        .collect();
    Ok(HttpResponse::Ok().json(out))
}
