//! The permission check and "who has access", answered from the RBAC read
//! model's per-user grant index.

use actix_web::{web, HttpRequest, HttpResponse};
use ibl_events::rbac::{
    check, parse_check_resources, ActionKind, Answer, Because, Decision, Grant, ResourcePath,
    ResourcesError, Via,
};
use std::collections::HashMap;
use std::sync::Arc;

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use ibl_edge::extract::{Caller, JsonBody, Principal};
use ibl_edge::guard::active;
use ibl_edge::paging::drf_page;
use ibl_edge::request::{fresh, Params};
use ibl_edge::{ApiError, ReadState};
use ibl_projections::rbac::{RbacModel, RbacQueries};

/// The action a caller needs to name another subject in a check.
const MANAGE_USERS: &str = "Ibl.Core/Users/write";

#[derive(Debug, Deserialize)]
pub struct CheckBody {
    platform_key: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    user_id: Option<u64>,
    username: Option<String>,
    email: Option<String>,
    #[serde(default)]
    explain: bool,
    /// Answer as of this time (RFC 3339) instead of now.
    at: Option<String>,
    /// Answer as of this position of the log instead of now.
    at_position: Option<u64>,
}

fn resources_error(e: ResourcesError) -> ApiError {
    match e {
        ResourcesError::TooMany => ApiError::field("resources", "At most 100 resources per check."),
        ResourcesError::Invalid {
            index,
            value,
            error,
        } => ApiError::field(
            "resources",
            format!(
                "Item {index} ({value:?}) is not a resource path: {}",
                error.to_string().trim_end_matches('.').to_owned()
                    + ". Paths start and end with '/'."
            ),
        ),
    }
}

/// The grants of the user a check is about: the key's owner, or (for a
/// caller who may manage users) the one named in the body; the caller and
/// a user named by id are read at once.
async fn subject_grants(
    read: &ReadState,
    principal: &Principal,
    body: &CheckBody,
    platform: &str,
) -> Result<Arc<Vec<Grant>>, ApiError> {
    let caller = principal.key.user_id;
    let named = match (&body.user_id, &body.username, &body.email) {
        (None, None, None) => None,
        (Some(id), _, _) => Some(*id),
        // An unknown name is looked up as no one: 404 only once allowed to ask.
        (None, Some(name), _) => Some(
            read.access
                .user_by_username(platform, name)
                .await?
                .map_or(0, |u| u.id),
        ),
        (None, None, Some(email)) => Some(
            read.access
                .user_by_email(platform, email)
                .await?
                .map_or(0, |u| u.id),
        ),
    };
    let ids: Vec<u64> = std::iter::once(caller).chain(named).collect();
    let mut found = read.access.users_grants(platform, &ids).await?.into_iter();
    let callers = active(principal, found.next().flatten())?;
    if named.is_none() {
        return Ok(callers);
    }
    let users = ResourcePath::parse(&format!("/platforms/{}/users/", principal.platform.id))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !ibl_events::rbac::authorize(&callers, &users, MANAGE_USERS, ActionKind::Action).allowed {
        return Err(ApiError::Forbidden(format!(
            "Checking another user's permissions needs {MANAGE_USERS} on {}.",
            users.as_str()
        )));
    }
    found
        .next()
        .flatten()
        .map(|(_, grants)| grants)
        .ok_or_else(|| ApiError::NotFound("No such user on this platform.".into()))
}

/// What naming another user in a check at a past time needs instead of
/// [`MANAGE_USERS`]: reading the platform's history.
const READ_AUDIT: &str = "Ibl.Core/Audit/read";

/// The grants of the user a check at a past time is about, in `past` (the
/// RBAC model of then): the caller's own, or, for a caller who may now
/// manage users or read the platform's history, the one named in the body.
/// A user who was not active then holds nothing; one named who was not on
/// the platform then is a 404.
async fn past_subject_grants(
    read: &ReadState,
    past: &RbacModel,
    principal: &Principal,
    body: &CheckBody,
    platform: &str,
) -> Result<Arc<Vec<Grant>>, ApiError> {
    let past: &dyn RbacQueries = past;
    let caller = principal.key.user_id;
    let now = read.access.users_grants(platform, &[caller]).await?;
    let callers = active(principal, now.into_iter().next().flatten())?;
    let named = match (&body.user_id, &body.username, &body.email) {
        (None, None, None) => None,
        (Some(id), _, _) => Some(*id),
        (None, Some(name), _) => Some(
            past.user_by_username(platform, name)
                .await?
                .map_or(0, |u| u.id),
        ),
        (None, None, Some(email)) => Some(
            past.user_by_email(platform, email)
                .await?
                .map_or(0, |u| u.id),
        ),
    };
    if named.is_some() {
        let id = principal.platform.id;
        let may = |path: String, action: &str| {
            ResourcePath::parse(&path).is_ok_and(|p| {
                ibl_events::rbac::authorize(&callers, &p, action, ActionKind::Action).allowed
            })
        };
        if !may(format!("/platforms/{id}/users/"), MANAGE_USERS)
            && !may(format!("/platforms/{id}/audit/"), READ_AUDIT)
        {
            return Err(ApiError::Forbidden(format!(
                "Checking another user's permissions at a past time needs {MANAGE_USERS} on /platforms/{id}/users/ or {READ_AUDIT} on /platforms/{id}/audit/."
            )));
        }
    }
    let subject = named.unwrap_or(caller);
    match past
        .users_grants(platform, &[subject])
        .await?
        .into_iter()
        .next()
        .flatten()
    {
        Some((true, grants)) => Ok(grants),
        Some((false, _)) => Ok(Arc::new(Vec::new())),
        None if named.is_some() => Err(ApiError::NotFound(
            "No such user on this platform at that time.".into(),
        )),
        None => Ok(Arc::new(Vec::new())),
    }
}

/// How a grant reaches its user: `"direct"`, or the group `{id, name}`.
fn via(via: Via, group_name: String) -> Value {
    match via {
        Via::Direct => json!("direct"),
        Via::Group(id) => json!({"id": id, "name": group_name}),
    }
}

/// One operation's explanation, `names` being the names of its reason.
fn explained(d: &Decision, names: &HashMap<Because, (String, String, String)>) -> Value {
    let Some((b, (policy, role, group))) = d.because.and_then(|b| Some((b, names.get(&b)?))) else {
        return json!({"allowed": false});
    };
    json!({
        "allowed": true,
        "policy": {"id": b.policy_id, "name": policy},
        "role": {"id": b.role_id, "name": role},
        "group": via(b.via, group.clone()),
    })
}

/// Where a check at a past time is answered by the process that keeps the
/// audit log (see [`check_permissions`]).
const PAST_CHECK: &str = "/api/audit/permissions/check/";

/// `POST /api/core/rbac/permissions/check/`: for each resource, each
/// operation of its type and whether the subject may do it. With
/// `"explain": true` each operation answers `{allowed, policy, role, group}`
/// (`group` is `"direct"` when the policy names the user).
///
/// A check at a past time (`at` or `at_position`) needs the audit log's
/// index of the RBAC events: a process without it (the split deployment's
/// query service) answers `307 Temporary Redirect` to [`PAST_CHECK`] on
/// the public URL (the gateway sends `/api/audit/` to the projections
/// process), so that a client that follows redirects (with the method and
/// body, as 307 requires) is answered there. That route (served by the
/// processes that keep the audit log, by this handler) takes only checks
/// at a past time.
pub async fn check_permissions(
    req: HttpRequest,
    read: web::Data<ReadState>,
    Caller(principal): Caller,
    body: JsonBody<CheckBody>,
) -> Result<HttpResponse, ApiError> {
    let mut body = body.value;
    let then = body.at.is_some() || body.at_position.is_some();
    if !then && req.path().trim_end_matches('/') == PAST_CHECK.trim_end_matches('/') {
        return Err(ApiError::field(
            "at",
            "A check at a past time names at or at_position; a check of now is POST /api/core/rbac/permissions/check/.",
        ));
    }
    if then && read.audit.is_none() {
        let to = format!("{}{PAST_CHECK}", ibl_edge::wire::base_url(&req));
        return Ok(HttpResponse::TemporaryRedirect()
            .insert_header((actix_web::http::header::LOCATION, to.clone()))
            .json(json!({"detail": format!(
                "A check at a past time is answered by the process that keeps the audit log: POST it to {to}."
            )})));
    }
    let platform = body
        .platform_key
        .clone()
        .ok_or_else(|| ApiError::field("platform_key", "This field is required."))?;
    principal.require_platform(&platform)?;
    fresh(&req, &read).await?;
    let paths =
        parse_check_resources(std::mem::take(&mut body.resources)).map_err(resources_error)?;
    // At a past time: the subject's grants, and the names explaining them,
    // from the RBAC model of then.
    let past =
        match crate::audit::past_position(&read, body.at.as_deref(), body.at_position).await? {
            Some(position) => Some((position, crate::audit::rbac_at(&read, position).await?)),
            None => None,
        };
    let (grants, access): (_, &dyn RbacQueries) = match &past {
        Some((_, model)) => (
            past_subject_grants(&read, model, &principal, &body, &platform).await?,
            model.as_ref(),
        ),
        None => (
            subject_grants(&read, &principal, &body, &platform).await?,
            read.access.as_ref(),
        ),
    };
    // By path: sorted, a path asked twice answered once.
    let mut decisions: Vec<(&str, Answer)> = paths
        .iter()
        .map(|p| (p.as_str(), check(&grants, p)))
        .collect();
    decisions.sort_unstable_by(|a, b| a.0.cmp(b.0));
    decisions.dedup_by(|a, b| a.0 == b.0);
    if !body.explain {
        // The common answer, written straight out: `{path: {op: bool}}`,
        // into a buffer sized for it.
        let mut out = Vec::with_capacity(16 + 80 * decisions.len());
        serde_json::to_writer(&mut out, &Allowed(&decisions))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        return Ok(HttpResponse::Ok()
            .content_type(actix_web::http::header::ContentType::json())
            .body(out));
    }
    // The names of each distinct reason, read once (a few grants explain
    // every operation).
    let mut names = HashMap::new();
    for (_, ops) in &decisions {
        for (_, d) in ops.iter() {
            if let Some(b) = d.because.filter(|b| !names.contains_key(b)) {
                names.insert(b, access.because_names(&platform, &b).await?);
            }
        }
    }
    let mut answer = Map::new();
    for (path, ops) in &decisions {
        let ops: Map<String, Value> = ops
            .iter()
            .map(|(op, d)| (op.to_owned(), explained(d, &names)))
            .collect();
        answer.insert((*path).to_owned(), Value::Object(ops));
    }
    Ok(HttpResponse::Ok().json(Value::Object(answer)))
}

/// `{path: {operation: allowed}}`, serialised without building a tree.
struct Allowed<'a>(&'a [(&'a str, Answer)]);

impl Serialize for Allowed<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Ops<'a>(&'a Answer);
        impl Serialize for Ops<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for (op, decision) in self.0.iter() {
                    map.serialize_entry(op, &decision.allowed)?;
                }
                map.end()
            }
        }
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (path, ops) in self.0 {
            map.serialize_entry(path, &Ops(ops))?;
        }
        map.end()
    }
}

/// `GET /api/core/rbac/access/?platform_key=&resource=&action=`: the users
/// who hold `action` on `resource`, and through which policy and group,
/// by user id, paginated like the other RBAC lists.
pub async fn who_has_access(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let params = Params::of(&req)?;
    let required = |name: &str| {
        params
            .get(name)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::field(name, "This field is required."))
    };
    let platform = required("platform_key")?;
    principal.require_platform(&platform)?;
    fresh(&req, &read).await?;
    access_page(&req, &params, read.access.as_ref(), &platform).await
}

/// Who holds `action` on `resource` (both from the query string) in
/// `access`, a page of `{user, policy_id, role_id, group}`.
pub async fn access_page(
    req: &HttpRequest,
    params: &Params,
    access: &dyn RbacQueries,
    platform: &str,
) -> Result<HttpResponse, ApiError> {
    let required = |name: &str| {
        params
            .get(name)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::field(name, "This field is required."))
    };
    let resource = ResourcePath::parse(&required("resource")?)
        .map_err(|e| ApiError::field("resource", format!("{e}. Paths start and end with '/'.")))?;
    let action = required("action")?;
    let p = params.page()?;
    let page = access
        .who_has_access(platform, &resource, &action, p.offset(), p.size)
        .await?;
    let mut groups = HashMap::new();
    for e in &page.items {
        if let Via::Group(id) = e.via {
            if let std::collections::hash_map::Entry::Vacant(slot) = groups.entry(id) {
                slot.insert(access.because_names(platform, &e.because()).await?.2);
            }
        }
    }
    drf_page(req, p, &page, |e| {
        let group = match e.via {
            Via::Group(id) => groups.get(&id).cloned().unwrap_or_default(),
            Via::Direct => String::new(),
        };
        json!({
            "user": {"id": e.user.id, "username": e.user.username, "email": e.user.email},
            "policy_id": e.policy_id,
            "role_id": e.role_id,
            "group": via(e.via, group),
        })
    })
}
