//! Aggregates as pure functions, command handlers and the write routes.
#![forbid(unsafe_code)]

pub mod api_keys;
pub mod authority;
pub mod domain;
pub mod handler;
pub mod http;
pub mod id_blocks;
pub mod idempotency;
pub mod platforms;
pub mod reservations;
pub mod routes;
pub mod secrets;
pub mod server;
pub mod users;

pub use http::WriteState;
