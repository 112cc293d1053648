//! Issuing (one and in bulk) and revoking assertions.

use std::collections::HashSet;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use ibl_edge::extract::{JsonBody, Principal};
use ibl_edge::request::OrgUserEntity;
use ibl_edge::{wire, ApiError, ReadState};
use ibl_events::credentials::{assertion_stream, credential_stream, Evidence, Recipient};
use ibl_projections::assertions::{AssertionView, Revocation as ViewRevocation};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::domain::assertion::{
    plan_bulk_issue, Assertion, AssertionAggregate, AssertionCommand, AssertionTerms, BulkIssue,
    IssueAssertion, MAX_BULK_RECIPIENTS,
};
use crate::domain::credential::{CredentialAggregate, IssuableCredential};
use crate::handler::{append_new, execute, execute_new};
use crate::http::rejected;
use crate::http::{
    begin, claim_key, context_for, judge_and_claim, judged_create, settle, written, Begun,
    WriteState,
};
use crate::idempotency::entity_id;

/// A recipient as sent: every field optional; validated by the domain.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RecipientBody {
    email: Option<String>,
    username: Option<String>,
    name: Option<String>,
}

impl From<RecipientBody> for Recipient {
    fn from(r: RecipientBody) -> Self {
        Recipient {
            email: r.email.unwrap_or_default(),
            username: r.username.unwrap_or_default(),
            name: r.name.unwrap_or_default(),
        }
    }
}

/// The body of `POST .../{entity_id}/assertions/`. What the `iblai` client
/// also sends (`entityId`, `revocationReason`, `credentialDetails`, ...) is
/// read-only here and ignored.
#[derive(Debug, Default, Deserialize)]
pub struct IssueBody {
    recipient: Option<RecipientBody>,
    narrative: Option<String>,
    metadata: Option<Value>,
    expires: Option<String>,
    #[serde(rename = "issuedOn", alias = "issued_on")]
    issued_on: Option<String>,
    evidence: Option<Vec<Evidence>>,
}

/// The body of `POST .../{entity_id}/assertions/bulk/`.
#[derive(Debug, Default, Deserialize)]
pub struct BulkBody {
    #[serde(default)]
    recipients: Vec<RecipientBody>,
    /// The typed `iblai` call can only send its `BulkCreateAssertion` model:
    /// its `issued` list is read as the recipients when `recipients` is absent.
    #[serde(default)]
    issued: Vec<RecipientBody>,
    narrative: Option<String>,
    metadata: Option<Value>,
    expires: Option<String>,
    #[serde(rename = "issuedOn", alias = "issued_on")]
    issued_on: Option<String>,
    evidence: Option<Vec<Evidence>>,
    /// `"allow"` issues to recipients who already hold a valid assertion.
    duplicates: Option<String>,
}

/// The body of `PUT .../assertions/{entity_id}`.
#[derive(Debug, Default, Deserialize)]
pub struct RevokeBody {
    revoked: Option<bool>,
    #[serde(rename = "revocationReason", alias = "revocation_reason")]
    revocation_reason: Option<String>,
}

/// An instant of the body: RFC 3339, or `""`/absent for none.
fn instant(field: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => DateTime::parse_from_rfc3339(v)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                ApiError::field(
                    field,
                    "Expected an RFC 3339 date-time, e.g. 2030-01-01T00:00:00Z.",
                )
            }),
    }
}

fn terms(
    narrative: Option<String>,
    metadata: Option<Value>,
    expires: Option<&str>,
    issued_on: Option<&str>,
    evidence: Option<Vec<Evidence>>,
) -> Result<AssertionTerms, ApiError> {
    Ok(AssertionTerms {
        issued_on: instant("issuedOn", issued_on)?,
        expires: instant("expires", expires)?,
        narrative: narrative.unwrap_or_default(),
        metadata: metadata.unwrap_or(Value::Null),
        evidence: evidence.unwrap_or_default(),
    })
}

/// The credential, if it may be issued now on this platform.
async fn issuable(
    write: &WriteState,
    read: &ReadState,
    platform: &str,
    credential_id: &str,
    now: DateTime<Utc>,
) -> Result<IssuableCredential, ApiError> {
    let known = read.models.credential_revision(platform, credential_id);
    let state = write
        .credentials
        .load::<CredentialAggregate>(
            write.store.as_ref(),
            &credential_stream(credential_id),
            known,
        )
        .await?;
    if state.live().is_some_and(|c| c.platform != platform) {
        return Err(ApiError::not_found());
    }
    state.issuable(now).map_err(rejected)
}

/// The recipient when the body names none: the user of the path.
fn path_user_recipient(read: &ReadState, platform: &str, user: &str) -> Recipient {
    let known = match user.parse::<u64>() {
        Ok(id) => read.models.user(id).filter(|u| u.platform == platform),
        Err(_) => read.models.user_by_username(platform, user),
    };
    match known {
        Some(u) => Recipient {
            email: u.email,
            username: u.username,
            name: String::new(),
        },
        None => Recipient {
            username: user.to_owned(),
            ..Recipient::default()
        },
    }
}

/// An assertion as the read models show it (the answer to a replayed
/// request, whose record they hold).
async fn assertion_answer(
    req: &HttpRequest,
    read: &ReadState,
    position: u64,
    entity_id: &str,
) -> Result<HttpResponse, ApiError> {
    let a = read
        .assertions
        .assertion(entity_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(view_answer(req, read, position, &a))
}

/// The view of an assertion as its stream left it.
fn view_of(a: &Assertion) -> AssertionView {
    AssertionView {
        platform: a.platform.clone(),
        entity_id: a.entity_id.clone(),
        credential_id: a.credential_id.clone(),
        recipient: a.recipient.clone(),
        issued_on: a.issued_on,
        expires: a.expires,
        narrative: a.narrative.clone(),
        metadata: a.metadata.clone(),
        evidence: a.evidence.clone(),
        revoked: a.revocation.as_ref().map(|r| ViewRevocation {
            reason: r.reason.clone(),
            at: r.revoked_at,
        }),
    }
}

/// The answer of a write about an assertion, from the write's own result:
/// it never depends on the read models having caught up (a write that
/// succeeded is never answered 404 or 503).
fn written_answer(
    req: &HttpRequest,
    read: &ReadState,
    position: u64,
    a: Option<&Assertion>,
) -> Result<HttpResponse, ApiError> {
    let a = a.ok_or_else(|| ApiError::Internal("a written assertion has no state".into()))?;
    Ok(view_answer(req, read, position, &view_of(a)))
}

/// A write's answer (200) showing one assertion.
fn view_answer(
    req: &HttpRequest,
    read: &ReadState,
    position: u64,
    a: &AssertionView,
) -> HttpResponse {
    let c = read.models.credential(&a.platform, &a.credential_id);
    let body = wire::assertion(&wire::base_url(req), a, c.as_ref(), Utc::now());
    written(read, StatusCode::OK, position, &body)
}

pub async fn issue_assertion(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    path: web::Path<OrgUserEntity>,
    body: JsonBody<IssueBody>,
) -> Result<HttpResponse, ApiError> {
    let Begun {
        platform,
        tag,
        replay,
        ..
    } = begin(&req, &read, &principal, &path.org, &body.hash()).await?;
    if let Some(record) = replay {
        let id = record.created("assertion-");
        return assertion_answer(&req, &read, record.position, id).await;
    }
    let now = Utc::now();
    let body = body.value;
    let recipient = match body.recipient {
        Some(r) => r.into(),
        None => path_user_recipient(&read, &platform, &path.user),
    };
    let terms = terms(
        body.narrative,
        body.metadata,
        body.expires.as_deref(),
        body.issued_on.as_deref(),
        body.evidence,
    )?;
    let credential = issuable(&write, &read, &platform, &path.entity_id, now).await?;
    let make = |seed| {
        let entity_id = entity_id(seed, "assertion");
        let command = AssertionCommand::Issue(IssueAssertion {
            platform: platform.clone(),
            entity_id: entity_id.clone(),
            credential: credential.clone(),
            recipient: recipient.clone(),
            terms: terms.clone(),
            now,
        });
        (entity_id, command)
    };
    let seed = judged_create::<AssertionAggregate, _>(
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
    let outcome = execute_new::<AssertionAggregate>(
        &write.store,
        &assertion_stream(&entity_id),
        &ctx,
        command,
    )
    .await?;
    settle(&read, outcome.position()).await;
    written_answer(&req, &read, outcome.position(), outcome.state.get())
}

/// Appends at most this many new streams at once, so group commit batches
/// them without flooding the writer.
const BULK_CONCURRENCY: usize = 256;

pub async fn bulk_issue(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    path: web::Path<OrgUserEntity>,
    body: JsonBody<BulkBody>,
) -> Result<HttpResponse, ApiError> {
    // A retry runs the same plan again: its own earlier assertions do not
    // count as duplicates and their appends are no-ops.
    let Begun { platform, tag, .. } =
        begin(&req, &read, &principal, &path.org, &body.hash()).await?;
    let now = Utc::now();
    let mut body = body.value;
    if body.recipients.is_empty() {
        body.recipients = std::mem::take(&mut body.issued);
    }
    if body.recipients.len() > MAX_BULK_RECIPIENTS {
        return Err(ApiError::field(
            "recipients",
            format!("At most {MAX_BULK_RECIPIENTS} recipients."),
        ));
    }
    let allow_duplicates = match body.duplicates.as_deref() {
        None | Some("" | "skip") => false,
        Some("allow") => true,
        Some(_) => {
            return Err(ApiError::field(
                "duplicates",
                "Expected \"allow\" or \"skip\".",
            ))
        }
    };
    let terms = terms(
        body.narrative,
        body.metadata,
        body.expires.as_deref(),
        body.issued_on.as_deref(),
        body.evidence,
    )?;
    let credential = issuable(&write, &read, &platform, &path.entity_id, now).await?;
    let seed = claim_key(
        &req,
        &write,
        &principal,
        &platform,
        tag.as_ref(),
        crate::idempotency::new_seed(),
    )
    .await?;
    let recipients: Vec<Recipient> = body.recipients.into_iter().map(Recipient::from).collect();
    let ids = bulk_ids(seed, recipients.len());
    let own: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let (emails, usernames) = read
        .assertions
        .holders_among(&path.entity_id, &platform, now, &recipients, &own)
        .await?;
    let mut next = ids.iter().cloned();
    let plan = plan_bulk_issue(
        BulkIssue {
            platform: platform.clone(),
            credential,
            recipients,
            allow_duplicates,
            terms,
            now,
        },
        |r| {
            (!r.email.is_empty() && emails.contains(&r.email.to_lowercase()))
                || (!r.username.is_empty() && usernames.contains(&r.username))
        },
        || next.next().unwrap_or_default(),
    )
    .map_err(rejected)?;
    let ctx = context_for(&req, &read, &principal, &platform, &path.user, tag);
    let mut position = 0;
    for chunk in plan.issue.chunks(BULK_CONCURRENCY) {
        let appends = chunk.iter().map(|(id, event)| {
            let stream = assertion_stream(id);
            let ctx = &ctx;
            let store = write.store.as_ref();
            async move { append_new(store, &stream, ctx, std::slice::from_ref(event)).await }
        });
        for result in join_all(appends).await {
            position = position.max(result?.position);
        }
    }
    settle(&read, position).await;
    let views: Vec<AssertionView> = plan
        .issue
        .iter()
        .filter_map(|(_, event)| AssertionView::issued(event.clone()))
        .collect();
    // One credential for the whole request.
    let credential = read.models.credential(&platform, &path.entity_id);
    let base = wire::base_url(&req);
    let issued: Vec<_> = views
        .iter()
        .map(|view| wire::assertion(&base, view, credential.as_ref(), now))
        .collect();
    let skipped: Vec<Value> = plan
        .skipped
        .iter()
        .map(|s| {
            json!({
                "recipient": {"email": s.recipient.email, "username": s.recipient.username, "name": s.recipient.name},
                "reason": s.reason,
            })
        })
        .collect();
    #[derive(serde::Serialize)]
    struct Bulk<'a> {
        issued: Vec<wire::Assertion<'a>>,
        skipped: Vec<Value>,
    }
    Ok(written(
        &read,
        StatusCode::OK,
        position,
        Bulk { issued, skipped },
    ))
}

/// The ids a bulk request may give its assertions, in order: random, or
/// derived from the `Idempotency-Key`'s seed so that a retry reuses them.
fn bulk_ids(seed: Uuid, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| entity_id(seed, &format!("bulk\n{i}")))
        .collect()
}

pub async fn update_assertion(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    path: web::Path<OrgUserEntity>,
    body: JsonBody<RevokeBody>,
) -> Result<HttpResponse, ApiError> {
    let Begun {
        platform,
        tag,
        replay,
        ..
    } = begin(&req, &read, &principal, &path.org, &body.hash()).await?;
    // The assertion as its stream has it, not as the read models may not
    // show it yet (an issue just answered).
    let stream = assertion_stream(&path.entity_id);
    let (state, _) = crate::handler::load::<AssertionAggregate>(write.store.as_ref(), &stream)
        .await
        .map_err(ApiError::from)?;
    let current = state
        .get()
        .filter(|a| a.platform == platform)
        .ok_or_else(ApiError::not_found)?;
    if let Some(record) = replay {
        return assertion_answer(&req, &read, record.position, &path.entity_id).await;
    }
    match body.value.revoked {
        Some(true) => {}
        Some(false) if current.revocation.is_some() => {
            return Err(ApiError::field(
                "revoked",
                "A revoked assertion cannot be reinstated.",
            ));
        }
        // Nothing to change: answer the assertion as it is.
        _ => return written_answer(&req, &read, 0, Some(current)),
    }
    let reason = body.value.revocation_reason.unwrap_or_default();
    if reason.trim().is_empty() {
        return Err(ApiError::field(
            "revocationReason",
            "A reason is required to revoke an assertion.",
        ));
    }
    let command = AssertionCommand::Revoke {
        reason,
        now: Utc::now(),
    };
    judge_and_claim::<AssertionAggregate>(
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
    let outcome = execute::<AssertionAggregate>(&write.store, &stream, &ctx, command).await?;
    settle(&read, outcome.position()).await;
    written_answer(&req, &read, outcome.position(), outcome.state.get())
}
