//! What every write route does around its command: the command context, the
//! `Idempotency-Key`, and answering only once the read models have caught up.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use ibl_edge::extract::Principal;
use ibl_edge::request::{platform_of, Params};
use ibl_edge::{ApiError, ClientRequestId, ReadState, RequestId};
use ibl_events::{Actor, EventStore, IdempotencyTag};
use ibl_projections::assertions::IdempotencyRecord;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use crate::domain::credential::CredentialState;
use crate::domain::{Rejection, RejectionKind};
use crate::handler::{CommandContext, CommandError, StateCache};
use crate::id_blocks::IdBlocks;
use crate::idempotency::claim;
use uuid::Uuid;

/// A command's failure as the API answers it: the one mapping from the
/// handler's errors to HTTP.
impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Rejected {
                kind,
                message,
                field,
            } => match kind {
                RejectionKind::NotFound => ApiError::NotFound(message),
                RejectionKind::Conflict => ApiError::Conflict(message),
                RejectionKind::Gone => ApiError::Gone(message),
                RejectionKind::Forbidden => ApiError::Forbidden(message),
                RejectionKind::Invalid => match field {
                    Some(field) => {
                        let message = message
                            .strip_prefix(&format!("{field}: "))
                            .unwrap_or(&message);
                        ApiError::field(field, message)
                    }
                    None => ApiError::BadRequest(message),
                },
            },
            CommandError::Store(e) => e.into(),
            CommandError::Undecodable(what) => {
                ApiError::Internal(format!("undecodable event {what}"))
            }
        }
    }
}

/// A rejected command, as the API answers it (for routes that judge a
/// command themselves).
pub fn rejected<E: Rejection>(e: E) -> ApiError {
    CommandError::rejected(e).into()
}

/// What the write routes need besides the read side.
pub struct WriteState {
    pub store: Arc<dyn EventStore>,
    /// Credentials consulted by every issue.
    pub credentials: StateCache<CredentialState>,
    /// Integer ids, handed out from blocks this process holds.
    pub ids: IdBlocks,
}

impl WriteState {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            credentials: StateCache::default(),
            ids: IdBlocks::default(),
        }
    }
}

/// How long a write waits for the read models before it answers anyway.
const SETTLE: Duration = Duration::from_secs(5);

/// The context of a command sent with `principal`'s key: the actor is the
/// key's owner and the key; the correlation id is the server's request id.
pub fn context(
    req: &HttpRequest,
    principal: &Principal,
    idempotency: Option<IdempotencyTag>,
) -> CommandContext {
    let extensions = req.extensions();
    CommandContext {
        actor: Actor {
            platform: Some(principal.platform.key.clone()),
            user: Some(principal.key.username.clone()),
            key_name: Some(principal.key.name.clone()),
            on_behalf_of: None,
        },
        correlation_id: extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        client_request_id: extensions.get::<ClientRequestId>().map(|c| c.0.clone()),
        causation_id: None,
        idempotency,
    }
}

/// The context of a command whose path names `user` (an integer id or a
/// username) as the one it acts for: recorded as `on_behalf_of` when it is
/// a real user of `platform` other than the key's owner, never as the
/// actor.
pub fn context_for(
    req: &HttpRequest,
    read: &ReadState,
    principal: &Principal,
    platform: &str,
    user: &str,
    idempotency: Option<IdempotencyTag>,
) -> CommandContext {
    let mut ctx = context(req, principal, idempotency);
    let named = match user.parse::<u64>() {
        Ok(id) => read.rbac.user(platform, id),
        Err(_) => read
            .rbac
            .user_by_username(platform, user)
            .filter(|u| u.username == user),
    };
    ctx.actor.on_behalf_of = named
        .filter(|u| u.id != principal.key.user_id)
        .map(|u| u.username);
    ctx
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

/// The `Idempotency-Key` of a write on `platform`: 422 when the read models
/// show the key used there for another request (racing requests are told
/// apart when the key is claimed: [`claim_key`]).
pub async fn idempotency(
    req: &HttpRequest,
    read: &ReadState,
    platform: &str,
    body_hash: &str,
) -> Result<Option<IdempotencyTag>, ApiError> {
    let tag = idempotency_tag(req, body_hash)?;
    earlier(read, platform, tag.as_ref()).await?;
    Ok(tag)
}

/// Claims the request's `Idempotency-Key` (see [`crate::idempotency`]) with
/// the random `seed` its ids derive from, once its command was judged
/// acceptable, so that a refused request claims nothing. Answers the seed
/// to use: this one, or that of an earlier request with the same body; 422
/// when the key is held by a request with another body, even one racing
/// this one. Without a key: `seed`.
pub async fn claim_key(
    req: &HttpRequest,
    write: &WriteState,
    principal: &Principal,
    platform: &str,
    tag: Option<&IdempotencyTag>,
    seed: Uuid,
) -> Result<Uuid, ApiError> {
    match tag {
        Some(tag) => {
            let ctx = context(req, principal, None);
            claim(write.store.as_ref(), &ctx, platform, tag, seed).await
        }
        None => Ok(seed),
    }
}

/// For a create: judges the command `make(seed)` builds on an empty
/// stream, then claims the key with a fresh seed; answers the seed to build
/// the command from (an earlier request's, for a retry). A refused command
/// claims nothing.
pub async fn judged_create<A, F>(
    req: &HttpRequest,
    write: &WriteState,
    principal: &Principal,
    platform: &str,
    tag: Option<&IdempotencyTag>,
    make: F,
) -> Result<Uuid, ApiError>
where
    A: crate::domain::Aggregate,
    F: Fn(Uuid) -> A::Command,
{
    let seed = crate::idempotency::new_seed();
    A::decide(&A::State::default(), make(seed)).map_err(rejected)?;
    claim_key(req, write, principal, platform, tag, seed).await
}

/// For a keyed write to an existing stream: judges `command` on the
/// stream's current state, then claims the key (a refused command claims
/// nothing). Without a key: nothing to do, no read.
#[allow(clippy::too_many_arguments)]
pub async fn judge_and_claim<A>(
    req: &HttpRequest,
    write: &WriteState,
    principal: &Principal,
    platform: &str,
    tag: Option<&IdempotencyTag>,
    stream: &str,
    command: &A::Command,
) -> Result<(), ApiError>
where
    A: crate::domain::Aggregate,
    A::Command: Clone,
{
    if tag.is_none() {
        return Ok(());
    }
    let (state, _) = crate::handler::load::<A>(write.store.as_ref(), stream).await?;
    A::decide(&state, command.clone()).map_err(rejected)?;
    claim_key(req, write, principal, platform, tag, Uuid::new_v4()).await?;
    Ok(())
}

/// The earlier request under the same key, if any: `Ok(Some)` when it had the
/// same hash (answer as then), an error when the key was used for another
/// request.
async fn earlier(
    read: &ReadState,
    platform: &str,
    tag: Option<&IdempotencyTag>,
) -> Result<Option<IdempotencyRecord>, ApiError> {
    let Some(tag) = tag else { return Ok(None) };
    match read.assertions.idempotency(platform, &tag.key).await? {
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
/// `Idempotency-Key` up (422 when the read models show it used with another
/// body; a replay when they show it used with this one).
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
    let replay = earlier(read, &platform, tag.as_ref()).await?;
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
/// `ibl_edge::position`).
pub fn written(
    read: &ReadState,
    status: StatusCode,
    position: u64,
    body: impl serde::Serialize,
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
