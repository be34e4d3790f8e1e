//! Writes N synthetic spans as OTLP/JSON lines on stdout, shaped like the lab's checkout
//! (11 spans per trace, three services), for the trace-analysis benchmark (`bench/traces.sh`).
//!
//! `cargo run --release -p chokepoint-traces --example gen_spans -- 1000000 > spans.jsonl`

use std::io::{BufWriter, Write};

const MS: u64 = 1_000_000;
const US: u64 = 1_000;
const T0: u64 = 1_700_000_000_000_000_000;

/// One span: (span index in trace, parent index or none, service, name, kind, start, end, wait attribute).
type Row = (u64, Option<u64>, usize, &'static str, u8, u64, u64, bool);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, so every run analyzes the same data.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn trace_rows(rng: &mut Rng, start: u64) -> Vec<Row> {
    // Pool wait: usually short, 1% of traces wait 40-80 ms (the planted tail).
    let wait = if rng.below(100) == 0 {
        40 * MS + rng.below(40 * MS)
    } else {
        rng.below(500 * US)
    };
    let pay = 2 * MS + rng.below(MS);
    let mail = MS + rng.below(MS);
    let mut t = start + 50 * US;
    let mut rows = vec![(1, Some(0), 0, "cart.validate", 1, t, t + 50 * US, false)];
    t += 60 * US;
    rows.push((
        2,
        Some(0),
        0,
        "POST /charge",
        3,
        t,
        t + pay + 200 * US,
        false,
    ));
    rows.push((
        3,
        Some(2),
        1,
        "POST /charge",
        2,
        t + 100 * US,
        t + pay + 100 * US,
        false,
    ));
    t += pay + 210 * US;
    rows.push((4, Some(0), 0, "db.pool.acquire", 1, t, t + wait, true));
    t += wait;
    rows.push((5, Some(0), 0, "db.query", 3, t, t + 800 * US, false));
    t += 810 * US;
    rows.push((
        6,
        Some(0),
        0,
        "POST /send",
        3,
        t,
        t + mail + 200 * US,
        false,
    ));
    rows.push((
        7,
        Some(6),
        2,
        "POST /send",
        2,
        t + 100 * US,
        t + mail + 100 * US,
        false,
    ));
    t += mail + 210 * US;
    rows.push((8, Some(0), 0, "inventory.update", 1, t, t + 120 * US, false));
    rows.push((9, Some(8), 0, "lock.wait", 1, t + 5 * US, t + 15 * US, true));
    rows.push((
        10,
        Some(8),
        0,
        "lock.hold",
        1,
        t + 15 * US,
        t + 110 * US,
        false,
    ));
    t += 130 * US;
    rows.insert(0, (0, None, 0, "POST /checkout", 2, start, t, false));
    rows
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let services = ["checkout", "payment", "email"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let out = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, out.lock());
    let mut written = 0u64;
    let mut trace = 0u64;
    while written < n {
        // One line: one export request of 50 traces, spans grouped by service.
        let mut by_service: [Vec<String>; 3] = Default::default();
        for _ in 0..50 {
            if written >= n {
                break;
            }
            trace += 1;
            // 10,000 traces per second of data.
            let start = T0 + trace * 100 * US;
            let trace_id = format!("{:016x}{:016x}", rng.next(), trace);
            for (idx, parent, svc, name, kind, s, e, wait) in trace_rows(&mut rng, start) {
                if written >= n {
                    break;
                }
                written += 1;
                let span_id = (trace << 8) | (idx + 1);
                let parent = parent
                    .map(|p| format!(r#","parentSpanId":"{:016x}""#, (trace << 8) | (p + 1)))
                    .unwrap_or_default();
                let attrs = if wait {
                    r#"[{"key":"chokepoint.wait","value":{"boolValue":true}}]"#
                } else if kind == 3 {
                    r#"[{"key":"peer.service","value":{"stringValue":"dep"}},{"key":"server.port","value":{"intValue":"443"}}]"#
                } else {
                    "[]"
                };
                by_service[svc].push(format!(
                    r#"{{"traceId":"{trace_id}","spanId":"{span_id:016x}"{parent},"name":"{name}","kind":{kind},"startTimeUnixNano":"{s}","endTimeUnixNano":"{e}","attributes":{attrs},"flags":257}}"#
                ));
            }
        }
        let resource_spans: Vec<String> = by_service
            .iter()
            .enumerate()
            .filter(|(_, spans)| !spans.is_empty())
            .map(|(i, spans)| {
                format!(
                    r#"{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{}"}}}}]}},"scopeSpans":[{{"scope":{{"name":"gen"}},"spans":[{}]}}]}}"#,
                    services[i],
                    spans.join(",")
                )
            })
            .collect();
        writeln!(out, r#"{{"resourceSpans":[{}]}}"#, resource_spans.join(",")).expect("write");
    }
    out.flush().expect("flush");
}
