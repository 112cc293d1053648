//! The write routes: each builds a command from the request, runs it through
//! the handler and answers from the read models once they have caught up.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use ibl_edge::extract::{JsonBody, Principal};
use ibl_edge::request::{platform_of, OrgUser, OrgUserEntity, Params};
use ibl_edge::{wire, ApiError, ReadState};
use ibl_events::credentials::{credential_stream, issuer_stream, CredentialFields, IssuerFields};
use serde::Deserialize;
use serde_json::Value;

use crate::domain::credential::{CredentialAggregate, CredentialCommand, UpdateCredential};
use crate::domain::issuer::{IssuerAggregate, IssuerCommand, UpdateIssuer};
use crate::handler::{execute, execute_new};
use crate::http::{
    begin, context_for, judge_and_claim, judged_create, nullable, removed, settle, written, Begun,
    WriteState,
};
use crate::idempotency::entity_id;

mod api_keys;
mod assertions;
pub mod rbac;
pub mod scim;

pub use api_keys::{create_api_key, delete_api_key};
pub use assertions::{bulk_issue, issue_assertion, update_assertion};

/// The credential body of POST and PUT. Read-only fields the `iblai` client
/// sends (`credential_id`, `credential_url`, `issued_on`) are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct CredentialBody {
    name: Option<String>,
    description: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    issuer: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    credential_type: Option<Option<String>>,
    html_template: Option<String>,
    css_template: Option<String>,
    icon_image: Option<String>,
    background_image: Option<String>,
    thumbnail_image: Option<String>,
    criteria_url: Option<String>,
    criteria_text: Option<String>,
    issuing_signal: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    course: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    program: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<DateTime<Utc>>>,
    /// `true` on a PUT retires the credential; `false` changes nothing.
    revoked: Option<bool>,
    /// The reason recorded when `revoked` retires it.
    #[serde(alias = "revocationReason")]
    revocation_reason: Option<String>,
}

impl CredentialBody {
    fn changes(self) -> UpdateCredential {
        UpdateCredential {
            name: self.name,
            description: self.description,
            issuer: self.issuer.map(|i| i.filter(|s| !s.is_empty())),
            credential_type: self.credential_type,
            html_template: self.html_template,
            css_template: self.css_template,
            icon_image: self.icon_image,
            background_image: self.background_image,
            thumbnail_image: self.thumbnail_image,
            criteria_url: self.criteria_url,
            criteria_text: self.criteria_text,
            issuing_signal: self.issuing_signal,
            course: self.course.map(|c| c.filter(|s| !s.is_empty())),
            program: self.program.map(|p| p.filter(|s| !s.is_empty())),
            expires_at: self.expires_at,
        }
    }
}

fn check_issuer(read: &ReadState, platform: &str, issuer: Option<&str>) -> Result<(), ApiError> {
    match issuer {
        Some(id) if read.models.issuer(platform, id).is_none() => Err(ApiError::field(
            "issuer",
            format!("Unknown issuer '{id}' on this platform."),
        )),
        _ => Ok(()),
    }
}

fn credential_answer(
    req: &HttpRequest,
    read: &ReadState,
    platform: &str,
    entity_id: &str,
    description: &str,
) -> Result<Value, ApiError> {
    let c = read
        .models
        .credential(platform, entity_id)
        .ok_or_else(ApiError::not_found)?;
    serde_json::to_value(wire::envelope(
        description,
        wire::credential(&wire::base_url(req), &c),
    ))
    .map_err(|e| ApiError::Internal(e.to_string()))
}

pub async fn create_credential(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    path: web::Path<OrgUser>,
    body: JsonBody<CredentialBody>,
) -> Result<HttpResponse, ApiError> {
    let Begun {
        platform,
        tag,
        replay,
        ..
    } = begin(&req, &read, &principal, &path.org, &body.hash()).await?;
    if let Some(record) = replay {
        let id = record.created("credential-");
        return Ok(written(
            &read,
            StatusCode::OK,
            record.position,
            credential_answer(&req, &read, &platform, id, "Created")?,
        ));
    }
    let changes = body.value.changes();
    let fields = changes.merge(&CredentialFields::default());
    check_issuer(&read, &platform, fields.issuer.as_deref())?;
    let now = Utc::now();
    let make = |seed| {
        let entity_id = entity_id(seed, "credential");
        let command = CredentialCommand::Create {
            platform: platform.clone(),
            entity_id: entity_id.clone(),
            fields: fields.clone(),
            now,
        };
        (entity_id, command)
    };
    let seed = judged_create::<CredentialAggregate, _>(
        &req,
        &write,
        &principal,
        &platform,
        tag.as_ref(),
        |s| make(s).1,
    )
    .await?;
    let (entity_id, command) = make(seed);
    let ctx = context_for(&req, &read, &principal, &platform, &path.user, tag);
    let outcome = execute_new::<CredentialAggregate>(
        &write.store,
        &credential_stream(&entity_id),
        &ctx,
        command,
    )
    .await?;
    settle(&read, outcome.position()).await;
    Ok(written(
        &read,
        StatusCode::OK,
        outcome.position(),
        credential_answer(&req, &read, &platform, &entity_id, "Created")?,
    ))
}

pub async fn update_credential(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    path: web::Path<OrgUserEntity>,
    body: JsonBody<CredentialBody>,
) -> Result<HttpResponse, ApiError> {
    let Begun {
        platform,
        tag,
        replay,
        ..
    } = begin(&req, &read, &principal, &path.org, &body.hash()).await?;
    read.models
        .credential(&platform, &path.entity_id)
        .ok_or_else(ApiError::not_found)?;
    if let Some(record) = replay {
        return Ok(written(
            &read,
            StatusCode::OK,
            record.position,
            credential_answer(&req, &read, &platform, &path.entity_id, "Updated")?,
        ));
    }
    let body = body.value;
    let retire = body.revoked == Some(true);
    let reason = body.revocation_reason.clone().unwrap_or_default();
    let changes = body.changes();
    if let Some(Some(issuer)) = &changes.issuer {
        check_issuer(&read, &platform, Some(issuer))?;
    }
    let stream = credential_stream(&path.entity_id);
    let now = Utc::now();
    let update = CredentialCommand::Update { changes, now };
    judge_and_claim::<CredentialAggregate>(
        &req,
        &write,
        &principal,
        &platform,
        tag.as_ref(),
        &stream,
        &update,
    )
    .await?;
    let ctx = context_for(&req, &read, &principal, &platform, &path.user, tag);
    let mut outcome = execute::<CredentialAggregate>(&write.store, &stream, &ctx, update).await?;
    let already_retired = outcome.state.live().is_some_and(|c| c.retired.is_some());
    if retire && !already_retired {
        let reason = if reason.trim().is_empty() {
            "retired".to_owned()
        } else {
            reason
        };
        outcome = execute::<CredentialAggregate>(
            &write.store,
            &stream,
            &ctx,
            CredentialCommand::Retire { reason, now },
        )
        .await?;
    }
    settle(&read, outcome.position()).await;
    Ok(written(
        &read,
        StatusCode::OK,
        outcome.position(),
        credential_answer(&req, &read, &platform, &path.entity_id, "Updated")?,
    ))
}

pub async fn delete_credential(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    path: web::Path<OrgUserEntity>,
) -> Result<HttpResponse, ApiError> {
    let platform = platform_of(&principal, &path.org, &Params::of(&req)?)?;
    read.models
        .credential(&platform, &path.entity_id)
        .ok_or_else(ApiError::not_found)?;
    let ctx = context_for(&req, &read, &principal, &platform, &path.user, None);
    removed::<CredentialAggregate>(
        &read,
        &write,
        &credential_stream(&path.entity_id),
        &ctx,
        CredentialCommand::Delete { now: Utc::now() },
    )
    .await
}

/// The issuer body (the `iblai` `Issuer` model; `org` and `entityId` are
/// read-only and ignored).
#[derive(Debug, Default, Deserialize)]
pub struct IssuerBody {
    name: Option<String>,
    url: Option<String>,
    #[serde(alias = "iconImage")]
    icon_image: Option<String>,
    description: Option<String>,
    email: Option<String>,
    signatories: Option<BTreeMap<String, String>>,
}

impl IssuerBody {
    fn changes(self) -> UpdateIssuer {
        UpdateIssuer {
            name: self.name,
            url: self.url,
            icon_image: self.icon_image,
            description: self.description,
            email: self.email,
            signatories: self.signatories,
        }
    }
}

fn issuer_answer(
    req: &HttpRequest,
    read: &ReadState,
    platform: &str,
    entity_id: &str,
) -> Result<Value, ApiError> {
    let i = read
        .models
        .issuer(platform, entity_id)
        .ok_or_else(ApiError::not_found)?;
    Ok(wire::issuer(&wire::base_url(req), &i))
}

pub async fn create_issuer(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    path: web::Path<OrgUser>,
    body: JsonBody<IssuerBody>,
) -> Result<HttpResponse, ApiError> {
    let Begun {
        params,
        platform,
        tag,
        replay,
    } = begin(&req, &read, &principal, &path.org, &body.hash()).await?;
    if let Some(record) = replay {
        let id = record.created("issuer-");
        return Ok(written(
            &read,
            StatusCode::OK,
            record.position,
            issuer_answer(&req, &read, &platform, id)?,
        ));
    }
    let mut changes = body.value.changes();
    if changes.name.as_deref().is_none_or(|n| n.trim().is_empty()) && params.get("q").is_some() {
        // The typed `iblai` call cannot send `name` (read-only in its model):
        // the `q` it must send names the issuer then.
        changes.name = params.get("q").map(str::to_owned);
    }
    let fields: IssuerFields = changes.merge(&IssuerFields::default());
    let now = Utc::now();
    let make = |seed| {
        let entity_id = entity_id(seed, "issuer");
        let command = IssuerCommand::Create {
            platform: platform.clone(),
            entity_id: entity_id.clone(),
            fields: fields.clone(),
            now,
        };
        (entity_id, command)
    };
    let seed = judged_create::<IssuerAggregate, _>(
        &req,
        &write,
        &principal,
        &platform,
        tag.as_ref(),
        |s| make(s).1,
    )
    .await?;
    let (entity_id, command) = make(seed);
    let ctx = context_for(&req, &read, &principal, &platform, &path.user, tag);
    let outcome =
        execute::<IssuerAggregate>(&write.store, &issuer_stream(&entity_id), &ctx, command).await?;
    settle(&read, outcome.position()).await;
    Ok(written(
        &read,
        StatusCode::OK,
        outcome.position(),
        issuer_answer(&req, &read, &platform, &entity_id)?,
    ))
}

pub async fn update_issuer(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    path: web::Path<OrgUserEntity>,
    body: JsonBody<IssuerBody>,
) -> Result<HttpResponse, ApiError> {
    let Begun {
        platform,
        tag,
        replay,
        ..
    } = begin(&req, &read, &principal, &path.org, &body.hash()).await?;
    read.models
        .issuer(&platform, &path.entity_id)
        .ok_or_else(ApiError::not_found)?;
    if let Some(record) = replay {
        return Ok(written(
            &read,
            StatusCode::OK,
            record.position,
            issuer_answer(&req, &read, &platform, &path.entity_id)?,
        ));
    }
    let command = IssuerCommand::Update {
        changes: body.value.changes(),
        now: Utc::now(),
    };
    let stream = issuer_stream(&path.entity_id);
    judge_and_claim::<IssuerAggregate>(
        &req,
        &write,
        &principal,
        &platform,
        tag.as_ref(),
        &stream,
        &command,
    )
    .await?;
    let ctx = context_for(&req, &read, &principal, &platform, &path.user, tag);
    let outcome = execute::<IssuerAggregate>(&write.store, &stream, &ctx, command).await?;
    settle(&read, outcome.position()).await;
    Ok(written(
        &read,
        StatusCode::OK,
        outcome.position(),
        issuer_answer(&req, &read, &platform, &path.entity_id)?,
    ))
}

pub async fn delete_issuer(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    path: web::Path<OrgUserEntity>,
) -> Result<HttpResponse, ApiError> {
    let platform = platform_of(&principal, &path.org, &Params::of(&req)?)?;
    read.models
        .issuer(&platform, &path.entity_id)
        .ok_or_else(ApiError::not_found)?;
    let ctx = context_for(&req, &read, &principal, &platform, &path.user, None);
    removed::<IssuerAggregate>(
        &read,
        &write,
        &issuer_stream(&path.entity_id),
        &ctx,
        IssuerCommand::Delete { now: Utc::now() },
    )
    .await
}
