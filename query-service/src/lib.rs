//! The read routes: credentials, assertions, issuers, API keys, RBAC lists,
//! the permission check and who has access, SCIM reads, and the public
//! verification route with its rate limit.
#![forbid(unsafe_code)]

pub mod audit;
pub mod ratelimit;
pub mod rbac;
pub mod rbac_routes;
pub mod routes;
pub mod scim;
pub mod server;
