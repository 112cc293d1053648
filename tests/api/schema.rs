//! `GET /api/schema/`: OpenAPI 3.1, generated from the route table, covering
//! every operation the `iblai` client (4.202.2) calls on our routes.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, ORG};

/// Every (method, path) of `iblai/api/credentials_api.py` and
/// `iblai/api/core_api.py` that this service implements, as the client
/// writes them.
const CLIENT_OPERATIONS: &[(&str, &str)] = &[
    ("GET", "/api/credentials/public/assertions/{entity_id}/"),
    (
        "GET",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/",
    ),
    (
        "GET",
        "/api/credentials/orgs/{platform_key}/users/{username}/",
    ),
    (
        "POST",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/",
    ),
    (
        "POST",
        "/api/credentials/orgs/{platform_key}/users/{username}/",
    ),
    (
        "GET",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/{entity_id}",
    ),
    (
        "GET",
        "/api/credentials/orgs/{platform_key}/users/{username}/{entity_id}",
    ),
    (
        "PUT",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/{entity_id}",
    ),
    (
        "PUT",
        "/api/credentials/orgs/{platform_key}/users/{username}/{entity_id}",
    ),
    (
        "DELETE",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/{entity_id}",
    ),
    (
        "DELETE",
        "/api/credentials/orgs/{platform_key}/users/{username}/{entity_id}",
    ),
    (
        "GET",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/assertions/",
    ),
    (
        "GET",
        "/api/credentials/orgs/{platform_key}/users/{username}/assertions/",
    ),
    (
        "GET",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/assertions/{entity_id}",
    ),
    (
        "GET",
        "/api/credentials/orgs/{platform_key}/users/{username}/assertions/{entity_id}",
    ),
    (
        "PUT",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/assertions/{entity_id}",
    ),
    (
        "PUT",
        "/api/credentials/orgs/{platform_key}/users/{username}/assertions/{entity_id}",
    ),
    (
        "GET",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/{entity_id}/assertions/",
    ),
    (
        "GET",
        "/api/credentials/orgs/{platform_key}/users/{username}/{entity_id}/assertions/",
    ),
    (
        "POST",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/{entity_id}/assertions/",
    ),
    (
        "POST",
        "/api/credentials/orgs/{platform_key}/users/{username}/{entity_id}/assertions/",
    ),
    (
        "POST",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/{entity_id}/assertions/bulk/",
    ),
    (
        "POST",
        "/api/credentials/orgs/{platform_key}/users/{username}/{entity_id}/assertions/bulk/",
    ),
    (
        "GET",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/issuers/",
    ),
    (
        "GET",
        "/api/credentials/orgs/{platform_key}/users/{username}/issuers/",
    ),
    (
        "POST",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/issuers/",
    ),
    (
        "POST",
        "/api/credentials/orgs/{platform_key}/users/{username}/issuers/",
    ),
    (
        "GET",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/issuers/{entity_id}",
    ),
    (
        "GET",
        "/api/credentials/orgs/{platform_key}/users/{username}/issuers/{entity_id}",
    ),
    (
        "PUT",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/issuers/{entity_id}",
    ),
    (
        "PUT",
        "/api/credentials/orgs/{platform_key}/users/{username}/issuers/{entity_id}",
    ),
    (
        "DELETE",
        "/api/credentials/orgs/{platform_key}/users/{user_id}/issuers/{entity_id}",
    ),
    (
        "DELETE",
        "/api/credentials/orgs/{platform_key}/users/{username}/issuers/{entity_id}",
    ),
    ("GET", "/api/core/platform/api-tokens/"),
    ("POST", "/api/core/platform/api-tokens/"),
    ("DELETE", "/api/core/platform/api-tokens/{name}"),
    ("POST", "/api/core/rbac/permissions/check/"),
    ("GET", "/api/core/rbac/roles/"),
    ("POST", "/api/core/rbac/roles/"),
    ("GET", "/api/core/rbac/roles/{id}/"),
    ("PUT", "/api/core/rbac/roles/{id}/"),
    ("PATCH", "/api/core/rbac/roles/{id}/"),
    ("DELETE", "/api/core/rbac/roles/{id}/"),
    ("GET", "/api/core/rbac/groups/"),
    ("POST", "/api/core/rbac/groups/"),
    ("GET", "/api/core/rbac/groups/{id}/"),
    ("PUT", "/api/core/rbac/groups/{id}/"),
    ("PATCH", "/api/core/rbac/groups/{id}/"),
    ("DELETE", "/api/core/rbac/groups/{id}/"),
    ("GET", "/api/core/rbac/policies/"),
    ("POST", "/api/core/rbac/policies/"),
    ("GET", "/api/core/rbac/policies/{id}/"),
    ("PUT", "/api/core/rbac/policies/{id}/"),
    ("PATCH", "/api/core/rbac/policies/{id}/"),
    ("DELETE", "/api/core/rbac/policies/{id}/"),
    ("GET", "/api/core/rbac/mentor-access/"),
    ("POST", "/api/core/rbac/mentor-access/"),
    // `iblai/api/scim_api.py` (Users): each `.../Users/{id}` operation also
    // comes as a `*2` twin with a trailing slash, which the server trims.
    ("GET", "/api/orgs/{platform_key}/scim/v2/Users"),
    ("POST", "/api/orgs/{platform_key}/scim/v2/Users"),
    ("GET", "/api/orgs/{platform_key}/scim/v2/Users/{id}"),
    ("PUT", "/api/orgs/{platform_key}/scim/v2/Users/{id}"),
    ("PATCH", "/api/orgs/{platform_key}/scim/v2/Users/{id}"),
    ("DELETE", "/api/orgs/{platform_key}/scim/v2/Users/{id}"),
];

/// A path with every `{parameter}` written `{}`.
fn normalise(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                "{}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The (METHOD, path) pairs of an OpenAPI document.
fn operations(spec: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

#[test]
fn the_schema_is_openapi_3_1_and_needs_no_key() {
    let app = spawn_app();
    let spec = app.get("/api/schema/").anonymous().send().expect(200).body;
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "openapi: {}",
        spec["openapi"]
    );
    assert!(spec["info"]["title"].is_string());
    assert!(spec["info"]["version"].is_string());
    assert_eq!(
        spec["components"]["securitySchemes"]["PlatformApiKeyAuthentication"]["in"],
        "header"
    );
    // The same document without the trailing slash, and as the library builds it.
    assert_eq!(
        app.get("/api/schema").anonymous().send().expect(200).body,
        spec
    );
    assert_eq!(spec, ibl_data_manager::routes::openapi());
}

#[test]
fn the_schema_describes_exactly_the_route_table() {
    let app = spawn_app();
    let spec = app.get("/api/schema/").anonymous().send().expect(200).body;
    let table: BTreeSet<(String, String)> = ibl_data_manager::routes::table()
        .iter()
        .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(operations(&spec), table);
    for (path, item) in spec["paths"].as_object().unwrap() {
        let params: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(declared, params, "{method} {path}");
            assert!(op["operationId"].is_string(), "{method} {path}");
        }
    }
    let ids: Vec<&str> = ibl_data_manager::routes::table()
        .iter()
        .map(|r| r.operation_id)
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "operationIds are unique");
}

#[test]
fn every_operation_the_iblai_client_calls_on_our_routes_is_in_the_schema() {
    let spec = ibl_data_manager::routes::openapi();
    let ours: BTreeSet<(String, String)> = operations(&spec)
        .into_iter()
        .map(|(m, p)| (m, normalise(&p)))
        .collect();
    let missing: Vec<_> = CLIENT_OPERATIONS
        .iter()
        .map(|(m, p)| ((*m).to_owned(), normalise(p)))
        .filter(|op| !ours.contains(op))
        .collect();
    assert!(missing.is_empty(), "missing from the schema: {missing:#?}");
}

/// Every operation of the schema, called with real ids for its
/// parameters, answers the success status the schema declares for it: no
/// route of the table is missing from the server, and no path of the schema
/// is one the router does not serve.
#[test]
fn every_operation_of_the_schema_answers_its_declared_success_status_with_real_ids() {
    let app = spawn_app();
    let spec = app.get("/api/schema/").anonymous().send().expect(200).body;
    let credential = app.create_credential_with(&json!({"name": "Schema walk"}));
    let assertion = app.issue(&credential, "walk@x.test")["entityId"]
        .as_str()
        .unwrap()
        .to_owned();
    let issuer = app
        .post(&crate::helpers::creds("issuers/"))
        .json(&json!({"name": "Walkers"}))
        .send()
        .expect(200)
        .body["entityId"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post("/api/core/platform/api-tokens/")
        .json(&json!({"name": "doomed", "platform_key": ORG}))
        .send()
        .expect(201);
    let scim_user = app
        .post(&format!("/api/orgs/{ORG}/scim/v2/Users"))
        .json(&json!({"userName": "walker", "emails": [{"value": "walker@x.test"}]}))
        .send()
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let rbac_id = |path: &str, body: Value| {
        app.post(path).json(&body).send().expect(201).body["id"]
            .as_u64()
            .unwrap()
            .to_string()
    };
    let role = rbac_id(
        "/api/core/rbac/roles/",
        json!({"platform_key": ORG, "name": "Walker", "actions": ["Ibl.Mentor/*"]}),
    );
    let group = rbac_id(
        "/api/core/rbac/groups/",
        json!({"platform_key": ORG, "name": "Walkers"}),
    );
    let policy = rbac_id(
        "/api/core/rbac/policies/",
        json!({"platform_key": ORG, "role_id": role.parse::<u64>().unwrap()}),
    );

    let mut ops: Vec<(String, String)> = operations(&spec).into_iter().collect();
    // Reads first, then writes, deletes last (they remove what others use).
    let rank = |m: &str| match m {
        "GET" => 0,
        "POST" => 1,
        "PUT" => 2,
        "PATCH" => 3,
        _ => 4,
    };
    ops.sort_by_key(|(m, p)| (rank(m), p.clone()));
    assert!(ops.len() >= 20, "{ops:?}");
    for (method, template) in ops {
        let entity = if template.contains("/assertions/{entity_id}") {
            &assertion
        } else if template.contains("/issuers/{entity_id}") {
            &issuer
        } else {
            &credential
        };
        let id = if template.starts_with("/api/core/rbac/roles/") {
            &role
        } else if template.starts_with("/api/core/rbac/groups/") {
            &group
        } else if template.starts_with("/api/core/rbac/policies/") {
            &policy
        } else {
            &scim_user
        };
        let mut path = template
            .replace("{org}", ORG)
            .replace("{user}", "admin")
            .replace("{entity_id}", entity)
            .replace("{name}", "doomed")
            .replace("{platform_key}", ORG)
            .replace("{kind}", "users")
            .replace("{id}", id);
        if path.starts_with("/api/core/platform/api-tokens") && method != "POST" {
            path.push_str(&format!("?platform_key={ORG}"));
        }
        let rbac = ["roles", "groups", "policies"]
            .iter()
            .any(|k| template.starts_with(&format!("/api/core/rbac/{k}/")));
        if rbac && (method == "GET" || method == "DELETE") {
            path.push_str(&format!("?platform_key={ORG}"));
        }
        if path == "/api/core/rbac/mentor-access/" && method == "GET" {
            path.push_str(&format!("?platform_key={ORG}&mentor_id=7"));
        }
        if path == format!("/api/audit/orgs/{ORG}/access/") {
            path.push_str("?resource=/platforms/1/&action=Ibl.Core/Users/read");
        }
        if path == "/api/audit/proof/inclusion" {
            path.push_str("?leaf_index=0&tree_size=1");
        }
        if path == "/api/audit/proof/consistency" {
            path.push_str("?from=1&to=1");
        }
        if path == "/api/core/rbac/access/" {
            path.push_str(&format!(
                "?platform_key={ORG}&resource=/platforms/1/&action=Ibl.Core/Users/read"
            ));
        }
        let body = match (method.as_str(), template.as_str()) {
            ("POST", t) if t.ends_with("/bulk/") => {
                json!({"recipients": [{"email": "bulk-walk@x.test"}]})
            }
            ("POST", t) if t.ends_with("{entity_id}/assertions/") => {
                json!({"recipient": {"email": "walk2@x.test"}})
            }
            ("POST", t) if t.ends_with("/issuers/") => json!({"name": "Second issuer"}),
            ("POST", t) if t.starts_with("/api/core/platform/api-tokens") => {
                json!({"name": "walked", "platform_key": ORG})
            }
            ("POST", t) if t.contains("/scim/v2/Users") => {
                json!({"userName": "walked", "emails": [{"value": "walked@x.test"}]})
            }
            ("POST", "/api/core/rbac/permissions/check/") => {
                json!({"platform_key": ORG, "resources": ["/platforms/1/mentors/"]})
            }
            ("POST", "/api/audit/permissions/check/") => {
                json!({"platform_key": ORG, "resources": ["/platforms/1/mentors/"], "at_position": 1})
            }
            ("POST", "/api/core/rbac/roles/") => json!({"platform_key": ORG, "name": "Walked"}),
            ("POST", "/api/core/rbac/groups/") => json!({"platform_key": ORG, "name": "Walked"}),
            ("POST", "/api/core/rbac/policies/") => {
                json!({"platform_key": ORG, "role_id": role.parse::<u64>().unwrap()})
            }
            ("POST", "/api/core/rbac/mentor-access/") => {
                json!({"platform_key": ORG, "mentor_id": 7, "role": "viewer"})
            }
            ("PUT" | "PATCH", t) if t.starts_with("/api/core/rbac/") => {
                json!({"platform_key": ORG, "name": "Renamed", "role_id": role.parse::<u64>().unwrap()})
            }
            ("POST", _) => json!({"name": "Walked"}),
            ("PUT", t) if t.contains("/scim/v2/Users") => json!({"userName": "walker2"}),
            ("PATCH", _) => {
                json!({"Operations": [{"op": "replace", "path": "name.givenName", "value": "W"}]})
            }
            ("PUT", t) if t.contains("/assertions/") => {
                json!({"revoked": true, "revocationReason": "walk"})
            }
            ("PUT", _) => json!({"name": "Renamed"}),
            _ => Value::Null,
        };
        let req = app.request(leak(&method), &path);
        let resp = if body.is_null() {
            req.send()
        } else {
            req.json(&body).send()
        };
        let declared: Vec<&String> = spec["paths"][&template][method.to_lowercase()]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with('2'))
            .collect();
        assert_eq!(
            declared,
            [&resp.status.to_string()],
            "{method} {template} ({path}) answered {}: {}",
            resp.status,
            resp.text
        );
    }
}

fn leak(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        other => panic!("unexpected method {other}"),
    }
}

#[test]
fn the_readme_lists_every_route_and_the_permission_it_needs() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("<!-- routes:start -->\n")
        .expect("the routes section starts")
        + "<!-- routes:start -->\n".len();
    let end = readme
        .find("<!-- routes:end -->")
        .expect("the routes section ends");
    assert_eq!(
        &readme[start..end],
        ibl_data_manager::routes::markdown(),
        "README.md is out of date: paste the output of `cargo run -- routes` between the markers"
    );
}
