//! Routes as data. Each service declares its routes in a table of [`Route`]s
//! (method, path as the `iblai` client writes it, handler, guard); a server
//! registers the tables it serves with [`configure`], and the OpenAPI
//! description and the README's permissions table are generated from them.

use std::cmp::Ordering;

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use crate::guard::{Guard, RouteGuards};

/// How a route authenticates its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Api-Token <key>`.
    ApiKey,
    Public,
}

/// One route: its method, its path as the `iblai` client writes it (trailing
/// slash included where the client sends one; both forms are served), and
/// its handler.
#[derive(Clone)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub operation_id: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    pub handler: fn() -> actix_web::Route,
    /// The success status, when it is not the method's usual one.
    pub status: Option<&'static str>,
    /// What the caller must be allowed (see [`crate::guard`]).
    pub guard: Option<Guard>,
}

impl Route {
    /// Requires `operation` of the operation table on `resource`.
    pub fn guarded(mut self, operation: &'static str, resource: &'static str) -> Self {
        self.guard = Some(Guard {
            operation,
            resource,
        });
        self
    }
}

/// The tags of the OpenAPI description.
pub const CRED: &str = "credentials";
pub const CORE: &str = "core";
pub const SCIM: &str = "scim";
pub const AUDIT: &str = "audit";

/// `route!(POST "/path/", "operation_id", TAG, ApiKey, "summary", handler)`,
/// with `; Some("201")` at the end when the success status is not the
/// method's usual one.
#[macro_export]
macro_rules! route {
    ($method:ident $path:literal, $op:literal, $tag:expr, $auth:ident, $summary:literal, $handler:path) => {
        $crate::route!($method $path, $op, $tag, $auth, $summary, $handler; None)
    };
    ($method:ident $path:literal, $op:literal, $tag:expr, $auth:ident, $summary:literal, $handler:path; $status:expr) => {
        $crate::routes::Route {
            method: ::actix_web::http::Method::$method,
            path: $path,
            operation_id: $op,
            tag: $tag,
            summary: $summary,
            auth: $crate::routes::Auth::$auth,
            handler: || ::actix_web::web::route().method(::actix_web::http::Method::$method).to($handler),
            status: $status,
            guard: None,
        }
    };
}

/// The routes every process serves: liveness, readiness, metrics and the
/// OpenAPI description of what it serves.
pub fn operations() -> Vec<Route> {
    vec![
        route!(GET "/healthz", "healthz", CORE, Public, "Liveness: 200 once the read models are current", healthz),
        route!(GET "/readyz", "readyz", CORE, Public, "Readiness: 200 when every backend answers, else 503; each backend's state", crate::metrics::readyz; Some("200")),
        route!(GET "/metrics", "metrics", CORE, Public, "Prometheus metrics (the operator's bearer token, or loopback)", crate::metrics::metrics_route; Some("200")),
        route!(GET "/api/schema/", "schema", CORE, Public, "This OpenAPI description", schema),
    ]
}

/// The actix pattern of a table path: without its trailing slash, since
/// requests are normalised that way.
fn pattern(path: &str) -> &str {
    if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    }
}

/// Orders paths so that of two patterns that can match one path, the one
/// with a literal segment where the other has a parameter comes first
/// (`/users/{user}/issuers` before `/users/{user}/{entity_id}`): actix
/// tries resources in order, whichever crate declared them.
fn specificity(a: &str, b: &str) -> Ordering {
    fn key(p: &str) -> impl Iterator<Item = (bool, &str)> {
        p.split('/').map(|s| (s.starts_with('{'), s))
    }
    key(a).cmp(key(b))
}

/// Sorts a table into registration order: paths without parameters first
/// (one string comparison each, where a pattern is a regex match), then by
/// [`specificity`]; routes of one path keep their order.
pub fn sort(table: &mut [Route]) {
    table.sort_by(|a, b| {
        let (pa, pb) = (pattern(a.path), pattern(b.path));
        pa.contains('{')
            .cmp(&pb.contains('{'))
            .then_with(|| specificity(pa, pb))
    });
}

/// Registers `table`, one resource per path (each with its guards by
/// method and a JSON 405 for other methods), in [`sort`]'s order. Paths
/// with parameters are grouped in scopes by their literal prefix (the
/// segments before the first parameter), so that a request tries the regex
/// of the paths under its own prefix only, not of every path before it.
pub fn configure(cfg: &mut web::ServiceConfig, table: &[Route]) {
    let mut table = table.to_vec();
    sort(&mut table);
    let mut seen: Vec<&'static str> = Vec::new();
    let mut scopes: Vec<(&'static str, actix_web::Scope)> = Vec::new();
    for route in &table {
        let p = pattern(route.path);
        if seen.contains(&p) {
            continue;
        }
        seen.push(p);
        let prefix = scope_of(p, &table);
        let mut resource =
            web::resource(&p[prefix.len()..]).default_service(web::to(method_not_allowed));
        let mut guards = RouteGuards::default();
        for same in table.iter().filter(|r| pattern(r.path) == p) {
            resource = resource.route((same.handler)());
            if let Some(guard) = same.guard {
                guards.0.push((same.method.clone(), guard));
            }
        }
        resource = resource.app_data(guards);
        if prefix.is_empty() {
            cfg.service(resource);
            continue;
        }
        match scopes.iter().position(|(p, _)| *p == prefix) {
            Some(i) => {
                let (p, scope) = scopes.remove(i);
                scopes.insert(i, (p, scope.service(resource)));
            }
            None => scopes.push((prefix, web::scope(prefix).service(resource))),
        }
    }
    for (_, scope) in scopes {
        cfg.service(scope);
    }
}

/// The scope of a path with parameters: the shortest literal prefix, among
/// those of the table's paths with parameters, that is a whole-segment
/// prefix of its own (so that no path can enter one scope while its route
/// is in another); empty for a path without parameters or whose first
/// segment is one.
fn scope_of(p: &'static str, table: &[Route]) -> &'static str {
    fn literal(p: &str) -> &str {
        p.find("/{").map_or("", |i| &p[..i])
    }
    fn under(p: &str, prefix: &str) -> bool {
        p.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
    let own = literal(p);
    if own.is_empty() {
        return "";
    }
    table
        .iter()
        .map(|r| literal(pattern(r.path)))
        .filter(|l| !l.is_empty() && under(own, l))
        .min_by_key(|l| l.len())
        .unwrap_or(own)
}

async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .json(json!({"detail": "Method not allowed.", "code": "method_not_allowed"}))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The OpenAPI description of the routes a process serves (app data).
#[derive(Debug, Clone)]
pub struct Schema(pub Value);

async fn schema(schema: web::Data<Schema>) -> HttpResponse {
    HttpResponse::Ok().json(&schema.0)
}

/// The OpenAPI 3.1 description of `table`.
pub fn openapi(table: &[Route]) -> Value {
    let mut paths = Map::new();
    for route in table {
        let params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "operationId": route.operation_id,
            "summary": route.summary,
            "tags": [route.tag],
            "parameters": params,
            "responses": {
                "default": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            },
        });
        // Credentials POSTs answer 200 (the `iblai` client expects 200 there);
        // core creates (API keys) and SCIM creates answer 201.
        let ok = if let Some(status) = route.status {
            status
        } else if route.method == Method::DELETE {
            "204"
        } else if route.method == Method::POST && route.tag != CRED {
            "201"
        } else {
            "200"
        };
        op["responses"][ok] = json!({"description": "Success"});
        if route.auth == Auth::ApiKey {
            op["security"] = json!([{"PlatformApiKeyAuthentication": []}]);
        }
        if route.method == Method::POST
            || route.method == Method::PUT
            || route.method == Method::PATCH
        {
            let mut content = json!({"application/json": {"schema": {"type": "object"}}});
            if route.tag == SCIM {
                content["application/scim+json"] = json!({"schema": {"type": "object"}});
            }
            op["requestBody"] = json!({"required": true, "content": content});
        }
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[route.method.as_str().to_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "ibl.ai data manager: credentials and RBAC", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "PlatformApiKeyAuthentication": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "Api-Token <key>"}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}, "code": {"type": "string"}}}
            }
        }
    })
}

/// `table` as Markdown, with what each route needs of its caller.
pub fn markdown(table: &[Route]) -> String {
    let mut out = String::from("| method | path | needs |\n|---|---|---|\n");
    for route in table {
        let needs = match (route.auth, route.guard) {
            (Auth::Public, _) => "public".to_owned(),
            (Auth::ApiKey, None) => "any valid key (about its own user)".to_owned(),
            (Auth::ApiKey, Some(g)) => {
                format!("`{}` on `{}`", g.action().unwrap_or("?"), g.resource)
            }
        };
        out.push_str(&format!(
            "| {} | `{}` | {} |\n",
            route.method, route.path, needs
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_segment_is_tried_before_a_parameter_in_the_same_place() {
        let mut paths = vec![
            "/o/{org}/users/{user}/{entity_id}",
            "/o/{org}/users/{user}/issuers/{entity_id}",
            "/o/{org}/users/{user}/issuers",
            "/o/{org}/users/{user}/{entity_id}/assertions",
            "/o/{org}/users/{user}/assertions",
        ];
        paths.sort_by(|a, b| specificity(a, b));
        let issuers = paths.iter().position(|p| p.ends_with("/issuers")).unwrap();
        let assertions = paths
            .iter()
            .position(|p| p.ends_with("{entity_id}/assertions"))
            .unwrap();
        let entity = paths
            .iter()
            .position(|p| p.ends_with("{user}/{entity_id}"))
            .unwrap();
        let own = paths
            .iter()
            .position(|p| p.ends_with("{user}/assertions"))
            .unwrap();
        assert!(issuers < entity && own < entity, "{paths:?}");
        assert!(own < assertions, "{paths:?}");
    }
}
