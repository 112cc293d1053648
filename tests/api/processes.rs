//! The real binary: `serve` and `platform create` as separate processes on
//! one data folder, a clean stop on SIGTERM, and no acknowledged write lost
//! when the server is killed mid-load.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_ibl");

pub(crate) fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .build()
}

/// Runs `ibl` with `args` on the data folder `data`: exit code, standard
/// output and standard error.
pub(crate) fn ibl(data: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("EVENTSTORE_URL")
        .env_remove("REDIS_URL")
        .output()
        .expect("ibl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Removes ANSI escape sequences from a log line.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The port of the `serving ... port=N` log line.
fn served_port(line: &str) -> Option<u16> {
    if !line.contains("serving") {
        return None;
    }
    let rest = &line[line.find("port=")? + 5..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A `serve` process on a folder; killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    pub(crate) fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    /// A server with these environment variables set (`IBL_*` settings).
    pub(crate) fn start_with(dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(BIN);
        command.arg("serve");
        Server::launch(command, dir, env)
    }

    /// Another binary of the package (`command-service`, ...), with the
    /// same flags.
    pub(crate) fn start_binary(bin: &str, dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::launch(Command::new(bin), dir, env)
    }

    fn launch(mut command: Command, dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut child = command
            .arg("--addr")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "warn,ibl::process=info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let line = plain(&line);
                    if let Some(port) = served_port(&line) {
                        let _ = tx.send(port);
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not start: {}", log.lock().unwrap());
            }
        };
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = agent().get(&format!("{}/healthz", server.base)).call() {
                if r.status() == 200 {
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the server never became healthy: {}",
                server.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("a pid")
    }

    /// Waits for the process to exit; `None` on timeout.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn platform_create(dir: &Path, key: &str) -> Output {
    Command::new(BIN)
        .args(["platform", "create", "--key", key, "--name"])
        .arg(format!("Platform {key}"))
        .args(["--admin-username", "admin", "--admin-email"])
        .arg(format!("admin@{key}.test"))
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("ibl platform create runs")
}

/// Creates a platform with the CLI; answers its admin key.
pub(crate) fn created_key(dir: &Path, key: &str) -> String {
    let out = platform_create(dir, key);
    assert!(
        out.status.success(),
        "platform create {key} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("platform create prints JSON");
    assert_eq!(printed["platform"]["key"], key);
    assert_eq!(printed["admin"]["username"], "admin");
    printed["api_key"].as_str().expect("api_key").to_owned()
}

fn status(r: Result<ureq::Response, ureq::Error>) -> Option<u16> {
    match r {
        Ok(r) => Some(r.status()),
        Err(ureq::Error::Status(code, _)) => Some(code),
        Err(_) => None,
    }
}

#[test]
fn a_platform_created_by_the_cli_beside_a_running_server_is_served_within_a_second_and_cannot_be_created_twice(
) {
    let dir = tempfile::tempdir().unwrap();
    created_key(dir.path(), "acme");
    let server = Server::start(dir.path());

    let key = created_key(dir.path(), "beta");
    let created = Instant::now();
    let list = format!("{}/api/credentials/orgs/beta/users/admin/", server.base);
    let agent = agent();
    let answered = loop {
        let s = status(
            agent
                .get(&list)
                .set("Authorization", &format!("Api-Token {key}"))
                .call(),
        );
        if s == Some(200) || created.elapsed() > Duration::from_secs(1) {
            break s;
        }
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        answered,
        Some(200),
        "the new key was not accepted within 1 s ({:?}); server log: {}",
        created.elapsed(),
        server.log()
    );
    let made = agent
        .post(&list)
        .set("Authorization", &format!("Api-Token {key}"))
        .send_json(json!({"name": "Beta badge"}))
        .expect("the new key writes");
    assert_eq!(made.status(), 200);

    let again = platform_create(dir.path(), "beta");
    assert!(!again.status.success(), "a second create of beta succeeded");
    assert!(
        again.stdout.is_empty(),
        "it printed: {}",
        String::from_utf8_lossy(&again.stdout)
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("beta"),
        "unclear message: {stderr}"
    );
    // The first key still works: nothing was replaced.
    assert_eq!(
        status(
            agent
                .get(&list)
                .set("Authorization", &format!("Api-Token {key}"))
                .call()
        ),
        Some(200)
    );
}

#[test]
fn sigterm_stops_the_server_with_exit_code_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    // SAFETY: sending a signal to our own child process.
    let sent = unsafe { libc::kill(server.pid(), libc::SIGTERM) };
    assert_eq!(sent, 0, "kill failed");
    let exit = server.wait(Duration::from_secs(15));
    let exit = exit.unwrap_or_else(|| panic!("still running 15 s after SIGTERM: {}", server.log()));
    assert_eq!(exit.code(), Some(0), "exit {exit:?}; log: {}", server.log());
}

#[test]
fn every_acknowledged_assertion_survives_a_sigkill_mid_load() {
    let dir = tempfile::tempdir().unwrap();
    let key = created_key(dir.path(), "acme");
    let auth = format!("Api-Token {key}");
    let mut server = Server::start(dir.path());
    let credential: Value = agent()
        .post(&format!(
            "{}/api/credentials/orgs/acme/users/admin/",
            server.base
        ))
        .set("Authorization", &auth)
        .send_json(json!({"name": "Crash"}))
        .expect("a credential")
        .into_json()
        .unwrap();
    let credential = credential["result"]["credential_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!(
        "{}/api/credentials/orgs/acme/users/admin/{credential}/assertions/",
        server.base
    );

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|t| {
            let (acked, stop, url, auth) = (acked.clone(), stop.clone(), url.clone(), auth.clone());
            thread::spawn(move || {
                let agent = agent();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let body = json!({"recipient": {"email": format!("t{t}-{n}@x.test")}});
                    if let Ok(r) = agent.post(&url).set("Authorization", &auth).send_json(body) {
                        if (200..300).contains(&r.status()) {
                            let v: Value = r.into_json().expect("a JSON assertion");
                            let id = v["entityId"].as_str().expect("entityId").to_owned();
                            acked.lock().unwrap().push(id);
                        }
                    }
                }
            })
        })
        .collect();

    thread::sleep(Duration::from_millis(1000));
    let before_kill = acked.lock().unwrap().len();
    server.child.kill().expect("SIGKILL");
    let _ = server.wait(Duration::from_secs(10));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("a client thread");
    }
    drop(server);
    let acked = Arc::try_unwrap(acked).unwrap().into_inner().unwrap();
    eprintln!(
        "{} assertions acknowledged ({before_kill} before the kill)",
        acked.len()
    );
    assert!(
        before_kill >= 8,
        "too little load before the kill to mean anything: {before_kill} acknowledged"
    );

    let server = Server::start(dir.path());
    let agent = agent();
    let base = format!("{}/api/credentials/orgs/acme/users/admin", server.base);
    let mut lost = Vec::new();
    for id in &acked {
        let r = agent
            .get(&format!("{base}/assertions/{id}"))
            .set("Authorization", &auth)
            .call();
        match r {
            Ok(r) => {
                let v: Value = r.into_json().unwrap();
                assert_eq!(v["entityId"], id.as_str());
            }
            Err(e) => lost.push(format!("{id}: {e}")),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged assertions lost after the kill: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    let list: Value = agent
        .get(&format!("{base}/assertions/?page_size=1"))
        .set("Authorization", &auth)
        .call()
        .expect("the list")
        .into_json()
        .unwrap();
    let count = list["count"].as_u64().unwrap();
    assert!(
        count >= acked.len() as u64,
        "{count} assertions listed, {} acknowledged",
        acked.len()
    );
}

/// Two `serve` processes on one store: "one policy per mentor and role" and
/// "one group per unique_id" hold across them (reservation streams), not
/// only inside one process.
#[test]
fn two_servers_on_one_store_agree_on_unique_names() {
    let dir = tempfile::tempdir().unwrap();
    let key = created_key(dir.path(), "acme");
    let servers = [Server::start(dir.path()), Server::start(dir.path())];
    let auth = format!("Api-Token {key}");
    let post = |base: &str, path: &str, body: &Value| {
        status(
            agent()
                .post(&format!("{base}{path}"))
                .set("Authorization", &auth)
                .send_json(body.clone()),
        )
    };
    for round in 0..3 {
        let grant = json!({"platform_key": "acme", "mentor_id": 100 + round, "role": "viewer"});
        let group =
            json!({"platform_key": "acme", "name": "Race", "unique_id": format!("race-{round}")});
        let (grants, groups): (Vec<_>, Vec<_>) = thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let base = servers[i % 2].base.clone();
                    let (grant, group) = (&grant, &group);
                    let post = &post;
                    s.spawn(move || {
                        (
                            post(&base, "/api/core/rbac/mentor-access/", grant),
                            post(&base, "/api/core/rbac/groups/", group),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).unzip()
        });
        let count = |v: &[Option<u16>], code| v.iter().filter(|s| **s == Some(code)).count();
        assert_eq!(count(&grants, 201), 1, "round {round}: grants {grants:?}");
        assert_eq!(count(&grants, 200), 7, "round {round}: grants {grants:?}");
        assert_eq!(count(&groups, 201), 1, "round {round}: groups {groups:?}");
        assert_eq!(count(&groups, 409), 7, "round {round}: groups {groups:?}");
        // Both servers list one policy for the mentor.
        for server in &servers {
            let deadline = Instant::now() + Duration::from_secs(2);
            let listed = loop {
                let list: Value = agent()
                    .get(&format!(
                        "{}/api/core/rbac/mentor-access/?platform_key=acme&mentor_id={}",
                        server.base,
                        100 + round
                    ))
                    .set("Authorization", &auth)
                    .call()
                    .expect("mentor access list")
                    .into_json()
                    .unwrap();
                let n = list.as_array().map_or(0, Vec::len);
                if n == 1 || Instant::now() > deadline {
                    break n;
                }
                thread::sleep(Duration::from_millis(20));
            };
            assert_eq!(listed, 1, "round {round} on {}", server.base);
        }
    }
}

fn platform_key(dir: &Path, key: &str, username: &str) -> Output {
    Command::new(BIN)
        .args(["platform", "key", "--key", key, "--username", username])
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("ibl platform key runs")
}

/// A tenant that lost its keys gets back in: the operator mints a key for
/// an existing user from the server's machine, beside the running server.
#[test]
fn the_operator_mints_a_key_for_an_existing_user_of_a_platform() {
    let dir = tempfile::tempdir().unwrap();
    created_key(dir.path(), "acme");
    let server = Server::start(dir.path());
    let out = platform_key(dir.path(), "acme", "admin");
    assert!(
        out.status.success(),
        "platform key failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("platform key prints JSON");
    assert_eq!(printed["platform"]["key"], "acme");
    assert_eq!(printed["user"]["username"], "admin");
    let key = printed["api_key"].as_str().expect("api_key").to_owned();
    let list = format!(
        "{}/api/core/platform/api-tokens/?platform_key=acme",
        server.base
    );
    let started = Instant::now();
    let answered = loop {
        let s = status(
            agent()
                .get(&list)
                .set("Authorization", &format!("Api-Token {key}"))
                .call(),
        );
        if s == Some(200) || started.elapsed() > Duration::from_secs(2) {
            break s;
        }
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(answered, Some(200), "server log: {}", server.log());
    // A deactivated user: refused, unless the operator reactivates them.
    let users = format!("{}/api/orgs/acme/scim/v2/Users", server.base);
    let auth = format!("Api-Token {key}");
    let bob: Value = agent()
        .post(&users)
        .set("Authorization", &auth)
        .send_json(json!({"userName": "bob", "emails": [{"value": "bob@acme.test"}]}))
        .expect("bob is created")
        .into_json()
        .unwrap();
    let bob_id = bob["id"].as_str().unwrap().to_owned();
    agent()
        .delete(&format!("{users}/{bob_id}"))
        .set("Authorization", &auth)
        .call()
        .expect("bob is deactivated");
    let refused = platform_key(dir.path(), "acme", "bob");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--reactivate"));
    let out = Command::new(BIN)
        .args([
            "platform",
            "key",
            "--key",
            "acme",
            "--username",
            "bob",
            "--reactivate",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("ibl platform key runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let bob_key = printed["api_key"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let check = format!("{}/api/core/rbac/permissions/check/", server.base);
    let answered = loop {
        let s = status(
            agent()
                .post(&check)
                .set("Authorization", &format!("Api-Token {bob_key}"))
                .send_json(json!({"platform_key": "acme", "resources": ["/platforms/1/"]})),
        );
        if s == Some(200) || started.elapsed() > Duration::from_secs(2) {
            break s;
        }
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(answered, Some(200), "reactivated bob's key works");
    // Refused, with a message and nothing printed: an unknown user or platform.
    for (platform, user) in [("acme", "nobody"), ("nowhere", "admin")] {
        let out = platform_key(dir.path(), platform, user);
        assert_eq!(out.status.code(), Some(2), "{platform}/{user}");
        assert!(out.stdout.is_empty());
        assert!(!out.stderr.is_empty());
    }
}
