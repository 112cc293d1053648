//! What the audit log costs per event, one thread, no HTTP: computing an
//! issued assertion's leaf (its record's JCS bytes and SHA-256), copying the
//! event as a subscription hands it over, and applying events to the audit
//! log (leaves into its SQLite file and its tree) in batches of the sizes
//! its projector sees: under a stream of writes, what arrived during its
//! linger; in a rebuild, the projector's largest batch.
//!
//! Usage: cargo run --release -p ibl-projections --example audit_bench [COUNT]

use std::time::Instant;

use ibl_audit::Signer;
use ibl_events::{Actor, Metadata, RecordedEvent};
use ibl_projections::audit_log::{leaf_of, AuditLog};
use ibl_projections::ReadModel;

mod common;

fn issued(n: u64) -> RecordedEvent {
    let metadata = Metadata {
        actor: Actor {
            platform: Some("bench".into()),
            user: Some("admin".into()),
            key_name: Some("admin".into()),
            on_behalf_of: None,
        },
        correlation_id: uuid::Uuid::new_v4().to_string(),
        ..Metadata::default()
    };
    common::issued(n, "01a23cf1-bf6f-72ee-bec4-16a3e06ff947", metadata)
}

fn report(label: &str, count: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{label}: {count} events in {secs:.2} s = {:.2} us each",
        secs * 1e6 / count as f64
    );
}

fn main() {
    let count: u64 = std::env::args()
        .nth(1)
        .map_or(200_000, |a| a.parse().expect("COUNT"));
    let events: Vec<RecordedEvent> = (1..=count).map(issued).collect();
    let n = events.len();

    let started = Instant::now();
    let leaves: Vec<_> = events.iter().map(leaf_of).collect();
    report("leaf (JCS bytes and SHA-256)", n, started);
    assert_eq!(leaves.len(), n);

    let started = Instant::now();
    for chunk in events.chunks(128) {
        std::hint::black_box(chunk.to_vec());
    }
    report(
        "copy of the event (as a subscription hands it over)",
        n,
        started,
    );

    for batch in [128, 512, 2048] {
        let dir = tempfile::tempdir().expect("tempdir");
        let signer = Signer::from_seed([7; 32], "bench/audit").expect("signer");
        let log = AuditLog::open(&dir.path().join("audit.db"), signer).expect("open");
        let started = Instant::now();
        for chunk in events.chunks(batch) {
            log.apply(chunk);
        }
        report(&format!("audit log apply, batches of {batch}"), n, started);
        assert_eq!(log.checkpoint(), count);
    }
}
