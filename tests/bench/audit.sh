#!/usr/bin/env bash
# The cost of the audit log, all figures from one run:
#   (a) closed-loop issuing (wrk, 32 connections, SECONDS each) with the
#       audit log on and off, ROUNDS times in alternating order, beside
#       /healthz, then the mean rates and the median ratio of the rounds;
#   (b) EVENTS assertions issued through the API (bulk), then the time of
#       `ibl verify` over the store, the evidence file's size, and the
#       time of `ibl replay` (every read model rebuilt and compared);
#   (c) a platform filled through the API with USERS users, GROUPS groups
#       and POLICIES policies (tests/bench/fill_rbac.rs), then permission
#       checks at past positions (`at_position`), walking forward: the
#       first (the RBAC model of then folded from 0), the first at each
#       later position (folded on from the earlier one kept) and again
#       (kept).
#   Between (b) and (c): the start of `ibl serve` over those EVENTS with
#   the evidence file deleted, the audit log on and off: what hashing the
#   whole log costs per event.
# Usage: tests/bench/audit.sh [SECONDS] [EVENTS] [USERS] [GROUPS] [POLICIES]
#        (defaults 10 1000000 20000 2000 20000); PARTS=abc (default) picks
#        the parts to run, ROUNDS=3 (default) the rounds of (a).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}; EVENTS=${2:-1000000}; USERS=${3:-20000}; NGROUPS=${4:-2000}; POLICIES=${5:-20000}
PARTS=${PARTS:-abc}; ROUNDS=${ROUNDS:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --bin ibl --example fill --example fill_rbac
BIN=target/release/ibl
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
source tests/bench/ports.sh
read -r PORT < <(free_ports 1)
BASE=http://127.0.0.1:$PORT
export IBL_SIGNING_KEY=$WORK/keys/signing.key
echo "== machine: $(nproc) cores; $(date -u +%FT%TZ)"

platform() { # DATA -> API key
  $BIN platform create --data-dir "$1" --key bench --name Bench --admin-username admin \
    --admin-email admin@example.com | python3 -c 'import json,sys;print(json.load(sys.stdin)["api_key"])'
}
credential() { # KEY -> credential id
  curl -fs -X POST "$BASE/api/credentials/orgs/bench/users/admin/" -H "Authorization: Api-Token $1" \
    -H 'Content-Type: application/json' -d '{"name": "Audited badge"}' \
    | python3 -c 'import json,sys;print(json.load(sys.stdin)["result"]["credential_id"])'
}
head_position() { curl -fs "$BASE/metrics" | awk '/^ibl_store_head_position / {print $2}'; }

if [[ $PARTS == *a* ]]; then
echo "== (a) issuing with the audit log on and off, ${SECS}s each, 32 connections"
# The machine is shared: the rounds alternate, and the server's CPU per
# event (all its threads, the projectors included) is the steadier figure.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
RATES=$WORK/rates
for round in $(seq 1 "$ROUNDS"); do
  # The order alternates too, so that a drift of the machine's load
  # weighs on both.
  ORDER="on off"; (( round % 2 == 0 )) && ORDER="off on"
  for audit in $ORDER; do
    DATA=$WORK/issue-$audit-$round
    KEY=$(platform "$DATA")
    IBL_AUDIT_LOG=$audit RUST_LOG=warn $BIN serve --addr 127.0.0.1:$PORT --data-dir "$DATA" &
    SERVER=$!
    wait_port "$PORT" 60
    CRED=$(credential "$KEY")
    HEALTHZ=$(wrk -t2 -c32 -d${SECS}s "$BASE/healthz" | awk '/Requests\/sec/ {print $2}')
    BEFORE=$(cpu $SERVER); FROM=$(head_position)
    ISSUED=$(IBL_KEY=$KEY IBL_PATH="/api/credentials/orgs/bench/users/admin/$CRED/assertions/" \
      wrk -t2 -c32 -d${SECS}s --latency -s tests/bench/issue.lua "$BASE" | awk '/Requests\/sec/ {print $2}')
    sleep 1 # the audit log's projector catches up
    AFTER=$(cpu $SERVER); TO=$(head_position)
    echo "audit $audit (round $round): issues/s $ISSUED; server CPU $(python3 -c "print(round(($AFTER - $BEFORE) * 1e6 / ($TO - $FROM), 1))") us/event; /healthz $HEALTHZ req/s"
    echo "$round $audit $ISSUED" >> "$RATES"
    kill $SERVER; wait $SERVER || true
  done
done
python3 - "$RATES" <<'EOF'
import statistics, sys
rates = {}
for line in open(sys.argv[1]):
    n, audit, rate = line.split()
    rates.setdefault(n, {})[audit] = float(rate)
on = [r["on"] for r in rates.values()]
off = [r["off"] for r in rates.values()]
ratios = [r["on"] / r["off"] for r in rates.values()]
print(f"issuing, mean of {len(on)} rounds: on {statistics.mean(on):,.0f}/s, off {statistics.mean(off):,.0f}/s "
      f"({(1 - statistics.mean(on) / statistics.mean(off)) * 100:.1f} % slower); "
      f"per round on/off: median {statistics.median(ratios):.3f}")
EOF

fi

if [[ $PARTS == *b* ]]; then
echo "== (b) $EVENTS assertions through the API (bulk), then ibl verify"
DATA=$WORK/verify
KEY=$(platform "$DATA")
RUST_LOG=warn IBL_CHECKPOINT_SECS=1 $BIN serve --addr 127.0.0.1:$PORT --data-dir "$DATA" &
SERVER=$!
wait_port "$PORT" 60
CRED=$(credential "$KEY")
target/release/examples/fill "$BASE" "$KEY" "$EVENTS" bench "$CRED" 4
HEAD=$(head_position)
for _ in $(seq 1 600); do
  SIZE=$(curl -fs "$BASE/api/audit/checkpoint" | python3 -c 'import json,sys;print(json.load(sys.stdin)["size"])')
  [ "$SIZE" -ge "$HEAD" ] && break
  sleep 1
done
echo "checkpoint of size $SIZE signed (the log's head: position $HEAD)"
kill $SERVER; wait $SERVER || true
echo "evidence file: $(du -h "$DATA/audit.db" | cut -f1); store: $(du -ch "$DATA"/events.db* | tail -1 | cut -f1)"
START=$(date +%s.%N)
$BIN verify --data-dir "$DATA"
END=$(date +%s.%N)
python3 -c "s = $END - $START; print(f'ibl verify: {$HEAD} events in {s:.1f} s, {$HEAD / s:,.0f} events/s')"
START=$(date +%s.%N)
$BIN replay --data-dir "$DATA"
END=$(date +%s.%N)
python3 -c "s = $END - $START; print(f'ibl replay: every read model rebuilt over {$HEAD} events and compared in {s:.1f} s')"
for audit in off on; do
  rm -f "$DATA"/audit.db*
  START=$(date +%s.%N)
  IBL_AUDIT_LOG=$audit RUST_LOG=warn $BIN serve --addr 127.0.0.1:$PORT --data-dir "$DATA" &
  SERVER=$!
  wait_port "$PORT" 3600
  END=$(date +%s.%N)
  echo "start over $HEAD events, read models from their snapshots, audit log $audit (rebuilt from the log): $(python3 -c "print(round($END - $START, 1))") s"
  kill $SERVER; wait $SERVER || true
done
fi

if [[ $PARTS == *c* ]]; then
echo "== (c) checks at past positions: $USERS users, $NGROUPS groups, $POLICIES policies"
DATA=$WORK/rbac
KEY=$(platform "$DATA")
RUST_LOG=warn $BIN serve --addr 127.0.0.1:$PORT --data-dir "$DATA" &
SERVER=$!
wait_port "$PORT" 60
target/release/examples/fill_rbac "$BASE" bench "$KEY" "$USERS" "$NGROUPS" "$POLICIES" 16
HEAD=$(head_position)
sleep 2
python3 - "$DATA/audit.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print("RBAC events in the log: %d of %d" % (db.execute("SELECT count(*) FROM leaves WHERE rbac = 1").fetchone()[0],
                                           db.execute("SELECT count(*) FROM leaves").fetchone()[0]))
EOF
python3 - "$BASE" "$KEY" "$HEAD" <<'EOF'
import json, random, sys, time, urllib.error, urllib.request
base, key, head = sys.argv[1], sys.argv[2], int(sys.argv[3])
def check(position):
    body = json.dumps({"platform_key": "bench", "user_id": random.randint(3, 1000), "explain": True,
                       "resources": ["/platforms/1/mentors/%d/" % random.randint(1, 500), "/platforms/1/"],
                       "at_position": position}).encode()
    req = urllib.request.Request(base + "/api/core/rbac/permissions/check/", data=body, method="POST",
                                 headers={"Authorization": "Api-Token " + key, "Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req) as r:
            r.read()
    except urllib.error.HTTPError as e:  # a user not yet registered then: 404
        assert e.code == 404, e.read()
    return (time.perf_counter() - started) * 1000
random.seed(7)
positions = sorted(random.sample(range(head // 2, head + 1), 10)) + [head]
first, again = [], []
for p in positions:
    first.append(check(p))
    again.extend(check(p) for _ in range(20))
def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(q * len(xs)))]
print("check at a past position, the first (the RBAC model of then folded from 0): %.1f ms" % first[0])
print("check at a later position, first time (folded on from the earlier kept one): p50 %.1f ms, max %.1f ms over %d positions" % (pct(first[1:], .5), max(first[1:]), len(first) - 1))
print("check at a past position, again (kept): p50 %.2f ms, p99 %.2f ms over %d checks" % (pct(again, .5), pct(again, .99), len(again)))
now = []
for _ in range(200):
    started = time.perf_counter()
    urllib.request.urlopen(base + "/healthz").read()
    now.append((time.perf_counter() - started) * 1000)
print("/healthz from the same client: p50 %.2f ms" % pct(now, .5))
EOF
kill $SERVER; wait $SERVER || true
fi
