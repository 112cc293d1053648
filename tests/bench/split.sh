#!/usr/bin/env bash
# The split deployment on one machine: command-service, query-service and
# projections on one data folder. Measures how far the query service lags
# behind a write made through the command service:
#   - a read with X-Min-Position (the write's token): its latency;
#   - a read without it, sent as soon as the write answered: how often it
#     does not show the write yet (eventual consistency), and after how
#     long it does.
# Usage: tests/bench/split.sh [WRITES]   (default 500)
set -euo pipefail
cd "$(dirname "$0")/../.."
WRITES=${1:-500}
cargo build --release --bin ibl --bin command-service --bin query-service --bin projections
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
source tests/bench/ports.sh
KEY=$(target/release/ibl platform create --data-dir "$WORK/data" --key bench --name Bench \
  --admin-username admin --admin-email admin@example.com | python3 -c 'import json,sys;print(json.load(sys.stdin)["api_key"])')
read -r CMD_PORT QRY_PORT PRJ_PORT < <(free_ports 3)
RUST_LOG=warn target/release/projections --addr 127.0.0.1:$PRJ_PORT --data-dir "$WORK/data" &
RUST_LOG=warn target/release/command-service --addr 127.0.0.1:$CMD_PORT --data-dir "$WORK/data" &
RUST_LOG=warn target/release/query-service --addr 127.0.0.1:$QRY_PORT --data-dir "$WORK/data" &
for port in $CMD_PORT $QRY_PORT $PRJ_PORT; do wait_port "$port" 30; done
echo "== machine: $(nproc) cores; $(date -u +%FT%TZ); $WRITES writes"
KEY=$KEY CMD=http://127.0.0.1:$CMD_PORT QRY=http://127.0.0.1:$QRY_PORT WRITES=$WRITES python3 - <<'PY'
import http.client, json, os, time
key, writes = os.environ["KEY"], int(os.environ["WRITES"])
def conn(url):
    host, port = url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port))
cmd, qry = conn(os.environ["CMD"]), conn(os.environ["QRY"])
auth = {"Authorization": f"Api-Token {key}", "Content-Type": "application/json"}
base = "/api/credentials/orgs/bench/users/admin/"
def call(c, method, path, body=None, headers=None):
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers={**auth, **(headers or {})})
    r = c.getresponse()
    data = r.read()
    return r.status, r.getheader("X-Position"), data
waited, stale, caught = [], 0, []
for i in range(writes):
    status, token, data = call(cmd, "POST", base, {"name": f"badge {i}"})
    assert status == 200, (status, data)
    cid = json.loads(data)["result"]["credential_id"]
    if i % 2 == 0:
        t = time.perf_counter()
        status, _, data = call(qry, "GET", base + cid, headers={"X-Min-Position": token})
        waited.append(time.perf_counter() - t)
        assert status == 200, (status, data)
    else:
        t = time.perf_counter()
        status, _, _ = call(qry, "GET", base + cid)
        if status == 404:
            stale += 1
            while status == 404:
                status, _, _ = call(qry, "GET", base + cid)
            caught.append(time.perf_counter() - t)
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000
print(f"read with X-Min-Position: p50 {pct(waited, 50):.2f} ms, p99 {pct(waited, 99):.2f} ms, max {max(waited)*1000:.2f} ms ({len(waited)} reads)")
n = writes - len(waited)
print(f"read without it, right after the write: {stale} of {n} did not show it yet" +
      (f"; shown after p50 {pct(caught, 50):.2f} ms, max {max(caught)*1000:.2f} ms" if caught else ""))
PY
