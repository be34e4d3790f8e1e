#!/usr/bin/env bash
# Trace-analysis benchmark: N spans (default 1,000,000) as OTLP/JSON lines, shaped like
# the lab's checkout (11 spans per trace, 1% of traces with a planted 40-80 ms pool wait),
# analyzed by `chokepoint traces analyze --json` pinned to one core. Prints wall time,
# CPU time and peak memory (max RSS). Figures go in docs/performance.md ("Trace analysis").
#
#   bench/traces.sh            # 1,000,000 spans
#   bench/traces.sh 200000
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
cargo build --release -q -p chokepoint --bin chokepoint
cargo build --release -q -p chokepoint-traces --example gen_spans
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
target/release/examples/gen_spans "$N" > "$work/spans.jsonl"
echo "input: $N spans, $(du -m "$work/spans.jsonl" | cut -f1) MB of OTLP/JSON lines"
taskset -c 0 /usr/bin/time -v target/release/chokepoint traces analyze --json "$work/spans.jsonl" \
  > "$work/out.json" 2> "$work/time.txt"
grep -E "Elapsed \(wall clock\)|User time|System time|Maximum resident" "$work/time.txt"
python3 - "$work/out.json" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
top = v["tail"][0]
print(f"traces {v['traces']}, spans {v['spans']}; top tail contributor: {top['service']}/{top['operation']} "
      f"(wait={top['wait']}, {top['share_p99']:.0%} of the tail's critical path)")
PY
