//! A Merkle tree whose leaves are kept elsewhere: in memory it holds only
//! the hashes of complete blocks of `2^bits` leaves (and the blocks above
//! them), and the leaves after the last complete block.
//!
//! A log of `n` leaves costs about `64 n / 2^bits` bytes (1,000,000 leaves
//! in blocks of 256: 250 KB) where a [`Tree`] keeps 64 bytes a leaf. The
//! root of the whole tree needs nothing else. A proof or an older root
//! reads the leaves of at most two blocks from a [`LeafSource`] (the
//! block of the leaf or of the older size, and the block where the tree of
//! the requested size ends), and checks that they hash to the block the
//! tree holds before using them: leaves altered where they are kept give
//! an error, never a wrong proof.

use std::cell::RefCell;

use crate::merkle::{self, mth, node_hash, Hash, MerkleError, Subtrees, Tree, EMPTY_ROOT};

/// Where a [`CompactTree`]'s leaves are kept.
pub trait LeafSource {
    /// The leaf hashes `[start, end)`, in order.
    fn leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<Hash>, String>;
}

/// The block size of [`CompactTree::new`]: `2^8 = 256` leaves (8 KiB read
/// for a proof).
pub const DEFAULT_BLOCK_BITS: u32 = 8;

/// An append-only Merkle tree (the same tree as [`Tree`], RFC 9162) that
/// keeps in memory the hashes of its complete, aligned blocks of
/// `2^bits` leaves and of the blocks above them, and the leaves after the
/// last complete block.
#[derive(Clone, PartialEq, Eq)]
pub struct CompactTree {
    bits: u32,
    /// A tree whose leaves are the roots of the complete blocks.
    blocks: Tree,
    /// The leaves after the last complete block (fewer than `2^bits`).
    tail: Vec<Hash>,
}

impl Default for CompactTree {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for CompactTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactTree")
            .field("size", &self.len())
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

impl CompactTree {
    /// The empty tree, in blocks of `2^`[`DEFAULT_BLOCK_BITS`] leaves.
    pub fn new() -> Self {
        Self::with_block_bits(DEFAULT_BLOCK_BITS)
    }

    /// The empty tree, in blocks of `2^bits` leaves (`bits` at most 20).
    pub fn with_block_bits(bits: u32) -> Self {
        let bits = bits.min(20);
        Self {
            bits,
            blocks: Tree::new(),
            tail: Vec::with_capacity(1 << bits),
        }
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        (self.blocks.len() << self.bits) + self.tail.len() as u64
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a leaf hash and returns its index. The caller keeps it where
    /// its [`LeafSource`] finds it once the block is complete.
    pub fn append(&mut self, leaf: Hash) -> u64 {
        let index = self.len();
        self.tail.push(leaf);
        if self.tail.len() == 1 << self.bits {
            self.blocks.append(mth(&self.tail));
            self.tail.clear();
        }
        index
    }

    /// The root of the whole tree (reads no leaves).
    pub fn root(&self) -> Hash {
        let complete = self.blocks.len() << self.bits;
        let tail = (!self.tail.is_empty()).then(|| mth(&self.tail));
        self.fold_blocks(complete, complete, tail)
            .unwrap_or(EMPTY_ROOT)
    }

    /// The root the tree had when it held its first `size` leaves.
    pub fn root_at(&self, size: u64, source: &impl LeafSource) -> Result<Hash, MerkleError> {
        merkle::root_at(&self.reading(source), size)
    }

    /// The inclusion proof of leaf `index` in the tree of its first
    /// `tree_size` leaves, as [`Tree::inclusion_proof`].
    pub fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
        source: &impl LeafSource,
    ) -> Result<Vec<Hash>, MerkleError> {
        merkle::inclusion_proof(&self.reading(source), index, tree_size)
    }

    /// The consistency proof from the tree of `first` leaves to that of
    /// `second`, as [`Tree::consistency_proof`].
    pub fn consistency_proof(
        &self,
        first: u64,
        second: u64,
        source: &impl LeafSource,
    ) -> Result<Vec<Hash>, MerkleError> {
        merkle::consistency_proof(&self.reading(source), first, second)
    }

    fn reading<'a, S: LeafSource>(&'a self, source: &'a S) -> Reading<'a, S> {
        Reading {
            tree: self,
            source,
            loaded: RefCell::new(None),
        }
    }

    /// Folds `acc` (the hash of a range's part smaller than one block, at
    /// its right end) with the whole blocks before it: one for each binary
    /// digit of the range's `size` at or above `bits`, right to left from
    /// `right_edge`.
    fn fold_blocks(&self, size: u64, right_edge: u64, mut acc: Option<Hash>) -> Option<Hash> {
        let mut right_edge = right_edge;
        for level in self.bits..u64::BITS {
            if size & (1 << level) == 0 {
                continue;
            }
            let start = right_edge - (1 << level);
            let block = self.blocks.block(level - self.bits, start >> self.bits);
            acc = Some(match acc {
                None => block,
                Some(right) => node_hash(&block, &right),
            });
            right_edge = start;
        }
        acc
    }
}

/// A [`CompactTree`] with its leaf source, for one request: it keeps the
/// last block of leaves it read. A proof walks down from the root: the
/// parts below one block that it needs lie first in the block where the
/// requested tree ends, then in the block of the leaf (or of the older
/// size), so it reads each once.
struct Reading<'a, S> {
    tree: &'a CompactTree,
    source: &'a S,
    loaded: RefCell<Option<(u64, Vec<Hash>)>>,
}

impl<S: LeafSource> Reading<'_, S> {
    /// The hash of `[start, end)`, a range within block `block`.
    fn within_block(&self, block: u64, start: u64, end: u64) -> Result<Hash, MerkleError> {
        let bits = self.tree.bits;
        let first = block << bits;
        let (from, to) = ((start - first) as usize, (end - first) as usize);
        if block == self.tree.blocks.len() {
            return Ok(mth(&self.tree.tail[from..to]));
        }
        let mut loaded = self.loaded.borrow_mut();
        if loaded.as_ref().is_none_or(|(b, _)| *b != block) {
            let unavailable = |reason: String| MerkleError::LeavesUnavailable { block, reason };
            let leaves = self
                .source
                .leaf_hashes(first, first + (1 << bits))
                .map_err(unavailable)?;
            if leaves.len() != 1 << bits {
                return Err(unavailable(format!(
                    "{} leaves read where the block has {}",
                    leaves.len(),
                    1u64 << bits
                )));
            }
            if Some(mth(&leaves)) != self.tree.blocks.leaf(block) {
                return Err(unavailable(
                    "the leaves read do not hash to the block's root".into(),
                ));
            }
            *loaded = Some((block, leaves));
        }
        let leaves = loaded.as_ref().map_or(&[][..], |(_, l)| l.as_slice());
        Ok(mth(&leaves[from..to]))
    }
}

impl<S: LeafSource> Subtrees for Reading<'_, S> {
    fn size(&self) -> u64 {
        self.tree.len()
    }

    fn subtree(&self, start: u64, end: u64) -> Result<Hash, MerkleError> {
        // The range is a run of aligned blocks of decreasing size: those
        // below one block of the tree lie at its right end, in one block.
        let bits = self.tree.bits;
        let size = end - start;
        let low = size & ((1 << bits) - 1);
        let acc = match low {
            0 => None,
            _ => Some(self.within_block((end - low) >> bits, end - low, end)?),
        };
        // `size > 0`, so the fold has at least one part.
        Ok(self
            .tree
            .fold_blocks(size, end - low, acc)
            .unwrap_or(EMPTY_ROOT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_never_holds_a_whole_block() {
        let mut tree = CompactTree::with_block_bits(2);
        for i in 0..11u64 {
            assert_eq!(tree.append(crate::leaf_hash(&i.to_be_bytes())), i);
            assert!(tree.tail.len() < 4);
            assert_eq!(tree.blocks.len(), (i + 1) / 4);
        }
    }
}
