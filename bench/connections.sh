#!/usr/bin/env bash
# Many concurrent connections: open model against a loopback server that holds
# every response HOLD ms, so about RATE × HOLD connections are open at once.
# Reports peak connections and chokepoint's peak RSS.
# Usage (after `cargo build --release -p chokepoint -p chokepoint-engine --examples`):
#   bench/connections.sh [RATE] [SECONDS] [HOLD_MS]
set -euo pipefail
rate=${1:-10000}; secs=${2:-5}; hold=${3:-1000}
bin=${CHOKEPOINT_BIN:-target/release/chokepoint}
server=target/release/examples/hold_server
[[ -x $bin && -x $server ]] || { echo "build first: cargo build --release -p chokepoint -p chokepoint-engine --examples" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
"$server" "$hold" >"$work/server.out" &
server_pid=$!
trap 'kill $server_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do grep -q listening "$work/server.out" && break; sleep 0.1; done
url=$(awk '{print $3}' "$work/server.out")/
/usr/bin/time -f "%M" -o "$work/rss" "$bin" run "$url" --rate "$rate" -z "${secs}s" --timeout 10s --max-connections 20000 --json --quiet >"$work/out.json"
python3 - "$work/out.json" "$(cat "$work/rss")" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("offered %.0f/s  completed %d  ok %d  errors %s  peak connections %d  latency p50 %.0f ms p99 %.0f ms  peak RSS %.1f MiB" % (
    s["rate_target"], s["requests"], s["ok"], s["errors"], s["peak_connections"],
    s["latency_ms"]["p50"], s["latency_ms"]["p99"], int(sys.argv[2]) / 1024))
PY
