#!/usr/bin/env bash
# Runs every test of the repository on a fresh machine, installing what it
# needs first. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 python3-venv; }
# The relay's tests start their own `nats-server -js` on a free port.
command -v nats-server >/dev/null || { apt-get update -qq && apt-get install -y -qq nats-server; }
# The Redis read model's tests start their own `redis-server` on a free port.
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }

# Every server the tests start signs its audit checkpoints with a key in
# this run's own configuration folder, not the user's.
XDG_CONFIG_HOME=$(mktemp -d)
export XDG_CONFIG_HOME
trap 'rm -rf "$XDG_CONFIG_HOME"' EXIT

echo "== formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== Rust tests"
if [ -z "${EVENTSTORE_URL:-}" ]; then
  echo "EventStoreDB adapter: its contract suite is skipped, EVENTSTORE_URL is not set (no EventStoreDB server can be installed on this machine; set EVENTSTORE_URL=esdb://host:2113?tls=false to run it)"
fi
cargo test --workspace

echo "== iblai client compatibility"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/compat/requirements.txt
cargo build --bins
IBL_BIN="$PWD/target/debug/ibl" .venv/bin/python -m pytest tests/compat -q
echo "== iblai client compatibility, split deployment (three services, Redis, a gateway)"
IBL_SPLIT=1 IBL_BIN="$PWD/target/debug/ibl" .venv/bin/python -m pytest tests/compat -q
