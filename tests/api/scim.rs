//! SCIM 2.0 Users under `/api/orgs/{platform_key}/scim/v2/Users`: create,
//! get, list with filters and paging, replace, patch, delete (deactivation),
//! and errors in the SCIM format.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, Resp, TestApp, ADMIN, ADMIN_EMAIL, ORG, OTHER};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const ENTERPRISE: &str = "urn_ietf_params_scim_schemas_extension_enterprise_2_0_User";

fn users() -> String {
    format!("/api/orgs/{ORG}/scim/v2/Users")
}

fn user(id: &str) -> String {
    format!("/api/orgs/{ORG}/scim/v2/Users/{id}")
}

fn body_of(username: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": username,
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": format!("{username}@example.com"), "primary": true, "type": "work"}],
        "active": true,
        "externalId": format!("ext-{username}"),
    })
}

/// POSTs `body` as `application/scim+json`, as the `iblai` client does.
fn post(app: &TestApp, body: &Value) -> Resp {
    app.post(&users())
        .raw(
            &serde_json::to_vec(body).unwrap(),
            Some("application/scim+json"),
        )
        .send()
}

/// Creates `username`; answers its SCIM id.
#[track_caller]
fn create(app: &TestApp, username: &str) -> String {
    let resp = post(app, &body_of(username)).expect(201);
    resp.body["id"].as_str().expect("a string id").to_owned()
}

fn patch(app: &TestApp, id: &str, body: &Value) -> Resp {
    app.request("PATCH", &user(id)).json(body).send()
}

/// Panics unless `resp` is a SCIM error with this status and `scimType`.
#[track_caller]
fn scim_error(resp: Resp, status: u16, scim_type: Option<&str>) -> Resp {
    assert_eq!(resp.status, status, "unexpected answer: {}", resp.text);
    assert_eq!(resp.body["schemas"], json!([ERROR_SCHEMA]), "{}", resp.text);
    assert_eq!(
        resp.body["status"],
        json!(status.to_string()),
        "{}",
        resp.text
    );
    assert!(
        resp.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{}",
        resp.text
    );
    assert_eq!(
        resp.body["scimType"].as_str(),
        scim_type,
        "scimType of {}",
        resp.text
    );
    assert_eq!(resp.header("Content-Type"), Some("application/scim+json"));
    resp
}

/// The `userName`s of a list answer, in order.
fn names(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no Resources in {list}"))
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_created_user_answers_201_with_every_field_the_client_requires() {
    let app = spawn_app();
    let resp = post(&app, &body_of("jane")).expect(201);
    assert!(app.position_of(&resp) > 0);
    assert_eq!(resp.header("Content-Type"), Some("application/scim+json"));
    let u = &resp.body;
    let id = u["id"].as_str().expect("id is a string");
    assert!(id.parse::<u64>().is_ok_and(|n| n > app.admin_id), "{id}");
    assert_eq!(u["schemas"], json!([USER_SCHEMA]));
    assert_eq!(u["userName"], "jane");
    assert_eq!(
        u["name"],
        json!({"givenName": "Given", "familyName": "Family", "formatted": "Given Family"})
    );
    assert_eq!(
        u["emails"],
        json!([{"value": "jane@example.com", "primary": true, "type": "work"}])
    );
    assert_eq!(u["active"], true);
    assert!(u[ENTERPRISE].is_object(), "{}", resp.text);
    let location = format!("{}{}", app.base, user(id));
    assert_eq!(u["meta"]["resourceType"], "User");
    assert_eq!(u["meta"]["location"], json!(location));
    assert_eq!(resp.header("Location"), Some(location.as_str()));
    let created = u["meta"]["created"].as_str().unwrap();
    assert!(created.ends_with('Z'), "{created}");
    assert_eq!(u["meta"]["lastModified"], u["meta"]["created"]);

    // The same user on GET, with and without the trailing slash.
    let got = app.get(&user(id)).send().expect(200);
    assert_eq!(got.header("Content-Type"), Some("application/scim+json"));
    assert_eq!(&got.body, u);
    assert_eq!(
        &app.get(&format!("{}/", user(id))).send().expect(200).body,
        u
    );

    // Listed with the platform's admin, by id.
    let list = app.get(&users()).send().expect(200).body;
    assert_eq!(list["schemas"], json!([LIST_SCHEMA]));
    assert_eq!(list["totalResults"], 2);
    assert_eq!(list["startIndex"], 1);
    assert_eq!(list["itemsPerPage"], 2);
    assert_eq!(names(&list), [ADMIN, "jane"]);
    assert_eq!(list["Resources"][1], *u);
    let admin = &list["Resources"][0];
    assert_eq!(admin["id"], json!(app.admin_id.to_string()));
    assert_eq!(admin["emails"][0]["value"], ADMIN_EMAIL);
    assert_eq!(
        admin["name"],
        json!({"givenName": "", "familyName": "", "formatted": ""})
    );
    assert_eq!(
        app.get(&format!("{}/", users())).send().expect(200).body,
        list
    );
}

#[test]
fn create_takes_defaults_and_refuses_what_it_cannot_keep() {
    let app = spawn_app();
    // Inactive from the start; no names; the userName is the email.
    let resp = post(
        &app,
        &json!({"userName": "bob@example.com", "active": false}),
    )
    .expect(201);
    assert_eq!(resp.body["active"], false);
    assert_eq!(resp.body["emails"][0]["value"], "bob@example.com");
    assert_eq!(resp.body["name"]["formatted"], "");
    // The primary email wins over the first.
    let resp = post(
        &app,
        &json!({"userName": "carol", "emails": [{"value": "c1@x.test"}, {"value": "c2@x.test", "primary": true}]}),
    )
    .expect(201);
    assert_eq!(resp.body["emails"][0]["value"], "c2@x.test");

    let head = app.head();
    for (body, scim_type) in [
        (json!({"emails": [{"value": "x@x.test"}]}), "invalidValue"),
        (json!({"userName": "nomail"}), "invalidValue"),
        (
            json!({"userName": "ja ne", "emails": [{"value": "x@x.test"}]}),
            "invalidValue",
        ),
        (
            json!({"userName": "dave", "emails": [{"value": "not-an-email"}]}),
            "invalidValue",
        ),
        (
            json!({"userName": 5, "emails": [{"value": "x@x.test"}]}),
            "invalidValue",
        ),
        (
            json!({"userName": "dave", "emails": [{"value": "x@x.test"}], "active": "maybe"}),
            "invalidValue",
        ),
        (json!([]), "invalidSyntax"),
    ] {
        let resp = scim_error(post(&app, &body), 400, Some(scim_type));
        if body.get("userName") == Some(&json!("ja ne")) {
            assert!(
                resp.body["detail"]
                    .as_str()
                    .unwrap()
                    .starts_with("userName"),
                "{}",
                resp.text
            );
        }
    }
    scim_error(
        app.post(&users())
            .raw(b"{not json", Some("application/scim+json"))
            .send(),
        400,
        Some("invalidValue"),
    );
    scim_error(
        app.post(&users())
            .raw(b"userName=x", Some("text/plain"))
            .send(),
        415,
        None,
    );
    assert_eq!(app.head(), head, "refused creates changed the store");
}

#[test]
fn a_taken_user_name_is_a_409_uniqueness_and_update_true_updates_it_instead() {
    let app = spawn_app();
    let id = create(&app, "jane");
    let head = app.head();
    let resp = scim_error(post(&app, &body_of("jane")), 409, Some("uniqueness"));
    assert!(resp.body["detail"].as_str().unwrap().contains("jane"));
    scim_error(post(&app, &body_of(ADMIN)), 409, Some("uniqueness"));
    assert_eq!(app.head(), head);
    // The same name on another platform is another user.
    let other = app
        .post(&format!("/api/orgs/{OTHER}/scim/v2/Users"))
        .key(&app.other_key)
        .json(&body_of("jane"))
        .send()
        .expect(201);
    assert_ne!(other.body["id"], json!(id));

    let mut body = body_of("jane");
    body["update"] = json!(true);
    body["name"]["givenName"] = json!("Janet");
    let resp = post(&app, &body).expect(200);
    assert_eq!(resp.body["id"], json!(id));
    assert_eq!(resp.body["name"]["givenName"], "Janet");
}

#[test]
fn lists_filter_on_user_name_and_email_case_insensitively() {
    let app = spawn_app();
    create(&app, "jane");
    create(&app, "john");
    let list = |filter: &str| {
        let q: String = url_encode(filter);
        app.get(&format!("{}?filter={q}", users()))
            .send()
            .expect(200)
            .body
    };
    for filter in [
        r#"userName eq "jane""#,
        r#"username EQ "JANE""#,
        r#"emails.value eq "jane@example.com""#,
        r#"emails eq "Jane@Example.com""#,
        r#"Emails.Value eq "jane@example.com""#,
    ] {
        let l = list(filter);
        assert_eq!(names(&l), ["jane"], "{filter}");
        assert_eq!(l["totalResults"], 1, "{filter}");
    }
    let none = list(r#"userName eq "nobody""#);
    assert_eq!(none["totalResults"], 0);
    assert_eq!(none["Resources"], json!([]));
    assert_eq!(none["itemsPerPage"], 0);

    for bad in [
        "userName",
        r#"userName co "ja""#,
        r#"userName eq jane"#,
        r#"displayName eq "jane""#,
        r#"userName eq "jane" or userName eq "john""#,
        "active eq true",
    ] {
        scim_error(
            app.get(&format!("{}?filter={}", users(), url_encode(bad)))
                .send(),
            400,
            Some("invalidFilter"),
        );
    }
}

#[test]
fn lists_page_with_start_index_and_count() {
    let app = spawn_app();
    for n in 1..=5 {
        create(&app, &format!("user{n}"));
    }
    let page = |query: &str| {
        app.get(&format!("{}?{query}", users()))
            .send()
            .expect(200)
            .body
    };
    let all = page("");
    assert_eq!(all["totalResults"], 6);
    assert_eq!(names(&all)[0], ADMIN);

    let p = page("startIndex=2&count=2");
    assert_eq!(names(&p), ["user1", "user2"]);
    assert_eq!(
        (&p["totalResults"], &p["startIndex"], &p["itemsPerPage"]),
        (&json!(6), &json!(2), &json!(2))
    );
    let p = page("startIndex=6&count=10");
    assert_eq!(names(&p), ["user5"]);
    let p = page("startIndex=7");
    assert_eq!((p["totalResults"].clone(), names(&p).len()), (json!(6), 0));
    // Below 1 reads as 1; a negative count as 0; a huge count is capped.
    let p = page("startIndex=0&count=1");
    assert_eq!(
        (names(&p), p["startIndex"].clone()),
        (vec![ADMIN.to_owned()], json!(1))
    );
    let p = page("count=-3");
    assert_eq!(
        (p["itemsPerPage"].clone(), p["totalResults"].clone()),
        (json!(0), json!(6))
    );
    assert_eq!(page("count=100000")["itemsPerPage"], 6);
    // Filter and paging together.
    let p = page(&format!(
        "filter={}&count=1",
        url_encode(r#"userName eq "user3""#)
    ));
    assert_eq!(names(&p), ["user3"]);

    for bad in ["startIndex=x", "count=1.5"] {
        scim_error(
            app.get(&format!("{}?{bad}", users())).send(),
            400,
            Some("invalidValue"),
        );
    }
}

#[test]
fn put_replaces_the_user() {
    let app = spawn_app();
    let id = create(&app, "jane");
    let before = app.get(&user(&id)).send().expect(200).body;
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let resp = app
        .put(&user(&id))
        .json(&json!({
            "userName": "jane.doe",
            "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"value": "jane.doe@example.com", "primary": true, "type": "work"}],
            "active": false,
        }))
        .send()
        .expect(200);
    assert!(app.position_of(&resp) > 0);
    let u = &resp.body;
    assert_eq!(u["id"], json!(id));
    assert_eq!(u["userName"], "jane.doe");
    assert_eq!(u["name"]["formatted"], "Jane Doe");
    assert_eq!(u["emails"][0]["value"], "jane.doe@example.com");
    assert_eq!(u["active"], false);
    assert_eq!(u["meta"]["created"], before["meta"]["created"]);
    assert_ne!(u["meta"]["lastModified"], before["meta"]["lastModified"]);
    assert_eq!(&app.get(&user(&id)).send().expect(200).body, u);

    // Names left out are cleared; the email and `active` stay.
    let u = app
        .put(&format!("{}/", user(&id)))
        .json(&json!({"userName": "jane.doe"}))
        .send()
        .expect(200)
        .body;
    assert_eq!(
        (
            u["name"]["givenName"].clone(),
            u["name"]["familyName"].clone()
        ),
        (json!(""), json!(""))
    );
    assert_eq!(u["emails"][0]["value"], "jane.doe@example.com");
    assert_eq!(u["active"], false);

    let head = app.head();
    scim_error(
        app.put(&user(&id))
            .json(&json!({"name": {"givenName": "X"}}))
            .send(),
        400,
        Some("invalidValue"),
    );
    scim_error(
        app.put(&user(&id)).json(&body_of(ADMIN)).send(),
        409,
        Some("uniqueness"),
    );
    scim_error(
        app.put(&user("999999")).json(&body_of("x")).send(),
        404,
        None,
    );
    assert_eq!(app.head(), head);
}

#[test]
fn patch_replaces_active_with_or_without_a_path_and_simple_attributes() {
    let app = spawn_app();
    let id = create(&app, "jane");
    let op = |ops: Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});

    let u = patch(
        &app,
        &id,
        &op(json!([{"op": "replace", "path": "active", "value": false}])),
    )
    .expect(200)
    .body;
    assert_eq!(u["active"], false);
    let u = patch(
        &app,
        &id,
        &op(json!([{"op": "Replace", "value": {"active": true}}])),
    )
    .expect(200)
    .body;
    assert_eq!(u["active"], true);
    let u = patch(
        &app,
        &id,
        &op(json!([{"op": "replace", "value": {"active": false}}])),
    )
    .expect(200)
    .body;
    assert_eq!(u["active"], false);
    assert_eq!(app.get(&user(&id)).send().expect(200).body["active"], false);

    // A patch that changes nothing appends nothing.
    let head = app.head();
    patch(
        &app,
        &id,
        &op(json!([{"op": "replace", "path": "active", "value": false}])),
    )
    .expect(200);
    assert_eq!(app.head(), head);

    let u = patch(
        &app,
        &id,
        &op(json!([
            {"op": "replace", "path": "userName", "value": "jane.doe"},
            {"op": "replace", "path": "name.givenName", "value": "Jane"},
            {"op": "replace", "path": "name", "value": {"familyName": "Doe"}},
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "jd@example.com"},
            {"op": "add", "path": "active", "value": true},
        ])),
    )
    .expect(200)
    .body;
    assert_eq!(u["userName"], "jane.doe");
    assert_eq!(u["name"]["formatted"], "Jane Doe");
    assert_eq!(u["emails"][0]["value"], "jd@example.com");
    assert_eq!(u["active"], true);
    let u = patch(
        &app,
        &id,
        &op(json!([{"op": "replace", "path": "emails", "value": [{"value": "e@example.com", "primary": true}]}])),
    )
    .expect(200)
    .body;
    assert_eq!(u["emails"][0]["value"], "e@example.com");

    // A partial user, as the iblai client's PatchedSCIMUserResponse sends it.
    let u = patch(
        &app,
        &id,
        &json!({"name": {"givenName": "J"}, "active": false}),
    )
    .expect(200)
    .body;
    assert_eq!(
        (u["name"]["givenName"].clone(), u["active"].clone()),
        (json!("J"), json!(false))
    );
    assert_eq!(u["name"]["familyName"], "Doe");

    let head = app.head();
    scim_error(
        patch(
            &app,
            &id,
            &op(json!([{"op": "replace", "path": "userName", "value": ADMIN}])),
        ),
        409,
        Some("uniqueness"),
    );
    scim_error(
        patch(
            &app,
            &id,
            &op(json!([{"op": "replace", "path": "nickname.x", "value": 1}])),
        ),
        400,
        Some("invalidPath"),
    );
    scim_error(
        patch(
            &app,
            &id,
            &op(
                json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "bad"}]),
            ),
        ),
        400,
        Some("invalidValue"),
    );
    scim_error(
        patch(&app, &id, &op(json!([{"op": "explode", "path": "active"}]))),
        400,
        Some("invalidSyntax"),
    );
    scim_error(
        patch(
            &app,
            "999999",
            &op(json!([{"op": "replace", "path": "active", "value": false}])),
        ),
        404,
        None,
    );
    assert_eq!(app.head(), head);
}

#[test]
fn delete_deactivates_and_the_user_stays() {
    let app = spawn_app();
    let id = create(&app, "jane");
    let resp = app.delete(&user(&id)).send().expect(204);
    assert!(app.position_of(&resp) > 0);
    assert!(resp.text.is_empty());
    let u = app.get(&user(&id)).send().expect(200).body;
    assert_eq!(u["active"], false);
    assert_eq!(u["userName"], "jane");
    let list = app.get(&users()).send().expect(200).body;
    assert_eq!(list["totalResults"], 2);
    // Again: nothing to do, still 204.
    let head = app.head();
    app.delete(&format!("{}/", user(&id))).send().expect(204);
    assert_eq!(app.head(), head);
    scim_error(app.delete(&user("999999")).send(), 404, None);
    // Reactivated by PATCH.
    let u = patch(
        &app,
        &id,
        &json!({"Operations": [{"op": "replace", "path": "active", "value": true}]}),
    )
    .expect(200)
    .body;
    assert_eq!(u["active"], true);
}

#[test]
fn another_platforms_key_is_403_and_its_users_are_404() {
    let app = spawn_app();
    let id = create(&app, "jane");
    let head = app.head();
    // The other platform's key on acme's paths.
    scim_error(app.get(&users()).key(&app.other_key).send(), 403, None);
    scim_error(app.get(&user(&id)).key(&app.other_key).send(), 403, None);
    scim_error(
        app.post(&users())
            .key(&app.other_key)
            .json(&body_of("x"))
            .send(),
        403,
        None,
    );
    scim_error(
        app.request("PATCH", &user(&id))
            .key(&app.other_key)
            .json(&json!({"active": false}))
            .send(),
        403,
        None,
    );
    scim_error(app.delete(&user(&id)).key(&app.other_key).send(), 403, None);
    scim_error(
        app.put(&user(&id))
            .key(&app.other_key)
            .json(&body_of("x"))
            .send(),
        403,
        None,
    );
    // Acme's user through the other platform's own paths: not found.
    let theirs = format!("/api/orgs/{OTHER}/scim/v2/Users/{id}");
    scim_error(app.get(&theirs).key(&app.other_key).send(), 404, None);
    scim_error(app.delete(&theirs).key(&app.other_key).send(), 404, None);
    scim_error(
        app.request("PATCH", &theirs)
            .key(&app.other_key)
            .json(&json!({"active": false}))
            .send(),
        404,
        None,
    );
    let list = app
        .get(&format!("/api/orgs/{OTHER}/scim/v2/Users"))
        .key(&app.other_key)
        .send()
        .expect(200)
        .body;
    assert_eq!(names(&list), [ADMIN], "only the other platform's admin");
    // Ids that are not ours are 404s, never 500s.
    for junk in ["nope", "-1", "+1", "1.0", "99999999999999999999", "0"] {
        scim_error(app.get(&user(junk)).send(), 404, None);
    }
    // No key, a bad key: 401 in the SCIM format.
    let resp = scim_error(app.get(&users()).anonymous().send(), 401, None);
    assert_eq!(resp.header("WWW-Authenticate"), Some("Api-Token"));
    scim_error(app.get(&users()).key("nope").send(), 401, None);
    scim_error(
        app.post(&users()).anonymous().json(&body_of("x")).send(),
        401,
        None,
    );
    assert_eq!(app.head(), head);
    assert_eq!(app.get(&user(&id)).send().expect(200).body["active"], true);
}

#[test]
fn an_idempotency_key_makes_a_retried_create_answer_the_same_user() {
    let app = spawn_app();
    let send = || {
        app.post(&users())
            .idempotency_key("scim-create-1")
            .json(&body_of("jane"))
            .send()
    };
    let first = send().expect(201);
    let head = app.head();
    let again = send().expect(201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.position(), first.position());
    assert_eq!(app.head(), head);
    // Renamed since, the user is still the one the retry answers (no 500).
    let id = first.body["id"].as_str().unwrap().to_owned();
    app.patch(&format!("{}/{id}", users()))
        .json(&json!({"Operations": [{"op": "replace", "path": "userName", "value": "jane2"}]}))
        .send()
        .expect(200);
    let renamed = send().expect(201);
    assert_eq!(renamed.body["id"], first.body["id"]);
    assert_eq!(renamed.body["userName"], "jane2");
    // The same key with another body is refused.
    let resp = app
        .post(&users())
        .idempotency_key("scim-create-1")
        .json(&body_of("john"))
        .send();
    scim_error(resp, 422, None);
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
