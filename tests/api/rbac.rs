//! The permission check and who-has-access, end to end: RBAC state is
//! written through the domain's commands (the RBAC write routes come next)
//! and read back through HTTP.

use chrono::Utc;
use ibl_command_service::domain::rbac::group::{GroupAggregate, GroupCommand, UpdateGroup};
use ibl_command_service::domain::rbac::policy::{PolicyAggregate, PolicyCommand};
use ibl_command_service::domain::rbac::role::{RoleAggregate, RoleCommand, UpdateRole};
use ibl_command_service::domain::user::UpdateUser;
use ibl_command_service::handler::{execute, CommandContext};
use ibl_command_service::platforms::allocate_ids;
use ibl_command_service::users::{self, NewUser};
use ibl_events::rbac::{group_stream, policy_stream, role_stream};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp, ORG, OTHER};

const CHECK: &str = "/api/core/rbac/permissions/check/";

/// Runs one command against the app's store; returns the position written.
fn run<A>(app: &TestApp, stream: &str, command: A::Command) -> u64
where
    A: ibl_command_service::domain::Aggregate,
    A::Command: Clone,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(execute::<A>(
        &app.store,
        stream,
        &CommandContext::default(),
        command,
    ))
    .expect("the command is accepted")
    .position()
}

/// Registers user `name` of acme through the users module; answers its id.
fn register_user(app: &TestApp, name: &str) -> u64 {
    let id = ids(app, "user");
    let new = NewUser {
        platform: ORG.into(),
        username: name.into(),
        email: format!("{name}@acme.test"),
        given_name: String::new(),
        family_name: String::new(),
        active: true,
    };
    block_on(users::register(
        &app.store,
        &CommandContext::default(),
        id,
        &new,
    ))
    .expect("the user registers");
    id
}

/// Deactivates user `id` of acme; answers the position written.
fn deactivate_user(app: &TestApp, id: u64) -> u64 {
    let ctx = CommandContext::default();
    let change = users::change(
        &app.store,
        &ctx,
        ORG,
        id,
        UpdateUser::default(),
        Some(false),
    );
    block_on(change).expect("the user is deactivated").1
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

fn ids(app: &TestApp, kind: &str) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(allocate_ids(
        &app.store,
        &CommandContext::default(),
        kind,
        1,
    ))
    .expect("an id")
}

/// The check as the admin, about `subject` (a username), fresh at `position`.
fn check_of(
    app: &TestApp,
    subject: &str,
    position: u64,
    resources: &[&str],
    explain: bool,
) -> Value {
    app.post(CHECK)
        .header("X-Min-Position", &app.token(position))
        .json(&json!({"platform_key": ORG, "username": subject, "resources": resources, "explain": explain}))
        .send()
        .expect(200)
        .body
}

const MENTOR: &str = "/platforms/1/mentors/5/";
const DOCUMENTS: &str = "/platforms/1/mentors/5/documents/";
const OTHER_MENTOR: &str = "/platforms/1/mentors/50/";
const MENTORS: &str = "/platforms/1/mentors/";

#[test]
fn a_tenant_admin_may_do_everything_on_its_platform_and_nothing_on_another() {
    let app = spawn_app();
    let body = app
        .post(CHECK)
        .json(
            &json!({"platform_key": ORG, "resources": [MENTORS, MENTOR, "/platforms/2/mentors/"]}),
        )
        .send()
        .expect(200)
        .body;
    assert_eq!(
        body[MENTORS],
        json!({"list": true, "create": true, "chat": true})
    );
    assert_eq!(body[MENTOR]["delete"], json!(true));
    assert!(body["/platforms/2/mentors/"]
        .as_object()
        .expect("an object")
        .values()
        .all(|v| v == &json!(false)));
}

#[test]
fn explain_names_the_policy_role_and_group_that_granted() {
    let app = spawn_app();
    let body = app
        .post(CHECK)
        .json(&json!({"platform_key": ORG, "resources": [MENTOR], "explain": true}))
        .send()
        .expect(200)
        .body;
    let read = &body[MENTOR]["read"];
    assert_eq!(read["allowed"], json!(true));
    assert_eq!(read["role"]["name"], json!("Tenant Admin"));
    assert_eq!(
        read["group"],
        json!("direct"),
        "the admin policy names the admin directly"
    );
    assert!(read["policy"]["id"].as_u64().is_some());
}

#[test]
fn bad_resources_are_rejected_and_change_nothing() {
    let app = spawn_app();
    let head = app.head();
    for bad in [
        "platforms/1/",
        "/platforms/1",
        "/platforms/1/../",
        "/platforms//1/",
        "/platforms/\u{7}/",
        "",
    ] {
        let resp = app
            .post(CHECK)
            .json(&json!({"platform_key": ORG, "resources": [bad]}))
            .send();
        resp.expect_client_error(400);
    }
    let many: Vec<String> = (0..101)
        .map(|i| format!("/platforms/1/mentors/{i}/"))
        .collect();
    app.post(CHECK)
        .json(&json!({"platform_key": ORG, "resources": many}))
        .send()
        .expect_client_error(400);
    app.post(CHECK)
        .json(&json!({"resources": [MENTOR]}))
        .send()
        .expect_client_error(400);
    assert_eq!(app.head(), head);
}

#[test]
fn another_platforms_key_cannot_check_or_list_access() {
    let app = spawn_app();
    app.post(CHECK)
        .key(&app.other_key)
        .json(&json!({"platform_key": ORG, "resources": [MENTOR]}))
        .send()
        .expect_client_error(403);
    app.get(&format!("/api/core/rbac/access/?platform_key={ORG}&resource={MENTOR}&action=Ibl.Mentor/Mentors/read"))
        .key(&app.other_key)
        .send()
        .expect_client_error(403);
    app.post(CHECK)
        .key(&app.other_key)
        .json(&json!({"platform_key": OTHER, "resources": ["/platforms/2/"], "username": "nobody"}))
        .send()
        .expect_client_error(404);
}

#[test]
fn each_change_to_groups_roles_and_users_shows_on_the_next_check() {
    let app = spawn_app();
    let now = Utc::now();
    // bob, in a group that holds a reviewer role on one mentor.
    let bob_id = register_user(&app, "bob");
    let bob = app
        .get(&format!("/api/core/rbac/access/?platform_key={ORG}&resource=/platforms/1/&action=Ibl.Core/Users/read"))
        .send()
        .expect(200);
    assert_eq!(
        bob.body["count"],
        json!(1),
        "only the admin has access before: {}",
        bob.text
    );
    let role = ids(&app, "role");
    run::<RoleAggregate>(
        &app,
        &role_stream(role),
        RoleCommand::Create {
            id: role,
            platform: ORG.into(),
            name: "Reviewer".into(),
            actions: vec!["Ibl.Mentor/Mentors/read".into()],
            data_actions: vec![],
            now,
        },
    );
    let group = ids(&app, "group");
    run::<GroupAggregate>(
        &app,
        &group_stream(group),
        GroupCommand::Create {
            id: group,
            platform: ORG.into(),
            unique_id: "reviewers".into(),
            name: "Reviewers".into(),
            description: String::new(),
            owner_id: app.admin_id,
            users: vec![bob_id],
            now,
        },
    );
    let policy = ids(&app, "policy");
    let at = run::<PolicyAggregate>(
        &app,
        &policy_stream(policy),
        PolicyCommand::Create {
            id: policy,
            platform: ORG.into(),
            platform_pk: 1,
            name: "review mentor 5".into(),
            role_id: role,
            resources: vec![MENTOR.into()],
            users: vec![],
            groups: vec![group],
            now,
        },
    );

    let body = check_of(
        &app,
        "bob",
        at,
        &[MENTOR, DOCUMENTS, OTHER_MENTOR, MENTORS],
        true,
    );
    assert_eq!(body[MENTOR]["read"]["allowed"], json!(true));
    assert_eq!(
        body[MENTOR]["read"]["policy"]["name"],
        json!("review mentor 5")
    );
    assert_eq!(body[MENTOR]["read"]["group"]["name"], json!("Reviewers"));
    assert_eq!(body[MENTOR]["write"]["allowed"], json!(false));
    assert_eq!(
        body[OTHER_MENTOR]["read"]["allowed"],
        json!(false),
        "mentor 50 is not under mentor 5"
    );
    assert_eq!(
        body[MENTORS]["list"]["allowed"],
        json!(false),
        "the collection is above the grant"
    );
    let access = app
        .get(&format!("/api/core/rbac/access/?platform_key={ORG}&resource={DOCUMENTS}&action=Ibl.Mentor/Mentors/read"))
        .send()
        .expect(200)
        .body;
    let users: Vec<&str> = access["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["user"]["username"].as_str())
        .collect();
    assert_eq!(users, ["admin", "bob"]);

    // The role gains write.
    let at = run::<RoleAggregate>(
        &app,
        &role_stream(role),
        RoleCommand::Update {
            platform: ORG.into(),
            changes: UpdateRole {
                actions: Some(vec![
                    "Ibl.Mentor/Mentors/read".into(),
                    "Ibl.Mentor/Mentors/write".into(),
                ]),
                ..UpdateRole::default()
            },
            now,
        },
    );
    assert_eq!(
        check_of(&app, "bob", at, &[MENTOR], false)[MENTOR]["write"],
        json!(true)
    );

    // bob leaves the group.
    let at = run::<GroupAggregate>(
        &app,
        &group_stream(group),
        GroupCommand::Update {
            platform: ORG.into(),
            changes: UpdateGroup {
                users_to_remove: vec![bob_id],
                ..UpdateGroup::default()
            },
            now,
        },
    );
    assert_eq!(
        check_of(&app, "bob", at, &[MENTOR], false)[MENTOR]["read"],
        json!(false)
    );

    // Back in the group, then deactivated.
    run::<GroupAggregate>(
        &app,
        &group_stream(group),
        GroupCommand::Update {
            platform: ORG.into(),
            changes: UpdateGroup {
                users_to_add: vec![bob_id],
                ..UpdateGroup::default()
            },
            now,
        },
    );
    let at = deactivate_user(&app, bob_id);
    assert_eq!(
        check_of(&app, "bob", at, &[MENTOR], false)[MENTOR]["read"],
        json!(false)
    );
}

/// An API key for `user_id` on acme, made through the domain.
fn key_for(app: &TestApp, user_id: u64, username: &str) -> String {
    use ibl_command_service::domain::api_key::{ApiKeyCommand, ApiKeysAggregate};
    use ibl_command_service::secrets::NewSecret;
    let secret = NewSecret::generate();
    run::<ApiKeysAggregate>(
        app,
        &ibl_events::platform::api_keys_stream(ORG),
        ApiKeyCommand::Create {
            name: format!("{username}-key"),
            prefix: secret.prefix(),
            hash: secret.hash(),
            user_id,
            username: username.into(),
            expires: None,
            now: Utc::now(),
        },
    );
    secret.expose().to_owned()
}

/// Waits until the server's read models have applied `position`.
fn settle(app: &TestApp, position: u64) {
    app.post(CHECK)
        .header("X-Min-Position", &app.token(position))
        .json(&json!({"platform_key": ORG, "resources": ["/platforms/1/"]}))
        .send()
        .expect(200);
}

#[test]
fn every_route_with_a_key_is_guarded_by_an_operation_of_the_table() {
    for route in ibl_data_manager::routes::table() {
        // The permission check, now or at a past time, asks about the
        // caller's own grants; naming another user is judged by the check
        // itself (Ibl.Core/Users/write or Ibl.Core/Audit/read).
        if route.auth != ibl_data_manager::routes::Auth::ApiKey
            || route.operation_id == "core_rbac_permissions_check_create"
            || route.operation_id == "audit_permissions_check_create"
        {
            continue;
        }
        let guard = route
            .guard
            .unwrap_or_else(|| panic!("{} {} has no guard", route.method, route.path));
        assert!(
            guard.action().is_some(),
            "{} {}: {guard:?} names no operation",
            route.method,
            route.path
        );
    }
}

#[test]
fn a_key_can_do_what_its_user_may_do_and_nothing_once_the_user_is_deactivated() {
    let app = spawn_app();
    let now = Utc::now();
    let carol = register_user(&app, "carol");
    let key = key_for(&app, carol, "carol");
    let list = crate::helpers::creds("");
    // Known key, no permission.
    let at = app.head();
    settle(&app, at);
    let denied = app.get(&list).key(&key).send().expect_client_error(403);
    assert!(
        denied.text.contains("Ibl.Credentials/Credentials/list"),
        "{}",
        denied.text
    );
    // A role that may list credentials, on the platform.
    let role = ids(&app, "role");
    run::<RoleAggregate>(
        &app,
        &role_stream(role),
        RoleCommand::Create {
            id: role,
            platform: ORG.into(),
            name: "Credential reader".into(),
            actions: vec![
                "Ibl.Credentials/Credentials/list".into(),
                "Ibl.Credentials/Credentials/read".into(),
            ],
            data_actions: vec![],
            now,
        },
    );
    let policy = ids(&app, "policy");
    let at = run::<PolicyAggregate>(
        &app,
        &policy_stream(policy),
        PolicyCommand::Create {
            id: policy,
            platform: ORG.into(),
            platform_pk: 1,
            name: "carol reads credentials".into(),
            role_id: role,
            resources: vec!["/platforms/1/credentials/".into()],
            users: vec![carol],
            groups: vec![],
            now,
        },
    );
    settle(&app, at);
    app.get(&list).key(&key).send().expect(200);
    app.post(&list)
        .key(&key)
        .json(&json!({"name": "Not allowed"}))
        .send()
        .expect_client_error(403);
    // Deactivated: the same key is refused on its next request.
    let at = deactivate_user(&app, carol);
    settle(&app, at);
    app.get(&list).key(&key).send().expect_client_error(403);
}

#[test]
fn deleting_a_role_again_finishes_an_interrupted_cascade() {
    let app = spawn_app();
    let role = app
        .post("/api/core/rbac/roles/")
        .json(&json!({"platform_key": ORG, "name": "Half gone", "actions": ["Ibl.Mentor/*"]}))
        .send()
        .expect(201)
        .body["id"]
        .as_u64()
        .unwrap();
    let policy = app
        .post("/api/core/rbac/policies/")
        .json(&json!({"platform_key": ORG, "role_id": role, "resources": ["/platforms/1/mentors/5/"]}))
        .send()
        .expect(201)
        .body["id"]
        .as_u64()
        .unwrap();
    let policy_path = format!("/api/core/rbac/policies/{policy}/?platform_key={ORG}");
    // The role deleted without its cascade, as if the server stopped between.
    let position = run::<RoleAggregate>(
        &app,
        &role_stream(role),
        RoleCommand::Delete {
            platform: ORG.into(),
            now: Utc::now(),
        },
    );
    app.get(&policy_path)
        .header("X-Min-Position", &app.token(position))
        .send()
        .expect(200);
    app.delete(&format!("/api/core/rbac/roles/{role}/?platform_key={ORG}"))
        .send()
        .expect(404);
    app.get(&policy_path).send().expect(404);
    // A role that never existed deletes nothing.
    let before = app.head();
    app.delete(&format!("/api/core/rbac/roles/987654/?platform_key={ORG}"))
        .send()
        .expect(404);
    assert_eq!(app.head(), before);
}
