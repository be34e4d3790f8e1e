//! `chokepoint traces analyze|listen` and the trace side of `run --otlp-listen`: files in, `chokepoint.traces.v1` out.
//!
//! Reading files and sockets happens here; every computation is in the pure
//! `chokepoint-traces` crate. Input formats are detected per file: gzip
//! (decompressed first), JSON (OTLP/JSON lines, one OTLP/JSON document, or
//! Jaeger JSON) and OTLP protobuf (one message, or 4-byte length-prefixed
//! messages).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chokepoint_traces::{
    trace_id_hex, Analysis, Config, FindingKind, InputKind, Outcome, Selection,
};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::otlp_receiver::{self, ReceiverConfig, DEFAULT_MAX_BODY};
use crate::{units, Failure};

/// Schema name of the JSON output.
pub const TRACES_SCHEMA: &str = "chokepoint.traces.v1";

/// Largest protobuf file read whole (JSON lines stream instead).
const MAX_PROTOBUF_FILE: u64 = 1 << 30;

/// `chokepoint traces`.
#[derive(Args, Debug)]
pub struct TracesArgs {
    #[command(subcommand)]
    command: TracesCommand,
}

#[derive(Subcommand, Debug)]
enum TracesCommand {
    /// Where requests wait: critical paths, P50 vs P99 by operation, detectors.
    #[command(
        after_help = "Inputs: OTLP/JSON (one request or JSON lines, as the Collector's file exporter \
writes), OTLP protobuf, Jaeger JSON (UI download); gzip is decompressed.\n\nExamples:\n  \
chokepoint lab --scenario pool-exhaustion --trace-file spans.jsonl\n  \
chokepoint traces analyze spans.jsonl\n  \
chokepoint traces analyze spans.jsonl --run results/ --json"
    )]
    Analyze(AnalyzeArgs),
    /// OTLP/HTTP receiver: append received traces to a file as OTLP/JSON lines.
    #[command(
        after_help = "Point an exporter at http://ADDR (it posts to /v1/traces; protobuf or JSON, gzip ok).\n\n\
Examples:\n  chokepoint traces listen --write spans.jsonl\n  \
chokepoint traces listen --listen 127.0.0.1:0 --write spans.jsonl --analyze"
    )]
    Listen(ListenArgs),
}

/// Flags of `traces analyze`.
#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// Trace files (OTLP/JSON lines or document, OTLP protobuf, Jaeger JSON; gzip ok).
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// Print `chokepoint.traces.v1` JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Join with a load test (`run --trace-propagate --out DIR`): its slowest requests
    /// (at/beyond P99, client-measured) become the tail group. DIR or its summary.json.
    #[arg(long, value_name = "PATH")]
    run: Option<PathBuf>,
    /// A trace is complete when the data's clock is this far past its last span.
    #[arg(long, value_name = "DUR", value_parser = units::parse_duration, default_value = "30s")]
    window: Duration,
    /// Clock-skew allowance between parent and child spans.
    #[arg(long, value_name = "DUR", value_parser = units::parse_duration, default_value = "500us")]
    skew: Duration,
    /// Operations shown in the text report.
    #[arg(long, value_name = "N", default_value_t = 10)]
    top: usize,
}

fn size_arg(text: &str) -> Result<u64, String> {
    chokepoint_lab::parse_size(text).map_err(|e| e.to_string())
}

/// Flags of `traces listen`.
#[derive(Args, Debug)]
pub struct ListenArgs {
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4318")]
    listen: SocketAddr,
    /// File to append received traces to (OTLP/JSON lines).
    #[arg(long, value_name = "FILE")]
    write: PathBuf,
    /// Largest request body; larger ones get 413.
    #[arg(long = "max-body", value_name = "SIZE", value_parser = size_arg, default_value = "16MiB")]
    max_body: u64,
    /// On SIGINT/SIGTERM, analyze what was received (the file) and print the report.
    #[arg(long)]
    analyze: bool,
    /// With --analyze: print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `chokepoint traces ...`.
pub fn run(args: TracesArgs) -> Result<i32, Failure> {
    match args.command {
        TracesCommand::Analyze(a) => analyze(a),
        TracesCommand::Listen(l) => listen(l),
    }
}

fn config(window: Duration, skew: Duration) -> Config {
    let mut cfg = Config::default();
    cfg.assembler.window_ns = window.as_nanos().min(u128::from(u64::MAX)) as u64;
    cfg.analysis.skew_ns = skew.as_nanos().min(u128::from(u64::MAX)) as u64;
    cfg
}

fn analyze(args: AnalyzeArgs) -> Result<i32, Failure> {
    let (selection, join) = match &args.run {
        Some(path) => {
            let (ids, join) = run_tail_ids(path)?;
            (Selection::Explicit(ids), Some(join))
        }
        None => (Selection::Duration, None),
    };
    let (outcome, input) = analyze_files(&args.files, config(args.window, args.skew), selection)?;
    if args.json {
        let v = to_json(&outcome, &input, join.as_ref());
        crate::print_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("json")
        ));
    } else {
        crate::print_stdout(&render_text(&outcome, &input, join.as_ref(), args.top));
    }
    Ok(0)
}

/// How a trace analysis was joined to a load test.
#[derive(Debug, Clone)]
pub struct Join {
    /// Where the client-side data came from.
    pub source: String,
    /// Requests in the load test.
    pub requests: u64,
    /// Tail requests (at/beyond the client P99) known by trace id.
    pub tail_requests: u64,
    /// Client-measured P99 (ms), when known.
    pub client_p99_ms: Option<f64>,
    /// Whether per-request client latencies are known (else only the ranking).
    pub latencies_known: bool,
    /// Requests around the client's median (P40–P60) known by trace id from
    /// the run's trace sample; 0 when the P50 group is chosen by trace duration.
    pub p50_requests: u64,
}

/// The tail of a run directory: its slowest trace ids, as many as are at/beyond P99.
fn run_tail_ids(path: &Path) -> Result<(HashMap<u128, u64>, Join), Failure> {
    let file = if path.is_dir() {
        path.join(crate::output::SUMMARY_FILE)
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| Failure::Usage(format!("--run {}: {e}", file.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Failure::Usage(format!("--run {}: {e}", file.display())))?;
    let requests = v["requests"].as_u64().ok_or_else(|| {
        Failure::Usage(format!(
            "--run {}: field `requests`: expected a number (is this a chokepoint summary.json?)",
            file.display()
        ))
    })?;
    let ids = v["slow_trace_ids"].as_array().ok_or_else(|| {
        Failure::Usage(format!(
            "--run {}: field `slow_trace_ids`: expected a list (run with --trace-propagate)",
            file.display()
        ))
    })?;
    if ids.is_empty() {
        return Err(Failure::Usage(format!(
            "--run {}: field `slow_trace_ids` is empty (run with --trace-propagate)",
            file.display()
        )));
    }
    // Slowest first; as many as 1% of the requests are at/beyond P99.
    let n_tail = ((requests as f64 * 0.01).ceil() as usize).clamp(1, ids.len());
    let mut map = HashMap::new();
    for (k, id) in ids.iter().take(n_tail).enumerate() {
        let parsed = id
            .as_str()
            .and_then(|s| u128::from_str_radix(s, 16).ok())
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "--run {}: field `slow_trace_ids[{k}]`: expected 32 hex digits",
                    file.display()
                ))
            })?;
        map.insert(parsed, 0);
    }
    let join = Join {
        source: file.display().to_string(),
        requests,
        tail_requests: map.len() as u64,
        client_p99_ms: v["latency_ms"]["p99"].as_f64(),
        latencies_known: false,
        p50_requests: 0,
    };
    Ok((map, join))
}

/// What was read.
#[derive(Debug, Default, Clone)]
pub struct InputStats {
    /// Files read.
    pub files: Vec<String>,
    /// Format per file.
    pub formats: Vec<&'static str>,
    /// Documents/messages decoded.
    pub documents: u64,
    /// Lines or messages that failed to decode (skipped).
    pub malformed: u64,
    /// The first of them: `FILE:LINE: why`.
    pub first_malformed: Option<String>,
}

impl InputStats {
    fn malformed(&mut self, at: String) {
        self.malformed += 1;
        if self.first_malformed.is_none() {
            self.first_malformed = Some(at);
        }
    }
}

/// Reads and analyzes files. A file with nothing decodable is an error naming it.
pub fn analyze_files(
    files: &[PathBuf],
    cfg: Config,
    selection: Selection,
) -> Result<(Outcome, InputStats), Failure> {
    let mut analysis = Analysis::new(cfg, selection);
    let mut input = InputStats::default();
    for path in files {
        read_file(path, &mut analysis, &mut input)?;
    }
    Ok((analysis.finish(), input))
}

fn read_file(path: &Path, analysis: &mut Analysis, input: &mut InputStats) -> Result<(), Failure> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| Failure::Usage(format!("{name}: {e}")))?;
    let mut reader: Box<dyn BufRead> = Box::new(BufReader::with_capacity(1 << 20, file));
    let mut kind = detect(&mut reader, &name)?;
    let mut gzip = false;
    if kind == InputKind::Gzip {
        gzip = true;
        reader = Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(reader),
        ));
        kind = detect(&mut reader, &name)?;
    }
    let before_docs = input.documents;
    let before_bad = input.malformed;
    let format = match kind {
        InputKind::Json => read_json(reader, &name, analysis, input)?,
        _ => read_protobuf(reader, &name, analysis, input)?,
    };
    input.files.push(name.clone());
    input
        .formats
        .push(if gzip { gzip_name(format) } else { format });
    if input.documents == before_docs {
        let why = input
            .first_malformed
            .clone()
            .filter(|_| input.malformed > before_bad)
            .unwrap_or_else(|| format!("{name}: no traces in it"));
        return Err(Failure::Usage(why));
    }
    Ok(())
}

fn gzip_name(format: &'static str) -> &'static str {
    match format {
        "otlp-json-lines" => "otlp-json-lines+gzip",
        "otlp-json" => "otlp-json+gzip",
        "jaeger-json" => "jaeger-json+gzip",
        _ => "otlp-protobuf+gzip",
    }
}

fn detect(reader: &mut Box<dyn BufRead>, name: &str) -> Result<InputKind, Failure> {
    let head = reader
        .fill_buf()
        .map_err(|e| Failure::Usage(format!("{name}: {e}")))?;
    if head.is_empty() {
        return Err(Failure::Usage(format!(
            "{name}: empty file, no traces in it"
        )));
    }
    Ok(chokepoint_traces::detect(head))
}

fn json_kind(doc: &[u8]) -> &'static str {
    // Cheap look at the top-level key for the report; decoding checks the shape properly.
    let head = &doc[..doc.len().min(64)];
    if head.windows(6).any(|w| w == b"\"data\"") {
        "jaeger-json"
    } else {
        "otlp-json"
    }
}

fn read_json(
    mut reader: Box<dyn BufRead>,
    name: &str,
    analysis: &mut Analysis,
    input: &mut InputStats,
) -> Result<&'static str, Failure> {
    let mut line = Vec::new();
    let mut line_no = 0u64;
    let mut format = None;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Failure::Usage(format!("{name}: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if format.is_none() {
            // The first document decides: complete on its line (JSON lines), or one
            // document spread over many lines (pretty-printed OTLP/JSON or Jaeger).
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&line) {
                if e.is_eof() {
                    let mut all = std::mem::take(&mut line);
                    reader
                        .read_to_end(&mut all)
                        .map_err(|e| Failure::Usage(format!("{name}: {e}")))?;
                    let kind = json_kind(&all);
                    match analysis.push_json(&all) {
                        Ok(_) => input.documents += 1,
                        Err(e) => {
                            // serde's message carries the line and column within the document.
                            return Err(Failure::Usage(format!("{name}: {e}")));
                        }
                    }
                    return Ok(kind);
                }
            }
            format = Some(if json_kind(&line) == "jaeger-json" {
                "jaeger-json"
            } else {
                "otlp-json-lines"
            });
        }
        match analysis.push_json(&line) {
            Ok(_) => input.documents += 1,
            Err(e) => input.malformed(format!("{name}:{line_no}: {e}")),
        }
    }
    Ok(format.unwrap_or("otlp-json-lines"))
}

fn read_protobuf(
    reader: Box<dyn BufRead>,
    name: &str,
    analysis: &mut Analysis,
    input: &mut InputStats,
) -> Result<&'static str, Failure> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_PROTOBUF_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::Usage(format!("{name}: {e}")))?;
    if bytes.len() as u64 > MAX_PROTOBUF_FILE {
        return Err(Failure::Usage(format!(
            "{name}: protobuf file larger than 1 GiB; split it or use OTLP/JSON lines, which stream"
        )));
    }
    // Length-prefixed messages when the framing covers the file exactly and every frame decodes.
    if let Some(frames) = chokepoint_traces::split_length_prefixed(&bytes) {
        if frames.len() > 1
            && frames
                .iter()
                .all(|f| chokepoint_traces::proto::decode_request(f).is_ok())
        {
            for (k, frame) in frames.iter().enumerate() {
                match analysis.push_protobuf(frame) {
                    Ok(_) => input.documents += 1,
                    Err(e) => input.malformed(format!("{name}: message {}: {e}", k + 1)),
                }
            }
            return Ok("otlp-protobuf");
        }
    }
    match analysis.push_protobuf(&bytes) {
        Ok(_) => input.documents += 1,
        Err(e) => {
            return Err(Failure::Usage(format!(
                "{name}: not OTLP/JSON, Jaeger JSON or OTLP protobuf ({e})"
            )))
        }
    }
    Ok("otlp-protobuf")
}

fn ms(ns: f64) -> f64 {
    (ns / 1e6 * 1000.0).round() / 1000.0
}

fn ratio(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn finding_message(f: &chokepoint_traces::Finding) -> String {
    let pct = f.fraction * 100.0;
    match f.kind {
        FindingKind::NPlusOne => format!(
            "{} runs {} {:.0}× one after another (up to {}) in {pct:.0}% of traces; one batched call would save ~{:.1} ms each",
            f.parent_operation, f.operation, f.mean_count, f.max_count, f.mean_saving_ns / 1e6
        ),
        FindingKind::SequentialIndependent => format!(
            "{} calls {} one after another in {pct:.0}% of traces; in parallel they would save ~{:.1} ms each",
            f.parent_operation,
            f.deps.join(" → "),
            f.mean_saving_ns / 1e6
        ),
        FindingKind::FanOut => format!(
            "{} fans out {:.0}× to {} in {pct:.0}% of traces and waits for the slowest: ~{:.1} ms beyond the median call",
            f.parent_operation, f.mean_count, f.operation, f.mean_saving_ns / 1e6
        ),
        FindingKind::Retry => format!(
            "{} is retried {:.1}× per affected trace ({pct:.0}% of traces); failed attempts cost ~{:.1} ms each",
            f.operation, f.mean_count, f.mean_saving_ns / 1e6
        ),
        FindingKind::Error => format!(
            "{} ({}) failed in {} traces ({pct:.1}%)",
            f.operation, f.service, f.traces
        ),
    }
}

/// Network gaps worth reporting as a detector: at least this share of all critical-path time.
const NETWORK_GAP_MIN_SHARE: f64 = 0.02;
/// Most detectors listed.
const MAX_DETECTORS: usize = 50;

fn detectors_json(outcome: &Outcome) -> Vec<Value> {
    let r = &outcome.report;
    let mut out: Vec<Value> = r
        .findings
        .iter()
        .take(MAX_DETECTORS)
        .map(|f| {
            json!({
                "kind": f.kind.as_str(),
                "service": f.service,
                "operation": f.operation,
                "parent": {"service": f.parent_service, "operation": f.parent_operation},
                "traces": f.traces,
                "fraction": ratio(f.fraction),
                "message": finding_message(f),
                "evidence": {
                    "mean_count": ratio(f.mean_count),
                    "max_count": f.max_count,
                    "mean_ms": ms(f.mean_ns),
                    "mean_saving_ms": ms(f.mean_saving_ns),
                    "critical_path_share": ratio(f.path_share),
                    "dependencies": f.deps,
                    "example_trace_id": trace_id_hex(f.example_trace_id),
                },
            })
        })
        .collect();
    for g in r
        .network
        .iter()
        .filter(|g| g.path_share >= NETWORK_GAP_MIN_SHARE)
    {
        out.push(json!({
            "kind": "network_gap",
            "service": g.client,
            "operation": format!("{} → {}", g.client, g.server),
            "parent": null,
            "traces": null,
            "fraction": null,
            "message": format!(
                "{} → {}: {:.2} ms per call between the client span and the server span, {:.1}% of critical-path time",
                g.client, g.server, g.mean_gap_ns / 1e6, g.path_share * 100.0
            ),
            "evidence": {
                "calls": g.calls,
                "mean_gap_ms": ms(g.mean_gap_ns),
                "critical_path_share": ratio(g.path_share),
            },
        }));
    }
    out
}

/// The `chokepoint.traces.v1` document.
pub fn to_json(outcome: &Outcome, input: &InputStats, join: Option<&Join>) -> Value {
    let r = &outcome.report;
    let g = &r.groups;
    let a = &r.anomalies;
    let tail: Vec<Value> = r
        .tail
        .iter()
        .take(100)
        .map(|t| {
            json!({
                "service": t.service,
                "operation": t.operation,
                "wait": t.wait,
                "share_p50": ratio(t.share_p50),
                "share_p99": ratio(t.share_p99),
                "ms_p50": ms(t.mean_ns_p50),
                "ms_p99": ms(t.mean_ns_p99),
                "contribution_ms": ms(t.mean_ns_p99),
                "extra_ms": ms(t.extra_ns),
                "extra_share": ratio(t.extra_share),
            })
        })
        .collect();
    let network: Vec<Value> = r
        .network
        .iter()
        .map(|n| {
            json!({"client": n.client, "server": n.server, "calls": n.calls,
                   "mean_gap_ms": ms(n.mean_gap_ns), "critical_path_share": ratio(n.path_share)})
        })
        .collect();
    json!({
        "schema": TRACES_SCHEMA,
        "tool_version": env!("CARGO_PKG_VERSION"),
        "inputs": input.files.iter().zip(&input.formats).map(|(f, k)| json!({"file": f, "format": k})).collect::<Vec<_>>(),
        "traces": r.traces,
        "spans": r.spans,
        "groups": {
            "by": if g.by_client_latency { "client_latency" } else { "trace_duration" },
            "p50_ms": ms(g.p50_ns),
            "p99_ms": g.p99_ns.map(ms),
            "tail_from_ms": g.tail_from_ns.map(|v| ms(v as f64)),
            "n_p50": g.n_p50,
            "n_p99": g.n_tail,
            "mean_ms_p50": ms(g.mean_ns_p50),
            "mean_ms_p99": ms(g.mean_ns_tail),
            "client_mean_ms_p99": g.client_mean_ns_tail.filter(|_| join.is_some_and(|j| j.latencies_known)).map(ms),
            "wait_share_p50": ratio(g.wait_share_p50),
            "wait_share_p99": ratio(g.wait_share_tail),
            "note": group_note(r, join),
        },
        "join": join.map(|j| json!({
            "source": j.source,
            "requests": j.requests,
            "tail_requests": j.tail_requests,
            "p50_requests": j.p50_requests,
            "tail_traces_found": g.n_tail,
            "client_p99_ms": j.client_p99_ms,
        })),
        "tail": tail,
        "detectors": detectors_json(outcome),
        "network": network,
        "slowest": r.slowest.iter().map(|(id, ns)| json!({"trace_id": trace_id_hex(*id), "duration_ms": ms(*ns as f64)})).collect::<Vec<_>>(),
        "anomalies": {
            "malformed_documents": input.malformed,
            "first_malformed": input.first_malformed,
            "invalid_spans": outcome.decode.invalid_spans,
            "first_invalid_span": outcome.decode.first_invalid,
            "duplicate_span_ids": a.duplicate_span_ids,
            "missing_parents": a.missing_parents,
            "extra_roots": a.extra_roots,
            "cycle_spans": a.cycle_spans,
            "negative_durations": a.negative_durations,
            "clock_skew": a.clock_skew,
            "rootless_traces": a.rootless,
            "async_spans": a.async_spans,
            "late_spans": outcome.assembly.late_spans,
            "spans_over_trace_cap": outcome.assembly.spans_over_cap,
            "traces_completed_early": outcome.assembly.evicted_early,
            "findings_dropped": r.findings_dropped,
        },
    })
}

/// Says when the groups are too small to trust.
fn group_note(r: &chokepoint_traces::Report, join: Option<&Join>) -> Option<String> {
    let g = &r.groups;
    if r.traces == 0 {
        return Some("no traces".into());
    }
    if let Some(j) = join {
        if g.n_tail < j.tail_requests {
            return Some(format!(
                "{} of the {} slowest requests had a trace in the input",
                g.n_tail, j.tail_requests
            ));
        }
    }
    if g.n_tail < 10 {
        return Some(format!(
            "only {} traces at/beyond P99: the tail shares rest on few samples (P99 wants ≥ 1,000 traces)",
            g.n_tail
        ));
    }
    None
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// The text report.
pub fn render_text(
    outcome: &Outcome,
    input: &InputStats,
    join: Option<&Join>,
    top: usize,
) -> String {
    use std::fmt::Write as _;
    let r = &outcome.report;
    let g = &r.groups;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "traces: {} ({} spans) from {}",
        r.traces,
        r.spans,
        input
            .files
            .iter()
            .zip(&input.formats)
            .map(|(f, k)| format!("{f} [{k}]"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if r.traces == 0 {
        let _ = writeln!(s, "no complete traces: nothing to analyze");
        return s;
    }
    match join {
        Some(j) => {
            let _ = writeln!(
                s,
                "groups: P40–P60 by trace duration ({:.2} ms mean, n={})  vs  the load test's slowest requests ({} of {} requests, client P99 {}; {} traces found, {:.2} ms mean in the server)",
                g.mean_ns_p50 / 1e6,
                g.n_p50,
                j.tail_requests,
                j.requests,
                j.client_p99_ms.map_or("?".into(), |v| format!("{v:.2} ms")),
                g.n_tail,
                g.mean_ns_tail / 1e6
            );
            if let (true, Some(c)) = (j.latencies_known, g.client_mean_ns_tail) {
                if c > 0.0 {
                    let _ = writeln!(
                        s,
                        "  tail requests: {:.2} ms mean as the client measured it, {:.2} ms in the traced server: {:.0}% outside the server (client queueing, network)",
                        c / 1e6,
                        g.mean_ns_tail / 1e6,
                        ((c - g.mean_ns_tail) / c * 100.0).max(0.0)
                    );
                }
            }
        }
        None => {
            let _ = writeln!(
                s,
                "groups: P40–P60 ({:.2} ms mean, n={})  vs  at/beyond P99 ({:.2} ms mean, n={})",
                g.mean_ns_p50 / 1e6,
                g.n_p50,
                g.mean_ns_tail / 1e6,
                g.n_tail
            );
        }
    }
    if let Some(note) = group_note(r, join) {
        let _ = writeln!(s, "note: {note}");
    }
    let _ = writeln!(
        s,
        "waiting: {} of critical-path time at P50, {} in the tail",
        pct(g.wait_share_p50),
        pct(g.wait_share_tail)
    );
    let _ = writeln!(
        s,
        "\nwhere the tail's time goes (critical-path self time per trace, mean; largest in the tail first):"
    );
    let rows: Vec<_> = r.tail.iter().take(top).collect();
    let svc_w = rows
        .iter()
        .map(|t| t.service.chars().count())
        .max()
        .unwrap_or(7)
        .max(7);
    let op_w = rows
        .iter()
        .map(|t| t.operation.chars().count())
        .max()
        .unwrap_or(9)
        .clamp(9, 48);
    let _ = writeln!(
        s,
        "  {:<svc_w$}  {:<op_w$}  {:>4}  {:>10} {:>5}  {:>10} {:>5}  {:>10}",
        "service", "operation", "", "P50 ms", "share", "tail ms", "share", "vs P50"
    );
    for t in rows {
        let op: String = t.operation.chars().take(op_w).collect();
        let _ = writeln!(
            s,
            "  {:<svc_w$}  {:<op_w$}  {:>4}  {:>10.3} {:>5}  {:>10.3} {:>5}  {:>+10.3}",
            t.service,
            op,
            if t.wait { "wait" } else { "" },
            t.mean_ns_p50 / 1e6,
            pct(t.share_p50),
            t.mean_ns_p99 / 1e6,
            pct(t.share_p99),
            t.extra_ns / 1e6
        );
    }
    let detectors = detectors_json(outcome);
    if detectors.is_empty() {
        let _ = writeln!(s, "\ndetectors: nothing found");
    } else {
        let _ = writeln!(s, "\ndetectors:");
        for d in detectors.iter().take(top.max(5)) {
            let example = d["evidence"]["example_trace_id"]
                .as_str()
                .map(|id| format!(" (e.g. trace {id})"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {:<22} {}{example}",
                d["kind"].as_str().unwrap_or(""),
                d["message"].as_str().unwrap_or("")
            );
        }
    }
    let a = &r.anomalies;
    let counts = [
        (input.malformed, "malformed documents skipped"),
        (
            outcome.decode.invalid_spans,
            "spans with invalid ids skipped",
        ),
        (a.duplicate_span_ids, "duplicate span ids"),
        (a.missing_parents, "spans with a missing parent"),
        (a.cycle_spans, "spans in parent cycles"),
        (a.negative_durations, "negative durations"),
        (
            a.clock_skew,
            "children outside their parent (clock skew, clamped)",
        ),
        (a.rootless, "traces without a root"),
        (
            outcome.assembly.late_spans,
            "late spans (trace already complete)",
        ),
        (
            outcome.assembly.spans_over_cap,
            "spans over the per-trace cap",
        ),
        (
            outcome.assembly.evicted_early,
            "traces completed early (memory cap)",
        ),
    ];
    let listed: Vec<String> = counts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if !listed.is_empty() {
        let _ = writeln!(
            s,
            "\ninput problems (counted, repaired or skipped): {}",
            listed.join(", ")
        );
        if let Some(first) = &input.first_malformed {
            let _ = writeln!(s, "  first malformed: {first}");
        }
    }
    if let Some((id, ns)) = r.slowest.first() {
        let _ = writeln!(
            s,
            "\nslowest trace: {} ({:.2} ms)",
            trace_id_hex(*id),
            *ns as f64 / 1e6
        );
    }
    s
}

fn listen(args: ListenArgs) -> Result<i32, Failure> {
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "warning: listening on {} (not loopback): anyone who can reach it can send traces",
            args.listen
        );
    }
    let receiver = otlp_receiver::start(ReceiverConfig {
        listen: args.listen,
        write: args.write.clone(),
        max_body: usize::try_from(args.max_body).unwrap_or(usize::MAX),
    })
    .map_err(Failure::Usage)?;
    crate::print_stdout(&format!("listening on http://{}\n", receiver.addr()));
    wait_for_signal();
    let requests = receiver
        .counters()
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    let spans = receiver
        .counters()
        .spans
        .load(std::sync::atomic::Ordering::Relaxed);
    let rejected = receiver
        .counters()
        .rejected
        .load(std::sync::atomic::Ordering::Relaxed);
    receiver.stop();
    eprintln!(
        "received {requests} requests ({spans} spans, {rejected} refused) into {}",
        args.write.display()
    );
    if args.analyze {
        if !otlp_receiver::has_data(&args.write) {
            eprintln!("nothing to analyze: no spans received");
            return Ok(0);
        }
        let (outcome, input) = analyze_files(
            std::slice::from_ref(&args.write),
            Config::default(),
            Selection::Duration,
        )?;
        if args.json {
            let v = to_json(&outcome, &input, None);
            crate::print_stdout(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).expect("json")
            ));
        } else {
            crate::print_stdout(&render_text(&outcome, &input, None, 10));
        }
    }
    Ok(0)
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGTERM};
        if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
            let _ = signals.forever().next();
            return;
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The receiver side of `run --otlp-listen`: started before the load, joined after.
pub struct RunTraces {
    receiver: otlp_receiver::Receiver,
    path: PathBuf,
    temporary: bool,
}

/// The trace analysis of a load test.
pub struct RunTracesDone {
    /// Text report.
    pub text: String,
    /// `chokepoint.traces.v1`.
    pub json: Value,
}

/// File name of received spans in a run directory.
pub const RUN_SPANS_FILE: &str = "spans.jsonl";
/// File name of the trace analysis in a run directory.
pub const RUN_TRACES_FILE: &str = "traces.json";

/// Starts the receiver for `run --otlp-listen` (turning on trace propagation), or nothing.
pub fn start_for_run(
    plan: &mut crate::args::Plan,
    otlp_listen: Option<SocketAddr>,
    out: Option<&Path>,
) -> Result<Option<RunTraces>, Failure> {
    let Some(addr) = otlp_listen else {
        return Ok(None);
    };
    plan.config.trace_propagate = true;
    RunTraces::start(addr, out).map(Some)
}

/// After `run --otlp-listen`: analyzes the received traces against the run, prints
/// the text report (not with `--json`) and writes `traces.json` into `--out`.
pub fn finish_run(
    traces: RunTraces,
    done: &crate::run_cmd::Executed,
    out: Option<&Path>,
    json: bool,
) -> Result<(), Failure> {
    let measured = &done.result.measured;
    let slowest = measured.slow_traces.slowest_first();
    // The P50 group: sampled requests whose client-measured latency lies
    // between the client's P40 and P60 (the sample covers every latency band).
    let (p40_us, p60_us) = if measured.latency.is_empty() {
        (0, 0)
    } else {
        (
            measured.latency.value_at_quantile(0.40),
            measured.latency.value_at_quantile(0.60),
        )
    };
    let around_median: HashMap<u128, u64> = measured
        .trace_sample
        .entries()
        .filter(|(lat_us, _)| (p40_us..=p60_us).contains(lat_us))
        .map(|(lat_us, id)| (id, lat_us * 1000))
        .collect();
    let analysis = traces.finish(
        &slowest,
        around_median,
        done.summary.requests,
        done.summary.latency_ms.p99,
        out,
    )?;
    match (analysis, json, out) {
        (Some(a), false, _) => crate::print_stdout(&format!("\n{}", a.text)),
        (Some(_), true, Some(dir)) => {
            eprintln!("trace analysis: {}", dir.join(RUN_TRACES_FILE).display())
        }
        (Some(_), true, None) => {
            eprintln!(
                "trace analysis not printed with --json: add --out DIR to get {RUN_TRACES_FILE}"
            )
        }
        (None, _, _) => {}
    }
    Ok(())
}

impl RunTraces {
    /// Starts the receiver on `addr`, writing into `out/spans.jsonl` (or a temporary file).
    pub fn start(addr: SocketAddr, out: Option<&Path>) -> Result<RunTraces, Failure> {
        let (path, temporary) = match out {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Failure::Usage(format!("--out {}: {e}", dir.display())))?;
                (dir.join(RUN_SPANS_FILE), false)
            }
            None => (otlp_receiver::temp_spans_path(), true),
        };
        if !temporary {
            // A fresh run directory: do not append to an earlier run's spans.
            let _ = std::fs::remove_file(&path);
        }
        let receiver = otlp_receiver::start(ReceiverConfig {
            listen: addr,
            write: path.clone(),
            max_body: DEFAULT_MAX_BODY,
        })
        .map_err(|e| Failure::Usage(e.replace("--listen", "--otlp-listen")))?;
        eprintln!(
            "receiving traces on http://{} (point the target's OTLP/HTTP exporter there)",
            receiver.addr()
        );
        Ok(RunTraces {
            receiver,
            path,
            temporary,
        })
    }

    /// The receiver's address.
    pub fn addr(&self) -> SocketAddr {
        self.receiver.addr()
    }

    /// After the load: waits for late exports, stops the receiver, and analyzes
    /// the traces with the load test's slowest requests (by client-measured
    /// latency, at/beyond `client_p99_ms`) as the tail group.
    pub fn finish(
        self,
        slowest: &[(u64, u128)],
        around_median: HashMap<u128, u64>,
        requests: u64,
        client_p99_ms: f64,
        out: Option<&Path>,
    ) -> Result<Option<RunTracesDone>, Failure> {
        // Exporters batch (the lab every 500 ms): wait for a quiet second, at most 5 s.
        self.receiver
            .wait_quiet(Duration::from_secs(1), Duration::from_secs(5));
        let spans = self
            .receiver
            .counters()
            .spans
            .load(std::sync::atomic::Ordering::Relaxed);
        let addr = self.receiver.addr();
        self.receiver.stop();
        let result = if spans == 0 {
            eprintln!(
                "warning: no spans arrived on http://{addr}: is the target exporting OTLP/HTTP there (e.g. chokepoint lab --otlp-endpoint http://{addr})?"
            );
            Ok(None)
        } else {
            let threshold_us = (client_p99_ms * 1000.0).floor() as u64;
            let mut tail: HashMap<u128, u64> = slowest
                .iter()
                .filter(|(lat_us, _)| *lat_us >= threshold_us)
                .map(|(lat_us, id)| (*id, lat_us * 1000))
                .collect();
            if tail.is_empty() {
                tail = slowest
                    .iter()
                    .take(1)
                    .map(|(l, id)| (*id, l * 1000))
                    .collect();
            }
            let join = Join {
                source: "this run".into(),
                requests,
                tail_requests: tail.len() as u64,
                client_p99_ms: Some(client_p99_ms),
                latencies_known: true,
                p50_requests: around_median.len() as u64,
            };
            analyze_files(
                std::slice::from_ref(&self.path),
                Config::default(),
                if around_median.is_empty() {
                    Selection::Explicit(tail)
                } else {
                    Selection::Client {
                        tail,
                        p50: around_median,
                    }
                },
            )
            .map(|(outcome, input)| {
                let json = to_json(&outcome, &input, Some(&join));
                let text = render_text(&outcome, &input, Some(&join), 10);
                Some(RunTracesDone { text, json })
            })
        };
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
        let done = result?;
        if let (Some(dir), Some(d)) = (out, &done) {
            std::fs::write(
                dir.join(RUN_TRACES_FILE),
                serde_json::to_string_pretty(&d.json).expect("json"),
            )
            .map_err(|e| Failure::Usage(format!("--out {}: {e}", dir.display())))?;
        }
        Ok(done)
    }
}
