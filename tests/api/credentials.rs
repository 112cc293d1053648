//! Credentials, issuing, revocation, verification and the lists, as a client
//! sees them.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{creds, emails, entity_ids, spawn_app, TestApp, ADMIN, ADMIN_EMAIL, ORG};

fn is_rfc3339_utc(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

// ---------------------------------------------------------------- CRUD

#[test]
fn a_created_credential_is_answered_in_the_seed_envelope_and_read_back_as_is() {
    let app = spawn_app();
    let body = json!({
        "name": "Rust Basics",
        "description": "Ownership and borrowing",
        "credential_type": "badge",
        "html_template": "<p>{{name}}</p>",
        "css_template": "p { color: red }",
        "icon_image": "https://img.test/icon.png",
        "background_image": "https://img.test/bg.png",
        "thumbnail_image": "https://img.test/thumb.png",
        "criteria_url": "https://acme.test/criteria",
        "criteria_text": "Finish the course",
        "issuing_signal": "course_completed",
        "course": "course-v1:acme+rust+2024",
        "program": "program-systems",
    });
    let created = app.post_credential(&body);
    assert_eq!(
        created.body["status"],
        json!({"success": true, "description": "Created"})
    );
    let c = &created.body["result"];
    let id = c["credential_id"].as_str().expect("credential_id");
    assert!(!id.is_empty());
    for field in [
        "name",
        "description",
        "credential_type",
        "html_template",
        "css_template",
        "icon_image",
        "background_image",
        "thumbnail_image",
        "criteria_url",
        "criteria_text",
        "issuing_signal",
        "course",
        "program",
    ] {
        assert_eq!(c[field], body[field], "field {field} of {c}");
    }
    assert_eq!(c["revoked"], json!(false));
    assert_eq!(c["issuer"], Value::Null);
    assert_eq!(c["expires_at"], Value::Null);
    assert!(
        is_rfc3339_utc(&c["issued_on"]),
        "issued_on: {}",
        c["issued_on"]
    );
    assert!(
        c["credential_url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&app.base) && u.ends_with(id)),
        "credential_url: {}",
        c["credential_url"]
    );

    let read = app.credential(id).expect(200);
    assert_eq!(&read.body, c, "GET answers the credential object itself");
}

#[test]
fn updating_a_credential_changes_only_the_fields_sent() {
    let app = spawn_app();
    let id = app.create_credential_with(
        &json!({"name": "Old name", "description": "Old text", "course": "c1"}),
    );
    let updated = app
        .put(&creds(&id))
        .json(&json!({"description": "New text"}))
        .send()
        .expect(200);
    assert_eq!(
        updated.body["status"],
        json!({"success": true, "description": "Updated"})
    );
    assert_eq!(updated.body["result"]["description"], "New text");
    assert_eq!(updated.body["result"]["name"], "Old name");
    assert_eq!(updated.body["result"]["course"], "c1");

    let read = app.credential(&id).expect(200).body;
    assert_eq!(read["description"], "New text");
    assert_eq!(read["name"], "Old name");
    assert_eq!(read["course"], "c1");
}

#[test]
fn a_deleted_credential_answers_404_and_leaves_the_list() {
    let app = spawn_app();
    let keep = app.create_credential("Keep");
    let gone = app.create_credential("Gone");
    assert_eq!(app.credentials("")["count"], 2);

    let deleted = app.delete(&creds(&gone)).send().expect(204);
    assert!(deleted.text.is_empty());
    app.credential(&gone).expect_client_error(404);
    let list = app.credentials("");
    assert_eq!(list["count"], 1);
    assert_eq!(list["data"][0]["credential_id"], keep.as_str());

    app.delete(&creds(&gone)).send().expect_client_error(404);
    app.put(&creds(&gone))
        .json(&json!({"name": "Back"}))
        .send()
        .expect_client_error(404);
}

// ---------------------------------------------------------------- lists

#[test]
fn an_empty_credentials_list_has_one_page_with_empty_links_and_no_second_page() {
    let app = spawn_app();
    let list = app.credentials("");
    assert_eq!(list["count"], 0);
    assert_eq!(list["num_pages"], 1);
    assert_eq!(list["page_number"], 1);
    assert_eq!(list["max_page_size"], 100);
    assert_eq!(list["next"], "");
    assert_eq!(list["previous"], "");
    assert_eq!(list["data"], json!([]));
    app.get(&format!("{}?page=2", creds("")))
        .send()
        .expect_client_error(404);
}

#[test]
fn the_credentials_list_pages_with_links_empty_at_the_ends_and_caps_page_size_at_100() {
    let app = spawn_app();
    let mut created = Vec::new();
    for i in 0..101 {
        created.push(app.create_credential(&format!("Credential {i:03}")));
    }

    let first = app.credentials("page_size=40");
    assert_eq!(first["count"], 101);
    assert_eq!(first["num_pages"], 3);
    assert_eq!(first["page_number"], 1);
    assert_eq!(first["max_page_size"], 100);
    assert_eq!(first["previous"], "");
    let next = first["next"].as_str().expect("next is a string");
    assert!(
        next.starts_with(&app.base) && next.contains("page=2") && next.contains("page_size=40"),
        "next: {next}"
    );
    assert_eq!(first["data"].as_array().unwrap().len(), 40);

    let middle = app.credentials("page_size=40&page=2");
    assert_eq!(middle["page_number"], 2);
    assert!(middle["next"].as_str().unwrap().contains("page=3"));
    assert!(middle["previous"].as_str().unwrap().contains("page=1"));

    let last = app.credentials("page_size=40&page=3");
    assert_eq!(last["next"], "");
    assert!(last["previous"].as_str().unwrap().contains("page=2"));
    assert_eq!(last["data"].as_array().unwrap().len(), 21);

    let mut seen = HashSet::new();
    for page in [&first, &middle, &last] {
        for c in page["data"].as_array().unwrap() {
            assert!(seen.insert(c["credential_id"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(seen, created.iter().cloned().collect::<HashSet<_>>());

    let beyond = app
        .get(&format!("{}?page_size=40&page=4", creds("")))
        .send()
        .expect_client_error(404);
    assert_eq!(beyond.body["code"], "not_found");

    let capped = app.credentials("page_size=1000");
    assert_eq!(capped["data"].as_array().unwrap().len(), 100);
    assert_eq!(capped["num_pages"], 2);

    let default = app.credentials("");
    assert_eq!(default["data"].as_array().unwrap().len(), 10);
    assert_eq!(default["num_pages"], 11);

    let zero = app
        .get(&format!("{}?page_size=0", creds("")))
        .send()
        .expect_client_error(400);
    assert!(zero.body.get("page_size").is_some(), "{}", zero.text);
}

#[test]
fn search_matches_name_or_description_case_insensitively() {
    let app = spawn_app();
    let by_name =
        app.create_credential_with(&json!({"name": "Rust Basics", "description": "Systems"}));
    let by_text = app.create_credential_with(
        &json!({"name": "Advanced", "description": "For RUST programmers"}),
    );
    let neither = app.create_credential_with(&json!({"name": "Python", "description": "Snakes"}));

    let ids = |q: &str| -> HashSet<String> {
        app.credentials(q)["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["credential_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let rust = ids("search=rUsT");
    assert_eq!(
        rust,
        [by_name.clone(), by_text.clone()].into_iter().collect()
    );
    assert_eq!(app.credentials("search=rust")["count"], 2);
    assert_eq!(ids("search=SNAKES"), [neither].into_iter().collect());
    assert_eq!(ids("search=basics"), [by_name].into_iter().collect());
    assert_eq!(app.credentials("search=haskell")["count"], 0);
}

#[test]
fn course_and_program_filters_select_the_credentials_of_that_course_or_program() {
    let app = spawn_app();
    let a =
        app.create_credential_with(&json!({"name": "A", "course": "course-a", "program": "p1"}));
    let b =
        app.create_credential_with(&json!({"name": "B", "course": "course-b", "program": "p1"}));
    let _c = app.create_credential_with(&json!({"name": "C"}));

    let course_a = app.credentials("course=course-a");
    assert_eq!(course_a["count"], 1);
    assert_eq!(course_a["data"][0]["credential_id"], a.as_str());

    let p1 = app.credentials("program=p1");
    assert_eq!(p1["count"], 2);
    let both = app.credentials("course=course-b&program=p1");
    assert_eq!(both["count"], 1);
    assert_eq!(both["data"][0]["credential_id"], b.as_str());
    assert_eq!(app.credentials("course=course-b&program=p2")["count"], 0);
    assert_eq!(app.credentials("")["count"], 3);
}

#[test]
fn paths_are_served_with_and_without_the_trailing_slash() {
    let app = spawn_app();
    let list = format!("/api/credentials/orgs/{ORG}/users/{ADMIN}");
    let without = app
        .post(&list)
        .json(&json!({"name": "No slash"}))
        .send()
        .expect(200);
    let id = without.body["result"]["credential_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(&format!("{list}/"))
        .json(&json!({"name": "Slash"}))
        .send()
        .expect(200);

    for path in [list.clone(), format!("{list}/")] {
        assert_eq!(app.get(&path).send().expect(200).body["result"]["count"], 2);
    }
    for path in [format!("{list}/{id}"), format!("{list}/{id}/")] {
        assert_eq!(app.get(&path).send().expect(200).body["name"], "No slash");
    }
    let issued = app
        .post(&format!("{list}/{id}/assertions"))
        .json(&json!({"recipient": {"email": "slash@x.test"}}))
        .send()
        .expect(200);
    let assertion = issued.body["entityId"].as_str().unwrap();
    for path in [
        format!("{list}/assertions/{assertion}"),
        format!("{list}/assertions/{assertion}/"),
        format!("/api/credentials/public/assertions/{assertion}"),
    ] {
        assert_eq!(
            app.get(&path).send().expect(200).body["entityId"],
            assertion
        );
    }
    assert_eq!(
        app.get(&format!("{list}/{id}/assertions"))
            .send()
            .expect(200)
            .body["count"],
        1
    );
}

#[test]
fn the_acting_user_may_be_named_by_integer_id_or_by_username() {
    let app = spawn_app();
    let id = app.create_credential("Either way");
    let by_id = format!("/api/credentials/orgs/{ORG}/users/{}/", app.admin_id);
    let list = app.get(&by_id).send().expect(200).body;
    assert_eq!(list["result"]["count"], 1);
    assert_eq!(
        app.get(&format!("{by_id}{id}")).send().expect(200).body["name"],
        "Either way"
    );

    // With no recipient in the body, the user of the path receives it.
    for user in [app.admin_id.to_string(), ADMIN.to_owned()] {
        let issued = app
            .post(&format!(
                "/api/credentials/orgs/{ORG}/users/{user}/{id}/assertions/"
            ))
            .json(&json!({"entityId": "", "issuedOn": "", "revocationReason": "", "expires": ""}))
            .send()
            .expect(200)
            .body;
        assert_eq!(issued["recipient"]["username"], ADMIN, "user {user}");
        assert_eq!(issued["recipient"]["email"], ADMIN_EMAIL, "user {user}");
    }
}

// ---------------------------------------------------------------- issuing

#[test]
fn an_issued_assertion_has_every_field_the_client_model_requires() {
    let app = spawn_app();
    let id = app
        .create_credential_with(&json!({"name": "Badge", "course": "c-101", "description": "d"}));
    let a = app
        .issue_with(
            &id,
            &json!({
                "recipient": {"email": "ann@x.test", "username": "ann", "name": "Ann"},
                "narrative": "Did it",
                "metadata": {"grade": "A"},
                "entityId": "client-sent-and-ignored",
            }),
        )
        .expect(200)
        .body;
    let entity_id = a["entityId"].as_str().expect("entityId");
    assert_ne!(entity_id, "client-sent-and-ignored");
    assert!(is_rfc3339_utc(&a["issuedOn"]));
    assert_eq!(
        a["recipient"],
        json!({"email": "ann@x.test", "username": "ann", "name": "Ann"})
    );
    assert_eq!(a["credentialDetails"]["entityId"], id.as_str());
    assert_eq!(a["credentialDetails"]["name"], "Badge");
    assert!(a["credentialDetails"]
        .as_object()
        .unwrap()
        .values()
        .all(Value::is_string));
    assert_eq!(a["course"], json!({"id": "c-101"}));
    assert_eq!(a["program"], json!({}));
    assert_eq!(a["narrative"], "Did it");
    assert_eq!(a["metadata"], json!({"grade": "A"}));
    assert_eq!(a["revoked"], false);
    assert_eq!(a["revocationReason"], "");
    assert_eq!(a["expires"], "");
    assert_eq!(a["acceptance"], "Unaccepted");

    let read = app.assertion(entity_id).expect(200).body;
    assert_eq!(read["entityId"], entity_id);
    assert_eq!(read["recipient"]["email"], "ann@x.test");
}

#[test]
fn bulk_issue_reports_issued_and_skipped_recipients_with_their_reasons() {
    let app = spawn_app();
    let id = app.create_credential("Bulk");
    let first = app
        .bulk(
            &id,
            &json!({"recipients": [
                {"email": "alice@x.test"},
                {"email": "bob@x.test", "name": "Bob"},
                {"email": "ALICE@x.test"},
                {"email": "not-an-email"},
            ]}),
        )
        .expect(200)
        .body;
    assert_eq!(emails(&first["issued"]), ["alice@x.test", "bob@x.test"]);
    let skipped = first["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2, "{first}");
    assert_eq!(skipped[0]["recipient"]["email"], "ALICE@x.test");
    assert_eq!(skipped[0]["reason"], "duplicate");
    assert_eq!(skipped[1]["recipient"]["email"], "not-an-email");
    let reason = skipped[1]["reason"].as_str().unwrap();
    assert!(reason.starts_with("invalid recipient: email"), "{reason}");

    // Holders of a valid assertion are skipped on a later request.
    let second = app
        .bulk(
            &id,
            &json!({"recipients": [{"email": "alice@x.test"}, {"email": "carol@x.test"}]}),
        )
        .expect(200)
        .body;
    assert_eq!(emails(&second["issued"]), ["carol@x.test"]);
    assert_eq!(second["skipped"][0]["recipient"]["email"], "alice@x.test");
    assert_eq!(second["skipped"][0]["reason"], "duplicate");

    let listed = app
        .get(&format!(
            "{}?page_size=100",
            creds(&format!("{id}/assertions/"))
        ))
        .send()
        .expect(200)
        .body;
    assert_eq!(listed["count"], 3);
    assert_eq!(
        emails(&listed["data"]),
        ["alice@x.test", "bob@x.test", "carol@x.test"]
    );
}

#[test]
fn bulk_issue_with_duplicates_allowed_issues_again_to_holders() {
    let app = spawn_app();
    let id = app.create_credential("Again");
    let first = app.issue(&id, "dana@x.test");
    let again = app
        .bulk(
            &id,
            &json!({"recipients": [{"email": "dana@x.test"}], "duplicates": "allow"}),
        )
        .expect(200)
        .body;
    assert_eq!(again["skipped"], json!([]));
    let ids = entity_ids(&again["issued"]);
    assert_eq!(ids.len(), 1);
    assert_ne!(ids[0], first["entityId"].as_str().unwrap());
    assert_eq!(app.assertions("")["count"], 2);

    app.bulk(
        &id,
        &json!({"recipients": [{"email": "e@x.test"}], "duplicates": "sometimes"}),
    )
    .expect_client_error(400);
    app.bulk(&id, &json!({"recipients": []}))
        .expect_client_error(400);
}

#[test]
fn revoking_needs_a_reason_and_a_second_revocation_conflicts() {
    let app = spawn_app();
    let id = app.create_credential("Revocable");
    let a = app.issue(&id, "eve@x.test");
    let aid = a["entityId"].as_str().unwrap();

    let missing = app
        .put(&creds(&format!("assertions/{aid}")))
        .json(&json!({"revoked": true}))
        .send()
        .expect_client_error(400);
    assert!(
        missing.body.get("revocationReason").is_some(),
        "{}",
        missing.text
    );
    app.revoke(aid, "   ").expect_client_error(400);
    assert_eq!(app.assertion(aid).expect(200).body["revoked"], false);

    let revoked = app.revoke(aid, "Cheating").expect(200).body;
    assert_eq!(revoked["revoked"], true);
    assert_eq!(revoked["revocationReason"], "Cheating");
    let read = app.assertion(aid).expect(200).body;
    assert_eq!(read["revoked"], true);
    assert_eq!(read["revocationReason"], "Cheating");

    let head = app.head();
    app.revoke(aid, "Again").expect_client_error(409);
    assert_eq!(app.head(), head);
    assert_eq!(
        app.assertion(aid).expect(200).body["revocationReason"],
        "Cheating"
    );
}

#[test]
fn public_verification_needs_no_key_shows_only_what_a_verifier_needs_and_404_once_revoked() {
    let app = spawn_app();
    let id = app.create_credential("Verifiable");
    let a = app
        .issue_with(
            &id,
            &json!({"recipient": {"email": "fay@x.test", "username": "fay", "name": "Fay"},
                    "narrative": "private note", "metadata": {"secret": "s3"}}),
        )
        .expect(200)
        .body;
    let aid = a["entityId"].as_str().unwrap();
    let public = format!("/api/credentials/public/assertions/{aid}/");

    let valid = app.get(&public).anonymous().send().expect(200).body;
    assert_eq!(valid["entityId"], aid);
    assert_eq!(valid["revoked"], false);
    assert_eq!(valid["status"], "valid");
    assert_eq!(valid["credentialDetails"]["name"], "Verifiable");
    assert_eq!(valid["recipient"], json!({"name": "Fay"}));
    let text = valid.to_string();
    for private in [
        "fay@x.test",
        "private note",
        "s3",
        "\"metadata\"",
        "\"narrative\"",
    ] {
        assert!(!text.contains(private), "{private} shown: {text}");
    }
    // A key of another tenant (or garbage) is irrelevant there.
    app.get(&public).key(&app.other_key).send().expect(200);
    app.get(&public)
        .auth("Api-Token nonsense")
        .send()
        .expect(200);

    app.revoke(aid, "Issued by mistake").expect(200);
    let revoked = app
        .get(&public)
        .anonymous()
        .send()
        .expect_client_error(404)
        .body;
    assert_eq!(revoked["revoked"], true);
    assert_eq!(revoked["status"], "revoked");
    assert!(
        !revoked.to_string().contains("by mistake"),
        "the internal reason is not shown: {revoked}"
    );

    let unknown = app
        .get("/api/credentials/public/assertions/00000000-0000-0000-0000-000000000000/")
        .anonymous()
        .send()
        .expect_client_error(404)
        .body;
    assert_eq!(unknown["detail"], "Not found.");
    assert!(unknown.get("revocationReason").is_none());
}

#[test]
fn assertion_lists_hide_revoked_and_expired_unless_asked_and_filter_by_course() {
    let app = spawn_app();
    let a = app.create_credential_with(&json!({"name": "A", "course": "course-a"}));
    let b = app.create_credential_with(&json!({"name": "B", "course": "course-b"}));
    app.issue(&a, "alice@x.test");
    let bob = app.issue(&a, "bob@x.test");
    app.issue(&b, "carol@x.test");
    app.issue_with(
        &a,
        &json!({"recipient": {"email": "dave@x.test"}, "issuedOn": "2020-01-01T00:00:00Z", "expires": "2021-01-01T00:00:00Z"}),
    )
    .expect(200);
    app.revoke(bob["entityId"].as_str().unwrap(), "fraud")
        .expect(200);

    let list = |q: &str| emails(&app.assertions(&format!("page_size=100&{q}"))["data"]);
    assert_eq!(list(""), ["alice@x.test", "carol@x.test"]);
    assert_eq!(
        list("include_revoked=true"),
        ["alice@x.test", "bob@x.test", "carol@x.test"]
    );
    assert_eq!(
        list("include_expired=true"),
        ["alice@x.test", "carol@x.test", "dave@x.test"]
    );
    assert_eq!(
        list("include_expired=true&include_revoked=true"),
        ["alice@x.test", "bob@x.test", "carol@x.test", "dave@x.test"]
    );
    assert_eq!(
        list("include_revoked=false&include_expired=false"),
        ["alice@x.test", "carol@x.test"]
    );
    assert_eq!(list("course=course-a"), ["alice@x.test"]);
    assert_eq!(
        list("course=course-a&include_revoked=true&include_expired=true"),
        ["alice@x.test", "bob@x.test", "dave@x.test"]
    );
    assert_eq!(
        list("course=nope&include_revoked=true"),
        Vec::<String>::new()
    );
    assert_eq!(app.assertions("include_revoked=true")["count"], 3);

    let of_a = |q: &str| {
        let body = app
            .get(&format!("{}?{q}", creds(&format!("{a}/assertions/"))))
            .send()
            .expect(200)
            .body;
        emails(&body["data"])
    };
    assert_eq!(of_a(""), ["alice@x.test"]);
    assert_eq!(
        of_a("include_revoked=true&include_expired=true"),
        ["alice@x.test", "bob@x.test", "dave@x.test"]
    );

    let expired = app.assertions("include_expired=true&course=course-a");
    let dave = expired["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["recipient"]["email"] == "dave@x.test")
        .unwrap();
    assert_eq!(dave["expires"], "2021-01-01T00:00:00Z");
    assert_eq!(dave["issuedOn"], "2020-01-01T00:00:00Z");

    app.get(&format!("{}?include_revoked=maybe", creds("assertions/")))
        .send()
        .expect_client_error(400);
}

#[test]
fn the_assertion_lists_page_like_the_credentials_list() {
    let app = spawn_app();
    let id = app.create_credential("Many");
    let recipients: Vec<Value> = (0..105)
        .map(|i| json!({"email": format!("r{i}@x.test")}))
        .collect();
    let bulk = app
        .bulk(&id, &json!({"recipients": recipients}))
        .expect(200)
        .body;
    assert_eq!(bulk["issued"].as_array().unwrap().len(), 105);

    let capped = app.assertions("page_size=500");
    assert_eq!(capped["count"], 105);
    assert_eq!(capped["data"].as_array().unwrap().len(), 100);
    assert_eq!(capped["num_pages"], 2);
    assert_eq!(capped["max_page_size"], 100);
    assert_eq!(capped["previous"], "");
    assert!(capped["next"].as_str().unwrap().contains("page=2"));

    let last = app.assertions("page_size=100&page=2");
    assert_eq!(last["data"].as_array().unwrap().len(), 5);
    assert_eq!(last["next"], "");
    assert!(last["previous"].as_str().unwrap().contains("page=1"));
    app.get(&format!("{}?page=3&page_size=100", creds("assertions/")))
        .send()
        .expect_client_error(404);
}

#[test]
fn a_deleted_credential_answers_404_to_issuance() {
    let app = spawn_app();
    let id = app.create_credential("Short lived");
    app.delete(&creds(&id)).send().expect(204);
    let head = app.head();
    app.issue_with(&id, &json!({"recipient": {"email": "g@x.test"}}))
        .expect_client_error(404);
    app.bulk(&id, &json!({"recipients": [{"email": "g@x.test"}]}))
        .expect_client_error(404);
    assert_eq!(app.head(), head);
}

#[test]
fn assertions_of_a_retired_or_deleted_credential_verify_as_not_valid() {
    let app = spawn_app();
    let public = |aid: &str| format!("/api/credentials/public/assertions/{aid}/");
    for retire in [true, false] {
        let id = app.create_credential("Withdrawn");
        let a = app.issue(&id, "w@x.test");
        let aid = a["entityId"].as_str().unwrap();
        app.get(&public(aid)).anonymous().send().expect(200);
        if retire {
            app.put(&creds(&id))
                .json(&json!({"revoked": true, "revocationReason": "Closed"}))
                .send()
                .expect(200);
        } else {
            app.delete(&creds(&id)).send().expect(204);
        }
        let answer = app
            .get(&public(aid))
            .anonymous()
            .send()
            .expect_client_error(404)
            .body;
        assert_eq!(answer["status"], "revoked", "{answer}");
        assert_eq!(answer["valid"], false, "{answer}");
    }
}

#[test]
fn a_retired_credential_answers_410_to_issuance_but_keeps_its_assertions() {
    let app = spawn_app();
    let id = app.create_credential("Retiring");
    let before = app.issue(&id, "h@x.test");
    let retired = app
        .put(&creds(&id))
        .json(&json!({"revoked": true, "revocationReason": "Programme closed"}))
        .send()
        .expect(200);
    assert_eq!(retired.body["result"]["revoked"], true);
    assert_eq!(app.credential(&id).expect(200).body["revoked"], true);

    let head = app.head();
    app.issue_with(&id, &json!({"recipient": {"email": "i@x.test"}}))
        .expect_client_error(410);
    app.bulk(&id, &json!({"recipients": [{"email": "i@x.test"}]}))
        .expect_client_error(410);
    assert_eq!(app.head(), head);
    let kept = app
        .assertion(before["entityId"].as_str().unwrap())
        .expect(200)
        .body;
    assert_eq!(kept["revoked"], false);
}

// ---------------------------------------------------------------- read your writes

/// Panics unless the write answered an `X-Position` token of a position
/// above `after`.
#[track_caller]
fn position_after(app: &TestApp, resp: &crate::helpers::Resp, after: u64) -> u64 {
    let p = app.position_of(resp);
    assert!(p > 0 && p > after, "X-Position {p} after {after}");
    p
}

#[test]
fn every_write_answers_its_position_and_an_immediate_read_sees_it() {
    let app = spawn_app();
    let mut last = 0;

    let created = app.post_credential(&json!({"name": "RYW"}));
    last = position_after(&app, &created, last);
    let id = created.body["result"]["credential_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.credential(&id).expect(200).body["name"], "RYW");
    assert_eq!(app.credentials("")["count"], 1);

    let updated = app
        .put(&creds(&id))
        .json(&json!({"name": "RYW 2"}))
        .send()
        .expect(200);
    last = position_after(&app, &updated, last);
    assert_eq!(app.credential(&id).expect(200).body["name"], "RYW 2");

    let issued = app
        .issue_with(&id, &json!({"recipient": {"email": "j@x.test"}}))
        .expect(200);
    last = position_after(&app, &issued, last);
    let aid = issued.body["entityId"].as_str().unwrap().to_owned();
    assert_eq!(
        app.assertion(&aid).expect(200).body["entityId"],
        aid.as_str()
    );
    app.get(&format!("/api/credentials/public/assertions/{aid}/"))
        .anonymous()
        .send()
        .expect(200);

    let bulk = app
        .bulk(
            &id,
            &json!({"recipients": [{"email": "k@x.test"}, {"email": "l@x.test"}]}),
        )
        .expect(200);
    last = position_after(&app, &bulk, last);
    assert_eq!(app.assertions("")["count"], 3);

    let revoked = app.revoke(&aid, "ryw").expect(200);
    last = position_after(&app, &revoked, last);
    assert_eq!(app.assertion(&aid).expect(200).body["revoked"], true);

    let issuer = app
        .post(&creds("issuers/"))
        .json(&json!({"name": "Acme Academy"}))
        .send()
        .expect(200);
    last = position_after(&app, &issuer, last);
    let issuer_id = issuer.body["entityId"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get(&creds(&format!("issuers/{issuer_id}")))
            .send()
            .expect(200)
            .body["name"],
        "Acme Academy"
    );

    let other = app.create_credential("Other");
    let deleted = app.delete(&creds(&other)).send().expect(204);
    last = position_after(&app, &deleted, last);
    app.credential(&other).expect_client_error(404);

    let key = app
        .post("/api/core/platform/api-tokens/")
        .json(&json!({"name": "ci", "platform_key": ORG}))
        .send()
        .expect(201);
    position_after(&app, &key, last);
    let secret = key.body["key"].as_str().unwrap().to_owned();
    app.get(&creds("")).key(&secret).send().expect(200);
}
