"""Fixtures of the `iblai` client compatibility suite.

One server per test session: the real binary (``IBL_BIN``, default
``<repo>/target/debug/ibl``) on a free loopback port with a temporary data
folder, and two platforms made with ``ibl platform create``: ``acme`` (the
one the tests work on) and ``other`` (whose key must be refused on acme's
paths).
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import iblai
import pytest

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0
KEY_VISIBLE_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Tenant:
    """One platform made by ``ibl platform create``."""

    key: str  # the platform key (slug), e.g. "acme"
    platform_id: int
    admin_id: int
    admin_username: str
    admin_email: str
    api_key: str


@dataclass(frozen=True)
class Server:
    base: str
    acme: Tenant
    other: Tenant
    log_path: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_status(url: str, headers: dict | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def _wait_healthy(base: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode} before it was ready:\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
        try:
            if _get_status(f"{base}/healthz") == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server not healthy after {STARTUP_TIMEOUT_S} s")


def _create_platform(
    binary: str, data_dir: str, key: str, name: str, username: str, email: str
) -> Tenant:
    out = subprocess.run(
        [
            binary, "platform", "create",
            "--data-dir", data_dir,
            "--key", key,
            "--name", name,
            "--admin-username", username,
            "--admin-email", email,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line, got: {out.stdout!r}"
    made = json.loads(lines[0])
    assert made["platform"]["key"] == key
    assert made["admin"]["username"] == username
    return Tenant(
        key=key,
        platform_id=made["platform"]["id"],
        admin_id=made["admin"]["id"],
        admin_username=username,
        admin_email=email,
        api_key=made["api_key"],
    )


def _wait_key_visible(base: str, tenant: Tenant) -> None:
    """The server picks up keys made by the CLI within about a second."""
    url = f"{base}/api/credentials/orgs/{tenant.key}/users/{tenant.admin_username}/"
    headers = {"Authorization": f"Api-Token {tenant.api_key}"}
    deadline = time.monotonic() + KEY_VISIBLE_TIMEOUT_S
    status = None
    while time.monotonic() < deadline:
        status = _get_status(url, headers)
        if status == 200:
            return
        time.sleep(0.05)
    raise RuntimeError(f"key of {tenant.key} not accepted after {KEY_VISIBLE_TIMEOUT_S} s (last {status})")


def _start(command: list[str], log_path: Path, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Starts one process of ours on a free port; answers it and its base URL."""
    port = _free_port()
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        command + ["--addr", f"127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    log.close()
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen) -> int | None:
    """SIGTERM, then the exit code (None: it had to be killed)."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


class _Gateway(http.server.ThreadingHTTPServer):
    """What `docker/nginx.conf` does in front of the split deployment: reads
    (and the permission check, a POST) to the query service, every other
    write to the command service; one base URL for the client."""

    daemon_threads = True

    def __init__(self):
        self.upstreams: dict = {}
        super().__init__(("127.0.0.1", 0), _Forward)

    def route_to(self, command: str, query: str) -> None:
        self.upstreams = {"command": urllib.parse.urlsplit(command), "query": urllib.parse.urlsplit(query)}


class _Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}

    def _side(self) -> str:
        path = urllib.parse.urlsplit(self.path).path
        if self.command in ("GET", "HEAD", "OPTIONS"):
            return "query"
        if self.command == "POST" and path.rstrip("/").endswith("/permissions/check"):
            return "query"
        return "command"

    def _forward(self) -> None:
        upstream = self.server.upstreams[self._side()]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in self.HOP}
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in self.HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_OPTIONS = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="session")
def server():
    """`ibl serve`; with ``IBL_SPLIT=1``, the split deployment instead:
    ``projections``, ``command-service`` and ``query-service`` (beside
    ``IBL_BIN``) on one data folder, the assertions in a ``redis-server``
    of the session's own, reads with ``IBL_READ_CONSISTENCY=strong`` (the
    client sends no ``X-Min-Position``), behind a gateway that routes as
    ``docker/nginx.conf`` does."""
    binary = os.environ.get("IBL_BIN", str(REPO / "target" / "debug" / "ibl"))
    if not Path(binary).is_file():
        pytest.exit(f"server binary not found at {binary}: run `cargo build` first", returncode=2)
    data_dir = tempfile.mkdtemp(prefix="ibl-compat-")
    log_path = Path(data_dir) / "server.log"
    procs: list[subprocess.Popen] = []
    helpers: list[subprocess.Popen] = []
    gateway = None
    try:
        if os.environ.get("IBL_SPLIT") == "1":
            bin_dir = Path(binary).parent
            redis_port = _free_port()
            helpers.append(subprocess.Popen(
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
            gateway = _Gateway()
            base = f"http://127.0.0.1:{gateway.server_address[1]}"
            env = {
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "IBL_READ_CONSISTENCY": "strong",
                "IBL_PUBLIC_URL": base,  # the URLs in answers are the gateway's
            }
            bases = {}
            for name in ("projections", "command-service", "query-service"):
                proc, bases[name] = _start(
                    [str(bin_dir / name), "--data-dir", data_dir], Path(data_dir) / f"{name}.log", env
                )
                procs.append(proc)
                _wait_healthy(bases[name], proc, Path(data_dir) / f"{name}.log")
            gateway.route_to(bases["command-service"], bases["query-service"])
            threading.Thread(target=gateway.serve_forever, daemon=True).start()
            log_path = Path(data_dir) / "query-service.log"
        else:
            proc, base = _start([binary, "serve", "--data-dir", data_dir], log_path)
            procs.append(proc)
            _wait_healthy(base, proc, log_path)
        acme = _create_platform(binary, data_dir, "acme", "Acme", "alice", "alice@example.com")
        other = _create_platform(binary, data_dir, "other", "Other", "oscar", "oscar@example.org")
        _wait_key_visible(base, acme)
        _wait_key_visible(base, other)
        yield Server(base=base, acme=acme, other=other, log_path=log_path)
    finally:
        if gateway is not None:
            if gateway.upstreams:
                gateway.shutdown()
            gateway.server_close()
        exit_codes = [_stop(proc) for proc in procs]
        for helper in helpers:
            helper.kill()
            helper.wait()
        tails = "\n".join(
            p.read_text(errors="replace")[-2000:] for p in Path(data_dir).glob("*.log")
        )
        shutil.rmtree(data_dir, ignore_errors=True)
    assert all(code == 0 for code in exit_codes), (
        f"a server did not stop cleanly on SIGTERM (exit codes {exit_codes}):\n{tails}"
    )


def make_client(base: str, api_key: str | None) -> iblai.ApiClient:
    """An `iblai` client that sends `Authorization: Api-Token <key>`."""
    if api_key is None:
        config = iblai.Configuration(host=base)
    else:
        config = iblai.Configuration(
            host=base,
            api_key={"PlatformApiKeyAuthentication": api_key},
            api_key_prefix={"PlatformApiKeyAuthentication": "Api-Token"},
        )
    return iblai.ApiClient(config)


@pytest.fixture(scope="session")
def client_for(server):
    """Makes a client of this server for any key (None: no key)."""
    return lambda api_key: make_client(server.base, api_key)


@pytest.fixture(scope="session")
def acme_client(server):
    return make_client(server.base, server.acme.api_key)


@pytest.fixture(scope="session")
def other_client(server):
    return make_client(server.base, server.other.api_key)


@pytest.fixture(scope="session")
def anon_client(server):
    return make_client(server.base, None)


@pytest.fixture(scope="session")
def creds(acme_client):
    return iblai.CredentialsApi(acme_client)


@pytest.fixture(scope="session")
def core(acme_client):
    return iblai.CoreApi(acme_client)
