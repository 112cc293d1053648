//! Fills a running server with `N` issued assertions of one credential
//! through the HTTP API, as a client would: bulk issues of 5,000 recipients,
//! CONCURRENCY requests at a time. Prints the rate (the bulk issuance
//! benchmark) and every answer that was not a success:
//! `cargo run --release --example fill -- BASE_URL API_KEY N PLATFORM CREDENTIAL_ID [CONCURRENCY]`.
//!
//! With `credentials` for CREDENTIAL_ID it creates `N` credentials instead,
//! one request each: credential `i` is named "`<topic> <level> <i>`" with a
//! sentence of description, course `course-<i % 500>` and program
//! `program-<i % 20>` (the catalog benchmark, `tests/bench/catalog.sh`).

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
    if args[5] == "credentials" {
        let url = format!(
            "{}/api/credentials/orgs/{}/users/admin/",
            args[1].trim_end_matches('/'),
            args[4]
        );
        return credentials(&agent, &url, &auth, n, concurrency);
    }
    let batches = n.div_ceil(BATCH);
    let issued = AtomicUsize::new(0);
    let started = Instant::now();
    spread(batches, concurrency, |b| {
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
    let secs = started.elapsed().as_secs_f64();
    let issued = issued.into_inner();
    println!(
        "bulk issued {issued} of {n} assertions in {secs:.1} s = {:.0}/s ({concurrency} requests of {BATCH} at a time)",
        issued as f64 / secs
    );
}

/// Runs `work(i)` for every `i` below `n`, `concurrency` at a time.
fn spread(n: usize, concurrency: usize, work: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                work(i);
            });
        }
    });
}

const TOPICS: &[&str] = &[
    "Data Science",
    "Machine Learning",
    "Rust Programming",
    "Cloud Security",
    "Project Management",
    "Digital Marketing",
    "Nursing Practice",
    "Financial Accounting",
    "Graphic Design",
    "Public Speaking",
    "Supply Chain",
    "Organic Chemistry",
    "Spanish Language",
    "Network Engineering",
    "Creative Writing",
    "Leadership",
    "Statistics",
    "Web Accessibility",
    "Quantum Computing",
    "Early Childhood Education",
];
const LEVELS: &[&str] = &[
    "Foundations",
    "Practitioner",
    "Advanced",
    "Expert",
    "Capstone",
];
const VERBS: &[&str] = &[
    "demonstrated",
    "completed",
    "mastered",
    "applied",
    "presented",
    "designed",
    "evaluated",
];

/// Creates `n` credentials, `concurrency` requests at a time.
fn credentials(agent: &ureq::Agent, url: &str, auth: &str, n: usize, concurrency: usize) {
    let created = AtomicUsize::new(0);
    let started = Instant::now();
    spread(n, concurrency, |i| {
        let topic = TOPICS[i % TOPICS.len()];
        let level = LEVELS[(i / TOPICS.len()) % LEVELS.len()];
        let verb = VERBS[i % VERBS.len()];
        let body = json!({
            "name": format!("{topic} {level} {i}"),
            "description": format!(
                "Awarded to learners who {verb} the {level} outcomes of {topic} (cohort {}).",
                i % 97
            ),
            "course": format!("course-{}", i % 500),
            "program": format!("program-{}", i % 20),
        });
        match agent.post(url).set("Authorization", auth).send_json(body) {
            Ok(_) => {
                created.fetch_add(1, Ordering::Relaxed);
            }
            Err(ureq::Error::Status(code, r)) => {
                eprintln!(
                    "credential {i}: {code} {}",
                    r.into_string().unwrap_or_default()
                );
            }
            Err(e) => eprintln!("credential {i}: {e}"),
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let created = created.into_inner();
    println!(
        "created {created} of {n} credentials in {secs:.1} s = {:.0}/s ({concurrency} clients)",
        created as f64 / secs
    );
}
