//! SCIM 2.0 Users (RFC 7643/7644) under `/api/orgs/{platform_key}/scim/v2/`:
//! the wire shapes the `iblai` client's `SCIMUserResponse` and
//! `SCIMUserListResponse` read, the SCIM error format, the `filter`
//! grammar, and the read routes.
//!
//! Every SCIM route answers `application/scim+json`, errors included: a
//! [`ScimError`] wraps an [`ApiError`] (whose `status_code` stays the one
//! status table) and renders it as
//! `{"schemas": [Error], "status": "409", "scimType": "uniqueness", "detail": ...}`.

use std::fmt;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use ibl_projections::credentials::UserView;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::wire::time;
use crate::ReadState;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The key under which the `iblai` client requires the enterprise extension
/// (an object; every field of it optional).
pub const ENTERPRISE_KEY: &str = "urn_ietf_params_scim_schemas_extension_enterprise_2_0_User";
/// The SCIM media type (RFC 7644 §8.1).
pub const MEDIA_TYPE: &str = "application/scim+json";

/// Default and largest `count` of a list.
pub const DEFAULT_COUNT: usize = 100;
pub const MAX_COUNT: usize = 200;

/// An [`ApiError`] answered in the SCIM error format, with the `scimType`
/// RFC 7644 §3.12 names for it.
#[derive(Debug)]
pub struct ScimError {
    pub error: ApiError,
    pub scim_type: Option<&'static str>,
}

impl ScimError {
    fn new(error: ApiError, scim_type: &'static str) -> Self {
        Self {
            error,
            scim_type: Some(scim_type),
        }
    }

    /// 400 `invalidFilter`.
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::new(ApiError::BadRequest(detail.into()), "invalidFilter")
    }

    /// 400 `invalidValue`.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(ApiError::BadRequest(detail.into()), "invalidValue")
    }

    /// 400 `invalidSyntax`: the body is not the shape of a SCIM request.
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::new(ApiError::BadRequest(detail.into()), "invalidSyntax")
    }

    /// 400 `invalidPath`: a PATCH path this service does not know.
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::new(ApiError::BadRequest(detail.into()), "invalidPath")
    }

    /// 404 for a user that is not on the platform.
    pub fn user_not_found(id: &str) -> Self {
        Self {
            error: ApiError::NotFound(format!("User {id} not found.")),
            scim_type: None,
        }
    }
}

impl From<ApiError> for ScimError {
    fn from(error: ApiError) -> Self {
        let scim_type = match &error {
            ApiError::Validation(_) | ApiError::BadRequest(_) => Some("invalidValue"),
            ApiError::Conflict(_) => Some("uniqueness"),
            _ => None,
        };
        Self { error, scim_type }
    }
}

impl fmt::Display for ScimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

/// The SCIM name of a field our domain names (`username` is `userName`).
fn attribute(field: &str) -> &str {
    match field {
        "username" => "userName",
        "email" => "emails",
        "given_name" => "name.givenName",
        "family_name" => "name.familyName",
        other => other,
    }
}

impl ScimError {
    fn detail(&self) -> String {
        match &self.error {
            ApiError::Validation(fields) => fields
                .iter()
                .map(|(field, messages)| {
                    let messages = match messages {
                        Value::Array(items) => items
                            .iter()
                            .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
                            .collect::<Vec<_>>()
                            .join(" "),
                        other => other.to_string(),
                    };
                    format!("{}: {messages}", attribute(field))
                })
                .collect::<Vec<_>>()
                .join("; "),
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                "Internal error.".into()
            }
            other => other.to_string(),
        }
    }
}

impl ResponseError for ScimError {
    fn status_code(&self) -> StatusCode {
        self.error.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": status.as_u16().to_string(),
            "detail": self.detail(),
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        let mut response = HttpResponse::build(status);
        if matches!(self.error, ApiError::Unauthorized(_)) {
            response.insert_header(("WWW-Authenticate", "Api-Token"));
        }
        response
            .insert_header((header::CONTENT_TYPE, MEDIA_TYPE))
            .json(body)
    }
}

/// A SCIM answer: `status`, `application/scim+json`.
pub fn respond(status: StatusCode) -> HttpResponseBuilder {
    let mut b = HttpResponse::build(status);
    b.insert_header((header::CONTENT_TYPE, MEDIA_TYPE));
    b
}

#[derive(serde::Deserialize)]
pub struct ScimPath {
    pub platform_key: String,
}

#[derive(serde::Deserialize)]
pub struct ScimUserPath {
    pub platform_key: String,
    pub id: String,
}

/// The URL of a SCIM user.
pub fn user_location(base: &str, platform: &str, id: u64) -> String {
    format!("{base}/api/orgs/{platform}/scim/v2/Users/{id}")
}

/// A user as `SCIMUserResponse`: every required field present and typed.
pub fn user(base: &str, u: &UserView) -> Value {
    let formatted = format!("{} {}", u.given_name, u.family_name)
        .trim()
        .to_owned();
    json!({
        "schemas": [USER_SCHEMA],
        "id": u.id.to_string(),
        "userName": u.username,
        "name": {
            "givenName": u.given_name,
            "familyName": u.family_name,
            "formatted": formatted,
        },
        "displayName": if formatted.is_empty() { u.username.clone() } else { formatted.clone() },
        "emails": [{"value": u.email, "primary": true, "type": "work"}],
        "active": u.active,
        ENTERPRISE_KEY: {},
        "meta": {
            "resourceType": "User",
            "created": time(u.created),
            "lastModified": time(u.updated),
            "location": user_location(base, &u.platform, u.id),
        },
    })
}

/// The user `id` (a decimal integer) if it is on `platform`; 404 otherwise,
/// whether it is unknown or another platform's.
pub async fn find_user(read: &ReadState, platform: &str, id: &str) -> Result<UserView, ScimError> {
    let not_found = || ScimError::user_not_found(id);
    if id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_found());
    }
    let id: u64 = id.parse().map_err(|_| not_found())?;
    read.catalog
        .user(platform, id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_keep_their_status_and_get_a_scim_type() {
        let e = ScimError::from(ApiError::Conflict("taken".into()));
        assert_eq!(e.status_code(), StatusCode::CONFLICT);
        assert_eq!(e.scim_type, Some("uniqueness"));
        let e = ScimError::from(ApiError::field("username", "Enter a valid username."));
        assert_eq!(e.status_code(), StatusCode::BAD_REQUEST);
        assert_eq!(e.detail(), "userName: Enter a valid username.");
        let e = ScimError::from(ApiError::Forbidden("no".into()));
        assert_eq!(e.status_code(), StatusCode::FORBIDDEN);
        assert_eq!(e.scim_type, None);
    }
}
