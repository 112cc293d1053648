//! The HTTP edge both services share: the one error table, the body and
//! caller extractors with the route guard, the query string and platform
//! scoping, paging, read-your-writes (positions and their tokens), and the
//! wire shapes of the API. Neither service depends on the other; both
//! depend on this.
#![forbid(unsafe_code)]

use std::sync::Arc;

use ibl_projections::credentials::CredentialsModel;
use ibl_projections::Projections;

pub mod error;
pub mod extract;
pub mod guard;
pub mod metrics;
pub mod paging;
pub mod position;
pub mod rbac;
pub mod request;
pub mod routes;
pub mod scim;
pub mod server;
pub mod wire;

pub use error::ApiError;
/// What the read side serves from: the read models and how far they are.
pub struct ReadState {
    pub models: Arc<CredentialsModel>,
    /// Platforms and API keys as authentication reads them (in Redis, or
    /// `models` itself).
    pub keys: Arc<dyn ibl_projections::credentials::KeyQueries>,
    /// Assertions and idempotency records (SQLite, off the heap).
    pub assertions: Arc<dyn ibl_projections::assertions::AssertionQueries>,
    /// Credentials and issuers: what the query routes read (in Redis, or
    /// `models` itself).
    pub catalog: Arc<dyn ibl_projections::credentials::CatalogQueries>,
    /// RBAC as the command service's decisions read it: in memory, fed
    /// from the store (empty in a query service on Redis).
    pub rbac: Arc<ibl_projections::rbac::RbacModel>,
    /// RBAC as the guards and the query routes read it (in Redis, or
    /// `rbac` itself).
    pub access: Arc<dyn ibl_projections::rbac::RbacQueries>,
    pub projections: Projections,
    /// How long a read with `X-Min-Position` waits for the read models to
    /// reach it (then 503 with `Retry-After`).
    pub min_position_wait: std::time::Duration,
    /// The store, when a read without `X-Min-Position` waits for every write
    /// it had committed when the read arrived (`IBL_READ_CONSISTENCY=strong`).
    pub strong_reads: Option<std::sync::Arc<dyn ibl_events::EventStore>>,
    /// Turns positions into the tokens of `X-Position` and back.
    pub positions: position::PositionKey,
    /// The audit log (Merkle tree, signed checkpoints, history feed), in
    /// the process that keeps it.
    pub audit: Option<AuditAccess>,
}

/// The audit log and the store its history feed reads the events from.
#[derive(Clone)]
pub struct AuditAccess {
    pub log: Arc<ibl_projections::audit_log::AuditLog>,
    pub store: Arc<dyn ibl_events::EventStore>,
    /// How far the audit log's own projector has read the log.
    pub progress: Projections,
    /// The RBAC models of the last past positions asked for.
    pub past: Arc<std::sync::Mutex<PastModels>>,
}

/// RBAC models of past positions, each by the position of its last RBAC
/// event, oldest first.
pub type PastModels = Vec<(u64, Arc<ibl_projections::rbac::RbacModel>)>;

/// The server's id of the request being served; it becomes the correlation
/// id of the events the request appends.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The `X-Request-Id` the client sent, if it was a sane one: recorded beside
/// the server's id.
#[derive(Debug, Clone)]
pub struct ClientRequestId(pub String);
