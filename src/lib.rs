//! The processes of the system: the all-in-one `ibl` (event store,
//! projectors and both services in one process, and the operator commands),
//! and the thin mains of `command-service`, `query-service` and
//! `projections`.
// One exception, `process::tune_allocator`: a call into the allocator's C
// API that sets one of its options.
#![deny(unsafe_code)]

pub mod app;
pub mod cli;
pub mod process;
pub mod projections;
pub mod replay;
pub mod routes;

pub use app::{build, build_with, Application, Settings};
