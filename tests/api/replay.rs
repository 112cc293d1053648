//! `ibl replay`: every read model rebuilt from position 0 matches the live
//! one after a run of both platforms' work, and a live model edited behind
//! the server's back is named.

use serde_json::{json, Value};

use crate::helpers::*;
use crate::processes::ibl;

/// A run of work on both platforms through the API: credentials created,
/// issued (one at a time and in bulk) and revoked; users, roles, groups and
/// policies created and changed; an `Idempotency-Key` request.
pub fn drive(app: &TestApp, rounds: usize) {
    // (The platforms' ids: acme was created first.)
    for (org, pk, key) in [(ORG, 1, app.key.clone()), (OTHER, 2, app.other_key.clone())] {
        let creds = |rest: &str| format!("/api/credentials/orgs/{org}/users/{ADMIN}/{rest}");
        let id = |body: &Value| body["id"].as_u64().expect("an id");
        for round in 0..rounds {
            let credential = app
                .post(&creds(""))
                .key(&key)
                .json(&json!({"name": format!("Badge {round}"), "description": "Replayed"}))
                .send()
                .expect(200)
                .body["result"]["credential_id"]
                .as_str()
                .expect("an id")
                .to_owned();
            let mut issued = Vec::new();
            for n in 0..4 {
                let body = app
                    .post(&creds(&format!("{credential}/assertions/")))
                    .key(&key)
                    .idempotency_key(&format!("issue-{round}-{n}"))
                    .json(&json!({"recipient": {"email": format!("l{round}-{n}@{org}.test")}}))
                    .send()
                    .expect(200)
                    .body;
                issued.push(body["entityId"].as_str().expect("an id").to_owned());
            }
            app.post(&creds(&format!("{credential}/assertions/bulk/")))
                .key(&key)
                .json(&json!({"recipients": [{"email": format!("b{round}@{org}.test")}, {"email": format!("c{round}@{org}.test")}]}))
                .send()
                .expect(200);
            app.put(&creds(&format!("assertions/{}", issued[round % 4])))
                .key(&key)
                .json(&json!({"revoked": true, "revocationReason": "replayed"}))
                .send()
                .expect(200);
            let user = app.create_user(&key, org, &format!("u{round}"));
            let role = id(&app
                .post("/api/core/rbac/roles/")
                .key(&key)
                .json(&json!({"platform_key": org, "name": format!("Role {round}"), "actions": ["Ibl.Mentor/Mentors/read"]}))
                .send()
                .expect(201)
                .body);
            let group = id(&app
                .post("/api/core/rbac/groups/")
                .key(&key)
                .json(&json!({"platform_key": org, "name": format!("Group {round}"), "users_to_add": [user]}))
                .send()
                .expect(201)
                .body);
            let policy = id(&app
                .post("/api/core/rbac/policies/")
                .key(&key)
                .json(&json!({"platform_key": org, "name": format!("Policy {round}"), "role_id": role,
                              "resources": [format!("/platforms/{pk}/mentors/{round}/")], "groups_to_add": [group]}))
                .send()
                .expect(201)
                .body);
            if round % 2 == 1 {
                app.request("PATCH", &format!("/api/core/rbac/groups/{group}/"))
                    .key(&key)
                    .json(&json!({"platform_key": org, "users_to_remove": [user]}))
                    .send()
                    .expect(200);
                app.delete(&format!(
                    "/api/core/rbac/policies/{policy}/?platform_key={org}"
                ))
                .key(&key)
                .send()
                .expect(204);
            }
        }
    }
}

/// Runs `ibl replay` on `data`: exit code and what it printed.
pub fn replay(data: &std::path::Path) -> (i32, String) {
    let (code, out, err) = ibl(data, &["replay"]);
    (code, out + &err)
}

/// A copy of a data folder: the store and the read models' folder.
fn copy_of(from: &std::path::Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("a temporary folder");
    for dir in ["", "readmodels"] {
        std::fs::create_dir_all(to.path().join(dir)).expect("a folder");
        for entry in std::fs::read_dir(from.join(dir))
            .expect("a folder")
            .flatten()
        {
            if entry.file_type().expect("a type").is_file() {
                std::fs::copy(entry.path(), to.path().join(dir).join(entry.file_name()))
                    .expect("copies");
            }
        }
    }
    to
}

/// Replaces `from` by `to` in a snapshot's file, once.
fn edit_snapshot(data: &std::path::Path, model: &str, from: &str, to: &str) {
    let path = data.join("readmodels").join(format!("{model}.snapshot"));
    let text = std::fs::read_to_string(&path).expect("a snapshot");
    assert!(text.contains(from), "{from} in the {model} snapshot");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("written");
}

#[test]
fn replay_matches_every_live_model_and_names_one_edited_behind_the_servers_back() {
    let app = spawn_app();
    drive(&app, 6);
    let head = app.head();
    let dir = app.stop();

    let (code, text) = replay(dir.path());
    assert_eq!(code, 0, "{text}");
    for model in ["credentials", "rbac", "assertions"] {
        assert!(
            text.contains(&format!("{model} at position {head}: same")),
            "{model} at {head} in {text}"
        );
    }
    assert!(
        text.contains("replayed: 3 read models match the log"),
        "{text}"
    );

    // Each model edited in its own copy: that one, and only that one, is
    // named.
    type Edit = Box<dyn Fn(&std::path::Path)>;
    let edits: [(&str, Edit); 4] = [
        (
            "assertions",
            Box::new(|d| {
                let conn = rusqlite::Connection::open(d.join("readmodels").join("assertions.db"))
                    .expect("the model's file");
                conn.execute(
                    "UPDATE assertions SET revoked = 1 - revoked WHERE seq = 3",
                    [],
                )
                .expect("edits");
            }),
        ),
        (
            "credentials",
            Box::new(|d| edit_snapshot(d, "credentials", "\"Badge 3\"", "\"Badge 33\"")),
        ),
        (
            "rbac",
            Box::new(|d| edit_snapshot(d, "rbac", "\"Group 2\"", "\"Group 22\"")),
        ),
        (
            "rbac",
            // A member added to a group the log never gave it.
            Box::new(|d| {
                let path = d.join("readmodels").join("rbac.snapshot");
                let text = std::fs::read_to_string(&path).expect("a snapshot");
                let (header, body) = text.split_once('\n').expect("a header line");
                let mut records: Value = serde_json::from_str(body).expect("JSON");
                let group = records["groups"]
                    .as_object_mut()
                    .and_then(|groups| groups.values_mut().next())
                    .expect("a group");
                group["members"]
                    .as_array_mut()
                    .expect("members")
                    .push(json!(999_999));
                std::fs::write(&path, format!("{header}\n{records}")).expect("written");
            }),
        ),
    ];
    for (model, edit) in edits {
        let copy = copy_of(dir.path());
        edit(copy.path());
        let (code, text) = replay(copy.path());
        assert_eq!(code, 1, "{model}: {text}");
        assert!(
            text.contains(&format!("DIFFER: {model}\n")),
            "{model}: {text}"
        );
        assert!(
            text.contains(&format!("{model} at position {head}: DIFFERS")),
            "{model}: {text}"
        );
    }

    // No live model to compare with: the replay cannot run.
    let copy = copy_of(dir.path());
    std::fs::remove_file(copy.path().join("readmodels").join("rbac.snapshot")).expect("removed");
    let (code, text) = replay(copy.path());
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("rbac: no snapshot"), "{text}");
}

/// The digest `ibl replay` printed for each model, in its order.
fn digests(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (model, rest) = line.split_once(" at position ")?;
            let digest = rest.split_once(": same (")?.1.strip_suffix(')')?;
            Some((model.to_owned(), digest.to_owned()))
        })
        .collect()
}

/// Every page of a feed, from `base` with `key`.
fn feed(base: &str, key: &str, path: &str) -> Vec<Value> {
    let agent = crate::processes::agent();
    let mut out = Vec::new();
    let mut url = format!("{base}{path}");
    loop {
        let body: Value = agent
            .get(&url)
            .set("Authorization", &format!("Api-Token {key}"))
            .call()
            .expect("200")
            .into_json()
            .expect("JSON");
        out.extend(body["results"].as_array().expect("results").iter().cloned());
        match body["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => return out,
        }
    }
}

/// An event as the feed shows it, less what belongs to one store (its
/// position and its place in that store's tree).
fn moved(mut event: Value) -> Value {
    let record = event.as_object_mut().expect("an object");
    record.remove("position");
    record.remove("leaf_index");
    event
}

#[test]
fn a_platforms_export_imported_into_an_empty_store_answers_and_digests_the_same() {
    let app = spawn_app();
    drive(&app, 4);
    // The feed shows every write once the audit log has read the last.
    app.get(&format!("/api/audit/orgs/{ORG}/events/?page_size=1"))
        .header("X-Min-Position", &app.token(app.head()))
        .send()
        .expect(200);
    let history = feed(
        &app.base,
        &app.key,
        &format!("/api/audit/orgs/{ORG}/events/?page_size=1000"),
    );
    let assertions = app.assertions("page_size=100");
    let key = app.key.clone();
    let other_key = app.other_key.clone();
    let source_base = app.base.clone();
    let source = app.stop();
    let target = tempfile::tempdir().expect("a folder");
    let file = target.path().join("acme.jsonl");
    let target_data = target.path().join("data");

    let (code, out, err) = ibl(
        source.path(),
        &[
            "export",
            "--platform",
            ORG,
            "--output",
            file.to_str().expect("a path"),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let exported: Value =
        serde_json::from_str(err.lines().last().expect("a summary")).expect("JSON");
    let lines = std::fs::read_to_string(&file).expect("the export");
    assert_eq!(exported["events"], lines.lines().count() as u64);
    // Only acme's events, none of the counters every platform shares.
    for line in lines.lines() {
        let event: Value = serde_json::from_str(line).expect("an event");
        assert!(
            !event["stream"]
                .as_str()
                .expect("a stream")
                .starts_with("ids-"),
            "{line}"
        );
        assert!(!line.contains("\"other\""), "{line}");
    }

    let (code, out, err) = ibl(&target_data, &["import", file.to_str().expect("a path")]);
    assert_eq!(code, 0, "{out}{err}");
    let imported: Value =
        serde_json::from_str(err.lines().last().expect("a summary")).expect("JSON");
    assert_eq!(imported["events"], exported["events"]);
    // Into a store that is no longer empty: refused, nothing added.
    let (code, _, err) = ibl(&target_data, &["import", file.to_str().expect("a path")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not empty"), "{err}");

    // A server on the target: acme's key still works, its lists and its
    // history answer as in the source (ids, times, actors, order), and the
    // other platform is not there.
    let mut server = crate::processes::Server::start(&target_data);
    let agent = crate::processes::agent();
    let list: Value = agent
        .get(&format!(
            "{}{}?page_size=100",
            server.base,
            creds("assertions/")
        ))
        .set("Authorization", &format!("Api-Token {key}"))
        .call()
        .expect("200")
        .into_json()
        .expect("JSON");
    // (Their links name the server that answers.)
    let here = |v: &Value, base: &str| v.to_string().replace(base, "BASE");
    assert!(
        here(&list["data"], &server.base) == here(&assertions["data"], &source_base),
        "the assertions differ after the move"
    );
    assert!(list["data"].as_array().is_some_and(|a| a.len() > 10));
    let moved_history: Vec<Value> = feed(
        &server.base,
        &key,
        &format!("/api/audit/orgs/{ORG}/events/?page_size=1000"),
    )
    .into_iter()
    .map(moved)
    .collect();
    let expected: Vec<Value> = history
        .into_iter()
        .filter(|e| !e["stream"].as_str().expect("a stream").starts_with("ids-"))
        .map(moved)
        .collect();
    assert!(
        moved_history == expected,
        "the history differs after the move"
    );
    let refused = agent
        .get(&format!(
            "{}/api/credentials/orgs/{OTHER}/users/{ADMIN}/",
            server.base
        ))
        .set("Authorization", &format!("Api-Token {other_key}"))
        .call();
    assert!(
        matches!(refused, Err(ureq::Error::Status(401, _))),
        "{refused:?}"
    );
    // SAFETY: a signal to our own child process (a clean stop writes the
    // snapshots `ibl replay` compares).
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGTERM) }, 0);
    assert!(server
        .wait(std::time::Duration::from_secs(15))
        .is_some_and(|s| s.success()));

    // acme's part of every read model has the same digest in both stores.
    let (code, source_out, err) = ibl(source.path(), &["replay", "--platform", ORG]);
    assert_eq!(code, 0, "{source_out}{err}");
    let (code, target_out, err) = ibl(&target_data, &["replay", "--platform", ORG]);
    assert_eq!(code, 0, "{target_out}{err}");
    assert_eq!(digests(&source_out).len(), 3, "{source_out}");
    assert_eq!(
        digests(&source_out),
        digests(&target_out),
        "\n{source_out}\n{target_out}"
    );

    // Writes go on in the target: a new role takes an id no imported one
    // has.
    let server = crate::processes::Server::start(&target_data);
    let created: Value = agent
        .post(&format!("{}/api/core/rbac/roles/", server.base))
        .set("Authorization", &format!("Api-Token {key}"))
        .send_json(json!({"platform_key": ORG, "name": "After the move", "actions": []}))
        .expect("201")
        .into_json()
        .expect("JSON");
    let role = created["id"].as_u64().expect("an id");
    assert!(
        !lines.contains(&format!("\"role-{role}\"")),
        "role {role} reused"
    );
}
