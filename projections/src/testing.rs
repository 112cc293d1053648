//! Test helpers shared by the models' tests: a log of recorded events and
//! a small sample of credentials and assertions.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ibl_events::credentials::{AssertionEvent, CredentialEvent, CredentialFields, Recipient};
use ibl_events::{Actor, DomainEvent, IdempotencyTag, Metadata, RecordedEvent};

use redis::{Commands, RedisResult};

use crate::assertions::AssertionFilter;

pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid instant")
}

/// A log of recorded events, positions and revisions assigned in order.
#[derive(Default)]
pub(crate) struct Log {
    pub(crate) events: Vec<RecordedEvent>,
}

impl Log {
    /// Appends `event` to `stream` as the store would record it, by acme.
    pub(crate) fn push<E: DomainEvent>(
        &mut self,
        stream: &str,
        event: E,
        idempotency: Option<&str>,
    ) {
        let metadata = Metadata {
            actor: Actor {
                platform: Some("acme".into()),
                ..Actor::default()
            },
            idempotency: idempotency.map(|k| IdempotencyTag {
                key: k.into(),
                request_hash: "h".into(),
            }),
            ..Metadata::default()
        };
        self.push_with(stream, event, metadata);
    }

    /// Appends `event` to `stream` with these metadata.
    pub(crate) fn push_with<E: DomainEvent>(&mut self, stream: &str, event: E, metadata: Metadata) {
        let revision = self.events.iter().filter(|e| e.stream == stream).count() as u64;
        let data = event.to_data(uuid::Uuid::new_v4(), metadata);
        self.events.push(RecordedEvent {
            event_id: data.event_id,
            stream: stream.into(),
            revision,
            position: self.events.len() as u64 + 1,
            event_type: data.event_type,
            schema_version: data.schema_version,
            recorded_at: at(0),
            payload: data.payload.into(),
            metadata: data.metadata,
        });
    }
}

pub(crate) fn credential(name: &str, description: &str, course: Option<&str>) -> CredentialFields {
    CredentialFields {
        name: name.into(),
        description: description.into(),
        course: course.map(str::to_owned),
        ..CredentialFields::default()
    }
}

pub(crate) fn issued(
    id: &str,
    credential: &str,
    email: &str,
    expires: Option<DateTime<Utc>>,
) -> AssertionEvent {
    AssertionEvent::AssertionIssued {
        platform: "acme".into(),
        entity_id: id.into(),
        credential_id: credential.into(),
        issuer_id: None,
        recipient: Recipient {
            email: email.into(),
            ..Recipient::default()
        },
        issued_on: at(0),
        expires,
        narrative: String::new(),
        metadata: serde_json::json!({}),
        evidence: Vec::new(),
    }
}

pub(crate) fn sample() -> Log {
    let mut log = Log::default();
    for (id, name, desc, course) in [
        ("c1", "Rust 101", "Ownership", Some("course-1")),
        ("c2", "Go basics", "Goroutines and RUST envy", None),
        ("c3", "Python", "Snakes", Some("course-1")),
    ] {
        log.push(
            &format!("credential-{id}"),
            CredentialEvent::CredentialCreated {
                platform: "acme".into(),
                entity_id: id.into(),
                fields: credential(name, desc, course),
                created_at: at(1),
            },
            Some(&format!("key-{id}")),
        );
    }
    log.push(
        "credential-c3",
        CredentialEvent::CredentialDeleted { deleted_at: at(2) },
        None,
    );
    log.push(
        "assertion-a1",
        issued("a1", "c1", "bob@example.com", None),
        None,
    );
    log.push(
        "assertion-a2",
        issued("a2", "c1", "eve@example.com", Some(at(5))),
        None,
    );
    log.push(
        "assertion-a3",
        issued("a3", "c2", "bob@example.com", None),
        None,
    );
    log.push(
        "assertion-a3",
        AssertionEvent::AssertionRevoked {
            reason: "mistake".into(),
            revoked_at: at(3),
        },
        None,
    );
    log
}

pub(crate) fn filter(include_revoked: bool, include_expired: bool) -> AssertionFilter {
    AssertionFilter {
        credential: None,
        course: None,
        include_revoked,
        include_expired,
        now: at(10),
    }
}

/// A `redis-server` of a test's own on a free port (no persistence),
/// killed on drop.
pub(crate) struct RedisServer {
    child: Child,
    pub(crate) port: u16,
}

impl RedisServer {
    pub(crate) fn start() -> Self {
        for _ in 0..20 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if let Some(server) = Self::start_on(port) {
                return server;
            }
        }
        panic!("redis-server did not start on any of 20 free ports");
    }

    /// The server on `port`, or `None` when it cannot listen there.
    pub(crate) fn start_on(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed (not on PATH): the Redis adapter's tests \
                 start one of their own (Debian: apt-get install redis-server)"
            ),
            Err(e) => panic!("starting redis-server: {e}"),
        };
        let mut server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(server.child.try_wait(), Ok(None)) {
                return None; // it exited: the port was taken
            }
            // Ours, not another test's server that took the port first.
            let ours = format!("process_id:{}\r", server.child.id());
            let info = redis::Client::open(server.url(0))
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("INFO").arg("server").query::<String>(&mut c));
            match info {
                Ok(info) if info.contains(&ours) => return Some(server),
                Ok(_) => return None,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        None
    }

    pub(crate) fn url(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    pub(crate) fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url(0))
            .and_then(|c| c.get_connection())
            .expect("connect")
    }

    /// Every key of database 0 (SCAN: the tests only).
    pub(crate) fn keys(&self) -> Vec<String> {
        let mut con = self.connection();
        let mut keys: Vec<String> = con
            .scan::<String>()
            .expect("scan")
            .collect::<RedisResult<_>>()
            .expect("scan");
        keys.sort();
        keys
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster of three primaries of the test's own, on free
/// ports, killed on drop.
pub(crate) struct RedisCluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

impl RedisCluster {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<u16> = (0..3)
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port()
            })
            .collect();
        let nodes = ports
            .iter()
            .map(|port| {
                Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .args(["--cluster-enabled", "yes"])
                    .arg("--cluster-config-file")
                    .arg(dir.path().join(format!("nodes-{port}.conf")))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server runs")
            })
            .collect();
        let cluster = RedisCluster {
            nodes,
            ports,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in &cluster.ports {
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(Instant::now() < deadline, "a node did not listen");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stdout)
        );
        for port in &cluster.ports {
            loop {
                let info: String = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                    .and_then(|c| c.get_connection())
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query(&mut c))
                    .unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster is not ok: {info}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    pub(crate) fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How many keys each node holds.
    pub(crate) fn keys_per_node(&self) -> Vec<u64> {
        self.ports
            .iter()
            .map(|port| {
                let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                    .and_then(|c| c.get_connection())
                    .expect("connect");
                redis::cmd("DBSIZE").query(&mut con).expect("DBSIZE")
            })
            .collect()
    }

    /// Deletes one key, wherever it lives.
    pub(crate) fn delete(&self, key: &str) {
        let mut con = redis::cluster::ClusterClient::new(self.url().split(','))
            .and_then(|c| c.get_connection())
            .expect("connect");
        redis::cmd("DEL")
            .arg(key)
            .query::<()>(&mut con)
            .expect("DEL");
    }
}
