#!/usr/bin/env bash
# Open-model accuracy against nginx on loopback: achieved rate and schedule lag,
# with the CPU each side used during the round (nginx's share of one core, and
# the generator's CPU per request) and the host's steal: at the edge of the
# server's capacity these say whether the generator or the server was the limit.
# Usage (after `cargo build --release`): bench/rate.sh [RATE] [SECONDS] [ROUNDS]
# CHOKEPOINT_BIN picks the binary (a wrapper script can add e.g. `--io epoll`).
# CAPACITY_SECS=N (default 0: off) first measures, before every round, what the
# same nginx serves at most right then (closed model, 50 connections, N s) and
# prints it with the round's utilisation (offered rate / capacity): on a shared
# machine the server's capacity moves from minute to minute, and the schedule
# lag of an open model follows how close the offered rate is to it.
# steal_max% is the largest share of the machine's CPU the host stole in any
# 100 ms of the round, and bursts how many 100 ms windows lost more than 10%
# (bench/steal_bursts.py): a burst takes the server's capacity below the
# offered rate for that moment, every connection waits on it, and the slots
# due meanwhile go out late whatever the generator does.
set -euo pipefail
rate=${1:-20000}; secs=${2:-10}; rounds=${3:-3}; cap_secs=${CAPACITY_SECS:-0}
bin=${CHOKEPOINT_BIN:-target/release/chokepoint}
[[ -x $bin ]] || { echo "build first: cargo build --release" >&2; exit 2; }
source "$(dirname "$0")/nginx.sh"
printf "%-6s %10s %10s %9s %12s %12s %12s %10s %11s %7s %10s %6s %10s %6s\n" round offered achieved ratio \
  lag_p50_ms lag_p99_ms lat_p99_ms nginx_cpu gen_us/req steal% capacity util steal_max% bursts
for ((i = 1; i <= rounds; i++)); do
  capacity=0
  if ((cap_secs > 0)); then
    "$bin" run "$url" -c 50 -z "${cap_secs}s" --json --quiet >"$nginx_dir/cap.json"
    capacity=$(summary_rps "$nginx_dir/cap.json")
  fi
  bursts_start "$nginx_dir/bursts"
  n0=$(nginx_ticks); read -r s0 t0 < <(host_ticks); w0=$(date +%s%N)
  /usr/bin/time -f "%U %S" -o "$nginx_dir/time" \
    "$bin" run "$url" --rate "$rate" -z "${secs}s" --json --quiet >"$nginx_dir/out.json"
  n1=$(nginx_ticks); read -r s1 t1 < <(host_ticks); w1=$(date +%s%N)
  bursts_stop
  python3 - "$nginx_dir/out.json" "$i" "$n0" "$n1" "$w0" "$w1" "$(steal_percent "$s0" "$t0" "$s1" "$t1")" \
    "$nginx_dir/time" "$(getconf CLK_TCK)" "$capacity" "$(cat "$nginx_dir/bursts")" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
n0, n1, w0, w1 = (int(x) for x in sys.argv[3:7])
steal = float(sys.argv[7])
user, system = (float(x) for x in open(sys.argv[8]).read().split()[-2:])
hz = float(sys.argv[9])
capacity = float(sys.argv[10])
wall = (w1 - w0) / 1e9
cap = ("%10.0f %6.3f" % (capacity, s["rate_target"] / capacity)) if capacity > 0 else "%10s %6s" % ("-", "-")
burst_max, bursts = sys.argv[11].split()
print("%-6s %10.0f %10.1f %9.4f %12.3f %12.3f %12.3f %10.2f %11.2f %7.1f %s %10s %6s" % (sys.argv[2], s["rate_target"], s["throughput_rps"],
      s["throughput_rps"] / s["rate_target"], s["schedule_lag_ms"]["p50"], s["schedule_lag_ms"]["p99"], s["latency_ms"]["p99"],
      (n1 - n0) / hz / wall, (user + system) * 1e6 / max(s["requests"], 1), steal, cap, burst_max, bursts))
PY
done
