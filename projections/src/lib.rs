//! The projector runtime and the read models it builds.
//!
//! A read model is fed events in global order, in batches; it applies each
//! event at most once (events at or below its checkpoint are skipped) and
//! moves its checkpoint in the same step as the change, so a crash or a
//! replay never skips or doubles an event. Rebuilding from position 0 gives
//! the same model as following the log live.
#![forbid(unsafe_code)]

#[cfg(test)]
mod assertion_cases;
pub mod assertions;
pub mod audit_log;
pub mod audit_verify;
pub mod credentials;
pub mod rbac;
pub mod redis_assertions;
pub mod redis_catalog;
pub mod redis_keys;
pub mod redis_link;
mod redis_model;
pub mod relay;
pub mod replay;
mod runtime;
pub mod snapshot;
#[cfg(test)]
mod testing;

pub use runtime::{Applied, Projections, ReadModel};
pub use snapshot::Snapshot;
