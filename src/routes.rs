//! Every route of the API, as data: the server registers them from this
//! table and the OpenAPI description is generated from it.

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use ibl_command_service::routes as w;
use ibl_edge::guard::{Guard, RouteGuards};
use ibl_query_service::rbac as q;
use ibl_query_service::routes as r;
use ibl_query_service::scim as rs;
use serde_json::{json, Map, Value};

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
    /// What the caller must be allowed (see `query-service/src/guard.rs`).
    pub guard: Option<Guard>,
}

impl Route {
    /// Requires `operation` of the operation table on `resource`.
    fn guarded(mut self, operation: &'static str, resource: &'static str) -> Self {
        self.guard = Some(Guard {
            operation,
            resource,
        });
        self
    }
}

const CRED: &str = "credentials";
const CORE: &str = "core";
const SCIM: &str = "scim";

macro_rules! route {
    ($method:ident $path:literal, $op:literal, $tag:expr, $auth:ident, $summary:literal, $handler:path) => {
        route!($method $path, $op, $tag, $auth, $summary, $handler; None)
    };
    ($method:ident $path:literal, $op:literal, $tag:expr, $auth:ident, $summary:literal, $handler:path; $status:expr) => {
        Route {
            method: Method::$method,
            path: $path,
            operation_id: $op,
            tag: $tag,
            summary: $summary,
            auth: Auth::$auth,
            handler: || web::route().method(Method::$method).to($handler),
            status: $status,
            guard: None,
        }
    };
}

/// The table. Literal segments come before parameters at the same depth.
pub fn table() -> Vec<Route> {
    vec![
        route!(GET "/healthz", "healthz", CORE, Public, "Liveness: 200 once the read models are current", healthz),
        route!(GET "/readyz", "readyz", CORE, Public, "Readiness: 200 when every backend answers, else 503; each backend's state", ibl_edge::metrics::readyz; Some("200")),
        route!(GET "/metrics", "metrics", CORE, Public, "Prometheus metrics (the operator's bearer token, or loopback)", ibl_edge::metrics::metrics_route; Some("200")),
        route!(GET "/api/schema/", "schema", CORE, Public, "This OpenAPI description", schema),
        route!(GET "/api/credentials/public/assertions/{entity_id}/", "credentials_public_assertions_retrieve", CRED, Public, "Verify an assertion publicly", r::verify_assertion),
        route!(GET "/api/credentials/orgs/{org}/users/{user}/", "credentials_orgs_users_retrieve", CRED, ApiKey, "List the platform's credentials", r::list_credentials).guarded("list", "/platforms/{pk}/credentials/"),
        route!(POST "/api/credentials/orgs/{org}/users/{user}/", "credentials_orgs_users_create", CRED, ApiKey, "Create a credential", w::create_credential).guarded("create", "/platforms/{pk}/credentials/"),
        route!(GET "/api/credentials/orgs/{org}/users/{user}/assertions/", "credentials_orgs_users_assertions_retrieve", CRED, ApiKey, "List the platform's assertions", r::list_assertions).guarded("list", "/platforms/{pk}/assertions/"),
        route!(GET "/api/credentials/orgs/{org}/users/{user}/assertions/{entity_id}", "credentials_orgs_users_assertions_retrieve3", CRED, ApiKey, "Get an assertion", r::get_assertion).guarded("read", "/platforms/{pk}/assertions/{entity_id}/"),
        route!(PUT "/api/credentials/orgs/{org}/users/{user}/assertions/{entity_id}", "credentials_orgs_users_assertions_update", CRED, ApiKey, "Revoke an assertion", w::update_assertion).guarded("write", "/platforms/{pk}/assertions/{entity_id}/"),
        route!(GET "/api/credentials/orgs/{org}/users/{user}/issuers/", "credentials_orgs_users_issuers_retrieve", CRED, ApiKey, "List issuers (q: search)", r::list_issuers).guarded("list", "/platforms/{pk}/issuers/"),
        route!(POST "/api/credentials/orgs/{org}/users/{user}/issuers/", "credentials_orgs_users_issuers_create", CRED, ApiKey, "Create an issuer", w::create_issuer).guarded("create", "/platforms/{pk}/issuers/"),
        route!(GET "/api/credentials/orgs/{org}/users/{user}/issuers/{entity_id}", "credentials_orgs_users_issuers_retrieve2", CRED, ApiKey, "Get an issuer", r::get_issuer).guarded("read", "/platforms/{pk}/issuers/{entity_id}/"),
        route!(PUT "/api/credentials/orgs/{org}/users/{user}/issuers/{entity_id}", "credentials_orgs_users_issuers_update", CRED, ApiKey, "Update an issuer", w::update_issuer).guarded("write", "/platforms/{pk}/issuers/{entity_id}/"),
        route!(DELETE "/api/credentials/orgs/{org}/users/{user}/issuers/{entity_id}", "credentials_orgs_users_issuers_destroy", CRED, ApiKey, "Delete an issuer", w::delete_issuer).guarded("delete", "/platforms/{pk}/issuers/{entity_id}/"),
        route!(GET "/api/credentials/orgs/{org}/users/{user}/{entity_id}", "credentials_orgs_users_retrieve2", CRED, ApiKey, "Get a credential", r::get_credential).guarded("read", "/platforms/{pk}/credentials/{entity_id}/"),
        route!(PUT "/api/credentials/orgs/{org}/users/{user}/{entity_id}", "credentials_orgs_users_update", CRED, ApiKey, "Update a credential", w::update_credential).guarded("write", "/platforms/{pk}/credentials/{entity_id}/"),
        route!(DELETE "/api/credentials/orgs/{org}/users/{user}/{entity_id}", "credentials_orgs_users_destroy", CRED, ApiKey, "Delete a credential", w::delete_credential).guarded("delete", "/platforms/{pk}/credentials/{entity_id}/"),
        route!(GET "/api/credentials/orgs/{org}/users/{user}/{entity_id}/assertions/", "credentials_orgs_users_assertions_retrieve2", CRED, ApiKey, "List a credential's assertions", r::list_credential_assertions).guarded("list", "/platforms/{pk}/credentials/{entity_id}/assertions/"),
        route!(POST "/api/credentials/orgs/{org}/users/{user}/{entity_id}/assertions/", "credentials_orgs_users_assertions_create", CRED, ApiKey, "Issue a credential to a recipient", w::issue_assertion).guarded("create", "/platforms/{pk}/credentials/{entity_id}/assertions/"),
        route!(POST "/api/credentials/orgs/{org}/users/{user}/{entity_id}/assertions/bulk/", "credentials_orgs_users_assertions_bulk_create", CRED, ApiKey, "Issue a credential to many recipients", w::bulk_issue).guarded("create", "/platforms/{pk}/credentials/{entity_id}/assertions/"),
        route!(POST "/api/core/rbac/permissions/check/", "core_rbac_permissions_check_create", CORE, ApiKey, "What the caller (or a named user) may do on each resource; explain: why", q::check_permissions; Some("200")),
        route!(GET "/api/core/rbac/access/", "core_rbac_access_list", CORE, ApiKey, "Who holds an action on a resource, and through which policy and group", q::who_has_access).guarded("list", "/platforms/{pk}/policies/"),
        route!(GET "/api/core/rbac/roles/", "core_rbac_roles_list", CORE, ApiKey, "List the platform's roles", ibl_query_service::rbac_routes::list_roles).guarded("list", "/platforms/{pk}/roles/"),
        route!(POST "/api/core/rbac/roles/", "core_rbac_roles_create", CORE, ApiKey, "Create a role", ibl_command_service::routes::rbac::create_role).guarded("create", "/platforms/{pk}/roles/"),
        route!(GET "/api/core/rbac/roles/{id}/", "core_rbac_roles_retrieve", CORE, ApiKey, "Get a role", ibl_query_service::rbac_routes::get_role).guarded("read", "/platforms/{pk}/roles/{id}/"),
        route!(PUT "/api/core/rbac/roles/{id}/", "core_rbac_roles_update", CORE, ApiKey, "Update a role", ibl_command_service::routes::rbac::update_role).guarded("write", "/platforms/{pk}/roles/{id}/"),
        route!(PATCH "/api/core/rbac/roles/{id}/", "core_rbac_roles_partial_update", CORE, ApiKey, "Change some fields of a role", ibl_command_service::routes::rbac::update_role).guarded("write", "/platforms/{pk}/roles/{id}/"),
        route!(DELETE "/api/core/rbac/roles/{id}/", "core_rbac_roles_destroy", CORE, ApiKey, "Delete a role (?platform_key=)", ibl_command_service::routes::rbac::delete_role).guarded("delete", "/platforms/{pk}/roles/{id}/"),
        route!(GET "/api/core/rbac/groups/", "core_rbac_groups_list", CORE, ApiKey, "List the platform's groups", ibl_query_service::rbac_routes::list_groups).guarded("list", "/platforms/{pk}/groups/"),
        route!(POST "/api/core/rbac/groups/", "core_rbac_groups_create", CORE, ApiKey, "Create a group", ibl_command_service::routes::rbac::create_group).guarded("create", "/platforms/{pk}/groups/"),
        route!(GET "/api/core/rbac/groups/{id}/", "core_rbac_groups_retrieve", CORE, ApiKey, "Get a group", ibl_query_service::rbac_routes::get_group).guarded("read", "/platforms/{pk}/groups/{id}/"),
        route!(PUT "/api/core/rbac/groups/{id}/", "core_rbac_groups_update", CORE, ApiKey, "Update a group", ibl_command_service::routes::rbac::update_group).guarded("write", "/platforms/{pk}/groups/{id}/"),
        route!(PATCH "/api/core/rbac/groups/{id}/", "core_rbac_groups_partial_update", CORE, ApiKey, "Change some fields of a group", ibl_command_service::routes::rbac::update_group).guarded("write", "/platforms/{pk}/groups/{id}/"),
        route!(DELETE "/api/core/rbac/groups/{id}/", "core_rbac_groups_destroy", CORE, ApiKey, "Delete a group (?platform_key=)", ibl_command_service::routes::rbac::delete_group).guarded("delete", "/platforms/{pk}/groups/{id}/"),
        route!(GET "/api/core/rbac/policies/", "core_rbac_policies_list", CORE, ApiKey, "List the platform's policies", ibl_query_service::rbac_routes::list_policies).guarded("list", "/platforms/{pk}/policies/"),
        route!(POST "/api/core/rbac/policies/", "core_rbac_policies_create", CORE, ApiKey, "Create a policy", ibl_command_service::routes::rbac::create_policy).guarded("create", "/platforms/{pk}/policies/"),
        route!(GET "/api/core/rbac/policies/{id}/", "core_rbac_policies_retrieve", CORE, ApiKey, "Get a policy", ibl_query_service::rbac_routes::get_policy).guarded("read", "/platforms/{pk}/policies/{id}/"),
        route!(PUT "/api/core/rbac/policies/{id}/", "core_rbac_policies_update", CORE, ApiKey, "Update a policy", ibl_command_service::routes::rbac::update_policy).guarded("write", "/platforms/{pk}/policies/{id}/"),
        route!(PATCH "/api/core/rbac/policies/{id}/", "core_rbac_policies_partial_update", CORE, ApiKey, "Change some fields of a policy", ibl_command_service::routes::rbac::update_policy).guarded("write", "/platforms/{pk}/policies/{id}/"),
        route!(DELETE "/api/core/rbac/policies/{id}/", "core_rbac_policies_destroy", CORE, ApiKey, "Delete a policy (?platform_key=)", ibl_command_service::routes::rbac::delete_policy).guarded("delete", "/platforms/{pk}/policies/{id}/"),
        route!(GET "/api/core/rbac/mentor-access/", "core_rbac_mentor_access_list", CORE, ApiKey, "The access policies of one mentor (platform_key, mentor_id)", ibl_query_service::rbac_routes::list_mentor_access).guarded("list", "/platforms/{pk}/policies/"),
        route!(POST "/api/core/rbac/mentor-access/", "core_rbac_mentor_access_create", CORE, ApiKey, "Grant or revoke access to one mentor (201 created, 200 updated)", ibl_command_service::routes::rbac::mentor_access).guarded("create", "/platforms/{pk}/policies/"),
        route!(GET "/api/core/platform/api-tokens/", "core_platform_api_tokens_list", CORE, ApiKey, "List the platform's API keys (prefix only)", r::list_api_keys).guarded("list", "/platforms/{pk}/api-keys/"),
        route!(POST "/api/core/platform/api-tokens/", "core_platform_api_tokens_create", CORE, ApiKey, "Create an API key (the secret is shown once)", w::create_api_key).guarded("create", "/platforms/{pk}/api-keys/"),
        route!(DELETE "/api/core/platform/api-tokens/{name}", "core_platform_api_tokens_destroy", CORE, ApiKey, "Delete an API key by name", w::delete_api_key).guarded("delete", "/platforms/{pk}/api-keys/{name}/"),
        route!(GET "/api/orgs/{platform_key}/scim/v2/Users", "orgs_scim_v2_users_list", SCIM, ApiKey, "List the platform's users (SCIM filter, startIndex, count)", rs::list_users).guarded("list", "/platforms/{pk}/users/"),
        route!(POST "/api/orgs/{platform_key}/scim/v2/Users", "orgs_scim_v2_users_create", SCIM, ApiKey, "Create a user (SCIM)", w::scim::create_user).guarded("create", "/platforms/{pk}/users/"),
        route!(GET "/api/orgs/{platform_key}/scim/v2/Users/{id}", "orgs_scim_v2_users_retrieve", SCIM, ApiKey, "Get a user (SCIM)", rs::get_user).guarded("read", "/platforms/{pk}/users/{id}/"),
        route!(PUT "/api/orgs/{platform_key}/scim/v2/Users/{id}", "orgs_scim_v2_users_update", SCIM, ApiKey, "Replace a user (SCIM)", w::scim::replace_user).guarded("write", "/platforms/{pk}/users/{id}/"),
        route!(PATCH "/api/orgs/{platform_key}/scim/v2/Users/{id}", "orgs_scim_v2_users_partial_update", SCIM, ApiKey, "Change a user: SCIM PatchOp or a partial user", w::scim::patch_user).guarded("write", "/platforms/{pk}/users/{id}/"),
        route!(DELETE "/api/orgs/{platform_key}/scim/v2/Users/{id}", "orgs_scim_v2_users_destroy", SCIM, ApiKey, "Deactivate a user (SCIM); it stays with active false", w::scim::delete_user).guarded("delete", "/platforms/{pk}/users/{id}/"),
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

/// Registers the table, one resource per path: paths without parameters
/// first (actix tries resources in order, and a literal path is one string
/// comparison where a pattern is a regex match), then the table's order.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut seen: Vec<&'static str> = Vec::new();
    let table = table();
    let (literal, patterned): (Vec<&Route>, Vec<&Route>) =
        table.iter().partition(|r| !r.path.contains('{'));
    for route in literal.into_iter().chain(patterned) {
        let p = pattern(route.path);
        if seen.contains(&p) {
            continue;
        }
        seen.push(p);
        let mut resource = web::resource(p).default_service(web::to(method_not_allowed));
        let mut guards = RouteGuards::default();
        for same in table.iter().filter(|r| pattern(r.path) == p) {
            resource = resource.route((same.handler)());
            if let Some(guard) = same.guard {
                guards.0.push((same.method.clone(), guard));
            }
        }
        resource = resource.app_data(guards);
        cfg.service(resource);
    }
}

async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .json(json!({"detail": "Method not allowed.", "code": "method_not_allowed"}))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn schema() -> HttpResponse {
    HttpResponse::Ok().json(openapi())
}

/// The OpenAPI 3.1 description, generated from the table.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for route in table() {
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

/// The route table as Markdown, with what each route needs of its caller:
/// the README's "Routes and permissions" section is this text
/// (`ibl routes` prints it; a test keeps the README in step).
pub fn markdown() -> String {
    let mut out = String::from("| method | path | needs |\n|---|---|---|\n");
    for route in table() {
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
