//! Builds the all-in-one application: the event store, the projectors and
//! both services' routes on one listener.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::web;
use ibl_command_service::WriteState;
use ibl_edge::metrics::{Metrics, TimedStore};
use ibl_edge::server::{open_store, serve, start_read_side, Role, Running};
pub use ibl_edge::server::{Settings, POSITION_KEY_FILE, READ_MODELS_DIR};
use ibl_events::EventStore;

/// A running application.
pub type Application = Running;

/// Opens the store, rebuilds the read models from the log and binds the
/// listener; the server answers once the read models are current.
pub async fn build(settings: &Settings) -> std::io::Result<Application> {
    let metrics = Metrics::new();
    let store = open_store(settings, &metrics).await?;
    let listener = TcpListener::bind(&settings.addr)?;
    assemble(store, metrics, listener, settings).await
}

/// Builds the application on `store` and `listener` (`settings.addr` is
/// not read).
pub async fn build_with(
    store: Arc<dyn EventStore>,
    listener: TcpListener,
    settings: &Settings,
) -> std::io::Result<Application> {
    let metrics = Metrics::new();
    let store = TimedStore::wrap(store, metrics.clone());
    assemble(store, metrics, listener, settings).await
}

async fn assemble(
    store: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
    listener: TcpListener,
    settings: &Settings,
) -> std::io::Result<Application> {
    ibl_command_service::server::migrate(&store).await?;
    let side = start_read_side(store.clone(), metrics, settings, Role::Projector).await?;
    let write = ibl_command_service::server::app_data(web::Data::new(WriteState::new(store)));
    let read = ibl_query_service::server::app_data(settings)?;
    serve(listener, settings, side, crate::routes::api(), move |cfg| {
        write(cfg);
        read(cfg);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_new_gives_the_command_lines_defaults() {
        use clap::Parser;
        let parsed = crate::cli::Cli::try_parse_from(["ibl", "--data-dir", "somewhere"])
            .expect("parses")
            .settings;
        let new = Settings::new("somewhere");
        assert_eq!(
            format!("{parsed:?}"),
            format!("{new:?}"),
            "Settings::new and the clap defaults differ (or IBL_* is set in the environment)"
        );
    }
}
