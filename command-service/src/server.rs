//! The command service as a process: the write routes over the event store,
//! with the read models its guards consult.

use std::net::TcpListener;

use actix_web::web;
use ibl_edge::metrics::Metrics;
use ibl_edge::route;
use ibl_edge::routes::{Route, CORE, CRED, SCIM};
use ibl_edge::server::{open_store, serve, start_read_side, Role, Running, Settings};

use crate::WriteState;

/// The write routes.
pub fn table() -> Vec<Route> {
    vec![
        route!(POST "/api/credentials/orgs/{org}/users/{user}/", "credentials_orgs_users_create", CRED, ApiKey, "Create a credential", crate::routes::create_credential).guarded("create", "/platforms/{pk}/credentials/"),
        route!(PUT "/api/credentials/orgs/{org}/users/{user}/assertions/{entity_id}", "credentials_orgs_users_assertions_update", CRED, ApiKey, "Revoke an assertion", crate::routes::update_assertion).guarded("write", "/platforms/{pk}/assertions/{entity_id}/"),
        route!(POST "/api/credentials/orgs/{org}/users/{user}/issuers/", "credentials_orgs_users_issuers_create", CRED, ApiKey, "Create an issuer", crate::routes::create_issuer).guarded("create", "/platforms/{pk}/issuers/"),
        route!(PUT "/api/credentials/orgs/{org}/users/{user}/issuers/{entity_id}", "credentials_orgs_users_issuers_update", CRED, ApiKey, "Update an issuer", crate::routes::update_issuer).guarded("write", "/platforms/{pk}/issuers/{entity_id}/"),
        route!(DELETE "/api/credentials/orgs/{org}/users/{user}/issuers/{entity_id}", "credentials_orgs_users_issuers_destroy", CRED, ApiKey, "Delete an issuer", crate::routes::delete_issuer).guarded("delete", "/platforms/{pk}/issuers/{entity_id}/"),
        route!(PUT "/api/credentials/orgs/{org}/users/{user}/{entity_id}", "credentials_orgs_users_update", CRED, ApiKey, "Update a credential", crate::routes::update_credential).guarded("write", "/platforms/{pk}/credentials/{entity_id}/"),
        route!(DELETE "/api/credentials/orgs/{org}/users/{user}/{entity_id}", "credentials_orgs_users_destroy", CRED, ApiKey, "Delete a credential", crate::routes::delete_credential).guarded("delete", "/platforms/{pk}/credentials/{entity_id}/"),
        route!(POST "/api/credentials/orgs/{org}/users/{user}/{entity_id}/assertions/", "credentials_orgs_users_assertions_create", CRED, ApiKey, "Issue a credential to a recipient", crate::routes::issue_assertion).guarded("create", "/platforms/{pk}/credentials/{entity_id}/assertions/"),
        route!(POST "/api/credentials/orgs/{org}/users/{user}/{entity_id}/assertions/bulk/", "credentials_orgs_users_assertions_bulk_create", CRED, ApiKey, "Issue a credential to many recipients", crate::routes::bulk_issue).guarded("create", "/platforms/{pk}/credentials/{entity_id}/assertions/"),
        route!(POST "/api/core/rbac/roles/", "core_rbac_roles_create", CORE, ApiKey, "Create a role", crate::routes::rbac::create_role).guarded("create", "/platforms/{pk}/roles/"),
        route!(PUT "/api/core/rbac/roles/{id}/", "core_rbac_roles_update", CORE, ApiKey, "Update a role", crate::routes::rbac::update_role).guarded("write", "/platforms/{pk}/roles/{id}/"),
        route!(PATCH "/api/core/rbac/roles/{id}/", "core_rbac_roles_partial_update", CORE, ApiKey, "Change some fields of a role", crate::routes::rbac::update_role).guarded("write", "/platforms/{pk}/roles/{id}/"),
        route!(DELETE "/api/core/rbac/roles/{id}/", "core_rbac_roles_destroy", CORE, ApiKey, "Delete a role (?platform_key=)", crate::routes::rbac::delete_role).guarded("delete", "/platforms/{pk}/roles/{id}/"),
        route!(POST "/api/core/rbac/groups/", "core_rbac_groups_create", CORE, ApiKey, "Create a group", crate::routes::rbac::create_group).guarded("create", "/platforms/{pk}/groups/"),
        route!(PUT "/api/core/rbac/groups/{id}/", "core_rbac_groups_update", CORE, ApiKey, "Update a group", crate::routes::rbac::update_group).guarded("write", "/platforms/{pk}/groups/{id}/"),
        route!(PATCH "/api/core/rbac/groups/{id}/", "core_rbac_groups_partial_update", CORE, ApiKey, "Change some fields of a group", crate::routes::rbac::update_group).guarded("write", "/platforms/{pk}/groups/{id}/"),
        route!(DELETE "/api/core/rbac/groups/{id}/", "core_rbac_groups_destroy", CORE, ApiKey, "Delete a group (?platform_key=)", crate::routes::rbac::delete_group).guarded("delete", "/platforms/{pk}/groups/{id}/"),
        route!(POST "/api/core/rbac/policies/", "core_rbac_policies_create", CORE, ApiKey, "Create a policy", crate::routes::rbac::create_policy).guarded("create", "/platforms/{pk}/policies/"),
        route!(PUT "/api/core/rbac/policies/{id}/", "core_rbac_policies_update", CORE, ApiKey, "Update a policy", crate::routes::rbac::update_policy).guarded("write", "/platforms/{pk}/policies/{id}/"),
        route!(PATCH "/api/core/rbac/policies/{id}/", "core_rbac_policies_partial_update", CORE, ApiKey, "Change some fields of a policy", crate::routes::rbac::update_policy).guarded("write", "/platforms/{pk}/policies/{id}/"),
        route!(DELETE "/api/core/rbac/policies/{id}/", "core_rbac_policies_destroy", CORE, ApiKey, "Delete a policy (?platform_key=)", crate::routes::rbac::delete_policy).guarded("delete", "/platforms/{pk}/policies/{id}/"),
        route!(POST "/api/core/rbac/mentor-access/", "core_rbac_mentor_access_create", CORE, ApiKey, "Grant or revoke access to one mentor (201 created, 200 updated)", crate::routes::rbac::mentor_access).guarded("create", "/platforms/{pk}/policies/"),
        route!(POST "/api/core/platform/api-tokens/", "core_platform_api_tokens_create", CORE, ApiKey, "Create an API key (the secret is shown once)", crate::routes::create_api_key).guarded("create", "/platforms/{pk}/api-keys/"),
        route!(DELETE "/api/core/platform/api-tokens/{name}", "core_platform_api_tokens_destroy", CORE, ApiKey, "Delete an API key by name", crate::routes::delete_api_key).guarded("delete", "/platforms/{pk}/api-keys/{name}/"),
        route!(POST "/api/orgs/{platform_key}/scim/v2/Users", "orgs_scim_v2_users_create", SCIM, ApiKey, "Create a user (SCIM)", crate::routes::scim::create_user).guarded("create", "/platforms/{pk}/users/"),
        route!(PUT "/api/orgs/{platform_key}/scim/v2/Users/{id}", "orgs_scim_v2_users_update", SCIM, ApiKey, "Replace a user (SCIM)", crate::routes::scim::replace_user).guarded("write", "/platforms/{pk}/users/{id}/"),
        route!(PATCH "/api/orgs/{platform_key}/scim/v2/Users/{id}", "orgs_scim_v2_users_partial_update", SCIM, ApiKey, "Change a user: SCIM PatchOp or a partial user", crate::routes::scim::patch_user).guarded("write", "/platforms/{pk}/users/{id}/"),
        route!(DELETE "/api/orgs/{platform_key}/scim/v2/Users/{id}", "orgs_scim_v2_users_destroy", SCIM, ApiKey, "Deactivate a user (SCIM); it stays with active false", crate::routes::scim::delete_user).guarded("delete", "/platforms/{pk}/users/{id}/"),
    ]
}

/// What the write routes need besides the read side.
pub fn app_data(
    write: web::Data<WriteState>,
) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(write.clone());
    }
}

/// Opens the store, moves a legacy layout into streams of its own, starts
/// the read models and serves the write routes on `listener`.
pub async fn build(settings: &Settings, listener: TcpListener) -> std::io::Result<Running> {
    let metrics = Metrics::new();
    let store = open_store(settings, &metrics).await?;
    migrate(&store).await?;
    let side = start_read_side(store.clone(), metrics, settings, Role::Commands).await?;
    let write = web::Data::new(WriteState::new(store));
    serve(listener, settings, side, table(), app_data(write))
}

/// Moves the platforms and users of the legacy registries into streams of
/// their own (a no-op on a store written by this version).
pub async fn migrate(store: &std::sync::Arc<dyn ibl_events::EventStore>) -> std::io::Result<()> {
    let (platforms, users) = crate::platforms::import_legacy(store)
        .await
        .map_err(|e| std::io::Error::other(format!("importing a legacy layout: {e}")))?;
    if platforms + users > 0 {
        tracing::info!(
            target: "ibl::startup",
            platforms,
            users,
            "platforms and users of the legacy registries moved into streams of their own"
        );
    }
    Ok(())
}
