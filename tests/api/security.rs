//! Security, tried as an attacker inside a tenant would: a limited user with
//! narrow management permissions (roles, policies, groups, API keys), given
//! a key through the API, tries every way to become tenant admin; the
//! tenant tries to lock itself out; events name who really acted.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp, ADMIN, ORG};

const ROLES: &str = "/api/core/rbac/roles/";
const GROUPS: &str = "/api/core/rbac/groups/";
const POLICIES: &str = "/api/core/rbac/policies/";
const MENTOR_ACCESS: &str = "/api/core/rbac/mentor-access/";
const KEYS: &str = "/api/core/platform/api-tokens/";
const CHECK: &str = "/api/core/rbac/permissions/check/";
const ROOT: &str = "/platforms/1/";

fn users_url() -> String {
    format!("/api/orgs/{ORG}/scim/v2/Users")
}

/// A user registered through SCIM; answers its id.
fn user(app: &TestApp, name: &str) -> u64 {
    let body = app
        .post(&users_url())
        .json(&json!({"userName": name, "emails": [{"value": format!("{name}@acme.test")}]}))
        .send()
        .expect(201)
        .body;
    body["id"].as_str().unwrap().parse().unwrap()
}

fn id(body: &Value) -> u64 {
    body["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no id in {body}"))
}

fn role(app: &TestApp, name: &str, actions: &[&str]) -> u64 {
    id(&app
        .post(ROLES)
        .json(&json!({"platform_key": ORG, "name": name, "actions": actions}))
        .send()
        .expect(201)
        .body)
}

fn policy(app: &TestApp, role: u64, resources: &[&str], users: &[u64], groups: &[u64]) -> u64 {
    id(&app
        .post(POLICIES)
        .json(
            &json!({"platform_key": ORG, "role_id": role, "resources": resources,
                      "users_to_add": users, "groups_to_add": groups}),
        )
        .send()
        .expect(201)
        .body)
}

fn builtin(app: &TestApp, list: &str, name: &str) -> u64 {
    let body = app
        .get(&format!(
            "{list}?platform_key={ORG}&name={}",
            name.replace(' ', "%20")
        ))
        .send()
        .expect(200)
        .body;
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .map(id)
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// A key for user `username`, made by the admin through the API.
fn key_for(app: &TestApp, username: &str, name: &str) -> String {
    let body = app
        .post(KEYS)
        .json(&json!({"platform_key": ORG, "name": name, "username": username}))
        .send()
        .expect(201)
        .body;
    assert_eq!(body["username"], username, "{body}");
    body["key"].as_str().unwrap().to_owned()
}

/// Whether `key`'s own user is a tenant admin, by the permission check.
fn is_admin(app: &TestApp, key: &str) -> bool {
    let body = app
        .post(CHECK)
        .key(key)
        .json(&json!({"platform_key": ORG, "resources": [ROOT]}))
        .send()
        .expect(200)
        .body;
    body[ROOT]["write"] == true && body[ROOT]["delete"] == true
}

/// The detail of a refusal names what was missing.
fn refused(app: &TestApp, key: &str, method: &'static str, path: &str, body: Value) -> String {
    let answer = app
        .request(method, path)
        .key(key)
        .json(&body)
        .send()
        .expect(403)
        .body;
    answer["detail"].as_str().unwrap_or_default().to_owned()
}

struct Tenant {
    app: TestApp,
    mallory: u64,
    key: String,
    custom_role: u64,
    admin_role: u64,
    admins_group: u64,
    bound_group: u64,
    admin_policy: u64,
}

/// Mallory manages roles, policies, groups and API keys (each on its
/// collection only) and may read mentors; a custom role (mentor read) is
/// bound to her on the mentors and, through a group, also sits beside an
/// admin policy that binds that group.
fn tenant() -> Tenant {
    let app = spawn_app();
    let mallory = user(&app, "mallory");
    let managers = role(
        &app,
        "Managers",
        &[
            "Ibl.Core/Roles/*",
            "Ibl.Core/Policies/*",
            "Ibl.Core/Groups/*",
            "Ibl.Core/ApiKeys/*",
        ],
    );
    policy(
        &app,
        managers,
        &[
            "/platforms/1/roles/",
            "/platforms/1/policies/",
            "/platforms/1/groups/",
            "/platforms/1/api-keys/",
        ],
        &[mallory],
        &[],
    );
    let custom_role = role(&app, "Reader", &["Ibl.Mentor/Mentors/read"]);
    policy(
        &app,
        custom_role,
        &["/platforms/1/mentors/"],
        &[mallory],
        &[],
    );
    let admin_role = builtin(&app, ROLES, "Tenant Admin");
    let admins_group = builtin(&app, GROUPS, "Tenant Admins");
    let bound_group = id(&app
        .post(GROUPS)
        .json(&json!({"platform_key": ORG, "unique_id": "ops", "name": "Ops"}))
        .send()
        .expect(201)
        .body);
    // The custom role is also bound, at the platform's root, to a group
    // (roles bound at two scopes); an admin policy binds the same group
    // (a group bound by several policies).
    policy(&app, custom_role, &[ROOT], &[], &[bound_group]);
    let admin_policy = policy(&app, admin_role, &[ROOT], &[], &[bound_group]);
    let key = key_for(&app, "mallory", "mallory-key");
    Tenant {
        app,
        mallory,
        key,
        custom_role,
        admin_role,
        admins_group,
        bound_group,
        admin_policy,
    }
}

#[test]
fn a_narrow_manager_cannot_make_anyone_tenant_admin_and_nothing_is_written() {
    let t = tenant();
    let (app, key, me) = (&t.app, t.key.as_str(), t.mallory);
    assert!(!is_admin(app, key));
    let before = app.head();
    let role_path = format!("{ROLES}{}/", t.custom_role);

    // Roles: widen the role bound to her, by PATCH and PUT; a new admin role.
    for method in ["PATCH", "PUT"] {
        let why = refused(
            app,
            key,
            method,
            &role_path,
            json!({"platform_key": ORG, "name": "Reader", "actions": ["Ibl.*"]}),
        );
        assert!(why.contains("Ibl.*") && why.contains(ROOT), "{why}");
    }
    refused(
        app,
        key,
        "PATCH",
        &role_path,
        json!({"platform_key": ORG, "data_actions": ["Ibl.Mentor/Settings/*/write"]}),
    );
    refused(
        app,
        key,
        "POST",
        ROLES,
        json!({"platform_key": ORG, "name": "Mine", "actions": ["Ibl.Core/Users/*"]}),
    );

    // Policies: bind Tenant Admin to herself; her own role at a wider scope;
    // join the admin policy directly or through a group.
    let why = refused(
        app,
        key,
        "POST",
        POLICIES,
        json!({"platform_key": ORG, "role_id": t.admin_role, "resources": [ROOT], "users_to_add": [me]}),
    );
    assert!(why.contains("Ibl.*"), "{why}");
    refused(
        app,
        key,
        "POST",
        POLICIES,
        json!({"platform_key": ORG, "role_id": t.custom_role, "resources": [ROOT], "users_to_add": [me]}),
    );
    let admin_policy = format!("{POLICIES}{}/", t.admin_policy);
    for change in [
        json!({"users_to_add": [me]}),
        json!({"resources": ["/platforms/1/mentors/"]}),
    ] {
        let mut body = change;
        body["platform_key"] = json!(ORG);
        refused(app, key, "PATCH", &admin_policy, body);
    }
    let own_group = id(&app
        .post(GROUPS)
        .key(key)
        .json(&json!({"platform_key": ORG, "unique_id": "mine", "users_to_add": [me]}))
        .send()
        .expect(201)
        .body);
    refused(
        app,
        key,
        "PATCH",
        &admin_policy,
        json!({"platform_key": ORG, "groups_to_add": [own_group]}),
    );

    // Mentor access with each role.
    for role in ["viewer", "editor", "chat"] {
        refused(
            app,
            key,
            "POST",
            MENTOR_ACCESS,
            json!({"platform_key": ORG, "mentor_id": 9, "role": role, "usernames_to_add": ["mallory"]}),
        );
    }

    // Groups: join Tenant Admins, or the group the admin policy binds.
    for group in [t.admins_group, t.bound_group] {
        refused(
            app,
            key,
            "PATCH",
            &format!("{GROUPS}{group}/"),
            json!({"platform_key": ORG, "users_to_add": [me]}),
        );
    }

    // API keys: delete the admin's key, or make one for the admin.
    let why = app
        .delete(&format!("{KEYS}{ADMIN}?platform_key={ORG}"))
        .key(key)
        .send()
        .expect(403)
        .body;
    assert!(
        why["detail"].as_str().unwrap().contains("Users/write"),
        "{why}"
    );
    refused(
        app,
        key,
        "POST",
        KEYS,
        json!({"platform_key": ORG, "name": "stolen", "username": ADMIN}),
    );

    // Only her own group was written; she is no admin, nor may read users.
    let written: Vec<_> = app
        .events()
        .into_iter()
        .filter(|e| e.position > before)
        .map(|e| e.event_type)
        .collect();
    assert!(
        written
            .iter()
            .all(|t| t.starts_with("Group") || t == "IdsAllocated" || t == "Reserved"),
        "{written:?}"
    );
    assert!(!is_admin(app, key));

    // What she holds she may give: her role, on the mentors, to a group.
    app.post(POLICIES)
        .key(key)
        .json(&json!({"platform_key": ORG, "role_id": t.custom_role,
                      "resources": ["/platforms/1/mentors/7/"], "groups_to_add": [own_group]}))
        .send()
        .expect(201);
    // And her own key.
    app.post(KEYS)
        .key(key)
        .json(&json!({"platform_key": ORG, "name": "mallory-2"}))
        .send()
        .expect(201);
}

#[test]
fn a_tenant_admin_may_do_all_of_it() {
    let t = tenant();
    let app = &t.app;
    let me = t.mallory;
    app.patch(&format!("{ROLES}{}/", t.custom_role))
        .json(&json!({"platform_key": ORG, "actions": ["Ibl.Mentor/*"]}))
        .send()
        .expect(200);
    app.patch(&format!("{GROUPS}{}/", t.bound_group))
        .json(&json!({"platform_key": ORG, "users_to_add": [me]}))
        .send()
        .expect(200);
    assert!(
        is_admin(app, &t.key),
        "through the group the admin policy binds"
    );
    app.patch(&format!("{GROUPS}{}/", t.bound_group))
        .json(&json!({"platform_key": ORG, "users_to_remove": [me]}))
        .send()
        .expect(200);
    app.post(MENTOR_ACCESS)
        .json(&json!({"platform_key": ORG, "mentor_id": 9, "role": "editor", "users_to_add": [me]}))
        .send()
        .expect(201);
    app.patch(&format!("{GROUPS}{}/", t.admins_group))
        .json(&json!({"platform_key": ORG, "users_to_add": [me]}))
        .send()
        .expect(200);
    assert!(is_admin(app, &t.key));
    // Now an admin herself, she may do what she was refused.
    app.patch(&format!("{ROLES}{}/", t.custom_role))
        .key(&t.key)
        .json(&json!({"platform_key": ORG, "actions": ["Ibl.*"]}))
        .send()
        .expect(200);
}

#[test]
fn the_last_admin_and_the_last_admin_key_cannot_be_removed() {
    let app = spawn_app();
    let admin = app.admin_id;
    let admin_user = format!("{}/{admin}", users_url());
    // Deactivating the only admin, by DELETE, PATCH or PUT.
    app.delete(&admin_user).send().expect(409);
    app.patch(&admin_user)
        .json(&json!({"Operations": [{"op": "replace", "path": "active", "value": false}]}))
        .send()
        .expect(409);
    app.put(&admin_user)
        .json(&json!({"userName": ADMIN, "active": false}))
        .send()
        .expect(409);
    // Deleting the only admin key.
    let why = app
        .delete(&format!("{KEYS}{ADMIN}?platform_key={ORG}"))
        .send()
        .expect(409)
        .body;
    assert!(why["detail"].as_str().unwrap().contains("last"), "{why}");
    assert!(is_admin(&app, &app.key));

    // A second admin, through Tenant Admins, with a key of her own.
    let carol = user(&app, "carol");
    let admins = builtin(&app, GROUPS, "Tenant Admins");
    let group = format!("{GROUPS}{admins}/");
    app.patch(&group)
        .json(&json!({"platform_key": ORG, "users_to_add": [carol]}))
        .send()
        .expect(200);
    let carol_key = key_for(&app, "carol", "carol-key");
    // Now the first key may go, and the first admin may be deactivated.
    app.delete(&format!("{KEYS}{ADMIN}?platform_key={ORG}"))
        .key(&carol_key)
        .send()
        .expect(204);
    app.delete(&admin_user).key(&carol_key).send().expect(204);
    // Carol is the last: she may not leave Tenant Admins, be deactivated,
    // nor delete her key.
    let why = app
        .patch(&group)
        .key(&carol_key)
        .json(&json!({"platform_key": ORG, "users_to_remove": [carol]}))
        .send()
        .expect(409)
        .body;
    assert!(
        why["detail"].as_str().unwrap().contains("tenant admin"),
        "{why}"
    );
    app.delete(&format!("{}/{carol}", users_url()))
        .key(&carol_key)
        .send()
        .expect(409);
    app.delete(&format!("{KEYS}carol-key?platform_key={ORG}"))
        .key(&carol_key)
        .send()
        .expect(409);
    assert!(is_admin(&app, &carol_key));
}

#[test]
fn a_deactivated_users_key_is_refused_everywhere() {
    let app = spawn_app();
    user(&app, "dave");
    let key = key_for(&app, "dave", "dave-key");
    app.post(CHECK)
        .key(&key)
        .json(&json!({"platform_key": ORG, "resources": [ROOT]}))
        .send()
        .expect(200);
    let dave = app
        .get(&format!(
            "{}?filter=userName%20eq%20%22dave%22",
            users_url()
        ))
        .send()
        .expect(200)
        .body["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.delete(&format!("{}/{dave}", users_url()))
        .send()
        .expect(204);
    app.post(CHECK)
        .key(&key)
        .json(&json!({"platform_key": ORG, "resources": [ROOT]}))
        .send()
        .expect(403);
}

#[test]
fn events_name_the_keys_owner_as_actor_and_the_paths_user_beside_it() {
    let app = spawn_app();
    user(&app, "erin");
    let before = app.head();
    // The path names erin, a real user: recorded as on behalf of, not actor.
    app.post("/api/credentials/orgs/acme/users/erin/")
        .header("X-Request-Id", "client-chosen")
        .json(&json!({"name": "Badge"}))
        .send()
        .expect(200);
    // A name that is nobody (or another tenant's user) is not recorded.
    app.post("/api/credentials/orgs/acme/users/nobody-at-all/")
        .json(&json!({"name": "Badge 2"}))
        .send()
        .expect(200);
    let events: Vec<_> = app
        .events()
        .into_iter()
        .filter(|e| e.position > before)
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert_eq!(e.metadata.actor.user.as_deref(), Some(ADMIN));
        assert_eq!(e.metadata.actor.key_name.as_deref(), Some("admin"));
        assert_ne!(e.metadata.correlation_id, "client-chosen");
        assert!(!e.metadata.correlation_id.is_empty());
    }
    assert_eq!(
        events[0].metadata.actor.on_behalf_of.as_deref(),
        Some("erin")
    );
    assert_eq!(
        events[0].metadata.client_request_id.as_deref(),
        Some("client-chosen")
    );
    assert_eq!(events[1].metadata.actor.on_behalf_of, None);
}

#[test]
fn one_email_per_platform() {
    let app = spawn_app();
    user(&app, "frank");
    let dup = app
        .post(&users_url())
        .json(&json!({"userName": "frank2", "emails": [{"value": "FRANK@acme.test"}]}))
        .send()
        .expect(409)
        .body;
    assert!(dup.to_string().contains("email"), "{dup}");
}

#[test]
fn a_user_manager_cannot_act_on_a_user_who_holds_more() {
    let app = spawn_app();
    let manager = user(&app, "uma");
    let plain = user(&app, "pat");
    let users_role = role(
        &app,
        "User managers",
        &["Ibl.Core/Users/*", "Ibl.Core/ApiKeys/*"],
    );
    policy(
        &app,
        users_role,
        &["/platforms/1/users/", "/platforms/1/api-keys/"],
        &[manager],
        &[],
    );
    let key = key_for(&app, "uma", "uma-key");
    let admin = format!("{}/{}", users_url(), app.admin_id);
    let before = app.head();
    for (method, body) in [
        ("DELETE", Value::Null),
        (
            "PATCH",
            json!({"Operations": [{"op": "replace", "path": "active", "value": false}]}),
        ),
        (
            "PATCH",
            json!({"Operations": [{"op": "replace", "path": "emails", "value": [{"value": "uma2@acme.test"}]}]}),
        ),
    ] {
        let mut req = app.request(method, &admin).key(&key);
        if !body.is_null() {
            req = req.json(&body);
        }
        assert_eq!(req.send().status, 403, "{method} {body}");
    }
    assert_eq!(app.head(), before, "nothing written");
    // A user who holds nothing may be managed.
    app.delete(&format!("{}/{plain}", users_url()))
        .key(&key)
        .send()
        .expect(204);
}
