#!/bin/bash
# Is the machine quiet enough to benchmark? Runs wrk -t1 -c50 for 2 s against
# the bench nginx and prints its req/s with the host steal and idle share of
# those 2 s (from /proc/stat). Steal above a few percent means the host is
# taking the VM's CPU: absolute figures are then not comparable, only paired
# ratios (bench/paired.sh).
cd "$(dirname "$0")/.." || exit 2
# shellcheck source=/dev/null
source bench/nginx.sh
# Idle ticks so far (/proc/stat, all CPUs), read beside host_ticks.
idle_ticks() { awk '/^cpu /{print $5}' /proc/stat; }
read -r s0 t0 < <(host_ticks); i0=$(idle_ticks)
r=$(wrk -t1 -c50 -d2s "$url" | awk '/Requests\/sec/{print $2}')
read -r s1 t1 < <(host_ticks); i1=$(idle_ticks)
echo "$(date +%H:%M) wrk $r steal% $(steal_percent "$s0" "$t0" "$s1" "$t1") idle% $(share_percent "$i0" "$t0" "$i1" "$t1")"
