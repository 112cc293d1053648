//! The pure core of tamper evidence.

pub mod jcs;
pub mod merkle;

pub use merkle::{
    leaf_hash, node_hash, verify_consistency, verify_inclusion, Hash, MerkleError, Tree, EMPTY_ROOT,
};
