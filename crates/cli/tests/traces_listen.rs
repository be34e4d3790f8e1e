//! `chokepoint traces listen` as a real process on 127.0.0.1:0: the OTLP/HTTP
//! receiver's answers (200, 400, 404, 405, 413, 415), what it writes, and traces
//! sent by the official OpenTelemetry Python SDK (a real client, not our encoder).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chokepoint_traces::proto::{ExportTraceServiceRequest, ProtoSpan, ResourceSpans, ScopeSpans};
use prost::Message as _;
use serde_json::Value;
use support::{tempdir, u};

/// A running `traces listen`; killed if the test fails before stopping it.
struct Listener {
    child: Option<Child>,
    addr: SocketAddr,
}

impl Listener {
    fn start(args: &[&str]) -> Listener {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
            .args(["traces", "listen", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chokepoint");
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("first line: {first:?}"))
            .parse()
            .unwrap();
        Listener {
            child: Some(child),
            addr,
        }
    }

    /// SIGTERM, then (exit code, stdout after the first line, stderr), bounded in time.
    fn stop(mut self) -> (i32, String, String) {
        let mut child = self.child.take().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("traces listen did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        let mut err = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (child.wait().unwrap().code().unwrap_or(-1), out, err)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP/1.1 request over a fresh connection; returns (status, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A refused oversized body may close the connection before it is all written.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn one_span_request(span_id: u8) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: vec![ProtoSpan {
                    trace_id: vec![0xab; 16],
                    span_id: vec![span_id; 8],
                    name: "GET /".into(),
                    kind: 2,
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_005_000_000,
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn receiver_answers_and_writes_otlp_json_lines() {
    let dir = tempdir();
    let file = dir.path().join("received.jsonl");
    let l = Listener::start(&["--write", file.to_str().unwrap(), "--max-body", "64KiB"]);
    assert!(l.addr.ip().is_loopback());
    let pb = ("content-type", "application/x-protobuf");
    let js = ("content-type", "application/json");
    // Protobuf, plain and gzip.
    let body = one_span_request(1).encode_to_vec();
    assert_eq!(http(l.addr, "POST", "/v1/traces", &[pb], &body).0, 200);
    let body = gzip(&one_span_request(2).encode_to_vec());
    assert_eq!(
        http(
            l.addr,
            "POST",
            "/v1/traces",
            &[pb, ("content-encoding", "gzip")],
            &body
        )
        .0,
        200
    );
    // JSON spread over lines is written on one line.
    let json_body = b"{\n \"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [{\"traceId\": \"abababababababababababababababab\",\n \"spanId\": \"0303030303030303\", \"name\": \"GET /\", \"kind\": 2, \"startTimeUnixNano\": \"1700000000000000000\", \"endTimeUnixNano\": \"1700000000001000000\"}]}]}]\n}";
    let (status, resp) = http(l.addr, "POST", "/v1/traces", &[js], json_body);
    assert_eq!((status, resp.trim()), (200, "{}"));
    // Refusals.
    let (status, msg) = http(
        l.addr,
        "POST",
        "/v1/traces",
        &[js],
        b"{\"resourceSpans\": 7}",
    );
    assert_eq!(status, 400, "{msg}");
    assert_eq!(
        http(l.addr, "POST", "/v1/traces", &[pb], b"\xff\xff\xff").0,
        400
    );
    assert_eq!(
        http(
            l.addr,
            "POST",
            "/v1/traces",
            &[("content-type", "text/plain")],
            b"x"
        )
        .0,
        415
    );
    assert_eq!(http(l.addr, "POST", "/v1/metrics", &[pb], &body).0, 404);
    assert_eq!(http(l.addr, "GET", "/v1/traces", &[], b"").0, 405);
    let big = vec![b' '; 100 * 1024];
    assert_eq!(http(l.addr, "POST", "/v1/traces", &[js], &big).0, 413);
    // A small gzip body that expands beyond 8× the limit is refused too.
    let bomb = gzip(&vec![b' '; 600 * 1024]);
    assert!(bomb.len() < 64 * 1024);
    assert_eq!(
        http(
            l.addr,
            "POST",
            "/v1/traces",
            &[js, ("content-encoding", "gzip")],
            &bomb
        )
        .0,
        413
    );
    let (code, _, stderr) = l.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("received 3 requests (3 spans, 7 refused)"),
        "{stderr}"
    );
    let text = support::read(&file);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, span) in
        lines
            .iter()
            .zip(["0101010101010101", "0202020202020202", "0303030303030303"])
    {
        let v: Value = serde_json::from_str(line).unwrap();
        let s = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "abababababababababababababababab");
        assert_eq!(s["spanId"], span);
        assert!(
            s["startTimeUnixNano"].is_string(),
            "int64 as a string: {line}"
        );
    }
    // What was written is what `analyze` reads.
    let out = support::chokepoint(
        &["traces", "analyze", "--json", file.to_str().unwrap()],
        Duration::from_secs(30),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(u(&v["spans"]), 3);
    assert_eq!(u(&v["traces"]), 1);
    assert_eq!(
        u(&v["anomalies"]["extra_roots"]),
        2,
        "three roots in one trace id"
    );
}

#[test]
fn listen_refuses_a_bad_write_path_and_a_busy_port() {
    let dir = tempdir();
    let out = support::chokepoint(
        &[
            "traces",
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--write",
            "/nonexistent/dir/x.jsonl",
        ],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--write /nonexistent/dir/x.jsonl"),
        "{stderr}"
    );
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let file = dir.path().join("x.jsonl");
    let out = support::chokepoint(
        &[
            "traces",
            "listen",
            "--listen",
            &addr,
            "--write",
            file.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("--listen {addr}")), "{stderr}");
}

const PYTHON_CLIENT: &str = r#"
import sys
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

endpoint = sys.argv[1] + "/v1/traces"
start = int(sys.argv[2])
MS = 1_000_000

def provider(compression):
    p = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    p.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, compression=compression, timeout=10)))
    return p

plain, gz = provider(Compression.NoCompression), provider(Compression.Gzip)
for i in range(200):
    tracer = (plain if i < 100 else gz).get_tracer("chokepoint-test")
    t = start + i * 200 * MS
    root = tracer.start_span("GET /orders", kind=SpanKind.SERVER, start_time=t)
    ctx = trace.set_span_in_context(root)
    t += MS
    # Four slow traces (2%) wait 80 ms for a pooled connection; the rest 1 ms.
    wait = 80 * MS if i % 50 == 49 else MS
    s = tracer.start_span("HikariPool.getConnection", context=ctx, start_time=t)
    t += wait
    s.end(end_time=t)
    q = tracer.start_span("SELECT orders", context=ctx, kind=SpanKind.CLIENT, start_time=t,
                          attributes={"db.system": "postgresql"})
    if i == 7:
        q.set_status(Status(StatusCode.ERROR, "deadlock"))
    t += 2 * MS
    q.end(end_time=t)
    # N+1: one query per order, one after another.
    for k in range(8):
        q = tracer.start_span("SELECT customer", context=ctx, kind=SpanKind.CLIENT, start_time=t,
                              attributes={"db.system": "postgresql"})
        t += MS
        q.end(end_time=t)
    root.end(end_time=t + MS)
plain.shutdown()
gz.shutdown()
print("sent")
"#;

fn python() -> Option<&'static str> {
    ["python3", "python"].into_iter().find(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn official_python_sdk_traces_are_received_and_analyzed() {
    let Some(py) = python() else {
        eprintln!(
            "\n\n!!!!! SKIPPED official_python_sdk_traces_are_received_and_analyzed: python3 not found.\n\
             !!!!! Install python3 and `pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http` (see .ci/run).\n\n"
        );
        return;
    };
    let dir = tempdir();
    let file = dir.path().join("py.jsonl");
    let script = dir.path().join("client.py");
    std::fs::write(&script, PYTHON_CLIENT).unwrap();
    let l = Listener::start(&["--write", file.to_str().unwrap(), "--analyze", "--json"]);
    let start_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        - 60_000_000_000;
    let out = run_python(
        py,
        &script,
        &format!("http://{}", l.addr),
        &start_ns.to_string(),
    );
    let (code, stdout, stderr) = l.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("(2200 spans, 0 refused)"),
        "{stderr}\npython: {out}"
    );
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(u(&v["traces"]), 200, "{v:#}");
    assert_eq!(u(&v["spans"]), 2200);
    assert_eq!(u(&v["groups"]["n_p99"]), 4, "{v:#}");
    let top = &v["tail"][0];
    assert_eq!(top["service"], "shop");
    assert_eq!(top["operation"], "HikariPool.getConnection", "{v:#}");
    assert_eq!(top["wait"], true, "a waiting span by name alone");
    assert!(
        (top["ms_p99"].as_f64().unwrap() - 80.0).abs() < 0.5,
        "{top}"
    );
    let detectors = v["detectors"].as_array().unwrap();
    let n1 = detectors
        .iter()
        .find(|d| d["kind"] == "n_plus_one")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(n1["operation"], "SELECT customer");
    assert_eq!(n1["evidence"]["mean_count"], 8.0);
    assert_eq!(u(&n1["traces"]), 200);
    let err = detectors
        .iter()
        .find(|d| d["kind"] == "error")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(
        (err["operation"].as_str(), u(&err["traces"])),
        (Some("SELECT orders"), 1)
    );
    assert_eq!(u(&v["anomalies"]["missing_parents"]), 0);
}

fn run_python(py: &str, script: &Path, endpoint: &str, start: &str) -> String {
    let mut child = Command::new(py)
        .arg(script)
        .args([endpoint, start])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the Python client did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("sent"),
        "the Python client failed (needs `pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http`):\n{text}"
    );
    text
}
