//! A data folder written before today's changes (`tests/fixtures/legacy-v1`,
//! by the landed code of commit e5b6b99) opens with today's binary, and
//! every entity in it is still there and answers as before; new writes
//! work beside the old ones.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::processes::Server;

const KEY: &str = "ibl_d50793c35f80c0e3d7f71ff4b4c95c1aa738e1429a002f4c9ad360f12aaaa331";
const CREDENTIAL: &str = "a8130c83-44c6-4805-9c17-36471da3e51f";
const BOB_ASSERTION: &str = "8740c4f0-1993-4251-9968-eabae1fb1237";
const CAROL_ASSERTION: &str = "342ebf3b-b703-5aa3-ab50-10e74e150e6f";
const ISSUER: &str = "b9fc9974-db80-4287-b9d4-6b48fced5c0d";

struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Accept", "application/json");
        if let Some(key) = key {
            req = req.set("Authorization", &format!("Api-Token {key}"));
        }
        if method == "POST" && path.contains("/assertions/") {
            req = req.set("Idempotency-Key", "fixture-1");
        }
        let answer = match body {
            Some(body) => req.send_json(body),
            None => req.call(),
        };
        let response = match answer {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = response.status();
        let text = response.into_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = self.call("GET", path, None, Some(KEY));
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }
}

fn copy_fixture(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-v1/events.db");
    std::fs::copy(&from, to.join("events.db")).expect("the fixture copies");
}

#[test]
fn a_data_folder_written_before_opens_and_answers_as_before() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let server = Server::start(dir.path());
    let c = Client {
        base: server.base.clone(),
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(20))
            .build(),
    };

    // Users, with the rename and the deactivation.
    let users = c.get("/api/orgs/acme/scim/v2/Users");
    assert_eq!(users["totalResults"], 4, "{users}");
    let by_name = |name: &str| {
        users["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["userName"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {users}"))
    };
    assert_eq!(by_name("robert")["id"], "2");
    assert_eq!(by_name("carol")["id"], "3");
    assert_eq!(by_name("dave")["active"], false);
    assert_eq!(by_name("alice")["active"], true);

    // RBAC.
    assert_eq!(
        c.get("/api/core/rbac/roles/6/?platform_key=acme")["name"],
        "Reader"
    );
    let group = c.get("/api/core/rbac/groups/3/?platform_key=acme");
    assert_eq!(group["unique_id"], "ops");
    assert_eq!(group["users"][0]["id"], 3, "{group}");
    let policy = c.get("/api/core/rbac/policies/2/?platform_key=acme");
    assert_eq!(policy["role"]["id"], 6, "{policy}");
    let mentor = c.get("/api/core/rbac/mentor-access/?platform_key=acme&mentor_id=5");
    assert_eq!(mentor[0]["users"][0]["username"], "carol", "{mentor}");
    let (status, check) = c.call(
        "POST",
        "/api/core/rbac/permissions/check/",
        Some(json!({"platform_key": "acme", "username": "carol",
                    "resources": ["/platforms/1/mentors/5/", "/platforms/1/mentors/6/"]})),
        Some(KEY),
    );
    assert_eq!(status, 200, "{check}");
    assert_eq!(check["/platforms/1/mentors/5/"]["read"], true, "{check}");
    assert_eq!(
        check["/platforms/1/mentors/6/"]["read"], true,
        "through group Ops: {check}"
    );
    let keys = c.get("/api/core/platform/api-tokens/?platform_key=acme");
    let names: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(names, ["admin", "ci"], "{keys}");

    // Credentials.
    let base = "/api/credentials/orgs/acme/users/alice";
    let credential = c.get(&format!("{base}/{CREDENTIAL}"));
    assert_eq!(credential["name"], "Rust 101");
    assert_eq!(credential["issuer"], ISSUER);
    let bob = c.get(&format!("{base}/assertions/{BOB_ASSERTION}"));
    assert_eq!(bob["recipient"]["email"], "bob@acme.test");
    let (status, public) = c.call(
        "GET",
        &format!("/api/credentials/public/assertions/{BOB_ASSERTION}/"),
        None,
        None,
    );
    assert_eq!(
        (status, &public["status"]),
        (200, &json!("valid")),
        "{public}"
    );
    let (status, public) = c.call(
        "GET",
        &format!("/api/credentials/public/assertions/{CAROL_ASSERTION}/"),
        None,
        None,
    );
    assert_eq!(
        (status, &public["status"]),
        (404, &json!("revoked")),
        "{public}"
    );
    // A retry of a request made then, under its Idempotency-Key, answers
    // the assertion it made.
    let (status, again) = c.call(
        "POST",
        &format!("{base}/{CREDENTIAL}/assertions/"),
        Some(json!({"recipient": {"email": "carol@acme.test", "name": "Carol"}})),
        Some(KEY),
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["entityId"], CAROL_ASSERTION);

    // New writes beside the old: a user whose id is new, a role.
    let (status, erin) = c.call(
        "POST",
        "/api/orgs/acme/scim/v2/Users",
        Some(json!({"userName": "erin", "emails": [{"value": "erin@acme.test"}]})),
        Some(KEY),
    );
    assert_eq!(status, 201, "{erin}");
    let erin_id: u64 = erin["id"].as_str().unwrap().parse().unwrap();
    assert!(erin_id > 4, "a new id: {erin_id}");
    let (status, taken) = c.call(
        "POST",
        "/api/orgs/acme/scim/v2/Users",
        Some(json!({"userName": "robert", "emails": [{"value": "r2@acme.test"}]})),
        Some(KEY),
    );
    assert_eq!(status, 409, "a legacy username is still taken: {taken}");
    let (status, role) = c.call(
        "POST",
        "/api/core/rbac/roles/",
        Some(json!({"platform_key": "acme", "name": "New", "actions": []})),
        Some(KEY),
    );
    assert_eq!(status, 201, "{role}");
    assert!(role["id"].as_u64().unwrap() > 6);

    // Keys made when a platform's keys shared one stream: the name stays
    // taken, the key can go, the last admin key stays, the name is free
    // again once its key went.
    let tokens = "/api/core/platform/api-tokens/";
    let new_ci = json!({"platform_key": "acme", "name": "ci"});
    let (status, taken) = c.call("POST", tokens, Some(new_ci.clone()), Some(KEY));
    assert_eq!(status, 409, "{taken}");
    let (status, gone) = c.call(
        "DELETE",
        &format!("{tokens}ci?platform_key=acme"),
        None,
        Some(KEY),
    );
    assert_eq!(status, 204, "{gone}");
    let (status, last) = c.call(
        "DELETE",
        &format!("{tokens}admin?platform_key=acme"),
        None,
        Some(KEY),
    );
    assert_eq!(status, 409, "the last admin key stays: {last}");
    let (status, again) = c.call("POST", tokens, Some(new_ci), Some(KEY));
    assert_eq!(status, 201, "{again}");
    let keys = c.get("/api/core/platform/api-tokens/?platform_key=acme");
    assert_eq!(keys.as_array().map(Vec::len), Some(2), "{keys}");
}
