//! SCIM 2.0 Users writes under `/api/orgs/{platform_key}/scim/v2/Users`:
//! create (`Provision`), replace (PUT), PATCH and DELETE (deactivation) on
//! the user registry. Answers and errors are SCIM's (see
//! `ibl_edge::scim`), each write after the read models have caught
//! up, with `X-Position`.
//!
//! Attribute names are matched case-insensitively. Kept: `userName`,
//! `name.givenName`, `name.familyName`, the primary (else first) of
//! `emails`, `active`. Attributes SCIM clients commonly send that this
//! service does not keep (`externalId`, `displayName`, `locale`, extension
//! schemas, the `iblai` create-only fields, ...) are accepted and ignored;
//! a PATCH path naming anything else is `invalidPath`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use ibl_edge::extract::{JsonBody, Principal};
use ibl_edge::request::{platform_of, Params};
use ibl_edge::scim::{self, find_user, respond, ScimError, ScimPath, ScimUserPath, USER_SCHEMA};
use ibl_edge::wire::base_url;
use ibl_edge::{ApiError, ReadState};
use ibl_events::platform::user_stream;
use ibl_projections::credentials::UserView;
use serde_json::{Map, Value};

use crate::authority::{keeps_an_admin, may_act_for};
use crate::domain::user::{UpdateUser, User, UserAggregate, UserCommand, UserState};
use crate::handler::CommandContext;
use crate::http::{begin, claim_key, context, judge_and_claim, settle, Begun, WriteState};
use crate::reservations::new_id;
use crate::users::{self, NewUser};

/// What a request asks of a user's kept attributes; `None` leaves one as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Changes {
    user_name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    email: Option<String>,
    active: Option<bool>,
}

/// Attributes (lowercase) accepted and not kept.
const IGNORED: &[&str] = &[
    "schemas",
    "id",
    "meta",
    "externalid",
    "displayname",
    "nickname",
    "profileurl",
    "title",
    "usertype",
    "preferredlanguage",
    "locale",
    "timezone",
    "password",
    "phonenumbers",
    "addresses",
    "ims",
    "photos",
    "entitlements",
    "roles",
    "x509certificates",
    "groups",
    "organization",
    "provider",
    "tpauid",
    "isstaff",
    "update",
    "platformorgs",
    "departmentids",
    "groupids",
    "rbacgroupuniqueids",
    "name.formatted",
    "name.middlename",
    "name.honorificprefix",
    "name.honorificsuffix",
];

fn ignored(attr: &str) -> bool {
    IGNORED.contains(&attr)
        || attr.starts_with("urn:")
        || attr.starts_with("urn_")
        || attr.starts_with("phonenumbers[")
        || attr.starts_with("addresses[")
}

/// `obj[name]`, the name compared case-insensitively.
fn get<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn object<'a>(body: &'a Value, what: &str) -> Result<&'a Map<String, Value>, ScimError> {
    body.as_object()
        .ok_or_else(|| ScimError::invalid_syntax(format!("{what} must be a JSON object.")))
}

fn text(attr: &str, value: &Value) -> Result<String, ScimError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ScimError::invalid_value(format!("{attr} must be a string.")))
}

/// A string that may be cleared with `null`.
fn clearable_text(attr: &str, value: &Value) -> Result<String, ScimError> {
    match value {
        Value::Null => Ok(String::new()),
        other => text(attr, other),
    }
}

/// A boolean; `"true"`/`"false"` strings too (as some identity providers send).
fn boolean(attr: &str, value: &Value) -> Result<bool, ScimError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::invalid_value(format!(
            "{attr} must be a boolean."
        ))),
    }
}

/// The primary address of `emails` (an array of `{value, primary, type}`, or
/// one such object), else the first.
fn primary_email(value: &Value) -> Result<String, ScimError> {
    let items = match value {
        Value::Array(items) => items.as_slice(),
        Value::Object(_) => std::slice::from_ref(value),
        _ => {
            return Err(ScimError::invalid_value(
                "emails must be a list of {\"value\": ...} objects.",
            ))
        }
    };
    let mut first = None;
    let mut primary = None;
    for item in items {
        let item = item.as_object().ok_or_else(|| {
            ScimError::invalid_value("each of emails must be a {\"value\": ...} object.")
        })?;
        let address = text("emails.value", get(item, "value").unwrap_or(&Value::Null))?;
        let is_primary = match get(item, "primary") {
            None | Some(Value::Null) => false,
            Some(p) => boolean("emails.primary", p)?,
        };
        if is_primary && primary.is_none() {
            primary = Some(address.clone());
        }
        first.get_or_insert(address);
    }
    primary
        .or(first)
        .ok_or_else(|| ScimError::invalid_value("emails: at least one address is required."))
}

impl Changes {
    /// Sets the attribute at `path` (`userName`, `name.givenName`,
    /// `emails[type eq "work"].value`, ...). An attribute this service does
    /// not know is `invalidPath` when `strict`, else ignored.
    fn set(&mut self, path: &str, value: &Value, strict: bool) -> Result<(), ScimError> {
        let lower = path.trim().to_ascii_lowercase();
        let core = format!("{}:", USER_SCHEMA.to_ascii_lowercase());
        let attr = lower.strip_prefix(&core).unwrap_or(&lower);
        match attr {
            "username" => self.user_name = Some(text("userName", value)?),
            "active" => self.active = Some(boolean("active", value)?),
            "name" => match value {
                Value::Object(name) => {
                    for (k, v) in name {
                        match k.to_ascii_lowercase().as_str() {
                            "givenname" => {
                                self.given_name = Some(clearable_text("name.givenName", v)?)
                            }
                            "familyname" => {
                                self.family_name = Some(clearable_text("name.familyName", v)?)
                            }
                            _ => {}
                        }
                    }
                }
                Value::Null => {
                    self.given_name = Some(String::new());
                    self.family_name = Some(String::new());
                }
                _ => return Err(ScimError::invalid_value("name must be an object.")),
            },
            "name.givenname" => self.given_name = Some(clearable_text("name.givenName", value)?),
            "name.familyname" => self.family_name = Some(clearable_text("name.familyName", value)?),
            "emails" => self.email = Some(primary_email(value)?),
            "emails.value" => self.email = Some(text("emails.value", value)?),
            a if a.starts_with("emails[") && a.ends_with("].value") => {
                self.email = Some(text("emails.value", value)?)
            }
            a if ignored(a) || !strict => {}
            _ => {
                return Err(ScimError::invalid_path(format!(
                    "Unknown or unsupported attribute path '{path}'."
                )))
            }
        }
        Ok(())
    }

    /// Sets every attribute of a resource (or of a PATCH value without a
    /// path); `null` values are left out, unknown attributes ignored.
    fn set_all(&mut self, obj: &Map<String, Value>) -> Result<(), ScimError> {
        for (k, v) in obj {
            if !v.is_null() {
                self.set(k, v, false)?;
            }
        }
        Ok(())
    }

    /// A PATCH `remove`: only the names may be cleared.
    fn remove(&mut self, path: &str) -> Result<(), ScimError> {
        let lower = path.trim().to_ascii_lowercase();
        let core = format!("{}:", USER_SCHEMA.to_ascii_lowercase());
        let attr = lower.strip_prefix(&core).unwrap_or(&lower);
        match attr {
            "name" => {
                self.given_name = Some(String::new());
                self.family_name = Some(String::new());
            }
            "name.givenname" => self.given_name = Some(String::new()),
            "name.familyname" => self.family_name = Some(String::new()),
            "username" | "active" | "emails" | "emails.value" => {
                return Err(ScimError::invalid_value(format!(
                    "'{path}' is required and cannot be removed."
                )))
            }
            a if a.starts_with("emails[") => {
                return Err(ScimError::invalid_value(
                    "emails are required and cannot be removed.",
                ))
            }
            a if ignored(a) => {}
            _ => {
                return Err(ScimError::invalid_path(format!(
                    "Unknown or unsupported attribute path '{path}'."
                )))
            }
        }
        Ok(())
    }

    fn update(&self) -> UpdateUser {
        UpdateUser {
            username: self.user_name.clone(),
            email: self.email.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
        }
    }
}

/// The changes of a PATCH body: a SCIM `PatchOp` (`Operations` of `add`,
/// `replace` and `remove`, with or without a `path`), or a partial user
/// (what the `iblai` client's `PatchedSCIMUserResponse` sends).
fn patch_changes(body: &Value) -> Result<Changes, ScimError> {
    let obj = object(body, "The body")?;
    let mut changes = Changes::default();
    let ops = match get(obj, "Operations") {
        None => {
            changes.set_all(obj)?;
            return Ok(changes);
        }
        Some(Value::Array(ops)) => ops,
        Some(_) => return Err(ScimError::invalid_syntax("Operations must be a list.")),
    };
    for op in ops {
        let op = object(op, "Each operation")?;
        let kind = get(op, "op")
            .and_then(Value::as_str)
            .ok_or_else(|| ScimError::invalid_syntax("Each operation needs an \"op\"."))?
            .to_ascii_lowercase();
        let path = match get(op, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if p.trim().is_empty() => None,
            Some(Value::String(p)) => Some(p.as_str()),
            Some(_) => return Err(ScimError::invalid_path("path must be a string.")),
        };
        let value = get(op, "value").unwrap_or(&Value::Null);
        match (kind.as_str(), path) {
            ("add" | "replace", Some(path)) => changes.set(path, value, true)?,
            ("add" | "replace", None) => {
                changes.set_all(object(value, "The value of an operation without a path")?)?
            }
            ("remove", Some(path)) => changes.remove(path)?,
            ("remove", None) => {
                return Err(ScimError::invalid_path("A remove operation needs a path."))
            }
            (other, _) => {
                return Err(ScimError::invalid_syntax(format!(
                    "Unknown op '{other}': use add, replace or remove."
                )))
            }
        }
    }
    Ok(changes)
}

fn view_of(u: &User) -> UserView {
    UserView {
        id: u.id,
        platform: u.platform.clone(),
        username: u.username.clone(),
        email: u.email.clone(),
        given_name: u.given_name.clone(),
        family_name: u.family_name.clone(),
        active: u.active,
        created: u.registered_at,
        updated: u.updated_at,
    }
}

/// User `id` as the last command left it (when one ran), else as the read
/// model shows it.
fn current(
    read: &ReadState,
    platform: &str,
    state: Option<&UserState>,
    id: u64,
) -> Result<UserView, ScimError> {
    state
        .and_then(|s| s.get_in(platform))
        .map(view_of)
        .or_else(|| read.models.user(id).filter(|u| u.platform == platform))
        .ok_or_else(|| ScimError::user_not_found(&id.to_string()))
}

/// A user answer with `X-Position` (and `Location` when created).
fn answer(
    req: &HttpRequest,
    read: &ReadState,
    status: StatusCode,
    position: u64,
    u: &UserView,
) -> HttpResponse {
    let base = base_url(req);
    let mut b = respond(status);
    b.insert_header(read.positions.header(position));
    if status == StatusCode::CREATED {
        b.insert_header((
            header::LOCATION,
            scim::user_location(&base, &u.platform, u.id),
        ));
    }
    b.json(scim::user(&base, u))
}

/// Runs the update `changes` make to user `id`, then its activation change:
/// another user's only if the caller holds everything they hold (403), and
/// deactivating the platform's last active tenant admin is a 409. Under
/// an `Idempotency-Key`, the first command is judged before the key is
/// claimed (a refused change claims nothing). Answers the user after the
/// last command that ran and the position to settle at.
async fn apply(
    req: &HttpRequest,
    read: &ReadState,
    write: &WriteState,
    principal: &Principal,
    ctx: &CommandContext,
    id: u64,
    changes: &Changes,
) -> Result<(Option<UserState>, u64), ScimError> {
    let platform = principal.platform.key.as_str();
    if id != principal.key.user_id {
        // Changing, deactivating or reactivating another user needs all
        // they hold (as for their keys): a user manager cannot act on an
        // admin.
        may_act_for(read, principal, id)?;
    }
    if changes.active == Some(false) {
        keeps_an_admin(read, principal, |user, _| user == id)?;
    }
    let now = Utc::now();
    let update = changes.update();
    if let Some(tag) = ctx.idempotency.as_ref() {
        let platform = platform.to_owned();
        let first = if update != UpdateUser::default() {
            Some(UserCommand::Update {
                platform,
                changes: update.clone(),
                now,
            })
        } else {
            changes.active.map(|active| match active {
                true => UserCommand::Reactivate { platform, now },
                false => UserCommand::Deactivate { platform, now },
            })
        };
        if let Some(first) = first {
            let stream = user_stream(id);
            let platform = principal.platform.key.as_str();
            judge_and_claim::<UserAggregate>(
                req,
                write,
                principal,
                platform,
                Some(tag),
                &stream,
                &first,
            )
            .await?;
        }
    }
    Ok(users::change(&write.store, ctx, platform, id, update, changes.active).await?)
}

fn required_user_name(changes: &Changes) -> Result<String, ScimError> {
    changes
        .user_name
        .clone()
        .ok_or_else(|| ScimError::invalid_value("userName: This field is required."))
}

/// `POST /api/orgs/{platform_key}/scim/v2/Users`: 201 and the user; a
/// userName taken on the platform is 409 `uniqueness`, unless the body says
/// `"update": true` (an `iblai` extension): then that user is updated (200).
/// Without `emails`, a userName that is an address is the email.
pub async fn create_user(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Result<Principal, ApiError>,
    path: web::Path<ScimPath>,
    body: Result<JsonBody<Value>, ApiError>,
) -> Result<HttpResponse, ScimError> {
    let principal = principal?;
    let body = body?;
    let Begun {
        platform,
        tag,
        replay,
        ..
    } = begin(&req, &read, &principal, &path.platform_key, &body.hash()).await?;
    let obj = object(&body.value, "The body")?;
    let mut changes = Changes::default();
    changes.set_all(obj)?;
    let username = required_user_name(&changes)?;
    if let Some(record) = replay {
        // The user the first request made (renamed since, maybe).
        let u = record
            .created("user-")
            .parse::<u64>()
            .ok()
            .and_then(|id| read.models.user(id))
            .filter(|u| u.platform == platform)
            .ok_or_else(|| ScimError::user_not_found(username.trim()))?;
        return Ok(answer(
            &req,
            &read,
            StatusCode::CREATED,
            record.position,
            &u,
        ));
    }
    let ctx = context(&req, &principal, tag);
    if get(obj, "update").and_then(Value::as_bool) == Some(true) {
        if let Some(existing) = read.models.user_by_username(&platform, username.trim()) {
            let (state, position) =
                apply(&req, &read, &write, &principal, &ctx, existing.id, &changes).await?;
            settle(&read, position).await;
            let u = current(&read, &platform, state.as_ref(), existing.id)?;
            return Ok(answer(&req, &read, StatusCode::OK, position, &u));
        }
    }
    let email = match changes.email {
        Some(email) => email,
        None if username.contains('@') => username.trim().to_owned(),
        None => {
            return Err(ScimError::invalid_value(
                "emails: at least one address is required.",
            ))
        }
    };
    let new = NewUser {
        platform: platform.clone(),
        username: username.trim().to_owned(),
        email,
        given_name: changes.given_name.unwrap_or_default(),
        family_name: changes.family_name.unwrap_or_default(),
        active: changes.active.unwrap_or(true),
    };
    new.judge()?;
    // Names the read model already shows taken are refused before any
    // reservation is taken (a reservation for a user never created holds
    // its name for a while).
    if read
        .models
        .user_by_username(&platform, &new.username)
        .is_some()
    {
        return Err(ApiError::Conflict(format!(
            "the username '{}' is already taken on platform '{platform}'",
            new.username
        ))
        .into());
    }
    if read
        .rbac
        .user_by_email(&platform, new.email.trim())
        .is_some()
    {
        return Err(ApiError::Conflict(format!(
            "the email '{}' is already taken on platform '{platform}'",
            new.email.trim()
        ))
        .into());
    }
    let tag = ctx.idempotency.as_ref();
    claim_key(
        &req,
        &write,
        &principal,
        &platform,
        tag,
        uuid::Uuid::new_v4(),
    )
    .await?;
    let id = new_id(&write, &ctx, &platform, "user").await?;
    let outcome = users::register(&write.store, &ctx, id, &new).await?;
    settle(&read, outcome.position()).await;
    let u = current(&read, &platform, Some(&outcome.state), id)?;
    Ok(answer(
        &req,
        &read,
        StatusCode::CREATED,
        outcome.position(),
        &u,
    ))
}

/// `PUT /api/orgs/{platform_key}/scim/v2/Users/{id}`: replaces the user.
/// `userName` is required; names left out are cleared; the email (required
/// by the registry) and `active` change only when given.
pub async fn replace_user(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Result<Principal, ApiError>,
    path: web::Path<ScimUserPath>,
    body: Result<JsonBody<Value>, ApiError>,
) -> Result<HttpResponse, ScimError> {
    change_user(&req, &read, &write, principal?, &path, body?, |body| {
        let mut changes = Changes::default();
        changes.set_all(object(body, "The body")?)?;
        required_user_name(&changes)?;
        changes.given_name.get_or_insert_with(String::new);
        changes.family_name.get_or_insert_with(String::new);
        Ok(changes)
    })
    .await
}

/// `PATCH /api/orgs/{platform_key}/scim/v2/Users/{id}`: see [`patch_changes`].
pub async fn patch_user(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Result<Principal, ApiError>,
    path: web::Path<ScimUserPath>,
    body: Result<JsonBody<Value>, ApiError>,
) -> Result<HttpResponse, ScimError> {
    change_user(&req, &read, &write, principal?, &path, body?, patch_changes).await
}

/// A change of one existing user, read from the body by `changes_of`; a
/// retry under the same `Idempotency-Key` answers the user as it is.
async fn change_user(
    req: &HttpRequest,
    read: &ReadState,
    write: &WriteState,
    principal: Principal,
    path: &ScimUserPath,
    body: JsonBody<Value>,
    changes_of: impl FnOnce(&Value) -> Result<Changes, ScimError>,
) -> Result<HttpResponse, ScimError> {
    let Begun {
        platform,
        tag,
        replay,
        ..
    } = begin(req, read, &principal, &path.platform_key, &body.hash()).await?;
    let existing = find_user(read, &platform, &path.id).await?;
    if let Some(record) = replay {
        return Ok(answer(
            req,
            read,
            StatusCode::OK,
            record.position,
            &existing,
        ));
    }
    let changes = changes_of(&body.value)?;
    let ctx = context(req, &principal, tag);
    let (state, position) =
        apply(req, read, write, &principal, &ctx, existing.id, &changes).await?;
    settle(read, position).await;
    let u = current(read, &platform, state.as_ref(), existing.id)?;
    Ok(answer(req, read, StatusCode::OK, position, &u))
}

/// `DELETE /api/orgs/{platform_key}/scim/v2/Users/{id}`: deactivates the
/// user (204); it stays, with `active: false`. Deleting an inactive user is
/// a 204 that appends nothing.
pub async fn delete_user(
    req: HttpRequest,
    read: web::Data<ReadState>,
    write: web::Data<WriteState>,
    principal: Result<Principal, ApiError>,
    path: web::Path<ScimUserPath>,
) -> Result<HttpResponse, ScimError> {
    let principal = principal?;
    let platform = platform_of(&principal, &path.platform_key, &Params::of(&req)?)?;
    let existing = find_user(&read, &platform, &path.id).await?;
    let ctx = context(&req, &principal, None);
    let changes = Changes {
        active: Some(false),
        ..Changes::default()
    };
    let (_, position) = apply(&req, &read, &write, &principal, &ctx, existing.id, &changes).await?;
    settle(&read, position).await;
    Ok(HttpResponse::NoContent()
        .insert_header(read.positions.header(position))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(body: Value) -> Changes {
        patch_changes(&body).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn deactivate() -> Changes {
        Changes {
            active: Some(false),
            ..Changes::default()
        }
    }

    #[test]
    fn active_is_replaced_with_a_path_without_one_or_as_a_partial_user() {
        let with_path = json!({"schemas": [scim::PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": false}]});
        assert_eq!(patch(with_path), deactivate());
        let without = json!({"Operations": [{"op": "Replace", "value": {"active": false}}]});
        assert_eq!(patch(without), deactivate());
        let as_string =
            json!({"operations": [{"op": "replace", "path": "Active", "value": "False"}]});
        assert_eq!(patch(as_string), deactivate());
        assert_eq!(patch(json!({"active": false, "id": "3"})), deactivate());
    }

    #[test]
    fn names_emails_and_user_names_are_replaced() {
        let c = patch(json!({"Operations": [
            {"op": "replace", "path": "userName", "value": "jane.doe"},
            {"op": "replace", "path": "name.givenName", "value": "Jane"},
            {"op": "add", "path": "name", "value": {"familyName": "Doe"}},
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "j@x.y"},
            {"op": "replace", "value": {"name.familyName": "Roe", "externalId": "e1"}},
        ]}));
        assert_eq!(
            c,
            Changes {
                user_name: Some("jane.doe".into()),
                given_name: Some("Jane".into()),
                family_name: Some("Roe".into()),
                email: Some("j@x.y".into()),
                active: None,
            }
        );
        let c = patch(json!({"Operations": [
            {"op": "replace", "path": "emails", "value": [{"value": "a@x.y"}, {"value": "b@x.y", "primary": true}]},
            {"op": "remove", "path": "name.givenName"},
        ]}));
        assert_eq!(c.email.as_deref(), Some("b@x.y"));
        assert_eq!(c.given_name.as_deref(), Some(""));
    }

    #[test]
    fn bad_operations_are_400s_with_a_scim_type() {
        for (body, scim_type) in [
            (json!([]), "invalidSyntax"),
            (json!({"Operations": {}}), "invalidSyntax"),
            (json!({"Operations": [{"path": "active"}]}), "invalidSyntax"),
            (
                json!({"Operations": [{"op": "move", "path": "active"}]}),
                "invalidSyntax",
            ),
            (
                json!({"Operations": [{"op": "replace", "path": "nope", "value": 1}]}),
                "invalidPath",
            ),
            (json!({"Operations": [{"op": "remove"}]}), "invalidPath"),
            (
                json!({"Operations": [{"op": "remove", "path": "userName"}]}),
                "invalidValue",
            ),
            (
                json!({"Operations": [{"op": "replace", "path": "active", "value": 3}]}),
                "invalidValue",
            ),
            (
                json!({"Operations": [{"op": "replace", "path": "emails", "value": []}]}),
                "invalidValue",
            ),
            (
                json!({"Operations": [{"op": "replace", "value": 5}]}),
                "invalidSyntax",
            ),
            (json!({"userName": 5}), "invalidValue"),
        ] {
            let e = patch_changes(&body).expect_err(&body.to_string());
            assert_eq!(e.scim_type, Some(scim_type), "{body}: {e}");
        }
    }
}
