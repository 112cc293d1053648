//! The relay: every event of the log, in order, published on NATS
//! JetStream for the services that react to them.
//!
//! Stream `IBL_EVENTS` (created if missing, file storage) takes subjects
//! `ibl.<platform>.<aggregate>.<event>` in lower case with `_` between
//! words (`ibl.acme.assertion.issued`, `ibl.acme.policy.users_added`;
//! `_` stands for the platform of an event no platform wrote). The payload
//! is the event's JSON; headers: `Nats-Msg-Id` (the event id: JetStream
//! drops a duplicate within its window), the CloudEvents NATS binding in
//! binary mode (`ce-specversion`, `ce-id`, `ce-source`, `ce-type`,
//! `ce-time`, `ce-subject`), and `Ibl-Stream`, `Ibl-Revision`,
//! `Ibl-Position`, `Ibl-Correlation-Id`.
//!
//! NATS is never the source of truth: the relay's checkpoint (a file) moves
//! only after JetStream acknowledged every event up to it, and a relay that
//! restarts publishes again from there (duplicates are dropped by their
//! id, and subscribers dedupe by event id too).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream::StorageType};
use async_nats::HeaderMap;
use ibl_events::{EventStore, Position, RecordedEvent, Subscription};

/// The JetStream stream the relay publishes to.
pub const STREAM: &str = "IBL_EVENTS";

/// Events published before their acknowledgements are awaited.
const WINDOW: usize = 256;

/// `HelloWorld` -> `hello_world`.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out
}

/// The subject of `event`: `ibl.<platform>.<aggregate>.<event>` (the
/// platform of the key that wrote it, else the one the event or its
/// platform stream names, else `_`). The
/// aggregate is the stream's kind (`assertion-…` → `assertion`); the event
/// is its type less the aggregate's name when it starts with it
/// (`AssertionIssued` → `issued`).
pub fn subject(event: &RecordedEvent) -> String {
    let platform = event
        .platform()
        .filter(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .unwrap_or("_");
    let kind = event
        .stream
        .split_once('-')
        .map_or(event.stream.as_str(), |(k, _)| k);
    let aggregate = snake(kind);
    let plain: String = aggregate.chars().filter(|c| *c != '_').collect();
    let ty = &event.event_type;
    let name = if ty.len() > plain.len() && ty[..plain.len()].eq_ignore_ascii_case(&plain) {
        &ty[plain.len()..]
    } else {
        ty.as_str()
    };
    format!("ibl.{platform}.{aggregate}.{}", snake(name))
}

/// The headers of `event`'s message.
pub fn headers(event: &RecordedEvent, subject: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let id = event.event_id.to_string();
    h.insert("Nats-Msg-Id", id.as_str());
    h.insert("ce-specversion", "1.0");
    h.insert("ce-id", id.as_str());
    h.insert("ce-source", "urn:ibl:data-manager");
    h.insert(
        "ce-type",
        format!(
            "ai.ibl.{}",
            subject.splitn(3, '.').nth(2).unwrap_or_default()
        )
        .as_str(),
    );
    h.insert("ce-time", event.recorded_at.to_rfc3339().as_str());
    h.insert("ce-subject", event.stream.as_str());
    h.insert("Ibl-Stream", event.stream.as_str());
    h.insert("Ibl-Revision", event.revision.to_string().as_str());
    h.insert("Ibl-Position", event.position.to_string().as_str());
    h.insert("Ibl-Correlation-Id", event.metadata.correlation_id.as_str());
    h
}

/// Where the relay stands: the position up to which JetStream acknowledged
/// every event, kept in a file.
pub struct Checkpoint {
    path: PathBuf,
    position: AtomicU64,
    /// Why the relay is not publishing, while it is not (`None`: it is).
    trouble: std::sync::Mutex<Option<String>>,
}

impl Checkpoint {
    /// Reads the file (0 when there is none).
    pub fn open(path: &Path) -> Result<Self, String> {
        let position = match std::fs::read_to_string(path) {
            Ok(text) => text
                .trim()
                .parse()
                .map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(Self {
            path: path.to_owned(),
            position: AtomicU64::new(position),
            trouble: std::sync::Mutex::new(Some("not connected yet".into())),
        })
    }

    /// Why the relay is not publishing, if it is not.
    pub fn trouble(&self) -> Option<String> {
        self.trouble
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_trouble(&self, trouble: Option<String>) {
        *self.trouble.lock().unwrap_or_else(|p| p.into_inner()) = trouble;
    }

    pub fn position(&self) -> Position {
        self.position.load(Ordering::Acquire)
    }

    /// Moves to `position`, written atomically (temp file, sync, rename).
    pub fn store(&self, position: Position) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, format!("{position}\n"))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        self.position.store(position, Ordering::Release);
        Ok(())
    }
}

/// Where the events go: the NATS servers (`nats://a:4222`, or several,
/// comma-separated, of one cluster) and the replicas of the stream when it
/// has to be created (3 on a cluster: an acknowledged message is then on
/// two servers at least).
#[derive(Debug, Clone)]
pub struct Bus {
    pub url: String,
    pub replicas: usize,
}

/// Connects to the bus and makes sure the stream exists.
pub async fn connect(bus: &Bus) -> Result<jetstream::Context, String> {
    let url = &bus.url;
    let servers = url
        .split(',')
        .map(|one| one.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("NATS_URL {url:?}: {e}"))?;
    let client = async_nats::connect(servers)
        .await
        .map_err(|e| format!("connecting to NATS at {url}: {e}"))?;
    let js = jetstream::new(client);
    js.get_or_create_stream(jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec!["ibl.>".into()],
        storage: StorageType::File,
        num_replicas: bus.replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("the JetStream stream {STREAM}: {e}"))?;
    Ok(js)
}

/// Publishes the events after the checkpoint, following the log, until the
/// task is dropped; reconnects with a growing back-off after a failure.
pub async fn run(store: Arc<dyn EventStore>, bus: Bus, checkpoint: Arc<Checkpoint>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match relay(&store, &bus, &checkpoint).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, position = checkpoint.position(), "relay stopped; retrying");
                checkpoint.set_trouble(Some(error));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn relay(
    store: &Arc<dyn EventStore>,
    bus: &Bus,
    checkpoint: &Checkpoint,
) -> Result<(), String> {
    let js = connect(bus).await?;
    checkpoint.set_trouble(None);
    let mut sub = Subscription::new(store.clone(), checkpoint.position());
    loop {
        let batch = sub.next_batch(WINDOW).await.map_err(|e| e.to_string())?;
        if let Some(position) = publish(&js, &batch).await? {
            checkpoint
                .store(position)
                .map_err(|e| format!("the relay's checkpoint: {e}"))?;
        }
    }
}

/// Publishes `batch` and waits until JetStream acknowledged all of it;
/// answers the last position.
async fn publish(
    js: &jetstream::Context,
    batch: &[RecordedEvent],
) -> Result<Option<Position>, String> {
    let mut acks = Vec::with_capacity(batch.len());
    for event in batch {
        let subject = subject(event);
        let headers = headers(event, &subject);
        let payload = serde_json::to_vec(&event.payload).map_err(|e| e.to_string())?;
        let ack = js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(|e| format!("publishing position {}: {e}", event.position))?;
        acks.push((event.position, ack));
    }
    let mut last = None;
    for (position, ack) in acks {
        ack.await
            .map_err(|e| format!("JetStream did not acknowledge position {position}: {e}"))?;
        last = Some(position);
    }
    Ok(last)
}

/// The subject of the audit log's signed checkpoints.
pub const CHECKPOINT_SUBJECT: &str = "ibl.audit.checkpoint";

/// Publishes a signed checkpoint of the audit log (JSON: `origin`, `size`,
/// `root` in base64, `note`) to [`CHECKPOINT_SUBJECT`] and waits for
/// JetStream's acknowledgement; `js` is the connection, made when `None`.
/// Its message id names the origin and size, so a checkpoint published
/// twice is kept once.
pub async fn publish_checkpoint(
    js: &mut Option<jetstream::Context>,
    bus: &Bus,
    origin: &str,
    checkpoint: &crate::audit_log::SignedCheckpoint,
) -> Result<(), String> {
    use base64::Engine;
    let context = match js {
        Some(context) => context,
        None => js.insert(connect(bus).await?),
    };
    let body = serde_json::json!({
        "origin": origin,
        "size": checkpoint.size,
        "root": base64::engine::general_purpose::STANDARD.encode(checkpoint.root),
        "note": checkpoint.note,
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        "Nats-Msg-Id",
        format!("checkpoint:{origin}:{}", checkpoint.size).as_str(),
    );
    headers.insert("Content-Type", "application/json");
    context
        .publish_with_headers(CHECKPOINT_SUBJECT, headers, body.to_string().into())
        .await
        .map_err(|e| format!("publishing the checkpoint of size {}: {e}", checkpoint.size))?
        .await
        .map_err(|e| {
            format!(
                "JetStream did not acknowledge the checkpoint of size {}: {e}",
                checkpoint.size
            )
        })?;
    Ok(())
}

/// Publishes every event after `from` up to the store's head as it is now
/// (an operator republishing history: JetStream drops those still within
/// its duplicate window, subscribers dedupe the rest by event id). Answers
/// how many were published and the last position.
pub async fn republish(
    store: &dyn EventStore,
    bus: &Bus,
    from: Position,
) -> Result<(u64, Position), String> {
    let js = connect(bus).await?;
    let head = *store.head().borrow();
    let (mut count, mut after) = (0, from);
    while after < head {
        let batch = store
            .read_all(after, WINDOW)
            .await
            .map_err(|e| e.to_string())?;
        let batch: Vec<RecordedEvent> = batch.into_iter().filter(|e| e.position <= head).collect();
        let Some(last) = publish(&js, &batch).await? else {
            break;
        };
        count += batch.len() as u64;
        after = last;
    }
    Ok((count, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ibl_events::{Actor, Metadata};

    fn event(
        stream: &str,
        ty: &str,
        platform: Option<&str>,
        payload: serde_json::Value,
    ) -> RecordedEvent {
        RecordedEvent {
            event_id: uuid::Uuid::new_v4(),
            stream: stream.into(),
            revision: 0,
            position: 7,
            event_type: ty.into(),
            schema_version: 1,
            recorded_at: chrono::Utc::now(),
            payload: payload.into(),
            metadata: Metadata {
                actor: Actor {
                    platform: platform.map(str::to_owned),
                    ..Actor::default()
                },
                correlation_id: "req-1".into(),
                ..Metadata::default()
            },
        }
    }

    #[test]
    fn subjects_name_platform_aggregate_and_event_in_snake_case() {
        let cases = [
            (
                event(
                    "assertion-x",
                    "AssertionIssued",
                    Some("acme"),
                    serde_json::json!({}),
                ),
                "ibl.acme.assertion.issued",
            ),
            (
                event(
                    "policy-3",
                    "PolicyUsersAdded",
                    Some("acme"),
                    serde_json::json!({}),
                ),
                "ibl.acme.policy.users_added",
            ),
            (
                event(
                    "apikey-acme/ci",
                    "ApiKeyCreated",
                    Some("acme"),
                    serde_json::json!({}),
                ),
                "ibl.acme.apikey.created",
            ),
            (
                event(
                    "platform-beta",
                    "PlatformCreated",
                    None,
                    serde_json::json!({"key": "beta"}),
                ),
                "ibl.beta.platform.created",
            ),
            (
                event(
                    "credential-c",
                    "CredentialCreated",
                    None,
                    serde_json::json!({"platform": "beta"}),
                ),
                "ibl.beta.credential.created",
            ),
            (
                event(
                    "ids-user",
                    "IdBlockReserved",
                    Some("a.b"),
                    serde_json::json!({}),
                ),
                "ibl._.ids.id_block_reserved",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(subject(&e), want, "{} {}", e.stream, e.event_type);
        }
    }

    #[test]
    fn headers_carry_the_message_id_cloudevents_and_the_log_coordinates() {
        let e = event(
            "assertion-x",
            "AssertionIssued",
            Some("acme"),
            serde_json::json!({}),
        );
        let h = headers(&e, &subject(&e));
        let get = |k: &str| h.get(k).map(|v| v.as_str().to_owned());
        let id = e.event_id.to_string();
        assert_eq!(get("Nats-Msg-Id"), Some(id.clone()));
        assert_eq!(get("ce-id"), Some(id));
        assert_eq!(get("ce-specversion").as_deref(), Some("1.0"));
        assert_eq!(get("ce-type").as_deref(), Some("ai.ibl.assertion.issued"));
        assert_eq!(get("ce-subject").as_deref(), Some("assertion-x"));
        assert_eq!(get("Ibl-Position").as_deref(), Some("7"));
        assert_eq!(get("Ibl-Revision").as_deref(), Some("0"));
        assert_eq!(get("Ibl-Correlation-Id").as_deref(), Some("req-1"));
    }

    #[test]
    fn a_checkpoint_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relay.position");
        let c = Checkpoint::open(&path).expect("open");
        assert_eq!(c.position(), 0);
        c.store(42).expect("store");
        assert_eq!(Checkpoint::open(&path).expect("reopen").position(), 42);
    }
}
