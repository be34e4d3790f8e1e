//! `chokepoint run`: the Baseline step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chokepoint_engine::{ErrorCounts, LoadModel, RunResult, StopSignal};
use chokepoint_report::redact::redact_url;
use chokepoint_report::{LatencyMs, RequestSummary, RunSummary, WarmupSummary, RUN_SCHEMA};
use chokepoint_stats::summarize;
use clap::Args;

use crate::args::{self, ConnectionArgs, LoadArgs, Plan, RequestArgs};
use crate::output::RunOutput;
use crate::{signals, Failure};

/// Flags of `chokepoint run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    request: RequestArgs,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Write summary.json, latency.hlog and timeseries.csv into DIR.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the summary JSON on stdout instead of the text report.
    #[arg(long)]
    json: bool,
    /// No progress display (it only shows on a terminal anyway).
    #[arg(long)]
    quiet: bool,
    /// Serve live Prometheus metrics at http://ADDR/metrics during the run
    /// (HOST:PORT, or a bare PORT for 127.0.0.1; port 0 picks one and prints it).
    #[arg(long = "metrics-listen", value_name = "ADDR", value_parser = crate::metrics::parse_listen)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Receive the target's OpenTelemetry traces (OTLP/HTTP, POST /v1/traces) on ADDR during
    /// the run and analyze them with the slowest requests as the tail (implies --trace-propagate).
    #[arg(long = "otlp-listen", value_name = "ADDR")]
    otlp_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    watch: crate::watch::WatchArgs,
    #[command(flatten)]
    scale: crate::args::ScaleArgs,
}

impl RunArgs {
    /// Target and request flags.
    pub(crate) fn request_args(&self) -> &RequestArgs {
        &self.request
    }
    /// Connection flags.
    pub(crate) fn connection_args(&self) -> &ConnectionArgs {
        &self.connection
    }
    /// Load flags.
    pub(crate) fn load_args(&self) -> &LoadArgs {
        &self.load
    }
    /// Shard, start time and stages.
    pub(crate) fn scale_args(&self) -> &crate::args::ScaleArgs {
        &self.scale
    }
}

/// Exit code of an interrupted run (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Runs the command; returns the exit code.
pub fn run(args: RunArgs) -> Result<i32, Failure> {
    let (mut plan, scale) = args::plan_scaled(
        &args.request,
        &args.connection,
        &args.load,
        Some(&args.scale),
    )
    .map_err(Failure::Usage)?;
    crate::shard::before_run(&plan, &scale, args.out.as_deref(), args.quiet)?;
    let traces =
        crate::traces_cmd::start_for_run(&mut plan, args.otlp_listen, args.out.as_deref())?;
    let stop = StopSignal::new();
    signals::stop_on_signals(&stop);
    let metrics = match args.metrics_listen {
        Some(addr) => {
            let info = crate::metrics::RunInfo {
                target: redact_url(&plan.target_display),
                model: match plan.config.load {
                    LoadModel::Open { .. } => "open".into(),
                    LoadModel::Closed { .. } => "closed".into(),
                },
                offered_rate: match plan.config.load {
                    LoadModel::Open { rate, .. } => Some(rate),
                    LoadModel::Closed { .. } => None,
                },
            };
            let server =
                crate::metrics::MetricsServer::start(addr, info).map_err(Failure::Usage)?;
            eprintln!("metrics: listening on http://{}/metrics", server.addr());
            Some(server)
        }
        None => None,
    };
    let mut live = metrics.as_ref().map(|m| m.observer());
    let done = crate::watch::execute_watched(
        &plan,
        args.out.as_deref(),
        args.quiet,
        &args.watch,
        &stop,
        live.as_mut()
            .map(|o| o as &mut dyn chokepoint_engine::Observer),
    )?;
    drop(metrics);
    let mut done = done;
    crate::shard::after_run(&mut done, &plan, &scale, args.out.as_deref())?;
    if args.json {
        crate::print_stdout(&format!("{}\n", done.json));
    } else {
        crate::print_stdout(&chokepoint_report::text::render_run(&done.summary));
        if let Some(resources) = &done.summary.resources {
            crate::print_stdout(&chokepoint_report::resources::render_resources(resources));
        }
    }
    if let Some(traces) = traces {
        crate::traces_cmd::finish_run(traces, &done, args.out.as_deref(), args.json)?;
    }
    if let Some(dir) = args.out.as_deref() {
        crate::html_out::report_or_warn(crate::html_out::write_run_report(dir));
    }
    Ok(if done.result.interrupted {
        EXIT_INTERRUPTED
    } else {
        0
    })
}

/// A finished run: the engine's result, its summary, and the summary as JSON.
pub struct Executed {
    /// What the engine measured.
    pub result: RunResult,
    /// `summary.json`'s content.
    pub summary: RunSummary,
    /// The same, serialized.
    pub json: String,
    /// The measured window's per-second latency histograms (for comparisons;
    /// empty for runs longer than [`crate::output::MAX_KEPT_INTERVALS`] seconds).
    pub intervals: Vec<chokepoint_stats::Histogram>,
}

/// Runs a plan, writing the run directory when `out` is given; with
/// `keep_intervals` the per-second histograms stay in memory for comparisons.
pub fn execute(
    plan: &Plan,
    out: Option<&Path>,
    quiet: bool,
    keep_intervals: bool,
    stop: &StopSignal,
) -> Result<Executed, Failure> {
    execute_with(plan, out, quiet, keep_intervals, stop, None)
}

/// [`execute`], with one more observer called after the run's own output
/// (live metrics).
pub fn execute_with(
    plan: &Plan,
    out: Option<&Path>,
    quiet: bool,
    keep_intervals: bool,
    stop: &StopSignal,
    extra: Option<&mut dyn chokepoint_engine::Observer>,
) -> Result<Executed, Failure> {
    let mut output = RunOutput::new(out, quiet, plan.expected_duration).map_err(Failure::Usage)?;
    if keep_intervals {
        output.keep_intervals();
    }
    let result = match extra {
        Some(second) => chokepoint_engine::run(
            plan.config.clone(),
            &mut crate::metrics::Tee {
                first: &mut output,
                second,
            },
            stop,
        ),
        None => chokepoint_engine::run(plan.config.clone(), &mut output, stop),
    }
    .map_err(|e| Failure::Usage(e.to_string()))?;
    let summary = build_summary(plan, &result);
    let json = serde_json::to_string_pretty(&summary).expect("summaries serialize");
    output.finish(&json).map_err(Failure::Usage)?;
    Ok(Executed {
        result,
        summary,
        json,
        intervals: output.take_intervals(),
    })
}

fn errors_map(counts: &ErrorCounts) -> BTreeMap<String, u64> {
    counts
        .nonzero()
        .map(|(k, n)| (k.as_str().to_string(), n))
        .collect()
}

fn latency(h: &chokepoint_stats::Histogram) -> LatencyMs {
    summarize(h).into()
}

/// Turns the engine's measurements into `summary.json`.
pub fn build_summary(plan: &Plan, result: &RunResult) -> RunSummary {
    let m = &result.measured;
    let duration_s = result.duration.as_secs_f64();
    let throughput_rps = if duration_s > 0.0 {
        m.requests as f64 / duration_s
    } else {
        0.0
    };
    let config = &plan.config;
    let (model, rate_target, concurrency, arrival, max_connections) = match config.load {
        LoadModel::Open {
            rate,
            arrival,
            max_connections,
        } => (
            "open",
            Some(rate),
            None,
            Some(format!("{arrival:?}").to_lowercase()),
            Some(max_connections as u64),
        ),
        LoadModel::Closed { concurrency } => ("closed", None, Some(concurrency as u64), None, None),
    };
    let service = latency(&m.service);
    let phases_ms = [
        ("connect", &m.connect),
        ("tls", &m.tls),
        ("ttfb", &m.ttfb),
        ("receive", &m.receive),
    ]
    .into_iter()
    .map(|(name, h)| (name.to_string(), latency(h)))
    .collect();
    let by_request = config
        .requests
        .iter()
        .zip(&m.by_request)
        .enumerate()
        .map(|(idx, (spec, r))| {
            (
                spec.name.clone(),
                RequestSummary {
                    requests: r.requests,
                    ok: r.ok,
                    errors: errors_map(&r.errors),
                    latency_ms: latency(m.request_latency(idx)),
                },
            )
        })
        .collect();
    let warmup = (result.warmup_duration.as_nanos() > 0 || result.warmup.requests > 0).then(|| {
        WarmupSummary {
            duration_s: result.warmup_duration.as_secs_f64(),
            requests: result.warmup.requests,
            ok: result.warmup.ok,
            errors: errors_map(&result.warmup.errors),
            latency_ms: latency(&result.warmup.latency),
        }
    });
    RunSummary {
        schema: RUN_SCHEMA.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        target: redact_url(&plan.target_display),
        model: model.into(),
        rate_target,
        concurrency,
        arrival,
        max_connections,
        started_at: humantime::format_rfc3339_millis(result.started_at).to_string(),
        duration_s,
        requests: m.requests,
        ok: m.ok,
        errors: errors_map(&m.errors),
        dropped: result.dropped,
        error_rate: if m.requests > 0 {
            m.errors.total() as f64 / m.requests as f64
        } else {
            0.0
        },
        throughput_rps,
        latency_ms: latency(&m.latency),
        service_time_ms: service,
        phases_ms,
        schedule_lag_ms: latency(&m.schedule_lag),
        by_request,
        mean_in_flight: throughput_rps * service.mean / 1000.0,
        slow_trace_ids: m
            .slow_traces
            .slowest_first()
            .into_iter()
            .map(|(_, id)| format!("{id:032x}"))
            .collect(),
        interrupted: result.interrupted,
        warmup,
        bytes_received: m.bytes_received,
        bytes_sent: m.bytes_sent,
        connections_opened: m.connections_opened,
        peak_connections: result.peak_connections as u64,
        http2: config.http2,
        tls_verification_disabled: config.insecure,
        io: result.io.as_str().into(),
        io_polled_share: result.polled_receive_share,
        threads: result.threads as u64,
        timeout_s: config.timeout.as_secs_f64(),
        resources: None,
        ..RunSummary::default()
    }
}
