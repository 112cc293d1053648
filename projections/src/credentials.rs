//! The read model of platforms, users, API keys and credentials, with its
//! in-memory adapter.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use ibl_events::credentials::{CredentialEvent, CredentialFields, IssuerEvent, IssuerFields};
use ibl_events::platform::{
    api_key_of_stream, is_platform_stream, user_of_stream, ApiKeyEvent, PlatformEvent, UserEvent,
    USERS_STREAM,
};
use ibl_events::{DomainEvent, Position, RecordedEvent};
use serde::{Deserialize, Serialize};

use crate::assertions::ReadError;
use crate::{Applied, ReadModel, Snapshot};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformView {
    pub id: u64,
    pub key: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub id: u64,
    pub platform: String,
    pub username: String,
    pub email: String,
    /// `""` when unknown.
    pub given_name: String,
    pub family_name: String,
    /// `false` once deactivated (SCIM `active`).
    pub active: bool,
    pub created: DateTime<Utc>,
    /// The last registration, update, deactivation or reactivation.
    pub updated: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyView {
    pub platform: String,
    pub name: String,
    pub prefix: String,
    pub hash: String,
    pub user_id: u64,
    pub username: String,
    pub expires: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialView {
    pub platform: String,
    pub entity_id: String,
    pub fields: CredentialFields,
    pub created_at: DateTime<Utc>,
    pub retired: bool,
    /// Revision of the credential's stream this view reflects.
    pub revision: u64,
    /// The user (id or username) who created it, as the request named them.
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerView {
    pub platform: String,
    pub entity_id: String,
    pub fields: IssuerFields,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct CredentialFilter {
    /// Case-insensitive, in name and description.
    pub search: Option<String>,
    pub course: Option<String>,
    pub program: Option<String>,
}

/// Filters of a platform's users (SCIM `filter`): each compared exactly
/// but case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub username: Option<String>,
    pub email: Option<String>,
}

/// One page of a list and the count of all matches.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub count: usize,
    pub items: Vec<T>,
}

#[derive(Default)]
struct State {
    checkpoint: Position,
    platforms: HashMap<String, Arc<PlatformView>>,
    users: HashMap<u64, UserView>,
    usernames: HashMap<(String, String), u64>,
    /// Per platform, user ids in registration (= id) order.
    user_order: HashMap<String, Vec<u64>>,
    /// Shared with the requests that present them (no copy per request).
    keys_by_hash: HashMap<String, Arc<ApiKeyView>>,
    /// (platform, name) -> hash of the active key.
    keys_by_name: BTreeMap<(String, String), String>,
    credentials: HashMap<String, CredentialView>,
    /// Per platform, credential ids in creation order (deleted ones removed).
    credential_order: HashMap<String, Vec<String>>,
    issuers: HashMap<String, IssuerView>,
    issuer_order: HashMap<String, Vec<String>>,
}

/// The in-memory adapter of the credentials read model.
pub struct CredentialsModel {
    state: RwLock<State>,
    /// Whether it keeps the catalog (credentials, issuers, users): not when a
    /// process reads them from Redis ([`Self::without_catalog`]).
    catalog: bool,
}

impl Default for CredentialsModel {
    fn default() -> Self {
        Self {
            state: RwLock::default(),
            catalog: true,
        }
    }
}

fn lower_contains(haystack: &str, needle_lower: &str) -> bool {
    haystack.to_lowercase().contains(needle_lower)
}

fn page<T: Clone>(ids: impl Iterator<Item = T>, offset: usize, limit: usize) -> Page<T> {
    let mut count = 0;
    let mut items = Vec::new();
    for id in ids {
        if count >= offset && items.len() < limit {
            items.push(id);
        }
        count += 1;
    }
    Page { count, items }
}

impl CredentialsModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// The platforms and API keys only: the credentials, issuers and users
    /// are left to another model (in Redis), and none are found here.
    pub fn without_catalog() -> Self {
        Self {
            catalog: false,
            ..Self::default()
        }
    }

    /// Whether an event of `stream` is this model's to apply.
    fn keeps(&self, stream: &str) -> bool {
        self.catalog
            || !(stream.starts_with("credential-")
                || stream.starts_with("issuer-")
                || stream == USERS_STREAM
                || user_of_stream(stream).is_some())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn platform(&self, key: &str) -> Option<Arc<PlatformView>> {
        self.read().platforms.get(key).cloned()
    }

    pub fn platform_count(&self) -> usize {
        self.read().platforms.len()
    }

    pub fn user(&self, id: u64) -> Option<UserView> {
        self.read().users.get(&id).cloned()
    }

    pub fn user_count(&self) -> usize {
        self.read().users.len()
    }

    pub fn user_by_username(&self, platform: &str, username: &str) -> Option<UserView> {
        let s = self.read();
        let id = s
            .usernames
            .get(&(platform.to_owned(), username.to_owned()))?;
        s.users.get(id).cloned()
    }

    /// A platform's users, by id, filtered.
    pub fn users(
        &self,
        platform: &str,
        filter: &UserFilter,
        offset: usize,
        limit: usize,
    ) -> Page<UserView> {
        let s = self.read();
        let username = filter.username.as_deref().map(str::to_lowercase);
        let email = filter.email.as_deref().map(str::to_lowercase);
        let ids = s.user_order.get(platform).map(Vec::as_slice).unwrap_or(&[]);
        let matches = ids.iter().filter_map(|id| s.users.get(id)).filter(|u| {
            username
                .as_deref()
                .is_none_or(|n| u.username.to_lowercase() == n)
                && email.as_deref().is_none_or(|e| u.email.to_lowercase() == e)
        });
        let p = page(matches, offset, limit);
        Page {
            count: p.count,
            items: p.items.into_iter().cloned().collect(),
        }
    }

    /// The key with this hash and its platform, under one lock (every
    /// authenticated request asks).
    pub fn api_key_by_hash(&self, hash: &str) -> Option<(Arc<ApiKeyView>, Arc<PlatformView>)> {
        let s = self.read();
        let key = s.keys_by_hash.get(hash)?;
        let platform = s.platforms.get(&key.platform)?;
        Some((key.clone(), platform.clone()))
    }

    /// The active keys of a platform, oldest first (only its own are
    /// read: the names are ordered by platform).
    pub fn api_keys(&self, platform: &str) -> Vec<ApiKeyView> {
        let s = self.read();
        let mut keys: Vec<_> = s
            .keys_by_name
            .range((platform.to_owned(), String::new())..)
            .take_while(|((p, _), _)| p == platform)
            .filter_map(|(_, hash)| s.keys_by_hash.get(hash))
            .map(|k| ApiKeyView::clone(k))
            .collect();
        sort_api_keys(&mut keys);
        keys
    }

    /// Every platform and every active key, and the position they are at
    /// (read under one lock: what a copy of the model writes whole).
    pub fn keys_state(&self) -> (Position, Vec<PlatformView>, Vec<ApiKeyView>) {
        let s = self.read();
        let platforms = s
            .platforms
            .values()
            .map(|p| PlatformView::clone(p))
            .collect();
        let keys = s
            .keys_by_name
            .values()
            .filter_map(|hash| s.keys_by_hash.get(hash))
            .map(|k| ApiKeyView::clone(k))
            .collect();
        (s.checkpoint, platforms, keys)
    }

    pub fn api_key_by_name(&self, platform: &str, name: &str) -> Option<Arc<ApiKeyView>> {
        let s = self.read();
        let hash = s
            .keys_by_name
            .get(&(platform.to_owned(), name.to_owned()))?;
        s.keys_by_hash.get(hash).cloned()
    }

    /// The revision of a credential's stream the model has applied (what a
    /// command needs to know whether its cached state is current), without
    /// copying the credential.
    pub fn credential_revision(&self, platform: &str, entity_id: &str) -> Option<u64> {
        self.read()
            .credentials
            .get(entity_id)
            .filter(|c| c.platform == platform)
            .map(|c| c.revision)
    }

    pub fn credential(&self, platform: &str, entity_id: &str) -> Option<CredentialView> {
        self.read()
            .credentials
            .get(entity_id)
            .filter(|c| c.platform == platform)
            .cloned()
    }

    pub fn credentials(
        &self,
        platform: &str,
        filter: &CredentialFilter,
        offset: usize,
        limit: usize,
    ) -> Page<CredentialView> {
        let s = self.read();
        let search = filter.search.as_deref().map(str::to_lowercase);
        let ids = s
            .credential_order
            .get(platform)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let matches =
            ids.iter()
                .filter_map(|id| s.credentials.get(id))
                .filter(|c| {
                    let f = &c.fields;
                    search.as_deref().is_none_or(|q| {
                        lower_contains(&f.name, q) || lower_contains(&f.description, q)
                    }) && filter
                        .course
                        .as_deref()
                        .is_none_or(|course| f.course.as_deref() == Some(course))
                        && filter
                            .program
                            .as_deref()
                            .is_none_or(|program| f.program.as_deref() == Some(program))
                });
        let p = page(matches, offset, limit);
        Page {
            count: p.count,
            items: p.items.into_iter().cloned().collect(),
        }
    }

    pub fn issuer(&self, platform: &str, entity_id: &str) -> Option<IssuerView> {
        self.read()
            .issuers
            .get(entity_id)
            .filter(|i| i.platform == platform)
            .cloned()
    }

    pub fn issuers(
        &self,
        platform: &str,
        search: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Page<IssuerView> {
        let s = self.read();
        let q = search.map(str::to_lowercase);
        let ids = s
            .issuer_order
            .get(platform)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let matches = ids.iter().filter_map(|id| s.issuers.get(id)).filter(|i| {
            q.as_deref().is_none_or(|q| {
                lower_contains(&i.fields.name, q) || lower_contains(&i.fields.description, q)
            })
        });
        let p = page(matches, offset, limit);
        Page {
            count: p.count,
            items: p.items.into_iter().cloned().collect(),
        }
    }
}

/// The queries of the credentials and issuers (the catalog) every adapter
/// The platform of a stream of API key events: a key's own, or the legacy
/// stream of all a platform's keys.
pub fn key_platform_of_stream(stream: &str) -> Option<&str> {
    stream
        .strip_prefix("apikeys-")
        .or_else(|| api_key_of_stream(stream).map(|(p, _)| p))
}

/// What an API key event does to a platform's keys.
pub enum KeyChange {
    Created(ApiKeyView),
    /// The key of this name is revoked.
    Revoked(String),
}

impl KeyChange {
    pub fn of(platform: &str, event: ApiKeyEvent) -> Self {
        match event {
            ApiKeyEvent::ApiKeyCreated {
                name,
                prefix,
                hash,
                user_id,
                username,
                expires,
                created_at,
            } => KeyChange::Created(ApiKeyView {
                platform: platform.to_owned(),
                name,
                prefix,
                hash,
                user_id,
                username,
                expires,
                created: created_at,
            }),
            ApiKeyEvent::ApiKeyRevoked { name, .. } => KeyChange::Revoked(name),
        }
    }
}

/// A platform's keys in the order they are listed: oldest first.
pub fn sort_api_keys(keys: &mut [ApiKeyView]) {
    keys.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
}

/// What authenticating a request and listing a platform's keys read:
/// in memory ([`CredentialsModel`]) or in Redis
/// ([`crate::redis_keys::RedisKeys`]).
#[async_trait::async_trait]
pub trait KeyQueries: Send + Sync + 'static {
    /// The active key whose secret hashes to `hash`, and its platform.
    async fn api_key_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<(Arc<ApiKeyView>, Arc<PlatformView>)>, ReadError>;
    /// The active keys of a platform, oldest first.
    async fn api_keys(&self, platform: &str) -> Result<Vec<ApiKeyView>, ReadError>;
}

#[async_trait::async_trait]
impl KeyQueries for CredentialsModel {
    async fn api_key_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<(Arc<ApiKeyView>, Arc<PlatformView>)>, ReadError> {
        Ok(CredentialsModel::api_key_by_hash(self, hash))
    }

    async fn api_keys(&self, platform: &str) -> Result<Vec<ApiKeyView>, ReadError> {
        Ok(CredentialsModel::api_keys(self, platform))
    }
}

/// answers: in memory ([`CredentialsModel`]) or in Redis
/// ([`crate::redis_catalog::RedisCatalog`]).
#[async_trait::async_trait]
pub trait CatalogQueries: Send + Sync + 'static {
    /// A platform's credential.
    async fn credential(
        &self,
        platform: &str,
        entity_id: &str,
    ) -> Result<Option<CredentialView>, ReadError>;

    /// A platform's credentials among `ids`, by id (those not found left
    /// out): one round trip for a page of assertions.
    async fn credentials_among(
        &self,
        platform: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, CredentialView>, ReadError>;

    /// A page of a platform's credentials, in creation order, filtered,
    /// and the count of all that match.
    async fn credentials(
        &self,
        platform: &str,
        filter: &CredentialFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<CredentialView>, ReadError>;

    async fn issuer(
        &self,
        platform: &str,
        entity_id: &str,
    ) -> Result<Option<IssuerView>, ReadError>;

    /// A page of a platform's issuers, in creation order, those whose name
    /// or description holds `search` (any case), and the count.
    async fn issuers(
        &self,
        platform: &str,
        search: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Page<IssuerView>, ReadError>;

    /// A platform's user.
    async fn user(&self, platform: &str, id: u64) -> Result<Option<UserView>, ReadError>;

    /// A page of a platform's users, by id, filtered, and the count.
    async fn users(
        &self,
        platform: &str,
        filter: &UserFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<UserView>, ReadError>;
}

#[async_trait::async_trait]
impl CatalogQueries for CredentialsModel {
    async fn credential(
        &self,
        platform: &str,
        entity_id: &str,
    ) -> Result<Option<CredentialView>, ReadError> {
        Ok(CredentialsModel::credential(self, platform, entity_id))
    }

    async fn credentials_among(
        &self,
        platform: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, CredentialView>, ReadError> {
        Ok(ids
            .iter()
            .filter_map(|id| CredentialsModel::credential(self, platform, id))
            .map(|c| (c.entity_id.clone(), c))
            .collect())
    }

    async fn credentials(
        &self,
        platform: &str,
        filter: &CredentialFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<CredentialView>, ReadError> {
        Ok(CredentialsModel::credentials(
            self, platform, filter, offset, limit,
        ))
    }

    async fn issuer(
        &self,
        platform: &str,
        entity_id: &str,
    ) -> Result<Option<IssuerView>, ReadError> {
        Ok(CredentialsModel::issuer(self, platform, entity_id))
    }

    async fn issuers(
        &self,
        platform: &str,
        search: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Page<IssuerView>, ReadError> {
        Ok(CredentialsModel::issuers(
            self, platform, search, offset, limit,
        ))
    }

    async fn user(&self, platform: &str, id: u64) -> Result<Option<UserView>, ReadError> {
        Ok(CredentialsModel::user(self, id).filter(|u| u.platform == platform))
    }

    async fn users(
        &self,
        platform: &str,
        filter: &UserFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<UserView>, ReadError> {
        Ok(CredentialsModel::users(
            self, platform, filter, offset, limit,
        ))
    }
}

impl ReadModel for CredentialsModel {
    fn name(&self) -> &'static str {
        "credentials"
    }

    fn checkpoint(&self) -> Position {
        self.read().checkpoint
    }

    fn apply(&self, batch: &[RecordedEvent]) -> Applied {
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        for event in batch {
            if event.position <= s.checkpoint {
                continue;
            }
            if !self.keeps(&event.stream) {
                s.checkpoint = event.position;
                continue;
            }
            if let Err(error) = s.apply(event) {
                tracing::error!(
                    stream = %event.stream, revision = event.revision, %error,
                    "event skipped by the credentials read model"
                );
            }
            s.checkpoint = event.position;
        }
        Applied::Done
    }
}

/// Bump when `Saved` (or a view in it) changes shape: older snapshots are
/// then ignored and the model is rebuilt from the log.
const SNAPSHOT_VERSION: u32 = 1;

/// What a snapshot keeps: the views, each platform's in list order; the
/// indexes are rebuilt from them.
#[derive(Serialize, Deserialize)]
struct Saved {
    platforms: Vec<PlatformView>,
    users: Vec<UserView>,
    keys: Vec<ApiKeyView>,
    credentials: Vec<CredentialView>,
    issuers: Vec<IssuerView>,
}

/// The views of `order`'s lists, each list in its order.
fn in_order<K: Eq + std::hash::Hash, V: Clone>(
    order: &HashMap<String, Vec<K>>,
    views: &HashMap<K, V>,
) -> Vec<V> {
    order
        .values()
        .flatten()
        .filter_map(|id| views.get(id).cloned())
        .collect()
}

impl CredentialsModel {
    /// The views a snapshot keeps, with the checkpoint they cover.
    fn saved(&self) -> (Position, Saved) {
        let s = self.read();
        let saved = Saved {
            platforms: s
                .platforms
                .values()
                .map(|p| PlatformView::clone(p))
                .collect(),
            users: in_order(&s.user_order, &s.users),
            keys: s
                .keys_by_hash
                .values()
                .map(|k| ApiKeyView::clone(k))
                .collect(),
            credentials: in_order(&s.credential_order, &s.credentials),
            issuers: in_order(&s.issuer_order, &s.issuers),
        };
        (s.checkpoint, saved)
    }
}

/// The views in a canonical order: platforms and keys sorted, every other
/// list grouped by platform (sorted) in its list order.
impl crate::replay::Digest for CredentialsModel {
    fn digest(&self, platform: Option<&str>) -> Result<String, String> {
        let (_, mut saved) = self.saved();
        if let Some(p) = platform {
            saved.platforms.retain(|v| v.key == p);
            saved.users.retain(|v| v.platform == p);
            saved.keys.retain(|v| v.platform == p);
            saved.credentials.retain(|v| v.platform == p);
            saved.issuers.retain(|v| v.platform == p);
        }
        saved.platforms.sort_by(|a, b| a.key.cmp(&b.key));
        saved
            .keys
            .sort_by(|a, b| (&a.platform, &a.name).cmp(&(&b.platform, &b.name)));
        saved.users.sort_by(|a, b| a.platform.cmp(&b.platform));
        saved
            .credentials
            .sort_by(|a, b| a.platform.cmp(&b.platform));
        saved.issuers.sort_by(|a, b| a.platform.cmp(&b.platform));
        crate::replay::of_json(&saved)
    }
}

impl Snapshot for CredentialsModel {
    /// A snapshot without the catalog has a version of its own: it is
    /// never restored into a model that keeps it.
    fn version(&self) -> u32 {
        if self.catalog {
            SNAPSHOT_VERSION
        } else {
            SNAPSHOT_VERSION | 1 << 16
        }
    }

    fn snapshot(&self) -> (Position, Vec<u8>) {
        let (checkpoint, saved) = self.saved();
        let bytes = serde_json::to_vec(&saved).expect("views serialize");
        (checkpoint, bytes)
    }

    fn restore(&self, checkpoint: Position, bytes: &[u8]) -> Result<(), String> {
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        *s = State::default();
        let saved: Saved = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        for p in saved.platforms {
            s.platforms.insert(p.key.clone(), Arc::new(p));
        }
        for u in saved.users {
            s.usernames
                .insert((u.platform.clone(), u.username.clone()), u.id);
            s.user_order
                .entry(u.platform.clone())
                .or_default()
                .push(u.id);
            s.users.insert(u.id, u);
        }
        for k in saved.keys {
            s.keys_by_name
                .insert((k.platform.clone(), k.name.clone()), k.hash.clone());
            s.keys_by_hash.insert(k.hash.clone(), Arc::new(k));
        }
        for c in saved.credentials {
            s.credential_order
                .entry(c.platform.clone())
                .or_default()
                .push(c.entity_id.clone());
            s.credentials.insert(c.entity_id.clone(), c);
        }
        for i in saved.issuers {
            s.issuer_order
                .entry(i.platform.clone())
                .or_default()
                .push(i.entity_id.clone());
            s.issuers.insert(i.entity_id.clone(), i);
        }
        s.checkpoint = checkpoint;
        Ok(())
    }
}

impl State {
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), serde_json::Error> {
        let stream = event.stream.as_str();
        if is_platform_stream(stream) {
            match PlatformEvent::from_recorded(event)? {
                PlatformEvent::PlatformCreated { id, key, name, .. } => {
                    self.platforms
                        .insert(key.clone(), Arc::new(PlatformView { id, key, name }));
                }
            }
        } else if stream == USERS_STREAM || user_of_stream(stream).is_some() {
            self.apply_user(UserEvent::from_recorded(event)?);
        } else if let Some(platform) = key_platform_of_stream(stream) {
            self.apply_api_key(platform, ApiKeyEvent::from_recorded(event)?);
        } else if let Some(id) = stream.strip_prefix("credential-") {
            self.apply_credential(id, CredentialEvent::from_recorded(event)?);
            if let Some(c) = self.credentials.get_mut(id) {
                c.revision = event.revision;
                if event.revision == 0 {
                    c.created_by = event.metadata.actor.user.clone().unwrap_or_default();
                }
            }
        } else if let Some(id) = stream.strip_prefix("issuer-") {
            self.apply_issuer(id, IssuerEvent::from_recorded(event)?);
        }
        Ok(())
    }

    fn apply_user(&mut self, event: UserEvent) {
        match event {
            UserEvent::UserRegistered {
                id,
                platform,
                username,
                email,
                given_name,
                family_name,
                registered_at,
            } => {
                let name = (platform.clone(), username.clone());
                if self.users.contains_key(&id) || self.usernames.contains_key(&name) {
                    return;
                }
                self.usernames.insert(name, id);
                self.user_order
                    .entry(platform.clone())
                    .or_default()
                    .push(id);
                self.users.insert(
                    id,
                    UserView {
                        id,
                        platform,
                        username,
                        email,
                        given_name,
                        family_name,
                        active: true,
                        created: registered_at,
                        updated: registered_at,
                    },
                );
            }
            UserEvent::UserUpdated {
                id,
                username,
                email,
                given_name,
                family_name,
                updated_at,
            } => {
                if let Some(user) = self.users.get_mut(&id) {
                    let old = (user.platform.clone(), user.username.clone());
                    if self.usernames.get(&old) == Some(&id) {
                        self.usernames.remove(&old);
                    }
                    self.usernames
                        .insert((user.platform.clone(), username.clone()), id);
                    user.username = username;
                    user.email = email;
                    user.given_name = given_name;
                    user.family_name = family_name;
                    user.updated = updated_at;
                }
            }
            UserEvent::UserDeactivated { id, deactivated_at } => {
                if let Some(user) = self.users.get_mut(&id) {
                    user.active = false;
                    user.updated = deactivated_at;
                }
            }
            UserEvent::UserReactivated { id, reactivated_at } => {
                if let Some(user) = self.users.get_mut(&id) {
                    user.active = true;
                    user.updated = reactivated_at;
                }
            }
            imported @ UserEvent::UserImported { .. } => {
                for event in imported.expanded() {
                    self.apply_user(event);
                }
            }
        }
    }

    fn apply_api_key(&mut self, platform: &str, event: ApiKeyEvent) {
        match KeyChange::of(platform, event) {
            KeyChange::Created(key) => {
                self.keys_by_name
                    .insert((platform.to_owned(), key.name.clone()), key.hash.clone());
                self.keys_by_hash.insert(key.hash.clone(), Arc::new(key));
            }
            KeyChange::Revoked(name) => {
                if let Some(hash) = self.keys_by_name.remove(&(platform.to_owned(), name)) {
                    self.keys_by_hash.remove(&hash);
                }
            }
        }
    }

    fn apply_credential(&mut self, id: &str, event: CredentialEvent) {
        match event {
            CredentialEvent::CredentialCreated {
                platform,
                entity_id,
                fields,
                created_at,
            } => {
                self.credential_order
                    .entry(platform.clone())
                    .or_default()
                    .push(entity_id.clone());
                self.credentials.insert(
                    entity_id.clone(),
                    CredentialView {
                        platform,
                        entity_id,
                        fields,
                        created_at,
                        retired: false,
                        revision: 0,
                        created_by: String::new(),
                    },
                );
            }
            CredentialEvent::CredentialUpdated { fields, .. } => {
                if let Some(c) = self.credentials.get_mut(id) {
                    c.fields = fields;
                }
            }
            CredentialEvent::CredentialRetired { .. } => {
                if let Some(c) = self.credentials.get_mut(id) {
                    c.retired = true;
                }
            }
            CredentialEvent::CredentialDeleted { .. } => {
                if let Some(c) = self.credentials.remove(id) {
                    if let Some(order) = self.credential_order.get_mut(&c.platform) {
                        order.retain(|x| x != id);
                    }
                }
            }
        }
    }

    fn apply_issuer(&mut self, id: &str, event: IssuerEvent) {
        match event {
            IssuerEvent::IssuerCreated {
                platform,
                entity_id,
                fields,
                created_at,
            } => {
                self.issuer_order
                    .entry(platform.clone())
                    .or_default()
                    .push(entity_id.clone());
                self.issuers.insert(
                    entity_id.clone(),
                    IssuerView {
                        platform,
                        entity_id,
                        fields,
                        created_at,
                    },
                );
            }
            IssuerEvent::IssuerUpdated { fields, .. } => {
                if let Some(i) = self.issuers.get_mut(id) {
                    i.fields = fields;
                }
            }
            IssuerEvent::IssuerDeleted { .. } => {
                if let Some(i) = self.issuers.remove(id) {
                    if let Some(order) = self.issuer_order.get_mut(&i.platform) {
                        order.retain(|x| x != id);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, sample, Log};

    #[test]
    fn credentials_are_listed_searched_and_filtered() {
        let model = CredentialsModel::new();
        model.apply(&sample().events);
        let all = model.credentials("acme", &CredentialFilter::default(), 0, 10);
        assert_eq!(all.count, 2, "the deleted credential is gone");
        let search = CredentialFilter {
            search: Some("rUsT".into()),
            ..CredentialFilter::default()
        };
        let found = model.credentials("acme", &search, 0, 10);
        let names: Vec<_> = found.items.iter().map(|c| c.fields.name.as_str()).collect();
        assert_eq!(
            names,
            ["Rust 101", "Go basics"],
            "name or description, any case"
        );
        let by_course = CredentialFilter {
            course: Some("course-1".into()),
            ..CredentialFilter::default()
        };
        assert_eq!(model.credentials("acme", &by_course, 0, 10).count, 1);
        assert_eq!(
            model
                .credentials("other", &CredentialFilter::default(), 0, 10)
                .count,
            0
        );
        assert_eq!(model.credential("acme", "c1").map(|c| c.revision), Some(0));
        assert!(
            model.credential("other", "c1").is_none(),
            "scoped to its platform"
        );
    }

    #[test]
    fn a_platform_s_keys_are_its_own_even_beside_a_platform_whose_key_extends_it() {
        let mut log = Log::default();
        for (platform, name) in [("acme2", "a"), ("acme", "z"), ("ac", "m"), ("acme", "b")] {
            log.push(
                &format!("apikeys-{platform}"),
                ApiKeyEvent::ApiKeyCreated {
                    name: name.into(),
                    prefix: format!("p-{platform}-{name}"),
                    hash: format!("h-{platform}-{name}"),
                    user_id: 1,
                    username: "admin".into(),
                    expires: None,
                    created_at: at(1),
                },
                None,
            );
        }
        let model = CredentialsModel::new();
        model.apply(&log.events);
        let names =
            |p: &str| -> Vec<String> { model.api_keys(p).into_iter().map(|k| k.name).collect() };
        assert_eq!(names("acme"), ["b", "z"], "oldest first, then by name");
        assert_eq!(names("acme2"), ["a"]);
        assert_eq!(names("ac"), ["m"]);
        assert!(names("a").is_empty());
    }

    #[test]
    fn without_the_catalog_no_credential_is_kept_and_its_snapshot_differs() {
        let log = sample();
        let full = CredentialsModel::new();
        let bare = CredentialsModel::without_catalog();
        full.apply(&log.events);
        bare.apply(&log.events);
        assert_eq!(bare.checkpoint(), full.checkpoint());
        assert_eq!(full.credential("acme", "c1").map(|c| c.revision), Some(0));
        assert_eq!(bare.credential("acme", "c1"), None);
        let all = CredentialFilter::default();
        assert_eq!(bare.credentials("acme", &all, 0, 10).count, 0);
        assert_ne!(Snapshot::version(&bare), Snapshot::version(&full));
    }

    #[test]
    fn a_batch_applied_twice_changes_nothing_the_second_time() {
        let log = sample();
        let once = CredentialsModel::new();
        once.apply(&log.events);
        let twice = CredentialsModel::new();
        twice.apply(&log.events[..5]);
        twice.apply(&log.events);
        twice.apply(&log.events);
        assert_eq!(twice.checkpoint(), log.events.len() as u64);
        assert_eq!(
            twice
                .credentials("acme", &CredentialFilter::default(), 0, 10)
                .items,
            once.credentials("acme", &CredentialFilter::default(), 0, 10)
                .items
        );
    }

    #[test]
    fn an_undecodable_event_is_skipped_without_stalling_the_model() {
        let mut log = sample();
        let mut bad = log.events[0].clone();
        bad.position = log.events.len() as u64 + 1;
        bad.payload = serde_json::json!({"type": "CredentialCreated", "oops": true}).into();
        log.events.push(bad);
        let model = CredentialsModel::new();
        model.apply(&log.events);
        assert_eq!(model.checkpoint(), log.events.len() as u64);
        assert_eq!(
            model
                .credentials("acme", &CredentialFilter::default(), 0, 10)
                .count,
            2
        );
    }

    fn registered(id: u64, platform: &str, username: &str, email: &str) -> UserEvent {
        UserEvent::UserRegistered {
            id,
            platform: platform.into(),
            username: username.into(),
            email: email.into(),
            given_name: "G".into(),
            family_name: "F".into(),
            registered_at: at(id as i64),
        }
    }

    #[test]
    fn users_are_listed_per_platform_filtered_paged_and_follow_updates() {
        let mut log = Log::default();
        log.push(
            USERS_STREAM,
            registered(1, "acme", "jane", "Jane@X.test"),
            None,
        );
        log.push(
            USERS_STREAM,
            registered(2, "beta", "bob", "bob@x.test"),
            None,
        );
        log.push(
            USERS_STREAM,
            registered(3, "acme", "john", "john@x.test"),
            None,
        );
        log.push(
            USERS_STREAM,
            UserEvent::UserUpdated {
                id: 3,
                username: "johnny".into(),
                email: "johnny@x.test".into(),
                given_name: "John".into(),
                family_name: "Doe".into(),
                updated_at: at(10),
            },
            None,
        );
        log.push(
            USERS_STREAM,
            UserEvent::UserDeactivated {
                id: 1,
                deactivated_at: at(11),
            },
            None,
        );
        let model = CredentialsModel::new();
        model.apply(&log.events);
        let all = model.users("acme", &UserFilter::default(), 0, 10);
        assert_eq!(all.count, 2);
        let ids: Vec<u64> = all.items.iter().map(|u| u.id).collect();
        assert_eq!(ids, [1, 3]);
        let jane = &all.items[0];
        assert!(!jane.active);
        assert_eq!((jane.created, jane.updated), (at(1), at(11)));
        let john = model.user(3).unwrap();
        assert_eq!(
            (
                john.username.as_str(),
                john.given_name.as_str(),
                john.family_name.as_str()
            ),
            ("johnny", "John", "Doe")
        );
        assert!(john.active);
        assert_eq!(john.updated, at(10));
        assert!(model.user_by_username("acme", "john").is_none());
        let by_name = |n: &str| UserFilter {
            username: Some(n.into()),
            ..UserFilter::default()
        };
        assert_eq!(model.users("acme", &by_name("JOHNNY"), 0, 10).count, 1);
        assert_eq!(model.users("acme", &by_name("bob"), 0, 10).count, 0);
        let by_email = UserFilter {
            email: Some("jane@x.TEST".into()),
            ..UserFilter::default()
        };
        assert_eq!(model.users("acme", &by_email, 0, 10).items[0].id, 1);
        let second = model.users("acme", &UserFilter::default(), 1, 1);
        assert_eq!((second.count, second.items[0].id), (2, 3));
        assert_eq!(
            model
                .users("acme", &UserFilter::default(), 0, 0)
                .items
                .len(),
            0
        );
    }

    /// Every answer of the model, as text: two models are equal when
    /// these are.
    fn answers(model: &CredentialsModel) -> String {
        let mut out = format!("checkpoint {}\n", model.checkpoint());
        for platform in ["acme", "beta"] {
            let users = model.users(platform, &UserFilter::default(), 0, 100);
            let credentials = model.credentials(platform, &CredentialFilter::default(), 0, 100);
            out += &format!(
                "{platform}: {:?}\n{:?}\n{:?}\n{:?}\n{:?}\n",
                model.platform(platform),
                users.items,
                credentials.items,
                model.issuers(platform, None, 0, 100).items,
                model.api_keys(platform),
            );
            for u in users.items {
                out += &format!("{:?}\n", model.user_by_username(platform, &u.username));
            }
            for k in model.api_keys(platform) {
                out += &format!(
                    "{:?} {:?}\n",
                    model.api_key_by_name(platform, &k.name),
                    model.api_key_by_hash(&k.hash)
                );
            }
        }
        out
    }

    fn busy() -> Log {
        let mut log = sample();
        log.push(
            "platform-acme",
            PlatformEvent::PlatformCreated {
                id: 1,
                key: "acme".into(),
                name: "Acme".into(),
                created_at: at(0),
            },
            None,
        );
        for (id, platform, name) in [(9, "acme", "zed"), (2, "beta", "bob"), (4, "acme", "amy")] {
            log.push(
                &format!("user-{id}"),
                registered(id, platform, name, &format!("{name}@x.test")),
                None,
            );
        }
        log.push(
            "user-4",
            UserEvent::UserDeactivated {
                id: 4,
                deactivated_at: at(5),
            },
            None,
        );
        for name in ["ci", "ops"] {
            log.push(
                "apikeys-acme",
                ApiKeyEvent::ApiKeyCreated {
                    name: name.into(),
                    prefix: format!("p-{name}"),
                    hash: format!("h-{name}"),
                    user_id: 9,
                    username: "zed".into(),
                    expires: None,
                    created_at: at(6),
                },
                None,
            );
        }
        log.push(
            "issuer-i1",
            IssuerEvent::IssuerCreated {
                platform: "acme".into(),
                entity_id: "i1".into(),
                fields: IssuerFields {
                    name: "Registrar".into(),
                    ..IssuerFields::default()
                },
                created_at: at(7),
            },
            None,
        );
        log
    }

    #[test]
    fn a_model_restored_from_its_snapshot_answers_as_the_model_it_was_taken_from() {
        let mut log = busy();
        log.push(
            "apikeys-acme",
            ApiKeyEvent::ApiKeyRevoked {
                name: "ci".into(),
                revoked_at: at(8),
            },
            None,
        );
        // The tail: a deactivation, keys created and revoked, an issuer.
        let (head, tail) = log.events.split_at(log.events.len() - 5);
        let model = CredentialsModel::new();
        model.apply(head);
        let (checkpoint, bytes) = Snapshot::snapshot(&model);
        assert_eq!(checkpoint, head.len() as u64);
        let restored = CredentialsModel::new();
        restored.restore(checkpoint, &bytes).expect("restore");
        assert_eq!(answers(&restored), answers(&model));
        model.apply(tail);
        restored.apply(tail);
        assert_eq!(answers(&restored), answers(&model));
        assert!(
            answers(&model).contains("Registrar"),
            "the answers are not empty"
        );
        let ids: Vec<u64> = model
            .users("acme", &UserFilter::default(), 0, 10)
            .items
            .iter()
            .map(|u| u.id)
            .collect();
        assert_eq!(ids, [9, 4], "registration order, not id order");
    }

    #[test]
    fn a_snapshot_that_does_not_decode_leaves_the_model_empty() {
        let model = CredentialsModel::new();
        model.apply(&busy().events);
        assert!(model.restore(7, b"{not json").is_err());
        assert_eq!(model.checkpoint(), 0);
        assert_eq!(model.platform_count(), 0);
        assert_eq!(model.user_count(), 0);
    }
}
