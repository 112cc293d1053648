//! A Merkle tree over an append-only log, hashed as in Certificate
//! Transparency (RFC 6962, RFC 9162 §2.1).
//!
//! * The hash of a leaf is `SHA-256(0x00 ‖ leaf bytes)` ([`leaf_hash`]).
//! * The hash of an interior node is `SHA-256(0x01 ‖ left ‖ right)`
//!   ([`node_hash`]).
//! * The tree over `n > 1` leaves splits at `k`, the largest power of two
//!   smaller than `n`: its left subtree holds leaves `[0, k)`, its right
//!   subtree leaves `[k, n)`.
//! * The root of the empty tree is `SHA-256("")` ([`EMPTY_ROOT`]).
//!
//! [`Tree`] is the log's side: it appends leaf hashes and answers roots,
//! inclusion proofs (RFC 9162 §2.1.3.1) and consistency proofs (§2.1.4.1)
//! for any earlier size of the tree.
//!
//! [`verify_inclusion`] and [`verify_consistency`] are the auditor's side,
//! written from the bit-shifting algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2.
//! They share nothing with [`Tree`] but the two hash functions, so a bug in
//! the one is not silently mirrored by the other.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, a node hash or a root.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The hash of a leaf: `SHA-256(0x00 ‖ bytes)`.
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(bytes);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Why the tree cannot answer a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// The requested tree size is larger than the number of leaves appended.
    #[error("tree size {requested} is beyond the {size} leaves of the tree")]
    SizeBeyondTree { requested: u64, size: u64 },
    /// An inclusion proof was asked for a leaf that is not in the tree of
    /// that size.
    #[error("leaf index {index} is not below tree size {tree_size}")]
    IndexOutOfRange { index: u64, tree_size: u64 },
    /// A consistency proof was asked from a larger size to a smaller one.
    #[error("no consistency proof from size {first} to the smaller size {second}")]
    SizesOutOfOrder { first: u64, second: u64 },
    /// The leaves a proof needs, kept outside the tree, could not be read
    /// or do not hash to the block the tree holds for them.
    #[error("the leaves of block {block} are unavailable: {reason}")]
    LeavesUnavailable { block: u64, reason: String },
}

/// An append-only Merkle tree that keeps every leaf hash and the hash of
/// every complete, aligned block of `2^k` leaves.
///
/// `levels[0]` holds the leaf hashes; `levels[k][j]` is the hash of the
/// perfect subtree over leaves `[j·2^k, (j+1)·2^k)`, filled in as soon as its
/// last leaf is appended. The blocks named by the binary digits of the size
/// (the "frontier", or compact range `[0, n)`) are always the last entries of
/// their levels.
///
/// Costs, for a tree of `n` leaves (a "hash" is one SHA-256 over at most 65
/// bytes):
///
/// | operation | hashes |
/// | --- | --- |
/// | [`append`](Tree::append) | amortised 1, at most `log2 n` |
/// | [`root`](Tree::root), [`root_at`](Tree::root_at) | at most `log2 n` |
/// | [`inclusion_proof`](Tree::inclusion_proof) | `O(log² n)` (at most `log2 n` subtree hashes of `O(log n)` each; perfect subtrees are free) |
/// | [`consistency_proof`](Tree::consistency_proof) | `O(log² n)`, likewise |
///
/// Memory is about `2n` hashes (64 bytes a leaf): `n` leaf hashes, `n/2 +
/// n/4 + … < n` block hashes. Only the leaf hashes need persisting:
/// [`Tree::from_leaf_hashes`] rebuilds the rest in `O(n)`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("size", &self.len())
            .finish_non_exhaustive()
    }
}

/// The largest power of two strictly smaller than `n`; `n` must be at least 2.
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

impl Tree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree over these leaf hashes, in order (as persisted from
    /// [`Tree::leaf_hashes`]).
    pub fn from_leaf_hashes<I: IntoIterator<Item = Hash>>(leaves: I) -> Self {
        let mut tree = Self::new();
        for leaf in leaves {
            tree.append(leaf);
        }
        tree
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every leaf hash, in log order.
    pub fn leaf_hashes(&self) -> &[Hash] {
        self.levels.first().map_or(&[], |l| l.as_slice())
    }

    /// The hash of leaf `index`, if there is one.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.leaf_hashes().get(i).copied())
    }

    /// Appends a leaf hash (see [`leaf_hash`]) and returns its index.
    pub fn append(&mut self, leaf: Hash) -> u64 {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let index = self.levels[0].len() as u64 - 1;
        // Each time a level gets an even number of entries, its last two
        // complete a block of the level above.
        let mut k = 0;
        while self.levels[k].len().is_multiple_of(2) {
            let level = &self.levels[k];
            let parent = node_hash(&level[level.len() - 2], &level[level.len() - 1]);
            if self.levels.len() == k + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[k + 1].push(parent);
            k += 1;
        }
        index
    }

    /// Hashes `bytes` as a leaf, appends it and returns its index.
    pub fn append_leaf(&mut self, bytes: &[u8]) -> u64 {
        self.append(leaf_hash(bytes))
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        match self.len() {
            0 => EMPTY_ROOT,
            n => self.range_hash(0, n),
        }
    }

    /// The root the tree had when it held its first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, MerkleError> {
        root_at(self, size)
    }

    /// The inclusion proof (RFC 9162 §2.1.3.1 `PATH`) of leaf `index` in the
    /// tree of its first `tree_size` leaves: the sibling hashes from the leaf
    /// up to the root.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, MerkleError> {
        inclusion_proof(self, index, tree_size)
    }

    /// The consistency proof (RFC 9162 §2.1.4.1 `PROOF`/`SUBPROOF`) that the
    /// tree of `second` leaves extends the tree of `first` leaves.
    ///
    /// It is empty when `first == second` and, since the empty tree is a
    /// prefix of every tree, when `first == 0`.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, MerkleError> {
        consistency_proof(self, first, second)
    }

    /// The hash of the perfect subtree of `2^level` leaves starting at leaf
    /// `start` (a multiple of `2^level`, with the block complete).
    pub(crate) fn block(&self, level: u32, start: u64) -> Hash {
        debug_assert_eq!(start % (1 << level), 0);
        self.levels[level as usize][(start >> level) as usize]
    }

    /// `MTH(D[start:end])` for a subtree the RFC's recursion can reach:
    /// `start < end <= len()` and `start` a multiple of the smallest power
    /// of two not below `end - start`. Such a range is a run of perfect
    /// blocks of decreasing size (one per binary digit of its length), each
    /// aligned, so it costs one hash per digit after the first.
    fn range_hash(&self, start: u64, end: u64) -> Hash {
        debug_assert!(start < end && end <= self.len());
        debug_assert_eq!(start % (end - start).next_power_of_two(), 0);
        let size = end - start;
        // Fold from the right: the smallest block is the right-most.
        let mut right_edge = end;
        let mut acc: Option<Hash> = None;
        for level in 0..u64::BITS {
            if size & (1 << level) == 0 {
                continue;
            }
            let block_start = right_edge - (1 << level);
            let block = self.block(level, block_start);
            acc = Some(match acc {
                None => block,
                Some(right) => node_hash(&block, &right),
            });
            right_edge = block_start;
        }
        acc.expect("a non-empty range has at least one block")
    }
}

/// The hashes of a tree's subtrees, wherever they are kept: the proofs'
/// algorithms below work over any (a [`Tree`] in memory, or a
/// [`crate::compact::CompactTree`] with its older leaves in a file).
pub(crate) trait Subtrees {
    /// The number of leaves.
    fn size(&self) -> u64;
    /// `MTH(D[start:end])` for a subtree the RFC's recursion can reach:
    /// `start < end <= size()` and `start` a multiple of the smallest power
    /// of two not below `end - start`.
    fn subtree(&self, start: u64, end: u64) -> Result<Hash, MerkleError>;
}

impl Subtrees for Tree {
    fn size(&self) -> u64 {
        self.len()
    }

    fn subtree(&self, start: u64, end: u64) -> Result<Hash, MerkleError> {
        Ok(self.range_hash(start, end))
    }
}

fn check_size(tree: &impl Subtrees, requested: u64) -> Result<(), MerkleError> {
    let size = tree.size();
    if requested > size {
        return Err(MerkleError::SizeBeyondTree { requested, size });
    }
    Ok(())
}

/// The root of the first `size` leaves of `tree`.
pub(crate) fn root_at(tree: &impl Subtrees, size: u64) -> Result<Hash, MerkleError> {
    check_size(tree, size)?;
    match size {
        0 => Ok(EMPTY_ROOT),
        m => tree.subtree(0, m),
    }
}

/// RFC 9162 §2.1.3.1 `PATH(index, D[0:tree_size])`.
pub(crate) fn inclusion_proof(
    tree: &impl Subtrees,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, MerkleError> {
    check_size(tree, tree_size)?;
    if index >= tree_size {
        return Err(MerkleError::IndexOutOfRange { index, tree_size });
    }
    // Walk down from the root, collecting the sibling of each subtree
    // that holds the leaf; PATH lists them bottom-up.
    let mut proof = Vec::new();
    let (mut start, mut end) = (0, tree_size);
    while end - start > 1 {
        let mid = start + split_point(end - start);
        if index < mid {
            proof.push(tree.subtree(mid, end)?);
            end = mid;
        } else {
            proof.push(tree.subtree(start, mid)?);
            start = mid;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// RFC 9162 §2.1.4.1 `PROOF(first, D[0:second])`.
pub(crate) fn consistency_proof(
    tree: &impl Subtrees,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, MerkleError> {
    check_size(tree, second)?;
    if first > second {
        return Err(MerkleError::SizesOutOfOrder { first, second });
    }
    if first == 0 || first == second {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[start:end], whole), iteratively: `whole` stays true
    // while the subtree is a left edge whose prefix of `first` leaves is
    // the old tree itself (the verifier knows that root already).
    let mut proof = Vec::new();
    let (mut start, mut end, mut whole) = (0, second, true);
    loop {
        if end == first {
            if !whole {
                proof.push(tree.subtree(start, end)?);
            }
            break;
        }
        let mid = start + split_point(end - start);
        if first <= mid {
            proof.push(tree.subtree(mid, end)?);
            end = mid;
        } else {
            proof.push(tree.subtree(start, mid)?);
            start = mid;
            whole = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// `MTH(leaves)` by the RFC's recursion (at most `leaves.len() - 1`
/// hashes); the empty list's is [`EMPTY_ROOT`].
pub(crate) fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => EMPTY_ROOT,
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// Whether `proof` shows that the leaf with hash `leaf` is at `index` in the
/// tree of `tree_size` leaves whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    if index >= tree_size {
        return false;
    }
    let mut f_n = index;
    let mut s_n = tree_size - 1;
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// Whether `proof` shows that the tree of `first` leaves with root `root1`
/// is a prefix of the tree of `second` leaves with root `root2` (RFC 9162
/// §2.1.4.2).
///
/// The RFC's algorithm covers `0 < first < second`; at the edges:
/// * `first == second`: true when the proof is empty and the roots equal;
/// * `first == 0`: true when the proof is empty and `root1` is
///   [`EMPTY_ROOT`] (every tree extends the empty one);
/// * `first > second`: false.
pub fn verify_consistency(
    first: u64,
    second: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && root1 == root2;
    }
    if first == 0 {
        return proof.is_empty() && *root1 == EMPTY_ROOT;
    }
    if proof.is_empty() {
        return false;
    }
    // When `first` is a power of two the old root is a node of the new
    // tree, and the proof leaves it out: put it back in front.
    let path: Vec<&Hash> = if first.is_power_of_two() {
        std::iter::once(root1).chain(proof).collect()
    } else {
        proof.iter().collect()
    };
    let mut f_n = first - 1;
    let mut s_n = second - 1;
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut fr = *path[0];
    let mut sr = *path[0];
    for c in &path[1..] {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    fr == *root1 && sr == *root2 && s_n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_the_largest_power_of_two_below() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (7, 4),
            (8, 4),
            (9, 8),
            (63, 32),
        ] {
            assert_eq!(split_point(n), k, "n = {n}");
        }
        assert_eq!(split_point(28937), 16384);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(Tree::new().root(), EMPTY_ROOT);
    }

    #[test]
    fn levels_hold_exactly_the_complete_blocks() {
        let mut tree = Tree::new();
        for i in 0..100u64 {
            tree.append_leaf(&i.to_be_bytes());
            let n = tree.len();
            for (k, level) in tree.levels.iter().enumerate() {
                assert_eq!(level.len() as u64, n >> k, "n = {n}, level {k}");
            }
        }
    }
}
