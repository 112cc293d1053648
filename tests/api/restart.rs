//! Persisted read models: a restart reads them (snapshots of the in-memory
//! models, the assertions' SQLite file) and catches up from where they
//! stopped, and answers exactly as a server that rebuilt everything from
//! the log.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::processes::{agent, created_key, Server};

const STARTUP_LOG: (&str, &str) = ("RUST_LOG", "warn,ibl::process=info,ibl::startup=info");

struct Client {
    base: String,
    auth: String,
}

impl Client {
    fn new(server: &Server, key: &str) -> Self {
        Client {
            base: server.base.clone(),
            auth: format!("Api-Token {key}"),
        }
    }

    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let req = agent()
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &self.auth);
        let res = match body {
            Some(body) => req.send_json(body),
            None => req.call(),
        };
        match res {
            Ok(r) => r.into_json().unwrap_or(Value::Null),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.send("POST", path, Some(body))
    }

    fn get(&self, path: &str) -> Value {
        self.send("GET", path, None)
    }
}

const CREDS: &str = "/api/credentials/orgs/acme/users/admin/";
const USERS: &str = "/api/orgs/acme/scim/v2/Users";

/// Writes of every kind; `round` keeps names apart.
fn write(c: &Client, round: usize) {
    let mut users = Vec::new();
    for i in 0..4 {
        let name = format!("u{round}-{i}");
        let u = c.post(
            USERS,
            json!({"userName": name, "emails": [{"value": format!("{name}@acme.test")}]}),
        );
        users.push(u["id"].as_str().expect("a user id").parse::<u64>().unwrap());
    }
    c.send("DELETE", &format!("{USERS}/{}", users[3]), None);
    let credential = c.post(
        CREDS,
        json!({"name": format!("Badge {round}"), "description": "d", "course": format!("course-{round}")}),
    )["result"]["credential_id"]
        .as_str()
        .expect("a credential id")
        .to_owned();
    c.post(
        &format!("{CREDS}issuers/"),
        json!({"name": format!("Registrar {round}")}),
    );
    let mut assertions = Vec::new();
    for i in 0..3 {
        let a = c.post(
            &format!("{CREDS}{credential}/assertions/"),
            json!({"recipient": {"email": format!("r{round}-{i}@x.test"), "name": "R"}}),
        );
        assertions.push(a["entityId"].as_str().expect("an assertion id").to_owned());
    }
    c.post(
        &format!("{CREDS}{credential}/assertions/bulk/"),
        json!({"recipients": [{"email": format!("b{round}-1@x.test")}, {"email": format!("b{round}-2@x.test")}]}),
    );
    c.send(
        "PUT",
        &format!("{CREDS}assertions/{}", assertions[0]),
        Some(json!({"revoked": true, "revocationReason": "mistake"})),
    );
    let role = c.post(
        "/api/core/rbac/roles/",
        json!({"platform_key": "acme", "name": format!("Viewers {round}"), "actions": ["Ibl.Core/Roles/read"]}),
    )["id"]
        .as_u64()
        .expect("a role id");
    let group = c.post(
        "/api/core/rbac/groups/",
        json!({"platform_key": "acme", "name": format!("Team {round}"), "users_to_add": [users[0], users[1]]}),
    )["id"]
        .as_u64()
        .expect("a group id");
    c.post(
        "/api/core/rbac/policies/",
        json!({"platform_key": "acme", "role_id": role, "resources": ["/platforms/1/roles/"],
               "users_to_add": [users[2]], "groups_to_add": [group]}),
    );
    c.post(
        "/api/core/rbac/mentor-access/",
        json!({"platform_key": "acme", "mentor_id": round, "role": "viewer", "usernames_to_add": [format!("u{round}-0")]}),
    );
    c.post(
        "/api/core/platform/api-tokens/",
        json!({"name": format!("ci-{round}"), "platform_key": "acme"}),
    );
}

/// What a client sees: every list and a permission check of every user,
/// one line each, the server's address written as `BASE`.
fn answers(c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for path in [
        format!("{CREDS}?page_size=100"),
        format!("{CREDS}assertions/?page_size=100&include_revoked=true"),
        format!("{CREDS}assertions/?page_size=100&course=course-1"),
        format!("{CREDS}issuers/?page_size=100"),
        format!("{USERS}?count=100"),
        "/api/core/rbac/roles/?platform_key=acme&page_size=100".into(),
        "/api/core/rbac/groups/?platform_key=acme&page_size=100".into(),
        "/api/core/rbac/policies/?platform_key=acme&page_size=100".into(),
        "/api/core/platform/api-tokens/?platform_key=acme".into(),
        "/api/core/rbac/access/?platform_key=acme&resource=/platforms/1/roles/&action=Ibl.Core/Roles/read"
            .into(),
    ] {
        out.push(c.get(&path));
    }
    let users = out[4]["Resources"].as_array().expect("users").clone();
    for u in users {
        out.push(c.post(
            "/api/core/rbac/permissions/check/",
            json!({"platform_key": "acme", "username": u["userName"], "explain": true,
                   "resources": ["/platforms/1/", "/platforms/1/roles/", "/platforms/1/mentors/1/"]}),
        ));
    }
    out.iter()
        .map(|v| v.to_string().replace(&c.base, "BASE"))
        .collect()
}

/// Asserts two sets of answers are equal, showing the first that differs.
fn assert_same(got: &[String], want: &[String], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: number of answers");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "{what}");
    }
}

fn stop(mut server: Server) {
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGTERM) }, 0);
    let exit = server.wait(Duration::from_secs(15)).expect("stops");
    assert_eq!(exit.code(), Some(0), "{}", server.log());
}

fn count(log: &str, text: &str) -> usize {
    log.lines().filter(|l| l.contains(text)).count()
}

fn start(dir: &Path) -> Server {
    Server::start_with(dir, &[STARTUP_LOG])
}

#[test]
fn a_restart_from_the_persisted_read_models_answers_as_a_full_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let key = created_key(dir.path(), "acme");

    // Killed without a chance to write its snapshots: the next start
    // replays what they do not cover.
    let first = start(dir.path());
    write(&Client::new(&first, &key), 1);
    drop(first);

    let second = start(dir.path());
    let c = Client::new(&second, &key);
    write(&c, 2);
    let live = answers(&c);
    assert!(live[1].contains(r#""count":10"#), "{}", live[1]);
    stop(second);

    let third = start(dir.path());
    let log = third.log();
    assert_eq!(count(&log, "restored from its snapshot"), 2, "{log}");
    assert_eq!(count(&log, "rebuilt from the log"), 0, "{log}");
    assert_same(&answers(&Client::new(&third, &key)), &live, "restart");
    drop(third);

    std::fs::remove_dir_all(dir.path().join("readmodels")).expect("remove the read models");
    let fourth = start(dir.path());
    let log = fourth.log();
    assert_eq!(count(&log, "rebuilt from the log"), 3, "{log}");
    assert_same(&answers(&Client::new(&fourth, &key)), &live, "full rebuild");
}
