//! Projector runtime and read models.
#![forbid(unsafe_code)]
