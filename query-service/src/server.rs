//! The query service as a process: the read routes over its read models.

use std::net::TcpListener;

use actix_web::web;
use ibl_edge::metrics::Metrics;
use ibl_edge::route;
use ibl_edge::routes::{Route, CORE, CRED, SCIM};
use ibl_edge::server::{open_store, serve, start_read_side, Role, Running, Settings};

use crate::ratelimit::{Rate, RateLimiter};
use crate::routes::PublicLimit;

/// The read routes (the permission check is one, though it is a POST).
pub fn table() -> Vec<Route> {
    vec![
        route!(GET "/api/credentials/public/assertions/{entity_id}/", "credentials_public_assertions_retrieve", CRED, Public, "Verify an assertion publicly", crate::routes::verify_assertion),
        route!(GET "/api/credentials/orgs/{org}/users/{user}/", "credentials_orgs_users_retrieve", CRED, ApiKey, "List the platform's credentials", crate::routes::list_credentials).guarded("list", "/platforms/{pk}/credentials/"),
        route!(GET "/api/credentials/orgs/{org}/users/{user}/assertions/", "credentials_orgs_users_assertions_retrieve", CRED, ApiKey, "List the platform's assertions", crate::routes::list_assertions).guarded("list", "/platforms/{pk}/assertions/"),
        route!(GET "/api/credentials/orgs/{org}/users/{user}/assertions/{entity_id}", "credentials_orgs_users_assertions_retrieve3", CRED, ApiKey, "Get an assertion", crate::routes::get_assertion).guarded("read", "/platforms/{pk}/assertions/{entity_id}/"),
        route!(GET "/api/credentials/orgs/{org}/users/{user}/issuers/", "credentials_orgs_users_issuers_retrieve", CRED, ApiKey, "List issuers (q: search)", crate::routes::list_issuers).guarded("list", "/platforms/{pk}/issuers/"),
        route!(GET "/api/credentials/orgs/{org}/users/{user}/issuers/{entity_id}", "credentials_orgs_users_issuers_retrieve2", CRED, ApiKey, "Get an issuer", crate::routes::get_issuer).guarded("read", "/platforms/{pk}/issuers/{entity_id}/"),
        route!(GET "/api/credentials/orgs/{org}/users/{user}/{entity_id}", "credentials_orgs_users_retrieve2", CRED, ApiKey, "Get a credential", crate::routes::get_credential).guarded("read", "/platforms/{pk}/credentials/{entity_id}/"),
        route!(GET "/api/credentials/orgs/{org}/users/{user}/{entity_id}/assertions/", "credentials_orgs_users_assertions_retrieve2", CRED, ApiKey, "List a credential's assertions", crate::routes::list_credential_assertions).guarded("list", "/platforms/{pk}/credentials/{entity_id}/assertions/"),
        route!(POST "/api/core/rbac/permissions/check/", "core_rbac_permissions_check_create", CORE, ApiKey, "What the caller (or a named user) may do on each resource; explain: why", crate::rbac::check_permissions; Some("200")),
        route!(GET "/api/core/rbac/access/", "core_rbac_access_list", CORE, ApiKey, "Who holds an action on a resource, and through which policy and group", crate::rbac::who_has_access).guarded("list", "/platforms/{pk}/policies/"),
        route!(GET "/api/core/rbac/roles/", "core_rbac_roles_list", CORE, ApiKey, "List the platform's roles", crate::rbac_routes::list_roles).guarded("list", "/platforms/{pk}/roles/"),
        route!(GET "/api/core/rbac/roles/{id}/", "core_rbac_roles_retrieve", CORE, ApiKey, "Get a role", crate::rbac_routes::get_role).guarded("read", "/platforms/{pk}/roles/{id}/"),
        route!(GET "/api/core/rbac/groups/", "core_rbac_groups_list", CORE, ApiKey, "List the platform's groups", crate::rbac_routes::list_groups).guarded("list", "/platforms/{pk}/groups/"),
        route!(GET "/api/core/rbac/groups/{id}/", "core_rbac_groups_retrieve", CORE, ApiKey, "Get a group", crate::rbac_routes::get_group).guarded("read", "/platforms/{pk}/groups/{id}/"),
        route!(GET "/api/core/rbac/policies/", "core_rbac_policies_list", CORE, ApiKey, "List the platform's policies", crate::rbac_routes::list_policies).guarded("list", "/platforms/{pk}/policies/"),
        route!(GET "/api/core/rbac/policies/{id}/", "core_rbac_policies_retrieve", CORE, ApiKey, "Get a policy", crate::rbac_routes::get_policy).guarded("read", "/platforms/{pk}/policies/{id}/"),
        route!(GET "/api/core/rbac/mentor-access/", "core_rbac_mentor_access_list", CORE, ApiKey, "The access policies of one mentor (platform_key, mentor_id)", crate::rbac_routes::list_mentor_access).guarded("list", "/platforms/{pk}/policies/"),
        route!(GET "/api/core/platform/api-tokens/", "core_platform_api_tokens_list", CORE, ApiKey, "List the platform's API keys (prefix only)", crate::routes::list_api_keys).guarded("list", "/platforms/{pk}/api-keys/"),
        route!(GET "/api/orgs/{platform_key}/scim/v2/Users", "orgs_scim_v2_users_list", SCIM, ApiKey, "List the platform's users (SCIM filter, startIndex, count)", crate::scim::list_users).guarded("list", "/platforms/{pk}/users/"),
        route!(GET "/api/orgs/{platform_key}/scim/v2/Users/{id}", "orgs_scim_v2_users_retrieve", SCIM, ApiKey, "Get a user (SCIM)", crate::scim::get_user).guarded("read", "/platforms/{pk}/users/{id}/"),
    ]
}

/// What the read routes need besides the read side: the public route's
/// rate limit.
pub fn app_data(
    settings: &Settings,
) -> std::io::Result<impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static> {
    let rate = Rate::new(settings.public_rate, settings.public_burst)
        .map_err(|e| std::io::Error::other(format!("the public rate limit: {e}")))?;
    let limit = web::Data::new(PublicLimit(RateLimiter::new(
        rate,
        std::time::Instant::now(),
    )));
    Ok(move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(limit.clone());
    })
}

/// Opens the store, starts the read models and serves the read routes on
/// `listener`.
pub async fn build(settings: &Settings, listener: TcpListener) -> std::io::Result<Running> {
    let metrics = Metrics::new();
    let store = open_store(settings, &metrics).await?;
    let side = start_read_side(store, metrics, settings, Role::Queries).await?;
    serve(listener, settings, side, table(), app_data(settings)?)
}
