#!/bin/bash
# Is the machine quiet enough to benchmark? Runs wrk -t1 -c50 for 2 s against
# the bench nginx and prints its req/s with the host steal and idle share of
# those 2 s (from /proc/stat). Steal above a few percent means the host is
# taking the VM's CPU: absolute figures are then not comparable, only paired
# ratios (bench/paired.sh).
cd "$(dirname "$0")/.." || exit 2
# shellcheck source=/dev/null
source bench/nginx.sh
a=$(head -1 /proc/stat)
r=$(wrk -t1 -c50 -d2s "$url" | awk '/Requests\/sec/{print $2}')
b=$(head -1 /proc/stat)
python3 -c "
a='$a'.split()[1:]; b='$b'.split()[1:]
d=[int(y)-int(x) for x,y in zip(a,b)]
t=sum(d[:8]); print('$(date +%H:%M)', 'wrk', '$r', 'steal%', round(100*d[7]/t,1), 'idle%', round(100*d[3]/t,1))"
