//! The listeners chokepoint opens (the OTLP receiver of `traces listen` and
//! `run --otlp-listen`, the metrics endpoint of `run --metrics-listen`) bind
//! loopback unless told otherwise, refuse oversize bodies with 413, and
//! survive 1,000 concurrent malformed posts with bounded memory, answering
//! every one and still serving afterwards.

mod faults_support;
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use faults_support::*;
use support::tempdir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(60);
/// Peak RSS allowed for a listener under the flood.
const RSS_LIMIT_KIB: u64 = 100 * 1024;

/// Reads lines of the child's stderr or stdout until one starts with `prefix`.
fn address_from(reader: &mut dyn BufRead, prefix: &str) -> SocketAddr {
    let mut line = String::new();
    for _ in 0..20 {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            let addr = rest.trim_end_matches("/metrics");
            return addr.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"));
        }
    }
    panic!("no line starting with {prefix:?}");
}

/// One malformed request of kind `i % 8`, as raw bytes.
fn malformed(i: usize, addr: SocketAddr, max_body: usize) -> Vec<u8> {
    let post = |ctype: &str, extra: &str, body: &[u8]| {
        let mut r = format!(
            "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    match i % 8 {
        // Protobuf that is not an ExportTraceServiceRequest.
        0 => post("application/x-protobuf", "", &[0xff; 300]),
        // JSON that is not JSON.
        1 => post("application/json", "", b"{\"resourceSpans\": [{\"scopeSpans\": ["),
        // Over the body limit.
        2 => post("application/json", "", &vec![b' '; max_body + 1]),
        // Not gzip although it says so.
        3 => post("application/json", "Content-Encoding: gzip\r\n", b"not gzip at all"),
        // A media type the receiver does not take.
        4 => post("text/plain", "", b"hello"),
        // A Content-Length far beyond the limit, no body sent.
        5 => format!(
            "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
        // Not HTTP.
        6 => b"\x16\x03\x01\x02\x00garbage that is not an HTTP request\r\n\r\n".to_vec(),
        // A path that does not exist.
        _ => {
            let mut r = post("application/json", "", b"{}");
            let at = r.windows(10).position(|w| w == b"/v1/traces").unwrap();
            r.splice(at..at + 10, b"/v1/nothing".iter().copied());
            r
        }
    }
}

/// Sends `n` malformed requests at once (a task each); returns the status of
/// each answer (0 when the connection closed without one).
fn flood(addr: SocketAddr, n: usize, max_body: usize) -> Vec<u16> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let request = malformed(i, addr, max_body);
                tokio::spawn(async move {
                    let exchange = async {
                        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
                        // A refused body may close the connection before all of it is written.
                        let _ = s.write_all(&request).await;
                        let mut buf = Vec::new();
                        let _ = s.read_to_end(&mut buf).await;
                        let text = String::from_utf8_lossy(&buf).into_owned();
                        text.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok())
                    };
                    tokio::time::timeout(Duration::from_secs(30), exchange)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or(0)
                })
            })
            .collect();
        let mut statuses = Vec::with_capacity(n);
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        statuses
    })
}

/// A valid OTLP/JSON request with one span; returns the status.
fn valid_post(addr: SocketAddr, limit: Duration) -> u16 {
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"s"}}]},"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"op","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000001000000"}]}]}]}"#;
    let request = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(limit, s.read_to_end(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no answer within {limit:?}"))
            .unwrap();
        String::from_utf8_lossy(&buf)
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    })
}

#[test]
fn otlp_receiver_survives_1000_concurrent_malformed_posts_in_bounded_memory() {
    let dir = tempdir();
    let file = dir.path().join("spans.jsonl");
    let max_body = 1 << 20;
    let mut child = spawn_with(
        &[
            "traces",
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--max-body",
            "1MiB",
            "--write",
            file.to_str().unwrap(),
        ],
        true,
    );
    let addr = {
        let stdout = child.take_stdout();
        let mut reader = BufReader::new(stdout);
        let addr = address_from(&mut reader, "listening on http://");
        // Keep draining what the receiver prints.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        addr
    };
    assert!(addr.ip().is_loopback());
    let before = vm_hwm_kib(child.pid()).unwrap();
    let started = Instant::now();
    let statuses = flood(addr, 1000, max_body);
    let flood_time = started.elapsed();
    let after = vm_hwm_kib(child.pid()).expect("the receiver is still running");
    let mut by_status = std::collections::BTreeMap::new();
    for s in &statuses {
        *by_status.entry(*s).or_insert(0) += 1;
    }
    // Every request was answered with the right refusal, none accepted. The
    // one exception is TCP's: a client still sending an oversize body when
    // the 413 arrives may see the connection reset before it reads the 413.
    let expected = [400, 400, 413, 400, 415, 413, 400, 404];
    for (i, status) in statuses.iter().enumerate() {
        let want = expected[i % 8];
        assert!(
            *status == want || (i % 8 == 2 && *status == 0),
            "request {i} (kind {}): status {status}, expected {want}: {by_status:?}",
            i % 8
        );
    }
    let oversize_answered = statuses
        .iter()
        .skip(2)
        .step_by(8)
        .filter(|s| **s == 413)
        .count();
    assert!(
        oversize_answered >= 100,
        "{oversize_answered} of 125 oversize bodies saw their 413"
    );
    assert!(
        after < RSS_LIMIT_KIB,
        "peak RSS {after} KiB after the flood ({before} KiB before)"
    );
    // Still serving.
    assert_eq!(valid_post(addr, Duration::from_secs(10)), 200);
    child.signal(libc::SIGTERM);
    let m = child.wait(LIMIT);
    assert_eq!(m.code, Some(0), "{}", m.show());
    assert!(!m.stderr.contains("panicked"), "{}", m.show());
    let written = read_file(&file);
    assert_eq!(written.lines().count(), 1, "only the valid post is written");
    eprintln!(
        "OTLP receiver: 1000 malformed posts in {flood_time:?}, {by_status:?}, peak RSS {before} KiB -> {after} KiB"
    );
}

#[test]
fn metrics_endpoint_binds_loopback_and_survives_a_flood() {
    let server = support::http_server(support::handler(|_req| async { support::text(200, "ok") }));
    // A bare port means 127.0.0.1.
    let mut child = spawn_with(
        &[
            "run",
            &server.url("/"),
            "--rate",
            "50",
            "-z",
            "6s",
            "--quiet",
            "--json",
            "--metrics-listen",
            "0",
        ],
        true,
    );
    let addr = {
        let stderr = child.take_stderr();
        let mut reader = BufReader::new(stderr);
        let addr = address_from(&mut reader, "metrics: listening on http://");
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        addr
    };
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    let before = vm_hwm_kib(child.pid()).unwrap();
    // Metrics take GET only: posts (of any size) are refused without being read.
    let statuses = flood(addr, 1000, 1 << 20);
    let after = vm_hwm_kib(child.pid()).expect("still running");
    let refused = statuses
        .iter()
        .filter(|s| [400, 404, 405].contains(*s))
        .count();
    assert!(
        refused >= 850,
        "refused {refused} of 1000: {:?}",
        &statuses[..20]
    );
    assert!(
        after < RSS_LIMIT_KIB,
        "peak RSS {after} KiB after the flood ({before} KiB before)"
    );
    let m = child.wait(LIMIT);
    assert_eq!(m.code, Some(0), "{}", m.show());
    let s = m.json();
    assert!(s["errors"].as_object().unwrap().is_empty(), "{s}");
}

/// The defaults as the help states them (clap's defaults are what the
/// listeners bind): 127.0.0.1 unless told otherwise.
#[test]
fn listeners_default_to_loopback() {
    let help = |args: &[&str]| {
        let m = run_measured(args, LIMIT);
        assert_eq!(m.code, Some(0), "{}", m.show());
        m.stdout.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let traces = help(&["traces", "listen", "--help"]);
    assert!(traces.contains("[default: 127.0.0.1:4318]"), "{traces}");
    let lab = help(&["lab", "--help"]);
    assert!(lab.contains("[default: 127.0.0.1:0]"), "{lab}");
    let run = help(&["run", "--help"]);
    assert!(run.contains("a bare PORT for 127.0.0.1"), "{run}");
}

/// Clients that open connections and never finish their request head
/// (slowloris) cannot take the receiver's capped connections for good: they
/// are closed after the header timeout and a real export gets through.
#[test]
fn otlp_receiver_is_not_held_by_idle_half_requests() {
    let dir = tempdir();
    let file = dir.path().join("spans.jsonl");
    let mut child = spawn_with(
        &[
            "traces",
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--write",
            file.to_str().unwrap(),
        ],
        true,
    );
    let mut reader = BufReader::new(child.take_stdout());
    let addr = address_from(&mut reader, "listening on http://");
    // More half-open requests than the receiver serves at once (512).
    let idle: Vec<std::net::TcpStream> = (0..600)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            std::io::Write::write_all(&mut s, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    assert_eq!(valid_post(addr, Duration::from_secs(20)), 200);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(15),
        "answered after {waited:?}"
    );
    drop(idle);
    child.signal(libc::SIGTERM);
    let m = child.wait(LIMIT);
    assert_eq!(m.code, Some(0), "{}", m.show());
    eprintln!("OTLP receiver: a real export got through 600 idle half-requests after {waited:?}");
}
