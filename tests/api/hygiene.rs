//! What the API gives away, and to whom: position tokens instead of the
//! store's position, URLs from the configured public URL, JSON error bodies,
//! body timeouts, the public route's rate limit.

use serde_json::json;

use crate::helpers::{creds, spawn_app, spawn_app_with, Resp, TestApp, ORG};
use crate::processes::{agent, created_key, Server};

/// A token of the same shape as the server's, under another key.
fn foreign_token(position: u64) -> String {
    ibl_query_service::position::PositionKey::new([42; 32]).encode(position)
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
    let from_file = ibl_query_service::position::PositionKey::from_hex(key).unwrap();
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
    let key = ibl_query_service::position::PositionKey::new([42; 32]);
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
    let key = ibl_query_service::position::PositionKey::from_hex(&configured).unwrap();
    assert!(key.decode(&written).is_ok(), "{written}");
}
