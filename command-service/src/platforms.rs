//! Creating a platform with its admin user and first API key: the operator
//! command `platform create`, also used by tests.

use std::sync::Arc;

use chrono::Utc;
use ibl_events::platform::{api_keys_stream, PLATFORMS_STREAM, USERS_STREAM};
use ibl_events::{Actor, EventStore};
use ibl_query_service::ApiError;
use serde::Serialize;

use crate::domain::api_key::{ApiKeyCommand, ApiKeysAggregate};
use crate::domain::platform::{PlatformCommand, PlatformsAggregate};
use crate::domain::user::{UserCommand, UsersAggregate};
use crate::handler::{execute, CommandContext};
use crate::secrets::NewSecret;

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
    let ctx = CommandContext {
        actor: Actor {
            platform: None,
            user: Some("operator".into()),
            key_name: None,
        },
        correlation_id: uuid::Uuid::new_v4().to_string(),
        ..CommandContext::default()
    };
    let now = Utc::now();
    let command = PlatformCommand::Create {
        key: new.key.clone(),
        name: new.name.clone(),
        now,
    };
    let outcome = execute::<PlatformsAggregate>(store, PLATFORMS_STREAM, &ctx, command).await?;
    let platform = outcome
        .state
        .get(&new.key)
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
    let command = UserCommand::Register {
        platform: platform.key.clone(),
        username: new.admin_username.clone(),
        email: new.admin_email.clone(),
        now,
    };
    let outcome = execute::<UsersAggregate>(store, USERS_STREAM, &ctx, command).await?;
    let user = outcome
        .state
        .find(&platform.key, &new.admin_username)
        .ok_or_else(|| ApiError::Internal("registered admin missing".into()))?;
    let admin = AdminInfo {
        id: user.id,
        username: user.username.clone(),
        email: user.email.clone(),
    };
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
    let outcome =
        execute::<ApiKeysAggregate>(store, &api_keys_stream(&platform.key), &ctx, command).await?;
    Ok(CreatedPlatform {
        platform,
        admin,
        api_key: secret.expose().to_owned(),
        position: outcome.position(),
    })
}
