//! `summary.json`, schema `chokepoint.run.v1`: the stable names of the public
//! contract (PRODUCT.md). Fields may be added; none may be renamed.

use std::collections::BTreeMap;

use chokepoint_stats::Summary;
use serde::{Deserialize, Serialize};

/// The schema identifier written in every run summary.
pub const RUN_SCHEMA: &str = "chokepoint.run.v1";

/// A latency distribution in milliseconds, with the sample count behind it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LatencyMs {
    /// Samples the percentiles rest on.
    #[serde(default)]
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// 50th percentile.
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

impl From<Summary> for LatencyMs {
    fn from(s: Summary) -> Self {
        LatencyMs {
            count: s.count,
            min: s.min_ms,
            mean: s.mean_ms,
            stdev: s.stdev_ms,
            p50: s.p50_ms,
            p90: s.p90_ms,
            p95: s.p95_ms,
            p99: s.p99_ms,
            p99_9: s.p99_9_ms,
            max: s.max_ms,
        }
    }
}

/// Per-request-name statistics.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RequestSummary {
    /// Completed requests (ok + errors).
    pub requests: u64,
    /// Successful requests.
    pub ok: u64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Latency from intended send.
    pub latency_ms: LatencyMs,
}

/// What happened during warmup (excluded from every other number).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WarmupSummary {
    /// Length of the warmup.
    pub duration_s: f64,
    /// Completed requests.
    pub requests: u64,
    /// Successful requests.
    pub ok: u64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Latency from intended send.
    pub latency_ms: LatencyMs,
}

/// The whole run summary.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunSummary {
    /// Always [`RUN_SCHEMA`].
    pub schema: String,
    /// chokepoint version that measured.
    pub tool_version: String,
    /// Target URL (credential-looking query parameters redacted).
    pub target: String,
    /// `open` or `closed`.
    pub model: String,
    /// Offered rate (open model), requests per second.
    pub rate_target: Option<f64>,
    /// Connections (closed model).
    pub concurrency: Option<u64>,
    /// Open-model arrival process: `uniform` or `poisson`.
    #[serde(default)]
    pub arrival: Option<String>,
    /// Open-model connection cap.
    #[serde(default)]
    pub max_connections: Option<u64>,
    /// Wall-clock start of the measured window (RFC 3339).
    pub started_at: String,
    /// Measured window in seconds (warmup excluded).
    pub duration_s: f64,
    /// Completed requests, ok + errors.
    pub requests: u64,
    /// Successful responses (2xx, 3xx).
    pub ok: u64,
    /// Errors by kind: connect, timeout, tls, io, protocol, status_4xx, status_5xx.
    pub errors: BTreeMap<String, u64>,
    /// Open-model arrivals never sent: every allowed connection was busy until the window ended.
    #[serde(default)]
    pub dropped: u64,
    /// Errors over requests (0..1).
    #[serde(default)]
    pub error_rate: f64,
    /// Completed requests per second of the measured window.
    pub throughput_rps: f64,
    /// Latency from the intended send time (coordinated-omission free).
    pub latency_ms: LatencyMs,
    /// Service time from the actual send.
    pub service_time_ms: LatencyMs,
    /// Phases: connect, tls, ttfb, receive.
    pub phases_ms: BTreeMap<String, LatencyMs>,
    /// Actual send minus intended send: generator lag plus waiting for a connection.
    #[serde(default)]
    pub schedule_lag_ms: LatencyMs,
    /// Per request name.
    pub by_request: BTreeMap<String, RequestSummary>,
    /// Little's law L = X · W with W the mean service time: requests in flight at the target.
    pub mean_in_flight: f64,
    /// Trace ids of the slowest requests (with `--trace-propagate`), slowest first.
    #[serde(default)]
    pub slow_trace_ids: Vec<String>,
    /// The run was stopped early (Ctrl-C, SIGTERM); numbers cover what was measured.
    #[serde(default)]
    pub interrupted: bool,
    /// Warmup statistics, when a warmup ran.
    #[serde(default)]
    pub warmup: Option<WarmupSummary>,
    /// Response bytes received.
    #[serde(default)]
    pub bytes_received: u64,
    /// Request bytes sent.
    #[serde(default)]
    pub bytes_sent: u64,
    /// Connections opened during the measured window.
    #[serde(default)]
    pub connections_opened: u64,
    /// Most connections open at once.
    #[serde(default)]
    pub peak_connections: u64,
    /// HTTP/2 was used.
    #[serde(default)]
    pub http2: bool,
    /// TLS certificate verification was off (`--insecure`).
    #[serde(default)]
    pub tls_verification_disabled: bool,
    /// How the generator did its I/O: `io_uring` or `epoll` (empty in
    /// summaries from before this field).
    #[serde(default)]
    pub io: String,
    /// io_uring only: the share of receives (reads that brought response
    /// bytes, over the whole run) made in the polled receive mode, which a
    /// busy thread with many requests in flight switches to; `null` with
    /// epoll.
    #[serde(default)]
    pub io_polled_share: Option<f64>,
    /// Generator threads used.
    #[serde(default)]
    pub threads: u64,
    /// Per-request timeout in seconds.
    #[serde(default)]
    pub timeout_s: f64,
    /// The target's resources over the measured window (`--watch-pid`,
    /// `--watch-cgroup`); `null` when not probed.
    #[serde(default)]
    pub resources: Option<crate::resources::Resources>,
    /// This run's part of a distributed test (`run --shard I/N`); `null` otherwise.
    #[serde(default)]
    pub shard: Option<ShardSummary>,
    /// Fingerprint of the whole test (target, requests, load, limits, shard
    /// count; not secrets): shards of one test share it, `merge` checks it.
    #[serde(default)]
    pub scenario_fingerprint: Option<String>,
    /// The whole load's stages (linear ramps), in order; empty for a constant load.
    #[serde(default)]
    pub stages: Vec<StageSummary>,
    /// Set by `chokepoint merge`: what this run was merged from.
    #[serde(default)]
    pub merged: Option<MergeSummary>,
}

/// One shard of a distributed test.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ShardSummary {
    /// 0-based index.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
    /// The agreed start time (`--start-at`, RFC 3339).
    #[serde(default)]
    pub start_at: Option<String>,
    /// How late this shard's schedule started after `start_at` (ms).
    #[serde(default)]
    pub start_skew_ms: Option<f64>,
}

/// One stage: the load ramps linearly from `from` to `to` (requests per
/// second in the open model, connections in the closed model).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct StageSummary {
    /// Start, seconds from the start of the run (warmup included).
    pub start_s: f64,
    /// Length in seconds.
    pub duration_s: f64,
    /// Load at the start of the stage.
    pub from: f64,
    /// Load at the end of the stage.
    pub to: f64,
}

/// What `chokepoint merge` combined.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MergeSummary {
    /// The run directories merged.
    pub sources: Vec<String>,
    /// Shard indexes present.
    #[serde(default)]
    pub shards: Vec<u32>,
    /// The latest shard's measured window started this long after the first (ms).
    #[serde(default)]
    pub start_spread_ms: f64,
    /// What did not match or could not be merged exactly.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl RunSummary {
    /// Number of errors of all kinds.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}
