//! The query service: the read routes (see `ibl_query_service::server`).

fn main() {
    ibl_data_manager::process::service(
        "query-service",
        "ibl.ai credentials and RBAC: the read routes",
        |settings, listener| async move { ibl_query_service::server::build(&settings, listener).await },
    )
}
