//! Fills a running server's platform `KEY` (pk 1) through the HTTP API, as
//! its users would: USERS SCIM users, GROUPS groups of 20 random users and
//! POLICIES mentor-access policies (built-in Mentor Viewer on mentor p, for
//! 3 users and 2 groups), each phase by CONCURRENCY clients. Prints the rate
//! of each phase and every answer that was not a success:
//! `cargo run --release --example fill_rbac -- BASE_URL KEY API_KEY USERS GROUPS POLICIES [CONCURRENCY]`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn rng(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

struct Client {
    base: String,
    key: String,
    agent: ureq::Agent,
}

impl Client {
    /// POSTs `body` to `path`; answers the status and the body.
    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let answer = self
            .agent
            .post(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Api-Token {}", self.key))
            .send_json(body.clone());
        let response = match answer {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return (0, json!({"transport": e.to_string()})),
        };
        let status = response.status();
        (status, response.into_json().unwrap_or(Value::Null))
    }
}

/// Runs `make(i)` for i in 0..n on `concurrency` threads; answers the
/// successful bodies by i, and prints the phase's rate and failures.
fn phase(
    client: &Client,
    name: &str,
    n: u64,
    concurrency: u64,
    make: &(dyn Fn(u64) -> (String, Value) + Sync),
) -> Vec<Value> {
    let next = AtomicU64::new(0);
    let done = Mutex::new(vec![Value::Null; n as usize]);
    // When each answer came, in order of answers: the rate of the first and
    // the last 1,000 shows whether creates slow down as entities pile up.
    let answered = Mutex::new(Vec::with_capacity(n as usize));
    let failures = Mutex::new(std::collections::BTreeMap::<u16, u64>::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let (path, body) = make(i);
                let (status, answer) = client.post(&path, &body);
                answered.lock().unwrap().push(Instant::now());
                if (200..300).contains(&status) {
                    done.lock().unwrap()[i as usize] = answer;
                } else {
                    if status != 409 || i < 3 {
                        eprintln!("{name} {i}: {status} {answer}");
                    }
                    *failures.lock().unwrap().entry(status).or_default() += 1;
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let answered = answered.into_inner().unwrap();
    let window = 1000.min(answered.len() / 2);
    let rate = |from: Instant, to: Instant| window as f64 / (to - from).as_secs_f64().max(1e-9);
    let (first, last) = if window > 0 {
        let len = answered.len();
        (
            rate(started, answered[window - 1]),
            rate(answered[len - window - 1], answered[len - 1]),
        )
    } else {
        (0.0, 0.0)
    };
    println!(
        "{name}: {n} in {secs:.1} s = {:.0}/s with {concurrency} clients (first {window}: {first:.0}/s, last {window}: {last:.0}/s); not 2xx: {:?}",
        n as f64 / secs,
        failures.into_inner().unwrap()
    );
    done.into_inner().unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !(7..=8).contains(&args.len()) {
        eprintln!("usage: fill_rbac BASE_URL KEY API_KEY USERS GROUPS POLICIES [CONCURRENCY]");
        std::process::exit(2);
    }
    let n = |i: usize| args[i].parse::<u64>().expect("a number");
    let (users, groups, policies) = (n(4), n(5), n(6));
    let concurrency = args.get(7).map_or(32, |c| c.parse().expect("a number"));
    let platform = args[2].clone();
    let client = Client {
        base: args[1].trim_end_matches('/').to_owned(),
        key: args[3].clone(),
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .max_idle_connections_per_host(concurrency as usize)
            .build(),
    };
    let scim = format!("/api/orgs/{platform}/scim/v2/Users");
    let made = phase(&client, "users", users, concurrency, &|i| {
        let body = json!({"userName": format!("user{i}"), "emails": [{"value": format!("user{i}@bench.test")}]});
        (scim.clone(), body)
    });
    let user_ids: Vec<u64> = made
        .iter()
        .filter_map(|u| u["id"].as_str()?.parse().ok())
        .collect();
    assert!(!user_ids.is_empty(), "no user was created");
    let pick = |seed: &mut u64, ids: &[u64]| ids[(rng(seed) % ids.len() as u64) as usize];
    let made = phase(&client, "groups", groups, concurrency, &|g| {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (g + 1);
        let members: Vec<u64> = (0..20).map(|_| pick(&mut seed, &user_ids)).collect();
        let body = json!({"platform_key": platform, "unique_id": format!("bench-group-{g}"),
                          "name": format!("Group {g}"), "users_to_add": members});
        ("/api/core/rbac/groups/".to_owned(), body)
    });
    let group_ids: Vec<u64> = made.iter().filter_map(|g| g["id"].as_u64()).collect();
    assert!(!group_ids.is_empty(), "no group was created");
    phase(&client, "policies", policies, concurrency, &|p| {
        let mut seed = 0x2545_f491_4f6c_dd1du64 ^ (p + 1);
        let users: Vec<u64> = (0..3).map(|_| pick(&mut seed, &user_ids)).collect();
        let groups: Vec<u64> = (0..2).map(|_| pick(&mut seed, &group_ids)).collect();
        let body = json!({"platform_key": platform, "mentor_id": p + 1, "role": "viewer",
                          "users_to_add": users, "groups_to_add": groups});
        ("/api/core/rbac/mentor-access/".to_owned(), body)
    });
    if let (Some(lo), Some(hi)) = (user_ids.iter().min(), user_ids.iter().max()) {
        println!("user ids {lo}..={hi}");
    }
}
