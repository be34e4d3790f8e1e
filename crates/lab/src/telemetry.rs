//! OpenTelemetry plumbing: per-lab tracer providers, W3C propagation, a bounded export queue and OTLP/JSON encoding.
//!
//! Spans are made by the official `opentelemetry` SDK (one `SdkTracerProvider`
//! per service, never installed globally, so several labs live in one process).
//! Finished spans go through [`QueueProcessor`] into a bounded channel (full:
//! drop and count) and an exporter task encodes them as OTLP/JSON
//! `ExportTraceServiceRequest`s, appended as lines to `--trace-file` and/or
//! POSTed to `--otlp-endpoint` (OTLP/HTTP with JSON encoding).

use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;
use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::TraceConfig;
use crate::LabError;

/// The logical service a span belongs to (its `service.name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    /// The checkout service itself.
    Checkout,
    /// The payment gateway dependency.
    Payment,
    /// The email dependency.
    Email,
}

impl Service {
    const ALL: [Service; 3] = [Service::Checkout, Service::Payment, Service::Email];

    fn name(self) -> &'static str {
        match self {
            Service::Checkout => "checkout",
            Service::Payment => "payment",
            Service::Email => "email",
        }
    }
}

/// Counters of the export pipeline.
#[derive(Debug, Default)]
pub(crate) struct TraceCounters {
    pub exported: AtomicU64,
    pub dropped: AtomicU64,
    pub export_errors: AtomicU64,
}

type Queued = (Service, SpanData);

/// Span processor that hands finished spans to a bounded channel, never blocking.
#[derive(Debug)]
struct QueueProcessor {
    service: Service,
    tx: mpsc::Sender<Queued>,
    counters: Arc<TraceCounters>,
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send((self.service, span)).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

/// A lab's tracing: three tracers, the propagator and the exporter task.
pub(crate) struct Telemetry {
    tracers: [SdkTracer; 3],
    providers: Vec<SdkTracerProvider>,
    propagator: TraceContextPropagator,
    enabled: bool,
    pub counters: Arc<TraceCounters>,
    exporter: std::sync::Mutex<Option<(watch::Sender<bool>, JoinHandle<()>)>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Builds the providers and, when export is configured, starts the exporter task.
    pub fn new(config: &TraceConfig) -> Result<Telemetry, LabError> {
        let counters = Arc::new(TraceCounters::default());
        let enabled = config.enabled();
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let mut providers = Vec::new();
        for service in Service::ALL {
            let mut builder = SdkTracerProvider::builder().with_resource(
                Resource::builder_empty()
                    .with_service_name(service.name())
                    .build(),
            );
            if enabled {
                builder =
                    builder
                        .with_sampler(Sampler::AlwaysOn)
                        .with_span_processor(QueueProcessor {
                            service,
                            tx: tx.clone(),
                            counters: counters.clone(),
                        });
            } else {
                // Nothing records: spans still carry ids so traceparent propagates.
                builder = builder.with_sampler(Sampler::AlwaysOff);
            }
            providers.push(builder.build());
        }
        drop(tx);
        let tracer = |i: usize| providers[i].tracer("chokepoint-lab");
        let tracers = [tracer(0), tracer(1), tracer(2)];
        let exporter = if enabled {
            let sink = Sink::open(config)?;
            let (stop_tx, stop_rx) = watch::channel(false);
            let task = tokio::spawn(export_loop(rx, sink, counters.clone(), stop_rx));
            Some((stop_tx, task))
        } else {
            None
        };
        Ok(Telemetry {
            tracers,
            providers,
            propagator: TraceContextPropagator::new(),
            enabled,
            counters,
            exporter: std::sync::Mutex::new(exporter),
        })
    }

    fn tracer(&self, service: Service) -> &SdkTracer {
        match service {
            Service::Checkout => &self.tracers[0],
            Service::Payment => &self.tracers[1],
            Service::Email => &self.tracers[2],
        }
    }

    /// The remote parent carried by the `traceparent` header, if any.
    pub fn extract(&self, headers: &HeaderMap) -> Context {
        self.propagator
            .extract_with_context(&Context::new(), &HeaderExtractor(headers))
    }

    /// Writes `traceparent` for `cx` into `headers`.
    pub fn inject(&self, cx: &Context, headers: &mut HeaderMap) {
        self.propagator
            .inject_context(cx, &mut HeaderInjector(headers));
    }

    /// Starts a span now, child of `parent`; the returned context carries it.
    pub fn start(
        &self,
        service: Service,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: &Context,
        attributes: Vec<KeyValue>,
    ) -> Context {
        self.start_at(service, name, kind, parent, attributes, None)
    }

    /// Starts a span with an explicit start time (for waits measured before the span exists).
    pub fn start_at(
        &self,
        service: Service,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: &Context,
        attributes: Vec<KeyValue>,
        start: Option<SystemTime>,
    ) -> Context {
        let tracer = self.tracer(service);
        let mut builder = tracer.span_builder(name).with_kind(kind);
        if self.enabled && !attributes.is_empty() {
            builder = builder.with_attributes(attributes);
        }
        if let Some(start) = start {
            builder = builder.with_start_time(start);
        }
        let span = tracer.build_with_context(builder, parent);
        parent.with_span(span)
    }

    /// Records a finished waiting span `[start, now]` (attribute `chokepoint.wait = true`).
    pub fn record_wait(
        &self,
        service: Service,
        name: &'static str,
        parent: &Context,
        start: SystemTime,
    ) {
        if !self.enabled {
            return;
        }
        let cx = self.start_at(
            service,
            name,
            SpanKind::Internal,
            parent,
            vec![KeyValue::new("chokepoint.wait", true)],
            Some(start),
        );
        end(&cx);
    }

    /// Stops the exporter after draining what is queued (spans ended later are lost).
    pub async fn shutdown(&self) {
        let exporter = self
            .exporter
            .lock()
            .map(|mut guard| guard.take())
            .unwrap_or(None);
        if let Some((stop, task)) = exporter {
            let _ = stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        for p in &self.providers {
            let _ = p.shutdown();
        }
    }
}

/// Ends the span carried by `cx`.
pub(crate) fn end(cx: &Context) {
    cx.span().end();
}

/// Marks the span carried by `cx` as failed.
pub(crate) fn set_error(cx: &Context, message: impl Into<Cow<'static, str>>) {
    cx.span().set_status(Status::error(message));
}

/// Adds an attribute to the span carried by `cx`.
pub(crate) fn set_attr(cx: &Context, kv: KeyValue) {
    cx.span().set_attribute(kv);
}

/// The `waiting` marker attribute understood by `chokepoint traces`.
pub(crate) fn wait_attr() -> KeyValue {
    KeyValue::new("chokepoint.wait", true)
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Where encoded batches go.
struct Sink {
    file: Option<std::fs::File>,
    otlp: Option<(http::Uri, Client<HttpConnector, Full<Bytes>>)>,
}

impl Sink {
    fn open(config: &TraceConfig) -> Result<Sink, LabError> {
        let file = match &config.trace_file {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| LabError::TraceFile {
                        path: path.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        let otlp = match &config.otlp_endpoint {
            Some(url) => {
                let full = otlp_traces_url(url);
                let uri: http::Uri = full.parse().map_err(|_| LabError::InvalidValue {
                    what: "OTLP endpoint",
                    value: url.clone(),
                    expected: "an http:// URL such as http://127.0.0.1:4318".to_string(),
                })?;
                let client = Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Full<Bytes>>();
                Some((uri, client))
            }
            None => None,
        };
        Ok(Sink { file, otlp })
    }

    async fn write(&mut self, line: String, counters: &TraceCounters) {
        if let Some(file) = &mut self.file {
            let mut buf = line.clone().into_bytes();
            buf.push(b'\n');
            if file.write_all(&buf).and_then(|_| file.flush()).is_err() {
                counters.export_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some((uri, client)) = &self.otlp {
            let req = http::Request::post(uri.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(line)));
            let ok = match req {
                Ok(req) => {
                    match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                        Ok(Ok(resp)) => {
                            let status = resp.status();
                            let _ = resp.into_body().collect().await;
                            status.is_success()
                        }
                        _ => false,
                    }
                }
                Err(_) => false,
            };
            if !ok {
                counters.export_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// `http://host:4318` → `http://host:4318/v1/traces`; a URL with a path is kept as is.
fn otlp_traces_url(url: &str) -> String {
    let rest = url.trim_start_matches("http://");
    match rest.find('/') {
        Some(i) if rest[i..].len() > 1 => url.to_string(),
        _ => format!("http://{}/v1/traces", rest.trim_end_matches('/')),
    }
}

const MAX_BATCH: usize = 512;

async fn export_loop(
    mut rx: mpsc::Receiver<Queued>,
    mut sink: Sink,
    counters: Arc<TraceCounters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = rx.recv() => match item {
                Some(item) => {
                    batch.push(item);
                    if batch.len() >= MAX_BATCH {
                        flush(&mut batch, &mut sink, &counters).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => flush(&mut batch, &mut sink, &counters).await,
            _ = stop.changed() => {
                while let Ok(item) = rx.try_recv() {
                    batch.push(item);
                    if batch.len() >= MAX_BATCH {
                        flush(&mut batch, &mut sink, &counters).await;
                    }
                }
                break;
            }
        }
    }
    flush(&mut batch, &mut sink, &counters).await;
}

async fn flush(batch: &mut Vec<Queued>, sink: &mut Sink, counters: &TraceCounters) {
    if batch.is_empty() {
        return;
    }
    let line = encode_request(batch).to_string();
    counters
        .exported
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    batch.clear();
    sink.write(line, counters).await;
}

/// Encodes spans as one OTLP/JSON `ExportTraceServiceRequest` (one `resourceSpans` per service).
pub(crate) fn encode_request(batch: &[Queued]) -> Json {
    let mut resource_spans = Vec::new();
    for service in Service::ALL {
        let spans: Vec<Json> = batch
            .iter()
            .filter(|(s, _)| *s == service)
            .map(|(_, span)| encode_span(span))
            .collect();
        if spans.is_empty() {
            continue;
        }
        resource_spans.push(json!({
            "resource": {
                "attributes": [
                    {"key": "service.name", "value": {"stringValue": service.name()}},
                    {"key": "telemetry.sdk.name", "value": {"stringValue": "opentelemetry"}},
                    {"key": "telemetry.sdk.language", "value": {"stringValue": "rust"}},
                ]
            },
            "scopeSpans": [{
                "scope": {"name": "chokepoint-lab", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }));
    }
    json!({ "resourceSpans": resource_spans })
}

fn unix_nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        .to_string()
}

fn encode_span(span: &SpanData) -> Json {
    let kind = match span.span_kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    let mut out = json!({
        "traceId": span.span_context.trace_id().to_string(),
        "spanId": span.span_context.span_id().to_string(),
        "name": span.name,
        "kind": kind,
        "startTimeUnixNano": unix_nanos(span.start_time),
        "endTimeUnixNano": unix_nanos(span.end_time),
        "attributes": span.attributes.iter().map(encode_kv).collect::<Vec<_>>(),
        "flags": u32::from(span.span_context.trace_flags().to_u8()) | if span.parent_span_is_remote { 0x300 } else { 0x100 },
    });
    let map = out.as_object_mut().expect("json! object");
    if span.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        map.insert(
            "parentSpanId".into(),
            Json::String(span.parent_span_id.to_string()),
        );
    }
    let state = span.span_context.trace_state().header();
    if !state.is_empty() {
        map.insert("traceState".into(), Json::String(state));
    }
    match &span.status {
        Status::Unset => {}
        Status::Ok => {
            map.insert("status".into(), json!({"code": 1}));
        }
        Status::Error { description } => {
            map.insert("status".into(), json!({"code": 2, "message": description}));
        }
    }
    if !span.events.events.is_empty() {
        let events: Vec<Json> = span
            .events
            .events
            .iter()
            .map(|e| {
                json!({
                    "timeUnixNano": unix_nanos(e.timestamp),
                    "name": e.name,
                    "attributes": e.attributes.iter().map(encode_kv).collect::<Vec<_>>(),
                })
            })
            .collect();
        map.insert("events".into(), Json::Array(events));
    }
    if !span.links.links.is_empty() {
        let links: Vec<Json> = span
            .links
            .links
            .iter()
            .map(|l| {
                json!({
                    "traceId": l.span_context.trace_id().to_string(),
                    "spanId": l.span_context.span_id().to_string(),
                    "attributes": l.attributes.iter().map(encode_kv).collect::<Vec<_>>(),
                })
            })
            .collect();
        map.insert("links".into(), Json::Array(links));
    }
    out
}

fn encode_kv(kv: &KeyValue) -> Json {
    json!({"key": kv.key.as_str(), "value": encode_value(&kv.value)})
}

fn encode_value(v: &Value) -> Json {
    use opentelemetry::Array;
    match v {
        Value::Bool(b) => json!({"boolValue": b}),
        // OTLP/JSON writes 64-bit integers as strings.
        Value::I64(i) => json!({"intValue": i.to_string()}),
        Value::F64(f) => json!({"doubleValue": f}),
        Value::String(s) => json!({"stringValue": s.as_str()}),
        Value::Array(Array::Bool(items)) => array(items.iter().map(|b| json!({"boolValue": b}))),
        Value::Array(Array::I64(items)) => {
            array(items.iter().map(|i| json!({"intValue": i.to_string()})))
        }
        Value::Array(Array::F64(items)) => array(items.iter().map(|f| json!({"doubleValue": f}))),
        Value::Array(Array::String(items)) => {
            array(items.iter().map(|s| json!({"stringValue": s.as_str()})))
        }
        other => json!({"stringValue": other.to_string()}),
    }
}

fn array(values: impl Iterator<Item = Json>) -> Json {
    json!({"arrayValue": {"values": values.collect::<Vec<_>>()}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span_data(name: &'static str) -> SpanData {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
                SpanId::from_hex("00f067aa0ba902b7").unwrap(),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from_hex("0000000000000001").unwrap(),
            parent_span_is_remote: true,
            span_kind: SpanKind::Client,
            name: name.into(),
            start_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            end_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_223_456_789),
            attributes: vec![KeyValue::new("db.system", "sqlite")],
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::error("timeout"),
            instrumentation_scope: Default::default(),
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, mut rx) = mpsc::channel(2);
        let counters = Arc::new(TraceCounters::default());
        let processor = QueueProcessor {
            service: Service::Checkout,
            tx,
            counters: counters.clone(),
        };
        for _ in 0..5 {
            processor.on_end(span_data("db.query"));
        }
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 3);
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok() && rx.try_recv().is_err());
    }

    #[test]
    fn spans_encode_with_otlp_json_field_names() {
        let batch = vec![
            (Service::Checkout, span_data("db.query")),
            (Service::Payment, span_data("POST /charge")),
        ];
        let v = encode_request(&batch);
        let rs = v["resourceSpans"].as_array().unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!(
            rs[1]["resource"]["attributes"][0],
            json!({"key": "service.name", "value": {"stringValue": "payment"}})
        );
        let span = &rs[0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["spanId"], "00f067aa0ba902b7");
        assert_eq!(span["parentSpanId"], "0000000000000001");
        assert_eq!(span["kind"], 3);
        assert_eq!(span["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(span["endTimeUnixNano"], "1700000000223456789");
        assert_eq!(span["status"], json!({"code": 2, "message": "timeout"}));
        assert_eq!(span["flags"], 0x301);
    }

    #[test]
    fn otlp_url() {
        assert_eq!(
            otlp_traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            otlp_traces_url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            otlp_traces_url("http://127.0.0.1:9/custom/path"),
            "http://127.0.0.1:9/custom/path"
        );
    }

    #[test]
    fn values_encode_like_otlp_json() {
        assert_eq!(
            encode_kv(&KeyValue::new("n", 5_i64)),
            json!({"key": "n", "value": {"intValue": "5"}})
        );
        assert_eq!(
            encode_kv(&KeyValue::new("s", "x")),
            json!({"key": "s", "value": {"stringValue": "x"}})
        );
    }
}
