//! What every process of the system does around its routes: its settings,
//! the event store and the read models it opens, the middleware (request
//! ids, JSON errors, metrics, path normalisation) and the HTTP server.
//! `command-service`, `query-service`, `projections` and the all-in-one
//! `ibl serve` differ only in the routes and the app data they add.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::uri::{PathAndQuery, Uri};
use actix_web::http::{header, ConnectionType};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpMessage, HttpResponse};
use ibl_events::sqlite::SqliteStore;
use ibl_events::EventStore;
use ibl_projections::assertions::{AssertionQueries, AssertionsModel, ReadError};
use ibl_projections::audit_log::{load_or_create_signer, AuditLog, AUDIT_FILE};
use ibl_projections::credentials::{CatalogQueries, CredentialsModel, KeyQueries};
use ibl_projections::rbac::{RbacModel, RedisRbac};
use ibl_projections::redis_assertions::RedisAssertions;
use ibl_projections::redis_catalog::RedisCatalog;
use ibl_projections::redis_keys::RedisKeys;
use ibl_projections::relay::{self, Checkpoint};
use ibl_projections::snapshot::Snapshots;
use ibl_projections::{Projections, ReadModel, Snapshot};
use tracing::Instrument;

use crate::error::{is_json, status_body};
use crate::extract::BodyTimeout;
use crate::metrics::{Metrics, MetricsAccess, TimedStore};
use crate::position::{load_or_create_key, PositionKey};
use crate::routes::{Route, Schema};
use crate::wire::PublicUrl;
use crate::{ApiError, ClientRequestId, ReadState, RequestId};

/// Settings of the server: one struct, each from the command line or the
/// environment, with defaults that run embedded.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(
        long,
        global = true,
        env = "IBL_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub addr: String,
    /// Folder of the embedded event store (and of the position key and the
    /// persisted read models, whichever store holds the events).
    #[arg(long, global = true, env = "IBL_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// EventStoreDB / KurrentDB to keep the events in instead of the
    /// embedded store (`esdb://host:2113?tls=false`, `kurrentdb://...`).
    #[arg(long, global = true, env = "EVENTSTORE_URL", hide_env_values = true)]
    pub eventstore_url: Option<String>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, global = true, env = "IBL_WORKERS")]
    pub workers: Option<usize>,
    /// Key of the `X-Position` tokens, 64 hex digits (default: the one in
    /// `<data-dir>/position.key`, made on first start).
    #[arg(
        long,
        global = true,
        env = "IBL_POSITION_KEY",
        hide_env_values = true,
        value_parser = SecretKeyParser
    )]
    pub position_key: Option<PositionKey>,
    /// Where clients reach the API, the base of every URL it writes
    /// (`https://api.example.com`; default: `http://` and the listen
    /// address). Request headers (`Host`, `X-Forwarded-Host`) never are.
    #[arg(long, global = true, env = "IBL_PUBLIC_URL", value_parser = PublicUrl::parse)]
    pub public_url: Option<PublicUrl>,
    /// Seconds a request body may take to arrive in full (then 408 and the
    /// connection is closed); request heads get at most 5 s.
    #[arg(
        long,
        global = true,
        env = "IBL_BODY_TIMEOUT_SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub body_timeout_secs: u64,
    /// Public verification lookups a client address may make per second,
    /// on average (429 with `Retry-After` beyond).
    #[arg(long, global = true, env = "IBL_PUBLIC_RATE", default_value_t = 50.0, value_parser = positive)]
    pub public_rate: f64,
    /// Public verification lookups a client address may make at once.
    #[arg(
        long,
        global = true,
        env = "IBL_PUBLIC_BURST",
        default_value_t = 100,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub public_burst: u32,
    /// Bearer token that `/metrics` asks for (default: none, and then only
    /// clients on this machine, on loopback, may read it).
    #[arg(long, global = true, env = "IBL_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Replicas of the JetStream stream `IBL_EVENTS` when the relay creates
    /// it (3 on a NATS cluster; an existing stream keeps its own).
    #[arg(
        long,
        global = true,
        env = "IBL_NATS_REPLICAS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u8).range(1..=5)
    )]
    pub nats_replicas: u8,
    /// Redis server to keep the assertions read model in
    /// (`redis://host:6379/0`), shared by every process; none: each process
    /// keeps its own in its read models' folder.
    #[arg(long, global = true, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// NATS server to publish every event to (JetStream stream
    /// `IBL_EVENTS`); none: events are not published.
    #[arg(long, global = true, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// Milliseconds a read with `X-Min-Position` waits for the read models
    /// to reach that position (then 503 with `Retry-After`).
    #[arg(
        long,
        global = true,
        env = "IBL_MIN_POSITION_WAIT_MS",
        default_value_t = 2000,
        value_parser = clap::value_parser!(u64).range(1..=60_000)
    )]
    pub min_position_wait_ms: u64,
    /// What a read sent without `X-Min-Position` sees: `eventual` (what the
    /// read models have applied, typically milliseconds behind) or `strong`
    /// (it first waits, as with `X-Min-Position`, for every write the store
    /// had committed when the read arrived: read-your-writes for clients
    /// that send no header, at the cost of the projection lag on each read).
    #[arg(
        long,
        global = true,
        env = "IBL_READ_CONSISTENCY",
        value_enum,
        default_value_t = Consistency::Eventual
    )]
    pub read_consistency: Consistency,
    /// Folder of this process's persisted read models (default:
    /// `<data-dir>/readmodels`). One process at a time holds it; another
    /// process on the same data folder builds its read models in a
    /// temporary folder of its own unless given one here.
    #[arg(long, global = true, env = "IBL_READ_MODELS_DIR")]
    pub read_models_dir: Option<PathBuf>,
    /// File of the Ed25519 key that signs the audit log's checkpoints,
    /// kept outside the data folder (default:
    /// `$XDG_CONFIG_HOME/ibl/signing.key`, else
    /// `$HOME/.config/ibl/signing.key`); created at first start if missing.
    #[arg(long, global = true, env = "IBL_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// The audit log's origin (the first line of its checkpoints, the name
    /// of its key), used when the signing key is created: a name of this
    /// deployment, e.g. `api.example.com/audit`.
    #[arg(
        long,
        global = true,
        env = "IBL_AUDIT_ORIGIN",
        default_value = "ibl.local/audit"
    )]
    pub audit_origin: String,
    /// Seconds between two signed checkpoints of the audit log while
    /// events arrive.
    #[arg(
        long,
        global = true,
        env = "IBL_CHECKPOINT_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3_600)
    )]
    pub checkpoint_secs: u64,
    /// Keep the audit log (`on`, the default) or not (`off`: no Merkle
    /// tree, checkpoints or history routes; for comparing its cost).
    #[arg(
        long,
        global = true,
        env = "IBL_AUDIT_LOG",
        value_enum,
        default_value_t = Switch::On
    )]
    pub audit_log: Switch,
}

/// A feature turned on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// What a read without `X-Min-Position` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Consistency {
    /// Nothing: it sees what the read models have applied.
    Eventual,
    /// Every write committed when it arrived.
    Strong,
}

/// Parses `--position-key` without echoing a refused value (clap's own
/// message would print it, and a near miss is most of the key).
#[derive(Clone)]
struct SecretKeyParser;

impl clap::builder::TypedValueParser for SecretKeyParser {
    type Value = PositionKey;

    fn parse_ref(
        &self,
        _: &clap::Command,
        _: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<PositionKey, clap::Error> {
        value
            .to_str()
            .and_then(|v| PositionKey::from_hex(v).ok())
            .ok_or_else(|| {
                clap::Error::raw(
                    clap::error::ErrorKind::InvalidValue,
                    "--position-key / IBL_POSITION_KEY: a position key is 64 hex digits (32 bytes); the value given is not shown\n",
                )
            })
    }
}

fn positive(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| format!("{text:?} is not a number above 0"))
}

impl Settings {
    /// Where the relay publishes, when a NATS server is named.
    pub fn bus(&self) -> Option<relay::Bus> {
        self.nats_url.as_ref().map(|url| relay::Bus {
            url: url.clone(),
            replicas: usize::from(self.nats_replicas),
        })
    }

    /// The defaults, with the store in `data_dir` (what the command line
    /// gives when it sets nothing else).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            data_dir: data_dir.into(),
            eventstore_url: None,
            workers: None,
            position_key: None,
            public_url: None,
            body_timeout_secs: 30,
            public_rate: 50.0,
            public_burst: 100,
            metrics_token: None,
            nats_url: None,
            nats_replicas: 1,
            redis_url: None,
            min_position_wait_ms: 2000,
            read_consistency: Consistency::Eventual,
            read_models_dir: None,
            signing_key: None,
            audit_origin: "ibl.local/audit".into(),
            checkpoint_secs: 10,
            audit_log: Switch::On,
        }
    }

    /// The signing key's file: `--signing-key`, else the default under the
    /// user's configuration folder.
    pub fn signing_key_path(&self) -> std::io::Result<PathBuf> {
        if let Some(path) = &self.signing_key {
            return Ok(path.clone());
        }
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|home| PathBuf::from(home).join(".config"))
            })
            .ok_or_else(|| {
                std::io::Error::other(
                    "no --signing-key / IBL_SIGNING_KEY, and neither XDG_CONFIG_HOME nor HOME to default to",
                )
            })?;
        Ok(config.join("ibl").join("signing.key"))
    }
}

/// The folder of the persisted read models in a data folder: deleting it
/// rebuilds them from the log at the next start.
pub const READ_MODELS_DIR: &str = "readmodels";

/// The lock file of a read models' folder.
const LOCK_FILE: &str = "LOCK";

/// The start of the name of a process's temporary read models' folder.
const TEMPORARY_PREFIX: &str = "readmodels-";

/// The relay's checkpoint, in the read models' folder.
const RELAY_CHECKPOINT: &str = "relay.position";

/// How often the in-memory read models are written out while they move: a
/// start replays at most this much of the log on top of their snapshots.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);

/// The file of the position key in a data folder.
pub const POSITION_KEY_FILE: &str = "position.key";

/// Opens the event store the settings name: EventStoreDB when
/// `EVENTSTORE_URL` is set, else the embedded store in the data folder.
pub async fn open_event_store(settings: &Settings) -> std::io::Result<Arc<dyn EventStore>> {
    Ok(match &settings.eventstore_url {
        Some(url) => Arc::new(
            ibl_events_kurrentdb::KurrentStore::connect(url)
                .await
                .map_err(|e| std::io::Error::other(format!("connecting to EventStoreDB: {e}")))?,
        ),
        None => Arc::new(SqliteStore::open(&settings.data_dir).map_err(|e| {
            std::io::Error::other(format!(
                "opening the event store in {}: {e}",
                settings.data_dir.display()
            ))
        })?),
    })
}

/// [`open_event_store`], timed for `/metrics`.
pub async fn open_store(
    settings: &Settings,
    metrics: &Arc<Metrics>,
) -> std::io::Result<Arc<dyn EventStore>> {
    let store = open_event_store(settings).await?;
    Ok(TimedStore::wrap(store, metrics.clone()))
}

/// The folder of a process's persisted read models, locked for as long as
/// the process runs: two processes applying the log to one folder would
/// undo each other's work (one re-applying an issue after the other
/// applied its revocation).
pub struct ReadModelsDir {
    pub path: PathBuf,
    /// Held open for its lock.
    _lock: std::fs::File,
    /// A folder of this process alone, removed when it stops.
    _temporary: Option<tempfile::TempDir>,
}

impl ReadModelsDir {
    /// The folder the settings name, or `<data-dir>/readmodels`; when that
    /// default is held by another process, a temporary folder in the data
    /// folder (rebuilt from the log, removed at the end).
    pub fn acquire(settings: &Settings) -> std::io::Result<Self> {
        if let Some(path) = &settings.read_models_dir {
            return Self::lock(path.clone(), None)?.ok_or_else(|| {
                std::io::Error::other(format!(
                    "the read models' folder {} is used by another process",
                    path.display()
                ))
            });
        }
        let default = settings.data_dir.join(READ_MODELS_DIR);
        if let Some(dir) = Self::lock(default.clone(), None)? {
            return Ok(dir);
        }
        Self::sweep(&settings.data_dir);
        let temporary = tempfile::Builder::new()
            .prefix(TEMPORARY_PREFIX)
            .tempdir_in(&settings.data_dir)?;
        tracing::warn!(
            target: "ibl::startup",
            held = %default.display(),
            using = %temporary.path().display(),
            "another process holds the read models' folder: this one builds its own from the log (set IBL_READ_MODELS_DIR to keep them across restarts)"
        );
        let path = temporary.path().to_path_buf();
        Self::lock(path.clone(), Some(temporary))?
            .ok_or_else(|| std::io::Error::other(format!("{} is locked", path.display())))
    }

    /// Removes the temporary read-models folders of processes that are
    /// gone (killed before they could remove them): those whose lock no
    /// process holds. A folder not locked yet (its process is starting)
    /// has no lock file, or one this sweep cannot lock, and is kept.
    fn sweep(data_dir: &std::path::Path) {
        let Ok(entries) = std::fs::read_dir(data_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with(TEMPORARY_PREFIX) {
                continue;
            }
            let path = entry.path();
            let Ok(file) = std::fs::OpenOptions::new()
                .write(true)
                .open(path.join(LOCK_FILE))
            else {
                continue;
            };
            if file.try_lock().is_ok() {
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => tracing::info!(
                        target: "ibl::startup",
                        removed = %path.display(),
                        "removed the temporary read models of a process that is gone"
                    ),
                    Err(e) => tracing::warn!(
                        target: "ibl::startup",
                        folder = %path.display(), error = %e,
                        "could not remove the temporary read models of a process that is gone"
                    ),
                }
            }
        }
    }

    fn lock(path: PathBuf, temporary: Option<tempfile::TempDir>) -> std::io::Result<Option<Self>> {
        std::fs::create_dir_all(&path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join(LOCK_FILE))?;
        match file.try_lock() {
            // (A sweep by another process may have removed the folder
            // between its creation and this lock: then it is not ours.)
            Ok(()) if !path.join(LOCK_FILE).exists() => Err(std::io::Error::other(format!(
                "{} was removed as it was being locked; start again",
                path.display()
            ))),
            Ok(()) => Ok(Some(Self {
                path,
                _lock: file,
                _temporary: temporary,
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// The read side of a process: its read models, caught up with the log,
/// their snapshots and, when events are published, the relay.
pub struct ReadSide {
    /// The audit log, in the process that projects (`ibl serve`, the
    /// projections process).
    pub audit: Option<AuditFile>,
    pub store: Arc<dyn EventStore>,
    pub read: web::Data<ReadState>,
    pub snapshots: Arc<Snapshots>,
    pub relay: Option<Arc<Checkpoint>>,
    pub metrics: Arc<Metrics>,
    pub positions: PositionKey,
    pub dir: ReadModelsDir,
}

/// The audit log of the process and the lock that makes it the only writer
/// of its file.
pub struct AuditFile {
    pub log: Arc<AuditLog>,
    /// Held open for its lock.
    _lock: std::fs::File,
}

/// Opens the audit log: its signing key (created when missing), and its
/// file in the data folder, or in the process's read models' folder when
/// another process holds the data folder's (that one keeps the evidence).
fn open_audit_log(settings: &Settings, read_dir: &std::path::Path) -> std::io::Result<AuditFile> {
    let key = settings.signing_key_path()?;
    let signer = load_or_create_signer(&key, &settings.audit_origin)
        .map_err(|e| std::io::Error::other(format!("the audit log's signing key: {e}")))?;
    std::fs::create_dir_all(&settings.data_dir)?;
    let lock_at = |dir: &std::path::Path| -> std::io::Result<Option<std::fs::File>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("audit.lock"))?;
        Ok(file.try_lock().is_ok().then_some(file))
    };
    let (dir, lock) = match lock_at(&settings.data_dir)? {
        Some(lock) => (settings.data_dir.clone(), lock),
        None => {
            tracing::warn!(
                target: "ibl::startup",
                "another process keeps the audit log of this data folder: this one keeps its own in its read models' folder"
            );
            let lock = lock_at(read_dir)?.ok_or_else(|| {
                std::io::Error::other(format!("{} is locked", read_dir.display()))
            })?;
            (read_dir.to_path_buf(), lock)
        }
    };
    let path = dir.join(AUDIT_FILE);
    let log = AuditLog::open(&path, signer)
        .map_err(|e| std::io::Error::other(format!("the audit log: {e}")))?;
    tracing::info!(
        target: "ibl::startup",
        file = %path.display(),
        key = %key.display(),
        vkey = %log.vkey(),
        size = log.size(),
        "audit log: checkpoints signed with this key"
    );
    Ok(AuditFile {
        log: Arc::new(log),
        _lock: lock,
    })
}

/// How long the audit log's projector waits after a short batch before it
/// reads the next: the routes that wait for it wait at most this much
/// longer, and under a stream of writes it applies tens of events a batch
/// instead of a few (a transaction and a read of the store each).
const AUDIT_LINGER: Duration = Duration::from_millis(20);

/// Signs a checkpoint of the audit log every `every` while it grows and,
/// with a bus, publishes the latest one to `ibl.audit.checkpoint` (in the
/// `IBL_EVENTS` stream, so copies live outside the operator's store) until
/// JetStream acknowledges it.
async fn sign_checkpoints(log: Arc<AuditLog>, every: Duration, bus: Option<relay::Bus>) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut published = 0;
    let mut js = None;
    loop {
        tick.tick().await;
        let signing = log.clone();
        match tokio::task::spawn_blocking(move || signing.sign()).await {
            Ok(Ok(Some(c))) => {
                tracing::debug!(target: "ibl::audit", size = c.size, "checkpoint signed")
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(target: "ibl::audit", error = %e, "signing a checkpoint"),
            Err(e) => tracing::warn!(target: "ibl::audit", error = %e, "signing a checkpoint"),
        }
        let (Some(bus), Some(latest)) = (&bus, log.latest()) else {
            continue;
        };
        if latest.size <= published {
            continue;
        }
        match relay::publish_checkpoint(&mut js, bus, log.origin(), &latest).await {
            Ok(()) => published = latest.size,
            Err(e) => {
                js = None;
                tracing::warn!(target: "ibl::audit", error = %e, "publishing a checkpoint; retrying at the next")
            }
        }
    }
}

/// What a process does with the read models in shared servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `ibl serve` and the projections process: they write the read models
    /// in Redis and publish the log's events to NATS, when the settings
    /// name these servers.
    Projector,
    /// The command service: it reads the assertions in Redis and follows
    /// their checkpoint; it publishes nothing. Its guards and checks read
    /// models of its own, fed from the store (the catalog too).
    Commands,
    /// The query service: it reads the read models in Redis and follows
    /// their checkpoints; it publishes nothing and keeps no catalog in
    /// memory.
    Queries,
}

/// How often a service reads the checkpoint of a read model another
/// process writes (a bound on the extra wait of `X-Min-Position`).
const FOLLOW_EVERY: Duration = Duration::from_millis(2);

/// A read model in Redis: the projector applies it; a service follows its
/// checkpoint (`follow`), which another process moves.
fn in_redis(
    model: Arc<dyn ReadModel>,
    follow: impl FnOnce() -> tokio::sync::watch::Receiver<ibl_events::Position>,
    role: Role,
    read_models: &mut Vec<Arc<dyn ReadModel>>,
    followed: &mut Vec<(
        &'static str,
        tokio::sync::watch::Receiver<ibl_events::Position>,
    )>,
) {
    tracing::info!(
        target: "ibl::startup",
        model = model.name(),
        position = model.checkpoint(),
        writes = role == Role::Projector,
        "read model in Redis"
    );
    match role {
        Role::Projector => read_models.push(model),
        Role::Commands | Role::Queries => followed.push((model.name(), follow())),
    }
}

/// A read model in Redis, opened (or why not).
fn opened<M>(what: &str, model: Result<M, ReadError>) -> std::io::Result<Arc<M>> {
    model.map(Arc::new).map_err(|e| {
        std::io::Error::other(format!("the {what} read model in Redis (REDIS_URL): {e}"))
    })
}

/// Loads the read models (from their files and snapshots, else from the
/// log), catches them up with the log and starts following it.
pub async fn start_read_side(
    store: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
    settings: &Settings,
    role: Role,
) -> std::io::Result<ReadSide> {
    let positions = match &settings.position_key {
        Some(key) => key.clone(),
        None => load_or_create_key(&settings.data_dir.join(POSITION_KEY_FILE))
            .map_err(|e| std::io::Error::other(format!("the position key: {e}")))?,
    };
    let started = std::time::Instant::now();
    let dir = ReadModelsDir::acquire(settings)?;
    let read_dir = dir.path.clone();
    let mut read_models: Vec<Arc<dyn ReadModel>> = Vec::new();
    let mut followed = Vec::new();
    let assertions: Arc<dyn AssertionQueries> = match &settings.redis_url {
        Some(url) => {
            let redis = opened("assertions", RedisAssertions::open(url).await)?;
            let follow = || redis.follow(FOLLOW_EVERY);
            in_redis(redis.clone(), follow, role, &mut read_models, &mut followed);
            redis
        }
        None => {
            let (assertions, rebuilt) =
                AssertionsModel::open(&read_dir.join("assertions.db"), store.as_ref())
                    .await
                    .map_err(|e| {
                        std::io::Error::other(format!("the assertions read model: {e}"))
                    })?;
            if let Some(why) = rebuilt {
                tracing::info!(target: "ibl::startup", why, "assertions read model rebuilt from the log");
            }
            let assertions = Arc::new(assertions);
            read_models.push(assertions.clone());
            assertions
        }
    };
    // The catalog (credentials, issuers) in Redis is written by the
    // projector and read by the query service; the command service checks
    // writes against its own copy in memory.
    let redis_catalog = match (&settings.redis_url, role) {
        (Some(url), Role::Projector | Role::Queries) => {
            let redis = opened("catalog", RedisCatalog::open(url).await)?;
            let follow = || redis.follow(FOLLOW_EVERY);
            in_redis(redis.clone(), follow, role, &mut read_models, &mut followed);
            Some(redis)
        }
        _ => None,
    };
    let models = Arc::new(if redis_catalog.is_some() && role == Role::Queries {
        CredentialsModel::without_catalog()
    } else {
        CredentialsModel::new()
    });
    // Platforms and API keys in Redis: written by the projector, read by
    // the query service to authenticate; the others authenticate from
    // their own model in memory (so writes go on while Redis is down), and
    // the projector writes its model whole when Redis lost it.
    let redis_keys = match (&settings.redis_url, role) {
        (Some(url), Role::Projector | Role::Queries) => {
            let redis = if role == Role::Projector {
                RedisKeys::open_writer(url, models.clone()).await
            } else {
                RedisKeys::open(url).await
            };
            let redis = opened("keys", redis)?;
            let follow = || redis.follow(FOLLOW_EVERY);
            in_redis(redis.clone(), follow, role, &mut read_models, &mut followed);
            Some(redis)
        }
        _ => None,
    };
    let catalog: Arc<dyn CatalogQueries> = match redis_catalog {
        Some(redis) => redis,
        None => models.clone(),
    };
    // RBAC in Redis is written by the projector from its own in-memory
    // model (kept with its snapshot) and read by the query service, which
    // keeps none; the command service decides on its own model in memory,
    // and the projector's process (`ibl serve`) reads its own.
    let (rbac, redis_rbac) = match (&settings.redis_url, role) {
        (Some(url), Role::Projector | Role::Queries) => {
            let (source, redis) = if role == Role::Projector {
                let source = RedisRbac::source();
                (source.clone(), RedisRbac::open_writer(url, source).await)
            } else {
                (Arc::new(RbacModel::new()), RedisRbac::open(url).await)
            };
            let redis = opened("RBAC", redis)?;
            let follow = || redis.follow(FOLLOW_EVERY);
            in_redis(redis.clone(), follow, role, &mut read_models, &mut followed);
            (source, Some(redis))
        }
        _ => (Arc::new(RbacModel::new()), None),
    };
    // A query service on Redis answers everything from Redis: it folds
    // nothing of the log into memory.
    let in_memory = !(role == Role::Queries && settings.redis_url.is_some());
    let mut snapshotted: Vec<Arc<dyn Snapshot>> = Vec::new();
    if in_memory {
        snapshotted.push(models.clone());
    }
    if redis_rbac.is_none() || role == Role::Projector {
        snapshotted.push(rbac.clone());
    }
    let snapshots = Arc::new(Snapshots::new(read_dir.clone(), store.clone(), snapshotted));
    for (model, loaded) in snapshots.load().await {
        match loaded {
            Ok(position) => tracing::info!(
                target: "ibl::startup", model, position, "read model restored from its snapshot"
            ),
            Err(why) => {
                tracing::info!(target: "ibl::startup", model, why, "read model rebuilt from the log")
            }
        }
    }
    if in_memory {
        read_models.push(models.clone());
    }
    if redis_rbac.is_none() {
        read_models.push(rbac.clone());
    }
    let (mut projections, _tasks) = Projections::start(store.clone(), read_models);
    // The audit log follows the log on a projector of its own: its hashing
    // and writing never delay a write's answer (which waits for the read
    // models above); the audit routes wait for it themselves.
    let audit = match role {
        Role::Projector if settings.audit_log == Switch::On => {
            let audit = open_audit_log(settings, &read_dir)?;
            let (progress, _tasks) =
                Projections::start_lingering(store.clone(), vec![audit.log.clone()], AUDIT_LINGER);
            Some((audit, progress))
        }
        _ => None,
    };
    for (name, progress) in followed {
        projections.observe(name, progress);
    }
    projections.catch_up(store.as_ref()).await;
    if let Some((_, progress)) = &audit {
        progress.catch_up(store.as_ref()).await;
    }
    // Start-up facts under their own target, so that they can be logged
    // without the per-request lines (`RUST_LOG=warn,ibl::startup=info`).
    tracing::info!(
        target: "ibl::startup",
        position = projections.position(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "read models caught up with the log"
    );
    snapshots.clone().spawn(SNAPSHOT_EVERY);
    if let Some((audit, _)) = &audit {
        tokio::spawn(sign_checkpoints(
            audit.log.clone(),
            Duration::from_secs(settings.checkpoint_secs),
            settings.bus(),
        ));
    }
    let relay = match (settings.bus(), role) {
        (Some(bus), Role::Projector) => {
            let checkpoint = Checkpoint::open(&read_dir.join(RELAY_CHECKPOINT))
                .map_err(|e| std::io::Error::other(format!("the relay's checkpoint: {e}")))?;
            let checkpoint = Arc::new(checkpoint);
            tracing::info!(
                target: "ibl::startup",
                nats = %bus.url, replicas = bus.replicas,
                position = checkpoint.position(),
                "relaying events to NATS JetStream"
            );
            tokio::spawn(relay::run(store.clone(), bus, checkpoint.clone()));
            Some(checkpoint)
        }
        _ => None,
    };
    if role != Role::Queries || redis_rbac.is_none() {
        tracing::info!(
            target: "ibl::startup",
            grants = rbac.grant_count(),
            bytes = rbac.memory_bytes_estimate(),
            "check index: {} grants, {:.1} MiB",
            rbac.grant_count(),
            rbac.memory_bytes_estimate() as f64 / (1024.0 * 1024.0)
        );
    }
    let keys: Arc<dyn KeyQueries> = match redis_keys {
        Some(redis) if role == Role::Queries => redis,
        _ => models.clone(),
    };
    let read = web::Data::new(ReadState {
        keys,
        models,
        assertions,
        catalog,
        // The projector (and `ibl serve`) judges from the model it keeps,
        // so its guards work while Redis is down.
        access: match redis_rbac {
            Some(redis) if role == Role::Queries => redis,
            _ => rbac.clone(),
        },
        rbac,
        projections,
        min_position_wait: Duration::from_millis(settings.min_position_wait_ms),
        strong_reads: (settings.read_consistency == Consistency::Strong).then(|| store.clone()),
        positions: positions.clone(),
        audit: audit.as_ref().map(|(a, progress)| crate::AuditAccess {
            log: a.log.clone(),
            store: store.clone(),
            progress: progress.clone(),
            past: Default::default(),
        }),
    });
    Ok(ReadSide {
        audit: audit.map(|(a, _)| a),
        store,
        read,
        snapshots,
        relay,
        metrics,
        positions,
        dir,
    })
}

/// A running process.
pub struct Running {
    pub port: u16,
    pub server: Server,
    pub side: ReadSide,
}

impl Running {
    /// Serves until the server stops (SIGTERM, SIGINT), then writes the
    /// snapshots once more; the process exit code.
    pub async fn until_stopped(self, addr: &str) -> i32 {
        tracing::info!(target: "ibl::process", addr = %addr, port = self.port, "serving");
        match self.server.await {
            Ok(()) => {
                self.side.snapshots.save_changed().await;
                tracing::info!(target: "ibl::process", "stopped");
                0
            }
            Err(e) => {
                tracing::error!(target: "ibl::process", error = %e, "server failed");
                1
            }
        }
    }
}

/// Serves `routes` (and the operations routes) on `listener` with the read
/// side's state; `extra` adds what a service's own routes need.
pub fn serve<F>(
    listener: TcpListener,
    settings: &Settings,
    side: ReadSide,
    mut routes: Vec<Route>,
    extra: F,
) -> std::io::Result<Running>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    routes.extend(crate::routes::operations());
    crate::routes::sort(&mut routes);
    let schema = web::Data::new(Schema(crate::routes::openapi(&routes)));
    let table = Arc::new(routes);
    let local = listener.local_addr()?;
    let port = local.port();
    let public_url = match &settings.public_url {
        Some(url) => url.clone(),
        None => {
            if local.ip().is_unspecified() {
                tracing::warn!(
                    target: "ibl::startup",
                    "listening on {local} without --public-url: the URLs the API writes start with http://{local}"
                );
            }
            PublicUrl::of_listener(local)
        }
    };
    tracing::info!(target: "ibl::startup", public_url = public_url.as_str(), "public URL");
    let body_timeout = Duration::from_secs(settings.body_timeout_secs);
    let metrics_data = web::Data::new(MetricsAccess {
        metrics: side.metrics.clone(),
        token: settings.metrics_token.clone(),
        store: side.store.clone(),
        relay: side.relay.clone(),
    });
    let read = side.read.clone();
    let mut server =
        actix_web::HttpServer::new(move || {
            let extra = extra.clone();
            let table = table.clone();
            App::new()
                .app_data(read.clone())
                .app_data(public_url.clone())
                .app_data(BodyTimeout(body_timeout))
                .app_data(metrics_data.clone())
                .app_data(schema.clone())
                .app_data(web::PathConfig::default().error_handler(|e, _| {
                    ApiError::BadRequest(format!("Invalid path: {e}")).into()
                }))
                .configure(extra)
                .configure(move |cfg| crate::routes::configure(cfg, &table))
                .default_service(web::to(not_found))
                .wrap(from_fn(json_errors))
                .wrap(from_fn(request_context))
        })
        // A request head (line and headers) must arrive within this, or
        // actix answers 408 and closes; bodies are timed by `BodyTimeout`.
        .client_request_timeout(HEAD_TIMEOUT.min(body_timeout))
        // A connection closed with a body unread lingers this long, so
        // the client reads the answer (408, 413, 401...) rather than a reset.
        .client_disconnect_timeout(LINGER)
        .listen(listener)?;
    if let Some(n) = settings.workers {
        server = server.workers(n);
    }
    Ok(Running {
        port,
        server: server.run(),
        side,
    })
}

/// The longest a request head may take to arrive.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection closed with a body unread is drained first.
const LINGER: Duration = Duration::from_secs(1);

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found())
}

/// Gives every error answer that reaches the application a JSON body in the
/// error table's shape: one raised by actix around the routes, an error
/// that a middleware returned instead of an answer, or a bare status.
/// Answers already JSON pass untouched (success answers are not looked at).
/// Errors of actix-http's connection dispatcher (a malformed request line
/// or header, a head over 128 KiB or with more than 96 headers, a URI over
/// 64 KiB, a head that does not arrive in time) are answered before any
/// service runs, with an empty body: there is no hook for them.
async fn json_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // The request cannot be kept for the error case: a clone of it would
    // stop the router from writing the path's parameters into it. An error
    // therefore stays an error, carrying the JSON answer to give.
    let res = match next.call(req).await {
        Ok(res) => res,
        Err(e) => {
            let answer = e.error_response();
            return match as_json(&answer) {
                Some(json) => Err(InternalError::from_response(e, json).into()),
                None => Err(e),
            };
        }
    };
    match as_json(res.response()) {
        None => Ok(res.map_into_left_body()),
        Some(json) => {
            let (request, _) = res.into_parts();
            Ok(ServiceResponse::new(request, json).map_into_right_body())
        }
    }
}

/// The JSON version of an error answer whose body is not JSON (its status
/// and headers kept, its body replaced by the error table's); `None` for
/// any other answer.
fn as_json<B>(res: &HttpResponse<B>) -> Option<HttpResponse> {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_json(res.headers().get(header::CONTENT_TYPE))
    {
        return None;
    }
    let mut json = HttpResponse::build(status);
    for (name, value) in res.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.append_header((name.clone(), value.clone()));
        }
    }
    if res.head().connection_type() == ConnectionType::Close {
        json.force_close();
    }
    Some(json.json(status_body(status)))
}

/// Serves `/a/b/` and `/a//b` as `/a/b` (routes are registered without
/// their trailing slash); the query is kept. Most paths need no change and
/// cost one scan.
fn normalize_path(req: &mut ServiceRequest) {
    let path = req.path();
    let trailing = path.len() > 1 && path.ends_with('/');
    if !trailing && !path.contains("//") {
        return;
    }
    let mut normal = String::with_capacity(path.len() + 1);
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        normal.push('/');
        normal.push_str(segment);
    }
    if normal.is_empty() {
        normal.push('/');
    }
    let head = req.head_mut();
    if let Some(query) = head.uri.query() {
        normal.push('?');
        normal.push_str(query);
    }
    let mut parts = head.uri.clone().into_parts();
    let Ok(path_and_query) = PathAndQuery::from_maybe_shared(normal) else {
        return;
    };
    parts.path_and_query = Some(path_and_query);
    if let Ok(uri) = Uri::from_parts(parts) {
        req.match_info_mut().get_mut().update(&uri);
        req.head_mut().uri = uri;
    }
}

/// Gives every request the server's own id (answered in `X-Request-Id`;
/// a client's `X-Request-Id` is kept beside it, never instead of it), a
/// tracing span carrying both, and one log line when it is answered;
/// normalises its path first.
async fn request_context(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    normalize_path(&mut req);
    let client = req
        .headers()
        .get("X-Request-Id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    let id = uuid::Uuid::new_v4().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    if let Some(client) = &client {
        req.extensions_mut().insert(ClientRequestId(client.clone()));
    }
    let client = client.unwrap_or_default();
    let span = tracing::info_span!("request", request_id = %id, client_request_id = %client, method = %req.method(), path = %req.path());
    let started = std::time::Instant::now();
    let metrics = req.app_data::<web::Data<MetricsAccess>>().cloned();
    let method = req.method().clone();
    let mut res = next.call(req).instrument(span.clone()).await?;
    let status = res.status().as_u16();
    if let Some(m) = metrics {
        let route = res.request().match_pattern();
        let route = route.as_deref().unwrap_or("unmatched");
        m.metrics
            .request(method.as_str(), route, status, started.elapsed());
    }
    span.in_scope(|| {
        tracing::info!(
            status,
            micros = started.elapsed().as_micros() as u64,
            "answered"
        );
    });
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&id) {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            value,
        );
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use actix_web::{error, test as actix_test};
    use serde_json::Value;

    use super::*;

    /// A middleware that fails instead of answering, on one path.
    async fn refuses(
        req: ServiceRequest,
        next: Next<impl MessageBody>,
    ) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
        if req.path() == "/refused" {
            return Err(error::ErrorPayloadTooLarge("too big, in words"));
        }
        next.call(req).await
    }

    async fn typed(query: web::Query<HashMap<String, u32>>) -> HttpResponse {
        HttpResponse::Ok().json(query.into_inner())
    }

    #[actix_web::test]
    async fn every_error_answer_that_reaches_the_app_is_json() {
        let app = actix_test::init_service(
            App::new()
                .route(
                    "/bare",
                    web::get().to(|| async { HttpResponse::BadRequest().finish() }),
                )
                .route(
                    "/text",
                    web::get().to(|| async {
                        Err::<HttpResponse, _>(error::ErrorConflict("plain words"))
                    }),
                )
                .route(
                    "/limited",
                    web::get().to(|| async {
                        HttpResponse::TooManyRequests()
                            .insert_header(("Retry-After", "3"))
                            .finish()
                    }),
                )
                .route(
                    "/ours",
                    web::get().to(|| async {
                        Err::<HttpResponse, _>(ApiError::Gone("Gone for good.".into()))
                    }),
                )
                .route(
                    "/fine",
                    web::get().to(|| async { HttpResponse::Ok().body("plain") }),
                )
                .route("/typed", web::get().to(typed))
                .route(
                    "/unconfigured",
                    web::get().to(|_: web::Data<u8>| async { "" }),
                )
                .wrap(from_fn(refuses))
                .wrap(from_fn(json_errors)),
        )
        .await;
        let cases = [
            ("/bare", 400, "bad_request"),
            ("/text", 409, "conflict"),
            ("/limited", 429, "too_many_requests"),
            ("/refused", 413, "payload_too_large"),
            ("/typed?n=x", 400, "bad_request"),
            ("/unconfigured", 500, "internal"),
        ];
        for (path, status, code) in cases {
            // An error the app returns is answered as actix-http does it.
            let res = match actix_test::try_call_service(
                &app,
                actix_test::TestRequest::get().uri(path).to_request(),
            )
            .await
            {
                Ok(res) => res.into_parts().1.map_into_boxed_body(),
                Err(e) => e.error_response(),
            };
            assert_eq!(res.status().as_u16(), status, "{path}");
            assert!(
                is_json(res.headers().get(header::CONTENT_TYPE)),
                "{path}: {:?}",
                res.headers()
            );
            let retry = res.headers().get("Retry-After").cloned();
            let bytes = actix_web::body::to_bytes(res.into_body()).await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body["code"], code, "{path}: {body}");
            assert!(
                body["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{path}: {body}"
            );
            if path == "/limited" {
                assert_eq!(retry.as_ref().map(|v| v.to_str().unwrap()), Some("3"));
            }
        }
        // Our own errors and success answers pass untouched.
        let res = actix_test::call_service(
            &app,
            actix_test::TestRequest::get().uri("/ours").to_request(),
        )
        .await;
        let body: Value = actix_test::read_body_json(res).await;
        assert_eq!(
            body,
            serde_json::json!({"detail": "Gone for good.", "code": "gone"})
        );
        let res = actix_test::call_service(
            &app,
            actix_test::TestRequest::get().uri("/fine").to_request(),
        )
        .await;
        assert_eq!(actix_test::read_body(res).await, "plain");
    }
}
