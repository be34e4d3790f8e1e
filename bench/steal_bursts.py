#!/usr/bin/env python3
"""Host steal in bursts: samples /proc/stat every WINDOW seconds until SIGTERM
or SIGINT, then prints two numbers: the largest share (%) of the machine's CPU
time the host stole in any one window, and how many windows lost more than
10%. A round's average steal hides bursts: 40% of the CPUs taken for 100 ms
is 0.4% of a 10 s round, yet it halves the server's capacity for 100 ms and
every open-model request due meanwhile waits.

Usage: bench/steal_bursts.py [WINDOW_SECONDS]   (default 0.1); run it in the
background around a measurement and stop it with kill (bench/rate.sh does).
"""
import signal
import sys
import time

window = float(sys.argv[1]) if len(sys.argv) > 1 else 0.1


def ticks():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    # user nice system idle iowait irq softirq steal
    return fields[7], sum(fields)


shares = []
stop = False


def on_signal(_signum, _frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
prev = ticks()
while not stop:
    time.sleep(window)
    cur = ticks()
    stolen, total = cur[0] - prev[0], cur[1] - prev[1]
    if total > 0:
        shares.append(100.0 * stolen / total)
    prev = cur
print("%.1f %d" % (max(shares, default=0.0), sum(1 for s in shares if s > 10.0)))
