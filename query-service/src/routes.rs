//! The read routes of the credentials API, of API keys, and the public
//! verification route.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use ibl_edge::extract::Principal;
use ibl_edge::request::{fresh, scoped, OrgUser, OrgUserEntity, Params};
use ibl_edge::{wire, ApiError, ReadState};
use ibl_projections::assertions::AssertionFilter;
use ibl_projections::credentials::CredentialFilter;
use serde_json::json;

use crate::ratelimit::{retry_after_secs, RateLimiter};

pub async fn list_credentials(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    path: web::Path<OrgUser>,
) -> Result<HttpResponse, ApiError> {
    let (params, platform) = scoped(&req, &read, &principal, &path.org).await?;
    let p = params.page()?;
    let filter = CredentialFilter {
        search: params.get("search").map(str::to_owned),
        course: params.get("course").map(str::to_owned),
        program: params.get("program").map(str::to_owned),
    };
    let page = read
        .catalog
        .credentials(&platform, &filter, p.offset(), p.size)
        .await?;
    p.check_in_range(page.count)?;
    let base = wire::base_url(&req);
    let data = page
        .items
        .iter()
        .map(|c| wire::credential(&base, c))
        .collect();
    Ok(HttpResponse::Ok().json(wire::envelope(
        "Ok",
        wire::credentials_page(&req, p, page.count, data),
    )))
}

pub async fn get_credential(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    path: web::Path<OrgUserEntity>,
) -> Result<HttpResponse, ApiError> {
    let (_, platform) = scoped(&req, &read, &principal, &path.org).await?;
    let c = read
        .catalog
        .credential(&platform, &path.entity_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(wire::credential(&wire::base_url(&req), &c)))
}

async fn assertion_page(
    req: &HttpRequest,
    read: &ReadState,
    platform: &str,
    credential: Option<String>,
    params: &Params,
) -> Result<HttpResponse, ApiError> {
    let p = params.page()?;
    let now = Utc::now();
    let filter = AssertionFilter {
        credential,
        course: params.get("course").map(str::to_owned),
        include_revoked: params.flag("include_revoked", false)?,
        include_expired: params.flag("include_expired", false)?,
        now,
    };
    // Accepted for compatibility: this service has no main tenant.
    params.flag("exclude_main_tenant_assertions", false)?;
    let page = read
        .assertions
        .assertions(platform, &filter, p.offset(), p.size)
        .await?;
    p.check_in_range(page.count)?;
    let base = wire::base_url(req);
    let ids: Vec<&str> = page
        .items
        .iter()
        .map(|a| a.credential_id.as_str())
        .collect();
    let credentials = read.catalog.credentials_among(platform, &ids).await?;
    let data = page
        .items
        .iter()
        .map(|a| wire::assertion(&base, a, credentials.get(&a.credential_id), now))
        .collect();
    Ok(HttpResponse::Ok().json(wire::credentials_page(req, p, page.count, data)))
}

pub async fn list_assertions(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    path: web::Path<OrgUser>,
) -> Result<HttpResponse, ApiError> {
    let (params, platform) = scoped(&req, &read, &principal, &path.org).await?;
    assertion_page(&req, &read, &platform, None, &params).await
}

pub async fn list_credential_assertions(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    path: web::Path<OrgUserEntity>,
) -> Result<HttpResponse, ApiError> {
    let (params, platform) = scoped(&req, &read, &principal, &path.org).await?;
    read.catalog
        .credential(&platform, &path.entity_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    assertion_page(
        &req,
        &read,
        &platform,
        Some(path.entity_id.clone()),
        &params,
    )
    .await
}

pub async fn get_assertion(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    path: web::Path<OrgUserEntity>,
) -> Result<HttpResponse, ApiError> {
    let (_, platform) = scoped(&req, &read, &principal, &path.org).await?;
    let a = read
        .assertions
        .assertion(&path.entity_id)
        .await?
        .filter(|a| a.platform == platform)
        .ok_or_else(ApiError::not_found)?;
    let c = read.catalog.credential(&platform, &a.credential_id).await?;
    Ok(HttpResponse::Ok().json(wire::assertion(
        &wire::base_url(&req),
        &a,
        c.as_ref(),
        Utc::now(),
    )))
}

/// The rate of public verification lookups per client address (app data).
pub struct PublicLimit(pub RateLimiter);

/// Public verification: no key needed. A revoked assertion answers 404 with
/// its revocation (as ibl.ai does) and `"status": "revoked"`; an unknown one
/// a plain 404; an expired one 200 with `"status": "expired"`.
///
/// Lookups are rate limited per TCP peer address (headers such as
/// `X-Forwarded-For` are the client's to write): 429 with `Retry-After`
/// when the client's bucket is empty. `X-Min-Position` is ignored here: an
/// anonymous caller gets no way to make the server wait or to probe how
/// far the store has come.
pub async fn verify_assertion(
    req: HttpRequest,
    read: web::Data<ReadState>,
    limit: web::Data<PublicLimit>,
    entity_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    limit
        .0
        .check(peer, Instant::now())
        .map_err(|wait| ApiError::TooManyRequests(retry_after_secs(wait)))?;
    let a = read
        .assertions
        .assertion(&entity_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let c = read
        .catalog
        .credential(&a.platform, &a.credential_id)
        .await?;
    let issuer = match c.as_ref().and_then(|c| c.fields.issuer.as_deref()) {
        Some(id) => read.catalog.issuer(&a.platform, id).await?,
        None => None,
    };
    let now = Utc::now();
    let mut body =
        wire::public_assertion(&wire::base_url(&req), &a, c.as_ref(), issuer.as_ref(), now);
    if body["revoked"] == true {
        // As ibl.ai answers a revoked assertion: 404, with the status.
        body["detail"] = json!("This assertion has been revoked.");
        return Ok(HttpResponse::NotFound().json(body));
    }
    Ok(HttpResponse::Ok().json(body))
}

pub async fn list_issuers(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    path: web::Path<OrgUser>,
) -> Result<HttpResponse, ApiError> {
    let (params, platform) = scoped(&req, &read, &principal, &path.org).await?;
    let p = params.page()?;
    let search = params.get("q").or(params.get("search"));
    let page = read
        .catalog
        .issuers(&platform, search, p.offset(), p.size)
        .await?;
    p.check_in_range(page.count)?;
    let base = wire::base_url(&req);
    let data = page.items.iter().map(|i| wire::issuer(&base, i)).collect();
    Ok(HttpResponse::Ok().json(wire::envelope(
        "Ok",
        wire::credentials_page(&req, p, page.count, data),
    )))
}

pub async fn get_issuer(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    path: web::Path<OrgUserEntity>,
) -> Result<HttpResponse, ApiError> {
    let (_, platform) = scoped(&req, &read, &principal, &path.org).await?;
    let i = read
        .catalog
        .issuer(&platform, &path.entity_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(wire::issuer(&wire::base_url(&req), &i)))
}

/// `GET /api/core/platform/api-tokens/?platform_key=`: a plain array; `key`
/// shows the non-secret prefix only.
pub async fn list_api_keys(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let params = Params::of(&req)?;
    let platform = params
        .get("platform_key")
        .ok_or_else(|| ApiError::field("platform_key", "This field is required."))?
        .to_owned();
    principal.require_platform(&platform)?;
    fresh(&req, &read).await?;
    let keys: Vec<_> = read
        .keys
        .api_keys(&platform)
        .await?
        .iter()
        .map(|k| wire::api_key(k, &format!("{}…", k.prefix)))
        .collect();
    Ok(HttpResponse::Ok().json(keys))
}
