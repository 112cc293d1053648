//! Fills a data folder with `N` issued assertions of one credential, through
//! the normal append path, for the start-up benchmark:
//! `cargo run --release --example fill -- DIR N PLATFORM CREDENTIAL_ID`.

use std::sync::Arc;

use chrono::Utc;
use ibl_events::credentials::{assertion_stream, AssertionEvent, Recipient};
use ibl_events::sqlite::SqliteStore;
use ibl_events::{Actor, DomainEvent, EventStore, ExpectedRevision, Metadata};
use tokio::task::JoinSet;

const IN_FLIGHT: usize = 1024;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: fill DIR N PLATFORM CREDENTIAL_ID");
        std::process::exit(2);
    }
    let n: usize = args[2].parse().expect("N is a number");
    let (platform, credential) = (args[3].clone(), args[4].clone());
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(std::path::Path::new(&args[1])).expect("open the store"));
    let started = std::time::Instant::now();
    let mut tasks: JoinSet<Result<(), ibl_events::StoreError>> = JoinSet::new();
    for i in 0..n {
        if tasks.len() >= IN_FLIGHT {
            tasks
                .join_next()
                .await
                .expect("a task")
                .expect("join")
                .expect("append");
        }
        let store = store.clone();
        let (platform, credential) = (platform.clone(), credential.clone());
        tasks.spawn(async move {
            let id = uuid::Uuid::new_v4().to_string();
            let event = AssertionEvent::AssertionIssued {
                platform: platform.clone(),
                entity_id: id.clone(),
                credential_id: credential,
                recipient: Recipient {
                    email: format!("learner-{i}@example.com"),
                    username: String::new(),
                    name: format!("Learner {i}"),
                },
                issued_on: Utc::now(),
                expires: None,
                narrative: String::new(),
                metadata: serde_json::json!({}),
                evidence: Vec::new(),
            };
            let metadata = Metadata {
                actor: Actor {
                    platform: Some(platform),
                    user: Some("fill".into()),
                    ..Actor::default()
                },
                correlation_id: format!("fill-{i}"),
                ..Metadata::default()
            };
            let data = event.to_data(uuid::Uuid::new_v4(), metadata);
            store
                .append(
                    &assertion_stream(&id),
                    ExpectedRevision::NoStream,
                    vec![data],
                )
                .await
                .map(|_| ())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("join").expect("append");
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "filled {n} assertions in {secs:.1} s ({:.0}/s)",
        n as f64 / secs
    );
}
