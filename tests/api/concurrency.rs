//! Concurrent writes: different entities never conflict; the same unique
//! name is given to exactly one of many racing creates.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, ORG};

fn users_url() -> String {
    format!("/api/orgs/{ORG}/scim/v2/Users")
}

/// `n` requests at once, `body(i)` each; answers the statuses.
fn race(
    app: &crate::helpers::TestApp,
    path: &str,
    n: usize,
    body: &(dyn Fn(usize) -> Value + Sync),
) -> Vec<(u16, Value)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                s.spawn(move || {
                    let r = app.post(path).json(&body(i)).send();
                    (r.status, r.body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_creates_of_different_users_and_groups_all_succeed() {
    let app = spawn_app();
    let users = race(
        &app,
        &users_url(),
        32,
        &|i| json!({"userName": format!("u{i}"), "emails": [{"value": format!("u{i}@x.test")}]}),
    );
    assert!(users.iter().all(|(s, _)| *s == 201), "{users:?}");
    let mut ids: Vec<&str> = users.iter().filter_map(|(_, b)| b["id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 32, "distinct ids");
    let groups = race(
        &app,
        "/api/core/rbac/groups/",
        32,
        &|i| json!({"platform_key": ORG, "unique_id": format!("g{i}")}),
    );
    assert!(groups.iter().all(|(s, _)| *s == 201), "{groups:?}");
}

#[test]
fn racing_creates_of_one_username_or_email_make_one_user() {
    let app = spawn_app();
    let same_name = race(
        &app,
        &users_url(),
        16,
        &|i| json!({"userName": "taken", "emails": [{"value": format!("t{i}@x.test")}]}),
    );
    let created = same_name.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 1, "{same_name:?}");
    for (status, body) in same_name.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*status, 409, "{body}");
        assert!(
            body.to_string().contains("username"),
            "names the field: {body}"
        );
    }
    let same_email = race(
        &app,
        &users_url(),
        16,
        &|i| json!({"userName": format!("e{i}"), "emails": [{"value": "Shared@x.test"}]}),
    );
    assert_eq!(
        same_email.iter().filter(|(s, _)| *s == 201).count(),
        1,
        "{same_email:?}"
    );
    assert!(same_email
        .iter()
        .filter(|(s, _)| *s != 201)
        .all(|(s, b)| *s == 409 && b.to_string().contains("email")));
    // A renamed user frees its name; taking another's name by a rename is 409.
    let list = app
        .get(&format!(
            "{}?filter=userName%20eq%20%22taken%22",
            users_url()
        ))
        .send()
        .expect(200)
        .body;
    let id = list["Resources"][0]["id"].as_str().unwrap().to_owned();
    let rename = |name: &str| {
        app.patch(&format!("{}/{id}", users_url()))
            .json(&json!({"Operations": [{"op": "replace", "path": "userName", "value": name}]}))
            .send()
    };
    let winner = same_email
        .iter()
        .find(|(s, _)| *s == 201)
        .and_then(|(_, b)| b["userName"].as_str())
        .unwrap();
    assert_eq!(rename(winner).status, 409);
    rename("renamed").expect(200);
    app.post(&users_url())
        .json(&json!({"userName": "taken", "emails": [{"value": "again@x.test"}]}))
        .send()
        .expect(201);
}

#[test]
fn racing_deletes_of_the_last_two_admin_keys_leave_one() {
    let app = spawn_app();
    let tokens = "/api/core/platform/api-tokens/";
    // The admin's keys by name, with their secrets: each delete signs with
    // the key it deletes, so that neither is refused for the other's going.
    let mut survivor = ("admin".to_owned(), app.key.clone());
    for round in 0..6 {
        let name = format!("second-{round}");
        let made = app
            .post(tokens)
            .key(&survivor.1)
            .json(&json!({"platform_key": ORG, "name": name}))
            .send()
            .expect(201)
            .body;
        let second = (name, made["key"].as_str().unwrap().to_owned());
        let pair = [survivor.clone(), second];
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = pair
                .iter()
                .map(|(name, secret)| {
                    let app = &app;
                    s.spawn(move || {
                        app.delete(&format!("{tokens}{name}?platform_key={ORG}"))
                            .key(secret)
                            .send()
                            .status
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let kept = statuses.iter().position(|s| *s == 409);
        let mut sorted = statuses.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [204, 409], "round {round}: {statuses:?}");
        survivor = pair[kept.expect("one refused")].clone();
        let left = app
            .get(&format!("{tokens}?platform_key={ORG}"))
            .key(&survivor.1)
            .send()
            .expect(200)
            .body;
        let names: Vec<&str> = left
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k["name"].as_str())
            .collect();
        assert_eq!(names, [survivor.0.as_str()], "round {round}");
    }
}
