#!/usr/bin/env bash
# Projection lag of the split deployment on Redis: how long after a write
# is acknowledged its result is visible in Redis, under a steady load.
#   - redis-server of the run's own (keyspace notifications on hashes);
#   - projections (writes the assertions model to Redis) and command-service
#     on one embedded store;
#   - tests/bench/loadgen.rs issues single assertions open loop at RATE/s
#     (default 2000) for SECONDS (default 10) and records when each answer
#     arrived (wall clock) and the assertion's id;
#   - a watcher subscribed to the keyspace notifications of the model's
#     assertion hashes records when each one was written.
# Lag = written in Redis - the write's request sent (both on this machine's
# clock): an upper bound of append -> visible. A baseline in the same run:
# loadgen on /healthz at the same rate.
# Usage: tests/bench/projection_lag.sh [RATE] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
RATE=${1:-2000}
SECONDS_PER_RUN=${2:-10}
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
cargo build --release --bin ibl --bin command-service --bin projections --example loadgen
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
source tests/bench/ports.sh
read -r REDIS_PORT CMD_PORT PRJ_PORT < <(free_ports 3)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --notify-keyspace-events K$ >/dev/null &
for _ in $(seq 1 500); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.01; done
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
KEY=$(target/release/ibl platform create --data-dir "$WORK/data" --key bench --name Bench \
  --admin-username admin --admin-email admin@example.com | python3 -c 'import json,sys;print(json.load(sys.stdin)["api_key"])')
RUST_LOG=warn target/release/projections --addr 127.0.0.1:$PRJ_PORT --data-dir "$WORK/data" &
RUST_LOG=warn target/release/command-service --addr 127.0.0.1:$CMD_PORT --data-dir "$WORK/data" &
wait_port "$PRJ_PORT" 30; wait_port "$CMD_PORT" 30
CMD=http://127.0.0.1:$CMD_PORT
CRED=$(curl -fs -X POST "$CMD/api/credentials/orgs/bench/users/admin/" -H "Authorization: Api-Token $KEY" \
  -H 'Content-Type: application/json' -d '{"name": "Lag badge"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["result"]["credential_id"])')

echo "== machine: $(nproc) cores; $(date -u +%FT%TZ); $RATE writes/s for ${SECONDS_PER_RUN}s"
echo "== baseline: GET /healthz of the command service, open loop at $RATE/s"
target/release/examples/loadgen --url "$CMD/healthz" --rate "$RATE" --seconds "$SECONDS_PER_RUN" --connections 16

# The watcher: PSUBSCRIBE over a raw socket, each notification stamped as
# it arrives (µs since the epoch); stops at SIGTERM.
REDIS_PORT=$REDIS_PORT OUT="$WORK/written" python3 - <<'PY' &
import os, signal, socket, sys, time
out = open(os.environ["OUT"], "w")
signal.signal(signal.SIGTERM, lambda *_: (out.flush(), os._exit(0)))
s = socket.create_connection(("127.0.0.1", int(os.environ["REDIS_PORT"])))
pattern = b"__keyspace@0__:ibl:{bench}:assertion:*"
s.sendall(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(pattern), pattern))
f = s.makefile("rb")
def item():
    line = f.readline()
    if line[:1] == b"*":
        return [item() for _ in range(int(line[1:]))]
    if line[:1] == b"$":
        data = f.read(int(line[1:]) + 2)[:-2]
        return data
    return line.strip()
while True:
    msg = item()
    now = time.time_ns() // 1000
    if msg[0] == b"pmessage":
        out.write(f"{now} {msg[2].decode().rsplit(':', 1)[1]}\n")
PY
WATCHER=$!
sleep 0.5

echo "== issue assertions through the command service, open loop at $RATE/s"
target/release/examples/loadgen --url "$CMD/api/credentials/orgs/bench/users/admin/$CRED/assertions/" \
  --method POST --header "Authorization: Api-Token $KEY" --connections 16 \
  --body '{"recipient": {"email": "lag-{n}@example.com"}}' \
  --rate "$RATE" --seconds "$SECONDS_PER_RUN" --answers "$WORK/answered"
sleep 2
kill -TERM $WATCHER; wait $WATCHER 2>/dev/null || true

echo "== projection lag: written in Redis, from the write's request and from its answer"
ANSWERED="$WORK/answered" WRITTEN="$WORK/written" python3 - <<'PY'
import json, os
written = {}
for line in open(os.environ["WRITTEN"]):
    at, key = line.split()
    written.setdefault(key, int(at))  # the issue's write, not a later change
from_sent, from_answer, missing = [], [], 0
for line in open(os.environ["ANSWERED"]):
    sent, answered, body = line.split(" ", 2)
    try:
        entity = json.loads(body)["entityId"]
    except (ValueError, KeyError):
        continue
    if entity in written:
        from_sent.append((written[entity] - int(sent)) / 1000)
        from_answer.append((written[entity] - int(answered)) / 1000)
    else:
        missing += 1
def show(name, lags):
    lags.sort()
    pct = lambda p: lags[min(len(lags) - 1, int(len(lags) * p))]
    print(f"  {name}: p50={pct(0.5):.2f}ms p90={pct(0.9):.2f}ms p99={pct(0.99):.2f}ms max={lags[-1]:.2f}ms")
print(f"{len(from_sent)} writes seen in Redis, {missing} not seen")
show("from the request (an upper bound of append -> visible: it includes HTTP and the append)", from_sent)
show("from the answer (negative: the command service answers once Redis has it, as X-Position promises)", from_answer)
PY
