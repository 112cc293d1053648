//! The compact tree against the full one: the same roots and proofs for
//! every size, index and pair of sizes, reading its older leaves from a
//! source that counts its reads; and leaves altered in the source give an
//! error, never a proof.

use std::cell::Cell;

use ibl_audit::merkle::{leaf_hash, Hash, MerkleError, Tree};
use ibl_audit::{CompactTree, LeafSource};

/// Leaves kept in a vector, as a file would keep them, counting the reads.
struct Kept {
    leaves: Vec<Hash>,
    reads: Cell<usize>,
}

impl LeafSource for Kept {
    fn leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<Hash>, String> {
        self.reads.set(self.reads.get() + 1);
        self.leaves
            .get(start as usize..end as usize)
            .map(<[Hash]>::to_vec)
            .ok_or_else(|| format!("no leaves [{start}, {end})"))
    }
}

fn leaves(n: u64) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(format!("event {i}").as_bytes()))
        .collect()
}

fn both(n: u64, bits: u32) -> (Tree, CompactTree, Kept) {
    let leaves = leaves(n);
    let mut compact = CompactTree::with_block_bits(bits);
    for (i, leaf) in leaves.iter().enumerate() {
        assert_eq!(compact.append(*leaf), i as u64);
    }
    let tree = Tree::from_leaf_hashes(leaves.iter().copied());
    let kept = Kept {
        leaves,
        reads: Cell::new(0),
    };
    (tree, compact, kept)
}

#[test]
fn roots_and_proofs_equal_the_full_trees() {
    for bits in [0, 1, 2, 3] {
        const N: u64 = 37;
        let (tree, compact, kept) = both(N, bits);
        assert_eq!(compact.len(), N);
        assert_eq!(compact.root(), tree.root(), "bits {bits}");
        for m in 0..=N {
            assert_eq!(
                compact.root_at(m, &kept),
                tree.root_at(m),
                "root {m}, bits {bits}"
            );
            for i in 0..m {
                kept.reads.set(0);
                assert_eq!(
                    compact.inclusion_proof(i, m, &kept),
                    tree.inclusion_proof(i, m),
                    "path {i} in {m}, bits {bits}"
                );
                assert!(kept.reads.get() <= 2, "{} reads", kept.reads.get());
            }
            for m1 in 0..=m {
                kept.reads.set(0);
                assert_eq!(
                    compact.consistency_proof(m1, m, &kept),
                    tree.consistency_proof(m1, m),
                    "proof {m1} -> {m}, bits {bits}"
                );
                assert!(kept.reads.get() <= 2, "{} reads", kept.reads.get());
            }
        }
    }
}

#[test]
fn every_root_of_a_growing_tree_equals_the_full_trees() {
    let mut tree = Tree::new();
    let mut compact = CompactTree::new();
    assert_eq!(compact.root(), tree.root());
    for (i, leaf) in leaves(1100).into_iter().enumerate() {
        tree.append(leaf);
        compact.append(leaf);
        assert_eq!(compact.root(), tree.root(), "size {}", i + 1);
    }
}

#[test]
fn the_errors_of_the_full_tree_for_sizes_beyond_it() {
    let (tree, compact, kept) = both(9, 2);
    assert_eq!(compact.root_at(10, &kept), tree.root_at(10));
    assert_eq!(
        compact.inclusion_proof(9, 9, &kept),
        tree.inclusion_proof(9, 9)
    );
    assert_eq!(
        compact.consistency_proof(5, 4, &kept),
        tree.consistency_proof(5, 4)
    );
    assert!(matches!(
        compact.consistency_proof(3, 10, &kept),
        Err(MerkleError::SizeBeyondTree {
            requested: 10,
            size: 9
        })
    ));
}

#[test]
fn leaves_altered_or_missing_in_the_source_give_an_error_not_a_proof() {
    let (_, compact, mut kept) = both(20, 2);
    // Leaf 5 is in block 1 (leaves 4 to 7).
    kept.leaves[5][0] ^= 1;
    let err = compact.inclusion_proof(4, 20, &kept).unwrap_err();
    assert!(
        matches!(err, MerkleError::LeavesUnavailable { block: 1, .. }),
        "{err:?}"
    );
    assert!(compact.root_at(6, &kept).is_err());
    // Other blocks still answer; the tail needs no source at all.
    assert!(compact.inclusion_proof(9, 20, &kept).is_ok());
    assert!(compact.inclusion_proof(17, 20, &kept).is_ok());
    kept.leaves.truncate(8);
    let err = compact.inclusion_proof(9, 20, &kept).unwrap_err();
    assert!(
        matches!(err, MerkleError::LeavesUnavailable { block: 2, .. }),
        "{err:?}"
    );
    assert_eq!(compact.root(), Tree::from_leaf_hashes(leaves(20)).root());
}
