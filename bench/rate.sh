#!/usr/bin/env bash
# Open-model accuracy against nginx on loopback: achieved rate and schedule lag.
# Usage (after `cargo build --release`): bench/rate.sh [RATE] [SECONDS] [ROUNDS]
set -euo pipefail
rate=${1:-20000}; secs=${2:-10}; rounds=${3:-3}
bin=${CHOKEPOINT_BIN:-target/release/chokepoint}
[[ -x $bin ]] || { echo "build first: cargo build --release" >&2; exit 2; }
source "$(dirname "$0")/nginx.sh"
printf "%-6s %10s %10s %9s %12s %12s %12s\n" round offered achieved ratio lag_p50_ms lag_p99_ms lat_p99_ms
for ((i = 1; i <= rounds; i++)); do
  "$bin" run "$url" --rate "$rate" -z "${secs}s" --json --quiet >"$nginx_dir/out.json"
  python3 - "$nginx_dir/out.json" "$i" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("%-6s %10.0f %10.1f %9.4f %12.3f %12.3f %12.3f" % (sys.argv[2], s["rate_target"], s["throughput_rps"],
      s["throughput_rps"] / s["rate_target"], s["schedule_lag_ms"]["p50"], s["schedule_lag_ms"]["p99"], s["latency_ms"]["p99"]))
PY
done
