//! The command service: the write routes (see `ibl_command_service::server`).

fn main() {
    ibl_data_manager::process::service(
        "command-service",
        "ibl.ai credentials and RBAC: the write routes",
        |settings, listener| async move {
            ibl_command_service::server::build(&settings, listener).await
        },
    )
}
