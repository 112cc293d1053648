//! The all-in-one application: event store, projectors and both services in
//! one process, and the operator commands.
#![forbid(unsafe_code)]
