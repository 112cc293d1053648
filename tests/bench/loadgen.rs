//! An open-loop HTTP/1.1 load generator: it sends on a fixed schedule and
//! counts a request that is late because the server was slow to answer the
//! previous one from the instant it was *scheduled*, so a slow server cannot
//! hide its queueing (no coordinated omission).
//!
//! `cargo run --release --example loadgen -- --url http://127.0.0.1:8080/path
//!   --rate 5000 --seconds 10 [--connections 64] [--method POST]
//!   [--header 'Authorization: Api-Token ...'] [--body '{"n": "{n}"}']`
//!
//! `{n}` in the path or body becomes a number unique to each request, `{r}` a
//! pseudo-random number in `--random-min ..= --random-max` (default 1..=1000).
//!
//! `--answers FILE` writes one line per answer: the wall-clock instants
//! (µs since the Unix epoch) its request was sent and it arrived, and its
//! body, separated by spaces (for benchmarks that follow a write elsewhere,
//! e.g. `projection_lag.sh`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Args {
    host: String,
    path: String,
    method: String,
    headers: Vec<String>,
    body: Option<String>,
    rate: f64,
    seconds: f64,
    connections: usize,
    random_min: u64,
    random_max: u64,
    answers: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut url = None;
    let mut a = Args {
        host: String::new(),
        path: String::new(),
        method: "GET".into(),
        headers: Vec::new(),
        body: None,
        rate: 1000.0,
        seconds: 10.0,
        connections: 64,
        random_min: 1,
        random_max: 1000,
        answers: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--method" => a.method = value()?,
            "--header" => a.headers.push(value()?),
            "--body" => a.body = Some(value()?),
            "--rate" => a.rate = value()?.parse().map_err(|_| "bad --rate")?,
            "--seconds" => a.seconds = value()?.parse().map_err(|_| "bad --seconds")?,
            "--connections" => a.connections = value()?.parse().map_err(|_| "bad --connections")?,
            "--random-min" => a.random_min = value()?.parse().map_err(|_| "bad --random-min")?,
            "--random-max" => a.random_max = value()?.parse().map_err(|_| "bad --random-max")?,
            "--answers" => a.answers = Some(value()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    a.host = host.to_owned();
    a.path = if path.is_empty() {
        "/".into()
    } else {
        path.to_owned()
    };
    if a.rate <= 0.0 || a.seconds <= 0.0 || a.connections == 0 || a.random_max < a.random_min {
        return Err("rate, seconds and connections must be positive".into());
    }
    Ok(a)
}

/// Reads one response; returns its status and body.
async fn read_response(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if r.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    r.read_exact(&mut body).await?;
    Ok((status, body))
}

fn unix_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

#[tokio::main]
async fn main() {
    let args = match parse() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs_f64(args.seconds);
    // Each connection sends every `interval`, offset so the sends interleave.
    let interval = Duration::from_secs_f64(args.connections as f64 / args.rate);
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let args = args.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut answers = Vec::new();
            let mut errors = 0u64;
            let stream = match TcpStream::connect(&args.host).await {
                Ok(s) => s,
                Err(_) => return (latencies, answers, 1),
            };
            stream.set_nodelay(true).ok();
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            let mut scheduled = start + interval.mul_f64(c as f64 / args.connections as f64);
            while scheduled < end {
                // Latency counts from the schedule when the previous answer
                // made this request late; when the connection was idle, it
                // counts from the send, so the timer's own lag (tokio sleeps
                // in whole milliseconds) is not blamed on the server.
                let from = if Instant::now() < scheduled {
                    tokio::time::sleep_until(scheduled.into()).await;
                    Instant::now()
                } else {
                    scheduled
                };
                let n = counter.fetch_add(1, Ordering::Relaxed);
                // A multiplicative hash of the counter: spread, repeatable.
                let r = args.random_min
                    + n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                        % (args.random_max - args.random_min + 1);
                let fill = |s: &str| {
                    s.replace("{n}", &n.to_string())
                        .replace("{r}", &r.to_string())
                };
                let path = fill(&args.path);
                let body = args.body.as_deref().map(fill);
                let mut req = format!(
                    "{} {} HTTP/1.1\r\nHost: {}\r\n",
                    args.method, path, args.host
                );
                for h in &args.headers {
                    req.push_str(h);
                    req.push_str("\r\n");
                }
                if let Some(b) = &body {
                    req.push_str(&format!(
                        "Content-Type: application/json\r\nContent-Length: {}\r\n",
                        b.len()
                    ));
                }
                req.push_str("\r\n");
                if let Some(b) = &body {
                    req.push_str(b);
                }
                let sent = unix_micros();
                if write.write_all(req.as_bytes()).await.is_err() {
                    errors += 1;
                    break;
                }
                match read_response(&mut read).await {
                    Ok((status, body)) => {
                        latencies.push(from.elapsed());
                        if args.answers.is_some() {
                            answers.push((sent, unix_micros(), body));
                        }
                        if !(200..300).contains(&status) {
                            errors += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
                scheduled += interval;
            }
            (latencies, answers, errors)
        }));
    }
    let mut all = Vec::new();
    let mut answers = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, a, e)) = t.await {
            all.extend(l);
            answers.extend(a);
            errors += e;
        }
    }
    if let Some(path) = &args.answers {
        let mut text = Vec::new();
        for (sent, at, body) in &answers {
            text.extend_from_slice(format!("{sent} {at} ").as_bytes());
            text.extend(body.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
            text.push(b'\n');
        }
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("loadgen: writing {path}: {e}");
            std::process::exit(1);
        }
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "open loop: offered {:.0}/s for {:.0}s, {} answered ({:.0}/s), errors/non-2xx {}, latency from schedule p50={:.2}ms p90={:.2}ms p99={:.2}ms p99.9={:.2}ms max={:.2}ms",
        args.rate,
        args.seconds,
        all.len(),
        all.len() as f64 / args.seconds,
        errors,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    );
}
