#!/usr/bin/env bash
# The catalog in Redis at scale: N credentials in one platform, created
# through the API (tests/bench/fill.rs, `credentials` mode) by `ibl serve`
# with REDIS_URL (it writes the catalog into Redis); then the split
# deployment's query service on that store and Redis (it keeps no catalog
# in memory) answers each kind of list at a fixed offered rate, open loop
# (tests/bench/loadgen.rs, latency from the schedule): p50/p99 beside
# /healthz at the same rate, and the memory Redis holds. Before that,
# `projections` rebuilds the read models from the log into an empty Redis
# database: events/s to its /healthz.
# Usage: tests/bench/catalog.sh [N] [RATE] [SECONDS]   (default 100000 200 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}; RATE=${2:-200}; SECS=${3:-10}
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
cargo build --release --bin ibl --bin query-service --bin projections --example fill --example loadgen
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
source tests/bench/ports.sh
read -r PORT REDIS_PORT < <(free_ports 2)
BASE=http://127.0.0.1:$PORT
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
echo "== machine: $(nproc) cores; $(date -u +%FT%TZ); $N credentials"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
for _ in $(seq 1 500); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.01; done
KEY=$(target/release/ibl platform create --data-dir "$WORK/data" --key bench --name Bench \
  --admin-username admin --admin-email admin@example.com | python3 -c 'import json,sys;print(json.load(sys.stdin)["api_key"])')
RUST_LOG=warn target/release/ibl serve --addr 127.0.0.1:$PORT --data-dir "$WORK/data" &
FILLER=$!
wait_port "$PORT" 300
echo "== fill: $N credentials through the API, 16 clients"
target/release/examples/fill "$BASE" "$KEY" "$N" bench credentials 16
kill $FILLER; wait $FILLER || true
echo "Redis memory: $(redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory_human/ {print $2}' | tr -d '\r')"

echo "== rebuild: projections from the log into an empty Redis database"
START=$(date +%s.%N)
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/1 IBL_READ_MODELS_DIR="$WORK/rebuild" RUST_LOG=warn \
  target/release/projections --addr 127.0.0.1:$PORT --data-dir "$WORK/data" &
REBUILDER=$!
wait_port "$PORT" 300
END=$(date +%s.%N)
HEAD=$(curl -fs "$BASE/metrics" | awk '/^ibl_store_head_position / {print $2}')
python3 -c "s = $END - $START; print(f'{$HEAD} events in {s:.1f} s: {$HEAD / s:,.0f} events/s')"
kill $REBUILDER; wait $REBUILDER || true

RUST_LOG=warn target/release/query-service --addr 127.0.0.1:$PORT --data-dir "$WORK/data" &
wait_port "$PORT" 300
LIST="$BASE/api/credentials/orgs/bench/users/admin/"
run() {
  local name=$1 url=$2; shift 2
  target/release/examples/loadgen --url "$url" --header "Authorization: Api-Token $KEY" \
    --rate "$RATE" --seconds "$SECS" --connections "$CONNS" "$@" | sed "s|^|$name: |"
}
# (Few connections: a connection idle past the server's keep-alive is
# closed, and loadgen would count its next request as an error.)
CONNS=8
echo "== open loop at $RATE/s, ${SECS}s each"
target/release/examples/loadgen --url "$BASE/healthz" --rate "$RATE" --seconds "$SECS" --connections "$CONNS" | sed 's/^/healthz: /'
run "first page (100)" "${LIST}?page_size=100"
run "any page (10)" "${LIST}?page_size=10&page={r}" --random-min 1 --random-max $((N / 10))
run "course filter" "${LIST}?course=course-{r}" --random-min 0 --random-max 499
run "course+program" "${LIST}?course=course-{r}&program=program-0&page_size=10" --random-min 0 --random-max 499
run "search one of N (id)" "${LIST}?search={r}" --random-min $((N / 10)) --random-max $((N - 1))
run "search 3 letters (1/5), any page" "${LIST}?search=cap&page={r}" --random-min 1 --random-max $((N / 50))
run "search 1 letter (all), any page" "${LIST}?search=a&page={r}" --random-min 1 --random-max $((N / 10))
echo "== searches longer than 3 letters, the first time (rechecked; the matches are then kept a minute)"
for q in statistics foundations quantum%20computing%20capstone; do
  curl -s -o /dev/null -w "first search $q: %{time_total} s\n" "${LIST}?search=$q" -H "Authorization: Api-Token $KEY"
done
echo "== searches that are rechecked (longer than 3 letters), at $((RATE / 4))/s"
RATE=$((RATE / 4)) run "search a word (1/20), any page" "${LIST}?search=statistics&page={r}" --random-min 1 --random-max $((N / 200))
RATE=$((RATE / 4)) run "search a phrase (1/100)" "${LIST}?search=quantum%20computing%20capstone"
RATE=$((RATE / 4)) run "search a level (1/5), any page" "${LIST}?search=foundations&page={r}" --random-min 1 --random-max $((N / 50))
