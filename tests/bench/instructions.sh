#!/usr/bin/env bash
# The work of one issue, counted rather than timed: the embedded server runs
# under valgrind's callgrind, N assertions are issued through HTTP at a
# fixed rate with 32 connections, and the instructions the server executed
# for them (user space, every thread: HTTP, append, projectors, audit log)
# are divided by N. The count does not move with the machine's load, so two
# builds can be compared on a shared, noisy machine where rates cannot (run
# it for each, e.g. with BIN=path/to/other/ibl). Under valgrind SHA-256 runs
# its portable code (no SHA extensions), so hashing weighs more here than on
# the hardware. The top functions by inclusive count follow the total.
# Usage: tests/bench/instructions.sh [N]    (default 1000; BIN, RATE)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000}
RATE=${RATE:-200}
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
cargo build --release --bin ibl --example loadgen
BIN=${BIN:-target/release/ibl}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
KEY=$($BIN platform create --data-dir "$WORK/data" --key bench --name Bench --admin-username admin --admin-email admin@example.com | python3 -c 'import json,sys;print(json.load(sys.stdin)["api_key"])')
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" --dump-instr=no \
  "$BIN" serve --addr 127.0.0.1:$PORT --data-dir "$WORK/data" 2>"$WORK/valgrind.log" &
SERVER=$!
for _ in $(seq 1 1200); do curl -fs "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
CRED=$(curl -fs -X POST "$BASE/api/credentials/orgs/bench/users/admin/" -H "Authorization: Api-Token $KEY" \
  -H 'Content-Type: application/json' -d '{"name": "Benchmark badge"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["result"]["credential_id"])')
ISSUE="$BASE/api/credentials/orgs/bench/users/admin/$CRED/assertions/"
issue() { # PREFIX SECONDS
  target/release/examples/loadgen --url "$ISSUE" --method POST --header "Authorization: Api-Token $KEY" \
    --body "{\"recipient\": {\"email\": \"$1-{n}@example.com\"}}" --rate "$RATE" --seconds "$2" --connections 32
}
# Warm up (connections, caches, the first commits), then count from zero.
issue warm 1 >/dev/null
sleep 1
callgrind_control -z $SERVER >/dev/null
issue counted "$(python3 -c "print($N / $RATE)")" | sed 's/^/under valgrind: /'
sleep 1 # the projectors and the audit log finish the batch
callgrind_control -d $SERVER >/dev/null
kill $SERVER; wait $SERVER 2>/dev/null || true
DUMP=$(ls "$WORK"/cg.out.* | head -1)
TOTAL=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "== $N issues: $TOTAL instructions, $((TOTAL / N)) per issue ($BIN, $(git rev-parse --short HEAD))"
callgrind_annotate --inclusive=yes "$DUMP" 2>/dev/null | grep -E 'ibl_[a-z_]+::' | grep -v '=>' \
  | sed -E 's/^( *[0-9,]+ +\( *[0-9.]+%\)) +[^ ]*\.rs:/\1 /; s/ \[[^]]*\]$//' \
  | awk '{k=$0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) /,"",k); if(!seen[k]++) print}' | head -25 | cut -c1-150
