//! Fills a data folder that already holds platform `KEY` (pk 1, made by
//! `ibl platform create`) with USERS users, GROUPS groups of about 20 users
//! and POLICIES policies (built-in Mentor Viewer on one mentor each, for 3
//! users and 2 groups), for the permission-check benchmark:
//! `cargo run --release --example fill_rbac -- DIR KEY USERS GROUPS POLICIES`.

use std::sync::Arc;

use chrono::Utc;
use ibl_command_service::handler::CommandContext;
use ibl_command_service::platforms::allocate_ids;
use ibl_events::platform::{UserEvent, USERS_STREAM};
use ibl_events::rbac::{group_stream, policy_stream, GroupEvent, PolicyEvent};
use ibl_events::sqlite::SqliteStore;
use ibl_events::{DomainEvent, EventStore, ExpectedRevision, Metadata};

/// The built-in Mentor Viewer role of the first platform.
const MENTOR_VIEWER: u64 = 3;

fn rng(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: fill_rbac DIR KEY USERS GROUPS POLICIES");
        std::process::exit(2);
    }
    let key = args[2].clone();
    let n = |i: usize| args[i].parse::<u64>().expect("a number");
    let (users, groups, policies) = (n(3), n(4), n(5));
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(std::path::Path::new(&args[1])).expect("open the store"));
    let started = std::time::Instant::now();
    let now = Utc::now();
    let meta = Metadata::default();
    // Users 2..=users+1 (1 is the admin), in batches on the registry stream.
    let first_user = 2;
    let ids: Vec<u64> = (first_user..first_user + users).collect();
    for chunk in ids.chunks(1000) {
        let events = chunk
            .iter()
            .map(|id| {
                UserEvent::UserRegistered {
                    id: *id,
                    platform: key.clone(),
                    username: format!("user{id}"),
                    email: format!("user{id}@bench.test"),
                    given_name: String::new(),
                    family_name: String::new(),
                    registered_at: now,
                }
                .to_data(uuid::Uuid::new_v4(), meta.clone())
            })
            .collect();
        store
            .append(USERS_STREAM, ExpectedRevision::Any, events)
            .await
            .expect("users");
    }
    let ctx = CommandContext::default();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let first_group = allocate_ids(&store, &ctx, "group", groups)
        .await
        .expect("group ids");
    for g in 0..groups {
        let id = first_group + g;
        let members: Vec<u64> = (0..20)
            .map(|_| first_user + rng(&mut seed) % users)
            .collect();
        let events = vec![
            GroupEvent::GroupCreated {
                id,
                platform: key.clone(),
                unique_id: format!("bench-group-{id}"),
                name: format!("Group {id}"),
                description: String::new(),
                owner_id: 1,
                is_internal: false,
                is_builtin: false,
                created_at: now,
            }
            .to_data(uuid::Uuid::new_v4(), meta.clone()),
            GroupEvent::GroupMembersAdded {
                user_ids: members,
                added_at: now,
            }
            .to_data(uuid::Uuid::new_v4(), meta.clone()),
        ];
        store
            .append(&group_stream(id), ExpectedRevision::NoStream, events)
            .await
            .expect("group");
    }
    let first_policy = allocate_ids(&store, &ctx, "policy", policies)
        .await
        .expect("policy ids");
    for p in 0..policies {
        let id = first_policy + p;
        let event = PolicyEvent::PolicyCreated {
            id,
            platform: key.clone(),
            platform_pk: 1,
            name: format!("viewers of mentor {p}"),
            role_id: MENTOR_VIEWER,
            resources: vec![format!("/platforms/1/mentors/{p}/")],
            user_ids: (0..3)
                .map(|_| first_user + rng(&mut seed) % users)
                .collect(),
            group_ids: (0..2)
                .map(|_| first_group + rng(&mut seed) % groups)
                .collect(),
            is_internal: false,
            created_at: now,
        };
        store
            .append(
                &policy_stream(id),
                ExpectedRevision::NoStream,
                vec![event.to_data(uuid::Uuid::new_v4(), meta.clone())],
            )
            .await
            .expect("policy");
    }
    eprintln!(
        "filled {users} users, {groups} groups, {policies} policies in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
