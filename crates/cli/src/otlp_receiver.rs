//! The OTLP/HTTP trace receiver behind `traces listen` and `run --otlp-listen`.
//!
//! `POST /v1/traces` with an OTLP `ExportTraceServiceRequest` as protobuf
//! (`application/x-protobuf`) or JSON (`application/json`), optionally
//! `Content-Encoding: gzip`. Each accepted request is appended to the output
//! file as one line of OTLP/JSON (protobuf is re-encoded; JSON is validated
//! and written on one line), so the file is what the OpenTelemetry
//! Collector's file exporter writes and `traces analyze` reads. Bodies larger
//! than the limit (before or after gzip) get 413; bad payloads 400; other
//! media types 415; other paths 404. Runs on its own thread and
//! current-thread runtime; connections are capped.

use std::convert::Infallible;
use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;

/// Default `--max-body`.
pub const DEFAULT_MAX_BODY: usize = 16 << 20;
/// Decompressed bodies may be this many times the body limit.
const GZIP_EXPANSION: usize = 8;
/// Most connections served at once.
const MAX_CONNECTIONS: usize = 512;
/// Longest wait for a request head (and between requests on a kept-alive connection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the receiver needs.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// File to append OTLP/JSON lines to.
    pub write: PathBuf,
    /// Largest request body accepted (bytes).
    pub max_body: usize,
}

/// Counters, readable while the receiver runs.
#[derive(Debug, Default)]
pub struct ReceiverCounters {
    /// Requests accepted and written.
    pub requests: AtomicU64,
    /// Spans in them.
    pub spans: AtomicU64,
    /// Requests refused (4xx).
    pub rejected: AtomicU64,
    /// Requests that could not be written (5xx).
    pub write_errors: AtomicU64,
    last_accept_ms: AtomicU64,
}

impl ReceiverCounters {
    /// Milliseconds since the receiver started at the last accepted request (0: none yet).
    pub fn last_accept_ms(&self) -> u64 {
        self.last_accept_ms.load(Ordering::Relaxed)
    }
}

struct State {
    file: Mutex<File>,
    path: PathBuf,
    max_body: usize,
    counters: Arc<ReceiverCounters>,
    started: Instant,
}

/// A running receiver; [`Receiver::stop`] ends it.
pub struct Receiver {
    addr: SocketAddr,
    started: Instant,
    counters: Arc<ReceiverCounters>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters.
    pub fn counters(&self) -> &ReceiverCounters {
        &self.counters
    }

    /// Waits until no request has arrived for `quiet` (at most `limit` in all),
    /// so spans exported shortly after a load test ends are still received.
    pub fn wait_quiet(&self, quiet: Duration, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let now_ms = self.started.elapsed().as_millis() as u64;
            let last = self.counters.last_accept_ms();
            let idle = Duration::from_millis(now_ms.saturating_sub(last));
            if idle >= quiet || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(50).min(quiet));
        }
    }

    /// Stops accepting, lets in-flight requests finish (up to 2 s), and returns.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

/// Opens the file, binds the address and starts serving.
pub fn start(cfg: ReceiverConfig) -> Result<Receiver, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cfg.write)
        .map_err(|e| format!("--write {}: {e}", cfg.write.display()))?;
    let listener = std::net::TcpListener::bind(cfg.listen)
        .map_err(|e| format!("--listen {}: {e}", cfg.listen))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("--listen {}: {e}", cfg.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("--listen {}: {e}", cfg.listen))?;
    let counters = Arc::new(ReceiverCounters::default());
    let started = Instant::now();
    let state = Arc::new(State {
        file: Mutex::new(file),
        path: cfg.write.clone(),
        max_body: cfg.max_body,
        counters: counters.clone(),
        started,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the receiver runtime: {e}"))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("otlp-receiver".into())
        .spawn(move || runtime.block_on(serve(listener, state, rx)))
        .map_err(|e| format!("cannot start the receiver thread: {e}"))?;
    Ok(Receiver {
        addr,
        started,
        counters,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = hyper::service::service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(req, &state).await) }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // A client that never finishes its request head must not hold one of
        // the capped connections forever (slowloris): it is closed after this.
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = watched.await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

fn refuse(state: &State, status: StatusCode, message: String) -> Response<Full<Bytes>> {
    state.counters.rejected.fetch_add(1, Ordering::Relaxed);
    reply(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

async fn handle(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if req.uri().path() != "/v1/traces" {
        return refuse(
            state,
            StatusCode::NOT_FOUND,
            format!(
                "no such path {}; POST OTLP traces to /v1/traces",
                req.uri().path()
            ),
        );
    }
    if req.method() != Method::POST {
        return refuse(
            state,
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST /v1/traces".into(),
        );
    }
    let header = |name: http::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default()
    };
    let content_type = header(http::header::CONTENT_TYPE);
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let encoding = header(http::header::CONTENT_ENCODING);
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body as u64) {
        return too_large(state);
    }
    let body = match Limited::new(req.into_body(), state.max_body)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return too_large(state)
        }
        Err(e) => {
            return refuse(
                state,
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        }
    };
    let body: Bytes = match encoding.as_str() {
        "" | "identity" => body,
        "gzip" | "x-gzip" => match gunzip(&body, state.max_body * GZIP_EXPANSION) {
            Ok(Some(b)) => b.into(),
            Ok(None) => return too_large(state),
            Err(e) => {
                return refuse(
                    state,
                    StatusCode::BAD_REQUEST,
                    format!("invalid gzip body: {e}"),
                )
            }
        },
        other => {
            return refuse(
                state,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {other:?}; use gzip or none"),
            )
        }
    };
    let (line, spans, response_type, response) = match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => {
            match chokepoint_traces::proto::decode_request(&body) {
                Ok(request) => (
                    chokepoint_traces::proto::request_to_json(&request),
                    chokepoint_traces::proto::span_count(&request),
                    "application/x-protobuf",
                    Bytes::from(
                        chokepoint_traces::proto::ExportTraceServiceResponse::default()
                            .encode_to_vec(),
                    ),
                ),
                Err(e) => return refuse(state, StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        "application/json" => match json_line(&body) {
            Ok((line, spans)) => (line, spans, "application/json", Bytes::from_static(b"{}")),
            Err(e) => return refuse(state, StatusCode::BAD_REQUEST, format!("invalid OTLP/JSON: {e}")),
        },
        other => {
            return refuse(
                state,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported Content-Type {other:?}; use application/x-protobuf or application/json"
                ),
            )
        }
    };
    if spans > 0 {
        if let Err(e) = append_line(state, &line) {
            state.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!("cannot write {}: {e}\n", state.path.display()),
            );
        }
    }
    state.counters.requests.fetch_add(1, Ordering::Relaxed);
    state
        .counters
        .spans
        .fetch_add(spans as u64, Ordering::Relaxed);
    state.counters.last_accept_ms.store(
        (state.started.elapsed().as_millis() as u64).max(1),
        Ordering::Relaxed,
    );
    reply(StatusCode::OK, response_type, response)
}

fn too_large(state: &State) -> Response<Full<Bytes>> {
    refuse(
        state,
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "body larger than the limit of {} bytes (--max-body)",
            state.max_body
        ),
    )
}

/// Decompresses at most `limit` bytes; `Ok(None)` when the body expands beyond it.
fn gunzip(body: &[u8], limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)?;
    Ok((out.len() <= limit).then_some(out))
}

/// Validates an OTLP/JSON body and returns it as one line, with its span count.
fn json_line(body: &[u8]) -> Result<(String, usize), String> {
    let mut interner = chokepoint_traces::Interner::new();
    let mut spans = Vec::new();
    let mut stats = chokepoint_traces::DecodeStats::default();
    if let Err(e) =
        chokepoint_traces::json::decode_json(body, &mut interner, &mut spans, &mut stats)
    {
        // An empty request (`{}`) is valid OTLP: nothing to write.
        return match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(m)) if m.is_empty() => Ok((String::new(), 0)),
            _ => Err(e.to_string()),
        };
    }
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?.trim();
    let line = if text.contains(['\n', '\r']) {
        serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| e.to_string())?
            .to_string()
    } else {
        text.to_string()
    };
    Ok((line, spans.len() + stats.invalid_spans as usize))
}

fn append_line(state: &State, line: &str) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let mut file = state
        .file
        .lock()
        .map_err(|_| std::io::Error::other("file lock poisoned"))?;
    // One write of the whole line: appends from concurrent requests never interleave.
    file.write_all(&buf)?;
    file.flush()
}

/// A temporary file path for received spans when no output directory is given.
pub fn temp_spans_path() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "chokepoint-spans-{}-{nanos}.jsonl",
        std::process::id()
    ))
}

/// Whether `path` exists and is non-empty.
pub fn has_data(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}
