//! The Redis adapter of platforms and API keys ([`RedisKeys`]): what the
//! query service authenticates a request with, and the list of a
//! platform's keys; the same answers as the in-memory model
//! ([`CredentialsModel`]).
//!
//! # Writing
//!
//! The events carry each record whole (a platform's creation, a key's
//! creation with the SHA-256 of its secret, a key's revocation by name), so
//! the projector decodes them into state: one script per platform and run
//! of operations (see [`crate::redis_model`]) skips the operations at or
//! behind its platform's checkpoint, writes the others and moves it. A
//! revoked key is gone from its platform's hash in the same atomic step as
//! the checkpoint: a projector killed and replaying never shows a revoked
//! key again, even for a moment.
//!
//! The projector also keeps platforms and keys in memory (its
//! [`CredentialsModel`], with its snapshot). When Redis lost the model (it
//! came back empty or older), or the snapshot is ahead of it, the
//! projector writes every platform and active key from memory at once,
//! the global checkpoint last, rather than replaying the log: a key
//! created late in a long log is not missing while the replay reaches it.
//! Until the global checkpoint exists, a key that is not found answers
//! "unavailable" (503), not "invalid" (401).
//!
//! # Keys
//!
//! `P` is a platform key (percent-encoded as in [`crate::redis_catalog`]),
//! `H` the SHA-256 of a key's secret (hex), `N` a key's name.
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `ibl:api-key:H` | string | `[P, N]` (JSON): the platform and name of the key whose secret hashes to H; written (`SET NX`) before its creation's script, never changed |
//! | `ibl:keys:{P}:checkpoint:keys` | string | the position of the last event applied to P's keys |
//! | `ibl:keys:{P}:all` | hash | `platform` → the platform (JSON); `k:N` → P's active key named N (JSON, with its hash) |
//!
//! # Reads
//!
//! Authenticating a key is its lookup, then its platform's record and its
//! own (one `HMGET`); the key's hash must be the one presented (a name
//! given to a later key is another key). A lookup never changes, so each
//! process keeps those it found (up to 100,000): a key seen before is one
//! read. A key not found while the model's global checkpoint is missing
//! (Redis came back empty, the projector has not written it yet) is an
//! error (503), not an unknown key. The list of a platform's keys is its
//! hash (`HGETALL`): a platform has a handful.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use ibl_events::platform::{is_platform_stream, ApiKeyEvent, PlatformEvent};
use ibl_events::{DomainEvent, Position, RecordedEvent};
use redis::{RedisResult, Script};
use tokio::sync::watch;

use crate::assertions::ReadError;
use crate::credentials::{
    key_platform_of_stream, sort_api_keys, ApiKeyView, CredentialsModel, KeyChange, KeyQueries,
    PlatformView,
};
use crate::redis_link::{self, Writer};
use crate::redis_model::{encode_error, esc, Op, Plan, RedisModel, Written};
use crate::{Applied, ReadModel};

const NAME: &str = "keys";

/// The version of the key layout: bump it when the keys change shape.
const LAYOUT_VERSION: u32 = 1;

const KEYS: &[&str] = &["ibl:keys:*", "ibl:api-key:*"];

/// About how many operations one script applies.
const CHUNK: usize = 256;

/// Applies one platform's operations past its checkpoint and moves it.
///
/// KEYS[1]: the platform's checkpoint. ARGV[1]: the prefix, ARGV[3]: the
/// position to move to; then each operation, its name, its position and:
/// `platform V` (the platform's record), `key N V` (the key named N),
/// `revoke N`.
static APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local done = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[3]) <= done then
  return 0
end
local fields = {platform = 1, key = 2, revoke = 1}
local i = 4
while i <= #ARGV do
  local n = fields[ARGV[i]]
  if not n or i + 1 + n > #ARGV then
    return redis.error_reply('malformed operation at argument ' .. i)
  end
  i = i + 2 + n
end
local all = ARGV[1] .. 'all'
i = 4
while i <= #ARGV do
  local op, a = ARGV[i], i + 2
  if tonumber(ARGV[i + 1]) > done then
    if op == 'platform' then
      redis.call('HSET', all, 'platform', ARGV[a])
    elseif op == 'key' then
      redis.call('HSET', all, 'k:' .. ARGV[a], ARGV[a + 1])
    else
      redis.call('HDEL', all, 'k:' .. ARGV[a])
    end
  end
  i = a + fields[op]
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
"#,
    )
});

/// The prefix of platform `p`'s keys, its hash tag included.
fn prefix(platform: &str) -> String {
    format!("ibl:keys:{{{}}}:", esc(platform))
}

fn lookup(hash: &str) -> String {
    format!("ibl:api-key:{}", esc(hash))
}

/// What an event changes.
enum Change {
    Platform(PlatformView),
    Key(ApiKeyView),
    Revoke { platform: String, name: String },
}

fn decode(events: &[&RecordedEvent]) -> Vec<(Position, Change)> {
    let mut changes = Vec::new();
    for event in events {
        match decode_one(event) {
            Ok(Some(change)) => changes.push((event.position, change)),
            Ok(None) => {}
            Err(error) => tracing::error!(
                stream = %event.stream, revision = event.revision, %error,
                "event skipped by the keys read model"
            ),
        }
    }
    changes
}

fn decode_one(event: &RecordedEvent) -> Result<Option<Change>, serde_json::Error> {
    let stream = event.stream.as_str();
    if is_platform_stream(stream) {
        let PlatformEvent::PlatformCreated { id, key, name, .. } =
            PlatformEvent::from_recorded(event)?;
        return Ok(Some(Change::Platform(PlatformView { id, key, name })));
    }
    let Some(platform) = key_platform_of_stream(stream) else {
        return Ok(None);
    };
    Ok(Some(
        match KeyChange::of(platform, ApiKeyEvent::from_recorded(event)?) {
            KeyChange::Created(key) => Change::Key(key),
            KeyChange::Revoked(name) => Change::Revoke {
                platform: platform.to_owned(),
                name,
            },
        },
    ))
}

/// Writes the lookups of new keys and answers each platform's operations.
fn plan(con: &mut Writer, changes: &[(Position, Change)]) -> RedisResult<Plan> {
    let mut lookups = Vec::new();
    let mut ops = Plan::new();
    for (position, change) in changes {
        let (platform, args) = match change {
            Change::Platform(view) => {
                let json =
                    serde_json::to_string(view).map_err(|e| encode_error("a platform", e))?;
                (&view.key, vec!["platform".to_owned(), json])
            }
            Change::Key(key) => {
                let json = serde_json::to_string(key).map_err(|e| encode_error("an API key", e))?;
                let named = serde_json::to_string(&(&key.platform, &key.name))
                    .map_err(|e| encode_error("an API key's lookup", e))?;
                lookups.push((lookup(&key.hash), named));
                (
                    &key.platform,
                    vec!["key".to_owned(), key.name.clone(), json],
                )
            }
            Change::Revoke { platform, name } => {
                (platform, vec!["revoke".to_owned(), name.clone()])
            }
        };
        ops.entry(prefix(platform)).or_default().push(Op {
            position: *position,
            args,
        });
    }
    redis_link::set_nx_many(con, &lookups)?;
    Ok(ops)
}

/// How many key lookups a process keeps (then it forgets them all).
const KEPT_LOOKUPS: usize = 100_000;

/// The Redis adapter of platforms and API keys: see the module.
pub struct RedisKeys {
    core: Arc<RedisModel>,
    /// Lookups found (a hash's platform and name never change): a key
    /// seen before is authenticated in one read.
    lookups: Mutex<HashMap<String, (String, String)>>,
    /// The projector's model in memory, written whole after a loss (none
    /// in a reader).
    source: Option<Arc<CredentialsModel>>,
}

impl RedisKeys {
    /// Connects to the Redis server at `url` and reads where the model is
    /// (a reader: the query service).
    pub async fn open(url: &str) -> Result<Self, ReadError> {
        let layout = format!("{LAYOUT_VERSION}");
        let core = RedisModel::open(NAME, url, layout, KEYS, CHUNK).await?;
        Ok(Self {
            core: Arc::new(core),
            lookups: Mutex::default(),
            source: None,
        })
    }

    /// The projector's: it writes the model, and writes `source` (the
    /// projector's model in memory, fed the same log after this one) whole
    /// when Redis lost it or is behind it.
    pub async fn open_writer(url: &str, source: Arc<CredentialsModel>) -> Result<Self, ReadError> {
        Ok(Self {
            source: Some(source),
            ..Self::open(url).await?
        })
    }

    /// Clears the model and writes the source's platforms and keys at the
    /// source's position (retried until Redis takes them).
    fn replace(&self, source: &CredentialsModel) {
        self.core.replace(|| {
            let (at, platforms, keys) = source.keys_state();
            tracing::warn!(
                model = NAME,
                position = at,
                "writing the keys read model to Redis whole"
            );
            let changes: Vec<(Position, Change)> = platforms
                .into_iter()
                .map(|p| (at, Change::Platform(p)))
                .chain(keys.into_iter().map(|k| (at, Change::Key(k))))
                .collect();
            self.core
                .write(&APPLY, "", |con| plan(con, &changes), 0, at, None)
                .map(|written| (at, written))
        });
    }

    /// Follows the model as another process writes it (see
    /// [`RedisModel::follow`]).
    pub fn follow(&self, every: Duration) -> watch::Receiver<Position> {
        self.core.follow(every)
    }

    fn write(
        &self,
        changes: &[(Position, Change)],
        from: Position,
        last: Position,
    ) -> RedisResult<Written> {
        self.core
            .write(&APPLY, "", |con| plan(con, changes), from, last, None)
    }
}

fn decoded<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T, ReadError> {
    serde_json::from_str(json).map_err(|e| ReadError::new(format!("a stored {what}: {e}")))
}

#[async_trait::async_trait]
impl KeyQueries for RedisKeys {
    async fn api_key_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<(Arc<ApiKeyView>, Arc<PlatformView>)>, ReadError> {
        let (platform, name) = match self.lookup(hash).await? {
            Some(found) => found,
            None => return Ok(None),
        };
        let (platform_view, key): (Option<String>, Option<String>) = self
            .core
            .query(
                redis::cmd("HMGET")
                    .arg(format!("{}all", prefix(&platform)))
                    .arg("platform")
                    .arg(format!("k:{name}")),
            )
            .await?;
        let (Some(platform_view), Some(key)) = (platform_view, key) else {
            return self.unknown().await;
        };
        let key: ApiKeyView = decoded(&key, "API key")?;
        if key.hash != hash {
            return Ok(None);
        }
        Ok(Some((
            Arc::new(key),
            Arc::new(decoded(&platform_view, "platform")?),
        )))
    }

    async fn api_keys(&self, platform: &str) -> Result<Vec<ApiKeyView>, ReadError> {
        let all: Vec<(String, String)> = self
            .core
            .query(redis::cmd("HGETALL").arg(format!("{}all", prefix(platform))))
            .await?;
        let mut keys = all
            .iter()
            .filter(|(field, _)| field.starts_with("k:"))
            .map(|(_, json)| decoded::<ApiKeyView>(json, "API key"))
            .collect::<Result<Vec<_>, _>>()?;
        sort_api_keys(&mut keys);
        Ok(keys)
    }
}

impl RedisKeys {
    /// What a key not found is: unknown (`None`), or unavailable (an
    /// error: 503) while the model is not written (Redis came back empty).
    async fn unknown<T>(&self) -> Result<Option<T>, ReadError> {
        let built: Option<Position> = self
            .core
            .query(redis::cmd("GET").arg(format!("ibl:checkpoint:{NAME}")))
            .await?;
        match built {
            Some(_) => Ok(None),
            None => Err(ReadError::new(
                "the keys read model is being written to Redis".to_owned(),
            )),
        }
    }

    /// The platform and name of the key whose secret hashes to `hash`,
    /// read once per process (they never change); none while unknown.
    async fn lookup(&self, hash: &str) -> Result<Option<(String, String)>, ReadError> {
        let kept = |l: &Mutex<HashMap<String, (String, String)>>| {
            l.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(hash)
                .cloned()
        };
        if let Some(found) = kept(&self.lookups) {
            return Ok(Some(found));
        }
        let found: Option<String> = self.core.query(redis::cmd("GET").arg(lookup(hash))).await?;
        let Some(found) = found else {
            return self.unknown().await;
        };
        let found: (String, String) = decoded(&found, "key lookup")?;
        let mut kept = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= KEPT_LOOKUPS {
            kept.clear();
        }
        kept.insert(hash.to_owned(), found.clone());
        Ok(Some(found))
    }
}

/// The whole model only: its keys of one platform are not told apart.
impl crate::replay::Digest for RedisKeys {
    fn digest(&self, platform: Option<&str>) -> Result<String, String> {
        match platform {
            None => self.core.digest(),
            Some(_) => Err("a model in Redis is digested whole, not by platform".into()),
        }
    }
}

impl ReadModel for RedisKeys {
    fn name(&self) -> &'static str {
        NAME
    }

    fn checkpoint(&self) -> Position {
        self.core.checkpoint()
    }

    fn verify(&self) -> Applied {
        let rewound = self.core.verify() == Applied::Rewound;
        match &self.source {
            Some(source) if rewound || source.checkpoint() > self.core.checkpoint() => {
                self.replace(source);
                Applied::Done
            }
            _ if rewound => Applied::Rewound,
            _ => Applied::Done,
        }
    }

    fn apply(&self, batch: &[RecordedEvent]) -> Applied {
        if let Some(source) = &self.source {
            if source.checkpoint() > self.core.checkpoint() {
                // The source (its snapshot) is ahead of Redis.
                self.replace(source);
            }
        }
        let apply = || {
            self.core.apply(batch, |events, from, last| {
                self.write(&decode(events), from, last)
            })
        };
        match (apply(), &self.source) {
            (Applied::Rewound, Some(source)) => {
                // Written whole at the source's position (the batch's
                // start: the source takes it after this model), then the
                // batch.
                self.replace(source);
                apply()
            }
            (applied, _) => applied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, Log, RedisCluster, RedisServer};
    use std::collections::HashSet;

    /// The platforms whose keys a test compares.
    fn platforms_of(changes: &[RecordedEvent]) -> HashSet<String> {
        let events: Vec<&RecordedEvent> = changes.iter().collect();
        decode(&events)
            .into_iter()
            .map(|(_, c)| match c {
                Change::Platform(p) => p.key,
                Change::Key(k) => k.platform,
                Change::Revoke { platform, .. } => platform,
            })
            .collect()
    }

    /// A log of platforms and keys: created, revoked, a name given again
    /// to a later key, a platform key with braces and a colon, the legacy
    /// stream of all a platform's keys.
    fn log() -> Vec<RecordedEvent> {
        let mut log = Log::default();
        for (id, key) in [(1, "acme"), (2, "we{ird}:one")] {
            let created = PlatformEvent::PlatformCreated {
                id,
                key: key.into(),
                name: format!("Platform {key}"),
                created_at: at(0),
            };
            log.push(&format!("platform-{key}"), created, None);
        }
        let key = |name: &str, hash: &str, s: i64| ApiKeyEvent::ApiKeyCreated {
            name: name.into(),
            prefix: format!("p-{hash}"),
            hash: hash.into(),
            user_id: 7,
            username: "admin".into(),
            expires: (s % 2 == 0).then(|| at(1_000_000)),
            created_at: at(s),
        };
        let revoked = |name: &str| ApiKeyEvent::ApiKeyRevoked {
            name: name.into(),
            revoked_at: at(99),
        };
        for (stream, event) in [
            ("apikeys-acme", key("legacy", "h0", 1)),
            ("apikey-acme/one", key("one", "h1", 2)),
            ("apikey-acme/two", key("two", "h2", 3)),
            ("apikey-we{ird}:one/a:b", key("a:b", "h3", 3)),
            ("apikey-acme/one", revoked("one")),
            ("apikey-acme/one", key("one", "h4", 5)),
            ("apikeys-acme", revoked("legacy")),
            ("apikey-acme/never", revoked("never")),
        ] {
            log.push(stream, event, None);
        }
        log.events
    }

    /// Every answer of the port, as text.
    async fn answers(q: &dyn KeyQueries, platforms: &HashSet<String>) -> Vec<String> {
        let mut out = Vec::new();
        let mut platforms: Vec<&String> = platforms.iter().collect();
        platforms.sort();
        for platform in platforms {
            out.push(format!("{platform}: {:?}", q.api_keys(platform).await));
        }
        for hash in ["h0", "h1", "h2", "h3", "h4", "h5"] {
            out.push(format!("{hash}: {:?}", q.api_key_by_hash(hash).await));
        }
        out
    }

    async fn compare(url: &str) {
        let redis = RedisKeys::open(url).await.expect("open");
        let memory = CredentialsModel::new();
        let log = log();
        let platforms = platforms_of(&log);
        assert_eq!(platforms.len(), 2);
        for batch in log.chunks(3) {
            assert_eq!(redis.apply(batch), Applied::Done);
            memory.apply(batch);
            assert_eq!(
                answers(&redis, &platforms).await,
                answers(&memory, &platforms).await,
                "after position {}",
                redis.checkpoint()
            );
        }
        let all = answers(&redis, &platforms).await;
        assert!(all.iter().any(|a| a.starts_with("h4: Ok(Some")), "{all:?}");
        assert!(all.iter().any(|a| a == "h1: Ok(None)"), "revoked: {all:?}");
        assert!(all.iter().any(|a| a == "h0: Ok(None)"), "revoked: {all:?}");
        // Replayed from the start (a projector that lost its checkpoint):
        // nothing revoked comes back.
        let again = RedisKeys::open(url).await.expect("open");
        again.core.set_checkpoint(0);
        for batch in log.chunks(2) {
            again.apply(batch);
            let now = answers(&again, &platforms).await;
            for revoked in ["h0: Ok(None)", "h1: Ok(None)"] {
                assert!(now.iter().any(|a| a == revoked), "{now:?}");
            }
        }
        assert_eq!(answers(&again, &platforms).await, all);
    }

    #[tokio::test]
    async fn keys_and_platforms_answer_as_in_memory_and_a_replay_never_shows_a_revoked_key() {
        let server = RedisServer::start();
        compare(&server.url(0)).await;
        for key in server.keys() {
            assert!(
                key.starts_with("ibl:api-key:")
                    || key.starts_with("ibl:keys:{acme}:")
                    || key.starts_with("ibl:keys:{we%7Bird%7D%3Aone}:")
                    || key == "ibl:checkpoint:keys"
                    || key == "ibl:layout:keys",
                "{key}: a documented key, in its platform's slot"
            );
        }
    }

    #[tokio::test]
    async fn on_a_three_node_cluster_the_answers_are_the_same() {
        let cluster = RedisCluster::start();
        compare(&cluster.url()).await;
    }

    #[tokio::test]
    async fn the_projector_writes_its_model_whole_over_a_server_back_empty_or_behind_its_snapshot()
    {
        let server = RedisServer::start();
        let log = log();
        let platforms = platforms_of(&log);
        let source = Arc::new(CredentialsModel::new());
        let writer = RedisKeys::open_writer(&server.url(0), source.clone())
            .await
            .expect("open");
        let reader = RedisKeys::open(&server.url(0)).await.expect("open");
        for batch in log.chunks(4) {
            writer.apply(batch); // before the source, as the runtime orders them
            source.apply(batch);
        }
        let all = answers(source.as_ref(), &platforms).await;
        assert_eq!(answers(&reader, &platforms).await, all);
        reader.lookups.lock().unwrap().remove("h2");

        redis::cmd("FLUSHALL")
            .query::<()>(&mut server.connection())
            .expect("FLUSHALL");
        for hash in ["h4", "h2"] {
            // (h4's lookup was kept by this reader; h2's was not.)
            assert!(
                reader.api_key_by_hash(hash).await.is_err(),
                "while the model is not written, a key is unavailable, not invalid"
            );
        }
        assert_eq!(writer.verify(), Applied::Done);
        assert_eq!(writer.checkpoint(), log.len() as u64);
        assert_eq!(answers(&reader, &platforms).await, all);
        assert!(matches!(reader.api_key_by_hash("nope").await, Ok(None)));

        // A source restored from its snapshot, over an empty database.
        let fresh = RedisKeys::open_writer(&server.url(1), source.clone())
            .await
            .expect("open");
        assert_eq!(fresh.checkpoint(), 0);
        assert_eq!(fresh.apply(&log[log.len() - 1..]), Applied::Done);
        assert_eq!(fresh.checkpoint(), log.len() as u64);
        let reader = RedisKeys::open(&server.url(1)).await.expect("open");
        assert_eq!(answers(&reader, &platforms).await, all);
    }

    #[tokio::test]
    async fn a_server_back_empty_is_rebuilt_from_the_log() {
        let server = RedisServer::start();
        let redis = RedisKeys::open(&server.url(0)).await.expect("open");
        let log = log();
        redis.apply(&log);
        redis::cmd("FLUSHALL")
            .query::<()>(&mut server.connection())
            .expect("FLUSHALL");
        assert_eq!(redis.verify(), Applied::Rewound);
        assert_eq!(redis.checkpoint(), 0);
        redis.apply(&log);
        assert!(redis.api_key_by_hash("h4").await.expect("read").is_some());
    }
}
