//! The write routes of RBAC: roles, groups, policies and mentor access.
//!
//! Every route checks what the domain cannot see (that ids in the body name
//! users, groups and roles of the caller's platform, uniqueness of a group's
//! `unique_id`) against the read models, then runs the command and answers
//! once the read models show it.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use ibl_edge::extract::{JsonBody, Principal};
use ibl_edge::rbac::{
    self as wire, path_id, platform_or_own, platform_param, visible_group, visible_policy,
    visible_role,
};
use ibl_edge::request::Params;
use ibl_edge::{ApiError, ReadState};
use ibl_events::rbac::{group_stream, policy_stream, role_stream, Grant, Via};
use ibl_events::EventStore;
use ibl_projections::rbac::{GroupView, PolicyFilter, PolicyView, RoleView};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

use crate::authority::{keeps_an_admin, makes_admin, may_add_members, may_bind, may_define_role};
use crate::domain::rbac::builtins::BuiltinRole;
use crate::domain::rbac::group::{GroupAggregate, GroupCommand, UpdateGroup};
use crate::domain::rbac::policy::{PolicyAggregate, PolicyCommand, UpdatePolicy};
use crate::domain::rbac::role::{RoleAggregate, RoleCommand, UpdateRole};
use crate::domain::Aggregate;
use crate::handler::{execute, execute_new, load, CommandContext};
use crate::http::rejected;
use crate::http::{
    claim_key, context, idempotency, judge_and_claim, removed, settle, written, WriteState,
};
use crate::reservations::{new_id, reserve, IN_FLIGHT};

/// A list of ids; `null` is an empty list.
fn ids<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    Ok(Option::<Vec<u64>>::deserialize(d)?.unwrap_or_default())
}

/// A list of strings; `null` is an empty list.
fn strings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::field(field, "This field is required."))
}

/// The platform of a write: `platform_key` of the body, else of the query,
/// else the caller's own; the caller's key must belong to it.
fn body_platform(
    req: &HttpRequest,
    principal: &Principal,
    body: Option<&String>,
) -> Result<String, ApiError> {
    let params = Params::of(req)?;
    match body.filter(|k| !k.is_empty()) {
        Some(k) => {
            principal.require_platform(k)?;
            Ok(k.clone())
        }
        None => platform_or_own(principal, &params),
    }
}

/// One write with a body of a role, group, policy or mentor access: the
/// request's parts, the platform it is about and its command context, whose
/// `Idempotency-Key` (if any) makes every retry of a create make the same
/// entity (422 when the read models show the key used for another request).
struct Call<'a> {
    req: &'a HttpRequest,
    read: &'a ReadState,
    write: &'a WriteState,
    principal: &'a Principal,
    platform: String,
    ctx: CommandContext,
}

impl<'a> Call<'a> {
    async fn new(
        req: &'a HttpRequest,
        read: &'a ReadState,
        write: &'a WriteState,
        principal: &'a Principal,
        platform: &str,
        body_hash: &str,
    ) -> Result<Self, ApiError> {
        let tag = idempotency(req, read, platform, body_hash).await?;
        Ok(Call {
            req,
            read,
            write,
            principal,
            platform: platform.to_owned(),
            ctx: context(req, principal, tag),
        })
    }

    /// Claims the request's key (a fresh seed: ids here come from blocks).
    async fn claim_key(&self) -> Result<(), ApiError> {
        let tag = self.ctx.idempotency.as_ref();
        let seed = uuid::Uuid::new_v4();
        claim_key(
            self.req,
            self.write,
            self.principal,
            &self.platform,
            tag,
            seed,
        )
        .await?;
        Ok(())
    }
}

/// The context of a removal (no body; deleting twice answers 404).
fn removal_ctx(req: &HttpRequest, principal: &Principal) -> CommandContext {
    context(req, principal, None)
}

/// Every id must name a user of `platform`: 400 on `field` otherwise.
fn check_users(read: &ReadState, platform: &str, field: &str, ids: &[u64]) -> Result<(), ApiError> {
    for id in ids {
        if read.rbac.user(platform, *id).is_none() {
            return Err(ApiError::field(
                field,
                format!("Invalid pk \"{id}\" - object does not exist."),
            ));
        }
    }
    Ok(())
}

/// Every id must name a group of `platform` a tenant may see.
fn check_groups(
    read: &ReadState,
    platform: &str,
    field: &str,
    ids: &[u64],
) -> Result<(), ApiError> {
    for id in ids {
        if visible_group(read.rbac.group(platform, *id)).is_err() {
            return Err(ApiError::field(
                field,
                format!("Invalid pk \"{id}\" - object does not exist."),
            ));
        }
    }
    Ok(())
}

fn check_role(read: &ReadState, platform: &str, id: u64) -> Result<RoleView, ApiError> {
    visible_role(read.rbac.role(platform, id)).map_err(|_| {
        ApiError::field(
            "role_id",
            format!("Invalid pk \"{id}\" - object does not exist."),
        )
    })
}

/// The platform of a delete: the required `?platform_key=`.
fn query_platform(req: &HttpRequest, principal: &Principal) -> Result<String, ApiError> {
    platform_param(principal, &Params::of(req)?)
}

/// What the write routes of roles, groups and policies share: the stream of
/// an id, what a tenant may see of it, its wire shape, its delete command.
trait Entity {
    type Aggregate: Aggregate<Command: Clone>;
    type View;
    fn stream(id: u64) -> String;
    fn visible(read: &ReadState, platform: &str, id: u64) -> Result<Self::View, ApiError>;
    fn wire(view: &Self::View) -> Value;
    fn delete(platform: String) -> <Self::Aggregate as Aggregate>::Command;
}

struct Roles;
struct Groups;
struct Policies;

impl Entity for Roles {
    type Aggregate = RoleAggregate;
    type View = RoleView;
    fn stream(id: u64) -> String {
        role_stream(id)
    }
    fn visible(read: &ReadState, platform: &str, id: u64) -> Result<RoleView, ApiError> {
        visible_role(read.rbac.role(platform, id))
    }
    fn wire(view: &RoleView) -> Value {
        wire::role(view)
    }
    fn delete(platform: String) -> RoleCommand {
        RoleCommand::Delete {
            platform,
            now: Utc::now(),
        }
    }
}

impl Entity for Groups {
    type Aggregate = GroupAggregate;
    type View = GroupView;
    fn stream(id: u64) -> String {
        group_stream(id)
    }
    fn visible(read: &ReadState, platform: &str, id: u64) -> Result<GroupView, ApiError> {
        visible_group(read.rbac.group(platform, id))
    }
    fn wire(view: &GroupView) -> Value {
        wire::group(view, true)
    }
    fn delete(platform: String) -> GroupCommand {
        GroupCommand::Delete {
            platform,
            now: Utc::now(),
        }
    }
}

impl Entity for Policies {
    type Aggregate = PolicyAggregate;
    type View = PolicyView;
    fn stream(id: u64) -> String {
        policy_stream(id)
    }
    fn visible(read: &ReadState, platform: &str, id: u64) -> Result<PolicyView, ApiError> {
        visible_policy(read.rbac.policy(platform, id))
    }
    fn wire(view: &PolicyView) -> Value {
        wire::policy(view, true, true)
    }
    fn delete(platform: String) -> PolicyCommand {
        PolicyCommand::Delete {
            platform,
            now: Utc::now(),
        }
    }
}

/// Whether a write makes its entity or changes it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    Create,
    Update,
}

/// Runs a create or an update of entity `id`, waits for the read models and
/// answers the entity as they show it (201 or 200, with `X-Position`). A
/// keyed update is judged before its key is claimed (a create's key is
/// claimed by [`create`]).
async fn apply<E: Entity>(
    call: &Call<'_>,
    id: u64,
    kind: Write,
    command: <E::Aggregate as Aggregate>::Command,
) -> Result<HttpResponse, ApiError> {
    let Call {
        req,
        read,
        write,
        principal,
        ref platform,
        ref ctx,
    } = *call;
    let stream = E::stream(id);
    if kind == Write::Update {
        let tag = ctx.idempotency.as_ref();
        judge_and_claim::<E::Aggregate>(req, write, principal, platform, tag, &stream, &command)
            .await?;
    }
    let (outcome, status) = match kind {
        Write::Create => (
            execute_new::<E::Aggregate>(&write.store, &stream, ctx, command).await?,
            StatusCode::CREATED,
        ),
        Write::Update => (
            execute::<E::Aggregate>(&write.store, &stream, ctx, command).await?,
            StatusCode::OK,
        ),
    };
    settle(read, outcome.position()).await;
    let view = E::visible(read, platform, id)?;
    Ok(written(read, status, outcome.position(), E::wire(&view)))
}

/// Creates an entity of `kind` made by `make(id)`: the body is judged
/// before the `Idempotency-Key` is claimed and an id taken (a refused body
/// appends nothing), then the id is taken (reserved under the key) and
/// `then(id)` runs before the create (a group reserves its `unique_id`
/// there).
async fn create<E: Entity>(
    call: &Call<'_>,
    kind: &str,
    make: impl Fn(u64) -> <E::Aggregate as Aggregate>::Command,
    then: impl AsyncFnOnce(u64) -> Result<(), ApiError>,
) -> Result<HttpResponse, ApiError> {
    let empty = <<E::Aggregate as Aggregate>::State as Default>::default();
    <E::Aggregate as Aggregate>::decide(&empty, make(1)).map_err(rejected)?;
    call.claim_key().await?;
    let id = new_id(call.write, &call.ctx, &call.platform, kind).await?;
    then(id).await?;
    apply::<E>(call, id, Write::Create, make(id)).await
}

/// `DELETE .../{id}/?platform_key=`: 204 once the read models show it.
/// `lost(user, grant)` names the grants the delete takes away: refused
/// (409) when no active tenant admin would be left.
async fn delete<E: Entity>(
    req: &HttpRequest,
    read: &ReadState,
    write: &WriteState,
    principal: &Principal,
    id: &str,
    lost: impl Fn(u64, u64, &Grant) -> bool,
) -> Result<HttpResponse, ApiError> {
    let platform = query_platform(req, principal)?;
    let id = path_id(id)?;
    E::visible(read, &platform, id)?;
    keeps_an_admin(read, principal, |user, g| lost(id, user, g))?;
    let ctx = removal_ctx(req, principal);
    removed::<E::Aggregate>(read, write, &E::stream(id), &ctx, E::delete(platform)).await
}

/// PUT replaces: the fields a create requires are required (PATCH changes
/// what it names).
fn require_on_put<T>(req: &HttpRequest, value: Option<&T>, field: &str) -> Result<(), ApiError> {
    if req.method() == actix_web::http::Method::PUT {
        required(value, field)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------

/// The body of role writes (`RbacRole`; read-only fields are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct RoleBody {
    platform_key: Option<String>,
    name: Option<String>,
    actions: Option<Vec<String>>,
    data_actions: Option<Vec<String>>,
}

pub async fn create_role(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    body: JsonBody<RoleBody>,
) -> Result<HttpResponse, ApiError> {
    let hash = body.hash();
    let body = body.value;
    let platform = body_platform(&req, &principal, body.platform_key.as_ref())?;
    let name = required(body.name, "name")?;
    let call = Call::new(&req, &read, &write, &principal, &platform, &hash).await?;
    let (actions, data_actions) = (
        body.actions.unwrap_or_default(),
        body.data_actions.unwrap_or_default(),
    );
    may_define_role(&read, &principal, &actions, &data_actions)?;
    let now = Utc::now();
    let make = |id| RoleCommand::Create {
        id,
        platform: platform.clone(),
        name: name.clone(),
        actions: actions.clone(),
        data_actions: data_actions.clone(),
        now,
    };
    create::<Roles>(&call, "role", make, async |_| Ok(())).await
}

pub async fn update_role(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    id: web::Path<String>,
    body: JsonBody<RoleBody>,
) -> Result<HttpResponse, ApiError> {
    let hash = body.hash();
    let body = body.value;
    let platform = body_platform(&req, &principal, body.platform_key.as_ref())?;
    let id = path_id(&id)?;
    require_on_put(&req, body.name.as_ref(), "name")?;
    let current = visible_role(read.rbac.role(&platform, id))?;
    if body.actions.is_some() || body.data_actions.is_some() {
        let actions = body.actions.as_ref().unwrap_or(&current.actions);
        let data_actions = body.data_actions.as_ref().unwrap_or(&current.data_actions);
        may_define_role(&read, &principal, actions, data_actions)?;
        let still_admin = makes_admin(actions);
        keeps_an_admin(&read, &principal, |_, g| g.role_id == id && !still_admin)?;
    }
    let call = Call::new(&req, &read, &write, &principal, &platform, &hash).await?;
    let command = RoleCommand::Update {
        platform: platform.clone(),
        changes: UpdateRole {
            name: body.name,
            actions: body.actions,
            data_actions: body.data_actions,
        },
        now: Utc::now(),
    };
    apply::<Roles>(&call, id, Write::Update, command).await
}

pub async fn delete_role(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let lost = |role, _, g: &Grant| g.role_id == role;
    let deleted = delete::<Roles>(&req, &read, &write, &principal, &id, lost).await;
    let platform = query_platform(&req, &principal)?;
    let id = path_id(&id)?;
    match &deleted {
        Ok(_) => {}
        // Deleted before: finish what that delete may have left (a 404 all
        // the same).
        Err(ApiError::NotFound(_)) if read.rbac.role_deleted(&platform, id) => {}
        Err(_) => return deleted,
    }
    // As on ibl.ai, the role's policies go with it. Each is its own stream:
    // were this interrupted, the policies left grant nothing (their role is
    // deleted) until a second DELETE of the role deletes them.
    let ctx = removal_ctx(&req, &principal);
    let filter = PolicyFilter {
        platform_key: platform.clone(),
        role_id: Some(id),
        ..PolicyFilter::default()
    };
    let mut last = None;
    for policy in read.rbac.policies(&filter, 0, usize::MAX).items {
        let command = Policies::delete(platform.clone());
        let stream = policy_stream(policy.id);
        match removed::<PolicyAggregate>(&read, &write, &stream, &ctx, command).await {
            Ok(later) => last = Some(later),
            Err(ApiError::NotFound(_) | ApiError::Gone(_)) => {}
            Err(e) => return Err(e),
        }
    }
    match (deleted, last) {
        // The answer of the last write, whose X-Position covers them all.
        (Ok(_), Some(later)) => Ok(later),
        (deleted, _) => deleted,
    }
}

// ---------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------

/// The body of group writes (`RbacGroup`; `owner`, `users` and the other
/// read-only fields are ignored, but an integer `owner` names the owner).
#[derive(Debug, Default, Deserialize)]
pub struct GroupBody {
    platform_key: Option<String>,
    unique_id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    owner: Option<Value>,
    #[serde(default, deserialize_with = "ids")]
    users_to_add: Vec<u64>,
    #[serde(default, deserialize_with = "ids")]
    users_to_remove: Vec<u64>,
}

fn unique_id_free(
    read: &ReadState,
    platform: &str,
    unique_id: &str,
    except: Option<u64>,
) -> Result<(), ApiError> {
    match read.rbac.group_by_unique_id(platform, unique_id.trim()) {
        Some(g) if Some(g.id) != except => Err(unique_id_taken(unique_id)),
        _ => Ok(()),
    }
}

fn unique_id_taken(unique_id: &str) -> ApiError {
    ApiError::Conflict(format!(
        "A group with unique_id {:?} already exists on this platform.",
        unique_id.trim()
    ))
}

/// Reserves `unique_id` on `platform` for group `id` (see
/// [`crate::reservations`]): 409 if another group holds it. The read
/// model answers first (and for groups older than reservations); the
/// reservation decides races, even between processes.
async fn reserve_unique_id(
    read: &ReadState,
    store: &Arc<dyn EventStore>,
    ctx: &CommandContext,
    platform: &str,
    unique_id: &str,
    id: u64,
) -> Result<(), ApiError> {
    unique_id_free(read, platform, unique_id, Some(id))?;
    let name = unique_id.trim();
    let holds = async |holder: u64, at: DateTime<Utc>| {
        let (state, _) = load::<GroupAggregate>(store.as_ref(), &group_stream(holder)).await?;
        Ok(match state.get() {
            None => Utc::now() - at < IN_FLIGHT,
            Some(g) => g.deleted_at.is_none() && g.unique_id.trim() == name,
        })
    };
    let holder = reserve(
        store,
        ctx,
        "group-unique-id",
        platform,
        name,
        holds,
        async || Ok(id),
    )
    .await?;
    if holder == id {
        Ok(())
    } else {
        Err(unique_id_taken(unique_id))
    }
}

pub async fn create_group(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    body: JsonBody<GroupBody>,
) -> Result<HttpResponse, ApiError> {
    let hash = body.hash();
    let body = body.value;
    let platform = body_platform(&req, &principal, body.platform_key.as_ref())?;
    let unique_id = body
        .unique_id
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let owner_id = match body.owner.as_ref().and_then(Value::as_u64) {
        Some(id) => {
            check_users(&read, &platform, "owner", &[id])?;
            id
        }
        None => principal.key.user_id,
    };
    if !body.users_to_remove.is_empty() {
        check_users(&read, &platform, "users_to_remove", &body.users_to_remove)?;
    }
    check_users(&read, &platform, "users_to_add", &body.users_to_add)?;
    let users: Vec<u64> = body
        .users_to_add
        .iter()
        .copied()
        .filter(|u| !body.users_to_remove.contains(u))
        .collect();
    let call = Call::new(&req, &read, &write, &principal, &platform, &hash).await?;
    let (name, description) = (
        body.name.unwrap_or_default(),
        body.description.unwrap_or_default(),
    );
    let now = Utc::now();
    let make = |id| GroupCommand::Create {
        id,
        platform: platform.clone(),
        unique_id: unique_id.clone(),
        name: name.clone(),
        description: description.clone(),
        owner_id,
        users: users.clone(),
        now,
    };
    let reserve = async |id| {
        reserve_unique_id(&read, &write.store, &call.ctx, &platform, &unique_id, id).await
    };
    create::<Groups>(&call, "group", make, reserve).await
}

pub async fn update_group(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    id: web::Path<String>,
    body: JsonBody<GroupBody>,
) -> Result<HttpResponse, ApiError> {
    let hash = body.hash();
    let body = body.value;
    let platform = body_platform(&req, &principal, body.platform_key.as_ref())?;
    let id = path_id(&id)?;
    require_on_put(&req, body.name.as_ref(), "name")?;
    visible_group(read.rbac.group(&platform, id))?;
    check_users(&read, &platform, "users_to_add", &body.users_to_add)?;
    check_users(&read, &platform, "users_to_remove", &body.users_to_remove)?;
    if !body.users_to_add.is_empty() {
        may_add_members(&read, &principal, &platform, id)?;
    }
    if !body.users_to_remove.is_empty() {
        let removed = &body.users_to_remove;
        keeps_an_admin(&read, &principal, |u, g| {
            removed.contains(&u) && g.via == Via::Group(id)
        })?;
    }
    let call = Call::new(&req, &read, &write, &principal, &platform, &hash).await?;
    let unique_id = body.unique_id.clone();
    let command = GroupCommand::Update {
        platform: platform.clone(),
        changes: UpdateGroup {
            unique_id: body.unique_id,
            name: body.name,
            description: body.description,
            users_to_add: body.users_to_add,
            users_to_remove: body.users_to_remove,
        },
        now: Utc::now(),
    };
    if let Some(unique_id) = unique_id {
        // Rejected before reserving, so that a bad body holds no name.
        let (state, _) = load::<GroupAggregate>(write.store.as_ref(), &group_stream(id)).await?;
        GroupAggregate::decide(&state, command.clone()).map_err(rejected)?;
        reserve_unique_id(&read, &write.store, &call.ctx, &platform, &unique_id, id).await?;
    }
    apply::<Groups>(&call, id, Write::Update, command).await
}

pub async fn delete_group(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let lost = |group, _, g: &Grant| g.via == Via::Group(group);
    delete::<Groups>(&req, &read, &write, &principal, &id, lost).await
}

// ---------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------

/// The body of policy writes (`RbacPolicy`; read-only fields are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct PolicyBody {
    platform_key: Option<String>,
    name: Option<String>,
    role_id: Option<u64>,
    resources: Option<Vec<String>>,
    #[serde(default, deserialize_with = "ids")]
    users_to_add: Vec<u64>,
    #[serde(default, deserialize_with = "ids")]
    users_to_remove: Vec<u64>,
    #[serde(default, deserialize_with = "ids")]
    groups_to_add: Vec<u64>,
    #[serde(default, deserialize_with = "ids")]
    groups_to_remove: Vec<u64>,
}

fn check_members(read: &ReadState, platform: &str, b: &PolicyBody) -> Result<(), ApiError> {
    check_users(read, platform, "users_to_add", &b.users_to_add)?;
    check_users(read, platform, "users_to_remove", &b.users_to_remove)?;
    check_groups(read, platform, "groups_to_add", &b.groups_to_add)?;
    check_groups(read, platform, "groups_to_remove", &b.groups_to_remove)
}

fn platform_pk(read: &ReadState, principal: &Principal, platform: &str) -> u64 {
    read.rbac
        .platform(platform)
        .map_or(principal.platform.id, |p| p.id)
}

pub async fn create_policy(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    body: JsonBody<PolicyBody>,
) -> Result<HttpResponse, ApiError> {
    let hash = body.hash();
    let body = body.value;
    let platform = body_platform(&req, &principal, body.platform_key.as_ref())?;
    let role_id = required(body.role_id, "role_id")?;
    let role = check_role(&read, &platform, role_id)?;
    check_members(&read, &platform, &body)?;
    let resources = body.resources.clone().unwrap_or_default();
    may_bind(
        &read,
        &principal,
        &role.actions,
        &role.data_actions,
        &resources,
    )?;
    let users: Vec<u64> = body
        .users_to_add
        .iter()
        .copied()
        .filter(|u| !body.users_to_remove.contains(u))
        .collect();
    let groups: Vec<u64> = body
        .groups_to_add
        .iter()
        .copied()
        .filter(|g| !body.groups_to_remove.contains(g))
        .collect();
    let call = Call::new(&req, &read, &write, &principal, &platform, &hash).await?;
    let pk = platform_pk(&read, &principal, &platform);
    let name = body
        .name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let now = Utc::now();
    let make = |id| PolicyCommand::Create {
        id,
        platform: platform.clone(),
        platform_pk: pk,
        name: name.clone(),
        role_id,
        resources: resources.clone(),
        users: users.clone(),
        groups: groups.clone(),
        now,
    };
    create::<Policies>(&call, "policy", make, async |_| Ok(())).await
}

pub async fn update_policy(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    id: web::Path<String>,
    body: JsonBody<PolicyBody>,
) -> Result<HttpResponse, ApiError> {
    let hash = body.hash();
    let body = body.value;
    let platform = body_platform(&req, &principal, body.platform_key.as_ref())?;
    let id = path_id(&id)?;
    require_on_put(&req, body.role_id.as_ref(), "role_id")?;
    let current = visible_policy(read.rbac.policy(&platform, id))?;
    let role = match body.role_id {
        Some(role_id) => Some(check_role(&read, &platform, role_id)?),
        None => read.rbac.role(&platform, current.role.id),
    };
    check_members(&read, &platform, &body)?;
    let rebinds = body.role_id.is_some_and(|r| r != current.role.id)
        || body
            .resources
            .as_ref()
            .is_some_and(|r| *r != current.resources);
    let adds = !body.users_to_add.is_empty() || !body.groups_to_add.is_empty();
    if let (Some(role), true) = (&role, rebinds || adds) {
        let resources = body.resources.as_ref().unwrap_or(&current.resources);
        may_bind(
            &read,
            &principal,
            &role.actions,
            &role.data_actions,
            resources,
        )?;
    }
    let (users_out, groups_out) = (&body.users_to_remove, &body.groups_to_remove);
    if rebinds || !users_out.is_empty() || !groups_out.is_empty() {
        keeps_an_admin(&read, &principal, |u, g| {
            g.policy_id == id
                && (rebinds
                    || users_out.contains(&u)
                    || matches!(g.via, Via::Group(gid) if groups_out.contains(&gid)))
        })?;
    }
    let call = Call::new(&req, &read, &write, &principal, &platform, &hash).await?;
    let command = PolicyCommand::Update {
        platform: platform.clone(),
        changes: UpdatePolicy {
            name: body.name,
            role_id: body.role_id,
            resources: body.resources,
            users_to_add: body.users_to_add,
            users_to_remove: body.users_to_remove,
            groups_to_add: body.groups_to_add,
            groups_to_remove: body.groups_to_remove,
        },
        now: Utc::now(),
    };
    apply::<Policies>(&call, id, Write::Update, command).await
}

pub async fn delete_policy(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let lost = |policy, _, g: &Grant| g.policy_id == policy;
    delete::<Policies>(&req, &read, &write, &principal, &id, lost).await
}

// ---------------------------------------------------------------------------
// Mentor access
// ---------------------------------------------------------------------------

/// The body of `POST /api/core/rbac/mentor-access/` (seed 003).
#[derive(Debug, Default, Deserialize)]
pub struct MentorAccessBody {
    platform_key: Option<String>,
    mentor_id: Option<u64>,
    role: Option<String>,
    #[serde(default, deserialize_with = "ids")]
    users_to_add: Vec<u64>,
    #[serde(default, deserialize_with = "ids")]
    users_to_remove: Vec<u64>,
    #[serde(default, deserialize_with = "ids")]
    groups_to_add: Vec<u64>,
    #[serde(default, deserialize_with = "ids")]
    groups_to_remove: Vec<u64>,
    #[serde(default, deserialize_with = "strings")]
    usernames_to_add: Vec<String>,
    #[serde(default, deserialize_with = "strings")]
    emails_to_add: Vec<String>,
}

pub async fn mentor_access(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Principal,
    body: JsonBody<MentorAccessBody>,
) -> Result<HttpResponse, ApiError> {
    let hash = body.hash();
    let body = body.value;
    let platform = body_platform(&req, &principal, body.platform_key.as_ref())?;
    let mentor_id = required(body.mentor_id, "mentor_id")?;
    if mentor_id == 0 || mentor_id > ibl_events::rbac::MAX_ID {
        return Err(ApiError::field(
            "mentor_id",
            "A valid mentor id is required.",
        ));
    }
    let short = required(body.role, "role")?;
    let builtin = BuiltinRole::for_mentor_access(&short)
        .ok_or_else(|| ApiError::field("role", "Must be one of viewer, editor, chat."))?;
    let role = read
        .rbac
        .roles(&platform, Some(builtin.name()), false, 0, 1000)
        .items
        .into_iter()
        .find(|r| r.name == builtin.name() && r.is_builtin)
        .ok_or_else(|| ApiError::Internal(format!("built-in role {} missing", builtin.name())))?;
    let role_id = role.id;
    let mut users_to_add = body.users_to_add.clone();
    check_users(&read, &platform, "users_to_add", &users_to_add)?;
    check_users(&read, &platform, "users_to_remove", &body.users_to_remove)?;
    check_groups(&read, &platform, "groups_to_add", &body.groups_to_add)?;
    check_groups(&read, &platform, "groups_to_remove", &body.groups_to_remove)?;
    for name in &body.usernames_to_add {
        let user = read.rbac.user_by_username(&platform, name).ok_or_else(|| {
            ApiError::field(
                "usernames_to_add",
                format!("No user {name:?} on this platform."),
            )
        })?;
        users_to_add.push(user.id);
    }
    for email in &body.emails_to_add {
        let user = read.rbac.user_by_email(&platform, email).ok_or_else(|| {
            ApiError::field(
                "emails_to_add",
                format!("No user {email:?} on this platform."),
            )
        })?;
        users_to_add.push(user.id);
    }
    let pk = platform_pk(&read, &principal, &platform);
    if !users_to_add.is_empty() || !body.groups_to_add.is_empty() {
        let mentor = [format!("/platforms/{pk}/mentors/{mentor_id}/")];
        may_bind(
            &read,
            &principal,
            &role.actions,
            &role.data_actions,
            &mentor,
        )?;
    }
    let call = Call::new(&req, &read, &write, &principal, &platform, &hash).await?;
    let ctx = &call.ctx;
    call.claim_key().await?;
    // The one policy of this mentor and role: reserved, so that two first
    // grants (in any processes) agree on its id; whoever finds it missing
    // creates it, the others update it.
    let store = &write.store;
    let lives = async |holder: u64, _| {
        let (state, _) = load::<PolicyAggregate>(store.as_ref(), &policy_stream(holder)).await?;
        Ok(state.get().is_none_or(|p| p.deleted_at.is_none()))
    };
    let existing = read
        .rbac
        .mentor_policy(&platform, mentor_id, &short)
        .map(|p| p.id);
    let claimant = async || match existing {
        Some(id) => Ok(id),
        None => write.ids.next(store, &call.ctx, "policy").await,
    };
    let name = format!("{mentor_id}/{short}");
    let id = reserve(
        store,
        &call.ctx,
        "mentor-access",
        &platform,
        &name,
        lives,
        claimant,
    )
    .await?;
    let create = PolicyCommand::Create {
        id,
        platform: platform.clone(),
        platform_pk: pk,
        name: format!("mentor-{mentor_id}-{short}"),
        role_id,
        resources: vec![format!("/platforms/{pk}/mentors/{mentor_id}/")],
        users: users_to_add
            .iter()
            .copied()
            .filter(|u| !body.users_to_remove.contains(u))
            .collect(),
        groups: body
            .groups_to_add
            .iter()
            .copied()
            .filter(|g| !body.groups_to_remove.contains(g))
            .collect(),
        now: Utc::now(),
    };
    let (status, position) =
        match execute_new::<PolicyAggregate>(store, &policy_stream(id), ctx, create).await {
            Ok(outcome) => (StatusCode::CREATED, outcome.position()),
            Err(e) if e.is_conflict() => {
                let update = PolicyCommand::Update {
                    platform: platform.clone(),
                    changes: UpdatePolicy {
                        users_to_add,
                        users_to_remove: body.users_to_remove,
                        groups_to_add: body.groups_to_add,
                        groups_to_remove: body.groups_to_remove,
                        ..UpdatePolicy::default()
                    },
                    now: Utc::now(),
                };
                let outcome =
                    execute::<PolicyAggregate>(store, &policy_stream(id), ctx, update).await?;
                (StatusCode::OK, outcome.position())
            }
            Err(e) => return Err(e.into()),
        };
    settle(&read, position).await;
    let policy = visible_policy(read.rbac.policy(&platform, id))?;
    Ok(written(
        &read,
        status,
        position,
        wire::mentor_policy(&policy, mentor_id),
    ))
}
