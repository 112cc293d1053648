//! The split deployment on the embedded store: `command-service`,
//! `query-service` and `projections` as three processes on one data folder.
//! A write through the command service is read through the query service
//! with `X-Min-Position`; each serves only its own side of the API and the
//! operations routes.

use std::time::Duration;

use serde_json::{json, Value};

use crate::processes::{agent, created_key, Server};

const COMMAND: &str = env!("CARGO_BIN_EXE_command-service");
const QUERY: &str = env!("CARGO_BIN_EXE_query-service");
const PROJECTIONS: &str = env!("CARGO_BIN_EXE_projections");

fn code(r: Result<ureq::Response, ureq::Error>) -> (u16, Option<ureq::Response>) {
    match r {
        Ok(r) => (r.status(), Some(r)),
        Err(ureq::Error::Status(s, r)) => (s, Some(r)),
        Err(e) => panic!("transport: {e}"),
    }
}

#[test]
fn three_processes_on_one_store_serve_writes_reads_and_operations() {
    let dir = tempfile::tempdir().unwrap();
    let key = created_key(dir.path(), "acme");
    let auth = format!("Api-Token {key}");
    let projections = Server::start_binary(PROJECTIONS, dir.path(), &[]);
    let commands = Server::start_binary(COMMAND, dir.path(), &[]);
    let queries = Server::start_binary(QUERY, dir.path(), &[]);
    let credentials = "/api/credentials/orgs/acme/users/admin/";

    // A write through the command service...
    let (status, res) = code(
        agent()
            .post(&format!("{}{credentials}", commands.base))
            .set("Authorization", &auth)
            .send_json(json!({"name": "Split badge"})),
    );
    assert_eq!(status, 200, "{}", commands.log());
    let res = res.unwrap();
    let position = res.header("X-Position").expect("X-Position").to_owned();
    let created: Value = res.into_json().unwrap();
    let id = created["result"]["credential_id"]
        .as_str()
        .expect("credential_id")
        .to_owned();

    // ...is read through the query service once it has reached the write.
    let (status, res) = code(
        agent()
            .get(&format!("{}{credentials}{id}", queries.base))
            .set("Authorization", &auth)
            .set("X-Min-Position", &position)
            .call(),
    );
    assert_eq!(status, 200, "{}", queries.log());
    let read: Value = res.unwrap().into_json().unwrap();
    assert_eq!(read["name"], "Split badge", "{read}");

    // Each service serves its own side only: the other method of a path
    // the other service serves is 405, a path it lacks 404.
    let (status, _) = code(
        agent()
            .get(&format!("{}{credentials}", commands.base))
            .set("Authorization", &auth)
            .call(),
    );
    assert_eq!(status, 405, "the command service answers no list");
    let (status, _) = code(
        agent()
            .post(&format!("{}{credentials}", queries.base))
            .set("Authorization", &auth)
            .send_json(json!({"name": "Not here"})),
    );
    assert_eq!(status, 405, "the query service takes no write");
    let (status, _) = code(
        agent()
            .get(&format!("{}{credentials}{id}", projections.base))
            .set("Authorization", &auth)
            .call(),
    );
    assert_eq!(status, 404, "the projections process serves no API");

    // Every process answers the operations routes, and its own schema.
    for (server, has, lacks) in [(&commands, "post", "get"), (&queries, "get", "post")] {
        for path in ["/healthz", "/readyz", "/metrics"] {
            let (status, _) = code(agent().get(&format!("{}{path}", server.base)).call());
            assert_eq!(status, 200, "{path} on {}", server.base);
        }
        let schema: Value = agent()
            .get(&format!("{}/api/schema/", server.base))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        let ops = &schema["paths"]["/api/credentials/orgs/{org}/users/{user}/"];
        assert!(ops.get(has).is_some(), "{ops}");
        assert!(ops.get(lacks).is_none(), "{ops}");
    }
    let ready: Value = agent()
        .get(&format!("{}/readyz", projections.base))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");

    // Each process built its read models in a folder of its own: only one
    // holds the data folder's default one.
    let holders = [&projections, &commands, &queries]
        .iter()
        .filter(|s| {
            !s.log()
                .contains("another process holds the read models' folder")
        })
        .count();
    assert_eq!(holders, 1);

    // A second write, read at once through the query service (the write's
    // position makes it wait, bounded).
    let (status, res) = code(
        agent()
            .put(&format!("{}{credentials}{id}", commands.base))
            .set("Authorization", &auth)
            .send_json(json!({"name": "Renamed"})),
    );
    assert_eq!(status, 200, "{}", commands.log());
    let position = res.unwrap().header("X-Position").unwrap().to_owned();
    let started = std::time::Instant::now();
    let read: Value = agent()
        .get(&format!("{}{credentials}{id}", queries.base))
        .set("Authorization", &auth)
        .set("X-Min-Position", &position)
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(read["name"], "Renamed");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// With `EVENTSTORE_URL` set, the processes and the operator commands use
/// EventStoreDB: when it cannot be reached they exit 1 naming it, and do
/// not fall back to the embedded store. (The adapter's contract suite runs
/// in `events/kurrentdb` where a server is given.)
#[test]
fn an_unreachable_eventstore_is_named_and_nothing_falls_back_to_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("esdb://127.0.0.1:{port}?tls=false");
    for args in [
        vec![
            crate::processes::BIN,
            "platform",
            "create",
            "--key",
            "acme",
            "--name",
            "Acme",
            "--admin-username",
            "admin",
            "--admin-email",
            "admin@acme.test",
        ],
        vec![crate::processes::BIN, "serve", "--addr", "127.0.0.1:0"],
        vec![COMMAND, "--addr", "127.0.0.1:0"],
    ] {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .arg("--data-dir")
            .arg(dir.path())
            .env("EVENTSTORE_URL", &url)
            .env("RUST_LOG", "off")
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("connecting to EventStoreDB"),
            "{args:?}: {stderr}"
        );
    }
    assert!(
        !dir.path().join("events.db").exists(),
        "no embedded store was made"
    );
}
