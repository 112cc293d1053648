//! Events on NATS JetStream: a real `nats-server -js` on a free port, the
//! server relaying to it, and a client reading the stream back.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;
use serde_json::Value;

use crate::helpers::{metric, spawn_app_with, TestApp};

/// A `nats-server -js` of the test's own, stopped when dropped.
pub(crate) struct Nats {
    child: Child,
    port: u16,
    pub(crate) url: String,
    dir: tempfile::TempDir,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub(crate) fn start_nats() -> Nats {
    let dir = tempfile::tempdir().expect("a folder for JetStream");
    let port = free_port();
    let child = spawn_nats(port, dir.path());
    Nats {
        child,
        port,
        url: format!("nats://127.0.0.1:{port}"),
        dir,
    }
}

impl Nats {
    /// Stops the server cleanly (SIGTERM: JetStream syncs its files) and
    /// starts it again on the same port and storage.
    fn restart_after(&mut self, while_down: impl FnOnce()) {
        // SAFETY: a signal to our own child process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
        while_down();
        self.child = spawn_nats(self.port, self.dir.path());
    }
}

fn spawn_nats(port: u16, dir: &std::path::Path) -> Child {
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server runs (tests/run.sh installs Debian's nats-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// A server relaying to `nats` (no audit checkpoint is published while
/// the tests count the stream's messages).
fn relaying_app(nats: &Nats) -> TestApp {
    let url = nats.url.clone();
    spawn_app_with(move |s| {
        s.nats_url = Some(url);
        s.checkpoint_secs = 3600;
    })
}

/// Issues `credential` to each email; answers the assertion ids.
fn issue_all(app: &TestApp, credential: &str, emails: &[&str]) -> Vec<String> {
    emails
        .iter()
        .map(|e| {
            app.issue(credential, e)["entityId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Waits until the relay has published everything the store holds.
fn wait_relayed(app: &TestApp) {
    wait_relayed_within(app, Duration::from_secs(10));
}

fn wait_relayed_within(app: &TestApp, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let text = app.get("/metrics").send().expect(200).text;
        if metric(&text, "ibl_relay_lag_events ") == Some(0.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the relay did not catch up: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_event_is_published_once_in_order_with_its_subject_and_headers() {
    let nats = start_nats();
    let app = relaying_app(&nats);
    let credential = app.create_credential("Relayed");
    let issued = issue_all(
        &app,
        &credential,
        &["ann@x.test", "ben@x.test", "cy@x.test"],
    );
    wait_relayed(&app);
    let head = app.head();
    let ready = app.get("/readyz").send().expect(200).body;
    assert_eq!(ready["backends"]["nats"]["state"], "up", "{ready}");

    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let client = async_nats::connect(&nats.url).await.expect("connect");
        let js = jetstream::new(client);
        let mut stream = js.get_stream("IBL_EVENTS").await.expect("the stream");
        let info = stream.info().await.expect("stream info");
        assert_eq!(
            info.state.messages, head,
            "one message per event of the log"
        );

        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: "ibl.acme.assertion.issued".into(),
                ..Default::default()
            })
            .await
            .expect("a consumer");
        let mut messages = consumer
            .fetch()
            .max_messages(10)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .expect("messages");
        let mut seen = Vec::new();
        let mut last_position = 0;
        while let Some(message) = messages.next().await {
            let message = message.expect("a message");
            assert_eq!(message.subject.as_str(), "ibl.acme.assertion.issued");
            let headers = message.headers.clone().expect("headers");
            let get = |k: &str| headers.get(k).map(|v| v.as_str().to_owned());
            assert_eq!(get("ce-specversion").as_deref(), Some("1.0"));
            assert_eq!(get("ce-type").as_deref(), Some("ai.ibl.assertion.issued"));
            assert_eq!(get("Nats-Msg-Id"), get("ce-id"));
            let position: u64 = get("Ibl-Position").unwrap().parse().unwrap();
            assert!(position > last_position, "in order");
            last_position = position;
            assert!(get("Ibl-Correlation-Id").is_some_and(|c| !c.is_empty()));
            let payload: Value = serde_json::from_slice(&message.payload).expect("JSON");
            assert_eq!(payload["type"], "AssertionIssued", "{payload}");
            assert_eq!(
                get("ce-subject"),
                Some(format!(
                    "assertion-{}",
                    payload["entity_id"].as_str().unwrap()
                ))
            );
            seen.push(payload["entity_id"].as_str().unwrap().to_owned());
            message.ack().await.expect("ack");
        }
        assert_eq!(seen, issued, "each issue once, in order");
    });
}

/// The example subscriber (`examples/subscriber.rs`, built by `cargo
/// test` beside this binary), its printed lines read as they come.
struct Subscriber {
    child: Child,
    lines: std::sync::mpsc::Receiver<Value>,
}

impl Subscriber {
    fn start(nats: &Nats, durable: &str) -> Self {
        let exe = std::env::current_exe().expect("the test binary");
        let bin = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>")
            .join("examples")
            .join("subscriber");
        let mut child = Command::new(&bin)
            .arg(durable)
            .env("NATS_URL", &nats.url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(value) = serde_json::from_str(&line) {
                    if tx.send(value).is_err() {
                        break;
                    }
                }
            }
        });
        Subscriber { child, lines }
    }

    fn next(&self, within: Duration) -> Option<Value> {
        self.lines.recv_timeout(within).ok()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_example_subscriber_reacts_to_each_issue_once_and_resumes_after_a_restart() {
    let nats = start_nats();
    let app = relaying_app(&nats);
    let credential = app.create_credential("Watched");
    let first = issue_all(&app, &credential, &["ann@x.test", "ben@x.test"]);
    wait_relayed(&app);

    let subscriber = Subscriber::start(&nats, "notifier");
    let wait = Duration::from_secs(15);
    for (want, email) in first.iter().zip(["ann@x.test", "ben@x.test"]) {
        let line = subscriber.next(wait).expect("a reaction");
        assert_eq!(line["assertion"], want.as_str(), "{line}");
        assert_eq!(line["recipient"], email, "{line}");
        assert_eq!(line["platform"], "acme", "{line}");
        assert_eq!(line["credential"], credential.as_str(), "{line}");
    }
    // Killed, then an issue while it is away: a restart under the same
    // durable name reacts to that one only.
    drop(subscriber);
    let later = app.issue(&credential, "cy@x.test")["entityId"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_relayed(&app);
    let subscriber = Subscriber::start(&nats, "notifier");
    let line = subscriber.next(wait).expect("a reaction");
    assert_eq!(line["assertion"], later.as_str(), "{line}");
    assert_eq!(
        subscriber.next(Duration::from_millis(1500)),
        None,
        "nothing twice"
    );
}

#[test]
fn the_relay_resumes_after_nats_restarts_and_loses_nothing() {
    let mut nats = start_nats();
    let app = relaying_app(&nats);
    let credential = app.create_credential("Resilient");
    app.issue(&credential, "ann@x.test");
    wait_relayed(&app);
    nats.restart_after(|| {
        // Writes go on while NATS is down; the relay retries.
        for e in ["ben@x.test", "cy@x.test", "di@x.test"] {
            app.issue(&credential, e);
        }
    });
    wait_relayed(&app);
    let head = app.head();
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let js = jetstream::new(async_nats::connect(&nats.url).await.expect("connect"));
        let mut stream = js.get_stream("IBL_EVENTS").await.expect("the stream");
        let info = stream.info().await.expect("stream info");
        assert_eq!(info.state.messages, head, "every event, once");
    });
}

fn stream_messages(url: &str) -> u64 {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let js = jetstream::new(async_nats::connect(url).await.expect("connect"));
        let mut stream = js.get_stream("IBL_EVENTS").await.expect("the stream");
        stream.info().await.expect("stream info").state.messages
    })
}

#[test]
fn ibl_relay_republishes_history_and_jetstream_drops_what_it_already_has() {
    let nats = start_nats();
    // A server that publishes nothing, beside which the operator relays.
    let app = crate::helpers::spawn_app();
    let credential = app.create_credential("History");
    for e in ["ann@x.test", "ben@x.test"] {
        app.issue(&credential, e);
    }
    let head = app.head();
    let relay = |from: u64| -> Value {
        let out = Command::new(crate::processes::BIN)
            .args(["relay", "--from", &from.to_string(), "--data-dir"])
            .arg(app.dir.path())
            .env("NATS_URL", &nats.url)
            .output()
            .expect("ibl relay runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("one JSON object")
    };
    let all = relay(0);
    assert_eq!(all["published"], head, "{all}");
    assert_eq!(all["to"], head, "{all}");
    assert_eq!(stream_messages(&nats.url), head);
    // Again, and from a later position: JetStream keeps one of each.
    assert_eq!(relay(0)["published"], head);
    assert_eq!(relay(head - 2)["published"], 2);
    assert_eq!(
        stream_messages(&nats.url),
        head,
        "duplicates dropped by Nats-Msg-Id"
    );
}

#[test]
fn readyz_is_503_while_the_relay_cannot_reach_nats() {
    // A port nothing listens on.
    let url = format!("nats://127.0.0.1:{}", free_port());
    let app = spawn_app_with(move |s| s.nats_url = Some(url));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.get("/readyz").send();
        if r.status == 503 {
            assert_eq!(r.body["backends"]["nats"]["state"], "down", "{}", r.text);
            assert_eq!(
                r.body["backends"]["event_store"]["state"], "up",
                "{}",
                r.text
            );
            assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
            break;
        }
        assert!(Instant::now() < deadline, "still {}: {}", r.status, r.text);
        std::thread::sleep(Duration::from_millis(50));
    }
    // Writes go on: the log, not NATS, is the truth.
    app.create_credential("Unpublished");
}

/// Three `nats-server -js` forming one cluster on free ports, stopped when
/// dropped.
struct Cluster {
    nodes: Vec<Option<Child>>,
    ports: Vec<u16>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.nodes.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Cluster {
    fn start() -> Cluster {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let all_routes = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut dirs = Vec::new();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let dir = tempfile::tempdir().expect("a folder for JetStream");
            let child = Command::new("nats-server")
                .args(["-js", "-a", "127.0.0.1", "-p", &ports[i].to_string()])
                .args(["-n", &format!("n{i}"), "--cluster_name", "ibl"])
                .args(["--cluster", &format!("nats://127.0.0.1:{}", routes[i])])
                .args(["--routes", &all_routes, "-sd"])
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server runs");
            nodes.push(Some(child));
            dirs.push(dir);
        }
        for port in &ports {
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(Instant::now() < deadline, "nats-server did not listen");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Cluster {
            nodes,
            ports,
            _dirs: dirs,
        }
    }

    /// Every node's URL, comma-separated (what `NATS_URL` takes).
    fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The relay on a three-node NATS cluster with `IBL_NATS_REPLICAS=3`: the
/// stream is made with three replicas, and a node lost in the middle of
/// the writes loses no event: every one is in the stream once, in order.
#[test]
fn on_a_three_node_cluster_losing_a_node_loses_no_event() {
    let mut cluster = Cluster::start();
    let urls = cluster.urls();
    let app = spawn_app_with(move |s| {
        s.nats_url = Some(urls);
        s.nats_replicas = 3;
        s.checkpoint_secs = 3600;
    });
    let credential = app.create_credential("Replicated");
    for i in 0..30 {
        app.issue(&credential, &format!("before-{i}@x.test"));
    }
    // (The cluster elects its JetStream leader in a few seconds; the relay
    // retries until the stream is made.)
    let wait = |app: &TestApp| wait_relayed_within(app, Duration::from_secs(60));
    wait(&app);
    cluster.kill(0);
    for i in 0..30 {
        app.issue(&credential, &format!("after-{i}@x.test"));
    }
    wait(&app);
    let head = app.head();
    let survivor = format!("nats://127.0.0.1:{}", cluster.ports[1]);
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let js = jetstream::new(async_nats::connect(&survivor).await.expect("connect"));
        let mut stream = js.get_stream("IBL_EVENTS").await.expect("the stream");
        let info = stream.info().await.expect("stream info");
        assert_eq!(info.config.num_replicas, 3);
        assert_eq!(info.state.messages, head, "every event, once");
        // (A consumer of one replica, in memory; its creation is retried
        // while the cluster settles without the lost node.)
        let config = pull::Config {
            num_replicas: 1,
            memory_storage: true,
            ..Default::default()
        };
        let mut tries = 0;
        let consumer = loop {
            match stream.create_consumer(config.clone()).await {
                Ok(consumer) => break consumer,
                Err(e) if tries < 10 => {
                    tries += 1;
                    eprintln!("creating a consumer: {e}; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => panic!("a consumer: {e}"),
            }
        };
        let mut messages = consumer
            .fetch()
            .max_messages(head as usize)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .expect("messages");
        let mut positions = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.expect("a message");
            let headers = message.headers.clone().expect("headers");
            let position = headers.get("Ibl-Position").expect("Ibl-Position");
            positions.push(position.as_str().parse::<u64>().expect("a position"));
            message.ack().await.expect("ack");
        }
        assert_eq!(positions, (1..=head).collect::<Vec<_>>(), "in order");
    });
}

/// The audit log's signed checkpoints go to `ibl.audit.checkpoint` in the
/// same stream, each once, and verify with the log's key.
#[test]
fn signed_checkpoints_are_published_to_nats() {
    use futures_util::StreamExt;
    let nats = start_nats();
    let url = nats.url.clone();
    let app = spawn_app_with(move |s| {
        s.nats_url = Some(url);
        s.checkpoint_secs = 1;
    });
    let credential = app.create_credential("Checkpointed");
    issue_all(&app, &credential, &["cp1@x.test", "cp2@x.test"]);
    let head_events = app.events().len() as u64;
    let served = app
        .get("/api/audit/checkpoint")
        .anonymous()
        .send()
        .expect(200)
        .body;
    let verifier =
        ibl_audit::Verifier::from_vkey(served["vkey"].as_str().expect("a vkey")).expect("a key");
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let sizes = rt.block_on(async {
        let js = jetstream::new(async_nats::connect(&nats.url).await.expect("connect"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let stream = loop {
                match js.get_stream("IBL_EVENTS").await {
                    Ok(stream) => break stream,
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    Err(e) => panic!("no stream: {e}"),
                }
            };
            let consumer = stream
                .create_consumer(jetstream::consumer::pull::Config {
                    filter_subject: "ibl.audit.checkpoint".into(),
                    ..Default::default()
                })
                .await
                .expect("a consumer");
            let mut batch = consumer
                .fetch()
                .max_messages(100)
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .expect("messages");
            let mut sizes = Vec::new();
            while let Some(message) = batch.next().await {
                let message = message.expect("a message");
                let body: Value = serde_json::from_slice(&message.payload).expect("JSON");
                let signed = verifier
                    .verify(body["note"].as_str().expect("a note"))
                    .expect("signed by the log's key");
                assert_eq!(body["size"], signed.size);
                assert_eq!(body["origin"], served["origin"]);
                sizes.push(signed.size);
            }
            if sizes.last() == Some(&head_events) {
                return sizes;
            }
            assert!(
                Instant::now() < deadline,
                "checkpoints published: {sizes:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut once = sizes.clone();
    once.dedup();
    assert_eq!(once, sizes, "each checkpoint once, growing");
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
}
