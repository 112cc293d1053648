//! Fills a running server with `N` issued assertions of one credential
//! through the HTTP API, as a client would: bulk issues of 5,000 recipients,
//! CONCURRENCY requests at a time. Prints the rate (the bulk issuance
//! benchmark) and every answer that was not a success:
//! `cargo run --release --example fill -- BASE_URL API_KEY N PLATFORM CREDENTIAL_ID [CONCURRENCY]`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Recipients per bulk request (the API's maximum).
const BATCH: usize = 5_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !(6..=7).contains(&args.len()) {
        eprintln!("usage: fill BASE_URL API_KEY N PLATFORM CREDENTIAL_ID [CONCURRENCY]");
        std::process::exit(2);
    }
    let n: usize = args[3].parse().expect("N is a number");
    let concurrency: usize = args.get(6).map_or(4, |c| c.parse().expect("a number"));
    let url = format!(
        "{}/api/credentials/orgs/{}/users/admin/{}/assertions/bulk/",
        args[1].trim_end_matches('/'),
        args[4],
        args[5]
    );
    let auth = format!("Api-Token {}", args[2]);
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .build();
    let batches = n.div_ceil(BATCH);
    let next = AtomicUsize::new(0);
    let issued = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return;
                }
                let recipients: Vec<Value> = (b * BATCH..((b + 1) * BATCH).min(n))
                    .map(|i| json!({"email": format!("fill-{i}@example.com")}))
                    .collect();
                let answer = agent
                    .post(&url)
                    .set("Authorization", &auth)
                    .send_json(json!({"recipients": recipients}));
                match answer {
                    Ok(r) => {
                        let body: Value = r.into_json().unwrap_or(Value::Null);
                        let count = body["issued"].as_array().map_or(0, Vec::len);
                        issued.fetch_add(count, Ordering::Relaxed);
                    }
                    Err(ureq::Error::Status(code, r)) => {
                        eprintln!("batch {b}: {code} {}", r.into_string().unwrap_or_default());
                    }
                    Err(e) => eprintln!("batch {b}: {e}"),
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let issued = issued.into_inner();
    println!(
        "bulk issued {issued} of {n} assertions in {secs:.1} s = {:.0}/s ({concurrency} requests of {BATCH} at a time)",
        issued as f64 / secs
    );
}
