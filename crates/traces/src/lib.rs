//! Trace analysis for chokepoint: where requests *wait*.
//!
//! Decode OpenTelemetry traces (OTLP/JSON, OTLP protobuf, Jaeger JSON), assemble
//! spans into traces in bounded memory, find each trace's critical path
//! (CRISP-style), split waiting from running, aggregate critical-path time by
//! (service, operation) for traces around P50 versus at/beyond P99, and run
//! detectors (N+1, sequential independent calls, fan-out, retries, errors,
//! client→server network gaps).
//!
//! **Invariant: this crate is pure.** No I/O (no files, no sockets, no
//! clock), no tokio, no HTTP: callers hand it bytes and get plain data back.
//! The CLI reads files and runs the OTLP receiver; this crate only decodes
//! and computes. Bad input is counted or returned as an error, never a panic.
//!
//! ```
//! use chokepoint_traces::{Analysis, Config, Selection};
//!
//! let line = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},
//!   "scopeSpans":[{"spans":[
//!     {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"GET /cart","kind":2,
//!      "startTimeUnixNano":"1000000","endTimeUnixNano":"11000000"},
//!     {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"00f067aa0ba902b7","parentSpanId":"b7ad6b7169203331",
//!      "name":"db.pool.acquire","kind":1,"startTimeUnixNano":"2000000","endTimeUnixNano":"9000000"}]}]}]}"#;
//! let mut analysis = Analysis::new(Config::default(), Selection::Duration);
//! analysis.push_json(line.as_bytes()).unwrap();
//! let outcome = analysis.finish();
//! assert_eq!(outcome.report.traces, 1);
//! let top = &outcome.report.tail[0];
//! assert_eq!((top.operation.as_str(), top.wait), ("db.pool.acquire", true));
//! assert!((top.share_p99 - 0.7).abs() < 1e-9); // 7 ms of the 10 ms critical path
//! ```
#![deny(missing_docs)]

pub mod aggregate;
pub mod analyze;
pub mod assemble;
pub mod classify;
pub mod json;
pub mod model;
pub mod proto;

pub use aggregate::{
    AggregateConfig, Aggregator, Finding, GapRow, Groups, Report, Selection, TailRow,
};
pub use analyze::{analyze_trace, AnalysisConfig, FindingKind, TraceAnomalies, TraceSummary};
pub use assemble::{Assembler, AssemblerConfig, AssemblyStats};
pub use model::{trace_id_hex, Interner, Span, SpanKind, Sym, TraceId};

/// A document or message that could not be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not valid JSON, or a field of the wrong type (serde's message names line and column).
    #[error("{0}")]
    Json(String),
    /// Not a valid protobuf `ExportTraceServiceRequest`.
    #[error("not an OTLP protobuf ExportTraceServiceRequest: {0}")]
    Proto(String),
    /// Valid JSON of the wrong shape.
    #[error("{0}")]
    Shape(String),
}

/// Spans skipped while decoding (bad ids), with the first reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DecodeStats {
    /// Spans skipped.
    pub invalid_spans: u64,
    /// Why the first one was skipped.
    pub first_invalid: Option<String>,
}

impl DecodeStats {
    /// Counts one invalid span.
    pub fn invalid(&mut self, why: String) {
        self.invalid_spans += 1;
        if self.first_invalid.is_none() {
            self.first_invalid = Some(why);
        }
    }
}

/// How a byte stream is encoded, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// gzip (magic 1f 8b): decompress, then detect again.
    Gzip,
    /// JSON: OTLP/JSON (one document or JSON lines) or Jaeger JSON.
    Json,
    /// Anything else: OTLP protobuf.
    Protobuf,
}

/// Detects the encoding from the first bytes of a file or body.
pub fn detect(head: &[u8]) -> InputKind {
    if head.starts_with(&[0x1f, 0x8b]) {
        return InputKind::Gzip;
    }
    let first = head.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'{') | Some(b'[') => InputKind::Json,
        // A protobuf ExportTraceServiceRequest starts with field 1, wire type 2 (0x0a);
        // an empty input or anything else is handed to the protobuf decoder, which says what is wrong.
        _ => InputKind::Protobuf,
    }
}

/// Splits a protobuf file into messages when it is a sequence of 4-byte
/// big-endian length-prefixed messages (the OpenTelemetry Collector file
/// exporter's `proto` format) covering the input exactly; `None` otherwise.
pub fn split_length_prefixed(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() - 4 < len {
            return None;
        }
        out.push(&rest[4..4 + len]);
        rest = &rest[4 + len..];
    }
    (!out.is_empty()).then_some(out)
}

/// Every tunable of an analysis.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Streaming assembly limits.
    pub assembler: AssemblerConfig,
    /// Per-trace analysis.
    pub analysis: AnalysisConfig,
    /// Aggregation.
    pub aggregate: AggregateConfig,
}

/// What [`Analysis::finish`] returns.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The aggregated analysis.
    pub report: Report,
    /// Assembly counters (late spans, early completions, spans over the per-trace cap).
    pub assembly: AssemblyStats,
    /// Decoding counters.
    pub decode: DecodeStats,
}

/// A streaming analysis: push documents or spans, then [`Analysis::finish`].
pub struct Analysis {
    cfg: Config,
    interner: Interner,
    assembler: Assembler,
    aggregator: Aggregator,
    decode: DecodeStats,
    buf: Vec<Span>,
}

impl Analysis {
    /// A new analysis.
    pub fn new(cfg: Config, selection: Selection) -> Analysis {
        Analysis {
            interner: Interner::new(),
            assembler: Assembler::new(cfg.assembler.clone()),
            aggregator: Aggregator::new(cfg.aggregate.clone(), selection),
            decode: DecodeStats::default(),
            buf: Vec::new(),
            cfg,
        }
    }

    /// The interner, to build spans by hand (tests, benchmarks).
    pub fn interner_mut(&mut self) -> &mut Interner {
        &mut self.interner
    }

    /// Decodes one JSON document (OTLP/JSON request or Jaeger JSON); returns its span count.
    pub fn push_json(&mut self, bytes: &[u8]) -> Result<usize, DecodeError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let result = json::decode_json(bytes, &mut self.interner, &mut buf, &mut self.decode);
        let n = buf.len();
        self.push_all(&mut buf);
        self.buf = buf;
        result.map(|_| n)
    }

    /// Decodes one protobuf `ExportTraceServiceRequest`; returns its span count.
    pub fn push_protobuf(&mut self, bytes: &[u8]) -> Result<usize, DecodeError> {
        let request = proto::decode_request(bytes)?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        proto::request_spans(&request, &mut self.interner, &mut buf, &mut self.decode);
        let n = buf.len();
        self.push_all(&mut buf);
        self.buf = buf;
        Ok(n)
    }

    fn push_all(&mut self, buf: &mut Vec<Span>) {
        for span in buf.drain(..) {
            self.push_span(span);
        }
    }

    /// Adds one span (its symbols from [`Analysis::interner_mut`]).
    pub fn push_span(&mut self, span: Span) {
        let Analysis {
            cfg,
            interner,
            assembler,
            aggregator,
            ..
        } = self;
        assembler.push(span, &mut |id, mut spans| {
            let summary = analyze_trace(id, &mut spans, interner, &cfg.analysis);
            aggregator.add(&summary);
        });
    }

    /// Completes every pending trace and returns the result.
    pub fn finish(mut self) -> Outcome {
        let Analysis {
            cfg,
            interner,
            assembler,
            aggregator,
            ..
        } = &mut self;
        assembler.finish(&mut |id, mut spans| {
            let summary = analyze_trace(id, &mut spans, interner, &cfg.analysis);
            aggregator.add(&summary);
        });
        Outcome {
            report: self.aggregator.report(&self.interner),
            assembly: self.assembler.stats.clone(),
            decode: self.decode.clone(),
        }
    }
}
