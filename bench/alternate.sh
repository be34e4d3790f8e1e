#!/usr/bin/env bash
# Alternates wrk and chokepoint (closed model, CONNECTIONS connections)
# against the bench nginx, one run of SECONDS each, ROUNDS times, and prints
# one line per run: what it served, its requests per CPU-second, the share
# of one core it used, its voluntary and involuntary context switches per
# 1,000 requests (a voluntary one is a sleep), the nginx worker's CPU
# microseconds and voluntary context switches per request it served, and
# the largest share of the machine's CPU the host stole in any 100 ms of
# the run (bench/steal_bursts.py). A long series shows how each tool's cost
# moves as the host speeds up or slows down; the summary line gives the
# medians of the pairwise ratios (chokepoint over the wrk run before it).
# Usage (after `cargo build --release`): bench/alternate.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
rounds=${1:-10}; secs=${2:-5}; conns=${3:-50}
cd "$(dirname "$0")/.."
bin=${CHOKEPOINT_BIN:-target/release/chokepoint}
# shellcheck source=/dev/null
source bench/nginx.sh
out=$nginx_dir/out; cpu=$nginx_dir/cpu; bursts=$nginx_dir/bursts
nginx_switches() { awk '/^voluntary_ctxt/{print $2}' "/proc/$nginx_worker/status"; }
for ((i = 0; i < rounds; i++)); do
  for t in wrk cp; do
    bursts_start "$bursts"
    w0=$(nginx_ticks); v0=$(nginx_switches)
    if [[ $t == wrk ]]; then
      /usr/bin/time -f "%U %S %w %c" -o "$cpu" wrk -t1 -c"$conns" -d"${secs}s" "$url" >"$out" 2>&1
      rps=$(awk '/Requests\/sec/{print $2}' "$out")
    else
      /usr/bin/time -f "%U %S %w %c" -o "$cpu" "$bin" run "$url" -c "$conns" -z "${secs}s" --json --quiet >"$out"
      rps=$(summary_rps "$out")
    fi
    w1=$(nginx_ticks); v1=$(nginx_switches)
    bursts_stop
    read -r burst _ <"$bursts"
    echo "$(date +%H:%M:%S) $t $rps $(cat "$cpu") $((w1 - w0)) $((v1 - v0)) $burst"
  done
done | python3 -c '
import sys, statistics as st
secs, hz = float(sys.argv[1]), float(sys.argv[2])
rows = []
print("%-9s%-5s%9s%10s%6s%9s%10s%11s%13s%7s" % ("time", "tool", "req/s", "req/cpu-s", "core", "vcs/kreq", "ivcs/kreq", "srv_us/req", "srv_vcs/kreq", "burst%"))
for line in sys.stdin:
    at, tool, rps, us, sy, vcs, ivcs, ticks, svcs, burst = line.split()
    n = max(float(rps) * secs, 1.0); cpu = float(us) + float(sy)
    row = (tool, float(rps), n / max(cpu, 1e-9), cpu / secs)
    rows.append(row)
    print(f"{at:<9}{tool:<5}{float(rps):>9.0f}{row[2]:>10.0f}{row[3]:>6.2f}{1000*int(vcs)/n:>9.2f}{1000*int(ivcs)/n:>10.2f}"
          f"{float(ticks)/hz*1e6/n:>11.2f}{1000*int(svcs)/n:>13.2f}{float(burst):>7.0f}", flush=True)
pairs = [(c[1] / w[1], c[2] / w[2], c[3] / w[3]) for w, c in zip(rows[::2], rows[1::2])]
if pairs:
    print("chokepoint/wrk medians over %d pairs: throughput %.3f efficiency %.3f core share %.3f" % (
        len(pairs), st.median(p[0] for p in pairs), st.median(p[1] for p in pairs), st.median(p[2] for p in pairs)))
' "$secs" "$(getconf CLK_TCK)"
