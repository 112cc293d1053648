//! In-memory adapter: for tests and as the reference the contract suite
//! checks the durable adapters against.
