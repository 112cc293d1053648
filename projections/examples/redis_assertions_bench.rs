//! How fast the Redis adapter of the assertions read model fills and
//! answers lists: COUNT assertions of one platform (10 credentials, 5 of
//! them in one course) applied through `apply` in batches of 2,048 events,
//! as the projector reads them; one in eleven is revoked, and EXPIRING percent
//! of them expire, half of those already expired, spread over the whole
//! log (every expiry block mixed: the expensive case of the default
//! filter). Then the latency of list pages (first, middle, last) of the
//! platform, of one credential and of the course, with the API's default
//! filter (revoked and expired left out) and with everything included;
//! the figures are p50 / p99 over ROUNDS sequential requests.
//!
//! Usage: cargo run --release -p ibl-projections --example redis_assertions_bench [COUNT [EXPIRING [ROUNDS]]]
//!
//! It starts a `redis-server` of its own on a free port (no persistence);
//! with REDIS_URL set it uses that server instead, whose database must be
//! empty.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ibl_events::credentials::{AssertionEvent, CredentialEvent, CredentialFields, Recipient};
use ibl_events::{DomainEvent, Metadata, RecordedEvent};
use ibl_projections::assertions::{AssertionFilter, AssertionQueries};
use ibl_projections::redis_assertions::RedisAssertions;
use ibl_projections::ReadModel;

const PLATFORM: &str = "bench";
const CREDENTIALS: u64 = 10;

fn recorded<E: DomainEvent>(position: u64, stream: String, event: E) -> RecordedEvent {
    let data = event.to_data(uuid::Uuid::new_v4(), Metadata::default());
    RecordedEvent {
        event_id: data.event_id,
        stream,
        revision: 0,
        position,
        event_type: data.event_type,
        schema_version: data.schema_version,
        recorded_at: Utc::now(),
        payload: data.payload.into(),
        metadata: data.metadata,
    }
}

/// The log: the credentials, then `count` issues (and the revocations).
fn log(count: u64, expiring: u64, now: DateTime<Utc>) -> (Vec<RecordedEvent>, Vec<String>) {
    let mut events = Vec::new();
    let mut position = 0;
    let mut next = || {
        position += 1;
        position
    };
    for c in 0..CREDENTIALS {
        let event = CredentialEvent::CredentialCreated {
            platform: PLATFORM.into(),
            entity_id: format!("credential-{c}"),
            fields: CredentialFields {
                name: format!("credential {c}"),
                course: (c < 5).then(|| "course-a".to_owned()),
                ..CredentialFields::default()
            },
            created_at: now,
        };
        events.push(recorded(
            next(),
            format!("credential-credential-{c}"),
            event,
        ));
    }
    let mut ids = Vec::new();
    for n in 0..count {
        // Time-ordered, as the service makes them.
        let id = uuid::Uuid::now_v7().to_string();
        // Spread evenly: n * 100 / count crosses each percent once.
        let percent = (n * 7919) % 100;
        let expires = if percent < expiring / 2 {
            Some(now - chrono::Duration::days(1))
        } else if percent < expiring {
            Some(now + chrono::Duration::days(365))
        } else {
            None
        };
        let event = AssertionEvent::AssertionIssued {
            platform: PLATFORM.into(),
            entity_id: id.clone(),
            credential_id: format!("credential-{}", n % CREDENTIALS),
            issuer_id: None,
            recipient: Recipient {
                email: format!("learner-{n}@example.com"),
                ..Recipient::default()
            },
            issued_on: now,
            expires,
            narrative: String::new(),
            metadata: serde_json::json!({}),
            evidence: Vec::new(),
        };
        events.push(recorded(next(), format!("assertion-{id}"), event));
        if n % 11 == 3 {
            let event = AssertionEvent::AssertionRevoked {
                reason: "bench".into(),
                revoked_at: now,
            };
            events.push(recorded(next(), format!("assertion-{id}"), event));
        }
        ids.push(id);
    }
    (events, ids)
}

/// A `redis-server` of the bench's own, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server() -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (install it, or set REDIS_URL)");
    let server = Server(child);
    let url = format!("redis://127.0.0.1:{port}/0");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ping = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        if ping.is_ok() {
            return (server, url);
        }
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let arg = |n: usize, default: u64| {
        std::env::args()
            .nth(n)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let (count, expiring, rounds) = (arg(1, 100_000), arg(2, 20), arg(3, 300));
    let (_server, url) = match std::env::var("REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let (server, url) = start_server();
            (Some(server), url)
        }
    };
    let mut con = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .expect("connect");
    let size: u64 = redis::cmd("DBSIZE").query(&mut con).expect("DBSIZE");
    assert_eq!(size, 0, "the database at {url} must be empty");

    let model = RedisAssertions::open(&url).await.expect("open");
    let now = Utc::now();
    let (events, ids) = log(count, expiring, now);
    let start = Instant::now();
    for batch in events.chunks(2048) {
        model.apply(batch);
    }
    let secs = start.elapsed().as_secs_f64();
    let memory: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut con)
        .expect("INFO");
    let used = memory
        .lines()
        .find_map(|l| l.strip_prefix("used_memory_human:"))
        .unwrap_or("?");
    println!(
        "filled {count} assertions ({} events, {expiring}% expiring, half of those expired) \
         in {secs:.1} s = {:.0} events/s; Redis uses {used}",
        events.len(),
        events.len() as f64 / secs,
    );

    let scopes = [
        ("platform", None, None),
        ("credential", Some("credential-3"), None),
        ("course", None, Some("course-a")),
    ];
    println!("page size, scope, filter, page: p50 / p99 (ms), of {rounds} requests");
    for size in [10usize, 100] {
        for (label, credential, course) in scopes {
            for (filter_label, include) in [("default", false), ("all", true)] {
                let filter = AssertionFilter {
                    credential: credential.map(str::to_owned),
                    course: course.map(str::to_owned),
                    include_revoked: include,
                    include_expired: include,
                    now,
                };
                let total = model
                    .assertions(PLATFORM, &filter, 0, 1)
                    .await
                    .expect("read")
                    .count;
                let pages = total.div_ceil(size).max(1);
                let mut line = format!("{size:>3} {label:<10} {filter_label:<7} ({total:>6})");
                for (page_label, page) in [("first", 0), ("middle", pages / 2), ("last", pages - 1)]
                {
                    let mut times = Vec::with_capacity(rounds as usize);
                    for _ in 0..rounds {
                        let t = Instant::now();
                        let p = model
                            .assertions(PLATFORM, &filter, page * size, size)
                            .await
                            .expect("read");
                        times.push(t.elapsed());
                        assert!(!p.items.is_empty() || total == 0);
                    }
                    times.sort();
                    line += &format!(
                        "  {page_label} {:.2} / {:.2}",
                        percentile(&times, 0.5),
                        percentile(&times, 0.99)
                    );
                }
                println!("{line}");
            }
        }
    }

    let mut times = Vec::new();
    for i in 0..rounds as usize {
        let id = &ids[(i * 7919) % ids.len()];
        let t = Instant::now();
        model.assertion(id).await.expect("read").expect("found");
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "assertion(id): {:.2} / {:.2}",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    // A course change moves the credential's assertions between course
    // lists, in one script.
    let moved = model
        .assertions(
            PLATFORM,
            &AssertionFilter {
                credential: Some("credential-3".into()),
                course: None,
                include_revoked: true,
                include_expired: true,
                now,
            },
            0,
            0,
        )
        .await
        .expect("read")
        .count;
    let update = CredentialEvent::CredentialUpdated {
        fields: CredentialFields {
            name: "credential 3".into(),
            course: Some("course-b".into()),
            ..CredentialFields::default()
        },
        updated_at: now,
    };
    let last = events.last().map_or(0, |e| e.position);
    let t = Instant::now();
    model.apply(&[recorded(last + 1, "credential-credential-3".into(), update)]);
    println!(
        "a course change of a credential with {moved} assertions: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let recipients: Vec<Recipient> = (0..100)
        .map(|n| Recipient {
            email: format!("learner-{}@example.com", n * 10 + 3),
            ..Recipient::default()
        })
        .collect();
    let mut times = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        model
            .holders_among("credential-3", PLATFORM, now, &recipients, &HashSet::new())
            .await
            .expect("read");
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "holders_among (100 recipients): {:.2} / {:.2}",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
}
