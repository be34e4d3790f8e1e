#!/usr/bin/env bash
# The floor of a load generator's CPU per request on this machine, in one run:
# wrk, chokepoint, and a client that only sends and receives (bench/floor:
# epoll, io_uring, io_uring waiting for 25 completions per syscall), all
# closed-model at CONNECTIONS against one nginx worker, alternating.
# Usage (after `cargo build --release`): bench/floor.sh [SECONDS] [ROUNDS] [CONNECTIONS]
set -euo pipefail
secs=${1:-8}; rounds=${2:-5}; conns=${3:-50}
bin=${CHOKEPOINT_BIN:-target/release/chokepoint}
[[ -x $bin ]] || { echo "build first: cargo build --release" >&2; exit 2; }
cargo build --release -q --manifest-path "$(dirname "$0")/floor/Cargo.toml"
floor=$(dirname "$0")/floor/target/release/floor
source "$(dirname "$0")/nginx.sh"
hostport=${url#http://}; hostport=${hostport%/}
out=$nginx_dir/out; cpu=$nginx_dir/cpu
declare -A R C
tools=(wrk chokepoint floor-epoll floor-uring floor-uring-25)
for ((i = 0; i < rounds; i++)); do
  for t in "${tools[@]}"; do
    case $t in
      wrk) /usr/bin/time -f "%U %S" -o "$cpu" wrk -t1 -c"$conns" -d"${secs}s" "$url" >"$out" 2>&1
           rps=$(awk '/Requests\/sec/{print $2}' "$out") ;;
      chokepoint) /usr/bin/time -f "%U %S" -o "$cpu" "$bin" run "$url" -c "$conns" -z "${secs}s" --json --quiet >"$out"
           rps=$(summary_rps "$out") ;;
      floor-epoll) /usr/bin/time -f "%U %S" -o "$cpu" "$floor" "$hostport" "$conns" "$secs" epoll >"$out"
           rps=$(awk '{print $3}' "$out") ;;
      floor-uring) /usr/bin/time -f "%U %S" -o "$cpu" "$floor" "$hostport" "$conns" "$secs" uring 1 >"$out"
           rps=$(awk '{print $3}' "$out") ;;
      floor-uring-25) /usr/bin/time -f "%U %S" -o "$cpu" "$floor" "$hostport" "$conns" "$secs" uring 25 >"$out"
           rps=$(awk '{print $3}' "$out") ;;
    esac
    R[$t]+="$rps "; C[$t]+="$(awk '{print $1+$2}' "$cpu") "
  done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
printf "%-15s %10s %8s %14s %12s %12s\n" tool rps cpu_s req_per_cpu_s rps_vs_wrk eff_vs_wrk
wrps=$(echo "${R[wrk]}" | median); weff=$(awk -v r="$wrps" -v c="$(echo "${C[wrk]}" | median)" -v s="$secs" 'BEGIN{print r*s/c}')
for t in "${tools[@]}"; do
  rps=$(echo "${R[$t]}" | median); c=$(echo "${C[$t]}" | median)
  awk -v t="$t" -v r="$rps" -v c="$c" -v s="$secs" -v wr="$wrps" -v we="$weff" \
    'BEGIN{e=r*s/c; printf "%-15s %10.0f %8.2f %14.0f %12.3f %12.3f\n", t, r, c, e, r/wr, e/we}'
done
