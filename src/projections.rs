//! The projections process: it follows the log into its read models and,
//! with `NATS_URL`, publishes every event to JetStream; it keeps the audit
//! log (the Merkle tree over the log and its signed checkpoints) and serves
//! its public routes, and the operations routes (`/healthz`, `/readyz`,
//! `/metrics`).

use std::net::TcpListener;

use ibl_edge::metrics::Metrics;
use ibl_edge::server::{open_store, serve, start_read_side, Role, Running, Settings};

pub async fn build(settings: &Settings, listener: TcpListener) -> std::io::Result<Running> {
    let metrics = Metrics::new();
    let store = open_store(settings, &metrics).await?;
    if settings.nats_url.is_none() {
        tracing::warn!(
            target: "ibl::startup",
            "no NATS_URL: events are not published"
        );
    }
    let side = start_read_side(store, metrics, settings, Role::Projector).await?;
    serve(
        listener,
        settings,
        side,
        ibl_query_service::audit::table(),
        |_| {},
    )
}
