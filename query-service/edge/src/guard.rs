//! Route guards: every authenticated route names the operation of the
//! operation table it needs and on which resource; the caller is the user
//! who owns the key, judged by the same grants as the permission check.

use actix_web::http::Method;
use actix_web::HttpRequest;
use std::sync::Arc;

use ibl_events::rbac::{classify, evaluate, Grant, Operation, ResourcePath};

use crate::extract::Principal;
use crate::{ApiError, ReadState};

/// What a route needs: `operation` (a row name of the operation table, such
/// as `create`) on `resource`, a template in which `{pk}` is the caller's
/// platform id and other `{name}`s are the route's path parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    pub operation: &'static str,
    pub resource: &'static str,
}

/// The guards of one path, by method (resource-level app data).
#[derive(Debug, Clone, Default)]
pub struct RouteGuards(pub Vec<(Method, Guard)>);

impl Guard {
    /// The resource with every placeholder filled by `fill`.
    fn path(&self, fill: impl Fn(&str) -> Option<String>) -> Option<String> {
        let mut out = String::with_capacity(self.resource.len() + 16);
        let mut rest = self.resource;
        while let Some(start) = rest.find('{') {
            let end = start + rest[start..].find('}')?;
            out.push_str(&rest[..start]);
            out.push_str(&fill(&rest[start + 1..end])?);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// The operation-table row this guard needs, for a sample resource.
    pub fn operation(&self) -> Option<&'static Operation> {
        let sample = ResourcePath::parse(&self.path(|_| Some("1".into()))?).ok()?;
        let (kind_of, kind) = classify(&sample)?;
        kind_of.operation(kind, self.operation)
    }

    /// The action this guard needs (with `{id}` for a field-level data action).
    pub fn action(&self) -> Option<&'static str> {
        self.operation().map(|o| o.action)
    }
}

/// The grants of the key's user, as the RBAC port found it: 403 unless it
/// is registered on the key's platform and active.
pub fn active(
    principal: &Principal,
    found: Option<(bool, Arc<Vec<Grant>>)>,
) -> Result<Arc<Vec<Grant>>, ApiError> {
    match found {
        Some((true, grants)) => Ok(grants),
        _ => Err(ApiError::Forbidden(format!(
            "The user of this API key ({}) is not active on this platform.",
            principal.key.username
        ))),
    }
}

/// Checks `principal` against the guard of this request's route, if any.
/// A key whose user is deactivated is refused on every route (403), even
/// those that need no operation. Answers the user's grants.
pub async fn enforce(
    req: &HttpRequest,
    read: &ReadState,
    principal: &Principal,
) -> Result<Arc<Vec<Grant>>, ApiError> {
    let platform = &principal.platform;
    let user = principal.key.user_id;
    let found = read.access.users_grants(&platform.key, &[user]).await?;
    let grants = active(principal, found.into_iter().next().flatten())?;
    let Some(guard) = req
        .app_data::<RouteGuards>()
        .and_then(|g| g.0.iter().find(|(m, _)| m == req.method()))
        .map(|(_, g)| *g)
    else {
        return Ok(grants);
    };
    let path = guard
        .path(|name| match name {
            "pk" => Some(platform.id.to_string()),
            other => req.match_info().get(other).map(str::to_owned),
        })
        .and_then(|p| ResourcePath::parse(&p).ok())
        .ok_or_else(ApiError::not_found)?;
    let (kind_of, kind) = classify(&path).ok_or_else(|| {
        ApiError::Internal(format!("guard on an unknown resource {}", path.as_str()))
    })?;
    let operation = kind_of.operation(kind, guard.operation).ok_or_else(|| {
        ApiError::Internal(format!("guard names no operation {}", guard.operation))
    })?;
    if evaluate(&grants, &path, operation).allowed {
        Ok(grants)
    } else {
        Err(ApiError::Forbidden(format!(
            "This needs {} on {}.",
            operation.action_for(path.last_segment()),
            path.as_str()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_resolves_its_action_from_the_operation_table() {
        let create = Guard {
            operation: "create",
            resource: "/platforms/{pk}/credentials/",
        };
        assert_eq!(create.action(), Some("Ibl.Credentials/Credentials/action"));
        let read = Guard {
            operation: "read",
            resource: "/platforms/{pk}/credentials/{entity_id}/",
        };
        assert_eq!(read.action(), Some("Ibl.Credentials/Credentials/read"));
        let nonsense = Guard {
            operation: "fly",
            resource: "/platforms/{pk}/credentials/",
        };
        assert_eq!(nonsense.action(), None);
    }

    #[test]
    fn placeholders_are_filled_from_the_request() {
        let g = Guard {
            operation: "read",
            resource: "/platforms/{pk}/credentials/{entity_id}/",
        };
        let filled = g.path(|n| Some(if n == "pk" { "7".into() } else { "abc".into() }));
        assert_eq!(filled.as_deref(), Some("/platforms/7/credentials/abc/"));
        assert_eq!(g.path(|_| None), None);
    }
}
