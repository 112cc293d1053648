"""Fixtures of the `iblai` client compatibility suite.

One server per test session: the real binary (``IBL_BIN``, default
``<repo>/target/debug/ibl``) on a free loopback port with a temporary data
folder, and two platforms made with ``ibl platform create``: ``acme`` (the
one the tests work on) and ``other`` (whose key must be refused on acme's
paths).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
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


@pytest.fixture(scope="session")
def server():
    binary = os.environ.get("IBL_BIN", str(REPO / "target" / "debug" / "ibl"))
    if not Path(binary).is_file():
        pytest.exit(f"server binary not found at {binary}: run `cargo build` first", returncode=2)
    data_dir = tempfile.mkdtemp(prefix="ibl-compat-")
    log_path = Path(data_dir) / "server.log"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [binary, "serve", "--addr", f"127.0.0.1:{port}", "--data-dir", data_dir],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        _wait_healthy(base, proc, log_path)
        acme = _create_platform(binary, data_dir, "acme", "Acme", "alice", "alice@example.com")
        other = _create_platform(binary, data_dir, "other", "Other", "oscar", "oscar@example.org")
        _wait_key_visible(base, acme)
        _wait_key_visible(base, other)
        yield Server(base=base, acme=acme, other=other, log_path=log_path)
    finally:
        exit_code = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                exit_code = proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        else:
            exit_code = proc.returncode
        log.close()
        tail = log_path.read_text(errors="replace")[-4000:]
        shutil.rmtree(data_dir, ignore_errors=True)
    assert exit_code == 0, f"server did not stop cleanly on SIGTERM (exit {exit_code}):\n{tail}"


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
