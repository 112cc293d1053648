//! Creating a platform with its admin user and first API key: the operator
//! command `platform create`, also used by tests.

use std::sync::Arc;

use chrono::Utc;
use ibl_edge::ApiError;
use ibl_events::ids::{ids_stream, IdEvent};
use ibl_events::platform::{platform_stream, PlatformEvent, PLATFORMS_STREAM};
use ibl_events::{read_stream_all, Actor, DomainEvent, EventStore, Metadata};
use serde::Serialize;

use crate::domain::api_key::ApiKeyCommand;
use crate::domain::ids::{Allocate, IdsAggregate};
use crate::domain::platform::{PlatformAggregate, PlatformCommand, PlatformState};
use crate::domain::rbac::builtins::{builtins, BuiltinGroup, BuiltinIds, BuiltinRole};
use crate::domain::user::UpdateUser;
use crate::domain::Aggregate;
use crate::handler::{append_new, execute, execute_new, load, CommandContext};
use crate::http::rejected;
use crate::secrets::NewSecret;
use crate::users::{
    append_first, change, find_by_username, import_legacy_users, register, NewUser,
};

#[derive(Debug, Clone)]
pub struct NewPlatform {
    pub key: String,
    pub name: String,
    pub admin_username: String,
    pub admin_email: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlatformInfo {
    pub id: u64,
    pub key: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdminInfo {
    pub id: u64,
    pub username: String,
    pub email: String,
}

/// What `platform create` prints.
#[derive(Serialize)]
pub struct CreatedPlatform {
    pub platform: PlatformInfo,
    pub admin: AdminInfo,
    pub api_key: String,
    /// Position of the last event written.
    #[serde(skip)]
    pub position: u64,
}

/// The name of the first key of a platform.
pub const FIRST_KEY_NAME: &str = "admin";

pub async fn create_platform(
    store: &Arc<dyn EventStore>,
    new: NewPlatform,
) -> Result<CreatedPlatform, ApiError> {
    import_legacy(store).await?;
    let ctx = CommandContext {
        actor: Actor {
            platform: None,
            user: Some("operator".into()),
            key_name: None,
            on_behalf_of: None,
        },
        correlation_id: uuid::Uuid::new_v4().to_string(),
        ..CommandContext::default()
    };
    let now = Utc::now();
    let command = |id| PlatformCommand::Create {
        id,
        key: new.key.clone(),
        name: new.name.clone(),
        now,
    };
    // Judged before an id is taken; the key's stream is its uniqueness.
    let key = match PlatformAggregate::decide(&PlatformState::default(), command(1)) {
        Ok(events) => match events.first() {
            Some(PlatformEvent::PlatformCreated { key, .. }) => key.clone(),
            None => return Err(ApiError::Internal("a create decided nothing".into())),
        },
        Err(e) => return Err(rejected(e)),
    };
    let id = allocate_ids(store, &ctx, "platform", 1).await?;
    let outcome =
        execute_new::<PlatformAggregate>(store, &platform_stream(&key), &ctx, command(id)).await?;
    let platform = outcome
        .state
        .get()
        .ok_or_else(|| ApiError::Internal("created platform missing".into()))?;
    let platform = PlatformInfo {
        id: platform.id,
        key: platform.key.clone(),
        name: platform.name.clone(),
    };
    let ctx = CommandContext {
        actor: Actor {
            platform: Some(platform.key.clone()),
            ..ctx.actor.clone()
        },
        ..ctx
    };
    let admin = NewUser {
        platform: platform.key.clone(),
        username: new.admin_username.clone(),
        email: new.admin_email.clone(),
        given_name: String::new(),
        family_name: String::new(),
        active: true,
    };
    admin.judge()?;
    let id = allocate_ids(store, &ctx, "user", 1).await?;
    let outcome = register(store, &ctx, id, &admin).await?;
    let user = outcome
        .state
        .get()
        .ok_or_else(|| ApiError::Internal("registered admin missing".into()))?;
    let admin = AdminInfo {
        id: user.id,
        username: user.username.clone(),
        email: user.email.clone(),
    };
    create_builtins(store, &ctx, &platform, admin.id).await?;
    let secret = NewSecret::generate();
    let command = ApiKeyCommand::Create {
        name: FIRST_KEY_NAME.into(),
        prefix: secret.prefix(),
        hash: secret.hash(),
        user_id: admin.id,
        username: admin.username.clone(),
        expires: None,
        now,
    };
    let outcome = crate::api_keys::run(store, &ctx, &platform.key, FIRST_KEY_NAME, command).await?;
    Ok(CreatedPlatform {
        platform,
        admin,
        api_key: secret.expose().to_owned(),
        position: outcome.position(),
    })
}

/// A key minted by the operator for an existing user: what `ibl platform
/// key` prints.
#[derive(Debug, Clone, Serialize)]
pub struct MintedKey {
    pub platform: PlatformInfo,
    pub user: AdminInfo,
    pub name: String,
    pub api_key: String,
    #[serde(skip)]
    pub position: u64,
}

/// Mints a new API key for user `username` of platform `platform_key`, from
/// the server's own machine (the operator's way back in when a tenant has
/// lost every key). The key is named `name`, or `operator-{time}-{random}`. A
/// deactivated user is refused, unless `reactivate` says to reactivate them
/// first (the way back in when every admin was deactivated).
pub async fn mint_key(
    store: &Arc<dyn EventStore>,
    platform_key: &str,
    username: &str,
    name: Option<String>,
    reactivate: bool,
) -> Result<MintedKey, ApiError> {
    import_legacy(store).await?;
    let (platform, _) =
        load::<PlatformAggregate>(store.as_ref(), &platform_stream(platform_key)).await?;
    let platform = platform
        .get()
        .ok_or_else(|| ApiError::NotFound(format!("No platform {platform_key:?}.")))?;
    let platform = PlatformInfo {
        id: platform.id,
        key: platform.key.clone(),
        name: platform.name.clone(),
    };
    let user = find_by_username(store, platform_key, username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("No user {username:?} on {platform_key:?}.")))?;
    let ctx = CommandContext {
        actor: Actor {
            platform: Some(platform.key.clone()),
            user: Some("operator".into()),
            key_name: None,
            on_behalf_of: Some(user.username.clone()),
        },
        correlation_id: uuid::Uuid::new_v4().to_string(),
        ..CommandContext::default()
    };
    if !user.active {
        if !reactivate {
            return Err(ApiError::Conflict(format!(
                "User {username:?} is deactivated: a key of theirs would be refused \
                 (--reactivate reactivates them)."
            )));
        }
        change(
            store,
            &ctx,
            platform_key,
            user.id,
            UpdateUser::default(),
            Some(true),
        )
        .await?;
    }
    let user = AdminInfo {
        id: user.id,
        username: user.username.clone(),
        email: user.email.clone(),
    };
    let now = Utc::now();
    let name = name.unwrap_or_else(|| {
        let tail = &uuid::Uuid::new_v4().simple().to_string()[..6];
        format!("operator-{}-{tail}", now.format("%Y%m%d%H%M%S"))
    });
    let secret = NewSecret::generate();
    let command = ApiKeyCommand::Create {
        name: name.clone(),
        prefix: secret.prefix(),
        hash: secret.hash(),
        user_id: user.id,
        username: user.username.clone(),
        expires: None,
        now,
    };
    let outcome = crate::api_keys::run(store, &ctx, &platform.key, &name, command).await?;
    Ok(MintedKey {
        platform,
        user,
        name,
        api_key: secret.expose().to_owned(),
        position: outcome.position(),
    })
}

/// Brings a data folder of an older layout to this one, once (each step is
/// idempotent and safe to run from several processes): platforms of the
/// legacy registry stream into streams of their own, then users (see
/// [`import_legacy_users`]). Answers how many platforms and users moved.
pub async fn import_legacy(store: &Arc<dyn EventStore>) -> Result<(usize, usize), ApiError> {
    Ok((
        import_legacy_platforms(store).await?,
        import_legacy_users(store).await?,
    ))
}

/// Each platform of the legacy registry stream ([`PLATFORMS_STREAM`]) gets
/// its creation event in a stream of its own, then the platform id counter
/// (`ids-platform`) moves past the highest legacy id, last. A store whose
/// counter exists is left as it is.
async fn import_legacy_platforms(store: &Arc<dyn EventStore>) -> Result<usize, ApiError> {
    let ids = ids_stream("platform");
    if !store.read_stream(&ids, 0, 1).await?.is_empty() {
        return Ok(0);
    }
    let legacy = read_stream_all(store.as_ref(), PLATFORMS_STREAM).await?;
    if legacy.is_empty() {
        return Ok(0);
    }
    let metadata = Metadata {
        correlation_id: format!("import-legacy-platforms-{}", uuid::Uuid::new_v4()),
        ..Metadata::default()
    };
    let mut highest = 0;
    for recorded in &legacy {
        let event = PlatformEvent::from_recorded(recorded)
            .map_err(|e| ApiError::Internal(format!("a legacy platform event: {e}")))?;
        let PlatformEvent::PlatformCreated { id, key, .. } = &event;
        highest = highest.max(*id);
        append_first(store, &platform_stream(key), &event, &metadata).await?;
    }
    let counter = IdEvent::IdsAllocated {
        first: 1,
        count: highest,
        allocated_at: Utc::now(),
    };
    append_first(store, &ids, &counter, &metadata).await?;
    Ok(legacy.len())
}

/// Takes `count` ids of `kind`; returns the first.
pub async fn allocate_ids(
    store: &Arc<dyn EventStore>,
    ctx: &CommandContext,
    kind: &str,
    count: u64,
) -> Result<u64, ApiError> {
    let outcome = execute::<IdsAggregate>(
        store,
        &ids_stream(kind),
        ctx,
        Allocate {
            count,
            now: Utc::now(),
        },
    )
    .await?;
    Ok(outcome.state.highest + 1 - count)
}

/// The built-in roles, groups and internal tenant-admin policy of a new
/// platform.
async fn create_builtins(
    store: &Arc<dyn EventStore>,
    ctx: &CommandContext,
    platform: &PlatformInfo,
    admin_id: u64,
) -> Result<(), ApiError> {
    let ids = BuiltinIds {
        first_role_id: allocate_ids(store, ctx, "role", BuiltinRole::ALL.len() as u64).await?,
        first_group_id: allocate_ids(store, ctx, "group", BuiltinGroup::ALL.len() as u64).await?,
        policy_id: allocate_ids(store, ctx, "policy", 1).await?,
    };
    let made = builtins(&platform.key, platform.id, admin_id, ids, Utc::now());
    for (stream, events) in &made.roles {
        append_new(store.as_ref(), stream, ctx, events).await?;
    }
    for (stream, events) in &made.groups {
        append_new(store.as_ref(), stream, ctx, events).await?;
    }
    for (stream, events) in &made.policies {
        append_new(store.as_ref(), stream, ctx, events).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rbac::policy::PolicyAggregate;
    use crate::domain::rbac::role::RoleAggregate;
    use ibl_events::memory::MemoryStore;
    use ibl_events::rbac::{policy_stream, role_stream};

    fn new(key: &str) -> NewPlatform {
        NewPlatform {
            key: key.into(),
            name: key.to_uppercase(),
            admin_username: format!("{key}-admin"),
            admin_email: format!("admin@{key}.example.com"),
        }
    }

    #[tokio::test]
    async fn a_new_platform_gets_its_built_in_roles_groups_and_admin_policy() {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let acme = create_platform(&store, new("acme")).await.expect("acme");
        let beta = create_platform(&store, new("beta")).await.expect("beta");
        assert_eq!((acme.platform.id, beta.platform.id), (1, 2));
        assert!(acme.api_key.starts_with("ibl_"));
        // Five roles each, ids allocated in order across platforms.
        let (admin_role, _) = load::<RoleAggregate>(store.as_ref(), &role_stream(1))
            .await
            .expect("role 1");
        let role = admin_role.live().expect("Tenant Admin exists");
        assert_eq!(role.name, "Tenant Admin");
        assert_eq!(role.platform, "acme");
        let (beta_role, _) = load::<RoleAggregate>(store.as_ref(), &role_stream(6))
            .await
            .expect("role 6");
        assert_eq!(beta_role.live().map(|r| r.platform.as_str()), Some("beta"));
        let (policy, _) = load::<PolicyAggregate>(store.as_ref(), &policy_stream(1))
            .await
            .expect("policy 1");
        let policy = policy.live().expect("admin policy exists");
        assert!(policy.is_internal);
        assert_eq!(policy.resources, vec!["/platforms/1/".to_owned()]);
        assert!(policy.users.contains(&acme.admin.id));
        assert_eq!(policy.role_id, 1);
    }

    #[tokio::test]
    async fn platforms_of_the_legacy_registry_keep_their_keys_and_ids() {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let legacy = PlatformEvent::PlatformCreated {
            id: 1,
            key: "acme".into(),
            name: "Acme".into(),
            created_at: Utc::now(),
        };
        let data = legacy.to_data(uuid::Uuid::new_v4(), Metadata::default());
        store
            .append(
                PLATFORMS_STREAM,
                ibl_events::ExpectedRevision::NoStream,
                vec![data],
            )
            .await
            .unwrap();
        assert_eq!(import_legacy(&store).await.unwrap(), (1, 0));
        assert_eq!(import_legacy(&store).await.unwrap(), (0, 0), "once");
        let (acme, _) = load::<PlatformAggregate>(store.as_ref(), &platform_stream("acme"))
            .await
            .unwrap();
        assert_eq!(acme.get().map(|p| p.id), Some(1));
        let taken = create_platform(&store, new("acme")).await.err();
        assert!(matches!(taken, Some(ApiError::Conflict(_))), "{taken:?}");
        let beta = create_platform(&store, new("beta")).await.expect("beta");
        assert!(beta.platform.id > 1, "a new id: {}", beta.platform.id);
    }
}
