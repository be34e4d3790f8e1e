#!/usr/bin/env bash
# Open-model latency against oha in the same run: both tools at the same rate
# against one nginx worker on loopback, alternating, coordinated omission
# corrected on both sides (chokepoint always; oha with --latency-correction).
# Usage (after `cargo build --release`; oha from `cargo install --locked oha`):
#   bench/p50.sh [RATE] [SECONDS] [ROUNDS]
# Prints each round's P50/P99 (ms) per tool and the median P50 ratio chokepoint/oha.
set -euo pipefail
rate=${1:-1000}; secs=${2:-10}; rounds=${3:-5}
bin=${CHOKEPOINT_BIN:-target/release/chokepoint}
[[ -x $bin ]] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v oha >/dev/null || { echo "oha not found: cargo install --locked oha" >&2; exit 2; }
source "$(dirname "$0")/nginx.sh"
printf "%-6s %-11s %10s %10s %10s\n" round tool requests p50_ms p99_ms
for ((i = 1; i <= rounds; i++)); do
  "$bin" run "$url" --rate "$rate" -z "${secs}s" --json --quiet >"$nginx_dir/cp.json"
  oha -q "$rate" --latency-correction -z "${secs}s" --no-tui --output-format json "$url" >"$nginx_dir/oha.json"
  python3 - "$nginx_dir" "$i" <<'PY'
import json, sys
d, i = sys.argv[1], sys.argv[2]
cp = json.load(open(d + "/cp.json")); oha = json.load(open(d + "/oha.json"))
print("%-6s %-11s %10d %10.3f %10.3f" % (i, "chokepoint", cp["requests"], cp["latency_ms"]["p50"], cp["latency_ms"]["p99"]))
n = sum(oha["statusCodeDistribution"].values())
lp = oha["latencyPercentiles"]
print("%-6s %-11s %10d %10.3f %10.3f" % (i, "oha", n, lp["p50"] * 1e3, lp["p99"] * 1e3))
with open(d + "/ratios", "a") as f:
    f.write("%f\n" % (cp["latency_ms"]["p50"] / (lp["p50"] * 1e3)))
PY
done
python3 - "$nginx_dir/ratios" <<'PY'
import statistics, sys
r = [float(x) for x in open(sys.argv[1])]
print("P50 ratio chokepoint/oha: median %.3f (rounds: %s)" % (statistics.median(r), " ".join("%.3f" % x for x in r)))
PY
