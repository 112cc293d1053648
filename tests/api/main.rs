//! Integration tests of the whole application: one test binary, one module
//! per concern. Most tests run the server in process on a free port with a
//! fresh store; `processes` runs the real `ibl` binary.

mod audit;
mod auditors;
mod concurrency;
mod credentials;
mod errors;
mod helpers;
mod hygiene;
mod idempotency;
mod layering;
mod legacy;
mod operations;
mod processes;
mod rbac;
mod rbac_routes;
mod redis;
mod relay;
mod replay;
mod restart;
mod schema;
mod scim;
mod security;
mod split;
