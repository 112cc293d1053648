//! `Idempotency-Key`: a retry answers as the first request did and appends
//! nothing; the same key with another request is a 422.

use serde_json::{json, Value};

use crate::helpers::{creds, entity_ids, spawn_app, OTHER};

#[test]
fn retrying_an_issue_with_the_same_key_and_body_answers_the_same_assertion_and_appends_nothing() {
    let app = spawn_app();
    let id = app.create_credential("Retry");
    let body = json!({"recipient": {"email": "o@x.test"}, "narrative": "once"});
    let path = creds(&format!("{id}/assertions/"));
    let first = app
        .post(&path)
        .idempotency_key("issue-1")
        .json(&body)
        .send()
        .expect(200);
    let head = app.head();
    let events = app.events().len();

    for _ in 0..3 {
        let again = app
            .post(&path)
            .idempotency_key("issue-1")
            .json(&body)
            .send()
            .expect(200);
        assert_eq!(again.body["entityId"], first.body["entityId"]);
        assert_eq!(again.body["issuedOn"], first.body["issuedOn"]);
        assert_eq!(again.position(), first.position());
    }
    assert_eq!(app.head(), head, "a retry appended events");
    assert_eq!(app.events().len(), events);
    assert_eq!(app.assertions("")["count"], 1);

    // Without the key the same body issues a new assertion.
    let fresh = app.post(&path).json(&body).send().expect(200);
    assert_ne!(fresh.body["entityId"], first.body["entityId"]);
    assert_eq!(app.assertions("")["count"], 2);
}

#[test]
fn retrying_a_credential_creation_with_the_same_key_creates_one_credential() {
    let app = spawn_app();
    let body = json!({"name": "Once only"});
    let first = app
        .post(&creds(""))
        .idempotency_key("cred-1")
        .json(&body)
        .send()
        .expect(200);
    let head = app.head();
    let again = app
        .post(&creds(""))
        .idempotency_key("cred-1")
        .json(&body)
        .send()
        .expect(200);
    assert_eq!(
        again.body["result"]["credential_id"],
        first.body["result"]["credential_id"]
    );
    assert_eq!(again.body["status"]["description"], "Created");
    assert_eq!(app.head(), head);
    assert_eq!(app.credentials("")["count"], 1);
}

#[test]
fn the_same_key_with_another_body_is_a_422_that_changes_nothing() {
    let app = spawn_app();
    let id = app.create_credential("Mismatch");
    let path = creds(&format!("{id}/assertions/"));
    let first = app
        .post(&path)
        .idempotency_key("k-2")
        .json(&json!({"recipient": {"email": "p@x.test"}}))
        .send()
        .expect(200);
    let head = app.head();
    let resp = app
        .post(&path)
        .idempotency_key("k-2")
        .json(&json!({"recipient": {"email": "q@x.test"}}))
        .send()
        .expect_client_error(422);
    assert_eq!(resp.body["code"], "idempotency_key_reused");
    // The same key on another route is another request too.
    app.post(&creds(""))
        .idempotency_key("k-2")
        .json(&json!({"name": "elsewhere"}))
        .send()
        .expect_client_error(422);
    assert_eq!(app.head(), head);
    let list = app.assertions("");
    assert_eq!(list["count"], 1);
    assert_eq!(list["data"][0]["entityId"], first.body["entityId"]);
    assert_eq!(app.credentials("")["count"], 1);
}

#[test]
fn retrying_a_bulk_issue_with_the_same_key_answers_the_same_assertions() {
    let app = spawn_app();
    let id = app.create_credential("Bulk retry");
    let body = json!({"recipients": [
        {"email": "r1@x.test"}, {"email": "r2@x.test"}, {"email": "r3@x.test"}, {"email": "bad"}
    ]});
    let path = creds(&format!("{id}/assertions/bulk/"));
    let first = app
        .post(&path)
        .idempotency_key("bulk-1")
        .json(&body)
        .send()
        .expect(200);
    let issued = entity_ids(&first.body["issued"]);
    assert_eq!(issued.len(), 3);
    assert_eq!(first.body["skipped"].as_array().unwrap().len(), 1);
    let head = app.head();

    let again = app
        .post(&path)
        .idempotency_key("bulk-1")
        .json(&body)
        .send()
        .expect(200);
    assert_eq!(entity_ids(&again.body["issued"]), issued);
    assert_eq!(again.body["skipped"], first.body["skipped"]);
    assert_eq!(app.head(), head, "the retry appended events");
    assert_eq!(app.assertions("")["count"], 3);

    // A new key: the recipients now hold the credential.
    let later = app
        .post(&path)
        .idempotency_key("bulk-2")
        .json(&body)
        .send()
        .expect(200);
    assert_eq!(later.body["issued"], json!([]));
    assert_eq!(later.body["skipped"].as_array().unwrap().len(), 4);
}

#[test]
fn idempotency_keys_belong_to_one_platform() {
    let app = spawn_app();
    let body = json!({"name": "Shared key"});
    let acme = app
        .post(&creds(""))
        .idempotency_key("shared")
        .json(&body)
        .send()
        .expect(200);
    let other = app
        .post(&format!("/api/credentials/orgs/{OTHER}/users/admin/"))
        .key(&app.other_key)
        .idempotency_key("shared")
        .json(&body)
        .send()
        .expect(200);
    assert_ne!(
        acme.body["result"]["credential_id"],
        other.body["result"]["credential_id"]
    );
    assert_eq!(app.credentials("")["count"], 1);
}

#[test]
fn a_blank_idempotency_key_is_a_400() {
    let app = spawn_app();
    let head = app.head();
    app.post(&creds(""))
        .idempotency_key("   ")
        .json(&json!({"name": "blank key"}))
        .send()
        .expect_client_error(400);
    assert_eq!(app.head(), head);
}

/// RBAC creates under an `Idempotency-Key`: a retry, even one racing the
/// first request, answers the same entity (same integer id) and the store
/// holds it once.
#[test]
fn retrying_rbac_creates_with_the_same_key_makes_one_entity() {
    let app = spawn_app();
    let role = app
        .post("/api/core/rbac/roles/")
        .json(&json!({"platform_key": crate::helpers::ORG, "name": "Base", "actions": ["Ibl.Mentor/Mentors/read"]}))
        .send()
        .expect(201)
        .body["id"]
        .as_u64()
        .unwrap();
    let creates = [
        (
            "/api/core/rbac/roles/",
            json!({"platform_key": crate::helpers::ORG, "name": "Once", "actions": []}),
        ),
        (
            "/api/core/rbac/groups/",
            json!({"platform_key": crate::helpers::ORG, "name": "Once", "unique_id": "once"}),
        ),
        (
            "/api/core/rbac/policies/",
            json!({"platform_key": crate::helpers::ORG, "name": "Once", "role_id": role, "resources": ["/platforms/1/"]}),
        ),
    ];
    for (n, (path, body)) in creates.iter().enumerate() {
        // Sequential: the retry appends nothing.
        let key = format!("seq-{n}");
        let first = app
            .post(path)
            .idempotency_key(&key)
            .json(body)
            .send()
            .expect(201);
        let head = app.head();
        let again = app
            .post(path)
            .idempotency_key(&key)
            .json(body)
            .send()
            .expect(201);
        assert_eq!(again.body["id"], first.body["id"], "{path}");
        assert_eq!(app.head(), head, "{path}: the retry appended events");
        let mut other = body.clone();
        other["name"] = json!("Other");
        app.post(path)
            .idempotency_key(&key)
            .json(&other)
            .send()
            .expect_client_error(422);
        // Racing: four at once under a new key.
        let key = format!("race-{n}");
        let mut body = body.clone();
        body["name"] = json!("Raced");
        body["unique_id"] = json!("raced");
        let ids: Vec<Value> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let (key, body) = (&key, &body);
                    let app = &app;
                    s.spawn(move || {
                        app.post(path)
                            .idempotency_key(key)
                            .json(body)
                            .send()
                            .expect(201)
                            .body["id"]
                            .clone()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            ids.iter().all(|id| *id == ids[0] && id.is_u64()),
            "{path}: {ids:?}"
        );
        let listed = app
            .get(&format!(
                "{path}?platform_key={}&name=Raced",
                crate::helpers::ORG
            ))
            .send()
            .expect(200)
            .body;
        let raced = listed["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["name"] == "Raced")
            .count();
        assert_eq!(raced, 1, "{path}: {listed}");
    }
}

/// 16 requests at once under one key, each with its own body: the key is
/// bound to one of them; exactly one succeeds and the other 15 are 422.
#[test]
fn racing_requests_with_one_key_and_different_bodies_get_one_success_and_422s() {
    let app = spawn_app();
    let credential = app.create_credential("Raced");
    type Body = Box<dyn Fn(usize) -> Value + Sync>;
    let routes: [(String, Body, u16); 3] = [
        (
            creds(""),
            Box::new(|i| json!({"name": format!("Badge {i}")})),
            200,
        ),
        (
            creds(&format!("{credential}/assertions/")),
            Box::new(|i| json!({"recipient": {"email": format!("r{i}@x.test")}})),
            200,
        ),
        (
            "/api/core/rbac/roles/".to_owned(),
            Box::new(|i| json!({"platform_key": crate::helpers::ORG, "name": format!("Role {i}")})),
            201,
        ),
    ];
    for (n, (path, body, created)) in routes.iter().enumerate() {
        let key = format!("contested-{n}");
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let (app, key, path, body) = (&app, &key, path, body);
                    s.spawn(move || {
                        app.post(path)
                            .idempotency_key(key)
                            .json(&body(i))
                            .send()
                            .status
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won = statuses.iter().filter(|s| **s == *created).count();
        let refused = statuses.iter().filter(|s| **s == 422).count();
        assert_eq!((won, refused), (1, 15), "{path}: {statuses:?}");
    }
}

/// Entity ids made under an `Idempotency-Key` come from a random seed the
/// key was claimed with: computing one from the key (as a derivation in the
/// source would) finds nothing on the public route.
#[test]
fn ids_made_under_a_key_cannot_be_computed_from_it() {
    let app = spawn_app();
    let credential = app.create_credential("Private");
    let issued = app
        .post(&creds(&format!("{credential}/assertions/")))
        .idempotency_key("known-key")
        .json(&json!({"recipient": {"email": "p@x.test"}}))
        .send()
        .expect(200)
        .body;
    let id = issued["entityId"].as_str().unwrap();
    let computed = ibl_command_service::handler::derived_id(&format!(
        "{}\nknown-key\nassertion",
        crate::helpers::ORG
    ))
    .to_string();
    assert_ne!(id, computed);
    app.get(&format!("/api/credentials/public/assertions/{computed}/"))
        .anonymous()
        .send()
        .expect_client_error(404);
    // A retry still answers the same assertion.
    let again = app
        .post(&creds(&format!("{credential}/assertions/")))
        .idempotency_key("known-key")
        .json(&json!({"recipient": {"email": "p@x.test"}}))
        .send()
        .expect(200)
        .body;
    assert_eq!(again["entityId"], id);
}
