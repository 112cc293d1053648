//! The audit routes.
//!
//! * Public (they show only hashes, so they need no key): the latest
//!   signed checkpoint of the Merkle tree over the log, and RFC 9162
//!   inclusion and consistency proofs against any size of it: a learner
//!   proves their assertion is in the log, an auditor who kept an old
//!   checkpoint proves the log only grew since.
//! * The history of a platform, for its auditors (`Ibl.Core/Audit/read` on
//!   `/platforms/{pk}/audit/`; tenant admins hold it through `Ibl.*`): its
//!   events in log order, or one entity's, each as the Merkle tree hashed
//!   it (see `ibl_projections::audit_log::record`), cursor-paginated
//!   (`after` a position, `page_size` up to 1,000, a `next` URL) and
//!   filtered by time (`from`, `to`, RFC 3339), `actor` (a username or a
//!   key's name) and `type`.
//!
//! Served by the process that keeps the audit log (`ibl serve`, the
//! projections process); elsewhere they answer 404.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::DateTime;
use ibl_audit::{Hash, MerkleError};
use ibl_edge::extract::Principal;
use ibl_edge::paging::url_with;
use ibl_edge::request::{fresh, wait, wanted, Params};
use ibl_edge::route;
use ibl_edge::routes::{Route, AUDIT};
use ibl_edge::{ApiError, AuditAccess, ReadState};
use ibl_events::{Position, RecordedEvent};
use ibl_projections::audit_log::{record, AuditLog, FeedFilter};
use ibl_projections::rbac::RbacModel;
use serde_json::{json, Value};

pub fn table() -> Vec<Route> {
    vec![
        route!(GET "/api/audit/checkpoint", "audit_checkpoint_retrieve", AUDIT, Public, "The latest signed checkpoint of the log's Merkle tree (origin, size, root, signed note, public key)", checkpoint),
        route!(GET "/api/audit/proof/inclusion", "audit_proof_inclusion_retrieve", AUDIT, Public, "RFC 9162 inclusion proof of leaf_index in the tree of tree_size leaves", inclusion),
        route!(GET "/api/audit/proof/consistency", "audit_proof_consistency_retrieve", AUDIT, Public, "RFC 9162 consistency proof from the tree of `from` leaves to that of `to`", consistency),
        route!(GET "/api/audit/orgs/{org}/events/", "audit_orgs_events_list", AUDIT, ApiKey, "The platform's events in log order (after, from, to, actor, type, page_size)", events).guarded("read", "/platforms/{pk}/audit/"),
        route!(GET "/api/audit/orgs/{org}/verify/", "audit_orgs_verify_retrieve", AUDIT, ApiKey, "ibl verify's check of the platform's events: the latest checkpoint's signature and root, then each recorded event recomputed from the store (after, page_size)", verify).guarded("read", "/platforms/{pk}/audit/"),
        route!(POST "/api/audit/permissions/check/", "audit_permissions_check_create", AUDIT, ApiKey, "The permission check at a past time (at or at_position required): the body and answer of POST /api/core/rbac/permissions/check/", crate::rbac::check_permissions; Some("200")),
        route!(GET "/api/audit/orgs/{org}/access/", "audit_orgs_access_list", AUDIT, ApiKey, "Who held an action on a resource at a time (resource, action, at or at_position), and through which policy, role and group", access_at).guarded("read", "/platforms/{pk}/audit/"),
        route!(GET "/api/audit/orgs/{org}/{kind}/{id}/", "audit_orgs_state_retrieve", AUDIT, ApiKey, "An entity as the API answered for it at a time (at or at_position): credentials, assertions, issuers, users, api-keys, roles, groups, policies", state_at).guarded("read", "/platforms/{pk}/audit/"),
        route!(GET "/api/audit/orgs/{org}/{kind}/{id}/history/", "audit_orgs_history_list", AUDIT, ApiKey, "The events of one entity (kind: credentials, assertions, issuers, roles, groups, policies, users, api-keys)", history).guarded("read", "/platforms/{pk}/audit/"),
    ]
}

fn log_of(read: &ReadState) -> Result<Arc<AuditLog>, ApiError> {
    access_of(read).map(|a| a.log)
}

fn access_of(read: &ReadState) -> Result<AuditAccess, ApiError> {
    read.audit.clone().ok_or_else(|| {
        ApiError::NotFound(
            "This service keeps no audit log: ask the projections process (or `ibl serve`).".into(),
        )
    })
}

/// Runs the audit log's `f` (it reads or writes its file) off the async
/// threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::Internal)
}

/// A proof, computed off the async workers (it reads leaves from the
/// audit log's file). Sizes or indexes beyond the tree are the client's
/// error; leaves the file cannot give (or gives altered) are answered 503
/// and logged.
async fn proof(
    log: Arc<AuditLog>,
    f: impl FnOnce(&AuditLog) -> Result<Vec<Hash>, MerkleError> + Send + 'static,
) -> Result<Vec<Hash>, ApiError> {
    let size = log.size();
    let outcome = blocking(move || Ok(f(&log))).await?;
    outcome.map_err(|e| match e {
        MerkleError::LeavesUnavailable { .. } => {
            tracing::error!(target: "ibl::audit", error = %e, "computing a proof");
            ApiError::Unavailable(format!("The proof cannot be computed: {e}."))
        }
        e => ApiError::BadRequest(format!("{e} (the tree has {size} leaves)")),
    })
}

/// A required parameter, a whole number.
fn number(params: &Params, name: &str) -> Result<u64, ApiError> {
    let text = params
        .get(name)
        .ok_or_else(|| ApiError::field(name, "This field is required."))?;
    text.parse()
        .map_err(|_| ApiError::field(name, "A whole number of 0 or more is required."))
}

fn hashes(proof: &[Hash]) -> Vec<String> {
    proof.iter().map(|h| STANDARD.encode(h)).collect()
}

/// The latest signed checkpoint; the first is signed here when the log has
/// events but none was signed yet.
pub async fn checkpoint(read: web::Data<ReadState>) -> Result<HttpResponse, ApiError> {
    let log = log_of(&read)?;
    if log.latest().is_none() {
        // (None also when the periodic signer got there first.)
        let signing = log.clone();
        blocking(move || signing.sign()).await?;
    }
    let c = log.latest().ok_or_else(|| {
        ApiError::NotFound("The log is empty: there is no checkpoint yet.".into())
    })?;
    Ok(HttpResponse::Ok().json(json!({
        "origin": log.origin(),
        "size": c.size,
        "root": STANDARD.encode(c.root),
        "note": c.note,
        "public_key": STANDARD.encode(log.public_key()),
        "vkey": log.vkey(),
    })))
}

pub async fn inclusion(
    req: HttpRequest,
    read: web::Data<ReadState>,
) -> Result<HttpResponse, ApiError> {
    let log = log_of(&read)?;
    let params = Params::of(&req)?;
    let (index, size) = (
        number(&params, "leaf_index")?,
        number(&params, "tree_size")?,
    );
    let proof = proof(log, move |log| log.inclusion(index, size)).await?;
    Ok(HttpResponse::Ok().json(json!({
        "leaf_index": index,
        "tree_size": size,
        "hashes": hashes(&proof),
    })))
}

pub async fn consistency(
    req: HttpRequest,
    read: web::Data<ReadState>,
) -> Result<HttpResponse, ApiError> {
    let log = log_of(&read)?;
    let params = Params::of(&req)?;
    let (from, to) = (number(&params, "from")?, number(&params, "to")?);
    let proof = proof(log, move |log| log.consistency(from, to)).await?;
    Ok(HttpResponse::Ok().json(json!({
        "from": from,
        "to": to,
        "hashes": hashes(&proof),
    })))
}

/// The audit log, once it has read the position the request waits for
/// (`X-Min-Position`, or the last commit with strong reads).
async fn audit_fresh(req: &HttpRequest, read: &ReadState) -> Result<AuditAccess, ApiError> {
    let access = access_of(read)?;
    if let Some(position) = wanted(req, read).await? {
        wait(read, &access.progress, position).await?;
    }
    Ok(access)
}

/// The largest page of events.
const MAX_PAGE: usize = 1_000;
const DEFAULT_PAGE: usize = 100;

/// A cursor's `after` (a position, default 0) and `page_size` (`default`,
/// at most `max`) from the query string.
fn cursor(params: &Params, default: usize, max: usize) -> Result<(Position, usize), ApiError> {
    let after = match params.get("after") {
        Some(_) => number(params, "after")?,
        None => 0,
    };
    let page_size = match params.get("page_size") {
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::field(
                    "page_size",
                    format!("A whole number from 1 to {max} is required."),
                )
            })?,
        None => default,
    };
    Ok((after, page_size))
}

/// The feed's filter and page size from the query string.
fn feed_filter(params: &Params, platform: &str) -> Result<(FeedFilter, usize), ApiError> {
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        params
            .get(name)
            .map(|t| {
                DateTime::parse_from_rfc3339(t)
                    .map(|t| t.timestamp_micros())
                    .map_err(|_| {
                        ApiError::field(
                            name,
                            "An RFC 3339 time is required (2026-01-31T12:00:00Z).",
                        )
                    })
            })
            .transpose()
    };
    let (after, page_size) = cursor(params, DEFAULT_PAGE, MAX_PAGE)?;
    Ok((
        FeedFilter {
            platform: platform.to_owned(),
            after,
            from: time("from")?,
            to: time("to")?,
            actor: params.get("actor").map(str::to_owned),
            event_type: params.get("type").map(str::to_owned),
        },
        page_size,
    ))
}

/// Whether `event` passes the filter (the feed's SQL applies the same).
fn passes(filter: &FeedFilter, event: &RecordedEvent) -> bool {
    let time = event.recorded_at.timestamp_micros();
    let actor = &event.metadata.actor;
    event.position > filter.after
        && event.platform() == Some(filter.platform.as_str())
        && filter.from.is_none_or(|from| time >= from)
        && filter.to.is_none_or(|to| time < to)
        && filter
            .event_type
            .as_ref()
            .is_none_or(|t| *t == event.event_type)
        && filter
            .actor
            .as_ref()
            .is_none_or(|a| actor.user.as_ref() == Some(a) || actor.key_name.as_ref() == Some(a))
}

/// A page of records: `{"results": [...], "next": URL or null}`; `next`
/// continues after the page's last event when the page is full. `leaves`
/// holds each event's position and leaf index, by position.
fn page(
    req: &HttpRequest,
    leaves: &[(Position, u64)],
    events: &[RecordedEvent],
    more: bool,
) -> HttpResponse {
    let leaf_index = |position: Position| {
        leaves
            .binary_search_by_key(&position, |(p, _)| *p)
            .ok()
            .map(|i| leaves[i].1)
    };
    let results: Vec<Value> = events
        .iter()
        .map(|e| record(e, leaf_index(e.position)))
        .collect();
    let next = match events.last() {
        Some(last) if more => Some(url_with(req, "after", &last.position.to_string())),
        _ => None,
    };
    HttpResponse::Ok().json(json!({"results": results, "next": next}))
}

/// Positions at most this far apart are read in one range (the events
/// between are read and dropped): one read of a few thousand events costs
/// less than a few hundred reads of one. (On a store whose positions are
/// not dense the ranges are shorter, never wrong.)
const GAP: u64 = 64;
/// The most events one read of the store asks for.
const SPAN: u64 = 4096;

/// The events at `positions` (ascending), read from the store by ranges
/// that cover runs of near positions.
async fn events_at(
    access: &AuditAccess,
    positions: &[Position],
) -> Result<Vec<RecordedEvent>, ApiError> {
    let mut out = Vec::with_capacity(positions.len());
    let mut i = 0;
    while i < positions.len() {
        let start = positions[i];
        let mut j = i + 1;
        while j < positions.len()
            && positions[j] - positions[j - 1] <= GAP
            && positions[j] - start < SPAN
        {
            j += 1;
        }
        let end = positions[j - 1];
        let wanted = &positions[i..j];
        let mut after = start - 1;
        while after < end {
            let batch = access
                .store
                .read_all(after, (end - after).min(SPAN) as usize)
                .await?;
            let Some(last) = batch.last().map(|e| e.position) else {
                break;
            };
            out.extend(
                batch
                    .into_iter()
                    .filter(|e| e.position <= end && wanted.binary_search(&e.position).is_ok()),
            );
            after = last;
        }
        i = j;
    }
    Ok(out)
}

/// `GET /api/audit/orgs/{org}/events/`: the platform's events in log order.
pub async fn events(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    org: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_platform(&org)?;
    let params = Params::of(&req)?;
    let (filter, page_size) = feed_filter(&params, &org)?;
    let access = audit_fresh(&req, &read).await?;
    let log = access.log.clone();
    let mut found = blocking(move || log.feed(&filter, page_size + 1)).await?;
    let more = found.len() > page_size;
    found.truncate(page_size);
    let positions: Vec<Position> = found.iter().map(|(p, _)| *p).collect();
    let events = events_at(&access, &positions).await?;
    Ok(page(&req, &found, &events, more))
}

/// The largest page of a platform's events `verify/` checks at once.
const MAX_VERIFY_PAGE: usize = 100_000;
const DEFAULT_VERIFY_PAGE: usize = 10_000;

/// `GET /api/audit/orgs/{org}/verify/`: the check `ibl verify` makes, of
/// the platform's events: the latest signed checkpoint (its signature by
/// the log's key, its root that of the recorded leaves), then each of the
/// platform's recorded events after `after`, a page at a time, recomputed
/// from the store and compared with its leaf. It names the first event
/// altered, deleted or with another in its place, and never another
/// platform's stream. Events inserted between recorded ones, or the log
/// beyond the platform, are `ibl verify`'s to find (it reads every event).
pub async fn verify(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    org: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    use ibl_projections::audit_verify::{compare_recorded, Problem};
    principal.require_platform(&org)?;
    let params = Params::of(&req)?;
    let (after, page_size) = cursor(&params, DEFAULT_VERIFY_PAGE, MAX_VERIFY_PAGE)?;
    let access = audit_fresh(&req, &read).await?;
    let (log, platform) = (access.log.clone(), org.clone());
    let (checkpoint, mut leaves) = blocking(move || {
        Ok((
            log.check_latest(),
            log.leaves_of(&platform, after, page_size + 1)?,
        ))
    })
    .await?;
    let more = leaves.len() > page_size;
    leaves.truncate(page_size);
    let positions: Vec<Position> = leaves.iter().map(|(_, l)| l.position).collect();
    let found = events_at(&access, &positions).await?;
    let problem = compare_recorded(&leaves, &found).map(|problem| {
        let detail = match &problem {
            // The event in its place may be another platform's: not named.
            Problem::Reordered {
                recorded,
                leaf_index,
                ..
            } => format!(
                "the event recorded at {recorded} (leaf {leaf_index}) has another event in its place"
            ),
            other => other.to_string(),
        };
        let (leaf_index, position) = problem.place().unzip();
        json!({"kind": problem.kind(), "leaf_index": leaf_index, "position": position, "detail": detail})
    });
    let checked = match (&problem, leaves.last()) {
        (None, Some((_, last))) if more => {
            Some(url_with(&req, "after", &last.position.to_string()))
        }
        _ => None,
    };
    let (signed, checkpoint_problem) = match &checkpoint {
        Ok(Some(c)) => (
            json!({"size": c.size, "root": STANDARD.encode(c.root), "valid": true}),
            None,
        ),
        Ok(None) => (Value::Null, None),
        Err(why) => (json!({"valid": false, "detail": why}), Some(why)),
    };
    Ok(HttpResponse::Ok().json(json!({
        "verified": problem.is_none() && checkpoint_problem.is_none(),
        "checkpoint": signed,
        "vkey": access.log.vkey(),
        "checked": leaves.len(),
        "after": after,
        "last_position": leaves.last().map(|(_, l)| l.position),
        "problem": problem,
        "next": checked,
    })))
}

#[derive(serde::Deserialize)]
pub struct EntityPath {
    pub org: String,
    pub kind: String,
    pub id: String,
}

/// The stream of the entity `kind`/`id` of `platform`.
fn entity_stream(platform: &str, kind: &str, id: &str) -> Result<String, ApiError> {
    use ibl_events::{credentials, platform as p, rbac};
    let number = || {
        id.parse::<u64>()
            .map_err(|_| ApiError::NotFound(format!("No {kind} has the id {id:?}.")))
    };
    Ok(match kind {
        "credentials" => credentials::credential_stream(id),
        "assertions" => credentials::assertion_stream(id),
        "issuers" => credentials::issuer_stream(id),
        "roles" => rbac::role_stream(number()?),
        "groups" => rbac::group_stream(number()?),
        "policies" => rbac::policy_stream(number()?),
        "users" => p::user_stream(number()?),
        "api-keys" => p::api_key_stream(platform, id),
        _ => {
            return Err(ApiError::NotFound(format!(
                "Unknown kind {kind:?}: one of credentials, assertions, issuers, roles, groups, policies, users, api-keys."
            )))
        }
    })
}

/// `GET /api/audit/orgs/{org}/{kind}/{id}/history/`: one entity's events
/// (those of the platform, and only those the audit log has hashed).
pub async fn history(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    path: web::Path<EntityPath>,
) -> Result<HttpResponse, ApiError> {
    principal.require_platform(&path.org)?;
    let params = Params::of(&req)?;
    let (filter, page_size) = feed_filter(&params, &path.org)?;
    let stream = entity_stream(&path.org, &path.kind, &path.id)?;
    let access = audit_fresh(&req, &read).await?;
    let hashed = ibl_projections::ReadModel::checkpoint(access.log.as_ref());
    let all = ibl_events::read_stream_all(access.store.as_ref(), &stream).await?;
    if !all.iter().any(|e| e.platform() == Some(path.org.as_str())) {
        return Err(ApiError::NotFound(format!(
            "No {} {:?} on this platform.",
            path.kind, path.id
        )));
    }
    let mut shown: Vec<RecordedEvent> = all
        .into_iter()
        .filter(|e| e.position <= hashed && passes(&filter, e))
        .take(page_size + 1)
        .collect();
    let more = shown.len() > page_size;
    shown.truncate(page_size);
    let (log, platform) = (access.log.clone(), path.org.clone());
    let positions: Vec<Position> = shown.iter().map(|e| e.position).collect();
    let leaves = blocking(move || log.leaf_indexes(&platform, &positions)).await?;
    Ok(page(&req, &leaves, &shown, more))
}

/// How many past RBAC models are kept (the positions last asked for).
const PAST_MODELS: usize = 4;

/// The position a past-time request names: `at_position`, or the last
/// event recorded at or before `at` (RFC 3339); `None` when it names
/// neither. A position the audit log has not read yet is waited for (as
/// `X-Min-Position` is); one past the store's head is a 400.
pub async fn past_position(
    read: &ReadState,
    at: Option<&str>,
    at_position: Option<u64>,
) -> Result<Option<Position>, ApiError> {
    let access = match (at, at_position) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(ApiError::field("at", "Give at or at_position, not both."));
        }
        _ => access_of(read)?,
    };
    let position = match (at, at_position) {
        (_, Some(p)) => {
            let head = access.store.last_committed().await?;
            if p > head {
                return Err(ApiError::field(
                    "at_position",
                    "That position is beyond the log's last event.",
                ));
            }
            wait(read, &access.progress, p).await?;
            p
        }
        (Some(text), None) => {
            let time = DateTime::parse_from_rfc3339(text)
                .map_err(|_| {
                    ApiError::field("at", "An RFC 3339 time is required (2026-01-31T12:00:00Z).")
                })?
                .timestamp_micros();
            let log = access.log.clone();
            blocking(move || log.position_at(time)).await?
        }
        (None, None) => unreachable!("answered above"),
    };
    Ok(Some(position))
}

/// [`past_position`] of the query string's `at` or `at_position`.
async fn asked_position(read: &ReadState, params: &Params) -> Result<Option<Position>, ApiError> {
    let at_position = match params.get("at_position") {
        Some(_) => Some(number(params, "at_position")?),
        None => None,
    };
    past_position(read, params.get("at"), at_position).await
}

/// The RBAC model as it was at `position`: the RBAC events up to it (found
/// by the evidence file's index) folded into a new model, or onto a copy of
/// the latest kept model before it (an auditor walking forward through
/// history folds each step's events only). The last few are kept, by the
/// position of their last RBAC event, so that times between the same two
/// RBAC writes share one.
pub async fn rbac_at(read: &ReadState, position: Position) -> Result<Arc<RbacModel>, ApiError> {
    let access = access_of(read)?;
    let key = access.log.last_rbac_position(position);
    let cached = |access: &AuditAccess| {
        let past = access.past.lock().unwrap_or_else(|p| p.into_inner());
        past.iter().find(|(k, _)| *k == key).map(|(_, m)| m.clone())
    };
    if let Some(model) = cached(&access) {
        return Ok(model);
    }
    // Folded on from the latest kept model before it, else from 0.
    let earlier = {
        let past = access.past.lock().unwrap_or_else(|p| p.into_inner());
        past.iter()
            .filter(|(k, _)| *k < key)
            .max_by_key(|(k, _)| *k)
            .map(|(k, m)| (*k, m.clone()))
    };
    let (from, base) = earlier.unwrap_or_else(|| (0, Arc::new(RbacModel::past())));
    let positions = access.log.rbac_positions(from, key);
    let events = events_at(&access, &positions).await?;
    let model = blocking(move || {
        let model = base.duplicate();
        ibl_projections::ReadModel::apply(&model, &events);
        Ok(model)
    })
    .await?;
    let model = Arc::new(model);
    let mut past = access.past.lock().unwrap_or_else(|p| p.into_inner());
    if !past.iter().any(|(k, _)| *k == key) {
        if past.len() >= PAST_MODELS {
            past.remove(0);
        }
        past.push((key, model.clone()));
    }
    Ok(model)
}

/// `GET /api/audit/orgs/{org}/access/?resource=&action=&at=`: who held
/// `action` on `resource` at that time (or `at_position`; now when
/// neither), and through which policy, role and group.
pub async fn access_at(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    org: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_platform(&org)?;
    let params = Params::of(&req)?;
    fresh(&req, &read).await?;
    let model = match asked_position(&read, &params).await? {
        Some(p) => Some(rbac_at(&read, p).await?),
        None => None,
    };
    let access: &dyn ibl_projections::rbac::RbacQueries = match &model {
        Some(m) => m.as_ref(),
        None => read.access.as_ref(),
    };
    crate::rbac::access_page(&req, &params, access, &org).await
}

/// The events of `stream` up to `position`.
async fn stream_at(
    access: &AuditAccess,
    stream: &str,
    position: Position,
) -> Result<Vec<RecordedEvent>, ApiError> {
    let mut events = ibl_events::read_stream_all(access.store.as_ref(), stream).await?;
    events.retain(|e| e.position <= position);
    Ok(events)
}

/// The events of `stream` up to `position`, folded into a model of their
/// own (a credential, an issuer, a user or an API key).
async fn folded(
    access: &AuditAccess,
    stream: &str,
    position: Position,
) -> Result<ibl_projections::credentials::CredentialsModel, ApiError> {
    let model = ibl_projections::credentials::CredentialsModel::new();
    ibl_projections::ReadModel::apply(&model, &stream_at(access, stream, position).await?);
    Ok(model)
}

/// When the event at `position` was recorded.
async fn time_of(
    access: &AuditAccess,
    position: Position,
) -> Result<DateTime<chrono::Utc>, ApiError> {
    let event = access.store.read_all(position.saturating_sub(1), 1).await?;
    Ok(event
        .first()
        .map_or(DateTime::UNIX_EPOCH, |e| e.recorded_at))
}

/// `GET /api/audit/orgs/{org}/{kind}/{id}/?at=TIME` (or `at_position`;
/// now when neither): the entity as the API answered for it then, folded
/// from its events up to that position, in the same JSON shape (roles,
/// groups and policies from the RBAC model of then; credentials, issuers,
/// users and API keys from their own streams; an assertion from its own
/// and its credential's, its status as it was then). 404 when it did not
/// exist then.
pub async fn state_at(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
    path: web::Path<EntityPath>,
) -> Result<HttpResponse, ApiError> {
    use ibl_edge::rbac::{group, policy, role, visible_group, visible_policy, visible_role};
    use ibl_projections::rbac::RbacQueries;
    principal.require_platform(&path.org)?;
    let params = Params::of(&req)?;
    let access = audit_fresh(&req, &read).await?;
    let position = match asked_position(&read, &params).await? {
        Some(p) => p,
        // Now: the store's last event, once the audit log has read it (the
        // RBAC model of then is folded from the positions it keeps).
        None => {
            let head = access.store.last_committed().await?;
            wait(&read, &access.progress, head).await?;
            head
        }
    };
    let platform = path.org.as_str();
    let gone = || {
        ApiError::NotFound(format!(
            "No {} {:?} on this platform then.",
            path.kind, path.id
        ))
    };
    let number = || path.id.parse::<u64>().map_err(|_| gone());
    let base = ibl_edge::wire::base_url(&req);
    let body = match path.kind.as_str() {
        "roles" | "groups" | "policies" => {
            let model = rbac_at(&read, position).await?;
            let model: &dyn RbacQueries = model.as_ref();
            match path.kind.as_str() {
                "roles" => role(&visible_role(model.role(platform, number()?).await?)?),
                "groups" => group(&visible_group(model.group(platform, number()?).await?)?, true),
                _ => policy(&visible_policy(model.policy(platform, number()?).await?)?, true, true),
            }
        }
        "credentials" | "issuers" | "users" | "api-keys" => {
            let stream = entity_stream(platform, &path.kind, &path.id)?;
            let model = folded(&access, &stream, position).await?;
            match path.kind.as_str() {
                "credentials" => ibl_edge::wire::credential(
                    &base,
                    &model.credential(platform, &path.id).ok_or_else(gone)?,
                ),
                "issuers" => ibl_edge::wire::issuer(
                    &base,
                    &model.issuer(platform, &path.id).ok_or_else(gone)?,
                ),
                "api-keys" => {
                    let key = model
                        .api_keys(platform)
                        .into_iter()
                        .find(|k| k.name == path.id)
                        .ok_or_else(gone)?;
                    ibl_edge::wire::api_key(&key, &format!("{}…", key.prefix))
                }
                _ => ibl_edge::scim::user(
                    &base,
                    &model
                        .user(number()?)
                        .filter(|u| u.platform == platform)
                        .ok_or_else(gone)?,
                ),
            }
        }
        "assertions" => {
            use ibl_events::DomainEvent;
            use ibl_projections::assertions::AssertionView;
            let stream = entity_stream(platform, &path.kind, &path.id)?;
            let assertion = stream_at(&access, &stream, position)
                .await?
                .iter()
                .filter_map(|e| ibl_events::credentials::AssertionEvent::from_recorded(e).ok())
                .fold(None, AssertionView::evolve)
                .filter(|a| a.platform == platform)
                .ok_or_else(gone)?;
            let credential_stream = ibl_events::credentials::credential_stream(&assertion.credential_id);
            let credential = folded(&access, &credential_stream, position)
                .await?
                .credential(platform, &assertion.credential_id);
            // Its status as it was then: valid, expired or revoked.
            let then = match params.get("at") {
                Some(at) => DateTime::parse_from_rfc3339(at)
                    .map_err(|_| ApiError::field("at", "An RFC 3339 time."))?
                    .to_utc(),
                None => time_of(&access, position).await?,
            };
            serde_json::to_value(ibl_edge::wire::assertion(
                &base,
                &assertion,
                credential.as_ref(),
                then,
            ))
            .map_err(|e| ApiError::Internal(e.to_string()))?
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "The state at a time is kept for credentials, assertions, issuers, users, API keys, roles, groups and policies, not {other:?}."
            )))
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header(("X-At-Position", position.to_string()))
        .json(body))
}
