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

/// Waits until the signed checkpoint covers every event of the log.
fn wait_for_checkpoint(app: &TestApp) -> u64 {
    let size = app.events().len() as u64;
    let started = Instant::now();
    loop {
        let c = app
            .get("/api/audit/checkpoint")
            .anonymous()
            .send()
            .expect(200);
        if c.body["size"] == size {
            return size;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{}", c.text);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A copy of the top-level files of `from` (the store and the evidence).
fn copy_of(from: &std::path::Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("a temporary folder");
    for entry in std::fs::read_dir(from).expect("a folder").flatten() {
        if entry.file_type().expect("a type").is_file() {
            std::fs::copy(entry.path(), to.path().join(entry.file_name())).expect("copies");
        }
    }
    to
}

/// Runs `ibl verify` on `data`: exit code and what it printed.
fn verify(data: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let args: Vec<&str> = ["verify"].iter().chain(extra).copied().collect();
    let (code, out, err) = crate::processes::ibl(data, &args);
    (code, out + &err)
}

fn edit(data: &std::path::Path, sql: &str) {
    let conn = rusqlite::Connection::open(data.join("events.db")).expect("the store's file");
    conn.execute_batch(sql).expect("the edit applies");
}

#[test]
fn verify_passes_on_an_untouched_store_and_names_the_event_in_each_tampered_copy() {
    let app = spawn_app_with(|s| s.checkpoint_secs = 1);
    let credential = app.create_credential("Audited");
    for i in 0..6 {
        app.issue(&credential, &format!("learner{i}@acme.test"));
    }
    let events = app.events();
    wait_for_checkpoint(&app);
    let dir = app.stop();
    let key = dir.path().join("keys").join("signing.key");
    let key_arg = key.to_str().expect("a path");
    let signing = ["--signing-key", key_arg];
    let named = |i: usize| {
        let e = &events[i];
        format!(
            "position {} (stream {}, revision {})",
            e.position, e.stream, e.revision
        )
    };

    let (code, text) = verify(dir.path(), &signing);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("verified"), "{text}");
    assert!(
        text.contains(&format!("{} events in the log", events.len())),
        "{text}"
    );

    let (n, m) = (events.len() - 4, events.len() - 2);
    let (p, q) = (events[n].position, events[m].position);
    assert_ne!(events[n].stream, events[m].stream);
    let cases = [
        (
            format!("UPDATE events SET payload = json_set(payload, '$.tampered', 1) WHERE position = {p}"),
            format!("altered: the event at {}", named(n)),
        ),
        (
            format!("DELETE FROM events WHERE position = {p}"),
            format!("deleted: the event at {}", named(n)),
        ),
        (
            format!(
                "CREATE TEMP TABLE two AS SELECT * FROM events WHERE position IN ({p}, {q});
                 DELETE FROM events WHERE position IN ({p}, {q});
                 INSERT INTO events SELECT CASE position WHEN {p} THEN {q} ELSE {p} END,
                   event_id, stream_id, revision, event_type, schema_version, recorded_at,
                   payload, metadata FROM two;"
            ),
            format!(
                "reordered: leaf {n} holds the event at position {p} (stream {}, revision {}), where the record has {}",
                events[m].stream,
                events[m].revision,
                named(n)
            ),
        ),
        (
            format!("DELETE FROM events WHERE position >= {p}"),
            format!("truncated: the log ends before the event at {}", named(n)),
        ),
        (
            format!(
                "CREATE TEMP TABLE tail AS SELECT * FROM events WHERE position >= {p};
                 DELETE FROM events WHERE position >= {p};
                 INSERT INTO events SELECT position, event_id, stream_id, revision, event_type,
                   schema_version, recorded_at, json_set(payload, '$.rewritten', 1), metadata
                   FROM tail;"
            ),
            format!("altered: the event at {}", named(n)),
        ),
    ];
    for (sql, expected) in cases {
        let copy = copy_of(dir.path());
        edit(copy.path(), &sql);
        let (code, text) = verify(copy.path(), &signing);
        assert_eq!(code, 1, "{sql}: {text}");
        assert!(text.contains("TAMPERED"), "{sql}: {text}");
        assert!(
            text.contains(&expected),
            "{sql}: expected {expected:?} in {text}"
        );
    }

    // The evidence itself, edited before a signed checkpoint, is caught by
    // the signature.
    let copy = copy_of(dir.path());
    let conn = rusqlite::Connection::open(copy.path().join("audit.db")).expect("the evidence");
    conn.execute(
        "UPDATE leaves SET hash = zeroblob(32) WHERE leaf_index = 1",
        [],
    )
    .expect("edits");
    drop(conn);
    let (code, text) = verify(copy.path(), &signing);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("do not hash to its signed root"), "{text}");

    // Another key than the log's: no checkpoint holds.
    let other = ibl_audit::Signer::from_seed([3; 32], "ibl.local/audit").expect("a signer");
    let (code, text) = verify(dir.path(), &["--vkey", &other.vkey()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not signed by"), "{text}");

    // No evidence, or no key: the check cannot run.
    let empty = tempfile::tempdir().expect("a temporary folder");
    let (code, text) = verify(empty.path(), &signing);
    assert_eq!(code, 2, "{text}");
    let (code, text) = verify(dir.path(), &["--signing-key", "/nonexistent/key"]);
    assert_eq!(code, 2, "{text}");
}

/// Every page of `path`, following `next`.
pub(crate) fn all_pages(app: &TestApp, key: &str, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut url = path.to_owned();
    loop {
        let body = app.get(&url).key(key).send().expect(200).body;
        out.extend(body["results"].as_array().expect("results").iter().cloned());
        match body["next"].as_str() {
            Some(next) => {
                url = next
                    .strip_prefix(&app.base)
                    .expect("a URL of ours")
                    .to_owned()
            }
            None => return out,
        }
    }
}

#[test]
fn the_history_feed_shows_a_platforms_events_as_hashed_filtered_and_paged() {
    let app = spawn_app_with(|s| s.checkpoint_secs = 1);
    let credential = app.create_credential("Audited");
    let first = app.issue(&credential, "one@acme.test");
    // A second key of the admin's, named: events written with it name it.
    let second = app
        .post("/api/core/platform/api-tokens/")
        .json(&json!({"platform_key": ORG, "name": "registrar"}))
        .send()
        .expect(201)
        .body["key"]
        .as_str()
        .expect("a key")
        .to_owned();
    let by_registrar = app
        .issue_with(
            &credential,
            &json!({"recipient": {"email": "two@acme.test"}}),
        )
        .expect(200);
    drop(by_registrar);
    let path = format!("/api/credentials/orgs/{ORG}/users/{ADMIN}/{credential}/assertions/");
    let issued_by_registrar = app
        .post(&path)
        .key(&second)
        .json(&json!({"recipient": {"email": "three@acme.test"}}))
        .send()
        .expect(200)
        .body;
    let revoked_id = first["entityId"].as_str().expect("an id").to_owned();
    app.revoke(&revoked_id, "error").expect(200);
    // The other platform writes too; none of it shows in acme's feed.
    app.post(&format!("/api/credentials/orgs/{OTHER}/users/{ADMIN}/"))
        .key(&app.other_key)
        .json(&json!({"name": "Elsewhere"}))
        .send()
        .expect(200);
    let size = wait_for_checkpoint(&app);

    let feed = all_pages(
        &app,
        &app.key,
        &format!("/api/audit/orgs/{ORG}/events/?page_size=2"),
    );
    let whole = app
        .get(&format!("/api/audit/orgs/{ORG}/events/?page_size=1000"))
        .send()
        .expect(200)
        .body;
    assert_eq!(
        whole["results"].as_array().expect("results"),
        &feed,
        "pages add up to the whole"
    );
    assert!(whole["next"].is_null());
    let log = app.events();
    let acme: Vec<_> = log.iter().filter(|e| e.platform() == Some(ORG)).collect();
    assert_eq!(feed.len(), acme.len(), "every acme event, nothing else");
    let checkpoint = app
        .get("/api/audit/checkpoint")
        .anonymous()
        .send()
        .expect(200)
        .body;
    let root = hash(&checkpoint["root"]);
    for (record, event) in feed.iter().zip(&acme) {
        assert_eq!(record["position"], event.position);
        assert_eq!(record["stream"], event.stream.as_str());
        assert_eq!(record["type"], event.event_type.as_str());
        assert_eq!(record["data"], *event.payload, "the payload as stored");
        assert!(!record.to_string().contains("secret"), "{record}");
        // The auditor recomputes the leaf from what the feed shows, and
        // proves it is in the signed tree.
        let index = record["leaf_index"].as_u64().expect("a leaf index");
        let mut shown = record.clone();
        shown
            .as_object_mut()
            .expect("an object")
            .remove("leaf_index");
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(ibl_audit::to_jcs(&shown).expect("canonical"));
        let leaf: Hash = h.finalize().into();
        let proof = app
            .get(&format!(
                "/api/audit/proof/inclusion?leaf_index={index}&tree_size={size}"
            ))
            .anonymous()
            .send()
            .expect(200)
            .body;
        assert!(
            verify_inclusion(leaf, index, size, &hashes(&proof), &root),
            "{record}"
        );
    }

    // Filters.
    let revocations = all_pages(
        &app,
        &app.key,
        &format!("/api/audit/orgs/{ORG}/events/?type=AssertionRevoked"),
    );
    assert_eq!(revocations.len(), 1);
    let stream_of =
        |id: &Value| ibl_events::credentials::assertion_stream(id.as_str().expect("an id"));
    assert_eq!(revocations[0]["stream"], stream_of(&json!(revoked_id)));
    assert_eq!(revocations[0]["actor"]["user"], ADMIN);
    let registrar = all_pages(
        &app,
        &app.key,
        &format!("/api/audit/orgs/{ORG}/events/?actor=registrar"),
    );
    assert_eq!(registrar.len(), 1, "{registrar:?}");
    assert_eq!(
        registrar[0]["stream"],
        stream_of(&issued_by_registrar["entityId"])
    );
    assert_eq!(registrar[0]["actor"]["key"], "registrar");
    let middle = &feed[feed.len() / 2];
    let after = all_pages(
        &app,
        &app.key,
        &format!("/api/audit/orgs/{ORG}/events/?after={}", middle["position"]),
    );
    assert_eq!(after, feed[feed.len() / 2 + 1..].to_vec());
    let since = middle["time"].as_str().expect("a time").replace('+', "%2B");
    let from = all_pages(
        &app,
        &app.key,
        &format!("/api/audit/orgs/{ORG}/events/?from={since}"),
    );
    let to = all_pages(
        &app,
        &app.key,
        &format!("/api/audit/orgs/{ORG}/events/?to={since}"),
    );
    assert_eq!(
        from.len() + to.len(),
        feed.len(),
        "from and to split the feed"
    );
    assert!(from.contains(middle) && !to.contains(middle));

    // One entity's history: the assertion issued, then revoked.
    let history = all_pages(
        &app,
        &app.key,
        &format!("/api/audit/orgs/{ORG}/assertions/{revoked_id}/history/"),
    );
    let types: Vec<_> = history
        .iter()
        .map(|r| r["type"].as_str().expect("a type"))
        .collect();
    assert_eq!(types, ["AssertionIssued", "AssertionRevoked"]);
    assert!(
        history.iter().all(|r| feed.contains(r)),
        "the same records as the feed"
    );
    let key_history = all_pages(
        &app,
        &app.key,
        &format!("/api/audit/orgs/{ORG}/api-keys/registrar/history/"),
    );
    assert_eq!(key_history.len(), 1, "{key_history:?}");
    assert!(
        !key_history[0].to_string().contains(&second),
        "the secret never shows"
    );

    // Another platform's auditor sees none of it; bad input is a 4xx.
    for path in [
        format!("/api/audit/orgs/{ORG}/events/"),
        format!("/api/audit/orgs/{ORG}/assertions/{revoked_id}/history/"),
    ] {
        app.get(&path)
            .key(&app.other_key)
            .send()
            .expect_client_error(403);
    }
    let other = all_pages(
        &app,
        &app.other_key,
        &format!("/api/audit/orgs/{OTHER}/events/"),
    );
    assert!(!other.is_empty());
    assert!(other
        .iter()
        .all(|r| !r.to_string().contains(ORG) || r["actor"]["platform"] == OTHER));
    app.get(&format!(
        "/api/audit/orgs/{OTHER}/assertions/{revoked_id}/history/"
    ))
    .key(&app.other_key)
    .send()
    .expect_client_error(404);
    for bad in [
        "events/?page_size=0",
        "events/?page_size=1001",
        "events/?after=x",
        "events/?from=yesterday",
        "widgets/1/history/",
        "roles/x/history/",
    ] {
        let r = app.get(&format!("/api/audit/orgs/{ORG}/{bad}")).send();
        assert!(r.status == 400 || r.status == 404, "{bad}: {}", r.text);
    }
    app.get(&format!("/api/audit/orgs/{ORG}/events/"))
        .anonymous()
        .send()
        .expect_client_error(401);
}

#[test]
fn a_user_without_audit_read_is_refused_the_history() {
    let app = spawn_app();
    let user = app
        .post(&format!("/api/orgs/{ORG}/scim/v2/Users"))
        .json(&json!({"userName": "clerk", "emails": [{"value": "clerk@acme.test"}]}))
        .send()
        .expect(201);
    drop(user);
    let key = app
        .post("/api/core/platform/api-tokens/")
        .json(&json!({"platform_key": ORG, "name": "clerk-key", "username": "clerk"}))
        .send()
        .expect(201)
        .body["key"]
        .as_str()
        .expect("a key")
        .to_owned();
    let r = app
        .get(&format!("/api/audit/orgs/{ORG}/events/"))
        .key(&key)
        .send();
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("Ibl.Core/Audit/read"), "{}", r.text);
}

/// A small deterministic generator (the history must be the same each run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

const CHECK: &str = "/api/core/rbac/permissions/check/";

/// A random history of RBAC writes by the admin; after each, the live
/// answers (a permission check per user, with `explain`, and who holds
/// an action) at that position. Asked again with `at_position` (and `at`,
/// the time of the write's last event), the answers are the same.
#[test]
fn checks_and_access_at_a_past_time_answer_what_they_answered_then() {
    let app = spawn_app();
    let users: Vec<u64> = (0..3)
        .map(|i| app.create_user(&app.key, ORG, &format!("past{i}")))
        .collect();
    let id = |body: &Value| body["id"].as_u64().expect("an id");
    let roles: Vec<u64> = [
        vec!["Ibl.Mentor/Mentors/read"],
        vec!["Ibl.Mentor/Mentors/read", "Ibl.Mentor/Mentors/write"],
        vec!["Ibl.Credentials/Credentials/list"],
    ]
    .iter()
    .enumerate()
    .map(|(i, actions)| {
        id(&app
            .post("/api/core/rbac/roles/")
            .json(
                &json!({"platform_key": ORG, "name": format!("Past role {i}"), "actions": actions}),
            )
            .send()
            .expect(201)
            .body)
    })
    .collect();
    let groups: Vec<u64> = (0..2)
        .map(|i| {
            id(&app
                .post("/api/core/rbac/groups/")
                .json(&json!({"platform_key": ORG, "name": format!("Past group {i}")}))
                .send()
                .expect(201)
                .body)
        })
        .collect();
    let resources = [
        "/platforms/1/mentors/",
        "/platforms/1/mentors/5/",
        "/platforms/1/credentials/",
    ];
    let mut rng = Lcg(11);
    let mut policies: Vec<u64> = Vec::new();
    let mut seen = Vec::new();
    for step in 0..36 {
        let pick = |rng: &mut Lcg, from: &[u64]| from[rng.below(from.len() as u64) as usize];
        let resp = match rng.below(if policies.is_empty() { 1 } else { 5 }) {
            0 => {
                let r = app
                    .post("/api/core/rbac/policies/")
                    .json(&json!({
                        "platform_key": ORG,
                        "name": format!("Past policy {step}"),
                        "role_id": pick(&mut rng, &roles),
                        "resources": [resources[rng.below(3) as usize]],
                        "users_to_add": [pick(&mut rng, &users)],
                        "groups_to_add": [pick(&mut rng, &groups)],
                    }))
                    .send()
                    .expect(201);
                policies.push(id(&r.body));
                r
            }
            n @ 1..=3 => {
                let (kind, id) = match n {
                    3 => ("policies", pick(&mut rng, &policies)),
                    _ => ("groups", pick(&mut rng, &groups)),
                };
                let user = pick(&mut rng, &users);
                let body = if n == 1 {
                    json!({"platform_key": ORG, "users_to_add": [user]})
                } else {
                    json!({"platform_key": ORG, "users_to_remove": [user]})
                };
                app.request("PATCH", &format!("/api/core/rbac/{kind}/{id}/"))
                    .json(&body)
                    .send()
                    .expect(200)
            }
            _ => {
                let doomed = policies.remove(rng.below(policies.len() as u64) as usize);
                app.delete(&format!(
                    "/api/core/rbac/policies/{doomed}/?platform_key={ORG}"
                ))
                .send()
            }
        };
        assert!(resp.status < 300, "step {step}: {}", resp.text);
        // (A write that changed nothing answers the position of what it
        // found: the state asked about is the log's head.)
        let position = app.head().max(app.position_of(&resp));
        let token = app.token(position);
        let answers: Vec<Value> = users
            .iter()
            .map(|user| {
                app.post(CHECK)
                    .header("X-Min-Position", &token)
                    .json(&json!({"platform_key": ORG, "user_id": user, "resources": resources, "explain": true}))
                    .send()
                    .expect(200)
                    .body
            })
            .collect();
        let access = app
            .get(&format!(
                "/api/core/rbac/access/?platform_key={ORG}&resource=/platforms/1/mentors/5/&action=Ibl.Mentor/Mentors/read"
            ))
            .header("X-Min-Position", &token)
            .send()
            .expect(200)
            .body;
        seen.push((position, answers, access));
    }
    let events = app.events();
    let time_of = |position: u64| {
        let i = events
            .iter()
            .position(|e| e.position == position)
            .expect("an event");
        let next_later = events
            .get(i + 1)
            .is_none_or(|n| n.recorded_at > events[i].recorded_at);
        next_later.then(|| {
            events[i]
                .recorded_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        })
    };
    let mut differ = 0;
    for (n, (position, answers, access)) in seen.iter().enumerate() {
        for (user, live) in users.iter().zip(answers) {
            let then = app
                .post(CHECK)
                .json(
                    &json!({"platform_key": ORG, "user_id": user, "resources": resources,
                              "explain": true, "at_position": position}),
                )
                .send()
                .expect(200)
                .body;
            assert_eq!(&then, live, "user {user} at position {position}");
            if let Some(time) = time_of(*position) {
                let by_time = app
                    .post(CHECK)
                    .json(
                        &json!({"platform_key": ORG, "user_id": user, "resources": resources,
                                  "explain": true, "at": time}),
                    )
                    .send()
                    .expect(200)
                    .body;
                assert_eq!(&by_time, live, "user {user} at {time}");
            }
        }
        let then = app
            .get(&format!(
                "/api/audit/orgs/{ORG}/access/?resource=/platforms/1/mentors/5/&action=Ibl.Mentor/Mentors/read&at_position={position}"
            ))
            .send()
            .expect(200)
            .body;
        assert_eq!(&then, access, "who had access at {position}");
        if n > 0 && seen[n - 1].1 != *answers {
            differ += 1;
        }
    }
    assert!(
        differ >= 5,
        "the history changed the answers only {differ} times"
    );
    // Naming a time before any of it, or a position past the log, or both.
    app.post(CHECK)
        .json(&json!({"platform_key": ORG, "resources": resources, "at": "2000-01-01T00:00:00Z"}))
        .send()
        .expect(200);
    for body in [
        json!({"platform_key": ORG, "resources": resources, "at_position": 1u64 << 40}),
        json!({"platform_key": ORG, "resources": resources, "at": "yesterday"}),
        json!({"platform_key": ORG, "resources": resources, "at": "2026-01-01T00:00:00Z", "at_position": 1}),
    ] {
        app.post(CHECK).json(&body).send().expect(400);
    }
}

/// An entity's state at a past position is what the API answered for it
/// then, in the same shape; before it existed, 404.
#[test]
fn an_entitys_state_at_a_past_time_is_what_the_api_answered_then() {
    let app = spawn_app();
    let before = app.head();
    let id = app.create_credential_with(&json!({"name": "Old name", "description": "Old text"}));
    let creds = |tail: &str| format!("/api/credentials/orgs/{ORG}/users/{ADMIN}/{tail}");
    let first = app.get(&creds(&id)).send().expect(200).body;
    let created = app.head();
    app.put(&creds(&id))
        .json(&json!({"name": "New name"}))
        .send()
        .expect(200);
    let second = app.get(&creds(&id)).send().expect(200).body;
    let updated = app.head();
    let state = |kind: &str, id: &str, position: u64| {
        app.get(&format!(
            "/api/audit/orgs/{ORG}/{kind}/{id}/?at_position={position}"
        ))
        .header("X-Min-Position", &app.token(updated))
        .send()
    };
    assert_eq!(state("credentials", &id, created).expect(200).body, first);
    assert_eq!(state("credentials", &id, updated).expect(200).body, second);
    state("credentials", &id, before).expect_client_error(404);

    // A group: its members then.
    let group = app
        .post("/api/core/rbac/groups/")
        .json(&json!({"platform_key": ORG, "name": "Then"}))
        .send()
        .expect(201)
        .body["id"]
        .as_u64()
        .expect("an id")
        .to_string();
    let read_group = || {
        app.get(&format!(
            "/api/core/rbac/groups/{group}/?platform_key={ORG}"
        ))
        .send()
        .expect(200)
        .body
    };
    let empty = read_group();
    let at_empty = app.head();
    app.request("PATCH", &format!("/api/core/rbac/groups/{group}/"))
        .json(&json!({"platform_key": ORG, "users_to_add": [app.admin_id]}))
        .send()
        .expect(200);
    let full = read_group();
    let at_full = app.head();
    assert_ne!(empty, full);
    let now = app.token(at_full);
    let group_at = |position: u64| {
        app.get(&format!(
            "/api/audit/orgs/{ORG}/groups/{group}/?at_position={position}"
        ))
        .header("X-Min-Position", &now)
        .send()
        .expect(200)
        .body
    };
    assert_eq!(group_at(at_empty), empty);
    assert_eq!(group_at(at_full), full);
    // With neither at nor at_position it is now: the last write, without
    // X-Min-Position, though the audit log's projector may not have read
    // it yet when the request arrives.
    app.request("PATCH", &format!("/api/core/rbac/groups/{group}/"))
        .json(&json!({"platform_key": ORG, "name": "Renamed then"}))
        .send()
        .expect(200);
    let renamed = read_group();
    let now_state = app
        .get(&format!("/api/audit/orgs/{ORG}/groups/{group}/"))
        .send()
        .expect(200)
        .body;
    assert_eq!(now_state, renamed);
    // An assertion: valid, then revoked, each with its credential then.
    let assertion = app.issue(&id, "then@acme.test")["entityId"]
        .as_str()
        .expect("an id")
        .to_owned();
    let valid = app.assertion(&assertion).expect(200).body;
    let at_valid = app.head();
    app.revoke(&assertion, "then").expect(200);
    let revoked = app.assertion(&assertion).expect(200).body;
    let at_revoked = app.head();
    assert_ne!(valid, revoked);
    let now = app.token(at_revoked);
    let at = |kind: &str, id: &str, position: u64| {
        app.get(&format!(
            "/api/audit/orgs/{ORG}/{kind}/{id}/?at_position={position}"
        ))
        .header("X-Min-Position", &now)
        .send()
    };
    assert_eq!(
        at("assertions", &assertion, at_valid).expect(200).body,
        valid
    );
    assert_eq!(
        at("assertions", &assertion, at_revoked).expect(200).body,
        revoked
    );
    at("assertions", &assertion, created).expect_client_error(404);

    // An API key: as the key list showed it while it was active; 404
    // before and after.
    let tokens = "/api/core/platform/api-tokens/";
    let before_key = app.head();
    app.post(tokens)
        .json(&json!({"platform_key": ORG, "name": "temporary"}))
        .send()
        .expect(201);
    let listed = app
        .get(&format!("{tokens}?platform_key={ORG}"))
        .send()
        .expect(200)
        .body
        .as_array()
        .expect("a list")
        .iter()
        .find(|k| k["name"] == "temporary")
        .expect("the new key")
        .clone();
    let at_active = app.head();
    app.delete(&format!("{tokens}temporary?platform_key={ORG}"))
        .send()
        .expect(204);
    let after_key = app.head();
    let now = app.token(after_key);
    let key_at = |position: u64| {
        app.get(&format!(
            "/api/audit/orgs/{ORG}/api-keys/temporary/?at_position={position}"
        ))
        .header("X-Min-Position", &now)
        .send()
    };
    assert_eq!(key_at(at_active).expect(200).body, listed);
    key_at(before_key).expect_client_error(404);
    key_at(after_key).expect_client_error(404);

    // Another platform's auditor cannot ask; an unknown kind is a 404.
    app.get(&format!("/api/audit/orgs/{ORG}/groups/{group}/"))
        .key(&app.other_key)
        .send()
        .expect_client_error(403);
    app.get(&format!("/api/audit/orgs/{ORG}/widgets/1/"))
        .send()
        .expect_client_error(404);
}

/// Schema 2 of an issue records the credential's issuer at that moment;
/// the history shows it as stored.
#[test]
fn an_issue_records_its_credentials_issuer_then() {
    let app = spawn_app();
    let creds = |tail: &str| format!("/api/credentials/orgs/{ORG}/users/{ADMIN}/{tail}");
    let issuer = app
        .post(&creds("issuers/"))
        .json(&json!({"name": "Acme Academy"}))
        .send()
        .expect(200)
        .body["entityId"]
        .as_str()
        .expect("an id")
        .to_owned();
    let credential = app.create_credential_with(&json!({"name": "Issued", "issuer": issuer}));
    let plain = app.create_credential("No issuer");
    app.issue(&credential, "one@acme.test");
    app.issue(&plain, "two@acme.test");
    let issues: Vec<_> = app
        .events()
        .into_iter()
        .filter(|e| e.event_type == "AssertionIssued")
        .collect();
    assert_eq!(issues.len(), 2);
    assert!(issues.iter().all(|e| e.schema_version == 2));
    assert_eq!(issues[0].payload["issuer_id"], issuer.as_str());
    assert_eq!(issues[1].payload["issuer_id"], Value::Null);
    assert!(issues[1]
        .payload
        .as_object()
        .expect("an object")
        .contains_key("issuer_id"));
}

/// `verify/`, for a platform's auditors: the signed checkpoint and each of
/// the platform's recorded events recomputed from the store, a page at a
/// time; an event edited, or deleted, behind the server's back is named.
#[test]
fn a_platforms_auditor_verifies_its_events_against_the_signed_tree() {
    let app = spawn_app_with(|s| s.checkpoint_secs = 1);
    let credential = app.create_credential("Verified");
    for i in 0..5 {
        app.issue(&credential, &format!("v{i}@acme.test"));
    }
    wait_for_checkpoint(&app);
    let ours: Vec<ibl_events::RecordedEvent> = app
        .events()
        .into_iter()
        .filter(|e| e.platform() == Some(ORG) && e.stream.starts_with("assertion-"))
        .collect();
    let verify = format!("/api/audit/orgs/{ORG}/verify/");
    let whole = app.get(&verify).send().expect(200).body;
    assert_eq!(whole["verified"], true, "{whole}");
    assert_eq!(whole["checkpoint"]["valid"], true, "{whole}");
    assert!(
        whole["problem"].is_null() && whole["next"].is_null(),
        "{whole}"
    );
    let checked = whole["checked"].as_u64().expect("a count");
    assert!(checked >= ours.len() as u64, "{whole}");

    // A page at a time: the pages cover the same events.
    let mut url = format!("{verify}?page_size=3");
    let mut pages = 0;
    let mut total = 0;
    loop {
        let page = app.get(&url).send().expect(200).body;
        assert_eq!(page["verified"], true, "{page}");
        total += page["checked"].as_u64().expect("a count");
        pages += 1;
        match page["next"].as_str() {
            Some(next) => url = next.strip_prefix(&app.base).expect("ours").to_owned(),
            None => break,
        }
    }
    assert_eq!(total, checked);
    assert!(pages >= 3, "{pages} pages");

    // Another platform's key, or a page of nothing, or too large.
    app.get(&verify)
        .key(&app.other_key)
        .send()
        .expect_client_error(403);
    app.get(&format!("{verify}?page_size=0"))
        .send()
        .expect_client_error(400);
    app.get(&format!("{verify}?page_size=100001"))
        .send()
        .expect_client_error(400);

    // One of its events edited in the store: named, with its position.
    let (edited, gone) = (&ours[1], &ours[3]);
    edit(
        app.dir.path(),
        &format!(
            "UPDATE events SET payload = json_set(payload, '$.narrative', 'forged') WHERE position = {}",
            edited.position
        ),
    );
    let found = app.get(&verify).send().expect(200).body;
    assert_eq!(found["verified"], false, "{found}");
    assert_eq!(found["problem"]["kind"], "altered", "{found}");
    assert_eq!(found["problem"]["position"], edited.position, "{found}");
    // Checked from after it, the next one found is the deleted one.
    edit(
        app.dir.path(),
        &format!("DELETE FROM events WHERE position = {}", gone.position),
    );
    let found = app
        .get(&format!("{verify}?after={}", edited.position))
        .send()
        .expect(200)
        .body;
    assert_eq!(found["problem"]["kind"], "deleted", "{found}");
    assert_eq!(found["problem"]["position"], gone.position, "{found}");
    assert!(
        found["problem"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&gone.stream)),
        "{found}"
    );
}
