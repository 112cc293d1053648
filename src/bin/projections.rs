//! The projections process: the read models and the relay of events to
//! NATS (see `ibl_data_manager::projections`).

fn main() {
    ibl_data_manager::process::service(
        "projections",
        "ibl.ai credentials and RBAC: read models and the relay to NATS",
        |settings, listener| async move {
            ibl_data_manager::projections::build(&settings, listener).await
        },
    )
}
