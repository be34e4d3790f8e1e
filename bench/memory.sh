#!/usr/bin/env bash
# Bounded memory: peak RSS of a 1M-request run versus a 10M-request run
# (closed model against nginx on loopback). The difference should be noise.
# Usage (after `cargo build --release`): bench/memory.sh [SMALL] [LARGE] [CONNECTIONS]
set -euo pipefail
small=${1:-1000000}; large=${2:-10000000}; conns=${3:-50}
bin=${CHOKEPOINT_BIN:-target/release/chokepoint}
[[ -x $bin ]] || { echo "build first: cargo build --release" >&2; exit 2; }
source "$(dirname "$0")/nginx.sh"
for n in "$small" "$large"; do
  /usr/bin/time -f "%M" -o "$nginx_dir/rss" "$bin" run "$url" -c "$conns" -n "$n" --json --quiet --out "$nginx_dir/run-$n" >"$nginx_dir/out.json"
  python3 - "$nginx_dir/out.json" "$(cat "$nginx_dir/rss")" "$n" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("requests %10d  completed %10d  %8.0f req/s  %6.1f s  peak RSS %7.1f MiB" % (int(sys.argv[3]), s["requests"],
      s["throughput_rps"], s["duration_s"], int(sys.argv[2]) / 1024))
PY
done
