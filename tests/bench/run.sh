#!/usr/bin/env bash
# The benchmark of the embedded server, all figures from one run:
#   - /healthz req/s under the same load (the HTTP ceiling of this machine),
#   - durable assertion issues/s with p50/p99 through HTTP (wrk, 32 connections),
#   - p50/p99 of /healthz and of issuing at a fixed offered load (RATE, default
#     5000/s; tests/bench/loadgen.rs, open loop),
#   - the store's raw append rate (events/examples/append_bench.rs),
#   - bulk issuance of EVENTS assertions through the API (5,000 a request),
#   - start-up time to /healthz 200 with them in the store, from the persisted
#     read models and from the log alone, and the server's resident memory.
# Usage: tests/bench/run.sh [SECONDS] [EVENTS]    (defaults: 10, 1000000)
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN=${1:-10}
EVENTS=${2:-1000000}
CONNS=32
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --bin ibl --example fill --example loadgen
cargo build --release -p ibl-events --example append_bench
BIN=target/release/ibl
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT

wait_healthz() {
  for _ in $(seq 1 6000); do
    curl -fs "$BASE/healthz" >/dev/null 2>&1 && return 0
    sleep 0.01
  done
  echo "server did not start" >&2; return 1
}

echo "== machine: $(nproc) cores; $(date -u +%FT%TZ)"
KEY=$($BIN platform create --data-dir "$WORK/data" --key bench --name Bench --admin-username admin --admin-email admin@example.com | python3 -c 'import json,sys;print(json.load(sys.stdin)["api_key"])')
RUST_LOG=warn $BIN serve --addr 127.0.0.1:$PORT --data-dir "$WORK/data" &
SERVER=$!
wait_healthz
# CPU seconds (user + system) the server used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$SERVER/stat"; }
CRED=$(curl -fs -X POST "$BASE/api/credentials/orgs/bench/users/admin/" -H "Authorization: Api-Token $KEY" \
  -H 'Content-Type: application/json' -d '{"name": "Benchmark badge"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["result"]["credential_id"])')

echo "== ceiling: GET /healthz, $CONNS connections, ${SECONDS_PER_RUN}s"
wrk -t2 -c$CONNS -d${SECONDS_PER_RUN}s --latency "$BASE/healthz" | grep -E "Requests/sec|50%|99%"

echo "== issue assertions: POST .../assertions/, $CONNS connections, ${SECONDS_PER_RUN}s"
BEFORE=$(cpu)
IBL_KEY=$KEY IBL_PATH="/api/credentials/orgs/bench/users/admin/$CRED/assertions/" \
  wrk -t2 -c$CONNS -d${SECONDS_PER_RUN}s --latency -s tests/bench/issue.lua "$BASE" > "$WORK/issue.txt"
AFTER=$(cpu)
grep -E "Requests/sec|50%|99%|issued_ok" "$WORK/issue.txt"
# The server's CPU per issue (its projectors and the audit log included).
ISSUED=$(sed -n 's/^issued_ok=\([0-9]*\).*/\1/p' "$WORK/issue.txt")
python3 -c "print(f'server CPU per issue: {($AFTER - $BEFORE) / max($ISSUED, 1) * 1e6:.0f} us ({$AFTER - $BEFORE:.2f} s for $ISSUED issues)')"

RATE=${RATE:-5000}
echo "== open loop at a fixed $RATE requests/s (latency from the schedule), ${SECONDS_PER_RUN}s each"
target/release/examples/loadgen --url "$BASE/healthz" --rate "$RATE" --seconds "$SECONDS_PER_RUN" | sed 's/^/healthz: /'
target/release/examples/loadgen --url "$BASE/api/credentials/orgs/bench/users/admin/$CRED/assertions/" \
  --method POST --header "Authorization: Api-Token $KEY" --body '{"recipient": {"email": "open-{n}@example.com"}}' \
  --rate "$RATE" --seconds "$SECONDS_PER_RUN" | sed 's/^/issue: /'
kill %1; wait %1 || true

echo "== raw store appends"
target/release/examples/append_bench --dir "$WORK/raw" --concurrency $CONNS --seconds 5

echo "== bulk issuance through the API, then start-up with $EVENTS more assertions in the store"
RUST_LOG=warn $BIN serve --addr 127.0.0.1:$PORT --data-dir "$WORK/data" &
FILLER=$!
wait_healthz
target/release/examples/fill "$BASE" "$KEY" "$EVENTS" bench "$CRED" 4
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' "/proc/$1/status"; }
echo "resident memory of the server that issued them: $(rss $FILLER)"
kill $FILLER; wait $FILLER || true   # SIGTERM: a clean stop writes the snapshots

# Start-up from the persisted read models, then from nothing (the folder of
# the read models deleted: every model rebuilt from the log).
startup() {
  local start end
  start=$(date +%s.%N)
  RUST_LOG=warn $BIN serve --addr 127.0.0.1:$PORT --data-dir "$WORK/data" &
  SERVER=$!
  wait_healthz
  end=$(date +%s.%N)
  python3 -c "print(f'start-up to /healthz 200 ($1): {$end - $start:.2f} s')"
  # A page of the assertions and of a far page, then the resident memory.
  curl -fs "$BASE/api/credentials/orgs/bench/users/admin/assertions/?page_size=100" \
    -H "Authorization: Api-Token $KEY" | python3 -c 'import json,sys;print("assertions listed:", json.load(sys.stdin)["count"])'
  curl -fs -o /dev/null "$BASE/api/credentials/orgs/bench/users/admin/assertions/?page_size=100&page=5000" \
    -H "Authorization: Api-Token $KEY"
  echo "resident memory after start-up ($1): $(rss $SERVER)"
  kill $SERVER; wait $SERVER || true
}
startup "persisted read models"
rm -rf "$WORK/data/readmodels"
startup "full rebuild from the log"
