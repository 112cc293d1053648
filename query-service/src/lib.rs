//! Read routes, and the HTTP pieces both services share (errors, auth, pagination).
#![forbid(unsafe_code)]
