//! Aggregates as pure functions, command handlers and the write routes.
#![forbid(unsafe_code)]

pub mod domain;
