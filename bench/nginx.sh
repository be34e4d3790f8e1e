# Sourced by the bench scripts: starts one nginx worker on a loopback port and
# sets $url; stops it on exit. Installs nginx from Debian's packages if missing.
command -v nginx >/dev/null || { apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
nginx_dir=$(mktemp -d)
nginx_up=
for _try in 1 2 3 4 5; do
  # A random port can collide with an ephemeral port still in use: pick another.
  nginx_port=$((20000 + RANDOM % 20000))
cat >"$nginx_dir/nginx.conf" <<CONF
worker_processes 1;
pid $nginx_dir/nginx.pid;
error_log $nginx_dir/error.log;
events { worker_connections 16384; }
worker_rlimit_nofile 65536;
http { access_log off; keepalive_requests 100000000;
  server { listen 127.0.0.1:$nginx_port backlog=4096; location / { return 200 "hello world\n"; } } }
CONF
nginx -c "$nginx_dir/nginx.conf" 2>/dev/null && { nginx_up=1; break; }
done
[[ -n $nginx_up ]] || { echo "nginx could not start" >&2; exit 1; }
trap 'kill $(cat $nginx_dir/nginx.pid) 2>/dev/null; rm -rf "$nginx_dir"' EXIT
url=http://127.0.0.1:$nginx_port/
sleep 0.3
# The worker's CPU time so far, in clock ticks (getconf CLK_TCK per second):
# what serving the load cost the server.
nginx_worker=$(pgrep -P "$(cat "$nginx_dir/nginx.pid")" | head -1)
nginx_ticks() { awk '{print $14 + $15}' "/proc/$nginx_worker/stat"; }
# The host's CPU time so far (/proc/stat, all CPUs): "stolen total", in ticks.
host_ticks() { awk '/^cpu /{t=0; for (i=2;i<=9;i++) t+=$i; print $9, t}' /proc/stat; }
# share_percent A0 T0 A1 T1: how much (%) of the host's CPU time between two
# readings went to one kind of tick (A, read beside the total T).
share_percent() { awk -v a="$1" -v c="$2" -v b="$3" -v d="$4" 'BEGIN{t=d-c; if (t<1) t=1; printf "%.1f", 100*(b-a)/t}'; }
# steal_percent S0 T0 S1 T1: the share of CPU time (%) the host stole between
# two host_ticks readings.
steal_percent() { share_percent "$@"; }
# summary_rps FILE: the throughput_rps of a chokepoint --json summary.
summary_rps() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["throughput_rps"])' "$1"; }
# bursts_start FILE ... bursts_stop: bench/steal_bursts.py in the background
# around one measurement; FILE then holds its "largest% windows" line.
bursts_start() { python3 "$(dirname "${BASH_SOURCE[0]}")/steal_bursts.py" >"$1" & bursts_pid=$!; }
bursts_stop() { kill "$bursts_pid"; wait "$bursts_pid" || true; }
