//! The all-in-one application: event store, projectors and both services in
//! one process, and the operator commands.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod routes;

pub use app::{build, build_with, Application, Settings};
