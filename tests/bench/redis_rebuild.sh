#!/usr/bin/env bash
# Rebuild of the Redis assertions read model from the log, beside what the
# same Redis server does with plain pipelined SETs in the same run:
#   - EVENTS assertions issued through the API (bulk, tests/bench/fill.rs)
#     into an embedded store by `ibl serve`;
#   - redis-benchmark -P 16 SET on a redis-server of the run's own;
#   - the floor: what that server spends on the writes of one assertion,
#     sent as plain commands and as variadic ones, and the rates they bound;
#   - `projections` started with REDIS_URL on that store and an empty
#     database: the time to its /healthz (it answers once its models have
#     caught up with the log), and events/s.
# Usage: tests/bench/redis_rebuild.sh [EVENTS]   (default 1000000)
# With IBL_BENCH_DATA=DIR, the filled store is kept in DIR and a later run
# with the same DIR rebuilds from it without filling again.
set -euo pipefail
cd "$(dirname "$0")/../.."
EVENTS=${1:-1000000}
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
cargo build --release --bin ibl --bin projections --example fill
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
DATA=${IBL_BENCH_DATA:-$WORK/data}
source tests/bench/ports.sh
read -r PORT REDIS_PORT < <(free_ports 2)
BASE=http://127.0.0.1:$PORT
echo "== machine: $(nproc) cores; $(date -u +%FT%TZ)"
if [ -e "$DATA" ]; then
  echo "== fill: kept in $DATA"
else
  KEY=$(target/release/ibl platform create --data-dir "$DATA" --key bench --name Bench \
    --admin-username admin --admin-email admin@example.com | python3 -c 'import json,sys;print(json.load(sys.stdin)["api_key"])')
  RUST_LOG=warn target/release/ibl serve --addr 127.0.0.1:$PORT --data-dir "$DATA" &
  FILLER=$!
  wait_port "$PORT" 3600
  CRED=$(curl -fs -X POST "$BASE/api/credentials/orgs/bench/users/admin/" -H "Authorization: Api-Token $KEY" \
    -H 'Content-Type: application/json' -d '{"name": "Rebuilt badge"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["result"]["credential_id"])')
  echo "== fill: $EVENTS assertions through the API (bulk)"
  target/release/examples/fill "$BASE" "$KEY" "$EVENTS" bench "$CRED" 4
  kill $FILLER; wait $FILLER || true
fi

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
for _ in $(seq 1 500); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.01; done
echo "== ceiling: redis-benchmark SET, pipeline 16, 1,000,000 requests"
redis-benchmark -p "$REDIS_PORT" -t set -n 1000000 -P 16 -q | tr '\r' '\n' | grep -v '^$' | tail -1
redis_cpu() { redis-cli -p "$REDIS_PORT" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ {t += $2} END {print t}'; }

# What Redis alone spends on the writes one issued assertion needs in this
# model's layout, measured by its own CPU counters (1,000,000 new keys,
# members or fields of each, pipeline 16): the record and the id's lookup
# (two new keys), the platform's and the credential's lists (two
# sorted-set entries; random scores here, where the rebuild appends in log
# order) and the holder's two fields (email and username). Once as plain
# commands (one entry each), once as variadic ones of 16 entries (MSET,
# ZADD and HSET of 16), the fewest commands any client could send.
VIEW=$(python3 -c "print('v' * 600)")
# floor ENTRIES CMD [ARGS...] -- ENTRY...: CMD ARGS and ENTRIES times the
# entry, 1,000,000 entries in all; prints and adds the CPU per entry.
floor() {
  local n=$1 before after line=() entry=()
  shift
  while [ "$1" != -- ]; do line+=("$1"); shift; done
  shift
  entry=("$@")
  for _ in $(seq 1 "$n"); do line+=("${entry[@]}"); done
  before=$(redis_cpu)
  redis-benchmark -p "$REDIS_PORT" -n $((1000000 / n)) -r 1000000000 -P 16 -q "${line[@]}" >/dev/null
  after=$(redis_cpu)
  FLOOR=$(python3 -c "print($FLOOR + $after - $before)")
  printf '  %-44s %5.2f us\n' "${line[0]} ${line[1]:0:40}" "$(python3 -c "print($after - $before)")"
}
for n in 1 16; do
  echo "== floor: one assertion's writes, $n entries a command (redis-server CPU per entry)"
  FLOOR=0
  if [ "$n" = 1 ]; then set_cmd=SET; else set_cmd=MSET; fi
  floor "$n" "$set_cmd" -- 'ibl:{bench}:assertion:__rand_int__' "$VIEW"
  floor "$n" "$set_cmd" -- 'ibl:assertion-platform:__rand_int__' bench
  floor "$n" ZADD 'ibl:{bench}:list:platform' -- __rand_int__ 'a__rand_int__'
  floor "$n" ZADD 'ibl:{bench}:list:credential:c' -- __rand_int__ 'a__rand_int__'
  floor "$n" HSET 'ibl:{bench}:holders:c' -- 'e:__rand_int__@example.com' 'a__rand_int__'
  floor "$n" HSET 'ibl:{bench}:holders:c' -- 'u:__rand_int__' 'a__rand_int__'
  python3 -c "print(f'  sum: {$FLOOR:.2f} us of redis-server CPU an assertion: at most {1e6 / $FLOOR:,.0f} assertions/s on this server')"
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
done
redis-cli -p "$REDIS_PORT" flushall >/dev/null
redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
REDIS_CPU0=$(redis_cpu)

echo "== rebuild: projections with REDIS_URL on an empty database"
START=$(date +%s.%N)
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0 RUST_LOG=warn \
  target/release/projections --addr 127.0.0.1:$PORT --data-dir "$DATA" &
PROJECTIONS=$!
wait_port "$PORT" 3600
END=$(date +%s.%N)
PROJECTIONS_CPU=$(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' /proc/$PROJECTIONS/stat)
REDIS_CPU=$(python3 -c "print($(redis_cpu) - $REDIS_CPU0)")
HEAD=$(curl -fs "$BASE/metrics" | awk '/^ibl_store_head_position / {print $2}')
LISTED=$(redis-cli -p "$REDIS_PORT" zcard 'ibl:{bench}:list:platform')
python3 -c "
s = $END - $START
print(f'{$HEAD} events in {s:.1f} s: {$HEAD / s:,.0f} events/s; {$LISTED} assertions in the platform list')
print(f'CPU: projections {$PROJECTIONS_CPU:.1f} s ({$PROJECTIONS_CPU * 1e6 / $HEAD:.1f} us/event), redis-server {$REDIS_CPU:.1f} s ({$REDIS_CPU * 1e6 / $HEAD:.1f} us/event)')"
echo "Redis memory: $(redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory_human/ {print $2}' | tr -d '\r')"
echo "== Redis's time by command (those inside scripts counted too): calls, usec in all, usec per call"
redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' | awk -F'[:,=]' '/^cmdstat_/ {
  sub("cmdstat_", "", $1); printf "%-10s %10d calls %12d usec %8.2f usec/call\n", $1, $3, $5, $7 }' | sort -k4 -n -r | head -12
