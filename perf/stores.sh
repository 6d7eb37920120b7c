#!/usr/bin/env bash
# Acknowledged record writes, side by side in one run:
#   1. corestream vs the reference deepstream 7.0.2, each with the Redis cache and PostgreSQL
#      storage (cache-redis 2.0.9, storage-postgres 3.0.4 for the reference; the same Redis,
#      PostgreSQL, key prefix layout and writeInterval for both), each server on cpu 0;
#   2. corestream's durable embedded store vs its memory store, one shard on cpu 0.
# The loader (corestream-load acked-writes: writers keeping one acknowledged write in flight on
# each of their records) runs on cpu 1. Prints each run's table and the ratios.
#
# Usage: perf/stores.sh [seconds]   (needs Redis on 6379, PostgreSQL on 5432, ../shared/peer, and
# the reference's connector plugins, which tests/store_compat.rs installs in target/tmp)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-10}"
bin="$here/target/release/corestream"
load="$here/target/release/corestream-load"
peer_home="$here/target/tmp/peer-with-connectors"
[ -x "$bin" ] && [ -x "$load" ] || { echo "build first: cargo build --release --workspace" >&2; exit 1; }
[ -d "$peer_home/node_modules/@deepstream/storage-postgres" ] ||
  { echo "run cargo test --test store_compat first (it installs the reference's plugins)" >&2; exit 1; }
work="$(mktemp -d)"
tag="cs_perf_$$"
port=7301
cleanup() {
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -d test -qc "DROP SCHEMA IF EXISTS \"$tag\" CASCADE" >/dev/null 2>&1 || true
  redis-cli --scan --pattern "$tag:*" | xargs -r redis-cli del >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

layers="cache:
  name: redis
  options: {host: 127.0.0.1, port: 6379, keyPrefix: '$tag:'}
storage:
  name: postgres
  options: {host: 127.0.0.1, port: 5432, user: postgres, database: test, schema: $tag}
"
cat >"$work/corestream.yml" <<EOF
connectionEndpoints:
  - type: ws-binary
$layers
EOF
cat >"$work/reference.yml" <<EOF
serverName: reference
showLogo: false
logger: {type: default, options: {colors: false, logLevel: WARN}}
httpServer: {type: default, options: {host: 127.0.0.1, port: $port}}
connectionEndpoints:
  - type: ws-binary
    options: {urlPath: /deepstream}
auth:
  - type: none
$layers
EOF
cat >"$work/embedded.yml" <<EOF
connectionEndpoints:
  - type: ws-binary
storage:
  name: embedded
  options: {path: $work/data}
EOF
cat >"$work/memory.yml" <<EOF
connectionEndpoints:
  - type: ws-binary
EOF

wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return; sleep 0.1; done; echo "no server on $port" >&2; exit 1; }
run() { # label, loader args...
  local label="$1"; shift
  wait_port; sleep 2
  echo "== $label"
  taskset -c 1 "$load" --url "ws://127.0.0.1:$port/deepstream" --cpus 1 --duration "$secs" --json acked-writes "$@" \
    | tee "$work/$label.json" | python3 -c 'import json,sys; r=json.load(sys.stdin); [print(f"  {k:40} {v}") for k,v in r.items()]'
  kill "$server"; wait "$server" 2>/dev/null || true; server=
}
rate() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r.get("acknowledged writes/s", 0))' "$1"; }

# Writes wait up to writeInterval (200 ms) to be grouped, so a server is only busy with
# thousands in flight: 16 writers, 512 records each.
args=(--writers 16 --inflight 512)
taskset -c 0 "$bin" start --host 127.0.0.1 --port "$port" --cores 1 -c "$work/corestream.yml" >/dev/null & server=$!
run corestream-redis-postgres "${args[@]}"
PEER_HOME="$peer_home" taskset -c 0 bash /work/shared/peer/run.sh "$work/reference.yml" >/dev/null 2>&1 & server=$!
run reference-redis-postgres "${args[@]}"
taskset -c 0 "$bin" start --host 127.0.0.1 --port "$port" --cores 1 -c "$work/embedded.yml" >/dev/null & server=$!
run corestream-embedded --writers 4 --inflight 64
taskset -c 0 "$bin" start --host 127.0.0.1 --port "$port" --cores 1 -c "$work/memory.yml" >/dev/null & server=$!
run corestream-memory --writers 4 --inflight 64

ours="$(rate "$work/corestream-redis-postgres.json")"; theirs="$(rate "$work/reference-redis-postgres.json")"
emb="$(rate "$work/corestream-embedded.json")"; mem="$(rate "$work/corestream-memory.json")"
python3 - "$ours" "$theirs" "$emb" "$mem" <<'EOF'
import sys
ours, theirs, emb, mem = map(float, sys.argv[1:])
print(f"acknowledged writes/s, Redis + PostgreSQL: corestream {ours:.0f}, reference {theirs:.0f}, ratio {ours / max(theirs, 1):.1f}x")
print(f"acknowledged writes/s, one shard: embedded {emb:.0f}, memory {mem:.0f}, ratio {emb / max(mem, 1):.2f}")
EOF
