//! `ibl replay`: every read model rebuilt from position 0 matches the live
//! one after a run of both platforms' work, and a live model edited behind
//! the server's back is named.

use serde_json::{json, Value};

use crate::helpers::*;

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
            let user: u64 = app
                .post(&format!("/api/orgs/{org}/scim/v2/Users"))
                .key(&key)
                .json(&json!({"userName": format!("u{round}"), "emails": [{"value": format!("u{round}@{org}.test")}]}))
                .send()
                .expect(201)
                .body["id"]
                .as_str()
                .expect("an id")
                .parse()
                .expect("a number");
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
    let out = std::process::Command::new(crate::processes::BIN)
        .arg("replay")
        .arg("--data-dir")
        .arg(data)
        .env_remove("EVENTSTORE_URL")
        .env_remove("REDIS_URL")
        .output()
        .expect("ibl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
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
            // A member added: the record and the check index disagree
            // with the log.
            Box::new(|d| edit_snapshot(d, "rbac", "\"members\":[", "\"members\":[0,")),
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
