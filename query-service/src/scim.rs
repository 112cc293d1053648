//! The SCIM 2.0 read routes (list with `filter` and paging, one user); the
//! wire shapes and the error format are the edge's ([`ibl_edge::scim`]).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ibl_edge::extract::Principal;
use ibl_edge::request::{fresh, platform_of, Params};
use ibl_edge::scim::{
    find_user, respond, user, ScimError, ScimPath, ScimUserPath, DEFAULT_COUNT, LIST_SCHEMA,
    MAX_COUNT, USER_SCHEMA,
};
use ibl_edge::wire::base_url;
use ibl_edge::{ApiError, ReadState};
use ibl_projections::credentials::UserFilter;
use serde_json::{json, Value};

/// Parses the `filter` of a user list: `userName eq "x"`, `emails.value eq
/// "x"` or `emails eq "x"`; attribute names and the operator are
/// case-insensitive, the value a JSON string. Anything else is
/// `invalidFilter`.
pub fn parse_filter(filter: &str) -> Result<UserFilter, ScimError> {
    let unsupported = || {
        ScimError::invalid_filter(format!(
            "Unsupported filter '{filter}': use userName eq \"...\" or emails.value eq \"...\"."
        ))
    };
    let text = filter.trim();
    let (attr, rest) = text
        .split_once(char::is_whitespace)
        .ok_or_else(unsupported)?;
    let (op, value) = rest
        .trim_start()
        .split_once(char::is_whitespace)
        .ok_or_else(unsupported)?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err(unsupported());
    }
    let value = value.trim();
    if !value.starts_with('"') {
        return Err(unsupported());
    }
    let value: String = serde_json::from_str(value).map_err(|_| unsupported())?;
    let attr = attr.to_ascii_lowercase();
    let attr = attr
        .strip_prefix(&format!("{}:", USER_SCHEMA.to_ascii_lowercase()))
        .unwrap_or(&attr);
    match attr {
        "username" => Ok(UserFilter {
            username: Some(value),
            ..UserFilter::default()
        }),
        "emails" | "emails.value" => Ok(UserFilter {
            email: Some(value),
            ..UserFilter::default()
        }),
        _ => Err(unsupported()),
    }
}

/// A SCIM integer query parameter (`startIndex`, `count`).
fn integer(params: &Params, name: &str) -> Result<Option<i64>, ScimError> {
    params
        .get(name)
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                ScimError::invalid_value(format!("{name} must be an integer, not '{v}'."))
            })
        })
        .transpose()
}

/// The start of every SCIM read, as of every platform-scoped read: the
/// platform (`platform_org` in the query wins over the path), which the
/// caller's key must belong to (403 otherwise), and `X-Min-Position`
/// honoured.
async fn scoped(
    req: &HttpRequest,
    read: &ReadState,
    principal: Result<Principal, ApiError>,
    platform_key: &str,
) -> Result<(Params, String), ScimError> {
    let principal = principal?;
    let params = Params::of(req)?;
    let platform = platform_of(&principal, platform_key, &params)?;
    fresh(req, read).await?;
    Ok((params, platform))
}

/// `GET /api/orgs/{platform_key}/scim/v2/Users`: `filter`, `startIndex`
/// (1-based; below 1 reads as 1) and `count` (default 100, at most 200; below
/// 0 reads as 0).
pub async fn list_users(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Result<Principal, ApiError>,
    path: web::Path<ScimPath>,
) -> Result<HttpResponse, ScimError> {
    let (params, platform) = scoped(&req, &read, principal, &path.platform_key).await?;
    let filter = match params.get("filter") {
        Some(f) => parse_filter(f)?,
        None => UserFilter::default(),
    };
    let start = integer(&params, "startIndex")?.unwrap_or(1).max(1);
    let count = integer(&params, "count")?
        .map_or(DEFAULT_COUNT as i64, |c| c.clamp(0, MAX_COUNT as i64)) as usize;
    let offset = usize::try_from(start - 1).unwrap_or(usize::MAX);
    let page = read
        .catalog
        .users(&platform, &filter, offset, count)
        .await
        .map_err(ApiError::from)?;
    let base = base_url(&req);
    let resources: Vec<Value> = page.items.iter().map(|u| user(&base, u)).collect();
    Ok(respond(StatusCode::OK).json(json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": page.count,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })))
}

/// `GET /api/orgs/{platform_key}/scim/v2/Users/{id}`.
pub async fn get_user(
    req: HttpRequest,
    read: web::Data<ReadState>,
    principal: Result<Principal, ApiError>,
    path: web::Path<ScimUserPath>,
) -> Result<HttpResponse, ScimError> {
    let (_, platform) = scoped(&req, &read, principal, &path.platform_key).await?;
    let u = find_user(&read, &platform, &path.id).await?;
    Ok(respond(StatusCode::OK).json(user(&base_url(&req), &u)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::ResponseError;

    fn ok(filter: &str) -> UserFilter {
        parse_filter(filter).unwrap_or_else(|e| panic!("{filter}: {e}"))
    }

    #[test]
    fn filters_on_username_and_email_parse_case_insensitively() {
        assert_eq!(
            ok(r#"userName eq "jane""#).username.as_deref(),
            Some("jane")
        );
        assert_eq!(
            ok(r#"  USERNAME   EQ   "ja\"ne"  "#).username.as_deref(),
            Some("ja\"ne")
        );
        assert_eq!(
            ok(r#"emails.value eq "j@x.y""#).email.as_deref(),
            Some("j@x.y")
        );
        assert_eq!(ok(r#"Emails Eq "j@x.y""#).email.as_deref(), Some("j@x.y"));
        assert_eq!(
            ok(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "j""#)
                .username
                .as_deref(),
            Some("j")
        );
    }

    #[test]
    fn anything_else_is_an_invalid_filter() {
        for bad in [
            "",
            "userName",
            "userName eq",
            "userName eq jane",
            r#"userName co "jane""#,
            r#"userName eq "jane" and active eq true"#,
            r#"displayName eq "jane""#,
            r#"userName eq "unterminated"#,
            "active eq true",
        ] {
            let e = parse_filter(bad).expect_err(bad);
            assert_eq!(e.scim_type, Some("invalidFilter"), "{bad}");
            assert_eq!(e.status_code(), StatusCode::BAD_REQUEST);
        }
    }
}
