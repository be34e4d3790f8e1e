//! The evidence a diagnosis rests on: plain data with public fields, filled by
//! the caller (the CLI converts `summary.json`, `stress.json`, `soak.json`,
//! `resources.csv`, `timeseries.csv` and trace analyses into these).
//!
//! Every latency is in milliseconds, every rate in requests per second,
//! every share a fraction in 0..1.

use serde::Serialize;

/// Everything known about the system under test. Any part may be missing;
/// the diagnosis says what to measure next when it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Evidence {
    /// A baseline load test (`run`).
    pub run: Option<RunEvidence>,
    /// A capacity search or concurrency sweep (`stress`).
    pub stress: Option<StressEvidence>,
    /// A long constant-rate run (`soak`).
    pub soak: Option<SoakEvidence>,
    /// Trace analyses (`traces analyze`, `run --otlp-listen`).
    pub traces: Vec<TraceEvidence>,
}

/// Percentiles of one latency distribution (ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples behind them.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Largest.
    pub max: f64,
}

/// One second of a run (`timeseries.csv`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SecondRow {
    /// Seconds from the start of the measured window.
    pub second: f64,
    /// Completed requests.
    pub requests: u64,
    /// Errors.
    pub errors: u64,
    /// Median latency of the second (ms).
    pub p50_ms: f64,
    /// 99th percentile of the second (ms).
    pub p99_ms: f64,
    /// Largest latency of the second (ms).
    pub max_ms: f64,
}

/// A baseline run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunEvidence {
    /// Where it came from (a path), for the evidence lines.
    pub source: String,
    /// The target URL (for the commands in "measure next").
    pub target: String,
    /// Offered rate of an open-model run.
    pub offered_rps: Option<f64>,
    /// Connections of a closed-model run.
    pub concurrency: Option<u64>,
    /// Measured window (s).
    pub duration_s: f64,
    /// Completed requests.
    pub requests: u64,
    /// Completed requests per second.
    pub throughput_rps: f64,
    /// Errors over requests.
    pub error_rate: f64,
    /// Errors by kind (`timeout`, `status_5xx`, ...).
    pub errors: Vec<(String, u64)>,
    /// Latency from the intended send time.
    pub latency: Percentiles,
    /// Service time from the actual send.
    pub service_time: Percentiles,
    /// Connect phase (only requests that opened a connection), when measured.
    pub connect: Option<Percentiles>,
    /// Connections opened during the measured window.
    pub connections_opened: u64,
    /// Requests in flight by Little's law.
    pub mean_in_flight: f64,
    /// Per-second rows (may be empty).
    pub seconds: Vec<SecondRow>,
    /// The target's resources, when probed.
    pub resources: Option<ResourceEvidence>,
}

/// The target's resources over a run (`--watch-pid`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResourceEvidence {
    /// CPUs the target may use.
    pub cpus_available: Option<f64>,
    /// Mean CPU cores used by the target.
    pub cpu_cores_mean: Option<f64>,
    /// The probe judged the target's CPU saturated (≥ 90% of its CPUs, or throttled).
    pub cpu_saturated: bool,
    /// Other work held the CPUs (run-queue delay while the target used little).
    pub cpu_contended_by_others: bool,
    /// RSS over time: (seconds from the window's start, bytes).
    pub rss_series: Vec<(f64, f64)>,
    /// Open file descriptors at the end, and the limit.
    pub fds_end: Option<u64>,
    /// The fd limit.
    pub fd_limit: Option<u64>,
}

/// One step of a stress search or sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StressPoint {
    /// Offered rate (rate search).
    pub offered_rps: Option<f64>,
    /// Connections (sweep).
    pub concurrency: Option<u64>,
    /// Completed requests per second.
    pub achieved_rps: f64,
    /// Latency.
    pub latency: Percentiles,
    /// Errors over requests.
    pub error_rate: f64,
    /// The step met every criterion.
    pub passed: bool,
    /// Mean CPU cores the target used, when probed.
    pub cpu_cores: Option<f64>,
}

/// Saturation as `stress` characterised it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Plateau {
    /// Throughput at the plateau.
    pub plateau_rps: f64,
    /// Mean latency at the lowest load (ms).
    pub low_load_latency_ms: f64,
    /// Mean latency at the highest load (ms).
    pub saturated_latency_ms: f64,
    /// Little's-law upper bound of the concurrent slots (L = X·W).
    pub slots: f64,
}

/// A Universal Scalability Law fit.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UslEvidence {
    /// Contention.
    pub sigma: f64,
    /// Coherency.
    pub kappa: f64,
    /// Single-client throughput.
    pub lambda: f64,
    /// Concurrency of peak throughput.
    pub n_star: Option<f64>,
    /// Peak throughput.
    pub x_max: Option<f64>,
    /// Goodness of fit.
    pub r2: f64,
    /// `near-linear`, `contention-limited` or `coherency-limited`.
    pub class: String,
}

/// A capacity search (`stress`) or concurrency sweep.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StressEvidence {
    /// Where it came from.
    pub source: String,
    /// `rate` or `concurrency`.
    pub mode: String,
    /// Highest passing rate.
    pub capacity_rps: Option<f64>,
    /// Lowest failing rate.
    pub failed_rps: Option<f64>,
    /// Highest rate offered.
    pub max_rate: Option<f64>,
    /// Knee of the latency curve.
    pub knee_rps: Option<f64>,
    /// What failed first (`throughput`, `latency`, `errors`, `cpu`, ...).
    pub failed_first: Option<String>,
    /// The verdict sentence.
    pub verdict: String,
    /// A throughput plateau, when recognised.
    pub plateau: Option<Plateau>,
    /// The USL fit of a sweep.
    pub usl: Option<UslEvidence>,
    /// Every step.
    pub steps: Vec<StressPoint>,
    /// CPUs available to the target, when probed.
    pub cpus_available: Option<f64>,
}

/// A drift finding of `soak`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DriftEvidence {
    /// `p99_ms`, `error_rate`, `rss_bytes` or `fds`.
    pub metric: String,
    /// Theil–Sen slope per hour.
    pub slope_per_hour: f64,
    /// Mann–Kendall p-value.
    pub p_value: f64,
    /// Slope × run length.
    pub change_over_run: f64,
    /// Median of the series.
    pub median: f64,
    /// Significant and material (soak's judgement).
    pub significant: bool,
}

/// Periodic stalls as `soak` found them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StallEvidence {
    /// Seconds examined.
    pub seconds: usize,
    /// Seconds with a burst of slow requests.
    pub stall_seconds: usize,
    /// Events (adjacent stall seconds count once).
    pub events: usize,
    /// Events recur regularly.
    pub periodic: bool,
    /// Period (s), when periodic.
    pub period_s: Option<f64>,
    /// The slow-request threshold (ms).
    pub threshold_ms: f64,
}

/// A soak run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SoakEvidence {
    /// Where it came from.
    pub source: String,
    /// Offered rate.
    pub rate: f64,
    /// Measured window (s).
    pub duration_s: f64,
    /// Drift tests.
    pub drifts: Vec<DriftEvidence>,
    /// Stall detection.
    pub stalls: Option<StallEvidence>,
}

/// Critical-path time of one (service, operation), P50 group versus tail.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OperationTime {
    /// `service.name`.
    pub service: String,
    /// Span name.
    pub operation: String,
    /// A waiting span (the traces crate's wait rules).
    pub wait: bool,
    /// Mean critical-path self time per trace in the P50 group (ms).
    pub ms_p50: f64,
    /// The same in the tail group (ms).
    pub ms_p99: f64,
    /// Share of the P50 group's critical-path time.
    pub share_p50: f64,
    /// Share of the tail group's critical-path time.
    pub share_p99: f64,
}

/// A detector finding of the trace analysis.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TraceFinding {
    /// `n_plus_one`, `sequential_independent`, `fan_out`, `retry`, `error`, `network_gap`.
    pub kind: String,
    /// Service of the calls.
    pub service: String,
    /// Operation of the calls.
    pub operation: String,
    /// Operation of their parent.
    pub parent_operation: String,
    /// Fraction of traces showing it.
    pub fraction: f64,
    /// Calls per affected trace.
    pub mean_count: f64,
    /// Time of the calls involved per affected trace (ms).
    pub mean_ms: f64,
    /// What the fix would save per affected trace (ms).
    pub mean_saving_ms: f64,
    /// Share of all critical-path time in those calls.
    pub critical_path_share: f64,
    /// A trace that shows it.
    pub example_trace_id: Option<String>,
    /// The detector's sentence.
    pub message: String,
}

/// Client → server gap per call (network, connection set-up, queueing in front of the server).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NetworkGap {
    /// Calling service.
    pub client: String,
    /// Called service.
    pub server: String,
    /// Mean gap per call (ms).
    pub mean_gap_ms: f64,
    /// Share of critical-path time.
    pub critical_path_share: f64,
}

/// One trace analysis.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TraceEvidence {
    /// Where it came from.
    pub source: String,
    /// Traces analysed.
    pub traces: u64,
    /// The tail was chosen by the client's latency (joined to a load test).
    pub by_client_latency: bool,
    /// Traces in the P50 group and in the tail.
    pub n_p50: u64,
    /// Traces in the tail group.
    pub n_tail: u64,
    /// Mean duration of the P50 group (ms).
    pub mean_ms_p50: f64,
    /// Mean duration of the tail group (ms), server side.
    pub mean_ms_tail: f64,
    /// Share of critical-path time in waiting spans, P50 group.
    pub wait_share_p50: f64,
    /// The same in the tail.
    pub wait_share_tail: f64,
    /// Operations, largest tail contribution first.
    pub operations: Vec<OperationTime>,
    /// Detector findings.
    pub findings: Vec<TraceFinding>,
    /// Client → server gaps.
    pub network: Vec<NetworkGap>,
}
