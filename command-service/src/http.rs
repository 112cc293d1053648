//! What every write route does around its command: the command context, the
//! `Idempotency-Key`, and answering only once the read models have caught up.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use ibl_events::{Actor, EventStore, IdempotencyTag};
use ibl_projections::credentials::IdempotencyRecord;
use ibl_query_service::extract::Principal;
use ibl_query_service::routes::{platform_of, Params};
use ibl_query_service::{ApiError, ReadState, RequestId};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use crate::domain::credential::CredentialState;
use crate::handler::{CommandContext, StateCache};

/// What the write routes need besides the read side.
pub struct WriteState {
    pub store: Arc<dyn EventStore>,
    /// Credentials consulted by every issue.
    pub credentials: StateCache<CredentialState>,
}

impl WriteState {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            credentials: StateCache::default(),
        }
    }
}

/// How long a write waits for the read models before it answers anyway.
const SETTLE: Duration = Duration::from_secs(5);

/// The context of a command sent by `principal` acting as `user`.
pub fn context(
    req: &HttpRequest,
    principal: &Principal,
    user: &str,
    idempotency: Option<IdempotencyTag>,
) -> CommandContext {
    CommandContext {
        actor: Actor {
            platform: Some(principal.platform.key.clone()),
            user: Some(user.to_owned()),
            key_name: Some(principal.key.name.clone()),
        },
        correlation_id: req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        causation_id: None,
        idempotency,
    }
}

/// Reads the `Idempotency-Key` header. The request hash covers the method,
/// the path and the body, so a key reused on another route is a mismatch.
fn idempotency_tag(req: &HttpRequest, body_hash: &str) -> Result<Option<IdempotencyTag>, ApiError> {
    let Some(value) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "Idempotency-Key must be 1 to 255 visible ASCII characters.".into(),
            )
        })?;
    let mut h = Sha256::new();
    h.update(req.method().as_str());
    h.update(b"\n");
    h.update(req.path().trim_end_matches('/'));
    h.update(b"\n");
    h.update(body_hash);
    Ok(Some(IdempotencyTag {
        key: key.to_owned(),
        request_hash: hex::encode(h.finalize()),
    }))
}

/// The `Idempotency-Key` of a write on `platform`: 422 when the key was
/// already used there for another request.
pub fn idempotency(
    req: &HttpRequest,
    read: &ReadState,
    platform: &str,
    body_hash: &str,
) -> Result<Option<IdempotencyTag>, ApiError> {
    let tag = idempotency_tag(req, body_hash)?;
    earlier(read, platform, tag.as_ref())?;
    Ok(tag)
}

/// The earlier request under the same key, if any: `Ok(Some)` when it had the
/// same hash (answer as then), an error when the key was used for another
/// request.
fn earlier(
    read: &ReadState,
    platform: &str,
    tag: Option<&IdempotencyTag>,
) -> Result<Option<IdempotencyRecord>, ApiError> {
    let Some(tag) = tag else { return Ok(None) };
    match read.models.idempotency(platform, &tag.key) {
        Some(record) if record.request_hash == tag.request_hash => Ok(Some(record)),
        Some(_) => Err(ApiError::IdempotencyKeyReused),
        None => Ok(None),
    }
}

/// What every platform-scoped write starts from.
pub struct Begun {
    pub params: Params,
    /// The platform the request is about; the caller's key belongs to it.
    pub platform: String,
    pub tag: Option<IdempotencyTag>,
    /// The earlier request under the same `Idempotency-Key` and body, once
    /// the read models show it: answer as it was answered.
    pub replay: Option<IdempotencyRecord>,
}

/// Parses the query, checks the key's platform, and looks the request's
/// `Idempotency-Key` up (422 when it was used with another body).
pub async fn begin(
    req: &HttpRequest,
    read: &ReadState,
    principal: &Principal,
    org: &str,
    body_hash: &str,
) -> Result<Begun, ApiError> {
    let params = Params::of(req)?;
    let platform = platform_of(principal, org, &params)?;
    let tag = idempotency_tag(req, body_hash)?;
    let replay = earlier(read, &platform, tag.as_ref())?;
    if let Some(record) = &replay {
        settle(read, record.position).await;
    }
    Ok(Begun {
        params,
        platform,
        tag,
        replay,
    })
}

/// Waits until the read models have applied `position`, so the client's
/// next read sees its write.
pub async fn settle(read: &ReadState, position: u64) {
    if position > 0 && !read.projections.wait_for(position, SETTLE).await {
        tracing::warn!(
            position,
            "read models did not reach the write's position in time"
        );
    }
}

/// A write's answer: the status, the body and `X-Position` (a token, see
/// `ibl_query_service::position`).
pub fn written(
    read: &ReadState,
    status: StatusCode,
    position: u64,
    body: serde_json::Value,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(read.positions.header(position))
        .json(body)
}

/// `None` when absent, `Some(None)` when `null`: for fields a PUT may clear.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Runs a command that removes something, waits for the read models and
/// answers 204 with `X-Position`.
pub async fn removed<A>(
    read: &ReadState,
    write: &WriteState,
    stream: &str,
    ctx: &CommandContext,
    command: A::Command,
) -> Result<HttpResponse, ApiError>
where
    A: crate::domain::Aggregate,
    A::Command: Clone,
{
    let outcome = crate::handler::execute::<A>(&write.store, stream, ctx, command).await?;
    settle(read, outcome.position()).await;
    Ok(HttpResponse::NoContent()
        .insert_header(read.positions.header(outcome.position()))
        .finish())
}
