#!/usr/bin/env bash
# The HTTP API side by side: requests/s with batches of 1 and 100 items (record writes to
# distinct names, then reads), corestream (1 shard on cpu 0) against the reference deepstream
# 7.0.2 (node on cpu 0), wrk on cpu 1 with keep-alive. Also connect+login over TLS vs plain
# and the cost of scraping /metrics under load. One run; ratios are what to read.
# Usage: perf/http_api.sh [seconds]   (needs wrk, node, ../shared/peer)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
secs="${1:-10}"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release -q --manifest-path "$root/Cargo.toml" --bin corestream
bin="$root/target/release/corestream"

make_body() { # items kind
  python3 - "$1" "$2" > "$work/body-$2-$1.json" <<'PY'
import json, sys
n, kind = int(sys.argv[1]), sys.argv[2]
if kind == "write":
    items = [{"topic": "record", "action": "write", "recordName": f"bench/{i}", "data": {"i": i, "v": "x" * 32}} for i in range(n)]
else:
    items = [{"topic": "record", "action": "read", "recordName": f"bench/{i}"} for i in range(n)]
print(json.dumps({"body": items}))
PY
}
for n in 1 100; do make_body $n write; make_body $n read; done
cat > "$work/post.lua" <<'EOF2'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY"), "r"); wrk.body = f:read("*a"); f:close()
EOF2

wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

run_wrk() { # port body connections
  BODY="$2" taskset -c 1 wrk -t1 -c"$3" -d"${secs}s" -s "$work/post.lua" "http://127.0.0.1:$1/api" \
    | awk '/Requests\/sec/ {print $2}'
}

port_cs=6071; port_ref=6072
cat > "$work/cs.yml" <<EOF2
logLevel: WARN
EOF2
taskset -c 0 "$bin" start --cores 1 --host 127.0.0.1 --port $port_cs -c "$work/cs.yml" > /dev/null 2>&1 &
sed "s/port: 6020/port: $port_ref/" "$root/../shared/peer/config.yml" > "$work/ref.yml"
cp "$root/../shared/peer/permissions.yml" "$work/"
taskset -c 0 bash "$root/../shared/peer/run.sh" "$work/ref.yml" > /dev/null 2>&1 &
wait_port $port_cs; wait_port $port_ref; sleep 2

echo "| batch | kind | corestream req/s | reference req/s | ratio |"
echo "|---|---|---|---|---|"
for n in 1 100; do
  for kind in write read; do
    conns=$([ $n = 1 ] && echo 64 || echo 16)
    cs=$(run_wrk $port_cs "$work/body-$kind-$n.json" $conns)
    ref=$(run_wrk $port_ref "$work/body-$kind-$n.json" $conns)
    ratio=$(python3 -c "print(f'{float(\"$cs\")/max(float(\"$ref\"),1e-9):.1f}x')")
    echo "| $n | $kind | $cs | $ref | $ratio |"
  done
done
