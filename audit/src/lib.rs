//! The pure core of tamper evidence: no I/O, no clock, no randomness.
//!
//! The event log is committed to as a Merkle tree, Certificate
//! Transparency style, and the log signs its tree head from time to time:
//!
//! 1. Each event becomes a leaf: its canonical JSON bytes ([`jcs::to_jcs`],
//!    RFC 8785), hashed with [`merkle::leaf_hash`].
//! 2. The leaves form an append-only [`merkle::Tree`] (RFC 9162 §2.1); a
//!    log that keeps its leaves in a file holds only a
//!    [`compact::CompactTree`] in memory (the same tree, 1/128 of the
//!    memory with blocks of 256 leaves).
//! 3. The log signs a checkpoint — origin, tree size, root — as a C2SP
//!    signed note with an Ed25519 key ([`note::Signer`]).
//!
//! What an auditor, holding only the log's verifier key (text of the form
//! `name+keyid+base64key`, see [`note::Verifier::from_vkey`]), can check
//! with this crate:
//!
//! * **That a checkpoint is the log's**: [`note::Verifier::verify`] accepts
//!   the note only with a valid signature by that key, and returns the
//!   [`note::Checkpoint`] (compare its `origin` with the log expected).
//! * **That an event is in the log**: re-canonicalize the event, hash it as
//!   a leaf, and check the inclusion proof served for it against the signed
//!   root with [`merkle::verify_inclusion`]. An edited, dropped or
//!   reordered event fails.
//! * **That the log only grew**: given two signed checkpoints, check the
//!   served consistency proof with [`merkle::verify_consistency`]. A log
//!   that rewrote anything before the older size fails; if the same key
//!   ever signed two checkpoints that fail this, the log equivocated, and
//!   the two notes are the evidence.
//! * **That a whole copy of the log matches**: rebuild a [`merkle::Tree`]
//!   from the events and compare [`merkle::Tree::root_at`] with the signed
//!   root.
//!
//! ```
//! use ibl_audit::{leaf_hash, to_jcs, verify_consistency, verify_inclusion};
//! use ibl_audit::{Checkpoint, Signer, Tree, Verifier};
//! use serde_json::json;
//!
//! // The log.
//! let events = [json!({"id": 1, "type": "a"}), json!({"type": "b", "id": 2})];
//! let mut tree = Tree::new();
//! for event in &events {
//!     tree.append(leaf_hash(&to_jcs(event)?));
//! }
//! let signer = Signer::from_seed([7; 32], "example.com/log")?; // seed: 32 random bytes
//! let old = signer.sign(&Checkpoint::new("example.com/log", 1, tree.root_at(1)?))?;
//! let new = signer.sign(&Checkpoint::new("example.com/log", tree.len(), tree.root()))?;
//! let inclusion = tree.inclusion_proof(1, tree.len())?;
//! let consistency = tree.consistency_proof(1, tree.len())?;
//!
//! // The auditor, with the verifier key only.
//! let verifier = Verifier::from_vkey(&signer.vkey())?;
//! let (old, new) = (verifier.verify(&old)?, verifier.verify(&new)?);
//! let leaf = leaf_hash(&to_jcs(&json!({"id": 2, "type": "b"}))?);
//! assert!(verify_inclusion(&leaf, 1, new.size, &inclusion, &new.root));
//! assert!(verify_consistency(old.size, new.size, &old.root, &new.root, &consistency));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The verifiers ([`merkle::verify_inclusion`], [`merkle::verify_consistency`],
//! [`note::Verifier`]) do not share code with the tree or the signer beyond
//! the two hash functions, and follow the published algorithms, so that any
//! other implementation of RFC 9162, RFC 8785 and C2SP signed notes (for
//! example Go's `golang.org/x/mod/sumdb/note` and
//! `github.com/transparency-dev/merkle`) checks the same data the same way.

pub mod compact;
pub mod jcs;
pub mod merkle;
pub mod note;

pub use compact::{CompactTree, LeafSource};
pub use jcs::{to_jcs, to_jcs_string, JcsError};
pub use merkle::{
    leaf_hash, node_hash, verify_consistency, verify_inclusion, Hash, MerkleError, Tree, EMPTY_ROOT,
};
pub use note::{key_id, Checkpoint, NoteError, Signer, Verifier};
