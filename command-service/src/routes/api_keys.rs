//! Platform API keys: create (the secret is shown once) and delete by name.
//!
//! A key acts with its owner's permissions. The caller's own key needs only
//! the route's guard; a key for another user (`username` in the body), or
//! deleting another user's key, also needs `Ibl.Core/Users/write` on that
//! user and everything that user holds. The platform's last key of an active
//! tenant admin cannot be deleted.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use ibl_edge::extract::{JsonBody, Principal};
use ibl_edge::request::Params;
use ibl_edge::{wire, ApiError, ReadState};
use serde::Deserialize;

use crate::api_keys;
use crate::authority::{may_act_for, tenant_admins};
use crate::domain::api_key::ApiKeyCommand;
use crate::http::{context, settle, written, WriteState};
use crate::secrets::NewSecret;

/// The body of `POST /api/core/platform/api-tokens/` (the `iblai`
/// `PlatformApiKey` model; `key` and `created` are read-only; `username`
/// names the key's owner, the caller by default).
#[derive(Debug, Default, Deserialize)]
pub struct ApiKeyBody {
    name: Option<String>,
    platform_key: Option<String>,
    username: Option<String>,
    expires: Option<DateTime<Utc>>,
}

pub async fn create_api_key(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    body: JsonBody<ApiKeyBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.value;
    let platform = body
        .platform_key
        .ok_or_else(|| ApiError::field("platform_key", "This field is required."))?;
    principal.require_platform(&platform)?;
    let name = body
        .name
        .ok_or_else(|| ApiError::field("name", "This field is required."))?;
    let (user_id, username) = match body.username.as_deref().map(str::trim) {
        None | Some("") => (principal.key.user_id, principal.key.username.clone()),
        Some(name) if name == principal.key.username => {
            (principal.key.user_id, principal.key.username.clone())
        }
        Some(name) => {
            let user = read
                .rbac
                .user_by_username(&platform, name)
                .filter(|u| u.active)
                .ok_or_else(|| {
                    ApiError::field(
                        "username",
                        format!("No active user {name:?} on this platform."),
                    )
                })?;
            may_act_for(&read, &principal, user.id)?;
            (user.id, user.username)
        }
    };
    let secret = NewSecret::generate();
    let ctx = context(&req, &principal, None);
    let command = ApiKeyCommand::Create {
        name: name.clone(),
        prefix: secret.prefix(),
        hash: secret.hash(),
        user_id,
        username,
        expires: body.expires,
        now: Utc::now(),
    };
    let outcome = api_keys::run(&write.store, &ctx, &platform, &name, command).await?;
    settle(&read, outcome.position()).await;
    let key = read
        .models
        .api_key_by_name(&platform, &name)
        .ok_or_else(|| ApiError::Internal("created key not in the read model".into()))?;
    Ok(written(
        &read,
        StatusCode::CREATED,
        outcome.position(),
        wire::api_key(&key, secret.expose()),
    ))
}

pub async fn delete_api_key(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::of(&req)?;
    let platform = params
        .get("platform_key")
        .ok_or_else(|| ApiError::field("platform_key", "This field is required."))?
        .to_owned();
    principal.require_platform(&platform)?;
    let name = name.into_inner();
    // The owner as the key's stream has it (the read model may not show a
    // key created a moment ago).
    if let Some(key) = api_keys::active_key(write.store.as_ref(), &platform, &name).await? {
        if key.user_id != principal.key.user_id {
            may_act_for(&read, &principal, key.user_id)?;
        }
    }
    let admins: Vec<u64> = tenant_admins(&read, &principal)
        .into_iter()
        .map(|(user, _)| user)
        .collect();
    let admin_keys: Vec<String> = read
        .models
        .api_keys(&platform)
        .into_iter()
        .filter(|k| admins.contains(&k.user_id))
        .map(|k| k.name)
        .collect();
    let ctx = context(&req, &principal, None);
    let outcome = api_keys::revoke(
        &write.store,
        &ctx,
        &platform,
        &name,
        &admins,
        &admin_keys,
        Utc::now(),
    )
    .await?;
    settle(&read, outcome.position()).await;
    Ok(HttpResponse::NoContent()
        .insert_header(read.positions.header(outcome.position()))
        .finish())
}
