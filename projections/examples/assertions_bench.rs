//! How fast the assertions read model applies issued assertions, as a
//! rebuild does (batches of 2,048, as the projector reads them) and as
//! live issuing does (small batches).
//!
//! Usage: cargo run --release -p ibl-projections --example assertions_bench [COUNT]

use std::time::Instant;

use ibl_events::memory::MemoryStore;
use ibl_events::{Metadata, RecordedEvent};
use ibl_projections::assertions::AssertionsModel;
use ibl_projections::ReadModel;

mod common;

#[tokio::main]
async fn main() {
    let count: u64 = std::env::args()
        .nth(1)
        .map_or(200_000, |a| a.parse().expect("COUNT"));
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, _) = AssertionsModel::open(&dir.path().join("a.db"), &MemoryStore::new())
        .await
        .expect("open");
    let credentials: Vec<String> = (0..10).map(|i| format!("credential-{i}")).collect();
    let events: Vec<RecordedEvent> = (1..=count)
        .map(|n| common::issued(n, &credentials[(n % 10) as usize], Metadata::default()))
        .collect();
    // The first half as a rebuild reads it, the rest in live-sized
    // batches (what has arrived since the last one).
    let (head, rest) = events.split_at(events.len() / 2);
    let mut parts = vec![("rebuild", 2048, head)];
    for (n, part) in rest.chunks(rest.len() / 4).enumerate() {
        parts.push(("live", [1, 8, 32, 128][n.min(3)], part));
    }
    for (label, batch, part) in parts {
        let start = Instant::now();
        for chunk in part.chunks(batch) {
            model.apply(chunk);
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{label}, batches of {batch}: {} events in {secs:.2} s = {:.0}/s ({:.1} us each)",
            part.len(),
            part.len() as f64 / secs,
            secs * 1e6 / part.len() as f64
        );
    }
}
