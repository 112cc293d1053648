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

const CREDENTIALS: &str = "/api/credentials/orgs/acme/users/admin/";

/// Creates a credential named `name` through the server at `base`; its id.
fn create_credential(base: &str, auth: &str, name: &str) -> String {
    let (status, res) = code(
        agent()
            .post(&format!("{base}{CREDENTIALS}"))
            .set("Authorization", auth)
            .send_json(json!({ "name": name })),
    );
    assert_eq!(status, 200, "creating {name}");
    let created: Value = res.unwrap().into_json().unwrap();
    created["result"]["credential_id"]
        .as_str()
        .expect("credential_id")
        .to_owned()
}

/// `GET` with the key and a minimum position; answers the JSON body.
fn read_at(base: &str, path: &str, auth: &str, position: &str) -> Value {
    let (status, res) = code(
        agent()
            .get(&format!("{base}{path}"))
            .set("Authorization", auth)
            .set("X-Min-Position", position)
            .call(),
    );
    let res = res.unwrap();
    assert_eq!(
        status,
        200,
        "{path}: {}",
        res.into_string().unwrap_or_default()
    );
    res.into_json().unwrap()
}

/// Every page of the platform's assertion list (revoked ones included),
/// as the query service at `base` answers them.
fn all_assertions(base: &str, auth: &str, position: &str) -> (u64, Vec<Value>) {
    let mut items = Vec::new();
    let mut count = 0;
    for page in 1.. {
        let path = format!(
            "/api/credentials/orgs/acme/users/admin/assertions/?include_revoked=true&page_size=100&page={page}"
        );
        let body = read_at(base, &path, auth, position);
        count = body["count"].as_u64().expect("count");
        let results = body["data"].as_array().expect("data").clone();
        let last = results.len() < 100;
        items.extend(results);
        if last || items.len() as u64 >= count {
            break;
        }
    }
    (count, items)
}

/// Creates the SCIM user `username` through the server at `base`.
fn create_user(base: &str, auth: &str, username: &str) {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": username,
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": format!("{username}@x.test"), "primary": true}],
    });
    let (status, _) = code(
        agent()
            .post(&format!("{base}/api/orgs/acme/scim/v2/Users"))
            .set("Authorization", auth)
            .set("Content-Type", "application/scim+json")
            .send_bytes(&serde_json::to_vec(&body).unwrap()),
    );
    assert_eq!(status, 201, "creating {username}");
}

/// The platform's SCIM users matching `query` (`filter=...`, or ""), as
/// the query service at `base` answers them, 50 a page.
fn all_users(base: &str, auth: &str, position: &str, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    loop {
        let path = format!(
            "/api/orgs/acme/scim/v2/Users?count=50&startIndex={}&{query}",
            items.len() + 1
        );
        let body = read_at(base, &path, auth, position);
        let total = body["totalResults"].as_u64().expect("totalResults");
        items.extend(body["Resources"].as_array().expect("Resources").clone());
        if items.len() as u64 >= total {
            return items;
        }
    }
}

/// A mentor-access grant of `mentor` to a user by username, through the
/// command service.
fn grant_mentor(base: &str, auth: &str, mentor: u64, username: &str) {
    let (status, _) = code(
        agent()
            .post(&format!("{base}/api/core/rbac/mentor-access/"))
            .set("Authorization", auth)
            .send_json(json!({
                "platform_key": "acme", "mentor_id": mentor, "role": "viewer",
                "usernames_to_add": [username],
            })),
    );
    assert!(
        [200, 201].contains(&status),
        "granting {mentor} to {username}"
    );
}

/// Every page of an RBAC list (`path` with its query), as the query
/// service at `base` answers it, 100 a page.
fn all_rbac(base: &str, auth: &str, position: &str, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    for page in 1.. {
        let body = read_at(
            base,
            &format!("{path}&page_size=100&page={page}"),
            auth,
            position,
        );
        let count = body["count"].as_u64().expect("count");
        items.extend(body["results"].as_array().expect("results").clone());
        if items.len() as u64 >= count {
            break;
        }
    }
    items
}

/// What the query service at `base` answers of RBAC: policy lists (all,
/// by username, by name), the group list, mentor access and who holds
/// a mentor, and an explained check of the users of those grants.
fn rbac_answers(base: &str, auth: &str, position: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for query in ["", "&username=USER-c1-r2", "&name=mentor-100"] {
        let path = format!("/api/core/rbac/policies/?platform_key=acme{query}");
        out.push(Value::Array(all_rbac(base, auth, position, &path)));
    }
    // The platform's id, from a grant's resource `/platforms/{pk}/mentors/{id}/`.
    let resource = out[0][0]["resources"][0]
        .as_str()
        .expect("a grant's resource");
    let pk = resource
        .split('/')
        .nth(2)
        .expect("a platform id")
        .to_owned();
    let groups = all_rbac(
        base,
        auth,
        position,
        "/api/core/rbac/groups/?platform_key=acme",
    );
    out.push(Value::Array(groups));
    for mentor in [1000, 1102, 1324] {
        let path = format!("/api/core/rbac/mentor-access/?platform_key=acme&mentor_id={mentor}");
        out.push(read_at(base, &path, auth, position));
        let access = format!(
            "/api/core/rbac/access/?platform_key=acme&resource=/platforms/{pk}/mentors/{mentor}/\
             &action=Ibl.Mentor/Mentors/read"
        );
        out.push(Value::Array(all_rbac(base, auth, position, &access)));
    }
    for username in ["User-c0-r0", "User-c3-r24"] {
        let (status, res) = code(
            agent()
                .post(&format!("{base}/api/core/rbac/permissions/check/"))
                .set("Authorization", auth)
                .set("X-Min-Position", position)
                .send_json(json!({
                    "platform_key": "acme", "username": username, "explain": true,
                    "resources": [
                        format!("/platforms/{pk}/mentors/1000/"),
                        format!("/platforms/{pk}/mentors/1324/"),
                    ],
                })),
        );
        assert_eq!(status, 200, "a check of {username}");
        out.push(res.unwrap().into_json().unwrap());
    }
    let holders = out[5].as_array().expect("who has access");
    assert!(
        holders
            .iter()
            .any(|h| h["user"]["username"] == "User-c0-r0"),
        "mentor 1000's viewer holds it: {holders:?}"
    );
    out
}

/// Every page of the platform's credential list filtered by `query`
/// (`search=...`, or ""), as the query service at `base` answers it.
fn all_credentials(base: &str, auth: &str, position: &str, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    for page in 1.. {
        let path = format!("{CREDENTIALS}?page_size=100&page={page}&{query}");
        let body = read_at(base, &path, auth, position);
        let count = body["result"]["count"].as_u64().expect("count");
        items.extend(body["result"]["data"].as_array().expect("data").clone());
        if items.len() as u64 >= count {
            break;
        }
    }
    items
}

/// The log's events on JetStream: each one's `Ibl-Position`, in stream
/// order.
fn published_positions(url: &str) -> Vec<u64> {
    use async_nats::jetstream::{self, consumer::pull};
    use futures_util::StreamExt;
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let js = jetstream::new(async_nats::connect(url).await.expect("connect"));
        let stream = js.get_stream("IBL_EVENTS").await.expect("the stream");
        let consumer = stream
            .create_consumer(pull::Config::default())
            .await
            .expect("a consumer");
        let mut positions = Vec::new();
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(1_000)
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .expect("messages");
            let before = positions.len();
            while let Some(message) = batch.next().await {
                let message = message.expect("a message");
                if message.subject.as_str() == "ibl.audit.checkpoint" {
                    // (The audit log's checkpoints share the stream.)
                    message.ack().await.expect("ack");
                    continue;
                }
                let headers = message.headers.clone().expect("headers");
                let position = headers.get("Ibl-Position").expect("Ibl-Position");
                positions.push(position.as_str().parse().expect("a position"));
                message.ack().await.expect("ack");
            }
            if positions.len() == before {
                return positions;
            }
        }
    })
}

/// The issue's end-to-end check of the split deployment: Redis, NATS and
/// the three binaries as separate processes, the command service and
/// projections on one embedded store. The projections process is killed
/// with SIGKILL in the middle of 10,000 writes and started again; the
/// Redis read model then answers exactly what a rebuild from position 0
/// into another database answers, and every event is on NATS once.
#[test]
fn on_redis_and_nats_a_projector_killed_mid_load_resumes_to_what_a_rebuild_gives() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let redis = crate::redis::Redis::start();
    let nats = crate::relay::start_nats();
    let dir = tempfile::tempdir().unwrap();
    let key = created_key(dir.path(), "acme");
    let auth = format!("Api-Token {key}");
    let live = redis.url(0);
    let projector_env = [
        ("REDIS_URL", live.as_str()),
        ("NATS_URL", nats.url.as_str()),
    ];
    let mut projections = Server::start_binary(PROJECTIONS, dir.path(), &projector_env);
    let commands = Server::start_binary(COMMAND, dir.path(), &[("REDIS_URL", &live)]);
    // (One public URL for both query services: the answers carry it.)
    let public = ("IBL_PUBLIC_URL", "https://api.example.test");
    let queries = Server::start_binary(QUERY, dir.path(), &[("REDIS_URL", &live), public]);
    let credentials = "/api/credentials/orgs/acme/users/admin/";

    let credential = create_credential(&commands.base, &auth, "Split badge");
    let bulk = format!(
        "{}{credentials}{credential}/assertions/bulk/",
        commands.base
    );
    let ready: Value = agent()
        .get(&format!("{}/readyz", queries.base))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(ready["backends"]["redis"]["state"], "up", "{ready}");

    // One issue, read at once through the query service: from Redis, once
    // the projections process has written it there.
    let (status, res) = code(
        agent()
            .post(&bulk)
            .set("Authorization", &auth)
            .send_json(json!({"recipients": [{"email": "first@x.test"}]})),
    );
    assert_eq!(status, 200);
    let res = res.unwrap();
    let position = res.header("X-Position").unwrap().to_owned();
    let first: Value = res.into_json().unwrap();
    let first = first["issued"][0]["entityId"].as_str().unwrap().to_owned();
    let read = read_at(
        &queries.base,
        &format!("{credentials}assertions/{first}"),
        &auth,
        &position,
    );
    assert_eq!(read["entityId"], first.as_str(), "{read}");

    // 10,000 writes from 4 clients (bulk requests of 100); the projections
    // process is killed after a third of them and started again.
    const CLIENTS: usize = 4;
    const REQUESTS: usize = 25;
    let done = AtomicUsize::new(0);
    let last_positions = std::thread::scope(|s| {
        let writers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (bulk, auth, done) = (&bulk, &auth, &done);
                let commands = &commands.base;
                s.spawn(move || {
                    let mut last = String::new();
                    for r in 0..REQUESTS {
                        create_credential(commands, auth, &format!("Badge c{c} r{r}"));
                        let username = format!("User-c{c}-r{r}");
                        create_user(commands, auth, &username);
                        let mentor = 1000 + 100 * c as u64 + r as u64;
                        grant_mentor(commands, auth, mentor, &username);
                        let recipients: Vec<Value> = (0..100)
                            .map(|i| json!({"email": format!("c{c}-r{r}-{i}@x.test")}))
                            .collect();
                        let res = agent()
                            .post(bulk)
                            .set("Authorization", auth)
                            .send_json(json!({ "recipients": recipients }))
                            .expect("a bulk issue");
                        last = res.header("X-Position").unwrap().to_owned();
                        let body: Value = res.into_json().unwrap();
                        assert_eq!(body["issued"].as_array().unwrap().len(), 100);
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    last
                })
            })
            .collect();
        while done.load(Ordering::SeqCst) < CLIENTS * REQUESTS / 3 {
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: a signal to our own child process.
        unsafe { libc::kill(projections.pid(), libc::SIGKILL) };
        projections.wait(Duration::from_secs(10)).expect("killed");
        let killed_at = done.load(Ordering::SeqCst);
        assert!(killed_at < CLIENTS * REQUESTS, "killed mid-load");
        projections = Server::start_binary(PROJECTIONS, dir.path(), &projector_env);
        writers
            .into_iter()
            .map(|w| w.join().expect("a writer"))
            .collect::<Vec<_>>()
    });

    // Ten revocations, then the last write's position.
    let list = read_at(
        &queries.base,
        &format!("{credentials}assertions/?page_size=10"),
        &auth,
        &last_positions[0],
    );
    let mut position = String::new();
    for item in list["data"].as_array().unwrap() {
        let id = item["entityId"].as_str().unwrap();
        let res = agent()
            .put(&format!("{}{credentials}assertions/{id}", commands.base))
            .set("Authorization", &auth)
            .send_json(json!({"revoked": true, "revocationReason": "test"}))
            .expect("a revocation");
        position = res.header("X-Position").unwrap().to_owned();
    }

    // Every write, through the query service on the Redis model.
    let (count, live_items) = all_assertions(&queries.base, &auth, &position);
    assert_eq!(count, 1 + (CLIENTS * REQUESTS * 100) as u64);
    assert_eq!(live_items.len() as u64, count);
    let revoked = live_items
        .iter()
        .filter(|a| a["revoked"] == json!(true))
        .count();
    assert_eq!(revoked, 10);

    let searches = [
        "",
        "search=BADGE",
        "search=c1%20r2",
        "search=r1",
        "search=b",
    ];
    let live_credentials: Vec<Vec<Value>> = searches
        .iter()
        .map(|q| all_credentials(&queries.base, &auth, &position, q))
        .collect();
    assert_eq!(live_credentials[0].len(), 1 + CLIENTS * REQUESTS);
    assert_eq!(
        live_credentials[1].len(),
        1 + CLIENTS * REQUESTS,
        "and Split badge"
    );
    assert_eq!(live_credentials[2].len(), 6, "c1 r2, r20 to r24");
    let filters = [
        "",
        "filter=userName%20eq%20%22user-C1-R2%22",
        "filter=emails.value%20eq%20%22USER-c3-r24%40x.test%22",
    ];
    let live_users: Vec<Vec<Value>> = filters
        .iter()
        .map(|q| all_users(&queries.base, &auth, &position, q))
        .collect();
    assert_eq!(live_users[0].len(), 1 + CLIENTS * REQUESTS, "and the admin");
    assert_eq!(live_users[1].len(), 1);
    assert_eq!(live_users[1][0]["userName"], "User-c1-r2");
    assert_eq!(live_users[2].len(), 1);
    let live_rbac = rbac_answers(&queries.base, &auth, &position);
    assert_eq!(
        live_rbac[0].as_array().unwrap().len(),
        CLIENTS * REQUESTS,
        "a policy per grant"
    );
    assert_eq!(live_rbac[1].as_array().unwrap().len(), 1, "User-c1-r2's");
    assert_eq!(
        live_rbac[2].as_array().unwrap().len(),
        10,
        "mentor-100 and mentor-1000 to 1009"
    );

    // A rebuild from position 0 into another database answers the same.
    let rebuilt = redis.url(1);
    let rebuild_dir = tempfile::tempdir().unwrap();
    let rebuild_env = [
        ("REDIS_URL", rebuilt.as_str()),
        ("IBL_READ_MODELS_DIR", rebuild_dir.path().to_str().unwrap()),
    ];
    let _rebuilder = Server::start_binary(PROJECTIONS, dir.path(), &rebuild_env);
    let reader = Server::start_binary(QUERY, dir.path(), &[("REDIS_URL", &rebuilt), public]);
    let (rebuilt_count, rebuilt_items) = all_assertions(&reader.base, &auth, &position);
    assert_eq!(rebuilt_count, count);
    if let Some((live, rebuilt)) = live_items.iter().zip(&rebuilt_items).find(|(a, b)| a != b) {
        panic!("the live Redis model differs from a rebuild:\n{live}\n{rebuilt}");
    }
    for (query, live) in searches.iter().zip(&live_credentials) {
        let rebuilt = all_credentials(&reader.base, &auth, &position, query);
        assert_eq!(
            &rebuilt, live,
            "credentials {query:?}: live and rebuilt differ"
        );
    }
    assert_eq!(
        rbac_answers(&reader.base, &auth, &position),
        live_rbac,
        "RBAC: live and rebuilt differ"
    );

    // Every event on NATS once, in order, after the projector's restart.
    let head = {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let text = agent()
                .get(&format!("{}/metrics", projections.base))
                .call()
                .unwrap()
                .into_string()
                .unwrap();
            let metric = |name: &str| crate::helpers::metric(&text, name);
            if metric("ibl_relay_lag_events ") == Some(0.0) {
                break metric("ibl_store_head_position ").expect("head") as u64;
            }
            assert!(std::time::Instant::now() < deadline, "{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let published = published_positions(&nats.url);
    assert_eq!(published, (1..=head).collect::<Vec<_>>());

    // `ibl replay` rebuilds the models in an empty database and finds the
    // live ones (written by a projector killed mid-load) the same.
    let replay = |target: &str| {
        std::process::Command::new(crate::processes::BIN)
            .args(["replay", "--target", target, "--data-dir"])
            .arg(dir.path())
            .env("REDIS_URL", &live)
            .env_remove("EVENTSTORE_URL")
            .output()
            .expect("ibl runs")
    };
    let out = replay(&redis.url(2));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for model in ["assertions", "catalog", "keys", "rbac"] {
        assert!(
            text.contains(&format!("{model} at position {head}: same")),
            "{model} in {text}"
        );
    }
    // A target that is not empty is refused.
    let out = replay(&redis.url(2));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give an empty database"));
    // A user slipped into the live RBAC model behind the projector's back
    // is found.
    let forged = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "-n", "0", "SET"])
        .args([
            "ibl:rbac:{acme}:u:999999",
            r#"{"n":"mallory","e":"","a":true}"#,
        ])
        .output()
        .expect("redis-cli runs");
    assert!(forged.status.success());
    let out = replay(&redis.url(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("DIFFER: rbac\n"), "{text}");
}

/// Redis stopped under load and started again empty: reads answer 503
/// with `Retry-After` meanwhile, writes answer 200 or 503 (a 503 wrote
/// nothing), never a 500; the projector rebuilds the model, and every
/// acknowledged write is read back.
#[test]
fn redis_stopped_under_load_answers_503_and_back_empty_is_rebuilt_with_every_write() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut redis = crate::redis::Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let key = created_key(dir.path(), "acme");
    let auth = format!("Api-Token {key}");
    let url = redis.url(0);
    let env = [("REDIS_URL", url.as_str())];
    let _projections = Server::start_binary(PROJECTIONS, dir.path(), &env);
    let commands = Server::start_binary(COMMAND, dir.path(), &env);
    let queries = Server::start_binary(QUERY, dir.path(), &env);
    let credentials = "/api/credentials/orgs/acme/users/admin/";
    let credential = create_credential(&commands.base, &auth, "Through an outage");
    let issue = format!("{}{credentials}{credential}/assertions/", commands.base);
    let list = format!("{}{credentials}assertions/?page_size=1", queries.base);

    let stop = AtomicBool::new(false);
    let (writes, reads) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut answers = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let (status, res) = code(
                    agent()
                        .post(&issue)
                        .set("Authorization", &auth)
                        .send_json(json!({"recipient": {"email": format!("l{i}@x.test")}})),
                );
                let position = res
                    .and_then(|r| r.header("X-Position").map(str::to_owned))
                    .filter(|_| status == 200);
                answers.push((status, position));
                std::thread::sleep(Duration::from_millis(5));
            }
            answers
        });
        let reader = s.spawn(|| {
            let mut answers = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let (status, res) = code(agent().get(&list).set("Authorization", &auth).call());
                let retry = res.and_then(|r| r.header("Retry-After").map(str::to_owned));
                answers.push((status, retry));
                std::thread::sleep(Duration::from_millis(5));
            }
            answers
        });
        std::thread::sleep(Duration::from_millis(500));
        redis.restart_empty_after(|| std::thread::sleep(Duration::from_millis(1500)));
        // Until reads recover (the rebuild's time depends on the machine),
        // then a little longer.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline
            && code(agent().get(&list).set("Authorization", &auth).call()).0 != 200
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        (writer.join().unwrap(), reader.join().unwrap())
    });

    let unexpected: Vec<_> = writes
        .iter()
        .filter(|(s, _)| ![200, 503].contains(s))
        .collect();
    assert!(unexpected.is_empty(), "writes: {unexpected:?}");
    assert!(
        reads.iter().all(|(s, _)| [200, 503].contains(s)),
        "reads: {:?}",
        reads.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    let unavailable: Vec<_> = reads.iter().filter(|(s, _)| *s == 503).collect();
    assert!(!unavailable.is_empty(), "reads failed while Redis was down");
    assert!(
        unavailable.iter().all(|(_, retry)| retry.is_some()),
        "a 503 says when to retry"
    );
    assert!(
        reads.last().is_some_and(|(s, _)| *s == 200),
        "reads recover"
    );

    // Every acknowledged issue is in the rebuilt model, and nothing else.
    let acknowledged = writes.iter().filter(|(s, _)| *s == 200).count();
    let last = writes
        .iter()
        .rev()
        .find_map(|(_, p)| p.clone())
        .expect("writes succeeded");
    let body = read_at(
        &queries.base,
        &format!("{credentials}assertions/?page_size=1"),
        &auth,
        &last,
    );
    assert_eq!(body["count"].as_u64(), Some(acknowledged as u64), "{body}");
}

/// `IBL_READ_CONSISTENCY=strong`: a read sent without `X-Min-Position`
/// right after a write through another process sees it (it waits for the
/// store's last commit); each read of 30 does.
#[test]
fn strong_reads_see_every_earlier_write_of_another_process_without_a_header() {
    let dir = tempfile::tempdir().unwrap();
    let key = created_key(dir.path(), "acme");
    let auth = format!("Api-Token {key}");
    let commands = Server::start_binary(COMMAND, dir.path(), &[]);
    let queries = Server::start_binary(QUERY, dir.path(), &[("IBL_READ_CONSISTENCY", "strong")]);
    let credentials = "/api/credentials/orgs/acme/users/admin/";
    for i in 0..30 {
        let id = create_credential(&commands.base, &auth, &format!("Badge {i}"));
        let (status, res) = code(
            agent()
                .get(&format!("{}{credentials}{id}", queries.base))
                .set("Authorization", &auth)
                .call(),
        );
        assert_eq!(status, 200, "write {i} not seen: {}", queries.log());
        let read: Value = res.unwrap().into_json().unwrap();
        assert_eq!(read["name"], format!("Badge {i}"));
    }
}

/// The temporary read-models folder of a process killed with SIGKILL is
/// removed by the next process that makes one; a live process's is kept.
#[test]
fn a_killed_process_s_temporary_read_models_are_swept_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    created_key(dir.path(), "acme");
    let temporary = || -> Vec<std::path::PathBuf> {
        let mut found: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("readmodels-"))
            .map(|e| e.path())
            .collect();
        found.sort();
        found
    };
    let _holder = Server::start_binary(COMMAND, dir.path(), &[]);
    let mut killed = Server::start_binary(QUERY, dir.path(), &[]);
    let live = Server::start_binary(QUERY, dir.path(), &[]);
    assert_eq!(temporary().len(), 2);
    // SAFETY: a signal to our own child process.
    unsafe { libc::kill(killed.pid(), libc::SIGKILL) };
    killed.wait(Duration::from_secs(10)).expect("killed");
    let before = temporary();
    let _next = Server::start_binary(QUERY, dir.path(), &[]);
    let after = temporary();
    assert_eq!(after.len(), 2, "{before:?} -> {after:?}");
    let kept: Vec<_> = before.iter().filter(|p| after.contains(p)).collect();
    assert_eq!(kept.len(), 1, "only the live process's folder is kept");
    drop(live);
}

/// A write's answer comes from the write itself, not from a read model that
/// may lag or be down: with Redis stopped, an issue and a revocation
/// through `ibl serve` still answer 200 with the assertion, while reads of
/// the assertions answer 503.
#[test]
fn writes_are_answered_from_their_own_result_while_redis_is_down() {
    let redis = crate::redis::Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let key = created_key(dir.path(), "acme");
    let auth = format!("Api-Token {key}");
    let url = redis.url(0);
    let server = Server::start_with(dir.path(), &[("REDIS_URL", url.as_str())]);
    let credentials = format!("{}{CREDENTIALS}", server.base);
    let credential = create_credential(&server.base, &auth, "Outage");
    let issue = |email: &str| -> Value {
        agent()
            .post(&format!("{credentials}{credential}/assertions/"))
            .set("Authorization", &auth)
            .send_json(json!({"recipient": {"email": email}}))
            .expect("issued")
            .into_json()
            .unwrap()
    };
    let first = issue("before@x.test");
    let first = first["entityId"].as_str().unwrap().to_owned();
    drop(redis);

    let revoked: Value = agent()
        .put(&format!("{credentials}assertions/{first}"))
        .set("Authorization", &auth)
        .send_json(json!({"revoked": true, "revocationReason": "outage"}))
        .expect("revoked while Redis is down")
        .into_json()
        .unwrap();
    assert_eq!(revoked["entityId"], first.as_str(), "{revoked}");
    assert_eq!(revoked["revoked"], true, "{revoked}");
    let second = issue("during@x.test");
    assert_eq!(second["recipient"]["email"], "during@x.test", "{second}");
    let (status, res) = code(
        agent()
            .get(&format!("{credentials}assertions/"))
            .set("Authorization", &auth)
            .call(),
    );
    assert_eq!(status, 503);
    assert!(res.unwrap().header("Retry-After").is_some());
}

/// Redis restarted empty while nothing is written: the projections process
/// notices within about a second (it compares checkpoints while the log is
/// idle) and rebuilds the model, and the query service answers every
/// assertion again, without a new write; the key it authenticates with
/// (read from Redis too) is unavailable meanwhile, never refused.
#[test]
fn redis_back_empty_while_the_log_is_idle_is_rebuilt_without_a_write() {
    let mut redis = crate::redis::Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let key = created_key(dir.path(), "acme");
    let auth = format!("Api-Token {key}");
    let url = redis.url(0);
    let env = [("REDIS_URL", url.as_str())];
    let _projections = Server::start_binary(PROJECTIONS, dir.path(), &env);
    let commands = Server::start_binary(COMMAND, dir.path(), &env);
    let queries = Server::start_binary(QUERY, dir.path(), &env);
    let credentials = "/api/credentials/orgs/acme/users/admin/";
    let credential = create_credential(&commands.base, &auth, "Idle");
    let res = agent()
        .post(&format!(
            "{}{credentials}{credential}/assertions/bulk/",
            commands.base
        ))
        .set("Authorization", &auth)
        .send_json(json!({"recipients": [{"email": "a@x.test"}, {"email": "b@x.test"}]}))
        .unwrap();
    let position = res.header("X-Position").unwrap().to_owned();
    let list = format!("{credentials}assertions/?page_size=10");
    assert_eq!(read_at(&queries.base, &list, &auth, &position)["count"], 2);

    redis.restart_empty_after(|| std::thread::sleep(Duration::from_millis(200)));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let tokens = "/api/core/platform/api-tokens/?platform_key=acme";
    type Ready = fn(&Value) -> bool;
    let rebuilt: [(&str, Ready); 2] = [
        (&list, |body| body["count"] == 2),
        (tokens, |body| body.as_array().map(Vec::len) == Some(1)),
    ];
    for (path, ready) in rebuilt {
        loop {
            let (status, res) = code(
                agent()
                    .get(&format!("{}{path}", queries.base))
                    .set("Authorization", &auth)
                    .call(),
            );
            // The key is read from Redis too: unavailable while its model
            // is written again, never refused.
            assert!(
                [200, 503].contains(&status),
                "{path} while Redis is rebuilt: {status}"
            );
            if status == 200 && ready(&res.unwrap().into_json().unwrap()) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} not rebuilt: {status}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// With strong reads, the query service judges a key as the log has it
/// when the request arrives: a key deleted through the command service is
/// refused at once (401), each of 10 times, not after the query service's
/// models catch up.
#[test]
fn strong_reads_refuse_a_key_deleted_through_another_process_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = created_key(dir.path(), "acme");
    let auth = format!("Api-Token {key}");
    let commands = Server::start_binary(COMMAND, dir.path(), &[]);
    let queries = Server::start_binary(QUERY, dir.path(), &[("IBL_READ_CONSISTENCY", "strong")]);
    let list = format!("{}/api/credentials/orgs/acme/users/admin/", queries.base);
    for i in 0..10 {
        let name = format!("short-lived-{i}");
        let made: Value = agent()
            .post(&format!("{}/api/core/platform/api-tokens/", commands.base))
            .set("Authorization", &auth)
            .send_json(json!({"name": name, "platform_key": "acme", "username": "admin"}))
            .expect("a key")
            .into_json()
            .unwrap();
        let secret = made["key"].as_str().expect("the secret").to_owned();
        let (status, _) = code(
            agent()
                .get(&list)
                .set("Authorization", &format!("Api-Token {secret}"))
                .call(),
        );
        assert_eq!(status, 200, "a new key is accepted at once");
        let (status, _) = code(
            agent()
                .delete(&format!(
                    "{}/api/core/platform/api-tokens/{name}?platform_key=acme",
                    commands.base
                ))
                .set("Authorization", &auth)
                .call(),
        );
        assert_eq!(status, 204);
        let (status, _) = code(
            agent()
                .get(&list)
                .set("Authorization", &format!("Api-Token {secret}"))
                .call(),
        );
        assert_eq!(status, 401, "key {i}, deleted, is refused at once");
    }
}

/// A check at a past time needs the audit log, which the projections
/// process keeps: the query service answers it `307` to the projections
/// process's route on its public URL (the gateway, here the projections
/// process itself), where the same body is answered as of then.
#[test]
fn a_past_check_sent_to_the_query_service_is_redirected_to_the_audit_log_s_process() {
    let dir = tempfile::tempdir().unwrap();
    let key = created_key(dir.path(), "acme");
    let auth = format!("Api-Token {key}");
    let projections = Server::start_binary(PROJECTIONS, dir.path(), &[]);
    let queries = Server::start_binary(
        QUERY,
        dir.path(),
        &[("IBL_PUBLIC_URL", projections.base.as_str())],
    );
    let head: u64 = agent()
        .get(&format!("{}/metrics", projections.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("ibl_store_head_position "))
        .and_then(|p| p.trim().parse().ok())
        .expect("the store's head in /metrics");
    // (Both have read the log up to the platform's creation once they
    // are healthy.)
    for server in [&projections, &queries] {
        let healthy = (0..500).any(|_| {
            let (status, _) = code(agent().get(&format!("{}/healthz", server.base)).call());
            status == 200 || {
                std::thread::sleep(Duration::from_millis(10));
                false
            }
        });
        assert!(healthy, "{}", server.log());
    }
    let no_redirects = ureq::AgentBuilder::new().redirects(0).build();
    let check = |agent: &ureq::Agent, url: &str, body: &Value| {
        let (status, res) = code(
            agent
                .post(url)
                .set("Authorization", &auth)
                .send_json(body.clone()),
        );
        let res = res.expect("an answer");
        let location = res.header("Location").map(str::to_owned);
        (
            status,
            location,
            res.into_json::<Value>().unwrap_or(Value::Null),
        )
    };
    let resources = json!(["/platforms/1/credentials/", "/platforms/1/users/"]);
    let now_body = json!({"platform_key": "acme", "resources": resources});
    let (status, _, now) = check(
        &no_redirects,
        &format!("{}/api/core/rbac/permissions/check/", queries.base),
        &now_body,
    );
    assert_eq!(status, 200, "{now} {}", queries.log());
    let granted = now.to_string().matches("true").count();
    assert!(granted > 0, "the admin holds something now: {now}");

    let past_route = format!("{}/api/audit/permissions/check/", projections.base);
    for (at, expect_granted) in [(head, granted), (1, 0)] {
        let body = json!({"platform_key": "acme", "resources": resources, "at_position": at});
        let (status, location, answer) = check(
            &no_redirects,
            &format!("{}/api/core/rbac/permissions/check/", queries.base),
            &body,
        );
        assert_eq!(status, 307, "{answer}");
        assert_eq!(location.as_deref(), Some(past_route.as_str()));
        assert!(answer["detail"]
            .as_str()
            .unwrap_or("")
            .contains(&past_route));
        let (status, _, then) = check(&no_redirects, &past_route, &body);
        assert_eq!(status, 200, "{then} {}", projections.log());
        assert_eq!(
            then.to_string().matches("true").count(),
            expect_granted,
            "at {at}: {then}"
        );
        if at == head {
            assert_eq!(then, now, "nothing changed since the head");
        }
    }
    // The past route takes only past checks; the audit log's process
    // answers a check of now at the core route.
    let (status, _, error) = check(&no_redirects, &past_route, &now_body);
    assert_eq!(status, 400, "{error}");
    assert!(error.to_string().contains("at_position"), "{error}");
}
