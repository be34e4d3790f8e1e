//! Live metrics for `run --metrics-listen ADDR`: an engine [`Observer`] that
//! folds each measured second into Prometheus metrics, and a small HTTP
//! server (hyper, on its own thread) that serves them in the text exposition
//! format at `/metrics` while the run goes on.
//!
//! Exposed (all cover the measured window; warmup is excluded like everywhere else):
//! - `chokepoint_requests_total{outcome}` counter: `ok` and every error kind;
//! - `chokepoint_in_flight`, `chokepoint_connections`, `chokepoint_throughput_rps` gauges;
//! - `chokepoint_latency_seconds` histogram (latency from the intended send);
//! - `chokepoint_latency_window_seconds{quantile="0.5"|"0.99"}` over the last
//!   [`WINDOW_SECONDS`] seconds, with `chokepoint_latency_window_samples`;
//! - `chokepoint_run_info{target,model,version}`, `chokepoint_offered_rate_rps`,
//!   `chokepoint_elapsed_seconds`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chokepoint_engine::{ErrorKind, IntervalReport, Observer, Stats};
use chokepoint_stats::{new_histogram, Histogram};
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Seconds of the sliding window behind the windowed quantiles.
pub const WINDOW_SECONDS: usize = 10;

/// Upper bounds (seconds) of the latency histogram's buckets, `+Inf` aside.
pub const BUCKETS_S: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Parses `--metrics-listen`: `HOST:PORT`, `[::1]:PORT`, or a bare `PORT`
/// (which binds 127.0.0.1). Port 0 picks a free port.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    if let Ok(port) = t.trim_start_matches(':').parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(addr) = t.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = t.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        }
    }
    Err(format!(
        "`{text}` is not a listen address; write e.g. 127.0.0.1:9464 (or a bare port for 127.0.0.1)"
    ))
}

/// Static facts about the run, shown as `chokepoint_run_info` labels.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// Target URL (already redacted).
    pub target: String,
    /// `open` or `closed`.
    pub model: String,
    /// Offered rate (open model).
    pub offered_rate: Option<f64>,
}

/// Everything the exposition shows, updated by the observer.
#[derive(Debug)]
struct LiveState {
    info: RunInfo,
    ok: u64,
    errors: [u64; ErrorKind::ALL.len()],
    in_flight: u64,
    connections: u64,
    throughput_rps: f64,
    elapsed_s: f64,
    /// Cumulative counts at or below each bound of [`BUCKETS_S`].
    buckets: [u64; BUCKETS_S.len()],
    latency_count: u64,
    latency_sum_s: f64,
    window_p50_s: f64,
    window_p99_s: f64,
    window_samples: u64,
}

impl LiveState {
    fn new(info: RunInfo) -> Self {
        LiveState {
            info,
            ok: 0,
            errors: [0; ErrorKind::ALL.len()],
            in_flight: 0,
            connections: 0,
            throughput_rps: 0.0,
            elapsed_s: 0.0,
            buckets: [0; BUCKETS_S.len()],
            latency_count: 0,
            latency_sum_s: 0.0,
            window_p50_s: f64::NAN,
            window_p99_s: f64::NAN,
            window_samples: 0,
        }
    }

    /// The text exposition.
    fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "chokepoint_run_info",
            "gauge",
            "The run being measured (value is always 1).",
        );
        let _ = writeln!(
            out,
            "chokepoint_run_info{{target=\"{}\",model=\"{}\",version=\"{}\"}} 1",
            label_value(&self.info.target),
            label_value(&self.info.model),
            env!("CARGO_PKG_VERSION")
        );
        family(
            &mut out,
            "chokepoint_requests_total",
            "counter",
            "Completed requests of the measured window by outcome: ok or the error kind.",
        );
        let _ = writeln!(
            out,
            "chokepoint_requests_total{{outcome=\"ok\"}} {}",
            self.ok
        );
        for (kind, n) in ErrorKind::ALL.iter().zip(self.errors) {
            let _ = writeln!(
                out,
                "chokepoint_requests_total{{outcome=\"{}\"}} {n}",
                kind.as_str()
            );
        }
        family(
            &mut out,
            "chokepoint_in_flight",
            "gauge",
            "Requests in flight at the end of the last second.",
        );
        let _ = writeln!(out, "chokepoint_in_flight {}", self.in_flight);
        family(
            &mut out,
            "chokepoint_connections",
            "gauge",
            "Open connections at the end of the last second.",
        );
        let _ = writeln!(out, "chokepoint_connections {}", self.connections);
        family(
            &mut out,
            "chokepoint_throughput_rps",
            "gauge",
            "Completed requests per second over the last second.",
        );
        let _ = writeln!(
            out,
            "chokepoint_throughput_rps {}",
            number(self.throughput_rps)
        );
        if let Some(rate) = self.info.offered_rate {
            family(
                &mut out,
                "chokepoint_offered_rate_rps",
                "gauge",
                "Offered arrival rate of the open model.",
            );
            let _ = writeln!(out, "chokepoint_offered_rate_rps {}", number(rate));
        }
        family(
            &mut out,
            "chokepoint_elapsed_seconds",
            "gauge",
            "Seconds since the measured window started.",
        );
        let _ = writeln!(out, "chokepoint_elapsed_seconds {}", number(self.elapsed_s));
        family(
            &mut out,
            "chokepoint_latency_seconds",
            "histogram",
            "Latency from the intended send time (coordinated-omission free) of requests that got a response.",
        );
        for (bound, count) in BUCKETS_S.iter().zip(self.buckets) {
            let _ = writeln!(
                out,
                "chokepoint_latency_seconds_bucket{{le=\"{}\"}} {count}",
                number(*bound)
            );
        }
        let _ = writeln!(
            out,
            "chokepoint_latency_seconds_bucket{{le=\"+Inf\"}} {}",
            self.latency_count
        );
        let _ = writeln!(
            out,
            "chokepoint_latency_seconds_sum {}",
            number(self.latency_sum_s)
        );
        let _ = writeln!(
            out,
            "chokepoint_latency_seconds_count {}",
            self.latency_count
        );
        family(
            &mut out,
            "chokepoint_latency_window_seconds",
            "gauge",
            &format!(
                "Latency quantiles over the last {WINDOW_SECONDS} seconds (NaN before any response)."
            ),
        );
        for (q, v) in [("0.5", self.window_p50_s), ("0.99", self.window_p99_s)] {
            let _ = writeln!(
                out,
                "chokepoint_latency_window_seconds{{quantile=\"{q}\"}} {}",
                number(v)
            );
        }
        family(
            &mut out,
            "chokepoint_latency_window_samples",
            "gauge",
            &format!(
                "Responses in the last {WINDOW_SECONDS} seconds behind the windowed quantiles."
            ),
        );
        let _ = writeln!(
            out,
            "chokepoint_latency_window_samples {}",
            self.window_samples
        );
        out
    }
}

/// `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A float as the exposition format writes it.
fn number(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{x}")
    }
}

/// Escapes a label value: backslash, double quote and line feed.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The engine observer feeding the live state.
pub struct MetricsObserver {
    state: Arc<Mutex<LiveState>>,
    window: VecDeque<Histogram>,
    merged: Histogram,
}

impl Observer for MetricsObserver {
    fn interval(&mut self, r: &IntervalReport<'_>) {
        let s = r.stats;
        let h = &s.latency;
        if self.window.len() == WINDOW_SECONDS {
            self.window.pop_front();
        }
        self.window.push_back(h.clone());
        self.merged.reset();
        for w in &self.window {
            self.merged.add(w).expect("auto-resizing histograms merge");
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.ok += s.ok;
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            state.errors[i] += s.errors.get(*kind);
        }
        state.in_flight = r.in_flight;
        state.connections = r.connections as u64;
        state.throughput_rps = if r.length_s > 0.0 {
            s.requests as f64 / r.length_s
        } else {
            0.0
        };
        if !h.is_empty() {
            for (i, bound) in BUCKETS_S.iter().enumerate() {
                let bound_us = (bound * 1e6) as u64;
                state.buckets[i] += if bound_us >= h.max() {
                    h.len()
                } else {
                    h.count_between(0, bound_us)
                };
            }
            state.latency_count += h.len();
            state.latency_sum_s += h.mean() * h.len() as f64 / 1e6;
        }
        state.window_samples = self.merged.len();
        if self.merged.is_empty() {
            state.window_p50_s = f64::NAN;
            state.window_p99_s = f64::NAN;
        } else {
            state.window_p50_s = self.merged.value_at_quantile(0.5) as f64 / 1e6;
            state.window_p99_s = self.merged.value_at_quantile(0.99) as f64 / 1e6;
        }
    }

    fn progress(&mut self, elapsed: Duration, _totals: &Stats) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.elapsed_s = elapsed.as_secs_f64();
    }

    fn measured_start(&mut self, _wall: SystemTime) {}
}

/// Two observers in turn: the run's own output first, then another.
pub struct Tee<'a> {
    /// Called first.
    pub first: &'a mut dyn Observer,
    /// Called second.
    pub second: &'a mut dyn Observer,
}

impl Observer for Tee<'_> {
    fn interval(&mut self, report: &IntervalReport<'_>) {
        self.first.interval(report);
        self.second.interval(report);
    }
    fn measured_start(&mut self, wall: SystemTime) {
        self.first.measured_start(wall);
        self.second.measured_start(wall);
    }
    fn progress(&mut self, elapsed: Duration, totals: &Stats) {
        self.first.progress(elapsed, totals);
        self.second.progress(elapsed, totals);
    }
}

/// The metrics HTTP server; stops when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    state: Arc<Mutex<LiveState>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves `/metrics` on a thread of its own.
    pub fn start(addr: SocketAddr, info: RunInfo) -> Result<MetricsServer, String> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("--metrics-listen {addr}: cannot listen: {e}"))?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
        let state = Arc::new(Mutex::new(LiveState::new(info)));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| format!("--metrics-listen: cannot start the server: {e}"))?;
        let thread = std::thread::Builder::new()
            .name("chokepoint-metrics".into())
            .spawn(move || runtime.block_on(serve(listener, served, rx)))
            .map_err(|e| format!("--metrics-listen: cannot start the server: {e}"))?;
        Ok(MetricsServer {
            addr: bound,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An observer that feeds this server.
    pub fn observer(&self) -> MetricsObserver {
        MetricsObserver {
            state: self.state.clone(),
            window: VecDeque::with_capacity(WINDOW_SECONDS),
            merged: new_histogram(),
        }
    }

    /// The exposition as it would be served now.
    pub fn render(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .render()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<Mutex<LiveState>>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => return,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors and the like: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&req, &state)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

fn respond(
    req: &Request<hyper::body::Incoming>,
    state: &Mutex<LiveState>,
) -> Response<Full<Bytes>> {
    let plain = |status: u16, body: &'static str| {
        Response::builder()
            .status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("static responses build")
    };
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return plain(405, "method not allowed: use GET\n");
    }
    match req.uri().path() {
        "/metrics" => {
            let body = state.lock().unwrap_or_else(|e| e.into_inner()).render();
            Response::builder()
                .header("content-type", CONTENT_TYPE)
                .body(Full::new(Bytes::from(body)))
                .expect("metric responses build")
        }
        "/" => plain(200, "chokepoint live metrics: GET /metrics\n"),
        _ => plain(404, "not found: GET /metrics\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            parse_listen(":9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            parse_listen("localhost:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0:9464").unwrap(),
            "0.0.0.0:9464".parse().unwrap()
        );
        assert_eq!(parse_listen("[::1]:1").unwrap(), "[::1]:1".parse().unwrap());
        assert!(parse_listen("nowhere").is_err());
        assert!(parse_listen("127.0.0.1:99999").is_err());
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    /// docs/alerting.md only uses metrics the endpoint serves, and its
    /// Grafana dashboard is valid JSON.
    #[test]
    fn the_alerting_doc_matches_the_exposition() {
        let doc = include_str!("../../../docs/alerting.md");
        let exposition = LiveState::new(RunInfo {
            offered_rate: Some(1.0),
            ..RunInfo::default()
        })
        .render();
        let served: Vec<&str> = exposition
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let mut used = 0;
        for (i, _) in doc.match_indices("chokepoint_") {
            let name: String = doc[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name == "chokepoint_" || name.starts_with("chokepoint_stats") {
                continue;
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| served.contains(base))
                .unwrap_or(&name);
            assert!(
                served.contains(&family),
                "docs/alerting.md uses `{name}`, which is not served"
            );
            used += 1;
        }
        assert!(used > 20, "the doc uses the metrics ({used} uses)");
        let start = doc.find("```json\n").expect("a JSON block") + "```json\n".len();
        let end = start + doc[start..].find("```").unwrap();
        let dashboard: serde_json::Value = serde_json::from_str(&doc[start..end]).unwrap();
        assert_eq!(dashboard["panels"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn an_empty_state_renders_every_family() {
        let text = LiveState::new(RunInfo::default()).render();
        for family in [
            "chokepoint_requests_total{outcome=\"ok\"} 0",
            "chokepoint_requests_total{outcome=\"status_5xx\"} 0",
            "chokepoint_latency_seconds_bucket{le=\"+Inf\"} 0",
            "chokepoint_latency_window_seconds{quantile=\"0.99\"} NaN",
        ] {
            assert!(text.contains(family), "{family} missing in\n{text}");
        }
    }
}
