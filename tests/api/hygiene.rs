//! What the API gives away, and to whom: position tokens instead of the
//! store's position, URLs from the configured public URL, JSON error bodies,
//! body timeouts, the public route's rate limit.

use serde_json::json;

use crate::helpers::{creds, spawn_app, spawn_app_with, Resp, TestApp, ORG};
use crate::processes::{agent, created_key, Server, BIN};

/// A token of the same shape as the server's, under another key.
fn foreign_token(position: u64) -> String {
    ibl_edge::position::PositionKey::new([42; 32]).encode(position)
}

fn read_at(app: &TestApp, token: &str) -> Resp {
    app.get(&creds("")).header("X-Min-Position", token).send()
}

#[test]
fn writes_answer_an_opaque_position_token_that_reads_accept() {
    let app = spawn_app();
    let first = app.post_credential(&json!({"name": "One"}));
    let second = app.post_credential(&json!({"name": "Two"}));
    let (a, b) = (first.position().to_owned(), second.position().to_owned());
    assert_ne!(a, b);
    let (pa, pb) = (app.position_of(&first), app.position_of(&second));
    assert!(pb > pa, "{pb} after {pa}");
    for token in [&a, &b] {
        let list = read_at(&app, token).expect(200);
        assert_eq!(list.body["result"]["count"], 2);
    }
    // The same token on every read route that waits, SCIM and RBAC too.
    app.get(&format!("/api/orgs/{ORG}/scim/v2/Users"))
        .header("X-Min-Position", &b)
        .send()
        .expect(200);
    app.get(&format!("/api/core/rbac/roles/?platform_key={ORG}"))
        .header("X-Min-Position", &b)
        .send()
        .expect(200);
}

#[test]
fn a_position_that_is_not_a_token_of_this_server_is_a_400() {
    let app = spawn_app();
    let written = app.post_credential(&json!({"name": "Tok"}));
    let token = written.position().to_owned();
    let position = app.position_of(&written);
    let mut flipped = token.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    for bad in [
        position.to_string(),
        "1".to_owned(),
        "-1".to_owned(),
        "p1.".to_owned(),
        flipped,
        token.to_uppercase(),
        format!("{token}0"),
        foreign_token(position),
    ] {
        let resp = read_at(&app, &bad).expect_client_error(400);
        assert_eq!(resp.body["code"], "bad_request", "{bad}");
        assert!(
            resp.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("X-Min-Position")),
            "{bad}: {}",
            resp.text
        );
    }
    // The server's own token of the same position is fine.
    read_at(&app, &token).expect(200);
}

#[test]
fn the_position_key_is_kept_beside_the_store_not_in_the_log() {
    let app = spawn_app();
    app.post_credential(&json!({"name": "Key"}));
    let path = app.dir.path().join("position.key");
    let text = std::fs::read_to_string(&path).expect("position.key was made");
    let key = text.trim();
    assert_eq!(key.len(), 64, "{key}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "position.key has mode {mode:o}");
    }
    let from_file = ibl_edge::position::PositionKey::from_hex(key).unwrap();
    assert_eq!(from_file.encode(3), app.token(3));
    for event in app.events() {
        let text = format!("{event:?}");
        assert!(
            !text.contains(key),
            "the key is in event {}",
            event.position
        );
    }
}

#[test]
fn a_configured_position_key_is_used() {
    let key = ibl_edge::position::PositionKey::new([42; 32]);
    let app = spawn_app_with(|s| s.position_key = Some(key.clone()));
    let written = app.post_credential(&json!({"name": "Configured"}));
    assert!(key.decode(written.position()).is_ok());
    assert!(
        !app.dir.path().join("position.key").exists(),
        "no key file is made when a key is configured"
    );
}

/// `status`, `X-Position` and JSON body of a ureq answer.
fn answer(r: Result<ureq::Response, ureq::Error>) -> (u16, Option<String>, serde_json::Value) {
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let position = r.header("X-Position").map(str::to_owned);
    (
        r.status(),
        position,
        r.into_json().unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn position_tokens_outlive_a_restart_and_follow_a_configured_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = created_key(dir.path(), "acme");
    let auth = format!("Api-Token {key}");
    let list = "/api/credentials/orgs/acme/users/admin/";
    let server = Server::start_with(dir.path(), &[]);
    let (status, token, _) = answer(
        agent()
            .post(&format!("{}{list}", server.base))
            .set("Authorization", &auth)
            .send_json(json!({"name": "Kept"})),
    );
    assert_eq!(status, 200);
    let token = token.expect("an X-Position");
    drop(server);

    let read = |server: &Server| {
        answer(
            agent()
                .get(&format!("{}{list}", server.base))
                .set("Authorization", &auth)
                .set("X-Min-Position", &token)
                .call(),
        )
    };
    let server = Server::start_with(dir.path(), &[]);
    assert_eq!(read(&server).0, 200, "{}", server.log());
    drop(server);

    let configured = "ab".repeat(32);
    let server = Server::start_with(dir.path(), &[("IBL_POSITION_KEY", &configured)]);
    let (status, _, body) = read(&server);
    assert_eq!(
        status, 400,
        "a token of the file's key under another: {body}"
    );
    let (_, written, _) = answer(
        agent()
            .post(&format!("{}{list}", server.base))
            .set("Authorization", &auth)
            .send_json(json!({"name": "Configured"})),
    );
    let written = written.expect("an X-Position");
    let key = ibl_edge::position::PositionKey::from_hex(&configured).unwrap();
    assert!(key.decode(&written).is_ok(), "{written}");
}

// ---------------------------------------------------------------- raw HTTP

/// An answer read off a raw connection.
#[derive(Debug)]
pub(crate) struct Raw {
    pub status: u16,
    /// The status line and the headers.
    pub head: String,
    pub text: String,
    pub body: serde_json::Value,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn addr_of(base: &str) -> &str {
    base.strip_prefix("http://").expect("an http base")
}

/// Sends `request` as it is on a new connection and reads until the server
/// closes it (or 10 s pass). `None` when the server closed without a word.
pub(crate) fn raw(base: &str, request: &[u8]) -> Option<Raw> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr_of(base)).expect("a connection");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // The server may answer and close before it has read everything.
    let _ = stream.write_all(request);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    parse_raw(&bytes)
}

fn parse_raw(bytes: &[u8]) -> Option<Raw> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Raw {
        status,
        head: head.to_owned(),
        text: body.to_owned(),
        body: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    })
}

/// A GET with these extra header lines, closing after the answer.
fn get_with(app_base: &str, key: &str, path: &str, extra: &str) -> Raw {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Api-Token {key}\r\n{extra}Connection: close\r\n\r\n",
        addr_of(app_base)
    );
    raw(app_base, request.as_bytes()).expect("an answer")
}

/// Every string of a JSON value that looks like a URL.
fn urls(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) if s.starts_with("http") => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| urls(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| urls(v, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------- public URL

const SPOOF: &str = "X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\nForwarded: host=evil.example;proto=https\r\n";

/// Paths whose answers hold URLs, in a store with two of everything.
fn paths_with_links(app: &TestApp) -> Vec<String> {
    let credential = app.create_credential("Linked");
    app.create_credential("Linked too");
    let assertion = app.issue(&credential, "a@x.test");
    app.issue(&credential, "b@x.test");
    app.post(&creds("issuers/"))
        .json(&json!({"name": "Issuer"}))
        .send()
        .expect(200);
    for name in ["links-a", "links-b"] {
        app.post(&format!("/api/orgs/{ORG}/scim/v2/Users"))
            .json(&json!({"userName": name, "emails": [{"value": format!("{name}@x.test")}]}))
            .send()
            .expect(201);
    }
    let aid = assertion["entityId"].as_str().unwrap();
    vec![
        creds("?page_size=1"),
        creds("?page_size=1&page=2"),
        creds(&credential),
        creds("assertions/?page_size=1"),
        creds(&format!("{credential}/assertions/?page_size=1")),
        creds(&format!("assertions/{aid}")),
        format!("/api/credentials/public/assertions/{aid}/"),
        creds("issuers/"),
        format!("/api/orgs/{ORG}/scim/v2/Users"),
        format!("/api/core/rbac/roles/?platform_key={ORG}&page_size=1"),
    ]
}

#[test]
fn links_never_follow_the_host_the_client_names() {
    let app = spawn_app();
    for path in paths_with_links(&app) {
        let host = "Host: evil.example\r\n";
        let request = format!(
            "GET {path} HTTP/1.1\r\n{host}{SPOOF}Authorization: Api-Token {}\r\nConnection: close\r\n\r\n",
            app.key
        );
        let resp = raw(&app.base, request.as_bytes()).expect("an answer");
        assert_eq!(resp.status, 200, "{path}: {}", resp.text);
        assert!(!resp.text.contains("evil"), "{path}: {}", resp.text);
        let mut found = Vec::new();
        urls(&resp.body, &mut found);
        assert!(!found.is_empty(), "{path} holds no URL: {}", resp.text);
        for url in found {
            assert!(url.starts_with(&format!("{}/", app.base)), "{path}: {url}");
        }
    }
    // A SCIM create: its Location too.
    let body = json!({"userName": "located", "emails": [{"value": "located@x.test"}]}).to_string();
    let request = format!(
        "POST /api/orgs/{ORG}/scim/v2/Users HTTP/1.1\r\nHost: evil.example\r\n{SPOOF}Authorization: Api-Token {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        app.key,
        body.len()
    );
    let resp = raw(&app.base, request.as_bytes()).expect("an answer");
    assert_eq!(resp.status, 201, "{}", resp.text);
    let location = resp.header("Location").expect("a Location");
    assert!(location.starts_with(&app.base), "{location}");
    assert!(!resp.text.contains("evil"), "{}", resp.text);
}

#[test]
fn a_configured_public_url_starts_every_link() {
    let public = "https://api.example.com/ibl";
    let app = spawn_app_with(|s| {
        s.public_url = Some(ibl_edge::wire::PublicUrl::parse(&format!("{public}/")).unwrap())
    });
    for path in paths_with_links(&app) {
        let resp = get_with(&app.base, &app.key, &path, SPOOF);
        assert_eq!(resp.status, 200, "{path}: {}", resp.text);
        let mut found = Vec::new();
        urls(&resp.body, &mut found);
        assert!(!found.is_empty(), "{path} holds no URL: {}", resp.text);
        for url in found {
            assert!(url.starts_with(&format!("{public}/api/")), "{path}: {url}");
        }
    }
}

#[test]
fn the_public_url_comes_from_ibl_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let key = created_key(dir.path(), "acme");
    let server = Server::start_with(dir.path(), &[("IBL_PUBLIC_URL", "https://api.example.com")]);
    let list = format!("{}/api/credentials/orgs/acme/users/admin/", server.base);
    for name in ["One", "Two"] {
        agent()
            .post(&list)
            .set("Authorization", &format!("Api-Token {key}"))
            .send_json(json!({ "name": name }))
            .expect("a credential");
    }
    let resp = get_with(
        &server.base,
        &key,
        "/api/credentials/orgs/acme/users/admin/?page_size=1",
        SPOOF,
    );
    assert_eq!(resp.status, 200, "{}", resp.text);
    let next = resp.body["result"]["next"].as_str().unwrap();
    assert_eq!(
        next,
        "https://api.example.com/api/credentials/orgs/acme/users/admin?page_size=1&page=2"
    );
    let url = resp.body["result"]["data"][0]["credential_url"]
        .as_str()
        .unwrap();
    assert!(url.starts_with("https://api.example.com/api/"), "{url}");
}

#[test]
fn bad_settings_stop_the_start_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bad, said) in [
        ("IBL_PUBLIC_URL", "ftp://api.example.com", "public URL"),
        (
            "IBL_PUBLIC_URL",
            "https://api.example.com/?x=1",
            "public URL",
        ),
        ("IBL_PUBLIC_URL", "api.example.com", "public URL"),
        ("IBL_PUBLIC_RATE", "0", "public-rate"),
        ("IBL_PUBLIC_RATE", "fast", "public-rate"),
        ("IBL_PUBLIC_BURST", "0", "public-burst"),
        ("IBL_BODY_TIMEOUT_SECS", "0", "body-timeout-secs"),
        ("IBL_POSITION_KEY", "abc", "position-key"),
        ("IBL_POSITION_KEY", &"7e".repeat(31), "position-key"),
    ] {
        let out = std::process::Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env(name, bad)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("ibl runs");
        assert!(!out.status.success(), "{name}={bad} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(said), "{name}={bad}: {stderr}");
        if name == "IBL_POSITION_KEY" {
            assert!(!stderr.contains(bad), "a refused key was echoed: {stderr}");
        }
    }
}

// ---------------------------------------------------------------- body timeout

/// What a slow client saw: the answer (if any), when its first byte came,
/// and whether the server then closed the connection.
struct Slow {
    answer: Option<Raw>,
    first_byte: Option<std::time::Duration>,
    closed: bool,
}

/// Sends `start`, then one more byte every `every` (if given) until the
/// server answers or closes, reading for at most 10 s.
fn slow_client(base: &str, start: &[u8], every: Option<std::time::Duration>) -> Slow {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut stream = std::net::TcpStream::connect(addr_of(base)).expect("a connection");
    let began = std::time::Instant::now();
    stream.write_all(start).expect("the start is sent");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = every.map(|every| {
        let mut stream = stream.try_clone().unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(every);
                if stream.write_all(b" ").is_err() {
                    break;
                }
            }
        })
    });
    stream
        .set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let (mut bytes, mut first_byte, mut closed) = (Vec::new(), None, false);
    let mut buf = [0u8; 4096];
    while began.elapsed() < std::time::Duration::from_secs(10) {
        match stream.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => {
                first_byte.get_or_insert_with(|| began.elapsed());
                bytes.extend_from_slice(&buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    if let Some(writer) = writer {
        writer.join().unwrap();
    }
    Slow {
        answer: parse_raw(&bytes),
        first_byte,
        closed,
    }
}

/// A POST of a credential announcing `length` bytes of body.
fn post_head(key: &str, base: &str, length: usize) -> String {
    format!(
        "POST /api/credentials/orgs/acme/users/admin/ HTTP/1.1\r\nHost: {}\r\nAuthorization: Api-Token {key}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
        addr_of(base)
    )
}

#[track_caller]
fn assert_timed_out(slow: &Slow, what: &str) {
    let answer = slow
        .answer
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no answer"));
    assert_eq!(answer.status, 408, "{what}: {answer:?}");
    assert_eq!(answer.body["code"], "request_timeout", "{what}: {answer:?}");
    assert!(answer.body["detail"].is_string(), "{what}: {answer:?}");
    let at = slow.first_byte.unwrap();
    assert!(
        at >= std::time::Duration::from_millis(1500) && at <= std::time::Duration::from_secs(5),
        "{what}: answered after {at:?}"
    );
    assert!(slow.closed, "{what}: the connection stayed open");
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_a_408_and_the_connection_closes() {
    let dir = tempfile::tempdir().unwrap();
    let key = created_key(dir.path(), "acme");
    let server = Server::start_with(dir.path(), &[("IBL_BODY_TIMEOUT_SECS", "2")]);

    // 10 bytes of 100, then nothing.
    let mut start = post_head(&key, &server.base, 100).into_bytes();
    start.extend_from_slice(br#"{"name": "#);
    assert_timed_out(&slow_client(&server.base, &start, None), "a stalled body");

    // A byte every 200 ms: the deadline is on the whole body, not per read.
    let slow = slow_client(
        &server.base,
        &start,
        Some(std::time::Duration::from_millis(200)),
    );
    assert_timed_out(&slow, "a trickled body");

    // A head that never ends: actix's own 408 (no body), or a close.
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Slow: 1\r\n",
        addr_of(&server.base)
    );
    let slow = slow_client(&server.base, head.as_bytes(), None);
    assert!(slow.closed, "a head that never ends kept the connection");
    if let Some(answer) = &slow.answer {
        assert_eq!(answer.status, 408, "{answer:?}");
    }
    let at = slow.first_byte.unwrap_or_default();
    assert!(at <= std::time::Duration::from_secs(5), "after {at:?}");

    // A slow body that makes it in time is served.
    let body = br#"{"name": "Slow but sure"}"#;
    let mut start = post_head(&key, &server.base, body.len()).into_bytes();
    start.extend_from_slice(&body[..10]);
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr_of(&server.base)).unwrap();
    stream.write_all(&start).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    stream.write_all(&body[10..]).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 8192];
    let n = stream.read(&mut buf).unwrap();
    let answer = parse_raw(&buf[..n]).expect("an answer");
    assert_eq!(answer.status, 200, "{answer:?}: {}", server.log());
}

// ---------------------------------------------------------------- JSON errors

#[test]
fn raw_requests_the_app_sees_get_json_errors_and_the_rest_a_4xx() {
    let app = spawn_app();
    let host = addr_of(&app.base).to_owned();
    let auth = format!("Authorization: Api-Token {}\r\n", app.key);
    let send = |request: String| {
        raw(&app.base, request.as_bytes()).unwrap_or_else(|| panic!("no answer to {request:.80}"))
    };
    let json_error = |resp: &Raw, status: u16, what: &str| {
        assert_eq!(resp.status, status, "{what}: {resp:?}");
        assert!(
            resp.header("Content-Type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{what}: {resp:?}"
        );
        assert!(
            resp.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: {resp:?}"
        );
        assert!(resp.body["code"].is_string(), "{what}: {resp:?}");
    };

    // A long URI that actix parses reaches the app: a JSON 404.
    let long = format!("/{}", "a".repeat(60 * 1024));
    let resp = send(format!(
        "GET {long} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    ));
    json_error(&resp, 404, "a 60 KiB path");

    // A method no route has, and one the route does not serve, on a route.
    for method in ["BREW", "PATCH", "OPTIONS", "TRACE"] {
        let resp = send(format!(
            "{method} {} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n",
            creds("")
        ));
        json_error(&resp, 405, method);
        assert_eq!(resp.body["code"], "method_not_allowed");
    }

    // A chunked body that breaks off: the body reader's 400.
    let resp = send(format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZ\r\nabc\r\n",
        creds("")
    ));
    json_error(&resp, 400, "a broken chunked body");

    // What actix-http's dispatcher refuses before any service runs: the
    // status is right, the body is actix's (empty), there is no hook.
    let dispatcher = [
        (
            format!("GET /{} HTTP/1.1\r\nHost: {host}\r\n\r\n", "a".repeat(100 * 1024)),
            400,
            "a 100 KiB URI (over http's 64 KiB)",
        ),
        (
            format!("GET /{} HTTP/1.1\r\nHost: {host}\r\n\r\n", "a".repeat(200 * 1024)),
            431,
            "a 200 KiB head",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: {host}\r\n{}\r\n",
                (0..120).map(|i| format!("X-H{i}: 1\r\n")).collect::<String>()
            ),
            431,
            "120 headers",
        ),
        ("GARBAGE\r\n\r\n".to_owned(), 400, "a malformed request line"),
        (
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
            400,
            "two Content-Lengths",
        ),
    ];
    for (request, status, what) in dispatcher {
        let resp = send(request);
        assert_eq!(resp.status, status, "{what}: {resp:?}");
    }
}

// ---------------------------------------------------------------- public route

fn verify(app: &TestApp, id: &str) -> Resp {
    app.get(&format!("/api/credentials/public/assertions/{id}/"))
        .anonymous()
        .send()
}

#[test]
fn public_lookups_are_rate_limited_per_client_address() {
    // The default burst, refilled too slowly for a token to come back
    // while the test runs (at the default rate one could come back between
    // the burst and the spoofed request on a slow machine, and let it in).
    let app = spawn_app_with(|s| s.public_rate = 0.001);
    let credential = app.create_credential("Limited");
    let assertion = app.issue(&credential, "r@x.test");
    let aid = assertion["entityId"].as_str().unwrap().to_owned();
    let unknown = "00000000-0000-0000-0000-000000000000";
    let answers: Vec<Resp> = (0..300)
        .map(|i| verify(&app, if i % 2 == 0 { &aid } else { unknown }))
        .collect();
    for (i, resp) in answers.iter().take(100).enumerate() {
        assert_ne!(resp.status, 429, "lookup {i} of the burst was limited");
    }
    let limited: Vec<&Resp> = answers.iter().filter(|r| r.status == 429).collect();
    assert!(!limited.is_empty(), "300 lookups at once, none limited");
    for resp in &limited {
        let retry = resp.header("Retry-After").expect("a Retry-After");
        assert!(
            retry.parse::<u64>().is_ok_and(|s| s >= 1),
            "Retry-After {retry}"
        );
        assert_eq!(resp.body["code"], "too_many_requests", "{}", resp.text);
        assert!(resp.body["detail"].is_string());
    }
    for resp in answers.iter().filter(|r| r.status != 429) {
        assert!(
            matches!(resp.status, 200 | 404),
            "{}: {}",
            resp.status,
            resp.text
        );
    }
    // Saying to be someone else changes nothing: the TCP peer is the client.
    let spoofed = app
        .get(&format!("/api/credentials/public/assertions/{aid}/"))
        .anonymous()
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Real-IP", "203.0.113.9")
        .header("Forwarded", "for=203.0.113.9")
        .send();
    assert_eq!(spoofed.status, 429, "{}", spoofed.text);
    // Other routes are not limited.
    app.get(&creds("")).send().expect(200);
}

#[test]
fn the_public_rate_and_burst_are_settings_and_tokens_come_back() {
    let app = spawn_app_with(|s| {
        s.public_rate = 4.0;
        s.public_burst = 3;
    });
    let unknown = "00000000-0000-0000-0000-000000000000";
    for _ in 0..3 {
        verify(&app, unknown).expect(404);
    }
    let limited = verify(&app, unknown).expect_client_error(429);
    assert_eq!(limited.header("Retry-After"), Some("1"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    verify(&app, unknown).expect(404);
}

#[test]
fn the_public_route_ignores_x_min_position() {
    let app = spawn_app();
    let credential = app.create_credential("Public");
    let assertion = app.issue(&credential, "p@x.test");
    let aid = assertion["entityId"].as_str().unwrap();
    let far = app.token(app.head() + 1_000_000);
    for value in ["not a token", "12", far.as_str()] {
        let started = std::time::Instant::now();
        let resp = app
            .get(&format!("/api/credentials/public/assertions/{aid}/"))
            .anonymous()
            .header("X-Min-Position", value)
            .send();
        assert_eq!(resp.status, 200, "{value}: {}", resp.text);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{value}: waited {:?}",
            started.elapsed()
        );
    }
    // Routes with a key still honour it.
    read_at(&app, "not a token").expect_client_error(400);
}

#[test]
fn a_read_waits_for_a_position_not_reached_only_so_long_then_503_with_retry_after() {
    let app = spawn_app_with(|s| s.min_position_wait_ms = 300);
    let ahead = app.token(app.head() + 1_000);
    let started = std::time::Instant::now();
    let r = read_at(&app, &ahead);
    let waited = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("1"), "{:?}", r.headers);
    assert!(
        waited >= std::time::Duration::from_millis(300)
            && waited < std::time::Duration::from_secs(2),
        "{waited:?}"
    );
    // The default is 2 s.
    assert_eq!(
        ibl_data_manager::Settings::new("x").min_position_wait_ms,
        2000
    );
}
