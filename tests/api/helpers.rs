//! The application under test, in process: a server on its own thread (its
//! own actix `System`), an event store in a temporary folder, two platforms,
//! and a blocking HTTP client with typed helpers.

use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ibl_command_service::platforms::{create_platform, NewPlatform};
use ibl_data_manager::Settings;
use ibl_edge::position::PositionKey;
use ibl_events::sqlite::SqliteStore;
use ibl_events::EventStore;
use serde_json::{json, Value};

/// The platform every test works on, and its admin.
pub const ORG: &str = "acme";
pub const ADMIN: &str = "admin";
pub const ADMIN_EMAIL: &str = "admin@acme.test";
/// A second tenant.
pub const OTHER: &str = "other";

pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The secret API key of acme's admin.
    pub key: String,
    /// The secret API key of the admin of platform `other`.
    pub other_key: String,
    /// The integer id of acme's admin user.
    pub admin_id: u64,
    /// The store the server writes to (the same instance).
    pub store: Arc<dyn EventStore>,
    /// The key of the server's `X-Position` tokens.
    pub positions: PositionKey,
    agent: ureq::Agent,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Dropped last: the folder of the event store (kept alive, not read).
    #[allow(dead_code)]
    pub dir: tempfile::TempDir,
}

struct Ready {
    port: u16,
    store: Arc<dyn EventStore>,
    positions: PositionKey,
    key: String,
    other_key: String,
    admin_id: u64,
}

fn new_platform(key: &str, name: &str, email: &str) -> NewPlatform {
    NewPlatform {
        key: key.into(),
        name: name.into(),
        admin_username: ADMIN.into(),
        admin_email: email.into(),
    }
}

/// Starts the application on a free port with platforms `acme` and `other`.
pub fn spawn_app() -> TestApp {
    spawn_app_with(|_| {})
}

/// [`spawn_app`] with settings changed by `configure` (they start as the
/// defaults, two workers, the store in a temporary folder).
pub fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let data = dir.path().to_owned();
    let mut settings = Settings::new(&data);
    settings.workers = Some(2);
    // The audit log's key, outside the store's folder, not the user's.
    settings.signing_key = Some(data.join("keys").join("signing.key"));
    configure(&mut settings);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("test-server".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let store: Arc<dyn EventStore> =
                    Arc::new(SqliteStore::open(&data).expect("the event store opens"));
                let acme = create_platform(&store, new_platform(ORG, "Acme", ADMIN_EMAIL))
                    .await
                    .expect("platform acme");
                let other =
                    create_platform(&store, new_platform(OTHER, "Other", "admin@other.test"))
                        .await
                        .expect("platform other");
                let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
                let app = ibl_data_manager::build_with(store, listener, &settings)
                    .await
                    .expect("the application builds");
                let handle = app.server.handle();
                let snapshots = app.side.snapshots.clone();
                let server = actix_web::rt::spawn(app.server);
                ready_tx
                    .send(Ready {
                        port: app.port,
                        store: app.side.store.clone(),
                        positions: app.side.positions.clone(),
                        key: acme.api_key,
                        other_key: other.api_key,
                        admin_id: acme.admin.id,
                    })
                    .expect("the test waits");
                let _ = stop_rx.await;
                handle.stop(false).await;
                let _ = server.await;
                // As `ibl serve` does at a clean stop.
                snapshots.save_changed().await;
            });
        })
        .expect("a server thread");
    let ready = ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server starts");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .build();
    TestApp {
        base: format!("http://127.0.0.1:{}", ready.port),
        key: ready.key,
        other_key: ready.other_key,
        admin_id: ready.admin_id,
        store: ready.store,
        positions: ready.positions,
        agent,
        stop: Some(stop_tx),
        thread: Some(thread),
        dir,
    }
}

impl TestApp {
    /// Stops the server and answers its data folder, kept.
    pub fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        std::mem::replace(
            &mut self.dir,
            tempfile::tempdir().expect("a temporary folder"),
        )
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An answer: status, headers and the body parsed as JSON (`Null` when it
/// is not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `X-Position`, an opaque token (`p1.` and 24 hex digits); panics
    /// when absent or of another shape. [`TestApp::position_of`] reads it.
    pub fn position(&self) -> &str {
        let token = self
            .header("X-Position")
            .unwrap_or_else(|| panic!("no X-Position on {self:?}"));
        assert!(
            token.len() == 27
                && token.starts_with("p1.")
                && token[3..]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "X-Position is not a token: {token:?}"
        );
        token
    }

    /// Panics unless the status is `status`.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        self
    }

    /// Panics unless this is a client error (4xx) with a JSON `detail`.
    #[track_caller]
    pub fn expect_client_error(self, status: u16) -> Self {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "a {status} without a JSON detail: {}",
            self.text
        );
        assert!(
            self.header("Content-Type")
                .is_some_and(|t| t.starts_with("application/json")),
            "error answers are JSON: {:?}",
            self.headers
        );
        self
    }
}

/// A request being built; sent with the acme key unless told otherwise.
pub struct Req<'a> {
    app: &'a TestApp,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Req<'_> {
    /// Sends `Authorization: Api-Token <key>` instead of the acme key.
    pub fn key(self, key: &str) -> Self {
        self.auth(&format!("Api-Token {key}"))
    }

    /// Sends this `Authorization` header instead.
    pub fn auth(mut self, value: &str) -> Self {
        self.headers.retain(|(k, _)| k != "Authorization");
        self.headers.push(("Authorization".into(), value.into()));
        self
    }

    /// Sends no `Authorization` header.
    pub fn anonymous(mut self) -> Self {
        self.headers.retain(|(k, _)| k != "Authorization");
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn idempotency_key(self, key: &str) -> Self {
        self.header("Idempotency-Key", key)
    }

    /// A JSON body, as `application/json`.
    pub fn json(mut self, body: &Value) -> Self {
        self.body = Some(serde_json::to_vec(body).expect("JSON"));
        self.header("Content-Type", "application/json")
    }

    /// Raw bytes with the given content type (none when `None`).
    pub fn raw(mut self, bytes: &[u8], content_type: Option<&str>) -> Self {
        self.body = Some(bytes.to_vec());
        match content_type {
            Some(t) => self.header("Content-Type", t),
            None => self,
        }
    }

    #[track_caller]
    pub fn send(self) -> Resp {
        let url = format!("{}{}", self.app.base, self.path);
        let mut req = self.app.agent.request(self.method, &url);
        for (k, v) in &self.headers {
            req = req.set(k, v);
        }
        let result = match &self.body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{} {}: transport error: {e}", self.method, self.path),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .filter_map(|n| response.header(&n).map(|v| (n.clone(), v.to_owned())))
            .collect();
        let text = response.into_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            body,
        }
    }
}

/// `/api/credentials/orgs/acme/users/admin/<rest>`.
pub fn creds(rest: &str) -> String {
    format!("/api/credentials/orgs/{ORG}/users/{ADMIN}/{rest}")
}

impl TestApp {
    pub fn request(&self, method: &'static str, path: &str) -> Req<'_> {
        Req {
            app: self,
            method,
            path: path.to_owned(),
            headers: vec![
                ("Authorization".into(), format!("Api-Token {}", self.key)),
                ("Accept".into(), "application/json".into()),
            ],
            body: None,
        }
    }

    pub fn get(&self, path: &str) -> Req<'_> {
        self.request("GET", path)
    }

    pub fn post(&self, path: &str) -> Req<'_> {
        self.request("POST", path)
    }

    pub fn put(&self, path: &str) -> Req<'_> {
        self.request("PUT", path)
    }

    pub fn patch(&self, path: &str) -> Req<'_> {
        self.request("PATCH", path)
    }

    pub fn delete(&self, path: &str) -> Req<'_> {
        self.request("DELETE", path)
    }

    /// The position behind a write's `X-Position` token (decoded with the
    /// server's key, as a client cannot).
    #[track_caller]
    pub fn position_of(&self, resp: &Resp) -> u64 {
        let token = resp.position();
        self.positions
            .decode(token)
            .unwrap_or_else(|_| panic!("X-Position {token} is not this server's"))
    }

    /// The token the server writes for `position`, for `X-Min-Position`.
    pub fn token(&self, position: u64) -> String {
        self.positions.encode(position)
    }

    /// The store's last committed position.
    pub fn head(&self) -> u64 {
        *self.store.head().borrow()
    }

    /// Every event of the store, read through `read_all`.
    pub fn events(&self) -> Vec<ibl_events::RecordedEvent> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let mut all = Vec::new();
        loop {
            let after = all
                .last()
                .map_or(0, |e: &ibl_events::RecordedEvent| e.position);
            let batch = rt
                .block_on(self.store.read_all(after, 1000))
                .expect("read_all");
            if batch.is_empty() {
                return all;
            }
            all.extend(batch);
        }
    }

    /// POSTs a credential; panics unless it is created. Answers the whole
    /// response.
    #[track_caller]
    pub fn post_credential(&self, body: &Value) -> Resp {
        self.post(&creds("")).json(body).send().expect(200)
    }

    /// Creates a credential named `name`; answers its id.
    #[track_caller]
    pub fn create_credential(&self, name: &str) -> String {
        self.create_credential_with(&json!({ "name": name }))
    }

    #[track_caller]
    pub fn create_credential_with(&self, body: &Value) -> String {
        let resp = self.post_credential(body);
        resp.body["result"]["credential_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no credential_id in {}", resp.text))
            .to_owned()
    }

    /// Creates user `name` (email `name@org.test`) on `org` through SCIM
    /// with `key`; answers its integer id.
    #[track_caller]
    pub fn create_user(&self, key: &str, org: &str, name: &str) -> u64 {
        self.post(&format!("/api/orgs/{org}/scim/v2/Users"))
            .key(key)
            .json(&json!({"userName": name, "emails": [{"value": format!("{name}@{org}.test")}]}))
            .send()
            .expect(201)
            .body["id"]
            .as_str()
            .expect("an id")
            .parse()
            .expect("a number")
    }

    /// The credential as `GET .../{id}` answers it.
    pub fn credential(&self, id: &str) -> Resp {
        self.get(&creds(id)).send()
    }

    /// `POST .../{credential}/assertions/` with `body`.
    pub fn issue_with(&self, credential: &str, body: &Value) -> Resp {
        self.post(&creds(&format!("{credential}/assertions/")))
            .json(body)
            .send()
    }

    /// Issues `credential` to `email`; answers the assertion.
    #[track_caller]
    pub fn issue(&self, credential: &str, email: &str) -> Value {
        self.issue_with(credential, &json!({ "recipient": { "email": email } }))
            .expect(200)
            .body
    }

    /// `POST .../{credential}/assertions/bulk/` with `body`.
    pub fn bulk(&self, credential: &str, body: &Value) -> Resp {
        self.post(&creds(&format!("{credential}/assertions/bulk/")))
            .json(body)
            .send()
    }

    /// `PUT .../assertions/{id}` revoking it for `reason`.
    pub fn revoke(&self, assertion: &str, reason: &str) -> Resp {
        self.put(&creds(&format!("assertions/{assertion}")))
            .json(&json!({ "revoked": true, "revocationReason": reason }))
            .send()
    }

    /// `GET .../assertions/{id}`.
    pub fn assertion(&self, id: &str) -> Resp {
        self.get(&creds(&format!("assertions/{id}"))).send()
    }

    /// The platform's assertion list with `query` (without `?`).
    #[track_caller]
    pub fn assertions(&self, query: &str) -> Value {
        self.get(&format!("{}?{query}", creds("assertions/")))
            .send()
            .expect(200)
            .body
    }

    /// The credentials list's `result` with `query` (without `?`).
    #[track_caller]
    pub fn credentials(&self, query: &str) -> Value {
        let body = self
            .get(&format!("{}?{query}", creds("")))
            .send()
            .expect(200)
            .body;
        assert_eq!(
            body["status"],
            json!({"success": true, "description": "Ok"})
        );
        body["result"].clone()
    }
}

/// The `entityId`s of a list of assertions.
pub fn entity_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|a| a["entityId"].as_str().expect("entityId").to_owned())
        .collect()
}

/// The recipient emails of a list of assertions, sorted.
pub fn emails(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|a| a["recipient"]["email"].as_str().expect("email").to_owned())
        .collect();
    v.sort();
    v
}

/// The value of the first line of Prometheus text `text` that starts with
/// `prefix` (a metric's name and labels).
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
