//! `chokepoint traces analyze` on real files: every input format, and bad input
//! (one line naming file, line and field, exit 2; repairs counted, never a panic).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chokepoint_traces::proto::{
    any_value, AnyValue, ExportTraceServiceRequest, KeyValue, ProtoSpan, Resource, ResourceSpans,
    ScopeSpans, Status,
};
use prost::Message as _;
use serde_json::{json, Value};
use support::{chokepoint, tempdir, u};

const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000_000_000_000;

/// A span for an OTLP/JSON document: (trace, span, parent, name, kind, start ms, end ms).
fn jspan(trace: u32, span: u32, parent: u32, name: &str, kind: i64, start: u64, end: u64) -> Value {
    let mut v = json!({
        "traceId": format!("{trace:032x}"),
        "spanId": format!("{span:016x}"),
        "name": name,
        "kind": kind,
        "startTimeUnixNano": (T0 + start * MS).to_string(),
        "endTimeUnixNano": (T0 + end * MS).to_string(),
    });
    if parent != 0 {
        v["parentSpanId"] = json!(format!("{parent:016x}"));
    }
    v
}

fn request(service: &str, spans: Vec<Value>) -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
    }]})
}

/// One trace with a waiting step that is slow in trace 100 only.
fn shop_trace(trace: u32) -> Vec<Value> {
    let wait = if trace == 100 { 50 } else { 1 };
    let base = u64::from(trace) * 100;
    vec![
        jspan(trace, 1, 0, "GET /cart", 2, base, base + wait + 5),
        jspan(trace, 2, 1, "lock.wait", 1, base + 1, base + 1 + wait),
        jspan(trace, 3, 1, "db.query", 3, base + 1 + wait, base + 4 + wait),
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn json_lines(n: u32) -> String {
    (1..=n)
        .map(|t| request("shop", shop_trace(t)).to_string() + "\n")
        .collect()
}

fn analyze_ok(args: &[&str]) -> Value {
    let mut all = vec!["traces", "analyze", "--json"];
    all.extend_from_slice(args);
    let out = chokepoint(&all, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{all:?}\n{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// Exit 2 with one line on stderr containing every `needles`.
fn analyze_fails(args: &[&str], needles: &[&str]) {
    let mut all = vec!["traces", "analyze"];
    all.extend_from_slice(args);
    let out = chokepoint(&all, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{all:?}\n{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{n:?} not in {stderr}");
    }
    assert!(!stderr.contains("panicked"));
}

fn check_shop(v: &Value, traces: u64, format: &str) {
    assert_eq!(u(&v["traces"]), traces, "{v:#}");
    assert_eq!(u(&v["spans"]), 3 * traces);
    assert_eq!(v["inputs"][0]["format"], format, "{v:#}");
    // Trace 100 is the one at/beyond P99: its lock wait is its critical path.
    assert_eq!(v["tail"][0]["operation"], "lock.wait", "{v:#}");
    assert_eq!(v["tail"][0]["wait"], true);
    assert_eq!(v["slowest"][0]["trace_id"], format!("{:032x}", 100));
}

#[test]
fn otlp_json_lines_document_gzip_and_text() {
    let dir = tempdir();
    let lines = write(dir.path(), "spans.jsonl", json_lines(100).as_bytes());
    check_shop(
        &analyze_ok(&[lines.to_str().unwrap()]),
        100,
        "otlp-json-lines",
    );
    // One pretty-printed document holding everything.
    let all: Vec<Value> = (1..=100).flat_map(shop_trace).collect();
    let doc = serde_json::to_string_pretty(&request("shop", all)).unwrap();
    let doc = write(dir.path(), "doc.json", doc.as_bytes());
    check_shop(&analyze_ok(&[doc.to_str().unwrap()]), 100, "otlp-json");
    // Gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(json_lines(100).as_bytes()).unwrap();
    let gz = write(dir.path(), "spans.jsonl.gz", &gz.finish().unwrap());
    check_shop(
        &analyze_ok(&[gz.to_str().unwrap()]),
        100,
        "otlp-json-lines+gzip",
    );
    // Text output names the tail and the file.
    let out = chokepoint(
        &["traces", "analyze", lines.to_str().unwrap()],
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("traces: 100 (300 spans)"), "{text}");
    assert!(text.contains("lock.wait"), "{text}");
    assert!(text.contains("only 1 traces at/beyond P99"), "{text}");
}

fn proto_request(traces: std::ops::RangeInclusive<u32>) -> ExportTraceServiceRequest {
    let spans = traces
        .flat_map(shop_trace)
        .map(|v| {
            let hex = |s: &str| {
                (0..s.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                    .collect::<Vec<u8>>()
            };
            ProtoSpan {
                trace_id: hex(v["traceId"].as_str().unwrap()),
                span_id: hex(v["spanId"].as_str().unwrap()),
                parent_span_id: v["parentSpanId"].as_str().map(hex).unwrap_or_default(),
                name: v["name"].as_str().unwrap().into(),
                kind: v["kind"].as_i64().unwrap() as i32,
                start_time_unix_nano: v["startTimeUnixNano"].as_str().unwrap().parse().unwrap(),
                end_time_unix_nano: v["endTimeUnixNano"].as_str().unwrap().parse().unwrap(),
                status: Some(Status::default()),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("shop".into())),
                    }),
                }],
                dropped_attributes_count: 0,
            }),
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[test]
fn otlp_protobuf_single_and_length_prefixed() {
    let dir = tempdir();
    let one = write(
        dir.path(),
        "spans.pb",
        &proto_request(1..=100).encode_to_vec(),
    );
    check_shop(&analyze_ok(&[one.to_str().unwrap()]), 100, "otlp-protobuf");
    let mut framed = Vec::new();
    for range in [1..=40, 41..=100] {
        let msg = proto_request(range).encode_to_vec();
        framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        framed.extend_from_slice(&msg);
    }
    let framed = write(dir.path(), "framed.pb", &framed);
    check_shop(
        &analyze_ok(&[framed.to_str().unwrap()]),
        100,
        "otlp-protobuf",
    );
}

#[test]
fn jaeger_json_download() {
    let dir = tempdir();
    let traces: Vec<Value> = (1..=100u32)
        .map(|t| {
            let spans: Vec<Value> = shop_trace(t)
                .into_iter()
                .map(|s| {
                    let start: u64 = s["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
                    let end: u64 = s["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
                    let refs = match s["parentSpanId"].as_str() {
                        Some(p) => json!([{"refType": "CHILD_OF", "traceID": s["traceId"], "spanID": p}]),
                        None => json!([]),
                    };
                    let kind = ["", "internal", "server", "client"][s["kind"].as_u64().unwrap() as usize];
                    json!({
                        "traceID": s["traceId"], "spanID": s["spanId"], "operationName": s["name"],
                        "references": refs, "startTime": start / 1000, "duration": (end - start) / 1000,
                        "tags": [{"key": "span.kind", "type": "string", "value": kind}],
                        "processID": "p1", "logs": [], "warnings": null,
                    })
                })
                .collect();
            json!({"traceID": format!("{t:032x}"), "spans": spans,
                   "processes": {"p1": {"serviceName": "shop", "tags": []}}, "warnings": null})
        })
        .collect();
    let doc = json!({"data": traces, "total": 0, "limit": 0, "offset": 0, "errors": null});
    let path = write(dir.path(), "jaeger.json", doc.to_string().as_bytes());
    let v = analyze_ok(&[path.to_str().unwrap()]);
    check_shop(&v, 100, "jaeger-json");
    assert_eq!(v["tail"][0]["service"], "shop");
}

#[test]
fn malformed_spans_are_counted_and_repaired() {
    let dir = tempdir();
    let mut spans = vec![
        jspan(1, 1, 0, "GET /", 2, 0, 100),
        jspan(1, 2, 1, "step", 1, 10, 20),
        jspan(1, 2, 1, "step-again", 1, 10, 90), // duplicate id
        jspan(1, 3, 1, "backwards", 1, 50, 40),  // negative duration
        jspan(1, 4, 99, "orphan", 1, 0, 10),     // missing parent
        jspan(1, 5, 6, "loop-a", 1, 0, 10),      // cycle
        jspan(1, 6, 5, "loop-b", 1, 0, 10),
        jspan(1, 7, 1, "early", 1, 0, 150), // ends after its parent: clamped
        jspan(2, 1, 2, "ring-a", 1, 0, 10), // trace 2: only a cycle, no root
        jspan(2, 2, 1, "ring-b", 1, 0, 10),
    ];
    spans.push(json!({"traceId": "not-hex", "spanId": "0000000000000001", "name": "bad id"}));
    let mut text = request("shop", spans).to_string();
    text.push('\n');
    // A truncated line (a killed writer) and a line of the wrong shape.
    text.push_str("{\"resourceSpans\": [{\"scopeSpans\": [\n");
    text.push_str("{\"hello\": 1}\n");
    let path = write(dir.path(), "bad.jsonl", text.as_bytes());
    let v = analyze_ok(&[path.to_str().unwrap()]);
    let a = &v["anomalies"];
    assert_eq!(u(&a["duplicate_span_ids"]), 1, "{a:#}");
    assert_eq!(u(&a["negative_durations"]), 1);
    assert_eq!(u(&a["missing_parents"]), 1);
    assert_eq!(u(&a["cycle_spans"]), 4, "two per loop");
    assert_eq!(u(&a["rootless_traces"]), 1);
    assert_eq!(u(&a["clock_skew"]), 1);
    assert_eq!(u(&a["invalid_spans"]), 1);
    assert!(a["first_invalid_span"]
        .as_str()
        .unwrap()
        .contains("not-hex"));
    assert_eq!(u(&a["malformed_documents"]), 2);
    let first = a["first_malformed"].as_str().unwrap();
    assert!(
        first.starts_with(&format!("{}:2:", path.display())),
        "{first}"
    );
    assert_eq!(u(&v["traces"]), 1);
}

#[test]
fn bad_files_exit_2_with_one_line() {
    let dir = tempdir();
    let missing = dir.path().join("nope.jsonl");
    analyze_fails(
        &[missing.to_str().unwrap()],
        &["nope.jsonl", "No such file"],
    );
    let empty = write(dir.path(), "empty.jsonl", b"");
    analyze_fails(&[empty.to_str().unwrap()], &["empty.jsonl", "empty"]);
    let text = write(dir.path(), "notes.txt", b"hello, these are not traces\n");
    analyze_fails(
        &[text.to_str().unwrap()],
        &["notes.txt", "not OTLP/JSON, Jaeger JSON or OTLP protobuf"],
    );
    let shape = write(dir.path(), "shape.json", b"{\"foo\": 1}\n");
    analyze_fails(
        &[shape.to_str().unwrap()],
        &["shape.json:1:", "resourceSpans"],
    );
    let wrong_type = write(
        dir.path(),
        "types.json",
        b"{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [{\"traceId\": \"01\", \"startTimeUnixNano\": \"soon\"}]}]}]}\n",
    );
    analyze_fails(
        &[wrong_type.to_str().unwrap()],
        &["types.json:1:", "expected digits", "column"],
    );
    let pretty_bad = write(
        dir.path(),
        "pretty.json",
        b"{\n  \"resourceSpans\": [\n    5\n  ]\n}\n",
    );
    analyze_fails(&[pretty_bad.to_str().unwrap()], &["pretty.json", "line 3"]);
    // A good file next to a bad one: still exit 2, naming the bad one.
    let good = write(dir.path(), "good.jsonl", json_lines(3).as_bytes());
    analyze_fails(
        &[good.to_str().unwrap(), empty.to_str().unwrap()],
        &["empty.jsonl"],
    );
    // Flags are validated too.
    analyze_fails(&[good.to_str().unwrap(), "--window", "soon"], &["--window"]);
    analyze_fails(
        &[good.to_str().unwrap(), "--run", missing.to_str().unwrap()],
        &["--run", "nope.jsonl"],
    );
}

#[test]
fn garbage_never_panics() {
    // Every prefix and many single-byte corruptions of valid inputs: exit 0 or 2, never a panic.
    let dir = tempdir();
    let json = json_lines(2).into_bytes();
    let pb = proto_request(1..=2).encode_to_vec();
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for src in [&json, &pb] {
        for cut in (1..src.len()).step_by(src.len() / 12 + 1) {
            cases.push(src[..cut].to_vec());
        }
        for pos in (0..src.len()).step_by(src.len() / 12 + 1) {
            let mut bad = src.clone();
            bad[pos] = bad[pos].wrapping_add(0x55);
            cases.push(bad);
        }
    }
    let paths: Vec<PathBuf> = cases
        .iter()
        .enumerate()
        .map(|(i, bytes)| write(dir.path(), &format!("case{i}"), bytes))
        .collect();
    for p in &paths {
        let out = chokepoint(
            &["traces", "analyze", "--json", p.to_str().unwrap()],
            Duration::from_secs(30),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0) | Some(2)),
            "{}: {stderr}",
            p.display()
        );
        assert!(!stderr.contains("panicked"), "{}: {stderr}", p.display());
    }
}
