#!/usr/bin/env bash
# Where the CPU goes, per side, against one nginx worker on loopback at
# CONNECTIONS (closed model): `perf record -g` of the generator (chokepoint,
# or any chokepoint binary given) or of the nginx worker while a tool runs.
# Prints the top symbols by self time (or, with CHILDREN=1, by inclusive time).
#
# Usage (after `cargo build --release`; needs perf):
#   bench/profile.sh gen   SECONDS CONNECTIONS [BIN]
#   bench/profile.sh nginx SECONDS CONNECTIONS wrk|cp|BIN
# Examples: bench/profile.sh gen 3 50
#           bench/profile.sh nginx 3 50 wrk
set -euo pipefail
[[ $# -ge 3 ]] || { sed -n '2,11p' "$0"; exit 2; }
side=$1; secs=$2; conns=$3; tool=${4:-}
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 2; }
source bench/nginx.sh
data=$nginx_dir/perf.data
sort_mode=--no-children; [[ ${CHILDREN:-0} == 1 ]] && sort_mode=--children
case $side in
  gen)
    bin=${tool:-target/release/chokepoint}
    perf record -q -g -o "$data" -- "$bin" run "$url" -c "$conns" -z "${secs}s" --quiet >/dev/null 2>&1 ;;
  nginx)
    if [[ $tool == wrk ]]; then
      wrk -t1 -c"$conns" -d"$((secs + 1))s" "$url" >/dev/null 2>&1 &
    else
      [[ $tool == cp || -z $tool ]] && tool=target/release/chokepoint
      "$tool" run "$url" -c "$conns" -z "$((secs + 1))s" --quiet >/dev/null 2>&1 &
    fi
    sleep 0.5
    perf record -q -g -o "$data" -p "$nginx_worker" -- sleep "$secs" >/dev/null 2>&1
    wait ;;
  *) echo "side is gen or nginx, not $side" >&2; exit 2 ;;
esac
perf report -i "$data" $sort_mode -g none --sort dso 2>/dev/null | grep -E '^ +[0-9]' | head -4
perf report -i "$data" $sort_mode -g none --sort sym 2>/dev/null | grep -E '^ +[0-9]' | head -"${TOP:-30}"
