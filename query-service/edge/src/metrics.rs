//! What operators scrape and probe: `/metrics` in the Prometheus text
//! format (0.0.4) and the readiness of the backends.
//!
//! Requests are counted by method, route (the route's pattern, not the
//! path, so ids do not make new series) and status, with a latency
//! histogram; appends to the event store have their own histogram (the
//! store is wrapped in [`TimedStore`]); each projector's position and its
//! lag behind the store's head are read when scraped.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use ibl_events::{
    AppendResult, EventData, EventStore, ExpectedRevision, Position, RecordedEvent, StoreError,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{ApiError, ReadState};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram of fixed buckets, updated without a lock.
#[derive(Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is +Inf.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Appends the histogram's lines for metric `name` with `labels`
    /// (`key="value",...` or empty).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// One series of a route: method, status and the answers' latency.
type Series = (String, u16, Arc<Histogram>);

/// The process's metrics (app data).
#[derive(Default)]
pub struct Metrics {
    /// (method, route, status) -> latency of the answers.
    /// route -> (method, status, latency of the answers). Keyed by route
    /// first so that counting an answer looks up with borrowed strings:
    /// no allocation per request.
    requests: RwLock<HashMap<String, Vec<Series>>>,
    appends: Histogram,
    append_errors: AtomicU64,
}

/// Escapes a label value (backslash, quote and newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts an answer of `route` (its pattern; `"unmatched"` for none).
    pub fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let find = |series: &Vec<Series>| {
            series
                .iter()
                .find(|(m, s, _)| m == method && *s == status)
                .map(|(_, _, h)| h.clone())
        };
        let found = self
            .requests
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(route)
            .and_then(find);
        let histogram = match found {
            Some(h) => h,
            None => {
                let mut requests = self.requests.write().unwrap_or_else(|p| p.into_inner());
                let series = requests.entry(route.to_owned()).or_default();
                match find(series) {
                    Some(h) => h,
                    None => {
                        let h = Arc::new(Histogram::default());
                        series.push((method.to_owned(), status, h.clone()));
                        h
                    }
                }
            }
        };
        histogram.observe(elapsed);
    }

    /// The Prometheus text: requests, appends, and each projector's
    /// position and lag behind `head`.
    pub fn render(
        &self,
        head: Position,
        projectors: &[(&str, Position)],
        relay: Option<Position>,
    ) -> String {
        let mut out = String::new();
        out.push_str("# HELP ibl_http_request_duration_seconds Answers by method, route and status, and how long they took.\n");
        out.push_str("# TYPE ibl_http_request_duration_seconds histogram\n");
        let requests = self.requests.read().unwrap_or_else(|p| p.into_inner());
        let mut series: Vec<_> = requests
            .iter()
            .flat_map(|(route, s)| s.iter().map(move |(m, status, h)| (m, route, *status, h)))
            .collect();
        series.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        for (method, route, status, histogram) in series {
            let labels = format!(
                "method=\"{}\",route=\"{}\",status=\"{status}\"",
                label(method),
                label(route)
            );
            histogram.render(&mut out, "ibl_http_request_duration_seconds", &labels);
        }
        drop(requests);
        out.push_str("# HELP ibl_store_append_duration_seconds Appends to the event store, acknowledged (durable) or refused.\n");
        out.push_str("# TYPE ibl_store_append_duration_seconds histogram\n");
        self.appends
            .render(&mut out, "ibl_store_append_duration_seconds", "");
        out.push_str(
            "# HELP ibl_store_append_errors_total Appends that failed (conflicts included).\n",
        );
        out.push_str("# TYPE ibl_store_append_errors_total counter\n");
        let _ = writeln!(
            out,
            "ibl_store_append_errors_total {}",
            self.append_errors.load(Ordering::Relaxed)
        );
        out.push_str("# HELP ibl_store_head_position The last position of the event store this process knows.\n");
        out.push_str("# TYPE ibl_store_head_position gauge\n");
        let _ = writeln!(out, "ibl_store_head_position {head}");
        out.push_str("# HELP ibl_projection_position The last position a projector applied.\n");
        out.push_str("# TYPE ibl_projection_position gauge\n");
        for (model, position) in projectors {
            let _ = writeln!(
                out,
                "ibl_projection_position{{model=\"{}\"}} {position}",
                label(model)
            );
        }
        out.push_str("# HELP ibl_projection_lag_events Events of the store a projector has not applied yet.\n");
        out.push_str("# TYPE ibl_projection_lag_events gauge\n");
        for (model, position) in projectors {
            let _ = writeln!(
                out,
                "ibl_projection_lag_events{{model=\"{}\"}} {}",
                label(model),
                head.saturating_sub(*position)
            );
        }
        if let Some(relayed) = relay {
            out.push_str("# HELP ibl_relay_lag_events Events of the store not yet acknowledged by JetStream.\n");
            out.push_str("# TYPE ibl_relay_lag_events gauge\n");
            let _ = writeln!(out, "ibl_relay_lag_events {}", head.saturating_sub(relayed));
        }
        out
    }
}

/// The event store, with each append timed into [`Metrics`].
pub struct TimedStore {
    inner: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
}

impl TimedStore {
    pub fn wrap(inner: Arc<dyn EventStore>, metrics: Arc<Metrics>) -> Arc<dyn EventStore> {
        Arc::new(Self { inner, metrics })
    }
}

#[async_trait::async_trait]
impl EventStore for TimedStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        let started = Instant::now();
        let result = self.inner.append(stream, expected, events).await;
        self.metrics.appends.observe(started.elapsed());
        if result.is_err() {
            self.metrics.append_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, from, max).await
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, max).await
    }

    async fn read_tail(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_tail(after, max).await
    }

    fn head(&self) -> tokio::sync::watch::Receiver<Position> {
        self.inner.head()
    }

    async fn last_committed(&self) -> Result<Position, StoreError> {
        self.inner.last_committed().await
    }
}

/// One backend's state as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub backend: &'static str,
    /// `None`: it answered; else what failed.
    pub error: Option<String>,
}

/// The answer of `/readyz`: ready (200) only when every backend answered;
/// the JSON names each backend and its state.
pub fn readiness(probes: &[Probe]) -> (bool, Value) {
    let ready = probes.iter().all(|p| p.error.is_none());
    let backends: serde_json::Map<String, Value> = probes
        .iter()
        .map(|p| {
            let state = if p.error.is_none() { "up" } else { "down" };
            let state = json!({"state": state});
            (p.backend.to_owned(), state)
        })
        .collect();
    let status = if ready { "ready" } else { "unavailable" };
    (ready, json!({"status": status, "backends": backends}))
}

/// Probes the event store: a read of one event, within `timeout`.
pub async fn probe_store(store: &dyn EventStore, timeout: Duration) -> Probe {
    let error = match tokio::time::timeout(timeout, store.read_all(0, 1)).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {} ms", timeout.as_millis())),
    };
    Probe {
        backend: "event_store",
        error,
    }
}

/// What `/metrics` and `/readyz` read (app data).
pub struct MetricsAccess {
    pub metrics: Arc<Metrics>,
    /// The bearer token `/metrics` asks for; `None`: loopback clients only.
    pub token: Option<String>,
    pub store: Arc<dyn EventStore>,
    /// The relay's checkpoint, when events are published.
    pub relay: Option<Arc<ibl_projections::relay::Checkpoint>>,
}

impl MetricsAccess {
    /// Whether `req` may read the metrics: with the token when one is set,
    /// else from loopback and not through a proxy (they tell how much every
    /// tenant writes).
    fn allows(&self, req: &HttpRequest) -> bool {
        match &self.token {
            Some(token) => req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|given| {
                    // Compared in constant time: a timing side channel must
                    // not reveal how much of a guess was right.
                    let (a, b) = (Sha256::digest(given), Sha256::digest(token));
                    a.iter().zip(b.iter()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
                }),
            // A client on this machine, not a proxy on it forwarding one
            // from elsewhere (a proxy says so in its headers).
            None => {
                req.peer_addr().is_some_and(|a| a.ip().is_loopback())
                    && !req.headers().contains_key("forwarded")
                    && !req.headers().contains_key("x-forwarded-for")
            }
        }
    }
}

/// `GET /metrics`: the Prometheus text (0.0.4).
pub async fn metrics_route(
    req: HttpRequest,
    access: web::Data<MetricsAccess>,
    read: web::Data<ReadState>,
) -> Result<HttpResponse, ApiError> {
    if !access.allows(&req) {
        return Err(ApiError::Forbidden(
            "The metrics need the operator's bearer token (IBL_METRICS_TOKEN), or a client on this machine."
                .into(),
        ));
    }
    let head = *access.store.head().borrow();
    let relay = access.relay.as_ref().map(|c| c.position());
    let text = access
        .metrics
        .render(head, &read.projections.positions(), relay);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// `GET /readyz`: 200 when every backend answers, else 503 with
/// `Retry-After`; the JSON names each backend and its state (what failed
/// is logged, not shown).
pub async fn readyz(access: web::Data<MetricsAccess>, read: web::Data<ReadState>) -> HttpResponse {
    let timeout = Duration::from_secs(1);
    let store = probe_store(access.store.as_ref(), timeout).await;
    let read_models = Probe {
        backend: read.assertions.backend(),
        error: read
            .assertions
            .assertion("")
            .await
            .err()
            .map(|e| e.to_string()),
    };
    let mut probes = vec![store, read_models];
    if let Some(relay) = &access.relay {
        probes.push(Probe {
            backend: "nats",
            error: relay.trouble(),
        });
    }
    for p in &probes {
        if let Some(error) = &p.error {
            tracing::warn!(backend = p.backend, %error, "not ready");
        }
    }
    let (ready, body) = readiness(&probes);
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"2.5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
        assert!(out.contains("x_sum{a=\"b\"} 10.00305\n"), "{out}");
    }

    #[test]
    fn requests_are_counted_by_route_pattern_and_lag_is_head_less_position() {
        let m = Metrics::default();
        for _ in 0..3 {
            m.request("GET", "/api/x/{id}", 200, Duration::from_millis(1));
        }
        m.request("GET", "/api/x/{id}", 404, Duration::from_millis(1));
        let text = m.render(10, &[("assertions", 7), ("rbac", 10)], Some(4));
        assert!(
            text.contains(
                "ibl_http_request_duration_seconds_count{method=\"GET\",route=\"/api/x/{id}\",status=\"200\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains("status=\"404\"} 1\n"), "{text}");
        assert!(
            text.contains("ibl_projection_lag_events{model=\"assertions\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("ibl_projection_lag_events{model=\"rbac\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("ibl_store_head_position 10\n"), "{text}");
        assert!(text.contains("ibl_relay_lag_events 6\n"), "{text}");
    }

    #[test]
    fn ready_only_when_every_backend_answers() {
        let up = Probe {
            backend: "event_store",
            error: None,
        };
        let down = Probe {
            backend: "read_models",
            error: Some("disk I/O error".into()),
        };
        let (ready, body) = readiness(std::slice::from_ref(&up));
        assert!(ready);
        assert_eq!(body["backends"]["event_store"]["state"], "up");
        let (ready, body) = readiness(&[up, down]);
        assert!(!ready);
        assert_eq!(body["status"], "unavailable");
        assert_eq!(body["backends"]["read_models"]["state"], "down");
        assert!(
            !body.to_string().contains("disk"),
            "what failed is logged, not shown"
        );
    }
}
