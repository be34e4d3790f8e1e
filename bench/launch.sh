#!/usr/bin/env bash
# Launch to first request: time from just before exec to the first request's
# arrival at nginx (its access log's $msec, millisecond resolution).
# Usage (after `cargo build --release`): bench/launch.sh [ROUNDS]
set -euo pipefail
rounds=${1:-10}
bin=${CHOKEPOINT_BIN:-target/release/chokepoint}
[[ -x $bin ]] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v nginx >/dev/null || { apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
dir=$(mktemp -d)
for _try in 1 2 3 4 5; do
# A random port can collide with one still in use: pick another.
port=$((20000 + RANDOM % 20000))
cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http { log_format t '\$msec'; access_log $dir/access.log t;
  server { listen 127.0.0.1:$port; location / { return 200 "ok\n"; } } }
CONF
nginx -c "$dir/nginx.conf" 2>/dev/null && break
done
trap 'kill $(cat $dir/nginx.pid) 2>/dev/null; rm -rf "$dir"' EXIT
sleep 0.3
for ((i = 1; i <= rounds; i++)); do
  : >"$dir/access.log"
  t0=$(date +%s.%N)
  "$bin" run "http://127.0.0.1:$port/" -c 1 -n 1 --quiet >/dev/null
  sleep 0.05
  first=$(head -1 "$dir/access.log")
  awk -v a="$t0" -v b="$first" 'BEGIN{printf "%.1f\n", (b - a) * 1000}'
done | sort -g | awk '{v[NR]=$1} END{printf "launch to first request over %d runs: min %.1f ms, median %.1f ms, max %.1f ms\n", NR, v[1], v[int((NR+1)/2)], v[NR]}'
