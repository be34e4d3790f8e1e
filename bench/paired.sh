#!/usr/bin/env bash
# Paired comparison of load generators against one nginx worker on loopback:
# every round runs each tool once, in an order that rotates from round to
# round, and the ratios to the first tool are taken within the round (a noisy
# shared machine moves every tool of a round together). Prints per tool the
# medians of throughput and requests per CPU-second, and the median and every
# round's ratios (throughput/efficiency) to the first tool, and the nginx
# worker's CPU microseconds per request it served (srv_us/req: at saturation
# the server's cost per request is what sets throughput).
#
# Usage (after `cargo build --release`):
#   bench/paired.sh SECONDS ROUNDS CONNECTIONS TOOL...
# CONNECTIONS may be rate=N: chokepoint tools then run the open model at N
# requests per second (--rate N) instead (compare srv_us/req: what the same
# offered load costs the server with each build).
# TOOL is one of
#   wrk                    wrk -t1 -cCONNECTIONS
#   wrk:ARGS               the same with extra arguments, commas for spaces
#                          (wrk:-H,User-Agent:chokepoint/0.1.0)
#   oha                    oha -cCONNECTIONS (cargo install oha)
#   cp                     target/release/chokepoint run URL -c CONNECTIONS
#   cp:ARGS                the same with extra arguments, commas for spaces
#                          (cp:--io,epoll  cp:--threads,2)
#   bin=PATH[:ARGS]        another chokepoint binary (a build to compare with)
#   floor:MODE[:BATCH[:MIN_WAIT_US]]   bench/floor (see bench/floor.sh)
# Each run's share of the machine's CPU time stolen by the host (the steal
# column of /proc/stat) is recorded; a round in which any run saw more than
# MAX_STEAL percent (default 3) is left out of the medians and shown in
# brackets. So is a round in which any run lost more than MAX_BURST percent
# (default 100: off) of the machine's CPU to the host within some 100 ms
# (bench/steal_bursts.py); each round's largest such burst is printed.
# Example: bench/paired.sh 4 10 50 wrk cp cp:--io,epoll
set -euo pipefail
[[ $# -ge 4 ]] || { sed -n '2,32p' "$0"; exit 2; }
secs=$1; rounds=$2; conns=$3; shift 3
tools=("$@")
cd "$(dirname "$0")/.."
cp_bin=${CHOKEPOINT_BIN:-target/release/chokepoint}
for t in "${tools[@]}"; do
  [[ $t == floor* ]] && { cargo build --release -q --manifest-path bench/floor/Cargo.toml; break; }
done
floor=bench/floor/target/release/floor
if [[ $conns == rate=* ]]; then
  for t in "${tools[@]}"; do
    [[ $t == cp* || $t == bin=* ]] || { echo "rate=N compares chokepoint builds only, not $t" >&2; exit 2; }
  done
fi
source bench/nginx.sh
hostport=${url#http://}; hostport=${hostport%/}
out=$nginx_dir/out; cpu=$nginx_dir/cpu; res=$nginx_dir/results
: >"$res"
run_chokepoint() { # BIN ARGS(comma-separated)
  local extra=()
  [[ -n $2 ]] && IFS=, read -r -a extra <<<"$2"
  local load=(-c "$conns")
  [[ $conns == rate=* ]] && load=(--rate "${conns#rate=}")
  /usr/bin/time -f "%U %S" -o "$cpu" "$1" run "$url" "${load[@]}" -z "${secs}s" --json --quiet "${extra[@]}" >"$out"
  summary_rps "$out"
}
for ((i = 0; i < rounds; i++)); do
  n=${#tools[@]}
  for ((k = 0; k < n; k++)); do
    t=${tools[$(((k + i) % n))]}
    bursts_start "$nginx_dir/bursts"
    read -r s0 t0 < <(host_ticks)
    w0=$(nginx_ticks)
    case $t in
      wrk | wrk:*) extra=()
           [[ $t == wrk:* ]] && IFS=, read -r -a extra <<<"${t#wrk:}"
           /usr/bin/time -f "%U %S" -o "$cpu" wrk -t1 -c"$conns" -d"${secs}s" "${extra[@]}" "$url" >"$out" 2>&1
           rps=$(awk '/Requests\/sec/{print $2}' "$out") ;;
      oha) /usr/bin/time -f "%U %S" -o "$cpu" oha -c "$conns" -z "${secs}s" --no-tui "$url" >"$out" 2>&1
           rps=$(awk '/Requests\/sec/{print $2}' "$out") ;;
      cp) rps=$(run_chokepoint "$cp_bin" "") ;;
      cp:*) rps=$(run_chokepoint "$cp_bin" "${t#cp:}") ;;
      bin=*) spec=${t#bin=}; rps=$(run_chokepoint "${spec%%:*}" "$([[ $spec == *:* ]] && echo "${spec#*:}")") ;;
      floor:*) IFS=: read -r _ mode batch minwait <<<"$t"
           /usr/bin/time -f "%U %S" -o "$cpu" "$floor" "$hostport" "$conns" "$secs" "$mode" ${batch:-1} ${minwait:-} >"$out" 2>/dev/null
           rps=$(awk '{print $3}' "$out") ;;
      *) echo "unknown tool $t" >&2; exit 2 ;;
    esac
    read -r s1 t1 < <(host_ticks)
    w1=$(nginx_ticks)
    bursts_stop
    read -r burst _ <"$nginx_dir/bursts"
    echo "$i $t $rps $(awk '{print $1+$2}' "$cpu") $(steal_percent "$s0" "$t0" "$s1" "$t1") $((w1 - w0)) $burst" >>"$res"
  done
done
python3 - "$res" "$secs" "${MAX_STEAL:-3}" "$(getconf CLK_TCK)" "${MAX_BURST:-100}" "${tools[@]}" <<'PY'
import sys, statistics as st
res, secs, max_steal, hz, max_burst, tools = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6:]
by, stolen, server, bursts = {}, {}, {}, {}
for line in open(res):
    i, t, r, c, s, w, b = line.split()
    bursts[int(i)] = max(bursts.get(int(i), 0.0), float(b))
    by.setdefault(int(i), {})[t] = (float(r), float(c))
    # nginx CPU microseconds per request served
    server.setdefault(t, {})[int(i)] = float(w) / hz * 1e6 / max(float(r) * secs, 1.0)
    stolen[int(i)] = max(stolen.get(int(i), 0.0), float(s))
kept = [i for i in sorted(by) if stolen[i] <= max_steal and bursts[i] <= max_burst]
print("steal % per round (worst run): " + " ".join(f"{stolen[i]:.1f}" if i in kept else f"[{stolen[i]:.1f}]" for i in sorted(by)))
print("largest 100 ms steal % per round: " + " ".join(f"{bursts[i]:.0f}" if i in kept else f"[{bursts[i]:.0f}]" for i in sorted(by)))
if not kept:
    sys.exit(f"every round saw more than {max_steal}% steal or a burst over {max_burst}%: nothing to report (MAX_STEAL=100 MAX_BURST=100 show them anyway)")
ref = tools[0]
print(f"{len(kept)} of {len(by)} rounds kept")
print(f"{'tool':<26}{'req/s':>9}{'req/cpu-s':>11}{'srv_us/req':>11}{'thr/' + ref[:6]:>11}{'eff/' + ref[:6]:>11}  per round: throughput ratio / efficiency ratio")
for t in tools:
    rows = [by[i][t] for i in kept]
    refs = [by[i][ref] for i in kept]
    eff = [r * secs / c for r, c in rows]
    thr = [r / q for (r, _), (q, _) in zip(rows, refs)]
    er = [(r / c) / (q / d) for (r, c), (q, d) in zip(rows, refs)]
    srv = st.median(server[t][i] for i in kept)
    print(f"{t[-26:]:<26}{st.median(r for r, _ in rows):>9.0f}{st.median(eff):>11.0f}{srv:>11.2f}"
          f"{st.median(thr):>11.3f}{st.median(er):>11.3f}  " + " ".join(f"{x:.2f}/{y:.2f}" for x, y in zip(thr, er)))
PY
