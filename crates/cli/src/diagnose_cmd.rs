//! `chokepoint diagnose`: reads run, stress, soak and trace files, converts
//! them into `chokepoint_diagnose::Evidence` (the pure crate never sees a file
//! or a JSON shape), and prints the diagnosis as text or
//! `chokepoint.diagnosis.v1` JSON; `--out DIR` also writes `diagnosis.json`
//! and `report.html`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use chokepoint_diagnose::evidence::{
    DriftEvidence, NetworkGap, OperationTime, Percentiles, Plateau, ResourceEvidence, RunEvidence,
    SecondRow, SoakEvidence, StallEvidence, StressEvidence, StressPoint, TraceEvidence,
    TraceFinding, UslEvidence,
};
use chokepoint_diagnose::{diagnose, Diagnosis, Evidence, Horizon, Level};
use chokepoint_report::soak::SoakReport;
use chokepoint_report::stress::StressReport;
use chokepoint_report::LatencyMs;
use chokepoint_traces::{Config, Selection};
use clap::Args;
use serde_json::{json, Value};

use crate::rundir::{self, RunFiles};
use crate::Failure;

/// Schema of the JSON output.
pub const DIAGNOSIS_SCHEMA: &str = "chokepoint.diagnosis.v1";
/// File name of the diagnosis in an output directory.
pub const DIAGNOSIS_FILE: &str = "diagnosis.json";

/// Flags of `chokepoint diagnose`.
#[derive(Args, Debug, Clone)]
pub struct DiagnoseArgs {
    /// A baseline run directory (`run --out DIR`) or its summary.json.
    #[arg(long, value_name = "DIR")]
    run: Option<PathBuf>,
    /// A stress directory (`stress --out DIR`) or its stress.json.
    #[arg(long, value_name = "DIR")]
    stress: Option<PathBuf>,
    /// A soak directory (`soak --out DIR`) or its soak.json.
    #[arg(long, value_name = "DIR")]
    soak: Option<PathBuf>,
    /// Trace files: spans (OTLP/JSON lines or document, OTLP protobuf, Jaeger JSON;
    /// gzip ok), joined to --run's slowest requests when it has their trace ids;
    /// or a trace analysis (`chokepoint.traces.v1`, e.g. a run directory's traces.json).
    #[arg(long, value_name = "FILE", num_args = 1..)]
    traces: Vec<PathBuf>,
    /// Print `chokepoint.diagnosis.v1` JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Also write diagnosis.json and report.html into DIR.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Runs the command; returns the exit code.
pub fn run(args: DiagnoseArgs) -> Result<i32, Failure> {
    if args.run.is_none() && args.stress.is_none() && args.soak.is_none() && args.traces.is_empty()
    {
        return Err(Failure::Usage(
            "diagnose needs evidence: --run DIR (a baseline), and any of --stress DIR, --soak DIR, --traces FILE...".into(),
        ));
    }
    let inputs = Inputs {
        run: args.run.clone(),
        stress: args.stress.clone(),
        soak: args.soak.clone(),
        traces: args.traces.clone(),
    };
    let loaded = load(&inputs)?;
    let diagnosis = diagnose(&loaded.evidence);
    let json = to_json(&diagnosis);
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::Usage(format!("--out {}: {e}", dir.display())))?;
        let path = dir.join(DIAGNOSIS_FILE);
        std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json"))
            .map_err(|e| Failure::Usage(format!("--out {}: {e}", path.display())))?;
        crate::html_out::write_diagnosis_report(dir, &loaded, &diagnosis)?;
    }
    if args.json {
        crate::print_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&json).expect("json")
        ));
    } else {
        crate::print_stdout(&render_text(&diagnosis));
    }
    Ok(0)
}

/// Where the evidence comes from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Run directory or summary.json.
    pub run: Option<PathBuf>,
    /// Stress directory or stress.json.
    pub stress: Option<PathBuf>,
    /// Soak directory or soak.json.
    pub soak: Option<PathBuf>,
    /// Span files or trace analyses.
    pub traces: Vec<PathBuf>,
}

/// The evidence, plus the parsed files the HTML report draws.
pub struct Loaded {
    /// For the pure crate.
    pub evidence: Evidence,
    /// The run, as read.
    pub run: Option<RunFiles>,
    /// The stress report.
    pub stress: Option<StressReport>,
    /// The soak report.
    pub soak: Option<SoakReport>,
    /// Trace analyses (`chokepoint.traces.v1`).
    pub traces: Vec<Value>,
}

/// Reads every input; bad input is one line naming the file and field.
pub fn load(inputs: &Inputs) -> Result<Loaded, Failure> {
    let mut evidence = Evidence::default();
    let run = match &inputs.run {
        Some(p) => Some(rundir::open(p).map_err(Failure::Usage)?),
        None => None,
    };
    if let Some(r) = &run {
        evidence.run = Some(run_evidence(r)?);
    }
    let stress = match &inputs.stress {
        Some(p) => {
            let (path, report) =
                read_report::<StressReport>(p, "stress.json", "chokepoint.stress.v1")?;
            evidence.stress = Some(stress_evidence(&report, &path));
            Some(report)
        }
        None => None,
    };
    let soak = match &inputs.soak {
        Some(p) => {
            let (path, report) = read_report::<SoakReport>(p, "soak.json", "chokepoint.soak.v1")?;
            evidence.soak = Some(soak_evidence(&report, &path));
            Some(report)
        }
        None => None,
    };
    let mut traces = Vec::new();
    let mut span_files = Vec::new();
    for path in &inputs.traces {
        match read_trace_analysis(path)? {
            Some(v) => traces.push(v),
            None => span_files.push(path.clone()),
        }
    }
    // A run directory's own analysis (from `run --otlp-listen`) when no traces were given.
    if inputs.traces.is_empty() {
        if let Some(r) = &run {
            let own = r.file(crate::traces_cmd::RUN_TRACES_FILE);
            if own.is_file() {
                if let Some(v) = read_trace_analysis(&own)? {
                    traces.push(v);
                }
            }
        }
    }
    if !span_files.is_empty() {
        let (selection, join) = match &run {
            Some(r) => match tail_of(r) {
                Some((ids, join)) => (Selection::Explicit(ids), Some(join)),
                None => (Selection::Duration, None),
            },
            None => (Selection::Duration, None),
        };
        let (outcome, input) =
            crate::traces_cmd::analyze_files(&span_files, Config::default(), selection)?;
        traces.push(crate::traces_cmd::to_json(&outcome, &input, join.as_ref()));
    }
    for v in &traces {
        evidence.traces.push(trace_evidence(v));
    }
    Ok(Loaded {
        evidence,
        run,
        stress,
        soak,
        traces,
    })
}

fn read_report<T: serde::de::DeserializeOwned>(
    path: &Path,
    file: &str,
    schema: &str,
) -> Result<(String, T), Failure> {
    let file_path = if path.is_dir() {
        path.join(file)
    } else {
        path.to_path_buf()
    };
    let shown = file_path.display().to_string();
    let text = std::fs::read_to_string(&file_path)
        .map_err(|e| Failure::Usage(format!("{shown}: cannot read: {e}")))?;
    let raw: Value = serde_json::from_str(&text)
        .map_err(|e| Failure::Usage(format!("{shown}:{}:{}: {e}", e.line(), e.column())))?;
    let found = raw.get("schema").and_then(Value::as_str).unwrap_or("");
    if found != schema {
        return Err(Failure::Usage(format!(
            "{shown}: field `schema` is `{found}`, expected `{schema}`"
        )));
    }
    let report: T =
        serde_json::from_value(raw).map_err(|e| Failure::Usage(format!("{shown}: {e}")))?;
    Ok((shown, report))
}

/// A `chokepoint.traces.v1` document, or `None` when the file holds spans.
fn read_trace_analysis(path: &Path) -> Result<Option<Value>, Failure> {
    let shown = path.display().to_string();
    let mut head = [0u8; 4096];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| Failure::Usage(format!("{shown}: {e}")))?;
    let head = String::from_utf8_lossy(&head[..n]);
    if !head.contains("\"chokepoint.traces.v1\"") {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| Failure::Usage(format!("{shown}: {e}")))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Failure::Usage(format!("{shown}:{}:{}: {e}", e.line(), e.column())))?;
    if v.get("schema").and_then(Value::as_str) != Some(crate::traces_cmd::TRACES_SCHEMA) {
        return Ok(None);
    }
    if !v["tail"].is_array() || !v["groups"].is_object() {
        return Err(Failure::Usage(format!(
            "{shown}: field `tail`/`groups` missing: not a complete chokepoint.traces.v1 document"
        )));
    }
    let mut v = v;
    v["source"] = json!(shown);
    Ok(Some(v))
}

/// The run's slowest requests (at/beyond P99) as the trace tail.
fn tail_of(run: &RunFiles) -> Option<(HashMap<u128, u64>, crate::traces_cmd::Join)> {
    let s = &run.summary;
    if s.slow_trace_ids.is_empty() {
        return None;
    }
    let n_tail = ((s.requests as f64 * 0.01).ceil() as usize).clamp(1, s.slow_trace_ids.len());
    let ids: HashMap<u128, u64> = s
        .slow_trace_ids
        .iter()
        .take(n_tail)
        .filter_map(|id| u128::from_str_radix(id, 16).ok())
        .map(|id| (id, 0))
        .collect();
    (!ids.is_empty()).then(|| {
        let join = crate::traces_cmd::Join {
            source: run.given.clone(),
            requests: s.requests,
            tail_requests: ids.len() as u64,
            client_p99_ms: Some(s.latency_ms.p99),
            latencies_known: false,
            p50_requests: 0,
        };
        (ids, join)
    })
}

fn pcts(l: &LatencyMs) -> Percentiles {
    Percentiles {
        count: l.count,
        mean: l.mean,
        p50: l.p50,
        p90: l.p90,
        p95: l.p95,
        p99: l.p99,
        p99_9: l.p99_9,
        max: l.max,
    }
}

/// `timeseries.csv` rows (empty when the file is absent).
pub fn read_timeseries(run: &RunFiles) -> Result<Vec<SecondRow>, Failure> {
    let path = run.file(crate::output::TIMESERIES_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Failure::Usage(format!("{}: {e}", path.display()))),
    };
    let rows = parse_csv(&text, &path.display().to_string())?;
    Ok(rows
        .iter()
        .map(|r| SecondRow {
            second: r.get("second").copied().unwrap_or(0.0),
            requests: r.get("requests").copied().unwrap_or(0.0) as u64,
            errors: r.get("errors").copied().unwrap_or(0.0) as u64,
            p50_ms: r.get("p50_ms").copied().unwrap_or(0.0),
            p99_ms: r.get("p99_ms").copied().unwrap_or(0.0),
            max_ms: r.get("max_ms").copied().unwrap_or(0.0),
        })
        .collect())
}

/// Parses a CSV of numbers with a header; empty cells are left out of a row.
pub fn parse_csv(text: &str, shown: &str) -> Result<Vec<HashMap<String, f64>>, Failure> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut row = HashMap::new();
        for (col, cell) in header.iter().zip(line.split(',')) {
            if cell.trim().is_empty() {
                continue;
            }
            let v: f64 = cell.trim().parse().map_err(|_| {
                Failure::Usage(format!(
                    "{shown}:{}: column `{col}`: expected a number, got `{cell}`",
                    i + 2
                ))
            })?;
            row.insert(col.to_string(), v);
        }
        rows.push(row);
    }
    Ok(rows)
}

fn run_evidence(r: &RunFiles) -> Result<RunEvidence, Failure> {
    let s = &r.summary;
    let seconds = read_timeseries(r)?;
    let resources = match &s.resources {
        Some(res) => {
            let path = r.file(crate::watch::RESOURCES_FILE);
            let rss_series = match std::fs::read_to_string(&path) {
                Ok(text) => parse_csv(&text, &path.display().to_string())?
                    .iter()
                    .filter_map(|row| Some((*row.get("second")?, *row.get("rss_bytes")?)))
                    .collect(),
                Err(_) => Vec::new(),
            };
            Some(ResourceEvidence {
                cpus_available: res.cpus_available,
                cpu_cores_mean: res.cpu_cores_mean,
                cpu_saturated: res
                    .saturated
                    .iter()
                    .any(|x| x.resource == "cpu" && x.cause == "target"),
                cpu_contended_by_others: res
                    .saturated
                    .iter()
                    .any(|x| x.resource == "cpu" && x.cause == "machine"),
                rss_series,
                fds_end: res.fds_end,
                fd_limit: res.fd_limit,
            })
        }
        None => None,
    };
    let connect = s.phases_ms.get("connect").filter(|c| c.count > 0).map(pcts);
    Ok(RunEvidence {
        source: r.given.clone(),
        target: s.target.clone(),
        offered_rps: s.rate_target,
        concurrency: s.concurrency,
        duration_s: s.duration_s,
        requests: s.requests,
        throughput_rps: s.throughput_rps,
        error_rate: s.error_rate,
        errors: s.errors.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        latency: pcts(&s.latency_ms),
        service_time: pcts(&s.service_time_ms),
        connect,
        connections_opened: s.connections_opened,
        mean_in_flight: s.mean_in_flight,
        seconds,
        resources,
    })
}

/// Converts a stress report.
pub fn stress_evidence(s: &StressReport, source: &str) -> StressEvidence {
    StressEvidence {
        source: source.to_string(),
        mode: s.mode.clone(),
        capacity_rps: s.capacity_rps,
        failed_rps: s.bracket.failed_rps,
        max_rate: s.max_rate,
        knee_rps: s.knee_rps,
        failed_first: s.failed_first.clone(),
        verdict: s.verdict.clone(),
        plateau: s.saturation.as_ref().map(|p| Plateau {
            plateau_rps: p.plateau_rps,
            low_load_latency_ms: p.low_load_latency_ms,
            saturated_latency_ms: p.saturated_latency_ms,
            slots: p.slots,
        }),
        usl: s.usl.as_ref().map(|u| UslEvidence {
            sigma: u.sigma,
            kappa: u.kappa,
            lambda: u.lambda,
            n_star: u.n_star,
            x_max: u.x_max,
            r2: u.r2,
            class: u.class.clone(),
        }),
        steps: s
            .steps
            .iter()
            .filter(|st| !st.interrupted)
            .map(|st| StressPoint {
                offered_rps: st.offered_rps,
                concurrency: st.concurrency,
                achieved_rps: st.achieved_rps,
                latency: pcts(&st.latency_ms),
                error_rate: st.error_rate,
                passed: st.passed,
                cpu_cores: st.resources.as_ref().and_then(|r| r.cpu_cores_mean),
            })
            .collect(),
        cpus_available: s
            .steps
            .iter()
            .find_map(|st| st.resources.as_ref().and_then(|r| r.cpus_available)),
    }
}

fn soak_evidence(s: &SoakReport, source: &str) -> SoakEvidence {
    SoakEvidence {
        source: source.to_string(),
        rate: s.rate,
        duration_s: s.duration_s,
        drifts: s
            .drift
            .iter()
            .map(|d| DriftEvidence {
                metric: d.metric.clone(),
                slope_per_hour: d.slope_per_hour,
                p_value: d.p_value,
                change_over_run: d.change_over_run,
                median: d.median,
                significant: d.significant,
            })
            .collect(),
        stalls: Some(StallEvidence {
            seconds: s.stalls.seconds,
            stall_seconds: s.stalls.stall_seconds,
            events: s.stalls.events,
            periodic: s.stalls.periodic,
            period_s: s.stalls.period_s,
            threshold_ms: s.stalls.threshold_ms,
        }),
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

/// Converts a `chokepoint.traces.v1` document.
pub fn trace_evidence(v: &Value) -> TraceEvidence {
    let g = &v["groups"];
    TraceEvidence {
        source: v["source"]
            .as_str()
            .map(str::to_string)
            .or_else(|| v["inputs"][0]["file"].as_str().map(str::to_string))
            .unwrap_or_default(),
        traces: v["traces"].as_u64().unwrap_or(0),
        by_client_latency: g["by"] == "client_latency",
        n_p50: g["n_p50"].as_u64().unwrap_or(0),
        n_tail: g["n_p99"].as_u64().unwrap_or(0),
        mean_ms_p50: f(&g["mean_ms_p50"]),
        mean_ms_tail: f(&g["mean_ms_p99"]),
        wait_share_p50: f(&g["wait_share_p50"]),
        wait_share_tail: f(&g["wait_share_p99"]),
        operations: v["tail"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|t| OperationTime {
                        service: s(&t["service"]),
                        operation: s(&t["operation"]),
                        wait: t["wait"].as_bool().unwrap_or(false),
                        ms_p50: f(&t["ms_p50"]),
                        ms_p99: f(&t["ms_p99"]),
                        share_p50: f(&t["share_p50"]),
                        share_p99: f(&t["share_p99"]),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        findings: v["detectors"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter(|d| d["kind"] != "network_gap")
                    .map(|d| TraceFinding {
                        kind: s(&d["kind"]),
                        service: s(&d["service"]),
                        operation: s(&d["operation"]),
                        parent_operation: s(&d["parent"]["operation"]),
                        fraction: f(&d["fraction"]),
                        mean_count: f(&d["evidence"]["mean_count"]),
                        mean_ms: f(&d["evidence"]["mean_ms"]),
                        mean_saving_ms: f(&d["evidence"]["mean_saving_ms"]),
                        critical_path_share: f(&d["evidence"]["critical_path_share"]),
                        example_trace_id: d["evidence"]["example_trace_id"]
                            .as_str()
                            .map(str::to_string),
                        message: s(&d["message"]),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        network: v["network"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|n| NetworkGap {
                        client: s(&n["client"]),
                        server: s(&n["server"]),
                        mean_gap_ms: f(&n["mean_gap_ms"]),
                        critical_path_share: f(&n["critical_path_share"]),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The `chokepoint.diagnosis.v1` document.
pub fn to_json(d: &Diagnosis) -> Value {
    let mut v = serde_json::to_value(d).expect("diagnoses serialize");
    let obj = v.as_object_mut().expect("an object");
    obj.insert("schema".into(), json!(DIAGNOSIS_SCHEMA));
    obj.insert("tool_version".into(), json!(env!("CARGO_PKG_VERSION")));
    v
}

fn level(l: Level) -> &'static str {
    match l {
        Level::High => "high",
        Level::Medium => "medium",
        Level::Low => "low",
    }
}

/// The text report.
pub fn render_text(d: &Diagnosis) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "Diagnosis: {}", d.headline);
    if !d.evidence_used.is_empty() {
        let _ = writeln!(s, "  from: {}", d.evidence_used.join("; "));
    }
    for c in &d.constraints {
        let _ = writeln!(
            s,
            "\n#{} {} — {} [{} confidence]",
            c.rank,
            c.class.label(),
            c.title,
            level(c.confidence.level)
        );
        for e in &c.evidence {
            let threshold = e
                .threshold
                .as_ref()
                .map(|t| format!(" (threshold {t})"))
                .unwrap_or_default();
            let _ = writeln!(s, "   evidence [{}] {}{threshold}", e.source, e.text);
        }
        if !c.confidence.reasons.is_empty() {
            let _ = writeln!(s, "   confidence: {}", c.confidence.reasons.join("; "));
        }
        let _ = writeln!(s, "   fix plan:");
        for (i, fx) in c.fixes.iter().enumerate() {
            let horizon = match fx.horizon {
                Horizon::QuickWin => "quick win",
                Horizon::Structural => "structural",
            };
            let _ = writeln!(
                s,
                "     {}. {} ({horizon}): {}",
                i + 1,
                fx.fix.label(),
                fx.action
            );
            if let Some(e) = &fx.expected {
                let _ = writeln!(s, "        expected: {}", e.method);
            }
        }
        for p in &c.predictions {
            let _ = writeln!(s, "   what-if: {}", p.text);
        }
    }
    if !d.predictions.is_empty() && d.constraints.iter().all(|c| c.predictions.is_empty()) {
        let _ = writeln!(s, "\nWhat-if:");
        for p in &d.predictions {
            let _ = writeln!(s, "  {} [{}]", p.text, p.model);
        }
    }
    if !d.notes.is_empty() {
        let _ = writeln!(s, "\nNotes:");
        for n in &d.notes {
            let _ = writeln!(s, "  - {n}");
        }
    }
    if !d.measure_next.is_empty() {
        let _ = writeln!(s, "\nMeasure next:");
        for n in &d.measure_next {
            let _ = writeln!(s, "  - {}: {}\n      {}", n.situation, n.why, n.command);
        }
    }
    s
}
