//! Bad requests answer a 4xx with a JSON `detail`, never a 500, and change
//! nothing; authentication and tenant isolation.

use serde_json::json;

use crate::helpers::{creds, spawn_app, Resp, TestApp, ORG, OTHER};

/// Runs `bad` and checks that the store holds exactly the same events after.
#[track_caller]
fn changes_nothing(app: &TestApp, bad: impl FnOnce() -> Resp) -> Resp {
    let head = app.head();
    let events = app.events().len();
    let resp = bad();
    assert!(
        (400..500).contains(&resp.status),
        "expected a client error, got {}: {}",
        resp.status,
        resp.text
    );
    assert_eq!(app.head(), head, "the store head moved after {}", resp.text);
    assert_eq!(app.events().len(), events, "events were appended");
    resp
}

#[test]
fn malformed_json_is_a_400_that_changes_nothing() {
    let app = spawn_app();
    for body in [
        &b"{"[..],
        b"{\"name\": }",
        b"[1, 2",
        b"nul",
        b"{\"name\": \"x\"} trailing",
    ] {
        let resp = changes_nothing(&app, || {
            app.post(&creds(""))
                .raw(body, Some("application/json"))
                .send()
        });
        resp.expect_client_error(400);
    }
    assert_eq!(app.credentials("")["count"], 0);
}

#[test]
fn fields_of_the_wrong_type_are_a_400() {
    let app = spawn_app();
    let id = app.create_credential("Typed");
    let cases = [
        (creds(""), json!({"name": 42})),
        (creds(""), json!({"name": "x", "course": ["a"]})),
        (creds(""), json!(["not", "an", "object"])),
        (creds(&id), json!({"description": {"a": 1}})),
        (
            creds(&format!("{id}/assertions/")),
            json!({"recipient": "bob@x.test"}),
        ),
        (
            creds(&format!("{id}/assertions/")),
            json!({"recipient": {"email": "b@x.test"}, "expires": "tomorrow"}),
        ),
        (
            creds(&format!("{id}/assertions/bulk/")),
            json!({"recipients": {"email": "b@x.test"}}),
        ),
    ];
    for (path, body) in cases {
        let method = if path.ends_with(&id) { "PUT" } else { "POST" };
        changes_nothing(&app, || app.request(method, &path).json(&body).send())
            .expect_client_error(400);
    }
    assert_eq!(app.credential(&id).expect(200).body["description"], "");
}

#[test]
fn a_credential_without_a_name_is_rejected_naming_the_field() {
    let app = spawn_app();
    for body in [
        json!({}),
        json!({"description": "no name"}),
        json!({"name": "   "}),
        json!({"name": null}),
    ] {
        let resp = changes_nothing(&app, || app.post(&creds("")).json(&body).send())
            .expect_client_error(400);
        assert!(resp.body.get("name").is_some(), "{body} → {}", resp.text);
    }
    assert_eq!(app.credentials("")["count"], 0);
}

#[test]
fn unknown_credentials_and_assertions_are_404() {
    let app = spawn_app();
    let unknown = "5f0c6c9e-0000-4000-8000-000000000000";
    let id = app.create_credential("Known");
    for (method, path) in [
        ("GET", creds(unknown)),
        ("PUT", creds(unknown)),
        ("DELETE", creds(unknown)),
        ("GET", creds(&format!("{unknown}/assertions/"))),
        ("POST", creds(&format!("{unknown}/assertions/"))),
        ("POST", creds(&format!("{unknown}/assertions/bulk/"))),
        ("GET", creds(&format!("assertions/{unknown}"))),
        ("PUT", creds(&format!("assertions/{unknown}"))),
        ("GET", creds(&format!("issuers/{unknown}"))),
        // An assertion id is not a credential id, and the reverse.
        ("GET", creds(&format!("assertions/{id}"))),
    ] {
        let body = json!({"name": "x", "recipient": {"email": "a@x.test"}, "recipients": [{"email": "a@x.test"}], "revoked": true, "revocationReason": "r"});
        let resp = changes_nothing(&app, || app.request(method, &path).json(&body).send());
        let resp = resp.expect_client_error(404);
        assert_eq!(resp.body["code"], "not_found", "{method} {path}");
    }
}

#[test]
fn an_unknown_route_answers_a_json_404_and_a_wrong_method_a_json_405() {
    let app = spawn_app();
    let resp = app
        .get("/api/nothing/here/")
        .send()
        .expect_client_error(404);
    assert_eq!(resp.body["detail"], "Not found.");
    // Under the literal prefix of routes with parameters (their scope), and
    // a route's path with one segment more.
    for path in [
        "/api/credentials/orgs/acme/nothing/",
        "/api/credentials/orgs/acme/users/x/y/assertions/bulk/more/",
        "/api/core/rbac/groups/1/2/",
    ] {
        let resp = app.get(path).send().expect_client_error(404);
        assert_eq!(resp.body["detail"], "Not found.", "{path}");
    }
    let resp = changes_nothing(&app, || {
        app.request("PATCH", &creds("")).json(&json!({})).send()
    });
    resp.expect_client_error(405);
}

#[test]
fn a_body_over_256_kib_is_a_413() {
    let app = spawn_app();
    let big = format!(
        "{{\"name\": \"big\", \"description\": \"{}\"}}",
        "x".repeat(300 * 1024)
    );
    changes_nothing(&app, || {
        app.post(&creds(""))
            .raw(big.as_bytes(), Some("application/json"))
            .send()
    })
    .expect_client_error(413);
    // Just under the limit is fine.
    let fits = format!(
        "{{\"name\": \"fits\", \"description\": \"{}\"}}",
        "x".repeat(200 * 1024)
    );
    app.post(&creds(""))
        .raw(fits.as_bytes(), Some("application/json"))
        .send()
        .expect(200);
}

#[test]
fn a_body_that_is_not_json_by_content_type_is_a_415() {
    let app = spawn_app();
    let id = app.create_credential("Typed body");
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        changes_nothing(&app, || {
            app.post(&creds(""))
                .raw(br#"{"name": "x"}"#, Some(content_type))
                .send()
        })
        .expect_client_error(415);
        changes_nothing(&app, || {
            app.post(&creds(&format!("{id}/assertions/")))
                .raw(
                    br#"{"recipient": {"email": "a@x.test"}}"#,
                    Some(content_type),
                )
                .send()
        })
        .expect_client_error(415);
    }
    // `application/json; charset=utf-8` is JSON.
    app.post(&creds(""))
        .raw(
            br#"{"name": "charset"}"#,
            Some("application/json; charset=utf-8"),
        )
        .send()
        .expect(200);
}

#[test]
fn strings_with_nul_and_bodies_with_invalid_utf8_are_a_400() {
    let app = spawn_app();
    let id = app.create_credential("Clean");
    let nul_bodies = [
        (creds(""), r#"{"name": "a\u0000b"}"#.to_owned()),
        (
            creds(""),
            r#"{"name": "ok", "description": "x\u0000"}"#.to_owned(),
        ),
        (creds(""), r#"{"name": "ok", "extra\u0000": 1}"#.to_owned()),
        (
            creds(&format!("{id}/assertions/")),
            r#"{"recipient": {"email": "a@x.test", "name": "A\u0000"}}"#.to_owned(),
        ),
        (
            creds(&format!("{id}/assertions/")),
            r#"{"recipient": {"email": "a@x.test"}, "metadata": {"k": ["\u0000"]}}"#.to_owned(),
        ),
        (
            creds(&format!("{id}/assertions/bulk/")),
            r#"{"recipients": [{"email": "a@x.test"}], "narrative": "\u0000"}"#.to_owned(),
        ),
    ];
    for (path, body) in nul_bodies {
        changes_nothing(&app, || {
            app.post(&path)
                .raw(body.as_bytes(), Some("application/json"))
                .send()
        })
        .expect_client_error(400);
    }
    let mut invalid = b"{\"name\": \"caf".to_vec();
    invalid.extend_from_slice(&[0xC3, 0x28, 0xFF]);
    invalid.extend_from_slice(b"\"}");
    changes_nothing(&app, || {
        app.post(&creds(""))
            .raw(&invalid, Some("application/json"))
            .send()
    })
    .expect_client_error(400);
    changes_nothing(&app, || {
        app.put(&creds(&id))
            .raw(&invalid, Some("application/json"))
            .send()
    })
    .expect_client_error(400);
    // NUL in the query string too.
    changes_nothing(&app, || {
        app.get(&format!("{}?search=a%00b", creds(""))).send()
    })
    .expect_client_error(400);
    assert_eq!(app.credentials("")["count"], 1);
    assert_eq!(app.credential(&id).expect(200).body["name"], "Clean");
}

#[test]
fn bad_page_numbers_and_sizes_are_a_400_and_a_page_past_the_end_a_404() {
    let app = spawn_app();
    app.create_credential("Only one");
    for list in [creds(""), creds("assertions/")] {
        for query in [
            "page=0",
            "page=-1",
            "page=abc",
            "page=1.5",
            "page_size=0",
            "page_size=-5",
            "page_size=ten",
            "page=99999999999999999999",
        ] {
            let resp = changes_nothing(&app, || app.get(&format!("{list}?{query}")).send());
            resp.expect_client_error(400);
        }
        changes_nothing(&app, || app.get(&format!("{list}?page=2")).send())
            .expect_client_error(404);
    }
}

// ---------------------------------------------------------------- auth

#[test]
fn a_request_without_a_key_or_with_an_unknown_key_is_a_401() {
    let app = spawn_app();
    for auth in [
        None,
        Some("Api-Token not-a-key"),
        Some("Basic YWRtaW46YWRtaW4="),
        Some("Api-Token "),
        Some(""),
    ] {
        for (method, path) in [
            ("GET", creds("")),
            ("POST", creds("")),
            ("GET", creds("assertions/")),
        ] {
            let req = app.request(method, &path).json(&json!({"name": "x"}));
            let req = match auth {
                None => req.anonymous(),
                Some(a) => req.auth(a),
            };
            let resp = changes_nothing(&app, || req.send()).expect_client_error(401);
            assert_eq!(resp.body["code"], "not_authenticated");
            assert!(resp.header("WWW-Authenticate").is_some());
        }
    }
    assert_eq!(app.credentials("")["count"], 0);
}

#[test]
fn another_platforms_key_is_forbidden_on_acme_paths() {
    let app = spawn_app();
    let id = app.create_credential("Acme only");
    let aid = app.issue(&id, "m@x.test")["entityId"]
        .as_str()
        .unwrap()
        .to_owned();
    for (method, path) in [
        ("GET", creds("")),
        ("POST", creds("")),
        ("GET", creds(&id)),
        ("PUT", creds(&id)),
        ("DELETE", creds(&id)),
        ("POST", creds(&format!("{id}/assertions/"))),
        ("POST", creds(&format!("{id}/assertions/bulk/"))),
        ("GET", creds(&format!("{id}/assertions/"))),
        ("GET", creds("assertions/")),
        ("GET", creds(&format!("assertions/{aid}"))),
        ("PUT", creds(&format!("assertions/{aid}"))),
        ("GET", creds("issuers/")),
        (
            "GET",
            format!("/api/core/platform/api-tokens/?platform_key={ORG}"),
        ),
        ("POST", "/api/core/platform/api-tokens/".to_owned()),
    ] {
        let body = json!({"name": "x", "platform_key": ORG, "recipient": {"email": "a@x.test"}, "recipients": [{"email": "a@x.test"}], "revoked": true, "revocationReason": "r"});
        let resp = changes_nothing(&app, || {
            app.request(method, &path)
                .key(&app.other_key)
                .json(&body)
                .send()
        });
        let resp = resp.expect_client_error(403);
        assert_eq!(resp.body["code"], "permission_denied", "{method} {path}");
    }
    // Nothing of acme's leaked or changed.
    assert_eq!(app.credential(&id).expect(200).body["name"], "Acme only");
    assert_eq!(app.assertion(&aid).expect(200).body["revoked"], false);
}

#[test]
fn platform_org_in_the_query_overrides_the_path_and_is_checked_against_the_key() {
    let app = spawn_app();
    let id = app.create_credential("Overridden");
    let other_path = format!("/api/credentials/orgs/{OTHER}/users/admin/");
    // The other tenant's key naming acme through platform_org: 403.
    changes_nothing(&app, || {
        app.get(&format!("{other_path}?platform_org={ORG}"))
            .key(&app.other_key)
            .send()
    })
    .expect_client_error(403);
    changes_nothing(&app, || {
        app.post(&format!("{other_path}?platform_org={ORG}"))
            .key(&app.other_key)
            .json(&json!({"name": "sneaky"}))
            .send()
    })
    .expect_client_error(403);
    // Acme's key naming acme through platform_org on another org's path: allowed.
    let list = app
        .get(&format!("{other_path}?platform_org={ORG}"))
        .send()
        .expect(200)
        .body;
    assert_eq!(list["result"]["count"], 1);
    assert_eq!(list["result"]["data"][0]["credential_id"], id.as_str());
    // Acme's key naming the other platform: 403.
    changes_nothing(&app, || {
        app.get(&format!("{}?platform_org={OTHER}", creds("")))
            .send()
    })
    .expect_client_error(403);
}

#[test]
fn another_tenant_never_sees_acme_data_on_its_own_paths() {
    let app = spawn_app();
    let id = app.create_credential("Private");
    let aid = app.issue(&id, "n@x.test")["entityId"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = |rest: &str| format!("/api/credentials/orgs/{OTHER}/users/admin/{rest}");
    let list = app
        .get(&other(""))
        .key(&app.other_key)
        .send()
        .expect(200)
        .body;
    assert_eq!(list["result"]["count"], 0);
    let assertions = app
        .get(&other("assertions/"))
        .key(&app.other_key)
        .send()
        .expect(200)
        .body;
    assert_eq!(assertions["count"], 0);
    for (method, path) in [
        ("GET", other(&id)),
        ("PUT", other(&id)),
        ("DELETE", other(&id)),
        ("GET", other(&format!("{id}/assertions/"))),
        ("POST", other(&format!("{id}/assertions/"))),
        ("POST", other(&format!("{id}/assertions/bulk/"))),
        ("GET", other(&format!("assertions/{aid}"))),
        ("PUT", other(&format!("assertions/{aid}"))),
    ] {
        let body = json!({"name": "x", "recipient": {"email": "a@x.test"}, "recipients": [{"email": "a@x.test"}], "revoked": true, "revocationReason": "r"});
        let resp = changes_nothing(&app, || {
            app.request(method, &path)
                .key(&app.other_key)
                .json(&body)
                .send()
        })
        .expect_client_error(404);
        assert!(
            !resp.text.contains("Private"),
            "{method} {path}: {}",
            resp.text
        );
    }
}

// ---------------------------------------------------------------- junk

/// Bodies no route accepts: each fails to parse or to take any body's shape.
fn junk_bodies() -> Vec<Vec<u8>> {
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    vec![
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"a string\"".to_vec(),
        b"42".to_vec(),
        br#"{"name": 1e400}"#.to_vec(),
        deep.into_bytes(),
        br#"{"name": "ok", "junk": "\u0000"}"#.to_vec(),
        vec![b'{', b'"', 0xFF, 0xFE, b'"', b':', b'1', b'}'],
        br#"{"name": "\ud800"}"#.to_vec(),
    ]
}

#[test]
fn no_route_answers_a_500_to_junk_and_junk_changes_nothing() {
    let app = spawn_app();
    let credential = app.create_credential("Target");
    let assertion = app.issue(&credential, "target@x.test")["entityId"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin_id = app.admin_id.to_string();
    let long = "x".repeat(5000);
    // No `..`: the client resolves dot segments before sending.
    let junk_ids = ["nope", "%00", "a%2Fb", "%F0%9F%98%80", "%20", long.as_str()];
    let head = app.head();
    let events = app.events().len();
    let mut answered = 0;
    let check = |method: &str, path: &str, resp: Resp| {
        assert!(
            resp.status < 500,
            "{method} {path} answered {}: {}",
            resp.status,
            resp.text
        );
        if resp.status >= 400 {
            assert!(
                resp.body["detail"].is_string(),
                "{method} {path}: {} without a detail: {}",
                resp.status,
                resp.text
            );
        }
    };
    for route in ibl_data_manager::routes::table() {
        let method = match route.method.as_str() {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            other => panic!("unexpected method {other}"),
        };
        let real = |entity: &str| {
            route
                .path
                .replace("{org}", ORG)
                .replace("{user}", "admin")
                .replace("{entity_id}", entity)
                .replace("{name}", "nope")
                .replace("{platform_key}", ORG)
                .replace("{id}", &admin_id)
        };
        let entity = if route.path.contains("/assertions/{entity_id}") {
            &assertion
        } else {
            &credential
        };
        // Junk bodies on real paths (and junk queries).
        if method != "DELETE" {
            for body in junk_bodies() {
                let path = real(entity);
                let resp = app
                    .request(method, &path)
                    .raw(&body, Some("application/json"))
                    .send();
                check(method, &path, resp);
                answered += 1;
            }
        }
        for query in [
            "page=%FF",
            "platform_org=%00",
            "page=1&page=x",
            "include_revoked=%E2%9C%93",
        ] {
            let path = format!("{}?{query}", real(entity));
            if method == "GET" {
                check(method, &path, app.get(&path).send());
                answered += 1;
            }
        }
        // Junk ids and another org in the path, with an acceptable body.
        if route.path.contains('{') {
            let body = json!({"name": "x", "recipient": {"email": "j@x.test"}, "recipients": [{"email": "j@x.test"}], "revoked": true, "revocationReason": "r"});
            let mut paths: Vec<String> = Vec::new();
            if route.path.contains("{entity_id}")
                || route.path.contains("{name}")
                || route.path.contains("{id}")
            {
                paths.extend(junk_ids.iter().map(|id| {
                    route
                        .path
                        .replace("{org}", ORG)
                        .replace("{user}", "admin")
                        .replace("{entity_id}", id)
                        .replace("{name}", id)
                        .replace("{platform_key}", ORG)
                        .replace("{id}", id)
                }));
            }
            if route.path.contains("{org}") || route.path.contains("{platform_key}") {
                for org in ["%00", "nowhere"] {
                    paths.push(
                        route
                            .path
                            .replace("{org}", org)
                            .replace("{user}", "admin")
                            .replace("{entity_id}", entity)
                            .replace("{platform_key}", org)
                            .replace("{id}", &admin_id),
                    );
                }
            }
            for path in paths {
                let path = if path.starts_with("/api/core/") {
                    format!("{path}?platform_key={ORG}")
                } else {
                    path
                };
                let resp = app.request(method, &path).json(&body).send();
                check(method, &path, resp);
                answered += 1;
            }
        }
    }
    assert!(answered > 200, "only {answered} requests sent");
    assert_eq!(app.head(), head, "junk changed the store");
    assert_eq!(app.events().len(), events);
    assert_eq!(app.assertions("")["count"], 1);
    assert_eq!(app.credentials("")["count"], 1);
}
