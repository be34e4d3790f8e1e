#!/usr/bin/env bash
# What one short sleep costs on this machine: a thread sleeps N times for
# NANOS (clock_nanosleep, timer slack 1 ns) and prints the wall time and the
# thread's own CPU time per sleep. On a bare-metal host the CPU cost is a few
# microseconds; in a VM every sleep may also pay for arming the timer and for
# the wake-up (VM exits), which a polling loop that sleeps thousands of times
# a second pays in full. Needs a C compiler.
# Usage: bench/sleepcost.sh [NANOS...]   (default: 10000 30000 100000)
set -euo pipefail
command -v cc >/dev/null || { echo "needs a C compiler (cc)" >&2; exit 2; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
cat >"$dir/sleep.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>
static double ns(struct timespec a, struct timespec b) {
  return (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
}
int main(int argc, char **argv) {
  long nanos = atol(argv[1]);
  int n = 20000;
  prctl(PR_SET_TIMERSLACK, 1);
  struct timespec ts = {0, nanos}, w0, w1, c0, c1;
  clock_gettime(CLOCK_MONOTONIC, &w0);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
  for (int i = 0; i < n; i++) clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, 0);
  clock_gettime(CLOCK_MONOTONIC, &w1);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
  printf("sleep %6ld ns x %d: wall %.1f us, thread CPU %.2f us per sleep\n", nanos, n,
         ns(w0, w1) / n / 1000, ns(c0, c1) / n / 1000);
  return 0;
}
C
cc -O2 -o "$dir/sleep" "$dir/sleep.c"
[[ $# -gt 0 ]] || set -- 10000 30000 100000
for nanos in "$@"; do "$dir/sleep" "$nanos"; done
