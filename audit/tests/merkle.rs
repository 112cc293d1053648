//! The Merkle tree against published test vectors, against a naive
//! transcription of the RFC's recursive definitions, and its proofs against
//! the independent verifiers (including tampered proofs).

use ibl_audit::merkle::{
    leaf_hash, node_hash, verify_consistency, verify_inclusion, Hash, MerkleError, Tree, EMPTY_ROOT,
};

fn h(hex: &str) -> Hash {
    assert_eq!(hex.len(), 64, "{hex}");
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------
// Published vectors: the eight leaves of the Certificate Transparency test
// data, as in transparency-dev/merkle (testonly/constants.go: LeafInputs,
// NodeHashes, RootHashes; testonly/reference_test.go: TestRefInclusionProof,
// TestRefConsistencyProof; proof/verify_test.go: inclusionProofs,
// consistencyProofs, roots), itself carried over from
// google/certificate-transparency.
// ---------------------------------------------------------------------------

const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Roots of the trees of sizes 0..=8.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// Hashes of the leaves (level 0).
const LEAF_HASHES: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
];

/// (leaf index, tree size, proof)
const INCLUSION: &[(u64, u64, &[&str])] = &[
    (0, 1, &[]),
    (
        0,
        2,
        &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
    ),
    (
        1,
        2,
        &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

/// (first size, second size, proof)
const CONSISTENCY: &[(u64, u64, &[&str])] = &[
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn reference_tree() -> Tree {
    let mut tree = Tree::new();
    for leaf in LEAVES {
        tree.append_leaf(&bytes(leaf));
    }
    tree
}

fn hashes(list: &[&str]) -> Vec<Hash> {
    list.iter().map(|x| h(x)).collect()
}

#[test]
fn leaf_hashes_match_the_published_ones() {
    for (leaf, want) in LEAVES.iter().zip(LEAF_HASHES) {
        assert_eq!(leaf_hash(&bytes(leaf)), h(want), "leaf {leaf:?}");
    }
    assert_eq!(reference_tree().leaf_hashes(), hashes(&LEAF_HASHES));
}

#[test]
fn roots_match_the_published_ones() {
    let tree = reference_tree();
    for (size, want) in ROOTS.iter().enumerate() {
        assert_eq!(tree.root_at(size as u64).unwrap(), h(want), "size {size}");
    }
    assert_eq!(tree.root(), h(ROOTS[8]));
    assert_eq!(h(ROOTS[0]), EMPTY_ROOT);
    // And while the tree grows.
    let mut growing = Tree::new();
    assert_eq!(growing.root(), EMPTY_ROOT);
    for (i, leaf) in LEAVES.iter().enumerate() {
        assert_eq!(growing.append_leaf(&bytes(leaf)), i as u64);
        assert_eq!(growing.root(), h(ROOTS[i + 1]), "size {}", i + 1);
    }
}

#[test]
fn inclusion_proofs_match_the_published_ones_and_verify() {
    let tree = reference_tree();
    for &(index, size, proof) in INCLUSION {
        let want = hashes(proof);
        assert_eq!(
            tree.inclusion_proof(index, size).unwrap(),
            want,
            "leaf {index} in {size}"
        );
        let leaf = h(LEAF_HASHES[index as usize]);
        let root = h(ROOTS[size as usize]);
        assert!(verify_inclusion(&leaf, index, size, &want, &root));
    }
}

#[test]
fn consistency_proofs_match_the_published_ones_and_verify() {
    let tree = reference_tree();
    for &(first, second, proof) in CONSISTENCY {
        let want = hashes(proof);
        assert_eq!(
            tree.consistency_proof(first, second).unwrap(),
            want,
            "{first} -> {second}"
        );
        let (r1, r2) = (h(ROOTS[first as usize]), h(ROOTS[second as usize]));
        assert!(verify_consistency(first, second, &r1, &r2, &want));
    }
}

// The tampering cases of transparency-dev/merkle proof/verify_test.go
// (corruptInclusionProof, corruptConsistencyProof), applied to the published
// proofs.

/// (index, tree size, leaf hash, proof, root, what was changed)
type InclusionProbe = (u64, u64, Hash, Vec<Hash>, Hash, &'static str);
/// (first, second, root1, root2, proof, what was changed)
type ConsistencyProbe = (u64, u64, Hash, Hash, Vec<Hash>, &'static str);

#[test]
fn tampered_published_inclusion_proofs_fail() {
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for &(index, size, proof) in INCLUSION {
        let proof = hashes(proof);
        let leaf = h(LEAF_HASHES[index as usize]);
        let root = h(ROOTS[size as usize]);
        let mut probes: Vec<InclusionProbe> = vec![
            (
                index.wrapping_sub(1),
                size,
                leaf,
                proof.clone(),
                root,
                "index - 1",
            ),
            (index + 1, size, leaf, proof.clone(), root, "index + 1"),
            (index ^ 2, size, leaf, proof.clone(), root, "index ^ 2"),
            (index, size * 2, leaf, proof.clone(), root, "size * 2"),
            (index, size / 2, leaf, proof.clone(), root, "size / 2"),
            (
                index,
                size,
                leaf_hash(b"WrongLeaf"),
                proof.clone(),
                root,
                "wrong leaf",
            ),
            (index, size, leaf, proof.clone(), EMPTY_ROOT, "empty root"),
            (index, size, leaf, proof.clone(), some, "random root"),
            (
                index,
                size,
                leaf,
                [proof.clone(), vec![root]].concat(),
                root,
                "trailing root",
            ),
            (
                index,
                size,
                leaf,
                [vec![root], proof.clone()].concat(),
                root,
                "preceding root",
            ),
            (
                index,
                size,
                leaf,
                [proof.clone(), vec![[0; 32]]].concat(),
                root,
                "trailing zeros",
            ),
        ];
        for i in 0..proof.len() {
            let mut p = proof.clone();
            p[i][0] ^= 8;
            probes.push((index, size, leaf, p, root, "modified element"));
        }
        if !proof.is_empty() {
            probes.push((
                index,
                size,
                leaf,
                proof[..proof.len() - 1].to_vec(),
                root,
                "removed",
            ));
        }
        if proof.len() > 1 {
            let p = [vec![proof[0], some], proof[1..].to_vec()].concat();
            probes.push((index, size, leaf, p, root, "inserted"));
        }
        for (i, s, l, p, r, what) in probes {
            // "index ^ 2" or "size * 2" can land on another valid statement
            // only if the proof still verifies; none of these do.
            assert!(
                !verify_inclusion(&l, i, s, &p, &r),
                "{what}: leaf {index} in {size} verified"
            );
        }
    }
}

#[test]
fn tampered_published_consistency_proofs_fail() {
    for &(first, second, proof) in CONSISTENCY {
        let proof = hashes(proof);
        if proof.is_empty() {
            continue;
        }
        let (r1, r2) = (h(ROOTS[first as usize]), h(ROOTS[second as usize]));
        let wrong = leaf_hash(b"WrongRoot");
        let mut probes: Vec<ConsistencyProbe> = vec![
            (first - 1, second, r1, r2, proof.clone(), "first - 1"),
            (first + 1, second, r1, r2, proof.clone(), "first + 1"),
            (first ^ 2, second, r1, r2, proof.clone(), "first ^ 2"),
            (first, second * 2, r1, r2, proof.clone(), "second * 2"),
            (first, second / 2, r1, r2, proof.clone(), "second / 2"),
            (first, second, wrong, r2, proof.clone(), "wrong root1"),
            (first, second, r1, wrong, proof.clone(), "wrong root2"),
            (first, second, r2, r1, proof.clone(), "swapped roots"),
            (first, second, r1, r2, vec![], "empty proof"),
            (
                first,
                second,
                r1,
                r2,
                [proof.clone(), vec![r1]].concat(),
                "trailing root1",
            ),
            (
                first,
                second,
                r1,
                r2,
                [proof.clone(), vec![r2]].concat(),
                "trailing root2",
            ),
            (
                first,
                second,
                r1,
                r2,
                [vec![r1], proof.clone()].concat(),
                "preceding root1",
            ),
            (
                first,
                second,
                r1,
                r2,
                [vec![r2], proof.clone()].concat(),
                "preceding root2",
            ),
            (
                first,
                second,
                r1,
                r2,
                [vec![proof[0]], proof.clone()].concat(),
                "preceding proof[0]",
            ),
            (
                first,
                second,
                r1,
                r2,
                proof[..proof.len() - 1].to_vec(),
                "truncated",
            ),
        ];
        for i in 0..proof.len() {
            let mut p = proof.clone();
            p[i][0] ^= 16;
            probes.push((first, second, r1, r2, p, "modified element"));
        }
        for (f, s, a, b, p, what) in probes {
            assert!(
                !verify_consistency(f, s, &a, &b, &p),
                "{what}: {first} -> {second} verified"
            );
        }
    }
}

#[test]
fn consistency_edge_cases() {
    let r1 = leaf_hash(b"don't care 1");
    let r2 = leaf_hash(b"don't care 2");
    // Equal sizes: equal roots and nothing to prove.
    assert!(verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]));
    assert!(verify_consistency(1, 1, &r2, &r2, &[]));
    assert!(!verify_consistency(1, 1, &r1, &r2, &[]));
    assert!(!verify_consistency(1, 1, &r2, &r2, &[EMPTY_ROOT]));
    // Every tree extends the empty one, whose root is fixed.
    assert!(verify_consistency(0, 1, &EMPTY_ROOT, &r2, &[]));
    assert!(!verify_consistency(0, 1, &r1, &r2, &[]));
    assert!(!verify_consistency(0, 1, &EMPTY_ROOT, &r2, &[EMPTY_ROOT]));
    // Time travel to the past.
    assert!(!verify_consistency(1, 0, &r1, &r2, &[]));
    assert!(!verify_consistency(2, 1, &r1, &r2, &[]));
    // A real step needs a proof.
    assert!(!verify_consistency(1, 2, &r1, &r2, &[]));
    // Inclusion in an empty tree, or past the end, never holds.
    assert!(!verify_inclusion(&r1, 0, 0, &[], &EMPTY_ROOT));
    assert!(!verify_inclusion(&r1, 1, 1, &[], &r1));
    assert!(verify_inclusion(&r1, 0, 1, &[], &r1));
    assert!(!verify_inclusion(&r1, 0, 1, &[], &r2));
}

#[test]
fn requests_beyond_the_tree_are_refused() {
    let tree = reference_tree();
    assert_eq!(
        tree.root_at(9),
        Err(MerkleError::SizeBeyondTree {
            requested: 9,
            size: 8
        })
    );
    assert_eq!(
        tree.inclusion_proof(0, 9),
        Err(MerkleError::SizeBeyondTree {
            requested: 9,
            size: 8
        })
    );
    assert_eq!(
        tree.inclusion_proof(5, 5),
        Err(MerkleError::IndexOutOfRange {
            index: 5,
            tree_size: 5
        })
    );
    assert_eq!(
        tree.consistency_proof(5, 4),
        Err(MerkleError::SizesOutOfOrder {
            first: 5,
            second: 4
        })
    );
    assert_eq!(
        tree.consistency_proof(3, 9),
        Err(MerkleError::SizeBeyondTree {
            requested: 9,
            size: 8
        })
    );
    assert_eq!(tree.consistency_proof(0, 8), Ok(vec![]));
    assert_eq!(tree.consistency_proof(8, 8), Ok(vec![]));
    assert_eq!(Tree::new().root_at(0), Ok(EMPTY_ROOT));
}

// ---------------------------------------------------------------------------
// Against the RFC's recursive definitions, transcribed naively (RFC 9162
// §2.1.1 MTH, §2.1.3.1 PATH, §2.1.4.1 PROOF/SUBPROOF) over the leaf hashes.
// ---------------------------------------------------------------------------

fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn naive_root(d: &[Hash]) -> Hash {
    match d.len() {
        0 => EMPTY_ROOT,
        1 => d[0],
        n => {
            let k = k_of(n);
            node_hash(&naive_root(&d[..k]), &naive_root(&d[k..]))
        }
    }
}

fn naive_path(m: usize, d: &[Hash]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        let mut p = naive_path(m, &d[..k]);
        p.push(naive_root(&d[k..]));
        p
    } else {
        let mut p = naive_path(m - k, &d[k..]);
        p.push(naive_root(&d[..k]));
        p
    }
}

fn naive_subproof(m: usize, d: &[Hash], whole: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if whole { vec![] } else { vec![naive_root(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = naive_subproof(m, &d[..k], whole);
        p.push(naive_root(&d[k..]));
        p
    } else {
        let mut p = naive_subproof(m - k, &d[k..], false);
        p.push(naive_root(&d[..k]));
        p
    }
}

fn numbered_tree(n: u64) -> Tree {
    Tree::from_leaf_hashes((0..n).map(|i| leaf_hash(format!("event {i}").as_bytes())))
}

const N: u64 = 40;

#[test]
fn roots_and_proofs_equal_the_recursive_definitions() {
    let tree = numbered_tree(N);
    let d = tree.leaf_hashes();
    for m in 0..=N as usize {
        assert_eq!(
            tree.root_at(m as u64).unwrap(),
            naive_root(&d[..m]),
            "root {m}"
        );
        for i in 0..m {
            assert_eq!(
                tree.inclusion_proof(i as u64, m as u64).unwrap(),
                naive_path(i, &d[..m]),
                "path {i} in {m}"
            );
        }
        for m1 in 1..=m {
            assert_eq!(
                tree.consistency_proof(m1 as u64, m as u64).unwrap(),
                naive_subproof(m1, &d[..m], true),
                "proof {m1} -> {m}"
            );
        }
    }
}

#[test]
fn a_tree_rebuilt_from_its_leaf_hashes_is_the_same_tree() {
    let tree = numbered_tree(N);
    let copy = Tree::from_leaf_hashes(tree.leaf_hashes().iter().copied());
    assert_eq!(copy, tree);
    assert_eq!(copy.root(), tree.root());
    assert_eq!(copy.leaf(3), Some(leaf_hash(b"event 3")));
    assert_eq!(copy.leaf(N), None);
}

/// Flips one bit of a hash, a different one for each `salt`.
fn flip(mut x: Hash, salt: usize) -> Hash {
    x[salt % 32] ^= 1 << (salt % 8);
    x
}

#[test]
fn every_inclusion_proof_verifies_and_every_flipped_bit_fails() {
    let tree = numbered_tree(N);
    for size in 1..=N {
        let root = tree.root_at(size).unwrap();
        for index in 0..size {
            let leaf = tree.leaf(index).unwrap();
            let proof = tree.inclusion_proof(index, size).unwrap();
            assert!(
                proof.len() <= 64 - (size - 1).leading_zeros() as usize,
                "proof too long"
            );
            assert!(
                verify_inclusion(&leaf, index, size, &proof, &root),
                "leaf {index} in {size}"
            );
            let salt = (index * 31 + size) as usize;
            assert!(!verify_inclusion(
                &flip(leaf, salt),
                index,
                size,
                &proof,
                &root
            ));
            assert!(!verify_inclusion(
                &leaf,
                index,
                size,
                &proof,
                &flip(root, salt)
            ));
            for i in 0..proof.len() {
                let mut p = proof.clone();
                p[i] = flip(p[i], salt + i);
                assert!(!verify_inclusion(&leaf, index, size, &p, &root));
            }
            // The proof of one position proves no other.
            for other in 0..size {
                if other != index {
                    assert!(!verify_inclusion(&leaf, other, size, &proof, &root));
                }
            }
            // Nor the same position in a tree of another size.
            for other in 1..=N {
                if other != size {
                    let r = tree.root_at(other).unwrap();
                    assert!(!verify_inclusion(&leaf, index, other, &proof, &r));
                }
            }
            if !proof.is_empty() {
                let short = &proof[..proof.len() - 1];
                assert!(!verify_inclusion(&leaf, index, size, short, &root));
            }
            let long = [proof.clone(), vec![root]].concat();
            assert!(!verify_inclusion(&leaf, index, size, &long, &root));
        }
    }
}

#[test]
fn every_consistency_proof_verifies_and_every_flipped_bit_fails() {
    let tree = numbered_tree(N);
    let roots: Vec<Hash> = (0..=N).map(|m| tree.root_at(m).unwrap()).collect();
    for second in 0..=N {
        let root2 = roots[second as usize];
        for first in 0..=second {
            let root1 = roots[first as usize];
            let proof = tree.consistency_proof(first, second).unwrap();
            assert!(
                verify_consistency(first, second, &root1, &root2, &proof),
                "{first} -> {second}"
            );
            let salt = (first * 37 + second) as usize;
            if first > 0 {
                assert!(!verify_consistency(
                    first,
                    second,
                    &flip(root1, salt),
                    &root2,
                    &proof
                ));
            }
            // (From the empty tree any root2 is consistent.)
            if first > 0 && first < second {
                assert!(!verify_consistency(
                    first,
                    second,
                    &root1,
                    &flip(root2, salt),
                    &proof
                ));
            }
            for i in 0..proof.len() {
                let mut p = proof.clone();
                p[i] = flip(p[i], salt + i);
                assert!(
                    !verify_consistency(first, second, &root1, &root2, &p),
                    "{first} -> {second}, element {i} flipped"
                );
            }
            // The proof holds between these two sizes only (among the
            // nearby sizes, and the doubled and halved ones).
            let near =
                |x: u64| (x.saturating_sub(3)..=(x + 3).min(N)).chain([x / 2, (2 * x).min(N)]);
            for f in near(first) {
                for s in near(second) {
                    if f > s || (f, s) == (first, second) {
                        continue;
                    }
                    let (r1, r2) = (roots[f as usize], roots[s as usize]);
                    // The empty proof is right for every (0, s) and (s, s).
                    if proof.is_empty() && (f == 0 || f == s) {
                        continue;
                    }
                    assert!(
                        !verify_consistency(f, s, &r1, &r2, &proof),
                        "proof of {first} -> {second} verified {f} -> {s}"
                    );
                }
            }
            // A tree that differs in one leaf of the old tree (the first, a
            // middle one, the last) is not an extension.
            if first > 0 && first < second {
                for changed in [0, first / 2, first - 1] {
                    let mut leaves = tree.leaf_hashes()[..second as usize].to_vec();
                    leaves[changed as usize] = flip(leaves[changed as usize], salt);
                    let forged = Tree::from_leaf_hashes(leaves);
                    let forged_root1 = forged.root_at(first).unwrap();
                    assert!(!verify_consistency(
                        first,
                        second,
                        &forged_root1,
                        &root2,
                        &proof
                    ));
                    let forged_proof = forged.consistency_proof(first, second).unwrap();
                    assert!(!verify_consistency(
                        first,
                        second,
                        &root1,
                        &forged.root(),
                        &forged_proof
                    ));
                }
            }
        }
    }
}

#[test]
fn larger_trees_agree_with_the_definitions_on_a_sample() {
    let tree = numbered_tree(1100);
    let d = tree.leaf_hashes();
    for size in [511u64, 512, 513, 1000, 1023, 1024, 1025, 1100] {
        let root = tree.root_at(size).unwrap();
        assert_eq!(root, naive_root(&d[..size as usize]), "root {size}");
        for index in [0, 1, size / 3, size / 2, size - 2, size - 1] {
            let proof = tree.inclusion_proof(index, size).unwrap();
            assert_eq!(proof, naive_path(index as usize, &d[..size as usize]));
            assert!(verify_inclusion(
                &d[index as usize],
                index,
                size,
                &proof,
                &root
            ));
        }
        for first in [1, 2, 3, size / 2, size - 1, size] {
            let proof = tree.consistency_proof(first, size).unwrap();
            assert_eq!(
                proof,
                naive_subproof(first as usize, &d[..size as usize], true)
            );
            let root1 = tree.root_at(first).unwrap();
            assert!(verify_consistency(first, size, &root1, &root, &proof));
        }
    }
}
