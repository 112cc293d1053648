//! The audit log's public routes, checked as an outside auditor would:
//! the signed note with Ed25519 directly, the root and the proofs with the
//! algorithms of RFC 9162 written here from the RFC (§2.1.1, §2.1.3.2,
//! §2.1.4.2), not with the server's code.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::*;

type Hash = [u8; 32];

fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// MTH (RFC 9162 §2.1.1), recursively, as the RFC writes it.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest(b"").into(),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// RFC 9162 §2.1.3.2.
fn verify_inclusion(leaf: Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s, mut r) = (index, size - 1, leaf);
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &r == root
}

/// RFC 9162 §2.1.4.2 (sizes 0 < first <= second).
fn verify_consistency(first: u64, second: u64, old: &Hash, new: &Hash, path: &[Hash]) -> bool {
    if first == second {
        return path.is_empty() && old == new;
    }
    if path.is_empty() {
        return false;
    }
    let mut path = path.to_vec();
    if first.is_power_of_two() {
        path.insert(0, *old);
    }
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node(c, &fr);
            sr = node(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    &fr == old && &sr == new && s == 0
}

fn hash(text: &Value) -> Hash {
    STANDARD
        .decode(text.as_str().expect("base64 text"))
        .expect("base64")
        .try_into()
        .expect("32 bytes")
}

fn hashes(body: &Value) -> Vec<Hash> {
    body["hashes"]
        .as_array()
        .expect("hashes")
        .iter()
        .map(hash)
        .collect()
}

/// Checks a C2SP signed note by hand: its body, then a signature line
/// `— <origin> base64(key id (4 bytes) ‖ Ed25519 signature)` over it.
fn check_note(note: &str, origin: &str, public_key: &VerifyingKey) -> (u64, Hash) {
    let (body, signatures) = note.split_once("\n\n").expect("a body and signatures");
    let body = format!("{body}\n");
    let mut lines = body.lines();
    assert_eq!(lines.next(), Some(origin));
    let size: u64 = lines.next().expect("a size").parse().expect("a number");
    let root = hash(&json!(lines.next().expect("a root")));
    let line = signatures.lines().next().expect("a signature line");
    let rest = line
        .strip_prefix(&format!("\u{2014} {origin} "))
        .expect("signed by the origin");
    let raw = STANDARD.decode(rest).expect("base64");
    assert_eq!(raw.len(), 68, "key id and signature");
    let signature = Signature::from_slice(&raw[4..]).expect("a signature");
    public_key
        .verify_strict(body.as_bytes(), &signature)
        .expect("the note is signed by the served key");
    (size, root)
}

#[test]
fn checkpoints_and_proofs_verify_with_an_independent_rfc_9162_verifier() {
    let app = spawn_app_with(|s| s.checkpoint_secs = 1);
    let credential = app.create_credential("Audited");
    let issued: Vec<Value> = (0..5)
        .map(|i| app.issue(&credential, &format!("learner{i}@acme.test")))
        .collect();
    app.revoke(issued[1]["entityId"].as_str().expect("an id"), "error")
        .expect(200);
    let events = app.events();
    let leaves: Vec<Hash> = events
        .iter()
        .map(ibl_projections::audit_log::leaf_of)
        .collect();
    let size = leaves.len() as u64;

    // The checkpoint covers every event within a few seconds.
    let started = Instant::now();
    let checkpoint = loop {
        let c = app
            .get("/api/audit/checkpoint")
            .anonymous()
            .send()
            .expect(200);
        if c.body["size"] == size {
            break c.body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no checkpoint of size {size}: {}",
            c.text
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let public_key = VerifyingKey::from_bytes(&hash(&checkpoint["public_key"])).expect("a key");
    let origin = checkpoint["origin"].as_str().expect("an origin");
    let (signed_size, signed_root) = check_note(
        checkpoint["note"].as_str().expect("a note"),
        origin,
        &public_key,
    );
    assert_eq!(signed_size, size);
    assert_eq!(signed_root, hash(&checkpoint["root"]));
    assert_eq!(signed_root, mth(&leaves), "the root is the tree of the log");

    for (i, leaf) in leaves.iter().enumerate() {
        let proof = app
            .get(&format!(
                "/api/audit/proof/inclusion?leaf_index={i}&tree_size={size}"
            ))
            .anonymous()
            .send()
            .expect(200)
            .body;
        assert_eq!(
            (proof["leaf_index"] == i, proof["tree_size"] == size),
            (true, true)
        );
        let path = hashes(&proof);
        assert!(
            verify_inclusion(*leaf, i as u64, size, &path, &signed_root),
            "leaf {i}"
        );
        // The same proof does not prove another leaf, or another place.
        let other = leaves[(i + 1) % leaves.len()];
        assert!(!verify_inclusion(
            other,
            i as u64,
            size,
            &path,
            &signed_root
        ));
        if size > 1 {
            let moved = (i as u64 + 1) % size;
            assert!(!verify_inclusion(*leaf, moved, size, &path, &signed_root));
        }
    }
    for first in 1..=size {
        let proof = app
            .get(&format!(
                "/api/audit/proof/consistency?from={first}&to={size}"
            ))
            .anonymous()
            .send()
            .expect(200)
            .body;
        let path = hashes(&proof);
        let old = mth(&leaves[..first as usize]);
        assert!(
            verify_consistency(first, size, &old, &signed_root, &path),
            "from {first}"
        );
        if first < size {
            // An old root the log never had fails.
            let mut forged = old;
            forged[0] ^= 1;
            assert!(!verify_consistency(
                first,
                size,
                &forged,
                &signed_root,
                &path
            ));
        }
    }

    // A later checkpoint proves the log only grew.
    app.issue(&credential, "late@acme.test");
    let grown = app.events().len() as u64;
    let started = Instant::now();
    let later = loop {
        let c = app
            .get("/api/audit/checkpoint")
            .anonymous()
            .send()
            .expect(200);
        if c.body["size"] == grown {
            break c.body;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{}", c.text);
        std::thread::sleep(Duration::from_millis(100));
    };
    let (_, later_root) = check_note(later["note"].as_str().expect("a note"), origin, &public_key);
    let proof = app
        .get(&format!(
            "/api/audit/proof/consistency?from={size}&to={grown}"
        ))
        .anonymous()
        .send()
        .expect(200)
        .body;
    assert!(verify_consistency(
        size,
        grown,
        &signed_root,
        &later_root,
        &hashes(&proof)
    ));
}

#[test]
fn proof_requests_out_of_range_or_malformed_are_refused() {
    let app = spawn_app();
    let size = app.events().len();
    let c = app
        .get("/api/audit/checkpoint")
        .anonymous()
        .send()
        .expect(200);
    assert_eq!(
        c.body["size"], size,
        "the first checkpoint is signed on demand"
    );
    for query in [
        format!("/api/audit/proof/inclusion?leaf_index={size}&tree_size={size}"),
        format!(
            "/api/audit/proof/inclusion?leaf_index=0&tree_size={}",
            size + 1
        ),
        "/api/audit/proof/inclusion?leaf_index=0".into(),
        "/api/audit/proof/inclusion?leaf_index=-1&tree_size=1".into(),
        "/api/audit/proof/inclusion?leaf_index=x&tree_size=1".into(),
        format!("/api/audit/proof/consistency?from=2&to=1&n={size}"),
        format!("/api/audit/proof/consistency?from=1&to={}", size + 1),
        "/api/audit/proof/consistency?from=99999999999999999999999&to=1".into(),
        "/api/audit/proof/consistency".into(),
    ] {
        let r = app.get(&query).anonymous().send();
        assert_eq!(r.status, 400, "{query}: {}", r.text);
    }
}
