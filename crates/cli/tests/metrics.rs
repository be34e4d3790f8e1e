//! `run --metrics-listen`: scrape the live Prometheus endpoint of a real run
//! against a real server, twice while it runs, and parse the exposition with
//! the `prometheus-parse` crate.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// GET `path` over a plain socket; returns (status line, headers, body).
fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

struct Parsed {
    scrape: Scrape,
    text: String,
}

impl Parsed {
    fn new(text: String) -> Parsed {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        // The parser skips lines it does not understand: every sample line must
        // have become a sample (the histogram's bucket lines become one).
        let sample_lines = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter(|l| !l.starts_with("chokepoint_latency_seconds_bucket"))
            .count();
        assert_eq!(
            scrape.samples.len(),
            sample_lines + 1,
            "every line parses:\n{text}"
        );
        Parsed { scrape, text }
    }

    fn value(&self, metric: &str, label: Option<(&str, &str)>) -> f64 {
        let sample = self
            .scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no {metric} {label:?} in\n{}", self.text));
        match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{metric} is not a number: {other:?}"),
        }
    }

    fn histogram(&self) -> Vec<(f64, f64)> {
        let sample = self
            .scrape
            .samples
            .iter()
            .find(|s| s.metric == "chokepoint_latency_seconds")
            .unwrap_or_else(|| panic!("no histogram in\n{}", self.text));
        let Value::Histogram(buckets) = &sample.value else {
            panic!(
                "chokepoint_latency_seconds is not a histogram: {:?}",
                sample.value
            )
        };
        buckets.iter().map(|b| (b.less_than, b.count)).collect()
    }
}

/// A 5 s open-model run at 200 req/s against a server that answers in about
/// 5 ms: two scrapes during the run see counters grow, a consistent
/// histogram, in-flight requests and windowed quantiles near 5 ms.
#[test]
fn live_metrics_are_served_during_a_real_run() {
    let server = http_server(handler(|req| async move {
        if req.uri().path() == "/fail" {
            return text(503, "busy");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        text(200, "ok")
    }));
    let mut child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args([
            "run",
            &server.url("/"),
            "--rate",
            "200",
            "-z",
            "5s",
            "--json",
            "--quiet",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let addr: SocketAddr = first
        .trim()
        .strip_prefix("metrics: listening on http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("first stderr line: {first:?}"))
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback());

    // Scrape until about a second is measured (bounded), then 1.2 s later.
    let scrape = || {
        let (status, headers, body) = get(addr, "/metrics");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(
            headers.contains("content-type: text/plain; version=0.0.4"),
            "{headers}"
        );
        Parsed::new(body)
    };
    let ok = |p: &Parsed| p.value("chokepoint_requests_total", Some(("outcome", "ok")));
    let deadline = Instant::now() + Duration::from_secs(10);
    let early = loop {
        let p = scrape();
        if ok(&p) >= 150.0 || Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(1_200));
    let late = scrape();
    let (status, _, _) = get(addr, "/nope");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");

    let output = child.wait_with_output().unwrap();
    assert!(started.elapsed() < LIMIT);
    assert_eq!(output.status.code(), Some(0));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    let (early, late) = (&early, &late);
    assert!(ok(early) >= 150.0, "about 1 s measured: {}", early.text);
    assert!(
        ok(late) >= ok(early) + 150.0,
        "the counter grows: {} then {}",
        ok(early),
        ok(late)
    );
    assert!(
        ok(late) <= f(&summary["ok"]),
        "the final summary counts at least as much"
    );
    assert_eq!(
        late.value("chokepoint_requests_total", Some(("outcome", "status_5xx"))),
        0.0
    );
    assert_eq!(late.value("chokepoint_offered_rate_rps", None), 200.0);
    let rps = late.value("chokepoint_throughput_rps", None);
    assert!((100.0..=300.0).contains(&rps), "{rps}");
    let in_flight = late.value("chokepoint_in_flight", None);
    assert!(
        (0.0..=20.0).contains(&in_flight),
        "Little: 200/s × 5 ms ≈ 1 in flight, got {in_flight}"
    );
    let info = late
        .scrape
        .samples
        .iter()
        .find(|s| s.metric == "chokepoint_run_info")
        .unwrap();
    assert_eq!(info.labels.get("target"), Some(server.url("/").as_str()));
    assert_eq!(info.labels.get("model"), Some("open"));

    for p in [early, late] {
        let buckets = p.histogram();
        let count = p.value("chokepoint_latency_seconds_count", None);
        assert!(
            buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "bounds increase, counts are cumulative: {buckets:?}"
        );
        let (last_bound, last_count) = *buckets.last().unwrap();
        assert!(last_bound.is_infinite());
        assert_eq!(last_count, count, "+Inf bucket equals _count");
        assert_eq!(count, ok(p), "every ok response has a latency sample");
        let by_le: HashMap<String, f64> =
            buckets.iter().map(|(le, c)| (le.to_string(), *c)).collect();
        assert_eq!(by_le["0.0025"], 0.0, "nothing answers faster than 5 ms");
        assert!(
            by_le["0.05"] >= 0.9 * count,
            "almost all within 50 ms: {buckets:?}"
        );
        let sum = p.value("chokepoint_latency_seconds_sum", None);
        let mean = sum / count;
        assert!((0.004..0.05).contains(&mean), "mean {mean} s");
        let p50 = p.value(
            "chokepoint_latency_window_seconds",
            Some(("quantile", "0.5")),
        );
        let p99 = p.value(
            "chokepoint_latency_window_seconds",
            Some(("quantile", "0.99")),
        );
        assert!((0.004..0.05).contains(&p50), "p50 {p50}");
        assert!(p99 >= p50, "p99 {p99} >= p50 {p50}");
        assert!(p.value("chokepoint_latency_window_samples", None) > 100.0);
        assert!(p.scrape.docs.contains_key("chokepoint_requests_total"));
    }
}

/// Bad addresses and a port already taken: exit 2 with one line, before any request.
#[test]
fn bad_listen_addresses_are_bad_usage() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let busy = format!("127.0.0.1:{port}");
    for (addr, needle) in [
        ("nowhere", "not a listen address"),
        (busy.as_str(), "cannot listen"),
    ] {
        let out = chokepoint(
            &[
                "run",
                "http://127.0.0.1:9/",
                "-n",
                "1",
                "--metrics-listen",
                addr,
            ],
            LIMIT,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{addr}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{addr}: {stderr}");
    }
}
