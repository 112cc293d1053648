//! The read routes of RBAC roles, groups, policies and mentor access (the
//! `iblai` client's `Paginated*List`s and details).

use actix_web::{web, HttpRequest, HttpResponse};
use ibl_edge::extract::Principal;
use ibl_edge::paging::drf_page;
use ibl_edge::rbac::{
    group, mentor_policy, path_id, platform_or_own, platform_param, policy, role, visible_group,
    visible_policy, visible_role,
};
use ibl_edge::request::{fresh, Params};
use ibl_edge::{ApiError, ReadState};
use ibl_projections::rbac::{GroupFilter, PolicyFilter};
use serde_json::Value;

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

pub async fn list_roles(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (params, platform) = start(&req, &read, &principal).await?;
    let page = params.page()?;
    let include_global = params.flag("include_global_roles", false)?;
    let found = read
        .access
        .roles(
            &platform,
            params.get("name"),
            include_global,
            page.offset(),
            page.size,
        )
        .await?;
    drf_page(&req, page, &found, role)
}

pub async fn get_role(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (_, platform) = start_detail(&req, &read, &principal).await?;
    let r = visible_role(read.access.role(&platform, path_id(&id)?).await?)?;
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
        .access
        .groups(&platform, &filter, page.offset(), page.size)
        .await?;
    drf_page(&req, page, &found, |g| group(g, include_users))
}

pub async fn get_group(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (params, platform) = start_detail(&req, &read, &principal).await?;
    let g = visible_group(read.access.group(&platform, path_id(&id)?).await?)?;
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
    let found = read
        .access
        .policies(&filter, page.offset(), page.size)
        .await?;
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
    let p = visible_policy(read.access.policy(&platform, path_id(&id)?).await?)?;
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
        .access
        .mentor_policies(&platform, mentor_id)
        .await?
        .iter()
        .map(|p| mentor_policy(p, mentor_id))
        .collect();
    Ok(HttpResponse::Ok().json(out))
}
