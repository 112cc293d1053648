#!/usr/bin/env bash
# The permission-check benchmark: a platform with USERS users, GROUPS groups
# and POLICIES policies; checks of 10 resources each about random users.
#   (a) 32 connections, closed loop (wrk): checks/s, p50/p99, beside /healthz;
#   (b) a fixed offered load of RATE checks/s, open loop (tests/bench/loadgen.rs,
#       latency from the schedule): p50/p99, beside /healthz at the same rate;
#   (c) the RBAC lists (filters, pages, mentor access, who has access) at
#       LIST_RATE (default 200) requests/s each, open loop;
#   and the memory of the check index (logged by the server at start).
# The fill goes through `ibl serve`; the checks are measured against `ibl
# serve` (the check index in its memory), or with
# IBL_BENCH_SERVICE=query-service against the split deployment's query
# service reading the check index from a redis-server of the run's own,
# written by a `projections` process from the filled log.
# Usage: tests/bench/rbac.sh [SECONDS] [USERS] [GROUPS] [POLICIES] [RATE]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}; USERS=${2:-10000}; NGROUPS=${3:-1000}; POLICIES=${4:-2000}; RATE=${5:-5000}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
SERVICE=${IBL_BENCH_SERVICE:-serve}
cargo build --release --bin ibl --bin query-service --bin projections --example fill_rbac --example loadgen
BIN=target/release/ibl
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
KEY=$($BIN platform create --data-dir "$WORK/data" --key bench --name Bench --admin-username admin --admin-email admin@example.com | python3 -c 'import json,sys;print(json.load(sys.stdin)["api_key"])')
serve() {
  if [ "${1:-serve}" = query-service ]; then
    command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
    local redis_port prj_port
    redis_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    prj_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
    for _ in $(seq 1 500); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.01; done
    export REDIS_URL=redis://127.0.0.1:$redis_port/0
    # The projector answers /healthz once its models caught up with the log.
    RUST_LOG=warn target/release/projections --addr 127.0.0.1:$prj_port --data-dir "$WORK/data" 2> "$WORK/projections.log" &
    for _ in $(seq 1 30000); do curl -fs "http://127.0.0.1:$prj_port/healthz" >/dev/null 2>&1 && break; sleep 0.01; done
    echo "Redis: $(redis-cli -p "$redis_port" dbsize) keys, $(redis-cli -p "$redis_port" info memory | grep -o 'used_memory_human:[^[:space:]]*')"
    RUST_LOG=warn,ibl::startup=info target/release/query-service --addr 127.0.0.1:$PORT --data-dir "$WORK/data" 2> "$WORK/server.log" &
  else
    RUST_LOG=warn,ibl::startup=info $BIN serve --addr 127.0.0.1:$PORT --data-dir "$WORK/data" 2> "$WORK/server.log" &
  fi
  for _ in $(seq 1 3000); do curl -fs "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.01; done
}
echo "== machine: $(nproc) cores; $(date -u +%FT%TZ); $USERS users, $NGROUPS groups, $POLICIES policies"
# The fill goes through the HTTP API, 32 clients (its rates are the create
# benchmark); then the server restarts so that the check index is logged.
serve
echo "== fill through the API"
target/release/examples/fill_rbac "$BASE" bench "$KEY" "$USERS" "$NGROUPS" "$POLICIES" 32
kill %1; wait %1 2>/dev/null || true
echo "== checks against: $SERVICE"
serve "$SERVICE"
grep -o 'check index: [0-9]* grants, [0-9.]* MiB' "$WORK/server.log" || true
echo "== (a) closed loop, 32 connections, ${SECS}s"
wrk -t2 -c32 -d${SECS}s --latency "$BASE/healthz" | grep -E "Requests/sec|50%|99%" | sed 's/^/healthz: /'
IBL_KEY=$KEY IBL_USERS=$USERS wrk -t2 -c32 -d${SECS}s --latency -s tests/bench/check.lua "$BASE" | grep -E "Requests/sec|50%|99%|Non-2xx" | sed 's/^/check: /'
echo "== (b) open loop at $RATE/s, ${SECS}s"
target/release/examples/loadgen --url "$BASE/healthz" --rate "$RATE" --seconds "$SECS" | sed 's/^/healthz: /'
BODY='{"platform_key": "bench", "user_id": {r}, "resources": ["/platforms/1/", "/platforms/1/mentors/", "/platforms/1/mentors/{n}/", "/platforms/1/mentors/7/documents/", "/platforms/1/mentors/{r}/", "/platforms/1/mentors/3/settings/", "/platforms/1/users/", "/platforms/1/groups/", "/platforms/1/policies/", "/platforms/1/credentials/"]}'
target/release/examples/loadgen --url "$BASE/api/core/rbac/permissions/check/" --method POST \
  --header "Authorization: Api-Token $KEY" --body "$BODY" --random-min 2 --random-max $((USERS + 1)) \
  --rate "$RATE" --seconds "$SECS" | sed 's/^/check: /'
echo "== (c) RBAC lists, open loop at ${LIST_RATE:=200}/s each, ${SECS}s"
list() {
  local what=$1 path=$2 lo=$3 hi=$4
  target/release/examples/loadgen --url "$BASE$path" --header "Authorization: Api-Token $KEY" \
    --random-min "$lo" --random-max "$hi" --rate "$LIST_RATE" --seconds "$SECS" | sed "s/^/$what: /"
}
list "policies, any page of 20" "/api/core/rbac/policies/?platform_key=bench&page_size=20&page={r}" 1 $((POLICIES / 20))
list "policies of a username" "/api/core/rbac/policies/?platform_key=bench&username=user{r}" 0 $((USERS - 1))
list "policies named mentor-N-" "/api/core/rbac/policies/?platform_key=bench&name=mentor-{r}-" 1 "$POLICIES"
list "policies named r, any page" "/api/core/rbac/policies/?platform_key=bench&name=r&page_size=20&page={r}" 1 $((POLICIES / 20))
list "groups, any page of 20" "/api/core/rbac/groups/?platform_key=bench&page_size=20&page={r}" 1 $((NGROUPS / 20))
list "groups of a username" "/api/core/rbac/groups/?platform_key=bench&username=user{r}" 0 $((USERS - 1))
list "mentor access" "/api/core/rbac/mentor-access/?platform_key=bench&mentor_id={r}" 1 "$POLICIES"
list "who has access" "/api/core/rbac/access/?platform_key=bench&resource=/platforms/1/mentors/{r}/&action=Ibl.Mentor/Mentors/read" 1 "$POLICIES"
