//! Raw append benchmark of the SQLite event store.
//!
//! ```text
//! cargo run --release -p ibl-events --example append_bench -- \
//!     [--dir D] [--concurrency 32] [--seconds 5] [--no-single] [--fill N] [--fill-batch B] [--scan]
//! ```
//!
//! Without `--fill`, measures durable appends the way issuing assertions
//! does them (one `AssertionIssued` event per append, each to its own new
//! stream with `NoStream`): first one appender at a time, then
//! `--concurrency` appenders at once (`--no-single` skips the first
//! phase). Each phase prints two lines (the second one wrapped here):
//!
//! ```text
//! append concurrency=32: 41234 events/s p50=0.8ms p99=3.1ms
//!   writer: 8000 commits, 32.0 appends/commit, 32.0 events/commit; per event:
//!   24.3 us wall = 4.8 apply + 0.2 wait + 13.0 commit + 0.4 answer + 2.0 checkpoint + 3.9 idle
//! ```
//!
//! The second line comes from [`SqliteStore::writer_stats`]: how many
//! appends shared each commit, and how the writer's time per event splits
//! between applying requests (checks and inserts), waiting for more
//! requests with the transaction open, the `COMMIT` itself (writing and
//! syncing the log), answering the appenders, the checkpoints that let the
//! log restart, and waiting for a request to start the next batch with.
//!
//! With `--fill N`, adds N such events to the store in `--dir` as fast as it
//! can and reports the time taken: `--fill-batch B` (default 1) appends B
//! events per append, to streams `bench-fill-*` when B > 1, instead of one
//! assertion per stream.
//!
//! `--scan` then reads the whole global log with `read_all` and reports how
//! long that took.
//!
//! Without `--dir`, a temporary folder is used and removed at the end.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ibl_events::credentials::{assertion_stream, AssertionEvent, Evidence, Recipient};
use ibl_events::sqlite::{SqliteStore, WriterStats};
use ibl_events::{
    Actor, DomainEvent, EventData, EventStore, ExpectedRevision, IdempotencyTag, Metadata,
};
use uuid::Uuid;

/// The allocator of the server binary, so that appenders allocate as they
/// do there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    dir: Option<PathBuf>,
    concurrency: usize,
    seconds: f64,
    fill: Option<u64>,
    fill_batch: usize,
    scan: bool,
    single: bool,
}

const USAGE: &str = "usage: append_bench [--dir D] [--concurrency 32] [--seconds 5] \
                     [--no-single] [--fill N] [--fill-batch B] [--scan]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        dir: None,
        concurrency: 32,
        seconds: 5.0,
        fill: None,
        fill_batch: 1,
        scan: false,
        single: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            "--concurrency" => args.concurrency = number(&flag, &value()?)?,
            "--seconds" => args.seconds = number(&flag, &value()?)?,
            "--fill" => args.fill = Some(number(&flag, &value()?)?),
            "--fill-batch" => args.fill_batch = number(&flag, &value()?)?,
            "--scan" => args.scan = true,
            "--no-single" => args.single = false,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.concurrency == 0 || args.fill_batch == 0 || args.seconds <= 0.0 {
        return Err(format!("values must be positive\n{USAGE}"));
    }
    Ok(args)
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: not a valid number: {value}"))
}

/// A realistic `AssertionIssued` event (about 700 bytes of JSON).
fn assertion(entity_id: &str, n: u64) -> EventData {
    let event = AssertionEvent::AssertionIssued {
        platform: "bench".into(),
        entity_id: entity_id.to_owned(),
        credential_id: "bench-credential".into(),
        issuer_id: None,
        recipient: Recipient {
            email: format!("learner{n}@example.org"),
            username: format!("learner{n}"),
            name: format!("Learner Number {n}"),
        },
        issued_on: Utc::now(),
        expires: None,
        narrative: "Completed every module of the course with distinction.".into(),
        metadata: serde_json::json!({ "course": "course-v1:bench+101+2024", "grade": 0.93 }),
        evidence: vec![Evidence {
            url: format!("https://example.org/evidence/{n}"),
            narrative: "Final project".into(),
        }],
    };
    let metadata = Metadata {
        actor: Actor {
            platform: Some("bench".into()),
            user: Some("admin".into()),
            key_name: Some("bench-key".into()),
            on_behalf_of: None,
        },
        correlation_id: Uuid::new_v4().to_string(),
        client_request_id: None,
        causation_id: None,
        idempotency: Some(IdempotencyTag {
            key: Uuid::new_v4().to_string(),
            request_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        }),
    };
    event.to_data(Uuid::new_v4(), metadata)
}

/// Issues one assertion: one event to a new stream.
async fn issue_one(store: &dyn EventStore, n: u64) -> Result<(), ibl_events::StoreError> {
    let entity_id = Uuid::new_v4().simple().to_string();
    store
        .append(
            &assertion_stream(&entity_id),
            ExpectedRevision::NoStream,
            vec![assertion(&entity_id, n)],
        )
        .await
        .map(drop)
}

/// Runs `concurrency` appenders for `duration` and prints their rate.
async fn measure(
    store: &Arc<SqliteStore>,
    concurrency: usize,
    duration: Duration,
) -> Result<(), String> {
    let before = store.writer_stats();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = task as u64 * 1_000_000_000;
            while Instant::now() < deadline {
                let t = Instant::now();
                issue_one(store.as_ref(), n)
                    .await
                    .map_err(|e| e.to_string())?;
                latencies.push(t.elapsed());
                n += 1;
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let writer = store.writer_stats().since(&before);
    latencies.sort_unstable();
    let quantile = |q: f64| {
        let i = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "append concurrency={concurrency}: {:.0} events/s p50={:.2}ms p99={:.2}ms",
        latencies.len() as f64 / elapsed,
        quantile(0.50),
        quantile(0.99),
    );
    print_writer(&writer, elapsed);
    Ok(())
}

/// Prints how the writer spent `elapsed` seconds on the events it wrote:
/// batch sizes and time per event in each phase of a batch.
fn print_writer(writer: &WriterStats, elapsed: f64) {
    let batches = writer.batches.max(1) as f64;
    let events = writer.events.max(1) as f64;
    let per_event = |d: Duration| d.as_secs_f64() * 1e6 / events;
    println!(
        "  writer: {} commits, {:.1} appends/commit, {:.1} events/commit; per event: \
         {:.1} us wall = {:.1} apply + {:.1} wait + {:.1} commit + {:.1} answer + \
         {:.1} checkpoint + {:.1} idle",
        writer.batches,
        writer.appends as f64 / batches,
        writer.events as f64 / batches,
        elapsed * 1e6 / events,
        per_event(writer.apply),
        per_event(writer.wait),
        per_event(writer.commit),
        per_event(writer.answer),
        per_event(writer.checkpoint),
        per_event(writer.idle),
    );
}

/// Appends `total` events as fast as possible.
async fn fill(store: &Arc<SqliteStore>, total: u64, batch: usize) -> Result<(), String> {
    let started = Instant::now();
    // Enough appends in flight for the writer to always find a full batch.
    let tasks_count = if batch == 1 { 512 } else { 4 };
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..tasks_count {
        let store = Arc::clone(store);
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(batch as u64, std::sync::atomic::Ordering::Relaxed);
                if first >= total {
                    return Ok::<_, String>(());
                }
                let count = (total - first).min(batch as u64);
                if batch == 1 {
                    issue_one(store.as_ref(), first)
                        .await
                        .map_err(|e| e.to_string())?;
                } else {
                    let events = (first..first + count)
                        .map(|n| assertion(&Uuid::new_v4().simple().to_string(), n))
                        .collect();
                    let stream = format!("bench-fill-{}", Uuid::new_v4().simple());
                    store
                        .append(&stream, ExpectedRevision::NoStream, events)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fill: {total} events in {elapsed:.1} s ({:.0} events/s), head={}",
        total as f64 / elapsed,
        *store.head().borrow()
    );
    Ok(())
}

/// Reads the whole global log and prints how long it took.
async fn scan(store: &Arc<SqliteStore>) -> Result<(), String> {
    let started = Instant::now();
    let mut after = 0;
    let mut count = 0u64;
    loop {
        let page = store
            .read_all(after, 1000)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = last.position;
        count += page.len() as u64;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "scan: {count} events in {elapsed:.2} s ({:.0} events/s)",
        count as f64 / elapsed.max(f64::EPSILON)
    );
    Ok(())
}

async fn run(args: Args) -> Result<(), String> {
    let temp = match &args.dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().map_err(|e| e.to_string())?),
    };
    let dir = args
        .dir
        .clone()
        .or_else(|| temp.as_ref().map(|t| t.path().to_owned()))
        .ok_or("no folder")?;

    let opened = Instant::now();
    let store = Arc::new(SqliteStore::open(&dir).map_err(|e| e.to_string())?);
    println!(
        "store: {} (head={}, opened in {:.1} ms)",
        store.path().display(),
        *store.head().borrow(),
        opened.elapsed().as_secs_f64() * 1000.0
    );

    if let Some(total) = args.fill {
        fill(&store, total, args.fill_batch).await?;
    } else {
        let duration = Duration::from_secs_f64(args.seconds);
        if args.single {
            measure(&store, 1, duration).await?;
        }
        measure(&store, args.concurrency, duration).await?;
    }
    if args.scan {
        scan(&store).await?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("append_bench: {message}");
            ExitCode::FAILURE
        }
    }
}
