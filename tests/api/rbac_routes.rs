//! The RBAC management routes: roles, groups, policies and mentor access,
//! with the shapes the `iblai` client parses, their filters, and tenant
//! isolation.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp, ADMIN, ORG, OTHER};

const ROLES: &str = "/api/core/rbac/roles/";
const GROUPS: &str = "/api/core/rbac/groups/";
const POLICIES: &str = "/api/core/rbac/policies/";
const MENTOR_ACCESS: &str = "/api/core/rbac/mentor-access/";

/// A user of `platform` made through SCIM; its integer id.
fn user(app: &TestApp, key: &str, platform: &str, name: &str) -> u64 {
    app.post(&format!("/api/orgs/{platform}/scim/v2/Users"))
        .key(key)
        .json(&json!({"userName": name, "emails": [{"value": format!("{name}@x.test")}]}))
        .send()
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn create(app: &TestApp, path: &str, body: Value) -> Value {
    let resp = app.post(path).json(&body).send().expect(201);
    assert!(resp.header("X-Position").is_some(), "{path}");
    resp.body
}

fn id(v: &Value) -> u64 {
    v["id"].as_u64().expect("an integer id")
}

fn names(page: &Value) -> Vec<String> {
    page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn roles_are_created_listed_changed_and_deleted() {
    let app = spawn_app();
    let role = create(
        &app,
        ROLES,
        json!({"platform_key": ORG, "name": "Reviewer", "actions": ["Ibl.Mentor/Mentors/read"], "data_actions": [], "id": 999, "is_internal": true}),
    );
    assert_eq!(role["name"], "Reviewer");
    assert_eq!(role["platform_key"], ORG);
    assert_eq!(role["platform"]["key"], ORG);
    assert!(role["platform"]["id"].is_u64());
    assert_eq!(role["actions"], json!(["Ibl.Mentor/Mentors/read"]));
    assert_eq!(role["data_actions"], json!([]));
    assert_eq!(role["is_internal"], false);
    assert_ne!(id(&role), 999);
    let rid = id(&role);

    let got = app
        .get(&format!("{ROLES}{rid}/?platform_key={ORG}"))
        .send()
        .expect(200)
        .body;
    assert_eq!(got, role);

    let list = app
        .get(&format!("{ROLES}?platform_key={ORG}&name=review"))
        .send()
        .expect(200)
        .body;
    assert_eq!(list["count"], 1);
    assert!(list["next"].is_null() && list["previous"].is_null());
    assert_eq!(list["results"][0], role);

    // Built-ins are listed too; paging links are URLs.
    let all = app
        .get(&format!("{ROLES}?platform_key={ORG}&page_size=1"))
        .send()
        .expect(200)
        .body;
    assert!(all["count"].as_u64().unwrap() > 1);
    assert!(all["next"].as_str().unwrap().contains("page=2"));
    assert!(all["previous"].is_null());

    let patched = app
        .request("PATCH", &format!("{ROLES}{rid}/"))
        .json(&json!({"platform_key": ORG, "data_actions": ["Ibl.Mentor/Settings/*/read"]}))
        .send()
        .expect(200);
    assert!(patched.header("X-Position").is_some());
    assert_eq!(patched.body["name"], "Reviewer");
    assert_eq!(
        patched.body["data_actions"],
        json!(["Ibl.Mentor/Settings/*/read"])
    );
    let put = app
        .put(&format!("{ROLES}{rid}/"))
        .json(&json!({"platform_key": ORG, "name": "Reader", "actions": ["Ibl.Mentor/*"]}))
        .send()
        .expect(200)
        .body;
    assert_eq!(put["name"], "Reader");
    assert_eq!(put["actions"], json!(["Ibl.Mentor/*"]));

    // Bad input names its field.
    let bad = app
        .post(ROLES)
        .json(&json!({"platform_key": ORG, "name": "X", "actions": ["Ibl.Men*"]}))
        .send()
        .expect(400)
        .body;
    assert!(bad["actions"].is_array(), "{bad}");
    app.post(ROLES)
        .json(&json!({"platform_key": ORG}))
        .send()
        .expect(400);

    // Deletes need ?platform_key=.
    app.delete(&format!("{ROLES}{rid}/")).send().expect(400);
    let deleted = app
        .delete(&format!("{ROLES}{rid}/?platform_key={ORG}"))
        .send()
        .expect(204);
    assert!(deleted.header("X-Position").is_some());
    app.get(&format!("{ROLES}{rid}/?platform_key={ORG}"))
        .send()
        .expect(404);
    app.get(&format!("{ROLES}abc/?platform_key={ORG}"))
        .send()
        .expect(404);
}

#[test]
fn built_in_roles_cannot_be_changed_or_deleted() {
    let app = spawn_app();
    let list = app
        .get(&format!("{ROLES}?platform_key={ORG}&name=Mentor Viewer"))
        .send()
        .expect(200)
        .body;
    let viewer = list["results"][0].clone();
    assert_eq!(viewer["name"], "Mentor Viewer");
    let vid = id(&viewer);
    app.request("PATCH", &format!("{ROLES}{vid}/"))
        .json(&json!({"platform_key": ORG, "name": "Hacked"}))
        .send()
        .expect(403);
    app.delete(&format!("{ROLES}{vid}/?platform_key={ORG}"))
        .send()
        .expect(403);
    // An update that changes nothing is fine.
    app.request("PATCH", &format!("{ROLES}{vid}/"))
        .json(&json!({"platform_key": ORG, "name": "Mentor Viewer"}))
        .send()
        .expect(200);
}

#[test]
fn another_platform_never_sees_or_changes_our_rbac_entities() {
    let app = spawn_app();
    let role = id(&create(
        &app,
        ROLES,
        json!({"platform_key": ORG, "name": "Mine"}),
    ));
    let group = id(&create(
        &app,
        GROUPS,
        json!({"platform_key": ORG, "name": "Ours"}),
    ));
    let policy = id(&create(
        &app,
        POLICIES,
        json!({"platform_key": ORG, "role_id": role}),
    ));
    // Our key on their platform: 403.
    app.get(&format!("{ROLES}?platform_key={OTHER}"))
        .send()
        .expect(403);
    app.post(GROUPS)
        .json(&json!({"platform_key": OTHER, "name": "Sneaky"}))
        .send()
        .expect(403);
    // Their key, their platform, our ids: 404, never our data.
    for (path, eid) in [(ROLES, role), (GROUPS, group), (POLICIES, policy)] {
        let resp = app
            .get(&format!("{path}{eid}/?platform_key={OTHER}"))
            .key(&app.other_key)
            .send()
            .expect(404);
        assert!(!resp.text.contains("Mine") && !resp.text.contains("Ours"));
        app.request("PATCH", &format!("{path}{eid}/"))
            .key(&app.other_key)
            .json(&json!({"platform_key": OTHER, "name": "Stolen"}))
            .send()
            .expect(404);
        app.delete(&format!("{path}{eid}/?platform_key={OTHER}"))
            .key(&app.other_key)
            .send()
            .expect(404);
    }
    let theirs = app
        .get(&format!("{ROLES}?platform_key={OTHER}&name=Mine"))
        .key(&app.other_key)
        .send()
        .expect(200)
        .body;
    assert_eq!(theirs["count"], 0);
    // Our ids in their bodies: 400 naming the field.
    let bad = app
        .post(POLICIES)
        .key(&app.other_key)
        .json(&json!({"platform_key": OTHER, "role_id": role}))
        .send()
        .expect(400)
        .body;
    assert!(bad["role_id"].is_array(), "{bad}");
    let their_role = app
        .get(&format!("{ROLES}?platform_key={OTHER}&name=Mentor Chat"))
        .key(&app.other_key)
        .send()
        .expect(200)
        .body["results"][0]["id"]
        .as_u64()
        .unwrap();
    let bad = app
        .post(POLICIES)
        .key(&app.other_key)
        .json(&json!({"platform_key": OTHER, "role_id": their_role, "groups_to_add": [group]}))
        .send()
        .expect(400)
        .body;
    assert!(bad["groups_to_add"].is_array(), "{bad}");
    // Our entities in their filters find nothing of ours.
    let ann = user(&app, &app.key, ORG, "ann-iso");
    app.post(GROUPS)
        .json(&json!({"platform_key": ORG, "name": "Annies", "users_to_add": [ann]}))
        .send()
        .expect(201);
    app.request("PATCH", &format!("{POLICIES}{policy}/"))
        .json(&json!({"platform_key": ORG, "users_to_add": [ann], "groups_to_add": [group]}))
        .send()
        .expect(200);
    for query in [
        format!("{POLICIES}?platform_key={OTHER}&role_id={role}"),
        format!("{POLICIES}?platform_key={OTHER}&username=ann-iso"),
        format!("{POLICIES}?platform_key={OTHER}&email=ann-iso@x.test"),
        format!("{POLICIES}?platform_key={OTHER}&group=Ours"),
        format!("{GROUPS}?platform_key={OTHER}&username=ann-iso"),
        format!("{GROUPS}?platform_key={OTHER}&owner={}", app.admin_id),
        format!("{GROUPS}?platform_key={OTHER}&name=Annies"),
    ] {
        let page = app.get(&query).key(&app.other_key).send().expect(200).body;
        assert_eq!(page["count"], 0, "{query}: {page}");
    }
    // Nor in the permission check or who-has-access.
    app.post("/api/core/rbac/permissions/check/")
        .key(&app.other_key)
        .json(&json!({"platform_key": OTHER, "user_id": ann, "resources": ["/platforms/1/"]}))
        .send()
        .expect(404);
    let access = app
        .get(&format!(
            "/api/core/rbac/access/?platform_key={OTHER}&resource=/platforms/1/&action=Ibl.Core/Roles/read"
        ))
        .key(&app.other_key)
        .send()
        .expect(200)
        .body;
    assert!(!access.to_string().contains("ann-iso"), "{access}");
    // Still ours, unchanged.
    let ours = app
        .get(&format!("{ROLES}{role}/?platform_key={ORG}"))
        .send()
        .expect(200)
        .body;
    assert_eq!(ours["name"], "Mine");
}

#[test]
fn groups_have_an_owner_members_and_a_unique_id() {
    let app = spawn_app();
    let ann = user(&app, &app.key, ORG, "ann");
    let bob = user(&app, &app.key, ORG, "bob");
    let stranger = user(&app, &app.other_key, OTHER, "stranger");
    let group = create(
        &app,
        GROUPS,
        json!({"platform_key": ORG, "name": "Editors", "description": "They edit", "users_to_add": [ann]}),
    );
    assert_eq!(group["platform_key"], ORG);
    assert_eq!(group["owner"]["id"], app.admin_id);
    assert_eq!(group["owner"]["username"], ADMIN);
    assert_eq!(group["users"][0]["id"], ann);
    assert_eq!(group["users"][0]["username"], "ann");
    assert_eq!(group["is_internal"], false);
    let unique_id = group["unique_id"].as_str().unwrap().to_owned();
    assert_eq!(unique_id.len(), 36, "a uuid: {unique_id}");
    let gid = id(&group);

    // unique_id is unique on the platform.
    app.post(GROUPS)
        .json(&json!({"platform_key": ORG, "name": "Copy", "unique_id": unique_id}))
        .send()
        .expect(409);
    // Members must be users of the platform.
    let bad = app
        .post(GROUPS)
        .json(&json!({"platform_key": ORG, "name": "X", "users_to_add": [stranger]}))
        .send()
        .expect(400)
        .body;
    assert!(bad["users_to_add"].is_array(), "{bad}");

    let changed = app
        .patch(&format!("{GROUPS}{gid}/"))
        .json(&json!({"platform_key": ORG, "users_to_add": [bob], "users_to_remove": [ann]}))
        .send()
        .expect(200)
        .body;
    assert_eq!(
        changed["users"],
        json!([{"id": bob, "username": "bob", "email": "bob@x.test"}])
    );
    assert_eq!(changed["name"], "Editors");

    // Filters.
    create(
        &app,
        GROUPS,
        json!({"platform_key": ORG, "name": "Readers"}),
    );
    let by_user = app
        .get(&format!("{GROUPS}?platform_key={ORG}&username=BOB"))
        .send()
        .expect(200)
        .body;
    assert_eq!(names(&by_user), ["Editors"]);
    let by_email = app
        .get(&format!("{GROUPS}?platform_key={ORG}&email=bob@x.test"))
        .send()
        .expect(200)
        .body;
    assert_eq!(names(&by_email), ["Editors"]);
    let by_name = app
        .get(&format!("{GROUPS}?platform_key={ORG}&name=read"))
        .send()
        .expect(200)
        .body;
    assert_eq!(names(&by_name), ["Readers"]);
    let by_owner = |owner: &str| {
        app.get(&format!(
            "{GROUPS}?platform_key={ORG}&owner={owner}&name=readers"
        ))
        .send()
        .expect(200)
        .body["count"]
            .clone()
    };
    assert_eq!(by_owner(ADMIN), 1);
    assert_eq!(by_owner("ann"), 0);
    let lean = app
        .get(&format!(
            "{GROUPS}?platform_key={ORG}&username=bob&include_users=false"
        ))
        .send()
        .expect(200)
        .body;
    assert_eq!(lean["results"][0]["users"], json!([]));
    assert!(lean["results"][0]["owner"]["id"].is_u64());

    // Built-in groups: members may change, the group may not go.
    let students = app
        .get(&format!("{GROUPS}?platform_key={ORG}&name=Students"))
        .send()
        .expect(200)
        .body["results"][0]["id"]
        .as_u64()
        .unwrap();
    app.request("PATCH", &format!("{GROUPS}{students}/"))
        .json(&json!({"platform_key": ORG, "users_to_add": [ann]}))
        .send()
        .expect(200);
    app.delete(&format!("{GROUPS}{students}/?platform_key={ORG}"))
        .send()
        .expect(403);

    app.delete(&format!("{GROUPS}{gid}/?platform_key={ORG}"))
        .send()
        .expect(204);
    app.get(&format!("{GROUPS}{gid}/?platform_key={ORG}"))
        .send()
        .expect(404);
}

#[test]
fn policies_bind_a_role_to_resources_for_users_and_groups_with_the_seed_filters() {
    let app = spawn_app();
    let ann = user(&app, &app.key, ORG, "ann");
    let bob = user(&app, &app.key, ORG, "bob");
    let role = create(
        &app,
        ROLES,
        json!({"platform_key": ORG, "name": "Chatter", "actions": ["Ibl.Mentor/Chat/action"]}),
    );
    let rid = id(&role);
    let group = id(&create(
        &app,
        GROUPS,
        json!({"platform_key": ORG, "name": "Night Shift", "users_to_add": [bob]}),
    ));
    let policy = create(
        &app,
        POLICIES,
        json!({"platform_key": ORG, "role_id": rid, "name": "Chat on 5", "resources": ["/platforms/1/mentors/5/"], "users_to_add": [ann], "groups_to_add": [group], "is_internal": true, "platform": {"id": 9}}),
    );
    assert_eq!(policy["name"], "Chat on 5");
    assert_eq!(policy["role_id"], rid);
    assert_eq!(policy["platform_key"], ORG);
    assert_eq!(
        policy["role"],
        json!({"id": rid, "name": "Chatter", "platform_key": ORG, "actions": ["Ibl.Mentor/Chat/action"], "data_actions": []})
    );
    assert_eq!(policy["resources"], json!(["/platforms/1/mentors/5/"]));
    assert_eq!(policy["users"][0]["id"], ann);
    assert_eq!(policy["groups"][0]["id"], group);
    assert_eq!(policy["groups"][0]["name"], "Night Shift");
    assert_eq!(policy["is_internal"], false);
    let pid = id(&policy);

    // The name defaults to a uuid.
    let unnamed = create(&app, POLICIES, json!({"platform_key": ORG, "role_id": rid}));
    assert_eq!(unnamed["name"].as_str().unwrap().len(), 36);

    // Filters of seed 003.
    let list = |q: &str| {
        app.get(&format!("{POLICIES}?platform_key={ORG}&{q}"))
            .send()
            .expect(200)
            .body
    };
    assert_eq!(list(&format!("role_id={rid}"))["count"], 2);
    assert_eq!(names(&list("name=CHAT ON")), ["Chat on 5"]);
    assert_eq!(names(&list("username=ann")), ["Chat on 5"]);
    assert_eq!(
        names(&list("username=BOB")),
        ["Chat on 5"],
        "through a group"
    );
    assert_eq!(names(&list("email=bob@x.test")), ["Chat on 5"]);
    assert_eq!(names(&list("group=night shift")), ["Chat on 5"]);
    let lean = list("name=chat&include_users=false&include_groups=false");
    assert_eq!(lean["results"][0]["users"], json!([]));
    assert_eq!(lean["results"][0]["groups"], json!([]));
    let paged = list(&format!("role_id={rid}&page=2&page_size=1"));
    assert!(paged["next"].is_null());
    assert!(paged["previous"].as_str().unwrap().starts_with("http"));
    app.get(&format!("{POLICIES}?platform_key={ORG}&page=9"))
        .send()
        .expect(404);
    app.get(POLICIES).send().expect(400);

    // Membership changes, unknown ids named by field.
    let changed = app
        .request("PATCH", &format!("{POLICIES}{pid}/"))
        .json(&json!({"platform_key": ORG, "users_to_remove": [ann], "groups_to_remove": [group], "users_to_add": [bob]}))
        .send()
        .expect(200)
        .body;
    assert_eq!(changed["users"][0]["id"], bob);
    assert_eq!(changed["groups"], json!([]));
    for field in ["users_to_add", "groups_to_add", "role_id"] {
        let bad = app
            .patch(&format!("{POLICIES}{pid}/"))
            .json(&json!({"platform_key": ORG, field: if field == "role_id" { json!(424242) } else { json!([424242]) }}))
            .send()
            .expect(400)
            .body;
        assert!(bad[field].is_array(), "{field}: {bad}");
    }
    let bad = app
        .post(POLICIES)
        .json(&json!({"platform_key": ORG, "role_id": rid, "resources": ["/platforms/2/"]}))
        .send()
        .expect(400)
        .body;
    assert!(bad["resources"].is_array(), "{bad}");

    app.delete(&format!("{POLICIES}{pid}/?platform_key={ORG}"))
        .send()
        .expect(204);
    app.get(&format!("{POLICIES}{pid}/?platform_key={ORG}"))
        .send()
        .expect(404);
}

#[test]
fn mentor_access_creates_then_updates_the_one_policy_per_mentor_and_role() {
    let app = spawn_app();
    let ann = user(&app, &app.key, ORG, "ann");
    user(&app, &app.key, ORG, "bob");
    let group = id(&create(
        &app,
        GROUPS,
        json!({"platform_key": ORG, "name": "Mentor fans"}),
    ));
    let first = app
        .post(MENTOR_ACCESS)
        .json(&json!({"platform_key": ORG, "mentor_id": 42, "role": "viewer", "users_to_add": [ann], "groups_to_add": [group]}))
        .send()
        .expect(201);
    assert!(first.header("X-Position").is_some());
    let policy = first.body;
    assert_eq!(policy["platform_key"], ORG);
    assert_eq!(policy["mentor_id"], 42);
    assert_eq!(policy["role"], "viewer");
    assert_eq!(policy["resources"], json!(["/platforms/1/mentors/42/"]));
    assert_eq!(policy["users"][0]["id"], ann);
    assert_eq!(policy["groups"][0]["id"], group);

    let again = app
        .post(MENTOR_ACCESS)
        .json(&json!({"platform_key": ORG, "mentor_id": 42, "role": "viewer", "users_to_remove": [ann], "usernames_to_add": ["bob"], "emails_to_add": ["ann@x.test"]}))
        .send()
        .expect_client_error(400);
    // Adding and removing ann at once is refused.
    assert!(again.body["users_to_remove"].is_array(), "{}", again.body);
    let updated = app
        .post(MENTOR_ACCESS)
        .json(&json!({"platform_key": ORG, "mentor_id": 42, "role": "viewer", "users_to_remove": [ann], "usernames_to_add": ["bob"]}))
        .send()
        .expect(200)
        .body;
    assert_eq!(updated["id"], policy["id"]);
    let users: Vec<&str> = updated["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["bob"]);

    app.post(MENTOR_ACCESS)
        .json(&json!({"platform_key": ORG, "mentor_id": 42, "role": "chat", "emails_to_add": ["ann@x.test"]}))
        .send()
        .expect(201);
    let list = app
        .get(&format!("{MENTOR_ACCESS}?platform_key={ORG}&mentor_id=42"))
        .send()
        .expect(200)
        .body;
    let roles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["viewer", "chat"]);
    let none = app
        .get(&format!("{MENTOR_ACCESS}?platform_key={ORG}&mentor_id=43"))
        .send()
        .expect(200)
        .body;
    assert_eq!(none, json!([]));

    // Bad input.
    for body in [
        json!({"platform_key": ORG, "mentor_id": 42, "role": "owner"}),
        json!({"platform_key": ORG, "mentor_id": "42", "role": "viewer"}),
        json!({"platform_key": ORG, "role": "viewer"}),
        json!({"platform_key": ORG, "mentor_id": 42, "role": "viewer", "usernames_to_add": ["nobody"]}),
    ] {
        app.post(MENTOR_ACCESS).json(&body).send().expect(400);
    }
    app.get(&format!("{MENTOR_ACCESS}?platform_key={ORG}"))
        .send()
        .expect(400);
    app.get(&format!(
        "{MENTOR_ACCESS}?platform_key={OTHER}&mentor_id=42"
    ))
    .send()
    .expect(403);
    let theirs = app
        .get(&format!(
            "{MENTOR_ACCESS}?platform_key={OTHER}&mentor_id=42"
        ))
        .key(&app.other_key)
        .send()
        .expect(200)
        .body;
    assert_eq!(theirs, json!([]));
}

#[test]
fn concurrent_first_grants_make_one_mentor_policy() {
    let app = spawn_app();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    app.post(MENTOR_ACCESS)
                        .json(&json!({"platform_key": ORG, "mentor_id": 77, "role": "editor"}))
                        .send()
                        .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    let list = app
        .get(&format!("{MENTOR_ACCESS}?platform_key={ORG}&mentor_id=77"))
        .send()
        .expect(200)
        .body;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn a_group_unique_id_is_taken_once_even_by_concurrent_writes() {
    let app = spawn_app();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    app.post(GROUPS)
                        .json(&json!({"platform_key": ORG, "name": "Race", "unique_id": "race"}))
                        .send()
                        .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        5,
        "{statuses:?}"
    );
    let other = id(&create(
        &app,
        GROUPS,
        json!({"platform_key": ORG, "name": "Calm", "unique_id": "calm"}),
    ));
    app.request("PATCH", &format!("{GROUPS}{other}/"))
        .json(&json!({"platform_key": ORG, "unique_id": "race"}))
        .send()
        .expect(409);
    // Keeping its own unique_id is no conflict.
    app.request("PATCH", &format!("{GROUPS}{other}/"))
        .json(&json!({"platform_key": ORG, "unique_id": "calm", "description": "still calm"}))
        .send()
        .expect(200);
}

#[test]
fn internal_policies_are_never_shown_or_changed() {
    let app = spawn_app();
    // A new platform's only policy is its internal tenant-admin policy.
    let internal: Vec<u64> = app
        .events()
        .iter()
        .filter(|e| e.payload["is_internal"] == true)
        .filter_map(|e| e.stream.strip_prefix("policy-"))
        .map(|id| id.parse().unwrap())
        .collect();
    assert!(!internal.is_empty());
    let list = app
        .get(&format!("{POLICIES}?platform_key={ORG}"))
        .send()
        .expect(200)
        .body;
    assert_eq!(list["count"], 0, "{list}");
    for pid in internal {
        app.get(&format!("{POLICIES}{pid}/?platform_key={ORG}"))
            .send()
            .expect(404);
        app.request("PATCH", &format!("{POLICIES}{pid}/"))
            .json(&json!({"platform_key": ORG, "users_to_remove": [app.admin_id]}))
            .send()
            .expect(404);
        app.delete(&format!("{POLICIES}{pid}/?platform_key={ORG}"))
            .send()
            .expect(404);
    }
}

#[test]
fn deleting_a_role_deletes_its_policies() {
    let app = spawn_app();
    let role = create(
        &app,
        ROLES,
        json!({"platform_key": ORG, "name": "Doomed", "actions": ["Ibl.Mentor/Mentors/read"]}),
    );
    let keep = create(
        &app,
        ROLES,
        json!({"platform_key": ORG, "name": "Kept", "actions": ["Ibl.Mentor/Mentors/read"]}),
    );
    let policies: Vec<u64> = ["One", "Two"]
        .iter()
        .map(|name| {
            id(&create(
                &app,
                POLICIES,
                json!({"platform_key": ORG, "name": name, "role_id": id(&role), "resources": ["/platforms/1/mentors/5/"]}),
            ))
        })
        .collect();
    let other = id(&create(
        &app,
        POLICIES,
        json!({"platform_key": ORG, "name": "Other", "role_id": id(&keep), "resources": ["/platforms/1/mentors/5/"]}),
    ));
    let before = app.events().len();
    app.delete(&format!("{ROLES}{}/?platform_key={ORG}", id(&role)))
        .send()
        .expect(204);
    assert_eq!(
        app.events().len(),
        before + 3,
        "the role and its two policies"
    );
    for policy in policies {
        app.get(&format!("{POLICIES}{policy}/?platform_key={ORG}"))
            .send()
            .expect(404);
    }
    app.get(&format!("{POLICIES}{other}/?platform_key={ORG}"))
        .send()
        .expect(200);
    let listed = app
        .get(&format!(
            "{POLICIES}?platform_key={ORG}&role_id={}",
            id(&role)
        ))
        .send()
        .expect(200)
        .body;
    assert_eq!(listed["count"], 0);
}

#[test]
fn put_replaces_and_needs_what_a_create_needs_while_patch_changes_what_it_names() {
    let app = spawn_app();
    let role = create(
        &app,
        ROLES,
        json!({"platform_key": ORG, "name": "Putter", "actions": ["Ibl.Mentor/Mentors/read"]}),
    );
    let group = create(
        &app,
        GROUPS,
        json!({"platform_key": ORG, "name": "Putters"}),
    );
    let policy = create(
        &app,
        POLICIES,
        json!({"platform_key": ORG, "role_id": id(&role), "resources": ["/platforms/1/"]}),
    );
    let head = app.head();
    for (path, field) in [
        (format!("{ROLES}{}/", id(&role)), "name"),
        (format!("{GROUPS}{}/", id(&group)), "name"),
        (format!("{POLICIES}{}/", id(&policy)), "role_id"),
    ] {
        let bad = app
            .put(&path)
            .json(&json!({"platform_key": ORG, "description": "x"}))
            .send()
            .expect(400)
            .body;
        assert_eq!(bad[field], json!(["This field is required."]), "{path}");
        app.patch(&path)
            .json(&json!({"platform_key": ORG}))
            .send()
            .expect(200);
    }
    assert_eq!(app.head(), head, "nothing changed");
}

#[test]
fn a_reserved_name_passes_on_once_its_holder_lets_it_go() {
    let app = spawn_app();
    // A group's unique_id: free again after a rename and after a delete.
    let first = id(&create(
        &app,
        GROUPS,
        json!({"platform_key": ORG, "name": "First", "unique_id": "shared"}),
    ));
    app.post(GROUPS)
        .json(&json!({"platform_key": ORG, "name": "Second", "unique_id": "shared"}))
        .send()
        .expect(409);
    let head = app.head();
    for bad in [json!("   "), json!("x".repeat(300))] {
        app.patch(&format!("{GROUPS}{first}/"))
            .json(&json!({"platform_key": ORG, "unique_id": bad}))
            .send()
            .expect(400);
    }
    assert_eq!(app.head(), head, "a refused unique_id reserves nothing");
    app.patch(&format!("{GROUPS}{first}/"))
        .json(&json!({"platform_key": ORG, "unique_id": "renamed"}))
        .send()
        .expect(200);
    let second = id(&create(
        &app,
        GROUPS,
        json!({"platform_key": ORG, "name": "Second", "unique_id": "shared"}),
    ));
    app.patch(&format!("{GROUPS}{first}/"))
        .json(&json!({"platform_key": ORG, "unique_id": "shared"}))
        .send()
        .expect(409);
    app.delete(&format!("{GROUPS}{second}/?platform_key={ORG}"))
        .send()
        .expect(204);
    app.patch(&format!("{GROUPS}{first}/"))
        .json(&json!({"platform_key": ORG, "unique_id": "shared"}))
        .send()
        .expect(200);

    // A mentor's access policy: a new one after the old one is deleted.
    let grant = json!({"platform_key": ORG, "mentor_id": 9, "role": "chat"});
    let old = id(&app.post(MENTOR_ACCESS).json(&grant).send().expect(201).body);
    assert_eq!(
        id(&app.post(MENTOR_ACCESS).json(&grant).send().expect(200).body),
        old
    );
    app.delete(&format!("{POLICIES}{old}/?platform_key={ORG}"))
        .send()
        .expect(204);
    let new = id(&app.post(MENTOR_ACCESS).json(&grant).send().expect(201).body);
    assert_ne!(new, old);
    let listed = app
        .get(&format!("{MENTOR_ACCESS}?platform_key={ORG}&mentor_id=9"))
        .send()
        .expect(200)
        .body;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[test]
fn a_create_the_domain_refuses_appends_nothing_not_even_an_id() {
    let app = spawn_app();
    let head = app.head();
    let bad = app
        .post(ROLES)
        .json(&json!({"platform_key": ORG, "name": "Bad", "actions": ["Ibl.Mentor/Men*"]}))
        .send()
        .expect(400)
        .body;
    assert!(bad["actions"].is_array(), "{bad}");
    app.post(ROLES)
        .idempotency_key("bad-role")
        .json(&json!({"platform_key": ORG, "name": "Bad", "actions": ["Ibl.Mentor/Men*"]}))
        .send()
        .expect(400);
    app.post(GROUPS)
        .json(&json!({"platform_key": ORG, "name": "x".repeat(300), "unique_id": "long"}))
        .send()
        .expect(400);
    assert_eq!(app.head(), head, "refused creates appended events");
}
