//! An auditor's questions, answered from the audit routes and compared with
//! what was done: credentials issued and revoked, access granted and
//! revoked, by several users with several keys, on two platforms.

use std::collections::BTreeSet;

use serde_json::json;

use crate::audit::all_pages as all;
use crate::helpers::*;

/// A write done, as the auditor should find it.
struct Done {
    position: u64,
    request: String,
}

fn done(app: &TestApp, resp: &Resp) -> Done {
    Done {
        position: app.position_of(resp),
        request: resp
            .header("X-Request-Id")
            .expect("a request id")
            .to_owned(),
    }
}

#[test]
fn an_auditor_finds_who_did_what_when_and_through_which_key() {
    let app = spawn_app();
    let feed = format!("/api/audit/orgs/{ORG}/events/");
    let registrar = app.create_user(&app.key, ORG, "registrar");
    let dean = app.create_user(&app.key, ORG, "dean");
    let key_for = |username: &str, name: &str| -> String {
        app.post("/api/core/platform/api-tokens/")
            .json(&json!({"platform_key": ORG, "name": name, "username": username}))
            .send()
            .expect(201)
            .body["key"]
            .as_str()
            .expect("a key")
            .to_owned()
    };
    // The registrar issues through a policy of its own; the dean is made a
    // tenant admin (and has two keys).
    let role = app
        .post("/api/core/rbac/roles/")
        .json(&json!({"platform_key": ORG, "name": "Registrar", "actions": ["Ibl.Credentials/*"]}))
        .send()
        .expect(201)
        .body["id"]
        .as_u64()
        .expect("an id");
    let granted = app
        .post("/api/core/rbac/policies/")
        .json(
            &json!({"platform_key": ORG, "name": "Registrars", "role_id": role,
                      "resources": ["/platforms/1/"], "users_to_add": [registrar]}),
        )
        .send()
        .expect(201);
    let registrar_policy = granted.body["id"].as_u64().expect("an id");
    let admins = app
        .get(&format!(
            "/api/core/rbac/groups/?platform_key={ORG}&name=Tenant%20Admins"
        ))
        .send()
        .expect(200)
        .body["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|g| g["name"] == "Tenant Admins")
        .expect("the tenant admins' group")["id"]
        .as_u64()
        .expect("an id");
    app.request("PATCH", &format!("/api/core/rbac/groups/{admins}/"))
        .json(&json!({"platform_key": ORG, "users_to_add": [dean]}))
        .send()
        .expect(200);
    let registrar_key = key_for("registrar", "registrar-desk");
    let dean_key = key_for("dean", "dean-office");
    let dean_laptop = key_for("dean", "dean-laptop");

    // The registrar issues three and revokes one; the other platform works
    // meanwhile.
    let creds = |rest: &str| format!("/api/credentials/orgs/{ORG}/users/registrar/{rest}");
    let credential = app
        .post(&creds(""))
        .key(&registrar_key)
        .json(&json!({"name": "Diploma"}))
        .send()
        .expect(200)
        .body["result"]["credential_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let mut issued = Vec::new();
    for learner in ["ann", "ben", "cy"] {
        let resp = app
            .post(&creds(&format!("{credential}/assertions/")))
            .key(&registrar_key)
            .json(&json!({"recipient": {"email": format!("{learner}@learners.test")}}))
            .send()
            .expect(200);
        let id = resp.body["entityId"].as_str().expect("an id").to_owned();
        issued.push((learner, id, done(&app, &resp)));
        app.post(&format!("/api/credentials/orgs/{OTHER}/users/{ADMIN}/"))
            .key(&app.other_key)
            .json(&json!({"name": format!("Elsewhere {learner}")}))
            .send()
            .expect(200);
    }
    let revoked_resp = app
        .put(&creds(&format!("assertions/{}", issued[1].1)))
        .key(&registrar_key)
        .json(&json!({"revoked": true, "revocationReason": "issued in error"}))
        .send()
        .expect(200);
    let revoked = done(&app, &revoked_resp);

    // The dean grants the registrar a mentor's access from the office,
    // and takes it back from the laptop.
    let grant_resp = app
        .post("/api/core/rbac/mentor-access/")
        .key(&dean_key)
        .json(&json!({"platform_key": ORG, "mentor_id": 5, "role": "viewer", "users_to_add": [registrar]}))
        .send()
        .expect(201);
    let mentor_policy = grant_resp.body["id"].as_u64().expect("an id");
    let grant = done(&app, &grant_resp);
    let take_back = app
        .post("/api/core/rbac/mentor-access/")
        .key(&dean_laptop)
        .json(&json!({"platform_key": ORG, "mentor_id": 5, "role": "viewer", "users_to_remove": [registrar]}))
        .send()
        .expect(200);
    let took_back = done(&app, &take_back);
    // And the admin ends the registrar's policy.
    let ended_resp = app
        .delete(&format!(
            "/api/core/rbac/policies/{registrar_policy}/?platform_key={ORG}"
        ))
        .send()
        .expect(204);
    let ended = done(&app, &ended_resp);
    let now = app.token(ended.position);
    // The audit log follows the log on a projector of its own: the feed
    // shows the last write once it has read it (as a mirror asks, with
    // `X-Min-Position`).
    app.get(&format!("{feed}?page_size=1"))
        .header("X-Min-Position", &now)
        .send()
        .expect(200);

    // Q: who issued which credential to whom, with which key, in which
    // request?
    let issues = all(&app, &app.key, &format!("{feed}?type=AssertionIssued"));
    assert_eq!(issues.len(), 3, "{issues:?}");
    for ((learner, id, write), record) in issued.iter().zip(&issues) {
        assert_eq!(record["stream"], format!("assertion-{id}"));
        assert_eq!(record["position"], write.position);
        assert_eq!(record["actor"]["user"], "registrar");
        assert_eq!(record["actor"]["key"], "registrar-desk");
        assert_eq!(record["correlation_id"], write.request);
        assert_eq!(
            record["data"]["recipient"]["email"],
            format!("{learner}@learners.test")
        );
        assert_eq!(record["data"]["credential_id"], credential);
    }
    // Q: who revoked which, why, when?
    let revocations = all(&app, &app.key, &format!("{feed}?type=AssertionRevoked"));
    assert_eq!(revocations.len(), 1, "{revocations:?}");
    assert_eq!(
        revocations[0]["stream"],
        format!("assertion-{}", issued[1].1)
    );
    assert_eq!(revocations[0]["actor"]["key"], "registrar-desk");
    assert_eq!(revocations[0]["data"]["reason"], "issued in error");
    assert_eq!(revocations[0]["correlation_id"], revoked.request);
    // Q: what did each of the dean's keys do? (A key's name, or the user.)
    let by_office = all(&app, &app.key, &format!("{feed}?actor=dean-office"));
    let by_laptop = all(&app, &app.key, &format!("{feed}?actor=dean-laptop"));
    let by_dean = all(&app, &app.key, &format!("{feed}?actor=dean"));
    assert!(!by_office.is_empty() && !by_laptop.is_empty());
    assert!(
        by_office
            .iter()
            .all(|r| r["correlation_id"] == grant.request),
        "{by_office:?}"
    );
    assert!(
        by_laptop
            .iter()
            .all(|r| r["correlation_id"] == took_back.request),
        "{by_laptop:?}"
    );
    assert_eq!(by_dean.len(), by_office.len() + by_laptop.len());
    // Q: the history of the mentor's access policy: granted by the office
    // key, its user removed by the laptop's.
    let history = all(
        &app,
        &app.key,
        &format!("/api/audit/orgs/{ORG}/policies/{mentor_policy}/history/"),
    );
    let keys: Vec<&str> = history
        .iter()
        .map(|r| r["actor"]["key"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(keys.first(), Some(&"dean-office"), "{history:?}");
    assert_eq!(keys.last(), Some(&"dean-laptop"), "{history:?}");
    // Q: who could read mentor 5 while it was granted, and after?
    let who = |position: u64| -> BTreeSet<String> {
        app.get(&format!(
            "/api/audit/orgs/{ORG}/access/?resource=/platforms/1/mentors/5/&action=Ibl.Mentor/Mentors/read&at_position={position}"
        ))
        .header("X-Min-Position", &now)
        .send()
        .expect(200)
        .body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|e| e["user"]["username"].as_str().unwrap_or_default().to_owned())
        .collect()
    };
    assert!(who(grant.position).contains("registrar"));
    assert!(!who(took_back.position).contains("registrar"));
    assert!(
        who(took_back.position).contains("dean"),
        "a tenant admin reads every mentor"
    );
    // Q: could the registrar issue then, and after its policy ended? (The
    // check of then names the policy that granted it.)
    let could_issue = |position: u64| {
        app.post("/api/core/rbac/permissions/check/")
            .json(
                &json!({"platform_key": ORG, "user_id": registrar, "at_position": position,
                          "resources": ["/platforms/1/credentials/"], "explain": true}),
            )
            .send()
            .expect(200)
            .body
            .to_string()
            .contains(r#""name":"Registrars""#)
    };
    assert!(could_issue(revoked.position));
    assert!(!could_issue(ended.position));
    // Q: what happened in the window of the issues (by time)?
    let times: Vec<&str> = issues
        .iter()
        .map(|r| r["time"].as_str().expect("a time"))
        .collect();
    let window = all(
        &app,
        &app.key,
        &format!(
            "{feed}?from={}&to={}&type=AssertionIssued",
            enc(times[0]),
            enc(times[2])
        ),
    );
    assert_eq!(window.len(), 2, "from the first issue to before the last");

    // The registrar is no auditor; the other platform's auditor sees none
    // of it, and its own feed holds none of acme's events.
    app.get(&feed)
        .key(&registrar_key)
        .send()
        .expect_client_error(403);
    app.get(&feed)
        .key(&app.other_key)
        .send()
        .expect_client_error(403);
    let theirs = all(
        &app,
        &app.other_key,
        &format!("/api/audit/orgs/{OTHER}/events/"),
    );
    assert!(theirs.len() >= 3, "the other platform's own work");
    for record in &theirs {
        let text = record.to_string();
        assert!(
            !text.contains("registrar") && !text.contains("dean"),
            "{text}"
        );
        assert_ne!(record["actor"]["platform"], ORG, "{text}");
    }
}

/// A time for a query string.
fn enc(time: &str) -> String {
    time.replace('+', "%2B").replace(':', "%3A")
}
