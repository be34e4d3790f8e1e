//! `timeseries.csv`: one row per second of the measured window.

/// The header row.
pub const HEADER: &str = "second,requests,ok,errors,rps,p50_ms,p90_ms,p99_ms,max_ms,in_flight\n";

/// One row of the time series.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Row {
    /// Seconds from the start of the measured window to the start of this interval.
    pub second: f64,
    /// Completed requests.
    pub requests: u64,
    /// Successful requests.
    pub ok: u64,
    /// Errors.
    pub errors: u64,
    /// Completed requests per second over the interval.
    pub rps: f64,
    /// Latency percentiles (ms).
    pub p50_ms: f64,
    /// 90th percentile (ms).
    pub p90_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// Largest latency (ms).
    pub max_ms: f64,
    /// Requests in flight at the interval's end.
    pub in_flight: u64,
}

impl Row {
    /// The CSV line, with its newline.
    pub fn to_csv(&self) -> String {
        format!(
            "{:.3},{},{},{},{:.1},{:.3},{:.3},{:.3},{:.3},{}\n",
            self.second,
            self.requests,
            self.ok,
            self.errors,
            self.rps,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
            self.in_flight
        )
    }
}
